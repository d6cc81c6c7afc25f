/* refgemm.c: CPU reference GEMM, result comparison and shared random matrices (see
 * refgemm.h). */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "refgemm.h"

/* Where element (r, c) of a stored matrix lives. */
static size_t at(int row_major, int64_t ld, int64_t r, int64_t c)
{
	return row_major ? (size_t)(r * ld + c) : (size_t)(r + c * ld);
}

/* x and y are k elements apart by xs and ys. Products of floats are exact in double; four
 * partial sums keep the loop from waiting on one add chain, and the order is fixed, so
 * the result is deterministic. */
static double dot(const float *x, int64_t xs, const float *y, int64_t ys, int64_t k)
{
	double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	int64_t l = 0;

	if (xs == 1 && ys == 1)
		for (; l + 4 <= k; l += 4) {
			s0 += (double)x[l] * y[l];
			s1 += (double)x[l + 1] * y[l + 1];
			s2 += (double)x[l + 2] * y[l + 2];
			s3 += (double)x[l + 3] * y[l + 3];
		}
	for (; l < k; l++)
		s0 += (double)x[l * xs] * y[l * ys];
	return (s0 + s1) + (s2 + s3);
}

void refgemm(int row_major, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
	     float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
	     float *c, int64_t ldc)
{
	/* Row i of op(A) starts at a + i * a_row_step and steps by a_elem_step; it is contiguous
	 * when the stored A is row-major and not transposed, or column-major and transposed.
	 * Likewise column j of op(B). */
	int a_contig = (row_major != 0) != (trans_a != 0);
	int b_contig = (row_major != 0) == (trans_b != 0);
	int64_t a_row_step = a_contig ? lda : 1, a_elem_step = a_contig ? 1 : lda;
	int64_t b_col_step = b_contig ? ldb : 1, b_elem_step = b_contig ? 1 : ldb;
	float *a_packed = NULL, *b_col = NULL;
	size_t floats;

	/* A strided inner loop through a large matrix misses the cache on every element; packing
	 * op(A) by rows once and each column of op(B) in turn keeps a check of a large product
	 * to seconds. Without the memory we fall back to strided access: slower, same result. */
	if (!a_contig && !__builtin_mul_overflow((size_t)m, (size_t)k, &floats) &&
	    floats <= SIZE_MAX / sizeof(float))
		a_packed = malloc(floats * sizeof(float));
	if (a_packed) {
		for (int64_t i = 0; i < m; i++)
			for (int64_t l = 0; l < k; l++)
				a_packed[i * k + l] = a[i * a_row_step + l * a_elem_step];
		a = a_packed;
		a_row_step = k;
		a_elem_step = 1;
	}
	if (!b_contig)
		b_col = malloc((size_t)k * sizeof(float));

	for (int64_t j = 0; j < n; j++) {
		const float *bj = b + j * b_col_step;
		int64_t bj_step = b_elem_step;
		if (b_col) {
			for (int64_t l = 0; l < k; l++)
				b_col[l] = bj[l * bj_step];
			bj = b_col;
			bj_step = 1;
		}
		for (int64_t i = 0; i < m; i++) {
			double v = (double)alpha * dot(a + i * a_row_step, a_elem_step, bj, bj_step, k);
			float *cij = &c[at(row_major, ldc, i, j)];
			if (beta != 0.0f)
				v += (double)beta * *cij;
			*cij = (float)v;
		}
	}
	free(a_packed);
	free(b_col);
}

double refgemm_tolerance(int row_major, int64_t m, int64_t n, int64_t k, const float *want,
			 int64_t ldc)
{
	double scale = 0;

	for (int64_t j = 0; j < n; j++)
		for (int64_t i = 0; i < m; i++) {
			double w = fabs((double)want[at(row_major, ldc, i, j)]);
			if (isfinite(w) && w > scale)
				scale = w;
		}
	return (double)k * (8.0 * FLT_EPSILON * scale + FLT_MIN);
}

int refgemm_compare(int row_major, int64_t m, int64_t n, int64_t k, const float *got,
		    const float *want, int64_t ldc, double *max_err, int64_t *bad_i, int64_t *bad_j)
{
	double tol = refgemm_tolerance(row_major, m, n, k, want, ldc);
	double worst = -1;
	int64_t worst_i = -1, worst_j = -1;
	int bad = 0;

	for (int64_t j = 0; j < n; j++)
		for (int64_t i = 0; i < m; i++) {
			size_t idx = at(row_major, ldc, i, j);
			double g = got[idx], w = want[idx], err;
			int ok;

			if (!isfinite(w)) {
				/* Inputs with NaN or Inf: the daemon must reproduce them, not hide them. */
				ok = isnan(w) ? isnan(g) : g == w;
				err = ok ? 0 : INFINITY;
			} else if (!isfinite(g)) {
				ok = 0;
				err = INFINITY;
			} else {
				err = fabs(g - w);
				ok = err <= tol;
			}
			if (!ok && bad < INT_MAX)
				bad++;
			if (err > worst) {
				worst = err;
				worst_i = i;
				worst_j = j;
			}
		}
	if (max_err)
		*max_err = worst < 0 ? 0 : worst;
	if (bad_i)
		*bad_i = worst_i;
	if (bad_j)
		*bad_j = worst_j;
	return bad;
}

void refgemm_fill_random(float *x, size_t n, uint64_t *state)
{
	for (size_t i = 0; i < n; i++) {
		/* splitmix64 (Steele, Lea, Flood 2014): every state, 0 included, gives a good stream. */
		uint64_t z = (*state += 0x9e3779b97f4a7c15u);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
		z ^= z >> 31;
		/* The top 24 bits, centred and scaled by 2^-23: exact in a float. */
		x[i] = (float)((int32_t)(z >> 40) - (1 << 23)) * (1.0f / (1 << 23));
	}
}

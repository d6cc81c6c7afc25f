/* refgemm.h: a plain CPU GEMM to check the daemon's answers against, a comparison with a
 * documented tolerance, and the pseudo-random matrices that the CLI and the tests share.
 * Correctness only: nothing here is fast. */
#ifndef RXGEMM_REFGEMM_H
#define RXGEMM_REFGEMM_H

#include <stddef.h>
#include <stdint.h>

/* C = alpha * op(A) * op(B) + beta * C, with the same conventions as rxg_gemm: op(A) is
 * m x k, op(B) k x n, C m x n; row_major non-zero means element (i, j) of a stored matrix is
 * at i * ld + j, else at i + j * ld. The stored A is m x k (k x m when trans_a), B k x n
 * (n x k when trans_b). Leading dimensions must already be resolved (not 0) and valid.
 * Products are exact and sums are accumulated in double; the result is rounded to float
 * once. When beta == 0 C's old values are never read (NaNs there do not propagate);
 * elements of C outside the m x n shape are never touched. */
void refgemm(int row_major, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
	     float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
	     float *c, int64_t ldc);

/* The error refgemm_compare allows in each element of an m x n result of inner dimension
 * k, given the reference want:
 *
 *     tol = k * (8 * FLT_EPSILON * scale + FLT_MIN),  scale = max |want(i, j)| (finite ones)
 *
 * Why: a float dot product of length k, summed in any order, is off by at most about
 * k * (FLT_EPSILON / 2) * sum |a_il * b_lj|. We only have C, so scale stands in for that
 * sum of magnitudes; the factor 8 (16 half-ulps per term) leaves room for the cancellation
 * of random signed data, where sum |a * b| exceeds |C| by about sqrt(k) / 7 (it covers the
 * worst case up to k ~ 3000 and the typical error far beyond). The FLT_MIN term allows
 * for devices that flush subnormal products to zero. A result within the bound can still
 * be slightly wrong; one outside it is certainly not a rounding difference. A wrong
 * element, index or tile edge gives errors of the order of scale and is caught. */
double refgemm_tolerance(int row_major, int64_t m, int64_t n, int64_t k, const float *want,
			 int64_t ldc);

/* Compare the m x n elements of got and want (both stored with ldc in the given layout)
 * with the tolerance above. Returns the number of mismatches (saturating at INT_MAX). An
 * element mismatches when |got - want| > tol, when got is NaN or infinite and want is
 * finite, or when want is NaN or infinite and got is not the same. *max_err (the largest
 * |got - want|, infinite for a non-finite mismatch) and *bad_i, *bad_j (where it is: the
 * worst mismatch when there is one) may be NULL. */
int refgemm_compare(int row_major, int64_t m, int64_t n, int64_t k, const float *got,
		    const float *want, int64_t ldc, double *max_err, int64_t *bad_i, int64_t *bad_j);

/* Fill x[0..n) with floats uniform in [-1, 1), multiples of 2^-23, from a splitmix64 stream
 * whose state is *state (any value, 0 included, is a fine seed); *state advances by n
 * draws. The CLI seeds one state with --seed and fills the stored A, B and C in that order,
 * each packed tightly (ld = its inner extent) in the chosen layout; a test that does the
 * same gets the same matrices. */
void refgemm_fill_random(float *x, size_t n, uint64_t *state);

#endif

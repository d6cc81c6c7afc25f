/* cblas-demo.c: a program that calls BLAS as any other would, for tests/test-cblas.sh.
 *
 * Runs a fixed set of single-precision products through cblas_sgemm and sgemm_ (both
 * layouts, every transpose pair, padded leading dimensions, alpha and beta, NaNs in a C
 * that beta 0 must not read) and checks each against a double-precision loop here. It is
 * built twice: linked against the system BLAS (run with LD_PRELOAD of the shim), and
 * linked against librxgemm-cblas alone (the shim finds the BLAS itself).
 *
 * Prints "products N big B" where B counts the products of at least
 * $RXGEMM_CBLAS_THRESHOLD multiply-adds (what the shim should send to the daemon), and
 * one line per failed check. Exit 0 when every result is right, 1 otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The standard signatures (cblas.h and the reference BLAS), declared here so that this
 * program needs no header of any particular BLAS. */
void cblas_sgemm(int layout, int trans_a, int trans_b, int m, int n, int k, float alpha,
		 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
void sgemm_(const char *trans_a, const char *trans_b, const int *m, const int *n, const int *k,
	    const float *alpha, const float *a, const int *lda, const float *b, const int *ldb,
	    const float *beta, float *c, const int *ldc);

enum { ROW = 101, COL = 102, NT = 111, T = 112 };

struct product {
	int fortran; /* through sgemm_ (column-major) */
	int layout, ta, tb, m, n, k, pad;
	float alpha, beta;
};

static const struct product products[] = {
	{ 0, ROW, NT, NT, 8, 8, 8, 0, 1.0f, 0.0f },
	{ 0, COL, NT, NT, 20, 30, 10, 3, 0.5f, 2.0f },
	{ 0, ROW, NT, NT, 150, 120, 110, 0, 1.0f, 0.0f },
	{ 0, ROW, T, NT, 131, 97, 103, 5, -1.5f, 0.25f },
	{ 0, COL, NT, T, 99, 140, 77, 0, 1.0f, 1.0f },
	{ 0, COL, T, T, 128, 65, 129, 7, 2.0f, 0.0f },
	{ 1, COL, NT, NT, 120, 111, 100, 2, 1.0f, -1.0f },
	{ 1, COL, T, NT, 70, 90, 160, 0, 0.75f, 0.0f },
};

static unsigned long long rng = 88172645463325252ull;

static float uniform(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Element (i, j) of a stored matrix of rows x cols in the layout, leading dimension ld. */
static size_t at(int row_major, int i, int j, int ld)
{
	return row_major ? (size_t)i * ld + j : i + (size_t)j * ld;
}

static int run(const struct product *p, long long threshold, int *big)
{
	int row = p->layout == ROW;
	/* Stored shapes: A is m x k (k x m transposed), B k x n (n x k), C m x n. */
	int ar = p->ta == T ? p->k : p->m, ac = p->ta == T ? p->m : p->k;
	int br = p->tb == T ? p->n : p->k, bc = p->tb == T ? p->k : p->n;
	int lda = (row ? ac : ar) + p->pad, ldb = (row ? bc : br) + p->pad;
	int ldc = (row ? p->n : p->m) + p->pad;
	size_t na = (size_t)lda * (row ? ar : ac), nb = (size_t)ldb * (row ? br : bc);
	size_t nc = (size_t)ldc * (row ? p->m : p->n);
	float *a = malloc(na * sizeof(float)), *b = malloc(nb * sizeof(float));
	float *c = malloc(nc * sizeof(float)), *c0 = malloc(nc * sizeof(float));
	int bad = 0;

	for (size_t i = 0; i < na; i++)
		a[i] = uniform();
	for (size_t i = 0; i < nb; i++)
		b[i] = uniform();
	for (size_t i = 0; i < nc; i++)
		c0[i] = c[i] = p->beta == 0.0f ? NAN : uniform();
	if ((long long)p->m * p->n * p->k >= threshold)
		(*big)++;
	if (p->fortran) {
		const char *sa = p->ta == T ? "T" : "N", *sb = p->tb == T ? "T" : "N";

		sgemm_(sa, sb, &p->m, &p->n, &p->k, &p->alpha, a, &lda, b, &ldb, &p->beta, c, &ldc);
	} else {
		cblas_sgemm(p->layout, p->ta, p->tb, p->m, p->n, p->k, p->alpha, a, lda, b, ldb,
			    p->beta, c, ldc);
	}
	for (int i = 0; i < p->m && !bad; i++)
		for (int j = 0; j < p->n && !bad; j++) {
			double sum = 0, mag = 0, want, got = c[at(row, i, j, ldc)];

			for (int q = 0; q < p->k; q++) {
				double x = p->ta == T ? a[at(row, q, i, lda)] : a[at(row, i, q, lda)];
				double y = p->tb == T ? b[at(row, j, q, ldb)] : b[at(row, q, j, ldb)];

				sum += x * y;
				mag += fabs(x * y);
			}
			want = p->alpha * sum;
			if (p->beta != 0.0f)
				want += p->beta * c0[at(row, i, j, ldc)];
			/* float32 sums of k terms: a few ulps of the magnitude per term. */
			if (!(fabs(got - want) <= 1e-5 * p->k * (fabs(p->alpha) * mag + 1.0))) {
				printf("FAIL: %s %d x %d x %d: C(%d, %d) = %g, want %g\n",
				       p->fortran ? "sgemm_" : "cblas_sgemm", p->m, p->n, p->k, i,
				       j, got, want);
				bad = 1;
			}
		}
	/* The padding between C's rows or columns is not the product's: left as it was. */
	for (int i = 0; i < (row ? p->m : p->n) && !bad; i++)
		for (int j = row ? p->n : p->m; j < ldc; j++) {
			size_t o = (size_t)i * ldc + j;

			if (memcmp(&c[o], &c0[o], sizeof(float))) {
				printf("FAIL: %d x %d x %d: padding of C changed\n", p->m, p->n, p->k);
				bad = 1;
				break;
			}
		}
	free(a);
	free(b);
	free(c);
	free(c0);
	return bad;
}

int main(void)
{
	const char *env = getenv("RXGEMM_CBLAS_THRESHOLD");
	long long threshold = env && *env ? atoll(env) : 128LL * 128 * 128;
	int big = 0, bad = 0;
	size_t n = sizeof(products) / sizeof(products[0]);

	if (env && !strcmp(env, "off"))
		threshold = -1;
	for (size_t i = 0; i < n; i++)
		bad |= run(&products[i], threshold < 0 ? (long long)1 << 62 : threshold, &big);
	printf("products %zu big %d\n", n, big);
	return bad;
}

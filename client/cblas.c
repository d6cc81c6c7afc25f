/* cblas.c: librxgemm-cblas, the standard cblas_sgemm and Fortran sgemm_ for programs that
 * already call BLAS. Loaded with LD_PRELOAD (or linked before the system BLAS), it sends
 * products of at least $RXGEMM_CBLAS_THRESHOLD multiply-adds (m * n * k) to rxgemmd and
 * hands every other call to the next BLAS: the one the program would have used without it
 * (dlsym RTLD_NEXT), else the system's libcblas.so.3 / libblas.so.3 alternative, else a
 * plain loop here. A call that the daemon cannot take (none answers, an error of any kind)
 * goes to the next BLAS as well, so that a program never breaks because of the daemon.
 *
 * Environment (read once, at the first call):
 *   RXGEMM_CBLAS_THRESHOLD  smallest m * n * k sent to the daemon (default below);
 *                           "off" sends none, 0 sends every call
 *   RXGEMM_CBLAS_VERBOSE    1: one line on stderr for each call, saying where it went
 *   RXGEMM_CBLAS_NEXT       a library to take the next BLAS from, before the defaults
 *   RXGEMM_SOCKET           the daemon's socket (as for every librxgemm client)
 * docs/librxgemm-cblas.7 is the user's documentation. */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rxgemm.h"

#define CBLAS_EXPORT __attribute__((visibility("default")))

/* Below this many multiply-adds a product costs less on the CPU's own BLAS than the round
 * trip to the daemon (docs/PERFORMANCE.md, "The CBLAS shim": against the reference BLAS
 * a daemon on PoCL wins from about 72^3; 128^3 leaves room for a faster CPU BLAS). */
#define THRESHOLD_DEFAULT ((int64_t)128 * 128 * 128)
/* After the daemon fails to answer, the calls go to the CPU for this long before the next
 * attempt to connect, so that a program without a daemon does not pay a connect per call. */
#define RETRY_NS ((uint64_t)1000000000)

/* The CBLAS enumerations' values, fixed by the standard (cblas.h is not needed to build). */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_COL_MAJOR = 102 };
enum { CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112, CBLAS_CONJ_TRANS = 113 };

typedef void cblas_sgemm_fn(int layout, int trans_a, int trans_b, int m, int n, int k,
			    float alpha, const float *a, int lda, const float *b, int ldb,
			    float beta, float *c, int ldc);
/* gfortran's sgemm_ takes the two character arguments' lengths at the end. */
typedef void sgemm_fn(const char *trans_a, const char *trans_b, const int *m, const int *n,
		      const int *k, const float *alpha, const float *a, const int *lda,
		      const float *b, const int *ldb, const float *beta, float *c, const int *ldc,
		      size_t trans_a_len, size_t trans_b_len);

CBLAS_EXPORT void cblas_sgemm(int layout, int trans_a, int trans_b, int m, int n, int k,
			      float alpha, const float *a, int lda, const float *b, int ldb,
			      float beta, float *c, int ldc);
CBLAS_EXPORT void sgemm_(const char *trans_a, const char *trans_b, const int *m, const int *n,
			 const int *k, const float *alpha, const float *a, const int *lda,
			 const float *b, const int *ldb, const float *beta, float *c,
			 const int *ldc);

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static int64_t threshold = THRESHOLD_DEFAULT; /* -1: never the daemon */
static bool verbose;
static cblas_sgemm_fn *next_cblas_sgemm;
static sgemm_fn *next_sgemm;

/* The one connection of the process, shared by its threads (a librxgemm handle may be used
 * by several at once). users counts the calls using it; a broken one is closed by the last
 * of them. pid: a child after fork must not use its parent's connection. */
static pthread_mutex_t conn_lock = PTHREAD_MUTEX_INITIALIZER;
static rxg_client *conn;
static pid_t conn_pid;
static unsigned conn_users;
static bool conn_broken;
static uint64_t conn_retry_ns;

/* Set while this thread runs the next BLAS: a cblas_sgemm that calls sgemm_ (as the
 * reference CBLAS does, and finds ours first) must not come back to the daemon. */
static _Thread_local bool in_next;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *next_symbol(const char *name)
{
	static const char *const libs[] = { "libcblas.so.3", "libblas.so.3", "libopenblas.so.0" };
	const char *env = getenv("RXGEMM_CBLAS_NEXT");
	void *sym;

	if (env && *env) {
		void *h = dlopen(env, RTLD_NOW | RTLD_LOCAL);

		if (h && (sym = dlsym(h, name)))
			return sym;
	}
	/* The BLAS the program would have called: loaded after us (preloaded or linked first). */
	if ((sym = dlsym(RTLD_NEXT, name)))
		return sym;
	/* Linked instead of the system BLAS: take it from the library itself. */
	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		void *h = dlopen(libs[i], RTLD_NOW | RTLD_LOCAL);

		if (h && (sym = dlsym(h, name)))
			return sym;
	}
	return NULL;
}

static void setup(void)
{
	const char *env = getenv("RXGEMM_CBLAS_THRESHOLD");

	if (env && *env) {
		char *end;
		long long v;

		errno = 0;
		v = strtoll(env, &end, 10);
		if (!strcmp(env, "off"))
			threshold = -1;
		else if (!errno && *end == '\0' && v >= 0)
			threshold = v;
		/* Anything else keeps the default: a typo must not stop the program. */
	}
	env = getenv("RXGEMM_CBLAS_VERBOSE");
	verbose = env && *env && strcmp(env, "0") != 0;
	next_cblas_sgemm = (cblas_sgemm_fn *)next_symbol("cblas_sgemm");
	next_sgemm = (sgemm_fn *)next_symbol("sgemm_");
}

/* A connection to use, or NULL (none answers, or not yet time to try again). */
static rxg_client *conn_get(void)
{
	rxg_client *c = NULL;

	pthread_mutex_lock(&conn_lock);
	if (conn && conn_pid != getpid()) {
		/* Forked: the socket is the parent's. Forget it without a word on it. */
		conn = NULL;
		conn_users = 0;
		conn_broken = false;
	}
	if (!conn && !conn_broken && now_ns() >= conn_retry_ns) {
		char name[64];
		int rc;

		snprintf(name, sizeof(name), "librxgemm-cblas:%ld", (long)getpid());
		rc = rxg_connect(NULL, name, &conn);
		if (rc != RXG_OK) {
			if (verbose)
				fprintf(stderr, "librxgemm-cblas: no daemon (%s: %s); the CPU's BLAS "
					"computes\n", rxg_strerror(rc), rxg_errmsg(NULL));
			conn = NULL;
			conn_retry_ns = now_ns() + RETRY_NS;
		} else {
			conn_pid = getpid();
		}
	}
	if (conn && !conn_broken) {
		conn_users++;
		c = conn;
	}
	pthread_mutex_unlock(&conn_lock);
	return c;
}

/* Done with c; lost: the connection failed, close it once no other call uses it. */
static void conn_put(rxg_client *c, bool lost)
{
	pthread_mutex_lock(&conn_lock);
	if (c == conn) {
		if (lost)
			conn_broken = true;
		if (--conn_users == 0 && conn_broken) {
			rxg_close(conn);
			conn = NULL;
			conn_broken = false;
			conn_retry_ns = now_ns() + RETRY_NS;
		}
	}
	pthread_mutex_unlock(&conn_lock);
}

static bool conn_lost(int rc)
{
	return rc == RXG_EIO || rc == RXG_EPROTO || rc == RXG_EVERSION || rc == RXG_ESHUTDOWN ||
	       rc == RXG_EPERM || rc == RXG_ECONNECT;
}

/* Try the daemon with a column- or row-major product; true when C holds the result. The
 * arguments are valid (checked by the caller) and big enough to be worth it. */
static bool daemon_gemm(enum rxg_layout layout, bool trans_a, bool trans_b, int m, int n, int k,
			float alpha, const float *a, int lda, const float *b, int ldb, float beta,
			float *c, int ldc)
{
	struct rxg_gemm_args args = {
		.layout = layout, .trans_a = trans_a, .trans_b = trans_b,
		.m = m, .n = n, .k = k, .alpha = alpha, .beta = beta,
		.a = a, .lda = lda, .b = b, .ldb = ldb, .c = c, .ldc = ldc,
	};
	rxg_client *cl = conn_get();
	int rc;

	if (!cl)
		return false;
	rc = rxg_gemm(cl, &args, NULL);
	if (rc != RXG_OK && verbose)
		fprintf(stderr, "librxgemm-cblas: the daemon failed %d x %d x %d (%s: %s); the "
			"CPU's BLAS computes\n", m, n, k, rxg_strerror(rc), rxg_errmsg(cl));
	conn_put(cl, conn_lost(rc));
	return rc == RXG_OK;
}

/* The last resort when no BLAS can be found: the product in plain loops, column-major. */
static void loop_gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
		      const float *a, int lda, const float *b, int ldb, float beta, float *c,
		      int ldc)
{
	for (int j = 0; j < n; j++)
		for (int i = 0; i < m; i++) {
			double sum = 0;

			for (int p = 0; p < k; p++) {
				float x = trans_a ? a[p + (size_t)i * lda] : a[i + (size_t)p * lda];
				float y = trans_b ? b[j + (size_t)p * ldb] : b[p + (size_t)j * ldb];

				sum += (double)x * y;
			}
			float *dst = &c[i + (size_t)j * ldc];
			*dst = (float)(alpha * sum + (beta == 0.0f ? 0.0 : (double)beta * *dst));
		}
}

/* Whether a product of these arguments goes to the daemon: big enough, and well-formed
 * (a malformed call is the next BLAS's to report, as it would have without us). rows_a,
 * rows_b, rows_c: the leading dimension each stored matrix needs at least. */
static bool worth_sending(int m, int n, int k, int lda, int rows_a, int ldb, int rows_b,
			  int ldc, int rows_c)
{
	if (threshold < 0 || in_next || m <= 0 || n <= 0 || k <= 0)
		return false;
	if (lda < (rows_a > 1 ? rows_a : 1) || ldb < (rows_b > 1 ? rows_b : 1) ||
	    ldc < (rows_c > 1 ? rows_c : 1))
		return false;
	return (int64_t)m * n * k >= threshold;
}

CBLAS_EXPORT void cblas_sgemm(int layout, int trans_a, int trans_b, int m, int n, int k,
			      float alpha, const float *a, int lda, const float *b, int ldb,
			      float beta, float *c, int ldc)
{
	bool row = layout == CBLAS_ROW_MAJOR;
	bool ta = trans_a != CBLAS_NO_TRANS, tb = trans_b != CBLAS_NO_TRANS;
	bool valid = (row || layout == CBLAS_COL_MAJOR) &&
		     trans_a >= CBLAS_NO_TRANS && trans_a <= CBLAS_CONJ_TRANS &&
		     trans_b >= CBLAS_NO_TRANS && trans_b <= CBLAS_CONJ_TRANS;
	/* The stored matrices' leading extent: rows in column-major, columns in row-major. */
	int rows_a = row ? (ta ? m : k) : (ta ? k : m);
	int rows_b = row ? (tb ? k : n) : (tb ? n : k);
	int rows_c = row ? n : m;

	pthread_once(&setup_once, setup);
	if (valid && worth_sending(m, n, k, lda, rows_a, ldb, rows_b, ldc, rows_c)) {
		if (daemon_gemm(row ? RXG_ROW_MAJOR : RXG_COL_MAJOR, ta, tb, m, n, k, alpha, a,
				lda, b, ldb, beta, c, ldc)) {
			if (verbose)
				fprintf(stderr, "librxgemm-cblas: cblas_sgemm %d x %d x %d on the "
					"daemon\n", m, n, k);
			return;
		}
	}
	if (verbose)
		fprintf(stderr, "librxgemm-cblas: cblas_sgemm %d x %d x %d on the CPU\n", m, n, k);
	if (next_cblas_sgemm) {
		bool was = in_next;

		in_next = true;
		next_cblas_sgemm(layout, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta,
				 c, ldc);
		in_next = was;
	} else if (valid && m > 0 && n > 0) {
		/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T. */
		if (row)
			loop_gemm(tb, ta, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc);
		else
			loop_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	}
}

static int trans_of(const char *t)
{
	switch (t ? *t : 0) {
	case 'N': case 'n':
		return 0;
	case 'T': case 't': case 'C': case 'c':
		return 1;
	default:
		return -1;
	}
}

CBLAS_EXPORT void sgemm_(const char *trans_a, const char *trans_b, const int *m, const int *n,
			 const int *k, const float *alpha, const float *a, const int *lda,
			 const float *b, const int *ldb, const float *beta, float *c,
			 const int *ldc)
{
	int ta = trans_of(trans_a), tb = trans_of(trans_b);

	pthread_once(&setup_once, setup);
	if (ta >= 0 && tb >= 0 &&
	    worth_sending(*m, *n, *k, *lda, ta ? *k : *m, *ldb, tb ? *n : *k, *ldc, *m)) {
		if (daemon_gemm(RXG_COL_MAJOR, ta, tb, *m, *n, *k, *alpha, a, *lda, b, *ldb,
				*beta, c, *ldc)) {
			if (verbose)
				fprintf(stderr, "librxgemm-cblas: sgemm_ %d x %d x %d on the daemon\n",
					*m, *n, *k);
			return;
		}
	}
	if (verbose)
		fprintf(stderr, "librxgemm-cblas: sgemm_ %d x %d x %d on the CPU\n", *m, *n, *k);
	if (next_sgemm) {
		bool was = in_next;

		in_next = true;
		next_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 1, 1);
		in_next = was;
	} else if (ta >= 0 && tb >= 0 && *m > 0 && *n > 0) {
		loop_gemm(ta, tb, *m, *n, *k, *alpha, a, *lda, b, *ldb, *beta, c, *ldc);
	}
}

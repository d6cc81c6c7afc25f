/* test-server.c: a real rxgemmd, driven through librxgemm and through hand-built frames.
 *
 * Each TCase but "shutdown" gets its own daemon, started once in an unchecked fixture so
 * that every test (each in its own forked process) talks to the same one. Results are
 * checked against refgemm, the CPU reference, or against known answers.
 *
 *   library:   rxg_* calls: shapes, layouts, transposes, alpha/beta, NaN C, padding,
 *              status counters, server info
 *   protocol:  raw frames: Hello, validation of every GemmRequest field, oversized,
 *              garbage and unknown-field frames, pipelining (daemon with --max-frame 1M)
 *   clients:   four threads at once, clients that vanish mid-request
 *   shutdown:  SIGTERM/SIGINT on daemons of their own, idle and busy, stale socket file */
#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon-run.h"
#include "frame.h"
#include "raw.h"
#include "refgemm.h"
#include "rxgemm.h"
#include "rxgemm.pb-c.h"


static struct daemon_run g_daemon;
static int g_teardown_failed;

/* ------------------------------------------------------------------------------------- */
/* Fixture: one daemon per TCase. Runs in the runner process (unchecked), so a failure here
 * exits the whole program: 77 when there is no device, 1 otherwise. */

static void daemon_up(const char *const *args)
{
	int rc = daemon_run_start(&g_daemon, args);
	if (rc == DAEMON_RUN_SKIP) {
		daemon_run_cleanup(&g_daemon);
		exit(DAEMON_RUN_SKIP);
	}
	if (rc != 0) {
		fprintf(stderr, "test-server: cannot start rxgemmd\n");
		daemon_run_cleanup(&g_daemon);
		exit(EXIT_FAILURE);
	}
}

static void setup_default(void)
{
	daemon_up(NULL);
}

static void setup_small_frames(void)
{
	static const char *const args[] = { "--max-frame", "1M", NULL };
	daemon_up(args);
}

static void setup_big_frames(void)
{
	static const char *const args[] = { "--max-frame", "64M", NULL };
	daemon_up(args);
}

static void daemon_down(void)
{
	int st = daemon_run_stop(&g_daemon, SIGTERM, 60);
	if (st != 0) {
		fprintf(stderr, "test-server: rxgemmd exited with %d after SIGTERM (want 0)\n", st);
		daemon_run_dump_log(&g_daemon);
		g_teardown_failed = 1;
	}
	daemon_run_cleanup(&g_daemon);
}

/* ------------------------------------------------------------------------------------- */
/* Problems and their reference answers. */

struct prob {
	int row_major, trans_a, trans_b;
	int64_t m, n, k;
	float alpha, beta;
	int64_t lda, ldb, ldc;              /* resolved */
	int64_t a_inner, a_outer, b_inner, b_outer, c_inner, c_outer;
	int64_t a_len, b_len, c_len;        /* allocated: ld * outer */
	float *a, *b, *c0;                  /* c0: C as the caller holds it before the call */
	float *want;                        /* c0 with the m x n result (refgemm) */
};

static void extents(int row_major, int64_t rows, int64_t cols, int64_t *inner, int64_t *outer)
{
	*inner = row_major ? cols : rows;
	*outer = row_major ? rows : cols;
}

static int is_logical(int64_t idx, int64_t ld, int64_t inner, int64_t outer)
{
	return idx / ld < outer && idx % ld < inner;
}

/* c_fill: 0 random C, 1 C full of NaN (padding included). Paddings are added to the
 * tightest leading dimensions. */
static void prob_make(struct prob *p, int row_major, int ta, int tb, int64_t m, int64_t n,
		      int64_t k, float alpha, float beta, int64_t pad_a, int64_t pad_b,
		      int64_t pad_c, int c_nan, uint64_t seed)
{
	memset(p, 0, sizeof(*p));
	p->row_major = row_major;
	p->trans_a = ta;
	p->trans_b = tb;
	p->m = m;
	p->n = n;
	p->k = k;
	p->alpha = alpha;
	p->beta = beta;
	extents(row_major, ta ? k : m, ta ? m : k, &p->a_inner, &p->a_outer);
	extents(row_major, tb ? n : k, tb ? k : n, &p->b_inner, &p->b_outer);
	extents(row_major, m, n, &p->c_inner, &p->c_outer);
	p->lda = p->a_inner + pad_a;
	p->ldb = p->b_inner + pad_b;
	p->ldc = p->c_inner + pad_c;
	p->a_len = p->lda * p->a_outer;
	p->b_len = p->ldb * p->b_outer;
	p->c_len = p->ldc * p->c_outer;
	p->a = malloc(sizeof(float) * (size_t)p->a_len);
	p->b = malloc(sizeof(float) * (size_t)p->b_len);
	p->c0 = malloc(sizeof(float) * (size_t)p->c_len);
	p->want = malloc(sizeof(float) * (size_t)p->c_len);
	ck_assert(p->a && p->b && p->c0 && p->want);
	uint64_t state = seed;
	refgemm_fill_random(p->a, (size_t)p->a_len, &state);
	refgemm_fill_random(p->b, (size_t)p->b_len, &state);
	if (c_nan) {
		for (int64_t i = 0; i < p->c_len; i++)
			p->c0[i] = NAN;
	} else {
		refgemm_fill_random(p->c0, (size_t)p->c_len, &state);
	}
	memcpy(p->want, p->c0, sizeof(float) * (size_t)p->c_len);
	/* Independent of refgemm's own beta == 0 rule: the reference starts from zeros. */
	if (beta == 0.0f)
		for (int64_t i = 0; i < p->c_len; i++)
			if (is_logical(i, p->ldc, p->c_inner, p->c_outer))
				p->want[i] = 0.0f;
	refgemm(row_major, ta, tb, m, n, k, alpha, p->a, p->lda, p->b, p->ldb, beta, p->want,
		p->ldc);
}

static void prob_free(struct prob *p)
{
	free(p->a);
	free(p->b);
	free(p->c0);
	free(p->want);
	memset(p, 0, sizeof(*p));
}

static void prob_describe(const struct prob *p, char *buf, size_t len)
{
	snprintf(buf, len,
		 "%s%s%s m=%" PRId64 " n=%" PRId64 " k=%" PRId64 " alpha=%g beta=%g lda=%" PRId64
		 " ldb=%" PRId64 " ldc=%" PRId64,
		 p->row_major ? "row-major" : "col-major", p->trans_a ? " transA" : "",
		 p->trans_b ? " transB" : "", p->m, p->n, p->k, (double)p->alpha, (double)p->beta,
		 p->lda, p->ldb, p->ldc);
}

/* Check got[0..got_len) against the reference. Padding (elements outside m x n) must be
 * bit-for-bit pad_want (c0, or zeros when pad_want is NULL). Returns 0 or -1 with a
 * sentence in msg. Thread-safe: asserts nothing. */
static int prob_verify(const struct prob *p, const float *got, int64_t got_len,
		       const float *pad_want, char *msg, size_t msg_len)
{
	char what[256];
	double max_err = 0;
	int64_t bi = -1, bj = -1;

	prob_describe(p, what, sizeof(what));
	for (int64_t i = 0; i < got_len; i++) {
		if (is_logical(i, p->ldc, p->c_inner, p->c_outer)) {
			if (!isfinite(got[i])) {
				snprintf(msg, msg_len, "%s: element at offset %" PRId64 " is %g",
					 what, i, (double)got[i]);
				return -1;
			}
		} else {
			float want = pad_want ? pad_want[i] : 0.0f;
			if (memcmp(&got[i], &want, sizeof(float)) != 0) {
				snprintf(msg, msg_len,
					 "%s: padding at offset %" PRId64 " is %g, want %g as sent",
					 what, i, (double)got[i], (double)want);
				return -1;
			}
		}
	}
	int bad = refgemm_compare(p->row_major, p->m, p->n, p->k, got, p->want, p->ldc, &max_err,
				  &bi, &bj);
	if (bad) {
		int64_t at = p->row_major ? bi * p->ldc + bj : bi + bj * p->ldc;
		snprintf(msg, msg_len,
			 "%s: %d elements differ from the CPU reference; worst (%" PRId64 ", %" PRId64
			 ") got %g want %g (error %g)",
			 what, bad, bi, bj, (double)got[at], (double)p->want[at], max_err);
		return -1;
	}
	return 0;
}

static int device_is_pocl(const char *device)
{
	return device && (strcasestr(device, "pocl") || strcasestr(device, "Portable Computing"));
}

/* Whether word occurs in s as a whole word (not inside a longer identifier): "m" in
 * "m must be positive" or "'m' is 0", but not in "the matrix". */
static int mentions_word(const char *s, const char *word)
{
	size_t wl = strlen(word);
	for (const char *p = s; (p = strstr(p, word)); p++) {
		int before_ok = p == s || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
		int after_ok = !(isalnum((unsigned char)p[wl]) || p[wl] == '_');
		if (before_ok && after_ok)
			return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------- */
/* Library helpers. */

static rxg_client *lib_connect(void)
{
	rxg_client *c = NULL;
	int rc = rxg_connect(g_daemon.socket_path, "test-server", &c);
	ck_assert_msg(rc == RXG_OK, "rxg_connect(%s): %s", g_daemon.socket_path,
		      rxg_strerror(rc));
	ck_assert_ptr_nonnull(c);
	return c;
}

static struct rxg_status *lib_status(rxg_client *c)
{
	struct rxg_status *st = NULL;
	int rc = rxg_status(c, &st);
	ck_assert_msg(rc == RXG_OK, "rxg_status: %s: %s", rxg_strerror(rc), rxg_errmsg(c));
	ck_assert_ptr_nonnull(st);
	return st;
}

/* Run p through rxg_gemm on a copy of c0 and return 0 or -1 with msg (thread-safe). */
static int lib_run(rxg_client *c, const struct prob *p, int send_ld, struct rxg_timings *t,
		   char *msg, size_t msg_len)
{
	struct rxg_gemm_args args;
	struct rxg_timings tim;
	float *got = malloc(sizeof(float) * (size_t)p->c_len);
	char what[256];
	int rc, ret = -1;

	if (!got) {
		snprintf(msg, msg_len, "out of memory");
		return -1;
	}
	memcpy(got, p->c0, sizeof(float) * (size_t)p->c_len);
	memset(&args, 0, sizeof(args));
	memset(&tim, 0, sizeof(tim));
	args.layout = p->row_major ? RXG_ROW_MAJOR : RXG_COL_MAJOR;
	args.trans_a = p->trans_a;
	args.trans_b = p->trans_b;
	args.m = p->m;
	args.n = p->n;
	args.k = p->k;
	args.alpha = p->alpha;
	args.beta = p->beta;
	args.a = p->a;
	args.b = p->b;
	args.c = got;
	/* send_ld 0: pass 0 ("tightest") where the leading dimension is the tightest one. */
	args.lda = send_ld || p->lda != p->a_inner ? p->lda : 0;
	args.ldb = send_ld || p->ldb != p->b_inner ? p->ldb : 0;
	args.ldc = send_ld || p->ldc != p->c_inner ? p->ldc : 0;
	rc = rxg_gemm(c, &args, &tim);
	prob_describe(p, what, sizeof(what));
	if (rc != RXG_OK) {
		snprintf(msg, msg_len, "%s: rxg_gemm: %s: %s", what, rxg_strerror(rc),
			 rxg_errmsg(c));
		goto out;
	}
	if (tim.total_ns == 0) {
		snprintf(msg, msg_len, "%s: timings.total_ns is 0", what);
		goto out;
	}
	if (device_is_pocl(rxg_server_info(c)->device) && tim.kernel_ns == 0) {
		snprintf(msg, msg_len, "%s: timings.kernel_ns is 0 on PoCL", what);
		goto out;
	}
	if (prob_verify(p, got, p->c_len, p->c0, msg, msg_len) < 0)
		goto out;
	if (t)
		*t = tim;
	ret = 0;
out:
	free(got);
	return ret;
}

static void lib_case(rxg_client *c, int row_major, int ta, int tb, int64_t m, int64_t n,
		     int64_t k, float alpha, float beta, int64_t pad_a, int64_t pad_b,
		     int64_t pad_c, int c_nan, uint64_t seed)
{
	struct prob p;
	char msg[1024];

	prob_make(&p, row_major, ta, tb, m, n, k, alpha, beta, pad_a, pad_b, pad_c, c_nan, seed);
	int rc = lib_run(c, &p, (int)(seed & 1), NULL, msg, sizeof(msg));
	prob_free(&p);
	ck_assert_msg(rc == 0, "%s", msg);
}

/* Fill g from p. a_len/b_len/c_len: floats to send (-1: all of p's arrays, -2: the least
 * the contract allows, ld * (outer - 1) + inner; c_len 0 sends no C). send_ld 0 sends 0
 * for tight leading dimensions. */
static void gemm_req_fill(Rxgemm__GemmRequest *g, const struct prob *p, int64_t a_len,
			  int64_t b_len, int64_t c_len, int send_ld)
{
	rxgemm__gemm_request__init(g);
	g->m = p->m;
	g->n = p->n;
	g->k = p->k;
	g->trans_a = p->trans_a;
	g->trans_b = p->trans_b;
	g->alpha = p->alpha;
	g->beta = p->beta;
	g->layout = p->row_major ? RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR
				 : RXGEMM__LAYOUT__LAYOUT_COL_MAJOR;
	g->lda = send_ld || p->lda != p->a_inner ? p->lda : 0;
	g->ldb = send_ld || p->ldb != p->b_inner ? p->ldb : 0;
	g->ldc = send_ld || p->ldc != p->c_inner ? p->ldc : 0;
	if (a_len == -1)
		a_len = p->a_len;
	else if (a_len == -2)
		a_len = p->lda * (p->a_outer - 1) + p->a_inner;
	if (b_len == -1)
		b_len = p->b_len;
	else if (b_len == -2)
		b_len = p->ldb * (p->b_outer - 1) + p->b_inner;
	if (c_len == -1)
		c_len = p->c_len;
	else if (c_len == -2)
		c_len = p->ldc * (p->c_outer - 1) + p->c_inner;
	g->a.data = (uint8_t *)p->a;
	g->a.len = sizeof(float) * (size_t)a_len;
	g->b.data = (uint8_t *)p->b;
	g->b.len = sizeof(float) * (size_t)b_len;
	g->c.data = (uint8_t *)p->c0;
	g->c.len = sizeof(float) * (size_t)c_len;
}

static void raw_send_gemm(struct raw *r, uint64_t id, Rxgemm__GemmRequest *g)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;

	req.request_id = id;
	req.body_case = RXGEMM__REQUEST__BODY_GEMM;
	req.gemm = g;
	raw_send(r, &req);
}

/* Check a GEMM reply against p. c_sent: whether C went with the request (then padding
 * must come back as sent, else as zeros). */
static void raw_check_gemm_reply(const Rxgemm__Reply *rep, const struct prob *p, int c_sent)
{
	char msg[1024], what[256];
	int64_t want_len = p->ldc * (p->c_outer - 1) + p->c_inner;

	prob_describe(p, what, sizeof(what));
	ck_assert_msg(rep->status == RXGEMM__STATUS__STATUS_OK, "%s: status %d: %s", what,
		      rep->status, rep->error);
	ck_assert_msg(rep->body_case == RXGEMM__REPLY__BODY_GEMM, "%s: reply body %d, want gemm",
		      what, rep->body_case);
	ck_assert_msg(rep->gemm->c.len == sizeof(float) * (size_t)want_len,
		      "%s: reply C has %zu bytes, want %" PRId64 " floats", what, rep->gemm->c.len,
		      want_len);
	ck_assert_msg(rep->gemm->flops == (uint64_t)(2 * p->m * p->n * p->k),
		      "%s: flops %" PRIu64 ", want %" PRId64, what, rep->gemm->flops,
		      2 * p->m * p->n * p->k);
	ck_assert_msg(rep->timings && rep->timings->total_ns > 0, "%s: no total_ns in timings",
		      what);
	float *got = malloc(rep->gemm->c.len + 1);
	ck_assert_ptr_nonnull(got);
	memcpy(got, rep->gemm->c.data, rep->gemm->c.len);
	int rc = prob_verify(p, got, want_len, c_sent ? p->c0 : NULL, msg, sizeof(msg));
	free(got);
	ck_assert_msg(rc == 0, "%s", msg);
}

/* A small but unremarkable GEMM on r, checked: the connection still serves. */
static void raw_good_gemm(struct raw *r, uint64_t id)
{
	struct prob p;
	Rxgemm__GemmRequest g;

	prob_make(&p, (int)(id & 1), 0, 1, 19, 23, 17, 1.5f, 0.5f, 2, 0, 1, 0, id);
	gemm_req_fill(&g, &p, -1, -1, -1, 0);
	raw_send_gemm(r, id, &g);
	Rxgemm__Reply *rep = raw_expect(r, id, RXGEMM__STATUS__STATUS_OK, NULL);
	raw_check_gemm_reply(rep, &p, 1);
	rxgemm__reply__free_unpacked(rep, NULL);
	prob_free(&p);
}

/* ------------------------------------------------------------------------------------- */
/* library */

START_TEST(test_lib_server_info)
{
	rxg_client *c1 = lib_connect(), *c2 = lib_connect();
	const struct rxg_server_info *i1 = rxg_server_info(c1), *i2 = rxg_server_info(c2);

	ck_assert_ptr_nonnull(i1);
	ck_assert_ptr_nonnull(i2);
	ck_assert_uint_eq(i1->protocol_version, RXGEMM_PROTOCOL_VERSION);
	ck_assert_str_eq(i1->daemon_version, PACKAGE_VERSION);
	ck_assert_msg(i1->device && strlen(i1->device) > 0, "server info has no device");
	ck_assert_uint_gt(i1->max_frame_bytes, 0);
	ck_assert_msg(i1->client_id != i2->client_id, "two connections share client_id %u",
		      i1->client_id);

	struct rxg_status *st = lib_status(c1);
	ck_assert_str_eq(st->daemon_version, PACKAGE_VERSION);
	ck_assert_str_eq(st->device, i1->device);
	ck_assert_uint_ge(st->clients_connected, 2);
	ck_assert_uint_gt(st->uptime_ns, 0);
	ck_assert_uint_gt(st->device_max_alloc_bytes, 0);
	ck_assert_uint_ge(st->device_global_mem_bytes, st->device_max_alloc_bytes);
	size_t in_use = 0, which = 0;
	for (size_t i = 0; i < st->n_devices; i++)
		if (st->devices[i].in_use) {
			in_use++;
			which = i;
		}
	ck_assert_msg(in_use == 1, "%zu of %zu devices are marked in use, want 1", in_use,
		      st->n_devices);
	ck_assert_msg(strstr(i1->device, st->devices[which].name),
		      "the device in use (%s) is not the one in server info (%s)",
		      st->devices[which].name, i1->device);
	ck_assert_uint_gt(st->devices[which].compute_units, 0);
	rxg_status_free(st);
	rxg_close(c2);
	rxg_close(c1);
}
END_TEST

START_TEST(test_lib_connect_fails)
{
	rxg_client *c = (rxg_client *)&c;
	char path[300];

	snprintf(path, sizeof(path), "%s/no-such.sock", g_daemon.dir);
	int rc = rxg_connect(path, NULL, &c);
	ck_assert_msg(rc == RXG_ECONNECT, "connect to a missing socket: %d (%s), want "
					  "RXG_ECONNECT",
		      rc, rxg_strerror(rc));
	ck_assert_ptr_null(c);

	/* A path that exists but where nothing listens. */
	c = (rxg_client *)&c;
	rc = rxg_connect(g_daemon.log_path, NULL, &c);
	ck_assert_msg(rc == RXG_ECONNECT, "connect to a regular file: %d (%s)", rc,
		      rxg_strerror(rc));
	ck_assert_ptr_null(c);
	ck_assert_str_ne(rxg_strerror(RXG_ECONNECT), rxg_strerror(RXG_OK));
	ck_assert_ptr_nonnull(rxg_strerror(12345));
}
END_TEST

START_TEST(test_lib_square)
{
	rxg_client *c = lib_connect();
	lib_case(c, 1, 0, 0, 128, 128, 128, 1.0f, 0.0f, 0, 0, 0, 0, 1);
	lib_case(c, 0, 0, 0, 64, 64, 64, 1.0f, 0.0f, 0, 0, 0, 0, 2);
	lib_case(c, 1, 0, 0, 1, 1, 1, 2.0f, 0.0f, 0, 0, 0, 0, 3);
	rxg_close(c);
}
END_TEST

START_TEST(test_lib_odd)
{
	rxg_client *c = lib_connect();
	lib_case(c, 1, 0, 0, 67, 129, 33, 1.0f, 0.0f, 0, 0, 0, 0, 11);
	lib_case(c, 0, 0, 0, 67, 129, 33, 1.0f, 0.0f, 0, 0, 0, 0, 12);
	/* Degenerate extents: a column, a row, an outer product, a dot product. */
	lib_case(c, 1, 0, 0, 131, 1, 7, 1.0f, 0.0f, 0, 0, 0, 0, 13);
	lib_case(c, 0, 0, 0, 1, 97, 5, 1.0f, 0.0f, 0, 0, 0, 0, 14);
	lib_case(c, 1, 0, 0, 45, 51, 1, 1.0f, 0.0f, 0, 0, 0, 0, 15);
	lib_case(c, 0, 0, 0, 1, 1, 301, 1.0f, 0.0f, 0, 0, 0, 0, 16);
	rxg_close(c);
}
END_TEST

/* Every transpose in both layouts, on a shape where m, n and k all differ so that a
 * transpose applied to the wrong operand cannot come out right. */
START_TEST(test_lib_transposes)
{
	rxg_client *c = lib_connect();
	for (int rm = 0; rm < 2; rm++)
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++)
				lib_case(c, rm, ta, tb, 45, 37, 29, 1.0f, 0.0f, 0, 0, 0, 0,
					 (uint64_t)(100 + rm * 4 + ta * 2 + tb));
	rxg_close(c);
}
END_TEST

/* The same logical product in both layouts gives the same numbers: C(i,j) taken from a
 * row-major run equals C(i,j) from a column-major run on the same logical A and B. */
START_TEST(test_lib_layouts_agree)
{
	enum { M = 33, N = 21, K = 40 };
	rxg_client *c = lib_connect();
	static float a_r[M * K], b_r[K * N], a_c[M * K], b_c[K * N], c_r[M * N], c_c[M * N];
	uint64_t state = 77;
	struct rxg_gemm_args args;

	refgemm_fill_random(a_r, M * K, &state);
	refgemm_fill_random(b_r, K * N, &state);
	for (int i = 0; i < M; i++)
		for (int l = 0; l < K; l++)
			a_c[i + l * M] = a_r[i * K + l];
	for (int l = 0; l < K; l++)
		for (int j = 0; j < N; j++)
			b_c[l + j * K] = b_r[l * N + j];
	memset(&args, 0, sizeof(args));
	args.m = M;
	args.n = N;
	args.k = K;
	args.alpha = 1.0f;
	args.layout = RXG_ROW_MAJOR;
	args.a = a_r;
	args.b = b_r;
	args.c = c_r;
	ck_assert_int_eq(rxg_gemm(c, &args, NULL), RXG_OK);
	args.layout = RXG_COL_MAJOR;
	args.a = a_c;
	args.b = b_c;
	args.c = c_c;
	ck_assert_int_eq(rxg_gemm(c, &args, NULL), RXG_OK);
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			double want = 0;
			for (int l = 0; l < K; l++)
				want += (double)a_r[i * K + l] * b_r[l * N + j];
			ck_assert_msg(fabs(c_r[i * N + j] - want) < 1e-4 &&
					      fabs(c_c[i + j * M] - want) < 1e-4,
				      "C(%d,%d): row-major %g, col-major %g, want %g", i, j,
				      (double)c_r[i * N + j], (double)c_c[i + j * M], want);
		}
	rxg_close(c);
}
END_TEST

START_TEST(test_lib_alpha_beta)
{
	rxg_client *c = lib_connect();
	lib_case(c, 1, 0, 0, 50, 60, 70, 0.75f, -1.5f, 0, 0, 0, 0, 21);
	lib_case(c, 0, 1, 0, 50, 60, 70, -2.0f, 1.0f, 0, 0, 0, 0, 22);
	lib_case(c, 1, 0, 1, 31, 17, 9, 0.0f, 3.0f, 0, 0, 0, 0, 23);	/* C = 3C */
	lib_case(c, 0, 1, 1, 31, 17, 9, 1.0f, 1.0f, 2, 3, 4, 0, 24);
	rxg_close(c);
}
END_TEST

/* beta == 0: C's old values are never read, so NaNs there must not reach the result;
 * the NaN padding between rows must stay as it was. */
START_TEST(test_lib_beta0_nan)
{
	rxg_client *c = lib_connect();
	lib_case(c, 1, 0, 0, 40, 30, 20, 1.0f, 0.0f, 0, 0, 0, 1, 31);
	lib_case(c, 0, 1, 1, 40, 30, 20, 0.5f, 0.0f, 0, 0, 5, 1, 32);
	lib_case(c, 1, 1, 0, 40, 30, 20, 2.0f, 0.0f, 1, 1, 3, 1, 33);
	rxg_close(c);
}
END_TEST

START_TEST(test_lib_leading_dims)
{
	rxg_client *c = lib_connect();
	int64_t seed = 40;
	for (int rm = 0; rm < 2; rm++)
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++)
				lib_case(c, rm, ta, tb, 29, 35, 23, 1.25f, -0.5f, 3, 5, 7, 0,
					 (uint64_t)seed++);
	lib_case(c, 1, 0, 0, 64, 64, 64, 1.0f, 0.0f, 64, 1, 100, 0, (uint64_t)seed++);
	rxg_close(c);
}
END_TEST

/* A strided batch through the library: each product lands in its own matrix of C, the
 * gaps between matrices stay as the caller had them, and a bad stride is refused. */
START_TEST(test_lib_batched)
{
	enum { M = 19, N = 23, K = 17, BATCH = 4, GAP = 5 };
	rxg_client *c = lib_connect();
	int64_t sa = M * K + GAP, sb = K * N + GAP, sc = M * N + GAP;
	float *a = malloc(sizeof(float) * (size_t)(sa * BATCH));
	float *b = malloc(sizeof(float) * (size_t)(sb * BATCH));
	float *got = malloc(sizeof(float) * (size_t)(sc * BATCH));
	float *want = malloc(sizeof(float) * (size_t)(M * N));
	uint64_t seed = 77;
	struct rxg_timings t;

	ck_assert(a && b && got && want);
	refgemm_fill_random(a, (size_t)(sa * BATCH), &seed);
	refgemm_fill_random(b, (size_t)(sb * BATCH), &seed);
	for (int64_t i = 0; i < sc * BATCH; i++)
		got[i] = -7.0f; /* the gaps must keep this */
	for (int rm = 0; rm < 2; rm++) {
		struct rxg_gemm_args g = { .layout = rm ? RXG_ROW_MAJOR : RXG_COL_MAJOR,
					   .m = M, .n = N, .k = K, .alpha = 1.0f, .a = a, .b = b,
					   .c = got, .batch_count = BATCH, .stride_a = sa,
					   .stride_b = sb, .stride_c = sc };
		ck_assert_int_eq(rxg_gemm(c, &g, &t), RXG_OK);
		for (int64_t i = 0; i < BATCH; i++) {
			refgemm(rm, 0, 0, M, N, K, 1.0f, a + i * sa, rm ? K : M, b + i * sb,
				rm ? N : K, 0.0f, want, rm ? N : M);
			ck_assert_int_eq(refgemm_compare(rm, M, N, K, got + i * sc, want, rm ? N : M,
							 NULL, NULL, NULL),
					 0);
			for (int64_t j = M * N; j < sc && i + 1 < BATCH; j++)
				ck_assert_float_eq(got[i * sc + j], -7.0f);
		}
		/* Matrices may not overlap. */
		g.stride_c = M * N - 1;
		ck_assert_int_eq(rxg_gemm(c, &g, &t), RXG_EINVAL);
		ck_assert_ptr_nonnull(strstr(rxg_errmsg(c), "stride"));
	}
	free(a), free(b), free(got), free(want);
	rxg_close(c);
}
END_TEST

START_TEST(test_lib_status_counters)
{
	rxg_client *c = lib_connect();
	uint32_t my_id = rxg_server_info(c)->client_id;
	struct rxg_status *s0 = lib_status(c);
	static const int64_t shapes[3][3] = { { 10, 20, 30 }, { 31, 7, 5 }, { 64, 48, 16 } };
	uint64_t flops = 0;

	for (int i = 0; i < 3; i++) {
		lib_case(c, i & 1, 0, 0, shapes[i][0], shapes[i][1], shapes[i][2], 1.0f, 0.0f, 0, 0,
			 0, 0, (uint64_t)(50 + i));
		flops += (uint64_t)(2 * shapes[i][0] * shapes[i][1] * shapes[i][2]);
	}
	struct rxg_status *s1 = lib_status(c);
	ck_assert_uint_eq(s1->jobs_ok, s0->jobs_ok + 3);
	ck_assert_uint_eq(s1->jobs_failed, s0->jobs_failed);
	ck_assert_uint_eq(s1->requests_rejected, s0->requests_rejected);
	ck_assert_uint_eq(s1->flops_total, s0->flops_total + flops);
	ck_assert_uint_gt(s1->kernel_ns_total, s0->kernel_ns_total);
	ck_assert_uint_eq(s1->jobs_queued, 0);
	ck_assert_uint_ge(s1->clients_connected, 1);
	ck_assert_uint_ge(s1->clients_total, s1->clients_connected);
	ck_assert_uint_gt(s1->uptime_ns, s0->uptime_ns);
	ck_assert_msg(s1->n_recent >= 3, "status lists %zu recent jobs after 3 ran", s1->n_recent);
	for (int i = 0; i < 3; i++) {
		const struct rxg_job_record *jr = &s1->recent[s1->n_recent - 3 + (size_t)i];
		ck_assert_msg(jr->m == shapes[i][0] && jr->n == shapes[i][1] &&
				      jr->k == shapes[i][2],
			      "recent job %d is %" PRId64 "x%" PRId64 "x%" PRId64 ", want "
			      "%" PRId64 "x%" PRId64 "x%" PRId64 " (oldest first)",
			      i, jr->m, jr->n, jr->k, shapes[i][0], shapes[i][1], shapes[i][2]);
		ck_assert_uint_eq(jr->client_id, my_id);
		ck_assert_int_eq(jr->status, RXG_OK);
		ck_assert_uint_gt(jr->timings.total_ns, 0);
	}

	/* m = 0 is refused, by the library or by the daemon, with RXG_EINVAL. */
	float one = 1.0f, out = 0.0f;
	struct rxg_gemm_args bad = { .layout = RXG_ROW_MAJOR, .m = 0, .n = 1, .k = 1,
				     .alpha = 1.0f, .a = &one, .b = &one, .c = &out };
	int rc = rxg_gemm(c, &bad, NULL);
	ck_assert_msg(rc == RXG_EINVAL, "rxg_gemm with m = 0: %d (%s), want RXG_EINVAL", rc,
		      rxg_strerror(rc));
	ck_assert_msg(rxg_errmsg(c)[0] != '\0', "no error message after a refused request");

	/* And one bad request that surely reaches the daemon. */
	struct raw r;
	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	struct prob p;
	Rxgemm__GemmRequest g;
	prob_make(&p, 1, 0, 0, 4, 4, 4, 1.0f, 0.0f, 0, 0, 0, 0, 5);
	gemm_req_fill(&g, &p, -1, -1, 0, 0);
	g.k = -4;
	raw_send_gemm(&r, 9, &g);
	rxgemm__reply__free_unpacked(raw_expect(&r, 9, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, NULL),
				     NULL);
	raw_close(&r);
	prob_free(&p);

	struct rxg_status *s2 = lib_status(c);
	ck_assert_msg(s2->requests_rejected >= s1->requests_rejected + 1 &&
			      s2->requests_rejected <= s1->requests_rejected + 2,
		      "requests_rejected went from %" PRIu64 " to %" PRIu64
		      " after 2 bad requests (one maybe stopped by the library)",
		      s1->requests_rejected, s2->requests_rejected);
	ck_assert_uint_eq(s2->jobs_ok, s1->jobs_ok);
	ck_assert_uint_eq(s2->jobs_failed, s1->jobs_failed);
	rxg_status_free(s0);
	rxg_status_free(s1);
	rxg_status_free(s2);
	rxg_close(c);
}
END_TEST

/* ------------------------------------------------------------------------------------- */
/* protocol (daemon started with --max-frame 1M) */

#define SMALL_MAX_FRAME 1048576u

START_TEST(test_proto_hello)
{
	struct raw r1, r2;

	raw_open(&r1, g_daemon.socket_path);
	raw_send_hello(&r1, 77777, RXGEMM_PROTOCOL_VERSION, "test-server raw");
	Rxgemm__Reply *rep = raw_expect(&r1, 77777, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_HELLO);
	Rxgemm__HelloReply *h = rep->hello;
	ck_assert_uint_eq(h->protocol_version, RXGEMM_PROTOCOL_VERSION);
	ck_assert_str_eq(h->daemon_version, PACKAGE_VERSION);
	ck_assert_msg(h->device && h->device[0], "HelloReply.device is empty");
	ck_assert_msg(h->max_frame_bytes == SMALL_MAX_FRAME,
		      "max_frame_bytes %" PRIu64 " with --max-frame 1M, want %u", h->max_frame_bytes,
		      SMALL_MAX_FRAME);
	int has_gemm = 0, has_status = 0;
	for (size_t i = 0; i < h->n_capabilities; i++) {
		has_gemm |= strcmp(h->capabilities[i], "gemm") == 0;
		has_status |= strcmp(h->capabilities[i], "status") == 0;
	}
	ck_assert_msg(has_gemm && has_status, "capabilities lack \"gemm\" or \"status\"");
	raw_open(&r2, g_daemon.socket_path);
	uint32_t id2 = raw_hello(&r2, "test-server raw", NULL);
	ck_assert_msg(id2 != h->client_id, "two connections share client_id %u", id2);
	rxgemm__reply__free_unpacked(rep, NULL);
	raw_good_gemm(&r1, 2);
	raw_good_gemm(&r2, 3);
	raw_close(&r2);
	raw_close(&r1);
}
END_TEST

/* GemmRequest validation. The base request is row-major, m 8, n 6, k 5, beta 0.5 with
 * tight leading dimensions: A 40 floats, B 30, C 48. */
struct bad_case {
	const char *what;
	Rxgemm__Status status;
	const char *field; /* proto name the error must mention; NULL: any sentence */
};

static const struct bad_case bad_cases[] = {
	{ "m = 0", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "m" },
	{ "m = -3", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "m" },
	{ "n = 0", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "n" },
	{ "k = -1", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "k" },
	{ "lda = 4 < k", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "lda" },
	{ "ldb = 5 < n", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "ldb" },
	{ "ldc = 5 < n", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "ldc" },
	{ "lda = 6 < m with trans_a", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "lda" },
	{ "col-major lda = 7 < m", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "lda" },
	{ "col-major ldc = 7 < m", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "ldc" },
	{ "lda = -1", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "lda" },
	{ "a of 158 bytes", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "a" },
	{ "a of 39 floats", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "a" },
	{ "a of 41 floats", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "a" },
	{ "a of 53 floats with lda 7", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "a" },
	{ "a of 57 floats with lda 7", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "a" },
	{ "a empty", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "a" },
	{ "b of 29 floats", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "b" },
	{ "b of 31 floats", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "b" },
	{ "b of 121 bytes", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "b" },
	{ "c of 47 floats", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "c" },
	{ "c of 1 float with beta 0", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "c" },
	{ "c missing with beta 0.5", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "c" },
	{ "c of 191 bytes", RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "c" },
	{ "m = n = k = 2^40, ld 2^62", RXGEMM__STATUS__STATUS_TOO_BIG, NULL },
	{ "m = n = k = 2^40, ld 0", RXGEMM__STATUS__STATUS_TOO_BIG, NULL },
	{ "m = 2^62, lda 2^62", RXGEMM__STATUS__STATUS_TOO_BIG, NULL },
};

#define N_BAD_CASES ((int)(sizeof(bad_cases) / sizeof(bad_cases[0])))

START_TEST(test_proto_bad_gemm)
{
	const struct bad_case *bc = &bad_cases[_i];
	static float data[4096];
	struct raw r;
	Rxgemm__GemmRequest g = RXGEMM__GEMM_REQUEST__INIT;
	uint64_t id = 1000 + (uint64_t)_i;

	for (size_t i = 0; i < sizeof(data) / sizeof(data[0]); i++)
		data[i] = (float)(i % 7) - 3.0f;
	g.m = 8;
	g.n = 6;
	g.k = 5;
	g.alpha = 1.0f;
	g.beta = 0.5f;
	g.layout = RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR;
	g.a.data = g.b.data = g.c.data = (uint8_t *)data;
	g.a.len = 40 * 4;
	g.b.len = 30 * 4;
	g.c.len = 48 * 4;

	switch (_i) {
	case 0: g.m = 0; break;
	case 1: g.m = -3; break;
	case 2: g.n = 0; break;
	case 3: g.k = -1; break;
	case 4: g.lda = 4; break;
	case 5: g.ldb = 5; break;
	case 6: g.ldc = 5; break;
	case 7: g.trans_a = 1; g.lda = 6; break;
	case 8: g.layout = RXGEMM__LAYOUT__LAYOUT_COL_MAJOR; g.lda = 7; break;
	case 9: g.layout = RXGEMM__LAYOUT__LAYOUT_COL_MAJOR; g.ldc = 7; break;
	case 10: g.lda = -1; break;
	case 11: g.a.len = 40 * 4 - 2; break;
	case 12: g.a.len = 39 * 4; break;
	case 13: g.a.len = 41 * 4; break;
	case 14: g.lda = 7; g.a.len = 53 * 4; break;	/* least is 7 * 7 + 5 = 54 */
	case 15: g.lda = 7; g.a.len = 57 * 4; break;	/* most is 7 * 8 = 56 */
	case 16: g.a.len = 0; break;
	case 17: g.b.len = 29 * 4; break;
	case 18: g.b.len = 31 * 4; break;
	case 19: g.b.len = 121; break;
	case 20: g.c.len = 47 * 4; break;
	case 21: g.beta = 0.0f; g.c.len = 4; break;
	case 22: g.c.len = 0; break;
	case 23: g.c.len = 191; break;
	case 24:
		g.m = g.n = g.k = (int64_t)1 << 40;
		g.lda = g.ldb = g.ldc = (int64_t)1 << 62;
		g.beta = 0.0f;
		g.c.len = 0;
		break;
	case 25:
		g.m = g.n = g.k = (int64_t)1 << 40;
		g.beta = 0.0f;
		g.c.len = 0;
		break;
	case 26:
		g.m = (int64_t)1 << 62;
		g.lda = (int64_t)1 << 62;
		g.beta = 0.0f;
		g.c.len = 0;
		break;
	}

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	raw_send_gemm(&r, id, &g);
	Rxgemm__Reply *rep = raw_recv(&r);
	ck_assert_msg(rep != NULL, "%s: the daemon closed the connection instead of replying",
		      bc->what);
	ck_assert_msg(rep->request_id == id && rep->status == bc->status,
		      "%s: reply id %" PRIu64 " status %d (\"%s\"), want id %" PRIu64 " status %d",
		      bc->what, rep->request_id, rep->status, rep->error, id, bc->status);
	ck_assert_msg(rep->error && rep->error[0], "%s: no error sentence", bc->what);
	if (bc->field)
		ck_assert_msg(mentions_word(rep->error, bc->field),
			      "%s: error \"%s\" does not name the field \"%s\"", bc->what,
			      rep->error, bc->field);
	ck_assert_msg(rep->body_case != RXGEMM__REPLY__BODY_GEMM, "%s: an error reply with a "
								  "GEMM result",
		      bc->what);
	rxgemm__reply__free_unpacked(rep, NULL);
	raw_good_gemm(&r, id + 100000);
	raw_close(&r);
}
END_TEST

/* Both the least and the most data the contract allows for padded matrices; when C is not
 * sent (beta 0) its padding comes back as zeros. */
START_TEST(test_proto_lengths_and_padding)
{
	struct raw r;
	uint64_t id = 10;

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	for (int rm = 0; rm < 2; rm++)
		for (int t = 0; t < 4; t++) {
			struct prob p;
			Rxgemm__GemmRequest g;
			int least = t & 1;

			/* beta 0, no C: padding comes back zero. */
			prob_make(&p, rm, t & 1, t >> 1, 21, 13, 9, 1.0f, 0.0f, 3, 2, 4, 0, id);
			gemm_req_fill(&g, &p, least ? -2 : -1, least ? -1 : -2, 0, 0);
			raw_send_gemm(&r, id, &g);
			Rxgemm__Reply *rep = raw_expect(&r, id, RXGEMM__STATUS__STATUS_OK, NULL);
			raw_check_gemm_reply(rep, &p, 0);
			rxgemm__reply__free_unpacked(rep, NULL);
			prob_free(&p);
			id++;

			/* beta != 0, C sent in its least length: padding comes back as sent. */
			prob_make(&p, rm, t >> 1, t & 1, 12, 22, 31, -1.0f, 2.0f, 1, 5, 3, 0, id);
			gemm_req_fill(&g, &p, -2, -2, -2, 1);
			raw_send_gemm(&r, id, &g);
			rep = raw_expect(&r, id, RXGEMM__STATUS__STATUS_OK, NULL);
			raw_check_gemm_reply(rep, &p, 1);
			rxgemm__reply__free_unpacked(rep, NULL);
			prob_free(&p);
			id++;
		}
	raw_close(&r);
}
END_TEST

/* A header announcing one byte more than max_frame_bytes: TOO_BIG naming both sizes, with
 * request_id 0, then the connection is closed; the daemon serves new connections. */
START_TEST(test_proto_oversized_frame)
{
	struct raw r;
	uint8_t hdr[FRAME_HEADER_BYTES];
	char want_len[32], want_max[32];

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	frame_header_put(hdr, SMALL_MAX_FRAME + 1);
	raw_send_bytes(&r, hdr, sizeof(hdr));
	Rxgemm__Reply *rep = raw_expect(&r, 0, RXGEMM__STATUS__STATUS_TOO_BIG, NULL);
	snprintf(want_len, sizeof(want_len), "%u", SMALL_MAX_FRAME + 1);
	snprintf(want_max, sizeof(want_max), "%u", SMALL_MAX_FRAME);
	ck_assert_msg(strstr(rep->error, want_len) && mentions_word(rep->error, want_max),
		      "error \"%s\" does not name both %s and %s", rep->error, want_len, want_max);
	rxgemm__reply__free_unpacked(rep, NULL);
	raw_expect_eof(&r);
	raw_close(&r);

	/* A huge announcement, before Hello even. */
	raw_open(&r, g_daemon.socket_path);
	frame_header_put(hdr, 0xFFFFFFFFu);
	raw_send_bytes(&r, hdr, sizeof(hdr));
	rxgemm__reply__free_unpacked(raw_expect(&r, 0, RXGEMM__STATUS__STATUS_TOO_BIG, NULL), NULL);
	raw_expect_eof(&r);
	raw_close(&r);

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	raw_good_gemm(&r, 5);
	raw_close(&r);
}
END_TEST

/* A frame of exactly max_frame_bytes is legal: a 1 x 1 x K GEMM, K chosen to fill it, and
 * the request_id's varint length used to hit the size to the byte. */
START_TEST(test_proto_exact_max_frame)
{
	struct raw r;
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__GemmRequest g = RXGEMM__GEMM_REQUEST__INIT;
	int64_t k = 1;
	float *a = calloc(SMALL_MAX_FRAME / 4, sizeof(float));
	float *b = calloc(SMALL_MAX_FRAME / 4, sizeof(float));
	uint64_t state = 3;

	ck_assert(a && b);
	refgemm_fill_random(a, SMALL_MAX_FRAME / 8, &state);
	refgemm_fill_random(b, SMALL_MAX_FRAME / 8, &state);
	g.m = g.n = 1;
	g.alpha = 1.0f;
	g.layout = RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR;
	g.a.data = (uint8_t *)a;
	g.b.data = (uint8_t *)b;
	req.body_case = RXGEMM__REQUEST__BODY_GEMM;
	req.gemm = &g;
	req.request_id = 1;
	/* The largest K whose request fits, then pad with the request_id's varint. */
	for (int64_t step = (int64_t)1 << 20; step > 0; step >>= 1) {
		g.k = k + step;
		g.a.len = g.b.len = 4 * (size_t)g.k;
		if (rxgemm__request__get_packed_size(&req) <= SMALL_MAX_FRAME)
			k += step;
	}
	g.k = k;
	g.a.len = g.b.len = 4 * (size_t)k;
	size_t size = rxgemm__request__get_packed_size(&req);
	size_t gap = SMALL_MAX_FRAME - size;
	ck_assert_msg(gap <= 9, "cannot fill the frame: %zu bytes short", gap);
	req.request_id = gap == 0 ? 1 : (uint64_t)1 << (7 * gap);
	size = rxgemm__request__get_packed_size(&req);
	ck_assert_uint_eq(size, SMALL_MAX_FRAME);

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	raw_send(&r, &req);
	Rxgemm__Reply *rep = raw_expect(&r, req.request_id, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_GEMM);
	ck_assert_uint_eq(rep->gemm->c.len, 4);
	float got;
	memcpy(&got, rep->gemm->c.data, 4);
	double want = 0, scale = 0;
	for (int64_t l = 0; l < k; l++) {
		want += (double)a[l] * b[l];
		scale += fabs((double)a[l] * b[l]);
	}
	ck_assert_msg(fabs(got - want) <= 1e-5 * scale + 1e-6,
		      "1x1x%" PRId64 " dot product: got %g want %g", k, (double)got, want);
	rxgemm__reply__free_unpacked(rep, NULL);
	raw_good_gemm(&r, 2);
	raw_close(&r);
	free(a);
	free(b);
}
END_TEST

/* Frames whose bodies do not parse as a Request: PROTOCOL with request_id 0, and the
 * connection stays usable. */
START_TEST(test_proto_garbage_body)
{
	static const uint8_t bodies[][8] = {
		{ 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF }, /* endless varint tag */
		{ 0x0F, 0x01, 0, 0, 0, 0, 0, 0 },		    /* wire type 7 */
		{ 0x1A, 0x7F, 0x08, 0x01, 0, 0, 0, 0 },		    /* length past the end */
	};
	static const size_t lens[] = { 8, 2, 4 };
	struct raw r;
	uint8_t frame[FRAME_HEADER_BYTES + 8];

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		frame_header_put(frame, (uint32_t)lens[i]);
		memcpy(frame + FRAME_HEADER_BYTES, bodies[i], lens[i]);
		raw_send_bytes(&r, frame, FRAME_HEADER_BYTES + lens[i]);
		Rxgemm__Reply *rep = raw_recv(&r);
		ck_assert_msg(rep != NULL, "garbage body %zu: connection closed, want it kept", i);
		ck_assert_msg(rep->request_id == 0 && rep->status == RXGEMM__STATUS__STATUS_PROTOCOL,
			      "garbage body %zu: id %" PRIu64 " status %d (\"%s\"), want id 0 "
			      "STATUS_PROTOCOL",
			      i, rep->request_id, rep->status, rep->error);
		ck_assert_msg(rep->error[0], "garbage body %zu: no error sentence", i);
		rxgemm__reply__free_unpacked(rep, NULL);
		raw_good_gemm(&r, 10 + i);
	}
	raw_close(&r);
}
END_TEST

/* Field 99 appended to a Request, and inside a GemmRequest: PROTOCOL naming "unknown
 * field", with the request_id. */
START_TEST(test_proto_unknown_field)
{
	static const uint8_t field99[] = { 0x98, 0x06, 0x01 }; /* tag (99 << 3 | 0), value 1 */
	struct raw r;
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__StatusRequest sreq = RXGEMM__STATUS_REQUEST__INIT;

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	req.request_id = 4242;
	req.body_case = RXGEMM__REQUEST__BODY_STATUS;
	req.status = &sreq;
	raw_send_extra(&r, &req, field99, sizeof(field99));
	Rxgemm__Reply *rep = raw_expect(&r, 4242, RXGEMM__STATUS__STATUS_PROTOCOL, NULL);
	ck_assert_msg(strstr(rep->error, "unknown field"), "error \"%s\" does not say "
							   "\"unknown field\"",
		      rep->error);
	rxgemm__reply__free_unpacked(rep, NULL);
	raw_good_gemm(&r, 4243);

	/* Nested: Request{request_id 4244, gemm = GemmRequest bytes + field 99}. */
	struct prob p;
	Rxgemm__GemmRequest g;
	prob_make(&p, 1, 0, 0, 3, 4, 5, 1.0f, 0.0f, 0, 0, 0, 0, 1);
	gemm_req_fill(&g, &p, -1, -1, 0, 0);
	size_t glen = rxgemm__gemm_request__get_packed_size(&g);
	size_t sub_len = glen + sizeof(field99);
	uint8_t *buf = malloc(FRAME_HEADER_BYTES + 16 + sub_len), *q;
	ck_assert_ptr_nonnull(buf);
	q = buf + FRAME_HEADER_BYTES;
	*q++ = 0x08; /* request_id, varint */
	*q++ = 0x94; /* 4244 = 0x1094: 0x94 0x21 */
	*q++ = 0x21;
	*q++ = 0x1A; /* field 3 (gemm), length-delimited */
	for (size_t v = sub_len; ; v >>= 7) {
		*q++ = (uint8_t)((v & 0x7F) | (v >= 0x80 ? 0x80 : 0));
		if (v < 0x80)
			break;
	}
	rxgemm__gemm_request__pack(&g, q);
	q += glen;
	memcpy(q, field99, sizeof(field99));
	q += sizeof(field99);
	frame_header_put(buf, (uint32_t)(q - buf - FRAME_HEADER_BYTES));
	raw_send_bytes(&r, buf, (size_t)(q - buf));
	free(buf);
	prob_free(&p);
	rep = raw_expect(&r, 4244, RXGEMM__STATUS__STATUS_PROTOCOL, NULL);
	ck_assert_msg(strstr(rep->error, "unknown field"), "nested: error \"%s\" does not say "
							   "\"unknown field\"",
		      rep->error);
	rxgemm__reply__free_unpacked(rep, NULL);
	raw_good_gemm(&r, 4245);
	raw_close(&r);
}
END_TEST

START_TEST(test_proto_no_body)
{
	struct raw r;
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	req.request_id = 43;
	raw_send(&r, &req);
	rxgemm__reply__free_unpacked(raw_expect(&r, 43, RXGEMM__STATUS__STATUS_PROTOCOL, NULL), NULL);
	/* An empty frame is a Request with nothing set either. */
	uint8_t hdr[FRAME_HEADER_BYTES];
	frame_header_put(hdr, 0);
	raw_send_bytes(&r, hdr, sizeof(hdr));
	rxgemm__reply__free_unpacked(raw_expect(&r, 0, RXGEMM__STATUS__STATUS_PROTOCOL, NULL), NULL);
	raw_good_gemm(&r, 44);
	raw_close(&r);
}
END_TEST

START_TEST(test_proto_before_hello)
{
	struct raw r;
	struct prob p;
	Rxgemm__GemmRequest g;

	raw_open(&r, g_daemon.socket_path);
	raw_send_status(&r, 5, NULL, 0);
	rxgemm__reply__free_unpacked(raw_expect(&r, 5, RXGEMM__STATUS__STATUS_PROTOCOL, NULL), NULL);
	prob_make(&p, 1, 0, 0, 3, 3, 3, 1.0f, 0.0f, 0, 0, 0, 0, 1);
	gemm_req_fill(&g, &p, -1, -1, 0, 0);
	raw_send_gemm(&r, 6, &g);
	Rxgemm__Reply *rep = raw_expect(&r, 6, RXGEMM__STATUS__STATUS_PROTOCOL, NULL);
	ck_assert_msg(rep->body_case != RXGEMM__REPLY__BODY_GEMM, "a GEMM ran before Hello");
	rxgemm__reply__free_unpacked(rep, NULL);
	prob_free(&p);
	/* The connection stays open and Hello still works on it. */
	raw_hello(&r, "test-server raw", NULL);
	raw_good_gemm(&r, 7);
	raw_close(&r);
}
END_TEST

START_TEST(test_proto_wrong_version)
{
	static const uint32_t versions[] = { RXGEMM_PROTOCOL_VERSION + 1, 0, 0xFFFFFFFFu };
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		struct raw r;
		raw_open(&r, g_daemon.socket_path);
		raw_send_hello(&r, 9 + i, versions[i], "test-server raw");
		rxgemm__reply__free_unpacked(raw_expect(&r, 9 + i, RXGEMM__STATUS__STATUS_VERSION, NULL),
					     NULL);
		raw_expect_eof(&r);
		raw_close(&r);
	}
	struct raw r;
	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	raw_good_gemm(&r, 20);
	raw_close(&r);
}
END_TEST

/* Three GEMMs and a Status back to back without reading; four replies, any order. */
START_TEST(test_proto_pipelining)
{
	struct raw r;
	struct prob p[3];
	Rxgemm__GemmRequest g[3];
	int seen[4] = { 0 };

	prob_make(&p[0], 1, 0, 0, 120, 110, 130, 1.0f, 0.0f, 0, 0, 0, 0, 1);
	prob_make(&p[1], 0, 1, 0, 70, 30, 20, 0.5f, 1.0f, 1, 0, 2, 0, 2);
	prob_make(&p[2], 1, 0, 1, 33, 66, 99, 1.0f, 0.0f, 0, 3, 5, 0, 3);
	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	for (int i = 0; i < 3; i++) {
		gemm_req_fill(&g[i], &p[i], -1, -1, p[i].beta != 0.0f ? -1 : 0, 0);
		raw_send_gemm(&r, 1001 + (uint64_t)i, &g[i]);
	}
	raw_send_status(&r, 1004, NULL, 0);
	for (int n = 0; n < 4; n++) {
		Rxgemm__Reply *rep = raw_recv(&r);
		ck_assert_msg(rep != NULL, "connection closed after %d of 4 pipelined replies", n);
		ck_assert_msg(rep->request_id >= 1001 && rep->request_id <= 1004,
			      "reply with request_id %" PRIu64 " (status %d, \"%s\")",
			      rep->request_id, rep->status, rep->error);
		int i = (int)(rep->request_id - 1001);
		ck_assert_msg(!seen[i], "two replies to request %" PRIu64, rep->request_id);
		seen[i] = 1;
		if (i < 3) {
			raw_check_gemm_reply(rep, &p[i], p[i].beta != 0.0f);
		} else {
			ck_assert_int_eq(rep->status, RXGEMM__STATUS__STATUS_OK);
			ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_STATUS_REPLY);
			ck_assert_uint_ge(rep->status_reply->clients_connected, 1);
		}
		rxgemm__reply__free_unpacked(rep, NULL);
	}
	for (int i = 0; i < 3; i++)
		prob_free(&p[i]);
	raw_close(&r);
}
END_TEST

/* A consistent request whose C would not fit one device allocation: TOO_BIG, not a crash
 * or a daemon that tries. A (m x 1) and B (1 x n) are small; C is m x n. */
START_TEST(test_proto_over_max_alloc)
{
	struct raw r;
	Rxgemm__GemmRequest g = RXGEMM__GEMM_REQUEST__INIT;

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	Rxgemm__Reply *st = raw_status(&r, 2);
	uint64_t max_alloc = st->status_reply->device_max_alloc_bytes;
	rxgemm__reply__free_unpacked(st, NULL);
	ck_assert_uint_gt(max_alloc, 0);
	int64_t side = (int64_t)sqrt((double)max_alloc / 4.0) + 2;
	if ((uint64_t)side * 8 + 1024 > SMALL_MAX_FRAME) {
		fprintf(stderr, "over_max_alloc: max alloc %" PRIu64 " too large to test in a "
				"1 MiB frame; not tested\n",
			max_alloc);
		raw_close(&r);
		return;
	}
	float *v = calloc((size_t)side, sizeof(float));
	ck_assert_ptr_nonnull(v);
	g.m = g.n = side;
	g.k = 1;
	g.alpha = 1.0f;
	g.layout = RXGEMM__LAYOUT__LAYOUT_COL_MAJOR;
	g.a.data = g.b.data = (uint8_t *)v;
	g.a.len = g.b.len = 4 * (size_t)side;
	raw_send_gemm(&r, 3, &g);
	Rxgemm__Reply *rep = raw_expect(&r, 3, RXGEMM__STATUS__STATUS_TOO_BIG, NULL);
	rxgemm__reply__free_unpacked(rep, NULL);
	free(v);
	raw_good_gemm(&r, 4);
	raw_close(&r);
}
END_TEST

/* A request within max_frame whose reply is not: C of 600 x 600 floats (1.44 MB) with a
 * 1 MiB cap. Whether max_frame caps replies too is not settled: either the correct result
 * or STATUS_TOO_BIG, and the connection serves on either way. */
START_TEST(test_proto_big_reply)
{
	struct raw r;
	struct prob p;
	Rxgemm__GemmRequest g;

	prob_make(&p, 1, 0, 0, 600, 600, 1, 1.0f, 0.0f, 0, 0, 0, 0, 8);
	gemm_req_fill(&g, &p, -1, -1, 0, 0);
	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	raw_send_gemm(&r, 3, &g);
	Rxgemm__Reply *rep = raw_recv(&r);
	ck_assert_msg(rep != NULL, "connection closed instead of a reply");
	ck_assert_uint_eq(rep->request_id, 3);
	if (rep->status == RXGEMM__STATUS__STATUS_OK)
		raw_check_gemm_reply(rep, &p, 0);
	else
		ck_assert_msg(rep->status == RXGEMM__STATUS__STATUS_TOO_BIG,
			      "a 1.44 MB reply with max_frame 1 MiB: status %d (\"%s\"), want OK or "
			      "TOO_BIG",
			      rep->status, rep->error);
	rxgemm__reply__free_unpacked(rep, NULL);
	raw_good_gemm(&r, 4);
	raw_close(&r);

	/* The same through the library. */
	rxg_client *c = lib_connect();
	struct prob q;
	char msg[1024];
	prob_make(&q, 0, 0, 0, 600, 600, 1, 1.0f, 0.0f, 0, 0, 0, 0, 9);
	float *got = malloc(sizeof(float) * (size_t)q.c_len);
	ck_assert_ptr_nonnull(got);
	struct rxg_gemm_args args = { .layout = RXG_COL_MAJOR, .m = q.m, .n = q.n, .k = q.k,
				      .alpha = 1.0f, .a = q.a, .b = q.b, .c = got };
	int rc = rxg_gemm(c, &args, NULL);
	if (rc == RXG_OK)
		ck_assert_msg(prob_verify(&q, got, q.c_len, NULL, msg, sizeof(msg)) == 0, "%s", msg);
	else
		ck_assert_msg(rc == RXG_ETOOBIG, "rxg_gemm with a 1.44 MB result: %s: %s",
			      rxg_strerror(rc), rxg_errmsg(c));
	free(got);
	prob_free(&q);
	prob_free(&p);
	lib_case(c, 1, 0, 0, 30, 20, 10, 1.0f, 0.0f, 0, 0, 0, 0, 10);
	rxg_close(c);
}
END_TEST

/* One thread, two inline jobs in flight: the first's C (10 MB, little work) comes back
 * while the second's A and B (41 MB) are still being sent, and with 8 MiB of replies
 * unwritten the daemon stops reading. librxgemm reads that reply in the middle of its send
 * (client/transport.c, send_wait); it used to block in send() while the daemon waited for
 * it to read, until the stall timeout closed the connection. Each C against the CPU
 * reference. */
START_TEST(test_lib_pipelined_big_reply)
{
	setenv("RXGEMM_STAGE_BYTES", "off", 1); /* read at this process's first GEMM */
	rxg_client *c = lib_connect();
	for (int round = 0; round < 3; round++) {
		struct prob p[2];
		float *got[2];
		uint64_t id[2];
		char msg[1024];

		prob_make(&p[0], 0, 0, 0, 1600, 1600, 2, 1.0f, 0.0f, 0, 0, 0, 0,
			  200 + (uint64_t)round);
		prob_make(&p[1], 0, 0, 0, 64, 64, 80000, 1.0f, 0.0f, 0, 0, 0, 0,
			  300 + (uint64_t)round);
		for (int j = 0; j < 2; j++) {
			got[j] = calloc((size_t)p[j].c_len, sizeof(float));
			ck_assert_ptr_nonnull(got[j]);
			struct rxg_gemm_args args = { .layout = RXG_COL_MAJOR, .m = p[j].m,
						      .n = p[j].n, .k = p[j].k, .alpha = 1.0f,
						      .a = p[j].a, .b = p[j].b, .c = got[j] };
			int rc = rxg_submit_gemm(c, &args, NULL, &id[j]);
			ck_assert_msg(rc == RXG_OK, "round %d, job %d: %s: %s", round, j,
				      rxg_strerror(rc), rxg_errmsg(c));
		}
		for (int j = 0; j < 2; j++) {
			int rc = rxg_wait(c, id[j], NULL);
			ck_assert_msg(rc == RXG_OK, "round %d, wait for job %d: %s: %s", round, j,
				      rxg_strerror(rc), rxg_errmsg(c));
			ck_assert_msg(prob_verify(&p[j], got[j], p[j].c_len, NULL, msg,
						  sizeof(msg)) == 0,
				      "%s", msg);
			free(got[j]);
			prob_free(&p[j]);
		}
	}
	rxg_close(c);
}
END_TEST

/* Large requests and results one after another, so that each job's frame and result buffer
 * are the buffers the job before used (daemon/hostbuf.c keeps them): every result right
 * against the CPU reference, and C's padding in the reply is C's as sent or zeros, never
 * what the buffer held from the job before (a C of NaNs with its padding, then the same
 * shape with no C at all). Shapes shrink and grow within what a kept buffer serves. */
START_TEST(test_frames_reused)
{
	static const struct {
		int rm, ta, tb;
		int64_t m, n, k, pad_c;
		float beta;
		int c_nan, send_c;
	} cases[] = {
		{ 0, 0, 0, 600, 560, 520, 3, 0.5f, 0, 1 },
		{ 0, 0, 0, 600, 560, 520, 3, 0.0f, 0, 0 },
		{ 1, 1, 0, 560, 600, 500, 7, 0.0f, 1, 1 },
		{ 1, 1, 0, 560, 600, 500, 7, 0.0f, 0, 0 },
		{ 0, 1, 1, 700, 620, 640, 0, 1.5f, 0, 1 },
		{ 0, 0, 1, 512, 600, 600, 5, 0.0f, 0, 0 },
	};
	struct raw r;
	int reused = daemon_run_log_count(&g_daemon, " into a kept host buffer of ");

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server frames reused", NULL);
	for (int round = 0; round < 2; round++)
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			struct prob p;
			Rxgemm__GemmRequest g;
			uint64_t id = 100 + (uint64_t)round * 10 + i;

			prob_make(&p, cases[i].rm, cases[i].ta, cases[i].tb, cases[i].m, cases[i].n,
				  cases[i].k, 1.0f, cases[i].beta, 1, 2, cases[i].pad_c,
				  cases[i].c_nan, id);
			gemm_req_fill(&g, &p, -1, -1, cases[i].send_c ? -1 : 0, 0);
			raw_send_gemm(&r, id, &g);
			Rxgemm__Reply *rep = raw_expect(&r, id, RXGEMM__STATUS__STATUS_OK, NULL);
			raw_check_gemm_reply(rep, &p, cases[i].send_c);
			rxgemm__reply__free_unpacked(rep, NULL);
			prob_free(&p);
		}
	raw_close(&r);
	/* Each job's frame and result (after the first's) could take a kept buffer; at
	 * least half of them did, whatever the order of frees and takes. */
	ck_assert_int_ge(daemon_run_log_count(&g_daemon, " into a kept host buffer of ") - reused,
			 12);
}
END_TEST

/* The daemon's debug line for an operand it moved to float alignment. */
#define MOVED "bytes moved to float alignment"
/* The same for a tensor's data (TensorCreate.data: Request field 9, its field 2). */
#define TENSOR_MOVED "request 9.2's"

/* Operands and results of 64 KiB and more in the frames, which the daemon reads without
 * protobuf-c's copies (proto/lift.c: A, B and C where the frame holds them, moved to
 * float alignment, C's result sent from where the device put it) and librxgemm receives
 * into memory of its own: every combination of request ids (which move the data's
 * offsets in the frame by 1 to 5 bytes), layouts and transposes against the CPU
 * reference; a GEMM whose A is given twice in its message computes with the last, as
 * protobuf says; and a tensor's data in and out. librxgemm's requests pad their operands
 * to alignment (GemmRequest.pad, TensorCreate.pad): the daemon moves none of them, where
 * it moves some of protobuf-c's own layout. */

START_TEST(test_proto_large_inline)
{
	const uint64_t ids[] = { 5, 300, 70000, 1u << 22, 1ull << 29 };
	struct raw r;
	struct prob p;
	Rxgemm__GemmRequest g;

	int moved = daemon_run_log_count(&g_daemon, MOVED);

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server large inline", NULL);
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		/* A 150 x 140, B 140 x 130, C 150 x 130: 70 to 84 KB each. */
		prob_make(&p, (int)(i & 1), (int)(i >> 1 & 1), (int)(i >> 2 & 1), 150, 130, 140,
			  1.25f, 0.5f, 0, 0, 0, 0, 40 + i);
		gemm_req_fill(&g, &p, -1, -1, -1, 0);
		raw_send_gemm(&r, ids[i], &g);
		Rxgemm__Reply *rep = raw_expect(&r, ids[i], RXGEMM__STATUS__STATUS_OK, NULL);
		raw_check_gemm_reply(rep, &p, 1);
		rxgemm__reply__free_unpacked(rep, NULL);
		prob_free(&p);
	}
	/* protobuf-c's layout puts some of those operands off float alignment: the daemon
	 * moved them (and the results above are right). */
	ck_assert_int_gt(daemon_run_log_count(&g_daemon, MOVED), moved);

	/* A given twice: first NaNs, then the real one, appended to the GemmRequest. */
	prob_make(&p, 0, 0, 0, 150, 130, 140, 1.0f, 0.0f, 0, 0, 0, 0, 50);
	gemm_req_fill(&g, &p, -1, -1, 0, 0);
	size_t a_bytes = g.a.len;
	float *nans = malloc(a_bytes);
	ck_assert_ptr_nonnull(nans);
	for (size_t i = 0; i < a_bytes / sizeof(float); i++)
		nans[i] = NAN;
	g.a.data = (uint8_t *)nans;
	size_t glen = rxgemm__gemm_request__get_packed_size(&g);
	uint8_t *gb = malloc(glen + a_bytes + 16), *frame = malloc(glen + a_bytes + 64);
	ck_assert_ptr_nonnull(gb);
	ck_assert_ptr_nonnull(frame);
	rxgemm__gemm_request__pack(&g, gb);
	glen += raw_put_field(gb + glen, 12, p.a, a_bytes);
	size_t len = FRAME_HEADER_BYTES;
	frame[len++] = 0x08; /* request_id 77 */
	frame[len++] = 77;
	len += raw_put_field(frame + len, 3, gb, glen);
	frame_header_put(frame, (uint32_t)(len - FRAME_HEADER_BYTES));
	raw_send_bytes(&r, frame, len);
	Rxgemm__Reply *rep = raw_expect(&r, 77, RXGEMM__STATUS__STATUS_OK, NULL);
	raw_check_gemm_reply(rep, &p, 0);
	rxgemm__reply__free_unpacked(rep, NULL);
	free(frame);
	free(gb);
	free(nans);
	prob_free(&p);
	raw_good_gemm(&r, 78);

	/* A tensor's data laid out by protobuf-c at three offsets (request ids of 1 to 3
	 * bytes): the daemon moves it where it is off alignment, and keeps it right. */
	int tensor_moved = daemon_run_log_count(&g_daemon, TENSOR_MOVED);
	for (size_t i = 0; i < 3; i++) {
		Rxgemm__Request tq = RXGEMM__REQUEST__INIT;
		Rxgemm__TensorCreate tc = RXGEMM__TENSOR_CREATE__INIT;
		Rxgemm__TensorRead tr = RXGEMM__TENSOR_READ__INIT;
		Rxgemm__TensorFree tf = RXGEMM__TENSOR_FREE__INIT;
		int64_t dims[1] = { 20001 };
		float *vals = malloc(sizeof(float) * (size_t)dims[0]);

		ck_assert_ptr_nonnull(vals);
		for (int64_t j = 0; j < dims[0]; j++)
			vals[j] = (float)((j * 7 + (int64_t)i) % 509) - 254.0f;
		tc.n_dims = 1;
		tc.dims = dims;
		tc.data.data = (uint8_t *)vals;
		tc.data.len = sizeof(float) * (size_t)dims[0];
		tq.request_id = ids[i];
		tq.body_case = RXGEMM__REQUEST__BODY_TENSOR_CREATE;
		tq.tensor_create = &tc;
		raw_send(&r, &tq);
		Rxgemm__Reply *tcr = raw_expect(&r, ids[i], RXGEMM__STATUS__STATUS_OK, NULL);
		tr.tensor_id = tf.tensor_id = tcr->tensor_created->tensor_id;
		rxgemm__reply__free_unpacked(tcr, NULL);
		tq.request_id = ids[i] + 1;
		tq.body_case = RXGEMM__REQUEST__BODY_TENSOR_READ;
		tq.tensor_read = &tr;
		raw_send(&r, &tq);
		tcr = raw_expect(&r, ids[i] + 1, RXGEMM__STATUS__STATUS_OK, NULL);
		ck_assert_uint_eq(tcr->tensor_data->data.len, tc.data.len);
		ck_assert(!memcmp(tcr->tensor_data->data.data, vals, tc.data.len));
		rxgemm__reply__free_unpacked(tcr, NULL);
		tq.request_id = ids[i] + 2;
		tq.body_case = RXGEMM__REQUEST__BODY_TENSOR_FREE;
		tq.tensor_free = &tf;
		raw_send(&r, &tq);
		raw_expect_free(&r, ids[i] + 2, RXGEMM__STATUS__STATUS_OK, NULL);
		free(vals);
	}
	/* At most one of three offsets is a multiple of 4. */
	ck_assert_int_ge(daemon_run_log_count(&g_daemon, TENSOR_MOVED) - tensor_moved, 2);
	raw_close(&r);

	/* Through the library with its staging off: C comes back in the reply, received
	 * into memory of its own; a tensor's data goes and comes inline. */
	setenv("RXGEMM_STAGE_BYTES", "off", 1);
	rxg_client *c = lib_connect();
	moved = daemon_run_log_count(&g_daemon, MOVED);
	lib_case(c, 0, 1, 0, 150, 130, 140, 1.0f, 0.0f, 0, 0, 0, 0, 51);
	lib_case(c, 1, 0, 1, 151, 129, 141, 0.5f, 2.0f, 3, 0, 5, 0, 52);
	lib_case(c, 1, 1, 1, 150, 130, 140, 1.0f, -1.5f, 0, 0, 0, 0, 53); /* C is input too */
	/* librxgemm puts a pad before each (GemmRequest.pad): none needed moving. */
	ck_assert_int_eq(daemon_run_log_count(&g_daemon, MOVED), moved);
	int64_t floats = 50001;
	float *data = malloc(sizeof(float) * (size_t)floats), *back = calloc((size_t)floats, 4);
	ck_assert_ptr_nonnull(data);
	ck_assert_ptr_nonnull(back);
	for (int64_t i = 0; i < floats; i++)
		data[i] = (float)(i % 1001) - 500.0f;
	rxg_tensor *t;
	tensor_moved = daemon_run_log_count(&g_daemon, TENSOR_MOVED);
	ck_assert_int_eq(rxg_tensor_create(c, &floats, 1, data, &t), RXG_OK);
	ck_assert_int_eq(rxg_tensor_read(t, back, (size_t)floats), RXG_OK);
	ck_assert(!memcmp(back, data, sizeof(float) * (size_t)floats));
	/* Its data came after a pad too (TensorCreate.pad). */
	ck_assert_int_eq(daemon_run_log_count(&g_daemon, TENSOR_MOVED), tensor_moved);
	/* The same as a job, two in flight at once, each into its own array. */
	float *back2 = calloc((size_t)floats, 4), *back3 = calloc((size_t)floats, 4);
	uint64_t id2, id3;
	ck_assert_ptr_nonnull(back2);
	ck_assert_ptr_nonnull(back3);
	ck_assert_int_eq(rxg_submit_tensor_read(t, back2, (size_t)floats, &id2), RXG_OK);
	ck_assert_int_eq(rxg_submit_tensor_read(t, back3, (size_t)floats, &id3), RXG_OK);
	ck_assert_int_eq(rxg_wait(c, id3, NULL), RXG_OK);
	ck_assert_int_eq(rxg_wait(c, id2, NULL), RXG_OK);
	ck_assert(!memcmp(back2, data, sizeof(float) * (size_t)floats));
	ck_assert(!memcmp(back3, data, sizeof(float) * (size_t)floats));
	free(back3);
	free(back2);
	rxg_tensor_free(t);
	free(back);
	free(data);
	rxg_close(c);
}
END_TEST

/* A request over max_frame through the library: RXG_ETOOBIG (from the library or the
 * daemon), with a sentence, and the handle serves on (or, where the daemon closed the
 * connection, a new handle does). */
START_TEST(test_proto_lib_request_too_big)
{
	struct prob p;

	/* The frame itself: not staged through shared memory by the library, which would
	 * carry this job past the cap (test-shm.c, test_lib_staged). Each test runs in a
	 * process of its own, which reads this at its first GEMM. */
	setenv("RXGEMM_STAGE_BYTES", "off", 1);
	rxg_client *c = lib_connect();

	/* A and B 400 x 400: 1.28 MB of request with a 1 MiB cap. */
	prob_make(&p, 1, 0, 0, 400, 400, 400, 1.0f, 0.0f, 0, 0, 0, 0, 11);
	float *got = calloc((size_t)p.c_len, sizeof(float));
	ck_assert_ptr_nonnull(got);
	struct rxg_gemm_args args = { .layout = RXG_ROW_MAJOR, .m = p.m, .n = p.n, .k = p.k,
				      .alpha = 1.0f, .a = p.a, .b = p.b, .c = got };
	int rc = rxg_gemm(c, &args, NULL);
	ck_assert_msg(rc == RXG_ETOOBIG, "rxg_gemm with a 1.28 MB request and a 1 MiB cap: %d (%s)",
		      rc, rxg_strerror(rc));
	ck_assert_msg(rxg_errmsg(c)[0], "no error sentence");
	free(got);
	prob_free(&p);
	struct rxg_status *st = NULL;
	if (rxg_status(c, &st) != RXG_OK) {
		rxg_close(c);
		c = lib_connect();
	}
	rxg_status_free(st);
	lib_case(c, 0, 1, 0, 30, 20, 10, 1.0f, 0.0f, 0, 0, 0, 0, 12);
	rxg_close(c);
}
END_TEST

/* ------------------------------------------------------------------------------------- */
/* clients (daemon with --max-frame 64M) */

#define N_THREADS 4
#define JOBS_PER_THREAD 5

struct worker {
	int index;
	char error[1024];
	int jobs_ok;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	rxg_client *c = NULL;
	char name[32];

	snprintf(name, sizeof(name), "test-thread-%d", w->index);
	int rc = rxg_connect(g_daemon.socket_path, name, &c);
	if (rc != RXG_OK) {
		snprintf(w->error, sizeof(w->error), "thread %d: rxg_connect: %s", w->index,
			 rxg_strerror(rc));
		return NULL;
	}
	for (int j = 0; j < JOBS_PER_THREAD; j++) {
		struct prob p;
		int s = w->index * JOBS_PER_THREAD + j;
		int64_t m = 40 + (s * 37) % 150, n = 30 + (s * 53) % 170, k = 20 + (s * 29) % 130;
		prob_make(&p, s & 1, (s >> 1) & 1, (s >> 2) & 1, m, n, k, 1.0f,
			  (s % 3) ? 0.0f : 0.5f, s % 3, s % 2, s % 4, 0, (uint64_t)s + 1000);
		rc = lib_run(c, &p, 0, NULL, w->error, sizeof(w->error));
		prob_free(&p);
		if (rc < 0)
			break;
		w->jobs_ok++;
	}
	rxg_close(c);
	return NULL;
}

START_TEST(test_clients_threads)
{
	pthread_t th[N_THREADS];
	struct worker w[N_THREADS];
	rxg_client *c = lib_connect();
	struct rxg_status *s0 = lib_status(c);

	for (int i = 0; i < N_THREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].index = i;
		ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < N_THREADS; i++)
		ck_assert_msg(w[i].error[0] == '\0', "%s", w[i].error);
	struct rxg_status *s1 = lib_status(c);
	ck_assert_uint_eq(s1->jobs_ok, s0->jobs_ok + N_THREADS * JOBS_PER_THREAD);
	ck_assert_uint_ge(s1->clients_total, s0->clients_total + N_THREADS);
	rxg_status_free(s0);
	rxg_status_free(s1);
	rxg_close(c);
}
END_TEST

/* Wait (up to 10 s) until the daemon counts want clients; returns the last count. */
static uint32_t wait_clients(rxg_client *c, uint32_t want)
{
	uint32_t n = 0;
	for (int i = 0; i < 200; i++) {
		struct rxg_status *st = lib_status(c);
		n = st->clients_connected;
		rxg_status_free(st);
		if (n == want)
			break;
		usleep(50000);
	}
	return n;
}

START_TEST(test_clients_vanish)
{
	enum { BIG = 768 };
	struct raw r;
	Rxgemm__GemmRequest g = RXGEMM__GEMM_REQUEST__INIT;
	uint8_t half[FRAME_HEADER_BYTES + 10];
	float *big = calloc((size_t)BIG * BIG, sizeof(float));
	uint64_t state = 1;

	/* Sends a large GEMM and leaves without reading the reply. */
	ck_assert_ptr_nonnull(big);
	refgemm_fill_random(big, (size_t)BIG * BIG, &state);
	g.m = g.n = g.k = BIG;
	g.alpha = 1.0f;
	g.layout = RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR;
	g.a.data = g.b.data = (uint8_t *)big;
	g.a.len = g.b.len = sizeof(float) * BIG * BIG;
	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	raw_send_gemm(&r, 2, &g);
	raw_close(&r);
	free(big);

	/* Sends half a frame and leaves. */
	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	frame_header_put(half, 1000);
	memset(half + FRAME_HEADER_BYTES, 0x08, 10);
	raw_send_bytes(&r, half, sizeof(half));
	raw_close(&r);

	/* Stops reading (shutdown SHUT_RD) and then asks: the daemon's replies meet EPIPE, which
	 * must not kill it (SIGPIPE). */
	raw_open(&r, g_daemon.socket_path);
	ck_assert_int_eq(shutdown(r.fd, SHUT_RD), 0);
	{
		Rxgemm__Request req = RXGEMM__REQUEST__INIT;
		Rxgemm__Hello hello = RXGEMM__HELLO__INIT;
		Rxgemm__StatusRequest sreq = RXGEMM__STATUS_REQUEST__INIT;
		uint8_t buf[256];
		size_t len;

		hello.protocol_version = RXGEMM_PROTOCOL_VERSION;
		req.request_id = 1;
		req.body_case = RXGEMM__REQUEST__BODY_HELLO;
		req.hello = &hello;
		len = rxgemm__request__pack(&req, buf + FRAME_HEADER_BYTES);
		frame_header_put(buf, (uint32_t)len);
		size_t used = FRAME_HEADER_BYTES + len;
		req.request_id = 2;
		req.body_case = RXGEMM__REQUEST__BODY_STATUS;
		req.status = &sreq;
		len = rxgemm__request__pack(&req, buf + used + FRAME_HEADER_BYTES);
		frame_header_put(buf + used, (uint32_t)len);
		used += FRAME_HEADER_BYTES + len;
		/* One write: the daemon may close the connection as soon as it meets EPIPE. */
		ck_assert_int_eq(send(r.fd, buf, used, MSG_NOSIGNAL), (ssize_t)used);
	}
	usleep(200000);
	raw_close(&r);
	ck_assert_msg(daemon_run_connectable(g_daemon.socket_path),
		      "rxgemmd stopped accepting connections after a client stopped reading "
		      "(killed by SIGPIPE?)");

	/* Connects and leaves without a word; leaves in the middle of a header. */
	raw_open(&r, g_daemon.socket_path);
	raw_close(&r);
	raw_open(&r, g_daemon.socket_path);
	raw_send_bytes(&r, half, 2);
	raw_close(&r);

	ck_assert_msg(kill(g_daemon.pid, 0) == 0, "rxgemmd is gone");
	rxg_client *c = lib_connect();
	lib_case(c, 1, 0, 0, 100, 90, 80, 1.0f, 0.0f, 0, 0, 0, 0, 3);
	uint32_t n = wait_clients(c, 1);
	ck_assert_msg(n == 1, "status counts %u clients connected after the others left, want 1",
		      n);
	/* The abandoned job leaves the queue. */
	struct rxg_status *st = NULL;
	for (int i = 0; i < 200; i++) {
		rxg_status_free(st);
		st = lib_status(c);
		if (st->jobs_queued == 0)
			break;
		usleep(50000);
	}
	ck_assert_uint_eq(st->jobs_queued, 0);
	rxg_status_free(st);
	lib_case(c, 0, 1, 1, 64, 32, 16, 1.0f, 0.0f, 0, 0, 0, 0, 4);
	ck_assert_msg(kill(g_daemon.pid, 0) == 0, "rxgemmd is gone");
	rxg_close(c);
}
END_TEST

/* ------------------------------------------------------------------------------------- */
/* shutdown: daemons of their own */

/* A daemon of the running shutdown test's own. daemon-run removes it at exit even when an
 * assertion ends the test early (check's failing assertions call exit()). */
static void own_daemon(struct daemon_run *d, const char *const *args)
{
	int rc = daemon_run_start(d, args);
	if (rc == DAEMON_RUN_SKIP) {
		daemon_run_cleanup(d);
		/* Exit code 77 from a forked test is a failure to check; say why instead. */
		ck_abort_msg("no OpenCL device for a daemon of this test's own");
	}
	ck_assert_msg(rc == 0, "cannot start rxgemmd");
}

static void assert_gone(const char *path)
{
	struct stat sb;
	ck_assert_msg(lstat(path, &sb) < 0 && errno == ENOENT,
		      "the socket file %s is still there after shutdown", path);
}

START_TEST(test_shutdown_sigterm_idle)
{
	struct daemon_run d;
	rxg_client *c = NULL;

	memset(&d, 0, sizeof(d));
	own_daemon(&d, NULL);
	ck_assert_int_eq(rxg_connect(d.socket_path, NULL, &c), RXG_OK);
	rxg_close(c);
	/* An idle client still connected does not hold the daemon up. */
	ck_assert_int_eq(rxg_connect(d.socket_path, NULL, &c), RXG_OK);
	int st = daemon_run_stop(&d, SIGTERM, 60);
	if (st != 0)
		daemon_run_dump_log(&d);
	ck_assert_msg(st == 0, "rxgemmd exited with %d after SIGTERM, want 0", st);
	assert_gone(d.socket_path);
	struct rxg_status *s = NULL;
	ck_assert_int_ne(rxg_status(c, &s), RXG_OK);
	rxg_close(c);
	daemon_run_cleanup(&d);
}
END_TEST

/* A stale socket file (nothing listening) is replaced; SIGINT stops the daemon cleanly. */
START_TEST(test_shutdown_stale_socket_sigint)
{
	struct daemon_run d;
	struct sockaddr_un sa;
	rxg_client *c = NULL;

	ck_assert_int_eq(daemon_run_init(&d), 0);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d.socket_path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ck_assert(!daemon_run_connectable(d.socket_path));

	own_daemon(&d, NULL);
	ck_assert_int_eq(rxg_connect(d.socket_path, NULL, &c), RXG_OK);
	struct rxg_status *s = NULL;
	ck_assert_int_eq(rxg_status(c, &s), RXG_OK);
	rxg_status_free(s);
	rxg_close(c);
	int st = daemon_run_stop(&d, SIGINT, 60);
	if (st != 0)
		daemon_run_dump_log(&d);
	ck_assert_msg(st == 0, "rxgemmd exited with %d after SIGINT, want 0", st);
	assert_gone(d.socket_path);
	daemon_run_cleanup(&d);
}
END_TEST

/* Spot-check an m x n x k row-major, beta 0 product at 64 places (the full reference is
 * too slow for these sizes). */
static void spot_check(const float *a, const float *b, const float *c, int64_t m, int64_t n,
		       int64_t k)
{
	uint64_t s = 12345;
	for (int t = 0; t < 64; t++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		int64_t i = (int64_t)((s >> 33) % (uint64_t)m);
		int64_t j = (int64_t)((s >> 13) % (uint64_t)n);
		double want = 0, scale = 0;
		for (int64_t l = 0; l < k; l++) {
			want += (double)a[i * k + l] * b[l * n + j];
			scale += fabs((double)a[i * k + l] * b[l * n + j]);
		}
		ck_assert_msg(fabs(c[i * n + j] - want) <= 1e-5 * scale + 1e-6,
			      "C(%" PRId64 ", %" PRId64 ") = %g, want %g", i, j,
			      (double)c[i * n + j], want);
	}
}

/* SIGTERM with one job running and one queued: the daemon answers both (the result, or
 * STATUS_SHUTDOWN), closes the connections, exits 0 and removes its socket. */
START_TEST(test_shutdown_sigterm_busy)
{
	enum { SIDE = 1152 };
	static const char *const args[] = { "--max-frame", "64M", NULL };
	struct daemon_run d;
	struct raw r, idle;
	rxg_client *c = NULL;
	float *a = malloc(sizeof(float) * SIDE * SIDE), *b = malloc(sizeof(float) * SIDE * SIDE);
	uint64_t state = 9;
	Rxgemm__GemmRequest g = RXGEMM__GEMM_REQUEST__INIT;

	ck_assert(a && b);
	refgemm_fill_random(a, (size_t)SIDE * SIDE, &state);
	refgemm_fill_random(b, (size_t)SIDE * SIDE, &state);
	memset(&d, 0, sizeof(d));
	own_daemon(&d, args);
	raw_open(&idle, d.socket_path);
	raw_hello(&idle, "test-server raw", NULL);
	raw_open(&r, d.socket_path);
	raw_hello(&r, "test-server raw", NULL);
	g.m = g.n = g.k = SIDE;
	g.alpha = 1.0f;
	g.layout = RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR;
	g.a.data = (uint8_t *)a;
	g.b.data = (uint8_t *)b;
	g.a.len = g.b.len = sizeof(float) * SIDE * SIDE;
	raw_send_gemm(&r, 11, &g);
	raw_send_gemm(&r, 12, &g);

	/* Wait until the daemon holds a job. */
	ck_assert_int_eq(rxg_connect(d.socket_path, NULL, &c), RXG_OK);
	uint32_t queued = 0;
	for (int i = 0; i < 400 && queued == 0; i++) {
		struct rxg_status *st = NULL;
		ck_assert_int_eq(rxg_status(c, &st), RXG_OK);
		queued = st->jobs_queued;
		rxg_status_free(st);
		if (!queued)
			usleep(5000);
	}
	rxg_close(c);
	ck_assert_msg(queued > 0, "the daemon never showed a queued job");
	kill(d.pid, SIGTERM);

	int ok = 0, shut = 0;
	for (int n = 0; n < 2; n++) {
		Rxgemm__Reply *rep = raw_recv(&r);
		ck_assert_msg(rep != NULL, "connection closed after %d of 2 replies during shutdown",
			      n);
		ck_assert_msg(rep->request_id == 11 || rep->request_id == 12,
			      "reply with request_id %" PRIu64, rep->request_id);
		if (rep->status == RXGEMM__STATUS__STATUS_OK) {
			ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_GEMM);
			ck_assert_uint_eq(rep->gemm->c.len, sizeof(float) * SIDE * SIDE);
			float *cc = malloc(rep->gemm->c.len);
			ck_assert_ptr_nonnull(cc);
			memcpy(cc, rep->gemm->c.data, rep->gemm->c.len);
			spot_check(a, b, cc, SIDE, SIDE, SIDE);
			free(cc);
			ok++;
		} else {
			ck_assert_msg(rep->status == RXGEMM__STATUS__STATUS_SHUTDOWN,
				      "request %" PRIu64 " during shutdown: status %d (\"%s\"), want "
				      "OK or SHUTDOWN",
				      rep->request_id, rep->status, rep->error);
			shut++;
		}
		rxgemm__reply__free_unpacked(rep, NULL);
	}
	fprintf(stderr, "sigterm_busy: %d job(s) finished, %d failed with STATUS_SHUTDOWN\n", ok,
		shut);
	raw_expect_eof(&r);
	raw_expect_eof(&idle);
	raw_close(&r);
	raw_close(&idle);
	/* Signal 0: wait for the exit the one SIGTERM above started. */
	int st = daemon_run_stop(&d, 0, 120);
	if (st != 0)
		daemon_run_dump_log(&d);
	ck_assert_msg(st == 0, "rxgemmd exited with %d after SIGTERM during a job, want 0", st);
	assert_gone(d.socket_path);
	daemon_run_cleanup(&d);
	free(a);
	free(b);
}
END_TEST

/* ------------------------------------------------------------------------------------- */

static TCase *tcase(const char *name, void (*setup)(void))
{
	TCase *tc = tcase_create(name);
	if (setup)
		tcase_add_unchecked_fixture(tc, setup, daemon_down);
	/* Without make check's CK_DEFAULT_TIMEOUT, check would allow only 4 s. */
	if (!getenv("CK_DEFAULT_TIMEOUT"))
		tcase_set_timeout(tc, 300);
	return tc;
}

static Suite *server_suite(void)
{
	Suite *s = suite_create("server");
	TCase *tc;

	tc = tcase("library", setup_default);
	tcase_add_test(tc, test_lib_server_info);
	tcase_add_test(tc, test_lib_connect_fails);
	tcase_add_test(tc, test_lib_square);
	tcase_add_test(tc, test_lib_odd);
	tcase_add_test(tc, test_lib_transposes);
	tcase_add_test(tc, test_lib_layouts_agree);
	tcase_add_test(tc, test_lib_alpha_beta);
	tcase_add_test(tc, test_lib_beta0_nan);
	tcase_add_test(tc, test_lib_leading_dims);
	tcase_add_test(tc, test_lib_batched);
	tcase_add_test(tc, test_lib_status_counters);
	suite_add_tcase(s, tc);

	tc = tcase("protocol", setup_small_frames);
	tcase_add_test(tc, test_proto_hello);
	tcase_add_loop_test(tc, test_proto_bad_gemm, 0, N_BAD_CASES);
	tcase_add_test(tc, test_proto_lengths_and_padding);
	tcase_add_test(tc, test_proto_oversized_frame);
	tcase_add_test(tc, test_proto_exact_max_frame);
	tcase_add_test(tc, test_proto_garbage_body);
	tcase_add_test(tc, test_proto_unknown_field);
	tcase_add_test(tc, test_proto_no_body);
	tcase_add_test(tc, test_proto_before_hello);
	tcase_add_test(tc, test_proto_wrong_version);
	tcase_add_test(tc, test_proto_pipelining);
	tcase_add_test(tc, test_proto_over_max_alloc);
	tcase_add_test(tc, test_proto_big_reply);
	tcase_add_test(tc, test_proto_large_inline);
	tcase_add_test(tc, test_proto_lib_request_too_big);
	suite_add_tcase(s, tc);

	tc = tcase("clients", setup_big_frames);
	tcase_add_test(tc, test_frames_reused);
	tcase_add_test(tc, test_lib_pipelined_big_reply);
	tcase_add_test(tc, test_clients_threads);
	tcase_add_test(tc, test_clients_vanish);
	suite_add_tcase(s, tc);

	tc = tcase("shutdown", NULL);
	tcase_add_test(tc, test_shutdown_sigterm_idle);
	tcase_add_test(tc, test_shutdown_stale_socket_sigint);
	tcase_add_test(tc, test_shutdown_sigterm_busy);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(server_suite());

	/* A test writing to a connection the daemon closed gets EPIPE, not death. */
	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (g_teardown_failed)
		fprintf(stderr, "test-server: a daemon did not shut down cleanly (see above)\n");
	return failed || g_teardown_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

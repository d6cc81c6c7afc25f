/* test-tensor.c: device tensors against a real rxgemmd (PoCL in make check).
 *
 * One daemon per test case (an unchecked fixture); each test runs in its own forked
 * process. Results are checked against refgemm, the CPU reference.
 *
 *   gemm:       every source of A, B and C (inline, region, tensor) with the result inline,
 *               in a region or in a tensor, both layouts, transposes, odd shapes; a chain
 *               of three products kept on the device; create and read back
 *   accounting: the budget's reserved and in-use bytes and the client's tensor figures in
 *               status return exactly to where they were after free, after a disconnect
 *               and after a client is SIGKILLed holding tensors
 *   misuse:     hand-built requests: use after free, another connection's id, a tensor too
 *               small, two sources for one operand, C written over A, bad dims; each its
 *               coded error, and the connection serves on; a tensor freed while a queued
 *               job uses it (the job completes correctly)
 *   budget:     a small budget and quota: a tensor over the budget (TOO_BIG), over the
 *               quota (QUOTA), over what other tensors leave (TOO_BIG); a GEMM still runs
 *               (in pieces) beside tensors that hold most of the budget */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon-run.h"
#include "frame.h"
#include "raw.h"
#include "refgemm.h"
#include "rxgemm.h"
#include "rxgemm.pb-c.h"

static struct daemon_run g_daemon;
static int g_teardown_failed;

static void daemon_up_args(const char *const *args)
{
	int rc = daemon_run_start(&g_daemon, args);

	if (rc == DAEMON_RUN_SKIP) {
		daemon_run_cleanup(&g_daemon);
		exit(DAEMON_RUN_SKIP);
	}
	if (rc != 0) {
		fprintf(stderr, "test-tensor: cannot start rxgemmd\n");
		daemon_run_cleanup(&g_daemon);
		exit(EXIT_FAILURE);
	}
}

static void daemon_up(void)
{
	daemon_up_args(NULL);
}

/* 8 MiB of budget, 6 MiB per client. */
static void daemon_up_small(void)
{
	static const char *const args[] = { "--vram-budget", "8M", "--client-quota", "6M", NULL };

	daemon_up_args(args);
}

static void daemon_down(void)
{
	int st = daemon_run_stop(&g_daemon, SIGTERM, 60);

	if (st != 0) {
		fprintf(stderr, "test-tensor: rxgemmd exited with %d after SIGTERM (want 0)\n", st);
		daemon_run_dump_log(&g_daemon);
		g_teardown_failed = 1;
	}
	daemon_run_cleanup(&g_daemon);
}

/* ------------------------------------------------------------------------------------- */
/* Problems: one GEMM with its operands, C before the call and the reference answer. */

struct prob {
	int row_major, trans_a, trans_b;
	int64_t m, n, k;
	float alpha, beta;
	int64_t lda, ldb, ldc;
	int64_t a_len, b_len, c_len; /* ld * outer floats each */
	float *a, *b, *c0, *want;
};

static void prob_make(struct prob *p, int row_major, int ta, int tb, int64_t m, int64_t n,
		      int64_t k, float alpha, float beta, int64_t pad, uint64_t seed)
{
	int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k,
		b_cols = tb ? k : n;
	uint64_t state = seed;

	memset(p, 0, sizeof(*p));
	p->row_major = row_major;
	p->trans_a = ta;
	p->trans_b = tb;
	p->m = m;
	p->n = n;
	p->k = k;
	p->alpha = alpha;
	p->beta = beta;
	p->lda = (row_major ? a_cols : a_rows) + pad;
	p->ldb = (row_major ? b_cols : b_rows) + pad;
	p->ldc = (row_major ? n : m) + pad;
	p->a_len = p->lda * (row_major ? a_rows : a_cols);
	p->b_len = p->ldb * (row_major ? b_rows : b_cols);
	p->c_len = p->ldc * (row_major ? m : n);
	p->a = malloc(sizeof(float) * (size_t)p->a_len);
	p->b = malloc(sizeof(float) * (size_t)p->b_len);
	p->c0 = malloc(sizeof(float) * (size_t)p->c_len);
	p->want = malloc(sizeof(float) * (size_t)p->c_len);
	ck_assert(p->a && p->b && p->c0 && p->want);
	refgemm_fill_random(p->a, (size_t)p->a_len, &state);
	refgemm_fill_random(p->b, (size_t)p->b_len, &state);
	refgemm_fill_random(p->c0, (size_t)p->c_len, &state);
	memcpy(p->want, p->c0, sizeof(float) * (size_t)p->c_len);
	refgemm(row_major, ta, tb, m, n, k, alpha, p->a, p->lda, p->b, p->ldb, beta, p->want,
		p->ldc);
}

static void prob_free(struct prob *p)
{
	free(p->a);
	free(p->b);
	free(p->c0);
	free(p->want);
}

/* got against the reference; the padding between C's rows or columns must be pad_want's
 * (NULL: zeros) bit for bit, up to the last element the daemon writes. */
static void prob_check(const struct prob *p, const float *got, const float *pad_want,
		       const char *what)
{
	int64_t inner = p->row_major ? p->n : p->m, outer = p->row_major ? p->m : p->n;
	int64_t written = p->ldc * (outer - 1) + inner;
	double max_err = 0;
	int64_t bi = -1, bj = -1;

	for (int64_t i = 0; i < written; i++) {
		if (i % p->ldc < inner)
			continue;
		float want = pad_want ? pad_want[i] : 0.0f;
		ck_assert_msg(memcmp(&got[i], &want, sizeof(float)) == 0,
			      "%s: padding at %" PRId64 " is %g, want %g", what, i, (double)got[i],
			      (double)want);
	}
	int bad = refgemm_compare(p->row_major, p->m, p->n, p->k, got, p->want, p->ldc, &max_err,
				  &bi, &bj);
	ck_assert_msg(bad == 0,
		      "%s: %d elements differ from the CPU reference, worst (%" PRId64 ", %" PRId64
		      ") off by %g",
		      what, bad, bi, bj, max_err);
}

static void args_from(struct rxg_gemm_args *args, const struct prob *p)
{
	memset(args, 0, sizeof(*args));
	args->layout = p->row_major ? RXG_ROW_MAJOR : RXG_COL_MAJOR;
	args->trans_a = p->trans_a;
	args->trans_b = p->trans_b;
	args->m = p->m;
	args->n = p->n;
	args->k = p->k;
	args->alpha = p->alpha;
	args->beta = p->beta;
	args->lda = p->lda;
	args->ldb = p->ldb;
	args->ldc = p->ldc;
}

/* ------------------------------------------------------------------------------------- */
/* Library helpers. */

static rxg_client *lib_connect(const char *name)
{
	rxg_client *c = NULL;
	int rc = rxg_connect(g_daemon.socket_path, name, &c);

	ck_assert_msg(rc == RXG_OK, "rxg_connect: %s", rxg_strerror(rc));
	return c;
}

static rxg_tensor *lib_tensor(rxg_client *c, int64_t floats, const float *data)
{
	rxg_tensor *t = NULL;
	int rc = rxg_tensor_create(c, &floats, 1, data, &t);

	ck_assert_msg(rc == RXG_OK, "rxg_tensor_create(%" PRId64 "): %s: %s", floats,
		      rxg_strerror(rc), rxg_errmsg(c));
	ck_assert_uint_eq(rxg_tensor_floats(t), (size_t)floats);
	return t;
}

static float *lib_read(rxg_tensor *t, rxg_client *c)
{
	size_t n = rxg_tensor_floats(t);
	float *out = malloc(n * sizeof(float));

	ck_assert_ptr_nonnull(out);
	int rc = rxg_tensor_read(t, out, n);
	ck_assert_msg(rc == RXG_OK, "rxg_tensor_read: %s: %s", rxg_strerror(rc), rxg_errmsg(c));
	return out;
}

/* The budget's figures and this client's (client_id) tensor figures. */
struct figures {
	uint64_t reserved, in_use, resident_client_bytes;
	uint32_t client_tensors;
	uint32_t clients;
	uint32_t jobs_queued;
};

static struct figures lib_figures(rxg_client *c, uint32_t client_id)
{
	struct rxg_status *st = NULL;
	struct figures f = { 0 };
	int rc = rxg_status(c, &st);

	ck_assert_msg(rc == RXG_OK, "rxg_status: %s", rxg_strerror(rc));
	f.reserved = st->vram_reserved_bytes;
	f.in_use = st->vram_in_use_bytes;
	f.clients = st->clients_connected;
	f.jobs_queued = st->jobs_queued;
	for (size_t i = 0; i < st->n_clients; i++)
		if (st->clients[i].client_id == client_id) {
			f.client_tensors = st->clients[i].tensors;
			f.resident_client_bytes = st->clients[i].tensor_bytes;
		}
	rxg_status_free(st);
	return f;
}

/* Poll until the daemon has clients connections and nothing reserved beyond base. */
static void wait_settled(rxg_client *watch, uint32_t clients, const struct figures *base,
			 const char *what)
{
	for (int i = 0;; i++) {
		struct figures f = lib_figures(watch, 0);

		if (f.clients == clients && f.jobs_queued == 0 && f.reserved == base->reserved &&
		    f.in_use == base->in_use)
			return;
		ck_assert_msg(i < 600, "%s: after 30 s %" PRIu64 " bytes reserved, %" PRIu64
				       " in use, %u clients; want %" PRIu64 ", %" PRIu64 ", %u",
			      what, f.reserved, f.in_use, f.clients, base->reserved, base->in_use,
			      clients);
		usleep(50000);
	}
}

/* ------------------------------------------------------------------------------------- */
/* GEMMs on tensors. */

enum { SRC_INLINE = 0, SRC_REGION = 1, SRC_TENSOR = 2 };
static const char *const src_name[3] = { "inline", "region", "tensor" };

/* One combination: A, B and C each from src[i]; the result into a new tensor when
 * out_tensor, else where C came from (inline: the array; region and tensor: in place). */
static void run_combo(rxg_client *c, const struct prob *p, const int src[3], int out_tensor,
		      const char *what)
{
	const float *data[3] = { p->a, p->b, p->c0 };
	const int64_t len[3] = { p->a_len, p->b_len, p->c_len };
	/* Tensors hold more than the matrix (the first floats are it): 3 more for A, 1 for
	 * B, none for C. */
	const int64_t extra[3] = { 3, 1, 0 };
	rxg_tensor *t[3] = { NULL }, *out = NULL;
	rxg_buffer *buf = NULL;
	size_t off[3], total = 64;
	float *inline_c = malloc(sizeof(float) * (size_t)p->c_len);
	struct rxg_gemm_args args;
	const float *got;
	float *read = NULL;
	int rc;

	ck_assert_ptr_nonnull(inline_c);
	memcpy(inline_c, p->c0, sizeof(float) * (size_t)p->c_len);
	for (int i = 0; i < 3; i++) {
		off[i] = total;
		total += sizeof(float) * (size_t)len[i] + 16;
	}
	rc = rxg_buffer_create(c, total, &buf);
	ck_assert_msg(rc == RXG_OK, "rxg_buffer_create: %s", rxg_strerror(rc));
	for (int i = 0; i < 3; i++) {
		memcpy((uint8_t *)rxg_buffer_ptr(buf) + off[i], data[i],
		       sizeof(float) * (size_t)len[i]);
		if (src[i] == SRC_TENSOR) {
			/* The operand's floats then extra ones, which must not matter. */
			float *x = calloc((size_t)(len[i] + extra[i]), sizeof(float));

			ck_assert_ptr_nonnull(x);
			memcpy(x, data[i], sizeof(float) * (size_t)len[i]);
			for (int64_t j = len[i]; j < len[i] + extra[i]; j++)
				x[j] = 1e30f;
			t[i] = lib_tensor(c, len[i] + extra[i], x);
			free(x);
		}
	}
	args_from(&args, p);
	args.a = src[0] == SRC_INLINE ? p->a : NULL;
	args.a_buf = src[0] == SRC_REGION ? buf : NULL;
	args.a_offset = off[0];
	args.a_tensor = t[0];
	args.b = src[1] == SRC_INLINE ? p->b : NULL;
	args.b_buf = src[1] == SRC_REGION ? buf : NULL;
	args.b_offset = off[1];
	args.b_tensor = t[1];
	args.c = src[2] == SRC_INLINE ? inline_c : NULL;
	args.c_buf = src[2] == SRC_REGION ? buf : NULL;
	args.c_offset = off[2];
	args.c_tensor = t[2];
	if (out_tensor) {
		out = lib_tensor(c, p->c_len, NULL); /* zeros */
		args.c_out_tensor = out;
	}
	rc = rxg_gemm(c, &args, NULL);
	ck_assert_msg(rc == RXG_OK, "%s: rxg_gemm: %s: %s", what, rxg_strerror(rc), rxg_errmsg(c));
	if (out_tensor) {
		/* The padding: C's input's when it went up (beta reads it, or it is a tensor
		 * copied on the device), else the new tensor's zeros. */
		int c_went_up = p->beta != 0.0f || src[2] == SRC_TENSOR;

		got = read = lib_read(out, c);
		prob_check(p, got, c_went_up ? p->c0 : NULL, what);
		/* C's input is untouched. */
		if (src[2] == SRC_TENSOR) {
			float *cin = lib_read(t[2], c);
			ck_assert(memcmp(cin, p->c0, sizeof(float) * (size_t)p->c_len) == 0);
			free(cin);
		}
	} else if (src[2] == SRC_TENSOR) {
		got = read = lib_read(t[2], c);
		prob_check(p, got, p->c0, what);
	} else if (src[2] == SRC_REGION) {
		prob_check(p, (const float *)((uint8_t *)rxg_buffer_ptr(buf) + off[2]), p->c0, what);
	} else {
		prob_check(p, inline_c, p->c0, what);
	}
	/* A and B are as they were, wherever they are. */
	for (int i = 0; i < 2; i++)
		if (t[i]) {
			float *x = lib_read(t[i], c);
			ck_assert_msg(memcmp(x, data[i], sizeof(float) * (size_t)len[i]) == 0,
				      "%s: operand %d's tensor changed", what, i);
			free(x);
		}
	free(read);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(rxg_tensor_free(t[i]), RXG_OK);
	ck_assert_int_eq(rxg_tensor_free(out), RXG_OK);
	ck_assert_int_eq(rxg_buffer_free(buf), RXG_OK);
	free(inline_c);
}

START_TEST(test_gemm_combos)
{
	rxg_client *c = lib_connect("test-tensor");
	int n = 0;

	for (int sa = 0; sa < 3; sa++)
		for (int sb = 0; sb < 3; sb++)
			for (int sc = 0; sc < 3; sc++)
				for (int out = 0; out < 2; out++, n++) {
					const int src[3] = { sa, sb, sc };
					int rm = n & 1, ta = (n >> 1) & 1, tb = (n >> 2) & 1;
					float beta = n % 3 == 0 ? 0.0f : -0.75f;
					struct prob p;
					char what[160];

					snprintf(what, sizeof(what), "A %s, B %s, C %s, result %s, %s "
						 "ta=%d tb=%d beta=%g",
						 src_name[sa], src_name[sb], src_name[sc],
						 out ? "c_out_tensor" : "in C's place",
						 rm ? "row" : "col", ta, tb, (double)beta);
					prob_make(&p, rm, ta, tb, 17 + n % 7, 23 - n % 5, 9 + n % 11,
						  1.5f, beta, n % 3, 1000 + (uint64_t)n);
					run_combo(c, &p, src, out, what);
					prob_free(&p);
				}
	rxg_close(c);
}
END_TEST

/* Jobs in flight together: a product into a tensor, a read of it, the tensor doubled in
 * place, a read again, all submitted before any is waited for; each read sees the jobs
 * sent before it. */
START_TEST(test_async)
{
	enum { M = 37, N = 29, K = 45 };
	rxg_client *c = lib_connect("test-tensor async");
	float a[M * K], b[K * N], want[M * N], out1[M * N], out2[M * N], small[4];
	struct rxg_gemm_args g1, g2;
	uint64_t ids[4], state = 11, id;
	uint64_t done = 0;

	refgemm_fill_random(a, M * K, &state);
	refgemm_fill_random(b, K * N, &state);
	refgemm(1, 0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, want, N);
	rxg_tensor *ta = lib_tensor(c, M * K, a), *tb = lib_tensor(c, K * N, b);
	rxg_tensor *tc = lib_tensor(c, M * N, NULL);
	memset(&g1, 0, sizeof(g1));
	g1.layout = RXG_ROW_MAJOR;
	g1.m = M, g1.n = N, g1.k = K;
	g1.alpha = 1.0f;
	g1.a_tensor = ta, g1.b_tensor = tb, g1.c_out_tensor = tc;
	g2 = g1;
	g2.alpha = 0.0f;
	g2.beta = 2.0f;
	g2.c_out_tensor = NULL;
	g2.c_tensor = tc; /* in place */
	ck_assert_int_eq(rxg_submit_gemm(c, &g1, NULL, &ids[0]), RXG_OK);
	ck_assert_int_eq(rxg_submit_tensor_read(tc, out1, M * N, &ids[1]), RXG_OK);
	ck_assert_int_eq(rxg_submit_gemm(c, &g2, NULL, &ids[2]), RXG_OK);
	ck_assert_int_eq(rxg_submit_tensor_read(tc, out2, M * N, &ids[3]), RXG_OK);
	ck_assert_int_eq(rxg_submit_tensor_read(tc, small, 4, &id), RXG_EINVAL);
	ck_assert_uint_eq(id, 0);
	for (int i = 0; i < 4; i++) {
		int rc = rxg_wait_any(c, -1, &id, NULL);
		ck_assert_msg(rc == RXG_OK, "job %" PRIu64 ": %s: %s", id, rxg_strerror(rc),
			      rxg_errmsg(c));
		for (int j = 0; j < 4; j++)
			if (ids[j] == id)
				done |= 1u << j;
	}
	ck_assert_uint_eq(done, 15);
	double max_err = 0;
	int bad = refgemm_compare(1, M, N, K, out1, want, N, &max_err, NULL, NULL);
	ck_assert_msg(bad == 0, "the first read: %d elements off, worst by %g", bad, max_err);
	for (int i = 0; i < M * N; i++)
		ck_assert_msg(out2[i] == 2.0f * out1[i], "element %d of the second read: %g, want %g",
			      i, (double)out2[i], 2.0 * out1[i]);
	ck_assert_int_eq(rxg_tensor_free(ta), RXG_OK);
	ck_assert_int_eq(rxg_tensor_free(tb), RXG_OK);
	ck_assert_int_eq(rxg_tensor_free(tc), RXG_OK);
	rxg_close(c);
}
END_TEST

/* A strided batch of 3 with A and C in tensors, B inline, the result into C in place. */
START_TEST(test_gemm_batch)
{
	enum { M = 19, N = 13, K = 11, BATCH = 3, PAD = 2 };
	const int64_t lda = M + PAD, ldb = K, ldc = M + PAD;
	const int64_t sa = lda * K + 5, sb = ldb * N, sc = ldc * N + 3;
	rxg_client *c = lib_connect("test-tensor batch");
	float *a = malloc(sizeof(float) * sa * BATCH), *b = malloc(sizeof(float) * sb * BATCH);
	float *c0 = malloc(sizeof(float) * sc * BATCH), *want = malloc(sizeof(float) * sc * BATCH);
	struct rxg_gemm_args args;
	uint64_t state = 3;

	ck_assert(a && b && c0 && want);
	refgemm_fill_random(a, (size_t)(sa * BATCH), &state);
	refgemm_fill_random(b, (size_t)(sb * BATCH), &state);
	refgemm_fill_random(c0, (size_t)(sc * BATCH), &state);
	memcpy(want, c0, sizeof(float) * sc * BATCH);
	for (int i = 0; i < BATCH; i++)
		refgemm(0, 0, 0, M, N, K, 0.5f, a + i * sa, lda, b + i * sb, ldb, 2.0f,
			want + i * sc, ldc);
	rxg_tensor *ta = lib_tensor(c, sa * BATCH, a), *tc = lib_tensor(c, sc * BATCH, c0);
	memset(&args, 0, sizeof(args));
	args.m = M, args.n = N, args.k = K;
	args.alpha = 0.5f, args.beta = 2.0f;
	args.lda = lda, args.ldb = ldb, args.ldc = ldc;
	args.batch_count = BATCH;
	args.stride_a = sa, args.stride_b = sb, args.stride_c = sc;
	args.a_tensor = ta;
	args.b = b;
	args.c_tensor = tc;
	int rc = rxg_gemm(c, &args, NULL);
	ck_assert_msg(rc == RXG_OK, "batch: %s: %s", rxg_strerror(rc), rxg_errmsg(c));
	float *got = lib_read(tc, c);
	for (int i = 0; i < BATCH; i++) {
		double max_err = 0;
		int bad = refgemm_compare(0, M, N, K, got + i * sc, want + i * sc, ldc, &max_err,
					  NULL, NULL);
		ck_assert_msg(bad == 0, "matrix %d of the batch: %d elements off, worst by %g", i,
			      bad, max_err);
		/* What lies between the matrices and their columns is untouched. */
		for (int64_t j = 0; j < sc; j++)
			if (j >= ldc * N || j % ldc >= M)
				ck_assert(got[i * sc + j] == c0[i * sc + j]);
	}
	free(got);
	ck_assert_int_eq(rxg_tensor_free(ta), RXG_OK);
	ck_assert_int_eq(rxg_tensor_free(tc), RXG_OK);
	free(a), free(b), free(c0), free(want);
	rxg_close(c);
}
END_TEST

/* C1 = A B, C2 = C1 B, C3 = C2 B, with A, B and every C a tensor: only C3 is read. */
START_TEST(test_gemm_chain)
{
	enum { N = 70 };
	rxg_client *c = lib_connect("test-tensor chain");
	float *a = malloc(sizeof(float) * N * N), *b = malloc(sizeof(float) * N * N);
	float *want = malloc(sizeof(float) * N * N), *next = malloc(sizeof(float) * N * N);
	rxg_tensor *ta, *tb, *tc[3];
	struct rxg_gemm_args args;
	uint64_t state = 42;

	ck_assert(a && b && want && next);
	refgemm_fill_random(a, N * N, &state);
	refgemm_fill_random(b, N * N, &state);
	ta = lib_tensor(c, N * N, a);
	tb = lib_tensor(c, N * N, b);
	memcpy(want, a, sizeof(float) * N * N);
	for (int i = 0; i < 3; i++) {
		tc[i] = lib_tensor(c, N * N, NULL);
		memset(&args, 0, sizeof(args));
		args.m = args.n = args.k = N;
		args.alpha = 1.0f;
		args.a_tensor = i ? tc[i - 1] : ta;
		args.b_tensor = tb;
		args.c_out_tensor = tc[i];
		struct rxg_timings t;
		int rc = rxg_gemm(c, &args, &t);
		ck_assert_msg(rc == RXG_OK, "product %d: %s: %s", i + 1, rxg_strerror(rc),
			      rxg_errmsg(c));
		/* Nothing crossed to or from the host. */
		ck_assert_uint_eq(t.h2d_ns, 0);
		ck_assert_uint_eq(t.d2h_ns, 0);
		refgemm(0, 0, 0, N, N, N, 1.0f, want, N, b, N, 0.0f, next, N);
		memcpy(want, next, sizeof(float) * N * N);
	}
	float *got = lib_read(tc[2], c);
	double max_err = 0;
	int bad = refgemm_compare(0, N, N, 3 * N, got, want, N, &max_err, NULL, NULL);
	ck_assert_msg(bad == 0, "C3: %d elements differ from the CPU chain, worst by %g", bad,
		      max_err);
	/* A product may also replace its own input in place: C3 = 0 (A B) + 2 C3, exactly
	 * twice what C3 was. */
	memset(&args, 0, sizeof(args));
	args.m = args.n = args.k = N;
	args.alpha = 0.0f;
	args.beta = 2.0f;
	args.a_tensor = ta;
	args.b_tensor = tb;
	args.c_tensor = tc[2];
	ck_assert_int_eq(rxg_gemm(c, &args, NULL), RXG_OK);
	float *twice = lib_read(tc[2], c);
	for (int i = 0; i < N * N; i++)
		ck_assert_msg(twice[i] == 2.0f * got[i], "element %d: %g, want %g", i,
			      (double)twice[i], 2.0 * got[i]);
	free(twice);
	free(got);
	/* Four GEMMs ran for this client, and no C crossed to it in a GEMM reply. */
	{
		struct rxg_status *st = NULL;
		uint32_t me = rxg_server_info(c)->client_id;
		int found = 0;

		ck_assert_int_eq(rxg_status(c, &st), RXG_OK);
		for (size_t i = 0; i < st->n_clients; i++)
			if (st->clients[i].client_id == me) {
				found = 1;
				ck_assert_uint_eq(st->clients[i].jobs_ok, 4);
				ck_assert_uint_eq(st->clients[i].bytes_out, 0);
				ck_assert_uint_eq(st->clients[i].tensors, 5);
			}
		ck_assert(found);
		rxg_status_free(st);
	}
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(rxg_tensor_free(tc[i]), RXG_OK);
	ck_assert_int_eq(rxg_tensor_free(ta), RXG_OK);
	ck_assert_int_eq(rxg_tensor_free(tb), RXG_OK);
	free(a), free(b), free(want), free(next);
	rxg_close(c);
}
END_TEST

/* ------------------------------------------------------------------------------------- */
/* Accounting. */

START_TEST(test_accounting)
{
	rxg_client *watch = lib_connect("test-tensor watch"), *c = lib_connect("test-tensor");
	uint32_t id = rxg_server_info(c)->client_id;
	const int64_t dims2[2] = { 30, 50 }, dims3[3] = { 2, 3, 1000 };
	float data[1500], got[1500];
	rxg_tensor *t[4];
	rxg_buffer *buf;
	uint64_t state = 9;

	struct figures base = lib_figures(watch, id);
	ck_assert_uint_eq(base.client_tensors, 0);
	ck_assert_uint_eq(base.resident_client_bytes, 0);
	refgemm_fill_random(data, 1500, &state);
	ck_assert_int_eq(rxg_tensor_create(c, dims2, 2, data, &t[0]), RXG_OK);
	ck_assert_int_eq(rxg_tensor_create(c, dims3, 3, NULL, &t[1]), RXG_OK);
	ck_assert_int_eq(rxg_buffer_create(c, 8192, &buf), RXG_OK);
	memcpy((uint8_t *)rxg_buffer_ptr(buf) + 40, data, sizeof(data));
	ck_assert_int_eq(rxg_tensor_create_from_buffer(c, buf, 40, dims2, 2, &t[2]), RXG_OK);
	t[3] = lib_tensor(c, 1 << 20, NULL); /* 4 MiB */

	/* Each reads back what it was made from. */
	ck_assert_int_eq(rxg_tensor_read(t[0], got, 1500), RXG_OK);
	ck_assert(memcmp(got, data, sizeof(data)) == 0);
	ck_assert_int_eq(rxg_tensor_read(t[2], got, 1500), RXG_OK);
	ck_assert(memcmp(got, data, sizeof(data)) == 0);
	float *zeros = lib_read(t[1], c);
	for (int i = 0; i < 6000; i++)
		ck_assert(zeros[i] == 0.0f);
	free(zeros);
	memset(rxg_buffer_ptr(buf), 0, 8192);
	ck_assert_int_eq(rxg_tensor_read_to_buffer(t[0], buf, 1024), RXG_OK);
	ck_assert(memcmp((uint8_t *)rxg_buffer_ptr(buf) + 1024, data, sizeof(data)) == 0);
	ck_assert_int_eq(rxg_tensor_read(t[0], got, 1499), RXG_EINVAL);

	struct figures held = lib_figures(watch, id);
	ck_assert_uint_eq(held.client_tensors, 4);
	ck_assert_uint_ge(held.resident_client_bytes, (1500 + 6000 + 1500 + (1 << 20)) * 4);
	/* Exactly the tensors' bytes are reserved, in buffers in use. */
	ck_assert_uint_eq(held.reserved, base.reserved + held.resident_client_bytes);
	ck_assert_uint_eq(held.in_use, base.in_use + held.resident_client_bytes);

	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(rxg_tensor_free(t[i]), RXG_OK);
	struct figures after = lib_figures(watch, id);
	ck_assert_uint_eq(after.client_tensors, 0);
	ck_assert_uint_eq(after.resident_client_bytes, 0);
	ck_assert_uint_eq(after.reserved, base.reserved);
	ck_assert_uint_eq(after.in_use, base.in_use);

	ck_assert_int_eq(rxg_buffer_free(buf), RXG_OK);
	rxg_close(c);

	/* Left behind on a disconnect: freed by the daemon. A child makes two tensors and
	 * leaves with _exit, freeing nothing (as a careless or crashing client would): its
	 * connection closes with it, and its tensor handles die with the process. */
	int up[2], down[2];
	uint32_t child_id = 0;

	ck_assert_int_eq(pipe(up), 0);
	ck_assert_int_eq(pipe(down), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		rxg_client *cc = NULL;
		rxg_tensor *t1 = NULL, *t2 = NULL;
		int64_t n1 = 1 << 18, n2 = 333;
		uint32_t cid = 0;
		char go;

		close(up[0]);
		close(down[1]);
		if (rxg_connect(g_daemon.socket_path, "test-tensor careless", &cc) == RXG_OK &&
		    rxg_tensor_create(cc, &n1, 1, NULL, &t1) == RXG_OK &&
		    rxg_tensor_create(cc, &n2, 1, data, &t2) == RXG_OK)
			cid = rxg_server_info(cc)->client_id;
		if (write(up[1], &cid, sizeof(cid)) != sizeof(cid))
			_exit(1);
		/* Until the parent has looked: its end closing ends the read. */
		if (read(down[0], &go, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	ck_assert_int_eq(read(up[0], &child_id, sizeof(child_id)), sizeof(child_id));
	close(up[0]);
	ck_assert_msg(child_id != 0, "the child could not create its tensors");
	held = lib_figures(watch, child_id);
	ck_assert_uint_eq(held.client_tensors, 2);
	ck_assert_uint_eq(held.reserved, base.reserved + held.resident_client_bytes);
	close(down[1]); /* the child exits, and its connection closes with it */
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	wait_settled(watch, 1, &base, "after the disconnect");
	rxg_close(watch);
}
END_TEST

/* A client SIGKILLed while it holds tensors: the daemon frees them. */
START_TEST(test_sigkill)
{
	rxg_client *watch = lib_connect("test-tensor watch");
	struct figures base = lib_figures(watch, 0);
	int pfd[2];
	uint32_t child_id = 0;

	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		rxg_client *c = NULL;
		rxg_tensor *t1 = NULL, *t2 = NULL;
		int64_t n1 = 1 << 19, n2 = 1000;
		uint32_t cid = 0;

		close(pfd[0]);
		if (rxg_connect(g_daemon.socket_path, "test-tensor victim", &c) == RXG_OK &&
		    rxg_tensor_create(c, &n1, 1, NULL, &t1) == RXG_OK &&
		    rxg_tensor_create(c, &n2, 1, NULL, &t2) == RXG_OK)
			cid = rxg_server_info(c)->client_id;
		if (write(pfd[1], &cid, sizeof(cid)) != sizeof(cid))
			_exit(1);
		pause();
		_exit(0);
	}
	close(pfd[1]);
	ck_assert_int_eq(read(pfd[0], &child_id, sizeof(child_id)), sizeof(child_id));
	close(pfd[0]);
	ck_assert_msg(child_id != 0, "the child could not create its tensors");
	struct figures held = lib_figures(watch, child_id);
	ck_assert_uint_eq(held.client_tensors, 2);
	ck_assert_uint_eq(held.reserved, base.reserved + held.resident_client_bytes);
	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	wait_settled(watch, 1, &base, "after SIGKILL");
	rxg_close(watch);
}
END_TEST

/* ------------------------------------------------------------------------------------- */
/* Raw protocol (tests/lib/raw.h). */

static void raw_send_id(struct raw *r, uint64_t id, Rxgemm__Request *req)
{
	req->request_id = id;
	raw_send(r, req);
}

/* Connected and greeted by a daemon that announces tensors. */
static void raw_open_hello(struct raw *r)
{
	raw_open(r, g_daemon.socket_path);
	raw_hello(r, "test-tensor raw", "tensor");
}

/* Create a tensor of dims (data: n_data floats, NULL: zeros); its id, or 0 when the reply
 * had status want (!= OK). */
static uint32_t raw_create(struct raw *r, uint64_t id, const int64_t *dims, size_t ndims,
			   const float *data, size_t n_data, Rxgemm__Status want, const char *text)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__TensorCreate tc = RXGEMM__TENSOR_CREATE__INIT;
	uint32_t tid = 0;

	tc.dims = (int64_t *)(uintptr_t)dims;
	tc.n_dims = ndims;
	tc.data.data = (uint8_t *)(uintptr_t)data;
	tc.data.len = n_data * sizeof(float);
	req.body_case = RXGEMM__REQUEST__BODY_TENSOR_CREATE;
	req.tensor_create = &tc;
	raw_send_id(r, id, &req);
	Rxgemm__Reply *rep = raw_expect(r, id, want, text);
	if (want == RXGEMM__STATUS__STATUS_OK) {
		ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_TENSOR_CREATED);
		tid = rep->tensor_created->tensor_id;
		ck_assert_uint_ne(tid, 0);
	}
	rxgemm__reply__free_unpacked(rep, NULL);
	return tid;
}

static void raw_free(struct raw *r, uint64_t id, uint32_t tid, Rxgemm__Status want)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__TensorFree tf = RXGEMM__TENSOR_FREE__INIT;

	tf.tensor_id = tid;
	req.body_case = RXGEMM__REQUEST__BODY_TENSOR_FREE;
	req.tensor_free = &tf;
	raw_send_id(r, id, &req);
	raw_expect_free(r, id, want, want ? "no tensor" : NULL);
}

static void raw_read(struct raw *r, uint64_t id, uint32_t tid, Rxgemm__Status want)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__TensorRead tr = RXGEMM__TENSOR_READ__INIT;

	tr.tensor_id = tid;
	req.body_case = RXGEMM__REQUEST__BODY_TENSOR_READ;
	req.tensor_read = &tr;
	raw_send_id(r, id, &req);
	raw_expect_free(r, id, want, want ? "no tensor" : NULL);
}

/* A 4 x 4 x 4 GEMM on tensors a and b (0: inline ones) into c_out (0: inline). */
static void raw_gemm(struct raw *r, uint64_t id, uint32_t a, uint32_t b, uint32_t c_out,
		     int inline_a_too, Rxgemm__Status want, const char *text)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__GemmRequest g = RXGEMM__GEMM_REQUEST__INIT;
	float m[16];

	for (int i = 0; i < 16; i++)
		m[i] = (float)i;
	g.m = g.n = g.k = 4;
	g.alpha = 1.0f;
	g.a_tensor = a;
	g.b_tensor = b;
	g.c_out_tensor = c_out;
	if (!a || inline_a_too) {
		g.a.data = (uint8_t *)m;
		g.a.len = sizeof(m);
	}
	if (!b) {
		g.b.data = (uint8_t *)m;
		g.b.len = sizeof(m);
	}
	req.body_case = RXGEMM__REQUEST__BODY_GEMM;
	req.gemm = &g;
	raw_send_id(r, id, &req);
	raw_expect_free(r, id, want, text);
}

START_TEST(test_misuse)
{
	struct raw r, other;
	const int64_t d16[1] = { 16 }, d8[1] = { 8 }, d4x4[2] = { 4, 4 };
	const int64_t bad0[1] = { 0 }, bad4[4] = { 1, 2, 3, 4 }, neg[2] = { 4, -1 };
	float x[16] = { 0 };

	raw_open_hello(&r);
	raw_open_hello(&other);
	uint32_t t = raw_create(&r, 2, d4x4, 2, x, 16, RXGEMM__STATUS__STATUS_OK, NULL);
	uint32_t small = raw_create(&r, 3, d8, 1, NULL, 0, RXGEMM__STATUS__STATUS_OK, NULL);
	uint32_t out = raw_create(&r, 4, d16, 1, NULL, 0, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert(t != small && small != out && t != out);

	/* Bad dims and data. */
	raw_create(&r, 10, bad0, 1, NULL, 0, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT,
		   "at least 1");
	raw_create(&r, 11, bad4, 4, NULL, 0, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "1 to 3");
	raw_create(&r, 12, bad4, 0, NULL, 0, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "1 to 3");
	raw_create(&r, 13, neg, 2, NULL, 0, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "at least 1");
	raw_create(&r, 14, d16, 1, x, 15, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "takes 64");

	/* A tensor too small for its operand; one operand from two places; C over A. */
	raw_gemm(&r, 20, small, t, 0, 0, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT,
		 "a_tensor holds 8 floats");
	raw_gemm(&r, 21, t, small, 0, 0, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT,
		 "b_tensor holds 8 floats");
	raw_gemm(&r, 22, t, t, small, 0, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT,
		 "c_out_tensor holds 8 floats");
	raw_gemm(&r, 23, t, 0, 0, 1, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "both given");
	raw_gemm(&r, 24, t, t, t, 0, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, "also a_tensor");
	/* Good ones meanwhile: the connection serves on. */
	raw_gemm(&r, 25, t, t, out, 0, RXGEMM__STATUS__STATUS_OK, NULL);
	raw_gemm(&r, 26, 0, t, 0, 0, RXGEMM__STATUS__STATUS_OK, NULL);

	/* Another connection's ids are unknown there (it has none of its own). */
	raw_gemm(&other, 30, t, 0, 0, 0, RXGEMM__STATUS__STATUS_TENSOR, "no tensor");
	raw_read(&other, 31, t, RXGEMM__STATUS__STATUS_TENSOR);
	raw_free(&other, 32, t, RXGEMM__STATUS__STATUS_TENSOR);
	raw_gemm(&r, 33, t, t, out, 0, RXGEMM__STATUS__STATUS_OK, NULL); /* still r's */

	/* Use after free; ids are not reused. */
	raw_free(&r, 40, t, RXGEMM__STATUS__STATUS_OK);
	raw_gemm(&r, 41, t, 0, 0, 0, RXGEMM__STATUS__STATUS_TENSOR, "no tensor");
	raw_gemm(&r, 42, 0, 0, t, 0, RXGEMM__STATUS__STATUS_TENSOR, "no tensor");
	raw_read(&r, 43, t, RXGEMM__STATUS__STATUS_TENSOR);
	raw_free(&r, 44, t, RXGEMM__STATUS__STATUS_TENSOR);
	uint32_t again = raw_create(&r, 45, d4x4, 2, x, 16, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert_uint_gt(again, out);
	raw_read(&r, 46, again, RXGEMM__STATUS__STATUS_OK);
	raw_close(&other);
	raw_close(&r);
}
END_TEST

/* A tensor freed while a job that uses it waits behind a longer one: the job keeps it
 * and completes with the right answer; the id is gone at once. */
START_TEST(test_free_while_queued)
{
	enum { BIG = 512, N = 48 };
	rxg_client *watch = lib_connect("test-tensor watch"), *c = lib_connect("test-tensor");
	struct figures base = lib_figures(watch, 0);
	uint32_t id = rxg_server_info(c)->client_id;
	float *big = calloc(BIG * BIG, sizeof(float)), *big_c = malloc(sizeof(float) * BIG * BIG);
	struct prob p;
	struct rxg_gemm_args args;
	uint64_t j1, j2;

	ck_assert(big && big_c);
	prob_make(&p, 0, 1, 0, N, N + 3, N - 5, 1.0f, 0.5f, 2, 77);
	rxg_tensor *ta = lib_tensor(c, p.a_len, p.a), *tb = lib_tensor(c, p.b_len, p.b);
	float *cc = malloc(sizeof(float) * (size_t)p.c_len);
	ck_assert_ptr_nonnull(cc);
	memcpy(cc, p.c0, sizeof(float) * (size_t)p.c_len);

	memset(&args, 0, sizeof(args));
	args.m = args.n = args.k = BIG;
	args.alpha = 1.0f;
	args.a = args.b = big;
	args.c = big_c;
	ck_assert_int_eq(rxg_submit_gemm(c, &args, NULL, &j1), RXG_OK);
	args_from(&args, &p);
	args.a_tensor = ta;
	args.b_tensor = tb;
	args.c = cc;
	ck_assert_int_eq(rxg_submit_gemm(c, &args, NULL, &j2), RXG_OK);
	ck_assert_int_eq(rxg_tensor_free(ta), RXG_OK);
	ck_assert_int_eq(rxg_tensor_free(tb), RXG_OK);
	ck_assert_uint_eq(lib_figures(watch, id).client_tensors, 0);
	ck_assert_int_eq(rxg_wait(c, j1, NULL), RXG_OK);
	int rc = rxg_wait(c, j2, NULL);
	ck_assert_msg(rc == RXG_OK, "the job on freed tensors: %s: %s", rxg_strerror(rc),
		      rxg_errmsg(c));
	prob_check(&p, cc, p.c0, "the job on freed tensors");
	/* Their memory went back once the job was done. */
	wait_settled(watch, 2, &base, "after the job on freed tensors");
	prob_free(&p);
	free(big), free(big_c), free(cc);
	rxg_close(c);
	rxg_close(watch);
}
END_TEST

/* ------------------------------------------------------------------------------------- */
/* A budget of 8 MiB and a quota of 6 MiB per client. */

START_TEST(test_budget)
{
	rxg_client *c1 = lib_connect("test-tensor 1"), *c2 = lib_connect("test-tensor 2");
	rxg_tensor *t1 = NULL, *t2 = NULL, *t3 = NULL, *x = NULL;
	int64_t n;
	int rc;

	/* Over the whole budget. */
	n = (int64_t)(9 << 20) / 4;
	rc = rxg_tensor_create(c1, &n, 1, NULL, &x);
	ck_assert_msg(rc == RXG_ETOOBIG, "9 MiB: %s: %s", rxg_strerror(rc), rxg_errmsg(c1));
	ck_assert_ptr_null(x);
	ck_assert_msg(strstr(rxg_errmsg(c1), "budget"), "\"%s\"", rxg_errmsg(c1));
	/* Within it but over the quota, and over it with what the client holds. */
	n = (int64_t)(7 << 20) / 4;
	rc = rxg_tensor_create(c1, &n, 1, NULL, &x);
	ck_assert_msg(rc == RXG_EQUOTA, "7 MiB: %s: %s", rxg_strerror(rc), rxg_errmsg(c1));
	ck_assert_msg(strstr(rxg_errmsg(c1), "quota"), "\"%s\"", rxg_errmsg(c1));
	n = (int64_t)(4 << 20) / 4;
	t1 = lib_tensor(c1, n, NULL);
	rc = rxg_tensor_create(c1, &n, 1, NULL, &x);
	ck_assert_msg(rc == RXG_EQUOTA, "4 + 4 MiB: %s: %s", rxg_strerror(rc), rxg_errmsg(c1));
	/* Another client: within its quota, but the budget is held by the tensors. */
	n = (int64_t)(3 << 20) / 4;
	t2 = lib_tensor(c2, n, NULL);
	n = (int64_t)(2 << 20) / 4;
	rc = rxg_tensor_create(c2, &n, 1, NULL, &x);
	ck_assert_msg(rc == RXG_ETOOBIG, "4 + 3 + 2 MiB: %s: %s", rxg_strerror(rc),
		      rxg_errmsg(c2));
	ck_assert_msg(strstr(rxg_errmsg(c2), "device tensors"), "\"%s\"", rxg_errmsg(c2));

	/* A GEMM of 3 MiB of operands beside 7 MiB of tensors runs, in pieces. */
	{
		struct prob p;
		struct rxg_gemm_args args;

		prob_make(&p, 0, 0, 0, 512, 512, 512, 1.0f, 0.0f, 0, 5);
		args_from(&args, &p);
		args.a = p.a;
		args.b = p.b;
		args.c = p.c0;
		rc = rxg_gemm(c2, &args, NULL);
		ck_assert_msg(rc == RXG_OK, "GEMM beside the tensors: %s: %s", rxg_strerror(rc),
			      rxg_errmsg(c2));
		prob_check(&p, p.c0, NULL, "GEMM beside the tensors");
		prob_free(&p);
	}
	/* Freed, the room is there again. */
	ck_assert_int_eq(rxg_tensor_free(t1), RXG_OK);
	n = (int64_t)(2 << 20) / 4;
	t3 = lib_tensor(c2, n, NULL);
	ck_assert_int_eq(rxg_tensor_free(t3), RXG_OK);
	ck_assert_int_eq(rxg_tensor_free(t2), RXG_OK);
	rxg_close(c2);
	rxg_close(c1);
}
END_TEST

static TCase *tcase_with(const char *name, void (*up)(void))
{
	TCase *tc = tcase_create(name);

	tcase_add_unchecked_fixture(tc, up, daemon_down);
	if (!getenv("CK_DEFAULT_TIMEOUT"))
		tcase_set_timeout(tc, 300);
	return tc;
}

static Suite *tensor_suite(void)
{
	Suite *s = suite_create("tensor");
	TCase *tc;

	tc = tcase_with("gemm", daemon_up);
	tcase_add_test(tc, test_gemm_combos);
	tcase_add_test(tc, test_gemm_chain);
	tcase_add_test(tc, test_gemm_batch);
	tcase_add_test(tc, test_async);
	suite_add_tcase(s, tc);
	tc = tcase_with("accounting", daemon_up);
	tcase_add_test(tc, test_accounting);
	tcase_add_test(tc, test_sigkill);
	suite_add_tcase(s, tc);
	tc = tcase_with("misuse", daemon_up);
	tcase_add_test(tc, test_misuse);
	tcase_add_test(tc, test_free_while_queued);
	suite_add_tcase(s, tc);
	tc = tcase_with("budget", daemon_up_small);
	tcase_add_test(tc, test_budget);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(tensor_suite());

	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed || g_teardown_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

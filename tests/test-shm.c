/* test-shm.c: shared-memory regions against a real rxgemmd (PoCL in make check).
 *
 * One daemon serves every test (an unchecked fixture); each test runs in its own forked
 * process. Results are checked against refgemm, the CPU reference.
 *
 *   library:  rxg_buffer_* and rxg_gemm with operands and results in buffers, mixed with
 *             inline matrices, in place and to a separate buffer, batches, misuse the
 *             library catches itself; large host arrays staged through the library's
 *             own buffers, from several threads and the async API at once, copied with
 *             the library's copy threads (joined at rxg_close)
 *   protocol: hand-built frames and descriptors: every way to register a bad descriptor,
 *             every bad region reference, another connection's region, unregistering a
 *             region in use, descriptors on other frames, too many descriptors, more
 *             regions or bytes than one connection may have; each gets its coded error
 *             and the connection serves on
 *   release:  a client that leaves with regions and a job in flight: the daemon unmaps
 *             them (status) and holds no descriptor more than before (/proc/PID/fd)
 *   split:    jobs over the device-memory budget, run in pieces, through regions
 *   io:       the connection I/O these rest on (recvmsg, a reply queue of its own):
 *             backpressure on a client that does not read, every reply in order */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon-run.h"
#include "frame.h"
#include "raw.h"
#include "refgemm.h"
#include "rxgemm.h"
#include "rxgemm.pb-c.h"
#include "tasks.h"

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
		fprintf(stderr, "test-shm: cannot start rxgemmd\n");
		daemon_run_cleanup(&g_daemon);
		exit(EXIT_FAILURE);
	}
}

static void daemon_up(void)
{
	daemon_up_args(NULL);
}

/* Small per-connection bounds on shared memory: test_proto_client_bound_options. */
static void daemon_up_shm_bounds(void)
{
	static const char *const args[] = { "--client-shm-regions", "3", "--client-shm-max",
					    "1M", NULL };
	daemon_up_args(args);
}

/* A budget far below the jobs' needs: every GEMM of test_split runs in pieces, each piece
 * copied through device buffers (zero-copy off, which a device on host memory would
 * otherwise use for buffer operands: test_in_place). */
static void daemon_up_small_budget(void)
{
	static const char *const args[] = { "--vram-budget", "4M", "--zero-copy", "never", NULL };
	daemon_up_args(args);
}

static void daemon_up_small_budget_in_place(void)
{
	static const char *const args[] = { "--vram-budget", "4M", NULL };
	daemon_up_args(args);
}

/* Buffer operands copied through device buffers, as on a GPU, also on a CPU device. */
/* Copying (below) and pipelined: librxgemm sends a staged job's request before its copies
 * (ready words), which it does only when RXGEMM_READY_WORDS is 1. */
static void daemon_up_copying(void)
{
	static const char *const args[] = { "--zero-copy", "never", NULL };
	daemon_up_args(args);
	setenv("RXGEMM_READY_WORDS", "1", 1);
}

/* The same, with every job of two K steps or more pipelined: K chunks uploaded on a copy
 * queue while the previous chunk's kernel runs (gemm-launch.c), as on a GPU by default. */
static void daemon_up_pipelined(void)
{
	static const char *const args[] = { "--zero-copy", "never", NULL };
	setenv("RXGEMMD_PIPELINE", "always", 1);
	setenv("RXGEMMD_PIN_INLINE", "always", 1); /* as on a GPU, and of any size */
	daemon_up_args(args);
	unsetenv("RXGEMMD_PIPELINE");
	unsetenv("RXGEMMD_PIN_INLINE");
	setenv("RXGEMM_READY_WORDS", "1", 1);
}

/* The daemon's log says that jobs waited for ready words: the staged cases before sent
 * their requests ahead of their copies. */
START_TEST(test_lib_ready_used)
{
	int n = daemon_run_log_count(&g_daemon, ": waits for a_ready b_ready");

	ck_assert_msg(n >= 4, "%d staged jobs sent ready words; want every one before", n);
}
END_TEST

/* The daemon's log says that jobs pinned their inline operands and results for their
 * run (RXGEMMD_PIN_INLINE=always), the cases before with those in the frames; and that
 * test_lib_frames_kept's later jobs found their ranges in host buffers the daemon kept
 * (hostbuf.c) pinned already: jobs with ranges in kept buffers and no pin made for them
 * (the worker logs each pin it makes before the job's line). */
START_TEST(test_pinned_ran)
{
	char line[4096];
	int n = 0, made = 0, made_since = 0, reused = 0;
	FILE *f = fopen(g_daemon.log_path, "r");

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		const char *at = strstr(line, " inline range(s) pinned for the job, ");
		int kept;

		if (strstr(line, " pinned for as long as it is kept")) {
			made++;
			made_since++;
		}
		if (!at)
			continue;
		n++;
		if (sscanf(at, " inline range(s) pinned for the job, %d in kept", &kept) == 1 &&
		    kept > 0 && made_since == 0)
			reused++;
		made_since = 0;
	}
	fclose(f);
	ck_assert_msg(n >= 16, "%d jobs pinned inline ranges; want the mixed cases' at least",
		      n);
	ck_assert_msg(made >= 1 && reused >= 2, "%d jobs used kept buffers' pins alone (%d "
		      "pins made): want test_lib_frames_kept's later jobs", reused, made);
}
END_TEST

/* The daemon's log says that jobs ran pipelined, most with their last chunk cut in two
 * halves of C's columns (the right half's kernel k'): the cases above then tested that
 * path. */
START_TEST(test_pipelined_ran)
{
	char line[4096];
	int n = 0, halves = 0;
	FILE *f = fopen(g_daemon.log_path, "r");

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		n += strstr(line, " pipelined in ") != NULL;
		halves += strstr(line, "pipeline timeline") && strstr(line, " k':");
	}
	fclose(f);
	ck_assert_msg(n >= 8, "%d jobs ran pipelined; want every job of the cases before", n);
	ck_assert_msg(halves >= 8, "%d pipelined jobs cut their last chunk in halves", halves);
}
END_TEST

static void daemon_down(void)
{
	unsetenv("RXGEMM_READY_WORDS");
	int st = daemon_run_stop(&g_daemon, SIGTERM, 60);
	if (st != 0) {
		fprintf(stderr, "test-shm: rxgemmd exited with %d after SIGTERM (want 0)\n", st);
		daemon_run_dump_log(&g_daemon);
		g_teardown_failed = 1;
	}
	daemon_run_cleanup(&g_daemon);
}

/* ------------------------------------------------------------------------------------- */
/* Problems: one GEMM with its operands, C before the call and the reference answer. */

struct prob {
	int row_major, trans_a, trans_b;
	int64_t m, n, k, batch;
	float alpha, beta;
	int64_t lda, ldb, ldc;
	int64_t a_len, b_len, c_len; /* floats of each, all matrices of the batch */
	float *a, *b, *c0, *want;
};

/* Leading dimensions get pad floats beyond the tightest; a batch packs its matrices. */
static void prob_make(struct prob *p, int row_major, int ta, int tb, int64_t m, int64_t n,
		      int64_t k, int64_t batch, float alpha, float beta, int64_t pad,
		      uint64_t seed)
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
	p->batch = batch;
	p->alpha = alpha;
	p->beta = beta;
	p->lda = (row_major ? a_cols : a_rows) + pad;
	p->ldb = (row_major ? b_cols : b_rows) + pad;
	p->ldc = (row_major ? n : m) + pad;
	p->a_len = p->lda * (row_major ? a_rows : a_cols) * batch;
	p->b_len = p->ldb * (row_major ? b_rows : b_cols) * batch;
	p->c_len = p->ldc * (row_major ? m : n) * batch;
	p->a = malloc(sizeof(float) * (size_t)p->a_len);
	p->b = malloc(sizeof(float) * (size_t)p->b_len);
	p->c0 = malloc(sizeof(float) * (size_t)p->c_len);
	p->want = malloc(sizeof(float) * (size_t)p->c_len);
	ck_assert(p->a && p->b && p->c0 && p->want);
	refgemm_fill_random(p->a, (size_t)p->a_len, &state);
	refgemm_fill_random(p->b, (size_t)p->b_len, &state);
	refgemm_fill_random(p->c0, (size_t)p->c_len, &state);
	memcpy(p->want, p->c0, sizeof(float) * (size_t)p->c_len);
	for (int64_t i = 0; i < batch; i++)
		refgemm(row_major, ta, tb, m, n, k, alpha, p->a + i * (p->a_len / batch), p->lda,
			p->b + i * (p->b_len / batch), p->ldb, beta,
			p->want + i * (p->c_len / batch), p->ldc);
}

static void prob_free(struct prob *p)
{
	free(p->a);
	free(p->b);
	free(p->c0);
	free(p->want);
}

static int is_logical(const struct prob *p, int64_t idx)
{
	int64_t one = p->c_len / p->batch, inner = p->row_major ? p->n : p->m;

	idx %= one;
	return idx % p->ldc < inner;
}

/* got (c_len floats) against the reference, matrix by matrix; padding must be pad_want
 * (NULL: zeros) bit for bit, up to pad_len floats (what the daemon writes: the last
 * matrix's trailing padding is not its to write). */
static void prob_check(const struct prob *p, const float *got, const float *pad_want,
		       const char *what)
{
	int64_t one = p->c_len / p->batch;
	int64_t inner = p->row_major ? p->n : p->m, outer = p->row_major ? p->m : p->n;
	int64_t written = one * (p->batch - 1) + p->ldc * (outer - 1) + inner;

	for (int64_t i = 0; i < written; i++) {
		if (is_logical(p, i))
			continue;
		float want = pad_want ? pad_want[i] : 0.0f;
		ck_assert_msg(memcmp(&got[i], &want, sizeof(float)) == 0,
			      "%s: padding at %" PRId64 " is %g, want %g", what, i, (double)got[i],
			      (double)want);
	}
	for (int64_t b = 0; b < p->batch; b++) {
		double max_err = 0;
		int64_t bi = -1, bj = -1;
		int bad = refgemm_compare(p->row_major, p->m, p->n, p->k, got + b * one,
					  p->want + b * one, p->ldc, &max_err, &bi, &bj);
		ck_assert_msg(bad == 0,
			      "%s: matrix %" PRId64 ": %d elements differ from the CPU reference, "
			      "worst (%" PRId64 ", %" PRId64 ") off by %g",
			      what, b, bad, bi, bj, max_err);
	}
}

/* ------------------------------------------------------------------------------------- */
/* Library helpers. */

static rxg_client *lib_connect(void)
{
	rxg_client *c = NULL;
	int rc = rxg_connect(g_daemon.socket_path, "test-shm", &c);
	ck_assert_msg(rc == RXG_OK, "rxg_connect: %s", rxg_strerror(rc));
	return c;
}

static rxg_buffer *lib_buffer(rxg_client *c, size_t bytes)
{
	rxg_buffer *buf = NULL;
	int rc = rxg_buffer_create(c, bytes, &buf);
	ck_assert_msg(rc == RXG_OK, "rxg_buffer_create(%zu): %s: %s", bytes, rxg_strerror(rc),
		      rxg_errmsg(c));
	ck_assert_ptr_nonnull(rxg_buffer_ptr(buf));
	ck_assert_uint_eq(rxg_buffer_size(buf), bytes);
	return buf;
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
	if (p->batch > 1) {
		args->batch_count = p->batch;
		args->stride_a = p->a_len / p->batch;
		args->stride_b = p->b_len / p->batch;
		args->stride_c = p->c_len / p->batch;
	}
}

/* Where a problem's matrices go in one buffer: A, B, C at odd (but aligned) offsets. */
struct placing {
	size_t a_off, b_off, c_off, out_off, bytes;
};

static struct placing place(const struct prob *p)
{
	struct placing pl;

	pl.a_off = 12;
	pl.b_off = pl.a_off + sizeof(float) * (size_t)p->a_len + 4;
	pl.c_off = pl.b_off + sizeof(float) * (size_t)p->b_len + 8;
	pl.out_off = pl.c_off + sizeof(float) * (size_t)p->c_len + 36;
	pl.bytes = pl.out_off + sizeof(float) * (size_t)p->c_len + 4;
	return pl;
}

/* A, B and C in one buffer, the result replacing C in place. */
static void lib_in_place(rxg_client *c, const struct prob *p, const char *what)
{
	struct placing pl = place(p);
	rxg_buffer *buf = lib_buffer(c, pl.bytes);
	uint8_t *base = rxg_buffer_ptr(buf);
	struct rxg_gemm_args args;
	struct rxg_timings t;

	memcpy(base + pl.a_off, p->a, sizeof(float) * (size_t)p->a_len);
	memcpy(base + pl.b_off, p->b, sizeof(float) * (size_t)p->b_len);
	memcpy(base + pl.c_off, p->c0, sizeof(float) * (size_t)p->c_len);
	args_from(&args, p);
	args.a_buf = args.b_buf = args.c_buf = buf;
	args.a_offset = pl.a_off;
	args.b_offset = pl.b_off;
	args.c_offset = pl.c_off;
	int rc = rxg_gemm(c, &args, &t);
	ck_assert_msg(rc == RXG_OK, "%s: rxg_gemm: %s: %s", what, rxg_strerror(rc), rxg_errmsg(c));
	ck_assert_msg(t.total_ns > 0, "%s: no timings", what);
	prob_check(p, (const float *)(base + pl.c_off), p->c0, what);
	/* The operands are as they were. */
	ck_assert(memcmp(base + pl.a_off, p->a, sizeof(float) * (size_t)p->a_len) == 0);
	ck_assert(memcmp(base + pl.b_off, p->b, sizeof(float) * (size_t)p->b_len) == 0);
	ck_assert_int_eq(rxg_buffer_free(buf), RXG_OK);
}

START_TEST(test_lib_in_place)
{
	rxg_client *c = lib_connect();
	struct prob p;

	ck_assert_msg(rxg_server_info(c) != NULL, "no server info");
	for (int i = 0; i < 8; i++) {
		char what[128];
		int rm = i & 1, ta = (i >> 1) & 1, tb = (i >> 2) & 1;

		prob_make(&p, rm, ta, tb, 37 + i, 29 + 2 * i, 41 - i, 1, 1.25f, i == 3 ? 0.0f : -0.5f,
			  i % 3, 100 + (uint64_t)i);
		snprintf(what, sizeof(what), "%s ta=%d tb=%d pad=%d", rm ? "row" : "col", ta, tb,
			 i % 3);
		lib_in_place(c, &p, what);
		prob_free(&p);
	}
	/* A batch, and a square one big enough for the register-blocked kernel. */
	prob_make(&p, 1, 0, 1, 24, 40, 16, 3, 1.0f, 1.0f, 2, 7);
	lib_in_place(c, &p, "batch of 3");
	prob_free(&p);
	prob_make(&p, 0, 0, 0, 256, 256, 256, 1, 1.0f, 0.5f, 0, 8);
	lib_in_place(c, &p, "256^3");
	prob_free(&p);
	rxg_close(c);
}
END_TEST

/* p through rxg_gemm from the caller's own arrays (inline or staged, as the library
 * decides), C updated in a copy of p's C and checked against the reference. */
static void lib_host_case(rxg_client *c, const struct prob *p, const char *what)
{
	struct rxg_gemm_args args;
	float *got = malloc(sizeof(float) * (size_t)p->c_len);

	ck_assert_ptr_nonnull(got);
	memcpy(got, p->c0, sizeof(float) * (size_t)p->c_len);
	args_from(&args, p);
	args.a = p->a;
	args.b = p->b;
	args.c = got;
	int rc = rxg_gemm(c, &args, NULL);
	ck_assert_msg(rc == RXG_OK, "%s: rxg_gemm: %s: %s", what, rxg_strerror(rc),
		      rxg_errmsg(c));
	prob_check(p, got, p->c0, what);
	free(got);
}

/* Inline operands and results of megabytes, job after job (the library's staging off):
 * the daemon reads each frame and writes each result into host buffers it keeps between
 * jobs (hostbuf.c), and with RXGEMMD_PIN_INLINE=always their pins stay with them
 * (test_pinned_ran counts them). Every result right while buffers and pins are reused;
 * transposes and shapes change, within what a kept buffer serves. */
START_TEST(test_lib_frames_kept)
{
	setenv("RXGEMM_STAGE_BYTES", "off", 1); /* read at this process's first GEMM */
	rxg_client *c = lib_connect();

	for (int i = 0; i < 6; i++) {
		struct prob p;
		char what[64];

		prob_make(&p, i & 1, (i >> 1) & 1, 0, 600 - 8 * i, 560, 520 + 4 * i, 1, 1.0f,
			  i % 3 ? 0.5f : 0.0f, i % 2, 400 + (uint64_t)i);
		snprintf(what, sizeof(what), "frames job %d", i);
		lib_host_case(c, &p, what);
		prob_free(&p);
	}
	/* rxgemm status counts them: after the first job's, each job's frame and result
	 * could take a kept buffer (at least half did, whatever the order of frees and
	 * takes), and the pins made are fewer than the ranges pinned (test_pinned_ran). The
	 * counters only grow; what is kept now may have gone idle already. */
	struct rxg_status *st = NULL;
	ck_assert_int_eq(rxg_status(c, &st), RXG_OK);
	ck_assert_uint_ge(st->host_buffer_hits, 5);
	ck_assert_uint_ge(st->host_buffer_pins_made, 1);
	ck_assert_uint_le(st->host_buffer_kept_bytes, 1ull << 30);
	ck_assert_uint_le(st->host_buffers_kept, 8);
	rxg_status_free(st);
	rxg_close(c);
}
END_TEST

/* Every mix of inline and buffer operands, the result inline, in a separate buffer or in
 * place; C's input from a buffer, inline or none (beta 0). */
START_TEST(test_lib_mixed)
{
	rxg_client *c = lib_connect();
	struct prob p;

	for (int mask = 0; mask < 32; mask++) {
		int a_in_buf = mask & 1, b_in_buf = mask & 2, c_in_buf = mask & 4,
		    out_buf = mask & 8, beta0 = mask & 16;
		char what[128];

		snprintf(what, sizeof(what), "A %s, B %s, C %s, result %s, beta %s",
			 a_in_buf ? "buffer" : "inline", b_in_buf ? "buffer" : "inline",
			 c_in_buf ? "buffer" : "inline", out_buf ? "c_out buffer" : c_in_buf ? "in place" : "inline",
			 beta0 ? "0" : "0.75");
		prob_make(&p, mask & 1, (mask >> 2) & 1, 0, 33, 21, 18, 1, 0.5f,
			  beta0 ? 0.0f : 0.75f, 1, 200 + (uint64_t)mask);
		struct placing pl = place(&p);
		rxg_buffer *buf = lib_buffer(c, pl.bytes), *out = NULL;
		uint8_t *base = rxg_buffer_ptr(buf);
		float *inline_c = malloc(sizeof(float) * (size_t)p.c_len);
		struct rxg_gemm_args args;

		ck_assert_ptr_nonnull(inline_c);
		memcpy(inline_c, p.c0, sizeof(float) * (size_t)p.c_len);
		memcpy(base + pl.a_off, p.a, sizeof(float) * (size_t)p.a_len);
		memcpy(base + pl.b_off, p.b, sizeof(float) * (size_t)p.b_len);
		memcpy(base + pl.c_off, p.c0, sizeof(float) * (size_t)p.c_len);
		args_from(&args, &p);
		args.a = a_in_buf ? NULL : p.a;
		args.a_buf = a_in_buf ? buf : NULL;
		args.a_offset = pl.a_off;
		args.b = b_in_buf ? NULL : p.b;
		args.b_buf = b_in_buf ? buf : NULL;
		args.b_offset = pl.b_off;
		args.c = c_in_buf ? NULL : inline_c;
		args.c_buf = c_in_buf ? buf : NULL;
		args.c_offset = pl.c_off;
		if (out_buf) {
			/* A second buffer, garbage-filled: every float the daemon writes counts. */
			out = lib_buffer(c, sizeof(float) * (size_t)p.c_len + 8);
			memset(rxg_buffer_ptr(out), 0x7f, rxg_buffer_size(out));
			args.c_out_buf = out;
			args.c_out_offset = 8;
		}
		int rc = rxg_gemm(c, &args, NULL);
		ck_assert_msg(rc == RXG_OK, "%s: %s: %s", what, rxg_strerror(rc), rxg_errmsg(c));
		if (out_buf) {
			/* Padding comes from C's input when beta reads it, else zeros. */
			prob_check(&p, (const float *)((uint8_t *)rxg_buffer_ptr(out) + 8),
				   beta0 ? NULL : p.c0, what);
			/* C's input is untouched. */
			ck_assert(memcmp(c_in_buf ? (void *)(base + pl.c_off) : (void *)inline_c,
					 p.c0, sizeof(float) * (size_t)p.c_len) == 0);
		} else if (c_in_buf) {
			prob_check(&p, (const float *)(base + pl.c_off), p.c0, what);
		} else {
			prob_check(&p, inline_c, p.c0, what);
		}
		ck_assert_int_eq(rxg_buffer_free(out), RXG_OK);
		ck_assert_int_eq(rxg_buffer_free(buf), RXG_OK);
		free(inline_c);
		prob_free(&p);
	}
	rxg_close(c);
}
END_TEST

/* This handle's counters in the daemon's status. */
static void own_counters(rxg_client *c, const char *name, uint64_t *bytes_in,
			 uint64_t *bytes_out, uint32_t *regions)
{
	struct rxg_status *st = NULL;
	bool found = false;

	ck_assert_int_eq(rxg_status(c, &st), RXG_OK);
	for (size_t i = 0; i < st->n_clients; i++)
		if (!strcmp(st->clients[i].name, name)) {
			*bytes_in = st->clients[i].bytes_in;
			*bytes_out = st->clients[i].bytes_out;
			found = true;
		}
	ck_assert_msg(found, "no client %s in status", name);
	*regions = st->shm_regions;
	rxg_status_free(st);
}

/* Host arrays of 256 KiB or more together (the library's default threshold) travel through
 * its staging buffers, not the frames: every layout, transpose, padding, batch and beta
 * gives the CPU reference's result with the caller's padding of C untouched, no matrix
 * byte crosses the socket either way (the daemon's counters for this handle), and the
 * buffers are reused (at most RXG__STAGE_KEEP, 4, more regions mapped however many jobs
 * ran). A small job stays inline. */
START_TEST(test_lib_staged)
{
	const char *name = "test-shm-staged";
	uint64_t in0, out0, in1, out1;
	uint32_t regions0, regions1;
	rxg_client *c = NULL;
	struct prob p;
	int jobs = 0;

	ck_assert_int_eq(rxg_connect(g_daemon.socket_path, name, &c), RXG_OK);
	own_counters(c, name, &in0, &out0, &regions0);
	for (int i = 0; i < 10; i++) {
		char what[128];
		int rm = i & 1, ta = (i >> 1) & 1, tb = (i >> 2) & 1, batch = i >= 8 ? 3 : 1;
		/* 150 x 130 x 170 and up: A, B and C at least 0.27 MiB together. */
		int64_t m = 150 + 7 * i, n = 130 + 3 * i, k = 170 - 5 * i;

		prob_make(&p, rm, ta, tb, m, n, k, batch, 1.25f, i % 4 == 3 ? 0.0f : -0.5f, i % 3,
			  300 + (uint64_t)i);
		ck_assert_msg(sizeof(float) * (size_t)(p.a_len + p.b_len + p.c_len) >= (256u << 10),
			      "problem %d is below the staging threshold", i);
		snprintf(what, sizeof(what), "staged %s ta=%d tb=%d pad=%d batch=%d beta=%g",
			 rm ? "row" : "col", ta, tb, i % 3, batch, (double)p.beta);
		lib_host_case(c, &p, what);
		jobs++;
		prob_free(&p);
	}
	own_counters(c, name, &in1, &out1, &regions1);
	ck_assert_msg(in1 == in0 && out1 == out0, "%d staged jobs carried %llu bytes in and "
		      "%llu out in their frames", jobs, (unsigned long long)(in1 - in0),
		      (unsigned long long)(out1 - out0));
	ck_assert_msg(regions1 <= regions0 + 4, "%d jobs left %u regions mapped (%u before)",
		      jobs, regions1, regions0);
	/* Below the threshold: inline, as it always was. */
	prob_make(&p, 1, 0, 0, 20, 30, 40, 1, 1.0f, 0.0f, 0, 9);
	struct rxg_gemm_args args;
	args_from(&args, &p);
	float *got = calloc((size_t)p.c_len, sizeof(float));
	ck_assert_ptr_nonnull(got);
	args.a = p.a;
	args.b = p.b;
	args.c = got;
	ck_assert_int_eq(rxg_gemm(c, &args, NULL), RXG_OK);
	prob_check(&p, got, NULL, "small, inline");
	own_counters(c, name, &in0, &out0, &regions0);
	ck_assert_uint_eq(in0 - in1, sizeof(float) * (size_t)(p.a_len + p.b_len));
	ck_assert_uint_eq(out0 - out1, sizeof(float) * 20 * 30);
	free(got);
	prob_free(&p);
	rxg_close(c);
}
END_TEST


/* Staged jobs around the size where librxgemm's copies start using its copy threads (two
 * pieces of 1 MiB: copy.c), with transposes, odd shapes, padding and batches. */
static const struct staged_case {
	int rm, ta, tb;
	int64_t m, n, k, batch, pad;
	float beta;
	const char *what;
} staged_cases[] = {
	{ 0, 0, 0, 1025, 513, 3, 1, 0, 0.0f, "C out just over 2 MiB" },
	{ 1, 0, 1, 1024, 511, 3, 1, 0, -0.5f, "C just under 2 MiB, in and out" },
	{ 0, 1, 0, 720, 3, 725, 1, 0, 0.0f, "A and B just under 2 MiB" },
	{ 1, 1, 1, 721, 3, 725, 1, 0, 0.0f, "A and B just over 2 MiB" },
	{ 0, 0, 1, 601, 411, 33, 3, 3, -0.5f, "a batch of padded C, 3 MB" },
	{ 1, 1, 0, 999, 1001, 17, 1, 5, 1.0f, "row-major, odd, padded, 4 MB" },
};
#define N_STAGED (sizeof(staged_cases) / sizeof(staged_cases[0]))

struct staged_worker {
	rxg_client *c;
	const struct prob *probs;
	unsigned first;  /* the case this thread starts with */
	bool async;      /* rxg_submit_gemm and rxg_wait_any, else rxg_gemm */
};

static void staged_check(const struct staged_worker *w, unsigned i, const float *got,
			 const char *how)
{
	char what[160];

	snprintf(what, sizeof(what), "%s (%s, thread from case %u)", staged_cases[i].what, how,
		 w->first);
	prob_check(&w->probs[i], got, w->probs[i].c0, what);
}

static void *staged_worker_run(void *arg)
{
	const struct staged_worker *w = arg;
	float *got[N_STAGED];
	uint64_t ids[N_STAGED];

	for (unsigned j = 0; j < N_STAGED; j++) {
		unsigned i = (w->first + j) % N_STAGED;
		const struct prob *p = &w->probs[i];
		struct rxg_gemm_args args;

		got[i] = malloc(sizeof(float) * (size_t)p->c_len);
		ck_assert_ptr_nonnull(got[i]);
		memcpy(got[i], p->c0, sizeof(float) * (size_t)p->c_len);
		args_from(&args, p);
		args.a = p->a;
		args.b = p->b;
		args.c = got[i];
		int rc = w->async ? rxg_submit_gemm(w->c, &args, NULL, &ids[i])
				  : rxg_gemm(w->c, &args, NULL);
		ck_assert_msg(rc == RXG_OK, "%s: %s: %s", staged_cases[i].what, rxg_strerror(rc),
			      rxg_errmsg(w->c));
		if (!w->async)
			staged_check(w, i, got[i], "rxg_gemm");
	}
	/* The replies in whatever order they come; only this thread submits jobs. */
	for (unsigned j = 0; w->async && j < N_STAGED; j++) {
		uint64_t id = 0;
		unsigned i = 0;
		int rc = rxg_wait_any(w->c, -1, &id, NULL);

		ck_assert_msg(rc == RXG_OK, "rxg_wait_any: %s: %s", rxg_strerror(rc),
			      rxg_errmsg(w->c));
		while (i < N_STAGED && ids[i] != id)
			i++;
		ck_assert_msg(i < N_STAGED, "rxg_wait_any gave id %llu, not one of ours",
			      (unsigned long long)id);
		staged_check(w, i, got[i], "rxg_submit_gemm");
		ids[i] = 0;
	}
	for (unsigned i = 0; i < N_STAGED; i++)
		free(got[i]);
	return NULL;
}

/* Staged jobs from several threads of one handle at once, three with rxg_gemm and one
 * with the async API, all copying with the library's copy threads (RXGEMM_COPY_THREADS=3,
 * set in main): each result equals the CPU reference with C's padding untouched. The copy
 * threads are there while the handle is open and gone (joined) once it is closed. */
START_TEST(test_lib_staged_threads)
{
	struct prob probs[N_STAGED];
	struct staged_worker w[4];
	pthread_t t[4];
	int tasks0 = tasks_count();
	rxg_client *c = lib_connect();

	for (unsigned i = 0; i < N_STAGED; i++) {
		const struct staged_case *sc = &staged_cases[i];

		prob_make(&probs[i], sc->rm, sc->ta, sc->tb, sc->m, sc->n, sc->k, sc->batch, 0.75f,
			  sc->beta, sc->pad, 700 + i);
	}
	for (unsigned i = 0; i < 4; i++) {
		w[i] = (struct staged_worker){ .c = c, .probs = probs, .first = i, .async = i == 3 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, staged_worker_run, &w[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	/* The four callers are joined; the count waits for them to leave /proc (tasks.h). */
	int open_n = tasks_wait(tasks0 + 2);
	ck_assert_msg(open_n == tasks0 + 2, "%d threads with the handle open, %d before: "
		      "want the 2 copy threads of RXGEMM_COPY_THREADS=3", open_n, tasks0);
	rxg_close(c);
	int closed_n = tasks_wait(tasks0);
	ck_assert_msg(closed_n == tasks0, "%d threads after rxg_close, %d before", closed_n,
		      tasks0);
	for (unsigned i = 0; i < N_STAGED; i++)
		prob_free(&probs[i]);
}
END_TEST

/* What the library refuses before anything reaches the daemon; the handle serves on. */
START_TEST(test_lib_misuse)
{
	rxg_client *c = lib_connect(), *other = lib_connect();
	rxg_buffer *buf = lib_buffer(c, 4096), *foreign = lib_buffer(other, 4096), *none = NULL;
	struct rxg_gemm_args args;
	struct prob p;
	int rc;

	ck_assert_int_eq(rxg_buffer_create(c, 0, &none), RXG_EINVAL);
	ck_assert_ptr_null(none);
	prob_make(&p, 0, 0, 0, 8, 8, 8, 1, 1.0f, 0.0f, 0, 1);
	args_from(&args, &p);
	args.b = p.b;
	args.c = p.c0;
	args.a_buf = foreign;
	rc = rxg_gemm(c, &args, NULL);
	ck_assert_msg(rc == RXG_EINVAL && strstr(rxg_errmsg(c), "another connection"),
		      "another handle's buffer: %s: %s", rxg_strerror(rc), rxg_errmsg(c));
	args.a_buf = buf;
	args.a_offset = 2;
	rc = rxg_gemm(c, &args, NULL);
	ck_assert_msg(rc == RXG_EINVAL && strstr(rxg_errmsg(c), "multiple of 4"),
		      "offset 2: %s: %s", rxg_strerror(rc), rxg_errmsg(c));
	args.a_offset = 4096 - 64 * 4 + 4;
	rc = rxg_gemm(c, &args, NULL);
	ck_assert_msg(rc == RXG_EINVAL && strstr(rxg_errmsg(c), "does not fit"),
		      "A past the end: %s: %s", rxg_strerror(rc), rxg_errmsg(c));
	args.a_buf = NULL;
	args.a = NULL;
	rc = rxg_gemm(c, &args, NULL);
	ck_assert_msg(rc == RXG_EINVAL && strstr(rxg_errmsg(c), "a_buf"), "no A: %s: %s",
		      rxg_strerror(rc), rxg_errmsg(c));
	/* And it serves: A in the buffer at its end exactly. */
	args.a_buf = buf;
	args.a_offset = 4096 - 64 * 4;
	memcpy((uint8_t *)rxg_buffer_ptr(buf) + args.a_offset, p.a, 64 * 4);
	rc = rxg_gemm(c, &args, NULL);
	ck_assert_msg(rc == RXG_OK, "%s: %s", rxg_strerror(rc), rxg_errmsg(c));
	prob_check(&p, p.c0, NULL, "A at the end of its buffer");
	ck_assert_int_eq(rxg_buffer_free(buf), RXG_OK);
	ck_assert_int_eq(rxg_buffer_free(foreign), RXG_OK);
	prob_free(&p);
	rxg_close(other);
	rxg_close(c);
}
END_TEST

/* ------------------------------------------------------------------------------------- */
/* Raw protocol (tests/lib/raw.h), with shared-memory regions. */

static Rxgemm__StatusReply *status_of(struct raw *r, uint64_t id, Rxgemm__Reply **rep)
{
	*rep = raw_status(r, id);
	return (*rep)->status_reply;
}

static void raw_send_register(struct raw *r, uint64_t id, uint64_t size, const int *fds, int n)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__RegisterRegion reg = RXGEMM__REGISTER_REGION__INIT;

	reg.size = size;
	req.request_id = id;
	req.body_case = RXGEMM__REQUEST__BODY_REGISTER_REGION;
	req.register_region = &reg;
	raw_send_fds(r, &req, fds, n);
}

/* Register fd; returns the region id. */
static uint32_t raw_register(struct raw *r, uint64_t id, int fd)
{
	raw_send_register(r, id, 0, &fd, 1);
	Rxgemm__Reply *rep = raw_expect(r, id, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_REGION_REGISTERED);
	uint32_t region = rep->region_registered->region_id;
	ck_assert_uint_ne(region, 0);
	rxgemm__reply__free_unpacked(rep, NULL);
	return region;
}

static void raw_send_unregister(struct raw *r, uint64_t id, uint32_t region)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__UnregisterRegion u = RXGEMM__UNREGISTER_REGION__INIT;

	u.region_id = region;
	req.request_id = id;
	req.body_case = RXGEMM__REQUEST__BODY_UNREGISTER_REGION;
	req.unregister_region = &u;
	raw_send_fds(r, &req, NULL, 0);
}

/* A memfd of bytes with the given seals added (mapped by the caller when it wants). */
static int memfd_sealed(size_t bytes, int seals)
{
	int fd = memfd_create("test-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)bytes), 0);
	if (seals)
		ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, seals), 0);
	return fd;
}

#define GOOD_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)

/* A 16 x 16 x 16 GEMM: A at a_off, B at b_off in the region, C from/to c_off (c_out). */
struct small {
	struct prob p;
	int fd;
	uint8_t *base;
	size_t bytes;
	uint32_t region;
};

static void small_make(struct raw *r, struct small *s, uint64_t id)
{
	prob_make(&s->p, 0, 0, 0, 16, 16, 16, 1, 1.0f, 1.0f, 0, id);
	s->bytes = 4 * 1024 * 4;
	s->fd = memfd_sealed(s->bytes, GOOD_SEALS);
	s->base = mmap(NULL, s->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	ck_assert(s->base != MAP_FAILED);
	memcpy(s->base, s->p.a, 1024);
	memcpy(s->base + 1024, s->p.b, 1024);
	memcpy(s->base + 2048, s->p.c0, 1024);
	s->region = raw_register(r, id, s->fd);
}

static void small_free(struct small *s)
{
	munmap(s->base, s->bytes);
	close(s->fd);
	prob_free(&s->p);
}

static void ref_set(Rxgemm__RegionRef *ref, uint32_t region, uint64_t off, uint64_t len)
{
	rxgemm__region_ref__init(ref);
	ref->region_id = region;
	ref->offset = off;
	ref->length = len;
}

/* g for s: every operand in the region, C in place. */
static void small_req(const struct small *s, Rxgemm__GemmRequest *g, Rxgemm__RegionRef refs[4])
{
	rxgemm__gemm_request__init(g);
	g->m = g->n = g->k = 16;
	g->alpha = 1.0f;
	g->beta = 1.0f;
	ref_set(&refs[0], s->region, 0, 1024);
	ref_set(&refs[1], s->region, 1024, 1024);
	ref_set(&refs[2], s->region, 2048, 1024);
	ref_set(&refs[3], s->region, 2048, 1024);
	g->a_region = &refs[0];
	g->b_region = &refs[1];
	g->c_region = &refs[2];
	g->c_out = &refs[3];
}

static void raw_send_gemm(struct raw *r, uint64_t id, Rxgemm__GemmRequest *g)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;

	req.request_id = id;
	req.body_case = RXGEMM__REQUEST__BODY_GEMM;
	req.gemm = g;
	raw_send_fds(r, &req, NULL, 0);
}

/* s's GEMM in place, checked; the connection serves. */
static void small_run(struct raw *r, struct small *s, uint64_t id)
{
	Rxgemm__GemmRequest g;
	Rxgemm__RegionRef refs[4];

	memcpy(s->base + 2048, s->p.c0, 1024);
	small_req(s, &g, refs);
	raw_send_gemm(r, id, &g);
	Rxgemm__Reply *rep = raw_expect(r, id, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_GEMM);
	ck_assert_msg(rep->gemm->c.len == 0, "C went to a region but the reply carries %zu bytes",
		      rep->gemm->c.len);
	ck_assert_uint_eq(rep->gemm->flops, 2 * 16 * 16 * 16);
	rxgemm__reply__free_unpacked(rep, NULL);
	prob_check(&s->p, (const float *)(s->base + 2048), NULL, "16^3 in a region");
}

/* Descriptors the daemon holds now (it runs as we do, so /proc shows them). */
static int daemon_fds(void)
{
	char path[64];
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)g_daemon.pid);
	DIR *d = opendir(path);
	ck_assert_msg(d != NULL, "%s: %s", path, strerror(errno));
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Registering bad descriptors: each its own error, and the connection serves on. */
START_TEST(test_proto_register_bad)
{
	struct raw r;
	struct small s;
	int fd, fds[6], pfd[2];
	uint64_t id = 10;

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-shm raw", "shm");
	small_make(&r, &s, 2);

	/* Not sealed at all; sealed against one of the two; sealed against writing. */
	fd = memfd_sealed(4096, 0);
	raw_send_register(&r, ++id, 0, &fd, 1);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_REGION, "not sealed against shrinking or growing");
	close(fd);
	fd = memfd_sealed(4096, F_SEAL_SHRINK);
	raw_send_register(&r, ++id, 0, &fd, 1);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_REGION, "growing");
	close(fd);
	fd = memfd_sealed(4096, GOOD_SEALS | F_SEAL_WRITE);
	raw_send_register(&r, ++id, 0, &fd, 1);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_REGION, "sealed against writing");
	close(fd);
	/* Empty; not the size the request says. */
	fd = memfd_sealed(0, GOOD_SEALS);
	raw_send_register(&r, ++id, 0, &fd, 1);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_REGION, "empty");
	close(fd);
	fd = memfd_sealed(4096, GOOD_SEALS);
	raw_send_register(&r, ++id, 8192, &fd, 1);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_REGION, "8192");
	close(fd);
	/* Over the size of one region (sparse: this costs no memory). */
	fd = memfd_sealed((size_t)65 << 30, GOOD_SEALS);
	raw_send_register(&r, ++id, 0, &fd, 1);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_TOO_BIG, "more than the");
	close(fd);
	/* Not a memfd: a pipe, a socket. */
	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	raw_send_register(&r, ++id, 0, &pfd[0], 1);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_REGION, "not a memfd");
	raw_send_register(&r, ++id, 0, &r.fd, 1);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_REGION, "not a memfd");
	/* Read-only: cannot be mapped for writing. */
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", s.fd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	raw_send_register(&r, ++id, 0, &fd, 1);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_REGION, "read/write");
	close(fd);
	/* No descriptor; two; more than a frame may carry (the daemon's control buffer
	 * truncates: MSG_CTRUNC). */
	raw_send_register(&r, ++id, 0, NULL, 0);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_REGION, "carries 0 file descriptors");
	fds[0] = memfd_sealed(4096, GOOD_SEALS);
	fds[1] = memfd_sealed(4096, GOOD_SEALS);
	raw_send_register(&r, ++id, 0, fds, 2);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_REGION, "carries 2 file descriptors");
	for (int i = 2; i < 6; i++)
		fds[i] = memfd_sealed(4096, GOOD_SEALS);
	raw_send_register(&r, ++id, 0, fds, 6);
	Rxgemm__Reply *rep = raw_expect(&r, id, RXGEMM__STATUS__STATUS_REGION, "file descriptors");
	ck_assert_msg(!strstr(rep->error, "carries 1 "), "%s", rep->error);
	rxgemm__reply__free_unpacked(rep, NULL);
	for (int i = 0; i < 6; i++)
		close(fds[i]);
	close(pfd[0]);
	close(pfd[1]);

	/* Everything still works, the good region included. */
	small_run(&r, &s, ++id);
	small_free(&s);
	raw_close(&r);
}
END_TEST

/* The bound on all regions together (1 TiB): sixteen connections of 64 GiB each (each at
 * its own default share, client-shm-max) fill it; the next region, on a seventeenth, does
 * not fit until one goes. Sparse memfds: nothing here touches memory. */
START_TEST(test_proto_total_bound)
{
	enum { N = 16 };
	struct raw *r = calloc(N + 1, sizeof(*r));
	uint32_t ids[N];
	uint64_t id = 10;
	int fd;

	ck_assert_ptr_nonnull(r);
	for (int i = 0; i <= N; i++) {
		raw_open(&r[i], g_daemon.socket_path);
		raw_hello(&r[i], "test-shm raw", "shm");
	}
	/* The bound counts every connection: wait for the earlier tests' to be gone. */
	for (int i = 0;; i++) {
		Rxgemm__Reply *rep;
		Rxgemm__StatusReply *st = status_of(&r[N], 2, &rep);
		uint32_t left = st->shm_regions;
		rxgemm__reply__free_unpacked(rep, NULL);
		if (left == 0)
			break;
		ck_assert_msg(i < 400, "%u regions of earlier clients are still mapped", left);
		usleep(50000);
	}
	for (int i = 0; i < N; i++) {
		fd = memfd_sealed((size_t)64 << 30, GOOD_SEALS);
		ids[i] = raw_register(&r[i], ++id, fd);
		close(fd);
	}
	fd = memfd_sealed(4096, GOOD_SEALS);
	raw_send_register(&r[N], ++id, 0, &fd, 1);
	raw_expect_free(&r[N], id, RXGEMM__STATUS__STATUS_TOO_BIG, "do not fit beside");
	raw_send_unregister(&r[3], ++id, ids[3]);
	raw_expect_free(&r[3], id, RXGEMM__STATUS__STATUS_OK, NULL);
	raw_register(&r[N], ++id, fd);
	close(fd);
	for (int i = 0; i <= N; i++)
		raw_close(&r[i]);
	free(r);
}
END_TEST

/* One connection's share (client-shm-max, default 64 GiB): past it a registration is
 * refused with TOO_BIG and a sentence that names the bound, while another connection
 * still registers; once it unregisters, it may register again. */
START_TEST(test_proto_client_bound)
{
	struct raw a, b;
	uint64_t id = 10;
	uint32_t big;
	int fd_big = memfd_sealed((size_t)64 << 30, GOOD_SEALS);
	int fd_small = memfd_sealed(4096, GOOD_SEALS);

	raw_open(&a, g_daemon.socket_path);
	raw_hello(&a, "test-shm raw", "shm");
	raw_open(&b, g_daemon.socket_path);
	raw_hello(&b, "test-shm raw", "shm");
	big = raw_register(&a, ++id, fd_big);
	raw_send_register(&a, ++id, 0, &fd_small, 1);
	raw_expect_free(&a, id, RXGEMM__STATUS__STATUS_TOO_BIG, "client-shm-max");
	/* The other connection is not affected, neither for a small region nor a full one. */
	raw_register(&b, ++id, fd_small);
	raw_register(&b, ++id, fd_small);
	/* Its own region gone, the first connection registers again. */
	raw_send_unregister(&a, ++id, big);
	raw_expect_free(&a, id, RXGEMM__STATUS__STATUS_OK, NULL);
	raw_register(&a, ++id, fd_small);
	close(fd_big);
	close(fd_small);
	raw_close(&a);
	raw_close(&b);
}
END_TEST

/* Bounds set on the command line: three regions and 1 MiB per connection. The fourth
 * region is refused with REGION (naming client-shm-regions), a region past the bytes with
 * TOO_BIG (naming client-shm-max); another connection registers its own three all the
 * while. */
START_TEST(test_proto_client_bound_options)
{
	struct raw a, b;
	uint64_t id = 10;
	uint32_t ids[3];
	int small = memfd_sealed(4096, GOOD_SEALS);
	int most = memfd_sealed((1 << 20) - 2 * 4096, GOOD_SEALS);
	int over = memfd_sealed((1 << 20) - 2 * 4096 + 4, GOOD_SEALS);

	raw_open(&a, g_daemon.socket_path);
	raw_hello(&a, "test-shm raw", "shm");
	raw_open(&b, g_daemon.socket_path);
	raw_hello(&b, "test-shm raw", "shm");
	for (int i = 0; i < 3; i++)
		ids[i] = raw_register(&a, ++id, small);
	raw_send_register(&a, ++id, 0, &small, 1);
	raw_expect_free(&a, id, RXGEMM__STATUS__STATUS_REGION, "client-shm-regions");
	for (int i = 0; i < 3; i++)
		raw_register(&b, ++id, small);
	/* Two of 4 KiB left registered: 1 MiB - 8 KiB fits, 4 bytes more do not. */
	raw_send_unregister(&a, ++id, ids[0]);
	raw_expect_free(&a, id, RXGEMM__STATUS__STATUS_OK, NULL);
	raw_send_register(&a, ++id, 0, &over, 1);
	raw_expect_free(&a, id, RXGEMM__STATUS__STATUS_TOO_BIG, "client-shm-max");
	raw_register(&a, ++id, most);
	close(small);
	close(most);
	close(over);
	raw_close(&a);
	raw_close(&b);
}
END_TEST

/* Descriptors on frames that are not RegisterRegion: refused and closed, also when they
 * share a read with a frame before them. */
START_TEST(test_proto_fds_elsewhere)
{
	struct raw r;
	struct small s;
	Rxgemm__GemmRequest g;
	Rxgemm__RegionRef refs[4];
	int fd = memfd_sealed(4096, GOOD_SEALS);
	uint64_t id = 10;

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-shm raw", "shm");
	small_make(&r, &s, 3);
	raw_send_status(&r, ++id, &fd, 1);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_PROTOCOL, "only RegisterRegion");
	small_req(&s, &g, refs);
	{
		Rxgemm__Request req = RXGEMM__REQUEST__INIT;
		req.request_id = ++id;
		req.body_case = RXGEMM__REQUEST__BODY_GEMM;
		req.gemm = &g;
		raw_send_fds(&r, &req, &fd, 1);
	}
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_PROTOCOL, "carries 1 file descriptor");
	/* The descriptor of a refused frame does not carry over to the next frame. */
	raw_send_register(&r, ++id, 0, NULL, 0);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_REGION, "carries 0");

	/* A status and a registration back to back (likely one read on the daemon's side):
	 * the descriptor is the registration's. */
	{
		Rxgemm__Request st = RXGEMM__REQUEST__INIT, reg = RXGEMM__REQUEST__INIT;
		Rxgemm__StatusRequest sreq = RXGEMM__STATUS_REQUEST__INIT;
		Rxgemm__RegisterRegion rreq = RXGEMM__REGISTER_REGION__INIT;
		size_t l1, l2;

		st.request_id = ++id;
		st.body_case = RXGEMM__REQUEST__BODY_STATUS;
		st.status = &sreq;
		reg.request_id = ++id;
		reg.body_case = RXGEMM__REQUEST__BODY_REGISTER_REGION;
		reg.register_region = &rreq;
		uint8_t *f1 = raw_frame(&st, NULL, 0, &l1), *f2 = raw_frame(&reg, NULL, 0, &l2);
		raw_send_bytes_fds(&r, f1, l1, NULL, 0);
		raw_send_bytes_fds(&r, f2, l2, &fd, 1);
		free(f1);
		free(f2);
		raw_expect_free(&r, id - 1, RXGEMM__STATUS__STATUS_OK, NULL);
		Rxgemm__Reply *rep = raw_expect(&r, id, RXGEMM__STATUS__STATUS_OK, NULL);
		ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_REGION_REGISTERED);
		ck_assert_uint_eq(rep->region_registered->size, 4096);
		rxgemm__reply__free_unpacked(rep, NULL);
	}
	/* Hello with a descriptor on a new connection: refused, and Hello is still due. */
	{
		struct raw r2;
		Rxgemm__Request req = RXGEMM__REQUEST__INIT;
		Rxgemm__Hello hello = RXGEMM__HELLO__INIT;

		raw_open(&r2, g_daemon.socket_path);
		hello.protocol_version = RXGEMM_PROTOCOL_VERSION;
		req.request_id = 1;
		req.body_case = RXGEMM__REQUEST__BODY_HELLO;
		req.hello = &hello;
		raw_send_fds(&r2, &req, &fd, 1);
		raw_expect_free(&r2, 1, RXGEMM__STATUS__STATUS_PROTOCOL, "file descriptor");
		raw_hello(&r2, "test-shm raw", "shm");
		raw_close(&r2);
	}
	close(fd);
	small_run(&r, &s, ++id);
	small_free(&s);
	raw_close(&r);
}
END_TEST

/* Bad region references: each its own error naming the field; the connection serves on. */
START_TEST(test_proto_bad_refs)
{
	struct raw r, other;
	struct small s, t;
	Rxgemm__GemmRequest g;
	Rxgemm__RegionRef refs[4];
	uint64_t id = 100;
	const uint64_t size = 4 * 1024 * 4;

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-shm raw", "shm");
	small_make(&r, &s, 4);
	raw_open(&other, g_daemon.socket_path);
	raw_hello(&other, "test-shm raw", "shm");
	small_make(&other, &t, 5);

#define BAD(setup, status, text)                                                  \
	do {                                                                      \
		small_req(&s, &g, refs);                                          \
		setup;                                                            \
		raw_send_gemm(&r, ++id, &g);                                      \
		raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_##status, text);   \
	} while (0)
	BAD(refs[0].offset = 2, INVALID_ARGUMENT, "a_region.offset (2) is not a multiple of 4");
	BAD(refs[1].offset = size + 4, INVALID_ARGUMENT, "b_region.offset");
	BAD(refs[1].offset = UINT64_MAX - 3, INVALID_ARGUMENT, "past the end");
	BAD(refs[2].length = UINT64_MAX, INVALID_ARGUMENT, "c_region: 18446744073709551615 bytes");
	BAD((refs[0].offset = 1024, refs[0].length = UINT64_MAX - 1020), INVALID_ARGUMENT,
	    "run past the end");
	BAD(refs[3].offset = size - 512, INVALID_ARGUMENT, "c_out: 1024 bytes at offset");
	BAD(refs[0].length = 0, INVALID_ARGUMENT, "a_region.length is 0");
	/* Too short for the shape (the region holds it, the reference does not). */
	BAD(refs[0].length = 1020, INVALID_ARGUMENT, "255 floats");
	BAD(refs[1].length = 1022, INVALID_ARGUMENT, "not a whole number of floats");
	BAD(refs[3].length = 1020, INVALID_ARGUMENT, "c_out holds 1020 bytes");
	/* Inline and region both; results overlapping operands. */
	BAD((g.a.data = (uint8_t *)s.p.a, g.a.len = 1024), INVALID_ARGUMENT,
	    "a and a_region are both given");
	BAD(refs[3].offset = 1024 + 512, INVALID_ARGUMENT, "c_out overlaps b_region");
	BAD(refs[3].offset = 2048 + 4, INVALID_ARGUMENT, "c_out overlaps c_region");
	/* No such region, and another connection's region: the same answer, which says
	 * nothing about the other client. */
	BAD(refs[1].region_id = 999, REGION, "b_region: no region 999 on this connection");
	BAD(refs[0].region_id = t.region + 50, REGION, "no region");
	if (t.region != s.region) {
		BAD(refs[0].region_id = t.region, REGION, "no region");
	} else {
		/* Both connections numbered their first region alike: the ids are per
		 * connection. Then the other's second region is the foreign one. */
		int fd = memfd_sealed(4096, GOOD_SEALS);
		uint32_t second = raw_register(&other, 9, fd);
		close(fd);
		BAD(refs[0].region_id = second, REGION, "no region");
	}
	/* Unregistering: unknown, another connection's, twice. */
	raw_send_unregister(&r, ++id, 777);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_REGION, "no region 777 on this connection");
	{
		int fd = memfd_sealed(4096, GOOD_SEALS);
		uint32_t mine = raw_register(&r, ++id, fd);
		close(fd);
		raw_send_unregister(&other, 50, mine + 100);
		raw_expect_free(&other, 50, RXGEMM__STATUS__STATUS_REGION, "no region");
		raw_send_unregister(&r, ++id, mine);
		raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_OK, NULL);
		raw_send_unregister(&r, ++id, mine);
		raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_REGION, "no region");
	}
#undef BAD
	small_run(&r, &s, ++id);
	small_run(&other, &t, 60);
	small_free(&s);
	small_free(&t);
	raw_close(&other);
	raw_close(&r);
}
END_TEST

/* Ready words (GemmRequest.a_ready, b_ready): a job sent before its operands are written
 * waits for each word and reads what was written before it; misplaced words are refused;
 * a word never set ends its job with STATUS_TIMEOUT; a client that leaves while its job
 * waits loses only that job. The connection serves on after each. */
START_TEST(test_proto_ready)
{
	struct raw r, other;
	struct small s, t;
	struct prob p;
	Rxgemm__GemmRequest g;
	Rxgemm__RegionRef refs[4];
	Rxgemm__ReadyWord w[2];
	uint64_t id = 200, *word_a, *word_b;

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-shm raw", "shm");
	small_make(&r, &s, 4);
	word_a = (uint64_t *)(void *)(s.base + 4096);
	word_b = (uint64_t *)(void *)(s.base + 4096 + 64);

#define WORD(i, off, v)                                                                    \
	(rxgemm__ready_word__init(&w[i]), w[i].region_id = s.region, w[i].offset = (off),  \
	 w[i].value = (v))
#define BAD(setup, text)                                                                   \
	do {                                                                               \
		small_req(&s, &g, refs);                                                   \
		WORD(0, 4096, 1);                                                          \
		WORD(1, 4096 + 64, 1);                                                     \
		setup;                                                                     \
		raw_send_gemm(&r, ++id, &g);                                               \
		raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT, text);    \
	} while (0)
	BAD((g.a_ready = &w[0], g.a_region = NULL, g.a.data = (uint8_t *)s.p.a, g.a.len = 1024),
	    "a_ready is given but a_region is not");
	BAD((g.b_ready = &w[1], w[1].region_id = s.region + 1), "b_ready.region_id");
	BAD((g.a_ready = &w[0], w[0].offset = 4100), "not an aligned 8-byte word");
	BAD((g.a_ready = &w[0], w[0].offset = s.bytes - 8 + 4), "not an aligned 8-byte word");
	BAD((g.a_ready = &w[0], w[0].offset = s.bytes), "within region");
	BAD((g.a_ready = &w[0], w[0].offset = UINT64_MAX - 7), "within region");
	BAD((g.a_ready = &w[0], w[0].value = 0), "a_ready.value is 0");
	BAD((g.a_ready = &w[0], w[0].offset = 512), "lies in a's bytes");
	BAD((g.b_ready = &w[1], w[1].offset = 1024 + 1016), "lies in b's bytes");
	BAD((g.a_ready = &w[0], w[0].offset = 2048), "lies in c's bytes");
	BAD((g.a_ready = &w[0], refs[3].offset = 8192, w[0].offset = 8192 + 1016),
	    "lies in c_out's bytes");
#undef BAD

	/* Row-major jobs sent while A and B are NaNs, each operand written and its word
	 * set a while after the request (no time is asserted: a daemon that did not wait
	 * would most likely read the NaNs). Round 1 waits for both; round 2 only for B,
	 * which a row-major job's column-major form reads first: a daemon that took the
	 * words for the wrong operands would read B before it is there. */
	prob_make(&p, 1, 0, 1, 16, 16, 16, 1, 1.0f, 0.5f, 0, 77);
	for (uint64_t round = 1; round <= 2; round++) {
		uint64_t va = 10 * round, vb = 10 * round + 1;

		memset(s.base, 0xff, 2048);
		memcpy(s.base + 2048, p.c0, 1024);
		if (round == 2)
			memcpy(s.base, p.a, 1024);
		__atomic_store_n(word_a, 0, __ATOMIC_RELEASE);
		__atomic_store_n(word_b, 0, __ATOMIC_RELEASE);
		small_req(&s, &g, refs);
		g.layout = RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR;
		g.trans_b = true;
		g.beta = 0.5f;
		WORD(0, 4096, va);
		WORD(1, 4096 + 64, vb);
		g.a_ready = round == 1 ? &w[0] : NULL;
		g.b_ready = &w[1];
		raw_send_gemm(&r, ++id, &g);
		usleep(30000);
		if (round == 1) {
			memcpy(s.base, p.a, 1024);
			__atomic_store_n(word_a, va, __ATOMIC_RELEASE);
			usleep(30000);
		}
		memcpy(s.base + 1024, p.b, 1024);
		__atomic_store_n(word_b, vb, __ATOMIC_RELEASE);
		Rxgemm__Reply *rep = raw_expect(&r, id, RXGEMM__STATUS__STATUS_OK, NULL);
		rxgemm__reply__free_unpacked(rep, NULL);
		prob_check(&p, (const float *)(s.base + 2048), NULL,
			   round == 1 ? "row-major, A and B marked late" : "row-major, B marked late");
	}
	prob_free(&p);

	/* A word never set: STATUS_TIMEOUT naming it (after the daemon's 2 s), then on. */
	memcpy(s.base, s.p.a, 1024);
	memcpy(s.base + 1024, s.p.b, 1024);
	__atomic_store_n(word_a, 0, __ATOMIC_RELEASE);
	small_req(&s, &g, refs);
	WORD(0, 4096, 99);
	g.a_ready = &w[0];
	raw_send_gemm(&r, ++id, &g);
	raw_expect_free(&r, id, RXGEMM__STATUS__STATUS_TIMEOUT,
			"a_ready: the word at offset 4096 of region");
	small_run(&r, &s, ++id);

	/* Another client leaves while its job waits: this one is served. */
	raw_open(&other, g_daemon.socket_path);
	raw_hello(&other, "test-shm raw", "shm");
	small_make(&other, &t, 5);
	small_req(&t, &g, refs);
	WORD(0, 4096, 5);
	w[0].region_id = t.region;
	g.a_ready = &w[0];
	raw_send_gemm(&other, 70, &g);
	raw_close(&other);
	small_run(&r, &s, ++id);
	small_run(&r, &s, ++id);
#undef WORD
	small_free(&t);
	small_free(&s);
	raw_close(&r);
}
END_TEST

/* Unregistering a region that a job in flight uses: STATUS_REGION "in use", the job
 * finishes right, and then the region can go. */
START_TEST(test_proto_unregister_busy)
{
	enum { N = 256 };
	struct raw r;
	struct prob p;
	Rxgemm__GemmRequest g;
	Rxgemm__RegionRef refs[3];
	size_t mat = sizeof(float) * N * N;
	int fd = memfd_sealed(3 * mat, GOOD_SEALS);
	uint8_t *base = mmap(NULL, 3 * mat, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	ck_assert(base != MAP_FAILED);
	prob_make(&p, 1, 0, 0, N, N, N, 1, 1.0f, 0.0f, 0, 11);
	memcpy(base, p.a, mat);
	memcpy(base + mat, p.b, mat);
	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-shm raw", "shm");
	uint32_t region = raw_register(&r, 2, fd);
	close(fd);

	rxgemm__gemm_request__init(&g);
	g.m = g.n = g.k = N;
	g.alpha = 1.0f;
	g.layout = RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR;
	ref_set(&refs[0], region, 0, mat);
	ref_set(&refs[1], region, mat, mat);
	ref_set(&refs[2], region, 2 * mat, mat);
	g.a_region = &refs[0];
	g.b_region = &refs[1];
	g.c_out = &refs[2];
	/* Both frames in one write: the daemon reads them together, so the job is in flight
	 * when the unregister is dispatched. */
	{
		Rxgemm__Request rq = RXGEMM__REQUEST__INIT, ru = RXGEMM__REQUEST__INIT;
		Rxgemm__UnregisterRegion u = RXGEMM__UNREGISTER_REGION__INIT;
		size_t l1, l2;

		rq.request_id = 3;
		rq.body_case = RXGEMM__REQUEST__BODY_GEMM;
		rq.gemm = &g;
		u.region_id = region;
		ru.request_id = 4;
		ru.body_case = RXGEMM__REQUEST__BODY_UNREGISTER_REGION;
		ru.unregister_region = &u;
		uint8_t *f1 = raw_frame(&rq, NULL, 0, &l1), *f2 = raw_frame(&ru, NULL, 0, &l2);
		uint8_t *both = malloc(l1 + l2);
		ck_assert_ptr_nonnull(both);
		memcpy(both, f1, l1);
		memcpy(both + l1, f2, l2);
		raw_send_bytes_fds(&r, both, l1 + l2, NULL, 0);
		free(both);
		free(f1);
		free(f2);
	}
	raw_expect_free(&r, 4, RXGEMM__STATUS__STATUS_REGION, "in use by 1 job");
	Rxgemm__Reply *rep = raw_expect(&r, 3, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert_uint_eq(rep->gemm->c.len, 0);
	rxgemm__reply__free_unpacked(rep, NULL);
	prob_check(&p, (const float *)(base + 2 * mat), NULL, "256^3 while unregistering");
	raw_send_unregister(&r, 5, region);
	raw_expect_free(&r, 5, RXGEMM__STATUS__STATUS_OK, NULL);
	/* Gone now: a job that names it fails, the client's memory is its own. */
	raw_send_gemm(&r, 6, &g);
	raw_expect_free(&r, 6, RXGEMM__STATUS__STATUS_REGION, "no region");
	munmap(base, 3 * mat);
	prob_free(&p);
	raw_close(&r);
}
END_TEST

/* A client leaves with regions registered and a job in flight: once the job is done the
 * daemon unmaps them, and it holds no descriptor more than before. */
START_TEST(test_release_on_close)
{
	enum { N = 256 };
	struct raw watch, r;
	Rxgemm__Reply *rep;
	Rxgemm__StatusReply *st;
	size_t mat = sizeof(float) * N * N;
	int fd, pfd[2];

	raw_open(&watch, g_daemon.socket_path);
	raw_hello(&watch, "test-shm raw", "shm");
	{
		/* A first GEMM through a region: whatever the device and the daemon open once
		 * is open before we count. */
		struct small s;
		raw_open(&r, g_daemon.socket_path);
		raw_hello(&r, "test-shm raw", "shm");
		small_make(&r, &s, 12);
		small_run(&r, &s, 13);
		small_free(&s);
		raw_close(&r);
	}
	/* Wait for that connection to be gone, then count. */
	uint32_t base_regions = 0;
	for (int i = 0;; i++) {
		st = status_of(&watch, 100 + (uint64_t)i, &rep);
		int settled = st->clients_connected == 1 && st->jobs_queued == 0;
		base_regions = st->shm_regions;
		rxgemm__reply__free_unpacked(rep, NULL);
		if (settled)
			break;
		ck_assert_msg(i < 200, "the first client does not go away");
		usleep(50000);
	}
	int base_fds = daemon_fds();

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-shm raw", "shm");
	fd = memfd_sealed(3 * mat, GOOD_SEALS);
	uint32_t region = raw_register(&r, 2, fd);
	close(fd);
	fd = memfd_sealed(8192, GOOD_SEALS);
	raw_register(&r, 3, fd);
	close(fd);
	/* Refused descriptors along the way, which must not stay open either. */
	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	raw_send_status(&r, 4, pfd, 2);
	raw_expect_free(&r, 4, RXGEMM__STATUS__STATUS_PROTOCOL, NULL);
	raw_send_register(&r, 5, 0, &pfd[1], 1);
	raw_expect_free(&r, 5, RXGEMM__STATUS__STATUS_REGION, NULL);
	close(pfd[0]);
	close(pfd[1]);

	st = status_of(&watch, 300, &rep);
	ck_assert_uint_eq(st->shm_regions, base_regions + 2);
	ck_assert_uint_ge(st->shm_region_bytes, 3 * mat + 8192);
	ck_assert_uint_ge(st->shm_regions_registered, 3);
	ck_assert_uint_ge(st->shm_jobs, 1);
	rxgemm__reply__free_unpacked(rep, NULL);

	/* A job on the big region, and away without waiting for it. */
	{
		Rxgemm__GemmRequest g;
		Rxgemm__RegionRef refs[3];
		rxgemm__gemm_request__init(&g);
		g.m = g.n = g.k = N;
		g.alpha = 1.0f;
		ref_set(&refs[0], region, 0, mat);
		ref_set(&refs[1], region, mat, mat);
		ref_set(&refs[2], region, 2 * mat, mat);
		g.a_region = &refs[0];
		g.b_region = &refs[1];
		g.c_out = &refs[2];
		raw_send_gemm(&r, 6, &g);
	}
	raw_close(&r);

	for (int i = 0;; i++) {
		st = status_of(&watch, 400 + (uint64_t)i, &rep);
		int gone = st->clients_connected == 1 && st->jobs_queued == 0 &&
			   st->shm_regions == base_regions;
		uint32_t regions = st->shm_regions;
		rxgemm__reply__free_unpacked(rep, NULL);
		if (gone)
			break;
		ck_assert_msg(i < 400, "%u regions still mapped 20 s after their client left, want %u",
			      regions, base_regions);
		usleep(50000);
	}
	/* Not more than before (a leak); fewer is fine: the OpenCL driver may have closed one
	 * of its own meanwhile. A leak stays; a descriptor that a driver thread (PoCL's
	 * compiler, its cache) holds for a moment goes: wait up to 20 s for the count. */
	int fds_now = daemon_fds();
	for (int i = 0; fds_now > base_fds && i < 400; i++) {
		usleep(50000);
		fds_now = daemon_fds();
	}
	ck_assert_msg(fds_now <= base_fds, "the daemon holds %d descriptors, %d before the client "
					   "came",
		      fds_now, base_fds);
	raw_close(&watch);
}
END_TEST

/* The connection I/O under load: a client that sends far more requests than it reads
 * replies. The daemon must stop reading while its replies pile up (else it would hold them
 * all), resume as they drain, and deliver every reply whole and in order. */
START_TEST(test_io_backpressure)
{
	enum { TOTAL = 60000, PER_SEND = 1000 };
	struct raw r;
	uint8_t *chunk = NULL;
	size_t frame_len = 0, chunk_len = 0, pending = 0;
	uint64_t sent = 0, next_id = 100;
	int quiet_ms = 0;

	raw_open(&r, g_daemon.socket_path);
	raw_hello(&r, "test-shm raw", "shm");
	/* Batches of status requests, sent without blocking until the socket stays full. */
	while (sent < TOTAL && quiet_ms < 2000) {
		if (pending == 0) {
			Rxgemm__Request req = RXGEMM__REQUEST__INIT;
			Rxgemm__StatusRequest sreq = RXGEMM__STATUS_REQUEST__INIT;
			free(chunk);
			chunk = NULL;
			chunk_len = 0;
			req.body_case = RXGEMM__REQUEST__BODY_STATUS;
			req.status = &sreq;
			for (int i = 0; i < PER_SEND; i++) {
				req.request_id = next_id++;
				uint8_t *f = raw_frame(&req, NULL, 0, &frame_len);
				chunk = realloc(chunk, chunk_len + frame_len);
				ck_assert_ptr_nonnull(chunk);
				memcpy(chunk + chunk_len, f, frame_len);
				chunk_len += frame_len;
				free(f);
			}
			pending = chunk_len;
		}
		ssize_t n = send(r.fd, chunk + (chunk_len - pending), pending,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK, "send: %s",
				      strerror(errno));
			usleep(10000);
			quiet_ms += 10;
			continue;
		}
		quiet_ms = 0;
		pending -= (size_t)n;
		if (pending == 0)
			sent += PER_SEND;
	}
	ck_assert_msg(sent < TOTAL,
		      "the daemon read all %d requests while none of their replies was read",
		      TOTAL);
	/* Finish the batch under way (blocking now: the daemon resumes as we read), then
	 * read every reply. */
	if (pending) {
		int flags = fcntl(r.fd, F_GETFL);
		ck_assert_int_eq(fcntl(r.fd, F_SETFL, flags | O_NONBLOCK), 0);
		sent += PER_SEND;
	}
	for (uint64_t i = 0; i < sent; i++) {
		while (pending) {
			ssize_t n = send(r.fd, chunk + (chunk_len - pending), pending,
					 MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n > 0)
				pending -= (size_t)n;
			else
				break;
		}
		Rxgemm__Reply *rep = raw_recv_reply(&r);
		ck_assert_msg(rep->request_id == 100 + i && rep->status == RXGEMM__STATUS__STATUS_OK &&
				      rep->body_case == RXGEMM__REPLY__BODY_STATUS_REPLY,
			      "reply %" PRIu64 ": request %" PRIu64 ", status %d, body %d", i,
			      rep->request_id, rep->status, rep->body_case);
		rxgemm__reply__free_unpacked(rep, NULL);
	}
	ck_assert_uint_eq(pending, 0);
	free(chunk);
	raw_close(&r);
}
END_TEST

/* Jobs bigger than the device-memory budget run in pieces (split.c), reading operands and
 * writing C piece by piece: through regions too, in place and to c_out. */
START_TEST(test_split)
{
	rxg_client *c = lib_connect();
	struct rxg_status *st = NULL;
	uint64_t split_before;
	struct prob p;

	ck_assert_int_eq(rxg_status(c, &st), RXG_OK);
	split_before = st->jobs_split;
	rxg_status_free(st);
	prob_make(&p, 1, 0, 1, 1100, 1000, 900, 1, 0.5f, -1.0f, 3, 21);
	lib_in_place(c, &p, "split, in place");
	prob_free(&p);
	{
		/* To a separate buffer, C's input inline. */
		prob_make(&p, 0, 1, 0, 1000, 900, 1100, 1, 1.0f, 0.25f, 1, 22);
		struct placing pl = place(&p);
		rxg_buffer *buf = lib_buffer(c, pl.bytes);
		uint8_t *base = rxg_buffer_ptr(buf);
		struct rxg_gemm_args args;

		memcpy(base + pl.a_off, p.a, sizeof(float) * (size_t)p.a_len);
		memcpy(base + pl.b_off, p.b, sizeof(float) * (size_t)p.b_len);
		args_from(&args, &p);
		args.a_buf = args.b_buf = args.c_out_buf = buf;
		args.a_offset = pl.a_off;
		args.b_offset = pl.b_off;
		args.c_out_offset = pl.out_off;
		args.c = p.c0;
		int rc = rxg_gemm(c, &args, NULL);
		ck_assert_msg(rc == RXG_OK, "%s: %s", rxg_strerror(rc), rxg_errmsg(c));
		prob_check(&p, (const float *)(base + pl.out_off), p.c0, "split, c_out");
		ck_assert_int_eq(rxg_buffer_free(buf), RXG_OK);
		prob_free(&p);
	}
	ck_assert_int_eq(rxg_status(c, &st), RXG_OK);
	ck_assert_msg(st->jobs_split >= split_before + 2, "jobs_split went from %" PRIu64
							  " to %" PRIu64 "; want both jobs split",
		      split_before, st->jobs_split);
	rxg_status_free(st);
	rxg_close(c);
}
END_TEST

/* Zero-copy (daemon/zcopy.c): on a device that works on host memory, a GEMM whose A, B and
 * C's destination are all in buffers runs on them in place. The budget (4 MiB here) holds
 * no device buffer of such a job, so jobs far bigger than it run whole, never split, and
 * status counts them in place; results, padding and operands are as on the copying path.
 * On a device with memory of its own the same jobs run split and are checked the same. */
static int daemon_device_is_cpu(rxg_client *c)
{
	struct rxg_status *st = NULL;
	int cpu = 0;

	ck_assert_int_eq(rxg_status(c, &st), RXG_OK);
	for (size_t i = 0; i < st->n_devices; i++)
		if (st->devices[i].in_use)
			cpu = strcmp(st->devices[i].type, "CPU") == 0;
	rxg_status_free(st);
	return cpu;
}

START_TEST(test_in_place)
{
	rxg_client *c = lib_connect();
	struct rxg_status *st = NULL;
	uint64_t split_before, in_place_before;
	int cpu = daemon_device_is_cpu(c);
	struct prob p;

	ck_assert_int_eq(rxg_status(c, &st), RXG_OK);
	split_before = st->jobs_split;
	in_place_before = st->shm_jobs_in_place;
	rxg_status_free(st);
	/* 1: A, B and C in one buffer, C replaced in place (beta reads it). */
	prob_make(&p, 1, 0, 1, 1100, 1000, 900, 1, 0.5f, -1.0f, 3, 31);
	lib_in_place(c, &p, "in place, C replaced");
	prob_free(&p);
	for (int i = 0; i < 2; i++) {
		/* 2: C's input inline, the result to a separate place of the buffer; 3: no C
		 * (beta 0), the padding of the result zeros over whatever the buffer held. */
		prob_make(&p, i, 1, i, 700 + 3 * i, 650, 900 + i, 1, 1.0f, i ? 0.0f : 0.25f, 2,
			  32 + (uint64_t)i);
		struct placing pl = place(&p);
		rxg_buffer *buf = lib_buffer(c, pl.bytes);
		uint8_t *base = rxg_buffer_ptr(buf);
		struct rxg_gemm_args args;
		struct rxg_timings t;

		memcpy(base + pl.a_off, p.a, sizeof(float) * (size_t)p.a_len);
		memcpy(base + pl.b_off, p.b, sizeof(float) * (size_t)p.b_len);
		memset(base + pl.out_off, 0x7f, sizeof(float) * (size_t)p.c_len);
		args_from(&args, &p);
		args.a_buf = args.b_buf = args.c_out_buf = buf;
		args.a_offset = pl.a_off;
		args.b_offset = pl.b_off;
		args.c_out_offset = pl.out_off;
		args.c = i ? NULL : p.c0;
		int rc = rxg_gemm(c, &args, &t);
		ck_assert_msg(rc == RXG_OK, "%s: %s", rxg_strerror(rc), rxg_errmsg(c));
		prob_check(&p, (const float *)(base + pl.out_off), i ? NULL : p.c0,
			   i ? "in place, no C" : "in place, C inline");
		ck_assert(memcmp(base + pl.a_off, p.a, sizeof(float) * (size_t)p.a_len) == 0);
		ck_assert(memcmp(base + pl.b_off, p.b, sizeof(float) * (size_t)p.b_len) == 0);
		ck_assert_int_eq(rxg_buffer_free(buf), RXG_OK);
		prob_free(&p);
	}
	ck_assert_int_eq(rxg_status(c, &st), RXG_OK);
	if (cpu) {
		ck_assert_msg(st->shm_jobs_in_place == in_place_before + 3,
			      "shm_jobs_in_place went from %" PRIu64 " to %" PRIu64 "; want 3 more",
			      in_place_before, st->shm_jobs_in_place);
		ck_assert_msg(st->jobs_split == split_before, "jobs_split went from %" PRIu64
			      " to %" PRIu64 ": a job in place needs no device buffers",
			      split_before, st->jobs_split);
	} else {
		ck_assert_uint_eq(st->shm_jobs_in_place, in_place_before);
	}
	rxg_status_free(st);
	rxg_close(c);
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

static TCase *tcase(const char *name)
{
	return tcase_with(name, daemon_up);
}

static Suite *shm_suite(void)
{
	Suite *s = suite_create("shm");
	TCase *tc;

	tc = tcase("library");
	tcase_add_test(tc, test_lib_in_place);
	tcase_add_test(tc, test_lib_mixed);
	tcase_add_test(tc, test_lib_staged);
	tcase_add_test(tc, test_lib_staged_threads);
	tcase_add_test(tc, test_lib_misuse);
	suite_add_tcase(s, tc);
	tc = tcase("protocol");
	tcase_add_test(tc, test_proto_register_bad);
	tcase_add_test(tc, test_proto_fds_elsewhere);
	tcase_add_test(tc, test_proto_total_bound);
	tcase_add_test(tc, test_proto_client_bound);
	tcase_add_test(tc, test_proto_bad_refs);
	tcase_add_test(tc, test_proto_unregister_busy);
	tcase_add_test(tc, test_release_on_close);
	tcase_add_test(tc, test_proto_ready);
	suite_add_tcase(s, tc);
	tc = tcase("io");
	tcase_add_test(tc, test_io_backpressure);
	suite_add_tcase(s, tc);
	tc = tcase_with("client-bounds", daemon_up_shm_bounds);
	tcase_add_test(tc, test_proto_client_bound_options);
	suite_add_tcase(s, tc);
	tc = tcase_with("split", daemon_up_small_budget);
	tcase_add_test(tc, test_split);
	suite_add_tcase(s, tc);
	tc = tcase_with("in place", daemon_up_small_budget_in_place);
	tcase_add_test(tc, test_in_place);
	suite_add_tcase(s, tc);
	tc = tcase_with("copying", daemon_up_copying);
	tcase_add_test(tc, test_lib_in_place);
	tcase_add_test(tc, test_lib_mixed);
	tcase_add_test(tc, test_lib_staged);
	tcase_add_test(tc, test_proto_ready);
	tcase_add_test(tc, test_lib_ready_used);
	suite_add_tcase(s, tc);
	tc = tcase_with("pipelined", daemon_up_pipelined);
	tcase_add_test(tc, test_lib_in_place);
	tcase_add_test(tc, test_lib_mixed);
	tcase_add_test(tc, test_lib_staged);
	tcase_add_test(tc, test_proto_ready);
	tcase_add_test(tc, test_lib_frames_kept);
	tcase_add_test(tc, test_pipelined_ran);
	tcase_add_test(tc, test_pinned_ran);
	tcase_add_test(tc, test_lib_ready_used);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(shm_suite());

	signal(SIGPIPE, SIG_IGN);
	/* librxgemm's copy threads (test_lib_staged_threads counts them), on any machine. */
	setenv("RXGEMM_COPY_THREADS", "3", 1);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed || g_teardown_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test-sched-daemon.c: scheduling, bounds, deadlines and cancellation on a real rxgemmd,
 * with several connections and client processes at once, through librxgemm's
 * asynchronous API.
 *
 * One daemon serves every test (started once, in an unchecked fixture) with small queue
 * bounds and a small device-memory budget, so that a big GEMM runs as many pieces and a
 * cancel reaches it at a piece boundary. Most tests keep the device busy with a "blocker"
 * (a big GEMM from another connection) so that the jobs under test wait in the queue.
 * The blocker is held at its first piece boundary by the daemon's test hook
 * (RXGEMMD_TEST_HOLD, see worker_test_hold) until the test releases it, so what the tests
 * see never depends on how fast the machine is: they wait for events (a reply, a file the
 * daemon makes, a status figure), never for time, and assert only what the daemon decides.
 * Every result is checked against refgemm, the CPU reference: whole for small jobs, a few
 * rows for big ones. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-run.h"
#include "frame.h"
#include "refgemm.h"
#include "rxgemm.h"
#include "rxgemm.pb-c.h"

#define MAX_QUEUE 12
#define CLIENT_MAX_QUEUE 8
#define BIG 1024          /* the blocker's M and N */
#define BLOCKER_K 8192    /* the blocker: BIG x BIG x BLOCKER_K, in pieces */

static struct daemon_run g_daemon;
static char g_hold[300], g_held[300]; /* the test hook's files (see hold_on) */

/* The daemon's arguments; the busy-polling run adds --busy-poll (daemon_up_polling). */
static const char *g_args[] = { "--max-queue", "12", "--client-max-queue", "8",
				"--vram-budget", "4M", NULL, NULL, NULL };

static void daemon_up(void)
{
	const char *const *args = g_args;
	int rc;

	if (daemon_run_init(&g_daemon) < 0)
		exit(EXIT_FAILURE);
	/* The hold files live in the daemon's own temporary directory. */
	snprintf(g_hold, sizeof(g_hold), "%s/hold", g_daemon.dir);
	snprintf(g_held, sizeof(g_held), "%s/held", g_daemon.dir);
	setenv("RXGEMMD_TEST_HOLD", g_daemon.dir, 1);
	rc = daemon_run_start(&g_daemon, args);
	unsetenv("RXGEMMD_TEST_HOLD");

	if (rc == DAEMON_RUN_SKIP) {
		daemon_run_cleanup(&g_daemon);
		exit(DAEMON_RUN_SKIP);
	}
	if (rc != 0) {
		fprintf(stderr, "test-sched-daemon: cannot start rxgemmd\n");
		daemon_run_cleanup(&g_daemon);
		exit(EXIT_FAILURE);
	}
}

/* Every test again with busy polling, which a CPU device has off by default: the daemon's
 * loop and worker poll for 1 ms after each request and reply, and the client polls its
 * socket for up to 1 ms before it sleeps (RXGEMM_SPIN_US, read at each connect). What the
 * tests assert (order, bounds, cancels, hand-over between threads) must not change. */
static void daemon_up_polling(void)
{
	g_args[6] = "--busy-poll";
	g_args[7] = "1ms";
	setenv("RXGEMM_SPIN_US", "1000", 1);
	daemon_up();
}

/* Set when the daemon did not stop cleanly; main fails then (exiting here would hide
 * check's report of the tests). */
static int g_daemon_failed;

static void daemon_down(void)
{
	int rc;

	unlink(g_hold); /* a failed test may have left the worker held */
	rc = daemon_run_stop(&g_daemon, SIGTERM, 60);
	if (rc != 0) {
		fprintf(stderr, "test-sched-daemon: rxgemmd exited with %d\n", rc);
		daemon_run_dump_log(&g_daemon);
		g_daemon_failed = 1;
	}
	daemon_run_cleanup(&g_daemon);
}

/* Each test's time, on stderr: the suite must stay quick on a loaded CPU. */
static struct timespec g_test_start;

static void test_setup(void)
{
	/* A test that failed while holding the worker must not hold up the next one. */
	unlink(g_hold);
	clock_gettime(CLOCK_MONOTONIC, &g_test_start);
}

static void test_teardown(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	fprintf(stderr, "  (%.2f s)\n", (double)(now.tv_sec - g_test_start.tv_sec) +
					    (double)(now.tv_nsec - g_test_start.tv_nsec) / 1e9);
}

/* ---- problems: row-major C = A B, random A and B --------------------------------------- */
struct prob {
	int64_t m, n, k;
	float *a, *b, *c;
	uint64_t id;  /* the request id it was submitted as */
};

static void prob_make(struct prob *p, int64_t m, int64_t n, int64_t k, uint64_t seed)
{
	memset(p, 0, sizeof(*p));
	p->m = m, p->n = n, p->k = k;
	p->a = malloc((size_t)(m * k) * sizeof(float));
	p->b = malloc((size_t)(k * n) * sizeof(float));
	p->c = calloc((size_t)(m * n), sizeof(float));
	ck_assert(p->a && p->b && p->c);
	refgemm_fill_random(p->a, (size_t)(m * k), &seed);
	refgemm_fill_random(p->b, (size_t)(k * n), &seed);
}

static void prob_free(struct prob *p)
{
	free(p->a), free(p->b), free(p->c);
	memset(p, 0, sizeof(*p));
}

static int prob_submit(rxg_client *c, struct prob *p, unsigned priority, uint64_t deadline_ms)
{
	struct rxg_gemm_args args = {
		.layout = RXG_ROW_MAJOR, .m = p->m, .n = p->n, .k = p->k, .alpha = 1.0f,
		.a = p->a, .b = p->b, .c = p->c,
	};
	struct rxg_job_options o = { .priority = priority, .deadline_ms = deadline_ms };

	return rxg_submit_gemm(c, &args, &o, &p->id);
}

static void prob_submit_ok(rxg_client *c, struct prob *p, unsigned priority,
			   uint64_t deadline_ms)
{
	int rc = prob_submit(c, p, priority, deadline_ms);

	ck_assert_msg(rc == RXG_OK, "submit %lldx%lldx%lld: %s: %s", (long long)p->m,
		      (long long)p->n, (long long)p->k, rxg_strerror(rc), rxg_errmsg(c));
	ck_assert_uint_ne(p->id, 0);
}

/* Check rows of the result against the reference (all of them when rows is 0). */
static void prob_verify(const struct prob *p, int rows)
{
	int64_t step = rows ? (p->m + rows - 1) / rows : 1;
	float *want = malloc((size_t)p->n * sizeof(float));

	ck_assert_ptr_nonnull(want);
	for (int64_t i = 0; i < p->m; i += step) {
		int bad;

		refgemm(1, 0, 0, 1, p->n, p->k, 1.0f, p->a + i * p->k, p->k, p->b, p->n, 0.0f, want,
			p->n);
		bad = refgemm_compare(1, 1, p->n, p->k, p->c + i * p->n, want, p->n, NULL, NULL,
				      NULL);
		ck_assert_msg(bad == 0, "%lldx%lldx%lld: %d wrong elements in row %lld",
			      (long long)p->m, (long long)p->n, (long long)p->k, bad, (long long)i);
	}
	free(want);
}

static void wait_ok(rxg_client *c, struct prob *p, int rows)
{
	int rc = rxg_wait(c, p->id, NULL);

	ck_assert_msg(rc == RXG_OK, "job %llu (%lldx%lldx%lld): %s: %s",
		      (unsigned long long)p->id, (long long)p->m, (long long)p->n,
		      (long long)p->k, rxg_strerror(rc), rxg_errmsg(c));
	prob_verify(p, rows);
}

static rxg_client *lib_connect(const char *name)
{
	rxg_client *c = NULL;
	int rc = rxg_connect(g_daemon.socket_path, name, &c);

	ck_assert_msg(rc == RXG_OK, "rxg_connect: %s: %s", rxg_strerror(rc), rxg_errmsg(NULL));
	return c;
}

static struct rxg_status *lib_status(rxg_client *c)
{
	struct rxg_status *st = NULL;
	int rc = rxg_status(c, &st);

	ck_assert_msg(rc == RXG_OK, "rxg_status: %s: %s", rxg_strerror(rc), rxg_errmsg(c));
	return st;
}

/* ---- the hold: the worker waits at a piece boundary while g_hold exists ---------------- */

static int path_exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

/* The next job to reach a piece boundary stops there (the blocker: submitted next). */
static void hold_on(void)
{
	FILE *f = fopen(g_hold, "w");

	ck_assert_msg(f != NULL, "%s: %s", g_hold, strerror(errno));
	fclose(f);
}

/* Wait for the worker to be held (a safety net of 5 minutes, not a timing assertion). */
static void hold_wait_held(void)
{
	for (int i = 0; !path_exists(g_held); i++) {
		ck_assert_msg(i < 60000, "the worker never stopped at the hold");
		usleep(5000);
	}
}

/* Let the worker go on, and wait until it has left the hold point. */
static void hold_release(void)
{
	ck_assert_int_eq(unlink(g_hold), 0);
	for (int i = 0; path_exists(g_held); i++) {
		ck_assert_msg(i < 60000, "the worker never left the hold");
		usleep(5000);
	}
}

/* Wait (up to 60 s) until the daemon holds jobs, of which waiting wait: the others run. */
static void wait_jobs(rxg_client *c, uint32_t jobs, uint32_t waiting)
{
	for (int i = 0; i < 3000; i++) {
		struct rxg_status *st = lib_status(c);
		int ok = st->jobs_queued == jobs && st->jobs_waiting == waiting;

		rxg_status_free(st);
		if (ok)
			return;
		usleep(20000);
	}
	ck_abort_msg("the daemon never held %u jobs with %u of them waiting", jobs, waiting);
}

/* The blocker has started, alone. */
static void wait_running_alone(rxg_client *c)
{
	wait_jobs(c, 1, 0);
}

/* The blocker: a GEMM of many pieces under the daemon's 4 MiB budget, held at its first
 * piece boundary until blocker_end. */
static void blocker_start(rxg_client *c, struct prob *p)
{
	hold_on();
	prob_make(p, BIG, BIG, BLOCKER_K, 99);
	prob_submit_ok(c, p, 0, 0);
	hold_wait_held();
	wait_running_alone(c);
}

/* Cancel the held blocker and let it go: it stops at the boundary where it was held. */
static void blocker_end(rxg_client *c, struct prob *p)
{
	enum rxg_cancel_outcome out;
	int rc;

	ck_assert_int_eq(rxg_cancel(c, p->id, &out), RXG_OK);
	ck_assert_int_eq(out, RXG_CANCEL_RUNNING);
	hold_release();
	rc = rxg_wait(c, p->id, NULL);
	ck_assert_msg(rc == RXG_ECANCELLED, "blocker: %s: %s", rxg_strerror(rc), rxg_errmsg(c));
	prob_free(p);
}

/* ---- fairness ------------------------------------------------------------------------ */

/* One connection queues several big GEMMs, then another queues small ones, all while the
 * device is held by a blocker from a third. In arrival order the small ones would all come
 * last; the scheduler shares the device by FLOPs (deficit round robin), so when the device
 * frees they all run before the big stream's second job (DRR's bound: within one job).
 * Every job waits when the device frees, so the order is the scheduler's alone, whatever
 * the load; tests/test-sched.c proves the shares themselves with a fake clock. The order is
 * the daemon's own: its list of recent jobs, in completion order. */
START_TEST(test_fair_small_not_last)
{
	enum { NBIG = 5, NSMALL = 6, FAIR_BIG = 384 };
	rxg_client *cx = lib_connect("sched-blocker"), *ca = lib_connect("sched-big"),
		   *cb = lib_connect("sched-small");
	struct prob blocker, big[NBIG], small[NSMALL];
	uint32_t ida = rxg_server_info(ca)->client_id, idb = rxg_server_info(cb)->client_id;
	struct rxg_status *st;
	int big_done = 0, small_done = 0, big_before_last_small = -1;

	blocker_start(cx, &blocker);
	for (int i = 0; i < NBIG; i++) {
		prob_make(&big[i], FAIR_BIG, FAIR_BIG, FAIR_BIG, 10 + (uint64_t)i);
		prob_submit_ok(ca, &big[i], 0, 0);
	}
	for (int i = 0; i < NSMALL; i++) {
		prob_make(&small[i], 64 + 8 * i, 48 + 4 * i, 80, 100 + (uint64_t)i);
		prob_submit_ok(cb, &small[i], 0, 0);
	}
	/* All of them wait behind the held blocker before it goes. */
	wait_jobs(cb, 1 + NBIG + NSMALL, NBIG + NSMALL);
	blocker_end(cx, &blocker);
	for (int i = 0; i < NSMALL; i++)
		wait_ok(cb, &small[i], 0);
	for (int i = 0; i < NBIG; i++)
		wait_ok(ca, &big[i], 3);

	st = lib_status(cb);
	ck_assert_uint_ge(st->n_recent, NBIG + NSMALL);
	for (size_t i = st->n_recent - (NBIG + NSMALL); i < st->n_recent; i++) {
		const struct rxg_job_record *r = &st->recent[i];

		ck_assert_int_eq(r->status, RXG_OK);
		if (r->client_id == ida) {
			big_done++;
		} else {
			ck_assert_uint_eq(r->client_id, idb);
			if (++small_done == NSMALL)
				big_before_last_small = big_done;
		}
	}
	fprintf(stderr, "fairness: %d of %d big jobs finished before the last small one\n",
		big_before_last_small, NBIG);
	ck_assert_int_eq(big_done, NBIG);
	ck_assert_int_eq(small_done, NSMALL);
	ck_assert_msg(big_before_last_small >= 0 && big_before_last_small <= 1,
		      "%d big jobs finished before the last small one: the small ones starved",
		      big_before_last_small);
	rxg_status_free(st);
	for (int i = 0; i < NBIG; i++)
		prob_free(&big[i]);
	for (int i = 0; i < NSMALL; i++)
		prob_free(&small[i]);
	rxg_close(ca);
	rxg_close(cb);
	rxg_close(cx);
}
END_TEST

/* A higher priority jumps the queue: submitted last, finished first of the waiting ones. */
START_TEST(test_priority_first)
{
	rxg_client *cb = lib_connect("sched-blocker"), *c = lib_connect("sched-prio");
	struct prob blocker, low[3], high;
	uint64_t first = 0;
	int rc;

	blocker_start(cb, &blocker);
	for (int i = 0; i < 3; i++) {
		prob_make(&low[i], 40, 40, 40, 200 + (uint64_t)i);
		prob_submit_ok(c, &low[i], 0, 0);
	}
	prob_make(&high, 50, 30, 20, 300);
	prob_submit_ok(c, &high, 3, 0);
	/* All four wait when the device frees: the order is the scheduler's. */
	wait_jobs(c, 5, 4);
	blocker_end(cb, &blocker);
	rc = rxg_wait_any(c, -1, &first, NULL);
	ck_assert_msg(rc == RXG_OK, "%s: %s", rxg_strerror(rc), rxg_errmsg(c));
	ck_assert_uint_eq(first, high.id);
	prob_verify(&high, 0);
	for (int i = 0; i < 3; i++)
		wait_ok(c, &low[i], 0);
	/* Out of range: refused, the connection still serves. */
	{
		struct prob bad;

		prob_make(&bad, 8, 8, 8, 1);
		prob_submit_ok(c, &bad, 4, 0);
		ck_assert_int_eq(rxg_wait(c, bad.id, NULL), RXG_EINVAL);
		ck_assert_ptr_nonnull(strstr(rxg_errmsg(c), "priority"));
		prob_free(&bad);
	}
	for (int i = 0; i < 3; i++)
		prob_free(&low[i]);
	prob_free(&high);
	rxg_close(c);
	rxg_close(cb);
}
END_TEST

/* ---- bounds ---------------------------------------------------------------------------- */

START_TEST(test_busy_bounds)
{
	rxg_client *cb = lib_connect("sched-blocker"), *ca = lib_connect("sched-a"),
		   *cc = lib_connect("sched-c");
	struct prob blocker, a[CLIENT_MAX_QUEUE + 1], b[MAX_QUEUE - CLIENT_MAX_QUEUE + 1];
	const int na = CLIENT_MAX_QUEUE + 1, nb = MAX_QUEUE - CLIENT_MAX_QUEUE + 1;
	struct rxg_status *st;
	uint64_t busy_before;
	int rc;

	st = lib_status(ca);
	ck_assert_uint_eq(st->max_queue, MAX_QUEUE);
	ck_assert_uint_eq(st->client_max_queue, CLIENT_MAX_QUEUE);
	busy_before = st->jobs_rejected_busy;
	rxg_status_free(st);

	blocker_start(cb, &blocker);
	/* One more than the connection's bound: the last is refused at once... */
	for (int i = 0; i < na; i++) {
		prob_make(&a[i], 16 + i, 24, 8, 400 + (uint64_t)i);
		prob_submit_ok(ca, &a[i], 0, 0);
	}
	rc = rxg_wait(ca, a[na - 1].id, NULL);
	ck_assert_msg(rc == RXG_EBUSY, "job over client-max-queue: %s: %s", rxg_strerror(rc),
		      rxg_errmsg(ca));
	ck_assert_msg(strstr(rxg_errmsg(ca), "client-max-queue"), "%s", rxg_errmsg(ca));
	/* ...and one more than the total bound from another connection, under its own. */
	for (int i = 0; i < nb; i++) {
		prob_make(&b[i], 20, 16 + i, 12, 500 + (uint64_t)i);
		prob_submit_ok(cc, &b[i], 0, 0);
	}
	rc = rxg_wait(cc, b[nb - 1].id, NULL);
	ck_assert_msg(rc == RXG_EBUSY, "job over max-queue: %s: %s", rxg_strerror(rc),
		      rxg_errmsg(cc));
	ck_assert_msg(strstr(rxg_errmsg(cc), "max-queue") && !strstr(rxg_errmsg(cc), "client"),
		      "%s", rxg_errmsg(cc));
	st = lib_status(ca);
	ck_assert_uint_eq(st->jobs_waiting, MAX_QUEUE);
	ck_assert_uint_eq(st->clients_waiting, 2);
	ck_assert_uint_eq(st->jobs_rejected_busy, busy_before + 2);
	rxg_status_free(st);
	/* Everything queued is served, correctly. */
	blocker_end(cb, &blocker);
	for (int i = 0; i < na - 1; i++)
		wait_ok(ca, &a[i], 0);
	for (int i = 0; i < nb - 1; i++)
		wait_ok(cc, &b[i], 0);
	for (int i = 0; i < na; i++)
		prob_free(&a[i]);
	for (int i = 0; i < nb; i++)
		prob_free(&b[i]);
	rxg_close(ca);
	rxg_close(cb);
	rxg_close(cc);
}
END_TEST

/* ---- deadlines ------------------------------------------------------------------------- */

START_TEST(test_deadline_expires)
{
	rxg_client *cb = lib_connect("sched-blocker"), *c = lib_connect("sched-deadline");
	struct prob blocker, soon, late;
	struct rxg_status *st;
	uint64_t expired_before, id = 0;
	int rc;

	st = lib_status(c);
	expired_before = st->jobs_expired;
	rxg_status_free(st);
	blocker_start(cb, &blocker);
	prob_make(&late, 33, 44, 55, 600);
	prob_submit_ok(c, &late, 0, 600000);
	prob_make(&soon, 30, 20, 10, 601);
	prob_submit_ok(c, &soon, 0, 50);
	/* The short deadline passes while the blocker runs: answered at once, unrun. */
	rc = rxg_wait_any(c, -1, &id, NULL);
	ck_assert_uint_eq(id, soon.id);
	ck_assert_msg(rc == RXG_ETIMEOUT, "%s: %s", rxg_strerror(rc), rxg_errmsg(c));
	ck_assert_msg(strstr(rxg_errmsg(c), "deadline"), "%s", rxg_errmsg(c));
	for (int64_t i = 0; i < soon.m * soon.n; i++)
		ck_assert(soon.c[i] == 0.0f); /* C untouched */
	blocker_end(cb, &blocker);
	wait_ok(c, &late, 0);
	st = lib_status(c);
	ck_assert_uint_eq(st->jobs_expired, expired_before + 1);
	rxg_status_free(st);
	prob_free(&soon);
	prob_free(&late);
	rxg_close(c);
	rxg_close(cb);
}
END_TEST

/* ---- cancellation ---------------------------------------------------------------------- */

START_TEST(test_cancel_queued)
{
	rxg_client *cb = lib_connect("sched-blocker"), *c = lib_connect("sched-cancel");
	struct prob blocker, x, y;
	enum rxg_cancel_outcome out;
	int rc;

	blocker_start(cb, &blocker);
	prob_make(&x, 70, 60, 50, 700);
	prob_submit_ok(c, &x, 0, 0);
	prob_make(&y, 50, 60, 70, 701);
	prob_submit_ok(c, &y, 0, 0);
	ck_assert_int_eq(rxg_cancel(c, x.id, &out), RXG_OK);
	ck_assert_int_eq(out, RXG_CANCEL_QUEUED);
	rc = rxg_wait(c, x.id, NULL);
	ck_assert_msg(rc == RXG_ECANCELLED, "%s: %s", rxg_strerror(rc), rxg_errmsg(c));
	/* A job that is not this handle's (or was waited for already) is no job to cancel. */
	ck_assert_int_eq(rxg_cancel(c, x.id, &out), RXG_EINVAL);
	ck_assert_int_eq(rxg_cancel(c, 12345, &out), RXG_EINVAL);
	blocker_end(cb, &blocker);
	wait_ok(c, &y, 0);
	prob_free(&x);
	prob_free(&y);
	rxg_close(c);
	rxg_close(cb);
}
END_TEST

/* A running job is held at a piece boundary, cancelled there and let go: it stops at that
 * boundary (its error says after how many of its pieces, fewer than all), no result comes,
 * and the device memory it held is back in the budget (the status figures return to what
 * they were before it). The connection and the daemon keep serving. */
START_TEST(test_cancel_running)
{
	rxg_client *c = lib_connect("sched-cancel-running");
	struct prob blocker, after;
	enum rxg_cancel_outcome out;
	struct rxg_status *st;
	uint64_t cancelled_before, reserved_before, in_use_before;
	unsigned long long ran = 0, pieces = 0;
	const char *msg;
	int rc;

	st = lib_status(c);
	cancelled_before = st->jobs_cancelled;
	reserved_before = st->vram_reserved_bytes;
	in_use_before = st->vram_in_use_bytes;
	rxg_status_free(st);

	hold_on();
	prob_make(&blocker, BIG, BIG, BLOCKER_K, 99);
	prob_submit_ok(c, &blocker, 0, 0);
	hold_wait_held();
	/* Held mid-job: it has device memory reserved and in buffers. */
	st = lib_status(c);
	ck_assert_uint_eq(st->jobs_queued, 1);
	ck_assert_uint_gt(st->vram_reserved_bytes, reserved_before);
	ck_assert_uint_gt(st->vram_in_use_bytes, in_use_before);
	rxg_status_free(st);

	ck_assert_int_eq(rxg_cancel(c, blocker.id, &out), RXG_OK);
	ck_assert_int_eq(out, RXG_CANCEL_RUNNING);
	hold_release();
	rc = rxg_wait(c, blocker.id, NULL);
	ck_assert_msg(rc == RXG_ECANCELLED, "%s: %s", rxg_strerror(rc), rxg_errmsg(c));
	msg = rxg_errmsg(c);
	fprintf(stderr, "cancel running: %s\n", msg);
	ck_assert_msg((msg = strstr(msg, "cancelled after ")) &&
			      sscanf(msg, "cancelled after %llu of its %llu pieces", &ran,
				     &pieces) == 2,
		      "%s", rxg_errmsg(c));
	ck_assert_msg(ran >= 1 && ran < pieces, "it ran %llu of %llu pieces", ran, pieces);
	/* No result: C is as it was sent. */
	for (int64_t i = 0; i < blocker.m * blocker.n; i += 4099)
		ck_assert(blocker.c[i] == 0.0f);

	st = lib_status(c);
	ck_assert_uint_eq(st->jobs_cancelled, cancelled_before + 1);
	ck_assert_uint_eq(st->jobs_queued, 0);
	ck_assert_uint_eq(st->vram_reserved_bytes, reserved_before);
	ck_assert_uint_eq(st->vram_in_use_bytes, in_use_before);
	rxg_status_free(st);

	prob_make(&after, 100, 90, 80, 800);
	prob_submit_ok(c, &after, 0, 0);
	wait_ok(c, &after, 0);
	prob_free(&blocker);
	prob_free(&after);
	rxg_close(c);
}
END_TEST

/* ---- a client process killed mid-job --------------------------------------------------- */

/* The child queues a blocker and three jobs behind it, says so, and waits to be killed. */
static void child_main(int fd)
{
	rxg_client *c = NULL;
	struct prob p[4];
	char ok = 1;

	if (rxg_connect(g_daemon.socket_path, "sched-victim", &c) != RXG_OK)
		_exit(2);
	prob_make(&p[0], BIG, BIG, BLOCKER_K, 900);
	for (int i = 1; i < 4; i++)
		prob_make(&p[i], 200, 200, 200, 900 + (uint64_t)i);
	for (int i = 0; i < 4; i++)
		if (prob_submit(c, &p[i], 0, 0) != RXG_OK)
			_exit(3);
	if (write(fd, &ok, 1) != 1)
		_exit(4);
	for (;;)
		pause();
}

START_TEST(test_sigkill_client)
{
	rxg_client *c = lib_connect("sched-survivor");
	struct prob p[4];
	struct rxg_status *st;
	int fds[2], status;
	char byte;
	pid_t pid;
	uint32_t clients_before;

	st = lib_status(c);
	clients_before = st->clients_connected;
	rxg_status_free(st);
	hold_on();
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(fds[0]);
		child_main(fds[1]);
	}
	close(fds[1]);
	ck_assert_int_eq(read(fds[0], &byte, 1), 1);
	close(fds[0]);
	/* Its blocker runs (held), its other jobs wait, ours queue up beside them. */
	hold_wait_held();
	wait_jobs(c, 4, 3);
	for (int i = 0; i < 4; i++) {
		prob_make(&p[i], 100 + 17 * i, 120 - 9 * i, 90 + 5 * i, 1000 + (uint64_t)i);
		prob_submit_ok(c, &p[i], 0, 0);
	}
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* Once the daemon has seen it go, its running blocker is cancelled: let it go. */
	for (int i = 0;; i++) {
		st = lib_status(c);
		int gone = st->clients_connected == clients_before;
		rxg_status_free(st);
		if (gone)
			break;
		ck_assert_msg(i < 1200, "the daemon never noticed the killed client");
		usleep(50000);
	}
	hold_release();
	for (int i = 0; i < 4; i++)
		wait_ok(c, &p[i], 0);
	/* The victim's connection, its queued jobs and its running one are gone. */
	for (int i = 0; i < 1200; i++) {
		st = lib_status(c);
		int gone = st->clients_connected == clients_before && st->jobs_queued == 0;
		rxg_status_free(st);
		if (gone)
			break;
		usleep(50000);
	}
	st = lib_status(c);
	ck_assert_uint_eq(st->clients_connected, clients_before);
	ck_assert_uint_eq(st->jobs_queued, 0);
	ck_assert_uint_eq(st->jobs_waiting, 0);
	rxg_status_free(st);
	ck_assert_msg(kill(g_daemon.pid, 0) == 0, "rxgemmd is gone");
	for (int i = 0; i < 4; i++) {
		memset(p[i].c, 0, (size_t)(p[i].m * p[i].n) * sizeof(float));
		prob_submit_ok(c, &p[i], (unsigned)i, 0);
	}
	for (int i = 3; i >= 0; i--)
		wait_ok(c, &p[i], 0);
	for (int i = 0; i < 4; i++)
		prob_free(&p[i]);
	rxg_close(c);
}
END_TEST

/* ---- the wire, by hand ------------------------------------------------------------------ */

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g_daemon.socket_path);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void raw_send(int fd, const Rxgemm__Request *req)
{
	size_t len = rxgemm__request__get_packed_size(req);
	uint8_t *buf = malloc(FRAME_HEADER_BYTES + len);

	ck_assert_ptr_nonnull(buf);
	frame_header_put(buf, (uint32_t)len);
	rxgemm__request__pack(req, buf + FRAME_HEADER_BYTES);
	ck_assert_int_eq(send(fd, buf, FRAME_HEADER_BYTES + len, MSG_NOSIGNAL),
			 (ssize_t)(FRAME_HEADER_BYTES + len));
	free(buf);
}

static void raw_read(int fd, uint8_t *p, size_t len)
{
	while (len > 0) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		ck_assert_msg(poll(&pfd, 1, 60000) == 1, "no reply within 60 s");
		n = recv(fd, p, len, 0);
		ck_assert_msg(n > 0, "the daemon closed the connection");
		p += n;
		len -= (size_t)n;
	}
}

static Rxgemm__Reply *raw_recv(int fd)
{
	uint8_t hdr[FRAME_HEADER_BYTES], *body;
	Rxgemm__Reply *rep;
	uint32_t len;

	raw_read(fd, hdr, sizeof(hdr));
	len = frame_header_get(hdr);
	body = malloc(len ? len : 1);
	ck_assert_ptr_nonnull(body);
	raw_read(fd, body, len);
	rep = rxgemm__reply__unpack(NULL, len, body);
	free(body);
	ck_assert_ptr_nonnull(rep);
	return rep;
}

static void raw_hello(int fd)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__Hello h = RXGEMM__HELLO__INIT;
	Rxgemm__Reply *rep;
	bool cancel = false;

	h.protocol_version = RXGEMM_PROTOCOL_VERSION;
	h.client_name = "sched-raw";
	req.request_id = 1;
	req.body_case = RXGEMM__REQUEST__BODY_HELLO;
	req.hello = &h;
	raw_send(fd, &req);
	rep = raw_recv(fd);
	ck_assert_int_eq(rep->status, RXGEMM__STATUS__STATUS_OK);
	ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_HELLO);
	for (size_t i = 0; i < rep->hello->n_capabilities; i++)
		cancel |= strcmp(rep->hello->capabilities[i], "cancel") == 0;
	ck_assert_msg(cancel, "Hello does not announce \"cancel\"");
	rxgemm__reply__free_unpacked(rep, NULL);
}

static int raw_cancel(int fd, uint64_t id, uint64_t target)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__CancelRequest cr = RXGEMM__CANCEL_REQUEST__INIT;
	Rxgemm__Reply *rep;
	int outcome;

	cr.target_request_id = target;
	req.request_id = id;
	req.body_case = RXGEMM__REQUEST__BODY_CANCEL;
	req.cancel = &cr;
	raw_send(fd, &req);
	rep = raw_recv(fd);
	ck_assert_uint_eq(rep->request_id, id);
	ck_assert_int_eq(rep->status, RXGEMM__STATUS__STATUS_OK);
	ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_CANCEL);
	outcome = rep->cancel->outcome;
	rxgemm__reply__free_unpacked(rep, NULL);
	return outcome;
}

/* Cancel on the wire: an unknown id is NOT_FOUND, and so is another connection's job (ids
 * are per connection): that job runs. A deadline too far to represent means none. */
START_TEST(test_raw_cancel)
{
	rxg_client *c = lib_connect("sched-owner");
	struct prob blocker, x;
	int fd = raw_connect();

	raw_hello(fd);
	ck_assert_int_eq(raw_cancel(fd, 2, 99), RXGEMM__CANCEL_OUTCOME__CANCEL_NOT_FOUND);
	blocker_start(c, &blocker);
	prob_make(&x, 40, 30, 20, 1400);
	prob_submit_ok(c, &x, 0, 0);
	ck_assert_int_eq(raw_cancel(fd, 3, x.id), RXGEMM__CANCEL_OUTCOME__CANCEL_NOT_FOUND);
	ck_assert_int_eq(raw_cancel(fd, 4, blocker.id), RXGEMM__CANCEL_OUTCOME__CANCEL_NOT_FOUND);
	blocker_end(c, &blocker);
	{
		Rxgemm__Request req = RXGEMM__REQUEST__INIT;
		Rxgemm__GemmRequest g = RXGEMM__GEMM_REQUEST__INIT;
		float a[4] = { 1, 2, 3, 4 }, b[4] = { 5, 6, 7, 8 }, want[4] = { 19, 22, 43, 50 };
		Rxgemm__Reply *rep;

		g.m = g.n = g.k = 2;
		g.alpha = 1.0f;
		g.layout = RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR;
		g.a.data = (uint8_t *)a;
		g.a.len = sizeof(a);
		g.b.data = (uint8_t *)b;
		g.b.len = sizeof(b);
		g.priority = 3;
		g.deadline_ms = UINT64_MAX;
		req.request_id = 5;
		req.body_case = RXGEMM__REQUEST__BODY_GEMM;
		req.gemm = &g;
		raw_send(fd, &req);
		rep = raw_recv(fd);
		ck_assert_uint_eq(rep->request_id, 5);
		ck_assert_msg(rep->status == RXGEMM__STATUS__STATUS_OK, "%s", rep->error);
		ck_assert_uint_eq(rep->gemm->c.len, sizeof(want));
		ck_assert(memcmp(rep->gemm->c.data, want, sizeof(want)) == 0);
		rxgemm__reply__free_unpacked(rep, NULL);
	}
	ck_assert_int_eq(raw_cancel(fd, 6, 5), RXGEMM__CANCEL_OUTCOME__CANCEL_NOT_FOUND);
	close(fd);
	wait_ok(c, &x, 0);
	prob_free(&x);
	rxg_close(c);
}
END_TEST

/* ---- the asynchronous API itself -------------------------------------------------------- */

/* Many jobs in flight on one handle, collected through rxg_fd and rxg_wait_any as an event
 * loop would; a wait for an unknown id, and for nothing, fails cleanly. */
START_TEST(test_async_event_loop)
{
	enum { N = 6 };
	rxg_client *c = lib_connect("sched-async");
	struct prob p[N];
	int done[N] = { 0 }, left = N;
	uint64_t id = 1;

	for (int i = 0; i < N; i++) {
		prob_make(&p[i], 30 + 11 * i, 70 - 5 * i, 20 + 3 * i, 1100 + (uint64_t)i);
		prob_submit_ok(c, &p[i], (unsigned)(i % 4), 0);
	}
	ck_assert_int_ge(rxg_fd(c), 0);
	while (left > 0) {
		int rc = rxg_wait_any(c, 0, &id, NULL);

		if (rc == RXG_EAGAIN) {
			/* Nothing held: sleep on the descriptor (at most 60 s). */
			struct pollfd pfd = { .fd = rxg_fd(c), .events = POLLIN };

			ck_assert_uint_eq(id, 0);
			ck_assert_int_eq(poll(&pfd, 1, 60000), 1);
			continue;
		}
		ck_assert_msg(rc == RXG_OK, "%s: %s", rxg_strerror(rc), rxg_errmsg(c));
		for (int i = 0; i < N; i++)
			if (p[i].id == id) {
				ck_assert(!done[i]);
				done[i] = 1;
				prob_verify(&p[i], 0);
				left--;
			}
	}
	ck_assert_int_eq(rxg_wait_any(c, 0, &id, NULL), RXG_EINVAL);
	ck_assert_uint_eq(id, 0);
	ck_assert_int_eq(rxg_wait(c, p[0].id, NULL), RXG_EINVAL);
	for (int i = 0; i < N; i++)
		prob_free(&p[i]);
	rxg_close(c);
}
END_TEST

/* Several threads share one handle: some run blocking GEMMs, one submits and collects with
 * rxg_wait_any, one asks for the status; every reply must reach the thread that waits for
 * it. */
struct share_arg {
	rxg_client *c;
	int index;
	int failures;
};

static void *share_gemms(void *p)
{
	struct share_arg *a = p;

	for (int r = 0; r < 3; r++) {
		struct prob q;
		struct rxg_gemm_args args;
		float *want;

		prob_make(&q, 20 + 7 * a->index + r, 30 + 5 * r, 10 + a->index,
			  1200 + 10 * (uint64_t)a->index + (uint64_t)r);
		args = (struct rxg_gemm_args){ .layout = RXG_ROW_MAJOR, .m = q.m, .n = q.n,
					       .k = q.k, .alpha = 1.0f, .a = q.a, .b = q.b,
					       .c = q.c };
		want = calloc((size_t)(q.m * q.n), sizeof(float));
		refgemm(1, 0, 0, q.m, q.n, q.k, 1.0f, q.a, q.k, q.b, q.n, 0.0f, want, q.n);
		if (rxg_gemm(a->c, &args, NULL) != RXG_OK ||
		    refgemm_compare(1, q.m, q.n, q.k, q.c, want, q.n, NULL, NULL, NULL) != 0)
			a->failures++;
		free(want);
		prob_free(&q);
	}
	return NULL;
}

/* Submits its jobs and collects them with rxg_wait_any while the others run rxg_gemm on
 * the same handle: it must get its own jobs and only them. */
static void *share_async(void *p)
{
	struct share_arg *a = p;
	struct prob q[3];
	int got = 0;

	for (int r = 0; r < 3; r++) {
		prob_make(&q[r], 25 + r, 35, 15 + r, 1300 + (uint64_t)r);
		if (prob_submit(a->c, &q[r], 0, 0) != RXG_OK)
			a->failures++;
	}
	while (got < 3) {
		uint64_t id = 0;
		int rc = rxg_wait_any(a->c, -1, &id, NULL), mine = 0;

		if (rc != RXG_OK) {
			a->failures++;
			break;
		}
		for (int r = 0; r < 3; r++)
			if (q[r].id == id) {
				struct prob *x = &q[r];
				float *want = calloc((size_t)(x->m * x->n), sizeof(float));

				refgemm(1, 0, 0, x->m, x->n, x->k, 1.0f, x->a, x->k, x->b, x->n,
					0.0f, want, x->n);
				if (refgemm_compare(1, x->m, x->n, x->k, x->c, want, x->n, NULL,
						    NULL, NULL))
					a->failures++;
				free(want);
				mine = 1;
			}
		if (!mine)
			a->failures++;
		got++;
	}
	for (int r = 0; r < 3; r++)
		prob_free(&q[r]);
	return NULL;
}

static void *share_status(void *p)
{
	struct share_arg *a = p;

	for (int r = 0; r < 10; r++) {
		struct rxg_status *st = NULL;

		if (rxg_status(a->c, &st) != RXG_OK)
			a->failures++;
		rxg_status_free(st);
	}
	return NULL;
}

START_TEST(test_shared_handle_threads)
{
	enum { T = 6 };
	rxg_client *c = lib_connect("sched-shared");
	struct share_arg args[T];
	pthread_t th[T];

	for (int i = 0; i < T; i++) {
		args[i] = (struct share_arg){ .c = c, .index = i };
		ck_assert_int_eq(pthread_create(&th[i], NULL,
						i == T - 1   ? share_status
						: i == T - 2 ? share_async
							     : share_gemms,
						&args[i]),
				 0);
	}
	for (int i = 0; i < T; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(args[i].failures == 0, "thread %d: %d failures (%s)", i,
			      args[i].failures, rxg_errmsg(c));
	}
	rxg_close(c);
}
END_TEST

/* The daemon's CPU time so far, in seconds (its /proc stat: utime and stime). */
static double daemon_cpu_s(void)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)g_daemon.pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
	fclose(f);
	p = strrchr(buf, ')'); /* after the command's name, which may hold spaces */
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
				&ut, &st), 2);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Busy polling is on where it should be (--busy-poll, else auto: off on a device that works
 * on host memory, a CPU's), jobs handed to and fro in quick succession come back right,
 * and once they stop the daemon stops polling: idle, it spends under half a CPU (a thread
 * still polling spends all of one). */
START_TEST(test_busy_poll)
{
	bool asked = g_args[6] != NULL;
	struct prob p[8];
	rxg_client *c = lib_connect("busy-poll");
	char log[65536];
	size_t got;
	FILE *f = fopen(g_daemon.log_path, "r");
	double cpu0, cpu1, wall;
	struct timespec t0, t1, nap = { 0, 200000000 };

	ck_assert_ptr_nonnull(f);
	got = fread(log, 1, sizeof(log) - 1, f);
	fclose(f);
	log[got] = '\0';
	if (asked || !strstr(log, ", host memory")) {
		ck_assert_msg(strstr(log, "busy polling for 1000 us") != NULL,
			      "no busy polling in the log:\n%s", log);
		ck_assert_uint_eq(rxg_server_info(c)->busy_poll_us, 1000);
	} else {
		ck_assert_msg(strstr(log, "busy polling") == NULL,
			      "busy polling on a device on host memory:\n%s", log);
		ck_assert_uint_eq(rxg_server_info(c)->busy_poll_us, 0);
	}
	/* One after the other (each waited for), and then all at once. */
	for (int i = 0; i < 8; i++) {
		prob_make(&p[i], 8 + i * 5, 16 + i * 3, 24 + i, 0x6b0u + (uint64_t)i);
		prob_submit_ok(c, &p[i], 0, 0);
		wait_ok(c, &p[i], 0);
		memset(p[i].c, 0, (size_t)(p[i].m * p[i].n) * sizeof(float));
	}
	for (int i = 0; i < 8; i++)
		prob_submit_ok(c, &p[i], 0, 0);
	for (int i = 7; i >= 0; i--) {
		wait_ok(c, &p[i], 0);
		prob_free(&p[i]);
	}
	rxg_close(c);
	nanosleep(&nap, NULL); /* past any poll's end (1 ms) */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cpu0 = daemon_cpu_s();
	nap.tv_sec = 1;
	nap.tv_nsec = 500000000;
	nanosleep(&nap, NULL);
	cpu1 = daemon_cpu_s();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	ck_assert_msg(cpu1 - cpu0 < 0.5 * wall, "the idle daemon spent %.2f s of CPU in %.2f s",
		      cpu1 - cpu0, wall);
}
END_TEST

static Suite *sched_daemon_suite(void)
{
	Suite *s = suite_create("sched-daemon");

	for (int polling = 0; polling < 2; polling++) {
		TCase *tc = tcase_create(polling ? "busy-poll" : "daemon");

		tcase_add_unchecked_fixture(tc, polling ? daemon_up_polling : daemon_up,
					    daemon_down);
		tcase_add_checked_fixture(tc, test_setup, test_teardown);
		tcase_set_timeout(tc, 120);
		tcase_add_test(tc, test_async_event_loop);
		tcase_add_test(tc, test_shared_handle_threads);
		tcase_add_test(tc, test_fair_small_not_last);
		tcase_add_test(tc, test_priority_first);
		tcase_add_test(tc, test_busy_bounds);
		tcase_add_test(tc, test_deadline_expires);
		tcase_add_test(tc, test_cancel_queued);
		tcase_add_test(tc, test_cancel_running);
		tcase_add_test(tc, test_sigkill_client);
		tcase_add_test(tc, test_raw_cancel);
		tcase_add_test(tc, test_busy_poll);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	/* The blocker is a GEMM of host arrays that the daemon runs in pieces, held at a piece
	 * boundary: librxgemm must send them inline, not stage them through shared memory,
	 * which the daemon on a CPU device would run in place, whole. */
	setenv("RXGEMM_STAGE_BYTES", "off", 1);
	sr = srunner_create(sched_daemon_suite());

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed || g_daemon_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

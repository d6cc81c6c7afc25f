/* test-stats.c: the sharing statistics of rxgemm status (StatusReply fields 50-56) from a
 * real rxgemmd, through librxgemm: per-client counters against what each client submitted
 * and was told (2 m n k summed, the timings of its replies summed), the departed total,
 * the kernel variants against the daemon's job counters, and the device busy figures
 * against the jobs' own timings and the wall clock.
 *
 * One daemon for the "daemon" TCase (an unchecked fixture); its tests run one after
 * another (each in its own forked process) and only compare before/after figures or their
 * own clients' rows, so jobs of earlier tests do not disturb later ones. The "buckets"
 * TCase drives stats.c directly with made-up jobs and instants: the busy windows exactly. */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon-run.h"
#include "frame.h"
#include "rxgemm.h"
#include "rxgemm.pb-c.h"
#include "wire.h"

static struct daemon_run g_daemon;
static int g_teardown_failed;

static void daemon_up(void)
{
	int rc = daemon_run_start(&g_daemon, NULL);
	if (rc == DAEMON_RUN_SKIP) {
		daemon_run_cleanup(&g_daemon);
		exit(DAEMON_RUN_SKIP);
	}
	if (rc != 0) {
		fprintf(stderr, "test-stats: cannot start rxgemmd\n");
		daemon_run_cleanup(&g_daemon);
		exit(EXIT_FAILURE);
	}
}

static void daemon_down(void)
{
	int st = daemon_run_stop(&g_daemon, SIGTERM, 60);
	if (st != 0) {
		fprintf(stderr, "test-stats: rxgemmd exited with %d after SIGTERM (want 0)\n", st);
		daemon_run_dump_log(&g_daemon);
		g_teardown_failed = 1;
	}
	daemon_run_cleanup(&g_daemon);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static rxg_client *connect_as(const char *name)
{
	rxg_client *c = NULL;
	int rc = rxg_connect(g_daemon.socket_path, name, &c);

	ck_assert_msg(rc == RXG_OK, "rxg_connect: %s: %s", rxg_strerror(rc), rxg_errmsg(NULL));
	return c;
}

static struct rxg_status *status_of(rxg_client *c)
{
	struct rxg_status *st = NULL;
	int rc = rxg_status(c, &st);

	ck_assert_msg(rc == RXG_OK, "rxg_status: %s: %s", rxg_strerror(rc), rxg_errmsg(c));
	return st;
}

static const struct rxg_client_stats *client_row(const struct rxg_status *st, uint32_t id)
{
	for (size_t i = 0; i < st->n_clients; i++)
		if (st->clients[i].client_id == id)
			return &st->clients[i];
	return NULL;
}

/* What a client was told about its jobs, to compare with the daemon's sums. */
struct told {
	uint64_t jobs, flops, bytes_out;
	struct rxg_timings t;
};

/* One m x n x k job of ones (so C = k everywhere: checked), row-major, beta 0. */
static void job(rxg_client *c, int64_t m, int64_t n, int64_t k, int trans_a, struct told *told)
{
	float *a = malloc(sizeof(float) * (size_t)(m * k));
	float *b = malloc(sizeof(float) * (size_t)(k * n));
	float *cc = malloc(sizeof(float) * (size_t)(m * n));
	struct rxg_gemm_args g = { .layout = RXG_ROW_MAJOR, .trans_a = trans_a, .m = m, .n = n,
				   .k = k, .alpha = 1.0f, .a = a, .b = b, .c = cc };
	struct rxg_timings t;
	int rc;

	ck_assert(a && b && cc);
	for (int64_t i = 0; i < m * k; i++)
		a[i] = 1.0f;
	for (int64_t i = 0; i < k * n; i++)
		b[i] = 1.0f;
	rc = rxg_gemm(c, &g, &t);
	ck_assert_msg(rc == RXG_OK, "rxg_gemm %" PRId64 "x%" PRId64 "x%" PRId64 ": %s: %s", m, n,
		      k, rxg_strerror(rc), rxg_errmsg(c));
	for (int64_t i = 0; i < m * n; i++)
		ck_assert_msg(cc[i] == (float)k, "C[%" PRId64 "] = %g, want %" PRId64, i,
			      (double)cc[i], k);
	told->jobs++;
	told->flops += 2ull * (uint64_t)m * (uint64_t)n * (uint64_t)k;
	told->bytes_out += (uint64_t)(m * n) * sizeof(float);
	told->t.queued_ns += t.queued_ns;
	told->t.h2d_ns += t.h2d_ns;
	told->t.kernel_ns += t.kernel_ns;
	told->t.d2h_ns += t.d2h_ns;
	told->t.total_ns += t.total_ns;
	free(a);
	free(b);
	free(cc);
}

static void assert_row_matches(const struct rxg_client_stats *row, const char *name,
			       const struct told *told, uint64_t min_bytes_in)
{
	ck_assert_str_eq(row->name, name);
	ck_assert_msg(row->uid == (int64_t)getuid(), "%s: uid %" PRId64 ", want %ld", name,
		      row->uid, (long)getuid());
	ck_assert_msg(row->pid == (int64_t)getpid(), "%s: pid %" PRId64 ", want %ld", name,
		      row->pid, (long)getpid());
	ck_assert_uint_eq(row->jobs_ok, told->jobs);
	ck_assert_uint_eq(row->jobs_failed, 0);
	ck_assert_uint_eq(row->jobs_in_flight, 0);
	ck_assert_uint_eq(row->flops, told->flops);
	ck_assert_uint_eq(row->bytes_out, told->bytes_out);
	ck_assert_uint_ge(row->bytes_in, min_bytes_in);
	/* The daemon sums exactly what it put in each reply. */
	ck_assert_uint_eq(row->timings.queued_ns, told->t.queued_ns);
	ck_assert_uint_eq(row->timings.h2d_ns, told->t.h2d_ns);
	ck_assert_uint_eq(row->timings.kernel_ns, told->t.kernel_ns);
	ck_assert_uint_eq(row->timings.d2h_ns, told->t.d2h_ns);
	ck_assert_uint_eq(row->timings.total_ns, told->t.total_ns);
}

static uint64_t sum_clients(const struct rxg_status *st, size_t field_offset)
{
	uint64_t s = *(const uint64_t *)((const char *)&st->departed + field_offset);

	for (size_t i = 0; i < st->n_clients; i++)
		s += *(const uint64_t *)((const char *)&st->clients[i] + field_offset);
	return s;
}

/* The daemon-wide invariants every status must keep. */
static void assert_consistent(const struct rxg_status *st)
{
	uint64_t vjobs = 0, vflops = 0;

	for (size_t i = 0; i < st->n_kernel_stats; i++) {
		ck_assert_msg(st->kernel_stats[i].kernel[0], "a kernel variant without a name");
		vjobs += st->kernel_stats[i].jobs;
		vflops += st->kernel_stats[i].flops;
	}
	ck_assert_uint_eq(vjobs, st->jobs_ok);
	ck_assert_uint_eq(vflops, st->flops_total);
	ck_assert_uint_eq(sum_clients(st, offsetof(struct rxg_client_stats, jobs_ok)), st->jobs_ok);
	ck_assert_uint_eq(sum_clients(st, offsetof(struct rxg_client_stats, jobs_failed)),
			  st->jobs_failed);
	ck_assert_uint_eq(sum_clients(st, offsetof(struct rxg_client_stats, flops)),
			  st->flops_total);
	ck_assert_uint_eq(sum_clients(st, offsetof(struct rxg_client_stats, requests_rejected)),
			  st->requests_rejected);
	ck_assert_uint_eq(st->n_clients, st->clients_connected);
	ck_assert_uint_eq(st->departed.client_id, 0);
	ck_assert_int_eq(st->departed.uid, -1);
	ck_assert_uint_le(st->device_busy_ns, st->uptime_ns);
	ck_assert_uint_le(st->device_recent_busy_ns, st->device_recent_window_ns);
	ck_assert_uint_le(st->device_recent_window_ns, 5500000000ull + 1);
	ck_assert_uint_le(st->device_recent_window_ns, st->uptime_ns);
	ck_assert_msg(st->device_utilisation >= 0.0 && st->device_utilisation <= 1.0,
		      "utilisation %g", st->device_utilisation);
	ck_assert_msg(st->device_utilisation_recent >= 0.0 && st->device_utilisation_recent <= 1.0,
		      "recent utilisation %g", st->device_utilisation_recent);
}

/* A request the library would never send, so that the daemon rejects it: a status request
 * before Hello, on a raw connection. Returns once the error reply has come. */
static void rejected_request(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__StatusRequest msg = RXGEMM__STATUS_REQUEST__INIT;
	uint8_t buf[64], hdr[FRAME_HEADER_BYTES];
	size_t len, have = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g_daemon.socket_path);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect: %s",
		      strerror(errno));
	req.request_id = 5;
	req.body_case = RXGEMM__REQUEST__BODY_STATUS;
	req.status = &msg;
	len = rxgemm__request__get_packed_size(&req);
	ck_assert_uint_le(len + FRAME_HEADER_BYTES, sizeof(buf));
	frame_header_put(buf, (uint32_t)len);
	rxgemm__request__pack(&req, buf + FRAME_HEADER_BYTES);
	ck_assert_int_eq(send(fd, buf, len + FRAME_HEADER_BYTES, MSG_NOSIGNAL),
			 (ssize_t)(len + FRAME_HEADER_BYTES));
	while (have < FRAME_HEADER_BYTES) {
		ssize_t n = recv(fd, hdr + have, FRAME_HEADER_BYTES - have, 0);
		ck_assert_msg(n > 0, "no error reply to a request before Hello");
		have += (size_t)n;
	}
	/* The reply (an error) is counted before it is sent; its body does not matter. */
	close(fd);
}

START_TEST(test_two_clients)
{
	rxg_client *one = connect_as("stats-one"), *two = connect_as("stats-two");
	rxg_client *obs = connect_as("stats-observer");
	uint32_t id_one = rxg_server_info(one)->client_id, id_two = rxg_server_info(two)->client_id;
	struct told told_one = { 0 }, told_two = { 0 };
	struct rxg_status *s0 = status_of(obs), *s1, *s2;
	const struct rxg_client_stats *r1, *r2;
	uint64_t in_one = 0, in_two = 0;

	assert_consistent(s0);
	/* Two clients, interleaved, different shapes and kernels (a transposed A). */
	for (int i = 0; i < 3; i++) {
		job(one, 64, 32, 16 + i, 0, &told_one);
		in_one += (uint64_t)(64 * (16 + i) + (16 + i) * 32) * sizeof(float);
		job(two, 33, 65, 17, 1, &told_two);
		in_two += (uint64_t)(33 * 17 + 17 * 65) * sizeof(float);
	}
	job(one, 200, 100, 50, 0, &told_one);
	in_one += (uint64_t)(200 * 50 + 50 * 100) * sizeof(float);

	s1 = status_of(obs);
	assert_consistent(s1);
	r1 = client_row(s1, id_one);
	r2 = client_row(s1, id_two);
	ck_assert_msg(r1 && r2, "status lists clients %u and %u? %s %s", id_one, id_two,
		      r1 ? "yes" : "no", r2 ? "yes" : "no");
	assert_row_matches(r1, "stats-one", &told_one, in_one);
	assert_row_matches(r2, "stats-two", &told_two, in_two);
	ck_assert_uint_eq(s1->jobs_ok, s0->jobs_ok + told_one.jobs + told_two.jobs);
	ck_assert_uint_eq(s1->flops_total, s0->flops_total + told_one.flops + told_two.flops);
	/* The observer is listed too, with nothing done; the oldest client comes first. */
	const struct rxg_client_stats *ro = client_row(s1, rxg_server_info(obs)->client_id);
	ck_assert_ptr_nonnull(ro);
	ck_assert_uint_eq(ro->jobs_ok, 0);
	for (size_t i = 1; i < s1->n_clients; i++)
		ck_assert_uint_lt(s1->clients[i - 1].client_id, s1->clients[i].client_id);
	/* Busy at least for the kernels' time; a job running now only adds to it. */
	ck_assert_uint_ge(s1->device_busy_ns - s0->device_busy_ns,
			  told_one.t.kernel_ns + told_two.t.kernel_ns);

	/* One leaves: its row goes, its totals move into departed. */
	rxg_close(one);
	for (int tries = 0;; tries++) {
		s2 = status_of(obs);
		if (!client_row(s2, id_one) || tries == 200)
			break;
		rxg_status_free(s2);
		usleep(10000); /* the daemon sees the close a moment later */
	}
	ck_assert_msg(!client_row(s2, id_one), "client %u still listed after it closed", id_one);
	assert_consistent(s2);
	ck_assert_uint_eq(s2->departed.jobs_ok, s1->departed.jobs_ok + told_one.jobs);
	ck_assert_uint_eq(s2->departed.flops, s1->departed.flops + told_one.flops);
	ck_assert_uint_eq(s2->departed.timings.kernel_ns,
			  s1->departed.timings.kernel_ns + told_one.t.kernel_ns);
	ck_assert_uint_eq(s2->departed.bytes_out, s1->departed.bytes_out + told_one.bytes_out);
	ck_assert_ptr_nonnull(client_row(s2, id_two));
	rxg_status_free(s0);
	rxg_status_free(s1);
	rxg_status_free(s2);
	rxg_close(two);
	rxg_close(obs);
}
END_TEST

START_TEST(test_rejected_counts)
{
	rxg_client *obs = connect_as("stats-observer");
	struct rxg_status *s0 = status_of(obs), *s1;

	rejected_request();
	for (int tries = 0;; tries++) {
		s1 = status_of(obs);
		if (s1->departed.requests_rejected > s0->departed.requests_rejected || tries == 200)
			break;
		rxg_status_free(s1);
		usleep(10000);
	}
	/* The raw connection is closed by now: its rejection is in the departed total. */
	ck_assert_uint_eq(s1->requests_rejected, s0->requests_rejected + 1);
	ck_assert_uint_eq(s1->departed.requests_rejected, s0->departed.requests_rejected + 1);
	assert_consistent(s1);
	rxg_status_free(s0);
	rxg_status_free(s1);
	rxg_close(obs);
}
END_TEST

/* Per-variant sums: a job's kernel, flops and timings land in exactly one variant. */
START_TEST(test_variants)
{
	rxg_client *c = connect_as("stats-variants"), *obs = connect_as("stats-observer");
	struct rxg_status *s0 = status_of(obs), *s1;
	struct told told = { 0 };
	uint64_t before_jobs = 0, after_jobs = 0, before_kns = 0, after_kns = 0;

	job(c, 96, 96, 96, 0, &told);
	job(c, 5, 7, 3, 0, &told);
	s1 = status_of(obs);
	assert_consistent(s1);
	for (size_t i = 0; i < s0->n_kernel_stats; i++) {
		before_jobs += s0->kernel_stats[i].jobs;
		before_kns += s0->kernel_stats[i].timings.kernel_ns;
	}
	for (size_t i = 0; i < s1->n_kernel_stats; i++) {
		after_jobs += s1->kernel_stats[i].jobs;
		after_kns += s1->kernel_stats[i].timings.kernel_ns;
		ck_assert_uint_ge(s1->kernel_stats[i].jobs, 1);
	}
	ck_assert_uint_eq(after_jobs - before_jobs, 2);
	ck_assert_uint_eq(after_kns - before_kns, told.t.kernel_ns);
	rxg_status_free(s0);
	rxg_status_free(s1);
	rxg_close(c);
	rxg_close(obs);
}
END_TEST

struct bg_job {
	rxg_client *c;
	int64_t n;
	atomic_int done;
	struct told told;
};

static void *bg_run(void *arg)
{
	struct bg_job *b = arg;

	job(b->c, b->n, b->n, b->n, 0, &b->told);
	atomic_store(&b->done, 1);
	return NULL;
}

/* While a long job runs, another client sees it: in flight for its client, the device
 * busy now, and busy time growing with the wall clock. */
START_TEST(test_busy_while_running)
{
	rxg_client *obs = connect_as("stats-observer");
	int seen = 0;

	for (int attempt = 0; attempt < 3 && !seen; attempt++) {
		struct bg_job b = { .c = connect_as("stats-busy"), .n = 1024 << (attempt > 1) };
		uint32_t id = rxg_server_info(b.c)->client_id;
		pthread_t th;

		ck_assert_int_eq(pthread_create(&th, NULL, bg_run, &b), 0);
		while (!atomic_load(&b.done) && !seen) {
			struct rxg_status *st = status_of(obs);
			const struct rxg_client_stats *row = client_row(st, id);

			assert_consistent(st);
			if (!atomic_load(&b.done) && st->device_current_job_ns > 0 && row &&
			    row->jobs_in_flight == 1) {
				ck_assert_uint_ge(st->device_busy_ns, st->device_current_job_ns);
				seen = 1;
			}
			rxg_status_free(st);
		}
		pthread_join(th, NULL);
		rxg_close(b.c);
	}
	ck_assert_msg(seen, "never saw a running job in the status (jobs too fast?)");

	/* Idle: busy time stays, the recent figure can only fall, uptime follows the wall clock. */
	uint64_t t0 = mono_ns(); /* the daemon's clock is CLOCK_MONOTONIC too */
	struct rxg_status *a = status_of(obs);
	usleep(300000);
	struct rxg_status *b = status_of(obs);
	ck_assert_uint_ge(b->uptime_ns - a->uptime_ns, 300000000ull);
	ck_assert_uint_le(b->uptime_ns - a->uptime_ns, mono_ns() - t0);
	ck_assert_uint_eq(b->device_current_job_ns, 0);
	ck_assert_uint_eq(b->device_busy_ns, a->device_busy_ns);
	ck_assert_uint_le(b->device_recent_busy_ns, a->device_recent_busy_ns);
	rxg_status_free(a);
	rxg_status_free(b);
	rxg_close(obs);
}
END_TEST

/* ---- stats.c on its own: made-up jobs at chosen instants ------------------------------- */

#define SEC 1000000000ull
#define MS 1000000ull

static void busy_job(struct rxd_stats *st, uint64_t from_ns, uint64_t to_ns)
{
	struct rxd_job j;

	memset(&j, 0, sizeof(j));
	j.started_ns = st->started_ns + from_ns;
	j.finished_ns = st->started_ns + to_ns;
	stats_job_busy(st, &j);
}

/* The sharing figures as a status at uptime_ns would give them. */
static void sharing_at(struct rxd_server *srv, uint64_t uptime_ns, Rxgemm__StatusReply *out)
{
	rxgemm__status_reply__init(out);
	out->uptime_ns = uptime_ns;
	ck_assert_int_eq(wire_status_sharing(srv, out), 0);
}

START_TEST(test_busy_buckets)
{
	static struct rxd_server srv; /* large (connections hold buffers): not on the stack */
	Rxgemm__StatusReply r;

	memset(&srv, 0, sizeof(srv));
	stats_init(&srv.stats);
	srv.stats.started_ns = 1000 * SEC; /* any origin: only differences count */

	/* 0.2 .. 0.7 s: across the first two half-second buckets. */
	busy_job(&srv.stats, 200 * MS, 700 * MS);
	sharing_at(&srv, 1 * SEC, &r);
	ck_assert_uint_eq(r.device_busy_ns, 500 * MS);
	ck_assert_uint_eq(r.device_recent_window_ns, 1 * SEC); /* from the start */
	ck_assert_uint_eq(r.device_recent_busy_ns, 500 * MS);
	ck_assert_uint_eq(r.device_current_job_ns, 0);
	wire_status_free(&r);

	/* A job at 2.0 .. 2.1 s; at 8.2 s the window is 3.0 .. 8.2 s (buckets 6 to 16): both
	 * jobs are before it, and their buckets' slots were reused by nobody. */
	busy_job(&srv.stats, 2 * SEC, 2100 * MS);
	sharing_at(&srv, 8200 * MS, &r);
	ck_assert_uint_eq(r.device_busy_ns, 600 * MS);
	ck_assert_uint_eq(r.device_recent_window_ns, 5200 * MS);
	ck_assert_uint_eq(r.device_recent_busy_ns, 0);
	wire_status_free(&r);

	/* 8.3 .. 20.3 s: longer than the 16 buckets kept. At 20.5 s the window is 15.5 .. 20.5
	 * s, busy up to 20.3 s; the buckets of 2.0 s and 8.3 s are overwritten, not added. */
	busy_job(&srv.stats, 8300 * MS, 20300 * MS);
	sharing_at(&srv, 20500 * MS, &r);
	ck_assert_uint_eq(r.device_busy_ns, 12600 * MS);
	ck_assert_uint_eq(r.device_recent_window_ns, 5000 * MS);
	ck_assert_uint_eq(r.device_recent_busy_ns, 4800 * MS);
	wire_status_free(&r);

	/* Within one bucket, at its very end, and an empty interval. */
	busy_job(&srv.stats, 21 * SEC, 21 * SEC + 1);
	busy_job(&srv.stats, 21499 * MS, 21500 * MS);
	busy_job(&srv.stats, 22 * SEC, 22 * SEC);
	sharing_at(&srv, 22 * SEC, &r);
	ck_assert_uint_eq(r.device_busy_ns, 12600 * MS + 1 + 1 * MS);
	ck_assert_uint_eq(r.device_recent_window_ns, 5000 * MS); /* from 17.0 s */
	ck_assert_uint_eq(r.device_recent_busy_ns, 3300 * MS + 1 + 1 * MS);
	wire_status_free(&r);

	/* Long idle: nothing recent, the total stays. */
	sharing_at(&srv, 100 * SEC, &r);
	ck_assert_uint_eq(r.device_busy_ns, 12600 * MS + 1 + 1 * MS);
	ck_assert_uint_eq(r.device_recent_busy_ns, 0);
	ck_assert_uint_eq(r.device_recent_window_ns, 5000 * MS);
	wire_status_free(&r);
}
END_TEST

/* Connections listed oldest first; a closing one's counters move to departed. */
START_TEST(test_clients_fold)
{
	static struct rxd_server srv;
	static struct rxd_conn a, b;
	Rxgemm__StatusReply r;

	memset(&srv, 0, sizeof(srv));
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	stats_init(&srv.stats);
	a.id = 7;
	snprintf(a.name, sizeof(a.name), "older");
	a.peer_uid = 1000;
	a.peer_pid = 42;
	a.stats.jobs_ok = 3;
	a.stats.flops = 300;
	a.stats.kernel_ns = 30;
	b.id = 9;
	b.peer_uid = b.peer_pid = -1;
	b.stats.jobs_failed = 1;
	b.stats.requests_rejected = 2;
	b.jobs_in_flight = 4;
	/* The server's list is newest first. */
	srv.conns = &b;
	b.next = &a;
	a.prev = &b;
	srv.stats.clients_connected = 2;
	sharing_at(&srv, 1 * SEC, &r);
	ck_assert_uint_eq(r.n_clients, 2);
	ck_assert_uint_eq(r.clients[0]->client_id, 7);
	ck_assert_str_eq(r.clients[0]->name, "older");
	ck_assert_int_eq(r.clients[0]->uid, 1000);
	ck_assert_int_eq(r.clients[0]->pid, 42);
	ck_assert_uint_eq(r.clients[0]->jobs_ok, 3);
	ck_assert_uint_eq(r.clients[0]->flops, 300);
	ck_assert_uint_eq(r.clients[0]->timings->kernel_ns, 30);
	ck_assert_uint_eq(r.clients[1]->client_id, 9);
	ck_assert_str_eq(r.clients[1]->name, "");
	ck_assert_int_eq(r.clients[1]->uid, -1);
	ck_assert_uint_eq(r.clients[1]->jobs_in_flight, 4);
	ck_assert_uint_eq(r.clients[1]->requests_rejected, 2);
	ck_assert_uint_eq(r.departed_clients->jobs_ok, 0);
	ck_assert_uint_eq(r.n_kernel_stats, 0);
	wire_status_free(&r);

	/* a leaves (server.c unlinks it and calls stats_client_closed). */
	stats_client_closed(&srv.stats, &a);
	b.next = NULL;
	sharing_at(&srv, 2 * SEC, &r);
	ck_assert_uint_eq(srv.stats.clients_connected, 1);
	ck_assert_uint_eq(r.n_clients, 1);
	ck_assert_uint_eq(r.clients[0]->client_id, 9);
	ck_assert_uint_eq(r.departed_clients->client_id, 0);
	ck_assert_int_eq(r.departed_clients->uid, -1);
	ck_assert_uint_eq(r.departed_clients->jobs_ok, 3);
	ck_assert_uint_eq(r.departed_clients->flops, 300);
	ck_assert_uint_eq(r.departed_clients->timings->kernel_ns, 30);
	wire_status_free(&r);
	stats_client_closed(&srv.stats, &b);
	srv.conns = NULL;
	sharing_at(&srv, 3 * SEC, &r);
	ck_assert_uint_eq(r.n_clients, 0);
	ck_assert_uint_eq(r.departed_clients->jobs_failed, 1);
	ck_assert_uint_eq(r.departed_clients->requests_rejected, 2);
	ck_assert_uint_eq(r.departed_clients->jobs_ok, 3);
	wire_status_free(&r);
}
END_TEST

/* Per-variant entries by kernel name; past RXD_STATS_VARIANTS the rest share "other". */
START_TEST(test_variants_table)
{
	static struct rxd_server srv;
	static struct rxd_conn c;
	static struct rxd_job job;
	struct rxd_job_times t = { 0 };
	Rxgemm__StatusReply r;
	char names[RXD_STATS_VARIANTS + 6][32];
	uint64_t jobs = 0;

	memset(&srv, 0, sizeof(srv));
	memset(&c, 0, sizeof(c));
	stats_init(&srv.stats);
	c.id = 3;
	srv.conns = &c;
	t.kernel_ns = 10;
	job.err.status = RXD_S_OK;
	job.g.flops = 1000;
	job.g.c_elems = 6;
	for (int i = 0; i < RXD_STATS_VARIANTS + 6; i++) {
		snprintf(names[i], sizeof(names[i]), "variant-%d", i);
		job.kernel = names[i];
		/* Twice for the first, once for the others. */
		for (int rep = 0; rep < (i == 0 ? 2 : 1); rep++, jobs++)
			stats_job_done(&srv.stats, &job, &c, &t);
	}
	job.err.status = RXD_S_DEVICE; /* a failure counts in no variant */
	stats_job_done(&srv.stats, &job, &c, &t);
	sharing_at(&srv, 1 * SEC, &r);
	ck_assert_uint_eq(r.n_kernel_stats, RXD_STATS_VARIANTS);
	ck_assert_str_eq(r.kernel_stats[0]->kernel, "variant-0");
	ck_assert_uint_eq(r.kernel_stats[0]->jobs, 2);
	ck_assert_uint_eq(r.kernel_stats[0]->flops, 2000);
	ck_assert_uint_eq(r.kernel_stats[0]->timings->kernel_ns, 20);
	ck_assert_str_eq(r.kernel_stats[RXD_STATS_VARIANTS - 1]->kernel, "other");
	ck_assert_uint_eq(r.kernel_stats[RXD_STATS_VARIANTS - 1]->jobs, 7);
	ck_assert_uint_eq(srv.stats.jobs_ok, jobs);
	ck_assert_uint_eq(srv.stats.jobs_failed, 1);
	ck_assert_uint_eq(r.n_clients, 1);
	ck_assert_uint_eq(r.clients[0]->jobs_ok, jobs);
	ck_assert_uint_eq(r.clients[0]->jobs_failed, 1);
	ck_assert_uint_eq(r.clients[0]->flops, jobs * 1000);
	ck_assert_uint_eq(r.clients[0]->bytes_out, jobs * 6 * sizeof(float));
	ck_assert_uint_eq(r.clients[0]->timings->kernel_ns, jobs * 10);
	wire_status_free(&r);
}
END_TEST

static Suite *stats_suite(void)
{
	Suite *s = suite_create("stats");
	TCase *tc = tcase_create("daemon");

	tcase_add_unchecked_fixture(tc, daemon_up, daemon_down);
	if (!getenv("CK_DEFAULT_TIMEOUT"))
		tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_two_clients);
	tcase_add_test(tc, test_rejected_counts);
	tcase_add_test(tc, test_variants);
	tcase_add_test(tc, test_busy_while_running);
	suite_add_tcase(s, tc);

	tc = tcase_create("buckets");
	tcase_add_test(tc, test_busy_buckets);
	tcase_add_test(tc, test_clients_fold);
	tcase_add_test(tc, test_variants_table);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(stats_suite());
	int failed;

	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed || g_teardown_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

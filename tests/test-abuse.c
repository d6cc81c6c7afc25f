/* test-abuse.c: what a hostile or careless client can make rxgemmd hold, replayed against
 * one daemon, while a well-behaved client keeps being
 * served between the attacks:
 *
 * - a 16 MiB frame of 2-byte unknown fields is refused with STATUS_PROTOCOL and costs the
 *   daemon a small multiple of the frame (protobuf-c's unpack cost about 45 times it);
 *   an unknown field inside a NAS request's region reference is STATUS_PROTOCOL too;
 * - a client asking for 256 MiB results and never reading them holds no more than its
 *   memory bound (--client-max-memory) plus slack, gets STATUS_BUSY up front, and is
 *   closed after --stall-timeout;
 * - under a small bound, a job whose reply cannot be held beside an unread one is refused
 *   BUSY up front and runs once the client has read, and one over the bound is TOO_BIG;
 *   the same for all clients together (--max-memory), where a partial frame that takes
 *   the total past the bound pauses every client's reading until it is gone;
 * - 8 stalled partial frames announcing 128 MiB each cost a few KiB each, and each is
 *   closed (STATUS_TIMEOUT, then end of stream) after --frame-timeout;
 * - with --idle-timeout set, idle connections get STATUS_TIMEOUT and are closed;
 * - SIGTERM with a client that never reads ends within the shutdown deadline, and a
 *   client's requests that the daemon had not read yet are answered STATUS_SHUTDOWN.
 *
 * Memory is the daemon's peak resident set (VmHWM, reset through /proc/PID/clear_refs
 * before each attack) against its resident set just before. Nothing here is timed: every
 * wait is for an event (a reply, a status counter, the end of a connection, the exit),
 * with generous upper bounds. */
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
#include <time.h>
#include <unistd.h>

#include "daemon-run.h"
#include "frame.h"
#include "raw.h"
#include "refgemm.h"
#include "rxgemm.pb-c.h"

#define WAIT_MS 300000 /* the most any one event may take on a loaded machine */
#define MIB (1024.0 * 1024.0)
#define BOUND_BYTES (400ull << 20) /* client-max-memory in CONFIG_DEFAULT */

static struct daemon_run g_d;

/* A column-major GEMM request of m x n x k on a and b (alpha 1, beta 0). */
static void gemm_request(Rxgemm__Request *req, Rxgemm__GemmRequest *g, uint64_t id, int64_t m,
			 int64_t n, int64_t k, const float *a, const float *b)
{
	rxgemm__request__init(req);
	rxgemm__gemm_request__init(g);
	g->m = m;
	g->n = n;
	g->k = k;
	g->alpha = 1.0f;
	g->a.data = (uint8_t *)a;
	g->a.len = sizeof(float) * (size_t)(m * k);
	g->b.data = (uint8_t *)b;
	g->b.len = sizeof(float) * (size_t)(k * n);
	req->request_id = id;
	req->body_case = RXGEMM__REQUEST__BODY_GEMM;
	req->gemm = g;
}

/* ------------------------------------------------------------------------------------- */

/* A field of /proc/PID/status in kB ("VmRSS:", "VmHWM:"). */
static uint64_t proc_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	unsigned long long kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, strlen(field)) == 0)
			sscanf(line + strlen(field), "%llu", &kb);
	fclose(f);
	ck_assert_msg(kb > 0, "no %s in %s", field, path);
	return kb * 1024;
}

/* Whether the last peak_start could reset VmHWM. */
static int g_hwm_reset;

/* Start a peak measurement: VmHWM back to VmRSS (clear_refs "5"), and the RSS now. Where
 * the kernel refuses the reset, peak_check falls back to the RSS it finds afterwards
 * (what the daemon still holds, a weaker check) and says so. */
static uint64_t peak_start(void)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)g_d.pid);
	f = fopen(path, "w");
	g_hwm_reset = f && fputs("5", f) >= 0;
	if (f && fclose(f) != 0)
		g_hwm_reset = 0;
	if (!g_hwm_reset)
		fprintf(stderr, "abuse: cannot reset %s (%s): checking the resident set instead "
			"of the peak\n", path, strerror(errno));
	return proc_kb(g_d.pid, "VmRSS:");
}

/* How far the daemon's peak rose above base since peak_start; fails over limit. */
static void peak_check(const char *what, uint64_t base, uint64_t limit)
{
	uint64_t hwm = proc_kb(g_d.pid, g_hwm_reset ? "VmHWM:" : "VmRSS:");
	uint64_t rise = hwm > base ? hwm - base : 0;

	fprintf(stderr, "abuse: %s: the daemon's peak rose %.1f MiB (limit %.1f MiB)\n", what,
		(double)rise / MIB, (double)limit / MIB);
	ck_assert_msg(rise <= limit, "%s: the daemon's peak memory rose %.1f MiB, over %.1f MiB",
		      what, (double)rise / MIB, (double)limit / MIB);
}

/* The well-behaved client: one GEMM on its connection, checked against the reference. */
static void good_gemm(struct raw *w, uint64_t id)
{
	enum { M = 37, N = 29, K = 41 };
	float a[M * K], b[K * N], want[M * N];
	uint64_t state = id;
	Rxgemm__Request req;
	Rxgemm__GemmRequest g;

	refgemm_fill_random(a, M * K, &state);
	refgemm_fill_random(b, K * N, &state);
	refgemm(0, 0, 0, M, N, K, 1.0f, a, M, b, K, 0.0f, want, M);
	gemm_request(&req, &g, id, M, N, K, a, b);
	raw_send(w, &req);
	Rxgemm__Reply *rep = raw_expect(w, id, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_GEMM);
	ck_assert_uint_eq(rep->gemm->c.len, sizeof(want));
	float got[M * N];
	memcpy(got, rep->gemm->c.data, sizeof(got));
	ck_assert_int_eq(refgemm_compare(0, M, N, K, got, want, M, NULL, NULL, NULL), 0);
	rxgemm__reply__free_unpacked(rep, NULL);
}

/* The status entry of the client named name, through w; NULL when it is not connected.
 * *st is to be freed by the caller. */
static const Rxgemm__ClientStats *client_named(struct raw *w, uint64_t id, const char *name,
					       Rxgemm__Reply **st)
{
	raw_send_status(w, id, NULL, 0);
	*st = raw_expect(w, id, RXGEMM__STATUS__STATUS_OK, NULL);
	for (size_t i = 0; i < (*st)->status_reply->n_clients; i++)
		if (strcmp((*st)->status_reply->clients[i]->name, name) == 0)
			return (*st)->status_reply->clients[i];
	return NULL;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Wait (polling status through w, up to WAIT_MS) until the client named name has at least
 * ok jobs done, at least rejected requests refused and, when idle is set, no job in
 * flight. */
static void wait_client(struct raw *w, uint64_t *id, const char *name, uint64_t ok,
			uint64_t rejected, int idle)
{
	for (int waited_ms = 0;; waited_ms += 20) {
		Rxgemm__Reply *st;
		const Rxgemm__ClientStats *cs = client_named(w, (*id)++, name, &st);
		int done = cs && cs->jobs_ok >= ok && cs->requests_rejected >= rejected &&
			   (!idle || cs->jobs_in_flight == 0);
		rxgemm__reply__free_unpacked(st, NULL);
		if (done)
			return;
		ck_assert_msg(waited_ms < WAIT_MS, "client %s never reached %" PRIu64 " jobs done "
			      "and %" PRIu64 " refused", name, ok, rejected);
		sleep_ms(20);
	}
}

/* Send all of buf on fd, or exit: for the child below, which must never reach the test
 * framework (a failed check there would unwind into a second copy of the test). */
static void child_send(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(1);
		p += n;
		len -= (size_t)n;
	}
}

/* A child process that connects as name, sends frames[0..len) and then never reads; it
 * is killed by the caller. */
static pid_t hoarder_start(const char *name, const uint8_t *frames, size_t len)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__Hello hello = RXGEMM__HELLO__INIT;
	size_t hello_len;
	uint8_t *hello_frame;
	pid_t pid;

	hello.protocol_version = RXGEMM_PROTOCOL_VERSION;
	hello.client_name = (char *)name;
	req.request_id = 1;
	req.body_case = RXGEMM__REQUEST__BODY_HELLO;
	req.hello = &hello;
	hello_frame = raw_frame(&req, NULL, 0, &hello_len);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g_d.socket_path);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			_exit(1);
		child_send(fd, hello_frame, hello_len);
		child_send(fd, frames, len);
		for (;;)
			pause();
	}
	free(hello_frame);
	return pid;
}

static void hoarder_stop(pid_t pid)
{
	int st;

	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
}

/* Item 2 (and 9): unknown fields, many and nested. */
static void attack_unknown_fields(struct raw *w, uint64_t *id)
{
	enum { FIELDS = 8u << 20 }; /* 16 MiB of them */
	struct raw u;
	size_t len = FRAME_HEADER_BYTES + 4 + 2 * (size_t)FIELDS;
	uint8_t *buf = malloc(len), *p = buf + FRAME_HEADER_BYTES;

	ck_assert_ptr_nonnull(buf);
	raw_open(&u, g_d.socket_path);
	raw_hello(&u, "abuse-unknown", NULL);
	/* request_id 77, status (field 4, empty), then field 15 = 0 (tag 15 << 3 = 0x78) over
	 * and over: a field Request has not got. */
	*p++ = 0x08;
	*p++ = 77;
	*p++ = 0x22;
	*p++ = 0x00;
	for (size_t i = 0; i < FIELDS; i++) {
		*p++ = 0x78;
		*p++ = 0x00;
	}
	frame_header_put(buf, (uint32_t)(len - FRAME_HEADER_BYTES));
	uint64_t base = peak_start();
	raw_send_bytes(&u, buf, len);
	Rxgemm__Reply *rep = raw_expect(&u, 77, RXGEMM__STATUS__STATUS_PROTOCOL, NULL);
	ck_assert_msg(strstr(rep->error, "unknown field 15"), "error \"%s\"", rep->error);
	rxgemm__reply__free_unpacked(rep, NULL);
	/* The frame itself, grown by doubling (under ASan the quarantine keeps every step of
	 * that: about 3 times the frame), and little else; the unpack alone cost 45 times. */
	peak_check("16 MiB of unknown fields", base, 6 * (uint64_t)(len - FRAME_HEADER_BYTES));
	free(buf);

	/* request_id 78; nas_eval of 7 bytes: weights_region (field 21: 0xaa 0x01) of 4 bytes,
	 * region_id 1 and field 9 = 5, which RegionRef has not got. */
	static const uint8_t nas[] = { 0, 0, 0, 11, 0x08, 78, 0x42, 0x07, 0xaa, 0x01, 0x04,
				       0x08, 0x01, 0x48, 0x05 };
	raw_send_bytes(&u, nas, sizeof(nas));
	rep = raw_expect(&u, 78, RXGEMM__STATUS__STATUS_PROTOCOL, NULL);
	ck_assert_msg(strstr(rep->error, "unknown field 9"), "error \"%s\"", rep->error);
	rxgemm__reply__free_unpacked(rep, NULL);
	good_gemm(&u, 79); /* the connection stays usable */
	raw_close(&u);
	good_gemm(w, (*id)++);
}

static void write_config(const char *path, const char *text);
static void wait_log(const char *text, int nth);
static int log_count(const char *text);

/* Re-read the config file, now holding text (the timeouts and the memory bound live there,
 * as SIGHUP reads them again); returns once the daemon has. */
static void reload(const char *config, const char *text)
{
	static int reloads;

	write_config(config, text);
	ck_assert_int_eq(kill(g_d.pid, SIGHUP), 0);
	wait_log("reloaded", ++reloads);
}

#define CONFIG_DEFAULT "frame-timeout = 600\nstall-timeout = 600\nclient-max-memory = 400M\n"

/* Wait until no client named name is connected. */
static void wait_client_gone(struct raw *w, uint64_t *id, const char *name)
{
	for (int waited_ms = 0;; waited_ms += 20) {
		Rxgemm__Reply *st;
		int gone = client_named(w, (*id)++, name, &st) == NULL;

		rxgemm__reply__free_unpacked(st, NULL);
		if (gone)
			return;
		ck_assert_msg(waited_ms < WAIT_MS, "client %s was never closed", name);
		sleep_ms(20);
	}
}

/* Item 1: results of 256 MiB asked for and never read. */
static void attack_unread_results(struct raw *w, uint64_t *id, const char *config)
{
	enum { SIDE = 8192, JOBS = 12 };
	float *a = calloc(SIDE, sizeof(float)), *b = calloc(SIDE, sizeof(float));
	uint8_t *frames = NULL;
	size_t used = 0;

	ck_assert(a && b);
	for (int i = 0; i < SIDE; i++)
		a[i] = b[i] = (float)(i % 7);
	for (int j = 0; j < JOBS; j++) {
		Rxgemm__Request req;
		Rxgemm__GemmRequest g;
		size_t len;
		uint8_t *f;

		gemm_request(&req, &g, 100 + (uint64_t)j, SIDE, SIDE, 1, a, b);
		f = raw_frame(&req, NULL, 0, &len);
		frames = realloc(frames, used + len);
		ck_assert_ptr_nonnull(frames);
		memcpy(frames + used, f, len);
		used += len;
		free(f);
	}
	uint64_t base = peak_start();
	pid_t pid = hoarder_start("abuse-hoarder", frames, used);
	/* One job ran; those read meanwhile were refused up front (BUSY): one result held is
	 * all the bound (400 MiB against 256 MiB per job, the result sent from where the job
	 * wrote it) allows, and once it is there the daemon reads no more. */
	wait_client(w, id, "abuse-hoarder", 1, 0, 1);
	good_gemm(w, (*id)++);
	Rxgemm__Reply *st;
	const Rxgemm__ClientStats *cs = client_named(w, (*id)++, "abuse-hoarder", &st);
	ck_assert_ptr_nonnull(cs);
	ck_assert_uint_eq(cs->jobs_ok, 1);
	rxgemm__reply__free_unpacked(st, NULL);
	/* The bound, plus the device's buffers (--vram-budget 64M), the requests and the
	 * allocator's slack (ASan's quarantine among it); without the bound, 3 GB. */
	peak_check("12 unread 256 MiB results", base, BOUND_BYTES + (256ull << 20));
	/* Still reading nothing: closed once the stall timeout (now 1 s) has passed. */
	reload(config, "frame-timeout = 600\nstall-timeout = 1\nclient-max-memory = 400M\n");
	wait_client_gone(w, id, "abuse-hoarder");
	hoarder_stop(pid);
	good_gemm(w, (*id)++);
	free(frames);
	free(a);
	free(b);
}

/* Item 1, exactly: with a bound of 6 MiB, a job with a 4 MiB result (charged 4 MiB and
 * its request: the reply goes out from the result's own buffer) runs; while its reply is
 * unread, a second is refused BUSY (4 + 4 > 6); once the client has read it, the same
 * request runs; one with an 8 MiB result is TOO_BIG whatever the client holds. Under the
 * old charge of twice the result, a bound of 6 MiB ran nothing of this. */
static void attack_busy(struct raw *w, uint64_t *id, const char *config)
{
	enum { SIDE = 1024 };
	float *a = calloc(2 * SIDE, sizeof(float)), *b = calloc(SIDE, sizeof(float));
	Rxgemm__Request req;
	Rxgemm__GemmRequest g;
	struct raw r;

	ck_assert(a && b);
	for (int i = 0; i < SIDE; i++)
		a[i] = b[i] = (float)(i % 5);
	reload(config, "frame-timeout = 600\nstall-timeout = 600\nclient-max-memory = 6M\n");
	raw_open(&r, g_d.socket_path);
	raw_hello(&r, "abuse-busy", NULL);
	gemm_request(&req, &g, 401, SIDE, SIDE, 1, a, b);
	raw_send(&r, &req);
	wait_client(w, id, "abuse-busy", 1, 0, 1);
	gemm_request(&req, &g, 402, SIDE, SIDE, 1, a, b);
	raw_send(&r, &req);
	/* Refused before we read a byte of 401's reply: once we read, the daemon may write
	 * all of it in one go (we drain the socket as it fills), and a 402 read only then
	 * would find the client holding nothing. */
	wait_client(w, id, "abuse-busy", 1, 1, 1);
	Rxgemm__Reply *rep = raw_expect(&r, 401, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert_uint_eq(rep->gemm->c.len, sizeof(float) * SIDE * SIDE);
	float c0 = ((float *)(void *)rep->gemm->c.data)[SIDE + 3]; /* a[3] * b[1] */
	ck_assert(c0 == (float)(3 * 1));
	rxgemm__reply__free_unpacked(rep, NULL);
	rep = raw_expect(&r, 402, RXGEMM__STATUS__STATUS_BUSY, NULL);
	ck_assert_msg(strstr(rep->error, "client-max-memory"), "error \"%s\"", rep->error);
	rxgemm__reply__free_unpacked(rep, NULL);
	gemm_request(&req, &g, 403, SIDE, SIDE, 1, a, b);
	raw_send(&r, &req);
	rxgemm__reply__free_unpacked(raw_expect(&r, 403, RXGEMM__STATUS__STATUS_OK, NULL), NULL);
	gemm_request(&req, &g, 404, 2 * SIDE, SIDE, 1, a, b);
	raw_send(&r, &req);
	rep = raw_expect(&r, 404, RXGEMM__STATUS__STATUS_TOO_BIG, NULL);
	ck_assert_msg(strstr(rep->error, "client-max-memory"), "error \"%s\"", rep->error);
	rxgemm__reply__free_unpacked(rep, NULL);
	raw_close(&r);
	reload(config, CONFIG_DEFAULT);
	good_gemm(w, (*id)++);
	free(a);
	free(b);
}

/* The bound of all clients together (max-memory 6M, no bound per client): a client with
 * an unread 4 MiB reply leaves no room for another client's job charged 4 MiB (BUSY, naming
 * max-memory), which runs once the first has read; a partial frame of 12 MiB from a third
 * takes the total past the bound, every client's reading pauses, and the well-behaved
 * client's request waiting meanwhile is answered once that client is gone. */
static void attack_total(struct raw *w, uint64_t *id, const char *config)
{
	enum { SIDE = 1024 };
	float *a = calloc(SIDE, sizeof(float)), *b = calloc(SIDE, sizeof(float));
	float *a2 = calloc(2 * SIDE, sizeof(float));
	Rxgemm__Request req;
	Rxgemm__GemmRequest g;
	struct raw r1, r2;

	ck_assert(a && b && a2);
	for (int i = 0; i < SIDE; i++)
		a[i] = b[i] = (float)(i % 5);
	reload(config, "frame-timeout = 600\nstall-timeout = 600\nclient-max-memory = 0\n"
	       "max-memory = 6M\n");
	raw_open(&r1, g_d.socket_path);
	raw_hello(&r1, "abuse-total-1", NULL);
	raw_open(&r2, g_d.socket_path);
	raw_hello(&r2, "abuse-total-2", NULL);
	gemm_request(&req, &g, 501, SIDE, SIDE, 1, a, b);
	raw_send(&r1, &req);
	wait_client(w, id, "abuse-total-1", 1, 0, 1);
	gemm_request(&req, &g, 502, SIDE, SIDE, 1, a, b);
	raw_send(&r2, &req);
	Rxgemm__Reply *rep = raw_expect(&r2, 502, RXGEMM__STATUS__STATUS_BUSY, NULL);
	ck_assert_msg(strstr(rep->error, "max-memory"), "error \"%s\"", rep->error);
	rxgemm__reply__free_unpacked(rep, NULL);
	rep = raw_expect(&r1, 501, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert(((float *)(void *)rep->gemm->c.data)[SIDE + 3] == (float)(3 * 1));
	rxgemm__reply__free_unpacked(rep, NULL);
	gemm_request(&req, &g, 503, SIDE, SIDE, 1, a, b);
	raw_send(&r2, &req);
	rxgemm__reply__free_unpacked(raw_expect(&r2, 503, RXGEMM__STATUS__STATUS_OK, NULL), NULL);
	/* An 8 MiB result: over the total alone. */
	gemm_request(&req, &g, 505, 2 * SIDE, SIDE, 1, a2, b);
	raw_send(&r2, &req);
	rep = raw_expect(&r2, 505, RXGEMM__STATUS__STATUS_TOO_BIG, NULL);
	ck_assert_msg(strstr(rep->error, "max-memory"), "error \"%s\"", rep->error);
	rxgemm__reply__free_unpacked(rep, NULL);

	/* 12 MiB of a frame announcing 16 MiB: past the bound while it is read. */
	size_t part = FRAME_HEADER_BYTES + (12u << 20);
	uint8_t *frame = calloc(1, part);
	ck_assert_ptr_nonnull(frame);
	frame_header_put(frame, 16u << 20);
	int paused = log_count("reading from every client pauses");
	int resumed = log_count("reading resumes");
	pid_t pid = hoarder_start("abuse-total-frame", frame, part);
	wait_log("reading from every client pauses", paused + 1);
	gemm_request(&req, &g, 504, SIDE, SIDE, 1, a, b);
	raw_send(&r2, &req);
	hoarder_stop(pid);
	wait_log("reading resumes", resumed + 1);
	rep = raw_expect(&r2, 504, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert(((float *)(void *)rep->gemm->c.data)[SIDE + 3] == (float)(3 * 1));
	rxgemm__reply__free_unpacked(rep, NULL);
	raw_close(&r1);
	raw_close(&r2);
	reload(config, CONFIG_DEFAULT);
	good_gemm(w, (*id)++);
	free(frame);
	free(a2);
	free(a);
	free(b);
}

/* How many lines of the daemon's log contain text. */
static int log_count(const char *text)
{
	char buf[4096];
	FILE *f = fopen(g_d.log_path, "r");
	int found = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(buf, sizeof(buf), f))
		found += strstr(buf, text) != NULL;
	fclose(f);
	return found;
}

/* Wait for the nth line of the daemon's log that contains text. */
static void wait_log(const char *text, int nth)
{
	for (int waited_ms = 0;; waited_ms += 20) {
		char buf[4096];
		FILE *f = fopen(g_d.log_path, "r");
		int found = 0;

		ck_assert_ptr_nonnull(f);
		while (found < nth && fgets(buf, sizeof(buf), f))
			found += strstr(buf, text) != NULL;
		fclose(f);
		if (found >= nth)
			return;
		ck_assert_msg(waited_ms < WAIT_MS, "\"%s\" never appeared %d times in the log",
			      text, nth);
		sleep_ms(20);
	}
}

static void write_config(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

/* Item 10: partial frames announcing 128 MiB, then silence. */
static void attack_stalled_frames(struct raw *w, uint64_t *id, const char *config)
{
	enum { CONNS = 8 };
	struct raw s[CONNS];
	uint8_t head[FRAME_HEADER_BYTES + 1000];

	/* A short frame timeout from here on. */
	reload(config, "frame-timeout = 1\nstall-timeout = 600\nclient-max-memory = 400M\n");
	memset(head, 0x48, sizeof(head));
	frame_header_put(head, 128u << 20);
	uint64_t base = peak_start();
	for (int i = 0; i < CONNS; i++) {
		raw_open(&s[i], g_d.socket_path);
		raw_hello(&s[i], "abuse-stall", NULL);
		raw_send_bytes(&s[i], head, sizeof(head));
	}
	good_gemm(w, (*id)++);
	/* Each is closed once its timeout has passed: an error reply, then the end. */
	for (int i = 0; i < CONNS; i++) {
		Rxgemm__Reply *rep = raw_expect(&s[i], 0, RXGEMM__STATUS__STATUS_TIMEOUT, NULL);
		rxgemm__reply__free_unpacked(rep, NULL);
		raw_expect_eof(&s[i]);
		raw_close(&s[i]);
	}
	peak_check("8 stalled 128 MiB frames", base, 64ull << 20);
	good_gemm(w, (*id)++);
}

/* Idle connections (--idle-timeout, off until now): each idle one, the well-behaved one
 * included, gets STATUS_TIMEOUT and the end of its stream; with the timeout off again, a
 * new connection is served. */
static void attack_idle(struct raw *w, uint64_t *id, const char *config)
{
	struct raw x;

	raw_open(&x, g_d.socket_path);
	raw_hello(&x, "abuse-idle", NULL);
	reload(config, CONFIG_DEFAULT "idle-timeout = 1\n");
	rxgemm__reply__free_unpacked(raw_expect(&x, 0, RXGEMM__STATUS__STATUS_TIMEOUT, NULL), NULL);
	raw_expect_eof(&x);
	raw_close(&x);
	rxgemm__reply__free_unpacked(raw_expect(w, 0, RXGEMM__STATUS__STATUS_TIMEOUT, NULL), NULL);
	raw_expect_eof(w);
	raw_close(w);
	reload(config, CONFIG_DEFAULT);
	raw_open(w, g_d.socket_path);
	raw_hello(w, "abuse-well-behaved", NULL);
	good_gemm(w, (*id)++);
}

/* Item 3: SIGTERM with a client that never reads and one whose requests were not read. */
static void attack_shutdown(struct raw *w, uint64_t *id)
{
	enum { SIDE = 8192, BIG = 2048, NEVER = 6 };
	float *a = calloc(SIDE, sizeof(float)), *b = calloc(SIDE, sizeof(float));
	float *ba = calloc((size_t)BIG * 64, sizeof(float)), *bb = calloc((size_t)BIG * 64,
									  sizeof(float));
	uint8_t *frames = NULL;
	size_t used = 0;
	struct raw late;
	Rxgemm__Request req;
	Rxgemm__GemmRequest g;

	ck_assert(a && b && ba && bb);
	/* The never-reading client: 16 MiB results, more than its socket holds. */
	for (int j = 0; j < NEVER; j++) {
		size_t len;
		uint8_t *f;

		gemm_request(&req, &g, 300 + (uint64_t)j, BIG, BIG, 64, ba, bb);
		f = raw_frame(&req, NULL, 0, &len);
		frames = realloc(frames, used + len);
		ck_assert_ptr_nonnull(frames);
		memcpy(frames + used, f, len);
		used += len;
		free(f);
	}
	pid_t pid = hoarder_start("abuse-never-reads", frames, used);
	wait_client(w, id, "abuse-never-reads", 1, 0, 0);

	/* The late reader: a 256 MiB result that it does not read yet (so the daemon stops
	 * reading it), then three requests the daemon has not read at the signal. */
	raw_open(&late, g_d.socket_path);
	raw_hello(&late, "abuse-late-reader", NULL);
	gemm_request(&req, &g, 200, SIDE, SIDE, 1, a, b);
	raw_send(&late, &req);
	wait_client(w, id, "abuse-late-reader", 1, 0, 1);
	for (uint64_t i = 201; i <= 203; i++)
		raw_send_status(&late, i, NULL, 0);
	ck_assert_int_eq(kill(g_d.pid, SIGTERM), 0);

	Rxgemm__Reply *rep = raw_expect(&late, 200, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert_uint_eq(rep->gemm->c.len, sizeof(float) * SIDE * SIDE);
	rxgemm__reply__free_unpacked(rep, NULL);
	for (uint64_t i = 201; i <= 203; i++)
		rxgemm__reply__free_unpacked(raw_expect(&late, i, RXGEMM__STATUS__STATUS_SHUTDOWN, NULL),
					     NULL);
	raw_expect_eof(&late);
	raw_close(&late);
	raw_expect_eof(w); /* idle: closed at once */

	/* The daemon ends although abuse-never-reads still reads nothing: at its shutdown
	 * deadline (20 s) at the latest. Waited for, not timed. */
	int st = daemon_run_stop(&g_d, 0, WAIT_MS / 1000);
	if (st != 0)
		daemon_run_dump_log(&g_d);
	ck_assert_msg(st == 0, "rxgemmd exited with %d after SIGTERM, want 0", st);
	hoarder_stop(pid);
	free(frames);
	free(a);
	free(b);
	free(ba);
	free(bb);
}

START_TEST(test_abuse)
{
	char config[400];
	struct raw w;
	uint64_t id = 1000;

	ck_assert_int_eq(daemon_run_init(&g_d), 0);
	snprintf(config, sizeof(config), "%s/rxgemmd.conf", g_d.dir);
	/* The timeouts in the file, which SIGHUP reads again. */
	write_config(config, CONFIG_DEFAULT);
	const char *const args[] = { "--config", config, "--vram-budget", "64M",
				     "--shutdown-timeout", "20", NULL };
	int ret = daemon_run_start(&g_d, args);
	if (ret == DAEMON_RUN_SKIP) {
		daemon_run_cleanup(&g_d);
		exit(DAEMON_RUN_SKIP);
	}
	ck_assert_int_eq(ret, 0);
	raw_open(&w, g_d.socket_path);
	raw_hello(&w, "abuse-well-behaved", NULL);
	good_gemm(&w, id++);

	attack_unknown_fields(&w, &id);
	attack_unread_results(&w, &id, config);
	attack_busy(&w, &id, config);
	attack_total(&w, &id, config);
	attack_stalled_frames(&w, &id, config);
	attack_idle(&w, &id, config);
	attack_shutdown(&w, &id);
	raw_close(&w);
	daemon_run_cleanup(&g_d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("abuse");
	TCase *tc = tcase_create("one daemon");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 1800);
	tcase_add_test(tc, test_abuse);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	/* One process: the daemon's pid and the exit for "skipped" stay ours. */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	daemon_run_cleanup(&g_d);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

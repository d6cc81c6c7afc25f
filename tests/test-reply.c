/* test-reply.c: librxgemm against a scripted daemon, for the replies rxgemmd never sends.
 *
 * A large C comes into the caller's array, or memory of the library's own, as the reply
 * arrives (client/transport.c, read_lifted). What a reply cut short, a reply naming C
 * twice, a reply to a request not in flight or a failed one does to it is set here by a
 * thread that plays the daemon on a socket of its own: each case answers Hello, reads one
 * GEMM request and sends the bytes the case scripts. The reference for a good reply is
 * the data the script sent. test_pipelined plays a daemon that reads no more requests
 * while a reply is unread, as rxgemmd does once 8 MiB of them wait. test_delivery_window
 * holds the reading thread, through the library's test hook, where a reply cut off has
 * broken the connection but C is not yet let go. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "frame.h"
#include "raw.h"
#include "rxgemm.h"
#include "rxgemm.pb-c.h"

enum { M = 150, N = 130, K = 20 };

enum script {
	GOOD,          /* C as a reply carries it */
	CUT,           /* the reply ends in the middle of C: the daemon went away */
	C_TWICE,       /* C, then an empty C: protobuf keeps the last */
	OTHER_ID,      /* a reply to a request that is not in flight */
	FAILED_WITH_C, /* a failed status, yet with C */
	PIPELINED,     /* three GEMMs; the third is read only once the first two Cs are sent */
};

struct fake {
	char dir[32], path[64];
	int listen_fd;
	enum script script;
	pthread_t thread;
};

static float pattern(size_t i)
{
	return (float)(i % 977) * 0.25f - 100.0f;
}

static void write_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len) {
		ssize_t n = send(fd, b, len, MSG_NOSIGNAL);
		if (n <= 0)
			return; /* the client went: its side of the case says what it saw */
		b += n;
		len -= (size_t)n;
	}
}

static Rxgemm__Request *read_request(int fd)
{
	uint8_t hdr[FRAME_HEADER_BYTES], *body;
	size_t len, have = 0;

	for (size_t got = 0; got < sizeof(hdr);) {
		ssize_t n = recv(fd, hdr + got, sizeof(hdr) - got, 0);
		if (n <= 0)
			return NULL;
		got += (size_t)n;
	}
	len = frame_header_get(hdr);
	body = malloc(len + 1);
	if (!body)
		return NULL;
	while (have < len) {
		ssize_t n = recv(fd, body + have, len - have, 0);
		if (n <= 0) {
			free(body);
			return NULL;
		}
		have += (size_t)n;
	}
	Rxgemm__Request *req = rxgemm__request__unpack(NULL, len, body);
	free(body);
	return req;
}

static void send_frame(int fd, const uint8_t *body, size_t len, size_t send_len)
{
	uint8_t hdr[FRAME_HEADER_BYTES];

	frame_header_put(hdr, (uint32_t)len);
	write_all(fd, hdr, sizeof(hdr));
	write_all(fd, body, send_len);
}

static void send_reply(int fd, const Rxgemm__Reply *r)
{
	size_t len = rxgemm__reply__get_packed_size(r);
	uint8_t *b = malloc(len + 1);

	if (!b)
		return;
	rxgemm__reply__pack(r, b);
	send_frame(fd, b, len, len);
	free(b);
}

/* Answer req as f's script says. */
static void answer(const struct fake *f, int fd, const Rxgemm__Request *req)
{
	size_t floats = (size_t)req->gemm->m * (size_t)req->gemm->n, len;
	float *c = malloc(floats * sizeof(float));
	Rxgemm__Reply r = RXGEMM__REPLY__INIT;
	Rxgemm__GemmReply g = RXGEMM__GEMM_REPLY__INIT;
	Rxgemm__Timings t = RXGEMM__TIMINGS__INIT;
	uint8_t *b;

	for (size_t i = 0; c && i < floats; i++)
		c[i] = pattern(i);
	g.c = (ProtobufCBinaryData){ floats * sizeof(float), (uint8_t *)c };
	g.flops = 2ull * (uint64_t)req->gemm->m * (uint64_t)req->gemm->n * (uint64_t)req->gemm->k;
	g.kernel = (char *)"scripted";
	t.total_ns = 1000;
	r.request_id = req->request_id;
	r.timings = &t;
	r.body_case = RXGEMM__REPLY__BODY_GEMM;
	r.gemm = &g;
	switch (f->script) {
	case GOOD:
	case PIPELINED: /* each reply whole before the next request is read */
		send_reply(fd, &r);
		break;
	case CUT:
		len = rxgemm__reply__get_packed_size(&r);
		if ((b = malloc(len))) {
			rxgemm__reply__pack(&r, b);
			send_frame(fd, b, len, len / 2);
			free(b);
		}
		break;
	case C_TWICE: {
		size_t glen = rxgemm__gemm_reply__get_packed_size(&g);
		uint8_t *gb = malloc(glen + 8);

		b = malloc(glen + 64);
		if (gb && b) {
			rxgemm__gemm_reply__pack(&g, gb);
			glen += raw_put_field(gb + glen, 1, "", 0);
			len = 0;
			b[len++] = 0x08; /* request_id */
			b[len++] = (uint8_t)req->request_id; /* small in this test */
			len += raw_put_field(b + len, 6, gb, glen);
			send_frame(fd, b, len, len);
		}
		free(gb);
		free(b);
		break;
	}
	case OTHER_ID:
		r.request_id = req->request_id + 1000;
		send_reply(fd, &r);
		break;
	case FAILED_WITH_C:
		r.status = RXGEMM__STATUS__STATUS_INTERNAL;
		r.error = (char *)"scripted failure";
		send_reply(fd, &r);
		break;
	}
	free(c);
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int fd = accept(f->listen_fd, NULL, NULL);
	Rxgemm__Request *req;

	if (fd < 0)
		return NULL;
	/* Hello. */
	if ((req = read_request(fd)) != NULL) {
		Rxgemm__Reply r = RXGEMM__REPLY__INIT;
		Rxgemm__HelloReply h = RXGEMM__HELLO_REPLY__INIT;

		h.protocol_version = req->hello ? req->hello->protocol_version : 1;
		h.daemon_version = (char *)"scripted";
		h.device = (char *)"none";
		h.max_frame_bytes = 64u << 20;
		h.client_id = 1;
		r.request_id = req->request_id;
		r.body_case = RXGEMM__REPLY__BODY_HELLO;
		r.hello = &h;
		send_reply(fd, &r);
		rxgemm__request__free_unpacked(req, NULL);
	}
	/* A stuck case ends in a failure, not in a hang. */
	struct timeval limit = { 20, 0 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
	/* One GEMM (three for PIPELINED), answered as scripted. PIPELINED answers the first
	 * two together, after reading both, and reads the third only once both replies are
	 * read. */
	Rxgemm__Request *held = NULL;
	for (int job = 0; job < (f->script == PIPELINED ? 3 : 1); job++) {
		req = read_request(fd);
		if (!req || !req->gemm)
			break;
		if (f->script == PIPELINED && job == 0) {
			held = req;
			req = NULL;
			continue;
		}
		if (held)
			answer(f, fd, held);
		answer(f, fd, req);
		if (held)
			rxgemm__request__free_unpacked(held, NULL);
		held = NULL;
		rxgemm__request__free_unpacked(req, NULL);
		req = NULL;
	}
	if (held)
		rxgemm__request__free_unpacked(held, NULL);
	if (req)
		rxgemm__request__free_unpacked(req, NULL);
	/* Leave the client to see what the case left it: the end of the stream. */
	close(fd);
	return NULL;
}

static void fake_start(struct fake *f, enum script script)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(f, 0, sizeof(*f));
	f->script = script;
	snprintf(f->dir, sizeof(f->dir), "/tmp/rxreply.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/s", f->dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(f->listen_fd, 0);
	ck_assert_int_eq(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(f->listen_fd, 1), 0);
	ck_assert_int_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
	unlink(f->path);
	rmdir(f->dir);
}

/* One GEMM (C = A B, col-major, C tight: C may come straight into c) on a handle to the
 * scripted daemon; its result code. c is filled with 7s before. */
static int run_gemm(struct fake *f, float beta, float *c, rxg_client **out)
{
	static float a[M * K], b[K * N];
	rxg_client *h = NULL;

	ck_assert_int_eq(rxg_connect(f->path, "test-reply", &h), RXG_OK);
	for (size_t i = 0; i < (size_t)M * N; i++)
		c[i] = 7.0f;
	struct rxg_gemm_args args = { .layout = RXG_COL_MAJOR, .m = M, .n = N, .k = K,
				      .alpha = 1.0f, .beta = beta, .a = a, .b = b, .c = c };
	int rc = rxg_gemm(h, &args, NULL);
	*out = h;
	return rc;
}

/* What a case leaves in C. */
enum c_after { C_ANY, C_PATTERN, C_UNTOUCHED };

static const struct reply_case {
	enum script script;
	float beta;
	int want;           /* rxg_gemm's result */
	const char *text;   /* in rxg_errmsg, or NULL */
	enum c_after c;
	const char *why;
} cases[] = {
	/* C straight into the array with beta 0, through the library's memory otherwise;
	 * either way what the reply held. */
	{ GOOD, 0.0f, RXG_OK, NULL, C_PATTERN, "a good reply" },
	{ GOOD, 0.5f, RXG_OK, NULL, C_PATTERN, "a good reply, beta != 0" },
	/* The daemon went away halfway through C: the connection is lost, said so, and
	 * the handle says so again after. With beta != 0 C is as it was. */
	{ CUT, 0.0f, RXG_EIO, "closed", C_ANY, "a reply cut off" },
	{ CUT, 0.5f, RXG_EIO, "closed", C_UNTOUCHED, "a reply cut off, beta != 0" },
	/* C given twice, the last empty: as protobuf decodes it, the reply has no C, a
	 * protocol error, not the first C taken for the result. */
	{ C_TWICE, 0.0f, RXG_EPROTO, "0 bytes of C", C_ANY, "C twice" },
	/* A reply to a request not in flight: nothing of this handle's waited for it. */
	{ OTHER_ID, 0.0f, RXG_EPROTO, "not in flight", C_UNTOUCHED, "another request's reply" },
	/* A failed status wins over any C the reply carries. */
	{ FAILED_WITH_C, 0.0f, RXG_EINTERNAL, "scripted failure", C_UNTOUCHED,
	  "a failure with C" },
};

START_TEST(test_reply)
{
	const struct reply_case *rc = &cases[_i];
	float *c = malloc(sizeof(float) * M * N);
	struct fake f;
	rxg_client *h;

	ck_assert_ptr_nonnull(c);
	fake_start(&f, rc->script);
	int got = run_gemm(&f, rc->beta, c, &h);
	ck_assert_msg(got == rc->want, "%s: rxg_gemm gave %d (%s), want %d", rc->why, got,
		      rxg_errmsg(h), rc->want);
	if (rc->text)
		ck_assert_msg(strstr(rxg_errmsg(h), rc->text), "%s: error \"%s\"", rc->why,
			      rxg_errmsg(h));
	for (size_t i = 0; rc->c != C_ANY && i < (size_t)M * N; i++) {
		float want = rc->c == C_PATTERN ? pattern(i) : 7.0f;
		ck_assert_msg(c[i] == want, "%s: C[%zu] = %g, want %g", rc->why, i, c[i], want);
	}
	if (rc->want == RXG_EIO) {
		struct rxg_status *st = NULL;
		ck_assert_int_eq(rxg_status(h, &st), RXG_EIO);
	}
	rxg_close(h);
	fake_stop(&f);
	free(c);
}
END_TEST

/* Three jobs in flight from one thread: the first two Cs (10 MB each) come back while the
 * third's A and B (38 MB) are being sent, and the daemon reads no more until both are read.
 * The library reads them in the middle of its send (transport.c, send_wait); it used to
 * block in send while the daemon blocked on the replies, until the daemon gave up on it.
 * Each job's C is what its reply held. */
START_TEST(test_pipelined)
{
	enum { M1 = 1600, N1 = 1600, M3 = 16, N3 = 16, K3 = 300000 };
	float *a1 = calloc(M1, sizeof(float)), *b1 = calloc(N1, sizeof(float));
	float *a3 = calloc((size_t)M3 * K3, sizeof(float));
	float *b3 = calloc((size_t)K3 * N3, sizeof(float));
	float *c[3] = { malloc(sizeof(float) * M1 * N1), malloc(sizeof(float) * M1 * N1),
			malloc(sizeof(float) * M3 * N3) };
	const size_t c_len[3] = { (size_t)M1 * N1, (size_t)M1 * N1, (size_t)M3 * N3 };
	struct fake f;
	rxg_client *h = NULL;
	uint64_t id[3];

	ck_assert(a1 && b1 && a3 && b3 && c[0] && c[1] && c[2]);
	fake_start(&f, PIPELINED);
	ck_assert_int_eq(rxg_connect(f.path, "test-reply", &h), RXG_OK);
	for (int j = 0; j < 3; j++) {
		struct rxg_gemm_args g = { .layout = RXG_COL_MAJOR, .m = j < 2 ? M1 : M3,
					   .n = j < 2 ? N1 : N3, .k = j < 2 ? 1 : K3,
					   .alpha = 1.0f, .a = j < 2 ? a1 : a3,
					   .b = j < 2 ? b1 : b3, .c = c[j] };
		int rc = rxg_submit_gemm(h, &g, NULL, &id[j]);
		ck_assert_msg(rc == RXG_OK, "submit %d: %s: %s", j, rxg_strerror(rc),
			      rxg_errmsg(h));
	}
	for (int j = 0; j < 3; j++) {
		int rc = rxg_wait(h, id[j], NULL);
		ck_assert_msg(rc == RXG_OK, "wait %d: %s: %s", j, rxg_strerror(rc), rxg_errmsg(h));
		size_t bad = SIZE_MAX;
		for (size_t i = 0; i < c_len[j] && bad == SIZE_MAX; i++)
			if (c[j][i] != pattern(i))
				bad = i;
		ck_assert_msg(bad == SIZE_MAX, "job %d: C[%zu] differs from the reply's", j, bad);
	}
	rxg_close(h);
	fake_stop(&f);
	free(a1);
	free(b1);
	free(a3);
	free(b3);
	for (int j = 0; j < 3; j++)
		free(c[j]);
}
END_TEST

/* transport.c's hook, built in with RXG_TEST_HOOKS (Makefile.am). */
extern void (*rxg__hook_delivery_failed)(void);

static sem_t in_window, leave_window;
static int window_calls;

static void hold_in_window(void)
{
	window_calls++;
	sem_post(&in_window);
	while (sem_wait(&leave_window) != 0)
		;	/* EINTR: a signal must not let the reader out early */
}

struct waiter {
	rxg_client *h;
	uint64_t id;
	int rc;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;

	w->rc = rxg_wait(w->h, w->id, NULL);
	return NULL;
}

/* A reply cut off while it comes straight into the caller's C: the reading thread breaks
 * the connection, then lets go of C (transport.c, direct_end). In between, another
 * thread's wait must not say RXG_EIO: its caller could free C while the reader may still
 * write into it. The hook holds the reader there; a timed wait meanwhile runs out with
 * RXG_EAGAIN, and once the reader lets go both threads see RXG_EIO. */
START_TEST(test_delivery_window)
{
	static float a[M * K], b[K * N];
	float *c = malloc(sizeof(float) * M * N);
	struct waiter w = { 0 };
	struct fake f;
	pthread_t t;
	uint64_t id = 0;

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(sem_init(&in_window, 0, 0), 0);
	ck_assert_int_eq(sem_init(&leave_window, 0, 0), 0);
	window_calls = 0;
	rxg__hook_delivery_failed = hold_in_window;
	fake_start(&f, CUT);
	ck_assert_int_eq(rxg_connect(f.path, "test-reply", &w.h), RXG_OK);
	struct rxg_gemm_args g = { .layout = RXG_COL_MAJOR, .m = M, .n = N, .k = K,
				   .alpha = 1.0f, .a = a, .b = b, .c = c };
	ck_assert_int_eq(rxg_submit_gemm(w.h, &g, NULL, &w.id), RXG_OK);
	ck_assert_int_eq(pthread_create(&t, NULL, wait_thread, &w), 0);
	while (sem_wait(&in_window) != 0)
		;
	int rc = rxg_wait_any(w.h, 100, &id, NULL);
	ck_assert_msg(rc == RXG_EAGAIN, "a wait while C is still being written gave %d (%s)", rc,
		      rxg_errmsg(w.h));
	sem_post(&leave_window);
	pthread_join(t, NULL);
	ck_assert_int_eq(w.rc, RXG_EIO);
	ck_assert_int_eq(rxg_wait_any(w.h, 0, &id, NULL), RXG_EIO);
	ck_assert_int_eq(window_calls, 1); /* C was the destination, and it failed once */
	rxg__hook_delivery_failed = NULL;
	rxg_close(w.h);
	fake_stop(&f);
	sem_destroy(&in_window);
	sem_destroy(&leave_window);
	free(c);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("reply");
	TCase *tc = tcase_create("scripted daemon");
	SRunner *sr;
	int failed;

	signal(SIGPIPE, SIG_IGN);
	/* The replies go inline: no shared memory to stage through. */
	setenv("RXGEMM_STAGE_BYTES", "off", 1);
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_reply, 0, (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_test(tc, test_pipelined);
	tcase_add_test(tc, test_delivery_window);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test-text.c: client text in the daemon (daemon/log.c): UTF-8 checks, cutting names between
 * characters, escaping for log lines and the two log formats; then the same on a real
 * rxgemmd: a long multibyte name is cut between characters in every status reply, a name
 * that is not UTF-8 is refused (and the connection still serves), and a name holding a
 * newline and a priority prefix forges no log line. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon-run.h"
#include "frame.h"
#include "rxgemm.h"
#include "rxgemm.pb-c.h"
#include "wire.h"

/* ---- UTF-8 ------------------------------------------------------------------------------ */

static bool valid(const char *s)
{
	return text_utf8_valid(s, strlen(s));
}

START_TEST(test_utf8_valid)
{
	ck_assert(valid(""));
	ck_assert(valid("plain ascii"));
	ck_assert(valid("\xc3\xa9t\xc3\xa9"));             /* été */
	ck_assert(valid("\xe2\x82\xac"));                  /* U+20AC */
	ck_assert(valid("\xf0\x9f\x98\x80"));              /* U+1F600 */
	ck_assert(valid("\xf4\x8f\xbf\xbf"));              /* U+10FFFF, the last */
	ck_assert(!valid("\xc3"));                         /* cut */
	ck_assert(!valid("\xe2\x82"));                     /* cut */
	ck_assert(!valid("a\x80z"));                       /* a lone continuation byte */
	ck_assert(!valid("\xc0\xaf"));                     /* overlong '/' */
	ck_assert(!valid("\xe0\x80\xaf"));                 /* overlong '/' */
	ck_assert(!valid("\xf0\x80\x80\xaf"));             /* overlong '/' */
	ck_assert(!valid("\xed\xa0\x80"));                 /* U+D800, a surrogate */
	ck_assert(!valid("\xf4\x90\x80\x80"));             /* above U+10FFFF */
	ck_assert(!valid("\xff"));
	ck_assert(!valid("\xc3\xa9\xc3"));                 /* good, then cut */
	/* The length counts: a NUL inside is a character like any other. */
	ck_assert(text_utf8_valid("a\0b", 3));
	ck_assert(!text_utf8_valid("\xc3\xa9", 1));
}
END_TEST

/* n copies of ch, into buf. */
static char *repeat(char *buf, const char *ch, int n)
{
	buf[0] = '\0';
	for (int i = 0; i < n; i++)
		strcat(buf, ch);
	return buf;
}

START_TEST(test_copy_cuts_between_characters)
{
	char src[512], dst[64], want[512];

	/* 2-byte characters: 63 bytes would cut the 32nd in half; 31 of them fit. */
	text_copy_utf8(dst, sizeof(dst), repeat(src, "\xc3\xa9", 40));
	ck_assert_str_eq(dst, repeat(want, "\xc3\xa9", 31));
	/* 3-byte ones: exactly 21. */
	text_copy_utf8(dst, sizeof(dst), repeat(src, "\xe2\x82\xac", 40));
	ck_assert_str_eq(dst, repeat(want, "\xe2\x82\xac", 21));
	/* 4-byte ones after one ASCII byte: 1 + 4 * 15 = 61. */
	strcpy(src, "a");
	strcat(src, repeat(want, "\xf0\x9f\x98\x80", 30));
	ck_assert_uint_eq(text_copy_utf8(dst, sizeof(dst), src), 61);
	ck_assert(valid(dst));
	ck_assert_int_eq(memcmp(dst, src, 61), 0);
	/* What fits is copied whole. */
	ck_assert_uint_eq(text_copy_utf8(dst, sizeof(dst), "short \xc3\xa9"), 8);
	ck_assert_str_eq(dst, "short \xc3\xa9");
	/* Every cut of every length is valid and a prefix. */
	repeat(src, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10);
	for (size_t size = 1; size < 64; size++) {
		size_t n = text_copy_utf8(dst, size, src);

		ck_assert_uint_lt(n, size);
		ck_assert_uint_gt(n + 4, size - 1); /* no more than one character short */
		ck_assert(valid(dst));
		ck_assert_int_eq(memcmp(dst, src, n), 0);
	}
}
END_TEST

/* ---- escaping --------------------------------------------------------------------------- */

static const char *esc(const char *s)
{
	static char buf[512];

	log_escape(buf, sizeof(buf), s);
	return buf;
}

START_TEST(test_escape)
{
	char small[8];

	ck_assert_str_eq(esc("plain name-1.2"), "plain name-1.2");
	ck_assert_str_eq(esc("x\n<0>forged"), "x\\x0a<0>forged");
	ck_assert_str_eq(esc("a\rb\tc\x1b[31m\x7f"), "a\\x0db\\x09c\\x1b[31m\\x7f");
	ck_assert_str_eq(esc("back\\slash"), "back\\x5cslash"); /* no escape can be faked */
	ck_assert_str_eq(esc("\xc3\xa9t\xc3\xa9 \xe2\x82\xac"), "\xc3\xa9t\xc3\xa9 \xe2\x82\xac");
	ck_assert_str_eq(esc("\xc2\x85next line"), "\\xc2\\x85next line"); /* U+0085, C1 */
	ck_assert_str_eq(esc("bad \xff\xc3"), "bad \\xff\\xc3");
	/* Cut to fit, never inside an escape or a character. */
	ck_assert_uint_eq(log_escape(small, sizeof(small), "abc\ndef"), 7);
	ck_assert_str_eq(small, "abc\\x0a");
	ck_assert_uint_eq(log_escape(small, sizeof(small), "abcd\nef"), 4);
	ck_assert_str_eq(small, "abcd");
	ck_assert_uint_eq(log_escape(small, sizeof(small), "abcde\xc3\xa9"), 7);
	ck_assert_uint_eq(log_escape(small, sizeof(small), "abcdef\xc3\xa9"), 6);
	ck_assert_str_eq(small, "abcdef");
	/* Whatever goes in, nothing below 0x20 comes out. */
	for (int c = 1; c < 256; c++) {
		char in[4] = { 'a', (char)c, 'z', 0 };

		for (const char *p = esc(in); *p; p++)
			ck_assert_int_ge((unsigned char)*p, 0x20);
	}
}
END_TEST

/* ---- the log's formats ------------------------------------------------------------------- */

/* Log one line through a fresh stderr (a file) with RXGEMMD_LOG_FORMAT set to format (NULL:
 * unset) and return what came out. Each check test runs in a process of its own, where
 * the format is still unchosen. */
static char *log_one(const char *format, const char *journal_stream)
{
	static char out[1024];
	char path[] = "/tmp/rxgt-log.XXXXXX";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	if (format)
		setenv("RXGEMMD_LOG_FORMAT", format, 1);
	else
		unsetenv("RXGEMMD_LOG_FORMAT");
	if (journal_stream)
		setenv("JOURNAL_STREAM", journal_stream, 1);
	else
		unsetenv("JOURNAL_STREAM");
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	log_msg(LOG_WARNING, "a warning %d", 42);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, out, sizeof(out) - 1, 0);
	ck_assert_int_gt(n, 0);
	out[n] = '\0';
	close(fd);
	unlink(path);
	return out;
}

START_TEST(test_log_format_journal_when_not_a_tty)
{
	ck_assert_str_eq(log_one(NULL, NULL), "<4>rxgemmd: a warning 42\n");
}
END_TEST

START_TEST(test_log_format_journal_forced)
{
	ck_assert_str_eq(log_one("journal", NULL), "<4>rxgemmd: a warning 42\n");
}
END_TEST

/* "2026-12-02 20:10:11.123 rxgemmd warning: a warning 42" */
static void assert_text_line(const char *s)
{
	int y, mo, d, h, mi, sec, ms, used = 0;

	ck_assert_msg(sscanf(s, "%4d-%2d-%2d %2d:%2d:%2d.%3d %n", &y, &mo, &d, &h, &mi, &sec, &ms,
			     &used) == 7 && used == 24,
		      "no time stamp: %s", s);
	ck_assert_str_eq(s + used, "rxgemmd warning: a warning 42\n");
}

START_TEST(test_log_format_text_forced)
{
	assert_text_line(log_one("text", NULL));
}
END_TEST

/* On a terminal people read it; journald's stream (JOURNAL_STREAM) keeps the prefixes. */
START_TEST(test_log_format_tty)
{
	int master = posix_openpt(O_RDWR | O_NOCTTY), slave, saved = dup(STDERR_FILENO);
	char out[1024];
	size_t got = 0;

	ck_assert_int_ge(master, 0);
	ck_assert_int_eq(grantpt(master), 0);
	ck_assert_int_eq(unlockpt(master), 0);
	slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	ck_assert_int_ge(slave, 0);
	unsetenv("RXGEMMD_LOG_FORMAT");
	unsetenv("JOURNAL_STREAM");
	fflush(stderr);
	dup2(slave, STDERR_FILENO);
	log_msg(LOG_WARNING, "a warning %d", 42);
	dup2(saved, STDERR_FILENO);
	close(saved);
	/* The terminal turns "\n" into "\r\n"; read up to it. */
	while (got < sizeof(out) - 1 && !memchr(out, '\n', got)) {
		struct pollfd pfd = { .fd = master, .events = POLLIN };
		ssize_t n;

		ck_assert_int_eq(poll(&pfd, 1, 60000), 1);
		n = read(master, out + got, sizeof(out) - 1 - got);
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
	out[got] = '\0';
	if (got >= 2 && out[got - 2] == '\r')
		out[got - 2] = '\n', out[got - 1] = '\0';
	assert_text_line(out);
	close(slave);
	close(master);
}
END_TEST

START_TEST(test_log_format_journal_stream)
{
	/* Not a terminal anyway here; JOURNAL_STREAM must not turn the text format on. */
	ck_assert_str_eq(log_one(NULL, "8:1234"), "<4>rxgemmd: a warning 42\n");
}
END_TEST

/* ---- on a real daemon ------------------------------------------------------------------- */

static struct daemon_run g_daemon;
static int g_daemon_failed;

static void daemon_up(void)
{
	int rc = daemon_run_start(&g_daemon, NULL);

	if (rc == DAEMON_RUN_SKIP) {
		daemon_run_cleanup(&g_daemon);
		exit(DAEMON_RUN_SKIP);
	}
	if (rc != 0) {
		daemon_run_cleanup(&g_daemon);
		exit(EXIT_FAILURE);
	}
}

static void daemon_down(void)
{
	int rc = daemon_run_stop(&g_daemon, SIGTERM, 60);

	if (rc != 0) {
		fprintf(stderr, "test-text: rxgemmd exited with %d\n", rc);
		daemon_run_dump_log(&g_daemon);
		g_daemon_failed = 1;
	}
	daemon_run_cleanup(&g_daemon);
}

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g_daemon.socket_path);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
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

/* A Hello with the given name bytes (sent as they are), and the daemon's reply. */
static Rxgemm__Reply *raw_hello(int fd, uint64_t id, const char *name)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__Hello h = RXGEMM__HELLO__INIT;
	uint8_t buf[1024], hdr[FRAME_HEADER_BYTES], *body;
	size_t len;
	uint32_t rlen;
	Rxgemm__Reply *rep;

	h.protocol_version = RXGEMM_PROTOCOL_VERSION;
	h.client_name = (char *)name;
	req.request_id = id;
	req.body_case = RXGEMM__REQUEST__BODY_HELLO;
	req.hello = &h;
	len = rxgemm__request__get_packed_size(&req);
	ck_assert_uint_le(FRAME_HEADER_BYTES + len, sizeof(buf));
	frame_header_put(buf, (uint32_t)len);
	rxgemm__request__pack(&req, buf + FRAME_HEADER_BYTES);
	ck_assert_int_eq(send(fd, buf, FRAME_HEADER_BYTES + len, MSG_NOSIGNAL),
			 (ssize_t)(FRAME_HEADER_BYTES + len));
	raw_read(fd, hdr, sizeof(hdr));
	rlen = frame_header_get(hdr);
	body = malloc(rlen ? rlen : 1);
	ck_assert_ptr_nonnull(body);
	raw_read(fd, body, rlen);
	rep = rxgemm__reply__unpack(NULL, rlen, body);
	free(body);
	ck_assert_ptr_nonnull(rep);
	ck_assert_uint_eq(rep->request_id, id);
	return rep;
}

/* The name the daemon's status gives for client id, as librxgemm decodes it. */
static char *status_name_of(rxg_client *c, uint32_t id)
{
	struct rxg_status *st = NULL;
	char *name = NULL;
	int rc = rxg_status(c, &st);

	ck_assert_msg(rc == RXG_OK, "status: %s: %s", rxg_strerror(rc), rxg_errmsg(c));
	for (size_t i = 0; i < st->n_clients; i++)
		if (st->clients[i].client_id == id)
			name = strdup(st->clients[i].name);
	rxg_status_free(st);
	ck_assert_msg(name != NULL, "client %u is not in the status", id);
	return name;
}

/* Names longer than the daemon keeps (63 bytes), of 2-, 3- and 4-byte characters: each is
 * cut after its last whole character, and the status reply carries valid UTF-8. */
START_TEST(test_daemon_long_multibyte_name)
{
	static const struct {
		const char *ch;
		int copies, kept;
	} cases[] = { { "\xc3\xa9", 40, 31 }, { "\xe2\x82\xac", 30, 21 },
		      { "\xf0\x9f\x98\x80", 20, 15 } };
	rxg_client *watcher = NULL;

	ck_assert_int_eq(rxg_connect(g_daemon.socket_path, "text-watcher", &watcher), RXG_OK);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char name[256], want[256], *got;
		rxg_client *c = NULL;
		int rc;

		repeat(name, cases[i].ch, cases[i].copies);
		repeat(want, cases[i].ch, cases[i].kept);
		rc = rxg_connect(g_daemon.socket_path, name, &c);
		ck_assert_msg(rc == RXG_OK, "connect: %s: %s", rxg_strerror(rc), rxg_errmsg(NULL));
		got = status_name_of(watcher, rxg_server_info(c)->client_id);
		ck_assert_msg(valid(got), "the status carries a name that is not UTF-8");
		ck_assert_str_eq(got, want);
		free(got);
		rxg_close(c);
	}
	rxg_close(watcher);
}
END_TEST

/* Not UTF-8: refused with INVALID_ARGUMENT and a sentence; Hello may then be sent again. */
START_TEST(test_daemon_invalid_name)
{
	int fd = raw_connect();
	Rxgemm__Reply *rep = raw_hello(fd, 1, "bad \xff\xfe name");

	ck_assert_int_eq(rep->status, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT);
	ck_assert_msg(rep->error && strstr(rep->error, "UTF-8"), "error: %s",
		      rep->error ? rep->error : "(none)");
	rxgemm__reply__free_unpacked(rep, NULL);
	rep = raw_hello(fd, 2, "half \xc3");
	ck_assert_int_eq(rep->status, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT);
	rxgemm__reply__free_unpacked(rep, NULL);
	rep = raw_hello(fd, 3, "good name");
	ck_assert_int_eq(rep->status, RXGEMM__STATUS__STATUS_OK);
	ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_HELLO);
	rxgemm__reply__free_unpacked(rep, NULL);
	close(fd);
}
END_TEST

/* A name with a newline and "<0>" writes one line of the log, escaped, at info level. */
START_TEST(test_daemon_name_forges_no_log_line)
{
	rxg_client *c = NULL;
	char line[2048];
	int mine = 0;
	FILE *f;

	ck_assert_int_eq(rxg_connect(g_daemon.socket_path, "evil\n<0>rxgemmd: forged\r\x1b[2J",
				     &c),
			 RXG_OK);
	/* The daemon logs the name before it answers Hello: the line is there now. */
	f = fopen(g_daemon.log_path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		ck_assert_msg(strncmp(line, "<0>", 3) != 0, "an emergency line: %s", line);
		ck_assert_msg(!strstr(line, "forged") || strstr(line, "evil\\x0a<0>"),
			      "a forged line: %s", line);
		ck_assert_msg(!strchr(line, '\r') && !strchr(line, '\x1b'), "controls: %s", line);
		if (strstr(line, "is 'evil\\x0a<0>rxgemmd: forged\\x0d\\x1b[2J'"))
			mine++;
	}
	fclose(f);
	ck_assert_int_eq(mine, 1);
	rxg_close(c);
}
END_TEST

static Suite *text_suite(void)
{
	Suite *s = suite_create("text");
	TCase *tc = tcase_create("unit");

	tcase_add_test(tc, test_utf8_valid);
	tcase_add_test(tc, test_copy_cuts_between_characters);
	tcase_add_test(tc, test_escape);
	tcase_add_test(tc, test_log_format_journal_when_not_a_tty);
	tcase_add_test(tc, test_log_format_journal_forced);
	tcase_add_test(tc, test_log_format_text_forced);
	tcase_add_test(tc, test_log_format_tty);
	tcase_add_test(tc, test_log_format_journal_stream);
	suite_add_tcase(s, tc);

	tc = tcase_create("daemon");
	tcase_add_unchecked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_daemon_long_multibyte_name);
	tcase_add_test(tc, test_daemon_invalid_name);
	tcase_add_test(tc, test_daemon_name_forges_no_log_line);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(text_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed || g_daemon_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test-sdnotify.c: what rxgemmd tells the service manager, and the socket it takes from it.
 *
 * "protocol": sdnotify.c's functions on their own (NOTIFY_SOCKET as a path and as an
 * abstract name, WATCHDOG_USEC/WATCHDOG_PID, LISTEN_FDS/LISTEN_PID), no device needed.
 * "daemon": a real rxgemmd whose NOTIFY_SOCKET is a datagram socket of this test, which
 * plays systemd: READY=1 only after warm-up, STATUS= lines, WATCHDOG=1 at half of
 * WATCHDOG_USEC, RELOADING=1 then READY=1 on SIGHUP with the client still connected,
 * STOPPING=1 on SIGTERM, and no pings while the device worker looks hung.
 *
 * Built with libsystemd (HAVE_LIBSYSTEMD) this tests the daemon through libsystemd; make
 * distcheck builds --with-systemd=no and so tests sdnotify.c's own protocol code. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "rxgemm.h"

#define SKIP 77
#define START_TIMEOUT_S 300.0

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- a datagram socket that plays the service manager ---------------------------------- */

static void set_sun_path(struct sockaddr_un *sa, const char *path)
{
	size_t len = strlen(path);

	ck_assert_msg(len < sizeof(sa->sun_path), "socket path too long: %s", path);
	memcpy(sa->sun_path, path, len + 1);
}

struct note {
	double t;        /* when it arrived (CLOCK_MONOTONIC, s) */
	char text[600];
};

struct listener {
	int fd;
	char path[108];
	struct note *notes;
	size_t n, cap;
};

static void listener_open(struct listener *l, const char *dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(l, 0, sizeof(*l));
	ck_assert_int_lt(strlen(dir) + 8, sizeof(l->path));
	snprintf(l->path, sizeof(l->path), "%.*s/notify", (int)(sizeof(l->path) - 8), dir);
	set_sun_path(&sa, l->path);
	l->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(l->fd, 0);
	ck_assert_msg(bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind %s: %s",
		      l->path, strerror(errno));
}

/* Take in every notification that arrives before the time until (CLOCK_MONOTONIC, s). */
static void listener_pump(struct listener *l, double until)
{
	for (;;) {
		double left = until - now_s();
		struct pollfd p = { .fd = l->fd, .events = POLLIN };
		ssize_t len;

		if (poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0) <= 0)
			return;
		if (l->n == l->cap) {
			l->cap = l->cap ? 2 * l->cap : 64;
			l->notes = realloc(l->notes, l->cap * sizeof(*l->notes));
			ck_assert_ptr_nonnull(l->notes);
		}
		len = recv(l->fd, l->notes[l->n].text, sizeof(l->notes[l->n].text) - 1, 0);
		if (len < 0)
			continue;
		l->notes[l->n].text[len] = '\0';
		l->notes[l->n].t = now_s();
		l->n++;
	}
}

/* Does one line of text start with prefix? */
static bool has_line(const char *text, const char *prefix)
{
	size_t plen = strlen(prefix);

	for (const char *p = text; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, prefix, plen) == 0)
			return true;
	return false;
}

/* The first notification from index from on with a line starting with prefix, or -1. */
static long find_note(const struct listener *l, size_t from, const char *prefix)
{
	for (size_t i = from; i < l->n; i++)
		if (has_line(l->notes[i].text, prefix))
			return (long)i;
	return -1;
}

/* Wait up to timeout_s for such a notification; -1 when none came. */
static long wait_note(struct listener *l, size_t from, const char *prefix, double timeout_s)
{
	double end = now_s() + timeout_s;
	long i;

	while ((i = find_note(l, from, prefix)) < 0 && now_s() < end)
		listener_pump(l, fmin(end, now_s() + 0.05));
	return i;
}

static void dump_notes(const struct listener *l)
{
	double t0 = l->n ? l->notes[0].t : 0;

	fprintf(stderr, "----- %zu notifications -----\n", l->n);
	for (size_t i = 0; i < l->n; i++)
		fprintf(stderr, "%8.3f %s\n", l->notes[i].t - t0, l->notes[i].text);
}

/* ---- the daemon under test --------------------------------------------------------------- */

struct daemon {
	char dir[256];
	char sock[300];
	char log[300];
	char conf[300];
	pid_t pid;
	struct listener nl;
};

static struct daemon *g_daemon; /* removed at exit, also when a check fails */
static char g_cpu_device[16];   /* --list-devices index of a CPU device, "" when none */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void daemon_cleanup(void)
{
	struct daemon *d = g_daemon;

	if (!d)
		return;
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
	if (d->nl.fd > 0)
		close(d->nl.fd);
	free(d->nl.notes);
	if (d->dir[0])
		nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	g_daemon = NULL;
}

static void daemon_init(struct daemon *d)
{
	const char *tmp = getenv("TMPDIR");

	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "%s/rxgt-sdnotify.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(d->dir));
	snprintf(d->sock, sizeof(d->sock), "%s/rxgemmd.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/rxgemmd.log", d->dir);
	snprintf(d->conf, sizeof(d->conf), "%s/rxgemmd.conf", d->dir);
	listener_open(&d->nl, d->dir);
	g_daemon = d;
	atexit(daemon_cleanup);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0;

	if (!f)
		return strdup("");
	buf = malloc(1 << 20);
	if (buf) {
		len = fread(buf, 1, (1 << 20) - 1, f);
		buf[len] = '\0';
	}
	fclose(f);
	return buf;
}

static void dump_log(const struct daemon *d)
{
	char *log = read_file(d->log);

	fprintf(stderr, "----- %s -----\n%s", d->log, log ? log : "");
	free(log);
	dump_notes(&d->nl);
}

static bool log_has(const struct daemon *d, const char *s)
{
	char *log = read_file(d->log);
	bool found = log && strstr(log, s);

	free(log);
	return found;
}

static void write_conf(const struct daemon *d, const char *text)
{
	FILE *f = fopen(d->conf, "we");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

/* Start $RXGEMMD --socket ... --config ... ARGS with NOTIFY_SOCKET set (and WATCHDOG_USEC
 * when watchdog_usec is not NULL) and wait for READY=1. */
static void daemon_start(struct daemon *d, const char *watchdog_usec, const char *const *args)
{
	const char *dev = getenv("RXGEMM_TEST_DEVICE");
	const char *argv[32];
	size_t n = 0;
	int fd;

	if (access(d->conf, F_OK) != 0)
		write_conf(d, "# empty\n");
	argv[n++] = getenv("RXGEMMD");
	argv[n++] = "--socket";
	argv[n++] = d->sock;
	argv[n++] = "--config";
	argv[n++] = d->conf;
	if (dev && *dev) {
		argv[n++] = "--device";
		argv[n++] = dev;
	}
	for (; args && *args && n < 31; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		char pid[32];

		/* Dies with the test, also when a check fails. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		setenv("NOTIFY_SOCKET", d->nl.path, 1);
		if (watchdog_usec) {
			/* As systemd does: the watchdog is meant for this very process. */
			snprintf(pid, sizeof(pid), "%ld", (long)getpid());
			setenv("WATCHDOG_USEC", watchdog_usec, 1);
			setenv("WATCHDOG_PID", pid, 1);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	double end = now_s() + START_TIMEOUT_S;
	while (find_note(&d->nl, 0, "READY=1") < 0) {
		int status;

		if (now_s() > end || waitpid(d->pid, &status, WNOHANG) == d->pid) {
			dump_log(d);
			ck_abort_msg("rxgemmd exited or sent no READY=1 within %.0f s",
				     START_TIMEOUT_S);
		}
		listener_pump(&d->nl, now_s() + 0.05);
	}
}

/* SIGTERM: STOPPING=1 must come, then a clean exit. */
static void daemon_stop(struct daemon *d)
{
	size_t from = d->nl.n;
	int status = -1;
	double end;

	ck_assert_int_eq(kill(d->pid, SIGTERM), 0);
	if (wait_note(&d->nl, from, "STOPPING=1", 60) < 0) {
		dump_log(d);
		ck_abort_msg("no STOPPING=1 after SIGTERM");
	}
	for (end = now_s() + 120; now_s() < end; sleep_s(0.02))
		if (waitpid(d->pid, &status, WNOHANG) == d->pid)
			break;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		dump_log(d);
		ck_abort_msg("rxgemmd did not exit 0 after SIGTERM (wait status %d)", status);
	}
	d->pid = 0;
}

static bool connectable(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	set_sun_path(&sa, path);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static rxg_client *client_connect(const struct daemon *d, const char *name)
{
	rxg_client *c = NULL;
	int rc = rxg_connect(d->sock, name, &c);

	ck_assert_msg(rc == RXG_OK, "rxg_connect: %s", rxg_strerror(rc));
	return c;
}

/* A small job on c; RXG_OK or the error. */
static int client_job(rxg_client *c, int64_t n)
{
	size_t elems = (size_t)(n * n);
	float *a = calloc(elems, sizeof(float)), *b = calloc(elems, sizeof(float));
	float *out = calloc(elems, sizeof(float));
	struct rxg_gemm_args g = { .layout = RXG_ROW_MAJOR, .m = n, .n = n, .k = n,
				   .alpha = 1.0f, .a = a, .b = b, .c = out };
	int rc;

	ck_assert(a && b && out);
	for (size_t i = 0; i < elems; i++) {
		a[i] = 1.0f;
		b[i] = 2.0f;
	}
	rc = rxg_gemm(c, &g, NULL);
	if (rc == RXG_OK)
		ck_assert_msg(out[0] == 2.0f * (float)n, "C[0] = %g, want %g", out[0], 2.0 * n);
	free(a);
	free(b);
	free(out);
	return rc;
}

/* ---- protocol ------------------------------------------------------------------------ */

START_TEST(test_send_without_manager)
{
	unsetenv("NOTIFY_SOCKET");
	ck_assert_int_eq(sdnotify_send("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	ck_assert_int_lt(sdnotify_send("READY=1"), 0);
}
END_TEST

START_TEST(test_send_path)
{
	static struct daemon d;

	daemon_init(&d);
	setenv("NOTIFY_SOCKET", d.nl.path, 1);
	ck_assert_int_eq(sdnotify_send("READY=1\nSTATUS=%d clients", 3), 0);
	ck_assert_int_ge(wait_note(&d.nl, 0, "READY=1", 5), 0);
	ck_assert_str_eq(d.nl.notes[0].text, "READY=1\nSTATUS=3 clients");
}
END_TEST

START_TEST(test_send_abstract)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char name[64], buf[64];
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ssize_t len;

	/* "@name" is a name in the abstract namespace: no file, no terminating NUL. */
	snprintf(name, sizeof(name), "rxgt-sdnotify-%ld", (long)getpid());
	memcpy(sa.sun_path + 1, name, strlen(name));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name))),
			 0);
	snprintf(buf, sizeof(buf), "@%s", name);
	setenv("NOTIFY_SOCKET", buf, 1);
	ck_assert_int_eq(sdnotify_send("WATCHDOG=1"), 0);
	len = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	ck_assert_int_eq(len, 10);
	buf[len] = '\0';
	ck_assert_str_eq(buf, "WATCHDOG=1");
	close(fd);
}
END_TEST

/* What sdnotify_init makes of the environment now. */
static uint64_t watchdog_usec(void)
{
	ck_assert_int_eq(sdnotify_init(), 0);
	return sdnotify_watchdog_usec();
}

START_TEST(test_watchdog_env)
{
	char pid[32];

	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
	ck_assert_uint_eq(watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "30000000", 1);
	ck_assert_uint_eq(watchdog_usec(), 30000000);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	ck_assert_uint_eq(watchdog_usec(), 30000000);
	/* Meant for another process (the daemon's parent, say): not ours to ping. */
	snprintf(pid, sizeof(pid), "%ld", (long)getppid());
	setenv("WATCHDOG_PID", pid, 1);
	ck_assert_uint_eq(watchdog_usec(), 0);
	unsetenv("WATCHDOG_PID");
	setenv("WATCHDOG_USEC", "soon", 1);
	ck_assert_uint_eq(watchdog_usec(), 0);
}
END_TEST

/* In a child of the test: put sock on fd 3 as a service manager would, set LISTEN_PID
 * (to pid_delta + our pid) and LISTEN_FDS, and exit 0 when sdnotify_init and
 * sdnotify_listen_fd give want (the fd, -ENOENT, or -EINVAL from sdnotify_init), once
 * only, and no LISTEN_* variable is left. (fd 3 may be check's own in the test.) */
static void listen_case(int sock, int n_fds, int pid_delta, int want)
{
	pid_t pid = fork();
	int status;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char s[32];
		int got, flags;

		if (sock >= 0 && dup2(sock, 3) < 0)
			_exit(10);
		snprintf(s, sizeof(s), "%ld", (long)getpid() + pid_delta);
		setenv("LISTEN_PID", s, 1);
		snprintf(s, sizeof(s), "%d", n_fds);
		setenv("LISTEN_FDS", s, 1);
		setenv("LISTEN_FDNAMES", "rxgemmd.socket", 1);
		got = sdnotify_init() < 0 ? -EINVAL : sdnotify_listen_fd();
		if (got != want) {
			fprintf(stderr, "sdnotify_listen_fd() = %d, want %d\n", got, want);
			_exit(11);
		}
		if (getenv("LISTEN_PID") || getenv("LISTEN_FDS") || getenv("LISTEN_FDNAMES"))
			_exit(12);
		/* The daemon starts nothing, but no socket of it should leak into a child. */
		if (got >= 0 && (!((flags = fcntl(got, F_GETFD)) & FD_CLOEXEC) || flags < 0))
			_exit(13);
		/* The socket has one owner: whoever took it first. */
		if (sdnotify_listen_fd() != -ENOENT)
			_exit(14);
		sdnotify_fini();
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "listen case (n_fds %d, pid_delta %d, want %d): wait status %d", n_fds,
		      pid_delta, want, status);
}

START_TEST(test_listen_fds)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static struct daemon d;
	int stream, dgram;

	daemon_init(&d);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	ck_assert_int_eq(sdnotify_init(), 0);
	ck_assert_int_eq(sdnotify_listen_fd(), -ENOENT);

	char path[sizeof(d.dir) + 16];

	snprintf(path, sizeof(path), "%s/listen.sock", d.dir);
	set_sun_path(&sa, path);
	stream = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(stream, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(stream, 8), 0);
	dgram = socket(AF_UNIX, SOCK_DGRAM, 0);

	listen_case(stream, 1, 0, 3);           /* the one listening socket: fd 3 */
	listen_case(stream, 1, 1, -ENOENT);     /* LISTEN_PID names another process */
	listen_case(stream, 0, 0, -EINVAL);     /* LISTEN_FDS=0: systemd never says that */
	listen_case(dgram, 1, 0, -EINVAL);      /* not a stream socket */
	listen_case(stream, 2, 0, -EINVAL);     /* more than one socket */
	close(stream);
	close(dgram);
}
END_TEST

/* ---- daemon -------------------------------------------------------------------------- */

START_TEST(test_ready_after_warmup)
{
	static struct daemon d;
	long ready, opening, building;

	daemon_init(&d);
	daemon_start(&d, NULL, NULL);
	ready = find_note(&d.nl, 0, "READY=1");
	/* Served at once: the socket takes connections the moment READY=1 is there. */
	ck_assert_msg(connectable(d.sock), "READY=1 came before the socket");
	opening = find_note(&d.nl, 0, "STATUS=opening the OpenCL device");
	building = find_note(&d.nl, 0, "STATUS=building and self-testing the kernels");
	if (!(opening >= 0 && building > opening && ready > building)) {
		dump_log(&d);
		ck_abort_msg("want STATUS=opening..., STATUS=building..., then READY=1 "
			     "(indices %ld, %ld, %ld)", opening, building, ready);
	}
	ck_assert_msg(has_line(d.nl.notes[ready].text, "STATUS=serving 0 clients"),
		      "READY=1 without the serving status: '%s'", d.nl.notes[ready].text);
	ck_assert_msg(log_has(&d, "built and self-tested") || log_has(&d, "ready:"),
		      "the log does not show the warm-up");
	/* Without WATCHDOG_USEC there is no watchdog, so no pings. */
	listener_pump(&d.nl, now_s() + 1.5);
	ck_assert_int_lt(find_note(&d.nl, 0, "WATCHDOG=1"), 0);
	daemon_stop(&d);
}
END_TEST

START_TEST(test_status_lines)
{
	static struct daemon d;
	rxg_client *c1, *c2;
	size_t from;

	daemon_init(&d);
	daemon_start(&d, NULL, NULL);
	from = d.nl.n;
	c1 = client_connect(&d, "sdnotify-1");
	c2 = client_connect(&d, "sdnotify-2");
	if (wait_note(&d.nl, from, "STATUS=serving 2 clients", 5) < 0) {
		dump_log(&d);
		ck_abort_msg("no STATUS= saying 'serving 2 clients' within 5 s");
	}
	ck_assert_int_eq(client_job(c1, 64), RXG_OK);
	from = d.nl.n;
	rxg_close(c2);
	if (wait_note(&d.nl, from, "STATUS=serving 1 client; 0 jobs in the queue (none "
		      "running); 1 done", 5) < 0) {
		dump_log(&d);
		ck_abort_msg("no STATUS= with 1 client and 1 job done within 5 s");
	}
	rxg_close(c1);
	daemon_stop(&d);
}
END_TEST

START_TEST(test_watchdog_period)
{
	const double watchdog_s = 0.6, period_s = watchdog_s / 2;
	static struct daemon d;
	double t_prev = -1, sum = 0, longest = 0, shortest = 1e9;
	int intervals = 0;
	size_t from;

	daemon_init(&d);
	daemon_start(&d, "600000", NULL);
	from = d.nl.n;
	listener_pump(&d.nl, now_s() + 3.0);
	for (size_t i = from; i < d.nl.n; i++) {
		if (!has_line(d.nl.notes[i].text, "WATCHDOG=1"))
			continue;
		if (t_prev >= 0) {
			double dt = d.nl.notes[i].t - t_prev;
			sum += dt;
			longest = fmax(longest, dt);
			shortest = fmin(shortest, dt);
			intervals++;
		}
		t_prev = d.nl.notes[i].t;
	}
	if (intervals < 7 || fabs(sum / intervals - period_s) > 0.25 * period_s ||
	    longest >= watchdog_s || shortest < 0.5 * period_s) {
		dump_notes(&d.nl);
		ck_abort_msg("WATCHDOG=1: %d intervals in 3 s, mean %.3f s (want %.3f), %.3f to "
			     "%.3f s (want all below %.3f)", intervals,
			     intervals ? sum / intervals : 0.0, period_s, shortest, longest,
			     watchdog_s);
	}
	daemon_stop(&d);
}
END_TEST

START_TEST(test_reload)
{
	static const char *const args[] = { "--hang-timeout", "30", NULL };
	static struct daemon d;
	rxg_client *c;
	long reloading, ready;
	size_t from;

	daemon_init(&d);
	write_conf(&d, "log-level = info\n");
	daemon_start(&d, "2000000", args);
	c = client_connect(&d, "sdnotify-reload");
	ck_assert_int_eq(client_job(c, 32), RXG_OK);
	ck_assert_msg(!log_has(&d, "<7>"), "debug lines at log-level info");

	/* The file now asks for debug; the command line's hang-timeout still wins. */
	write_conf(&d, "log-level = debug\nhang-timeout = 5\n");
	from = d.nl.n;
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	reloading = wait_note(&d.nl, from, "RELOADING=1", 10);
	ready = wait_note(&d.nl, from, "READY=1", 10);
	if (reloading < 0 || ready <= reloading) {
		dump_log(&d);
		ck_abort_msg("want RELOADING=1 then READY=1 after SIGHUP (indices %ld, %ld)",
			     reloading, ready);
	}
	ck_assert_msg(has_line(d.nl.notes[reloading].text, "MONOTONIC_USEC="),
		      "RELOADING=1 without MONOTONIC_USEC: '%s'", d.nl.notes[reloading].text);
	/* The client that was connected before is still served, now with per-job logs. */
	ck_assert_int_eq(client_job(c, 32), RXG_OK);
	ck_assert_msg(log_has(&d, "<7>rxgemmd: client 1 request"),
		      "no debug line for the job after the reload to log-level debug");
	ck_assert_msg(log_has(&d, "log level 7, hang-timeout 30.0 s"),
		      "the command line's --hang-timeout did not win over the file");

	/* A broken file: the daemon says so, keeps its configuration and stays ready. */
	write_conf(&d, "log-level = loud\n");
	from = d.nl.n;
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	reloading = wait_note(&d.nl, from, "RELOADING=1", 10);
	ready = wait_note(&d.nl, from, "READY=1", 10);
	ck_assert_msg(reloading >= 0 && ready > reloading, "no RELOADING=1, READY=1 pair");
	ck_assert_msg(log_has(&d, "keeping the running one"), "no message about the bad file");
	ck_assert_int_eq(client_job(c, 16), RXG_OK);
	rxg_close(c);
	daemon_stop(&d);
}
END_TEST

/* Run "$RXGEMM --socket sock gemm -m n -n n -k n" in the background. */
static pid_t cli_job_start(const struct daemon *d, int n)
{
	char num[32];
	pid_t pid;

	snprintf(num, sizeof(num), "%d", n);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		execl(getenv("RXGEMM"), "rxgemm", "--socket", d->sock, "gemm", "-m", num, "-n",
		      num, "-k", num, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* How long the daemon took for its last n x n x n job, from its debug line; -1 if none. */
static double job_seconds(const struct daemon *d, int n)
{
	char *log = read_file(d->log), pat[64], *p, *last = NULL;
	double ms = -1;

	snprintf(pat, sizeof(pat), "gemm %dx%dx%d done in ", n, n, n);
	for (p = log; p && (p = strstr(p, pat)); p++)
		last = p;
	if (last)
		ms = strtod(last + strlen(pat), NULL);
	free(log);
	return ms < 0 ? -1 : ms / 1e3;
}

START_TEST(test_hung_worker_stops_pings)
{
	/* Pings every 0.3 s; one job longer than 0.2 s counts as a hung worker. A CPU device
	 * is slow enough to keep the worker on one job for seconds: take one if there is. */
	const char *args[] = { "--hang-timeout", "200ms", "--log-level", "debug", NULL, NULL,
			       NULL };
	const double watchdog_s = 0.6, hang_s = 0.2, want_job_s = hang_s + 3 * watchdog_s;
	static struct daemon d;
	double job_s = 0, t_start = 0, t_end = 0, longest = 0, t_prev;
	int n = 256, status;
	size_t from = 0;

	if (g_cpu_device[0] && !getenv("RXGEMM_TEST_DEVICE")) {
		args[4] = "--device";
		args[5] = g_cpu_device;
	}
	daemon_init(&d);
	daemon_start(&d, "600000", args);
	/* Find a job that keeps the worker busy long enough on this device. */
	for (int attempt = 0; attempt < 5 && job_s < want_job_s; attempt++) {
		pid_t pid;

		from = d.nl.n;
		t_start = now_s();
		pid = cli_job_start(&d, n);
		while (waitpid(pid, &status, WNOHANG) != pid)
			listener_pump(&d.nl, now_s() + 0.02);
		t_end = now_s();
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "rxgemm gemm -m %d failed (wait status %d)", n, status);
		job_s = job_seconds(&d, n);
		ck_assert_msg(job_s >= 0, "no debug line for the %d^3 job", n);
		if (job_s < want_job_s) {
			double scale = cbrt(want_job_s * 1.5 / fmax(job_s, 0.01));
			n = (int)fmin(n * fmin(scale, 4.0), 4096);
			n = (n + 63) / 64 * 64;
		}
	}
	ck_assert_msg(job_s >= want_job_s, "no job of up to 4096^3 keeps this device busy for "
		      "%.1f s, which this test needs (set RXGEMM_TEST_DEVICE to a CPU device)",
		      want_job_s);
	/* While the job ran, pings stopped for longer than the watchdog allows... */
	t_prev = t_start;
	for (size_t i = from; i < d.nl.n && d.nl.notes[i].t <= t_end; i++) {
		if (!has_line(d.nl.notes[i].text, "WATCHDOG=1"))
			continue;
		longest = fmax(longest, d.nl.notes[i].t - t_prev);
		t_prev = d.nl.notes[i].t;
	}
	longest = fmax(longest, t_end - t_prev);
	if (longest < job_s - hang_s - watchdog_s || longest <= watchdog_s) {
		dump_log(&d);
		ck_abort_msg("during a %.2f s job (hang-timeout %.2f s) the longest gap between "
			     "pings was %.2f s: the pings did not stop", job_s, hang_s, longest);
	}
	printf("hung worker: a %d^3 job kept the worker busy %.2f s; the longest gap between "
	       "pings was %.2f s (watchdog %.2f s, hang-timeout %.2f s)\n", n, job_s, longest,
	       watchdog_s, hang_s);
	ck_assert_msg(find_note(&d.nl, from, "STATUS=device worker stuck") >= 0,
		      "no STATUS= about the stuck worker");
	ck_assert_msg(log_has(&d, "it looks hung; withholding watchdog pings"),
		      "no log line about the hung worker");
	/* ...and they come back once it is done. */
	from = d.nl.n;
	long first = wait_note(&d.nl, from, "WATCHDOG=1", 2 * watchdog_s);
	long second = first >= 0 ? wait_note(&d.nl, (size_t)first + 1, "WATCHDOG=1", watchdog_s) : -1;
	if (second < 0) {
		dump_log(&d);
		ck_abort_msg("the pings did not resume after the job finished");
	}
	ck_assert_msg(log_has(&d, "the device worker is responding again"),
		      "no log line about the worker's recovery");
	daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------------------------- */

/* Whether $RXGEMMD lists at least one OpenCL device; g_cpu_device gets the index of the
 * first CPU device ("" when none). */
static bool have_device(void)
{
	char cmd[4200], line[512], index[16] = "";
	const char *daemon = getenv("RXGEMMD");
	bool found = false;
	FILE *p;

	if (!daemon || !*daemon || strlen(daemon) > 4000)
		return false;
	snprintf(cmd, sizeof(cmd), "'%s' --list-devices 2>/dev/null", daemon);
	if (!(p = popen(cmd, "r")))
		return false;
	while (fgets(line, sizeof(line), p)) {
		if (line[0] >= '0' && line[0] <= '9' && strchr(line, ':')) {
			found = true;
			snprintf(index, sizeof(index), "%.*s", (int)strcspn(line, ":"), line);
		} else if (strstr(line, "type CPU") && index[0] && !g_cpu_device[0]) {
			snprintf(g_cpu_device, sizeof(g_cpu_device), "%s", index);
		}
	}
	pclose(p);
	return found;
}

int main(void)
{
	Suite *s = suite_create("sdnotify");
	TCase *tc = tcase_create("protocol");
	bool daemon_tests = have_device() && getenv("RXGEMM");
	int failed;
	SRunner *sr;

	signal(SIGPIPE, SIG_IGN);
#ifdef HAVE_LIBSYSTEMD
	printf("test-sdnotify: the daemon speaks through libsystemd\n");
#else
	printf("test-sdnotify: the daemon speaks the protocols itself (no libsystemd)\n");
#endif
	tcase_add_test(tc, test_send_without_manager);
	tcase_add_test(tc, test_send_path);
	tcase_add_test(tc, test_send_abstract);
	tcase_add_test(tc, test_watchdog_env);
	tcase_add_test(tc, test_listen_fds);
	suite_add_tcase(s, tc);
	if (daemon_tests) {
		tc = tcase_create("daemon");
		/* Without make check's CK_DEFAULT_TIMEOUT, check would allow only 4 s. */
		if (!getenv("CK_DEFAULT_TIMEOUT"))
			tcase_set_timeout(tc, 600);
		tcase_add_test(tc, test_ready_after_warmup);
		tcase_add_test(tc, test_status_lines);
		tcase_add_test(tc, test_watchdog_period);
		tcase_add_test(tc, test_reload);
		tcase_add_test(tc, test_hung_worker_stops_pings);
		suite_add_tcase(s, tc);
	}
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (failed)
		return EXIT_FAILURE;
	if (!daemon_tests) {
		printf("SKIP: the daemon tests need RXGEMMD, RXGEMM and an OpenCL device\n");
		return SKIP;
	}
	return EXIT_SUCCESS;
}

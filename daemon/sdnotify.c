/* sdnotify.c: what the service manager is told, and the socket it may hand over.
 *
 * Two small, stable protocols (sd_notify(3), sd_listen_fds(3)): newline-separated
 * KEY=VALUE datagrams to the AF_UNIX socket in $NOTIFY_SOCKET, and listening sockets passed
 * from fd 3 on with $LISTEN_FDS and $LISTEN_PID. libsystemd speaks them when the daemon is
 * built with it; without it (--with-systemd=no) this file does, so the daemon runs under
 * systemd either way. Without a service manager every call here does nothing.
 *
 * What is sent when: STATUS= while starting; READY=1 only once the device is open and every
 * kernel is built and self-tested (main.c calls sdnotify_ready after server_start);
 * STATUS= with clients, queue and jobs, at most once a second and only when it changed;
 * WATCHDOG=1 at half of $WATCHDOG_USEC, but only while the device worker is healthy: a
 * worker on one job for longer than hang-timeout is taken to be hung (a GPU that never
 * finishes), the pings stop, and systemd restarts the daemon after WatchdogSec;
 * RELOADING=1 and READY=1 around a SIGHUP; STOPPING=1 on SIGTERM or SIGINT. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define SDNOTIFY_LISTEN_FDS_START 3 /* SD_LISTEN_FDS_START */
#define SDNOTIFY_STATUS_PERIOD_MS 1000

/* What sdnotify_init found in the environment. */
static int sdnotify_passed_fd = -ENOENT; /* until server_start takes it */
static uint64_t sdnotify_watchdog;       /* us; 0: none */

/* ---- the protocols ----------------------------------------------------------------------- */

#ifndef HAVE_LIBSYSTEMD
/* Parse a whole decimal number; -EINVAL unless s is one. */
static int sdnotify_parse_u64(const char *s, uint64_t *v)
{
	char *end;
	unsigned long long x;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*v = x;
	return 0;
}

/* Is $name unset, or the pid of this process? The variables are meant for one process,
 * and a child that inherited them must not act on them. */
static bool sdnotify_pid_is_ours(const char *name)
{
	const char *s = getenv(name);
	uint64_t pid;

	if (!s)
		return true;
	return sdnotify_parse_u64(s, &pid) == 0 && pid == (uint64_t)getpid();
}

static int sdnotify_send_text(const char *text)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len;
	int fd, ret = 0;

	if (!path || !*path)
		return 0;
	/* A path, or "@name" for the abstract namespace. (systemd 253's vsock:... is for
	 * virtual machines, which this daemon is not run as.) */
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* The address length counts the name only: an abstract name has no terminating NUL. */
	if (sendto(fd, text, strlen(text), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}
#else
static int sdnotify_send_text(const char *text)
{
	int ret = sd_notify(0, text);

	return ret < 0 ? ret : 0;
}
#endif

int sdnotify_send(const char *fmt, ...)
{
	char text[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	/* A cut STATUS= still says something; every other message is far shorter. */
	return sdnotify_send_text(text);
}

static uint64_t sdnotify_read_watchdog(void)
{
#ifdef HAVE_LIBSYSTEMD
	uint64_t usec = 0;

	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
#else
	uint64_t usec;

	if (!sdnotify_pid_is_ours("WATCHDOG_PID") ||
	    sdnotify_parse_u64(getenv("WATCHDOG_USEC"), &usec) < 0)
		return 0;
	return usec;
#endif
}

/* A listening AF_UNIX stream socket? */
static bool sdnotify_is_unix_listener(int fd)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	int type = 0, listening = 0;
	socklen_t olen = sizeof(int);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &olen) < 0 || type != SOCK_STREAM)
		return false;
	olen = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &olen) < 0 || !listening)
		return false;
	return getsockname(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sun_family == AF_UNIX;
}

/* The one socket that socket activation passed, -ENOENT, or -EINVAL (logged). */
static int sdnotify_read_listen_fds(void)
{
	uint64_t n;
	int fd = SDNOTIFY_LISTEN_FDS_START;

#ifdef HAVE_LIBSYSTEMD
	int ret = sd_listen_fds(1); /* 1: unset the variables */

	if (ret < 0) {
		log_msg(LOG_ERR, "socket activation: %s", strerror(-ret));
		return -EINVAL;
	}
	n = (uint64_t)ret;
#else
	const char *fds = getenv("LISTEN_FDS");
	int ret = 0;

	n = 0;
	/* LISTEN_PID must name this process: a child that inherited the variables is not
	 * the one the sockets were meant for. */
	if (fds && getenv("LISTEN_PID") && sdnotify_pid_is_ours("LISTEN_PID") &&
	    (sdnotify_parse_u64(fds, &n) < 0 || n == 0)) {
		log_msg(LOG_ERR, "socket activation: LISTEN_FDS='%s' is not a positive number",
			fds);
		ret = -EINVAL;
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (ret < 0)
		return ret;
	for (uint64_t i = 0; i < n && i < 1024; i++)
		(void)fcntl(SDNOTIFY_LISTEN_FDS_START + (int)i, F_SETFD, FD_CLOEXEC);
#endif
	if (n == 0)
		return -ENOENT;
	if (n != 1) {
		log_msg(LOG_ERR, "socket activation passed %" PRIu64 " sockets; rxgemmd listens on "
			"exactly one (one ListenStream= in rxgemmd.socket)", n);
		return -EINVAL;
	}
	if (!sdnotify_is_unix_listener(fd)) {
		log_msg(LOG_ERR, "socket activation passed fd %d, which is not a listening Unix "
			"stream socket (ListenStream=/path in rxgemmd.socket)", fd);
		return -EINVAL;
	}
	return fd;
}

int sdnotify_init(void)
{
	sdnotify_watchdog = sdnotify_read_watchdog();
	sdnotify_passed_fd = sdnotify_read_listen_fds();
	return sdnotify_passed_fd == -EINVAL ? -EINVAL : 0;
}

void sdnotify_fini(void)
{
	/* A passed socket that no server took (the daemon did not get that far). */
	if (sdnotify_passed_fd >= 0)
		close(sdnotify_passed_fd);
	sdnotify_passed_fd = -ENOENT;
}

uint64_t sdnotify_watchdog_usec(void)
{
	return sdnotify_watchdog;
}

bool sdnotify_listen_passed(void)
{
	return sdnotify_passed_fd >= 0;
}

int sdnotify_listen_fd(void)
{
	int fd = sdnotify_passed_fd;

	if (fd < 0)
		return -ENOENT;
	sdnotify_passed_fd = -ENOENT;
	return fd;
}

/* ---- the daemon's state, for the service manager ------------------------------------------ */

/* Is the device worker making progress? Logs when that changes. */
static bool sdnotify_worker_healthy(struct rxd_sdnotify *n)
{
	uint64_t busy_ns = worker_busy_ns(n->worker), hang_ns = n->cfg->hang_timeout_ns;
	bool hung = hang_ns && busy_ns > hang_ns;

	if (hung && !n->worker_hung)
		log_msg(LOG_ERR, "the device worker has been on one job for %.1f s (hang-timeout "
			"%.1f s): it looks hung; withholding watchdog pings", busy_ns / 1e9,
			hang_ns / 1e9);
	else if (!hung && n->worker_hung)
		log_msg(LOG_NOTICE, "the device worker is responding again; watchdog pings resume");
	n->worker_hung = hung;
	return !hung;
}

static void sdnotify_format_status(struct rxd_sdnotify *n, char *buf, size_t len)
{
	const struct rxd_stats *st = &n->srv->stats;
	uint64_t busy_ns = worker_busy_ns(n->worker);
	unsigned long long done = (unsigned long long)(st->jobs_ok + st->jobs_failed);

	if (n->worker_hung)
		snprintf(buf, len, "device worker stuck on one job for %.0f s; watchdog pings "
			 "stopped; %u client%s connected", busy_ns / 1e9, st->clients_connected,
			 st->clients_connected == 1 ? "" : "s");
	else
		snprintf(buf, len, "serving %u client%s; %u job%s in the queue (%s); %llu done",
			 st->clients_connected, st->clients_connected == 1 ? "" : "s",
			 st->jobs_queued, st->jobs_queued == 1 ? "" : "s",
			 busy_ns ? "1 running" : "none running", done);
}

/* Send STATUS= when what it says has changed since the last one. */
static void sdnotify_update_status(struct rxd_sdnotify *n)
{
	char status[sizeof(n->status)];

	sdnotify_worker_healthy(n);
	sdnotify_format_status(n, status, sizeof(status));
	if (strcmp(status, n->status) == 0)
		return;
	memcpy(n->status, status, sizeof(status));
	sdnotify_send("STATUS=%s", status);
}

static void sdnotify_on_watchdog(uv_timer_t *t)
{
	struct rxd_sdnotify *n = t->data;

	if (sdnotify_worker_healthy(n))
		sdnotify_send("WATCHDOG=1");
	else
		sdnotify_update_status(n);
}

static void sdnotify_on_status(uv_timer_t *t)
{
	sdnotify_update_status(t->data);
}

int sdnotify_ready(struct rxd_sdnotify *n, uv_loop_t *loop, const struct rxd_config *cfg,
		   struct rxd_server *srv, struct rxd_worker *w)
{
	const char *notify_socket = getenv("NOTIFY_SOCKET");
	uint64_t period_ms;
	int ret;

	memset(n, 0, sizeof(*n));
	n->cfg = cfg;
	n->srv = srv;
	n->worker = w;
	n->watchdog_usec = sdnotify_watchdog_usec();
	sdnotify_format_status(n, n->status, sizeof(n->status));
	if ((ret = sdnotify_send("READY=1\nSTATUS=%s", n->status)) < 0)
		log_msg(LOG_WARNING, "cannot notify the service manager: %s", strerror(-ret));
	if (!notify_socket || !*notify_socket)
		return 0;
	uv_timer_init(loop, &n->status_timer);
	uv_timer_init(loop, &n->watchdog_timer);
	n->status_timer.data = n->watchdog_timer.data = n;
	n->timers = true;
	uv_timer_start(&n->status_timer, sdnotify_on_status, SDNOTIFY_STATUS_PERIOD_MS,
		       SDNOTIFY_STATUS_PERIOD_MS);
	if (n->watchdog_usec) {
		/* Half the period, as sd_watchdog_enabled(3) advises; at least 1 ms. */
		period_ms = n->watchdog_usec / 2000;
		if (period_ms == 0)
			period_ms = 1;
		log_msg(LOG_INFO, "watchdog: pinging every %" PRIu64 " ms while the device worker "
			"is healthy (hang-timeout %.1f s)", period_ms, cfg->hang_timeout_ns / 1e9);
		sdnotify_send("WATCHDOG=1");
		uv_timer_start(&n->watchdog_timer, sdnotify_on_watchdog, period_ms, period_ms);
	}
	return 0;
}

void sdnotify_reloading(struct rxd_sdnotify *n)
{
	struct timespec ts;

	(void)n;
	/* MONOTONIC_USEC lets systemd tell this reload from an earlier one (sd_notify(3)). */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sdnotify_send("RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading the configuration",
		      (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}

void sdnotify_reloaded(struct rxd_sdnotify *n)
{
	sdnotify_format_status(n, n->status, sizeof(n->status));
	sdnotify_send("READY=1\nSTATUS=%s", n->status);
}

void sdnotify_stopping(struct rxd_sdnotify *n)
{
	sdnotify_send("STOPPING=1\nSTATUS=shutting down: finishing the running job");
	if (n->timers) {
		uv_close((uv_handle_t *)&n->watchdog_timer, NULL);
		uv_close((uv_handle_t *)&n->status_timer, NULL);
		n->timers = false;
	}
}

/* daemon-run.h: start a real rxgemmd ($RXGEMMD) for a C test and stop it again.
 *
 * The daemon listens on a fresh socket in a mkdtemp() directory and logs (at debug level)
 * to a file beside it. It gets --device "$RXGEMM_TEST_DEVICE" when that is set. */
#ifndef RXGEMM_TESTS_DAEMON_RUN_H
#define RXGEMM_TESTS_DAEMON_RUN_H

#include <sys/types.h>
#include <sys/un.h>

/* What a test program returns to automake for "skipped". */
#define DAEMON_RUN_SKIP 77

struct daemon_run {
	char dir[256];                               /* the temporary directory ("" when none) */
	char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char log_path[300];
	pid_t pid;                                   /* 0 when not running */
};

/* Create the temporary directory and fill in the paths; nothing is started. The test may
 * put things at socket_path before daemon_run_start (a stale socket file, say).
 * Returns 0 or -1 (with a message on stderr). */
int daemon_run_init(struct daemon_run *d);

/* Start $RXGEMMD --socket ... --log-level debug [--device ...] followed by extra_args
 * (NULL-terminated, may be NULL) and wait until connect() on the socket succeeds (every
 * 50 ms, up to 300 s: PoCL compiles the kernels at first start). Calls daemon_run_init
 * first when d->dir is empty.
 * Returns 0 when the daemon is ready; DAEMON_RUN_SKIP when $RXGEMMD is not set or the
 * daemon exited saying that it found no OpenCL device; -1 on any other failure (the log
 * has been printed to stderr and the daemon, if still running, killed). */
int daemon_run_start(struct daemon_run *d, const char *const *extra_args);

/* Send sig to the daemon (0: send nothing, only wait) and wait for it to exit, at most timeout_s seconds (then SIGKILL).
 * Returns the exit status (0..255), 128 + the signal number when it died of a signal, or
 * -1 when it had to be killed after the timeout or was not running. */
int daemon_run_stop(struct daemon_run *d, int sig, int timeout_s);

/* Lines of the daemon's log so far that contain needle (-1: no log to read). The daemon
 * writes a line before it goes on, so what it logged before a reply is there once the
 * reply has come. */
int daemon_run_log_count(const struct daemon_run *d, const char *needle);

/* Copy the daemon's log to stderr, framed so that it stands out in a test log. */
void daemon_run_dump_log(const struct daemon_run *d);

/* Kill the daemon if it still runs (SIGKILL) and remove the temporary directory. Whatever
 * daemon_run_init made and daemon_run_cleanup has not undone is undone at exit too (by
 * the process that made it), so a test that ends early leaves nothing running. */
void daemon_run_cleanup(struct daemon_run *d);

/* Whether something accepts connections at path (connect() succeeds). */
int daemon_run_connectable(const char *path);

#endif

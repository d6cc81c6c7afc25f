/* daemon-run.c: start and stop a real rxgemmd for the C tests (see daemon-run.h). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-run.h"

#define POLL_MS 50
#define START_TIMEOUT_S 300

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What this process must undo at exit when a test ends early (check's failed assertions
 * call exit()): copies, never pointers to the tests' structs, which may be locals of a
 * function that has returned by then. Each entry belongs to the process that made it, so
 * a forked test leaves its parent's daemon alone. */
#define RUNS_MAX 16
static struct run_entry {
	pid_t owner; /* 0: free */
	pid_t pid;   /* the daemon; 0 when not running */
	char dir[sizeof(((struct daemon_run *)0)->dir)];
} runs[RUNS_MAX];
static int runs_hooked;

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw);

static void runs_at_exit(void)
{
	pid_t me = getpid();

	for (int i = 0; i < RUNS_MAX; i++) {
		struct run_entry *e = &runs[i];
		int status;

		if (e->owner != me)
			continue;
		if (e->pid > 0) {
			kill(e->pid, SIGKILL);
			waitpid(e->pid, &status, 0);
		}
		if (e->dir[0])
			nftw(e->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
		e->owner = 0;
	}
}

static struct run_entry *runs_find(const char *dir)
{
	pid_t me = getpid();

	for (int i = 0; i < RUNS_MAX; i++)
		if (runs[i].owner == me && strcmp(runs[i].dir, dir) == 0)
			return &runs[i];
	return NULL;
}

static void runs_add(const char *dir)
{
	if (!runs_hooked) {
		atexit(runs_at_exit);
		runs_hooked = 1;
	}
	for (int i = 0; i < RUNS_MAX; i++)
		if (runs[i].owner == 0 || kill(runs[i].owner, 0) < 0) {
			runs[i].owner = getpid();
			runs[i].pid = 0;
			snprintf(runs[i].dir, sizeof(runs[i].dir), "%s", dir);
			return;
		}
}

static void runs_set_pid(const char *dir, pid_t pid)
{
	struct run_entry *e = runs_find(dir);

	if (e)
		e->pid = pid;
}

static void runs_forget(const char *dir)
{
	struct run_entry *e = runs_find(dir);

	if (e)
		e->owner = 0;
}

/* d's daemon has been waited for (or never started). */
static void run_reaped(struct daemon_run *d)
{
	d->pid = 0;
	runs_set_pid(d->dir, 0);
}

int daemon_run_connectable(const char *path)
{
	struct sockaddr_un sa;
	int fd, ok;

	if (strlen(path) >= sizeof(sa.sun_path))
		return 0;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, path);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

int daemon_run_init(struct daemon_run *d)
{
	const char *tmp = getenv("TMPDIR");

	memset(d, 0, sizeof(*d));
	if (!tmp || !*tmp)
		tmp = "/tmp";
	/* sun_path is short (108 bytes): keep the directory name short too. */
	if (snprintf(d->dir, sizeof(d->dir), "%s/rxgt.XXXXXX", tmp) >= (int)sizeof(d->dir) ||
	    !mkdtemp(d->dir)) {
		fprintf(stderr, "daemon-run: cannot create a directory under %s: %s\n", tmp,
			strerror(errno));
		d->dir[0] = '\0';
		return -1;
	}
	if (snprintf(d->socket_path, sizeof(d->socket_path), "%s/rxgemmd.sock", d->dir) >=
	    (int)sizeof(d->socket_path)) {
		fprintf(stderr, "daemon-run: socket path under %s too long\n", d->dir);
		return -1;
	}
	snprintf(d->log_path, sizeof(d->log_path), "%s/rxgemmd.log", d->dir);
	runs_add(d->dir);
	return 0;
}

void daemon_run_dump_log(const struct daemon_run *d)
{
	char buf[4096];
	size_t n;
	FILE *f;

	if (!d->log_path[0] || !(f = fopen(d->log_path, "r"))) {
		fprintf(stderr, "daemon-run: no log to show\n");
		return;
	}
	fprintf(stderr, "----- rxgemmd log (%s) -----\n", d->log_path);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stderr);
	fprintf(stderr, "----- end of rxgemmd log -----\n");
	fclose(f);
}

/* Whether the log says that the daemon found no OpenCL device to use: then the test has
 * nothing to run against and is skipped rather than failed. */
int daemon_run_log_count(const struct daemon_run *d, const char *needle)
{
	char line[4096];
	int n = 0;
	FILE *f = d->log_path[0] ? fopen(d->log_path, "r") : NULL;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

static int log_says_no_device(const struct daemon_run *d)
{
	static const char *const patterns[] = {
		"no opencl",        "no device",	      "no such device",
		"device not found", "platform not found", "cl_device_not_found",
		"cl_platform_not_found", "no gpu",	      "no usable device",
	};
	char line[1024];
	int found = 0;
	FILE *f = fopen(d->log_path, "r");

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		for (char *p = line; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++)
			if (strstr(line, patterns[i]))
				found = 1;
	}
	fclose(f);
	return found;
}

static void child_exec(const struct daemon_run *d, const char *exe, const char *const *extra)
{
	const char *argv[64];
	size_t n = 0;
	const char *dev = getenv("RXGEMM_TEST_DEVICE");
	sigset_t none;
	int fd;

	fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		_exit(127);
	dup2(fd, STDERR_FILENO);
	dup2(fd, STDOUT_FILENO);
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0)
		dup2(fd, STDIN_FILENO);
	/* Nothing of the test's (client sockets above all) may leak into the daemon. */
	for (int i = 3; i < 4096; i++)
		close(i);
	/* The daemon must cope with SIGPIPE itself; do not hand it our dispositions. */
	signal(SIGPIPE, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	argv[n++] = exe;
	argv[n++] = "--socket";
	argv[n++] = d->socket_path;
	argv[n++] = "--log-level";
	argv[n++] = "debug";
	if (dev && *dev) {
		argv[n++] = "--device";
		argv[n++] = dev;
	}
	for (size_t i = 0; extra && extra[i] && n < sizeof(argv) / sizeof(argv[0]) - 1; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	execv(exe, (char *const *)argv);
	fprintf(stderr, "daemon-run: cannot execute %s: %s\n", exe, strerror(errno));
	_exit(127);
}

int daemon_run_start(struct daemon_run *d, const char *const *extra_args)
{
	const char *exe = getenv("RXGEMMD");
	double deadline;
	int status;

	if (!exe || !*exe) {
		fprintf(stderr, "daemon-run: RXGEMMD is not set (run this through make check)\n");
		return DAEMON_RUN_SKIP;
	}
	if (access(exe, X_OK) != 0) {
		fprintf(stderr, "daemon-run: %s: %s\n", exe, strerror(errno));
		return -1;
	}
	if (!d->dir[0] && daemon_run_init(d) < 0)
		return -1;

	fflush(NULL);
	d->pid = fork();
	if (d->pid < 0) {
		fprintf(stderr, "daemon-run: fork: %s\n", strerror(errno));
		run_reaped(d);
		return -1;
	}
	if (d->pid == 0)
		child_exec(d, exe, extra_args);
	runs_set_pid(d->dir, d->pid);

	deadline = now_s() + START_TIMEOUT_S;
	for (;;) {
		pid_t r = waitpid(d->pid, &status, WNOHANG);
		if (r == d->pid) {
			run_reaped(d);
			if (log_says_no_device(d)) {
				fprintf(stderr, "daemon-run: rxgemmd found no OpenCL device; "
						"skipping\n");
				daemon_run_dump_log(d);
				return DAEMON_RUN_SKIP;
			}
			if (WIFEXITED(status))
				fprintf(stderr, "daemon-run: rxgemmd exited with status %d "
						"before it was ready\n",
					WEXITSTATUS(status));
			else
				fprintf(stderr, "daemon-run: rxgemmd died of signal %d before "
						"it was ready\n",
					WTERMSIG(status));
			daemon_run_dump_log(d);
			return -1;
		}
		if (daemon_run_connectable(d->socket_path))
			return 0;
		if (now_s() > deadline) {
			fprintf(stderr, "daemon-run: rxgemmd not accepting connections on %s "
					"after %d s\n",
				d->socket_path, START_TIMEOUT_S);
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &status, 0);
			run_reaped(d);
			daemon_run_dump_log(d);
			return -1;
		}
		sleep_ms(POLL_MS);
	}
}

int daemon_run_stop(struct daemon_run *d, int sig, int timeout_s)
{
	double deadline = now_s() + timeout_s;
	int status;

	if (d->pid <= 0)
		return -1;
	if (sig)
		kill(d->pid, sig);
	for (;;) {
		pid_t r = waitpid(d->pid, &status, WNOHANG);
		if (r == d->pid)
			break;
		if (r < 0 && errno != EINTR) {
			run_reaped(d);
			return -1;
		}
		if (now_s() > deadline) {
			fprintf(stderr, "daemon-run: rxgemmd still running %d s after signal %d; "
					"killing it\n",
				timeout_s, sig);
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &status, 0);
			run_reaped(d);
			daemon_run_dump_log(d);
			return -1;
		}
		sleep_ms(POLL_MS);
	}
	run_reaped(d);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

void daemon_run_cleanup(struct daemon_run *d)
{
	if (d->pid > 0) {
		int status;
		kill(d->pid, SIGKILL);
		waitpid(d->pid, &status, 0);
		run_reaped(d);
	}
	if (d->dir[0]) {
		nftw(d->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
		runs_forget(d->dir);
		d->dir[0] = '\0';
	}
}

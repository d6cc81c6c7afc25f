/* cmd-top.c: rxgemm top: the daemon's clients, kernels and rates, redrawn every interval on
 * a terminal (alternate screen, resize on SIGWINCH), or printed frame by frame when the
 * output is not one. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "rxgemm.h"

/* --- top ------------------------------------------------------------------------------- */

static const struct rxg_client_stats *find_client(const struct rxg_status *st, uint32_t id)
{
	for (size_t i = 0; st && i < st->n_clients; i++)
		if (st->clients[i].client_id == id)
			return &st->clients[i];
	return NULL;
}

static const struct rxg_kernel_stats *find_kernel(const struct rxg_status *st,
						  const char *kernel)
{
	for (size_t i = 0; st && i < st->n_kernel_stats; i++)
		if (strcmp(st->kernel_stats[i].kernel, kernel) == 0)
			return &st->kernel_stats[i];
	return NULL;
}

/* A counter's growth since the last frame, per second of the interval; NaN on the first
 * frame. A counter that went down (a restarted daemon) starts again from 0. */
static double rate(uint64_t now, uint64_t before, double interval_s, double scale)
{
	if (!(interval_s > 0))
		return NAN;
	return (double)(now >= before ? now - before : now) / scale / interval_s;
}

/* One frame: the daemon now (cur) and, when prev is given, what changed since prev. */
static void top_frame(FILE *f, const struct rxg_status *prev, const struct rxg_status *cur)
{
	static const char *const chead[] = { "id", "name", "uid", "pid", "in flight", "jobs/s",
					     "GFLOPS", "kernel %", "jobs ok", "failed",
					     "avg queued ms", "avg total ms" };
	static const char *const khead[] = { "kernel", "jobs/s", "GFLOPS", "jobs",
					     "avg kernel ms", "kernel GFLOPS" };
	double dt = prev ? (double)(cur->uptime_ns - prev->uptime_ns) / 1e9 : NAN;
	char up[64], budget[32], reserved[32], in_use[32], peak[32], pool[32];

	format_uptime(up, sizeof(up), cur->uptime_ns);
	fprintf(f, "rxgemm top - up %s, rxgemmd %s, %s\n", up, cur->daemon_version, cur->device);
	fprintf(f, "device:  ");
	if (prev)
		fprintf(f, "%.1f%% busy over the last %.1f s, ",
		       percent(rate(cur->device_busy_ns, prev->device_busy_ns, dt, 1.0), 1e9), dt);
	fprintf(f, "%.1f%% over %.1f s, %.1f%% since start, ", 100.0 * cur->device_utilisation_recent,
	       (double)cur->device_recent_window_ns / 1e9, 100.0 * cur->device_utilisation);
	if (cur->device_current_job_ns)
		fprintf(f, "a job running for %.3f s\n", (double)cur->device_current_job_ns / 1e9);
	else
		fprintf(f, "idle now\n");
	fprintf(f, "jobs:    %llu ok, %llu failed, %llu rejected, %lu queued, %lu waiting for memory",
	       (unsigned long long)cur->jobs_ok, (unsigned long long)cur->jobs_failed,
	       (unsigned long long)cur->requests_rejected, (unsigned long)cur->jobs_queued,
	       (unsigned long)cur->jobs_waiting_for_memory);
	if (prev)
		fprintf(f, "; %.1f jobs/s, %.2f GFLOPS",
		       rate(cur->jobs_ok + cur->jobs_failed, prev->jobs_ok + prev->jobs_failed, dt,
			    1.0),
		       rate(cur->flops_total, prev->flops_total, dt, 1e9));
	fprintf(f, "\n");
	format_bytes(budget, sizeof(budget), cur->vram_budget_bytes);
	format_bytes(reserved, sizeof(reserved), cur->vram_reserved_bytes);
	format_bytes(in_use, sizeof(in_use), cur->vram_in_use_bytes);
	format_bytes(peak, sizeof(peak), cur->vram_peak_bytes);
	format_bytes(pool, sizeof(pool), cur->vram_pool_bytes);
	fprintf(f, "memory:  budget %s, %s reserved, %s in use, peak %s, pool %s\n", budget, reserved,
	       in_use, peak, pool);
	fprintf(f, "clients: %lu connected, %llu since start\n\n", (unsigned long)cur->clients_connected,
	       (unsigned long long)cur->clients_total);

	struct table t = { .ncols = 12, .align = "rlrrrrrrrrrr" };
	table_head(&t, chead);
	for (size_t i = 0; i < cur->n_clients; i++) {
		const struct rxg_client_stats *c = &cur->clients[i];
		const struct rxg_client_stats *p = find_client(prev, c->client_id);
		/* A client new since the last frame did all its work within the interval. */
		static const struct rxg_client_stats zero;
		double cdt = prev ? dt : NAN;

		if (!p)
			p = &zero;
		table_client_id(&t, c, 0);
		table_cell(&t, "%lu", (unsigned long)c->jobs_in_flight);
		table_number(&t, 1, rate(c->jobs_ok + c->jobs_failed, p->jobs_ok + p->jobs_failed,
					 cdt, 1.0));
		table_number(&t, 2, rate(c->flops, p->flops, cdt, 1e9));
		table_number(&t, 1, percent(rate(c->timings.kernel_ns, p->timings.kernel_ns, cdt,
						 1.0), 1e9));
		table_cell(&t, "%llu", (unsigned long long)c->jobs_ok);
		table_cell(&t, "%llu", (unsigned long long)c->jobs_failed);
		table_number(&t, 3, avg_ms(c->timings.queued_ns, c->jobs_ok));
		table_number(&t, 3, avg_ms(c->timings.total_ns, c->jobs_ok));
	}
	table_print(&t, f);
	table_free(&t);
	if (!cur->n_kernel_stats)
		return;
	fprintf(f, "\n");
	struct table k = { .ncols = 6, .align = "lrrrrr" };
	table_head(&k, khead);
	for (size_t i = 0; i < cur->n_kernel_stats; i++) {
		const struct rxg_kernel_stats *v = &cur->kernel_stats[i];
		const struct rxg_kernel_stats *p = find_kernel(prev, v->kernel);
		static const struct rxg_kernel_stats zero;
		double kdt = prev ? dt : NAN;

		if (!p)
			p = &zero;
		table_cell(&k, "%s", v->kernel);
		table_number(&k, 1, rate(v->jobs, p->jobs, kdt, 1.0));
		table_number(&k, 2, rate(v->flops, p->flops, kdt, 1e9));
		table_cell(&k, "%llu", (unsigned long long)v->jobs);
		table_number(&k, 3, avg_ms(v->timings.kernel_ns, v->jobs));
		table_number(&k, 2, gflops((double)v->flops, (double)v->timings.kernel_ns));
	}
	table_print(&k, f);
	table_free(&k);
}

/* --- top: the live view ---------------------------------------------------------------- */

/* Set by the signal handlers, read by the frame loop (which poll() wakes for them). */
static volatile sig_atomic_t top_quit_signal, top_resized;

static void top_on_signal(int sig)
{
	if (sig == SIGWINCH)
		top_resized = 1;
	else
		top_quit_signal = sig;
}

/* The interactive terminal: the alternate screen, keys one at a time without echo, and
 * everything put back on every way out (q, Ctrl-C, SIGTERM, a lost daemon). */
struct top_term {
	int active;
	struct termios saved;
	int have_saved;
	unsigned cols, rows;
};

static void top_term_size(struct top_term *t)
{
	struct winsize ws;

	t->cols = 80;
	t->rows = 24;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row) {
		t->cols = ws.ws_col;
		t->rows = ws.ws_row;
	}
}

static void top_term_enter(struct top_term *t)
{
	struct sigaction sa = { .sa_handler = top_on_signal };

	/* No SA_RESTART: the signal must interrupt poll() so that the loop sees it. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGWINCH, &sa, NULL);
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &t->saved) == 0) {
		struct termios raw = t->saved;

		/* Keys without Enter and without echo; ISIG stays, so Ctrl-C is a SIGINT. */
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		t->have_saved = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
	}
	/* The alternate screen (what was on the terminal comes back on exit), cursor hidden. */
	fputs("\033[?1049h\033[?25l", stdout);
	fflush(stdout);
	t->active = 1;
	top_term_size(t);
}

static void top_term_leave(struct top_term *t)
{
	if (!t->active)
		return;
	fputs("\033[?25h\033[?1049l", stdout);
	fflush(stdout);
	if (t->have_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &t->saved);
	t->active = 0;
}

/* The display width of the first len bytes of a UTF-8 line: continuation bytes take no
 * column (wide characters are rare in device and client names; they count as one). */
static size_t top_cut(const char *line, size_t len, unsigned cols)
{
	size_t i = 0, w = 0;

	for (; i < len; i++) {
		if (((unsigned char)line[i] & 0xc0) == 0x80)
			continue;
		if (w == cols)
			break;
		w++;
	}
	return i;
}

/* A rendered frame onto the terminal: from the top left, each line cut to the width (a
 * line never wraps) and the rest of it cleared, no more lines than the screen holds. */
static void top_draw(const struct top_term *t, const char *frame)
{
	unsigned row = 0;

	fputs("\033[H", stdout);
	for (const char *p = frame; *p && row < t->rows; row++) {
		size_t len = strcspn(p, "\n");

		fwrite(p, 1, top_cut(p, len, t->cols), stdout);
		fputs("\033[K", stdout);
		p += len + (p[len] == '\n');
		/* No newline after the last row: it would scroll the screen by one. */
		if (row + 1 < t->rows && *p)
			fputs("\r\n", stdout);
	}
	fputs("\033[J", stdout);
	fflush(stdout);
}

/* Wait up to ms for a key, a signal or a resize. Returns 1 to quit ('q' or a signal), 0
 * otherwise; *resized says a redraw is due. */
static int top_wait(int interactive, int ms, int *resized)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000u;

	*resized = 0;
	for (;;) {
		uint64_t now = now_ns();
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		int left = now >= end ? 0 : (int)((end - now + 999999) / 1000000);
		int n;

		if (top_quit_signal)
			return 1;
		if (top_resized) {
			top_resized = 0;
			*resized = 1;
			return 0;
		}
		if (left == 0)
			return 0;
		n = poll(&pfd, interactive ? 1 : 0, left);
		if (n > 0 && (pfd.revents & POLLIN)) {
			char keys[32];
			ssize_t got = read(STDIN_FILENO, keys, sizeof(keys));

			for (ssize_t i = 0; i < got; i++)
				if (keys[i] == 'q' || keys[i] == 'Q')
					return 1;
			/* End of input (stdin closed): keep going on the timer alone. */
			if (got == 0)
				interactive = 0;
		}
	}
}

/* rxgemm top: a frame every -d seconds like top(1), over one connection (so top is one
 * client in its own table, not a new one each frame). On a terminal each frame replaces
 * the last on the alternate screen, cut to the terminal's size; q or Ctrl-C quits. In batch
 * mode (-b, or stdout not a terminal) frames follow one another, a blank line between;
 * --json prints each frame as one line of JSON (status --json's object), for scripts.
 * About 100 lines: the options, then the one loop of fetch, draw and wait. */
int cmd_top(int argc, char **argv, const char *socket)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "delay", required_argument, NULL, 'd' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "batch", no_argument, NULL, 'b' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct rxg_status *prev = NULL, *cur = NULL;
	struct top_term term = { 0 };
	float delay_s = 2.0f;
	int64_t iterations = 0; /* 0: until interrupted */
	int opt, rc, batch = !isatty(STDOUT_FILENO), json = 0, resized = 0;
	char *frame = NULL;
	size_t frame_len = 0;
	rxg_client *c = NULL;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":d:n:bh", options, NULL)) != -1) {
		switch (opt) {
		case OPT_SOCKET: socket = optarg; break;
		case 'd':
			if ((rc = parse_float("-d", optarg, &delay_s)) != EXIT_OK)
				return rc;
			if (delay_s < 0.01f || delay_s > 86400.0f)
				return usage_error("-d: '%s' is not between 0.01 and 86400 seconds",
						   optarg);
			break;
		case 'n':
			if ((rc = parse_int64("-n", optarg, 1, INT64_MAX, &iterations)) != EXIT_OK)
				return rc;
			break;
		case 'b': batch = 1; break;
		case OPT_JSON: json = 1; batch = 1; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return option_error(opt, argv);
		}
	}
	if (optind < argc)
		return usage_error("top: unexpected argument '%s'", argv[optind]);
	if ((rc = rxg_connect(socket, CLIENT_NAME "-top", &c)) != RXG_OK)
		return daemon_error(NULL, rc);
	if (!batch)
		top_term_enter(&term);
	for (int64_t n = 0; !iterations || n < iterations; n++) {
		if (n) {
			/* A resize redraws the last frame at once; the next one comes on time. */
			do {
				if (top_wait(!batch, (int)(delay_s * 1000.0f), &resized)) {
					rc = EXIT_OK;
					goto out;
				}
				if (resized) {
					top_term_size(&term);
					top_draw(&term, frame);
				}
			} while (resized);
		}
		if ((rc = rxg_status(c, &cur)) != RXG_OK) {
			/* One connection throughout: a daemon that restarts ends top with exit 3. */
			top_term_leave(&term);
			rc = daemon_error(c, rc);
			goto out;
		}
		if (json) {
			status_json(cur);
		} else if (batch) {
			if (n)
				fputc('\n', stdout);
			top_frame(stdout, prev, cur);
		} else {
			FILE *mem;

			free(frame);
			frame = NULL;
			if (!(mem = open_memstream(&frame, &frame_len))) {
				top_term_leave(&term);
				rc = file_error("out of memory");
				goto out;
			}
			top_frame(mem, prev, cur);
			fclose(mem);
			top_draw(&term, frame);
		}
		fflush(stdout);
		rxg_status_free(prev);
		prev = cur;
		cur = NULL;
	}
	rc = EXIT_OK;
out:
	top_term_leave(&term);
	free(frame);
	rxg_status_free(prev);
	rxg_close(c);
	return rc;
}

/* bench-sharing.c: how rxgemmd shares its device between clients. A benchmark, not a test:
 * it starts no daemon (tests/bench-sharing.sh does), it talks to the one at --socket
 * through the public librxgemm API alone, as any client would.
 *
 *   bench-sharing --socket PATH [--clients N] [--seconds S] [--size n] [--json]
 *       N forked processes, one connection each, submit n x n x n GEMMs back to back for
 *       S seconds, all starting together: aggregate GFLOPS and jobs/s, each client's share
 *       and Jain's fairness index over the clients' throughputs (1: equal shares, 1/N:
 *       one client got everything), and the device's busy fraction meanwhile (the
 *       daemon's own figure, from two status snapshots).
 *   bench-sharing --socket PATH --latency [--size n] [--iterations I] [--json]
 *       one client's round trip for a tiny job (default 8^3), I times: percentiles.
 *   bench-sharing --socket PATH --neighbour [--size n] [--big-size N] [--seconds S]
 *       the tiny job's round trip for S seconds alone, then for S seconds beside another
 *       process submitting N^3 GEMMs back to back: what a big neighbour costs a small job.
 *
 * Every result is verified. The matrices hold small integers (-2..2), so every product
 * and partial sum is an exact float (below 2^24 for n < 2^20) in any summation order, and
 * C is checked exactly, in O(n^2) per job: C x = A (B x) for two random vectors x of +-1
 * (Freivalds' check: a wrong C passes one vector with probability at most 1/2), plus 8
 * random elements summed out in full. C is filled with NaNs before each job, so that a
 * result the daemon did not write is caught too.
 *
 * Exit status: 0 when every job succeeded and verified, 1 when one failed or was wrong,
 * 2 on a usage error, 3 when the daemon cannot be reached. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rxgemm.h"

#define MAX_CLIENTS 256
#define MAX_SIZE 16384
#define CHECK_VECTORS 2
#define CHECK_ELEMENTS 8
#define CLIENT_NAME "bench-sharing"

struct opts {
	const char *socket;
	int clients;
	double seconds;
	int64_t size;     /* 0: the mode's default */
	int64_t big_size;
	int64_t iterations;
	int latency, neighbour, json;
};

/* One process's results, in memory shared with the parent. */
struct result {
	uint64_t jobs;        /* succeeded */
	uint64_t verified;    /* of those, checked and right */
	uint64_t wrong;       /* succeeded but C was wrong */
	uint64_t failed;      /* the daemon returned an error */
	uint64_t flops;
	uint64_t start_ns, end_ns; /* from the common start to its last job's end */
	uint64_t latency_sum_ns, latency_max_ns;
	int error_code;
	char error[240];
	atomic_int ready;     /* connected and warmed up (one job done) */
	atomic_int running;   /* about to submit its first measured job */
};

struct shared {
	atomic_int stop; /* the neighbour stops after its current job */
	struct result r[MAX_CLIENTS];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *xmalloc(size_t bytes)
{
	void *p = malloc(bytes ? bytes : 1);

	if (!p) {
		fprintf(stderr, "bench-sharing: out of memory (%zu bytes)\n", bytes);
		exit(1);
	}
	return p;
}

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: plenty for test matrices and check vectors */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* ---- a problem and its check ------------------------------------------------------------ */

/* n x n x n, row-major, A and B of small integers; y[v] = A (B x[v]) kept for the check. */
struct problem {
	int64_t n;
	float *a, *b, *c;
	double *x[CHECK_VECTORS], *y[CHECK_VECTORS];
	uint64_t seed;
};

static void problem_init(struct problem *p, int64_t n, uint64_t seed)
{
	size_t elems = (size_t)n * (size_t)n;
	double *bx = xmalloc((size_t)n * sizeof(double));

	p->n = n;
	p->seed = seed ? seed : 1;
	p->a = xmalloc(elems * sizeof(float));
	p->b = xmalloc(elems * sizeof(float));
	p->c = xmalloc(elems * sizeof(float));
	for (size_t i = 0; i < elems; i++) {
		p->a[i] = (float)((int)(rng_next(&p->seed) % 5) - 2);
		p->b[i] = (float)((int)(rng_next(&p->seed) % 5) - 2);
	}
	for (int v = 0; v < CHECK_VECTORS; v++) {
		p->x[v] = xmalloc((size_t)n * sizeof(double));
		p->y[v] = xmalloc((size_t)n * sizeof(double));
		for (int64_t j = 0; j < n; j++)
			p->x[v][j] = rng_next(&p->seed) & 1 ? 1.0 : -1.0;
		for (int64_t i = 0; i < n; i++) {
			double s = 0;
			for (int64_t j = 0; j < n; j++)
				s += (double)p->b[i * n + j] * p->x[v][j];
			bx[i] = s;
		}
		for (int64_t i = 0; i < n; i++) {
			double s = 0;
			for (int64_t j = 0; j < n; j++)
				s += (double)p->a[i * n + j] * bx[j];
			p->y[v][i] = s;
		}
	}
	free(bx);
}

static void problem_fini(struct problem *p)
{
	free(p->a);
	free(p->b);
	free(p->c);
	for (int v = 0; v < CHECK_VECTORS; v++) {
		free(p->x[v]);
		free(p->y[v]);
	}
}

/* Whether C is exactly A B (see the top of the file). */
static int problem_check(struct problem *p)
{
	int64_t n = p->n;

	for (int v = 0; v < CHECK_VECTORS; v++)
		for (int64_t i = 0; i < n; i++) {
			double s = 0;
			for (int64_t j = 0; j < n; j++)
				s += (double)p->c[i * n + j] * p->x[v][j];
			if (!(fabs(s - p->y[v][i]) < 0.5)) /* NaN fails too */
				return 0;
		}
	for (int e = 0; e < CHECK_ELEMENTS; e++) {
		int64_t i = (int64_t)(rng_next(&p->seed) % (uint64_t)n);
		int64_t j = (int64_t)(rng_next(&p->seed) % (uint64_t)n);
		double s = 0;
		for (int64_t l = 0; l < n; l++)
			s += (double)p->a[i * n + l] * (double)p->b[l * n + j];
		if (p->c[i * n + j] != (float)s)
			return 0;
	}
	return 1;
}

/* One job, timed and verified, into r. The daemon's timings go to t (may be NULL). Returns
 * 0, or -1 when the daemon failed it (r->error says why). */
static int run_job(rxg_client *c, struct problem *p, struct result *r, struct rxg_timings *t)
{
	struct rxg_gemm_args g = { .layout = RXG_ROW_MAJOR, .m = p->n, .n = p->n, .k = p->n,
				   .alpha = 1.0f, .beta = 0.0f, .a = p->a, .b = p->b, .c = p->c };
	uint64_t t0, ns;
	int rc;

	memset(p->c, 0xff, (size_t)p->n * (size_t)p->n * sizeof(float)); /* NaNs */
	t0 = now_ns();
	rc = rxg_gemm(c, &g, t);
	ns = now_ns() - t0;
	if (rc != RXG_OK) {
		r->failed++;
		if (!r->error_code) {
			r->error_code = rc;
			snprintf(r->error, sizeof(r->error), "%s: %s", rxg_strerror(rc),
				 rxg_errmsg(c));
		}
		return -1;
	}
	r->jobs++;
	r->flops += 2ull * (uint64_t)p->n * (uint64_t)p->n * (uint64_t)p->n;
	r->latency_sum_ns += ns;
	if (ns > r->latency_max_ns)
		r->latency_max_ns = ns;
	if (problem_check(p))
		r->verified++;
	else
		r->wrong++;
	return 0;
}

static int connect_or_say(const struct opts *o, const char *name, rxg_client **c)
{
	int rc = rxg_connect(o->socket, name, c);

	if (rc != RXG_OK)
		fprintf(stderr, "bench-sharing: cannot connect to %s: %s: %s\n",
			o->socket ? o->socket : "the default socket", rxg_strerror(rc),
			rxg_errmsg(NULL));
	return rc;
}

/* Device busy fraction and the device's name from the daemon's status. */
struct snapshot {
	uint64_t uptime_ns, busy_ns;
	char device[256];
};

static int snapshot_take(rxg_client *c, struct snapshot *s)
{
	struct rxg_status *st = NULL;
	int rc = rxg_status(c, &st);

	if (rc != RXG_OK)
		return rc;
	s->uptime_ns = st->uptime_ns;
	s->busy_ns = st->device_busy_ns;
	snprintf(s->device, sizeof(s->device), "%s", st->device);
	rxg_status_free(st);
	return RXG_OK;
}

static double busy_between(const struct snapshot *a, const struct snapshot *b)
{
	return b->uptime_ns > a->uptime_ns
		       ? (double)(b->busy_ns - a->busy_ns) / (double)(b->uptime_ns - a->uptime_ns)
		       : NAN;
}

static void json_number(double v)
{
	if (isfinite(v))
		printf("%.6g", v);
	else
		printf("null");
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

/* ---- (a) N clients, back to back -------------------------------------------------------- */

static _Noreturn void client_main(const struct opts *o, struct result *r, int index,
				  int start_fd, uint64_t deadline_s_ns)
{
	struct problem p;
	rxg_client *c = NULL;
	char name[64], byte;
	uint64_t deadline;

	snprintf(name, sizeof(name), CLIENT_NAME "-%d", index);
	problem_init(&p, o->size, 0x9e3779b97f4a7c15ull * (uint64_t)(index + 1));
	if (connect_or_say(o, name, &c) != RXG_OK) {
		r->error_code = RXG_ECONNECT;
		snprintf(r->error, sizeof(r->error), "cannot connect");
		atomic_store(&r->ready, 1);
		_exit(3);
	}
	run_job(c, &p, r, NULL); /* warm-up: kernels, buffers; not counted */
	memset(r, 0, offsetof(struct result, ready));
	atomic_store(&r->ready, 1);
	/* Everyone starts when the parent closes the pipe. */
	while (read(start_fd, &byte, 1) < 0 && errno == EINTR)
		;
	r->start_ns = now_ns();
	deadline = r->start_ns + deadline_s_ns;
	atomic_store(&r->running, 1);
	while (now_ns() < deadline)
		if (run_job(c, &p, r, NULL) < 0)
			break;
	r->end_ns = now_ns();
	rxg_close(c);
	problem_fini(&p);
	_exit(0);
}

static int wait_children(const pid_t *pids, int n)
{
	int bad = 0;

	for (int i = 0; i < n; i++) {
		int status;

		if (pids[i] <= 0)
			continue;
		while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			bad = 1;
	}
	return bad;
}

static int mode_clients(const struct opts *o, struct shared *sh)
{
	pid_t pids[MAX_CLIENTS] = { 0 };
	struct snapshot before, after;
	int start_pipe[2], bad = 0, n = o->clients;
	rxg_client *c = NULL;
	uint64_t total_jobs = 0, total_flops = 0, verified = 0, wrong = 0, failed = 0;
	uint64_t t_start = UINT64_MAX, t_end = 0;
	double sum_x = 0, sum_x2 = 0, x[MAX_CLIENTS];

	if (connect_or_say(o, CLIENT_NAME "-observer", &c) != RXG_OK)
		return 3;
	if (pipe(start_pipe) < 0) {
		perror("bench-sharing: pipe");
		rxg_close(c);
		return 1;
	}
	fflush(stdout);
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("bench-sharing: fork");
			bad = 1;
			break;
		}
		if (pids[i] == 0) {
			close(start_pipe[1]);
			client_main(o, &sh->r[i], i, start_pipe[0],
				    (uint64_t)(o->seconds * 1e9));
		}
	}
	close(start_pipe[0]);
	for (int i = 0; i < n && !bad; i++)
		while (!atomic_load(&sh->r[i].ready))
			usleep(1000);
	if (snapshot_take(c, &before) != RXG_OK)
		bad = 1;
	close(start_pipe[1]); /* go */
	bad |= wait_children(pids, n);
	if (snapshot_take(c, &after) != RXG_OK)
		bad = 1;
	rxg_close(c);

	for (int i = 0; i < n; i++) {
		const struct result *r = &sh->r[i];
		double s = r->end_ns > r->start_ns ? (double)(r->end_ns - r->start_ns) / 1e9 : NAN;

		total_jobs += r->jobs;
		total_flops += r->flops;
		verified += r->verified;
		wrong += r->wrong;
		failed += r->failed;
		if (r->start_ns && r->start_ns < t_start)
			t_start = r->start_ns;
		if (r->end_ns > t_end)
			t_end = r->end_ns;
		x[i] = isnan(s) ? 0 : (double)r->jobs / s;
		sum_x += x[i];
		sum_x2 += x[i] * x[i];
		if (r->error_code)
			fprintf(stderr, "bench-sharing: client %d: %s\n", i, r->error);
	}
	double wall = t_end > t_start ? (double)(t_end - t_start) / 1e9 : NAN;
	double jain = sum_x2 > 0 ? sum_x * sum_x / ((double)n * sum_x2) : NAN;
	double busy = busy_between(&before, &after);

	if (o->json) {
		printf("{\"mode\":\"clients\",\"device\":");
		json_string(before.device);
		printf(",\"clients\":%d,\"size\":%lld,\"seconds\":", n, (long long)o->size);
		json_number(wall);
		printf(",\"jobs\":%llu,\"verified\":%llu,\"wrong\":%llu,\"failed\":%llu,"
		       "\"jobs_per_s\":",
		       (unsigned long long)total_jobs, (unsigned long long)verified,
		       (unsigned long long)wrong, (unsigned long long)failed);
		json_number((double)total_jobs / wall);
		printf(",\"gflops\":");
		json_number((double)total_flops / wall / 1e9);
		printf(",\"jain\":");
		json_number(jain);
		printf(",\"device_busy\":");
		json_number(busy);
		printf(",\"per_client\":[");
		for (int i = 0; i < n; i++) {
			const struct result *r = &sh->r[i];
			printf("%s{\"jobs\":%llu,\"jobs_per_s\":", i ? "," : "",
			       (unsigned long long)r->jobs);
			json_number(x[i]);
			printf(",\"gflops\":");
			json_number(x[i] * 2.0 * pow((double)o->size, 3) / 1e9);
			printf(",\"share\":");
			json_number(total_jobs ? (double)r->jobs / (double)total_jobs : NAN);
			printf(",\"mean_ms\":");
			json_number(r->jobs ? (double)r->latency_sum_ns / (double)r->jobs / 1e6 : NAN);
			printf(",\"max_ms\":");
			json_number((double)r->latency_max_ns / 1e6);
			printf("}");
		}
		printf("]}\n");
	} else {
		printf("device: %s\n", before.device);
		printf("%d clients, %lld^3 GEMMs back to back for %.2f s: %llu jobs (%llu verified, "
		       "%llu wrong, %llu failed)\n",
		       n, (long long)o->size, wall, (unsigned long long)total_jobs,
		       (unsigned long long)verified, (unsigned long long)wrong,
		       (unsigned long long)failed);
		printf("aggregate: %.1f jobs/s, %.2f GFLOPS; Jain's fairness %.4f; device busy "
		       "%.1f%%\n",
		       (double)total_jobs / wall, (double)total_flops / wall / 1e9, jain,
		       100.0 * busy);
		printf("%6s %8s %10s %10s %7s %9s %9s\n", "client", "jobs", "jobs/s", "GFLOPS",
		       "share", "mean ms", "max ms");
		for (int i = 0; i < n; i++) {
			const struct result *r = &sh->r[i];
			printf("%6d %8llu %10.1f %10.2f %6.1f%% %9.3f %9.3f\n", i,
			       (unsigned long long)r->jobs, x[i],
			       x[i] * 2.0 * pow((double)o->size, 3) / 1e9,
			       total_jobs ? 100.0 * (double)r->jobs / (double)total_jobs : 0.0,
			       r->jobs ? (double)r->latency_sum_ns / (double)r->jobs / 1e6 : 0.0,
			       (double)r->latency_max_ns / 1e6);
		}
	}
	if (bad)
		return 1;
	return wrong || failed || verified != total_jobs || total_jobs == 0 ? 1 : 0;
}

/* ---- (b), (c) latency of a tiny job ---------------------------------------------------- */

struct latency {
	double *ms;      /* round trips */
	double *daemon_ms; /* the daemon's total_ns of each */
	size_t n, cap;
	struct result r;
};

static void latency_add(struct latency *l, double ms, double daemon_ms)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 1024;
		l->ms = realloc(l->ms, l->cap * sizeof(double));
		l->daemon_ms = realloc(l->daemon_ms, l->cap * sizeof(double));
		if (!l->ms || !l->daemon_ms) {
			fprintf(stderr, "bench-sharing: out of memory\n");
			exit(1);
		}
	}
	l->ms[l->n] = ms;
	l->daemon_ms[l->n++] = daemon_ms;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The q-quantile (nearest rank) of v[0..n), sorted in place. */
static double quantile(double *v, size_t n, double q)
{
	size_t i;

	if (!n)
		return NAN;
	qsort(v, n, sizeof(double), cmp_double);
	i = (size_t)ceil(q * (double)n);
	return v[i ? i - 1 : 0];
}

/* Tiny jobs on c: iterations of them, or until deadline_ns when iterations is 0. */
static void latency_run(rxg_client *c, struct problem *p, struct latency *l, int64_t iterations,
			uint64_t deadline_ns)
{
	for (int64_t i = 0; iterations ? i < iterations : now_ns() < deadline_ns; i++) {
		struct rxg_timings t;
		uint64_t before = l->r.latency_sum_ns;

		if (run_job(c, p, &l->r, &t) < 0)
			break;
		latency_add(l, (double)(l->r.latency_sum_ns - before) / 1e6,
			    (double)t.total_ns / 1e6);
	}
}

static void latency_print(const char *label, struct latency *l, int json)
{
	double p50 = quantile(l->ms, l->n, 0.5), p90 = quantile(l->ms, l->n, 0.9);
	double p99 = quantile(l->ms, l->n, 0.99), max = l->n ? l->ms[l->n - 1] : NAN;
	double min = l->n ? l->ms[0] : NAN, d50 = quantile(l->daemon_ms, l->n, 0.5);

	if (json) {
		printf("\"%s\":{\"jobs\":%zu,\"verified\":%llu,\"wrong\":%llu,\"failed\":%llu,"
		       "\"min_ms\":",
		       label, l->n, (unsigned long long)l->r.verified,
		       (unsigned long long)l->r.wrong, (unsigned long long)l->r.failed);
		json_number(min);
		printf(",\"p50_ms\":");
		json_number(p50);
		printf(",\"p90_ms\":");
		json_number(p90);
		printf(",\"p99_ms\":");
		json_number(p99);
		printf(",\"max_ms\":");
		json_number(max);
		printf(",\"daemon_p50_ms\":");
		json_number(d50);
		printf("}");
	} else {
		printf("%-8s %8zu %9.3f %9.3f %9.3f %9.3f %9.3f %12.3f\n", label, l->n, min, p50,
		       p90, p99, max, d50);
	}
}

static int latency_bad(const struct latency *l)
{
	return l->r.wrong || l->r.failed || l->r.verified != l->n || l->n == 0;
}

static int mode_latency(const struct opts *o)
{
	struct latency l = { 0 };
	struct problem p;
	rxg_client *c = NULL;
	int bad;

	if (connect_or_say(o, CLIENT_NAME "-latency", &c) != RXG_OK)
		return 3;
	problem_init(&p, o->size, 7);
	run_job(c, &p, &l.r, NULL); /* warm-up */
	memset(&l.r, 0, sizeof(l.r));
	latency_run(c, &p, &l, o->iterations, 0);
	if (o->json) {
		printf("{\"mode\":\"latency\",\"device\":");
		json_string(rxg_server_info(c)->device);
		printf(",\"size\":%lld,", (long long)o->size);
		latency_print("alone", &l, 1);
		printf("}\n");
	} else {
		printf("device: %s\n", rxg_server_info(c)->device);
		printf("round trip of a %lld^3 GEMM, ms (daemon: the daemon's own total):\n",
		       (long long)o->size);
		printf("%-8s %8s %9s %9s %9s %9s %9s %12s\n", "", "jobs", "min", "p50", "p90",
		       "p99", "max", "daemon p50");
		latency_print("alone", &l, 0);
	}
	if (l.r.error_code)
		fprintf(stderr, "bench-sharing: %s\n", l.r.error);
	bad = latency_bad(&l);
	free(l.ms);
	free(l.daemon_ms);
	problem_fini(&p);
	rxg_close(c);
	return bad;
}

/* The big neighbour: N^3 GEMMs back to back until told to stop. */
static _Noreturn void neighbour_main(const struct opts *o, struct shared *sh)
{
	struct result *r = &sh->r[0];
	struct problem p;
	rxg_client *c = NULL;

	problem_init(&p, o->big_size, 99);
	if (connect_or_say(o, CLIENT_NAME "-neighbour", &c) != RXG_OK) {
		r->error_code = RXG_ECONNECT;
		snprintf(r->error, sizeof(r->error), "cannot connect");
		atomic_store(&r->running, 1);
		_exit(3);
	}
	r->start_ns = now_ns();
	atomic_store(&r->running, 1);
	while (!atomic_load(&sh->stop))
		if (run_job(c, &p, r, NULL) < 0)
			break;
	r->end_ns = now_ns();
	rxg_close(c);
	problem_fini(&p);
	_exit(0);
}

static int mode_neighbour(const struct opts *o, struct shared *sh)
{
	struct latency alone = { 0 }, beside = { 0 };
	const struct result *nr = &sh->r[0];
	struct problem p;
	rxg_client *c = NULL;
	pid_t pid;
	int bad = 0;
	uint64_t phase_ns = (uint64_t)(o->seconds * 1e9);

	if (connect_or_say(o, CLIENT_NAME "-small", &c) != RXG_OK)
		return 3;
	problem_init(&p, o->size, 7);
	run_job(c, &p, &alone.r, NULL); /* warm-up */
	memset(&alone.r, 0, sizeof(alone.r));
	latency_run(c, &p, &alone, 0, now_ns() + phase_ns);

	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("bench-sharing: fork");
		return 1;
	}
	if (pid == 0)
		neighbour_main(o, sh);
	while (!atomic_load(&sh->r[0].running))
		usleep(1000);
	usleep(50000); /* its first job is on its way */
	latency_run(c, &p, &beside, 0, now_ns() + phase_ns);
	atomic_store(&sh->stop, 1);
	bad |= wait_children(&pid, 1);

	double nwall = nr->end_ns > nr->start_ns ? (double)(nr->end_ns - nr->start_ns) / 1e9 : NAN;
	double ngflops = (double)nr->flops / nwall / 1e9;
	if (o->json) {
		printf("{\"mode\":\"neighbour\",\"device\":");
		json_string(rxg_server_info(c)->device);
		printf(",\"size\":%lld,\"big_size\":%lld,\"seconds\":", (long long)o->size,
		       (long long)o->big_size);
		json_number(o->seconds);
		printf(",");
		latency_print("alone", &alone, 1);
		printf(",");
		latency_print("beside", &beside, 1);
		printf(",\"neighbour\":{\"jobs\":%llu,\"verified\":%llu,\"wrong\":%llu,"
		       "\"failed\":%llu,\"gflops\":",
		       (unsigned long long)nr->jobs, (unsigned long long)nr->verified,
		       (unsigned long long)nr->wrong, (unsigned long long)nr->failed);
		json_number(ngflops);
		printf("},\"p50_ratio\":");
		json_number(quantile(beside.ms, beside.n, 0.5) / quantile(alone.ms, alone.n, 0.5));
		printf("}\n");
	} else {
		printf("device: %s\n", rxg_server_info(c)->device);
		printf("round trip of a %lld^3 GEMM, ms, alone and beside a client submitting "
		       "%lld^3 GEMMs back to back (%.1f s each):\n",
		       (long long)o->size, (long long)o->big_size, o->seconds);
		printf("%-8s %8s %9s %9s %9s %9s %9s %12s\n", "", "jobs", "min", "p50", "p90",
		       "p99", "max", "daemon p50");
		latency_print("alone", &alone, 0);
		latency_print("beside", &beside, 0);
		printf("p50 beside / alone: %.1fx; the neighbour ran %llu jobs at %.2f GFLOPS\n",
		       quantile(beside.ms, beside.n, 0.5) / quantile(alone.ms, alone.n, 0.5),
		       (unsigned long long)nr->jobs, ngflops);
	}
	if (alone.r.error_code)
		fprintf(stderr, "bench-sharing: small client: %s\n", alone.r.error);
	if (beside.r.error_code)
		fprintf(stderr, "bench-sharing: small client: %s\n", beside.r.error);
	if (nr->error_code)
		fprintf(stderr, "bench-sharing: neighbour: %s\n", nr->error);
	bad |= latency_bad(&alone) || latency_bad(&beside) || nr->wrong || nr->failed ||
	       nr->verified != nr->jobs;
	free(alone.ms);
	free(alone.daemon_ms);
	free(beside.ms);
	free(beside.daemon_ms);
	problem_fini(&p);
	rxg_close(c);
	return bad;
}

/* ---- options --------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: bench-sharing --socket PATH [--clients N] [--seconds S] [--size n] [--json]\n"
		"       bench-sharing --socket PATH --latency [--size n] [--iterations I] [--json]\n"
		"       bench-sharing --socket PATH --neighbour [--size n] [--big-size N]\n"
		"                     [--seconds S] [--json]\n"
		"Modes: N clients submitting n^3 GEMMs back to back for S seconds (default 4\n"
		"clients, 5 s, n = 256); --latency: a tiny job's round trip (n = 8, I = 2000);\n"
		"--neighbour: that round trip alone and beside N^3 GEMMs (N = 2048, S = 5 per\n"
		"phase). Every result is verified; exit 1 when one was wrong or failed.\n");
}

static int parse_num(const char *opt, const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (!*s || *end || errno || !(v >= min && v <= max)) {
		fprintf(stderr, "bench-sharing: %s: '%s' is not a number from %g to %g\n", opt, s,
			min, max);
		return -1;
	}
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "clients", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, 't' },
		{ "size", required_argument, NULL, 'n' },
		{ "big-size", required_argument, NULL, 'N' },
		{ "iterations", required_argument, NULL, 'i' },
		{ "latency", no_argument, NULL, 'l' },
		{ "neighbour", no_argument, NULL, 'b' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .clients = 4, .seconds = 5, .big_size = 2048, .iterations = 2000 };
	struct shared *sh;
	double v;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (opt) {
		case 's': o.socket = optarg; break;
		case 'c':
			if (parse_num("--clients", optarg, 1, MAX_CLIENTS, &v) < 0)
				return 2;
			o.clients = (int)v;
			break;
		case 't':
			if (parse_num("--seconds", optarg, 0.01, 86400, &v) < 0)
				return 2;
			o.seconds = v;
			break;
		case 'n':
			if (parse_num("--size", optarg, 1, MAX_SIZE, &v) < 0)
				return 2;
			o.size = (int64_t)v;
			break;
		case 'N':
			if (parse_num("--big-size", optarg, 1, MAX_SIZE, &v) < 0)
				return 2;
			o.big_size = (int64_t)v;
			break;
		case 'i':
			if (parse_num("--iterations", optarg, 1, 1e9, &v) < 0)
				return 2;
			o.iterations = (int64_t)v;
			break;
		case 'l': o.latency = 1; break;
		case 'b': o.neighbour = 1; break;
		case 'j': o.json = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc || (o.latency && o.neighbour)) {
		usage(stderr);
		return 2;
	}
	if (!o.size)
		o.size = o.latency || o.neighbour ? 8 : 256;
	/* A client that dies mid-write must not take us with it. */
	signal(SIGPIPE, SIG_IGN);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("bench-sharing: mmap");
		return 1;
	}
	memset(sh, 0, sizeof(*sh));
	if (o.latency)
		rc = mode_latency(&o);
	else if (o.neighbour)
		rc = mode_neighbour(&o, sh);
	else
		rc = mode_clients(&o, sh);
	munmap(sh, sizeof(*sh));
	return rc;
}

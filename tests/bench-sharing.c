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
 *       one client's round trip for a tiny job (default 8^3), I times: min, p50, p90,
 *       p99 and max.
 *   bench-sharing --socket PATH --neighbour [--size n] [--big-size N] [--seconds S]
 *       the tiny job's round trip for S seconds alone, then for S seconds beside another
 *       process submitting N^3 GEMMs back to back: what a big neighbour costs a small job.
 *   bench-sharing --socket PATH --overhead [--sizes n,...] [--repeat R] [--baseline FILE]
 *       one n^3 GEMM end to end through the daemon (client wall clock, matrices in shared
 *       memory, median and best of R), beside the daemon's own phases; with FILE, the
 *       output of rxgemm-bench --e2e --csv (the same GEMM's writes, compute and read done
 *       in-process), the ratio of the two: what serving through a daemon costs.
 *       Then R more jobs back to back ("b2b"), with nothing between them: PyTorch's own
 *       timing loop (torch_anchors.py times each call and runs the next at once), so the
 *       figure to set beside PyTorch's. The first pass checks every C, which leaves a few
 *       milliseconds of CPU between its jobs (NaNs in, the check out), longer than the
 *       daemon busy-polls after a job (1 ms on a GPU): each of its jobs then pays thread
 *       wake-ups that PyTorch's loop does not. The b2b pass checks only its last C.
 *   --shm (the first three modes): every process keeps A, B and C in shared-memory
 *       buffers (rxg_buffer_create) made once and used for all its jobs, so that no matrix
 *       travels through the socket; --overhead does so unless --no-shm.
 *   --resident (--overhead only): A, B and C are device tensors made once, so that a job
 *       moves no matrix at all (C is read back for the check after each checked job and
 *       after the last b2b one, untimed): the daemon's counterpart of a PyTorch user's
 *       tensors already on the GPU.
 *
 * Every result is verified. The matrices hold small integers (-2..2), so every product
 * and partial sum is an exact float (below 2^24 for n < 2^20) in any summation order, and
 * C is checked exactly, in O(n^2) per job: C x = A (B x) for two random vectors x of +-1
 * (Freivalds' check: a wrong C passes one vector with probability at most 1/2), plus 8
 * random elements summed out in full. C is filled with NaNs before each job, so that a
 * result the daemon did not write is caught too. (--overhead's back-to-back pass alone
 * fills C once and checks it after its last job: a check between its jobs would be the gap
 * that pass is there to leave out.)
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
	int latency, neighbour, overhead, json;
	int shm;          /* matrices in shared-memory buffers (--shm; --overhead: unless --no-shm) */
	int resident;     /* --overhead --resident: A, B and C in device tensors */
	int64_t sizes[16]; /* --overhead's n */
	int n_sizes;
	int64_t repeat, warmup;
	const char *baseline; /* rxgemm-bench --e2e --csv output to compare with */
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
	/* --shm: A, B and C live in these buffers (a, b and c point into them), made once
	 * and used for every job; NULL: a, b and c are malloc'd host arrays, which librxgemm
	 * stages through shared memory of its own (or sends in the frames when
	 * RXGEMM_STAGE_BYTES=off). */
	rxg_buffer *buf[3];
	/* --resident: A, B and C are device tensors made once (buf[2] then receives C, read
	 * back after each job for the check, outside the timing). */
	rxg_tensor *t[3];
};

static void problem_init(struct problem *p, int64_t n, uint64_t seed)
{
	size_t elems = (size_t)n * (size_t)n;
	double *bx = xmalloc((size_t)n * sizeof(double));

	memset(p, 0, sizeof(*p));
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

/* Move A, B and C into shared-memory buffers of c's (one each, so that every matrix starts
 * on a page): the jobs then carry references instead of matrices. 0, or an RXG_E* code with
 * a sentence in err. The buffers are freed by problem_fini, which must come before
 * rxg_close(c). */
static int problem_share(struct problem *p, rxg_client *c, char *err, size_t errlen)
{
	float **m[3] = { &p->a, &p->b, &p->c };
	size_t bytes = (size_t)p->n * (size_t)p->n * sizeof(float); /* n <= MAX_SIZE */
	int rc;

	for (int i = 0; i < 3; i++) {
		if ((rc = rxg_buffer_create(c, bytes, &p->buf[i])) != RXG_OK) {
			snprintf(err, errlen, "cannot create a shared-memory buffer of %zu bytes: "
					      "%s: %s",
				 bytes, rxg_strerror(rc), rxg_errmsg(c));
			return rc;
		}
		memcpy(rxg_buffer_ptr(p->buf[i]), *m[i], bytes);
		free(*m[i]);
		*m[i] = rxg_buffer_ptr(p->buf[i]);
	}
	return RXG_OK;
}

/* Put A and B in device tensors, and C in a third (after problem_share, whose buffer C then
 * is read back into). 0, or an RXG_E* code with a sentence in err. */
static int problem_resident(struct problem *p, rxg_client *c, char *err, size_t errlen)
{
	const int64_t dims[2] = { p->n, p->n };
	const float *m[3] = { p->a, p->b, NULL };
	int rc;

	for (int i = 0; i < 3; i++)
		if ((rc = rxg_tensor_create(c, dims, 2, m[i], &p->t[i])) != RXG_OK) {
			snprintf(err, errlen, "cannot create a %lld x %lld device tensor: %s: %s",
				 (long long)p->n, (long long)p->n, rxg_strerror(rc), rxg_errmsg(c));
			return rc;
		}
	return RXG_OK;
}

static void problem_fini(struct problem *p)
{
	float **m[3] = { &p->a, &p->b, &p->c };

	for (int i = 0; i < 3; i++) {
		rxg_tensor_free(p->t[i]);
		p->t[i] = NULL;
	}
	for (int i = 0; i < 3; i++) {
		if (p->buf[i])
			rxg_buffer_free(p->buf[i]);
		else
			free(*m[i]);
		*m[i] = NULL;
		p->buf[i] = NULL;
	}
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

/* The arguments of C = A B (beta 0) on p, wherever p keeps its matrices: device tensors
 * (--resident), shared-memory buffers (--shm) or host arrays. One place for both of
 * --overhead's passes, so that they time the same request. */
static struct rxg_gemm_args problem_gemm_args(const struct problem *p)
{
	struct rxg_gemm_args g = { .layout = RXG_ROW_MAJOR, .m = p->n, .n = p->n, .k = p->n,
				   .alpha = 1.0f, .beta = 0.0f, .a = p->a, .b = p->b, .c = p->c };

	if (p->t[0]) {
		/* All on the device: the job moves no matrix at all. */
		g.a = g.b = NULL;
		g.c = NULL;
		g.a_tensor = p->t[0];
		g.b_tensor = p->t[1];
		g.c_out_tensor = p->t[2];
	} else if (p->buf[0]) {
		/* The result goes to c_out_buf, not c_buf: C as c_buf would also be sent up to
		 * the device (the result replaces it in place), a copy beta 0 does not need. */
		g.a = g.b = NULL;
		g.c = NULL;
		g.a_buf = p->buf[0];
		g.b_buf = p->buf[1];
		g.c_out_buf = p->buf[2];
	}
	return g;
}

/* Count a job the daemon failed with rc in r, keeping the first error's code and words. */
static void result_fail(struct result *r, rxg_client *c, int rc)
{
	r->failed++;
	if (!r->error_code) {
		r->error_code = rc;
		snprintf(r->error, sizeof(r->error), "%s: %s", rxg_strerror(rc), rxg_errmsg(c));
	}
}

/* One job, timed and verified, into r. The daemon's timings go to t (may be NULL). Returns
 * 0, or -1 when the daemon failed it (r->error says why). */
static int run_job(rxg_client *c, struct problem *p, struct result *r, struct rxg_timings *t)
{
	struct rxg_gemm_args g = problem_gemm_args(p);
	uint64_t t0, ns;
	int rc;

	memset(p->c, 0xff, (size_t)p->n * (size_t)p->n * sizeof(float)); /* NaNs */
	t0 = now_ns();
	rc = rxg_gemm(c, &g, t);
	ns = now_ns() - t0;
	if (rc == RXG_OK && p->t[2])
		rc = rxg_tensor_read_to_buffer(p->t[2], p->buf[2], 0); /* for the check */
	if (rc != RXG_OK) {
		result_fail(r, c, rc);
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
	if (o->shm && (r->error_code = problem_share(&p, c, r->error, sizeof(r->error)))) {
		atomic_store(&r->ready, 1);
		_exit(1);
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
	problem_fini(&p);
	rxg_close(c);
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
		printf(",\"clients\":%d,\"size\":%lld,\"shm\":%s,\"seconds\":", n,
		       (long long)o->size, o->shm ? "true" : "false");
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
		printf("%d clients, %lld^3 GEMMs back to back%s for %.2f s: %llu jobs (%llu "
		       "verified, %llu wrong, %llu failed)\n",
		       n, (long long)o->size, o->shm ? " (shared memory)" : "", wall, (unsigned long long)total_jobs,
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
	if (o->shm && problem_share(&p, c, l.r.error, sizeof(l.r.error)) != RXG_OK) {
		fprintf(stderr, "bench-sharing: %s\n", l.r.error);
		problem_fini(&p);
		rxg_close(c);
		return 1;
	}
	run_job(c, &p, &l.r, NULL); /* warm-up */
	memset(&l.r, 0, sizeof(l.r));
	latency_run(c, &p, &l, o->iterations, 0);
	if (o->json) {
		printf("{\"mode\":\"latency\",\"device\":");
		json_string(rxg_server_info(c)->device);
		printf(",\"size\":%lld,\"shm\":%s,", (long long)o->size, o->shm ? "true" : "false");
		latency_print("alone", &l, 1);
		printf("}\n");
	} else {
		printf("device: %s\n", rxg_server_info(c)->device);
		printf("round trip of a %lld^3 GEMM%s, ms (daemon: the daemon's own total):\n",
		       (long long)o->size, o->shm ? " in shared memory" : "");
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
	if (o->shm && (r->error_code = problem_share(&p, c, r->error, sizeof(r->error)))) {
		atomic_store(&r->running, 1);
		_exit(1);
	}
	r->start_ns = now_ns();
	atomic_store(&r->running, 1);
	while (!atomic_load(&sh->stop))
		if (run_job(c, &p, r, NULL) < 0)
			break;
	r->end_ns = now_ns();
	problem_fini(&p);
	rxg_close(c);
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
	if (o->shm && problem_share(&p, c, alone.r.error, sizeof(alone.r.error)) != RXG_OK) {
		fprintf(stderr, "bench-sharing: %s\n", alone.r.error);
		problem_fini(&p);
		rxg_close(c);
		return 1;
	}
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
		printf(",\"size\":%lld,\"big_size\":%lld,\"shm\":%s,\"seconds\":",
		       (long long)o->size, (long long)o->big_size, o->shm ? "true" : "false");
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
		       "%lld^3 GEMMs back to back (%.1f s each)%s:\n",
		       (long long)o->size, (long long)o->big_size, o->seconds,
		       o->shm ? ", both in shared memory" : "");
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

/* ---- (d) what the daemon path costs one GEMM -------------------------------------------- */

/* The median of v[0..n) (the mean of the middle two when n is even), sorted in place; the
 * same rule as rxgemm-bench --e2e, so that the two programs' figures compare. */
static double median(double *v, size_t n)
{
	if (!n)
		return NAN;
	qsort(v, n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A row of rxgemm-bench --e2e --csv: the in-process time of the same GEMM. */
struct baseline_row {
	int64_t n;
	char host[16]; /* "malloc" or "pinned" */
	double median_ms, best_ms;
};

#define MAX_BASELINE 128

/* Read the square, untransposed rows of an rxgemm-bench --e2e --csv file. The number of rows,
 * or -1 (said on stderr) when the file cannot be read or is not such a file. */
static int baseline_load(const char *path, struct baseline_row *rows)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int n = 0, header = 0;

	if (!f) {
		fprintf(stderr, "bench-sharing: --baseline %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) && n < MAX_BASELINE) {
		long long m, nn, k;
		int ta, tb;
		struct baseline_row *r = &rows[n];

		if (strncmp(line, "m,n,k,trans_a,trans_b,host,", 27) == 0) {
			header = 1;
			continue;
		}
		if (sscanf(line, "%lld,%lld,%lld,%d,%d,%15[^,],%*[^,],%lf,%lf", &m, &nn, &k, &ta, &tb,
			   r->host, &r->median_ms, &r->best_ms) != 8)
			continue;
		if (m == nn && nn == k && !ta && !tb) {
			r->n = nn;
			n++;
		}
	}
	fclose(f);
	if (!header) {
		fprintf(stderr, "bench-sharing: --baseline %s is not the output of rxgemm-bench "
				"--e2e --csv\n",
			path);
		return -1;
	}
	return n;
}

static double baseline_find(const struct baseline_row *rows, int count, int64_t n,
			    const char *host)
{
	for (int i = 0; i < count; i++)
		if (rows[i].n == n && strcmp(rows[i].host, host) == 0)
			return rows[i].median_ms;
	return NAN;
}

/* The kernel that ran the most jobs between two status snapshots, into name. */
static void kernel_between(const struct rxg_status *before, const struct rxg_status *after,
			   char *name, size_t len)
{
	uint64_t most = 0;

	snprintf(name, len, "?");
	for (size_t i = 0; i < after->n_kernel_stats; i++) {
		const struct rxg_kernel_stats *k = &after->kernel_stats[i];
		uint64_t jobs = k->jobs;

		for (size_t j = 0; before && j < before->n_kernel_stats; j++)
			if (strcmp(before->kernel_stats[j].kernel, k->kernel) == 0)
				jobs -= before->kernel_stats[j].jobs;
		if (jobs > most) {
			most = jobs;
			snprintf(name, len, "%s", k->kernel);
		}
	}
}

/* The figures of one size; the arrays hold one entry per timed job, in ms: n of the
 * checked pass (wall and the daemon's phases), b2b_n of the back-to-back one (b2b). */
struct overhead_run {
	double *wall, *total, *queued, *h2d, *kernel, *d2h;
	size_t n;
	double *b2b;
	size_t b2b_n;
	struct result r; /* the checked pass; wrong and failed count the back-to-back one too */
	char kernel_name[128];
};

/* The back-to-back pass of overhead_size: o->repeat jobs with nothing in between, timed as
 * run_job times one, into run->b2b; the last C alone is checked. Only a failure or a wrong
 * C is counted in run->r (jobs and verified stay the checked pass's). 0, or -1 when a job
 * failed (run->r.error says why). */
static int overhead_b2b(const struct opts *o, rxg_client *c, struct problem *p,
			struct overhead_run *run)
{
	struct rxg_gemm_args g = problem_gemm_args(p);
	int rc = RXG_OK;

	/* NaNs once: a C that no job wrote still fails the check at the end. */
	memset(p->c, 0xff, (size_t)p->n * (size_t)p->n * sizeof(float));
	for (int64_t i = 0; i < o->repeat; i++) {
		uint64_t t0 = now_ns();

		rc = rxg_gemm(c, &g, NULL);
		run->b2b[run->b2b_n] = (double)(now_ns() - t0) / 1e6;
		if (rc != RXG_OK)
			break;
		run->b2b_n++;
	}
	if (rc == RXG_OK && p->t[2])
		rc = rxg_tensor_read_to_buffer(p->t[2], p->buf[2], 0); /* for the check */
	if (rc != RXG_OK) {
		result_fail(&run->r, c, rc);
		return -1;
	}
	if (!problem_check(p))
		run->r.wrong++;
	return 0;
}

/* Time o->repeat jobs of n^3 on c after o->warmup untimed ones, each checked, then
 * o->repeat more back to back (overhead_b2b). 0, or -1 when a job failed or was wrong or
 * a buffer could not be made (said on stderr). */
static int overhead_size(const struct opts *o, rxg_client *c, int64_t n, struct overhead_run *run)
{
	struct rxg_status *before = NULL, *after = NULL;
	struct problem p;
	double **cols[7] = { &run->wall, &run->total, &run->queued, &run->h2d, &run->kernel,
			     &run->d2h, &run->b2b };
	int ret = -1;

	memset(run, 0, sizeof(*run));
	for (int i = 0; i < 7; i++)
		*cols[i] = xmalloc((size_t)o->repeat * sizeof(double));
	problem_init(&p, n, 0x5851f42d4c957f2dull * (uint64_t)n);
	if ((o->shm || o->resident) &&
	    problem_share(&p, c, run->r.error, sizeof(run->r.error)) != RXG_OK) {
		fprintf(stderr, "bench-sharing: %s\n", run->r.error);
		goto out;
	}
	if (o->resident && problem_resident(&p, c, run->r.error, sizeof(run->r.error)) != RXG_OK) {
		fprintf(stderr, "bench-sharing: %s\n", run->r.error);
		goto out;
	}
	for (int64_t w = 0; w < o->warmup; w++)
		if (run_job(c, &p, &run->r, NULL) < 0)
			goto fail;
	memset(&run->r, 0, sizeof(run->r));
	rxg_status(c, &before);
	for (int64_t i = 0; i < o->repeat; i++) {
		struct rxg_timings t;
		uint64_t sum = run->r.latency_sum_ns;

		if (run_job(c, &p, &run->r, &t) < 0)
			goto fail;
		run->wall[run->n] = (double)(run->r.latency_sum_ns - sum) / 1e6;
		run->total[run->n] = (double)t.total_ns / 1e6;
		run->queued[run->n] = (double)t.queued_ns / 1e6;
		run->h2d[run->n] = (double)t.h2d_ns / 1e6;
		run->kernel[run->n] = (double)t.kernel_ns / 1e6;
		run->d2h[run->n++] = (double)t.d2h_ns / 1e6;
	}
	if (rxg_status(c, &after) == RXG_OK)
		kernel_between(before, after, run->kernel_name, sizeof(run->kernel_name));
	if (overhead_b2b(o, c, &p, run) < 0)
		goto fail;
	ret = run->r.wrong ? -1 : 0;
	goto out;
fail:
	fprintf(stderr, "bench-sharing: %lld^3: %s\n", (long long)n, run->r.error);
out:
	rxg_status_free(before);
	rxg_status_free(after);
	problem_fini(&p);
	return ret;
}

static void overhead_free(struct overhead_run *run)
{
	free(run->wall);
	free(run->total);
	free(run->queued);
	free(run->h2d);
	free(run->kernel);
	free(run->d2h);
	free(run->b2b);
}

/* The least of v[0..n); NaN when n is 0. */
static double minimum(const double *v, size_t n)
{
	double least = n ? v[0] : NAN;

	for (size_t i = 1; i < n; i++)
		if (v[i] < least)
			least = v[i];
	return least;
}

static int mode_overhead(const struct opts *o)
{
	struct baseline_row base[MAX_BASELINE];
	int n_base = 0, bad = 0;
	rxg_client *c = NULL;

	if (o->baseline && (n_base = baseline_load(o->baseline, base)) < 0)
		return 2;
	if (connect_or_say(o, CLIENT_NAME "-overhead", &c) != RXG_OK)
		return 3;
	if (o->json) {
		printf("{\"mode\":\"overhead\",\"device\":");
		json_string(rxg_server_info(c)->device);
		printf(",\"shm\":%s,\"resident\":%s,\"repeat\":%lld,\"warmup\":%lld,"
		       "\"results\":[",
		       o->shm && !o->resident ? "true" : "false", o->resident ? "true" : "false",
		       (long long)o->repeat, (long long)o->warmup);
	} else {
		printf("device: %s\n", rxg_server_info(c)->device);
		printf("one n^3 GEMM through the daemon (C = A B, beta 0, matrices %s), %lld runs "
		       "after %lld warm-up,\neach checked, then %lld back to back (b2b), ms:\n",
		       o->resident ? "in device tensors"
		       : o->shm    ? "in shared memory"
				   : getenv("RXGEMM_STAGE_BYTES") &&
					     !strcmp(getenv("RXGEMM_STAGE_BYTES"), "off")
				   ? "in the frames"
				   : "as host arrays, staged by librxgemm above its threshold",
		       (long long)o->repeat, (long long)o->warmup, (long long)o->repeat);
		printf("%6s %9s %9s %9s %9s %9s %8s %8s %8s %8s %9s %7s %8s %8s  %s\n", "n",
		       "wall p50", "wall best", "b2b p50", "b2b best", "daemon", "queued", "h2d",
		       "kernel", "d2h", "GFLOPS", "/daemon", "/inproc", "/pinned",
		       "kernel variant");
	}
	fflush(stdout);
	for (int i = 0; i < o->n_sizes; i++) {
		int64_t n = o->sizes[i];
		struct overhead_run run;
		int rc = overhead_size(o, c, n, &run);
		double wall_best = minimum(run.wall, run.n), b2b_best = minimum(run.b2b, run.b2b_n);
		double b2b = median(run.b2b, run.b2b_n);
		double wall = median(run.wall, run.n), total = median(run.total, run.n);
		double queued = median(run.queued, run.n), h2d = median(run.h2d, run.n);
		double kernel = median(run.kernel, run.n), d2h = median(run.d2h, run.n);
		double gflops = 2.0 * (double)n * (double)n * (double)n / (wall * 1e6);
		double inproc = baseline_find(base, n_base, n, "malloc");
		double pinned = baseline_find(base, n_base, n, "pinned");

		bad |= rc < 0 || run.r.wrong || run.r.failed || run.r.verified != run.n;
		if (o->json) {
			printf("%s{\"n\":%lld,\"jobs\":%zu,\"verified\":%llu,\"wrong\":%llu,"
			       "\"failed\":%llu,\"kernel\":",
			       i ? "," : "", (long long)n, run.n, (unsigned long long)run.r.verified,
			       (unsigned long long)run.r.wrong, (unsigned long long)run.r.failed);
			json_string(run.kernel_name[0] ? run.kernel_name : "?");
			printf(",\"wall_p50_ms\":");
			json_number(wall);
			printf(",\"wall_best_ms\":");
			json_number(wall_best);
			printf(",\"b2b_p50_ms\":");
			json_number(b2b);
			printf(",\"b2b_best_ms\":");
			json_number(b2b_best);
			printf(",\"daemon_p50_ms\":");
			json_number(total);
			printf(",\"queued_p50_ms\":");
			json_number(queued);
			printf(",\"h2d_p50_ms\":");
			json_number(h2d);
			printf(",\"kernel_p50_ms\":");
			json_number(kernel);
			printf(",\"d2h_p50_ms\":");
			json_number(d2h);
			printf(",\"gflops\":");
			json_number(gflops);
			printf(",\"ratio_daemon\":");
			json_number(wall / total);
			printf(",\"inproc_p50_ms\":");
			json_number(inproc);
			printf(",\"ratio_inproc\":");
			json_number(wall / inproc);
			printf(",\"pinned_p50_ms\":");
			json_number(pinned);
			printf(",\"ratio_pinned\":");
			json_number(wall / pinned);
			printf("}");
		} else {
			printf("%6lld %9.3f %9.3f %9.3f %9.3f %9.3f %8.3f %8.3f %8.3f %8.3f %9.1f "
			       "%7.3f %8.3f %8.3f  %s\n",
			       (long long)n, wall, wall_best, b2b, b2b_best, total, queued, h2d,
			       kernel, d2h, gflops, wall / total, wall / inproc, wall / pinned,
			       run.kernel_name[0] ? run.kernel_name : "?");
		}
		fflush(stdout);
		overhead_free(&run);
	}
	if (o->json)
		printf("]}\n");
	else
		printf("wall: rxg_gemm's round trip in this process, each job checked (C "
		       "filled with NaNs\nbefore, checked after); b2b: the same round trip, R "
		       "more jobs back to back with\nnothing between them (PyTorch's timing "
		       "loop), the last C checked; daemon: the\ndaemon's own time from request "
		       "to reply; queued, h2d, kernel, d2h: the daemon's\nphases (device times); "
		       "/daemon: wall over daemon; /inproc, /pinned: wall over\nrxgemm-bench "
		       "--e2e's median (--baseline) with malloc'd and pinned host memory\n(nan: "
		       "no baseline for that n).\n");
	rxg_close(c);
	return bad;
}

/* ---- options --------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: bench-sharing --socket PATH [--clients N] [--seconds S] [--size n] [--shm]\n"
		"                     [--json]\n"
		"       bench-sharing --socket PATH --latency [--size n] [--iterations I] [--shm]\n"
		"                     [--json]\n"
		"       bench-sharing --socket PATH --neighbour [--size n] [--big-size N]\n"
		"                     [--seconds S] [--shm] [--json]\n"
		"       bench-sharing --socket PATH --overhead [--sizes n,n,...] [--repeat R]\n"
		"                     [--warmup W] [--baseline FILE] [--no-shm | --resident]\n"
		"                     [--json]\n"
		"Modes: N clients submitting n^3 GEMMs back to back for S seconds (default 4\n"
		"clients, 5 s, n = 256); --latency: a tiny job's round trip (n = 8, I = 2000),\n"
		"min/p50/p90/p99/max; --neighbour: that round trip alone and beside N^3 GEMMs\n"
		"(N = 2048, S = 5 per phase); --overhead: one n^3 GEMM (C = A B, beta 0) end to\n"
		"end through the daemon, median and best of R runs after W warm-up ones (default\n"
		"1024,2048,4096, R = 20, W = 2), each checked, and of R more back to back with\n"
		"nothing between them (b2b, as PyTorch times; the last one checked), beside the\n"
		"daemon's own phases, and over the in-process time of the same GEMM when FILE\n"
		"holds rxgemm-bench --e2e --csv output.\n"
		"--shm: A, B and C in shared-memory buffers made once per process and used for\n"
		"every job (--overhead uses them unless --no-shm); --resident: A, B and C in\n"
		"device tensors made once (--overhead). Every result is verified (--overhead's\n"
		"b2b runs: the last); exit 1 when one was wrong or failed.\n");
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

/* --sizes n,n,...: up to 16 sizes from 1 to MAX_SIZE. */
static int parse_sizes(const char *s, struct opts *o)
{
	char *copy = strdup(s), *tok, *save = NULL;
	double v;
	int ret = 0;

	if (!copy)
		return -1;
	o->n_sizes = 0;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (o->n_sizes == (int)(sizeof(o->sizes) / sizeof(o->sizes[0]))) {
			fprintf(stderr, "bench-sharing: --sizes: at most %zu sizes\n",
				sizeof(o->sizes) / sizeof(o->sizes[0]));
			ret = -1;
			break;
		}
		if ((ret = parse_num("--sizes", tok, 1, MAX_SIZE, &v)) < 0)
			break;
		o->sizes[o->n_sizes++] = (int64_t)v;
	}
	if (!ret && !o->n_sizes) {
		fprintf(stderr, "bench-sharing: --sizes: no size in '%s'\n", s);
		ret = -1;
	}
	free(copy);
	return ret;
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
		{ "shm", no_argument, NULL, 'm' },
		{ "no-shm", no_argument, NULL, 'M' },
		{ "overhead", no_argument, NULL, 'o' },
		{ "resident", no_argument, NULL, 'R' },
		{ "sizes", required_argument, NULL, 'S' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "baseline", required_argument, NULL, 'B' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .clients = 4, .seconds = 5, .big_size = 2048, .iterations = 2000,
			  .shm = -1, .repeat = 20, .warmup = 2 };
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
		case 'o': o.overhead = 1; break;
		case 'R': o.resident = 1; break;
		case 'j': o.json = 1; break;
		case 'm': o.shm = 1; break;
		case 'M': o.shm = 0; break;
		case 'S':
			if (parse_sizes(optarg, &o) < 0)
				return 2;
			break;
		case 'r':
			if (parse_num("--repeat", optarg, 1, 1e6, &v) < 0)
				return 2;
			o.repeat = (int64_t)v;
			break;
		case 'w':
			if (parse_num("--warmup", optarg, 0, 1e6, &v) < 0)
				return 2;
			o.warmup = (int64_t)v;
			break;
		case 'B': o.baseline = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc || o.latency + o.neighbour + o.overhead > 1 ||
	    (o.resident && !o.overhead)) {
		usage(stderr);
		return 2;
	}
	if (!o.size)
		o.size = o.latency || o.neighbour ? 8 : 256;
	if (o.shm < 0)
		o.shm = o.overhead;
	if (!o.n_sizes)
		parse_sizes("1024,2048,4096", &o);
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
	else if (o.overhead)
		rc = mode_overhead(&o);
	else
		rc = mode_clients(&o, sh);
	munmap(sh, sizeof(*sh));
	return rc;
}

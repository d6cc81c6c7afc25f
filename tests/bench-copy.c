/* bench-copy.c: the host copies of librxgemm's staging (client/copy.c, built in), alone.
 *
 *   bench-copy [--sizes n,n,...] [--threads t,t,...] [--reps R]
 *
 * For each n: the copies a staged n^3 GEMM makes (A and B, n^2 floats each, into a shared
 * buffer; C, n^2 floats, back out of it), timed with t copy threads. "reused": the
 * buffer is the pool's, mapped and faulted in by an earlier job (a GEMM's steady state);
 * "fresh": a new memfd mapping with its pages faulted in first by the copy threads (as
 * stage.c does for a new buffer), the time of that included. Prints a CSV line per
 * (n, threads): median ms of each and GB/s of the reused copies (bytes read + written).
 * The GPU machine's tests/gpu/run-datapath.sh runs it beside the end-to-end figures. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "copy.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A comma-separated list of positive numbers into v (at most max): their count, or -1. */
static int parse_list(const char *s, long *v, int max)
{
	int n = 0;

	while (*s && n < max) {
		char *end;

		errno = 0;
		v[n] = strtol(s, &end, 10);
		if (errno || end == s || v[n] < 1 || (*end && *end != ','))
			return -1;
		n++;
		s = *end ? end + 1 : end;
	}
	return *s ? -1 : n;
}

static void *map_fresh(size_t bytes)
{
	int fd = memfd_create("bench-copy", MFD_CLOEXEC);
	void *p;

	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0) {
		perror("bench-copy: memfd");
		exit(1);
	}
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror("bench-copy: mmap");
		exit(1);
	}
	return p;
}

/* The staged job's copies with its buffer at shm (A at 0, B after it, C after B). */
static void staged_copies(unsigned char *shm, const float *a, const float *b, float *c,
			  size_t mat)
{
	struct rxg__copy in[2] = { rxg__copy_flat(shm, a, mat),
				   rxg__copy_flat(shm + mat, b, mat) };
	struct rxg__copy out = rxg__copy_flat(c, shm + 2 * mat, mat);

	in[0].uncached = in[1].uncached = true; /* as stage.c copies them */
	rxg__copy_run(in, 2);
	rxg__copy_run(&out, 1);
}

int main(int argc, char **argv)
{
	long sizes[16] = { 1024, 2048, 4096, 8192 }, threads[16] = { 1, 2, 4, 8, 16 };
	int n_sizes = 4, n_threads = 5, reps = 7;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--sizes") && i + 1 < argc)
			n_sizes = parse_list(argv[++i], sizes, 16);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			n_threads = parse_list(argv[++i], threads, 16);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else
			n_sizes = -1;
		if (n_sizes < 0 || n_threads < 0 || reps < 1 || reps > 1000) {
			fprintf(stderr, "usage: bench-copy [--sizes n,n,...] [--threads t,t,...] "
					"[--reps R]\n");
			return 2;
		}
	}
	/* The thread count is the library's, read once: each count runs in a child. */
	printf("n,threads,reused_ms,reused_gbps,fresh_ms\n");
	fflush(stdout);
	for (int s = 0; s < n_sizes; s++)
		for (int t = 0; t < n_threads; t++) {
			size_t mat = (size_t)sizes[s] * (size_t)sizes[s] * sizeof(float);
			char env[16];
			pid_t pid = fork();

			if (pid < 0)
				return 1;
			if (pid) {
				int status;

				while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
					;
				if (!WIFEXITED(status) || WEXITSTATUS(status))
					return 1;
				continue;
			}
			snprintf(env, sizeof(env), "%ld", threads[t]);
			setenv("RXGEMM_COPY_THREADS", env, 1);
			rxg__copy_hold();
			float *a = malloc(mat), *b = malloc(mat), *c = malloc(mat);
			double reused[1000], fresh[1000];
			if (!a || !b || !c)
				_exit(1);
			memset(a, 1, mat);
			memset(b, 2, mat);
			memset(c, 3, mat);
			unsigned char *shm = map_fresh(3 * mat);
			struct rxg__copy touch = rxg__copy_flat(shm, NULL, 3 * mat);
			rxg__copy_run(&touch, 1);
			staged_copies(shm, a, b, c, mat); /* warm: threads started */
			for (int r = 0; r < reps; r++) {
				double t0 = now_ms();

				staged_copies(shm, a, b, c, mat);
				reused[r] = now_ms() - t0;
			}
			munmap(shm, 3 * mat);
			for (int r = 0; r < reps; r++) {
				double t0 = now_ms();
				unsigned char *f = map_fresh(3 * mat);

				touch = rxg__copy_flat(f, NULL, 3 * mat);
				rxg__copy_run(&touch, 1);
				staged_copies(f, a, b, c, mat);
				fresh[r] = now_ms() - t0;
				munmap(f, 3 * mat);
			}
			double ms = median(reused, reps);
			printf("%ld,%u,%.3f,%.2f,%.3f\n", sizes[s], rxg__copy_threads(), ms,
			       6.0 * (double)mat / (ms * 1e6), median(fresh, reps));
			fflush(stdout);
			rxg__copy_drop();
			free(a);
			free(b);
			free(c);
			_exit(0);
		}
	return 0;
}

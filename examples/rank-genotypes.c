/* rank-genotypes.c: rank DARTS genotypes by their latency on rxgemmd's device.
 *
 *   rank-genotypes [--socket PATH] [--dataset cifar10|imagenet] [--batch N]
 *                  [--C C] [--layers L] [--size S] [--repeat R]
 *                  [--random N [--seed S]] [GENOTYPE-FILE...]
 *
 * Evaluates the four named genotypes (or, with --random, N genotypes drawn from the DARTS
 * search space with seed S) and each file's printed Genotype(...) text, by default at the
 * paper's settings, with seeded weights, then prints them fastest first with their
 * parameters, multiply-adds and device memory: the kind of table hardware-aware NAS
 * works from. Each line also gives what the evaluation cost the client in all (the
 * daemon planning the network, making and folding its weights, the warm-up and timed
 * runs, the reply), and the summary how much of that was not the timed runs. Uses only
 * the public API (rxgemm.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rxgemm.h"

struct entry {
	char name[64];
	char *text;
	struct rxg_nas_result *r;
	double wall_ms;  /* rxg_nas_eval's whole call */
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* splitmix64 (Steele, Lea, Flood 2014): the next value of the sequence at *state. */
static uint64_t next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A genotype as DARTS derives one from its search space: 4 nodes, each with two edges from
 * two different earlier states, ops other than 'none', every node concatenated. Printed
 * into buf (malloc'd) the way the reference prints it. */
static char *random_genotype(uint64_t *state)
{
	static const char *const ops[] = { "max_pool_3x3", "avg_pool_3x3", "skip_connect",
					   "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
					   "dil_conv_5x5" };
	char *buf = malloc(2048);
	size_t len = 0;

	if (!buf)
		return NULL;
	len += (size_t)snprintf(buf + len, 2048 - len, "Genotype(");
	for (int cell = 0; cell < 2; cell++) {
		len += (size_t)snprintf(buf + len, 2048 - len, "%s=[", cell ? "reduce" : "normal");
		for (int node = 0; node < 4; node++) {
			int j0 = (int)(next_random(state) % (uint64_t)(node + 2)), j1;

			do
				j1 = (int)(next_random(state) % (uint64_t)(node + 2));
			while (j1 == j0);
			for (int e = 0; e < 2; e++)
				len += (size_t)snprintf(buf + len, 2048 - len, "%s('%s', %d)",
							node || e ? ", " : "",
							ops[next_random(state) % 7], e ? j1 : j0);
		}
		len += (size_t)snprintf(buf + len, 2048 - len, "], %s_concat=[2, 3, 4, 5]%s",
					cell ? "reduce" : "normal", cell ? ")" : ", ");
	}
	return buf;
}

static int by_latency(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	return (x->r->latency_median_ns > y->r->latency_median_ns) -
	       (x->r->latency_median_ns < y->r->latency_median_ns);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = malloc(65536);
	if (buf) {
		n = fread(buf, 1, 65535, f);
		buf[n] = 0;
	}
	fclose(f);
	return buf;
}

int main(int argc, char **argv)
{
	static const char *const named[] = { "DARTS_V1", "DARTS_V2", "NASNet", "AmoebaNet" };
	struct entry e[1024 + 64];
	size_t n = 0, ok = 0;
	long n_random = 0;
	uint64_t seed = 1;
	double wall_sum = 0, timed_sum = 0;
	const char *socket = NULL;
	struct rxg_nas_args a = { 0 };
	rxg_client *c;
	int rc, i;

	a.warmup = 3;
	a.repeat = 10;
	a.weight_seed = a.input_seed = 1;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
			socket = argv[++i];
		} else if (strcmp(argv[i], "--dataset") == 0 && i + 1 < argc) {
			a.dataset = strcmp(argv[++i], "imagenet") == 0 ? RXG_NAS_IMAGENET : RXG_NAS_CIFAR;
		} else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
			a.batch = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--C") == 0 && i + 1 < argc) {
			a.c = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc) {
			a.layers = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
			a.height = a.width = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
			a.repeat = (uint32_t)atoi(argv[++i]);
		} else if (strcmp(argv[i], "--random") == 0 && i + 1 < argc) {
			n_random = atol(argv[++i]);
			if (n_random < 1 || n_random > 1024) {
				fprintf(stderr, "%s: --random takes 1 to 1024\n", argv[0]);
				return 2;
			}
		} else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
			seed = strtoull(argv[++i], NULL, 10);
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "usage: %s [--socket PATH] [--dataset cifar10|imagenet] "
					"[--batch N] [--C C] [--layers L] [--size S] [--repeat R] "
					"[--random N [--seed S]] [GENOTYPE-FILE...]\n",
				argv[0]);
			return 2;
		} else if (n < 60) {
			snprintf(e[n].name, sizeof(e[n].name), "%s", argv[i]);
			if (!(e[n].text = slurp(argv[i]))) {
				fprintf(stderr, "%s: cannot read %s\n", argv[0], argv[i]);
				return 1;
			}
			e[n++].r = NULL;
		}
	}
	for (i = 0; i < (n_random ? 0 : 4); i++) {
		snprintf(e[n].name, sizeof(e[n].name), "%s", named[i]);
		e[n].text = NULL;
		e[n++].r = NULL;
	}
	for (long k = 0; k < n_random; k++) {
		snprintf(e[n].name, sizeof(e[n].name), "random %ld", k);
		if (!(e[n].text = random_genotype(&seed))) {
			fprintf(stderr, "%s: out of memory\n", argv[0]);
			return 1;
		}
		e[n++].r = NULL;
	}
	if ((rc = rxg_connect(socket, "rank-genotypes", &c)) != RXG_OK) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], rxg_strerror(rc), rxg_errmsg(NULL));
		return 1;
	}
	for (size_t k = 0; k < n; k++) {
		double t0 = now_ms();

		a.genotype = e[k].text ? e[k].text : e[k].name;
		rc = rxg_nas_eval(c, &a, &e[k].r);
		e[k].wall_ms = now_ms() - t0;
		if (rc != RXG_OK) {
			fprintf(stderr, "%s: %s: %s\n", e[k].name, rxg_strerror(rc), rxg_errmsg(c));
			free(e[k].text);
			continue;
		}
		e[ok++] = e[k]; /* keep the evaluated ones at the front */
	}
	qsort(e, ok, sizeof(e[0]), by_latency);
	printf("device: %s\n", rxg_server_info(c)->device);
	printf("%-4s %-20s %12s %12s %10s %10s %10s %10s\n", "rank", "genotype", "median ms",
	       "p90 ms", "params M", "MACs M", "mem MiB", "all ms");
	for (size_t k = 0; k < ok; k++) {
		const struct rxg_nas_result *r = e[k].r;
		double timed = 0;

		for (size_t j = 0; j < r->n_runs; j++)
			timed += (double)r->run_ns[j] / 1e6;
		wall_sum += e[k].wall_ms;
		timed_sum += timed;
		printf("%-4zu %-20s %12.3f %12.3f %10.3f %10.1f %10.1f %10.1f\n", k + 1, e[k].name,
		       (double)r->latency_median_ns / 1e6, (double)r->latency_p90_ns / 1e6,
		       (double)r->params / 1e6, (double)r->macs / 1e6,
		       (double)r->peak_device_bytes / 1048576.0, e[k].wall_ms);
	}
	/* What a new genotype costs beyond its timed runs: planning, weights, warm-up, the
	 * round trip; the daemon's plan cache makes a genotype seen before cheaper. */
	if (ok)
		printf("per genotype: %.1f ms in all, %.1f ms of it timed runs; %.1f%% not in the "
		       "timed runs\n",
		       wall_sum / (double)ok, timed_sum / (double)ok,
		       wall_sum > 0 ? 100.0 * (1.0 - timed_sum / wall_sum) : 0.0);
	for (size_t k = 0; k < ok; k++) {
		rxg_nas_result_free(e[k].r);
		free(e[k].text);
	}
	rxg_close(c);
	return ok == n ? 0 : 1;
}

/* rank-genotypes.c: rank DARTS genotypes by their latency on rxgemmd's device.
 *
 *   rank-genotypes [--socket PATH] [--dataset cifar10|imagenet] [--batch N]
 *                  [--C C] [--layers L] [--size S] [--repeat R] [GENOTYPE-FILE...]
 *
 * Evaluates the four named genotypes (and each file's printed Genotype(...) text), by
 * default at the paper's settings, with seeded weights, then prints them fastest first with their
 * parameters, multiply-adds and device memory: the kind of table hardware-aware NAS
 * works from. Uses only the public API (rxgemm.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rxgemm.h"

struct entry {
	char name[64];
	char *text;
	struct rxg_nas_result *r;
};

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
	struct entry e[64];
	size_t n = 0, ok = 0;
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
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "usage: %s [--socket PATH] [--dataset cifar10|imagenet] "
					"[--batch N] [--C C] [--layers L] [--size S] [--repeat R] "
					"[GENOTYPE-FILE...]\n",
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
	for (i = 0; i < 4; i++) {
		snprintf(e[n].name, sizeof(e[n].name), "%s", named[i]);
		e[n].text = NULL;
		e[n++].r = NULL;
	}
	if ((rc = rxg_connect(socket, "rank-genotypes", &c)) != RXG_OK) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], rxg_strerror(rc), rxg_errmsg(NULL));
		return 1;
	}
	for (size_t k = 0; k < n; k++) {
		a.genotype = e[k].text ? e[k].text : e[k].name;
		if ((rc = rxg_nas_eval(c, &a, &e[k].r)) != RXG_OK) {
			fprintf(stderr, "%s: %s: %s\n", e[k].name, rxg_strerror(rc), rxg_errmsg(c));
			free(e[k].text);
			continue;
		}
		e[ok++] = e[k]; /* keep the evaluated ones at the front */
	}
	qsort(e, ok, sizeof(e[0]), by_latency);
	printf("device: %s\n", rxg_server_info(c)->device);
	printf("%-4s %-20s %12s %12s %10s %10s %10s\n", "rank", "genotype", "median ms", "p90 ms",
	       "params M", "MACs M", "mem MiB");
	for (size_t k = 0; k < ok; k++) {
		const struct rxg_nas_result *r = e[k].r;

		printf("%-4zu %-20s %12.3f %12.3f %10.3f %10.1f %10.1f\n", k + 1, e[k].name,
		       (double)r->latency_median_ns / 1e6, (double)r->latency_p90_ns / 1e6,
		       (double)r->params / 1e6, (double)r->macs / 1e6,
		       (double)r->peak_device_bytes / 1048576.0);
	}
	for (size_t k = 0; k < ok; k++) {
		rxg_nas_result_free(e[k].r);
		free(e[k].text);
	}
	rxg_close(c);
	return ok == n ? 0 : 1;
}

/* cmd-bench.c: rxgemm bench: GEMM throughput through the daemon over a range of sizes. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "refgemm.h"
#include "cli.h"
#include "rxgemm.h"

/* --- bench ------------------------------------------------------------------------------ */

/* --sizes: a comma-separated list of up to 32 sizes into sizes[*n]. */
static int bench_sizes(const char *list, int64_t sizes[32], int64_t *n_sizes)
{
	int rc;

	*n_sizes = 0;
	for (const char *p = list; *p; (*n_sizes)++) {
		char num[32];
		size_t len = strcspn(p, ",");

		if (*n_sizes == 32 || len == 0 || len >= sizeof(num))
			return usage_error("--sizes: '%s' is not a list of up to 32 sizes", list);
		memcpy(num, p, len);
		num[len] = '\0';
		if ((rc = parse_int64("--sizes", num, 1, 16384, &sizes[*n_sizes])) != EXIT_OK)
			return rc;
		p += len + (p[len] == ',');
	}
	return EXIT_OK;
}

/* repeat GEMMs of n x n x n on random matrices: the best kernel time (0 when the device
 * gives none) and the best wall time in ns. RXG_OK or the code of the call that failed. */
static int bench_size(rxg_client *c, int64_t n, int trans_a, int trans_b, int64_t repeat,
		      uint64_t *best_kernel, uint64_t *best_wall)
{
	size_t elems = (size_t)(n * n);
	float *a = xmalloc(elems * sizeof(float)), *b = xmalloc(elems * sizeof(float));
	float *cc = xmalloc(elems * sizeof(float));
	uint64_t seed = 1;
	struct rxg_gemm_args g = { .layout = RXG_ROW_MAJOR, .trans_a = trans_a,
				   .trans_b = trans_b, .m = n, .n = n, .k = n, .alpha = 1.0f,
				   .a = a, .b = b, .c = cc };
	int rc = RXG_OK;

	refgemm_fill_random(a, elems, &seed);
	refgemm_fill_random(b, elems, &seed);
	for (int64_t r = 0; r < repeat; r++) {
		struct rxg_timings t;
		uint64_t t0 = now_ns(), wall;

		if ((rc = rxg_gemm(c, &g, &t)) != RXG_OK)
			break;
		wall = now_ns() - t0;
		if (t.kernel_ns && (!*best_kernel || t.kernel_ns < *best_kernel))
			*best_kernel = t.kernel_ns;
		if (!*best_wall || wall < *best_wall)
			*best_wall = wall;
	}
	free(a), free(b), free(cc);
	return rc;
}

/* rxgemm bench: a size sweep through the daemon, as a client sees it: kernel GFLOPS from
 * the daemon's profiling times and end-to-end GFLOPS from this process's wall clock, the
 * best of --repeat runs per size. (rxgemm-bench runs the kernels in-process, beside
 * CLBlast, for kernel work.) */
int cmd_bench(int argc, char **argv, const char *socket)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "sizes", required_argument, NULL, 's' },
		{ "transa", no_argument, NULL, OPT_TRANSA },
		{ "transb", no_argument, NULL, OPT_TRANSB },
		{ "repeat", required_argument, NULL, OPT_REPEAT },
		{ "csv", no_argument, NULL, 'C' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	int64_t sizes[32], n_sizes = 0, repeat = 3;
	int opt, trans_a = 0, trans_b = 0, csv = 0, json = 0, rc;
	const char *list = "256,512,1024,2048";
	rxg_client *c = NULL;
	struct json_writer w;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case OPT_SOCKET: socket = optarg; break;
		case 's': list = optarg; break;
		case OPT_TRANSA: trans_a = 1; break;
		case OPT_TRANSB: trans_b = 1; break;
		case OPT_REPEAT:
			if ((rc = parse_int64("--repeat", optarg, 1, 1000, &repeat)) != EXIT_OK)
				return rc;
			break;
		case 'C': csv = 1; break;
		case OPT_JSON: json = 1; break;
		default: return option_error(opt, argv);
		}
	}
	if (optind < argc)
		return usage_error("bench: unexpected argument '%s'", argv[optind]);
	if ((rc = bench_sizes(list, sizes, &n_sizes)) != EXIT_OK)
		return rc;
	if ((rc = rxg_connect(socket, CLIENT_NAME, &c)) != RXG_OK)
		return daemon_error(NULL, rc);
	json_init(&w, stdout);
	if (csv) {
		printf("n,trans_a,trans_b,kernel_gflops,e2e_gflops,kernel_ms,wall_ms\n");
	} else if (json) {
		json_begin_object(&w);
		json_member_string(&w, "device", rxg_server_info(c)->device);
		json_key(&w, "results");
		json_begin_array(&w);
	} else
		printf("device: %s\n%6s %14s %14s %11s %11s\n", rxg_server_info(c)->device, "n",
		       "kernel GFLOPS", "e2e GFLOPS", "kernel ms", "wall ms");
	for (int64_t i = 0; i < n_sizes; i++) {
		int64_t n = sizes[i];
		uint64_t best_kernel = 0, best_wall = 0;
		double flops = 2.0 * (double)n * (double)n * (double)n;

		if ((rc = bench_size(c, n, trans_a, trans_b, repeat, &best_kernel, &best_wall)) !=
		    RXG_OK) {
			rc = daemon_error(c, rc);
			rxg_close(c);
			return rc;
		}
		if (csv) {
			printf("%lld,%d,%d,%.1f,%.1f,%.3f,%.3f\n", (long long)n, trans_a, trans_b,
			       gflops(flops, (double)best_kernel), gflops(flops, (double)best_wall),
			       ns_to_ms((double)best_kernel), ns_to_ms((double)best_wall));
		} else if (json) {
			json_begin_object(&w);
			json_member_int(&w, "n", n);
			json_member_number(&w, "kernel_gflops", gflops(flops, (double)best_kernel));
			json_member_number(&w, "e2e_gflops", gflops(flops, (double)best_wall));
			json_member_uint(&w, "kernel_ns", best_kernel);
			json_member_uint(&w, "wall_ns", best_wall);
			json_end_object(&w);
		} else {
			printf("%6lld %14.1f %14.1f %11.3f %11.3f\n", (long long)n,
			       gflops(flops, (double)best_kernel), gflops(flops, (double)best_wall),
			       ns_to_ms((double)best_kernel), ns_to_ms((double)best_wall));
		}
		fflush(stdout);
	}
	if (json) {
		json_end_array(&w);
		json_end_object(&w);
		putchar('\n');
	}
	rxg_close(c);
	return EXIT_OK;
}

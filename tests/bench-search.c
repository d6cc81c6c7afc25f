/* bench-search.c: DARTS search steps (daemon/search.c) on one device, timed, outside the
 * daemon: the engine's speed before search jobs exist (tests/gpu/run-search-speed.sh runs
 * it on the GPU machine). Random images and labels; convolutions through the GEMM engine
 * as the daemon runs them.
 *
 *   bench-search [C layers batch size steps [device]]   (default 16 8 64 32 10)
 *
 * Prints the device memory the search takes (search_bytes), then per step the losses and
 * the forward, backward and update times, and the medians. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double median_ms(uint64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	return (double)v[n / 2] / 1e6;
}

int main(int argc, char **argv)
{
	struct rxd_search_config cfg;
	struct rxd_device dev;
	struct rxd_gemm_engine eng;
	struct rxd_nasops ops;
	struct rxd_nasgrad gr;
	struct rxd_search *s;
	struct rxd_error err = { 0 };
	int steps = 10, warm = 2;
	uint64_t *fw, *bw, *up, *tot, seed = 1;
	size_t in;
	float *x;
	int32_t *y;

	search_config_defaults(&cfg);
	if (argc >= 6) {
		cfg.C = atoi(argv[1]);
		cfg.layers = atoi(argv[2]);
		cfg.batch = atoi(argv[3]);
		cfg.height = cfg.width = atoi(argv[4]);
		steps = atoi(argv[5]);
	}
	if (steps < 1) {
		fprintf(stderr, "usage: bench-search [C layers batch size steps [device]]\n");
		return 2;
	}
	log_set_level(LOG_WARNING);
	if (device_open(&dev, argc >= 7 ? argv[6] : getenv("RXGEMM_TEST_DEVICE")) < 0)
		return 77;
	memset(&eng, 0, sizeof(eng));
	if (gemm_init(&eng, &dev) < 0 || nasops_init(&ops, &dev, &eng) < 0 ||
	    nasgrad_init(&gr, &dev, &eng) < 0) {
		fprintf(stderr, "the kernels do not build on %s\n", dev.description);
		return 1;
	}
	if (search_prepare(&cfg, &s, &err) < 0 || search_start(s, &ops, &gr, &err) < 0) {
		fprintf(stderr, "search: %s\n", err.msg);
		return 1;
	}
	printf("device: %s\nsearch C %d layers %d batch %d %dx%d: %.1f MiB of device memory, "
	       "%llu weights, %zu plan steps\n", dev.description, cfg.C, cfg.layers, cfg.batch,
	       cfg.height, cfg.width, (double)search_device_bytes(s) / 1048576.0,
	       (unsigned long long)search_trainable_floats(s), search_plan(s)->n_steps);
	in = (size_t)cfg.batch * 3 * cfg.height * cfg.width;
	x = malloc(2 * in * sizeof(float));
	y = malloc(2 * (size_t)cfg.batch * sizeof(int32_t));
	fw = calloc((size_t)steps, sizeof(uint64_t));
	bw = calloc((size_t)steps, sizeof(uint64_t));
	up = calloc((size_t)steps, sizeof(uint64_t));
	tot = calloc((size_t)steps, sizeof(uint64_t));
	if (!x || !y || !fw || !bw || !up || !tot)
		return 1;
	nas_random_floats(seed, x, 2 * in);
	for (int i = 0; i < 2 * cfg.batch; i++)
		y[i] = i % cfg.classes;
	for (int k = -warm; k < steps; k++) {
		struct rxd_search_batch tb = { x, y }, vb = { x + in, y + cfg.batch };
		struct rxd_search_result r;

		if (search_step(s, &tb, &vb, &r, &err) < 0) {
			fprintf(stderr, "step: %s\n", err.msg);
			return 1;
		}
		printf("step %llu: train %.4f valid %.4f |g| %.3f; forward %.2f ms, backward "
		       "%.2f ms, update %.2f ms%s\n", (unsigned long long)r.step,
		       (double)r.train_loss, (double)r.valid_loss, (double)r.grad_norm,
		       (double)r.forward_ns / 1e6, (double)r.backward_ns / 1e6,
		       (double)r.update_ns / 1e6, k < 0 ? " (warm-up)" : "");
		if (k >= 0) {
			fw[k] = r.forward_ns, bw[k] = r.backward_ns, up[k] = r.update_ns;
			tot[k] = r.forward_ns + r.backward_ns + r.update_ns;
		}
	}
	printf("median of %d steps: forward %.2f ms, backward %.2f ms, update %.2f ms, step "
	       "%.2f ms\n", steps, median_ms(fw, steps), median_ms(bw, steps), median_ms(up, steps),
	       median_ms(tot, steps));
	search_free(s);
	nasgrad_fini(&gr);
	nasops_fini(&ops);
	gemm_fini(&eng);
	device_close(&dev);
	free(x), free(y), free(fw), free(bw), free(up), free(tot);
	return 0;
}

/* bench-search.c: DARTS search steps (daemon/search.c) on one device, timed, outside the
 * daemon: the engine's speed before search jobs exist (tests/gpu/run-search.sh runs
 * it on the GPU machine). Random images and labels; convolutions through the GEMM engine
 * as the daemon runs them.
 *
 *   bench-search [C layers batch size steps [device]]   (default 16 8 64 32 10)
 *   bench-search --dump DIR [C layers batch size [device]]
 *
 * Prints the device memory the search takes (search_bytes), then per step the losses and
 * the forward, backward and update times, and the medians.
 *
 * --dump writes what tests/gpu/search_torch_ref.py --compare needs to run the same search
 * in PyTorch: DIR/config.txt (the network and the hyperparameters, key = value), the one
 * training and one validation batch every step uses (train_x.f32, train_y.i32, valid_x.f32,
 * valid_y.i32, raw little-endian) and the state after 0, 1 and 10 steps (state0.bin,
 * state1.bin, state10.bin; docs/NAS.md's state blob). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

static int dump_file(const char *dir, const char *name, const void *data, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!(f = fopen(path, "wb")) || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "bench-search: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int dump_state(struct rxd_search *s, const char *dir, const char *name)
{
	size_t len = (size_t)search_state_bytes(s);
	struct rxd_error err = { 0 };
	void *buf = malloc(len);
	int ret = -1;

	if (!buf)
		return -1;
	if (search_state_save(s, buf, len, &err) < 0)
		fprintf(stderr, "bench-search: state: %s\n", err.msg);
	else
		ret = dump_file(dir, name, buf, len);
	free(buf);
	return ret;
}

static int dump_config(const struct rxd_search_config *c, const char *dir)
{
	char text[2048];
	int n = snprintf(text, sizeof(text),
			 "C = %d\nlayers = %d\nclasses = %d\nbatch = %d\nsize = %d\nsteps = %d\n"
			 "multiplier = %d\nlr = %.17g\nlr_min = %.17g\nmomentum = %.17g\n"
			 "weight_decay = %.17g\ngrad_clip = %.17g\nepochs = %d\n"
			 "steps_per_epoch = %lld\narch_lr = %.17g\narch_beta1 = %.17g\n"
			 "arch_beta2 = %.17g\narch_eps = %.17g\narch_weight_decay = %.17g\n",
			 c->C, c->layers, c->classes, c->batch, c->height, c->steps, c->multiplier,
			 c->lr, c->lr_min, c->momentum, c->weight_decay, c->grad_clip, c->epochs,
			 (long long)c->steps_per_epoch, c->arch_lr, c->arch_beta1, c->arch_beta2,
			 c->arch_eps, c->arch_weight_decay);

	return dump_file(dir, "config.txt", text, (size_t)n);
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
	const char *dump = NULL, *device = getenv("RXGEMM_TEST_DEVICE");
	size_t in;
	float *x;
	int32_t *y;

	search_config_defaults(&cfg);
	if (argc >= 3 && !strcmp(argv[1], "--dump")) {
		/* Ten steps, epochs of 4 steps over 3 epochs: the learning rate changes on the
		 * way, as the comparison should see. */
		dump = argv[2];
		argv += 2;
		argc -= 2;
		steps = 10;
		warm = 0;
		cfg.epochs = 3;
		cfg.steps_per_epoch = 4;
		if (mkdir(dump, 0777) < 0 && errno != EEXIST) {
			fprintf(stderr, "bench-search: %s: %s\n", dump, strerror(errno));
			return 1;
		}
		if (argc >= 5) {
			cfg.C = atoi(argv[1]);
			cfg.layers = atoi(argv[2]);
			cfg.batch = atoi(argv[3]);
			cfg.height = cfg.width = atoi(argv[4]);
		}
		if (argc >= 6)
			device = argv[5];
	} else if (argc >= 6) {
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
	if (!dump && argc >= 7)
		device = argv[6];
	if (device_open(&dev, device, NULL) < 0)
		return 77;
	memset(&eng, 0, sizeof(eng));
	if (gemm_init(&eng, &dev, NULL) < 0 || nasops_init(&ops, &dev, &eng) < 0 ||
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
	if (dump && (dump_config(&cfg, dump) < 0 || dump_state(s, dump, "state0.bin") < 0 ||
		     dump_file(dump, "train_x.f32", x, in * sizeof(float)) < 0 ||
		     dump_file(dump, "valid_x.f32", x + in, in * sizeof(float)) < 0 ||
		     dump_file(dump, "train_y.i32", y, (size_t)cfg.batch * sizeof(int32_t)) < 0 ||
		     dump_file(dump, "valid_y.i32", y + cfg.batch,
			       (size_t)cfg.batch * sizeof(int32_t)) < 0))
		return 1;
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
		if (dump && (r.step == 1 || r.step == 10)) {
			char name[32];

			snprintf(name, sizeof(name), "state%llu.bin", (unsigned long long)r.step);
			if (dump_state(s, dump, name) < 0)
				return 1;
		}
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

/* tune.c: searching kernel configurations on the device, and remembering the winners.
 *
 * For each pair of transposes and each size class of C, the tuner times the candidates of
 * a grid on a representative square problem and keeps the fastest. A candidate serves only
 * after it has passed the engine's self-tests against the CPU reference (gemm_engine_add)
 * and, at the tuning size, given the same C as the edge-handling tiled kernel. The result
 * goes to a small text file beside the kernel cache, named by a hash of the device and
 * driver, so that the next start on the same device and driver loads it; another device or
 * driver simply finds no file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "refgemm.h"
#include "engine.h"

/* The shapes (m, n, k) that stand for each class in the search (gemm_class_of's bounds):
 * squares for the size classes, a long thin C for the thin ones. */
static const int64_t tune_class_shape[RXD_GEMM_CLASSES][3] = {
	{ 256, 256, 256 }, { 512, 512, 512 }, { 1024, 1024, 1024 }, { 2048, 2048, 2048 },
	{ 4096, 64, 1024 }, { 64, 4096, 1024 }
};

/* The grid: tiles x K steps x fma or not x local padding, filtered by validity. */
size_t tune_grid(struct rxd_gemm_config *out, size_t max)
{
	static const int tiles[][4] = { /* tsm, tsn, wptm, wptn */
		{ 256, 128, 16, 8 }, { 128, 128, 8, 8 }, { 64, 128, 4, 8 }, { 128, 64, 8, 4 },
		{ 64, 128, 8, 16 },  { 64, 64, 4, 4 },   { 64, 64, 8, 8 },  { 32, 64, 2, 4 },
		{ 64, 32, 4, 2 },    { 32, 32, 2, 2 },   { 32, 32, 4, 4 },  { 32, 32, 8, 8 },
	};
	static const int tsks[] = { 16, 32, 8 };
	static const int vecs[][3] = { /* VW, NB, K chunk */
		{ 16, 8, 512 }, { 16, 8, 256 }, { 16, 8, 0 }, { 16, 4, 512 }, { 8, 8, 512 },
		{ 16, 12, 512 },
	};
	size_t n = 0;

	for (size_t t = 0; t < sizeof(tiles) / sizeof(tiles[0]); t++)
		for (size_t k = 0; k < sizeof(tsks) / sizeof(tsks[0]); k++)
			for (int madd = 2; madd >= 0; madd -= 2)
				for (int pad = 4; pad >= 0; pad -= 4) {
					struct rxd_gemm_config c = {
						RXD_GEMM_REG, tiles[t][0], tiles[t][1], tsks[k],
						tiles[t][2], tiles[t][3], tiles[t][2] % 4 ? 1 : 4,
						tiles[t][3] % 4 ? 1 : 4, pad, pad, madd
					};
					if (n < max && gemm_config_valid(&c))
						out[n++] = c;
				}
	/* The vector kernel last: it serves CPU devices (which start with it anyway) and
	 * would only cost a GPU's search time up front. */
	for (size_t v = 0; v < sizeof(vecs) / sizeof(vecs[0]); v++) {
		struct rxd_gemm_config c = { RXD_GEMM_VEC, vecs[v][0], vecs[v][1], vecs[v][2],
					     vecs[v][0], vecs[v][1], vecs[v][0], 1, 0, 0, 0 };
		if (n < max && gemm_config_valid(&c))
			out[n++] = c;
	}
	return n;
}

/* Best of a few timed runs of variant vi on resident buffers, in ns (0: failed). */
static uint64_t tune_time(struct rxd_gemm_engine *eng, int vi, const struct rxd_gemm *g,
			  cl_mem a, cl_mem b, cl_mem c, int runs)
{
	uint64_t best = 0;

	for (int r = 0; r < runs + 1; r++) {
		struct rxd_error err;
		uint64_t ns;

		/* The daemon's own path, so that split-K counts for the thin classes. */
		if (gemm_compute(eng, vi, g, a, b, c, &ns, &err) !=
		    RXD_S_OK)
			return 0;
		if (r > 0 && ns && (!best || ns < best)) /* the first run warms up */
			best = ns;
	}
	return best;
}

/* The bar on a terminal. The search ends when the grid is done or the budget is spent,
 * whichever comes first, so the bar shows the larger of the two fractions (work done, time
 * used) and the ETA the smaller of the two estimates (the budget left, the work left at
 * the rate so far). */
static void tune_progress(bool tty, size_t done, size_t total, uint64_t start_ns,
			  double budget_s, const char *what)
{
	int width = 30, fill;
	double elapsed_s = (double)(now_ns() - start_ns) / 1e9;
	double work = total ? (double)done / (double)total : 1.0;
	double frac = budget_s > 0 && elapsed_s / budget_s > work ? elapsed_s / budget_s : work;
	double eta_s = budget_s - elapsed_s;

	if (!tty)
		return;
	if (work > 0 && work < 1 && elapsed_s * (1 - work) / work < eta_s)
		eta_s = elapsed_s * (1 - work) / work;
	if (done == total) {
		frac = 1;
		eta_s = 0;
	}
	/* Past the budget, the measurement in flight finishes: 99% until it has. */
	if (frac >= 1 && done < total)
		frac = 0.99;
	if (eta_s < 0)
		eta_s = 0;
	fill = (int)(frac * width);
	fprintf(stderr, "\r[%.*s%*s] %3d%% ETA %2d:%02d %-40.40s", fill,
		"##############################", width - fill, "", (int)(frac * 100),
		(int)eta_s / 60, (int)eta_s % 60, what);
	fflush(stderr);
}

/* Over 100 lines: the time budget is shared out across the nested loops (size class,
 * transposes, candidate), and each level's share and early exits read best in one place. */
int tune_run(struct rxd_gemm_engine *eng, double budget_s, bool tty)
{
	struct rxd_device *dev = eng->dev;
	static struct rxd_gemm_config grid[512];
	size_t n_grid = tune_grid(grid, sizeof(grid) / sizeof(grid[0]));
	uint64_t start = now_ns(), deadline = start + (uint64_t)(budget_s * 1e9);
	int part = 0; /* each (class, transposes) gets an equal share; time left over rolls on */
	size_t steps = (size_t)4 * RXD_GEMM_CLASSES * n_grid, step = 0;
	int ret = 0;

	log_msg(LOG_NOTICE, "tuning: %zu configurations x %d size classes x 4 transpose pairs, "
			    "at most %.0f s",
		n_grid, RXD_GEMM_CLASSES, budget_s);
	for (int cls = 0; cls < RXD_GEMM_CLASSES; cls++) {
		const int64_t m = tune_class_shape[cls][0], n = tune_class_shape[cls][1],
			      k = tune_class_shape[cls][2];
		const size_t a_elems = (size_t)(m * k), b_elems = (size_t)(k * n),
			     c_elems = (size_t)(m * n);
		const size_t elems = a_elems > b_elems ? a_elems : b_elems; /* host buffers */
		const uint64_t bytes[3] = { a_elems * 4, b_elems * 4, c_elems * 4 };
		float *host = NULL, *ref = NULL, *got = NULL;
		struct rxd_budget_res res;
		cl_mem mem[3], a, b, c;
		cl_int e;
		uint64_t seed = 99;
		int got_bufs;

		/* The tuner's buffers count against the budget too: a class whose size does
		 * not fit keeps its default rather than taking memory the budget denies. */
		got_bufs = gemm_buffers_get(eng, &res, bytes, mem, &e);
		if (got_bufs == -E2BIG) {
			log_msg(LOG_NOTICE, "tuning: class %d (%lldx%lldx%lld) needs %.1f MiB, more than "
					    "the device-memory budget: it keeps its default",
				cls, (long long)m, (long long)n, (long long)k,
				(double)(bytes[0] + bytes[1] + bytes[2]) / 1048576.0);
			step += (size_t)4 * n_grid;
			part += 4;
			continue;
		}
		a = mem[0], b = mem[1], c = mem[2];
		host = malloc(elems * 4);
		ref = malloc(elems * 4);
		got = malloc(elems * 4);
		if (got_bufs < 0 || !host || !ref || !got) {
			ret = -ENOMEM;
			goto next;
		}
		refgemm_fill_random(host, a_elems, &seed);
		clEnqueueWriteBuffer(dev->queue, a, CL_TRUE, 0, a_elems * 4, host, 0, NULL, NULL);
		refgemm_fill_random(host, b_elems, &seed);
		clEnqueueWriteBuffer(dev->queue, b, CL_TRUE, 0, b_elems * 4, host, 0, NULL, NULL);
		for (int ta = 0; ta < 2; ta++) {
			for (int tb = 0; tb < 2; tb++) {
				struct rxd_gemm g = { .m = m, .n = n, .k = k, .trans_a = ta,
						      .trans_b = tb, .alpha = 1.0f,
						      .lda = ta ? k : m, .ldb = tb ? n : k,
						      .ldc = m, .batch_count = 1,
						      .flops = 2 * (uint64_t)(m * n * k) };
				int best = eng->choice[ta][tb][cls];
				/* The reference C at this size: the edge-handling tiled kernel. */
				int tiled = gemm_find_variant(eng, ta, tb, RXD_GEMM_TILED);
				uint64_t best_ns, part_end, cost_ns = 0;

				part++;
				part_end = start + (uint64_t)(budget_s * 1e9 * part / (4 * RXD_GEMM_CLASSES));
				/* A part whose share is spent (earlier ones ran over) keeps its
				 * default without measuring the reference: the budget holds. */
				if (now_ns() >= part_end || tiled < 0 ||
				    !tune_time(eng, tiled, &g, a, b, c, 1)) {
					step += n_grid;
					tune_progress(tty, step, steps, start, budget_s,
						      gemm_variant_name(eng, best));
					continue;
				}
				clEnqueueReadBuffer(dev->queue, c, CL_TRUE, 0, c_elems * 4, ref, 0, NULL,
						    NULL);
				best_ns = tune_time(eng, best, &g, a, b, c, 3);
				for (size_t i = 0; i < n_grid; i++, step++) {
					uint64_t t0 = now_ns(), ns;
					int vi;

					/* One candidate (its build, self-test and four runs) cannot
					 * be interrupted: start it only when one as costly as the
					 * last fits in the share left. */
					if (t0 + cost_ns > part_end) {
						step += n_grid - i;
						break;
					}
					tune_progress(tty, step, steps, start, budget_s,
						      gemm_variant_name(eng, best));
					vi = gemm_engine_add(eng, ta, tb, &grid[i]);
					cost_ns = now_ns() - t0;
					if (vi < 0)
						continue;
					ns = tune_time(eng, vi, &g, a, b, c, 3);
					cost_ns = now_ns() - t0;
					if (!ns || (best_ns && ns >= best_ns))
						continue;
					clEnqueueReadBuffer(dev->queue, c, CL_TRUE, 0, c_elems * 4, got, 0,
							    NULL, NULL);
					if (refgemm_compare(0, m, n, k, got, ref, m, NULL, NULL, NULL)) {
						log_msg(LOG_WARNING, "tuning: %s disagrees with the tiled "
								     "kernel at %lldx%lldx%lld: not used",
							gemm_variant_name(eng, vi), (long long)m,
							(long long)n, (long long)k);
						continue;
					}
					best = vi;
					best_ns = ns;
				}
				eng->choice[ta][tb][cls] = best;
				eng->tuned_gflops[ta][tb][cls] =
					best_ns ? 2.0 * (double)m * (double)n * (double)k /
							  (double)best_ns
						: 0.0;
			}
		}
	next:
		if (got_bufs == 0)
			gemm_buffers_put(eng, &res, mem);
		free(host), free(ref), free(got);
		if (ret < 0)
			return ret;
	}
	tune_progress(tty, steps, steps, start, budget_s, "done");
	if (tty)
		fputc('\n', stderr);
	eng->tuned = true;
	for (int cls = 0; cls < RXD_GEMM_CLASSES; cls++)
		log_msg(LOG_NOTICE, "tuned: class %d (%lldx%lldx%lld) %s at %.1f GFLOPS", cls,
			(long long)tune_class_shape[cls][0], (long long)tune_class_shape[cls][1],
			(long long)tune_class_shape[cls][2],
			gemm_variant_name(eng, eng->choice[0][0][cls]),
			eng->tuned_gflops[0][0][cls]);
	if (now_ns() > deadline)
		log_msg(LOG_NOTICE, "tuning stopped at its time limit of %.0f s (after %.1f s: the "
				    "last measurement cannot be interrupted); the classes not reached "
				    "keep their defaults",
			budget_s, (double)(now_ns() - start) / 1e9);
	else
		log_msg(LOG_NOTICE, "tuning took %.1f s of its %.0f s", (double)(now_ns() - start) / 1e9,
			budget_s);
	return 0;
}

/* tune-<first 16 bytes of the device key in hex>.txt in dir. */
static int tune_path(const struct rxd_device *dev, const char *dir, char *buf, size_t len)
{
	uint8_t key[32];
	char hex[33];

	kcache_key(dev->desc->id, "", "rxgemmd-tune-v2", key);
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	if (snprintf(buf, len, "%s/tune-%s.txt", dir, hex) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

int tune_save(const struct rxd_gemm_engine *eng, const char *dir)
{
	char path[4096], tmp[4200], name[96];
	FILE *f;

	if (!dir || tune_path(eng->dev, dir, path, sizeof(path)) < 0)
		return -EINVAL;
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	if (!(f = fopen(tmp, "we")))
		return -errno;
	fprintf(f, "# rxgemmd %s kernel choices for %s\n# trans_a trans_b class config gflops\n",
		PACKAGE_VERSION, eng->dev->description);
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++)
			for (int cls = 0; cls < RXD_GEMM_CLASSES; cls++) {
				gemm_config_name(gemm_variant_config(eng, eng->choice[ta][tb][cls]),
						 name, sizeof(name));
				fprintf(f, "%d %d %d %s %.1f\n", ta, tb, cls, name,
					eng->tuned_gflops[ta][tb][cls]);
			}
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		int err = -errno;
		unlink(tmp);
		return err;
	}
	log_msg(LOG_NOTICE, "tuning stored in %s", path);
	return 0;
}

int tune_load(struct rxd_gemm_engine *eng, const char *dir)
{
	char path[4096], line[256];
	FILE *f;
	int loaded = 0;

	if (!dir || tune_path(eng->dev, dir, path, sizeof(path)) < 0)
		return -ENOENT;
	if (!(f = fopen(path, "re")))
		return -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		int ta, tb, cls, vi;
		char cfgname[128];
		double gflops;
		struct rxd_gemm_config cfg;

		if (line[0] == '#')
			continue;
		if (sscanf(line, "%d %d %d %127s %lf", &ta, &tb, &cls, cfgname, &gflops) != 5 ||
		    ta < 0 || ta > 1 || tb < 0 || tb > 1 || cls < 0 || cls >= RXD_GEMM_CLASSES ||
		    gemm_config_parse(cfgname, &cfg) < 0) {
			log_msg(LOG_WARNING, "%s: ignoring a malformed line", path);
			continue;
		}
		/* Built and self-tested like any other variant: a stored choice that no
		 * longer passes (a new driver with the same version string) is not used. */
		vi = gemm_engine_add(eng, ta, tb, &cfg);
		if (vi < 0) {
			log_msg(LOG_WARNING, "%s: %s does not build or pass here any more", path,
				cfgname);
			continue;
		}
		eng->choice[ta][tb][cls] = vi;
		eng->tuned_gflops[ta][tb][cls] = gflops;
		loaded++;
	}
	fclose(f);
	if (loaded == 0)
		return -ENOENT;
	eng->tuned = true;
	log_msg(LOG_INFO, "loaded %d tuned kernel choices from %s", loaded, path);
	return 0;
}

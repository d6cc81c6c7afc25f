/* rxgemm-bench.c: rxgemm-bench, the in-process GEMM benchmark for kernel work.
 *
 * It opens a device as rxgemmd does, builds the engine, and times kernels on matrices that
 * stay on the device, so that the figures are the kernels' own (profiling events). In the
 * same run it times CLBlast's SGEMM on the same buffers when libclblast can be loaded
 * (dlopen: CLBlast stays optional) and checks that both give the same C. --config times
 * given kernel configurations instead of the engine's choice; --tune searches a grid. */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "refgemm.h"
#include "engine.h"

/* The parts of CLBlast's C API we call (clblast_c.h), declared here so that the build
 * needs no CLBlast headers; the ABI is CLBlast's stable C interface. */
enum { CLBLAST_COL_MAJOR = 102, CLBLAST_NO_TRANS = 111, CLBLAST_TRANS = 112 };
typedef int (*clblast_sgemm_fn)(int layout, int a_trans, int b_trans, size_t m, size_t n,
				size_t k, float alpha, cl_mem a, size_t a_off, size_t a_ld,
				cl_mem b, size_t b_off, size_t b_ld, float beta, cl_mem c,
				size_t c_off, size_t c_ld, cl_command_queue *queue, cl_event *ev);

struct bench_opts {
	const char *device;
	int64_t shapes[64][3];
	size_t n_shapes;
	bool trans_a, trans_b;
	struct rxd_gemm_config configs[64];
	size_t n_configs;
	int repeat, warmup;
	int splitk;                  /* --splitk: 0 the engine decides, 1 never, S slices */
	bool clblast, json, csv, tune;
	bool e2e;                    /* --e2e: the daemon's whole job, wall clock */
	double peak_gflops;
	const char *plot;            /* --plot FILE: .svg, .png or .pdf through gnuplot */
};

/* What one size gave, for the plot. */
struct bench_point {
	double n;                    /* the cube root of m n k: the square of the same work */
	double ours, clblast;        /* GFLOPS */
};

struct bench_result {
	double ours_ns, clblast_ns; /* best of the repeats; 0 when not measured */
	char kernel[96];
	int check;                  /* 1 agrees with CLBlast, 0 differs, -1 not checked */
};

static void bench_usage(FILE *f)
{
	fprintf(f,
		"Usage: rxgemm-bench [OPTION]...\n"
		"Time rxgemmd's GEMM kernels in-process, beside CLBlast when it is installed.\n"
		"\n"
		"  --device SEL          as rxgemmd --device (default: first GPU, else any)\n"
		"  --sizes N,N,...       square sizes (default 256,512,1024,2048,4096)\n"
		"  --shapes MxNxK,...    other shapes (column-major C = op(A) op(B))\n"
		"  --transa, --transb    transpose A, B\n"
		"  --config CFG          time this kernel configuration instead of the engine's\n"
		"                        choice (repeatable), e.g. reg:128x128x16:8x8:v4x4:p0x0:m0\n"
		"  --tune                time a grid of configurations at each size, show the best\n"
		"  --e2e                 time the daemon's whole job instead, wall clock: write A\n"
		"                        and B, compute, read C, from malloc'd and from pinned\n"
		"                        host memory; median and best (default sizes\n"
		"                        1024,2048,4096); compare with bench-sharing --overhead\n"
		"  --repeat R            timed runs per point, best is kept (default 10)\n"
		"  --warmup W            untimed runs first (default 2)\n"
		"  --splitk S            K slices: 0 the engine decides (default), 1 none\n"
		"  --no-clblast          do not load CLBlast\n"
		"  --peak-gflops P       show percent of this peak\n"
		"  --csv, --json         machine-readable output (a value not measured is an\n"
		"                        empty CSV field, null in JSON)\n"
		"  --plot FILE           draw GFLOPS against n (ours, CLBlast, the peak) with\n"
		"                        gnuplot into FILE: .svg, .png or .pdf by its suffix\n"
		"  -h, --help            show this help and exit\n"
		"  -V, --version         show the version and exit\n");
}

static int bench_parse_list(const char *s, struct bench_opts *o, bool square)
{
	char *copy = strdup(s), *tok, *save = NULL;
	int ret = 0;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		long long m, n, k;
		if (o->n_shapes == 64) {
			ret = -E2BIG;
			break;
		}
		if (square && sscanf(tok, "%lld", &m) == 1)
			n = k = m;
		else if (square || sscanf(tok, "%lldx%lldx%lld", &m, &n, &k) != 3) {
			ret = -EINVAL;
			break;
		}
		if (m < 1 || n < 1 || k < 1 || m > 65536 || n > 65536 || k > 65536) {
			ret = -EINVAL;
			break;
		}
		o->shapes[o->n_shapes][0] = m;
		o->shapes[o->n_shapes][1] = n;
		o->shapes[o->n_shapes][2] = k;
		o->n_shapes++;
	}
	free(copy);
	return ret;
}

/* v with that many decimals, or none when v is NaN (not measured). */
static void fmt_or_empty(char *buf, size_t len, int decimals, double v, const char *none)
{
	if (isnan(v))
		snprintf(buf, len, "%s", none);
	else
		snprintf(buf, len, "%.*f", decimals, v);
}

/* The gnuplot terminal (and its size) for the file's suffix, NULL for a suffix we do not
 * draw: the pdfcairo terminal counts in inches, the others in pixels. */
static const char *bench_plot_terminal(const char *path)
{
	const char *dot = strrchr(path, '.');

	if (!dot || strchr(dot, '/'))
		return NULL;
	if (strcasecmp(dot, ".svg") == 0)
		return "svg size 800,500";
	if (strcasecmp(dot, ".png") == 0)
		return "pngcairo size 800,500";
	if (strcasecmp(dot, ".pdf") == 0)
		return "pdfcairo size 8in,5in";
	return NULL;
}

/* s as a gnuplot single-quoted string, in which only the quote itself is special
 * (doubled). */
static void gnuplot_quote(FILE *gp, const char *s)
{
	fputc('\'', gp);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', gp);
		if (*s != '\n')
			fputc(*s, gp);
	}
	fputc('\'', gp);
}

/* Draw the points with gnuplot: GFLOPS against n for us, CLBlast and the peak line. */
static int bench_plot(const struct bench_opts *o, const char *device,
		      const struct bench_point *pts, size_t n)
{
	char data[] = "/tmp/rxgemm-bench-XXXXXX";
	const char *terminal = bench_plot_terminal(o->plot);
	bool have_clblast = false;
	FILE *f, *gp;
	int fd, status;

	fd = mkstemp(data);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		perror("rxgemm-bench: plot data");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%g %g %g\n", pts[i].n, pts[i].ours, pts[i].clblast);
		have_clblast |= pts[i].clblast > 0;
	}
	fclose(f);
	if (!(gp = popen("gnuplot 2>&1", "w"))) {
		unlink(data);
		return -1;
	}
	fprintf(gp, "set terminal %s\nset output ", terminal);
	gnuplot_quote(gp, o->plot);
	fprintf(gp, "\nset title ");
	char title[512];
	snprintf(title, sizeof(title), "SGEMM%s%s on %s", o->trans_a ? " A^T" : "",
		 o->trans_b ? " B^T" : "", device);
	gnuplot_quote(gp, title);
	fprintf(gp, " noenhanced\n");
	fprintf(gp, "set xlabel 'n (cube root of m n k)'\nset ylabel 'GFLOPS'\nset logscale x 2\n"
		    "set key left top\nset grid\n");
	/* Room above the peak line, which would otherwise sit on the frame. */
	if (o->peak_gflops > 0)
		fprintf(gp, "set yrange [0:%g]\n", o->peak_gflops * 1.1);
	else
		fprintf(gp, "set yrange [0:*]\n");
	fprintf(gp, "plot '%s' using 1:2 with linespoints lw 2 title 'rxgemmd'", data);
	if (have_clblast)
		fprintf(gp, ", '%s' using 1:3 with linespoints lw 2 title 'CLBlast'", data);
	if (o->peak_gflops > 0)
		fprintf(gp, ", %g with lines dt 2 title 'peak'", o->peak_gflops);
	fputc('\n', gp);
	status = pclose(gp);
	unlink(data);
	if (status != 0) {
		fprintf(stderr, "rxgemm-bench: gnuplot failed or is not installed (Debian: "
				"gnuplot-nox); no plot\n");
		return -1;
	}
	return 0;
}

/* Time variant vi (or CLBlast when vi < 0) on the buffers: best of repeat, in ns. */
static double bench_time(struct rxd_gemm_engine *eng, int vi, clblast_sgemm_fn sgemm,
			 const struct rxd_gemm *g, cl_mem a, cl_mem b, cl_mem c,
			 const struct bench_opts *o)
{
	double best = 0;

	for (int r = 0; r < o->warmup + o->repeat; r++) {
		cl_event ev = NULL;
		cl_int e;
		uint64_t ns;

		if (vi >= 0) {
			struct rxd_error err;

			/* The daemon's own path: split-K for thin shapes, chunks for big ones. */
			if (gemm_compute(eng, vi, g, a, b, c, &ns, &err) !=
			    RXD_S_OK) {
				fprintf(stderr, "rxgemm-bench: %s\n", err.msg);
				return 0;
			}
			if (r >= o->warmup && ns && (best == 0 || ns < best))
				best = (double)ns;
			continue;
		} else {
			cl_command_queue q = eng->dev->queue;
			e = sgemm(CLBLAST_COL_MAJOR, g->trans_a ? CLBLAST_TRANS : CLBLAST_NO_TRANS,
				  g->trans_b ? CLBLAST_TRANS : CLBLAST_NO_TRANS, (size_t)g->m,
				  (size_t)g->n, (size_t)g->k, g->alpha, a, 0, (size_t)g->lda, b, 0,
				  (size_t)g->ldb, g->beta, c, 0, (size_t)g->ldc, &q, &ev);
		}
		if (e != CL_SUCCESS || clWaitForEvents(1, &ev) != CL_SUCCESS) {
			fprintf(stderr, "rxgemm-bench: %s failed: %d\n", vi >= 0 ? "kernel" : "CLBlast",
				(int)e);
			if (ev)
				clReleaseEvent(ev);
			return 0;
		}
		ns = device_event_ns(ev);
		clReleaseEvent(ev);
		if (r >= o->warmup && ns && (best == 0 || ns < best))
			best = (double)ns;
	}
	return best;
}

static double gflops_of(const struct rxd_gemm *g, double ns)
{
	return ns > 0 ? 2.0 * (double)g->m * (double)g->n * (double)g->k / ns : 0.0;
}

/* Run one shape: the engine's choice (or each --config, or the tuning grid) and CLBlast. */
static int bench_shape(struct rxd_gemm_engine *eng, clblast_sgemm_fn sgemm, const int64_t *shape,
		       const struct bench_opts *o, struct bench_result *res)
{
	struct rxd_device *dev = eng->dev;
	struct rxd_gemm g = { .m = shape[0], .n = shape[1], .k = shape[2],
			      .trans_a = o->trans_a, .trans_b = o->trans_b, .alpha = 1.0f,
			      .beta = 0.0f, .splitk = o->splitk };
	size_t na, nb, nc;
	float *h = NULL, *ours = NULL, *theirs = NULL;
	cl_mem a = NULL, b = NULL, c = NULL;
	uint64_t seed = 7;
	cl_int e;
	int ret = -EIO;
	struct rxd_gemm_config grid[512];
	size_t n_grid = 0;

	g.lda = o->trans_a ? g.k : g.m;
	g.ldb = o->trans_b ? g.n : g.k;
	g.ldc = g.m;
	na = (size_t)(g.m * g.k), nb = (size_t)(g.k * g.n), nc = (size_t)(g.m * g.n);
	memset(res, 0, sizeof(*res));
	res->check = -1;
	h = malloc((na > nb ? (na > nc ? na : nc) : (nb > nc ? nb : nc)) * sizeof(float));
	ours = malloc(nc * sizeof(float));
	theirs = malloc(nc * sizeof(float));
	if (!h || !ours || !theirs)
		goto out;
	a = clCreateBuffer(dev->ctx, CL_MEM_READ_ONLY, na * sizeof(float), NULL, &e);
	b = clCreateBuffer(dev->ctx, CL_MEM_READ_ONLY, nb * sizeof(float), NULL, &e);
	c = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE, nc * sizeof(float), NULL, &e);
	if (!a || !b || !c) {
		fprintf(stderr, "rxgemm-bench: cannot allocate %lldx%lldx%lld\n",
			(long long)g.m, (long long)g.n, (long long)g.k);
		goto out;
	}
	refgemm_fill_random(h, na, &seed);
	clEnqueueWriteBuffer(dev->queue, a, CL_TRUE, 0, na * sizeof(float), h, 0, NULL, NULL);
	refgemm_fill_random(h, nb, &seed);
	clEnqueueWriteBuffer(dev->queue, b, CL_TRUE, 0, nb * sizeof(float), h, 0, NULL, NULL);

	if (o->tune)
		n_grid = tune_grid(grid, sizeof(grid) / sizeof(grid[0]));
	else if (o->n_configs)
		memcpy(grid, o->configs, (n_grid = o->n_configs) * sizeof(grid[0]));
	if (n_grid == 0) {
		int vi = gemm_choose(eng, &g);
		res->ours_ns = bench_time(eng, vi, NULL, &g, a, b, c, o);
		snprintf(res->kernel, sizeof(res->kernel), "%s", gemm_variant_name(eng, vi));
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t i = 0; i < n_grid; i++) {
		int vi = gemm_engine_add(eng, o->trans_a, o->trans_b, &grid[i]);
		double ns;
		if (vi < 0)
			continue;
		ns = bench_time(eng, vi, NULL, &g, a, b, c, o);
		if (n_grid > 1 && !o->json && !o->csv) {
			/* The ETA of this size: the configurations left at the mean cost so far
			 * (builds included, which the cache makes cheaper on the next run). */
			struct timespec t1;
			clock_gettime(CLOCK_MONOTONIC, &t1);
			double spent = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec -
										t0.tv_nsec) / 1e9;
			int eta = (int)(spent / (double)(i + 1) * (double)(n_grid - i - 1) + 0.5);
			fprintf(stderr, "  %3zu of %zu, ETA %d:%02d  %-44s %10.1f GFLOPS\n", i + 1,
				n_grid, eta / 60, eta % 60, gemm_variant_name(eng, vi),
				gflops_of(&g, ns));
		}
		if (ns > 0 && (res->ours_ns == 0 || ns < res->ours_ns)) {
			res->ours_ns = ns;
			snprintf(res->kernel, sizeof(res->kernel), "%s", gemm_variant_name(eng, vi));
		}
	}
	clEnqueueReadBuffer(dev->queue, c, CL_TRUE, 0, nc * sizeof(float), ours, 0, NULL, NULL);
	if (sgemm) {
		res->clblast_ns = bench_time(eng, -1, sgemm, &g, a, b, c, o);
		clEnqueueReadBuffer(dev->queue, c, CL_TRUE, 0, nc * sizeof(float), theirs, 0, NULL,
				    NULL);
		/* The last timed configuration's C against CLBlast's, as an independent check. */
		if (res->clblast_ns > 0)
			res->check = refgemm_compare(0, g.m, g.n, g.k, ours, theirs, g.ldc, NULL,
						     NULL, NULL) == 0;
	}
	ret = 0;
out:
	device_mem_release(a, b, c);
	free(h), free(ours), free(theirs);
	return ret;
}

/* ---- --e2e: the daemon's whole job for one GEMM, in-process ------------------------------ */

/* Host memory for one matrix: malloc'd, as the daemon's requests and shared-memory regions
 * are, or pinned: a CL_MEM_ALLOC_HOST_PTR buffer mapped for the whole run, which drivers
 * (NVIDIA's in particular) copy from and to at full bus speed, and which a daemon could
 * hand out as its shared memory instead. */
struct e2e_host {
	float *p;
	cl_mem pinned; /* NULL: p is malloc'd */
	size_t bytes;
};

static int e2e_host_get(struct rxd_device *dev, bool pinned, size_t bytes, struct e2e_host *h)
{
	cl_int e;

	memset(h, 0, sizeof(*h));
	h->bytes = bytes;
	if (!pinned)
		return (h->p = malloc(bytes)) ? 0 : -ENOMEM;
	h->pinned = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, bytes, NULL,
				   &e);
	if (!h->pinned)
		return -ENOMEM;
	h->p = clEnqueueMapBuffer(dev->queue, h->pinned, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0,
				  bytes, 0, NULL, NULL, &e);
	if (!h->p) {
		clReleaseMemObject(h->pinned);
		h->pinned = NULL;
		return -ENOMEM;
	}
	return 0;
}

static void e2e_host_put(struct rxd_device *dev, struct e2e_host *h)
{
	if (h->pinned) {
		if (h->p)
			clEnqueueUnmapMemObject(dev->queue, h->pinned, h->p, 0, NULL, NULL);
		clFinish(dev->queue);
		clReleaseMemObject(h->pinned);
	} else {
		free(h->p);
	}
	memset(h, 0, sizeof(*h));
}

/* The median of v[0..n) (the mean of the middle two when n is even), sorted in place; the
 * rule bench-sharing --overhead uses too. */
static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double bench_median(double *v, size_t n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t e2e_rng(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

#define E2E_VECTORS 2

/* Freivalds' check of C = op(A) op(B), column-major: C x against op(A) (op(B) x) for
 * E2E_VECTORS vectors x of +-1. A and B hold small integers, so every sum is exact and
 * the comparison is too; a wrong C passes one vector with probability at most 1/2. */
struct e2e_check {
	double *x[E2E_VECTORS], *y[E2E_VECTORS], *s;
};

static int e2e_check_init(struct e2e_check *ck, const struct rxd_gemm *g, const float *a,
			  const float *b, uint64_t *seed)
{
	int64_t m = g->m, n = g->n, k = g->k;
	double *u = calloc((size_t)k, sizeof(double));

	memset(ck, 0, sizeof(*ck));
	ck->s = malloc((size_t)m * sizeof(double));
	if (!u || !ck->s)
		goto fail;
	for (int v = 0; v < E2E_VECTORS; v++) {
		double *x = ck->x[v] = malloc((size_t)n * sizeof(double));
		double *y = ck->y[v] = calloc((size_t)m, sizeof(double));

		if (!x || !y)
			goto fail;
		for (int64_t j = 0; j < n; j++)
			x[j] = e2e_rng(seed) & 1 ? 1.0 : -1.0;
		/* u = op(B) x, then y = op(A) u, each loop in the stored order */
		memset(u, 0, (size_t)k * sizeof(double));
		for (int64_t j = 0; j < n; j++)
			for (int64_t l = 0; l < k; l++)
				u[l] += (double)(g->trans_b ? b[j + l * g->ldb] : b[l + j * g->ldb]) *
					x[j];
		for (int64_t l = 0; l < k; l++)
			for (int64_t i = 0; i < m; i++)
				y[i] += (double)(g->trans_a ? a[l + i * g->lda] : a[i + l * g->lda]) *
					u[l];
	}
	free(u);
	return 0;
fail:
	free(u);
	return -ENOMEM;
}

static bool e2e_check_run(struct e2e_check *ck, const struct rxd_gemm *g, const float *c)
{
	for (int v = 0; v < E2E_VECTORS; v++) {
		memset(ck->s, 0, (size_t)g->m * sizeof(double));
		for (int64_t j = 0; j < g->n; j++)
			for (int64_t i = 0; i < g->m; i++)
				ck->s[i] += (double)c[i + j * g->ldc] * ck->x[v][j];
		for (int64_t i = 0; i < g->m; i++)
			if (!(fabs(ck->s[i] - ck->y[v][i]) < 0.5)) /* NaN fails too */
				return false;
	}
	return true;
}

static void e2e_check_fini(struct e2e_check *ck)
{
	for (int v = 0; v < E2E_VECTORS; v++) {
		free(ck->x[v]);
		free(ck->y[v]);
	}
	free(ck->s);
}

struct e2e_result {
	double median_ms, best_ms;          /* wall clock of the whole job */
	double h2d_ms, kernel_ms, d2h_ms;   /* medians of the phases, device times */
	char kernel[96];
	bool right;                         /* every run's C was A B */
};

/* One shape end to end as the daemon runs a job (gemm_run_buffers: non-blocking writes of
 * A and B, gemm_compute, the read of C, one clFinish), on device buffers made once, from
 * and to host memory of the given kind. 0, or -errno (said on stderr). */
static int bench_e2e_shape(struct rxd_gemm_engine *eng, const int64_t *shape, bool pinned,
			   const struct bench_opts *o, struct e2e_result *res)
{
	struct rxd_device *dev = eng->dev;
	struct rxd_gemm g = { .m = shape[0], .n = shape[1], .k = shape[2],
			      .trans_a = o->trans_a, .trans_b = o->trans_b, .alpha = 1.0f,
			      .beta = 0.0f, .batch_count = 1, .splitk = o->splitk };
	struct e2e_host ha, hb, hc;
	struct e2e_check ck;
	cl_mem a = NULL, b = NULL, c = NULL;
	double *wall = NULL, *h2d = NULL, *kern = NULL, *d2h = NULL;
	uint64_t seed = 0x243f6a8885a308d3ull;
	int runs = o->warmup + o->repeat, ret = -ENOMEM, vi;
	cl_int e;

	memset(&ha, 0, sizeof(ha)), memset(&hb, 0, sizeof(hb)), memset(&hc, 0, sizeof(hc));
	memset(&ck, 0, sizeof(ck));
	memset(res, 0, sizeof(*res));
	g.lda = o->trans_a ? g.k : g.m;
	g.ldb = o->trans_b ? g.n : g.k;
	g.ldc = g.m;
	g.a_elems = (size_t)(g.m * g.k); /* each side <= 65536: no overflow */
	g.b_elems = (size_t)(g.k * g.n);
	g.c_elems = (size_t)(g.m * g.n);
	g.flops = 2ull * (uint64_t)g.m * (uint64_t)g.n * (uint64_t)g.k;
	g.user_m = g.m, g.user_n = g.n, g.user_k = g.k;
	vi = gemm_choose(eng, &g);
	snprintf(res->kernel, sizeof(res->kernel), "%s", gemm_variant_name(eng, vi));
	wall = malloc((size_t)runs * sizeof(double));
	h2d = malloc((size_t)runs * sizeof(double));
	kern = malloc((size_t)runs * sizeof(double));
	d2h = malloc((size_t)runs * sizeof(double));
	if (!wall || !h2d || !kern || !d2h ||
	    e2e_host_get(dev, pinned, g.a_elems * sizeof(float), &ha) < 0 ||
	    e2e_host_get(dev, pinned, g.b_elems * sizeof(float), &hb) < 0 ||
	    e2e_host_get(dev, pinned, g.c_elems * sizeof(float), &hc) < 0) {
		fprintf(stderr, "rxgemm-bench: cannot allocate %s host memory for %lldx%lldx%lld\n",
			pinned ? "pinned" : "", (long long)g.m, (long long)g.n, (long long)g.k);
		goto out;
	}
	a = clCreateBuffer(dev->ctx, CL_MEM_READ_ONLY, ha.bytes, NULL, &e);
	b = clCreateBuffer(dev->ctx, CL_MEM_READ_ONLY, hb.bytes, NULL, &e);
	c = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE, hc.bytes, NULL, &e);
	if (!a || !b || !c) {
		fprintf(stderr, "rxgemm-bench: cannot allocate device buffers for %lldx%lldx%lld\n",
			(long long)g.m, (long long)g.n, (long long)g.k);
		goto out;
	}
	/* Small integers: every product and sum is exact, and so is the check. */
	for (size_t i = 0; i < g.a_elems; i++)
		ha.p[i] = (float)((int)(e2e_rng(&seed) % 5) - 2);
	for (size_t i = 0; i < g.b_elems; i++)
		hb.p[i] = (float)((int)(e2e_rng(&seed) % 5) - 2);
	if (e2e_check_init(&ck, &g, ha.p, hb.p, &seed) < 0) {
		fprintf(stderr, "rxgemm-bench: out of memory for the check\n");
		goto out;
	}
	g.a = ha.p;
	g.b = hb.p;
	res->right = true;
	for (int r = 0; r < runs; r++) {
		struct rxd_job_timings t;
		struct rxd_error err;
		uint64_t t0;

		memset(hc.p, 0xff, hc.bytes); /* NaNs: a C not written fails the check */
		t0 = now_ns();
		if (gemm_run_buffers(eng, vi, &g, a, b, c, hc.p, &t, &err) !=
		    RXD_S_OK) {
			fprintf(stderr, "rxgemm-bench: %s\n", err.msg);
			ret = -EIO;
			goto out;
		}
		wall[r] = (double)(now_ns() - t0) / 1e6;
		h2d[r] = (double)t.h2d_ns / 1e6;
		kern[r] = (double)t.kernel_ns / 1e6;
		d2h[r] = (double)t.d2h_ns / 1e6;
		if (!e2e_check_run(&ck, &g, hc.p))
			res->right = false;
	}
	res->best_ms = wall[o->warmup];
	for (int r = o->warmup; r < runs; r++)
		if (wall[r] < res->best_ms)
			res->best_ms = wall[r];
	res->median_ms = bench_median(wall + o->warmup, (size_t)o->repeat);
	res->h2d_ms = bench_median(h2d + o->warmup, (size_t)o->repeat);
	res->kernel_ms = bench_median(kern + o->warmup, (size_t)o->repeat);
	res->d2h_ms = bench_median(d2h + o->warmup, (size_t)o->repeat);
	ret = 0;
out:
	device_mem_release(a, b, c);
	e2e_host_put(dev, &ha), e2e_host_put(dev, &hb), e2e_host_put(dev, &hc);
	e2e_check_fini(&ck);
	free(wall), free(h2d), free(kern), free(d2h);
	return ret;
}

/* --e2e: every shape with malloc'd and with pinned host memory. */
static int bench_e2e(struct rxd_gemm_engine *eng, const struct bench_opts *o)
{
	int status = 0, row = 0;

	if (o->csv)
		printf("m,n,k,trans_a,trans_b,host,kernel,median_ms,best_ms,h2d_ms,kernel_ms,d2h_ms,"
		       "gflops,check\n");
	else if (o->json)
	{
		printf("{\"device\":");
		json_write_string(stdout, eng->dev->description);
		printf(",\"mode\":\"e2e\",\"repeat\":%d,\"warmup\":%d,\"results\":[", o->repeat,
		       o->warmup);
	}
	else
		printf("device: %s\none GEMM end to end in-process, as the daemon runs a job: write "
		       "A and B, compute, read C;\nwall clock in ms, median and best of %d runs after "
		       "%d warm-up; h2d, kernel, d2h: medians of device times\n"
		       "%6s %6s %6s  %-6s %9s %9s %8s %8s %8s %9s %6s  %s\n",
		       eng->dev->description, o->repeat, o->warmup, "m", "n", "k", "host", "median",
		       "best", "h2d", "kernel", "d2h", "GFLOPS", "check", "kernel variant");
	for (size_t i = 0; i < o->n_shapes; i++) {
		for (int pinned = 0; pinned < 2; pinned++) {
			const int64_t *s = o->shapes[i];
			const char *host = pinned ? "pinned" : "malloc";
			struct e2e_result r;
			double gflops;

			if (bench_e2e_shape(eng, s, pinned, o, &r) < 0) {
				status = 1;
				continue;
			}
			if (!r.right)
				status = 1;
			gflops = 2.0 * (double)s[0] * (double)s[1] * (double)s[2] / (r.median_ms * 1e6);
			if (o->csv)
				printf("%lld,%lld,%lld,%d,%d,%s,%s,%.4f,%.4f,%.4f,%.4f,%.4f,%.1f,%s\n",
				       (long long)s[0], (long long)s[1], (long long)s[2], o->trans_a,
				       o->trans_b, host, r.kernel, r.median_ms, r.best_ms, r.h2d_ms,
				       r.kernel_ms, r.d2h_ms, gflops, r.right ? "ok" : "WRONG");
			else if (o->json)
				printf("%s{\"m\":%lld,\"n\":%lld,\"k\":%lld,\"trans_a\":%s,"
				       "\"trans_b\":%s,\"host\":\"%s\",\"kernel\":\"%s\","
				       "\"median_ms\":%.4f,\"best_ms\":%.4f,\"h2d_ms\":%.4f,"
				       "\"kernel_ms\":%.4f,\"d2h_ms\":%.4f,\"gflops\":%.1f,"
				       "\"check\":\"%s\"}",
				       row ? "," : "", (long long)s[0], (long long)s[1],
				       (long long)s[2], o->trans_a ? "true" : "false",
				       o->trans_b ? "true" : "false", host, r.kernel, r.median_ms,
				       r.best_ms, r.h2d_ms, r.kernel_ms, r.d2h_ms, gflops,
				       r.right ? "ok" : "WRONG");
			else
				printf("%6lld %6lld %6lld  %-6s %9.3f %9.3f %8.3f %8.3f %8.3f %9.1f %6s  "
				       "%s\n",
				       (long long)s[0], (long long)s[1], (long long)s[2], host,
				       r.median_ms, r.best_ms, r.h2d_ms, r.kernel_ms, r.d2h_ms, gflops,
				       r.right ? "ok" : "WRONG", r.kernel);
			row++;
			fflush(stdout);
		}
	}
	if (o->json)
		printf("]}\n");
	return status;
}

/* The command line into o. -1 to go on, else the exit status: 0 after --help or
 * --version, 2 on a usage error (said on stderr). */
static int bench_parse(int argc, char **argv, struct bench_opts *o)
{
	static const struct option opts[] = {
		{ "device", required_argument, NULL, 'd' }, { "sizes", required_argument, NULL, 's' },
		{ "shapes", required_argument, NULL, 'S' }, { "transa", no_argument, NULL, 'a' },
		{ "transb", no_argument, NULL, 'b' },       { "config", required_argument, NULL, 'c' },
		{ "tune", no_argument, NULL, 't' },         { "repeat", required_argument, NULL, 'r' },
		{ "warmup", required_argument, NULL, 'w' }, { "no-clblast", no_argument, NULL, 'n' },
		{ "peak-gflops", required_argument, NULL, 'p' },
		{ "csv", no_argument, NULL, 'C' },          { "json", no_argument, NULL, 'j' },
		{ "plot", required_argument, NULL, 'P' },   { "splitk", required_argument, NULL, 'K' },
		{ "e2e", no_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },         { "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	/* Our own one-line messages (getopt's name the libtool wrapper's binary in a build). */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'd': o->device = optarg; break;
		case 's':
		case 'S':
			if (bench_parse_list(optarg, o, opt == 's') < 0) {
				fprintf(stderr, "rxgemm-bench: bad size list '%s'\n", optarg);
				return 2;
			}
			break;
		case 'a': o->trans_a = true; break;
		case 'b': o->trans_b = true; break;
		case 'c':
			if (o->n_configs == 64 || gemm_config_parse(optarg, &o->configs[o->n_configs]) < 0) {
				fprintf(stderr, "rxgemm-bench: bad configuration '%s'\n", optarg);
				return 2;
			}
			o->n_configs++;
			break;
		case 't': o->tune = true; break;
		case 'e': o->e2e = true; break;
		case 'r': o->repeat = atoi(optarg); break;
		case 'w': o->warmup = atoi(optarg); break;
		case 'n': o->clblast = false; break;
		case 'K': o->splitk = atoi(optarg); break;
		case 'p': o->peak_gflops = atof(optarg); break;
		case 'C': o->csv = true; break;
		case 'P': o->plot = optarg; break;
		case 'j': o->json = true; break;
		case 'h': bench_usage(stdout); return 0;
		case 'V': printf("rxgemm-bench %s\n", PACKAGE_VERSION); return 0;
		case ':':
			fprintf(stderr, "rxgemm-bench: option '%s' needs a value\n"
					"Try 'rxgemm-bench --help'.\n", argv[optind - 1]);
			return 2;
		default:
			if (optopt && argv[optind - 1][1] != '-')
				fprintf(stderr, "rxgemm-bench: unknown option '-%c'\n", optopt);
			else
				fprintf(stderr, "rxgemm-bench: unknown option '%.*s'\n",
					(int)strcspn(argv[optind - 1], "="), argv[optind - 1]);
			fputs("Try 'rxgemm-bench --help'.\n", stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "rxgemm-bench: unexpected argument '%s'\nTry 'rxgemm-bench --help'.\n",
			argv[optind]);
		return 2;
	}
	/* Before the run, not after it: a plot we would not draw. */
	if (o->plot && !bench_plot_terminal(o->plot)) {
		fprintf(stderr, "rxgemm-bench: --plot %s: the name must end in .svg, .png or .pdf\n",
			o->plot);
		return 2;
	}
	if (o->repeat < 1 || o->repeat > 10000 || o->warmup < 0 || o->warmup > 10000 ||
	    o->splitk < 0 || o->splitk > 64) {
		fprintf(stderr, "rxgemm-bench: --repeat 1..10000, --warmup 0..10000, "
			"--splitk 0..64\n");
		return 2;
	}
	if (o->e2e && (o->tune || o->n_configs || o->plot)) {
		fprintf(stderr, "rxgemm-bench: --e2e times the engine's own choice: no --tune, "
			"--config or --plot with it\n");
		return 2;
	}
	if (o->n_shapes == 0)
		bench_parse_list(o->e2e ? "1024,2048,4096" : "256,512,1024,2048,4096", o, true);
	return -1;
}

/* One measured shape: a CSV line, an object of jw's array, or a table row. NaN: not
 * measured (no CLBlast, no peak given), shown as empty, null or "-". */
static void bench_print_row(const struct bench_opts *o, struct json_writer *jw,
			    const struct rxd_gemm *gs, const struct bench_result *r, double ours,
			    double theirs, double ratio, double pct, const char *check)
{
	if (o->csv) {
		char t[32], ra[32], pc[32];

		fmt_or_empty(t, sizeof(t), 1, theirs, "");
		fmt_or_empty(ra, sizeof(ra), 3, ratio, "");
		fmt_or_empty(pc, sizeof(pc), 1, pct, "");
		printf("%lld,%lld,%lld,%d,%d,%s,%.1f,%s,%s,%s,%s\n", (long long)gs->m,
		       (long long)gs->n, (long long)gs->k, o->trans_a, o->trans_b, r->kernel, ours,
		       t, ra, pc, check);
	} else if (o->json) {
		json_begin_object(jw);
		json_member_int(jw, "m", gs->m);
		json_member_int(jw, "n", gs->n);
		json_member_int(jw, "k", gs->k);
		json_member_bool(jw, "trans_a", o->trans_a);
		json_member_bool(jw, "trans_b", o->trans_b);
		json_member_string(jw, "kernel", r->kernel);
		json_member_number(jw, "ours_gflops", ours);
		json_member_number(jw, "clblast_gflops", theirs);
		json_member_number(jw, "ratio", ratio);
		json_member_number(jw, "pct_peak", pct);
		json_key(jw, "check");
		if (r->check < 0)
			json_null(jw);
		else
			json_string(jw, check);
		json_end_object(jw);
	} else {
		char t[32], ra[32], pc[32];

		fmt_or_empty(t, sizeof(t), 1, theirs, "-");
		fmt_or_empty(ra, sizeof(ra), 2, ratio, "-");
		fmt_or_empty(pc, sizeof(pc), 1, pct, "-");
		printf("%6lld %6lld %6lld  %-44s %12.1f %12s %7s %7s %6s\n", (long long)gs->m,
		       (long long)gs->n, (long long)gs->k, r->kernel, ours, t, ra, pc, check);
	}
}

int main(int argc, char **argv)
{
	static struct bench_opts o = { .repeat = 10, .warmup = 2, .clblast = true };
	struct rxd_device dev;
	struct rxd_gemm_engine eng = { 0 }; /* no budget: rxgemm-bench measures kernels */
	clblast_sgemm_fn sgemm = NULL;
	void *clblast = NULL;
	int st;

	if ((st = bench_parse(argc, argv, &o)) >= 0)
		return st;
	log_set_level(LOG_WARNING);
	if (device_open(&dev, o.device, NULL) < 0)
		return 1;
	if (!dev.profiling) {
		fprintf(stderr, "rxgemm-bench: the device gives no profiling times\n");
		return 1;
	}
	if (gemm_init(&eng, &dev, NULL) < 0)
		return 1;
	if (o.e2e) {
		st = bench_e2e(&eng, &o);
		gemm_fini(&eng);
		device_close(&dev);
		return st;
	}
	if (o.clblast) {
		clblast = dlopen("libclblast.so.1", RTLD_NOW | RTLD_LOCAL);
		if (!clblast)
			clblast = dlopen("libclblast.so", RTLD_NOW | RTLD_LOCAL);
		if (clblast)
			sgemm = (clblast_sgemm_fn)dlsym(clblast, "CLBlastSgemm");
		if (!sgemm)
			fprintf(stderr, "rxgemm-bench: CLBlast not loaded (%s): timing ours alone\n",
				dlerror());
	}
	struct json_writer jw;

	if (o.csv) {
		printf("m,n,k,trans_a,trans_b,kernel,ours_gflops,clblast_gflops,ratio,pct_peak,check\n");
	} else if (o.json) {
		json_init(&jw, stdout);
		json_begin_object(&jw);
		json_member_string(&jw, "device", dev.description);
		json_member_number(&jw, "peak_gflops", o.peak_gflops > 0 ? o.peak_gflops : NAN);
		json_key(&jw, "results");
		json_begin_array(&jw);
	} else
		printf("device: %s\n%6s %6s %6s  %-44s %12s %12s %7s %7s %6s\n", dev.description, "m",
		       "n", "k", "kernel", "ours GFLOPS", "CLBlast", "ratio", "% peak", "check");
	static struct bench_point pts[64];
	size_t n_pts = 0;
	int status = 0;

	for (size_t i = 0; i < o.n_shapes; i++) {
		struct rxd_gemm gs = { .m = o.shapes[i][0], .n = o.shapes[i][1], .k = o.shapes[i][2] };
		struct bench_result r;
		double ours, theirs, ratio, pct;
		const char *check;

		if (bench_shape(&eng, sgemm, o.shapes[i], &o, &r) < 0) {
			status = 1;
			continue;
		}
		ours = gflops_of(&gs, r.ours_ns);
		theirs = gflops_of(&gs, r.clblast_ns);
		/* NaN: not measured (no CLBlast, no peak given), shown as "-", empty or null. */
		if (!(theirs > 0))
			theirs = NAN;
		ratio = ours / theirs;
		pts[n_pts].n = cbrt((double)gs.m * (double)gs.n * (double)gs.k);
		pts[n_pts].ours = ours;
		pts[n_pts++].clblast = theirs;
		pct = o.peak_gflops > 0 ? 100.0 * ours / o.peak_gflops : NAN;
		check = r.check < 0 ? "-" : r.check ? "ok" : "DIFF";
		if (r.check == 0)
			status = 1;
		bench_print_row(&o, &jw, &gs, &r, ours, theirs, ratio, pct, check);
		fflush(stdout);
	}
	if (o.json) {
		json_end_array(&jw);
		json_end_object(&jw);
		putchar('\n');
	}
	if (o.plot && bench_plot(&o, dev.desc->name, pts, n_pts) < 0)
		status = 1;
	gemm_fini(&eng);
	device_close(&dev);
	if (clblast)
		dlclose(clblast);
	return status;
}

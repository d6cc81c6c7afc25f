/* gemm.c: the GEMM engine: kernel configurations, building each variant and checking it
 * on the device against the CPU reference before it may serve a job (gemm_init), and the
 * choice of variant per transpose pair and size class (gemm_choose, which the tuner
 * rewrites). Launching lives in gemm-launch.c. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm-variant.h"
#include "refgemm.h"
#include "engine.h"

/* ---- kernel configurations ---------------------------------------------------------- */

/* Configurations tried at start-up, in order of preference within each use. Which ones
 * fit is decided by device queries (work-group size, local memory, the kernel's own
 * work-group limit after it is built), never by device names; the tuner replaces the
 * choice with measured ones. */
static const struct rxd_gemm_config gemm_default_tiled[] = {
	{ .kernel = RXD_GEMM_TILED, .tsm = 64, .tsn = 64, .tsk = 16, .wptm = 4, .wptn = 4 },
	{ .kernel = RXD_GEMM_TILED, .tsm = 32, .tsn = 32, .tsk = 16, .wptm = 4, .wptn = 4 },
	{ .kernel = RXD_GEMM_TILED, .tsm = 16, .tsn = 16, .tsk = 16, .wptm = 4, .wptn = 4 },
};
/* Register-blocked defaults per device type (a query, CL_DEVICE_TYPE), best first, from
 * rxgemm-bench --tune runs recorded in docs/PERFORMANCE.md: on GPUs the large class
 * wants big work-group tiles with 8 x 16 blocks per work-item, the medium class smaller
 * tiles that still fill every compute unit; on CPUs (PoCL) the biggest per-work-item
 * blocks win everywhere. Configurations that do not fit a device are skipped. */
static const struct rxd_gemm_config gemm_default_reg_large[] = {
	{ RXD_GEMM_REG, 256, 128, 16, 16, 8, 4, 4, 4, 4, 2 },
	{ RXD_GEMM_REG, 128, 128, 16, 8, 8, 4, 4, 0, 0, 0 },
	{ RXD_GEMM_REG, 64, 64, 16, 4, 4, 4, 4, 0, 0, 0 },
	{ RXD_GEMM_REG, 32, 32, 16, 8, 8, 4, 4, 0, 0, 0 },
};
static const struct rxd_gemm_config gemm_default_reg_medium_gpu[] = {
	{ RXD_GEMM_REG, 64, 128, 32, 4, 8, 4, 4, 4, 4, 2 },
	{ RXD_GEMM_REG, 64, 64, 16, 4, 4, 4, 4, 0, 0, 0 },
	{ RXD_GEMM_REG, 32, 32, 16, 8, 8, 4, 4, 0, 0, 0 },
};
static const struct rxd_gemm_config gemm_default_reg_small_gpu[] = {
	{ RXD_GEMM_REG, 32, 64, 32, 2, 4, 1, 4, 4, 4, 2 },
	{ RXD_GEMM_REG, 32, 32, 32, 4, 4, 4, 4, 4, 4, 2 },
};
static const struct rxd_gemm_config gemm_default_reg_tiny_gpu[] = {
	{ RXD_GEMM_REG, 32, 32, 32, 2, 2, 1, 1, 4, 4, 2 },
	{ RXD_GEMM_REG, 32, 32, 32, 4, 4, 4, 4, 4, 4, 2 },
};
static const struct rxd_gemm_config gemm_default_reg_medium_cpu[] = {
	{ RXD_GEMM_REG, 256, 128, 16, 16, 8, 4, 4, 4, 4, 2 },
	{ RXD_GEMM_REG, 128, 128, 16, 8, 8, 4, 4, 0, 0, 0 },
	{ RXD_GEMM_REG, 32, 32, 16, 8, 8, 4, 4, 0, 0, 0 },
};
/* Thin C: tiles as narrow as C in its short dimension, so that the work-items are not
 * mostly computing padding; on GPUs split-K then adds the work-groups that are missing
 * (tests/gpu/run-thin.sh on an H100: 256 x 64 tiles 28 TFLOPS at 4096 x 64 x 4096, 64 x 32
 * ones 22; on PoCL 64 x 32 is the best). */
static const struct rxd_gemm_config gemm_default_reg_thin_n_gpu[] = {
	{ RXD_GEMM_REG, 256, 64, 16, 16, 4, 4, 4, 4, 4, 2 },
	{ RXD_GEMM_REG, 64, 32, 16, 8, 8, 4, 4, 4, 4, 2 },
	{ RXD_GEMM_REG, 32, 32, 16, 8, 8, 4, 4, 0, 0, 0 },
};
static const struct rxd_gemm_config gemm_default_reg_thin_m_gpu[] = {
	{ RXD_GEMM_REG, 64, 256, 16, 4, 16, 4, 4, 4, 4, 2 },
	{ RXD_GEMM_REG, 32, 64, 16, 8, 8, 4, 4, 4, 4, 2 },
	{ RXD_GEMM_REG, 32, 32, 16, 8, 8, 4, 4, 0, 0, 0 },
};
static const struct rxd_gemm_config gemm_default_reg_thin_n_cpu[] = {
	{ RXD_GEMM_REG, 64, 32, 16, 8, 8, 4, 4, 4, 4, 2 },
	{ RXD_GEMM_REG, 32, 32, 16, 8, 8, 4, 4, 0, 0, 0 },
};
static const struct rxd_gemm_config gemm_default_reg_thin_m_cpu[] = {
	{ RXD_GEMM_REG, 32, 64, 16, 8, 8, 4, 4, 4, 4, 2 },
	{ RXD_GEMM_REG, 32, 32, 16, 8, 8, 4, 4, 0, 0, 0 },
};
static const struct rxd_gemm_config gemm_default_reg_small_cpu[] = {
	{ RXD_GEMM_REG, 64, 128, 16, 8, 16, 4, 4, 4, 4, 2 },
	{ RXD_GEMM_REG, 64, 128, 16, 8, 16, 4, 4, 4, 4, 0 },
	{ RXD_GEMM_REG, 32, 32, 16, 8, 8, 4, 4, 0, 0, 2 },
	{ RXD_GEMM_REG, 32, 32, 16, 8, 8, 4, 4, 0, 0, 0 },
};

/* On CPU devices (a device query, CL_DEVICE_TYPE) the vector kernel first, for every
 * class and transpose pair: on PoCL (2 cores) it ran 256^3 at 82, 512^3 at 90 and
 * 2048^3 at 60 GFLOPS (K in chunks of 512) where the register-blocked kernel gave 35-43. */
static const struct rxd_gemm_config gemm_default_vec_cpu[] = {
	{ RXD_GEMM_VEC, 16, 8, 512, 16, 8, 16, 1, 0, 0, 0 },
	{ RXD_GEMM_VEC, 8, 8, 512, 8, 8, 8, 1, 0, 0, 0 },
};

int gemm_config_name(const struct rxd_gemm_config *c, char *buf, size_t len)
{
	if (c->kernel == RXD_GEMM_VEC)
		return snprintf(buf, len, "vec:%dx%d:k%d", c->tsm, c->tsn, c->tsk);
	if (c->kernel == RXD_GEMM_TILED)
		return snprintf(buf, len, "tiled:%dx%dx%d:%dx%d", c->tsm, c->tsn, c->tsk, c->wptm,
				c->wptn);
	return snprintf(buf, len, "reg:%dx%dx%d:%dx%d:v%dx%d:p%dx%d:m%d", c->tsm, c->tsn, c->tsk,
			c->wptm, c->wptn, c->vwm, c->vwn, c->pada, c->padb, c->madd);
}

int gemm_config_parse(const char *s, struct rxd_gemm_config *c)
{
	memset(c, 0, sizeof(*c));
	if (sscanf(s, "vec:%dx%d:k%d", &c->tsm, &c->tsn, &c->tsk) == 3) {
		c->kernel = RXD_GEMM_VEC;
		c->wptm = c->vwm = c->tsm;
		c->wptn = c->tsn;
		c->vwn = 1;
	} else if (sscanf(s, "tiled:%dx%dx%d:%dx%d", &c->tsm, &c->tsn, &c->tsk, &c->wptm, &c->wptn) == 5)
		c->kernel = RXD_GEMM_TILED;
	else if (sscanf(s, "reg:%dx%dx%d:%dx%d:v%dx%d:p%dx%d:m%d", &c->tsm, &c->tsn, &c->tsk,
			&c->wptm, &c->wptn, &c->vwm, &c->vwn, &c->pada, &c->padb, &c->madd) == 10)
		c->kernel = RXD_GEMM_REG;
	else
		return -EINVAL;
	return gemm_config_valid(c) ? 0 : -EINVAL;
}

bool gemm_config_valid(const struct rxd_gemm_config *c)
{
	int threads;

	if (c->kernel == RXD_GEMM_VEC)
		return (c->tsm == 4 || c->tsm == 8 || c->tsm == 16) && c->wptm == c->tsm &&
		       c->vwm == c->tsm && c->tsn >= 1 && c->tsn <= 16 && c->wptn == c->tsn &&
		       c->vwn == 1 && (c->tsk == 0 || (c->tsk >= 16 && c->tsk <= 65536)) &&
		       !c->pada && !c->padb && !c->madd;
	if (c->tsm <= 0 || c->tsn <= 0 || c->tsk <= 0 || c->wptm <= 0 || c->wptn <= 0 ||
	    c->tsm % c->wptm || c->tsn % c->wptn || c->tsm > 256 || c->tsn > 256 || c->tsk > 64)
		return false;
	threads = (c->tsm / c->wptm) * (c->tsn / c->wptn);
	if (c->kernel == RXD_GEMM_TILED)
		return (c->tsm * c->tsk) % threads == 0 && (c->tsk * c->tsn) % threads == 0;
	/* reg: float4 loads and float4 local reads need these divisibilities. */
	return (c->vwm == 1 || c->vwm == 4) && (c->vwn == 1 || c->vwn == 4) &&
	       c->wptm % c->vwm == 0 && c->wptn % c->vwn == 0 && c->tsk % 4 == 0 &&
	       c->tsm % 4 == 0 && c->tsn % 4 == 0 && c->pada % 4 == 0 && c->padb % 4 == 0 &&
	       c->pada >= 0 && c->padb >= 0 && c->madd >= 0 && c->madd <= 2 &&
	       (c->tsk * c->tsm) % (4 * threads) == 0 && (c->tsk * c->tsn) % (4 * threads) == 0;
}

static size_t gemm_config_local_bytes(const struct rxd_gemm_config *c)
{
	if (c->kernel == RXD_GEMM_VEC)
		return 0;
	return (size_t)c->tsk * (size_t)(c->tsm + c->pada + c->tsn + c->padb) * sizeof(float);
}

/* Size classes: the tuner keeps one choice per class. By the size of C, because that is
 * what decides how many work-groups can fill the device. */
int gemm_class_of(int64_t m, int64_t n)
{
	int64_t mn = m * n;

	if (n <= 64 && m >= 4 * n)
		return RXD_GEMM_CLASS_THIN_N;
	if (m <= 64 && n >= 4 * m)
		return RXD_GEMM_CLASS_THIN_M;
	/* Up to 512 x 512 small tiles: 64 x 128 tiles would leave most of a big GPU idle. */
	if (mn < 384 * 384)
		return 0;
	if (mn < 768 * 768)
		return 1;
	if (mn < 1536 * 1536)
		return 2;
	return 3;
}

int gemm_choose(const struct rxd_gemm_engine *eng, const struct rxd_gemm *g)
{
	return eng->choice[g->trans_a][g->trans_b][gemm_class_of(g->m, g->n)];
}

const char *gemm_variant_name(const struct rxd_gemm_engine *eng, int variant)
{
	return eng->variants[variant].name;
}

const struct rxd_gemm_config *gemm_variant_config(const struct rxd_gemm_engine *eng,
						  int variant)
{
	return &eng->variants[variant].cfg;
}

int gemm_find_variant(const struct rxd_gemm_engine *eng, bool trans_a, bool trans_b,
		      int kernel)
{
	for (size_t i = 0; i < eng->n_variants; i++)
		if (eng->variants[i].trans_a == trans_a && eng->variants[i].trans_b == trans_b &&
		    eng->variants[i].cfg.kernel == kernel)
			return (int)i;
	return -1;
}

/* ---- building ----------------------------------------------------------------------- */

/* Run variant vi on one problem with the CPU reference beside it. */
static int gemm_selftest_one(struct rxd_gemm_engine *eng, int vi, int M, int N, int K, int LD)
{
	const struct rxd_gemm_variant *v = &eng->variants[vi];
	struct rxd_gemm g = { .m = M, .n = N, .k = K, .trans_a = v->trans_a,
			      .trans_b = v->trans_b, .alpha = 1.5f, .beta = -0.5f,
			      .lda = LD, .ldb = LD, .ldc = LD };
	float *a = NULL, *b = NULL, *c = NULL, *got = NULL, *want = NULL;
	struct rxd_job_timings t;
	struct rxd_error err;
	uint64_t seed = 12345;
	double max_err;
	int64_t bi, bj;
	int ret = -ENOMEM;

	g.a_elems = (size_t)LD * (size_t)((v->trans_a ? M : K) - 1) + (size_t)(v->trans_a ? K : M);
	g.b_elems = (size_t)LD * (size_t)((v->trans_b ? K : N) - 1) + (size_t)(v->trans_b ? N : K);
	g.c_elems = g.c_given_elems = (size_t)LD * (size_t)(N - 1) + (size_t)M;
	a = malloc(g.a_elems * sizeof(float));
	b = malloc(g.b_elems * sizeof(float));
	c = malloc(g.c_elems * sizeof(float));
	got = malloc(g.c_elems * sizeof(float));
	want = malloc(g.c_elems * sizeof(float));
	if (!a || !b || !c || !got || !want)
		goto out;
	refgemm_fill_random(a, g.a_elems, &seed);
	refgemm_fill_random(b, g.b_elems, &seed);
	refgemm_fill_random(c, g.c_elems, &seed);
	memcpy(want, c, g.c_elems * sizeof(float));
	g.a = a, g.b = b, g.c = c;
	if (gemm_run_variant(eng, vi, &g, got, &t, &err) != RXD_S_OK) {
		log_msg(LOG_WARNING, "%s: self-test could not run: %s", v->name, err.msg);
		ret = -EIO;
		goto out;
	}
	refgemm(0, v->trans_a, v->trans_b, M, N, K, g.alpha, a, LD, b, LD, g.beta, want, LD);
	if (refgemm_compare(0, M, N, K, got, want, LD, &max_err, &bi, &bj) != 0) {
		log_msg(LOG_WARNING, "%s: self-test %dx%dx%d gives wrong results (C[%lld,%lld] = %g, "
				     "want %g): not used",
			v->name, M, N, K, (long long)bi, (long long)bj, (double)got[bi + bj * LD],
			(double)want[bi + bj * LD]);
		ret = -EIO;
		goto out;
	}
	ret = 0;
out:
	free(a), free(b), free(c), free(got), free(want);
	return ret;
}

/* Kernel variants have given wrong answers on some drivers (Clover's vector widths): none
 * serves a job before it has passed here, on shapes with edges in every dimension and, for
 * the register-blocked kernel, with whole aligned tiles that take its vector paths. */
static int gemm_selftest(struct rxd_gemm_engine *eng, int vi)
{
	const struct rxd_gemm_config *c = &eng->variants[vi].cfg;

	if (gemm_selftest_one(eng, vi, 37, 29, 21, 41) < 0)
		return -EIO;
	/* A long K: fma() on Mesa's llvmpipe passed the short tests and was wrong here. */
	if (gemm_selftest_one(eng, vi, 5, 3, 1000, 8) < 0)
		return -EIO;
	if (c->kernel == RXD_GEMM_REG &&
	    gemm_selftest_one(eng, vi, 2 * c->tsm + 4, c->tsn + 8, 3 * c->tsk + 4,
			      2 * (c->tsm > c->tsn ? c->tsm : c->tsn) + 8) < 0)
		return -EIO;
	/* Whole vector blocks, and K in more than one launch with some left over. */
	if (c->kernel == RXD_GEMM_VEC &&
	    gemm_selftest_one(eng, vi, 2 * c->tsm + 3, 2 * c->tsn + 1, c->tsk ? 2 * c->tsk + 37 : 300,
			      2 * c->tsm + 8) < 0)
		return -EIO;
	return 0;
}

static void gemm_variant_release(struct rxd_gemm_variant *v)
{
	if (v->kernel)
		clReleaseKernel(v->kernel);
	if (v->reduce)
		clReleaseKernel(v->reduce);
	v->reduce = NULL;
	if (v->program)
		clReleaseProgram(v->program);
	v->kernel = NULL;
	v->program = NULL;
}

/* Build v (its cfg and transposes set). 0, or -EIO when it does not fit the device or
 * does not build (logged at info level: trying configurations that do not fit is normal). */
static int gemm_variant_build(struct rxd_device *dev, struct rxd_gemm_variant *v)
{
	const struct rxd_gemm_config *c = &v->cfg;
	const char *src = kernels_find(c->kernel == RXD_GEMM_TILED ? "gemm.cl"
				       : c->kernel == RXD_GEMM_VEC ? "gemm_vec.cl"
								     : "gemm_reg.cl");
	const char *entry = c->kernel == RXD_GEMM_TILED ? "gemm_tiled"
			    : c->kernel == RXD_GEMM_VEC ? "gemm_vec"
							  : "gemm_reg";
	char opts[512], cfgname[80], *log = NULL;
	size_t wg = 0, threads;
	cl_int e;

	gemm_config_name(c, cfgname, sizeof(cfgname));
	snprintf(v->name, sizeof(v->name), "%s-%c%c", cfgname, v->trans_a ? 'T' : 'N',
		 v->trans_b ? 'T' : 'N');
	if (!src)
		fatal("kernel source for %s is not embedded: the build is broken", v->name);
	threads = (size_t)(c->tsm / c->wptm) * (size_t)(c->tsn / c->wptn);
	if (!gemm_config_valid(c) || threads > dev->max_work_group_size ||
	    gemm_config_local_bytes(c) > dev->local_mem_bytes)
		return -EIO;
	if (c->kernel == RXD_GEMM_VEC)
		snprintf(opts, sizeof(opts),
			 "-cl-std=CL1.1 -DVW=%d -DNB=%d -DTRANS_A=%d -DTRANS_B=%d -DSTORE_T=%d",
			 c->tsm, c->tsn, v->trans_a, v->trans_b, v->trans_a && v->trans_b);
	else
		snprintf(opts, sizeof(opts),
		 "-cl-std=CL1.1 -DTRANS_A=%d -DTRANS_B=%d -DTSM=%d -DTSN=%d -DTSK=%d "
		 "-DWPTM=%d -DWPTN=%d -DVWM=%d -DVWN=%d -DPADA=%d -DPADB=%d -DMADD=%d",
		 v->trans_a, v->trans_b, c->tsm, c->tsn, c->tsk, c->wptm, c->wptn, c->vwm, c->vwn,
		 c->pada, c->padb, c->madd);
	if (kcache_build(dev->kcache, dev, v->name, src, opts, &v->program, &log) < 0) {
		if (log)
			log_msg(LOG_WARNING, "%s: compiler output:\n%s", v->name, log);
		free(log);
		return -EIO;
	}
	v->kernel = clCreateKernel(v->program, entry, &e);
	if (!v->kernel) {
		log_msg(LOG_WARNING, "%s: clCreateKernel: %s", v->name, device_strerror(e));
		goto fail;
	}
	if (c->kernel == RXD_GEMM_REG &&
	    !(v->reduce = clCreateKernel(v->program, "gemm_splitk_reduce", &e))) {
		log_msg(LOG_WARNING, "%s: clCreateKernel(gemm_splitk_reduce): %s", v->name,
			device_strerror(e));
		goto fail;
	}
	/* Register pressure can shrink the work-group a kernel may run with. */
	clGetKernelWorkGroupInfo(v->kernel, dev->desc->id, CL_KERNEL_WORK_GROUP_SIZE, sizeof(wg),
				 &wg, NULL);
	if (wg < threads) {
		log_msg(LOG_INFO, "%s: needs %zu work-items, the device allows %zu", v->name,
			threads, wg);
		goto fail;
	}
	return 0;
fail:
	gemm_variant_release(v);
	return -EIO;
}

int gemm_engine_add(struct rxd_gemm_engine *eng, bool trans_a, bool trans_b,
		    const struct rxd_gemm_config *cfg)
{
	struct rxd_gemm_variant *v;
	int vi;

	for (size_t i = 0; i < eng->n_variants; i++)
		if (eng->variants[i].trans_a == trans_a && eng->variants[i].trans_b == trans_b &&
		    memcmp(&eng->variants[i].cfg, cfg, sizeof(*cfg)) == 0)
			return (int)i;
	if (eng->n_variants == eng->cap_variants) {
		size_t cap = eng->cap_variants ? 2 * eng->cap_variants : 16;
		struct rxd_gemm_variant *grown = realloc(eng->variants, cap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		eng->variants = grown;
		eng->cap_variants = cap;
	}
	vi = (int)eng->n_variants;
	v = &eng->variants[vi];
	memset(v, 0, sizeof(*v));
	v->trans_a = trans_a;
	v->trans_b = trans_b;
	v->cfg = *cfg;
	if (gemm_variant_build(eng->dev, v) < 0)
		return -EIO;
	eng->n_variants++;
	if (gemm_selftest(eng, vi) < 0) {
		eng->n_variants--;
		gemm_variant_release(v);
		return -EIO;
	}
	log_msg(LOG_DEBUG, "kernel %s ready", v->name);
	return vi;
}

/* The first configuration of list that builds and passes, or -EIO. */
static int gemm_engine_add_first(struct rxd_gemm_engine *eng, bool ta, bool tb,
				 const struct rxd_gemm_config *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int vi = gemm_engine_add(eng, ta, tb, &list[i]);
		if (vi >= 0 || vi == -ENOMEM)
			return vi;
	}
	return -EIO;
}

#define COUNT(x) (sizeof(x) / sizeof((x)[0]))

int gemm_init(struct rxd_gemm_engine *eng, struct rxd_device *dev, struct rxd_budget *budget)
{
	uint64_t t0 = now_ns();

	/* The self-tests' buffers are accounted in the budget like any job's. */
	memset(eng, 0, sizeof(*eng));
	eng->dev = dev;
	eng->budget = budget;
	for (int ta = 0; ta < 2; ta++) {
		for (int tb = 0; tb < 2; tb++) {
			bool cpu = strcmp(dev->desc->type, "CPU") == 0;
			int tiled, vec, tiny, small, medium, large, thin_n, thin_m;

			/* The edge-handling tiled kernel is the fallback: without it nothing
			 * runs. */
			tiled = gemm_engine_add_first(eng, ta, tb, gemm_default_tiled,
						      COUNT(gemm_default_tiled));
			if (tiled < 0) {
				log_msg(LOG_ERR, "no GEMM kernel for trans_a=%d trans_b=%d builds "
						 "and passes its self-test on this device",
					ta, tb);
				gemm_fini(eng);
				return -EIO;
			}
			vec = cpu ? gemm_engine_add_first(eng, ta, tb, gemm_default_vec_cpu,
							  COUNT(gemm_default_vec_cpu))
				  : -1;
			tiny = cpu ? gemm_engine_add_first(eng, ta, tb, gemm_default_reg_small_cpu,
							   COUNT(gemm_default_reg_small_cpu))
				   : gemm_engine_add_first(eng, ta, tb, gemm_default_reg_tiny_gpu,
							   COUNT(gemm_default_reg_tiny_gpu));
			small = cpu ? gemm_engine_add_first(eng, ta, tb, gemm_default_reg_small_cpu,
							    COUNT(gemm_default_reg_small_cpu))
				    : gemm_engine_add_first(eng, ta, tb, gemm_default_reg_small_gpu,
							    COUNT(gemm_default_reg_small_gpu));
			medium = cpu ? gemm_engine_add_first(eng, ta, tb, gemm_default_reg_medium_cpu,
							     COUNT(gemm_default_reg_medium_cpu))
				     : gemm_engine_add_first(eng, ta, tb, gemm_default_reg_medium_gpu,
							     COUNT(gemm_default_reg_medium_gpu));
			large = gemm_engine_add_first(eng, ta, tb, gemm_default_reg_large,
						      COUNT(gemm_default_reg_large));
			thin_n = cpu ? gemm_engine_add_first(eng, ta, tb, gemm_default_reg_thin_n_cpu,
							     COUNT(gemm_default_reg_thin_n_cpu))
				     : gemm_engine_add_first(eng, ta, tb, gemm_default_reg_thin_n_gpu,
							     COUNT(gemm_default_reg_thin_n_gpu));
			thin_m = cpu ? gemm_engine_add_first(eng, ta, tb, gemm_default_reg_thin_m_cpu,
							     COUNT(gemm_default_reg_thin_m_cpu))
				     : gemm_engine_add_first(eng, ta, tb, gemm_default_reg_thin_m_gpu,
							     COUNT(gemm_default_reg_thin_m_gpu));
			if (tiny < 0)
				tiny = tiled;
			if (small < 0)
				small = tiny;
			if (medium < 0)
				medium = small;
			if (large < 0)
				large = medium;
			eng->choice[ta][tb][0] = tiny;
			eng->choice[ta][tb][1] = small;
			eng->choice[ta][tb][2] = medium;
			eng->choice[ta][tb][3] = large;
			eng->choice[ta][tb][RXD_GEMM_CLASS_THIN_N] = thin_n < 0 ? tiled : thin_n;
			eng->choice[ta][tb][RXD_GEMM_CLASS_THIN_M] = thin_m < 0 ? tiled : thin_m;
			/* The register-blocked variants stay built (cached after the first
			 * start): the tuner starts from them, and on CPU-only machines they are
			 * how test-gemm checks the GPU kernels. */
			for (int cls = 0; vec >= 0 && cls < RXD_GEMM_CLASSES; cls++)
				eng->choice[ta][tb][cls] = vec;
		}
	}
	eng->build_ns = now_ns() - t0;
	log_msg(LOG_INFO, "%zu GEMM kernels built and self-tested in %.0f ms", eng->n_variants,
		(double)eng->build_ns / 1e6);
	for (int cl = 0; cl < RXD_GEMM_CLASSES; cl++)
		log_msg(LOG_INFO, "size class %d uses %s", cl, eng->variants[eng->choice[0][0][cl]].name);
	return 0;
}

void gemm_fini(struct rxd_gemm_engine *eng)
{
	for (size_t i = 0; i < eng->n_variants; i++)
		gemm_variant_release(&eng->variants[i]);
	free(eng->variants);
	eng->variants = NULL;
	eng->n_variants = eng->cap_variants = 0;
}

/* ---- GEMM on device buffers at element offsets (nasops.c's convolutions) -------------- */

/* Run variant's offset-taking kernel on one problem whose matrices start off, 2 * off and
 * 3 * off floats into their buffers, beside the CPU reference; the floats before C's must
 * stay as they were. 0 when right. */
static int gemm_selftest_at_one(struct rxd_gemm_engine *eng, int vi, int M, int N, int K, int LD,
				int off)
{
	const struct rxd_gemm_variant *v = &eng->variants[vi];
	struct rxd_gemm g = { .m = M, .n = N, .k = K, .trans_a = v->trans_a,
			      .trans_b = v->trans_b, .alpha = 1.5f, .beta = -0.5f,
			      .lda = LD, .ldb = LD, .ldc = LD, .batch_count = 1 };
	size_t a_n = (size_t)LD * (size_t)((v->trans_a ? M : K) - 1) + (size_t)(v->trans_a ? K : M);
	size_t b_n = (size_t)LD * (size_t)((v->trans_b ? K : N) - 1) + (size_t)(v->trans_b ? N : K);
	size_t c_n = (size_t)LD * (size_t)(N - 1) + (size_t)M;
	size_t a_len = a_n + (size_t)off, b_len = b_n + 2 * (size_t)off;
	size_t c_len = c_n + 3 * (size_t)off;
	float *a = malloc(a_len * sizeof(float)), *b = malloc(b_len * sizeof(float));
	float *c = malloc(c_len * sizeof(float)), *got = malloc(c_len * sizeof(float));
	struct rxd_device *dev = eng->dev;
	cl_mem mem[3] = { NULL }, ma, mb, mc;
	struct rxd_budget_res res;
	uint64_t bytes[3];
	uint64_t seed = 4242;
	double max_err;
	int64_t bi, bj;
	cl_int e = CL_SUCCESS;
	int ret = -ENOMEM;

	bytes[0] = a_len * sizeof(float);
	bytes[1] = b_len * sizeof(float);
	bytes[2] = c_len * sizeof(float);
	memset(&res, 0, sizeof(res));
	if (!a || !b || !c || !got)
		goto out;
	refgemm_fill_random(a, a_len, &seed);
	refgemm_fill_random(b, b_len, &seed);
	refgemm_fill_random(c, c_len, &seed);
	/* From the budget, like every buffer the daemon makes; none there now (a NAS job's
	 * network or device tensors hold it) is no verdict on the kernel. */
	ret = -EAGAIN;
	if (gemm_buffers_get(eng, &res, bytes, mem, &e) < 0)
		goto out;
	ret = -EIO;
	ma = mem[0], mb = mem[1], mc = mem[2];
	if (clEnqueueWriteBuffer(dev->queue, ma, CL_FALSE, 0, a_len * sizeof(float), a, 0, NULL,
				 NULL) != CL_SUCCESS ||
	    clEnqueueWriteBuffer(dev->queue, mb, CL_FALSE, 0, b_len * sizeof(float), b, 0, NULL,
				 NULL) != CL_SUCCESS ||
	    clEnqueueWriteBuffer(dev->queue, mc, CL_FALSE, 0, c_len * sizeof(float), c, 0, NULL,
				 NULL) != CL_SUCCESS ||
	    gemm_enqueue_at(eng, vi, &g, ma, off, mb, 2 * off, mc, 3 * off, NULL) != CL_SUCCESS ||
	    clEnqueueReadBuffer(dev->queue, mc, CL_TRUE, 0, c_len * sizeof(float), got, 0, NULL,
				NULL) != CL_SUCCESS) {
		log_msg(LOG_WARNING, "%s+offsets: self-test could not run", v->name);
		goto out;
	}
	refgemm(0, v->trans_a, v->trans_b, M, N, K, g.alpha, a + off, LD, b + 2 * off, LD, g.beta,
		c + 3 * off, LD);
	if (memcmp(got, c, 3 * (size_t)off * sizeof(float)) != 0 ||
	    refgemm_compare(0, M, N, K, got + 3 * off, c + 3 * off, LD, &max_err, &bi, &bj) != 0) {
		log_msg(LOG_WARNING, "%s+offsets: self-test %dx%dx%d at offset %d gives wrong results",
			v->name, M, N, K, off);
		goto out;
	}
	ret = 0;
out:
	clFinish(dev->queue);
	gemm_buffers_put(eng, &res, mem);
	free(a), free(b), free(c), free(got);
	return ret;
}

int gemm_prepare_at(struct rxd_gemm_engine *eng, int variant)
{
	struct rxd_gemm_variant *v = &eng->variants[variant];
	const struct rxd_gemm_config *c = &v->cfg;
	int big = 2 * (c->tsm > c->tsn ? c->tsm : c->tsn) + 8, ret;

	if (v->at_tested)
		return 0;
	if (v->at_failed)
		return -EIO;
	v->at_tested = true; /* the self-test itself enqueues through gemm_enqueue_at */
	/* Odd offsets take the scalar paths; offsets of 4 keep the register-blocked kernel's
	 * whole tiles on its vector path. */
	ret = gemm_selftest_at_one(eng, variant, 37, 29, 21, 41, 3);
	if (ret == 0 && c->kernel == RXD_GEMM_REG)
		ret = gemm_selftest_at_one(eng, variant, 2 * c->tsm + 4, c->tsn + 8,
					   3 * c->tsk + 4, big, 4);
	if (ret < 0) {
		v->at_tested = false;
		/* Without room for its buffers the test runs again at the next use. */
		v->at_failed = ret != -EAGAIN;
		return ret == -EAGAIN ? -EAGAIN : -EIO;
	}
	return 0;
}

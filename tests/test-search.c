/* test-search.c: the DARTS search (daemon/search.c) on a real OpenCL device (PoCL here;
 * rusticl through test-rusticl-search.sh).
 *
 * - Gradients: the whole supernet's (a sample of the weights, every alpha; convolutions
 *   through direct kernels and through the GEMM engine) against central differences of a
 *   reference written here in double from the reference code's definition of the search
 *   network (model_search.py, operations.py), which reads the weights by their state_dict
 *   names: it shares no code and no lowering with the daemon.
 * - Learning: a seeded synthetic data set (colour and stripes per class, noise): the training loss
 *   falls and the validation accuracy rises well above chance.
 * - Determinism, resume through the state blob, the genotype rule, the memory estimate,
 *   refused input.
 *
 * RXGEMM_TEST_DEVICE picks the device (as rxgemmd --device); RXGEMM_TEST_SMALL=1 runs the
 * gradient, determinism and genotype tests only (slow implementations). Exits 77
 * (skipped) when there is no device. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search.h"

static struct rxd_device dev;
/* Convolutions through direct kernels (ops, gr) and through the GEMM engine as the daemon
 * runs them (ops_eng, gr_eng: the gradient test runs both). */
static struct rxd_nasops ops, ops_eng;
static struct rxd_nasgrad gr, gr_eng;
static struct rxd_gemm_engine eng;
static bool small;

/* The tiny network of the gradient test: a normal cell at 8x8, then two reduction cells. */
static void tiny_config(struct rxd_search_config *cfg, int32_t batch, uint64_t seed)
{
	search_config_defaults(cfg);
	cfg->C = 4;
	cfg->layers = 3;
	cfg->classes = 4;
	cfg->height = cfg->width = 8;
	cfg->batch = batch;
	cfg->seed = seed;
}

static struct rxd_search *start_on(const struct rxd_search_config *cfg, struct rxd_nasops *o,
				   struct rxd_nasgrad *g)
{
	struct rxd_error err = { 0 };
	struct rxd_search *s;

	ck_assert_msg(search_prepare(cfg, &s, &err) == 0, "prepare: %s", err.msg);
	ck_assert_msg(search_start(s, o, g, &err) == 0, "start: %s", err.msg);
	return s;
}

static struct rxd_search *start(const struct rxd_search_config *cfg)
{
	return start_on(cfg, &ops, &gr);
}

static uint64_t rng_state = 42;

static double urand(void) /* [0, 1) */
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- the reference in double ---------------------------------------------------------- */

struct dt {
	int n, c, h, w;
	double *v;
};

static struct dt dt_new(int n, int c, int h, int w)
{
	struct dt t = { n, c, h, w, calloc((size_t)n * c * h * w, sizeof(double)) };

	ck_assert(t.v);
	return t;
}

static size_t dt_len(const struct dt *t)
{
	return (size_t)t->n * t->c * t->h * t->w;
}

#define AT(t, b, ch, y, x) ((t).v[((((size_t)(b) * (t).c + (ch)) * (t).h + (y)) * (t).w + (x))])

struct refnet {
	const struct rxd_nas_plan *plan;
	const struct rxd_search_config *cfg;
	double *blob;     /* the state_dict */
	double *alpha;    /* [2][edges][8] */
};

static const double *ref_param(const struct refnet *r, const char *name)
{
	for (size_t i = 0; i < r->plan->n_params; i++)
		if (strcmp(r->plan->params[i].name, name) == 0)
			return r->blob + r->plan->params[i].blob_off;
	ck_abort_msg("no parameter %s", name);
	return NULL;
}

static struct dt ref_relu(const struct dt *x)
{
	struct dt y = dt_new(x->n, x->c, x->h, x->w);

	for (size_t i = 0; i < dt_len(x); i++)
		y.v[i] = x->v[i] > 0 ? x->v[i] : 0;
	return y;
}

/* One output of nn.Conv2d(bias=False): image b, channel o, position (i, j). */
static double ref_conv_at(const struct dt *x, const double *wt, int cout, int k, int stride,
			  int pad, int dil, int groups, int b, int o, int i, int j)
{
	int cpg = x->c / groups, opg = cout / groups;
	double s = 0;

	for (int ci = 0; ci < cpg; ci++)
		for (int ky = 0; ky < k; ky++)
			for (int kx = 0; kx < k; kx++) {
				int yy = i * stride - pad + ky * dil;
				int xx = j * stride - pad + kx * dil;

				if (yy < 0 || yy >= x->h || xx < 0 || xx >= x->w)
					continue;
				s += wt[((o * cpg + ci) * k + ky) * k + kx] *
				     AT(*x, b, (o / opg) * cpg + ci, yy, xx);
			}
	return s;
}

/* nn.Conv2d(bias=False) on x: weight [cout][cin/groups][k][k]. */
static struct dt ref_conv(const struct dt *x, const double *wt, int cout, int k, int stride,
			  int pad, int dil, int groups)
{
	int ho = (x->h + 2 * pad - dil * (k - 1) - 1) / stride + 1;
	int wo = (x->w + 2 * pad - dil * (k - 1) - 1) / stride + 1;
	struct dt y = dt_new(x->n, cout, ho, wo);

	for (int b = 0; b < x->n; b++)
		for (int o = 0; o < cout; o++)
			for (int i = 0; i < ho; i++)
				for (int j = 0; j < wo; j++)
					AT(y, b, o, i, j) = ref_conv_at(x, wt, cout, k, stride, pad,
									dil, groups, b, o, i, j);
	return y;
}

/* BatchNorm in training mode (biased variance); affine when gamma. */
static void ref_bn(struct dt *x, const double *gamma, const double *beta)
{
	size_t hw = (size_t)x->h * x->w, m = (size_t)x->n * hw;

	for (int ch = 0; ch < x->c; ch++) {
		double mean = 0, var = 0;
		for (int b = 0; b < x->n; b++)
			for (size_t p = 0; p < hw; p++)
				mean += x->v[((size_t)b * x->c + ch) * hw + p];
		mean /= (double)m;
		for (int b = 0; b < x->n; b++)
			for (size_t p = 0; p < hw; p++) {
				double d = x->v[((size_t)b * x->c + ch) * hw + p] - mean;
				var += d * d;
			}
		var /= (double)m;
		for (int b = 0; b < x->n; b++)
			for (size_t p = 0; p < hw; p++) {
				double *v = &x->v[((size_t)b * x->c + ch) * hw + p];
				*v = (*v - mean) / sqrt(var + 1e-5);
				if (gamma)
					*v = *v * gamma[ch] + beta[ch];
			}
	}
}

/* One output of a 3x3 pool, pad 1; avg without the padding. */
static double ref_pool_at(const struct dt *x, bool max, int stride, int b, int ch, int i, int j)
{
	double s = max ? -INFINITY : 0;
	int cnt = 0;

	for (int yy = i * stride - 1; yy <= i * stride + 1; yy++)
		for (int xx = j * stride - 1; xx <= j * stride + 1; xx++) {
			if (yy < 0 || yy >= x->h || xx < 0 || xx >= x->w)
				continue;
			s = max ? fmax(s, AT(*x, b, ch, yy, xx)) : s + AT(*x, b, ch, yy, xx);
			cnt++;
		}
	return max ? s : s / cnt;
}

static struct dt ref_pool(const struct dt *x, bool max, int stride)
{
	int ho = (x->h - 1) / stride + 1, wo = (x->w - 1) / stride + 1;
	struct dt y = dt_new(x->n, x->c, ho, wo);

	for (int b = 0; b < x->n; b++)
		for (int ch = 0; ch < x->c; ch++)
			for (int i = 0; i < ho; i++)
				for (int j = 0; j < wo; j++)
					AT(y, b, ch, i, j) =
						ref_pool_at(x, max, stride, b, ch, i, j);
	return y;
}

/* ReLU, 1x1 conv, BN (affine off). */
static struct dt ref_relu_conv_bn(const struct refnet *r, const struct dt *x, int cout,
				  const char *prefix)
{
	char n[96];
	struct dt a = ref_relu(x), y;

	snprintf(n, sizeof(n), "%s.op.1", prefix);
	y = ref_conv(&a, ref_param(r, n), cout, 1, 1, 0, 1, 1);
	free(a.v);
	ref_bn(&y, NULL, NULL);
	return y;
}

static struct dt ref_fr(const struct refnet *r, const struct dt *x, int cout, const char *prefix)
{
	char n[96];
	struct dt a = ref_relu(x), sh = dt_new(x->n, x->c, x->h - 1, x->w - 1), y1, y2, y;

	for (int b = 0; b < x->n; b++)
		for (int ch = 0; ch < x->c; ch++)
			for (int i = 0; i < x->h - 1; i++)
				for (int j = 0; j < x->w - 1; j++)
					AT(sh, b, ch, i, j) = AT(a, b, ch, i + 1, j + 1);
	snprintf(n, sizeof(n), "%s.conv_1", prefix);
	y1 = ref_conv(&a, ref_param(r, n), cout / 2, 1, 2, 0, 1, 1);
	snprintf(n, sizeof(n), "%s.conv_2", prefix);
	y2 = ref_conv(&sh, ref_param(r, n), cout / 2, 1, 2, 0, 1, 1);
	y = dt_new(x->n, cout, y1.h, y1.w);
	for (int b = 0; b < x->n; b++) {
		size_t half = (size_t)(cout / 2) * y.h * y.w;

		memcpy(&y.v[(size_t)b * 2 * half], &y1.v[(size_t)b * half], half * sizeof(double));
		memcpy(&y.v[(size_t)b * 2 * half + half], &y2.v[(size_t)b * half],
		       half * sizeof(double));
	}
	ref_bn(&y, NULL, NULL);
	free(a.v), free(sh.v), free(y1.v), free(y2.v);
	return y;
}

/* ReLU, depthwise k (stride, dilation), 1x1, BN: one half of a sep_conv, or a dil_conv. */
static struct dt ref_dw_pw(const struct refnet *r, const struct dt *x, int k, int stride, int dil,
			   const char *prefix, int first)
{
	char n[96];
	struct dt a = ref_relu(x), t, y;

	snprintf(n, sizeof(n), "%s.op.%d", prefix, first);
	t = ref_conv(&a, ref_param(r, n), x->c, k, stride, dil * (k / 2), dil, x->c);
	snprintf(n, sizeof(n), "%s.op.%d", prefix, first + 1);
	y = ref_conv(&t, ref_param(r, n), x->c, 1, 1, 0, 1, 1);
	ref_bn(&y, NULL, NULL);
	free(a.v), free(t.v);
	return y;
}

/* One primitive of the search space (not none). */
static struct dt ref_op(const struct refnet *r, int op, const struct dt *x, int stride,
			const char *prefix)
{
	struct dt y, t;

	switch (op) {
	case RXD_OP_MAX_POOL_3X3:
	case RXD_OP_AVG_POOL_3X3:
		y = ref_pool(x, op == RXD_OP_MAX_POOL_3X3, stride);
		ref_bn(&y, NULL, NULL);
		return y;
	case RXD_OP_SKIP_CONNECT:
		if (stride == 2)
			return ref_fr(r, x, x->c, prefix);
		y = dt_new(x->n, x->c, x->h, x->w);
		memcpy(y.v, x->v, dt_len(x) * sizeof(double));
		return y;
	case RXD_OP_SEP_CONV_3X3:
	case RXD_OP_SEP_CONV_5X5: {
		int k = op == RXD_OP_SEP_CONV_3X3 ? 3 : 5;
		t = ref_dw_pw(r, x, k, stride, 1, prefix, 1);
		y = ref_dw_pw(r, &t, k, 1, 1, prefix, 5);
		free(t.v);
		return y;
	}
	default:
		return ref_dw_pw(r, x, op == RXD_OP_DIL_CONV_3X3 ? 3 : 5, stride, 2, prefix, 1);
	}
}

/* The mean cross-entropy of the search network on images (batch x 3 x h x w). */
static double ref_loss(const struct refnet *r, const float *images, const int32_t *labels)
{
	const struct rxd_search_config *cfg = r->cfg;
	const int edges = cfg->steps * (cfg->steps + 3) / 2, n = cfg->batch;
	struct dt x = dt_new(n, 3, cfg->height, cfg->width), s0, s1;
	int C_curr = cfg->C;
	bool red_prev = false;
	double loss = 0;

	for (size_t i = 0; i < dt_len(&x); i++)
		x.v[i] = images[i];
	s0 = ref_conv(&x, ref_param(r, "stem.0"), 3 * cfg->C, 3, 1, 1, 1, 1);
	{
		const double *bn = ref_param(r, "stem.1");
		ref_bn(&s0, bn, bn + 3 * cfg->C);
	}
	free(x.v);
	s1 = dt_new(s0.n, s0.c, s0.h, s0.w);
	memcpy(s1.v, s0.v, dt_len(&s0) * sizeof(double));
	for (int i = 0; i < cfg->layers; i++) {
		bool red = i == cfg->layers / 3 || i == 2 * cfg->layers / 3;
		struct dt st[2 + RXD_NAS_MAX_STEPS], out;
		char n1[96];
		int off = 0;

		if (red)
			C_curr *= 2;
		snprintf(n1, sizeof(n1), "cells.%d.preprocess0", i);
		st[0] = red_prev ? ref_fr(r, &s0, C_curr, n1)
				 : ref_relu_conv_bn(r, &s0, C_curr, n1);
		snprintf(n1, sizeof(n1), "cells.%d.preprocess1", i);
		st[1] = ref_relu_conv_bn(r, &s1, C_curr, n1);
		for (int node = 0; node < cfg->steps; node++) {
			int ho = red ? (st[0].h + 1) / 2 : st[0].h;
			int wo = red ? (st[0].w + 1) / 2 : st[0].w;
			struct dt sum = dt_new(n, C_curr, ho, wo);
			for (int j = 0; j < node + 2; j++) {
				const double *a = r->alpha + ((red ? edges : 0) + off + j) * 8;
				double m = a[0], z = 0, wts[8];
				for (int k = 1; k < 8; k++)
					m = fmax(m, a[k]);
				for (int k = 0; k < 8; k++)
					z += wts[k] = exp(a[k] - m);
				for (int k = 1; k < 8; k++) {
					struct dt o;
					snprintf(n1, sizeof(n1), "cells.%d._ops.%d._ops.%d", i,
						 off + j, k);
					o = ref_op(r, k, &st[j], red && j < 2 ? 2 : 1, n1);
					for (size_t e = 0; e < dt_len(&sum); e++)
						sum.v[e] += wts[k] / z * o.v[e];
					free(o.v);
				}
			}
			off += node + 2;
			st[node + 2] = sum;
		}
		out = dt_new(n, C_curr * cfg->multiplier, st[2].h, st[2].w);
		for (int k = 0; k < cfg->multiplier; k++) {
			const struct dt *src = &st[2 + cfg->steps - cfg->multiplier + k];
			size_t hw = (size_t)src->h * src->w;
			size_t len = (size_t)C_curr * hw;
			for (int b = 0; b < n; b++)
				memcpy(&out.v[((size_t)b * out.c + k * C_curr) * hw],
				       &src->v[(size_t)b * len], len * sizeof(double));
		}
		for (int k = 0; k < cfg->steps + 2; k++)
			free(st[k].v);
		free(s0.v);
		s0 = s1;
		s1 = out;
		red_prev = red;
	}
	{
		const double *lw = ref_param(r, "classifier");
		const double *lb = lw + (size_t)cfg->classes * s1.c;
		size_t hw = (size_t)s1.h * s1.w;
		for (int b = 0; b < n; b++) {
			double z[64], m = -INFINITY, e = 0;
			ck_assert(cfg->classes <= 64);
			for (int o = 0; o < cfg->classes; o++) {
				z[o] = lb[o];
				for (int ch = 0; ch < s1.c; ch++) {
					double g = 0;
					for (size_t p = 0; p < hw; p++)
						g += s1.v[((size_t)b * s1.c + ch) * hw + p];
					z[o] += lw[(size_t)o * s1.c + ch] * g / (double)hw;
				}
				m = fmax(m, z[o]);
			}
			for (int o = 0; o < cfg->classes; o++)
				e += exp(z[o] - m);
			loss += m + log(e) - z[labels[b]];
		}
	}
	free(s0.v), free(s1.v);
	return loss / n;
}

/* The blob offset of each trainable float, in search_gradients' order. */
static uint64_t *trainable_map(const struct rxd_nas_plan *p, uint64_t n)
{
	uint64_t *map = malloc(n * sizeof(*map)), k = 0;

	ck_assert(map);
	for (size_t i = 0; i < p->n_params; i++) {
		const struct rxd_nas_param *q = &p->params[i];
		uint64_t len = q->kind == RXD_NAS_P_CONV || q->kind == RXD_NAS_P_LINEAR ? q->floats
			       : q->kind == RXD_NAS_P_BN ? 2 * (uint64_t)q->cout : 0;
		for (uint64_t j = 0; j < len; j++)
			map[k++] = q->blob_off + j;
	}
	ck_assert_uint_eq(k, n);
	return map;
}

/* ---- data ----------------------------------------------------------------------------- */

/* Random images in [-1, 1) and labels. */
static void random_batch(const struct rxd_search_config *cfg, float *images, int32_t *labels)
{
	size_t len = (size_t)cfg->batch * 3 * cfg->height * cfg->width;

	for (size_t i = 0; i < len; i++)
		images[i] = (float)(2 * urand() - 1);
	for (int i = 0; i < cfg->batch; i++)
		labels[i] = (int32_t)(urand() * cfg->classes);
}

/* A learnable set of 4 classes that a network ending in global average pooling can tell
 * apart beyond the images it saw: class c has colour c % 2 (a fixed random offset per
 * channel, in [-0.5, 0.5)) and stripes along rows (c < 2) or columns (c >= 2) of
 * amplitude 0.5, plus noise of standard deviation 0.6 per pixel (a sum of three
 * uniforms): no single pixel tells the class. */
static void synthetic_set(int n, int hw, const float colour[2][3], float *images,
			  int32_t *labels)
{
	size_t per = (size_t)3 * hw * hw;

	for (int i = 0; i < n; i++) {
		int c = (int)(urand() * 4);
		labels[i] = c;
		for (int ch = 0; ch < 3; ch++)
			for (int y = 0; y < hw; y++)
				for (int x = 0; x < hw; x++) {
					int stripe = (c < 2 ? y : x) % 2 ? 1 : -1;
					images[(size_t)i * per + ((size_t)ch * hw + y) * hw + x] =
						colour[c % 2][ch] + 0.5f * (float)stripe +
						(float)(0.6 * (urand() + urand() + urand() - 1.5) *
							2.0);
				}
	}
}

/* ---- gradients ------------------------------------------------------------------------ */

/* Tolerance: |device - fd| <= REL_TOL |fd| + ABS_TOL max|fd| over the group checked.
 * - The reference is double with central differences at h = 1e-6 on a loss of ~1.5:
 *   rounding ~1e-16 * 1.5 / 1e-6 ~ 1e-10, truncation h^2 |f'''| ~ 1e-12: exact here.
 *   ReLU and max-pool kinks: a difference crosses one only if an input lies within ~1e-6
 *   of it; with a few thousand inputs of size ~1 that is rare, and such a crossing shows as
 *   one wild element, not as a drift.
 * - The device computes in float through ~40 layers, BN among them, whose backward with
 *   batches of 4 x 2 x 2 values per channel in the last cell cancels sums of similar
 *   terms: relative errors up to ~1e-5 per element are float's due (PoCL shows a few
 *   1e-6), more on elements near zero, hence the part relative to the group's scale.
 * - A wrong gradient (a lost BN term, the wrong mixing weight, a slice off by one, a
 *   missing accumulation) is off by a good fraction of the group's scale: 1e-3 relative
 *   plus 1e-4 of the scale leaves two orders of magnitude either way. */
#define REL_TOL 1e-3
#define ABS_TOL 1e-4
#define FD_H 1e-6

static void check_group(const char *what, const float *got, const double *want, size_t n)
{
	double scale = 0, worst = 0;
	size_t worst_i = 0;

	for (size_t i = 0; i < n; i++)
		scale = fmax(scale, fabs(want[i]));
	ck_assert_msg(scale > 1e-4, "%s: the reference gradient is all zeros", what);
	for (size_t i = 0; i < n; i++) {
		double e = fabs(got[i] - want[i]) / (REL_TOL * fabs(want[i]) + ABS_TOL * scale);
		if (e > worst)
			worst = e, worst_i = i;
	}
	fprintf(stderr, "%s: %zu values, scale %.3g, worst %.3g of the tolerance (element %zu: "
		"%.6g vs %.6g)\n", what, n, scale, worst, worst_i, (double)got[worst_i],
		want[worst_i]);
	ck_assert_msg(worst <= 1.0, "%s: element %zu is %.6g, want %.6g", what, worst_i,
		      (double)got[worst_i], want[worst_i]);
}

START_TEST(test_gradients)
{
	struct rxd_search_config cfg;
	struct rxd_search *s;
	struct rxd_error err = { 0 };
	const struct rxd_nas_plan *p;
	size_t in_len, na;
	float *images, *dw, *da, *state, loss, *dw_eng, *da_eng, loss_eng;
	int32_t labels[4];
	uint64_t nt, *map;
	struct refnet r;
	double ref, *fd_w, *fd_a;
	enum { SAMPLES = 40 };
	size_t pick[SAMPLES];
	float got_w[SAMPLES], got_w_eng[SAMPLES];

	tiny_config(&cfg, 4, 7);
	s = start(&cfg);
	p = search_plan(s);
	na = 2 * (size_t)search_edges(s) * RXD_NAS_PRIMITIVES;
	nt = search_trainable_floats(s);
	in_len = (size_t)cfg.batch * 3 * cfg.height * cfg.width;
	images = malloc(in_len * sizeof(float));
	dw = malloc(nt * sizeof(float));
	da = malloc(na * sizeof(float));
	dw_eng = malloc(nt * sizeof(float));
	da_eng = malloc(na * sizeof(float));
	ck_assert(dw_eng && da_eng);
	state = malloc(search_state_bytes(s));
	fd_w = malloc(SAMPLES * sizeof(double));
	fd_a = malloc(na * sizeof(double));
	ck_assert(images && dw && da && state && fd_w && fd_a);
	/* Alphas away from uniform, so that every mixing weight differs. */
	{
		float an[128], ar[128];
		ck_assert_uint_le(na / 2, 128);
		for (size_t k = 0; k < na / 2; k++)
			an[k] = (float)(urand() - 0.5), ar[k] = (float)(urand() - 0.5);
		ck_assert_int_eq(search_set_alphas(s, an, ar), 0);
		random_batch(&cfg, images, labels);
		struct rxd_search_batch b = { images, labels };
		ck_assert_msg(search_gradients(s, &b, &loss, dw, da, &err) == 0, "%s", err.msg);
		/* The same search (one seed) with the GEMM engine's convolutions. */
		struct rxd_search *se = start_on(&cfg, &ops_eng, &gr_eng);
		ck_assert_int_eq(search_set_alphas(se, an, ar), 0);
		ck_assert_msg(search_gradients(se, &b, &loss_eng, dw_eng, da_eng, &err) == 0, "%s",
			      err.msg);
		search_free(se);
	}
	ck_assert_msg(search_state_save(s, state, search_state_bytes(s), &err) == 0, "%s",
		      err.msg);
	/* The reference's weights: the state's state_dict section; its alphas. */
	r.plan = p;
	r.cfg = &cfg;
	r.blob = malloc(p->blob_floats * sizeof(double));
	r.alpha = malloc(na * sizeof(double));
	ck_assert(r.blob && r.alpha);
	{
		const float *blob = (const float *)((const char *)state + RXD_SEARCH_STATE_HEADER);
		float an[128], ar[128];
		for (uint64_t k = 0; k < p->blob_floats; k++)
			r.blob[k] = blob[k];
		search_alphas(s, an, ar);
		for (size_t k = 0; k < na / 2; k++)
			r.alpha[k] = an[k], r.alpha[na / 2 + k] = ar[k];
	}
	ref = ref_loss(&r, images, labels);
	fprintf(stderr, "loss: device %.7g, reference %.7g\n", (double)loss, ref);
	ck_assert_msg(fabs(loss - ref) <= 1e-4 * (1 + fabs(ref)), "loss %g, reference %g",
		      (double)loss, ref);
	ck_assert_msg(fabs(loss_eng - ref) <= 1e-4 * (1 + fabs(ref)), "loss %g (GEMM engine), "
		      "reference %g", (double)loss_eng, ref);
	/* Every alpha. */
	for (size_t k = 0; k < na; k++) {
		double save = r.alpha[k], lp, lm;
		r.alpha[k] = save + FD_H;
		lp = ref_loss(&r, images, labels);
		r.alpha[k] = save - FD_H;
		lm = ref_loss(&r, images, labels);
		r.alpha[k] = save;
		fd_a[k] = (lp - lm) / (2 * FD_H);
	}
	check_group("alphas (normal rows, then reduce rows)", da, fd_a, na);
	check_group("alphas, GEMM engine", da_eng, fd_a, na);
	/* A sample of the weights: evenly spread over the trainables (the stem, every cell's
	 * preprocessing and operations, the classifier), plus the last (a classifier bias). */
	map = trainable_map(p, nt);
	for (size_t i = 0; i < SAMPLES; i++) {
		size_t k = i + 1 == SAMPLES ? nt - 1 : (size_t)(i * (nt / (SAMPLES - 1))) + i % 7;
		double save, lp, lm;

		pick[i] = k;
		got_w[i] = dw[k];
		got_w_eng[i] = dw_eng[k];
		save = r.blob[map[k]];
		r.blob[map[k]] = save + FD_H;
		lp = ref_loss(&r, images, labels);
		r.blob[map[k]] = save - FD_H;
		lm = ref_loss(&r, images, labels);
		r.blob[map[k]] = save;
		fd_w[i] = (lp - lm) / (2 * FD_H);
	}
	check_group("weights (a sample)", got_w, fd_w, SAMPLES);
	check_group("weights, GEMM engine", got_w_eng, fd_w, SAMPLES);
	/* The stem's BN gamma and beta: the only affine BN. */
	{
		size_t g0 = 0;
		float got[2];
		double want[2];
		while (map[g0] != p->params[1].blob_off)
			g0++;
		ck_assert_int_eq(p->params[1].kind, RXD_NAS_P_BN);
		for (int e = 0; e < 2; e++) {
			size_t k = g0 + (size_t)e * p->params[1].cout; /* gamma[0], beta[0] */
			double save = r.blob[map[k]], lp, lm;
			r.blob[map[k]] = save + FD_H;
			lp = ref_loss(&r, images, labels);
			r.blob[map[k]] = save - FD_H;
			lm = ref_loss(&r, images, labels);
			r.blob[map[k]] = save;
			want[e] = (lp - lm) / (2 * FD_H);
			got[e] = dw[k];
		}
		check_group("stem BN gamma[0], beta[0]", got, want, 2);
	}
	(void)pick;
	free(map), free(r.blob), free(r.alpha), free(images), free(dw), free(da), free(state);
	free(dw_eng), free(da_eng);
	free(fd_w), free(fd_a);
	search_free(s);
}
END_TEST

/* ---- learning ------------------------------------------------------------------------- */

START_TEST(test_learning)
{
	enum { N = 64, STEPS = 24 };
	struct rxd_search_config cfg;
	struct rxd_search *s;
	struct rxd_error err = { 0 };
	size_t per = 3 * 8 * 8;
	float colour[2][3], *tx, *vx, first_loss = 0, last_loss = 0, last_acc = 0;
	int32_t ty[N], vy[N];

	tiny_config(&cfg, 16, 3);
	cfg.steps_per_epoch = N / cfg.batch;
	cfg.epochs = 20;
	tx = malloc(N * per * sizeof(float));
	vx = malloc(N * per * sizeof(float));
	ck_assert(tx && vx);
	for (int k = 0; k < 6; k++)
		colour[k / 3][k % 3] = (float)(urand() - 0.5);
	synthetic_set(N, 8, colour, tx, ty);
	synthetic_set(N, 8, colour, vx, vy);
	s = start(&cfg);
	for (int step = 0; step < STEPS; step++) {
		size_t b = (size_t)(step % (N / cfg.batch)) * cfg.batch;
		struct rxd_search_batch tb = { tx + b * per, ty + b };
		struct rxd_search_batch vb = { vx + b * per, vy + b };
		struct rxd_search_result r;

		ck_assert_msg(search_step(s, &tb, &vb, &r, &err) == 0, "step %d: %s", step,
			      err.msg);
		ck_assert_uint_eq(r.step, (uint64_t)step + 1);
		ck_assert(isfinite(r.train_loss) && isfinite(r.valid_loss));
		/* One pass over the four batches at the start and at the end. */
		if (step < 4)
			first_loss += r.train_loss / 4;
		if (step >= STEPS - 4) {
			last_loss += r.train_loss / 4;
			last_acc += r.valid_acc / 4;
		}
		if (step % 8 == 0 || step == STEPS - 1)
			fprintf(stderr, "step %d epoch %d lr %.4f: train %.3f (%.2f), valid %.3f "
				"(%.2f), |g| %.2f\n", step, r.epoch, r.lr, (double)r.train_loss,
				(double)r.train_acc, (double)r.valid_loss, (double)r.valid_acc,
				(double)r.grad_norm);
	}
	/* Chance is 0.25 and a loss of ln 4 = 1.39. */
	ck_assert_msg(last_loss < 0.5f * first_loss, "the training loss went from %g to %g",
		      (double)first_loss, (double)last_loss);
	ck_assert_msg(last_acc >= 0.8f, "the validation accuracy is %g", (double)last_acc);
	search_free(s);
	free(tx), free(vx);
}
END_TEST

/* ---- determinism and resume ----------------------------------------------------------- */

struct run_data {
	float *tx, *vx;
	int32_t ty[8], vy[8];
};

static void make_run_data(const struct rxd_search_config *cfg, struct run_data *d, int steps)
{
	size_t len = (size_t)cfg->batch * 3 * cfg->height * cfg->width * steps;

	d->tx = malloc(len * sizeof(float));
	d->vx = malloc(len * sizeof(float));
	ck_assert(d->tx && d->vx && cfg->batch <= 2);
	for (size_t i = 0; i < len; i++)
		d->tx[i] = (float)(2 * urand() - 1), d->vx[i] = (float)(2 * urand() - 1);
	for (int i = 0; i < 8; i++) {
		d->ty[i] = (int32_t)(urand() * cfg->classes);
		d->vy[i] = (int32_t)(urand() * cfg->classes);
	}
}

/* Steps [from, to) of a run: step k uses batch k of the data (labels repeat). */
static void run_steps(struct rxd_search *s, const struct rxd_search_config *cfg,
		      const struct run_data *d, int from, int to)
{
	size_t per = (size_t)cfg->batch * 3 * cfg->height * cfg->width;
	struct rxd_error err = { 0 };

	for (int k = from; k < to; k++) {
		struct rxd_search_batch tb = { d->tx + k * per, d->ty + (k % 4) * 2 };
		struct rxd_search_batch vb = { d->vx + k * per, d->vy + (k % 4) * 2 };
		struct rxd_search_result r;

		ck_assert_msg(search_step(s, &tb, &vb, &r, &err) == 0, "%s", err.msg);
	}
}

static uint8_t *save_state(struct rxd_search *s)
{
	struct rxd_error err = { 0 };
	uint8_t *b = malloc(search_state_bytes(s));

	ck_assert(b);
	ck_assert_msg(search_state_save(s, b, search_state_bytes(s), &err) == 0, "%s", err.msg);
	return b;
}

START_TEST(test_determinism)
{
	struct rxd_search_config cfg;
	struct rxd_search *a, *b;
	struct run_data d;
	uint8_t *sa, *sb;
	float na[128], ra[128], nb[128], rb[128];
	size_t n;

	tiny_config(&cfg, 2, 11);
	cfg.steps_per_epoch = 1; /* the learning rate changes every step */
	cfg.epochs = 4;
	make_run_data(&cfg, &d, 3);
	a = start(&cfg);
	run_steps(a, &cfg, &d, 0, 3);
	b = start(&cfg);
	run_steps(b, &cfg, &d, 0, 3);
	n = (size_t)search_edges(a) * RXD_NAS_PRIMITIVES;
	search_alphas(a, na, ra);
	search_alphas(b, nb, rb);
	ck_assert_msg(memcmp(na, nb, n * sizeof(float)) == 0 &&
		      memcmp(ra, rb, n * sizeof(float)) == 0, "the alphas differ");
	/* They moved: Adam's first steps move each alpha by about its learning rate. */
	{
		float n0[128], r0[128];
		struct rxd_search *c = start(&cfg);
		double moved = 0;
		search_alphas(c, n0, r0);
		for (size_t k = 0; k < n; k++)
			moved = fmax(moved, fabs(na[k] - n0[k]));
		ck_assert_msg(moved > 1e-4, "the alphas did not move (%g)", moved);
		search_free(c);
	}
	sa = save_state(a);
	sb = save_state(b);
	ck_assert_msg(memcmp(sa, sb, search_state_bytes(a)) == 0, "the states differ");
	free(sa), free(sb);
	search_free(a), search_free(b);
	free(d.tx), free(d.vx);
}
END_TEST

/* The pause hooks (the daemon serves other jobs there): a step cut into pieces, with the
 * device drained and the hook run at some of them, gives the same state bit for bit as a
 * step run straight through; the hook runs only when wanted says so. */
struct pause_count {
	unsigned asked, ran;
	bool every_other;            /* wanted: true every second time; false: never */
};

static bool pause_wanted(void *arg)
{
	struct pause_count *c = arg;

	return c->every_other && c->asked++ % 2 == 1;
}

static int pause_run(void *arg)
{
	struct pause_count *c = arg;

	c->ran++;
	return 0;
}

START_TEST(test_pauses)
{
	struct rxd_search_config cfg;
	struct rxd_search *plain, *never, *some;
	struct pause_count cn = { 0, 0, false }, cs = { 0, 0, true };
	struct rxd_search_pause pn = { pause_wanted, pause_run, &cn };
	struct rxd_search_pause ps = { pause_wanted, pause_run, &cs };
	struct run_data d;
	uint8_t *s0, *s1, *s2;

	tiny_config(&cfg, 2, 5);
	cfg.steps_per_epoch = 1;
	cfg.epochs = 3;
	make_run_data(&cfg, &d, 2);
	plain = start(&cfg);
	run_steps(plain, &cfg, &d, 0, 2);
	never = start(&cfg);
	search_set_pause(never, &pn);
	run_steps(never, &cfg, &d, 0, 2);
	search_set_pause(never, NULL);
	some = start(&cfg);
	search_set_pause(some, &ps);
	run_steps(some, &cfg, &d, 0, 2);
	search_set_pause(some, NULL);
	ck_assert_uint_eq(cn.ran, 0);
	/* Two steps are hundreds of operations: several pieces, half of them paused at. */
	ck_assert_msg(cs.asked >= 4 && cs.ran == cs.asked / 2, "asked %u, ran %u", cs.asked,
		      cs.ran);
	s0 = save_state(plain);
	s1 = save_state(never);
	s2 = save_state(some);
	ck_assert_msg(memcmp(s0, s1, search_state_bytes(plain)) == 0 &&
		      memcmp(s0, s2, search_state_bytes(plain)) == 0,
		      "pieces and pauses changed the search's state");
	free(s0), free(s1), free(s2);
	search_free(plain), search_free(never), search_free(some);
	free(d.tx), free(d.vx);
}
END_TEST

START_TEST(test_resume)
{
	struct rxd_search_config cfg, other;
	struct rxd_search *a, *b, *c;
	struct rxd_error err = { 0 };
	struct run_data d;
	uint8_t *sa, *sb, *sc;
	size_t bytes;

	tiny_config(&cfg, 2, 5);
	cfg.steps_per_epoch = 1;
	cfg.epochs = 4;
	make_run_data(&cfg, &d, 4);
	a = start(&cfg);
	run_steps(a, &cfg, &d, 0, 4);
	b = start(&cfg);
	run_steps(b, &cfg, &d, 0, 2);
	sb = save_state(b);
	search_free(b);
	/* Another seed: loading must replace all of it. */
	other = cfg;
	other.seed = 99;
	c = start(&other);
	bytes = search_state_bytes(c);
	ck_assert_msg(search_state_load(c, sb, bytes, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(search_steps_done(c), 2);
	run_steps(c, &cfg, &d, 2, 4);
	sa = save_state(a);
	sc = save_state(c);
	ck_assert_msg(memcmp(sa, sc, bytes) == 0, "resumed: the state differs from a straight run");
	/* A damaged state, another network's, a short one: refused with a reason. */
	sb[RXD_SEARCH_STATE_HEADER + 100] ^= 1;
	ck_assert_int_eq(search_state_load(c, sb, bytes, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "damaged"), "%s", err.msg);
	ck_assert_int_eq(search_state_load(c, sb, bytes - 4, &err), -EINVAL);
	{
		struct rxd_search_config wide = cfg;
		struct rxd_search *w;
		wide.C = 6;
		ck_assert_int_eq(search_prepare(&wide, &w, &err), 0);
		ck_assert_int_eq(search_state_load(w, sa, bytes, &err), -EINVAL);
		ck_assert_msg(strstr(err.msg, "another network"), "%s", err.msg);
		search_free(w);
	}
	free(sa), free(sb), free(sc);
	search_free(a), search_free(c);
	free(d.tx), free(d.vx);
}
END_TEST

/* ---- the genotype ------------------------------------------------------------------------ */

START_TEST(test_genotype)
{
	/* Edges per node (steps 4): node 0 edges 0-1, node 1 edges 2-4, node 2 edges 5-8,
	 * node 3 edges 9-13; the column is the primitive (0 none, 1 max_pool, 2 avg_pool,
	 * 3 skip, 4 sep3, 5 sep5, 6 dil3, 7 dil5). Weights below are softmax of the row. */
	float n[14][8] = { { 0 } }, r[14][8] = { { 0 } };
	struct rxd_genotype g, parsed;
	struct rxd_error err = { 0 };
	char text[RXD_GENOTYPE_TEXT_MAX];
	/* Normal, node 0: edge 0 has none at 5 (not counted) and sep3 at 1: sep3's weight is
	 * e/(e^5+e+6) = 0.017; edge 1 dil5 at 2: e^2/(e^2+7) = 0.51. Strongest first. */
	n[0][0] = 5, n[0][4] = 1, n[1][7] = 2;
	/* Node 1: edge 2 uniform (1/8, max_pool by the first-on-tie rule), edge 3 skip at 1
	 * (0.28), edge 4 avg_pool at 0.5 (0.19): edges 3 then 4. */
	n[3][3] = 1, n[4][2] = 0.5f;
	/* Node 2: edge 5 max_pool and none at 3 (e^3/(2e^3+6) = 0.435), edges 6 and 8 sep5 and
	 * dil3 at 1.5 (0.390 each: the earlier edge, 6, wins the tie), edge 7 uniform. */
	n[5][1] = 3, n[5][0] = 3, n[6][5] = 1.5f, n[8][6] = 1.5f;
	/* Node 3: edge 13 sep3 and dil3 both at 2 (sep3, the first, 0.356), edge 10 avg_pool at
	 * 1.2 (0.32), the rest uniform. */
	n[13][4] = 2, n[13][6] = 2, n[10][2] = 1.2f;
	/* Reduce: uniform but edge 1 max_pool at 1 and edge 12 (node 3, input 3) skip at 0.7. */
	r[1][1] = 1, r[12][3] = 0.7f;
	search_derive(&n[0][0], &r[0][0], 4, 4, &g);
	{
		const uint8_t want_op[8] = { RXD_OP_DIL_CONV_5X5, RXD_OP_SEP_CONV_3X3,
					     RXD_OP_SKIP_CONNECT, RXD_OP_AVG_POOL_3X3,
					     RXD_OP_MAX_POOL_3X3, RXD_OP_SEP_CONV_5X5,
					     RXD_OP_SEP_CONV_3X3, RXD_OP_AVG_POOL_3X3 };
		const uint8_t want_in[8] = { 1, 0, 1, 2, 0, 1, 4, 1 };
		const uint8_t rwant_op[8] = { RXD_OP_MAX_POOL_3X3, RXD_OP_MAX_POOL_3X3,
					      RXD_OP_MAX_POOL_3X3, RXD_OP_MAX_POOL_3X3,
					      RXD_OP_MAX_POOL_3X3, RXD_OP_MAX_POOL_3X3,
					      RXD_OP_SKIP_CONNECT, RXD_OP_MAX_POOL_3X3 };
		const uint8_t rwant_in[8] = { 1, 0, 0, 1, 0, 1, 3, 0 };
		ck_assert_int_eq(g.normal.n_nodes, 4);
		ck_assert_int_eq(g.normal.n_concat, 4);
		for (int k = 0; k < 8; k++) {
			ck_assert_msg(g.normal.op[k] == want_op[k] &&
					      g.normal.input[k] == want_in[k],
				      "normal %d: (%s, %d), want (%s, %d)", k,
				      genotype_op_name(g.normal.op[k]), g.normal.input[k],
				      genotype_op_name(want_op[k]), want_in[k]);
			ck_assert_msg(g.reduce.op[k] == rwant_op[k] &&
					      g.reduce.input[k] == rwant_in[k],
				      "reduce %d: (%s, %d), want (%s, %d)", k,
				      genotype_op_name(g.reduce.op[k]), g.reduce.input[k],
				      genotype_op_name(rwant_op[k]), rwant_in[k]);
		}
		for (int k = 0; k < 4; k++)
			ck_assert_int_eq(g.normal.concat[k], 2 + k);
	}
	/* Printed, it is text the genotype parser takes back unchanged. */
	ck_assert_uint_lt(genotype_format(&g, text, sizeof(text)), sizeof(text));
	ck_assert_msg(strncmp(text, "Genotype(normal=[('dil_conv_5x5', 1), ('sep_conv_3x3', 0), "
			      "('skip_connect', 1), ('avg_pool_3x3', 2),", 84) == 0, "%s", text);
	ck_assert_msg(genotype_parse(text, strlen(text), &parsed, &err) == 0, "%s", err.msg);
	ck_assert(memcmp(&parsed, &g, sizeof(g)) == 0);
	/* The same through a search's alphas. */
	{
		struct rxd_search_config cfg;
		struct rxd_search *s;
		struct rxd_genotype g2;
		tiny_config(&cfg, 2, 1);
		s = start(&cfg);
		ck_assert_int_eq(search_set_alphas(s, &n[0][0], &r[0][0]), 0);
		search_genotype(s, &g2);
		ck_assert(memcmp(&g2, &g, sizeof(g)) == 0);
		search_free(s);
	}
}
END_TEST

/* ---- memory, refused input ----------------------------------------------------------------- */

START_TEST(test_bytes_and_refusals)
{
	struct rxd_search_config cfg, big;
	struct rxd_search *s;
	struct rxd_error err = { 0 };
	uint64_t b4, b8, floor = 0;
	float images[2 * 3 * 64] = { 0 };
	int32_t labels[2] = { 0, 4 };
	struct rxd_search_batch tb = { images, labels };
	struct rxd_search_result r;

	tiny_config(&cfg, 4, 1);
	ck_assert_int_eq(search_bytes(&cfg, &b4, &err), 0);
	big = cfg;
	big.batch = 8;
	ck_assert_int_eq(search_bytes(&big, &b8, &err), 0);
	ck_assert_int_eq(search_prepare(&cfg, &s, &err), 0);
	ck_assert_uint_eq(search_device_bytes(s), b4);
	/* A step needs a started search. */
	ck_assert_int_eq(search_step(s, &tb, &tb, &r, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "not started"), "%s", err.msg);
	/* At least every activation kept for the backward, and weights, gradients and
	 * momentum; activations grow with the batch. */
	for (size_t i = 0; i < search_plan(s)->n_tensors; i++)
		if ((int32_t)i != search_plan(s)->input)
			floor += search_plan(s)->tensors[i].elems * sizeof(float);
	floor += 3 * search_trainable_floats(s) * sizeof(float);
	ck_assert_msg(b4 >= floor, "%llu bytes estimated, at least %llu needed",
		      (unsigned long long)b4, (unsigned long long)floor);
	ck_assert_uint_gt(b8 - b4, floor - 3 * search_trainable_floats(s) * sizeof(float));
	ck_assert_msg(dev.global_mem_bytes >= b4, "the device is too small for the tests");
	search_free(s);
	/* Bad configurations. */
	big = cfg;
	big.grad_clip = 0;
	ck_assert_int_eq(search_prepare(&big, &s, &err), -EINVAL);
	ck_assert_int_eq(err.status, RXD_S_INVALID_ARGUMENT);
	big = cfg;
	big.steps = 9;
	ck_assert_int_eq(search_prepare(&big, &s, &err), -EINVAL);
	big = cfg;
	big.height = 7; /* FactorizedReduce needs even sizes */
	ck_assert_int_eq(search_prepare(&big, &s, &err), -EINVAL);
	/* A label out of range. */
	cfg.batch = 2;
	s = start(&cfg);
	ck_assert_int_eq(search_step(s, &tb, &tb, &r, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "label 1"), "%s", err.msg);
	ck_assert_uint_eq(search_steps_done(s), 0);
	search_free(s);
}
END_TEST

int main(void)
{
	const char *sel = getenv("RXGEMM_TEST_DEVICE");
	Suite *su = suite_create("search");
	TCase *tc = tcase_create("search"), *tl = tcase_create("learning");
	SRunner *sr;
	int failed;

	log_set_level(LOG_WARNING);
	small = getenv("RXGEMM_TEST_SMALL") && atoi(getenv("RXGEMM_TEST_SMALL"));
	if (device_open(&dev, sel, NULL) < 0) {
		fprintf(stderr, "no OpenCL device%s%s: skipping\n", sel ? " matching " : "",
			sel ? sel : "");
		return 77;
	}
	fprintf(stderr, "device: %s\n", dev.description);
	memset(&eng, 0, sizeof(eng));
	/* The search's forward pass through each set of NAS kernels (docs/rxgemmd.8): the
	 * new 1x1 kernel without the engine, the GEMM engine's path with it. */
	setenv("RXGEMMD_NAS_KERNELS", "new", 1);
	if (nasops_init(&ops, &dev, NULL) < 0 || nasgrad_init(&gr, &dev, NULL) < 0 ||
	    gemm_init(&eng, &dev, NULL) < 0 || setenv("RXGEMMD_NAS_KERNELS", "old", 1) < 0 ||
	    nasops_init(&ops_eng, &dev, &eng) < 0 ||
	    nasgrad_init(&gr_eng, &dev, &eng) < 0) {
		fprintf(stderr, "the NAS kernels do not build on %s\n", dev.description);
		return EXIT_FAILURE;
	}
	tcase_set_timeout(tc, 1200);
	tcase_add_test(tc, test_genotype);
	tcase_add_test(tc, test_bytes_and_refusals);
	tcase_add_test(tc, test_gradients);
	tcase_add_test(tc, test_determinism);
	tcase_add_test(tc, test_pauses);
	if (!small)
		tcase_add_test(tc, test_resume);
	suite_add_tcase(su, tc);
	/* A case of its own (CK_RUN_CASE=learning runs it alone): the longest. */
	tcase_set_timeout(tl, 1200);
	if (!small)
		tcase_add_test(tl, test_learning);
	suite_add_tcase(su, tl);
	sr = srunner_create(su);
	/* The OpenCL runtime's threads do not survive fork(): run the tests in-process. */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	nasgrad_fini(&gr_eng);
	nasops_fini(&ops_eng);
	gemm_fini(&eng);
	nasgrad_fini(&gr);
	nasops_fini(&ops);
	device_close(&dev);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test-nas.c: DARTS networks lowered to plans (daemon/nas.c), run by the CPU reference
 * (tests/refnas.c).
 *
 *   counts:   parameters, multiply-adds and blob length of tiny networks computed by hand;
 *             DARTS_V2 at the paper's settings (CIFAR 3349342 = the reference's
 *             "param size = 3.349342MB"; ImageNet 4718752, the paper's 4.7M)
 *   direct:   the plan (BN folded, lowered to steps, packed by liveness) run by refnas
 *             against a direct forward pass written here the way the reference's modules
 *             compute (unfolded BN, explicit ReLU, concatenation), which reads the blob in
 *             module order: every named genotype, ImageNet, the supernet
 *   packing:  packed arena against one buffer per tensor, and its bounds
 *   errors:   blob length, odd sizes at FactorizedReduce, ImageNet sizes, bad fields,
 *             negative running_var, init determinism */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refnas.h"
#include "wire.h"

/* ---- the direct forward pass ------------------------------------------------------------ */

struct T {
	int n, c, h, w;
	float *v;
};

#define AT(t, b, ch, i, j) ((t).v[((((long)(b) * (t).c + (ch)) * (t).h + (i)) * (t).w + (j))])

static struct T tnew(int n, int c, int h, int w)
{
	struct T t = { n, c, h, w, calloc((size_t)n * c * h * w, sizeof(float)) };

	ck_assert_ptr_nonnull(t.v);
	return t;
}

static long tsize(struct T t)
{
	return (long)t.n * t.c * t.h * t.w;
}

static struct T tcopy(struct T x)
{
	struct T t = tnew(x.n, x.c, x.h, x.w);

	memcpy(t.v, x.v, (size_t)tsize(x) * sizeof(float));
	return t;
}

/* The blob, read in order. */
static const float *g_cur, *g_end;

static const float *take(long n)
{
	const float *p = g_cur;

	ck_assert(g_cur + n <= g_end);
	g_cur += n;
	return p;
}

static struct T relu(struct T x)
{
	struct T t = tcopy(x);

	for (long i = 0; i < tsize(t); i++)
		if (t.v[i] < 0)
			t.v[i] = 0;
	return t;
}

/* Multiply-adds per image of the convolutions and the classifier of the last direct
 * forward pass, counted as they run (docs/NAS.md's convention: no BN, pools, ReLU or sums). */
static uint64_t g_macs;

static struct T conv(struct T x, int cout, int kh, int kw, int sh, int sw, int ph, int pw, int dil,
		     int groups)
{
	int ho = (x.h + 2 * ph - dil * (kh - 1) - 1) / sh + 1;
	int wo = (x.w + 2 * pw - dil * (kw - 1) - 1) / sw + 1;
	int cin_g = x.c / groups, cout_g = cout / groups;
	const float *wt = take((long)cout * cin_g * kh * kw);
	struct T y = tnew(x.n, cout, ho, wo);

	g_macs += (uint64_t)cout * cin_g * kh * kw * ho * wo;

	for (int b = 0; b < x.n; b++)
		for (int co = 0; co < cout; co++)
			for (int i = 0; i < ho; i++)
				for (int j = 0; j < wo; j++) {
					float s = 0;

					for (int ci = 0; ci < cin_g; ci++)
						for (int u = 0; u < kh; u++)
							for (int v = 0; v < kw; v++) {
								int yy = i * sh - ph + u * dil;
								int xx = j * sw - pw + v * dil;

								if (yy >= 0 && yy < x.h && xx >= 0 && xx < x.w)
									s += wt[((co * cin_g + ci) * kh + u) * kw + v] *
									     AT(x, b, co / cout_g * cin_g + ci, yy, xx);
							}
					AT(y, b, co, i, j) = s;
				}
	return y;
}

static void bn(struct T x, bool affine)
{
	const float *gamma = affine ? take(x.c) : NULL, *beta = affine ? take(x.c) : NULL;
	const float *mean = take(x.c), *var = take(x.c);

	for (int b = 0; b < x.n; b++)
		for (int c = 0; c < x.c; c++)
			for (int i = 0; i < x.h * x.w; i++) {
				float *p = &AT(x, b, c, 0, 0) + i;

				*p = (*p - mean[c]) / sqrtf(var[c] + 1e-5f);
				if (affine)
					*p = *p * gamma[c] + beta[c];
			}
}

static struct T pool(struct T x, bool max, int stride)
{
	int ho = (x.h - 1) / stride + 1, wo = (x.w - 1) / stride + 1;
	struct T y = tnew(x.n, x.c, ho, wo);

	for (int b = 0; b < x.n; b++)
		for (int c = 0; c < x.c; c++)
			for (int i = 0; i < ho; i++)
				for (int j = 0; j < wo; j++) {
					float m = -INFINITY, s = 0;
					int cnt = 0;

					for (int u = -1; u <= 1; u++)
						for (int v = -1; v <= 1; v++) {
							int yy = i * stride + u, xx = j * stride + v;

							if (yy < 0 || yy >= x.h || xx < 0 || xx >= x.w)
								continue;
							m = fmaxf(m, AT(x, b, c, yy, xx));
							s += AT(x, b, c, yy, xx);
							cnt++;
						}
					AT(y, b, c, i, j) = max ? m : s / cnt;
				}
	return y;
}

static void add_into(struct T acc, struct T x, float w)
{
	ck_assert_int_eq(tsize(acc), tsize(x));
	for (long i = 0; i < tsize(acc); i++)
		acc.v[i] += w * x.v[i];
}

static struct T cat(struct T *xs, int n)
{
	int c = 0;
	struct T y;

	for (int k = 0; k < n; k++)
		c += xs[k].c;
	y = tnew(xs[0].n, c, xs[0].h, xs[0].w);
	for (int b = 0; b < y.n; b++)
		for (int k = 0, off = 0; k < n; off += xs[k].c, k++)
			memcpy(&AT(y, b, off, 0, 0), &AT(xs[k], b, 0, 0, 0),
			       (size_t)xs[k].c * xs[k].h * xs[k].w * sizeof(float));
	return y;
}

static struct T relu_conv_bn(struct T x, int cout, bool affine)
{
	struct T r = relu(x), y = conv(r, cout, 1, 1, 1, 1, 0, 0, 1, 1);

	free(r.v);
	bn(y, affine);
	return y;
}

static struct T factorized_reduce(struct T x, int cout, bool affine)
{
	struct T r = relu(x), sh = tnew(x.n, x.c, x.h - 1, x.w - 1), parts[2], y;

	for (int b = 0; b < x.n; b++)
		for (int c = 0; c < x.c; c++)
			for (int i = 0; i < x.h - 1; i++)
				for (int j = 0; j < x.w - 1; j++)
					AT(sh, b, c, i, j) = AT(r, b, c, i + 1, j + 1);
	parts[0] = conv(r, cout / 2, 1, 1, 2, 2, 0, 0, 1, 1);
	parts[1] = conv(sh, cout / 2, 1, 1, 2, 2, 0, 0, 1, 1);
	y = cat(parts, 2);
	bn(y, affine);
	free(r.v);
	free(sh.v);
	free(parts[0].v);
	free(parts[1].v);
	return y;
}

static struct T apply_op(int op, struct T x, int stride, bool affine)
{
	int C = x.c, k;
	struct T r, a, b2;

	switch (op) {
	case RXD_OP_NONE:
		a = tnew(x.n, C, (x.h - 1) / stride + 1, (x.w - 1) / stride + 1);
		return a;
	case RXD_OP_MAX_POOL_3X3:
	case RXD_OP_AVG_POOL_3X3:
		a = pool(x, op == RXD_OP_MAX_POOL_3X3, stride);
		if (!affine)
			bn(a, false);
		return a;
	case RXD_OP_SKIP_CONNECT:
		return stride == 1 ? tcopy(x) : factorized_reduce(x, C, affine);
	case RXD_OP_SEP_CONV_3X3:
	case RXD_OP_SEP_CONV_5X5:
	case RXD_OP_SEP_CONV_7X7:
		k = op == RXD_OP_SEP_CONV_3X3 ? 3 : op == RXD_OP_SEP_CONV_5X5 ? 5 : 7;
		r = relu(x);
		a = conv(r, C, k, k, stride, stride, k / 2, k / 2, 1, C);
		free(r.v);
		b2 = conv(a, C, 1, 1, 1, 1, 0, 0, 1, 1);
		free(a.v);
		bn(b2, affine);
		r = relu(b2);
		free(b2.v);
		a = conv(r, C, k, k, 1, 1, k / 2, k / 2, 1, C);
		free(r.v);
		b2 = conv(a, C, 1, 1, 1, 1, 0, 0, 1, 1);
		free(a.v);
		bn(b2, affine);
		return b2;
	case RXD_OP_DIL_CONV_3X3:
	case RXD_OP_DIL_CONV_5X5:
		k = op == RXD_OP_DIL_CONV_3X3 ? 3 : 5;
		r = relu(x);
		a = conv(r, C, k, k, stride, stride, k == 3 ? 2 : 4, k == 3 ? 2 : 4, 2, C);
		free(r.v);
		b2 = conv(a, C, 1, 1, 1, 1, 0, 0, 1, 1);
		free(a.v);
		bn(b2, affine);
		return b2;
	case RXD_OP_CONV_7X1_1X7:
		r = relu(x);
		a = conv(r, C, 1, 7, 1, stride, 0, 3, 1, 1);
		free(r.v);
		b2 = conv(a, C, 7, 1, stride, 1, 3, 0, 1, 1);
		free(a.v);
		bn(b2, true);
		return b2;
	}
	ck_abort_msg("op %d", op);
	return x;
}

static float g_softmax[2][64][RXD_NAS_PRIMITIVES];

static struct T cell(const struct rxd_nas_config *cfg, struct T s0, struct T s1, int C,
		     bool reduction, bool reduction_prev)
{
	bool affine = !cfg->supernet;
	const struct rxd_genotype_cell *gc = reduction ? &cfg->geno.reduce : &cfg->geno.normal;
	int steps = cfg->supernet ? cfg->steps : gc->n_nodes, off = 0;
	struct T st[2 + 16], picked[16], y;
	int n_cat = 0;

	st[0] = reduction_prev ? factorized_reduce(s0, C, affine) : relu_conv_bn(s0, C, affine);
	st[1] = relu_conv_bn(s1, C, affine);
	for (int i = 0; i < steps; i++) {
		int ho = reduction ? (st[1].h - 1) / 2 + 1 : st[1].h;
		int wo = reduction ? (st[1].w - 1) / 2 + 1 : st[1].w;
		struct T s = tnew(s0.n, C, ho, wo);

		if (cfg->supernet) {
			for (int j = 0; j < 2 + i; j++)
				for (int op = 0; op < RXD_NAS_PRIMITIVES; op++) {
					struct T o = apply_op(op, st[j], reduction && j < 2 ? 2 : 1, false);

					add_into(s, o, g_softmax[reduction][off + j][op]);
					free(o.v);
				}
			off += 2 + i;
		} else {
			for (int e = 0; e < 2; e++) {
				int j = gc->input[2 * i + e];
				struct T o = apply_op(gc->op[2 * i + e], st[j], reduction && j < 2 ? 2 : 1,
						      true);

				add_into(s, o, 1.0f);
				free(o.v);
			}
		}
		st[2 + i] = s;
	}
	if (cfg->supernet)
		for (int k = 0; k < cfg->multiplier; k++)
			picked[n_cat++] = st[2 + steps - cfg->multiplier + k];
	else
		for (int k = 0; k < gc->n_concat; k++)
			picked[n_cat++] = st[gc->concat[k]];
	y = cat(picked, n_cat);
	for (int i = 0; i < 2 + steps; i++)
		free(st[i].v);
	return y;
}

/* The reference's forward pass of cfg on input; logits: batch x classes. */
static void direct_forward(const struct rxd_nas_config *cfg, const float *blob, long blob_floats,
			   const float *input, float *logits)
{
	struct T x = tnew(cfg->batch, 3, cfg->height, cfg->width), s0, s1, t;
	int C = cfg->C, C_curr;
	bool reduction_prev = false;

	g_cur = blob;
	g_end = blob + blob_floats;
	g_macs = 0;
	memcpy(x.v, input, (size_t)tsize(x) * sizeof(float));
	if (cfg->family == RXD_NAS_CIFAR) {
		s0 = conv(x, 3 * C, 3, 3, 1, 1, 1, 1, 1, 1);
		bn(s0, true);
		s1 = tcopy(s0);
		C_curr = C;
	} else {
		struct T a = conv(x, C / 2, 3, 3, 2, 2, 1, 1, 1, 1), r;

		bn(a, true);
		r = relu(a);
		s0 = conv(r, C, 3, 3, 2, 2, 1, 1, 1, 1);
		bn(s0, true);
		free(a.v);
		free(r.v);
		r = relu(s0);
		s1 = conv(r, C, 3, 3, 2, 2, 1, 1, 1, 1);
		bn(s1, true);
		free(r.v);
		C_curr = C;
		reduction_prev = true;
	}
	for (int i = 0; i < cfg->layers; i++) {
		bool reduction = i == cfg->layers / 3 || i == 2 * cfg->layers / 3;

		if (reduction)
			C_curr *= 2;
		t = cell(cfg, s0, s1, C_curr, reduction, reduction_prev);
		reduction_prev = reduction;
		free(s0.v);
		s0 = s1;
		s1 = t;
	}
	{
		const float *w = take((long)cfg->classes * s1.c), *b = take(cfg->classes);

		g_macs += (uint64_t)cfg->classes * s1.c;

		for (int n = 0; n < cfg->batch; n++)
			for (int o = 0; o < cfg->classes; o++) {
				double acc = b[o];

				for (int c = 0; c < s1.c; c++) {
					double m = 0;

					for (int i = 0; i < s1.h * s1.w; i++)
						m += (&AT(s1, n, c, 0, 0))[i];
					acc += w[(long)o * s1.c + c] * (m / (s1.h * s1.w));
				}
				logits[n * cfg->classes + o] = (float)acc;
			}
	}
	ck_assert_ptr_eq(g_cur, g_end); /* every weight used, in order */
	free(x.v);
	free(s0.v);
	free(s1.v);
}

/* ---- helpers ---------------------------------------------------------------------------- */

static void cifar(struct rxd_nas_config *c, const char *geno, int C, int layers, int hw, int batch)
{
	memset(c, 0, sizeof(*c));
	c->family = RXD_NAS_CIFAR;
	c->C = C;
	c->layers = layers;
	c->classes = 10;
	c->height = c->width = hw;
	c->batch = batch;
	if (geno)
		ck_assert_int_eq(genotype_named(geno, &c->geno), 0);
}

static void build_ok(const struct rxd_nas_config *c, struct rxd_nas_plan *p)
{
	struct rxd_error err = { 0 };
	int rc = nas_build(c, p, &err);

	ck_assert_msg(rc == 0, "nas_build: %d %s", rc, err.msg);
}

/* Plan + refnas (packed and not) against the direct forward. */
static void check_against_direct(const struct rxd_nas_config *cfg, uint64_t seed)
{
	struct rxd_nas_plan p;
	float *blob, *wts, *in, *l_direct, *l_packed, *l_flat;
	struct rxd_error err = { 0 };
	size_t n_in, n_out;
	double maxabs = 0;

	build_ok(cfg, &p);
	ck_assert(!cfg->unfused);
	n_in = (size_t)cfg->batch * 3 * cfg->height * cfg->width;
	n_out = (size_t)cfg->batch * cfg->classes;
	blob = malloc(p.blob_floats * sizeof(float));
	wts = malloc(p.weight_floats * sizeof(float));
	in = malloc(n_in * sizeof(float));
	l_direct = malloc(n_out * sizeof(float));
	l_packed = malloc(n_out * sizeof(float));
	l_flat = malloc(n_out * sizeof(float));
	ck_assert(blob && wts && in && l_direct && l_packed && l_flat);
	nas_init_blob(&p, seed, blob);
	nas_random_floats(seed + 1, in, n_in);
	ck_assert_int_eq(nas_fold(&p, blob, wts, &err), 0);
	ck_assert_int_eq(refnas_run(&p, wts, in, l_packed, true), 0);
	ck_assert_int_eq(refnas_run(&p, wts, in, l_flat, false), 0);
	direct_forward(cfg, blob, (long)p.blob_floats, in, l_direct);
	/* The unfused plan (one step per module) from the same blob: the fused steps compute
	 * the same sums in the same order (a DWPW's halves, an identity added as the other
	 * edge is written), so the logits agree to rounding. */
	{
		struct rxd_nas_config cu = *cfg;
		struct rxd_nas_plan pu;
		float *wu = NULL, *l_unfused = malloc(n_out * sizeof(float));

		cu.unfused = true;
		build_ok(&cu, &pu);
		ck_assert_uint_eq(pu.blob_floats, p.blob_floats);
		ck_assert_uint_eq(pu.param_count, p.param_count);
		ck_assert_uint_eq(pu.macs, p.macs);
		ck_assert_uint_eq(pu.n_params, p.n_params);
		for (size_t i = 0; i < p.n_params; i++)
			ck_assert_str_eq(pu.params[i].name, p.params[i].name);
		ck_assert_uint_le(p.n_steps, pu.n_steps);
		wu = malloc(pu.weight_floats * sizeof(float));
		ck_assert(wu && l_unfused);
		ck_assert_int_eq(nas_fold(&pu, blob, wu, &err), 0);
		ck_assert_int_eq(refnas_run(&pu, wu, in, l_unfused, true), 0);
		for (size_t i = 0; i < n_out; i++)
			ck_assert_msg(fabs(l_unfused[i] - l_flat[i]) <= 1e-6 * (1 + fabs(l_flat[i])),
				      "logit %zu: fused %g, unfused %g", i, (double)l_flat[i],
				      (double)l_unfused[i]);
		free(wu);
		free(l_unfused);
		nas_plan_free(&pu);
	}
	for (size_t i = 0; i < n_out; i++)
		if (fabs(l_direct[i]) > maxabs)
			maxabs = fabs(l_direct[i]);
	ck_assert(maxabs > 1e-3 && maxabs < 1e6); /* a signal, not zeros, not a blow-up */
	for (size_t i = 0; i < n_out; i++) {
		ck_assert_msg(l_packed[i] == l_flat[i], "packing changed logit %zu: %g vs %g", i,
			      (double)l_packed[i], (double)l_flat[i]);
		ck_assert_msg(fabs(l_packed[i] - l_direct[i]) <= 1e-4 * maxabs + 1e-5,
			      "logit %zu: plan %g, direct %g", i, (double)l_packed[i],
			      (double)l_direct[i]);
	}
	ck_assert_uint_ge(p.arena_floats, p.live_peak_floats);
	/* The plan's multiply-adds are those the forward pass made (the supernet's pools'
	 * BN, folded into a 1x1 step, is not a convolution). */
	ck_assert_uint_eq(p.macs, g_macs);
	free(blob);
	free(wts);
	free(in);
	free(l_direct);
	free(l_packed);
	free(l_flat);
	nas_plan_free(&p);
}

/* ---- counts ------------------------------------------------------------------------------ */

START_TEST(counts_by_hand)
{
	/* CIFAR, C=2, one cell (a reduction cell: 1/3 = 0), 4x4 input, 3 classes. */
	static const char text[] =
		"Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=[2], "
		"reduce=[('sep_conv_3x3', 0), ('dil_conv_5x5', 1)], reduce_concat=[2])";
	struct rxd_nas_config c;
	struct rxd_nas_plan p;
	struct rxd_error err = { 0 };

	cifar(&c, NULL, 2, 1, 4, 1);
	c.classes = 3;
	ck_assert_int_eq(genotype_parse(text, strlen(text), &c.geno, &err), 0);
	build_ok(&c, &p);
	/* stem conv 6*3*9 = 162 + BN 12; preprocess0/1: 4*6 + 8 each; sep_conv_3x3 (C=4):
	 * 36+16+8+36+16+8 = 120; dil_conv_5x5: 100+16+8 = 124; classifier 4*3+3 = 15. */
	ck_assert_uint_eq(p.param_count, 174 + 64 + 120 + 124 + 15);
	/* stem 162*16 = 2592; preprocess 2*24*16 = 768; sep (2x2 out): 36*4+16*4+36*4+16*4
	 * = 416; dil: 100*4+16*4 = 464; classifier 12. */
	ck_assert_uint_eq(p.macs, 2592 + 768 + 416 + 464 + 12);
	/* + running statistics: stem 12, preprocess 16, sep 16, dil 8. */
	ck_assert_uint_eq(p.blob_floats, 497 + 12 + 16 + 16 + 8);
	ck_assert_str_eq(p.params[0].name, "stem.0");
	ck_assert_str_eq(p.params[1].name, "stem.1");
	ck_assert_str_eq(p.params[2].name, "cells.0.preprocess0.op.1");
	ck_assert_str_eq(p.params[6].name, "cells.0._ops.0.op.1");
	ck_assert_str_eq(p.params[12].name, "cells.0._ops.1.op.1");
	ck_assert_str_eq(p.params[p.n_params - 1].name, "classifier");
	nas_plan_free(&p);

	/* DARTS_V2 with only pools and identities in its reduction cell: no op weights. */
	cifar(&c, "DARTS_V2", 2, 1, 4, 1);
	c.classes = 3;
	build_ok(&c, &p);
	ck_assert_uint_eq(p.param_count, 174 + 64 + 16 * 3 + 3);
	ck_assert_uint_eq(p.macs, 2592 + 768 + 48);
	nas_plan_free(&p);
}
END_TEST

START_TEST(counts_paper)
{
	struct rxd_nas_config c;
	struct rxd_nas_plan p;

	cifar(&c, "DARTS_V2", 36, 20, 32, 1);
	build_ok(&c, &p);
	ck_assert_uint_eq(p.param_count, 3349342);
	nas_plan_free(&p);
	c.family = RXD_NAS_IMAGENET;
	c.C = 48;
	c.layers = 14;
	c.classes = 1000;
	c.height = c.width = 224;
	build_ok(&c, &p);
	ck_assert_uint_eq(p.param_count, 4718752);
	/* The paper reports 574M multiply-adds from its own counter; convolutions and the
	 * classifier alone give 530M (docs/NAS.md). */
	ck_assert_uint_gt(p.macs, 500000000);
	ck_assert_uint_lt(p.macs, 600000000);
	nas_plan_free(&p);
}
END_TEST

/* ---- the plan against the direct forward -------------------------------------------------- */

START_TEST(direct_named)
{
	const char *name = genotype_name((size_t)_i);
	struct rxd_nas_config c;

	/* Three cells: normal, reduction, reduction (FactorizedReduce after a reduction). */
	cifar(&c, name, 4, 3, 8, 2);
	check_against_direct(&c, 42 + (uint64_t)_i);
	/* Five: normal, reduction, normal (preprocess0 reduces), reduction, normal. */
	cifar(&c, name, 2, 5, 8, 1);
	check_against_direct(&c, 7);
}
END_TEST

/* Every operation (refnas_op_genotype), fused and unfused, against the direct forward. */
START_TEST(direct_ops)
{
	struct rxd_nas_config c;

	/* normal, reduction, reduction: 12x12 so that FactorizedReduce sees even sizes. */
	cifar(&c, NULL, 4, 3, 12, 2);
	refnas_op_genotype(_i, false, &c.geno);
	check_against_direct(&c, 100 + (uint64_t)_i);
	/* One reduction cell on an odd, oblong input, batch 3 (skip_connect at stride 2 is a
	 * FactorizedReduce: even then). */
	cifar(&c, NULL, 2, 1, _i == RXD_OP_SKIP_CONNECT ? 10 : 9, 3);
	c.width = _i == RXD_OP_SKIP_CONNECT ? 6 : 7;
	refnas_op_genotype(_i, true, &c.geno);
	check_against_direct(&c, 200 + (uint64_t)_i);
}
END_TEST

/* DARTS_V2 on CIFAR at the paper's size: 513 steps unfused, at most 300 fused (the fusion
 * is the plan's, so every device runs this many). */
START_TEST(steps_bound)
{
	struct rxd_nas_config c;
	struct rxd_nas_plan p, pu;
	size_t kinds[RXD_NAS_KINDS] = { 0 };

	cifar(&c, "DARTS_V2", 36, 20, 32, 1);
	build_ok(&c, &p);
	c.unfused = true;
	build_ok(&c, &pu);
	ck_assert_uint_eq(pu.n_steps, 513);
	ck_assert_uint_le(p.n_steps, 300);
	for (size_t i = 0; i < p.n_steps; i++)
		kinds[p.steps[i].kind]++;
	/* 5 sep_conv and 1 dil_conv in each of 18 normal cells: 11 DWPW each; the identity
	 * edges make no copies (what copies remain are the concats). */
	ck_assert_uint_eq(kinds[RXD_NAS_DWPW], 18 * 11);
	ck_assert_uint_eq(kinds[RXD_NAS_COPY], 20);
	ck_assert_uint_eq(p.param_count, pu.param_count);
	nas_plan_free(&p);
	nas_plan_free(&pu);
}
END_TEST

START_TEST(direct_imagenet)
{
	struct rxd_nas_config c;

	cifar(&c, "DARTS_V2", 4, 2, 224, 1);
	c.family = RXD_NAS_IMAGENET;
	c.classes = 5;
	check_against_direct(&c, 3);
}
END_TEST

START_TEST(direct_supernet)
{
	struct rxd_nas_config c;
	float an[14 * RXD_NAS_PRIMITIVES], ar[14 * RXD_NAS_PRIMITIVES];

	cifar(&c, NULL, 4, 3, 8, 2);
	c.supernet = true;
	c.steps = 4;
	c.multiplier = 4;
	nas_random_floats(11, an, 14 * RXD_NAS_PRIMITIVES);
	nas_random_floats(12, ar, 14 * RXD_NAS_PRIMITIVES);
	for (int e = 0; e < 14; e++) {
		for (int r = 0; r < 2; r++) {
			const float *a = (r ? ar : an) + e * RXD_NAS_PRIMITIVES;
			float m = a[0], s = 0;

			for (int k = 1; k < RXD_NAS_PRIMITIVES; k++)
				m = fmaxf(m, a[k]);
			for (int k = 0; k < RXD_NAS_PRIMITIVES; k++)
				s += expf(a[k] - m);
			for (int k = 0; k < RXD_NAS_PRIMITIVES; k++)
				g_softmax[r][e][k] = expf(a[k] - m) / s;
		}
	}
	c.alpha_normal = an;
	c.alpha_reduce = ar;
	check_against_direct(&c, 5);
}
END_TEST

START_TEST(packing_bounds)
{
	struct rxd_nas_config c;
	struct rxd_nas_plan p;
	uint64_t sum = 0;

	cifar(&c, "DARTS_V2", 36, 20, 32, 64);
	build_ok(&c, &p);
	for (size_t i = 0; i < p.n_tensors; i++)
		sum += p.tensors[i].elems;
	ck_assert_uint_ge(p.arena_floats, p.live_peak_floats);
	ck_assert_uint_lt(p.arena_floats, sum / 4); /* liveness saves most of it */
	/* No two tensors alive together overlap. */
	for (size_t i = 0; i < p.n_tensors; i++)
		for (size_t j = i + 1; j < p.n_tensors; j++) {
			const struct rxd_nas_ptensor *a = &p.tensors[i], *b = &p.tensors[j];

			if (a->first <= b->last && b->first <= a->last)
				ck_assert(a->offset + a->elems <= b->offset ||
					  b->offset + b->elems <= a->offset);
		}
	ck_assert_uint_eq(nas_plan_bytes(&p), (p.arena_floats + p.weight_floats) * 4);
	/* Steps read whole tensors (the device ops take no input slice). */
	for (size_t i = 0; i < p.n_steps; i++) {
		ck_assert_int_eq(p.steps[i].in_c_off, 0);
		ck_assert_int_eq(p.steps[i].c_in, p.tensors[p.steps[i].in].c);
	}
	nas_plan_free(&p);
}
END_TEST

/* ---- the plan cache ------------------------------------------------------------------------ */

/* got is what nas_build makes of cfg: every array equal. */
static void expect_same_plan(const struct rxd_nas_plan *got, const struct rxd_nas_config *cfg)
{
	struct rxd_nas_plan want;

	build_ok(cfg, &want);
	ck_assert_uint_eq(got->n_steps, want.n_steps);
	ck_assert_uint_eq(got->n_tensors, want.n_tensors);
	ck_assert_uint_eq(got->n_params, want.n_params);
	ck_assert_uint_eq(got->arena_floats, want.arena_floats);
	ck_assert_uint_eq(got->weight_floats, want.weight_floats);
	ck_assert_uint_eq(got->macs, want.macs);
	ck_assert_int_eq(got->batch, want.batch);
	ck_assert(memcmp(got->steps, want.steps, want.n_steps * sizeof(*want.steps)) == 0);
	ck_assert(memcmp(got->tensors, want.tensors, want.n_tensors * sizeof(*want.tensors)) == 0);
	ck_assert(memcmp(got->params, want.params, want.n_params * sizeof(*want.params)) == 0);
	nas_plan_free(&want);
}

static void cache_get(struct rxd_nas_cache *nc, const struct rxd_nas_config *c)
{
	struct rxd_nas_plan p;
	struct rxd_error err = { 0 };

	ck_assert_msg(nascache_build(nc, c, &p, &err) == 0, "%s", err.msg);
	expect_same_plan(&p, c);
	nas_plan_free(&p);
}

static void cache_expect(struct rxd_nas_cache *nc, uint32_t entries, uint64_t hits,
			 uint64_t misses, uint64_t evictions)
{
	struct rxd_nas_cache_stats st;

	nascache_stats(nc, &st);
	ck_assert_uint_eq(st.entries, entries);
	ck_assert_uint_eq(st.hits, hits);
	ck_assert_uint_eq(st.misses, misses);
	ck_assert_uint_eq(st.evictions, evictions);
	ck_assert(entries == 0 || st.bytes > 0);
}

/* A second lookup of a network is a hit and gives what nas_build gives; past the bound the
 * least recently used goes; what shapes a plan (batch, the genotype, the supernet's
 * alphas, unfused) tells entries apart; a refused config is refused through the cache
 * too; capacity 0 keeps nothing. */
START_TEST(plan_cache)
{
	struct rxd_nas_cache nc;
	struct rxd_nas_config a, b, c, s;
	struct rxd_nas_plan p;
	struct rxd_error err = { 0 };
	float an[14 * RXD_NAS_PRIMITIVES], ar[14 * RXD_NAS_PRIMITIVES];

	ck_assert_int_eq(nascache_init(&nc, 2), 0);
	cifar(&a, "DARTS_V2", 4, 3, 8, 2);
	cifar(&b, "DARTS_V2", 4, 3, 8, 3);   /* another batch */
	cifar(&c, "DARTS_V1", 4, 3, 8, 2);   /* another genotype */
	cache_get(&nc, &a);
	cache_expect(&nc, 1, 0, 1, 0);
	cache_get(&nc, &a);
	cache_expect(&nc, 1, 1, 1, 0);
	cache_get(&nc, &b);
	cache_expect(&nc, 2, 1, 2, 0);
	cache_get(&nc, &a);                  /* b is now the least recently used */
	cache_get(&nc, &c);
	cache_expect(&nc, 2, 2, 3, 1);
	cache_get(&nc, &a);
	cache_expect(&nc, 2, 3, 3, 1);
	cache_get(&nc, &b);                  /* evicted: built again, c goes */
	cache_expect(&nc, 2, 3, 4, 2);
	a.unfused = true;
	cache_get(&nc, &a);
	cache_expect(&nc, 2, 3, 5, 3);
	/* The supernet: the alphas are part of the key (they are the steps' scales). */
	cifar(&s, NULL, 4, 3, 8, 1);
	s.supernet = true;
	s.steps = s.multiplier = 4;
	nas_random_floats(1, an, 14 * RXD_NAS_PRIMITIVES);
	nas_random_floats(2, ar, 14 * RXD_NAS_PRIMITIVES);
	s.alpha_normal = an;
	s.alpha_reduce = ar;
	cache_get(&nc, &s);
	cache_get(&nc, &s);
	cache_expect(&nc, 2, 4, 6, 4);
	an[3] += 1.0f;
	cache_get(&nc, &s);
	cache_expect(&nc, 2, 4, 7, 5);
	/* Refused as nas_build refuses it, and nothing kept. */
	b.C = 0;
	ck_assert_int_eq(nascache_build(&nc, &b, &p, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "C is 0"));
	b.C = 4;
	b.geno.normal.n_nodes = 200;
	ck_assert_int_eq(nascache_build(&nc, &b, &p, &err), -EINVAL);
	cache_expect(&nc, 2, 4, 7, 5);
	nascache_fini(&nc);
	/* Nothing kept. */
	ck_assert_int_eq(nascache_init(&nc, 0), 0);
	cache_get(&nc, &a);
	cache_get(&nc, &a);
	cache_expect(&nc, 0, 0, 0, 0);
	nascache_fini(&nc);
}
END_TEST

/* ---- errors ------------------------------------------------------------------------------- */

static void build_fails(const struct rxd_nas_config *c, int want, const char *word)
{
	struct rxd_nas_plan p;
	struct rxd_error err = { 0 };

	ck_assert_msg(nas_build(c, &p, &err) == want, "want %d (%s): %s", want, word, err.msg);
	ck_assert_msg(strstr(err.msg, word) != NULL, "'%s' does not say '%s'", err.msg, word);
	ck_assert_ptr_null(p.steps);
}

START_TEST(errors)
{
	struct rxd_nas_config c;
	struct rxd_nas_plan p;
	struct rxd_error err = { 0 };
	float *blob, *wts;

	/* 6x6 -> 3x3 at cell 1, 2x2 at cell 3; cell 4 FactorizedReduces cell 2 (3x3). */
	cifar(&c, "DARTS_V2", 4, 5, 6, 1);
	build_fails(&c, -EINVAL, "even sizes");
	cifar(&c, "DARTS_V2", 4, 3, 128, 1); /* ends 4x4 */
	c.family = RXD_NAS_IMAGENET;
	build_fails(&c, -EINVAL, "7x7");
	/* ImageNet at 14 cells: every side from 221 to 224 works (the stem's and the
	 * reductions' halvings round up; FactorizedReduce wants 56, 28 and 14), and the
	 * refusal says so. */
	c.C = 4;
	c.layers = 14;
	for (int32_t h = 219; h <= 226; h++)
		for (int32_t w = 220; w <= 225; w += w == 221 ? 3 : 1) {
			struct rxd_nas_plan q;

			c.height = h;
			c.width = w;
			if (h >= 221 && h <= 224 && w >= 221 && w <= 224) {
				build_ok(&c, &q);
				ck_assert_int_eq(q.tensors[q.steps[q.n_steps - 2].in].h, 7);
				nas_plan_free(&q);
			} else {
				build_fails(&c, -EINVAL, "needs height and width 221 to 224");
			}
		}
	c.height = c.width = 224;
	c.layers = 3;
	c.C = 5;
	build_fails(&c, -EINVAL, "even C");
	cifar(&c, "DARTS_V2", 0, 3, 8, 1);
	build_fails(&c, -EINVAL, "C is 0");
	cifar(&c, "DARTS_V2", 4, 3, 8, 0);
	build_fails(&c, -EINVAL, "batch");
	cifar(&c, "DARTS_V2", 4, 3, 1, 1);
	build_fails(&c, -EINVAL, "");
	cifar(&c, "DARTS_V2", 4, 3, 8, 1);
	c.geno.normal.input[0] = 2;
	build_fails(&c, -EINVAL, "normal edge 0");
	cifar(&c, NULL, 4, 3, 8, 1);
	c.supernet = true;
	c.steps = 4;
	c.multiplier = 5;
	build_fails(&c, -EINVAL, "multiplier");
	c.multiplier = 4;
	build_fails(&c, -EINVAL, "alpha");
	cifar(&c, "DARTS_V2", RXD_NAS_MAX_C, 3, RXD_NAS_MAX_SIZE, RXD_NAS_MAX_BATCH);
	build_fails(&c, -E2BIG, "too large");
	{
		float a[44 * RXD_NAS_PRIMITIVES] = { 0 };

		cifar(&c, NULL, 4, RXD_NAS_MAX_LAYERS, 4096, 1);
		c.supernet = true;
		c.steps = 8;
		c.multiplier = 4;
		c.alpha_normal = c.alpha_reduce = a;
		build_fails(&c, -E2BIG, "more than 20000 steps");
	}

	/* The blob's length, a negative variance, a NaN; the init is deterministic. */
	cifar(&c, "DARTS_V2", 4, 3, 8, 1);
	build_ok(&c, &p);
	ck_assert_int_eq(nas_check_blob(&p, p.blob_floats, &err), 0);
	ck_assert_int_eq(nas_check_blob(&p, p.blob_floats - 1, &err), -EINVAL);
	{
		char want[64];

		snprintf(want, sizeof(want), "has %llu", (unsigned long long)p.blob_floats);
		ck_assert_msg(strstr(err.msg, want) != NULL, "%s", err.msg);
	}
	blob = malloc(p.blob_floats * sizeof(float));
	wts = malloc(p.weight_floats * sizeof(float));
	nas_init_blob(&p, 9, blob);
	{
		float *again = malloc(p.blob_floats * sizeof(float));

		nas_init_blob(&p, 9, again);
		ck_assert_int_eq(memcmp(again, blob, p.blob_floats * sizeof(float)), 0);
		nas_init_blob(&p, 10, again);
		ck_assert_int_ne(memcmp(again, blob, p.blob_floats * sizeof(float)), 0);
		free(again);
	}
	blob[p.params[1].blob_off + 3 * 12 + 5] = -1.0f; /* stem.1 (12 channels) var[5] */
	ck_assert_int_eq(nas_fold(&p, blob, wts, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "stem.1.running_var[5] is negative (-1)");
	nas_init_blob(&p, 9, blob);
	blob[p.blob_floats - 1] = NAN;
	ck_assert_int_eq(nas_fold(&p, blob, wts, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "classifier"));
	free(blob);
	free(wts);
	nas_plan_free(&p);
}
END_TEST

/* ---- requests (nas_job_prepare: what the loop thread checks) -------------------------- */

/* The loop thread's path: the request's own fields (wire_nas_eval), then the network's
 * (nas_job_prepare). */
static int prepare(const Rxgemm__NasEvalRequest *rq, struct rxd_error *err)
{
	static const struct rxd_limits lim = { 1u << 30, 1u << 30 };
	struct rxd_nas_job *nj = NULL;
	struct rxd_nas_eval ev;
	int st = wire_nas_eval(rq, &ev, err);

	if (st == RXD_S_OK)
		st = nas_job_prepare(&ev, &lim, 1u << 20, NULL, &nj, err);

	if (st == RXD_S_OK)
		ck_assert_ptr_nonnull(nj);
	else
		ck_assert_ptr_null(nj);
	nas_job_free(nj);
	return st;
}

static void prepare_fails(const Rxgemm__NasEvalRequest *rq, int want, const char *word)
{
	struct rxd_error err = { 0 };

	ck_assert_int_eq(prepare(rq, &err), want);
	ck_assert_msg(strstr(err.msg, word) != NULL, "'%s' does not say '%s'", err.msg, word);
}

START_TEST(requests)
{
	Rxgemm__NasEvalRequest rq = RXGEMM__NAS_EVAL_REQUEST__INIT;
	float an[14 * 8] = { 0 }, ar[14 * 8] = { 0 }, *blob;
	struct rxd_nas_config c;
	struct rxd_nas_plan p;
	struct rxd_error err = { 0 };

	/* The defaults: DARTS_V2, CIFAR, C 36, 20 layers, 32x32, batch 1. */
	rq.genotype = (char *)"DARTS_V2";
	ck_assert_int_eq(prepare(&rq, &err), RXD_S_OK);
	rq.genotype = (char *)"";
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "genotype is empty");
	rq.genotype = (char *)"DARTS_V3";
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "not a known name");
	rq.genotype = (char *)"Genotype(normal=[('sep_conv_3x3', 2)";
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "byte ");
	rq.genotype = (char *)"DARTS_V2";
	rq.dataset = 7;
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "dataset 7");
	rq.dataset = RXGEMM__NAS_DATASET__NAS_IMAGENET;
	rq.height = 100;
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "");
	rq.dataset = RXGEMM__NAS_DATASET__NAS_CIFAR;
	rq.height = 0;
	rq.repeat = 1001;
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "repeat");
	rq.repeat = 0;
	rq.steps = 4;
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "supernet only");
	rq.steps = 0;
	/* An input batch over the frame limit (1 MiB here), random or not. */
	rq.batch = 100;
	prepare_fails(&rq, RXD_S_TOO_BIG, "frame limit");
	rq.batch = 0;
	rq.want_logits = true;
	rq.classes = 100000;
	rq.batch = 4;
	prepare_fails(&rq, RXD_S_TOO_BIG, "logits");
	rq.want_logits = false;
	rq.classes = 0;
	rq.batch = 0;
	/* Weights over one device buffer (1 GiB here) whatever the batch. */
	rq.c = 1024;
	prepare_fails(&rq, RXD_S_TOO_BIG, "weights");
	rq.c = 0;

	/* Weights and input lengths. */
	cifar(&c, "DARTS_V2", 4, 3, 8, 1);
	build_ok(&c, &p);
	blob = calloc(p.blob_floats + 1, sizeof(float));
	rq.c = 4;
	rq.layers = 3;
	rq.height = rq.width = 8;
	rq.weights.data = (uint8_t *)blob;
	rq.weights.len = p.blob_floats * sizeof(float);
	ck_assert_int_eq(prepare(&rq, &err), RXD_S_OK);
	rq.weights.len += sizeof(float);
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "num_batches_tracked");
	rq.weights.len -= 2;
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "not whole floats");
	rq.weights.len = p.blob_floats * sizeof(float);
	rq.input.data = (uint8_t *)blob;
	rq.input.len = 3 * 8 * 8 * sizeof(float) - 4;
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "1 x 3 x 8 x 8");
	rq.input.len += 4;
	ck_assert_int_eq(prepare(&rq, &err), RXD_S_OK);

	/* The supernet: alphas of the right count, no genotype. */
	memset(&rq, 0, sizeof(rq));
	rxgemm__nas_eval_request__init(&rq);
	rq.supernet = true;
	rq.c = 4;
	rq.layers = 3;
	rq.height = rq.width = 8;
	rq.n_alpha_normal = rq.n_alpha_reduce = 14 * 8;
	rq.alpha_normal = an;
	rq.alpha_reduce = ar;
	ck_assert_int_eq(prepare(&rq, &err), RXD_S_OK);
	rq.n_alpha_reduce = 13 * 8;
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "112 values each");
	rq.n_alpha_reduce = 14 * 8;
	rq.genotype = (char *)"DARTS_V2";
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "must be empty");
	rq.genotype = NULL;
	an[5] = INFINITY;
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "not finite");
	an[5] = 0;
	rq.steps = 9;
	prepare_fails(&rq, RXD_S_INVALID_ARGUMENT, "steps is 9");
	free(blob);
	nas_plan_free(&p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("nas");
	TCase *tc = tcase_create("nas");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, counts_by_hand);
	tcase_add_test(tc, counts_paper);
	tcase_add_loop_test(tc, direct_named, 0, 4);
	tcase_add_loop_test(tc, direct_ops, RXD_OP_NONE, RXD_OP_COUNT);
	tcase_add_test(tc, steps_bound);
	tcase_add_test(tc, direct_imagenet);
	tcase_add_test(tc, direct_supernet);
	tcase_add_test(tc, packing_bounds);
	tcase_add_test(tc, plan_cache);
	tcase_add_test(tc, errors);
	tcase_add_test(tc, requests);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test-nasgrad.c: the backward passes and optimiser updates of a DARTS search
 * (daemon/nasgrad.c, kernels/nasgrad.cl) on a real OpenCL device (PoCL here; rusticl
 * through test-rusticl-nasgrad.sh).
 *
 * Every gradient is checked against central finite differences of a forward pass written
 * here in double, independent of the kernels: with a random cotangent r laid over the whole
 * output tensor (inside the step's slice and outside it), the loss is
 * L = sum(r * y) for y the forward's output, and dL/dp = (L(p + h) - L(p - h)) / 2h for every
 * input element and parameter p. Shapes are small and odd (7 x 9 planes, 3 or 5 channels,
 * batches of 2 or 3), with stride 2, both dilations, padding, groups, ReLU on the input,
 * FactorizedReduce's shifted read, channel slices of the output and accumulation into
 * the gradients. Convolutions run three ways: direct kernels, and through the GEMM engine
 * with its tiled and its register-blocked kernel. One test chains a whole mixed edge
 * (max_pool_3x3, dil_conv_3x3 with its BN, skip_connect, weighted by softmax(alpha)):
 * forward with nasops and nasgrad_bn_forward, backward through every step, against the
 * differences of the whole edge in x, both convolutions' weights and alpha.
 *
 * Tolerance of the gradients: |got - fd| <= GRAD_TOL * (1 + |fd|), GRAD_TOL = 1e-4.
 * - The finite differences are in double with h = 1e-6 on functions whose values are at
 *   most ~100: rounding costs ~1e-16 * 100 / 1e-6 = 1e-8, truncation h^2 |f'''| ~ 1e-11.
 *   The reference is thus good to ~1e-8.
 * - The kernels sum at most ~300 float products of magnitude <= ~4 (float epsilon 6e-8):
 *   at worst 300 * 4 * 6e-8 = 7e-5 absolute, typically sqrt(300) times less; BatchNorm's
 *   backward cancels sums of ~100 terms of its normalised values similarly.
 * - A wrong gradient (a missed window, a wrong sign, the wrong slice, a lost 1/M) is off by
 *   at least ~1e-2 on these inputs: 1e-4 separates right from wrong by two orders either way.
 * Every check also asserts that the reference is not all zeros, so it can fail.
 * ReLU and max pooling are not differentiable everywhere: inputs that pass a ReLU keep
 * |x| >= 0.05 and random floats make ties in a pool window improbable; h = 1e-6 crosses
 * neither. The optimisers are compared with PyTorch's formulas run in double on the host
 * (tolerance 1e-5 relative: a few float roundings per element and step).
 *
 * RXGEMM_TEST_DEVICE picks the device (as rxgemmd --device). Exits 77 (skipped) when there
 * is no device. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nasgrad.h"

#define GRAD_TOL 1e-4
#define FD_H 1e-6

static struct rxd_device dev;
static struct rxd_gemm_engine eng_tiled, eng_reg;
/* Convolutions run three ways: direct kernels, and through the GEMM engine with its
 * edge-handling tiled kernel and with its register-blocked one. Everything else runs on gr. */
static struct rxd_nasgrad gr, gr_tiled, gr_reg;
static struct rxd_nasgrad *const all_gr[3] = { &gr, &gr_tiled, &gr_reg };
static struct rxd_nasops ops_fwd; /* the forward steps of test_mixed_edge */
static const char *const gr_names[3] = { "direct", "gemm-tiled", "gemm-reg" };
static uint32_t rng = 12345;

/* Uniform in [-1, 1). */
static double urand(void)
{
	rng = rng * 1664525u + 1013904223u;
	return (double)(rng >> 8) / (double)(1u << 23) - 1.0;
}

/* Away from ReLU's kink: |v| in [0.05, 1). */
static double urand_off0(void)
{
	double u = urand();
	return u < 0 ? u * 0.95 - 0.05 : u * 0.95 + 0.05;
}

/* ---- device buffers holding an array at an offset ------------------------------------ */

struct dbuf {
	cl_mem mem;
	float *host;      /* the whole buffer as uploaded */
	double *val;      /* the array's values in double (the FD reference perturbs these) */
	size_t len, off, elems;
};

/* pad floats, elems of the array, 3 more; the array random (off zero when nonzero), or
 * NaN (nan) so that an overwrite that misses an element shows. */
static void dbuf_make(struct dbuf *b, size_t elems, size_t pad, int fill)
{
	cl_int e;

	b->off = pad;
	b->elems = elems;
	b->len = pad + elems + 3;
	b->host = malloc(b->len * sizeof(float));
	b->val = malloc(elems * sizeof(double));
	ck_assert(b->host && b->val);
	for (size_t i = 0; i < b->len; i++) {
		bool in = i >= pad && i < pad + elems;
		float v = (float)urand();
		if (in && fill == 1)
			v = (float)urand_off0();
		else if (in && fill == 2)
			v = NAN;
		b->host[i] = v;
		if (in)
			b->val[i - pad] = v;
	}
	b->mem = clCreateBuffer(dev.ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
				b->len * sizeof(float), b->host, &e);
	ck_assert_msg(b->mem, "clCreateBuffer: %s", device_strerror(e));
}
enum { FILL_RAND = 0, FILL_OFF0 = 1, FILL_NAN = 2 };

static void dbuf_free(struct dbuf *b)
{
	clReleaseMemObject(b->mem);
	free(b->host);
	free(b->val);
}

static float *dbuf_read(const struct dbuf *b)
{
	float *got = malloc(b->len * sizeof(float));

	ck_assert(got);
	ck_assert_int_eq(clEnqueueReadBuffer(dev.queue, b->mem, CL_TRUE, 0, b->len * sizeof(float),
					     got, 0, NULL, NULL),
			 CL_SUCCESS);
	return got;
}

static struct rxd_nas_tensor tensor(const struct dbuf *b, int n, int c, int h, int w)
{
	struct rxd_nas_tensor t = { .mem = b->mem, .off = (int64_t)b->off, .n = n, .c = c,
				    .h = h, .w = w };
	return t;
}

static struct rxd_nasgrad_dst dst(const struct dbuf *b, bool accumulate)
{
	struct rxd_nasgrad_dst d = { b->mem, (int64_t)b->off, accumulate };
	return d;
}

/* The gradient buffer g after a backward step: its array must be want (plus what was there
 * when accumulating) within GRAD_TOL, and everything around it untouched. */
static void expect_grad(const struct dbuf *g, const double *want, bool accumulate,
			const char *what)
{
	float *got = dbuf_read(g);
	double big = 0;

	for (size_t i = 0; i < g->len; i++) {
		if (i < g->off || i >= g->off + g->elems) {
			ck_assert_msg(got[i] == g->host[i], "%s: element %zu outside the array "
				      "changed", what, i);
			continue;
		}
		double w = want[i - g->off] + (accumulate ? (double)g->host[i] : 0.0);
		ck_assert_msg(fabs(got[i] - w) <= GRAD_TOL * (1 + fabs(w)),
			      "%s: element %zu is %.8g, want %.8g", what, i - g->off,
			      (double)got[i], w);
		big = fmax(big, fabs(want[i - g->off]));
	}
	ck_assert_msg(big > 1e-3, "%s: the reference gradient is all zeros", what);
	free(got);
}

/* Central differences of f over the n doubles at p, into g. */
typedef double (*loss_fn)(void *ctx);
static void fd(loss_fn f, void *ctx, double *p, size_t n, double *g)
{
	for (size_t i = 0; i < n; i++) {
		double save = p[i], lp, lm;
		p[i] = save + FD_H;
		lp = f(ctx);
		p[i] = save - FD_H;
		lm = f(ctx);
		p[i] = save;
		g[i] = (lp - lm) / (2 * FD_H);
	}
}

/* L = scale * sum over the slice [c_off, c_off + c) of dy (n x ctot x hw) times y (n x c x
 * hw): the loss whose gradient a backward step reading that slice computes. */
static double slice_dot(const double *dy, int ctot, int c_off, const double *y, int n, int c,
			size_t hw, double scale)
{
	double s = 0;

	for (int b = 0; b < n; b++)
		for (int ch = 0; ch < c; ch++)
			for (size_t p = 0; p < hw; p++)
				s += dy[((size_t)b * ctot + c_off + ch) * hw + p] *
				     y[((size_t)b * c + ch) * hw + p];
	return s * scale;
}

/* ---- convolution -------------------------------------------------------------------- */

/* Plain convolution in double, written from the definition (pad, dilate, shift, ReLU). */
static void ref_conv(const double *x, int n, int cin, int h, int w, const struct rxd_nas_conv *cv,
		     const double *wt, double *y, int ho, int wo)
{
	int cpg = cin / cv->groups, opg = cv->c_out / cv->groups, s = cv->in_shift;

	for (int b = 0; b < n; b++)
		for (int co = 0; co < cv->c_out; co++)
			for (int oh = 0; oh < ho; oh++)
				for (int ow = 0; ow < wo; ow++) {
					double sum = 0;
					for (int ci = 0; ci < cpg; ci++)
						for (int i = 0; i < cv->kh; i++)
							for (int j = 0; j < cv->kw; j++) {
								int ih = oh * cv->stride_h - cv->pad_h + i * cv->dil_h;
								int iw = ow * cv->stride_w - cv->pad_w + j * cv->dil_w;
								double v;
								if (ih < 0 || iw < 0 || ih >= h - s || iw >= w - s)
									continue;
								v = x[(((size_t)b * cin + (co / opg) * cpg + ci) * h + ih + s) * w + iw + s];
								if (cv->relu_in && v < 0)
									v = 0;
								sum += v * wt[(((size_t)co * cpg + ci) * cv->kh + i) * cv->kw + j];
							}
					y[(((size_t)b * cv->c_out + co) * ho + oh) * wo + ow] = sum;
				}
}

struct conv_ctx {
	const struct rxd_nas_conv *cv;
	int n, cin, h, w, ho, wo, ctot;
	const struct rxd_nas_write *wr;
	double *x, *wt, *dy, *y;
};

static double conv_loss(void *p)
{
	struct conv_ctx *c = p;

	ref_conv(c->x, c->n, c->cin, c->h, c->w, c->cv, c->wt, c->y, c->ho, c->wo);
	return slice_dot(c->dy, c->ctot, c->wr->c_off, c->y, c->n, c->cv->c_out,
			 (size_t)c->ho * c->wo, c->wr->scale);
}

struct conv_case {
	int n, cin, h, w;
	struct rxd_nas_conv cv;
	int ctot;
	struct rxd_nas_write wr;
	bool acc_dx, acc_dw;
};

static void conv_case_run(const struct conv_case *tc, struct rxd_nasgrad *g, const char *how)
{
	struct rxd_nas_conv cv = tc->cv;
	int ho = nasops_out_dim(tc->h - cv.in_shift, cv.kh, cv.stride_h, cv.pad_h, cv.dil_h);
	int wo = nasops_out_dim(tc->w - cv.in_shift, cv.kw, cv.stride_w, cv.pad_w, cv.dil_w);
	size_t nx = (size_t)tc->n * tc->cin * tc->h * tc->w;
	size_t nw = (size_t)cv.c_out * (tc->cin / cv.groups) * cv.kh * cv.kw;
	struct dbuf x, wt, dy, dx, dw;
	struct rxd_nas_tensor tx, tdy;
	struct rxd_nasgrad_dst ddx, ddw;
	struct conv_ctx ctx;
	double *gx, *gw;
	char what[160];

	ck_assert(ho > 0 && wo > 0);
	snprintf(what, sizeof(what), "conv %dx%d s%d p%d d%d g%d relu %d shift %d, x %dx%dx%dx%d (%s)",
		 cv.kh, cv.kw, cv.stride_h, cv.pad_h, cv.dil_h, cv.groups, cv.relu_in, cv.in_shift,
		 tc->n, tc->cin, tc->h, tc->w, how);
	dbuf_make(&x, nx, 2, cv.relu_in ? FILL_OFF0 : FILL_RAND);
	dbuf_make(&wt, nw, 1, FILL_RAND);
	dbuf_make(&dy, (size_t)tc->n * tc->ctot * ho * wo, 3, FILL_RAND);
	dbuf_make(&dx, nx, 1, tc->acc_dx ? FILL_RAND : FILL_NAN);
	dbuf_make(&dw, nw, 2, tc->acc_dw ? FILL_RAND : FILL_NAN);
	cv.weight = wt.mem, cv.weight_off = (int64_t)wt.off;
	tx = tensor(&x, tc->n, tc->cin, tc->h, tc->w);
	tdy = tensor(&dy, tc->n, tc->ctot, ho, wo);
	ddx = dst(&dx, tc->acc_dx), ddw = dst(&dw, tc->acc_dw);
	ck_assert_int_eq(nasgrad_conv(g, &tx, &cv, &tdy, &tc->wr, &ddx, &ddw, NULL), 0);

	ctx = (struct conv_ctx){ &cv, tc->n, tc->cin, tc->h, tc->w, ho, wo, tc->ctot, &tc->wr,
				 x.val, wt.val, dy.val, NULL };
	ctx.y = malloc((size_t)tc->n * cv.c_out * ho * wo * sizeof(double));
	gx = malloc(nx * sizeof(double)), gw = malloc(nw * sizeof(double));
	ck_assert(ctx.y && gx && gw);
	fd(conv_loss, &ctx, x.val, nx, gx);
	fd(conv_loss, &ctx, wt.val, nw, gw);
	expect_grad(&dx, gx, tc->acc_dx, what);
	expect_grad(&dw, gw, tc->acc_dw, what);
	free(ctx.y), free(gx), free(gw);
	dbuf_free(&x), dbuf_free(&wt), dbuf_free(&dy), dbuf_free(&dx), dbuf_free(&dw);
}

static void conv_case_all(const struct conv_case *tc)
{
	for (int i = 0; i < 3; i++)
		conv_case_run(tc, all_gr[i], gr_names[i]);
}

#define CONV(KH, KW, SH, SW, PH, PW, DH, DW, G, COUT)                                      \
	{ .c_out = (COUT), .kh = (KH), .kw = (KW), .stride_h = (SH), .stride_w = (SW),      \
	  .pad_h = (PH), .pad_w = (PW), .dil_h = (DH), .dil_w = (DW), .groups = (G) }

START_TEST(test_conv_depthwise)
{
	/* sep_conv's and dil_conv's depthwise convolutions: 3x3 and 5x5, dilation 1 and 2,
	 * stride 1 and 2, with ReLU on the input, into a slice, scaled. */
	for (int k = 3; k <= 5; k += 2)
		for (int dil = 1; dil <= 2; dil++)
			for (int s = 1; s <= 2; s++) {
				int pad = dil == 1 ? k / 2 : (k == 3 ? 2 : 4);
				struct conv_case tc = {
					.n = 2, .cin = 3, .h = 7, .w = 9,
					.cv = CONV(k, k, s, s, pad, pad, dil, dil, 3, 3),
					.ctot = 5,
					.wr = { .c_off = s == 2 ? 2 : 0, .scale = dil == 2 ? 0.5f : 1.0f },
					.acc_dx = s == 2, .acc_dw = dil == 2,
				};
				tc.cv.relu_in = s == 1 || k == 5;
				conv_case_all(&tc);
			}
}
END_TEST

START_TEST(test_conv_dense)
{
	/* The 1x1 of sep_conv and ReLUConvBN; a 3x3 stem at stride 1 and 2; a grouped one; a
	 * dense dilated one with different strides and paddings along each axis. */
	const struct conv_case cases[] = {
		{ .n = 3, .cin = 5, .h = 5, .w = 7, .cv = CONV(1, 1, 1, 1, 0, 0, 1, 1, 1, 4),
		  .ctot = 7, .wr = { .c_off = 3, .scale = 1.0f } },
		{ .n = 2, .cin = 3, .h = 7, .w = 6, .cv = CONV(3, 3, 1, 1, 1, 1, 1, 1, 1, 4),
		  .ctot = 4, .wr = { .c_off = 0, .scale = 1.0f }, .acc_dx = true, .acc_dw = true },
		{ .n = 2, .cin = 3, .h = 9, .w = 7, .cv = CONV(3, 3, 2, 2, 1, 1, 1, 1, 1, 5),
		  .ctot = 6, .wr = { .c_off = 1, .scale = -0.75f } },
		{ .n = 2, .cin = 4, .h = 5, .w = 7, .cv = CONV(3, 3, 1, 2, 1, 1, 1, 1, 2, 6),
		  .ctot = 6, .wr = { .c_off = 0, .scale = 1.0f }, .acc_dw = true },
		{ .n = 2, .cin = 3, .h = 8, .w = 7, .cv = CONV(3, 3, 1, 2, 2, 1, 2, 1, 1, 3),
		  .ctot = 3, .wr = { .c_off = 0, .scale = 1.0f } },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conv_case tc = cases[i];
		conv_case_all(&tc);
		tc.cv.relu_in = true;
		conv_case_all(&tc);
	}
	/* Columns made one image at a time (a scratch bound below one image's). */
	{
		struct conv_case tc = cases[2];
		uint64_t scratch_max = gr_tiled.scratch_max_bytes;

		gr_tiled.scratch_max_bytes = 4;
		conv_case_run(&tc, &gr_tiled, "gemm-tiled, one image at a time");
		gr_tiled.scratch_max_bytes = scratch_max;
	}
}
END_TEST

/* FactorizedReduce(C_in 3, C_out 4) of an 8 x 6 map: ReLU; conv_1 = 1x1 stride 2 into
 * channels [0, 2), conv_2 = 1x1 stride 2 on x[:, :, 1:, 1:] into [2, 4) (BN after the concat
 * is tested with BN). The reference is the whole operation, so the gradient of x sums both
 * halves, and the shifted half leaves row and column 0 to the first alone. */
struct fr_ctx {
	int n, cin, h, w, half, ho, wo, ctot, c_off;
	double scale, *x, *w1, *w2, *dy, *y;
};

static double fr_loss(void *p)
{
	struct fr_ctx *c = p;
	double s = 0;

	for (int b = 0; b < c->n; b++)
		for (int co = 0; co < 2 * c->half; co++)
			for (int oh = 0; oh < c->ho; oh++)
				for (int ow = 0; ow < c->wo; ow++) {
					int sh = co >= c->half;
					const double *wr = sh ? c->w2 + (co - c->half) * c->cin
							      : c->w1 + co * c->cin;
					double v = 0;
					for (int ci = 0; ci < c->cin; ci++)
						v += fmax(c->x[(((size_t)b * c->cin + ci) * c->h + 2 * oh + sh) * c->w + 2 * ow + sh], 0.0) *
						     wr[ci];
					s += v * c->dy[(((size_t)b * c->ctot + c->c_off + co) * c->ho + oh) * c->wo + ow];
				}
	return s * c->scale;
}

START_TEST(test_factorized_reduce)
{
	for (int gi = 0; gi < 3; gi++) {
		const int n = 2, cin = 3, h = 8, w = 6, half = 2, ho = 4, wo = 3, ctot = 6;
		const struct rxd_nas_write wr = { .c_off = 1, .scale = 0.5f };
		struct rxd_nas_conv cv[2] = { CONV(1, 1, 2, 2, 0, 0, 1, 1, 1, half),
					      CONV(1, 1, 2, 2, 0, 0, 1, 1, 1, half) };
		size_t nx = (size_t)n * cin * h * w, nw = (size_t)half * cin;
		struct dbuf x, wt, dy, dx, dw1, dw2;
		struct rxd_nas_tensor tx, tdy;
		struct rxd_nasgrad_dst ddx, ddw[2];
		struct fr_ctx ctx;
		double *gx = malloc(nx * sizeof(double)), *gw = malloc(2 * nw * sizeof(double));

		ck_assert(gx && gw);
		dbuf_make(&x, nx, 1, FILL_OFF0);
		dbuf_make(&wt, 2 * nw, 0, FILL_RAND);
		dbuf_make(&dy, (size_t)n * ctot * ho * wo, 2, FILL_RAND);
		dbuf_make(&dx, nx, 0, FILL_NAN);
		dbuf_make(&dw1, nw, 1, FILL_NAN);
		dbuf_make(&dw2, nw, 1, FILL_RAND);
		for (int i = 0; i < 2; i++) {
			cv[i].relu_in = true;
			cv[i].in_shift = i;
			cv[i].weight = wt.mem;
			cv[i].weight_off = (int64_t)(i * nw);
		}
		tx = tensor(&x, n, cin, h, w);
		tdy = tensor(&dy, n, ctot, ho, wo);
		ddx = dst(&dx, false), ddw[0] = dst(&dw1, false), ddw[1] = dst(&dw2, true);
		ck_assert_int_eq(nasgrad_factorized_reduce(all_gr[gi], &tx, cv, &tdy, &wr, &ddx, ddw, NULL), 0);
		ctx = (struct fr_ctx){ n, cin, h, w, half, ho, wo, ctot, wr.c_off, wr.scale, x.val,
				       wt.val, wt.val + nw, dy.val, NULL };
		fd(fr_loss, &ctx, x.val, nx, gx);
		fd(fr_loss, &ctx, wt.val, 2 * nw, gw);
		expect_grad(&dx, gx, false, "FactorizedReduce dx");
		expect_grad(&dw1, gw, false, "FactorizedReduce conv_1 dw");
		expect_grad(&dw2, gw + nw, true, "FactorizedReduce conv_2 dw");
		/* An odd map: the shifted half's output is smaller, which the forward refuses too. */
		tx.h = 7;
		ck_assert_int_eq(nasgrad_factorized_reduce(all_gr[gi], &tx, cv, &tdy, &wr, &ddx, ddw, NULL),
				 -EINVAL);
		free(gx), free(gw);
		dbuf_free(&x), dbuf_free(&wt), dbuf_free(&dy), dbuf_free(&dx), dbuf_free(&dw1),
			dbuf_free(&dw2);
	}
}
END_TEST

/* ---- pooling, ReLU, global pooling -------------------------------------------------- */

struct pool_ctx {
	int kind, n, c, h, w, k, s, pad, ho, wo, ctot;
	const struct rxd_nas_write *wr;
	double *x, *dy;
};

static double pool_loss(void *p)
{
	struct pool_ctx *c = p;
	double L = 0;

	for (int b = 0; b < c->n; b++)
		for (int ch = 0; ch < c->c; ch++)
			for (int oh = 0; oh < c->ho; oh++)
				for (int ow = 0; ow < c->wo; ow++) {
					double sum = 0, best = -INFINITY;
					int count = 0;
					for (int i = oh * c->s - c->pad; i < oh * c->s - c->pad + c->k; i++)
						for (int j = ow * c->s - c->pad; j < ow * c->s - c->pad + c->k; j++) {
							double v;
							if (i < 0 || i >= c->h || j < 0 || j >= c->w)
								continue;
							v = c->x[(((size_t)b * c->c + ch) * c->h + i) * c->w + j];
							sum += v, count++;
							best = fmax(best, v);
						}
					L += (c->kind == RXD_NAS_POOL_AVG ? sum / count : best) *
					     c->dy[(((size_t)b * c->ctot + c->wr->c_off + ch) * c->ho + oh) * c->wo + ow];
				}
	return L * c->wr->scale;
}

START_TEST(test_pool)
{
	for (int kind = 0; kind < 2; kind++)
		for (int s = 1; s <= 2; s++)
			for (int acc = 0; acc < 2; acc++) {
				const int n = 2, c = 3, h = 7, w = 8 + s, k = 3, pad = 1, ctot = 5;
				const struct rxd_nas_write wr = { .c_off = acc ? 2 : 0,
								  .scale = acc ? 0.25f : 1.0f };
				struct rxd_nas_pool p = { .kind = kind, .kh = k, .kw = k, .stride_h = s,
							  .stride_w = s, .pad_h = pad, .pad_w = pad };
				int ho = (h + 2 * pad - k) / s + 1, wo = (w + 2 * pad - k) / s + 1;
				size_t nx = (size_t)n * c * h * w;
				struct dbuf x, dy, dx;
				struct rxd_nas_tensor tx, tdy;
				struct rxd_nasgrad_dst ddx;
				struct pool_ctx ctx;
				double *g = malloc(nx * sizeof(double));
				char what[64];

				ck_assert(g);
				snprintf(what, sizeof(what), "%s pool stride %d acc %d",
					 kind ? "avg" : "max", s, acc);
				dbuf_make(&x, nx, 1, FILL_RAND);
				dbuf_make(&dy, (size_t)n * ctot * ho * wo, 2, FILL_RAND);
				dbuf_make(&dx, nx, 1, acc ? FILL_RAND : FILL_NAN);
				tx = tensor(&x, n, c, h, w);
				tdy = tensor(&dy, n, ctot, ho, wo);
				ddx = dst(&dx, acc);
				ck_assert_int_eq(nasgrad_pool(&gr, &tx, &p, &tdy, &wr, &ddx, NULL), 0);
				ctx = (struct pool_ctx){ kind, n, c, h, w, k, s, pad, ho, wo, ctot, &wr,
							 x.val, dy.val };
				fd(pool_loss, &ctx, x.val, nx, g);
				expect_grad(&dx, g, acc, what);
				free(g);
				dbuf_free(&x), dbuf_free(&dy), dbuf_free(&dx);
			}
}
END_TEST

START_TEST(test_pool_max_ties)
{
	/* Ties, where finite differences say nothing: PyTorch sends a window's gradient to its
	 * first maximum in row-major order. Values in {0, 1}: most windows hold several 1s. */
	for (int s = 1; s <= 2; s++) {
		const int n = 2, c = 2, h = 6, w = 5, k = 3, pad = 1;
		const struct rxd_nas_write wr = { .c_off = 0, .scale = 1.0f };
		struct rxd_nas_pool p = { .kind = RXD_NAS_POOL_MAX, .kh = k, .kw = k, .stride_h = s,
					  .stride_w = s, .pad_h = pad, .pad_w = pad };
		int ho = (h + 2 * pad - k) / s + 1, wo = (w + 2 * pad - k) / s + 1;
		size_t nx = (size_t)n * c * h * w;
		struct dbuf x, dy, dx;
		struct rxd_nas_tensor tx, tdy;
		struct rxd_nasgrad_dst ddx;
		double *want = calloc(nx, sizeof(double));

		ck_assert(want);
		dbuf_make(&x, nx, 0, FILL_RAND);
		for (size_t i = 0; i < nx; i++)
			x.val[i] = x.host[i] = x.host[i] < -0.5f ? 0.0f : 1.0f;
		clReleaseMemObject(x.mem);
		x.mem = clCreateBuffer(dev.ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
				       x.len * sizeof(float), x.host, NULL);
		ck_assert(x.mem);
		dbuf_make(&dy, (size_t)n * c * ho * wo, 0, FILL_RAND);
		dbuf_make(&dx, nx, 0, FILL_NAN);
		for (int b = 0; b < n * c; b++)
			for (int oh = 0; oh < ho; oh++)
				for (int ow = 0; ow < wo; ow++) {
					double best = -INFINITY;
					int at = -1;
					for (int i = oh * s - pad; i < oh * s - pad + k; i++)
						for (int j = ow * s - pad; j < ow * s - pad + k; j++)
							if (i >= 0 && i < h && j >= 0 && j < w &&
							    x.val[((size_t)b * h + i) * w + j] > best) {
								best = x.val[((size_t)b * h + i) * w + j];
								at = i * w + j;
							}
					want[(size_t)b * h * w + at] += dy.val[((size_t)b * ho + oh) * wo + ow];
				}
		tx = tensor(&x, n, c, h, w);
		tdy = tensor(&dy, n, c, ho, wo);
		ddx = dst(&dx, false);
		ck_assert_int_eq(nasgrad_pool(&gr, &tx, &p, &tdy, &wr, &ddx, NULL), 0);
		expect_grad(&dx, want, false, "max pool with ties");
		free(want);
		dbuf_free(&x), dbuf_free(&dy), dbuf_free(&dx);
	}
}
END_TEST

struct ew_ctx {
	int kind, n, c, h, w, ctot; /* kind 0: identity, 1: ReLU, 2: global average pool */
	const struct rxd_nas_write *wr;
	double *x, *dy;
};

static double ew_loss(void *p)
{
	struct ew_ctx *c = p;
	size_t hw = (size_t)c->h * c->w;
	double L = 0;

	for (int b = 0; b < c->n; b++)
		for (int ch = 0; ch < c->c; ch++) {
			double sum = 0;
			for (size_t q = 0; q < hw; q++) {
				double v = c->x[((size_t)b * c->c + ch) * hw + q];
				if (c->kind == 2)
					sum += v;
				else
					L += (c->kind == 1 ? fmax(v, 0.0) : v) *
					     c->dy[((size_t)b * c->ctot + c->wr->c_off + ch) * hw + q];
			}
			if (c->kind == 2)
				L += sum / (double)hw * c->dy[(size_t)b * c->ctot + c->wr->c_off + ch];
		}
	return L * c->wr->scale;
}

START_TEST(test_relu_identity_gap)
{
	for (int kind = 0; kind < 3; kind++)
		for (int acc = 0; acc < 2; acc++) {
			const int n = 3, c = 3, h = 5, w = 7, ctot = 6;
			const struct rxd_nas_write wr = { .c_off = acc ? 3 : 1,
							  .scale = acc ? -0.5f : 1.0f };
			int dh = kind == 2 ? 1 : h, dw = kind == 2 ? 1 : w;
			size_t nx = (size_t)n * c * h * w;
			struct dbuf x, dy, dx;
			struct rxd_nas_tensor tx, tdy;
			struct rxd_nasgrad_dst ddx;
			struct ew_ctx ctx;
			double *g = malloc(nx * sizeof(double));
			static const char *const names[] = { "identity", "ReLU", "global pool" };

			ck_assert(g);
			dbuf_make(&x, nx, 2, FILL_OFF0);
			dbuf_make(&dy, (size_t)n * ctot * dh * dw, 1, FILL_RAND);
			dbuf_make(&dx, nx, 3, acc ? FILL_RAND : FILL_NAN);
			tx = tensor(&x, n, c, h, w);
			tdy = tensor(&dy, n, ctot, dh, dw);
			ddx = dst(&dx, acc);
			if (kind == 2)
				ck_assert_int_eq(nasgrad_gap(&gr, &tx, &tdy, &wr, &ddx, NULL), 0);
			else
				ck_assert_int_eq(nasgrad_relu(&gr, &tx, kind == 1, &tdy, &wr, &ddx,
							      NULL),
						 0);
			ctx = (struct ew_ctx){ kind, n, c, h, w, ctot, &wr, x.val, dy.val };
			fd(ew_loss, &ctx, x.val, nx, g);
			expect_grad(&dx, g, acc, names[kind]);
			free(g);
			dbuf_free(&x), dbuf_free(&dy), dbuf_free(&dx);
		}
}
END_TEST

/* ---- linear, cross-entropy ---------------------------------------------------------- */

struct lin_ctx {
	int n, in, out, ctot;
	const struct rxd_nas_write *wr;
	double *x, *wt, *bias, *dy;
};

static double lin_loss(void *p)
{
	struct lin_ctx *c = p;
	double L = 0;

	for (int b = 0; b < c->n; b++)
		for (int o = 0; o < c->out; o++) {
			double v = c->bias[o];
			for (int i = 0; i < c->in; i++)
				v += c->x[(size_t)b * c->in + i] * c->wt[(size_t)o * c->in + i];
			L += v * c->dy[(size_t)b * c->ctot + c->wr->c_off + o];
		}
	return L * c->wr->scale;
}

START_TEST(test_linear)
{
	/* After global pooling (n x 13 x 1 x 1) and on a map (3 x 2 x 3 = 18 features). */
	const int xs[][3] = { { 13, 1, 1 }, { 3, 2, 3 } };

	for (int si = 0; si < 2; si++) {
		const int n = 3, c = xs[si][0], h = xs[si][1], w = xs[si][2], in = c * h * w;
		const int out = 5, ctot = si ? 7 : 5;
		const struct rxd_nas_write wr = { .c_off = si ? 2 : 0, .scale = si ? 0.5f : 1.0f };
		const bool acc = si == 1;
		struct dbuf x, wt, b, dy, dx, dw, db;
		struct rxd_nas_tensor tx, tdy;
		struct rxd_nas_linear l = { .out = out };
		struct rxd_nasgrad_dst ddx, ddw, ddb;
		struct lin_ctx ctx;
		double *gx = malloc((size_t)n * in * sizeof(double));
		double *gw = malloc((size_t)out * in * sizeof(double)), gb[5];

		ck_assert(gx && gw);
		dbuf_make(&x, (size_t)n * in, 1, FILL_RAND);
		dbuf_make(&wt, (size_t)out * in, 2, FILL_RAND);
		dbuf_make(&b, out, 0, FILL_RAND);
		dbuf_make(&dy, (size_t)n * ctot, 1, FILL_RAND);
		dbuf_make(&dx, (size_t)n * in, 2, acc ? FILL_RAND : FILL_NAN);
		dbuf_make(&dw, (size_t)out * in, 1, acc ? FILL_RAND : FILL_NAN);
		dbuf_make(&db, out, 1, acc ? FILL_RAND : FILL_NAN);
		l.weight = wt.mem, l.weight_off = (int64_t)wt.off;
		l.bias = b.mem, l.bias_off = (int64_t)b.off;
		tx = tensor(&x, n, c, h, w);
		tdy = tensor(&dy, n, ctot, 1, 1);
		ddx = dst(&dx, acc), ddw = dst(&dw, acc), ddb = dst(&db, acc);
		ck_assert_int_eq(nasgrad_linear(&gr, &tx, &l, &tdy, &wr, &ddx, &ddw, &ddb, NULL), 0);
		ctx = (struct lin_ctx){ n, in, out, ctot, &wr, x.val, wt.val, b.val, dy.val };
		fd(lin_loss, &ctx, x.val, (size_t)n * in, gx);
		fd(lin_loss, &ctx, wt.val, (size_t)out * in, gw);
		fd(lin_loss, &ctx, b.val, out, gb);
		expect_grad(&dx, gx, acc, "linear dx");
		expect_grad(&dw, gw, acc, "linear dW");
		expect_grad(&db, gb, acc, "linear db");
		/* The bias alone (no dW): only the bias column runs. */
		if (!acc) {
			clReleaseMemObject(db.mem);
			db.mem = clCreateBuffer(dev.ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
						db.len * sizeof(float), db.host, NULL);
			ck_assert(db.mem);
			ddb = dst(&db, false);
			ck_assert_int_eq(nasgrad_linear(&gr, &tx, &l, &tdy, &wr, NULL, NULL, &ddb,
							NULL),
					 0);
			expect_grad(&db, gb, false, "linear db alone");
		}
		free(gx), free(gw);
		dbuf_free(&x), dbuf_free(&wt), dbuf_free(&b), dbuf_free(&dy), dbuf_free(&dx),
			dbuf_free(&dw), dbuf_free(&db);
	}
}
END_TEST

struct xent_ctx {
	int n, classes, ctot, c_off;
	const int *labels;
	double *z;
};

/* The mean over the batch of -log softmax(z)[label], log-sum-exp shifted by the maximum. */
static double xent_loss(void *p)
{
	struct xent_ctx *c = p;
	double L = 0;

	for (int b = 0; b < c->n; b++) {
		const double *zr = c->z + (size_t)b * c->ctot + c->c_off;
		double mx = -INFINITY, s = 0;
		for (int j = 0; j < c->classes; j++)
			mx = fmax(mx, zr[j]);
		for (int j = 0; j < c->classes; j++)
			s += exp(zr[j] - mx);
		L += mx + log(s) - zr[c->labels[b]];
	}
	return L / c->n;
}

START_TEST(test_xent)
{
	const int n = 5, classes = 7, ctot = 9, c_off = 1;
	const struct rxd_nas_write wr = { .c_off = c_off, .scale = 1.0f };
	int labels[5] = { 0, 6, 3, 3, 1 }, hits = 0;
	struct dbuf z, dz, out;
	struct rxd_nas_tensor tz;
	struct rxd_nasgrad_dst ddz;
	struct rxd_nasgrad_vec vl, vo;
	struct xent_ctx ctx;
	cl_mem lab;
	double gz[5 * 9], want[5 * 7], loss;
	float *got;

	dbuf_make(&z, (size_t)n * ctot, 2, FILL_RAND);
	/* Logits of a few units, as a classifier's: softmax far from uniform. */
	for (size_t i = 0; i < z.elems; i++)
		z.val[i] = z.host[z.off + i] = (float)(3.0 * z.val[i]);
	clReleaseMemObject(z.mem);
	z.mem = clCreateBuffer(dev.ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
			       z.len * sizeof(float), z.host, NULL);
	ck_assert(z.mem);
	/* Images 0 and 3 labelled with their argmax, image 1 with anything else: some hits. */
	for (int b = 0; b < n; b++) {
		int arg = 0;
		for (int j = 1; j < classes; j++)
			if (z.val[b * ctot + c_off + j] > z.val[b * ctot + c_off + arg])
				arg = j;
		if (b == 0 || b == 3)
			labels[b] = arg;
		else if (b == 1 && labels[b] == arg)
			labels[b] = (arg + 1) % classes;
	}
	dbuf_make(&dz, (size_t)n * classes, 1, FILL_NAN);
	dbuf_make(&out, 2, 1, FILL_NAN);
	lab = clCreateBuffer(dev.ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof(labels),
			     labels, NULL);
	ck_assert(lab);
	tz = tensor(&z, n, ctot, 1, 1);
	ddz = dst(&dz, false);
	vl = (struct rxd_nasgrad_vec){ lab, 0 };
	vo = (struct rxd_nasgrad_vec){ out.mem, (int64_t)out.off };
	ck_assert_int_eq(nasgrad_xent(&gr, &tz, classes, &wr, &vl, &ddz, &vo, NULL), 0);
	ctx = (struct xent_ctx){ n, classes, ctot, c_off, labels, z.val };
	loss = xent_loss(&ctx);
	fd(xent_loss, &ctx, z.val, z.elems, gz);
	for (int b = 0; b < n; b++) {
		int arg = 0;
		for (int j = 0; j < classes; j++) {
			want[b * classes + j] = gz[b * ctot + c_off + j];
			if (z.val[b * ctot + c_off + j] > z.val[b * ctot + c_off + arg])
				arg = j;
		}
		hits += arg == labels[b];
	}
	expect_grad(&dz, want, false, "cross-entropy dz");
	got = dbuf_read(&out);
	ck_assert_msg(fabs(got[out.off] - loss) <= 1e-5 * (1 + loss), "loss %g, want %g",
		      (double)got[out.off], loss);
	ck_assert_msg(got[out.off + 1] == (float)hits, "hits %g, want %d",
		      (double)got[out.off + 1], hits);
	ck_assert_int_ge(hits, 2);
	ck_assert_int_lt(hits, n);
	free(got);
	/* A label out of range: NaN, not a read past the row. Refused slices and dz. */
	labels[2] = classes;
	ck_assert_int_eq(clEnqueueWriteBuffer(dev.queue, lab, CL_TRUE, 0, sizeof(labels), labels, 0,
					      NULL, NULL),
			 CL_SUCCESS);
	ck_assert_int_eq(nasgrad_xent(&gr, &tz, classes, &wr, &vl, &ddz, &vo, NULL), 0);
	got = dbuf_read(&out);
	ck_assert(isnan(got[out.off]));
	free(got);
	ck_assert_int_eq(nasgrad_xent(&gr, &tz, ctot, &wr, &vl, &ddz, &vo, NULL), -EINVAL);
	ddz.accumulate = true;
	ck_assert_int_eq(nasgrad_xent(&gr, &tz, classes, &wr, &vl, &ddz, &vo, NULL), -EINVAL);
	clReleaseMemObject(lab);
	dbuf_free(&z), dbuf_free(&dz), dbuf_free(&out);
}
END_TEST

/* ---- BatchNorm in training mode ------------------------------------------------------ */

struct bn_ctx {
	int n, c, hw, ctot, affine;
	const struct rxd_nas_write *wr;
	double *x, *gamma, *beta, *dy, *y, *mean, *var;
};

/* y = gamma (x - mean) / sqrt(var + eps) + beta per channel, with the batch's mean and
 * biased variance; into c->y (n x c x hw), the statistics into mean and var. */
static void ref_bn(struct bn_ctx *c)
{
	const double M = (double)c->n * c->hw;

	for (int ch = 0; ch < c->c; ch++) {
		double s = 0, v = 0;
		for (int b = 0; b < c->n; b++)
			for (int q = 0; q < c->hw; q++)
				s += c->x[((size_t)b * c->c + ch) * c->hw + q];
		s /= M;
		for (int b = 0; b < c->n; b++)
			for (int q = 0; q < c->hw; q++) {
				double d = c->x[((size_t)b * c->c + ch) * c->hw + q] - s;
				v += d * d;
			}
		v /= M;
		c->mean[ch] = s, c->var[ch] = v;
		for (int b = 0; b < c->n; b++)
			for (int q = 0; q < c->hw; q++) {
				size_t i = ((size_t)b * c->c + ch) * c->hw + q;
				double xh = (c->x[i] - s) / sqrt(v + (double)RXD_NAS_BN_EPS);
				c->y[i] = c->affine ? c->gamma[ch] * xh + c->beta[ch] : xh;
			}
	}
}

static double bn_loss(void *p)
{
	struct bn_ctx *c = p;

	ref_bn(c);
	return slice_dot(c->dy, c->ctot, c->wr->c_off, c->y, c->n, c->c, (size_t)c->hw,
			 c->wr->scale);
}

START_TEST(test_bn)
{
	for (int affine = 0; affine < 2; affine++) {
		/* Odd planes and batches; the last a single pixel per image (after pooling; a
		 * batch of 2 would be degenerate there: its normalised values are +-1 whatever
		 * x is, and the gradient ~0). */
		const int n = affine ? 3 : 5, c = 3, h = affine ? 5 : 1, w = affine ? 3 : 1;
		const int hw = h * w, ctot = 5;
		const struct rxd_nas_write wr = { .c_off = affine ? 2 : 1,
						  .scale = affine ? 1.0f : 0.5f };
		const struct rxd_nas_write put = { .c_off = wr.c_off, .scale = 1.0f };
		size_t nx = (size_t)n * c * hw;
		struct dbuf x, y, prm, st, run, dy, dx, dprm;
		struct rxd_nas_tensor tx, ty, tdy;
		struct rxd_nasgrad_bn bn = { .affine = affine, .momentum = 0.1f,
					     .eps = RXD_NAS_BN_EPS };
		struct rxd_nasgrad_dst ddx, dg, db;
		struct bn_ctx ctx;
		double *g = malloc(nx * sizeof(double)), gp[6], *want;
		float *got;

		ck_assert(g);
		dbuf_make(&x, nx, 1, FILL_RAND);
		/* An offset mean, so that a kernel that does not subtract it shows. */
		for (size_t i = 0; i < nx; i++)
			x.val[i] = x.host[x.off + i] = (float)(x.val[i] + 0.5);
		clReleaseMemObject(x.mem);
		x.mem = clCreateBuffer(dev.ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
				       x.len * sizeof(float), x.host, NULL);
		dbuf_make(&y, (size_t)n * ctot * hw, 2, FILL_RAND);
		dbuf_make(&prm, 2 * (size_t)c, 1, FILL_RAND);
		dbuf_make(&st, 2 * (size_t)c, 1, FILL_NAN);
		dbuf_make(&run, 2 * (size_t)c, 0, FILL_RAND);
		for (int ch = 0; ch < c; ch++) /* variances are positive */
			run.val[c + ch] = run.host[run.off + c + ch] = fabsf(run.host[run.off + c + ch]);
		clReleaseMemObject(run.mem);
		run.mem = clCreateBuffer(dev.ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
					 run.len * sizeof(float), run.host, NULL);
		dbuf_make(&dy, (size_t)n * ctot * hw, 1, FILL_RAND);
		dbuf_make(&dx, nx, 2, affine ? FILL_NAN : FILL_RAND);
		dbuf_make(&dprm, 2 * (size_t)c, 0, FILL_NAN);
		ck_assert(x.mem && run.mem);
		bn.gamma = (struct rxd_nasgrad_vec){ prm.mem, (int64_t)prm.off };
		bn.beta = (struct rxd_nasgrad_vec){ prm.mem, (int64_t)prm.off + c };
		bn.stats = (struct rxd_nasgrad_vec){ st.mem, (int64_t)st.off };
		bn.running = (struct rxd_nasgrad_vec){ run.mem, (int64_t)run.off };
		tx = tensor(&x, n, c, h, w);
		ty = tensor(&y, n, ctot, h, w);
		tdy = tensor(&dy, n, ctot, h, w);

		/* Forward: y's slice, the statistics, the running statistics. */
		ck_assert_int_eq(nasgrad_bn_forward(&gr, &tx, &bn, &ty, &put, NULL), 0);
		ctx = (struct bn_ctx){ n, c, hw, ctot, affine, &wr, x.val, prm.val, prm.val + c,
				       dy.val, NULL, NULL, NULL };
		ctx.y = malloc(nx * sizeof(double));
		ctx.mean = malloc(c * sizeof(double)), ctx.var = malloc(c * sizeof(double));
		want = malloc(y.len * sizeof(double));
		ck_assert(ctx.y && ctx.mean && ctx.var && want);
		ref_bn(&ctx);
		got = dbuf_read(&y);
		for (size_t i = 0; i < y.len; i++)
			want[i] = y.host[i];
		for (int b = 0; b < n; b++)
			for (int ch = 0; ch < c; ch++)
				for (int q = 0; q < hw; q++)
					want[y.off + ((size_t)b * ctot + put.c_off + ch) * hw + q] =
						ctx.y[((size_t)b * c + ch) * hw + q];
		for (size_t i = 0; i < y.len; i++)
			ck_assert_msg(fabs(got[i] - want[i]) <= 1e-5 * (1 + fabs(want[i])),
				      "BN forward (affine %d): element %zu is %g, want %g", affine, i,
				      (double)got[i], want[i]);
		free(got);
		got = dbuf_read(&run);
		for (int ch = 0; ch < c; ch++) {
			const double M = (double)n * hw;
			double rm = 0.9 * run.val[ch] + 0.1 * ctx.mean[ch];
			double rv = 0.9 * run.val[c + ch] + 0.1 * ctx.var[ch] * M / (M - 1);
			ck_assert_msg(fabs(got[run.off + ch] - rm) <= 1e-5 &&
					      fabs(got[run.off + c + ch] - rv) <= 1e-5 * (1 + rv),
				      "running statistics of channel %d: %g %g, want %g %g", ch,
				      (double)got[run.off + ch], (double)got[run.off + c + ch], rm, rv);
		}
		free(got);

		/* Backward, against the differences of the whole (batch-statistics) forward. */
		ddx = dst(&dx, !affine);
		dg = (struct rxd_nasgrad_dst){ dprm.mem, (int64_t)dprm.off, false };
		db = (struct rxd_nasgrad_dst){ dprm.mem, (int64_t)dprm.off + c, false };
		ck_assert_int_eq(nasgrad_bn_backward(&gr, &tx, &bn, &tdy, &wr, &ddx,
						     affine ? &dg : NULL, affine ? &db : NULL, NULL),
				 0);
		fd(bn_loss, &ctx, x.val, nx, g);
		expect_grad(&dx, g, !affine, affine ? "BN dx (affine)" : "BN dx (affine-free)");
		if (affine) {
			fd(bn_loss, &ctx, prm.val, 2 * (size_t)c, gp);
			expect_grad(&dprm, gp, false, "BN dgamma, dbeta");
		} else {
			/* Parameter gradients of an affine-free BN: refused. */
			ck_assert_int_eq(nasgrad_bn_backward(&gr, &tx, &bn, &tdy, &wr, &ddx, &dg,
							     &db, NULL),
					 -EINVAL);
		}
		free(g), free(want), free(ctx.y), free(ctx.mean), free(ctx.var);
		dbuf_free(&x), dbuf_free(&y), dbuf_free(&prm), dbuf_free(&st), dbuf_free(&run);
		dbuf_free(&dy), dbuf_free(&dx), dbuf_free(&dprm);
	}
}
END_TEST

/* ---- the mixed operation ------------------------------------------------------------ */

struct mix_ctx {
	int edges, k, n, c, hw, ctot, c_off;
	double *alpha, *o, *dy; /* o: [edges][k][n][c][hw] */
};

/* L = sum over edges of <dy slice, sum_j softmax(alpha_e)_j o_ej>. */
static double mix_loss(void *p)
{
	struct mix_ctx *c = p;
	size_t one = (size_t)c->n * c->c * c->hw;
	double L = 0;

	for (int e = 0; e < c->edges; e++) {
		const double *a = c->alpha + (size_t)e * c->k;
		double mx = -INFINITY, s = 0;
		for (int j = 0; j < c->k; j++)
			mx = fmax(mx, a[j]);
		for (int j = 0; j < c->k; j++)
			s += exp(a[j] - mx);
		for (int j = 0; j < c->k; j++)
			L += exp(a[j] - mx) / s *
			     slice_dot(c->dy, c->ctot, c->c_off, c->o + ((size_t)e * c->k + j) * one,
				       c->n, c->c, (size_t)c->hw, 1.0);
	}
	return L;
}

START_TEST(test_mixed_alpha)
{
	/* Two edges of the 8 primitives; op 0 ('none') outputs zeros, as in the supernet. */
	const int edges = 2, k = RXD_NAS_PRIMITIVES, n = 2, c = 3, h = 5, w = 3, ctot = 7;
	const int c_off = 4;
	const size_t one = (size_t)n * c * h * w;
	const struct rxd_nas_write wr = { .c_off = c_off, .scale = 1.0f };
	struct dbuf o, dy, alpha, g, da;
	struct rxd_nas_tensor tdy;
	struct rxd_nasgrad_vec va, vg;
	struct rxd_nasgrad_dst dda;
	struct mix_ctx ctx;
	double want[2 * RXD_NAS_PRIMITIVES];

	dbuf_make(&o, (size_t)edges * k * one, 0, FILL_RAND);
	for (int e = 0; e < edges; e++)
		for (size_t i = 0; i < one; i++)
			o.val[(size_t)e * k * one + i] = o.host[(size_t)e * k * one + i] = 0.0f;
	clReleaseMemObject(o.mem);
	o.mem = clCreateBuffer(dev.ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
			       o.len * sizeof(float), o.host, NULL);
	ck_assert(o.mem);
	dbuf_make(&dy, (size_t)n * ctot * h * w, 1, FILL_RAND);
	dbuf_make(&alpha, (size_t)edges * k, 2, FILL_RAND);
	dbuf_make(&g, (size_t)edges * k, 1, FILL_NAN);
	dbuf_make(&da, (size_t)edges * k, 1, FILL_RAND);
	tdy = tensor(&dy, n, ctot, h, w);
	/* dL/dw_j: a dot of dy's slice with each operation's output. */
	for (int e = 0; e < edges; e++)
		for (int j = 0; j < k; j++) {
			struct rxd_nas_tensor to = { .mem = o.mem,
						     .off = (int64_t)(((size_t)e * k + j) * one),
						     .n = n, .c = c, .h = h, .w = w };
			struct rxd_nasgrad_dst dg = { g.mem, (int64_t)g.off + e * k + j, false };
			ck_assert_int_eq(nasgrad_dot(&gr, &tdy, &wr, &to, &dg, NULL), 0);
		}
	va = (struct rxd_nasgrad_vec){ alpha.mem, (int64_t)alpha.off };
	vg = (struct rxd_nasgrad_vec){ g.mem, (int64_t)g.off };
	dda = dst(&da, true);
	ck_assert_int_eq(nasgrad_alpha(&gr, &va, &vg, edges, k, &dda, NULL), 0);
	ctx = (struct mix_ctx){ edges, k, n, c, h * w, ctot, c_off, alpha.val, o.val, dy.val };
	fd(mix_loss, &ctx, alpha.val, (size_t)edges * k, want);
	expect_grad(&da, want, true, "the mixed operation's alpha gradient");
	/* The dot alone, against the reference's (op 3 of edge 1). */
	{
		float *got = dbuf_read(&g);
		double d = slice_dot(dy.val, ctot, c_off, o.val + ((size_t)k + 3) * one, n, c,
				     (size_t)h * w, 1.0);
		ck_assert_msg(fabs(got[g.off + k + 3] - d) <= GRAD_TOL * (1 + fabs(d)),
			      "dot %g, want %g", (double)got[g.off + k + 3], d);
		ck_assert(got[g.off] == 0.0f); /* 'none' */
		free(got);
	}
	dbuf_free(&o), dbuf_free(&dy), dbuf_free(&alpha), dbuf_free(&g), dbuf_free(&da);
}
END_TEST

/* ---- a whole mixed operation, forward on the device, backward through every step ----- */

/* An edge of a supernet cell with three of the primitives: max_pool_3x3, dil_conv_3x3
 * (ReLU, depthwise 3x3 dilation 2, 1x1, BN without affine) and skip_connect, summed with
 * the weights softmax(alpha) into a channel slice of the node. The forward runs on the
 * device (nasops and nasgrad_bn_forward); the backward chains the steps' gradients as a
 * search will (each op's backward reads dy with its weight as the scale; the convolution
 * reads BN's input gradient; dx accumulates over the ops), and the result is checked
 * against finite differences of the whole edge in double: x, both weight arrays, alpha. */
struct edge_ctx {
	int n, c, h, w, ctot, c_off;
	double *x, *wdw, *wpw, *alpha, *dy;
	double *t, *u, *o; /* scratch: the depthwise and pointwise outputs, one op's output */
};

static double edge_loss(void *p)
{
	struct edge_ctx *e = p;
	const int n = e->n, c = e->c, h = e->h, w = e->w;
	const size_t hw = (size_t)h * w;
	const struct rxd_nas_conv dwc = { .c_out = c, .kh = 3, .kw = 3, .stride_h = 1,
					  .stride_w = 1, .pad_h = 2, .pad_w = 2, .dil_h = 2,
					  .dil_w = 2, .groups = c, .relu_in = true };
	const struct rxd_nas_conv pwc = { .c_out = c, .kh = 1, .kw = 1, .stride_h = 1,
					  .stride_w = 1, .dil_h = 1, .dil_w = 1, .groups = 1 };
	double mx = -INFINITY, sum = 0, wts[3], L = 0;

	for (int j = 0; j < 3; j++)
		mx = fmax(mx, e->alpha[j]);
	for (int j = 0; j < 3; j++)
		sum += exp(e->alpha[j] - mx);
	for (int j = 0; j < 3; j++)
		wts[j] = exp(e->alpha[j] - mx) / sum;
	/* max_pool_3x3, stride 1, pad 1 */
	for (int b = 0; b < n * c; b++)
		for (int i = 0; i < h; i++)
			for (int j = 0; j < w; j++) {
				double best = -INFINITY;
				for (int a = i - 1; a <= i + 1; a++)
					for (int d = j - 1; d <= j + 1; d++)
						if (a >= 0 && a < h && d >= 0 && d < w)
							best = fmax(best, e->x[(size_t)b * hw + a * w + d]);
				e->o[(size_t)b * hw + i * w + j] = best;
			}
	L += wts[0] * slice_dot(e->dy, e->ctot, e->c_off, e->o, n, c, hw, 1.0);
	/* dil_conv_3x3: ReLU, depthwise dilated, 1x1, BN (batch statistics, no affine) */
	ref_conv(e->x, n, c, h, w, &dwc, e->wdw, e->t, h, w);
	ref_conv(e->t, n, c, h, w, &pwc, e->wpw, e->u, h, w);
	for (int ch = 0; ch < c; ch++) {
		double m = 0, v = 0;
		for (int b = 0; b < n; b++)
			for (size_t q = 0; q < hw; q++)
				m += e->u[((size_t)b * c + ch) * hw + q];
		m /= (double)n * hw;
		for (int b = 0; b < n; b++)
			for (size_t q = 0; q < hw; q++) {
				double d = e->u[((size_t)b * c + ch) * hw + q] - m;
				v += d * d;
			}
		v /= (double)n * hw;
		for (int b = 0; b < n; b++)
			for (size_t q = 0; q < hw; q++) {
				size_t i = ((size_t)b * c + ch) * hw + q;
				e->o[i] = (e->u[i] - m) / sqrt(v + (double)RXD_NAS_BN_EPS);
			}
	}
	L += wts[1] * slice_dot(e->dy, e->ctot, e->c_off, e->o, n, c, hw, 1.0);
	/* skip_connect */
	L += wts[2] * slice_dot(e->dy, e->ctot, e->c_off, e->x, n, c, hw, 1.0);
	return L;
}

START_TEST(test_mixed_edge)
{
	const int n = 2, c = 3, h = 7, w = 6, ctot = 5, c_off = 2;
	const size_t one = (size_t)n * c * h * w;
	struct dbuf x, wts, alpha, y, ops, t, u, st, dy, dx, dt, du, dwts, g, dalpha;
	struct rxd_nas_conv dwc = { .c_out = c, .kh = 3, .kw = 3, .stride_h = 1, .stride_w = 1,
				    .pad_h = 2, .pad_w = 2, .dil_h = 2, .dil_w = 2, .groups = c,
				    .relu_in = true };
	struct rxd_nas_conv pwc = { .c_out = c, .kh = 1, .kw = 1, .stride_h = 1, .stride_w = 1,
				    .dil_h = 1, .dil_w = 1, .groups = 1 };
	const struct rxd_nas_pool pool = { .kind = RXD_NAS_POOL_MAX, .kh = 3, .kw = 3,
					   .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1 };
	const struct rxd_nas_write put = { .c_off = 0, .scale = 1.0f };
	struct rxd_nasgrad_bn bn = { .affine = false, .momentum = 0.1f, .eps = RXD_NAS_BN_EPS };
	struct rxd_nas_tensor tx, to[3], tt, tu, ty;
	struct rxd_nasgrad_dst ddx, ddt, ddu, ddw_dw, ddw_pw;
	struct rxd_nasgrad_vec va, vg;
	struct edge_ctx ctx;
	double wsum = 0, wt[3], *gx, gdw[27], gpw[9], ga[3];
	float *got;

	dbuf_make(&x, one, 1, FILL_OFF0);
	dbuf_make(&wts, 27 + 9, 0, FILL_RAND); /* depthwise [3][1][3][3], then 1x1 [3][3] */
	dbuf_make(&alpha, 3, 0, FILL_RAND);
	dbuf_make(&y, (size_t)n * ctot * h * w, 0, FILL_RAND);
	dbuf_make(&ops, 3 * one, 0, FILL_NAN); /* each op's output, for the alpha gradient */
	dbuf_make(&t, one, 0, FILL_NAN);
	dbuf_make(&u, one, 0, FILL_NAN);
	dbuf_make(&st, 2 * (size_t)c, 0, FILL_NAN);
	dbuf_make(&dy, (size_t)n * ctot * h * w, 0, FILL_RAND);
	dbuf_make(&dx, one, 1, FILL_NAN);
	dbuf_make(&dt, one, 0, FILL_NAN);
	dbuf_make(&du, one, 0, FILL_NAN);
	dbuf_make(&dwts, 27 + 9, 0, FILL_NAN);
	dbuf_make(&g, 3, 0, FILL_NAN);
	dbuf_make(&dalpha, 3, 0, FILL_NAN);
	for (int j = 0; j < 3; j++)
		wsum += exp(alpha.val[j]);
	for (int j = 0; j < 3; j++)
		wt[j] = exp(alpha.val[j]) / wsum;
	dwc.weight = pwc.weight = wts.mem, pwc.weight_off = 27;
	bn.stats = (struct rxd_nasgrad_vec){ st.mem, 0 };
	tx = tensor(&x, n, c, h, w);
	for (int j = 0; j < 3; j++) {
		to[j] = tensor(&ops, n, c, h, w);
		to[j].off = (int64_t)(j * one);
	}
	tt = tensor(&t, n, c, h, w), tu = tensor(&u, n, c, h, w);
	ty = tensor(&y, n, ctot, h, w);

	/* Forward: each op's output, then the weighted sum into y's slice. */
	ck_assert_int_eq(nasops_pool(&ops_fwd, &tx, &pool, &to[0], &put, NULL), 0);
	ck_assert_int_eq(nasops_conv(&ops_fwd, &tx, &dwc, &tt, &put, NULL), 0);
	ck_assert_int_eq(nasops_conv(&ops_fwd, &tt, &pwc, &tu, &put, NULL), 0);
	ck_assert_int_eq(nasgrad_bn_forward(&gr, &tu, &bn, &to[1], &put, NULL), 0);
	ck_assert_int_eq(nasops_copy(&ops_fwd, &tx, false, &to[2], &put, NULL), 0);
	for (int j = 0; j < 3; j++) {
		struct rxd_nas_write wj = { .c_off = c_off, .accumulate = j > 0,
					    .scale = (float)wt[j] };
		ck_assert_int_eq(nasops_copy(&ops_fwd, &to[j], false, &ty, &wj, NULL), 0);
	}

	/* Backward. */
	{
		struct rxd_nas_tensor tdy = tensor(&dy, n, ctot, h, w);
		struct rxd_nas_write r[3];

		for (int j = 0; j < 3; j++) {
			struct rxd_nasgrad_dst dg = { g.mem, j, false };
			r[j] = (struct rxd_nas_write){ .c_off = c_off, .scale = (float)wt[j] };
			ck_assert_int_eq(nasgrad_dot(&gr, &tdy, &r[j], &to[j], &dg, NULL), 0);
		}
		va = (struct rxd_nasgrad_vec){ alpha.mem, 0 };
		vg = (struct rxd_nasgrad_vec){ g.mem, 0 };
		{
			struct rxd_nasgrad_dst dda = dst(&dalpha, false);
			ck_assert_int_eq(nasgrad_alpha(&gr, &va, &vg, 1, 3, &dda, NULL), 0);
		}
		ddx = dst(&dx, false), ddt = dst(&dt, false), ddu = dst(&du, false);
		ddw_dw = (struct rxd_nasgrad_dst){ dwts.mem, 0, false };
		ddw_pw = (struct rxd_nasgrad_dst){ dwts.mem, 27, false };
		ck_assert_int_eq(nasgrad_pool(&gr, &tx, &pool, &tdy, &r[0], &ddx, NULL), 0);
		ck_assert_int_eq(nasgrad_bn_backward(&gr, &tu, &bn, &tdy, &r[1], &ddu, NULL, NULL,
						     NULL),
				 0);
		{
			struct rxd_nas_tensor tdu = tensor(&du, n, c, h, w);
			struct rxd_nas_tensor tdt = tensor(&dt, n, c, h, w);
			ck_assert_int_eq(nasgrad_conv(&gr_tiled, &tt, &pwc, &tdu, &put, &ddt, &ddw_pw,
						      NULL),
					 0);
			ddx.accumulate = true;
			ck_assert_int_eq(nasgrad_conv(&gr, &tx, &dwc, &tdt, &put, &ddx, &ddw_dw, NULL),
					 0);
		}
		ck_assert_int_eq(nasgrad_relu(&gr, &tx, false, &tdy, &r[2], &ddx, NULL), 0);
	}

	/* The forward first (y's slice), then every gradient, against the double reference. */
	ctx = (struct edge_ctx){ n, c, h, w, ctot, c_off, x.val, wts.val, wts.val + 27,
				 alpha.val, dy.val, NULL, NULL, NULL };
	ctx.t = malloc(one * sizeof(double)), ctx.u = malloc(one * sizeof(double));
	ctx.o = malloc(one * sizeof(double)), gx = malloc(one * sizeof(double));
	ck_assert(ctx.t && ctx.u && ctx.o && gx);
	got = dbuf_read(&y);
	{
		/* The forward of the edge: d(L)/d(dy) is y's slice, so differences of L in dy
		 * give the forward without another reference. */
		double *fy = malloc(y.elems * sizeof(double));
		ck_assert(fy);
		fd(edge_loss, &ctx, dy.val, dy.elems, fy);
		for (size_t i = 0; i < y.elems; i++) {
			size_t ch = i / ((size_t)h * w) % ctot;
			double want = ch >= (size_t)c_off && ch < (size_t)c_off + c ? fy[i]
										  : y.val[i];
			ck_assert_msg(fabs(got[i] - want) <= 1e-4 * (1 + fabs(want)),
				      "edge forward: element %zu is %g, want %g", i, (double)got[i],
				      want);
		}
		free(fy);
	}
	free(got);
	fd(edge_loss, &ctx, x.val, one, gx);
	fd(edge_loss, &ctx, wts.val, 27, gdw);
	fd(edge_loss, &ctx, wts.val + 27, 9, gpw);
	fd(edge_loss, &ctx, alpha.val, 3, ga);
	expect_grad(&dx, gx, false, "mixed edge dx");
	{
		double gw[36];
		memcpy(gw, gdw, sizeof(gdw));
		memcpy(gw + 27, gpw, sizeof(gpw));
		expect_grad(&dwts, gw, false, "mixed edge dW (depthwise, then 1x1)");
	}
	expect_grad(&dalpha, ga, false, "mixed edge dalpha");
	free(ctx.t), free(ctx.u), free(ctx.o), free(gx);
	dbuf_free(&x), dbuf_free(&wts), dbuf_free(&alpha), dbuf_free(&y), dbuf_free(&ops);
	dbuf_free(&t), dbuf_free(&u), dbuf_free(&st), dbuf_free(&dy), dbuf_free(&dx);
	dbuf_free(&dt), dbuf_free(&du), dbuf_free(&dwts), dbuf_free(&g), dbuf_free(&dalpha);
}
END_TEST

/* ---- optimisers ---------------------------------------------------------------------- */

START_TEST(test_sgd_clip)
{
	/* Three steps of SGD (momentum 0.9, weight decay 3e-4, lr 0.025), each after clipping
	 * the gradient's global norm to 5, as the DARTS search does; the gradients of the
	 * first two steps have a norm above 5 (clipped), the last below (left). */
	const int len = 1000;
	const struct rxd_nasgrad_sgd p = { .lr = 0.025f, .momentum = 0.9f, .weight_decay = 3e-4f };
	struct dbuf w, g, buf, ss;
	double *ww = malloc(len * sizeof(double)), *bb = calloc(len, sizeof(double));
	struct rxd_nasgrad_vec vw, vg, vb, vs;

	ck_assert(ww && bb);
	dbuf_make(&w, len, 1, FILL_RAND);
	dbuf_make(&g, len, 2, FILL_RAND);
	dbuf_make(&buf, len, 1, FILL_RAND);
	dbuf_make(&ss, 1, 1, FILL_NAN);
	for (int i = 0; i < len; i++)
		ww[i] = w.val[i], buf.host[buf.off + i] = 0.0f;
	ck_assert_int_eq(clEnqueueWriteBuffer(dev.queue, buf.mem, CL_TRUE, 0,
					      buf.len * sizeof(float), buf.host, 0, NULL, NULL),
			 CL_SUCCESS);
	vw = (struct rxd_nasgrad_vec){ w.mem, (int64_t)w.off };
	vg = (struct rxd_nasgrad_vec){ g.mem, (int64_t)g.off };
	vb = (struct rxd_nasgrad_vec){ buf.mem, (int64_t)buf.off };
	vs = (struct rxd_nasgrad_vec){ ss.mem, (int64_t)ss.off };
	for (int step = 0; step < 3; step++) {
		/* Gradients of norm ~ sqrt(1000 / 3) * amp: 18 and 9 (clipped), then 0.9. */
		double amp = step == 0 ? 1.0 : step == 1 ? 0.5 : 0.05, norm2 = 0, coef;
		float *got;
		double *gg = malloc(len * sizeof(double));

		ck_assert(gg);
		for (int i = 0; i < len; i++) {
			float v = (float)(urand() * amp);
			g.host[g.off + i] = v;
			gg[i] = v;
			norm2 += (double)v * v;
		}
		ck_assert_int_eq(clEnqueueWriteBuffer(dev.queue, g.mem, CL_TRUE, 0,
						      g.len * sizeof(float), g.host, 0, NULL, NULL),
				 CL_SUCCESS);
		ck_assert_int_eq(nasgrad_clip_norm(&gr, &vg, len, 5.0f, &vs, NULL), 0);
		ck_assert_int_eq(nasgrad_sgd(&gr, &vw, &vg, &vb, len, &p, NULL), 0);
		/* PyTorch: clip_grad_norm_, then SGD's d = g + wd w; buf = m buf + d; w -= lr buf. */
		coef = 5.0 / (sqrt(norm2) + 1e-6);
		ck_assert(step < 2 ? coef < 1 : coef > 1);
		for (int i = 0; i < len; i++) {
			double d = gg[i] * (coef < 1 ? coef : 1) + 3e-4 * ww[i];
			bb[i] = 0.9 * bb[i] + d;
			ww[i] -= 0.025 * bb[i];
		}
		got = dbuf_read(&ss);
		ck_assert_msg(fabs(got[ss.off] - norm2) <= 1e-5 * norm2, "sum of squares %g, want %g",
			      (double)got[ss.off], norm2);
		free(got);
		got = dbuf_read(&w);
		for (int i = 0; i < len; i++)
			ck_assert_msg(fabs(got[w.off + i] - ww[i]) <= 1e-5 * (1 + fabs(ww[i])),
				      "SGD step %d: w[%d] is %.8g, want %.8g", step, i,
				      (double)got[w.off + i], ww[i]);
		ck_assert(got[0] == w.host[0] && got[w.off + len] == w.host[w.off + len]);
		free(got);
		got = dbuf_read(&buf);
		for (int i = 0; i < len; i++)
			ck_assert_msg(fabs(got[buf.off + i] - bb[i]) <= 1e-5 * (1 + fabs(bb[i])),
				      "SGD step %d: momentum[%d] is %g, want %g", step, i,
				      (double)got[buf.off + i], bb[i]);
		free(got), free(gg);
	}
	/* Overlapping arrays and a bad max_norm are refused. */
	ck_assert_int_eq(nasgrad_sgd(&gr, &vw, &vw, &vb, len, &p, NULL), -EINVAL);
	ck_assert_int_eq(nasgrad_clip_norm(&gr, &vg, len, 0.0f, &vs, NULL), -EINVAL);
	ck_assert_int_eq(nasgrad_clip_norm(&gr, &vg, len + 4, 5.0f, &vs, NULL), -EINVAL);
	free(ww), free(bb);
	dbuf_free(&w), dbuf_free(&g), dbuf_free(&buf), dbuf_free(&ss);
}
END_TEST

START_TEST(test_adam)
{
	/* DARTS' architecture optimiser: lr 3e-4, betas (0.5, 0.999), weight decay 1e-3, four
	 * steps from zero moments (the bias corrections matter most in the first ones). The
	 * weights, gradient and moments share one buffer, as a search's state does. */
	const int len = 2 * 14 * RXD_NAS_PRIMITIVES;
	const struct rxd_nasgrad_adam p0 = { .lr = 3e-4, .beta1 = 0.5, .beta2 = 0.999,
					     .eps = 1e-8, .weight_decay = 1e-3 };
	struct dbuf all;
	double w[2 * 14 * RXD_NAS_PRIMITIVES], m[2 * 14 * RXD_NAS_PRIMITIVES] = { 0 };
	double v[2 * 14 * RXD_NAS_PRIMITIVES] = { 0 };
	struct rxd_nasgrad_vec vw, vg, vm, vv;

	dbuf_make(&all, 4 * (size_t)len, 2, FILL_RAND);
	for (int i = 0; i < len; i++) {
		w[i] = all.host[all.off + i] * 1e-3f; /* the reference's 1e-3 * randn start */
		all.host[all.off + i] = (float)w[i];
		w[i] = all.host[all.off + i];
		all.host[all.off + 2 * len + i] = all.host[all.off + 3 * len + i] = 0.0f;
	}
	ck_assert_int_eq(clEnqueueWriteBuffer(dev.queue, all.mem, CL_TRUE, 0,
					      all.len * sizeof(float), all.host, 0, NULL, NULL),
			 CL_SUCCESS);
	vw = (struct rxd_nasgrad_vec){ all.mem, (int64_t)all.off };
	vg = (struct rxd_nasgrad_vec){ all.mem, (int64_t)all.off + len };
	vm = (struct rxd_nasgrad_vec){ all.mem, (int64_t)all.off + 2 * len };
	vv = (struct rxd_nasgrad_vec){ all.mem, (int64_t)all.off + 3 * len };
	for (int step = 1; step <= 4; step++) {
		struct rxd_nasgrad_adam p = p0;
		double bc1 = 1 - pow(0.5, step), bc2 = 1 - pow(0.999, step);
		float *got;

		for (int i = 0; i < len; i++)
			all.host[all.off + len + i] = (float)(urand() * 0.1);
		ck_assert_int_eq(clEnqueueWriteBuffer(dev.queue, all.mem, CL_TRUE,
						      (all.off + len) * sizeof(float),
						      len * sizeof(float), all.host + all.off + len, 0,
						      NULL, NULL),
				 CL_SUCCESS);
		p.step = step;
		ck_assert_int_eq(nasgrad_adam(&gr, &vw, &vg, &vm, &vv, len, &p, NULL), 0);
		for (int i = 0; i < len; i++) {
			double g = all.host[all.off + len + i] + 1e-3 * w[i];
			m[i] = 0.5 * m[i] + 0.5 * g;
			v[i] = 0.999 * v[i] + 0.001 * g * g;
			w[i] -= 3e-4 / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + 1e-8);
		}
		got = dbuf_read(&all);
		for (int i = 0; i < len; i++) {
			ck_assert_msg(fabs(got[all.off + i] - w[i]) <= 1e-5 * fabs(w[i]) + 1e-9,
				      "Adam step %d: w[%d] is %.9g, want %.9g", step, i,
				      (double)got[all.off + i], w[i]);
			ck_assert_msg(fabs(got[all.off + 2 * len + i] - m[i]) <= 1e-5 * fabs(m[i]) + 1e-9 &&
					      fabs(got[all.off + 3 * len + i] - v[i]) <= 1e-5 * fabs(v[i]) + 1e-12,
				      "Adam step %d: moments of %d: %g %g, want %g %g", step, i,
				      (double)got[all.off + 2 * len + i],
				      (double)got[all.off + 3 * len + i], m[i], v[i]);
		}
		free(got);
	}
	{
		struct rxd_nasgrad_adam p = p0; /* step 0: no bias correction exists */
		ck_assert_int_eq(nasgrad_adam(&gr, &vw, &vg, &vm, &vv, len, &p, NULL), -EINVAL);
		p.step = 1;
		ck_assert_int_eq(nasgrad_adam(&gr, &vw, &vg, &vw, &vv, len, &p, NULL), -EINVAL);
	}
	dbuf_free(&all);
}
END_TEST

/* ---- refused shapes ----------------------------------------------------------------- */

START_TEST(test_refused)
{
	struct dbuf x, dy, wt, dx;
	struct rxd_nas_conv cv = CONV(3, 3, 1, 1, 1, 1, 1, 1, 1, 4);
	const struct rxd_nas_write wr = { .c_off = 0, .scale = 1.0f };
	struct rxd_nas_tensor tx, tdy;
	struct rxd_nasgrad_dst ddx, ddw = { 0 };

	dbuf_make(&x, 2 * 4 * 6 * 6, 0, FILL_RAND);
	dbuf_make(&dy, 2 * 4 * 6 * 6, 0, FILL_RAND);
	dbuf_make(&wt, 4 * 4 * 9, 0, FILL_RAND);
	dbuf_make(&dx, 2 * 4 * 6 * 6, 0, FILL_RAND);
	cv.weight = wt.mem;
	tx = tensor(&x, 2, 4, 6, 6);
	tdy = tensor(&dy, 2, 4, 6, 6);
	ddx = dst(&dx, false);
	ck_assert_int_eq(nasgrad_conv(&gr, &tx, &cv, &tdy, &wr, &ddx, &ddw, NULL), 0);
	/* dx onto dy (the gather reads neighbours); dy of the wrong plane; weights short. */
	ddx.mem = dy.mem;
	ck_assert_int_eq(nasgrad_conv(&gr, &tx, &cv, &tdy, &wr, &ddx, NULL, NULL), -EINVAL);
	ddx.mem = dx.mem;
	tdy.h = 5;
	ck_assert_int_eq(nasgrad_conv(&gr, &tx, &cv, &tdy, &wr, &ddx, NULL, NULL), -EINVAL);
	tdy.h = 6;
	cv.weight_off = 4; /* dbuf_make leaves 3 floats after an array */
	ck_assert_int_eq(nasgrad_conv(&gr, &tx, &cv, &tdy, &wr, &ddx, NULL, NULL), -EINVAL);
	cv.weight_off = 0;
	ddx.off = 4; /* dx past its buffer's end */
	ck_assert_int_eq(nasgrad_conv(&gr, &tx, &cv, &tdy, &wr, &ddx, NULL, NULL), -EINVAL);
	ddx.off = 0;
	tx.n = 1 << 24;
	ck_assert_int_eq(nasgrad_conv(&gr, &tx, &cv, &tdy, &wr, &ddx, NULL, NULL), -E2BIG);
	clFinish(dev.queue);
	dbuf_free(&x), dbuf_free(&dy), dbuf_free(&wt), dbuf_free(&dx);
}
END_TEST

/* An engine of one kernel family for every size class and transposition. */
static int engine_make(struct rxd_gemm_engine *eng, const struct rxd_gemm_config *cfg)
{
	memset(eng, 0, sizeof(*eng));
	eng->dev = &dev;
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++) {
			int v = gemm_engine_add(eng, ta, tb, cfg);
			if (v < 0)
				return v;
			for (int cl = 0; cl < RXD_GEMM_CLASSES; cl++)
				eng->choice[ta][tb][cl] = v;
		}
	return 0;
}

int main(void)
{
	const struct rxd_gemm_config tiled = { .kernel = RXD_GEMM_TILED, .tsm = 16, .tsn = 16,
					       .tsk = 16, .wptm = 4, .wptn = 4 };
	const struct rxd_gemm_config reg = { RXD_GEMM_REG, 32, 32, 16, 8, 8, 4, 4, 0, 0, 0 };
	const char *sel = getenv("RXGEMM_TEST_DEVICE");
	Suite *s = suite_create("nasgrad");
	TCase *tc = tcase_create("backward");
	SRunner *sr;
	int failed;

	log_set_level(LOG_WARNING);
	if (device_open(&dev, sel, NULL) < 0) {
		fprintf(stderr, "no OpenCL device%s%s: skipping\n", sel ? " matching " : "",
			sel ? sel : "");
		return 77;
	}
	fprintf(stderr, "device: %s\n", dev.description);
	if (engine_make(&eng_tiled, &tiled) < 0 || engine_make(&eng_reg, &reg) < 0) {
		fprintf(stderr, "the GEMM kernels do not build on %s\n", dev.description);
		return EXIT_FAILURE;
	}
	if (nasgrad_init(&gr, &dev, NULL) < 0 || nasgrad_init(&gr_tiled, &dev, &eng_tiled) < 0 ||
	    nasgrad_init(&gr_reg, &dev, &eng_reg) < 0 || nasops_init(&ops_fwd, &dev, NULL) < 0) {
		fprintf(stderr, "nasgrad.cl does not build on %s\n", dev.description);
		return EXIT_FAILURE;
	}
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_conv_depthwise);
	tcase_add_test(tc, test_conv_dense);
	tcase_add_test(tc, test_factorized_reduce);
	tcase_add_test(tc, test_pool);
	tcase_add_test(tc, test_pool_max_ties);
	tcase_add_test(tc, test_relu_identity_gap);
	tcase_add_test(tc, test_linear);
	tcase_add_test(tc, test_xent);
	tcase_add_test(tc, test_bn);
	tcase_add_test(tc, test_mixed_alpha);
	tcase_add_test(tc, test_mixed_edge);
	tcase_add_test(tc, test_sgd_clip);
	tcase_add_test(tc, test_adam);
	tcase_add_test(tc, test_refused);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	/* The OpenCL runtime's threads do not survive fork(): run the tests in-process. */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	nasops_fini(&ops_fwd);
	nasgrad_fini(&gr_reg), nasgrad_fini(&gr_tiled), nasgrad_fini(&gr);
	gemm_fini(&eng_reg), gemm_fini(&eng_tiled);
	device_close(&dev);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test-nasops.c: every NAS step kind (daemon/nasops.c, kernels/nas.cl) on a real OpenCL
 * device (PoCL here; rusticl through test-rusticl-nas.sh) against plain C loops written
 * here, on odd shapes: depthwise 3x3/5x5 at stride 1 and 2, dilation 2, ReLU on the input,
 * FactorizedReduce from two 1x1 stride-2 convolutions (one reading the shifted input) into
 * two channel slices, dense 1x1 and kxk (3x3 at stride 1 and 2, 7x1 and 1x7), pooling with
 * padding, copy/zero/accumulate/scale into slices, a tensor added as a slice is written
 * (an identity edge fused into the other edge's step), global average pooling and linear
 * layers, all with a batch of more than one image.
 *
 * Convolutions, pooling and linear layers run seven ways: with the direct kernels (no GEMM
 * engine), and through the GEMM engine with its edge-handling tiled kernel and with its
 * register-blocked kernel (copies, zeros and global pooling never use the engine), all
 * three with RXGEMMD_NAS_KERNELS=old; then with the new kernels (dense 1x1 convolutions
 * and depthwise-then-1x1 steps through nas_pw) over the tiled engine, and over none with
 * nas_pw's register tile at 8x2 instead of 4x4; then with dense 1x1 convolutions through
 * nas_pws, and nas_pwv where its float4s fit, with every other dense convolution through
 * nas_cvs (RXGEMMD_NAS_KERNELS=pwv,cvs, the GPUs' default) over the register-blocked
 * engine, all three in their narrow variants (4 pixels by 8 channels), and nas_pws
 * without nas_pwv over none, wide at 8 by 8 (pws,cvs). DWPW steps (nasops_dwpw) run
 * all seven ways too, against the two convolutions' reference.
 * Tensors lie at offsets inside larger buffers filled with known values: a step must
 * leave everything outside its output slice as it was. Outputs that a step overwrites
 * start as NaN, so that a kernel reading them shows. Inputs are small multiples of 1/4,
 * so every sum of products is exact in float whatever the order of the additions; only
 * averages are compared with a tolerance.
 *
 * RXGEMM_TEST_DEVICE picks the device (as rxgemmd --device); RXGEMM_TEST_SMALL=1 leaves
 * out the large shapes for slow devices. Exits 77 (skipped) when there is no device. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

static struct rxd_device dev;
static struct rxd_gemm_engine eng_tiled, eng_reg;
static struct rxd_nasops ops_direct, ops_tiled, ops_reg, ops_pw, ops_pw82, ops_pws, ops_pws88;
#define N_OPS 7
static struct rxd_nasops *all_ops[N_OPS] = { &ops_direct, &ops_tiled, &ops_reg, &ops_pw,
					     &ops_pw82,   &ops_pws,   &ops_pws88 };
static const char *const ops_names[N_OPS] = { "direct", "gemm-tiled", "gemm-reg", "nas_pw",
					      "nas_pw 8x2", "nas_pwv+cvs narrow", "nas_pws+cvs 8x8" };
static bool small;
static uint32_t rng = 1;

/* A multiple of 1/4 in [-2, 2]. */
static float rnd(void)
{
	rng = rng * 1664525u + 1013904223u;
	return (float)((int)(rng >> 24) % 17 - 8) * 0.25f;
}

/* ---- device buffers holding a tensor at an offset ------------------------------------ */

struct dbuf {
	cl_mem mem;
	float *host;      /* the whole buffer as uploaded */
	size_t len, off;  /* floats in all; where the tensor starts */
};

/* A buffer of pad + elems + 5 floats, every one filled (rnd, or NaN inside the tensor). */
static void dbuf_make(struct dbuf *b, size_t elems, size_t pad, bool nan_inside)
{
	cl_int e;

	b->off = pad;
	b->len = pad + elems + 5;
	b->host = malloc(b->len * sizeof(float));
	ck_assert(b->host);
	for (size_t i = 0; i < b->len; i++)
		b->host[i] = nan_inside && i >= pad && i < pad + elems ? NAN : rnd();
	b->mem = clCreateBuffer(dev.ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
				b->len * sizeof(float), b->host, &e);
	ck_assert_msg(b->mem, "clCreateBuffer: %s", device_strerror(e));
}

static void dbuf_free(struct dbuf *b)
{
	clReleaseMemObject(b->mem);
	free(b->host);
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

/* Compare the whole buffer with want (same length); NaN matches NaN only. */
static void expect_equal(const float *got, const float *want, size_t len, float tol,
			 const char *what, const char *how)
{
	for (size_t i = 0; i < len; i++) {
		bool ok = isnan(want[i]) ? isnan(got[i])
					 : fabsf(got[i] - want[i]) <= tol * (1.0f + fabsf(want[i]));
		ck_assert_msg(ok, "%s (%s): element %zu is %g, want %g", what, how, i,
			      (double)got[i], (double)want[i]);
	}
}

static struct rxd_nas_tensor tensor(const struct dbuf *b, int n, int c, int h, int w)
{
	struct rxd_nas_tensor t = { .mem = b->mem, .off = (int64_t)b->off, .n = n, .c = c,
				    .h = h, .w = w };
	return t;
}

/* y[i] = scale * v, or y[i] += scale * v. */
static void ref_put(float *y, size_t i, double v, const struct rxd_nas_write *wr)
{
	y[i] = (float)(wr->scale * v + (wr->accumulate ? (double)y[i] : 0.0));
}

/* ---- reference convolution: pad (and shift, ReLU) the input explicitly, then correlate -- */

static void ref_conv(const float *x, int n, int cin, int h, int w, const struct rxd_nas_conv *cv,
		     const float *wt, const float *bias, float *y, int ctot, int ho, int wo,
		     const struct rxd_nas_write *wr)
{
	int hs = h - cv->in_shift, ws = w - cv->in_shift;
	int hp = hs + 2 * cv->pad_h, wp = ws + 2 * cv->pad_w;
	int cpg = cin / cv->groups, opg = cv->c_out / cv->groups;
	float *p = calloc((size_t)cin * hp * wp, sizeof(float));

	ck_assert(p);
	for (int b = 0; b < n; b++) {
		for (int c = 0; c < cin; c++)
			for (int i = 0; i < hs; i++)
				for (int j = 0; j < ws; j++) {
					float v = x[(((size_t)b * cin + c) * h + i + cv->in_shift) * w +
						    j + cv->in_shift];
					if (cv->relu_in)
						v = fmaxf(v, 0.0f);
					p[((size_t)c * hp + i + cv->pad_h) * wp + j + cv->pad_w] = v;
				}
		for (int co = 0; co < cv->c_out; co++) {
			int g = co / opg;
			for (int oh = 0; oh < ho; oh++)
				for (int ow = 0; ow < wo; ow++) {
					double s = bias ? bias[co] : 0.0;
					for (int ci = 0; ci < cpg; ci++)
						for (int i = 0; i < cv->kh; i++)
							for (int j = 0; j < cv->kw; j++)
								s += (double)p[((size_t)(g * cpg + ci) * hp +
										oh * cv->stride_h + i * cv->dil_h) *
										       wp +
									       ow * cv->stride_w + j * cv->dil_w] *
								     wt[(((size_t)co * cpg + ci) * cv->kh + i) *
									       cv->kw +
								       j];
					ref_put(y, (((size_t)b * ctot + wr->c_off + co) * ho + oh) * wo + ow,
						s, wr);
				}
		}
	}
	free(p);
}

struct conv_case {
	int n, cin, h, w;
	struct rxd_nas_conv cv;
	int ctot;        /* 0: c_off + c_out */
	struct rxd_nas_write wr;
	size_t x_pad, y_pad;
	bool no_bias;
	int add_ctot;    /* 0: nothing added; else a tensor of this many channels is */
	int add_c_off;
	float add_scale;
	bool w_aligned;  /* the weights at offset 4 (a float4's), not 3 */
	const char *vec_kernel; /* set: the kernel its first launch must be where nas_pwv is on */
	const char *dw_kernel;  /* set: the same where nas_dwrv is on */
};

/* want's slice (c channels from c_off of ctot, n images of hw pixels) += add_scale *
 * a's channels from a_c_off of a_ctot: what wr->add does. Exact on these values. */
static void ref_add(float *want, int n, int ctot, int c_off, int c, int hw, const float *a,
		    int a_ctot, int a_c_off, float add_scale)
{
	for (int b = 0; b < n; b++)
		for (int ch = 0; ch < c; ch++)
			for (int p = 0; p < hw; p++)
				want[((size_t)b * ctot + c_off + ch) * hw + p] +=
					add_scale * a[((size_t)b * a_ctot + a_c_off + ch) * hw + p];
}

static void conv_case_run(const struct conv_case *tc, struct rxd_nasops *ops, const char *how)
{
	struct rxd_nas_conv cv = tc->cv;
	int ho = nasops_out_dim(tc->h - cv.in_shift, cv.kh, cv.stride_h, cv.pad_h, cv.dil_h);
	int wo = nasops_out_dim(tc->w - cv.in_shift, cv.kw, cv.stride_w, cv.pad_w, cv.dil_w);
	int ctot = tc->ctot ? tc->ctot : tc->wr.c_off + cv.c_out;
	size_t nw = (size_t)cv.c_out * (tc->cin / cv.groups) * cv.kh * cv.kw;
	struct dbuf x, y, w, b, a = { 0 };
	struct rxd_nas_tensor tx, ty, ta;
	struct rxd_nas_write wr = tc->wr;
	struct rxd_nas_span span = { NULL, NULL };
	float *want, *got;
	char what[160];

	ck_assert(ho > 0 && wo > 0);
	snprintf(what, sizeof(what), "conv %dx%d s%dx%d p%dx%d d%dx%d g%d relu %d shift %d, x %dx%dx%dx%d",
		 cv.kh, cv.kw, cv.stride_h, cv.stride_w, cv.pad_h, cv.pad_w, cv.dil_h, cv.dil_w,
		 cv.groups, cv.relu_in, cv.in_shift, tc->n, tc->cin, tc->h, tc->w);
	dbuf_make(&x, (size_t)tc->n * tc->cin * tc->h * tc->w, tc->x_pad, false);
	dbuf_make(&y, (size_t)tc->n * ctot * ho * wo, tc->y_pad, !tc->wr.accumulate);
	dbuf_make(&w, nw, tc->w_aligned ? 4 : 3, false);
	dbuf_make(&b, (size_t)cv.c_out, 1, false);
	cv.weight = w.mem, cv.weight_off = (int64_t)w.off;
	cv.bias = tc->no_bias ? NULL : b.mem, cv.bias_off = (int64_t)b.off;
	tx = tensor(&x, tc->n, tc->cin, tc->h, tc->w);
	ty = tensor(&y, tc->n, ctot, ho, wo);
	if (tc->add_ctot) {
		dbuf_make(&a, (size_t)tc->n * tc->add_ctot * ho * wo, 2, false);
		ta = tensor(&a, tc->n, tc->add_ctot, ho, wo);
		wr.add = &ta;
		wr.add_c_off = tc->add_c_off;
		wr.add_scale = tc->add_scale;
	}
	const char *want_kernel = tc->vec_kernel && ops->pw_vec		 ? tc->vec_kernel
				  : tc->dw_kernel && ops->dw_rows && ops->dw_vec ? tc->dw_kernel
										 : NULL;
	if (want_kernel) {
		/* Which kernel the step takes, from a recording of it (nothing enqueued). */
		struct rxd_nas_rec rec = { 0 };

		nasops_rec_begin(ops, &rec);
		ck_assert_int_eq(nasops_rec_step(ops), 0);
		ck_assert_int_eq(nasops_conv(ops, &tx, &cv, &ty, &wr, NULL), 0);
		nasops_rec_end(ops);
		ck_assert_msg(rec.ready && rec.n == 1 &&
				      strcmp(nasops_rec_kernel(&rec, 0), want_kernel) == 0,
			      "%s (%s): took %s, not %s", what, how,
			      rec.n ? nasops_rec_kernel(&rec, 0) : "nothing", want_kernel);
		nasops_rec_free(&rec);
	}
	ck_assert_int_eq(nasops_conv(ops, &tx, &cv, &ty, &wr, &span), 0);
	got = dbuf_read(&y);
	want = malloc(y.len * sizeof(float));
	ck_assert(want);
	memcpy(want, y.host, y.len * sizeof(float));
	ref_conv(x.host + x.off, tc->n, tc->cin, tc->h, tc->w, &cv, w.host + w.off,
		 tc->no_bias ? NULL : b.host + b.off, want + y.off, ctot, ho, wo, &tc->wr);
	if (tc->add_ctot) {
		ref_add(want + y.off, tc->n, ctot, tc->wr.c_off, cv.c_out, ho * wo, a.host + a.off,
			tc->add_ctot, tc->add_c_off, tc->add_scale);
		dbuf_free(&a);
	}
	expect_equal(got, want, y.len, 0.0f, what, how);
	ck_assert(span.first && span.last);
	if (dev.profiling)
		ck_assert_uint_gt(nasops_span_ns(&span), 0);
	nasops_span_release(&span);
	free(got), free(want);
	dbuf_free(&x), dbuf_free(&y), dbuf_free(&w), dbuf_free(&b);
}

static void conv_case_all(const struct conv_case *tc)
{
	for (int i = 0; i < N_OPS; i++)
		conv_case_run(tc, all_ops[i], ops_names[i]);
}

#define CONV(KH, KW, SH, SW, PH, PW, DH, DW, G, COUT)                                      \
	{ .c_out = (COUT), .kh = (KH), .kw = (KW), .stride_h = (SH), .stride_w = (SW),      \
	  .pad_h = (PH), .pad_w = (PW), .dil_h = (DH), .dil_w = (DW), .groups = (G) }

static const struct rxd_nas_write put1 = { .c_off = 0, .accumulate = false, .scale = 1.0f };

START_TEST(test_depthwise)
{
	/* sep_conv_3x3/5x5's and dil_conv_3x3/5x5's depthwise convolutions, stride 1 and 2. */
	for (int k = 3; k <= 5; k += 2)
		for (int dil = 1; dil <= 2; dil++)
			for (int s = 1; s <= 2; s++) {
				int pad = dil == 1 ? k / 2 : (k == 3 ? 2 : 4);
				struct conv_case tc = {
					.n = 2, .cin = 5, .h = 9 + s, .w = 7 + k,
					.cv = CONV(k, k, s, s, pad, pad, dil, dil, 5, 5),
					.wr = { .c_off = s == 2 ? 3 : 0, .accumulate = dil == 2,
						.scale = dil == 2 ? 0.5f : 1.0f },
					.ctot = 11, .x_pad = (size_t)k, .y_pad = 2,
				};
				tc.cv.relu_in = (k + s) % 2 == 0 || dil == 2;
				conv_case_all(&tc);
			}
}
END_TEST

START_TEST(test_depthwise_vec)
{
	/* nas_dwrv's shapes: the four stride-1 windows with the padding that keeps the plane,
	 * widths of 8 and 12 (the row's ends inside and outside the float4s' reach), x at an
	 * offset of a whole float4; with ReLU, accumulation and an added tensor in turn.
	 * Where one of these fails (a width of 10, x at offset 3, padding 0) nas_dwr must take
	 * it instead. */
	static const char *const names[2][2] = { { "nas_dwrv3d1", "nas_dwrv3d2" },
						 { "nas_dwrv5d1", "nas_dwrv5d2" } };

	for (int k = 3; k <= 5; k += 2)
		for (int dil = 1; dil <= 2; dil++) {
			int pad = dil * (k / 2);
			struct conv_case tc = {
				.n = 2, .cin = 3, .h = 5 + k, .w = 8,
				.cv = CONV(k, k, 1, 1, pad, pad, dil, dil, 3, 3),
				.wr = { .c_off = 1, .accumulate = dil == 2, .scale = 0.5f },
				.ctot = 5, .x_pad = 4, .y_pad = 1, .no_bias = k == 5,
				.dw_kernel = names[k == 5][dil == 2],
			};
			char scalar[32];

			tc.cv.relu_in = k == 3 || dil == 2;
			conv_case_all(&tc);
			tc.w = 12, tc.h = 3;
			tc.add_ctot = 4, tc.add_c_off = 1, tc.add_scale = -0.25f;
			conv_case_all(&tc);
			snprintf(scalar, sizeof(scalar), "nas_dwr%ds1d%d", k, dil);
			tc.add_ctot = 0, tc.dw_kernel = scalar;
			tc.w = 10, tc.h = 5 + k;
			conv_case_all(&tc);
			tc.w = 8, tc.x_pad = 3;
			conv_case_all(&tc);
			tc.x_pad = 4, tc.cv.pad_h = tc.cv.pad_w = 0, tc.w = tc.h = 12;
			conv_case_all(&tc);
		}
}
END_TEST

START_TEST(test_depthwise_tiles)
{
	/* Planes of several work-group tiles with ragged edges, for the tiled depthwise kernel
	 * (ops_reg uses it, ops_direct never): 3x3, 5x5 and 7x7, stride 1 and 2, dilation 2,
	 * biased and not, into a slice. */
	const int h = small ? 19 : 37, w = small ? 21 : 35;

	for (int k = 3; k <= 7; k += 2)
		for (int dil = 1; dil <= (k == 7 ? 1 : 2); dil++)
			for (int s = 1; s <= 2; s++) {
				int pad = dil * (k / 2);
				struct conv_case tc = {
					.n = 2, .cin = 3, .h = h, .w = w,
					.cv = CONV(k, k, s, s, pad, pad, dil, dil, 3, 3),
					.wr = { .c_off = 1, .accumulate = s == 2, .scale = 0.25f },
					.ctot = 5, .x_pad = 3, .y_pad = 1, .no_bias = k == 5,
				};
				tc.cv.relu_in = s == 1;
				conv_case_all(&tc);
			}
}
END_TEST

/* A DWPW step through nasops_dwpw: the depthwise convolution dw of x (no bias unless
 * dw_bias) into mid, then the 1x1 pw (cin -> cout) into y's slice, against ref_conv twice.
 * The fused path must leave mid alone; the unfused one writes it. */
struct dwpw_case {
	int n, cin, h, w, k, stride, dil, cout, ctot, c_off;
	bool relu, dw_bias, pw_bias, accumulate, add;
};

static void dwpw_case_run(const struct dwpw_case *tc, struct rxd_nasops *ops, const char *how)
{
	int pad = tc->dil * (tc->k / 2);
	struct rxd_nas_conv dw = CONV(tc->k, tc->k, tc->stride, tc->stride, pad, pad, tc->dil,
				      tc->dil, tc->cin, tc->cin);
	struct rxd_nas_conv pw = CONV(1, 1, 1, 1, 0, 0, 1, 1, 1, tc->cout);
	int ho = nasops_out_dim(tc->h, tc->k, tc->stride, pad, tc->dil);
	int wo = nasops_out_dim(tc->w, tc->k, tc->stride, pad, tc->dil);
	struct rxd_nas_write wr = { .c_off = tc->c_off, .accumulate = tc->accumulate,
				    .scale = tc->accumulate ? 0.5f : 1.0f };
	const struct rxd_nas_write put = { .c_off = 0, .accumulate = false, .scale = 1.0f };
	size_t nmid = (size_t)tc->n * tc->cin * ho * wo;
	struct dbuf x, m, y, wd, wp, a = { 0 };
	struct rxd_nas_tensor tx, tm, ty, ta;
	struct rxd_nas_span span = { NULL, NULL };
	float *want, *mid, *got, *got_mid;
	char what[160];

	snprintf(what, sizeof(what), "dwpw %dx%d s%d d%d relu %d, x %dx%dx%dx%d -> %d of %d at %d",
		 tc->k, tc->k, tc->stride, tc->dil, tc->relu, tc->n, tc->cin, tc->h, tc->w,
		 tc->cout, tc->ctot, tc->c_off);
	dw.relu_in = tc->relu;
	dbuf_make(&x, (size_t)tc->n * tc->cin * tc->h * tc->w, 3, false);
	dbuf_make(&m, nmid, 2, false);
	dbuf_make(&y, (size_t)tc->n * tc->ctot * ho * wo, 1, !tc->accumulate);
	dbuf_make(&wd, (size_t)tc->cin * tc->k * tc->k + (size_t)tc->cin, 1, false);
	dbuf_make(&wp, (size_t)tc->cout * tc->cin + (size_t)tc->cout, 2, false);
	dw.weight = wd.mem, dw.weight_off = (int64_t)wd.off;
	dw.bias = tc->dw_bias ? wd.mem : NULL;
	dw.bias_off = (int64_t)(wd.off + (size_t)tc->cin * tc->k * tc->k);
	pw.weight = wp.mem, pw.weight_off = (int64_t)wp.off;
	pw.bias = tc->pw_bias ? wp.mem : NULL;
	pw.bias_off = (int64_t)(wp.off + (size_t)tc->cout * tc->cin);
	tx = tensor(&x, tc->n, tc->cin, tc->h, tc->w);
	tm = tensor(&m, tc->n, tc->cin, ho, wo);
	ty = tensor(&y, tc->n, tc->ctot, ho, wo);
	if (tc->add) {
		dbuf_make(&a, (size_t)tc->n * (tc->cout + 3) * ho * wo, 2, false);
		ta = tensor(&a, tc->n, tc->cout + 3, ho, wo);
		wr.add = &ta, wr.add_c_off = 2, wr.add_scale = -0.5f;
	}
	ck_assert_int_eq(nasops_dwpw(ops, &tx, &dw, &tm, &pw, &ty, &wr, &span), 0);
	got = dbuf_read(&y);
	got_mid = dbuf_read(&m);
	want = malloc(y.len * sizeof(float));
	mid = malloc(m.len * sizeof(float));
	ck_assert(want && mid);
	memcpy(want, y.host, y.len * sizeof(float));
	memcpy(mid, m.host, m.len * sizeof(float));
	ref_conv(x.host + x.off, tc->n, tc->cin, tc->h, tc->w, &dw, wd.host + wd.off,
		 tc->dw_bias ? wd.host + dw.bias_off : NULL, mid + m.off, tc->cin, ho, wo, &put);
	ref_conv(mid + m.off, tc->n, tc->cin, ho, wo, &pw, wp.host + wp.off,
		 tc->pw_bias ? wp.host + pw.bias_off : NULL, want + y.off, tc->ctot, ho, wo, &wr);
	if (tc->add)
		ref_add(want + y.off, tc->n, tc->ctot, tc->c_off, tc->cout, ho * wo, a.host + a.off,
			tc->cout + 3, 2, -0.5f);
	/* Sums of multiples of 1/4 by 1/4 of a few hundred terms: exact in any order. */
	expect_equal(got, want, y.len, 0.0f, what, how);
	if (ops->dwpw_fused)
		expect_equal(got_mid, m.host, m.len, 0.0f, "the fused step's mid, untouched", how);
	else
		expect_equal(got_mid, mid, m.len, 0.0f, "the unfused step's mid", how);
	ck_assert(span.first && span.last);
	nasops_span_release(&span);
	free(got), free(got_mid), free(want), free(mid);
	if (tc->add)
		dbuf_free(&a);
	dbuf_free(&x), dbuf_free(&m), dbuf_free(&y), dbuf_free(&wd), dbuf_free(&wp);
}

START_TEST(test_dwpw)
{
	/* SepConv's and DilConv's shapes (3x3 and 5x5, dilation 1 and 2, stride 1 and 2) on
	 * odd planes and channel counts: more than one K step of nas_pw (cin 19), one channel
	 * tile (cout 7, 37) and several (cout 70), with and without each bias, into a slice,
	 * overwriting and accumulating, a tensor added. */
	const int couts[3] = { 7, 37, 70 };
	int v = 0;

	for (int k = 3; k <= 5; k += 2)
		for (int dil = 1; dil <= 2; dil++)
			for (int s = 1; s <= 2; s++, v++) {
				int cout = couts[v % 3];
				struct dwpw_case tc = {
					.n = 3, .cin = v % 2 ? 19 : 6, .h = 9 + s, .w = 6 + k,
					.k = k, .stride = s, .dil = dil, .cout = cout,
					.ctot = cout + 3, .c_off = v % 4, .relu = v % 3 != 1,
					.dw_bias = v % 4 == 1, .pw_bias = v % 2 == 0,
					.accumulate = dil == 2, .add = v % 3 == 2,
				};
				if (small && cout == 70)
					tc.cout = 9, tc.ctot = 12;
				for (int i = 0; i < N_OPS; i++)
					dwpw_case_run(&tc, all_ops[i], ops_names[i]);
			}
}
END_TEST

START_TEST(test_grouped)
{
	/* Groups that are neither 1 nor depthwise: 6 -> 4 channels in 2 groups. */
	struct conv_case tc = { .n = 3, .cin = 6, .h = 5, .w = 7,
				.cv = CONV(3, 3, 1, 2, 1, 1, 1, 1, 2, 4),
				.wr = { .c_off = 1, .accumulate = true, .scale = -1.5f },
				.ctot = 7, .x_pad = 1 };
	conv_case_all(&tc);
}
END_TEST

START_TEST(test_dense_1x1)
{
	/* Odd channel counts and planes; in place (no ReLU) at an odd offset, and with ReLU
	 * (columns first), into slices, overwriting and accumulating, without a bias. */
	struct conv_case tc = { .n = 3, .cin = 13, .h = 7, .w = 5, .cv = CONV(1, 1, 1, 1, 0, 0, 1, 1, 1, 11),
				.wr = { .c_off = 2, .accumulate = false, .scale = 1.0f },
				.ctot = 17, .x_pad = 3, .y_pad = 5 };

	conv_case_all(&tc);
	tc.cv.relu_in = true;
	tc.wr.accumulate = true, tc.wr.scale = 0.25f;
	conv_case_all(&tc);
	tc.no_bias = true;
	conv_case_all(&tc);
	tc.cv.relu_in = false;
	conv_case_all(&tc);
	tc.wr.accumulate = false;
	conv_case_all(&tc);
}
END_TEST

START_TEST(test_dense_1x1_vec)
{
	/* nas_pwv's shapes: input channels and the plane multiples of 4, x, y and the
	 * weights at offsets of whole float4s; output channels not a multiple of the tile's,
	 * into a slice, with ReLU, accumulation, a tensor added and no bias in turn. Where
	 * one of these fails (weights at offset 3, a plane of 35, stride 2) nas_pws must
	 * take it instead. */
	struct conv_case tc = { .n = 3, .cin = 12, .h = 6, .w = 6,
				.cv = CONV(1, 1, 1, 1, 0, 0, 1, 1, 1, 11),
				.wr = { .c_off = 1, .accumulate = false, .scale = 1.0f },
				.ctot = 13, .x_pad = 4, .y_pad = 8, .w_aligned = true,
				.vec_kernel = "nas_pwv_n" };

	conv_case_all(&tc);
	/* nas_pwv's wide variant (16 channels a work-item: 11 and 20 fill one partly). */
	ops_pws.ps_wide = 0;
	tc.vec_kernel = "nas_pwv";
	conv_case_run(&tc, &ops_pws, "nas_pwv wide");
	tc.cv.c_out = 20, tc.ctot = 22;
	conv_case_run(&tc, &ops_pws, "nas_pwv wide");
	tc.cv.c_out = 11, tc.ctot = 13;
	ops_pws.ps_wide = UINT32_MAX;
	tc.vec_kernel = "nas_pwv_n";
	tc.cv.relu_in = true;
	tc.wr.accumulate = true, tc.wr.scale = -0.5f;
	conv_case_all(&tc);
	tc.add_ctot = 14, tc.add_c_off = 3, tc.add_scale = 0.75f, tc.no_bias = true;
	conv_case_all(&tc);
	tc.add_ctot = 0, tc.no_bias = false, tc.cin = 4, tc.cv.c_out = 20, tc.ctot = 21;
	conv_case_all(&tc);
	tc.w_aligned = false, tc.vec_kernel = "nas_pws_n";
	conv_case_all(&tc);
	tc.w_aligned = true, tc.w = 7, tc.h = 5;
	conv_case_all(&tc);
	tc.w = tc.h = 8, tc.cv.stride_h = tc.cv.stride_w = 2;
	conv_case_all(&tc);
}
END_TEST

START_TEST(test_dense_1x1_large)
{
	/* Large enough for a GEMM size class above the first and for whole aligned tiles:
	 * the register-blocked kernel's vector path, with offsets that keep it aligned. */
	struct conv_case tc = { .n = 2, .cin = 36, .h = 32, .w = 32,
				.cv = CONV(1, 1, 1, 1, 0, 0, 1, 1, 1, 144),
				.wr = { .c_off = 4, .accumulate = true, .scale = 1.0f },
				.ctot = 152, .x_pad = 8, .y_pad = 4 };

	if (small)
		return;
	conv_case_all(&tc);
	tc.cv.relu_in = true;
	tc.wr.accumulate = false;
	conv_case_all(&tc);
}
END_TEST

START_TEST(test_dense_kxk)
{
	/* The stems' 3x3 (stride 1, and stride 2 as NetworkImageNet's), conv_7x1_1x7's
	 * 1x7 (stride (1, 2), pad (0, 3)) and 7x1 (stride (2, 1), pad (3, 0)). */
	struct conv_case stem = { .n = 2, .cin = 3, .h = 11, .w = 9,
				  .cv = CONV(3, 3, 1, 1, 1, 1, 1, 1, 1, 8), .wr = put1,
				  .x_pad = 1, .y_pad = 3 };
	struct conv_case stem2 = { .n = 3, .cin = 3, .h = 13, .w = 12,
				   .cv = CONV(3, 3, 2, 2, 1, 1, 1, 1, 1, 7),
				   .wr = { .c_off = 2, .accumulate = false, .scale = 1.0f },
				   .ctot = 12 };
	struct conv_case k1x7 = { .n = 2, .cin = 6, .h = 9, .w = 10,
				  .cv = CONV(1, 7, 1, 2, 0, 3, 1, 1, 1, 6),
				  .wr = { .c_off = 0, .accumulate = true, .scale = 0.5f }, .ctot = 9 };
	struct conv_case k7x1 = { .n = 2, .cin = 6, .h = 10, .w = 9,
				  .cv = CONV(7, 1, 2, 1, 3, 0, 1, 1, 1, 6),
				  .wr = { .c_off = 3, .accumulate = false, .scale = 1.0f }, .ctot = 9,
				  .x_pad = 2 };

	/* A dense dilated one, dilation and padding different along each axis. */
	struct conv_case dil = { .n = 2, .cin = 4, .h = 9, .w = 8,
				 .cv = CONV(3, 3, 1, 2, 2, 1, 2, 1, 1, 5), .wr = put1 };

	conv_case_all(&stem);
	/* Columns made one image at a time (a scratch bound below one image's). */
	uint64_t scratch_max = ops_tiled.scratch_max_bytes;
	ops_tiled.scratch_max_bytes = 4;
	conv_case_run(&stem, &ops_tiled, "gemm-tiled, one image at a time");
	ops_tiled.scratch_max_bytes = scratch_max;
	conv_case_all(&dil);
	stem2.cv.relu_in = true;
	conv_case_all(&stem2);
	k1x7.cv.relu_in = true;
	conv_case_all(&k1x7);
	conv_case_all(&k7x1);
}
END_TEST

START_TEST(test_factorized_reduce)
{
	/* FactorizedReduce(C_in 6, C_out 8) of a 10 x 10 map: ReLU; conv_1 = 1x1 stride 2 on x
	 * into channels [0, 4); conv_2 = 1x1 stride 2 on x[:, :, 1:, 1:] into [4, 8); BN
	 * folded into each half's bias. The reference is written from that definition. */
	const int n = 3, cin = 6, h = 10, w = 10, half = 4, ho = 5, wo = 5;

	for (int i = 0; i < N_OPS; i++) {
		struct dbuf x, y, wt;
		struct rxd_nas_conv c1 = CONV(1, 1, 2, 2, 0, 0, 1, 1, 1, half), c2;
		struct rxd_nas_write w1 = { .c_off = 0, .scale = 1.0f };
		struct rxd_nas_write w2 = { .c_off = half, .scale = 1.0f };
		struct rxd_nas_tensor tx, ty;
		float *got, *want;

		dbuf_make(&x, (size_t)n * cin * h * w, 1, false);
		dbuf_make(&y, (size_t)n * 2 * half * ho * wo, 2, true);
		dbuf_make(&wt, 2 * (size_t)half * cin + 2 * half, 0, false);
		c1.relu_in = true;
		c1.weight = c1.bias = wt.mem;
		c1.bias_off = 2 * half * cin;
		c2 = c1;
		c2.in_shift = 1;
		c2.weight_off = half * cin;
		c2.bias_off = 2 * half * cin + half;
		tx = tensor(&x, n, cin, h, w);
		ty = tensor(&y, n, 2 * half, ho, wo);
		ck_assert_int_eq(nasops_conv(all_ops[i], &tx, &c1, &ty, &w1, NULL), 0);
		ck_assert_int_eq(nasops_conv(all_ops[i], &tx, &c2, &ty, &w2, NULL), 0);
		got = dbuf_read(&y);
		want = malloc(y.len * sizeof(float));
		ck_assert(want);
		memcpy(want, y.host, y.len * sizeof(float));
		for (int b = 0; b < n; b++)
			for (int co = 0; co < 2 * half; co++)
				for (int oh = 0; oh < ho; oh++)
					for (int ow = 0; ow < wo; ow++) {
						int s = co >= half; /* the second half reads one pixel on */
						double v = wt.host[2 * half * cin + co];
						for (int ci = 0; ci < cin; ci++)
							v += (double)fmaxf(x.host[x.off + (((size_t)b * cin + ci) * h + 2 * oh + s) * w + 2 * ow + s], 0.0f) *
							     wt.host[(size_t)co * cin + ci];
						want[y.off + (((size_t)b * 2 * half + co) * ho + oh) * wo + ow] = (float)v;
					}
		expect_equal(got, want, y.len, 0.0f, "FactorizedReduce", ops_names[i]);
		free(got), free(want);
		dbuf_free(&x), dbuf_free(&y), dbuf_free(&wt);
	}
}
END_TEST

/* ---- pooling ------------------------------------------------------------------------ */

/* A pool; a_ctot: a tensor of that many channels, read from a_c_off, added (wr0's
 * add_scale). */
static void pool_case_add(int kind, int n, int c, int h, int w, int k, int s, int pad,
			  const struct rxd_nas_write *wr0, int ctot, int a_ctot, int a_c_off,
			  struct rxd_nasops *ops, const char *how)
{
	struct rxd_nas_pool p = { .kind = kind, .kh = k, .kw = k, .stride_h = s, .stride_w = s,
				  .pad_h = pad, .pad_w = pad };
	int ho = (h + 2 * pad - k) / s + 1, wo = (w + 2 * pad - k) / s + 1;
	struct dbuf x, y, a = { 0 };
	struct rxd_nas_tensor tx, ty, ta;
	struct rxd_nas_write wrv = *wr0;
	const struct rxd_nas_write *wr = &wrv;
	float *got, *want;
	char what[96];

	snprintf(what, sizeof(what), "%s pool %dx%d s%d p%d of %dx%dx%dx%d",
		 kind == RXD_NAS_POOL_AVG ? "avg" : "max", k, k, s, pad, n, c, h, w);
	dbuf_make(&x, (size_t)n * c * h * w, 3, false);
	dbuf_make(&y, (size_t)n * ctot * ho * wo, 1, !wr->accumulate);
	tx = tensor(&x, n, c, h, w);
	ty = tensor(&y, n, ctot, ho, wo);
	if (a_ctot) {
		dbuf_make(&a, (size_t)n * a_ctot * ho * wo, 4, false);
		ta = tensor(&a, n, a_ctot, ho, wo);
		wrv.add = &ta;
		wrv.add_c_off = a_c_off;
	}
	ck_assert_int_eq(nasops_pool(ops, &tx, &p, &ty, wr, NULL), 0);
	got = dbuf_read(&y);
	want = malloc(y.len * sizeof(float));
	ck_assert(want);
	memcpy(want, y.host, y.len * sizeof(float));
	for (int b = 0; b < n; b++)
		for (int ch = 0; ch < c; ch++)
			for (int oh = 0; oh < ho; oh++)
				for (int ow = 0; ow < wo; ow++) {
					double sum = 0, best = -INFINITY;
					int count = 0;
					/* Walk the padded window; only cells inside the map count. */
					for (int i = oh * s; i < oh * s + k; i++)
						for (int j = ow * s; j < ow * s + k; j++) {
							int ih = i - pad, iw = j - pad;
							double v;
							if (ih < 0 || ih >= h || iw < 0 || iw >= w)
								continue;
							v = x.host[x.off + (((size_t)b * c + ch) * h + ih) * w + iw];
							sum += v;
							best = v > best ? v : best;
							count++;
						}
					ref_put(want + y.off, (((size_t)b * ctot + wr->c_off + ch) * ho + oh) * wo + ow,
						kind == RXD_NAS_POOL_AVG ? sum / count : best, wr);
				}
	if (a_ctot) {
		ref_add(want + y.off, n, ctot, wr->c_off, c, ho * wo, a.host + a.off, a_ctot,
			a_c_off, wr->add_scale);
		dbuf_free(&a);
	}
	expect_equal(got, want, y.len, kind == RXD_NAS_POOL_AVG ? 1e-6f : 0.0f, what, how);
	free(got), free(want);
	dbuf_free(&x), dbuf_free(&y);
}

static void pool_case_run(int kind, int n, int c, int h, int w, int k, int s, int pad,
			  const struct rxd_nas_write *wr, int ctot, struct rxd_nasops *ops,
			  const char *how)
{
	pool_case_add(kind, n, c, h, w, k, s, pad, wr, ctot, 0, 0, ops, how);
}

START_TEST(test_pool)
{
	const struct rxd_nas_write acc = { .c_off = 2, .accumulate = true, .scale = 0.75f };
	const struct rxd_nas_write put = { .c_off = 1, .accumulate = false, .scale = 1.0f };

	for (int i = 0; i < N_OPS; i++)
		for (int kind = 0; kind < 2; kind++)
			for (int s = 1; s <= 2; s++) {
				pool_case_run(kind, 2, 5, 9, 8, 3, s, 1, &put, 7, all_ops[i], ops_names[i]);
				pool_case_run(kind, 3, 4, 8, 7, 3, s, 1, &acc, 9, all_ops[i], ops_names[i]);
			}
	/* No padding, and a 2x2 window. */
	pool_case_run(RXD_NAS_POOL_AVG, 2, 3, 7, 7, 3, 2, 0, &put, 4, &ops_direct, "direct");
	pool_case_run(RXD_NAS_POOL_MAX, 2, 3, 6, 5, 2, 2, 1, &acc, 5, &ops_direct, "direct");
}
END_TEST

/* An identity edge added as a step writes its slice (wr->add): every path of a convolution
 * (direct, tiled depthwise, GEMM in place, GEMM through im2col, without a bias), pooling and
 * copies, overwriting and accumulating; what cannot add refuses. */
START_TEST(test_added)
{
	static const struct {
		struct rxd_nas_conv cv;
		bool relu, no_bias;
	} convs[] = {
		{ CONV(3, 3, 1, 1, 1, 1, 1, 1, 4, 4), true, false },
		{ CONV(5, 5, 2, 2, 4, 4, 2, 2, 4, 4), true, false },
		{ CONV(1, 1, 1, 1, 0, 0, 1, 1, 1, 4), false, false },
		{ CONV(1, 1, 1, 1, 0, 0, 1, 1, 1, 4), false, true },
		{ CONV(3, 3, 2, 2, 1, 1, 1, 1, 1, 4), true, false },
	};
	const struct rxd_nas_write acc = { .c_off = 2, .accumulate = true, .scale = 0.5f,
					   .add_scale = 0.25f };
	const struct rxd_nas_write put = { .c_off = 1, .accumulate = false, .scale = 1.0f,
					   .add_scale = 1.0f };

	for (size_t i = 0; i < sizeof(convs) / sizeof(convs[0]); i++)
		for (int a = 0; a < 2; a++) {
			struct conv_case tc = {
				.n = 3, .cin = 4, .h = 9, .w = 7, .cv = convs[i].cv,
				.wr = a ? acc : put, .ctot = 7, .x_pad = 1, .y_pad = 2,
				.no_bias = convs[i].no_bias, .add_ctot = 6, .add_c_off = a + 1,
				.add_scale = a ? 0.25f : 1.0f,
			};
			tc.cv.relu_in = convs[i].relu;
			conv_case_all(&tc);
		}
	for (int i = 0; i < N_OPS; i++)
		for (int kind = 0; kind < 2; kind++)
			for (int s = 1; s <= 2; s++) {
				pool_case_add(kind, 2, 5, 9, 8, 3, s, 1, &put, 7, 5, 0, all_ops[i],
					      ops_names[i]);
				pool_case_add(kind, 3, 4, 8, 7, 3, s, 1, &acc, 9, 6, 2, all_ops[i],
					      ops_names[i]);
			}
	{
		const int n = 2, c = 3, h = 5, w = 6, ctot = 5;
		struct dbuf x, y, ad;
		struct rxd_nas_tensor tx, ty, ta, tg;
		struct rxd_nas_write wr = put;
		float *got, *want;

		dbuf_make(&x, (size_t)n * c * h * w, 2, false);
		dbuf_make(&y, (size_t)n * ctot * h * w, 3, true);
		dbuf_make(&ad, (size_t)n * 4 * h * w, 1, false);
		tx = tensor(&x, n, c, h, w);
		ty = tensor(&y, n, ctot, h, w);
		ta = tensor(&ad, n, 4, h, w);
		wr.add = &ta;
		wr.add_c_off = 1;
		ck_assert_int_eq(nasops_copy(&ops_direct, &tx, true, &ty, &wr, NULL), 0);
		want = malloc(y.len * sizeof(float));
		ck_assert(want);
		memcpy(want, y.host, y.len * sizeof(float));
		for (int b = 0; b < n; b++)
			for (int i = 0; i < c * h * w; i++)
				want[y.off + ((size_t)b * ctot + 1) * h * w + i] =
					fmaxf(x.host[x.off + (size_t)b * c * h * w + i], 0.0f);
		ref_add(want + y.off, n, ctot, 1, c, h * w, ad.host + ad.off, 4, 1, 1.0f);
		got = dbuf_read(&y);
		expect_equal(got, want, y.len, 0.0f, "copy with an added tensor", "direct");
		free(got), free(want);
		/* Refused: past the added tensor's channels, another size, overlapping y, and
		 * the kinds that never add. */
		wr.add_c_off = 2;
		ck_assert_int_eq(nasops_copy(&ops_direct, &tx, false, &ty, &wr, NULL), -EINVAL);
		wr.add_c_off = 0;
		ta.w = w - 1;
		ck_assert_int_eq(nasops_copy(&ops_direct, &tx, false, &ty, &wr, NULL), -EINVAL);
		ta = ty;
		ck_assert_int_eq(nasops_copy(&ops_direct, &tx, false, &ty, &wr, NULL), -EINVAL);
		ta = tensor(&ad, n, 4, h, w);
		ck_assert_int_eq(nasops_zero(&ops_direct, c, &ty, &wr, NULL), -EINVAL);
		tg = tensor(&ad, n, 4, 1, 1);
		ck_assert_int_eq(nasops_gap(&ops_direct, &tx, &tg, &wr, NULL), -EINVAL);
		dbuf_free(&x), dbuf_free(&y), dbuf_free(&ad);
	}
}
END_TEST

/* ---- copy, zero, global average pooling, linear ------------------------------------- */

START_TEST(test_copy_zero)
{
	const int n = 3, c = 5, h = 7, w = 3, ctot = 9;
	const struct rxd_nas_write cases[] = {
		{ .c_off = 0, .accumulate = false, .scale = 1.0f },
		{ .c_off = 4, .accumulate = true, .scale = 1.0f },
		{ .c_off = 2, .accumulate = true, .scale = -0.5f },
		{ .c_off = 3, .accumulate = false, .scale = 2.0f },
	};

	for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++)
		for (int relu = 0; relu < 2; relu++) {
			const struct rxd_nas_write *wr = &cases[ci];
			struct dbuf x, y;
			struct rxd_nas_tensor tx, ty;
			float *got, *want;

			dbuf_make(&x, (size_t)n * c * h * w, 2, false);
			dbuf_make(&y, (size_t)n * ctot * h * w, 3, !wr->accumulate);
			tx = tensor(&x, n, c, h, w);
			ty = tensor(&y, n, ctot, h, w);
			want = malloc(y.len * sizeof(float));
			ck_assert(want);
			memcpy(want, y.host, y.len * sizeof(float));
			if (relu == 0 || wr->accumulate) {
				ck_assert_int_eq(nasops_copy(&ops_direct, &tx, relu, &ty, wr, NULL), 0);
				for (size_t i = 0; i < (size_t)n * c * h * w; i++) {
					size_t b = i / ((size_t)c * h * w), rest = i % ((size_t)c * h * w);
					float v = x.host[x.off + i];
					ref_put(want + y.off, (b * ctot + (size_t)wr->c_off) * h * w + rest,
						relu ? fmaxf(v, 0.0f) : v, wr);
				}
			} else {
				/* Zeros: accumulating ones leave y alone ('none' in a sum). */
				ck_assert_int_eq(nasops_zero(&ops_direct, c, &ty, wr, NULL), 0);
				for (int b = 0; b < n; b++)
					for (size_t i = 0; i < (size_t)c * h * w; i++)
						want[y.off + ((size_t)b * ctot + wr->c_off) * h * w + i] = 0.0f;
			}
			got = dbuf_read(&y);
			expect_equal(got, want, y.len, 0.0f, relu && !wr->accumulate ? "zero" : "copy",
				     "direct");
			/* Zero with accumulate: nothing at all happens. */
			if (wr->accumulate) {
				struct rxd_nas_span span = { NULL, NULL };
				ck_assert_int_eq(nasops_zero(&ops_direct, c, &ty, wr, &span), 0);
				ck_assert(span.first == NULL && span.last == NULL);
			}
			free(got), free(want);
			dbuf_free(&x), dbuf_free(&y);
		}
}
END_TEST

START_TEST(test_gap)
{
	/* Planes smaller than, equal to and larger than a work-group; 7x7 as ImageNet's. */
	const int shapes[][2] = { { 1, 1 }, { 5, 3 }, { 8, 8 }, { 7, 7 }, { 23, 19 } };
	const struct rxd_nas_write wr[2] = { { .c_off = 1, .accumulate = false, .scale = 1.0f },
					     { .c_off = 0, .accumulate = true, .scale = 0.5f } };

	for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++)
		for (int a = 0; a < 2; a++) {
			const int n = 3, c = 7, h = shapes[si][0], w = shapes[si][1], ctot = 9;
			struct dbuf x, y;
			struct rxd_nas_tensor tx, ty;
			float *got, *want;

			dbuf_make(&x, (size_t)n * c * h * w, 1, false);
			dbuf_make(&y, (size_t)n * ctot, 2, !wr[a].accumulate);
			tx = tensor(&x, n, c, h, w);
			ty = tensor(&y, n, ctot, 1, 1);
			ck_assert_int_eq(nasops_gap(&ops_tiled, &tx, &ty, &wr[a], NULL), 0);
			got = dbuf_read(&y);
			want = malloc(y.len * sizeof(float));
			ck_assert(want);
			memcpy(want, y.host, y.len * sizeof(float));
			for (int b = 0; b < n; b++)
				for (int ch = 0; ch < c; ch++) {
					double s = 0;
					for (int i = 0; i < h * w; i++)
						s += x.host[x.off + ((size_t)b * c + ch) * h * w + i];
					ref_put(want + y.off, (size_t)b * ctot + wr[a].c_off + ch,
						s / (h * w), &wr[a]);
				}
			expect_equal(got, want, y.len, 1e-6f, "gap", "");
			free(got), free(want);
			dbuf_free(&x), dbuf_free(&y);
		}
}
END_TEST

START_TEST(test_linear)
{
	/* After global pooling (x n x 37 x 1 x 1) and on a map (5 x 2 x 3 = 30 features). */
	const int xs[][3] = { { 37, 1, 1 }, { 5, 2, 3 } };
	const int n = 3, out = 10;

	for (int i = 0; i < N_OPS; i++)
		for (size_t si = 0; si < 2; si++)
			for (int a = 0; a < 2; a++) {
				const int c = xs[si][0], h = xs[si][1], w = xs[si][2], in = c * h * w;
				const int ctot = a ? 13 : out;
				struct rxd_nas_write wr = { .c_off = a ? 2 : 0, .accumulate = a,
							    .scale = a ? 0.5f : 1.0f };
				struct dbuf x, y, wt;
				struct rxd_nas_tensor tx, ty;
				struct rxd_nas_linear l = { .out = out };
				float *got, *want;

				dbuf_make(&x, (size_t)n * in, 3, false);
				dbuf_make(&y, (size_t)n * ctot, 1, !a);
				dbuf_make(&wt, (size_t)out * in + out, 2, false);
				l.weight = wt.mem, l.weight_off = (int64_t)wt.off;
				l.bias = si ? wt.mem : NULL;
				l.bias_off = (int64_t)(wt.off + (size_t)out * in);
				tx = tensor(&x, n, c, h, w);
				ty = tensor(&y, n, ctot, 1, 1);
				ck_assert_int_eq(nasops_linear(all_ops[i], &tx, &l, &ty, &wr, NULL), 0);
				got = dbuf_read(&y);
				want = malloc(y.len * sizeof(float));
				ck_assert(want);
				memcpy(want, y.host, y.len * sizeof(float));
				for (int b = 0; b < n; b++)
					for (int o = 0; o < out; o++) {
						double s = l.bias ? wt.host[l.bias_off + o] : 0.0;
						for (int k = 0; k < in; k++)
							s += (double)x.host[x.off + (size_t)b * in + k] *
							     wt.host[wt.off + (size_t)o * in + k];
						ref_put(want + y.off, (size_t)b * ctot + wr.c_off + o, s, &wr);
					}
				expect_equal(got, want, y.len, 0.0f, "linear", ops_names[i]);
				free(got), free(want);
				dbuf_free(&x), dbuf_free(&y), dbuf_free(&wt);
			}
}
END_TEST

/* ---- shapes that must be refused ---------------------------------------------------- */

START_TEST(test_refused)
{
	struct dbuf x, y, wt, one;
	struct rxd_nas_tensor tx, ty;
	struct rxd_nas_conv cv = CONV(1, 1, 2, 2, 0, 0, 1, 1, 1, 4);
	struct rxd_nas_pool p = { .kind = RXD_NAS_POOL_MAX, .kh = 3, .kw = 3, .stride_h = 1,
				  .stride_w = 1, .pad_h = 1, .pad_w = 1 };
	struct rxd_nas_write wr = { .c_off = 0, .scale = 1.0f };

	dbuf_make(&x, 2 * 4 * 9 * 9, 0, false);
	dbuf_make(&y, 2 * 4 * 5 * 5, 0, false);
	dbuf_make(&wt, 16, 0, false);
	cv.weight = wt.mem;
	tx = tensor(&x, 2, 4, 9, 9);
	ty = tensor(&y, 2, 4, 5, 5);
	ck_assert_int_eq(nasops_conv(&ops_tiled, &tx, &cv, &ty, &wr, NULL), 0);
	/* FactorizedReduce's shifted half of an odd map is smaller (4 x 4, not 5 x 5). */
	cv.in_shift = 1;
	ck_assert_int_eq(nasops_conv(&ops_tiled, &tx, &cv, &ty, &wr, NULL), -EINVAL);
	cv.in_shift = 2;
	ck_assert_int_eq(nasops_conv(&ops_tiled, &tx, &cv, &ty, &wr, NULL), -EINVAL);
	cv.in_shift = 0;
	/* The slice past the tensor's channels; a tensor past its buffer; weights short. */
	wr.c_off = 1;
	ck_assert_int_eq(nasops_conv(&ops_tiled, &tx, &cv, &ty, &wr, NULL), -EINVAL);
	wr.c_off = 0;
	ty.off = 6; /* dbuf_make leaves 5 floats after the tensor */
	ck_assert_int_eq(nasops_conv(&ops_tiled, &tx, &cv, &ty, &wr, NULL), -EINVAL);
	ty.off = 0;
	cv.weight_off = 6;
	ck_assert_int_eq(nasops_conv(&ops_tiled, &tx, &cv, &ty, &wr, NULL), -EINVAL);
	cv.weight_off = 0;
	cv.groups = 3; /* 4 channels do not split in 3 groups */
	ck_assert_int_eq(nasops_conv(&ops_tiled, &tx, &cv, &ty, &wr, NULL), -EINVAL);
	cv.groups = 1;
	cv.stride_h = 0;
	ck_assert_int_eq(nasops_conv(&ops_tiled, &tx, &cv, &ty, &wr, NULL), -EINVAL);
	cv.stride_h = 2;
	/* Input and output in one buffer: apart, and overlapping. */
	dbuf_make(&one, 2 * 4 * 9 * 9 + 2 * 4 * 5 * 5, 0, false);
	tx.mem = ty.mem = one.mem;
	ty.off = 2 * 4 * 9 * 9;
	ck_assert_int_eq(nasops_conv(&ops_tiled, &tx, &cv, &ty, &wr, NULL), 0);
	ty.off -= 1;
	ck_assert_int_eq(nasops_conv(&ops_tiled, &tx, &cv, &ty, &wr, NULL), -EINVAL);
	tx.mem = x.mem, ty.mem = y.mem;
	ty.off = 0;
	/* Past int indexing. */
	tx.n = 1 << 24;
	ck_assert_int_eq(nasops_conv(&ops_tiled, &tx, &cv, &ty, &wr, NULL), -E2BIG);
	tx.n = 2;
	/* A pool whose output is not y's shape; padding past half the window. */
	ck_assert_int_eq(nasops_pool(&ops_tiled, &tx, &p, &ty, &wr, NULL), -EINVAL);
	p.pad_h = p.pad_w = 2, p.stride_h = p.stride_w = 3;
	ty.h = ty.w = 4;
	ck_assert_int_eq(nasops_pool(&ops_tiled, &tx, &p, &ty, &wr, NULL), -EINVAL);
	/* Copy between different planes; GAP and linear into a map. */
	ty.h = ty.w = 5;
	ck_assert_int_eq(nasops_copy(&ops_tiled, &tx, false, &ty, &wr, NULL), -EINVAL);
	ck_assert_int_eq(nasops_gap(&ops_tiled, &tx, &ty, &wr, NULL), -EINVAL);
	ck_assert_int_eq(nasops_zero(&ops_tiled, 5, &ty, &wr, NULL), -EINVAL);
	ck_assert_int_eq(nasops_out_dim(2, 5, 1, 1, 1), -1);
	ck_assert_int_eq(nasops_out_dim(32, 3, 2, 2, 2), 16);
	clFinish(dev.queue);
	dbuf_free(&x), dbuf_free(&y), dbuf_free(&wt), dbuf_free(&one);
}
END_TEST

/* An engine of one kernel family for every size class (the trans_a pairs nasops uses). */
static int engine_make(struct rxd_gemm_engine *eng, const struct rxd_gemm_config *cfg)
{
	memset(eng, 0, sizeof(*eng));
	eng->dev = &dev;
	for (int ta = 0; ta < 2; ta++) {
		int v = gemm_engine_add(eng, ta, false, cfg);
		if (v < 0)
			return v;
		for (int cl = 0; cl < RXD_GEMM_CLASSES; cl++)
			eng->choice[ta][0][cl] = v;
	}
	return 0;
}

int main(void)
{
	const struct rxd_gemm_config tiled = { .kernel = RXD_GEMM_TILED, .tsm = 16, .tsn = 16,
					       .tsk = 16, .wptm = 4, .wptn = 4 };
	const struct rxd_gemm_config reg = { RXD_GEMM_REG, 32, 32, 16, 8, 8, 4, 4, 0, 0, 0 };
	const char *sel = getenv("RXGEMM_TEST_DEVICE");
	Suite *s = suite_create("nasops");
	TCase *tc = tcase_create("steps");
	SRunner *sr;
	int failed;

	small = getenv("RXGEMM_TEST_SMALL") && atoi(getenv("RXGEMM_TEST_SMALL"));
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
	/* The old 1x1 and DWPW paths in the first three, nas_pw in the fourth and, with another
	 * register tile and no engine, the fifth, nas_pws in the last two (each self-tested at
	 * its start-up), whichever the device would pick. */
	unsetenv("RXGEMMD_NAS_PW_TILE");
	unsetenv("RXGEMMD_NAS_PWS_TILE");
	setenv("RXGEMMD_NAS_KERNELS", "old", 1);
	if (nasops_init(&ops_direct, &dev, NULL) < 0 || nasops_init(&ops_tiled, &dev, &eng_tiled) < 0 ||
	    nasops_init(&ops_reg, &dev, &eng_reg) < 0 ||
	    setenv("RXGEMMD_NAS_KERNELS", "new", 1) < 0 ||
	    nasops_init(&ops_pw, &dev, &eng_tiled) < 0 ||
	    setenv("RXGEMMD_NAS_PW_TILE", "8x2", 1) < 0 || nasops_init(&ops_pw82, &dev, NULL) < 0 ||
	    unsetenv("RXGEMMD_NAS_PW_TILE") < 0 || setenv("RXGEMMD_NAS_KERNELS", "pwv,cvs", 1) < 0 ||
	    nasops_init(&ops_pws, &dev, &eng_reg) < 0 ||
	    setenv("RXGEMMD_NAS_PWS_TILE", "8x8", 1) < 0 ||
	    setenv("RXGEMMD_NAS_KERNELS", "pws,cvs", 1) < 0 ||
	    nasops_init(&ops_pws88, &dev, NULL) < 0) {
		fprintf(stderr, "the NAS kernels do not build or pass on %s\n", dev.description);
		return EXIT_FAILURE;
	}
	/* Both depthwise kernels on every device, whichever the device would pick. */
	ops_direct.dw_rows = ops_direct.dw_tiled = false;
	ops_reg.dw_rows = false;
	ops_reg.dw_tiled = true;
	ops_tiled.dw_rows = ops_pw.dw_rows = ops_pw82.dw_rows = true;
	ops_pws.dw_rows = ops_pws88.dw_rows = true;
	/* The streamed kernels' narrow variants in the sixth, their wide ones in the last
	 * (test_dense_1x1_vec takes nas_pwv both ways). */
	ops_pws.ps_wide = UINT32_MAX;
	ops_pws88.ps_wide = 0;
	if (ops_tiled.pw_direct || ops_tiled.dwpw_fused) {
		fprintf(stderr, "RXGEMMD_NAS_KERNELS=old left nas_pw in use\n");
		return EXIT_FAILURE;
	}
	if (!ops_pw.pw_direct || !ops_pw.dwpw_fused || !ops_pw82.pw_direct || ops_pw82.pw_rp != 8) {
		fprintf(stderr, "nas_pw is not in use on %s\n", dev.description);
		return EXIT_FAILURE;
	}
	if (!ops_pws.pw_stream || !ops_pws.pw_vec || ops_pws.pw_direct || ops_pws.dwpw_fused ||
	    !ops_pws88.pw_stream || ops_pws88.pw_vec || ops_pws88.ps_c != 8 ||
	    ops_tiled.pw_stream ||
	    !ops_pws.conv_stream || !ops_pws88.conv_stream) {
		fprintf(stderr, "nas_pws is not in use as asked on %s\n", dev.description);
		return EXIT_FAILURE;
	}
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_depthwise);
	tcase_add_test(tc, test_depthwise_vec);
	tcase_add_test(tc, test_depthwise_tiles);
	tcase_add_test(tc, test_dwpw);
	tcase_add_test(tc, test_grouped);
	tcase_add_test(tc, test_dense_1x1);
	tcase_add_test(tc, test_dense_1x1_vec);
	tcase_add_test(tc, test_dense_1x1_large);
	tcase_add_test(tc, test_dense_kxk);
	tcase_add_test(tc, test_factorized_reduce);
	tcase_add_test(tc, test_pool);
	tcase_add_test(tc, test_copy_zero);
	tcase_add_test(tc, test_added);
	tcase_add_test(tc, test_gap);
	tcase_add_test(tc, test_linear);
	tcase_add_test(tc, test_refused);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	/* The OpenCL runtime's threads do not survive fork(): run the tests in-process. */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	nasops_fini(&ops_pws88), nasops_fini(&ops_pws);
	nasops_fini(&ops_pw82), nasops_fini(&ops_pw), nasops_fini(&ops_reg), nasops_fini(&ops_tiled), nasops_fini(&ops_direct);
	gemm_fini(&eng_reg), gemm_fini(&eng_tiled);
	device_close(&dev);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

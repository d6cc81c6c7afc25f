/* nasops.c: the step kinds of a NAS network on the device (kernels/nas.cl).
 *
 * The network executor (nasplan.c, nasjob.c) lowers a genotype into steps over NCHW
 * tensors; each function here checks one step's shapes, then enqueues its kernels on the
 * device worker's in-order queue without waiting. Which kernels run a convolution
 * (nasops_conv) depends on the device (RXGEMMD_NAS_KERNELS and RXGEMMD_NAS_DEPTHWISE,
 * rxgemmd(8); the choices and their measurements are at nasops_kernels_env and
 * nasops_init):
 * - On GPUs a dense 1x1 convolution is one launch of nas_pwv (float4 loads, where they
 *   are aligned) or nas_pws and any other dense one of nas_cvs (ReLU, stride and shift on
 *   their reads, bias, added tensor and scale in their writes: no columns, no bias pass),
 *   each wide or narrow by the launch's size (nasops_stream_wide), except where their one
 *   long loop would run in a launch too small to hide it (nasops_stream_short).
 * - Otherwise dense convolutions go through the GEMM engine: a 1x1 convolution of one
 *   image is W[cout x cin] X[cin x hw], which in the engine's column-major terms is Y^T
 *   (hw x cout) = X^T (hw x cin) W^T (cin x cout), all three read in place from their NCHW
 *   buffers, batched over the images with the weights shared (stride 0). Other dense
 *   convolutions (kxk, strided, ReLU on the input, the shifted read of FactorizedReduce)
 *   first lay their input out as columns (im2col) in a scratch buffer, a bounded number
 *   of images at a time. The bias (BN folded) is written into the output slice first, so
 *   that the GEMM adds scale * W x with beta = 1.
 * - Depthwise convolutions of the search space's eight windows run through nas_dwr (one
 *   kernel per window, rows of outputs in registers; nas_dwrv, its rows read as float4s,
 *   at stride 1 where they are aligned: nasops_dwrv_fits), others through nas_dwconv's
 *   tiles on devices with local memory of their own, else the direct kernel, which also
 *   takes other grouped convolutions and everything when there is no engine.
 * - With RXGEMMD_NAS_KERNELS=new (slower so far, so the default nowhere) a dense 1x1 is
 *   one launch of nas_pw, a tiled kernel through local memory, and a depthwise
 *   convolution followed by a 1x1 (nasops_dwpw) one nas_pw launch that makes the
 *   depthwise output on the fly.
 *
 * Work-group sizes come from each kernel's device queries (its work-group limit and
 * preferred multiple), never from device names. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

static const char *const nasops_kernel_names[RXD_NAS_KERNELS] = {
	[RXD_NAS_K_CONV] = "nas_conv",     [RXD_NAS_K_IM2COL] = "nas_im2col",
	[RXD_NAS_K_BIAS] = "nas_bias",     [RXD_NAS_K_POOL] = "nas_pool",
	[RXD_NAS_K_COPY] = "nas_copy",     [RXD_NAS_K_ZERO] = "nas_zero",
	[RXD_NAS_K_GAP] = "nas_gap",       [RXD_NAS_K_LINEAR] = "nas_linear",
	[RXD_NAS_K_DWCONV] = "nas_dwconv", [RXD_NAS_K_PW] = "nas_pw",
	[RXD_NAS_K_PWS] = "nas_pws",          [RXD_NAS_K_CVS] = "nas_cvs",
	[RXD_NAS_K_PWV] = "nas_pwv",          [RXD_NAS_K_PWS_N] = "nas_pws_n",
	[RXD_NAS_K_CVS_N] = "nas_cvs_n",      [RXD_NAS_K_PWV_N] = "nas_pwv_n",
	[RXD_NAS_K_DWR] = "nas_dwr3s1d1",     [RXD_NAS_K_DWR + 1] = "nas_dwr3s1d2",
	[RXD_NAS_K_DWR + 2] = "nas_dwr3s2d1", [RXD_NAS_K_DWR + 3] = "nas_dwr3s2d2",
	[RXD_NAS_K_DWR + 4] = "nas_dwr5s1d1", [RXD_NAS_K_DWR + 5] = "nas_dwr5s1d2",
	[RXD_NAS_K_DWR + 6] = "nas_dwr5s2d1", [RXD_NAS_K_DWR + 7] = "nas_dwr5s2d2",
	[RXD_NAS_K_DWRV] = "nas_dwrv3d1",     [RXD_NAS_K_DWRV + 1] = "nas_dwrv3d2",
	[RXD_NAS_K_DWRV + 2] = "nas_dwrv5d1", [RXD_NAS_K_DWRV + 3] = "nas_dwrv5d2",
};

/* Columns are made for at most this many bytes of images at a time (one image's may be
 * more): enough to give the GEMM a batch, little next to a network's activations. */
#define NASOPS_SCRATCH_MAX (64ull << 20)

/* ---- checking shapes ---------------------------------------------------------------- */

int32_t nasops_out_dim(int32_t in, int32_t k, int32_t stride, int32_t pad, int32_t dil)
{
	int64_t span = (int64_t)in + 2 * (int64_t)pad - (int64_t)dil * ((int64_t)k - 1) - 1;

	if (in < 1 || k < 1 || stride < 1 || pad < 0 || dil < 1 || span < 0)
		return -1;
	return (int32_t)(span / stride + 1);
}

/* elems floats from off must lie inside mem; the kernels index from off with an int. */
int nasops_check_range(cl_mem mem, int64_t off, int64_t elems)
{
	size_t bytes = 0;

	if (!mem || off < 0 || elems < 1)
		return -EINVAL;
	if (elems > INT_MAX || off > INT64_MAX / 8)
		return -E2BIG;
	if (clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof(bytes), &bytes, NULL) != CL_SUCCESS)
		return -EINVAL;
	if ((uint64_t)(off + elems) * sizeof(float) > bytes)
		return -EINVAL;
	return 0;
}

int nasops_check_tensor(const struct rxd_nas_tensor *t)
{
	int64_t elems;

	if (t->n < 1 || t->c < 1 || t->h < 1 || t->w < 1)
		return -EINVAL;
	if (__builtin_mul_overflow((int64_t)t->n * t->c, (int64_t)t->h * t->w, &elems))
		return -E2BIG;
	return nasops_check_range(t->mem, t->off, elems);
}

int64_t nasops_elems(const struct rxd_nas_tensor *t)
{
	return (int64_t)t->n * t->c * t->h * t->w; /* checked by nasops_check_tensor */
}

/* x (may be NULL) and y are valid tensors of the same batch that do not overlap (no
 * kernel here works in place: its work-items would read what others wrote), and y has
 * room for c channels at wr->c_off. */
static int nasops_check_io(const struct rxd_nas_tensor *x, const struct rxd_nas_tensor *y,
			   int32_t c, const struct rxd_nas_write *wr)
{
	int ret;

	if (x && (ret = nasops_check_tensor(x)) < 0)
		return ret;
	if ((ret = nasops_check_tensor(y)) < 0)
		return ret;
	if ((x && x->n != y->n) || c < 1 || wr->c_off < 0 || wr->c_off > y->c - c)
		return -EINVAL;
	if (x && x->mem == y->mem && x->off < y->off + nasops_elems(y) &&
	    y->off < x->off + nasops_elems(x))
		return -EINVAL;
	if (wr->add) {
		const struct rxd_nas_tensor *a = wr->add;

		if ((ret = nasops_check_tensor(a)) < 0)
			return ret;
		if (a->n != y->n || a->h != y->h || a->w != y->w || wr->add_c_off < 0 ||
		    wr->add_c_off > a->c - c)
			return -EINVAL;
		if (a->mem == y->mem && a->off < y->off + nasops_elems(y) &&
		    y->off < a->off + nasops_elems(a))
			return -EINVAL;
	}
	return 0;
}

static cl_kernel nasops_kernel_cur(const struct rxd_nasops *ops, int k);

/* The six ADD_ARGS of kernel k (kernels/nas.cl) from index first: wr's added tensor, or
 * none (then y's buffer stands in, never read). */
static int nasops_add_args(struct rxd_nasops *ops, int k, cl_uint first,
			   const struct rxd_nas_tensor *y, const struct rxd_nas_write *wr)
{
	const struct rxd_nas_tensor *a = wr->add;
	cl_ulong a_off = a ? (cl_ulong)a->off : 0;
	cl_int a_ctot = a ? a->c : 0, a_c_off = a ? wr->add_c_off : 0, has_add = a != NULL;
	float add_scale = a ? wr->add_scale : 0.0f;
	cl_kernel kk = nasops_kernel_cur(ops, k);
	cl_int e;

	e = clSetKernelArg(kk, first, sizeof(cl_mem), a ? &a->mem : &y->mem);
	if (e == CL_SUCCESS)
		e = clSetKernelArg(kk, first + 1, sizeof(cl_ulong), &a_off);
	if (e == CL_SUCCESS)
		e = clSetKernelArg(kk, first + 2, sizeof(cl_int), &a_ctot);
	if (e == CL_SUCCESS)
		e = clSetKernelArg(kk, first + 3, sizeof(cl_int), &a_c_off);
	if (e == CL_SUCCESS)
		e = clSetKernelArg(kk, first + 4, sizeof(cl_int), &has_add);
	if (e == CL_SUCCESS)
		e = clSetKernelArg(kk, first + 5, sizeof(float), &add_scale);
	if (e != CL_SUCCESS) {
		log_msg(LOG_ERR, "%s: the added tensor's arguments: %s", nasops_kernel_names[k],
			device_strerror(e));
		return -EIO;
	}
	return 0;
}

/* ---- launching ---------------------------------------------------------------------- */

void nasops_span_add(struct rxd_nas_span *span, cl_event ev)
{
	if (!span || !ev)
		return;
	if (!span->first) {
		clRetainEvent(ev);
		span->first = ev;
	}
	if (span->last)
		clReleaseEvent(span->last);
	span->last = ev;
}

uint64_t nasops_span_ns(const struct rxd_nas_span *s)
{
	cl_ulong start = 0, end = 0;

	if (!s->first || !s->last ||
	    clGetEventProfilingInfo(s->first, CL_PROFILING_COMMAND_START, sizeof(start), &start,
				    NULL) != CL_SUCCESS ||
	    clGetEventProfilingInfo(s->last, CL_PROFILING_COMMAND_END, sizeof(end), &end, NULL) !=
		    CL_SUCCESS ||
	    end < start)
		return 0;
	return end - start;
}

void nasops_span_release(struct rxd_nas_span *s)
{
	if (s->first)
		clReleaseEvent(s->first);
	if (s->last)
		clReleaseEvent(s->last);
	s->first = s->last = NULL;
}

/* ---- recording: arguments set once, launches replayed ---------------------------------- */

/* While ops->rec is set, the step functions enqueue nothing: each nas.cl launch gets a
 * kernel object of its own whose arguments are set now, and each GEMM is noted with its
 * operands; nasops_rec_replay then only enqueues. */
struct rxd_nas_launch {
	cl_kernel kernel;            /* its own, arguments set; NULL: a GEMM */
	int k;                       /* RXD_NAS_K_*, for its name */
	size_t global[3], local[3];
	int variant;                 /* a GEMM: the engine's variant, g and the operands */
	struct rxd_gemm g;
	cl_mem a, b, c;
	int64_t a_off, b_off, c_off;
};

/* The kernel whose arguments the step being made sets: a fresh one while recording (the
 * previous one of k, never launched, is dropped), else the shared one. */
static cl_kernel nasops_kernel_new(struct rxd_nasops *ops, int k)
{
	struct rxd_nas_rec *rec = ops->rec;
	cl_int e;

	if (!rec)
		return ops->kernels[k];
	if (rec->cur[k])
		clReleaseKernel(rec->cur[k]);
	rec->cur[k] = clCreateKernel(ops->program, nasops_kernel_names[k], &e);
	if (!rec->cur[k]) {
		/* The recording is given up; the shared kernel takes the arguments meanwhile. */
		log_msg(LOG_WARNING, "nas.cl: clCreateKernel(%s): %s", nasops_kernel_names[k],
			device_strerror(e));
		rec->failed = true;
		return ops->kernels[k];
	}
	return rec->cur[k];
}

/* The kernel nasops_kernel_new gave last for k. */
static cl_kernel nasops_kernel_cur(const struct rxd_nasops *ops, int k)
{
	return ops->rec && ops->rec->cur[k] ? ops->rec->cur[k] : ops->kernels[k];
}

static struct rxd_nas_launch *nasops_rec_add(struct rxd_nas_rec *rec)
{
	if (rec->n == rec->cap) {
		size_t cap = rec->cap ? 2 * rec->cap : 256;
		struct rxd_nas_launch *v = realloc(rec->v, cap * sizeof(*v));

		if (!v) {
			rec->failed = true;
			return NULL;
		}
		rec->v = v;
		rec->cap = cap;
	}
	memset(&rec->v[rec->n], 0, sizeof(rec->v[0]));
	return &rec->v[rec->n++];
}

/* Enqueue kernel k (its current object) over global / local, or record it. */
static int nasops_enqueue(struct rxd_nasops *ops, int k, const size_t global[3],
			  const size_t local[3], struct rxd_nas_span *span)
{
	struct rxd_nas_rec *rec = ops->rec;
	cl_event ev = NULL;
	int ret;

	if (rec) {
		struct rxd_nas_launch *l = nasops_rec_add(rec);

		if (l) {
			l->kernel = rec->cur[k];
			l->k = k;
			memcpy(l->global, global, sizeof(l->global));
			memcpy(l->local, local, sizeof(l->local));
			rec->cur[k] = NULL;
			if (!l->kernel) /* clCreateKernel failed: nothing to replay */
				rec->failed = true;
		}
		return 0;
	}
	ret = device_kernel_enqueue(ops->dev, ops->kernels[k], nasops_kernel_names[k], 3, NULL,
				    global, local, span ? &ev : NULL);
	if (ret == 0)
		nasops_span_add(span, ev);
	return ret;
}

void nasops_rec_begin(struct rxd_nasops *ops, struct rxd_nas_rec *rec)
{
	nasops_rec_free(rec);
	ops->rec = rec;
}

int nasops_rec_step(struct rxd_nasops *ops)
{
	struct rxd_nas_rec *rec = ops->rec;

	if (rec->n_steps == rec->cap_steps) {
		size_t cap = rec->cap_steps ? 2 * rec->cap_steps : 256;
		size_t *v = realloc(rec->step_first, (cap + 1) * sizeof(*v));

		if (!v) {
			rec->failed = true;
			return -ENOMEM;
		}
		rec->step_first = v;
		rec->cap_steps = cap;
	}
	rec->step_first[rec->n_steps++] = rec->n;
	return 0;
}

void nasops_rec_end(struct rxd_nasops *ops)
{
	struct rxd_nas_rec *rec = ops->rec;

	for (int k = 0; k < RXD_NAS_KERNELS; k++)
		if (rec->cur[k]) {
			clReleaseKernel(rec->cur[k]);
			rec->cur[k] = NULL;
		}
	if (rec->step_first)
		rec->step_first[rec->n_steps] = rec->n;
	rec->ready = !rec->failed && rec->step_first;
	ops->rec = NULL;
}

bool nasops_rec_valid(const struct rxd_nasops *ops, const struct rxd_nas_rec *rec)
{
	return rec->ready && (!rec->scratch || rec->scratch == ops->scratch);
}

int nasops_rec_replay(struct rxd_nasops *ops, const struct rxd_nas_rec *rec, size_t step,
		      struct rxd_nas_span *span)
{
	for (size_t i = rec->step_first[step]; i < rec->step_first[step + 1]; i++) {
		const struct rxd_nas_launch *l = &rec->v[i];
		cl_event ev = NULL;
		int ret;

		if (l->kernel) {
			ret = device_kernel_enqueue(ops->dev, l->kernel, nasops_kernel_names[l->k], 3,
						    NULL, l->global, l->local, span ? &ev : NULL);
			if (ret < 0)
				return ret;
		} else {
			cl_int e = gemm_enqueue_at(ops->eng, l->variant, &l->g, l->a, l->a_off, l->b,
						   l->b_off, l->c, l->c_off, span ? &ev : NULL);

			if (e != CL_SUCCESS) {
				log_msg(LOG_ERR, "GEMM %s (replayed): %s",
					gemm_variant_name(ops->eng, l->variant), device_strerror(e));
				return device_cl_errno(e);
			}
		}
		nasops_span_add(span, ev);
	}
	return 0;
}

const char *nasops_rec_kernel(const struct rxd_nas_rec *rec, size_t i)
{
	if (i >= rec->n)
		return NULL;
	return rec->v[i].kernel ? nasops_kernel_names[rec->v[i].k] : "GEMM";
}

void nasops_rec_free(struct rxd_nas_rec *rec)
{
	for (size_t i = 0; i < rec->n; i++)
		if (rec->v[i].kernel)
			clReleaseKernel(rec->v[i].kernel);
	for (int k = 0; k < RXD_NAS_KERNELS; k++)
		if (rec->cur[k])
			clReleaseKernel(rec->cur[k]);
	free(rec->v);
	free(rec->step_first);
	memset(rec, 0, sizeof(*rec));
}

/* Kernel k's arguments, as device_kernel_args takes them, on the kernel object the launch
 * will use. */
#define nasops_args(ops, k, ...) \
	device_kernel_args(nasops_kernel_new(ops, k), nasops_kernel_names[k], __VA_ARGS__)

/* Enqueue kernel k over (extent0 padded to the local size, extent1, extent2). */
static int nasops_launch(struct rxd_nasops *ops, int k, size_t extent0, size_t extent1,
			 size_t extent2, size_t local0, struct rxd_nas_span *span)
{
	size_t local[3] = { local0 ? local0
				   : device_kernel_local(ops->wg[k], ops->wg_multiple[k], extent0),
			    1, 1 };
	size_t global[3] = { (extent0 + local[0] - 1) / local[0] * local[0], extent1, extent2 };

	return nasops_enqueue(ops, k, global, local, span);
}

/* A buffer argument that may be absent: the kernel does not read it then, but OpenCL 1.1
 * drivers differ on NULL buffer arguments, so another valid buffer stands in. */
#define NASOPS_MEM_OR(m, other) ((m) ? &(m) : &(other))

/* ---- convolution -------------------------------------------------------------------- */

static int nasops_conv_direct(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
			      const struct rxd_nas_conv *cv, const struct rxd_nas_tensor *y,
			      const struct rxd_nas_write *wr, struct rxd_nas_span *span)
{
	cl_ulong x_off = (cl_ulong)x->off, y_off = (cl_ulong)y->off;
	cl_ulong w_off = (cl_ulong)cv->weight_off, b_off = (cl_ulong)cv->bias_off;
	cl_int has_bias = cv->bias != NULL;
	cl_int relu = cv->relu_in, acc = wr->accumulate;
	int ret;

	ret = nasops_args(ops, RXD_NAS_K_CONV, sizeof(cl_mem), &x->mem, sizeof(cl_ulong), &x_off,
			  sizeof(cl_int), &x->c, sizeof(cl_int), &x->h, sizeof(cl_int), &x->w,
			  sizeof(cl_mem), &y->mem, sizeof(cl_ulong), &y_off, sizeof(cl_int), &y->c,
			  sizeof(cl_int), &wr->c_off, sizeof(cl_int), &cv->c_out, sizeof(cl_int),
			  &y->h, sizeof(cl_int), &y->w, sizeof(cl_mem), &cv->weight,
			  sizeof(cl_ulong), &w_off, sizeof(cl_mem),
			  NASOPS_MEM_OR(cv->bias, cv->weight), sizeof(cl_ulong), &b_off,
			  sizeof(cl_int), &has_bias, sizeof(cl_int), &cv->kh, sizeof(cl_int),
			  &cv->kw, sizeof(cl_int), &cv->stride_h, sizeof(cl_int), &cv->stride_w,
			  sizeof(cl_int), &cv->pad_h, sizeof(cl_int), &cv->pad_w, sizeof(cl_int),
			  &cv->dil_h, sizeof(cl_int), &cv->dil_w, sizeof(cl_int), &cv->groups,
			  sizeof(cl_int), &relu, sizeof(cl_int), &cv->in_shift, sizeof(cl_int),
			  &acc, sizeof(float), &wr->scale, (size_t)0);
	if (ret == 0)
		ret = nasops_add_args(ops, RXD_NAS_K_CONV, 30, y, wr);
	if (ret < 0)
		return ret;
	return nasops_launch(ops, RXD_NAS_K_CONV, (size_t)y->h * (size_t)y->w, (size_t)cv->c_out,
			     (size_t)x->n, 0, span);
}

/* nas_dwconv's work-group: as wide as the output row up to 32 (neighbours read
 * neighbouring inputs), then as many rows as the kernel's work-group size allows, up to
 * the plane's height; the input patch must fit dw_local_bytes. 0, or -ENOSPC when no tile
 * does (then the direct kernel serves). */
static int nasops_dw_tile(const struct rxd_nasops *ops, const struct rxd_nas_conv *cv,
			  int32_t ho, int32_t wo, size_t local[2], size_t *patch_bytes)
{
	size_t max = ops->wg[RXD_NAS_K_DWCONV], lw = 4, lh = 1;

	while (lw < (size_t)wo && lw < 32)
		lw *= 2;
	while (lw > max && lw > 1)
		lw /= 2;
	if (ops->item_max[0] && lw > ops->item_max[0])
		lw = ops->item_max[0];
	while (lh < (size_t)ho && 2 * lh * lw <= max && 2 * lh * lw <= 256 &&
	       (!ops->item_max[1] || 2 * lh <= ops->item_max[1]))
		lh *= 2;
	for (;;) {
		size_t cols = (lw - 1) * (size_t)cv->stride_w + (size_t)(cv->kw - 1) * cv->dil_w + 1;
		size_t rows = (lh - 1) * (size_t)cv->stride_h + (size_t)(cv->kh - 1) * cv->dil_h + 1;

		*patch_bytes = rows * cols * sizeof(float);
		if (*patch_bytes <= ops->dw_local_bytes)
			break;
		if (lh > 1)
			lh /= 2;
		else if (lw > 1)
			lw /= 2;
		else
			return -ENOSPC;
	}
	local[0] = lw;
	local[1] = lh;
	return 0;
}

static int nasops_conv_dw(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
			  const struct rxd_nas_conv *cv, const struct rxd_nas_tensor *y,
			  const struct rxd_nas_write *wr, struct rxd_nas_span *span)
{
	cl_ulong x_off = (cl_ulong)x->off, y_off = (cl_ulong)y->off;
	cl_ulong w_off = (cl_ulong)cv->weight_off, b_off = (cl_ulong)cv->bias_off;
	cl_int has_bias = cv->bias != NULL;
	cl_int relu = cv->relu_in, acc = wr->accumulate;
	size_t local[3] = { 1, 1, 1 }, global[3], patch_bytes;
	cl_int e;
	int ret;

	if (nasops_dw_tile(ops, cv, y->h, y->w, local, &patch_bytes) < 0)
		return nasops_conv_direct(ops, x, cv, y, wr, span);
	ret = nasops_args(ops, RXD_NAS_K_DWCONV, sizeof(cl_mem), &x->mem, sizeof(cl_ulong),
			  &x_off, sizeof(cl_int), &x->c, sizeof(cl_int), &x->h, sizeof(cl_int),
			  &x->w, sizeof(cl_mem), &y->mem, sizeof(cl_ulong), &y_off, sizeof(cl_int),
			  &y->c, sizeof(cl_int), &wr->c_off, sizeof(cl_int), &y->h, sizeof(cl_int),
			  &y->w, sizeof(cl_mem), &cv->weight, sizeof(cl_ulong), &w_off,
			  sizeof(cl_mem), NASOPS_MEM_OR(cv->bias, cv->weight), sizeof(cl_ulong),
			  &b_off, sizeof(cl_int), &has_bias, sizeof(cl_int), &cv->kh,
			  sizeof(cl_int), &cv->kw, sizeof(cl_int), &cv->stride_h, sizeof(cl_int),
			  &cv->stride_w, sizeof(cl_int), &cv->pad_h, sizeof(cl_int), &cv->pad_w,
			  sizeof(cl_int), &cv->dil_h, sizeof(cl_int), &cv->dil_w, sizeof(cl_int),
			  &relu, sizeof(cl_int), &cv->in_shift, sizeof(cl_int), &acc,
			  sizeof(float), &wr->scale, (size_t)0);
	if (ret == 0)
		ret = nasops_add_args(ops, RXD_NAS_K_DWCONV, 28, y, wr);
	if (ret < 0)
		return ret;
	/* The patch: a __local argument, sized here with no value. */
	e = clSetKernelArg(nasops_kernel_cur(ops, RXD_NAS_K_DWCONV), 34, patch_bytes, NULL);
	if (e != CL_SUCCESS) {
		log_msg(LOG_ERR, "nas_dwconv: local patch of %zu bytes: %s", patch_bytes,
			device_strerror(e));
		return -EIO;
	}
	global[0] = ((size_t)y->w + local[0] - 1) / local[0] * local[0];
	global[1] = ((size_t)y->h + local[1] - 1) / local[1] * local[1];
	global[2] = (size_t)x->n * (size_t)x->c;
	return nasops_enqueue(ops, RXD_NAS_K_DWCONV, global, local, span);
}

/* Which nas_dwr kernel serves the depthwise convolution cv: its index among the eight,
 * or -1 when its window is not one of theirs (square 3x3 or 5x5, the same stride of 1 or
 * 2 and dilation of 1 or 2 both ways). */
static int nasops_dwr_index(const struct rxd_nas_conv *cv)
{
	if (cv->kh != cv->kw || (cv->kh != 3 && cv->kh != 5) || cv->stride_h != cv->stride_w ||
	    cv->stride_h < 1 || cv->stride_h > 2 || cv->dil_h != cv->dil_w || cv->dil_h < 1 ||
	    cv->dil_h > 2)
		return -1;
	return (cv->kh == 5) * 4 + (cv->stride_h == 2) * 2 + (cv->dil_h == 2);
}

/* nas_dwr's outputs a work-item makes (kernels/nas.cl: DWR_W columns by DWR_H rows). */
#define NASOPS_DWR_W 4
#define NASOPS_DWR_H 2

/* Whether nas_dwrv can take the depthwise cv (one of nas_dwr's windows) of x: stride 1,
 * the padding that keeps the plane ((k - 1) * dilation / 2), no shift, and its float4s
 * aligned (the width and x's offset multiples of 4). */
static bool nasops_dwrv_fits(const struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
			     const struct rxd_nas_conv *cv)
{
	const int pad = (cv->kh - 1) * cv->dil_h / 2;

	return ops->dw_vec && cv->stride_h == 1 && cv->pad_h == pad && cv->pad_w == pad &&
	       cv->in_shift == 0 && x->w % 4 == 0 && x->off % 4 == 0;
}

/* One nas_dwr or nas_dwrv launch, or -ENOSPC when cv's window is not one of nas_dwr's
 * eight. The work-group: the column groups of a row and the row groups of a plane up to
 * 128 work-items, then planes to fill it, so that small planes (8 x 8: two by four
 * work-items) still make full work-groups. */
static int nasops_conv_dwr(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
			   const struct rxd_nas_conv *cv, const struct rxd_nas_tensor *y,
			   const struct rxd_nas_write *wr, struct rxd_nas_span *span)
{
	const int vi = nasops_dwr_index(cv);
	const int k = vi < 0			   ? -1
		      : nasops_dwrv_fits(ops, x, cv) ? RXD_NAS_K_DWRV + (vi >> 2) * 2 + (vi & 1)
						     : RXD_NAS_K_DWR + vi;
	cl_ulong x_off = (cl_ulong)x->off, y_off = (cl_ulong)y->off;
	cl_ulong w_off = (cl_ulong)cv->weight_off, b_off = (cl_ulong)cv->bias_off;
	cl_int has_bias = cv->bias != NULL, relu = cv->relu_in, acc = wr->accumulate;
	cl_int np = x->n * x->c;
	size_t cols = ((size_t)y->w + NASOPS_DWR_W - 1) / NASOPS_DWR_W;
	size_t rows = ((size_t)y->h + NASOPS_DWR_H - 1) / NASOPS_DWR_H;
	size_t max, local[3] = { 1, 1, 1 }, global[3];
	int ret;

	if (k < 0)
		return -ENOSPC;
	max = ops->wg[k] < 128 ? ops->wg[k] : 128;
	while (local[0] < cols && 2 * local[0] <= max &&
	       (!ops->item_max[0] || 2 * local[0] <= ops->item_max[0]))
		local[0] *= 2;
	while (local[1] < rows && 2 * local[0] * local[1] <= max &&
	       (!ops->item_max[1] || 2 * local[1] <= ops->item_max[1]))
		local[1] *= 2;
	while (2 * local[0] * local[1] * local[2] <= max && local[2] < (size_t)np &&
	       (!ops->item_max[2] || 2 * local[2] <= ops->item_max[2]))
		local[2] *= 2;
	ret = nasops_args(ops, k, sizeof(cl_mem), &x->mem, sizeof(cl_ulong), &x_off,
			  sizeof(cl_int), &x->c, sizeof(cl_int), &x->h, sizeof(cl_int), &x->w,
			  sizeof(cl_mem), &y->mem, sizeof(cl_ulong), &y_off, sizeof(cl_int), &y->c,
			  sizeof(cl_int), &wr->c_off, sizeof(cl_int), &y->h, sizeof(cl_int), &y->w,
			  sizeof(cl_mem), &cv->weight, sizeof(cl_ulong), &w_off, sizeof(cl_mem),
			  NASOPS_MEM_OR(cv->bias, cv->weight), sizeof(cl_ulong), &b_off,
			  sizeof(cl_int), &has_bias, sizeof(cl_int), &cv->pad_h, sizeof(cl_int),
			  &cv->pad_w, sizeof(cl_int), &relu, sizeof(cl_int), &cv->in_shift,
			  sizeof(cl_int), &np, sizeof(cl_int), &acc, sizeof(float), &wr->scale,
			  (size_t)0);
	if (ret == 0)
		ret = nasops_add_args(ops, k, 23, y, wr);
	if (ret < 0)
		return ret;
	global[0] = (cols + local[0] - 1) / local[0] * local[0];
	global[1] = (rows + local[1] - 1) / local[1] * local[1];
	global[2] = ((size_t)np + local[2] - 1) / local[2] * local[2];
	return nasops_enqueue(ops, k, global, local, span);
}

/* nas_pw's input channels at a time (kernels/nas.cl: PW_KS): keep in step with the
 * kernel. Its register tile, PW_RP pixels by PW_RC channels, is ops->pw_rp by pw_rc, given
 * to the build. */
#define NASOPS_PW_KS 16

/* nas_pw's work-group: enough channel rows (lc, at most 16) that the channel tiles split
 * cout evenly (36 channels: one tile of 9 rows, not 16 rows with 28 channels idle), then
 * as many pixel columns (lp, a power of two up to 64) as the work-group size allows and
 * the plane needs. A launch of fewer work-groups than the device has compute units (a
 * small batch of small planes: batch 1's 8x8 planes into 144 channels would be 3) takes
 * smaller tiles, pixel columns down to 8 then channel tiles down to 4 rows, so that more
 * units work. The two local arrays must fit pw_local_bytes. 0, or -ENOSPC. */
static int nasops_pw_tile(const struct rxd_nasops *ops, int32_t cout, int64_t hwo, int32_t n,
			  size_t local[2], size_t *xs_bytes, size_t *ws_bytes)
{
	const size_t rp = (size_t)ops->pw_rp, rc = (size_t)ops->pw_rc;
	const uint64_t units = ops->dev->desc ? ops->dev->desc->compute_units : 0;
	size_t max = ops->wg[RXD_NAS_K_PW] < 256 ? ops->wg[RXD_NAS_K_PW] : 256;
	size_t tiles = ((size_t)cout + 16 * rc - 1) / (16 * rc);
	size_t per = ((size_t)cout + tiles - 1) / tiles;
	size_t lc = (per + rc - 1) / rc, lp = 1;

	if (ops->item_max[1] && lc > ops->item_max[1])
		lc = ops->item_max[1];
	if (lc > max)
		lc = max;
	while (2 * lp * lc <= max && lp < 64 && (int64_t)(lp * rp) < hwo &&
	       (!ops->item_max[0] || 2 * lp <= ops->item_max[0]))
		lp *= 2;
	for (;;) {
		uint64_t groups = (uint64_t)((hwo + (int64_t)(lp * rp) - 1) / (int64_t)(lp * rp)) *
				  (((size_t)cout + lc * rc - 1) / (lc * rc)) * (uint64_t)n;

		if (groups >= units)
			break;
		if (lp > 8) {
			lp /= 2;
		} else if (lc > 4) {
			tiles *= 2;
			per = ((size_t)cout + tiles - 1) / tiles;
			lc = (per + rc - 1) / rc;
		} else {
			break;
		}
	}
	for (;;) {
		*xs_bytes = NASOPS_PW_KS * lp * rp * sizeof(float);
		*ws_bytes = NASOPS_PW_KS * (lc * rc + 1) * sizeof(float); /* nas.cl pads a row */
		if (*xs_bytes + *ws_bytes <= ops->pw_local_bytes)
			break;
		if (lp > 1)
			lp /= 2;
		else if (lc > 1)
			lc /= 2;
		else
			return -ENOSPC;
	}
	local[0] = lp;
	local[1] = lc;
	return 0;
}

/* Whether nas_pw takes a convolution as its 1x1 part (dw NULL) or as the 1x1 after the
 * depthwise dw: dense, 1x1, no padding; the shifted, strided read only without dw. */
static bool nasops_pw_fits(const struct rxd_nas_conv *cv, const struct rxd_nas_conv *dw)
{
	if (cv->groups != 1 || cv->kh != 1 || cv->kw != 1 || cv->pad_h != 0 || cv->pad_w != 0)
		return false;
	if (!dw)
		return true;
	return cv->stride_h == 1 && cv->stride_w == 1 && !cv->relu_in && cv->in_shift == 0 &&
	       dw->in_shift == 0 && dw->groups == dw->c_out;
}

/* One nas_pw launch: the 1x1 convolution cv of x (dw NULL), or of dw's depthwise
 * convolution of x, into y's slice. Shapes checked by the caller. -ENOSPC when no tile
 * fits the local memory (the caller takes another path; nothing was enqueued). */
static int nasops_conv_pw(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
			  const struct rxd_nas_conv *cv, const struct rxd_nas_conv *dw,
			  const struct rxd_nas_tensor *y, const struct rxd_nas_write *wr,
			  struct rxd_nas_span *span)
{
	const int64_t hwo = (int64_t)y->h * y->w;
	cl_ulong x_off = (cl_ulong)x->off, y_off = (cl_ulong)y->off;
	cl_ulong w_off = (cl_ulong)cv->weight_off, b_off = (cl_ulong)cv->bias_off;
	cl_ulong dw_off = dw ? (cl_ulong)dw->weight_off : 0, dwb_off = dw ? (cl_ulong)dw->bias_off : 0;
	cl_int has_bias = cv->bias != NULL, acc = wr->accumulate, cin = x->c;
	cl_int dw_has_bias = dw && dw->bias, zero = 0;
	/* Without dw the 1x1's own stride, ReLU and shift; with it the depthwise's. */
	cl_int sh = dw ? dw->stride_h : cv->stride_h, sw = dw ? dw->stride_w : cv->stride_w;
	cl_int relu = dw ? dw->relu_in : cv->relu_in, shift = dw ? 0 : cv->in_shift;
	const cl_mem *dwt = dw ? &dw->weight : &cv->weight;
	const cl_mem *dwb = dw && dw->bias ? &dw->bias : dwt;
	size_t local[3] = { 1, 1, 1 }, global[3], xs_bytes, ws_bytes, tile_p, tile_c;
	cl_kernel k;
	cl_int e;
	int ret;

	if (nasops_pw_tile(ops, cv->c_out, hwo, x->n, local, &xs_bytes, &ws_bytes) < 0)
		return -ENOSPC;
	ret = nasops_args(ops, RXD_NAS_K_PW, sizeof(cl_mem), &x->mem, sizeof(cl_ulong), &x_off,
			  sizeof(cl_int), &cin, sizeof(cl_int), &x->h, sizeof(cl_int), &x->w,
			  sizeof(cl_mem), &y->mem, sizeof(cl_ulong), &y_off, sizeof(cl_int), &y->c,
			  sizeof(cl_int), &wr->c_off, sizeof(cl_int), &cv->c_out, sizeof(cl_int),
			  &y->h, sizeof(cl_int), &y->w, sizeof(cl_mem), &cv->weight,
			  sizeof(cl_ulong), &w_off, sizeof(cl_mem),
			  NASOPS_MEM_OR(cv->bias, cv->weight), sizeof(cl_ulong), &b_off,
			  sizeof(cl_int), &has_bias, sizeof(cl_int), &sh, sizeof(cl_int), &sw,
			  sizeof(cl_int), &relu, sizeof(cl_int), &shift, sizeof(cl_mem), dwt,
			  sizeof(cl_ulong), &dw_off, sizeof(cl_mem), dwb, sizeof(cl_ulong), &dwb_off,
			  sizeof(cl_int), &dw_has_bias, sizeof(cl_int), dw ? &dw->kh : &zero,
			  sizeof(cl_int), dw ? &dw->kw : &zero, sizeof(cl_int),
			  dw ? &dw->pad_h : &zero, sizeof(cl_int), dw ? &dw->pad_w : &zero,
			  sizeof(cl_int), dw ? &dw->dil_h : &zero, sizeof(cl_int),
			  dw ? &dw->dil_w : &zero, sizeof(cl_int), &acc, sizeof(float), &wr->scale,
			  (size_t)0);
	if (ret == 0)
		ret = nasops_add_args(ops, RXD_NAS_K_PW, 34, y, wr);
	if (ret < 0)
		return ret;
	k = nasops_kernel_cur(ops, RXD_NAS_K_PW);
	e = clSetKernelArg(k, 40, xs_bytes, NULL);
	if (e == CL_SUCCESS)
		e = clSetKernelArg(k, 41, ws_bytes, NULL);
	if (e != CL_SUCCESS) {
		log_msg(LOG_ERR, "nas_pw: local tiles of %zu and %zu bytes: %s", xs_bytes, ws_bytes,
			device_strerror(e));
		return -EIO;
	}
	tile_p = local[0] * (size_t)ops->pw_rp;
	tile_c = local[1] * (size_t)ops->pw_rc;
	global[0] = ((size_t)hwo + tile_p - 1) / tile_p * local[0];
	global[1] = ((size_t)cv->c_out + tile_c - 1) / tile_c * local[1];
	global[2] = (size_t)x->n;
	return nasops_enqueue(ops, RXD_NAS_K_PW, global, local, span);
}

/* The work-group of kernel k (nas_pws, nas_pwv or nas_cvs), whose work-items make p
 * pixels by c channels each: pixel columns (lp, a power of two from 8 to 64) as many as
 * one tile of p * lp pixels needs to cover the plane, then channel groups (lc) until the
 * work-group has 64 work-items or covers cout, within the kernel's limits. */
static void nasops_pws_local(const struct rxd_nasops *ops, int k, int p, int c, int32_t cout,
			     int64_t hwo, size_t local[2])
{
	const size_t max = ops->wg[k];
	const size_t groups = ((size_t)cout + (size_t)c - 1) / (size_t)c;
	size_t lp = 64, lc = 1;

	while (lp > 8 && (int64_t)(lp / 2 * (size_t)p) >= hwo)
		lp /= 2;
	while (lp > 1 && (lp > max || (ops->item_max[0] && lp > ops->item_max[0])))
		lp /= 2;
	while (lp * lc * 2 <= 64 && lp * lc * 2 <= max && lc < groups &&
	       (!ops->item_max[1] || lc * 2 <= ops->item_max[1]))
		lc *= 2;
	local[0] = lp;
	local[1] = lc;
}

/* Whether a dense convolution that nas_pws or nas_cvs would take goes to the GEMM engine
 * instead: when its launch is too small to hide their one long loop (a work-item walks
 * all of c_in * kh * kw in turn) and that loop is long. Each turn of four waits on memory
 * once, so a small launch takes about 0.125 us per input channel; the engine's path
 * splits K and costs about 50 us (its three launches) at small sizes: on the H200,
 * DARTS_V2's 576 -> 144 1x1 at 8 x 8 took 72 us through nas_pws and 52 through the engine
 * at batch 1 (91 against 61 at 16), but 93 against 112 at 64, with 18432 work-items; at
 * 288 input channels nas_pws won at every batch. Hence the engine for a loop of 384 or
 * more in a launch of fewer than 128 work-items per compute unit. */
static bool nasops_stream_short(const struct rxd_nasops *ops, int64_t n, int32_t c_in,
				const struct rxd_nas_conv *cv, int64_t hwo)
{
	const uint64_t units = ops->dev->desc ? ops->dev->desc->compute_units : 0;
	uint64_t items = (uint64_t)((n * hwo + ops->ps_p - 1) / ops->ps_p) *
			 (uint64_t)((cv->c_out + ops->ps_cn - 1) / ops->ps_cn);

	return ops->eng && (int64_t)c_in * cv->kh * cv->kw >= 384 && items < units * 128;
}

/* Whether a launch of n images of hwo pixels into cout channels, p pixels a work-item,
 * takes the wide tile (ps_c channels a work-item): when that still gives every compute
 * unit ps_wide work-items. A smaller launch takes the narrow variant (ps_cn), twice the
 * work-items each with half the loop, so that the device has enough of them to hide
 * their loads behind each other; a larger one the wide tile, whose loads serve twice the
 * multiply-adds (RXGEMMD_NAS_PWS_WIDE, nasops_init). */
static bool nasops_stream_wide(const struct rxd_nasops *ops, int64_t n, int p, int32_t cout,
			       int64_t hwo)
{
	const uint64_t units = ops->dev->desc ? ops->dev->desc->compute_units : 0;
	uint64_t items = (uint64_t)(n * ((hwo + p - 1) / p)) *
			 (uint64_t)((cout + ops->ps_c - 1) / ops->ps_c);

	return items >= units * ops->ps_wide;
}

/* Whether cv of an input of n images of c_in channels into hwo pixels goes through
 * nas_pws or nas_cvs (the same answer for nasops_conv and nasops_conv_scratch_bytes). */
static bool nasops_streams(const struct rxd_nasops *ops, int64_t n, int32_t c_in,
			   const struct rxd_nas_conv *cv, int64_t hwo)
{
	if (cv->groups != 1 || nasops_stream_short(ops, n, c_in, cv, hwo))
		return false;
	return nasops_pw_fits(cv, NULL) ? ops->pw_stream : ops->conv_stream;
}

/* Whether nas_pwv can take the 1x1 cv of x into y: stride 1, no shift, and every float4
 * it reads or writes aligned (in floats: cin, the plane and the offsets of x, y and the
 * weights multiples of 4; the buffers themselves start at CL_DEVICE_MEM_BASE_ADDR_ALIGN,
 * which OpenCL makes at least a float16's). */
static bool nasops_pwv_fits(const struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
			    const struct rxd_nas_conv *cv, const struct rxd_nas_tensor *y)
{
	return ops->pw_vec && cv->stride_h == 1 && cv->stride_w == 1 && cv->in_shift == 0 &&
	       x->h == y->h && x->w == y->w && x->c % 4 == 0 && ((int64_t)x->h * x->w) % 4 == 0 &&
	       x->off % 4 == 0 && y->off % 4 == 0 && cv->weight_off % 4 == 0;
}

/* One nas_pws or nas_pwv launch (a 1x1 convolution: stride, shift and ReLU on the input
 * as the step says) or nas_cvs launch (any other dense window) of cv of x into y's slice,
 * each wide or narrow (nasops_stream_wide). Shapes checked by the caller; nothing to
 * fall back from (no local memory). */
static int nasops_conv_stream(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
			      const struct rxd_nas_conv *cv, const struct rxd_nas_tensor *y,
			      const struct rxd_nas_write *wr, struct rxd_nas_span *span)
{
	const bool pw = nasops_pw_fits(cv, NULL), vec = pw && nasops_pwv_fits(ops, x, cv, y);
	const int p = vec ? 4 : ops->ps_p;
	const int64_t hwo = (int64_t)y->h * y->w;
	const bool wide = nasops_stream_wide(ops, x->n, p, cv->c_out, hwo);
	const int c = wide ? ops->ps_c : ops->ps_cn;
	const int k = (vec ? RXD_NAS_K_PWV : pw ? RXD_NAS_K_PWS : RXD_NAS_K_CVS) +
		      (wide ? 0 : RXD_NAS_K_PWS_N - RXD_NAS_K_PWS);
	cl_ulong x_off = (cl_ulong)x->off, y_off = (cl_ulong)y->off;
	cl_ulong w_off = (cl_ulong)cv->weight_off, b_off = (cl_ulong)cv->bias_off;
	cl_int has_bias = cv->bias != NULL, acc = wr->accumulate, relu = cv->relu_in;
	cl_int hw = (cl_int)hwo;
	size_t local[3] = { 1, 1, 1 }, global[3], tile_p, groups;
	int ret;

	/* nas_pwv's arguments; else those nas_pws and nas_cvs share, then nas_cvs's window
	 * (nas_pws has none). */
#define NASOPS_STREAM_ARGS                                                                   \
	sizeof(cl_mem), &x->mem, sizeof(cl_ulong), &x_off, sizeof(cl_int), &x->c,            \
		sizeof(cl_int), &x->h, sizeof(cl_int), &x->w, sizeof(cl_mem), &y->mem,       \
		sizeof(cl_ulong), &y_off, sizeof(cl_int), &y->c, sizeof(cl_int), &wr->c_off, \
		sizeof(cl_int), &cv->c_out, sizeof(cl_int), &y->h, sizeof(cl_int), &y->w,   \
		sizeof(cl_mem), &cv->weight, sizeof(cl_ulong), &w_off, sizeof(cl_mem),       \
		NASOPS_MEM_OR(cv->bias, cv->weight), sizeof(cl_ulong), &b_off,              \
		sizeof(cl_int), &has_bias
	if (vec)
		ret = nasops_args(ops, k, sizeof(cl_mem), &x->mem, sizeof(cl_ulong), &x_off,
				  sizeof(cl_int), &x->c, sizeof(cl_int), &hw, sizeof(cl_mem),
				  &y->mem, sizeof(cl_ulong), &y_off, sizeof(cl_int), &y->c,
				  sizeof(cl_int), &wr->c_off, sizeof(cl_int), &cv->c_out,
				  sizeof(cl_mem), &cv->weight, sizeof(cl_ulong), &w_off,
				  sizeof(cl_mem), NASOPS_MEM_OR(cv->bias, cv->weight),
				  sizeof(cl_ulong), &b_off, sizeof(cl_int), &has_bias,
				  sizeof(cl_int), &relu, sizeof(cl_int), &acc, sizeof(float),
				  &wr->scale, (size_t)0);
	else if (!pw)
		ret = nasops_args(ops, k, NASOPS_STREAM_ARGS, sizeof(cl_int), &cv->kh,
				  sizeof(cl_int), &cv->kw, sizeof(cl_int), &cv->stride_h,
				  sizeof(cl_int), &cv->stride_w, sizeof(cl_int), &cv->pad_h,
				  sizeof(cl_int), &cv->pad_w, sizeof(cl_int), &cv->dil_h,
				  sizeof(cl_int), &cv->dil_w, sizeof(cl_int), &relu, sizeof(cl_int),
				  &cv->in_shift, sizeof(cl_int), &acc, sizeof(float), &wr->scale,
				  (size_t)0);
	else
		ret = nasops_args(ops, k, NASOPS_STREAM_ARGS, sizeof(cl_int), &cv->stride_h,
				  sizeof(cl_int), &cv->stride_w, sizeof(cl_int), &relu, sizeof(cl_int),
				  &cv->in_shift, sizeof(cl_int), &acc, sizeof(float), &wr->scale,
				  (size_t)0);
#undef NASOPS_STREAM_ARGS
	if (ret == 0)
		ret = nasops_add_args(ops, k, vec ? 17 : pw ? 23 : 29, y, wr);
	if (ret < 0)
		return ret;
	/* nas_pwv: p is 4 and hwo a multiple of it, so these are whole quads. */
	nasops_pws_local(ops, k, p, c, cv->c_out, hwo, local);
	tile_p = local[0] * (size_t)p;
	groups = ((size_t)cv->c_out + (size_t)c - 1) / (size_t)c;
	global[0] = ((size_t)hwo + tile_p - 1) / tile_p * local[0];
	global[1] = (groups + local[1] - 1) / local[1] * local[1];
	global[2] = (size_t)x->n;
	return nasops_enqueue(ops, k, global, local, span);
}

/* y slice = scale * bias (bias may be NULL: 0) (+ the added tensor) (+ y): what the GEMM
 * then adds to. */
static int nasops_bias(struct rxd_nasops *ops, const struct rxd_nas_tensor *y, int32_t c,
		       int32_t hw, cl_mem bias, int64_t bias_off, const struct rxd_nas_write *wr,
		       struct rxd_nas_span *span)
{
	cl_ulong y_off = (cl_ulong)y->off, b_off = (cl_ulong)bias_off;
	cl_int acc = wr->accumulate, has_bias = bias != NULL;
	int ret;

	ret = nasops_args(ops, RXD_NAS_K_BIAS, sizeof(cl_mem), &y->mem, sizeof(cl_ulong), &y_off,
			  sizeof(cl_int), &y->c, sizeof(cl_int), &wr->c_off, sizeof(cl_int), &hw,
			  sizeof(cl_mem), bias ? &bias : &y->mem, sizeof(cl_ulong), &b_off,
			  sizeof(cl_int), &has_bias, sizeof(cl_int), &acc, sizeof(float),
			  &wr->scale, (size_t)0);
	if (ret == 0)
		ret = nasops_add_args(ops, RXD_NAS_K_BIAS, 10, y, wr);
	if (ret < 0)
		return ret;
	return nasops_launch(ops, RXD_NAS_K_BIAS, (size_t)hw, (size_t)c, (size_t)y->n, 0, span);
}

static int nasops_gemm(struct rxd_nasops *ops, const struct rxd_gemm *g, cl_mem a, int64_t a_off,
		       cl_mem b, int64_t b_off, cl_mem c, int64_t c_off, struct rxd_nas_span *span)
{
	int variant = gemm_choose(ops->eng, g);
	cl_event ev = NULL;
	cl_int e;

	if (ops->rec) {
		struct rxd_nas_launch *l = nasops_rec_add(ops->rec);

		if (l) {
			l->variant = variant;
			l->g = *g;
			l->a = a, l->b = b, l->c = c;
			l->a_off = a_off, l->b_off = b_off, l->c_off = c_off;
		}
		return 0;
	}
	e = gemm_enqueue_at(ops->eng, variant, g, a, a_off, b, b_off, c, c_off, span ? &ev : NULL);
	if (e != CL_SUCCESS) {
		log_msg(LOG_ERR, "GEMM %s (%lld x %lld x %lld, batch %lld): %s",
			gemm_variant_name(ops->eng, variant), (long long)g->m, (long long)g->n,
			(long long)g->k, (long long)g->batch_count, device_strerror(e));
		return device_cl_errno(e);
	}
	nasops_span_add(span, ev);
	return 0;
}

void nasops_release_scratch(struct rxd_nasops *ops)
{
	clFinish(ops->dev->queue); /* nothing enqueued may still use it */
	if (ops->scratch && !ops->scratch_lent)
		clReleaseMemObject(ops->scratch);
	ops->scratch = NULL;
	ops->scratch_bytes = 0;
	ops->scratch_lent = false;
}

void nasops_lend_scratch(struct rxd_nasops *ops, cl_mem mem, uint64_t bytes)
{
	nasops_release_scratch(ops);
	ops->scratch = mem;
	ops->scratch_bytes = mem ? bytes : 0;
	ops->scratch_lent = mem != NULL;
}

/* Whether a convolution reads its input in place as the GEMM's columns (no im2col). */
static bool nasops_conv_in_place(const struct rxd_nas_conv *cv)
{
	return cv->kh == 1 && cv->kw == 1 && cv->stride_h == 1 && cv->stride_w == 1 &&
	       cv->pad_h == 0 && cv->pad_w == 0 && !cv->relu_in && cv->in_shift == 0;
}

/* The images whose columns (per_image floats each) are made at once: as many as
 * scratch_max_bytes holds, at least one, at most n, their indices within an int. */
static int64_t nasops_im2col_images(const struct rxd_nasops *ops, int64_t n, int64_t per_image)
{
	int64_t nb = (int64_t)(ops->scratch_max_bytes / sizeof(float)) / per_image;

	nb = nb < 1 ? 1 : nb > n ? n : nb;
	if (nb > INT_MAX / per_image)
		nb = INT_MAX / per_image;
	return nb;
}

uint64_t nasops_conv_scratch_bytes(const struct rxd_nasops *ops, int32_t n, int32_t c_in,
				   const struct rxd_nas_conv *cv, int32_t h_out, int32_t w_out)
{
	int64_t hwo = (int64_t)h_out * w_out, k = (int64_t)c_in * cv->kh * cv->kw;

	if (cv->groups != 1 || !ops->eng || nasops_conv_in_place(cv) ||
	    (ops->pw_direct && nasops_pw_fits(cv, NULL)) || nasops_streams(ops, n, c_in, cv, hwo) ||
	    hwo < 1 || k < 1 ||
	    n < 1 || k > INT_MAX / hwo)
		return 0;
	return (uint64_t)(nasops_im2col_images(ops, n, k * hwo) * k * hwo) * sizeof(float);
}

/* Make the scratch buffer at least bytes. The old one may still be in use by enqueued
 * kernels: OpenCL frees it only once they have finished. A job's scratch is lent from
 * its reservation (admit.c), sized by nasops_conv_scratch_bytes: a convolution that
 * needs more is a bug, never made outside the budget. */
static int nasops_scratch(struct rxd_nasops *ops, uint64_t bytes)
{
	cl_mem m;
	cl_int e;

	if (ops->scratch && ops->scratch_bytes >= bytes)
		return 0;
	if (ops->scratch_lent) {
		log_msg(LOG_ERR, "im2col scratch of %llu bytes, over the %llu admitted: a bug",
			(unsigned long long)bytes, (unsigned long long)ops->scratch_bytes);
		return -ENOSPC;
	}
	if (bytes > ops->dev->max_alloc_bytes)
		return -E2BIG;
	m = clCreateBuffer(ops->dev->ctx, CL_MEM_READ_WRITE, (size_t)bytes, NULL, &e);
	if (!m) {
		log_msg(LOG_ERR, "im2col scratch of %llu bytes: %s", (unsigned long long)bytes,
			device_strerror(e));
		return -ENOMEM;
	}
	if (ops->scratch)
		clReleaseMemObject(ops->scratch);
	ops->scratch = m;
	ops->scratch_bytes = bytes;
	return 0;
}

static int nasops_conv_gemm(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
			    const struct rxd_nas_conv *cv, const struct rxd_nas_tensor *y,
			    const struct rxd_nas_write *wr, struct rxd_nas_span *span)
{
	const int64_t hwo = (int64_t)y->h * y->w, k = (int64_t)x->c * cv->kh * cv->kw;
	/* Read x in place when its planes are the GEMM's columns already. */
	const bool in_place = nasops_conv_in_place(cv);
	struct rxd_gemm g = { .m = hwo, .n = cv->c_out, .k = k, .alpha = wr->scale,
			      .beta = wr->accumulate ? 1.0f : 0.0f, .lda = hwo, .ldb = k,
			      .ldc = hwo, .stride_a = k * hwo, .stride_b = 0,
			      .stride_c = (int64_t)y->c * hwo };
	int64_t per_image = 0, nb = 1;
	int ret;

	/* A variant whose offset build fails (logged once) leaves the direct kernel. */
	if (gemm_prepare_at(ops->eng, gemm_choose(ops->eng, &g)) < 0)
		return nasops_conv_direct(ops, x, cv, y, wr, span);
	/* The columns' room first, so that a failure leaves the output as it was. */
	if (!in_place) {
		if (k > INT_MAX / hwo)
			return -E2BIG;
		per_image = k * hwo;
		nb = nasops_im2col_images(ops, x->n, per_image);
		ret = nasops_scratch(ops, nasops_conv_scratch_bytes(ops, x->n, x->c, cv, y->h,
								    y->w));
		if (ret < 0)
			return ret;
		/* A recording whose earlier launches used a scratch buffer since replaced
		 * cannot be replayed. */
		if (ops->rec) {
			if (ops->rec->scratch && ops->rec->scratch != ops->scratch)
				ops->rec->failed = true;
			ops->rec->scratch = ops->scratch;
		}
	}
	if (cv->bias || wr->add) {
		ret = nasops_bias(ops, y, cv->c_out, (int32_t)hwo, cv->bias, cv->bias_off, wr, span);
		if (ret < 0)
			return ret;
		g.beta = 1.0f;
	}
	if (in_place) {
		g.batch_count = x->n;
		return nasops_gemm(ops, &g, x->mem, x->off, cv->weight, cv->weight_off, y->mem,
				   y->off + (int64_t)wr->c_off * hwo, span);
	}
	for (int32_t n0 = 0; n0 < x->n; n0 += (int32_t)nb) {
		cl_ulong x_off = (cl_ulong)x->off;
		cl_int relu = cv->relu_in;
		int32_t count = x->n - n0 < nb ? x->n - n0 : (int32_t)nb;

		ret = nasops_args(ops, RXD_NAS_K_IM2COL, sizeof(cl_mem), &x->mem, sizeof(cl_ulong),
				  &x_off, sizeof(cl_int), &x->c, sizeof(cl_int), &x->h,
				  sizeof(cl_int), &x->w, sizeof(cl_mem), &ops->scratch,
				  sizeof(cl_int), &y->h, sizeof(cl_int), &y->w, sizeof(cl_int),
				  &cv->kh, sizeof(cl_int), &cv->kw, sizeof(cl_int), &cv->stride_h,
				  sizeof(cl_int), &cv->stride_w, sizeof(cl_int), &cv->pad_h,
				  sizeof(cl_int), &cv->pad_w, sizeof(cl_int), &cv->dil_h,
				  sizeof(cl_int), &cv->dil_w, sizeof(cl_int), &relu, sizeof(cl_int),
				  &cv->in_shift, sizeof(cl_int), &n0, (size_t)0);
		if (ret < 0)
			return ret;
		ret = nasops_launch(ops, RXD_NAS_K_IM2COL, (size_t)hwo, (size_t)k, (size_t)count, 0,
				    span);
		if (ret < 0)
			return ret;
		g.batch_count = count;
		ret = nasops_gemm(ops, &g, ops->scratch, 0, cv->weight, cv->weight_off, y->mem,
				  y->off + ((int64_t)n0 * y->c + wr->c_off) * hwo, span);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* cv of x fits y's slice as wr writes it, and its weights their buffers. */
static int nasops_conv_check(const struct rxd_nas_tensor *x, const struct rxd_nas_conv *cv,
			     const struct rxd_nas_tensor *y, const struct rxd_nas_write *wr)
{
	int32_t ho, wo;
	int64_t w_elems;
	int ret;

	if ((ret = nasops_check_io(x, y, cv->c_out, wr)) < 0)
		return ret;
	if (cv->groups < 1 || x->c % cv->groups || cv->c_out % cv->groups ||
	    (cv->in_shift != 0 && cv->in_shift != 1) || x->h <= cv->in_shift ||
	    x->w <= cv->in_shift)
		return -EINVAL;
	ho = nasops_out_dim(x->h - cv->in_shift, cv->kh, cv->stride_h, cv->pad_h, cv->dil_h);
	wo = nasops_out_dim(x->w - cv->in_shift, cv->kw, cv->stride_w, cv->pad_w, cv->dil_w);
	if (ho < 1 || wo < 1 || ho != y->h || wo != y->w)
		return -EINVAL;
	if (__builtin_mul_overflow((int64_t)cv->c_out * (x->c / cv->groups),
				   (int64_t)cv->kh * cv->kw, &w_elems))
		return -E2BIG;
	if ((ret = nasops_check_range(cv->weight, cv->weight_off, w_elems)) < 0)
		return ret;
	if (cv->bias && (ret = nasops_check_range(cv->bias, cv->bias_off, cv->c_out)) < 0)
		return ret;
	return 0;
}

int nasops_conv(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
		const struct rxd_nas_conv *cv, const struct rxd_nas_tensor *y,
		const struct rxd_nas_write *wr, struct rxd_nas_span *span)
{
	int ret;

	if ((ret = nasops_conv_check(x, cv, y, wr)) < 0)
		return ret;
	if (nasops_streams(ops, x->n, x->c, cv, (int64_t)y->h * y->w))
		return nasops_conv_stream(ops, x, cv, y, wr, span);
	if (ops->pw_direct && nasops_pw_fits(cv, NULL) &&
	    (ret = nasops_conv_pw(ops, x, cv, NULL, y, wr, span)) != -ENOSPC)
		return ret;
	if (cv->groups == 1 && ops->eng)
		return nasops_conv_gemm(ops, x, cv, y, wr, span);
	if (ops->dw_rows && cv->groups == x->c && cv->c_out == x->c &&
	    (int64_t)x->n * x->c <= INT_MAX &&
	    (ret = nasops_conv_dwr(ops, x, cv, y, wr, span)) != -ENOSPC)
		return ret;
	if (ops->dw_tiled && cv->groups == x->c && cv->c_out == x->c &&
	    (int64_t)x->n * x->c <= INT_MAX)
		return nasops_conv_dw(ops, x, cv, y, wr, span);
	return nasops_conv_direct(ops, x, cv, y, wr, span);
}

int nasops_dwpw(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
		const struct rxd_nas_conv *dw, const struct rxd_nas_tensor *mid,
		const struct rxd_nas_conv *pw, const struct rxd_nas_tensor *y,
		const struct rxd_nas_write *wr, struct rxd_nas_span *span)
{
	const struct rxd_nas_write put = { 0, false, 1.0f, NULL, 0, 0.0f };
	int ret;

	if (!ops->dwpw_fused || dw->groups != x->c || !nasops_pw_fits(pw, dw)) {
		ret = nasops_conv(ops, x, dw, mid, &put, span);
		return ret < 0 ? ret : nasops_conv(ops, mid, pw, y, wr, span);
	}
	/* The same checks as the two steps', and x and y apart (mid is never touched). */
	if ((ret = nasops_conv_check(x, dw, mid, &put)) < 0 ||
	    (ret = nasops_conv_check(mid, pw, y, wr)) < 0 ||
	    (ret = nasops_check_io(x, y, pw->c_out, wr)) < 0)
		return ret;
	ret = nasops_conv_pw(ops, x, pw, dw, y, wr, span);
	if (ret != -ENOSPC)
		return ret;
	ret = nasops_conv(ops, x, dw, mid, &put, span);
	return ret < 0 ? ret : nasops_conv(ops, mid, pw, y, wr, span);
}

/* ---- pooling, copies, zeros, global pooling, linear --------------------------------- */

int nasops_pool(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
		const struct rxd_nas_pool *p, const struct rxd_nas_tensor *y,
		const struct rxd_nas_write *wr, struct rxd_nas_span *span)
{
	cl_ulong x_off = (cl_ulong)x->off, y_off = (cl_ulong)y->off;
	cl_int acc = wr->accumulate, is_avg = p->kind == RXD_NAS_POOL_AVG;
	int ret;

	if ((ret = nasops_check_io(x, y, x->c, wr)) < 0)
		return ret;
	/* A pad of more than half the window would leave windows wholly in the padding. */
	if ((p->kind != RXD_NAS_POOL_MAX && p->kind != RXD_NAS_POOL_AVG) || p->kh < 1 ||
	    p->kw < 1 || p->pad_h > p->kh / 2 || p->pad_w > p->kw / 2 ||
	    nasops_out_dim(x->h, p->kh, p->stride_h, p->pad_h, 1) != y->h ||
	    nasops_out_dim(x->w, p->kw, p->stride_w, p->pad_w, 1) != y->w)
		return -EINVAL;
	ret = nasops_args(ops, RXD_NAS_K_POOL, sizeof(cl_mem), &x->mem, sizeof(cl_ulong), &x_off,
			  sizeof(cl_int), &x->c, sizeof(cl_int), &x->h, sizeof(cl_int), &x->w,
			  sizeof(cl_mem), &y->mem, sizeof(cl_ulong), &y_off, sizeof(cl_int), &y->c,
			  sizeof(cl_int), &wr->c_off, sizeof(cl_int), &y->h, sizeof(cl_int), &y->w,
			  sizeof(cl_int), &p->kh, sizeof(cl_int), &p->kw, sizeof(cl_int),
			  &p->stride_h, sizeof(cl_int), &p->stride_w, sizeof(cl_int), &p->pad_h,
			  sizeof(cl_int), &p->pad_w, sizeof(cl_int), &is_avg, sizeof(cl_int), &acc,
			  sizeof(float), &wr->scale, (size_t)0);
	if (ret == 0)
		ret = nasops_add_args(ops, RXD_NAS_K_POOL, 20, y, wr);
	if (ret < 0)
		return ret;
	return nasops_launch(ops, RXD_NAS_K_POOL, (size_t)y->h * (size_t)y->w, (size_t)x->c,
			     (size_t)x->n, 0, span);
}

int nasops_copy(struct rxd_nasops *ops, const struct rxd_nas_tensor *x, bool relu_in,
		const struct rxd_nas_tensor *y, const struct rxd_nas_write *wr,
		struct rxd_nas_span *span)
{
	cl_ulong x_off = (cl_ulong)x->off, y_off = (cl_ulong)y->off;
	cl_int hw, relu = relu_in;
	cl_int acc = wr->accumulate;
	int ret;

	if ((ret = nasops_check_io(x, y, x->c, wr)) < 0)
		return ret;
	if (x->h != y->h || x->w != y->w)
		return -EINVAL;
	hw = x->h * x->w;
	ret = nasops_args(ops, RXD_NAS_K_COPY, sizeof(cl_mem), &x->mem, sizeof(cl_ulong), &x_off,
			  sizeof(cl_int), &x->c, sizeof(cl_int), &hw, sizeof(cl_mem), &y->mem,
			  sizeof(cl_ulong), &y_off, sizeof(cl_int), &y->c, sizeof(cl_int),
			  &wr->c_off, sizeof(cl_int), &relu, sizeof(cl_int), &acc, sizeof(float),
			  &wr->scale, (size_t)0);
	if (ret == 0)
		ret = nasops_add_args(ops, RXD_NAS_K_COPY, 11, y, wr);
	if (ret < 0)
		return ret;
	return nasops_launch(ops, RXD_NAS_K_COPY, (size_t)hw, (size_t)x->c, (size_t)x->n, 0, span);
}

int nasops_zero(struct rxd_nasops *ops, int32_t c, const struct rxd_nas_tensor *y,
		const struct rxd_nas_write *wr, struct rxd_nas_span *span)
{
	cl_ulong y_off = (cl_ulong)y->off;
	cl_int hw;
	int ret;

	if ((ret = nasops_check_io(NULL, y, c, wr)) < 0)
		return ret;
	if (wr->add)
		return -EINVAL;
	if (wr->accumulate)
		return 0; /* adding zeros */
	hw = y->h * y->w;
	ret = nasops_args(ops, RXD_NAS_K_ZERO, sizeof(cl_mem), &y->mem, sizeof(cl_ulong), &y_off,
			  sizeof(cl_int), &y->c, sizeof(cl_int), &wr->c_off, sizeof(cl_int), &hw,
			  (size_t)0);
	if (ret < 0)
		return ret;
	return nasops_launch(ops, RXD_NAS_K_ZERO, (size_t)hw, (size_t)c, (size_t)y->n, 0, span);
}

int nasops_gap(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
	       const struct rxd_nas_tensor *y, const struct rxd_nas_write *wr,
	       struct rxd_nas_span *span)
{
	cl_ulong x_off = (cl_ulong)x->off, y_off = (cl_ulong)y->off;
	cl_int hw, acc = wr->accumulate;
	size_t local = 1, max;
	int ret;

	if ((ret = nasops_check_io(x, y, x->c, wr)) < 0)
		return ret;
	if (y->h != 1 || y->w != 1 || wr->add)
		return -EINVAL;
	hw = x->h * x->w;
	/* A power of two (the reduction halves it), no larger than the plane needs. */
	max = ops->wg[RXD_NAS_K_GAP] < 256 ? ops->wg[RXD_NAS_K_GAP] : 256;
	while (2 * local <= max && local < (size_t)hw)
		local *= 2;
	ret = nasops_args(ops, RXD_NAS_K_GAP, sizeof(cl_mem), &x->mem, sizeof(cl_ulong), &x_off,
			  sizeof(cl_int), &x->c, sizeof(cl_int), &hw, sizeof(cl_mem), &y->mem,
			  sizeof(cl_ulong), &y_off, sizeof(cl_int), &y->c, sizeof(cl_int),
			  &wr->c_off, sizeof(cl_int), &acc, sizeof(float), &wr->scale,
			  local * sizeof(float), NULL, (size_t)0);
	if (ret < 0)
		return ret;
	return nasops_launch(ops, RXD_NAS_K_GAP, local, (size_t)x->c, (size_t)x->n, local, span);
}

int nasops_linear(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
		  const struct rxd_nas_linear *l, const struct rxd_nas_tensor *y,
		  const struct rxd_nas_write *wr, struct rxd_nas_span *span)
{
	const int64_t in = (int64_t)x->c * x->h * x->w;
	/* Column-major: Y^T (out x n, ld ctot) = op(A) B, with A = W as stored ([out][in] is
	 * an in x out column-major matrix, taken transposed) and B = X^T (in x n, ld in). */
	struct rxd_gemm g = { .m = l->out, .n = x->n, .k = in, .trans_a = true,
			      .alpha = wr->scale, .beta = wr->accumulate ? 1.0f : 0.0f,
			      .lda = in, .ldb = in, .ldc = y->c, .batch_count = 1 };
	cl_ulong x_off = (cl_ulong)x->off, y_off = (cl_ulong)y->off;
	cl_ulong w_off = (cl_ulong)l->weight_off, b_off = (cl_ulong)l->bias_off;
	cl_int in32 = (cl_int)in;
	cl_int has_bias = l->bias != NULL, acc = wr->accumulate;
	int ret;

	if ((ret = nasops_check_io(x, y, l->out, wr)) < 0)
		return ret;
	if (y->h != 1 || y->w != 1 || wr->add)
		return -EINVAL;
	if ((ret = nasops_check_range(l->weight, l->weight_off, (int64_t)l->out * in)) < 0)
		return ret;
	if (l->bias && (ret = nasops_check_range(l->bias, l->bias_off, l->out)) < 0)
		return ret;
	if (ops->eng && gemm_prepare_at(ops->eng, gemm_choose(ops->eng, &g)) == 0) {
		if (l->bias) {
			ret = nasops_bias(ops, y, l->out, 1, l->bias, l->bias_off, wr, span);
			if (ret < 0)
				return ret;
			g.beta = 1.0f;
		}
		return nasops_gemm(ops, &g, l->weight, l->weight_off, x->mem, x->off, y->mem,
				   y->off + wr->c_off, span);
	}
	ret = nasops_args(ops, RXD_NAS_K_LINEAR, sizeof(cl_mem), &x->mem, sizeof(cl_ulong), &x_off,
			  sizeof(cl_int), &in32, sizeof(cl_mem), &l->weight, sizeof(cl_ulong), &w_off,
			  sizeof(cl_mem), NASOPS_MEM_OR(l->bias, l->weight), sizeof(cl_ulong), &b_off,
			  sizeof(cl_int), &has_bias, sizeof(cl_mem), &y->mem, sizeof(cl_ulong), &y_off,
			  sizeof(cl_int), &y->c, sizeof(cl_int), &wr->c_off, sizeof(cl_int), &l->out,
			  sizeof(cl_int), &acc, sizeof(float), &wr->scale, (size_t)0);
	if (ret < 0)
		return ret;
	return nasops_launch(ops, RXD_NAS_K_LINEAR, (size_t)l->out, (size_t)x->n, 1, 0, span);
}

/* ---- start-up: building and the self-test --------------------------------------------- */

/* The plain loops the self-test compares against (the test suite has its own). */
static void nasops_ref_conv(const float *x, int n, int cin, int h, int w,
			    const struct rxd_nas_conv *cv, const float *wt, const float *bias,
			    float *y, int ctot, int ho, int wo, const struct rxd_nas_write *wr)
{
	int cpg = cin / cv->groups, opg = cv->c_out / cv->groups, s = cv->in_shift;

	for (int b = 0; b < n; b++)
		for (int co = 0; co < cv->c_out; co++)
			for (int oh = 0; oh < ho; oh++)
				for (int ow = 0; ow < wo; ow++) {
					double sum = bias ? bias[co] : 0.0;
					float *out;
					for (int ci = 0; ci < cpg; ci++)
						for (int i = 0; i < cv->kh; i++)
							for (int j = 0; j < cv->kw; j++) {
								int ih = oh * cv->stride_h - cv->pad_h + i * cv->dil_h;
								int iw = ow * cv->stride_w - cv->pad_w + j * cv->dil_w;
								float v;
								if (ih < 0 || iw < 0 || ih >= h - s || iw >= w - s)
									continue;
								v = x[((b * cin + (co / opg) * cpg + ci) * h + ih + s) * w + iw + s];
								if (cv->relu_in && v < 0)
									v = 0;
								sum += (double)v * wt[((co * cpg + ci) * cv->kh + i) * cv->kw + j];
							}
					out = &y[((b * ctot + wr->c_off + co) * ho + oh) * wo + ow];
					*out = (float)(wr->scale * sum + (wr->accumulate ? *out : 0.0));
				}
}

/* Three buffers for a self-test: read, read, written. They come from the engine's
 * budget when there is one, so that even the daemon's start-up checks are accounted.
 * host[i] (may be NULL) is copied in. 0 or -ENOMEM / -EIO. */
static int nasops_test_buffers(struct rxd_nasops *ops, const uint64_t bytes[3],
			       const void *const host[3], cl_mem mem[3], struct rxd_budget_res *res)
{
	cl_int e = CL_SUCCESS;

	mem[0] = mem[1] = mem[2] = NULL;
	if (ops->eng) {
		if (gemm_buffers_get(ops->eng, res, bytes, mem, &e) < 0)
			return -ENOMEM;
	} else {
		for (int i = 0; i < 3; i++)
			if (!(mem[i] = clCreateBuffer(ops->dev->ctx, CL_MEM_READ_WRITE, bytes[i], NULL,
						      &e)))
				return -ENOMEM;
	}
	for (int i = 0; i < 3; i++)
		if (host[i] && clEnqueueWriteBuffer(ops->dev->queue, mem[i], CL_TRUE, 0, bytes[i],
						    host[i], 0, NULL, NULL) != CL_SUCCESS)
			return -EIO;
	return 0;
}

static void nasops_test_buffers_put(struct rxd_nasops *ops, struct rxd_budget_res *res,
				    cl_mem mem[3])
{
	clFinish(ops->dev->queue);
	if (ops->eng) {
		gemm_buffers_put(ops->eng, res, mem);
		return;
	}
	for (int i = 0; i < 3; i++)
		if (mem[i])
			clReleaseMemObject(mem[i]);
}

/* One convolution on the device and by nasops_ref_conv; 0 when they agree. */
static int nasops_selftest_conv(struct rxd_nasops *ops, int n, int cin, int h, int w,
				const struct rxd_nas_conv *cv0, const struct rxd_nas_write *wr)
{
	struct rxd_nas_conv cv = *cv0;
	int ho = nasops_out_dim(h - cv.in_shift, cv.kh, cv.stride_h, cv.pad_h, cv.dil_h);
	int wo = nasops_out_dim(w - cv.in_shift, cv.kw, cv.stride_w, cv.pad_w, cv.dil_w);
	int ctot = wr->c_off + cv.c_out + 1;
	size_t nx = (size_t)n * cin * h * w, ny = (size_t)n * ctot * ho * wo;
	size_t nw = (size_t)cv.c_out * (cin / cv.groups) * cv.kh * cv.kw;
	float *x = malloc(nx * 4), *y = malloc(ny * 4), *want = malloc(ny * 4);
	float *wt = malloc((nw + (size_t)cv.c_out) * 4), *got = malloc(ny * 4);
	cl_mem mem[3] = { NULL }, mx, my, mw;
	struct rxd_budget_res res = { 0 };
	struct rxd_nas_tensor tx = { .n = n, .c = cin, .h = h, .w = w };
	struct rxd_nas_tensor ty = { .n = n, .c = ctot, .h = ho, .w = wo };
	uint32_t seed = 7;
	int ret = -ENOMEM;

	if (!x || !y || !want || !wt || !got)
		goto out;
	/* Small integers and halves: every sum is exact in float, so equality is the test. */
#define NASOPS_RAND() ((float)((int)((seed = seed * 1103515245u + 12345u) >> 16) % 9 - 4) * 0.5f)
	for (size_t i = 0; i < nx; i++)
		x[i] = NASOPS_RAND();
	for (size_t i = 0; i < nw + (size_t)cv.c_out; i++)
		wt[i] = NASOPS_RAND();
	for (size_t i = 0; i < ny; i++)
		y[i] = want[i] = NASOPS_RAND();
#undef NASOPS_RAND
	ret = -EIO;
	{
		const uint64_t bytes[3] = { nx * 4, (nw + (size_t)cv.c_out) * 4, ny * 4 };
		const void *const host[3] = { x, wt, y };

		if (nasops_test_buffers(ops, bytes, host, mem, &res) < 0)
			goto out;
	}
	mx = mem[0], mw = mem[1], my = mem[2];
	tx.mem = mx, ty.mem = my;
	cv.weight = mw, cv.weight_off = 0, cv.bias = mw, cv.bias_off = (int64_t)nw;
	if (nasops_conv(ops, &tx, &cv, &ty, wr, NULL) < 0 ||
	    clEnqueueReadBuffer(ops->dev->queue, my, CL_TRUE, 0, ny * 4, got, 0, NULL, NULL) !=
		    CL_SUCCESS)
		goto out;
	nasops_ref_conv(x, n, cin, h, w, &cv, wt, wt + nw, want, ctot, ho, wo, wr);
	ret = memcmp(got, want, ny * 4) == 0 ? 0 : -EIO;
	if (ret < 0)
		log_msg(LOG_WARNING, "nas.cl: a %dx%d convolution (groups %d, stride %d) gives "
				     "wrong results on this device",
			cv.kh, cv.kw, cv.groups, cv.stride_h);
out:
	nasops_test_buffers_put(ops, &res, mem);
	free(x), free(y), free(want), free(wt), free(got);
	return ret;
}

/* Read n floats of mem and compare them with want, within a relative tol. */
static int nasops_selftest_check(struct rxd_nasops *ops, cl_mem mem, const float *want, size_t n,
				 float tol, const char *what)
{
	float got[128];

	if (n > 128 || clEnqueueReadBuffer(ops->dev->queue, mem, CL_TRUE, 0, n * sizeof(float), got,
					  0, NULL, NULL) != CL_SUCCESS)
		return -EIO;
	for (size_t i = 0; i < n; i++)
		if (!(fabsf(got[i] - want[i]) <= tol * (1.0f + fabsf(want[i])))) {
			log_msg(LOG_WARNING, "nas.cl: %s gives wrong results on this device (%g, "
					     "want %g)",
				what, (double)got[i], (double)want[i]);
			return -EIO;
		}
	return 0;
}

/* Pooling (max; average without the padding, both strided), copy with ReLU, global
 * pooling and a linear layer on one small batch, beside plain loops. */
static int nasops_selftest_small(struct rxd_nasops *ops)
{
	enum { N = 2, C = 3, H = 5, W = 4, HO = 3, WO = 2, OUT = 4 };
	float x[N * C * H * W], wt[OUT * C + OUT], want[N * C * H * W];
	const struct rxd_nas_write put = { .c_off = 0, .accumulate = false, .scale = 1.0f };
	struct rxd_nas_pool pool = { .kh = 3, .kw = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1,
				     .pad_w = 1 };
	struct rxd_nas_linear lin = { .out = OUT, .bias_off = OUT * C };
	struct rxd_nas_tensor tx = { .n = N, .c = C, .h = H, .w = W }, ty = tx, tp, tg, tl;
	cl_mem mem[3] = { NULL }, mx, my, mw;
	struct rxd_budget_res res = { 0 };
	const uint64_t bytes[3] = { sizeof(x), sizeof(wt), sizeof(x) };
	const void *const host[3] = { x, wt, NULL };
	int ret = -EIO;

	for (int i = 0; i < N * C * H * W; i++)
		x[i] = (float)((i * 7) % 11 - 5) * 0.25f;
	for (int i = 0; i < OUT * C + OUT; i++)
		wt[i] = (float)((i * 5) % 7 - 3) * 0.5f;
	if (nasops_test_buffers(ops, bytes, host, mem, &res) < 0)
		goto out;
	mx = mem[0], mw = mem[1], my = mem[2];
	tx.mem = mx, ty.mem = my;
	tp = ty, tp.h = HO, tp.w = WO;
	tg = ty, tg.h = tg.w = 1;
	tl = tg, tl.c = OUT;
	lin.weight = lin.bias = mw;
	for (int kind = 0; kind < 2; kind++) {
		pool.kind = kind;
		for (int b = 0; b < N * C; b++)
			for (int oh = 0; oh < HO; oh++)
				for (int ow = 0; ow < WO; ow++) {
					float sum = 0.0f, best = -INFINITY;
					int count = 0;
					for (int ih = 2 * oh - 1; ih <= 2 * oh + 1; ih++)
						for (int iw = 2 * ow - 1; iw <= 2 * ow + 1; iw++)
							if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
								float v = x[(b * H + ih) * W + iw];
								sum += v, count++;
								best = v > best ? v : best;
							}
					want[(b * HO + oh) * WO + ow] =
						kind == RXD_NAS_POOL_AVG ? sum / (float)count : best;
				}
		if (nasops_pool(ops, &tx, &pool, &tp, &put, NULL) < 0 ||
		    nasops_selftest_check(ops, my, want, N * C * HO * WO, 1e-5f,
					  kind ? "average pooling" : "max pooling") < 0)
			goto out;
	}
	for (int i = 0; i < N * C * H * W; i++)
		want[i] = x[i] > 0.0f ? x[i] : 0.0f;
	if (nasops_copy(ops, &tx, true, &ty, &put, NULL) < 0 ||
	    nasops_selftest_check(ops, my, want, N * C * H * W, 0.0f, "copy") < 0)
		goto out;
	for (int b = 0; b < N * C; b++) {
		want[b] = 0.0f;
		for (int i = 0; i < H * W; i++)
			want[b] += x[b * H * W + i] / (float)(H * W);
	}
	if (nasops_gap(ops, &tx, &tg, &put, NULL) < 0 ||
	    nasops_selftest_check(ops, my, want, N * C, 1e-5f, "global pooling") < 0)
		goto out;
	/* The linear layer reads the pooled features from my and writes past them. */
	tl.off = N * C;
	for (int b = 0; b < N; b++)
		for (int o = 0; o < OUT; o++) {
			float v = wt[OUT * C + o];
			for (int c = 0; c < C; c++)
				v += want[b * C + c] * wt[o * C + c];
			want[N * C + b * OUT + o] = v;
		}
	if (nasops_linear(ops, &tg, &lin, &tl, &put, NULL) < 0 ||
	    nasops_selftest_check(ops, my, want, N * C + N * OUT, 1e-5f, "the linear layer") < 0)
		goto out;
	ret = 0;
out:
	nasops_test_buffers_put(ops, &res, mem);
	return ret;
}

/* A depthwise convolution then a 1x1 through nasops_dwpw (fused or not), beside
 * nasops_ref_conv twice; 0 when they agree. Exact: small integers and halves. */
static int nasops_selftest_dwpw(struct rxd_nasops *ops)
{
	enum { N = 2, C = 5, H = 7, W = 6, K = 3, CO = 4, HO = 4, WO = 3, CTOT = CO + 1 };
	struct rxd_nas_conv dw = { .c_out = C, .kh = K, .kw = K, .stride_h = 2, .stride_w = 2,
				   .pad_h = 2, .pad_w = 2, .dil_h = 2, .dil_w = 2, .groups = C,
				   .relu_in = true };
	struct rxd_nas_conv pw = { .c_out = CO, .kh = 1, .kw = 1, .stride_h = 1, .stride_w = 1,
				   .dil_h = 1, .dil_w = 1, .groups = 1 };
	const struct rxd_nas_write acc = { .c_off = 1, .accumulate = true, .scale = 0.5f };
	const struct rxd_nas_write put = { .c_off = 0, .accumulate = false, .scale = 1.0f };
	enum { NX = N * C * H * W, NM = N * C * HO * WO, NY = N * CTOT * HO * WO };
	enum { NW = C * K * K + C + CO * C + CO };
	float x[NX], wt[NW], y[NY + NM], mid[NM];
	struct rxd_nas_tensor tx = { .n = N, .c = C, .h = H, .w = W };
	struct rxd_nas_tensor tm = { .off = NY, .n = N, .c = C, .h = HO, .w = WO };
	struct rxd_nas_tensor ty = { .off = 0, .n = N, .c = CTOT, .h = HO, .w = WO };
	cl_mem mem[3] = { NULL };
	struct rxd_budget_res res = { 0 };
	const uint64_t bytes[3] = { sizeof(x), sizeof(wt), sizeof(y) };
	const void *const host[3] = { x, wt, y };
	uint32_t seed = 11;
	int ret = -EIO;

#define NASOPS_RAND() ((float)((int)((seed = seed * 1103515245u + 12345u) >> 16) % 9 - 4) * 0.5f)
	for (int i = 0; i < NX; i++)
		x[i] = NASOPS_RAND();
	for (int i = 0; i < NW; i++)
		wt[i] = NASOPS_RAND();
	for (int i = 0; i < NY + NM; i++)
		y[i] = NASOPS_RAND();
#undef NASOPS_RAND
	if (nasops_test_buffers(ops, bytes, host, mem, &res) < 0)
		goto out;
	tx.mem = mem[0], tm.mem = ty.mem = mem[2];
	dw.weight = dw.bias = pw.weight = pw.bias = mem[1];
	dw.bias_off = C * K * K, pw.weight_off = C * K * K + C, pw.bias_off = NW - CO;
	if (nasops_dwpw(ops, &tx, &dw, &tm, &pw, &ty, &acc, NULL) < 0)
		goto out;
	nasops_ref_conv(x, N, C, H, W, &dw, wt, wt + dw.bias_off, mid, C, HO, WO, &put);
	nasops_ref_conv(mid, N, C, HO, WO, &pw, wt + pw.weight_off, wt + pw.bias_off, y, CTOT, HO,
			WO, &acc);
	ret = nasops_selftest_check(ops, mem[2], y, NY, 0.0f, "a depthwise then 1x1 convolution");
out:
	nasops_test_buffers_put(ops, &res, mem);
	return ret;
}

/* The depthwise kernel in use (a dilated, strided convolution with ReLU) and, with an engine,
 * both GEMM paths (1x1 in place; 3x3 through im2col), into slices with accumulation; then
 * every other step kind. */
static int nasops_selftest(struct rxd_nasops *ops)
{
	const struct rxd_nas_write acc = { .c_off = 2, .accumulate = true, .scale = 0.5f };
	const struct rxd_nas_write put = { .c_off = 1, .accumulate = false, .scale = 1.0f };
	const struct rxd_nas_conv dw = { .c_out = 5, .kh = 3, .kw = 3, .stride_h = 2,
					 .stride_w = 2, .pad_h = 2, .pad_w = 2, .dil_h = 2,
					 .dil_w = 2, .groups = 5, .relu_in = true };
	/* nas_dwrv's case, where it is on: stride 1, the padding that keeps the plane, a
	 * width of 8. */
	const struct rxd_nas_conv dwv = { .c_out = 4, .kh = 5, .kw = 5, .stride_h = 1,
					  .stride_w = 1, .pad_h = 4, .pad_w = 4, .dil_h = 2,
					  .dil_w = 2, .groups = 4, .relu_in = true };
	const struct rxd_nas_conv pw = { .c_out = 7, .kh = 1, .kw = 1, .stride_h = 1,
					 .stride_w = 1, .dil_h = 1, .dil_w = 1, .groups = 1 };
	/* nas_pwv's case, where it is on: cin and the plane multiples of 4 (and with a plane
	 * of 25, nas_pws's). */
	const struct rxd_nas_conv pw4 = { .c_out = 9, .kh = 1, .kw = 1, .stride_h = 1,
					  .stride_w = 1, .dil_h = 1, .dil_w = 1, .groups = 1,
					  .relu_in = true };
	const struct rxd_nas_conv k3 = { .c_out = 6, .kh = 3, .kw = 3, .stride_h = 1,
					 .stride_w = 1, .pad_h = 1, .pad_w = 1, .dil_h = 1,
					 .dil_w = 1, .groups = 1, .relu_in = true };

	const uint32_t wide = ops->ps_wide;
	int ret = -EIO;

	if (nasops_selftest_conv(ops, 2, 5, 9, 7, &dw, &acc) < 0 ||
	    nasops_selftest_conv(ops, 2, 4, 7, 8, &dwv, &put) < 0 ||
	    nasops_selftest_small(ops) < 0 || nasops_selftest_dwpw(ops) < 0)
		return -EIO;
	/* The dense ones with the streamed kernels' narrow variants, then their wide ones
	 * (where those are on), whichever these small shapes would take. */
	for (int pass = 0; pass < 2; pass++) {
		ops->ps_wide = pass == 0 ? UINT32_MAX : 0;
		if (nasops_selftest_conv(ops, 3, 5, 5, 6, &pw, &put) < 0 ||
		    nasops_selftest_conv(ops, 2, 8, 4, 6, &pw4, &acc) < 0 ||
		    nasops_selftest_conv(ops, 2, 8, 5, 5, &pw4, &put) < 0 ||
		    nasops_selftest_conv(ops, 2, 3, 6, 5, &k3, &acc) < 0)
			goto out;
	}
	ret = 0;
out:
	ops->ps_wide = wide;
	return ret;
}

/* RXGEMMD_NAS_KERNELS, a testing knob for comparing kernels on one device: "new" takes
 * dense 1x1 convolutions through nas_pw and each DWPW as one fused nas_pw; "old" takes
 * neither (the GEMM engine, im2col for a ReLU on the input, and the depthwise kernel then
 * the GEMM); a comma-separated list of "pw", "dwpw", "pws", "pwv" and "cvs" takes those
 * only (pws: dense 1x1 convolutions through nas_pws; pwv: the same with nas_pwv where its
 * float4s fit; cvs: other dense ones through nas_cvs). "auto" (or unset) is pwv and cvs
 * on GPUs and old on other devices, as measured with DARTS_V2 (2026-12-03): on the H200
 * nas_pws takes CIFAR at batch 256 from 54.7 to 28.1 ms and at 64 from 17.0 to 11.4 (with
 * nas_dwr), nas_cvs ImageNet's stem at batch 256 from 6.0 to 3.6 ms, nas_pwv with the
 * 4x16 tile ImageNet at batch 256 from 30.8 to 28.4 ms and CIFAR from 28.3 to 27.1
 * against nas_pws at 4x8 (2026-12-04; at 4x8 nas_pwv gained nothing), and where their
 * loop is long and the launch small the engine keeps
 * the convolution (nasops_stream_short); on PoCL nas_pws is 2.2 times slower at batch 1
 * and 8, where the engine's blocking for the caches wins. nas_pw, slower than both on
 * both (the H200: 35.2 ms against 7.2 at batch 1), stays a choice. Anything else is
 * refused (-EINVAL): a comparison must not silently measure the wrong kernels. nas_pw
 * also needs its smallest tile's local memory, so that it never has to give a
 * convolution back (nasops_conv_scratch_bytes counts on that). */
static int nasops_kernels_env(struct rxd_nasops *ops)
{
	const char *env = getenv("RXGEMMD_NAS_KERNELS");
	bool pw = true, dwpw = true, pws = false, pwv = false, cvs = false;

	if (!env || !*env || strcmp(env, "auto") == 0) {
		pw = dwpw = false;
		pws = pwv = cvs = strcmp(ops->dev->desc->type, "GPU") == 0;
	} else if (strcmp(env, "new") != 0) {
		char buf[64], *save = NULL;

		pw = dwpw = false;
		if (strlen(env) >= sizeof(buf))
			goto bad;
		strcpy(buf, env);
		for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			if (strcmp(t, "pw") == 0)
				pw = true;
			else if (strcmp(t, "dwpw") == 0)
				dwpw = true;
			else if (strcmp(t, "pws") == 0)
				pws = true;
			else if (strcmp(t, "pwv") == 0)
				pws = pwv = true;
			else if (strcmp(t, "cvs") == 0)
				cvs = true;
			else if (strcmp(t, "old") != 0)
				goto bad;
		}
	}
	if (ops->pw_local_bytes <
	    NASOPS_PW_KS * ((size_t)ops->pw_rp + 16 * (size_t)ops->pw_rc + 1) * sizeof(float))
		pw = dwpw = false;
	ops->pw_direct = pw;
	ops->dwpw_fused = dwpw;
	ops->pw_stream = pws;
	ops->pw_vec = pwv;
	ops->conv_stream = cvs;
	return 0;
bad:
	log_msg(LOG_ERR,
		"RXGEMMD_NAS_KERNELS=%s: not new, old or a list of pw, dwpw, pws, pwv and cvs",
		env);
	return -EINVAL;
}

/* A register tile from the testing knob name, PxC: P pixels by C channels a work-item,
 * each a power of two up to most; unset, *p and *c keep their defaults. Anything else:
 * -EINVAL. RXGEMMD_NAS_PW_TILE is nas_pw's (each up to 8, default 4x4),
 * RXGEMMD_NAS_PWS_TILE nas_pws's, nas_pwv's (its channels) and nas_cvs's (up to 32,
 * default 4x16: on the H200 with nas_pwv, DARTS_V2 at batch 256 took 27.1 ms on CIFAR and
 * 28.4 on ImageNet at 4x16, 29.7 and 30.8 at 4x8, 29.7 and 33.3 at 2x8, 27.5 and 36.2 at
 * 2x16, 29.7 and 34.3 at 8x8, 2026-12-04; the sums of the steps' profiled times). */
static int nasops_tile_env(const char *name, int most, int *p, int *c)
{
	const char *env = getenv(name);
	int rp = *p, rc = *c, end = 0;

	if (env && *env &&
	    (sscanf(env, "%dx%d%n", &rp, &rc, &end) != 2 || env[end] != '\0' || rp < 1 ||
	     rp > most || (rp & (rp - 1)) || rc < 1 || rc > most || (rc & (rc - 1)))) {
		log_msg(LOG_ERR, "%s=%s: not PxC, each a power of two up to %d", name, env, most);
		return -EINVAL;
	}
	*p = rp;
	*c = rc;
	return 0;
}

/* RXGEMMD_NAS_PWS_WIDE, a testing knob: the work-items per compute unit from which a
 * streamed convolution takes the wide tile (nasops_stream_wide); 0 takes it always.
 * Default 256: on the H200 (2026-12-04) the 16-channel tile beat the 8-channel one on
 * every stride-1 1x1 of DARTS_V2 at batch 256, the smallest of them with 279 work-items
 * per unit (576 -> 144 on 8 x 8 planes, 2.88 -> 1.94 ms), and lost ImageNet at batch 1,
 * 16 and 64 as a whole (3.6 -> 4.9 ms at 1), where launches have tens to a few hundred.
 * Of 0, 128, 512, 1024 and never, none was faster at batch 64 or 256, and at 1 and 16
 * they differed within the calls' noise (0.25 ms). */
static int nasops_wide_env(struct rxd_nasops *ops)
{
	const char *env = getenv("RXGEMMD_NAS_PWS_WIDE");
	unsigned long v = 256;
	char *end = NULL;

	if (env && *env) {
		errno = 0;
		v = strtoul(env, &end, 10);
		if (errno || *end || env[0] == '-' || v > 1000000) {
			log_msg(LOG_ERR, "RXGEMMD_NAS_PWS_WIDE=%s: not a count of work-items up "
					 "to 1000000", env);
			return -EINVAL;
		}
	}
	ops->ps_wide = (uint32_t)v;
	return 0;
}

int nasops_init(struct rxd_nasops *ops, struct rxd_device *dev, struct rxd_gemm_engine *eng)
{
	const char *src = kernels_find("nas.cl");
	char *log = NULL, options[128];
	size_t item_max[3] = { 0 };
	cl_int e;
	int ret = -EIO;

	memset(ops, 0, sizeof(*ops));
	ops->dev = dev;
	ops->eng = eng;
	ops->scratch_max_bytes = NASOPS_SCRATCH_MAX < dev->max_alloc_bytes ? NASOPS_SCRATCH_MAX
									     : dev->max_alloc_bytes;
	if (!src)
		fatal("kernel source nas.cl is not embedded: the build is broken");
	ops->pw_rp = ops->pw_rc = 4;
	ops->ps_p = 4;
	ops->ps_c = 16;
	if (nasops_tile_env("RXGEMMD_NAS_PW_TILE", 8, &ops->pw_rp, &ops->pw_rc) < 0 ||
	    nasops_tile_env("RXGEMMD_NAS_PWS_TILE", 32, &ops->ps_p, &ops->ps_c) < 0 ||
	    nasops_wide_env(ops) < 0)
		goto fail;
	ops->ps_cn = ops->ps_c > 1 ? ops->ps_c / 2 : 1;
	snprintf(options, sizeof(options),
		 "-cl-std=CL1.1 -DPW_RP=%d -DPW_RC=%d -DPS_P=%d -DPS_C=%d -DPS_CN=%d", ops->pw_rp,
		 ops->pw_rc, ops->ps_p, ops->ps_c, ops->ps_cn);
	if (kcache_build(dev->kcache, dev, "nas.cl", src, options, &ops->program, &log) < 0) {
		log_msg(LOG_ERR, "nas.cl does not build on this device%s%s", log ? ":\n" : "",
			log ? log : "");
		free(log);
		goto fail;
	}
	clGetDeviceInfo(dev->desc->id, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof(item_max), item_max,
			NULL);
	memcpy(ops->item_max, item_max, sizeof(item_max));
	{
		cl_device_local_mem_type lmt = CL_GLOBAL;
		clGetDeviceInfo(dev->desc->id, CL_DEVICE_LOCAL_MEM_TYPE, sizeof(lmt), &lmt, NULL);
		const char *env = getenv("RXGEMMD_NAS_DEPTHWISE");

		/* nas_dwr for the eight windows it has, everywhere: on the H200 it takes a
		 * depthwise 3x3 of 36 planes of 32 x 32 at batch 256 from 136 us (nas_dwconv)
		 * to 51, and DARTS_V2 on PoCL at batch 8 from 1.47 to 1.11 s (2026-12-03).
		 * Other windows: nas_dwconv's tiles where local memory is the device's own.
		 * nas_dwrv (rows as float4s) where it fits: CIFAR's 3x3 of 36 planes of 32 x 32
		 * at batch 256 from 50.9 to 48.1 us, its dilated one from 54.9 to 48.1, the net
		 * from 25.2 to 24.7 ms on the H200, DARTS_V2 at batch 8 on PoCL from 583-673 to
		 * 506-529 ms (2026-12-04); "rows" takes nas_dwr alone. */
		ops->dw_rows = ops->dw_vec = true;
		ops->dw_tiled = lmt == CL_LOCAL;
		if (env && strcmp(env, "tiled") == 0)
			ops->dw_rows = ops->dw_vec = false, ops->dw_tiled = true;
		else if (env && strcmp(env, "direct") == 0)
			ops->dw_rows = ops->dw_vec = false, ops->dw_tiled = false;
		else if (env && strcmp(env, "rows") == 0)
			ops->dw_vec = false;
		else if (env && *env && strcmp(env, "auto") != 0)
			log_msg(LOG_WARNING, "RXGEMMD_NAS_DEPTHWISE=%s is not auto, rows, tiled or "
					     "direct: auto", env);
		/* Half the local memory: the work-group is then not alone on its unit. */
		ops->dw_local_bytes = (size_t)(dev->local_mem_bytes / 2);
		ops->pw_local_bytes = ops->dw_local_bytes;
		if (nasops_kernels_env(ops) < 0)
			goto fail;
	}
	for (int k = 0; k < RXD_NAS_KERNELS; k++) {
		ops->kernels[k] = clCreateKernel(ops->program, nasops_kernel_names[k], &e);
		if (!ops->kernels[k]) {
			log_msg(LOG_ERR, "nas.cl: clCreateKernel(%s): %s", nasops_kernel_names[k],
				device_strerror(e));
			goto fail;
		}
		clGetKernelWorkGroupInfo(ops->kernels[k], dev->desc->id, CL_KERNEL_WORK_GROUP_SIZE,
					 sizeof(size_t), &ops->wg[k], NULL);
		clGetKernelWorkGroupInfo(ops->kernels[k], dev->desc->id,
					 CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE,
					 sizeof(size_t), &ops->wg_multiple[k], NULL);
		if (item_max[0] && ops->wg[k] > item_max[0])
			ops->wg[k] = item_max[0];
		if (ops->wg[k] < 1)
			ops->wg[k] = 1;
	}
	if (nasops_selftest(ops) < 0)
		goto fail;
	nasops_release_scratch(ops); /* made by the self-tests; jobs make theirs in their budget */
	log_msg(LOG_INFO, "NAS kernels built and self-tested (convolutions: %s; 1x1: %s; "
			  "depthwise: %s; depthwise then 1x1: %s)",
		ops->conv_stream ? "nas_cvs" : eng ? "GEMM engine" : "direct",
		ops->pw_vec	 ? "nas_pwv, else nas_pws"
		: ops->pw_stream ? "nas_pws"
		: ops->pw_direct ? "nas_pw"
		: eng		 ? "GEMM"
				 : "direct",
		ops->dw_vec	 ? "rows, float4 where aligned"
		: ops->dw_rows ? "rows"
		: ops->dw_tiled ? "tiled"
				: "direct",
		ops->dwpw_fused ? "fused" : "two steps");
	return 0;
fail:
	nasops_fini(ops);
	return ret;
}

void nasops_fini(struct rxd_nasops *ops)
{
	for (int k = 0; k < RXD_NAS_KERNELS; k++)
		if (ops->kernels[k])
			clReleaseKernel(ops->kernels[k]);
	if (ops->program)
		clReleaseProgram(ops->program);
	if (ops->scratch && !ops->scratch_lent)
		clReleaseMemObject(ops->scratch);
	memset(ops, 0, sizeof(*ops));
}

/* nasgrad.c: the backward passes and optimiser updates of a DARTS search on the device
 * (kernels/nasgrad.cl); the interface is in nasgrad.h.
 *
 * Every function checks its shapes and ranges first, then enqueues without waiting, so a
 * refused step leaves nothing half done. Convolutions use direct kernels: the input's
 * gradient gathers per input element, the weights' reduces per weight in one work-group
 * (deterministic, no atomics), unless they are dense and there is a GEMM engine: then the
 * engine computes the columns' gradient W^T dy (col2im gathers it into dx) and the
 * weights' dW^T = col dy^T one image at a time (a batched GEMM would race on dW).
 *
 * Work-group sizes come from each kernel's device queries, never from device names. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "nasgrad.h"

static const char *const nasgrad_kernel_names[RXD_NASGRAD_KERNELS] = {
	[RXD_NASGRAD_K_CONV_DX] = "nasgrad_conv_dx",
	[RXD_NASGRAD_K_CONV_DW] = "nasgrad_conv_dw",
	[RXD_NASGRAD_K_POOL_DX] = "nasgrad_pool_dx",
	[RXD_NASGRAD_K_RELU_DX] = "nasgrad_relu_dx",
	[RXD_NASGRAD_K_GAP_DX] = "nasgrad_gap_dx",
	[RXD_NASGRAD_K_BN_FWD] = "nasgrad_bn_fwd",
	[RXD_NASGRAD_K_BN_BWD] = "nasgrad_bn_bwd",
	[RXD_NASGRAD_K_DOT] = "nasgrad_dot",
	[RXD_NASGRAD_K_SUM] = "nasgrad_sum",
	[RXD_NASGRAD_K_ALPHA] = "nasgrad_alpha",
	[RXD_NASGRAD_K_LINEAR_DX] = "nasgrad_linear_dx",
	[RXD_NASGRAD_K_LINEAR_DW] = "nasgrad_linear_dw",
	[RXD_NASGRAD_K_XENT] = "nasgrad_xent",
	[RXD_NASGRAD_K_SGD] = "nasgrad_sgd",
	[RXD_NASGRAD_K_ADAM] = "nasgrad_adam",
	[RXD_NASGRAD_K_CLIP] = "nasgrad_clip",
	[RXD_NASGRAD_K_IM2COL] = "nasgrad_im2col",
	[RXD_NASGRAD_K_COL2IM] = "nasgrad_col2im",
};

/* Partial sums of one dot product: enough work-groups to spread a large reduction over a
 * GPU's compute units, few enough that one work-group adds them up quickly. */
#define NASGRAD_DOT_CHUNKS_MAX 64

/* Columns are made for at most this many bytes of images at a time, as nasops.c does. */
#define NASGRAD_SCRATCH_MAX (64ull << 20)

/* ---- checking ----------------------------------------------------------------------- */

static bool nasgrad_overlap(cl_mem a, int64_t a_off, int64_t a_len, cl_mem b, int64_t b_off,
			    int64_t b_len)
{
	return a && a == b && a_off < b_off + b_len && b_off < a_off + a_len;
}

/* x and dy valid tensors of one batch, dy with room for c channels at wr->c_off, and a
 * wanted dst of dst_elems that fits and overlaps neither (kernels read neighbours). */
static int nasgrad_check_io(const struct rxd_nas_tensor *x, const struct rxd_nas_tensor *dy,
			    int32_t c, const struct rxd_nas_write *wr,
			    const struct rxd_nasgrad_dst *dst, int64_t dst_elems)
{
	int ret;

	if ((ret = nasops_check_tensor(x)) < 0 || (ret = nasops_check_tensor(dy)) < 0)
		return ret;
	if (x->n != dy->n || c < 1 || wr->c_off < 0 || wr->c_off > dy->c - c)
		return -EINVAL;
	if (!dst || !dst->mem)
		return 0;
	if ((ret = nasops_check_range(dst->mem, dst->off, dst_elems)) < 0)
		return ret;
	if (nasgrad_overlap(dst->mem, dst->off, dst_elems, x->mem, x->off, nasops_elems(x)) ||
	    nasgrad_overlap(dst->mem, dst->off, dst_elems, dy->mem, dy->off, nasops_elems(dy)))
		return -EINVAL;
	return 0;
}

/* ---- launching ---------------------------------------------------------------------- */

/* Kernel k's arguments, as device_kernel_args takes them. */
#define nasgrad_args(gr, k, ...) \
	device_kernel_args((gr)->kernels[k], nasgrad_kernel_names[k], __VA_ARGS__)

/* A reduction's local size: the largest power of two within the kernel's limit and 256.
 * It depends only on the device, so a result's order of additions does too. */
static size_t nasgrad_local_pow2(const struct rxd_nasgrad *gr, int k)
{
	size_t l = 1;

	while (2 * l <= gr->wg[k] && 2 * l <= 256)
		l *= 2;
	return l;
}

/* Enqueue kernel k over (groups0 work-groups of local0, or extent0 padded to the local
 * size when local0 is 0; extent1; extent2). */
static int nasgrad_launch(struct rxd_nasgrad *gr, int k, size_t extent0, size_t extent1,
			  size_t extent2, size_t local0, struct rxd_nas_span *span)
{
	size_t local[3] = { local0 ? local0
				   : device_kernel_local(gr->wg[k], gr->wg_multiple[k], extent0),
			    1, 1 };
	size_t global[3] = { (extent0 + local[0] - 1) / local[0] * local[0], extent1, extent2 };
	cl_event ev = NULL;
	int ret;

	ret = device_kernel_enqueue(gr->dev, gr->kernels[k], nasgrad_kernel_names[k], 3, NULL,
				    global, local, span ? &ev : NULL);
	if (ret == 0)
		nasops_span_add(span, ev);
	return ret;
}

/* Enqueue kernel k exactly global[0] x global[1] wide from offset[0], offset[1] (NULL:
 * 0), the runtime choosing the work-group size: for kernels that have no padding guard. */
static int nasgrad_launch_exact(struct rxd_nasgrad *gr, int k, const size_t offset[2],
				const size_t global[2], struct rxd_nas_span *span)
{
	cl_event ev = NULL;
	int ret;

	ret = device_kernel_enqueue(gr->dev, gr->kernels[k], nasgrad_kernel_names[k], 2, offset,
				    global, NULL, span ? &ev : NULL);
	if (ret == 0)
		nasops_span_add(span, ev);
	return ret;
}

/* A buffer argument the kernel does not read this time still needs a valid buffer. */
#define NASGRAD_MEM_OR(m, other) ((m) ? &(m) : &(other))

void nasgrad_release_scratch(struct rxd_nasgrad *gr)
{
	clFinish(gr->dev->queue);
	if (gr->scratch)
		clReleaseMemObject(gr->scratch);
	gr->scratch = NULL;
	gr->scratch_bytes = 0;
}

/* The scratch at least bytes; an old one still in use by enqueued kernels is freed by
 * OpenCL once they finish. */
static int nasgrad_scratch(struct rxd_nasgrad *gr, uint64_t bytes)
{
	cl_mem m;
	cl_int e;

	if (gr->scratch && gr->scratch_bytes >= bytes)
		return 0;
	if (bytes > gr->dev->max_alloc_bytes)
		return -E2BIG;
	m = clCreateBuffer(gr->dev->ctx, CL_MEM_READ_WRITE, (size_t)bytes, NULL, &e);
	if (!m) {
		log_msg(LOG_ERR, "nasgrad scratch of %llu bytes: %s", (unsigned long long)bytes,
			device_strerror(e));
		return -ENOMEM;
	}
	if (gr->scratch)
		clReleaseMemObject(gr->scratch);
	gr->scratch = m;
	gr->scratch_bytes = bytes;
	return 0;
}

/* out = scale * the sum of count partials from the scratch's element first (+ out). */
static int nasgrad_sum(struct rxd_nasgrad *gr, cl_int first, cl_int count, cl_mem out,
		       int64_t out_off, float scale, bool accumulate, struct rxd_nas_span *span)
{
	size_t local = nasgrad_local_pow2(gr, RXD_NASGRAD_K_SUM);
	cl_ulong o_off = (cl_ulong)out_off, p_off = (cl_ulong)first;
	cl_int acc = accumulate;
	int ret;

	ret = nasgrad_args(gr, RXD_NASGRAD_K_SUM, sizeof(cl_mem), &gr->scratch, sizeof(cl_ulong),
			   &p_off, sizeof(cl_int), &count, sizeof(cl_mem), &out, sizeof(cl_ulong),
			   &o_off, sizeof(float), &scale, sizeof(cl_int), &acc,
			   local * sizeof(float), NULL, (size_t)0);
	if (ret < 0)
		return ret;
	return nasgrad_launch(gr, RXD_NASGRAD_K_SUM, local, 1, 1, local, span);
}

/* out = scale * sum over rows r < rows of a[r] . b[r] (+ out), through the scratch. */
static int nasgrad_dot_rows(struct rxd_nasgrad *gr, cl_mem a, int64_t a_off, cl_int a_stride,
			    cl_mem b, int64_t b_off, cl_int b_stride, cl_int len, cl_int rows,
			    cl_mem out, int64_t out_off, float scale, bool accumulate,
			    struct rxd_nas_span *span)
{
	size_t local = nasgrad_local_pow2(gr, RXD_NASGRAD_K_DOT);
	size_t chunks = ((size_t)len + local - 1) / local;
	cl_ulong ao = (cl_ulong)a_off, bo = (cl_ulong)b_off;
	int ret;

	if (chunks > NASGRAD_DOT_CHUNKS_MAX)
		chunks = NASGRAD_DOT_CHUNKS_MAX;
	if ((ret = nasgrad_scratch(gr, (uint64_t)chunks * (uint64_t)rows * sizeof(float))) < 0)
		return ret;
	ret = nasgrad_args(gr, RXD_NASGRAD_K_DOT, sizeof(cl_mem), &a, sizeof(cl_ulong), &ao,
			   sizeof(cl_int), &a_stride, sizeof(cl_mem), &b, sizeof(cl_ulong), &bo,
			   sizeof(cl_int), &b_stride, sizeof(cl_int), &len, sizeof(cl_mem),
			   &gr->scratch, local * sizeof(float), NULL, (size_t)0);
	if (ret < 0)
		return ret;
	ret = nasgrad_launch(gr, RXD_NASGRAD_K_DOT, chunks * local, (size_t)rows, 1, local, span);
	if (ret < 0)
		return ret;
	return nasgrad_sum(gr, 0, (cl_int)(chunks * (size_t)rows), out, out_off, scale, accumulate,
			   span);
}

/* ---- convolution -------------------------------------------------------------------- */

/* One GEMM on the engine, its event added to span. */
static int nasgrad_gemm(struct rxd_nasgrad *gr, const struct rxd_gemm *g, cl_mem a, int64_t a_off,
			cl_mem b, int64_t b_off, cl_mem c, int64_t c_off, struct rxd_nas_span *span)
{
	int variant = gemm_choose(gr->eng, g);
	cl_event ev = NULL;
	cl_int e;

	e = gemm_enqueue_at(gr->eng, variant, g, a, a_off, b, b_off, c, c_off, span ? &ev : NULL);
	if (e != CL_SUCCESS) {
		log_msg(LOG_ERR, "GEMM %s (%lld x %lld x %lld, batch %lld): %s",
			gemm_variant_name(gr->eng, variant), (long long)g->m, (long long)g->n,
			(long long)g->k, (long long)g->batch_count, device_strerror(e));
		return device_cl_errno(e);
	}
	nasops_span_add(span, ev);
	return 0;
}

/* Enqueue the column kernel k (im2col or col2im) for images n0 .. n0 + count. */
static int nasgrad_cols(struct rxd_nasgrad *gr, int k, const struct rxd_nas_tensor *x,
			const struct rxd_nas_conv *cv, cl_int ho, cl_int wo,
			const struct rxd_nasgrad_dst *dx, cl_int n0, cl_int count,
			struct rxd_nas_span *span)
{
	cl_ulong x_off = (cl_ulong)x->off;
	cl_int relu = cv->relu_in;
	int ret;

	if (k == RXD_NASGRAD_K_IM2COL) {
		ret = nasgrad_args(gr, k, sizeof(cl_mem), &x->mem, sizeof(cl_ulong), &x_off,
				   sizeof(cl_int), &x->c, sizeof(cl_int), &x->h, sizeof(cl_int),
				   &x->w, sizeof(cl_mem), &gr->scratch, sizeof(cl_int), &ho,
				   sizeof(cl_int), &wo, sizeof(cl_int), &cv->kh, sizeof(cl_int),
				   &cv->kw, sizeof(cl_int), &cv->stride_h, sizeof(cl_int),
				   &cv->stride_w, sizeof(cl_int), &cv->pad_h, sizeof(cl_int),
				   &cv->pad_w, sizeof(cl_int), &cv->dil_h, sizeof(cl_int), &cv->dil_w,
				   sizeof(cl_int), &relu, sizeof(cl_int), &cv->in_shift,
				   sizeof(cl_int), &n0, (size_t)0);
		if (ret < 0)
			return ret;
		return nasgrad_launch(gr, k, (size_t)ho * (size_t)wo,
				      (size_t)x->c * (size_t)cv->kh * (size_t)cv->kw, (size_t)count,
				      0, span);
	} else {
		cl_ulong dx_off = (cl_ulong)dx->off;
		cl_int acc = dx->accumulate;

		ret = nasgrad_args(gr, k, sizeof(cl_mem), &gr->scratch, sizeof(cl_mem), &x->mem,
				   sizeof(cl_ulong), &x_off, sizeof(cl_mem), &dx->mem,
				   sizeof(cl_ulong), &dx_off, sizeof(cl_int), &x->c, sizeof(cl_int),
				   &x->h, sizeof(cl_int), &x->w, sizeof(cl_int), &ho, sizeof(cl_int),
				   &wo, sizeof(cl_int), &cv->kh, sizeof(cl_int), &cv->kw,
				   sizeof(cl_int), &cv->stride_h, sizeof(cl_int), &cv->stride_w,
				   sizeof(cl_int), &cv->pad_h, sizeof(cl_int), &cv->pad_w,
				   sizeof(cl_int), &cv->dil_h, sizeof(cl_int), &cv->dil_w,
				   sizeof(cl_int), &relu, sizeof(cl_int), &cv->in_shift,
				   sizeof(cl_int), &n0, sizeof(cl_int), &acc, (size_t)0);
		if (ret < 0)
			return ret;
		return nasgrad_launch(gr, k, (size_t)x->h * (size_t)x->w, (size_t)x->c,
				      (size_t)count, 0, span);
	}
}

/* A dense convolution's gradients through the GEMM engine (shapes checked by the caller).
 * In the engine's column-major terms, per image: the columns' gradient dcol^T (hwo x K) =
 * dy^T (hwo x c_out, read in place from its slice) W (c_out x K, W stored transposed), and
 * dW^T (K x c_out) += col (K x hwo, the columns taken transposed) dy^T (hwo x c_out). A
 * plain 1x1 convolution's columns are x itself and its dx is dcol. 1: the engine has no
 * tested variant for these shapes (the caller uses the direct kernels). */
static int nasgrad_conv_gemm(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
			     const struct rxd_nas_conv *cv, const struct rxd_nas_tensor *dy,
			     const struct rxd_nas_write *wr, const struct rxd_nasgrad_dst *dx,
			     const struct rxd_nasgrad_dst *dweight, struct rxd_nas_span *span)
{
	const int64_t hwo = (int64_t)dy->h * dy->w, hw = (int64_t)x->h * x->w;
	const int64_t k = (int64_t)x->c * cv->kh * cv->kw;
	const bool plain = cv->kh == 1 && cv->kw == 1 && cv->stride_h == 1 && cv->stride_w == 1 &&
			   cv->pad_h == 0 && cv->pad_w == 0 && !cv->relu_in && cv->in_shift == 0;
	const bool want_dx = dx && dx->mem, want_dw = dweight && dweight->mem;
	struct rxd_gemm gx = { .m = hwo, .n = k, .k = cv->c_out, .trans_b = true,
			       .alpha = wr->scale, .lda = hwo, .ldb = k, .ldc = hwo,
			       .stride_a = (int64_t)dy->c * hwo, .stride_b = 0,
			       .stride_c = plain ? (int64_t)x->c * hw : k * hwo };
	struct rxd_gemm gw = { .m = k, .n = cv->c_out, .k = hwo, .trans_a = true,
			       .alpha = wr->scale, .lda = hwo, .ldb = hwo, .ldc = k,
			       .batch_count = 1 };
	const int64_t dy0 = dy->off + (int64_t)wr->c_off * hwo;
	int64_t per_image = k * hwo, nb = 1;
	int ret;

	if ((want_dx && gemm_prepare_at(gr->eng, gemm_choose(gr->eng, &gx)) < 0) ||
	    (want_dw && gemm_prepare_at(gr->eng, gemm_choose(gr->eng, &gw)) < 0))
		return 1;
	/* Room for the columns first, so that a failure leaves the gradients as they were. */
	if (!plain) {
		if (k > INT_MAX / hwo)
			return -E2BIG;
		nb = (int64_t)(gr->scratch_max_bytes / sizeof(float)) / per_image;
		nb = nb < 1 ? 1 : nb > x->n ? x->n : nb;
		if (nb > INT_MAX / per_image)
			nb = INT_MAX / per_image;
		if ((ret = nasgrad_scratch(gr, (uint64_t)(nb * per_image) * sizeof(float))) < 0)
			return ret;
	}
	if (want_dx && plain) {
		gx.beta = dx->accumulate ? 1.0f : 0.0f;
		gx.batch_count = x->n;
		ret = nasgrad_gemm(gr, &gx, dy->mem, dy0, cv->weight, cv->weight_off, dx->mem,
				   dx->off, span);
		if (ret < 0)
			return ret;
	} else if (want_dx) {
		for (int32_t n0 = 0; n0 < x->n; n0 += (int32_t)nb) {
			int32_t count = x->n - n0 < nb ? x->n - n0 : (int32_t)nb;

			gx.batch_count = count;
			ret = nasgrad_gemm(gr, &gx, dy->mem, dy0 + (int64_t)n0 * dy->c * hwo,
					   cv->weight, cv->weight_off, gr->scratch, 0, span);
			if (ret < 0)
				return ret;
			ret = nasgrad_cols(gr, RXD_NASGRAD_K_COL2IM, x, cv, (cl_int)dy->h,
					   (cl_int)dy->w, dx, n0, count, span);
			if (ret < 0)
				return ret;
		}
	}
	if (!want_dw)
		return 0;
	for (int32_t n0 = 0; n0 < x->n; n0 += (int32_t)nb) {
		int32_t count = x->n - n0 < nb ? x->n - n0 : (int32_t)nb;

		if (!plain) {
			ret = nasgrad_cols(gr, RXD_NASGRAD_K_IM2COL, x, cv, (cl_int)dy->h,
					   (cl_int)dy->w, NULL, n0, count, span);
			if (ret < 0)
				return ret;
		}
		for (int32_t b = n0; b < n0 + count; b++) {
			gw.beta = b == 0 && !dweight->accumulate ? 0.0f : 1.0f;
			ret = nasgrad_gemm(gr, &gw, plain ? x->mem : gr->scratch,
					   plain ? x->off + (int64_t)b * x->c * hw
						 : (int64_t)(b - n0) * per_image,
					   dy->mem, dy0 + (int64_t)b * dy->c * hwo, dweight->mem,
					   dweight->off, span);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

int nasgrad_conv(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
		 const struct rxd_nas_conv *cv, const struct rxd_nas_tensor *dy,
		 const struct rxd_nas_write *wr, const struct rxd_nasgrad_dst *dx,
		 const struct rxd_nasgrad_dst *dweight, struct rxd_nas_span *span)
{
	cl_ulong dy_off = (cl_ulong)dy->off, x_off = (cl_ulong)x->off;
	cl_ulong w_off = (cl_ulong)cv->weight_off;
	cl_int relu = cv->relu_in, acc;
	int64_t w_elems;
	int32_t ho, wo;
	int ret;

	if ((ret = nasgrad_check_io(x, dy, cv->c_out, wr, dx, nasops_elems(x))) < 0)
		return ret;
	if (cv->groups < 1 || x->c % cv->groups || cv->c_out % cv->groups ||
	    (cv->in_shift != 0 && cv->in_shift != 1) || x->h <= cv->in_shift ||
	    x->w <= cv->in_shift)
		return -EINVAL;
	ho = nasops_out_dim(x->h - cv->in_shift, cv->kh, cv->stride_h, cv->pad_h, cv->dil_h);
	wo = nasops_out_dim(x->w - cv->in_shift, cv->kw, cv->stride_w, cv->pad_w, cv->dil_w);
	if (ho < 1 || wo < 1 || ho != dy->h || wo != dy->w)
		return -EINVAL;
	if (__builtin_mul_overflow((int64_t)cv->c_out * (x->c / cv->groups),
				   (int64_t)cv->kh * cv->kw, &w_elems))
		return -E2BIG;
	if ((ret = nasops_check_range(cv->weight, cv->weight_off, w_elems)) < 0)
		return ret;
	if (dweight && dweight->mem) {
		/* dW's kernel walks every output of every image with one int. */
		if ((int64_t)x->n * ho * wo > INT_MAX)
			return -E2BIG;
		if ((ret = nasops_check_range(dweight->mem, dweight->off, w_elems)) < 0)
			return ret;
		if (nasgrad_overlap(dweight->mem, dweight->off, w_elems, x->mem, x->off,
				    nasops_elems(x)) ||
		    nasgrad_overlap(dweight->mem, dweight->off, w_elems, dy->mem, dy->off,
				    nasops_elems(dy)))
			return -EINVAL;
	}
	if (!(dx && dx->mem) && !(dweight && dweight->mem))
		return 0; /* only checked */
	if (cv->groups == 1 && gr->eng &&
	    (ret = nasgrad_conv_gemm(gr, x, cv, dy, wr, dx, dweight, span)) <= 0)
		return ret;
	if (dx && dx->mem) {
		cl_ulong dx_off = (cl_ulong)dx->off;

		acc = dx->accumulate;
		ret = nasgrad_args(gr, RXD_NASGRAD_K_CONV_DX, sizeof(cl_mem), &dy->mem,
				   sizeof(cl_ulong), &dy_off, sizeof(cl_int), &dy->c, sizeof(cl_int),
				   &wr->c_off, sizeof(cl_int), &cv->c_out, sizeof(cl_int), &ho,
				   sizeof(cl_int), &wo, sizeof(float), &wr->scale, sizeof(cl_mem),
				   &cv->weight, sizeof(cl_ulong), &w_off, sizeof(cl_mem), &x->mem,
				   sizeof(cl_ulong), &x_off, sizeof(cl_mem), &dx->mem,
				   sizeof(cl_ulong), &dx_off, sizeof(cl_int), &x->c, sizeof(cl_int),
				   &x->h, sizeof(cl_int), &x->w, sizeof(cl_int), &cv->kh,
				   sizeof(cl_int), &cv->kw, sizeof(cl_int), &cv->stride_h,
				   sizeof(cl_int), &cv->stride_w, sizeof(cl_int), &cv->pad_h,
				   sizeof(cl_int), &cv->pad_w, sizeof(cl_int), &cv->dil_h,
				   sizeof(cl_int), &cv->dil_w, sizeof(cl_int), &cv->groups,
				   sizeof(cl_int), &relu, sizeof(cl_int), &cv->in_shift,
				   sizeof(cl_int), &acc, (size_t)0);
		if (ret < 0)
			return ret;
		ret = nasgrad_launch(gr, RXD_NASGRAD_K_CONV_DX, (size_t)x->h * (size_t)x->w,
				     (size_t)x->c, (size_t)x->n, 0, span);
		if (ret < 0)
			return ret;
	}
	if (dweight && dweight->mem) {
		size_t local = nasgrad_local_pow2(gr, RXD_NASGRAD_K_CONV_DW);
		cl_ulong dw_off = (cl_ulong)dweight->off;

		acc = dweight->accumulate;
		ret = nasgrad_args(gr, RXD_NASGRAD_K_CONV_DW, sizeof(cl_mem), &dy->mem,
				   sizeof(cl_ulong), &dy_off, sizeof(cl_int), &dy->c, sizeof(cl_int),
				   &wr->c_off, sizeof(cl_int), &cv->c_out, sizeof(cl_int), &ho,
				   sizeof(cl_int), &wo, sizeof(float), &wr->scale, sizeof(cl_mem),
				   &x->mem, sizeof(cl_ulong), &x_off, sizeof(cl_int), &x->n,
				   sizeof(cl_int), &x->c, sizeof(cl_int), &x->h, sizeof(cl_int),
				   &x->w, sizeof(cl_mem), &dweight->mem, sizeof(cl_ulong), &dw_off,
				   sizeof(cl_int), &cv->kh, sizeof(cl_int), &cv->kw, sizeof(cl_int),
				   &cv->stride_h, sizeof(cl_int), &cv->stride_w, sizeof(cl_int),
				   &cv->pad_h, sizeof(cl_int), &cv->pad_w, sizeof(cl_int),
				   &cv->dil_h, sizeof(cl_int), &cv->dil_w, sizeof(cl_int),
				   &cv->groups, sizeof(cl_int), &relu, sizeof(cl_int),
				   &cv->in_shift, sizeof(cl_int), &acc, local * sizeof(float), NULL,
				   (size_t)0);
		if (ret < 0)
			return ret;
		ret = nasgrad_launch(gr, RXD_NASGRAD_K_CONV_DW, local, (size_t)w_elems, 1, local,
				     span);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int nasgrad_factorized_reduce(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
			      const struct rxd_nas_conv cv[2], const struct rxd_nas_tensor *dy,
			      const struct rxd_nas_write *wr, const struct rxd_nasgrad_dst *dx,
			      const struct rxd_nasgrad_dst dweight[2], struct rxd_nas_span *span)
{
	struct rxd_nas_write half = *wr;
	struct rxd_nasgrad_dst dx2;
	int ret;

	if (cv[0].in_shift != 0 || cv[1].in_shift != 1)
		return -EINVAL;
	/* Check both halves before enqueueing either. */
	if ((ret = nasgrad_conv(gr, x, &cv[0], dy, wr, NULL, NULL, NULL)) < 0)
		return ret;
	half.c_off = wr->c_off + cv[0].c_out;
	if ((ret = nasgrad_conv(gr, x, &cv[1], dy, &half, NULL, NULL, NULL)) < 0)
		return ret;
	if ((ret = nasgrad_conv(gr, x, &cv[0], dy, wr, dx, &dweight[0], span)) < 0)
		return ret;
	dx2 = dx ? *dx : (struct rxd_nasgrad_dst){ 0 };
	dx2.accumulate = true; /* the second half adds to the first's */
	return nasgrad_conv(gr, x, &cv[1], dy, &half, &dx2, &dweight[1], span);
}

/* ---- pooling, ReLU, global pooling, linear ------------------------------------------ */

int nasgrad_pool(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
		 const struct rxd_nas_pool *p, const struct rxd_nas_tensor *dy,
		 const struct rxd_nas_write *wr, const struct rxd_nasgrad_dst *dx,
		 struct rxd_nas_span *span)
{
	cl_ulong dy_off = (cl_ulong)dy->off, x_off = (cl_ulong)x->off, dx_off;
	cl_int is_avg = p->kind == RXD_NAS_POOL_AVG, acc;
	int ret;

	if ((ret = nasgrad_check_io(x, dy, x->c, wr, dx, nasops_elems(x))) < 0)
		return ret;
	if ((p->kind != RXD_NAS_POOL_MAX && p->kind != RXD_NAS_POOL_AVG) || p->kh < 1 ||
	    p->kw < 1 || p->pad_h > p->kh / 2 || p->pad_w > p->kw / 2 ||
	    nasops_out_dim(x->h, p->kh, p->stride_h, p->pad_h, 1) != dy->h ||
	    nasops_out_dim(x->w, p->kw, p->stride_w, p->pad_w, 1) != dy->w)
		return -EINVAL;
	if (!dx || !dx->mem)
		return 0;
	dx_off = (cl_ulong)dx->off;
	acc = dx->accumulate;
	ret = nasgrad_args(gr, RXD_NASGRAD_K_POOL_DX, sizeof(cl_mem), &dy->mem, sizeof(cl_ulong),
			   &dy_off, sizeof(cl_int), &dy->c, sizeof(cl_int), &wr->c_off,
			   sizeof(cl_int), &dy->h, sizeof(cl_int), &dy->w, sizeof(float),
			   &wr->scale, sizeof(cl_mem), &x->mem, sizeof(cl_ulong), &x_off,
			   sizeof(cl_mem), &dx->mem, sizeof(cl_ulong), &dx_off, sizeof(cl_int),
			   &x->c, sizeof(cl_int), &x->h, sizeof(cl_int), &x->w, sizeof(cl_int),
			   &p->kh, sizeof(cl_int), &p->kw, sizeof(cl_int), &p->stride_h,
			   sizeof(cl_int), &p->stride_w, sizeof(cl_int), &p->pad_h, sizeof(cl_int),
			   &p->pad_w, sizeof(cl_int), &is_avg, sizeof(cl_int), &acc, (size_t)0);
	if (ret < 0)
		return ret;
	return nasgrad_launch(gr, RXD_NASGRAD_K_POOL_DX, (size_t)x->h * (size_t)x->w,
			      (size_t)x->c, (size_t)x->n, 0, span);
}

int nasgrad_relu(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x, bool relu,
		 const struct rxd_nas_tensor *dy, const struct rxd_nas_write *wr,
		 const struct rxd_nasgrad_dst *dx, struct rxd_nas_span *span)
{
	cl_ulong dy_off = (cl_ulong)dy->off, x_off = (cl_ulong)x->off, dx_off;
	cl_int hw, r = relu, acc;
	int ret;

	if ((ret = nasgrad_check_io(x, dy, x->c, wr, dx, nasops_elems(x))) < 0)
		return ret;
	if (x->h != dy->h || x->w != dy->w)
		return -EINVAL;
	if (!dx || !dx->mem)
		return 0;
	hw = x->h * x->w;
	dx_off = (cl_ulong)dx->off;
	acc = dx->accumulate;
	ret = nasgrad_args(gr, RXD_NASGRAD_K_RELU_DX, sizeof(cl_mem), &dy->mem, sizeof(cl_ulong),
			   &dy_off, sizeof(cl_int), &dy->c, sizeof(cl_int), &wr->c_off,
			   sizeof(cl_int), &hw, sizeof(float), &wr->scale, sizeof(cl_mem), &x->mem,
			   sizeof(cl_ulong), &x_off, sizeof(cl_int), &r, sizeof(cl_mem), &dx->mem,
			   sizeof(cl_ulong), &dx_off, sizeof(cl_int), &x->c, sizeof(cl_int), &acc,
			   (size_t)0);
	if (ret < 0)
		return ret;
	return nasgrad_launch(gr, RXD_NASGRAD_K_RELU_DX, (size_t)hw, (size_t)x->c, (size_t)x->n,
			      0, span);
}

int nasgrad_gap(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
		const struct rxd_nas_tensor *dy, const struct rxd_nas_write *wr,
		const struct rxd_nasgrad_dst *dx, struct rxd_nas_span *span)
{
	cl_ulong dy_off = (cl_ulong)dy->off, dx_off;
	cl_int hw, acc;
	int ret;

	if ((ret = nasgrad_check_io(x, dy, x->c, wr, dx, nasops_elems(x))) < 0)
		return ret;
	if (dy->h != 1 || dy->w != 1)
		return -EINVAL;
	if (!dx || !dx->mem)
		return 0;
	hw = x->h * x->w;
	dx_off = (cl_ulong)dx->off;
	acc = dx->accumulate;
	ret = nasgrad_args(gr, RXD_NASGRAD_K_GAP_DX, sizeof(cl_mem), &dy->mem, sizeof(cl_ulong),
			   &dy_off, sizeof(cl_int), &dy->c, sizeof(cl_int), &wr->c_off,
			   sizeof(float), &wr->scale, sizeof(cl_mem), &dx->mem, sizeof(cl_ulong),
			   &dx_off, sizeof(cl_int), &x->c, sizeof(cl_int), &hw, sizeof(cl_int),
			   &acc, (size_t)0);
	if (ret < 0)
		return ret;
	return nasgrad_launch(gr, RXD_NASGRAD_K_GAP_DX, (size_t)hw, (size_t)x->c, (size_t)x->n, 0,
			      span);
}

int nasgrad_linear(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
		   const struct rxd_nas_linear *l, const struct rxd_nas_tensor *dy,
		   const struct rxd_nas_write *wr, const struct rxd_nasgrad_dst *dx,
		   const struct rxd_nasgrad_dst *dweight, const struct rxd_nasgrad_dst *dbias,
		   struct rxd_nas_span *span)
{
	const int64_t in = (int64_t)x->c * x->h * x->w;
	cl_ulong dy_off = (cl_ulong)dy->off, x_off = (cl_ulong)x->off;
	cl_ulong w_off = (cl_ulong)l->weight_off;
	const bool want_w = dweight && dweight->mem, want_b = dbias && dbias->mem && l->bias;
	cl_int in32 = (cl_int)in, acc;
	int ret;

	if ((ret = nasgrad_check_io(x, dy, l->out, wr, dx, nasops_elems(x))) < 0)
		return ret;
	if (dy->h != 1 || dy->w != 1 || (dbias && dbias->mem && !l->bias))
		return -EINVAL;
	if ((ret = nasops_check_range(l->weight, l->weight_off, (int64_t)l->out * in)) < 0)
		return ret;
	if (want_w && (ret = nasops_check_range(dweight->mem, dweight->off,
						   (int64_t)l->out * in)) < 0)
		return ret;
	if (want_b && (ret = nasops_check_range(dbias->mem, dbias->off, l->out)) < 0)
		return ret;
	/* dW and db are written in one launch, with one accumulate flag. */
	if (want_w && want_b && dweight->accumulate != dbias->accumulate)
		return -EINVAL;
	if (dx && dx->mem) {
		cl_ulong dx_off = (cl_ulong)dx->off;

		acc = dx->accumulate;
		ret = nasgrad_args(gr, RXD_NASGRAD_K_LINEAR_DX, sizeof(cl_mem), &dy->mem,
				   sizeof(cl_ulong), &dy_off, sizeof(cl_int), &dy->c, sizeof(cl_int),
				   &wr->c_off, sizeof(cl_int), &l->out, sizeof(float), &wr->scale,
				   sizeof(cl_mem), &l->weight, sizeof(cl_ulong), &w_off,
				   sizeof(cl_mem), &dx->mem, sizeof(cl_ulong), &dx_off,
				   sizeof(cl_int), &in32, sizeof(cl_int), &acc, (size_t)0);
		if (ret < 0)
			return ret;
		ret = nasgrad_launch(gr, RXD_NASGRAD_K_LINEAR_DX, (size_t)in, (size_t)x->n, 1, 0,
				     span);
		if (ret < 0)
			return ret;
	}
	if (want_w || want_b) {
		/* A kernel that writes only one of the two still needs both arguments. */
		const struct rxd_nasgrad_dst *any = want_w ? dweight : dbias;
		cl_mem wm = want_w ? dweight->mem : any->mem, bm = want_b ? dbias->mem : any->mem;
		cl_ulong dw_off = want_w ? (cl_ulong)dweight->off : 0;
		cl_ulong db_off = want_b ? (cl_ulong)dbias->off : 0;
		cl_int has_b = want_b;
		/* Without dW, only the bias column (i == in) runs. */
		size_t first = want_w ? 0 : (size_t)in;

		acc = any->accumulate;
		ret = nasgrad_args(gr, RXD_NASGRAD_K_LINEAR_DW, sizeof(cl_mem), &dy->mem,
				   sizeof(cl_ulong), &dy_off, sizeof(cl_int), &dy->c, sizeof(cl_int),
				   &wr->c_off, sizeof(cl_int), &l->out, sizeof(float), &wr->scale,
				   sizeof(cl_mem), &x->mem, sizeof(cl_ulong), &x_off, sizeof(cl_int),
				   &in32, sizeof(cl_int), &x->n, sizeof(cl_mem), &wm,
				   sizeof(cl_ulong), &dw_off, sizeof(cl_mem), &bm, sizeof(cl_ulong),
				   &db_off, sizeof(cl_int), &has_b, sizeof(cl_int), &acc, (size_t)0);
		if (ret < 0)
			return ret;
		if (first) {
			/* An offset launch (OpenCL 1.1): only the bias work-item of each row. */
			const size_t off[2] = { first, 0 }, global[2] = { 1, (size_t)l->out };
			return nasgrad_launch_exact(gr, RXD_NASGRAD_K_LINEAR_DW, off, global, span);
		}
		return nasgrad_launch(gr, RXD_NASGRAD_K_LINEAR_DW, (size_t)in + 1, (size_t)l->out,
				      1, 0, span);
	}
	return 0;
}

/* ---- BatchNorm in training mode ------------------------------------------------------ */

static int nasgrad_check_bn(const struct rxd_nasgrad_bn *bn, int32_t c, bool forward)
{
	int ret;

	if (!(bn->eps > 0.0f) || !(bn->momentum >= 0.0f && bn->momentum <= 1.0f))
		return -EINVAL;
	if ((ret = nasops_check_range(bn->stats.mem, bn->stats.off, 2 * (int64_t)c)) < 0)
		return ret;
	if (bn->affine &&
	    ((ret = nasops_check_range(bn->gamma.mem, bn->gamma.off, c)) < 0 ||
	     (forward && (ret = nasops_check_range(bn->beta.mem, bn->beta.off, c)) < 0)))
		return ret;
	if (forward && bn->running.mem &&
	    (ret = nasops_check_range(bn->running.mem, bn->running.off, 2 * (int64_t)c)) < 0)
		return ret;
	return 0;
}

int nasgrad_bn_forward(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
		       const struct rxd_nasgrad_bn *bn, const struct rxd_nas_tensor *y,
		       const struct rxd_nas_write *wr, struct rxd_nas_span *span)
{
	size_t local = nasgrad_local_pow2(gr, RXD_NASGRAD_K_BN_FWD);
	cl_ulong x_off = (cl_ulong)x->off, y_off = (cl_ulong)y->off;
	cl_ulong g_off = (cl_ulong)bn->gamma.off, b_off = (cl_ulong)bn->beta.off;
	cl_ulong s_off = (cl_ulong)bn->stats.off, r_off = (cl_ulong)bn->running.off;
	cl_int hw, acc = wr->accumulate, affine = bn->affine, track = bn->running.mem != NULL;
	int ret;

	/* y must not overlap x; nor may the stats either of them. */
	if ((ret = nasgrad_check_io(x, y, x->c, wr, NULL, 0)) < 0)
		return ret;
	if (nasgrad_overlap(x->mem, x->off, nasops_elems(x), y->mem, y->off, nasops_elems(y)) ||
	    x->h != y->h || x->w != y->w || (int64_t)x->n * x->h * x->w > INT_MAX)
		return -EINVAL;
	if ((ret = nasgrad_check_bn(bn, x->c, true)) < 0)
		return ret;
	if (nasgrad_overlap(bn->stats.mem, bn->stats.off, 2 * (int64_t)x->c, x->mem, x->off,
			    nasops_elems(x)) ||
	    nasgrad_overlap(bn->stats.mem, bn->stats.off, 2 * (int64_t)x->c, y->mem, y->off,
			    nasops_elems(y)))
		return -EINVAL;
	hw = x->h * x->w;
	ret = nasgrad_args(gr, RXD_NASGRAD_K_BN_FWD, sizeof(cl_mem), &x->mem, sizeof(cl_ulong),
			   &x_off, sizeof(cl_int), &x->c, sizeof(cl_int), &hw, sizeof(cl_int), &x->n,
			   sizeof(cl_mem), &y->mem, sizeof(cl_ulong), &y_off, sizeof(cl_int), &y->c,
			   sizeof(cl_int), &wr->c_off, sizeof(float), &wr->scale, sizeof(cl_int),
			   &acc, sizeof(cl_mem), NASGRAD_MEM_OR(bn->gamma.mem, x->mem),
			   sizeof(cl_ulong), &g_off, sizeof(cl_mem),
			   NASGRAD_MEM_OR(bn->beta.mem, x->mem), sizeof(cl_ulong), &b_off,
			   sizeof(cl_int), &affine, sizeof(cl_mem), &bn->stats.mem,
			   sizeof(cl_ulong), &s_off, sizeof(cl_mem),
			   NASGRAD_MEM_OR(bn->running.mem, bn->stats.mem), sizeof(cl_ulong),
			   &r_off, sizeof(cl_int), &track, sizeof(float), &bn->momentum,
			   sizeof(float), &bn->eps, local * sizeof(float), NULL, (size_t)0);
	if (ret < 0)
		return ret;
	return nasgrad_launch(gr, RXD_NASGRAD_K_BN_FWD, local, (size_t)x->c, 1, local, span);
}

int nasgrad_bn_backward(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
			const struct rxd_nasgrad_bn *bn, const struct rxd_nas_tensor *dy,
			const struct rxd_nas_write *wr, const struct rxd_nasgrad_dst *dx,
			const struct rxd_nasgrad_dst *dgamma, const struct rxd_nasgrad_dst *dbeta,
			struct rxd_nas_span *span)
{
	size_t local = nasgrad_local_pow2(gr, RXD_NASGRAD_K_BN_BWD);
	cl_ulong dy_off = (cl_ulong)dy->off, x_off = (cl_ulong)x->off;
	cl_ulong s_off = (cl_ulong)bn->stats.off, g_off = (cl_ulong)bn->gamma.off;
	const bool want_dx = dx && dx->mem;
	const bool want_p = dgamma && dgamma->mem && dbeta && dbeta->mem;
	cl_ulong dx_off = want_dx ? (cl_ulong)dx->off : 0;
	cl_ulong dg_off = want_p ? (cl_ulong)dgamma->off : 0;
	cl_ulong db_off = want_p ? (cl_ulong)dbeta->off : 0;
	cl_int hw, affine = bn->affine, wdx = want_dx, wp = want_p;
	cl_int acc = want_dx && dx->accumulate, accp = want_p && dgamma->accumulate;
	int ret;

	if ((ret = nasgrad_check_io(x, dy, x->c, wr, dx, nasops_elems(x))) < 0)
		return ret;
	if (x->h != dy->h || x->w != dy->w || (int64_t)x->n * x->h * x->w > INT_MAX)
		return -EINVAL;
	if ((ret = nasgrad_check_bn(bn, x->c, false)) < 0)
		return ret;
	/* Both parameter gradients or neither, only with affine, with one accumulate flag. */
	if (((dgamma && dgamma->mem) != (dbeta && dbeta->mem)) || (want_p && !bn->affine) ||
	    (want_p && dgamma->accumulate != dbeta->accumulate))
		return -EINVAL;
	if (want_p && ((ret = nasops_check_range(dgamma->mem, dgamma->off, x->c)) < 0 ||
		       (ret = nasops_check_range(dbeta->mem, dbeta->off, x->c)) < 0))
		return ret;
	if (!want_dx && !want_p)
		return 0;
	hw = x->h * x->w;
	ret = nasgrad_args(gr, RXD_NASGRAD_K_BN_BWD, sizeof(cl_mem), &dy->mem, sizeof(cl_ulong),
			   &dy_off, sizeof(cl_int), &dy->c, sizeof(cl_int), &wr->c_off,
			   sizeof(float), &wr->scale, sizeof(cl_mem), &x->mem, sizeof(cl_ulong),
			   &x_off, sizeof(cl_int), &x->c, sizeof(cl_int), &hw, sizeof(cl_int), &x->n,
			   sizeof(cl_mem), &bn->stats.mem, sizeof(cl_ulong), &s_off, sizeof(cl_mem),
			   NASGRAD_MEM_OR(bn->gamma.mem, x->mem), sizeof(cl_ulong), &g_off,
			   sizeof(cl_int), &affine, sizeof(cl_mem),
			   want_dx ? &dx->mem : &bn->stats.mem, sizeof(cl_ulong), &dx_off,
			   sizeof(cl_int), &wdx, sizeof(cl_int), &acc, sizeof(cl_mem),
			   want_p ? &dgamma->mem : &bn->stats.mem, sizeof(cl_ulong), &dg_off,
			   sizeof(cl_mem), want_p ? &dbeta->mem : &bn->stats.mem, sizeof(cl_ulong),
			   &db_off, sizeof(cl_int), &wp, sizeof(cl_int), &accp,
			   2 * local * sizeof(float), NULL, (size_t)0);
	if (ret < 0)
		return ret;
	return nasgrad_launch(gr, RXD_NASGRAD_K_BN_BWD, local, (size_t)x->c, 1, local, span);
}

/* ---- the mixed operation, the loss ------------------------------------------------- */

int nasgrad_dot(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *dy,
		const struct rxd_nas_write *wr, const struct rxd_nas_tensor *o,
		const struct rxd_nasgrad_dst *out, struct rxd_nas_span *span)
{
	int64_t hw = (int64_t)o->h * o->w;
	int ret;

	if ((ret = nasgrad_check_io(o, dy, o->c, wr, NULL, 0)) < 0)
		return ret;
	if (o->h != dy->h || o->w != dy->w || !out || !out->mem)
		return -EINVAL;
	if ((ret = nasops_check_range(out->mem, out->off, 1)) < 0)
		return ret;
	return nasgrad_dot_rows(gr, dy->mem, dy->off + wr->c_off * hw, (cl_int)(dy->c * hw),
				o->mem, o->off, (cl_int)(o->c * hw), (cl_int)(o->c * hw),
				(cl_int)o->n, out->mem, out->off, 1.0f, out->accumulate, span);
}

int nasgrad_alpha(struct rxd_nasgrad *gr, const struct rxd_nasgrad_vec *alpha,
		  const struct rxd_nasgrad_vec *g, int32_t rows, int32_t k,
		  const struct rxd_nasgrad_dst *dalpha, struct rxd_nas_span *span)
{
	cl_ulong a_off = (cl_ulong)alpha->off, g_off = (cl_ulong)g->off, d_off;
	int64_t elems = (int64_t)rows * k;
	cl_int acc;
	int ret;

	if (rows < 1 || k < 1 || !dalpha || !dalpha->mem)
		return -EINVAL;
	if ((ret = nasops_check_range(alpha->mem, alpha->off, elems)) < 0 ||
	    (ret = nasops_check_range(g->mem, g->off, elems)) < 0 ||
	    (ret = nasops_check_range(dalpha->mem, dalpha->off, elems)) < 0)
		return ret;
	/* Each work-item reads its row whole before writing it: only other rows must not
	 * alias, and distinct rows never do, so dalpha may even be g. */
	d_off = (cl_ulong)dalpha->off;
	acc = dalpha->accumulate;
	ret = nasgrad_args(gr, RXD_NASGRAD_K_ALPHA, sizeof(cl_mem), &alpha->mem, sizeof(cl_ulong),
			   &a_off, sizeof(cl_mem), &g->mem, sizeof(cl_ulong), &g_off, sizeof(cl_mem),
			   &dalpha->mem, sizeof(cl_ulong), &d_off, sizeof(cl_int), &rows,
			   sizeof(cl_int), &k, sizeof(cl_int), &acc, (size_t)0);
	if (ret < 0)
		return ret;
	return nasgrad_launch(gr, RXD_NASGRAD_K_ALPHA, (size_t)rows, 1, 1, 0, span);
}

int nasgrad_xent(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *z, int32_t classes,
		 const struct rxd_nas_write *wr, const struct rxd_nasgrad_vec *labels,
		 const struct rxd_nasgrad_dst *dz, const struct rxd_nasgrad_vec *out,
		 struct rxd_nas_span *span)
{
	cl_ulong z_off = (cl_ulong)z->off, l_off = (cl_ulong)labels->off, dz_off;
	const int64_t dz_elems = (int64_t)z->n * classes;
	size_t bytes = 0;
	int ret;

	if ((ret = nasops_check_tensor(z)) < 0)
		return ret;
	if (z->h != 1 || z->w != 1 || classes < 1 || wr->c_off < 0 || wr->c_off > z->c - classes ||
	    !dz || !dz->mem || dz->accumulate)
		return -EINVAL;
	/* The labels are int32: check their bytes as floats' (the same size). */
	if (!labels->mem || labels->off < 0 ||
	    clGetMemObjectInfo(labels->mem, CL_MEM_SIZE, sizeof(bytes), &bytes, NULL) !=
		    CL_SUCCESS ||
	    (uint64_t)(labels->off + z->n) * sizeof(cl_int) > bytes)
		return -EINVAL;
	if ((ret = nasops_check_range(dz->mem, dz->off, dz_elems)) < 0 ||
	    (ret = nasops_check_range(out->mem, out->off, 2)) < 0)
		return ret;
	if (nasgrad_overlap(dz->mem, dz->off, dz_elems, z->mem, z->off, nasops_elems(z)) ||
	    nasgrad_overlap(out->mem, out->off, 2, dz->mem, dz->off, dz_elems))
		return -EINVAL;
	if ((ret = nasgrad_scratch(gr, 2 * (uint64_t)z->n * sizeof(float))) < 0)
		return ret;
	dz_off = (cl_ulong)dz->off;
	ret = nasgrad_args(gr, RXD_NASGRAD_K_XENT, sizeof(cl_mem), &z->mem, sizeof(cl_ulong),
			   &z_off, sizeof(cl_int), &z->c, sizeof(cl_int), &wr->c_off, sizeof(cl_int),
			   &classes, sizeof(cl_mem), &labels->mem, sizeof(cl_ulong), &l_off,
			   sizeof(cl_int), &z->n, sizeof(cl_mem), &dz->mem, sizeof(cl_ulong),
			   &dz_off, sizeof(cl_mem), &gr->scratch, (size_t)0);
	if (ret < 0)
		return ret;
	{
		const size_t global[2] = { (size_t)z->n, 1 };
		if ((ret = nasgrad_launch_exact(gr, RXD_NASGRAD_K_XENT, NULL, global, span)) < 0)
			return ret;
	}
	/* The per-image losses, then the per-image hits, each summed in a fixed order. */
	ret = nasgrad_sum(gr, 0, z->n, out->mem, out->off, 1.0f / (float)z->n, false, span);
	if (ret < 0)
		return ret;
	return nasgrad_sum(gr, z->n, z->n, out->mem, out->off + 1, 1.0f, false, span);
}

/* ---- optimisers ---------------------------------------------------------------------- */

/* len elements of each of n vectors fit, and none overlaps another. */
static int nasgrad_check_vecs(const struct rxd_nasgrad_vec *const *v, int n, int64_t len)
{
	int ret;

	for (int i = 0; i < n; i++) {
		if ((ret = nasops_check_range(v[i]->mem, v[i]->off, len)) < 0)
			return ret;
		for (int j = 0; j < i; j++)
			if (nasgrad_overlap(v[i]->mem, v[i]->off, len, v[j]->mem, v[j]->off, len))
				return -EINVAL;
	}
	return 0;
}

int nasgrad_sgd(struct rxd_nasgrad *gr, const struct rxd_nasgrad_vec *w,
		const struct rxd_nasgrad_vec *g, const struct rxd_nasgrad_vec *buf, int64_t len,
		const struct rxd_nasgrad_sgd *p, struct rxd_nas_span *span)
{
	const struct rxd_nasgrad_vec *const v[3] = { w, g, buf };
	cl_ulong w_off = (cl_ulong)w->off, g_off = (cl_ulong)g->off, b_off = (cl_ulong)buf->off;
	cl_int n = (cl_int)len;
	int ret;

	if ((ret = nasgrad_check_vecs(v, 3, len)) < 0)
		return ret;
	if (!isfinite(p->lr) || !isfinite(p->momentum) || !isfinite(p->weight_decay))
		return -EINVAL;
	ret = nasgrad_args(gr, RXD_NASGRAD_K_SGD, sizeof(cl_mem), &w->mem, sizeof(cl_ulong), &w_off,
			   sizeof(cl_mem), &g->mem, sizeof(cl_ulong), &g_off, sizeof(cl_mem),
			   &buf->mem, sizeof(cl_ulong), &b_off, sizeof(cl_int), &n, sizeof(float),
			   &p->lr, sizeof(float), &p->momentum, sizeof(float), &p->weight_decay,
			   (size_t)0);
	if (ret < 0)
		return ret;
	return nasgrad_launch(gr, RXD_NASGRAD_K_SGD, (size_t)len, 1, 1, 0, span);
}

int nasgrad_adam(struct rxd_nasgrad *gr, const struct rxd_nasgrad_vec *w,
		 const struct rxd_nasgrad_vec *g, const struct rxd_nasgrad_vec *m,
		 const struct rxd_nasgrad_vec *v, int64_t len, const struct rxd_nasgrad_adam *p,
		 struct rxd_nas_span *span)
{
	const struct rxd_nasgrad_vec *const vs[4] = { w, g, m, v };
	cl_ulong w_off = (cl_ulong)w->off, g_off = (cl_ulong)g->off;
	cl_ulong m_off = (cl_ulong)m->off, v_off = (cl_ulong)v->off;
	cl_int n = (cl_int)len;
	float step_size, sqrt_bc2, beta1, omb1, beta2, omb2, eps, wd;
	int ret;

	if ((ret = nasgrad_check_vecs(vs, 4, len)) < 0)
		return ret;
	if (p->step < 1 || !isfinite(p->lr) || !(p->beta1 >= 0.0 && p->beta1 < 1.0) ||
	    !(p->beta2 >= 0.0 && p->beta2 < 1.0) || !(p->eps > 0.0) ||
	    !isfinite(p->weight_decay))
		return -EINVAL;
	/* Everything in double on the host, each rounded to float once, as PyTorch does. */
	step_size = (float)(p->lr / (1.0 - pow(p->beta1, (double)p->step)));
	sqrt_bc2 = (float)sqrt(1.0 - pow(p->beta2, (double)p->step));
	beta1 = (float)p->beta1, omb1 = (float)(1.0 - p->beta1);
	beta2 = (float)p->beta2, omb2 = (float)(1.0 - p->beta2);
	eps = (float)p->eps, wd = (float)p->weight_decay;
	ret = nasgrad_args(gr, RXD_NASGRAD_K_ADAM, sizeof(cl_mem), &w->mem, sizeof(cl_ulong),
			   &w_off, sizeof(cl_mem), &g->mem, sizeof(cl_ulong), &g_off, sizeof(cl_mem),
			   &m->mem, sizeof(cl_ulong), &m_off, sizeof(cl_mem), &v->mem,
			   sizeof(cl_ulong), &v_off, sizeof(cl_int), &n, sizeof(float), &step_size,
			   sizeof(float), &sqrt_bc2, sizeof(float), &beta1, sizeof(float), &omb1,
			   sizeof(float), &beta2, sizeof(float), &omb2, sizeof(float), &eps,
			   sizeof(float), &wd,
			   (size_t)0);
	if (ret < 0)
		return ret;
	return nasgrad_launch(gr, RXD_NASGRAD_K_ADAM, (size_t)len, 1, 1, 0, span);
}

int nasgrad_clip_norm(struct rxd_nasgrad *gr, const struct rxd_nasgrad_vec *g, int64_t len,
		      float max_norm, const struct rxd_nasgrad_vec *sumsq,
		      struct rxd_nas_span *span)
{
	cl_ulong g_off = (cl_ulong)g->off, s_off = (cl_ulong)sumsq->off;
	cl_int n = (cl_int)len;
	int ret;

	if ((ret = nasops_check_range(g->mem, g->off, len)) < 0 ||
	    (ret = nasops_check_range(sumsq->mem, sumsq->off, 1)) < 0)
		return ret;
	if (!(max_norm > 0.0f) || nasgrad_overlap(g->mem, g->off, len, sumsq->mem, sumsq->off, 1))
		return -EINVAL;
	ret = nasgrad_dot_rows(gr, g->mem, g->off, 0, g->mem, g->off, 0, n, 1, sumsq->mem,
			       sumsq->off, 1.0f, false, span);
	if (ret < 0)
		return ret;
	ret = nasgrad_args(gr, RXD_NASGRAD_K_CLIP, sizeof(cl_mem), &g->mem, sizeof(cl_ulong),
			   &g_off, sizeof(cl_int), &n, sizeof(cl_mem), &sumsq->mem, sizeof(cl_ulong),
			   &s_off, sizeof(float), &max_norm, (size_t)0);
	if (ret < 0)
		return ret;
	return nasgrad_launch(gr, RXD_NASGRAD_K_CLIP, (size_t)len, 1, 1, 0, span);
}

/* ---- start-up ------------------------------------------------------------------------ */

int nasgrad_init(struct rxd_nasgrad *gr, struct rxd_device *dev, struct rxd_gemm_engine *eng)
{
	const char *src = kernels_find("nasgrad.cl");
	size_t item_max[3] = { 0 };
	char *log = NULL;
	cl_int e;

	memset(gr, 0, sizeof(*gr));
	gr->dev = dev;
	gr->eng = eng;
	gr->scratch_max_bytes = NASGRAD_SCRATCH_MAX < dev->max_alloc_bytes ? NASGRAD_SCRATCH_MAX
									       : dev->max_alloc_bytes;
	if (!src)
		fatal("kernel source nasgrad.cl is not embedded: the build is broken");
	if (kcache_build(dev->kcache, dev, "nasgrad.cl", src, "-cl-std=CL1.1", &gr->program,
			 &log) < 0) {
		log_msg(LOG_ERR, "nasgrad.cl does not build on this device%s%s", log ? ":\n" : "",
			log ? log : "");
		free(log);
		goto fail;
	}
	clGetDeviceInfo(dev->desc->id, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof(item_max), item_max,
			NULL);
	for (int k = 0; k < RXD_NASGRAD_KERNELS; k++) {
		gr->kernels[k] = clCreateKernel(gr->program, nasgrad_kernel_names[k], &e);
		if (!gr->kernels[k]) {
			log_msg(LOG_ERR, "nasgrad.cl: clCreateKernel(%s): %s",
				nasgrad_kernel_names[k], device_strerror(e));
			goto fail;
		}
		clGetKernelWorkGroupInfo(gr->kernels[k], dev->desc->id, CL_KERNEL_WORK_GROUP_SIZE,
					 sizeof(size_t), &gr->wg[k], NULL);
		clGetKernelWorkGroupInfo(gr->kernels[k], dev->desc->id,
					 CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE,
					 sizeof(size_t), &gr->wg_multiple[k], NULL);
		if (item_max[0] && gr->wg[k] > item_max[0])
			gr->wg[k] = item_max[0];
		if (gr->wg[k] < 1)
			gr->wg[k] = 1;
	}
	return 0;
fail:
	nasgrad_fini(gr);
	return -EIO;
}

void nasgrad_fini(struct rxd_nasgrad *gr)
{
	for (int k = 0; k < RXD_NASGRAD_KERNELS; k++)
		if (gr->kernels[k])
			clReleaseKernel(gr->kernels[k]);
	if (gr->program)
		clReleaseProgram(gr->program);
	if (gr->scratch)
		clReleaseMemObject(gr->scratch);
	memset(gr, 0, sizeof(*gr));
}

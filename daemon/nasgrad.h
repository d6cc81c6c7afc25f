/* nasgrad.h: the backward passes and optimiser updates of a DARTS search on the device
 * (daemon/nasgrad.c, kernels/nasgrad.cl). A header of its own, beside engine.h's
 * sections, because the search is built on top of nasops.c's step kinds.
 *
 * Each backward function mirrors one forward step of nasops.c (or a training-only step
 * added here) and takes the same arguments as its forward: the input tensor x, the step's
 * parameters, and, in place of the output y, the gradient dy with y's shape, read from the
 * slice that the forward's write (wr) names and multiplied by its scale (a mixed
 * operation's softmax weight). Gradients go to a struct rxd_nasgrad_dst: overwritten, or
 * added to when accumulate is set (an input that feeds several steps sums their
 * gradients); a dst whose mem is NULL is not computed. The gradient of x has x's shape.
 *
 * Like nasops.c: device worker thread only; functions only enqueue on dev->queue (in order)
 * and never wait; every index must fit an int. Errors: -EINVAL (a shape or parameter that
 * does not fit, or a written array that overlaps one read; nothing was enqueued), -E2BIG
 * (past the int indexing), -ENOMEM, -EIO (an OpenCL call failed; logged). */
#ifndef RXGEMMD_NASGRAD_H
#define RXGEMMD_NASGRAD_H

#include "engine.h"

/* Where a gradient (or any array a step writes) goes. */
struct rxd_nasgrad_dst {
	cl_mem mem;                  /* NULL: not wanted */
	int64_t off;                 /* elements from the start of mem */
	bool accumulate;             /* add to what is there (false: overwrite) */
};

/* A float array a step only reads (or an optimiser updates in place). */
struct rxd_nasgrad_vec {
	cl_mem mem;
	int64_t off;
};

/* BatchNorm in training mode (batch statistics). */
struct rxd_nasgrad_bn {
	bool affine;                 /* gamma and beta (false: as inside DARTS mixed ops) */
	struct rxd_nasgrad_vec gamma, beta; /* [c] each, when affine */
	struct rxd_nasgrad_vec stats;       /* [2][c]: the batch mean and 1 / sqrt(var + eps),
					     * written by the forward, read by the backward */
	struct rxd_nasgrad_vec running;     /* [2][c]: running mean and (unbiased) variance,
					     * moved by momentum; mem NULL: not tracked */
	float momentum;              /* PyTorch's 0.1 */
	float eps;                   /* RXD_NAS_BN_EPS */
};

struct rxd_nasgrad_sgd {
	float lr, momentum, weight_decay;
};

/* In double, as PyTorch's Python floats: 1 - 0.999f is not float(1 - 0.999). */
struct rxd_nasgrad_adam {
	double lr, beta1, beta2, eps, weight_decay;
	int64_t step;                /* t >= 1, this update's number (bias correction) */
};

enum {
	RXD_NASGRAD_K_CONV_DX, RXD_NASGRAD_K_CONV_DW, RXD_NASGRAD_K_POOL_DX,
	RXD_NASGRAD_K_RELU_DX, RXD_NASGRAD_K_GAP_DX, RXD_NASGRAD_K_BN_FWD,
	RXD_NASGRAD_K_BN_BWD, RXD_NASGRAD_K_DOT, RXD_NASGRAD_K_SUM, RXD_NASGRAD_K_ALPHA,
	RXD_NASGRAD_K_LINEAR_DX, RXD_NASGRAD_K_LINEAR_DW, RXD_NASGRAD_K_XENT,
	RXD_NASGRAD_K_SGD, RXD_NASGRAD_K_ADAM, RXD_NASGRAD_K_CLIP, RXD_NASGRAD_K_IM2COL,
	RXD_NASGRAD_K_COL2IM, RXD_NASGRAD_KERNELS
};

struct rxd_nasgrad {
	struct rxd_device *dev;
	struct rxd_gemm_engine *eng; /* dense convolutions' gradients go through its GEMM;
				      * NULL: through the direct kernels */
	cl_program program;
	cl_kernel kernels[RXD_NASGRAD_KERNELS];
	size_t wg[RXD_NASGRAD_KERNELS];  /* the most work-items a work-group of each may have */
	size_t wg_multiple[RXD_NASGRAD_KERNELS]; /* its preferred work-group size multiple */
	cl_mem scratch;              /* reductions' partial sums and convolutions' columns,
				      * grown on demand; owned */
	uint64_t scratch_bytes;
	uint64_t scratch_max_bytes;  /* columns are made for this many bytes of images at a
				      * time (at least one image) */
};

/* Build kernels/nasgrad.cl for dev (through dev->kcache). eng may be NULL (see above); it
 * must outlive gr. 0, -EIO (logged) or -ENOMEM. */
int nasgrad_init(struct rxd_nasgrad *gr, struct rxd_device *dev, struct rxd_gemm_engine *eng);
void nasgrad_fini(struct rxd_nasgrad *gr);
/* Wait for the queue and free the scratch (a search job calls this when it ends). */
void nasgrad_release_scratch(struct rxd_nasgrad *gr);

/* Convolution (any groups, stride, padding, dilation, relu_in and in_shift; cv->bias is
 * not differentiated: DARTS convolutions have none). dx: the input's gradient; dweight:
 * [c_out][c_in / groups][kh][kw]. Dense ones (groups 1) go through the GEMM engine when
 * there is one: dx = col2im(W^T dy), dW^T = sum over images of im2col(x) dy^T, a plain
 * 1x1 convolution reading and writing its tensors in place; grouped and depthwise ones,
 * and all without an engine, through direct kernels. */
int nasgrad_conv(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
		 const struct rxd_nas_conv *cv, const struct rxd_nas_tensor *dy,
		 const struct rxd_nas_write *wr, const struct rxd_nasgrad_dst *dx,
		 const struct rxd_nasgrad_dst *dweight, struct rxd_nas_span *span);
/* FactorizedReduce's two convolutions: cv[0] (in_shift 0) writes channels [c_off, c_off +
 * cv[0].c_out) of the forward's output and cv[1] (in_shift 1) the next cv[1].c_out; the
 * BN after the concat is nasgrad_bn_backward's. dx sums both halves' gradients. */
int nasgrad_factorized_reduce(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
			      const struct rxd_nas_conv cv[2], const struct rxd_nas_tensor *dy,
			      const struct rxd_nas_write *wr, const struct rxd_nasgrad_dst *dx,
			      const struct rxd_nasgrad_dst dweight[2], struct rxd_nas_span *span);
/* Max (gradient to each window's first maximum) and average (padding not counted). */
int nasgrad_pool(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
		 const struct rxd_nas_pool *p, const struct rxd_nas_tensor *dy,
		 const struct rxd_nas_write *wr, const struct rxd_nasgrad_dst *dx,
		 struct rxd_nas_span *span);
/* ReLU (relu) or the identity (skip_connect, a copy): dx = dy where x > 0 (or everywhere). */
int nasgrad_relu(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x, bool relu,
		 const struct rxd_nas_tensor *dy, const struct rxd_nas_write *wr,
		 const struct rxd_nasgrad_dst *dx, struct rxd_nas_span *span);
/* Global average pooling: dy is n x C_total x 1 x 1. */
int nasgrad_gap(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
		const struct rxd_nas_tensor *dy, const struct rxd_nas_write *wr,
		const struct rxd_nasgrad_dst *dx, struct rxd_nas_span *span);
/* Linear layer (l->bias: dbias wanted only when there is one). */
int nasgrad_linear(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
		   const struct rxd_nas_linear *l, const struct rxd_nas_tensor *dy,
		   const struct rxd_nas_write *wr, const struct rxd_nasgrad_dst *dx,
		   const struct rxd_nasgrad_dst *dweight, const struct rxd_nasgrad_dst *dbias,
		   struct rxd_nas_span *span);
/* BatchNorm, training mode: y's slice = scale * BN(x) (+ y), with the batch statistics;
 * fills bn->stats and moves bn->running. */
int nasgrad_bn_forward(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
		       const struct rxd_nasgrad_bn *bn, const struct rxd_nas_tensor *y,
		       const struct rxd_nas_write *wr, struct rxd_nas_span *span);
/* Its backward, from x and the stats its forward left. dgamma, dbeta: affine only. */
int nasgrad_bn_backward(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *x,
			const struct rxd_nasgrad_bn *bn, const struct rxd_nas_tensor *dy,
			const struct rxd_nas_write *wr, const struct rxd_nasgrad_dst *dx,
			const struct rxd_nasgrad_dst *dgamma, const struct rxd_nasgrad_dst *dbeta,
			struct rxd_nas_span *span);
/* A mixed operation's sum y += w_j op_j(x) is nasops' writes with scale w_j, and each
 * op's backward reads dy with that scale. Its architecture gradient takes two steps:
 * out = sum over dy's slice [wr->c_off, + o->c) of dy * o (dL/dw_j, o op j's output,
 * wr->scale ignored), then nasgrad_alpha. */
int nasgrad_dot(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *dy,
		const struct rxd_nas_write *wr, const struct rxd_nas_tensor *o,
		const struct rxd_nasgrad_dst *out, struct rxd_nas_span *span);
/* dalpha[r][j] = w_j (g[r][j] - sum_i w_i g[r][i]), w = softmax(alpha[r]), for rows x k. */
int nasgrad_alpha(struct rxd_nasgrad *gr, const struct rxd_nasgrad_vec *alpha,
		  const struct rxd_nasgrad_vec *g, int32_t rows, int32_t k,
		  const struct rxd_nasgrad_dst *dalpha, struct rxd_nas_span *span);
/* Softmax cross-entropy of logits z (n x C_total x 1 x 1, classes from wr->c_off) against
 * int32 labels[n]: dz (n x classes) = the gradient of the batch mean loss (dz->accumulate
 * must be false); out[0] = mean loss, out[1] = how many images the argmax gets right. */
int nasgrad_xent(struct rxd_nasgrad *gr, const struct rxd_nas_tensor *z, int32_t classes,
		 const struct rxd_nas_write *wr, const struct rxd_nasgrad_vec *labels,
		 const struct rxd_nasgrad_dst *dz, const struct rxd_nasgrad_vec *out,
		 struct rxd_nas_span *span);
/* The optimisers, on len elements; w, g and the moments must not overlap. */
int nasgrad_sgd(struct rxd_nasgrad *gr, const struct rxd_nasgrad_vec *w,
		const struct rxd_nasgrad_vec *g, const struct rxd_nasgrad_vec *buf, int64_t len,
		const struct rxd_nasgrad_sgd *p, struct rxd_nas_span *span);
int nasgrad_adam(struct rxd_nasgrad *gr, const struct rxd_nasgrad_vec *w,
		 const struct rxd_nasgrad_vec *g, const struct rxd_nasgrad_vec *m,
		 const struct rxd_nasgrad_vec *v, int64_t len, const struct rxd_nasgrad_adam *p,
		 struct rxd_nas_span *span);
/* Clip the global norm of g (every weight's gradient, laid out in one range) to max_norm,
 * as clip_grad_norm_; sumsq[0] receives the squared norm before clipping. */
int nasgrad_clip_norm(struct rxd_nasgrad *gr, const struct rxd_nasgrad_vec *g, int64_t len,
		      float max_norm, const struct rxd_nasgrad_vec *sumsq,
		      struct rxd_nas_span *span);

#endif

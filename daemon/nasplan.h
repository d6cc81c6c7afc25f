/* nasplan.h: NAS networks lowered to plans (nasplan.c) and their weights (nasweights.c):
 * pure, no OpenCL, no libuv; the device side is nasops.c and nasjob.c (engine.h). */
#ifndef RXGEMMD_NASPLAN_H
#define RXGEMMD_NASPLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "genotype.h"
#include "status.h"

/* ---- nasplan.c (DARTS networks lowered to a flat plan of steps) and nasweights.c (their
 * weights); see docs/NAS.md ---- */
/* A network is lowered into steps over tensors (NCHW float32, the plan's batch, each at an
 * offset in one activation arena). Every step reads one tensor and writes a channel slice
 * [c_off, c_off + c_out) of its output tensor, overwriting (accumulate false) or adding,
 * times scale. The device (nasops.c) and the CPU reference (tests/refnas.c) run the same
 * steps. Weights: the request's blob is the reference's state_dict (docs/NAS.md); nas_fold
 * turns it into the plan's weights, BN folded into each conv's weights and bias. */
enum rxd_nas_family { RXD_NAS_CIFAR = 0, RXD_NAS_IMAGENET = 1 };

enum rxd_nas_step_kind {
	RXD_NAS_CONV = 0, /* conv + bias; groups == c_in == c_out: depthwise */
	RXD_NAS_MAXPOOL,  /* k x k, stride, pad; padding never wins */
	RXD_NAS_AVGPOOL,  /* padding not counted in the divisor */
	RXD_NAS_COPY,     /* identity */
	RXD_NAS_ZERO,     /* zeros into the slice (never accumulating) */
	RXD_NAS_GAP,      /* global average pool: c x h x w -> c x 1 x 1 */
	RXD_NAS_LINEAR,   /* out[n][o] = sum_i in[n][i] w[o][i] + b[o] */
	RXD_NAS_DWPW,     /* a depthwise CONV into tensor mid, then a 1x1 dense conv of mid
			   * (w2_off, b2_off) into the slice: sep and dil convs' halves */
	RXD_NAS_KINDS
};

/* What a step belongs to, for the latency breakdown: an operation (enum rxd_nas_op), or
 * one of these. */
enum {
	RXD_NAS_PART_STEM = RXD_OP_COUNT, /* the stem (ImageNet: stem0 and stem1) */
	RXD_NAS_PART_PREPROCESS,          /* the cells' preprocess0/1 */
	RXD_NAS_PART_HEAD,                /* global pooling and the classifier */
	RXD_NAS_PART_CONCAT,              /* copies of nodes into the cell output */
	RXD_NAS_PARTS
};

#define RXD_NAS_MAX_C 4096
#define RXD_NAS_MAX_LAYERS 256
#define RXD_NAS_MAX_CLASSES 100000
#define RXD_NAS_MAX_SIZE 4096  /* input height and width */
#define RXD_NAS_MAX_BATCH 65536
#define RXD_NAS_MAX_STEPS 8    /* supernet nodes per cell */
#define RXD_NAS_MAX_PLAN_STEPS 20000 /* steps of a plan (a 20-layer supernet has 4881
				      * unfused, 3201 fused) */
#define RXD_NAS_BN_EPS 1e-5f
#define RXD_NAS_ALIGN_FLOATS 64 /* tensors start at multiples of this in the arena */

struct rxd_nas_config {
	int family;                 /* enum rxd_nas_family */
	int32_t C, layers, classes; /* initial channels, cells, classes */
	int32_t height, width;      /* input size (ImageNet: 224 x 224) */
	int32_t batch;
	bool supernet;              /* the search network: every edge the mix of the eight
				     * primitives weighted by softmax(alpha); CIFAR only */
	struct rxd_genotype geno;   /* when !supernet */
	int32_t steps, multiplier;  /* supernet: nodes per cell, nodes concatenated */
	const float *alpha_normal;  /* supernet: [edges][RXD_NAS_PRIMITIVES] each, where */
	const float *alpha_reduce;  /* edges = steps (steps + 3) / 2; copied by nas_build */
	bool unfused;               /* one step per module: no DWPW, no adds (the tests
				     * compare it with the fused plan) */
};

struct rxd_nas_ptensor {
	int32_t c, h, w;          /* per image; the batch is the plan's */
	uint64_t elems;           /* batch c h w */
	uint64_t offset;          /* in the arena, floats */
	int32_t first, last;      /* the first step writing it, the last reading it (the input:
				   * -1; the logits: n_steps) */
};

/* Weighted entries of the state_dict blob, in its order. */
enum rxd_nas_param_kind {
	RXD_NAS_P_CONV = 0, /* weight [cout][cin/groups][kh][kw] */
	RXD_NAS_P_BN,       /* weight, bias, running_mean, running_var: 4 x c */
	RXD_NAS_P_BN_STATS, /* affine=False (the supernet): running_mean, running_var: 2 x c */
	RXD_NAS_P_LINEAR,   /* weight [out][in], bias [out] */
};

struct rxd_nas_param {
	int kind;
	int32_t cout, cin, kh, kw; /* conv: cin per group; BN: cout = channels; linear: out, in */
	uint64_t floats;           /* of the blob */
	uint64_t blob_off;
	char name[64];             /* the state_dict prefix, e.g. "cells.0._ops.1.op.2" */
};

struct rxd_nas_step {
	uint8_t kind;          /* enum rxd_nas_step_kind */
	uint8_t part;          /* enum rxd_nas_op or RXD_NAS_PART_* */
	int16_t cell;          /* -1: stem; 0..layers-1; layers: head */
	int32_t in, out;       /* tensors */
	int32_t in_c_off, c_in; /* the input's channels read: [in_c_off, in_c_off + c_in);
				 * nas_build reads whole tensors only (in_c_off 0, c_in all) */
	int32_t c_off, c_out;  /* the output slice */
	bool accumulate;
	bool relu_in;          /* ReLU applied to the input as it is read */
	uint8_t in_shift;      /* 1: read in[:, :, 1:, 1:] (FactorizedReduce's conv_2) */
	float scale;
	int32_t kh, kw, sh, sw, ph, pw, dh, dw, groups; /* CONV; pools use kh, sh, ph */
	int32_t h_out, w_out;  /* = the output tensor's */
	uint64_t w_off, b_off; /* CONV, LINEAR: in the plan's weights, floats */
	int32_t conv_param, bn_param, bn_c_off; /* what nas_fold reads; -1: none */
	uint64_t macs;         /* multiply-adds per image */
	int32_t mid;           /* DWPW: the depthwise half's output (c_in channels) */
	int32_t conv2_param;   /* DWPW: the pointwise weight (bn_param is its BN) */
	uint64_t w2_off, b2_off; /* DWPW: the pointwise weights in the plan's weights */
	int32_t add, add_c_off; /* a tensor (-1: none) whose channels [add_c_off, + c_out),
				 * of the output's size, are added times add_scale as the
				 * slice is written: an identity edge summed into the node */
	float add_scale;
};

struct rxd_nas_plan {
	int family;
	bool supernet;
	int32_t batch, layers, classes;
	struct rxd_nas_ptensor *tensors;
	size_t n_tensors;
	struct rxd_nas_step *steps;
	size_t n_steps;
	struct rxd_nas_param *params;
	size_t n_params;
	int32_t input, output;     /* tensors: the image batch, the logits */
	uint64_t blob_floats;      /* the state_dict blob's length */
	uint64_t weight_floats;    /* the folded weights' */
	uint64_t arena_floats;     /* the activation arena's, after packing by liveness */
	uint64_t live_peak_floats; /* the most floats live at one step (a lower bound) */
	uint64_t param_count;      /* the paper's convention: conv, BN affine, linear */
	uint64_t macs;             /* multiply-adds per image */
};

/* Check cfg and lower it into plan. 0, or -EINVAL with a sentence in err naming the field,
 * -E2BIG (a size overflows; err says which) or -ENOMEM. Free with nas_plan_free. */
int nas_build(const struct rxd_nas_config *cfg, struct rxd_nas_plan *plan, struct rxd_error *err);
void nas_plan_free(struct rxd_nas_plan *plan);
/* dst becomes a copy of src that owns its arrays (free it with nas_plan_free). 0 or
 * -ENOMEM (dst then holds nothing). */
int nas_plan_copy(struct rxd_nas_plan *dst, const struct rxd_nas_plan *src);
/* The host memory a plan takes (the struct and its arrays), bytes. */
uint64_t nas_plan_host_bytes(const struct rxd_nas_plan *plan);
/* Device memory the plan needs: the folded weights and the arena, in bytes. */
uint64_t nas_plan_bytes(const struct rxd_nas_plan *plan);
/* "sep_conv_3x3", "stem", "preprocess", "head", "concat". */
const char *nas_part_name(int part);
const char *nas_kind_name(int kind);
/* Fill blob (plan->blob_floats) with the documented deterministic weights of seed. */
void nas_init_blob(const struct rxd_nas_plan *plan, uint64_t seed, float *blob);
/* n floats uniform in [-1, 1) from seed (random inputs). */
void nas_random_floats(uint64_t seed, float *out, uint64_t n);
/* Fold blob (the state_dict, plan->blob_floats) into weights (plan->weight_floats).
 * 0, or -EINVAL when a running_var is negative or a value is not finite (err names the
 * entry). */
int nas_fold(const struct rxd_nas_plan *plan, const float *blob, float *weights,
	     struct rxd_error *err);
/* A weight blob of floats floats for plan: 0, or -EINVAL with err stating the length
 * expected. */
int nas_check_blob(const struct rxd_nas_plan *plan, uint64_t floats, struct rxd_error *err);

#endif

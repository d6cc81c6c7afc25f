/* nasweights.c: a plan's weights: the documented deterministic generator, the blob's
 * layout checks, and BN folding into the convolutions before a run. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nasplan.h"

/* splitmix64 (Steele, Lea, Flood 2014): the documented generator of weights and inputs. */
static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [lo, hi): the top 24 bits of the next output. */
static float uniform(uint64_t *state, float lo, float hi)
{
	float u = (float)(splitmix64(state) >> 40) * (1.0f / 16777216.0f);

	return lo + (hi - lo) * u;
}

void nas_random_floats(uint64_t seed, float *out, uint64_t n)
{
	uint64_t st = seed;

	for (uint64_t i = 0; i < n; i++)
		out[i] = uniform(&st, -1.0f, 1.0f);
}

void nas_init_blob(const struct rxd_nas_plan *plan, uint64_t seed, float *blob)
{
	uint64_t st = seed;

	for (size_t i = 0; i < plan->n_params; i++) {
		const struct rxd_nas_param *q = &plan->params[i];
		float *v = blob + q->blob_off;
		uint64_t c = (uint64_t)q->cout;

		switch (q->kind) {
		case RXD_NAS_P_CONV: {
			/* Kaiming-uniform for ReLU networks: bound sqrt(6 / fan_in). */
			float bound = sqrtf(6.0f / (float)((uint64_t)q->cin * q->kh * q->kw));

			for (uint64_t k = 0; k < q->floats; k++)
				v[k] = uniform(&st, -bound, bound);
			break;
		}
		case RXD_NAS_P_BN:
			/* Statistics away from the identity, so that folding is exercised. */
			for (uint64_t k = 0; k < c; k++)
				v[k] = uniform(&st, 0.5f, 1.5f); /* weight (gamma) */
			for (uint64_t k = 0; k < c; k++)
				v[c + k] = uniform(&st, -0.2f, 0.2f); /* bias (beta) */
			/* then the running statistics, as for affine=False */
			__attribute__((fallthrough));
		case RXD_NAS_P_BN_STATS: {
			float *stats = q->kind == RXD_NAS_P_BN ? v + 2 * c : v;

			for (uint64_t k = 0; k < c; k++)
				stats[k] = uniform(&st, -0.2f, 0.2f); /* running_mean */
			for (uint64_t k = 0; k < c; k++)
				stats[c + k] = uniform(&st, 0.5f, 2.0f); /* running_var */
			break;
		}
		default: {
			/* PyTorch's Linear default: U(-1/sqrt(in), 1/sqrt(in)) for both. */
			float bound = 1.0f / sqrtf((float)q->cin);

			for (uint64_t k = 0; k < q->floats; k++)
				v[k] = uniform(&st, -bound, bound);
			break;
		}
		}
	}
}

/* One convolution's folded weights (c_out x per_out) and bias: the conv's weights from
 * blob (conv_param; -1: an identity, a BN alone) times its BN's (bn_param; -1: none)
 * gamma / sqrt(var + eps) per output channel, BN channels from bn_c_off. */
static void fold_conv(const struct rxd_nas_plan *plan, const float *blob, int32_t conv_param,
		      int32_t bn_param, int32_t bn_c_off, int32_t c_out, uint64_t per_out,
		      float *w, float *b)
{
	for (int32_t co = 0; co < c_out; co++) {
		float g = 1.0f, beta = 0.0f, mean = 0.0f, bias = 0.0f;
		float *wd = w + (uint64_t)co * per_out;

		if (bn_param >= 0) {
			const struct rxd_nas_param *q = &plan->params[bn_param];
			const float *bn = blob + q->blob_off;
			uint64_t c = (uint64_t)q->cout, ch = (uint64_t)(bn_c_off + co);
			float gamma = 1.0f, var;

			if (q->kind == RXD_NAS_P_BN) {
				gamma = bn[ch];
				beta = bn[c + ch];
				bn += 2 * c;
			}
			mean = bn[ch];
			var = bn[c + ch];
			g = gamma / sqrtf(var + RXD_NAS_BN_EPS);
			bias = beta - mean * g;
		}
		if (conv_param >= 0) {
			const float *ws = blob + plan->params[conv_param].blob_off +
					  (uint64_t)co * per_out;

			for (uint64_t k = 0; k < per_out; k++)
				wd[k] = ws[k] * g;
		} else {
			/* A BN alone (the supernet's pools): a depthwise 1x1 identity. */
			for (uint64_t k = 0; k < per_out; k++)
				wd[k] = g;
		}
		b[co] = bias;
	}
}

int nas_fold(const struct rxd_nas_plan *plan, const float *blob, float *weights,
	     struct rxd_error *err)
{
	for (uint64_t k = 0; k < plan->blob_floats; k++) {
		if (!isfinite(blob[k])) {
			for (size_t i = 0; i < plan->n_params; i++) {
				const struct rxd_nas_param *q = &plan->params[i];

				if (k >= q->blob_off && k < q->blob_off + q->floats) {
					error_set(err, RXD_S_INVALID_ARGUMENT,
						 "weight %llu (in %s) is not finite",
						 (unsigned long long)k, q->name);
					return -EINVAL;
				}
			}
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < plan->n_params; i++) {
		const struct rxd_nas_param *q = &plan->params[i];
		const float *var;

		if (q->kind != RXD_NAS_P_BN && q->kind != RXD_NAS_P_BN_STATS)
			continue;
		var = blob + q->blob_off + (q->kind == RXD_NAS_P_BN ? 3 : 1) * (uint64_t)q->cout;
		for (int32_t c = 0; c < q->cout; c++) {
			if (var[c] < 0) {
				error_set(err, RXD_S_INVALID_ARGUMENT, "%s.running_var[%d] is "
					  "negative (%g)", q->name, c, (double)var[c]);
				return -EINVAL;
			}
		}
	}
	for (size_t si = 0; si < plan->n_steps; si++) {
		const struct rxd_nas_step *s = &plan->steps[si];

		if (s->kind == RXD_NAS_LINEAR) {
			const struct rxd_nas_param *q = &plan->params[s->conv_param];

			memcpy(weights + s->w_off, blob + q->blob_off, q->floats * sizeof(float));
			continue;
		}
		if (s->kind == RXD_NAS_DWPW) {
			/* The depthwise half has no BN of its own; the pointwise half takes it. */
			fold_conv(plan, blob, s->conv_param, -1, 0, s->c_in, (uint64_t)s->kh * s->kw,
				  weights + s->w_off, weights + s->b_off);
			fold_conv(plan, blob, s->conv2_param, s->bn_param, s->bn_c_off, s->c_out,
				  (uint64_t)s->c_in, weights + s->w2_off, weights + s->b2_off);
			continue;
		}
		if (s->kind != RXD_NAS_CONV)
			continue;
		fold_conv(plan, blob, s->conv_param, s->bn_param, s->bn_c_off, s->c_out,
			  (uint64_t)(s->c_in / s->groups) * s->kh * s->kw, weights + s->w_off,
			  weights + s->b_off);
	}
	return 0;
}

int nas_check_blob(const struct rxd_nas_plan *plan, uint64_t floats, struct rxd_error *err)
{
	if (floats == plan->blob_floats)
		return 0;
	error_set(err, RXD_S_INVALID_ARGUMENT,
		 "weights has %llu floats; this network's state_dict (without "
		 "num_batches_tracked) has %llu",
		 (unsigned long long)floats, (unsigned long long)plan->blob_floats);
	return -EINVAL;
}

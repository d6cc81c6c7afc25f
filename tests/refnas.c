/* refnas.c: the CPU reference of NAS plans: every step in plain nested loops, written for
 * being obviously right rather than fast, and sharing nothing with the device code. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refnas.h"

static float relu_if(float v, bool relu)
{
	return relu && v < 0 ? 0 : v;
}

/* out = (accumulate ? out : 0) + (scale * v + add_scale * a); a: the added tensor's
 * element, NULL without one. */
static void put(float *o, float v, const struct rxd_nas_step *s, const float *a)
{
	float r = s->scale * v;

	if (a)
		r += s->add_scale * *a;
	*o = (s->accumulate ? *o : 0.0f) + r;
}

static void run_step(const struct rxd_nas_plan *p, const struct rxd_nas_step *s,
		     const float *wts, float *const *base)
{
	const struct rxd_nas_ptensor *ti = &p->tensors[s->in], *to = &p->tensors[s->out];
	const struct rxd_nas_ptensor *ta = s->add >= 0 ? &p->tensors[s->add] : NULL;
	const float *x = base[s->in], *a = ta ? base[s->add] : NULL;
	float *y = base[s->out];
	long N = p->batch, Hi = ti->h, Wi = ti->w, Ho = to->h, Wo = to->w;

#define IN(n_, c_, i_, j_) x[(((n_) * ti->c + s->in_c_off + (c_)) * Hi + (i_)) * Wi + (j_)]
#define OUT(n_, c_, i_, j_) y[(((n_) * to->c + s->c_off + (c_)) * Ho + (i_)) * Wo + (j_)]
#define ADD(n_, c_, i_, j_) \
	(a ? &a[(((n_) * ta->c + s->add_c_off + (c_)) * Ho + (i_)) * Wo + (j_)] : NULL)
	switch (s->kind) {
	case RXD_NAS_DWPW: {
		/* The two convolutions it stands for, one after the other through mid. */
		struct rxd_nas_step dw = *s, pw = *s;

		dw.kind = pw.kind = RXD_NAS_CONV;
		dw.out = s->mid;
		dw.c_off = 0;
		dw.c_out = s->c_in;
		dw.accumulate = false;
		dw.scale = 1.0f;
		dw.add = -1;
		pw.in = s->mid;
		pw.in_c_off = 0;
		pw.kh = pw.kw = pw.sh = pw.sw = pw.dh = pw.dw = pw.groups = 1;
		pw.ph = pw.pw = 0;
		pw.relu_in = false;
		pw.in_shift = 0;
		pw.w_off = s->w2_off;
		pw.b_off = s->b2_off;
		run_step(p, &dw, wts, base);
		run_step(p, &pw, wts, base);
		break;
	}
	case RXD_NAS_CONV: {
		long cin_g = s->c_in / s->groups, cout_g = s->c_out / s->groups;
		long hs = Hi - s->in_shift, ws = Wi - s->in_shift, sh = s->in_shift;

		for (long n = 0; n < N; n++)
			for (long co = 0; co < s->c_out; co++)
				for (long oy = 0; oy < Ho; oy++)
					for (long ox = 0; ox < Wo; ox++) {
						long g = co / cout_g;
						double acc = wts[s->b_off + co];

						for (long ci = 0; ci < cin_g; ci++)
							for (long ky = 0; ky < s->kh; ky++)
								for (long kx = 0; kx < s->kw; kx++) {
									long iy = oy * s->sh - s->ph + ky * s->dh;
									long ix = ox * s->sw - s->pw + kx * s->dw;
									float w = wts[s->w_off +
										      ((co * cin_g + ci) * s->kh + ky) * s->kw + kx];

									if (iy < 0 || iy >= hs || ix < 0 || ix >= ws)
										continue;
									acc += (double)w * relu_if(IN(n, g * cin_g + ci, iy + sh, ix + sh),
												   s->relu_in);
								}
						put(&OUT(n, co, oy, ox), (float)acc, s, ADD(n, co, oy, ox));
					}
		break;
	}
	case RXD_NAS_MAXPOOL:
	case RXD_NAS_AVGPOOL:
		for (long n = 0; n < N; n++)
			for (long c = 0; c < s->c_out; c++)
				for (long oy = 0; oy < Ho; oy++)
					for (long ox = 0; ox < Wo; ox++) {
						double sum = 0;
						float mx = 0;
						long cnt = 0;

						for (long ky = 0; ky < s->kh; ky++)
							for (long kx = 0; kx < s->kw; kx++) {
								long iy = oy * s->sh - s->ph + ky;
								long ix = ox * s->sw - s->pw + kx;
								float v;

								if (iy < 0 || iy >= Hi || ix < 0 || ix >= Wi)
									continue;
								v = relu_if(IN(n, c, iy, ix), s->relu_in);
								if (cnt == 0 || v > mx)
									mx = v;
								sum += v;
								cnt++;
							}
						put(&OUT(n, c, oy, ox),
						    s->kind == RXD_NAS_MAXPOOL ? mx : (float)(sum / (double)cnt), s,
						    ADD(n, c, oy, ox));
					}
		break;
	case RXD_NAS_COPY:
		for (long n = 0; n < N; n++)
			for (long c = 0; c < s->c_out; c++)
				for (long i = 0; i < Ho; i++)
					for (long j = 0; j < Wo; j++)
						put(&OUT(n, c, i, j), relu_if(IN(n, c, i, j), s->relu_in), s,
						    ADD(n, c, i, j));
		break;
	case RXD_NAS_ZERO:
		for (long n = 0; n < N; n++)
			for (long c = 0; c < s->c_out; c++)
				for (long i = 0; i < Ho; i++)
					for (long j = 0; j < Wo; j++)
						OUT(n, c, i, j) = 0;
		break;
	case RXD_NAS_GAP:
		for (long n = 0; n < N; n++)
			for (long c = 0; c < s->c_out; c++) {
				double sum = 0;

				for (long i = 0; i < Hi; i++)
					for (long j = 0; j < Wi; j++)
						sum += IN(n, c, i, j);
				put(&OUT(n, c, 0, 0), (float)(sum / (double)(Hi * Wi)), s, NULL);
			}
		break;
	case RXD_NAS_LINEAR:
		for (long n = 0; n < N; n++)
			for (long o = 0; o < s->c_out; o++) {
				double acc = wts[s->b_off + o];

				for (long i = 0; i < s->c_in; i++)
					acc += (double)wts[s->w_off + o * s->c_in + i] * IN(n, i, 0, 0);
				put(&OUT(n, o, 0, 0), (float)acc, s, NULL);
			}
		break;
	}
#undef IN
#undef OUT
#undef ADD
}

int refnas_run(const struct rxd_nas_plan *plan, const float *weights, const float *input,
	       float *logits, bool packed)
{
	float **base = calloc(plan->n_tensors, sizeof(*base));
	float *arena = NULL;
	int rc = -ENOMEM;

	if (!base)
		return -ENOMEM;
	if (packed) {
		/* Garbage, not zeros, where nothing was written: a step that reads what no step
		 * wrote shows up. */
		arena = malloc(plan->arena_floats * sizeof(float));
		if (!arena)
			goto out;
		for (uint64_t i = 0; i < plan->arena_floats; i++)
			arena[i] = 1e30f;
		for (size_t t = 0; t < plan->n_tensors; t++)
			base[t] = arena + plan->tensors[t].offset;
	} else {
		for (size_t t = 0; t < plan->n_tensors; t++) {
			base[t] = malloc(plan->tensors[t].elems * sizeof(float));
			if (!base[t])
				goto out;
			for (uint64_t i = 0; i < plan->tensors[t].elems; i++)
				base[t][i] = 1e30f;
		}
	}
	memcpy(base[plan->input], input, plan->tensors[plan->input].elems * sizeof(float));
	for (size_t i = 0; i < plan->n_steps; i++)
		run_step(plan, &plan->steps[i], weights, base);
	memcpy(logits, base[plan->output], plan->tensors[plan->output].elems * sizeof(float));
	rc = 0;
out:
	if (!packed)
		for (size_t t = 0; t < plan->n_tensors; t++)
			free(base[t]);
	free(arena);
	free(base);
	return rc;
}

void refnas_op_genotype(int op, bool reduce_only, struct rxd_genotype *g)
{
	char text[RXD_GENOTYPE_TEXT_MAX];
	const char *X = genotype_op_name(op);
	struct rxd_error err = { 0 };

	if (reduce_only)
		snprintf(text, sizeof(text),
			 "Genotype(normal=[('%s', 0), ('%s', 1)], normal_concat=[2], "
			 "reduce=[('%s', 0), ('%s', 1), ('skip_connect', 2), ('%s', 2), "
			 "('%s', 3), ('none', 0), ('none', 2), ('skip_connect', 3)], "
			 "reduce_concat=[3, 4, 5])", X, X, X, X, X, X);
	else
		snprintf(text, sizeof(text),
			 "Genotype(normal=[('%s', 0), ('skip_connect', 1), ('skip_connect', 0), "
			 "('%s', 2), ('none', 2), ('%s', 3), ('skip_connect', 1), "
			 "('skip_connect', 2)], normal_concat=[3, 4, 5], "
			 "reduce=[('%s', 0), ('%s', 1), ('skip_connect', 2), ('%s', 0), "
			 "('skip_connect', 0), ('none', 2), ('skip_connect', 1), "
			 "('skip_connect', 3)], reduce_concat=[2, 4, 5])", X, X, X, X, X, X);
	if (genotype_parse(text, strlen(text), g, &err) < 0)
		abort(); /* the text above is valid for every operation */
}

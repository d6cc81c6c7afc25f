/* nas.c: DARTS networks (the reference's NetworkCIFAR, NetworkImageNet and the search
 * network) lowered into a flat plan of steps, their parameter counts and multiply-adds,
 * deterministic weights, BN folding, and the packing of activations by liveness.
 *
 * The builder emits steps in the order the reference's forward() runs them and creates the
 * weighted modules in the order their constructors register them, which is the order of
 * the state_dict; both orders are the same walk, so one pass does both. See docs/NAS.md. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rxgemmd.h"

struct builder {
	struct rxd_nas_plan *p;
	size_t cap_t, cap_s, cap_p;
	int cell, part;
	bool affine;  /* BN of the evaluation networks; false in the supernet's cells */
	int rc;       /* sticky: the first error */
	struct rxd_error *err;
};

static void berr(struct builder *b, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void berr(struct builder *b, int rc, const char *fmt, ...)
{
	va_list ap;

	if (b->rc)
		return;
	b->rc = rc;
	if (!b->err)
		return;
	b->err->status = rc == -ENOMEM ? RXD_S_NO_MEMORY
			 : rc == -E2BIG ? RXD_S_TOO_BIG
					: RXD_S_INVALID_ARGUMENT;
	va_start(ap, fmt);
	vsnprintf(b->err->msg, sizeof(b->err->msg), fmt, ap);
	va_end(ap);
}

static bool grow(struct builder *b, void **arr, size_t *cap, size_t n, size_t size)
{
	size_t ncap;
	void *q;

	if (n < *cap)
		return true;
	ncap = *cap ? *cap * 2 : 64;
	q = realloc(*arr, ncap * size);
	if (!q) {
		berr(b, -ENOMEM, "out of memory building the network");
		return false;
	}
	*arr = q;
	*cap = ncap;
	return true;
}

static int add_tensor(struct builder *b, int32_t c, int32_t h, int32_t w)
{
	struct rxd_nas_plan *p = b->p;
	struct rxd_nas_ptensor *t;
	uint64_t e;

	if (b->rc || !grow(b, (void **)&p->tensors, &b->cap_t, p->n_tensors, sizeof(*t)))
		return -1;
	if (c < 1 || h < 1 || w < 1) {
		berr(b, -EINVAL, "the input is too small: a feature map of cell %d would be "
				 "%dx%d", b->cell, h, w);
		return -1;
	}
	if (__builtin_mul_overflow((uint64_t)p->batch, (uint64_t)c, &e) ||
	    __builtin_mul_overflow(e, (uint64_t)h * (uint64_t)w, &e) || e > (1ull << 50)) {
		berr(b, -E2BIG, "a feature map of %d x %d x %d x %d floats is too large", p->batch,
		     c, h, w);
		return -1;
	}
	t = &p->tensors[p->n_tensors];
	memset(t, 0, sizeof(*t));
	t->c = c;
	t->h = h;
	t->w = w;
	t->elems = e;
	t->first = INT32_MAX;
	t->last = -1;
	return (int)p->n_tensors++;
}

static int add_param(struct builder *b, int kind, int32_t cout, int32_t cin, int32_t kh,
		     int32_t kw, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static int add_param(struct builder *b, int kind, int32_t cout, int32_t cin, int32_t kh,
		     int32_t kw, const char *fmt, ...)
{
	struct rxd_nas_plan *p = b->p;
	struct rxd_nas_param *q;
	va_list ap;

	if (b->rc || !grow(b, (void **)&p->params, &b->cap_p, p->n_params, sizeof(*q)))
		return -1;
	q = &p->params[p->n_params];
	memset(q, 0, sizeof(*q));
	q->kind = kind;
	q->cout = cout;
	q->cin = cin;
	q->kh = kh;
	q->kw = kw;
	/* Every factor is bounded by the RXD_NAS_MAX_* limits: no overflow below 2^63. */
	switch (kind) {
	case RXD_NAS_P_CONV:
		q->floats = (uint64_t)cout * cin * kh * kw;
		p->param_count += q->floats;
		break;
	case RXD_NAS_P_BN:
		q->floats = 4ull * cout;
		p->param_count += 2ull * cout;
		break;
	case RXD_NAS_P_BN_STATS:
		q->floats = 2ull * cout;
		break;
	default:
		q->floats = (uint64_t)cout * cin + cout;
		p->param_count += q->floats;
		break;
	}
	q->blob_off = p->blob_floats;
	p->blob_floats += q->floats;
	va_start(ap, fmt);
	vsnprintf(q->name, sizeof(q->name), fmt, ap);
	va_end(ap);
	return (int)p->n_params++;
}

static struct rxd_nas_step *add_step(struct builder *b, int kind, int in, int32_t in_c_off,
				     int32_t c_in, int out, int32_t c_off, int32_t c_out, bool acc,
				     float scale)
{
	struct rxd_nas_plan *p = b->p;
	struct rxd_nas_step *s;

	if (b->rc || in < 0 || out < 0)
		return NULL;
	/* Planning is quadratic in the tensors (pack) and runs on the loop thread. */
	if (p->n_steps >= RXD_NAS_MAX_PLAN_STEPS) {
		berr(b, -E2BIG, "the network has more than %d steps; use fewer layers (or steps)",
		     RXD_NAS_MAX_PLAN_STEPS);
		return NULL;
	}
	if (!grow(b, (void **)&p->steps, &b->cap_s, p->n_steps, sizeof(*s)))
		return NULL;
	s = &p->steps[p->n_steps];
	memset(s, 0, sizeof(*s));
	s->kind = (uint8_t)kind;
	s->part = (uint8_t)b->part;
	s->cell = (int16_t)b->cell;
	s->in = in;
	s->out = out;
	s->in_c_off = in_c_off;
	s->c_in = c_in;
	s->c_off = c_off;
	s->c_out = c_out;
	s->accumulate = acc;
	s->scale = scale;
	s->h_out = p->tensors[out].h;
	s->w_out = p->tensors[out].w;
	s->kh = s->kw = s->sh = s->sw = s->dh = s->dw = s->groups = 1;
	s->conv_param = s->bn_param = -1;
	if (p->tensors[in].first > (int32_t)p->n_steps && in != p->input)
		berr(b, -EINVAL, "internal: step %zu reads tensor %d before it is written",
		     p->n_steps, in);
	if (p->tensors[out].first > (int32_t)p->n_steps)
		p->tensors[out].first = (int32_t)p->n_steps;
	p->tensors[in].last = (int32_t)p->n_steps;
	if (in_c_off < 0 || in_c_off + c_in > p->tensors[in].c || c_off < 0 ||
	    c_off + c_out > p->tensors[out].c)
		berr(b, -EINVAL, "internal: bad channel slice at step %zu", p->n_steps);
	p->n_steps++;
	return s;
}

static int32_t out_size(int32_t in, int32_t k, int32_t s, int32_t pad, int32_t dil)
{
	int32_t span = dil * (k - 1) + 1;

	if (in + 2 * pad < span)
		return 0;
	return (in + 2 * pad - span) / s + 1;
}

struct conv {
	int in, out;
	int32_t in_c_off, cin; /* the input's channels read; cin 0: all of them */
	int32_t c_off, cout;
	int32_t kh, kw, sh, sw, ph, pw, dh, dw, groups;
	bool relu, acc;
	int shift;
	float scale;
	int conv_param, bn_param;
	int32_t bn_c_off;
};

static void emit_conv(struct builder *b, const struct conv *c)
{
	struct rxd_nas_plan *p = b->p;
	struct rxd_nas_step *s;
	const struct rxd_nas_ptensor *ti, *to;
	int32_t ho, wo;

	if (b->rc)
		return;
	ti = &p->tensors[c->in];
	to = &p->tensors[c->out];
	ho = out_size(ti->h - c->shift, c->kh, c->sh, c->ph, c->dh);
	wo = out_size(ti->w - c->shift, c->kw, c->sw, c->pw, c->dw);
	if (ho != to->h || wo != to->w) {
		berr(b, -EINVAL,
		     "the input size does not fit the network: in cell %d a %dx%d map would "
		     "become %dx%d where %dx%d is needed (FactorizedReduce needs even sizes)",
		     b->cell, ti->h, ti->w, ho, wo, to->h, to->w);
		return;
	}
	s = add_step(b, RXD_NAS_CONV, c->in, c->in_c_off, c->cin ? c->cin : ti->c, c->out, c->c_off,
		     c->cout, c->acc, c->scale);
	if (!s)
		return;
	s->kh = c->kh;
	s->kw = c->kw;
	s->sh = c->sh;
	s->sw = c->sw;
	s->ph = c->ph;
	s->pw = c->pw;
	s->dh = c->dh;
	s->dw = c->dw;
	s->groups = c->groups;
	s->relu_in = c->relu;
	s->in_shift = (uint8_t)c->shift;
	s->conv_param = c->conv_param;
	s->bn_param = c->bn_param;
	s->bn_c_off = c->bn_c_off;
	s->w_off = p->weight_floats;
	p->weight_floats += (uint64_t)c->cout * (s->c_in / c->groups) * c->kh * c->kw;
	s->b_off = p->weight_floats;
	p->weight_floats += (uint64_t)c->cout;
	s->macs = (uint64_t)c->cout * (s->c_in / c->groups) * c->kh * c->kw * (uint64_t)ho *
		  (uint64_t)wo;
	p->macs += s->macs;
}

/* A conv (its weight registered now under name) followed by an optional BN. */
static void conv_bn(struct builder *b, int in, int32_t in_c_off, int32_t cin, int out,
		    int32_t c_off, int32_t cout, int32_t k,
		    int32_t stride, int32_t pad, int32_t dil, int32_t groups, bool relu, bool bn,
		    bool acc, float scale, const char *conv_name, const char *bn_name)
{
	struct conv c = { 0 };

	if (b->rc)
		return;
	c.in = in;
	c.in_c_off = in_c_off;
	c.cin = cin;
	c.out = out;
	c.c_off = c_off;
	c.cout = cout;
	c.kh = c.kw = k;
	c.sh = c.sw = stride;
	c.ph = c.pw = pad;
	c.dh = c.dw = dil;
	c.groups = groups;
	c.relu = relu;
	c.acc = acc;
	c.scale = scale;
	c.conv_param = add_param(b, RXD_NAS_P_CONV, cout, cin / groups, k, k, "%s", conv_name);
	c.bn_param = bn ? add_param(b, b->affine ? RXD_NAS_P_BN : RXD_NAS_P_BN_STATS, cout, 0, 0,
				    0, "%s", bn_name)
			: -1;
	emit_conv(b, &c);
}

/* FactorizedReduce(cin -> cout) of in into out's slice. */
static void factorized_reduce(struct builder *b, int in, int32_t in_c_off, int32_t cin, int out,
			      int32_t c_off, int32_t cout, bool acc, float scale, const char *prefix)
{
	struct conv c = { 0 };
	int p1, p2, pb;

	if (cout % 2) {
		berr(b, -EINVAL, "FactorizedReduce to %d channels: C must be even", cout);
		return;
	}
	p1 = add_param(b, RXD_NAS_P_CONV, cout / 2, cin, 1, 1, "%s.conv_1", prefix);
	p2 = add_param(b, RXD_NAS_P_CONV, cout / 2, cin, 1, 1, "%s.conv_2", prefix);
	pb = add_param(b, b->affine ? RXD_NAS_P_BN : RXD_NAS_P_BN_STATS, cout, 0, 0, 0, "%s.bn",
		       prefix);
	c.in = in;
	c.in_c_off = in_c_off;
	c.cin = cin;
	c.out = out;
	c.cout = cout / 2;
	c.kh = c.kw = 1;
	c.sh = c.sw = 2;
	c.dh = c.dw = 1;
	c.groups = 1;
	c.relu = true;
	c.acc = acc;
	c.scale = scale;
	c.bn_param = pb;
	c.c_off = c_off;
	c.conv_param = p1;
	c.bn_c_off = 0;
	emit_conv(b, &c);
	c.c_off = c_off + cout / 2;
	c.conv_param = p2;
	c.bn_c_off = cout / 2;
	c.shift = 1;
	emit_conv(b, &c);
}

/* One operation of C channels at stride on x into dst's slice [c_off, c_off + C). prefix
 * names the op's module in the state_dict. */
static void lower_op(struct builder *b, int op, int x, int32_t x_off, int32_t C, int32_t stride,
		     int dst, int32_t c_off, bool acc, float scale, const char *prefix)
{
	struct rxd_nas_plan *p = b->p;
	int32_t h, w, ho, wo;
	char n1[80], n2[80];
	int t1, t2, t3;

	if (b->rc)
		return;
	h = p->tensors[x].h;
	w = p->tensors[x].w;
	ho = p->tensors[dst].h;
	wo = p->tensors[dst].w;
	b->part = op;
	switch (op) {
	case RXD_OP_NONE: {
		struct rxd_nas_step *s;

		if (acc) /* adds zero */
			return;
		s = add_step(b, RXD_NAS_ZERO, x, x_off, C, dst, c_off, C, false, scale);
		if (s && out_size(h, 1, stride, 0, 1) != ho)
			berr(b, -EINVAL, "internal: zero op shape");
		return;
	}
	case RXD_OP_MAX_POOL_3X3:
	case RXD_OP_AVG_POOL_3X3: {
		int kind = op == RXD_OP_MAX_POOL_3X3 ? RXD_NAS_MAXPOOL : RXD_NAS_AVGPOOL;
		int pool_out = dst;
		struct rxd_nas_step *s;

		if (out_size(h, 3, stride, 1, 1) != ho || out_size(w, 3, stride, 1, 1) != wo) {
			berr(b, -EINVAL, "internal: pool shape");
			return;
		}
		/* The supernet follows each pool with BN(affine=False): a depthwise 1x1 conv
		 * once folded. */
		if (!b->affine)
			pool_out = add_tensor(b, C, ho, wo);
		s = add_step(b, kind, x, x_off, C, pool_out, b->affine ? c_off : 0, C,
			     b->affine ? acc : false, b->affine ? scale : 1.0f);
		if (!s)
			return;
		s->kh = s->kw = 3;
		s->sh = s->sw = stride;
		s->ph = s->pw = 1;
		if (!b->affine) {
			struct conv c = { 0 };

			c.in = pool_out;
			c.cin = C;
			c.out = dst;
			c.c_off = c_off;
			c.cout = C;
			c.kh = c.kw = c.sh = c.sw = c.dh = c.dw = 1;
			c.groups = C;
			c.acc = acc;
			c.scale = scale;
			c.conv_param = -1;
			c.bn_param = add_param(b, RXD_NAS_P_BN_STATS, C, 0, 0, 0, "%s.1", prefix);
			emit_conv(b, &c);
		}
		return;
	}
	case RXD_OP_SKIP_CONNECT:
		if (stride == 1) {
			add_step(b, RXD_NAS_COPY, x, x_off, C, dst, c_off, C, acc, scale);
			return;
		}
		factorized_reduce(b, x, x_off, C, dst, c_off, C, acc, scale, prefix);
		return;
	case RXD_OP_SEP_CONV_3X3:
	case RXD_OP_SEP_CONV_5X5:
	case RXD_OP_SEP_CONV_7X7: {
		int32_t k = op == RXD_OP_SEP_CONV_3X3 ? 3 : op == RXD_OP_SEP_CONV_5X5 ? 5 : 7;

		t1 = add_tensor(b, C, ho, wo);
		t2 = add_tensor(b, C, ho, wo);
		t3 = add_tensor(b, C, ho, wo);
		snprintf(n1, sizeof(n1), "%s.op.1", prefix);
		conv_bn(b, x, x_off, C, t1, 0, C, k, stride, k / 2, 1, C, true, false, false, 1.0f,
			n1, NULL);
		snprintf(n1, sizeof(n1), "%s.op.2", prefix);
		snprintf(n2, sizeof(n2), "%s.op.3", prefix);
		conv_bn(b, t1, 0, C, t2, 0, C, 1, 1, 0, 1, 1, false, true, false, 1.0f, n1, n2);
		snprintf(n1, sizeof(n1), "%s.op.5", prefix);
		conv_bn(b, t2, 0, C, t3, 0, C, k, 1, k / 2, 1, C, true, false, false, 1.0f, n1, NULL);
		snprintf(n1, sizeof(n1), "%s.op.6", prefix);
		snprintf(n2, sizeof(n2), "%s.op.7", prefix);
		conv_bn(b, t3, 0, C, dst, c_off, C, 1, 1, 0, 1, 1, false, true, acc, scale, n1, n2);
		return;
	}
	case RXD_OP_DIL_CONV_3X3:
	case RXD_OP_DIL_CONV_5X5: {
		int32_t k = op == RXD_OP_DIL_CONV_3X3 ? 3 : 5;

		t1 = add_tensor(b, C, ho, wo);
		snprintf(n1, sizeof(n1), "%s.op.1", prefix);
		conv_bn(b, x, x_off, C, t1, 0, C, k, stride, k == 3 ? 2 : 4, 2, C, true, false, false,
			1.0f, n1, NULL);
		snprintf(n1, sizeof(n1), "%s.op.2", prefix);
		snprintf(n2, sizeof(n2), "%s.op.3", prefix);
		conv_bn(b, t1, 0, C, dst, c_off, C, 1, 1, 0, 1, 1, false, true, acc, scale, n1, n2);
		return;
	}
	case RXD_OP_CONV_7X1_1X7: {
		struct conv c = { 0 };

		/* ReLU, conv (1,7) stride (1,s), conv (7,1) stride (s,1), BN. */
		t1 = add_tensor(b, C, h, wo);
		c.in = x;
		c.in_c_off = x_off;
		c.cin = C;
		c.out = t1;
		c.cout = C;
		c.kh = 1;
		c.kw = 7;
		c.sh = 1;
		c.sw = stride;
		c.ph = 0;
		c.pw = 3;
		c.dh = c.dw = 1;
		c.groups = 1;
		c.relu = true;
		c.scale = 1.0f;
		c.conv_param = add_param(b, RXD_NAS_P_CONV, C, C, 1, 7, "%s.1", prefix);
		c.bn_param = -1;
		emit_conv(b, &c);
		c.in = t1;
		c.in_c_off = 0;
		c.out = dst;
		c.c_off = c_off;
		c.kh = 7;
		c.kw = 1;
		c.sh = stride;
		c.sw = 1;
		c.ph = 3;
		c.pw = 0;
		c.relu = false;
		c.acc = acc;
		c.scale = scale;
		c.conv_param = add_param(b, RXD_NAS_P_CONV, C, C, 7, 1, "%s.2", prefix);
		c.bn_param = add_param(b, b->affine ? RXD_NAS_P_BN : RXD_NAS_P_BN_STATS, C, 0, 0, 0,
				       "%s.3", prefix);
		emit_conv(b, &c);
		return;
	}
	default:
		berr(b, -EINVAL, "internal: operation %d", op);
	}
}

static int32_t half(int32_t n)
{
	return (n - 1) / 2 + 1; /* 3x3 pad 1 stride 2, and the 1x1 stride 2 of FactorizedReduce */
}

/* softmax of n values. */
static void softmax(const float *a, float *out, int n)
{
	float m = a[0], sum = 0;

	for (int i = 1; i < n; i++)
		if (a[i] > m)
			m = a[i];
	for (int i = 0; i < n; i++)
		sum += out[i] = expf(a[i] - m);
	for (int i = 0; i < n; i++)
		out[i] /= sum;
}

/* One cell: s0, s1 the outputs of the cells k-2 and k-1 (prev_reduced: k-1 reduced).
 * Returns the cell's output tensor. */
static int build_cell(struct builder *b, const struct rxd_nas_config *cfg, int i, int s0,
		      int s1, int32_t C, bool reduction, bool prev_reduced)
{
	struct rxd_nas_plan *p = b->p;
	const struct rxd_genotype_cell *gc = reduction ? &cfg->geno.reduce : &cfg->geno.normal;
	int n_nodes = cfg->supernet ? cfg->steps : gc->n_nodes;
	int32_t h = p->tensors[s1].h, w = p->tensors[s1].w, ho, wo;
	int states[2 + RXD_GENOTYPE_MAX_NODES + RXD_NAS_MAX_STEPS];
	int32_t state_off[2 + RXD_GENOTYPE_MAX_NODES + RXD_NAS_MAX_STEPS];
	int32_t slice[RXD_GENOTYPE_MAX_NODES + RXD_NAS_MAX_STEPS];
	int concat[RXD_GENOTYPE_MAX_NODES + RXD_NAS_MAX_STEPS], n_concat, outt, pre0, pre1;
	char n1[80], n2[80];

	if (b->rc)
		return -1;
	b->cell = i;
	b->part = RXD_NAS_PART_PREPROCESS;
	b->affine = !cfg->supernet;
	pre0 = add_tensor(b, C, h, w);
	pre1 = add_tensor(b, C, h, w);
	snprintf(n1, sizeof(n1), "cells.%d.preprocess0", i);
	if (prev_reduced) {
		factorized_reduce(b, s0, 0, p->tensors[s0].c, pre0, 0, C, false, 1.0f, n1);
	} else {
		snprintf(n1, sizeof(n1), "cells.%d.preprocess0.op.1", i);
		snprintf(n2, sizeof(n2), "cells.%d.preprocess0.op.2", i);
		conv_bn(b, s0, 0, p->tensors[s0].c, pre0, 0, C, 1, 1, 0, 1, 1, true, true, false, 1.0f, n1, n2);
	}
	snprintf(n1, sizeof(n1), "cells.%d.preprocess1.op.1", i);
	snprintf(n2, sizeof(n2), "cells.%d.preprocess1.op.2", i);
	conv_bn(b, s1, 0, p->tensors[s1].c, pre1, 0, C, 1, 1, 0, 1, 1, true, true, false, 1.0f, n1, n2);
	ho = reduction ? half(h) : h;
	wo = reduction ? half(w) : w;
	if (cfg->supernet) {
		n_concat = cfg->multiplier;
		for (int k = 0; k < n_concat; k++)
			concat[k] = 2 + n_nodes - n_concat + k;
	} else {
		n_concat = gc->n_concat;
		for (int k = 0; k < n_concat; k++)
			concat[k] = gc->concat[k];
	}
	outt = add_tensor(b, C * n_concat, ho, wo);
	states[0] = pre0;
	states[1] = pre1;
	state_off[0] = state_off[1] = 0;
	/* A node in the concat that no later edge reads is written straight into its slice
	 * of the output; one that is read gets its own tensor (steps read whole tensors) and
	 * is copied into the slice once complete. */
	for (int n = 0; n < n_nodes; n++) {
		bool read = false;
		int k;

		for (k = 0; k < n_concat && concat[k] != n + 2; k++)
			;
		if (cfg->supernet)
			read = n + 1 < n_nodes;
		else
			for (int j = 2 * (n + 1); j < 2 * n_nodes; j++)
				read = read || gc->input[j] == n + 2;
		slice[n] = k < n_concat ? k * C : -1;
		if (slice[n] >= 0 && !read) {
			states[n + 2] = outt;
			state_off[n + 2] = slice[n];
			slice[n] = -1;
		} else {
			states[n + 2] = add_tensor(b, C, ho, wo);
			state_off[n + 2] = 0;
		}
	}
	if (b->rc)
		return -1;
	for (int n = 0, edge = 0; n < n_nodes; n++) {
		int dst = states[n + 2];
		int32_t off = state_off[n + 2];
		bool written = false;
		int n_in = cfg->supernet ? n + 2 : 2;

		for (int e = 0; e < n_in; e++, edge++) {
			int j = cfg->supernet ? e : gc->input[2 * n + e];
			int x = states[j];
			int32_t x_off = state_off[j];
			int32_t stride = reduction && j < 2 ? 2 : 1;

			if (cfg->supernet) {
				const float *a = (reduction ? cfg->alpha_reduce : cfg->alpha_normal) +
						 (size_t)edge * RXD_NAS_PRIMITIVES;
				float wts[RXD_NAS_PRIMITIVES];

				softmax(a, wts, RXD_NAS_PRIMITIVES);
				/* 'none' adds w * 0: nothing (so no step unless it came first). */
				for (int op = 1; op < RXD_NAS_PRIMITIVES; op++) {
					snprintf(n1, sizeof(n1), "cells.%d._ops.%d._ops.%d", i, edge,
						 op);
					lower_op(b, op, x, x_off, C, stride, dst, off, written,
					 wts[op], n1);
					written = true;
				}
			} else {
				int op = gc->op[2 * n + e];

				snprintf(n1, sizeof(n1), "cells.%d._ops.%d", i, 2 * n + e);
				if (op == RXD_OP_NONE && written)
					continue;
				lower_op(b, op, x, x_off, C, stride, dst, off, written, 1.0f, n1);
				written = true;
			}
		}
		if (slice[n] >= 0) {
			b->part = RXD_NAS_PART_CONCAT;
			add_step(b, RXD_NAS_COPY, dst, 0, C, outt, slice[n], C, false, 1.0f);
		}
	}
	return b->rc ? -1 : outt;
}

static int check_config(const struct rxd_nas_config *cfg, struct rxd_error *err)
{
	if (cfg->family != RXD_NAS_CIFAR && cfg->family != RXD_NAS_IMAGENET) {
		error_set(err, RXD_S_INVALID_ARGUMENT, "dataset must be CIFAR or ImageNet (got %d)",
			  cfg->family);
		return -EINVAL;
	}
	if (cfg->C < 1 || cfg->C > RXD_NAS_MAX_C) {
		error_set(err, RXD_S_INVALID_ARGUMENT, "C is %d; it must be 1 to %d", cfg->C,
			  RXD_NAS_MAX_C);
		return -EINVAL;
	}
	if (cfg->layers < 1 || cfg->layers > RXD_NAS_MAX_LAYERS) {
		error_set(err, RXD_S_INVALID_ARGUMENT, "layers is %d; it must be 1 to %d",
			  cfg->layers, RXD_NAS_MAX_LAYERS);
		return -EINVAL;
	}
	if (cfg->classes < 1 || cfg->classes > RXD_NAS_MAX_CLASSES) {
		error_set(err, RXD_S_INVALID_ARGUMENT, "classes is %d; it must be 1 to %d",
			  cfg->classes, RXD_NAS_MAX_CLASSES);
		return -EINVAL;
	}
	if (cfg->height < 1 || cfg->height > RXD_NAS_MAX_SIZE || cfg->width < 1 ||
	    cfg->width > RXD_NAS_MAX_SIZE) {
		error_set(err, RXD_S_INVALID_ARGUMENT, "the input is %dx%d; height and width must "
			  "be 1 to %d", cfg->height, cfg->width, RXD_NAS_MAX_SIZE);
		return -EINVAL;
	}
	if (cfg->batch < 1 || cfg->batch > RXD_NAS_MAX_BATCH) {
		error_set(err, RXD_S_INVALID_ARGUMENT, "batch is %d; it must be 1 to %d",
			  cfg->batch, RXD_NAS_MAX_BATCH);
		return -EINVAL;
	}
	if (cfg->supernet) {
		if (cfg->family != RXD_NAS_CIFAR) {
			error_set(err, RXD_S_INVALID_ARGUMENT, "the supernet exists for the "
				  "CIFAR family only");
			return -EINVAL;
		}
		if (cfg->steps < 1 || cfg->steps > RXD_NAS_MAX_STEPS) {
			error_set(err, RXD_S_INVALID_ARGUMENT, "supernet steps is %d; it must be "
				  "1 to %d", cfg->steps, RXD_NAS_MAX_STEPS);
			return -EINVAL;
		}
		if (cfg->multiplier < 1 || cfg->multiplier > cfg->steps) {
			error_set(err, RXD_S_INVALID_ARGUMENT, "supernet multiplier is %d; it "
				  "must be 1 to steps (%d)", cfg->multiplier, cfg->steps);
			return -EINVAL;
		}
		if (!cfg->alpha_normal || !cfg->alpha_reduce) {
			error_set(err, RXD_S_INVALID_ARGUMENT, "the supernet needs alpha_normal "
				  "and alpha_reduce");
			return -EINVAL;
		}
		for (int k = 0; k < cfg->steps * (cfg->steps + 3) / 2 * RXD_NAS_PRIMITIVES; k++) {
			if (!isfinite(cfg->alpha_normal[k]) || !isfinite(cfg->alpha_reduce[k])) {
				error_set(err, RXD_S_INVALID_ARGUMENT, "alpha entry %d is not "
					  "finite", k);
				return -EINVAL;
			}
		}
		return 0;
	}
	return genotype_check(&cfg->geno, err);
}

/* Place every tensor in the arena: a tensor may share memory with any tensor whose steps
 * [first, last] do not overlap its own. Greedy, largest first, lowest free offset. */
static int pack(struct rxd_nas_plan *p)
{
	size_t n = p->n_tensors, *order = malloc(n * sizeof(*order)), *placed;
	uint64_t top = 0;

	placed = malloc(n * sizeof(*placed));
	if (!order || !placed) {
		free(order);
		free(placed);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	/* Insertion sort by size, descending (a few hundred tensors). */
	for (size_t i = 1; i < n; i++) {
		size_t v = order[i], j = i;

		while (j > 0 && p->tensors[order[j - 1]].elems < p->tensors[v].elems) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = v;
	}
	for (size_t i = 0; i < n; i++) {
		struct rxd_nas_ptensor *t = &p->tensors[order[i]];
		uint64_t size = (t->elems + RXD_NAS_ALIGN_FLOATS - 1) /
				RXD_NAS_ALIGN_FLOATS * RXD_NAS_ALIGN_FLOATS;
		uint64_t off = 0;
		size_t np = 0;

		/* The placed tensors alive at the same time, by offset. */
		for (size_t k = 0; k < i; k++) {
			const struct rxd_nas_ptensor *u = &p->tensors[order[k]];

			if (u->first <= t->last && t->first <= u->last) {
				size_t j = np++;

				while (j > 0 && p->tensors[placed[j - 1]].offset > u->offset) {
					placed[j] = placed[j - 1];
					j--;
				}
				placed[j] = order[k];
			}
		}
		for (size_t k = 0; k < np; k++) {
			const struct rxd_nas_ptensor *u = &p->tensors[placed[k]];
			uint64_t uend = u->offset + (u->elems + RXD_NAS_ALIGN_FLOATS - 1) /
							    RXD_NAS_ALIGN_FLOATS *
							    RXD_NAS_ALIGN_FLOATS;

			if (u->offset >= off + size)
				break;
			if (uend > off)
				off = uend;
		}
		t->offset = off;
		if (off + size > top)
			top = off + size;
	}
	p->arena_floats = top;
	/* The lower bound: the most floats live at one step. */
	p->live_peak_floats = 0;
	for (int32_t s = -1; s <= (int32_t)p->n_steps; s++) {
		uint64_t live = 0;

		for (size_t i = 0; i < n; i++)
			if (p->tensors[i].first <= s && s <= p->tensors[i].last)
				live += p->tensors[i].elems;
		if (live > p->live_peak_floats)
			p->live_peak_floats = live;
	}
	free(order);
	free(placed);
	return 0;
}

int nas_build(const struct rxd_nas_config *cfg, struct rxd_nas_plan *plan, struct rxd_error *err)
{
	struct builder b = { 0 };
	int32_t C = cfg->C, C_curr, C_pp, C_p, h = cfg->height, w = cfg->width;
	bool prev_reduced = false;
	int s0, s1, rc, gap;

	memset(plan, 0, sizeof(*plan));
	if ((rc = check_config(cfg, err)) < 0)
		return rc;
	b.p = plan;
	b.err = err;
	b.affine = true;
	plan->family = cfg->family;
	plan->supernet = cfg->supernet;
	plan->batch = cfg->batch;
	plan->layers = cfg->layers;
	plan->classes = cfg->classes;
	plan->input = add_tensor(&b, 3, h, w);
	if (plan->input >= 0)
		plan->tensors[plan->input].first = -1;
	b.cell = -1;
	b.part = RXD_NAS_PART_STEM;
	if (cfg->family == RXD_NAS_CIFAR) {
		C_curr = 3 * C;
		s0 = add_tensor(&b, C_curr, h, w);
		conv_bn(&b, plan->input, 0, 3, s0, 0, C_curr, 3, 1, 1, 1, 1, false, true, false,
			1.0f, "stem.0", "stem.1");
		s1 = s0;
		C_pp = C_p = C_curr;
		C_curr = C;
	} else {
		int t;

		if (C % 2) {
			error_set(err, RXD_S_INVALID_ARGUMENT, "C is %d; ImageNet networks need "
				  "an even C", C);
			nas_plan_free(plan);
			return -EINVAL;
		}
		t = add_tensor(&b, C / 2, half(h), half(w));
		conv_bn(&b, plan->input, 0, 3, t, 0, C / 2, 3, 2, 1, 1, 1, false, true, false, 1.0f,
			"stem0.0", "stem0.1");
		s0 = add_tensor(&b, C, half(half(h)), half(half(w)));
		conv_bn(&b, t, 0, C / 2, s0, 0, C, 3, 2, 1, 1, 1, true, true, false, 1.0f,
			"stem0.3", "stem0.4");
		s1 = add_tensor(&b, C, half(half(half(h))), half(half(half(w))));
		conv_bn(&b, s0, 0, C, s1, 0, C, 3, 2, 1, 1, 1, true, true, false, 1.0f, "stem1.1",
			"stem1.2");
		C_pp = C_p = C_curr = C;
		prev_reduced = true;
	}
	for (int i = 0; i < cfg->layers && !b.rc; i++) {
		bool reduction = i == cfg->layers / 3 || i == 2 * cfg->layers / 3;
		int out, mult;

		if (reduction)
			C_curr *= 2;
		out = build_cell(&b, cfg, i, s0, s1, C_curr, reduction, prev_reduced);
		if (out < 0)
			break;
		mult = plan->tensors[out].c / C_curr;
		prev_reduced = reduction;
		C_pp = C_p;
		C_p = mult * C_curr;
		s0 = s1;
		s1 = out;
	}
	(void)C_pp;
	b.cell = cfg->layers;
	b.part = RXD_NAS_PART_HEAD;
	if (!b.rc && cfg->family == RXD_NAS_IMAGENET &&
	    (plan->tensors[s1].h != 7 || plan->tensors[s1].w != 7))
		berr(&b, -EINVAL,
		     "an ImageNet network's last map must be 7x7 for its 7x7 average pool; a "
		     "%dx%d input makes it %dx%d (use 224x224)",
		     h, w, plan->tensors[s1].h, plan->tensors[s1].w);
	gap = add_tensor(&b, C_p, 1, 1);
	add_step(&b, RXD_NAS_GAP, s1, 0, C_p, gap, 0, C_p, false, 1.0f);
	plan->output = add_tensor(&b, cfg->classes, 1, 1);
	if (!b.rc) {
		struct rxd_nas_step *s;
		int pl = add_param(&b, RXD_NAS_P_LINEAR, cfg->classes, C_p, 0, 0, "classifier");

		s = add_step(&b, RXD_NAS_LINEAR, gap, 0, C_p, plan->output, 0, cfg->classes,
			     false, 1.0f);
		if (s) {
			s->conv_param = pl;
			s->w_off = plan->weight_floats;
			plan->weight_floats += (uint64_t)cfg->classes * C_p;
			s->b_off = plan->weight_floats;
			plan->weight_floats += (uint64_t)cfg->classes;
			s->macs = (uint64_t)cfg->classes * C_p;
			plan->macs += s->macs;
		}
	}
	if (b.rc) {
		nas_plan_free(plan);
		return b.rc;
	}
	plan->tensors[plan->output].last = (int32_t)plan->n_steps;
	if ((rc = pack(plan)) < 0) {
		error_set(err, RXD_S_NO_MEMORY, "out of memory building the network");
		nas_plan_free(plan);
		return rc;
	}
	return 0;
}

void nas_plan_free(struct rxd_nas_plan *plan)
{
	free(plan->tensors);
	free(plan->steps);
	free(plan->params);
	memset(plan, 0, sizeof(*plan));
}

uint64_t nas_plan_bytes(const struct rxd_nas_plan *plan)
{
	return (plan->weight_floats + plan->arena_floats) * sizeof(float);
}

const char *nas_part_name(int part)
{
	switch (part) {
	case RXD_NAS_PART_STEM:
		return "stem";
	case RXD_NAS_PART_PREPROCESS:
		return "preprocess";
	case RXD_NAS_PART_HEAD:
		return "head";
	case RXD_NAS_PART_CONCAT:
		return "concat";
	default:
		return genotype_op_name(part);
	}
}

const char *nas_kind_name(int kind)
{
	static const char *const names[RXD_NAS_KINDS] = { "conv", "maxpool", "avgpool", "copy",
							  "zero", "gap",     "linear" };

	return kind >= 0 && kind < RXD_NAS_KINDS ? names[kind] : "?";
}

/* ---- weights ---- */

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
		uint64_t per_out;

		if (s->kind == RXD_NAS_LINEAR) {
			const struct rxd_nas_param *q = &plan->params[s->conv_param];

			memcpy(weights + s->w_off, blob + q->blob_off, q->floats * sizeof(float));
			continue;
		}
		if (s->kind != RXD_NAS_CONV)
			continue;
		per_out = (uint64_t)(s->c_in / s->groups) * s->kh * s->kw;
		for (int32_t co = 0; co < s->c_out; co++) {
			float g = 1.0f, beta = 0.0f, mean = 0.0f, bias = 0.0f;
			float *wd = weights + s->w_off + (uint64_t)co * per_out;

			if (s->bn_param >= 0) {
				const struct rxd_nas_param *q = &plan->params[s->bn_param];
				const float *bn = blob + q->blob_off;
				uint64_t c = (uint64_t)q->cout, ch = (uint64_t)(s->bn_c_off + co);
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
			if (s->conv_param >= 0) {
				const float *ws = blob + plan->params[s->conv_param].blob_off +
						  (uint64_t)co * per_out;

				for (uint64_t k = 0; k < per_out; k++)
					wd[k] = ws[k] * g;
			} else {
				/* A BN alone (the supernet's pools): a depthwise 1x1 identity. */
				for (uint64_t k = 0; k < per_out; k++)
					wd[k] = g;
			}
			weights[s->b_off + co] = bias;
		}
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

/* ---- NAS evaluation jobs: the request, the run on the device, the reply ---- */

/* A job stops starting runs after this long (at least one timed run is made), so that a
 * big network with many repeats cannot hold the device worker near the hang timeout. */
#define NAS_MAX_JOB_NS (30ull * 1000000000ull)

struct rxd_nas_job {
	struct rxd_nas_config cfg;
	float *alpha;                  /* owned copies of the supernet's alphas */
	struct rxd_nas_plan plan;      /* of the whole batch: counts and the reply's figures */
	const float *blob;             /* into the request, or blob_owned */
	float *blob_owned;
	const float *input;            /* into the request, or input_owned */
	float *input_owned;
	uint64_t weight_seed, input_seed; /* made on the device thread when not sent */
	uint32_t warmup, repeat;
	bool want_logits;
	char genotype[RXD_GENOTYPE_TEXT_MAX];
	/* results (device thread) */
	float *logits;                 /* batch x classes */
	uint64_t *run_ns;              /* repeat */
	uint64_t part_ns[RXD_NAS_PARTS];
	uint32_t part_steps[RXD_NAS_PARTS];
	uint64_t *cell_ns;             /* layers + 2: stem, cells, head */
	uint32_t *cell_steps;
	int32_t piece;
	uint32_t runs;                 /* timed runs made (fewer than repeat past the time cap) */
	bool profiled;                 /* the breakdowns were measured */
	uint64_t peak_bytes, act_bytes;
	/* nas_job_result's parts and the cells' names */
	struct rxd_nas_part *parts;
	char (*names)[24];
};

uint64_t nas_job_flops(const struct rxd_nas_job *nj)
{
	/* 2 FLOPs per multiply-add, every image, every run; saturating, for the scheduler. */
	uint64_t runs = (uint64_t)nj->warmup + nj->repeat, f = 2 * nj->plan.macs;

	if (__builtin_mul_overflow(f, (uint64_t)nj->cfg.batch, &f) ||
	    __builtin_mul_overflow(f, runs ? runs : 1, &f))
		return UINT64_MAX;
	return f;
}

uint64_t nas_job_blob_floats(const struct rxd_nas_job *nj)
{
	return nj->plan.blob_floats;
}

uint64_t nas_job_input_floats(const struct rxd_nas_job *nj)
{
	return nj->plan.tensors[nj->plan.input].elems;
}

void nas_job_give_weights(struct rxd_nas_job *nj, float *blob)
{
	free(nj->blob_owned);
	nj->blob = nj->blob_owned = blob;
}

void nas_job_give_input(struct rxd_nas_job *nj, float *input)
{
	free(nj->input_owned);
	nj->input = nj->input_owned = input;
}

void nas_job_free(struct rxd_nas_job *nj)
{
	if (!nj)
		return;
	nas_plan_free(&nj->plan);
	free(nj->alpha);
	free(nj->blob_owned);
	free(nj->input_owned);
	free(nj->logits);
	free(nj->run_ns);
	free(nj->cell_ns);
	free(nj->cell_steps);
	free(nj->parts);
	free(nj->names);
	free(nj);
}

/* Floats from bytes; the request's bytes are malloc'd by the decoder, so aligned, but a
 * copy is made when they are not (never trust what we did not allocate). */
static const float *nas_floats(const uint8_t *data, size_t len, float **owned)
{
	if (((uintptr_t)data % _Alignof(float)) == 0)
		return (const float *)data;
	*owned = malloc(len);
	if (*owned)
		memcpy(*owned, data, len);
	return *owned;
}

int nas_job_prepare(const struct rxd_nas_eval *ev, const struct rxd_limits *lim,
		    uint64_t max_reply_bytes, struct rxd_nas_job **out, struct rxd_error *err)
{
	struct rxd_nas_job *nj = calloc(1, sizeof(*nj));
	struct rxd_nas_config *c;
	int st = RXD_S_INVALID_ARGUMENT, rc;
	uint64_t in_floats, logit_bytes;

	*out = NULL;
	if (!nj)
		return error_set(err, RXD_S_NO_MEMORY, "out of memory for a NAS job");
	c = &nj->cfg;
	*c = ev->cfg;
	if (c->supernet) {
		size_t n = (size_t)c->steps * (size_t)(c->steps + 3) / 2 * RXD_NAS_PRIMITIVES;

		/* The job may outlive nothing it does not own but the request's bytes: its
		 * plans are rebuilt from cfg on the device thread. */
		nj->alpha = malloc(2 * n * sizeof(float));
		if (!nj->alpha) {
			st = error_set(err, RXD_S_NO_MEMORY, "out of memory for the alphas");
			goto out;
		}
		memcpy(nj->alpha, ev->cfg.alpha_normal, n * sizeof(float));
		memcpy(nj->alpha + n, ev->cfg.alpha_reduce, n * sizeof(float));
		c->alpha_normal = nj->alpha;
		c->alpha_reduce = nj->alpha + n;
	} else {
		genotype_format(&c->geno, nj->genotype, sizeof(nj->genotype));
	}
	nj->warmup = ev->warmup;
	nj->repeat = ev->repeat;
	nj->want_logits = ev->want_logits;
	rc = nas_build(c, &nj->plan, err);
	if (rc < 0) {
		st = err->status; /* nas_build's: invalid, too big or out of memory */
		goto out;
	}
	in_floats = nj->plan.tensors[nj->plan.input].elems;
	/* The folded weights are one device buffer, whatever the batch. */
	if (lim && (nj->plan.weight_floats * sizeof(float) > lim->max_buffer_bytes ||
		    nj->plan.weight_floats > INT32_MAX)) {
		st = error_set(err, RXD_S_TOO_BIG,
			 "the network's weights (%llu bytes) are more than one device buffer "
			 "holds (%llu bytes, and 2^31 floats)",
			 (unsigned long long)(nj->plan.weight_floats * sizeof(float)),
			 (unsigned long long)lim->max_buffer_bytes);
		goto out;
	}
	logit_bytes = (uint64_t)c->batch * (uint64_t)c->classes * sizeof(float);
	if (ev->want_logits && logit_bytes + 4096 > max_reply_bytes) {
		st = error_set(err, RXD_S_TOO_BIG, "the logits (%llu bytes) would not fit a reply "
			       "frame (%llu)", (unsigned long long)logit_bytes,
			       (unsigned long long)max_reply_bytes);
		goto out;
	}
	if (ev->weights_bytes) {
		if (ev->weights_bytes % sizeof(float) ||
		    nas_check_blob(&nj->plan, ev->weights_bytes / sizeof(float), err) < 0) {
			if (ev->weights_bytes % sizeof(float))
				error_set(err, RXD_S_INVALID_ARGUMENT, "weights is %zu bytes, not "
					  "whole floats; this network needs %llu floats",
					  ev->weights_bytes,
					  (unsigned long long)nj->plan.blob_floats);
			goto out;
		}
		nj->blob = nas_floats(ev->weights, ev->weights_bytes, &nj->blob_owned);
	}
	nj->weight_seed = ev->weight_seed;
	nj->input_seed = ev->input_seed;
	/* Sent or made, the input is one host buffer: bound it as a frame is bounded. */
	if (in_floats * sizeof(float) > max_reply_bytes) {
		st = error_set(err, RXD_S_TOO_BIG,
			 "the input batch (%llu bytes) is over the frame limit (%llu); use a "
			 "smaller batch",
			 (unsigned long long)(in_floats * sizeof(float)),
			 (unsigned long long)max_reply_bytes);
		goto out;
	}
	if (ev->input_bytes) {
		if (ev->input_bytes != in_floats * sizeof(float)) {
			error_set(err, RXD_S_INVALID_ARGUMENT, "input is %zu bytes; batch x 3 x "
				  "height x width (%d x 3 x %d x %d) floats are %llu bytes",
				  ev->input_bytes, c->batch, c->height, c->width,
				  (unsigned long long)(in_floats * sizeof(float)));
			goto out;
		}
		nj->input = nas_floats(ev->input, ev->input_bytes, &nj->input_owned);
		if (!nj->input) {
			st = error_set(err, RXD_S_NO_MEMORY, "out of memory for the input");
			goto out;
		}
	}
	if (ev->weights_bytes && !nj->blob) {
		st = error_set(err, RXD_S_NO_MEMORY, "out of memory for the weights or the input");
		goto out;
	}
	*out = nj;
	return RXD_S_OK;
out:
	nas_job_free(nj);
	if (err)
		err->status = st;
	return st;
}

/* The im2col columns nasops needs for the plan's dense convolutions that do not read their
 * input in place (kernels other than 1x1 stride 1, ReLU on the input, a shifted read),
 * made at most scratch_max bytes of images at a time but always at least one image. */
static uint64_t nas_scratch_bytes(const struct rxd_nas_plan *p, uint64_t scratch_max)
{
	uint64_t most = 0;

	for (size_t i = 0; i < p->n_steps; i++) {
		const struct rxd_nas_step *s = &p->steps[i];
		uint64_t per_image, nb;

		if (s->kind != RXD_NAS_CONV || s->groups != 1 ||
		    (s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->ph == 0 &&
		     s->pw == 0 && !s->relu_in && !s->in_shift))
			continue;
		per_image = (uint64_t)s->c_in * s->kh * s->kw * s->h_out * s->w_out * sizeof(float);
		nb = scratch_max / per_image;
		nb = nb < 1 ? 1 : nb > (uint64_t)p->batch ? (uint64_t)p->batch : nb;
		if (nb * per_image > most)
			most = nb * per_image;
	}
	return most;
}

/* The plan for a piece of batch images. */
static int nas_piece_plan(const struct rxd_nas_job *nj, int32_t batch, struct rxd_nas_plan *p,
			  struct rxd_error *err)
{
	struct rxd_nas_config c = nj->cfg;

	c.batch = batch;
	return nas_build(&c, p, err);
}

static int nas_enqueue_step(struct rxd_nasops *ops, const struct rxd_nas_plan *p,
			    const struct rxd_nas_step *s, cl_mem arena, cl_mem wbuf,
			    struct rxd_nas_span *span)
{
	const struct rxd_nas_ptensor *ti = &p->tensors[s->in], *to = &p->tensors[s->out];
	struct rxd_nas_tensor x = { arena, (int64_t)ti->offset, p->batch, ti->c, ti->h, ti->w };
	struct rxd_nas_tensor y = { arena, (int64_t)to->offset, p->batch, to->c, to->h, to->w };
	struct rxd_nas_write wr = { s->c_off, s->accumulate, s->scale };

	switch (s->kind) {
	case RXD_NAS_CONV: {
		struct rxd_nas_conv cv = { 0 };

		cv.c_out = s->c_out;
		cv.kh = s->kh;
		cv.kw = s->kw;
		cv.stride_h = s->sh;
		cv.stride_w = s->sw;
		cv.pad_h = s->ph;
		cv.pad_w = s->pw;
		cv.dil_h = s->dh;
		cv.dil_w = s->dw;
		cv.groups = s->groups;
		cv.relu_in = s->relu_in;
		cv.in_shift = s->in_shift;
		cv.weight = wbuf;
		cv.weight_off = (int64_t)s->w_off;
		cv.bias = wbuf;
		cv.bias_off = (int64_t)s->b_off;
		return nasops_conv(ops, &x, &cv, &y, &wr, span);
	}
	case RXD_NAS_MAXPOOL:
	case RXD_NAS_AVGPOOL: {
		struct rxd_nas_pool pl = { s->kind == RXD_NAS_MAXPOOL ? RXD_NAS_POOL_MAX
								  : RXD_NAS_POOL_AVG,
					   s->kh, s->kw, s->sh, s->sw, s->ph, s->pw };

		return nasops_pool(ops, &x, &pl, &y, &wr, span);
	}
	case RXD_NAS_COPY:
		return nasops_copy(ops, &x, s->relu_in, &y, &wr, span);
	case RXD_NAS_ZERO:
		return nasops_zero(ops, s->c_out, &y, &wr, span);
	case RXD_NAS_GAP:
		return nasops_gap(ops, &x, &y, &wr, span);
	case RXD_NAS_LINEAR: {
		struct rxd_nas_linear l = { s->c_out, wbuf, (int64_t)s->w_off, wbuf,
					    (int64_t)s->b_off };

		return nasops_linear(ops, &x, &l, &y, &wr, span);
	}
	}
	return -EINVAL;
}

static uint64_t nas_event_time(cl_event ev, cl_profiling_info what)
{
	cl_ulong t = 0;

	if (!ev || clGetEventProfilingInfo(ev, what, sizeof(t), &t, NULL) != CL_SUCCESS)
		return 0;
	return (uint64_t)t;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* One run of one piece: upload its images, enqueue every step, wait. timed: add each
 * step's time (from its first kernel's start to the next step's, the last to its end, so
 * that the parts add up to the whole) to the breakdown; *ns gets the piece's time.
 * logits (may be NULL) receives the piece's. */
static int nas_run_piece(struct rxd_nas_job *nj, struct rxd_nasops *ops,
			 const struct rxd_nas_plan *p, int32_t first_image, cl_mem arena,
			 cl_mem wbuf, struct rxd_nas_span *spans, bool timed, uint64_t *ns,
			 float *logits, struct rxd_error *err)
{
	cl_command_queue q = ops->dev->queue;
	uint64_t per_image = (uint64_t)3 * nj->cfg.height * nj->cfg.width, t0, first = 0, prev = 0;
	size_t prev_step = 0;
	bool prof = timed && ops->dev->profiling;
	cl_int e;
	int rc = 0;

	e = clEnqueueWriteBuffer(q, arena, CL_FALSE, p->tensors[p->input].offset * sizeof(float),
				 (size_t)(per_image * (uint64_t)p->batch * sizeof(float)),
				 nj->input + per_image * (uint64_t)first_image, 0, NULL, NULL);
	if (e != CL_SUCCESS) {
		error_set(err, RXD_S_DEVICE, "uploading the input failed: %s", device_strerror(e));
		return -EIO;
	}
	clFinish(q);
	t0 = now_ns();
	memset(spans, 0, p->n_steps * sizeof(*spans));
	for (size_t i = 0; i < p->n_steps; i++) {
		const struct rxd_nas_step *s = &p->steps[i];

		rc = nas_enqueue_step(ops, p, s, arena, wbuf, prof ? &spans[i] : NULL);
		if (rc < 0) {
			clFinish(q);
			error_set(err, RXD_S_DEVICE, "step %zu (%s, %s, cell %d) could not be "
				  "run: %s", i, nas_kind_name(s->kind), nas_part_name(s->part),
				  s->cell, strerror(-rc));
			goto out;
		}
	}
	if ((e = clFinish(q)) != CL_SUCCESS) {
		error_set(err, RXD_S_DEVICE, "the device failed the network: %s",
			  device_strerror(e));
		rc = -EIO;
		goto out;
	}
	*ns = now_ns() - t0;
	if (prof) {
		bool any = false;

		for (size_t i = 0; i < p->n_steps; i++) {
			uint64_t start = nas_event_time(spans[i].first, CL_PROFILING_COMMAND_START);
			const struct rxd_nas_step *s;
			int cell;

			if (!spans[i].first || !start)
				continue;
			if (!any) {
				first = start;
				any = true;
			} else {
				s = &p->steps[prev_step];
				cell = s->cell + 1;
				nj->part_ns[s->part] += start - prev;
				nj->cell_ns[cell] += start - prev;
			}
			prev = start;
			prev_step = i;
		}
		if (any) {
			const struct rxd_nas_step *s = &p->steps[prev_step];
			uint64_t end = nas_event_time(spans[prev_step].last, CL_PROFILING_COMMAND_END);

			if (end > prev) {
				nj->part_ns[s->part] += end - prev;
				nj->cell_ns[s->cell + 1] += end - prev;
			}
			*ns = end > first ? end - first : 0;
		}
	}
	if (logits) {
		e = clEnqueueReadBuffer(q, arena, CL_TRUE,
					p->tensors[p->output].offset * sizeof(float),
					p->tensors[p->output].elems * sizeof(float), logits, 0, NULL,
					NULL);
		if (e != CL_SUCCESS) {
			error_set(err, RXD_S_DEVICE, "reading the logits failed: %s",
				  device_strerror(e));
			rc = -EIO;
		}
	}
out:
	for (size_t i = 0; i < p->n_steps; i++)
		nasops_span_release(&spans[i]);
	return rc;
}

int nas_job_run(struct rxd_nas_job *nj, struct rxd_nasops *ops, struct rxd_budget *b,
		uint32_t owner, atomic_bool *cancel, struct rxd_error *err)
{
	struct rxd_nas_plan pp = { 0 }, pr = { 0 };
	struct rxd_budget_res res = { 0 };
	struct rxd_nas_span *spans = NULL;
	uint64_t job_start = now_ns();
	int32_t batch = nj->cfg.batch, piece = batch, rem;
	uint64_t wbytes, abytes, scratch, need = 0;
	float *weights = NULL;
	cl_mem wbuf = NULL, arena = NULL;
	int st = RXD_S_OK, rc, clerr;
	cl_int e;

	if (!ops) {
		return error_set(err, RXD_S_UNSUPPORTED, "this daemon's device could not build "
				 "the NAS kernels");
	}
	/* Seeded weights and inputs are made here, off the loop thread. */
	if (!nj->blob) {
		nj->blob_owned = malloc(nj->plan.blob_floats * sizeof(float));
		if (nj->blob_owned)
			nas_init_blob(&nj->plan, nj->weight_seed, nj->blob_owned);
		nj->blob = nj->blob_owned;
	}
	if (!nj->input) {
		uint64_t n = nj->plan.tensors[nj->plan.input].elems;

		nj->input_owned = malloc(n * sizeof(float));
		if (nj->input_owned)
			nas_random_floats(nj->input_seed, nj->input_owned, n);
		nj->input = nj->input_owned;
	}
	if (!nj->blob || !nj->input) {
		return error_set(err, RXD_S_NO_MEMORY, "out of host memory for the weights or "
				 "the input");
	}
	/* The largest piece of the batch that fits the budget (and int indexing). */
	for (;;) {
		rc = nas_piece_plan(nj, piece, &pp, err);
		if (rc < 0) {
			st = rc == -ENOMEM ? RXD_S_NO_MEMORY
					   : RXD_S_INTERNAL;
			goto out;
		}
		rem = batch % piece;
		if (rem && (rc = nas_piece_plan(nj, rem, &pr, err)) < 0) {
			st = RXD_S_INTERNAL;
			goto out;
		}
		wbytes = pp.weight_floats * sizeof(float);
		if (pp.weight_floats > INT32_MAX || wbytes > ops->dev->max_alloc_bytes) {
			/* No piece of the batch makes the weights smaller. */
			st = error_set(err, RXD_S_TOO_BIG,
				 "the network's weights (%llu bytes) are more than one device "
				 "buffer holds (%llu bytes, and 2^31 floats)",
				 (unsigned long long)wbytes,
				 (unsigned long long)ops->dev->max_alloc_bytes);
			goto out;
		}
		abytes = (pp.arena_floats > pr.arena_floats ? pp.arena_floats : pr.arena_floats) *
			 sizeof(float);
		/* nasops keeps its im2col scratch itself, outside the budget; it is reserved
		 * here so that the budget still bounds what the device holds. */
		scratch = ops->eng ? nas_scratch_bytes(&pp, ops->scratch_max_bytes) : 0;
		need = budget_round(wbytes) + budget_round(abytes) + scratch;
		if (abytes / sizeof(float) <= INT32_MAX && abytes <= ops->dev->max_alloc_bytes) {
			rc = b ? budget_reserve(b, &res, owner, need, true, cancel) : 0;
			if (rc == 0)
				break;
			if (rc != -E2BIG) {
				st = rc == -ECANCELED ? RXD_S_CANCELLED
				     : rc == -EDQUOT  ? RXD_S_TOO_BIG
						      : RXD_S_NO_MEMORY;
				error_set(err, st,
					 "the network needs %llu bytes of device memory: %s",
					 (unsigned long long)need,
					 rc == -EDQUOT ? "over this client's quota"
						       : "the reservation failed");
				goto out;
			}
		}
		if (piece == 1) {
			st = error_set(err, RXD_S_TOO_BIG, "one image of this network needs %llu "
				       "bytes of device memory (weights %llu, activations %llu, "
				       "scratch %llu); the budget is %llu and the largest buffer "
				       "%llu", (unsigned long long)need, (unsigned long long)wbytes,
				       (unsigned long long)abytes, (unsigned long long)scratch,
				       (unsigned long long)budget_limit(b),
				       (unsigned long long)ops->dev->max_alloc_bytes);
			goto out;
		}
		piece = (piece + 1) / 2;
		nas_plan_free(&pp);
		nas_plan_free(&pr);
	}
	if (piece < batch && b)
		budget_note_split(b);
	nj->piece = piece;
	nj->profiled = ops->dev->profiling;
	nj->act_bytes = abytes;
	nj->peak_bytes = wbytes + abytes + scratch;
	weights = malloc(wbytes);
	spans = calloc(pp.n_steps > pr.n_steps ? pp.n_steps : pr.n_steps, sizeof(*spans));
	nj->run_ns = calloc(nj->repeat, sizeof(uint64_t));
	nj->cell_ns = calloc((size_t)nj->cfg.layers + 2, sizeof(uint64_t));
	nj->cell_steps = calloc((size_t)nj->cfg.layers + 2, sizeof(uint32_t));
	if (nj->want_logits)
		nj->logits = malloc((size_t)batch * nj->cfg.classes * sizeof(float));
	if (!weights || !spans || !nj->run_ns || !nj->cell_ns || !nj->cell_steps ||
	    (nj->want_logits && !nj->logits)) {
		st = error_set(err, RXD_S_NO_MEMORY, "out of host memory for the network");
		goto out;
	}
	if (nas_fold(&pp, nj->blob, weights, err) < 0) {
		st = RXD_S_INVALID_ARGUMENT;
		goto out;
	}
	if (b) {
		void *m1 = NULL, *m2 = NULL;

		if ((rc = budget_buf_get(b, &res, wbytes, &m1, &clerr)) < 0 ||
		    (rc = budget_buf_get(b, &res, abytes, &m2, &clerr)) < 0) {
			st = error_set(err, RXD_S_NO_MEMORY, "device memory for the network could "
				       "not be had: %s", device_strerror(clerr));
			budget_trim(b);
			goto out;
		}
		wbuf = m1;
		arena = m2;
	} else {
		wbuf = clCreateBuffer(ops->dev->ctx, CL_MEM_READ_WRITE, wbytes, NULL, &e);
		if (wbuf)
			arena = clCreateBuffer(ops->dev->ctx, CL_MEM_READ_WRITE, abytes, NULL, &e);
		if (!wbuf || !arena) {
			st = error_set(err, RXD_S_NO_MEMORY, "device memory for the network could "
				       "not be had: %s", device_strerror(e));
			goto out;
		}
	}
	e = clEnqueueWriteBuffer(ops->dev->queue, wbuf, CL_TRUE, 0, wbytes, weights, 0, NULL,
				 NULL);
	if (e != CL_SUCCESS) {
		st = error_set(err, RXD_S_DEVICE, "uploading the weights failed: %s",
			       device_strerror(e));
		goto out;
	}
	for (size_t i = 0; i < pp.n_steps; i++) {
		nj->part_steps[pp.steps[i].part]++;
		nj->cell_steps[pp.steps[i].cell + 1]++;
	}
	nj->runs = 0;
	for (uint32_t r = 0; r < nj->warmup + nj->repeat; r++) {
		bool timed, late = r > 0 && now_ns() - job_start > NAS_MAX_JOB_NS;
		uint64_t total = 0;

		if (late && nj->runs > 0)
			break; /* report the runs made */
		if (late && r < nj->warmup)
			r = nj->warmup; /* out of time in the warm-up: one timed run */
		timed = r >= nj->warmup;
		if (cancel && atomic_load(cancel)) {
			/* Between runs: a long evaluation stops here when cancelled. */
			st = error_set(err, RXD_S_CANCELLED, "cancelled while it ran");
			goto out;
		}
		for (int32_t first = 0; first < batch; first += piece) {
			const struct rxd_nas_plan *p = batch - first >= piece ? &pp : &pr;
			uint64_t ns = 0;
			float *lg = nj->logits && r == 0
					    ? nj->logits + (size_t)first * nj->cfg.classes
					    : NULL;

			rc = nas_run_piece(nj, ops, p, first, arena, wbuf, spans, timed, &ns, lg,
					   err);
			if (rc < 0) {
				st = RXD_S_DEVICE;
				goto out;
			}
			total += ns;
		}
		if (timed)
			nj->run_ns[nj->runs++] = total;
	}
out:
	/* Nothing enqueued may use the buffers once they go back: the scratch too, which
	 * the reservation covered. */
	if (ops)
		nasops_release_scratch(ops);
	if (b)
		budget_release(b, &res);
	else {
		if (wbuf)
			clReleaseMemObject(wbuf);
		if (arena)
			clReleaseMemObject(arena);
	}
	free(weights);
	free(spans);
	nas_plan_free(&pp);
	nas_plan_free(&pr);
	if (st != RXD_S_OK && err)
		err->status = st;
	return st;
}

int nas_job_result(struct rxd_nas_job *nj, struct rxd_nas_result *r)
{
	const struct rxd_nas_plan *p = &nj->plan;
	uint64_t *sorted, sum = 0;
	size_t nparts = RXD_NAS_PARTS + (size_t)nj->cfg.layers + 2, k = 0;
	uint32_t n = nj->runs ? nj->runs : 1;

	memset(r, 0, sizeof(*r));
	r->genotype = nj->genotype;
	r->params = p->param_count;
	r->macs = p->macs;
	r->weight_floats = p->blob_floats;
	r->peak_device_bytes = nj->peak_bytes;
	r->activation_bytes = nj->act_bytes;
	r->batch = nj->cfg.batch;
	r->batch_piece = nj->piece;
	r->classes = nj->cfg.classes;
	r->steps = (uint32_t)p->n_steps;
	r->n_run_ns = n;
	r->run_ns = nj->run_ns;
	sorted = malloc(n * sizeof(uint64_t));
	free(nj->parts);
	free(nj->names);
	nj->parts = calloc(nparts, sizeof(*nj->parts));
	nj->names = calloc((size_t)nj->cfg.layers + 2, sizeof(*nj->names));
	if (!sorted || !nj->parts || !nj->names) {
		free(sorted);
		return -ENOMEM;
	}
	memcpy(sorted, nj->run_ns, n * sizeof(uint64_t));
	qsort(sorted, n, sizeof(uint64_t), cmp_u64);
	for (uint32_t i = 0; i < n; i++)
		sum += sorted[i];
	/* The median (the lower middle of an even count) and the nearest-rank 90th. */
	r->latency_median_ns = sorted[(n - 1) / 2];
	r->latency_p90_ns = sorted[(size_t)ceil(0.9 * n) - 1];
	r->latency_mean_ns = sum / n;
	free(sorted);
	/* The parts by operation first, then by cell, in one array. */
	r->by_op = nj->parts;
	for (int i = 0; i < RXD_NAS_PARTS; i++) {
		struct rxd_nas_part *q = &nj->parts[k];

		if (!nj->part_steps[i])
			continue;
		q->name = nas_part_name(i);
		q->ns = nj->part_ns[i] / n;
		q->steps = nj->part_steps[i];
		k++;
		r->n_by_op++;
	}
	r->by_cell = &nj->parts[k];
	for (int i = 0; i < nj->cfg.layers + 2; i++) {
		struct rxd_nas_part *q = &nj->parts[k++];

		if (i == 0)
			snprintf(nj->names[i], sizeof(nj->names[i]), "stem");
		else if (i == nj->cfg.layers + 1)
			snprintf(nj->names[i], sizeof(nj->names[i]), "head");
		else
			snprintf(nj->names[i], sizeof(nj->names[i]), "cell %d", i - 1);
		q->name = nj->names[i];
		q->ns = nj->cell_ns[i] / n;
		q->steps = nj->cell_steps[i];
		r->n_by_cell++;
	}
	if (!nj->profiled)
		r->n_by_op = r->n_by_cell = 0;
	if (nj->logits) {
		r->logits = nj->logits;
		r->logits_bytes = (size_t)nj->cfg.batch * nj->cfg.classes * sizeof(float);
	}
	return 0;
}

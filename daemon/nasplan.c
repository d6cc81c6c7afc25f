/* nasplan.c: DARTS networks (the reference's NetworkCIFAR, NetworkImageNet and the search
 * network) lowered into a flat plan of steps, their parameter counts and multiply-adds, and
 * the packing of activations by liveness.
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

#include "nasplan.h"

struct builder {
	struct rxd_nas_plan *p;
	size_t cap_t, cap_s, cap_p;
	int cell, part;
	bool affine;  /* BN of the evaluation networks; false in the supernet's cells */
	bool fuse;    /* DWPW steps and identities added by other steps (!cfg->unfused) */
	int rc;       /* sticky: the first error */
	struct rxd_error *err;
	/* An identity edge pending: the next steps writing tensor add_dst (in the slice
	 * starting at add_dst_off) add tensor add's channels from add_off as they write. */
	int add, add_dst;
	int32_t add_off, add_dst_off;
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
	s->conv_param = s->bn_param = s->conv2_param = -1;
	s->mid = -1;
	s->add = -1;
	s->add_scale = 1.0f;
	if (p->tensors[in].first > (int32_t)p->n_steps && in != p->input)
		berr(b, -EINVAL, "internal: step %zu reads tensor %d before it is written",
		     p->n_steps, in);
	if (b->add >= 0 && out == b->add_dst) {
		s->add = b->add;
		s->add_c_off = b->add_off + (c_off - b->add_dst_off);
		if (p->tensors[b->add].first > (int32_t)p->n_steps ||
		    p->tensors[b->add].c < s->add_c_off + c_out ||
		    p->tensors[b->add].h != p->tensors[out].h ||
		    p->tensors[b->add].w != p->tensors[out].w || kind == RXD_NAS_ZERO)
			berr(b, -EINVAL, "internal: bad added tensor at step %zu", p->n_steps);
		p->tensors[b->add].last = (int32_t)p->n_steps;
	}
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
	/* A BN alone (a supernet pool's, folded into a depthwise 1x1) is no convolution of
	 * the network: BN is not counted (docs/NAS.md). */
	if (c->conv_param >= 0)
		s->macs = (uint64_t)c->cout * (s->c_in / c->groups) * c->kh * c->kw *
			  (uint64_t)ho * (uint64_t)wo;
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

/* A depthwise k x k conv (ReLU on its input) of C channels into mid, then a 1x1 conv + BN
 * of mid into out's slice, as one DWPW step: half of a SepConv, or a DilConv. The weights
 * are registered in the state_dict's order: dw_name, pw_name, bn_name. */
static void emit_dwpw(struct builder *b, int in, int32_t in_c_off, int32_t C, int out,
		      int32_t c_off, int32_t k, int32_t stride, int32_t pad, int32_t dil, bool acc,
		      float scale, const char *dw_name, const char *pw_name, const char *bn_name)
{
	struct rxd_nas_plan *p = b->p;
	const struct rxd_nas_ptensor *to;
	struct rxd_nas_step *s;
	int pdw, ppw, pbn, mid;
	int32_t ho, wo;

	pdw = add_param(b, RXD_NAS_P_CONV, C, 1, k, k, "%s", dw_name);
	ppw = add_param(b, RXD_NAS_P_CONV, C, C, 1, 1, "%s", pw_name);
	pbn = add_param(b, b->affine ? RXD_NAS_P_BN : RXD_NAS_P_BN_STATS, C, 0, 0, 0, "%s",
			bn_name);
	if (b->rc)
		return;
	to = &p->tensors[out];
	ho = out_size(p->tensors[in].h, k, stride, pad, dil);
	wo = out_size(p->tensors[in].w, k, stride, pad, dil);
	if (ho != to->h || wo != to->w) {
		berr(b, -EINVAL, "internal: cell %d: a %dx%d depthwise output where %dx%d is "
				 "needed", b->cell, ho, wo, to->h, to->w);
		return;
	}
	mid = add_tensor(b, C, ho, wo);
	s = add_step(b, RXD_NAS_DWPW, in, in_c_off, C, out, c_off, C, acc, scale);
	if (!s)
		return;
	s->kh = s->kw = k;
	s->sh = s->sw = stride;
	s->ph = s->pw = pad;
	s->dh = s->dw = dil;
	s->groups = C;
	s->relu_in = true;
	s->mid = mid;
	p->tensors[mid].first = p->tensors[mid].last = (int32_t)(p->n_steps - 1);
	s->conv_param = pdw;
	s->conv2_param = ppw;
	s->bn_param = pbn;
	s->bn_c_off = 0;
	s->w_off = p->weight_floats;
	p->weight_floats += (uint64_t)C * k * k;
	s->b_off = p->weight_floats;
	p->weight_floats += (uint64_t)C;
	s->w2_off = p->weight_floats;
	p->weight_floats += (uint64_t)C * C;
	s->b2_off = p->weight_floats;
	p->weight_floats += (uint64_t)C;
	s->macs = ((uint64_t)C * k * k + (uint64_t)C * C) * (uint64_t)ho * (uint64_t)wo;
	p->macs += s->macs;
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
 * names the op's module in the state_dict. Long: one case per primitive of the search
 * space, each the reference's module lowered to steps, side by side to be read against
 * the reference's OPS table. */
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

		if (b->fuse) {
			char n3[80];

			t2 = add_tensor(b, C, ho, wo);
			snprintf(n1, sizeof(n1), "%s.op.1", prefix);
			snprintf(n2, sizeof(n2), "%s.op.2", prefix);
			snprintf(n3, sizeof(n3), "%s.op.3", prefix);
			emit_dwpw(b, x, x_off, C, t2, 0, k, stride, k / 2, 1, false, 1.0f, n1, n2,
				  n3);
			snprintf(n1, sizeof(n1), "%s.op.5", prefix);
			snprintf(n2, sizeof(n2), "%s.op.6", prefix);
			snprintf(n3, sizeof(n3), "%s.op.7", prefix);
			emit_dwpw(b, t2, 0, C, dst, c_off, k, 1, k / 2, 1, acc, scale, n1, n2, n3);
			return;
		}
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

		if (b->fuse) {
			char n3[80];

			snprintf(n1, sizeof(n1), "%s.op.1", prefix);
			snprintf(n2, sizeof(n2), "%s.op.2", prefix);
			snprintf(n3, sizeof(n3), "%s.op.3", prefix);
			emit_dwpw(b, x, x_off, C, dst, c_off, k, stride, k == 3 ? 2 : 4, 2, acc,
				  scale, n1, n2, n3);
			return;
		}
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

/* Node n of a genotype cell, fused: its edges in the order to lower them (a 'none' after
 * the other edge, where it adds nothing and makes no step), and an identity edge (a
 * skip_connect at stride 1) lowered as no step at all: the other edge's steps that write
 * the node add the identity's input as they write (builder.add). n_in becomes 1 then. */
static void fuse_node(struct builder *b, const struct rxd_genotype_cell *gc, int n, bool reduction,
		      const int *states, const int32_t *state_off, int dst, int32_t off,
		      int order[2], int *n_in)
{
	bool ident[2];

	for (int e = 0; e < 2; e++)
		ident[e] = gc->op[2 * n + e] == RXD_OP_SKIP_CONNECT &&
			   !(reduction && gc->input[2 * n + e] < 2);
	if (gc->op[2 * n] == RXD_OP_NONE) {
		order[0] = 1;
		order[1] = 0;
	}
	for (int e = 1; e >= 0; e--) {
		int other = 1 - e, j = gc->input[2 * n + e];

		if (!ident[e] || gc->op[2 * n + other] == RXD_OP_NONE)
			continue;
		b->add = states[j];
		b->add_off = state_off[j];
		b->add_dst = dst;
		b->add_dst_off = off;
		order[0] = other;
		*n_in = 1;
		return;
	}
}

/* One cell: s0, s1 the outputs of the cells k-2 and k-1 (prev_reduced: k-1 reduced).
 * Returns the cell's output tensor. Long: the reference's Cell.__init__ and forward in
 * one, preprocessing, the nodes' edges (genotype or supernet) and the concat, which share
 * the tensors they lay out. */
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
		int n_in = cfg->supernet ? n + 2 : 2, order[2] = { 0, 1 };

		if (!cfg->supernet && b->fuse)
			fuse_node(b, gc, n, reduction, states, state_off, dst, off, order, &n_in);
		for (int e0 = 0; e0 < n_in; e0++, edge++) {
			int e = cfg->supernet ? e0 : order[e0];
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
		b->add = -1;
		if (slice[n] >= 0) {
			b->part = RXD_NAS_PART_CONCAT;
			add_step(b, RXD_NAS_COPY, dst, 0, C, outt, slice[n], C, false, 1.0f);
		}
	}
	return b->rc ? -1 : outt;
}

/* Whether an ImageNet network of layers cells builds from an input side of n: the stem
 * halves it three times, each reduction cell once more; FactorizedReduce (cell 0's
 * preprocess0 on the stem0 map, and the preprocess0 of the cell after each reduction on the
 * map before it) needs an even side; the last map must be 7 for the 7x7 average pool.
 * The same walk as nas_build's, on one side. */
static bool imagenet_side_ok(int32_t n, int32_t layers)
{
	int32_t prev, cur;

	n = half(half(n));
	if (n % 2)
		return false;
	prev = n;
	cur = half(n);
	for (int32_t i = 0; i < layers; i++) {
		bool reduction = i == layers / 3 || i == 2 * layers / 3;
		bool prev_reduced = i > 0 && (i - 1 == layers / 3 || i - 1 == 2 * layers / 3);
		int32_t out = reduction ? half(cur) : cur;

		if (prev_reduced && prev % 2)
			return false;
		prev = cur;
		cur = out;
	}
	return cur == 7;
}

/* An ImageNet input side that does not build: an error naming the sides that do (a range
 * where they are one, as 221 to 224 for 14 cells). */
static int imagenet_size_error(const struct rxd_nas_config *cfg, struct rxd_error *err)
{
	int32_t lo = 0, hi = 0, count = 0;

	for (int32_t n = 1; n <= RXD_NAS_MAX_SIZE; n++)
		if (imagenet_side_ok(n, cfg->layers)) {
			lo = lo ? lo : n;
			hi = n;
			count++;
		}
	if (!count)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "an ImageNet network of %d cells "
				 "cannot end in the 7x7 map its average pool needs at any input size",
				 cfg->layers);
	return error_set(err, RXD_S_INVALID_ARGUMENT,
			 "the input is %dx%d; an ImageNet network of %d cells needs height and width "
			 "%s%d to %d (its last map must be 7x7 for the 7x7 average pool, and "
			 "FactorizedReduce needs even sizes)",
			 cfg->height, cfg->width, cfg->layers, count == hi - lo + 1 ? "" : "among ",
			 lo, hi);
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
	if (cfg->family == RXD_NAS_IMAGENET && !cfg->supernet &&
	    (!imagenet_side_ok(cfg->height, cfg->layers) ||
	     !imagenet_side_ok(cfg->width, cfg->layers))) {
		imagenet_size_error(cfg, err);
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

/* Long: the whole network in the reference's order (the stem, CIFAR's or ImageNet's two,
 * the cells, global pooling, the classifier), then the plan packed; read top to bottom
 * against the reference's NetworkCIFAR / NetworkImageNet. */
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
	b.fuse = !cfg->unfused;
	b.add = -1;
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
		     "internal: an ImageNet network's last map is %dx%d from a %dx%d input",
		     plan->tensors[s1].h, plan->tensors[s1].w, h, w);
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

int nas_plan_copy(struct rxd_nas_plan *dst, const struct rxd_nas_plan *src)
{
	*dst = *src;
	dst->tensors = malloc(src->n_tensors * sizeof(*src->tensors));
	dst->steps = malloc(src->n_steps * sizeof(*src->steps));
	dst->params = malloc((src->n_params ? src->n_params : 1) * sizeof(*src->params));
	if (!dst->tensors || !dst->steps || !dst->params) {
		nas_plan_free(dst);
		return -ENOMEM;
	}
	memcpy(dst->tensors, src->tensors, src->n_tensors * sizeof(*src->tensors));
	memcpy(dst->steps, src->steps, src->n_steps * sizeof(*src->steps));
	memcpy(dst->params, src->params, src->n_params * sizeof(*src->params));
	return 0;
}

uint64_t nas_plan_host_bytes(const struct rxd_nas_plan *plan)
{
	return sizeof(*plan) + plan->n_tensors * sizeof(*plan->tensors) +
	       plan->n_steps * sizeof(*plan->steps) + plan->n_params * sizeof(*plan->params);
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
							  "zero", "gap",     "linear", "dwpw" };

	return kind >= 0 && kind < RXD_NAS_KINDS ? names[kind] : "?";
}

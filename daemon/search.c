/* search.c: the DARTS architecture search on the device (search.h; docs/NAS.md).
 *
 * The supernet comes from nasplan.c as an inference plan: convolutions whose BN nas_fold
 * would fold, and every mixed operation's last step writing straight into its node with
 * its softmax weight as the scale. search_prepare turns that plan into a training program:
 * - a convolution with a BN writes its own pre-BN tensor, then BN in training mode
 *   (nasgrad_bn_forward) writes the step's destination; FactorizedReduce's two halves
 *   share one BN over their concatenation;
 * - a pool's BN (a depthwise 1x1 convolution in the plan) is BN on the pool's output;
 * - each operation of a mixed edge writes its own output O (skip_connect's is its input),
 *   and a MIX step adds w * O into the node, w = softmax(alpha) read at run time: the
 *   alpha gradient needs sum(dy * O), and the reference keeps O for the same reason.
 * A mixed operation's last step is recognised by writing a tensor that more than one
 * step writes (its node); every other step writes a tensor of its own. Edges are counted
 * from each cell's max_pool_3x3, the first primitive the builder emits per edge; a plan
 * that does not have this shape is refused (-EINVAL), so a change in nasplan.c shows.
 *
 * Memory: every activation of the forward stays (the backward reads them), each tensor in
 * its own place; gradients are packed by their lifetime in the backward (a tensor's from
 * its last reader's backward to its first writer's). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "search.h"

enum {
	SOP_CONV, SOP_BN, SOP_POOL, SOP_COPY, SOP_ZERO, SOP_GAP, SOP_LINEAR, SOP_MIX
};

struct search_tensor {
	int32_t c, h, w;
	uint64_t elems;              /* batch c h w */
	uint64_t act_off, grad_off;  /* floats, in the activation and gradient arenas */
	int32_t first, last;         /* the first op writing it, the last reading it */
};

struct search_bn {
	int32_t c;
	bool affine;
	uint64_t gamma_off;          /* trainables: gamma [c] then beta [c], when affine */
	uint64_t run_off;            /* running mean [c] then variance [c] */
	uint64_t stats_off;          /* the batch statistics the backward reads [2][c] */
};

struct search_op {
	uint8_t kind;                /* SOP_* */
	bool accumulate;
	int32_t step;                /* the plan step: shapes and parameters */
	int32_t in, out, c_off;      /* tensors; the output slice's first channel */
	int32_t bn;                  /* SOP_BN */
	int32_t row, prim;           /* SOP_MIX: alpha row (normal then reduce), primitive */
	uint64_t w_off;              /* SOP_CONV, SOP_LINEAR: in the trainables */
};

struct rxd_search {
	struct rxd_search_config cfg;
	struct rxd_nas_plan plan;
	int32_t edges, rows;         /* per cell type; both types' */
	struct search_tensor *t;
	size_t n_t, cap_t;
	struct search_op *op;
	size_t n_op, cap_op;
	struct search_bn *bn;
	size_t n_bn, cap_bn;
	uint64_t *tr_off, *run_off;  /* per plan parameter */
	uint64_t trainable_floats, running_floats, stats_floats, act_floats, grad_floats;
	uint64_t scratch_bytes;      /* the most the kernels' scratch grows to */
	int32_t input, output;
	/* Host. */
	float *alpha;                /* [rows][8]: the device's, exactly */
	float *mixw;                 /* softmax of each row */
	bool *grad_written;          /* per tensor, during a backward */
	bool *alpha_written;         /* per alpha entry, during a backward */
	uint64_t step, rng;
	/* Device. */
	struct rxd_nasops *ops;
	struct rxd_nasgrad *gr;
	cl_mem x_cur;                /* the input batch the forward reads (xt or xv) */
	cl_mem act, grad, w, g, mom, run, stats, alpha_d, galpha, dalpha, am, av, xt, xv, labels,
		out;
	/* Pauses (search_set_pause). */
	struct rxd_search_pause pause;
	int pass;                    /* SEARCH_PASS_*: the one being enqueued */
	uint32_t since_pause;        /* operations enqueued since the last piece's end */
	uint64_t piece_ns;           /* their learned device time */
	cl_event piece_end;          /* the marker after the last piece enqueued, or NULL */
	uint64_t *op_ns;             /* [SEARCH_PASSES][n_op]: each operation's device time in
				      * the order the pass runs them, once learned */
	unsigned learned;            /* bit per pass */
	cl_event *learn_ev;          /* [n_op + 1]: the markers of a pass being learned, or NULL */
	uint64_t paused_ns;          /* spent in the hook since the last lap */
};

/* The device work in one piece of a step (search_pause). A job that comes waits for at
 * most two pieces: the one running and the one queued behind it. Operations differ a
 * hundredfold in cost (a pooling of a few channels, a batch of weight-gradient GEMMs), and
 * a cost model would have to know the device, so each pass learns its operations' device
 * times once, in the search's first step, from markers between them (profiling
 * timestamps), and later pieces add operations up to SEARCH_PAUSE_NS of them. An operation
 * longer than that is a piece alone. Until then, or on a queue without profiling, a piece
 * is SEARCH_PIECE_OPS operations. The host waits at each piece's end for the piece before
 * it, so the device always has the next piece queued and never idles for it. */
#define SEARCH_PAUSE_NS 1000000ull
#define SEARCH_PIECE_OPS 8
enum { SEARCH_PASS_FORWARD, SEARCH_PASS_BACKWARD_ALPHA, SEARCH_PASS_BACKWARD_W, SEARCH_PASSES };

/* The floats of OUT: the validation loss and hits, the training loss and hits, the
 * gradient's squared norm. */
enum { OUT_VALID = 0, OUT_TRAIN = 2, OUT_SUMSQ = 4, OUT_FLOATS = 8 };

#define SEARCH_ALIGN 64 /* floats: each tensor's start */
#define SEARCH_PI 3.14159265358979323846

void search_config_defaults(struct rxd_search_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->C = 16;
	cfg->layers = 8;
	cfg->classes = 10;
	cfg->height = cfg->width = 32;
	cfg->batch = 64;
	cfg->steps = 4;
	cfg->multiplier = 4;
	cfg->lr = 0.025;
	cfg->lr_min = 0.001;
	cfg->momentum = 0.9;
	cfg->weight_decay = 3e-4;
	cfg->grad_clip = 5;
	cfg->epochs = 50;
	cfg->steps_per_epoch = 1;
	cfg->arch_lr = 3e-4;
	cfg->arch_beta1 = 0.5;
	cfg->arch_beta2 = 0.999;
	cfg->arch_eps = 1e-8;
	cfg->arch_weight_decay = 1e-3;
}

/* ---- the training program ------------------------------------------------------------ */

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
	size_t ncap;
	void *q;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 256;
	q = realloc(*arr, ncap * size);
	if (!q)
		return -ENOMEM;
	*arr = q;
	*cap = ncap;
	return 0;
}

static int add_tensor(struct rxd_search *s, int32_t c, int32_t h, int32_t w)
{
	struct search_tensor *t;

	if (grow((void **)&s->t, &s->cap_t, s->n_t, sizeof(*t)) < 0)
		return -ENOMEM;
	t = &s->t[s->n_t];
	memset(t, 0, sizeof(*t));
	t->c = c;
	t->h = h;
	t->w = w;
	t->elems = (uint64_t)s->plan.batch * (uint64_t)c * (uint64_t)h * (uint64_t)w;
	t->first = INT32_MAX;
	t->last = -1;
	return (int)s->n_t++;
}

static int add_op(struct rxd_search *s, int kind, int32_t step, int32_t in, int32_t out,
		  int32_t c_off, bool acc)
{
	struct search_op *o;

	if (grow((void **)&s->op, &s->cap_op, s->n_op, sizeof(*o)) < 0)
		return -ENOMEM;
	o = &s->op[s->n_op];
	memset(o, 0, sizeof(*o));
	o->kind = (uint8_t)kind;
	o->step = step;
	o->in = in;
	o->out = out;
	o->c_off = c_off;
	o->accumulate = acc;
	o->bn = o->row = o->prim = -1;
	if (s->t[out].first > (int32_t)s->n_op)
		s->t[out].first = (int32_t)s->n_op;
	s->t[in].last = (int32_t)s->n_op;
	return (int)s->n_op++;
}

static int add_bn(struct rxd_search *s, int32_t param, int32_t step, int32_t in, int32_t out,
		  int32_t c_off, bool acc)
{
	const struct rxd_nas_param *q = &s->plan.params[param];
	struct search_bn *b;
	int k;

	if (grow((void **)&s->bn, &s->cap_bn, s->n_bn, sizeof(*b)) < 0)
		return -ENOMEM;
	b = &s->bn[s->n_bn];
	b->c = q->cout;
	b->affine = q->kind == RXD_NAS_P_BN;
	b->gamma_off = s->tr_off[param];
	b->run_off = s->run_off[param];
	b->stats_off = s->stats_floats;
	s->stats_floats += 2 * (uint64_t)q->cout;
	if ((k = add_op(s, SOP_BN, step, in, out, c_off, acc)) < 0)
		return k;
	s->op[k].bn = (int32_t)s->n_bn++;
	return 0;
}

/* Where each parameter's trainable and running floats go on the device. */
static int search_layout_params(struct rxd_search *s)
{
	const struct rxd_nas_plan *p = &s->plan;

	s->tr_off = calloc(p->n_params ? p->n_params : 1, sizeof(*s->tr_off));
	s->run_off = calloc(p->n_params ? p->n_params : 1, sizeof(*s->run_off));
	if (!s->tr_off || !s->run_off)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_params; i++) {
		const struct rxd_nas_param *q = &p->params[i];

		s->tr_off[i] = s->trainable_floats;
		s->run_off[i] = s->running_floats;
		switch (q->kind) {
		case RXD_NAS_P_CONV:
		case RXD_NAS_P_LINEAR:
			s->trainable_floats += q->floats;
			break;
		case RXD_NAS_P_BN:
			s->trainable_floats += 2 * (uint64_t)q->cout;
			s->running_floats += 2 * (uint64_t)q->cout;
			break;
		default:
			s->running_floats += 2 * (uint64_t)q->cout;
			break;
		}
	}
	return 0;
}

/* One plan step (not a MIX) computing into dst, channel 0 of its result at base (the
 * pre-BN tensor *pre carries a BN group across FactorizedReduce's two halves). */
static int search_lower_step(struct rxd_search *s, int32_t i, int32_t dst, int32_t base, bool acc,
			     int32_t *pre)
{
	const struct rxd_nas_step *st = &s->plan.steps[i];
	int k;

	switch (st->kind) {
	case RXD_NAS_CONV:
		if (st->bn_param >= 0 && st->conv_param < 0) {
			/* A pool's BN: the plan's depthwise 1x1 placeholder. */
			if (st->groups != st->c_in || st->c_out != st->c_in || st->kh != 1)
				return -EINVAL;
			return add_bn(s, st->bn_param, i, st->in, dst, base, acc);
		}
		if (st->conv_param < 0)
			return -EINVAL;
		if (st->bn_param >= 0) {
			int32_t cbn = s->plan.params[st->bn_param].cout;

			if (st->bn_c_off == 0 &&
			    (*pre = add_tensor(s, cbn, st->h_out, st->w_out)) < 0)
				return -ENOMEM;
			if (*pre < 0 || st->bn_c_off + st->c_out > cbn)
				return -EINVAL;
			if ((k = add_op(s, SOP_CONV, i, st->in, *pre, st->bn_c_off, false)) < 0)
				return k;
			s->op[k].w_off = s->tr_off[st->conv_param];
			if (st->bn_c_off + st->c_out < cbn)
				return 0; /* the first half of a FactorizedReduce */
			k = add_bn(s, st->bn_param, i, *pre, dst, base, acc);
			*pre = -1;
			return k;
		}
		if ((k = add_op(s, SOP_CONV, i, st->in, dst, base, acc)) < 0)
			return k;
		s->op[k].w_off = s->tr_off[st->conv_param];
		return 0;
	case RXD_NAS_MAXPOOL:
	case RXD_NAS_AVGPOOL:
		k = add_op(s, SOP_POOL, i, st->in, dst, base, acc);
		return k < 0 ? k : 0;
	case RXD_NAS_COPY:
		k = add_op(s, SOP_COPY, i, st->in, dst, base, acc);
		return k < 0 ? k : 0;
	case RXD_NAS_ZERO:
		k = add_op(s, SOP_ZERO, i, st->in, dst, base, acc);
		return k < 0 ? k : 0;
	case RXD_NAS_GAP:
		k = add_op(s, SOP_GAP, i, st->in, dst, base, acc);
		return k < 0 ? k : 0;
	case RXD_NAS_LINEAR:
		if (st->conv_param < 0)
			return -EINVAL;
		if ((k = add_op(s, SOP_LINEAR, i, st->in, dst, base, acc)) < 0)
			return k;
		s->op[k].w_off = s->tr_off[st->conv_param];
		return 0;
	default:
		return -EINVAL;
	}
}

/* The whole program from the plan; see the top of the file. -EINVAL when the plan is not
 * shaped as expected. Long because it is one walk with its state in locals. */
static int search_lower(struct rxd_search *s)
{
	const struct rxd_nas_plan *p = &s->plan;
	int32_t *writers = calloc(p->n_tensors, sizeof(*writers));
	int32_t cell = INT32_MIN, edge = -1, pre = -1;
	int32_t inst_out = -1, inst_c_off = 0, inst_row = -1, inst_prim = -1, o_t = -1;
	bool inst_acc = false;
	int ret = 0;

	if (!writers)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_tensors; i++)
		if (add_tensor(s, p->tensors[i].c, p->tensors[i].h, p->tensors[i].w) < 0) {
			ret = -ENOMEM;
			goto out;
		}
	s->input = p->input;
	s->output = p->output;
	for (size_t i = 0; i < p->n_steps; i++)
		writers[p->steps[i].out]++;
	for (size_t i = 0; i < p->n_steps && ret == 0; i++) {
		const struct rxd_nas_step *st = &p->steps[i];
		bool mixed = st->cell >= 0 && st->cell < p->layers && st->part >= 1 &&
			     st->part < RXD_NAS_PRIMITIVES && writers[st->out] > 1;
		bool reduction = st->cell == p->layers / 3 || st->cell == 2 * p->layers / 3;
		bool second_half = st->kind == RXD_NAS_CONV && st->in_shift == 1;

		if (st->in_c_off != 0 || st->c_in != p->tensors[st->in].c) {
			ret = -EINVAL; /* a step reading part of a tensor: not the supernet's */
			break;
		}
		if (st->cell != cell) {
			cell = st->cell;
			edge = -1;
		}
		if (!mixed) {
			/* A BN group's channel 0 lands bn_c_off before this half's. */
			int32_t base = st->c_off - (st->bn_param >= 0 && st->conv_param >= 0
							    ? st->bn_c_off
							    : 0);

			if (st->scale != 1.0f) {
				ret = -EINVAL;
				break;
			}
			ret = search_lower_step(s, (int32_t)i, st->out, base, st->accumulate, &pre);
			continue;
		}
		if (!second_half) {
			/* A new operation of an edge. */
			if (st->part == RXD_OP_MAX_POOL_3X3)
				edge++;
			if (edge < 0 || edge >= s->edges) {
				ret = -EINVAL;
				break;
			}
			inst_out = st->out;
			inst_c_off = st->c_off;
			inst_acc = st->accumulate;
			inst_row = (reduction ? s->edges : 0) + edge;
			inst_prim = st->part;
			if (st->kind == RXD_NAS_COPY && !st->relu_in) {
				o_t = st->in; /* skip_connect: its output is its input */
			} else {
				int32_t c = st->kind == RXD_NAS_CONV && st->bn_param >= 0
						    ? p->params[st->bn_param].cout
						    : st->c_out;
				if ((o_t = add_tensor(s, c, st->h_out, st->w_out)) < 0) {
					ret = -ENOMEM;
					break;
				}
			}
		} else if (inst_out != st->out) {
			ret = -EINVAL;
			break;
		}
		if (o_t != st->in &&
		    (ret = search_lower_step(s, (int32_t)i, o_t, 0, false, &pre)) < 0)
			break;
		if (pre < 0) {
			/* The operation is complete: mix it in. */
			int k = add_op(s, SOP_MIX, (int32_t)i, o_t, inst_out, inst_c_off, inst_acc);

			if (k < 0) {
				ret = k;
				break;
			}
			s->op[k].row = inst_row;
			s->op[k].prim = inst_prim;
		}
	}
	if (ret == 0 && pre >= 0)
		ret = -EINVAL;
	/* Every cell mixed every primitive but none on each of its edges. */
	if (ret == 0) {
		size_t mixes = 0;

		for (size_t k = 0; k < s->n_op; k++)
			mixes += s->op[k].kind == SOP_MIX;
		if (mixes != (size_t)p->layers * s->edges * (RXD_NAS_PRIMITIVES - 1))
			ret = -EINVAL;
	}
out:
	free(writers);
	return ret;
}

/* Every tensor but the input in its own place in the activation arena; gradients packed
 * by lifetime. The backward runs ops from last to first: a tensor's gradient is live from
 * the backward of its last reader to that of its first writer. */
static int search_layout_tensors(struct rxd_search *s)
{
	size_t n = s->n_t;
	uint64_t top = 0;
	size_t *order = malloc(n * sizeof(*order));

	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct search_tensor *t = &s->t[i];

		if ((int32_t)i == s->input)
			continue;
		if (t->first == INT32_MAX || (t->last < 0 && (int32_t)i != s->output)) {
			free(order);
			return -EINVAL; /* never written, or written and never read */
		}
		if (t->elems > INT_MAX) {
			free(order);
			return -E2BIG;
		}
		t->act_off = s->act_floats;
		s->act_floats += (t->elems + SEARCH_ALIGN - 1) / SEARCH_ALIGN * SEARCH_ALIGN;
	}
	s->t[s->output].last = (int32_t)s->n_op; /* the loss reads the logits */
	/* Greedy: largest first, each at the lowest offset free over its lifetime. */
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	for (size_t i = 1; i < n; i++) {
		size_t v = order[i], j = i;

		while (j > 0 && s->t[order[j - 1]].elems < s->t[v].elems) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = v;
	}
	for (size_t i = 0; i < n; i++) {
		struct search_tensor *t = &s->t[order[i]];
		uint64_t size = (t->elems + SEARCH_ALIGN - 1) / SEARCH_ALIGN * SEARCH_ALIGN;
		uint64_t off = 0;
		bool moved = true;

		if ((int32_t)order[i] == s->input)
			continue;
		/* First fit against every placed tensor alive at the same time: repeat until no
		 * conflict (quadratic per tensor; plans have a few thousand tensors). */
		while (moved) {
			moved = false;
			for (size_t k = 0; k < i; k++) {
				const struct search_tensor *u = &s->t[order[k]];
				uint64_t usize = (u->elems + SEARCH_ALIGN - 1) / SEARCH_ALIGN *
						 SEARCH_ALIGN;

				if ((int32_t)order[k] == s->input || u->first > t->last ||
				    t->first > u->last)
					continue;
				if (u->grad_off < off + size && off < u->grad_off + usize) {
					off = u->grad_off + usize;
					moved = true;
				}
			}
		}
		t->grad_off = off;
		if (off + size > top)
			top = off + size;
	}
	s->grad_floats = top;
	free(order);
	return 0;
}

/* The kernels' scratch: a convolution's columns (at most 64 MiB of them at a time, but
 * always one image's) in nasops and nasgrad each, and nasgrad's reductions. */
static uint64_t search_scratch_bytes(const struct rxd_search *s)
{
	uint64_t cols = 0, red = 2 * (uint64_t)s->plan.batch;

	for (size_t i = 0; i < s->n_op; i++) {
		const struct search_op *o = &s->op[i];
		const struct rxd_nas_step *st = &s->plan.steps[o->step];
		uint64_t per_image;

		if (o->kind == SOP_BN || o->kind == SOP_MIX) {
			uint64_t c = o->kind == SOP_BN ? (uint64_t)s->bn[o->bn].c : 1;
			/* BN's and the dots' partial sums: at most 64 chunks per row. */
			red = red > 64 * c * s->plan.batch ? red : 64 * c * s->plan.batch;
			continue;
		}
		if (o->kind != SOP_CONV)
			continue;
		per_image = (uint64_t)(st->c_in / st->groups) * st->kh * st->kw * st->h_out *
			    st->w_out;
		cols = per_image > cols ? per_image : cols;
	}
	if (s->trainable_floats / 256 + 1 > red)
		red = s->trainable_floats / 256 + 1;
	cols *= sizeof(float);
	if (cols < (64ull << 20))
		cols = 64ull << 20;
	return 2 * cols + red * sizeof(float);
}

static int search_check_config(const struct rxd_search_config *c, struct rxd_error *err)
{
	if (!(c->lr >= 0 && c->lr_min >= 0 && isfinite(c->lr) && isfinite(c->lr_min)) ||
	    !(c->momentum >= 0 && c->momentum < 1) || !(c->weight_decay >= 0) ||
	    !isfinite(c->weight_decay) || !(c->grad_clip > 0) || !isfinite(c->grad_clip))
		return error_set(err, RXD_S_INVALID_ARGUMENT, "the weights' optimiser settings "
				 "are out of range (lr and lr_min >= 0, momentum in [0, 1), "
				 "weight decay >= 0, grad clip > 0)"), -EINVAL;
	if (!(c->arch_lr >= 0) || !isfinite(c->arch_lr) ||
	    !(c->arch_beta1 >= 0 && c->arch_beta1 < 1) ||
	    !(c->arch_beta2 >= 0 && c->arch_beta2 < 1) || !(c->arch_eps > 0) ||
	    !(c->arch_weight_decay >= 0) || !isfinite(c->arch_weight_decay))
		return error_set(err, RXD_S_INVALID_ARGUMENT, "the alphas' optimiser settings "
				 "are out of range (lr >= 0, betas in [0, 1), eps > 0, weight "
				 "decay >= 0)"), -EINVAL;
	if (c->epochs < 1 || c->steps_per_epoch < 1)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "epochs and steps per epoch must "
				 "be at least 1"), -EINVAL;
	if (c->classes < 2)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "a search needs at least 2 "
				 "classes"), -EINVAL;
	return 0;
}

int search_prepare(const struct rxd_search_config *cfg, struct rxd_search **out,
		   struct rxd_error *err)
{
	struct rxd_nas_config nc = { 0 };
	struct rxd_search *s;
	float *zero = NULL;
	int ret;

	*out = NULL;
	if ((ret = search_check_config(cfg, err)) < 0)
		return ret;
	if (cfg->steps < 1 || cfg->steps > RXD_NAS_MAX_STEPS ||
	    cfg->steps > RXD_GENOTYPE_MAX_NODES)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "steps is %d; it must be 1 to %d",
				 cfg->steps, RXD_NAS_MAX_STEPS), -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return error_set(err, RXD_S_NO_MEMORY, "out of memory"), -ENOMEM;
	s->cfg = *cfg;
	s->edges = cfg->steps * (cfg->steps + 3) / 2;
	s->rows = 2 * s->edges;
	zero = calloc((size_t)s->rows * RXD_NAS_PRIMITIVES, sizeof(float));
	s->alpha = calloc((size_t)s->rows * RXD_NAS_PRIMITIVES, sizeof(float));
	s->mixw = calloc((size_t)s->rows * RXD_NAS_PRIMITIVES, sizeof(float));
	s->alpha_written = calloc((size_t)s->rows * RXD_NAS_PRIMITIVES, sizeof(bool));
	if (!zero || !s->alpha || !s->mixw || !s->alpha_written) {
		ret = (error_set(err, RXD_S_NO_MEMORY, "out of memory"), -ENOMEM);
		goto out;
	}
	nc.family = RXD_NAS_CIFAR;
	nc.C = cfg->C;
	nc.layers = cfg->layers;
	nc.classes = cfg->classes;
	nc.height = cfg->height;
	nc.width = cfg->width;
	nc.batch = cfg->batch;
	nc.supernet = true;
	nc.steps = cfg->steps;
	nc.multiplier = cfg->multiplier;
	nc.alpha_normal = zero;
	nc.alpha_reduce = zero + (size_t)s->edges * RXD_NAS_PRIMITIVES;
	/* One step per module: the training program keeps each operation's output for its
	 * backward and its alpha's gradient, which a fused step does not write. */
	nc.unfused = true;
	if ((ret = nas_build(&nc, &s->plan, err)) < 0)
		goto out;
	if ((ret = search_layout_params(s)) < 0 || (ret = search_lower(s)) < 0 ||
	    (ret = search_layout_tensors(s)) < 0) {
		if (ret == -ENOMEM)
			error_set(err, RXD_S_NO_MEMORY, "out of memory laying out the search");
		else if (ret == -E2BIG)
			error_set(err, RXD_S_TOO_BIG, "a feature map of the search has more than "
				  "%d floats; use a smaller batch or input", INT_MAX);
		else
			error_set(err, RXD_S_INTERNAL, "the supernet's plan is not shaped as the "
				  "search expects");
		goto out;
	}
	s->grad_written = calloc(s->n_t, sizeof(bool));
	if (!s->grad_written) {
		ret = (error_set(err, RXD_S_NO_MEMORY, "out of memory"), -ENOMEM);
		goto out;
	}
	if (s->trainable_floats > INT_MAX) {
		ret = (error_set(err, RXD_S_TOO_BIG, "the supernet has more than %d weights",
				 INT_MAX), -E2BIG);
		goto out;
	}
	s->scratch_bytes = search_scratch_bytes(s);
	*out = s;
	s = NULL;
out:
	free(zero);
	search_free(s);
	return ret;
}

uint64_t search_device_bytes(const struct rxd_search *s)
{
	uint64_t in = (uint64_t)s->plan.batch * 3 * s->cfg.height * s->cfg.width;
	uint64_t floats = s->act_floats + s->grad_floats + 3 * s->trainable_floats +
			  s->running_floats + s->stats_floats +
			  5 * (uint64_t)s->rows * RXD_NAS_PRIMITIVES + 2 * in +
			  2 * (uint64_t)s->plan.batch + OUT_FLOATS;

	return floats * sizeof(float) + s->scratch_bytes;
}

int search_bytes(const struct rxd_search_config *cfg, uint64_t *bytes, struct rxd_error *err)
{
	struct rxd_search *s;
	int ret = search_prepare(cfg, &s, err);

	if (ret < 0)
		return ret;
	*bytes = search_device_bytes(s);
	search_free(s);
	return 0;
}

/* ---- initial state ------------------------------------------------------------------- */

/* splitmix64: the search's documented generator (docs/NAS.md). */
static uint64_t search_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 bits. */
static double search_uniform(uint64_t *state)
{
	return (double)(search_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* N(0, 1) by Box-Muller (one value per two draws). */
static double search_normal(uint64_t *state)
{
	double u1 = search_uniform(state), u2 = search_uniform(state);

	return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * SEARCH_PI * u2);
}

/* The state_dict blob of the seed: PyTorch's default initialisation of every module,
 * in the blob's order, then the alphas. */
static void search_init_host(struct rxd_search *s, float *blob)
{
	const struct rxd_nas_plan *p = &s->plan;
	uint64_t st = s->cfg.seed;

	for (size_t i = 0; i < p->n_params; i++) {
		const struct rxd_nas_param *q = &p->params[i];
		float *v = blob + q->blob_off;
		uint64_t c = (uint64_t)q->cout;

		switch (q->kind) {
		case RXD_NAS_P_CONV: {
			/* kaiming_uniform_(a = sqrt(5)): bound 1 / sqrt(fan_in). */
			double bound = 1.0 / sqrt((double)q->cin * q->kh * q->kw);

			for (uint64_t k = 0; k < q->floats; k++)
				v[k] = (float)((2 * search_uniform(&st) - 1) * bound);
			break;
		}
		case RXD_NAS_P_LINEAR: {
			double bound = 1.0 / sqrt((double)q->cin);

			for (uint64_t k = 0; k < q->floats; k++)
				v[k] = (float)((2 * search_uniform(&st) - 1) * bound);
			break;
		}
		case RXD_NAS_P_BN:
			for (uint64_t k = 0; k < c; k++) {
				v[k] = 1.0f;          /* weight */
				v[c + k] = 0.0f;      /* bias */
				v[2 * c + k] = 0.0f;  /* running mean */
				v[3 * c + k] = 1.0f;  /* running var */
			}
			break;
		default:
			for (uint64_t k = 0; k < c; k++) {
				v[k] = 0.0f;
				v[c + k] = 1.0f;
			}
			break;
		}
	}
	for (int32_t k = 0; k < s->rows * RXD_NAS_PRIMITIVES; k++)
		s->alpha[k] = (float)(1e-3 * search_normal(&st));
	s->rng = st;
}

/* blob (the state_dict) <-> trainables and running statistics, on the host. */
static void search_split_blob(const struct rxd_search *s, const float *blob, float *tr,
			      float *run)
{
	const struct rxd_nas_plan *p = &s->plan;

	for (size_t i = 0; i < p->n_params; i++) {
		const struct rxd_nas_param *q = &p->params[i];
		const float *v = blob + q->blob_off;
		size_t c = (size_t)q->cout;

		switch (q->kind) {
		case RXD_NAS_P_CONV:
		case RXD_NAS_P_LINEAR:
			memcpy(tr + s->tr_off[i], v, q->floats * sizeof(float));
			break;
		case RXD_NAS_P_BN:
			memcpy(tr + s->tr_off[i], v, 2 * c * sizeof(float));
			memcpy(run + s->run_off[i], v + 2 * c, 2 * c * sizeof(float));
			break;
		default:
			memcpy(run + s->run_off[i], v, 2 * c * sizeof(float));
			break;
		}
	}
}

static void search_join_blob(const struct rxd_search *s, const float *tr, const float *run,
			     float *blob)
{
	const struct rxd_nas_plan *p = &s->plan;

	for (size_t i = 0; i < p->n_params; i++) {
		const struct rxd_nas_param *q = &p->params[i];
		float *v = blob + q->blob_off;
		size_t c = (size_t)q->cout;

		switch (q->kind) {
		case RXD_NAS_P_CONV:
		case RXD_NAS_P_LINEAR:
			memcpy(v, tr + s->tr_off[i], q->floats * sizeof(float));
			break;
		case RXD_NAS_P_BN:
			memcpy(v, tr + s->tr_off[i], 2 * c * sizeof(float));
			memcpy(v + 2 * c, run + s->run_off[i], 2 * c * sizeof(float));
			break;
		default:
			memcpy(v, run + s->run_off[i], 2 * c * sizeof(float));
			break;
		}
	}
}

/* The softmax of each alpha row, as the forward's mixing weights. */
static void search_mix_weights(struct rxd_search *s)
{
	for (int32_t r = 0; r < s->rows; r++) {
		const float *a = s->alpha + (size_t)r * RXD_NAS_PRIMITIVES;
		float *w = s->mixw + (size_t)r * RXD_NAS_PRIMITIVES, m = a[0], sum = 0;

		for (int k = 1; k < RXD_NAS_PRIMITIVES; k++)
			m = a[k] > m ? a[k] : m;
		for (int k = 0; k < RXD_NAS_PRIMITIVES; k++)
			sum += w[k] = expf(a[k] - m);
		for (int k = 0; k < RXD_NAS_PRIMITIVES; k++)
			w[k] /= sum;
	}
}

/* ---- device buffers ------------------------------------------------------------------ */

static int search_buffer(struct rxd_search *s, cl_mem *m, uint64_t floats, const char *what,
			 struct rxd_error *err)
{
	struct rxd_device *dev = s->ops->dev;
	uint64_t bytes = (floats ? floats : 1) * sizeof(float);
	cl_int e;

	if (bytes > dev->max_alloc_bytes)
		return error_set(err, RXD_S_TOO_BIG, "the search's %s take %llu bytes, more than "
				 "the device allocates at once (%llu)", what,
				 (unsigned long long)bytes,
				 (unsigned long long)dev->max_alloc_bytes), -E2BIG;
	*m = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE, (size_t)bytes, NULL, &e);
	if (!*m)
		return error_set(err, RXD_S_NO_MEMORY, "the search's %s (%llu bytes): %s", what,
				 (unsigned long long)bytes, device_strerror(e)), -ENOMEM;
	return 0;
}

/* Copy bytes between host memory and m at off_floats (write: to the device), waiting. */
static int search_copy(struct rxd_search *s, cl_mem m, uint64_t off_floats, void *host,
		       uint64_t bytes, bool write)
{
	size_t off = (size_t)(off_floats * sizeof(float));
	cl_int e = write ? clEnqueueWriteBuffer(s->ops->dev->queue, m, CL_TRUE, off,
						(size_t)bytes, host, 0, NULL, NULL)
			 : clEnqueueReadBuffer(s->ops->dev->queue, m, CL_TRUE, off,
					       (size_t)bytes, host, 0, NULL, NULL);

	if (e != CL_SUCCESS) {
		log_msg(LOG_ERR, "search: %s %llu bytes: %s", write ? "writing" : "reading",
			(unsigned long long)bytes, device_strerror(e));
		return -EIO;
	}
	return 0;
}

static int search_write(struct rxd_search *s, cl_mem m, uint64_t off_floats, const void *src,
			uint64_t bytes)
{
	return search_copy(s, m, off_floats, (void *)(uintptr_t)src, bytes, true);
}

static int search_read(struct rxd_search *s, cl_mem m, uint64_t off_floats, void *dst,
		       uint64_t bytes)
{
	return search_copy(s, m, off_floats, dst, bytes, false);
}

/* Upload weights (the state_dict blob), momentum, alphas and Adam's moments (NULL: zero). */
static int search_upload(struct rxd_search *s, const float *blob, const float *mom,
			 const float *am, const float *av)
{
	uint64_t na = (uint64_t)s->rows * RXD_NAS_PRIMITIVES;
	float *tr = calloc(s->trainable_floats + 1, sizeof(float));
	float *run = calloc(s->running_floats + 1, sizeof(float));
	float *zero = calloc(na, sizeof(float));
	int ret = -ENOMEM;

	if (!tr || !run || !zero)
		goto out;
	search_split_blob(s, blob, tr, run);
	if ((ret = search_write(s, s->w, 0, tr, s->trainable_floats * sizeof(float))) < 0 ||
	    (ret = search_write(s, s->run, 0, run, s->running_floats * sizeof(float))) < 0)
		goto out;
	if (!mom)
		memset(tr, 0, s->trainable_floats * sizeof(float));
	if ((ret = search_write(s, s->mom, 0, mom ? mom : tr,
				s->trainable_floats * sizeof(float))) < 0 ||
	    (ret = search_write(s, s->alpha_d, 0, s->alpha, na * sizeof(float))) < 0 ||
	    (ret = search_write(s, s->am, 0, am ? am : zero, na * sizeof(float))) < 0 ||
	    (ret = search_write(s, s->av, 0, av ? av : zero, na * sizeof(float))) < 0 ||
	    (ret = search_write(s, s->galpha, 0, zero, na * sizeof(float))) < 0)
		goto out;
	search_mix_weights(s);
out:
	free(tr);
	free(run);
	free(zero);
	return ret;
}

int search_start(struct rxd_search *s, struct rxd_nasops *ops, struct rxd_nasgrad *gr,
		 struct rxd_error *err)
{
	uint64_t na = (uint64_t)s->rows * RXD_NAS_PRIMITIVES;
	uint64_t in = (uint64_t)s->plan.batch * 3 * s->cfg.height * s->cfg.width;
	float *blob;
	int ret;

	s->ops = ops;
	s->gr = gr;
	if ((ret = search_buffer(s, &s->act, s->act_floats, "activations", err)) < 0 ||
	    (ret = search_buffer(s, &s->grad, s->grad_floats, "activation gradients", err)) < 0 ||
	    (ret = search_buffer(s, &s->w, s->trainable_floats, "weights", err)) < 0 ||
	    (ret = search_buffer(s, &s->g, s->trainable_floats, "weight gradients", err)) < 0 ||
	    (ret = search_buffer(s, &s->mom, s->trainable_floats, "momentum buffers", err)) < 0 ||
	    (ret = search_buffer(s, &s->run, s->running_floats, "BN running statistics",
				 err)) < 0 ||
	    (ret = search_buffer(s, &s->stats, s->stats_floats, "BN batch statistics", err)) < 0 ||
	    (ret = search_buffer(s, &s->alpha_d, na, "alphas", err)) < 0 ||
	    (ret = search_buffer(s, &s->galpha, na, "alpha gradients", err)) < 0 ||
	    (ret = search_buffer(s, &s->dalpha, na, "alpha gradients", err)) < 0 ||
	    (ret = search_buffer(s, &s->am, na, "Adam moments", err)) < 0 ||
	    (ret = search_buffer(s, &s->av, na, "Adam moments", err)) < 0 ||
	    (ret = search_buffer(s, &s->xt, in, "training images", err)) < 0 ||
	    (ret = search_buffer(s, &s->xv, in, "validation images", err)) < 0 ||
	    (ret = search_buffer(s, &s->labels, 2 * (uint64_t)s->plan.batch, "labels", err)) < 0 ||
	    (ret = search_buffer(s, &s->out, OUT_FLOATS, "losses", err)) < 0)
		return ret;
	blob = malloc((s->plan.blob_floats + 1) * sizeof(float));
	if (!blob)
		return error_set(err, RXD_S_NO_MEMORY, "out of memory"), -ENOMEM;
	search_init_host(s, blob);
	ret = search_upload(s, blob, NULL, NULL, NULL);
	free(blob);
	if (ret < 0)
		error_set(err, ret == -ENOMEM ? RXD_S_NO_MEMORY : RXD_S_DEVICE,
			  "initialising the search on the device failed");
	s->step = 0;
	return ret;
}

/* ---- forward and backward ------------------------------------------------------------ */

static struct rxd_nas_tensor search_tensor_of(const struct rxd_search *s, int32_t i, bool grad)
{
	const struct search_tensor *t = &s->t[i];
	struct rxd_nas_tensor x = { .mem = grad ? s->grad : s->act,
				    .off = (int64_t)(grad ? t->grad_off : t->act_off),
				    .n = s->plan.batch, .c = t->c, .h = t->h, .w = t->w };

	if (i == s->input && !grad) {
		x.mem = s->x_cur;
		x.off = 0;
	}
	return x;
}

static struct rxd_nas_conv search_conv_of(const struct rxd_search *s, const struct search_op *o)
{
	const struct rxd_nas_step *st = &s->plan.steps[o->step];
	struct rxd_nas_conv cv = { .c_out = st->c_out, .kh = st->kh, .kw = st->kw,
				   .stride_h = st->sh, .stride_w = st->sw, .pad_h = st->ph,
				   .pad_w = st->pw, .dil_h = st->dh, .dil_w = st->dw,
				   .groups = st->groups, .relu_in = st->relu_in,
				   .in_shift = st->in_shift, .weight = s->w,
				   .weight_off = (int64_t)o->w_off };
	return cv;
}

static struct rxd_nasgrad_bn search_bn_of(const struct rxd_search *s, const struct search_bn *b)
{
	struct rxd_nasgrad_bn bn = { .affine = b->affine, .momentum = 0.1f,
				     .eps = RXD_NAS_BN_EPS };

	bn.stats = (struct rxd_nasgrad_vec){ s->stats, (int64_t)b->stats_off };
	bn.running = (struct rxd_nasgrad_vec){ s->run, (int64_t)b->run_off };
	if (b->affine) {
		bn.gamma = (struct rxd_nasgrad_vec){ s->w, (int64_t)b->gamma_off };
		bn.beta = (struct rxd_nasgrad_vec){ s->w, (int64_t)(b->gamma_off + b->c) };
	}
	return bn;
}

static struct rxd_nas_pool search_pool_of(const struct rxd_nas_step *st)
{
	struct rxd_nas_pool p = { .kind = st->kind == RXD_NAS_MAXPOOL ? RXD_NAS_POOL_MAX
								     : RXD_NAS_POOL_AVG,
				  .kh = st->kh, .kw = st->kw, .stride_h = st->sh,
				  .stride_w = st->sw, .pad_h = st->ph, .pad_w = st->pw };
	return p;
}

static uint64_t search_now_ns(void);

/* Forget the piece in flight (its marker; the work itself still runs in order). */
static void search_piece_drop(struct rxd_search *s)
{
	if (s->piece_end)
		clReleaseEvent(s->piece_end);
	s->piece_end = NULL;
}

void search_set_pause(struct rxd_search *s, const struct rxd_search_pause *p)
{
	search_piece_drop(s);
	memset(&s->pause, 0, sizeof(s->pause));
	if (p)
		s->pause = *p;
	s->since_pause = 0;
	s->piece_ns = 0;
}

/* Wait for the event, polled (device_wait: clFinish may wake late on some drivers). */
static int search_wait(struct rxd_search *s, cl_event ev)
{
	cl_int e = device_wait(s->ops->dev, ev);

	if (e != CL_SUCCESS) {
		log_msg(LOG_ERR, "search: waiting for the device: %s", device_strerror(e));
		return -EIO;
	}
	return 0;
}

/* A pass begins: its operations' times are learned in it when they are not yet (and the
 * step has pauses, and the queue profiles). */
static void search_pass_begin(struct rxd_search *s, int pass)
{
	s->pass = pass;
	if (!s->pause.run || (s->learned & (1u << pass)) || !s->ops->dev->profiling)
		return;
	if (!s->op_ns && !(s->op_ns = calloc(SEARCH_PASSES * s->n_op, sizeof(*s->op_ns))))
		return;
	s->learn_ev = calloc(s->n_op + 1, sizeof(*s->learn_ev));
}

/* Drop a learning pass's markers. */
static void search_learn_drop(struct rxd_search *s)
{
	if (!s->learn_ev)
		return;
	for (size_t k = 0; k <= s->n_op; k++)
		if (s->learn_ev[k])
			clReleaseEvent(s->learn_ev[k]);
	free(s->learn_ev);
	s->learn_ev = NULL;
}

/* A pass ends: when it was learning, its last marker is waited for and each operation's
 * time read, from the end of the marker before it to the end of the one after. A marker
 * missing or unreadable leaves the pass unlearned (pieces stay SEARCH_PIECE_OPS). 0, or
 * -EIO when the device failed. */
static int search_pass_end(struct rxd_search *s)
{
	uint64_t *ns = s->op_ns + (size_t)s->pass * s->n_op, longest = 0, prev = 0, end;
	size_t k, at = 0;
	cl_int e;

	if (!s->learn_ev)
		return 0;
	e = clEnqueueMarker(s->ops->dev->queue, &s->learn_ev[s->n_op]);
	if (e == CL_SUCCESS)
		e = clFlush(s->ops->dev->queue);
	if (e == CL_SUCCESS)
		e = device_wait(s->ops->dev, s->learn_ev[s->n_op]);
	if (e != CL_SUCCESS) {
		search_learn_drop(s);
		log_msg(LOG_ERR, "search: waiting for the device: %s", device_strerror(e));
		return -EIO;
	}
	for (k = 0; k <= s->n_op; k++) {
		if (!s->learn_ev[k] ||
		    clGetEventProfilingInfo(s->learn_ev[k], CL_PROFILING_COMMAND_END, sizeof(end),
					    &end, NULL) != CL_SUCCESS ||
		    (k && end < prev))
			break;
		if (k) {
			ns[k - 1] = end - prev;
			if (ns[k - 1] > longest)
				longest = ns[k - 1], at = k - 1;
		}
		prev = end;
	}
	search_learn_drop(s);
	if (k <= s->n_op)
		return 0;
	s->learned |= 1u << s->pass;
	log_msg(LOG_INFO, "search: pass %d learned, its longest operation (%zu of %zu) %.3f ms",
		s->pass, at, s->n_op, (double)longest / 1e6);
	return 0;
}

/* Before the k-th operation a pass runs: at a piece's end, a marker ends it and the host
 * waits for the piece before; then, when the hook wants the device, for this one too,
 * and runs the hook (other jobs on the same queue, which then find the device idle, and
 * whatever they leave there does not touch the search's buffers). 0, or -errno (the step
 * fails). */
static int search_pause(struct rxd_search *s, size_t k)
{
	uint64_t next = 0, t0;
	cl_event ev = NULL;
	bool end;
	cl_int e;
	int ret;

	if (!s->pause.run)
		return 0;
	if (s->learn_ev && clEnqueueMarker(s->ops->dev->queue, &s->learn_ev[k]) != CL_SUCCESS)
		s->learn_ev[k] = NULL; /* the pass stays unlearned */
	if (s->learned & (1u << s->pass)) {
		next = s->op_ns[(size_t)s->pass * s->n_op + k];
		end = s->piece_ns && s->piece_ns + next > SEARCH_PAUSE_NS;
	} else {
		end = s->since_pause >= SEARCH_PIECE_OPS;
	}
	if (!end) {
		s->since_pause++;
		s->piece_ns += next;
		return 0;
	}
	s->since_pause = 1;
	s->piece_ns = next;
	e = clEnqueueMarker(s->ops->dev->queue, &ev);
	if (e == CL_SUCCESS)
		e = clFlush(s->ops->dev->queue);
	if (e != CL_SUCCESS) {
		if (ev)
			clReleaseEvent(ev);
		log_msg(LOG_ERR, "search: marking a piece's end: %s", device_strerror(e));
		return -EIO;
	}
	if (s->piece_end) {
		ret = search_wait(s, s->piece_end);
		search_piece_drop(s);
		if (ret < 0) {
			clReleaseEvent(ev);
			return ret;
		}
	}
	s->piece_end = ev;
	if (s->pause.wanted && !s->pause.wanted(s->pause.arg))
		return 0;
	ret = search_wait(s, ev);
	search_piece_drop(s);
	if (ret < 0)
		return ret;
	t0 = search_now_ns();
	ret = s->pause.run(s->pause.arg);
	s->paused_ns += search_now_ns() - t0;
	return ret;
}

/* The program's forward on x (xt or xv), then the loss against labels (at labels_off)
 * into OUT at out_off, and its gradient into the logits' gradient. */
static int search_forward(struct rxd_search *s, cl_mem x, int64_t labels_off, int64_t out_off)
{
	int ret = 0;

	s->x_cur = x;
	search_pass_begin(s, SEARCH_PASS_FORWARD);
	for (size_t i = 0; i < s->n_op && ret == 0; i++) {
		const struct search_op *o = &s->op[i];
		const struct rxd_nas_step *st = &s->plan.steps[o->step];
		struct rxd_nas_tensor tin = search_tensor_of(s, o->in, false);
		struct rxd_nas_tensor tout = search_tensor_of(s, o->out, false);
		struct rxd_nas_write wr = { .c_off = o->c_off, .accumulate = o->accumulate,
					    .scale = 1.0f };

		if ((ret = search_pause(s, i)) < 0)
			break;
		switch (o->kind) {
		case SOP_CONV: {
			struct rxd_nas_conv cv = search_conv_of(s, o);
			ret = nasops_conv(s->ops, &tin, &cv, &tout, &wr, NULL);
			break;
		}
		case SOP_BN: {
			struct rxd_nasgrad_bn bn = search_bn_of(s, &s->bn[o->bn]);
			ret = nasgrad_bn_forward(s->gr, &tin, &bn, &tout, &wr, NULL);
			break;
		}
		case SOP_POOL: {
			struct rxd_nas_pool p = search_pool_of(st);
			ret = nasops_pool(s->ops, &tin, &p, &tout, &wr, NULL);
			break;
		}
		case SOP_COPY:
			ret = nasops_copy(s->ops, &tin, st->relu_in, &tout, &wr, NULL);
			break;
		case SOP_ZERO:
			ret = nasops_zero(s->ops, st->c_out, &tout, &wr, NULL);
			break;
		case SOP_GAP:
			ret = nasops_gap(s->ops, &tin, &tout, &wr, NULL);
			break;
		case SOP_LINEAR: {
			struct rxd_nas_linear l = { .out = st->c_out, .weight = s->w,
						    .weight_off = (int64_t)o->w_off, .bias = s->w,
						    .bias_off = (int64_t)(o->w_off +
									  (uint64_t)st->c_out *
										  st->c_in) };
			ret = nasops_linear(s->ops, &tin, &l, &tout, &wr, NULL);
			break;
		}
		case SOP_MIX:
			wr.scale = s->mixw[o->row * RXD_NAS_PRIMITIVES + o->prim];
			ret = nasops_copy(s->ops, &tin, false, &tout, &wr, NULL);
			break;
		default:
			ret = -EINVAL;
		}
	}
	if (ret == 0)
		ret = search_pass_end(s);
	else
		search_learn_drop(s);
	if (ret == 0) {
		struct rxd_nas_tensor z = search_tensor_of(s, s->output, false);
		struct rxd_nas_tensor dz = search_tensor_of(s, s->output, true);
		const struct rxd_nas_write wr = { .c_off = 0, .scale = 1.0f };
		const struct rxd_nasgrad_vec lab = { s->labels, labels_off };
		const struct rxd_nasgrad_vec out = { s->out, out_off };
		const struct rxd_nasgrad_dst d = { dz.mem, dz.off, false };

		ret = nasgrad_xent(s->gr, &z, s->cfg.classes, &wr, &lab, &d, &out, NULL);
	}
	return ret;
}

/* Where the backward of an op puts its input's gradient (NULL for the images). */
static struct rxd_nasgrad_dst search_dx(struct rxd_search *s, int32_t in)
{
	struct rxd_nasgrad_dst d = { NULL, 0, false };

	if (in == s->input)
		return d;
	d.mem = s->grad;
	d.off = (int64_t)s->t[in].grad_off;
	d.accumulate = s->grad_written[in];
	s->grad_written[in] = true;
	return d;
}

/* The backward of the last forward, from the logits' gradient: the weights' gradients
 * into g when want_w, the alphas' raw gradients (sum dy * O) into galpha when want_alpha.
 * Long: one switch over the op kinds, mirroring search_forward. */
static int search_backward(struct rxd_search *s, bool want_w, bool want_alpha)
{
	int ret = 0;

	memset(s->grad_written, 0, s->n_t * sizeof(bool));
	memset(s->alpha_written, 0, (size_t)s->rows * RXD_NAS_PRIMITIVES * sizeof(bool));
	s->grad_written[s->output] = true;
	search_pass_begin(s, want_w ? SEARCH_PASS_BACKWARD_W : SEARCH_PASS_BACKWARD_ALPHA);
	for (size_t i = s->n_op; i-- > 0 && ret == 0;) {
		const struct search_op *o = &s->op[i];
		const struct rxd_nas_step *st = &s->plan.steps[o->step];
		struct rxd_nas_tensor tin = search_tensor_of(s, o->in, false);
		struct rxd_nas_tensor dy = search_tensor_of(s, o->out, true);
		struct rxd_nas_write wr = { .c_off = o->c_off, .accumulate = o->accumulate,
					    .scale = 1.0f };
		struct rxd_nasgrad_dst dx, dw = { NULL, 0, false };

		if (!s->grad_written[o->out]) {
			ret = -EINVAL; /* laid out so that it cannot happen */
			break;
		}
		if ((ret = search_pause(s, s->n_op - 1 - i)) < 0)
			break;
		if (o->kind == SOP_ZERO)
			continue;
		if (o->kind == SOP_MIX) {
			int32_t a = o->row * RXD_NAS_PRIMITIVES + o->prim;

			wr.scale = s->mixw[a];
			if (want_alpha) {
				struct rxd_nasgrad_dst g = { s->galpha, a, s->alpha_written[a] };

				s->alpha_written[a] = true;
				if ((ret = nasgrad_dot(s->gr, &dy, &wr, &tin, &g, NULL)) < 0)
					break;
			}
		}
		dx = search_dx(s, o->in);
		switch (o->kind) {
		case SOP_CONV: {
			struct rxd_nas_conv cv = search_conv_of(s, o);

			if (want_w)
				dw = (struct rxd_nasgrad_dst){ s->g, (int64_t)o->w_off, false };
			if (dx.mem || dw.mem)
				ret = nasgrad_conv(s->gr, &tin, &cv, &dy, &wr, &dx, &dw, NULL);
			break;
		}
		case SOP_BN: {
			const struct search_bn *b = &s->bn[o->bn];
			struct rxd_nasgrad_bn bn = search_bn_of(s, b);
			struct rxd_nasgrad_dst dg = { NULL, 0, false }, db = { NULL, 0, false };

			if (want_w && b->affine) {
				dg = (struct rxd_nasgrad_dst){ s->g, (int64_t)b->gamma_off, false };
				db = (struct rxd_nasgrad_dst){ s->g, (int64_t)(b->gamma_off + b->c),
							       false };
			}
			ret = nasgrad_bn_backward(s->gr, &tin, &bn, &dy, &wr, &dx, &dg, &db, NULL);
			break;
		}
		case SOP_POOL: {
			struct rxd_nas_pool p = search_pool_of(st);
			ret = nasgrad_pool(s->gr, &tin, &p, &dy, &wr, &dx, NULL);
			break;
		}
		case SOP_COPY:
			ret = nasgrad_relu(s->gr, &tin, st->relu_in, &dy, &wr, &dx, NULL);
			break;
		case SOP_MIX:
			ret = nasgrad_relu(s->gr, &tin, false, &dy, &wr, &dx, NULL);
			break;
		case SOP_GAP:
			ret = nasgrad_gap(s->gr, &tin, &dy, &wr, &dx, NULL);
			break;
		case SOP_LINEAR: {
			uint64_t b_off = o->w_off + (uint64_t)st->c_out * st->c_in;
			struct rxd_nas_linear l = { .out = st->c_out, .weight = s->w,
						    .weight_off = (int64_t)o->w_off, .bias = s->w,
						    .bias_off = (int64_t)b_off };
			struct rxd_nasgrad_dst db = { NULL, 0, false };

			if (want_w) {
				dw = (struct rxd_nasgrad_dst){ s->g, (int64_t)o->w_off, false };
				db = (struct rxd_nasgrad_dst){ s->g, (int64_t)b_off, false };
			}
			ret = nasgrad_linear(s->gr, &tin, &l, &dy, &wr, &dx, &dw, &db, NULL);
			break;
		}
		default:
			ret = -EINVAL;
		}
	}
	if (ret == 0)
		return search_pass_end(s);
	search_learn_drop(s);
	return ret;
}

/* ---- one step ------------------------------------------------------------------------ */

static uint64_t search_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Wait for the queue and add the time since *t0 to *acc, less the time other jobs took
 * in the pauses meanwhile. */
static int search_lap(struct rxd_search *s, uint64_t *t0, uint64_t *acc)
{
	cl_int e = device_finish(s->ops->dev, s->ops->dev->queue);
	uint64_t t = search_now_ns(), spent = t - *t0;

	*acc += spent > s->paused_ns ? spent - s->paused_ns : 0;
	s->paused_ns = 0;
	*t0 = t;
	if (e != CL_SUCCESS) {
		log_msg(LOG_ERR, "search: waiting for the device: %s", device_strerror(e));
		return -EIO;
	}
	return 0;
}

static int search_check_batch(const struct rxd_search *s, const struct rxd_search_batch *b,
			      const char *which, struct rxd_error *err)
{
	if (!b || !b->images || !b->labels)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "the %s batch is missing", which),
		       -EINVAL;
	for (int32_t i = 0; i < s->plan.batch; i++)
		if (b->labels[i] < 0 || b->labels[i] >= s->cfg.classes)
			return error_set(err, RXD_S_INVALID_ARGUMENT, "label %d of the %s batch "
					 "is %d; labels must be 0 to %d", i, which, b->labels[i],
					 s->cfg.classes - 1), -EINVAL;
	return 0;
}

/* Upload a batch's images into x and its labels at labels_off. */
static int search_put_batch(struct rxd_search *s, const struct rxd_search_batch *b, cl_mem x,
			    uint64_t labels_off)
{
	uint64_t in = (uint64_t)s->plan.batch * 3 * s->cfg.height * s->cfg.width;
	int ret = search_write(s, x, 0, b->images, in * sizeof(float));

	return ret < 0 ? ret
		       : search_write(s, s->labels, labels_off, b->labels,
				      (uint64_t)s->plan.batch * sizeof(int32_t));
}

/* The calls that need the device state refuse a search that has not started. */
static int search_check_started(const struct rxd_search *s, struct rxd_error *err)
{
	if (!s->act)
		return error_set(err, RXD_S_INTERNAL, "the search has not started on a device"),
		       -EINVAL;
	return 0;
}

static int search_fail(struct rxd_error *err, int ret, const char *what)
{
	error_set(err, ret == -ENOMEM ? RXD_S_NO_MEMORY : ret == -EIO ? RXD_S_DEVICE
							: RXD_S_INTERNAL,
		  "the search step failed in %s (%s)", what, strerror(-ret));
	return ret;
}

static double search_lr(const struct rxd_search_config *c, int32_t epoch)
{
	/* CosineAnnealingLR(T_max = epochs, eta_min = lr_min), stepped at each epoch's start. */
	return c->lr_min + (c->lr - c->lr_min) * (1 + cos(SEARCH_PI * epoch / c->epochs)) / 2;
}

int search_step(struct rxd_search *s, const struct rxd_search_batch *train,
		const struct rxd_search_batch *valid, struct rxd_search_result *r,
		struct rxd_error *err)
{
	const uint64_t na = (uint64_t)s->rows * RXD_NAS_PRIMITIVES;
	const int64_t epoch64 = (int64_t)(s->step / (uint64_t)s->cfg.steps_per_epoch);
	const int32_t epoch = epoch64 < s->cfg.epochs ? (int32_t)epoch64 : s->cfg.epochs;
	struct rxd_nasgrad_vec va = { s->alpha_d, 0 }, vg = { s->galpha, 0 };
	struct rxd_nasgrad_vec vd = { s->dalpha, 0 }, vm = { s->am, 0 }, vv = { s->av, 0 };
	struct rxd_nasgrad_vec vw = { s->w, 0 }, vgw = { s->g, 0 }, vb = { s->mom, 0 };
	struct rxd_nasgrad_vec vs = { s->out, OUT_SUMSQ };
	struct rxd_nasgrad_dst dd = { s->dalpha, 0, false };
	struct rxd_nasgrad_adam adam = { s->cfg.arch_lr, s->cfg.arch_beta1, s->cfg.arch_beta2,
					 s->cfg.arch_eps, s->cfg.arch_weight_decay,
					 (int64_t)s->step + 1 };
	struct rxd_nasgrad_sgd sgd = { 0 };
	float out[OUT_FLOATS];
	uint64_t t0;
	int ret;

	memset(r, 0, sizeof(*r));
	if ((ret = search_check_started(s, err)) < 0 ||
	    (ret = search_check_batch(s, train, "training", err)) < 0 ||
	    (ret = search_check_batch(s, valid, "validation", err)) < 0)
		return ret;
	r->lr = search_lr(&s->cfg, epoch);
	sgd.lr = (float)r->lr;
	sgd.momentum = (float)s->cfg.momentum;
	sgd.weight_decay = (float)s->cfg.weight_decay;
	t0 = search_now_ns();
	if ((ret = search_put_batch(s, valid, s->xv, 0)) < 0 ||
	    (ret = search_put_batch(s, train, s->xt, (uint64_t)s->plan.batch)) < 0)
		return search_fail(err, ret, "the upload");
	/* The architecture step: the alphas' gradient on the validation batch at the
	 * current weights (first order), then Adam. */
	if ((ret = search_forward(s, s->xv, 0, OUT_VALID)) < 0 ||
	    (ret = search_lap(s, &t0, &r->forward_ns)) < 0)
		return search_fail(err, ret, "the architecture step's forward");
	if ((ret = search_backward(s, false, true)) < 0 ||
	    (ret = nasgrad_alpha(s->gr, &va, &vg, s->rows, RXD_NAS_PRIMITIVES, &dd, NULL)) < 0 ||
	    (ret = search_lap(s, &t0, &r->backward_ns)) < 0)
		return search_fail(err, ret, "the architecture step's backward");
	if ((ret = nasgrad_adam(s->gr, &va, &vd, &vm, &vv, (int64_t)na, &adam, NULL)) < 0 ||
	    (ret = search_read(s, s->alpha_d, 0, s->alpha, na * sizeof(float))) < 0 ||
	    (ret = search_lap(s, &t0, &r->update_ns)) < 0)
		return search_fail(err, ret, "the architecture step's update");
	search_mix_weights(s);
	/* The weight step on the training batch, with the new alphas. */
	if ((ret = search_forward(s, s->xt, s->plan.batch, OUT_TRAIN)) < 0 ||
	    (ret = search_lap(s, &t0, &r->forward_ns)) < 0)
		return search_fail(err, ret, "the weight step's forward");
	if ((ret = search_backward(s, true, false)) < 0 ||
	    (ret = search_lap(s, &t0, &r->backward_ns)) < 0)
		return search_fail(err, ret, "the weight step's backward");
	if ((ret = nasgrad_clip_norm(s->gr, &vgw, (int64_t)s->trainable_floats,
				     (float)s->cfg.grad_clip, &vs, NULL)) < 0 ||
	    (ret = nasgrad_sgd(s->gr, &vw, &vgw, &vb, (int64_t)s->trainable_floats, &sgd,
			       NULL)) < 0 ||
	    (ret = search_read(s, s->out, 0, out, sizeof(out))) < 0 ||
	    (ret = search_lap(s, &t0, &r->update_ns)) < 0)
		return search_fail(err, ret, "the weight step's update");
	s->step++;
	r->step = s->step;
	r->epoch = epoch;
	r->valid_loss = out[OUT_VALID];
	r->valid_acc = out[OUT_VALID + 1] / (float)s->plan.batch;
	r->train_loss = out[OUT_TRAIN];
	r->train_acc = out[OUT_TRAIN + 1] / (float)s->plan.batch;
	r->grad_norm = sqrtf(out[OUT_SUMSQ]);
	return 0;
}

int search_gradients(struct rxd_search *s, const struct rxd_search_batch *batch, float *loss,
		     float *dweights, float *dalpha, struct rxd_error *err)
{
	struct rxd_nasgrad_vec va = { s->alpha_d, 0 }, vg = { s->galpha, 0 };
	struct rxd_nasgrad_dst dd = { s->dalpha, 0, false };
	float out[2];
	int ret;

	if ((ret = search_check_started(s, err)) < 0 ||
	    (ret = search_check_batch(s, batch, "given", err)) < 0)
		return ret;
	if ((ret = search_put_batch(s, batch, s->xt, (uint64_t)s->plan.batch)) < 0 ||
	    (ret = search_forward(s, s->xt, s->plan.batch, OUT_TRAIN)) < 0 ||
	    (ret = search_backward(s, dweights != NULL, dalpha != NULL)) < 0 ||
	    (dalpha && (ret = nasgrad_alpha(s->gr, &va, &vg, s->rows, RXD_NAS_PRIMITIVES, &dd,
					    NULL)) < 0) ||
	    (ret = search_read(s, s->out, OUT_TRAIN, out, sizeof(out))) < 0 ||
	    (dweights && (ret = search_read(s, s->g, 0, dweights,
					    s->trainable_floats * sizeof(float))) < 0) ||
	    (dalpha && (ret = search_read(s, s->dalpha, 0, dalpha,
					  (uint64_t)s->rows * RXD_NAS_PRIMITIVES *
						  sizeof(float))) < 0))
		return search_fail(err, ret, "the gradients");
	*loss = out[0];
	return 0;
}

/* ---- accessors, the genotype --------------------------------------------------------- */

int32_t search_edges(const struct rxd_search *s)
{
	return s->edges;
}

uint64_t search_trainable_floats(const struct rxd_search *s)
{
	return s->trainable_floats;
}

uint64_t search_steps_done(const struct rxd_search *s)
{
	return s->step;
}

const struct rxd_nas_plan *search_plan(const struct rxd_search *s)
{
	return &s->plan;
}

void search_alphas(const struct rxd_search *s, float *normal, float *reduce)
{
	size_t n = (size_t)s->edges * RXD_NAS_PRIMITIVES;

	memcpy(normal, s->alpha, n * sizeof(float));
	memcpy(reduce, s->alpha + n, n * sizeof(float));
}

int search_set_alphas(struct rxd_search *s, const float *normal, const float *reduce)
{
	size_t n = (size_t)s->edges * RXD_NAS_PRIMITIVES;

	for (size_t k = 0; k < n; k++)
		if (!isfinite(normal[k]) || !isfinite(reduce[k]))
			return -EINVAL;
	memcpy(s->alpha, normal, n * sizeof(float));
	memcpy(s->alpha + n, reduce, n * sizeof(float));
	search_mix_weights(s);
	return s->alpha_d ? search_write(s, s->alpha_d, 0, s->alpha, 2 * n * sizeof(float)) : 0;
}

static void search_derive_cell(const float *alpha, int32_t steps, int32_t multiplier,
			       struct rxd_genotype_cell *c)
{
	int32_t start = 0;

	memset(c, 0, sizeof(*c));
	c->n_nodes = (uint8_t)steps;
	for (int32_t i = 0; i < steps; i++) {
		int32_t n = i + 2, best[2] = { -1, -1 }, best_op[2] = { 0, 0 };
		float best_w[2] = { -1, -1 };

		for (int32_t j = 0; j < n; j++) {
			const float *a = alpha + (size_t)(start + j) * RXD_NAS_PRIMITIVES;
			float w[RXD_NAS_PRIMITIVES], m = a[0], sum = 0;
			int32_t k_best = 1;

			/* Softmax in float, as the reference's F.softmax. */
			for (int k = 1; k < RXD_NAS_PRIMITIVES; k++)
				m = a[k] > m ? a[k] : m;
			for (int k = 0; k < RXD_NAS_PRIMITIVES; k++)
				sum += w[k] = expf(a[k] - m);
			for (int k = 0; k < RXD_NAS_PRIMITIVES; k++)
				w[k] /= sum;
			for (int k = 2; k < RXD_NAS_PRIMITIVES; k++)
				if (w[k] > w[k_best])
					k_best = k;
			/* A stable sort by decreasing strength: a later edge displaces an
			 * earlier one only when strictly stronger. */
			if (w[k_best] > best_w[0]) {
				best[1] = best[0], best_op[1] = best_op[0], best_w[1] = best_w[0];
				best[0] = j, best_op[0] = k_best, best_w[0] = w[k_best];
			} else if (w[k_best] > best_w[1]) {
				best[1] = j, best_op[1] = k_best, best_w[1] = w[k_best];
			}
		}
		for (int e = 0; e < 2; e++) {
			c->op[2 * i + e] = (uint8_t)best_op[e];
			c->input[2 * i + e] = (uint8_t)best[e];
		}
		start += n;
	}
	c->n_concat = (uint8_t)multiplier;
	for (int32_t k = 0; k < multiplier; k++)
		c->concat[k] = (uint8_t)(2 + steps - multiplier + k);
}

void search_derive(const float *alpha_normal, const float *alpha_reduce, int32_t steps,
		   int32_t multiplier, struct rxd_genotype *g)
{
	search_derive_cell(alpha_normal, steps, multiplier, &g->normal);
	search_derive_cell(alpha_reduce, steps, multiplier, &g->reduce);
}

void search_genotype(const struct rxd_search *s, struct rxd_genotype *g)
{
	search_derive(s->alpha, s->alpha + (size_t)s->edges * RXD_NAS_PRIMITIVES, s->cfg.steps,
		      s->cfg.multiplier, g);
}

/* ---- the state blob ------------------------------------------------------------------ */

/* Header fields, at these byte offsets; everything little-endian. */
enum {
	SH_MAGIC = 0, SH_VERSION = 8, SH_HEADER = 12, SH_C = 16, SH_LAYERS = 20, SH_CLASSES = 24,
	SH_HEIGHT = 28, SH_WIDTH = 32, SH_STEPS = 36, SH_MULT = 40, SH_STEP = 48, SH_RNG = 56,
	SH_BLOB = 64, SH_TRAIN = 72, SH_ALPHA = 80, SH_HASH = 88
};
static const char search_magic[8] = "RXDSRCH";

uint64_t search_state_bytes(const struct rxd_search *s)
{
	uint64_t na = (uint64_t)s->rows * RXD_NAS_PRIMITIVES;

	return RXD_SEARCH_STATE_HEADER +
	       (s->plan.blob_floats + s->trainable_floats + 3 * na) * sizeof(float);
}

/* FNV-1a, 64 bits, of the floats after the header: a damaged file says so. */
static uint64_t search_hash(const uint8_t *p, uint64_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (uint64_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static void put32(uint8_t *b, int off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[off + i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *b, int off, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[off + i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *b, int off)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v |= (uint32_t)b[off + i] << (8 * i);
	return v;
}

static uint64_t get64(const uint8_t *b, int off)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)b[off + i] << (8 * i);
	return v;
}

/* Floats are stored as the host has them: every host the daemon runs on is little-endian,
 * which search_state_save checks. */
static bool search_little_endian(void)
{
	const uint32_t one = 1;

	return *(const uint8_t *)&one == 1;
}

int search_state_save(struct rxd_search *s, void *buf, size_t len, struct rxd_error *err)
{
	uint64_t na = (uint64_t)s->rows * RXD_NAS_PRIMITIVES;
	uint8_t *b = buf;
	float *blob, *mom, *tr = NULL, *run = NULL;
	int ret;

	if ((ret = search_check_started(s, err)) < 0)
		return ret;
	if (len < search_state_bytes(s))
		return error_set(err, RXD_S_INVALID_ARGUMENT, "the state takes %llu bytes; %zu "
				 "were given", (unsigned long long)search_state_bytes(s), len),
		       -EINVAL;
	if (!search_little_endian())
		return error_set(err, RXD_S_INTERNAL, "search states are little-endian only"),
		       -EINVAL;
	memset(b, 0, RXD_SEARCH_STATE_HEADER);
	memcpy(b + SH_MAGIC, search_magic, 8);
	put32(b, SH_VERSION, RXD_SEARCH_STATE_VERSION);
	put32(b, SH_HEADER, RXD_SEARCH_STATE_HEADER);
	put32(b, SH_C, (uint32_t)s->cfg.C);
	put32(b, SH_LAYERS, (uint32_t)s->cfg.layers);
	put32(b, SH_CLASSES, (uint32_t)s->cfg.classes);
	put32(b, SH_HEIGHT, (uint32_t)s->cfg.height);
	put32(b, SH_WIDTH, (uint32_t)s->cfg.width);
	put32(b, SH_STEPS, (uint32_t)s->cfg.steps);
	put32(b, SH_MULT, (uint32_t)s->cfg.multiplier);
	put64(b, SH_STEP, s->step);
	put64(b, SH_RNG, s->rng);
	put64(b, SH_BLOB, s->plan.blob_floats);
	put64(b, SH_TRAIN, s->trainable_floats);
	put64(b, SH_ALPHA, na);
	blob = (float *)(b + RXD_SEARCH_STATE_HEADER);
	mom = blob + s->plan.blob_floats;
	tr = malloc((s->trainable_floats + 1) * sizeof(float));
	run = malloc((s->running_floats + 1) * sizeof(float));
	if (!tr || !run) {
		ret = (error_set(err, RXD_S_NO_MEMORY, "out of memory"), -ENOMEM);
		goto out;
	}
	if ((ret = search_read(s, s->w, 0, tr, s->trainable_floats * sizeof(float))) < 0 ||
	    (ret = search_read(s, s->run, 0, run, s->running_floats * sizeof(float))) < 0 ||
	    (ret = search_read(s, s->mom, 0, mom, s->trainable_floats * sizeof(float))) < 0 ||
	    (ret = search_read(s, s->am, 0, mom + s->trainable_floats + na,
			       na * sizeof(float))) < 0 ||
	    (ret = search_read(s, s->av, 0, mom + s->trainable_floats + 2 * na,
			       na * sizeof(float))) < 0) {
		error_set(err, RXD_S_DEVICE, "reading the search's state from the device failed");
		goto out;
	}
	search_join_blob(s, tr, run, blob);
	memcpy(mom + s->trainable_floats, s->alpha, na * sizeof(float));
	put64(b, SH_HASH, search_hash(b + RXD_SEARCH_STATE_HEADER,
				      search_state_bytes(s) - RXD_SEARCH_STATE_HEADER));
out:
	free(tr);
	free(run);
	return ret;
}

int search_state_load(struct rxd_search *s, const void *buf, size_t len,
		      struct rxd_error *err)
{
	uint64_t na = (uint64_t)s->rows * RXD_NAS_PRIMITIVES, want = search_state_bytes(s);
	const uint8_t *b = buf;
	const float *blob, *mom;
	float *copy;
	int ret;

	if (len < RXD_SEARCH_STATE_HEADER || memcmp(b + SH_MAGIC, search_magic, 8) != 0)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "this is not a search state"),
		       -EINVAL;
	if (get32(b, SH_VERSION) != RXD_SEARCH_STATE_VERSION ||
	    get32(b, SH_HEADER) != RXD_SEARCH_STATE_HEADER)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "the search state is version %u; "
				 "this daemon reads version %d", get32(b, SH_VERSION),
				 RXD_SEARCH_STATE_VERSION), -EINVAL;
	if ((int32_t)get32(b, SH_C) != s->cfg.C || (int32_t)get32(b, SH_LAYERS) != s->cfg.layers ||
	    (int32_t)get32(b, SH_CLASSES) != s->cfg.classes ||
	    (int32_t)get32(b, SH_HEIGHT) != s->cfg.height ||
	    (int32_t)get32(b, SH_WIDTH) != s->cfg.width ||
	    (int32_t)get32(b, SH_STEPS) != s->cfg.steps ||
	    (int32_t)get32(b, SH_MULT) != s->cfg.multiplier)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "the search state is of another "
				 "network (C %u, layers %u, classes %u, %ux%u, steps %u, "
				 "multiplier %u)", get32(b, SH_C), get32(b, SH_LAYERS),
				 get32(b, SH_CLASSES), get32(b, SH_HEIGHT), get32(b, SH_WIDTH),
				 get32(b, SH_STEPS), get32(b, SH_MULT)), -EINVAL;
	if (len != want || get64(b, SH_BLOB) != s->plan.blob_floats ||
	    get64(b, SH_TRAIN) != s->trainable_floats || get64(b, SH_ALPHA) != na)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "the search state is %zu bytes; "
				 "this network's takes %llu", len, (unsigned long long)want),
		       -EINVAL;
	if (get64(b, SH_HASH) != search_hash(b + RXD_SEARCH_STATE_HEADER,
					     want - RXD_SEARCH_STATE_HEADER))
		return error_set(err, RXD_S_INVALID_ARGUMENT, "the search state is damaged (its "
				 "checksum does not match)"), -EINVAL;
	if ((ret = search_check_started(s, err)) < 0)
		return ret;
	/* The floats may be unaligned in buf: copy them out. */
	copy = malloc(want - RXD_SEARCH_STATE_HEADER);
	if (!copy)
		return error_set(err, RXD_S_NO_MEMORY, "out of memory"), -ENOMEM;
	memcpy(copy, b + RXD_SEARCH_STATE_HEADER, want - RXD_SEARCH_STATE_HEADER);
	blob = copy;
	mom = blob + s->plan.blob_floats;
	for (uint64_t k = 0; k < na; k++)
		if (!isfinite(mom[s->trainable_floats + k])) {
			free(copy);
			return error_set(err, RXD_S_INVALID_ARGUMENT, "the search state's alpha "
					 "%llu is not finite", (unsigned long long)k), -EINVAL;
		}
	memcpy(s->alpha, mom + s->trainable_floats, na * sizeof(float));
	ret = search_upload(s, blob, mom, mom + s->trainable_floats + na,
			    mom + s->trainable_floats + 2 * na);
	free(copy);
	if (ret < 0)
		return error_set(err, RXD_S_DEVICE, "writing the search's state to the device "
				 "failed"), ret;
	s->step = get64(b, SH_STEP);
	s->rng = get64(b, SH_RNG);
	return 0;
}

void search_free(struct rxd_search *s)
{
	if (!s)
		return;
	cl_mem *mems[] = { &s->act, &s->grad, &s->w, &s->g, &s->mom, &s->run, &s->stats,
			   &s->alpha_d, &s->galpha, &s->dalpha, &s->am, &s->av, &s->xt, &s->xv,
			   &s->labels, &s->out };

	if (s->ops)
		clFinish(s->ops->dev->queue);
	search_piece_drop(s);
	search_learn_drop(s);
	free(s->op_ns);
	for (size_t i = 0; i < sizeof(mems) / sizeof(mems[0]); i++)
		if (*mems[i])
			clReleaseMemObject(*mems[i]);
	nas_plan_free(&s->plan);
	free(s->t);
	free(s->op);
	free(s->bn);
	free(s->tr_off);
	free(s->run_off);
	free(s->alpha);
	free(s->mixw);
	free(s->grad_written);
	free(s->alpha_written);
	free(s);
}

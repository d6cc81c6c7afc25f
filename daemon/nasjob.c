/* nasjob.c: NAS evaluation jobs: the request turned into a plan and its weights, the run
 * on the device (in batch pieces that fit the budget, with timings), and the reply. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* A job stops starting runs after this long (at least one timed run is made), so that a
 * big network with many repeats cannot hold the device worker near the hang timeout. */
#define NAS_MAX_JOB_NS (30ull * 1000000000ull)

struct rxd_nas_job {
	struct rxd_nas_config cfg;
	float *alpha;                  /* owned copies of the supernet's alphas */
	struct rxd_nas_plan plan;      /* of the whole batch: counts and the reply's figures */
	/* The plans run (nas_job_plan, at admission): pieces of piece_plan.batch images and
	 * the rest of the batch (rest_plan, when there is one). */
	struct rxd_nas_plan piece_plan, rest_plan;
	struct rxd_nas_cache *cache;   /* where plans come from (NULL: built every time) */
	const float *blob;             /* into the request, or blob_owned */
	float *blob_owned;
	const float *input;            /* into the request, or input_owned */
	float *input_owned;
	uint64_t weight_seed, input_seed; /* made on the device thread when not sent */
	uint32_t warmup, repeat;
	bool want_logits;
	bool want_breakdown;           /* every step timed by events */
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
	uint64_t *unprof_ns;           /* profiled: runs without the per-step events */
	uint32_t unprof_runs;
	bool steps_logged;             /* the first profiled run's steps went to the debug log */
	struct rxd_nas_rec rec[2];     /* the launches of the piece plans (nas_run_piece) */
	uint64_t peak_bytes, act_bytes;
	/* nas_job_result's parts and the cells' names */
	struct rxd_nas_part *parts;
	char (*names)[24];
};

uint64_t nas_job_flops(const struct rxd_nas_job *nj)
{
	/* 2 FLOPs per multiply-add, every image, every run (with a breakdown, the timed runs
	 * twice: with and without the events); saturating, for the scheduler. */
	uint64_t runs = (uint64_t)nj->warmup + nj->repeat * (nj->want_breakdown ? 2u : 1u);
	uint64_t f = 2 * nj->plan.macs;

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
	nas_plan_free(&nj->piece_plan);
	nas_plan_free(&nj->rest_plan);
	free(nj->alpha);
	free(nj->blob_owned);
	free(nj->input_owned);
	free(nj->logits);
	free(nj->run_ns);
	free(nj->unprof_ns);
	nasops_rec_free(&nj->rec[0]);
	nasops_rec_free(&nj->rec[1]);
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

/* Long: every bound on a NAS request (the network's shape, the batch, the weights, the
 * input, the reply's size), each with its own sentence, in the order they depend on one
 * another (the plan gives the weights' and the logits' sizes). */
int nas_job_prepare(const struct rxd_nas_eval *ev, const struct rxd_limits *lim,
		    uint64_t max_reply_bytes, struct rxd_nas_cache *cache,
		    struct rxd_nas_job **out, struct rxd_error *err)
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
	nj->want_breakdown = ev->want_breakdown;
	nj->cache = cache;
	rc = nascache_build(cache, c, &nj->plan, err);
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

/* A CONV step's convolution, without its buffers (the caller sets weight and bias). */
static void nas_step_conv(const struct rxd_nas_step *s, struct rxd_nas_conv *cv)
{
	memset(cv, 0, sizeof(*cv));
	cv->c_out = s->c_out;
	cv->kh = s->kh;
	cv->kw = s->kw;
	cv->stride_h = s->sh;
	cv->stride_w = s->sw;
	cv->pad_h = s->ph;
	cv->pad_w = s->pw;
	cv->dil_h = s->dh;
	cv->dil_w = s->dw;
	cv->groups = s->groups;
	cv->relu_in = s->relu_in;
	cv->in_shift = s->in_shift;
}

/* The im2col scratch p's convolutions need: the most any one takes (nasops' rule). */
static uint64_t nas_scratch_bytes(const struct rxd_nasops *ops, const struct rxd_nas_plan *p)
{
	uint64_t most = 0;

	for (size_t i = 0; i < p->n_steps; i++) {
		const struct rxd_nas_step *s = &p->steps[i];
		struct rxd_nas_conv cv;
		uint64_t bytes;

		if (s->kind != RXD_NAS_CONV)
			continue;
		nas_step_conv(s, &cv);
		bytes = nasops_conv_scratch_bytes(ops, p->batch, p->tensors[s->in].c, &cv, s->h_out,
						  s->w_out);
		if (bytes > most)
			most = bytes;
	}
	return most;
}

/* The plan for a piece of batch images. */
static int nas_piece_plan(const struct rxd_nas_job *nj, int32_t batch, struct rxd_nas_plan *p,
			  struct rxd_error *err)
{
	struct rxd_nas_config c = nj->cfg;

	c.batch = batch;
	return nascache_build(nj->cache, &c, p, err);
}

int32_t nas_job_batch(const struct rxd_nas_job *nj)
{
	return nj->cfg.batch;
}

int nas_job_plan(struct rxd_nas_job *nj, const struct rxd_nasops *ops, int32_t piece,
		 struct rxd_nas_need *need, struct rxd_error *err)
{
	struct rxd_nas_plan *pp = &nj->piece_plan, *pr = &nj->rest_plan;
	int32_t rest = nj->cfg.batch % piece;
	uint64_t wbytes;
	int rc;

	memset(need, 0, sizeof(*need));
	nas_plan_free(pp);
	nas_plan_free(pr);
	/* The whole batch's plan was built on the loop thread: a failure now (nas_build's
	 * sentence in err) is out of memory or a bug. */
	if ((rc = nas_piece_plan(nj, piece, pp, err)) < 0 ||
	    (rest && (rc = nas_piece_plan(nj, rest, pr, err)) < 0))
		return err->status = rc == -ENOMEM ? RXD_S_NO_MEMORY : RXD_S_INTERNAL;
	wbytes = pp->weight_floats * sizeof(float);
	if (pp->weight_floats > INT32_MAX || wbytes > ops->dev->max_alloc_bytes) {
		/* No piece of the batch makes the weights smaller. */
		return error_set(err, RXD_S_TOO_BIG,
				 "the network's weights (%llu bytes) are more than one device "
				 "buffer holds (%llu bytes, and 2^31 floats)",
				 (unsigned long long)wbytes,
				 (unsigned long long)ops->dev->max_alloc_bytes);
	}
	need->weight_bytes = wbytes;
	need->arena_bytes = (pp->arena_floats > pr->arena_floats ? pp->arena_floats
								  : pr->arena_floats) *
			    sizeof(float);
	/* The rest is smaller than a piece: its columns are never more. */
	need->scratch_bytes = nas_scratch_bytes(ops, pp);
	return RXD_S_OK;
}

static int nas_enqueue_step(struct rxd_nasops *ops, const struct rxd_nas_plan *p,
			    const struct rxd_nas_step *s, cl_mem arena, cl_mem wbuf,
			    struct rxd_nas_span *span)
{
	const struct rxd_nas_ptensor *ti = &p->tensors[s->in], *to = &p->tensors[s->out];
	struct rxd_nas_tensor x = { arena, (int64_t)ti->offset, p->batch, ti->c, ti->h, ti->w };
	struct rxd_nas_tensor y = { arena, (int64_t)to->offset, p->batch, to->c, to->h, to->w };
	struct rxd_nas_write wr = { s->c_off, s->accumulate, s->scale, NULL, 0, 0.0f };
	struct rxd_nas_tensor a;

	if (s->add >= 0) {
		const struct rxd_nas_ptensor *ta = &p->tensors[s->add];

		a = (struct rxd_nas_tensor){ arena, (int64_t)ta->offset, p->batch, ta->c, ta->h,
					     ta->w };
		wr.add = &a;
		wr.add_c_off = s->add_c_off;
		wr.add_scale = s->add_scale;
	}
	switch (s->kind) {
	case RXD_NAS_DWPW: {
		const struct rxd_nas_ptensor *tm = &p->tensors[s->mid];
		struct rxd_nas_tensor m = { arena, (int64_t)tm->offset, p->batch, tm->c, tm->h,
					    tm->w };
		struct rxd_nas_conv dw = { 0 }, pw = { 0 };

		dw.c_out = s->c_in;
		dw.kh = s->kh;
		dw.kw = s->kw;
		dw.stride_h = s->sh;
		dw.stride_w = s->sw;
		dw.pad_h = s->ph;
		dw.pad_w = s->pw;
		dw.dil_h = s->dh;
		dw.dil_w = s->dw;
		dw.groups = s->groups;
		dw.relu_in = s->relu_in;
		dw.weight = dw.bias = wbuf;
		dw.weight_off = (int64_t)s->w_off;
		dw.bias_off = (int64_t)s->b_off;
		pw.c_out = s->c_out;
		pw.kh = pw.kw = pw.stride_h = pw.stride_w = pw.dil_h = pw.dil_w = pw.groups = 1;
		pw.weight = pw.bias = wbuf;
		pw.weight_off = (int64_t)s->w2_off;
		pw.bias_off = (int64_t)s->b2_off;
		return nasops_dwpw(ops, &x, &dw, &m, &pw, &y, &wr, span);
	}
	case RXD_NAS_CONV: {
		struct rxd_nas_conv cv;

		nas_step_conv(s, &cv);
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

/* The recorded launches of plan p (arguments set once for the job's runs), recorded now
 * if need be; NULL when they could not be (the steps are then enqueued one by one, their
 * arguments set each time). A recording that used a scratch buffer since replaced (a
 * bigger step of another piece) is made again. */
static struct rxd_nas_rec *nas_piece_rec(struct rxd_nas_job *nj, struct rxd_nasops *ops,
					 const struct rxd_nas_plan *p, cl_mem arena, cl_mem wbuf)
{
	struct rxd_nas_rec *rec = nj->rec[0].owner == p || !nj->rec[0].owner ? &nj->rec[0]
										 : &nj->rec[1];

	if (rec->owner == p && nasops_rec_valid(ops, rec))
		return rec;
	nasops_rec_begin(ops, rec);
	for (size_t i = 0; i < p->n_steps; i++)
		if (nasops_rec_step(ops) < 0 ||
		    nas_enqueue_step(ops, p, &p->steps[i], arena, wbuf, NULL) < 0) {
			rec->failed = true;
			break;
		}
	nasops_rec_end(ops);
	rec->owner = p;
	if (nasops_rec_valid(ops, rec)) {
		log_msg(LOG_DEBUG, "NAS: %zu launches of %zu steps recorded (batch %d)", rec->n,
			p->n_steps, p->batch);
		return rec;
	}
	log_msg(LOG_DEBUG, "NAS: the launches could not be recorded; enqueued step by step");
	nasops_rec_free(rec);
	return NULL;
}

/* How a run is timed. Events cost device time (on a GPU, a few microseconds a kernel at
 * small batches), so a step's kernels get them only when the breakdown is asked for. */
enum nas_timing {
	NAS_UNTIMED,  /* a warm-up */
	NAS_TIMED,    /* the pass from its first kernel's start to its last kernel's end */
	NAS_PROFILED, /* and every step: the breakdowns */
};

/* At debug level, one profiled step's time and shape: where a network's time goes, step
 * by step, for whoever tunes the kernels (the reply has only sums by op and by cell). */
static void nas_log_step(const struct rxd_nas_plan *p, size_t i, const struct rxd_nas_span *sp,
			 uint64_t ns)
{
	const struct rxd_nas_step *s = &p->steps[i];
	uint64_t t0, t1;

	if (log_get_level() < LOG_DEBUG)
		return;
	t0 = nas_event_time(sp->first, CL_PROFILING_COMMAND_START);
	t1 = nas_event_time(sp->first, CL_PROFILING_COMMAND_END);
	log_msg(LOG_DEBUG, "NAS step %zu: %s %s cell %d, %d -> %d channels, k %dx%d s %d g %d, "
		"%dx%d out, batch %d: %.1f us (its first kernel %.1f us)", i,
		nas_kind_name(s->kind), nas_part_name(s->part), s->cell, p->tensors[s->in].c,
		s->c_out, s->kh, s->kw, s->sh, s->groups, s->h_out, s->w_out, p->batch,
		(double)ns / 1e3, t1 > t0 ? (double)(t1 - t0) / 1e3 : 0.0);
}

/* One run of one piece: upload its images, enqueue every step, wait. *ns gets the piece's
 * time; NAS_PROFILED also adds each step's time (from its first kernel's start to the next
 * step's, the last to its end, so that the parts add up to the whole) to the breakdown.
 * logits (may be NULL) receives the piece's. Long: the recorded launches and the profiled
 * ones are two ways through one loop over the steps, and they share its waits. */
static int nas_run_piece(struct rxd_nas_job *nj, struct rxd_nasops *ops,
			 const struct rxd_nas_plan *p, int32_t first_image, cl_mem arena,
			 cl_mem wbuf, struct rxd_nas_span *spans, enum nas_timing timing,
			 uint64_t *ns, float *logits, struct rxd_error *err)
{
	cl_command_queue q = ops->dev->queue;
	uint64_t per_image = (uint64_t)3 * nj->cfg.height * nj->cfg.width, t0, first = 0, prev = 0;
	size_t prev_step = 0;
	bool prof = timing != NAS_UNTIMED && ops->dev->profiling;
	bool every = prof && timing == NAS_PROFILED;
	struct rxd_nas_rec *rec = nas_piece_rec(nj, ops, p, arena, wbuf);
	cl_int e;
	int rc = 0;

	e = clEnqueueWriteBuffer(q, arena, CL_FALSE, p->tensors[p->input].offset * sizeof(float),
				 (size_t)(per_image * (uint64_t)p->batch * sizeof(float)),
				 nj->input + per_image * (uint64_t)first_image, 0, NULL, NULL);
	if (e != CL_SUCCESS) {
		error_set(err, RXD_S_DEVICE, "uploading the input failed: %s", device_strerror(e));
		return -EIO;
	}
	device_finish(ops->dev, q);
	t0 = now_ns();
	memset(spans, 0, p->n_steps * sizeof(*spans));
	for (size_t i = 0; i < p->n_steps; i++) {
		const struct rxd_nas_step *s = &p->steps[i];

		struct rxd_nas_span *sp =
			every || (prof && (i == 0 || i + 1 == p->n_steps)) ? &spans[i] : NULL;

		rc = rec ? nasops_rec_replay(ops, rec, i, sp)
			 : nas_enqueue_step(ops, p, s, arena, wbuf, sp);
		if (rc < 0) {
			clFinish(q);
			error_set(err, RXD_S_DEVICE, "step %zu (%s, %s, cell %d) could not be "
				  "run: %s", i, nas_kind_name(s->kind), nas_part_name(s->part),
				  s->cell, strerror(-rc));
			goto out;
		}
	}
	if ((e = device_finish(ops->dev, q)) != CL_SUCCESS) {
		error_set(err, RXD_S_DEVICE, "the device failed the network: %s",
			  device_strerror(e));
		rc = -EIO;
		goto out;
	}
	*ns = now_ns() - t0;
	if (prof && !every && spans[0].first && spans[p->n_steps - 1].last) {
		uint64_t start = nas_event_time(spans[0].first, CL_PROFILING_COMMAND_START);
		uint64_t end = nas_event_time(spans[p->n_steps - 1].last, CL_PROFILING_COMMAND_END);

		if (start && end > start)
			*ns = end - start;
	} else if (every) {
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
				if (!nj->steps_logged)
					nas_log_step(p, prev_step, &spans[prev_step], start - prev);
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
				if (!nj->steps_logged)
					nas_log_step(p, prev_step, &spans[prev_step], end - prev);
			}
			nj->steps_logged = true;
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

/* Long: the host buffers, the device buffers taken from the admission, the weights' upload
 * and the loop of runs over the pieces share one out: path that lets go of them all. */
int nas_job_run(struct rxd_nas_job *nj, struct rxd_nasops *ops, struct rxd_admit *a,
		atomic_bool *cancel, struct rxd_error *err)
{
	const struct rxd_nas_plan *pp = &nj->piece_plan, *pr = &nj->rest_plan;
	struct rxd_nas_span *spans = NULL;
	uint64_t job_start = now_ns();
	int32_t batch = nj->cfg.batch, piece = a->nas_piece;
	uint64_t wbytes = a->nas_weight_bytes, abytes = a->nas_arena_bytes;
	uint64_t scratch_bytes = a->nas_scratch_bytes;
	float *weights = NULL;
	cl_mem wbuf = NULL, arena = NULL, scratch = NULL;
	int st = RXD_S_OK, rc, clerr = 0;
	cl_int e;

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
	nj->piece = piece;
	nj->profiled = ops->dev->profiling && nj->want_breakdown;
	nj->act_bytes = abytes;
	nj->peak_bytes = wbytes + abytes + scratch_bytes;
	weights = malloc(wbytes);
	spans = calloc(pp->n_steps > pr->n_steps ? pp->n_steps : pr->n_steps, sizeof(*spans));
	nj->run_ns = calloc(nj->repeat, sizeof(uint64_t));
	nj->unprof_ns = calloc(nj->repeat, sizeof(uint64_t));
	nj->cell_ns = calloc((size_t)nj->cfg.layers + 2, sizeof(uint64_t));
	nj->cell_steps = calloc((size_t)nj->cfg.layers + 2, sizeof(uint32_t));
	if (nj->want_logits)
		nj->logits = malloc((size_t)batch * nj->cfg.classes * sizeof(float));
	if (!weights || !spans || !nj->run_ns || !nj->unprof_ns || !nj->cell_ns || !nj->cell_steps ||
	    (nj->want_logits && !nj->logits)) {
		st = error_set(err, RXD_S_NO_MEMORY, "out of host memory for the network");
		goto out;
	}
	if (nas_fold(pp, nj->blob, weights, err) < 0) {
		st = RXD_S_INVALID_ARGUMENT;
		goto out;
	}
	/* Every buffer from the job's reservation, the scratch too: nasops borrows it. */
	if ((rc = admit_take(a, wbytes, &wbuf, &clerr)) < 0 ||
	    (rc = admit_take(a, abytes, &arena, &clerr)) < 0 ||
	    (scratch_bytes && (rc = admit_take(a, scratch_bytes, &scratch, &clerr)) < 0)) {
		st = error_set(err, RXD_S_NO_MEMORY, "device memory for the network could not be "
			       "had: %s", clerr ? device_strerror(clerr) : strerror(-rc));
		goto out;
	}
	nasops_lend_scratch(ops, scratch, scratch_bytes);
	e = clEnqueueWriteBuffer(ops->dev->queue, wbuf, CL_TRUE, 0, wbytes, weights, 0, NULL,
				 NULL);
	if (e != CL_SUCCESS) {
		st = error_set(err, RXD_S_DEVICE, "uploading the weights failed: %s",
			       device_strerror(e));
		goto out;
	}
	for (size_t i = 0; i < pp->n_steps; i++) {
		nj->part_steps[pp->steps[i].part]++;
		nj->cell_steps[pp->steps[i].cell + 1]++;
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
			const struct rxd_nas_plan *p = batch - first >= piece ? pp : pr;
			uint64_t ns = 0;
			float *lg = nj->logits && r == 0
					    ? nj->logits + (size_t)first * nj->cfg.classes
					    : NULL;

			rc = nas_run_piece(nj, ops, p, first, arena, wbuf, spans,
					   !timed ? NAS_UNTIMED
					   : nj->profiled ? NAS_PROFILED
							  : NAS_TIMED,
					   &ns, lg, err);
			if (rc < 0) {
				st = RXD_S_DEVICE;
				goto out;
			}
			total += ns;
		}
		if (timed)
			nj->run_ns[nj->runs++] = total;
	}
	/* What the breakdown cost: as many runs again without the per-step events (within the
	 * time cap). */
	for (uint32_t r = 0; nj->profiled && r < nj->runs; r++) {
		uint64_t total = 0;

		if (now_ns() - job_start > NAS_MAX_JOB_NS && r > 0)
			break;
		for (int32_t first = 0; first < batch; first += piece) {
			const struct rxd_nas_plan *p = batch - first >= piece ? pp : pr;
			uint64_t ns = 0;

			rc = nas_run_piece(nj, ops, p, first, arena, wbuf, spans, NAS_TIMED, &ns,
					   NULL, err);
			if (rc < 0) {
				st = RXD_S_DEVICE;
				goto out;
			}
			total += ns;
		}
		nj->unprof_ns[nj->unprof_runs++] = total;
	}
out:
	/* Nothing enqueued may use the buffers once they go back (admit_release, after
	 * this): nasops lets go of the scratch once the queue has finished. */
	nasops_release_scratch(ops);
	free(weights);
	free(spans);
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
	r->profiled = nj->profiled;
	if (nj->profiled && nj->unprof_runs) {
		qsort(nj->unprof_ns, nj->unprof_runs, sizeof(uint64_t), cmp_u64);
		r->unprofiled_median_ns = nj->unprof_ns[(nj->unprof_runs - 1) / 2];
	}
	if (nj->logits) {
		r->logits = nj->logits;
		r->logits_bytes = (size_t)nj->cfg.batch * nj->cfg.classes * sizeof(float);
	}
	return 0;
}

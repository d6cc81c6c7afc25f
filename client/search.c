/* search.c: librxgemm's DARTS search jobs (rxg_submit_search, rxg_search_wait): the
 * request built from struct rxg_search_args, the progress reports handed to a callback as
 * they arrive, and the final reply copied into a struct rxg_search_result the caller
 * owns. A search is a pending entry of its own kind: its reports queue on the entry
 * (transport.c) until rxg_search_wait takes them. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "transport.h"

RXG_EXPORT void rxg_search_args_init(struct rxg_search_args *a)
{
	if (!a)
		return;
	memset(a, 0, sizeof(*a));
	a->lr = a->lr_min = a->momentum = a->weight_decay = a->grad_clip = NAN;
	a->arch_lr = a->arch_beta1 = a->arch_beta2 = a->arch_eps = a->arch_weight_decay = NAN;
}

RXG_EXPORT void rxg_search_result_free(struct rxg_search_result *r)
{
	if (!r)
		return;
	free(r->genotype);
	free(r->alpha_normal);
	free(r->alpha_reduce);
	free(r->curve);
	free(r->state);
	free(r);
}

/* One half's data into d (inline, or references into its buffer in refs[0..1]). The daemon
 * checks the sizes against the shape; here only what the request needs. */
static int search_half(rxg_client *c, const char *name, const struct rxg_search_data *h,
		       uint64_t per_image, Rxgemm__SearchData *d, Rxgemm__RegionRef refs[2])
{
	uint64_t floats;
	int rc;

	if (h->count <= 0)
		return rxg__fail(c, RXG_EINVAL, "%s.count is %lld; it must be at least 1", name,
				 (long long)h->count);
	if (__builtin_mul_overflow((uint64_t)h->count, per_image, &floats) ||
	    floats > SIZE_MAX / sizeof(float))
		return rxg__fail(c, RXG_ETOOBIG, "%s: %lld images are too many", name,
				 (long long)h->count);
	d->count = h->count;
	if (h->buf) {
		if ((rc = rxg__region_ref(c, name, h->buf, h->images_offset, (size_t)floats,
					  &refs[0])) != RXG_OK ||
		    (rc = rxg__region_ref(c, name, h->buf, h->labels_offset, (size_t)h->count,
					  &refs[1])) != RXG_OK)
			return rc;
		d->images_region = &refs[0];
		d->labels_region = &refs[1];
		return RXG_OK;
	}
	if (!h->images || !h->labels)
		return rxg__fail(c, RXG_EINVAL, "%s: images and labels are needed (or a buffer)",
				 name);
	d->images.data = (uint8_t *)(uintptr_t)h->images;
	d->images.len = (size_t)floats * sizeof(float);
	d->labels.data = (uint8_t *)(uintptr_t)h->labels;
	d->labels.len = (size_t)h->count * sizeof(int32_t);
	return RXG_OK;
}

/* About 80 lines: every field of the request in turn. */
RXG_EXPORT int rxg_submit_search(rxg_client *c, const struct rxg_search_args *args, uint64_t *id)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__SearchRequest q = RXGEMM__SEARCH_REQUEST__INIT;
	Rxgemm__SearchData d[2] = { RXGEMM__SEARCH_DATA__INIT, RXGEMM__SEARCH_DATA__INIT };
	Rxgemm__RegionRef refs[5];
	Rxgemm__Real reals[10];
	const double values[10] = { args ? args->lr : 0, args ? args->lr_min : 0,
				    args ? args->momentum : 0, args ? args->weight_decay : 0,
				    args ? args->grad_clip : 0, args ? args->arch_lr : 0,
				    args ? args->arch_beta1 : 0, args ? args->arch_beta2 : 0,
				    args ? args->arch_eps : 0, args ? args->arch_weight_decay : 0 };
	Rxgemm__Real **fields[10] = { &q.lr, &q.lr_min, &q.momentum, &q.weight_decay,
				      &q.grad_clip, &q.arch_lr, &q.arch_beta1, &q.arch_beta2,
				      &q.arch_eps, &q.arch_weight_decay };
	struct pending *p;
	uint64_t per_image, reply_max;
	int rc;

	if (id)
		*id = 0;
	if (!c)
		return RXG_EINVAL;
	if (!args || !id)
		return rxg__fail(c, RXG_EINVAL, "rxg_submit_search: args or id is NULL");
	if (args->c < 0 || args->layers < 0 || args->classes < 0 || args->height < 0 ||
	    args->width < 0 || args->batch < 0)
		return rxg__fail(c, RXG_EINVAL, "c, layers, classes, height, width and batch must "
						"not be negative");
	/* The daemon's defaults, to know the data's lengths. */
	per_image = 3 * (uint64_t)(args->height ? args->height : 32) *
		    (uint64_t)(args->width ? args->width : 32);
	if ((rc = search_half(c, "train", &args->train, per_image, &d[0], &refs[0])) != RXG_OK ||
	    (rc = search_half(c, "valid", &args->valid, per_image, &d[1], &refs[2])) != RXG_OK)
		return rc;
	q.c = args->c;
	q.layers = args->layers;
	q.classes = args->classes;
	q.height = args->height;
	q.width = args->width;
	q.batch = args->batch;
	q.steps = args->steps;
	q.multiplier = args->multiplier;
	q.seed = args->seed;
	q.epochs = args->epochs;
	q.max_steps = args->max_steps;
	for (int i = 0; i < 10; i++) {
		rxgemm__real__init(&reals[i]);
		if (isnan(values[i]))
			continue; /* the daemon's default */
		reals[i].value = values[i];
		*fields[i] = &reals[i];
	}
	q.train = &d[0];
	q.valid = &d[1];
	q.progress_every = args->progress_every;
	if (args->resume_state) {
		q.resume_state.data = (uint8_t *)(uintptr_t)args->resume_state;
		q.resume_state.len = args->resume_bytes;
	}
	q.want_state = args->want_state != 0;
	if (args->state_buf) {
		if (args->want_state)
			return rxg__fail(c, RXG_EINVAL, "want_state and state_buf are both given; "
					 "give one");
		if (args->state_len % sizeof(float))
			return rxg__fail(c, RXG_EINVAL, "state_len must be a multiple of 4");
		if ((rc = rxg__region_ref(c, "state", args->state_buf, args->state_offset,
					  args->state_len / sizeof(float), &refs[4])) != RXG_OK)
			return rc;
		q.state_out = &refs[4];
	}
	q.priority = args->priority;
	req.body_case = RXGEMM__REQUEST__BODY_SEARCH;
	req.search = &q;
	if (!(p = calloc(1, sizeof(*p))))
		return rxg__fail(c, RXG_ENOMEM, "out of memory for a pending request");
	/* A reply may carry the state: up to the daemon's own frame bound. */
	reply_max = rxg_server_info(c)->max_frame_bytes;
	p->want = RXGEMM__REPLY__BODY_SEARCH;
	p->reply_max_bytes = reply_max > RXG__REPLY_OVERHEAD_BYTES ? (size_t)reply_max
								   : RXG__REPLY_OVERHEAD_BYTES;
	if ((rc = rxg__submit(c, &req, p)) != RXG_OK) {
		rxg__pending_free(p);
		return rc;
	}
	*id = p->id;
	return RXG_OK;
}

/* Hand one report to progress. */
static void search_report(const Rxgemm__SearchProgress *w,
			  void (*progress)(const struct rxg_search_progress *p, void *arg),
			  void *arg)
{
	struct rxg_search_progress p = {
		.step = w->step, .total_steps = w->total_steps, .epoch = w->epoch, .lr = w->lr,
		.train_loss = w->train_loss, .train_acc = w->train_acc,
		.valid_loss = w->valid_loss, .valid_acc = w->valid_acc,
		.forward_ns = w->forward_ns, .backward_ns = w->backward_ns,
		.update_ns = w->update_ns,
		.n_alphas = w->n_alpha_normal < w->n_alpha_reduce ? w->n_alpha_normal
								  : w->n_alpha_reduce,
		.alpha_normal = w->alpha_normal, .alpha_reduce = w->alpha_reduce,
		.genotype = w->genotype ? w->genotype : "",
	};

	if (progress)
		progress(&p, arg);
}

/* The final reply's result in a struct the caller owns; NULL when out of memory. */
static struct rxg_search_result *search_result_from_wire(const Rxgemm__SearchReply *w)
{
	struct rxg_search_result *r = calloc(1, sizeof(*r));
	size_t na = w->n_alpha_normal;

	if (!r || !(r->genotype = rxg__dup_string(w->genotype)) ||
	    !(r->alpha_normal = calloc(na ? na : 1, sizeof(float))) ||
	    !(r->alpha_reduce = calloc(na ? na : 1, sizeof(float))) ||
	    !(r->curve = calloc(w->n_curve ? w->n_curve : 1, sizeof(*r->curve))) ||
	    (w->state.len && !(r->state = malloc(w->state.len)))) {
		rxg_search_result_free(r);
		return NULL;
	}
	r->n_alphas = na;
	memcpy(r->alpha_normal, w->alpha_normal, na * sizeof(float));
	memcpy(r->alpha_reduce, w->alpha_reduce, na * sizeof(float));
	for (size_t i = 0; i < w->n_curve; i++) {
		const Rxgemm__SearchStepRecord *e = w->curve[i];

		r->curve[i] = (struct rxg_search_step){
			.step = e->step, .epoch = e->epoch, .train_loss = e->train_loss,
			.train_acc = e->train_acc, .valid_loss = e->valid_loss,
			.valid_acc = e->valid_acc, .forward_ns = e->forward_ns,
			.backward_ns = e->backward_ns, .update_ns = e->update_ns
		};
	}
	r->n_curve = w->n_curve;
	if (w->state.len)
		memcpy(r->state, w->state.data, w->state.len);
	r->state_bytes = w->state.len ? w->state.len : (size_t)w->state_bytes;
	r->steps_done = w->steps_done;
	r->device_bytes = w->device_bytes;
	return r;
}

RXG_EXPORT int rxg_search_wait(rxg_client *c, uint64_t id, int timeout_ms,
			       void (*progress)(const struct rxg_search_progress *p, void *arg),
			       void *arg, struct rxg_search_result **out)
{
	Rxgemm__Reply **reports = NULL;
	struct pending *p = NULL;
	size_t n = 0;
	int rc;

	if (out)
		*out = NULL;
	if (!c)
		return RXG_EINVAL;
	if (!out)
		return rxg__fail(c, RXG_EINVAL, "rxg_search_wait: out is NULL");
	rc = rxg__wait_progress(c, id, timeout_ms, &reports, &n, &p);
	/* The reports first (in order), with no lock held: the callback may call in. */
	for (size_t i = 0; i < n; i++) {
		search_report(reports[i]->search_progress, progress, arg);
		rxgemm__reply__free_unpacked(reports[i], NULL);
	}
	free(reports);
	if (rc != RXG_OK)
		return rc;
	if (!p)
		return RXG_EAGAIN; /* reports only: it goes on */
	if ((rc = rxg__reply_check(c, p, NULL)) == RXG_OK &&
	    !(*out = search_result_from_wire(p->reply->search)))
		rc = rxg__fail(c, RXG_ENOMEM, "out of memory for the search result");
	rxg__pending_free(p);
	return rc;
}

RXG_EXPORT int rxg_search(rxg_client *c, const struct rxg_search_args *args,
			  void (*progress)(const struct rxg_search_progress *p, void *arg),
			  void *arg, struct rxg_search_result **out)
{
	uint64_t id;
	int rc;

	if (out)
		*out = NULL;
	if ((rc = rxg_submit_search(c, args, &id)) != RXG_OK)
		return rc;
	while ((rc = rxg_search_wait(c, id, -1, progress, arg, out)) == RXG_EAGAIN)
		;
	return rc;
}

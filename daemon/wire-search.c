/* wire-search.c: search jobs on the wire (loop thread): a SearchRequest resolved, checked
 * and laid out into a job; its progress frames between turns; its final reply. The
 * exchange is docs/PROTOCOL.md's "Search jobs". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* One datum of a half ("train.images", say): inline bytes or a region (one of the two). */
static int wire_search_bytes(struct rxd_conn *c, const ProtobufCBinaryData *inline_bytes,
			     const Rxgemm__RegionRef *ref, const char *field,
			     ProtobufCBinaryData *out, struct rxd_region **used,
			     struct rxd_error *err)
{
	char name[48];
	uint8_t *p;
	int st;

	*out = *inline_bytes;
	*used = NULL;
	if (!ref)
		return RXD_S_OK;
	snprintf(name, sizeof(name), "%s_region", field);
	if (inline_bytes->len)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "%s and %s are both given; send one",
				 field, name);
	if ((st = wire_region(&c->shm, ref, name, used, &p, err)))
		return st;
	out->data = p;
	out->len = (size_t)ref->length;
	return RXD_S_OK;
}

int wire_search(struct rxd_conn *c, const Rxgemm__Request *req, struct rxd_request *r,
		struct rxd_error *err)
{
	static const char *const fields[2][2] = { { "train.images", "train.labels" },
						  { "valid.images", "valid.labels" } };
	const Rxgemm__SearchRequest *rq = req->search;
	const Rxgemm__SearchData *half[2] = { rq->train, rq->valid };
	static const ProtobufCBinaryData none = { 0, NULL };
	ProtobufCBinaryData data[2][2], resume;
	struct rxd_region *used[2][2] = { { NULL } }, *resume_region = NULL;
	struct rxd_search_job_args a;
	struct rxd_search_job *sj;
	int st;

	if (!searchjob_available() || !worker_serves_nas(c->srv->worker))
		return error_set(err, RXD_S_UNSUPPORTED, "this daemon's device could not build "
				 "the search's kernels");
	for (int h = 0; h < 2; h++) {
		const Rxgemm__SearchData *d = half[h];

		if ((st = wire_search_bytes(c, d ? &d->images : &none, d ? d->images_region : NULL,
					    fields[h][0], &data[h][0], &used[h][0], err)) ||
		    (st = wire_search_bytes(c, d ? &d->labels : &none, d ? d->labels_region : NULL,
					    fields[h][1], &data[h][1], &used[h][1], err)))
			return st;
	}
	if ((st = wire_search_check(rq, data, &a, err)))
		return st;
	if ((st = wire_search_bytes(c, &rq->resume_state, rq->resume_region, "resume_state",
				    &resume, &resume_region, err)))
		return st;
	if (resume.len) {
		a.resume = resume.data;
		a.resume_bytes = resume.len;
	}
	if (rq->state_out) {
		uint8_t *p;

		if ((st = wire_region(&c->shm, rq->state_out, "state_out", &a.state_region, &p,
				      err)))
			return st;
		a.state_dest = p;
		a.state_len = rq->state_out->length;
		/* The search writes it while it may read these. */
		for (int h = 0; h < 2; h++)
			for (int i = 0; i < 2; i++)
				if (p < data[h][i].data + data[h][i].len &&
				    data[h][i].data < p + a.state_len)
					return error_set(err, RXD_S_INVALID_ARGUMENT,
							 "state_out overlaps %s", fields[h][i]);
	}
	for (int h = 0; h < 2; h++)
		for (int i = 0; i < 2; i++)
			a.regions[2 * h + i] = used[h][i];
	if ((st = searchjob_prepare(&a, c->srv->cfg->max_frame_bytes, &sj, err)))
		return st;
	return dispatch_search(c, r, sj, err);
}

/* Send the progress of job's search to its client. */
static void wire_search_progress(struct rxd_conn *c, const struct rxd_job *job)
{
	const struct rxd_search_job *sj = job->search;
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__SearchProgress p = RXGEMM__SEARCH_PROGRESS__INIT;
	size_t alphas = (size_t)sj->edges * RXD_NAS_PRIMITIVES;

	p.step = sj->steps_done;
	p.total_steps = sj->a.max_steps;
	p.epoch = sj->last.epoch;
	p.lr = sj->last.lr;
	p.train_loss = sj->last.train_loss;
	p.train_acc = sj->last.train_acc;
	p.valid_loss = sj->last.valid_loss;
	p.valid_acc = sj->last.valid_acc;
	p.n_alpha_normal = p.n_alpha_reduce = alphas;
	p.alpha_normal = sj->alpha_normal;
	p.alpha_reduce = sj->alpha_reduce;
	p.genotype = (char *)sj->genotype;
	p.forward_ns = sj->last.forward_ns;
	p.backward_ns = sj->last.backward_ns;
	p.update_ns = sj->last.update_ns;
	reply.request_id = job->request_id;
	reply.status = RXGEMM__STATUS__STATUS_OK;
	reply.body_case = RXGEMM__REPLY__BODY_SEARCH_PROGRESS;
	reply.search_progress = &p;
	wire_send(c, &reply, false);
}

bool wire_search_turn_done(struct rxd_job *job)
{
	struct rxd_conn *c = job->conn;
	struct rxd_search_job *sj = job->search;
	struct rxd_server *srv = c->srv;
	int ret;

	if (job->err.status != RXD_S_OK)
		return false;
	if (sj->finished) {
		/* The last step reports too, before the final reply. */
		if (!c->closing && searchjob_progress_due(sj))
			wire_search_progress(c, job);
		return false;
	}
	/* Cancelled (or its client left) during the turn or since: one more turn ends it
	 * on the worker, which owns the device and counts the cancellation. */
	if (c->closing)
		atomic_store(&job->cancel, true);
	if (!atomic_load(&job->cancel)) {
		stats_job_busy(&srv->stats, job); /* the last turn's is dispatch_job_finish's */
		if (searchjob_progress_due(sj))
			wire_search_progress(c, job);
	}
	if ((ret = worker_requeue(srv->worker, job)) < 0) {
		if (ret == -ENODEV)
			error_set(&job->err, RXD_S_DEVICE, "the OpenCL device was lost; rxgemmd is "
				  "exiting to be restarted");
		else
			error_set(&job->err, RXD_S_SHUTDOWN, "the daemon is shutting down; the "
				  "search stopped after step %llu",
				  (unsigned long long)sj->steps_done);
		return false;
	}
	return true;
}

int wire_search_reply(const struct rxd_search_job *sj, Rxgemm__SearchReply *out, void **bufs)
{
	Rxgemm__SearchStepRecord *rec, **ptrs;
	size_t n = sj->n_curve;

	*bufs = NULL;
	rxgemm__search_reply__init(out);
	/* One allocation: the records, then the pointers to them. */
	rec = malloc((n ? n : 1) * (sizeof(*rec) + sizeof(*ptrs)));
	if (!rec)
		return -ENOMEM;
	ptrs = (Rxgemm__SearchStepRecord **)(rec + (n ? n : 1));
	for (size_t i = 0; i < n; i++) {
		const struct rxd_search_job_step *e = &sj->curve[i];

		rxgemm__search_step_record__init(&rec[i]);
		rec[i].step = e->step;
		rec[i].epoch = e->epoch;
		rec[i].train_loss = e->train_loss;
		rec[i].train_acc = e->train_acc;
		rec[i].valid_loss = e->valid_loss;
		rec[i].valid_acc = e->valid_acc;
		rec[i].forward_ns = e->forward_ns;
		rec[i].backward_ns = e->backward_ns;
		rec[i].update_ns = e->update_ns;
		ptrs[i] = &rec[i];
	}
	out->genotype = (char *)sj->genotype;
	out->n_alpha_normal = out->n_alpha_reduce = (size_t)sj->edges * RXD_NAS_PRIMITIVES;
	out->alpha_normal = sj->alpha_normal;
	out->alpha_reduce = sj->alpha_reduce;
	out->steps_done = sj->steps_done;
	out->n_curve = n;
	out->curve = ptrs;
	if (sj->state) {
		out->state.data = sj->state;
		out->state.len = sj->state_bytes;
	}
	out->state_bytes = sj->state_bytes;
	out->device_bytes = sj->device_bytes;
	*bufs = rec;
	return 0;
}

/* searchjob.c: DARTS search jobs, one search step per scheduler turn (searchjob.h says
 * how a job lives and which thread owns it when). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"
#include "searchjob.h"

/* The backward kernels (main.c's); NULL: no search jobs. */
static struct rxd_nasgrad *searchjob_gr;

void searchjob_init(struct rxd_nasgrad *gr)
{
	searchjob_gr = gr;
}

void searchjob_fini(void)
{
	searchjob_gr = NULL;
}

bool searchjob_available(void)
{
	return searchjob_gr != NULL;
}

int searchjob_prepare(const struct rxd_search_job_args *a, uint64_t max_reply_bytes,
		      struct rxd_search_job **out, struct rxd_error *err)
{
	struct rxd_search_job *sj;
	uint64_t per_epoch, alphas;
	int st = RXD_S_OK;

	*out = NULL;
	if (!(sj = calloc(1, sizeof(*sj))))
		return error_set(err, RXD_S_NO_MEMORY, "out of memory for a search job");
	sj->a = *a;
	sj->a.resume = NULL;
	sj->a.cfg.steps_per_epoch = a->count[0] / a->cfg.batch;
	if (search_prepare(&sj->a.cfg, &sj->s, err) < 0) {
		st = err->status;
		goto out;
	}
	sj->device_bytes = search_device_bytes(sj->s);
	sj->state_bytes = search_state_bytes(sj->s);
	sj->edges = search_edges(sj->s);
	alphas = (uint64_t)sj->edges * RXD_NAS_PRIMITIVES;
	/* The whole run: epochs of steps_per_epoch steps, unless the request stops sooner. */
	per_epoch = (uint64_t)sj->a.cfg.steps_per_epoch;
	if (!sj->a.max_steps)
		sj->a.max_steps = per_epoch > UINT64_MAX / (uint64_t)sj->a.cfg.epochs
					  ? UINT64_MAX
					  : per_epoch * (uint64_t)sj->a.cfg.epochs;
	if (a->want_state && sj->state_bytes > max_reply_bytes / 2) {
		st = error_set(err, RXD_S_TOO_BIG, "this search's state takes %llu bytes, more "
			       "than a reply may carry (%llu); give state_out a region instead "
			       "of want_state", (unsigned long long)sj->state_bytes,
			       (unsigned long long)(max_reply_bytes / 2));
		goto out;
	}
	if (a->state_region && a->state_len < sj->state_bytes) {
		st = error_set(err, RXD_S_INVALID_ARGUMENT, "state_out's length is %llu bytes; "
			       "this search's state takes %llu",
			       (unsigned long long)a->state_len,
			       (unsigned long long)sj->state_bytes);
		goto out;
	}
	if (a->resume) {
		if (a->resume_bytes != sj->state_bytes) {
			st = error_set(err, RXD_S_INVALID_ARGUMENT, "the resume state is %zu "
				       "bytes; this network's state takes %llu (is it another "
				       "network's?)", a->resume_bytes,
				       (unsigned long long)sj->state_bytes);
			goto out;
		}
		if (!(sj->resume_copy = malloc(a->resume_bytes))) {
			st = error_set(err, RXD_S_NO_MEMORY, "out of memory for the resume state");
			goto out;
		}
		memcpy(sj->resume_copy, a->resume, a->resume_bytes);
	}
	sj->alpha_normal = calloc(alphas, sizeof(float));
	sj->alpha_reduce = calloc(alphas, sizeof(float));
	if (!sj->alpha_normal || !sj->alpha_reduce) {
		st = error_set(err, RXD_S_NO_MEMORY, "out of memory for a search job");
		goto out;
	}
	*out = sj;
	sj = NULL;
out:
	searchjob_free(sj);
	return st;
}

uint64_t searchjob_step_flops(const struct rxd_search_job *sj)
{
	const struct rxd_nas_plan *p = search_plan(sj->s);
	uint64_t macs = p->macs;

	/* Two forwards (validation and training batches) and two backwards of about twice a
	 * forward's work: six forwards of the batch, two FLOPs per multiply-add. */
	if (macs > UINT64_MAX / 12 / (uint64_t)p->batch)
		return UINT64_MAX;
	return 12 * macs * (uint64_t)p->batch;
}

/* Free the search's device state and give its memory back to the budget. */
static void searchjob_end(struct rxd_search_job *sj)
{
	search_free(sj->s);
	sj->s = NULL;
	if (sj->reserved)
		budget_release(sj->res_budget, &sj->res);
	sj->reserved = false;
}

/* The first turn: reserve the whole job's memory, start the search and load the state it
 * resumes from. A status. */
static int searchjob_start(struct rxd_search_job *sj, struct rxd_nasops *ops,
			   struct rxd_budget *b, uint32_t owner, bool *later,
			   struct rxd_error *err)
{
	int ret;

	if (b && !sj->reserved) {
		/* Resident: it outlives this turn, and other jobs are planned around it. */
		ret = budget_reserve_resident(b, &sj->res, owner, sj->device_bytes);
		if (ret == -EDQUOT)
			return error_set(err, RXD_S_QUOTA, "the search needs %llu bytes of device "
					 "memory, over this client's quota beside what it holds",
					 (unsigned long long)sj->device_bytes);
		if (ret < 0) {
			/* Taken by device tensors or other searches now: it waits for them. */
			*later = sj->device_bytes <= budget_limit(b);
			return error_set(err, RXD_S_TOO_BIG, "the search needs %llu bytes of "
					 "device memory; the budget is %llu",
					 (unsigned long long)sj->device_bytes,
					 (unsigned long long)budget_limit(b));
		}
		sj->reserved = true;
		sj->res_budget = b;
	}
	if (search_start(sj->s, ops, searchjob_gr, err) < 0)
		return err->status ? err->status : RXD_S_DEVICE;
	sj->started = true;
	if (sj->resume_copy) {
		if (search_state_load(sj->s, sj->resume_copy, sj->state_bytes, err) < 0)
			return err->status ? err->status : RXD_S_INVALID_ARGUMENT;
		free(sj->resume_copy);
		sj->resume_copy = NULL;
	}
	sj->steps_done = search_steps_done(sj->s);
	sj->last_progress = sj->steps_done;
	return RXD_S_OK;
}

/* One step: step k takes batch k mod (count / batch) of each half, in order. */
static int searchjob_step(struct rxd_search_job *sj, struct rxd_error *err)
{
	const struct rxd_search_config *cfg = &sj->a.cfg;
	uint64_t per_image = 3ull * (uint64_t)cfg->height * (uint64_t)cfg->width;
	struct rxd_search_batch half[2];
	struct rxd_search_result r;
	struct rxd_search_job_step *e;

	for (int i = 0; i < 2; i++) {
		uint64_t batches = (uint64_t)(sj->a.count[i] / cfg->batch);
		uint64_t first = (sj->steps_done % batches) * (uint64_t)cfg->batch;

		half[i].images = sj->a.images[i] + first * per_image;
		half[i].labels = sj->a.labels[i] + first;
	}
	if (sj->n_curve == sj->cap_curve) {
		size_t cap = sj->cap_curve ? 2 * sj->cap_curve : 64;

		if (!(e = realloc(sj->curve, cap * sizeof(*e))))
			return error_set(err, RXD_S_NO_MEMORY, "out of memory for the loss curve");
		sj->curve = e;
		sj->cap_curve = cap;
	}
	if (search_step(sj->s, &half[0], &half[1], &r, err) < 0)
		return err->status ? err->status : RXD_S_DEVICE;
	sj->last = r;
	sj->steps_done = r.step;
	e = &sj->curve[sj->n_curve++];
	*e = (struct rxd_search_job_step){ .step = r.step, .epoch = r.epoch,
					   .train_loss = r.train_loss, .train_acc = r.train_acc,
					   .valid_loss = r.valid_loss, .valid_acc = r.valid_acc,
					   .forward_ns = r.forward_ns,
					   .backward_ns = r.backward_ns, .update_ns = r.update_ns };
	return RXD_S_OK;
}

/* The last step is done: the state where it was asked for. A status. */
static int searchjob_finish(struct rxd_search_job *sj, struct rxd_error *err)
{
	if (sj->a.want_state) {
		if (!(sj->state = malloc(sj->state_bytes)))
			return error_set(err, RXD_S_NO_MEMORY, "out of memory for the state");
		if (search_state_save(sj->s, sj->state, sj->state_bytes, err) < 0)
			return err->status ? err->status : RXD_S_DEVICE;
	}
	if (sj->a.state_dest &&
	    search_state_save(sj->s, sj->a.state_dest, sj->state_bytes, err) < 0)
		return err->status ? err->status : RXD_S_DEVICE;
	sj->finished = true;
	return RXD_S_OK;
}

int searchjob_turn(struct rxd_search_job *sj, struct rxd_nasops *ops, struct rxd_budget *b,
		   uint32_t owner, bool cancelled, const struct rxd_search_pause *pause,
		   bool *later, struct rxd_error *err)
{
	struct rxd_genotype g;
	int st = RXD_S_OK;

	*later = false;
	if (cancelled) {
		st = error_set(err, RXD_S_CANCELLED, "the search was cancelled after step %llu",
			       (unsigned long long)sj->steps_done);
		goto out;
	}
	if (!ops || !searchjob_gr) {
		st = error_set(err, RXD_S_UNSUPPORTED, "this daemon's device could not build the "
			       "search's kernels");
		goto out;
	}
	if (!sj->started && (st = searchjob_start(sj, ops, b, owner, later, err)) != RXD_S_OK)
		goto out;
	search_set_pause(sj->s, pause);
	st = sj->steps_done < sj->a.max_steps ? searchjob_step(sj, err) : RXD_S_OK;
	search_set_pause(sj->s, NULL);
	if (st != RXD_S_OK)
		goto out;
	search_alphas(sj->s, sj->alpha_normal, sj->alpha_reduce);
	search_genotype(sj->s, &g);
	genotype_format(&g, sj->genotype, sizeof(sj->genotype));
	if (sj->steps_done >= sj->a.max_steps)
		st = searchjob_finish(sj, err);
out:
	/* The kernels' scratch is made outside any reservation (the search's counts it):
	 * it must not outlive the turn, when other jobs plan the memory. */
	if (ops)
		nasops_release_scratch(ops);
	if (searchjob_gr)
		nasgrad_release_scratch(searchjob_gr);
	/* A job that waits for memory (*later) has started nothing: it is tried again. */
	if ((st != RXD_S_OK && !*later) || sj->finished)
		searchjob_end(sj);
	return st;
}

bool searchjob_progress_due(struct rxd_search_job *sj)
{
	if (!sj->a.progress_every || sj->steps_done < sj->last_progress + sj->a.progress_every)
		return false;
	sj->last_progress = sj->steps_done;
	return true;
}

void searchjob_free(struct rxd_search_job *sj)
{
	if (!sj)
		return;
	searchjob_end(sj);
	if (sj->state_region_held)
		shm_region_unref(sj->a.state_region);
	free(sj->resume_copy);
	free(sj->curve);
	free(sj->alpha_normal);
	free(sj->alpha_reduce);
	free(sj->state);
	free(sj);
}

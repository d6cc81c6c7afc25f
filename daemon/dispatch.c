/* dispatch.c: validated requests into jobs, and jobs back (loop thread only).
 *
 * The wire layer (wire.c) decodes and checks a request and hands it here as an internal
 * struct; dispatch charges the job to its connection (client-max-memory), queues it with
 * the worker, and when it comes back undoes the charges and lists what it made. Replies
 * are the wire layer's: a refusal here is a status and a sentence for it to send. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lift.h"
#include "loop.h"
#include "searchjob.h"

void dispatch_note_rejected(struct rxd_conn *c)
{
	c->srv->stats.requests_rejected++;
	c->stats.requests_rejected++;
}

static void dispatch_release_regions(struct rxd_job *job)
{
	for (int i = 0; i < RXD_JOB_REGIONS; i++) {
		shm_region_unref(job->regions[i]);
		job->regions[i] = NULL;
	}
}

static void dispatch_release_tensors(struct rxd_job *job)
{
	for (int i = 0; i < 4; i++) {
		tensor_unref(job->tensors[i]);
		job->tensors[i] = NULL;
	}
}

/* The job keeps r (once, however many of its operands lie there). */
static void dispatch_hold_region(struct rxd_job *job, struct rxd_region *r)
{
	int i;

	for (i = 0; i < RXD_JOB_REGIONS && job->regions[i]; i++)
		if (job->regions[i] == r)
			return;
	shm_region_ref(r);
	job->regions[i] = r;
}

/* A zeroed job for rq, tied to c, owning rq's frame from here on; NULL when out of
 * memory (err set; the frame is freed). */
static struct rxd_job *dispatch_job_new(struct rxd_conn *c, struct rxd_request *rq,
					struct rxd_error *err)
{
	struct rxd_job *job = calloc(1, sizeof(*job));

	if (!job) {
		error_set(err, RXD_S_NO_MEMORY, "out of memory for a new job");
		if (rq->frame)
			rq->frame_free(rq->frame);
		rq->frame = NULL;
		return NULL;
	}
	job->conn = c;
	job->conn_id = c->id;
	job->request_id = rq->id;
	job->frame = rq->frame;
	job->frame_free = rq->frame_free;
	job->bytes_in = rq->bytes_in;
	job->received_ns = rq->received_ns;
	atomic_init(&job->cancel, false);
	rq->frame = NULL;
	return job;
}

/* Can c hold a job charged need bytes (job->held_bytes) now, and can the daemon? A status
 * code, with a sentence in err: TOO_BIG when the job alone is over a bound, BUSY while what
 * c holds (or all clients together hold: max-memory) already leaves no room for it (its
 * replies read, it may retry). */
static int dispatch_admit(struct rxd_conn *c, uint64_t need, struct rxd_error *err)
{
	uint64_t bound = c->srv->cfg->client_max_memory_bytes;
	uint64_t held = c->jobs_bytes + c->out_bytes;
	uint64_t total = c->srv->cfg->max_memory_bytes, all = c->srv->held_bytes;

	/* Never fits first, then does not fit now: a client told BUSY may retry. */
	if (bound && need > bound)
		return error_set(err, RXD_S_TOO_BIG, "this request and its result need %llu bytes "
				 "of the daemon's memory, more than one client may make it hold "
				 "(client-max-memory %llu)",
				 (unsigned long long)need, (unsigned long long)bound);
	if (total && need > total)
		return error_set(err, RXD_S_TOO_BIG, "this request and its result need %llu bytes "
				 "of the daemon's memory, more than all clients together may make "
				 "it hold (max-memory %llu)",
				 (unsigned long long)need, (unsigned long long)total);
	if (bound && need > bound - (held < bound ? held : bound))
		return error_set(err, RXD_S_BUSY, "this client's jobs and unread replies hold "
				 "%llu bytes of the daemon's memory and this one needs %llu more, "
				 "over its bound (client-max-memory %llu); read the replies and "
				 "retry",
				 (unsigned long long)held, (unsigned long long)need,
				 (unsigned long long)bound);
	if (total && need > total - (all < total ? all : total))
		return error_set(err, RXD_S_BUSY, "the clients' jobs and unread replies hold "
				 "%llu bytes of the daemon's memory and this one needs %llu more, "
				 "over the bound of all clients together (max-memory %llu); retry "
				 "later",
				 (unsigned long long)all, (unsigned long long)need,
				 (unsigned long long)total);
	return RXD_S_OK;
}

/* Queue job (its request, cost, cancel flag and held_bytes set) with the scheduler, or
 * say why not (a bound reached: BUSY or TOO_BIG) and free it. A status code. */
static int dispatch_submit(struct rxd_conn *c, struct rxd_job *job, struct rxd_error *err)
{
	struct rxd_server *srv = c->srv;
	int ret, st;

	if ((st = dispatch_admit(c, job->held_bytes, err)))
		goto fail;
	job->submitted_ns = now_ns();
	/* GEMMs and tensor jobs may run in a search's pauses (worker.c): they touch nothing
	 * of a NAS network's scratch. */
	job->sj.nestable = job->kind == RXD_JOB_GEMM || job->kind == RXD_JOB_TENSOR_CREATE ||
			   job->kind == RXD_JOB_TENSOR_READ;
	ret = worker_submit(srv->worker, job);
	if (ret < 0) {
		struct rxd_sched_stats q;

		worker_queue_stats(srv->worker, &q);
		if (ret == -EBUSY)
			st = error_set(err, RXD_S_BUSY, "this client has %u jobs waiting already, "
				       "its bound (client-max-queue); retry when some have "
				       "finished",
				       q.client_max_queue);
		else if (ret == -ENOBUFS)
			st = error_set(err, RXD_S_BUSY, "the daemon's queue is full (%u jobs "
				       "waiting, its bound max-queue); retry later",
				       q.max_queue);
		else if (ret == -ESHUTDOWN)
			st = error_set(err, RXD_S_SHUTDOWN, "the daemon is shutting down");
		else if (ret == -ENODEV)
			st = error_set(err, RXD_S_DEVICE, "the OpenCL device was lost; rxgemmd is "
				       "exiting to be restarted");
		else
			st = error_set(err, RXD_S_NO_MEMORY, "out of memory for queueing the job");
		goto fail;
	}
	/* The worker may finish the job at once, but only this (the loop) thread delivers
	 * it, after this returns. */
	conn_ref(c);
	c->jobs_in_flight++;
	conn_jobs_charge(c, job->held_bytes);
	srv->stats.jobs_queued++;
	return RXD_S_OK;
fail:
	dispatch_release_regions(job);
	if (job->kind == RXD_JOB_TENSOR_CREATE)
		c->tensors.pending--;
	dispatch_release_tensors(job);
	job_free(job); /* frees the frame too */
	return st;
}

/* What a job is charged to its connection: its request (about the frame's bytes, held
 * decoded until the reply) and its result, once where the reply goes out from the worker's
 * buffer itself (lifted: a GEMM's C, a tensor's data; wire_send_lifted) and twice where the
 * reply is packed from that buffer (a NAS job's outputs, a search's state, and results too
 * small to lift), both then existing at once. */
static uint64_t dispatch_charge(size_t frame_len, uint64_t result_bytes, bool lifted)
{
	bool once = lifted && result_bytes >= LIFT_MIN_BYTES;

	return (uint64_t)frame_len + (once ? 1 : 2) * result_bytes;
}

int dispatch_gemm(struct rxd_conn *c, struct rxd_request *rq, const struct rxd_gemm_request *g,
		  struct rxd_error *err)
{
	struct rxd_job *job;

	if (!(job = dispatch_job_new(c, rq, err)))
		return err->status;
	job->g = g->g;
	job->c_dest = g->c_dest;
	for (int i = 0; i < RXD_JOB_REGIONS; i++)
		if (g->regions[i])
			dispatch_hold_region(job, g->regions[i]);
	if (job->regions[0])
		shm_note_job();
	for (int i = 0; i < 4; i++)
		if ((job->tensors[i] = g->tensors[i]))
			tensor_ref(g->tensors[i]);
	job->kind = RXD_JOB_GEMM;
	job->g.cancel = &job->cancel;
	job->sj.cost = sched_cost(job->g.flops);
	job->sj.priority = g->priority;
	/* C comes back inline unless it goes to the client's region or stays in a tensor. */
	job->held_bytes = dispatch_charge(rq->frame_bytes,
					  job->c_dest || job->tensors[3]
						  ? 0
						  : job->g.c_elems * sizeof(float),
					  true);
	/* The deadline counts from the frame's arrival; one too far to represent is none. */
	if (g->deadline_ms && g->deadline_ms <= (UINT64_MAX - rq->received_ns) / 1000000)
		job->sj.deadline_ns = rq->received_ns + g->deadline_ms * 1000000;
	return dispatch_submit(c, job, err);
}

int dispatch_nas(struct rxd_conn *c, struct rxd_request *rq, const struct rxd_nas_request *n,
		 struct rxd_error *err)
{
	struct rxd_job *job;

	if (!(job = dispatch_job_new(c, rq, err))) {
		nas_job_free(n->nas);
		return err->status;
	}
	job->nas = n->nas;
	for (int i = 0; i < 2; i++)
		if (n->regions[i])
			dispatch_hold_region(job, n->regions[i]);
	for (int i = 0; i < 2; i++)
		if ((job->tensors[i] = n->tensors[i]))
			tensor_ref(n->tensors[i]);
	job->kind = RXD_JOB_NAS;
	/* Fair sharing weighs it by its work like a GEMM; no priority or deadline fields. */
	job->sj.cost = sched_cost(nas_job_flops(job->nas));
	job->held_bytes = dispatch_charge(rq->frame_bytes, n->reply_bytes, false);
	return dispatch_submit(c, job, err);
}

int dispatch_search(struct rxd_conn *c, struct rxd_request *rq, struct rxd_search_job *sj,
		    struct rxd_error *err)
{
	struct rxd_budget *b = worker_engine(c->srv->worker)->budget;
	struct rxd_budget_stats bs;
	struct rxd_job *job;
	uint64_t reply;

	/* Up front, as a GEMM over the budget is: a search that can never fit says so now,
	 * not after waiting for its turn. */
	if (b) {
		budget_stats(b, &bs);
		if (sj->device_bytes > bs.budget_bytes) {
			error_set(err, RXD_S_TOO_BIG, "the search needs %llu bytes of device memory, "
				  "more than the daemon's whole budget (%llu); use a smaller batch, "
				  "C or layers", (unsigned long long)sj->device_bytes,
				  (unsigned long long)bs.budget_bytes);
			searchjob_free(sj);
			return err->status;
		}
		if (bs.quota_bytes && sj->device_bytes > bs.quota_bytes) {
			error_set(err, RXD_S_QUOTA, "the search needs %llu bytes of device memory, "
				  "more than one client's quota (%llu)",
				  (unsigned long long)sj->device_bytes,
				  (unsigned long long)bs.quota_bytes);
			searchjob_free(sj);
			return err->status;
		}
	}
	if (!(job = dispatch_job_new(c, rq, err))) {
		searchjob_free(sj);
		return err->status;
	}
	job->search = sj;
	for (int i = 0; i < 4; i++)
		if (sj->a.regions[i])
			dispatch_hold_region(job, sj->a.regions[i]);
	/* The state's region is the fifth at most: the search job holds that one. */
	if (sj->a.state_region) {
		shm_region_ref(sj->a.state_region);
		sj->state_region_held = true;
	}
	job->kind = RXD_JOB_SEARCH;
	job->sj.cost = sched_cost(searchjob_step_flops(sj));
	job->sj.priority = sj->a.priority;
	/* The reply: the alphas, the curve (a bound per step) and the state when inline. */
	reply = (64u << 10) + 48 * (sj->a.max_steps < (1u << 16) ? sj->a.max_steps : (1u << 16)) +
		(sj->a.want_state ? sj->state_bytes : 0);
	job->held_bytes = dispatch_charge(rq->frame_bytes, reply, false);
	return dispatch_submit(c, job, err);
}

int dispatch_tensor_create(struct rxd_conn *c, struct rxd_request *rq, struct rxd_tensor *x,
			   struct rxd_region *region, const void *src, struct rxd_error *err)
{
	struct rxd_job *job;

	if (!(job = dispatch_job_new(c, rq, err))) {
		tensor_unref(x);
		return err->status;
	}
	if (region)
		dispatch_hold_region(job, region);
	job->tensor_src = src;
	job->kind = RXD_JOB_TENSOR_CREATE;
	job->tensors[0] = x; /* the new tensor's one reference */
	job->sj.cost = sched_cost(x->floats);
	job->held_bytes = dispatch_charge(rq->frame_bytes, 0, false);
	c->tensors.pending++;
	return dispatch_submit(c, job, err);
}

int dispatch_tensor_read(struct rxd_conn *c, struct rxd_request *rq, struct rxd_tensor *x,
			 struct rxd_region *region, float *dest, struct rxd_error *err)
{
	struct rxd_job *job;

	if (!(job = dispatch_job_new(c, rq, err)))
		return err->status;
	if (region) {
		dispatch_hold_region(job, region);
		job->c_dest = dest;
	}
	tensor_ref(x);
	job->tensors[0] = x;
	job->kind = RXD_JOB_TENSOR_READ;
	job->sj.cost = sched_cost(x->floats);
	/* The data comes back inline unless it goes to the client's region. */
	job->held_bytes = dispatch_charge(rq->frame_bytes,
					  region ? 0 : x->floats * sizeof(float), true);
	return dispatch_submit(c, job, err);
}

int dispatch_cancel(struct rxd_conn *c, uint64_t request_id)
{
	return worker_cancel(c->srv->worker, c->id, request_id);
}

bool dispatch_job_finish(struct rxd_job *job)
{
	struct rxd_conn *c = job->conn;
	struct rxd_server *srv = c->srv;

	srv->stats.jobs_queued--;
	c->jobs_in_flight--;
	conn_jobs_uncharge(c, job->held_bytes);
	if (job->kind == RXD_JOB_TENSOR_CREATE) {
		c->tensors.pending--;
		/* Listed only when made and its client is still there to use it; otherwise
		 * the job's reference, the last, releases it in dispatch_job_release. */
		if (job->err.status == RXD_S_OK && !c->closing) {
			/* The table takes the job's reference; the job keeps one more for
			 * the reply. */
			if (tensor_add(&c->tensors, job->tensors[0]) == 0)
				tensor_ref(job->tensors[0]);
			else
				error_set(&job->err, RXD_S_INTERNAL, "no free slot in the "
					  "connection's tensor table: a bug");
		}
	}
	stats_job_busy(&srv->stats, job);
	if (job->in_place)
		shm_note_in_place();
	return !c->closing;
}

void dispatch_job_release(struct rxd_job *job)
{
	struct rxd_conn *c = job->conn;

	/* A connection that waited for its last reply before closing can go now. */
	if (c->close_after_write && c->writes_pending == 0 && !c->closing)
		conn_close(c);
	/* The regions were the worker's to read and write until now; unmapped here when the
	 * client unregistered them or left meanwhile. */
	dispatch_release_regions(job);
	dispatch_release_tensors(job);
	job_free(job);
	conn_unref(c);
}

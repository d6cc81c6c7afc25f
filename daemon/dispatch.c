/* dispatch.c: from a frame to a reply (loop thread only).
 *
 * Every request gets exactly one reply carrying its request_id: an answer, or an error with
 * a code and a sentence. Only a broken stream (a frame over the size limit) or a protocol
 * version mismatch closes the connection; everything else leaves it usable. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rxgemmd.h"

/* The status table's wire codes are the schema's (proto/rxgemm.proto): checked here, where
 * both are known. */
#define DISPATCH_STATUS_CHECK(name, wire, msg)                                                \
	_Static_assert((wire) == RXGEMM__STATUS__STATUS_##name,                               \
		       "status " #name ": its wire code differs from rxgemm.proto");
RXD_STATUS_TABLE(DISPATCH_STATUS_CHECK)
#undef DISPATCH_STATUS_CHECK

/* The one place an internal status becomes a reply's code. */
static Rxgemm__Status dispatch_wire_status(int status)
{
	return (Rxgemm__Status)status_wire_code(status);
}

void dispatch_error(struct rxd_conn *c, uint64_t request_id, int status, bool close_after,
		    const char *fmt, ...)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	char msg[RXD_ERROR_MAX], safe[4 * RXD_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply.request_id = request_id;
	reply.status = dispatch_wire_status(status);
	reply.error = msg;
	c->srv->stats.requests_rejected++;
	c->stats.requests_rejected++;
	log_escape(safe, sizeof(safe), msg); /* it may quote what the client sent */
	log_msg(LOG_DEBUG, "client %u request %llu: %s", c->id, (unsigned long long)request_id,
		safe);
	conn_send(c, &reply, close_after);
}

static void dispatch_hello(struct rxd_conn *c, const Rxgemm__Request *req)
{
	static char *capabilities[] = { "gemm", "status", "cancel", "shm", "tensor", "nas" };
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__HelloReply hello = RXGEMM__HELLO_REPLY__INIT;
	const Rxgemm__Hello *h = req->hello;

	if (c->hello_done) {
		dispatch_error(c, req->request_id, RXD_S_PROTOCOL, false,
			       "Hello was already exchanged on this connection");
		return;
	}
	if (c->refused) {
		dispatch_error(c, req->request_id, RXD_S_PERMISSION, true,
			       "uid %ld is not allowed to use this daemon (see allow-uids and "
			       "allow-gids in rxgemmd(8)); closing the connection",
			       c->peer_uid);
		return;
	}
	if (h->protocol_version != RXGEMM_PROTOCOL_VERSION) {
		dispatch_error(c, req->request_id, RXD_S_VERSION, true,
			       "client speaks protocol version %u, this daemon (%s) speaks %u; "
			       "closing the connection",
			       h->protocol_version, PACKAGE_VERSION, RXGEMM_PROTOCOL_VERSION);
		return;
	}
	/* The name goes into every client's status reply, whose readers (protobuf libraries,
	 * rxgemm status --json) reject strings that are not UTF-8: refuse such a name, and cut
	 * a long one only between characters. */
	if (h->client_name && !text_utf8_valid(h->client_name, strlen(h->client_name))) {
		dispatch_error(c, req->request_id, RXD_S_INVALID_ARGUMENT, false,
			       "client_name is not valid UTF-8");
		return;
	}
	c->hello_done = true;
	text_copy_utf8(c->name, sizeof(c->name),
		       h->client_name && *h->client_name ? h->client_name : "unnamed");
	{
		char name[4 * sizeof(c->name)];

		log_escape(name, sizeof(name), c->name);
		log_msg(LOG_INFO, "client %u is '%s'", c->id, name);
	}
	hello.protocol_version = RXGEMM_PROTOCOL_VERSION;
	hello.daemon_version = (char *)PACKAGE_VERSION;
	hello.device = c->srv->dev->description;
	hello.n_capabilities = sizeof(capabilities) / sizeof(capabilities[0]);
	/* "nas", the last, only when the device runs the NAS kernels. */
	if (!c->srv->worker->nasops)
		hello.n_capabilities--;
	hello.capabilities = capabilities;
	hello.max_frame_bytes = c->srv->cfg->max_frame_bytes;
	hello.client_id = c->id;
	reply.request_id = req->request_id;
	reply.body_case = RXGEMM__REPLY__BODY_HELLO;
	reply.hello = &hello;
	conn_send(c, &reply, false);
}

/* The scheduler's figures (fields 38-44). */
static void dispatch_queue_status(struct rxd_server *srv, Rxgemm__StatusReply *st)
{
	struct rxd_sched_stats q;

	worker_queue_stats(srv->worker, &q);
	st->max_queue = q.max_queue;
	st->client_max_queue = q.client_max_queue;
	st->jobs_waiting = q.queued;
	st->clients_waiting = q.clients;
	st->jobs_rejected_busy = q.rejected_total + q.rejected_client;
	st->jobs_expired = q.expired;
	st->jobs_cancelled = q.cancelled;
}

static void dispatch_status(struct rxd_conn *c, const Rxgemm__Request *req)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__StatusReply st;
	struct rxd_shm_stats shm;

	int ret = stats_status(&c->srv->stats, c->srv->dev, c->srv->worker->engine, &st);

	if (ret == 0 && ((ret = stats_status_sharing(c->srv, &st)) < 0 ||
			 (ret = stats_status_restrict(c->srv, c, &st)) < 0))
		stats_status_free(&st);
	if (ret < 0) {
		dispatch_error(c, req->request_id, RXD_S_NO_MEMORY, false,
			       "out of memory building the status");
		return;
	}
	shm_stats(&shm);
	st.shm_regions = shm.regions;
	st.shm_region_bytes = shm.bytes;
	st.shm_regions_registered = shm.registered;
	st.shm_jobs = shm.jobs;
	st.shm_jobs_in_place = shm.jobs_in_place;
	reply.request_id = req->request_id;
	reply.body_case = RXGEMM__REPLY__BODY_STATUS_REPLY;
	reply.status_reply = &st;
	dispatch_queue_status(c->srv, &st);
	conn_send(c, &reply, false);
	stats_status_free(&st);
}

/* RegisterRegion: the frame's one descriptor becomes a region of this connection. */
static void dispatch_register(struct rxd_conn *c, const Rxgemm__Request *req)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__RegionRegistered reg = RXGEMM__REGION_REGISTERED__INIT;
	unsigned n = c->n_frame_fds + c->frame_fds_lost;
	struct rxd_error err;
	int st, fd;

	if (n != 1) {
		/* server.c closes whatever came. */
		dispatch_error(c, req->request_id, RXD_S_REGION, false,
			       "RegisterRegion carries %u file descriptors; it takes exactly one "
			       "memfd (SCM_RIGHTS, sent with the frame)",
			       n);
		return;
	}
	fd = c->frame_fds[0];
	c->frame_fds[0] = -1; /* shm_register closes it, whatever the outcome */
	st = shm_register(&c->shm, fd, req->register_region->size, &reg.region_id, &reg.size,
			  &err);
	if (st != RXD_S_OK) {
		dispatch_error(c, req->request_id, st, false, "%s", err.msg);
		return;
	}
	log_msg(LOG_DEBUG, "client %u: region %u of %llu bytes registered", c->id,
		reg.region_id, (unsigned long long)reg.size);
	reply.request_id = req->request_id;
	reply.body_case = RXGEMM__REPLY__BODY_REGION_REGISTERED;
	reply.region_registered = &reg;
	conn_send(c, &reply, false);
}

static void dispatch_unregister(struct rxd_conn *c, const Rxgemm__Request *req)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__RegionUnregistered unreg = RXGEMM__REGION_UNREGISTERED__INIT;
	struct rxd_error err;
	int st;

	st = shm_unregister(&c->shm, req->unregister_region->region_id, &err);
	if (st != RXD_S_OK) {
		dispatch_error(c, req->request_id, st, false, "%s", err.msg);
		return;
	}
	unreg.region_id = req->unregister_region->region_id;
	reply.request_id = req->request_id;
	reply.body_case = RXGEMM__REPLY__BODY_REGION_UNREGISTERED;
	reply.region_unregistered = &unreg;
	conn_send(c, &reply, false);
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

/* Do two byte ranges [a, a + alen) and [b, b + blen) meet? */
static bool dispatch_overlap(const uint8_t *a, uint64_t alen, const uint8_t *b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
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

/* Point data (an operand's inline bytes in a view of the request) into the region ref
 * names instead, the field being name + "_region"; inline bytes and a region both given
 * is an error. *used is the region (no reference taken). A status code, with a sentence
 * in err. */
static int dispatch_region_bytes(struct rxd_conn *c, const Rxgemm__RegionRef *ref,
				 const char *name, ProtobufCBinaryData *data,
				 struct rxd_region **used, struct rxd_error *err)
{
	char field[32];
	uint8_t *p;
	int st;

	if (data->len) {
		return error_set(err, RXD_S_INVALID_ARGUMENT, "%s and %s_region are both given; "
				 "send one", name, name);
	}
	snprintf(field, sizeof(field), "%s_region", name);
	st = shm_resolve(&c->shm, ref, field, used, &p, err);
	if (st)
		return st;
	data->data = p;
	data->len = (size_t)ref->length;
	return RXD_S_OK;
}

/* Resolve the GEMM's region references into view, a copy of rq whose a, b and c point
 * into the regions (rq itself keeps its own bytes, which protobuf-c frees), and *c_dest to
 * where C goes (NULL: inline). Takes no reference. A status code, with a sentence in err. */
static int dispatch_gemm_regions(struct rxd_conn *c, const Rxgemm__GemmRequest *rq,
				 Rxgemm__GemmRequest *view, struct rxd_region *used[RXD_JOB_REGIONS],
				 float **c_dest, struct rxd_error *err)
{
	static const char *const names[3] = { "a", "b", "c" };
	const Rxgemm__RegionRef *refs[3] = { rq->a_region, rq->b_region, rq->c_region };
	ProtobufCBinaryData *data[3] = { &view->a, &view->b, &view->c };
	uint8_t *p;
	int st;

	*view = *rq;
	*c_dest = NULL;
	for (int i = 0; i < 3; i++)
		if (refs[i] &&
		    (st = dispatch_region_bytes(c, refs[i], names[i], data[i], &used[i], err)))
			return st;
	if (rq->c_out) {
		st = shm_resolve(&c->shm, rq->c_out, "c_out", &used[3], &p, err);
		if (st)
			return st;
		/* The device reads A and B (whole or piece by piece) while C is written: C may
		 * replace its own input in place, but not meet A, B or another C. */
		for (int i = 0; i < 3; i++) {
			if (!refs[i] || refs[i]->region_id != rq->c_out->region_id)
				continue;
			if (i == 2 && refs[i]->offset == rq->c_out->offset)
				continue;
			if (dispatch_overlap(p, rq->c_out->length, data[i]->data, data[i]->len)) {
				return error_set(err, RXD_S_INVALID_ARGUMENT,
						 "c_out overlaps %s_region in region %u%s",
						 names[i], rq->c_out->region_id,
						 i == 2 ? " (C may only replace itself, at the "
							  "same offset)"
							: "");
			}
		}
		*c_dest = (float *)(void *)p;
	}
	return RXD_S_OK;
}

/* The device tensors a GEMM names (request order: a, b, c, c_out; NULL: none), each
 * operand from one source only, and their sizes for gemm_validate_tensors. Takes no
 * reference. A status code, with a sentence in err. */
static int dispatch_gemm_tensors(struct rxd_conn *c, const Rxgemm__GemmRequest *rq,
				 struct rxd_tensor *used[4], uint64_t floats[3],
				 struct rxd_error *err)
{
	static const char *const names[4] = { "a_tensor", "b_tensor", "c_tensor", "c_out_tensor" };
	const uint32_t ids[4] = { rq->a_tensor, rq->b_tensor, rq->c_tensor, rq->c_out_tensor };
	const bool other[4] = { rq->a.len || rq->a_region, rq->b.len || rq->b_region,
				rq->c.len || rq->c_region, rq->c_out != NULL };
	int st;

	for (int i = 0; i < 4; i++) {
		used[i] = NULL;
		if (!ids[i])
			continue;
		if (other[i]) {
			static const char *const others[4] = { "a (inline or a_region)",
							       "b (inline or b_region)",
							       "c (inline or c_region)",
							       "c_out (a region)" };

			return error_set(err, RXD_S_INVALID_ARGUMENT, "%s and %s are both given; "
					 "send each operand one way", names[i], others[i]);
		}
		if ((st = tensor_find(&c->tensors, ids[i], names[i], &used[i], err)))
			return st;
		if (i < 3)
			floats[i] = used[i]->floats;
	}
	/* The kernel reads A and B while it writes C: C may replace its own input only. */
	if (used[3] && (used[3] == used[0] || used[3] == used[1])) {
		return error_set(err, RXD_S_INVALID_ARGUMENT, "c_out_tensor %u is also %s; the "
				 "result may only replace C's own input (c_tensor)",
				 rq->c_out_tensor, used[3] == used[0] ? "a_tensor" : "b_tensor");
	}
	return RXD_S_OK;
}

/* A zeroed job for req, or NULL when out of memory (answered; req freed). */
static struct rxd_job *dispatch_job_new(struct rxd_conn *c, Rxgemm__Request *req)
{
	struct rxd_job *job = calloc(1, sizeof(*job));

	if (!job) {
		dispatch_error(c, req->request_id, RXD_S_NO_MEMORY, false,
			       "out of memory for a new job");
		rxgemm__request__free_unpacked(req, NULL);
	}
	return job;
}

/* Tie a checked job to its connection and request (which it owns from here on). */
static void dispatch_job_bind(struct rxd_job *job, struct rxd_conn *c, Rxgemm__Request *req,
			      uint64_t received_ns)
{
	job->conn = c;
	job->conn_id = c->id;
	job->request_id = req->request_id;
	job->req = req;
	job->received_ns = received_ns;
	atomic_init(&job->cancel, false);
}

/* Can c hold a job charged need bytes (job->held_bytes) now? A status code, with a
 * sentence in err: TOO_BIG when the job alone is over the bound, BUSY while what c holds
 * already leaves no room for it (its replies read, it may retry). */
static int dispatch_admit(struct rxd_conn *c, uint64_t need, struct rxd_error *err)
{
	uint64_t bound = c->srv->cfg->client_max_memory_bytes;
	uint64_t held = c->jobs_bytes + c->out_bytes;

	if (!bound)
		return RXD_S_OK;
	if (need > bound) {
		return error_set(err, RXD_S_TOO_BIG, "this request and its result need %llu bytes "
				 "of the daemon's memory, more than one client may make it hold "
				 "(client-max-memory %llu)", (unsigned long long)need,
				 (unsigned long long)bound);
	}
	if (need > bound - (held < bound ? held : bound)) {
		return error_set(err, RXD_S_BUSY, "this client's jobs and unread replies hold "
				 "%llu bytes of the daemon's memory and this one needs %llu more, "
				 "over its bound (client-max-memory %llu); read the replies and "
				 "retry", (unsigned long long)held, (unsigned long long)need,
				 (unsigned long long)bound);
	}
	return RXD_S_OK;
}

/* Queue job (its request, cost, cancel flag and held_bytes set) with the scheduler, or
 * answer why not (a bound reached: BUSY or TOO_BIG) and free it. */
static void dispatch_submit(struct rxd_conn *c, struct rxd_job *job)
{
	struct rxd_server *srv = c->srv;
	Rxgemm__Request *req = job->req;
	struct rxd_error err;
	int ret, st;

	if ((st = dispatch_admit(c, job->held_bytes, &err))) {
		dispatch_error(c, req->request_id, st, false, "%s", err.msg);
		dispatch_release_regions(job);
		if (job->kind == RXD_JOB_TENSOR_CREATE)
			c->tensors.pending--;
		dispatch_release_tensors(job);
		job_free(job);
		return;
	}
	job->submitted_ns = now_ns();
	ret = worker_submit(srv->worker, job);
	if (ret < 0) {
		struct rxd_sched_stats q;

		worker_queue_stats(srv->worker, &q);
		if (ret == -EBUSY)
			dispatch_error(c, req->request_id, RXD_S_BUSY, false,
				       "this client has %u jobs waiting already, its bound "
				       "(client-max-queue); retry when some have finished",
				       q.client_max_queue);
		else if (ret == -ENOBUFS)
			dispatch_error(c, req->request_id, RXD_S_BUSY, false,
				       "the daemon's queue is full (%u jobs waiting, its bound "
				       "max-queue); retry later",
				       q.max_queue);
		else if (ret == -ESHUTDOWN)
			dispatch_error(c, req->request_id, RXD_S_SHUTDOWN, false,
				       "the daemon is shutting down");
		else if (ret == -ENODEV)
			dispatch_error(c, req->request_id, RXD_S_DEVICE, false,
				       "the OpenCL device was lost; rxgemmd is exiting to be "
				       "restarted");
		else
			dispatch_error(c, req->request_id, RXD_S_NO_MEMORY, false,
				       "out of memory for queueing the job");
		dispatch_release_regions(job);
		if (job->kind == RXD_JOB_TENSOR_CREATE)
			c->tensors.pending--;
		dispatch_release_tensors(job);
		job_free(job); /* frees req too */
		return;
	}
	/* The worker may finish the job at once, but only this (the loop) thread delivers
	 * it, after this returns. */
	conn_ref(c);
	c->jobs_in_flight++;
	c->jobs_bytes += job->held_bytes;
	srv->stats.jobs_queued++;
}

/* What a job is charged to its connection: its request (about the frame's bytes, held
 * unpacked until the reply) and twice its result, which exists as the worker's buffer and
 * as the reply packed from it at once. */
static uint64_t dispatch_charge(size_t frame_len, uint64_t result_bytes)
{
	return (uint64_t)frame_len + 2 * result_bytes;
}

/* Takes ownership of req, decoded from a frame of frame_len bytes. */
static void dispatch_gemm(struct rxd_conn *c, Rxgemm__Request *req, size_t frame_len,
			  uint64_t received_ns)
{
	struct rxd_server *srv = c->srv;
	struct rxd_job *job;
	Rxgemm__GemmRequest view;
	struct rxd_region *used[RXD_JOB_REGIONS] = { NULL };
	struct rxd_tensor *tensors[4] = { NULL };
	uint64_t tensor_floats[3] = { 0, 0, 0 };
	struct rxd_error err;
	uint64_t deadline_ms;
	int st;

	if (!(job = dispatch_job_new(c, req)))
		return;
	st = dispatch_gemm_regions(c, req->gemm, &view, used, &job->c_dest, &err);
	if (st == RXD_S_OK)
		st = dispatch_gemm_tensors(c, req->gemm, tensors, tensor_floats, &err);
	if (st == RXD_S_OK)
		st = gemm_validate_tensors(&view, &srv->limits, tensor_floats, &job->g, &err);
	if (st == RXD_S_OK && tensors[3] && tensors[3]->floats < job->g.c_elems) {
		st = error_set(&err, RXD_S_INVALID_ARGUMENT, "c_out_tensor holds %llu floats but "
			       "C needs %llu", (unsigned long long)tensors[3]->floats,
			       (unsigned long long)job->g.c_elems);
	}
	if (st == RXD_S_OK && job->c_dest &&
	    req->gemm->c_out->length / sizeof(float) < job->g.c_elems) {
		st = error_set(&err, RXD_S_INVALID_ARGUMENT, "c_out holds %llu bytes but C needs "
			       "%llu", (unsigned long long)req->gemm->c_out->length,
			       (unsigned long long)job->g.c_elems * sizeof(float));
	}
	if (st != RXD_S_OK) {
		dispatch_error(c, req->request_id, st, false, "%s", err.msg);
		rxgemm__request__free_unpacked(req, NULL);
		free(job);
		return;
	}
	if (req->gemm->priority >= RXD_SCHED_LEVELS) {
		dispatch_error(c, req->request_id, RXD_S_INVALID_ARGUMENT, false,
			       "priority %u is out of range (0 to %d, higher first)",
			       req->gemm->priority, RXD_SCHED_LEVELS - 1);
		rxgemm__request__free_unpacked(req, NULL);
		free(job);
		return;
	}
	for (int i = 0; i < RXD_JOB_REGIONS; i++)
		if (used[i])
			dispatch_hold_region(job, used[i]);
	if (job->regions[0])
		shm_note_job();
	/* The job's tensors in the column-major problem's order: a row-major request
	 * swapped its operands (gemm_validate). */
	if (req->gemm->layout == RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR) {
		struct rxd_tensor *x = tensors[0];

		tensors[0] = tensors[1];
		tensors[1] = x;
	}
	for (int i = 0; i < 4; i++)
		if ((job->tensors[i] = tensors[i]))
			tensor_ref(tensors[i]);
	dispatch_job_bind(job, c, req, received_ns);
	job->g.cancel = &job->cancel;
	job->sj.cost = sched_cost(job->g.flops);
	job->sj.priority = req->gemm->priority;
	/* C comes back inline unless it goes to the client's region or stays in a tensor. */
	job->held_bytes = dispatch_charge(frame_len, job->c_dest || job->tensors[3]
							     ? 0 : job->g.c_elems * sizeof(float));
	/* The deadline counts from the frame's arrival; one too far to represent is none. */
	deadline_ms = req->gemm->deadline_ms;
	if (deadline_ms && deadline_ms <= (UINT64_MAX - received_ns) / 1000000)
		job->sj.deadline_ns = received_ns + deadline_ms * 1000000;
	dispatch_submit(c, job);
}

static void dispatch_cancel(struct rxd_conn *c, const Rxgemm__Request *req)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__CancelReply cancel = RXGEMM__CANCEL_REPLY__INIT;
	uint64_t target = req->cancel->target_request_id;

	cancel.outcome = worker_cancel(c->srv->worker, c->id, target);
	log_msg(LOG_DEBUG, "client %u request %llu: cancel %llu: %s", c->id,
		(unsigned long long)req->request_id, (unsigned long long)target,
		cancel.outcome == RXGEMM__CANCEL_OUTCOME__CANCEL_QUEUED    ? "was queued"
		: cancel.outcome == RXGEMM__CANCEL_OUTCOME__CANCEL_RUNNING ? "is running"
									   : "not found");
	reply.request_id = req->request_id;
	reply.body_case = RXGEMM__REPLY__BODY_CANCEL;
	reply.cancel = &cancel;
	conn_send(c, &reply, false);
}

/* Takes ownership of req. The network is checked and planned here; the worker runs it. */
/* The weights and input a NAS request names in its regions: view is a copy of rq whose
 * weights and input bytes point into them. Takes no reference. A status code, with a
 * sentence in err. */
static int dispatch_nas_regions(struct rxd_conn *c, const Rxgemm__NasEvalRequest *rq,
				Rxgemm__NasEvalRequest *view, struct rxd_region *used[2],
				struct rxd_error *err)
{
	static const char *const names[2] = { "weights", "input" };
	const Rxgemm__RegionRef *refs[2] = { rq->weights_region, rq->input_region };
	ProtobufCBinaryData *data[2];
	int st;

	*view = *rq;
	data[0] = &view->weights;
	data[1] = &view->input;
	for (int i = 0; i < 2; i++)
		if (refs[i] &&
		    (st = dispatch_region_bytes(c, refs[i], names[i], data[i], &used[i], err)))
			return st;
	return RXD_S_OK;
}

/* The bytes a NAS reply may take: the logits when asked for (the request's batch and
 * classes, or their defaults), the timed runs and a bound for the rest. */
static uint64_t dispatch_nas_reply_bytes(const Rxgemm__NasEvalRequest *rq)
{
	uint64_t batch = rq->batch > 0 ? (uint64_t)rq->batch : 1;
	uint64_t classes = rq->classes > 0 ? (uint64_t)rq->classes
			   : rq->dataset == RXGEMM__NAS_DATASET__NAS_IMAGENET ? 1000 : 10;
	uint64_t bytes = (64u << 10) + 16 * (uint64_t)rq->repeat;

	if (rq->want_logits)
		bytes += batch * classes * sizeof(float);
	return bytes;
}

/* The weights and input tensors a NAS request names (NULL: none), each the only source of
 * its data. Takes no reference. A status code, with a sentence in err. */
static int dispatch_nas_tensors(struct rxd_conn *c, const Rxgemm__NasEvalRequest *rq,
				struct rxd_tensor *used[2], struct rxd_error *err)
{
	static const char *const names[2] = { "weights_tensor", "input_tensor" };
	const uint32_t ids[2] = { rq->weights_tensor, rq->input_tensor };
	const bool other[2] = { rq->weights.len || rq->weights_region,
				rq->input.len || rq->input_region };
	int st;

	for (int i = 0; i < 2; i++) {
		if (!ids[i])
			continue;
		if (other[i]) {
			return error_set(err, RXD_S_INVALID_ARGUMENT, "%s and %s (inline or a "
					 "region) are both given; send one", names[i],
					 i ? "input" : "weights");
		}
		if ((st = tensor_find(&c->tensors, ids[i], names[i], &used[i], err)))
			return st;
	}
	return RXD_S_OK;
}

static void dispatch_nas(struct rxd_conn *c, Rxgemm__Request *req, size_t frame_len,
			 uint64_t received_ns)
{
	struct rxd_server *srv = c->srv;
	struct rxd_job *job;
	Rxgemm__NasEvalRequest view;
	struct rxd_region *used[2] = { NULL };
	struct rxd_tensor *tensors[2] = { NULL };
	struct rxd_error err;
	int st;

	if (!(job = dispatch_job_new(c, req)))
		return;
	st = dispatch_nas_regions(c, req->nas_eval, &view, used, &err);
	if (st == RXD_S_OK)
		st = dispatch_nas_tensors(c, req->nas_eval, tensors, &err);
	if (st == RXD_S_OK)
		st = nas_job_prepare(&view, &srv->limits, srv->cfg->max_frame_bytes, &job->nas,
				     &err);
	for (int i = 0; i < 2 && st == RXD_S_OK; i++) {
		uint64_t want = i ? nas_job_input_floats(job->nas) : nas_job_blob_floats(job->nas);

		if (tensors[i] && tensors[i]->floats != want) {
			st = error_set(&err, RXD_S_INVALID_ARGUMENT, "%s_tensor holds %llu "
				       "floats; this network's %s has %llu",
				       i ? "input" : "weights",
				       (unsigned long long)tensors[i]->floats,
				       i ? "input (batch x 3 x height x width)" : "state_dict",
				       (unsigned long long)want);
			nas_job_free(job->nas);
			job->nas = NULL;
		}
	}
	if (st != RXD_S_OK) {
		dispatch_error(c, req->request_id, st, false, "%s", err.msg);
		rxgemm__request__free_unpacked(req, NULL);
		free(job);
		return;
	}
	for (int i = 0; i < 2; i++)
		if (used[i])
			dispatch_hold_region(job, used[i]);
	for (int i = 0; i < 2; i++)
		if ((job->tensors[i] = tensors[i]))
			tensor_ref(tensors[i]);
	job->kind = RXD_JOB_NAS;
	dispatch_job_bind(job, c, req, received_ns);
	/* Fair sharing weighs it by its work like a GEMM; no priority or deadline fields. */
	job->sj.cost = sched_cost(nas_job_flops(job->nas));
	job->held_bytes = dispatch_charge(frame_len, dispatch_nas_reply_bytes(req->nas_eval));
	dispatch_submit(c, job);
}

/* TensorCreate: checked here, made by the device worker, listed when it comes back. */
static void dispatch_tensor_create(struct rxd_conn *c, Rxgemm__Request *req,
				   size_t frame_len, uint64_t received_ns)
{
	const Rxgemm__TensorCreate *tc = req->tensor_create;
	struct rxd_tensors *tab = &c->tensors;
	struct rxd_region *region = NULL;
	struct rxd_tensor *x = NULL;
	struct rxd_job *job;
	struct rxd_error err;
	uint8_t *p = NULL;
	int st;

	if (!(job = dispatch_job_new(c, req)))
		return;
	st = tensor_new(tc->dims, tc->n_dims, c->srv->limits.max_buffer_bytes, "dims", &x, &err);
	if (st == RXD_S_OK && tab->count + tab->pending >= RXD_TENSOR_MAX) {
		st = error_set(&err, RXD_S_TOO_BIG, "this connection has %u tensors already, the "
			       "most it may have; free some", tab->count + tab->pending);
	}
	if (st == RXD_S_OK && tc->data.len && tc->region) {
		st = error_set(&err, RXD_S_INVALID_ARGUMENT, "data and region are both given; "
			       "send one (or neither, for zeros)");
	}
	if (st == RXD_S_OK && tc->region)
		st = shm_resolve(&c->shm, tc->region, "region", &region, &p, &err);
	if (st == RXD_S_OK && (tc->data.len || region) &&
	    (region ? tc->region->length : tc->data.len) != x->floats * sizeof(float)) {
		st = error_set(&err, RXD_S_INVALID_ARGUMENT, "%s holds %llu bytes but a tensor of "
			       "%llu floats takes %llu", region ? "region" : "data",
			       (unsigned long long)(region ? tc->region->length : tc->data.len),
			       (unsigned long long)x->floats,
			       (unsigned long long)(x->floats * sizeof(float)));
	}
	if (st != RXD_S_OK) {
		dispatch_error(c, req->request_id, st, false, "%s", err.msg);
		tensor_unref(x);
		rxgemm__request__free_unpacked(req, NULL);
		free(job);
		return;
	}
	if (region) {
		dispatch_hold_region(job, region);
		job->tensor_src = p;
	} else if (tc->data.len) {
		job->tensor_src = tc->data.data;
	}
	job->kind = RXD_JOB_TENSOR_CREATE;
	job->tensors[0] = x; /* the new tensor's one reference */
	dispatch_job_bind(job, c, req, received_ns);
	job->sj.cost = sched_cost(x->floats);
	job->held_bytes = dispatch_charge(frame_len, 0);
	tab->pending++;
	dispatch_submit(c, job);
}

/* TensorRead: the device worker copies the tensor into the reply or a region. */
static void dispatch_tensor_read(struct rxd_conn *c, Rxgemm__Request *req, size_t frame_len,
				 uint64_t received_ns)
{
	const Rxgemm__TensorRead *tr = req->tensor_read;
	struct rxd_region *region = NULL;
	struct rxd_tensor *x;
	struct rxd_job *job;
	struct rxd_error err;
	uint8_t *p = NULL;
	uint64_t bytes = 0;
	int st;

	if (!(job = dispatch_job_new(c, req)))
		return;
	st = tensor_find(&c->tensors, tr->tensor_id, "tensor_id", &x, &err);
	if (st == RXD_S_OK)
		bytes = x->floats * sizeof(float);
	if (st == RXD_S_OK && tr->out) {
		st = shm_resolve(&c->shm, tr->out, "out", &region, &p, &err);
		if (st == RXD_S_OK && tr->out->length < bytes) {
			st = error_set(&err, RXD_S_INVALID_ARGUMENT, "out holds %llu bytes but "
				       "tensor %u has %llu", (unsigned long long)tr->out->length,
				       tr->tensor_id, (unsigned long long)bytes);
		}
	} else if (st == RXD_S_OK && bytes > c->srv->cfg->max_frame_bytes - 4096) {
		st = error_set(&err, RXD_S_TOO_BIG, "tensor %u (%llu bytes) does not fit a reply "
			       "frame (max-frame %llu bytes); read it into a region", tr->tensor_id,
			       (unsigned long long)bytes,
			       (unsigned long long)c->srv->cfg->max_frame_bytes);
	}
	if (st != RXD_S_OK) {
		dispatch_error(c, req->request_id, st, false, "%s", err.msg);
		rxgemm__request__free_unpacked(req, NULL);
		free(job);
		return;
	}
	if (region) {
		dispatch_hold_region(job, region);
		job->c_dest = (float *)(void *)p;
	}
	tensor_ref(x);
	job->tensors[0] = x;
	job->kind = RXD_JOB_TENSOR_READ;
	dispatch_job_bind(job, c, req, received_ns);
	job->sj.cost = sched_cost(x->floats);
	/* The data comes back inline unless it goes to the client's region. */
	job->held_bytes = dispatch_charge(frame_len, region ? 0 : bytes);
	dispatch_submit(c, job);
}

/* TensorFree: unlisted at once; a job in flight that uses it keeps it until answered. */
static void dispatch_tensor_free(struct rxd_conn *c, const Rxgemm__Request *req)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__TensorFreed freed = RXGEMM__TENSOR_FREED__INIT;
	struct rxd_error err;
	int st;

	st = tensor_remove(&c->tensors, req->tensor_free->tensor_id, &err);
	if (st != RXD_S_OK) {
		dispatch_error(c, req->request_id, st, false, "%s", err.msg);
		return;
	}
	freed.tensor_id = req->tensor_free->tensor_id;
	reply.request_id = req->request_id;
	reply.body_case = RXGEMM__REPLY__BODY_TENSOR_FREED;
	reply.tensor_freed = &freed;
	conn_send(c, &reply, false);
}

/* Answer a frame that the pre-scan refused. Unknown fields mean the peer speaks a schema we
 * do not: refusing is safer than silently dropping what it asked for. The request_id is
 * read from the bytes when they are well-formed. */
static void dispatch_wire_fault(struct rxd_conn *c, const uint8_t *body, size_t len,
				const struct wirecheck_result *wc)
{
	uint64_t id = 0;

	if (wc->fault != WIRECHECK_TRUNCATED && wc->fault != WIRECHECK_MALFORMED &&
	    wc->fault != WIRECHECK_WIRE_TYPE && wirecheck_varint_field(body, len, 1, &id) < 0)
		id = 0;
	switch (wc->fault) {
	case WIRECHECK_UNKNOWN:
		if (wc->depth == 0 && !wc->top_oneof_set)
			dispatch_error(c, id, RXD_S_UNSUPPORTED, false,
				       "request kind (field %u) is not served by this daemon (%s)",
				       wc->field, PACKAGE_VERSION);
		else
			dispatch_error(c, id, RXD_S_PROTOCOL, false,
				       "request carries unknown field %u (in %s)", wc->field,
				       wc->message);
		return;
	case WIRECHECK_TOO_MANY:
		dispatch_error(c, id, RXD_S_PROTOCOL, false,
			       "field %u of %s is given more than %u times", wc->field, wc->message,
			       RXD_REQUEST_MAX_ELEMENTS);
		return;
	case WIRECHECK_DEPTH:
		dispatch_error(c, id, RXD_S_PROTOCOL, false,
			       "field %u of %s nests messages more than %u deep", wc->field,
			       wc->message, RXD_REQUEST_MAX_DEPTH);
		return;
	default:
		if (wc->field)
			dispatch_error(c, 0, RXD_S_PROTOCOL, false,
				       "a frame of %zu bytes is not a valid Request message: %s at "
				       "byte %zu (field %u of %s)",
				       len, wirecheck_fault_name(wc->fault), wc->offset, wc->field,
				       wc->message);
		else
			dispatch_error(c, 0, RXD_S_PROTOCOL, false,
				       "a frame of %zu bytes is not a valid Request message: %s at "
				       "byte %zu (in %s)",
				       len, wirecheck_fault_name(wc->fault), wc->offset,
				       wc->message);
		return;
	}
}

void dispatch_frame(struct rxd_conn *c, uint8_t *body, size_t len)
{
	static const struct wirecheck_limits lim = { .max_depth = RXD_REQUEST_MAX_DEPTH,
						     .max_elements = RXD_REQUEST_MAX_ELEMENTS };
	uint64_t received_ns = now_ns();
	struct wirecheck_result wc;
	Rxgemm__Request *req;

	/* Before the unpack, which would cost many times the frame on small fields. */
	if (wirecheck_message(&rxgemm__request__descriptor, body, len, &lim, &wc) != 0) {
		dispatch_wire_fault(c, body, len, &wc);
		free(body);
		return;
	}
	req = rxgemm__request__unpack(NULL, len, body);
	free(body); /* protobuf-c copied what it needs */
	if (!req) {
		dispatch_error(c, 0, RXD_S_PROTOCOL, false,
			       "a frame of %zu bytes is not a valid Request message", len);
		return;
	}
	if ((c->n_frame_fds || c->frame_fds_lost) &&
	    req->body_case != RXGEMM__REQUEST__BODY_REGISTER_REGION) {
		/* server.c closes them after we return. */
		dispatch_error(c, req->request_id, RXD_S_PROTOCOL, false,
			       "the request carries %u file descriptor%s; only RegisterRegion "
			       "takes one",
			       c->n_frame_fds + c->frame_fds_lost,
			       c->n_frame_fds + c->frame_fds_lost == 1 ? "" : "s");
		goto out;
	}
	if (req->body_case == RXGEMM__REQUEST__BODY_HELLO) {
		dispatch_hello(c, req);
		goto out;
	}
	if (!c->hello_done) {
		dispatch_error(c, req->request_id, RXD_S_PROTOCOL, false,
			       "the first request on a connection must be Hello");
		goto out;
	}
	if (c->srv->stopping) {
		dispatch_error(c, req->request_id, RXD_S_SHUTDOWN, false,
			       "the daemon is shutting down");
		goto out;
	}
	switch (req->body_case) {
	case RXGEMM__REQUEST__BODY_GEMM:
		dispatch_gemm(c, req, len, received_ns);
		return; /* req now belongs to the job */
	case RXGEMM__REQUEST__BODY_STATUS:
		dispatch_status(c, req);
		break;
	case RXGEMM__REQUEST__BODY_CANCEL:
		dispatch_cancel(c, req);
		break;
	case RXGEMM__REQUEST__BODY_REGISTER_REGION:
		dispatch_register(c, req);
		break;
	case RXGEMM__REQUEST__BODY_UNREGISTER_REGION:
		dispatch_unregister(c, req);
		break;
	case RXGEMM__REQUEST__BODY_NAS_EVAL:
		dispatch_nas(c, req, len, received_ns);
		return; /* req now belongs to the job */
	case RXGEMM__REQUEST__BODY_TENSOR_CREATE:
		dispatch_tensor_create(c, req, len, received_ns);
		return; /* req now belongs to the job */
	case RXGEMM__REQUEST__BODY_TENSOR_READ:
		dispatch_tensor_read(c, req, len, received_ns);
		return; /* req now belongs to the job */
	case RXGEMM__REQUEST__BODY_TENSOR_FREE:
		dispatch_tensor_free(c, req);
		break;
	default:
		dispatch_error(c, req->request_id, RXD_S_PROTOCOL, false,
			       "request has no body");
		break;
	}
out:
	rxgemm__request__free_unpacked(req, NULL);
}

void dispatch_job_done(struct rxd_job *job, void *arg)
{
	struct rxd_server *srv = arg;
	struct rxd_conn *c = job->conn;
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__GemmReply gemm = RXGEMM__GEMM_REPLY__INIT;
	Rxgemm__NasEvalReply nas;
	Rxgemm__TensorCreated created = RXGEMM__TENSOR_CREATED__INIT;
	Rxgemm__TensorData data = RXGEMM__TENSOR_DATA__INIT;
	char why[4 * RXD_ERROR_MAX];
	Rxgemm__Timings t = RXGEMM__TIMINGS__INIT;
	uint64_t done_ns = now_ns();

	srv->stats.jobs_queued--;
	c->jobs_in_flight--;
	c->jobs_bytes -= job->held_bytes;
	if (job->kind == RXD_JOB_TENSOR_CREATE) {
		c->tensors.pending--;
		/* Listed only when made and its client is still there to use it; otherwise
		 * the job's reference, the last, releases it below. */
		if (job->err.status == RXD_S_OK && !c->closing) {
			if (tensor_add(&c->tensors, job->tensors[0]) == 0) {
				created.tensor_id = job->tensors[0]->id;
				created.bytes = job->tensors[0]->floats * sizeof(float);
				job->tensors[0] = NULL; /* the table's now */
			} else {
				error_set(&job->err, RXD_S_INTERNAL, "no free slot in the "
					 "connection's tensor table: a bug");
			}
		}
	}
	stats_job_busy(&srv->stats, job);
	if (job->in_place)
		shm_note_in_place();
	if (c->closing)
		goto out; /* nobody to answer */
	t.queued_ns = job->started_ns - job->submitted_ns;
	t.h2d_ns = job->dev_t.h2d_ns;
	t.kernel_ns = job->dev_t.kernel_ns;
	t.d2h_ns = job->dev_t.d2h_ns;
	reply.request_id = job->request_id;
	reply.status = dispatch_wire_status(job->err.status);
	reply.timings = &t;
	if (job->err.status == RXD_S_OK && job->kind == RXD_JOB_NAS) {
		if (nas_job_reply(job->nas, &nas) == 0) {
			reply.body_case = RXGEMM__REPLY__BODY_NAS_EVAL;
			reply.nas_eval = &nas;
		} else {
			reply.status = dispatch_wire_status(RXD_S_NO_MEMORY);
			reply.error = (char *)"out of memory building the reply";
		}
	} else if (job->err.status == RXD_S_OK && job->kind == RXD_JOB_TENSOR_CREATE) {
		reply.body_case = RXGEMM__REPLY__BODY_TENSOR_CREATED;
		reply.tensor_created = &created;
	} else if (job->err.status == RXD_S_OK && job->kind == RXD_JOB_TENSOR_READ) {
		data.bytes = job->tensors[0]->floats * sizeof(float);
		if (!job->c_dest) {
			data.data.data = (uint8_t *)job->c_out;
			data.data.len = data.bytes;
		}
		reply.body_case = RXGEMM__REPLY__BODY_TENSOR_DATA;
		reply.tensor_data = &data;
	} else if (job->err.status == RXD_S_OK) {
		/* Else C is in the client's region, or in a tensor, already. */
		if (!job->c_dest && !job->tensors[3]) {
			gemm.c.data = (uint8_t *)job->c_out;
			gemm.c.len = job->g.c_elems * sizeof(float);
		}
		gemm.flops = job->g.flops;
		gemm.kernel = (char *)job->kernel;
		reply.body_case = RXGEMM__REPLY__BODY_GEMM;
		reply.gemm = &gemm;
	} else {
		reply.error = job->err.msg;
	}
	t.total_ns = now_ns() - job->received_ns;
	/* Tensor creations and reads are no jobs of the statistics (no FLOPs, no shape): the
	 * clients' tensor figures tell of them. */
	if (job->kind == RXD_JOB_GEMM || job->kind == RXD_JOB_NAS)
		stats_job_done(&srv->stats, job, c, &t);
	log_escape(why, sizeof(why), job->err.msg); /* a NAS error may quote the request */
	if (job->kind == RXD_JOB_TENSOR_CREATE || job->kind == RXD_JOB_TENSOR_READ)
		log_msg(LOG_DEBUG, "client %u request %llu: tensor %s %s%s%s", c->id,
			(unsigned long long)job->request_id,
			job->kind == RXD_JOB_TENSOR_READ ? "read" : "create",
			job->err.status ? "failed" : "done", job->err.status ? ": " : "",
			job->err.status ? why : "");
	else if (job->kind == RXD_JOB_NAS)
		log_msg(LOG_DEBUG, "client %u request %llu: nas_eval %s in %.3f ms%s%s", c->id,
			(unsigned long long)job->request_id, job->err.status ? "failed" : "done",
			(double)(done_ns - job->received_ns) / 1e6, job->err.status ? ": " : "",
			job->err.status ? why : "");
	else
		log_msg(LOG_DEBUG,
			"client %u request %llu: gemm %lldx%lldx%lld %s in %.3f ms (kernel %.3f ms, "
			"%.2f GFLOPS)%s%s",
			c->id, (unsigned long long)job->request_id, (long long)job->g.user_m,
			(long long)job->g.user_n, (long long)job->g.user_k,
			job->err.status ? "failed" : "done",
			(double)(done_ns - job->received_ns) / 1e6, (double)t.kernel_ns / 1e6,
			t.kernel_ns ? (double)job->g.flops / (double)t.kernel_ns : 0.0,
			job->err.status ? ": " : "", job->err.status ? why : "");
	conn_send(c, &reply, false);
out:
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

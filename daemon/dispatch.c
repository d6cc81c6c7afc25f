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

void dispatch_error(struct rxd_conn *c, uint64_t request_id, int status, bool close_after,
		    const char *fmt, ...)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	char msg[RXD_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply.request_id = request_id;
	reply.status = status;
	reply.error = msg;
	c->srv->stats.requests_rejected++;
	log_msg(LOG_DEBUG, "client %u request %llu: %s", c->id, (unsigned long long)request_id,
		msg);
	conn_send(c, &reply, close_after);
}

static void dispatch_hello(struct rxd_conn *c, const Rxgemm__Request *req)
{
	static char *capabilities[] = { "gemm", "status", "nas" };
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__HelloReply hello = RXGEMM__HELLO_REPLY__INIT;
	const Rxgemm__Hello *h = req->hello;

	if (c->hello_done) {
		dispatch_error(c, req->request_id, RXGEMM__STATUS__STATUS_PROTOCOL, false,
			       "Hello was already exchanged on this connection");
		return;
	}
	if (h->protocol_version != RXGEMM_PROTOCOL_VERSION) {
		dispatch_error(c, req->request_id, RXGEMM__STATUS__STATUS_VERSION, true,
			       "client speaks protocol version %u, this daemon (%s) speaks %u; "
			       "closing the connection",
			       h->protocol_version, PACKAGE_VERSION, RXGEMM_PROTOCOL_VERSION);
		return;
	}
	c->hello_done = true;
	snprintf(c->name, sizeof(c->name), "%s", h->client_name && *h->client_name
							 ? h->client_name
							 : "unnamed");
	log_msg(LOG_INFO, "client %u is '%s'", c->id, c->name);
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

static void dispatch_status(struct rxd_conn *c, const Rxgemm__Request *req)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__StatusReply st;

	if (stats_status(&c->srv->stats, c->srv->dev, c->srv->worker->engine, &st) < 0) {
		dispatch_error(c, req->request_id, RXGEMM__STATUS__STATUS_NO_MEMORY, false,
			       "out of memory building the status");
		return;
	}
	reply.request_id = req->request_id;
	reply.body_case = RXGEMM__REPLY__BODY_STATUS_REPLY;
	reply.status_reply = &st;
	conn_send(c, &reply, false);
	stats_status_free(&st);
}

/* Takes ownership of req. */
static void dispatch_gemm(struct rxd_conn *c, Rxgemm__Request *req, uint64_t received_ns)
{
	struct rxd_server *srv = c->srv;
	struct rxd_job *job;
	char err[RXD_ERROR_MAX];
	int st;

	job = calloc(1, sizeof(*job));
	if (!job) {
		dispatch_error(c, req->request_id, RXGEMM__STATUS__STATUS_NO_MEMORY, false,
			       "out of memory for a new job");
		rxgemm__request__free_unpacked(req, NULL);
		return;
	}
	st = gemm_validate(req->gemm, &srv->limits, &job->g, err, sizeof(err));
	if (st != RXGEMM__STATUS__STATUS_OK) {
		dispatch_error(c, req->request_id, st, false, "%s", err);
		rxgemm__request__free_unpacked(req, NULL);
		free(job);
		return;
	}
	job->conn = c;
	job->conn_id = c->id;
	job->abandoned = &c->abandoned;
	job->request_id = req->request_id;
	job->req = req;
	job->received_ns = received_ns;
	conn_ref(c);
	c->jobs_in_flight++;
	srv->stats.jobs_queued++;
	job->submitted_ns = now_ns();
	worker_submit(srv->worker, job);
}

/* Takes ownership of req. The network is checked and planned here; the worker runs it. */
static void dispatch_nas(struct rxd_conn *c, Rxgemm__Request *req, uint64_t received_ns)
{
	struct rxd_server *srv = c->srv;
	struct rxd_job *job;
	char err[RXD_ERROR_MAX];
	int st;

	job = calloc(1, sizeof(*job));
	if (!job) {
		dispatch_error(c, req->request_id, RXGEMM__STATUS__STATUS_NO_MEMORY, false,
			       "out of memory for a new job");
		rxgemm__request__free_unpacked(req, NULL);
		return;
	}
	st = nas_job_prepare(req->nas_eval, &srv->limits, srv->cfg->max_frame_bytes, &job->nas,
			     err, sizeof(err));
	if (st != RXGEMM__STATUS__STATUS_OK) {
		dispatch_error(c, req->request_id, st, false, "%s", err);
		rxgemm__request__free_unpacked(req, NULL);
		free(job);
		return;
	}
	job->kind = RXD_JOB_NAS;
	job->conn = c;
	job->conn_id = c->id;
	job->abandoned = &c->abandoned;
	job->request_id = req->request_id;
	job->req = req;
	job->received_ns = received_ns;
	conn_ref(c);
	c->jobs_in_flight++;
	srv->stats.jobs_queued++;
	job->submitted_ns = now_ns();
	worker_submit(srv->worker, job);
}

/* The first unknown field's number, or 0. Unknown fields mean the peer speaks a schema we
 * do not: refusing is safer than silently dropping what it asked for. */
static uint32_t dispatch_unknown_field(const Rxgemm__Request *req)
{
	const ProtobufCMessage *body = NULL;

	if (req->base.n_unknown_fields)
		return req->base.unknown_fields[0].tag;
	switch (req->body_case) {
	case RXGEMM__REQUEST__BODY_HELLO: body = &req->hello->base; break;
	case RXGEMM__REQUEST__BODY_GEMM: body = &req->gemm->base; break;
	case RXGEMM__REQUEST__BODY_STATUS: body = &req->status->base; break;
	case RXGEMM__REQUEST__BODY_NAS_EVAL: body = &req->nas_eval->base; break;
	default: break;
	}
	return body && body->n_unknown_fields ? body->unknown_fields[0].tag : 0;
}

void dispatch_frame(struct rxd_conn *c, uint8_t *body, size_t len)
{
	uint64_t received_ns = now_ns();
	Rxgemm__Request *req;
	uint32_t unknown;

	req = rxgemm__request__unpack(NULL, len, body);
	free(body); /* protobuf-c copied what it needs */
	if (!req) {
		dispatch_error(c, 0, RXGEMM__STATUS__STATUS_PROTOCOL, false,
			       "a frame of %zu bytes is not a valid Request message", len);
		return;
	}
	if ((unknown = dispatch_unknown_field(req))) {
		if (req->body_case == RXGEMM__REQUEST__BODY__NOT_SET)
			dispatch_error(c, req->request_id, RXGEMM__STATUS__STATUS_UNSUPPORTED, false,
				       "request kind (field %u) is not served by this daemon (%s)",
				       unknown, PACKAGE_VERSION);
		else
			dispatch_error(c, req->request_id, RXGEMM__STATUS__STATUS_PROTOCOL, false,
				       "request carries unknown field %u", unknown);
		goto out;
	}
	if (req->body_case == RXGEMM__REQUEST__BODY_HELLO) {
		dispatch_hello(c, req);
		goto out;
	}
	if (!c->hello_done) {
		dispatch_error(c, req->request_id, RXGEMM__STATUS__STATUS_PROTOCOL, false,
			       "the first request on a connection must be Hello");
		goto out;
	}
	if (c->srv->stopping) {
		dispatch_error(c, req->request_id, RXGEMM__STATUS__STATUS_SHUTDOWN, false,
			       "the daemon is shutting down");
		goto out;
	}
	switch (req->body_case) {
	case RXGEMM__REQUEST__BODY_GEMM:
		dispatch_gemm(c, req, received_ns);
		return; /* req now belongs to the job */
	case RXGEMM__REQUEST__BODY_STATUS:
		dispatch_status(c, req);
		break;
	case RXGEMM__REQUEST__BODY_NAS_EVAL:
		dispatch_nas(c, req, received_ns);
		return; /* req now belongs to the job */
	default:
		dispatch_error(c, req->request_id, RXGEMM__STATUS__STATUS_PROTOCOL, false,
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
	Rxgemm__Timings t = RXGEMM__TIMINGS__INIT;
	uint64_t done_ns = now_ns();

	srv->stats.jobs_queued--;
	c->jobs_in_flight--;
	if (c->closing)
		goto out; /* nobody to answer */
	t.queued_ns = job->started_ns - job->submitted_ns;
	t.h2d_ns = job->dev_t.h2d_ns;
	t.kernel_ns = job->dev_t.kernel_ns;
	t.d2h_ns = job->dev_t.d2h_ns;
	reply.request_id = job->request_id;
	reply.status = job->status;
	reply.timings = &t;
	if (job->status == RXGEMM__STATUS__STATUS_OK && job->kind == RXD_JOB_NAS) {
		if (nas_job_reply(job->nas, &nas) == 0) {
			reply.body_case = RXGEMM__REPLY__BODY_NAS_EVAL;
			reply.nas_eval = &nas;
		} else {
			reply.status = RXGEMM__STATUS__STATUS_NO_MEMORY;
			reply.error = (char *)"out of memory building the reply";
		}
	} else if (job->status == RXGEMM__STATUS__STATUS_OK) {
		gemm.c.data = (uint8_t *)job->c_out;
		gemm.c.len = job->g.c_elems * sizeof(float);
		gemm.flops = job->g.flops;
		gemm.kernel = (char *)job->kernel;
		reply.body_case = RXGEMM__REPLY__BODY_GEMM;
		reply.gemm = &gemm;
	} else {
		reply.error = job->error;
	}
	t.total_ns = now_ns() - job->received_ns;
	stats_job_done(&srv->stats, job, c->id, &t);
	if (job->kind == RXD_JOB_NAS)
		log_msg(LOG_DEBUG, "client %u request %llu: nas_eval %s in %.3f ms%s%s", c->id,
			(unsigned long long)job->request_id, job->status ? "failed" : "done",
			(double)(done_ns - job->received_ns) / 1e6, job->status ? ": " : "",
			job->status ? job->error : "");
	else
	log_msg(LOG_DEBUG,
		"client %u request %llu: gemm %lldx%lldx%lld %s in %.3f ms (kernel %.3f ms, "
		"%.2f GFLOPS)%s%s",
		c->id, (unsigned long long)job->request_id, (long long)job->g.user_m,
		(long long)job->g.user_n, (long long)job->g.user_k,
		job->status ? "failed" : "done", (double)(done_ns - job->received_ns) / 1e6,
		(double)t.kernel_ns / 1e6, t.kernel_ns ? (double)job->g.flops / (double)t.kernel_ns : 0.0,
		job->status ? ": " : "", job->status ? job->error : "");
	conn_send(c, &reply, false);
out:
	/* A connection that waited for its last reply before closing can go now. */
	if (c->close_after_write && c->writes_pending == 0 && !c->closing)
		conn_close(c);
	job_free(job);
	conn_unref(c);
}

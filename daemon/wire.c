/* wire.c: the protocol: from a frame to a validated request, and from a result to a reply
 * (loop thread only).
 *
 * A frame is pre-scanned (wirecheck), unpacked, checked (wire-check.c) and handed to
 * dispatch.c as an internal struct; every reply, the status report's included
 * (wire-status.c), is built here. Every request gets exactly one reply carrying its
 * request_id: an answer, or an error with a code and a sentence. Only a broken stream (a
 * frame over the size limit) or a protocol version mismatch closes the connection;
 * everything else leaves it usable. This and the other wire files are the only ones that
 * know the generated protobuf types. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lift.h"
#include "wire.h"

/* The status table's wire codes are the schema's (proto/rxgemm.proto): checked here, where
 * both are known. */
#define WIRE_STATUS_CHECK(name, wire, msg)                                                    \
	_Static_assert((wire) == RXGEMM__STATUS__STATUS_##name,                               \
		       "status " #name ": its wire code differs from rxgemm.proto");
RXD_STATUS_TABLE(WIRE_STATUS_CHECK)
#undef WIRE_STATUS_CHECK
Rxgemm__Status wire_status_code(int status)
{
	return (Rxgemm__Status)status_wire_code(status);
}

static void wire_pack_reply(const void *msg, uint8_t *out)
{
	rxgemm__reply__pack(msg, out);
}

int wire_send(struct rxd_conn *c, const Rxgemm__Reply *reply, bool close_after)
{
	return conn_send(c, rxgemm__reply__get_packed_size(reply), wire_pack_reply, reply,
			 close_after);
}

/* Send reply with data (taken: malloc'd, data_len bytes) as its bytes field outer.inner,
 * which reply leaves empty: packed without it, the data then sent where it lies (lift.h),
 * not copied into the frame. Small data is packed in as usual. */
static int wire_send_lifted(struct rxd_conn *c, Rxgemm__Reply *reply, uint32_t outer,
			    ProtobufCBinaryData *field, void *data, size_t data_len)
{
	size_t len, head_len, tail;
	uint8_t *buf;
	int ret;

	if (data_len >= LIFT_MIN_BYTES) {
		len = rxgemm__reply__get_packed_size(reply);
		buf = malloc(2 * len + LIFT_SPLICE_EXTRA);
		if (buf) {
			rxgemm__reply__pack(reply, buf);
			/* The field is the first of GemmReply and TensorData: number 1. */
			if (lift_splice(buf, len, outer, 1, data_len, buf + len, &head_len,
					&tail) == 0) {
				ret = conn_send_parts(c, buf + len, head_len, data, data_len,
						      buf + tail, len - tail, false);
				free(buf);
				return ret;
			}
			free(buf);
		}
	}
	field->data = data;
	field->len = data_len;
	ret = wire_send(c, reply, false);
	hostbuf_free(data);
	return ret;
}

/* The fields whose data a request keeps in its frame rather than in copies (lift.h): the
 * operands, weights and inputs that make frames megabytes long. */
static const struct lift_field wire_lifts[] = {
	{ .outer = 3, .inner = 12 },  /* gemm.a */
	{ .outer = 3, .inner = 13 },  /* gemm.b */
	{ .outer = 3, .inner = 14 },  /* gemm.c */
	{ .outer = 8, .inner = 9 },   /* nas_eval.weights */
	{ .outer = 8, .inner = 11 },  /* nas_eval.input */
	{ .outer = 9, .inner = 2 },   /* tensor_create.data */
	{ .outer = 12, .inner = 25 }, /* search.resume_state */
};
#define WIRE_LIFTS (sizeof(wire_lifts) / sizeof(wire_lifts[0]))

/* A decoded request and the frame its lifted fields point into (NULL: none was lifted). */
struct wire_frame {
	Rxgemm__Request *req;
	uint8_t *body;
	struct lift_field lifted[WIRE_LIFTS];
};

static void wire_request_free(void *frame)
{
	struct wire_frame *f = frame;

	if (!f)
		return;
	if (f->body)
		lift_clear(&f->req->base, f->lifted, WIRE_LIFTS);
	rxgemm__request__free_unpacked(f->req, NULL);
	hostbuf_free(f->body);
	free(f);
}

/* Each lifted field's data moved to a multiple of 4 bytes, as an unpacked copy would lie:
 * the floats are read as floats (split.c, the CPU paths). The field's own tag and length,
 * 4 bytes at least before data of LIFT_MIN_BYTES, give the room; the reduced message
 * that was unpacked has them already. */
static void wire_frame_align(struct wire_frame *f)
{
	_Static_assert(LIFT_MIN_BYTES >= 1u << 14, "a length varint of 3 bytes or more");
	for (size_t i = 0; i < WIRE_LIFTS; i++) {
		struct lift_field *l = &f->lifted[i];
		size_t shift = (uintptr_t)(f->body + l->offset) % sizeof(float);

		if (!l->lifted || !shift)
			continue;
		memmove(f->body + l->offset - shift, f->body + l->offset, l->len);
		l->offset -= shift;
		log_msg(LOG_DEBUG, "request %u.%u's %zu bytes moved to float alignment (a pad "
			"field before them saves that)", l->outer, l->inner, l->len);
	}
}

/* Unpack body (taken): its large fields lifted where that is unambiguous, else by
 * protobuf-c alone. NULL when it is not a Request (or memory is short). */
static struct wire_frame *wire_frame_decode(uint8_t *body, size_t len)
{
	struct wire_frame *f = calloc(1, sizeof(*f));
	uint8_t *reduced;
	size_t reduced_len;

	if (!f) {
		hostbuf_free(body);
		return NULL;
	}
	memcpy(f->lifted, wire_lifts, sizeof(wire_lifts));
	if (lift_scan(body, len, f->lifted, WIRE_LIFTS, LIFT_MIN_BYTES, &reduced,
		      &reduced_len) > 0) {
		f->req = rxgemm__request__unpack(NULL, reduced_len, reduced);
		free(reduced);
		if (f->req && lift_restore(&f->req->base, body, f->lifted, WIRE_LIFTS) == 0) {
			f->body = body;
			/* The pointers again, once the data moved. */
			lift_clear(&f->req->base, f->lifted, WIRE_LIFTS);
			wire_frame_align(f);
			lift_restore(&f->req->base, body, f->lifted, WIRE_LIFTS);
			return f;
		}
		/* Not as the scan saw it: protobuf-c decides on the frame as sent. */
		if (f->req)
			rxgemm__request__free_unpacked(f->req, NULL);
	}
	memset(f->lifted, 0, sizeof(f->lifted));
	f->req = rxgemm__request__unpack(NULL, len, body);
	hostbuf_free(body); /* protobuf-c copied what it needs */
	if (!f->req) {
		free(f);
		return NULL;
	}
	return f;
}

void wire_error(struct rxd_conn *c, uint64_t request_id, int status, bool close_after,
		const char *fmt, ...)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	char msg[RXD_ERROR_MAX], safe[4 * RXD_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply.request_id = request_id;
	reply.status = wire_status_code(status);
	reply.error = msg;
	dispatch_note_rejected(c);
	log_escape(safe, sizeof(safe), msg); /* it may quote what the client sent */
	log_msg(LOG_DEBUG, "client %u request %llu: %s", c->id, (unsigned long long)request_id,
		safe);
	wire_send(c, &reply, close_after);
}

/* Answer req with err (a refusal). */
static void wire_refuse(struct rxd_conn *c, uint64_t request_id, const struct rxd_error *err)
{
	wire_error(c, request_id, err->status, false, "%s", err->msg);
}

static void wire_hello(struct rxd_conn *c, const Rxgemm__Request *req)
{
	static char *capabilities[] = { "gemm", "status", "cancel", "shm", "tensor",
					"ready-words", "nas", "search", "pad" };
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__HelloReply hello = RXGEMM__HELLO_REPLY__INIT;
	const Rxgemm__Hello *h = req->hello;

	if (c->hello_done) {
		wire_error(c, req->request_id, RXD_S_PROTOCOL, false,
			   "Hello was already exchanged on this connection");
		return;
	}
	if (c->refused) {
		wire_error(c, req->request_id, RXD_S_PERMISSION, true,
			   "uid %ld is not allowed to use this daemon (see allow-uids and "
			   "allow-gids in rxgemmd(8)); closing the connection",
			   c->peer_uid);
		return;
	}
	if (h->protocol_version != RXGEMM_PROTOCOL_VERSION) {
		wire_error(c, req->request_id, RXD_S_VERSION, true,
			   "client speaks protocol version %u, this daemon (%s) speaks %u; "
			   "closing the connection",
			   h->protocol_version, PACKAGE_VERSION, RXGEMM_PROTOCOL_VERSION);
		return;
	}
	/* The name goes into every client's status reply, whose readers (protobuf libraries,
	 * rxgemm status --json) reject strings that are not UTF-8: refuse such a name, and cut
	 * a long one only between characters. */
	if (h->client_name && !text_utf8_valid(h->client_name, strlen(h->client_name))) {
		wire_error(c, req->request_id, RXD_S_INVALID_ARGUMENT, false,
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
	/* "nas" and "search", the last, only when the device runs the NAS kernels (and
	 * the search's backward ones). */
	if (!worker_serves_nas(c->srv->worker))
		hello.n_capabilities -= 2;
	else if (!searchjob_available())
		hello.n_capabilities--;
	hello.capabilities = capabilities;
	hello.max_frame_bytes = c->srv->cfg->max_frame_bytes;
	hello.client_id = c->id;
	hello.busy_poll_us = (uint32_t)(worker_busy_poll_ns(c->srv->worker) / 1000);
	reply.request_id = req->request_id;
	reply.body_case = RXGEMM__REPLY__BODY_HELLO;
	reply.hello = &hello;
	wire_send(c, &reply, false);
}

static void wire_status(struct rxd_conn *c, const Rxgemm__Request *req)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__StatusReply st;

	if (wire_status_build(c, &st) < 0) {
		wire_error(c, req->request_id, RXD_S_NO_MEMORY, false,
			   "out of memory building the status");
		return;
	}
	reply.request_id = req->request_id;
	reply.body_case = RXGEMM__REPLY__BODY_STATUS_REPLY;
	reply.status_reply = &st;
	wire_send(c, &reply, false);
	wire_status_free(&st);
}

/* RegisterRegion: the frame's one descriptor becomes a region of this connection. */
static void wire_register(struct rxd_conn *c, const Rxgemm__Request *req)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__RegionRegistered reg = RXGEMM__REGION_REGISTERED__INIT;
	unsigned n = c->n_frame_fds + c->frame_fds_lost;
	struct rxd_error err;
	int st, fd;

	if (n != 1) {
		/* conn.c closes whatever came. */
		wire_error(c, req->request_id, RXD_S_REGION, false,
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
		wire_refuse(c, req->request_id, &err);
		return;
	}
	log_msg(LOG_DEBUG, "client %u: region %u of %llu bytes registered", c->id,
		reg.region_id, (unsigned long long)reg.size);
	reply.request_id = req->request_id;
	reply.body_case = RXGEMM__REPLY__BODY_REGION_REGISTERED;
	reply.region_registered = &reg;
	wire_send(c, &reply, false);
}

static void wire_unregister(struct rxd_conn *c, const Rxgemm__Request *req)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__RegionUnregistered unreg = RXGEMM__REGION_UNREGISTERED__INIT;
	struct rxd_error err;

	if (shm_unregister(&c->shm, req->unregister_region->region_id, &err) != RXD_S_OK) {
		wire_refuse(c, req->request_id, &err);
		return;
	}
	unreg.region_id = req->unregister_region->region_id;
	reply.request_id = req->request_id;
	reply.body_case = RXGEMM__REPLY__BODY_REGION_UNREGISTERED;
	reply.region_unregistered = &unreg;
	wire_send(c, &reply, false);
}

/* Do two byte ranges [a, a + alen) and [b, b + blen) meet? */
static bool wire_overlap(const uint8_t *a, uint64_t alen, const uint8_t *b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* Point data (an operand's inline bytes in a view of the request) into the region ref
 * names instead, the field being name + "_region"; inline bytes and a region both given
 * is an error. *used is the region (no reference taken). A status code, with a sentence
 * in err. */
static int wire_region_bytes(struct rxd_conn *c, const Rxgemm__RegionRef *ref,
			     const char *name, ProtobufCBinaryData *data,
			     struct rxd_region **used, struct rxd_error *err)
{
	char field[32];
	uint8_t *p;
	int st;

	if (data->len)
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "%s and %s_region are both given; send one", name, name);
	snprintf(field, sizeof(field), "%s_region", name);
	st = wire_region(&c->shm, ref, field, used, &p, err);
	if (st)
		return st;
	data->data = p;
	data->len = (size_t)ref->length;
	return RXD_S_OK;
}

/* Resolve the GEMM's region references into view, a copy of rq whose a, b and c point
 * into the regions (rq itself keeps its own bytes, which protobuf-c frees), and *c_dest to
 * where C goes (NULL: inline). Takes no reference. A status code, with a sentence in err. */
static int wire_gemm_regions(struct rxd_conn *c, const Rxgemm__GemmRequest *rq,
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
		    (st = wire_region_bytes(c, refs[i], names[i], data[i], &used[i], err)))
			return st;
	if (rq->c_out) {
		st = wire_region(&c->shm, rq->c_out, "c_out", &used[3], &p, err);
		if (st)
			return st;
		/* The device reads A and B (whole or piece by piece) while C is written: C may
		 * replace its own input in place, but not meet A, B or another C. */
		for (int i = 0; i < 3; i++) {
			if (!refs[i] || refs[i]->region_id != rq->c_out->region_id)
				continue;
			if (i == 2 && refs[i]->offset == rq->c_out->offset)
				continue;
			if (wire_overlap(p, rq->c_out->length, data[i]->data, data[i]->len))
				return error_set(err, RXD_S_INVALID_ARGUMENT,
						 "c_out overlaps %s_region in region %u%s",
						 names[i], rq->c_out->region_id,
						 i == 2 ? " (C may only replace itself, at the "
							  "same offset)"
							: "");
		}
		*c_dest = (float *)(void *)p;
	}
	return RXD_S_OK;
}

/* The GEMM's ready words (GemmRequest.a_ready, b_ready) into g->ready, in the column-major
 * problem's order (swapped for a row-major request, as wire_gemm_validate swapped the
 * operands). view's operands point where the regions put them; used holds the regions
 * (request order). A status code, with a sentence in err. */
static int wire_gemm_ready(const Rxgemm__GemmRequest *rq, const Rxgemm__GemmRequest *view,
			   struct rxd_region *const used[RXD_JOB_REGIONS], const float *c_dest,
			   struct rxd_gemm *g, struct rxd_error *err)
{
	static const char *const names[2] = { "a_ready", "b_ready" };
	const Rxgemm__ReadyWord *words[2] = { rq->a_ready, rq->b_ready };
	const Rxgemm__RegionRef *refs[2] = { rq->a_region, rq->b_region };
	const ProtobufCBinaryData *data[3] = { &view->a, &view->b, &view->c };
	bool row_major = rq->layout == RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR;

	for (int i = 0; i < 2; i++) {
		const Rxgemm__ReadyWord *w = words[i];
		struct rxd_ready *r = &g->ready[row_major ? 1 - i : i];
		const uint8_t *p;

		if (!w)
			continue;
		/* The word says the operand's region bytes are complete: it goes with them. */
		if (!refs[i])
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "%s is given but %c_region is not: a ready word marks a "
					 "region operand complete", names[i], 'a' + i);
		if (w->region_id != refs[i]->region_id)
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "%s.region_id (%u) is not %c_region's (%u): the word must "
					 "be in the operand's own region", names[i], w->region_id,
					 'a' + i, refs[i]->region_id);
		if (w->offset % sizeof(uint64_t) || used[i]->bytes < sizeof(uint64_t) ||
		    w->offset > used[i]->bytes - sizeof(uint64_t))
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "%s.offset (%llu) is not an aligned 8-byte word within "
					 "region %u (%llu bytes)", names[i],
					 (unsigned long long)w->offset, w->region_id,
					 (unsigned long long)used[i]->bytes);
		if (!w->value)
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "%s.value is 0; a ready word's value is not 0", names[i]);
		p = used[i]->base + w->offset;
		for (int j = 0; j < 3; j++)
			if (data[j]->len && wire_overlap(p, sizeof(uint64_t), data[j]->data,
							 data[j]->len))
				return error_set(err, RXD_S_INVALID_ARGUMENT,
						 "%s (offset %llu of region %u) lies in %c's bytes",
						 names[i], (unsigned long long)w->offset,
						 w->region_id, 'a' + j);
		if (c_dest && wire_overlap(p, sizeof(uint64_t), (const uint8_t *)c_dest,
					   rq->c_out->length))
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "%s (offset %llu of region %u) lies in c_out's bytes",
					 names[i], (unsigned long long)w->offset, w->region_id);
		r->word = (const uint64_t *)(const void *)p;
		r->value = w->value;
		r->field = names[i];
		r->region_id = w->region_id;
		r->offset = w->offset;
	}
	return RXD_S_OK;
}

/* The device tensors a GEMM names (request order: a, b, c, c_out; NULL: none), each
 * operand from one source only, and their sizes for wire_gemm_validate_tensors. Takes no
 * reference. A status code, with a sentence in err. */
static int wire_gemm_tensors(struct rxd_conn *c, const Rxgemm__GemmRequest *rq,
			     struct rxd_tensor *used[4], uint64_t floats[3], struct rxd_error *err)
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

			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "%s and %s are both given; send each operand one way",
					 names[i], others[i]);
		}
		if ((st = tensor_find(&c->tensors, ids[i], names[i], &used[i], err)))
			return st;
		if (i < 3)
			floats[i] = used[i]->floats;
	}
	/* The kernel reads A and B while it writes C: C may replace its own input only. */
	if (used[3] && (used[3] == used[0] || used[3] == used[1]))
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "c_out_tensor %u is also %s; the result may only replace C's own "
				 "input (c_tensor)",
				 rq->c_out_tensor, used[3] == used[0] ? "a_tensor" : "b_tensor");
	return RXD_S_OK;
}

/* The request's common part for dispatch; the frame goes with it. */
static void wire_request_of(struct rxd_request *rq, struct wire_frame *f, size_t frame_len,
			    uint64_t received_ns)
{
	const Rxgemm__Request *req = f->req;

	memset(rq, 0, sizeof(*rq));
	rq->id = req->request_id;
	rq->received_ns = received_ns;
	rq->frame_bytes = frame_len;
	rq->frame = f;
	rq->frame_free = wire_request_free;
}

/* A GEMM: checked here, queued by dispatch. A status code, with a sentence in err; r's
 * frame (req) is dispatch's once it is handed there (r->frame is then NULL). */
static int wire_gemm(struct rxd_conn *c, const Rxgemm__Request *req,
		     struct rxd_request *r, struct rxd_error *err)
{
	const Rxgemm__GemmRequest *rq = req->gemm;
	struct rxd_gemm_request g = { 0 };
	Rxgemm__GemmRequest view;
	uint64_t tensor_floats[3] = { 0, 0, 0 };
	int st;

	st = wire_gemm_regions(c, rq, &view, g.regions, &g.c_dest, err);
	if (st == RXD_S_OK)
		st = wire_gemm_tensors(c, rq, g.tensors, tensor_floats, err);
	if (st == RXD_S_OK)
		st = wire_gemm_validate_tensors(&view, &c->srv->limits, tensor_floats, &g.g, err);
	if (st == RXD_S_OK && g.tensors[3] && g.tensors[3]->floats < g.g.c_elems)
		st = error_set(err, RXD_S_INVALID_ARGUMENT,
			       "c_out_tensor holds %llu floats but C needs %llu",
			       (unsigned long long)g.tensors[3]->floats,
			       (unsigned long long)g.g.c_elems);
	if (st == RXD_S_OK && g.c_dest && rq->c_out->length / sizeof(float) < g.g.c_elems)
		st = error_set(err, RXD_S_INVALID_ARGUMENT,
			       "c_out holds %llu bytes but C needs %llu",
			       (unsigned long long)rq->c_out->length,
			       (unsigned long long)g.g.c_elems * sizeof(float));
	if (st == RXD_S_OK && (rq->a_ready || rq->b_ready)) {
		st = wire_gemm_ready(rq, &view, g.regions, g.c_dest, &g.g, err);
		if (st == RXD_S_OK)
			log_msg(LOG_DEBUG, "client %u request %llu: waits for%s%s", c->id,
				(unsigned long long)req->request_id, rq->a_ready ? " a_ready" : "",
				rq->b_ready ? " b_ready" : "");
	}
	if (st == RXD_S_OK && rq->priority >= RXD_SCHED_LEVELS)
		st = error_set(err, RXD_S_INVALID_ARGUMENT,
			       "priority %u is out of range (0 to %d, higher first)", rq->priority,
			       RXD_SCHED_LEVELS - 1);
	if (st != RXD_S_OK)
		return st;
	/* The job's tensors in the column-major problem's order: a row-major request
	 * swapped its operands (wire_gemm_validate). */
	if (rq->layout == RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR) {
		struct rxd_tensor *x = g.tensors[0];

		g.tensors[0] = g.tensors[1];
		g.tensors[1] = x;
	}
	g.priority = rq->priority;
	g.deadline_ms = rq->deadline_ms;
	r->bytes_in = rq->a.len + rq->b.len + rq->c.len;
	return dispatch_gemm(c, r, &g, err);
}

static void wire_cancel(struct rxd_conn *c, const Rxgemm__Request *req)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__CancelReply cancel = RXGEMM__CANCEL_REPLY__INIT;
	uint64_t target = req->cancel->target_request_id;
	int outcome = dispatch_cancel(c, target);

	log_msg(LOG_DEBUG, "client %u request %llu: cancel %llu: %s", c->id,
		(unsigned long long)req->request_id, (unsigned long long)target,
		outcome == RXD_CANCEL_QUEUED    ? "was queued"
		: outcome == RXD_CANCEL_RUNNING ? "is running"
						: "not found");
	cancel.outcome = outcome == RXD_CANCEL_QUEUED    ? RXGEMM__CANCEL_OUTCOME__CANCEL_QUEUED
			 : outcome == RXD_CANCEL_RUNNING ? RXGEMM__CANCEL_OUTCOME__CANCEL_RUNNING
							 : RXGEMM__CANCEL_OUTCOME__CANCEL_NOT_FOUND;
	reply.request_id = req->request_id;
	reply.body_case = RXGEMM__REPLY__BODY_CANCEL;
	reply.cancel = &cancel;
	wire_send(c, &reply, false);
}

/* The weights and input a NAS request names in its regions: view is a copy of rq whose
 * weights and input bytes point into them. Takes no reference. A status code, with a
 * sentence in err. */
static int wire_nas_regions(struct rxd_conn *c, const Rxgemm__NasEvalRequest *rq,
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
		    (st = wire_region_bytes(c, refs[i], names[i], data[i], &used[i], err)))
			return st;
	return RXD_S_OK;
}

/* The bytes a NAS reply may take: the logits when asked for (the request's batch and
 * classes, or their defaults), the timed runs and a bound for the rest. */
static uint64_t wire_nas_reply_bytes(const Rxgemm__NasEvalRequest *rq)
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
static int wire_nas_tensors(struct rxd_conn *c, const Rxgemm__NasEvalRequest *rq,
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
		if (other[i])
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "%s and %s (inline or a region) are both given; send one",
					 names[i], i ? "input" : "weights");
		if ((st = tensor_find(&c->tensors, ids[i], names[i], &used[i], err)))
			return st;
	}
	return RXD_S_OK;
}

/* A NAS evaluation: checked and planned here, run by the worker. Like wire_gemm. */
static int wire_nas(struct rxd_conn *c, const Rxgemm__Request *req,
		    struct rxd_request *r, struct rxd_error *err)
{
	struct rxd_server *srv = c->srv;
	struct rxd_nas_request n = { 0 };
	struct rxd_nas_eval ev;
	Rxgemm__NasEvalRequest view;
	int st;

	st = wire_nas_regions(c, req->nas_eval, &view, n.regions, err);
	if (st == RXD_S_OK)
		st = wire_nas_tensors(c, req->nas_eval, n.tensors, err);
	if (st == RXD_S_OK)
		st = wire_nas_eval(&view, &ev, err);
	if (st == RXD_S_OK)
		st = nas_job_prepare(&ev, &srv->limits, srv->cfg->max_frame_bytes, srv->nascache,
				     &n.nas, err);
	for (int i = 0; i < 2 && st == RXD_S_OK; i++) {
		uint64_t want = i ? nas_job_input_floats(n.nas) : nas_job_blob_floats(n.nas);

		if (n.tensors[i] && n.tensors[i]->floats != want) {
			st = error_set(err, RXD_S_INVALID_ARGUMENT,
				       "%s_tensor holds %llu floats; this network's %s has %llu",
				       i ? "input" : "weights",
				       (unsigned long long)n.tensors[i]->floats,
				       i ? "input (batch x 3 x height x width)" : "state_dict",
				       (unsigned long long)want);
			nas_job_free(n.nas);
			n.nas = NULL;
		}
	}
	if (st != RXD_S_OK)
		return st;
	n.reply_bytes = wire_nas_reply_bytes(req->nas_eval);
	return dispatch_nas(c, r, &n, err);
}

/* TensorCreate: checked here, made by the device worker, listed when it comes back. */
static int wire_tensor_create(struct rxd_conn *c, const Rxgemm__Request *req,
			      struct rxd_request *r, struct rxd_error *err)
{
	const Rxgemm__TensorCreate *tc = req->tensor_create;
	struct rxd_tensors *tab = &c->tensors;
	struct rxd_region *region = NULL;
	struct rxd_tensor *x = NULL;
	uint8_t *p = NULL;
	int st;

	st = wire_tensor_dims(tc->dims, tc->n_dims, c->srv->limits.max_buffer_bytes, "dims", err);
	if (st == RXD_S_OK)
		st = tensor_new(tc->dims, tc->n_dims, &x, err);
	if (st == RXD_S_OK && tab->count + tab->pending >= RXD_TENSOR_MAX)
		st = error_set(err, RXD_S_TOO_BIG, "this connection has %u tensors already, the "
			       "most it may have; free some", tab->count + tab->pending);
	if (st == RXD_S_OK && tc->data.len && tc->region)
		st = error_set(err, RXD_S_INVALID_ARGUMENT, "data and region are both given; "
			       "send one (or neither, for zeros)");
	if (st == RXD_S_OK && tc->region)
		st = wire_region(&c->shm, tc->region, "region", &region, &p, err);
	if (st == RXD_S_OK && (tc->data.len || region) &&
	    (region ? tc->region->length : tc->data.len) != x->floats * sizeof(float))
		st = error_set(err, RXD_S_INVALID_ARGUMENT,
			       "%s holds %llu bytes but a tensor of %llu floats takes %llu",
			       region ? "region" : "data",
			       (unsigned long long)(region ? tc->region->length : tc->data.len),
			       (unsigned long long)x->floats,
			       (unsigned long long)(x->floats * sizeof(float)));
	if (st != RXD_S_OK) {
		tensor_unref(x);
		return st;
	}
	return dispatch_tensor_create(c, r, x, region,
				      region ? (const void *)p
				      : tc->data.len ? (const void *)tc->data.data : NULL,
				      err);
}

/* TensorRead: the device worker copies the tensor into the reply or a region. */
static int wire_tensor_read(struct rxd_conn *c, const Rxgemm__Request *req,
			    struct rxd_request *r, struct rxd_error *err)
{
	const Rxgemm__TensorRead *tr = req->tensor_read;
	uint64_t max_frame = c->srv->cfg->max_frame_bytes;
	struct rxd_region *region = NULL;
	struct rxd_tensor *x;
	uint8_t *p = NULL;
	uint64_t bytes = 0;
	int st;

	st = tensor_find(&c->tensors, tr->tensor_id, "tensor_id", &x, err);
	if (st == RXD_S_OK)
		bytes = x->floats * sizeof(float);
	if (st == RXD_S_OK && tr->out) {
		st = wire_region(&c->shm, tr->out, "out", &region, &p, err);
		if (st == RXD_S_OK && tr->out->length < bytes)
			st = error_set(err, RXD_S_INVALID_ARGUMENT,
				       "out holds %llu bytes but tensor %u has %llu",
				       (unsigned long long)tr->out->length, tr->tensor_id,
				       (unsigned long long)bytes);
	} else if (st == RXD_S_OK && bytes > max_frame - 4096) {
		st = error_set(err, RXD_S_TOO_BIG, "tensor %u (%llu bytes) does not fit a reply "
			       "frame (max-frame %llu bytes); read it into a region",
			       tr->tensor_id, (unsigned long long)bytes,
			       (unsigned long long)max_frame);
	}
	if (st != RXD_S_OK)
		return st;
	return dispatch_tensor_read(c, r, x, region, (float *)(void *)p, err);
}

/* TensorFree: unlisted at once; a job in flight that uses it keeps it until answered. */
static void wire_tensor_free(struct rxd_conn *c, const Rxgemm__Request *req)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__TensorFreed freed = RXGEMM__TENSOR_FREED__INIT;
	struct rxd_error err;

	if (tensor_remove(&c->tensors, req->tensor_free->tensor_id, &err) != RXD_S_OK) {
		wire_refuse(c, req->request_id, &err);
		return;
	}
	freed.tensor_id = req->tensor_free->tensor_id;
	reply.request_id = req->request_id;
	reply.body_case = RXGEMM__REPLY__BODY_TENSOR_FREED;
	reply.tensor_freed = &freed;
	wire_send(c, &reply, false);
}

/* Answer a frame that the pre-scan refused. Unknown fields mean the peer speaks a schema we
 * do not: refusing is safer than silently dropping what it asked for. The request_id is
 * read from the bytes when they are well-formed. */
static void wire_fault(struct rxd_conn *c, const uint8_t *body, size_t len,
		       const struct wirecheck_result *wc)
{
	uint64_t id = 0;

	if (wc->fault != WIRECHECK_TRUNCATED && wc->fault != WIRECHECK_MALFORMED &&
	    wc->fault != WIRECHECK_WIRE_TYPE && wirecheck_varint_field(body, len, 1, &id) < 0)
		id = 0;
	switch (wc->fault) {
	case WIRECHECK_UNKNOWN:
		if (wc->depth == 0 && !wc->top_oneof_set)
			wire_error(c, id, RXD_S_UNSUPPORTED, false,
				   "request kind (field %u) is not served by this daemon (%s)",
				   wc->field, PACKAGE_VERSION);
		else
			wire_error(c, id, RXD_S_PROTOCOL, false,
				   "request carries unknown field %u (in %s)", wc->field,
				   wc->message);
		return;
	case WIRECHECK_TOO_MANY:
		wire_error(c, id, RXD_S_PROTOCOL, false,
			   "field %u of %s is given more than %u times", wc->field, wc->message,
			   RXD_REQUEST_MAX_ELEMENTS);
		return;
	case WIRECHECK_DEPTH:
		wire_error(c, id, RXD_S_PROTOCOL, false,
			   "field %u of %s nests messages more than %u deep", wc->field,
			   wc->message, RXD_REQUEST_MAX_DEPTH);
		return;
	default:
		if (wc->field)
			wire_error(c, 0, RXD_S_PROTOCOL, false,
				   "a frame of %zu bytes is not a valid Request message: %s at "
				   "byte %zu (field %u of %s)",
				   len, wirecheck_fault_name(wc->fault), wc->offset, wc->field,
				   wc->message);
		else
			wire_error(c, 0, RXD_S_PROTOCOL, false,
				   "a frame of %zu bytes is not a valid Request message: %s at "
				   "byte %zu (in %s)",
				   len, wirecheck_fault_name(wc->fault), wc->offset, wc->message);
		return;
	}
}

/* Route a request that makes a job; answer it when it is refused. Takes req. */
static void wire_job_request(struct rxd_conn *c, struct wire_frame *f, size_t len,
			     uint64_t received_ns)
{
	const Rxgemm__Request *req = f->req;
	struct rxd_request r;
	struct rxd_error err;
	int st;

	wire_request_of(&r, f, len, received_ns);
	error_clear(&err);
	switch (req->body_case) {
	case RXGEMM__REQUEST__BODY_GEMM:
		st = wire_gemm(c, req, &r, &err);
		break;
	case RXGEMM__REQUEST__BODY_NAS_EVAL:
		st = wire_nas(c, req, &r, &err);
		break;
	case RXGEMM__REQUEST__BODY_TENSOR_CREATE:
		st = wire_tensor_create(c, req, &r, &err);
		break;
	case RXGEMM__REQUEST__BODY_SEARCH:
		st = wire_search(c, req, &r, &err);
		break;
	default: /* RXGEMM__REQUEST__BODY_TENSOR_READ */
		st = wire_tensor_read(c, req, &r, &err);
		break;
	}
	if (st != RXD_S_OK)
		wire_refuse(c, r.id, &err);
	/* dispatch took the frame (r.frame NULL) into a job, or freed it with one it
	 * refused; a request refused by the checks still has it. */
	if (r.frame)
		wire_request_free(r.frame);
}

static void wire_frame(struct rxd_conn *c, uint8_t *body, size_t len)
{
	static const struct wirecheck_limits lim = { .max_depth = RXD_REQUEST_MAX_DEPTH,
						     .max_elements = RXD_REQUEST_MAX_ELEMENTS };
	uint64_t received_ns = now_ns();
	struct wirecheck_result wc;
	struct wire_frame *f;
	Rxgemm__Request *req;

	/* Before the unpack, which would cost many times the frame on small fields. */
	if (wirecheck_message(&rxgemm__request__descriptor, body, len, &lim, &wc) != 0) {
		wire_fault(c, body, len, &wc);
		hostbuf_free(body);
		return;
	}
	f = wire_frame_decode(body, len);
	if (!f) {
		wire_error(c, 0, RXD_S_PROTOCOL, false,
			   "a frame of %zu bytes is not a valid Request message", len);
		return;
	}
	req = f->req;
	if ((c->n_frame_fds || c->frame_fds_lost) &&
	    req->body_case != RXGEMM__REQUEST__BODY_REGISTER_REGION) {
		/* conn.c closes them after we return. */
		wire_error(c, req->request_id, RXD_S_PROTOCOL, false,
			   "the request carries %u file descriptor%s; only RegisterRegion "
			   "takes one",
			   c->n_frame_fds + c->frame_fds_lost,
			   c->n_frame_fds + c->frame_fds_lost == 1 ? "" : "s");
		goto out;
	}
	if (req->body_case == RXGEMM__REQUEST__BODY_HELLO) {
		wire_hello(c, req);
		goto out;
	}
	if (!c->hello_done) {
		wire_error(c, req->request_id, RXD_S_PROTOCOL, false,
			   "the first request on a connection must be Hello");
		goto out;
	}
	if (c->srv->stopping) {
		wire_error(c, req->request_id, RXD_S_SHUTDOWN, false,
			   "the daemon is shutting down");
		goto out;
	}
	switch (req->body_case) {
	case RXGEMM__REQUEST__BODY_GEMM:
	case RXGEMM__REQUEST__BODY_NAS_EVAL:
	case RXGEMM__REQUEST__BODY_TENSOR_CREATE:
	case RXGEMM__REQUEST__BODY_TENSOR_READ:
	case RXGEMM__REQUEST__BODY_SEARCH:
		wire_job_request(c, f, len, received_ns);
		return; /* f now belongs to the job, or is freed */
	case RXGEMM__REQUEST__BODY_STATUS:
		wire_status(c, req);
		break;
	case RXGEMM__REQUEST__BODY_CANCEL:
		wire_cancel(c, req);
		break;
	case RXGEMM__REQUEST__BODY_REGISTER_REGION:
		wire_register(c, req);
		break;
	case RXGEMM__REQUEST__BODY_UNREGISTER_REGION:
		wire_unregister(c, req);
		break;
	case RXGEMM__REQUEST__BODY_TENSOR_FREE:
		wire_tensor_free(c, req);
		break;
	default:
		wire_error(c, req->request_id, RXD_S_PROTOCOL, false, "request has no body");
		break;
	}
out:
	wire_request_free(f);
}

static void wire_stream_error(struct rxd_conn *c, int status, const char *msg)
{
	wire_error(c, 0, status, true, "%s", msg);
}

const struct rxd_conn_ops wire_conn_ops = { .frame = wire_frame,
					    .stream_error = wire_stream_error };

/* A NasEvalReply from a job's result; what it points to is the job's, or parts' (which the
 * caller frees). 0 or -ENOMEM. */
static int wire_nas_reply(struct rxd_nas_job *nj, Rxgemm__NasEvalReply *r,
			  Rxgemm__NasLatencyPart **parts, Rxgemm__NasLatencyPart ***ptrs)
{
	struct rxd_nas_result res;
	size_t n;

	*parts = NULL;
	*ptrs = NULL;
	if (nas_job_result(nj, &res) < 0)
		return -ENOMEM;
	n = res.n_by_op + res.n_by_cell;
	*parts = calloc(n ? n : 1, sizeof(**parts));
	*ptrs = calloc(n ? n : 1, sizeof(**ptrs));
	if (!*parts || !*ptrs)
		return -ENOMEM;
	rxgemm__nas_eval_reply__init(r);
	r->genotype = (char *)res.genotype;
	r->params = res.params;
	r->macs = res.macs;
	r->weight_floats = res.weight_floats;
	r->peak_device_bytes = res.peak_device_bytes;
	r->activation_bytes = res.activation_bytes;
	r->batch = res.batch;
	r->batch_piece = res.batch_piece;
	r->classes = res.classes;
	r->steps = res.steps;
	r->n_run_ns = res.n_run_ns;
	r->run_ns = (uint64_t *)res.run_ns;
	r->latency_median_ns = res.latency_median_ns;
	r->latency_p90_ns = res.latency_p90_ns;
	r->latency_mean_ns = res.latency_mean_ns;
	r->profiled = res.profiled;
	r->unprofiled_median_ns = res.unprofiled_median_ns;
	for (size_t i = 0; i < n; i++) {
		const struct rxd_nas_part *q = i < res.n_by_op ? &res.by_op[i]
							       : &res.by_cell[i - res.n_by_op];

		rxgemm__nas_latency_part__init(&(*parts)[i]);
		(*parts)[i].name = (char *)q->name;
		(*parts)[i].ns = q->ns;
		(*parts)[i].steps = q->steps;
		(*ptrs)[i] = &(*parts)[i];
	}
	r->n_by_op = res.n_by_op;
	r->by_op = *ptrs;
	r->n_by_cell = res.n_by_cell;
	r->by_cell = *ptrs + res.n_by_op;
	if (res.logits) {
		r->logits.data = (uint8_t *)res.logits;
		r->logits.len = res.logits_bytes;
	}
	return 0;
}

/* Long: the one place where a finished job of any kind is answered, its statistics
 * recorded and what it held given back, so that every kind releases in the same order. */
void wire_job_done(struct rxd_job *job, void *arg)
{
	struct rxd_server *srv = arg;
	struct rxd_conn *c = job->conn;
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__GemmReply gemm = RXGEMM__GEMM_REPLY__INIT;
	Rxgemm__NasEvalReply nas;
	Rxgemm__NasLatencyPart *parts = NULL, **part_ptrs = NULL;
	Rxgemm__TensorCreated created = RXGEMM__TENSOR_CREATED__INIT;
	Rxgemm__TensorData data = RXGEMM__TENSOR_DATA__INIT;
	Rxgemm__SearchReply search;
	void *search_bufs = NULL;
	char why[4 * RXD_ERROR_MAX];
	Rxgemm__Timings t = RXGEMM__TIMINGS__INIT;
	struct rxd_job_times times;
	uint64_t done_ns = now_ns();
	ProtobufCBinaryData *lifted = NULL; /* the result's field, sent by wire_send_lifted */
	size_t lifted_len = 0;
	bool ok;

	/* A search with steps left goes back into the scheduler (wire-search.c). */
	if (job->kind == RXD_JOB_SEARCH && wire_search_turn_done(job))
		return;
	if (!dispatch_job_finish(job))
		goto out; /* nobody to answer */
	ok = job->err.status == RXD_S_OK;
	t.queued_ns = job->started_ns - job->submitted_ns;
	t.h2d_ns = job->dev_t.h2d_ns;
	t.kernel_ns = job->dev_t.kernel_ns;
	t.d2h_ns = job->dev_t.d2h_ns;
	reply.request_id = job->request_id;
	reply.status = wire_status_code(job->err.status);
	reply.timings = &t;
	if (ok && job->kind == RXD_JOB_NAS) {
		if (wire_nas_reply(job->nas, &nas, &parts, &part_ptrs) == 0) {
			reply.body_case = RXGEMM__REPLY__BODY_NAS_EVAL;
			reply.nas_eval = &nas;
		} else {
			reply.status = wire_status_code(RXD_S_NO_MEMORY);
			reply.error = (char *)"out of memory building the reply";
		}
	} else if (ok && job->kind == RXD_JOB_SEARCH) {
		if (wire_search_reply(job->search, &search, &search_bufs) == 0) {
			reply.body_case = RXGEMM__REPLY__BODY_SEARCH;
			reply.search = &search;
		} else {
			reply.status = wire_status_code(RXD_S_NO_MEMORY);
			reply.error = (char *)"out of memory building the reply";
		}
	} else if (ok && job->kind == RXD_JOB_TENSOR_CREATE) {
		created.tensor_id = job->tensors[0]->id;
		created.bytes = job->tensors[0]->floats * sizeof(float);
		reply.body_case = RXGEMM__REPLY__BODY_TENSOR_CREATED;
		reply.tensor_created = &created;
	} else if (ok && job->kind == RXD_JOB_TENSOR_READ) {
		data.bytes = job->tensors[0]->floats * sizeof(float);
		if (!job->c_dest) {
			lifted = &data.data;
			lifted_len = data.bytes;
		}
		reply.body_case = RXGEMM__REPLY__BODY_TENSOR_DATA;
		reply.tensor_data = &data;
	} else if (ok) {
		/* Else C is in the client's region, or in a tensor, already. */
		if (!job->c_dest && !job->tensors[3]) {
			lifted = &gemm.c;
			lifted_len = job->g.c_elems * sizeof(float);
		}
		gemm.flops = job->g.flops;
		gemm.kernel = (char *)job->kernel;
		reply.body_case = RXGEMM__REPLY__BODY_GEMM;
		reply.gemm = &gemm;
	} else {
		reply.error = job->err.msg;
	}
	t.total_ns = now_ns() - job->received_ns;
	times = (struct rxd_job_times){ .queued_ns = t.queued_ns, .h2d_ns = t.h2d_ns,
					.kernel_ns = t.kernel_ns, .d2h_ns = t.d2h_ns,
					.total_ns = t.total_ns };
	/* Tensor creations and reads are no jobs of the statistics (no FLOPs, no shape): the
	 * clients' tensor figures tell of them. */
	if (job->kind == RXD_JOB_GEMM || job->kind == RXD_JOB_NAS || job->kind == RXD_JOB_SEARCH)
		stats_job_done(&srv->stats, job, c, &times);
	log_escape(why, sizeof(why), job->err.msg); /* a NAS error may quote the request */
	if (job->kind == RXD_JOB_TENSOR_CREATE || job->kind == RXD_JOB_TENSOR_READ)
		log_msg(LOG_DEBUG, "client %u request %llu: tensor %s %s%s%s", c->id,
			(unsigned long long)job->request_id,
			job->kind == RXD_JOB_TENSOR_READ ? "read" : "create",
			job->err.status ? "failed" : "done", job->err.status ? ": " : "",
			job->err.status ? why : "");
	else if (job->kind == RXD_JOB_NAS || job->kind == RXD_JOB_SEARCH)
		log_msg(LOG_DEBUG, "client %u request %llu: %s %s in %.3f ms%s%s", c->id,
			(unsigned long long)job->request_id,
			job->kind == RXD_JOB_NAS ? "nas_eval" : "search",
			job->err.status ? "failed" : "done",
			(double)(done_ns - job->received_ns) / 1e6, job->err.status ? ": " : "",
			job->err.status ? why : "");
	else
		log_msg(LOG_DEBUG,
			"client %u request %llu: gemm %lldx%lldx%lld %s in %.3f ms (kernel %.3f "
			"ms, %.2f GFLOPS; us: to the queue %.0f, queued %.0f, run %.0f with "
			"%.0f on the device and %.0f before admission, back to the loop %.0f)%s%s",
			c->id, (unsigned long long)job->request_id, (long long)job->g.user_m,
			(long long)job->g.user_n, (long long)job->g.user_k,
			job->err.status ? "failed" : "done",
			(double)(done_ns - job->received_ns) / 1e6, (double)t.kernel_ns / 1e6,
			t.kernel_ns ? (double)job->g.flops / (double)t.kernel_ns : 0.0,
			(double)(job->submitted_ns - job->received_ns) / 1e3,
			(double)(job->started_ns - job->submitted_ns) / 1e3,
			(double)(job->finished_ns - job->started_ns) / 1e3,
			(double)(t.h2d_ns + t.kernel_ns + t.d2h_ns) / 1e3,
			job->admitted_ns > job->started_ns
				? (double)(job->admitted_ns - job->started_ns) / 1e3 : 0.0,
			(double)(done_ns - job->finished_ns) / 1e3,
			job->err.status ? ": " : "", job->err.status ? why : "");
	if (lifted) {
		/* The result goes out from the worker's buffer, which the reply takes. */
		float *out = job->c_out;
		job->c_out = NULL;
		wire_send_lifted(c, &reply, reply.body_case, lifted, out, lifted_len);
	} else {
		wire_send(c, &reply, false);
	}
	free(parts);
	free(part_ptrs);
	free(search_bufs);
out:
	dispatch_job_release(job);
}

/* wire.h: the wire layer's protocol-facing functions (wire.c, wire-check.c,
 * wire-status.c). Only the wire layer and the tests of its checks include this: the
 * modules below know requests as the internal structs of loop.h. */
#ifndef RXD_WIRE_H
#define RXD_WIRE_H

#include "rxgemm.pb-c.h"
#include "loop.h"
#include "searchjob.h"
#include "wirecheck.h"

/* A frame is walked (wirecheck_message) before protobuf-c unpacks it: unknown fields at any
 * depth, bad wire types and truncation are refused with STATUS_PROTOCOL, and so is a
 * Request nested deeper than RXD_REQUEST_MAX_DEPTH (the schema's own depth is 2: Request >
 * GemmRequest or NasEvalRequest > RegionRef) or with one field given more than
 * RXD_REQUEST_MAX_ELEMENTS times. That bound is the longest repeated field a valid Request
 * has (a supernet's alphas: edges x primitives, edges = steps (steps + 3) / 2 at the most
 * steps); it also stops a singular field repeated millions of times, which protobuf-c would
 * scan into a record of its own each. */
#define RXD_REQUEST_MAX_DEPTH 4
#define RXD_REQUEST_MAX_ELEMENTS \
	(RXD_NAS_MAX_STEPS * (RXD_NAS_MAX_STEPS + 3) / 2 * RXD_NAS_PRIMITIVES)

/* ---- wire.c ---- */
/* The protocol's code for an internal status. */
Rxgemm__Status wire_status_code(int status);
/* Queue reply on c (conn_send). */
int wire_send(struct rxd_conn *c, const Rxgemm__Reply *reply, bool close_after);

/* ---- wire-check.c: the requests' checks ---- */
/* Check a GemmRequest against the protocol's rules and the limits; fill g on success.
 * Returns an RXD_S_* status and, on failure, a sentence in err naming the field. */
int wire_gemm_validate(const Rxgemm__GemmRequest *rq, const struct rxd_limits *lim,
		       struct rxd_gemm *g, struct rxd_error *err);
/* The same with A, B or C (request order) in device tensors of tensor_floats[i] floats
 * (0: not a tensor), whose bytes in rq are then empty: each must hold at least the floats
 * the operand needs. Their pointers in g are NULL; a tensor C counts as given. */
int wire_gemm_validate_tensors(const Rxgemm__GemmRequest *rq, const struct rxd_limits *lim,
			       const uint64_t tensor_floats[3], struct rxd_gemm *g,
			       struct rxd_error *err);
/* Resolve ref (the request field `field`) to ref->length bytes inside a region of t:
 * the region must exist, offset must be a multiple of 4 and offset + length within the
 * region (checked without overflow), length not 0. On success *out is the region (no
 * reference taken) and *data the bytes. A status, with a sentence in err. */
int wire_region(struct rxd_shm *t, const Rxgemm__RegionRef *ref, const char *field,
		struct rxd_region **out, uint8_t **data, struct rxd_error *err);
/* Check a tensor's dims (the request field `field`): 1 to RXD_TENSOR_MAX_DIMS of them, each
 * at least 1, their product's bytes within max_bytes. A status, with a sentence in err. */
int wire_tensor_dims(const int64_t *dims, size_t ndims, uint64_t max_bytes, const char *field,
		     struct rxd_error *err);
/* Check a NasEvalRequest's own fields (dataset, genotype or supernet, runs) and fill ev
 * with them and their defaults; ev points into rq. What depends on the network (lengths,
 * sizes) nas_job_prepare checks. A status, with a sentence in err. */
int wire_nas_eval(const Rxgemm__NasEvalRequest *rq, struct rxd_nas_eval *ev,
		  struct rxd_error *err);

/* Check a SearchRequest's fields (the defaults of the unset ones filled in) and its data,
 * data[half][0] the images and [half][1] the labels of the training (0) and validation
 * (1) halves, already resolved from inline bytes or regions: sizes against the shape,
 * every label in range. Fills a (its data pointing into data); a's regions, resume and
 * state destination are the caller's. A status, with a sentence in err naming the field. */
int wire_search_check(const Rxgemm__SearchRequest *rq, const ProtobufCBinaryData data[2][2],
		      struct rxd_search_job_args *a, struct rxd_error *err);

/* ---- wire-search.c: SearchRequest in, progress and the final reply out ---- */
/* A search: resolved, checked and laid out here, queued by dispatch. Like wire.c's
 * request handlers: a status, with a sentence in err; r's frame is dispatch's once handed
 * there. */
int wire_search(struct rxd_conn *c, const Rxgemm__Request *req, struct rxd_request *r,
		struct rxd_error *err);
/* The final reply's body for a finished search job; what it points to is sj's or *bufs'
 * (freed by the caller with free()). 0 or -ENOMEM. */
int wire_search_reply(const struct rxd_search_job *sj, Rxgemm__SearchReply *out, void **bufs);

/* ---- wire-status.c: the StatusReply ---- */
/* The daemon's figures (nc: the NAS plan cache, may be NULL); the pointers in out stay
 * valid until the next stats_* call.
 * 0 or -ENOMEM. Free with wire_status_free. */
int wire_status_fill(const struct rxd_stats *st, const struct rxd_device *dev,
		     const struct rxd_gemm_engine *eng, struct rxd_nas_cache *nc,
		     Rxgemm__StatusReply *out);
/* Add the sharing figures (fields 50-56: clients, kernel variants, device busy time) to
 * a reply wire_status_fill filled (its uptime_ns is the instant they describe). 0 or
 * -ENOMEM; wire_status_free frees them too. */
int wire_status_sharing(const struct rxd_server *srv, Rxgemm__StatusReply *out);
/* Hide what viewer may not see (status-detail own, the default): other users' clients'
 * names, uids and pids, and their recent jobs' shapes, unless viewer is root. Counts stay.
 * Call after wire_status_fill and wire_status_sharing; 0 or -ENOMEM. */
int wire_status_restrict(const struct rxd_server *srv, const struct rxd_conn *viewer,
			 Rxgemm__StatusReply *out);
void wire_status_free(Rxgemm__StatusReply *out);
/* The whole reply for viewer c: the above, the queue's and the regions' figures. */
int wire_status_build(struct rxd_conn *c, Rxgemm__StatusReply *out);

#endif

/* transport.h: librxgemm's internals (not installed): what transport.c gives the files of
 * the request kinds (gemm.c, status.c, nas.c, tensor.c, buffer.c). They call into
 * transport.c and never the other way: a job's reply is finished through the function its
 * submitter put in its pending entry. */
#ifndef RXGEMM_CLIENT_TRANSPORT_H
#define RXGEMM_CLIENT_TRANSPORT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rxgemm.h"
#include "rxgemm.pb-c.h"

/* The library is built with -fvisibility=hidden; only these functions are its ABI (and the
 * version script in librxgemm.sym names the same set). */
#define RXG_EXPORT __attribute__((visibility("default")))

#define RXG__ERRMSG_BYTES 1024

/* Caps on what we accept from the daemon before we know what a reply may hold. The Hello
 * and Status replies are a few strings and small records; a GEMM reply's cap is computed
 * from the C it must carry (rxg_gemm). Larger announcements mean the stream is corrupt. */
#define RXG__HELLO_REPLY_MAX_BYTES (1u << 20)
#define RXG__STATUS_REPLY_MAX_BYTES (16u << 20)
/* What a GEMM reply carries besides C: status, error text, timings, kernel name, flops. */
#define RXG__REPLY_OVERHEAD_BYTES (1u << 20)

/* A cancel's reply: a status and one small enum. */
#define RXG__CANCEL_REPLY_MAX_BYTES (64u << 10)

/* The geometry of one stored matrix of rows x cols: inner is the extent along which
 * elements are adjacent (rows for column-major, cols for row-major), outer the other one. */
struct stored {
	const char *name; /* "A", "B", "C" */
	const char *ld_name;
	int64_t rows, cols;
	int64_t inner, outer;
	int64_t ld;       /* resolved: never 0 */
	size_t floats;    /* ld * (outer - 1) + inner: one matrix */
	int64_t stride;   /* resolved: floats from one matrix of a batch to the next */
	size_t total;     /* stride * (batch - 1) + floats: the whole array */
};

struct pending;
/* A job's reply, taken out of the pending list by rxg_wait or rxg_wait_any: check it and
 * put its result in place. timings may be NULL. */
typedef int rxg__finish_fn(struct rxg_client *c, struct pending *p, struct rxg_timings *timings);

/* A request sent and not yet waited for. */
struct pending {
	struct pending *next;
	uint64_t id;
	bool job;                         /* rxg_submit_gemm's: waited for by rxg_wait*; else a
					   * blocking call's own (hello, status, cancel) */
	rxg__finish_fn *finish;           /* a job's: how rxg_wait* finishes it */
	Rxgemm__Reply__BodyCase want;     /* the body an OK reply must carry */
	size_t reply_max_bytes;
	Rxgemm__Reply *reply;             /* NULL until it has arrived */
	/* A job's destination, filled in when it is waited for (a tensor read uses c and
	 * sc.total). */
	float *c;
	bool c_in_buffer;                 /* the daemon wrote C into a shared buffer */
	/* The reply's C (a tensor's data) was received straight into c, and the reply holds
	 * none (read_reply: a tight C of LIFT_MIN_BYTES or more); while receiving, delivering
	 * keeps a waiter of a broken connection from returning (its caller may free c). */
	bool c_direct, delivering;
	bool c_is_input;                  /* c's old values matter (beta != 0): never direct */
	struct stored sc;
	int64_t batch;
	/* A GEMM whose host operands went through a staging buffer (stage.c): its C is
	 * copied from there to c when it is finished; released when freed unfinished. */
	struct rxg_buffer *stage;
	size_t stage_c_offset;
	void (*release)(struct pending *p);
	/* A search (search.c): the progress replies come before the final one and queue
	 * here (owned), oldest first, until rxg__wait_progress takes them. */
	Rxgemm__Reply **progress;
	size_t n_progress, cap_progress;
};

/* Staging buffers (stage.c): shared buffers that a GEMM's operands given as plain host
 * arrays are copied into, so that they cross no socket. A few are kept between jobs
 * (registered, and pinned by the daemon after their first use). The pool lives in the
 * handle; transport.c only creates its lock and, at close, hands each kept buffer to
 * drop (which unmaps it: closing ends the daemon's side). */
#define RXG__STAGE_KEEP 4
struct rxg__stage_pool {
	pthread_mutex_t lock;             /* a leaf */
	struct rxg_buffer *kept[RXG__STAGE_KEEP];
	unsigned n_kept;
	void (*drop)(struct rxg_buffer *buf);
};
struct rxg__stage_pool *rxg__client_stage(rxg_client *c);
/* Whether c's staged GEMMs copy their operands after the request (ready words, stage.c). */
bool rxg__client_ready_words(const rxg_client *c);

/* Record why the current call on c fails (rxg_errmsg) and return code, so that callers can
 * write "return rxg__fail(c, RXG_EINVAL, ...)". */
int rxg__fail(rxg_client *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Give req the handle's next request id, file p (its id set here) as pending and send req,
 * with fd (>= 0) attached to the frame (SCM_RIGHTS; the caller keeps its descriptor). On
 * failure p is not filed (the caller frees it) and nothing of req went out, or the
 * connection is broken. rxg__submit is rxg__submit_fd without a descriptor. */
int rxg__submit_fd(struct rxg_client *c, Rxgemm__Request *req, struct pending *p, int fd);
int rxg__submit(struct rxg_client *c, Rxgemm__Request *req, struct pending *p);
/* Free a pending entry taken out of the list, with its reply. NULL is fine. */
void rxg__pending_free(struct pending *p);
/* Wait up to timeout_ms (-1: for ever) for the reply to request id (0: to any job) and
 * take its entry out of the pending list into *out (the caller frees it). RXG_OK,
 * RXG_EAGAIN (not in time), RXG_EINVAL (no such request pending) or RXG_EIO/RXG_EPROTO
 * (the connection is lost). */
int rxg__wait_for(struct rxg_client *c, uint64_t id, int timeout_ms, struct pending **out);
/* rxg__wait_for for a search: returns as soon as progress replies have queued on id's
 * entry, or its final reply has come. On RXG_OK *progress (n of them, the caller frees
 * each and the array) holds those taken, and *out is the entry taken out of the list when
 * the final reply came (else NULL). RXG_EAGAIN: nothing in time; else as rxg__wait_for. */
int rxg__wait_progress(struct rxg_client *c, uint64_t id, int timeout_ms,
		       Rxgemm__Reply ***progress, size_t *n, struct pending **out);
/* The common checks of a reply taken out of the pending list: its status (the daemon's
 * sentence into errmsg) and body. timings may be NULL. */
int rxg__reply_check(struct rxg_client *c, const struct pending *p, struct rxg_timings *timings);
/* The wire's timings into t; all zero when w is NULL. */
void rxg__timings_from_wire(struct rxg_timings *t, const Rxgemm__Timings *w);
/* One blocking round trip (not a job): on RXG_OK *out is the entry with its checked reply
 * (free with rxg__pending_free). rxg__call is rxg__call_fd without a descriptor. */
int rxg__call_fd(struct rxg_client *c, Rxgemm__Request *req, size_t reply_max_bytes,
		 Rxgemm__Reply__BodyCase want, int fd, struct pending **out);
int rxg__call(struct rxg_client *c, Rxgemm__Request *req, size_t reply_max_bytes,
	      Rxgemm__Reply__BodyCase want, struct pending **out);
/* One round trip for req, with fd (>= 0) attached to the frame, accepting a reply as large
 * as a Hello's; on RXG_OK the caller owns *out (free with rxgemm__reply__free_unpacked). */
int rxg__request_fd(rxg_client *c, Rxgemm__Request *req, int fd, Rxgemm__Reply__BodyCase want,
		    Rxgemm__Reply **out);
/* One round trip for req accepting a reply of up to reply_max_bytes; like
 * rxg__request_fd otherwise. */
int rxg__request(rxg_client *c, Rxgemm__Request *req, size_t reply_max_bytes,
		 Rxgemm__Reply__BodyCase want, Rxgemm__Reply **out);

/* A copy of a string from the wire, where NULL stands for "": NULL only on out of memory. */
static inline char *rxg__dup_string(const char *s)
{
	return strdup(s ? s : "");
}

#endif

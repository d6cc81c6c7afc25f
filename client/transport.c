/* transport.c: librxgemm's connection to rxgemmd (see rxgemm.h): connecting, framing,
 * sending requests and waiting for their replies. The request kinds are gemm.c, status.c,
 * nas.c, tensor.c and buffer.c, all built on the calls of transport.h.
 *
 * One handle is one connection, on which any number of requests may be in flight: each
 * gets the handle's next request id and an entry in the pending list, and its reply,
 * whenever it comes, is filed there until someone waits for it. Replies come in whatever
 * order the daemon finishes the jobs.
 *
 * Threads: one thread at a time writes a frame (send_lock) and one at a time reads one
 * (the `reading` role, taken under lock and given back with a broadcast on cond); neither
 * holds lock while on the socket, so one thread can wait for its reply while another
 * sends. Lock order: send_lock, then lock; err_lock (errmsg) is a leaf.
 *
 * A failure in the middle of a frame (short write, lost connection, a reply we cannot
 * parse) leaves the byte stream at an unknown position: the handle then shuts its socket
 * down and every later call fails with RXG_EIO. Errors the daemon reports in a well-formed
 * reply leave the connection usable. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "copy.h"
#include "frame.h"
#include "sockpath.h"
#include "lift.h"
#include "wirecheck.h"
#include "transport.h"

/* The public codes are the wire's codes, so that a daemon status passes through as is. */
#define RXG_SAME_CODE_(code, status) \
	_Static_assert((int)(code) == (int)RXGEMM__STATUS__##status, #code " must equal " #status)
RXG_SAME_CODE_(RXG_OK, STATUS_OK);
RXG_SAME_CODE_(RXG_EINVAL, STATUS_INVALID_ARGUMENT);
RXG_SAME_CODE_(RXG_ETOOBIG, STATUS_TOO_BIG);
RXG_SAME_CODE_(RXG_EPROTO, STATUS_PROTOCOL);
RXG_SAME_CODE_(RXG_EVERSION, STATUS_VERSION);
RXG_SAME_CODE_(RXG_EDEVICE, STATUS_DEVICE);
RXG_SAME_CODE_(RXG_ENOMEM, STATUS_NO_MEMORY);
RXG_SAME_CODE_(RXG_ESHUTDOWN, STATUS_SHUTDOWN);
RXG_SAME_CODE_(RXG_EUNSUPPORTED, STATUS_UNSUPPORTED);
RXG_SAME_CODE_(RXG_EINTERNAL, STATUS_INTERNAL);
RXG_SAME_CODE_(RXG_EBUSY, STATUS_BUSY);
RXG_SAME_CODE_(RXG_ETIMEOUT, STATUS_TIMEOUT);
RXG_SAME_CODE_(RXG_ECANCELLED, STATUS_CANCELLED);
RXG_SAME_CODE_(RXG_EREGION, STATUS_REGION);
RXG_SAME_CODE_(RXG_EPERM, STATUS_PERMISSION);
RXG_SAME_CODE_(RXG_ETENSOR, STATUS_TENSOR);
RXG_SAME_CODE_(RXG_EQUOTA, STATUS_QUOTA);
#undef RXG_SAME_CODE_

struct rxg_client {
	int fd;                           /* open until rxg_close, shut down once broken */
	uint64_t spin_ns;                 /* RXGEMM_SPIN_US (spin_for_reply); set at Hello */
	bool ready_words;                 /* RXGEMM_READY_WORDS (stage.c); set at Hello */
	bool pad;                         /* the daemon takes pad fields (send_aligned) */
	atomic_bool broken;               /* the stream is lost: everything fails with RXG_EIO */
	pthread_mutex_t lock;             /* guards the fields below up to send_lock */
	pthread_cond_t cond;              /* a reply was filed or the reading role is free */
	bool reading;                     /* a thread is reading a frame (without lock) */
	struct pending *pending;          /* oldest first */
	uint64_t next_request_id;
	pthread_mutex_t send_lock;        /* held while one frame goes out; guards send_* */
	int send_fd;                      /* >= 0: goes with the next bytes sent (SCM_RIGHTS) */
	struct rxg_server_info info;      /* strings point into daemon_version and device */
	char *daemon_version;
	char *device;
	pthread_mutex_t err_lock;         /* guards errmsg; a leaf */
	char errmsg[RXG__ERRMSG_BYTES];
	struct rxg__stage_pool stage;     /* stage.c's */
	/* Small protobuf appends are gathered here so that the framing header, tags and
	 * scalars go out in one send; the big matrix payloads bypass it. */
	size_t send_len;
	uint8_t send_buf[16384];
};


/* rxg_connect fails with no handle to hold its explanation; rxg_errmsg(NULL) returns the
 * explanation of the calling thread's last failed rxg_connect from here. */
static _Thread_local char connect_errmsg[RXG__ERRMSG_BYTES];

/* Record why the current call fails and return code, so that callers can write
 * "return fail(c, RXG_EINVAL, ...)"; the other files call it rxg__fail. */
int rxg__fail(rxg_client *c, int code, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&c->err_lock);
	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&c->err_lock);
	return code;
}

#define fail rxg__fail

/* send(), with c->send_fd attached to the first byte when set (then cleared). Called with
 * send_lock held, so the descriptor goes with the frame being sent. */
static ssize_t send_some(struct rxg_client *c, const uint8_t *data, size_t len)
{
	union {
		struct cmsghdr align;
		uint8_t buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { .iov_base = (void *)(uintptr_t)data, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;
	ssize_t n;

	if (c->send_fd < 0)
		return send(c->fd, data, len, MSG_NOSIGNAL);
	memset(&ctl, 0, sizeof(ctl));
	msg.msg_control = ctl.buf;
	msg.msg_controllen = sizeof(ctl.buf);
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &c->send_fd, sizeof(int));
	n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
	if (n > 0)
		c->send_fd = -1;
	return n;
}

/* The stream is out of step with the daemon: give up on the connection. The descriptor
 * stays open (another thread may be in poll or recv on it) until rxg_close. */
static void conn_break(struct rxg_client *c)
{
	if (!atomic_exchange(&c->broken, true) && c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
}

static int send_wait(struct rxg_client *c);

/* A send that moves nothing for this long returns (SO_SNDTIMEO, set at connect), so that
 * the sender can look for replies (send_wait). Sends that move on never pay for it. */
#define SEND_STALL_MS 10

static int write_all(struct rxg_client *c, const uint8_t *data, size_t len)
{
	if (atomic_load(&c->broken))
		return fail(c, RXG_EIO, "the connection to the daemon was lost earlier; reconnect");
	while (len > 0) {
		/* MSG_NOSIGNAL: a daemon that went away must cost the caller an error code, not
		 * its life by SIGPIPE. */
		ssize_t n = send_some(c, data, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				/* Nothing went for SEND_STALL_MS (SO_SNDTIMEO). */
				int rc = send_wait(c);
				if (rc != RXG_OK)
					return rc;
				continue;
			}
			int err = errno;
			conn_break(c);
			return fail(c, RXG_EIO, "cannot send to the daemon: %s", strerror(err));
		}
		data += n;
		len -= (size_t)n;
	}
	return RXG_OK;
}

static int read_exact(struct rxg_client *c, uint8_t *data, size_t len)
{
	while (len > 0) {
		ssize_t n = recv(c->fd, data, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int err = errno;
			conn_break(c);
			return fail(c, RXG_EIO, "cannot receive from the daemon: %s", strerror(err));
		}
		if (n == 0) {
			conn_break(c);
			return fail(c, RXG_EIO, "the daemon closed the connection");
		}
		data += n;
		len -= (size_t)n;
	}
	return RXG_OK;
}

static int send_flush(struct rxg_client *c)
{
	int rc = write_all(c, c->send_buf, c->send_len);

	c->send_len = 0;
	return rc;
}

/* A ProtobufCBuffer that writes the packed message straight to the socket, so that a large
 * GEMM is never copied into one big frame buffer first. */
struct sock_sink {
	ProtobufCBuffer base; /* first, so that sink_append can cast back */
	struct rxg_client *c;
	int rc;               /* the first failure; later appends do nothing */
};

static void sink_append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data)
{
	struct sock_sink *sink = (struct sock_sink *)buffer;
	struct rxg_client *c = sink->c;

	if (sink->rc != RXG_OK)
		return;
	if (c->send_len + len > sizeof(c->send_buf)) {
		sink->rc = send_flush(c);
		if (sink->rc != RXG_OK)
			return;
	}
	if (len >= sizeof(c->send_buf)) {
		sink->rc = write_all(c, data, len);
		return;
	}
	memcpy(c->send_buf + c->send_len, data, len);
	c->send_len += len;
}

/* A request's large inline floats start this many bytes apart from the request's start
 * (the pad fields): the daemon reads them as floats where they arrive, in a buffer that
 * malloc aligns so at least, and moves what is not 4-byte aligned first. protobuf-c's
 * layout put them 1 to 3 bytes off: a move of every such byte on the daemon's loop thread,
 * which all clients wait behind. */
#define SEND_ALIGN 16

/* The requests with such floats (those the daemon lifts out of the frame: daemon/wire.c),
 * by the Request field that holds each (its body case is its field number), and their
 * fields. */
static const struct send_padded {
	Rxgemm__Request__BodyCase body;
	const ProtobufCMessageDescriptor *desc;
	const char *fields[3];
} send_padded[] = {
	{ RXGEMM__REQUEST__BODY_GEMM, &rxgemm__gemm_request__descriptor, { "a", "b", "c" } },
	{ RXGEMM__REQUEST__BODY_NAS_EVAL, &rxgemm__nas_eval_request__descriptor,
	  { "weights", "input" } },
	{ RXGEMM__REQUEST__BODY_TENSOR_CREATE, &rxgemm__tensor_create__descriptor, { "data" } },
	{ RXGEMM__REQUEST__BODY_SEARCH, &rxgemm__search_request__descriptor,
	  { "resume_state" } },
};

/* send_request for a request with inline floats of LIFT_MIN_BYTES or more (send_padded),
 * to a daemon that takes pad fields: each goes out from the caller's memory after a pad
 * that aligns it (lift_splice_aligned). -1 when this does not apply (nothing sent; pack it
 * whole), else as send_request. */
static int send_aligned(struct rxg_client *c, const Rxgemm__Request *req, uint64_t limit)
{
	const struct send_padded *sp = NULL;
	const ProtobufCFieldDescriptor *body = NULL, *fd;
	Rxgemm__Request top;
	struct lift_put puts[3];
	const uint8_t *data[3];
	size_t n = 0, seg_end[3], tail, plen, total;
	uint8_t *inner = NULL, *packed = NULL, *head = NULL;
	int rc = -1;

	if (!c->pad)
		return -1;
	for (size_t i = 0; i < sizeof(send_padded) / sizeof(send_padded[0]) && !sp; i++)
		if (req->body_case == send_padded[i].body)
			sp = &send_padded[i];
	if (!sp ||
	    !(body = protobuf_c_message_descriptor_get_field(&rxgemm__request__descriptor,
							     (unsigned)sp->body)) ||
	    !(fd = protobuf_c_message_descriptor_get_field_by_name(sp->desc, "pad")))
		return -1;
	/* A shallow copy of the body, its large fields emptied, in a copy of req. */
	const void *orig = *(void *const *)((const uint8_t *)req + body->offset);
	if (!orig || !(inner = malloc(sp->desc->sizeof_message)))
		return -1;
	memcpy(inner, orig, sp->desc->sizeof_message);
	top = *req;
	*(void **)((uint8_t *)&top + body->offset) = inner;
	for (size_t i = 0; i < 3 && sp->fields[i]; i++) {
		const ProtobufCFieldDescriptor *f =
			protobuf_c_message_descriptor_get_field_by_name(sp->desc, sp->fields[i]);
		ProtobufCBinaryData *bd;

		if (!f)
			continue;
		bd = (ProtobufCBinaryData *)(void *)(inner + f->offset);
		if (bd->len < LIFT_MIN_BYTES)
			continue;
		puts[n] = (struct lift_put){ .inner = f->id, .len = bd->len };
		data[n++] = bd->data;
		bd->len = 0;
		bd->data = NULL;
	}
	if (!n)
		goto out;
	plen = rxgemm__request__get_packed_size(&top);
	packed = malloc(plen);
	head = malloc(plen + LIFT_SPLICE_EXTRA + n * LIFT_ALIGN_EXTRA);
	if (!packed || !head) {
		rc = fail(c, RXG_ENOMEM, "cannot allocate %zu bytes for a request", 2 * plen);
		goto out;
	}
	rxgemm__request__pack(&top, packed);
	if (lift_splice_aligned(packed, plen, body->id, fd->id, puts, n, SEND_ALIGN, head,
				seg_end, &tail) < 0)
		goto out; /* -1: pack it whole */
	total = seg_end[n - 1] + plen - tail;
	for (size_t i = 0; i < n; i++)
		total += puts[i].len;
	if (total > limit)
		goto out; /* -1: the pads' bytes may be what is too many (send_request says) */
	struct sock_sink sink = { .base = { sink_append }, .c = c, .rc = RXG_OK };
	frame_header_put(c->send_buf, (uint32_t)total);
	c->send_len = FRAME_HEADER_BYTES;
	for (size_t i = 0; i < n; i++) {
		size_t from = i ? seg_end[i - 1] : 0;

		sink_append(&sink.base, seg_end[i] - from, head + from);
		sink_append(&sink.base, puts[i].len, data[i]);
	}
	sink_append(&sink.base, plen - tail, packed + tail);
	rc = sink.rc != RXG_OK ? sink.rc : send_flush(c);
out:
	free(inner);
	free(packed);
	free(head);
	return rc;
}

/* Frame and send req. Fails without sending anything (RXG_ETOOBIG) when the message is over
 * the daemon's max_frame_bytes; the connection breaks on an I/O error. */
static int send_request(struct rxg_client *c, const Rxgemm__Request *req)
{
	size_t body_bytes = rxgemm__request__get_packed_size(req);
	/* max_frame_bytes caps a frame's body, as frame_reader's max_bytes does in the daemon.
	 * 0 means the daemon did not say (or we have not asked yet): only the 32-bit length
	 * field limits us then. */
	uint64_t limit = c->info.max_frame_bytes ? c->info.max_frame_bytes : UINT32_MAX;
	if (limit > UINT32_MAX)
		limit = UINT32_MAX;

	int rc = send_aligned(c, req, limit);
	if (rc >= 0)
		return rc;
	if (body_bytes > limit)
		return fail(c, RXG_ETOOBIG,
			    "the request is %zu bytes, more than the %llu bytes the daemon accepts in "
			    "one message",
			    body_bytes, (unsigned long long)limit);

	struct sock_sink sink = { .base = { sink_append }, .c = c, .rc = RXG_OK };
	frame_header_put(c->send_buf, (uint32_t)body_bytes);
	c->send_len = FRAME_HEADER_BYTES;
	size_t packed = rxgemm__request__pack_to_buffer(req, &sink.base);
	if (sink.rc != RXG_OK)
		return sink.rc;
	if (packed != body_bytes) {
		/* The header already promised body_bytes: the stream is lost. */
		conn_break(c);
		return fail(c, RXG_EIO, "internal error: packed %zu bytes, announced %zu", packed,
			    body_bytes);
	}
	return send_flush(c);
}

/* RXGEMM_SPIN_US, read at each connect: how long a wait for a reply polls the socket
 * before it sleeps in the kernel (at most SPIN_MAX_US). By default SPIN_DEFAULT_US where
 * the daemon busy-polls too (it says so at Hello: a GPU's, not a CPU device's, whose
 * cores run the jobs) and this process may run on SPIN_MIN_CPUS CPUs or more; else 0. A
 * sleeping thread is woken 50 us or more after its reply came on the H200 machine, a
 * sixth of a 1024^3 job there; polling spends this thread's CPU, which a caller waiting
 * for its job does not use anyway, and ends when the reply comes. */
#define SPIN_DEFAULT_US 1000u
#define SPIN_MAX_US 100000u
#define SPIN_MIN_CPUS 4

static uint64_t spin_setting(bool daemon_polls)
{
	const char *v = getenv("RXGEMM_SPIN_US");
	uint64_t dflt = 0;
	cpu_set_t set;
	unsigned long n;
	char *end;

	if (daemon_polls && sched_getaffinity(0, sizeof(set), &set) == 0 &&
	    CPU_COUNT(&set) >= SPIN_MIN_CPUS)
		dflt = SPIN_DEFAULT_US * 1000ull;
	if (!v || !*v)
		return dflt;
	errno = 0;
	n = strtoul(v, &end, 10);
	/* Anything else keeps the default, as RXGEMM_COPY_THREADS does. */
	if (errno || *end != '\0' || v[0] < '0' || v[0] > '9' || n > SPIN_MAX_US)
		return dflt;
	return n * 1000ull;
}

/* Whether staged GEMMs send their request before the copies (stage.c, ready words): only
 * where RXGEMM_READY_WORDS is 1 and the daemon has the capability. The copies then overlap
 * the request's way to the device and the first operand's upload: on the H200 machine a
 * 1024^3 job took 0.53 ms at best against 0.60 without. But the device waits for a copy
 * that is held up, for every client of the daemon (medians of 1.7 ms in two rounds of
 * three), which a default should not risk. */
static bool ready_setting(const Rxgemm__HelloReply *h)
{
	const char *v = getenv("RXGEMM_READY_WORDS");

	if (!v || strcmp(v, "1"))
		return false;
	for (size_t i = 0; i < h->n_capabilities; i++)
		if (h->capabilities[i] && !strcmp(h->capabilities[i], "ready-words"))
			return true;
	return false;
}

bool rxg__client_ready_words(const rxg_client *c)
{
	return c->ready_words;
}

/* Poll c's socket until a reply starts to come in, for at most c->spin_ns (and timeout_ms
 * when that is not -1). */
static void spin_for_reply(struct rxg_client *c, int timeout_ms)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	uint64_t until, limit;

	if (!c->spin_ns)
		return;
	until = rxg__mono_ns() + c->spin_ns;
	if (timeout_ms > 0 && (limit = rxg__mono_ns() + (uint64_t)timeout_ms * 1000000) < until)
		until = limit;
	while (poll(&pfd, 1, 0) == 0 && rxg__mono_ns() < until)
		;
}

/* The replies' large fields (lift.h): C, and a tensor's data. */
static const struct lift_field reply_lifts[] = {
	{ .outer = 6, .inner = 1 },  /* gemm.c */
	{ .outer = 13, .inner = 1 }, /* tensor_data.data */
};
#define REPLY_LIFT_PREFIX 256

/* Whether p's reply may put the data cut lifts straight into p->c: C (or the tensor's data)
 * lies there as in the reply, with no padding or gap that is the caller's. */
static bool direct_fits(const struct pending *p, const struct lift_cut *cut)
{
	const struct stored *sc = &p->sc;

	/* Not over C's input either: a failure midway would leave a caller who retries with
	 * beta != 0 a C that is no longer theirs. */
	if (!p->c || p->c_is_input || p->reply || p->delivering ||
	    cut->len != sc->total * sizeof(float))
		return false;
	if (cut->outer == RXGEMM__REPLY__BODY_TENSOR_DATA)
		return p->want == RXGEMM__REPLY__BODY_TENSOR_DATA;
	return cut->outer == RXGEMM__REPLY__BODY_GEMM && p->want == RXGEMM__REPLY__BODY_GEMM &&
	       !p->c_in_buffer && !p->stage && sc->ld == sc->inner &&
	       (p->batch <= 1 || sc->stride == sc->ld * sc->outer);
}

/* The pending entry of request id that may take cut's data straight into its c, marked
 * delivering; NULL when none may. */
static struct pending *direct_take(struct rxg_client *c, uint64_t id, const struct lift_cut *cut)
{
	struct pending *found = NULL;

	pthread_mutex_lock(&c->lock);
	for (struct pending *p = c->pending; p; p = p->next)
		if (p->id == id) {
			if (direct_fits(p, cut)) {
				p->delivering = true;
				found = p;
			}
			break;
		}
	pthread_mutex_unlock(&c->lock);
	return found;
}

#ifdef RXG_TEST_HOOKS
/* Tests only (test-reply builds the library's sources with RXG_TEST_HOOKS): called by the
 * reading thread when a reply it was receiving into a caller's array did not end there
 * (a read failed and broke the connection, or the reply was not what its start said),
 * while the entry is still marked delivering, so that a test can see what another
 * thread's wait does in that window. */
void (*rxg__hook_delivery_failed)(void);
#endif

static void direct_end(struct rxg_client *c, struct pending *p, bool delivered)
{
#ifdef RXG_TEST_HOOKS
	if (!delivered && rxg__hook_delivery_failed)
		rxg__hook_delivery_failed();
#endif
	pthread_mutex_lock(&c->lock);
	p->delivering = false;
	p->c_direct = delivered;
	pthread_mutex_unlock(&c->lock);
}

/* A reply body of len bytes (len >= LIFT_MIN_BYTES) read with its large field received
 * straight where it goes: into the caller's array when the reply's request has one that
 * takes it as it is (direct_fits), else into memory of its own that the unpacked reply
 * then owns. protobuf-c's copy of megabytes into fresh pages cost more than the socket
 * (docs/PERFORMANCE.md). RXG_OK with *out set, or with *out NULL and *body the whole body
 * (nothing lifted: unpack it); else the connection is broken. */
static int read_lifted(struct rxg_client *c, size_t len, Rxgemm__Reply **out, uint8_t **body)
{
	size_t prefix_len = len < REPLY_LIFT_PREFIX ? len : REPLY_LIFT_PREFIX;
	uint8_t prefix[REPLY_LIFT_PREFIX];
	uint8_t *data = NULL, *suffix = NULL, *reduced = NULL;
	size_t have, suffix_len, reduced_len;
	struct pending *dest = NULL;
	struct lift_cut cut;
	uint64_t id;
	int rc;

	*out = NULL;
	*body = NULL;
	rc = read_exact(c, prefix, prefix_len);
	if (rc != RXG_OK)
		return rc;
	if (!lift_locate(prefix, prefix_len, len, reply_lifts,
			 sizeof(reply_lifts) / sizeof(reply_lifts[0]), LIFT_MIN_BYTES, &cut)) {
		data = malloc(len);
		if (!data)
			goto nomem;
		memcpy(data, prefix, prefix_len);
		*body = data;
		return read_exact(c, data + prefix_len, len - prefix_len);
	}
	have = prefix_len - cut.data;
	suffix_len = len - cut.data - cut.len;
	/* Into the caller's array only for a reply that says it succeeded (no status field:
	 * STATUS_OK) to a request waiting for it. */
	uint64_t status;
	if (wirecheck_varint_field(prefix, cut.outer_start, 1, &id) == 0 &&
	    wirecheck_varint_field(prefix, cut.outer_start, 2, &status) == -ENOENT)
		dest = direct_take(c, id, &cut);
	data = dest ? (uint8_t *)dest->c : malloc(cut.len);
	suffix = malloc(suffix_len ? suffix_len : 1);
	if (!data || !suffix)
		goto nomem;
	memcpy(data, prefix + cut.data, have);
	if ((rc = read_exact(c, data + have, cut.len - have)) != RXG_OK ||
	    (rc = read_exact(c, suffix, suffix_len)) != RXG_OK)
		goto out;
	rc = lift_cut_reduce(&cut, prefix, suffix, suffix_len, &reduced, &reduced_len);
	if (rc == 0) {
		*out = rxgemm__reply__unpack(NULL, reduced_len, reduced);
		free(reduced);
		if (*out && dest && (*out)->request_id == id &&
		    (*out)->body_case == (Rxgemm__Reply__BodyCase)cut.outer &&
		    (*out)->status == RXGEMM__STATUS__STATUS_OK) {
			/* The data is in place; the reply says so by its entry. */
			direct_end(c, dest, true);
			free(suffix);
			return RXG_OK;
		}
		if (*out && !dest && lift_cut_restore(&(*out)->base, &cut, data) == 0) {
			free(suffix);
			return RXG_OK; /* data is the reply's now */
		}
		if (*out)
			rxgemm__reply__free_unpacked(*out, NULL);
		*out = NULL;
	} else if (rc == -ENOMEM) {
		goto nomem;
	}
	/* Not as the scan saw it: the body whole, for protobuf-c's verdict. */
	*body = malloc(len);
	if (!*body)
		goto nomem;
	memcpy(*body, prefix, cut.data);
	memcpy(*body + cut.data, data, cut.len);
	memcpy(*body + cut.data + cut.len, suffix, suffix_len);
	rc = RXG_OK;
	goto out;
nomem:
	conn_break(c);
	rc = fail(c, RXG_ENOMEM, "cannot allocate %zu bytes for the daemon's reply", len);
out:
	if (dest)
		direct_end(c, dest, false);
	else
		free(data);
	free(suffix);
	return rc;
}

/* Read one Reply frame, waiting at most timeout_ms for it to start (-1: for ever); the
 * frame itself is read whole. Refuses a frame longer than the largest reply a pending
 * request allows. Call in the reading role, without lock. On RXG_OK the caller owns *out;
 * RXG_EAGAIN when nothing came in time; any other failure breaks the connection. */
static int read_reply(struct rxg_client *c, int timeout_ms, Rxgemm__Reply **out)
{
	uint8_t hdr[FRAME_HEADER_BYTES];
	uint8_t *body = NULL;
	size_t max_bytes = RXG__HELLO_REPLY_MAX_BYTES;
	int rc;

	*out = NULL;
	if (atomic_load(&c->broken))
		return fail(c, RXG_EIO, "the connection to the daemon was lost earlier; reconnect");
	if (timeout_ms != 0)
		spin_for_reply(c, timeout_ms);
	if (timeout_ms >= 0) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		int n;

		while ((n = poll(&pfd, 1, timeout_ms)) < 0 && errno == EINTR)
			;
		if (n == 0)
			return RXG_EAGAIN;
	}
	rc = read_exact(c, hdr, sizeof(hdr));
	if (rc != RXG_OK)
		goto out;
	uint32_t len = frame_header_get(hdr);
	pthread_mutex_lock(&c->lock);
	for (const struct pending *p = c->pending; p; p = p->next)
		if (p->reply_max_bytes > max_bytes)
			max_bytes = p->reply_max_bytes;
	pthread_mutex_unlock(&c->lock);
	if (len > max_bytes) {
		conn_break(c);
		rc = fail(c, RXG_EPROTO,
			  "the daemon announced a reply of %lu bytes; the requests in flight allow "
			  "at most %zu",
			  (unsigned long)len, max_bytes);
		goto out;
	}
	if (len >= LIFT_MIN_BYTES) {
		rc = read_lifted(c, len, out, &body);
		if (rc != RXG_OK || *out)
			goto out;
	} else {
		body = malloc(len ? len : 1);
		if (!body) {
			conn_break(c);
			rc = fail(c, RXG_ENOMEM, "cannot allocate %lu bytes for the daemon's reply",
				  (unsigned long)len);
			goto out;
		}
		rc = read_exact(c, body, len);
		if (rc != RXG_OK)
			goto out;
	}
	*out = rxgemm__reply__unpack(NULL, len, body);
	if (!*out) {
		conn_break(c);
		rc = fail(c, RXG_EPROTO, "cannot decode the daemon's reply (%lu bytes)",
			  (unsigned long)len);
		goto out;
	}
out:
	free(body);
	return rc;
}

void rxg__timings_from_wire(struct rxg_timings *t, const Rxgemm__Timings *w)
{
	if (!w) {
		memset(t, 0, sizeof(*t));
		return;
	}
	t->queued_ns = w->queued_ns;
	t->h2d_ns = w->h2d_ns;
	t->kernel_ns = w->kernel_ns;
	t->d2h_ns = w->d2h_ns;
	t->total_ns = w->total_ns;
}

/* The daemon's status as our return code; a value outside the enum we know is a protocol
 * error of its own. */
static int status_code(Rxgemm__Status status)
{
	return status >= RXGEMM__STATUS__STATUS_OK && status <= RXGEMM__STATUS__STATUS_QUOTA
		       ? (int)status
		       : -1;
}

static int fail_with_reply(struct rxg_client *c, const Rxgemm__Reply *reply)
{
	const char *text = reply->error && *reply->error ? reply->error : "the daemon gave no reason";
	int code = status_code(reply->status);

	if (code < 0)
		return fail(c, RXG_EPROTO, "the daemon replied with unknown status %d: %s",
			    (int)reply->status, text);
	return fail(c, code, "%s", text);
}

/* Give req the handle's next request id, file p (its id set here) as pending and send req.
 * On failure p is not filed (the caller frees it) and nothing of req went out, or the
 * connection is broken. */
int rxg__submit_fd(struct rxg_client *c, Rxgemm__Request *req, struct pending *p, int fd)
{
	struct pending **pp;
	int rc;

	pthread_mutex_lock(&c->send_lock);
	c->send_fd = fd; /* the frame's first bytes carry it (regions: buffer.c) */
	if (atomic_load(&c->broken)) {
		rc = fail(c, RXG_EIO, "the connection to the daemon was lost earlier; reconnect");
		goto out;
	}
	/* Filed before it is sent: another thread may read the reply before send returns. */
	pthread_mutex_lock(&c->lock);
	p->id = c->next_request_id++;
	p->next = NULL;
	for (pp = &c->pending; *pp; pp = &(*pp)->next)
		;
	*pp = p;
	pthread_mutex_unlock(&c->lock);
	req->request_id = p->id;
	rc = send_request(c, req);
	c->send_fd = -1;
	if (rc != RXG_OK) {
		pthread_mutex_lock(&c->lock);
		for (pp = &c->pending; *pp != p; pp = &(*pp)->next)
			;
		*pp = p->next;
		pthread_mutex_unlock(&c->lock);
	}
out:
	pthread_mutex_unlock(&c->send_lock);
	return rc;
}

int rxg__submit(struct rxg_client *c, Rxgemm__Request *req, struct pending *p)
{
	return rxg__submit_fd(c, req, p, -1);
}

void rxg__pending_free(struct pending *p)
{
	if (!p)
		return;
	if (p->release)
		p->release(p);
	if (p->reply)
		rxgemm__reply__free_unpacked(p->reply, NULL);
	for (size_t i = 0; i < p->n_progress; i++)
		rxgemm__reply__free_unpacked(p->progress[i], NULL);
	free(p->progress);
	free(p);
}

/* File a reply that arrived with its request. Call with lock held. Takes reply. */
static int file_reply(struct rxg_client *c, Rxgemm__Reply *reply)
{
	for (struct pending *p = c->pending; p; p = p->next)
		if (p->id == reply->request_id && !p->reply) {
			if (reply->body_case == RXGEMM__REPLY__BODY_SEARCH_PROGRESS &&
			    p->want == RXGEMM__REPLY__BODY_SEARCH &&
			    reply->status == RXGEMM__STATUS__STATUS_OK) {
				/* A search's report: queued; the entry waits on. */
				if (p->n_progress == p->cap_progress) {
					size_t cap = p->cap_progress ? 2 * p->cap_progress : 8;
					Rxgemm__Reply **q = realloc(p->progress, cap * sizeof(*q));

					if (!q) {
						rxgemm__reply__free_unpacked(reply, NULL);
						return RXG_OK; /* a report lost, not the search */
					}
					p->progress = q;
					p->cap_progress = cap;
				}
				p->progress[p->n_progress++] = reply;
				return RXG_OK;
			}
			p->reply = reply;
			return RXG_OK;
		}
	conn_break(c);
	if (reply->request_id == 0 && reply->status != RXGEMM__STATUS__STATUS_OK)
		/* The daemon could not decode one of our frames far enough to know its id. */
		fail_with_reply(c, reply);
	else
		fail(c, RXG_EPROTO, "the daemon answered request %llu, which is not in flight",
		     (unsigned long long)reply->request_id);
	rxgemm__reply__free_unpacked(reply, NULL);
	return RXG_EPROTO;
}

/* The socket took nothing for SEND_STALL_MS. The daemon stops reading a client whose
 * replies pile up unread (8 MiB of them), and a thread in the middle of a frame reads no
 * reply until its send is done: a caller with two large jobs in flight (rxg_submit_gemm,
 * then rxg_wait) waited on the daemon while the daemon waited on it. So wait until the
 * socket takes more, and meanwhile read the replies that come, when no other thread is
 * reading; they are filed for whoever waits for them. */
static int send_wait(struct rxg_client *c)
{
	struct pollfd pfd = { .fd = c->fd };
	bool reader = false;
	int rc = RXG_OK;

	pthread_mutex_lock(&c->lock);
	if (!c->reading)
		reader = c->reading = true;
	pthread_mutex_unlock(&c->lock);
	/* As many replies as come before the socket takes more: the daemon reads on only
	 * once enough of them are out. Not the reader: look again now and then, for the
	 * reading role may come free with replies still to read. */
	for (;;) {
		Rxgemm__Reply *reply = NULL;
		int n;

		pfd.events = POLLOUT | (reader ? POLLIN : 0);
		while ((n = poll(&pfd, 1, reader ? -1 : SEND_STALL_MS)) < 0 && errno == EINTR)
			;
		if (!reader || n <= 0 || (pfd.revents & POLLOUT) ||
		    !(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
			break;
		rc = read_reply(c, 0, &reply);
		pthread_mutex_lock(&c->lock);
		if (rc == RXG_OK && reply)
			rc = file_reply(c, reply);
		pthread_cond_broadcast(&c->cond); /* a waiter's reply may be there */
		pthread_mutex_unlock(&c->lock);
		if (rc != RXG_OK)
			break;
	}
	if (reader) {
		pthread_mutex_lock(&c->lock);
		c->reading = false;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
	}
	return rc == RXG_EAGAIN ? RXG_OK : rc;
}

/* Wait up to timeout_ms (-1: for ever) for the reply to request id (0: to any job) and
 * take its entry out of the pending list into *out (the caller frees it). RXG_OK,
 * RXG_EAGAIN (not in time), RXG_EINVAL (no such request pending) or RXG_EIO/RXG_EPROTO
 * (the connection is lost). */
/* rxg__wait_for, and with progress set rxg__wait_progress (id's entry only). */
static int wait_core(struct rxg_client *c, uint64_t id, int timeout_ms, struct pending **out,
		     Rxgemm__Reply ***progress, size_t *n_progress)
{
	uint64_t deadline = timeout_ms >= 0 ? rxg__mono_ns() + (uint64_t)timeout_ms * 1000000 : 0;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct pending **pp, *found = NULL;
		bool waiting = false, delivering = false;
		int left_ms = -1;

		for (pp = &c->pending; *pp; pp = &(*pp)->next) {
			struct pending *p = *pp;

			if (id ? p->id != id : !p->job)
				continue;
			waiting = true;
			delivering |= p->delivering;
			if (progress && p->n_progress) {
				/* The reports, and the final reply if it has come too. */
				*progress = p->progress;
				*n_progress = p->n_progress;
				p->progress = NULL;
				p->n_progress = p->cap_progress = 0;
				if (p->reply) {
					*pp = p->next;
					*out = p;
				}
				found = p;
				break;
			}
			if (p->reply) {
				*pp = p->next;
				found = p;
				*out = p;
				break;
			}
		}
		if (found) {
			rc = RXG_OK;
			break;
		}
		if (!waiting) {
			rc = id ? fail(c, RXG_EINVAL,
				       "request %llu is not a job of this connection waiting to be "
				       "waited for",
				       (unsigned long long)id)
				: fail(c, RXG_EINVAL, "no job of this connection is waiting to be "
						      "waited for");
			break;
		}
		if (atomic_load(&c->broken) && !delivering) {
			/* (Not while the reading thread still writes into a caller's array
			 * that our caller may free once we return: it wakes us when done. A
			 * timed wait that runs out meanwhile says RXG_EAGAIN, and the next
			 * wait RXG_EIO.) */
			rc = RXG_EIO; /* errmsg says why already */
			break;
		}
		if (timeout_ms >= 0) {
			uint64_t now = rxg__mono_ns();

			left_ms = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
		}
		if (!c->reading) {
			Rxgemm__Reply *reply;

			c->reading = true;
			pthread_mutex_unlock(&c->lock);
			rc = read_reply(c, left_ms, &reply);
			pthread_mutex_lock(&c->lock);
			c->reading = false;
			pthread_cond_broadcast(&c->cond);
			if (rc == RXG_EAGAIN)
				break;
			if (rc == RXG_OK)
				rc = file_reply(c, reply);
			if (rc != RXG_OK)
				break;
			continue;
		}
		/* Another thread reads; it files what comes and wakes us. */
		if (left_ms == 0) {
			rc = RXG_EAGAIN;
			break;
		}
		if (timeout_ms < 0) {
			pthread_cond_wait(&c->cond, &c->lock);
		} else {
			struct timespec ts = { (time_t)(deadline / 1000000000ull),
					       (long)(deadline % 1000000000ull) };
			pthread_cond_timedwait(&c->cond, &c->lock, &ts);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int rxg__wait_for(struct rxg_client *c, uint64_t id, int timeout_ms, struct pending **out)
{
	return wait_core(c, id, timeout_ms, out, NULL, NULL);
}

int rxg__wait_progress(struct rxg_client *c, uint64_t id, int timeout_ms,
		       Rxgemm__Reply ***progress, size_t *n, struct pending **out)
{
	*progress = NULL;
	*n = 0;
	return wait_core(c, id, timeout_ms, out, progress, n);
}

/* The common checks of a reply taken out of the pending list: its status (the daemon's
 * sentence into errmsg) and body. timings may be NULL. */
int rxg__reply_check(struct rxg_client *c, const struct pending *p, struct rxg_timings *timings)
{
	const Rxgemm__Reply *reply = p->reply;

	if (timings)
		rxg__timings_from_wire(timings, reply->timings);
	if (reply->status != RXGEMM__STATUS__STATUS_OK)
		return fail_with_reply(c, reply);
	if (reply->body_case != p->want) {
		conn_break(c);
		return fail(c, RXG_EPROTO, "the daemon sent a reply of kind %d, expected kind %d",
			    (int)reply->body_case, (int)p->want);
	}
	return RXG_OK;
}

/* One blocking round trip of the library's own (hello, status, cancel). On RXG_OK *out
 * is the entry with its checked reply (free with pending_free). */
int rxg__call_fd(struct rxg_client *c, Rxgemm__Request *req, size_t reply_max_bytes,
		 Rxgemm__Reply__BodyCase want, int fd, struct pending **out)
{
	struct pending *p = calloc(1, sizeof(*p));
	uint64_t id;
	int rc;

	*out = NULL;
	if (!p)
		return fail(c, RXG_ENOMEM, "out of memory");
	p->want = want;
	p->reply_max_bytes = reply_max_bytes;
	rc = rxg__submit_fd(c, req, p, fd);
	if (rc != RXG_OK) {
		rxg__pending_free(p);
		return rc;
	}
	id = p->id;
	p = NULL;
	rc = rxg__wait_for(c, id, -1, &p);
	if (rc == RXG_OK && (rc = rxg__reply_check(c, p, NULL)) == RXG_OK) {
		*out = p;
		return RXG_OK;
	}
	rxg__pending_free(p);
	return rc;
}

int rxg__call(struct rxg_client *c, Rxgemm__Request *req, size_t reply_max_bytes,
	      Rxgemm__Reply__BodyCase want, struct pending **out)
{
	return rxg__call_fd(c, req, reply_max_bytes, want, -1, out);
}

int rxg__request_fd(rxg_client *c, Rxgemm__Request *req, int fd, Rxgemm__Reply__BodyCase want,
		    Rxgemm__Reply **out)
{
	struct pending *p = NULL;
	int rc;

	*out = NULL;
	rc = rxg__call_fd(c, req, RXG__HELLO_REPLY_MAX_BYTES, want, fd, &p);
	if (rc == RXG_OK) {
		*out = p->reply;
		p->reply = NULL;
	}
	rxg__pending_free(p);
	return rc;
}

int rxg__request(rxg_client *c, Rxgemm__Request *req, size_t reply_max_bytes,
		 Rxgemm__Reply__BodyCase want, Rxgemm__Reply **out)
{
	struct pending *p = NULL;
	int rc;

	*out = NULL;
	rc = rxg__call(c, req, reply_max_bytes, want, &p);
	if (rc == RXG_OK) {
		*out = p->reply;
		p->reply = NULL;
	}
	rxg__pending_free(p);
	return rc;
}

RXG_EXPORT int rxg_default_socket(char *buf, size_t len)
{
	if (!buf)
		return RXG_EINVAL;
	return sockpath_client_default(buf, len) == 0 ? RXG_OK : RXG_EINVAL;
}

/* connect(2), seeing an interrupted connect through: after EINTR the connection carries on
 * in the background and a second connect() would fail with EALREADY. */
static int connect_unix(int fd, const struct sockaddr_un *addr)
{
	if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0)
		return 0;
	if (errno != EINTR)
		return -errno;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		int n = poll(&pfd, 1, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		break;
	}
	int err = 0;
	socklen_t errlen = sizeof(err);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
		return -errno;
	return -err;
}

static int hello(struct rxg_client *c, const char *client_name)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__Hello msg = RXGEMM__HELLO__INIT;
	struct pending *p = NULL;
	int rc;

	msg.protocol_version = RXGEMM_PROTOCOL_VERSION;
	msg.client_name = (char *)client_name; /* only read by the packer */
	req.body_case = RXGEMM__REQUEST__BODY_HELLO;
	req.hello = &msg;
	rc = rxg__call(c, &req, RXG__HELLO_REPLY_MAX_BYTES, RXGEMM__REPLY__BODY_HELLO, &p);
	if (rc != RXG_OK)
		goto out;
	const Rxgemm__HelloReply *h = p->reply->hello;
	c->daemon_version = strdup(h->daemon_version ? h->daemon_version : "");
	c->device = strdup(h->device ? h->device : "");
	if (!c->daemon_version || !c->device) {
		rc = fail(c, RXG_ENOMEM, "out of memory");
		goto out;
	}
	c->info.protocol_version = h->protocol_version;
	c->info.daemon_version = c->daemon_version;
	c->info.device = c->device;
	c->info.max_frame_bytes = h->max_frame_bytes;
	c->info.client_id = h->client_id;
	c->info.busy_poll_us = h->busy_poll_us;
	c->spin_ns = spin_setting(h->busy_poll_us != 0);
	/* The copy threads poll where this socket does, for the same wake-ups; they are the
	 * process's, so the last handle to connect sets it for all. */
	rxg__copy_spin_set(c->spin_ns);
	c->ready_words = ready_setting(h);
	c->pad = false;
	for (size_t i = 0; i < h->n_capabilities; i++)
		c->pad |= h->capabilities[i] && !strcmp(h->capabilities[i], "pad");
out:
	rxg__pending_free(p);
	return rc;
}

RXG_EXPORT int rxg_connect(const char *socket_path, const char *client_name, rxg_client **out)
{
	char path_buf[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct rxg_client *c;
	int rc;

	if (!out) {
		snprintf(connect_errmsg, sizeof(connect_errmsg), "rxg_connect: out is NULL");
		return RXG_EINVAL;
	}
	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(connect_errmsg, sizeof(connect_errmsg), "out of memory");
		return RXG_ENOMEM;
	}
	c->fd = -1;
	atomic_init(&c->broken, false);
	c->send_fd = -1;
	c->next_request_id = 1;
	c->info.daemon_version = c->info.device = "";
	pthread_condattr_t ca;
	bool cond_ok = pthread_condattr_init(&ca) == 0;
	/* Timed waits count on the monotonic clock, as deadlines in wait_for do. */
	if (cond_ok) {
		cond_ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
			  pthread_cond_init(&c->cond, &ca) == 0;
		pthread_condattr_destroy(&ca);
	}
	if (!cond_ok || pthread_mutex_init(&c->lock, NULL) != 0 ||
	    pthread_mutex_init(&c->send_lock, NULL) != 0 ||
	    pthread_mutex_init(&c->err_lock, NULL) != 0 ||
	    pthread_mutex_init(&c->stage.lock, NULL) != 0) {
		/* Only on resource exhaustion, where glibc's init cannot fail anyway. */
		free(c);
		snprintf(connect_errmsg, sizeof(connect_errmsg), "cannot create a mutex");
		return RXG_ENOMEM;
	}
	rxg__copy_hold(); /* rxg_close drops it, also on the failures below */

	if (!socket_path) {
		if (rxg_default_socket(path_buf, sizeof(path_buf)) != RXG_OK) {
			rc = fail(c, RXG_EINVAL, "the default socket path is too long for a Unix socket");
			goto out;
		}
		socket_path = path_buf;
	}
	size_t path_len = strlen(socket_path);
	if (path_len == 0 || path_len >= sizeof(addr.sun_path)) {
		rc = fail(c, RXG_EINVAL, "socket path '%s' is %s (%zu bytes; at most %zu)", socket_path,
			  path_len ? "too long" : "empty", path_len, sizeof(addr.sun_path) - 1);
		goto out;
	}
	memcpy(addr.sun_path, socket_path, path_len + 1);

	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		rc = fail(c, RXG_ECONNECT, "cannot create a socket: %s", strerror(errno));
		goto out;
	}
	int err = connect_unix(c->fd, &addr);
	if (err < 0) {
		rc = fail(c, RXG_ECONNECT, "%s: %s%s", socket_path, strerror(-err),
			  err == -ENOENT || err == -ECONNREFUSED ? " (is rxgemmd running?)" : "");
		goto out;
	}
	struct timeval stall = { 0, SEND_STALL_MS * 1000 };
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &stall, sizeof(stall)) < 0) {
		rc = fail(c, RXG_ECONNECT, "cannot set a send timeout: %s", strerror(errno));
		goto out;
	}
	rc = hello(c, client_name ? client_name : "librxgemm");
out:
	if (rc != RXG_OK) {
		memcpy(connect_errmsg, c->errmsg, sizeof(connect_errmsg));
		rxg_close(c);
		return rc;
	}
	*out = c;
	return RXG_OK;
}

RXG_EXPORT void rxg_close(rxg_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	while (c->pending) {
		struct pending *p = c->pending;

		c->pending = p->next;
		rxg__pending_free(p);
	}
	for (unsigned i = 0; i < c->stage.n_kept; i++)
		c->stage.drop(c->stage.kept[i]);
	pthread_mutex_destroy(&c->stage.lock);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->send_lock);
	pthread_mutex_destroy(&c->err_lock);
	pthread_mutex_destroy(&c->lock);
	free(c->daemon_version);
	free(c->device);
	free(c);
	rxg__copy_drop(); /* the last handle: the copy threads end */
}

struct rxg__stage_pool *rxg__client_stage(rxg_client *c)
{
	return &c->stage;
}

RXG_EXPORT const char *rxg_errmsg(const rxg_client *c)
{
	return c ? c->errmsg : connect_errmsg;
}

RXG_EXPORT const struct rxg_server_info *rxg_server_info(const rxg_client *c)
{
	return c ? &c->info : NULL;
}

RXG_EXPORT int rxg_wait(rxg_client *c, uint64_t id, struct rxg_timings *timings)
{
	struct pending *p = NULL;
	int rc;

	if (timings)
		memset(timings, 0, sizeof(*timings));
	if (!c)
		return RXG_EINVAL;
	if (id == 0)
		return fail(c, RXG_EINVAL, "rxg_wait: request id 0 is never a job's");
	rc = rxg__wait_for(c, id, -1, &p);
	if (rc == RXG_OK && !p->job) {
		/* Another thread's blocking call: not ours to take. */
		rc = fail(c, RXG_EINVAL, "request %llu is not a job", (unsigned long long)id);
		pthread_mutex_lock(&c->lock);
		p->next = c->pending;
		c->pending = p;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		return rc;
	}
	if (rc == RXG_OK)
		rc = p->finish(c, p, timings);
	rxg__pending_free(p);
	return rc;
}

RXG_EXPORT int rxg_wait_any(rxg_client *c, int timeout_ms, uint64_t *id,
			    struct rxg_timings *timings)
{
	struct pending *p = NULL;
	int rc;

	if (timings)
		memset(timings, 0, sizeof(*timings));
	if (id)
		*id = 0;
	if (!c)
		return RXG_EINVAL;
	if (!id)
		return fail(c, RXG_EINVAL, "rxg_wait_any: id is NULL");
	rc = rxg__wait_for(c, 0, timeout_ms < 0 ? -1 : timeout_ms, &p);
	if (rc != RXG_OK)
		return rc;
	*id = p->id;
	rc = p->finish(c, p, timings);
	rxg__pending_free(p);
	return rc;
}

RXG_EXPORT int rxg_cancel(rxg_client *c, uint64_t id, enum rxg_cancel_outcome *outcome)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__CancelRequest msg = RXGEMM__CANCEL_REQUEST__INIT;
	struct pending *p = NULL;
	bool known = false;
	int rc;

	if (outcome)
		*outcome = RXG_CANCEL_NOT_FOUND;
	if (!c)
		return RXG_EINVAL;
	pthread_mutex_lock(&c->lock);
	for (const struct pending *q = c->pending; q && !known; q = q->next)
		known = (q->job || q->want == RXGEMM__REPLY__BODY_SEARCH) && q->id == id;
	pthread_mutex_unlock(&c->lock);
	if (!known)
		return fail(c, RXG_EINVAL,
			    "request %llu is not a job of this connection waiting to be waited for",
			    (unsigned long long)id);
	msg.target_request_id = id;
	req.body_case = RXGEMM__REQUEST__BODY_CANCEL;
	req.cancel = &msg;
	rc = rxg__call(c, &req, RXG__CANCEL_REPLY_MAX_BYTES, RXGEMM__REPLY__BODY_CANCEL, &p);
	if (rc != RXG_OK)
		return rc;
	switch (p->reply->cancel->outcome) {
	case RXGEMM__CANCEL_OUTCOME__CANCEL_NOT_FOUND:
	case RXGEMM__CANCEL_OUTCOME__CANCEL_QUEUED:
	case RXGEMM__CANCEL_OUTCOME__CANCEL_RUNNING:
		if (outcome)
			*outcome = (enum rxg_cancel_outcome)p->reply->cancel->outcome;
		break;
	default:
		rc = fail(c, RXG_EPROTO, "the daemon answered a cancel with unknown outcome %d",
			  (int)p->reply->cancel->outcome);
	}
	rxg__pending_free(p);
	return rc;
}

RXG_EXPORT int rxg_fd(const rxg_client *c)
{
	return c && !atomic_load(&((struct rxg_client *)c)->broken) ? c->fd : -1;
}

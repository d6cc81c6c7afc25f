/* client.c: librxgemm, the client side of rxgemmd's socket protocol (see rxgemm.h).
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

#include "buffer.h"
#include "frame.h"
#include "rxgemm.h"
#include "rxgemm.pb-c.h"
#include "sockpath.h"

/* The library is built with -fvisibility=hidden; only these functions are its ABI (and the
 * version script in librxgemm.sym names the same set). */
#define RXG_EXPORT __attribute__((visibility("default")))

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


/* A request sent and not yet waited for. */
struct pending {
	struct pending *next;
	uint64_t id;
	bool job;                         /* rxg_submit_gemm's: waited for by rxg_wait*; else a
					   * blocking call's own (hello, status, cancel) */
	Rxgemm__Reply__BodyCase want;     /* the body an OK reply must carry */
	size_t reply_max_bytes;
	Rxgemm__Reply *reply;             /* NULL until it has arrived */
	/* A GEMM's destination, filled in when it is waited for. */
	float *c;
	bool c_in_buffer;                 /* the daemon wrote C into a shared buffer */
	struct stored sc;
	int64_t batch;
};

struct rxg_client {
	int fd;                           /* open until rxg_close, shut down once broken */
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
	/* Small protobuf appends are gathered here so that the framing header, tags and
	 * scalars go out in one send; the big matrix payloads bypass it. */
	size_t send_len;
	uint8_t send_buf[16384];
};

/* rxg_connect fails with no handle to hold its explanation; rxg_errmsg(NULL) returns the
 * explanation of the calling thread's last failed rxg_connect from here. */
static _Thread_local char connect_errmsg[RXG__ERRMSG_BYTES];

/* Record why the current call fails and return code, so that callers can write
 * "return fail(c, RXG_EINVAL, ...)". buffer.c reaches it as rxg__fail. */
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

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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

static void timings_from_wire(struct rxg_timings *t, const Rxgemm__Timings *w)
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
static int submit_fd(struct rxg_client *c, Rxgemm__Request *req, struct pending *p, int fd)
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

static int submit(struct rxg_client *c, Rxgemm__Request *req, struct pending *p)
{
	return submit_fd(c, req, p, -1);
}

static void pending_free(struct pending *p)
{
	if (!p)
		return;
	if (p->reply)
		rxgemm__reply__free_unpacked(p->reply, NULL);
	free(p);
}

/* File a reply that arrived with its request. Call with lock held. Takes reply. */
static int file_reply(struct rxg_client *c, Rxgemm__Reply *reply)
{
	for (struct pending *p = c->pending; p; p = p->next)
		if (p->id == reply->request_id && !p->reply) {
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

/* Wait up to timeout_ms (-1: for ever) for the reply to request id (0: to any job) and
 * take its entry out of the pending list into *out (the caller frees it). RXG_OK,
 * RXG_EAGAIN (not in time), RXG_EINVAL (no such request pending) or RXG_EIO/RXG_EPROTO
 * (the connection is lost). */
static int wait_for(struct rxg_client *c, uint64_t id, int timeout_ms, struct pending **out)
{
	uint64_t deadline = timeout_ms >= 0 ? mono_ns() + (uint64_t)timeout_ms * 1000000 : 0;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct pending **pp, *found = NULL;
		bool waiting = false;
		int left_ms = -1;

		for (pp = &c->pending; *pp; pp = &(*pp)->next) {
			struct pending *p = *pp;

			if (id ? p->id != id : !p->job)
				continue;
			waiting = true;
			if (p->reply) {
				*pp = p->next;
				found = p;
				break;
			}
		}
		if (found) {
			*out = found;
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
		if (atomic_load(&c->broken)) {
			rc = RXG_EIO; /* errmsg says why already */
			break;
		}
		if (timeout_ms >= 0) {
			uint64_t now = mono_ns();

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

/* The common checks of a reply taken out of the pending list: its status (the daemon's
 * sentence into errmsg) and body. timings may be NULL. */
static int reply_check(struct rxg_client *c, const struct pending *p, struct rxg_timings *timings)
{
	const Rxgemm__Reply *reply = p->reply;

	if (timings)
		timings_from_wire(timings, reply->timings);
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
static int call_fd(struct rxg_client *c, Rxgemm__Request *req, size_t reply_max_bytes,
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
	rc = submit_fd(c, req, p, fd);
	if (rc != RXG_OK) {
		pending_free(p);
		return rc;
	}
	id = p->id;
	p = NULL;
	rc = wait_for(c, id, -1, &p);
	if (rc == RXG_OK && (rc = reply_check(c, p, NULL)) == RXG_OK) {
		*out = p;
		return RXG_OK;
	}
	pending_free(p);
	return rc;
}

static int call(struct rxg_client *c, Rxgemm__Request *req, size_t reply_max_bytes,
		Rxgemm__Reply__BodyCase want, struct pending **out)
{
	return call_fd(c, req, reply_max_bytes, want, -1, out);
}

int rxg__request_fd(rxg_client *c, Rxgemm__Request *req, int fd, Rxgemm__Reply__BodyCase want,
		    Rxgemm__Reply **out)
{
	struct pending *p = NULL;
	int rc;

	*out = NULL;
	rc = call_fd(c, req, RXG__HELLO_REPLY_MAX_BYTES, want, fd, &p);
	if (rc == RXG_OK) {
		*out = p->reply;
		p->reply = NULL;
	}
	pending_free(p);
	return rc;
}

int rxg__request(rxg_client *c, Rxgemm__Request *req, size_t reply_max_bytes,
		 Rxgemm__Reply__BodyCase want, Rxgemm__Reply **out)
{
	struct pending *p = NULL;
	int rc;

	*out = NULL;
	rc = call(c, req, reply_max_bytes, want, &p);
	if (rc == RXG_OK) {
		*out = p->reply;
		p->reply = NULL;
	}
	pending_free(p);
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
	rc = call(c, &req, RXG__HELLO_REPLY_MAX_BYTES, RXGEMM__REPLY__BODY_HELLO, &p);
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
out:
	pending_free(p);
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
	    pthread_mutex_init(&c->err_lock, NULL) != 0) {
		/* Only on resource exhaustion, where glibc's init cannot fail anyway. */
		free(c);
		snprintf(connect_errmsg, sizeof(connect_errmsg), "cannot create a mutex");
		return RXG_ENOMEM;
	}

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
		pending_free(p);
	}
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->send_lock);
	pthread_mutex_destroy(&c->err_lock);
	pthread_mutex_destroy(&c->lock);
	free(c->daemon_version);
	free(c->device);
	free(c);
}

RXG_EXPORT const char *rxg_errmsg(const rxg_client *c)
{
	return c ? c->errmsg : connect_errmsg;
}

RXG_EXPORT const struct rxg_server_info *rxg_server_info(const rxg_client *c)
{
	return c ? &c->info : NULL;
}

/* Fill s for a batch of stored rows x cols matrices with leading dimension ld (0:
 * tightest), stride floats apart (0: ld * outer), and check that the length is computable. */
static int stored_init(struct rxg_client *c, struct stored *s, const char *name,
		       const char *ld_name, int row_major, int64_t rows, int64_t cols, int64_t ld,
		       int64_t batch, int64_t stride)
{
	int64_t floats, full, total;
	size_t bytes;

	s->name = name;
	s->ld_name = ld_name;
	s->rows = rows;
	s->cols = cols;
	s->inner = row_major ? cols : rows;
	s->outer = row_major ? rows : cols;
	s->ld = ld ? ld : s->inner;
	if (s->ld < s->inner)
		return fail(c, RXG_EINVAL,
			    "%s = %lld is less than %lld, the number of %s of the stored %s (%lld x %lld, "
			    "%s)",
			    ld_name, (long long)ld, (long long)s->inner, row_major ? "columns" : "rows",
			    name, (long long)rows, (long long)cols,
			    row_major ? "row-major" : "column-major");
	if (__builtin_mul_overflow(s->ld, s->outer - 1, &floats) ||
	    __builtin_add_overflow(floats, s->inner, &floats) ||
	    __builtin_mul_overflow((uint64_t)floats, sizeof(float), &bytes) || bytes > SIZE_MAX / 2)
		return fail(c, RXG_EINVAL,
			    "the stored %s (%lld x %lld with %s = %lld) is larger than memory can hold",
			    name, (long long)rows, (long long)cols, ld_name, (long long)s->ld);
	s->floats = (size_t)floats;
	if (stride < 0 || (batch > 1 && stride > 0 && stride < floats))
		return fail(c, RXG_EINVAL,
			    "the stride of %s (%lld) is %s one matrix (%lld floats)", name,
			    (long long)stride, stride < 0 ? "negative, not" : "smaller than",
			    (long long)floats);
	if (__builtin_mul_overflow(s->ld, s->outer, &full))
		full = INT64_MAX;
	s->stride = stride ? stride : full;
	if (batch < 2) {
		s->stride = 0;
		s->total = s->floats;
		return RXG_OK;
	}
	if (__builtin_mul_overflow(s->stride, batch - 1, &total) ||
	    __builtin_add_overflow(total, floats, &total) ||
	    __builtin_mul_overflow((uint64_t)total, sizeof(float), &bytes) || bytes > SIZE_MAX / 2)
		return fail(c, RXG_EINVAL, "a batch of %lld %s matrices %lld floats apart is larger "
					   "than memory can hold",
			    (long long)batch, name, (long long)s->stride);
	s->total = (size_t)total;
	return RXG_OK;
}

/* Check and send a GEMM; job: it is the caller's to wait for with rxg_wait*, else
 * rxg_gemm's own (rxg_wait_any in another thread must not take it). */
static int gemm_submit(rxg_client *c, const struct rxg_gemm_args *args,
		       const struct rxg_job_options *opts, bool job, uint64_t *id)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__GemmRequest g = RXGEMM__GEMM_REQUEST__INIT;
	struct pending *p = NULL;
	struct stored sa, sb, sc;
	int rc;

	if (id)
		*id = 0;
	if (!c)
		return RXG_EINVAL;
	if (!args || !id) {
		rc = fail(c, RXG_EINVAL, "%s: %s is NULL", job ? "rxg_submit_gemm" : "rxg_gemm",
			  !args ? "args" : "id");
		goto out;
	}
	if (args->layout != RXG_COL_MAJOR && args->layout != RXG_ROW_MAJOR) {
		rc = fail(c, RXG_EINVAL, "layout %d is neither RXG_COL_MAJOR nor RXG_ROW_MAJOR",
			  (int)args->layout);
		goto out;
	}
	if (args->m < 1 || args->n < 1 || args->k < 1) {
		rc = fail(c, RXG_EINVAL, "m, n and k must be at least 1 (m = %lld, n = %lld, k = %lld)",
			  (long long)args->m, (long long)args->n, (long long)args->k);
		goto out;
	}
	if (args->lda < 0 || args->ldb < 0 || args->ldc < 0) {
		rc = fail(c, RXG_EINVAL,
			  "leading dimensions must not be negative (lda = %lld, ldb = %lld, ldc = %lld)",
			  (long long)args->lda, (long long)args->ldb, (long long)args->ldc);
		goto out;
	}
	if ((rc = rxg__gemm_operands(c, args)) != RXG_OK)
		goto out;
	if (args->batch_count < 0) {
		rc = fail(c, RXG_EINVAL, "batch_count must not be negative (got %lld)",
			  (long long)args->batch_count);
		goto out;
	}
	int row_major = args->layout == RXG_ROW_MAJOR;
	int64_t batch = args->batch_count > 1 ? args->batch_count : 1;
	rc = stored_init(c, &sa, "A", "lda", row_major, args->trans_a ? args->k : args->m,
			 args->trans_a ? args->m : args->k, args->lda, batch, args->stride_a);
	if (rc != RXG_OK)
		goto out;
	rc = stored_init(c, &sb, "B", "ldb", row_major, args->trans_b ? args->n : args->k,
			 args->trans_b ? args->k : args->n, args->ldb, batch, args->stride_b);
	if (rc != RXG_OK)
		goto out;
	rc = stored_init(c, &sc, "C", "ldc", row_major, args->m, args->n, args->ldc, batch,
			 args->stride_c);
	if (rc != RXG_OK)
		goto out;
	/* The daemon may send C back as either length the protocol allows for a stored matrix:
	 * up to the last element, or ld * outer. The latter bounds the reply we accept. */
	size_t c_full_bytes;
	if (__builtin_mul_overflow((uint64_t)sc.ld, (uint64_t)sc.outer, &c_full_bytes) ||
	    __builtin_add_overflow(c_full_bytes, sc.total - sc.floats, &c_full_bytes) ||
	    __builtin_mul_overflow(c_full_bytes, sizeof(float), &c_full_bytes) ||
	    __builtin_add_overflow(c_full_bytes, RXG__REPLY_OVERHEAD_BYTES, &c_full_bytes)) {
		rc = fail(c, RXG_EINVAL, "C (%lld x %lld with ldc = %lld) is larger than memory can hold",
			  (long long)args->m, (long long)args->n, (long long)sc.ld);
		goto out;
	}

	g.m = args->m;
	g.n = args->n;
	g.k = args->k;
	g.trans_a = args->trans_a != 0;
	g.trans_b = args->trans_b != 0;
	g.alpha = args->alpha;
	g.beta = args->beta;
	g.layout = row_major ? RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR : RXGEMM__LAYOUT__LAYOUT_COL_MAJOR;
	g.lda = sa.ld;
	g.ldb = sb.ld;
	g.ldc = sc.ld;
	/* The caller's arrays go on the wire as they are; the packer only reads them. */
	g.a.data = (uint8_t *)(uintptr_t)args->a;
	g.a.len = sa.total * sizeof(float);
	g.b.data = (uint8_t *)(uintptr_t)args->b;
	g.b.len = sb.total * sizeof(float);
	if (args->beta != 0.0f) {
		g.c.data = (uint8_t *)args->c;
		g.c.len = sc.total * sizeof(float);
	}
	if (batch > 1) {
		g.batch_count = batch;
		g.stride_a = sa.stride;
		g.stride_b = sb.stride;
		g.stride_c = sc.stride;
	}
	/* Operands in shared-memory buffers go as references instead (buffer.c); refs must
	 * live until the request is sent, which submit does before this returns. */
	Rxgemm__RegionRef refs[4];
	int c_in_buffer;
	rc = rxg__gemm_buffers(c, args, &g, refs, sa.total, sb.total, sc.total, &c_in_buffer);
	if (rc != RXG_OK)
		goto out;
	int c_in_tensor;
	if ((rc = rxg__gemm_tensors(c, args, &g, &c_in_tensor)) != RXG_OK)
		goto out;
	c_in_buffer |= c_in_tensor;
	if (opts) {
		g.priority = opts->priority;
		g.deadline_ms = opts->deadline_ms;
	}
	req.body_case = RXGEMM__REQUEST__BODY_GEMM;
	req.gemm = &g;
	if (!(p = calloc(1, sizeof(*p)))) {
		rc = fail(c, RXG_ENOMEM, "out of memory");
		goto out;
	}
	p->job = job;
	p->want = RXGEMM__REPLY__BODY_GEMM;
	p->reply_max_bytes = c_full_bytes;
	p->c = args->c;
	p->c_in_buffer = c_in_buffer;
	p->sc = sc;
	p->batch = batch;
	rc = submit(c, &req, p);
	if (rc != RXG_OK)
		goto out;
	*id = p->id;
	p = NULL; /* filed */
out:
	pending_free(p);
	return rc;
}

/* A job's reply, taken out of the pending list: its result, C put in place. */
/* An asynchronous tensor read's reply: its floats (sc.total of them) into p->c. */
static int tensor_read_finish(struct rxg_client *c, struct pending *p,
			      struct rxg_timings *timings)
{
	const Rxgemm__TensorData *d;
	int rc = reply_check(c, p, timings);

	if (rc != RXG_OK)
		return rc;
	d = p->reply->tensor_data;
	if (d->bytes != p->sc.total * sizeof(float) || d->data.len != d->bytes)
		return fail(c, RXG_EPROTO, "the daemon returned %zu bytes of a tensor of %zu floats",
			    d->data.len, p->sc.total);
	memcpy(p->c, d->data.data, d->data.len);
	return RXG_OK;
}

int rxg__submit_tensor_read(rxg_client *c, uint32_t tensor_id, size_t floats, float *out,
			    uint64_t *id)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__TensorRead msg = RXGEMM__TENSOR_READ__INIT;
	struct pending *p = calloc(1, sizeof(*p));
	int rc;

	*id = 0;
	if (!p)
		return fail(c, RXG_ENOMEM, "out of memory");
	msg.tensor_id = tensor_id;
	req.body_case = RXGEMM__REQUEST__BODY_TENSOR_READ;
	req.tensor_read = &msg;
	p->job = true;
	p->want = RXGEMM__REPLY__BODY_TENSOR_DATA;
	p->reply_max_bytes = RXG__REPLY_OVERHEAD_BYTES + floats * sizeof(float);
	p->c = out;
	p->sc.total = floats;
	rc = submit(c, &req, p);
	if (rc != RXG_OK) {
		pending_free(p);
		return rc;
	}
	*id = p->id;
	return RXG_OK;
}

static int gemm_finish(struct rxg_client *c, struct pending *p, struct rxg_timings *timings)
{
	const struct stored *sc = &p->sc;
	int rc;

	/* rxg_wait and rxg_wait_any finish every kind of job here. */
	if (p->want == RXGEMM__REPLY__BODY_TENSOR_DATA)
		return tensor_read_finish(c, p, timings);
	if ((rc = reply_check(c, p, timings)) != RXG_OK)
		return rc;
	const ProtobufCBinaryData *rc_data = &p->reply->gemm->c;
	if (p->c_in_buffer) {
		/* The daemon wrote C into the buffer; it sends none. */
		if (rc_data->len)
			return fail(c, RXG_EPROTO, "the daemon returned %zu bytes of C inline though "
				    "C went to a buffer", rc_data->len);
		return RXG_OK;
	}
	if (rc_data->len != sc->total * sizeof(float) &&
	    rc_data->len != (sc->total - sc->floats + (size_t)sc->ld * (size_t)sc->outer) *
				    sizeof(float))
		return fail(c, RXG_EPROTO,
			    "the daemon returned %zu bytes of C; %lld x %lld with ldc = %lld needs %zu",
			    rc_data->len, (long long)sc->rows, (long long)sc->cols, (long long)sc->ld,
			    sc->total * sizeof(float));
	/* Only the m x n elements of each matrix: whatever lies between rows or columns (ldc
	 * padding) or between the matrices of a batch is the caller's and stays as it was. */
	for (int64_t i = 0; i < p->batch; i++)
		for (int64_t o = 0; o < sc->outer; o++) {
			size_t off = (size_t)(i * sc->stride + o * sc->ld);
			memcpy(p->c + off, rc_data->data + off * sizeof(float),
			       (size_t)sc->inner * sizeof(float));
		}
	return RXG_OK;
}

RXG_EXPORT int rxg_submit_gemm(rxg_client *c, const struct rxg_gemm_args *args,
				const struct rxg_job_options *opts, uint64_t *id)
{
	return gemm_submit(c, args, opts, true, id);
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
	rc = wait_for(c, id, -1, &p);
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
		rc = gemm_finish(c, p, timings);
	pending_free(p);
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
	rc = wait_for(c, 0, timeout_ms < 0 ? -1 : timeout_ms, &p);
	if (rc != RXG_OK)
		return rc;
	*id = p->id;
	rc = gemm_finish(c, p, timings);
	pending_free(p);
	return rc;
}

RXG_EXPORT int rxg_gemm(rxg_client *c, const struct rxg_gemm_args *args,
			struct rxg_timings *timings)
{
	struct pending *p = NULL;
	uint64_t id;
	int rc;

	if (timings)
		memset(timings, 0, sizeof(*timings));
	rc = gemm_submit(c, args, NULL, false, &id);
	if (rc != RXG_OK)
		return rc;
	rc = wait_for(c, id, -1, &p);
	if (rc == RXG_OK)
		rc = gemm_finish(c, p, timings);
	pending_free(p);
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
		known = q->job && q->id == id;
	pthread_mutex_unlock(&c->lock);
	if (!known)
		return fail(c, RXG_EINVAL,
			    "request %llu is not a job of this connection waiting to be waited for",
			    (unsigned long long)id);
	msg.target_request_id = id;
	req.body_case = RXGEMM__REQUEST__BODY_CANCEL;
	req.cancel = &msg;
	rc = call(c, &req, RXG__CANCEL_REPLY_MAX_BYTES, RXGEMM__REPLY__BODY_CANCEL, &p);
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
	pending_free(p);
	return rc;
}

RXG_EXPORT int rxg_fd(const rxg_client *c)
{
	return c && !atomic_load(&((struct rxg_client *)c)->broken) ? c->fd : -1;
}
static char *dup_string(const char *s)
{
	return strdup(s ? s : "");
}

RXG_EXPORT void rxg_status_free(struct rxg_status *st)
{
	if (!st)
		return;
	free(st->daemon_version);
	free(st->device);
	free(st->kernel_cache_dir);
	for (size_t i = 0; st->kernels && i < st->n_kernels; i++)
		free(st->kernels[i].kernel);
	free(st->kernels);
	for (size_t i = 0; st->clients && i < st->n_clients; i++)
		free(st->clients[i].name);
	free(st->clients);
	free(st->departed.name);
	for (size_t i = 0; st->kernel_stats && i < st->n_kernel_stats; i++)
		free(st->kernel_stats[i].kernel);
	free(st->kernel_stats);
	free(st->recent);
	if (st->devices) {
		for (size_t i = 0; i < st->n_devices; i++) {
			struct rxg_device_info *d = &st->devices[i];
			free(d->platform);
			free(d->name);
			free(d->type);
			free(d->version);
			free(d->driver);
		}
		free(st->devices);
	}
	free(st);
}

/* Deep-copy the wire's StatusReply into a struct rxg_status the caller owns. */
static double status_fraction(uint64_t part, uint64_t whole)
{
	double f = whole ? (double)part / (double)whole : 0.0;

	return f > 1.0 ? 1.0 : f;
}

/* w may be NULL (an older daemon): zeros, uid and pid -1. -1 when out of memory. */
static int client_stats_from_wire(struct rxg_client_stats *o, const Rxgemm__ClientStats *w)
{
	static const Rxgemm__ClientStats none = RXGEMM__CLIENT_STATS__INIT;

	if (!w)
		w = &none;
	o->client_id = w->client_id;
	o->uid = w == &none ? -1 : w->uid;
	o->pid = w == &none ? -1 : w->pid;
	o->jobs_ok = w->jobs_ok;
	o->jobs_failed = w->jobs_failed;
	o->requests_rejected = w->requests_rejected;
	o->jobs_in_flight = w->jobs_in_flight;
	o->flops = w->flops;
	timings_from_wire(&o->timings, w->timings);
	o->bytes_in = w->bytes_in;
	o->bytes_out = w->bytes_out;
	o->tensors = w->tensors;
	o->tensor_bytes = w->tensor_bytes;
	return (o->name = dup_string(w->name)) ? 0 : -1;
}

/* The sharing statistics (StatusReply fields 50-56). -1 when out of memory; what was
 * copied is freed by rxg_status_free. */
static int status_sharing_from_wire(struct rxg_status *st, const Rxgemm__StatusReply *w)
{
	if (client_stats_from_wire(&st->departed, w->departed_clients) < 0)
		return -1;
	if (w->n_clients) {
		if (!(st->clients = calloc(w->n_clients, sizeof(*st->clients))))
			return -1;
		for (size_t i = 0; i < w->n_clients; i++) {
			st->n_clients = i + 1;
			if (client_stats_from_wire(&st->clients[i], w->clients[i]) < 0)
				return -1;
		}
	}
	if (w->n_kernel_stats) {
		if (!(st->kernel_stats = calloc(w->n_kernel_stats, sizeof(*st->kernel_stats))))
			return -1;
		for (size_t i = 0; i < w->n_kernel_stats; i++) {
			const Rxgemm__VariantStats *v = w->kernel_stats[i];
			struct rxg_kernel_stats *o = &st->kernel_stats[i];

			st->n_kernel_stats = i + 1;
			o->jobs = v->jobs;
			o->flops = v->flops;
			timings_from_wire(&o->timings, v->timings);
			if (!(o->kernel = dup_string(v->kernel)))
				return -1;
		}
	}
	st->device_busy_ns = w->device_busy_ns;
	st->device_recent_busy_ns = w->device_recent_busy_ns;
	st->device_recent_window_ns = w->device_recent_window_ns;
	st->device_current_job_ns = w->device_current_job_ns;
	st->device_utilisation = status_fraction(w->device_busy_ns, w->uptime_ns);
	st->device_utilisation_recent =
		status_fraction(w->device_recent_busy_ns, w->device_recent_window_ns);
	return 0;
}

static int status_from_wire(struct rxg_client *c, const Rxgemm__StatusReply *w,
			    struct rxg_status **out)
{
	struct rxg_status *st;
	int rc = RXG_OK;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return fail(c, RXG_ENOMEM, "out of memory");
	st->daemon_version = dup_string(w->daemon_version);
	st->device = dup_string(w->device);
	if (!st->daemon_version || !st->device)
		goto nomem;
	st->uptime_ns = w->uptime_ns;
	st->clients_connected = w->clients_connected;
	st->clients_total = w->clients_total;
	st->jobs_ok = w->jobs_ok;
	st->jobs_failed = w->jobs_failed;
	st->requests_rejected = w->requests_rejected;
	st->jobs_queued = w->jobs_queued;
	st->flops_total = w->flops_total;
	st->kernel_ns_total = w->kernel_ns_total;
	st->device_global_mem_bytes = w->device_global_mem_bytes;
	st->device_max_alloc_bytes = w->device_max_alloc_bytes;
	if (!(st->kernel_cache_dir = dup_string(w->kernel_cache_dir)))
		goto nomem;
	st->kernel_cache_writable = w->kernel_cache_writable != 0;
	st->kernel_cache_max_bytes = w->kernel_cache_max_bytes;
	st->kernel_cache_entries = w->kernel_cache_entries;
	st->kernel_cache_bytes = w->kernel_cache_bytes;
	st->kernel_cache_hits = w->kernel_cache_hits;
	st->kernel_cache_misses = w->kernel_cache_misses;
	st->kernel_cache_memory_hits = w->kernel_cache_memory_hits;
	st->kernel_cache_rejected = w->kernel_cache_rejected;
	st->kernel_cache_evictions = w->kernel_cache_evictions;
	st->kernel_cache_compile_ns = w->kernel_cache_compile_ns;
	st->kernel_cache_load_ns = w->kernel_cache_load_ns;
	st->vram_budget_bytes = w->vram_budget_bytes;
	st->vram_reserved_bytes = w->vram_reserved_bytes;
	st->vram_in_use_bytes = w->vram_in_use_bytes;
	st->vram_peak_bytes = w->vram_peak_bytes;
	st->vram_pool_bytes = w->vram_pool_bytes;
	st->vram_pool_buffers = w->vram_pool_buffers;
	st->jobs_waiting_for_memory = w->jobs_waiting_for_memory;
	st->vram_client_quota_bytes = w->vram_client_quota_bytes;
	st->jobs_split = w->jobs_split;
	if (status_sharing_from_wire(st, w) < 0)
		goto nomem;
	st->shm_regions = w->shm_regions;
	st->shm_region_bytes = w->shm_region_bytes;
	st->shm_regions_registered = w->shm_regions_registered;
	st->shm_jobs = w->shm_jobs;
	st->shm_jobs_in_place = w->shm_jobs_in_place;
	st->max_queue = w->max_queue;
	st->client_max_queue = w->client_max_queue;
	st->jobs_waiting = w->jobs_waiting;
	st->clients_waiting = w->clients_waiting;
	st->jobs_rejected_busy = w->jobs_rejected_busy;
	st->jobs_expired = w->jobs_expired;
	st->jobs_cancelled = w->jobs_cancelled;
	if (w->n_kernels) {
		if (!(st->kernels = calloc(w->n_kernels, sizeof(*st->kernels))))
			goto nomem;
		for (size_t i = 0; i < w->n_kernels; i++) {
			const Rxgemm__KernelChoice *k = w->kernels[i];
			struct rxg_kernel_choice *o = &st->kernels[i];

			st->n_kernels = i + 1;
			o->trans_a = k->trans_a != 0;
			o->trans_b = k->trans_b != 0;
			o->size_class = k->size_class;
			o->gflops = k->gflops;
			o->tuned = k->tuned != 0;
			if (!(o->kernel = dup_string(k->kernel)))
				goto nomem;
		}
	}

	if (w->n_recent) {
		st->recent = calloc(w->n_recent, sizeof(*st->recent));
		if (!st->recent)
			goto nomem;
		st->n_recent = w->n_recent;
		for (size_t i = 0; i < w->n_recent; i++) {
			const Rxgemm__JobRecord *j = w->recent[i];
			struct rxg_job_record *r = &st->recent[i];
			r->request_id = j->request_id;
			r->client_id = j->client_id;
			r->m = j->m;
			r->n = j->n;
			r->k = j->k;
			r->status = (int)j->status;
			timings_from_wire(&r->timings, j->timings);
		}
	}
	if (w->n_devices) {
		st->devices = calloc(w->n_devices, sizeof(*st->devices));
		if (!st->devices)
			goto nomem;
		/* Counted from the start so that rxg_status_free can free a partial copy. */
		st->n_devices = w->n_devices;
		for (size_t i = 0; i < w->n_devices; i++) {
			const Rxgemm__DeviceInfo *wd = w->devices[i];
			struct rxg_device_info *d = &st->devices[i];
			d->index = wd->index;
			d->platform = dup_string(wd->platform);
			d->name = dup_string(wd->name);
			d->type = dup_string(wd->type);
			d->version = dup_string(wd->version);
			d->driver = dup_string(wd->driver);
			if (!d->platform || !d->name || !d->type || !d->version || !d->driver)
				goto nomem;
			d->global_mem_bytes = wd->global_mem_bytes;
			d->compute_units = wd->compute_units;
			d->clock_mhz = wd->clock_mhz;
			d->in_use = wd->in_use != 0;
		}
	}
	*out = st;
	return RXG_OK;
nomem:
	rc = fail(c, RXG_ENOMEM, "out of memory copying the daemon's status");
	rxg_status_free(st);
	return rc;
}

RXG_EXPORT int rxg_status(rxg_client *c, struct rxg_status **out)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__StatusRequest msg = RXGEMM__STATUS_REQUEST__INIT;
	struct pending *p = NULL;
	int rc;

	if (out)
		*out = NULL;
	if (!c)
		return RXG_EINVAL;
	if (!out)
		return fail(c, RXG_EINVAL, "rxg_status: out is NULL");
	req.body_case = RXGEMM__REQUEST__BODY_STATUS;
	req.status = &msg;
	rc = call(c, &req, RXG__STATUS_REPLY_MAX_BYTES, RXGEMM__REPLY__BODY_STATUS_REPLY, &p);
	if (rc != RXG_OK)
		return rc;
	rc = status_from_wire(c, p->reply->status_reply, out);
	pending_free(p);
	return rc;
}

/* ---- NAS evaluation ---- */

RXG_EXPORT void rxg_nas_result_free(struct rxg_nas_result *r)
{
	if (!r)
		return;
	free(r->genotype);
	free(r->run_ns);
	for (size_t i = 0; r->by_op && i < r->n_by_op; i++)
		free(r->by_op[i].name);
	for (size_t i = 0; r->by_cell && i < r->n_by_cell; i++)
		free(r->by_cell[i].name);
	free(r->by_op);
	free(r->by_cell);
	free(r);
}

static int nas_parts_from_wire(struct rxg_nas_part **out, size_t *n,
			       Rxgemm__NasLatencyPart *const *w, size_t nw)
{
	*n = 0;
	*out = calloc(nw ? nw : 1, sizeof(**out));
	if (!*out)
		return -1;
	for (size_t i = 0; i < nw; i++) {
		(*out)[i].name = dup_string(w[i]->name);
		if (!(*out)[i].name)
			return -1;
		(*out)[i].ns = w[i]->ns;
		(*out)[i].steps = w[i]->steps;
		*n = i + 1;
	}
	return 0;
}

RXG_EXPORT int rxg_nas_eval(rxg_client *c, const struct rxg_nas_args *args,
			    struct rxg_nas_result **out)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__NasEvalRequest q = RXGEMM__NAS_EVAL_REQUEST__INIT;
	Rxgemm__Reply *reply = NULL;
	struct pending *p = NULL;
	Rxgemm__RegionRef regions[2];
	const Rxgemm__NasEvalReply *w;
	struct rxg_nas_result *r = NULL;
	bool imagenet;
	uint64_t batch, classes, h, wd, in_floats, logit_floats;
	size_t edges = 0;
	int rc;

	if (out)
		*out = NULL;
	if (!c)
		return RXG_EINVAL;
	if (!args || !out) {
		rc = fail(c, RXG_EINVAL, "rxg_nas_eval: args or out is NULL");
		goto out;
	}
	if (args->dataset != RXG_NAS_CIFAR && args->dataset != RXG_NAS_IMAGENET) {
		rc = fail(c, RXG_EINVAL, "dataset %d is neither RXG_NAS_CIFAR nor RXG_NAS_IMAGENET",
			  (int)args->dataset);
		goto out;
	}
	if (args->c < 0 || args->layers < 0 || args->classes < 0 || args->height < 0 ||
	    args->width < 0 || args->batch < 0) {
		rc = fail(c, RXG_EINVAL, "c, layers, classes, height, width and batch must not be "
					 "negative");
		goto out;
	}
	if (!args->supernet && (!args->genotype || !*args->genotype)) {
		rc = fail(c, RXG_EINVAL, "genotype is empty (and supernet is not set)");
		goto out;
	}
	imagenet = args->dataset == RXG_NAS_IMAGENET;
	/* The daemon's defaults, to know the lengths of input and logits. */
	batch = args->batch ? (uint64_t)args->batch : 1;
	classes = args->classes ? (uint64_t)args->classes : imagenet ? 1000 : 10;
	h = args->height ? (uint64_t)args->height : imagenet ? 224 : 32;
	wd = args->width ? (uint64_t)args->width : imagenet ? 224 : 32;
	in_floats = batch * 3 * h * wd; /* each factor < 2^31: no overflow */
	logit_floats = batch * classes;
	q.genotype = (char *)(args->supernet ? "" : args->genotype);
	q.dataset = imagenet ? RXGEMM__NAS_DATASET__NAS_IMAGENET : RXGEMM__NAS_DATASET__NAS_CIFAR;
	q.c = args->c;
	q.layers = args->layers;
	q.classes = args->classes;
	q.height = args->height;
	q.width = args->width;
	q.batch = args->batch;
	if ((args->weights && args->weights_buf) || (args->input && args->input_buf)) {
		rc = fail(c, RXG_EINVAL, "%s and %s_buf are both given; give one",
			  args->weights && args->weights_buf ? "weights" : "input",
			  args->weights && args->weights_buf ? "weights" : "input");
		goto out;
	}
	if ((rc = rxg__nas_tensors(c, args, &q)) != RXG_OK)
		goto out;
	if (args->weights) {
		q.weights.data = (uint8_t *)(uintptr_t)args->weights;
		q.weights.len = args->n_weights * sizeof(float);
	}
	if (args->weights_buf) {
		if ((rc = rxg__region_ref(c, "weights", args->weights_buf, args->weights_offset,
					  args->n_weights, &regions[0])) != RXG_OK)
			goto out;
		q.weights_region = &regions[0];
	}
	if (args->input_buf) {
		if ((rc = rxg__region_ref(c, "input", args->input_buf, args->input_offset,
					  (size_t)in_floats, &regions[1])) != RXG_OK)
			goto out;
		q.input_region = &regions[1];
	}
	q.weight_seed = args->weight_seed;
	if (args->input) {
		q.input.data = (uint8_t *)(uintptr_t)args->input;
		q.input.len = (size_t)in_floats * sizeof(float);
	}
	q.input_seed = args->input_seed;
	q.warmup = args->warmup;
	q.repeat = args->repeat;
	q.want_logits = args->logits != NULL;
	if (args->supernet) {
		uint32_t steps = args->steps ? args->steps : 4;

		if (steps > 64 || !args->alpha_normal || !args->alpha_reduce) {
			rc = fail(c, RXG_EINVAL, "the supernet needs alpha_normal and alpha_reduce "
						 "(and steps of at most 64)");
			goto out;
		}
		edges = (size_t)steps * (steps + 3) / 2;
		q.supernet = true;
		q.steps = args->steps;
		q.multiplier = args->multiplier;
		q.n_alpha_normal = q.n_alpha_reduce = edges * 8;
		q.alpha_normal = (float *)(uintptr_t)args->alpha_normal;
		q.alpha_reduce = (float *)(uintptr_t)args->alpha_reduce;
	}
	req.body_case = RXGEMM__REQUEST__BODY_NAS_EVAL;
	req.nas_eval = &q;
	rc = call(c, &req, (size_t)(logit_floats * sizeof(float)) + RXG__REPLY_OVERHEAD_BYTES,
		  RXGEMM__REPLY__BODY_NAS_EVAL, &p);
	if (rc != RXG_OK)
		goto out;
	reply = p->reply;
	w = reply->nas_eval;
	if (args->logits && w->logits.len != logit_floats * sizeof(float)) {
		rc = fail(c, RXG_EPROTO, "the daemon returned %zu bytes of logits; %llu x %llu "
					 "floats are %llu",
			  w->logits.len, (unsigned long long)batch, (unsigned long long)classes,
			  (unsigned long long)(logit_floats * sizeof(float)));
		goto out;
	}
	r = calloc(1, sizeof(*r));
	if (!r || !(r->genotype = dup_string(w->genotype)) ||
	    !(r->run_ns = calloc(w->n_run_ns ? w->n_run_ns : 1, sizeof(uint64_t))) ||
	    nas_parts_from_wire(&r->by_op, &r->n_by_op, w->by_op, w->n_by_op) < 0 ||
	    nas_parts_from_wire(&r->by_cell, &r->n_by_cell, w->by_cell, w->n_by_cell) < 0) {
		rc = fail(c, RXG_ENOMEM, "out of memory for the NAS result");
		goto out;
	}
	if (w->n_run_ns)
		memcpy(r->run_ns, w->run_ns, w->n_run_ns * sizeof(uint64_t));
	r->n_runs = w->n_run_ns;
	r->params = w->params;
	r->macs = w->macs;
	r->weight_floats = w->weight_floats;
	r->peak_device_bytes = w->peak_device_bytes;
	r->activation_bytes = w->activation_bytes;
	r->batch = w->batch;
	r->batch_piece = w->batch_piece;
	r->classes = w->classes;
	r->steps = w->steps;
	r->latency_median_ns = w->latency_median_ns;
	r->latency_p90_ns = w->latency_p90_ns;
	r->latency_mean_ns = w->latency_mean_ns;
	if (args->logits)
		memcpy(args->logits, w->logits.data, w->logits.len);
	*out = r;
	r = NULL;
out:
	rxg_nas_result_free(r);
	pending_free(p); /* and the reply */
	return rc;
}

/* conn.c: one client connection: its bytes and descriptors in, its replies out, its
 * bounds in memory and time (loop thread only).
 *
 * A connection cuts what it reads into frames and hands each whole frame, with the
 * descriptors that came with it, to the server's conn_ops (the wire layer); it knows no
 * message inside. It lives until the client leaves or breaks the framing, and its memory
 * until the last job it submitted has come back from the device worker (refs). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "loop.h"

/* One framed reply waiting to be written: data[0..split), then ext (a large field's bytes
 * sent where they lie, not copied in here), then data[split..data_len). */
struct rxd_outbuf {
	struct rxd_outbuf *next;
	size_t len, done;  /* bytes of the frame, bytes of them written */
	size_t data_len, split;
	uint8_t *ext;      /* owned (hostbuf_free()), or NULL */
	size_t ext_len;
	uint8_t data[];
};

static void outbuf_free(struct rxd_outbuf *o)
{
	hostbuf_free(o->ext);
	free(o);
}

/* The iovecs for what is left of o to write, at most 3, into iov; how many. */
static int outbuf_iov(const struct rxd_outbuf *o, struct iovec *iov)
{
	const struct { const uint8_t *p; size_t len; } seg[3] = {
		{ o->data, o->split },
		{ o->ext, o->ext_len },
		{ o->data + o->split, o->data_len - o->split },
	};
	size_t skip = o->done;
	int n = 0;

	for (int i = 0; i < 3; i++) {
		if (skip >= seg[i].len) {
			skip -= seg[i].len;
			continue;
		}
		iov[n].iov_base = (void *)(seg[i].p + skip);
		iov[n].iov_len = seg[i].len - skip;
		n++;
		skip = 0;
	}
	return n;
}

/* Reads per readiness callback before the loop serves others (a fast client must not starve
 * the rest); what is left is read at the next turn. */
#define RXD_CONN_READS_PER_TURN 16

void conn_ref(struct rxd_conn *c)
{
	c->refs++;
}

static void conn_on_timer_closed(uv_handle_t *h);

static void fds_close(int *fds, unsigned *n)
{
	for (unsigned i = 0; i < *n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	*n = 0;
}

static void conn_held_sub(struct rxd_server *srv, uint64_t bytes);

static void conn_free(struct rxd_conn *c)
{
	struct rxd_outbuf *o, *next;

	/* Its jobs have all come back (each held a reference): what is left is replies never
	 * written and a frame never finished. */
	conn_held_sub(c->srv, c->out_bytes + frame_reader_held_bytes(&c->fr));
	for (o = c->out_head; o; o = next) {
		next = o->next;
		outbuf_free(o);
	}
	fds_close(c->frame_fds, &c->n_frame_fds);
	fds_close(c->in_fds, &c->n_in_fds);
	frame_reader_fini(&c->fr);
	free(c);
}

static void conn_on_closed(uv_handle_t *h)
{
	struct rxd_conn *c = h->data;

	/* Only now: the descriptor may not close while the poll handle watches it. */
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	conn_unref(c);
}

void conn_unref(struct rxd_conn *c)
{
	if (--c->refs == 0)
		conn_free(c);
}

static void conn_on_timer_closed(uv_handle_t *h)
{
	conn_unref(h->data);
}

void conn_close(struct rxd_conn *c)
{
	struct rxd_server *srv = c->srv;

	if (c->closing)
		return;
	c->closing = true;
	/* Its waiting jobs leave the queue and its running one is cancelled (it stops at its
	 * next check, also when it waits for device memory). */
	if (srv->worker)
		worker_forget(srv->worker, c->id);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	stats_client_closed(&srv->stats, c);
	/* Regions stay mapped while the jobs in flight hold them; unmapped when they end. */
	shm_fini(&c->shm);
	tensor_table_fini(&c->tensors); /* likewise: jobs in flight keep theirs */
	fds_close(c->frame_fds, &c->n_frame_fds);
	fds_close(c->in_fds, &c->n_in_fds);
	{
		char name[4 * sizeof(c->name)];

		log_escape(name, sizeof(name), c->name[0] ? c->name : "no hello");
		log_msg(LOG_INFO, "client %u (%s, pid %ld) disconnected", c->id, name,
			c->peer_pid);
	}
	uv_close((uv_handle_t *)&c->timer, conn_on_timer_closed);
	uv_close((uv_handle_t *)&c->poll, conn_on_closed);
}

uint64_t conn_held_bytes(const struct rxd_conn *c)
{
	return c->jobs_bytes + c->out_bytes + frame_reader_held_bytes(&c->fr);
}

/* Over its memory: the jobs and replies it holds reach its bound (the frame being read is
 * bounded by max-frame and its timeout instead). */
static bool conn_over_memory(const struct rxd_conn *c)
{
	uint64_t bound = c->srv->cfg->client_max_memory_bytes;

	return bound && c->jobs_bytes + c->out_bytes >= bound;
}

/* All connections' memory together, frames included, reaches max-memory: then nobody's
 * reading goes on until some is given back (conn_held_sub). */
static bool conn_total_over(const struct rxd_server *srv)
{
	uint64_t total = srv->cfg->max_memory_bytes;

	return total && srv->held_bytes >= total;
}

static void conn_update_poll(struct rxd_conn *c);

static void conn_held_add(struct rxd_server *srv, uint64_t bytes)
{
	uint64_t total = srv->cfg->max_memory_bytes;
	bool was_over = total && srv->held_bytes >= total;

	srv->held_bytes += bytes;
	if (total && !was_over && srv->held_bytes >= total) {
		log_msg(LOG_NOTICE, "the clients hold %.1f MiB of the daemon's memory, its bound "
			"(max-memory): reading from every client pauses",
			(double)srv->held_bytes / (1 << 20));
		for (struct rxd_conn *o = srv->conns; o; o = o->next)
			conn_update_poll(o);
	}
}

static void conn_held_sub(struct rxd_server *srv, uint64_t bytes)
{
	uint64_t total = srv->cfg->max_memory_bytes;
	bool was_over = total && srv->held_bytes >= total;

	srv->held_bytes -= bytes < srv->held_bytes ? bytes : srv->held_bytes;
	if (was_over && srv->held_bytes < total) {
		log_msg(LOG_NOTICE, "the clients hold %.1f MiB of the daemon's memory, under its "
			"bound (max-memory): reading resumes", (double)srv->held_bytes / (1 << 20));
		for (struct rxd_conn *o = srv->conns; o; o = o->next)
			conn_update_poll(o);
	}
}

void conn_jobs_charge(struct rxd_conn *c, uint64_t bytes)
{
	c->jobs_bytes += bytes;
	conn_held_add(c->srv, bytes);
}

void conn_jobs_uncharge(struct rxd_conn *c, uint64_t bytes)
{
	c->jobs_bytes -= bytes;
	conn_held_sub(c->srv, bytes);
}

/* Reading paused by c's own doing (replies unread, its memory bound). */
static bool conn_reads_paused(const struct rxd_conn *c)
{
	return c->out_bytes >= RXD_CONN_OUT_HIGH_BYTES || conn_over_memory(c);
}

/* A duration in ns as loop milliseconds, rounded up. */
uint64_t conn_ms(uint64_t ns)
{
	return (ns + 999999) / 1000000;
}

/* An error of the stream itself (no request to answer): handed up to be replied with
 * request_id 0, after which c closes once the reply is written. */
static void conn_stream_error(struct rxd_conn *c, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void conn_stream_error(struct rxd_conn *c, int status, const char *fmt, ...)
{
	char msg[RXD_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->srv->conn_ops->stream_error(c, status, msg);
}

static void conn_on_timer(uv_timer_t *t);

/* Start the timer for the earliest deadline c has now (none: stopped): the whole frame
 * (frame-timeout from its first byte, however slowly the rest comes, while we read), a
 * stalled reader (stall-timeout without one byte written while reading is paused), an
 * idle connection (idle-timeout with nothing in flight), and kill_ms. */
static void conn_arm_timer(struct rxd_conn *c)
{
	const struct rxd_config *cfg = c->srv->cfg;
	uint64_t now = uv_now(c->srv->loop), due = 0, t;

	if (c->closing)
		return;
	if (c->kill_ms)
		due = c->kill_ms;
	if (c->frame_start_ms && cfg->frame_timeout_ns &&
	    ((c->poll_events & UV_READABLE) || !c->paused_own) &&
	    (t = c->frame_start_ms + conn_ms(cfg->frame_timeout_ns), !due || t < due))
		due = t;
	if (c->stall_since_ms && cfg->stall_timeout_ns &&
	    (t = c->stall_since_ms + conn_ms(cfg->stall_timeout_ns), !due || t < due))
		due = t;
	if (cfg->idle_timeout_ns && !c->frame_start_ms && !c->jobs_in_flight && !c->out_head &&
	    (t = c->active_ms + conn_ms(cfg->idle_timeout_ns), !due || t < due))
		due = t;
	if (!due)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, conn_on_timer, due > now ? due - now : 0, 0);
}

/* End c over a timeout: an error reply (request_id 0) if it can still be written, then the
 * close, within RXD_CONN_CLOSE_GRACE_MS. */
static void conn_time_out(struct rxd_conn *c, const char *what, uint64_t ns)
{
	log_msg(LOG_INFO, "client %u: %s for %.1f s; closing the connection", c->id, what,
		(double)ns / 1e9);
	c->frame_start_ms = c->stall_since_ms = 0;
	conn_stream_error(c, RXD_S_TIMEOUT,
			  "%s for %.1f s, this daemon's limit; closing the connection", what,
			  (double)ns / 1e9);
	if (!c->closing)
		c->kill_ms = uv_now(c->srv->loop) + RXD_CONN_CLOSE_GRACE_MS;
}

static void conn_on_timer(uv_timer_t *t)
{
	struct rxd_conn *c = t->data;
	const struct rxd_config *cfg = c->srv->cfg;
	uint64_t now = uv_now(c->srv->loop);

	if (c->closing)
		return;
	conn_ref(c);
	if (c->kill_ms && now >= c->kill_ms) {
		log_msg(LOG_INFO, "client %u: closed with %llu reply bytes unwritten", c->id,
			(unsigned long long)c->out_bytes);
		conn_close(c);
	} else if (c->stall_since_ms && cfg->stall_timeout_ns &&
		   now >= c->stall_since_ms + conn_ms(cfg->stall_timeout_ns)) {
		log_msg(LOG_NOTICE, "client %u: read none of its %llu bytes of replies for %.1f s "
			"while its requests were not read; closing the connection", c->id,
			(unsigned long long)c->out_bytes, (double)cfg->stall_timeout_ns / 1e9);
		conn_close(c);
	} else if (c->frame_start_ms && cfg->frame_timeout_ns && (c->poll_events & UV_READABLE) &&
		   now >= c->frame_start_ms + conn_ms(cfg->frame_timeout_ns)) {
		conn_time_out(c, "a frame begun is not complete", cfg->frame_timeout_ns);
	} else if (cfg->idle_timeout_ns && !c->frame_start_ms && !c->jobs_in_flight &&
		   !c->out_head && now >= c->active_ms + conn_ms(cfg->idle_timeout_ns)) {
		conn_time_out(c, "the connection was idle", cfg->idle_timeout_ns);
	}
	conn_arm_timer(c);
	conn_unref(c);
}

static void conn_on_poll(uv_poll_t *h, int status, int events);

/* Watch for what the connection needs now: reading unless it is closing, waiting to close,
 * or holding too much (backpressure); writing while replies wait. Then its deadlines. */
static void conn_update_poll(struct rxd_conn *c)
{
	int want = 0, ret;
	bool own = conn_reads_paused(c);

	if (c->closing)
		return;
	if (!c->close_after_write && !own && !conn_total_over(c->srv))
		want |= UV_READABLE;
	if (c->out_head)
		want |= UV_WRITABLE;
	/* Not reading: still notice a client that leaves (its memory comes back at once),
	 * once; the event stays raised after that. */
	if (!(want & UV_READABLE) && !c->close_after_write && !c->peer_hup)
		want |= UV_DISCONNECT;
	/* A client that reads nothing while we have stopped reading it is stalled from now
	 * (each byte it reads moves this on: conn_flush). */
	if (!(want & UV_READABLE) && c->out_head && !c->close_after_write) {
		if (!c->stall_since_ms)
			c->stall_since_ms = uv_now(c->srv->loop);
	} else {
		c->stall_since_ms = 0;
	}
	if (want != c->poll_events) {
		ret = want ? uv_poll_start(&c->poll, want, conn_on_poll) : uv_poll_stop(&c->poll);
		if (ret < 0) {
			log_msg(LOG_WARNING, "client %u: %s", c->id, uv_strerror(ret));
			conn_close(c);
			return;
		}
		/* A frame's time runs only while we read it, or while every client waits for
		 * memory: one we stopped reading to make the client read its replies first
		 * gets its whole time again. */
		if ((want & UV_READABLE) && !(c->poll_events & UV_READABLE) && c->frame_start_ms &&
		    c->paused_own)
			c->frame_start_ms = uv_now(c->srv->loop);
		c->poll_events = want;
	}
	c->paused_own = own;
	conn_arm_timer(c);
}

/* Write what the socket takes now. 0, or -errno once the connection has been closed. */
static int conn_flush(struct rxd_conn *c)
{
	enum { IOV_MAX_USED = 16 };

	while (c->out_head && !c->closing) {
		struct iovec iov[IOV_MAX_USED];
		struct msghdr msg = { .msg_iov = iov };
		struct rxd_outbuf *o = c->out_head;
		ssize_t n;

		for (; o && msg.msg_iovlen + 3 <= IOV_MAX_USED; o = o->next)
			msg.msg_iovlen += (size_t)outbuf_iov(o, iov + msg.msg_iovlen);
		/* MSG_NOSIGNAL: a client gone mid-reply costs an EPIPE, not the daemon's life. */
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			int e = errno;
			if (e == EINTR)
				continue;
			if (e == EAGAIN || e == EWOULDBLOCK)
				break;
			log_msg(LOG_INFO, "client %u: write failed: %s", c->id, strerror(e));
			conn_close(c);
			return -e;
		}
		c->out_bytes -= (uint64_t)n;
		conn_held_sub(c->srv, (uint64_t)n);
		c->active_ms = uv_now(c->srv->loop);
		if (c->stall_since_ms)
			c->stall_since_ms = c->active_ms;
		while (n > 0) {
			o = c->out_head;
			size_t left = o->len - o->done;
			if ((size_t)n < left) {
				o->done += (size_t)n;
				break;
			}
			n -= (ssize_t)left;
			c->out_head = o->next;
			if (!c->out_head)
				c->out_tail = NULL;
			c->writes_pending--;
			outbuf_free(o);
		}
	}
	if (c->closing)
		return -EPIPE;
	if (!c->out_head && c->close_after_write) {
		conn_close(c);
		return 0;
	}
	conn_update_poll(c);
	return 0;
}

static int conn_queue(struct rxd_conn *c, struct rxd_outbuf *o, bool close_after);

int conn_send(struct rxd_conn *c, size_t len, void (*pack)(const void *msg, uint8_t *out),
	      const void *msg, bool close_after)
{
	struct rxd_outbuf *o;

	if (c->closing)
		return -EPIPE;
	if (len > UINT32_MAX) {
		/* Cannot happen within the limits the wire layer keeps; never send a broken
		 * frame. */
		log_msg(LOG_ERR, "client %u: reply of %zu bytes does not fit a frame", c->id, len);
		conn_close(c);
		return -EMSGSIZE;
	}
	o = malloc(sizeof(*o) + FRAME_HEADER_BYTES + len);
	if (!o) {
		log_msg(LOG_ERR, "client %u: out of memory for a %zu-byte reply", c->id, len);
		conn_close(c);
		return -ENOMEM;
	}
	*o = (struct rxd_outbuf){ .len = FRAME_HEADER_BYTES + len,
				  .data_len = FRAME_HEADER_BYTES + len };
	frame_header_put(o->data, (uint32_t)len);
	pack(msg, o->data + FRAME_HEADER_BYTES);
	return conn_queue(c, o, close_after);
}

int conn_send_parts(struct rxd_conn *c, const uint8_t *head, size_t head_len, void *ext,
		    size_t ext_len, const uint8_t *tail, size_t tail_len, bool close_after)
{
	size_t len = head_len + ext_len + tail_len;
	struct rxd_outbuf *o;

	if (c->closing) {
		hostbuf_free(ext);
		return -EPIPE;
	}
	if (len > UINT32_MAX) {
		log_msg(LOG_ERR, "client %u: reply of %zu bytes does not fit a frame", c->id, len);
		hostbuf_free(ext);
		conn_close(c);
		return -EMSGSIZE;
	}
	o = malloc(sizeof(*o) + FRAME_HEADER_BYTES + head_len + tail_len);
	if (!o) {
		log_msg(LOG_ERR, "client %u: out of memory for a %zu-byte reply", c->id, len);
		hostbuf_free(ext);
		conn_close(c);
		return -ENOMEM;
	}
	*o = (struct rxd_outbuf){ .len = FRAME_HEADER_BYTES + len,
				  .data_len = FRAME_HEADER_BYTES + head_len + tail_len,
				  .split = FRAME_HEADER_BYTES + head_len,
				  .ext = ext,
				  .ext_len = ext_len };
	frame_header_put(o->data, (uint32_t)len);
	memcpy(o->data + FRAME_HEADER_BYTES, head, head_len);
	memcpy(o->data + o->split, tail, tail_len);
	return conn_queue(c, o, close_after);
}

/* Queue o (taken) behind c's other replies; write now when it is the only one. */
static int conn_queue(struct rxd_conn *c, struct rxd_outbuf *o, bool close_after)
{
	if (close_after)
		c->close_after_write = true;
	if (c->out_tail) {
		/* The socket was full: the writable event writes this after the others. */
		c->out_tail->next = o;
		c->out_tail = o;
		c->out_bytes += o->len;
		conn_held_add(c->srv, o->len);
		c->writes_pending++;
		conn_update_poll(c);
		return c->closing ? -EPIPE : 0;
	}
	c->out_head = c->out_tail = o;
	c->out_bytes = o->len;
	conn_held_add(c->srv, o->len);
	c->writes_pending = 1;
	/* Most replies fit the socket buffer at once: write now rather than a loop turn later. */
	return conn_flush(c);
}

/* Where the last frame that begins within data[0..len) begins, or -1 when none does: the
 * frame that descriptors received with this data belong to (see conn_take_fds). Follows
 * the reader's state without changing it. */
static ssize_t conn_last_frame_start(const struct frame_reader *fr, const uint8_t *data,
				     size_t len)
{
	uint8_t hdr[FRAME_HEADER_BYTES];
	size_t hdr_have = fr->hdr_have, body_left = 0, pos = 0;
	ssize_t last = -1;

	memcpy(hdr, fr->hdr, sizeof(hdr));
	if (hdr_have == FRAME_HEADER_BYTES)
		body_left = fr->body_len - fr->body_have;
	while (pos < len) {
		if (hdr_have == 0)
			last = (ssize_t)pos;
		if (hdr_have < FRAME_HEADER_BYTES) {
			size_t n = FRAME_HEADER_BYTES - hdr_have;
			if (n > len - pos)
				n = len - pos;
			memcpy(hdr + hdr_have, data + pos, n);
			hdr_have += n;
			pos += n;
			if (hdr_have < FRAME_HEADER_BYTES)
				break;
			body_left = frame_header_get(hdr);
			if (body_left > fr->max_bytes)
				break; /* the reader will refuse it: the stream ends there */
		}
		size_t n = body_left < len - pos ? body_left : len - pos;
		pos += n;
		body_left -= n;
		if (body_left == 0)
			hdr_have = 0;
	}
	return last;
}

/* Received descriptors join the frame they belong to: those of the current read (in_fds)
 * become the frame's (frame_fds), beyond RXD_CONN_MAX_FDS counted as lost and closed. */
static void conn_take_fds(struct rxd_conn *c)
{
	for (unsigned i = 0; i < c->n_in_fds; i++) {
		if (c->n_frame_fds < RXD_CONN_MAX_FDS) {
			c->frame_fds[c->n_frame_fds++] = c->in_fds[i];
		} else {
			close(c->in_fds[i]);
			c->frame_fds_lost++;
		}
	}
	c->frame_fds_lost += c->in_fds_lost;
	c->n_in_fds = c->in_fds_lost = 0;
}

/* A whole frame to the protocol; what its handler did not take of the frame's descriptors
 * is closed: never leak one. */
static void conn_dispatch(struct rxd_conn *c, uint8_t *body, size_t len)
{
	c->srv->conn_ops->frame(c, body, len);
	fds_close(c->frame_fds, &c->n_frame_fds);
	c->frame_fds_lost = 0;
}

/* len bytes read straight into the frame body in progress (frame_reader_space): all of
 * them, and the descriptors that came with them, are that frame's. */
static unsigned conn_feed_direct(struct rxd_conn *c, size_t len)
{
	uint8_t *body;
	size_t body_len;

	if (c->n_in_fds || c->in_fds_lost)
		conn_take_fds(c);
	frame_reader_commit(&c->fr, len, &body, &body_len);
	if (!body)
		return 0;
	if (c->closing || c->close_after_write) {
		/* As conn_feed: nothing more is taken once the connection is ending. */
		hostbuf_free(body);
		return 0;
	}
	conn_dispatch(c, body, body_len);
	return 1;
}

/* Feed len bytes from the socket to the frame reader and dispatch every frame completed.
 * The descriptors of this read (c->in_fds) ride on the first byte of the sendmsg that
 * carried them, and the kernel ends a read right after that message's data, so they belong
 * to the last frame that starts in the data read; when none starts there, to the frame in
 * progress. A well-behaved client sends a frame with descriptors as one sendmsg. */
static unsigned conn_feed(struct rxd_conn *c, const uint8_t *p, size_t left)
{
	ssize_t fds_at = -1;
	size_t pos = 0;
	unsigned frames = 0;

	if (c->n_in_fds || c->in_fds_lost) {
		fds_at = conn_last_frame_start(&c->fr, p, left);
		if (fds_at < 0)
			conn_take_fds(c);
	}
	while (pos < left && !c->closing && !c->close_after_write) {
		uint8_t *body;
		size_t body_len;
		ssize_t used;

		if (fds_at >= 0 && (size_t)fds_at == pos && c->fr.hdr_have == 0)
			conn_take_fds(c);
		used = frame_reader_feed(&c->fr, p + pos, left - pos, &body, &body_len);
		if (used == -EMSGSIZE) {
			conn_stream_error(c, RXD_S_TOO_BIG,
					  "frame of %u bytes is larger than this daemon's limit of "
					  "%llu bytes; closing the connection",
					  c->fr.last_len,
					  (unsigned long long)c->srv->cfg->max_frame_bytes);
			break;
		}
		if (used < 0) {
			conn_stream_error(c, RXD_S_NO_MEMORY,
					  "out of memory for a frame of %u bytes; closing the "
					  "connection",
					  c->fr.last_len);
			break;
		}
		pos += (size_t)used;
		if (body) {
			frames++;
			conn_dispatch(c, body, body_len);
		}
	}
	/* Descriptors for a frame this read did not reach (the connection is going). */
	fds_close(c->in_fds, &c->n_in_fds);
	c->in_fds_lost = 0;
	return frames;
}

/* One recvmsg: bytes into buf, descriptors into c->in_fds (close-on-exec, so that
 * nothing the daemon might start inherits them). Returns what recvmsg returned. */
static ssize_t conn_recv(struct rxd_conn *c, uint8_t *buf, size_t len)
{
	union {
		struct cmsghdr align;
		uint8_t buf[CMSG_SPACE(sizeof(int) * RXD_CONN_MAX_FDS)];
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			      .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *cm;
	ssize_t n;

	n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0)
		return n;
	for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		size_t nfd;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (c->n_in_fds < RXD_CONN_MAX_FDS) {
				c->in_fds[c->n_in_fds++] = fd;
			} else {
				close(fd);
				c->in_fds_lost++;
			}
		}
	}
	/* The kernel closed what did not fit our control buffer: the frame still learns that
	 * it carried more than it may. */
	if (msg.msg_flags & MSG_CTRUNC)
		c->in_fds_lost++;
	return n;
}

/* Shutdown: all that the client had sent is read and answered; close once written. */
static void conn_drained(struct rxd_conn *c)
{
	c->close_after_write = true;
	if (!c->out_head && !c->jobs_in_flight)
		conn_close(c);
	else
		conn_update_poll(c);
}

/* Charge the daemon's total with how the frame being read changed since *held was taken;
 * *held is its size now. */
static void conn_held_track(struct rxd_conn *c, uint64_t *held)
{
	uint64_t now = frame_reader_held_bytes(&c->fr);

	if (now >= *held)
		conn_held_add(c->srv, now - *held);
	else
		conn_held_sub(c->srv, *held - now);
	*held = now;
}

static void conn_read(struct rxd_conn *c)
{
	for (int i = 0; i < RXD_CONN_READS_PER_TURN; i++) {
		unsigned frames;
		uint64_t now;
		ssize_t n;

		if (c->closing || !(c->poll_events & UV_READABLE))
			return;
		/* The frame being read grows as its bytes come (or is handed on whole). */
		uint64_t held = frame_reader_held_bytes(&c->fr);
		/* The rest of a large frame goes straight into its body: a copy fewer, and
		 * reads as large as the body has room for. */
		size_t room;
		uint8_t *direct = frame_reader_space(&c->fr, sizeof(c->readbuf), &room);
		conn_held_track(c, &held); /* the room made counts from now */
		if (c->closing)
			return;
		n = direct ? conn_recv(c, direct, room) : conn_recv(c, c->readbuf, sizeof(c->readbuf));
		if (n < 0) {
			int e = errno;
			if (e == EINTR)
				continue;
			if (e == EAGAIN || e == EWOULDBLOCK) {
				if (c->draining && !frame_reader_partial(&c->fr))
					conn_drained(c);
				return;
			}
			log_msg(LOG_INFO, "client %u: read failed: %s", c->id, strerror(e));
			conn_close(c);
			return;
		}
		if (n == 0) {
			if (frame_reader_partial(&c->fr))
				log_msg(LOG_INFO, "client %u: left in the middle of a frame", c->id);
			conn_close(c);
			return;
		}
		frames = direct ? conn_feed_direct(c, (size_t)n) : conn_feed(c, c->readbuf, (size_t)n);
		conn_held_track(c, &held);
		/* A frame's time counts from its first byte: only a new frame starts it again. */
		now = uv_now(c->srv->loop);
		c->active_ms = now;
		if (!frame_reader_partial(&c->fr))
			c->frame_start_ms = 0;
		else if (!c->frame_start_ms || frames)
			c->frame_start_ms = now;
		/* Replies sent while dispatching may have filled the queue: reading pauses. */
		conn_update_poll(c);
	}
}

static void conn_on_poll(uv_poll_t *h, int status, int events)
{
	struct rxd_conn *c = h->data;

	if (c->closing)
		return;
	conn_ref(c); /* dispatch may close c */
	if (status < 0) {
		log_msg(LOG_INFO, "client %u: %s", c->id, uv_strerror(status));
		conn_close(c);
	} else {
		if (events & UV_WRITABLE)
			conn_flush(c);
		if (events & UV_READABLE)
			conn_read(c);
		if ((events & UV_DISCONNECT) && !(events & UV_READABLE) && !c->closing) {
			/* Gone (or shut its sending side) while we were not reading: with no
			 * reply owed it nothing more can happen on this connection. */
			c->peer_hup = true;
			if (!c->out_head && !c->jobs_in_flight) {
				if (frame_reader_partial(&c->fr))
					log_msg(LOG_INFO, "client %u: left in the middle of a frame",
						c->id);
				conn_close(c);
			} else {
				conn_update_poll(c);
			}
		}
	}
	conn_unref(c);
}

/* Access control: with allow-uids or allow-gids set, is the peer root, one of the users,
 * or a member (primary or supplementary group) of one of the groups? */
static bool conn_peer_allowed(const struct rxd_config *cfg, int fd, const struct ucred *cred)
{
	gid_t small[64], *groups = small;
	socklen_t len = sizeof(small);
	bool ok = false;
	int n;

	if (!cfg->allow_uids_set && !cfg->allow_gids_set)
		return true;
	if (!cred)
		return false; /* no credentials: nothing to allow */
	if (cred->uid == 0)
		return true;
	for (size_t i = 0; i < cfg->n_allow_uids; i++)
		if (cfg->allow_uids[i] == cred->uid)
			return true;
	for (size_t i = 0; i < cfg->n_allow_gids; i++)
		if (cfg->allow_gids[i] == cred->gid)
			return true;
	if (!cfg->n_allow_gids)
		return false;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
		if (errno != ERANGE || !(groups = malloc(len)) ||
		    getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
			goto out;
	}
	n = (int)(len / sizeof(gid_t));
	for (int j = 0; j < n && !ok; j++)
		for (size_t i = 0; i < cfg->n_allow_gids && !ok; i++)
			ok = cfg->allow_gids[i] == groups[j];
out:
	if (groups != small)
		free(groups);
	return ok;
}

static void conn_peer(struct rxd_conn *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	bool known;

	c->peer_pid = c->peer_uid = -1;
	known = getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
	if (known) {
		c->peer_pid = cred.pid;
		c->peer_uid = cred.uid;
	}
	c->refused = !conn_peer_allowed(c->srv->cfg, c->fd, known ? &cred : NULL);
}

void conn_open(struct rxd_server *srv, int fd)
{
	struct rxd_conn *c;
	int ret;

	c = calloc(1, sizeof(*c));
	if (!c) {
		log_msg(LOG_ERR, "out of memory for a new client");
		close(fd);
		return;
	}
	c->srv = srv;
	c->refs = 1;
	c->fd = fd;
	frame_reader_init(&c->fr, srv->cfg->max_frame_bytes);
	c->fr.take = hostbuf_take; /* a large frame into pages used before (hostbuf.c) */
	c->fr.give = hostbuf_free;
	shm_init(&c->shm);
	tensor_table_init(&c->tensors);
	if ((ret = uv_poll_init(srv->loop, &c->poll, fd)) < 0) {
		log_msg(LOG_WARNING, "accept: %s", uv_strerror(ret));
		close(fd);
		conn_free(c);
		return;
	}
	c->poll.data = c;
	/* The timer holds a reference of its own, dropped in its close callback. */
	uv_timer_init(srv->loop, &c->timer);
	c->timer.data = c;
	c->refs++;
	c->active_ms = uv_now(srv->loop);
	c->id = ++srv->next_client_id;
	conn_peer(c);
	c->next = srv->conns;
	if (c->next)
		c->next->prev = c;
	srv->conns = c;
	srv->stats.clients_connected++;
	srv->stats.clients_total++;
	log_msg(c->refused ? LOG_NOTICE : LOG_INFO, "client %u connected (pid %ld, uid %ld)%s",
		c->id, c->peer_pid, c->peer_uid,
		c->refused ? ": not allowed (allow-uids, allow-gids); its Hello is refused" : "");
	conn_update_poll(c);
}

void conn_reconfigured(struct rxd_conn *c)
{
	conn_update_poll(c);
}

void conn_drain(struct rxd_conn *c, uint64_t kill_ms)
{
	conn_ref(c);
	c->draining = true;
	c->kill_ms = kill_ms;
	conn_update_poll(c);
	conn_read(c);
	conn_unref(c);
}

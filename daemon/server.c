/* server.c: the listening Unix socket and the client connections (loop thread only).
 *
 * A connection lives until the client leaves or breaks the framing, and its memory until
 * the last job it submitted has come back from the device worker (refs). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "rxgemmd.h"

struct rxd_write {
	uv_write_t req;
	struct rxd_conn *conn;
	uint8_t *frame;
};

void conn_ref(struct rxd_conn *c)
{
	c->refs++;
}

static void conn_free(struct rxd_conn *c)
{
	frame_reader_fini(&c->fr);
	free(c);
}

static void conn_on_closed(uv_handle_t *h)
{
	conn_unref(h->data);
}

void conn_unref(struct rxd_conn *c)
{
	if (--c->refs == 0)
		conn_free(c);
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
	srv->stats.clients_connected--;
	log_msg(LOG_INFO, "client %u (%s, pid %ld) disconnected", c->id,
		c->name[0] ? c->name : "no hello", c->peer_pid);
	uv_close((uv_handle_t *)&c->pipe, conn_on_closed);
}

static void conn_on_write(uv_write_t *req, int status)
{
	struct rxd_write *wr = (struct rxd_write *)req;
	struct rxd_conn *c = wr->conn;

	free(wr->frame);
	free(wr);
	c->writes_pending--;
	if (status < 0 && status != UV_ECANCELED && !c->closing) {
		log_msg(LOG_INFO, "client %u: write failed: %s", c->id, uv_strerror(status));
		conn_close(c);
	} else if (c->close_after_write && c->writes_pending == 0) {
		conn_close(c);
	}
	conn_unref(c);
}

int conn_send(struct rxd_conn *c, const Rxgemm__Reply *reply, bool close_after)
{
	struct rxd_write *wr;
	size_t len;
	uv_buf_t buf;
	int ret;

	if (c->closing)
		return -EPIPE;
	len = rxgemm__reply__get_packed_size(reply);
	if (len > UINT32_MAX) {
		/* Cannot happen within the limits gemm_validate keeps; never send a broken frame. */
		log_msg(LOG_ERR, "client %u: reply of %zu bytes does not fit a frame", c->id, len);
		conn_close(c);
		return -EMSGSIZE;
	}
	wr = calloc(1, sizeof(*wr));
	if (!wr || !(wr->frame = malloc(FRAME_HEADER_BYTES + len))) {
		free(wr);
		log_msg(LOG_ERR, "client %u: out of memory for a %zu-byte reply", c->id, len);
		conn_close(c);
		return -ENOMEM;
	}
	frame_header_put(wr->frame, (uint32_t)len);
	rxgemm__reply__pack(reply, wr->frame + FRAME_HEADER_BYTES);
	wr->conn = c;
	buf = uv_buf_init((char *)wr->frame, (unsigned)(FRAME_HEADER_BYTES + len));
	if (close_after) {
		c->close_after_write = true;
		uv_read_stop((uv_stream_t *)&c->pipe);
	}
	if ((ret = uv_write(&wr->req, (uv_stream_t *)&c->pipe, &buf, 1, conn_on_write)) < 0) {
		free(wr->frame);
		free(wr);
		log_msg(LOG_INFO, "client %u: write failed: %s", c->id, uv_strerror(ret));
		conn_close(c);
		return ret;
	}
	conn_ref(c);
	c->writes_pending++;
	return 0;
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct rxd_conn *c = h->data;

	(void)suggested;
	*buf = uv_buf_init((char *)c->readbuf, sizeof(c->readbuf));
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct rxd_conn *c = s->data;
	const uint8_t *p = (const uint8_t *)buf->base;
	size_t left = nread > 0 ? (size_t)nread : 0;

	if (nread < 0) {
		if (nread != UV_EOF)
			log_msg(LOG_INFO, "client %u: read failed: %s", c->id, uv_strerror((int)nread));
		else if (frame_reader_partial(&c->fr))
			log_msg(LOG_INFO, "client %u: left in the middle of a frame", c->id);
		conn_close(c);
		return;
	}
	/* Each frame is dispatched as soon as it is whole; dispatch may close c. */
	conn_ref(c);
	while (left > 0 && !c->closing && !c->close_after_write) {
		uint8_t *body;
		size_t body_len;
		ssize_t used = frame_reader_feed(&c->fr, p, left, &body, &body_len);

		if (used == -EMSGSIZE) {
			dispatch_error(c, 0, RXGEMM__STATUS__STATUS_TOO_BIG, true,
				       "frame of %u bytes is larger than this daemon's limit of "
				       "%llu bytes; closing the connection",
				       c->fr.last_len,
				       (unsigned long long)c->srv->cfg->max_frame_bytes);
			break;
		}
		if (used < 0) {
			dispatch_error(c, 0, RXGEMM__STATUS__STATUS_NO_MEMORY, true,
				       "out of memory for a frame of %u bytes; closing the "
				       "connection",
				       c->fr.last_len);
			break;
		}
		p += used;
		left -= (size_t)used;
		if (body)
			dispatch_frame(c, body, body_len);
	}
	conn_unref(c);
}

static void conn_peer(struct rxd_conn *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	c->peer_pid = c->peer_uid = -1;
	if (uv_fileno((uv_handle_t *)&c->pipe, &fd) == 0 &&
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
		c->peer_pid = cred.pid;
		c->peer_uid = cred.uid;
	}
}

static void server_on_connection(uv_stream_t *listener, int status)
{
	struct rxd_server *srv = listener->data;
	struct rxd_conn *c;
	int ret;

	if (status < 0) {
		log_msg(LOG_WARNING, "accept: %s", uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		log_msg(LOG_ERR, "out of memory for a new client");
		return;
	}
	c->srv = srv;
	c->refs = 1;
	frame_reader_init(&c->fr, srv->cfg->max_frame_bytes);
	uv_pipe_init(srv->loop, &c->pipe, 0);
	c->pipe.data = c;
	if ((ret = uv_accept(listener, (uv_stream_t *)&c->pipe)) < 0) {
		log_msg(LOG_WARNING, "accept: %s", uv_strerror(ret));
		uv_close((uv_handle_t *)&c->pipe, conn_on_closed);
		return;
	}
	c->id = ++srv->next_client_id;
	conn_peer(c);
	c->next = srv->conns;
	if (c->next)
		c->next->prev = c;
	srv->conns = c;
	srv->stats.clients_connected++;
	srv->stats.clients_total++;
	log_msg(LOG_INFO, "client %u connected (pid %ld, uid %ld)", c->id, c->peer_pid,
		c->peer_uid);
	if ((ret = uv_read_start((uv_stream_t *)&c->pipe, conn_alloc, conn_on_read)) < 0) {
		log_msg(LOG_WARNING, "client %u: %s", c->id, uv_strerror(ret));
		conn_close(c);
	}
}

/* Is a daemon answering at path? Then we must not take its socket away. */
static bool server_path_live(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return live;
}

/* Serve the listening socket that socket activation passed (fd); it stays the service
 * manager's, so it is never unlinked. 0 or a negative errno (logged). */
static int server_adopt(struct rxd_server *srv, uv_loop_t *loop, int fd)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	int ret;

	uv_pipe_init(loop, &srv->listener, 0);
	srv->listener.data = srv;
	if ((ret = uv_pipe_open(&srv->listener, fd)) < 0) {
		close(fd);
	} else if ((ret = uv_listen((uv_stream_t *)&srv->listener, 64,
				    server_on_connection)) == 0) {
		memset(&sa, 0, sizeof(sa));
		getsockname(fd, (struct sockaddr *)&sa, &len);
		log_msg(LOG_NOTICE, "listening on %s, passed by the service manager",
			sa.sun_path[0] ? sa.sun_path : "an unnamed socket");
		srv->listening = srv->adopted = true;
		return 0;
	}
	log_msg(LOG_ERR, "cannot listen on the socket passed by the service manager: %s",
		uv_strerror(ret));
	uv_close((uv_handle_t *)&srv->listener, NULL);
	return ret;
}

int server_start(struct rxd_server *srv, uv_loop_t *loop, const struct rxd_config *cfg,
		 struct rxd_device *dev, struct rxd_worker *w)
{
	struct sockaddr_un sa;
	struct stat st;
	int ret, fd;

	memset(srv, 0, sizeof(*srv));
	srv->loop = loop;
	srv->cfg = cfg;
	srv->dev = dev;
	srv->worker = w;
	/* One job's buffers may take at most the device's memory; the budget (a later
	 * issue) narrows this. */
	srv->limits.max_buffer_bytes = dev->max_alloc_bytes;
	srv->limits.max_total_bytes = dev->global_mem_bytes;
	stats_init(&srv->stats);

	/* Under socket activation (rxgemmd.socket) the socket is there already. */
	if ((fd = sdnotify_listen_fd()) >= 0)
		return server_adopt(srv, loop, fd);
	if (strlen(cfg->socket_path) >= sizeof(sa.sun_path)) {
		log_msg(LOG_ERR, "socket path %s is longer than %zu bytes", cfg->socket_path,
			sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	if (lstat(cfg->socket_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_msg(LOG_ERR, "%s exists and is not a socket; not touching it",
				cfg->socket_path);
			return -EEXIST;
		}
		if (server_path_live(cfg->socket_path)) {
			log_msg(LOG_ERR, "another daemon is serving on %s", cfg->socket_path);
			return -EADDRINUSE;
		}
		log_msg(LOG_INFO, "replacing the stale socket %s", cfg->socket_path);
		unlink(cfg->socket_path);
	}
	uv_pipe_init(loop, &srv->listener, 0);
	srv->listener.data = srv;
	/* 0660 whatever the umask: the owner and the group (rxgemm under systemd) may connect.
	 * Nobody can connect before uv_listen, so the chmod in between leaves no window. */
	if ((ret = uv_pipe_bind(&srv->listener, cfg->socket_path)) < 0 ||
	    (ret = chmod(cfg->socket_path, 0660) < 0 ? -errno : 0) < 0 ||
	    (ret = uv_listen((uv_stream_t *)&srv->listener, 64, server_on_connection)) < 0) {
		log_msg(LOG_ERR, "cannot listen on %s: %s", cfg->socket_path, uv_strerror(ret));
		uv_close((uv_handle_t *)&srv->listener, NULL);
		return ret;
	}
	srv->listening = true;
	return 0;
}

void server_unlisten(struct rxd_server *srv)
{
	srv->stopping = true;
	if (srv->listening) {
		uv_close((uv_handle_t *)&srv->listener, NULL);
		if (!srv->adopted)
			unlink(srv->cfg->socket_path);
		srv->listening = false;
	}
}

void server_stop(struct rxd_server *srv)
{
	struct rxd_conn *c, *next;

	server_unlisten(srv);
	/* Replies already queued (the shutdown errors among them) go out before the close. */
	for (c = srv->conns; c; c = next) {
		next = c->next;
		uv_read_stop((uv_stream_t *)&c->pipe);
		if (c->writes_pending)
			c->close_after_write = true;
		else
			conn_close(c);
	}
}

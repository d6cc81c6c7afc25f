/* server.c: the listening Unix socket (loop thread only): accepting connections, which
 * conn.c then serves, and stopping them all at shutdown. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "loop.h"

static void server_on_closed_free(uv_handle_t *h)
{
	free(h);
}

/* Accept through libuv (which took the connection already) and keep our own descriptor of
 * it: a uv_pipe_t would read the socket itself and drop descriptors that are not sockets,
 * so the connection is served through a uv_poll_t instead. -errno or the descriptor. */
static int server_accept_fd(uv_stream_t *listener)
{
	uv_pipe_t *tmp = malloc(sizeof(*tmp));
	uv_os_fd_t fd;
	int ret;

	if (!tmp)
		return -ENOMEM;
	uv_pipe_init(listener->loop, tmp, 0);
	if ((ret = uv_accept(listener, (uv_stream_t *)tmp)) == 0 &&
	    (ret = uv_fileno((uv_handle_t *)tmp, &fd)) == 0) {
		/* Non-blocking already (libuv's), and every I/O call passes MSG_DONTWAIT. */
		ret = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (ret < 0)
			ret = -errno;
	}
	uv_close((uv_handle_t *)tmp, server_on_closed_free);
	return ret;
}

static void server_on_connection(uv_stream_t *listener, int status)
{
	struct rxd_server *srv = listener->data;
	int fd;

	if (status < 0) {
		log_msg(LOG_WARNING, "accept: %s", uv_strerror(status));
		return;
	}
	if ((fd = server_accept_fd(listener)) < 0) {
		log_msg(LOG_WARNING, "accept: %s", strerror(-fd));
		return;
	}
	conn_open(srv, fd);
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

int server_check_path(const char *path)
{
	struct sockaddr_un sa;
	char dir[PATH_MAX], *slash;
	struct stat st;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_msg(LOG_ERR, "socket path %s is longer than %zu bytes", path,
			sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	if (!(slash = strrchr(dir, '/')))
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if (stat(dir, &st) < 0 || (!S_ISDIR(st.st_mode) && (errno = ENOTDIR)) ||
	    access(dir, W_OK | X_OK) < 0) {
		int e = errno;

		log_msg(LOG_ERR, "cannot listen on %s: its directory %s: %s", path, dir,
			strerror(e));
		return -e;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_msg(LOG_ERR, "%s exists and is not a socket; not touching it", path);
			return -EEXIST;
		}
		if (server_path_live(path)) {
			log_msg(LOG_ERR, "another daemon is serving on %s", path);
			return -EADDRINUSE;
		}
	}
	return 0;
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
		 struct rxd_device *dev, struct rxd_worker *w, struct rxd_nas_cache *nascache,
		 const struct rxd_conn_ops *ops)
{
	struct sockaddr_un sa;
	struct stat st;
	int ret, fd;

	memset(srv, 0, sizeof(*srv));
	srv->loop = loop;
	srv->cfg = cfg;
	srv->dev = dev;
	srv->worker = w;
	srv->nascache = nascache;
	srv->conn_ops = ops;
	/* One job's buffers may take at most the device's memory; admission (admit.c)
	 * narrows this to the budget. */
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

void server_reconfigured(struct rxd_server *srv)
{
	for (struct rxd_conn *c = srv->conns; c; c = c->next)
		conn_reconfigured(c);
}

void server_stop(struct rxd_server *srv)
{
	uint64_t kill_ms = uv_now(srv->loop) + conn_ms(srv->cfg->shutdown_timeout_ns);
	struct rxd_conn *c, *next;

	server_unlisten(srv);
	/* Requests already sent (in the socket, not yet read) are read now and answered
	 * STATUS_SHUTDOWN, then each connection closes once its replies are written; one that
	 * does not read them is closed at the deadline all the same. */
	for (c = srv->conns; c; c = next) {
		conn_ref(c); /* for c->next: conn_drain may close c */
		conn_drain(c, kill_ms);
		next = c->next;
		conn_unref(c);
	}
}

/* main.c: rxgemmd's start-up and shutdown order.
 *
 * Modules start in dependency order and stop in the reverse one: configuration, device,
 * kernels (built and self-tested before anything listens, so a client's first job never
 * pays a compile), device worker, server. Only then is the socket there: a client that can
 * connect is served at once. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rxgemmd.h"

struct rxd_main {
	struct rxd_config cfg;
	struct rxd_device dev;
	struct rxd_gemm_engine engine;
	struct rxd_worker worker;
	struct rxd_server server;
	uv_signal_t sigterm, sigint;
	bool stopping;
};

static void main_on_signal(uv_signal_t *h, int signum)
{
	struct rxd_main *m = h->data;

	if (m->stopping)
		return;
	m->stopping = true;
	log_msg(LOG_NOTICE, "%s: shutting down", strsignal(signum));
	/* Stop taking work, let the running job finish and fail the queued ones, send those
	 * replies, then close the connections. */
	server_unlisten(&m->server);
	worker_stop(&m->worker);
	server_stop(&m->server);
	uv_close((uv_handle_t *)&m->sigterm, NULL);
	uv_close((uv_handle_t *)&m->sigint, NULL);
}

int main(int argc, char **argv)
{
	static struct rxd_main m;
	uv_loop_t *loop;
	int ret, status = 1;

	if ((ret = config_init(&m.cfg, argc, argv)) != 0) {
		config_fini(&m.cfg);
		return ret - 1;
	}
	log_set_level(m.cfg.log_level);
	if (m.cfg.list_devices) {
		status = device_list(stdout) < 0 ? 1 : 0;
		goto out_config;
	}
	/* A client that vanishes mid-write must cost an EPIPE, not the daemon. */
	signal(SIGPIPE, SIG_IGN);
	log_msg(LOG_INFO, "rxgemmd %s starting (protocol %d)", PACKAGE_VERSION,
		RXGEMM_PROTOCOL_VERSION);
	if (device_open(&m.dev, m.cfg.device) < 0)
		goto out_config;
	if (gemm_init(&m.engine, &m.dev) < 0)
		goto out_device;
	loop = uv_default_loop();
	if ((ret = worker_start(&m.worker, loop, &m.engine, dispatch_job_done, &m.server)) < 0) {
		log_msg(LOG_ERR, "cannot start the device worker: %s", strerror(-ret));
		goto out_engine;
	}
	if (server_start(&m.server, loop, &m.cfg, &m.dev, &m.worker) < 0) {
		worker_stop(&m.worker);
		uv_run(loop, UV_RUN_DEFAULT);
		goto out_loop;
	}
	uv_signal_init(loop, &m.sigterm);
	uv_signal_init(loop, &m.sigint);
	m.sigterm.data = m.sigint.data = &m;
	uv_signal_start(&m.sigterm, main_on_signal, SIGTERM);
	uv_signal_start(&m.sigint, main_on_signal, SIGINT);
	log_msg(LOG_NOTICE, "ready: serving %s on %s", m.dev.description, m.cfg.socket_path);

	uv_run(loop, UV_RUN_DEFAULT);
	status = 0;
	log_msg(LOG_NOTICE, "stopped after %llu jobs (%llu failed, %llu requests rejected)",
		(unsigned long long)m.server.stats.jobs_ok + m.server.stats.jobs_failed,
		(unsigned long long)m.server.stats.jobs_failed,
		(unsigned long long)m.server.stats.requests_rejected);
out_loop:
	if (uv_loop_close(loop) != 0)
		log_msg(LOG_WARNING, "handles left open at exit");
out_engine:
	gemm_fini(&m.engine);
out_device:
	device_close(&m.dev);
out_config:
	config_fini(&m.cfg);
	return status;
}

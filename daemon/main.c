/* main.c: rxgemmd's start-up and shutdown order.
 *
 * Modules start in dependency order and stop in the reverse one: configuration, kernel
 * cache, device, budget, kernels (built or loaded from the cache, and self-tested, before anything
 * listens, so a client's first job never pays a compile), device worker, server. Only then
 * is the socket there: a client that can connect is served at once. Only then, too, does
 * the service manager hear READY=1 (sdnotify.c); under socket activation clients wait in
 * the socket's backlog until then. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loop.h"
#include "searchjob.h"

struct rxd_main {
	struct rxd_config cfg;
	struct rxd_device dev;
	struct rxd_kcache *kcache;
	struct rxd_gemm_engine engine;
	struct rxd_nasops nasops;
	bool have_nasops;            /* NAS evaluation's kernels built and self-tested */
	struct rxd_nasgrad nasgrad;  /* the search jobs' backward kernels */
	bool have_nasgrad;
	struct rxd_nas_cache nascache; /* NAS plans kept between jobs */
	struct rxd_budget *budget;
	struct rxd_worker *worker;
	struct rxd_server server;
	struct rxd_sdnotify notify;
	uv_signal_t sigterm, sigint, sighup;
	int argc;
	char **argv;                 /* kept for config_reload */
	bool stopping;
	int exit_status;             /* after the loop ends: 0, or 1 when the device was lost */
};

/* Stop taking work, let the running job finish and fail the queued ones, send those
 * replies, then close the connections; the loop then runs out of handles. */
static void main_shutdown(struct rxd_main *m)
{
	if (m->stopping)
		return;
	m->stopping = true;
	sdnotify_stopping(&m->notify);
	server_unlisten(&m->server);
	worker_stop(m->worker);
	server_stop(&m->server);
	hostbuf_detach();
	uv_close((uv_handle_t *)&m->sigterm, NULL);
	uv_close((uv_handle_t *)&m->sigint, NULL);
	uv_close((uv_handle_t *)&m->sighup, NULL);
}

static void main_on_signal(uv_signal_t *h, int signum)
{
	struct rxd_main *m = h->data;

	if (!m->stopping)
		log_msg(LOG_NOTICE, "%s: shutting down", strsignal(signum));
	main_shutdown(m);
}

/* The device worker found the device lost (worker.c): its jobs have been answered. Nothing
 * more can run on this context, and rebuilding it under the jobs of every client is not
 * worth the risk: exit non-zero, and systemd (Restart=on-failure) starts a fresh daemon,
 * whose kernels come from the cache. */
static void main_on_device_lost(void *arg)
{
	struct rxd_main *m = arg;

	log_msg(LOG_ERR, "the OpenCL device is lost: shutting down with exit status 1 to be "
		"restarted");
	sdnotify_send("STATUS=the OpenCL device is lost; exiting to be restarted");
	m->exit_status = 1;
	main_shutdown(m);
}

/* SIGHUP: re-read the configuration; connections and queued jobs are untouched. */
static void main_on_sighup(uv_signal_t *h, int signum)
{
	struct rxd_main *m = h->data;

	(void)signum;
	if (m->stopping)
		return;
	sdnotify_reloading(&m->notify);
	if (config_reload(&m->cfg, m->argc, m->argv) == 0) {
		log_set_level(m->cfg.log_level);
		budget_set_limits(m->budget,
				  budget_resolve(m->cfg.vram_budget_bytes, m->cfg.vram_budget_percent,
						 m->dev.global_mem_bytes),
				  m->cfg.client_quota_bytes);
		worker_set_limits(m->worker, m->cfg.max_queue, m->cfg.client_max_queue);
		server_reconfigured(&m->server);
		shm_set_limits(m->cfg.client_shm_regions, m->cfg.client_shm_bytes);
	}
	sdnotify_reloaded(&m->notify);
}

/* When each start-up phase ended (now_ns), for the line that says where the time to ready
 * went: with a warm kernel cache the compiles are gone, but a driver (PoCL in particular)
 * still finishes each loaded program and the self-tests still run, so "loaded from cache"
 * alone would read as if start-up should have been instant. */
struct main_startup {
	uint64_t start, device, gemm, nas, tuning;
};

static void main_log_startup(const struct main_startup *t, struct rxd_kcache *kc)
{
	struct rxd_kcache_stats ks;
	uint64_t ready = now_ns();
	double kernels_ms = (double)(t->nas - t->device) / 1e6;
	double cache_ms;

	kcache_stats(kc, &ks);
	cache_ms = (double)(ks.load_ns + ks.compile_ns) / 1e6;
	log_msg(LOG_NOTICE,
		"ready after %.1f s: device open %.0f ms; kernels %.0f ms (GEMM %.0f, NAS %.0f), of "
		"which %.0f ms loading %llu programs from the cache and %.0f ms compiling %llu, "
		"the other %.0f ms the driver finishing the programs and the self-tests; tuning "
		"%.0f ms; socket %.0f ms",
		(double)(ready - t->start) / 1e9, (double)(t->device - t->start) / 1e6, kernels_ms,
		(double)(t->gemm - t->device) / 1e6, (double)(t->nas - t->gemm) / 1e6,
		(double)ks.load_ns / 1e6, (unsigned long long)ks.hits, (double)ks.compile_ns / 1e6,
		(unsigned long long)ks.misses, kernels_ms > cache_ms ? kernels_ms - cache_ms : 0.0,
		(double)(t->tuning - t->nas) / 1e6, (double)(ready - t->tuning) / 1e6);
}

/* PoCL, the CPU driver, hides its platform when it cannot make its cache directory, and
 * the daemon then sees no device at all: name the likelier cause. */
static void main_hint_pocl_cache(void)
{
	const char *env = getenv("POCL_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	char path[PATH_MAX], probe[PATH_MAX], *slash;

	if (env && *env)
		snprintf(path, sizeof(path), "%s", env);
	else if (xdg && *xdg)
		snprintf(path, sizeof(path), "%s/pocl", xdg);
	else if (home && *home)
		snprintf(path, sizeof(path), "%s/.cache/pocl", home);
	else
		snprintf(path, sizeof(path), "(no HOME)");
	/* PoCL creates what is missing: the nearest existing directory must be writable. */
	snprintf(probe, sizeof(probe), "%s", path);
	while (path[0] == '/' && access(probe, F_OK) != 0 && (slash = strrchr(probe, '/'))) {
		if (slash == probe)
			probe[1] = '\0'; /* "/" */
		else
			*slash = '\0';
	}
	if (path[0] == '/' && access(probe, W_OK | X_OK) == 0)
		return;
	log_msg(LOG_ERR, "PoCL (the CPU OpenCL driver) hides its devices when it cannot write "
			 "its kernel cache %s, and %s is not writable for this user: set "
			 "POCL_CACHE_DIR to a writable directory, or give the user a writable HOME",
		path, path[0] == '/' ? probe : "there is no HOME");
}

/* Long: the daemon's life in the order it happens (configuration, log, cache, device,
 * engine, NAS and search kernels, budget, worker, server, signals, loop), undone in the
 * reverse order through one label per stage; split into helpers, the order and what each
 * stage undoes would no longer be read in one place. */
int main(int argc, char **argv)
{
	static struct rxd_main m;
	struct main_startup times = { 0 };
	uv_loop_t *loop;
	struct rxd_worker_init winit;
	const char *cache_dir;       /* the kernel cache's, where tunings are stored too */
	int ret, status = 1;

	if ((ret = config_init(&m.cfg, argc, argv)) != 0) {
		config_fini(&m.cfg);
		return ret - 1;
	}
	log_set_level(m.cfg.log_level);
	if (m.cfg.list_devices) {
		if ((status = (m.cfg.list_json ? device_list_json(stdout)
						 : device_list(stdout)) < 0 ? 1 : 0))
			main_hint_pocl_cache();
		goto out_config;
	}
	if (m.cfg.clear_cache) {
		status = kcache_clear(m.cfg.cache_dir) < 0 ? 1 : 0;
		goto out_config;
	}
	/* A client that vanishes mid-write must cost an EPIPE, not the daemon. */
	signal(SIGPIPE, SIG_IGN);
	/* Until the SIGHUP handler is there (after warm-up), a reload must not kill us. */
	signal(SIGHUP, SIG_IGN);
	times.start = now_ns();
	log_msg(LOG_INFO, "rxgemmd %s starting (protocol %d)", PACKAGE_VERSION,
		RXGEMM_PROTOCOL_VERSION);
	m.argc = argc;
	m.argv = argv;
	if (sdnotify_init() < 0)
		goto out_config;
	/* Mistakes in where to listen show in a second, not after every kernel is built
	 * (--tune listens nowhere). */
	if (!m.cfg.tune && !sdnotify_listen_passed() && server_check_path(m.cfg.socket_path) < 0)
		goto out_config;
	sdnotify_send("STATUS=opening the OpenCL device");
	/* The kernel cache needs no device, and the device builds through it. */
	if ((ret = kcache_create(&m.kcache, m.cfg.cache_dir, m.cfg.cache_max_bytes)) < 0) {
		log_msg(LOG_ERR, "cannot set up the kernel cache: %s", strerror(-ret));
		goto out_config;
	}
	cache_dir = kcache_dir(m.kcache);
	if (device_open(&m.dev, m.cfg.device, m.kcache) < 0) {
		main_hint_pocl_cache();
		goto out_kcache;
	}
	times.device = now_ns();
	/* The budget exists before the first buffer: the kernels' self-tests and the tuner
	 * take theirs from it like any job (and leave them in its pool for the jobs). */
	m.budget = budget_create(budget_resolve(m.cfg.vram_budget_bytes, m.cfg.vram_budget_percent,
						m.dev.global_mem_bytes),
				 m.cfg.client_quota_bytes, budget_cl_alloc, budget_cl_free, &m.dev);
	if (!m.budget)
		fatal("out of memory for the device-memory budget");
	log_msg(LOG_INFO, "device-memory budget %.1f MiB of %.1f MiB, client quota %.1f MiB",
		(double)budget_limit(m.budget) / 1048576.0, (double)m.dev.global_mem_bytes / 1048576.0,
		(double)m.cfg.client_quota_bytes / 1048576.0);
	sdnotify_send("STATUS=building and self-testing the kernels on %s", m.dev.description);
	if (gemm_init(&m.engine, &m.dev, m.budget) < 0)
		goto out_budget;
	times.gemm = now_ns();
	if (!m.cfg.tune) {
		/* NAS evaluation is an extra: a device that cannot run its kernels still
		 * serves GEMMs, and NAS requests get STATUS_UNSUPPORTED. */
		if (nasops_init(&m.nasops, &m.dev, &m.engine) == 0)
			m.have_nasops = true;
		else
			log_msg(LOG_WARNING, "the NAS kernels failed on this device: NAS evaluation "
					     "is off");
		/* Search jobs need both, and convolve through the GEMM engine as the
		 * evaluation does. */
		if (m.have_nasops && nasgrad_init(&m.nasgrad, &m.dev, &m.engine) == 0) {
			m.have_nasgrad = true;
			searchjob_init(&m.nasgrad);
		} else if (m.have_nasops) {
			log_msg(LOG_WARNING, "the search's backward kernels failed on this device: "
					     "search jobs are off");
		}
	}
	times.nas = now_ns();
	kcache_log_summary(m.kcache);
	if (m.cfg.tune) {
		/* A maintenance run: search, store beside the kernel cache, and leave; the
		 * next start (or a restart of the service) picks the result up. */
		ret = tune_run(&m.engine, m.cfg.tune_budget_s, isatty(STDERR_FILENO));
		if (ret == 0 && (ret = tune_save(&m.engine, cache_dir)) < 0)
			log_msg(LOG_ERR, "cannot store the tuning in %s: %s",
				cache_dir ? cache_dir : "(no cache directory)", strerror(-ret));
		status = ret < 0 ? 1 : 0;
		goto out_engine;
	}
	if (tune_load(&m.engine, cache_dir) < 0) {
		bool gpu = strcmp(m.dev.desc->type, "GPU") == 0;

		/* The first start on a device and driver: search, within a bound, before
		 * saying ready, so that no client waits on the search later. CPUs are skipped
		 * by default: the built-in defaults come from tuning runs on PoCL. */
		if (cache_dir && (m.cfg.auto_tune == RXD_AUTO_TUNE_ALWAYS ||
				     (m.cfg.auto_tune == RXD_AUTO_TUNE_GPU && gpu))) {
			sdnotify_send("STATUS=tuning the kernels (first start on this device)");
			if (tune_run(&m.engine, m.cfg.auto_tune_budget_s, false) == 0 &&
			    (ret = tune_save(&m.engine, cache_dir)) < 0)
				log_msg(LOG_WARNING, "cannot store the tuning in %s: %s", cache_dir,
					strerror(-ret));
		} else {
			log_msg(LOG_INFO, "no tuning stored for this device and driver: using the "
					  "defaults (rxgemmd --tune searches)");
		}
	}
	times.tuning = now_ns();
	if (nascache_init(&m.nascache, m.cfg.nas_plan_cache) < 0)
		fatal("out of memory for the NAS plan cache");
	loop = uv_default_loop();
	winit = (struct rxd_worker_init){
		.engine = &m.engine,
		.nasops = m.have_nasops ? &m.nasops : NULL,
		.zero_copy = m.cfg.zero_copy,
		/* auto: not on a CPU device, whose cores run the kernels themselves. */
		.busy_poll_ns = m.cfg.busy_poll_ns != RXD_BUSY_POLL_AUTO ? m.cfg.busy_poll_ns
				: m.dev.host_unified ? 0 : RXD_DEFAULT_BUSY_POLL_US * 1000ull,
		.done = wire_job_done,
		.done_arg = &m.server,
		.on_lost = main_on_device_lost,
		.on_lost_arg = &m,
	};
	if ((ret = worker_start(&m.worker, loop, &winit)) < 0) {
		log_msg(LOG_ERR, "cannot start the device worker: %s", strerror(-ret));
		goto out_engine;
	}
	worker_set_limits(m.worker, m.cfg.max_queue, m.cfg.client_max_queue);
	if (winit.busy_poll_ns)
		log_msg(LOG_INFO, "busy polling for %.0f us after each request and reply",
			(double)winit.busy_poll_ns / 1e3);
	shm_set_limits(m.cfg.client_shm_regions, m.cfg.client_shm_bytes);
	if (server_start(&m.server, loop, &m.cfg, &m.dev, m.worker, &m.nascache,
			 &wire_conn_ops) < 0) {
		worker_stop(m.worker);
		uv_run(loop, UV_RUN_DEFAULT);
		goto out_loop;
	}
	hostbuf_attach(loop);
	uv_signal_init(loop, &m.sigterm);
	uv_signal_init(loop, &m.sigint);
	uv_signal_init(loop, &m.sighup);
	m.sigterm.data = m.sigint.data = m.sighup.data = &m;
	uv_signal_start(&m.sigterm, main_on_signal, SIGTERM);
	uv_signal_start(&m.sigint, main_on_signal, SIGINT);
	uv_signal_start(&m.sighup, main_on_sighup, SIGHUP);
	log_msg(LOG_NOTICE, "ready: serving %s on %s", m.dev.description,
		m.server.adopted ? "the socket passed by the service manager" : m.cfg.socket_path);
	main_log_startup(&times, m.kcache);
	sdnotify_ready(&m.notify, loop, &m.cfg, &m.server, m.worker);

	uv_run(loop, UV_RUN_DEFAULT);
	status = m.exit_status;
	log_msg(LOG_NOTICE, "stopped after %llu jobs (%llu failed, %llu requests rejected)",
		(unsigned long long)m.server.stats.jobs_ok + m.server.stats.jobs_failed,
		(unsigned long long)m.server.stats.jobs_failed,
		(unsigned long long)m.server.stats.requests_rejected);
out_loop:
	if (uv_loop_close(loop) != 0)
		log_msg(LOG_WARNING, "handles left open at exit");
	worker_free(m.worker);
out_engine:
	nascache_fini(&m.nascache);
	searchjob_fini();
	if (m.have_nasgrad)
		nasgrad_fini(&m.nasgrad);
	if (m.have_nasops)
		nasops_fini(&m.nasops);
	gemm_fini(&m.engine);
out_budget:
	budget_destroy(m.budget);
	device_close(&m.dev);
out_kcache:
	kcache_destroy(m.kcache);
out_config:
	sdnotify_fini();
	config_fini(&m.cfg);
	return status;
}

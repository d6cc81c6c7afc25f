/* wire-status.c: the StatusReply, built from the counters of stats.c, budget.c, kcache.c,
 * sched.c and shm.c (loop thread). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* Long but flat: one assignment per field of the reply, in the schema's order, and one
 * loop per repeated field; splitting it would only scatter the fields. */
int wire_status_fill(const struct rxd_stats *st, const struct rxd_device *dev,
		     const struct rxd_gemm_engine *eng, struct rxd_nas_cache *nc,
		     Rxgemm__StatusReply *out)
{
	Rxgemm__DeviceInfo *infos = NULL;
	Rxgemm__KernelChoice *choices = NULL;
	Rxgemm__JobRecord *records;
	Rxgemm__Timings *times;

	rxgemm__status_reply__init(out);
	out->daemon_version = (char *)PACKAGE_VERSION;
	out->device = (char *)dev->description;
	out->uptime_ns = now_ns() - st->started_ns;
	out->clients_connected = st->clients_connected;
	out->clients_total = st->clients_total;
	out->jobs_ok = st->jobs_ok;
	out->jobs_failed = st->jobs_failed;
	out->requests_rejected = st->requests_rejected;
	out->jobs_queued = st->jobs_queued;
	out->flops_total = st->flops_total;
	out->kernel_ns_total = st->kernel_ns_total;
	out->device_global_mem_bytes = dev->global_mem_bytes;
	out->device_max_alloc_bytes = dev->max_alloc_bytes;
	if (eng->budget) {
		struct rxd_budget_stats bs;

		budget_stats(eng->budget, &bs);
		out->vram_budget_bytes = bs.budget_bytes;
		out->vram_reserved_bytes = bs.reserved_bytes;
		out->vram_in_use_bytes = bs.in_use_bytes;
		out->vram_peak_bytes = bs.peak_bytes;
		out->vram_pool_bytes = bs.pool_bytes;
		out->vram_pool_buffers = bs.pool_buffers;
		out->vram_client_quota_bytes = bs.quota_bytes;
		out->jobs_split = bs.split_jobs;
	}
	if (dev->kcache) {
		struct rxd_kcache_stats kc;

		kcache_stats(dev->kcache, &kc);
		out->kernel_cache_dir = (char *)kc.dir;
		out->kernel_cache_writable = kc.writable;
		out->kernel_cache_max_bytes = kc.max_bytes;
		out->kernel_cache_entries = kc.entries;
		out->kernel_cache_bytes = kc.bytes;
		out->kernel_cache_hits = kc.hits;
		out->kernel_cache_misses = kc.misses;
		out->kernel_cache_memory_hits = kc.memory_hits;
		out->kernel_cache_rejected = kc.rejected;
		out->kernel_cache_evictions = kc.evictions;
		out->kernel_cache_compile_ns = kc.compile_ns;
		out->kernel_cache_load_ns = kc.load_ns;
	}
	{
		struct rxd_nas_cache_stats pc;

		nascache_stats(nc, &pc);
		out->nas_plan_cache_capacity = pc.capacity;
		out->nas_plan_cache_entries = pc.entries;
		out->nas_plan_cache_hits = pc.hits;
		out->nas_plan_cache_misses = pc.misses;
		out->nas_plan_cache_evictions = pc.evictions;
		out->nas_plan_cache_bytes = pc.bytes;
	}

	/* The recent jobs: the pointer array, then the records and their timings, in one
	 * block (wire_status_free frees it as the array). */
	out->recent = calloc(RXD_RECENT_JOBS, sizeof(*out->recent) + sizeof(Rxgemm__JobRecord) +
						       sizeof(Rxgemm__Timings));
	out->devices = calloc(dev->n_all ? dev->n_all : 1, sizeof(*out->devices));
	infos = calloc(dev->n_all ? dev->n_all : 1, sizeof(*infos));
	out->kernels = calloc(4 * RXD_GEMM_CLASSES, sizeof(*out->kernels));
	choices = calloc(4 * RXD_GEMM_CLASSES, sizeof(*choices));
	if (!out->recent || !out->devices || !infos || !out->kernels || !choices) {
		free(infos);
		free(choices);
		wire_status_free(out);
		return -ENOMEM;
	}
	/* Read-only here: the choices are set at start-up, before the worker runs. */
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++)
			for (int cls = 0; cls < RXD_GEMM_CLASSES; cls++) {
				Rxgemm__KernelChoice *k = &choices[out->n_kernels];

				rxgemm__kernel_choice__init(k);
				k->trans_a = ta;
				k->trans_b = tb;
				k->size_class = (uint32_t)cls;
				k->kernel = (char *)gemm_variant_name(eng,
								      eng->choice[ta][tb][cls]);
				k->gflops = eng->tuned_gflops[ta][tb][cls];
				k->tuned = eng->tuned && k->gflops > 0;
				out->kernels[out->n_kernels++] = k;
			}
	records = (Rxgemm__JobRecord *)(out->recent + RXD_RECENT_JOBS);
	times = (Rxgemm__Timings *)(records + RXD_RECENT_JOBS);
	for (size_t i = 0; i < st->recent_count; i++) {
		const struct rxd_job_record *j = stats_recent(st, i); /* oldest first */
		Rxgemm__JobRecord *r = &records[i];
		Rxgemm__Timings *t = &times[i];

		rxgemm__job_record__init(r);
		rxgemm__timings__init(t);
		r->request_id = j->request_id;
		r->client_id = j->client_id;
		r->m = j->m;
		r->n = j->n;
		r->k = j->k;
		r->status = wire_status_code(j->status);
		t->queued_ns = j->t.queued_ns;
		t->h2d_ns = j->t.h2d_ns;
		t->kernel_ns = j->t.kernel_ns;
		t->d2h_ns = j->t.d2h_ns;
		t->total_ns = j->t.total_ns;
		r->timings = t;
		out->recent[out->n_recent++] = r;
	}
	for (size_t i = 0; i < dev->n_all; i++) {
		const struct rxd_device_desc *d = &dev->all[i];
		Rxgemm__DeviceInfo *di = &infos[i];

		rxgemm__device_info__init(di);
		di->index = d->index;
		di->platform = (char *)d->platform_name;
		di->name = (char *)d->name;
		di->type = (char *)d->type;
		di->version = (char *)d->version;
		di->driver = (char *)d->driver;
		di->global_mem_bytes = d->global_mem_bytes;
		di->compute_units = d->compute_units;
		di->clock_mhz = d->clock_mhz;
		di->in_use = d == dev->desc;
		out->devices[out->n_devices++] = di;
	}
	return 0;
}

static void wire_client_stats(const struct rxd_client_stats *cs, Rxgemm__ClientStats *w,
			      Rxgemm__Timings *t)
{
	rxgemm__client_stats__init(w);
	rxgemm__timings__init(t);
	w->uid = w->pid = -1;
	w->jobs_ok = cs->jobs_ok;
	w->jobs_failed = cs->jobs_failed;
	w->requests_rejected = cs->requests_rejected;
	w->flops = cs->flops;
	w->bytes_in = cs->bytes_in;
	w->bytes_out = cs->bytes_out;
	t->queued_ns = cs->queued_ns;
	t->h2d_ns = cs->h2d_ns;
	t->kernel_ns = cs->kernel_ns;
	t->d2h_ns = cs->d2h_ns;
	t->total_ns = cs->total_ns;
	w->timings = t;
}

/* Memory: one array of n_clients + 1 ClientStats (the departed total last), one of
 * Timings for all of them and the variants (the first ClientStats' timings points at it),
 * and the VariantStats array (kernel_stats[0]), besides the two pointer arrays. */
int wire_status_sharing(const struct rxd_server *srv, Rxgemm__StatusReply *out)
{
	const struct rxd_stats *st = &srv->stats;
	/* The same instant as uptime_ns, so that busy / uptime and the window stay in step. */
	uint64_t now = st->started_ns + out->uptime_ns, running_ns, cur, lo, window_from;
	size_t n = 0, nv = st->n_variants, i;
	Rxgemm__ClientStats *cs;
	Rxgemm__VariantStats *vs = NULL;
	Rxgemm__Timings *ts;
	const struct rxd_conn *c;

	for (c = srv->conns; c; c = c->next)
		n++;
	cs = calloc(n + 1, sizeof(*cs));
	ts = calloc(n + 1 + nv, sizeof(*ts));
	out->clients = calloc(n ? n : 1, sizeof(*out->clients));
	if (nv) {
		vs = calloc(nv, sizeof(*vs));
		out->kernel_stats = calloc(nv, sizeof(*out->kernel_stats));
	}
	if (!cs || !ts || !out->clients || (nv && (!vs || !out->kernel_stats))) {
		free(cs);
		free(ts);
		free(vs);
		free(out->clients);
		free(out->kernel_stats);
		out->clients = NULL;
		out->kernel_stats = NULL;
		return -ENOMEM;
	}
	/* The list is newest first: fill from the back to list the oldest first. */
	i = n;
	for (c = srv->conns; c; c = c->next) {
		Rxgemm__ClientStats *w = &cs[--i];

		wire_client_stats(&c->stats, w, &ts[i]);
		w->client_id = c->id;
		w->name = (char *)c->name;
		w->uid = c->peer_uid;
		w->pid = c->peer_pid;
		w->jobs_in_flight = c->jobs_in_flight;
		w->tensors = c->tensors.count;
		w->tensor_bytes = c->tensors.bytes;
		out->clients[i] = w;
	}
	out->n_clients = n;
	wire_client_stats(&st->departed, &cs[n], &ts[n]);
	cs[n].name = (char *)"";
	out->departed_clients = &cs[n];
	for (i = 0; i < nv; i++) {
		const struct rxd_variant_stats *v = &st->variants[i];
		Rxgemm__Timings *t = &ts[n + 1 + i];

		rxgemm__variant_stats__init(&vs[i]);
		rxgemm__timings__init(t);
		vs[i].kernel = (char *)v->kernel;
		vs[i].jobs = v->jobs;
		vs[i].flops = v->flops;
		t->queued_ns = v->queued_ns;
		t->h2d_ns = v->h2d_ns;
		t->kernel_ns = v->kernel_ns;
		t->d2h_ns = v->d2h_ns;
		t->total_ns = v->total_ns;
		vs[i].timings = t;
		out->kernel_stats[i] = &vs[i];
	}
	out->n_kernel_stats = nv;

	/* The job on the device now counts up to now; it is added to the buckets when it is
	 * done (the worker clears busy_since first, so it is never counted twice). */
	running_ns = srv->worker ? worker_busy_ns(srv->worker) : 0;
	if (running_ns > now - st->started_ns)
		running_ns = now - st->started_ns;
	out->device_current_job_ns = running_ns;
	out->device_busy_ns = st->busy_ns + running_ns;
	cur = (now - st->started_ns) / RXD_BUSY_BUCKET_NS;
	lo = cur > RXD_BUSY_RECENT_BUCKETS ? cur - RXD_BUSY_RECENT_BUCKETS : 0;
	window_from = st->started_ns + lo * RXD_BUSY_BUCKET_NS;
	out->device_recent_window_ns = now - window_from;
	for (uint64_t b = lo; b <= cur; b++) {
		size_t slot = b % RXD_BUSY_BUCKETS;

		if (st->busy_bucket_index[slot] == b)
			out->device_recent_busy_ns += st->busy_bucket_ns[slot];
	}
	out->device_recent_busy_ns += running_ns < now - window_from ? running_ns
								      : now - window_from;
	/* A job that ended a moment ago may round past the window's edge. */
	if (out->device_recent_busy_ns > out->device_recent_window_ns)
		out->device_recent_busy_ns = out->device_recent_window_ns;
	if (out->device_busy_ns > now - st->started_ns)
		out->device_busy_ns = now - st->started_ns;
	return 0;
}

int wire_status_restrict(const struct rxd_server *srv, const struct rxd_conn *viewer,
			 Rxgemm__StatusReply *out)
{
	const struct rxd_stats *st = &srv->stats;

	if (srv->cfg->status_detail_all || viewer->peer_uid == 0)
		return 0;
	/* Another user's names, pids and job shapes tell what they run; counts do not. */
	for (size_t i = 0; i < out->n_clients; i++) {
		Rxgemm__ClientStats *w = out->clients[i];

		if (w->uid != viewer->peer_uid || viewer->peer_uid < 0) {
			w->name = (char *)"";
			w->uid = -1;
			w->pid = -1;
		}
	}
	/* The records are wire_status_fill's copies of the ring, in its order. */
	for (size_t i = 0; i < out->n_recent && i < st->recent_count; i++) {
		if (stats_recent(st, i)->uid == viewer->peer_uid)
			continue;
		out->recent[i]->m = out->recent[i]->n = out->recent[i]->k = 0;
	}
	return 0;
}

void wire_status_free(Rxgemm__StatusReply *out)
{
	if (out->departed_clients) {
		Rxgemm__ClientStats *cs = out->departed_clients - out->n_clients;

		free(cs[0].timings); /* the Timings array */
		free(cs);
		if (out->n_kernel_stats)
			free(out->kernel_stats[0]);
	}
	free(out->clients);
	free(out->kernel_stats);
	out->clients = NULL;
	out->kernel_stats = NULL;
	out->departed_clients = NULL;
	out->n_clients = out->n_kernel_stats = 0;
	if (out->devices && out->n_devices)
		free(out->devices[0]); /* the infos array, allocated as one */
	free(out->devices);
	free(out->recent);
	if (out->kernels && out->n_kernels)
		free(out->kernels[0]); /* the choices array, allocated as one */
	free(out->kernels);
	out->kernels = NULL;
	out->n_kernels = 0;
	out->devices = NULL;
	out->recent = NULL;
	out->n_devices = out->n_recent = 0;
}

/* The scheduler's figures (fields 38-44). */
static void wire_queue_status(struct rxd_server *srv, Rxgemm__StatusReply *st)
{
	struct rxd_sched_stats q;

	worker_queue_stats(srv->worker, &q);
	st->max_queue = q.max_queue;
	st->client_max_queue = q.client_max_queue;
	st->jobs_waiting = q.queued;
	st->clients_waiting = q.clients;
	/* Parked in the scheduler until device tensors give room back (admit.c). */
	st->jobs_waiting_for_memory = q.parked;
	st->jobs_rejected_busy = q.rejected_total + q.rejected_client;
	st->jobs_expired = q.expired;
	st->jobs_cancelled = q.cancelled;
}

int wire_status_build(struct rxd_conn *c, Rxgemm__StatusReply *st)
{
	struct rxd_shm_stats shm;
	struct hostbuf_stats hb;
	int ret = wire_status_fill(&c->srv->stats, c->srv->dev, worker_engine(c->srv->worker),
				   c->srv->nascache, st);

	if (ret == 0 && ((ret = wire_status_sharing(c->srv, st)) < 0 ||
			 (ret = wire_status_restrict(c->srv, c, st)) < 0))
		wire_status_free(st);
	if (ret < 0)
		return ret;
	shm_stats(&shm);
	st->shm_regions = shm.regions;
	st->shm_region_bytes = shm.bytes;
	st->shm_regions_registered = shm.registered;
	st->shm_jobs = shm.jobs;
	st->shm_jobs_in_place = shm.jobs_in_place;
	hostbuf_stats(&hb);
	st->host_buffers_kept = hb.kept;
	st->host_buffer_kept_bytes = hb.kept_bytes;
	st->host_buffers_pinned = hb.pinned;
	st->host_buffer_pinned_bytes = hb.pinned_bytes;
	st->host_buffer_hits = hb.hits;
	st->host_buffer_misses = hb.misses;
	st->host_buffer_pins_made = hb.pins_made;
	wire_queue_status(c->srv, st);
	return 0;
}

/* stats.c: the counters behind `rxgemm status` (loop thread only, so no locks). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rxgemmd.h"

void stats_init(struct rxd_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->started_ns = now_ns();
}

/* Add [start_ns, end_ns) of device worker time to the total and to the buckets it spans
 * (the last RXD_BUSY_BUCKETS of them; older ones are never read again). */
static void stats_add_busy(struct rxd_stats *st, uint64_t start_ns, uint64_t end_ns)
{
	uint64_t first, last;

	if (start_ns < st->started_ns)
		start_ns = st->started_ns;
	if (end_ns <= start_ns)
		return;
	st->busy_ns += end_ns - start_ns;
	first = (start_ns - st->started_ns) / RXD_BUSY_BUCKET_NS;
	last = (end_ns - st->started_ns) / RXD_BUSY_BUCKET_NS;
	if (last - first >= RXD_BUSY_BUCKETS)
		first = last - (RXD_BUSY_BUCKETS - 1);
	for (uint64_t i = first; i <= last; i++) {
		uint64_t from = st->started_ns + i * RXD_BUSY_BUCKET_NS;
		uint64_t to = from + RXD_BUSY_BUCKET_NS;
		size_t slot = i % RXD_BUSY_BUCKETS;

		if (from < start_ns)
			from = start_ns;
		if (to > end_ns)
			to = end_ns;
		if (st->busy_bucket_index[slot] != i) {
			st->busy_bucket_index[slot] = i;
			st->busy_bucket_ns[slot] = 0;
		}
		if (to > from)
			st->busy_bucket_ns[slot] += to - from;
	}
}

void stats_job_busy(struct rxd_stats *st, const struct rxd_job *job)
{
	stats_add_busy(st, job->started_ns, job->finished_ns);
}

/* The entry for kernel, made on first use; past RXD_STATS_VARIANTS the last one counts
 * every further variant under "other". */
static struct rxd_variant_stats *stats_variant(struct rxd_stats *st, const char *kernel)
{
	struct rxd_variant_stats *v;

	for (size_t i = 0; i < st->n_variants; i++)
		if (strcmp(st->variants[i].kernel, kernel) == 0)
			return &st->variants[i];
	if (st->n_variants == RXD_STATS_VARIANTS) {
		v = &st->variants[RXD_STATS_VARIANTS - 1];
		snprintf(v->kernel, sizeof(v->kernel), "other");
		return v;
	}
	v = &st->variants[st->n_variants++];
	snprintf(v->kernel, sizeof(v->kernel), "%s", kernel);
	return v;
}

void stats_job_done(struct rxd_stats *st, const struct rxd_job *job, struct rxd_conn *c,
		    const Rxgemm__Timings *t)
{
	size_t slot = st->recent_next;
	Rxgemm__JobRecord *r = &st->recent[slot];

	st->recent_uid[slot] = c->peer_uid;
	struct rxd_client_stats *cs = &c->stats;
	const Rxgemm__GemmRequest *rq =
		job->req && job->req->body_case == RXGEMM__REQUEST__BODY_GEMM ? job->req->gemm : NULL;

	if (rq)
		cs->bytes_in += rq->a.len + rq->b.len + rq->c.len;
	if (job->err.status == RXD_S_OK) {
		st->jobs_ok++;
		st->flops_total += job->g.flops;
		st->kernel_ns_total += t->kernel_ns;
		cs->jobs_ok++;
		cs->flops += job->g.flops;
		cs->queued_ns += t->queued_ns;
		cs->h2d_ns += t->h2d_ns;
		cs->kernel_ns += t->kernel_ns;
		cs->d2h_ns += t->d2h_ns;
		cs->total_ns += t->total_ns;
		if (!job->tensors[3]) /* a result kept in a device tensor goes nowhere */
			cs->bytes_out += job->g.c_elems * sizeof(float);
		if (job->kernel) {
			struct rxd_variant_stats *v = stats_variant(st, job->kernel);

			v->jobs++;
			v->flops += job->g.flops;
			v->queued_ns += t->queued_ns;
			v->h2d_ns += t->h2d_ns;
			v->kernel_ns += t->kernel_ns;
			v->d2h_ns += t->d2h_ns;
			v->total_ns += t->total_ns;
		}
	} else {
		st->jobs_failed++;
		cs->jobs_failed++;
	}
	rxgemm__job_record__init(r);
	st->recent_t[slot] = *t;
	r->request_id = job->request_id;
	r->client_id = c->id;
	r->m = job->g.user_m;
	r->n = job->g.user_n;
	r->k = job->g.user_k;
	r->status = job->err.status;
	r->timings = &st->recent_t[slot];
	st->recent_next = (slot + 1) % RXD_RECENT_JOBS;
	if (st->recent_count < RXD_RECENT_JOBS)
		st->recent_count++;
}

void stats_client_closed(struct rxd_stats *st, const struct rxd_conn *c)
{
	const struct rxd_client_stats *cs = &c->stats;
	struct rxd_client_stats *d = &st->departed;

	st->clients_connected--;
	d->jobs_ok += cs->jobs_ok;
	d->jobs_failed += cs->jobs_failed;
	d->requests_rejected += cs->requests_rejected;
	d->flops += cs->flops;
	d->queued_ns += cs->queued_ns;
	d->h2d_ns += cs->h2d_ns;
	d->kernel_ns += cs->kernel_ns;
	d->d2h_ns += cs->d2h_ns;
	d->total_ns += cs->total_ns;
	d->bytes_in += cs->bytes_in;
	d->bytes_out += cs->bytes_out;
}

int stats_status(const struct rxd_stats *st, const struct rxd_device *dev,
		 const struct rxd_gemm_engine *eng, Rxgemm__StatusReply *out)
{
	Rxgemm__DeviceInfo *infos = NULL;
	Rxgemm__KernelChoice *choices = NULL;

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
		out->jobs_waiting_for_memory = (uint32_t)bs.waiting;
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

	out->recent = calloc(RXD_RECENT_JOBS, sizeof(*out->recent));
	out->devices = calloc(dev->n_all ? dev->n_all : 1, sizeof(*out->devices));
	infos = calloc(dev->n_all ? dev->n_all : 1, sizeof(*infos));
	out->kernels = calloc(4 * RXD_GEMM_CLASSES, sizeof(*out->kernels));
	choices = calloc(4 * RXD_GEMM_CLASSES, sizeof(*choices));
	if (!out->recent || !out->devices || !infos || !out->kernels || !choices) {
		free(infos);
		free(choices);
		stats_status_free(out);
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
				k->kernel = (char *)gemm_variant_name(eng, eng->choice[ta][tb][cls]);
				k->gflops = eng->tuned_gflops[ta][tb][cls];
				k->tuned = eng->tuned && k->gflops > 0;
				out->kernels[out->n_kernels++] = k;
			}
	/* Oldest first: the ring's next slot is the oldest once it has wrapped. */
	for (size_t i = 0; i < st->recent_count; i++) {
		size_t slot = (st->recent_next + RXD_RECENT_JOBS - st->recent_count + i) %
			      RXD_RECENT_JOBS;
		out->recent[out->n_recent++] = (Rxgemm__JobRecord *)&st->recent[slot];
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

static void stats_client_to_wire(const struct rxd_client_stats *cs, Rxgemm__ClientStats *w,
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
int stats_status_sharing(const struct rxd_server *srv, Rxgemm__StatusReply *out)
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

		stats_client_to_wire(&c->stats, w, &ts[i]);
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
	stats_client_to_wire(&st->departed, &cs[n], &ts[n]);
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

int stats_status_restrict(const struct rxd_server *srv, const struct rxd_conn *viewer,
			  Rxgemm__StatusReply *out)
{
	const struct rxd_stats *st = &srv->stats;
	Rxgemm__JobRecord **ptrs, *copies;

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
	if (!out->n_recent)
		return 0;
	/* The records point into the ring: hidden ones become copies, in one block with the
	 * pointer array, which stats_status_free frees as before. */
	ptrs = malloc(out->n_recent * (sizeof(*ptrs) + sizeof(*copies)));
	if (!ptrs)
		return -ENOMEM;
	copies = (Rxgemm__JobRecord *)(ptrs + out->n_recent);
	for (size_t i = 0; i < out->n_recent; i++) {
		size_t slot = (size_t)(out->recent[i] - st->recent);

		ptrs[i] = out->recent[i];
		if (slot < RXD_RECENT_JOBS && st->recent_uid[slot] == viewer->peer_uid)
			continue;
		copies[i] = *out->recent[i];
		copies[i].m = copies[i].n = copies[i].k = 0;
		ptrs[i] = &copies[i];
	}
	free(out->recent);
	out->recent = ptrs;
	return 0;
}

void stats_status_free(Rxgemm__StatusReply *out)
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

/* stats.c: the counters behind `rxgemm status` (loop thread only, so no locks). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rxgemmd.h"

void stats_init(struct rxd_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->started_ns = now_ns();
}

void stats_job_done(struct rxd_stats *st, const struct rxd_job *job, uint32_t client_id,
		    const Rxgemm__Timings *t)
{
	size_t slot = st->recent_next;
	Rxgemm__JobRecord *r = &st->recent[slot];

	if (job->status == RXGEMM__STATUS__STATUS_OK) {
		st->jobs_ok++;
		st->flops_total += job->g.flops;
		st->kernel_ns_total += t->kernel_ns;
	} else {
		st->jobs_failed++;
	}
	rxgemm__job_record__init(r);
	st->recent_t[slot] = *t;
	r->request_id = job->request_id;
	r->client_id = client_id;
	r->m = job->g.user_m;
	r->n = job->g.user_n;
	r->k = job->g.user_k;
	r->status = job->status;
	r->timings = &st->recent_t[slot];
	st->recent_next = (slot + 1) % RXD_RECENT_JOBS;
	if (st->recent_count < RXD_RECENT_JOBS)
		st->recent_count++;
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

void stats_status_free(Rxgemm__StatusReply *out)
{
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

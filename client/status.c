/* status.c: librxgemm's status request (rxg_status): the daemon's StatusReply deep-copied
 * into a struct rxg_status that the caller owns and frees with rxg_status_free. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport.h"

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
	rxg__timings_from_wire(&o->timings, w->timings);
	o->bytes_in = w->bytes_in;
	o->bytes_out = w->bytes_out;
	o->tensors = w->tensors;
	o->tensor_bytes = w->tensor_bytes;
	return (o->name = rxg__dup_string(w->name)) ? 0 : -1;
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
			rxg__timings_from_wire(&o->timings, v->timings);
			if (!(o->kernel = rxg__dup_string(v->kernel)))
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

/* Deep-copy the wire's StatusReply into a struct rxg_status the caller owns (*out).
 * Over 100 lines: one field after another of a large reply, each array copied with its
 * strings; the sharing figures are status_sharing_from_wire's. */
static int status_from_wire(struct rxg_client *c, const Rxgemm__StatusReply *w,
			    struct rxg_status **out)
{
	struct rxg_status *st;
	int rc = RXG_OK;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return rxg__fail(c, RXG_ENOMEM, "out of memory");
	st->daemon_version = rxg__dup_string(w->daemon_version);
	st->device = rxg__dup_string(w->device);
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
	if (!(st->kernel_cache_dir = rxg__dup_string(w->kernel_cache_dir)))
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
	st->nas_plan_cache_capacity = w->nas_plan_cache_capacity;
	st->nas_plan_cache_entries = w->nas_plan_cache_entries;
	st->nas_plan_cache_hits = w->nas_plan_cache_hits;
	st->nas_plan_cache_misses = w->nas_plan_cache_misses;
	st->nas_plan_cache_evictions = w->nas_plan_cache_evictions;
	st->nas_plan_cache_bytes = w->nas_plan_cache_bytes;
	st->host_buffers_kept = w->host_buffers_kept;
	st->host_buffer_kept_bytes = w->host_buffer_kept_bytes;
	st->host_buffers_pinned = w->host_buffers_pinned;
	st->host_buffer_pinned_bytes = w->host_buffer_pinned_bytes;
	st->host_buffer_hits = w->host_buffer_hits;
	st->host_buffer_misses = w->host_buffer_misses;
	st->host_buffer_pins_made = w->host_buffer_pins_made;
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
			if (!(o->kernel = rxg__dup_string(k->kernel)))
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
			rxg__timings_from_wire(&r->timings, j->timings);
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
			d->platform = rxg__dup_string(wd->platform);
			d->name = rxg__dup_string(wd->name);
			d->type = rxg__dup_string(wd->type);
			d->version = rxg__dup_string(wd->version);
			d->driver = rxg__dup_string(wd->driver);
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
	rc = rxg__fail(c, RXG_ENOMEM, "out of memory copying the daemon's status");
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
		return rxg__fail(c, RXG_EINVAL, "rxg_status: out is NULL");
	req.body_case = RXGEMM__REQUEST__BODY_STATUS;
	req.status = &msg;
	rc = rxg__call(c, &req, RXG__STATUS_REPLY_MAX_BYTES, RXGEMM__REPLY__BODY_STATUS_REPLY, &p);
	if (rc != RXG_OK)
		return rc;
	rc = status_from_wire(c, p->reply->status_reply, out);
	rxg__pending_free(p);
	return rc;
}

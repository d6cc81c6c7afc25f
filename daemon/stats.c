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
		 Rxgemm__StatusReply *out)
{
	Rxgemm__DeviceInfo *infos = NULL;

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

	out->recent = calloc(RXD_RECENT_JOBS, sizeof(*out->recent));
	out->devices = calloc(dev->n_all ? dev->n_all : 1, sizeof(*out->devices));
	infos = calloc(dev->n_all ? dev->n_all : 1, sizeof(*infos));
	if (!out->recent || !out->devices || !infos) {
		free(infos);
		stats_status_free(out);
		return -ENOMEM;
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
	out->devices = NULL;
	out->recent = NULL;
	out->n_devices = out->n_recent = 0;
}

/* stats.c: the counters behind `rxgemm status` (loop thread only, so no locks). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

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
		    const struct rxd_job_times *t)
{
	size_t slot = st->recent_next;
	struct rxd_job_record *r = &st->recent[slot];
	struct rxd_client_stats *cs = &c->stats;

	cs->bytes_in += job->bytes_in;
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
		/* What the reply carried: a result kept in a device tensor goes nowhere, one
		 * written into the client's region crosses no socket. */
		if (!job->tensors[3] && !job->c_dest)
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
	r->request_id = job->request_id;
	r->client_id = c->id;
	r->m = job->g.user_m;
	r->n = job->g.user_n;
	r->k = job->g.user_k;
	r->status = job->err.status;
	r->uid = c->peer_uid;
	r->t = *t;
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

const struct rxd_job_record *stats_recent(const struct rxd_stats *st, size_t i)
{
	/* Oldest first: the ring's next slot is the oldest once it has wrapped. */
	return &st->recent[(st->recent_next + RXD_RECENT_JOBS - st->recent_count + i) %
			   RXD_RECENT_JOBS];
}

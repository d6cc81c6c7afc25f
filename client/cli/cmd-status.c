/* cmd-status.c: rxgemm status: the daemon's status as text, JSON or Prometheus text
 * exposition (--prometheus). The JSON form is also rxgemm top --json's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "json.h"
#include "prom.h"
#include "cli.h"
#include "rxgemm.h"

static double job_gflops(const struct rxg_job_record *r)
{
	return gflops(2.0 * (double)r->m * (double)r->n * (double)r->k, (double)r->timings.kernel_ns);
}

/* Two lines on the daemon's kernel cache: what start-up cost and what is on disk. */
static void status_text_kernel_cache(const struct rxg_status *st)
{
	char bytes[32], max[32];

	printf("kernels:  %llu loaded from cache in %.0f ms, %llu compiled in %.0f ms, "
	       "%llu reused, %llu bad entries rebuilt\n",
	       (unsigned long long)st->kernel_cache_hits, ns_to_ms((double)st->kernel_cache_load_ns),
	       (unsigned long long)st->kernel_cache_misses,
	       ns_to_ms((double)st->kernel_cache_compile_ns),
	       (unsigned long long)st->kernel_cache_memory_hits,
	       (unsigned long long)st->kernel_cache_rejected);
	if (!*st->kernel_cache_dir) {
		printf("cache:    none on disk\n");
		return;
	}
	format_bytes(bytes, sizeof(bytes), st->kernel_cache_bytes);
	format_bytes(max, sizeof(max), st->kernel_cache_max_bytes);
	printf("cache:    %s%s, %llu entries, %s of %s, %llu evicted\n", st->kernel_cache_dir,
	       st->kernel_cache_writable ? "" : " (read-only)",
	       (unsigned long long)st->kernel_cache_entries, bytes, max,
	       (unsigned long long)st->kernel_cache_evictions);
}

/* One line on the NAS plan cache. */
static void status_text_nas_plans(const struct rxg_status *st)
{
	char bytes[32];

	format_bytes(bytes, sizeof(bytes), st->nas_plan_cache_bytes);
	printf("nas plans: %u of %u kept (%s), %llu hits, %llu misses, %llu evicted\n",
	       st->nas_plan_cache_entries, st->nas_plan_cache_capacity, bytes,
	       (unsigned long long)st->nas_plan_cache_hits,
	       (unsigned long long)st->nas_plan_cache_misses,
	       (unsigned long long)st->nas_plan_cache_evictions);
}

/* The device-memory budget: what is reserved, in buffers, pooled, and the peak. */
static void status_text_budget(const struct rxg_status *st)
{
	char budget[32], reserved[32], in_use[32], peak[32], pool[32], quota[32];

	format_bytes(budget, sizeof(budget), st->vram_budget_bytes);
	format_bytes(reserved, sizeof(reserved), st->vram_reserved_bytes);
	format_bytes(in_use, sizeof(in_use), st->vram_in_use_bytes);
	format_bytes(peak, sizeof(peak), st->vram_peak_bytes);
	format_bytes(pool, sizeof(pool), st->vram_pool_bytes);
	format_bytes(quota, sizeof(quota), st->vram_client_quota_bytes);
	printf("budget:   %s, %s reserved (%s in use), peak %s, pool %s in %llu buffers\n",
	       budget, reserved, in_use, peak, pool, (unsigned long long)st->vram_pool_buffers);
	printf("          %lu jobs waiting for memory, %llu run in pieces, client quota %s\n",
	       (unsigned long)st->jobs_waiting_for_memory, (unsigned long long)st->jobs_split,
	       st->vram_client_quota_bytes ? quota : "none");
}

static void status_text_client_row(struct table *t, const struct rxg_client_stats *c,
				   int departed)
{
	char in[32], out[32];

	table_client_id(t, c, departed);
	table_cell(t, "%lu", (unsigned long)c->jobs_in_flight);
	table_cell(t, "%llu", (unsigned long long)c->jobs_ok);
	table_cell(t, "%llu", (unsigned long long)c->jobs_failed);
	table_cell(t, "%llu", (unsigned long long)c->requests_rejected);
	table_cell(t, "%.3f", (double)c->flops / 1e9);
	table_number(t, 2, gflops((double)c->flops, (double)c->timings.kernel_ns));
	table_number(t, 3, avg_ms(c->timings.queued_ns, c->jobs_ok));
	table_number(t, 3, avg_ms(c->timings.total_ns, c->jobs_ok));
	format_bytes(in, sizeof(in), c->bytes_in);
	format_bytes(out, sizeof(out), c->bytes_out);
	table_cell(t, "%s", in);
	table_cell(t, "%s", out);
	/* Device tensors held now: the departed hold none. */
	if (departed || !c->tensors) {
		table_cell(t, "-");
	} else {
		format_bytes(in, sizeof(in), c->tensor_bytes);
		table_cell(t, "%lu, %s", (unsigned long)c->tensors, in);
	}
}

/* Device utilisation, the clients (connected, then the departed total) and the kernel
 * variants. */
static void status_text_sharing(const struct rxg_status *st)
{
	static const char *const chead[] = { "id", "name", "uid", "pid", "in flight", "jobs ok",
					     "failed", "rejected", "GFLOP", "GFLOPS",
					     "avg queued ms", "avg total ms", "in", "out",
					     "tensors" };
	static const char *const khead[] = { "kernel", "jobs", "GFLOP", "kernel s", "GFLOPS",
					     "avg h2d ms", "avg kernel ms", "avg d2h ms" };
	struct table t = { .ncols = 15, .align = "rlrrrrrrrrrrrrr" };

	printf("busy:     %.1f%% since start, %.1f%% over the last %.1f s",
	       100.0 * st->device_utilisation, 100.0 * st->device_utilisation_recent,
	       (double)st->device_recent_window_ns / 1e9);
	if (st->device_current_job_ns)
		printf(", a job running for %.3f s\n", (double)st->device_current_job_ns / 1e9);
	else
		printf(", idle now\n");
	printf("clients (GFLOPS over their kernel time; the departed row sums those that "
	       "left):\n");
	table_head(&t, chead);
	for (size_t i = 0; i < st->n_clients; i++)
		status_text_client_row(&t, &st->clients[i], 0);
	status_text_client_row(&t, &st->departed, 1);
	table_print(&t, stdout);
	table_free(&t);
	if (!st->n_kernel_stats) {
		printf("kernel variants: none has run a job yet\n");
		return;
	}
	printf("kernel variants:\n");
	struct table k = { .ncols = 8, .align = "lrrrrrrr" };
	table_head(&k, khead);
	for (size_t i = 0; i < st->n_kernel_stats; i++) {
		const struct rxg_kernel_stats *v = &st->kernel_stats[i];
		table_cell(&k, "%s", v->kernel);
		table_cell(&k, "%llu", (unsigned long long)v->jobs);
		table_cell(&k, "%.3f", (double)v->flops / 1e9);
		table_cell(&k, "%.3f", (double)v->timings.kernel_ns / 1e9);
		table_number(&k, 2, gflops((double)v->flops, (double)v->timings.kernel_ns));
		table_number(&k, 3, avg_ms(v->timings.h2d_ns, v->jobs));
		table_number(&k, 3, avg_ms(v->timings.kernel_ns, v->jobs));
		table_number(&k, 3, avg_ms(v->timings.d2h_ns, v->jobs));
	}
	table_print(&k, stdout);
	table_free(&k);
}

/* Shared-memory buffers of all clients. */
static void status_text_shm(const struct rxg_status *st)
{
	char bytes[32];

	format_bytes(bytes, sizeof(bytes), st->shm_region_bytes);
	printf("shm:      %lu buffers mapped (%s), %llu registered, %llu jobs used them (%llu in "
	       "place)\n",
	       (unsigned long)st->shm_regions, bytes,
	       (unsigned long long)st->shm_regions_registered, (unsigned long long)st->shm_jobs,
	       (unsigned long long)st->shm_jobs_in_place);
}

/* Host buffers the daemon keeps between jobs, and those pinned. */
static void status_text_host_buffers(const struct rxg_status *st)
{
	char kept[32], pinned[32];

	format_bytes(kept, sizeof(kept), st->host_buffer_kept_bytes);
	format_bytes(pinned, sizeof(pinned), st->host_buffer_pinned_bytes);
	printf("host:     %lu buffers kept (%s), %lu pinned (%s), %llu reused, %llu new, %llu "
	       "pins made\n",
	       (unsigned long)st->host_buffers_kept, kept, (unsigned long)st->host_buffers_pinned,
	       pinned, (unsigned long long)st->host_buffer_hits,
	       (unsigned long long)st->host_buffer_misses,
	       (unsigned long long)st->host_buffer_pins_made);
}

/* The scheduler's queue: what waits, its bounds, and what it turned away. */
static void status_text_queue(const struct rxg_status *st)
{
	char total[32], client[32];

	snprintf(total, sizeof(total), "%lu", (unsigned long)st->max_queue);
	snprintf(client, sizeof(client), "%lu", (unsigned long)st->client_max_queue);
	printf("queue:    %lu jobs waiting from %lu clients (bounds: %s in all, %s per client)\n",
	       (unsigned long)st->jobs_waiting, (unsigned long)st->clients_waiting,
	       st->max_queue ? total : "none", st->client_max_queue ? client : "none");
	printf("          %llu refused busy, %llu expired in the queue, %llu cancelled\n",
	       (unsigned long long)st->jobs_rejected_busy, (unsigned long long)st->jobs_expired,
	       (unsigned long long)st->jobs_cancelled);
}

static void status_text(const struct rxg_status *st)
{
	char up[64], mem[32], alloc[32];

	format_uptime(up, sizeof(up), st->uptime_ns);
	format_bytes(mem, sizeof(mem), st->device_global_mem_bytes);
	format_bytes(alloc, sizeof(alloc), st->device_max_alloc_bytes);
	printf("daemon:   rxgemmd %s\n", st->daemon_version);
	printf("device:   %s\n", st->device);
	printf("memory:   %s device memory, %s largest allocation\n", mem, alloc);
	printf("uptime:   %s\n", up);
	printf("clients:  %lu connected, %llu since start\n", (unsigned long)st->clients_connected,
	       (unsigned long long)st->clients_total);
	printf("jobs:     %llu ok, %llu failed, %llu rejected, %lu queued\n",
	       (unsigned long long)st->jobs_ok, (unsigned long long)st->jobs_failed,
	       (unsigned long long)st->requests_rejected, (unsigned long)st->jobs_queued);
	double avg = gflops((double)st->flops_total, (double)st->kernel_ns_total);
	printf("work:     %.3f GFLOP in %.3f s of kernels", (double)st->flops_total / 1e9,
	       (double)st->kernel_ns_total / 1e9);
	if (isnan(avg))
		printf("\n");
	else
		printf(", %.2f GFLOPS on average\n", avg);
	status_text_kernel_cache(st);
	status_text_nas_plans(st);
	status_text_budget(st);
	status_text_sharing(st);
	status_text_shm(st);
	status_text_host_buffers(st);
	status_text_queue(st);
	if (st->n_kernels) {
		printf("GEMM kernels (op(A) op(B) of the column-major problem, by size of C):\n");
		printf("  ops  class  %-40s  tuned GFLOPS\n", "kernel");
		for (size_t i = 0; i < st->n_kernels; i++) {
			const struct rxg_kernel_choice *k = &st->kernels[i];
			printf("  %c%c   %5u  %-40s  ", k->trans_a ? 'T' : 'N', k->trans_b ? 'T' : 'N',
			       k->size_class, k->kernel);
			if (k->tuned)
				printf("%12.1f\n", k->gflops);
			else
				printf("%12s\n", "default");
		}
	}

	if (!st->n_recent) {
		printf("recent jobs: none\n");
		return;
	}
	printf("recent jobs (oldest first):\n");
	struct table t = { .ncols = 12, .align = "rrrrrlrrrrrr" };
	static const char *const head[] = { "request", "client", "m", "n", "k", "status",
					    "queued ms", "h2d ms", "kernel ms", "d2h ms",
					    "total ms", "GFLOPS" };
	for (size_t i = 0; i < t.ncols; i++)
		table_cell(&t, "%s", head[i]);
	for (size_t i = 0; i < st->n_recent; i++) {
		const struct rxg_job_record *r = &st->recent[i];
		table_cell(&t, "%llu", (unsigned long long)r->request_id);
		table_cell(&t, "%lu", (unsigned long)r->client_id);
		table_cell(&t, "%lld", (long long)r->m);
		table_cell(&t, "%lld", (long long)r->n);
		table_cell(&t, "%lld", (long long)r->k);
		table_cell(&t, "%s", status_name(r->status));
		table_cell(&t, "%.3f", ns_to_ms((double)r->timings.queued_ns));
		table_cell(&t, "%.3f", ns_to_ms((double)r->timings.h2d_ns));
		table_cell(&t, "%.3f", ns_to_ms((double)r->timings.kernel_ns));
		table_cell(&t, "%.3f", ns_to_ms((double)r->timings.d2h_ns));
		table_cell(&t, "%.3f", ns_to_ms((double)r->timings.total_ns));
		double g = job_gflops(r);
		if (isnan(g) || r->status != RXG_OK)
			table_cell(&t, "-");
		else
			table_cell(&t, "%.2f", g);
	}
	table_print(&t, stdout);
	table_free(&t);
}

static void json_kernel_cache(struct json_writer *w, const struct rxg_status *st)
{
	json_begin_object(w);
	json_member_string(w, "dir", st->kernel_cache_dir);
	json_member_bool(w, "writable", st->kernel_cache_writable);
	json_member_uint(w, "max_bytes", st->kernel_cache_max_bytes);
	json_member_uint(w, "entries", st->kernel_cache_entries);
	json_member_uint(w, "bytes", st->kernel_cache_bytes);
	json_member_uint(w, "hits", st->kernel_cache_hits);
	json_member_uint(w, "misses", st->kernel_cache_misses);
	json_member_uint(w, "memory_hits", st->kernel_cache_memory_hits);
	json_member_uint(w, "rejected", st->kernel_cache_rejected);
	json_member_uint(w, "evictions", st->kernel_cache_evictions);
	json_member_uint(w, "compile_ns", st->kernel_cache_compile_ns);
	json_member_uint(w, "load_ns", st->kernel_cache_load_ns);
	json_end_object(w);
}

static void json_client_stats(struct json_writer *w, const struct rxg_client_stats *c)
{
	json_begin_object(w);
	json_member_uint(w, "client_id", c->client_id);
	json_member_string(w, "name", c->name);
	json_member_int(w, "uid", c->uid);
	json_member_int(w, "pid", c->pid);
	json_member_uint(w, "jobs_ok", c->jobs_ok);
	json_member_uint(w, "jobs_failed", c->jobs_failed);
	json_member_uint(w, "requests_rejected", c->requests_rejected);
	json_member_uint(w, "jobs_in_flight", c->jobs_in_flight);
	json_member_uint(w, "flops", c->flops);
	json_member_uint(w, "bytes_in", c->bytes_in);
	json_member_uint(w, "bytes_out", c->bytes_out);
	json_member_uint(w, "tensors", c->tensors);
	json_member_uint(w, "tensor_bytes", c->tensor_bytes);
	json_member_number(w, "gflops", gflops((double)c->flops, (double)c->timings.kernel_ns));
	json_key(w, "timings");
	json_timings(w, &c->timings);
	json_end_object(w);
}

static void json_sharing(struct json_writer *w, const struct rxg_status *st)
{
	json_key(w, "utilisation");
	json_begin_object(w);
	json_member_uint(w, "busy_ns", st->device_busy_ns);
	json_member_number(w, "since_start", st->device_utilisation);
	json_member_uint(w, "recent_busy_ns", st->device_recent_busy_ns);
	json_member_uint(w, "recent_window_ns", st->device_recent_window_ns);
	json_member_number(w, "recent", st->device_utilisation_recent);
	json_member_uint(w, "current_job_ns", st->device_current_job_ns);
	json_end_object(w);
	json_key(w, "clients");
	json_begin_array(w);
	for (size_t i = 0; i < st->n_clients; i++)
		json_client_stats(w, &st->clients[i]);
	json_end_array(w);
	json_key(w, "departed_clients");
	json_client_stats(w, &st->departed);
	json_key(w, "kernel_stats");
	json_begin_array(w);
	for (size_t i = 0; i < st->n_kernel_stats; i++) {
		const struct rxg_kernel_stats *v = &st->kernel_stats[i];

		json_begin_object(w);
		json_member_string(w, "kernel", v->kernel);
		json_member_uint(w, "jobs", v->jobs);
		json_member_uint(w, "flops", v->flops);
		json_member_number(w, "gflops", gflops((double)v->flops, (double)v->timings.kernel_ns));
		json_key(w, "timings");
		json_timings(w, &v->timings);
		json_end_object(w);
	}
	json_end_array(w);
}

/* status --json, also each line of top --json. */
void status_json(const struct rxg_status *st)
{
	struct json_writer w;

	json_init(&w, stdout);
	json_begin_object(&w);
	json_member_string(&w, "daemon_version", st->daemon_version);
	json_member_string(&w, "device", st->device);
	json_member_uint(&w, "uptime_ns", st->uptime_ns);
	json_member_uint(&w, "clients_connected", st->clients_connected);
	json_member_uint(&w, "clients_total", st->clients_total);
	json_member_uint(&w, "jobs_ok", st->jobs_ok);
	json_member_uint(&w, "jobs_failed", st->jobs_failed);
	json_member_uint(&w, "requests_rejected", st->requests_rejected);
	json_member_uint(&w, "jobs_queued", st->jobs_queued);
	json_member_uint(&w, "flops_total", st->flops_total);
	json_member_uint(&w, "kernel_ns_total", st->kernel_ns_total);
	json_member_number(&w, "average_gflops",
			   gflops((double)st->flops_total, (double)st->kernel_ns_total));
	json_member_uint(&w, "device_global_mem_bytes", st->device_global_mem_bytes);
	json_member_uint(&w, "device_max_alloc_bytes", st->device_max_alloc_bytes);
	json_key(&w, "recent");
	json_begin_array(&w);
	for (size_t i = 0; i < st->n_recent; i++) {
		const struct rxg_job_record *r = &st->recent[i];

		json_begin_object(&w);
		json_member_uint(&w, "request_id", r->request_id);
		json_member_uint(&w, "client_id", r->client_id);
		json_member_int(&w, "m", r->m);
		json_member_int(&w, "n", r->n);
		json_member_int(&w, "k", r->k);
		json_member_string(&w, "status", status_name(r->status));
		json_key(&w, "timings");
		json_timings(&w, &r->timings);
		json_member_number(&w, "gflops", r->status == RXG_OK ? job_gflops(r) : NAN);
		json_end_object(&w);
	}
	json_end_array(&w);
	json_key(&w, "devices");
	json_devices(&w, st);
	json_key(&w, "kernel_cache");
	json_kernel_cache(&w, st);
	json_key(&w, "nas_plan_cache");
	json_begin_object(&w);
	json_member_uint(&w, "capacity", st->nas_plan_cache_capacity);
	json_member_uint(&w, "entries", st->nas_plan_cache_entries);
	json_member_uint(&w, "hits", st->nas_plan_cache_hits);
	json_member_uint(&w, "misses", st->nas_plan_cache_misses);
	json_member_uint(&w, "evictions", st->nas_plan_cache_evictions);
	json_member_uint(&w, "bytes", st->nas_plan_cache_bytes);
	json_end_object(&w);
	json_key(&w, "memory");
	json_begin_object(&w);
	json_member_uint(&w, "budget_bytes", st->vram_budget_bytes);
	json_member_uint(&w, "reserved_bytes", st->vram_reserved_bytes);
	json_member_uint(&w, "in_use_bytes", st->vram_in_use_bytes);
	json_member_uint(&w, "peak_bytes", st->vram_peak_bytes);
	json_member_uint(&w, "pool_bytes", st->vram_pool_bytes);
	json_member_uint(&w, "pool_buffers", st->vram_pool_buffers);
	json_member_uint(&w, "jobs_waiting", st->jobs_waiting_for_memory);
	json_member_uint(&w, "client_quota_bytes", st->vram_client_quota_bytes);
	json_member_uint(&w, "jobs_split", st->jobs_split);
	json_end_object(&w);
	json_key(&w, "shm");
	json_begin_object(&w);
	json_member_uint(&w, "regions", st->shm_regions);
	json_member_uint(&w, "region_bytes", st->shm_region_bytes);
	json_member_uint(&w, "registered", st->shm_regions_registered);
	json_member_uint(&w, "jobs", st->shm_jobs);
	json_member_uint(&w, "jobs_in_place", st->shm_jobs_in_place);
	json_end_object(&w);
	json_key(&w, "host_buffers");
	json_begin_object(&w);
	json_member_uint(&w, "kept", st->host_buffers_kept);
	json_member_uint(&w, "kept_bytes", st->host_buffer_kept_bytes);
	json_member_uint(&w, "pinned", st->host_buffers_pinned);
	json_member_uint(&w, "pinned_bytes", st->host_buffer_pinned_bytes);
	json_member_uint(&w, "hits", st->host_buffer_hits);
	json_member_uint(&w, "misses", st->host_buffer_misses);
	json_member_uint(&w, "pins_made", st->host_buffer_pins_made);
	json_end_object(&w);
	json_key(&w, "queue");
	json_begin_object(&w);
	json_member_uint(&w, "max_queue", st->max_queue);
	json_member_uint(&w, "client_max_queue", st->client_max_queue);
	json_member_uint(&w, "jobs_waiting", st->jobs_waiting);
	json_member_uint(&w, "clients_waiting", st->clients_waiting);
	json_member_uint(&w, "rejected_busy", st->jobs_rejected_busy);
	json_member_uint(&w, "expired", st->jobs_expired);
	json_member_uint(&w, "cancelled", st->jobs_cancelled);
	json_end_object(&w);
	json_key(&w, "kernels");
	json_begin_array(&w);
	for (size_t i = 0; i < st->n_kernels; i++) {
		const struct rxg_kernel_choice *k = &st->kernels[i];

		json_begin_object(&w);
		json_member_bool(&w, "trans_a", k->trans_a);
		json_member_bool(&w, "trans_b", k->trans_b);
		json_member_uint(&w, "size_class", k->size_class);
		json_member_string(&w, "kernel", k->kernel);
		json_member_bool(&w, "tuned", k->tuned);
		json_member_number(&w, "gflops", k->gflops);
		json_end_object(&w);
	}
	json_end_array(&w);
	json_sharing(&w, st);
	json_end_object(&w);
	putchar('\n');
}

/* --- status --prometheus: the text exposition format ------------------------------------- */

/* One sample: name{labels} value, labels given as name/value pairs (n_labels pairs). */
static void prom_sample(FILE *f, const char *name, const char *const *labels, size_t n_labels,
			double v)
{
	fputs(name, f);
	for (size_t i = 0; i < n_labels; i++) {
		fprintf(f, "%s%s=", i ? "," : "{", labels[2 * i]);
		prom_label_value(f, labels[2 * i + 1]);
	}
	fputs(n_labels ? "} " : " ", f);
	prom_value(f, v);
	fputc('\n', f);
}

static void prom_single(FILE *f, const char *name, const char *type, const char *help, double v)
{
	prom_family(f, name, type, help);
	prom_sample(f, name, NULL, 0, v);
}

/* A per-client family: a sample for each connected client, labelled with its id, name,
 * uid and pid, and one for those that left (client="departed"). */
#define PROM_CLIENTS_(f, st, name_, type_, help_, expr)                                          \
	do {                                                                                  \
		prom_family(f, name_, type_, help_);                                             \
		for (size_t i_ = 0; i_ <= (st)->n_clients; i_++) {                            \
			const struct rxg_client_stats *c =                                    \
				i_ < (st)->n_clients ? &(st)->clients[i_] : &(st)->departed;  \
			char id_[16], uid_[24], pid_[24];                                     \
			snprintf(id_, sizeof(id_), "%lu", (unsigned long)c->client_id);       \
			snprintf(uid_, sizeof(uid_), "%lld", (long long)c->uid);              \
			snprintf(pid_, sizeof(pid_), "%lld", (long long)c->pid);              \
			const char *l_[] = { "client", i_ < (st)->n_clients ? id_ : "departed", \
					     "name", c->name, "uid", uid_, "pid", pid_ };     \
			prom_sample(f, name_, l_, i_ < (st)->n_clients ? 4 : 1, (double)(expr)); \
		}                                                                             \
	} while (0)

/* Per kernel variant, labelled kernel="...". */
#define PROM_KERNELS_(f, st, name_, type_, help_, expr)                                         \
	do {                                                                                  \
		prom_family(f, name_, type_, help_);                                             \
		for (size_t i_ = 0; i_ < (st)->n_kernel_stats; i_++) {                       \
			const struct rxg_kernel_stats *v = &(st)->kernel_stats[i_];           \
			const char *l_[] = { "kernel", v->kernel };                          \
			prom_sample(f, name_, l_, 1, (double)(expr));                         \
		}                                                                             \
	} while (0)

/* For node_exporter's textfile collector (rxgemm status --prometheus > x.prom.$$ && mv) or
 * any scraper of the text format: every counter the daemon keeps, in base units (seconds,
 * bytes). About 100 lines: one metric family after another, in the order of the output. */
static void status_prometheus(const struct rxg_status *st)
{
	FILE *f = stdout;
	const char *info_labels[] = { "version", st->daemon_version, "device", st->device };

	prom_family(f, "rxgemm_daemon_info", "gauge", "The daemon's version and device (always 1).");
	prom_sample(f, "rxgemm_daemon_info", info_labels, 2, 1);
	prom_single(f, "rxgemm_uptime_seconds", "gauge", "Time since the daemon started.",
		    (double)st->uptime_ns / 1e9);
	prom_single(f, "rxgemm_clients_connected", "gauge", "Clients connected now.",
		    (double)st->clients_connected);
	prom_single(f, "rxgemm_clients_total", "counter", "Clients that connected since start.",
		    (double)st->clients_total);
	prom_single(f, "rxgemm_jobs_ok_total", "counter", "Jobs that completed.",
		    (double)st->jobs_ok);
	prom_single(f, "rxgemm_jobs_failed_total", "counter", "Jobs that failed on the device.",
		    (double)st->jobs_failed);
	prom_single(f, "rxgemm_requests_rejected_total", "counter",
		    "Requests refused before they ran (bad arguments, limits).",
		    (double)st->requests_rejected);
	prom_single(f, "rxgemm_jobs_queued", "gauge", "Jobs accepted and not finished.",
		    (double)st->jobs_queued);
	prom_single(f, "rxgemm_queue_jobs_waiting", "gauge", "Jobs waiting in the scheduler's queue.",
		    (double)st->jobs_waiting);
	prom_single(f, "rxgemm_queue_clients_waiting", "gauge", "Clients with jobs in the queue.",
		    (double)st->clients_waiting);
	prom_single(f, "rxgemm_queue_max_jobs", "gauge", "The queue's bound (0: none).",
		    (double)st->max_queue);
	prom_single(f, "rxgemm_jobs_rejected_busy_total", "counter",
		    "Jobs refused because the queue was full.", (double)st->jobs_rejected_busy);
	prom_single(f, "rxgemm_jobs_expired_total", "counter",
		    "Jobs whose deadline passed in the queue.", (double)st->jobs_expired);
	prom_single(f, "rxgemm_jobs_cancelled_total", "counter", "Jobs cancelled by their client.",
		    (double)st->jobs_cancelled);
	prom_single(f, "rxgemm_jobs_waiting_for_memory", "gauge",
		    "Jobs waiting for device memory under the budget.",
		    (double)st->jobs_waiting_for_memory);
	prom_single(f, "rxgemm_jobs_split_total", "counter",
		    "Jobs run in pieces to fit the budget.", (double)st->jobs_split);
	prom_single(f, "rxgemm_vram_budget_bytes", "gauge", "Device memory the daemon may use.",
		    (double)st->vram_budget_bytes);
	prom_single(f, "rxgemm_vram_reserved_bytes", "gauge",
		    "Device memory reserved by admitted jobs.", (double)st->vram_reserved_bytes);
	prom_single(f, "rxgemm_vram_in_use_bytes", "gauge", "Device memory in buffers now.",
		    (double)st->vram_in_use_bytes);
	prom_single(f, "rxgemm_vram_peak_bytes", "gauge", "The most device memory reserved at once.",
		    (double)st->vram_peak_bytes);
	prom_single(f, "rxgemm_vram_pool_bytes", "gauge", "Device memory kept in the buffer pool.",
		    (double)st->vram_pool_bytes);
	prom_single(f, "rxgemm_device_busy_seconds_total", "counter",
		    "Time the device spent running jobs.", (double)st->device_busy_ns / 1e9);
	prom_single(f, "rxgemm_device_utilisation_ratio", "gauge",
		    "Share of the recent window the device was busy (0 to 1).",
		    st->device_utilisation_recent);
	prom_single(f, "rxgemm_flops_total", "counter", "Floating-point operations of all jobs.",
		    (double)st->flops_total);
	prom_single(f, "rxgemm_kernel_seconds_total", "counter", "Kernel time of all jobs.",
		    (double)st->kernel_ns_total / 1e9);
	prom_single(f, "rxgemm_shm_regions", "gauge", "Shared-memory buffers mapped now.",
		    (double)st->shm_regions);
	prom_single(f, "rxgemm_shm_jobs_total", "counter", "GEMMs that used shared memory.",
		    (double)st->shm_jobs);
	prom_single(f, "rxgemm_shm_jobs_in_place_total", "counter",
		    "GEMMs run in place on shared memory, with no copy.",
		    (double)st->shm_jobs_in_place);
	prom_single(f, "rxgemm_host_buffer_kept_bytes", "gauge",
		    "Host memory kept between jobs for large frames and results.",
		    (double)st->host_buffer_kept_bytes);
	prom_single(f, "rxgemm_host_buffer_pinned_bytes", "gauge",
		    "Host memory pinned for the device now (kept buffers and those in use).",
		    (double)st->host_buffer_pinned_bytes);
	prom_single(f, "rxgemm_host_buffer_hits_total", "counter",
		    "Large frames and results that took a kept host buffer.",
		    (double)st->host_buffer_hits);
	prom_single(f, "rxgemm_host_buffer_misses_total", "counter",
		    "Large frames and results that found no kept host buffer.",
		    (double)st->host_buffer_misses);

	PROM_CLIENTS_(f, st, "rxgemm_client_jobs_ok_total", "counter",
		      "Jobs of the client that completed.", c->jobs_ok);
	PROM_CLIENTS_(f, st, "rxgemm_client_jobs_failed_total", "counter",
		      "Jobs of the client that failed.", c->jobs_failed);
	PROM_CLIENTS_(f, st, "rxgemm_client_requests_rejected_total", "counter",
		      "Requests of the client refused.", c->requests_rejected);
	PROM_CLIENTS_(f, st, "rxgemm_client_jobs_in_flight", "gauge",
		      "Jobs of the client accepted and not finished.", c->jobs_in_flight);
	PROM_CLIENTS_(f, st, "rxgemm_client_flops_total", "counter",
		      "Floating-point operations of the client's jobs.", c->flops);
	PROM_CLIENTS_(f, st, "rxgemm_client_kernel_seconds_total", "counter",
		      "Kernel time of the client's jobs.", (double)c->timings.kernel_ns / 1e9);
	PROM_CLIENTS_(f, st, "rxgemm_client_queued_seconds_total", "counter",
		      "Time the client's jobs waited in the queue.",
		      (double)c->timings.queued_ns / 1e9);
	PROM_CLIENTS_(f, st, "rxgemm_client_received_bytes_total", "counter",
		      "Bytes the daemon received from the client.", c->bytes_in);
	PROM_CLIENTS_(f, st, "rxgemm_client_sent_bytes_total", "counter",
		      "Bytes the daemon sent to the client.", c->bytes_out);
	PROM_CLIENTS_(f, st, "rxgemm_client_tensors", "gauge",
		      "Device tensors the client holds now.", c->tensors);
	PROM_CLIENTS_(f, st, "rxgemm_client_tensor_bytes", "gauge",
		      "Device memory the client's tensors hold in the budget.", c->tensor_bytes);

	PROM_KERNELS_(f, st, "rxgemm_kernel_variant_jobs_total", "counter",
		      "Jobs run by the kernel variant.", v->jobs);
	PROM_KERNELS_(f, st, "rxgemm_kernel_variant_flops_total", "counter",
		      "Floating-point operations of the kernel variant.", v->flops);
	PROM_KERNELS_(f, st, "rxgemm_kernel_variant_seconds_total", "counter",
		      "Kernel time of the kernel variant.", (double)v->timings.kernel_ns / 1e9);
	PROM_KERNELS_(f, st, "rxgemm_kernel_variant_gflops", "gauge",
		      "The kernel variant's average rate over its kernel time (NaN before a job).",
		      gflops((double)v->flops, (double)v->timings.kernel_ns));
}

int cmd_status(int argc, char **argv, const char *socket)
{
	struct rxg_status *st = NULL;
	int json = 0, prometheus = 0;
	int rc;

	rc = simple_parse("status", argc, argv, &socket, &json, &prometheus);
	if (rc != EXIT_OK)
		return rc;
	if (json && prometheus)
		return usage_error("status: --json or --prometheus, not both");
	rc = fetch_status(socket, &st);
	if (rc != EXIT_OK)
		return rc;
	if (prometheus)
		status_prometheus(st);
	else if (json)
		status_json(st);
	else
		status_text(st);
	rxg_status_free(st);
	return EXIT_OK;
}

/* output.c: the printing that several commands of rxgemm(1) share: aligned text tables,
 * units (bytes, uptime, milliseconds, GFLOP/s) and the JSON of timings and devices. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "cli.h"
#include "rxgemm.h"

void table_cell(struct table *t, const char *fmt, ...)
{
	va_list ap;
	int len;

	if (t->ncells == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 64;
		char **cells = realloc(t->cells, t->cap * sizeof(*cells));
		if (!cells) {
			fputs("rxgemm: out of memory\n", stderr);
			exit(EXIT_FILE);
		}
		t->cells = cells;
	}
	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *s = xmalloc((size_t)(len < 0 ? 0 : len) + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)(len < 0 ? 0 : len) + 1, fmt, ap);
	va_end(ap);
	t->cells[t->ncells++] = s;
}

void table_print(struct table *t, FILE *f)
{
	size_t width[16] = { 0 };

	for (size_t i = 0; i < t->ncells; i++) {
		size_t len = strlen(t->cells[i]);
		if (len > width[i % t->ncols])
			width[i % t->ncols] = len;
	}
	for (size_t i = 0; i < t->ncells; i++) {
		size_t col = i % t->ncols;
		int w = (int)width[col];
		int last = col == t->ncols - 1;
		if (t->align[col] == 'r')
			fprintf(f, "%*s", w, t->cells[i]);
		else
			fprintf(f, "%-*s", last ? 0 : w, t->cells[i]);
		fputs(last ? "\n" : "  ", f);
	}
}

void table_free(struct table *t)
{
	for (size_t i = 0; i < t->ncells; i++)
		free(t->cells[i]);
	free(t->cells);
}

double ns_to_ms(double ns)
{
	return ns / 1e6;
}

/* "RXG_EINVAL" -> "EINVAL": short enough for a table column. */
const char *status_name(int code)
{
	switch (code) {
#define RXG_NAME_(name, value, text) \
	case name:                   \
		return #name + 4;
		RXG_ERRORS(RXG_NAME_)
#undef RXG_NAME_
	}
	return "?";
}

void format_bytes(char *buf, size_t len, uint64_t bytes)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	size_t u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
}

void format_uptime(char *buf, size_t len, uint64_t ns)
{
	uint64_t s = ns / 1000000000u;
	unsigned long long days = s / 86400;

	if (days)
		snprintf(buf, len, "%llud %02u:%02u:%02u", days, (unsigned)(s % 86400 / 3600),
			 (unsigned)(s % 3600 / 60), (unsigned)(s % 60));
	else
		snprintf(buf, len, "%02u:%02u:%02u", (unsigned)(s / 3600), (unsigned)(s % 3600 / 60),
			 (unsigned)(s % 60));
}

double gflops(double flops, double ns)
{
	return ns > 0 ? flops / ns : NAN;
}

/* --- sharing: clients, kernel variants, device utilisation (status and top) -------------- */

double percent(double part, double whole)
{
	return whole > 0 ? 100.0 * part / whole : NAN;
}

double avg_ms(uint64_t ns, uint64_t count)
{
	return count ? ns_to_ms((double)ns / (double)count) : NAN;
}

/* A number, or "-" where there is none (NaN: nothing to average, no interval yet). */
void table_number(struct table *t, int decimals, double v)
{
	if (isnan(v))
		table_cell(t, "-");
	else
		table_cell(t, "%.*f", decimals, v);
}

void table_head(struct table *t, const char *const *head)
{
	for (size_t i = 0; i < t->ncols; i++)
		table_cell(t, "%s", head[i]);
}

void table_client_id(struct table *t, const struct rxg_client_stats *c, int departed)
{
	if (departed) {
		table_cell(t, "-");
		table_cell(t, "(departed)");
		table_cell(t, "-");
		table_cell(t, "-");
		return;
	}
	table_cell(t, "%lu", (unsigned long)c->client_id);
	table_cell(t, "%s", *c->name ? c->name : "(no hello)");
	if (c->uid < 0)
		table_cell(t, "?");
	else
		table_cell(t, "%lld", (long long)c->uid);
	if (c->pid < 0)
		table_cell(t, "?");
	else
		table_cell(t, "%lld", (long long)c->pid);
}

void json_timings(struct json_writer *w, const struct rxg_timings *t)
{
	json_begin_object(w);
	json_member_uint(w, "queued_ns", t->queued_ns);
	json_member_uint(w, "h2d_ns", t->h2d_ns);
	json_member_uint(w, "kernel_ns", t->kernel_ns);
	json_member_uint(w, "d2h_ns", t->d2h_ns);
	json_member_uint(w, "total_ns", t->total_ns);
	json_end_object(w);
}

void json_devices(struct json_writer *w, const struct rxg_status *st)
{
	json_begin_array(w);
	for (size_t i = 0; i < st->n_devices; i++) {
		const struct rxg_device_info *d = &st->devices[i];

		json_begin_object(w);
		json_member_uint(w, "index", d->index);
		json_member_string(w, "platform", d->platform);
		json_member_string(w, "name", d->name);
		json_member_string(w, "type", d->type);
		json_member_string(w, "version", d->version);
		json_member_string(w, "driver", d->driver);
		json_member_uint(w, "global_mem_bytes", d->global_mem_bytes);
		json_member_uint(w, "compute_units", d->compute_units);
		json_member_uint(w, "clock_mhz", d->clock_mhz);
		json_member_bool(w, "in_use", d->in_use);
		json_end_object(w);
	}
	json_end_array(w);
}

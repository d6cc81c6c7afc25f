/* cmd-devices.c: rxgemm devices: the OpenCL devices the daemon sees and the one it uses. */
#include <stdio.h>
#include <stdlib.h>

#include "json.h"
#include "cli.h"
#include "rxgemm.h"

int cmd_devices(int argc, char **argv, const char *socket)
{
	struct rxg_status *st = NULL;
	int json = 0;
	int rc;

	rc = simple_parse("devices", argc, argv, &socket, &json, NULL);
	if (rc != EXIT_OK)
		return rc;
	rc = fetch_status(socket, &st);
	if (rc != EXIT_OK)
		return rc;
	if (json) {
		struct json_writer w;

		json_init(&w, stdout);
		json_begin_object(&w);
		json_key(&w, "devices");
		json_devices(&w, st);
		json_end_object(&w);
		putchar('\n');
	} else if (!st->n_devices) {
		printf("the daemon reports no devices\n");
	} else {
		struct table t = { .ncols = 10, .align = "lrllllrrll" };
		static const char *const head[] = { "", "index", "platform", "name", "type",
						    "memory", "CUs", "clock", "OpenCL", "driver" };
		for (size_t i = 0; i < t.ncols; i++)
			table_cell(&t, "%s", head[i]);
		for (size_t i = 0; i < st->n_devices; i++) {
			const struct rxg_device_info *d = &st->devices[i];
			char mem[32];
			format_bytes(mem, sizeof(mem), d->global_mem_bytes);
			table_cell(&t, "%s", d->in_use ? "*" : "");
			table_cell(&t, "%lu", (unsigned long)d->index);
			table_cell(&t, "%s", d->platform);
			table_cell(&t, "%s", d->name);
			table_cell(&t, "%s", d->type);
			table_cell(&t, "%s", mem);
			table_cell(&t, "%lu", (unsigned long)d->compute_units);
			table_cell(&t, "%lu MHz", (unsigned long)d->clock_mhz);
			table_cell(&t, "%s", d->version);
			table_cell(&t, "%s", d->driver);
		}
		table_print(&t, stdout);
		table_free(&t);
	}
	rxg_status_free(st);
	return EXIT_OK;
}

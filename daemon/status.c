/* status.c: lookups in the status table and the error setter (status.h). */
#include <stdarg.h>
#include <stdio.h>

#include "status.h"

static const struct {
	const char *name;
	unsigned wire;
	const char *message;
} status_table[RXD_S_COUNT] = {
#define RXD_STATUS_ROW(name, wire, msg) { #name, wire, msg },
	RXD_STATUS_TABLE(RXD_STATUS_ROW)
#undef RXD_STATUS_ROW
};

int error_set(struct rxd_error *e, int status, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return status;
	e->status = status;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return status;
}

void error_clear(struct rxd_error *e)
{
	if (!e)
		return;
	e->status = RXD_S_OK;
	e->msg[0] = '\0';
}

const char *status_name(int status)
{
	return status >= 0 && status < RXD_S_COUNT ? status_table[status].name : "?";
}

const char *status_message(int status)
{
	return status >= 0 && status < RXD_S_COUNT ? status_table[status].message
						   : "unknown status";
}

unsigned status_wire_code(int status)
{
	return status >= 0 && status < RXD_S_COUNT ? status_table[status].wire
						   : status_table[RXD_S_INTERNAL].wire;
}

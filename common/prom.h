/* prom.h: Prometheus's text exposition format (version 0.0.4), as read by node_exporter's
 * textfile collector: a family's # HELP and # TYPE lines, then its samples
 * name{label="value",...} number, one per line. The caller passes valid metric and label
 * names (constants); label values and help texts can be anything and are escaped here. */
#ifndef RXGEMM_COMMON_PROM_H
#define RXGEMM_COMMON_PROM_H

#include <stdio.h>

/* "# HELP name help" (backslash and newline escaped) and "# TYPE name type"; type is
 * "counter" or "gauge". */
void prom_family(FILE *f, const char *name, const char *type, const char *help);

/* A label value in quotes with \, " and newline escaped as the format wants; every other
 * byte as it is. NULL is "". */
void prom_label_value(FILE *f, const char *value);

/* A sample's value: integers exactly, others with 17 significant digits, NaN and the
 * infinities as NaN, +Inf and -Inf. */
void prom_value(FILE *f, double v);

#endif

/* cli.h: what the files of rxgemm(1) share (not installed): exit codes, option numbers,
 * the text table, and the helpers of cli.c and output.c. Each command is one cmd-NAME.c. */
#ifndef RXGEMM_CLI_H
#define RXGEMM_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "json.h"
#include "rxgemm.h"

enum exit_code {
	EXIT_OK = 0,
	EXIT_MISMATCH = 1, /* --check found a wrong element */
	EXIT_USAGE = 2,    /* bad option or number */
	EXIT_DAEMON = 3,   /* cannot connect, or the daemon refused or failed a request */
	EXIT_FILE = 4,     /* a file unreadable, unwritable, not a float32 matrix or of the
			    * wrong shape; also host memory exhausted */
};

#define CLIENT_NAME "rxgemm-cli"
#define MAX_REPEAT 1000000

enum {
	OPT_SOCKET = 256,
	OPT_TRANSA,
	OPT_TRANSB,
	OPT_ALPHA,
	OPT_BETA,
	OPT_COL_MAJOR,
	OPT_A,
	OPT_B,
	OPT_C,
	OPT_OUT,
	OPT_SEED,
	OPT_CHECK,
	OPT_REPEAT,
	OPT_JSON,
	OPT_SHM,
	OPT_PRIORITY,
	OPT_DEADLINE_MS,
	OPT_PROMETHEUS,
	OPT_RESIDENT,
};

/* A text table: the first row is the header; columns are as wide as their widest cell. */
struct table {
	size_t ncols;
	const char *align; /* one 'l' or 'r' per column */
	size_t ncells, cap;
	char **cells;
};

/* ---- cli.c ---- */
/* The help text of every command (--help: usage errors only point to it). */
void usage(FILE *f);
/* The error reporters print "rxgemm: " and their message on stderr and return their exit
 * code (usage_error EXIT_USAGE, file_error EXIT_FILE, daemon_error EXIT_DAEMON with the
 * library's message; c may be NULL after a failed rxg_connect). */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int file_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int option_error(int opt, char **argv);
int daemon_error(rxg_client *c, int rc);
/* EXIT_OK when path can be written, before any work is done for it. */
int output_check(const char *opt, const char *path);
/* malloc or exit(EXIT_FILE) with a message: the CLI has nothing to unwind. */
void *xmalloc(size_t bytes);
/* Parsers of an option's value: EXIT_OK, or EXIT_USAGE with a message naming opt. */
int parse_int64(const char *opt, const char *s, int64_t min, int64_t max, int64_t *out);
int parse_uint64(const char *opt, const char *s, uint64_t *out);
int parse_float(const char *opt, const char *s, float *out);
/* CLOCK_MONOTONIC in ns. */
uint64_t now_ns(void);
/* The options of status and devices (--socket, --json, and --prometheus when prometheus
 * is not NULL). */
int simple_parse(const char *cmd, int argc, char **argv, const char **socket, int *json,
		 int *prometheus);
/* One rxg_status over a connection of its own: EXIT_OK with *st the caller's to free. */
int fetch_status(const char *socket, struct rxg_status **st);

/* ---- output.c ---- */
/* Cells fill the table row by row, ncols to a row; table_print aligns them. */
void table_cell(struct table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void table_print(struct table *t, FILE *f);
void table_free(struct table *t);
double ns_to_ms(double ns);
const char *status_name(int code);
void format_bytes(char *buf, size_t len, uint64_t bytes);
void format_uptime(char *buf, size_t len, uint64_t ns);
double gflops(double flops, double ns);
double percent(double part, double whole);
double avg_ms(uint64_t ns, uint64_t count);
void table_number(struct table *t, int decimals, double v);
void table_head(struct table *t, const char *const *head);
void table_client_id(struct table *t, const struct rxg_client_stats *c, int departed);
void json_timings(struct json_writer *w, const struct rxg_timings *t);
void json_devices(struct json_writer *w, const struct rxg_status *st);

/* ---- the commands, one file each: argv[0] is the command's name, socket the --socket
 * given before it (NULL: the default); each returns the process's exit code ---- */
/* cmd-status.c; status_json is also rxgemm top --json's frame. */
void status_json(const struct rxg_status *st);
int cmd_status(int argc, char **argv, const char *socket);
int cmd_gemm(int argc, char **argv, const char *socket);
int cmd_devices(int argc, char **argv, const char *socket);
int cmd_top(int argc, char **argv, const char *socket);
int cmd_bench(int argc, char **argv, const char *socket);
int cmd_nas(int argc, char **argv, const char *socket);
int cmd_nas_search(int argc, char **argv, const char *socket);

#endif

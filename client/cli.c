/* cli.c: rxgemm(1), the command-line client of rxgemmd.
 *
 * Built on the public API (rxgemm.h) alone, plus the CPU reference and the .npy code: it is
 * the library's first user, and anything it needs from the daemon the API must offer.
 *
 * Each command is parse -> prepare -> talk to the daemon -> report, and each step returns
 * an exit code (EXIT_OK to go on), so that usage and file errors are found before any
 * connection is made and a test can expect exit 2 or 4 without a daemon. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "json.h"
#include "npy.h"
#include "prom.h"
#include "refgemm.h"
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

static void usage(FILE *f)
{
	char sock[256];

	if (rxg_default_socket(sock, sizeof(sock)) != RXG_OK)
		snprintf(sock, sizeof(sock), "(too long)");
	fprintf(f,
		"Usage: rxgemm [--socket PATH] gemm -m M -n N -k K [--transa] [--transb]\n"
		"              [--alpha A] [--beta B] [--col-major] [--a FILE] [--b FILE] [--c FILE]\n"
		"              [--out FILE] [--seed S] [--check] [--repeat R] [--json]\n"
		"              [--shm auto|always|never] [--resident R]\n"
		"              [--priority P] [--deadline-ms D]\n"
		"       rxgemm [--socket PATH] status [--json | --prometheus]\n"
		"       rxgemm [--socket PATH] devices [--json]\n"
		"       rxgemm [--socket PATH] bench [--sizes N,N,...] [--transa] [--transb]\n"
		"              [--repeat R] [--csv | --json]\n"
		"       rxgemm [--socket PATH] top [-d SECONDS] [-n ITERATIONS] [-b | --json]\n"
		"       rxgemm [--socket PATH] nas [--genotype NAME | --genotype-file F]\n"
		"              [--dataset cifar10|imagenet] [--C C] [--layers L] [--classes K]\n"
		"              [--size HxW] [--batch N] [--weights F.npy|F] [--weight-seed S]\n"
		"              [--input F.npy|F] [--input-seed S] [--logits-out F.npy]\n"
		"              [--warmup W] [--repeat R] [--json]\n"
		"       rxgemm --help | --version\n"
		"\n"
		"Commands:\n"
		"  gemm       run C = alpha * op(A) * op(B) + beta * C in FP32 on the daemon's\n"
		"             device and show its timings\n"
		"  status     show the daemon's device, counters, clients, kernel variants and\n"
		"             recent jobs\n"
		"  devices    list every OpenCL device the daemon can see (* = in use)\n"
		"  bench      time square GEMMs of each size through the daemon (random\n"
		"             row-major matrices; best of --repeat, default 3; sizes default\n"
		"             256,512,1024,2048): kernel and end-to-end GFLOPS\n"
		"  top        show the daemon's utilisation, clients and kernels every few\n"
		"             seconds, with rates over the last interval, like top(1)\n"
		"  nas        evaluate a DARTS network on the daemon's device: parameters,\n"
		"             multiply-adds, device memory, latency (median and p90 of the timed\n"
		"             runs) and its breakdown per operation and per cell\n"
		"\n"
		"gemm options:\n"
		"  -m M, -n N, -k K  op(A) is M x K, op(B) K x N, C M x N; may be omitted when\n"
		"                    files give them, and must agree with the files when given\n"
		"  --transa          A is stored K x M and transposed (op(A) = A^T)\n"
		"  --transb          B is stored N x K and transposed (op(B) = B^T)\n"
		"  --alpha A         scale of op(A) * op(B) (default 1)\n"
		"  --beta B          scale of C's old values (default 0: C is not read)\n"
		"  --col-major       send column-major matrices (default: row-major, numpy's order)\n"
		"  --a FILE, --b FILE, --c FILE\n"
		"                    2-D float32 ('<f4') .npy files, C or Fortran order, holding the\n"
		"                    stored matrices: A M x K (K x M with --transa), B K x N (N x K\n"
		"                    with --transb), C M x N. --c is read only when beta != 0.\n"
		"                    A matrix without a file is random.\n"
		"  --seed S          random matrices: uniform in [-1, 1), drawn for A, B and C in\n"
		"                    that order from one generator seeded with S (default 1)\n"
		"  --out FILE        write the result C as .npy (C order; Fortran with --col-major)\n"
		"  --check           compare every run with a CPU reference summed in double, which\n"
		"                    allows each element an error of k * (8 * 2^-23 * max |C| +\n"
		"                    2^-126); exit 1 and show the worst element on a mismatch\n"
		"  --repeat R        run the job R times and show each run, the best and the median\n"
		"  --json            print one JSON object instead of the table\n"
		"  --shm WHEN        pass the matrices through shared memory (a buffer both\n"
		"                    processes map) instead of inside the request: auto (the\n"
		"                    default) when A, B and C together reach 1 MiB and the daemon\n"
		"                    offers it, always, or never\n"
		"  --priority P      0 (default) to 3: the daemon runs waiting jobs of a higher\n"
		"                    priority first\n"
		"  --deadline-ms D   give up on the job when it has waited D ms in the daemon's\n"
		"                    queue without starting (default 0: wait as long as it takes)\n"
		"  --resident R      upload A and B (and C) once as device tensors, run the GEMM R\n"
		"                    times on them with C kept on the device, read C back once;\n"
		"                    shows the upload, each run and the read-back (not with\n"
		"                    --repeat or --shm)\n"
		"\n"
		"nas options (docs/NAS.md):\n"
		"  --genotype NAME   DARTS_V1, DARTS_V2 (default), NASNet, AmoebaNet, or the\n"
		"                    reference's printed Genotype(...) text\n"
		"  --genotype-file F the printed Genotype(...) text read from F\n"
		"  --dataset D       cifar10 (default: C 36, 20 layers, 10 classes, 32x32) or\n"
		"                    imagenet (C 48, 14 layers, 1000 classes, 224x224)\n"
		"  --C C, --layers L, --classes K, --size HxW, --batch N (default 1)\n"
		"  --weights F       the state_dict as float32 in the reference's order (a .npy\n"
		"                    of any 2-D shape, or raw bytes); default: the documented\n"
		"                    init from --weight-seed (default 1)\n"
		"  --input F         N x 3 x H x W floats (a .npy reshaped to N rows, or raw);\n"
		"                    default: uniform in [-1, 1) from --input-seed (default 1)\n"
		"  --logits-out F    write the logits, N x K, as .npy\n"
		"  --warmup W        untimed runs first (default 3)\n"
		"  --repeat R        timed runs (default 20)\n"
		"  --json            print one JSON object\n"
		"\n"
		"status and devices options:\n"
		"  --json            print one JSON object\n"
		"  --prometheus      status: print the counters in Prometheus's text format (for\n"
		"                    node_exporter's textfile collector)\n"
		"\n"
		"top options:\n"
		"  -d, --delay SECONDS     time between frames (default 2)\n"
		"  -n, --iterations N      exit after N frames (default: run until q or Ctrl-C)\n"
		"  -b, --batch             print frames one after another instead of redrawing\n"
		"                          the screen (the default when stdout is not a terminal)\n"
		"  --json                  print each frame as one line of JSON (status --json's\n"
		"                          object), for scripts\n"
		"  On a terminal top uses the alternate screen, cuts lines to its width, and\n"
		"  quits on q or Ctrl-C, putting the screen back as it was.\n"
		"\n"
		"Options for every command (before or after it):\n"
		"  --socket PATH     the daemon's socket (default here: %s;\n"
		"                    $RXGEMM_SOCKET overrides the default)\n"
		"  -h, --help        show this help and exit\n"
		"  -V, --version     show the version and exit\n"
		"\n"
		"Exit status:\n"
		"  0  success\n"
		"  1  --check found a mismatch\n"
		"  2  usage error: bad option or number, a dimension that nothing gives, a\n"
		"     GEMM larger than this machine's memory, a value the daemon refuses\n"
		"  3  the daemon cannot be reached, or failed the request or refused it for\n"
		"     its own limits\n"
		"  4  a file cannot be read or written, is not a 2-D float32 .npy, or its\n"
		"     shape or length does not fit the job; also out of memory\n",
		sock);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("rxgemm: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'rxgemm --help'.\n", stderr);
	return EXIT_USAGE;
}

static int file_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A file we cannot use: unreadable, not a float32 matrix, or not of the shape the job
 * needs. */
static int file_error(const char *fmt, ...)
{
	va_list ap;

	fputs("rxgemm: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_FILE;
}

/* getopt_long's '?' or ':' (we run it with opterr = 0 to say it in our own words). */
static int option_error(int opt, char **argv)
{
	const char *arg = argv[optind - 1];

	if (opt == ':')
		return usage_error("option '%s' needs a value", arg);
	if (arg[0] == '-' && arg[1] == '-') {
		/* A known long option that takes no value was given one ("--json=1"). */
		int name_len = (int)strcspn(arg, "=");
		if (optopt)
			return usage_error("option '%.*s' takes no value", name_len, arg);
		return usage_error("unknown option '%.*s'", name_len, arg);
	}
	return usage_error("unknown option '-%c'", optopt);
}

static int daemon_error(rxg_client *c, int rc)
{
	const char *msg = rxg_errmsg(c);

	fprintf(stderr, "rxgemm: %s%s%s\n", rxg_strerror(rc), *msg ? ": " : "", msg);
	/* The system service's socket is open to the rxgemm group; a user just added to it
	 * is not yet a member in the sessions that were open before. */
	if (rc == RXG_ECONNECT && strstr(msg, strerror(EACCES)))
		fputs("rxgemm: the daemon's socket is open to members of the 'rxgemm' group: ask for\n"
		      "rxgemm: membership (sudo usermod -aG rxgemm $USER), then log out and in again\n"
		      "rxgemm: (or run 'newgrp rxgemm') so that the new group applies\n",
		      stderr);
	return EXIT_DAEMON;
}

/* Whether path can be written later (the job runs first): its directory exists and is
 * writable, and path is not a directory nor a file we may not write. Checked before
 * submitting so that a typo does not cost the whole job; nothing is created here. */
static int output_check(const char *opt, const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	struct stat st;
	int rc = EXIT_OK;

	if (!*path)
		return usage_error("%s: the file name is empty", opt);
	if (!slash)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return file_error("out of memory");
	if (stat(dir, &st) < 0)
		rc = file_error("%s: cannot write %s: directory %s: %s", opt, path, dir,
				strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		rc = file_error("%s: cannot write %s: %s is not a directory", opt, path, dir);
	else if (access(dir, W_OK | X_OK) < 0)
		rc = file_error("%s: cannot write %s: directory %s: %s", opt, path, dir,
				strerror(errno));
	else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		rc = file_error("%s: cannot write %s: it is a directory", opt, path);
	else if (stat(path, &st) == 0 && access(path, W_OK) < 0)
		rc = file_error("%s: cannot write %s: %s", opt, path, strerror(errno));
	free(dir);
	return rc;
}

static void *xmalloc(size_t bytes)
{
	void *p = malloc(bytes ? bytes : 1);

	if (!p) {
		fprintf(stderr, "rxgemm: out of memory (%zu bytes)\n", bytes);
		exit(EXIT_FILE);
	}
	return p;
}

/* --- numbers ----------------------------------------------------------------------------- */

static int parse_int64(const char *opt, const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (!*s || isspace((unsigned char)*s) || *end)
		return usage_error("%s: '%s' is not a whole number", opt, s);
	if (((errno == ERANGE && v > 0) || v > max) && max == INT64_MAX)
		return usage_error("%s: '%s' is too large", opt, s);
	if ((errno == ERANGE && v > 0) || v > max)
		return usage_error("%s: '%s' is too large (at most %lld)", opt, s, (long long)max);
	if (errno == ERANGE || v < min)
		return usage_error("%s: '%s' is too small (at least %lld)", opt, s, (long long)min);
	*out = v;
	return EXIT_OK;
}

static int parse_uint64(const char *opt, const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	/* strtoull takes "-1" as 2^64 - 1: a sign is never what the user meant. */
	if (!*s || !isdigit((unsigned char)*s) || *end)
		return usage_error("%s: '%s' is not a whole number of 0 or more", opt, s);
	if (errno == ERANGE)
		return usage_error("%s: '%s' is out of range (at most %llu)", opt, s,
				   (unsigned long long)UINT64_MAX);
	*out = v;
	return EXIT_OK;
}

static int parse_float(const char *opt, const char *s, float *out)
{
	char *end;
	float v;

	errno = 0;
	v = strtof(s, &end);
	if (!*s || isspace((unsigned char)*s) || *end)
		return usage_error("%s: '%s' is not a number", opt, s);
	/* ERANGE on underflow still leaves a usable (tiny) value; overflow gives infinity. */
	if (!isfinite(v))
		return usage_error("%s: '%s' is not a finite single-precision number", opt, s);
	*out = v;
	return EXIT_OK;
}

/* --- output helpers ---------------------------------------------------------------------- */

/* A text table: the first row is the header; columns are as wide as their widest cell. */
struct table {
	size_t ncols;
	const char *align; /* one 'l' or 'r' per column */
	size_t ncells, cap;
	char **cells;
};

static void table_cell(struct table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void table_cell(struct table *t, const char *fmt, ...)
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

static void table_print(struct table *t, FILE *f)
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

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->ncells; i++)
		free(t->cells[i]);
	free(t->cells);
}

static double ns_to_ms(double ns)
{
	return ns / 1e6;
}

/* "RXG_EINVAL" -> "EINVAL": short enough for a table column. */
static const char *status_name(int code)
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

static void format_bytes(char *buf, size_t len, uint64_t bytes)
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

static void format_uptime(char *buf, size_t len, uint64_t ns)
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

/* --- gemm: options and matrices ---------------------------------------------------------- */

struct gemm_opts {
	const char *socket;
	int64_t m, n, k; /* 0: not given (yet) */
	int trans_a, trans_b;
	int row_major;
	float alpha, beta;
	const char *path[3]; /* A, B, C files, or NULL */
	const char *out_path;
	uint64_t seed;
	int64_t repeat;
	int check;
	int json;
	int shm; /* SHM_* */
	int shm_given;
	int64_t resident; /* --resident R: runs on device tensors; 0: off */
	int repeat_given;
	struct rxg_job_options job; /* --priority, --deadline-ms */
};

/* --resident: the wall time of the phases around the runs. */
struct resident_times {
	uint64_t upload_ns;  /* A and B (and C's input) made into tensors */
	uint64_t read_ns;    /* C read back once */
	uint64_t upload_bytes, read_bytes;
};

/* --shm: when the matrices travel through a shared-memory buffer (rxg_buffer_create). */
enum { SHM_AUTO, SHM_ALWAYS, SHM_NEVER };
#define SHM_AUTO_MIN_BYTES (1u << 20) /* below this the socket copy costs next to nothing */

enum { MAT_A, MAT_B, MAT_C };
static const char *const mat_name[3] = { "A", "B", "C" };

/* One operand as it will be sent: stored tightly (ld = its inner extent) in the chosen
 * layout. rows x cols is the stored shape. */
struct matrix {
	float *data;
	int64_t rows, cols;
	int from_file;
	int file_fortran; /* the file's order, while data is still as read */
};

static int gemm_parse(int argc, char **argv, struct gemm_opts *o)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "transa", no_argument, NULL, OPT_TRANSA },
		{ "transb", no_argument, NULL, OPT_TRANSB },
		{ "alpha", required_argument, NULL, OPT_ALPHA },
		{ "beta", required_argument, NULL, OPT_BETA },
		{ "col-major", no_argument, NULL, OPT_COL_MAJOR },
		{ "a", required_argument, NULL, OPT_A },
		{ "b", required_argument, NULL, OPT_B },
		{ "c", required_argument, NULL, OPT_C },
		{ "out", required_argument, NULL, OPT_OUT },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "check", no_argument, NULL, OPT_CHECK },
		{ "repeat", required_argument, NULL, OPT_REPEAT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "shm", required_argument, NULL, OPT_SHM },
		{ "priority", required_argument, NULL, OPT_PRIORITY },
		{ "deadline-ms", required_argument, NULL, OPT_DEADLINE_MS },
		{ "resident", required_argument, NULL, OPT_RESIDENT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int opt, rc = EXIT_OK;
	int64_t v;

	while (rc == EXIT_OK && (opt = getopt_long(argc, argv, ":m:n:k:hV", options, NULL)) != -1) {
		switch (opt) {
		case 'm':
			rc = parse_int64("-m", optarg, 1, INT64_MAX, &o->m);
			break;
		case 'n':
			rc = parse_int64("-n", optarg, 1, INT64_MAX, &o->n);
			break;
		case 'k':
			rc = parse_int64("-k", optarg, 1, INT64_MAX, &o->k);
			break;
		case OPT_SOCKET:
			o->socket = optarg;
			break;
		case OPT_TRANSA:
			o->trans_a = 1;
			break;
		case OPT_TRANSB:
			o->trans_b = 1;
			break;
		case OPT_ALPHA:
			rc = parse_float("--alpha", optarg, &o->alpha);
			break;
		case OPT_BETA:
			rc = parse_float("--beta", optarg, &o->beta);
			break;
		case OPT_COL_MAJOR:
			o->row_major = 0;
			break;
		case OPT_A:
		case OPT_B:
		case OPT_C:
			o->path[opt - OPT_A] = optarg;
			break;
		case OPT_OUT:
			o->out_path = optarg;
			break;
		case OPT_SEED:
			rc = parse_uint64("--seed", optarg, &o->seed);
			break;
		case OPT_CHECK:
			o->check = 1;
			break;
		case OPT_REPEAT:
			rc = parse_int64("--repeat", optarg, 1, MAX_REPEAT, &o->repeat);
			o->repeat_given = 1;
			break;
		case OPT_RESIDENT:
			rc = parse_int64("--resident", optarg, 1, MAX_REPEAT, &o->resident);
			break;
		case OPT_JSON:
			o->json = 1;
			break;
		case OPT_SHM:
			o->shm_given = 1;
			if (strcmp(optarg, "auto") == 0)
				o->shm = SHM_AUTO;
			else if (strcmp(optarg, "always") == 0)
				o->shm = SHM_ALWAYS;
			else if (strcmp(optarg, "never") == 0)
				o->shm = SHM_NEVER;
			else
				rc = usage_error("--shm: '%s' is not auto, always or never", optarg);
			break;
		case OPT_PRIORITY:
			if ((rc = parse_int64("--priority", optarg, 0, 3, &v)) == EXIT_OK)
				o->job.priority = (unsigned)v;
			break;
		case OPT_DEADLINE_MS:
			if ((rc = parse_int64("--deadline-ms", optarg, 0, INT64_MAX, &v)) == EXIT_OK)
				o->job.deadline_ms = (uint64_t)v;
			break;
		case 'h':
			usage(stdout);
			exit(EXIT_OK);
		case 'V':
			printf("rxgemm %s\n", PACKAGE_VERSION);
			exit(EXIT_OK);
		default:
			return option_error(opt, argv);
		}
	}
	if (rc != EXIT_OK)
		return rc;
	if (optind < argc)
		return usage_error("gemm: unexpected argument '%s'", argv[optind]);
	if (o->resident && (o->repeat_given || o->shm_given))
		return usage_error("gemm: --resident R runs R times on device tensors; it takes "
				   "neither --repeat nor --shm");
	if (o->resident)
		o->repeat = o->resident;
	return EXIT_OK;
}

/* The stored shape of operand which for the dimensions in o. */
static void stored_shape(const struct gemm_opts *o, int which, int64_t *rows, int64_t *cols)
{
	switch (which) {
	case MAT_A:
		*rows = o->trans_a ? o->k : o->m;
		*cols = o->trans_a ? o->m : o->k;
		break;
	case MAT_B:
		*rows = o->trans_b ? o->n : o->k;
		*cols = o->trans_b ? o->k : o->n;
		break;
	default:
		*rows = o->m;
		*cols = o->n;
		break;
	}
}

static const char *stored_shape_words(const struct gemm_opts *o, int which)
{
	switch (which) {
	case MAT_A:
		return o->trans_a ? "A is stored k x m (--transa)" : "A is m x k";
	case MAT_B:
		return o->trans_b ? "B is stored n x k (--transb)" : "B is k x n";
	default:
		return "C is m x n";
	}
}

/* Take a dimension from a file when the command line did not give it. */
static void infer(int64_t *dim, int64_t from_file)
{
	if (*dim == 0)
		*dim = from_file;
}

/* Read the files, fill in the dimensions they imply, and check every file against the
 * dimensions (given or inferred). Matrices stay in their files' order here. */
static int gemm_load(struct gemm_opts *o, struct matrix mat[3])
{
	char err[512];

	for (int w = MAT_A; w <= MAT_C; w++) {
		if (!o->path[w])
			continue;
		if (w == MAT_C && o->beta == 0.0f) {
			fprintf(stderr, "rxgemm: note: --c %s is not read because beta is 0\n",
				o->path[w]);
			continue;
		}
		if (npy_read(o->path[w], &mat[w].data, &mat[w].rows, &mat[w].cols, &mat[w].file_fortran,
			     err, sizeof(err)) < 0)
			return file_error("%s", err);
		mat[w].from_file = 1;
		if (mat[w].rows < 1 || mat[w].cols < 1)
			return file_error("%s: shape (%lld, %lld) is empty: %s needs a row and a column",
					  o->path[w], (long long)mat[w].rows, (long long)mat[w].cols,
					  mat_name[w]);
	}
	if (mat[MAT_A].from_file) {
		infer(&o->m, o->trans_a ? mat[MAT_A].cols : mat[MAT_A].rows);
		infer(&o->k, o->trans_a ? mat[MAT_A].rows : mat[MAT_A].cols);
	}
	if (mat[MAT_B].from_file) {
		infer(&o->k, o->trans_b ? mat[MAT_B].cols : mat[MAT_B].rows);
		infer(&o->n, o->trans_b ? mat[MAT_B].rows : mat[MAT_B].cols);
	}
	if (mat[MAT_C].from_file) {
		infer(&o->m, mat[MAT_C].rows);
		infer(&o->n, mat[MAT_C].cols);
	}
	if (!o->m || !o->n || !o->k)
		return usage_error("gemm: -%s is needed (no file gives it)", !o->m ? "m" : !o->n ? "n" : "k");

	for (int w = MAT_A; w <= MAT_C; w++) {
		int64_t rows, cols;
		stored_shape(o, w, &rows, &cols);
		if (mat[w].from_file && (mat[w].rows != rows || mat[w].cols != cols))
			return file_error("%s: shape (%lld, %lld) does not fit: expected (%lld, %lld), "
					  "as %s with m = %lld, n = %lld, k = %lld",
					  o->path[w], (long long)mat[w].rows, (long long)mat[w].cols,
					  (long long)rows, (long long)cols, stored_shape_words(o, w),
					  (long long)o->m, (long long)o->n, (long long)o->k);
	}
	return EXIT_OK;
}

static int matrix_bytes(int64_t rows, int64_t cols, size_t *bytes)
{
	size_t floats;

	if (__builtin_mul_overflow((uint64_t)rows, (uint64_t)cols, &floats) ||
	    __builtin_mul_overflow(floats, sizeof(float), bytes))
		return -1;
	return 0;
}

/* The matrices this process holds for the job (A, B, C, a copy of C's old values when beta
 * is not 0, the reference result with --check) must fit in this machine's memory: a
 * mistyped dimension is a usage error with the sizes, not an allocation failure. */
static int gemm_host_memory_check(const struct gemm_opts *o)
{
	long pages = sysconf(_SC_PHYS_PAGES), page_bytes = sysconf(_SC_PAGE_SIZE);
	uint64_t phys = pages > 0 && page_bytes > 0 ? (uint64_t)pages * (uint64_t)page_bytes : 0;
	double bytes[3], total;
	char have[32], need[32], each[3][32];

	for (int w = MAT_A; w <= MAT_C; w++) {
		int64_t rows, cols;

		stored_shape(o, w, &rows, &cols);
		bytes[w] = (double)rows * (double)cols * sizeof(float);
	}
	total = bytes[MAT_A] + bytes[MAT_B] + bytes[MAT_C] * (1 + (o->beta != 0.0f) + o->check);
	if (!phys || total <= (double)phys)
		return EXIT_OK;
	format_bytes(have, sizeof(have), phys);
	/* Beyond 2^64 bytes format_bytes cannot count: say so in PiB all the same. */
	if (total >= 18446744073709551615.0)
		snprintf(need, sizeof(need), "%.3g PiB", total / 1125899906842624.0);
	else
		format_bytes(need, sizeof(need), (uint64_t)total);
	for (int w = MAT_A; w <= MAT_C; w++) {
		if (bytes[w] >= 18446744073709551615.0)
			snprintf(each[w], sizeof(each[w]), "%.3g PiB", bytes[w] / 1125899906842624.0);
		else
			format_bytes(each[w], sizeof(each[w]), (uint64_t)bytes[w]);
	}
	return usage_error("gemm: m = %lld, n = %lld, k = %lld needs %s of memory here (A %s, "
			   "B %s, C %s%s); this machine has %s",
			   (long long)o->m, (long long)o->n, (long long)o->k, need, each[MAT_A],
			   each[MAT_B], each[MAT_C],
			   o->beta != 0.0f || o->check ? ", C again for beta or --check" : "", have);
}

/* Bring every operand into the chosen layout (files) or make it (random, from one
 * generator in the order A, B, C). C exists even when beta == 0: it receives the result. */
static int gemm_prepare(const struct gemm_opts *o, struct matrix mat[3])
{
	uint64_t state = o->seed;

	for (int w = MAT_A; w <= MAT_C; w++) {
		struct matrix *x = &mat[w];
		int64_t rows, cols;
		size_t bytes;

		stored_shape(o, w, &rows, &cols);
		if (matrix_bytes(rows, cols, &bytes) < 0)
			return usage_error("gemm: %s (%lld x %lld) is too large for this machine",
					   mat_name[w], (long long)rows, (long long)cols);
		if (x->from_file) {
			/* Fortran order is column-major; C order is row-major. */
			if (x->file_fortran == !o->row_major)
				continue;
			float *stored = xmalloc(bytes);
			for (int64_t i = 0; i < rows; i++)
				for (int64_t j = 0; j < cols; j++)
					stored[o->row_major ? i * cols + j : i + j * rows] =
						x->data[x->file_fortran ? i + j * rows : i * cols + j];
			free(x->data);
			x->data = stored;
			x->file_fortran = !o->row_major;
			continue;
		}
		x->rows = rows;
		x->cols = cols;
		if (w == MAT_C && o->beta == 0.0f) {
			/* Not sent and not read: zeros make the output deterministic. */
			x->data = xmalloc(bytes);
			memset(x->data, 0, bytes);
			continue;
		}
		x->data = xmalloc(bytes);
		refgemm_fill_random(x->data, bytes / sizeof(float), &state);
	}
	return EXIT_OK;
}

/* --- gemm: running and reporting ---------------------------------------------------------- */

struct run {
	struct rxg_timings t;
	uint64_t wall_ns;
};

/* The summary of one column over all runs. */
struct run_stats {
	double queued_ns, h2d_ns, kernel_ns, d2h_ns, total_ns, wall_ns;
};

struct check_result {
	int done;
	int bad;          /* mismatches in the worst run */
	int64_t bad_run;  /* 1-based run with the largest error */
	double max_err;
	double tolerance;
	int64_t i, j;
	float got, want;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* best: the smallest value of each column; median: the middle one (mean of the two middle
 * ones for an even count). Each column on its own: the best kernel and the best wall time
 * may come from different runs. */
static void run_summary(const struct run *runs, int64_t n, struct run_stats *best,
			struct run_stats *median)
{
	double *v = xmalloc((size_t)n * sizeof(double));

#define COLUMN_(field, expr)                                                       \
	do {                                                                       \
		for (int64_t r = 0; r < n; r++)                                    \
			v[r] = (double)runs[r].expr;                               \
		qsort(v, (size_t)n, sizeof(double), cmp_double);                   \
		best->field = v[0];                                                \
		median->field = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2; \
	} while (0)
	COLUMN_(queued_ns, t.queued_ns);
	COLUMN_(h2d_ns, t.h2d_ns);
	COLUMN_(kernel_ns, t.kernel_ns);
	COLUMN_(d2h_ns, t.d2h_ns);
	COLUMN_(total_ns, t.total_ns);
	COLUMN_(wall_ns, wall_ns);
#undef COLUMN_
	free(v);
}

static double gflops(double flops, double ns)
{
	return ns > 0 ? flops / ns : NAN;
}

static void table_row_stats(struct table *t, const char *label, const struct run_stats *s,
			    double flops)
{
	double kg = gflops(flops, s->kernel_ns), eg = gflops(flops, s->wall_ns);

	table_cell(t, "%s", label);
	table_cell(t, "%.3f", ns_to_ms(s->kernel_ns));
	table_cell(t, "%.3f", ns_to_ms(s->h2d_ns));
	table_cell(t, "%.3f", ns_to_ms(s->d2h_ns));
	table_cell(t, "%.3f", ns_to_ms(s->queued_ns));
	table_cell(t, "%.3f", ns_to_ms(s->total_ns));
	table_cell(t, "%.3f", ns_to_ms(s->wall_ns));
	if (isnan(kg))
		table_cell(t, "-");
	else
		table_cell(t, "%.2f", kg);
	table_cell(t, "%.2f", eg);
}

static void stats_of_run(const struct run *r, struct run_stats *s)
{
	s->queued_ns = (double)r->t.queued_ns;
	s->h2d_ns = (double)r->t.h2d_ns;
	s->kernel_ns = (double)r->t.kernel_ns;
	s->d2h_ns = (double)r->t.d2h_ns;
	s->total_ns = (double)r->t.total_ns;
	s->wall_ns = (double)r->wall_ns;
}

static void gemm_report_text(const struct gemm_opts *o, const struct rxg_server_info *info,
			     int shm, const struct resident_times *rt, const struct run *runs,
			     const struct check_result *chk)
{
	double flops = 2.0 * (double)o->m * (double)o->n * (double)o->k;
	struct table t = { .ncols = 9, .align = "lrrrrrrrr" };
	struct run_stats s, best, median;

	printf("gemm: m = %lld, n = %lld, k = %lld, %s, C = %g * %s * %s %c %g * C\n",
	       (long long)o->m, (long long)o->n, (long long)o->k,
	       o->row_major ? "row-major" : "column-major", (double)o->alpha,
	       o->trans_a ? "A^T" : "A", o->trans_b ? "B^T" : "B", signbit(o->beta) ? '-' : '+',
	       fabs((double)o->beta));
	printf("daemon: rxgemmd %s on %s\n", info->daemon_version, info->device);
	if (rt) {
		char up[32], down[32];

		format_bytes(up, sizeof(up), rt->upload_bytes);
		format_bytes(down, sizeof(down), rt->read_bytes);
		printf("matrices: device tensors (--resident %lld): uploaded once, %s in %.3f ms; "
		       "C kept on the device, read back once, %s in %.3f ms\n",
		       (long long)o->resident, up, ns_to_ms((double)rt->upload_ns), down,
		       ns_to_ms((double)rt->read_ns));
	} else {
		printf("matrices: %s\n", shm ? "in shared memory (--shm)" : "inline in the request");
	}
	table_cell(&t, "run");
	table_cell(&t, "kernel ms");
	table_cell(&t, "h2d ms");
	table_cell(&t, "d2h ms");
	table_cell(&t, "queued ms");
	table_cell(&t, "daemon ms");
	table_cell(&t, "wall ms");
	table_cell(&t, "kernel GFLOPS");
	table_cell(&t, "e2e GFLOPS");
	for (int64_t r = 0; r < o->repeat; r++) {
		char label[24];
		snprintf(label, sizeof(label), "%lld", (long long)r + 1);
		stats_of_run(&runs[r], &s);
		table_row_stats(&t, label, &s, flops);
	}
	if (o->repeat > 1) {
		run_summary(runs, o->repeat, &best, &median);
		table_row_stats(&t, "best", &best, flops);
		table_row_stats(&t, "median", &median, flops);
	}
	table_print(&t, stdout);
	table_free(&t);
	if (!chk->done)
		return;
	if (!chk->bad)
		printf("check: ok (max error %.3g)\n", chk->max_err);
	else
		printf("check: FAILED: %d of %lld elements differ in run %lld; worst C(%lld, %lld) = "
		       "%.9g, expected %.9g (error %.3g, tolerance %.3g)\n",
		       chk->bad, (long long)(o->m * o->n), (long long)chk->bad_run, (long long)chk->i,
		       (long long)chk->j, (double)chk->got, (double)chk->want, chk->max_err,
		       chk->tolerance);
}

/* A count (ns, flops) that a median or a product of doubles holds: the nearest whole one. */
static uint64_t round_whole(double ns)
{
	return ns > 0 ? (uint64_t)(ns + 0.5) : 0;
}

static void json_stats(struct json_writer *w, const struct run_stats *s, double flops)
{
	json_begin_object(w);
	json_member_uint(w, "queued_ns", round_whole(s->queued_ns));
	json_member_uint(w, "h2d_ns", round_whole(s->h2d_ns));
	json_member_uint(w, "kernel_ns", round_whole(s->kernel_ns));
	json_member_uint(w, "d2h_ns", round_whole(s->d2h_ns));
	json_member_uint(w, "total_ns", round_whole(s->total_ns));
	json_member_uint(w, "wall_ns", round_whole(s->wall_ns));
	json_member_number(w, "kernel_gflops", gflops(flops, s->kernel_ns));
	json_member_number(w, "e2e_gflops", gflops(flops, s->wall_ns));
	json_end_object(w);
}

static void gemm_report_json(const struct gemm_opts *o, const struct rxg_server_info *info,
			     int shm, const struct resident_times *rt, const struct run *runs,
			     const struct check_result *chk)
{
	double flops = 2.0 * (double)o->m * (double)o->n * (double)o->k;
	struct run_stats s, best, median;
	struct json_writer w;

	json_init(&w, stdout);
	json_begin_object(&w);
	json_member_int(&w, "m", o->m);
	json_member_int(&w, "n", o->n);
	json_member_int(&w, "k", o->k);
	json_member_string(&w, "layout", o->row_major ? "row-major" : "col-major");
	json_member_bool(&w, "trans_a", o->trans_a);
	json_member_bool(&w, "trans_b", o->trans_b);
	json_member_number(&w, "alpha", o->alpha);
	json_member_number(&w, "beta", o->beta);
	json_member_uint(&w, "seed", o->seed);
	json_member_uint(&w, "flops", round_whole(flops));
	json_member_string(&w, "daemon_version", info->daemon_version);
	json_member_string(&w, "device", info->device);
	json_member_string(&w, "transfer", rt ? "resident" : shm ? "shm" : "inline");
	if (rt) {
		json_key(&w, "resident");
		json_begin_object(&w);
		json_member_uint(&w, "upload_ns", rt->upload_ns);
		json_member_uint(&w, "upload_bytes", rt->upload_bytes);
		json_member_uint(&w, "read_ns", rt->read_ns);
		json_member_uint(&w, "read_bytes", rt->read_bytes);
		json_end_object(&w);
	}
	json_key(&w, "runs");
	json_begin_array(&w);
	for (int64_t r = 0; r < o->repeat; r++) {
		stats_of_run(&runs[r], &s);
		json_stats(&w, &s, flops);
	}
	json_end_array(&w);
	run_summary(runs, o->repeat, &best, &median);
	json_key(&w, "summary");
	json_begin_object(&w);
	json_member_int(&w, "runs", o->repeat);
	json_key(&w, "best");
	json_stats(&w, &best, flops);
	json_key(&w, "median");
	json_stats(&w, &median, flops);
	json_end_object(&w);
	json_key(&w, "check");
	if (!chk->done) {
		json_null(&w);
	} else {
		json_begin_object(&w);
		json_member_bool(&w, "ok", !chk->bad);
		json_member_int(&w, "mismatches", chk->bad);
		json_member_number(&w, "max_error", chk->max_err);
		json_member_number(&w, "tolerance", chk->tolerance);
		json_key(&w, "worst");
		json_begin_object(&w);
		json_member_int(&w, "run", chk->bad_run);
		json_member_int(&w, "i", chk->i);
		json_member_int(&w, "j", chk->j);
		json_member_number(&w, "got", chk->got);
		json_member_number(&w, "want", chk->want);
		json_end_object(&w);
		json_end_object(&w);
	}
	json_end_object(&w);
	putchar('\n');
}

/* The matrices in one shared-memory buffer: A, B and C one after another (each a whole
 * number of floats, so every offset is aligned). */
struct shm_layout {
	rxg_buffer *buf; /* NULL: the matrices go inline */
	size_t off[3];
	size_t bytes[3];
};

/* Decide on --shm and, when shared memory it is, make the buffer and put A and B (and C,
 * which each run puts back) in it. Falls back to inline for auto when the daemon or the
 * system cannot; with always, that is an error. */
static int gemm_shm_setup(rxg_client *client, const struct gemm_opts *o,
			  const struct matrix mat[3], struct shm_layout *sh)
{
	size_t total = 0;
	int rc;

	memset(sh, 0, sizeof(*sh));
	if (o->shm == SHM_NEVER)
		return EXIT_OK;
	for (int w = MAT_A; w <= MAT_C; w++) {
		int64_t rows, cols;
		stored_shape(o, w, &rows, &cols);
		matrix_bytes(rows, cols, &sh->bytes[w]); /* checked by gemm_prepare */
		sh->off[w] = total;
		if (__builtin_add_overflow(total, sh->bytes[w], &total))
			return usage_error("gemm: the matrices together are too large for this machine");
	}
	if (o->shm == SHM_AUTO && total < SHM_AUTO_MIN_BYTES)
		return EXIT_OK;
	rc = rxg_buffer_create(client, total, &sh->buf);
	if (rc != RXG_OK) {
		if (o->shm == SHM_ALWAYS)
			return daemon_error(client, rc);
		sh->buf = NULL;
		return EXIT_OK;
	}
	uint8_t *base = rxg_buffer_ptr(sh->buf);
	for (int w = MAT_A; w <= MAT_C; w++)
		memcpy(base + sh->off[w], mat[w].data, sh->bytes[w]);
	return EXIT_OK;
}

/* Run the job o->repeat times, checking each result against want when it is not NULL. */
static int gemm_run(rxg_client *client, const struct gemm_opts *o, struct matrix mat[3],
		    const struct shm_layout *sh, const float *c_in, const float *want,
		    struct run *runs, struct check_result *chk)
{
	size_t c_bytes = (size_t)(o->m * o->n) * sizeof(float);
	int64_t ldc = o->row_major ? o->n : o->m;
	float *c_data = mat[MAT_C].data;
	struct rxg_gemm_args args = {
		.layout = o->row_major ? RXG_ROW_MAJOR : RXG_COL_MAJOR,
		.trans_a = o->trans_a,
		.trans_b = o->trans_b,
		.m = o->m,
		.n = o->n,
		.k = o->k,
		.alpha = o->alpha,
		.beta = o->beta,
		.a = mat[MAT_A].data,
		.b = mat[MAT_B].data,
		.c = mat[MAT_C].data,
		/* lda, ldb, ldc 0: the tightest, which is how struct matrix stores them. */
	};

	if (sh->buf) {
		/* Operands and result stay in the buffer: C is replaced there in place. */
		uint8_t *base = rxg_buffer_ptr(sh->buf);
		args.a = args.b = NULL;
		args.c = NULL;
		args.a_buf = args.b_buf = args.c_buf = sh->buf;
		args.a_offset = sh->off[MAT_A];
		args.b_offset = sh->off[MAT_B];
		args.c_offset = sh->off[MAT_C];
		c_data = (float *)(void *)(base + sh->off[MAT_C]);
	}
	for (int64_t r = 0; r < o->repeat; r++) {
		/* Every run starts from the same C, so that all runs compute the same thing. */
		if (c_in)
			memcpy(c_data, c_in, c_bytes);
		uint64_t t0 = now_ns(), id;
		int rc = rxg_submit_gemm(client, &args, &o->job, &id);
		if (rc == RXG_OK)
			rc = rxg_wait(client, id, &runs[r].t);
		runs[r].wall_ns = now_ns() - t0;
		if (rc != RXG_OK)
			return daemon_error(client, rc);
		if (!want)
			continue;
		double err;
		int64_t i, j;
		int bad = refgemm_compare(o->row_major, o->m, o->n, o->k, c_data, want, ldc, &err,
					  &i, &j);
		if (!chk->done || err > chk->max_err) {
			size_t idx = (size_t)(o->row_major ? i * ldc + j : i + j * ldc);
			chk->done = 1;
			chk->bad = bad;
			chk->bad_run = r + 1;
			chk->max_err = err;
			chk->i = i;
			chk->j = j;
			chk->got = c_data[idx];
			chk->want = want[idx];
		}
	}
	if (want)
		chk->tolerance = refgemm_tolerance(o->row_major, o->m, o->n, o->k, want, ldc);
	if (c_data != mat[MAT_C].data) /* for --out */
		memcpy(mat[MAT_C].data, c_data, c_bytes);
	return EXIT_OK;
}

/* --resident: A, B (and C's input when beta reads it) made into device tensors once, the
 * job run o->repeat times on them with its result into a tensor, C read back once into
 * mat[MAT_C] and checked against want when it is not NULL. Every run computes the same C:
 * the result goes to a tensor of its own, never over C's input. */
static int gemm_run_resident(rxg_client *client, const struct gemm_opts *o,
			     struct matrix mat[3], const float *want, struct run *runs,
			     struct resident_times *rt, struct check_result *chk)
{
	rxg_tensor *t[3] = { NULL }, *c_out = NULL;
	int64_t ldc = o->row_major ? o->n : o->m;
	int64_t floats[3];
	uint64_t t0;
	int rc = RXG_OK;
	struct rxg_gemm_args args = {
		.layout = o->row_major ? RXG_ROW_MAJOR : RXG_COL_MAJOR,
		.trans_a = o->trans_a,
		.trans_b = o->trans_b,
		.m = o->m,
		.n = o->n,
		.k = o->k,
		.alpha = o->alpha,
		.beta = o->beta,
	};

	memset(rt, 0, sizeof(*rt));
	for (int w = MAT_A; w <= MAT_C; w++) {
		int64_t rows, cols;

		stored_shape(o, w, &rows, &cols);
		floats[w] = rows * cols; /* checked by gemm_prepare */
	}
	t0 = now_ns();
	for (int w = MAT_A; w <= MAT_C && rc == RXG_OK; w++) {
		if (w == MAT_C && o->beta == 0.0f)
			break;
		rc = rxg_tensor_create(client, &floats[w], 1, mat[w].data, &t[w]);
		rt->upload_bytes += (uint64_t)floats[w] * sizeof(float);
	}
	rt->upload_ns = now_ns() - t0;
	if (rc == RXG_OK)
		rc = rxg_tensor_create(client, &floats[MAT_C], 1, NULL, &c_out);
	if (rc != RXG_OK) {
		rc = daemon_error(client, rc);
		goto out;
	}
	args.a_tensor = t[MAT_A];
	args.b_tensor = t[MAT_B];
	args.c_tensor = t[MAT_C];
	args.c_out_tensor = c_out;
	for (int64_t r = 0; r < o->repeat; r++) {
		uint64_t id;

		t0 = now_ns();
		rc = rxg_submit_gemm(client, &args, &o->job, &id);
		if (rc == RXG_OK)
			rc = rxg_wait(client, id, &runs[r].t);
		runs[r].wall_ns = now_ns() - t0;
		if (rc != RXG_OK) {
			rc = daemon_error(client, rc);
			goto out;
		}
	}
	t0 = now_ns();
	rc = rxg_tensor_read(c_out, mat[MAT_C].data, (size_t)floats[MAT_C]);
	rt->read_ns = now_ns() - t0;
	rt->read_bytes = (uint64_t)floats[MAT_C] * sizeof(float);
	if (rc != RXG_OK) {
		rc = daemon_error(client, rc);
		goto out;
	}
	rc = EXIT_OK;
	if (want) {
		double err;
		int64_t i, j;
		int bad = refgemm_compare(o->row_major, o->m, o->n, o->k, mat[MAT_C].data, want,
					  ldc, &err, &i, &j);
		size_t idx = (size_t)(o->row_major ? i * ldc + j : i + j * ldc);

		chk->done = 1;
		chk->bad = bad;
		chk->bad_run = o->repeat; /* the one result read back: the last run's */
		chk->max_err = err;
		chk->i = i;
		chk->j = j;
		chk->got = mat[MAT_C].data[idx];
		chk->want = want[idx];
		chk->tolerance = refgemm_tolerance(o->row_major, o->m, o->n, o->k, want, ldc);
	}
out:
	for (int w = MAT_A; w <= MAT_C; w++)
		rxg_tensor_free(t[w]);
	rxg_tensor_free(c_out);
	return rc;
}

static int cmd_gemm(int argc, char **argv, const char *socket)
{
	struct resident_times rt;
	struct gemm_opts o = {
		.socket = socket, .row_major = 1, .alpha = 1.0f, .beta = 0.0f, .seed = 1, .repeat = 1,
		.shm = SHM_AUTO,
	};
	struct shm_layout sh = { 0 };
	struct matrix mat[3] = { { 0 } };
	struct check_result chk = { 0 };
	rxg_client *client = NULL;
	float *c_in = NULL, *want = NULL;
	struct run *runs = NULL;
	char err[512];
	int rc;

	rc = gemm_parse(argc, argv, &o);
	if (rc != EXIT_OK)
		goto out;
	rc = gemm_load(&o, mat);
	if (rc != EXIT_OK)
		goto out;
	rc = gemm_host_memory_check(&o);
	if (rc != EXIT_OK)
		goto out;
	if (o.out_path && (rc = output_check("--out", o.out_path)) != EXIT_OK)
		goto out;
	if (o.beta != 0.0f && !o.path[MAT_C])
		fprintf(stderr, "rxgemm: warning: --beta %g without --c: C's old values are random "
				"(from --seed %llu)\n",
			(double)o.beta, (unsigned long long)o.seed);
	rc = gemm_prepare(&o, mat);
	if (rc != EXIT_OK)
		goto out;

	size_t c_bytes = (size_t)(o.m * o.n) * sizeof(float);
	int64_t ldc = o.row_major ? o.n : o.m;
	if (o.beta != 0.0f) {
		c_in = xmalloc(c_bytes);
		memcpy(c_in, mat[MAT_C].data, c_bytes);
	}
	runs = xmalloc((size_t)o.repeat * sizeof(*runs));

	rc = rxg_connect(o.socket, CLIENT_NAME, &client);
	if (rc != RXG_OK) {
		rc = daemon_error(NULL, rc);
		goto out;
	}
	if (o.check) {
		/* Computed before the runs, so that each run is checked as it comes. */
		want = xmalloc(c_bytes);
		if (c_in)
			memcpy(want, c_in, c_bytes);
		refgemm(o.row_major, o.trans_a, o.trans_b, o.m, o.n, o.k, o.alpha, mat[MAT_A].data,
			o.row_major ? mat[MAT_A].cols : mat[MAT_A].rows, mat[MAT_B].data,
			o.row_major ? mat[MAT_B].cols : mat[MAT_B].rows, o.beta, want, ldc);
	}
	if (o.resident) {
		rc = gemm_run_resident(client, &o, mat, want, runs, &rt, &chk);
	} else {
		rc = gemm_shm_setup(client, &o, mat, &sh);
		if (rc == EXIT_OK)
			rc = gemm_run(client, &o, mat, &sh, c_in, want, runs, &chk);
	}
	if (rc != EXIT_OK)
		goto out;

	if (o.json)
		gemm_report_json(&o, rxg_server_info(client), sh.buf != NULL,
				 o.resident ? &rt : NULL, runs, &chk);
	else
		gemm_report_text(&o, rxg_server_info(client), sh.buf != NULL,
				 o.resident ? &rt : NULL, runs, &chk);
	fflush(stdout);
	if (o.out_path && npy_write(o.out_path, mat[MAT_C].data, o.m, o.n, !o.row_major, err,
				    sizeof(err)) < 0) {
		fprintf(stderr, "rxgemm: %s\n", err);
		rc = EXIT_FILE;
		goto out;
	}
	rc = chk.bad ? EXIT_MISMATCH : EXIT_OK;
out:
	rxg_buffer_free(sh.buf);
	rxg_close(client);
	for (int w = MAT_A; w <= MAT_C; w++)
		free(mat[w].data);
	free(c_in);
	free(want);
	free(runs);
	return rc;
}

/* --- status and devices ------------------------------------------------------------------ */

/* The options of status and devices: --json, --socket and (status: prometheus not NULL)
 * --prometheus. */
static int simple_parse(const char *cmd, int argc, char **argv, const char **socket, int *json,
			int *prometheus)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "prometheus", no_argument, NULL, OPT_PROMETHEUS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	while ((opt = getopt_long(argc, argv, ":hV", options, NULL)) != -1) {
		switch (opt) {
		case OPT_SOCKET:
			*socket = optarg;
			break;
		case OPT_JSON:
			*json = 1;
			break;
		case OPT_PROMETHEUS:
			if (!prometheus)
				return usage_error("%s: --prometheus is an option of status", cmd);
			*prometheus = 1;
			break;
		case 'h':
			usage(stdout);
			exit(EXIT_OK);
		case 'V':
			printf("rxgemm %s\n", PACKAGE_VERSION);
			exit(EXIT_OK);
		default:
			return option_error(opt, argv);
		}
	}
	if (optind < argc)
		return usage_error("%s: unexpected argument '%s'", cmd, argv[optind]);
	return EXIT_OK;
}

static int fetch_status(const char *socket, struct rxg_status **st)
{
	rxg_client *client = NULL;
	int rc;

	rc = rxg_connect(socket, CLIENT_NAME, &client);
	if (rc != RXG_OK)
		return daemon_error(NULL, rc);
	rc = rxg_status(client, st);
	if (rc != RXG_OK)
		rc = daemon_error(client, rc);
	rxg_close(client);
	return rc;
}

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

/* --- sharing: clients, kernel variants, device utilisation (status and top) -------------- */

static double percent(double part, double whole)
{
	return whole > 0 ? 100.0 * part / whole : NAN;
}

static double avg_ms(uint64_t ns, uint64_t count)
{
	return count ? ns_to_ms((double)ns / (double)count) : NAN;
}

/* A number, or "-" where there is none (NaN: nothing to average, no interval yet). */
static void table_number(struct table *t, int decimals, double v)
{
	if (isnan(v))
		table_cell(t, "-");
	else
		table_cell(t, "%.*f", decimals, v);
}

static void table_head(struct table *t, const char *const *head)
{
	for (size_t i = 0; i < t->ncols; i++)
		table_cell(t, "%s", head[i]);
}

static void table_client_id(struct table *t, const struct rxg_client_stats *c, int departed)
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
	status_text_budget(st);
	status_text_sharing(st);
	status_text_shm(st);
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

static void json_timings(struct json_writer *w, const struct rxg_timings *t)
{
	json_begin_object(w);
	json_member_uint(w, "queued_ns", t->queued_ns);
	json_member_uint(w, "h2d_ns", t->h2d_ns);
	json_member_uint(w, "kernel_ns", t->kernel_ns);
	json_member_uint(w, "d2h_ns", t->d2h_ns);
	json_member_uint(w, "total_ns", t->total_ns);
	json_end_object(w);
}

static void json_devices(struct json_writer *w, const struct rxg_status *st)
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
static void status_json(const struct rxg_status *st)
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
 * bytes). */
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

static int cmd_status(int argc, char **argv, const char *socket)
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

static int cmd_devices(int argc, char **argv, const char *socket)
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

/* --- top ------------------------------------------------------------------------------- */

static const struct rxg_client_stats *find_client(const struct rxg_status *st, uint32_t id)
{
	for (size_t i = 0; st && i < st->n_clients; i++)
		if (st->clients[i].client_id == id)
			return &st->clients[i];
	return NULL;
}

static const struct rxg_kernel_stats *find_kernel(const struct rxg_status *st,
						  const char *kernel)
{
	for (size_t i = 0; st && i < st->n_kernel_stats; i++)
		if (strcmp(st->kernel_stats[i].kernel, kernel) == 0)
			return &st->kernel_stats[i];
	return NULL;
}

/* A counter's growth since the last frame, per second of the interval; NaN on the first
 * frame. A counter that went down (a restarted daemon) starts again from 0. */
static double rate(uint64_t now, uint64_t before, double interval_s, double scale)
{
	if (!(interval_s > 0))
		return NAN;
	return (double)(now >= before ? now - before : now) / scale / interval_s;
}

/* One frame: the daemon now (cur) and, when prev is given, what changed since prev. */
static void top_frame(FILE *f, const struct rxg_status *prev, const struct rxg_status *cur)
{
	static const char *const chead[] = { "id", "name", "uid", "pid", "in flight", "jobs/s",
					     "GFLOPS", "kernel %", "jobs ok", "failed",
					     "avg queued ms", "avg total ms" };
	static const char *const khead[] = { "kernel", "jobs/s", "GFLOPS", "jobs",
					     "avg kernel ms", "kernel GFLOPS" };
	double dt = prev ? (double)(cur->uptime_ns - prev->uptime_ns) / 1e9 : NAN;
	char up[64], budget[32], reserved[32], in_use[32], peak[32], pool[32];

	format_uptime(up, sizeof(up), cur->uptime_ns);
	fprintf(f, "rxgemm top - up %s, rxgemmd %s, %s\n", up, cur->daemon_version, cur->device);
	fprintf(f, "device:  ");
	if (prev)
		fprintf(f, "%.1f%% busy over the last %.1f s, ",
		       percent(rate(cur->device_busy_ns, prev->device_busy_ns, dt, 1.0), 1e9), dt);
	fprintf(f, "%.1f%% over %.1f s, %.1f%% since start, ", 100.0 * cur->device_utilisation_recent,
	       (double)cur->device_recent_window_ns / 1e9, 100.0 * cur->device_utilisation);
	if (cur->device_current_job_ns)
		fprintf(f, "a job running for %.3f s\n", (double)cur->device_current_job_ns / 1e9);
	else
		fprintf(f, "idle now\n");
	fprintf(f, "jobs:    %llu ok, %llu failed, %llu rejected, %lu queued, %lu waiting for memory",
	       (unsigned long long)cur->jobs_ok, (unsigned long long)cur->jobs_failed,
	       (unsigned long long)cur->requests_rejected, (unsigned long)cur->jobs_queued,
	       (unsigned long)cur->jobs_waiting_for_memory);
	if (prev)
		fprintf(f, "; %.1f jobs/s, %.2f GFLOPS",
		       rate(cur->jobs_ok + cur->jobs_failed, prev->jobs_ok + prev->jobs_failed, dt,
			    1.0),
		       rate(cur->flops_total, prev->flops_total, dt, 1e9));
	fprintf(f, "\n");
	format_bytes(budget, sizeof(budget), cur->vram_budget_bytes);
	format_bytes(reserved, sizeof(reserved), cur->vram_reserved_bytes);
	format_bytes(in_use, sizeof(in_use), cur->vram_in_use_bytes);
	format_bytes(peak, sizeof(peak), cur->vram_peak_bytes);
	format_bytes(pool, sizeof(pool), cur->vram_pool_bytes);
	fprintf(f, "memory:  budget %s, %s reserved, %s in use, peak %s, pool %s\n", budget, reserved,
	       in_use, peak, pool);
	fprintf(f, "clients: %lu connected, %llu since start\n\n", (unsigned long)cur->clients_connected,
	       (unsigned long long)cur->clients_total);

	struct table t = { .ncols = 12, .align = "rlrrrrrrrrrr" };
	table_head(&t, chead);
	for (size_t i = 0; i < cur->n_clients; i++) {
		const struct rxg_client_stats *c = &cur->clients[i];
		const struct rxg_client_stats *p = find_client(prev, c->client_id);
		/* A client new since the last frame did all its work within the interval. */
		static const struct rxg_client_stats zero;
		double cdt = prev ? dt : NAN;

		if (!p)
			p = &zero;
		table_client_id(&t, c, 0);
		table_cell(&t, "%lu", (unsigned long)c->jobs_in_flight);
		table_number(&t, 1, rate(c->jobs_ok + c->jobs_failed, p->jobs_ok + p->jobs_failed,
					 cdt, 1.0));
		table_number(&t, 2, rate(c->flops, p->flops, cdt, 1e9));
		table_number(&t, 1, percent(rate(c->timings.kernel_ns, p->timings.kernel_ns, cdt,
						 1.0), 1e9));
		table_cell(&t, "%llu", (unsigned long long)c->jobs_ok);
		table_cell(&t, "%llu", (unsigned long long)c->jobs_failed);
		table_number(&t, 3, avg_ms(c->timings.queued_ns, c->jobs_ok));
		table_number(&t, 3, avg_ms(c->timings.total_ns, c->jobs_ok));
	}
	table_print(&t, f);
	table_free(&t);
	if (!cur->n_kernel_stats)
		return;
	fprintf(f, "\n");
	struct table k = { .ncols = 6, .align = "lrrrrr" };
	table_head(&k, khead);
	for (size_t i = 0; i < cur->n_kernel_stats; i++) {
		const struct rxg_kernel_stats *v = &cur->kernel_stats[i];
		const struct rxg_kernel_stats *p = find_kernel(prev, v->kernel);
		static const struct rxg_kernel_stats zero;
		double kdt = prev ? dt : NAN;

		if (!p)
			p = &zero;
		table_cell(&k, "%s", v->kernel);
		table_number(&k, 1, rate(v->jobs, p->jobs, kdt, 1.0));
		table_number(&k, 2, rate(v->flops, p->flops, kdt, 1e9));
		table_cell(&k, "%llu", (unsigned long long)v->jobs);
		table_number(&k, 3, avg_ms(v->timings.kernel_ns, v->jobs));
		table_number(&k, 2, gflops((double)v->flops, (double)v->timings.kernel_ns));
	}
	table_print(&k, f);
	table_free(&k);
}

/* --- top: the live view ---------------------------------------------------------------- */

/* Set by the signal handlers, read by the frame loop (which poll() wakes for them). */
static volatile sig_atomic_t top_quit_signal, top_resized;

static void top_on_signal(int sig)
{
	if (sig == SIGWINCH)
		top_resized = 1;
	else
		top_quit_signal = sig;
}

/* The interactive terminal: the alternate screen, keys one at a time without echo, and
 * everything put back on every way out (q, Ctrl-C, SIGTERM, a lost daemon). */
struct top_term {
	int active;
	struct termios saved;
	int have_saved;
	unsigned cols, rows;
};

static void top_term_size(struct top_term *t)
{
	struct winsize ws;

	t->cols = 80;
	t->rows = 24;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row) {
		t->cols = ws.ws_col;
		t->rows = ws.ws_row;
	}
}

static void top_term_enter(struct top_term *t)
{
	struct sigaction sa = { .sa_handler = top_on_signal };

	/* No SA_RESTART: the signal must interrupt poll() so that the loop sees it. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGWINCH, &sa, NULL);
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &t->saved) == 0) {
		struct termios raw = t->saved;

		/* Keys without Enter and without echo; ISIG stays, so Ctrl-C is a SIGINT. */
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		t->have_saved = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
	}
	/* The alternate screen (what was on the terminal comes back on exit), cursor hidden. */
	fputs("\033[?1049h\033[?25l", stdout);
	fflush(stdout);
	t->active = 1;
	top_term_size(t);
}

static void top_term_leave(struct top_term *t)
{
	if (!t->active)
		return;
	fputs("\033[?25h\033[?1049l", stdout);
	fflush(stdout);
	if (t->have_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &t->saved);
	t->active = 0;
}

/* The display width of the first len bytes of a UTF-8 line: continuation bytes take no
 * column (wide characters are rare in device and client names; they count as one). */
static size_t top_cut(const char *line, size_t len, unsigned cols)
{
	size_t i = 0, w = 0;

	for (; i < len; i++) {
		if (((unsigned char)line[i] & 0xc0) == 0x80)
			continue;
		if (w == cols)
			break;
		w++;
	}
	return i;
}

/* A rendered frame onto the terminal: from the top left, each line cut to the width (a
 * line never wraps) and the rest of it cleared, no more lines than the screen holds. */
static void top_draw(const struct top_term *t, const char *frame)
{
	unsigned row = 0;

	fputs("\033[H", stdout);
	for (const char *p = frame; *p && row < t->rows; row++) {
		size_t len = strcspn(p, "\n");

		fwrite(p, 1, top_cut(p, len, t->cols), stdout);
		fputs("\033[K", stdout);
		p += len + (p[len] == '\n');
		/* No newline after the last row: it would scroll the screen by one. */
		if (row + 1 < t->rows && *p)
			fputs("\r\n", stdout);
	}
	fputs("\033[J", stdout);
	fflush(stdout);
}

/* Wait up to ms for a key, a signal or a resize. Returns 1 to quit ('q' or a signal), 0
 * otherwise; *resized says a redraw is due. */
static int top_wait(int interactive, int ms, int *resized)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000u;

	*resized = 0;
	for (;;) {
		uint64_t now = now_ns();
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		int left = now >= end ? 0 : (int)((end - now + 999999) / 1000000);
		int n;

		if (top_quit_signal)
			return 1;
		if (top_resized) {
			top_resized = 0;
			*resized = 1;
			return 0;
		}
		if (left == 0)
			return 0;
		n = poll(&pfd, interactive ? 1 : 0, left);
		if (n > 0 && (pfd.revents & POLLIN)) {
			char keys[32];
			ssize_t got = read(STDIN_FILENO, keys, sizeof(keys));

			for (ssize_t i = 0; i < got; i++)
				if (keys[i] == 'q' || keys[i] == 'Q')
					return 1;
			/* End of input (stdin closed): keep going on the timer alone. */
			if (got == 0)
				interactive = 0;
		}
	}
}

/* rxgemm top: a frame every -d seconds like top(1), over one connection (so top is one
 * client in its own table, not a new one each frame). On a terminal each frame replaces
 * the last on the alternate screen, cut to the terminal's size; q or Ctrl-C quits. In batch
 * mode (-b, or stdout not a terminal) frames follow one another, a blank line between;
 * --json prints each frame as one line of JSON (status --json's object), for scripts. */
static int cmd_top(int argc, char **argv, const char *socket)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "delay", required_argument, NULL, 'd' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "batch", no_argument, NULL, 'b' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct rxg_status *prev = NULL, *cur = NULL;
	struct top_term term = { 0 };
	float delay_s = 2.0f;
	int64_t iterations = 0; /* 0: until interrupted */
	int opt, rc, batch = !isatty(STDOUT_FILENO), json = 0, resized = 0;
	char *frame = NULL;
	size_t frame_len = 0;
	rxg_client *c = NULL;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":d:n:bh", options, NULL)) != -1) {
		switch (opt) {
		case OPT_SOCKET: socket = optarg; break;
		case 'd':
			if ((rc = parse_float("-d", optarg, &delay_s)) != EXIT_OK)
				return rc;
			if (delay_s < 0.01f || delay_s > 86400.0f)
				return usage_error("-d: '%s' is not between 0.01 and 86400 seconds",
						   optarg);
			break;
		case 'n':
			if ((rc = parse_int64("-n", optarg, 1, INT64_MAX, &iterations)) != EXIT_OK)
				return rc;
			break;
		case 'b': batch = 1; break;
		case OPT_JSON: json = 1; batch = 1; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return option_error(opt, argv);
		}
	}
	if (optind < argc)
		return usage_error("top: unexpected argument '%s'", argv[optind]);
	if ((rc = rxg_connect(socket, CLIENT_NAME "-top", &c)) != RXG_OK)
		return daemon_error(NULL, rc);
	if (!batch)
		top_term_enter(&term);
	for (int64_t n = 0; !iterations || n < iterations; n++) {
		if (n) {
			/* A resize redraws the last frame at once; the next one comes on time. */
			do {
				if (top_wait(!batch, (int)(delay_s * 1000.0f), &resized)) {
					rc = EXIT_OK;
					goto out;
				}
				if (resized) {
					top_term_size(&term);
					top_draw(&term, frame);
				}
			} while (resized);
		}
		if ((rc = rxg_status(c, &cur)) != RXG_OK) {
			/* One connection throughout: a daemon that restarts ends top with exit 3. */
			top_term_leave(&term);
			rc = daemon_error(c, rc);
			goto out;
		}
		if (json) {
			status_json(cur);
		} else if (batch) {
			if (n)
				fputc('\n', stdout);
			top_frame(stdout, prev, cur);
		} else {
			FILE *mem;

			free(frame);
			frame = NULL;
			if (!(mem = open_memstream(&frame, &frame_len))) {
				top_term_leave(&term);
				rc = file_error("out of memory");
				goto out;
			}
			top_frame(mem, prev, cur);
			fclose(mem);
			top_draw(&term, frame);
		}
		fflush(stdout);
		rxg_status_free(prev);
		prev = cur;
		cur = NULL;
	}
	rc = EXIT_OK;
out:
	top_term_leave(&term);
	free(frame);
	rxg_status_free(prev);
	rxg_close(c);
	return rc;
}

/* --- bench ------------------------------------------------------------------------------ */

/* rxgemm bench: a size sweep through the daemon, as a client sees it: kernel GFLOPS from
 * the daemon's profiling times and end-to-end GFLOPS from this process's wall clock, the
 * best of --repeat runs per size. (rxgemm-bench runs the kernels in-process, beside
 * CLBlast, for kernel work.) */
static int cmd_bench(int argc, char **argv, const char *socket)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "sizes", required_argument, NULL, 's' },
		{ "transa", no_argument, NULL, OPT_TRANSA },
		{ "transb", no_argument, NULL, OPT_TRANSB },
		{ "repeat", required_argument, NULL, OPT_REPEAT },
		{ "csv", no_argument, NULL, 'C' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	int64_t sizes[32], n_sizes = 0, repeat = 3;
	int opt, trans_a = 0, trans_b = 0, csv = 0, json = 0, rc;
	const char *list = "256,512,1024,2048";
	rxg_client *c = NULL;
	struct json_writer w;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case OPT_SOCKET: socket = optarg; break;
		case 's': list = optarg; break;
		case OPT_TRANSA: trans_a = 1; break;
		case OPT_TRANSB: trans_b = 1; break;
		case OPT_REPEAT:
			if ((rc = parse_int64("--repeat", optarg, 1, 1000, &repeat)) != EXIT_OK)
				return rc;
			break;
		case 'C': csv = 1; break;
		case OPT_JSON: json = 1; break;
		default: return option_error(opt, argv);
		}
	}
	if (optind < argc)
		return usage_error("bench: unexpected argument '%s'", argv[optind]);
	for (const char *p = list; *p; n_sizes++) {
		char num[32];
		size_t len = strcspn(p, ",");

		if (n_sizes == 32 || len == 0 || len >= sizeof(num))
			return usage_error("--sizes: '%s' is not a list of up to 32 sizes", list);
		memcpy(num, p, len);
		num[len] = '\0';
		if ((rc = parse_int64("--sizes", num, 1, 16384, &sizes[n_sizes])) != EXIT_OK)
			return rc;
		p += len + (p[len] == ',');
	}
	if ((rc = rxg_connect(socket, CLIENT_NAME, &c)) != RXG_OK)
		return daemon_error(NULL, rc);
	json_init(&w, stdout);
	if (csv) {
		printf("n,trans_a,trans_b,kernel_gflops,e2e_gflops,kernel_ms,wall_ms\n");
	} else if (json) {
		json_begin_object(&w);
		json_member_string(&w, "device", rxg_server_info(c)->device);
		json_key(&w, "results");
		json_begin_array(&w);
	} else
		printf("device: %s\n%6s %14s %14s %11s %11s\n", rxg_server_info(c)->device, "n",
		       "kernel GFLOPS", "e2e GFLOPS", "kernel ms", "wall ms");
	for (int64_t i = 0; i < n_sizes; i++) {
		int64_t n = sizes[i];
		size_t elems = (size_t)(n * n);
		float *a = xmalloc(elems * sizeof(float)), *b = xmalloc(elems * sizeof(float));
		float *cc = xmalloc(elems * sizeof(float));
		uint64_t seed = 1, best_kernel = 0, best_wall = 0;
		struct rxg_gemm_args g = { .layout = RXG_ROW_MAJOR, .trans_a = trans_a,
					   .trans_b = trans_b, .m = n, .n = n, .k = n, .alpha = 1.0f,
					   .a = a, .b = b, .c = cc };
		double flops = 2.0 * (double)n * (double)n * (double)n;

		refgemm_fill_random(a, elems, &seed);
		refgemm_fill_random(b, elems, &seed);
		for (int64_t r = 0; r < repeat; r++) {
			struct rxg_timings t;
			uint64_t t0 = now_ns(), wall;

			if ((rc = rxg_gemm(c, &g, &t)) != RXG_OK) {
				free(a), free(b), free(cc);
				rc = daemon_error(c, rc);
				rxg_close(c);
				return rc;
			}
			wall = now_ns() - t0;
			if (t.kernel_ns && (!best_kernel || t.kernel_ns < best_kernel))
				best_kernel = t.kernel_ns;
			if (!best_wall || wall < best_wall)
				best_wall = wall;
		}
		free(a), free(b), free(cc);
		if (csv) {
			printf("%lld,%d,%d,%.1f,%.1f,%.3f,%.3f\n", (long long)n, trans_a, trans_b,
			       gflops(flops, (double)best_kernel), gflops(flops, (double)best_wall),
			       ns_to_ms((double)best_kernel), ns_to_ms((double)best_wall));
		} else if (json) {
			json_begin_object(&w);
			json_member_int(&w, "n", n);
			json_member_number(&w, "kernel_gflops", gflops(flops, (double)best_kernel));
			json_member_number(&w, "e2e_gflops", gflops(flops, (double)best_wall));
			json_member_uint(&w, "kernel_ns", best_kernel);
			json_member_uint(&w, "wall_ns", best_wall);
			json_end_object(&w);
		} else {
			printf("%6lld %14.1f %14.1f %11.3f %11.3f\n", (long long)n,
			       gflops(flops, (double)best_kernel), gflops(flops, (double)best_wall),
			       ns_to_ms((double)best_kernel), ns_to_ms((double)best_wall));
		}
		fflush(stdout);
	}
	if (json) {
		json_end_array(&w);
		json_end_object(&w);
		putchar('\n');
	}
	rxg_close(c);
	return EXIT_OK;
}

/* --- nas ------------------------------------------------------------------------------- */

enum {
	OPT_GENOTYPE = 512,
	OPT_GENOTYPE_FILE,
	OPT_DATASET,
	OPT_NAS_C,
	OPT_LAYERS,
	OPT_CLASSES,
	OPT_SIZE,
	OPT_BATCH,
	OPT_WEIGHTS,
	OPT_WEIGHT_SEED,
	OPT_INPUT,
	OPT_INPUT_SEED,
	OPT_LOGITS_OUT,
	OPT_WARMUP,
};

/* Floats from a .npy (any 2-D shape, taken in C order; a Fortran-order file must be one row
 * or one column) or, for any other name, raw native floats. */
static int read_floats(const char *opt, const char *path, float **out, size_t *n)
{
	size_t len = strlen(path);
	char err[512];

	if (len > 4 && strcmp(path + len - 4, ".npy") == 0) {
		int64_t rows, cols;
		int fortran;

		if (npy_read(path, out, &rows, &cols, &fortran, err, sizeof(err)) < 0)
			return file_error("%s: %s", opt, err);
		if (fortran && rows > 1 && cols > 1) {
			free(*out);
			return file_error("%s: %s is in Fortran order; save it in C order", opt, path);
		}
		*n = (size_t)(rows * cols);
		return EXIT_OK;
	}
	FILE *f = fopen(path, "rb");
	long size;

	if (!f)
		return file_error("%s: cannot open %s: %s", opt, path, strerror(errno));
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return file_error("%s: cannot read %s", opt, path);
	}
	if (size % (long)sizeof(float)) {
		fclose(f);
		return file_error("%s: %s is %ld bytes, not whole float32 values", opt, path, size);
	}
	*out = xmalloc((size_t)size);
	*n = (size_t)size / sizeof(float);
	if (fread(*out, 1, (size_t)size, f) != (size_t)size) {
		fclose(f);
		free(*out);
		return file_error("%s: cannot read %s", opt, path);
	}
	fclose(f);
	return EXIT_OK;
}

static void print_parts(const char *title, const struct rxg_nas_part *p, size_t n,
			uint64_t total)
{
	printf("%s:\n", title);
	for (size_t i = 0; i < n; i++)
		printf("  %-14s %10.3f ms %5.1f%%  (%u steps)\n", p[i].name, ns_to_ms((double)p[i].ns),
		       total ? 100.0 * (double)p[i].ns / (double)total : 0.0, p[i].steps);
}

static void json_parts(struct json_writer *w, const char *key, const struct rxg_nas_part *p,
		       size_t n)
{
	json_key(w, key);
	json_begin_array(w);
	for (size_t i = 0; i < n; i++) {
		json_begin_object(w);
		json_member_string(w, "name", p[i].name);
		json_member_uint(w, "ns", p[i].ns);
		json_member_uint(w, "steps", p[i].steps);
		json_end_object(w);
	}
	json_end_array(w);
}

/* The daemon refused the network: RXG_EINVAL there is always about what the user gave
 * (this command checks the form of every number itself), so it is a usage error (exit 2)
 * or, when it is about a file's contents (--weights of the wrong length, the text of
 * --genotype-file), a file error (exit 4). Anything else is the daemon's (exit 3). */
static int nas_refusal(rxg_client *c, int rc, const char *gfile, const char *wfile)
{
	const char *msg = rxg_errmsg(c);

	if (rc != RXG_EINVAL)
		return daemon_error(c, rc);
	if (wfile && strncmp(msg, "weights ", 8) == 0)
		return file_error("--weights: %s: %s", wfile, msg);
	/* The parser's messages start "genotype text, byte N:", the checks of the parsed
	 * cells with the cell's name. */
	if (gfile && (strncmp(msg, "genotype", 8) == 0 || strncmp(msg, "normal ", 7) == 0 ||
		      strncmp(msg, "reduce ", 7) == 0))
		return file_error("--genotype-file: %s: %s", gfile, msg);
	return usage_error("nas: %s", msg);
}

static int cmd_nas(int argc, char **argv, const char *socket)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "genotype", required_argument, NULL, OPT_GENOTYPE },
		{ "genotype-file", required_argument, NULL, OPT_GENOTYPE_FILE },
		{ "dataset", required_argument, NULL, OPT_DATASET },
		{ "C", required_argument, NULL, OPT_NAS_C },
		{ "layers", required_argument, NULL, OPT_LAYERS },
		{ "classes", required_argument, NULL, OPT_CLASSES },
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "batch", required_argument, NULL, OPT_BATCH },
		{ "weights", required_argument, NULL, OPT_WEIGHTS },
		{ "weight-seed", required_argument, NULL, OPT_WEIGHT_SEED },
		{ "input", required_argument, NULL, OPT_INPUT },
		{ "input-seed", required_argument, NULL, OPT_INPUT_SEED },
		{ "logits-out", required_argument, NULL, OPT_LOGITS_OUT },
		{ "warmup", required_argument, NULL, OPT_WARMUP },
		{ "repeat", required_argument, NULL, OPT_REPEAT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	struct rxg_nas_args a = { 0 };
	struct rxg_nas_result *r = NULL;
	const char *genotype = "DARTS_V2", *gfile = NULL, *wfile = NULL, *ifile = NULL;
	const char *lfile = NULL;
	char *gtext = NULL;
	float *weights = NULL, *input = NULL, *logits = NULL;
	size_t n_weights = 0, n_input = 0;
	int64_t v, warmup = 3, repeat = 20, h = 0, w = 0;
	int opt, json = 0, rc;
	rxg_client *c = NULL;

	a.weight_seed = a.input_seed = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		rc = EXIT_OK;
		switch (opt) {
		case OPT_SOCKET: socket = optarg; break;
		case OPT_GENOTYPE: genotype = optarg; break;
		case OPT_GENOTYPE_FILE: gfile = optarg; break;
		case OPT_DATASET:
			if (strcmp(optarg, "cifar10") == 0 || strcmp(optarg, "cifar") == 0)
				a.dataset = RXG_NAS_CIFAR;
			else if (strcmp(optarg, "imagenet") == 0)
				a.dataset = RXG_NAS_IMAGENET;
			else
				return usage_error("--dataset: '%s' is neither cifar10 nor imagenet",
						   optarg);
			break;
		case OPT_NAS_C:
			if ((rc = parse_int64("--C", optarg, 1, 4096, &v)) == EXIT_OK)
				a.c = (int32_t)v;
			break;
		case OPT_LAYERS:
			if ((rc = parse_int64("--layers", optarg, 1, 256, &v)) == EXIT_OK)
				a.layers = (int32_t)v;
			break;
		case OPT_CLASSES:
			if ((rc = parse_int64("--classes", optarg, 1, 100000, &v)) == EXIT_OK)
				a.classes = (int32_t)v;
			break;
		case OPT_BATCH:
			if ((rc = parse_int64("--batch", optarg, 1, 65536, &v)) == EXIT_OK)
				a.batch = (int32_t)v;
			break;
		case OPT_SIZE: {
			char hs[16], *x = strchr(optarg, 'x');
			size_t hl = x ? (size_t)(x - optarg) : strlen(optarg);

			if (hl == 0 || hl >= sizeof(hs))
				return usage_error("--size: '%s' is not HxW or N", optarg);
			memcpy(hs, optarg, hl);
			hs[hl] = 0;
			if ((rc = parse_int64("--size", hs, 1, 4096, &h)) != EXIT_OK)
				return rc;
			w = h;
			if (x && (rc = parse_int64("--size", x + 1, 1, 4096, &w)) != EXIT_OK)
				return rc;
			a.height = (int32_t)h;
			a.width = (int32_t)w;
			break;
		}
		case OPT_WEIGHTS: wfile = optarg; break;
		case OPT_WEIGHT_SEED: rc = parse_uint64("--weight-seed", optarg, &a.weight_seed); break;
		case OPT_INPUT: ifile = optarg; break;
		case OPT_INPUT_SEED: rc = parse_uint64("--input-seed", optarg, &a.input_seed); break;
		case OPT_LOGITS_OUT: lfile = optarg; break;
		case OPT_WARMUP: rc = parse_int64("--warmup", optarg, 0, 100, &warmup); break;
		case OPT_REPEAT: rc = parse_int64("--repeat", optarg, 1, 1000, &repeat); break;
		case OPT_JSON: json = 1; break;
		default: return option_error(opt, argv);
		}
		if (rc != EXIT_OK)
			return rc;
	}
	if (optind < argc)
		return usage_error("nas: unexpected argument '%s'", argv[optind]);
	if (gfile) {
		FILE *f = fopen(gfile, "rb");
		size_t n;

		if (!f)
			return file_error("--genotype-file: cannot open %s: %s", gfile, strerror(errno));
		gtext = xmalloc(65536);
		n = fread(gtext, 1, 65535, f);
		fclose(f);
		gtext[n] = 0;
		genotype = gtext;
	}
	a.genotype = genotype;
	a.warmup = (uint32_t)warmup;
	a.repeat = (uint32_t)repeat;
	if (wfile && (rc = read_floats("--weights", wfile, &weights, &n_weights)) != EXIT_OK)
		goto out;
	if (ifile && (rc = read_floats("--input", ifile, &input, &n_input)) != EXIT_OK)
		goto out;
	a.weights = weights;
	a.n_weights = n_weights;
	{
		int imagenet = a.dataset == RXG_NAS_IMAGENET;
		uint64_t batch = a.batch ? (uint64_t)a.batch : 1;
		uint64_t hh = a.height ? (uint64_t)a.height : imagenet ? 224 : 32;
		uint64_t ww = a.width ? (uint64_t)a.width : imagenet ? 224 : 32;
		uint64_t classes = a.classes ? (uint64_t)a.classes : imagenet ? 1000 : 10;

		if (input && n_input != batch * 3 * hh * ww) {
			rc = file_error("--input: %s has %zu floats; %llu x 3 x %llu x %llu are %llu",
					ifile, n_input, (unsigned long long)batch,
					(unsigned long long)hh, (unsigned long long)ww,
					(unsigned long long)(batch * 3 * hh * ww));
			goto out;
		}
		a.input = input;
		if (lfile)
			a.logits = logits = xmalloc((size_t)(batch * classes) * sizeof(float));
	}
	if (lfile && (rc = output_check("--logits-out", lfile)) != EXIT_OK)
		goto out;
	if ((rc = rxg_connect(socket, CLIENT_NAME, &c)) != RXG_OK) {
		rc = daemon_error(NULL, rc);
		goto out;
	}
	if ((rc = rxg_nas_eval(c, &a, &r)) != RXG_OK) {
		rc = nas_refusal(c, rc, gfile, wfile);
		goto out;
	}
	rc = EXIT_OK;
	if (lfile) {
		char err[512];

		if (npy_write(lfile, logits, r->batch, r->classes, 0, err, sizeof(err)) < 0) {
			rc = file_error("--logits-out: %s", err);
			goto out;
		}
	}
	if (json) {
		struct json_writer jw;

		json_init(&jw, stdout);
		json_begin_object(&jw);
		json_member_string(&jw, "genotype", r->genotype);
		json_member_uint(&jw, "params", r->params);
		json_member_uint(&jw, "macs", r->macs);
		json_member_uint(&jw, "weight_floats", r->weight_floats);
		json_member_uint(&jw, "peak_device_bytes", r->peak_device_bytes);
		json_member_uint(&jw, "activation_bytes", r->activation_bytes);
		json_member_int(&jw, "batch", r->batch);
		json_member_int(&jw, "batch_piece", r->batch_piece);
		json_member_uint(&jw, "steps", r->steps);
		json_member_uint(&jw, "latency_median_ns", r->latency_median_ns);
		json_member_uint(&jw, "latency_p90_ns", r->latency_p90_ns);
		json_member_uint(&jw, "latency_mean_ns", r->latency_mean_ns);
		json_key(&jw, "run_ns");
		json_begin_array(&jw);
		for (size_t i = 0; i < r->n_runs; i++)
			json_uint(&jw, r->run_ns[i]);
		json_end_array(&jw);
		json_parts(&jw, "by_op", r->by_op, r->n_by_op);
		json_parts(&jw, "by_cell", r->by_cell, r->n_by_cell);
		json_end_object(&jw);
		putchar('\n');
	} else {
		printf("device:     %s\n", rxg_server_info(c)->device);
		printf("genotype:   %s\n", *r->genotype ? r->genotype : "(supernet)");
		printf("params:     %llu (%.3f M)\n", (unsigned long long)r->params,
		       (double)r->params / 1e6);
		printf("mult-adds:  %llu per image (%.1f M)\n", (unsigned long long)r->macs,
		       (double)r->macs / 1e6);
		printf("memory:     %.1f MiB on the device (activations %.1f MiB)\n",
		       (double)r->peak_device_bytes / 1048576.0,
		       (double)r->activation_bytes / 1048576.0);
		printf("batch:      %d%s\n", r->batch,
		       r->batch_piece < r->batch ? " (split to fit the budget)" : "");
		printf("latency:    median %.3f ms, p90 %.3f ms, mean %.3f ms over %zu runs\n",
		       ns_to_ms((double)r->latency_median_ns), ns_to_ms((double)r->latency_p90_ns),
		       ns_to_ms((double)r->latency_mean_ns), r->n_runs);
		if (r->n_by_op) {
			print_parts("by operation (mean)", r->by_op, r->n_by_op, r->latency_mean_ns);
			print_parts("by cell (mean)", r->by_cell, r->n_by_cell, r->latency_mean_ns);
		}
	}
out:
	rxg_nas_result_free(r);
	rxg_close(c);
	free(gtext);
	free(weights);
	free(input);
	free(logits);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *socket = NULL;
	int opt;

	/* Our own messages, and the exit code 2 a script can rely on. */
	opterr = 0;
	/* '+': stop at the command; its options are parsed by the command. */
	while ((opt = getopt_long(argc, argv, "+:hV", options, NULL)) != -1) {
		switch (opt) {
		case OPT_SOCKET:
			socket = optarg;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("rxgemm %s\n", PACKAGE_VERSION);
			return EXIT_OK;
		default:
			return option_error(opt, argv);
		}
	}
	if (optind >= argc)
		return usage_error("no command given (gemm, status, devices, bench, top or nas)");

	const char *cmd = argv[optind];
	int cmd_argc = argc - optind;
	char **cmd_argv = argv + optind;
	/* 0, not 1: glibc then starts afresh, dropping the '+' mode of the first scan. */
	optind = 0;
	if (strcmp(cmd, "gemm") == 0)
		return cmd_gemm(cmd_argc, cmd_argv, socket);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(cmd_argc, cmd_argv, socket);
	if (strcmp(cmd, "devices") == 0)
		return cmd_devices(cmd_argc, cmd_argv, socket);
	if (strcmp(cmd, "bench") == 0)
		return cmd_bench(cmd_argc, cmd_argv, socket);
	if (strcmp(cmd, "nas") == 0)
		return cmd_nas(cmd_argc, cmd_argv, socket);
	if (strcmp(cmd, "top") == 0)
		return cmd_top(cmd_argc, cmd_argv, socket);
	return usage_error("unknown command '%s' (gemm, status, devices, bench, top or nas)", cmd);
}

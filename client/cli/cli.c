/* cli.c: rxgemm(1), the command-line client of rxgemmd: main, the dispatch to the
 * commands (one file each, cmd-NAME.c), the help text, and what every command uses to
 * parse its options and to report an error with its exit code.
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
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "rxgemm.h"

/* The help text of every command. Over 100 lines, but one fprintf of strings in the order
 * rxgemm --help prints them, which is easiest to keep in step with rxgemm(1). */
void usage(FILE *f)
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
		"              [--warmup W] [--repeat R] [--breakdown] [--json]\n"
		"       rxgemm [--socket PATH] nas-search (--train-images F.npy --train-labels F.npy\n"
		"              --valid-images F.npy --valid-labels F.npy | --cifar10 F.bin ...)\n"
		"              [--C C] [--layers L] [--classes K] [--batch N] [--epochs E]\n"
		"              [--max-steps S] [--seed S] [--out-genotype F] [--out-alphas F.npy]\n"
		"              [--state F [--checkpoint-every N]] [--resume F] [--json]\n"
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
		"  nas-search run a DARTS architecture search on the daemon's device and write\n"
		"             the genotype it finds\n"
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
		"                    float32 ('<f4') .npy files, C or Fortran order, holding the\n"
		"                    stored matrices: A M x K (K x M with --transa), B K x N (N x K\n"
		"                    with --transb), C M x N. --c is read only when beta != 0.\n"
		"                    A matrix without a file is random. A 3-D file is a stack: a\n"
		"                    batch of products, broadcast as numpy's matmul does (a single\n"
		"                    matrix serves every product). F.npz:NAME is the array NAME of\n"
		"                    a numpy.savez archive (F.npz alone: its only array).\n"
		"  --seed S          random matrices: uniform in [-1, 1), drawn for A, B and C in\n"
		"                    that order from one generator seeded with S (default 1)\n"
		"  --out FILE        write the result C as .npy (C order; Fortran with --col-major;\n"
		"                    a batch as a 3-D stack in C order)\n"
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
		"nas-search options (docs/NAS.md, \"Search jobs\"):\n"
		"  --train-images F, --valid-images F  N x 3 x H x W float32 .npy files\n"
		"  --train-labels F, --valid-labels F  N integer labels (.npy)\n"
		"  --cifar10 F       CIFAR-10 binary batches (data_batch_N.bin, repeatable),\n"
		"                    normalised and split in halves as the reference does\n"
		"  --C, --layers, --classes, --batch, --nodes, --multiplier, --epochs, --seed\n"
		"                    the search network and run (defaults 16, 8, 10, 64, 4, 4, 50, 0)\n"
		"  --max-steps S     stop after S steps in all\n"
		"  --lr, --lr-min, --momentum, --weight-decay, --grad-clip, --arch-lr,\n"
		"  --arch-weight-decay X   the optimisers (the reference's defaults)\n"
		"  --progress-every N  a progress report every N steps (default 1; 0: none)\n"
		"  --out-genotype F  write the genotype text (what nas --genotype-file reads)\n"
		"  --out-alphas F    write the alphas, 2 x edges x 8 float32, as .npy\n"
		"  --state F         keep the state in F every --checkpoint-every steps (default\n"
		"                    50) and at the end or at Ctrl-C; --resume F continues it\n"
		"  --json            JSON lines: one per report, then the result\n"
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

int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("rxgemm: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'rxgemm --help'.\n", stderr);
	return EXIT_USAGE;
}

/* A file we cannot use: unreadable, not a float32 matrix, or not of the shape the job
 * needs. */
int file_error(const char *fmt, ...)
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
int option_error(int opt, char **argv)
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

int daemon_error(rxg_client *c, int rc)
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
int output_check(const char *opt, const char *path)
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

void *xmalloc(size_t bytes)
{
	void *p = malloc(bytes ? bytes : 1);

	if (!p) {
		fprintf(stderr, "rxgemm: out of memory (%zu bytes)\n", bytes);
		exit(EXIT_FILE);
	}
	return p;
}

/* --- numbers ----------------------------------------------------------------------------- */

int parse_int64(const char *opt, const char *s, int64_t min, int64_t max, int64_t *out)
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

int parse_uint64(const char *opt, const char *s, uint64_t *out)
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

int parse_float(const char *opt, const char *s, float *out)
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

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* --- status and devices ------------------------------------------------------------------ */

/* The options of status and devices: --json, --socket and (status: prometheus not NULL)
 * --prometheus. */
int simple_parse(const char *cmd, int argc, char **argv, const char **socket, int *json,
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

int fetch_status(const char *socket, struct rxg_status **st)
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
	if (strcmp(cmd, "nas-search") == 0)
		return cmd_nas_search(cmd_argc, cmd_argv, socket);
	if (strcmp(cmd, "top") == 0)
		return cmd_top(cmd_argc, cmd_argv, socket);
	return usage_error("unknown command '%s' (gemm, status, devices, bench, top or nas)", cmd);
}

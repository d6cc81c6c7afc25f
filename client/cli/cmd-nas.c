/* cmd-nas.c: rxgemm nas: evaluate one NAS genotype (or the supernet) through the daemon:
 * options, the genotype and weights from files, the request, and its latency report as
 * text or JSON. */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "npy.h"
#include "cli.h"
#include "rxgemm.h"

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
	OPT_BREAKDOWN,
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

/* What the options of rxgemm nas ask for; the args' pointers are filled by nas_load. */
struct nas_opts {
	struct rxg_nas_args a;
	const char *socket;
	const char *genotype, *gfile, *wfile, *ifile, *lfile;
	int64_t warmup, repeat;
	int json;
};

/* What nas_load allocates for the request, freed by nas_files_free. */
struct nas_files {
	char *gtext;
	float *weights, *input, *logits;
};

/* --size HxW or N (square). */
static int nas_parse_size(const char *arg, struct rxg_nas_args *a)
{
	char hs[16];
	const char *x = strchr(arg, 'x');
	size_t hl = x ? (size_t)(x - arg) : strlen(arg);
	int64_t h, w;
	int rc;

	if (hl == 0 || hl >= sizeof(hs))
		return usage_error("--size: '%s' is not HxW or N", arg);
	memcpy(hs, arg, hl);
	hs[hl] = 0;
	if ((rc = parse_int64("--size", hs, 1, 4096, &h)) != EXIT_OK)
		return rc;
	w = h;
	if (x && (rc = parse_int64("--size", x + 1, 1, 4096, &w)) != EXIT_OK)
		return rc;
	a->height = (int32_t)h;
	a->width = (int32_t)w;
	return EXIT_OK;
}

/* The options into o; EXIT_OK or the exit code of a usage error (already reported). */
static int nas_parse(int argc, char **argv, struct nas_opts *o)
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
		{ "breakdown", no_argument, NULL, OPT_BREAKDOWN },
		{ NULL, 0, NULL, 0 },
	};
	struct rxg_nas_args *a = &o->a;
	int64_t v;
	int opt, rc;

	a->weight_seed = a->input_seed = 1;
	o->genotype = "DARTS_V2";
	o->warmup = 3;
	o->repeat = 20;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		rc = EXIT_OK;
		switch (opt) {
		case OPT_SOCKET: o->socket = optarg; break;
		case OPT_GENOTYPE: o->genotype = optarg; break;
		case OPT_GENOTYPE_FILE: o->gfile = optarg; break;
		case OPT_DATASET:
			if (strcmp(optarg, "cifar10") == 0 || strcmp(optarg, "cifar") == 0)
				a->dataset = RXG_NAS_CIFAR;
			else if (strcmp(optarg, "imagenet") == 0)
				a->dataset = RXG_NAS_IMAGENET;
			else
				return usage_error("--dataset: '%s' is neither cifar10 nor imagenet",
						   optarg);
			break;
		case OPT_NAS_C:
			if ((rc = parse_int64("--C", optarg, 1, 4096, &v)) == EXIT_OK)
				a->c = (int32_t)v;
			break;
		case OPT_LAYERS:
			if ((rc = parse_int64("--layers", optarg, 1, 256, &v)) == EXIT_OK)
				a->layers = (int32_t)v;
			break;
		case OPT_CLASSES:
			if ((rc = parse_int64("--classes", optarg, 1, 100000, &v)) == EXIT_OK)
				a->classes = (int32_t)v;
			break;
		case OPT_BATCH:
			if ((rc = parse_int64("--batch", optarg, 1, 65536, &v)) == EXIT_OK)
				a->batch = (int32_t)v;
			break;
		case OPT_SIZE: rc = nas_parse_size(optarg, a); break;
		case OPT_WEIGHTS: o->wfile = optarg; break;
		case OPT_WEIGHT_SEED: rc = parse_uint64("--weight-seed", optarg, &a->weight_seed); break;
		case OPT_INPUT: o->ifile = optarg; break;
		case OPT_INPUT_SEED: rc = parse_uint64("--input-seed", optarg, &a->input_seed); break;
		case OPT_LOGITS_OUT: o->lfile = optarg; break;
		case OPT_WARMUP: rc = parse_int64("--warmup", optarg, 0, 100, &o->warmup); break;
		case OPT_REPEAT: rc = parse_int64("--repeat", optarg, 1, 1000, &o->repeat); break;
		case OPT_JSON: o->json = 1; break;
		case OPT_BREAKDOWN: a->want_breakdown = 1; break;
		default: return option_error(opt, argv);
		}
		if (rc != EXIT_OK)
			return rc;
	}
	if (optind < argc)
		return usage_error("nas: unexpected argument '%s'", argv[optind]);
	return EXIT_OK;
}

static void nas_files_free(struct nas_files *fl)
{
	free(fl->gtext);
	free(fl->weights);
	free(fl->input);
	free(fl->logits);
}

/* Read the genotype, weights and input files, make room for the logits and point o->a at
 * them (fl owns them, also on failure). EXIT_OK or the exit code of an error reported. */
static int nas_load(struct nas_opts *o, struct nas_files *fl)
{
	struct rxg_nas_args *a = &o->a;
	size_t n_weights = 0, n_input = 0;
	int rc;

	if (o->gfile) {
		FILE *f = fopen(o->gfile, "rb");
		size_t n;

		if (!f)
			return file_error("--genotype-file: cannot open %s: %s", o->gfile,
					  strerror(errno));
		fl->gtext = xmalloc(65536);
		n = fread(fl->gtext, 1, 65535, f);
		fclose(f);
		fl->gtext[n] = 0;
		o->genotype = fl->gtext;
	}
	a->genotype = o->genotype;
	a->warmup = (uint32_t)o->warmup;
	a->repeat = (uint32_t)o->repeat;
	if (o->wfile &&
	    (rc = read_floats("--weights", o->wfile, &fl->weights, &n_weights)) != EXIT_OK)
		return rc;
	if (o->ifile && (rc = read_floats("--input", o->ifile, &fl->input, &n_input)) != EXIT_OK)
		return rc;
	a->weights = fl->weights;
	a->n_weights = n_weights;

	/* The daemon's defaults, to know the lengths of input and logits. */
	int imagenet = a->dataset == RXG_NAS_IMAGENET;
	uint64_t batch = a->batch ? (uint64_t)a->batch : 1;
	uint64_t hh = a->height ? (uint64_t)a->height : imagenet ? 224 : 32;
	uint64_t ww = a->width ? (uint64_t)a->width : imagenet ? 224 : 32;
	uint64_t classes = a->classes ? (uint64_t)a->classes : imagenet ? 1000 : 10;

	if (fl->input && n_input != batch * 3 * hh * ww)
		return file_error("--input: %s has %zu floats; %llu x 3 x %llu x %llu are %llu",
				  o->ifile, n_input, (unsigned long long)batch,
				  (unsigned long long)hh, (unsigned long long)ww,
				  (unsigned long long)(batch * 3 * hh * ww));
	a->input = fl->input;
	if (o->lfile)
		a->logits = fl->logits = xmalloc((size_t)(batch * classes) * sizeof(float));
	return EXIT_OK;
}

static void nas_report_json(const struct rxg_nas_result *r)
{
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
	json_member_bool(&jw, "profiled", r->profiled);
	if (r->profiled)
		json_member_uint(&jw, "unprofiled_median_ns", r->unprofiled_median_ns);
	json_parts(&jw, "by_op", r->by_op, r->n_by_op);
	json_parts(&jw, "by_cell", r->by_cell, r->n_by_cell);
	json_end_object(&jw);
	putchar('\n');
}

static void nas_report_text(const char *device, const struct rxg_nas_result *r)
{
	printf("device:     %s\n", device);
	printf("genotype:   %s\n", *r->genotype ? r->genotype : "(supernet)");
	printf("params:     %llu (%.3f M)\n", (unsigned long long)r->params,
	       (double)r->params / 1e6);
	printf("mult-adds:  %llu per image (%.1f M)\n", (unsigned long long)r->macs,
	       (double)r->macs / 1e6);
	printf("memory:     %.1f MiB on the device (activations %.1f MiB)\n",
	       (double)r->peak_device_bytes / 1048576.0, (double)r->activation_bytes / 1048576.0);
	printf("batch:      %d%s\n", r->batch,
	       r->batch_piece < r->batch ? " (split to fit the budget)" : "");
	printf("latency:    median %.3f ms, p90 %.3f ms, mean %.3f ms over %zu runs\n",
	       ns_to_ms((double)r->latency_median_ns), ns_to_ms((double)r->latency_p90_ns),
	       ns_to_ms((double)r->latency_mean_ns), r->n_runs);
	if (r->profiled)
		printf("profiled:   every step timed for the breakdowns below; without that, "
		       "median %.3f ms\n", ns_to_ms((double)r->unprofiled_median_ns));
	if (r->n_by_op) {
		print_parts("by operation (mean)", r->by_op, r->n_by_op, r->latency_mean_ns);
		print_parts("by cell (mean)", r->by_cell, r->n_by_cell, r->latency_mean_ns);
	}
}

int cmd_nas(int argc, char **argv, const char *socket)
{
	struct nas_opts o = { .socket = socket };
	struct nas_files fl = { 0 };
	struct rxg_nas_result *r = NULL;
	rxg_client *c = NULL;
	int rc;

	if ((rc = nas_parse(argc, argv, &o)) != EXIT_OK)
		return rc;
	if ((rc = nas_load(&o, &fl)) != EXIT_OK)
		goto out;
	if (o.lfile && (rc = output_check("--logits-out", o.lfile)) != EXIT_OK)
		goto out;
	if ((rc = rxg_connect(o.socket, CLIENT_NAME, &c)) != RXG_OK) {
		rc = daemon_error(NULL, rc);
		goto out;
	}
	if ((rc = rxg_nas_eval(c, &o.a, &r)) != RXG_OK) {
		rc = nas_refusal(c, rc, o.gfile, o.wfile);
		goto out;
	}
	rc = EXIT_OK;
	if (o.lfile) {
		char err[512];

		if (npy_write(o.lfile, fl.logits, r->batch, r->classes, 0, err, sizeof(err)) < 0) {
			rc = file_error("--logits-out: %s", err);
			goto out;
		}
	}
	if (o.json)
		nas_report_json(r);
	else
		nas_report_text(rxg_server_info(c)->device, r);
out:
	rxg_nas_result_free(r);
	rxg_close(c);
	nas_files_free(&fl);
	return rc;
}

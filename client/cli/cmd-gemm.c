/* cmd-gemm.c: rxgemm gemm: one GEMM (or a batch, or --repeat of them) through the daemon,
 * its operands random, from .npy files (3-D ones: a batch) or .npz archives, or resident in
 * device tensors, inline or in shared memory, checked against the CPU reference with
 * --check, reported as text or JSON.
 *
 * Batches broadcast as numpy's matmul does: A, B and C are each a matrix (2-D, or a stack
 * of one) or a stack of the batch's length; a single matrix is used for every product of
 * the batch (it is repeated here, and sent once per product). */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "npy.h"
#include "refgemm.h"
#include "cli.h"
#include "rxgemm.h"

/* --- gemm: options and matrices ---------------------------------------------------------- */

struct gemm_opts {
	const char *socket;
	int64_t m, n, k; /* 0: not given (yet) */
	int64_t batch;   /* products in the job: 1 unless a file is a stack */
	int batched;     /* a file is 3-D, so the result is too (even for a batch of 1) */
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
/* Below this the socket copy costs next to nothing; the library's own staging of host
 * arrays (RXGEMM_STAGE_BYTES) starts at the same size, so "inline" below means inline. */
#define SHM_AUTO_MIN_BYTES (256u << 10)

enum { MAT_A, MAT_B, MAT_C };
static const char *const mat_name[3] = { "A", "B", "C" };

/* One operand as it will be sent: batch matrices one after another, each stored tightly
 * (ld = its inner extent) in the chosen layout. rows x cols is the stored shape. While
 * data is still as read from a file, it is in the file's order: with file_fortran, element
 * (b, i, j) of a stack is at b + i * batch + j * batch * rows (numpy's Fortran order). */
struct matrix {
	float *data;
	int64_t batch, rows, cols;
	int ndims; /* the file's: 2 or 3 */
	int from_file;
	int file_fortran;
};

/* The options of rxgemm gemm into o. Over 100 lines because gemm has 20 options: one flat
 * case each, with nothing to share between them. */
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

/* The shape of a file's array, as numpy prints it. */
static void file_shape(const struct matrix *x, char *buf, size_t len)
{
	if (x->ndims == 3)
		snprintf(buf, len, "(%lld, %lld, %lld)", (long long)x->batch, (long long)x->rows,
			 (long long)x->cols);
	else
		snprintf(buf, len, "(%lld, %lld)", (long long)x->rows, (long long)x->cols);
}

/* Read operand w's file (.npy, or an array of a .npz archive): a matrix or a stack. */
static int load_file(const char *path, int w, struct matrix *x)
{
	struct npy_array arr;
	char err[512], shape[96];

	if (npy_load(path, 2, 3, &arr, err, sizeof(err)) < 0)
		return file_error("%s", err);
	int off = arr.ndims - 2;
	x->data = arr.data;
	x->from_file = 1;
	x->file_fortran = arr.fortran_order;
	x->ndims = arr.ndims;
	x->batch = off ? arr.dims[0] : 1;
	x->rows = arr.dims[off];
	x->cols = arr.dims[off + 1];
	file_shape(x, shape, sizeof(shape));
	if (x->rows < 1 || x->cols < 1 || x->batch < 1)
		return file_error("%s: shape %s is empty: %s needs %sa row and a column", path, shape,
				  mat_name[w], x->batch < 1 ? "a matrix with " : "");
	return EXIT_OK;
}

/* The batch the files' stacks give, numpy's way: stacks of one length, or of 1. */
static int gemm_batch(struct gemm_opts *o, const struct matrix mat[3])
{
	int first = -1;

	o->batch = 1;
	for (int w = MAT_A; w <= MAT_C; w++) {
		if (!mat[w].from_file)
			continue;
		o->batched |= mat[w].ndims == 3;
		if (mat[w].batch == 1)
			continue;
		if (first >= 0 && mat[w].batch != o->batch)
			return file_error("gemm: %s (%s) is a stack of %lld matrices and %s (%s) one of "
					  "%lld: they do not broadcast (stacks must be as long as "
					  "each other, or one a single matrix)",
					  mat_name[first], o->path[first], (long long)o->batch,
					  mat_name[w], o->path[w], (long long)mat[w].batch);
		first = w;
		o->batch = mat[w].batch;
	}
	return EXIT_OK;
}

/* Read the files, fill in the dimensions they imply, and check every file against the
 * dimensions (given or inferred). Matrices stay in their files' order here. */
static int gemm_load(struct gemm_opts *o, struct matrix mat[3])
{
	char shape[96];
	int rc;

	for (int w = MAT_A; w <= MAT_C; w++) {
		if (!o->path[w])
			continue;
		if (w == MAT_C && o->beta == 0.0f) {
			fprintf(stderr, "rxgemm: note: --c %s is not read because beta is 0\n",
				o->path[w]);
			continue;
		}
		rc = load_file(o->path[w], w, &mat[w]);
		if (rc != EXIT_OK)
			return rc;
	}
	rc = gemm_batch(o, mat);
	if (rc != EXIT_OK)
		return rc;
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
		if (!mat[w].from_file || (mat[w].rows == rows && mat[w].cols == cols))
			continue;
		file_shape(&mat[w], shape, sizeof(shape));
		return file_error("%s: shape %s does not fit: expected %s(%lld, %lld), as %s with "
				  "m = %lld, n = %lld, k = %lld",
				  o->path[w], shape, mat[w].ndims == 3 ? "matrices " : "",
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
		bytes[w] = (double)o->batch * (double)rows * (double)cols * sizeof(float);
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
	char batch[48] = "";
	if (o->batched)
		snprintf(batch, sizeof(batch), "batch = %lld, ", (long long)o->batch);
	return usage_error("gemm: %sm = %lld, n = %lld, k = %lld needs %s of memory here (A %s, "
			   "B %s, C %s%s); this machine has %s",
			   batch, (long long)o->m, (long long)o->n, (long long)o->k, need, each[MAT_A],
			   each[MAT_B], each[MAT_C],
			   o->beta != 0.0f || o->check ? ", C again for beta or --check" : "", have);
}

/* Operand x as read from its file, into new memory: o->batch matrices (the file's one
 * repeated when it is not a stack) in the chosen layout. */
static float *stack_from_file(const struct gemm_opts *o, const struct matrix *x, size_t bytes)
{
	int64_t rows = x->rows, cols = x->cols, fb = x->batch, each = rows * cols;
	float *stored = xmalloc(bytes);

	for (int64_t b = 0; b < o->batch; b++) {
		int64_t fbi = fb == 1 ? 0 : b;
		float *dst = stored + b * each;
		for (int64_t i = 0; i < rows; i++)
			for (int64_t j = 0; j < cols; j++)
				dst[o->row_major ? i * cols + j : i + j * rows] =
					x->data[x->file_fortran ? fbi + i * fb + j * fb * rows
								: fbi * each + i * cols + j];
	}
	return stored;
}

/* Bring every operand into the chosen layout (files) or make it (random, from one
 * generator in the order A, B, C, one matrix each that a batch repeats). C exists even
 * when beta == 0: it receives the result. */
static int gemm_prepare(const struct gemm_opts *o, struct matrix mat[3])
{
	uint64_t state = o->seed;

	for (int w = MAT_A; w <= MAT_C; w++) {
		struct matrix *x = &mat[w];
		int64_t rows, cols;
		size_t each, bytes;

		stored_shape(o, w, &rows, &cols);
		if (matrix_bytes(rows, cols, &each) < 0 ||
		    __builtin_mul_overflow(each, (size_t)o->batch, &bytes))
			return usage_error("gemm: %s (%lld x %lld%s) is too large for this machine",
					   mat_name[w], (long long)rows, (long long)cols,
					   o->batch > 1 ? ", times the batch" : "");
		if (x->from_file) {
			/* Fortran order is column-major; C order is row-major; a stack in C order
			 * is its matrices one after another. */
			if (x->batch == o->batch && x->file_fortran == !o->row_major &&
			    (x->batch == 1 || !x->file_fortran))
				continue;
			float *stored = stack_from_file(o, x, bytes);
			free(x->data);
			x->data = stored;
			x->file_fortran = !o->row_major;
			x->batch = o->batch;
			continue;
		}
		x->rows = rows;
		x->cols = cols;
		x->batch = o->batch;
		x->data = xmalloc(bytes);
		if (w == MAT_C && o->beta == 0.0f) {
			/* Not sent and not read: zeros make the output deterministic. */
			memset(x->data, 0, bytes);
			continue;
		}
		refgemm_fill_random(x->data, each / sizeof(float), &state);
		for (int64_t b = 1; b < o->batch; b++)
			memcpy((char *)x->data + (size_t)b * each, x->data, each);
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
	double tolerance; /* of the worst matrix */
	int64_t b, i, j;  /* the worst element: matrix b of the batch */
	float got, want;
};

/* Check one run's result got (every matrix of the batch) against want, and keep it in chk
 * when it is the worst run so far. */
static void check_run(const struct gemm_opts *o, const float *got, const float *want,
		      int64_t run, struct check_result *chk)
{
	int64_t ldc = o->row_major ? o->n : o->m, each = o->m * o->n;
	int64_t run_bad = 0, worst_b = 0, worst_i = 0, worst_j = 0;
	double run_err = -1;

	for (int64_t b = 0; b < o->batch; b++) {
		double err;
		int64_t i, j;
		int bad = refgemm_compare(o->row_major, o->m, o->n, o->k, got + b * each,
					  want + b * each, ldc, &err, &i, &j);
		run_bad += bad;
		if (err > run_err) {
			run_err = err;
			worst_b = b;
			worst_i = i;
			worst_j = j;
		}
	}
	if (chk->done && !(run_err > chk->max_err))
		return;
	size_t idx = (size_t)(worst_b * each + (o->row_major ? worst_i * ldc + worst_j
							     : worst_i + worst_j * ldc));
	chk->done = 1;
	chk->bad = run_bad > INT_MAX ? INT_MAX : (int)run_bad;
	chk->bad_run = run;
	chk->max_err = run_err;
	chk->b = worst_b;
	chk->i = worst_i;
	chk->j = worst_j;
	chk->got = got[idx];
	chk->want = want[idx];
	chk->tolerance = refgemm_tolerance(o->row_major, o->m, o->n, o->k, want + worst_b * each,
					   ldc);
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
	double flops = 2.0 * (double)o->batch * (double)o->m * (double)o->n * (double)o->k;
	struct table t = { .ncols = 9, .align = "lrrrrrrrr" };
	struct run_stats s, best, median;
	char batch[48] = "";

	if (o->batched)
		snprintf(batch, sizeof(batch), "batch = %lld, ", (long long)o->batch);
	printf("gemm: %sm = %lld, n = %lld, k = %lld, %s, C = %g * %s * %s %c %g * C\n", batch,
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
	if (o->batched)
		snprintf(batch, sizeof(batch), "[%lld]", (long long)chk->b);
	if (!chk->bad)
		printf("check: ok (max error %.3g)\n", chk->max_err);
	else
		printf("check: FAILED: %d of %lld elements differ in run %lld; worst C%s(%lld, %lld) "
		       "= %.9g, expected %.9g (error %.3g, tolerance %.3g)\n",
		       chk->bad, (long long)(o->batch * o->m * o->n), (long long)chk->bad_run, batch,
		       (long long)chk->i, (long long)chk->j, (double)chk->got, (double)chk->want,
		       chk->max_err, chk->tolerance);
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
	double flops = 2.0 * (double)o->batch * (double)o->m * (double)o->n * (double)o->k;
	struct run_stats s, best, median;
	struct json_writer w;

	json_init(&w, stdout);
	json_begin_object(&w);
	json_key(&w, "batch"); /* null for one 2-D product */
	if (o->batched)
		json_int(&w, o->batch);
	else
		json_null(&w);
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
		if (o->batched)
			json_member_int(&w, "b", chk->b);
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
	if (o->shm == SHM_NEVER) {
		/* In the frames, as asked: not staged by the library either. */
		setenv("RXGEMM_STAGE_BYTES", "off", 1);
		return EXIT_OK;
	}
	for (int w = MAT_A; w <= MAT_C; w++) {
		int64_t rows, cols;
		stored_shape(o, w, &rows, &cols);
		matrix_bytes(rows, cols, &sh->bytes[w]); /* checked by gemm_prepare */
		sh->bytes[w] *= (size_t)o->batch;
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
	size_t c_bytes = (size_t)(o->batch * o->m * o->n) * sizeof(float);
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
		/* lda, ldb, ldc 0: the tightest, which is how struct matrix stores them; strides
		 * 0: the matrices one after another, likewise. */
		.batch_count = o->batch > 1 ? o->batch : 0,
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
		if (want)
			check_run(o, c_data, want, r + 1, chk);
	}
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
		.batch_count = o->batch > 1 ? o->batch : 0,
	};

	memset(rt, 0, sizeof(*rt));
	for (int w = MAT_A; w <= MAT_C; w++) {
		int64_t rows, cols;

		stored_shape(o, w, &rows, &cols);
		floats[w] = o->batch * rows * cols; /* checked by gemm_prepare */
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
	if (want) /* the one result read back: the last run's */
		check_run(o, mat[MAT_C].data, want, o->repeat, chk);
out:
	for (int w = MAT_A; w <= MAT_C; w++)
		rxg_tensor_free(t[w]);
	rxg_tensor_free(c_out);
	return rc;
}

/* --out: the result as a matrix in the order it was computed in, or as a C-ordered stack
 * (a Fortran-ordered 3-D array would not hold column-major matrices one after another). */
static int gemm_write_out(const struct gemm_opts *o, float *c, char *err, size_t errlen)
{
	int64_t dims[3] = { o->batch, o->m, o->n }, each = o->m * o->n;
	float *rows = c;
	int rc;

	if (!o->batched)
		return npy_write(o->out_path, c, o->m, o->n, !o->row_major, err, errlen);
	if (!o->row_major) {
		rows = xmalloc((size_t)(o->batch * each) * sizeof(float));
		for (int64_t b = 0; b < o->batch; b++)
			for (int64_t i = 0; i < o->m; i++)
				for (int64_t j = 0; j < o->n; j++)
					rows[b * each + i * o->n + j] = c[b * each + i + j * o->m];
	}
	rc = npy_write_array(o->out_path, rows, 3, dims, err, errlen);
	if (rows != c)
		free(rows);
	return rc;
}

int cmd_gemm(int argc, char **argv, const char *socket)
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

	int64_t ldc = o.row_major ? o.n : o.m, each = o.m * o.n;
	size_t c_bytes = (size_t)(o.batch * each) * sizeof(float);
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
		for (int64_t b = 0; b < o.batch; b++)
			refgemm(o.row_major, o.trans_a, o.trans_b, o.m, o.n, o.k, o.alpha,
				mat[MAT_A].data + b * o.m * o.k,
				o.row_major ? mat[MAT_A].cols : mat[MAT_A].rows,
				mat[MAT_B].data + b * o.k * o.n,
				o.row_major ? mat[MAT_B].cols : mat[MAT_B].rows, o.beta, want + b * each,
				ldc);
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
	if (o.out_path && gemm_write_out(&o, mat[MAT_C].data, err, sizeof(err)) < 0) {
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

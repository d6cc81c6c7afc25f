/* test-nas-daemon.c: NAS evaluation through a real rxgemmd on the OpenCL device (PoCL here)
 * and librxgemm's rxg_nas_eval, against the CPU reference (tests/refnas.c) of the same plan.
 *
 *   whole network: DARTS_V2, C=8, 5 layers, batch 2, 32x32, seeded weights and input, and
 *                  again with the weights and the input sent (inline, in a buffer, in
 *                  device tensors); the logits against refnas, the
 *                  counts against the local plan, the breakdowns adding up to the mean
 *   supernet:      a small search network with random alphas against refnas
 *   every op:      each operation in genotypes that exercise every fusion of the plan,
 *                  odd sizes, batch pieces
 *   aligned:       large weights and input inline: librxgemm's pads spare the daemon
 *                  moving them, which protobuf-c's own layout makes it do
 *   errors:        a blob of the wrong length (the expected length in the message), a bad
 *                  genotype text (the byte), an ImageNet size that cannot work; the
 *                  connection keeps serving after each */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon-run.h"
#include "raw.h"
#include "refnas.h"
#include "rxgemm.h"
#include "nasplan.h"

static struct daemon_run g_daemon;
static rxg_client *g_c;
static int g_skip;

/* The same network locally: plan, weights from seed (or blob), input; refnas's logits. */
static float *reference(const struct rxd_nas_config *cfg, const float *blob_in, uint64_t wseed,
			const float *input, struct rxd_nas_plan *p)
{
	struct rxd_error err = { 0 };
	float *blob, *wts, *logits;

	ck_assert_msg(nas_build(cfg, p, &err) == 0, "%s", err.msg);
	blob = malloc(p->blob_floats * sizeof(float));
	wts = malloc(p->weight_floats * sizeof(float));
	logits = malloc((size_t)cfg->batch * cfg->classes * sizeof(float));
	ck_assert(blob && wts && logits);
	if (blob_in)
		memcpy(blob, blob_in, p->blob_floats * sizeof(float));
	else
		nas_init_blob(p, wseed, blob);
	ck_assert_int_eq(nas_fold(p, blob, wts, &err), 0);
	ck_assert_int_eq(refnas_run(p, wts, input, logits, true), 0);
	free(blob);
	free(wts);
	return logits;
}

static void compare(const float *got, const float *want, size_t n)
{
	double maxabs = 0;

	for (size_t i = 0; i < n; i++)
		maxabs = fmax(maxabs, fabs(want[i]));
	ck_assert(maxabs > 1e-3);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(fabs(got[i] - want[i]) <= 2e-3 * maxabs + 1e-5,
			      "logit %zu: device %g, reference %g", i, (double)got[i],
			      (double)want[i]);
}

static void check_parts(const struct rxg_nas_result *r, int layers)
{
	uint64_t sum_op = 0, sum_cell = 0;
	uint32_t steps_op = 0, steps_cell = 0;

	ck_assert_uint_eq(r->n_by_cell, (size_t)layers + 2);
	ck_assert_str_eq(r->by_cell[0].name, "stem");
	ck_assert_str_eq(r->by_cell[1].name, "cell 0");
	ck_assert_str_eq(r->by_cell[layers + 1].name, "head");
	for (size_t i = 0; i < r->n_by_op; i++) {
		sum_op += r->by_op[i].ns;
		steps_op += r->by_op[i].steps;
	}
	for (size_t i = 0; i < r->n_by_cell; i++) {
		sum_cell += r->by_cell[i].ns;
		steps_cell += r->by_cell[i].steps;
	}
	ck_assert_uint_eq(steps_op, r->steps);
	ck_assert_uint_eq(steps_cell, r->steps);
	if (r->n_by_op && sum_op) {
		/* Means of integers: each part may lose up to 1 ns to rounding. */
		ck_assert_uint_le(sum_op, r->latency_mean_ns);
		ck_assert_uint_ge(sum_op + r->n_by_op, r->latency_mean_ns);
		ck_assert_uint_le(sum_cell, r->latency_mean_ns);
		ck_assert_uint_ge(sum_cell + r->n_by_cell, r->latency_mean_ns);
	}
	ck_assert_uint_le(r->latency_median_ns, r->latency_p90_ns);
	/* Asked for and made: the device's profiling times; the runs without them too. */
	ck_assert_int_eq(r->profiled, r->n_by_op > 0);
	if (r->profiled)
		ck_assert_uint_gt(r->unprofiled_median_ns, 0);
}

START_TEST(whole_network)
{
	struct rxd_nas_config cfg = { 0 };
	struct rxd_nas_plan p;
	struct rxg_nas_args a = { 0 };
	struct rxg_nas_result *r = NULL;
	float in[2 * 3 * 32 * 32], logits[2 * 10], *want, *blob;
	int rc;

	if (g_skip)
		return;

	cfg.family = RXD_NAS_CIFAR;
	cfg.C = 8;
	cfg.layers = 5;
	cfg.classes = 10;
	cfg.height = cfg.width = 32;
	cfg.batch = 2;
	ck_assert_int_eq(genotype_named("DARTS_V2", &cfg.geno), 0);
	nas_random_floats(77, in, sizeof(in) / sizeof(in[0]));
	want = reference(&cfg, NULL, 5, in, &p);

	a.genotype = "DARTS_V2";
	a.c = 8;
	a.layers = 5;
	a.batch = 2;
	a.weight_seed = 5;
	a.input_seed = 77;
	a.warmup = 1;
	a.repeat = 3;
	a.logits = logits;
	a.want_breakdown = 1;
	rc = rxg_nas_eval(g_c, &a, &r);
	ck_assert_msg(rc == RXG_OK, "rxg_nas_eval: %s", rxg_errmsg(g_c));
	compare(logits, want, 20);
	ck_assert_uint_eq(r->params, p.param_count);
	ck_assert_uint_eq(r->macs, p.macs);
	ck_assert_uint_eq(r->weight_floats, p.blob_floats);
	ck_assert_uint_eq(r->steps, p.n_steps);
	ck_assert_int_eq(r->batch, 2);
	ck_assert_int_eq(r->batch_piece, 2);
	ck_assert_uint_eq(r->n_runs, 3);
	ck_assert_uint_ge(r->peak_device_bytes, (p.arena_floats + p.weight_floats) * 4);
	ck_assert_ptr_nonnull(strstr(r->genotype, "('dil_conv_3x3', 2)"));
	check_parts(r, 5);
	rxg_nas_result_free(r);

	/* The same weights and input sent explicitly, the genotype as text. */
	blob = malloc(p.blob_floats * sizeof(float));
	nas_init_blob(&p, 5, blob);
	memset(&a, 0, sizeof(a));
	a.genotype = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', "
		     "0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), "
		     "('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
		     "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
		     "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), "
		     "('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))";
	a.c = 8;
	a.layers = 5;
	a.batch = 2;
	a.weights = blob;
	a.n_weights = p.blob_floats;
	a.input = in;
	a.logits = logits;
	memset(logits, 0, sizeof(logits));
	rc = rxg_nas_eval(g_c, &a, &r);
	ck_assert_msg(rc == RXG_OK, "rxg_nas_eval: %s", rxg_errmsg(g_c));
	compare(logits, want, 20);
	ck_assert_uint_eq(r->n_runs, 1);
	/* No breakdown asked for: none made, no step timed. */
	ck_assert_uint_eq(r->n_by_op, 0);
	ck_assert_uint_eq(r->n_by_cell, 0);
	ck_assert_int_eq(r->profiled, 0);
	ck_assert_uint_gt(r->latency_median_ns, 0);
	rxg_nas_result_free(r);
	float logits_inline[2 * 10];
	memcpy(logits_inline, logits, sizeof(logits));

	/* The same weights and input from one shared-memory buffer (after a float of
	 * padding, so that the offsets are not 0), the logits must not change. */
	{
		size_t in_floats = sizeof(in) / sizeof(in[0]);
		size_t bytes = (1 + p.blob_floats + in_floats) * sizeof(float);
		rxg_buffer *buf = NULL;
		float *mem;

		ck_assert_int_eq(rxg_buffer_create(g_c, bytes, &buf), RXG_OK);
		mem = rxg_buffer_ptr(buf);
		memcpy(mem + 1, blob, p.blob_floats * sizeof(float));
		memcpy(mem + 1 + p.blob_floats, in, sizeof(in));
		a.weights = NULL;
		a.input = NULL;
		a.weights_buf = a.input_buf = buf;
		a.weights_offset = sizeof(float);
		a.input_offset = (1 + p.blob_floats) * sizeof(float);
		memset(logits, 0, sizeof(logits));
		rc = rxg_nas_eval(g_c, &a, &r);
		ck_assert_msg(rc == RXG_OK, "rxg_nas_eval through a buffer: %s", rxg_errmsg(g_c));
		compare(logits, want, 20);
		rxg_nas_result_free(r);
		/* The input past the buffer's end: refused by the library, the daemon untouched. */
		a.input_offset = bytes - 4;
		ck_assert_int_eq(rxg_nas_eval(g_c, &a, &r), RXG_EINVAL);
		/* Both inline and in the buffer: refused. */
		a.input_offset = (1 + p.blob_floats) * sizeof(float);
		a.weights = blob;
		ck_assert_int_eq(rxg_nas_eval(g_c, &a, &r), RXG_EINVAL);
		a.weights = blob;
		a.input = in;
		a.weights_buf = a.input_buf = NULL;
		ck_assert_int_eq(rxg_buffer_free(buf), RXG_OK);
	}

	/* The same weights and input from device tensors, uploaded once and evaluated twice:
	 * the very logits of the inline job. */
	{
		int64_t n_blob = (int64_t)p.blob_floats, n_in = (int64_t)(sizeof(in) / sizeof(in[0]));
		int64_t n_short = n_blob - 1;
		rxg_tensor *wt = NULL, *it = NULL, *bad = NULL;

		ck_assert_int_eq(rxg_tensor_create(g_c, &n_blob, 1, blob, &wt), RXG_OK);
		ck_assert_int_eq(rxg_tensor_create(g_c, &n_in, 1, in, &it), RXG_OK);
		a.weights = NULL;
		a.input = NULL;
		a.weights_tensor = wt;
		a.input_tensor = it;
		for (int i = 0; i < 2; i++) {
			memset(logits, 0, sizeof(logits));
			rc = rxg_nas_eval(g_c, &a, &r);
			ck_assert_msg(rc == RXG_OK, "rxg_nas_eval on tensors: %s", rxg_errmsg(g_c));
			ck_assert(memcmp(logits, logits_inline, sizeof(logits)) == 0);
			compare(logits, want, 20);
			rxg_nas_result_free(r);
		}
		/* A weights tensor one float short: the daemon names the length it wants. */
		ck_assert_int_eq(rxg_tensor_create(g_c, &n_short, 1, NULL, &bad), RXG_OK);
		a.weights_tensor = bad;
		ck_assert_int_eq(rxg_nas_eval(g_c, &a, &r), RXG_EINVAL);
		ck_assert_msg(strstr(rxg_errmsg(g_c), "weights_tensor holds"), "%s", rxg_errmsg(g_c));
		/* Both a tensor and inline weights: refused by the library. */
		a.weights_tensor = wt;
		a.weights = blob;
		ck_assert_int_eq(rxg_nas_eval(g_c, &a, &r), RXG_EINVAL);
		a.weights_tensor = a.input_tensor = NULL;
		a.input = in;
		ck_assert_int_eq(rxg_tensor_free(bad), RXG_OK);
		ck_assert_int_eq(rxg_tensor_free(wt), RXG_OK);
		ck_assert_int_eq(rxg_tensor_free(it), RXG_OK);
	}

	/* Errors: the blob one float short; the connection stays usable. */
	a.n_weights = p.blob_floats - 1;
	ck_assert_int_eq(rxg_nas_eval(g_c, &a, &r), RXG_EINVAL);
	ck_assert_ptr_null(r);
	{
		char want_len[64];

		snprintf(want_len, sizeof(want_len), "has %llu", (unsigned long long)p.blob_floats);
		ck_assert_msg(strstr(rxg_errmsg(g_c), want_len), "%s", rxg_errmsg(g_c));
	}
	a.n_weights = p.blob_floats;
	a.genotype = "Genotype(normal=[('sep_conv_3x4', 0)";
	ck_assert_int_eq(rxg_nas_eval(g_c, &a, &r), RXG_EINVAL);
	ck_assert_msg(strstr(rxg_errmsg(g_c), "byte 18: unknown operation"), "%s",
		      rxg_errmsg(g_c));
	a.genotype = "DARTS";
	ck_assert_int_eq(rxg_nas_eval(g_c, &a, &r), RXG_EINVAL);
	memset(&a, 0, sizeof(a));
	a.genotype = "DARTS_V2";
	a.dataset = RXG_NAS_IMAGENET;
	a.height = a.width = 128;
	a.c = 8;
	a.layers = 3;
	ck_assert_int_eq(rxg_nas_eval(g_c, &a, &r), RXG_EINVAL);
	ck_assert_msg(strstr(rxg_errmsg(g_c), "7x7"), "%s", rxg_errmsg(g_c));
	free(blob);
	free(want);
	nas_plan_free(&p);
}
END_TEST

START_TEST(supernet)
{
	struct rxd_nas_config cfg = { 0 };
	struct rxd_nas_plan p;
	struct rxg_nas_args a = { 0 };
	struct rxg_nas_result *r = NULL;
	float an[14 * 8], ar[14 * 8], in[1 * 3 * 8 * 8], logits[10], *want;
	int rc;

	if (g_skip)
		return;

	nas_random_floats(1, an, 14 * 8);
	nas_random_floats(2, ar, 14 * 8);
	nas_random_floats(3, in, sizeof(in) / sizeof(in[0]));
	cfg.family = RXD_NAS_CIFAR;
	cfg.C = 4;
	cfg.layers = 3;
	cfg.classes = 10;
	cfg.height = cfg.width = 8;
	cfg.batch = 1;
	cfg.supernet = true;
	cfg.steps = cfg.multiplier = 4;
	cfg.alpha_normal = an;
	cfg.alpha_reduce = ar;
	want = reference(&cfg, NULL, 8, in, &p);
	a.supernet = 1;
	a.alpha_normal = an;
	a.alpha_reduce = ar;
	a.c = 4;
	a.layers = 3;
	a.height = a.width = 8;
	a.weight_seed = 8;
	a.input = in;
	a.logits = logits;
	a.want_breakdown = 1;
	rc = rxg_nas_eval(g_c, &a, &r);
	ck_assert_msg(rc == RXG_OK, "rxg_nas_eval: %s", rxg_errmsg(g_c));
	compare(logits, want, 10);
	ck_assert_str_eq(r->genotype, "");
	check_parts(r, 3);
	rxg_nas_result_free(r);
	free(want);
	nas_plan_free(&p);
}
END_TEST

/* Every operation of the search space (and the two of NASNet and AmoebaNet) in the genotypes
 * of refnas_op_genotype, whose nodes the planner fuses every way it can (depthwise with
 * pointwise, identities added as the other edge writes, 'none' dropped): 12x12 with three
 * cells (FactorizedReduce in both places), an odd oblong input with one, and a batch too
 * big for the 4 MiB budget, run in pieces. The device's logits against refnas; refnas's
 * fused plan is checked against the unfused one by test-nas. */
START_TEST(every_op)
{
	struct {
		int c, layers, h, w, batch;
		bool reduce_only;
	} nets[] = {
		{ 4, 3, 12, 12, 2, false },
		{ 2, 1, 9, 7, 3, true },
		{ 8, 3, 32, 32, 24, false },
	};
	char text[RXD_GENOTYPE_TEXT_MAX];

	if (g_skip)
		return;
	for (size_t k = 0; k < sizeof(nets) / sizeof(nets[0]); k++) {
		struct rxd_nas_config cfg = { 0 };
		struct rxd_nas_plan p;
		struct rxg_nas_args a = { 0 };
		struct rxg_nas_result *r = NULL;
		size_t n_in, n_out;
		float *in, *logits, *want;
		int rc;

		/* The batch in pieces once: for the convolutions, where it matters most. */
		if (k == 2 && _i != RXD_OP_SEP_CONV_3X3 && _i != RXD_OP_DIL_CONV_5X5)
			continue;
		cfg.family = RXD_NAS_CIFAR;
		cfg.C = nets[k].c;
		cfg.layers = nets[k].layers;
		cfg.classes = 10;
		cfg.height = nets[k].h;
		cfg.width = nets[k].w;
		cfg.batch = nets[k].batch;
		/* skip_connect at stride 2 needs even sizes. */
		if (nets[k].reduce_only && _i == RXD_OP_SKIP_CONNECT)
			cfg.height = 10, cfg.width = 6;
		refnas_op_genotype(_i, nets[k].reduce_only, &cfg.geno);
		genotype_format(&cfg.geno, text, sizeof(text));
		n_in = (size_t)cfg.batch * 3 * cfg.height * cfg.width;
		n_out = (size_t)cfg.batch * 10;
		in = malloc(n_in * sizeof(float));
		logits = malloc(n_out * sizeof(float));
		ck_assert(in && logits);
		nas_random_floats(30 + k, in, n_in);
		want = reference(&cfg, NULL, 40 + k, in, &p);
		a.genotype = text;
		a.c = cfg.C;
		a.layers = cfg.layers;
		a.height = cfg.height;
		a.width = cfg.width;
		a.batch = cfg.batch;
		a.weight_seed = 40 + k;
		a.input = in;
		a.logits = logits;
		rc = rxg_nas_eval(g_c, &a, &r);
		ck_assert_msg(rc == RXG_OK, "%s: rxg_nas_eval: %s", genotype_op_name(_i),
			      rxg_errmsg(g_c));
		compare(logits, want, n_out);
		ck_assert_uint_eq(r->steps, p.n_steps);
		if (k == 2)
			ck_assert_int_lt(r->batch_piece, cfg.batch);
		rxg_nas_result_free(r);
		free(in);
		free(logits);
		free(want);
		nas_plan_free(&p);
	}
}
END_TEST

/* A budget of 4 MiB (the smallest there is): the batch below runs in pieces. */
START_TEST(split_batch)
{
	struct rxd_nas_config cfg = { 0 };
	struct rxd_nas_plan p;
	struct rxg_nas_args a = { 0 };
	struct rxg_nas_result *r = NULL;
	static float in[12 * 3 * 32 * 32], logits[12 * 10];
	float *want;
	int rc;

	if (g_skip)
		return;
	cfg.family = RXD_NAS_CIFAR;
	cfg.C = 8;
	cfg.layers = 5;
	cfg.classes = 10;
	cfg.height = cfg.width = 32;
	cfg.batch = 12;
	ck_assert_int_eq(genotype_named("DARTS_V1", &cfg.geno), 0);
	nas_random_floats(4, in, sizeof(in) / sizeof(in[0]));
	want = reference(&cfg, NULL, 6, in, &p);
	a.genotype = "DARTS_V1";
	a.c = 8;
	a.layers = 5;
	a.batch = 12;
	a.weight_seed = 6;
	a.input = in;
	a.logits = logits;
	a.repeat = 2;
	a.want_breakdown = 1;
	rc = rxg_nas_eval(g_c, &a, &r);
	ck_assert_msg(rc == RXG_OK, "rxg_nas_eval: %s", rxg_errmsg(g_c));
	ck_assert_int_lt(r->batch_piece, 12);
	ck_assert_uint_le(r->peak_device_bytes, 4u << 20);
	compare(logits, want, 120);
	check_parts(r, 5);
	rxg_nas_result_free(r);
	/* Too big for the budget even one image at a time: refused with the figures. */
	a.c = 128;
	a.weights = NULL;
	a.input = NULL;
	a.logits = NULL;
	ck_assert_int_eq(rxg_nas_eval(g_c, &a, &r), RXG_ETOOBIG);
	ck_assert_msg(strstr(rxg_errmsg(g_c), "the budget is 4194304"), "%s", rxg_errmsg(g_c));
	free(want);
	nas_plan_free(&p);
}
END_TEST

/* The DARTS_V2 genotype as text, with normal_concat and reduce_concat each written as a
 * list (12 characters) or a range (11): three lengths of the same network, which put the
 * fields after the genotype at three offsets in the request. */
static void darts_v2_text(char *out, size_t size, int variant)
{
	static const char *const concat[] = { "[2, 3, 4, 5]", "range(2, 6)" };

	snprintf(out, size,
		 "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', "
		 "0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), "
		 "('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=%s, "
		 "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
		 "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), "
		 "('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=%s)",
		 concat[variant > 0], concat[variant > 1]);
}

/* How many of the daemon's log lines say it moved request field outer.inner's floats to
 * alignment (wire.c). */
static int moved_count(int outer, int inner)
{
	char text[64];

	snprintf(text, sizeof(text), "request %d.%d's ", outer, inner);
	return daemon_run_log_count(&g_daemon, text);
}

/* Weights and input of 64 KiB or more inline, which the daemon reads as floats where they
 * lie in the request: librxgemm sends each after a pad that aligns it
 * (NasEvalRequest.pad), so the daemon moves neither, while protobuf-c's own layout of the
 * same requests, sent by hand with genotype texts of three lengths, puts some off
 * alignment and the daemon moves them first. Every time the logits against refnas. */
START_TEST(inline_aligned)
{
	enum { BATCH = 6, IN_FLOATS = BATCH * 3 * 32 * 32 };
	struct rxd_nas_config cfg = { 0 };
	struct rxd_nas_plan p;
	float *in = malloc(IN_FLOATS * sizeof(float)), logits[BATCH * 10], *want, *blob;
	char text[1024];
	int weights0, input0;

	if (g_skip)
		return;
	ck_assert_ptr_nonnull(in);
	cfg.family = RXD_NAS_CIFAR;
	cfg.C = 8;
	cfg.layers = 5;
	cfg.classes = 10;
	cfg.height = cfg.width = 32;
	cfg.batch = BATCH;
	ck_assert_int_eq(genotype_named("DARTS_V2", &cfg.geno), 0);
	nas_random_floats(78, in, IN_FLOATS);
	want = reference(&cfg, NULL, 6, in, &p);
	blob = malloc(p.blob_floats * sizeof(float));
	ck_assert_ptr_nonnull(blob);
	nas_init_blob(&p, 6, blob);
	/* Both are lifted out of the frame (LIFT_MIN_BYTES, 64 KiB). */
	ck_assert_uint_ge(p.blob_floats * sizeof(float), 65536);
	ck_assert_uint_ge(IN_FLOATS * sizeof(float), 65536);

	weights0 = moved_count(8, 9);
	input0 = moved_count(8, 11);
	for (int v = 0; v < 3; v++) {
		struct rxg_nas_args a = { 0 };
		struct rxg_nas_result *r = NULL;

		darts_v2_text(text, sizeof(text), v);
		a.genotype = text;
		a.c = 8;
		a.layers = 5;
		a.batch = BATCH;
		a.weights = blob;
		a.n_weights = p.blob_floats;
		a.input = in;
		a.logits = logits;
		memset(logits, 0, sizeof(logits));
		ck_assert_msg(rxg_nas_eval(g_c, &a, &r) == RXG_OK, "rxg_nas_eval: %s",
			      rxg_errmsg(g_c));
		compare(logits, want, BATCH * 10);
		rxg_nas_result_free(r);
	}
	ck_assert_int_eq(moved_count(8, 9), weights0);
	ck_assert_int_eq(moved_count(8, 11), input0);

	struct raw w;
	raw_open(&w, g_daemon.socket_path);
	raw_hello(&w, "test-nas-daemon raw", NULL);
	for (int v = 0; v < 3; v++) {
		Rxgemm__Request req = RXGEMM__REQUEST__INIT;
		Rxgemm__NasEvalRequest n = RXGEMM__NAS_EVAL_REQUEST__INIT;

		darts_v2_text(text, sizeof(text), v);
		n.genotype = text;
		n.c = 8;
		n.layers = 5;
		n.batch = BATCH;
		n.weights.data = (uint8_t *)blob;
		n.weights.len = p.blob_floats * sizeof(float);
		n.input.data = (uint8_t *)in;
		n.input.len = IN_FLOATS * sizeof(float);
		n.want_logits = 1;
		req.request_id = 10 + (uint64_t)v;
		req.body_case = RXGEMM__REQUEST__BODY_NAS_EVAL;
		req.nas_eval = &n;
		raw_send(&w, &req);
		Rxgemm__Reply *rep = raw_expect(&w, req.request_id, RXGEMM__STATUS__STATUS_OK, NULL);
		ck_assert_uint_eq(rep->nas_eval->logits.len, sizeof(logits));
		memcpy(logits, rep->nas_eval->logits.data, sizeof(logits));
		compare(logits, want, BATCH * 10);
		rxgemm__reply__free_unpacked(rep, NULL);
	}
	raw_close(&w);
	/* Of three offsets at most one is a multiple of 4: each field moved at least twice. */
	ck_assert_int_ge(moved_count(8, 9) - weights0, 2);
	ck_assert_int_ge(moved_count(8, 11) - input0, 2);
	free(blob);
	free(want);
	free(in);
	nas_plan_free(&p);
}
END_TEST

static const char *const *g_args;
/* RXGEMMD_NAS_KERNELS for the daemon (NULL: the device's default), and the words its
 * start-up line then says for 1x1 convolutions (NULL: not checked). */
static const char *g_kernels, *g_kernels_said;

/* Whether the daemon's log holds text. */
static bool log_has(const char *text)
{
	FILE *f = fopen(g_daemon.log_path, "r");
	char line[1024];
	bool found = false;

	ck_assert_ptr_nonnull(f);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, text) != NULL;
	fclose(f);
	return found;
}

static void setup(void)
{
	int rc;

	if (g_kernels)
		setenv("RXGEMMD_NAS_KERNELS", g_kernels, 1);
	else
		unsetenv("RXGEMMD_NAS_KERNELS");
	rc = daemon_run_start(&g_daemon, g_args);
	if (rc == DAEMON_RUN_SKIP) {
		g_skip = 1;
		return;
	}
	ck_assert_int_eq(rc, 0);
	if (g_kernels_said)
		ck_assert_msg(log_has(g_kernels_said), "RXGEMMD_NAS_KERNELS=%s: the log lacks \"%s\"",
			      g_kernels, g_kernels_said);
	ck_assert_int_eq(rxg_connect(g_daemon.socket_path, "test-nas-daemon", &g_c), RXG_OK);
}

static void teardown(void)
{
	rxg_close(g_c);
	g_c = NULL;
	if (!g_skip) {
		int st = daemon_run_stop(&g_daemon, SIGTERM, 60);

		if (st != 0)
			daemon_run_dump_log(&g_daemon);
		ck_assert_int_eq(st, 0);
	}
	daemon_run_cleanup(&g_daemon);
}

static const char *const small_args[] = { "--vram-budget", "4M", NULL };

/* A budget of 4 MiB, with kernels as RXGEMMD_NAS_KERNELS (NULL: the device's default). */
static void setup_small_with(const char *kernels, const char *said)
{
	g_args = small_args;
	g_kernels = kernels;
	g_kernels_said = said;
	memset(&g_daemon, 0, sizeof(g_daemon));
	setup();
}

static void setup_small(void)
{
	setup_small_with(NULL, NULL);
}

/* Each set of NAS kernels forced, whatever the device's default: the tiled 1x1 kernel and
 * the fused depthwise-then-1x1 (new), and the GEMM engine's path (old). */
static void setup_small_new(void)
{
	setup_small_with("new", "1x1: nas_pw;");
}

static void setup_small_old(void)
{
	setup_small_with("old", "depthwise then 1x1: two steps");
}

/* What GPUs take by default: dense 1x1 convolutions through nas_pwv where its float4s
 * fit and nas_pws elsewhere, the others through nas_cvs (and the depthwise ones through
 * nas_dwr, every device's default), forced here where the device (PoCL) would take the
 * engine. */
static void setup_small_pws(void)
{
	setup_small_with("pwv,cvs",
			 "(convolutions: nas_cvs; 1x1: nas_pwv, else nas_pws; depthwise: rows, "
			 "float4 where aligned;");
}

int main(void)
{
	Suite *s = suite_create("nas-daemon");
	TCase *tc = tcase_create("nas-daemon");
	SRunner *sr;
	int failed;

	if (!getenv("RXGEMMD"))
		return DAEMON_RUN_SKIP;
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_add_test(tc, whole_network);
	tcase_add_test(tc, supernet);
	tcase_add_test(tc, inline_aligned);
	suite_add_tcase(s, tc);
	tc = tcase_create("split");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_small, teardown);
	tcase_add_test(tc, split_batch);
	tcase_add_loop_test(tc, every_op, RXD_OP_NONE, RXD_OP_COUNT);
	suite_add_tcase(s, tc);
	tc = tcase_create("kernels=new");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_small_new, teardown);
	tcase_add_test(tc, split_batch);
	tcase_add_loop_test(tc, every_op, RXD_OP_NONE, RXD_OP_COUNT);
	suite_add_tcase(s, tc);
	tc = tcase_create("kernels=old");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_small_old, teardown);
	tcase_add_loop_test(tc, every_op, RXD_OP_SEP_CONV_3X3, RXD_OP_SEP_CONV_3X3 + 1);
	suite_add_tcase(s, tc);
	tc = tcase_create("kernels=pwv,cvs");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_small_pws, teardown);
	tcase_add_test(tc, split_batch);
	tcase_add_loop_test(tc, every_op, RXD_OP_NONE, RXD_OP_COUNT);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (g_skip)
		return DAEMON_RUN_SKIP;
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

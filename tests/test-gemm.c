/* test-gemm.c: the GEMM engine on a real OpenCL device (PoCL here; rusticl through
 * test-rusticl.sh) against the CPU reference, over shapes that hit every tile edge, both
 * transposes, both layouts, alpha/beta, NaN in C with beta = 0 and padded leading
 * dimensions. Requests go through wire_gemm_validate, so the row-major mapping is tested too.
 *
 * RXGEMM_TEST_DEVICE picks the device (as rxgemmd --device); RXGEMM_TEST_SMALL=1 keeps the
 * shapes small for slow devices. Exits 77 (skipped) when there is no OpenCL device. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refgemm.h"
#include "wire.h"

static struct rxd_device dev;
static struct rxd_gemm_engine engine;
static bool small;
static const struct rxd_limits limits = { .max_buffer_bytes = 1ull << 30,
					  .max_total_bytes = 3ull << 30 };

struct gemm_case {
	bool row_major, trans_a, trans_b;
	int64_t m, n, k;
	int64_t pad_a, pad_b, pad_c; /* added to the tightest leading dimension */
	float alpha, beta;
	bool nan_c;                  /* fill C with NaN (only meaningful with beta = 0) */
	bool send_c;
	int64_t batch;               /* strided batch of this many triples (0: one) */
	int64_t gap;                 /* floats between consecutive matrices of a batch */
	int splitk;                  /* K slices to force (struct rxd_gemm's splitk) */
	bool tiny_chunks;            /* run in chunks of one tile column (or one matrix) */
};

static int gemm_case_check(const struct gemm_case *tc, const float *a, int64_t lda,
			   const float *b, int64_t ldb, const float *c, int64_t ldc,
			   size_t c_len, const float *got, float *want, const char *kernel);

/* Run one case on the device and on the CPU; returns the number of wrong elements,
 * padding elements of C included (they must come back as sent, or zero when not sent). */
static int gemm_case_run(const struct gemm_case *tc, uint64_t seed)
{
	bool rm = tc->row_major;
	int64_t a_rows = tc->trans_a ? tc->k : tc->m, a_cols = tc->trans_a ? tc->m : tc->k;
	int64_t b_rows = tc->trans_b ? tc->n : tc->k, b_cols = tc->trans_b ? tc->k : tc->n;
	int64_t lda = (rm ? a_cols : a_rows) + tc->pad_a, ldb = (rm ? b_cols : b_rows) + tc->pad_b;
	int64_t ldc = (rm ? tc->n : tc->m) + tc->pad_c;
	size_t a_len = (size_t)(lda * ((rm ? a_rows : a_cols) - 1) + (rm ? a_cols : a_rows));
	size_t b_len = (size_t)(ldb * ((rm ? b_rows : b_cols) - 1) + (rm ? b_cols : b_rows));
	size_t c_one = (size_t)(ldc * ((rm ? tc->m : tc->n) - 1) + (rm ? tc->n : tc->m));
	int64_t batch = tc->batch > 1 ? tc->batch : 1;
	/* Strides: one matrix plus the gap; lengths: batch - 1 strides plus one matrix. */
	int64_t sa = (int64_t)a_len + tc->gap, sb = (int64_t)b_len + tc->gap;
	int64_t sc = (int64_t)c_one + tc->gap;
	size_t a_one = a_len, b_one = b_len, c_len;

	a_len = (size_t)(sa * (batch - 1)) + a_one;
	b_len = (size_t)(sb * (batch - 1)) + b_one;
	c_len = (size_t)(sc * (batch - 1)) + c_one;
	float *a = malloc(a_len * 4), *b = malloc(b_len * 4), *c = malloc(c_len * 4);
	float *got = malloc(c_len * 4), *want = malloc(c_len * 4);
	Rxgemm__GemmRequest rq = RXGEMM__GEMM_REQUEST__INIT;
	struct rxd_gemm g;
	struct rxd_job_timings t;
	const char *kernel;
	struct rxd_error err = { 0 };
	int bad, st;

	ck_assert(a && b && c && got && want);
	refgemm_fill_random(a, a_len, &seed);
	refgemm_fill_random(b, b_len, &seed);
	refgemm_fill_random(c, c_len, &seed);
	if (tc->nan_c)
		for (size_t i = 0; i < c_len; i++)
			c[i] = NAN;
	rq.m = tc->m, rq.n = tc->n, rq.k = tc->k;
	rq.trans_a = tc->trans_a, rq.trans_b = tc->trans_b;
	rq.alpha = tc->alpha, rq.beta = tc->beta;
	rq.layout = rm ? RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR : RXGEMM__LAYOUT__LAYOUT_COL_MAJOR;
	rq.lda = lda, rq.ldb = ldb, rq.ldc = ldc;
	if (batch > 1) {
		rq.batch_count = batch;
		rq.stride_a = sa, rq.stride_b = sb, rq.stride_c = sc;
	}
	rq.a.data = (uint8_t *)a, rq.a.len = a_len * 4;
	rq.b.data = (uint8_t *)b, rq.b.len = b_len * 4;
	if (tc->send_c)
		rq.c.data = (uint8_t *)c, rq.c.len = c_len * 4;
	st = wire_gemm_validate(&rq, &limits, &g, &err);
	ck_assert_msg(st == 0, "validate: %s", err.msg);
	ck_assert_uint_eq(g.c_elems, c_len);
	/* Every kernel variant built for this pair of transposes, not only the one the size
	 * class would pick: each must be right on every shape. */
	bad = 0;
	/* A rate of 1e-4 GFLOPS makes gemm_compute's chunks the smallest it cuts. */
	engine.tuned_gflops[0][0][0] = tc->tiny_chunks ? 1e-4 : 0.0;
	for (size_t vi = 0; vi < engine.n_variants; vi++) {
		char name[96];
		struct rxd_gemm probe = g;

		probe.splitk = tc->splitk;
		snprintf(name, sizeof(name), "%s", gemm_variant_name(&engine, (int)vi));
		/* Variant names end in -NN, -NT, -TN or -TT. */
		if (name[strlen(name) - 2] != (g.trans_a ? 'T' : 'N') ||
		    name[strlen(name) - 1] != (g.trans_b ? 'T' : 'N'))
			continue;
		kernel = gemm_variant_name(&engine, (int)vi);
		st = gemm_run_variant(&engine, (int)vi, &probe, got, &t, &err);
		ck_assert_msg(st == 0, "run %s: %s", kernel, err.msg);
		for (int64_t i = 0; i < batch; i++) {
			bad += gemm_case_check(tc, a + i * sa, lda, b + i * sb, ldb, c + i * sc, ldc,
					       c_one, got + i * sc, want, kernel);
			/* The gap after each C of a batch comes back as sent (or zero). */
			for (int64_t j = (int64_t)c_one; i + 1 < batch && j < sc; j++) {
				float w = tc->send_c ? c[i * sc + j] : 0.0f, v = got[i * sc + j];
				if (!(v == w || (isnan(v) && isnan(w)))) {
					fprintf(stderr, "%s: gap element %lld of batch %lld changed\n",
						kernel, (long long)j, (long long)i);
					bad++;
					break;
				}
			}
		}
	}
	free(a), free(b), free(c), free(got), free(want);
	return bad;
}

/* Compare one device result with the CPU reference (want is scratch space). */
static int gemm_case_check(const struct gemm_case *tc, const float *a, int64_t lda,
			   const float *b, int64_t ldb, const float *c, int64_t ldc,
			   size_t c_len, const float *got, float *want, const char *kernel)
{
	bool rm = tc->row_major;
	int bad;

	/* The reference starts from C as the device saw it: as sent, or zeros. */
	if (tc->send_c)
		memcpy(want, c, c_len * 4);
	else
		memset(want, 0, c_len * 4);
	refgemm(rm, tc->trans_a, tc->trans_b, tc->m, tc->n, tc->k, tc->alpha, a, lda, b, ldb,
		tc->beta, want, ldc);
	double max_err;
	int64_t bi = -1, bj = -1;
	bad = refgemm_compare(rm, tc->m, tc->n, tc->k, got, want, ldc, &max_err, &bi, &bj);
	if (bad)
		fprintf(stderr,
			"%s %c%c m=%lld n=%lld k=%lld ld+%lld/%lld/%lld alpha=%g beta=%g%s: %d wrong, "
			"worst at (%lld, %lld), error %g (kernel %s)\n",
			rm ? "row" : "col", tc->trans_a ? 'T' : 'N', tc->trans_b ? 'T' : 'N',
			(long long)tc->m, (long long)tc->n, (long long)tc->k, (long long)tc->pad_a,
			(long long)tc->pad_b, (long long)tc->pad_c, (double)tc->alpha,
			(double)tc->beta, tc->nan_c ? " NaN C" : "", bad, (long long)bi,
			(long long)bj, max_err, kernel);
	/* Padding between rows/columns of C must come back untouched (or zero). */
	for (int64_t o = 0; o < (rm ? tc->m : tc->n); o++)
		for (int64_t i = rm ? tc->n : tc->m; i < ldc && o * ldc + i < (int64_t)c_len; i++) {
			float w = tc->send_c ? c[o * ldc + i] : 0.0f;
			float v = got[o * ldc + i];
			if (!(v == w || (isnan(v) && isnan(w)))) {
				fprintf(stderr, "padding element %lld changed\n",
					(long long)(o * ldc + i));
				bad++;
				break;
			}
		}
	return bad;
}

/* Sizes around every tile size the engine may pick (16, 32, 64) and primes. */
static const int64_t edge_sizes[] = { 1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 70 };
#define N_EDGE (sizeof(edge_sizes) / sizeof(edge_sizes[0]))

START_TEST(test_edges_all_variants)
{
	/* _i: 8 combinations of layout and transposes; each runs a deterministic sample of
	 * m x n x k from the edge sizes, all of them on fast devices. */
	bool rm = _i & 1, ta = (_i >> 1) & 1, tb = (_i >> 2) & 1;
	uint64_t pick = 0x9e3779b97f4a7c15ull * (uint64_t)(_i + 1);
	int bad = 0, runs = 0;

	for (size_t im = 0; im < N_EDGE; im++)
		for (size_t in = 0; in < N_EDGE; in++)
			for (size_t ik = 0; ik < N_EDGE; ik++) {
				struct gemm_case tc = { .row_major = rm, .trans_a = ta, .trans_b = tb,
							.m = edge_sizes[im], .n = edge_sizes[in],
							.k = edge_sizes[ik], .alpha = 1.0f };
				pick = pick * 6364136223846793005ull + 1442695040888963407ull;
				/* Every (m, n) pair with a sampled k; fewer on slow devices. */
				if ((pick >> 33) % (small ? 40 : 4) != 0)
					continue;
				bad += gemm_case_run(&tc, im * 1000 + in * 100 + ik) != 0;
				runs++;
			}
	ck_assert_int_gt(runs, 0);
	ck_assert_msg(bad == 0, "%d of %d shapes wrong", bad, runs);
}
END_TEST

START_TEST(test_alpha_beta)
{
	static const float ab[][2] = { { 1.0f, 0.0f }, { -2.5f, 0.0f }, { 1.0f, 1.0f },
				       { 0.5f, -1.5f }, { 0.0f, 2.0f }, { 3.0f, 0.25f } };
	int bad = 0;

	for (size_t i = 0; i < sizeof(ab) / sizeof(ab[0]); i++)
		for (int v = 0; v < 8; v++) {
			struct gemm_case tc = { .row_major = v & 1, .trans_a = (v >> 1) & 1,
						.trans_b = (v >> 2) & 1, .m = 37, .n = 45, .k = 29,
						.alpha = ab[i][0], .beta = ab[i][1],
						.send_c = true };
			bad += gemm_case_run(&tc, 77 + i * 8 + (size_t)v);
		}
	ck_assert_int_eq(bad, 0);
}
END_TEST

START_TEST(test_beta_zero_ignores_nan)
{
	for (int v = 0; v < 8; v++) {
		struct gemm_case tc = { .row_major = v & 1, .trans_a = (v >> 1) & 1,
					.trans_b = (v >> 2) & 1, .m = 33, .n = 17, .k = 65,
					.alpha = 2.0f, .beta = 0.0f, .nan_c = true,
					.send_c = true };
		ck_assert_int_eq(gemm_case_run(&tc, 5 + (uint64_t)v), 0);
	}
}
END_TEST

START_TEST(test_leading_dimensions)
{
	for (int v = 0; v < 8; v++) {
		struct gemm_case tc = { .row_major = v & 1, .trans_a = (v >> 1) & 1,
					.trans_b = (v >> 2) & 1, .m = 19, .n = 23, .k = 41,
					.pad_a = 3, .pad_b = 64, .pad_c = 5, .alpha = 1.0f,
					.beta = 0.5f, .send_c = true };
		ck_assert_int_eq(gemm_case_run(&tc, 11 + (uint64_t)v), 0);
		/* Without C and beta = 0 the padding comes back as zeros. */
		tc.beta = 0.0f, tc.send_c = false;
		ck_assert_int_eq(gemm_case_run(&tc, 12 + (uint64_t)v), 0);
	}
}
END_TEST

START_TEST(test_shapes)
{
	/* Tall-skinny, K = 1, vectors and a larger square, with error bounds that grow with K. */
	static const int64_t shapes[][3] = { { 1, 1, 1 },     { 1, 1, 1000 }, { 500, 1, 3 },
					     { 1, 300, 7 },   { 257, 3, 1 },  { 3, 257, 129 },
					     { 128, 128, 1 }, { 256, 256, 256 }, { 300, 200, 250 } };
	size_t n = sizeof(shapes) / sizeof(shapes[0]);

	if (small)
		n -= 2;
	for (size_t i = 0; i < n; i++) {
		struct gemm_case tc = { .row_major = i & 1, .trans_a = (i >> 1) & 1,
					.trans_b = (i >> 2) & 1, .m = shapes[i][0],
					.n = shapes[i][1], .k = shapes[i][2], .alpha = 1.0f,
					.beta = -1.0f, .send_c = true };
		ck_assert_int_eq(gemm_case_run(&tc, 1000 + i), 0);
	}
}
END_TEST

START_TEST(test_whole_tiles)
{
	/* Shapes that give every register-blocked configuration whole, aligned tiles (its
	 * float4 paths) next to edge tiles, with leading dimensions that are and are not
	 * multiples of 4. */
	static const int64_t shapes[][3] = { { 260, 136, 68 }, { 128, 128, 32 }, { 264, 257, 35 } };
	size_t n = sizeof(shapes) / sizeof(shapes[0]);

	for (size_t i = 0; i < (small ? 1 : n); i++)
		for (int v = 0; v < 8; v++) {
			struct gemm_case tc = { .row_major = v & 1, .trans_a = (v >> 1) & 1,
						.trans_b = (v >> 2) & 1, .m = shapes[i][0],
						.n = shapes[i][1], .k = shapes[i][2],
						.pad_a = (v & 2) ? 4 : 0, .pad_b = (v & 4) ? 0 : 1,
						.pad_c = (v & 1) ? 8 : 0, .alpha = 0.75f,
						.beta = (v & 1) ? 0.5f : 0.0f, .send_c = (v & 1) != 0 };
			ck_assert_int_eq(gemm_case_run(&tc, 500 + i * 8 + (uint64_t)v), 0);
		}
}
END_TEST

START_TEST(test_strided_batches)
{
	/* Batches of 1, 3 and 5 with and without gaps, every layout and transpose: each
	 * product lands in its own matrix of C and nothing between them is touched. */
	static const int64_t shapes[][5] = { /* m, n, k, batch, gap */
		{ 17, 9, 33, 3, 0 }, { 40, 36, 20, 5, 7 }, { 130, 132, 68, 3, 4 }, { 1, 1, 5, 4, 1 },
	};
	size_t n = sizeof(shapes) / sizeof(shapes[0]);

	for (size_t i = 0; i < (small ? 2 : n); i++)
		for (int v = 0; v < 8; v++) {
			struct gemm_case tc = { .row_major = v & 1, .trans_a = (v >> 1) & 1,
						.trans_b = (v >> 2) & 1, .m = shapes[i][0],
						.n = shapes[i][1], .k = shapes[i][2],
						.batch = shapes[i][3], .gap = shapes[i][4],
						.alpha = 1.25f, .beta = (v & 2) ? -0.5f : 0.0f,
						.send_c = (v & 2) != 0 };
			ck_assert_int_eq(gemm_case_run(&tc, 900 + i * 8 + (uint64_t)v), 0);
		}
}
END_TEST

/* Split-K: K cut into slices summed by a second kernel, forced here (the engine picks it
 * by itself only when C has too few tiles for the device's compute units), with K left
 * over after the slices, padding, transposes, layouts and beta. */
START_TEST(test_split_k)
{
	static const int64_t shapes[][4] = { /* m, n, k, slices */
		{ 37, 29, 300, 2 }, { 64, 5, 1000, 3 }, { 130, 70, 517, 5 }, { 1, 1, 64, 4 },
		{ 200, 17, 129, 8 }
	};
	int bad = 0;

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		for (int v = 0; v < 8; v++) {
			struct gemm_case tc = { .row_major = v & 1, .trans_a = (v >> 1) & 1,
						.trans_b = (v >> 2) & 1, .m = shapes[i][0],
						.n = shapes[i][1], .k = shapes[i][2],
						.pad_a = v & 3, .pad_b = 4, .pad_c = (v & 1) * 3,
						.alpha = 1.5f, .beta = i % 2 ? -0.75f : 0.0f,
						.send_c = i % 2, .splitk = (int)shapes[i][3] };
			bad += gemm_case_run(&tc, 300 + i * 8 + (size_t)v);
		}
	ck_assert_int_eq(bad, 0);
}
END_TEST

/* The engine's own choice: split-K for a thin C on a device with many compute units, not
 * for a square one (even one of only 128 tiles), not for batches; every slice keeps at
 * least 256 of K. */
START_TEST(test_split_k_choice)
{
	struct rxd_device_desc *desc = (struct rxd_device_desc *)dev.desc;
	uint32_t cus = desc->compute_units;
	struct rxd_gemm thin = { .m = 4096, .n = 64, .k = 4096, .batch_count = 1 };
	struct rxd_gemm square = { .m = 4096, .n = 4096, .k = 4096, .batch_count = 1 };
	struct rxd_gemm batch = { .m = 64, .n = 64, .k = 4096, .batch_count = 8 };
	struct rxd_gemm shortk = { .m = 4096, .n = 64, .k = 300, .batch_count = 1 };
	struct rxd_gemm mid = { .m = 1024, .n = 1024, .k = 1024, .batch_count = 1 };
	int reg = gemm_find_variant(&engine, false, false, RXD_GEMM_REG);
	const struct rxd_gemm_config *cfg;

	ck_assert_int_ge(reg, 0);
	cfg = gemm_variant_config(&engine, reg);
	/* A device with four times as many compute units as the thin C has tiles. */
	desc->compute_units = (uint32_t)(4 * ((4096 + cfg->tsm - 1) / cfg->tsm) *
					 ((64 + cfg->tsn - 1) / cfg->tsn));
	ck_assert_int_ge(gemm_splitk_slices(&engine, reg, &thin), 2);
	ck_assert_int_le(gemm_splitk_slices(&engine, reg, &thin), 4096 / 256);
	desc->compute_units = 132;
	ck_assert_int_eq(gemm_splitk_slices(&engine, reg, &square), 1);
	ck_assert_int_eq(gemm_splitk_slices(&engine, reg, &mid), 1); /* 128 tiles: no gain */
	ck_assert_int_eq(gemm_splitk_slices(&engine, reg, &batch), 1);
	ck_assert_int_eq(gemm_splitk_slices(&engine, reg, &shortk), 1);
	thin.splitk = 1;
	ck_assert_int_eq(gemm_splitk_slices(&engine, reg, &thin), 1);
	desc->compute_units = cus;
}
END_TEST

/* Chunks (the boundaries where a cancel takes effect): one tile column or one matrix of a
 * batch at a time gives the same C; a cancelled job stops with STATUS_CANCELLED. */
START_TEST(test_chunks_and_cancel)
{
	static const int64_t shapes[][5] = { /* m, n, k, batch, gap */
		{ 70, 300, 33, 0, 0 }, { 129, 65, 40, 0, 0 }, { 20, 30, 17, 5, 3 }
	};
	struct rxd_gemm g = { .m = 64, .n = 64, .k = 64, .lda = 64, .ldb = 64, .ldc = 64,
			      .alpha = 1.0f, .batch_count = 1 };
	atomic_bool cancel = true;
	struct rxd_job_timings t;
	struct rxd_error err = { 0 };
	float *buf = calloc(3 * 64 * 64, sizeof(float));
	int bad = 0;

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		for (int v = 0; v < 8; v++) {
			struct gemm_case tc = { .row_major = v & 1, .trans_a = (v >> 1) & 1,
						.trans_b = (v >> 2) & 1, .m = shapes[i][0],
						.n = shapes[i][1], .k = shapes[i][2],
						.batch = shapes[i][3], .gap = shapes[i][4],
						.alpha = 1.0f, .beta = 0.5f, .send_c = true,
						.tiny_chunks = true };
			bad += gemm_case_run(&tc, 500 + i * 8 + (size_t)v);
		}
	engine.tuned_gflops[0][0][0] = 0.0;
	ck_assert_int_eq(bad, 0);
	ck_assert(buf);
	g.a = buf, g.b = buf + 4096;
	g.a_elems = g.b_elems = g.c_elems = 4096;
	g.cancel = &cancel;
	ck_assert_int_eq(gemm_run(&engine, &g, buf + 8192, &t, &(const char *){ NULL }, &err),
			 RXD_S_CANCELLED);
	free(buf);
}
END_TEST

START_TEST(test_fast_kernels_present)
{
	struct gemm_case tc = { .m = 64, .n = 64, .k = 64, .alpha = 1.0f };

	ck_assert_int_eq(gemm_case_run(&tc, 3), 0);
	/* Every pair of transposes has a register-blocked (or, on CPUs, a vector) kernel for
	 * large problems: a
	 * variant that fails its self-test at start-up is dropped silently, so without this
	 * a broken fast kernel would only show up as slowness. */
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++) {
			const char *name = gemm_variant_name(&engine, engine.choice[ta][tb][3]);
			ck_assert_msg(strncmp(name, "reg:", 4) == 0 || strncmp(name, "vec:", 4) == 0,
				      "large class uses %s", name);
		}
}
END_TEST

int main(void)
{
	const char *sel = getenv("RXGEMM_TEST_DEVICE");
	Suite *s = suite_create("gemm");
	TCase *tc = tcase_create("engine");
	SRunner *sr;
	int failed;

	small = getenv("RXGEMM_TEST_SMALL") && atoi(getenv("RXGEMM_TEST_SMALL"));
	log_set_level(LOG_WARNING);
	if (device_open(&dev, sel, NULL) < 0) {
		fprintf(stderr, "no OpenCL device%s%s: skipping\n", sel ? " matching " : "",
			sel ? sel : "");
		return 77;
	}
	fprintf(stderr, "device: %s\n", dev.description);
	if (gemm_init(&engine, &dev, NULL) < 0) {
		fprintf(stderr, "the GEMM kernels do not build on %s\n", dev.description);
		return EXIT_FAILURE;
	}
	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, test_edges_all_variants, 0, 8);
	tcase_add_test(tc, test_alpha_beta);
	tcase_add_test(tc, test_beta_zero_ignores_nan);
	tcase_add_test(tc, test_leading_dimensions);
	tcase_add_test(tc, test_shapes);
	tcase_add_test(tc, test_whole_tiles);
	tcase_add_test(tc, test_strided_batches);
	tcase_add_test(tc, test_split_k);
	tcase_add_test(tc, test_split_k_choice);
	tcase_add_test(tc, test_chunks_and_cancel);
	tcase_add_test(tc, test_fast_kernels_present);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	/* The OpenCL runtime's threads do not survive fork(): run the tests in-process. */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	gemm_fini(&engine);
	device_close(&dev);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test-validate.c: wire_gemm_validate, the daemon's gatekeeper for GEMM requests. Each bad input
 * must be refused with the right code and a sentence naming the field, and good inputs
 * must come out in the column-major form the kernels compute. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static float pool[4096];
static const struct rxd_limits big_limits = { .max_buffer_bytes = 1ull << 30,
					       .max_total_bytes = 4ull << 30 };

/* A valid request: column-major, no transposes, tight leading dimensions. */
static Rxgemm__GemmRequest request(int64_t m, int64_t n, int64_t k)
{
	Rxgemm__GemmRequest rq = RXGEMM__GEMM_REQUEST__INIT;

	rq.m = m, rq.n = n, rq.k = k;
	rq.alpha = 1.0f;
	rq.a.data = rq.b.data = rq.c.data = (uint8_t *)pool;
	rq.a.len = (size_t)(m * k) * sizeof(float);
	rq.b.len = (size_t)(k * n) * sizeof(float);
	return rq;
}

static int validate(const Rxgemm__GemmRequest *rq, struct rxd_gemm *g, struct rxd_error *err)
{
	return wire_gemm_validate(rq, &big_limits, g, err);
}

#define ck_assert_refused(rq, code, field)                                                  \
	do {                                                                                \
		struct rxd_gemm g_;                                                         \
		struct rxd_error err_ = { 0 };                                              \
		ck_assert_int_eq(validate(&(rq), &g_, &err_), (code));                     \
		ck_assert_msg(strstr(err_.msg, (field)) != NULL, "'%s' does not name '%s'",  \
			      err_.msg, (field));                                           \
	} while (0)

START_TEST(test_valid_minimal)
{
	Rxgemm__GemmRequest rq = request(3, 4, 5);
	struct rxd_gemm g;
	struct rxd_error err = { 0 };

	ck_assert_int_eq(validate(&rq, &g, &err), RXD_S_OK);
	ck_assert_int_eq(g.m, 3);
	ck_assert_int_eq(g.n, 4);
	ck_assert_int_eq(g.k, 5);
	ck_assert_int_eq(g.lda, 3); /* 0 means tightest */
	ck_assert_int_eq(g.ldb, 5);
	ck_assert_int_eq(g.ldc, 3);
	ck_assert_uint_eq(g.c_elems, 12);
	ck_assert_ptr_null(g.c);
	ck_assert_uint_eq(g.flops, 2 * 3 * 4 * 5);
}
END_TEST

START_TEST(test_sizes_positive)
{
	Rxgemm__GemmRequest rq = request(3, 4, 5);

	rq.m = 0;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "m must be");
	rq.m = 3, rq.n = -1;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "n must be");
	rq.n = 4, rq.k = INT64_MIN;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "k must be");
}
END_TEST

START_TEST(test_layout_checked)
{
	Rxgemm__GemmRequest rq = request(3, 4, 5);

	rq.layout = 7;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "layout");
}
END_TEST

START_TEST(test_leading_dimensions)
{
	Rxgemm__GemmRequest rq = request(3, 4, 5);

	rq.lda = -1;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "lda");
	rq.lda = 2; /* column-major A is 3 x 5: ld >= 3 */
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "lda");
	rq.lda = 0, rq.ldb = 4; /* B is 5 x 4 */
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "ldb");
	rq.ldb = 0, rq.ldc = 2;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "ldc");
	/* Row-major A (3 x 5) needs ld >= 5 (its columns), transposed (5 x 3) ld >= 3. */
	rq.ldc = 0, rq.layout = RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR, rq.lda = 4;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "lda");
	rq.trans_a = 1, rq.lda = 3;
	{
		struct rxd_gemm g;
		struct rxd_error err = { 0 };
		ck_assert_int_eq(validate(&rq, &g, &err), RXD_S_OK);
	}
}
END_TEST

START_TEST(test_buffer_lengths)
{
	Rxgemm__GemmRequest rq = request(3, 4, 5);
	struct rxd_gemm g;
	struct rxd_error err = { 0 };

	rq.a.len = 15 * 4 + 2;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "a is 62 bytes");
	rq.a.len = 14 * 4;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "a holds 14 floats");
	rq.a.len = 16 * 4;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "a holds 16 floats");
	/* With lda = 4 the last column needs only 3: 4*4+3 = 19 and 4*5 = 20 both go. */
	rq.lda = 4, rq.a.len = 19 * 4;
	ck_assert_int_eq(validate(&rq, &g, &err), RXD_S_OK);
	ck_assert_uint_eq(g.a_elems, 19);
	rq.a.len = 20 * 4;
	ck_assert_int_eq(validate(&rq, &g, &err), RXD_S_OK);
	rq.a.len = 18 * 4;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "a holds 18 floats");
	rq.lda = 0, rq.a.len = 15 * 4;
	rq.b.len = 0;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "b holds 0 floats");
}
END_TEST

START_TEST(test_c_and_beta)
{
	Rxgemm__GemmRequest rq = request(3, 4, 5);
	struct rxd_gemm g;
	struct rxd_error err = { 0 };

	rq.beta = 0.5f;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "c is missing");
	rq.c.len = 11 * 4;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "c holds 11 floats");
	rq.c.len = 12 * 4;
	ck_assert_int_eq(validate(&rq, &g, &err), RXD_S_OK);
	ck_assert_ptr_eq(g.c, pool);
	ck_assert_uint_eq(g.c_given_elems, 12);
	/* beta == 0 with a C sent is fine: it is simply not read. */
	rq.beta = 0.0f;
	ck_assert_int_eq(validate(&rq, &g, &err), RXD_S_OK);
}
END_TEST

START_TEST(test_overflow)
{
	Rxgemm__GemmRequest rq = request(3, 4, 5);

	rq.m = rq.n = rq.k = (int64_t)1 << 40;
	ck_assert_refused(rq, RXD_S_TOO_BIG, "overflows");
	rq = request(2, 2, 2);
	rq.lda = (int64_t)1 << 62;
	ck_assert_refused(rq, RXD_S_TOO_BIG, "a");
	rq = request(2, 2, 2);
	rq.ldc = INT64_MAX;
	ck_assert_refused(rq, RXD_S_TOO_BIG, "c");
}
END_TEST

START_TEST(test_device_limits)
{
	Rxgemm__GemmRequest rq = request(3, 4, 5);
	struct rxd_limits small = { .max_buffer_bytes = 64, .max_total_bytes = 1 << 20 };
	struct rxd_gemm g;
	struct rxd_error err = { 0 };

	/* A: 15 floats = 60 bytes fits; B: 20 floats = 80 bytes does not. */
	ck_assert_int_eq(wire_gemm_validate(&rq, &small, &g, &err),
			 RXD_S_TOO_BIG);
	ck_assert_msg(strstr(err.msg, "b needs 80 bytes"), "%s", err.msg);
	small.max_buffer_bytes = 1 << 20, small.max_total_bytes = 100;
	ck_assert_int_eq(wire_gemm_validate(&rq, &small, &g, &err),
			 RXD_S_TOO_BIG);
	ck_assert_msg(strstr(err.msg, "188 bytes"), "%s", err.msg);
	/* More elements than the kernels' int offsets reach. */
	rq = request(3, 4, 5);
	rq.ldc = (int64_t)1 << 30;
	ck_assert_refused(rq, RXD_S_TOO_BIG, "c needs");
}
END_TEST

START_TEST(test_row_major_becomes_column_major)
{
	Rxgemm__GemmRequest rq = request(3, 4, 5);
	static float a[15], b[20];
	struct rxd_gemm g;
	struct rxd_error err = { 0 };

	rq.layout = RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR;
	rq.trans_a = 1;
	rq.a.data = (uint8_t *)a, rq.b.data = (uint8_t *)b;
	ck_assert_int_eq(validate(&rq, &g, &err), RXD_S_OK);
	/* C^T (4 x 3) = op(B)^T (4 x 5) op(A)^T (5 x 3): operands and sizes swap. */
	ck_assert_int_eq(g.m, 4);
	ck_assert_int_eq(g.n, 3);
	ck_assert_ptr_eq(g.a, b);
	ck_assert_ptr_eq(g.b, a);
	ck_assert(!g.trans_a);
	ck_assert(g.trans_b);
	ck_assert_int_eq(g.lda, 4); /* row-major B is 5 x 4: ld = 4 */
	ck_assert_int_eq(g.ldb, 3); /* row-major A^T stored 5 x 3: ld = 3 */
	ck_assert_int_eq(g.ldc, 4);
	ck_assert_int_eq(g.user_m, 3);
}
END_TEST

START_TEST(test_batches)
{
	Rxgemm__GemmRequest rq = request(3, 4, 5);
	struct rxd_gemm g;
	struct rxd_error err = { 0 };

	rq.batch_count = -2;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "batch_count");
	/* Three packed triples: A 3 x 15 floats, B 3 x 20, C 3 x 12. */
	rq.batch_count = 3;
	rq.a.len = 45 * 4, rq.b.len = 60 * 4;
	ck_assert_int_eq(validate(&rq, &g, &err), RXD_S_OK);
	ck_assert_int_eq(g.stride_a, 15);
	ck_assert_int_eq(g.stride_b, 20);
	ck_assert_int_eq(g.stride_c, 12);
	ck_assert_uint_eq(g.a_elems, 45);
	ck_assert_uint_eq(g.c_elems, 36);
	ck_assert_uint_eq(g.flops, 3 * 2 * 3 * 4 * 5);
	/* One batch's worth of a is not three. */
	rq.a.len = 15 * 4;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "a holds 15 floats but a batch");
	/* Gaps: stride 16 needs 16 * 2 + 15 = 47 floats. */
	rq.stride_a = 16, rq.a.len = 47 * 4;
	ck_assert_int_eq(validate(&rq, &g, &err), RXD_S_OK);
	ck_assert_int_eq(g.stride_a, 16);
	rq.stride_a = 14; /* overlapping matrices */
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "stride_a (14)");
	rq.stride_a = -1;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "stride_a must not");
	rq.stride_a = 0, rq.a.len = 45 * 4, rq.stride_c = 11;
	ck_assert_refused(rq, RXD_S_INVALID_ARGUMENT, "stride_c (11)");
	rq.stride_c = INT64_MAX;
	ck_assert_refused(rq, RXD_S_TOO_BIG, "c");
	rq.stride_c = 0, rq.batch_count = INT64_MAX;
	ck_assert_refused(rq, RXD_S_TOO_BIG, "overflows");
	/* Row-major swaps the operands' strides with the operands. */
	rq = request(3, 4, 5);
	rq.layout = RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR;
	rq.batch_count = 2, rq.stride_a = 16, rq.a.len = 31 * 4, rq.b.len = 40 * 4;
	ck_assert_int_eq(validate(&rq, &g, &err), RXD_S_OK);
	ck_assert_int_eq(g.stride_a, 20); /* B's, packed */
	ck_assert_int_eq(g.stride_b, 16); /* A's */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("validate");
	TCase *tc = tcase_create("gemm_validate");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_valid_minimal);
	tcase_add_test(tc, test_sizes_positive);
	tcase_add_test(tc, test_layout_checked);
	tcase_add_test(tc, test_leading_dimensions);
	tcase_add_test(tc, test_buffer_lengths);
	tcase_add_test(tc, test_c_and_beta);
	tcase_add_test(tc, test_overflow);
	tcase_add_test(tc, test_device_limits);
	tcase_add_test(tc, test_row_major_becomes_column_major);
	tcase_add_test(tc, test_batches);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

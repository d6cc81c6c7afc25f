/* test-wirecheck.c: proto/wirecheck.c's walk over the protobuf wire format, against
 * Request frames written byte by byte (each comment spells out the encoding), and against
 * protobuf-c itself: what the generated packer writes passes, and nothing that passes the
 * walk fails protobuf-c's unpack. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rxgemm.pb-c.h"
#include "wirecheck.h"

static const struct wirecheck_limits lim_default = { .max_depth = 4, .max_elements = 352 };

static int check(const uint8_t *buf, size_t len, const struct wirecheck_limits *lim,
		 struct wirecheck_result *res)
{
	return wirecheck_message(&rxgemm__request__descriptor, buf, len,
				 lim ? lim : &lim_default, res);
}

/* The fault, field, depth and offset of res, compared with what is wanted. */
static void expect(const uint8_t *buf, size_t len, const struct wirecheck_limits *lim,
		   int fault, uint32_t field, unsigned depth, size_t offset, const char *message)
{
	struct wirecheck_result res;
	int ret = check(buf, len, lim, &res);

	ck_assert_msg(ret == fault, "fault %d (%s), want %d (%s)", ret, wirecheck_fault_name(ret),
		      fault, wirecheck_fault_name(fault));
	ck_assert_int_eq(res.fault, fault);
	if (fault == WIRECHECK_OK)
		return;
	ck_assert_uint_eq(res.field, field);
	ck_assert_uint_eq(res.depth, depth);
	ck_assert_uint_eq(res.offset, offset);
	ck_assert_str_eq(res.message, message);
}

START_TEST(test_valid)
{
	struct wirecheck_result res;
	/* request_id 7; hello (field 2, length 0). */
	static const uint8_t hello[] = { 0x08, 0x07, 0x12, 0x00 };
	/* request_id 1; status (field 4, length 0). */
	static const uint8_t status[] = { 0x08, 0x01, 0x22, 0x00 };

	expect(NULL, 0, NULL, WIRECHECK_OK, 0, 0, 0, NULL);
	ck_assert_int_eq(check(NULL, 0, NULL, &res), 0);
	ck_assert(!res.top_oneof_set);
	ck_assert_int_eq(check(hello, sizeof(hello), NULL, &res), 0);
	ck_assert(res.top_oneof_set);
	ck_assert_int_eq(check(status, sizeof(status), NULL, &res), 0);
	ck_assert(res.top_oneof_set);
	/* Only request_id: no oneof member. */
	ck_assert_int_eq(check(hello, 2, NULL, &res), 0);
	ck_assert(!res.top_oneof_set);
}
END_TEST

START_TEST(test_unknown_top)
{
	struct wirecheck_result res;
	/* request_id 5; field 99 varint 1 (tag 99 << 3 | 0 = 792 = 0x98 0x06). */
	static const uint8_t f99[] = { 0x08, 0x05, 0x98, 0x06, 0x01 };
	/* the same, then status: a known body next to the unknown field. */
	static const uint8_t f99_status[] = { 0x08, 0x05, 0x98, 0x06, 0x01, 0x22, 0x00 };
	/* field 15 (a kind of job newer than this daemon; 15 << 3 | 2 = 0x7a), length-delimited,
	 * whose content is not protobuf at all: its bytes are never read as fields. */
	static const uint8_t f15[] = { 0x7a, 0x02, 0xff, 0xff, 0x08, 0x03 };

	expect(f99, sizeof(f99), NULL, WIRECHECK_UNKNOWN, 99, 0, 2, "rxgemm.Request");
	ck_assert_int_eq(check(f99, sizeof(f99), NULL, &res), WIRECHECK_UNKNOWN);
	ck_assert(!res.top_oneof_set);
	ck_assert_int_eq(check(f99_status, sizeof(f99_status), NULL, &res), WIRECHECK_UNKNOWN);
	ck_assert(res.top_oneof_set);
	ck_assert_uint_eq(res.field, 99);
	expect(f15, sizeof(f15), NULL, WIRECHECK_UNKNOWN, 15, 0, 0, "rxgemm.Request");
}
END_TEST

START_TEST(test_unknown_nested)
{
	/* request_id 1; nas_eval (field 8: 0x42) of 7 bytes: weights_region (field 21,
	 * length-delimited: 21 << 3 | 2 = 170 = 0xaa 0x01) of 4 bytes: region_id 1 (0x08 0x01)
	 * and field 9 varint 5 (0x48 0x05), which RegionRef has not got. */
	static const uint8_t nas[] = { 0x08, 0x01, 0x42, 0x07, 0xaa, 0x01, 0x04,
				       0x08, 0x01, 0x48, 0x05 };
	/* request_id 1; gemm (0x1a) of 5 bytes: m = 2 (0x08 0x02) and field 40 varint 0
	 * (40 << 3 = 320 = 0xc0 0x02), which GemmRequest has not got. */
	static const uint8_t gemm[] = { 0x08, 0x01, 0x1a, 0x05, 0x08, 0x02, 0xc0, 0x02, 0x00 };
	struct wirecheck_result res;

	expect(nas, sizeof(nas), NULL, WIRECHECK_UNKNOWN, 9, 2, 9, "rxgemm.RegionRef");
	ck_assert_int_eq(check(nas, sizeof(nas), NULL, &res), WIRECHECK_UNKNOWN);
	ck_assert(res.top_oneof_set);
	expect(gemm, sizeof(gemm), NULL, WIRECHECK_UNKNOWN, 40, 1, 6, "rxgemm.GemmRequest");
}
END_TEST

START_TEST(test_wire_type)
{
	/* request_id (uint64) length-delimited: 1 << 3 | 2 = 0x0a. */
	static const uint8_t id_ld[] = { 0x0a, 0x00 };
	/* gemm (a message) as a varint: 3 << 3 | 0 = 0x18. */
	static const uint8_t gemm_varint[] = { 0x08, 0x02, 0x18, 0x01 };
	/* gemm with alpha (field 6, float) as a varint: 0x30 0x01. */
	static const uint8_t alpha_varint[] = { 0x1a, 0x02, 0x30, 0x01 };
	/* gemm with alpha as 8 bytes (6 << 3 | 1 = 0x31). */
	static const uint8_t alpha_64[] = { 0x1a, 0x09, 0x31, 0, 0, 0, 0, 0, 0, 0, 0 };
	/* gemm with m (int64, not repeated) packed: 0x0a 0x01 0x05. */
	static const uint8_t m_packed[] = { 0x1a, 0x03, 0x0a, 0x01, 0x05 };

	expect(id_ld, sizeof(id_ld), NULL, WIRECHECK_WIRE_TYPE, 1, 0, 0, "rxgemm.Request");
	expect(gemm_varint, sizeof(gemm_varint), NULL, WIRECHECK_WIRE_TYPE, 3, 0, 2,
	       "rxgemm.Request");
	expect(alpha_varint, sizeof(alpha_varint), NULL, WIRECHECK_WIRE_TYPE, 6, 1, 2,
	       "rxgemm.GemmRequest");
	expect(alpha_64, sizeof(alpha_64), NULL, WIRECHECK_WIRE_TYPE, 6, 1, 2,
	       "rxgemm.GemmRequest");
	expect(m_packed, sizeof(m_packed), NULL, WIRECHECK_WIRE_TYPE, 1, 1, 2,
	       "rxgemm.GemmRequest");
}
END_TEST

START_TEST(test_truncated)
{
	/* A tag with no value. */
	static const uint8_t no_value[] = { 0x08 };
	/* A varint whose continuation bit promises a byte that is not there. */
	static const uint8_t cut_varint[] = { 0x08, 0x80 };
	/* gemm announcing 5 bytes, 2 there. */
	static const uint8_t cut_len[] = { 0x1a, 0x05, 0x08, 0x01 };
	/* gemm of 2 bytes whose m varint continues past them (the outer bytes follow). */
	static const uint8_t cut_inner[] = { 0x1a, 0x02, 0x08, 0x80, 0x01, 0x01 };
	/* gemm with alpha: 4 bytes needed, 3 in the sub-message. */
	static const uint8_t cut_fixed[] = { 0x1a, 0x04, 0x35, 0x00, 0x00, 0x80 };
	/* A tag cut in the middle (field 99 needs two bytes). */
	static const uint8_t cut_tag[] = { 0x08, 0x01, 0x98 };

	expect(no_value, sizeof(no_value), NULL, WIRECHECK_TRUNCATED, 1, 0, 0, "rxgemm.Request");
	expect(cut_varint, sizeof(cut_varint), NULL, WIRECHECK_TRUNCATED, 1, 0, 0,
	       "rxgemm.Request");
	expect(cut_len, sizeof(cut_len), NULL, WIRECHECK_TRUNCATED, 3, 0, 0, "rxgemm.Request");
	expect(cut_inner, sizeof(cut_inner), NULL, WIRECHECK_TRUNCATED, 1, 1, 2,
	       "rxgemm.GemmRequest");
	expect(cut_fixed, sizeof(cut_fixed), NULL, WIRECHECK_TRUNCATED, 6, 1, 2,
	       "rxgemm.GemmRequest");
	expect(cut_tag, sizeof(cut_tag), NULL, WIRECHECK_TRUNCATED, 0, 0, 2, "rxgemm.Request");
}
END_TEST

START_TEST(test_malformed)
{
	/* request_id as an 11-byte varint. */
	static const uint8_t long_varint[] = { 0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
					       0x80, 0x80, 0x80, 0x80, 0x01 };
	/* Field number 0. */
	static const uint8_t field0[] = { 0x00, 0x00 };
	/* A group start (wire type 3) for field 1, and wire types 4 and 7 for field 99. */
	static const uint8_t group[] = { 0x0b, 0x0c };
	static const uint8_t end_group[] = { 0x08, 0x01, 0x9c, 0x06 };
	static const uint8_t wt7[] = { 0x9f, 0x06, 0x00 };
	/* nas_eval with alpha_normal (field 19, float) packed (19 << 3 | 2 = 0x9a 0x01) in 6
	 * bytes: one float and a half. */
	static const uint8_t half_float[] = { 0x42, 0x09, 0x9a, 0x01, 0x06, 0, 0, 0x80, 0x3f,
					      0, 0 };

	expect(long_varint, sizeof(long_varint), NULL, WIRECHECK_MALFORMED, 1, 0, 0,
	       "rxgemm.Request");
	expect(field0, sizeof(field0), NULL, WIRECHECK_MALFORMED, 0, 0, 0, "rxgemm.Request");
	expect(group, sizeof(group), NULL, WIRECHECK_MALFORMED, 1, 0, 0, "rxgemm.Request");
	expect(end_group, sizeof(end_group), NULL, WIRECHECK_MALFORMED, 99, 0, 2,
	       "rxgemm.Request");
	expect(wt7, sizeof(wt7), NULL, WIRECHECK_MALFORMED, 99, 0, 0, "rxgemm.Request");
	expect(half_float, sizeof(half_float), NULL, WIRECHECK_MALFORMED, 19, 1, 2,
	       "rxgemm.NasEvalRequest");
}
END_TEST

/* A fault after an unknown field is what gets reported. */
START_TEST(test_fault_after_unknown)
{
	static const uint8_t buf[] = { 0x98, 0x06, 0x01, 0x1a, 0x05, 0x08 };

	expect(buf, sizeof(buf), NULL, WIRECHECK_TRUNCATED, 3, 0, 3, "rxgemm.Request");
}
END_TEST

START_TEST(test_depth)
{
	/* gemm (2 bytes): a_region (21 << 3 | 2 = 0xaa 0x01) of 0 bytes: nesting depth 2. */
	static const uint8_t buf[] = { 0x1a, 0x03, 0xaa, 0x01, 0x00 };
	struct wirecheck_limits lim = { .max_depth = 1, .max_elements = 352 };

	expect(buf, sizeof(buf), &lim, WIRECHECK_DEPTH, 21, 1, 2, "rxgemm.GemmRequest");
	lim.max_depth = 2;
	expect(buf, sizeof(buf), &lim, WIRECHECK_OK, 0, 0, 0, NULL);
	lim.max_depth = 0;
	expect(buf, sizeof(buf), &lim, WIRECHECK_DEPTH, 3, 0, 0, "rxgemm.Request");
}
END_TEST

/* nas_eval (0x42, len) holding body[0..n). */
static size_t nas_frame(uint8_t *out, const uint8_t *body, size_t n)
{
	out[0] = 0x42;
	out[1] = (uint8_t)n; /* n < 128 here */
	memcpy(out + 2, body, n);
	return n + 2;
}

START_TEST(test_too_many)
{
	struct wirecheck_limits lim = { .max_depth = 4, .max_elements = 3 };
	uint8_t body[64], buf[80];
	size_t n = 0, len;

	/* alpha_normal packed: 3 floats pass, 4 do not. */
	body[n++] = 0x9a;
	body[n++] = 0x01;
	body[n++] = 12;
	memset(body + n, 0, 12);
	n += 12;
	len = nas_frame(buf, body, n);
	expect(buf, len, &lim, WIRECHECK_OK, 0, 0, 0, NULL);
	body[2] = 16;
	memset(body + n, 0, 4);
	len = nas_frame(buf, body, n + 4);
	expect(buf, len, &lim, WIRECHECK_TOO_MANY, 19, 1, 2, "rxgemm.NasEvalRequest");

	/* Two packed runs of 2: the count is per field, over all its runs. */
	n = 0;
	for (int run = 0; run < 2; run++) {
		body[n++] = 0x9a;
		body[n++] = 0x01;
		body[n++] = 8;
		memset(body + n, 0, 8);
		n += 8;
	}
	len = nas_frame(buf, body, n);
	expect(buf, len, &lim, WIRECHECK_TOO_MANY, 19, 1, 2 + 11, "rxgemm.NasEvalRequest");

	/* Unpacked (19 << 3 | 5 = 0x9d 0x01): the fourth element is refused. */
	n = 0;
	for (int i = 0; i < 4; i++) {
		body[n++] = 0x9d;
		body[n++] = 0x01;
		memset(body + n, 0, 4);
		n += 4;
	}
	len = nas_frame(buf, body, n);
	expect(buf, len, &lim, WIRECHECK_TOO_MANY, 19, 1, 2 + 18, "rxgemm.NasEvalRequest");

	/* A singular field given four times. */
	static const uint8_t ids[] = { 0x08, 0x01, 0x08, 0x02, 0x08, 0x03, 0x08, 0x04 };
	expect(ids, 6, &lim, WIRECHECK_OK, 0, 0, 0, NULL);
	expect(ids, sizeof(ids), &lim, WIRECHECK_TOO_MANY, 1, 0, 6, "rxgemm.Request");

	/* The counts are per message: two RegionRefs with 3 region_ids each pass. */
	static const uint8_t refs[] = { 0x1a, 0x12, 0xaa, 0x01, 0x06, 0x08, 1, 0x08, 1, 0x08, 1,
					0xb2, 0x01, 0x06, 0x08, 1, 0x08, 1, 0x08, 1 };
	expect(refs, sizeof(refs), &lim, WIRECHECK_OK, 0, 0, 0, NULL);
}
END_TEST

START_TEST(test_varint_field)
{
	static const uint8_t buf[] = { 0x08, 0x05, 0x1a, 0x02, 0x08, 0x09, 0x08, 0xac, 0x02 };
	static const uint8_t bad[] = { 0x08, 0x05, 0x1a, 0x05, 0x08 };
	uint64_t v = 0;

	/* The last top-level value wins; the 9 inside gemm is not at the top level. */
	ck_assert_int_eq(wirecheck_varint_field(buf, sizeof(buf), 1, &v), 0);
	ck_assert_uint_eq(v, 300);
	ck_assert_int_eq(wirecheck_varint_field(buf, 2, 1, &v), 0);
	ck_assert_uint_eq(v, 5);
	ck_assert_int_eq(wirecheck_varint_field(buf, sizeof(buf), 2, &v), -ENOENT);
	ck_assert_int_eq(wirecheck_varint_field(bad, sizeof(bad), 1, &v), -EBADMSG);
}
END_TEST

/* Everything the generated packer writes for a full GemmRequest and a NasEvalRequest with
 * alphas and region references passes, and protobuf-c reads it back. */
START_TEST(test_packer_output_passes)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__GemmRequest g = RXGEMM__GEMM_REQUEST__INIT;
	Rxgemm__NasEvalRequest nas = RXGEMM__NAS_EVAL_REQUEST__INIT;
	Rxgemm__RegionRef ra = RXGEMM__REGION_REF__INIT, rb = RXGEMM__REGION_REF__INIT;
	float a[6] = { 1, 2, 3, 4, 5, 6 }, alpha[352];
	struct wirecheck_result res;
	uint8_t *buf;
	size_t len;

	g.m = 2; g.n = 3; g.k = 1; g.trans_a = 1; g.alpha = 1.5f; g.beta = -2.0f;
	g.layout = RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR; g.lda = 1; g.ldb = 3; g.ldc = 3;
	g.a.data = (uint8_t *)a; g.a.len = 8; g.c.data = (uint8_t *)a; g.c.len = 24;
	g.batch_count = 1; g.priority = 2; g.deadline_ms = 1000;
	rb.region_id = 3; rb.offset = 64; rb.length = 12;
	g.b_region = &rb;
	ra.region_id = 1; ra.length = 24;
	g.c_out = &ra;
	req.request_id = UINT64_MAX;
	req.body_case = RXGEMM__REQUEST__BODY_GEMM;
	req.gemm = &g;
	len = rxgemm__request__get_packed_size(&req);
	buf = malloc(len);
	ck_assert_ptr_nonnull(buf);
	rxgemm__request__pack(&req, buf);
	ck_assert_int_eq(check(buf, len, NULL, &res), WIRECHECK_OK);
	ck_assert(res.top_oneof_set);
	free(buf);

	for (int i = 0; i < 352; i++)
		alpha[i] = (float)i / 7.0f;
	nas.genotype = (char *)"DARTS_V2";
	nas.supernet = 1;
	nas.steps = 8;
	nas.n_alpha_normal = nas.n_alpha_reduce = 352;
	nas.alpha_normal = nas.alpha_reduce = alpha;
	nas.weights_region = &ra;
	nas.input_region = &rb;
	req.body_case = RXGEMM__REQUEST__BODY_NAS_EVAL;
	req.nas_eval = &nas;
	len = rxgemm__request__get_packed_size(&req);
	buf = malloc(len);
	ck_assert_ptr_nonnull(buf);
	rxgemm__request__pack(&req, buf);
	ck_assert_int_eq(check(buf, len, NULL, &res), WIRECHECK_OK);
	/* One element more than the bound is refused. */
	struct wirecheck_limits lim = { .max_depth = 4, .max_elements = 351 };
	ck_assert_int_eq(check(buf, len, &lim, &res), WIRECHECK_TOO_MANY);
	ck_assert_uint_eq(res.field, 19);
	Rxgemm__Request *back = rxgemm__request__unpack(NULL, len, buf);
	ck_assert_ptr_nonnull(back);
	ck_assert_uint_eq(back->nas_eval->n_alpha_reduce, 352);
	rxgemm__request__free_unpacked(back, NULL);
	free(buf);
}
END_TEST

/* Random corruptions of a valid frame: whatever the walk passes, protobuf-c unpacks, with
 * no unknown field anywhere the walk looked. */
START_TEST(test_mutations_agree_with_protobuf_c)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__GemmRequest g = RXGEMM__GEMM_REQUEST__INIT;
	Rxgemm__RegionRef r = RXGEMM__REGION_REF__INIT;
	float a[4] = { 1, 2, 3, 4 };
	uint8_t base[256], buf[256];
	uint64_t state = 12345;
	size_t len;
	unsigned passed = 0;

	g.m = 2; g.n = 2; g.k = 1; g.alpha = 1; g.a.data = (uint8_t *)a; g.a.len = 8;
	r.region_id = 4; r.offset = 8; r.length = 8;
	g.b_region = &r;
	req.request_id = 77;
	req.body_case = RXGEMM__REQUEST__BODY_GEMM;
	req.gemm = &g;
	len = rxgemm__request__get_packed_size(&req);
	ck_assert_uint_le(len, sizeof(base));
	rxgemm__request__pack(&req, base);
	for (int iter = 0; iter < 200000; iter++) {
		struct wirecheck_result res;
		int flips = 1 + (int)(state % 3);

		memcpy(buf, base, len);
		for (int f = 0; f < flips; f++) {
			state = state * 6364136223846793005ull + 1442695040888963407ull;
			buf[(state >> 33) % len] = (uint8_t)(state >> 20);
		}
		int fault = check(buf, len, NULL, &res);
		if (fault != WIRECHECK_OK)
			continue;
		passed++;
		Rxgemm__Request *back = rxgemm__request__unpack(NULL, len, buf);
		ck_assert_msg(back != NULL, "iteration %d: the walk passed what protobuf-c refuses",
			      iter);
		ck_assert_uint_eq(back->base.n_unknown_fields, 0);
		rxgemm__request__free_unpacked(back, NULL);
	}
	/* The property was exercised, not skipped. */
	ck_assert_uint_gt(passed, 1000);
}
END_TEST

static Suite *wirecheck_suite(void)
{
	Suite *s = suite_create("wirecheck");
	TCase *tc = tcase_create("walk");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_valid);
	tcase_add_test(tc, test_unknown_top);
	tcase_add_test(tc, test_unknown_nested);
	tcase_add_test(tc, test_wire_type);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_fault_after_unknown);
	tcase_add_test(tc, test_depth);
	tcase_add_test(tc, test_too_many);
	tcase_add_test(tc, test_varint_field);
	tcase_add_test(tc, test_packer_output_passes);
	tcase_add_test(tc, test_mutations_agree_with_protobuf_c);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(wirecheck_suite());

	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

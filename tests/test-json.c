/* test-json.c: common/json.c, the JSON writer of every program, against hand-written
 * answers from RFC 8259 (string escapes) and RFC 3629 (which bytes are UTF-8). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static char *out;
static size_t out_len;
static FILE *f;

static void open_out(void)
{
	f = open_memstream(&out, &out_len);
	ck_assert_ptr_nonnull(f);
}

static const char *close_out(void)
{
	fclose(f);
	return out;
}

static void teardown(void)
{
	free(out);
	out = NULL;
}

/* The JSON string written for the len bytes of s. */
static const char *str_of(const char *s, size_t len)
{
	free(out);
	open_out();
	json_write_string_len(f, s, len);
	return close_out();
}

#define STR(lit) str_of(lit, sizeof(lit) - 1)

START_TEST(test_escapes)
{
	ck_assert_str_eq(STR("plain"), "\"plain\"");
	ck_assert_str_eq(STR(""), "\"\"");
	ck_assert_str_eq(STR("say \"hi\""), "\"say \\\"hi\\\"\"");
	ck_assert_str_eq(STR("C:\\dir\\"), "\"C:\\\\dir\\\\\"");
	ck_assert_str_eq(STR("a\nb\tc\rd\be\ff"), "\"a\\nb\\tc\\rd\\be\\ff\"");
	ck_assert_str_eq(STR("\x01\x1f\x7f"), "\"\\u0001\\u001f\\u007f\"");
	/* A NUL inside the bytes, and / which needs no escape. */
	ck_assert_str_eq(STR("a\0b/c"), "\"a\\u0000b/c\"");
}
END_TEST

START_TEST(test_utf8_kept)
{
	/* 2-, 3- and 4-byte sequences, the last code point U+10FFFF. */
	ck_assert_str_eq(STR("caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e \xf4\x8f\xbf\xbf"),
			 "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e \xf4\x8f\xbf\xbf\"");
}
END_TEST

START_TEST(test_utf8_invalid)
{
	/* A lone continuation byte, 0xff, an overlong '/', a surrogate (U+D800), a truncated
	 * 3-byte sequence at the end, and a code point above U+10FFFF: every bad byte one
	 * U+FFFD, the good bytes around them kept. */
	ck_assert_str_eq(STR("a\x80z"), "\"a\\ufffdz\"");
	ck_assert_str_eq(STR("\xff"), "\"\\ufffd\"");
	ck_assert_str_eq(STR("\xc0\xaf"), "\"\\ufffd\\ufffd\"");
	ck_assert_str_eq(STR("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");
	ck_assert_str_eq(STR("x\xe2\x82"), "\"x\\ufffd\\ufffd\"");
	ck_assert_str_eq(STR("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
}
END_TEST

START_TEST(test_numbers)
{
	open_out();
	json_write_number(f, 1.5);
	fputc(' ', f);
	json_write_number(f, NAN);
	fputc(' ', f);
	json_write_number(f, -INFINITY);
	fputc(' ', f);
	json_write_number(f, 0.1f);
	ck_assert_str_eq(close_out(), "1.5 null null 0.100000001");
}
END_TEST

START_TEST(test_writer_nesting)
{
	struct json_writer w;

	open_out();
	json_init(&w, f);
	json_begin_object(&w);
	json_key(&w, "name");
	json_string(&w, "GPU \"0\"");
	json_key(&w, "list");
	json_begin_array(&w);
	json_uint(&w, 18446744073709551615u);
	json_int(&w, -3);
	json_begin_object(&w);
	json_end_object(&w);
	json_begin_array(&w);
	json_end_array(&w);
	json_bool(&w, true);
	json_null(&w);
	json_end_array(&w);
	json_key(&w, "x");
	json_number(&w, NAN);
	json_key(&w, "k\n");
	json_bool(&w, false);
	json_end_object(&w);
	ck_assert_int_eq(w.depth, 0);
	ck_assert_str_eq(close_out(), "{\"name\":\"GPU \\\"0\\\"\",\"list\":[18446744073709551615,"
				      "-3,{},[],true,null],\"x\":null,\"k\\n\":false}");
}
END_TEST

START_TEST(test_null_string)
{
	open_out();
	json_write_string(f, NULL);
	ck_assert_str_eq(close_out(), "\"\"");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("json");
	TCase *tc = tcase_create("writer");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, test_escapes);
	tcase_add_test(tc, test_utf8_kept);
	tcase_add_test(tc, test_utf8_invalid);
	tcase_add_test(tc, test_numbers);
	tcase_add_test(tc, test_writer_nesting);
	tcase_add_test(tc, test_null_string);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

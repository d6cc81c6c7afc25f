/* test-prom.c: common/prom.c against the escaping rules of Prometheus's text exposition
 * format 0.0.4 (label values: \\, \" and \n; help text: \\ and \n only). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "prom.h"

static char *out;
static size_t out_len;
static FILE *f;

static void setup(void)
{
	f = open_memstream(&out, &out_len);
	ck_assert_ptr_nonnull(f);
}

static void teardown(void)
{
	free(out);
}

START_TEST(test_label_escapes)
{
	prom_label_value(f, "a\"b\\c\nd\te\xc3\xa9");
	fputc(' ', f);
	prom_label_value(f, NULL);
	fclose(f);
	/* A tab and UTF-8 stay as they are: the format escapes only these three. */
	ck_assert_str_eq(out, "\"a\\\"b\\\\c\\nd\te\xc3\xa9\" \"\"");
}
END_TEST

START_TEST(test_family)
{
	prom_family(f, "rxgemm_jobs_total", "counter", "Jobs \"done\"\\\nsince start");
	fclose(f);
	/* In help text a quote is not escaped; a backslash and a newline are. */
	ck_assert_str_eq(out, "# HELP rxgemm_jobs_total Jobs \"done\"\\\\\\nsince start\n"
			      "# TYPE rxgemm_jobs_total counter\n");
}
END_TEST

START_TEST(test_values)
{
	prom_value(f, 42);
	fputc(' ', f);
	prom_value(f, 0.25);
	fputc(' ', f);
	prom_value(f, NAN);
	fputc(' ', f);
	prom_value(f, INFINITY);
	fputc(' ', f);
	prom_value(f, -INFINITY);
	fputc(' ', f);
	prom_value(f, 18446744073709551615.0);
	fclose(f);
	ck_assert_str_eq(out, "42 0.25 NaN +Inf -Inf 1.8446744073709552e+19");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("prom");
	TCase *tc = tcase_create("exposition");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_label_escapes);
	tcase_add_test(tc, test_family);
	tcase_add_test(tc, test_values);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test-genotype.c: DARTS genotypes (daemon/genotype.c).
 *
 *   named:     the four named genotypes against their text in the reference's genotypes.py,
 *              typed here by hand, and round trips of each through the printer and parser
 *   parser:    the forms the reference prints (lists, range(), spacing, quotes), and every
 *              refusal with the byte it must point at: unknown operation, input index out
 *              of range, odd edge count, bad concat, junk, missing and repeated fields */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "genotype.h"

/* The reference's printed DARTS_V2 (python: print(genotypes.DARTS_V2)). */
static const char darts_v2_text[] =
	"Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
	"('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
	"('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
	"('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
	"('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
	"reduce_concat=[2, 3, 4, 5])";

static const char amoeba_text[] =
	"Genotype(normal=[('avg_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_3x3', 0), "
	"('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('avg_pool_3x3', 3), ('sep_conv_3x3', 1), "
	"('skip_connect', 1), ('skip_connect', 0), ('avg_pool_3x3', 1)], "
	"normal_concat=[4, 5, 6], reduce=[('avg_pool_3x3', 0), ('sep_conv_3x3', 1), "
	"('max_pool_3x3', 0), ('sep_conv_7x7', 2), ('sep_conv_7x7', 0), ('avg_pool_3x3', 1), "
	"('max_pool_3x3', 0), ('max_pool_3x3', 1), ('conv_7x1_1x7', 0), ('sep_conv_3x3', 5)], "
	"reduce_concat=[3, 4, 6])";

static const char nasnet_text[] =
	"Genotype(normal=[('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('sep_conv_5x5', 0), "
	"('sep_conv_3x3', 0), ('avg_pool_3x3', 1), ('skip_connect', 0), ('avg_pool_3x3', 0), "
	"('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 1)], "
	"normal_concat=[2, 3, 4, 5, 6], reduce=[('sep_conv_5x5', 1), ('sep_conv_7x7', 0), "
	"('max_pool_3x3', 1), ('sep_conv_7x7', 0), ('avg_pool_3x3', 1), ('sep_conv_5x5', 0), "
	"('skip_connect', 3), ('avg_pool_3x3', 2), ('sep_conv_3x3', 2), ('max_pool_3x3', 1)], "
	"reduce_concat=[4, 5, 6])";

static const char darts_v1_text[] =
	"Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), "
	"('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
	"('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
	"('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
	"('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], "
	"reduce_concat=[2, 3, 4, 5])";

static bool geno_eq(const struct rxd_genotype *a, const struct rxd_genotype *b)
{
	const struct rxd_genotype_cell *ca[2] = { &a->normal, &a->reduce };
	const struct rxd_genotype_cell *cb[2] = { &b->normal, &b->reduce };

	for (int c = 0; c < 2; c++) {
		if (ca[c]->n_nodes != cb[c]->n_nodes || ca[c]->n_concat != cb[c]->n_concat)
			return false;
		for (int j = 0; j < 2 * ca[c]->n_nodes; j++)
			if (ca[c]->op[j] != cb[c]->op[j] || ca[c]->input[j] != cb[c]->input[j])
				return false;
		for (int k = 0; k < ca[c]->n_concat; k++)
			if (ca[c]->concat[k] != cb[c]->concat[k])
				return false;
	}
	return true;
}

START_TEST(named_match_reference_text)
{
	static const struct {
		const char *name, *text;
	} cases[] = { { "DARTS_V1", darts_v1_text },
		      { "DARTS_V2", darts_v2_text },
		      { "NASNet", nasnet_text },
		      { "AmoebaNet", amoeba_text } };
	struct rxd_genotype g, p;
	char buf[RXD_GENOTYPE_TEXT_MAX];
	struct rxd_error err = { 0 };

	for (size_t i = 0; i < 4; i++) {
		ck_assert_int_eq(genotype_named(cases[i].name, &g), 0);
		ck_assert_uint_eq(genotype_format(&g, buf, sizeof(buf)), strlen(cases[i].text));
		ck_assert_str_eq(buf, cases[i].text);
		ck_assert_int_eq(genotype_parse(cases[i].text, strlen(cases[i].text), &p, &err),
				 0);
		ck_assert(geno_eq(&g, &p));
		ck_assert_int_eq(genotype_check(&g, &err), 0);
	}
	ck_assert_int_eq(genotype_named("DARTS", &g), -ENOENT);
	ck_assert_str_eq(genotype_name(3), "AmoebaNet");
	ck_assert_ptr_null(genotype_name(4));
}
END_TEST

START_TEST(roundtrip_named)
{
	struct rxd_genotype g, p;
	char buf[RXD_GENOTYPE_TEXT_MAX], buf2[RXD_GENOTYPE_TEXT_MAX];
	struct rxd_error err = { 0 };
	const char *name;

	for (size_t i = 0; (name = genotype_name(i)) != NULL; i++) {
		size_t n;

		ck_assert_int_eq(genotype_named(name, &g), 0);
		n = genotype_format(&g, buf, sizeof(buf));
		ck_assert_uint_lt(n, sizeof(buf));
		ck_assert_int_eq(genotype_parse(buf, n, &p, &err), 0);
		ck_assert(geno_eq(&g, &p));
		genotype_format(&p, buf2, sizeof(buf2));
		ck_assert_str_eq(buf, buf2);
		/* A short buffer is truncated but the length needed is still right. */
		ck_assert_uint_eq(genotype_format(&g, buf2, 10), n);
		ck_assert_uint_eq(strlen(buf2), 9);
	}
}
END_TEST

START_TEST(parser_accepts_variants)
{
	/* As train_search.py logs it (range), with other spacing, double quotes, a newline. */
	static const char text[] =
		"  Genotype( normal = [ (\"sep_conv_3x3\" ,0),('sep_conv_3x3', 1),\n"
		"('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0),"
		" ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=range(2, 6), "
		"reduce_concat=range(2,6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), "
		"('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2),"
		" ('skip_connect', 2), ('max_pool_3x3', 1)])\n";
	struct rxd_genotype g, p;
	struct rxd_error err = { 0 };

	ck_assert_int_eq(genotype_parse(text, strlen(text), &p, &err), 0);
	ck_assert_int_eq(genotype_named("DARTS_V2", &g), 0);
	ck_assert(geno_eq(&g, &p));
	/* Length, not the NUL, ends the text. */
	ck_assert_int_eq(genotype_parse(darts_v2_text, 20, &p, &err), -EINVAL);
}
END_TEST

/* Replace the first occurrence of from in base by to; parse; the error must name byte
 * `at` (relative to the start of the text) and contain `word`. */
static void expect_error(const char *base, const char *from, const char *to, long at,
			 const char *word)
{
	char text[4096], want[64];
	struct rxd_error err;
	const char *p = strstr(base, from);
	struct rxd_genotype g;
	size_t pre;

	ck_assert_ptr_nonnull(p);
	pre = (size_t)(p - base);
	snprintf(text, sizeof(text), "%.*s%s%s", (int)pre, base, to, p + strlen(from));
	error_clear(&err);
	ck_assert_int_eq(genotype_parse(text, strlen(text), &g, &err), -EINVAL);
	if (at >= 0) {
		snprintf(want, sizeof(want), "genotype text, byte %ld:", at);
		ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "'%s' does not start '%s'",
			      err.msg, want);
	}
	ck_assert_msg(strstr(err.msg, word) != NULL, "'%s' does not say '%s'", err.msg, word);
}

static long offset_of(const char *s, const char *sub)
{
	const char *p = strstr(s, sub);

	ck_assert_ptr_nonnull(p);
	return p - s;
}

START_TEST(parser_errors)
{
	const char *t = darts_v2_text;
	long dil = offset_of(t, "'dil_conv_3x3'");

	/* Unknown operation: at its opening quote. */
	expect_error(t, "'dil_conv_3x3'", "'dil_conv_9x9'", dil, "unknown operation 'dil_conv_9x9'");
	/* Input index out of range: node 0 of normal can take 0 or 1, here 2; at the digit. */
	expect_error(t, "('sep_conv_3x3', 1)", "('sep_conv_3x3', 2)",
		     offset_of(t, "('sep_conv_3x3', 1)") + 17, "takes input 2");
	/* The last node (3) of reduce can take 0..4. */
	expect_error(t, "('max_pool_3x3', 1)], reduce_concat", "('max_pool_3x3', 5)], reduce_concat",
		     offset_of(t, "('max_pool_3x3', 1)], reduce_concat") + 17, "0 to 4");
	/* Odd edge count: at the list's '['. */
	expect_error(t, ", ('dil_conv_3x3', 2)]", "]", offset_of(t, "normal=[") + 7, "7 edges");
	/* Bad concat: out of range, repeated, decreasing, empty range, empty list. */
	expect_error(t, "normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 4, 6]",
		     offset_of(t, "normal_concat=[") + 24, "nodes are 2 to 5");
	expect_error(t, "normal_concat=[2, 3, 4, 5]", "normal_concat=[1, 3, 4, 5]",
		     offset_of(t, "normal_concat=[") + 15, "concat entry 0 is 1");
	expect_error(t, "reduce_concat=[2, 3, 4, 5]", "reduce_concat=[2, 3, 3, 5]",
		     offset_of(t, "reduce_concat=[") + 21, "must increase");
	expect_error(t, "reduce_concat=[2, 3, 4, 5]", "reduce_concat=range(4, 4)",
		     offset_of(t, "reduce_concat=") + 23, "empty");
	expect_error(t, "reduce_concat=[2, 3, 4, 5]", "reduce_concat=[]",
		     offset_of(t, "reduce_concat=") + 15, "node index");
	/* Syntax: junk after, a missing comma, a missing field, a repeated one, wrong name. */
	expect_error(t, "[2, 3, 4, 5])", "[2, 3, 4, 5]) x", (long)strlen(t) + 1, "after");
	expect_error(t, "('sep_conv_3x3', 0), ('sep_conv_3x3', 1)",
		     "('sep_conv_3x3', 0) ('sep_conv_3x3', 1)",
		     offset_of(t, "('sep_conv_3x3', 1)") - 1,
		     "expected ','");
	expect_error(t, ", reduce_concat=[2, 3, 4, 5]", "", (long)strlen(t) - 29, "expected ','");
	expect_error(t, "reduce_concat", "normal_concat", offset_of(t, "reduce_concat"),
		     "given twice");
	expect_error(t, "Genotype(", "Genotyp(", 0, "expected 'Genotype'");
	expect_error(t, "('sep_conv_3x3', 0)", "('sep_conv_3x3', -1)", offset_of(t, "('sep_conv_3x3', 0)") + 17,
		     "expected a node index");
	expect_error(t, "'dil_conv_3x3', 2)", "'dil_conv_3x3, 2)", -1, "");
	expect_error(t, "[2, 3, 4, 5])", "[2, 3, 4, 5]", (long)strlen(t) - 1, "expected ')'");
	expect_error(t, ", 0)", ", 999)", -1, "too large");
	expect_error(t, "normal=[", "normal=[]+", offset_of(t, "normal=[") + 7, "at least one node");
}
END_TEST

START_TEST(check_rejects_built_cells)
{
	struct rxd_genotype g;
	struct rxd_error err = { 0 };

	ck_assert_int_eq(genotype_named("NASNet", &g), 0);
	g.reduce.input[9] = 6; /* node 4 can take 0..5 */
	ck_assert_int_eq(genotype_check(&g, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "reduce edge 9"));
	ck_assert_int_eq(genotype_named("NASNet", &g), 0);
	g.normal.op[0] = RXD_OP_COUNT;
	ck_assert_int_eq(genotype_check(&g, &err), -EINVAL);
	ck_assert_int_eq(genotype_named("NASNet", &g), 0);
	g.normal.n_concat = 0;
	ck_assert_int_eq(genotype_check(&g, &err), -EINVAL);
	ck_assert_str_eq(genotype_op_name(RXD_OP_CONV_7X1_1X7), "conv_7x1_1x7");
	ck_assert_str_eq(genotype_op_name(-1), "?");
	ck_assert_int_eq(genotype_op_parse("none", 4), RXD_OP_NONE);
	ck_assert_int_eq(genotype_op_parse("none", 3), -ENOENT);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("genotype");
	TCase *tc = tcase_create("genotype");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, named_match_reference_text);
	tcase_add_test(tc, roundtrip_named);
	tcase_add_test(tc, parser_accepts_variants);
	tcase_add_test(tc, parser_errors);
	tcase_add_test(tc, check_rejects_built_cells);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test-budget.c: the device-memory budget (budget.c) and the splitting of jobs (split.c).
 *
 * The accounting tests use fake buffers (alloc/free callbacks that count and remember
 * sizes), so reservation, quotas, the pool and eviction are tested exactly and without a
 * device (nothing waits in the budget: see admit.c). The split tests run split_run on a real
 * OpenCL device (PoCL here) under tiny budgets against the CPU reference, over both
 * layouts, every transpose pair, padded leading dimensions, beta != 0 and strided batches;
 * they are skipped when there is no device. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "refgemm.h"
#include "wire.h"

/* ---- fake buffers --------------------------------------------------------------------- */

struct fake {
	int allocs, frees, live;
	uint64_t live_bytes, max_live_bytes;
	bool fail_next;
};

struct fake_buf {
	uint64_t bytes;
};

static int fake_alloc(void *ctx, uint64_t bytes, void **mem, int *err)
{
	struct fake *f = ctx;
	struct fake_buf *b;

	if (f->fail_next) {
		f->fail_next = false;
		if (err)
			*err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
		return -ENOMEM;
	}
	b = malloc(sizeof(*b));
	ck_assert_ptr_nonnull(b);
	b->bytes = bytes;
	f->allocs++;
	f->live++;
	f->live_bytes += bytes;
	if (f->live_bytes > f->max_live_bytes)
		f->max_live_bytes = f->live_bytes;
	*mem = b;
	return 0;
}

static void fake_free(void *ctx, void *mem)
{
	struct fake *f = ctx;
	struct fake_buf *b = mem;

	f->frees++;
	f->live--;
	f->live_bytes -= b->bytes;
	free(b);
}

#define K 1024ull
#define M (1024ull * 1024ull)

static struct rxd_budget_stats stats_of(struct rxd_budget *b)
{
	struct rxd_budget_stats s;

	budget_stats(b, &s);
	return s;
}

START_TEST(test_round)
{
	ck_assert_uint_eq(budget_round(0), 4096);
	ck_assert_uint_eq(budget_round(1), 4096);
	ck_assert_uint_eq(budget_round(4096), 4096);
	ck_assert_uint_eq(budget_round(4097), 4608);     /* 4096 + 4096 / 8 */
	ck_assert_uint_eq(budget_round(1 * M), 1 * M);
	ck_assert_uint_eq(budget_round(1 * M + 1), 1 * M + 128 * K);
	ck_assert_uint_eq(budget_round(3 * M), 3 * M);
	for (uint64_t x = 1; x < 100 * M; x = x * 3 + 7) {
		uint64_t r = budget_round(x);
		ck_assert_uint_ge(r, x);
		ck_assert(x <= 4096 || r <= x + x / 8 + 1);
		ck_assert_uint_eq(budget_round(r), r); /* a class is its own class */
	}
}
END_TEST

START_TEST(test_resolve_and_parse)
{
	uint64_t bytes;
	double pct;

	ck_assert_uint_eq(budget_resolve(0, 0, 16ull << 30), 8ull << 30);
	ck_assert_uint_eq(budget_resolve(0, 0, 4ull << 30), 4ull << 30); /* never more */
	ck_assert_uint_eq(budget_resolve(6ull << 30, 0, 4ull << 30), 4ull << 30);
	ck_assert_uint_eq(budget_resolve(512 * M, 0, 4ull << 30), 512 * M);
	ck_assert_uint_eq(budget_resolve(0, 75, 4ull << 30), 3ull << 30);
	ck_assert_int_eq(config_parse_budget("6G", &bytes, &pct), 0);
	ck_assert_uint_eq(bytes, 6ull << 30);
	ck_assert(pct == 0);
	ck_assert_int_eq(config_parse_budget("512M", &bytes, &pct), 0);
	ck_assert_uint_eq(bytes, 512 * M);
	ck_assert_int_eq(config_parse_budget("75%", &bytes, &pct), 0);
	ck_assert(pct == 75);
	ck_assert_int_eq(config_parse_budget("12.5%", &bytes, &pct), 0);
	ck_assert(pct == 12.5);
	ck_assert_int_eq(config_parse_budget("100%", &bytes, &pct), 0);
	static const char *const bad[] = { "", "0", "4K", "abc", "-5G", "0%", "101%", "%",
					   "75%%", "x%", "5Q", "1e3%", "75 %" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(config_parse_budget(bad[i], &bytes, &pct) == -EINVAL,
			      "'%s' accepted", bad[i]);
}
END_TEST

START_TEST(test_reserve_release)
{
	struct fake f = { 0 };
	struct rxd_budget *b;
	struct rxd_budget_res r1, r2, r3;
	void *m1, *m2;

	b = budget_create(1 * M, 0, fake_alloc, fake_free, &f);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(budget_reserve(b, &r1, 1, 600 * K), 0);
	ck_assert_uint_eq(stats_of(b).reserved_bytes, 600 * K);
	/* Too much for what is left now: -EAGAIN without waiting; more than the budget:
	 * -E2BIG whatever is left. */
	ck_assert_int_eq(budget_reserve(b, &r2, 2, 600 * K), -EAGAIN);
	ck_assert_int_eq(budget_reserve(b, &r2, 2, 1 * M + 1), -E2BIG);
	ck_assert_int_eq(budget_reserve(b, &r2, 2, 424 * K), 0);
	ck_assert_uint_eq(stats_of(b).reserved_bytes, 1 * M);
	ck_assert_uint_eq(stats_of(b).peak_bytes, 1 * M);
	/* Buffers come out of the reservation, rounded to their class (299K: 320K). */
	ck_assert_int_eq(budget_buf_get(b, &r1, 299 * K, &m1, NULL), 0);
	ck_assert_int_eq(budget_buf_get(b, &r1, 256 * K, &m2, NULL), 0);
	ck_assert_uint_eq(stats_of(b).in_use_bytes, 320 * K + 256 * K);
	/* 24K left in r1: a 64K buffer is over the reservation. */
	ck_assert_int_eq(budget_buf_get(b, &r1, 64 * K, &m2, NULL), -ENOSPC);
	ck_assert_int_eq(f.allocs, 2);
	budget_release(b, &r1);
	budget_release(b, &r2);
	budget_release(b, &r2); /* twice is harmless */
	struct rxd_budget_stats s = stats_of(b);
	ck_assert_uint_eq(s.reserved_bytes, 0);
	ck_assert_uint_eq(s.in_use_bytes, 0);
	ck_assert_uint_eq(s.pool_bytes, 576 * K);
	ck_assert_uint_eq(s.pool_buffers, 2);
	ck_assert_uint_le(s.peak_bytes, 1 * M);
	/* A release of a reservation never made (r3 failed) is harmless too. */
	ck_assert_int_eq(budget_reserve(b, &r3, 3, 2 * M), -E2BIG);
	budget_release(b, &r3);
	budget_destroy(b);
	ck_assert_int_eq(f.live, 0);
	ck_assert_uint_le(f.max_live_bytes, 1 * M);
}
END_TEST

START_TEST(test_pool_reuse_and_eviction)
{
	struct fake f = { 0 };
	struct rxd_budget *b;
	struct rxd_budget_res r;
	void *m1, *m2, *m3;

	b = budget_create(1 * M, 0, fake_alloc, fake_free, &f);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(budget_reserve(b, &r, 1, 512 * K), 0);
	ck_assert_int_eq(budget_buf_get(b, &r, 192 * K, &m1, NULL), 0);
	ck_assert_int_eq(budget_buf_get(b, &r, 96 * K, &m2, NULL), 0);
	budget_release(b, &r);
	ck_assert_uint_eq(stats_of(b).pool_buffers, 2);
	/* The same sizes again: both come from the pool, nothing is made. */
	ck_assert_int_eq(budget_reserve(b, &r, 1, 512 * K), 0);
	ck_assert_int_eq(budget_buf_get(b, &r, 96 * K, &m3, NULL), 0);
	ck_assert_ptr_eq(m3, m2);
	ck_assert_int_eq(budget_buf_get(b, &r, 191 * K, &m3, NULL), 0); /* same class */
	ck_assert_ptr_eq(m3, m1);
	ck_assert_int_eq(f.allocs, 2);
	ck_assert_uint_eq(stats_of(b).reuses, 2);
	ck_assert_uint_eq(stats_of(b).pool_buffers, 0);
	budget_release(b, &r);
	/* Reserved + pool stays within the budget: a reservation that needs the pool's room
	 * frees idle buffers first, and never more than it needs. */
	ck_assert_uint_eq(stats_of(b).pool_bytes, 288 * K);
	ck_assert_int_eq(budget_reserve(b, &r, 1, 800 * K), 0);
	struct rxd_budget_stats s = stats_of(b);
	ck_assert_uint_le(s.reserved_bytes + s.pool_bytes, 1 * M);
	ck_assert_uint_eq(s.pool_buffers, 1);    /* the 96K one was enough to free */
	ck_assert_uint_eq(s.evictions, 1);
	ck_assert_int_eq(f.frees, 1);
	ck_assert_uint_le(f.live_bytes + (s.reserved_bytes - s.in_use_bytes), 1 * M);
	budget_release(b, &r);
	ck_assert_uint_le(stats_of(b).peak_bytes, 1 * M);
	budget_trim(b);
	ck_assert_int_eq(f.live, 0);
	ck_assert_uint_eq(stats_of(b).pool_bytes, 0);
	budget_destroy(b);
}
END_TEST

START_TEST(test_alloc_failure)
{
	struct fake f = { 0 };
	struct rxd_budget *b;
	struct rxd_budget_res r;
	void *m;
	int err = 0;

	b = budget_create(1 * M, 0, fake_alloc, fake_free, &f);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(budget_reserve(b, &r, 1, 512 * K), 0);
	f.fail_next = true;
	ck_assert_int_eq(budget_buf_get(b, &r, 100 * K, &m, &err), -ENOMEM);
	ck_assert_int_eq(err, CL_MEM_OBJECT_ALLOCATION_FAILURE);
	ck_assert_uint_eq(stats_of(b).in_use_bytes, 0);
	ck_assert_int_eq(budget_buf_get(b, &r, 100 * K, &m, &err), 0);
	budget_release(b, &r);
	ck_assert_uint_eq(stats_of(b).reserved_bytes, 0);
	budget_destroy(b);
	ck_assert_int_eq(f.live, 0);
}
END_TEST

START_TEST(test_quota)
{
	struct fake f = { 0 };
	struct rxd_budget *b;
	struct rxd_budget_res r1, r2, r3;

	b = budget_create(1 * M, 256 * K, fake_alloc, fake_free, &f);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(budget_reserve(b, &r1, 1, 300 * K), -EDQUOT);
	ck_assert_int_eq(budget_reserve(b, &r1, 1, 200 * K), 0);
	/* Owner 1 has 200K: 100K more is over its quota, and it does not wait for it. */
	ck_assert_int_eq(budget_reserve(b, &r2, 1, 100 * K), -EDQUOT);
	/* Another owner is not affected. */
	ck_assert_int_eq(budget_reserve(b, &r3, 2, 256 * K), 0);
	budget_release(b, &r1);
	ck_assert_int_eq(budget_reserve(b, &r2, 1, 256 * K), 0);
	budget_release(b, &r2);
	budget_release(b, &r3);
	/* SIGHUP: the quota goes, a bigger job of owner 1 fits now. */
	budget_set_limits(b, 1 * M, 0);
	ck_assert_int_eq(budget_reserve(b, &r1, 1, 900 * K), 0);
	budget_release(b, &r1);
	ck_assert_uint_eq(stats_of(b).reserved_bytes, 0);
	budget_destroy(b);
}
END_TEST

/* Resident reservations (device tensors): counted apart, and what does not fit beside them
 * is -E2BIG for every other reservation. */
START_TEST(test_resident)
{
	struct fake f = { 0 };
	struct rxd_budget *b;
	struct rxd_budget_res t1, t2, r;

	b = budget_create(1 * M, 768 * K, fake_alloc, fake_free, &f);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(budget_reserve_resident(b, &t1, 1, 512 * K), 0);
	ck_assert_uint_eq(stats_of(b).resident_bytes, 512 * K);
	ck_assert_uint_eq(stats_of(b).reserved_bytes, 512 * K);
	/* The quota counts the tensor: 512K + 512K is over owner 1's 768K. */
	ck_assert_int_eq(budget_reserve_resident(b, &t2, 1, 512 * K), -EDQUOT);
	/* Another owner: the budget less the tensor is 512K; more does not fit. */
	ck_assert_int_eq(budget_reserve_resident(b, &t2, 2, 600 * K), -E2BIG);
	ck_assert_int_eq(budget_reserve(b, &r, 2, 600 * K), -E2BIG);
	ck_assert_int_eq(budget_reserve(b, &r, 2, 512 * K), 0);
	/* Full now, by a job: a tensor does not wait for it. */
	ck_assert_int_eq(budget_reserve_resident(b, &t2, 2, 4 * K), -EAGAIN);
	budget_release(b, &r);
	ck_assert_int_eq(budget_reserve_resident(b, &t2, 2, 256 * K), 0);
	ck_assert_uint_eq(stats_of(b).resident_bytes, 768 * K);
	/* SIGHUP: a budget below what the tensors hold refuses the rest, without wrapping. */
	budget_set_limits(b, 512 * K, 0);
	ck_assert_int_eq(budget_reserve(b, &r, 3, 4 * K), -E2BIG);
	budget_release(b, &t1);
	budget_release(b, &t2);
	ck_assert_uint_eq(stats_of(b).resident_bytes, 0);
	ck_assert_uint_eq(stats_of(b).reserved_bytes, 0);
	ck_assert_int_eq(budget_reserve(b, &r, 3, 512 * K), 0);
	budget_release(b, &r);
	budget_destroy(b);
}
END_TEST

/* ---- planning ------------------------------------------------------------------------- */

static struct rxd_gemm plan_gemm(int64_t m, int64_t n, int64_t k, int64_t batch)
{
	struct rxd_gemm g = { .m = m, .n = n, .k = k, .lda = m, .ldb = k, .ldc = m,
			      .batch_count = batch };

	g.a_elems = (size_t)(m * k * batch);
	g.b_elems = (size_t)(k * n * batch);
	g.c_elems = (size_t)(m * n * batch);
	return g;
}

START_TEST(test_plan)
{
	struct rxd_split_plan p;
	struct rxd_gemm g = plan_gemm(1024, 1024, 1024, 1);

	/* Fits whole: one piece, the whole job. */
	ck_assert_int_eq(split_plan(&g, 64 * M, UINT64_MAX, &p), 0);
	ck_assert(!p.split);
	ck_assert_uint_eq(p.piece_bytes, 12 * M);
	ck_assert_uint_eq(p.whole_bytes, 12 * M);
	/* A 4M budget: pieces of at most 4M that tile the job. */
	ck_assert_int_eq(split_plan(&g, 4 * M, UINT64_MAX, &p), 0);
	ck_assert(p.split);
	ck_assert_uint_le(p.piece_bytes, 4 * M);
	ck_assert_int_le(p.mb, 1024);
	ck_assert_int_eq(p.mb % 64, 0);
	ck_assert_int_eq(p.nb % 64, 0);
	/* The device's largest buffer bounds each piece's buffers too. */
	ck_assert_int_eq(split_plan(&g, 64 * M, 1 * M, &p), 0);
	ck_assert(p.split);
	ck_assert_uint_le((uint64_t)(p.mb * p.kb * 4), 1 * M);
	ck_assert_uint_le((uint64_t)(p.mb * p.nb * 4), 1 * M);
	/* Batches are split by matrix first. */
	g = plan_gemm(64, 64, 64, 100);
	ck_assert_int_eq(split_plan(&g, 1 * M, UINT64_MAX, &p), 0);
	ck_assert(p.split);
	ck_assert_int_eq(p.mb, 64);
	ck_assert_int_lt(p.bb, 100);
	ck_assert_uint_le(p.piece_bytes, 1 * M);
	/* Odd shapes always fit something down to 1 x 1 x 1 (3 x 4 KiB). */
	g = plan_gemm(1000003, 3, 7, 1);
	ck_assert_int_eq(split_plan(&g, 16 * K, UINT64_MAX, &p), 0);
	ck_assert_uint_le(p.piece_bytes, 16 * K);
	/* Below the smallest piece: -E2BIG, saying what that piece needs. */
	ck_assert_int_eq(split_plan(&g, 8 * K, UINT64_MAX, &p), -E2BIG);
	ck_assert_uint_eq(p.piece_bytes, 12 * K);
}
END_TEST

/* ---- split_run on the device ---------------------------------------------------------- */

static struct rxd_device dev;
static struct rxd_gemm_engine engine;
static const struct rxd_limits limits = { .max_buffer_bytes = 1ull << 30,
					  .max_total_bytes = 3ull << 30 };

struct split_case {
	bool row_major, trans_a, trans_b;
	int64_t m, n, k, pad, batch, gap;
	float alpha, beta;
	uint64_t budget;
};

/* Run one case under its budget through split_run; the number of wrong elements. */
static int split_case_run(const struct split_case *tc, uint64_t seed)
{
	bool rm = tc->row_major;
	int64_t a_rows = tc->trans_a ? tc->k : tc->m, a_cols = tc->trans_a ? tc->m : tc->k;
	int64_t b_rows = tc->trans_b ? tc->n : tc->k, b_cols = tc->trans_b ? tc->k : tc->n;
	int64_t lda = (rm ? a_cols : a_rows) + tc->pad, ldb = (rm ? b_cols : b_rows) + tc->pad;
	int64_t ldc = (rm ? tc->n : tc->m) + tc->pad;
	int64_t a_one = lda * ((rm ? a_rows : a_cols) - 1) + (rm ? a_cols : a_rows);
	int64_t b_one = ldb * ((rm ? b_rows : b_cols) - 1) + (rm ? b_cols : b_rows);
	int64_t c_one = ldc * ((rm ? tc->m : tc->n) - 1) + (rm ? tc->n : tc->m);
	int64_t batch = tc->batch > 1 ? tc->batch : 1;
	int64_t sa = a_one + tc->gap, sb = b_one + tc->gap, sc = c_one + tc->gap;
	size_t a_len = (size_t)(sa * (batch - 1) + a_one), b_len = (size_t)(sb * (batch - 1) + b_one);
	size_t c_len = (size_t)(sc * (batch - 1) + c_one);
	float *a = malloc(a_len * 4), *b = malloc(b_len * 4), *c = malloc(c_len * 4);
	float *got = malloc(c_len * 4), *want = malloc(c_len * 4);
	Rxgemm__GemmRequest rq = RXGEMM__GEMM_REQUEST__INIT;
	struct rxd_budget *bud;
	struct rxd_gemm g;
	struct rxd_job_timings t;
	const char *kernel;
	struct rxd_error err = { 0 };
	int bad = 0, st;

	ck_assert(a && b && c && got && want);
	refgemm_fill_random(a, a_len, &seed);
	refgemm_fill_random(b, b_len, &seed);
	refgemm_fill_random(c, c_len, &seed);
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
	if (tc->beta != 0.0f)
		rq.c.data = (uint8_t *)c, rq.c.len = c_len * 4;
	st = wire_gemm_validate(&rq, &limits, &g, &err);
	ck_assert_msg(st == 0, "validate: %s", err.msg);
	bud = budget_create(tc->budget, 0, budget_cl_alloc, budget_cl_free, &dev);
	ck_assert_ptr_nonnull(bud);
	engine.budget = bud;
	st = split_run(&engine, bud, 1, &g, got, &t, &kernel, &err);
	ck_assert_msg(st == 0, "split_run: %s", err.msg);
	struct rxd_budget_stats s = stats_of(bud);
	ck_assert_uint_eq(s.reserved_bytes, 0);
	ck_assert_uint_eq(s.in_use_bytes, 0);
	ck_assert_uint_le(s.peak_bytes, tc->budget);
	ck_assert_uint_gt(s.peak_bytes, 0);
	{
		struct rxd_split_plan p;

		split_plan(&g, tc->budget, UINT64_MAX, &p);
		ck_assert_uint_eq(s.split_jobs, p.split ? 1 : 0);
	}
	engine.budget = NULL;
	budget_destroy(bud);
	for (int64_t i = 0; i < batch; i++) {
		double max_err;
		int64_t bi = -1, bj = -1;
		int wrong;

		if (tc->beta != 0.0f)
			memcpy(want, c + i * sc, (size_t)c_one * 4);
		else
			memset(want, 0, (size_t)c_one * 4);
		refgemm(rm, tc->trans_a, tc->trans_b, tc->m, tc->n, tc->k, tc->alpha, a + i * sa,
			lda, b + i * sb, ldb, tc->beta, want, ldc);
		wrong = refgemm_compare(rm, tc->m, tc->n, tc->k, got + i * sc, want, ldc, &max_err,
					&bi, &bj);
		if (wrong)
			fprintf(stderr, "%s %c%c %lldx%lldx%lld batch %lld/%lld budget %llu: %d wrong, "
				"worst (%lld, %lld) error %g\n", rm ? "row" : "col",
				tc->trans_a ? 'T' : 'N', tc->trans_b ? 'T' : 'N', (long long)tc->m,
				(long long)tc->n, (long long)tc->k, (long long)i, (long long)batch,
				(unsigned long long)tc->budget, wrong, (long long)bi, (long long)bj,
				max_err);
		bad += wrong;
		/* Padding (past m or n in each column or row) and gaps come back as sent,
		 * or zero when C was not sent. */
		for (int64_t o = 0; o < c_one + (i + 1 < batch ? tc->gap : 0); o++) {
			int64_t inner = rm ? tc->n : tc->m;
			bool pad = o >= c_one || o % ldc >= inner;
			float w = tc->beta != 0.0f ? c[i * sc + o] : 0.0f;

			if (pad && got[i * sc + o] != w) {
				fprintf(stderr, "padding element %lld of matrix %lld changed\n",
					(long long)o, (long long)i);
				bad++;
				break;
			}
		}
	}
	free(a), free(b), free(c), free(got), free(want);
	return bad;
}

START_TEST(test_split_shapes)
{
	/* m, n, k, pad, budget: every one several times bigger than its budget. */
	static const int64_t shapes[][5] = {
		{ 200, 150, 300, 0, 64 * K }, { 257, 131, 519, 3, 128 * K },
		{ 1, 700, 900, 1, 64 * K },   { 640, 1, 333, 0, 64 * K },
		{ 96, 80, 2000, 5, 64 * K },
	};

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		for (int v = 0; v < 8; v++) {
			struct split_case tc = { .row_major = v & 1, .trans_a = (v >> 1) & 1,
						 .trans_b = (v >> 2) & 1, .m = shapes[i][0],
						 .n = shapes[i][1], .k = shapes[i][2],
						 .pad = shapes[i][3], .alpha = 1.5f,
						 .beta = (v & 1) ? -0.75f : 0.0f,
						 .budget = (uint64_t)shapes[i][4] };
			ck_assert_int_eq(split_case_run(&tc, 100 + i * 8 + (uint64_t)v), 0);
		}
}
END_TEST

START_TEST(test_split_big)
{
	/* 1024^3 (12 MiB of buffers) under a 4 MiB budget: only pieces fit. */
	struct split_case tc = { .m = 1024, .n = 1024, .k = 1024, .alpha = 1.0f, .beta = 0.5f,
				 .budget = 4 * M, .row_major = true };

	ck_assert_int_eq(split_case_run(&tc, 7), 0);
}
END_TEST

START_TEST(test_split_batches)
{
	static const int64_t shapes[][5] = { /* m, n, k, batch, gap */
		{ 40, 36, 20, 9, 7 }, { 130, 132, 68, 5, 4 }, { 8, 8, 30, 200, 1 },
	};

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		for (int v = 0; v < 8; v++) {
			struct split_case tc = { .row_major = v & 1, .trans_a = (v >> 1) & 1,
						 .trans_b = (v >> 2) & 1, .m = shapes[i][0],
						 .n = shapes[i][1], .k = shapes[i][2],
						 .batch = shapes[i][3], .gap = shapes[i][4],
						 .pad = v & 1, .alpha = 1.25f,
						 .beta = (v & 2) ? -0.5f : 0.0f,
						 .budget = 64 * K };
			ck_assert_int_eq(split_case_run(&tc, 900 + i * 8 + (uint64_t)v), 0);
		}
}
END_TEST

/* The self-test at offsets needs buffers from the budget; with none to be had (device
 * tensors hold it all) it says so, -EAGAIN, and is not held against the kernel: with
 * room it runs and passes. First in its case, before anything tests the variant. */
START_TEST(test_prepare_at_no_room)
{
	struct rxd_budget *bud;
	struct rxd_budget_res t;
	struct rxd_gemm g = plan_gemm(37, 29, 21, 1);
	int v = gemm_choose(&engine, &g);

	bud = budget_create(RXD_MIN_VRAM_BUDGET, 0, budget_cl_alloc, budget_cl_free, &dev);
	ck_assert_ptr_nonnull(bud);
	engine.budget = bud;
	ck_assert_int_eq(budget_reserve_resident(bud, &t, 1, RXD_MIN_VRAM_BUDGET), 0);
	ck_assert_int_eq(gemm_prepare_at(&engine, v), -EAGAIN);
	ck_assert_int_eq(gemm_prepare_at(&engine, v), -EAGAIN);
	budget_release(bud, &t);
	ck_assert_int_eq(gemm_prepare_at(&engine, v), 0);
	ck_assert_uint_eq(stats_of(bud).reserved_bytes, 0);
	engine.budget = NULL;
	budget_destroy(bud);
}
END_TEST

START_TEST(test_whole_job_uses_pool)
{
	/* A job that fits runs whole; the same job again takes its buffers from the pool. */
	struct split_case tc = { .m = 100, .n = 90, .k = 80, .alpha = 1.0f, .budget = 8 * M };
	struct rxd_budget *bud;
	struct rxd_gemm g = plan_gemm(100, 90, 80, 1);
	float *a = calloc(g.a_elems, 4), *b = calloc(g.b_elems, 4), *c = malloc(g.c_elems * 4);
	struct rxd_job_timings t;
	const char *kernel;
	struct rxd_error err = { 0 };

	ck_assert_int_eq(split_case_run(&tc, 5), 0);
	g.a = a, g.b = b, g.alpha = 1.0f;
	bud = budget_create(8 * M, 0, budget_cl_alloc, budget_cl_free, &dev);
	ck_assert_ptr_nonnull(bud);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(split_run(&engine, bud, 1, &g, c, &t, &kernel, &err), 0);
	ck_assert_uint_eq(stats_of(bud).allocations, 3);
	ck_assert_uint_eq(stats_of(bud).reuses, 6);
	ck_assert_uint_eq(stats_of(bud).split_jobs, 0);
	ck_assert_uint_eq(stats_of(bud).pool_buffers, 3);
	/* A quota below the job's need: TOO_BIG with a sentence naming the quota. */
	budget_set_limits(bud, 8 * M, 64 * K);
	ck_assert_int_eq(split_run(&engine, bud, 1, &g, c, &t, &kernel, &err),
			 RXD_S_TOO_BIG);
	ck_assert_msg(strstr(err.msg, "quota") != NULL, "%s", err.msg);
	ck_assert_uint_eq(stats_of(bud).reserved_bytes, 0);
	budget_destroy(bud);
	free(a), free(b), free(c);
}
END_TEST

START_TEST(test_split_cancelled)
{
	/* A job in pieces stops between them once its cancel flag is set (here before the
	 * first): CANCELLED, its reservation released; a whole job with the flag clear runs. */
	struct rxd_budget *bud;
	struct rxd_gemm g = plan_gemm(300, 200, 100, 1);
	float *a = calloc(g.a_elems, 4), *b = calloc(g.b_elems, 4), *c = malloc(g.c_elems * 4);
	struct rxd_job_timings t;
	const char *kernel;
	struct rxd_error err = { 0 };
	atomic_bool cancel;

	g.a = a, g.b = b, g.alpha = 1.0f;
	atomic_init(&cancel, true);
	g.cancel = &cancel;
	bud = budget_create(64 * K, 0, budget_cl_alloc, budget_cl_free, &dev);
	ck_assert_ptr_nonnull(bud);
	ck_assert_int_eq(split_run(&engine, bud, 1, &g, c, &t, &kernel, &err),
			 RXD_S_CANCELLED);
	ck_assert_msg(strstr(err.msg, "cancelled") != NULL, "%s", err.msg);
	ck_assert_uint_eq(stats_of(bud).reserved_bytes, 0);
	atomic_store(&cancel, false);
	ck_assert_int_eq(split_run(&engine, bud, 1, &g, c, &t, &kernel, &err),
			 RXD_S_OK);
	budget_destroy(bud);
	free(a), free(b), free(c);
}
END_TEST

int main(void)
{
	const char *sel = getenv("RXGEMM_TEST_DEVICE");
	Suite *s = suite_create("budget");
	TCase *acct = tcase_create("accounting"), *split = tcase_create("split");
	SRunner *sr;
	int failed;

	log_set_level(LOG_WARNING);
	tcase_add_test(acct, test_round);
	tcase_add_test(acct, test_resolve_and_parse);
	tcase_add_test(acct, test_reserve_release);
	tcase_add_test(acct, test_pool_reuse_and_eviction);
	tcase_add_test(acct, test_alloc_failure);
	tcase_add_test(acct, test_quota);
	tcase_add_test(acct, test_resident);
	tcase_add_test(acct, test_plan);
	suite_add_tcase(s, acct);
	if (device_open(&dev, sel, NULL) == 0 && gemm_init(&engine, &dev, NULL) == 0) {
		fprintf(stderr, "device: %s\n", dev.description);
		tcase_set_timeout(split, 600);
		tcase_add_test(split, test_prepare_at_no_room);
		tcase_add_test(split, test_split_shapes);
		tcase_add_test(split, test_split_big);
		tcase_add_test(split, test_split_batches);
		tcase_add_test(split, test_whole_job_uses_pool);
		tcase_add_test(split, test_split_cancelled);
		suite_add_tcase(s, split);
	} else {
		fprintf(stderr, "no OpenCL device: the split tests are skipped\n");
	}
	sr = srunner_create(s);
	/* The OpenCL runtime's threads do not survive fork(): run the tests in-process. */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (dev.ctx) {
		gemm_fini(&engine);
		device_close(&dev);
	}
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

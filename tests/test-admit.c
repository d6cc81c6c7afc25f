/* test-admit.c: admission (daemon/admit.c): every job planned once, reserved once,
 * released once, and jobs that do not fit beside device tensors waiting for them.
 *
 *   plan:   in-process on the OpenCL device (PoCL here): a GEMM's plan (whole with
 *           split-K's workspace, in pieces, on device operands) and a NAS evaluation's
 *           (its batch pieces, weights, arena and im2col scratch), each against sizes
 *           worked out here from the shapes and the pool's size classes; one reservation
 *           per job that every buffer the job takes comes out of (the budget's peak is
 *           that reservation, nothing beside it); release back to the starting figures;
 *           the results against the CPU references; refusals, and which of them are only
 *           for now (a->later: the job fits once tensors are freed).
 *   daemon: a real rxgemmd under a 4 MiB budget: GEMMs from three clients at once (some
 *           in pieces) beside a NAS evaluation, all against the CPU references, leaving
 *           nothing reserved; and a GEMM on a device tensor that does not fit beside
 *           another client's tensor: it waits (status: jobs_waiting_for_memory), another
 *           job runs meanwhile, a second one waiting with a deadline expires unrun, and
 *           the first completes, correct, once that tensor is freed.
 *
 * Nothing depends on timing: the daemon's figures are waited for through status. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon-run.h"
#include "refgemm.h"
#include "refnas.h"
#include "rxgemm.h"
#include "engine.h"

#define K 1024ull
#define M (1024ull * 1024ull)

static struct rxd_device dev;
static struct rxd_gemm_engine engine;
static struct rxd_nasops ops;
static bool have_device;

/* The pool's size class of a buffer of bytes, worked out here: at least 4 KiB, else
 * rounded up to an eighth of the power of two at or below it. */
static uint64_t size_class(uint64_t bytes)
{
	uint64_t p = 1;

	if (bytes <= 4096)
		return 4096;
	while (p <= bytes / 2)
		p *= 2;
	return (bytes + p / 8 - 1) / (p / 8) * (p / 8);
}

static struct rxd_budget_stats stats_of(struct rxd_budget *b)
{
	struct rxd_budget_stats s;

	budget_stats(b, &s);
	return s;
}

/* The live reservations of b, and of them owner's. */
static int live_count(struct rxd_budget *b, uint32_t owner, int *mine)
{
	uint32_t own, n = budget_live_count(b, owner, &own);

	*mine = (int)own;
	return (int)n;
}

/* A column-major m x n x k GEMM on random data (owned by the caller: free g->a, g->b). */
static struct rxd_gemm gemm_make(int64_t m, int64_t n, int64_t k, uint64_t seed)
{
	struct rxd_gemm g = { .m = m, .n = n, .k = k, .lda = m, .ldb = k, .ldc = m,
			      .alpha = 1.0f, .batch_count = 1 };
	float *a = malloc((size_t)(m * k) * 4), *b = malloc((size_t)(k * n) * 4);

	ck_assert(a && b);
	refgemm_fill_random(a, (size_t)(m * k), &seed);
	refgemm_fill_random(b, (size_t)(k * n), &seed);
	g.a = a, g.b = b;
	g.a_elems = (size_t)(m * k);
	g.b_elems = (size_t)(k * n);
	g.c_elems = (size_t)(m * n);
	g.flops = 2 * (uint64_t)(m * n * k);
	return g;
}

static void gemm_check(const struct rxd_gemm *g, const float *got)
{
	float *want = calloc(g->c_elems, 4);
	double max_err;
	int64_t bi, bj;

	ck_assert_ptr_nonnull(want);
	refgemm(0, 0, 0, g->m, g->n, g->k, g->alpha, g->a, g->lda, g->b, g->ldb, 0.0f, want,
		g->ldc);
	ck_assert_int_eq(refgemm_compare(0, g->m, g->n, g->k, got, want, g->ldc, &max_err, &bi,
					 &bj),
			 0);
	free(want);
}

/* ---- GEMM plans ------------------------------------------------------------------------ */

/* Whole, with split-K (forced, on a register-blocked variant, the only kind that has it):
 * the reservation is A + B + C + the workspace of 4 slices of C, each a size class; every
 * buffer the run takes comes out of it (nothing is reserved beside it: the budget's peak
 * is exactly it); release brings the budget back to nothing reserved. */
START_TEST(test_gemm_whole_splitk)
{
	static const bool all[3] = { true, true, true };
	struct rxd_gemm g = gemm_make(300, 40, 512, 1);
	int reg = gemm_find_variant(&engine, false, false, RXD_GEMM_REG);
	int cls = gemm_class_of(300, 40), saved = engine.choice[0][0][cls];
	float *c = malloc(300 * 40 * 4);
	struct rxd_job_timings t;
	struct rxd_budget *bud;
	struct rxd_admit a;
	struct rxd_error err = { 0 };
	const char *kernel;
	uint64_t want;
	int mine;

	ck_assert_ptr_nonnull(c);
	ck_assert_int_ge(reg, 0);
	engine.choice[0][0][cls] = reg;
	g.splitk = 4;
	ck_assert_int_eq(gemm_splitk_slices(&engine, reg, &g), 4);
	bud = budget_create(64 * M, 0, budget_cl_alloc, budget_cl_free, &dev);
	ck_assert_ptr_nonnull(bud);
	ck_assert_int_eq(admit_gemm(&engine, bud, 5, &g, all, &a, &err), RXD_S_OK);
	want = size_class(300 * 512 * 4) + size_class(512 * 40 * 4) + size_class(300 * 40 * 4) +
	       size_class(4 * 300 * 40 * 4);
	ck_assert(!a.split.split);
	ck_assert_uint_eq(a.splitk_bytes, 4 * 300 * 40 * 4);
	ck_assert_uint_eq(a.bytes, want);
	ck_assert(g.admitted);
	ck_assert_ptr_nonnull(g.splitk_ws);
	ck_assert_uint_eq(stats_of(bud).reserved_bytes, want);
	ck_assert_int_eq(live_count(bud, 5, &mine), 1);
	ck_assert_int_eq(mine, 1);
	ck_assert_int_eq(split_run_admitted(&engine, &a, &g, c, &t, &kernel, &err), RXD_S_OK);
	gemm_check(&g, c);
	ck_assert_uint_eq(a.res.used_bytes, want);
	ck_assert_uint_eq(stats_of(bud).peak_bytes, want);
	ck_assert_int_eq(live_count(bud, 5, &mine), 1);
	admit_release(&a);
	ck_assert_uint_eq(stats_of(bud).reserved_bytes, 0);
	ck_assert_uint_eq(stats_of(bud).in_use_bytes, 0);
	ck_assert_int_eq(live_count(bud, 5, &mine), 0);
	admit_release(&a); /* twice is harmless */
	engine.choice[0][0][cls] = saved;
	budget_destroy(bud);
	free(c), free((void *)g.a), free((void *)g.b);
}
END_TEST

/* Over the budget: pieces, their three buffers the reservation; without split-K (forced
 * off) nothing else. */
START_TEST(test_gemm_pieces)
{
	static const bool all[3] = { true, true, true };
	struct rxd_gemm g = gemm_make(640, 576, 700, 2);
	float *c = malloc(640 * 576 * 4);
	struct rxd_job_timings t;
	struct rxd_budget *bud;
	struct rxd_admit a;
	struct rxd_error err = { 0 };
	const char *kernel;
	const struct rxd_split_plan *p = &a.split;
	uint64_t want;

	ck_assert_ptr_nonnull(c);
	g.splitk = 1;
	bud = budget_create(4 * M, 0, budget_cl_alloc, budget_cl_free, &dev);
	ck_assert_ptr_nonnull(bud);
	ck_assert_int_eq(admit_gemm(&engine, bud, 3, &g, all, &a, &err), RXD_S_OK);
	ck_assert(p->split);
	ck_assert_uint_eq(p->whole_bytes, size_class(640 * 700 * 4) + size_class(700 * 576 * 4) +
						  size_class(640 * 576 * 4));
	want = size_class((uint64_t)(p->mb * p->kb) * 4) + size_class((uint64_t)(p->kb * p->nb) * 4) +
	       size_class((uint64_t)(p->mb * p->nb) * 4);
	ck_assert_uint_eq(a.bytes, want);
	ck_assert_uint_le(a.bytes, 4 * M);
	ck_assert_uint_eq(a.splitk_bytes, 0);
	ck_assert_uint_eq(stats_of(bud).split_jobs, 1);
	ck_assert_int_eq(split_run_admitted(&engine, &a, &g, c, &t, &kernel, &err), RXD_S_OK);
	gemm_check(&g, c);
	ck_assert_uint_eq(a.res.used_bytes, want);
	ck_assert_uint_eq(stats_of(bud).peak_bytes, want);
	admit_release(&a);
	ck_assert_uint_eq(stats_of(bud).reserved_bytes, 0);
	ck_assert_uint_eq(stats_of(bud).in_use_bytes, 0);
	budget_destroy(bud);
	free(c), free((void *)g.a), free((void *)g.b);
}
END_TEST

/* Operands on the device: only what is not there is planned, and never in pieces. What
 * does not fit beside a resident reservation (a device tensor) is refused for now only
 * (later); what is over the budget or the quota, for good. */
START_TEST(test_gemm_refusals)
{
	static const bool b_and_c[3] = { false, true, true }, all[3] = { true, true, true };
	struct rxd_gemm g = gemm_make(64, 512, 256, 3), big = gemm_make(64, 64, 64, 4);
	struct rxd_budget *bud;
	struct rxd_budget_res tensor;
	struct rxd_admit a;
	struct rxd_error err = { 0 };

	g.splitk = 1;
	big.splitk = 1;
	bud = budget_create(4 * M, 0, budget_cl_alloc, budget_cl_free, &dev);
	ck_assert_ptr_nonnull(bud);
	ck_assert_int_eq(admit_gemm(&engine, bud, 1, &g, b_and_c, &a, &err), RXD_S_OK);
	ck_assert(!a.split.split);
	ck_assert_uint_eq(a.gemm_bytes[0], 0);
	ck_assert_uint_eq(a.bytes, size_class(256 * 512 * 4) + size_class(64 * 512 * 4));
	admit_release(&a);
	/* Another client's tensor leaves 448K: 640K does not fit now, but will. */
	ck_assert_int_eq(budget_reserve_resident(bud, &tensor, 2, 4 * M - 576 * K), 0);
	ck_assert_int_eq(admit_gemm(&engine, bud, 1, &g, b_and_c, &a, &err), RXD_S_TOO_BIG);
	ck_assert(a.later);
	ck_assert_msg(strstr(err.msg, "device tensors"), "%s", err.msg);
	ck_assert_uint_eq(stats_of(bud).reserved_bytes, 4 * M - 576 * K);
	admit_release(&a);
	/* From the host it runs in pieces beside the tensor instead. */
	ck_assert_int_eq(admit_gemm(&engine, bud, 1, &big, all, &a, &err), RXD_S_OK);
	admit_release(&a);
	budget_release(bud, &tensor);
	/* Leaving less than the smallest piece (3 x 4 KiB): it waits too. */
	ck_assert_int_eq(budget_reserve_resident(bud, &tensor, 2, 4 * M - 8 * K), 0);
	ck_assert_int_eq(admit_gemm(&engine, bud, 1, &big, all, &a, &err), RXD_S_TOO_BIG);
	ck_assert(a.later);
	budget_release(bud, &tensor);
	/* B of 5 MiB: over the budget, never. */
	free((void *)g.a), free((void *)g.b);
	g = gemm_make(64, 5120, 256, 5);
	g.splitk = 1;
	ck_assert_int_eq(admit_gemm(&engine, bud, 1, &g, b_and_c, &a, &err), RXD_S_TOO_BIG);
	ck_assert(!a.later);
	/* A quota of 1 MiB, 512K of it the client's own tensor: 640K waits for it, 2.5 MiB
	 * never fits. */
	free((void *)g.a), free((void *)g.b);
	g = gemm_make(64, 512, 256, 3);
	g.splitk = 1;
	budget_set_limits(bud, 4 * M, 1 * M);
	ck_assert_int_eq(budget_reserve_resident(bud, &tensor, 1, 512 * K), 0);
	ck_assert_int_eq(admit_gemm(&engine, bud, 1, &g, b_and_c, &a, &err), RXD_S_QUOTA);
	ck_assert(a.later);
	budget_release(bud, &tensor);
	ck_assert_int_eq(admit_gemm(&engine, bud, 1, &g, b_and_c, &a, &err), RXD_S_OK);
	admit_release(&a);
	free((void *)g.a), free((void *)g.b);
	g = gemm_make(64, 2048, 256, 6);
	g.splitk = 1;
	ck_assert_int_eq(admit_gemm(&engine, bud, 1, &g, b_and_c, &a, &err), RXD_S_QUOTA);
	ck_assert(!a.later);
	ck_assert_uint_eq(stats_of(bud).reserved_bytes, 0);
	budget_destroy(bud);
	free((void *)g.a), free((void *)g.b), free((void *)big.a), free((void *)big.b);
}
END_TEST

/* ---- NAS plans --------------------------------------------------------------------------- */

static struct rxd_nas_config nas_cfg(int32_t c, int32_t batch)
{
	struct rxd_nas_config cfg = { 0 };

	cfg.family = RXD_NAS_CIFAR;
	cfg.C = c;
	cfg.layers = 5;
	cfg.classes = 10;
	cfg.height = cfg.width = 32;
	cfg.batch = batch;
	ck_assert_int_eq(genotype_named("DARTS_V1", &cfg.geno), 0);
	return cfg;
}

/* The im2col columns of p's dense convolutions that do not read their input in place,
 * scratch_max bytes of images at a time (at least one): the most one of them takes. */
static uint64_t scratch_of(const struct rxd_nas_plan *p, uint64_t scratch_max)
{
	uint64_t most = 0;

	for (size_t i = 0; i < p->n_steps; i++) {
		const struct rxd_nas_step *s = &p->steps[i];
		uint64_t per_image, nb;

		if (s->kind != RXD_NAS_CONV || s->groups != 1 ||
		    (s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->ph == 0 &&
		     s->pw == 0 && !s->relu_in && !s->in_shift))
			continue;
		per_image = (uint64_t)p->tensors[s->in].c * s->kh * s->kw * s->h_out * s->w_out * 4;
		nb = scratch_max / per_image;
		nb = nb < 1 ? 1 : nb > (uint64_t)p->batch ? (uint64_t)p->batch : nb;
		if (nb * per_image > most)
			most = nb * per_image;
	}
	return most;
}

/* What a NAS job of cfg needs in pieces of piece images, worked out from its plans. */
static uint64_t nas_need(struct rxd_nas_config cfg, int32_t piece, uint64_t *w, uint64_t *ar,
			 uint64_t *scr)
{
	struct rxd_nas_plan pp = { 0 }, pr = { 0 };
	struct rxd_error err = { 0 };
	int32_t rest = cfg.batch % piece;

	cfg.batch = piece;
	ck_assert_int_eq(nas_build(&cfg, &pp, &err), 0);
	if (rest) {
		cfg.batch = rest;
		ck_assert_int_eq(nas_build(&cfg, &pr, &err), 0);
	}
	*w = pp.weight_floats * 4;
	*ar = (pp.arena_floats > pr.arena_floats ? pp.arena_floats : pr.arena_floats) * 4;
	*scr = scratch_of(&pp, ops.scratch_max_bytes);
	nas_plan_free(&pp);
	nas_plan_free(&pr);
	return size_class(*w) + size_class(*ar) + (*scr ? size_class(*scr) : 0);
}

static struct rxd_nas_job *nas_job(int32_t c, int32_t batch)
{
	struct rxd_nas_eval ev = { 0 };
	struct rxd_nas_job *nj = NULL;
	struct rxd_error err = { 0 };

	ev.cfg = nas_cfg(c, batch);
	ev.repeat = 1;
	ev.want_logits = true;
	ev.weight_seed = 6;
	ev.input_seed = 4;
	ck_assert_int_eq(nas_job_prepare(&ev, NULL, 1u << 30, NULL, &nj, &err), RXD_S_OK);
	return nj;
}

/* A batch of 12 under 4 MiB: the largest piece of the halving that fits, its weights,
 * arena and scratch as the plans say, one reservation that the run takes all of, the
 * logits right, the budget back to nothing reserved. */
START_TEST(test_nas_plan)
{
	struct rxd_nas_config cfg = nas_cfg(8, 12);
	struct rxd_nas_job *nj = nas_job(8, 12);
	struct rxd_nas_plan p = { 0 };
	struct rxd_nas_result r;
	struct rxd_budget *bud;
	struct rxd_admit a;
	struct rxd_error err = { 0 };
	uint64_t w, ar, scr, want = 0;
	int32_t piece = 12;
	float *blob, *wts, *in, *logits;
	double maxabs = 0;
	int mine;

	/* Self-tests at offsets, if any are left, off the budget: it sees the job alone. */
	engine.budget = NULL;
	bud = budget_create(4 * M, 0, budget_cl_alloc, budget_cl_free, &dev);
	ck_assert_ptr_nonnull(bud);
	for (;; piece = (piece + 1) / 2) {
		want = nas_need(cfg, piece, &w, &ar, &scr);
		if (want <= 4 * M || piece == 1)
			break;
	}
	ck_assert_int_lt(piece, 12);
	ck_assert_uint_gt(scr, 0);
	ck_assert_int_eq(admit_nas(nj, &ops, bud, 9, &a, &err), RXD_S_OK);
	ck_assert_int_eq(a.nas_piece, piece);
	ck_assert_uint_eq(a.nas_weight_bytes, w);
	ck_assert_uint_eq(a.nas_arena_bytes, ar);
	ck_assert_uint_eq(a.nas_scratch_bytes, scr);
	ck_assert_uint_eq(a.bytes, want);
	ck_assert_uint_eq(stats_of(bud).reserved_bytes, want);
	ck_assert_int_eq(live_count(bud, 9, &mine), 1);
	ck_assert_int_eq(nas_job_run(nj, &ops, &a, NULL, &err), RXD_S_OK);
	ck_assert_uint_eq(a.res.used_bytes, want);
	ck_assert_uint_eq(stats_of(bud).peak_bytes, want);
	ck_assert_int_eq(live_count(bud, 9, &mine), 1);
	admit_release(&a);
	ck_assert_uint_eq(stats_of(bud).reserved_bytes, 0);
	ck_assert_uint_eq(stats_of(bud).in_use_bytes, 0);
	ck_assert_int_eq(nas_job_result(nj, &r), 0);
	ck_assert_int_eq(r.batch_piece, piece);
	/* The logits against the CPU reference of the whole batch. */
	ck_assert_int_eq(nas_build(&cfg, &p, &err), 0);
	blob = malloc(p.blob_floats * 4);
	wts = malloc(p.weight_floats * 4);
	in = malloc(p.tensors[p.input].elems * 4);
	logits = malloc(12 * 10 * 4);
	ck_assert(blob && wts && in && logits);
	nas_init_blob(&p, 6, blob);
	nas_random_floats(4, in, p.tensors[p.input].elems);
	ck_assert_int_eq(nas_fold(&p, blob, wts, &err), 0);
	ck_assert_int_eq(refnas_run(&p, wts, in, logits, true), 0);
	ck_assert_uint_eq(r.logits_bytes, 12 * 10 * 4);
	for (int i = 0; i < 120; i++)
		maxabs = fmax(maxabs, fabs(logits[i]));
	ck_assert(maxabs > 1e-3);
	for (int i = 0; i < 120; i++)
		ck_assert_msg(fabs(r.logits[i] - logits[i]) <= 2e-3 * maxabs + 1e-5,
			      "logit %d: device %g, reference %g", i, (double)r.logits[i],
			      (double)logits[i]);
	free(blob), free(wts), free(in), free(logits);
	nas_plan_free(&p);
	nas_job_free(nj);
	budget_destroy(bud);
}
END_TEST

/* One image that does not fit beside a tensor waits (later); a network whose one image is
 * over the whole budget never fits. */
START_TEST(test_nas_refusals)
{
	struct rxd_nas_job *nj = nas_job(8, 2), *huge = nas_job(128, 1);
	struct rxd_budget *bud;
	struct rxd_budget_res tensor;
	struct rxd_admit a;
	struct rxd_error err = { 0 };

	bud = budget_create(4 * M, 0, budget_cl_alloc, budget_cl_free, &dev);
	ck_assert_ptr_nonnull(bud);
	ck_assert_int_eq(budget_reserve_resident(bud, &tensor, 2, 4 * M - 64 * K), 0);
	ck_assert_int_eq(admit_nas(nj, &ops, bud, 1, &a, &err), RXD_S_TOO_BIG);
	ck_assert(a.later);
	ck_assert_uint_eq(stats_of(bud).reserved_bytes, 4 * M - 64 * K);
	budget_release(bud, &tensor);
	ck_assert_int_eq(admit_nas(nj, &ops, bud, 1, &a, &err), RXD_S_OK);
	ck_assert_int_eq(a.nas_piece, 2);
	admit_release(&a);
	ck_assert_int_eq(admit_nas(huge, &ops, bud, 1, &a, &err), RXD_S_TOO_BIG);
	ck_assert(!a.later);
	ck_assert_msg(strstr(err.msg, "the budget is 4194304"), "%s", err.msg);
	ck_assert_int_eq(admit_nas(nj, NULL, bud, 1, &a, &err), RXD_S_UNSUPPORTED);
	ck_assert_uint_eq(stats_of(bud).reserved_bytes, 0);
	nas_job_free(nj);
	nas_job_free(huge);
	budget_destroy(bud);
}
END_TEST

/* ---- a real daemon ----------------------------------------------------------------------- */

static struct daemon_run g_daemon;
static int g_skip_daemon;

static rxg_client *client(const char *name)
{
	rxg_client *c = NULL;

	ck_assert_int_eq(rxg_connect(g_daemon.socket_path, name, &c), RXG_OK);
	return c;
}

static struct rxg_status *status_of(rxg_client *c)
{
	struct rxg_status *st = NULL;

	ck_assert_int_eq(rxg_status(c, &st), RXG_OK);
	return st;
}

/* One row-major GEMM to submit and check. */
struct prob {
	int64_t m, n, k;
	float *a, *b, *c;
};

static void prob_make(struct prob *p, int64_t m, int64_t n, int64_t k, uint64_t seed)
{
	p->m = m, p->n = n, p->k = k;
	p->a = malloc((size_t)(m * k) * 4);
	p->b = malloc((size_t)(k * n) * 4);
	p->c = calloc((size_t)(m * n), 4);
	ck_assert(p->a && p->b && p->c);
	refgemm_fill_random(p->a, (size_t)(m * k), &seed);
	refgemm_fill_random(p->b, (size_t)(k * n), &seed);
}

static struct rxg_gemm_args prob_args(const struct prob *p)
{
	struct rxg_gemm_args args = { 0 };

	args.layout = RXG_ROW_MAJOR;
	args.m = p->m, args.n = p->n, args.k = p->k;
	args.alpha = 1.0f;
	args.a = p->a, args.lda = p->k;
	args.b = p->b, args.ldb = p->n;
	args.c = p->c, args.ldc = p->n;
	return args;
}

static void prob_check(struct prob *p)
{
	float *want = calloc((size_t)(p->m * p->n), 4);
	double max_err;
	int64_t bi, bj;

	ck_assert_ptr_nonnull(want);
	refgemm(1, 0, 0, p->m, p->n, p->k, 1.0f, p->a, p->k, p->b, p->n, 0.0f, want, p->n);
	ck_assert_int_eq(refgemm_compare(1, p->m, p->n, p->k, p->c, want, p->n, &max_err, &bi,
					 &bj),
			 0);
	free(want);
	free(p->a), free(p->b), free(p->c);
}

struct nas_thread {
	int rc;
	char msg[256];
	float logits[12 * 10];
	int32_t piece;
};

static void *nas_thread_main(void *arg)
{
	struct nas_thread *t = arg;
	struct rxg_nas_args a = { 0 };
	struct rxg_nas_result *r = NULL;
	rxg_client *c = NULL;

	t->rc = rxg_connect(g_daemon.socket_path, "test-admit nas", &c);
	if (t->rc != RXG_OK)
		return NULL;
	a.genotype = "DARTS_V1";
	a.c = 8;
	a.layers = 5;
	a.batch = 12;
	a.weight_seed = 6;
	a.input_seed = 4;
	a.repeat = 1;
	a.logits = t->logits;
	t->rc = rxg_nas_eval(c, &a, &r);
	if (t->rc == RXG_OK) {
		t->piece = r->batch_piece;
		rxg_nas_result_free(r);
	} else {
		snprintf(t->msg, sizeof(t->msg), "%s", rxg_errmsg(c));
	}
	rxg_close(c);
	return NULL;
}

/* Three clients' GEMMs, whole and in pieces, at once, beside a NAS evaluation in pieces:
 * every one right, and nothing reserved once they are done. */
START_TEST(test_daemon_concurrent)
{
	static const int64_t shapes[][3] = { { 300, 200, 250 }, { 700, 600, 500 }, { 64, 900, 130 } };
	rxg_client *c[3];
	struct prob p[3][3];
	uint64_t id[3][3];
	struct nas_thread nt = { 0 };
	struct rxd_nas_config cfg = nas_cfg(8, 12);
	struct rxd_nas_plan plan = { 0 };
	struct rxd_error err = { 0 };
	struct rxg_status *st;
	float *blob, *wts, *in, want[120];
	double maxabs = 0;
	pthread_t t;

	if (g_skip_daemon)
		return;
	for (int i = 0; i < 3; i++)
		c[i] = client("test-admit gemm");
	ck_assert_int_eq(pthread_create(&t, NULL, nas_thread_main, &nt), 0);
	for (int j = 0; j < 3; j++)
		for (int i = 0; i < 3; i++) {
			struct rxg_gemm_args args;

			prob_make(&p[i][j], shapes[j][0], shapes[j][1], shapes[j][2],
				  (uint64_t)(10 + 3 * i + j));
			args = prob_args(&p[i][j]);
			ck_assert_int_eq(rxg_submit_gemm(c[i], &args, NULL, &id[i][j]), RXG_OK);
		}
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++) {
			int rc = rxg_wait(c[i], id[i][j], NULL);

			ck_assert_msg(rc == RXG_OK, "GEMM %d of client %d: %s", j, i,
				      rxg_errmsg(c[i]));
			prob_check(&p[i][j]);
		}
	pthread_join(t, NULL);
	ck_assert_msg(nt.rc == RXG_OK, "NAS: %s", nt.msg);
	ck_assert_int_lt(nt.piece, 12);
	ck_assert_int_eq(nas_build(&cfg, &plan, &err), 0);
	blob = malloc(plan.blob_floats * 4);
	wts = malloc(plan.weight_floats * 4);
	in = malloc(plan.tensors[plan.input].elems * 4);
	ck_assert(blob && wts && in);
	nas_init_blob(&plan, 6, blob);
	nas_random_floats(4, in, plan.tensors[plan.input].elems);
	ck_assert_int_eq(nas_fold(&plan, blob, wts, &err), 0);
	ck_assert_int_eq(refnas_run(&plan, wts, in, want, true), 0);
	for (int i = 0; i < 120; i++)
		maxabs = fmax(maxabs, fabs(want[i]));
	for (int i = 0; i < 120; i++)
		ck_assert_msg(fabs(nt.logits[i] - want[i]) <= 2e-3 * maxabs + 1e-5,
			      "logit %d: %g, reference %g", i, (double)nt.logits[i],
			      (double)want[i]);
	free(blob), free(wts), free(in);
	nas_plan_free(&plan);
	/* Each job's reservation went before its reply. */
	st = status_of(c[0]);
	ck_assert_uint_eq(st->vram_reserved_bytes, 0);
	ck_assert_uint_eq(st->vram_in_use_bytes, 0);
	ck_assert_uint_le(st->vram_peak_bytes, 4 * M);
	ck_assert_uint_gt(st->jobs_split, 0);
	ck_assert_uint_eq(st->jobs_waiting_for_memory, 0);
	rxg_status_free(st);
	for (int i = 0; i < 3; i++)
		rxg_close(c[i]);
}
END_TEST

/* Wait (through status, up to a minute) until the daemon has want jobs waiting for
 * memory. */
static void wait_for_memory_waiters(rxg_client *c, uint32_t want)
{
	for (int i = 0; i < 3000; i++) {
		struct rxg_status *st = status_of(c);
		uint32_t n = st->jobs_waiting_for_memory;

		rxg_status_free(st);
		if (n == want)
			return;
		usleep(20000);
	}
	ck_abort_msg("the daemon never had %u jobs waiting for memory", want);
}

/* Client 1 holds 3.5 MiB in a tensor; client 2's GEMM on a tensor of its own needs 640K
 * for its host B and C, more than the 448K left: it waits, and client 2's small GEMM runs
 * meanwhile. Client 1 frees its tensor: the GEMM runs, right. */
START_TEST(test_daemon_waits_for_tensor)
{
	rxg_client *c1 = client("test-admit holder"), *c2 = client("test-admit waiter");
	int64_t hold = (int64_t)(3 * M + 512 * K) / 4, adims[2] = { 64, 256 };
	rxg_tensor *held = NULL, *ta = NULL;
	struct prob p, small;
	struct rxg_gemm_args args, sargs;
	struct rxg_status *st;
	float *a_col = malloc(64 * 256 * 4);
	uint64_t id;
	int rc;

	if (g_skip_daemon)
		return;
	ck_assert_ptr_nonnull(a_col);
	ck_assert_int_eq(rxg_tensor_create(c1, &hold, 1, NULL, &held), RXG_OK);
	/* The tensor holds A column-major (64 x 256, lda 64); B and C go from and to the
	 * host, row-major like the rest: the GEMM asks C^T = B^T A^T of the daemon. */
	prob_make(&p, 64, 512, 256, 77);
	for (int64_t i = 0; i < 64; i++)
		for (int64_t l = 0; l < 256; l++)
			a_col[i + l * 64] = p.a[i * 256 + l];
	ck_assert_int_eq(rxg_tensor_create(c2, adims, 2, a_col, &ta), RXG_OK);
	memset(&args, 0, sizeof(args));
	args.layout = RXG_COL_MAJOR;
	args.m = 64, args.n = 512, args.k = 256;
	args.alpha = 1.0f;
	args.a_tensor = ta, args.lda = 64;
	/* B row-major k x n is B^T column-major n x k: op(B) = B with trans_b. */
	args.b = p.b, args.ldb = 512, args.trans_b = 1;
	float *c_col = calloc(64 * 512, 4);
	ck_assert_ptr_nonnull(c_col);
	args.c = c_col, args.ldc = 64;
	ck_assert_int_eq(rxg_submit_gemm(c2, &args, NULL, &id), RXG_OK);
	wait_for_memory_waiters(c1, 1);
	/* A job that fits runs past it. */
	prob_make(&small, 100, 90, 80, 5);
	sargs = prob_args(&small);
	rc = rxg_gemm(c2, &sargs, NULL);
	ck_assert_msg(rc == RXG_OK, "small GEMM: %s", rxg_errmsg(c2));
	prob_check(&small);
	st = status_of(c1);
	ck_assert_uint_eq(st->jobs_waiting_for_memory, 1);
	ck_assert_uint_eq(st->jobs_waiting, 1);
	rxg_status_free(st);
	/* A second one with a deadline waits too, and expires there, unrun. */
	{
		struct rxg_job_options opts = { .deadline_ms = 200 };
		float *c2_col = calloc(64 * 512, 4);
		uint64_t id2;

		ck_assert_ptr_nonnull(c2_col);
		args.c = c2_col;
		ck_assert_int_eq(rxg_submit_gemm(c2, &args, &opts, &id2), RXG_OK);
		rc = rxg_wait(c2, id2, NULL);
		ck_assert_msg(rc == RXG_ETIMEOUT, "the GEMM past its deadline: %s: %s",
			      rxg_strerror(rc), rxg_errmsg(c2));
		args.c = c_col;
		free(c2_col);
	}
	st = status_of(c1);
	ck_assert_uint_eq(st->jobs_waiting_for_memory, 1);
	rxg_status_free(st);
	/* The room comes back: it runs. */
	ck_assert_int_eq(rxg_tensor_free(held), RXG_OK);
	rc = rxg_wait(c2, id, NULL);
	ck_assert_msg(rc == RXG_OK, "the GEMM that waited: %s", rxg_errmsg(c2));
	for (int64_t i = 0; i < 64; i++)
		for (int64_t j = 0; j < 512; j++)
			p.c[i * 512 + j] = c_col[i + j * 64];
	prob_check(&p);
	ck_assert_int_eq(rxg_tensor_free(ta), RXG_OK);
	st = status_of(c1);
	ck_assert_uint_eq(st->jobs_waiting_for_memory, 0);
	ck_assert_uint_eq(st->vram_in_use_bytes, 0);
	rxg_status_free(st);
	/* Freed on the loop thread after the reply: wait for the figure. */
	for (int i = 0;; i++) {
		uint64_t reserved;

		st = status_of(c1);
		reserved = st->vram_reserved_bytes;
		rxg_status_free(st);
		if (reserved == 0)
			break;
		ck_assert_msg(i < 3000, "%llu bytes still reserved", (unsigned long long)reserved);
		usleep(20000);
	}
	free(a_col), free(c_col);
	rxg_close(c2);
	rxg_close(c1);
}
END_TEST

static void daemon_up(void)
{
	static const char *const args[] = { "--vram-budget", "4M", NULL };
	int rc;

	memset(&g_daemon, 0, sizeof(g_daemon));
	rc = daemon_run_start(&g_daemon, args);
	if (rc == DAEMON_RUN_SKIP) {
		g_skip_daemon = 1;
		return;
	}
	ck_assert_int_eq(rc, 0);
}

static void daemon_down(void)
{
	if (!g_skip_daemon) {
		int st = daemon_run_stop(&g_daemon, SIGTERM, 60);

		if (st != 0)
			daemon_run_dump_log(&g_daemon);
		ck_assert_int_eq(st, 0);
	}
	daemon_run_cleanup(&g_daemon);
}

int main(void)
{
	const char *sel = getenv("RXGEMM_TEST_DEVICE");
	Suite *s = suite_create("admit");
	TCase *plan = tcase_create("plan"), *daemon = tcase_create("daemon");
	SRunner *sr;
	int failed;

	log_set_level(LOG_WARNING);
	if (device_open(&dev, sel, NULL) == 0 && gemm_init(&engine, &dev, NULL) == 0 &&
	    nasops_init(&ops, &dev, &engine) == 0) {
		have_device = true;
		tcase_set_timeout(plan, 600);
		tcase_add_test(plan, test_gemm_whole_splitk);
		tcase_add_test(plan, test_gemm_pieces);
		tcase_add_test(plan, test_gemm_refusals);
		tcase_add_test(plan, test_nas_plan);
		tcase_add_test(plan, test_nas_refusals);
		suite_add_tcase(s, plan);
	} else {
		fprintf(stderr, "no OpenCL device: the plan tests are skipped\n");
	}
	if (getenv("RXGEMMD")) {
		tcase_set_timeout(daemon, 600);
		tcase_add_unchecked_fixture(daemon, daemon_up, daemon_down);
		tcase_add_test(daemon, test_daemon_concurrent);
		tcase_add_test(daemon, test_daemon_waits_for_tensor);
		suite_add_tcase(s, daemon);
	}
	if (!have_device && !getenv("RXGEMMD"))
		return DAEMON_RUN_SKIP;
	sr = srunner_create(s);
	/* The OpenCL runtime's threads do not survive fork(): run the tests in-process. */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (have_device) {
		nasops_fini(&ops);
		gemm_fini(&engine);
	}
	if (dev.ctx)
		device_close(&dev);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

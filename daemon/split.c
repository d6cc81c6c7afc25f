/* split.c: running a job within the device-memory budget (budget.c), in pieces when it
 * must be.
 *
 * split_plan is the GEMM half of admission (admit.c, which reserves what it plans). A job
 * whose buffers fit what device tensors leave of the budget runs as it is on buffers from
 * the pool. One that does not runs as blocks of mb x nb x kb over bb matrices of its batch,
 * each packed tight on the host and run through gemm_run_buffers with the kernel that
 * gemm_choose picks for its shape: C's block is summed over the K blocks, the first with
 * the request's beta and the rest with beta = 1. Every piece reuses the same three
 * buffers, made for the largest piece, so one reservation of piece_bytes covers the job.
 * The reply's padding (between ldc columns, between batch strides) is C's as sent, or
 * zeros, exactly as when the job runs whole. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* Bytes on the device for a piece, its three buffers each rounded to a pool size class;
 * UINT64_MAX when one of them is over max_buffer_bytes. */
static uint64_t split_piece_bytes(int64_t mb, int64_t nb, int64_t kb, int64_t bb,
				  uint64_t max_buffer_bytes)
{
	uint64_t f = sizeof(float) * (uint64_t)bb;
	uint64_t a = budget_round((uint64_t)mb * (uint64_t)kb * f);
	uint64_t b = budget_round((uint64_t)kb * (uint64_t)nb * f);
	uint64_t c = budget_round((uint64_t)mb * (uint64_t)nb * f);

	if (a > max_buffer_bytes || b > max_buffer_bytes || c > max_buffer_bytes)
		return UINT64_MAX;
	return a + b + c;
}

/* Half of x, rounded up to a multiple of 64 (whole kernel tiles) while that still
 * shrinks it. */
static int64_t split_halve(int64_t x)
{
	int64_t h = (x + 1) / 2;

	if (x > 128)
		h = (h + 63) / 64 * 64;
	return h;
}

int split_plan(const struct rxd_gemm *g, uint64_t limit_bytes, uint64_t max_buffer_bytes,
	       struct rxd_split_plan *plan)
{
	uint64_t a = budget_round(g->a_elems * sizeof(float));
	uint64_t b = budget_round(g->b_elems * sizeof(float));
	uint64_t c = budget_round(g->c_elems * sizeof(float));
	int64_t batch = g->batch_count > 1 ? g->batch_count : 1;

	memset(plan, 0, sizeof(*plan));
	plan->whole_bytes = a + b + c;
	plan->mb = g->m, plan->nb = g->n, plan->kb = g->k, plan->bb = batch;
	if (plan->whole_bytes <= limit_bytes && a <= max_buffer_bytes && b <= max_buffer_bytes &&
	    c <= max_buffer_bytes) {
		plan->piece_bytes = plan->whole_bytes;
		return 0;
	}
	/* Packed tight, the same shape may fit already (a large ld); else shrink the batch
	 * first (no extra passes over C), then whichever of m, n and k saves the most,
	 * preferring m and n: every K block costs a round trip of C's block. */
	plan->split = true;
	for (;;) {
		uint64_t mb = (uint64_t)plan->mb, nb = (uint64_t)plan->nb, kb = (uint64_t)plan->kb;
		uint64_t save_m, save_n, save_k;

		plan->piece_bytes = split_piece_bytes(plan->mb, plan->nb, plan->kb, plan->bb,
						      max_buffer_bytes);
		if (plan->piece_bytes <= limit_bytes)
			return 0;
		if (plan->bb > 1) {
			plan->bb = (plan->bb + 1) / 2;
			continue;
		}
		save_m = plan->mb > 1 ? mb * kb + mb * nb : 0;
		save_n = plan->nb > 1 ? kb * nb + mb * nb : 0;
		save_k = plan->kb > 1 ? mb * kb + kb * nb : 0;
		if (!save_m && !save_n && !save_k)
			break;
		if (save_m >= save_n && save_m >= save_k)
			plan->mb = split_halve(plan->mb);
		else if (save_n >= save_k)
			plan->nb = split_halve(plan->nb);
		else
			plan->kb = split_halve(plan->kb);
	}
	plan->piece_bytes = split_piece_bytes(1, 1, 1, 1, UINT64_MAX);
	return -E2BIG;
}

/* Copy rows x cols of the stored column-major matrices b0 .. b0 + bn of src (leading
 * dimension ld, stride apart), from (r0, c0) on, into dst packed tight; split_uncopy
 * copies back. */
static void split_copy(float *dst, const float *src, int64_t ld, int64_t stride, int64_t r0,
		       int64_t c0, int64_t rows, int64_t cols, int64_t b0, int64_t bn)
{
	for (int64_t bi = 0; bi < bn; bi++)
		for (int64_t j = 0; j < cols; j++)
			memcpy(dst + (bi * cols + j) * rows,
			       src + (b0 + bi) * stride + r0 + (c0 + j) * ld,
			       (size_t)rows * sizeof(float));
}

static void split_uncopy(float *dst, int64_t ld, int64_t stride, const float *src,
			 int64_t r0, int64_t c0, int64_t rows, int64_t cols, int64_t b0,
			 int64_t bn)
{
	for (int64_t bi = 0; bi < bn; bi++)
		for (int64_t j = 0; j < cols; j++)
			memcpy(dst + (b0 + bi) * stride + r0 + (c0 + j) * ld,
			       src + (bi * cols + j) * rows, (size_t)rows * sizeof(float));
}

static int64_t split_min(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* How many pieces p cuts g into (for messages). */
static uint64_t split_pieces(const struct rxd_split_plan *p, const struct rxd_gemm *g)
{
	int64_t batch = g->batch_count > 1 ? g->batch_count : 1;

	return (uint64_t)((batch + p->bb - 1) / p->bb) * (uint64_t)((g->n + p->nb - 1) / p->nb) *
	       (uint64_t)((g->m + p->mb - 1) / p->mb) * (uint64_t)((g->k + p->kb - 1) / p->kb);
}

static void split_add_timings(struct rxd_job_timings *sum, const struct rxd_job_timings *t)
{
	sum->h2d_ns += t->h2d_ns;
	sum->kernel_ns += t->kernel_ns;
	sum->d2h_ns += t->d2h_ns;
}

/* Run g's pieces on buffers a, b, c of plan's piece size. */
static int split_run_pieces(struct rxd_gemm_engine *eng, const struct rxd_split_plan *p,
			    const struct rxd_gemm *g, cl_mem a, cl_mem b, cl_mem c, float *c_out,
			    struct rxd_job_timings *t, const char **kernel, struct rxd_error *err)
{
	int64_t batch = g->batch_count > 1 ? g->batch_count : 1;
	size_t a_max = (size_t)(p->mb * p->kb * p->bb), b_max = (size_t)(p->kb * p->nb * p->bb);
	size_t c_max = (size_t)(p->mb * p->nb * p->bb);
	float *pa = malloc(a_max * sizeof(float)), *pb = malloc(b_max * sizeof(float));
	float *pc_in = malloc(c_max * sizeof(float)), *pc_out = malloc(c_max * sizeof(float));
	int st = RXD_S_OK;
	uint64_t pieces = 0;

	if (!pa || !pb || !pc_in || !pc_out) {
		st = error_set(err, RXD_S_NO_MEMORY, "out of host memory for the pieces of a "
			       "split GEMM");
		goto out;
	}
	/* The reply starts as C as sent (or zeros): its padding stays so. C replaced in place
	 * (a shared-memory region, shm.c) is there already. */
	if (!g->c)
		memset(c_out, 0, g->c_elems * sizeof(float));
	else if (g->c != c_out)
		memcpy(c_out, g->c, g->c_elems * sizeof(float));
	for (int64_t b0 = 0; b0 < batch; b0 += p->bb) {
		int64_t bn = split_min(p->bb, batch - b0);
		for (int64_t j0 = 0; j0 < g->n; j0 += p->nb) {
			int64_t jn = split_min(p->nb, g->n - j0);
			for (int64_t i0 = 0; i0 < g->m; i0 += p->mb) {
				int64_t in = split_min(p->mb, g->m - i0);
				for (int64_t p0 = 0; p0 < g->k; p0 += p->kb) {
					int64_t pn = split_min(p->kb, g->k - p0);
					struct rxd_gemm s = *g;
					struct rxd_job_timings pt;
					int v;

					if (pieces > 0)
						worker_test_hold();
					/* A cancelled job stops between pieces: the result is
					 * incomplete, so none is sent. */
					if (g->cancel && atomic_load(g->cancel)) {
						st = error_set(err, RXD_S_CANCELLED,
							       "the job was cancelled after "
							       "%llu of its %llu pieces had run",
							       (unsigned long long)pieces,
							       (unsigned long long)
								       split_pieces(p, g));
						goto out;
					}
					pieces++;
					s.m = in, s.n = jn, s.k = pn, s.batch_count = bn;
					s.beta = p0 == 0 ? g->beta : 1.0f;
					if (!g->trans_a)
						split_copy(pa, g->a, g->lda, g->stride_a, i0, p0, in, pn, b0, bn);
					else
						split_copy(pa, g->a, g->lda, g->stride_a, p0, i0, pn, in, b0, bn);
					if (!g->trans_b)
						split_copy(pb, g->b, g->ldb, g->stride_b, p0, j0, pn, jn, b0, bn);
					else
						split_copy(pb, g->b, g->ldb, g->stride_b, j0, p0, jn, pn, b0, bn);
					s.lda = g->trans_a ? pn : in;
					s.ldb = g->trans_b ? jn : pn;
					s.ldc = in;
					s.a_elems = (size_t)(in * pn * bn);
					s.b_elems = (size_t)(pn * jn * bn);
					s.c_elems = (size_t)(in * jn * bn);
					s.stride_a = bn > 1 ? in * pn : 0;
					s.stride_b = bn > 1 ? pn * jn : 0;
					s.stride_c = bn > 1 ? in * jn : 0;
					s.a = pa, s.b = pb;
					if (p0 > 0) {
						float *tmp = pc_in;
						pc_in = pc_out, pc_out = tmp;
						s.c = pc_in;
					} else if (g->beta != 0.0f) {
						split_copy(pc_in, c_out, g->ldc, g->stride_c, i0, j0, in, jn, b0, bn);
						s.c = pc_in;
					} else {
						s.c = NULL; /* beta == 0: never read */
					}
					s.c_given_elems = s.c ? s.c_elems : 0;
					s.flops = 2 * (uint64_t)in * (uint64_t)jn * (uint64_t)pn *
						  (uint64_t)bn;
					v = gemm_choose(eng, &s);
					if (!*kernel)
						*kernel = gemm_variant_name(eng, v);
					st = gemm_run_buffers(eng, v, &s, a, b, c, pc_out, &pt,
							      err);
					if (st != RXD_S_OK)
						goto out;
					split_add_timings(t, &pt);
				}
				split_uncopy(c_out, g->ldc, g->stride_c, pc_out, i0, j0, in, jn, b0,
					     bn);
			}
		}
	}
out:
	free(pa), free(pb), free(pc_in), free(pc_out);
	return st;
}

int split_run_admitted(struct rxd_gemm_engine *eng, struct rxd_admit *a,
		       const struct rxd_gemm *g, float *c_out, struct rxd_job_timings *t,
		       const char **kernel, struct rxd_error *err)
{
	const struct rxd_split_plan *plan = &a->split;
	cl_mem mem[3] = { NULL };
	int ret, st = RXD_S_OK, cl_err = 0;

	memset(t, 0, sizeof(*t));
	*kernel = NULL;
	for (int i = 0; i < 3; i++) {
		if ((ret = admit_take(a, a->gemm_bytes[i], &mem[i], &cl_err)) < 0) {
			st = error_set(err, ret == -ENOSPC ? RXD_S_INTERNAL : RXD_S_NO_MEMORY,
				       "a device buffer of %llu bytes could not be made: %s",
				       (unsigned long long)budget_round(a->gemm_bytes[i]),
				       cl_err ? device_strerror(cl_err) : strerror(-ret));
			goto out;
		}
	}
	if (!plan->split) {
		int v = gemm_choose(eng, g);

		*kernel = gemm_variant_name(eng, v);
		st = gemm_run_buffers(eng, v, g, mem[0], mem[1], mem[2], c_out, t, err);
	} else {
		st = split_run_pieces(eng, plan, g, mem[0], mem[1], mem[2], c_out, t, kernel, err);
	}
out:
	if (!*kernel)
		*kernel = "";
	return st;
}

int split_run(struct rxd_gemm_engine *eng, struct rxd_budget *b, uint32_t owner,
	      const struct rxd_gemm *g, float *c_out, struct rxd_job_timings *t,
	      const char **kernel, struct rxd_error *err)
{
	static const bool make[3] = { true, true, true };
	struct rxd_gemm admitted = *g;
	struct rxd_admit a;
	int st;

	memset(t, 0, sizeof(*t));
	*kernel = "";
	st = admit_gemm(eng, b, owner, &admitted, make, &a, err);
	if (st == RXD_S_OK)
		st = split_run_admitted(eng, &a, &admitted, c_out, t, kernel, err);
	admit_release(&a);
	return st;
}

/* admit.c: admission. Every job's device memory is planned here once, reserved once and
 * released once.
 *
 * The plan names every device buffer the job will make: a GEMM's A, B and C (whole, or of
 * its largest piece when split.c cuts it to fit) and split-K's workspace; a NAS
 * evaluation's folded weights, activation arena and im2col scratch (nasops.c's one rule),
 * for the largest piece of its batch that fits. One reservation for the job's owner covers
 * them all; the job's code takes its buffers from it (admit_take) and makes nothing else,
 * and admit_release gives everything back, to the pool, when the job ends.
 *
 * Waiting. The one device worker runs one job at a time, so when a job is admitted the
 * only other holders of the budget are device tensors (resident, kept until their client
 * frees them) and the pool's idle buffers (evicted on demand). A job is planned within
 * what the tensors leave: a GEMM in pieces, a NAS batch in pieces. One that does not fit
 * even so, but would beside fewer tensors (its smallest plan within the budget, and
 * within the client's quota less the client's own tensors), is refused for now only
 * (a->later): the worker parks it in the scheduler (sched_park) until a tensor is freed
 * or the limits change. One that can never fit, over the budget or the client's quota, is
 * refused at once (STATUS_TOO_BIG; for a GEMM on device tensors STATUS_QUOTA or TOO_BIG,
 * as for the tensors themselves). A tensor's own creation is not admitted here: it is
 * refused when the room is short (tensor.c), since a tensor is room kept, not a job.
 *
 * Device worker thread only. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"

static void admit_start(struct rxd_admit *a, struct rxd_device *dev, struct rxd_budget *b)
{
	memset(a, 0, sizeof(*a));
	a->dev = dev;
	a->budget = b;
}

/* What device tensors leave of the budget now (everything without a budget). */
static uint64_t admit_room(struct rxd_budget *b, struct rxd_budget_stats *bs)
{
	memset(bs, 0, sizeof(*bs));
	if (!b)
		return UINT64_MAX;
	budget_stats(b, bs);
	return bs->budget_bytes > bs->resident_bytes ? bs->budget_bytes - bs->resident_bytes : 0;
}

/* Whether bytes could ever be reserved for one job: within the budget and the quota. */
static bool admit_could_fit(const struct rxd_budget_stats *bs, uint64_t bytes)
{
	return bytes <= bs->budget_bytes && (!bs->quota_bytes || bytes <= bs->quota_bytes);
}

/* Reserve a->bytes for owner; when that fails only because of what tensors (any
 * client's for the budget, its own for the quota) hold now, a->later says so. */
static int admit_reserve(struct rxd_admit *a, uint32_t owner, const struct rxd_budget_stats *bs)
{
	int ret;

	if (!a->budget || a->bytes == 0)
		return 0;
	ret = budget_reserve(a->budget, &a->res, owner, a->bytes);
	if (ret == 0)
		a->reserved = true;
	else
		a->later = admit_could_fit(bs, a->bytes);
	return ret;
}

static void admit_format_bytes(char *buf, size_t len, uint64_t bytes)
{
	if (bytes >= (1ull << 30))
		snprintf(buf, len, "%llu bytes (%.1f GiB)", (unsigned long long)bytes,
			 (double)bytes / (1ull << 30));
	else if (bytes >= (1ull << 20))
		snprintf(buf, len, "%llu bytes (%.1f MiB)", (unsigned long long)bytes,
			 (double)bytes / (1ull << 20));
	else
		snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
}

int admit_take(struct rxd_admit *a, uint64_t bytes, cl_mem *mem, int *cl_err)
{
	void *m = NULL;
	int ret;

	*cl_err = 0;
	if (!a->budget) {
		if (a->n_made == RXD_ADMIT_MAX_BUFFERS)
			return -ENOSPC; /* more buffers than any plan has: a bug */
		m = clCreateBuffer(a->dev->ctx, CL_MEM_READ_WRITE, (size_t)bytes, NULL, cl_err);
		if (!m)
			return -ENOMEM;
		a->made[a->n_made++] = m;
		*mem = m;
		return 0;
	}
	ret = budget_buf_get(a->budget, &a->res, bytes, &m, cl_err);
	if (ret < 0 && ret != -ENOSPC) {
		struct rxd_budget_stats bs;

		/* The pool's idle buffers may be what the device is short of: free them and
		 * try once more. */
		budget_stats(a->budget, &bs);
		if (bs.pool_buffers) {
			log_msg(LOG_INFO, "a device buffer of %llu bytes could not be made (%s); "
				"freeing the buffer pool and trying again",
				(unsigned long long)bytes,
				*cl_err ? device_strerror(*cl_err) : strerror(-ret));
			budget_trim(a->budget);
			ret = budget_buf_get(a->budget, &a->res, bytes, &m, cl_err);
		}
	}
	if (ret == 0)
		*mem = m;
	return ret;
}

void admit_release(struct rxd_admit *a)
{
	if (a->reserved)
		budget_release(a->budget, &a->res);
	a->reserved = false;
	for (int i = 0; i < a->n_made; i++)
		clReleaseMemObject(a->made[i]);
	a->n_made = 0;
}

/* ---- GEMM ---------------------------------------------------------------------------- */

/* Split-K's workspace for g run as p says: the most any of its pieces takes (a piece is
 * one of two sizes along each of m, n, k and the batch: the plan's, or what is left at the
 * end), 0 when none of them splits K. */
static uint64_t admit_splitk_bytes(const struct rxd_gemm_engine *eng, const struct rxd_gemm *g,
				   const struct rxd_split_plan *p)
{
	int64_t batch = g->batch_count > 1 ? g->batch_count : 1;
	const int64_t size[4][2] = { { p->mb, g->m % p->mb }, { p->nb, g->n % p->nb },
				     { p->kb, g->k % p->kb }, { p->bb, batch % p->bb } };
	uint64_t most = 0;

	if (!p->split) {
		int s = gemm_splitk_slices(eng, gemm_choose(eng, g), g);

		return gemm_splitk_bytes(g, s);
	}
	for (int i = 0; i < 16; i++) {
		struct rxd_gemm s = *g;
		uint64_t bytes;

		s.m = size[0][i & 1];
		s.n = size[1][(i >> 1) & 1];
		s.k = size[2][(i >> 2) & 1];
		s.batch_count = size[3][(i >> 3) & 1];
		if (!s.m || !s.n || !s.k || !s.batch_count)
			continue;
		bytes = gemm_splitk_bytes(&s, gemm_splitk_slices(eng, gemm_choose(eng, &s), &s));
		if (bytes > most)
			most = bytes;
	}
	return most;
}

/* The refusal of a GEMM on host operands (split.c's plan) that ret says does not fit. */
static int admit_gemm_refuse(const struct rxd_budget_stats *bs, int ret, uint64_t need_bytes,
			     struct rxd_error *err)
{
	char need[64], have[64];

	admit_format_bytes(need, sizeof(need), need_bytes);
	if (ret == -EDQUOT) {
		admit_format_bytes(have, sizeof(have), bs->quota_bytes);
		return error_set(err, RXD_S_TOO_BIG, "this job needs %s of device memory at once, "
				 "over this client's quota of %s (client-quota)", need, have);
	}
	admit_format_bytes(have, sizeof(have), bs->budget_bytes);
	return error_set(err, RXD_S_TOO_BIG, "this job needs %s of device memory at once, more "
			 "than the budget of %s (vram-budget)", need, have);
}

int admit_gemm(struct rxd_gemm_engine *eng, struct rxd_budget *b, uint32_t owner,
	       struct rxd_gemm *g, const bool make[3], struct rxd_admit *a,
	       struct rxd_error *err)
{
	const uint64_t whole[3] = { g->a_elems * sizeof(float), g->b_elems * sizeof(float),
				    g->c_elems * sizeof(float) };
	const bool host = make[0] && make[1] && make[2];
	struct rxd_split_plan *p = &a->split;
	struct rxd_budget_stats bs;
	uint64_t room, base = 0, ws;
	int ret, cl_err;

	admit_start(a, eng->dev, b);
	room = admit_room(b, &bs);
	g->admitted = true;
	g->splitk_ws = NULL;
	g->splitk_ws_bytes = 0;
	if (host) {
		/* Operands from the host may go up in pieces: plan within the room. */
		if (split_plan(g, room, eng->dev->max_alloc_bytes, p) < 0) {
			char need[64], have[64];

			admit_format_bytes(need, sizeof(need), p->piece_bytes);
			admit_format_bytes(have, sizeof(have), room);
			a->later = b && room < bs.budget_bytes &&
				   admit_could_fit(&bs, p->piece_bytes);
			return error_set(err, RXD_S_TOO_BIG, "this job needs at least %s of device "
					 "memory at once (its smallest piece), more than the budget "
					 "of %s (vram-budget)%s", need, have,
					 bs.resident_bytes ? " left beside the device tensors" : "");
		}
		if (p->split) {
			a->gemm_bytes[0] = (uint64_t)(p->mb * p->kb * p->bb) * sizeof(float);
			a->gemm_bytes[1] = (uint64_t)(p->kb * p->nb * p->bb) * sizeof(float);
			a->gemm_bytes[2] = (uint64_t)(p->mb * p->nb * p->bb) * sizeof(float);
			log_msg(LOG_DEBUG, "gemm %lldx%lldx%lld (batch %lld) needs %llu bytes, over "
				"the budget: pieces of %lldx%lldx%lld (batch %lld), %llu bytes each",
				(long long)g->m, (long long)g->n, (long long)g->k,
				(long long)g->batch_count, (unsigned long long)p->whole_bytes,
				(long long)p->mb, (long long)p->nb, (long long)p->kb,
				(long long)p->bb, (unsigned long long)p->piece_bytes);
		} else {
			memcpy(a->gemm_bytes, whole, sizeof(whole));
		}
		base = p->piece_bytes;
	} else {
		/* Operands on the device already (tensors, regions run in place): the job runs
		 * whole, and only what is not there is made. */
		memset(p, 0, sizeof(*p));
		p->mb = g->m, p->nb = g->n, p->kb = g->k;
		p->bb = g->batch_count > 1 ? g->batch_count : 1;
		for (int i = 0; i < 3; i++)
			if (make[i]) {
				a->gemm_bytes[i] = whole[i];
				base += budget_round(whole[i]);
			}
		p->piece_bytes = p->whole_bytes = base;
	}
	/* Split-K is a speed-up: without the room for its workspace the job runs without. */
	ws = admit_splitk_bytes(eng, g, p);
	if (ws > eng->dev->max_alloc_bytes || base + budget_round(ws) > room)
		ws = 0;
	a->splitk_bytes = ws;
	a->bytes = base + (ws ? budget_round(ws) : 0);
	ret = admit_reserve(a, owner, &bs);
	if (ret == -EDQUOT && ws) {
		a->splitk_bytes = 0;
		a->bytes = base;
		a->later = false;
		ret = admit_reserve(a, owner, &bs);
	}
	if (ret < 0) {
		if (host)
			return admit_gemm_refuse(&bs, ret, a->bytes, err);
		return tensor_budget_fail(b, ret, "this job's host operands", a->bytes, err);
	}
	if (p->split && b)
		budget_note_split(b);
	if (a->splitk_bytes) {
		if (admit_take(a, a->splitk_bytes, &g->splitk_ws, &cl_err) < 0) {
			/* Without it the job still runs, without split-K. */
			g->splitk_ws = NULL;
		} else {
			g->splitk_ws_bytes = a->splitk_bytes;
		}
	}
	return RXD_S_OK;
}

/* ---- NAS ----------------------------------------------------------------------------- */

int admit_nas(struct rxd_nas_job *nj, struct rxd_nasops *ops, struct rxd_budget *b,
	      uint32_t owner, struct rxd_admit *a, struct rxd_error *err)
{
	struct rxd_budget_stats bs;
	struct rxd_nas_need need;
	int32_t batch, piece;
	uint64_t room, bytes;
	int st, ret;

	if (!ops) {
		memset(a, 0, sizeof(*a));
		return error_set(err, RXD_S_UNSUPPORTED, "this daemon's device could not build "
				 "the NAS kernels");
	}
	admit_start(a, ops->dev, b);
	room = admit_room(b, &bs);
	batch = piece = nas_job_batch(nj);
	/* The largest piece of the batch, halving, whose buffers fit what the device tensors
	 * leave, the largest buffer and int indexing. */
	for (;;) {
		if ((st = nas_job_plan(nj, ops, piece, &need, err)) != RXD_S_OK)
			return st;
		bytes = budget_round(need.weight_bytes) + budget_round(need.arena_bytes) +
			(need.scratch_bytes ? budget_round(need.scratch_bytes) : 0);
		if (need.arena_bytes / sizeof(float) <= INT32_MAX &&
		    need.arena_bytes <= ops->dev->max_alloc_bytes && bytes <= room)
			break;
		if (piece == 1) {
			a->later = b && bytes > room && admit_could_fit(&bs, bytes) &&
				   need.arena_bytes / sizeof(float) <= INT32_MAX &&
				   need.arena_bytes <= ops->dev->max_alloc_bytes;
			return error_set(err, RXD_S_TOO_BIG, "one image of this network needs %llu "
					 "bytes of device memory (weights %llu, activations %llu, "
					 "scratch %llu); the budget is %llu and the largest buffer "
					 "%llu", (unsigned long long)bytes,
					 (unsigned long long)need.weight_bytes,
					 (unsigned long long)need.arena_bytes,
					 (unsigned long long)need.scratch_bytes,
					 (unsigned long long)budget_limit(b),
					 (unsigned long long)ops->dev->max_alloc_bytes);
		}
		piece = (piece + 1) / 2;
	}
	a->nas_piece = piece;
	a->nas_weight_bytes = need.weight_bytes;
	a->nas_arena_bytes = need.arena_bytes;
	a->nas_scratch_bytes = need.scratch_bytes;
	a->bytes = bytes;
	if ((ret = admit_reserve(a, owner, &bs)) < 0) {
		return error_set(err, ret == -EDQUOT ? RXD_S_TOO_BIG : RXD_S_NO_MEMORY,
				 "the network needs %llu bytes of device memory: %s",
				 (unsigned long long)bytes,
				 ret == -EDQUOT ? "over this client's quota"
						: "the reservation failed");
	}
	if (piece < batch && b)
		budget_note_split(b);
	return RXD_S_OK;
}

/* gemm-launch.c: running validated GEMMs (wire_gemm_validate, wire.c) on the device
 * worker thread: one launch, split-K with its reduction, K in chunks so that a cancel or
 * a deadline is seen between them, and the pipelined path that overlaps uploads with the
 * kernel. The variants it launches are gemm.c's. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemm-variant.h"
#include "refgemm.h"
#include "engine.h"

/* ---- ready words ---------------------------------------------------------------------- */

/* A client that stages host arrays sends the request first and copies while it travels
 * (GemmRequest.a_ready, b_ready): the device thread waits here for the words that say the
 * copies are done. The word is the client's memory, read with acquire order so that the
 * operand's bytes, written before it with release order, are there when the upload reads
 * them. A word is usually set within tens of microseconds of the job's start: the wait
 * spins for the busy poll's length (ready_spin_ns), then naps, so that a client that is
 * slow (or never sets it) costs a CPU nothing; after RXD_READY_WAIT_MS it fails. The
 * device waits meanwhile, which the client's own share of it pays for (the job's time
 * runs). */
#define GEMM_READY_NAP_NS 20000

static bool gemm_ready_seen(const struct rxd_ready *r)
{
	return !r->word || __atomic_load_n(r->word, __ATOMIC_ACQUIRE) == r->value;
}

int gemm_ready_wait(const struct rxd_gemm *g, int which, struct rxd_error *err)
{
	int first = which == 1 ? 1 : 0, last = which == 0 ? 0 : 1;
	uint64_t start = 0, spin_until = 0;
	bool napping = false;

	for (int i = first; i <= last; i++) {
		const struct rxd_ready *r = &g->ready[i];

		for (unsigned n = 0; !gemm_ready_seen(r); n++) {
			/* The clock only every 64 turns while spinning: the word is the hot part. */
			if (napping || n % 64 == 0) {
				uint64_t now = now_ns();

				if (!start) {
					start = now;
					spin_until = now + g->ready_spin_ns;
				}
				if (g->cancel && atomic_load(g->cancel))
					return error_set(err, RXD_S_CANCELLED,
							 "cancelled while it waited for %s",
							 r->field);
				if (now - start >= (uint64_t)RXD_READY_WAIT_MS * 1000000u)
					return error_set(err, RXD_S_TIMEOUT,
							 "%s: the word at offset %llu of region %u "
							 "did not reach %llu within %d ms of the "
							 "job's start: the operand was never marked "
							 "complete",
							 r->field, (unsigned long long)r->offset,
							 r->region_id, (unsigned long long)r->value,
							 RXD_READY_WAIT_MS);
				napping = now >= spin_until;
			}
			if (napping) {
				struct timespec nap = { 0, GEMM_READY_NAP_NS };

				nanosleep(&nap, NULL);
				continue;
			}
#if defined(__x86_64__) || defined(__i386__)
			__builtin_ia32_pause(); /* a spin-wait hint, as worker_poll's */
#endif
		}
	}
	if (start)
		log_msg(LOG_DEBUG, "waited %.0f us for %s", (double)(now_ns() - start) / 1e3,
			g->ready[last].field ? g->ready[last].field : g->ready[first].field);
	return RXD_S_OK;
}

/* ---- running ------------------------------------------------------------------------ */

static int gemm_cl_status(cl_int err)
{
	if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
	    err == CL_OUT_OF_HOST_MEMORY)
		return RXD_S_NO_MEMORY;
	return RXD_S_DEVICE;
}

/* Offsets (in floats) of the part of each matrix one launch computes: 64-bit, as the
 * matrices may sit anywhere in a large buffer (nasops.c's tensors). */
struct gemm_part {
	cl_ulong off_a, off_b, off_c;
};

static cl_int gemm_enqueue_part_after(struct rxd_gemm_engine *eng, int variant,
				      const struct rxd_gemm *g, cl_mem a, cl_mem b, cl_mem c,
				      const struct gemm_part *p, cl_uint n_wait,
				      const cl_event *wait, cl_event *ev)
{
	struct rxd_gemm_variant *v = &eng->variants[variant];
	const struct rxd_gemm_config *cf = &v->cfg;
	cl_int e, m = (cl_int)g->m, n = (cl_int)g->n, k = (cl_int)g->k;
	cl_int lda = (cl_int)g->lda, ldb = (cl_int)g->ldb, ldc = (cl_int)g->ldc;
	cl_int sa = (cl_int)g->stride_a, sb = (cl_int)g->stride_b, sc = (cl_int)g->stride_c;
	/* float4 global access needs every column start 16-byte aligned. */
	cl_int vec_ok = lda % 4 == 0 && ldb % 4 == 0 && ldc % 4 == 0 && sa % 4 == 0 &&
			sb % 4 == 0 && sc % 4 == 0 && p->off_a % 4 == 0 && p->off_b % 4 == 0 &&
			p->off_c % 4 == 0;
	cl_uint next = 11;
	size_t local[3], global[3];

	cl_mem pa = a, pb = b;
	cl_ulong oa = p->off_a, ob = p->off_b;
	int64_t gm = g->m, gn = g->n;

	/* The vector kernel computes A^T B^T as (B A)^T: operands, M and N swapped. */
	if (cf->kernel == RXD_GEMM_VEC && g->trans_a && g->trans_b) {
		cl_int t;

		pa = b, pb = a;
		oa = p->off_b, ob = p->off_a;
		t = m, m = n, n = t;
		t = lda, lda = ldb, ldb = t;
		t = sa, sa = sb, sb = t;
		gm = g->n, gn = g->m;
	}
	e = clSetKernelArg(v->kernel, 0, sizeof(m), &m);
	e |= clSetKernelArg(v->kernel, 1, sizeof(n), &n);
	e |= clSetKernelArg(v->kernel, 2, sizeof(k), &k);
	e |= clSetKernelArg(v->kernel, 3, sizeof(float), &g->alpha);
	e |= clSetKernelArg(v->kernel, 4, sizeof(cl_mem), &pa);
	e |= clSetKernelArg(v->kernel, 5, sizeof(lda), &lda);
	e |= clSetKernelArg(v->kernel, 6, sizeof(cl_mem), &pb);
	e |= clSetKernelArg(v->kernel, 7, sizeof(ldb), &ldb);
	e |= clSetKernelArg(v->kernel, 8, sizeof(float), &g->beta);
	e |= clSetKernelArg(v->kernel, 9, sizeof(cl_mem), &c);
	e |= clSetKernelArg(v->kernel, 10, sizeof(ldc), &ldc);
	if (cf->kernel == RXD_GEMM_REG)
		e |= clSetKernelArg(v->kernel, next++, sizeof(vec_ok), &vec_ok);
	e |= clSetKernelArg(v->kernel, next++, sizeof(sa), &sa);
	e |= clSetKernelArg(v->kernel, next++, sizeof(sb), &sb);
	e |= clSetKernelArg(v->kernel, next++, sizeof(sc), &sc);
	e |= clSetKernelArg(v->kernel, next++, sizeof(cl_ulong), &oa);
	e |= clSetKernelArg(v->kernel, next++, sizeof(cl_ulong), &ob);
	e |= clSetKernelArg(v->kernel, next++, sizeof(cl_ulong), &p->off_c);
	if (e != CL_SUCCESS)
		return CL_INVALID_KERNEL_ARGS;
	local[0] = (size_t)(cf->tsm / cf->wptm);
	local[1] = (size_t)(cf->tsn / cf->wptn);
	local[2] = 1;
	global[0] = (size_t)((gm + cf->tsm - 1) / cf->tsm) * local[0];
	global[1] = (size_t)((gn + cf->tsn - 1) / cf->tsn) * local[1];
	global[2] = g->batch_count > 1 ? (size_t)g->batch_count : 1;
	return clEnqueueNDRangeKernel(eng->dev->queue, v->kernel, 3, NULL, global, local, n_wait,
				      n_wait ? wait : NULL, ev);
}

static cl_int gemm_enqueue_part(struct rxd_gemm_engine *eng, int variant,
				const struct rxd_gemm *g, cl_mem a, cl_mem b, cl_mem c,
				const struct gemm_part *p, cl_event *ev)
{
	return gemm_enqueue_part_after(eng, variant, g, a, b, c, p, 0, NULL, ev);
}

cl_int gemm_enqueue(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		    cl_mem a, cl_mem b, cl_mem c, cl_event *ev)
{
	static const struct gemm_part whole = { 0, 0, 0 };

	return gemm_enqueue_part(eng, variant, g, a, b, c, &whole, ev);
}

/* Split-K pays when C has too few tiles to give half the compute units a work-group (a
 * 4096 x 64 C in 256 x 64 tiles is 16 work-groups for a 132-SM GPU) and K is long enough
 * to cut: it then makes about one work-group per compute unit, each slice keeping at
 * least 256 of K so that the tiles' K loops stay long. Measured on an H100
 * (tests/gpu/run-thin.sh): 4096 x 64 x 4096 goes from 4.7 to 30 TFLOPS with 8 slices,
 * while C of 128 tiles (1024^2 in 64 x 128, 2048^2 in 256 x 128) lose 15-30% when split. */
#define GEMM_SPLITK_MIN_K 256
#define GEMM_SPLITK_MAX 32

int gemm_splitk_slices(const struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g)
{
	const struct rxd_gemm_variant *v = &eng->variants[variant];
	int64_t tiles, want, s;

	if (!v->reduce || g->batch_count > 1 || g->splitk == 1)
		return 1;
	if (g->splitk > 1) {
		s = g->splitk;
	} else {
		tiles = ((g->m + v->cfg.tsm - 1) / v->cfg.tsm) * ((g->n + v->cfg.tsn - 1) / v->cfg.tsn);
		want = (int64_t)eng->dev->desc->compute_units;
		if (2 * tiles > want)
			return 1;
		s = (want + tiles - 1) / tiles;
		/* A power of two, so that a K of one (4096) cuts into whole TSK steps with
		 * nothing left for an extra launch (s = 9 ran 4096 x 64 x 4096 at 17 TFLOPS,
		 * s = 8 at 30). */
		while (s & (s - 1))
			s &= s - 1;
		if (s > g->k / GEMM_SPLITK_MIN_K)
			s = g->k / GEMM_SPLITK_MIN_K;
		if (s > GEMM_SPLITK_MAX)
			s = GEMM_SPLITK_MAX;
	}
	/* Every slice at least one K step; the workspace's offsets within an int. */
	if (s > g->k / v->cfg.tsk)
		s = g->k / v->cfg.tsk;
	if (s < 2 || (uint64_t)s * (uint64_t)g->m * (uint64_t)g->n > INT_MAX)
		return 1;
	return (int)s;
}

uint64_t gemm_splitk_bytes(const struct rxd_gemm *g, int slices)
{
	return slices > 1 ? (uint64_t)slices * (uint64_t)g->m * (uint64_t)g->n * sizeof(float) : 0;
}

/* Wait for ev (device_wait), add its device time, release it. */
static cl_int gemm_wait(const struct rxd_device *dev, cl_event *ev, uint64_t *kernel_ns)
{
	cl_int e;

	if (!*ev)
		return CL_SUCCESS;
	e = device_wait(dev, *ev);
	*kernel_ns += device_event_ns(*ev);
	clReleaseEvent(*ev);
	*ev = NULL;
	return e;
}

/* g as s batched K slices into ws (alpha 1, beta 0, leading dimension m), the K left over
 * added to the first slice, then gemm_splitk_reduce: C = alpha * sum + beta * C. */
static cl_int gemm_splitk_run(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
			      cl_mem a, cl_mem b, cl_mem c, const struct gemm_part *base,
			      cl_mem ws, int s, uint64_t *kernel_ns)
{
	struct rxd_gemm_variant *v = &eng->variants[variant];
	int64_t tsk = v->cfg.tsk, ks = g->k / s / tsk * tsk, rest = g->k - ks * s;
	struct rxd_gemm sl = *g;
	struct gemm_part p = { base->off_a, base->off_b, 0 };
	cl_int e, m = (cl_int)g->m, n = (cl_int)g->n, sc = s, ldc = (cl_int)g->ldc;
	cl_ulong off_c = base->off_c;
	cl_event ev[3] = { NULL };
	size_t global[2];

	/* Slice z reads op(A)'s columns and op(B)'s rows z * ks .. (z + 1) * ks. */
	sl.k = ks;
	sl.alpha = 1.0f;
	sl.beta = 0.0f;
	sl.ldc = g->m;
	sl.batch_count = s;
	sl.stride_a = g->trans_a ? ks : ks * g->lda;
	sl.stride_b = g->trans_b ? ks * g->ldb : ks;
	sl.stride_c = g->m * g->n;
	e = gemm_enqueue_part(eng, variant, &sl, a, b, ws, &p, &ev[0]);
	if (e == CL_SUCCESS && rest > 0) {
		sl.k = rest;
		sl.beta = 1.0f;
		sl.batch_count = 1;
		p.off_a = base->off_a + (cl_ulong)(g->trans_a ? s * ks : s * ks * g->lda);
		p.off_b = base->off_b + (cl_ulong)(g->trans_b ? s * ks * g->ldb : s * ks);
		e = gemm_enqueue_part(eng, variant, &sl, a, b, ws, &p, &ev[1]);
	}
	if (e == CL_SUCCESS) {
		e = clSetKernelArg(v->reduce, 0, sizeof(m), &m);
		e |= clSetKernelArg(v->reduce, 1, sizeof(n), &n);
		e |= clSetKernelArg(v->reduce, 2, sizeof(sc), &sc);
		e |= clSetKernelArg(v->reduce, 3, sizeof(float), &g->alpha);
		e |= clSetKernelArg(v->reduce, 4, sizeof(cl_mem), &ws);
		e |= clSetKernelArg(v->reduce, 5, sizeof(float), &g->beta);
		e |= clSetKernelArg(v->reduce, 6, sizeof(cl_mem), &c);
		e |= clSetKernelArg(v->reduce, 7, sizeof(ldc), &ldc);
		e |= clSetKernelArg(v->reduce, 8, sizeof(off_c), &off_c);
		global[0] = (size_t)g->m;
		global[1] = (size_t)g->n;
		if (e == CL_SUCCESS)
			e = clEnqueueNDRangeKernel(eng->dev->queue, v->reduce, 2, NULL, global, NULL,
						   0, NULL, &ev[2]);
		else
			e = CL_INVALID_KERNEL_ARGS;
	}
	for (int i = 0; i < 3; i++) {
		cl_int w = gemm_wait(eng->dev, &ev[i], kernel_ns);
		if (e == CL_SUCCESS)
			e = w;
	}
	return e;
}

/* The device's rate for chunking, in GFLOPS: the tuner's best figure, else a low guess
 * per device type (a low guess only makes more, shorter chunks). */
static double gemm_rate_gflops(const struct rxd_gemm_engine *eng)
{
	double best = 0;

	for (int cls = 0; cls < RXD_GEMM_CLASSES; cls++)
		if (eng->tuned_gflops[0][0][cls] > best)
			best = eng->tuned_gflops[0][0][cls];
	if (best > 0)
		return best;
	if (strcmp(eng->dev->desc->type, "CPU") == 0)
		return 20.0;
	/* 64 FLOPs a cycle per compute unit (queried): a quarter of an NVIDIA SM's peak (128
	 * FP32 lanes), half of a GCN CU's (64 lanes). A low guess only makes more, shorter
	 * chunks; a tuned engine uses what it measured. */
	best = (double)eng->dev->desc->compute_units * (double)eng->dev->desc->clock_mhz * 1e-3 *
	       64.0;
	return best > 100.0 ? best : 100.0;
}

/* g in chunks of about RXD_GEMM_CHUNK_MS each: ranges of the batch, or of C's columns in
 * whole tiles; the next chunk is queued before the last one is waited for, so the device
 * never idles between them. */
static int gemm_chunked_run(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
			    cl_mem a, cl_mem b, cl_mem c, const struct gemm_part *base,
			    uint64_t *kernel_ns, cl_event *tail, cl_int *cl_err)
{
	const struct rxd_gemm_variant *v = &eng->variants[variant];
	double chunk_flops = gemm_rate_gflops(eng) * 1e9 * RXD_GEMM_CHUNK_MS / 1e3;
	int64_t batches = g->batch_count > 1 ? g->batch_count : 1;
	double per_batch = (double)g->flops / (double)batches;
	int64_t step, total;
	cl_event prev = NULL, cur = NULL;
	struct rxd_gemm part = *g;
	bool by_batch = batches > 1;
	int64_t kc = v->cfg.kernel == RXD_GEMM_VEC && v->cfg.tsk ? v->cfg.tsk : g->k;
	cl_int e = CL_SUCCESS;

	if (by_batch) {
		step = (int64_t)(chunk_flops / (per_batch > 1 ? per_batch : 1));
		total = batches;
	} else {
		int64_t tiles_n = (g->n + v->cfg.tsn - 1) / v->cfg.tsn;
		step = (int64_t)((double)tiles_n * chunk_flops / (double)(g->flops ? g->flops : 1));
		step *= v->cfg.tsn;
		total = g->n;
	}
	if (step < (by_batch ? 1 : v->cfg.tsn))
		step = by_batch ? 1 : v->cfg.tsn;
	for (int64_t at = 0; at < total; at += step) {
		int64_t len = total - at < step ? total - at : step;
		struct gemm_part p = *base;

		if (by_batch) {
			part.batch_count = len;
			p.off_a += (cl_ulong)(at * g->stride_a);
			p.off_b += (cl_ulong)(at * g->stride_b);
			p.off_c += (cl_ulong)(at * g->stride_c);
		} else {
			part.n = len;
			p.off_b += (cl_ulong)(g->trans_b ? at : at * g->ldb);
			p.off_c += (cl_ulong)(at * g->ldc);
		}
		/* K in launches of kc (the vector kernel's chunk), later ones adding to C. */
		for (int64_t k0 = 0; k0 < g->k; k0 += kc) {
			struct rxd_gemm piece = part;
			struct gemm_part q = p;

			piece.k = g->k - k0 < kc ? g->k - k0 : kc;
			if (k0)
				piece.beta = 1.0f;
			q.off_a += (cl_ulong)(g->trans_a ? k0 : k0 * g->lda);
			q.off_b += (cl_ulong)(g->trans_b ? k0 * g->ldb : k0);
			if ((e = gemm_enqueue_part(eng, variant, &piece, a, b, c, &q, &cur)) !=
			    CL_SUCCESS)
				break;
			clFlush(eng->dev->queue);
			if ((e = gemm_wait(eng->dev, &prev, kernel_ns)) != CL_SUCCESS)
				break;
			prev = cur;
			cur = NULL;
		}
		if (e != CL_SUCCESS)
			break;
		if (g->cancel && atomic_load(g->cancel) && at + len < total) {
			gemm_wait(eng->dev, &prev, kernel_ns);
			return RXD_S_CANCELLED;
		}
	}
	if (cur)
		gemm_wait(eng->dev, &cur, kernel_ns);
	if (prev && tail && e == CL_SUCCESS) {
		*tail = prev; /* the caller waits for it (gemm_compute_tail) */
	} else if (prev) {
		cl_int w = gemm_wait(eng->dev, &prev, kernel_ns);
		if (e == CL_SUCCESS)
			e = w;
	}
	*cl_err = e;
	return e == CL_SUCCESS ? RXD_S_OK : -1;
}

/* n (1 to 3) buffers of bytes[i]: the first two of three read-only (A, B), the rest
 * read-write; mem[n..2] are left NULL. See gemm_buffers_get. */
static int gemm_buffers_take(struct rxd_gemm_engine *eng, struct rxd_budget_res *res, int n,
			     const uint64_t bytes[], cl_mem mem[3], cl_int *cl_err)
{
	uint64_t total = 0;
	int ret = 0;

	*cl_err = CL_SUCCESS;
	mem[0] = mem[1] = mem[2] = NULL;
	memset(res, 0, sizeof(*res));
	if (!eng->budget) {
		for (int i = 0; i < n; i++) {
			cl_mem_flags flags = n == 3 && i < 2 ? CL_MEM_READ_ONLY : CL_MEM_READ_WRITE;

			mem[i] = clCreateBuffer(eng->dev->ctx, flags, bytes[i], NULL, cl_err);
			if (!mem[i]) {
				device_mem_release(mem[0], mem[1], mem[2]);
				mem[0] = mem[1] = mem[2] = NULL;
				return -ENOMEM;
			}
		}
		return 0;
	}
	for (int i = 0; i < n; i++)
		total += budget_round(bytes[i]);
	/* The daemon's own work (owner 0: self-tests, the tuner; jobs are admitted by
	 * admit.c) goes without when the room is taken. */
	if ((ret = budget_reserve(eng->budget, res, 0, total)) < 0)
		return ret;
	for (int i = 0; i < n; i++) {
		void *m = NULL;
		int e = 0;

		if ((ret = budget_buf_get(eng->budget, res, bytes[i], &m, &e)) < 0) {
			*cl_err = e;
			budget_release(eng->budget, res);
			mem[0] = mem[1] = mem[2] = NULL;
			return ret;
		}
		mem[i] = m;
	}
	return 0;
}

int gemm_compute(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		 cl_mem a, cl_mem b, cl_mem c, uint64_t *kernel_ns, struct rxd_error *err)
{
	return gemm_compute_at(eng, variant, g, a, 0, b, 0, c, 0, kernel_ns, err);
}

static int gemm_compute_any(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
			    cl_mem a, int64_t a_off, cl_mem b, int64_t b_off, cl_mem c,
			    int64_t c_off, uint64_t *kernel_ns, cl_event *tail,
			    struct rxd_error *err);

int gemm_compute_at(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		    cl_mem a, int64_t a_off, cl_mem b, int64_t b_off, cl_mem c, int64_t c_off,
		    uint64_t *kernel_ns, struct rxd_error *err)
{
	return gemm_compute_any(eng, variant, g, a, a_off, b, b_off, c, c_off, kernel_ns, NULL,
				err);
}

int gemm_compute_tail(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		      cl_mem a, cl_mem b, cl_mem c, uint64_t *kernel_ns, cl_event *tail,
		      struct rxd_error *err)
{
	*tail = NULL;
	return gemm_compute_any(eng, variant, g, a, 0, b, 0, c, 0, kernel_ns, tail, err);
}

/* gemm_compute_at, or gemm_compute_tail when tail is not NULL. */
static int gemm_compute_any(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
			    cl_mem a, int64_t a_off, cl_mem b, int64_t b_off, cl_mem c,
			    int64_t c_off, uint64_t *kernel_ns, cl_event *tail,
			    struct rxd_error *err)
{
	const struct gemm_part base = { (cl_ulong)a_off, (cl_ulong)b_off, (cl_ulong)c_off };
	int s = gemm_splitk_slices(eng, variant, g);
	cl_int e = CL_SUCCESS;
	int st;

	*kernel_ns = 0;
	if (g->cancel && atomic_load(g->cancel))
		return error_set(err, RXD_S_CANCELLED,
				 "cancelled before it ran");
	if (a_off < 0 || b_off < 0 || c_off < 0)
		return error_set(err, RXD_S_INTERNAL,
				 "negative buffer offsets");
	if ((a_off || b_off || c_off) && (st = gemm_prepare_at(eng, variant)) < 0)
		return st == -EAGAIN
			       ? error_set(err, RXD_S_NO_MEMORY,
					   "no room in the device-memory budget to self-test kernel "
					   "%s at buffer offsets (device tensors may hold it); try "
					   "again",
					   eng->variants[variant].name)
			       : error_set(err, RXD_S_INTERNAL,
					   "kernel %s failed its self-test at buffer offsets",
					   eng->variants[variant].name);
	if (s > 1 && g->admitted) {
		/* A job's workspace was admitted with it (admit.c); without one it runs
		 * without split-K. */
		if (g->splitk_ws && gemm_splitk_bytes(g, s) <= g->splitk_ws_bytes) {
			e = gemm_splitk_run(eng, variant, g, a, b, c, &base, g->splitk_ws, s,
					    kernel_ns);
			goto out;
		}
	} else if (s > 1) {
		const uint64_t ws_bytes[1] = { gemm_splitk_bytes(g, s) };
		struct rxd_budget_res res;
		cl_mem ws[3];

		/* The daemon's own work: the workspace comes from the budget like every
		 * buffer, for owner 0; without the room now it runs without split-K. */
		if (ws_bytes[0] <= eng->dev->max_alloc_bytes &&
		    gemm_buffers_take(eng, &res, 1, ws_bytes, ws, &e) == 0) {
			e = gemm_splitk_run(eng, variant, g, a, b, c, &base, ws[0], s, kernel_ns);
			gemm_buffers_put(eng, &res, ws);
			goto out;
		}
		e = CL_SUCCESS;
	}
	st = gemm_chunked_run(eng, variant, g, a, b, c, &base, kernel_ns, tail, &e);
	if (st == RXD_S_CANCELLED)
		return error_set(err, st, "cancelled while it ran");
out:
	if (e != CL_SUCCESS)
		return error_set(err, gemm_cl_status(e), "the GEMM kernel failed on the "
				 "device: %s", device_strerror(e));
	return RXD_S_OK;
}

int gemm_buffers_get(struct rxd_gemm_engine *eng, struct rxd_budget_res *res,
		     const uint64_t bytes[3], cl_mem mem[3], cl_int *cl_err)
{
	return gemm_buffers_take(eng, res, 3, bytes, mem, cl_err);
}

void gemm_buffers_put(struct rxd_gemm_engine *eng, struct rxd_budget_res *res, cl_mem mem[3])
{
	if (eng->budget)
		budget_release(eng->budget, res); /* the buffers go back to the pool */
	else
		device_mem_release(mem[0], mem[1], mem[2]);
	mem[0] = mem[1] = mem[2] = NULL;
}

int gemm_run_variant(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		     float *c_out, struct rxd_job_timings *t, struct rxd_error *err)
{
	const uint64_t bytes[3] = { g->a_elems * sizeof(float), g->b_elems * sizeof(float),
				    g->c_elems * sizeof(float) };
	struct rxd_budget_res res;
	cl_mem mem[3];
	cl_int e;
	int ret, st;

	memset(t, 0, sizeof(*t));
	ret = gemm_buffers_get(eng, &res, bytes, mem, &e);
	if (ret == -E2BIG)
		return error_set(err, RXD_S_TOO_BIG,
				 "%.1f MiB of device buffers do not fit the budget of %.1f MiB",
				 (double)(bytes[0] + bytes[1] + bytes[2]) / 1048576.0,
				 (double)budget_limit(eng->budget) / 1048576.0);
	if (ret < 0)
		return error_set(err, e != CL_SUCCESS ? gemm_cl_status(e)
							     : RXD_S_NO_MEMORY,
				 "device buffers could not be made: %s",
				 e != CL_SUCCESS ? device_strerror(e) : strerror(-ret));
	st = gemm_run_buffers(eng, variant, g, mem[0], mem[1], mem[2], c_out, t, err);
	gemm_buffers_put(eng, &res, mem);
	return st;
}

/* Pipelining: on a device with a copy queue beside the compute queue, a job's transfers
 * overlap its kernels. K is cut into chunks; chunk z's columns of op(A) and rows of op(B)
 * go up on the copy queue while the kernel of chunk z - 1 runs (C accumulates: beta 1
 * after the first chunk), and C comes down once the last has run. The wall time then
 * nears max(upload, kernels) + the first chunk's upload + C's download instead of their
 * sum (4096^3 from pinned regions on the H200: 2.4 ms up, 2.9 kernel, 1.2 down, one after
 * the other). Cutting K keeps every chunk's kernel on the whole C, so a C of less than one
 * wave of tiles loses nothing to the cut, which cutting C's columns would. Not for
 * batches or split-K, nor below GEMM_PIPE_MIN_BYTES of operands, where the extra launches
 * and the strided copies cost more than they hide. On the H200, with the waits that poll
 * and busy polling: 1024^3 from shared memory (8 MiB, two chunks) spends 0.413 and 0.425
 * ms in the daemon pipelined against 0.436 and 0.459 one after the other (two calls);
 * four or eight chunks of K there cost 0.49 and 0.67 ms, as every command on the copy
 * engine adds 5 to 15 us. */
#define GEMM_PIPE_MIN_BYTES (8u << 20)
#define GEMM_PIPE_K_PER_CHUNK 512
#define GEMM_PIPE_MAX_CHUNKS 8

/* The K chunks g would run in (1: not pipelined), each a multiple of the variant's K step
 * but the last. */
static int64_t gemm_pipe_chunk_k(const struct rxd_gemm_engine *eng, int variant,
				 const struct rxd_gemm *g)
{
	const struct rxd_gemm_variant *v = &eng->variants[variant];
	bool always = eng->dev->pipeline == RXD_PIPELINE_ALWAYS;
	int64_t s = g->k / (always ? v->cfg.tsk : GEMM_PIPE_K_PER_CHUNK), kc;

	/* Chunks of rows are copied as rectangles, which need columns that do not overlap
	 * (requests always have them; one self-test does not). */
	if (!eng->dev->copy_queue || g->batch_count > 1 ||
	    g->lda < (g->trans_a ? g->k : g->m) || g->ldb < (g->trans_b ? g->n : g->k) ||
	    (!always && (g->a_elems + g->b_elems) * sizeof(float) < GEMM_PIPE_MIN_BYTES) ||
	    gemm_splitk_slices(eng, variant, g) > 1)
		return g->k;
	/* The vector kernel takes at most its K chunk per launch (gemm_chunked_run). */
	if (v->cfg.kernel == RXD_GEMM_VEC && v->cfg.tsk) {
		s = (g->k + v->cfg.tsk - 1) / v->cfg.tsk;
		return s >= 2 && s <= GEMM_PIPE_MAX_CHUNKS ? v->cfg.tsk : g->k;
	}
	if (s > GEMM_PIPE_MAX_CHUNKS)
		s = GEMM_PIPE_MAX_CHUNKS;
	if (s < 2)
		return g->k;
	kc = (g->k + s - 1) / s;
	kc = (kc + v->cfg.tsk - 1) / v->cfg.tsk * v->cfg.tsk;
	return kc < g->k ? kc : g->k;
}

/* Enqueue on q the upload of rows [r0, r1) of columns [c0, c1) of a stored column-major
 * matrix of cols columns (leading dimension ld floats), host to mem at the same place. The
 * matrix's last column, when it is one of them, goes first, alone, and the others as a
 * rectangle: some implementations (PoCL) check a rectangle's bounds as if its last row ran
 * a whole pitch, which the last column of a minimal buffer does not have. q is in order,
 * so *ev, the last command's, is complete only once both are. */
static cl_int gemm_pipe_rows(cl_command_queue q, cl_mem mem, const float *host, int64_t ld,
			     int64_t r0, int64_t r1, int64_t c0, int64_t c1, int64_t cols,
			     cl_event *ev)
{
	const size_t origin[3] = { (size_t)r0 * sizeof(float), (size_t)c0, 0 };
	int64_t rect_c1 = c1 == cols ? c1 - 1 : c1;
	const size_t region[3] = { (size_t)(r1 - r0) * sizeof(float), (size_t)(rect_c1 - c0), 1 };
	size_t pitch = (size_t)ld * sizeof(float), last = (size_t)((c1 - 1) * ld + r0);
	cl_int e;

	if (rect_c1 < c1) {
		e = clEnqueueWriteBuffer(q, mem, CL_FALSE, last * sizeof(float), region[0],
					 host + last, 0, NULL, rect_c1 > c0 ? NULL : ev);
		if (e != CL_SUCCESS || rect_c1 == c0)
			return e;
	}
	return clEnqueueWriteBufferRect(q, mem, CL_FALSE, origin, origin, region, pitch, 0, pitch,
					0, host, 0, NULL, ev);
}

/* Columns [c0, c1) of ncols of a stored matrix (leading dimension ld, elems floats in
 * all): one contiguous run. */
static cl_int gemm_pipe_cols(cl_command_queue q, cl_mem mem, const float *host, int64_t ld,
			     int64_t c0, int64_t c1, int64_t ncols, size_t elems, cl_event *ev)
{
	size_t from = (size_t)(c0 * ld), to = c1 == ncols ? elems : (size_t)(c1 * ld);

	if (to > elems)
		to = elems;
	return clEnqueueWriteBuffer(q, mem, CL_FALSE, from * sizeof(float),
				    (to - from) * sizeof(float), host + from, 0, NULL, ev);
}

/* Enqueue on q chunk [k0, k1) of K of g's a (op 0) or b (op 1) into mem; of b, only the
 * part for C's columns [n0, n1). */
static cl_int gemm_pipe_upload(cl_command_queue q, const struct rxd_gemm *g, int op, cl_mem mem,
			       int64_t k0, int64_t k1, int64_t n0, int64_t n1, cl_event *ev)
{
	if (op == 0)
		return g->trans_a ? gemm_pipe_rows(q, mem, g->a, g->lda, k0, k1, 0, g->m, g->m, ev)
				  : gemm_pipe_cols(q, mem, g->a, g->lda, k0, k1, g->k, g->a_elems, ev);
	if (g->trans_b) /* B stored n x k: C's columns are its rows */
		return n0 == 0 && n1 == g->n
			       ? gemm_pipe_cols(q, mem, g->b, g->ldb, k0, k1, g->k, g->b_elems, ev)
			       : gemm_pipe_rows(q, mem, g->b, g->ldb, n0, n1, k0, k1, g->k, ev);
	return gemm_pipe_rows(q, mem, g->b, g->ldb, k0, k1, n0, n1, g->n, ev);
}

/* Where the last K chunk is cut in two halves of C's columns (whole tiles), or 0: not cut.
 * Each half has its own piece of B, kernel and download, so that the left half's download
 * runs while the right half's kernel does, instead of all of C after the last kernel. At
 * 1024^3 on the H200, C's 4 MiB take 80 us to come down against 35 us for the last chunk's
 * kernel. */
static int64_t gemm_pipe_split_n(const struct rxd_gemm_variant *v, const struct rxd_gemm *g,
				 int64_t chunks)
{
	int64_t tsn = v->cfg.tsn > 0 ? v->cfg.tsn : 1, tiles = (g->n + tsn - 1) / tsn;

	return chunks >= 2 && tiles >= 2 ? tiles / 2 * tsn : 0;
}

/* At debug level, when each command of a pipelined job ran (us from the first upload's
 * start): whether the copies really overlapped the kernels on this driver; and where the
 * host's time went: enqueueing (host[0] to [1], B's ready word included), waiting (to
 * [2]), then reading the events' times (to [3]). */
static void gemm_pipe_log(int64_t chunks, cl_event *up_a, cl_event *up_b, cl_event *kern,
			  cl_event down, const cl_event right[3], const uint64_t host[4])
{
	uint64_t t0 = 0, s, e;
	char line[1024];
	size_t at = 0;

	clGetEventProfilingInfo(up_a[0], CL_PROFILING_COMMAND_START, sizeof(t0), &t0, NULL);
	for (int64_t z = 0; z <= chunks && at < sizeof(line) - 64; z++) {
		cl_event evs[3] = { z < chunks ? up_a[z] : down, z < chunks ? up_b[z] : NULL,
				    z < chunks ? kern[z] : NULL };

		for (int i = 0; i < 3; i++) {
			if (!device_event_span(evs[i], &s, &e))
				continue;
			at += (size_t)snprintf(line + at, sizeof(line) - at, " %c%lld:%.0f-%.0f",
					       z == chunks ? 'C' : "abk"[i], (long long)z,
					       (double)(s - t0) / 1e3, (double)(e - t0) / 1e3);
		}
	}
	/* The right half of C's columns of the last chunk: b', k' and C' */
	for (int i = 0; i < 3 && at < sizeof(line) - 64; i++)
		if (device_event_span(right[i], &s, &e))
			at += (size_t)snprintf(line + at, sizeof(line) - at, " %c':%.0f-%.0f",
					       "bkC"[i], (double)(s - t0) / 1e3,
					       (double)(e - t0) / 1e3);
	log_msg(LOG_DEBUG, "pipeline timeline (us): enqueued in %.0f, waited %.0f, timings read "
		"in %.0f; device:%s", (double)(host[1] - host[0]) / 1e3,
		(double)(host[2] - host[1]) / 1e3, (double)(host[3] - host[2]) / 1e3, line);
}

static int gemm_pipelined_run(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
			      int64_t kc, cl_mem a, cl_mem b, cl_mem c, const float *c_init,
			      float *c_out, struct rxd_job_timings *t, struct rxd_error *err)
{
	struct rxd_device *dev = eng->dev;
	int64_t chunks = (g->k + kc - 1) / kc;
	cl_event up_a[GEMM_PIPE_MAX_CHUNKS + 1] = { NULL }, up_b[GEMM_PIPE_MAX_CHUNKS + 1] = { NULL };
	cl_event kern[GEMM_PIPE_MAX_CHUNKS + 1] = { NULL }, up_c = NULL, down = NULL;
	/* The right half of C's columns in the last chunk (gemm_pipe_split_n) */
	cl_event up_b2 = NULL, kern2 = NULL, down2 = NULL;
	int64_t nh = gemm_pipe_split_n(&eng->variants[variant], g, chunks);
	cl_int e = CL_SUCCESS;
	int st = RXD_S_OK;
	const char *what = "the upload of C";
	bool throttle, late_b;
	uint64_t host[4] = { 0, 0, 0, 0 };
	int64_t z;

	if (chunks > GEMM_PIPE_MAX_CHUNKS + 1)
		return error_set(err, RXD_S_INTERNAL, "too many chunks");
	if (g->cancel && atomic_load(g->cancel))
		return error_set(err, RXD_S_CANCELLED,
				 "cancelled before it ran");
	throttle = (double)g->flops / (gemm_rate_gflops(eng) * 1e6) > RXD_GEMM_CHUNK_MS;
	log_msg(LOG_DEBUG, "gemm %lldx%lldx%lld pipelined in %lld K chunks of %lld",
		(long long)g->m, (long long)g->n, (long long)g->k, (long long)chunks,
		(long long)kc);
	if ((st = gemm_ready_wait(g, 0, err)) != RXD_S_OK)
		return st;
	host[0] = host[1] = now_ns();
	if (c_init)
		e = clEnqueueWriteBuffer(dev->copy_queue, c, CL_FALSE, 0, g->c_elems * sizeof(float),
					 c_init, 0, NULL, &up_c);
	/* Every upload goes in at once: the copy engine runs them back to back while the
	 * kernels follow, each waiting for its own chunk. While B is still being written
	 * (its ready word), all of A goes first. */
	late_b = !gemm_ready_seen(&g->ready[1]);
	for (int pass = 0; pass < (late_b ? 2 : 1) && e == CL_SUCCESS && st == RXD_S_OK; pass++) {
		if (pass) {
			e = clFlush(dev->copy_queue);
			if (e == CL_SUCCESS)
				st = gemm_ready_wait(g, 1, err);
		}
		for (z = 0; z < chunks && e == CL_SUCCESS && st == RXD_S_OK; z++) {
			int64_t k0 = z * kc, k1 = k0 + kc < g->k ? k0 + kc : g->k;
			/* B's part of the last chunk in C's two halves, when it is cut */
			int64_t n1 = z == chunks - 1 && nh ? nh : g->n;

			for (int op = 0; op < 2 && e == CL_SUCCESS; op++) {
				if (late_b && op != pass)
					continue;
				what = op ? "an upload of B" : "an upload of A";
				e = gemm_pipe_upload(dev->copy_queue, g, op, op ? b : a, k0, k1, 0,
						     n1, op ? &up_b[z] : &up_a[z]);
				if (e == CL_SUCCESS && op && n1 < g->n)
					e = gemm_pipe_upload(dev->copy_queue, g, op, b, k0, k1, n1,
							     g->n, &up_b2);
			}
		}
	}
	if (e == CL_SUCCESS && st == RXD_S_OK)
		e = clFlush(dev->copy_queue);
	for (z = 0; z < chunks && e == CL_SUCCESS && st == RXD_S_OK; z++) {
		int64_t k0 = z * kc;
		struct rxd_gemm piece = *g;
		struct gemm_part p = { 0, 0, 0 };
		cl_event wait[3];
		cl_uint n = 0;

		/* A long job keeps at most two kernels in flight, so that a cancel stops it
		 * within one chunk while the device never waits for the host. A short one
		 * (under a chunk's RXD_GEMM_CHUNK_MS) is queued whole: waiting on an event
		 * costs NVIDIA's driver up to 2 ms before it returns, which left the device idle
		 * between chunks (4096^3 on the H200: 1.5 ms of 6.3). */
		if (z >= 2 && throttle) {
			e = device_wait(dev, kern[z - 2]);
			if (e != CL_SUCCESS)
				break;
			if (g->cancel && atomic_load(g->cancel)) {
				st = error_set(err, RXD_S_CANCELLED,
					       "cancelled while it ran");
				break;
			}
		}
		piece.k = k0 + kc < g->k ? kc : g->k - k0;
		if (z)
			piece.beta = 1.0f;
		p.off_a = (cl_ulong)(g->trans_a ? k0 : k0 * g->lda);
		p.off_b = (cl_ulong)(g->trans_b ? k0 * g->ldb : k0);
		wait[n++] = up_a[z];
		wait[n++] = up_b[z];
		if (z == 0 && up_c)
			wait[n++] = up_c;
		what = "a kernel";
		if (z == chunks - 1 && nh) {
			/* C's left columns, then its right ones after their part of B. */
			struct rxd_gemm right = piece;
			struct gemm_part q = p;

			piece.n = nh;
			right.n = g->n - nh;
			q.off_b += (cl_ulong)(g->trans_b ? nh : nh * g->ldb);
			q.off_c += (cl_ulong)(nh * g->ldc);
			e = gemm_enqueue_part_after(eng, variant, &piece, a, b, c, &p, n, wait,
						    &kern[z]);
			wait[1] = up_b2;
			if (e == CL_SUCCESS)
				e = gemm_enqueue_part_after(eng, variant, &right, a, b, c, &q, n, wait,
							    &kern2);
		} else {
			e = gemm_enqueue_part_after(eng, variant, &piece, a, b, c, &p, n, wait,
						    &kern[z]);
		}
		if (e == CL_SUCCESS)
			e = clFlush(dev->queue);
	}
	if (e == CL_SUCCESS && st == RXD_S_OK) {
		/* C's columns [0, nh) are its first nh * ldc floats. */
		size_t left = nh ? (size_t)(nh * g->ldc) : g->c_elems;

		what = "the download of C";
		e = clEnqueueReadBuffer(dev->copy_queue, c, CL_FALSE, 0, left * sizeof(float), c_out,
					1, &kern[chunks - 1], &down);
		if (e == CL_SUCCESS && nh)
			e = clEnqueueReadBuffer(dev->copy_queue, c, CL_FALSE, left * sizeof(float),
						(g->c_elems - left) * sizeof(float), c_out + left,
						1, &kern2, &down2);
		if (e == CL_SUCCESS)
			e = clFlush(dev->copy_queue);
		host[1] = now_ns();
		/* The copy queue is in order: the last download's end is the job's. */
		if (e == CL_SUCCESS)
			e = device_wait(dev, nh ? down2 : down);
	}
	host[2] = now_ns();
	/* Nothing may still use the buffers (or the host's memory) when this returns. Once
	 * the download is complete nothing does: it came after every upload on the in-order
	 * copy queue and after the last kernel, which came after the others on theirs. */
	if (e != CL_SUCCESS || st != RXD_S_OK) {
		clFinish(dev->queue);
		clFinish(dev->copy_queue);
	}
	if (e != CL_SUCCESS)
		st = error_set(err, gemm_cl_status(e), "%s of a pipelined GEMM failed on "
			       "the device: %s", what, device_strerror(e));
	if (st == RXD_S_OK && dev->profiling) {
		t->h2d_ns = device_event_ns(up_c) + device_event_ns(up_b2);
		for (z = 0; z < chunks; z++) {
			t->h2d_ns += device_event_ns(up_a[z]) + device_event_ns(up_b[z]);
			t->kernel_ns += device_event_ns(kern[z]);
		}
		t->kernel_ns += device_event_ns(kern2);
		t->d2h_ns = device_event_ns(down) + device_event_ns(down2);
	}
	host[3] = now_ns();
	if (st == RXD_S_OK && dev->profiling && log_get_level() >= LOG_DEBUG) {
		cl_event right[3] = { up_b2, kern2, down2 };

		gemm_pipe_log(chunks, up_a, up_b, kern, down, right, host);
	}
	for (z = 0; z < chunks; z++) {
		if (up_a[z])
			clReleaseEvent(up_a[z]);
		if (up_b[z])
			clReleaseEvent(up_b[z]);
		if (kern[z])
			clReleaseEvent(kern[z]);
	}
	{
		cl_event rest[] = { up_c, down, up_b2, kern2, down2 };

		for (size_t i = 0; i < sizeof(rest) / sizeof(rest[0]); i++)
			if (rest[i])
				clReleaseEvent(rest[i]);
	}
	return st;
}

/* At debug level, where a GEMM's time went: on the host, enqueueing (host[0] to [1]) and
 * waiting (to [2]); on the device, each of A, B, C up, the kernel's tail and C down (us
 * from A's start): the gaps between them are the driver's. */
static void gemm_run_log(cl_event ev[5], const uint64_t host[3])
{
	uint64_t t0 = 0, s, e;
	char line[512];
	size_t at = 0;

	clGetEventProfilingInfo(ev[0], CL_PROFILING_COMMAND_START, sizeof(t0), &t0, NULL);
	for (int i = 0; i < 5; i++) {
		if (!device_event_span(ev[i], &s, &e))
			continue;
		at += (size_t)snprintf(line + at, sizeof(line) - at, " %s %.0f-%.0f",
				       (const char *[]){ "A", "B", "C", "kernel", "down" }[i],
				       (double)(s - t0) / 1e3, (double)(e - t0) / 1e3);
	}
	log_msg(LOG_DEBUG, "gemm timeline (us): enqueued in %.0f, waited %.0f; device:%s",
		(double)(host[1] - host[0]) / 1e3, (double)(host[2] - host[1]) / 1e3, line);
}

int gemm_run_buffers(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		     cl_mem a, cl_mem b, cl_mem c, float *c_out, struct rxd_job_timings *t,
		     struct rxd_error *err)
{
	struct rxd_device *dev = eng->dev;
	cl_event ev[5] = { NULL };
	float *zeros = NULL;
	const float *c_init = g->c;
	cl_int e = CL_SUCCESS;
	const char *what = "";
	int st = RXD_S_OK;
	uint64_t kernel_ns = 0, host[3];
	int64_t kc;

	memset(t, 0, sizeof(*t));
	/* C goes up when beta reads it, or when the reply must carry zeros in its padding
	 * rather than whatever the device memory held. */
	if (!c_init && g->c_elems != (size_t)(g->m * g->n * (g->batch_count > 1 ? g->batch_count : 1))) {
		zeros = calloc(g->c_elems, sizeof(float));
		if (!zeros)
			return error_set(err, RXD_S_NO_MEMORY,
					 "out of host memory for C's padding");
		c_init = zeros;
	}
	kc = gemm_pipe_chunk_k(eng, variant, g);
	if (kc < g->k) {
		st = gemm_pipelined_run(eng, variant, g, kc, a, b, c, c_init, c_out, t, err);
		free(zeros);
		return st;
	}
#define CL_TRY(call, name)                                                                    \
	do {                                                                                  \
		what = name;                                                                  \
		if ((e = (call)) != CL_SUCCESS)                                               \
			goto out;                                                             \
	} while (0)
	if ((st = gemm_ready_wait(g, 0, err)) != RXD_S_OK)
		goto out;
	host[0] = now_ns();
	CL_TRY(clEnqueueWriteBuffer(dev->queue, a, CL_FALSE, 0, g->a_elems * sizeof(float), g->a,
				    0, NULL, &ev[0]),
	       "clEnqueueWriteBuffer(A)");
	/* B still being written: A goes up meanwhile. */
	if (!gemm_ready_seen(&g->ready[1])) {
		CL_TRY(clFlush(dev->queue), "clFlush");
		if ((st = gemm_ready_wait(g, 1, err)) != RXD_S_OK) {
			clFinish(dev->queue);
			goto out;
		}
	}
	CL_TRY(clEnqueueWriteBuffer(dev->queue, b, CL_FALSE, 0, g->b_elems * sizeof(float), g->b,
				    0, NULL, &ev[1]),
	       "clEnqueueWriteBuffer(B)");
	if (c_init)
		CL_TRY(clEnqueueWriteBuffer(dev->queue, c, CL_FALSE, 0, g->c_elems * sizeof(float),
					    c_init, 0, NULL, &ev[2]),
		       "clEnqueueWriteBuffer(C)");
	/* The kernel's tail is not waited for: C's download is queued behind it at once, and
	 * the one wait is for the download (the queue is in order, so that covers all). */
	if ((st = gemm_compute_tail(eng, variant, g, a, b, c, &kernel_ns, &ev[3], err)) !=
	    RXD_S_OK) {
		clFinish(dev->queue);
		goto out;
	}
	CL_TRY(clEnqueueReadBuffer(dev->queue, c, CL_FALSE, 0, g->c_elems * sizeof(float), c_out,
				   0, NULL, &ev[4]),
	       "clEnqueueReadBuffer(C)");
	CL_TRY(clFlush(dev->queue), "clFlush");
	host[1] = now_ns();
	CL_TRY(device_wait(dev, ev[4]), "waiting for C");
	host[2] = now_ns();
#undef CL_TRY
	if (dev->profiling && log_get_level() >= LOG_DEBUG)
		gemm_run_log(ev, host);
	if (ev[3])
		kernel_ns += device_event_ns(ev[3]);
	if (dev->profiling) {
		t->h2d_ns = device_event_ns(ev[0]) + device_event_ns(ev[1]) + device_event_ns(ev[2]);
		t->kernel_ns = kernel_ns;
		t->d2h_ns = device_event_ns(ev[4]);
	}
out:
	if (e != CL_SUCCESS) {
		st = error_set(err, gemm_cl_status(e), "%s failed on the device: %s", what,
			       device_strerror(e));
		clFinish(dev->queue); /* nothing may still use the buffers we release */
	}
	for (int i = 0; i < 5; i++)
		if (ev[i])
			clReleaseEvent(ev[i]);
	free(zeros);
	return st;
}

int gemm_run(struct rxd_gemm_engine *eng, const struct rxd_gemm *g, float *c_out,
	     struct rxd_job_timings *t, const char **kernel, struct rxd_error *err)
{
	int v = gemm_choose(eng, g);

	*kernel = eng->variants[v].name;
	return gemm_run_variant(eng, v, g, c_out, t, err);
}

cl_int gemm_enqueue_at(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		       cl_mem a, int64_t a_off, cl_mem b, int64_t b_off, cl_mem c, int64_t c_off,
		       cl_event *ev)
{
	struct gemm_part p = { (cl_ulong)a_off, (cl_ulong)b_off, (cl_ulong)c_off };

	if (a_off < 0 || b_off < 0 || c_off < 0)
		return CL_INVALID_VALUE;
	if (!eng->variants[variant].at_tested && gemm_prepare_at(eng, variant) < 0)
		return CL_BUILD_PROGRAM_FAILURE;
	return gemm_enqueue_part(eng, variant, g, a, b, c, &p, ev);
}

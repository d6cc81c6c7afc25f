/* gemm.c: GEMM requests from validation to the device and back.
 *
 * gemm_validate runs on the loop thread and trusts nothing in the request: every size is
 * checked for overflow before it is used, and every buffer length against the shape.
 * gemm_init builds the kernels at start-up (and checks each on the device against the CPU
 * reference before it may serve a job); gemm_run runs on the device worker thread. Kernel
 * choice lives in gemm_variant_for alone, so that faster kernels and tuning can replace it. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refgemm.h"
#include "rxgemmd.h"

/* One built kernel: a (trans_a, trans_b) pair at one tile configuration. */
struct rxd_gemm_variant {
	bool trans_a, trans_b;
	int tsm, tsn, tsk, wptm, wptn;
	cl_program program;
	cl_kernel kernel;
	char name[64];
};

/* Tile configurations, largest first; the first whose work-group and local memory the
 * device allows, and which builds and passes the self-test, is used. */
static const struct {
	int ts, tsk, wpt;
} gemm_configs[] = {
	{ 64, 16, 4 }, /* 16 x 16 = 256 work-items, 8 KiB local */
	{ 32, 16, 4 }, /* 8 x 8 = 64 work-items, 4 KiB local */
	{ 16, 16, 4 }, /* 4 x 4 = 16 work-items, 2 KiB local */
};

static int gemm_fail(char *err, size_t errlen, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int gemm_fail(char *err, size_t errlen, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return status;
}

/* The stored matrix `name` has `rows` x `cols` logical elements; check its leading
 * dimension and its data, and compute how many floats the device buffer needs. */
static int gemm_check_matrix(const char *name, bool row_major, int64_t rows, int64_t cols,
			     int64_t ld, const ProtobufCBinaryData *data, bool optional,
			     const struct rxd_limits *lim, int64_t *ld_out, size_t *need_out,
			     size_t *given_out, char *err, size_t errlen)
{
	/* inner: the extent along the contiguous index; outer: the other. */
	int64_t inner = row_major ? cols : rows, outer = row_major ? rows : cols;
	uint64_t need, full, bytes, floats;

	if (ld < 0)
		return gemm_fail(err, errlen, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT,
				 "ld%s must not be negative (got %lld)", name, (long long)ld);
	if (ld == 0)
		ld = inner;
	if (ld < inner)
		return gemm_fail(err, errlen, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT,
				 "ld%s (%lld) is smaller than the %s of %c (%lld)", name,
				 (long long)ld, row_major ? "columns" : "rows", toupper((unsigned char)name[0]),
				 (long long)inner);
	if (__builtin_mul_overflow((uint64_t)ld, (uint64_t)(outer - 1), &need) ||
	    __builtin_add_overflow(need, (uint64_t)inner, &need) ||
	    __builtin_mul_overflow((uint64_t)ld, (uint64_t)outer, &full) ||
	    __builtin_mul_overflow(need, (uint64_t)sizeof(float), &bytes))
		return gemm_fail(err, errlen, RXGEMM__STATUS__STATUS_TOO_BIG,
				 "%s: %lld x %lld with ld%s %lld overflows 64 bits", name,
				 (long long)rows, (long long)cols, name, (long long)ld);
	if (bytes > lim->max_buffer_bytes || need > INT_MAX)
		return gemm_fail(err, errlen, RXGEMM__STATUS__STATUS_TOO_BIG,
				 "%s needs %llu bytes on the device, more than its largest buffer "
				 "(%llu bytes)",
				 name, (unsigned long long)bytes,
				 (unsigned long long)(lim->max_buffer_bytes < (uint64_t)INT_MAX * 4
							      ? lim->max_buffer_bytes
							      : (uint64_t)INT_MAX * 4));
	*ld_out = ld;
	*need_out = need;
	*given_out = 0;
	if (data->len == 0 && optional)
		return RXGEMM__STATUS__STATUS_OK;
	if (data->len % sizeof(float))
		return gemm_fail(err, errlen, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT,
				 "%s is %zu bytes, not a whole number of floats", name, data->len);
	floats = data->len / sizeof(float);
	if (floats < need || floats > full)
		return gemm_fail(err, errlen, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT,
				 "%s holds %llu floats but its shape %lld x %lld with ld%s %lld "
				 "needs %llu%s%llu",
				 name, (unsigned long long)floats, (long long)rows, (long long)cols,
				 name, (long long)ld, (unsigned long long)need,
				 need == full ? "" : " to ",
				 need == full ? 0ull : (unsigned long long)full);
	*given_out = floats;
	return RXGEMM__STATUS__STATUS_OK;
}

int gemm_validate(const Rxgemm__GemmRequest *rq, const struct rxd_limits *lim,
		  struct rxd_gemm *g, char *err, size_t errlen)
{
	bool row_major;
	int64_t lda, ldb, ldc;
	size_t a_need, b_need, c_need, a_given, b_given, c_given;
	uint64_t flops, total;
	int st;

	memset(g, 0, sizeof(*g));
	err[0] = '\0';
	if (rq->layout != RXGEMM__LAYOUT__LAYOUT_COL_MAJOR &&
	    rq->layout != RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR)
		return gemm_fail(err, errlen, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT,
				 "layout %d is neither COL_MAJOR (0) nor ROW_MAJOR (1)",
				 (int)rq->layout);
	row_major = rq->layout == RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR;
	if (rq->m < 1 || rq->n < 1 || rq->k < 1) {
		const char *which = rq->m < 1 ? "m" : rq->n < 1 ? "n" : "k";
		long long v = rq->m < 1 ? rq->m : rq->n < 1 ? rq->n : rq->k;
		return gemm_fail(err, errlen, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT,
				 "%s must be at least 1 (got %lld)", which, v);
	}
	if (__builtin_mul_overflow((uint64_t)rq->m, (uint64_t)rq->n, &flops) ||
	    __builtin_mul_overflow(flops, (uint64_t)rq->k, &flops) ||
	    __builtin_mul_overflow(flops, 2u, &flops))
		return gemm_fail(err, errlen, RXGEMM__STATUS__STATUS_TOO_BIG,
				 "m x n x k (%lld x %lld x %lld) overflows 64 bits", (long long)rq->m,
				 (long long)rq->n, (long long)rq->k);
	st = gemm_check_matrix("a", row_major, rq->trans_a ? rq->k : rq->m,
			       rq->trans_a ? rq->m : rq->k, rq->lda, &rq->a, false, lim, &lda,
			       &a_need, &a_given, err, errlen);
	if (st)
		return st;
	st = gemm_check_matrix("b", row_major, rq->trans_b ? rq->n : rq->k,
			       rq->trans_b ? rq->k : rq->n, rq->ldb, &rq->b, false, lim, &ldb,
			       &b_need, &b_given, err, errlen);
	if (st)
		return st;
	st = gemm_check_matrix("c", row_major, rq->m, rq->n, rq->ldc, &rq->c, true, lim, &ldc,
			       &c_need, &c_given, err, errlen);
	if (st)
		return st;
	if (c_given == 0 && rq->beta != 0.0f)
		return gemm_fail(err, errlen, RXGEMM__STATUS__STATUS_INVALID_ARGUMENT,
				 "c is missing but beta is %g, so C is read", (double)rq->beta);
	total = (a_need + b_need + c_need) * sizeof(float); /* each < 2^33: no overflow */
	if (total > lim->max_total_bytes)
		return gemm_fail(err, errlen, RXGEMM__STATUS__STATUS_TOO_BIG,
				 "a, b and c need %llu bytes on the device together, more than "
				 "the %llu it allows a job",
				 (unsigned long long)total, (unsigned long long)lim->max_total_bytes);

	g->user_m = rq->m;
	g->user_n = rq->n;
	g->user_k = rq->k;
	g->k = rq->k;
	g->alpha = rq->alpha;
	g->beta = rq->beta;
	g->flops = flops;
	g->c = c_given ? (const float *)rq->c.data : NULL;
	g->ldc = ldc;
	g->c_elems = c_need;
	g->c_given_elems = c_given;
	if (!row_major) {
		g->m = rq->m, g->n = rq->n;
		g->trans_a = rq->trans_a, g->trans_b = rq->trans_b;
		g->a = (const float *)rq->a.data, g->lda = lda, g->a_elems = a_need;
		g->b = (const float *)rq->b.data, g->ldb = ldb, g->b_elems = b_need;
	} else {
		/* Row-major C is column-major C^T = op(B)^T op(A)^T, and a row-major stored
		 * matrix is its column-major transpose: swap the operands, keep the flags. */
		g->m = rq->n, g->n = rq->m;
		g->trans_a = rq->trans_b, g->trans_b = rq->trans_a;
		g->a = (const float *)rq->b.data, g->lda = ldb, g->a_elems = b_need;
		g->b = (const float *)rq->a.data, g->ldb = lda, g->b_elems = a_need;
	}
	return RXGEMM__STATUS__STATUS_OK;
}

static const struct rxd_gemm_variant *gemm_variant_for(const struct rxd_gemm_engine *eng,
						       const struct rxd_gemm *g)
{
	for (size_t i = 0; i < eng->n_variants; i++)
		if (eng->variants[i].trans_a == g->trans_a && eng->variants[i].trans_b == g->trans_b)
			return &eng->variants[i];
	return NULL;
}

static int gemm_cl_status(cl_int err)
{
	if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
	    err == CL_OUT_OF_HOST_MEMORY)
		return RXGEMM__STATUS__STATUS_NO_MEMORY;
	return RXGEMM__STATUS__STATUS_DEVICE;
}

static int gemm_launch(struct rxd_device *dev, const struct rxd_gemm_variant *v,
		       const struct rxd_gemm *g, float *c_out, struct rxd_job_timings *t,
		       char *err, size_t errlen)
{
	cl_mem a = NULL, b = NULL, c = NULL;
	cl_event ev[5] = { NULL };
	float *zeros = NULL;
	const float *c_init = g->c;
	cl_int e = CL_SUCCESS, m = (cl_int)g->m, n = (cl_int)g->n, k = (cl_int)g->k;
	cl_int lda = (cl_int)g->lda, ldb = (cl_int)g->ldb, ldc = (cl_int)g->ldc;
	size_t local[2], global[2];
	const char *what = "";
	int st = RXGEMM__STATUS__STATUS_OK;

	memset(t, 0, sizeof(*t));
	/* C goes up when beta reads it, or when the reply must carry zeros in its padding
	 * rather than whatever the device memory held. */
	if (!c_init && g->ldc > g->m) {
		zeros = calloc(g->c_elems, sizeof(float));
		if (!zeros)
			return gemm_fail(err, errlen, RXGEMM__STATUS__STATUS_NO_MEMORY,
					 "out of host memory for C's padding");
		c_init = zeros;
	}
#define CL_TRY(call, name)                                                                    \
	do {                                                                                  \
		what = name;                                                                  \
		if ((e = (call)) != CL_SUCCESS)                                               \
			goto out;                                                             \
	} while (0)
	what = "clCreateBuffer";
	a = clCreateBuffer(dev->ctx, CL_MEM_READ_ONLY, g->a_elems * sizeof(float), NULL, &e);
	if (!a)
		goto out;
	b = clCreateBuffer(dev->ctx, CL_MEM_READ_ONLY, g->b_elems * sizeof(float), NULL, &e);
	if (!b)
		goto out;
	c = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE, g->c_elems * sizeof(float), NULL, &e);
	if (!c)
		goto out;
	CL_TRY(clEnqueueWriteBuffer(dev->queue, a, CL_FALSE, 0, g->a_elems * sizeof(float), g->a,
				    0, NULL, &ev[0]),
	       "clEnqueueWriteBuffer(A)");
	CL_TRY(clEnqueueWriteBuffer(dev->queue, b, CL_FALSE, 0, g->b_elems * sizeof(float), g->b,
				    0, NULL, &ev[1]),
	       "clEnqueueWriteBuffer(B)");
	if (c_init)
		CL_TRY(clEnqueueWriteBuffer(dev->queue, c, CL_FALSE, 0, g->c_elems * sizeof(float),
					    c_init, 0, NULL, &ev[2]),
		       "clEnqueueWriteBuffer(C)");
	what = "clSetKernelArg";
	e = clSetKernelArg(v->kernel, 0, sizeof(m), &m);
	e |= clSetKernelArg(v->kernel, 1, sizeof(n), &n);
	e |= clSetKernelArg(v->kernel, 2, sizeof(k), &k);
	e |= clSetKernelArg(v->kernel, 3, sizeof(float), &g->alpha);
	e |= clSetKernelArg(v->kernel, 4, sizeof(cl_mem), &a);
	e |= clSetKernelArg(v->kernel, 5, sizeof(lda), &lda);
	e |= clSetKernelArg(v->kernel, 6, sizeof(cl_mem), &b);
	e |= clSetKernelArg(v->kernel, 7, sizeof(ldb), &ldb);
	e |= clSetKernelArg(v->kernel, 8, sizeof(float), &g->beta);
	e |= clSetKernelArg(v->kernel, 9, sizeof(cl_mem), &c);
	e |= clSetKernelArg(v->kernel, 10, sizeof(ldc), &ldc);
	if (e != CL_SUCCESS) {
		e = CL_INVALID_KERNEL_ARGS;
		goto out;
	}
	local[0] = (size_t)(v->tsm / v->wptm);
	local[1] = (size_t)(v->tsn / v->wptn);
	global[0] = (size_t)((g->m + v->tsm - 1) / v->tsm) * local[0];
	global[1] = (size_t)((g->n + v->tsn - 1) / v->tsn) * local[1];
	CL_TRY(clEnqueueNDRangeKernel(dev->queue, v->kernel, 2, NULL, global, local, 0, NULL,
				      &ev[3]),
	       "clEnqueueNDRangeKernel");
	CL_TRY(clEnqueueReadBuffer(dev->queue, c, CL_FALSE, 0, g->c_elems * sizeof(float), c_out,
				   0, NULL, &ev[4]),
	       "clEnqueueReadBuffer(C)");
	CL_TRY(clFinish(dev->queue), "clFinish");
#undef CL_TRY
	if (dev->profiling) {
		t->h2d_ns = device_event_ns(ev[0]) + device_event_ns(ev[1]) + device_event_ns(ev[2]);
		t->kernel_ns = device_event_ns(ev[3]);
		t->d2h_ns = device_event_ns(ev[4]);
	}
out:
	if (e != CL_SUCCESS) {
		st = gemm_fail(err, errlen, gemm_cl_status(e), "%s failed on the device: %s", what,
			       device_strerror(e));
		clFinish(dev->queue); /* nothing may still use the buffers we release */
	}
	for (int i = 0; i < 5; i++)
		if (ev[i])
			clReleaseEvent(ev[i]);
	if (a)
		clReleaseMemObject(a);
	if (b)
		clReleaseMemObject(b);
	if (c)
		clReleaseMemObject(c);
	free(zeros);
	return st;
}

int gemm_run(struct rxd_gemm_engine *eng, const struct rxd_gemm *g, float *c_out,
	     struct rxd_job_timings *t, const char **kernel, char *err, size_t errlen)
{
	const struct rxd_gemm_variant *v = gemm_variant_for(eng, g);

	*kernel = "";
	if (!v)
		return gemm_fail(err, errlen, RXGEMM__STATUS__STATUS_INTERNAL,
				 "no kernel for trans_a=%d trans_b=%d", g->trans_a, g->trans_b);
	*kernel = v->name;
	return gemm_launch(eng->dev, v, g, c_out, t, err, errlen);
}

/* Run v on a small problem with edges in every dimension and compare with the CPU. Kernel
 * variants have given wrong answers on some drivers (Clover's vector widths): never serve
 * one that has not passed here. */
static int gemm_selftest(struct rxd_device *dev, const struct rxd_gemm_variant *v)
{
	enum { M = 37, N = 29, K = 21, LD = 41 };
	struct rxd_gemm g = { .m = M, .n = N, .k = K, .trans_a = v->trans_a,
			      .trans_b = v->trans_b, .alpha = 1.5f, .beta = -0.5f,
			      .lda = LD, .ldb = LD, .ldc = LD };
	float *a = NULL, *b = NULL, *c = NULL, *got = NULL, *want = NULL;
	struct rxd_job_timings t;
	char err[RXD_ERROR_MAX];
	uint64_t seed = 12345;
	double max_err;
	int64_t bi, bj;
	int ret = -ENOMEM;

	g.a_elems = (size_t)LD * ((v->trans_a ? M : K) - 1) + (v->trans_a ? K : M);
	g.b_elems = (size_t)LD * ((v->trans_b ? K : N) - 1) + (v->trans_b ? N : K);
	g.c_elems = g.c_given_elems = (size_t)LD * (N - 1) + M;
	a = malloc(g.a_elems * sizeof(float));
	b = malloc(g.b_elems * sizeof(float));
	c = malloc(g.c_elems * sizeof(float));
	got = malloc(g.c_elems * sizeof(float));
	want = malloc(g.c_elems * sizeof(float));
	if (!a || !b || !c || !got || !want)
		goto out;
	refgemm_fill_random(a, g.a_elems, &seed);
	refgemm_fill_random(b, g.b_elems, &seed);
	refgemm_fill_random(c, g.c_elems, &seed);
	memcpy(want, c, g.c_elems * sizeof(float));
	g.a = a, g.b = b, g.c = c;
	if (gemm_launch(dev, v, &g, got, &t, err, sizeof(err)) != RXGEMM__STATUS__STATUS_OK) {
		log_msg(LOG_WARNING, "%s: self-test could not run: %s", v->name, err);
		ret = -EIO;
		goto out;
	}
	refgemm(0, v->trans_a, v->trans_b, M, N, K, g.alpha, a, LD, b, LD, g.beta, want, LD);
	if (refgemm_compare(0, M, N, K, got, want, LD, &max_err, &bi, &bj) != 0) {
		log_msg(LOG_WARNING, "%s: self-test gives wrong results (C[%lld,%lld] = %g, "
				     "want %g): not used",
			v->name, (long long)bi, (long long)bj, (double)got[bi + bj * LD],
			(double)want[bi + bj * LD]);
		ret = -EIO;
		goto out;
	}
	ret = 0;
out:
	free(a), free(b), free(c), free(got), free(want);
	return ret;
}

static void gemm_variant_release(struct rxd_gemm_variant *v)
{
	if (v->kernel)
		clReleaseKernel(v->kernel);
	if (v->program)
		clReleaseProgram(v->program);
	v->kernel = NULL;
	v->program = NULL;
}

/* Build and self-test one variant at configuration cfg. 0, or -EIO when it does not fit
 * the device, does not build, or fails the self-test (the caller tries a smaller one). */
static int gemm_variant_build(struct rxd_device *dev, struct rxd_gemm_variant *v, int cfg)
{
	const char *src = kernels_find("gemm.cl");
	char opts[256], *log = NULL;
	size_t wg = 0, threads;
	cl_int e;

	v->tsm = v->tsn = gemm_configs[cfg].ts;
	v->tsk = gemm_configs[cfg].tsk;
	v->wptm = v->wptn = gemm_configs[cfg].wpt;
	threads = (size_t)(v->tsm / v->wptm) * (size_t)(v->tsn / v->wptn);
	snprintf(v->name, sizeof(v->name), "tiled%dx%dx%d-%c%c", v->tsm, v->tsn, v->tsk,
		 v->trans_a ? 'T' : 'N', v->trans_b ? 'T' : 'N');
	if (!src)
		fatal("gemm.cl is not embedded: the build is broken");
	if (threads > dev->max_work_group_size ||
	    (uint64_t)(v->tsm + v->tsn) * (uint64_t)v->tsk * sizeof(float) > dev->local_mem_bytes)
		return -EIO;
	snprintf(opts, sizeof(opts),
		 "-cl-std=CL1.1 -DTRANS_A=%d -DTRANS_B=%d -DTSM=%d -DTSN=%d -DTSK=%d "
		 "-DWPTM=%d -DWPTN=%d",
		 v->trans_a, v->trans_b, v->tsm, v->tsn, v->tsk, v->wptm, v->wptn);
	if (device_build(dev, v->name, src, opts, &v->program, &log) < 0) {
		if (log)
			log_msg(LOG_WARNING, "%s: compiler output:\n%s", v->name, log);
		free(log);
		return -EIO;
	}
	v->kernel = clCreateKernel(v->program, "gemm_tiled", &e);
	if (!v->kernel) {
		log_msg(LOG_WARNING, "%s: clCreateKernel: %s", v->name, device_strerror(e));
		goto fail;
	}
	/* Register pressure can shrink the work-group a kernel may run with. */
	clGetKernelWorkGroupInfo(v->kernel, dev->desc->id, CL_KERNEL_WORK_GROUP_SIZE, sizeof(wg),
				 &wg, NULL);
	if (wg < threads) {
		log_msg(LOG_INFO, "%s: needs %zu work-items, the device allows %zu", v->name,
			threads, wg);
		goto fail;
	}
	if (gemm_selftest(dev, v) < 0)
		goto fail;
	return 0;
fail:
	gemm_variant_release(v);
	return -EIO;
}

int gemm_init(struct rxd_gemm_engine *eng, struct rxd_device *dev)
{
	uint64_t t0 = now_ns();

	memset(eng, 0, sizeof(*eng));
	eng->dev = dev;
	eng->variants = calloc(4, sizeof(*eng->variants));
	if (!eng->variants)
		return -ENOMEM;
	for (int ta = 0; ta < 2; ta++) {
		for (int tb = 0; tb < 2; tb++) {
			struct rxd_gemm_variant *v = &eng->variants[eng->n_variants];
			size_t cfg;

			v->trans_a = ta;
			v->trans_b = tb;
			for (cfg = 0; cfg < sizeof(gemm_configs) / sizeof(gemm_configs[0]); cfg++)
				if (gemm_variant_build(dev, v, (int)cfg) == 0)
					break;
			if (!v->kernel) {
				log_msg(LOG_ERR, "no GEMM kernel for trans_a=%d trans_b=%d builds and "
						 "passes its self-test on this device",
					ta, tb);
				gemm_fini(eng);
				return -EIO;
			}
			log_msg(LOG_DEBUG, "kernel %s ready", v->name);
			eng->n_variants++;
		}
	}
	eng->build_ns = now_ns() - t0;
	log_msg(LOG_INFO, "%zu GEMM kernels built and self-tested in %.0f ms", eng->n_variants,
		(double)eng->build_ns / 1e6);
	return 0;
}

void gemm_fini(struct rxd_gemm_engine *eng)
{
	for (size_t i = 0; i < 4 && eng->variants; i++)
		gemm_variant_release(&eng->variants[i]);
	free(eng->variants);
	eng->variants = NULL;
	eng->n_variants = 0;
}

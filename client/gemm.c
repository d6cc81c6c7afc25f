/* gemm.c: librxgemm's GEMM requests (rxg_gemm, rxg_submit_gemm): the operands checked and
 * measured, the request built with its operands inline or in shared buffers and tensors, and
 * the reply's C put in place. Waiting for a submitted GEMM is transport.c's (rxg_wait). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "copy.h"
#include "transport.h"

/* Only the m x n elements of each matrix from src (laid out as the stored C) to the
 * caller's C: whatever lies between rows or columns (ldc padding) or between the matrices
 * of a batch is the caller's and stays as it was. With several threads when large
 * (copy.c). */
static void gemm_copy_c(const struct pending *p, const uint8_t *src)
{
	const struct stored *sc = &p->sc;
	struct rxg__copy copy = {
		.dst = p->c,
		.src = src,
		.inner_bytes = (size_t)sc->inner * sizeof(float),
		.outer = (size_t)sc->outer,
		.ld_bytes = (size_t)sc->ld * sizeof(float),
		.batch = (size_t)p->batch,
		.stride_bytes = (size_t)sc->stride * sizeof(float),
	};

	rxg__copy_run(&copy, 1);
}

/* A GEMM's reply, taken out of the pending list: its result, C put in place. */
static int gemm_result(struct rxg_client *c, struct pending *p, struct rxg_timings *timings)
{
	const struct stored *sc = &p->sc;
	int rc;

	if ((rc = rxg__reply_check(c, p, timings)) != RXG_OK)
		return rc;
	const ProtobufCBinaryData *rc_data = &p->reply->gemm->c;
	if (p->c_direct)
		return RXG_OK; /* received straight into the caller's C (transport.c) */
	if (p->c_in_buffer) {
		/* The daemon wrote C into the buffer; it sends none. */
		if (rc_data->len)
			return rxg__fail(c, RXG_EPROTO, "the daemon returned %zu bytes of C inline though "
					 "C went to a buffer", rc_data->len);
		if (p->stage) /* ours, not the caller's: C goes on to the caller's array */
			gemm_copy_c(p, (const uint8_t *)rxg_buffer_ptr(p->stage) + p->stage_c_offset);
		return RXG_OK;
	}
	if (rc_data->len != sc->total * sizeof(float) &&
	    rc_data->len != (sc->total - sc->floats + (size_t)sc->ld * (size_t)sc->outer) *
				    sizeof(float))
		return rxg__fail(c, RXG_EPROTO,
				 "the daemon returned %zu bytes of C; %lld x %lld with ldc = %lld needs %zu",
				 rc_data->len, (long long)sc->rows, (long long)sc->cols, (long long)sc->ld,
				 sc->total * sizeof(float));
	gemm_copy_c(p, rc_data->data);
	return RXG_OK;
}

static int gemm_finish(struct rxg_client *c, struct pending *p, struct rxg_timings *timings)
{
	int rc = gemm_result(c, p, timings);

	rxg__stage_put(c, p->stage);
	p->stage = NULL;
	return rc;
}

/* A staged GEMM freed without being finished. */
static void gemm_release(struct pending *p)
{
	rxg__stage_release(p->stage);
	p->stage = NULL;
}

/* Fill s for a batch of stored rows x cols matrices with leading dimension ld (0:
 * tightest), stride floats apart (0: ld * outer), and check that the length is computable. */
static int stored_init(struct rxg_client *c, struct stored *s, const char *name,
		       const char *ld_name, int row_major, int64_t rows, int64_t cols, int64_t ld,
		       int64_t batch, int64_t stride)
{
	int64_t floats, full, total;
	size_t bytes;

	s->name = name;
	s->ld_name = ld_name;
	s->rows = rows;
	s->cols = cols;
	s->inner = row_major ? cols : rows;
	s->outer = row_major ? rows : cols;
	s->ld = ld ? ld : s->inner;
	if (s->ld < s->inner)
		return rxg__fail(c, RXG_EINVAL,
				 "%s = %lld is less than %lld, the number of %s of the stored %s (%lld x %lld, "
				 "%s)",
				 ld_name, (long long)ld, (long long)s->inner, row_major ? "columns" : "rows",
				 name, (long long)rows, (long long)cols,
				 row_major ? "row-major" : "column-major");
	if (__builtin_mul_overflow(s->ld, s->outer - 1, &floats) ||
	    __builtin_add_overflow(floats, s->inner, &floats) ||
	    __builtin_mul_overflow((uint64_t)floats, sizeof(float), &bytes) || bytes > SIZE_MAX / 2)
		return rxg__fail(c, RXG_EINVAL,
				 "the stored %s (%lld x %lld with %s = %lld) is larger than memory can hold",
				 name, (long long)rows, (long long)cols, ld_name, (long long)s->ld);
	s->floats = (size_t)floats;
	if (stride < 0 || (batch > 1 && stride > 0 && stride < floats))
		return rxg__fail(c, RXG_EINVAL,
				 "the stride of %s (%lld) is %s one matrix (%lld floats)", name,
				 (long long)stride, stride < 0 ? "negative, not" : "smaller than",
				 (long long)floats);
	if (__builtin_mul_overflow(s->ld, s->outer, &full))
		full = INT64_MAX;
	s->stride = stride ? stride : full;
	if (batch < 2) {
		s->stride = 0;
		s->total = s->floats;
		return RXG_OK;
	}
	if (__builtin_mul_overflow(s->stride, batch - 1, &total) ||
	    __builtin_add_overflow(total, floats, &total) ||
	    __builtin_mul_overflow((uint64_t)total, sizeof(float), &bytes) || bytes > SIZE_MAX / 2)
		return rxg__fail(c, RXG_EINVAL, "a batch of %lld %s matrices %lld floats apart is larger "
				 "than memory can hold",
				 (long long)batch, name, (long long)s->stride);
	s->total = (size_t)total;
	return RXG_OK;
}

/* The checks of a GEMM's arguments that need no sizes: RXG_OK or RXG_EINVAL with the
 * reason. */
static int gemm_args_check(rxg_client *c, const struct rxg_gemm_args *args, bool job,
			   const uint64_t *id)
{
	int rc;

	if (!args || !id)
		return rxg__fail(c, RXG_EINVAL, "%s: %s is NULL",
				 job ? "rxg_submit_gemm" : "rxg_gemm", !args ? "args" : "id");
	if (args->layout != RXG_COL_MAJOR && args->layout != RXG_ROW_MAJOR)
		return rxg__fail(c, RXG_EINVAL,
				 "layout %d is neither RXG_COL_MAJOR nor RXG_ROW_MAJOR",
				 (int)args->layout);
	if (args->m < 1 || args->n < 1 || args->k < 1)
		return rxg__fail(c, RXG_EINVAL,
				 "m, n and k must be at least 1 (m = %lld, n = %lld, k = %lld)",
				 (long long)args->m, (long long)args->n, (long long)args->k);
	if (args->lda < 0 || args->ldb < 0 || args->ldc < 0)
		return rxg__fail(c, RXG_EINVAL,
				 "leading dimensions must not be negative (lda = %lld, ldb = %lld, "
				 "ldc = %lld)",
				 (long long)args->lda, (long long)args->ldb, (long long)args->ldc);
	if ((rc = rxg__gemm_operands(c, args)) != RXG_OK)
		return rc;
	if (args->batch_count < 0)
		return rxg__fail(c, RXG_EINVAL, "batch_count must not be negative (got %lld)",
				 (long long)args->batch_count);
	return RXG_OK;
}

/* Check and send a GEMM; job: it is the caller's to wait for with rxg_wait*, else
 * rxg_gemm's own (rxg_wait_any in another thread must not take it). About 120 lines: the
 * three operands' sizes, then the request's fields one by one, then where the operands
 * live (staged, buffers, tensors). */
static int gemm_submit(rxg_client *c, const struct rxg_gemm_args *args,
		       const struct rxg_job_options *opts, bool job, uint64_t *id)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__GemmRequest g = RXGEMM__GEMM_REQUEST__INIT;
	struct pending *p = NULL;
	struct stored sa, sb, sc;
	struct rxg_gemm_args staged;
	struct rxg_buffer *stage = NULL;
	struct rxg__stage_late late = { .n = 0 };
	size_t stage_c_offset = 0;
	int rc;

	if (id)
		*id = 0;
	if (!c)
		return RXG_EINVAL;
	if ((rc = gemm_args_check(c, args, job, id)) != RXG_OK)
		goto out;
	int row_major = args->layout == RXG_ROW_MAJOR;
	int64_t batch = args->batch_count > 1 ? args->batch_count : 1;
	rc = stored_init(c, &sa, "A", "lda", row_major, args->trans_a ? args->k : args->m,
			 args->trans_a ? args->m : args->k, args->lda, batch, args->stride_a);
	if (rc != RXG_OK)
		goto out;
	rc = stored_init(c, &sb, "B", "ldb", row_major, args->trans_b ? args->n : args->k,
			 args->trans_b ? args->k : args->n, args->ldb, batch, args->stride_b);
	if (rc != RXG_OK)
		goto out;
	rc = stored_init(c, &sc, "C", "ldc", row_major, args->m, args->n, args->ldc, batch,
			 args->stride_c);
	if (rc != RXG_OK)
		goto out;
	/* The daemon may send C back as either length the protocol allows for a stored matrix:
	 * up to the last element, or ld * outer. The latter bounds the reply we accept. */
	size_t c_full_bytes;
	if (__builtin_mul_overflow((uint64_t)sc.ld, (uint64_t)sc.outer, &c_full_bytes) ||
	    __builtin_add_overflow(c_full_bytes, sc.total - sc.floats, &c_full_bytes) ||
	    __builtin_mul_overflow(c_full_bytes, sizeof(float), &c_full_bytes) ||
	    __builtin_add_overflow(c_full_bytes, RXG__REPLY_OVERHEAD_BYTES, &c_full_bytes)) {
		rc = rxg__fail(c, RXG_EINVAL, "C (%lld x %lld with ldc = %lld) is larger than memory can hold",
			       (long long)args->m, (long long)args->n, (long long)sc.ld);
		goto out;
	}

	g.m = args->m;
	g.n = args->n;
	g.k = args->k;
	g.trans_a = args->trans_a != 0;
	g.trans_b = args->trans_b != 0;
	g.alpha = args->alpha;
	g.beta = args->beta;
	g.layout = row_major ? RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR : RXGEMM__LAYOUT__LAYOUT_COL_MAJOR;
	g.lda = sa.ld;
	g.ldb = sb.ld;
	g.ldc = sc.ld;
	/* The caller's arrays go on the wire as they are; the packer only reads them. */
	g.a.data = (uint8_t *)(uintptr_t)args->a;
	g.a.len = sa.total * sizeof(float);
	g.b.data = (uint8_t *)(uintptr_t)args->b;
	g.b.len = sb.total * sizeof(float);
	if (args->beta != 0.0f) {
		g.c.data = (uint8_t *)args->c;
		g.c.len = sc.total * sizeof(float);
	}
	if (batch > 1) {
		g.batch_count = batch;
		g.stride_a = sa.stride;
		g.stride_b = sb.stride;
		g.stride_c = sc.stride;
	}
	/* Large host arrays go through a staging buffer (stage.c), then like the caller's
	 * own buffers: operands in shared-memory buffers go as references instead
	 * (buffer.c); refs must live until the request is sent, which submit does before
	 * this returns. */
	rc = rxg__stage_gemm(c, args, sa.total, sb.total, sc.total, &staged, &stage,
			     &stage_c_offset, &late);
	if (rc != RXG_OK)
		goto out;
	if (late.n) {
		g.a_ready = &late.ready[0];
		g.b_ready = &late.ready[1];
	}
	const struct rxg_gemm_args *sent = stage ? &staged : args;
	Rxgemm__RegionRef refs[4];
	int c_in_buffer;
	rc = rxg__gemm_buffers(c, sent, &g, refs, sa.total, sb.total, sc.total, &c_in_buffer);
	if (rc != RXG_OK)
		goto out;
	int c_in_tensor;
	if ((rc = rxg__gemm_tensors(c, sent, &g, &c_in_tensor)) != RXG_OK)
		goto out;
	c_in_buffer |= c_in_tensor;
	if (opts) {
		g.priority = opts->priority;
		g.deadline_ms = opts->deadline_ms;
	}
	req.body_case = RXGEMM__REQUEST__BODY_GEMM;
	req.gemm = &g;
	if (!(p = calloc(1, sizeof(*p)))) {
		rc = rxg__fail(c, RXG_ENOMEM, "out of memory");
		goto out;
	}
	p->job = job;
	p->want = RXGEMM__REPLY__BODY_GEMM;
	p->finish = gemm_finish;
	p->reply_max_bytes = c_full_bytes;
	p->c = args->c;
	p->c_is_input = args->beta != 0.0f;
	p->c_in_buffer = c_in_buffer;
	p->sc = sc;
	p->batch = batch;
	p->stage = stage;
	p->stage_c_offset = stage_c_offset;
	p->release = gemm_release;
	stage = NULL; /* p's now */
	rc = rxg__submit(c, &req, p);
	if (rc != RXG_OK)
		goto out;
	*id = p->id;
	p = NULL; /* filed */
	/* The request is on its way: A and B now, while it travels (ready words). */
	rxg__stage_late_run(&late);
out:
	rxg__pending_free(p);
	rxg__stage_put(c, stage);
	return rc;
}

RXG_EXPORT int rxg_submit_gemm(rxg_client *c, const struct rxg_gemm_args *args,
				const struct rxg_job_options *opts, uint64_t *id)
{
	return gemm_submit(c, args, opts, true, id);
}

RXG_EXPORT int rxg_gemm(rxg_client *c, const struct rxg_gemm_args *args,
			struct rxg_timings *timings)
{
	struct pending *p = NULL;
	uint64_t id;
	int rc;

	if (timings)
		memset(timings, 0, sizeof(*timings));
	rc = gemm_submit(c, args, NULL, false, &id);
	if (rc != RXG_OK)
		return rc;
	rc = rxg__wait_for(c, id, -1, &p);
	if (rc == RXG_OK)
		rc = gemm_finish(c, p, timings);
	rxg__pending_free(p);
	return rc;
}

/* tensor.c: device tensors, float32 data a client keeps on the device between requests.
 *
 * A tensor is one buffer of the device-memory budget, reserved for its connection as a
 * resident reservation: it counts against the budget and the client's quota for as long
 * as the client keeps it, and other reservations see the budget less it (budget.c). When
 * the budget or the quota is short, creating one is refused (STATUS_TOO_BIG or
 * STATUS_QUOTA); nothing is evicted.
 *
 * Ownership: the connection's table (loop thread) holds one reference while a tensor is
 * listed, and each job in flight that uses it holds one more, taken by dispatch and
 * dropped in dispatch_job_release, so a tensor freed or orphaned by its client while a queued
 * job uses it lives until that job is answered. The device worker makes and fills the
 * buffer (a TENSOR_CREATE job, before the tensor is listed) and reads and writes the
 * buffers of the tensors its job holds; the buffer itself never changes after creation,
 * so the worker reads x->mem without a lock (the job's hand-over through w->lock orders
 * it). The last reference releases the reservation on the loop thread: the buffer goes to
 * the budget's pool, idle, and the next job may take it. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

/* Zeros for an empty tensor go up in pieces of at most this. */
#define TENSOR_ZERO_CHUNK_BYTES (4u << 20)

void tensor_table_init(struct rxd_tensors *t)
{
	memset(t, 0, sizeof(*t));
}

void tensor_table_fini(struct rxd_tensors *t)
{
	for (size_t i = 0; i < RXD_TENSOR_MAX; i++) {
		tensor_unref(t->slots[i]);
		t->slots[i] = NULL;
	}
	t->count = 0;
	t->bytes = 0;
}

int tensor_new(const int64_t *dims, size_t ndims, struct rxd_tensor **out,
	       struct rxd_error *err)
{
	struct rxd_tensor *x;
	uint64_t floats = 1;

	*out = NULL;
	if (!(x = calloc(1, sizeof(*x))))
		return error_set(err, RXD_S_NO_MEMORY, "out of memory for a tensor");
	x->refs = 1;
	x->ndims = (int)ndims;
	for (size_t i = 0; i < ndims; i++) {
		x->dims[i] = dims[i];
		floats *= (uint64_t)dims[i]; /* checked not to overflow (wire_tensor_dims) */
	}
	x->floats = floats;
	*out = x;
	return RXD_S_OK;
}

uint64_t tensor_budget_bytes(const struct rxd_tensor *x)
{
	return budget_round(x->floats * sizeof(float));
}

int tensor_add(struct rxd_tensors *t, struct rxd_tensor *x)
{
	for (size_t i = 0; i < RXD_TENSOR_MAX; i++)
		if (!t->slots[i]) {
			x->id = ++t->next_id;
			t->slots[i] = x;
			t->count++;
			t->bytes += tensor_budget_bytes(x);
			return 0;
		}
	return -ENOSPC;
}

static struct rxd_tensor *tensor_lookup(struct rxd_tensors *t, uint32_t id, size_t *slot)
{
	if (id == 0)
		return NULL;
	for (size_t i = 0; i < RXD_TENSOR_MAX; i++)
		if (t->slots[i] && t->slots[i]->id == id) {
			if (slot)
				*slot = i;
			return t->slots[i];
		}
	return NULL;
}

int tensor_find(struct rxd_tensors *t, uint32_t id, const char *field, struct rxd_tensor **out,
		struct rxd_error *err)
{
	/* Ids are per connection and never reused there, so a freed tensor's id and another
	 * connection's are simply unknown here. */
	if (!(*out = tensor_lookup(t, id, NULL)))
		return error_set(err, RXD_S_TENSOR,
				   "%s: no tensor %u on this connection (never created here, or "
				   "freed)",
				   field, id);
	return RXD_S_OK;
}

int tensor_remove(struct rxd_tensors *t, uint32_t id, struct rxd_error *err)
{
	struct rxd_tensor *x;
	size_t slot;

	if (!(x = tensor_lookup(t, id, &slot)))
		return error_set(err, RXD_S_TENSOR,
				   "no tensor %u on this connection (never created here, or freed "
				   "already)",
				   id);
	t->slots[slot] = NULL;
	t->count--;
	t->bytes -= tensor_budget_bytes(x);
	tensor_unref(x);
	return RXD_S_OK;
}

void tensor_ref(struct rxd_tensor *x)
{
	x->refs++;
}

void tensor_unref(struct rxd_tensor *x)
{
	if (!x || --x->refs > 0)
		return;
	/* No job holds it: the device is done with the buffer. */
	if (x->budget)
		budget_release(x->budget, &x->res); /* the buffer goes to the pool */
	else if (x->mem)
		clReleaseMemObject(x->mem);
	free(x);
}

int tensor_budget_fail(struct rxd_budget *b, int ret, const char *what, uint64_t bytes,
		       struct rxd_error *err)
{
	struct rxd_budget_stats bs;

	budget_stats(b, &bs);
	if (ret == -EDQUOT)
		return error_set(err, RXD_S_QUOTA,
				   "%s needs %llu bytes of device memory, over this client's quota "
				   "of %llu bytes (client-quota) beside what it holds",
				   what, (unsigned long long)bytes,
				   (unsigned long long)bs.quota_bytes);
	if (bytes > bs.budget_bytes)
		return error_set(err, RXD_S_TOO_BIG,
				   "%s needs %llu bytes of device memory, more than the budget of "
				   "%llu bytes (vram-budget)",
				   what, (unsigned long long)bytes,
				   (unsigned long long)bs.budget_bytes);
	return error_set(err, RXD_S_TOO_BIG,
			   "%s needs %llu bytes of device memory; the budget of %llu bytes "
			   "(vram-budget) has %llu left beside the device tensors (%llu bytes); "
			   "free some",
			   what, (unsigned long long)bytes, (unsigned long long)bs.budget_bytes,
			   (unsigned long long)(bs.budget_bytes > bs.resident_bytes
						? bs.budget_bytes - bs.resident_bytes
						: 0),
			   (unsigned long long)bs.resident_bytes);
}

int tensor_make(struct rxd_tensor *x, struct rxd_device *dev, struct rxd_budget *b,
		uint32_t owner, const void *data, struct rxd_job_timings *t, struct rxd_error *err)
{
	uint64_t bytes = x->floats * sizeof(float);
	void *zeros = NULL;
	cl_event ev = NULL;
	cl_int e = CL_SUCCESS;
	int ret, st = RXD_S_OK;

	memset(t, 0, sizeof(*t));
	if (b) {
		void *m = NULL;
		int cl_err = 0;

		ret = budget_reserve_resident(b, &x->res, owner, tensor_budget_bytes(x));
		if (ret < 0)
			return tensor_budget_fail(b, ret, "the tensor", tensor_budget_bytes(x),
						  err);
		x->budget = b;
		if ((ret = budget_buf_get(b, &x->res, bytes, &m, &cl_err)) < 0) {
			st = error_set(err, RXD_S_NO_MEMORY, "the tensor's device buffer of %llu "
				       "bytes could not be made: %s", (unsigned long long)bytes,
				       cl_err ? device_strerror(cl_err) : strerror(-ret));
			goto out;
		}
		x->mem = m;
	} else {
		x->mem = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE, (size_t)bytes, NULL, &e);
		if (!x->mem) {
			st = error_set(err, RXD_S_NO_MEMORY,
					 "the tensor's device buffer could not be made: %s",
					 device_strerror(e));
			goto out;
		}
	}
	if (data) {
		e = clEnqueueWriteBuffer(dev->queue, x->mem, CL_FALSE, 0, (size_t)bytes, data, 0,
					 NULL, &ev);
	} else {
		/* OpenCL 1.1 has no fill: zeros go up from one host chunk, reused. */
		size_t chunk = bytes < TENSOR_ZERO_CHUNK_BYTES ? (size_t)bytes
							       : TENSOR_ZERO_CHUNK_BYTES;

		if (!(zeros = calloc(1, chunk))) {
			st = error_set(err, RXD_S_NO_MEMORY,
					 "out of host memory for the tensor's zeros");
			goto out;
		}
		for (uint64_t off = 0; off < bytes && e == CL_SUCCESS; off += chunk)
			e = clEnqueueWriteBuffer(dev->queue, x->mem, CL_FALSE, (size_t)off,
						 bytes - off < chunk ? (size_t)(bytes - off) : chunk,
						 zeros, 0, NULL, NULL);
	}
	if (e == CL_SUCCESS)
		e = device_finish(dev, dev->queue);
	else
		clFinish(dev->queue);
	if (e != CL_SUCCESS) {
		st = error_set(err, RXD_S_DEVICE, "the tensor's upload failed on the device: %s",
			       device_strerror(e));
		goto out;
	}
	if (ev && dev->profiling)
		t->h2d_ns = device_event_ns(ev);
out:
	if (ev)
		clReleaseEvent(ev);
	free(zeros);
	if (st != RXD_S_OK) {
		/* Back to nothing: the reservation goes, tensor_unref then frees x alone. */
		if (x->budget)
			budget_release(x->budget, &x->res);
		else if (x->mem)
			clReleaseMemObject(x->mem);
		x->budget = NULL;
		x->mem = NULL;
	}
	return st;
}

int tensor_read_run(struct rxd_tensor *x, struct rxd_device *dev, void *out,
		    struct rxd_job_timings *t, struct rxd_error *err)
{
	cl_event ev = NULL;
	cl_int e;

	memset(t, 0, sizeof(*t));
	e = clEnqueueReadBuffer(dev->queue, x->mem, CL_TRUE, 0, (size_t)(x->floats * sizeof(float)),
				out, 0, NULL, &ev);
	if (e != CL_SUCCESS) {
		clFinish(dev->queue);
		return error_set(err, RXD_S_DEVICE,
				   "reading tensor %u failed on the device: %s", x->id,
				   device_strerror(e));
	}
	if (dev->profiling)
		t->d2h_ns = device_event_ns(ev);
	clReleaseEvent(ev);
	return RXD_S_OK;
}

/* Long (a little): each of A, B and C may be a tensor or host data, so the buffers made,
 * the uploads and the download are chosen per operand around the one launch, and freed
 * through one label. */
int tensor_gemm_run(struct rxd_gemm_engine *eng, struct rxd_admit *a, const struct rxd_gemm *g,
		    struct rxd_tensor *const tensors[4], float *c_out, struct rxd_job_timings *t,
		    const char **kernel, struct rxd_error *err)
{
	struct rxd_device *dev = eng->dev;
	const uint64_t bytes[3] = { g->a_elems * sizeof(float), g->b_elems * sizeof(float),
				    g->c_elems * sizeof(float) };
	/* Buffers made here for what is not a tensor: A, B, and C when it goes to the host. */
	const bool own[3] = { !tensors[0], !tensors[1], !tensors[3] };
	cl_mem mem[3] = { NULL };
	cl_event ev[5] = { NULL };
	float *zeros = NULL;
	uint64_t kernel_ns = 0;
	cl_int e = CL_SUCCESS;
	const char *what = "";
	int v = gemm_choose(eng, g), ret, st = RXD_S_OK;

	memset(t, 0, sizeof(*t));
	*kernel = gemm_variant_name(eng, v);
	/* Admitted whole (the operands on the device cannot be cut): its buffers were
	 * reserved with it. */
	for (int i = 0; i < 3; i++) {
		cl_mem m = NULL;
		int cl_err = 0;

		if (!own[i])
			continue;
		ret = admit_take(a, bytes[i], &m, &cl_err);
		if (ret < 0) {
			st = error_set(err, RXD_S_NO_MEMORY,
					 "a device buffer of %llu bytes could not be made: %s",
					 (unsigned long long)bytes[i],
					 cl_err ? device_strerror(cl_err) : strerror(-ret));
			goto out;
		}
		mem[i] = m;
	}
	if (tensors[0])
		mem[0] = tensors[0]->mem;
	if (tensors[1])
		mem[1] = tensors[1]->mem;
	if (tensors[3])
		mem[2] = tensors[3]->mem;
#define CL_TRY(call, name)                                                                    \
	do {                                                                                  \
		what = name;                                                                  \
		if ((e = (call)) != CL_SUCCESS)                                               \
			goto out;                                                             \
	} while (0)
	if (own[0])
		CL_TRY(clEnqueueWriteBuffer(dev->queue, mem[0], CL_FALSE, 0, (size_t)bytes[0], g->a,
					    0, NULL, &ev[0]),
		       "clEnqueueWriteBuffer(A)");
	if (own[1])
		CL_TRY(clEnqueueWriteBuffer(dev->queue, mem[1], CL_FALSE, 0, (size_t)bytes[1], g->b,
					    0, NULL, &ev[1]),
		       "clEnqueueWriteBuffer(B)");
	/* C's input where the result goes: copied on the device from its tensor (unless it
	 * is that tensor, replaced in place), sent from the host, or zeros for the padding
	 * of a reply (a tensor's padding stays as it was). */
	if (tensors[2] && tensors[2] != tensors[3]) {
		CL_TRY(clEnqueueCopyBuffer(dev->queue, tensors[2]->mem, mem[2], 0, 0,
					   (size_t)bytes[2], 0, NULL, &ev[2]),
		       "clEnqueueCopyBuffer(C)");
	} else if (g->c) {
		CL_TRY(clEnqueueWriteBuffer(dev->queue, mem[2], CL_FALSE, 0, (size_t)bytes[2], g->c,
					    0, NULL, &ev[2]),
		       "clEnqueueWriteBuffer(C)");
	} else if (!tensors[2] && own[2]) {
		if (!(zeros = calloc(g->c_elems, sizeof(float)))) {
			st = error_set(err, RXD_S_NO_MEMORY,
					 "out of host memory for C's padding");
			goto out;
		}
		CL_TRY(clEnqueueWriteBuffer(dev->queue, mem[2], CL_FALSE, 0, (size_t)bytes[2], zeros,
					    0, NULL, &ev[2]),
		       "clEnqueueWriteBuffer(C)");
	}
	/* One wait for the kernel and C's download together (gemm_compute_tail). */
	if ((st = gemm_compute_tail(eng, v, g, mem[0], mem[1], mem[2], &kernel_ns, &ev[3],
				    err)) != RXD_S_OK)
		goto out;
	if (own[2])
		CL_TRY(clEnqueueReadBuffer(dev->queue, mem[2], CL_FALSE, 0, (size_t)bytes[2], c_out,
					   0, NULL, &ev[4]),
		       "clEnqueueReadBuffer(C)");
	CL_TRY(device_finish(dev, dev->queue), "waiting for the device");
#undef CL_TRY
	if (ev[3])
		kernel_ns += device_event_ns(ev[3]);
	if (dev->profiling) {
		t->h2d_ns = device_event_ns(ev[0]) + device_event_ns(ev[1]) + device_event_ns(ev[2]);
		t->kernel_ns = kernel_ns;
		t->d2h_ns = device_event_ns(ev[4]);
	}
out:
	if (e != CL_SUCCESS)
		st = error_set(err, RXD_S_DEVICE,
				 "%s failed on the device: %s", what, device_strerror(e));
	/* Nothing may still use the buffers released below (device_finish saw to it when
	 * all went well). */
	if (st != RXD_S_OK || e != CL_SUCCESS)
		clFinish(dev->queue);
	for (int i = 0; i < 5; i++)
		if (ev[i])
			clReleaseEvent(ev[i]);
	free(zeros);
	return st;
}

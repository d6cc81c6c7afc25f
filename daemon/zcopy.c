/* zcopy.c: a GEMM run in place on the client's shared-memory regions.
 *
 * On a device that works on host memory (CL_DEVICE_HOST_UNIFIED_MEMORY: a CPU device such
 * as PoCL's, an integrated GPU), copying a region's operands into device buffers and C
 * back out is a copy from host memory into host memory: the kernel can read A and B and
 * write C where the client put them. Each region is wrapped once in a CL_MEM_USE_HOST_PTR
 * buffer (shm_region_wrap) and the kernels take the operands' element offsets into it.
 *
 * Spec-wise, a USE_HOST_PTR buffer's contents may be cached by the implementation: the
 * host's view and the device's are made to agree by mapping. So before the kernels, the
 * operands' ranges are mapped for writing and unmapped (the device sees what the client
 * wrote), and after them C's range is mapped for reading and unmapped (the client sees
 * what the device wrote). On a CPU device mapping a USE_HOST_PTR buffer returns the host
 * pointer and copies nothing; on a device that shadows host memory it is the copy the
 * data needs anyway.
 *
 * It applies when A, B and C's destination are all in regions, the device has unified
 * memory and zero-copy is not switched off (--zero-copy never); anything else runs
 * through device buffers (split.c), where the regions' wrappers still serve to pin the
 * pages on devices with memory of their own. Device worker thread only. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"

/* Map [off, off + bytes) of mem with flags and unmap it at once: the host's and the
 * device's views of a USE_HOST_PTR buffer agree afterwards (see above). */
static cl_int zcopy_sync(cl_command_queue q, cl_mem mem, uint64_t off, uint64_t bytes,
			 cl_map_flags flags)
{
	cl_int e;
	void *p = clEnqueueMapBuffer(q, mem, CL_TRUE, flags, (size_t)off, (size_t)bytes, 0, NULL,
				     NULL, &e);

	if (!p)
		return e;
	e = clEnqueueUnmapMemObject(q, mem, p, 0, NULL, NULL);
	if (e == CL_SUCCESS)
		e = clFinish(q);
	return e;
}

bool zcopy_prepare(const struct rxd_gemm_engine *eng, bool enabled, const struct rxd_gemm *g,
		   struct rxd_region *const regions[RXD_JOB_REGIONS], const float *c_dest)
{
	struct rxd_device *dev = eng->dev;
	const void *ptr[3] = { g->a, g->b, c_dest };
	const uint64_t bytes[3] = { g->a_elems * sizeof(float), g->b_elems * sizeof(float),
				    g->c_elems * sizeof(float) };

	if (!enabled || !dev->host_unified || !c_dest)
		return false;
	/* Every index the kernels form from an offset must fit an int. */
	if (g->a_elems > INT_MAX || g->b_elems > INT_MAX || g->c_elems > INT_MAX)
		return false;
	for (int i = 0; i < 3; i++) {
		struct rxd_region *r = shm_region_holding(regions, ptr[i], bytes[i]);

		if (!r || shm_region_wrap(r, dev->ctx, dev->max_alloc_bytes) < 0)
			return false;
	}
	return true;
}

int zcopy_run(struct rxd_gemm_engine *eng, const struct rxd_gemm *g,
	      struct rxd_region *const regions[RXD_JOB_REGIONS], float *c_dest,
	      struct rxd_job_timings *t, const char **kernel, struct rxd_error *err)
{
	struct rxd_device *dev = eng->dev;
	const void *ptr[3] = { g->a, g->b, c_dest };
	const uint64_t bytes[3] = { g->a_elems * sizeof(float), g->b_elems * sizeof(float),
				    g->c_elems * sizeof(float) };
	uint64_t rows_c = (uint64_t)g->m * (uint64_t)g->n *
			  (uint64_t)(g->batch_count > 1 ? g->batch_count : 1);
	struct rxd_region *r[3];
	uint64_t off[3], t0, kernel_ns = 0;
	cl_int e = CL_SUCCESS;
	int v = gemm_choose(eng, g), st;

	memset(t, 0, sizeof(*t));
	*kernel = gemm_variant_name(eng, v);
	for (int i = 0; i < 3; i++) {
		r[i] = shm_region_holding(regions, ptr[i], bytes[i]);
		if (!r[i] || !r[i]->mem) { /* zcopy_prepare said yes: a bug */
			return error_set(err, RXD_S_INTERNAL, "zero-copy: an operand has no "
					 "wrapped region");
		}
		off[i] = (uint64_t)((const uint8_t *)ptr[i] - r[i]->base);
	}
	t0 = now_ns();
	/* C's starting values go where the kernels will find them: C as sent (inline, or
	 * elsewhere in a region) when it is not there already, else zeros when beta reads C
	 * or the reply's padding between columns must be zeros, as on the copying path. C in
	 * place (c == c_dest) is there already. */
	if (g->c && g->c != c_dest)
		memmove(c_dest, g->c, bytes[2]);
	else if (!g->c && (g->beta != 0.0f || g->c_elems != rows_c))
		memset(c_dest, 0, bytes[2]);
	for (int i = 0; i < 3 && e == CL_SUCCESS; i++)
		e = zcopy_sync(dev->queue, r[i]->mem, off[i], bytes[i], CL_MAP_WRITE);
	t->h2d_ns = now_ns() - t0;
	if (e != CL_SUCCESS) {
		return error_set(err, RXD_S_DEVICE, "zero-copy: mapping an operand failed: %s",
			 device_strerror(e));
	}
	st = gemm_compute_at(eng, v, g, r[0]->mem, (int64_t)(off[0] / sizeof(float)), r[1]->mem,
			     (int64_t)(off[1] / sizeof(float)), r[2]->mem,
			     (int64_t)(off[2] / sizeof(float)), &kernel_ns, err);
	t->kernel_ns = kernel_ns;
	clFinish(dev->queue);
	if (st != RXD_S_OK)
		return st;
	t0 = now_ns();
	e = zcopy_sync(dev->queue, r[2]->mem, off[2], bytes[2], CL_MAP_READ);
	t->d2h_ns = now_ns() - t0;
	if (e != CL_SUCCESS) {
		return error_set(err, RXD_S_DEVICE, "zero-copy: mapping C failed: %s",
				 device_strerror(e));
	}
	return RXD_S_OK;
}

/* device.c: finding the OpenCL devices and opening the one the daemon serves.
 *
 * Everything here is OpenCL 1.1 API, the newest that Mesa's Clover speaks. Device choices
 * come from queries, never from device names. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "json.h"
#include "engine.h"

const char *device_strerror(cl_int err)
{
	switch (err) {
#define E(x) case x: return #x;
	E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE)
	E(CL_COMPILER_NOT_AVAILABLE) E(CL_MEM_OBJECT_ALLOCATION_FAILURE)
	E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY) E(CL_PROFILING_INFO_NOT_AVAILABLE)
	E(CL_BUILD_PROGRAM_FAILURE) E(CL_INVALID_VALUE) E(CL_INVALID_DEVICE)
	E(CL_INVALID_PLATFORM) E(CL_INVALID_CONTEXT) E(CL_INVALID_COMMAND_QUEUE)
	E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_BUFFER_SIZE) E(CL_INVALID_PROGRAM)
	E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME) E(CL_INVALID_KERNEL)
	E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE)
	E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE)
	E(CL_INVALID_WORK_ITEM_SIZE) E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST)
	E(CL_INVALID_EVENT) E(CL_INVALID_OPERATION) E(CL_INVALID_BUILD_OPTIONS)
	E(CL_INVALID_GLOBAL_WORK_SIZE)
#undef E
	case -1001: return "CL_PLATFORM_NOT_FOUND_KHR (no OpenCL platform installed)";
	default: return "unknown OpenCL error";
	}
}

static const char *device_type_name(cl_device_type t)
{
	if (t & CL_DEVICE_TYPE_GPU)
		return "GPU";
	if (t & CL_DEVICE_TYPE_ACCELERATOR)
		return "accelerator";
	if (t & CL_DEVICE_TYPE_CPU)
		return "CPU";
	return "other";
}

static void device_str(cl_device_id d, cl_device_info what, char *buf, size_t len)
{
	if (clGetDeviceInfo(d, what, len, buf, NULL) != CL_SUCCESS)
		snprintf(buf, len, "?");
	buf[len - 1] = '\0';
}

static void device_describe(struct rxd_device_desc *dd)
{
	cl_device_type type = 0;
	cl_ulong mem = 0;
	cl_uint cus = 0, mhz = 0;

	if (clGetPlatformInfo(dd->platform, CL_PLATFORM_NAME, sizeof(dd->platform_name),
			      dd->platform_name, NULL) != CL_SUCCESS)
		snprintf(dd->platform_name, sizeof(dd->platform_name), "?");
	dd->platform_name[sizeof(dd->platform_name) - 1] = '\0';
	device_str(dd->id, CL_DEVICE_NAME, dd->name, sizeof(dd->name));
	device_str(dd->id, CL_DEVICE_VERSION, dd->version, sizeof(dd->version));
	device_str(dd->id, CL_DRIVER_VERSION, dd->driver, sizeof(dd->driver));
	clGetDeviceInfo(dd->id, CL_DEVICE_TYPE, sizeof(type), &type, NULL);
	clGetDeviceInfo(dd->id, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof(mem), &mem, NULL);
	clGetDeviceInfo(dd->id, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof(cus), &cus, NULL);
	clGetDeviceInfo(dd->id, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof(mhz), &mhz, NULL);
	snprintf(dd->type, sizeof(dd->type), "%s", device_type_name(type));
	dd->global_mem_bytes = mem;
	dd->compute_units = cus;
	dd->clock_mhz = mhz;
}

/* Every device of every platform, numbered in platform order. A platform that lists no
 * devices (Clover without an AMD GPU, rusticl without RUSTICL_ENABLE) is skipped. */
static int device_enumerate(struct rxd_device_desc **out, size_t *n_out)
{
	cl_platform_id plats[16];
	cl_uint n_plats = 0;
	struct rxd_device_desc *all = NULL;
	size_t n = 0;
	cl_int err;

	*out = NULL;
	*n_out = 0;
	err = clGetPlatformIDs(16, plats, &n_plats);
	if (err != CL_SUCCESS || n_plats == 0)
		return -ENODEV;
	if (n_plats > 16)
		n_plats = 16;
	for (cl_uint p = 0; p < n_plats; p++) {
		cl_device_id ids[16];
		cl_uint n_ids = 0;

		if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 16, ids, &n_ids) != CL_SUCCESS)
			continue;
		if (n_ids > 16)
			n_ids = 16;
		struct rxd_device_desc *grown = realloc(all, (n + n_ids) * sizeof(*all));
		if (!grown) {
			free(all);
			return -ENOMEM;
		}
		all = grown;
		for (cl_uint i = 0; i < n_ids; i++, n++) {
			memset(&all[n], 0, sizeof(all[n]));
			all[n].index = (uint32_t)n;
			all[n].platform = plats[p];
			all[n].id = ids[i];
			device_describe(&all[n]);
		}
	}
	if (n == 0) {
		free(all);
		return -ENODEV;
	}
	*out = all;
	*n_out = n;
	return 0;
}

int device_env_mode(const char *name)
{
	const char *env = getenv(name);

	if (env && strcmp(env, "always") == 0)
		return RXD_PIPELINE_ALWAYS;
	if (env && strcmp(env, "never") == 0)
		return RXD_PIPELINE_NEVER;
	if (env && *env && strcmp(env, "auto") != 0)
		log_msg(LOG_WARNING, "%s=%s is not auto, always or never: auto", name, env);
	return RXD_PIPELINE_AUTO;
}

int device_list(FILE *f)
{
	struct rxd_device_desc *all;
	size_t n;
	int ret = device_enumerate(&all, &n);

	if (ret < 0) {
		fprintf(f, "no OpenCL device found\n");
		return ret;
	}
	for (size_t i = 0; i < n; i++)
		fprintf(f,
			"%zu: %s / %s\n   type %s, %u compute units, %u MHz, %.1f GiB, %s, "
			"driver %s\n",
			i, all[i].platform_name, all[i].name, all[i].type, all[i].compute_units,
			all[i].clock_mhz, (double)all[i].global_mem_bytes / (1 << 30),
			all[i].version, all[i].driver);
	free(all);
	return 0;
}

int device_list_json(FILE *f)
{
	struct rxd_device_desc *all;
	struct json_writer w;
	size_t n;
	int ret = device_enumerate(&all, &n);

	json_init(&w, f);
	json_begin_object(&w);
	json_key(&w, "devices");
	json_begin_array(&w);
	for (size_t i = 0; ret == 0 && i < n; i++) {
		json_begin_object(&w);
		json_member_uint(&w, "index", i);
		json_member_string(&w, "platform", all[i].platform_name);
		json_member_string(&w, "name", all[i].name);
		json_member_string(&w, "type", all[i].type);
		json_member_string(&w, "version", all[i].version);
		json_member_string(&w, "driver", all[i].driver);
		json_member_uint(&w, "global_mem_bytes", all[i].global_mem_bytes);
		json_member_uint(&w, "compute_units", all[i].compute_units);
		json_member_uint(&w, "clock_mhz", all[i].clock_mhz);
		json_end_object(&w);
	}
	json_end_array(&w);
	if (ret < 0)
		json_member_string(&w, "error", "no OpenCL device found");
	json_end_object(&w);
	fputc('\n', f);
	if (ret == 0)
		free(all);
	return ret;
}

static bool device_matches(const struct rxd_device_desc *dd, const char *sel)
{
	char hay[300];
	size_t ls = strlen(sel);

	snprintf(hay, sizeof(hay), "%s %s", dd->platform_name, dd->name);
	for (const char *h = hay; *h; h++)
		if (strncasecmp(h, sel, ls) == 0)
			return true;
	return false;
}

static const struct rxd_device_desc *device_select(const struct rxd_device_desc *all, size_t n,
						   const char *sel)
{
	if (sel && *sel) {
		char *end;
		unsigned long idx = strtoul(sel, &end, 10);

		if (isdigit((unsigned char)*sel) && *end == '\0')
			return idx < n ? &all[idx] : NULL;
		for (size_t i = 0; i < n; i++)
			if (device_matches(&all[i], sel))
				return &all[i];
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (strcmp(all[i].type, "GPU") == 0)
			return &all[i];
	return &all[0];
}

int device_open(struct rxd_device *dev, const char *selector, struct rxd_kcache *kcache)
{
	cl_context_properties props[3];
	cl_ulong v64 = 0;
	size_t wg = 0;
	cl_bool unified = CL_FALSE;
	cl_int err;
	int ret;

	memset(dev, 0, sizeof(*dev));
	dev->kcache = kcache;
	if ((ret = device_enumerate(&dev->all, &dev->n_all)) < 0) {
		log_msg(LOG_ERR, "no OpenCL device found (is an ICD such as pocl-opencl-icd "
				 "or the GPU's driver installed?)");
		return ret;
	}
	dev->desc = device_select(dev->all, dev->n_all, selector);
	if (!dev->desc) {
		log_msg(LOG_ERR, "no OpenCL device matches '%s' (see --list-devices)", selector);
		ret = -ENODEV;
		goto fail;
	}
	snprintf(dev->description, sizeof(dev->description), "%s / %s / %s / driver %s",
		 dev->desc->platform_name, dev->desc->name, dev->desc->version, dev->desc->driver);

	props[0] = CL_CONTEXT_PLATFORM;
	props[1] = (cl_context_properties)dev->desc->platform;
	props[2] = 0;
	dev->ctx = clCreateContext(props, 1, &dev->desc->id, NULL, NULL, &err);
	if (!dev->ctx) {
		log_msg(LOG_ERR, "cannot create an OpenCL context on %s: %s", dev->description,
			device_strerror(err));
		ret = -EIO;
		goto fail;
	}
	dev->queue = clCreateCommandQueue(dev->ctx, dev->desc->id, CL_QUEUE_PROFILING_ENABLE, &err);
	dev->profiling = dev->queue != NULL;
	if (!dev->queue)
		dev->queue = clCreateCommandQueue(dev->ctx, dev->desc->id, 0, &err);
	if (!dev->queue) {
		log_msg(LOG_ERR, "cannot create a command queue on %s: %s", dev->description,
			device_strerror(err));
		ret = -EIO;
		goto fail;
	}
	clGetDeviceInfo(dev->desc->id, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof(v64), &v64, NULL);
	dev->global_mem_bytes = v64;
	clGetDeviceInfo(dev->desc->id, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof(v64), &v64, NULL);
	dev->max_alloc_bytes = v64;
	clGetDeviceInfo(dev->desc->id, CL_DEVICE_LOCAL_MEM_SIZE, sizeof(v64), &v64, NULL);
	dev->local_mem_bytes = v64;
	clGetDeviceInfo(dev->desc->id, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof(wg), &wg, NULL);
	dev->max_work_group_size = wg;
	/* A device that shares the host's memory (a CPU device, an integrated GPU) can run
	 * kernels on a client's shared-memory region in place (zcopy.c). */
	if (clGetDeviceInfo(dev->desc->id, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof(unified),
			    &unified, NULL) == CL_SUCCESS)
		dev->host_unified = unified == CL_TRUE;
	/* A second queue for copies, so that a job's transfers overlap its kernels (gemm-launch.c's
	 * pipelined path); without one, or on host memory where nothing is copied, jobs run
	 * their copies and kernels one after the other. */
	dev->pipeline = device_env_mode("RXGEMMD_PIPELINE");
	if ((!dev->host_unified && dev->pipeline != RXD_PIPELINE_NEVER) ||
	    dev->pipeline == RXD_PIPELINE_ALWAYS) {
		dev->copy_queue = clCreateCommandQueue(dev->ctx, dev->desc->id,
						       dev->profiling ? CL_QUEUE_PROFILING_ENABLE : 0,
						       &err);
		if (!dev->copy_queue)
			log_msg(LOG_INFO, "no second command queue (%s): copies will not overlap "
				"kernels", device_strerror(err));
	}
	log_msg(LOG_NOTICE, "device %u: %s (%s, %u CUs, %.1f GiB, largest buffer %.1f GiB%s%s)",
		dev->desc->index, dev->description, dev->desc->type, dev->desc->compute_units,
		(double)dev->global_mem_bytes / (1 << 30), (double)dev->max_alloc_bytes / (1 << 30),
		dev->host_unified ? ", host memory" : "", dev->profiling ? "" : ", no profiling");
	return 0;
fail:
	device_close(dev);
	return ret;
}

void device_close(struct rxd_device *dev)
{
	if (dev->copy_queue)
		clReleaseCommandQueue(dev->copy_queue);
	if (dev->queue)
		clReleaseCommandQueue(dev->queue);
	if (dev->ctx)
		clReleaseContext(dev->ctx);
	free(dev->all);
	memset(dev, 0, sizeof(*dev));
}

int device_build(struct rxd_device *dev, const char *name, const char *src,
		 const char *options, cl_program *out, char **log)
{
	cl_program prog;
	cl_int err;
	size_t len = 0;

	*out = NULL;
	if (log)
		*log = NULL;
	prog = clCreateProgramWithSource(dev->ctx, 1, &src, NULL, &err);
	if (!prog) {
		log_msg(LOG_ERR, "%s: clCreateProgramWithSource: %s", name, device_strerror(err));
		return -EIO;
	}
	err = clBuildProgram(prog, 1, &dev->desc->id, options, NULL, NULL);
	if (err != CL_SUCCESS) {
		if (log &&
		    clGetProgramBuildInfo(prog, dev->desc->id, CL_PROGRAM_BUILD_LOG, 0, NULL, &len) ==
			    CL_SUCCESS &&
		    (*log = malloc(len + 1))) {
			clGetProgramBuildInfo(prog, dev->desc->id, CL_PROGRAM_BUILD_LOG, len, *log, NULL);
			(*log)[len] = '\0';
		}
		clReleaseProgram(prog);
		log_msg(LOG_ERR, "%s: build with '%s' failed: %s", name, options, device_strerror(err));
		return -EIO;
	}
	*out = prog;
	return 0;
}

cl_int device_wait(const struct rxd_device *dev, cl_event ev)
{
	const struct timespec nap = { 0, RXD_DEVICE_POLL_NS };
	uint64_t until;
	cl_int status, e;

	if (dev->host_unified || !ev)
		return ev ? clWaitForEvents(1, &ev) : CL_SUCCESS;
	until = now_ns() + RXD_DEVICE_SPIN_NS;
	for (;;) {
		e = clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof(status), &status,
				   NULL);
		if (e != CL_SUCCESS)
			return e;
		if (status == CL_COMPLETE)
			return CL_SUCCESS;
		if (status < 0)
			return status;
		if (now_ns() >= until)
			nanosleep(&nap, NULL);
	}
}

cl_int device_finish(const struct rxd_device *dev, cl_command_queue q)
{
	cl_event ev = NULL;
	cl_int e;

	if (dev->host_unified)
		return clFinish(q);
	e = clEnqueueMarker(q, &ev);
	if (e == CL_SUCCESS)
		e = clFlush(q);
	if (e == CL_SUCCESS)
		e = device_wait(dev, ev);
	if (ev)
		clReleaseEvent(ev);
	/* Everything before the marker is done: this returns at once, with any error. */
	return e == CL_SUCCESS ? clFinish(q) : e;
}

bool device_event_span(cl_event ev, uint64_t *start, uint64_t *end)
{
	cl_ulong s = 0, e = 0;

	if (!ev ||
	    clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof(s), &s, NULL) !=
		    CL_SUCCESS ||
	    clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof(e), &e, NULL) !=
		    CL_SUCCESS ||
	    e < s)
		return false;
	*start = s;
	*end = e;
	return true;
}

uint64_t device_event_ns(cl_event ev)
{
	uint64_t start, end;

	return device_event_span(ev, &start, &end) ? end - start : 0;
}

void device_mem_release(cl_mem a, cl_mem b, cl_mem c)
{
	if (a)
		clReleaseMemObject(a);
	if (b)
		clReleaseMemObject(b);
	if (c)
		clReleaseMemObject(c);
}

int device_cl_errno(cl_int e)
{
	return e == CL_MEM_OBJECT_ALLOCATION_FAILURE || e == CL_OUT_OF_RESOURCES ||
			       e == CL_OUT_OF_HOST_MEMORY
		       ? -ENOMEM
		       : -EIO;
}

int device_kernel_args(cl_kernel k, const char *name, ...)
{
	va_list ap;
	cl_uint i = 0;
	cl_int e = CL_SUCCESS;
	size_t size;

	va_start(ap, name);
	while (e == CL_SUCCESS && (size = va_arg(ap, size_t)) != 0) {
		const void *p = va_arg(ap, const void *);
		e = clSetKernelArg(k, i++, size, p);
	}
	va_end(ap);
	if (e != CL_SUCCESS) {
		log_msg(LOG_ERR, "%s: argument %u: %s", name, i - 1, device_strerror(e));
		return -EIO;
	}
	return 0;
}

size_t device_kernel_local(size_t wg, size_t multiple, size_t extent)
{
	size_t max = wg < 256 ? wg : 256, l = multiple;

	if (l < 1 || l > max)
		l = max;
	while (l < extent && 2 * l <= max)
		l *= 2;
	return l;
}

int device_kernel_enqueue(const struct rxd_device *dev, cl_kernel k, const char *name,
			  cl_uint dims, const size_t *offset, const size_t *global,
			  const size_t *local, cl_event *ev)
{
	cl_int e = clEnqueueNDRangeKernel(dev->queue, k, dims, offset, global, local, 0, NULL, ev);

	if (e != CL_SUCCESS) {
		log_msg(LOG_ERR, "%s: clEnqueueNDRangeKernel: %s", name, device_strerror(e));
		return device_cl_errno(e);
	}
	return 0;
}

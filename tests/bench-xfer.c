/* bench-xfer: host <-> device copy bandwidth through OpenCL, for each kind of host memory
 * the daemon could copy from: malloc'd (pageable), a driver-pinned buffer
 * (CL_MEM_ALLOC_HOST_PTR, mapped), a shared-memory region (a memfd mapped MAP_SHARED, as
 * shm.c maps a client's), and that region wrapped once in a CL_MEM_USE_HOST_PTR buffer
 * (copied with clEnqueueCopyBuffer, or with clEnqueueWriteBuffer from the same pointer).
 * It also times a plain memcpy between host memories, one thread and several.
 *
 *   bench-xfer [--device SUBSTRING] [--mib N[,N...]] [--reps R] [--threads T]
 *   bench-xfer [--device SUBSTRING] --vram-probe N
 *   bench-xfer [--device SUBSTRING] --overlap N
 *
 * Prints CSV: mode,direction,mib,median_ms,gbps. --vram-probe runs CMD (the environment's
 * VRAM_PROBE_CMD, e.g. nvidia-smi's memory.used query) before and after wrapping an N MiB
 * shared-memory region in a USE_HOST_PTR buffer and after copying from it, to show
 * whether the wrapper takes device memory of its own. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <CL/cl.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static cl_context ctx;
static cl_command_queue q;
static cl_device_id dev;

static void die(const char *what, cl_int e)
{
	fprintf(stderr, "bench-xfer: %s failed (%d)\n", what, e);
	exit(1);
}

static void pick_device(const char *want)
{
	cl_platform_id plats[16];
	cl_uint np = 0;

	clGetPlatformIDs(16, plats, &np);
	for (cl_uint i = 0; i < np; i++) {
		cl_device_id ds[16];
		cl_uint nd = 0;

		if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, 16, ds, &nd) != CL_SUCCESS)
			continue;
		for (cl_uint j = 0; j < nd; j++) {
			char pn[256], dn[256], both[600];

			clGetPlatformInfo(plats[i], CL_PLATFORM_NAME, sizeof(pn), pn, NULL);
			clGetDeviceInfo(ds[j], CL_DEVICE_NAME, sizeof(dn), dn, NULL);
			snprintf(both, sizeof(both), "%s %s", pn, dn);
			if (!want || strcasestr(both, want)) {
				dev = ds[j];
				fprintf(stderr, "bench-xfer: %s\n", both);
				return;
			}
		}
	}
	fprintf(stderr, "bench-xfer: no device matches\n");
	exit(77);
}

struct cp_arg {
	char *dst;
	const char *src;
	size_t bytes;
};

static void *cp_thread(void *p)
{
	struct cp_arg *a = p;

	memcpy(a->dst, a->src, a->bytes);
	return NULL;
}

/* memcpy split over t threads. */
static void par_copy(void *dst, const void *src, size_t bytes, int t)
{
	pthread_t th[64];
	struct cp_arg args[64];
	size_t piece = (bytes / (size_t)t + 4095) & ~(size_t)4095;

	for (int i = 0; i < t; i++) {
		size_t off = piece * (size_t)i;

		args[i].dst = (char *)dst + off;
		args[i].src = (const char *)src + off;
		args[i].bytes = off >= bytes ? 0 : (bytes - off < piece ? bytes - off : piece);
		pthread_create(&th[i], NULL, cp_thread, &args[i]);
	}
	for (int i = 0; i < t; i++)
		pthread_join(th[i], NULL);
}

static void report(const char *mode, const char *dir, size_t bytes, double *v, int n)
{
	double m = median(v, n);

	printf("%s,%s,%zu,%.3f,%.2f\n", mode, dir, bytes >> 20, m * 1e3, (double)bytes / m / 1e9);
	fflush(stdout);
}

static void probe(const char *when)
{
	const char *cmd = getenv("VRAM_PROBE_CMD");

	printf("# %s: ", when);
	fflush(stdout);
	if (cmd && system(cmd) != 0)
		printf("(probe failed)\n");
	else if (!cmd)
		printf("(set VRAM_PROBE_CMD)\n");
	fflush(stdout);
}

static int vram_probe(size_t bytes)
{
	int fd = memfd_create("bench-xfer-probe", MFD_CLOEXEC);
	cl_mem d, wrap;
	char *shm;
	cl_int e;

	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0)
		return 1;
	shm = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (shm == MAP_FAILED)
		return 1;
	memset(shm, 1, bytes);
	d = clCreateBuffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
	if (!d)
		die("clCreateBuffer", e);
	clEnqueueWriteBuffer(q, d, CL_TRUE, 0, bytes, shm, 0, NULL, NULL);
	probe("device buffer made and written");
	wrap = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, bytes, shm, &e);
	if (!wrap)
		die("clCreateBuffer(USE_HOST_PTR)", e);
	probe("region wrapped");
	for (int i = 0; i < 3; i++)
		clEnqueueWriteBuffer(q, d, CL_TRUE, 0, bytes, shm, 0, NULL, NULL);
	probe("after three writes from the region");
	clReleaseMemObject(wrap);
	probe("wrapper released");
	clReleaseMemObject(d);
	munmap(shm, bytes);
	close(fd);
	return 0;
}

/* --overlap: does a copy on a second queue run while a kernel runs on the first? Times a
 * busy kernel alone, a copy of bytes alone (from a driver-pinned buffer and from a wrapped
 * region), and both together; and how long the non-blocking enqueue of the copy itself
 * takes (a driver that copies at enqueue time overlaps nothing). */
static const char *spin_src =
	"__kernel void spin(__global float *x, int iters) {\n"
	"  size_t i = get_global_id(0); float v = x[i];\n"
	"  for (int k = 0; k < iters; k++) v = v * 0.999f + 0.001f;\n"
	"  x[i] = v;\n"
	"}\n";

static int overlap(size_t bytes)
{
	cl_command_queue_properties prof = getenv("XFER_PROFILING") ? CL_QUEUE_PROFILING_ENABLE : 0;
	cl_command_queue q2 = clCreateCommandQueue(ctx, dev, prof, NULL);
	cl_program prog = clCreateProgramWithSource(ctx, 1, &spin_src, NULL, NULL);
	cl_kernel k;
	cl_mem x, d, pin, wrap;
	size_t global = 1 << 20;
	int iters = 20000, fd = memfd_create("bench-xfer-overlap", MFD_CLOEXEC);
	char *pinned, *shm;
	cl_int e;

	if (!q2 || clBuildProgram(prog, 1, &dev, "", NULL, NULL) != CL_SUCCESS)
		die("overlap setup", 0);
	k = clCreateKernel(prog, "spin", &e);
	x = clCreateBuffer(ctx, CL_MEM_READ_WRITE, global * 4, NULL, &e);
	d = clCreateBuffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
	pin = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, bytes, NULL, &e);
	pinned = clEnqueueMapBuffer(q, pin, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, bytes, 0, NULL,
				    NULL, &e);
	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0)
		die("memfd", 0);
	shm = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	memset(shm, 1, bytes);
	memset(pinned, 1, bytes);
	wrap = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, bytes, shm, &e);
	clSetKernelArg(k, 0, sizeof(x), &x);
	clSetKernelArg(k, 1, sizeof(iters), &iters);
	printf("case,ms\n");
	for (int rep = 0; rep < 3; rep++) {
		const char *names[2] = { "pinned", "region" };
		char *src[2] = { pinned, shm };
		double t0, t1;

		t0 = now_s();
		clEnqueueNDRangeKernel(q, k, 1, NULL, &global, NULL, 0, NULL, NULL);
		clFinish(q);
		printf("kernel-alone,%.3f\n", (now_s() - t0) * 1e3);
		for (int m = 0; m < 2; m++) {
			t0 = now_s();
			clEnqueueWriteBuffer(q2, d, CL_FALSE, 0, bytes, src[m], 0, NULL, NULL);
			t1 = now_s();
			clFinish(q2);
			printf("copy-alone-%s,%.3f\nenqueue-only-%s,%.3f\n", names[m],
			       (now_s() - t0) * 1e3, names[m], (t1 - t0) * 1e3);
			t0 = now_s();
			clEnqueueNDRangeKernel(q, k, 1, NULL, &global, NULL, 0, NULL, NULL);
			clFlush(q);
			clEnqueueWriteBuffer(q2, d, CL_FALSE, 0, bytes, src[m], 0, NULL, NULL);
			clFlush(q2);
			clFinish(q);
			clFinish(q2);
			printf("kernel+copy-%s,%.3f\n", names[m], (now_s() - t0) * 1e3);
		}
	}
	/* The daemon's pipeline in miniature: 4 chunks, each uploaded on q2 (whole or as a
	 * rectangle of rows) while the kernel of the last runs on q, waiting on its upload's
	 * event; against the same work one after the other on q. */
	iters = 60000;
	clSetKernelArg(k, 1, sizeof(iters), &iters);
	for (int rep = 0; rep < 3; rep++) {
		for (int rect = 0; rect < 2; rect++) {
			size_t part = bytes / 4, cols = 1024, pitch = bytes / cols;
			cl_event up[4], kev[4];
			double t0;

			t0 = now_s();
			for (int z = 0; z < 4; z++) {
				if (!rect) {
					clEnqueueWriteBuffer(q, d, CL_FALSE, part * (size_t)z, part,
							     shm + part * (size_t)z, 0, NULL, NULL);
				} else {
					size_t o[3] = { pitch / 4 * (size_t)z, 0, 0 };
					size_t r[3] = { pitch / 4, cols, 1 };
					clEnqueueWriteBufferRect(q, d, CL_FALSE, o, o, r, pitch, 0, pitch,
								 0, shm, 0, NULL, NULL);
				}
				clEnqueueNDRangeKernel(q, k, 1, NULL, &global, NULL, 0, NULL, NULL);
			}
			clFinish(q);
			printf("serial-%s,%.3f\n", rect ? "rect" : "whole", (now_s() - t0) * 1e3);
			t0 = now_s();
			for (int z = 0; z < 4; z++) {
				if (!rect) {
					clEnqueueWriteBuffer(q2, d, CL_FALSE, part * (size_t)z, part,
							     shm + part * (size_t)z, 0, NULL, &up[z]);
				} else {
					size_t o[3] = { pitch / 4 * (size_t)z, 0, 0 };
					size_t r[3] = { pitch / 4, cols, 1 };
					clEnqueueWriteBufferRect(q2, d, CL_FALSE, o, o, r, pitch, 0, pitch,
								 0, shm, 0, NULL, &up[z]);
				}
			}
			printf("enqueue-uploads-%s,%.3f\n", rect ? "rect" : "whole", (now_s() - t0) * 1e3);
			clFlush(q2);
			for (int z = 0; z < 4; z++)
				clEnqueueNDRangeKernel(q, k, 1, NULL, &global, NULL, 1, &up[z], &kev[z]);
			clFlush(q);
			clFinish(q);
			clFinish(q2);
			printf("pipelined-%s,%.3f\n", rect ? "rect" : "whole", (now_s() - t0) * 1e3);
			for (int z = 0; z < 4; z++)
				clReleaseEvent(up[z]), clReleaseEvent(kev[z]);
		}
	}
	(void)wrap;
	return 0;
}

int main(int argc, char **argv)
{
	const char *want = NULL;
	long probe_mib = 0, overlap_mib = 0;
	char sizes[256] = "4,64,256";
	int reps = 10, threads = 8;
	cl_int e;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--device") && i + 1 < argc)
			want = argv[++i];
		else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
			snprintf(sizes, sizeof(sizes), "%s", argv[++i]);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--vram-probe") && i + 1 < argc)
			probe_mib = atol(argv[++i]);
		else if (!strcmp(argv[i], "--overlap") && i + 1 < argc)
			overlap_mib = atol(argv[++i]);
		else {
			fprintf(stderr, "usage: bench-xfer [--device S] [--mib N,..] [--reps R] "
				"[--threads T] [--vram-probe N] [--overlap N]\n");
			return 2;
		}
	}
	if (reps < 1 || reps > 1000 || threads < 1 || threads > 64)
		return 2;
	pick_device(want);
	ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &e);
	if (!ctx)
		die("clCreateContext", e);
	q = clCreateCommandQueue(ctx, dev, getenv("XFER_PROFILING") ? CL_QUEUE_PROFILING_ENABLE : 0,
				 &e);
	if (!q)
		die("clCreateCommandQueue", e);
	if (probe_mib > 0)
		return vram_probe((size_t)probe_mib << 20);
	if (overlap_mib > 0)
		return overlap((size_t)overlap_mib << 20);
	printf("mode,direction,mib,median_ms,gbps\n");
	for (char *tok = strtok(sizes, ","); tok; tok = strtok(NULL, ",")) {
		size_t bytes = (size_t)atol(tok) << 20;
		double *t = calloc((size_t)reps, sizeof(double));
		char *pageable = malloc(bytes), *pinned, *shm;
		cl_mem d = clCreateBuffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
		cl_mem pin = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, bytes,
					    NULL, &e);
		cl_mem wrap;
		int fd = memfd_create("bench-xfer", MFD_CLOEXEC);
		double t0;

		if (!d || !pin || !pageable || fd < 0 || ftruncate(fd, (off_t)bytes) < 0)
			die("setup", e);
		pinned = clEnqueueMapBuffer(q, pin, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, bytes, 0,
					    NULL, NULL, &e);
		shm = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (!pinned || shm == MAP_FAILED)
			die("map", e);
		memset(pageable, 1, bytes), memset(pinned, 2, bytes), memset(shm, 3, bytes);
		clEnqueueWriteBuffer(q, d, CL_TRUE, 0, bytes, pageable, 0, NULL, NULL);

#define TIME(mode, dir, stmt)                                                               \
	do {                                                                                \
		for (int r = -2; r < reps; r++) {                                           \
			t0 = now_s();                                                       \
			stmt;                                                               \
			clFinish(q);                                                        \
			if (r >= 0)                                                         \
				t[r] = now_s() - t0;                                        \
		}                                                                           \
		report(mode, dir, bytes, t, reps);                                          \
	} while (0)

		TIME("pageable", "h2d", clEnqueueWriteBuffer(q, d, CL_FALSE, 0, bytes, pageable, 0, NULL, NULL));
		TIME("pageable", "d2h", clEnqueueReadBuffer(q, d, CL_FALSE, 0, bytes, pageable, 0, NULL, NULL));
		TIME("pinned", "h2d", clEnqueueWriteBuffer(q, d, CL_FALSE, 0, bytes, pinned, 0, NULL, NULL));
		TIME("pinned", "d2h", clEnqueueReadBuffer(q, d, CL_FALSE, 0, bytes, pinned, 0, NULL, NULL));
		TIME("pinned-copybuf", "h2d", clEnqueueCopyBuffer(q, pin, d, 0, 0, bytes, 0, NULL, NULL));
		TIME("pinned-copybuf", "d2h", clEnqueueCopyBuffer(q, d, pin, 0, 0, bytes, 0, NULL, NULL));
		TIME("memfd", "h2d", clEnqueueWriteBuffer(q, d, CL_FALSE, 0, bytes, shm, 0, NULL, NULL));
		TIME("memfd", "d2h", clEnqueueReadBuffer(q, d, CL_FALSE, 0, bytes, shm, 0, NULL, NULL));
		t0 = now_s();
		wrap = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, bytes, shm, &e);
		if (!wrap)
			die("clCreateBuffer(USE_HOST_PTR)", e);
		printf("usehost-create,-,%zu,%.3f,0\n", bytes >> 20, (now_s() - t0) * 1e3);
		TIME("usehost-copybuf", "h2d", clEnqueueCopyBuffer(q, wrap, d, 0, 0, bytes, 0, NULL, NULL));
		TIME("usehost-copybuf", "d2h", clEnqueueCopyBuffer(q, d, wrap, 0, 0, bytes, 0, NULL, NULL));
		TIME("usehost-write", "h2d", clEnqueueWriteBuffer(q, d, CL_FALSE, 0, bytes, shm, 0, NULL, NULL));
		TIME("usehost-read", "d2h", clEnqueueReadBuffer(q, d, CL_FALSE, 0, bytes, shm, 0, NULL, NULL));
		/* d2h into the wrapper, then a map to see the bytes where the client does */
		TIME("usehost-copybuf+map", "d2h", {
			void *p;
			clEnqueueCopyBuffer(q, d, wrap, 0, 0, bytes, 0, NULL, NULL);
			p = clEnqueueMapBuffer(q, wrap, CL_TRUE, CL_MAP_READ, 0, bytes, 0, NULL, NULL, &e);
			clEnqueueUnmapMemObject(q, wrap, p, 0, NULL, NULL);
		});
		TIME("usehost-unmap+copybuf", "h2d", {
			void *p = clEnqueueMapBuffer(q, wrap, CL_TRUE, CL_MAP_WRITE, 0, bytes, 0, NULL, NULL, &e);
			clEnqueueUnmapMemObject(q, wrap, p, 0, NULL, NULL);
			clEnqueueCopyBuffer(q, wrap, d, 0, 0, bytes, 0, NULL, NULL);
		});
		clReleaseMemObject(wrap);
		if (mlock(shm, bytes) == 0) {
			TIME("memfd-mlocked", "h2d", clEnqueueWriteBuffer(q, d, CL_FALSE, 0, bytes, shm, 0, NULL, NULL));
			munlock(shm, bytes);
		}
		TIME("memcpy-1t", "shm2pin", memcpy(pinned, shm, bytes));
		TIME("memcpy-Nt", "shm2pin", par_copy(pinned, shm, bytes, threads));
		TIME("memcpy-Nt", "pin2shm", par_copy(shm, pinned, bytes, threads));
		clEnqueueUnmapMemObject(q, pin, pinned, 0, NULL, NULL);
		clFinish(q);
		clReleaseMemObject(pin);
		clReleaseMemObject(d);
		munmap(shm, bytes);
		close(fd);
		free(pageable);
		free(t);
	}
	return 0;
}

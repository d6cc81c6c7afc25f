/* engine.h: the device side of the daemon: the OpenCL device, the kernel cache, the GEMM
 * engine, the device-memory budget and admission, the NAS step kinds and jobs, and the
 * device worker thread that runs them all (worker.c).
 *
 * Threads: the libuv loop thread owns the listening socket, every connection, the
 * statistics and the configuration. The device worker thread (worker.c) owns the OpenCL
 * command queue and runs jobs one at a time. They meet only in worker.c, under w->lock: the
 * scheduler's queues (sched.c, jobs to run), the job running and the list of jobs done;
 * besides, a running job's cancel flag is atomic. No lock is ever held while taking
 * another. The loop thread (loop.h) reaches this side through the worker's API
 * (worker_submit and the rest) and the job it hands over; the NAS plan cache (nascache.c)
 * is the one other structure both threads use, under its own lock. */
#ifndef RXGEMMD_ENGINE_H
#define RXGEMMD_ENGINE_H

#include <stdatomic.h>
#include <stdio.h>

#include <pthread.h>
#include <CL/cl.h>

#include "common.h"
#include "nasplan.h"
#include "scheduler.h"

/* ---- device.c: the OpenCL platforms, devices and the one device this daemon serves ---- */
struct rxd_device_desc {
	uint32_t index;
	cl_platform_id platform;
	cl_device_id id;
	char platform_name[128];
	char name[128];
	char type[16];
	char version[128];
	char driver[64];
	uint64_t global_mem_bytes;
	uint32_t compute_units;
	uint32_t clock_mhz;
};

struct rxd_kcache;

enum { RXD_PIPELINE_AUTO = 0, RXD_PIPELINE_ALWAYS, RXD_PIPELINE_NEVER };
/* The environment variable name's auto, always or never as RXD_PIPELINE_*: auto when
 * unset, or (with a warning) anything else. */
int device_env_mode(const char *name);

struct rxd_device {
	struct rxd_device_desc *all; /* every device of every platform, in index order */
	size_t n_all;
	const struct rxd_device_desc *desc; /* the one in use, within all[] */
	cl_context ctx;
	cl_command_queue queue;       /* used by the device worker thread only */
	cl_command_queue copy_queue;  /* the worker's second queue, for copies that overlap
				       * kernels; NULL: none (host memory, or not made) */
	int pipeline;                 /* RXD_PIPELINE_*, from $RXGEMMD_PIPELINE: auto (copy
				       * queue on devices with memory of their own), always
				       * (also on host memory, every job of two K steps or more:
				       * the tests), never */
	char description[512];        /* platform / device / OpenCL version / driver */
	uint64_t global_mem_bytes;
	uint64_t max_alloc_bytes;
	uint64_t local_mem_bytes;
	size_t max_work_group_size;
	bool profiling;               /* the queue gives event times */
	bool host_unified;            /* CL_DEVICE_HOST_UNIFIED_MEMORY: the device works on
				       * host memory (CPU devices, integrated GPUs) */
	struct rxd_kcache *kcache;    /* where programs are built (kcache.c), from device_open;
				       * not owned; NULL: build without caching */
};

/* Enumerate the devices and open the one that selector names (an index from
 * --list-devices, or a case-insensitive substring of "platform device"); NULL picks the
 * first GPU, else the first device. Programs are built through kcache (may be NULL; it
 * must outlive dev). 0, -ENODEV (nothing matches; logged) or -EIO. */
int device_open(struct rxd_device *dev, const char *selector, struct rxd_kcache *kcache);
void device_close(struct rxd_device *dev);
/* Print every platform and device to f (for --list-devices). 0 or -ENODEV. */
int device_list(FILE *f);
/* The same as one JSON object {"devices": [...]}, the keys those of rxgemm devices --json
 * (no in_use: nothing is open). 0 or -ENODEV (then {"devices": []} and an error key). */
int device_list_json(FILE *f);
/* Build src for dev with options. On failure *log (malloc'd, may be NULL) holds the
 * compiler's output. 0 or -EIO. */
int device_build(struct rxd_device *dev, const char *name, const char *src,
		 const char *options, cl_program *out, char **log);
const char *device_strerror(cl_int err);
/* Wait for ev, whose queue has been flushed. On a device with memory of its own the status
 * is polled, without pause for RXD_DEVICE_SPIN_NS, then every RXD_DEVICE_POLL_NS: NVIDIA's
 * driver wakes a blocked waiter (clWaitForEvents, clFinish) up to 2 ms after the event,
 * longer than a whole small job (a 1024^3 GEMM's copies and kernel take 0.3 ms on an
 * H200), and a NAS evaluation or a long GEMM outlasts any spin. The worker thread is the
 * device's, so its polling costs no one; on host memory (PoCL) it would take a core from
 * the kernels: there it blocks. CL_SUCCESS or the event's error. */
#define RXD_DEVICE_SPIN_NS 3000000ull
#define RXD_DEVICE_POLL_NS 50000
cl_int device_wait(const struct rxd_device *dev, cl_event ev);
/* clFinish(q) through a marker and device_wait, for the same reason. */
cl_int device_finish(const struct rxd_device *dev, cl_command_queue q);
/* A finished event's start and end on the device's clock (ns): false when the device
 * gives none (or ev is NULL). */
bool device_event_span(cl_event ev, uint64_t *start, uint64_t *end);
/* Elapsed device time of a finished event, 0 when the device gives none. */
uint64_t device_event_ns(cl_event ev);
/* The errno for an OpenCL error: -ENOMEM for the out-of-memory and out-of-resources
 * codes, -EIO for the rest. */
int device_cl_errno(cl_int e);
/* Set kernel k's arguments from (size_t size, const void *value) pairs ended by a size of
 * 0; name is for the log. 0 or -EIO (logged). */
int device_kernel_args(cl_kernel k, const char *name, ...);
/* Work-items per work-group along dimension 0 for an extent of elements: the kernel's
 * preferred multiple, doubled while the extent has work for it, within the kernel's
 * work-group size wg and 256 (more brings nothing to memory-bound kernels). */
size_t device_kernel_local(size_t wg, size_t multiple, size_t extent);
/* clEnqueueNDRangeKernel on dev->queue, the failure logged with name: 0, -ENOMEM or
 * -EIO. */
int device_kernel_enqueue(const struct rxd_device *dev, cl_kernel k, const char *name,
			  cl_uint dims, const size_t *offset, const size_t *global,
			  const size_t *local, cl_event *ev);
/* Release a GEMM's three buffers, any of which may be NULL. */
void device_mem_release(cl_mem a, cl_mem b, cl_mem c);

/* ---- kcache.c: built programs, kept in memory and on disk ---- */
#define RXD_DEFAULT_CACHE_MAX (256ull << 20)

/* The cache is opaque (kcache.c): built programs and counters behind its own leaf lock,
 * shared by whoever builds (the start-up, the device worker). */
struct rxd_kcache;

struct rxd_kcache_stats {
	const char *dir; /* "" when there is no disk cache; valid while the cache is */
	bool writable;
	uint64_t max_bytes, entries, bytes, hits, misses, memory_hits, rejected, evictions;
	uint64_t compile_ns, load_ns;
};

/* A new cache in dir (NULL: kcache_default_dir) holding at most max_bytes of entries
 * (0: no disk cache), in *out. A directory that cannot be made or written is a warning, not
 * an error: the cache then reads what it can and compiles the rest. 0 or -ENOMEM. */
int kcache_create(struct rxd_kcache **out, const char *dir, uint64_t max_bytes);
/* Release every program the cache holds and free it. NULL is allowed. */
void kcache_destroy(struct rxd_kcache *kc);
/* The directory in use; NULL when there is no disk cache. Valid while the cache is. */
const char *kcache_dir(const struct rxd_kcache *kc);
/* Like device_build, and with the same results: *out is a new reference the caller
 * releases. Returns the program from memory, else from a valid disk entry, else compiles
 * it and stores its binary. kc NULL: device_build. Any thread. 0, -EIO or -ENOMEM. */
int kcache_build(struct rxd_kcache *kc, struct rxd_device *dev, const char *name,
		 const char *src, const char *options, cl_program *out, char **log);
void kcache_stats(struct rxd_kcache *kc, struct rxd_kcache_stats *out);
/* The "kernels: N loaded from cache, M compiled in X ms" line for start-up. */
void kcache_log_summary(struct rxd_kcache *kc);
/* Remove every entry (and temporary file) from dir (NULL: the default), nothing else.
 * 0 (also when dir does not exist) or a negative errno (logged). */
int kcache_clear(const char *dir);
/* $CACHE_DIRECTORY (its first path) under systemd, else /var/cache/rxgemmd as root, else
 * $XDG_CACHE_HOME/rxgemmd, else $HOME/.cache/rxgemmd. 0, -ENOENT or -ENAMETOOLONG. */
int kcache_default_dir(char *buf, size_t len);

/* The entry format, little-endian: a header, then the program binary (the payload). The
 * header check is the first 8 bytes of the SHA-256 of the header before it. */
#define RXD_KCACHE_FORMAT_VERSION 1
#define RXD_KCACHE_OFF_MAGIC 0            /* "RXGKCACH" */
#define RXD_KCACHE_OFF_FORMAT 8           /* u32 RXD_KCACHE_FORMAT_VERSION */
#define RXD_KCACHE_OFF_HEADER_BYTES 12    /* u32 RXD_KCACHE_HEADER_BYTES */
#define RXD_KCACHE_OFF_KEY 16             /* 32 bytes: kcache_key */
#define RXD_KCACHE_OFF_PAYLOAD_BYTES 48   /* u64 */
#define RXD_KCACHE_OFF_PAYLOAD_SHA256 56  /* 32 bytes */
#define RXD_KCACHE_OFF_HEADER_CHECK 88    /* 8 bytes */
#define RXD_KCACHE_HEADER_BYTES 96

void kcache_entry_header(uint8_t hdr[RXD_KCACHE_HEADER_BYTES], const uint8_t key[32],
			 const void *payload, size_t payload_bytes);
/* Check the entry buf[0..len) against key. 0 with the payload pointing into buf, or
 * -ENODATA (truncated), -EBADMSG (corrupt), -EPROTO (another format version), -ESTALE
 * (written for another key). */
int kcache_entry_check(const uint8_t *buf, size_t len, const uint8_t key[32],
		       const uint8_t **payload, size_t *payload_bytes);
const char *kcache_entry_strerror(int err);
/* The SHA-256 of everything a program binary depends on: rxgemmd's version, the platform
 * and device (name, vendor, driver and OpenCL versions), the options and the source. */
void kcache_key(cl_device_id dev, const char *src, const char *options, uint8_t key[32]);

/* ---- kernels.c (generated from kernels/NAME.cl by kernels/embed.sh) ---- */
struct rxd_kernel_source {
	const char *name; /* file name, e.g. "gemm.cl" */
	const char *text;
};
extern const struct rxd_kernel_source rxd_kernel_sources[];
extern const size_t rxd_kernel_sources_count;
const char *kernels_find(const char *name);

/* ---- gemm.c (the engine: build, self-test, choice) and gemm-launch.c (launch) ---- */

/* An operand the client may still be writing when the job starts (GemmRequest.a_ready,
 * b_ready): it is complete once the word, in the operand's own region (which the job
 * holds), holds value. gemm_ready_wait waits for it; word NULL: nothing to wait for. */
struct rxd_ready {
	const uint64_t *word;
	uint64_t value;
	const char *field;     /* "a_ready" or "b_ready", as the request named it */
	uint32_t region_id;
	uint64_t offset;
};

/* A validated GEMM (wire_gemm_validate) in the column-major form the kernels compute: a
 * row-major request is turned into the column-major product C^T = op(B)^T op(A)^T by
 * swapping the operands. */
struct rxd_gemm {
	int64_t m, n, k;       /* of the column-major problem */
	bool trans_a, trans_b;
	float alpha, beta;
	const float *a, *b;    /* into the request's bytes; a is the column-major first operand */
	const float *c;        /* NULL when not sent */
	int64_t lda, ldb, ldc; /* resolved, never 0 */
	size_t a_elems, b_elems, c_elems; /* floats each buffer needs (c_elems: the minimum),
					   * all batch_count matrices of it together */
	int64_t batch_count;   /* >= 1: matrix triples, each stride_* floats after the last */
	int64_t stride_a, stride_b, stride_c;
	size_t c_given_elems;  /* floats sent in c (0 when none) */
	uint64_t flops;        /* 2 m n k */
	int64_t user_m, user_n, user_k; /* the request's own shape, for logs and status */
	/* Set (by another thread) when the job is cancelled; NULL: not cancellable. Whoever
	 * runs g checks it between pieces and chunks and then stops with
	 * RXD_S_CANCELLED. */
	atomic_bool *cancel;
	int splitk;            /* K slices: 0 the engine decides, 1 none, s forced (tests) */
	/* A job's GEMM (admitted): its memory was planned and reserved by admission
	 * (admit.c), split-K's workspace included (splitk_ws_bytes of splitk_ws; NULL: none),
	 * so nothing more is reserved for it: split-K runs only in that workspace. Not
	 * admitted (self-tests, the tuner): the workspace is reserved for the daemon. */
	bool admitted;
	cl_mem splitk_ws;
	uint64_t splitk_ws_bytes;
	/* a's and b's ready words (of the column-major problem: swapped with the operands
	 * for a row-major request), and how long gemm_ready_wait spins before it naps. */
	struct rxd_ready ready[2];
	uint64_t ready_spin_ns;
};

struct rxd_limits {
	uint64_t max_buffer_bytes; /* the device's largest allocation */
	uint64_t max_total_bytes;  /* all of one job's buffers together */
};

/* Kernel families: the edge-handling tiled kernel (kernels/gemm.cl) for small and odd
 * problems, the register-blocked one (kernels/gemm_reg.cl) for large ones, and for CPU
 * devices the vector outer-product one (kernels/gemm_vec.cl: op(A) = A only; its config
 * is tsm = wptm = vwm = VW rows, tsn = wptn = NB columns per work-item, tsk = the K chunk
 * per launch, 0 for none). */
enum rxd_gemm_kernel { RXD_GEMM_TILED = 0, RXD_GEMM_REG = 1, RXD_GEMM_VEC = 2 };

/* One point of the kernels' parameter space (the -D macros of the .cl files). */
struct rxd_gemm_config {
	int kernel;            /* enum rxd_gemm_kernel */
	int tsm, tsn, tsk;     /* work-group tile of C and K step */
	int wptm, wptn;        /* elements of C per work-item */
	int vwm, vwn;          /* reg: local-memory read width, 1 or 4 */
	int pada, padb;        /* reg: local row padding, floats */
	int madd;              /* reg: 0 a*b+c, 1 mad(), 2 fma() */
};

/* Classes of C, each with its own kernel choice: four by size (gemm_class_of) and two
 * for thin C, where a square tile would be mostly padding. */
#define RXD_GEMM_CLASSES 6
#define RXD_GEMM_CLASS_THIN_N 4 /* n <= 64 and m >= 4 n */
#define RXD_GEMM_CLASS_THIN_M 5 /* m <= 64 and n >= 4 m */

struct rxd_gemm_variant;
struct rxd_budget;
struct rxd_gemm_engine {
	struct rxd_device *dev;
	struct rxd_gemm_variant *variants; /* built and self-tested kernels */
	size_t n_variants, cap_variants;
	int choice[2][2][RXD_GEMM_CLASSES]; /* [trans_a][trans_b][class] -> variant */
	double tuned_gflops[2][2][RXD_GEMM_CLASSES]; /* measured by the tuner; 0: default */
	bool tuned;                        /* choices come from tune_run or tune_load */
	uint64_t build_ns;                 /* time spent compiling at start-up */
	struct rxd_budget *budget;         /* every device buffer (split.c, the self-tests, the
					    * tuner), from gemm_init; NULL: made per use,
					    * unaccounted (rxgemm-bench, unit tests) */
};

/* Build every kernel variant the engine will use, so that no job pays a compile. Every
 * device buffer comes from budget (may be NULL: made directly; it must outlive eng), the
 * self-tests' included. 0 or -EIO (logged with the compiler's output). */
int gemm_init(struct rxd_gemm_engine *eng, struct rxd_device *dev, struct rxd_budget *budget);
void gemm_fini(struct rxd_gemm_engine *eng);

/* "reg:128x128x16:8x8:v4x4:p0x0:m0" or "tiled:64x64x16:4x4". */
int gemm_config_name(const struct rxd_gemm_config *c, char *buf, size_t len);
int gemm_config_parse(const char *s, struct rxd_gemm_config *c);
bool gemm_config_valid(const struct rxd_gemm_config *c);
int gemm_class_of(int64_t m, int64_t n);
/* Build and self-test a variant (or find it built); its index, or -EIO when it does not
 * fit, build or pass on this device, or -ENOMEM. */
int gemm_engine_add(struct rxd_gemm_engine *eng, bool trans_a, bool trans_b,
		    const struct rxd_gemm_config *cfg);
const char *gemm_variant_name(const struct rxd_gemm_engine *eng, int variant);
const struct rxd_gemm_config *gemm_variant_config(const struct rxd_gemm_engine *eng,
						  int variant);
/* The first built variant of a kernel family for a transpose pair, or -1. */
int gemm_find_variant(const struct rxd_gemm_engine *eng, bool trans_a, bool trans_b,
		      int kernel);
/* The variant that serves g. */
int gemm_choose(const struct rxd_gemm_engine *eng, const struct rxd_gemm *g);
/* Enqueue the kernel alone on buffers already on the device (the tuner). */
cl_int gemm_enqueue(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		    cl_mem a, cl_mem b, cl_mem c, cl_event *ev);
/* Compute g on buffers already on the device with variant, and wait for it: as one
 * launch; as split-K (K slices into a workspace from the budget, then a sum into C) when C
 * has too few tiles to fill the device; or in chunks of C's columns (or of the batch),
 * each about RXD_GEMM_CHUNK_MS of work, checking g->cancel between them. *kernel_ns gets
 * the kernels' device time. An RXD_S_* status (status.h), with a sentence in err. */
#define RXD_GEMM_CHUNK_MS 100
int gemm_compute(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		 cl_mem a, cl_mem b, cl_mem c, uint64_t *kernel_ns, struct rxd_error *err);
/* gemm_compute with A, B and C starting a_off, b_off and c_off floats into their buffers
 * (each buffer then a shared-memory region's wrapper, zcopy.c); the variant is self-tested
 * at offsets first (gemm_prepare_at) when one is not 0. */
int gemm_compute_at(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		    cl_mem a, int64_t a_off, cl_mem b, int64_t b_off, cl_mem c, int64_t c_off,
		    uint64_t *kernel_ns, struct rxd_error *err);
/* gemm_compute whose last kernel is not waited for: *tail gets its event (or NULL when
 * there is none to wait for) and the caller, having queued what follows it (C's
 * download), waits for that and adds device_event_ns(*tail) to *kernel_ns. A job in one
 * launch then costs one wait on the host, not two, and its download starts as its kernel
 * ends instead of a host round trip later. On an error *tail is NULL. */
int gemm_compute_tail(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		      cl_mem a, cl_mem b, cl_mem c, uint64_t *kernel_ns, cl_event *tail,
		      struct rxd_error *err);
/* The K slices gemm_compute would use for g with variant (1: no split-K). */
int gemm_splitk_slices(const struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g);
/* The workspace split-K takes for g in slices (0 for 1). */
uint64_t gemm_splitk_bytes(const struct rxd_gemm *g, int slices);

struct rxd_job_timings {
	uint64_t h2d_ns, kernel_ns, d2h_ns;
};

/* Run g on the device; c_out receives g->c_elems floats. Device thread only. Returns an
 * RXD_S_* status (status.h) with a sentence in err on failure; *kernel names the variant. */
int gemm_run(struct rxd_gemm_engine *eng, const struct rxd_gemm *g, float *c_out,
	     struct rxd_job_timings *t, const char **kernel, struct rxd_error *err);
/* How long a job waits for a ready word before it fails with RXD_S_TIMEOUT. */
#define RXD_READY_WAIT_MS 2000
/* Wait until g's operand which (0: a, 1: b; 2: both) is complete (struct rxd_ready). A
 * status code: RXD_S_OK, RXD_S_TIMEOUT (with the word named in err) or RXD_S_CANCELLED. */
int gemm_ready_wait(const struct rxd_gemm *g, int which, struct rxd_error *err);
/* gemm_run_variant on buffers the caller made (at least g's a, b and c elems each). */
int gemm_run_buffers(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		     cl_mem a, cl_mem b, cl_mem c, float *c_out, struct rxd_job_timings *t,
		     struct rxd_error *err);
/* Three device buffers of bytes[i] each, reserved in eng->budget for the daemon itself
 * (owner 0, never waiting) when there is one, else made directly. 0, -E2BIG (over the
 * budget), -EAGAIN (the room is taken now) or -ENOMEM with *cl_err the OpenCL error.
 * gemm_buffers_put gives them back (to the pool). */
struct rxd_budget_res;
int gemm_buffers_get(struct rxd_gemm_engine *eng, struct rxd_budget_res *res,
		     const uint64_t bytes[3], cl_mem mem[3], cl_int *cl_err);
void gemm_buffers_put(struct rxd_gemm_engine *eng, struct rxd_budget_res *res, cl_mem mem[3]);
/* The same with a given variant, its buffers from gemm_buffers_get. */
int gemm_run_variant(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		     float *c_out, struct rxd_job_timings *t, struct rxd_error *err);
/* Self-test variant at odd buffer offsets against the CPU reference, once (every kernel
 * takes offsets; this checks the paths nasops.c uses): a failure is remembered.
 * Device thread only. 0, -EIO (logged), or -EAGAIN when the budget has no room for the
 * test's buffers now (not remembered: tried again at the next use). */
int gemm_prepare_at(struct rxd_gemm_engine *eng, int variant);
/* gemm_enqueue with A, B and C starting a_off, b_off and c_off floats into their buffers
 * (nasops.c: tensors and channel slices inside larger buffers); gemm_prepare_at first
 * when that has not been done. The offsets are 64-bit; every index from them on (strides
 * times the batch included) must fit an int. Device thread only. CL_SUCCESS,
 * CL_BUILD_PROGRAM_FAILURE, or the enqueue's error. */
cl_int gemm_enqueue_at(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		       cl_mem a, int64_t a_off, cl_mem b, int64_t b_off, cl_mem c, int64_t c_off,
		       cl_event *ev);

/* ---- budget.c: the device-memory budget, quotas and the buffer pool ---- */
/* Every buffer a job uses comes from here, charged to a reservation the job made before it
 * ran: the sum of reservations plus the pool's idle buffers never exceeds budget_bytes.
 * A job's one reservation is made by admission (admit.c), which plans it. The daemon's
 * own buffers (the GEMM kernels' self-tests, the tuner) come from it too, reserved for
 * owner 0; a tuning size class that does not fit is skipped. Only rxgemm-bench, which has
 * no budget, makes its buffers directly. Nothing waits here: see admit.c.
 *
 * Threads: the device worker reserves, takes buffers and releases; the loop thread reads
 * budget_stats and changes the limits on SIGHUP. The budget's lock (budget.c) guards all
 * of its state; it is a leaf lock, never held while calling out (OpenCL, libuv, the
 * alloc/free callbacks), and never taken while holding the worker's or the kcache's lock
 * (nor they while holding it). */
#define RXD_DEFAULT_VRAM_BUDGET (8ull << 30)
/* The kernels' self-tests take up to about 1.3 MiB (whole tiles of the largest variants):
 * under this the daemon could not even check its kernels. */
#define RXD_MIN_VRAM_BUDGET (4ull << 20)
#define RXD_BUDGET_MIN_BUFFER 4096ull /* the smallest size class of the pool */

struct rxd_budget_buf;

/* One job's claim on the budget (budget_reserve .. budget_release). */
struct rxd_budget_res {
	struct rxd_budget_res *next; /* in the budget's list of live reservations */
	uint32_t owner;              /* the connection, for the quota */
	uint64_t bytes;              /* reserved */
	uint64_t used_bytes;         /* of buffers taken, within bytes */
	struct rxd_budget_buf *bufs; /* taken from the pool or made for this reservation */
	bool live;
	bool resident;               /* a device tensor's (budget_reserve_resident) */
};

struct rxd_budget_stats {
	uint64_t budget_bytes, quota_bytes, reserved_bytes, in_use_bytes, peak_bytes;
	uint64_t resident_bytes;
	uint64_t pool_bytes, pool_buffers, allocations, reuses, evictions, split_jobs;
};

/* Opaque (budget.c): everything in it is under its lock, which only budget.c takes. */
struct rxd_budget;

/* A new budget; budget_bytes must be >= RXD_MIN_VRAM_BUDGET. alloc and free make the
 * buffers (see above); budget_cl_alloc/budget_cl_free with ctx a struct rxd_device * do it
 * with OpenCL. NULL when out of memory. */
struct rxd_budget *budget_create(uint64_t budget_bytes, uint64_t quota_bytes,
				 int (*alloc)(void *, uint64_t, void **, int *),
				 void (*free_fn)(void *, void *), void *ctx);
/* Free the pool and b; every reservation must have been released. NULL is allowed. */
void budget_destroy(struct rxd_budget *b);
int budget_cl_alloc(void *dev, uint64_t bytes, void **mem, int *err);
void budget_cl_free(void *dev, void *mem);
/* The budget for a configuration: the percentage of global memory when percent > 0, else
 * bytes (0: RXD_DEFAULT_VRAM_BUDGET), never more than global_mem_bytes. */
uint64_t budget_resolve(uint64_t bytes, double percent, uint64_t global_mem_bytes);
/* SIGHUP: new limits for reservations made from now on (live ones keep theirs). */
void budget_set_limits(struct rxd_budget *b, uint64_t budget_bytes, uint64_t quota_bytes);
/* Call on_freed(arg) (NULL: nothing), on whichever thread it happens and without the
 * budget's lock, whenever room may have come back for a job that did not fit: a resident
 * reservation released, the limits changed. The worker wakes its parked jobs so. */
void budget_set_notify(struct rxd_budget *b, void (*on_freed)(void *arg), void *arg);
/* The size class a buffer of bytes is made in: at least RXD_BUDGET_MIN_BUFFER, rounded up
 * to an eighth of its power of two (at most 12.5% more), so that the pool can reuse it. */
uint64_t budget_round(uint64_t bytes);
/* Reserve bytes for owner, atomically against the budget and the owner's quota, freeing
 * idle pool buffers when that makes the room; never waiting. 0, -E2BIG (more than the
 * budget less the resident reservations), -EDQUOT (over the owner's quota) or -EAGAIN
 * (the room is taken by other reservations now). */
int budget_reserve(struct rxd_budget *b, struct rxd_budget_res *res, uint32_t owner,
		   uint64_t bytes);
/* A reservation that outlives jobs (a device tensor, tensor.c): counted as resident, so
 * that other reservations see the budget less it (more than that is -E2BIG for them).
 * Errors as budget_reserve's. */
int budget_reserve_resident(struct rxd_budget *b, struct rxd_budget_res *res, uint32_t owner,
			    uint64_t bytes);
/* A buffer of at least bytes for res: an idle one of its size class from the pool, else a
 * new one. It stays res's until budget_release. 0, -ENOSPC (over the reservation: a bug)
 * or alloc's error. */
int budget_buf_get(struct rxd_budget *b, struct rxd_budget_res *res, uint64_t bytes,
		   void **mem, int *err);
/* End res: its buffers go to the pool, idle and still counted. Safe on a reservation that
 * never was made. */
void budget_release(struct rxd_budget *b, struct rxd_budget_res *res);
/* Free every idle buffer (after a device allocation failure: the pool may be to blame). */
void budget_trim(struct rxd_budget *b);
void budget_note_split(struct rxd_budget *b);
void budget_stats(struct rxd_budget *b, struct rxd_budget_stats *out);
/* The budget's size now (SIGHUP may change it on the loop thread); 0 for NULL. */
uint64_t budget_limit(struct rxd_budget *b);
/* The live reservations now; *owner_live (may be NULL) gets those of owner. */
uint32_t budget_live_count(struct rxd_budget *b, uint32_t owner, uint32_t *owner_live);

/* ---- split.c: running a job within the budget, in pieces when it must be ---- */
/* A job's pieces: blocks of mb x nb x kb over bb matrices of the batch. */
struct rxd_split_plan {
	int64_t mb, nb, kb, bb;
	uint64_t piece_bytes;   /* device memory one piece needs (its three buffers) */
	uint64_t whole_bytes;   /* what the job needs as one piece, with its leading dimensions */
	bool split;             /* more than one piece */
};

/* Plan g within limit_bytes, no buffer above max_buffer_bytes. 0, or -E2BIG when even a
 * 1 x 1 x 1 piece does not fit (plan->piece_bytes then says what that needs). */
int split_plan(const struct rxd_gemm *g, uint64_t limit_bytes, uint64_t max_buffer_bytes,
	       struct rxd_split_plan *plan);
/* Admit g (admit_gemm) in b for owner, run it whole or in pieces and release; like
 * gemm_run otherwise. Device thread only. */
int split_run(struct rxd_gemm_engine *eng, struct rxd_budget *b, uint32_t owner,
	      const struct rxd_gemm *g, float *c_out, struct rxd_job_timings *t,
	      const char **kernel, struct rxd_error *err);
struct rxd_admit;
/* Run g, admitted in a (admit_gemm with every buffer made), on buffers taken from a, whole
 * or in the pieces of a's plan. */
int split_run_admitted(struct rxd_gemm_engine *eng, struct rxd_admit *a,
		       const struct rxd_gemm *g, float *c_out, struct rxd_job_timings *t,
		       const char **kernel, struct rxd_error *err);

/* ---- admit.c: admission: a job's device memory planned once, reserved once, released
 * once ---- */
/* The worker admits every job that makes device buffers before it runs (worker.c): the
 * plan names each buffer, one reservation for the job's owner covers them all, the job
 * takes them from it (admit_take) and admit_release ends it. The worker runs one job at a
 * time, so only device tensors hold the budget when a job is admitted: a job is planned
 * within what they leave (in pieces); one that does not fit so but would beside fewer
 * tensors is refused with a->later set, and waits in the scheduler (sched_park); one over
 * the budget or the client's quota is refused. Device worker thread only. */
#define RXD_ADMIT_MAX_BUFFERS 4 /* a plan's buffers: A, B, C, split-K's workspace */

struct rxd_admit {
	struct rxd_device *dev;
	struct rxd_budget *budget;   /* NULL: buffers made directly, unaccounted (tests) */
	struct rxd_budget_res res;
	bool reserved;
	bool later;                  /* refused for now only: it fits once device tensors
				      * give room back (the worker parks the job) */
	uint64_t bytes;              /* the reservation: the buffers below, each a size class */
	/* A GEMM: its pieces (one, the whole job, unless split), the bytes of the A, B and C
	 * buffers made for it (0: an operand on the device already) and split-K's workspace
	 * (0: none; taken by admit_gemm into the job's g). */
	struct rxd_split_plan split;
	uint64_t gemm_bytes[3];
	uint64_t splitk_bytes;
	/* A NAS evaluation: images per piece; weights, activation arena and im2col scratch. */
	int32_t nas_piece;
	uint64_t nas_weight_bytes, nas_arena_bytes, nas_scratch_bytes;
	cl_mem made[RXD_ADMIT_MAX_BUFFERS]; /* without a budget: to release */
	int n_made;
};

/* Plan g within the budget b (NULL: none) for owner and reserve it: make[i] says whether
 * the job makes A's, B's and C's buffer (false: on the device already: a tensor, a region
 * run in place). With all three made the job may run in pieces (split.c). Split-K's
 * workspace is planned too when there is room for it, taken from the reservation into
 * g->splitk_ws, and g->admitted set. RXD_S_OK, or STATUS_TOO_BIG (STATUS_QUOTA for a job
 * on device tensors over its client's quota) with a sentence in err and a->later set when
 * it would fit beside fewer tensors; a then holds nothing. */
int admit_gemm(struct rxd_gemm_engine *eng, struct rxd_budget *b, uint32_t owner,
	       struct rxd_gemm *g, const bool make[3], struct rxd_admit *a,
	       struct rxd_error *err);
struct rxd_nas_job;
struct rxd_nasops;
/* Plan nj (its largest batch piece that fits, nas_job_plan) and reserve it. RXD_S_OK,
 * STATUS_UNSUPPORTED (ops NULL), STATUS_TOO_BIG or NO_MEMORY with a sentence in err. */
int admit_nas(struct rxd_nas_job *nj, struct rxd_nasops *ops, struct rxd_budget *b,
	      uint32_t owner, struct rxd_admit *a, struct rxd_error *err);
/* One of the planned buffers, bytes, from a's reservation (the pool's idle buffers are
 * freed and the allocation tried again once when the device is short). 0, -ENOSPC (not
 * planned: a bug) or -ENOMEM with *cl_err the OpenCL error. */
int admit_take(struct rxd_admit *a, uint64_t bytes, cl_mem *mem, int *cl_err);
/* End the job's claim: its buffers go back (to the pool). Nothing the job enqueued may
 * still use them. Safe on an admission that failed or never was. */
void admit_release(struct rxd_admit *a);

/* ---- zcopy.c: a GEMM in place on shared-memory regions (devices on host memory) ---- */
struct rxd_region;
#define RXD_JOB_REGIONS 4 /* a, b, c and c_out */
/* Whether g can run in place: enabled (--zero-copy auto), a device on host memory, and A,
 * B and C's destination c_dest each inside one of regions (those a job holds, NULL-padded)
 * and wrapped for the device (done here, once per region). Device worker thread. */
bool zcopy_prepare(const struct rxd_gemm_engine *eng, bool enabled, const struct rxd_gemm *g,
		   struct rxd_region *const regions[RXD_JOB_REGIONS], const float *c_dest);
/* Run g in place (after zcopy_prepare said yes), C into c_dest; t's h2d and d2h are the
 * host's time spent making the views agree (no copies on a CPU device). Like gemm_run
 * otherwise. */
int zcopy_run(struct rxd_gemm_engine *eng, const struct rxd_gemm *g,
	      struct rxd_region *const regions[RXD_JOB_REGIONS], float *c_dest,
	      struct rxd_job_timings *t, const char **kernel, struct rxd_error *err);

/* ---- shm.c and tensor.c, their device side: the regions and tensors a job holds ----
 * Made, listed and counted by reference on the loop thread (loop.h); a job in flight holds
 * a reference to each one it uses, and the device worker reads and writes only those. */
/* A client's shared-memory region (shm.c). */
struct rxd_region {
	uint32_t id;          /* the connection's number for it (never reused there) */
	int refs;             /* the connection's table (while registered) + one per job */
	uint8_t *base;        /* the mapping; the memfd itself is closed once mapped */
	uint64_t bytes;
	/* The mapping wrapped in a CL_MEM_USE_HOST_PTR buffer (shm_region_wrap, the device
	 * worker, at the region's first job); released before the unmap. NULL until then,
	 * and for good when wrapping failed (wrap_failed). */
	cl_mem mem;
	bool wrap_failed;
};

/* Device worker thread, for a region its job holds: wrap the mapping in a
 * CL_MEM_USE_HOST_PTR buffer of ctx, once. On a device with memory of its own this pins
 * the pages with drivers that pin such buffers (NVIDIA's: copies from and to the region
 * then run at the bus's full speed, 4-5x faster than from pageable memory); on a device
 * that works on host memory, kernels run on the region in place (zcopy.c). Regions over
 * RXD_SHM_WRAP_MAX_BYTES are not wrapped (pinning would commit every page of a sparse
 * file). 0, or -E2BIG, -ENOMEM: the region then works as plain host memory. */
#define RXD_SHM_WRAP_MAX_BYTES (16ull << 30)
int shm_region_wrap(struct rxd_region *r, cl_context ctx, uint64_t max_alloc_bytes);
/* The one of regions (those a job holds, NULL-padded) that holds all of [p, p + bytes),
 * or NULL. Any thread: it reads only what a job's reference keeps fixed. */
struct rxd_region *shm_region_holding(struct rxd_region *const regions[RXD_JOB_REGIONS],
				      const void *p, uint64_t bytes);

/* A device tensor (tensor.c). */
#define RXD_TENSOR_MAX_DIMS 3

struct rxd_tensor {
	uint32_t id;             /* the connection's number for it (never reused there); 0
				  * until listed */
	int refs;
	int ndims;
	int64_t dims[RXD_TENSOR_MAX_DIMS];
	uint64_t floats;         /* dims multiplied */
	cl_mem mem;              /* made by tensor_make; NULL before */
	struct rxd_budget *budget; /* where res lives; NULL: mem made directly */
	struct rxd_budget_res res;
};

/* The status and sentence for a failed budget_reserve (ret) of bytes for what: TOO_BIG or
 * QUOTA, naming the budget, the quota or the tensors that hold it. */
int tensor_budget_fail(struct rxd_budget *b, int ret, const char *what, uint64_t bytes,
		       struct rxd_error *err);
/* Device worker: reserve x's buffer in b (resident, for owner, never waiting; b NULL:
 * made directly) and fill it from data (x->floats floats; NULL: zeros). A status code:
 * STATUS_TOO_BIG (over the budget, or what tensors leave of it), STATUS_QUOTA (over the
 * owner's quota), with a sentence in err. */
int tensor_make(struct rxd_tensor *x, struct rxd_device *dev, struct rxd_budget *b,
		uint32_t owner, const void *data, struct rxd_job_timings *t, struct rxd_error *err);
/* Device worker: copy x's floats into out. A status code. */
int tensor_read_run(struct rxd_tensor *x, struct rxd_device *dev, void *out,
		    struct rxd_job_timings *t, struct rxd_error *err);
/* Device worker: run g with the operands tensors[i] (the column-major a, b, C's input
 * and C's destination; NULL: from the host as g says) in place, the host operands
 * uploaded into buffers taken from a (admit_gemm, make[i] true for what is not a tensor:
 * such jobs are never split). C goes into tensors[3] when set, else into c_out on the
 * host. Like gemm_run otherwise. */
int tensor_gemm_run(struct rxd_gemm_engine *eng, struct rxd_admit *a, const struct rxd_gemm *g,
		    struct rxd_tensor *const tensors[4], float *c_out, struct rxd_job_timings *t,
		    const char **kernel, struct rxd_error *err);

/* ---- tune.c: searching kernel configurations, remembering the winners ---- */
/* Time a grid of configurations for every transpose pair and size class, within budget_s
 * seconds, and make the fastest that agree with the reference the engine's choices.
 * tty: draw a progress bar on stderr. 0 or -ENOMEM. */
int tune_run(struct rxd_gemm_engine *eng, double budget_s, bool tty);
/* The configurations the tuner tries (at most max of them into out); their count. */
size_t tune_grid(struct rxd_gemm_config *out, size_t max);
/* Store the engine's choices in dir, in a file named by the device and driver; load them
 * back (each is built and self-tested again). 0, -ENOENT (nothing stored for this device
 * and driver) or -errno. */
int tune_save(const struct rxd_gemm_engine *eng, const char *dir);
int tune_load(struct rxd_gemm_engine *eng, const char *dir);

/* ---- nasops.c: the step kinds of a NAS network on the device (kernels/nas.cl) ---- */
/* Tensors are NCHW float32, contiguous, at an element offset in a buffer. Every step
 * writes channels [c_off, c_off + C) of its output tensor (whose c is the total, so that
 * a cell's concat costs nothing), overwriting (y = scale * op(x)) or accumulating
 * (y += scale * op(x)). Steps only enqueue on dev->queue (in order) and never wait:
 * buffers must stay alive until the queue has finished them. Device worker thread only.
 * Offsets are 64-bit; every index within a tensor or weight array must fit an int (at
 * most INT_MAX elements each).
 * Errors: -EINVAL (a shape or parameter that does not fit; nothing was enqueued), -E2BIG
 * (past the int indexing), -ENOMEM (device or host memory), -EIO (an OpenCL call failed;
 * logged). */
struct rxd_nas_tensor {
	cl_mem mem;
	int64_t off;                 /* elements from the start of mem */
	int32_t n, c, h, w;
};

/* How a step writes its C channels into the output tensor. */
struct rxd_nas_write {
	int32_t c_off;               /* first channel of the slice */
	bool accumulate;             /* add to what is there (false: overwrite) */
	float scale;                 /* multiplies op(x); 1 except in weighted sums */
	const struct rxd_nas_tensor *add; /* NULL, or a tensor of y's n, h and w whose channels
				      * [add_c_off, + C) are added times add_scale (conv, pool
				      * and copy only): an identity edge costs no step */
	int32_t add_c_off;
	float add_scale;
};

/* A convolution, BN folded into weight and bias (nas_fold: scale gamma / sqrt(var + eps) into each output channel). */
struct rxd_nas_conv {
	int32_t c_out;               /* output channels, the slice's width */
	int32_t kh, kw;
	int32_t stride_h, stride_w;  /* >= 1 */
	int32_t pad_h, pad_w;        /* zeros around the (shifted) input */
	int32_t dil_h, dil_w;        /* >= 1 */
	int32_t groups;              /* 1: dense; c_in == c_out == groups: depthwise */
	bool relu_in;                /* ReLU on the input as it is read */
	int32_t in_shift;            /* 0, or 1: read x[:, :, 1:, 1:] (FactorizedReduce) */
	cl_mem weight;               /* [c_out][c_in / groups][kh][kw] */
	int64_t weight_off;
	cl_mem bias;                 /* [c_out]; NULL: none */
	int64_t bias_off;
};

enum rxd_nas_pool_kind { RXD_NAS_POOL_MAX = 0, RXD_NAS_POOL_AVG = 1 };

struct rxd_nas_pool {
	int kind;                    /* enum rxd_nas_pool_kind; avg excludes the padding */
	int32_t kh, kw, stride_h, stride_w, pad_h, pad_w;
};

struct rxd_nas_linear {
	int32_t out;                 /* output features, the slice's width */
	cl_mem weight;               /* [out][in], in = x's c * h * w */
	int64_t weight_off;
	cl_mem bias;                 /* [out]; NULL: none */
	int64_t bias_off;
};

/* For profiling: the first and the last kernel of one or more steps. A step sets first
 * when it is NULL and replaces last, so that a span zeroed before several steps covers
 * them all. Release with nasops_span_release. */
struct rxd_nas_span {
	cl_event first, last;
};

enum {
	RXD_NAS_K_CONV, RXD_NAS_K_IM2COL, RXD_NAS_K_BIAS, RXD_NAS_K_POOL, RXD_NAS_K_COPY,
	RXD_NAS_K_ZERO, RXD_NAS_K_GAP, RXD_NAS_K_LINEAR, RXD_NAS_K_DWCONV, RXD_NAS_K_PW,
	RXD_NAS_K_PWS, RXD_NAS_K_CVS, RXD_NAS_K_PWV,
	/* their narrow variants (PS_CN channels), in the same order */
	RXD_NAS_K_PWS_N, RXD_NAS_K_CVS_N, RXD_NAS_K_PWV_N,
	/* nas_dwr<k>s<stride>d<dilation>: eight in the order of nasops_dwr_index */
	RXD_NAS_K_DWR, RXD_NAS_K_DWR_LAST = RXD_NAS_K_DWR + 7,
	/* nas_dwrv<k>d<dilation>: the four at stride 1 with float4 rows (nasops_conv_dwr) */
	RXD_NAS_K_DWRV, RXD_NAS_K_DWRV_LAST = RXD_NAS_K_DWRV + 3, RXD_NAS_KERNELS
};

struct rxd_nasops {
	struct rxd_device *dev;
	struct rxd_gemm_engine *eng; /* dense convolutions and linear layers go through its
				      * GEMM; NULL: through nas.cl's direct kernels */
	cl_program program;
	cl_kernel kernels[RXD_NAS_KERNELS];
	size_t wg[RXD_NAS_KERNELS];  /* the most work-items a work-group of each may have */
	size_t wg_multiple[RXD_NAS_KERNELS]; /* its preferred work-group size multiple */
	cl_mem scratch;              /* im2col's columns: a job's, lent (nasops_lend_scratch),
				      * else made for the self-tests, owned */
	uint64_t scratch_bytes;
	bool scratch_lent;
	uint64_t scratch_max_bytes;  /* a convolution's columns are made this many at a time */
	bool dw_tiled;               /* depthwise convolutions through nas_dwconv's tiles in
				      * local memory: on devices whose local memory is their own
				      * (GPUs); on host memory (PoCL) the caches do it already */
	bool dw_rows;                /* depthwise convolutions of the search space's shapes
				      * through nas_dwr (register rows), before the others */
	bool dw_vec;                 /* and through nas_dwrv (rows read as float4s) where
				      * they fit */
	size_t dw_local_bytes;       /* the local memory one nas_dwconv work-group may take */
	size_t item_max[3];          /* CL_DEVICE_MAX_WORK_ITEM_SIZES */
	bool pw_direct;              /* dense 1x1 convolutions through nas_pw (no im2col, no
				      * bias pass), not the GEMM engine (RXGEMMD_NAS_KERNELS) */
	bool dwpw_fused;             /* nasops_dwpw as one nas_pw launch (the depthwise output
				      * never written), not two convolutions */
	size_t pw_local_bytes;       /* the local memory one nas_pw work-group may take */
	int pw_rp, pw_rc;            /* nas_pw's register tile: pixels by channels a work-item */
	bool pw_stream;              /* dense 1x1 convolutions through nas_pws (registers only,
				      * no local memory), before nas_pw and the GEMM engine */
	int ps_p, ps_c;              /* nas_pws's register tile: pixels by channels a work-item */
	int ps_cn;                   /* the narrow variants' channels (half of ps_c) */
	uint32_t ps_wide;            /* work-items per compute unit from which a launch takes
				      * ps_c channels a work-item, not ps_cn */
	bool pw_vec;                 /* and through nas_pwv (float4 loads) where it fits */
	bool conv_stream;            /* other dense convolutions through nas_cvs, nas_pws's
				      * layout for any window, not im2col and the GEMM engine */
	struct rxd_nas_rec *rec;     /* set: the step functions record instead of enqueueing */
};

/* A plan's launches recorded once (nasops_rec_begin, then nasops_rec_step before each
 * step's calls, nasops_rec_end) and replayed for every run: each nas.cl launch has a
 * kernel object of its own with its arguments set, so a run only enqueues. The buffers
 * the steps were given must outlive it, and the im2col scratch must not be replaced
 * (nasops_rec_valid says whether it was). Device worker thread only. */
struct rxd_nas_launch;
struct rxd_nas_rec {
	struct rxd_nas_launch *v;
	size_t n, cap;
	size_t *step_first;          /* step i's launches: [step_first[i], step_first[i + 1]) */
	size_t n_steps, cap_steps;
	cl_kernel cur[RXD_NAS_KERNELS]; /* the objects whose arguments are being set */
	cl_mem scratch;              /* the scratch buffer its launches use; NULL: none */
	bool failed;                 /* out of memory or kernels, or the scratch replaced */
	bool ready;                  /* recorded and replayable */
	const void *owner;           /* the caller's tag (nasjob.c: the plan) */
};

/* Build kernels/nas.cl for dev (through dev->kcache) and check every step kind on small
 * shapes against a CPU loop. eng may be NULL (see above); it must outlive ops.
 * 0, -EIO (logged) or -ENOMEM. */
int nasops_init(struct rxd_nasops *ops, struct rxd_device *dev, struct rxd_gemm_engine *eng);
void nasops_fini(struct rxd_nasops *ops);
/* Wait for the queue and let go of the im2col scratch (freed when it was not lent): a NAS
 * job's is lent from its reservation, so it must not outlive the job (nas_job_run calls
 * this at its end). */
void nasops_release_scratch(struct rxd_nasops *ops);
/* Lend ops the job's scratch, bytes of mem (from its reservation; ops never frees it),
 * for the convolutions until nasops_release_scratch. A convolution that would need more
 * fails (-ENOSPC). */
void nasops_lend_scratch(struct rxd_nasops *ops, cl_mem mem, uint64_t bytes);
/* The one rule for the scratch: the bytes of im2col columns nasops_conv makes for a
 * convolution cv of n images of c_in channels into h_out x w_out; 0 when it makes none
 * (read in place, grouped, no GEMM engine). Admission (admit.c) sums a plan's need from
 * it. */
uint64_t nasops_conv_scratch_bytes(const struct rxd_nasops *ops, int32_t n, int32_t c_in,
				   const struct rxd_nas_conv *cv, int32_t h_out, int32_t w_out);
/* The output extent of a convolution or pool along one axis, or -1 when there is none. */
int32_t nasops_out_dim(int32_t in, int32_t k, int32_t stride, int32_t pad, int32_t dil);
/* y's h and w must be those of the (shifted) x convolved; y->c >= wr->c_off + c_out. */
int nasops_conv(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
		const struct rxd_nas_conv *cv, const struct rxd_nas_tensor *y,
		const struct rxd_nas_write *wr, struct rxd_nas_span *span);
/* A depthwise convolution dw of x (into mid, which the unfused path writes and the fused
 * one leaves alone) then a dense 1x1 convolution pw into y's slice: half a SepConv, or a
 * DilConv. mid is x's n, dw's c_out channels, the convolution's output plane. */
int nasops_dwpw(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
		const struct rxd_nas_conv *dw, const struct rxd_nas_tensor *mid,
		const struct rxd_nas_conv *pw, const struct rxd_nas_tensor *y,
		const struct rxd_nas_write *wr, struct rxd_nas_span *span);
int nasops_pool(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
		const struct rxd_nas_pool *p, const struct rxd_nas_tensor *y,
		const struct rxd_nas_write *wr, struct rxd_nas_span *span);
/* Identity (skip_connect at stride 1): x and y of the same n, h, w. */
int nasops_copy(struct rxd_nasops *ops, const struct rxd_nas_tensor *x, bool relu_in,
		const struct rxd_nas_tensor *y, const struct rxd_nas_write *wr,
		struct rxd_nas_span *span);
/* Zeros into c channels at wr->c_off; nothing at all when wr->accumulate ('none'). */
int nasops_zero(struct rxd_nasops *ops, int32_t c, const struct rxd_nas_tensor *y,
		const struct rxd_nas_write *wr, struct rxd_nas_span *span);
/* Global average pool: y is n x C_total x 1 x 1, x's c channels go to the slice. */
int nasops_gap(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
	       const struct rxd_nas_tensor *y, const struct rxd_nas_write *wr,
	       struct rxd_nas_span *span);
/* y[n][c_off + o] (y is n x C_total x 1 x 1) = x[n] (c * h * w features) . W[o] + b[o]. */
int nasops_linear(struct rxd_nasops *ops, const struct rxd_nas_tensor *x,
		  const struct rxd_nas_linear *l, const struct rxd_nas_tensor *y,
		  const struct rxd_nas_write *wr, struct rxd_nas_span *span);
/* Recording: see struct rxd_nas_rec. nasops_rec_begin frees what rec held. */
void nasops_rec_begin(struct rxd_nasops *ops, struct rxd_nas_rec *rec);
int nasops_rec_step(struct rxd_nasops *ops);
void nasops_rec_end(struct rxd_nasops *ops);
bool nasops_rec_valid(const struct rxd_nasops *ops, const struct rxd_nas_rec *rec);
/* Enqueue step's launches (span as the step functions take it). 0, or -EIO and the like. */
int nasops_rec_replay(struct rxd_nasops *ops, const struct rxd_nas_rec *rec, size_t step,
		      struct rxd_nas_span *span);
void nasops_rec_free(struct rxd_nas_rec *rec);
/* The kernel of rec's launch i by name ("GEMM": the engine's), NULL past the last: which
 * kernels a step took, for the tests. */
const char *nasops_rec_kernel(const struct rxd_nas_rec *rec, size_t i);
/* What the step kinds here and their backward passes (nasgrad.c) check and share: elems
 * floats from off lie inside mem, with indices from off within an int (0, -EINVAL or
 * -E2BIG); a tensor's shape and range likewise; its floats; ev (may be NULL) added to span
 * (may be NULL), which takes ev's reference. */
int nasops_check_range(cl_mem mem, int64_t off, int64_t elems);
int nasops_check_tensor(const struct rxd_nas_tensor *t);
int64_t nasops_elems(const struct rxd_nas_tensor *t);
void nasops_span_add(struct rxd_nas_span *span, cl_event ev);
/* end(last) - start(first), once both have finished; 0 without profiling or events. */
uint64_t nasops_span_ns(const struct rxd_nas_span *s);
void nasops_span_release(struct rxd_nas_span *s);

/* ---- nascache.c: plans kept for the next job on the same network ---- */
/* A table of at most capacity plans, keyed by the config that made them (its fields that
 * shape the plan), the least recently used evicted. Used by the loop and the device
 * worker thread; lock is a leaf lock. */
struct rxd_nas_cache_entry;
struct rxd_nas_cache {
	pthread_mutex_t lock;
	bool ready;                  /* nascache_init succeeded */
	uint32_t capacity;           /* 0: nothing is kept */
	uint32_t n;
	struct rxd_nas_cache_entry *entries;
	uint64_t tick, hits, misses, evictions;
};

struct rxd_nas_cache_stats {
	uint32_t capacity, entries;
	uint64_t hits, misses, evictions;
	uint64_t bytes;              /* host memory of the plans kept */
};

/* capacity 0: every lookup plans afresh. 0 or -ENOMEM. */
int nascache_init(struct rxd_nas_cache *nc, uint32_t capacity);
void nascache_fini(struct rxd_nas_cache *nc);
/* nas_build through the table (nc may be NULL: no table): on a hit plan is a copy of the
 * plan kept, else it is built and a copy kept. The same returns as nas_build. */
int nascache_build(struct rxd_nas_cache *nc, const struct rxd_nas_config *cfg,
		   struct rxd_nas_plan *plan, struct rxd_error *err);
void nascache_stats(struct rxd_nas_cache *nc, struct rxd_nas_cache_stats *out);

/* ---- nasjob.c: NAS evaluation jobs (planned on the loop thread, run on the device
 * worker) ---- */
#define RXD_NAS_MAX_WARMUP 100
#define RXD_NAS_MAX_REPEAT 1000

/* An evaluation as the wire layer decoded and checked it (wire_nas_eval): the network
 * with its defaults filled in (a genotype parsed, or a supernet's alphas, which point
 * into the request) and the runs. */
struct rxd_nas_eval {
	struct rxd_nas_config cfg;
	uint32_t warmup, repeat;     /* at most RXD_NAS_MAX_*; repeat >= 1 */
	bool want_logits;
	bool want_breakdown;         /* every step timed by events (by_op, by_cell) */
	uint64_t weight_seed, input_seed;
	const uint8_t *weights;      /* the state_dict blob sent, or NULL: seeded */
	size_t weights_bytes;
	const uint8_t *input;        /* the input batch sent, or NULL: seeded */
	size_t input_bytes;
};

/* One line of a latency breakdown. */
struct rxd_nas_part {
	const char *name;
	uint64_t ns;                 /* per run */
	uint32_t steps;
};

/* What a finished job measured; pointers into the job (valid until nas_job_free). */
struct rxd_nas_result {
	const char *genotype;        /* printed; "" for the supernet */
	uint64_t params, macs, weight_floats, peak_device_bytes, activation_bytes;
	int32_t batch, batch_piece, classes;
	uint32_t steps;
	uint64_t latency_median_ns, latency_p90_ns, latency_mean_ns;
	const uint64_t *run_ns;
	size_t n_run_ns;
	const struct rxd_nas_part *by_op, *by_cell; /* empty unless profiled */
	bool profiled;               /* every step's kernels were timed by events */
	uint64_t unprofiled_median_ns; /* profiled: the median of runs without that */
	size_t n_by_op, n_by_cell;
	const float *logits;         /* NULL unless asked for */
	size_t logits_bytes;
};

struct rxd_nas_job;
/* Loop thread: build ev's plan (through cache, which may be NULL and must outlive the
 * job: the device thread plans through it too), check the weights' and input's lengths
 * against it and its weights against lim (may be NULL); no input or reply may exceed
 * max_reply_bytes. Returns an RXD_S_* status (status.h); on success *out is the job
 * (nas_job_free), which points into ev's bytes: they must outlive it. */
int nas_job_prepare(const struct rxd_nas_eval *ev, const struct rxd_limits *lim,
		    uint64_t max_reply_bytes, struct rxd_nas_cache *cache,
		    struct rxd_nas_job **out, struct rxd_error *err);
struct rxd_nasops;
/* What a job's buffers take on the device for a piece of its batch. */
struct rxd_nas_need {
	uint64_t weight_bytes;       /* the folded weights */
	uint64_t arena_bytes;        /* the activations of the piece (or of the rest) */
	uint64_t scratch_bytes;      /* the im2col columns (nasops_conv_scratch_bytes) */
};
/* Device worker (admission): build nj's plans for pieces of piece images and the rest of
 * the batch, kept in nj for nas_job_run (a later call replaces them), and say what they
 * need. RXD_S_OK, STATUS_TOO_BIG when the weights are more than a buffer holds (no piece
 * helps), NO_MEMORY or INTERNAL, with a sentence in err. */
int nas_job_plan(struct rxd_nas_job *nj, const struct rxd_nasops *ops, int32_t piece,
		 struct rxd_nas_need *need, struct rxd_error *err);
int32_t nas_job_batch(const struct rxd_nas_job *nj);
/* Device worker thread: fold the weights and run the job as admitted in a (admit_nas:
 * nj's plans, their buffers taken from a), the batch in a->nas_piece images at a time;
 * warm-up and timed runs, timed with profiling events per step, stopping between runs
 * once *cancel is set. Returns an RXD_S_* status (status.h) with a sentence in err. */
int nas_job_run(struct rxd_nas_job *nj, struct rxd_nasops *ops, struct rxd_admit *a,
		atomic_bool *cancel, struct rxd_error *err);
/* Fill r from a job that ran; r points into nj (valid until nas_job_free). 0 or -ENOMEM. */
int nas_job_result(struct rxd_nas_job *nj, struct rxd_nas_result *r);
/* The job's estimated work for the scheduler: 2 x multiply-adds x batch x runs. */
uint64_t nas_job_flops(const struct rxd_nas_job *nj);
/* The floats of the weight blob and of the input the job's plan takes. */
uint64_t nas_job_blob_floats(const struct rxd_nas_job *nj);
uint64_t nas_job_input_floats(const struct rxd_nas_job *nj);
/* Device worker, before nas_job_run: use blob (nas_job_blob_floats) or input as the
 * job's weights or input instead of seeded ones (a device tensor read back); nj takes
 * ownership of it. */
void nas_job_give_weights(struct rxd_nas_job *nj, float *blob);
void nas_job_give_input(struct rxd_nas_job *nj, float *input);
void nas_job_free(struct rxd_nas_job *nj);

/* ---- hostbuf.c: large host buffers kept between jobs for reuse ---- */
#define HOSTBUF_MIN_BYTES (1u << 20)   /* smaller buffers are malloc's alone */
#define HOSTBUF_SLOTS 8
#define HOSTBUF_MAX_BYTES (1ull << 30) /* kept, together */
#define HOSTBUF_IDLE_MS 10000          /* a kept buffer nobody took goes back then */

/* A kept buffer of bytes to twice bytes (its usable size in *cap), or NULL: for a caller
 * that falls back to growing its own. Any thread. */
void *hostbuf_take(size_t bytes, size_t *cap);
/* malloc(bytes), from what was kept where something fits. Any thread. */
void *hostbuf_alloc(size_t bytes);
/* free(p), or kept for the next hostbuf_alloc or take: only on the loop thread once
 * hostbuf_attach ran (elsewhere it frees). Any malloc'd p; what hostbuf_take or
 * hostbuf_alloc gave must come back here, never to free() (its pin goes first). */
void hostbuf_free(void *p);
/* Whether [p, p + bytes) lies in a buffer that hostbuf handed out and tracks, pinned: by
 * its pin made before, or by make(base, cap, arg) now for the whole buffer (NULL: it
 * cannot be), which then stays with the buffer while it is in use or kept and is given to
 * the unpin hook before the buffer goes back to the system. false: pin it yourself, or
 * not at all. Any thread; the range must be in use by the caller's job. */
bool hostbuf_pin(const void *p, size_t bytes, void *(*make)(void *base, size_t cap, void *arg),
		 void *arg);
/* How pins are released (the device worker's, before it makes any). Any thread. */
void hostbuf_set_unpin(void (*unpin)(void *pin));
/* Release every pin now (the buffers stay): before the device they belong to goes. */
void hostbuf_unpin_all(void);

struct hostbuf_stats {
	unsigned kept;
	uint64_t kept_bytes, hits, misses;
	unsigned pinned;     /* buffers tracked with a pin now */
	uint64_t pinned_bytes;
	uint64_t pins_made;  /* pins made in all */
};
void hostbuf_stats(struct hostbuf_stats *out);
/* The idle time after which kept buffers go back (tests; before hostbuf_attach). */
void hostbuf_test_idle_ms(unsigned ms);

/* ---- worker.c: the device worker thread and the job queue ---- */
/* Jobs wait in the scheduler (sched.c) under w->lock; the worker takes the next one, runs
 * it without the lock and puts it on the done list. A job leaves early, never run, when
 * its deadline passes (STATUS_TIMEOUT; the loop's deadline timer or the worker finds it),
 * when it is cancelled (STATUS_CANCELLED) or when the daemon stops (STATUS_SHUTDOWN). A
 * running job is cancelled through its cancel flag. */
struct rxd_conn;

enum { RXD_JOB_GEMM = 0, RXD_JOB_NAS = 1, RXD_JOB_TENSOR_CREATE = 2, RXD_JOB_TENSOR_READ = 3,
       RXD_JOB_SEARCH = 4 };

struct rxd_job {
	struct rxd_sched_job sj;     /* owner (conn_id), request_id, cost, deadline, priority */
	struct rxd_job *next;
	int kind;                    /* RXD_JOB_*: what the worker runs */
	struct rxd_nas_job *nas;     /* RXD_JOB_NAS: the network (nasjob.c), owned */
	struct rxd_search_job *search; /* RXD_JOB_SEARCH: the search (searchjob.h), owned */
	struct rxd_conn *conn;       /* holds a reference (conn_ref) */
	uint32_t conn_id;            /* conn's id, for the worker (budget quota) */
	atomic_bool cancel;          /* g.cancel points here: set to stop the job */
	uint64_t request_id;
	void *frame;                 /* owned: the decoded request (the wire layer's); g and
				      * the NAS job point into it */
	void (*frame_free)(void *frame);
	uint64_t bytes_in;           /* operand bytes the request carried inline (statistics) */
	struct rxd_gemm g;
	/* results, written by the worker */
	struct rxd_error err;        /* the outcome: status RXD_S_OK or why not */
	float *c_out;                /* g.c_elems floats, malloc'd by the worker */
	float *c_dest;               /* the client's region where C goes (c_out then stays
				      * NULL), or NULL; set by dispatch, not owned */
	struct rxd_region *regions[RXD_JOB_REGIONS]; /* each one referenced once while the
						      * job is in flight (shm.c); NULL-padded */
	/* Device tensors (tensor.c), each referenced once while the job is in flight: a GEMM's
	 * column-major a, b, C's input and C's destination (NULL: none); a tensor job's
	 * tensor in [0]. */
	struct rxd_tensor *tensors[4];
	const void *tensor_src;      /* TENSOR_CREATE: its floats (request or region); NULL:
				      * zeros */
	const char *kernel;
	bool in_place;               /* ran on the regions themselves (zcopy.c) */
	struct rxd_job_timings dev_t;
	uint64_t received_ns;  /* the frame was whole: total_ns counts from here */
	uint64_t submitted_ns; /* decoded and validated: queued_ns counts from here */
	uint64_t started_ns, finished_ns;
	uint64_t admitted_ns;          /* a GEMM's admission done (worker.c), for the debug log */
	uint64_t held_bytes;   /* charged to conn->jobs_bytes while in flight (dispatch.c) */
};

/* Opaque (worker.c): its queue and done list are under its lock, which only worker.c
 * takes. */
struct rxd_worker;

/* What the worker is given at its start: everything it uses, set before its thread runs. */
struct rxd_worker_init {
	struct rxd_gemm_engine *engine; /* its device, budget and GEMMs; must outlive it */
	struct rxd_nasops *nasops;   /* NAS jobs; NULL: refused */
	bool zero_copy;              /* GEMMs in place on regions where the device allows
				      * (zcopy.c) */
	uint64_t busy_poll_ns;       /* --busy-poll, resolved: 0 off */
	void (*done)(struct rxd_job *job, void *arg); /* every job back, on the loop thread */
	void *done_arg;
	/* Once, on the loop thread, when the device is lost (see worker.c); NULL: nothing is
	 * told. */
	void (*on_lost)(void *arg);
	void *on_lost_arg;
};

/* Start the worker thread on loop with init's wiring; *out is the worker. 0 or a negative
 * errno (nothing to free then). */
struct uv_loop_s; /* libuv's uv_loop_t: only worker.c and the loop side include uv.h */
int worker_start(struct rxd_worker **out, struct uv_loop_s *loop,
		 const struct rxd_worker_init *init);
/* Free w after worker_stop, once the loop has run its handles' closes (uv_run has returned).
 * NULL is allowed. */
void worker_free(struct rxd_worker *w);
/* What it was started with: its engine, and whether it runs NAS jobs. Any thread. */
struct rxd_gemm_engine *worker_engine(const struct rxd_worker *w);
bool worker_serves_nas(const struct rxd_worker *w);
/* --busy-poll as resolved (0: off), told to clients at Hello. */
uint64_t worker_busy_poll_ns(const struct rxd_worker *w);
/* Queue job (job->sj filled in; its conn_id is the owner). Loop thread. 0, or -ENOBUFS
 * (max_queue jobs wait), -EBUSY (the connection's client_max_queue wait), -EINVAL
 * (priority out of range), -ENOMEM, -ESHUTDOWN (stopped), -ENODEV (the device is lost):
 * the job is then still the caller's. */
int worker_submit(struct rxd_worker *w, struct rxd_job *job);
/* job, back from a turn with steps left, into the scheduler again, past the queue bounds
 * (it was admitted once). Loop thread. 0, -ESHUTDOWN or -ENODEV (the caller then answers
 * it). */
int worker_requeue(struct rxd_worker *w, struct rxd_job *job);
/* The queue bounds (0: none), at start and on SIGHUP. Loop thread. */
void worker_set_limits(struct rxd_worker *w, uint32_t max_queue, uint32_t client_max_queue);
/* What worker_cancel found. */
enum rxd_cancel_outcome { RXD_CANCEL_NOT_FOUND = 0, RXD_CANCEL_QUEUED, RXD_CANCEL_RUNNING };
/* Cancel owner's job request_id: a waiting one is taken out and answered CANCELLED
 * (through done, later); a running one has its cancel flag set. Returns the
 * enum rxd_cancel_outcome that says which. Loop thread. */
int worker_cancel(struct rxd_worker *w, uint32_t owner, uint64_t request_id);
/* The connection owner went away: its waiting jobs are taken out (answered CANCELLED to
 * nobody, through done) and its running one is cancelled. Loop thread; safe after
 * worker_stop. */
void worker_forget(struct rxd_worker *w, uint32_t owner);
/* The scheduler's figures and the cancellation count, for status. Loop thread. */
void worker_queue_stats(struct rxd_worker *w, struct rxd_sched_stats *out);
/* Let the running job finish, answer the queued ones with STATUS_SHUTDOWN, join the
 * thread and deliver every finished job. Loop thread; call once. */
void worker_stop(struct rxd_worker *w);
/* How long the worker has been on the job it runs now, in ns; 0 when it is idle. Any
 * thread (the watchdog in sdnotify.c reads it to tell a busy worker from a hung one). */
uint64_t worker_busy_ns(struct rxd_worker *w);
/* Test hook, off unless $RXGEMMD_TEST_HOLD names a directory: while the file "hold" exists
 * there, the worker waits here (between the pieces of a split GEMM) with a file "held"
 * beside it, removed once it goes on. Worker thread. See rxgemmd(8), ENVIRONMENT. */
void worker_test_hold(void);
void job_free(struct rxd_job *job);

#endif

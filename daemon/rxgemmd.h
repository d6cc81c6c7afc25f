/* rxgemmd.h: the daemon's internal header, one section per .c file.
 *
 * Threads: the libuv loop thread owns the listening socket, every connection, the
 * statistics and the configuration. The device worker thread (worker.c) owns the OpenCL
 * command queue and runs jobs one at a time. They meet only in worker.c, under w->lock: the
 * scheduler's queues (sched.c, jobs to run), the job running and the list of jobs done;
 * besides, a running job's cancel flag is atomic. No lock is ever held while taking
 * another. */
#ifndef RXGEMMD_H
#define RXGEMMD_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

#include <pthread.h>
#include <uv.h>
#include <CL/cl.h>

#include "frame.h"
#include "status.h"

/* ---- log.c: stderr with syslog priority prefixes ("<6>"), which journald understands ---- */
void log_set_level(int level);
int log_get_level(void);
/* "debug", "info", "notice", "warning", "error" or a number 0-7; -1 when unknown. */
int log_parse_level(const char *s);
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* For start-up failures and broken invariants only: logs and exits 1. */
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t now_ns(void); /* CLOCK_MONOTONIC */
/* The format: RXGEMMD_LOG_FORMAT "text" (local time and a level word, for people) or
 * "journal" ("<N>" prefixes); unset, text on a terminal outside journald (rxgemmd(8)). */
/* Client text made safe for one log line: printable ASCII and printable UTF-8 characters
 * as they are; controls, the backslash and bytes that are not UTF-8 as \xHH. Writes at
 * most size - 1 bytes and a NUL into dst, never half an escape; returns the length. */
size_t log_escape(char *dst, size_t size, const char *src);
/* Whether s[0..len) is UTF-8 (no overlong forms, surrogates or code points > U+10FFFF). */
bool text_utf8_valid(const char *s, size_t len);
/* Copy src (UTF-8) into dst of size bytes, cut only between characters; returns the length
 * copied. */
size_t text_copy_utf8(char *dst, size_t size, const char *src);

/* ---- config.c: options and the config file ---- */
struct rxd_config {
	char *socket_path;   /* where to listen */
	char *device;        /* --device: index or name substring; NULL: first GPU, else any */
	char *config_path;   /* the file read, or NULL */
	int log_level;
	uint64_t max_frame_bytes;
	uint64_t hang_timeout_ns; /* one job this long means a hung device worker; 0: never */
	bool list_devices;
	bool list_json; /* --json with --list-devices */
	char *cache_dir;            /* --cache-dir; NULL: kcache_default_dir */
	uint64_t cache_max_bytes;   /* --cache-max; 0: no kernel cache on disk */
	bool clear_cache;           /* --clear-cache: empty the kernel cache and exit */
	bool tune;                  /* --tune: search kernels, store the choice, exit */
	double tune_budget_s;       /* how long --tune may search */
	int auto_tune;              /* RXD_AUTO_TUNE_*: search at a first start with no tuning */
	double auto_tune_budget_s;  /* how long that search may take */
	uint64_t vram_budget_bytes;   /* --vram-budget SIZE; 0: see budget_resolve */
	double vram_budget_percent;   /* --vram-budget N%: of the device's memory; 0: bytes */
	uint64_t client_quota_bytes;  /* --client-quota: per connection at once; 0: none */
	uint32_t max_queue;           /* --max-queue: jobs waiting in total; 0: no bound */
	uint32_t client_max_queue;    /* --client-max-queue: per connection; 0: no bound */
	bool zero_copy;               /* --zero-copy auto: GEMMs in place on regions (zcopy.c) */
	/* What one connection may make the daemon hold and for how long (conn.c). */
	uint64_t client_max_memory_bytes; /* --client-max-memory; 0: no bound */
	uint64_t max_memory_bytes;   /* --max-memory: all connections together; 0: no bound */
	uint64_t frame_timeout_ns;    /* --frame-timeout: a frame begun must end within; 0: never */
	uint64_t idle_timeout_ns;     /* --idle-timeout: close one idle this long; 0: never */
	uint64_t stall_timeout_ns;    /* --stall-timeout: close a client that reads none of its
				       * replies this long while over its memory; 0: never */
	uint64_t shutdown_timeout_ns; /* --shutdown-timeout: connections left after it are closed */
	uint32_t nas_plan_cache;      /* --nas-plan-cache: NAS plans kept (nascache.c); 0: none */
	uint32_t client_shm_regions;  /* --client-shm-regions: registered at once per connection */
	uint64_t client_shm_bytes;    /* --client-shm-max: their bytes; 0: only the total bound */
	/* Access control (conn.c, at accept): with either list set, only root, the users of
	 * allow_uids and the members (primary or supplementary) of allow_gids are served. */
	uint32_t *allow_uids, *allow_gids;
	size_t n_allow_uids, n_allow_gids;
	bool allow_uids_set, allow_gids_set;
	bool status_detail_all;       /* --status-detail all: everyone sees every client */
};

#define RXD_DEFAULT_CLIENT_MAX_MEMORY (1ull << 30)
/* Four clients at their own bound; rxgemmd.service's MemoryMax= is reckoned from it. */
#define RXD_DEFAULT_MAX_MEMORY (4ull << 30)
#define RXD_DEFAULT_FRAME_TIMEOUT_NS (30ull * 1000000000ull)
#define RXD_DEFAULT_STALL_TIMEOUT_NS (60ull * 1000000000ull)
#define RXD_DEFAULT_SHUTDOWN_TIMEOUT_NS (5ull * 1000000000ull)
#define RXD_DEFAULT_NAS_PLAN_CACHE 16 /* NAS plans kept (DARTS at 20 cells: 130 KiB each) */
#define RXD_NAS_PLAN_CACHE_MAX 4096

#define RXD_DEFAULT_MAX_FRAME (256ull << 20)
#define RXD_MIN_MAX_FRAME (4ull << 10)
#define RXD_DEFAULT_CONFIG SYSCONFDIR "/rxgemmd/rxgemmd.conf"
#define RXD_DEFAULT_TUNE_BUDGET_S 120.0
#define RXD_DEFAULT_AUTO_TUNE_BUDGET_S 60.0
enum { RXD_AUTO_TUNE_GPU = 0, RXD_AUTO_TUNE_ALWAYS, RXD_AUTO_TUNE_NEVER };
#define RXD_DEFAULT_HANG_TIMEOUT_NS (120ull * 1000000000ull)

/* Fills cfg from the defaults, the config file and argv, in that order of precedence
 * (argv wins). Returns 0 to run, or an exit code + 1 to exit with (so 1 means exit 0 after
 * --help or --version, 3 means exit 2 after a usage error, which has been printed). */
int config_init(struct rxd_config *cfg, int argc, char **argv);
void config_fini(struct rxd_config *cfg);
/* SIGHUP: read argv and the config file again, with the same precedence, and take over
 * what can change while clients stay connected (log level, hang timeout); what needs a
 * restart (socket, device, max-frame, cache) is logged and kept. On any error cfg is
 * unchanged. 0 or -EINVAL (the reason has been printed). */
int config_reload(struct rxd_config *cfg, int argc, char **argv);
/* "6G", "512M" (at least RXD_MIN_VRAM_BUDGET) or "75%" (of the device's memory, more
 * than 0 and at most 100). 0 or -EINVAL. */
int config_parse_budget(const char *s, uint64_t *bytes, double *percent);
/* "4096", "64K", "256M", "8G" (binary units). 0 or -EINVAL. */
int config_parse_size(const char *s, uint64_t *bytes);

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
	struct rxd_kcache *kcache;    /* where programs are built (kcache.c); set by main.c, not
				       * owned; NULL: build without caching */
};

/* Enumerate the devices and open the one that selector names (an index from
 * --list-devices, or a case-insensitive substring of "platform device"); NULL picks the
 * first GPU, else the first device. 0, -ENODEV (nothing matches; logged) or -EIO. */
int device_open(struct rxd_device *dev, const char *selector);
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
 * is polled for up to RXD_DEVICE_SPIN_NS before blocking: NVIDIA's driver wakes a blocked
 * waiter up to 2 ms after the event, longer than a whole small job (a 1024^3 GEMM's copies
 * and kernel take 0.3 ms on an H200). The worker thread is the device's, so its spinning
 * costs no one; on host memory (PoCL) it would take a core from the kernels: no spinning
 * there. CL_SUCCESS or the event's error. */
#define RXD_DEVICE_SPIN_NS 3000000ull
cl_int device_wait(const struct rxd_device *dev, cl_event ev);
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

/* One program built (or loaded) for one device of one context. */
struct rxd_kcache_prog {
	struct rxd_kcache_prog *next;
	uint8_t key[32];
	cl_context ctx;
	cl_device_id device;
	cl_program program; /* the cache's own reference */
};

struct rxd_kcache {
	char *dir;                     /* NULL: no disk cache */
	uint64_t max_bytes;            /* bound on the entries' bytes in dir */
	pthread_mutex_t lock;          /* guards progs and writes to dir; a leaf lock */
	struct rxd_kcache_prog *progs;
	atomic_bool writable;          /* false: entries are read, never written */
	/* Counters, read without the lock. */
	_Atomic uint64_t entries, bytes; /* in dir at the last scan */
	_Atomic uint64_t hits;         /* programs loaded from a disk entry */
	_Atomic uint64_t misses;       /* programs compiled from source */
	_Atomic uint64_t memory_hits;  /* programs handed out again from memory */
	_Atomic uint64_t rejected;     /* entries found bad (truncated, corrupt, foreign) */
	_Atomic uint64_t evictions;    /* entries removed to stay within max_bytes */
	_Atomic uint64_t compile_ns, load_ns;
};

struct rxd_kcache_stats {
	const char *dir; /* "" when there is no disk cache; valid while the cache is */
	bool writable;
	uint64_t max_bytes, entries, bytes, hits, misses, memory_hits, rejected, evictions;
	uint64_t compile_ns, load_ns;
};

/* Set up the cache in dir (NULL: kcache_default_dir) holding at most max_bytes of entries
 * (0: no disk cache). A directory that cannot be made or written is a warning, not an
 * error: the cache then reads what it can and compiles the rest. 0 or -ENOMEM. */
int kcache_init(struct rxd_kcache *kc, const char *dir, uint64_t max_bytes);
/* Release every program the cache holds. */
void kcache_fini(struct rxd_kcache *kc);
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
					    * tuner); set by main.c before gemm_init; NULL: made
					    * per use, unaccounted (rxgemm-bench, unit tests) */
};

/* Build every kernel variant the engine will use, so that no job pays a compile.
 * eng->budget, set before the call (or NULL), is kept and charged for the self-tests.
 * 0 or -EIO (logged with the compiler's output). */
int gemm_init(struct rxd_gemm_engine *eng, struct rxd_device *dev);
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
 * budget_stats and changes the limits on SIGHUP. b->lock guards everything below; it is a
 * leaf lock, never held while calling out (OpenCL, libuv, the alloc/free callbacks), and
 * never taken while holding w->lock or the kcache lock (nor they while holding it). */
#define RXD_DEFAULT_VRAM_BUDGET (8ull << 30)
/* The kernels' self-tests take up to about 1.3 MiB (whole tiles of the largest variants):
 * under this the daemon could not even check its kernels. */
#define RXD_MIN_VRAM_BUDGET (4ull << 20)
#define RXD_BUDGET_MIN_BUFFER 4096ull /* the smallest size class of the pool */

struct rxd_budget_buf {
	struct rxd_budget_buf *next;
	void *mem;           /* cl_mem in the daemon; whatever alloc gave in tests */
	uint64_t bytes;      /* its size class (budget_round) */
};

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

struct rxd_budget {
	pthread_mutex_t lock;
	bool initialized;
	uint64_t budget_bytes;
	uint64_t quota_bytes;         /* per owner, reservations at once; 0: none */
	uint64_t reserved_bytes;      /* sum of live reservations */
	uint64_t resident_bytes;      /* of that, device tensors' (tensor.c), held until freed */
	uint64_t in_use_bytes;        /* sum of their buffers */
	uint64_t pool_bytes;          /* idle buffers kept for reuse */
	uint64_t pool_buffers;
	uint64_t peak_bytes;          /* most reserved_bytes + pool_bytes ever */
	uint64_t allocations, reuses, evictions, split_jobs;
	struct rxd_budget_buf *pool;  /* idle, most recently returned first */
	struct rxd_budget_res *live;
	/* Make or free one buffer of bytes; called without the lock. 0 or a negative errno
	 * (alloc) with *err (may be NULL) set to the OpenCL error. */
	int (*alloc)(void *ctx, uint64_t bytes, void **mem, int *err);
	void (*free)(void *ctx, void *mem);
	void *ctx;
	void (*on_freed)(void *arg);  /* budget_set_notify's */
	void *on_freed_arg;
};

/* budget_bytes must be >= RXD_MIN_VRAM_BUDGET. alloc and free make the buffers (see above);
 * budget_cl_alloc/budget_cl_free with ctx a struct rxd_device * do it with OpenCL. */
void budget_init(struct rxd_budget *b, uint64_t budget_bytes, uint64_t quota_bytes,
		 int (*alloc)(void *, uint64_t, void **, int *), void (*free_fn)(void *, void *),
		 void *ctx);
/* Free the pool; every reservation must have been released. Safe on a zeroed struct. */
void budget_fini(struct rxd_budget *b);
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

/* ---- sched.c: which queued job runs next (pure logic: no OpenCL, no libuv, no clock) ---- */
/* The policy (sched.c says why):
 * - Every connection ("owner") has its own queue; the scheduler holds jobs that wait, never
 *   the one running.
 * - Four priority levels, 0 (default) to 3; a job of a higher level always goes first.
 * - Within a level, deficit round robin between owners, weighted by each job's estimated
 *   work (its FLOPs plus RXD_SCHED_JOB_OVERHEAD): each round an owner's deficit grows by
 *   the quantum and it runs its jobs, in order, while their cost fits the deficit. An
 *   owner with a stream of huge GEMMs and one with small ones get the device in equal
 *   shares of FLOPs, and the small jobs never wait for the whole stream.
 * - A job whose deadline passed while it waited is taken out (sched_expire) and never run.
 * - Bounds on the jobs waiting per owner and in total: over one, sched_submit refuses. */
#define RXD_SCHED_LEVELS 4
#define RXD_SCHED_QUANTUM (1ull << 24)        /* FLOPs per owner per round */
#define RXD_SCHED_JOB_OVERHEAD (1ull << 22)   /* FLOPs a job costs besides its own */
#define RXD_SCHED_MAX_COST (1ull << 62)       /* costs are capped here: sums never wrap */
#define RXD_DEFAULT_MAX_QUEUE 1024            /* jobs waiting in total */
#define RXD_DEFAULT_CLIENT_MAX_QUEUE 128      /* jobs waiting per connection */
#define RXD_MAX_QUEUE_LIMIT 1000000          /* the largest bound the options take */

struct rxd_sched_client;

/* A job as the scheduler sees it; embedded in struct rxd_job (tests make their own). */
struct rxd_sched_job {
	struct rxd_sched_job *next;      /* in its owner's queue, or in a list handed back */
	uint32_t owner;                  /* the connection */
	uint64_t request_id;
	uint64_t cost;                   /* estimated work: sched_cost */
	uint64_t deadline_ns;            /* on the caller's clock; 0: none */
	unsigned priority;               /* 0 .. RXD_SCHED_LEVELS - 1, higher first */
	bool parked;                     /* waiting for device memory (sched_park) */
};

/* An owner with jobs waiting; made at its first job, freed when its last one leaves. */
struct rxd_sched_client {
	struct rxd_sched_client *next;                    /* in sched.clients */
	struct rxd_sched_client *ring_next[RXD_SCHED_LEVELS]; /* in the level's round */
	uint32_t owner;
	uint32_t queued;                                  /* at every level together */
	struct rxd_sched_job *head[RXD_SCHED_LEVELS], *tail[RXD_SCHED_LEVELS];
	uint64_t deficit[RXD_SCHED_LEVELS];
	bool granted[RXD_SCHED_LEVELS];                   /* had this visit's quantum */
};

struct rxd_sched_stats {
	uint32_t queued, clients;            /* jobs and owners waiting now */
	uint32_t max_queue, client_max_queue;
	uint64_t rejected_total, rejected_client; /* refused: over max_queue, client_max_queue */
	uint64_t expired;                    /* taken out by sched_expire */
	uint64_t cancelled;                  /* taken out by sched_cancel, sched_remove_client */
	uint32_t parked;                     /* of the queued, waiting for device memory */
};

struct rxd_sched {
	struct rxd_sched_client *clients;
	struct rxd_sched_client *ring_head[RXD_SCHED_LEVELS], *ring_tail[RXD_SCHED_LEVELS];
	uint32_t queued;
	uint32_t parked;                       /* of queued, skipped by sched_next */
	uint32_t max_queue, client_max_queue;  /* 0: no bound */
	uint64_t quantum;
	uint64_t rejected_total, rejected_client, expired, cancelled;
};

/* quantum 0: RXD_SCHED_QUANTUM. The bounds may be 0 (none). */
void sched_init(struct rxd_sched *s, uint32_t max_queue, uint32_t client_max_queue,
		uint64_t quantum);
/* Free what is left; jobs still queued are not touched (take them out first). */
void sched_fini(struct rxd_sched *s);
/* New bounds for submissions from now on; jobs queued stay. */
void sched_set_limits(struct rxd_sched *s, uint32_t max_queue, uint32_t client_max_queue);
/* A GEMM's cost: its FLOPs plus the per-job overhead, capped at RXD_SCHED_MAX_COST. */
uint64_t sched_cost(uint64_t flops);
/* Queue j (owner, request_id, cost, deadline_ns and priority filled in) behind its owner's
 * jobs of its level. 0, -ENOBUFS (max_queue jobs wait already), -EBUSY (its owner has
 * client_max_queue waiting), -EINVAL (priority out of range) or -ENOMEM. */
int sched_submit(struct rxd_sched *s, struct rxd_sched_job *j);
/* Take out the job to run now; NULL when none waits but parked ones. */
struct rxd_sched_job *sched_next(struct rxd_sched *s);
/* j, just taken by sched_next, did not fit the device memory now (admission, admit.c): it
 * goes back to the head of its owner's queue, its cost given back, parked: sched_next
 * passes over it (and runs other jobs, of its owner too) until sched_unpark_all. It can
 * still expire, be cancelled or taken out. 0 or -ENOMEM (j is then not queued). */
int sched_park(struct rxd_sched *s, struct rxd_sched_job *j);
/* Device memory was freed: every parked job may run again. */
void sched_unpark_all(struct rxd_sched *s);
/* Take out every job whose deadline is at or before now_ns, as a list; *count (may be
 * NULL) their number. */
struct rxd_sched_job *sched_expire(struct rxd_sched *s, uint64_t now_ns, size_t *count);
/* The earliest deadline of a waiting job; 0 when none has one. */
uint64_t sched_next_deadline(const struct rxd_sched *s);
/* Take out owner's waiting job request_id (its first one, should the client have reused
 * the id); NULL when none waits. */
struct rxd_sched_job *sched_cancel(struct rxd_sched *s, uint32_t owner, uint64_t request_id);
/* Take out every job of owner (it went away), as a list in queue order per level. */
struct rxd_sched_job *sched_remove_client(struct rxd_sched *s, uint32_t owner);
/* Take out every job (shutdown), as a list. */
struct rxd_sched_job *sched_take_all(struct rxd_sched *s);
uint32_t sched_client_queued(const struct rxd_sched *s, uint32_t owner);
void sched_stats(const struct rxd_sched *s, struct rxd_sched_stats *out);
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
	RXD_NAS_KERNELS
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
	size_t dw_local_bytes;       /* the local memory one nas_dwconv work-group may take */
	size_t item_max[3];          /* CL_DEVICE_MAX_WORK_ITEM_SIZES */
	bool pw_direct;              /* dense 1x1 convolutions through nas_pw (no im2col, no
				      * bias pass), not the GEMM engine (RXGEMMD_NAS_KERNELS) */
	bool dwpw_fused;             /* nasops_dwpw as one nas_pw launch (the depthwise output
				      * never written), not two convolutions */
	size_t pw_local_bytes;       /* the local memory one nas_pw work-group may take */
	int pw_rp, pw_rc;            /* nas_pw's register tile: pixels by channels a work-item */
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

/* ---- worker.c: the device worker thread and the job queue ---- */
/* Jobs wait in the scheduler (sched.c) under w->lock; the worker takes the next one, runs
 * it without the lock and puts it on the done list. A job leaves early, never run, when
 * its deadline passes (STATUS_TIMEOUT; the loop's deadline timer or the worker finds it),
 * when it is cancelled (STATUS_CANCELLED) or when the daemon stops (STATUS_SHUTDOWN). A
 * running job is cancelled through its cancel flag. */
struct rxd_conn;

enum { RXD_JOB_GEMM = 0, RXD_JOB_NAS = 1, RXD_JOB_TENSOR_CREATE = 2, RXD_JOB_TENSOR_READ = 3 };

struct rxd_job {
	struct rxd_sched_job sj;     /* owner (conn_id), request_id, cost, deadline, priority */
	struct rxd_job *next;
	int kind;                    /* RXD_JOB_*: what the worker runs */
	struct rxd_nas_job *nas;     /* RXD_JOB_NAS: the network (nasjob.c), owned */
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
	uint64_t held_bytes;   /* charged to conn->jobs_bytes while in flight (dispatch.c) */
};

struct rxd_worker {
	pthread_t thread;
	pthread_mutex_t lock;        /* guards every field below; never held with another lock */
	pthread_cond_t cond;
	struct rxd_sched sched;      /* to run; parked ones wait for device memory */
	uint64_t mem_freed;          /* times the budget said room came back (on_freed) */
	struct rxd_job *running;     /* taken from sched, not yet on the done list */
	uint64_t cancelled;          /* jobs ended STATUS_CANCELLED (queued or running) */
	struct rxd_job *done_head, *done_tail;
	bool stopping;
	bool started;
	uv_async_t async;            /* wakes the loop to drain done */
	uv_timer_t deadline_timer;   /* loop thread: fires at the earliest queued deadline */
	uint64_t timer_due_ns;       /* loop thread: when it fires; 0: not armed */
	struct rxd_gemm_engine *engine;
	struct rxd_nasops *nasops;   /* NAS jobs; NULL: refused. Set after worker_start, before
				      * any job is submitted */
	bool zero_copy;              /* GEMMs in place on regions where the device allows
				      * (zcopy.c); set like nasops */
	/* A device that fails a health check after a failed job is lost (a kernel fault on
	 * NVIDIA's driver loses the whole context): the job and every queued one are answered
	 * STATUS_DEVICE, worker_submit refuses from then on (-ENODEV), and on_lost runs once on
	 * the loop thread (main.c exits non-zero, for systemd to restart the daemon). */
	bool device_lost;            /* under lock */
	bool lost_reported;          /* loop thread */
	void (*on_lost)(void *arg);  /* set like nasops; NULL: nothing is told */
	void *on_lost_arg;
	uint64_t jobs_run;           /* worker thread */
	uint64_t inject_loss_at;     /* $RXGEMMD_TEST_DEVICE_LOSS: job N fails as lost; 0 never */
	void (*done)(struct rxd_job *job, void *arg); /* called on the loop thread */
	void *done_arg;
	_Atomic uint64_t busy_since_ns; /* when the running job started; 0 when idle */
};

int worker_start(struct rxd_worker *w, uv_loop_t *loop, struct rxd_gemm_engine *eng,
		 void (*done)(struct rxd_job *, void *), void *arg);
/* Queue job (job->sj filled in; its conn_id is the owner). Loop thread. 0, or -ENOBUFS
 * (max_queue jobs wait), -EBUSY (the connection's client_max_queue wait), -EINVAL
 * (priority out of range), -ENOMEM, -ESHUTDOWN (stopped), -ENODEV (the device is lost):
 * the job is then still the caller's. */
int worker_submit(struct rxd_worker *w, struct rxd_job *job);
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

/* ---- stats.c: counters for status replies (loop thread only) ---- */
#define RXD_RECENT_JOBS 16
#define RXD_STATS_VARIANTS 64        /* kernel variants counted apart; more share "other" */
#define RXD_BUSY_BUCKET_NS 500000000ull /* device busy time is kept per half second */
#define RXD_BUSY_BUCKETS 16
#define RXD_BUSY_RECENT_BUCKETS 10   /* the recent window: the last 5 s, plus the current bucket */

/* What one client (or the clients that have left, together) got from the daemon. */
struct rxd_client_stats {
	uint64_t jobs_ok, jobs_failed, requests_rejected;
	uint64_t flops;                 /* of its jobs that succeeded */
	uint64_t queued_ns, h2d_ns, kernel_ns, d2h_ns, total_ns; /* summed over those jobs */
	uint64_t bytes_in, bytes_out;   /* matrix bytes in its requests and replies */
};

/* One kernel variant's work. */
struct rxd_variant_stats {
	char kernel[96];
	uint64_t jobs, flops;
	uint64_t queued_ns, h2d_ns, kernel_ns, d2h_ns, total_ns;
};

/* A job's times as its reply reports them. */
struct rxd_job_times {
	uint64_t queued_ns, h2d_ns, kernel_ns, d2h_ns, total_ns;
};

/* One finished job, for the status reply's recent list. */
struct rxd_job_record {
	uint64_t request_id;
	uint32_t client_id;
	int64_t m, n, k;             /* the request's shape (0 for NAS jobs) */
	int status;                  /* enum rxd_status */
	long uid;                    /* whose it was (status-detail) */
	struct rxd_job_times t;
};

struct rxd_stats {
	uint64_t started_ns;
	uint32_t clients_connected;
	uint64_t clients_total;
	uint64_t jobs_ok, jobs_failed, requests_rejected;
	uint32_t jobs_queued;
	uint64_t flops_total, kernel_ns_total;
	struct rxd_job_record recent[RXD_RECENT_JOBS]; /* a ring */
	size_t recent_next, recent_count;
	struct rxd_client_stats departed;  /* folded in from every closed connection */
	struct rxd_variant_stats variants[RXD_STATS_VARIANTS];
	size_t n_variants;
	uint64_t busy_ns;                  /* the device worker on finished jobs, since start */
	/* Busy ns per bucket of RXD_BUSY_BUCKET_NS since started_ns; bucket i is valid when
	 * busy_bucket_index[i % RXD_BUSY_BUCKETS] == i. */
	uint64_t busy_bucket_ns[RXD_BUSY_BUCKETS];
	uint64_t busy_bucket_index[RXD_BUSY_BUCKETS];
};

void stats_init(struct rxd_stats *st);
/* Any job back from the worker, answered or not: its time on the device worker. */
void stats_job_busy(struct rxd_stats *st, const struct rxd_job *job);
/* A job answered to its client c: the daemon's, c's and the variant's counters. */
void stats_job_done(struct rxd_stats *st, const struct rxd_job *job, struct rxd_conn *c,
		    const struct rxd_job_times *t);
/* c is closing: fold its counters into the departed clients' total. */
void stats_client_closed(struct rxd_stats *st, const struct rxd_conn *c);
/* The i-th of the recent jobs, oldest first (i < st->recent_count). */
const struct rxd_job_record *stats_recent(const struct rxd_stats *st, size_t i);
/* The status reply is built from these counters by the wire layer (wire-status.c). */

/* ---- shm.c: shared-memory regions registered by a connection (loop thread only) ---- */
/* A region is a client's sealed memfd, mapped MAP_SHARED read/write: operands are read from
 * it and results written into it by the device worker without a copy through a frame. It
 * belongs to the connection that registered it; jobs in flight hold references, so that it
 * stays mapped until the last of them has come back even when the client unregisters
 * nothing and leaves. Reference counts change on the loop thread only; the worker only
 * reads and writes the mapped bytes of a region its job holds. */
#define RXD_SHM_MAX_REGIONS 64                /* registered at once per connection */
#define RXD_SHM_MAX_REGION_BYTES (64ull << 30) /* one region's size */
/* All connections' regions together: mappings cost a client nothing until touched, so
 * without a bound a few clients could take the daemon's whole address space. */
#define RXD_SHM_MAX_TOTAL_BYTES (1ull << 40)
/* One connection's share of that, so that one client cannot take it all (client-shm-max;
 * the count is client-shm-regions, at most RXD_SHM_MAX_REGIONS). */
#define RXD_SHM_DEFAULT_CLIENT_BYTES (64ull << 30)

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

struct rxd_shm {
	struct rxd_region *regions[RXD_SHM_MAX_REGIONS]; /* registered ones; NULL: free slot */
	uint32_t next_id;
	uint32_t count;       /* registered now */
	uint64_t bytes;       /* of those */
};

struct rxd_shm_stats {
	uint32_t regions;     /* mapped now, all connections */
	uint64_t bytes;
	uint64_t registered;  /* registrations accepted since the start */
	uint64_t jobs;        /* GEMMs that used a region */
	uint64_t jobs_in_place; /* of them, run in place (zcopy.c) */
};

void shm_init(struct rxd_shm *t);
/* The per-connection bounds (client-shm-regions: 1 to RXD_SHM_MAX_REGIONS; client-shm-max:
 * bytes, 0 for none but the total's), at start and on SIGHUP; registrations already made
 * stay. Loop thread. */
void shm_set_limits(uint32_t regions, uint64_t bytes);
/* Drop the table's references (the connection closes): each region is unmapped as soon as
 * no job holds it any more. */
void shm_fini(struct rxd_shm *t);
/* Check fd (a memfd sealed against shrinking and growing, not against writing, of at most
 * RXD_SHM_MAX_REGION_BYTES, within RXD_SHM_MAX_TOTAL_BYTES of all regions, and of
 * expect_bytes when that is not 0), map it and enter it in
 * t. Always takes fd (closes it). Returns an RXD_S_* status (status.h), with *id and *bytes on
 * success and a sentence in err on failure. */
int shm_register(struct rxd_shm *t, int fd, uint64_t expect_bytes, uint32_t *id,
		 uint64_t *bytes, struct rxd_error *err);
/* Remove region id from t. STATUS_REGION when t has no such region, or when jobs in flight
 * use it (nothing changes then: unregistering waits for nothing). */
int shm_unregister(struct rxd_shm *t, uint32_t id, struct rxd_error *err);
/* Region id of t, or NULL (no reference taken: a job that keeps it calls shm_region_ref).
 * A request's reference into it is checked by the wire layer (wire_region). */
struct rxd_region *shm_lookup(struct rxd_shm *t, uint32_t id);
void shm_region_ref(struct rxd_region *r);
/* Device worker thread, for a region its job holds: wrap the mapping in a
 * CL_MEM_USE_HOST_PTR buffer of ctx, once. On a device with memory of its own this pins
 * the pages with drivers that pin such buffers (NVIDIA's: copies from and to the region
 * then run at the bus's full speed, 4-5x faster than from pageable memory); on a device
 * that works on host memory, kernels run on the region in place (zcopy.c). Regions over
 * RXD_SHM_WRAP_MAX_BYTES are not wrapped (pinning would commit every page of a sparse
 * file). 0, or -E2BIG, -ENOMEM: the region then works as plain host memory. */
#define RXD_SHM_WRAP_MAX_BYTES (16ull << 30)
int shm_region_wrap(struct rxd_region *r, cl_context ctx, uint64_t max_alloc_bytes);
/* Drop a reference; the last one unmaps the region. NULL is allowed. */
void shm_region_unref(struct rxd_region *r);
void shm_note_job(void);
void shm_note_in_place(void);
void shm_stats(struct rxd_shm_stats *out);

/* ---- tensor.c: device tensors, a connection's float32 data kept on the device ---- */
/* A tensor is one device buffer taken from the budget (a resident reservation for its
 * connection: it counts against the budget and the client's quota) and listed in its
 * connection's table. Like regions it is counted by reference: the table holds one while
 * it is listed, and every job in flight that reads or writes it one more; the counts
 * change on the loop thread only, and the last reference releases the buffer to the
 * budget (no job uses it then). The device worker makes, fills and reads the buffers
 * (tensor_make, tensor_read_run, tensor_gemm_run) of tensors its job holds. */
#define RXD_TENSOR_MAX 1024 /* listed at once per connection (and being made) */
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

struct rxd_tensors {
	struct rxd_tensor *slots[RXD_TENSOR_MAX]; /* listed ones; NULL: free slot */
	uint32_t next_id;
	uint32_t count;          /* listed */
	uint32_t pending;        /* creations in flight: each has a slot promised */
	uint64_t bytes;          /* the listed ones' reservations */
};

void tensor_table_init(struct rxd_tensors *t);
/* Drop the table's references (the connection closes): each buffer goes back to the
 * budget as soon as no job holds its tensor. */
void tensor_table_fini(struct rxd_tensors *t);
/* A new tensor of dims (checked by wire_tensor_dims: 1 to RXD_TENSOR_MAX_DIMS of them,
 * each >= 1, their product within a buffer) with one reference, not listed, with no
 * buffer yet. RXD_S_OK or RXD_S_NO_MEMORY, with a sentence in err. */
int tensor_new(const int64_t *dims, size_t ndims, struct rxd_tensor **out,
	       struct rxd_error *err);
/* List x (made) in t under the next id; the table takes over x's reference. -ENOSPC
 * when the table is full. */
int tensor_add(struct rxd_tensors *t, struct rxd_tensor *x);
/* The tensor id of t (field names the request field in err), no reference taken.
 * STATUS_TENSOR when there is none. */
int tensor_find(struct rxd_tensors *t, uint32_t id, const char *field, struct rxd_tensor **out,
		struct rxd_error *err);
/* Unlist id: the table's reference goes; jobs in flight keep theirs. STATUS_TENSOR when
 * unknown. */
int tensor_remove(struct rxd_tensors *t, uint32_t id, struct rxd_error *err);
void tensor_ref(struct rxd_tensor *x);
/* Drop a reference; the last one releases the buffer. NULL is allowed. */
void tensor_unref(struct rxd_tensor *x);
/* The bytes x holds in the budget (its size class). */
uint64_t tensor_budget_bytes(const struct rxd_tensor *x);
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

/* ---- server.c: the listening socket (loop thread) ---- */
struct rxd_conn;

/* What the connections hand up (the wire layer's, given to server_start): each whole
 * frame, and the errors of a stream itself (request_id 0), after which the connection
 * closes once the reply is written. Calls through these are the only way from conn.c up. */
struct rxd_conn_ops {
	/* One frame body from c; takes ownership of body. c->frame_fds are the descriptors
	 * that came with it: the handler takes (sets to -1) those it keeps; conn.c closes the
	 * rest. */
	void (*frame)(struct rxd_conn *c, uint8_t *body, size_t len);
	void (*stream_error)(struct rxd_conn *c, int status, const char *msg);
};

struct rxd_server {
	uv_loop_t *loop;
	const struct rxd_config *cfg;
	struct rxd_device *dev;
	struct rxd_worker *worker;
	struct rxd_limits limits;
	struct rxd_stats stats;
	uv_pipe_t listener;
	bool listening;
	bool adopted;                /* the listener came from socket activation: never unlink it */
	bool stopping;
	uint32_t next_client_id;
	struct rxd_conn *conns;      /* every open connection */
	uint64_t held_bytes;         /* conn_held_bytes summed over every connection not yet
				      * freed (closed ones with jobs in flight too), against
				      * cfg->max_memory_bytes (conn.c) */
	const struct rxd_conn_ops *conn_ops;
	struct rxd_nas_cache *nascache; /* NAS plans (main.c's; NULL: none kept) */
};

/* Whether the daemon could listen on path: its directory exists and may be written, and
 * no daemon answers there (nor is anything but a socket in the way). Called at start
 * before the device is opened, so that such a mistake is reported in a second, not after
 * every kernel is built; server_start checks again. 0 or a negative errno (logged). */
int server_check_path(const char *path);
/* Create the socket (refusing a path where a daemon answers, replacing a stale one) and
 * start accepting; every connection hands its frames to ops. 0 or a negative errno
 * (logged). */
int server_start(struct rxd_server *srv, uv_loop_t *loop, const struct rxd_config *cfg,
		 struct rxd_device *dev, struct rxd_worker *w, const struct rxd_conn_ops *ops);
/* Stop accepting and remove the socket; requests still arriving get STATUS_SHUTDOWN. */
void server_unlisten(struct rxd_server *srv);
/* server_unlisten, then read what each connection has sent (answered STATUS_SHUTDOWN) and
 * close it once its replies are written, or at cfg->shutdown_timeout_ns at the latest. The
 * loop then runs out of handles and returns. */
void server_stop(struct rxd_server *srv);
/* After a reload: every connection's reading and deadlines under the new configuration. */
void server_reconfigured(struct rxd_server *srv);

/* ---- conn.c: one client connection (loop thread) ---- */
/* Descriptors (SCM_RIGHTS) that one frame may carry; more are closed and counted lost. */
#define RXD_CONN_MAX_FDS 4
/* Reading pauses while this many reply bytes wait to be written. That alone bounds nothing
 * (jobs already queued still finish, and one reply may be far larger): what bounds a
 * connection is its memory, conn_held_bytes, against cfg->client_max_memory_bytes. */
#define RXD_CONN_OUT_HIGH_BYTES (8u << 20)
/* After an error reply that closes the connection, the reply has this long to be written. */
#define RXD_CONN_CLOSE_GRACE_MS 5000

struct rxd_outbuf;

struct rxd_conn {
	uv_poll_t poll;              /* the socket, read with recvmsg (which takes descriptors,
				      * unlike uv_pipe_t) and written from out_head */
	int fd;
	int poll_events;             /* UV_READABLE / UV_WRITABLE as now started */
	struct rxd_outbuf *out_head, *out_tail; /* replies not yet (fully) written */
	uint64_t out_bytes;          /* bytes in them still to write */
	struct rxd_server *srv;
	struct rxd_conn *prev, *next;
	uint32_t id;
	int refs;                    /* the connection itself + one per job in flight */
	bool closing;                /* no more reads; freed once refs reach 0 */
	bool close_after_write;      /* close when the last queued write completes */
	bool hello_done;
	bool refused;                /* not allowed (allow-uids, allow-gids): Hello is refused */
	unsigned writes_pending;     /* frames in out_head */
	uint32_t jobs_in_flight;
	struct frame_reader fr;
	/* Descriptors of the frame being read (owned; -1 once taken), and of the frame that
	 * starts at in_fds_at in the data of the current read. */
	int frame_fds[RXD_CONN_MAX_FDS];
	unsigned n_frame_fds, frame_fds_lost;
	int in_fds[RXD_CONN_MAX_FDS];
	unsigned n_in_fds, in_fds_lost;
	struct rxd_shm shm;          /* regions this client registered */
	struct rxd_tensors tensors;  /* device tensors it made */
	char name[64];               /* the client's name from Hello */
	long peer_pid;
	long peer_uid;
	struct rxd_client_stats stats; /* stats.c's, folded into stats.departed at close */
	/* Memory and time (conn.c). A job is charged when dispatch admits it: its request's
	 * frame and its result (twice: the result buffer and the reply packed from it). */
	uint64_t jobs_bytes;         /* charged to the jobs in flight (job->held_bytes summed) */
	bool paused_own;             /* reading paused by its own memory, not the total's */
	bool peer_hup;               /* seen to have left or shut its side while not read */
	uv_timer_t timer;            /* the earliest of the deadlines below (conn_arm_timer) */
	uint64_t frame_start_ms;     /* uv_now when the frame being read began; 0: none */
	uint64_t active_ms;          /* the last read or write, for the idle timeout */
	uint64_t stall_since_ms;     /* reading paused and no byte written since; 0: not */
	uint64_t kill_ms;            /* closed then, whatever it still holds; 0: no such end */
	bool draining;               /* shutdown: what is read gets STATUS_SHUTDOWN, then close */
	uint8_t readbuf[64 * 1024];
};

/* Serve fd, a connection accepted on srv's socket (closed on failure, logged). */
void conn_open(struct rxd_server *srv, int fd);
/* Shutdown: read what c has sent (answered STATUS_SHUTDOWN by the wire layer) and close it
 * once its replies are written, or at kill_ms (loop time) at the latest. */
void conn_drain(struct rxd_conn *c, uint64_t kill_ms);
/* After a reload: c's reading and deadlines under the new configuration. */
void conn_reconfigured(struct rxd_conn *c);
/* A duration in ns as loop milliseconds, rounded up. */
uint64_t conn_ms(uint64_t ns);
/* Charge (or, back from the worker, uncharge) a job's held_bytes to c and to the daemon's
 * total; a total that falls back under max-memory resumes every connection's reading. */
void conn_jobs_charge(struct rxd_conn *c, uint64_t bytes);
void conn_jobs_uncharge(struct rxd_conn *c, uint64_t bytes);
/* What c makes the daemon hold now: its jobs' charges, its unwritten replies and the frame
 * being read. */
uint64_t conn_held_bytes(const struct rxd_conn *c);
void conn_ref(struct rxd_conn *c);
void conn_unref(struct rxd_conn *c);
/* Queue one frame of len bytes on c, its payload written by pack(msg, buffer) (the wire
 * layer's encoder); close the connection once written when close_after is set.
 * 0 or -errno (the connection is then closed). */
int conn_send(struct rxd_conn *c, size_t len, void (*pack)(const void *msg, uint8_t *out),
	      const void *msg, bool close_after);
void conn_close(struct rxd_conn *c);

/* ---- dispatch.c: routing validated requests to the worker (loop thread) ---- */
/* The wire layer (wire.c) decodes and validates a request into these, then hands it here;
 * dispatch charges the job to its connection, queues it, and on its return does the
 * bookkeeping before the wire layer answers. dispatch never replies itself: a refusal
 * comes back as a status with a sentence in err. */

/* What every request handed to dispatch carries. The decoded frame (the wire layer's),
 * which the validated pointers point into, goes to the job, which frees it with
 * frame_free; on a refusal it stays the caller's. */
struct rxd_request {
	uint64_t id;
	uint64_t received_ns;        /* the frame was whole */
	size_t frame_bytes;
	void *frame;
	void (*frame_free)(void *frame);
	uint64_t bytes_in;           /* operand bytes sent inline (statistics) */
};

/* A validated GEMM: its operands from the frame, regions or tensors (no references
 * taken: dispatch takes them for the job). */
struct rxd_gemm_request {
	struct rxd_gemm g;
	struct rxd_region *regions[RXD_JOB_REGIONS]; /* NULL where none */
	struct rxd_tensor *tensors[4]; /* column-major a, b, C's input, C's destination */
	float *c_dest;               /* C into a client's region; NULL: in the reply */
	unsigned priority;           /* < RXD_SCHED_LEVELS */
	uint64_t deadline_ms;        /* from received_ns; 0: none */
};

/* A validated NAS evaluation: the job (nasjob.c, owned) and its data sources. */
struct rxd_nas_request {
	struct rxd_nas_job *nas;
	struct rxd_region *regions[2]; /* weights, input; NULL where none */
	struct rxd_tensor *tensors[2];
	uint64_t reply_bytes;        /* the most its reply may take */
};

/* Queue a job for a validated request. 0 (the job owns rq's frame, and the NAS job),
 * or a status with a sentence in err (nothing taken: the caller answers and frees). */
int dispatch_gemm(struct rxd_conn *c, struct rxd_request *rq, const struct rxd_gemm_request *g,
		  struct rxd_error *err);
int dispatch_nas(struct rxd_conn *c, struct rxd_request *rq, const struct rxd_nas_request *n,
		 struct rxd_error *err);
/* A tensor x (tensor_new's, whose reference the job takes) made from src (NULL: zeros),
 * which lies in region when that is set. */
int dispatch_tensor_create(struct rxd_conn *c, struct rxd_request *rq, struct rxd_tensor *x,
			   struct rxd_region *region, const void *src, struct rxd_error *err);
/* Tensor x read into dest inside region, or (region NULL) into the reply. */
int dispatch_tensor_read(struct rxd_conn *c, struct rxd_request *rq, struct rxd_tensor *x,
			 struct rxd_region *region, float *dest, struct rxd_error *err);
/* Cancel c's job request_id: an enum rxd_cancel_outcome. */
int dispatch_cancel(struct rxd_conn *c, uint64_t request_id);
/* A job is back from the worker: undo its charges, list a made tensor, count it. Returns
 * whether its client is there to be answered. dispatch_job_release then drops what the job
 * holds and frees it. */
bool dispatch_job_finish(struct rxd_job *job);
void dispatch_job_release(struct rxd_job *job);
/* Count a request refused with an error reply (the daemon's and c's figures). */
void dispatch_note_rejected(struct rxd_conn *c);

/* ---- wire.c: the protocol (loop thread; wire.h has its protobuf side) ---- */
/* The handlers of every connection's frames and stream errors (struct rxd_conn_ops). */
extern const struct rxd_conn_ops wire_conn_ops;
/* Answer a finished job (worker_start's done callback; arg is the server). */
void wire_job_done(struct rxd_job *job, void *arg);
/* Send an error reply: status (enum rxd_status) and a sentence. */
void wire_error(struct rxd_conn *c, uint64_t request_id, int status, bool close_after,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* ---- sdnotify.c: the service manager's protocols (sd_notify(3), sd_listen_fds(3)) ---- */
/* Spoken through libsystemd when built with it (HAVE_LIBSYSTEMD), else by sdnotify.c itself.
 * Without a service manager (NOTIFY_SOCKET, LISTEN_FDS unset) all of this does nothing. */

/* Read what the service manager put in the environment: the watchdog ($WATCHDOG_USEC,
 * $WATCHDOG_PID) and socket activation's socket ($LISTEN_FDS, $LISTEN_PID; made
 * close-on-exec, the variables removed). Call while the daemon is one thread, as unsetenv
 * must not race getenv. 0, or -EINVAL when what was passed is not exactly one listening
 * AF_UNIX stream socket (logged). sdnotify_fini closes a socket nobody took. */
int sdnotify_init(void);
void sdnotify_fini(void);
/* Send one notification ("READY=1\nSTATUS=...") to $NOTIFY_SOCKET. Any thread.
 * 0 when sent or when there is no service manager to tell, else a negative errno. */
int sdnotify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The watchdog period asked for (WATCHDOG_PID unset or ours), in us; 0: no watchdog. */
uint64_t sdnotify_watchdog_usec(void);
/* The socket passed by socket activation, which the caller then owns; -ENOENT when none
 * (or when it was taken already). */
int sdnotify_listen_fd(void);
/* Whether socket activation passed a listening socket (not yet taken). */
bool sdnotify_listen_passed(void);

/* The daemon's state as the service manager sees it (loop thread). */
struct rxd_sdnotify {
	const struct rxd_config *cfg;  /* hang_timeout_ns, read at each check (SIGHUP changes it) */
	struct rxd_server *srv;
	struct rxd_worker *worker;
	uv_timer_t watchdog_timer;     /* WATCHDOG=1 at half the period, while the worker is healthy */
	uv_timer_t status_timer;       /* STATUS= once a second when what it says has changed */
	uint64_t watchdog_usec;        /* 0: no watchdog */
	bool timers;                   /* the timers are open */
	bool worker_hung;              /* on one job past hang_timeout_ns: pings withheld */
	char status[256];              /* the last STATUS= sent */
};

/* Send READY=1 (the device is open and the kernels are built and self-tested: call this
 * only then) and start the watchdog and status timers. 0 or a negative errno (logged). */
int sdnotify_ready(struct rxd_sdnotify *n, uv_loop_t *loop, const struct rxd_config *cfg,
		   struct rxd_server *srv, struct rxd_worker *w);
/* RELOADING=1 before a configuration reload; sdnotify_reloaded sends READY=1 after it. */
void sdnotify_reloading(struct rxd_sdnotify *n);
void sdnotify_reloaded(struct rxd_sdnotify *n);
/* STOPPING=1; stops the pings and closes the timers. Safe before sdnotify_ready. */
void sdnotify_stopping(struct rxd_sdnotify *n);

/* ---- genotype.c: DARTS cell genotypes, the named ones, their printed form ---- */
/* The operations, in the order of the reference's PRIMITIVES (the search space is the
 * first RXD_NAS_PRIMITIVES), then the two the NASNet and AmoebaNet genotypes use. */
enum rxd_nas_op {
	RXD_OP_NONE = 0,
	RXD_OP_MAX_POOL_3X3,
	RXD_OP_AVG_POOL_3X3,
	RXD_OP_SKIP_CONNECT,
	RXD_OP_SEP_CONV_3X3,
	RXD_OP_SEP_CONV_5X5,
	RXD_OP_DIL_CONV_3X3,
	RXD_OP_DIL_CONV_5X5,
	RXD_OP_SEP_CONV_7X7,
	RXD_OP_CONV_7X1_1X7,
	RXD_OP_COUNT
};
#define RXD_NAS_PRIMITIVES 8
#define RXD_GENOTYPE_MAX_NODES 8 /* intermediate nodes of a cell */
#define RXD_GENOTYPE_TEXT_MAX 2048 /* the printed form of any valid genotype fits */

/* Node i (0..n_nodes-1) is op[2i](state[input[2i]]) + op[2i+1](state[input[2i+1]]), where
 * state 0 and 1 are the cell's inputs (cells k-2 and k-1) and state i+2 is node i. The
 * cell's output concatenates the states listed in concat (increasing, each 2..n_nodes+1). */
struct rxd_genotype_cell {
	uint8_t n_nodes;
	uint8_t op[2 * RXD_GENOTYPE_MAX_NODES];    /* enum rxd_nas_op */
	uint8_t input[2 * RXD_GENOTYPE_MAX_NODES];
	uint8_t n_concat;
	uint8_t concat[RXD_GENOTYPE_MAX_NODES];
};

struct rxd_genotype {
	struct rxd_genotype_cell normal, reduce;
};

/* "sep_conv_3x3" for RXD_OP_SEP_CONV_3X3; "?" when out of range. */
const char *genotype_op_name(int op);
/* The operation named s[0..len), or -ENOENT. */
int genotype_op_parse(const char *s, size_t len);
/* The i-th named genotype's name ("DARTS_V1", "DARTS_V2", "NASNet", "AmoebaNet"), NULL
 * past the last. */
const char *genotype_name(size_t i);
/* Fill g with a named genotype. 0 or -ENOENT. */
int genotype_named(const char *name, struct rxd_genotype *g);
/* Parse text[0..len) (the reference's printed form; see genotype.c), strictly. 0, or
 * -EINVAL with a sentence in err that starts "genotype text, byte N:" (N from 0). */
int genotype_parse(const char *text, size_t len, struct rxd_genotype *g, struct rxd_error *err);
/* Check a genotype built by other means (the same rules as the parser). 0 or -EINVAL. */
int genotype_check(const struct rxd_genotype *g, struct rxd_error *err);
/* Print g the way the reference does, NUL-terminated within len; returns the length the
 * whole text needs (without the NUL), like snprintf. */
size_t genotype_format(const struct rxd_genotype *g, char *buf, size_t len);

/* ---- nasplan.c (DARTS networks lowered to a flat plan of steps), nasweights.c (their
 * weights) and nasjob.c (evaluation jobs); see docs/NAS.md ---- */
/* A network is lowered into steps over tensors (NCHW float32, the plan's batch, each at an
 * offset in one activation arena). Every step reads one tensor and writes a channel slice
 * [c_off, c_off + c_out) of its output tensor, overwriting (accumulate false) or adding,
 * times scale. The device (nasops.c) and the CPU reference (tests/refnas.c) run the same
 * steps. Weights: the request's blob is the reference's state_dict (docs/NAS.md); nas_fold
 * turns it into the plan's weights, BN folded into each conv's weights and bias. */
enum rxd_nas_family { RXD_NAS_CIFAR = 0, RXD_NAS_IMAGENET = 1 };

enum rxd_nas_step_kind {
	RXD_NAS_CONV = 0, /* conv + bias; groups == c_in == c_out: depthwise */
	RXD_NAS_MAXPOOL,  /* k x k, stride, pad; padding never wins */
	RXD_NAS_AVGPOOL,  /* padding not counted in the divisor */
	RXD_NAS_COPY,     /* identity */
	RXD_NAS_ZERO,     /* zeros into the slice (never accumulating) */
	RXD_NAS_GAP,      /* global average pool: c x h x w -> c x 1 x 1 */
	RXD_NAS_LINEAR,   /* out[n][o] = sum_i in[n][i] w[o][i] + b[o] */
	RXD_NAS_DWPW,     /* a depthwise CONV into tensor mid, then a 1x1 dense conv of mid
			   * (w2_off, b2_off) into the slice: sep and dil convs' halves */
	RXD_NAS_KINDS
};

/* What a step belongs to, for the latency breakdown: an operation (enum rxd_nas_op), or
 * one of these. */
enum {
	RXD_NAS_PART_STEM = RXD_OP_COUNT, /* the stem (ImageNet: stem0 and stem1) */
	RXD_NAS_PART_PREPROCESS,          /* the cells' preprocess0/1 */
	RXD_NAS_PART_HEAD,                /* global pooling and the classifier */
	RXD_NAS_PART_CONCAT,              /* copies of nodes into the cell output */
	RXD_NAS_PARTS
};

#define RXD_NAS_MAX_C 4096
#define RXD_NAS_MAX_LAYERS 256
#define RXD_NAS_MAX_CLASSES 100000
#define RXD_NAS_MAX_SIZE 4096  /* input height and width */
#define RXD_NAS_MAX_BATCH 65536
#define RXD_NAS_MAX_STEPS 8    /* supernet nodes per cell */
#define RXD_NAS_MAX_PLAN_STEPS 20000 /* steps of a plan (a 20-layer supernet has 4881
				      * unfused, 3201 fused) */
#define RXD_NAS_BN_EPS 1e-5f
#define RXD_NAS_ALIGN_FLOATS 64 /* tensors start at multiples of this in the arena */

struct rxd_nas_config {
	int family;                 /* enum rxd_nas_family */
	int32_t C, layers, classes; /* initial channels, cells, classes */
	int32_t height, width;      /* input size (ImageNet: 224 x 224) */
	int32_t batch;
	bool supernet;              /* the search network: every edge the mix of the eight
				     * primitives weighted by softmax(alpha); CIFAR only */
	struct rxd_genotype geno;   /* when !supernet */
	int32_t steps, multiplier;  /* supernet: nodes per cell, nodes concatenated */
	const float *alpha_normal;  /* supernet: [edges][RXD_NAS_PRIMITIVES] each, where */
	const float *alpha_reduce;  /* edges = steps (steps + 3) / 2; copied by nas_build */
	bool unfused;               /* one step per module: no DWPW, no adds (the tests
				     * compare it with the fused plan) */
};

struct rxd_nas_ptensor {
	int32_t c, h, w;          /* per image; the batch is the plan's */
	uint64_t elems;           /* batch c h w */
	uint64_t offset;          /* in the arena, floats */
	int32_t first, last;      /* the first step writing it, the last reading it (the input:
				   * -1; the logits: n_steps) */
};

/* Weighted entries of the state_dict blob, in its order. */
enum rxd_nas_param_kind {
	RXD_NAS_P_CONV = 0, /* weight [cout][cin/groups][kh][kw] */
	RXD_NAS_P_BN,       /* weight, bias, running_mean, running_var: 4 x c */
	RXD_NAS_P_BN_STATS, /* affine=False (the supernet): running_mean, running_var: 2 x c */
	RXD_NAS_P_LINEAR,   /* weight [out][in], bias [out] */
};

struct rxd_nas_param {
	int kind;
	int32_t cout, cin, kh, kw; /* conv: cin per group; BN: cout = channels; linear: out, in */
	uint64_t floats;           /* of the blob */
	uint64_t blob_off;
	char name[64];             /* the state_dict prefix, e.g. "cells.0._ops.1.op.2" */
};

struct rxd_nas_step {
	uint8_t kind;          /* enum rxd_nas_step_kind */
	uint8_t part;          /* enum rxd_nas_op or RXD_NAS_PART_* */
	int16_t cell;          /* -1: stem; 0..layers-1; layers: head */
	int32_t in, out;       /* tensors */
	int32_t in_c_off, c_in; /* the input's channels read: [in_c_off, in_c_off + c_in);
				 * nas_build reads whole tensors only (in_c_off 0, c_in all) */
	int32_t c_off, c_out;  /* the output slice */
	bool accumulate;
	bool relu_in;          /* ReLU applied to the input as it is read */
	uint8_t in_shift;      /* 1: read in[:, :, 1:, 1:] (FactorizedReduce's conv_2) */
	float scale;
	int32_t kh, kw, sh, sw, ph, pw, dh, dw, groups; /* CONV; pools use kh, sh, ph */
	int32_t h_out, w_out;  /* = the output tensor's */
	uint64_t w_off, b_off; /* CONV, LINEAR: in the plan's weights, floats */
	int32_t conv_param, bn_param, bn_c_off; /* what nas_fold reads; -1: none */
	uint64_t macs;         /* multiply-adds per image */
	int32_t mid;           /* DWPW: the depthwise half's output (c_in channels) */
	int32_t conv2_param;   /* DWPW: the pointwise weight (bn_param is its BN) */
	uint64_t w2_off, b2_off; /* DWPW: the pointwise weights in the plan's weights */
	int32_t add, add_c_off; /* a tensor (-1: none) whose channels [add_c_off, + c_out),
				 * of the output's size, are added times add_scale as the
				 * slice is written: an identity edge summed into the node */
	float add_scale;
};

struct rxd_nas_plan {
	int family;
	bool supernet;
	int32_t batch, layers, classes;
	struct rxd_nas_ptensor *tensors;
	size_t n_tensors;
	struct rxd_nas_step *steps;
	size_t n_steps;
	struct rxd_nas_param *params;
	size_t n_params;
	int32_t input, output;     /* tensors: the image batch, the logits */
	uint64_t blob_floats;      /* the state_dict blob's length */
	uint64_t weight_floats;    /* the folded weights' */
	uint64_t arena_floats;     /* the activation arena's, after packing by liveness */
	uint64_t live_peak_floats; /* the most floats live at one step (a lower bound) */
	uint64_t param_count;      /* the paper's convention: conv, BN affine, linear */
	uint64_t macs;             /* multiply-adds per image */
};

/* Check cfg and lower it into plan. 0, or -EINVAL with a sentence in err naming the field,
 * -E2BIG (a size overflows; err says which) or -ENOMEM. Free with nas_plan_free. */
int nas_build(const struct rxd_nas_config *cfg, struct rxd_nas_plan *plan, struct rxd_error *err);
void nas_plan_free(struct rxd_nas_plan *plan);
/* dst becomes a copy of src that owns its arrays (free it with nas_plan_free). 0 or
 * -ENOMEM (dst then holds nothing). */
int nas_plan_copy(struct rxd_nas_plan *dst, const struct rxd_nas_plan *src);
/* The host memory a plan takes (the struct and its arrays), bytes. */
uint64_t nas_plan_host_bytes(const struct rxd_nas_plan *plan);

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
/* Device memory the plan needs: the folded weights and the arena, in bytes. */
uint64_t nas_plan_bytes(const struct rxd_nas_plan *plan);
/* "sep_conv_3x3", "stem", "preprocess", "head", "concat". */
const char *nas_part_name(int part);
const char *nas_kind_name(int kind);
/* Fill blob (plan->blob_floats) with the documented deterministic weights of seed. */
void nas_init_blob(const struct rxd_nas_plan *plan, uint64_t seed, float *blob);
/* n floats uniform in [-1, 1) from seed (random inputs). */
void nas_random_floats(uint64_t seed, float *out, uint64_t n);
/* Fold blob (the state_dict, plan->blob_floats) into weights (plan->weight_floats).
 * 0, or -EINVAL when a running_var is negative or a value is not finite (err names the
 * entry). */
int nas_fold(const struct rxd_nas_plan *plan, const float *blob, float *weights,
	     struct rxd_error *err);
/* A weight blob of floats floats for plan: 0, or -EINVAL with err stating the length
 * expected. */
int nas_check_blob(const struct rxd_nas_plan *plan, uint64_t floats, struct rxd_error *err);

/* NAS evaluation jobs. */
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

#endif

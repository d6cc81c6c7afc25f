/* rxgemm.h: librxgemm, the client library of rxgemmd.
 *
 * rxgemmd owns one GPU and runs matrix jobs for the processes of one machine. This library
 * connects to it over its Unix socket and submits jobs.
 *
 * Return values: every function that can fail returns RXG_OK (0) or one of the positive
 * RXG_E* codes below; rxg_strerror() names a code and rxg_errmsg() gives the sentence that
 * explains the last failure on a handle (often the daemon's own words). The library never
 * prints and never exits.
 *
 * Threads: a handle may be used from several threads; calls on one handle are serialised
 * (one request on the wire at a time). For parallel jobs, open one handle per thread.
 * rxg_errmsg() describes the last failure of any thread on that handle. */
#ifndef RXGEMM_H
#define RXGEMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, text). The values equal the wire protocol's Status enum; keep them so. */
#define RXG_ERRORS(X)                                                                       \
	X(RXG_OK, 0, "success")                                                             \
	X(RXG_EINVAL, 1, "invalid argument")                                                \
	X(RXG_ETOOBIG, 2, "request exceeds the daemon's limits")                            \
	X(RXG_EPROTO, 3, "protocol error")                                                  \
	X(RXG_EVERSION, 4, "protocol version mismatch")                                     \
	X(RXG_EDEVICE, 5, "device error")                                                   \
	X(RXG_ENOMEM, 6, "out of memory")                                                   \
	X(RXG_ESHUTDOWN, 7, "daemon is shutting down")                                      \
	X(RXG_EUNSUPPORTED, 8, "request not supported by the daemon")                       \
	X(RXG_EINTERNAL, 9, "internal error in the daemon")                                 \
	X(RXG_ECONNECT, 100, "cannot connect to the daemon")                                \
	X(RXG_EIO, 101, "connection to the daemon failed")

enum rxg_error {
#define RXG_ENUM_(name, value, text) name = value,
	RXG_ERRORS(RXG_ENUM_)
#undef RXG_ENUM_
};

/* The text for a code ("invalid argument"); never NULL, also for unknown codes. */
const char *rxg_strerror(int code);

typedef struct rxg_client rxg_client;

/* The socket path used when none is given: $RXGEMM_SOCKET if set, else
 * $RUNTIME_DIRECTORY/rxgemmd.sock (under systemd), else /run/rxgemmd/rxgemmd.sock for root,
 * else $XDG_RUNTIME_DIR/rxgemmd.sock (the user's own daemon; when there is no socket there
 * but the system service's exists, that one), else /run/rxgemmd/rxgemmd.sock. Writes at
 * most len bytes (NUL included) to buf; returns RXG_OK or RXG_EINVAL when it does not fit. */
int rxg_default_socket(char *buf, size_t len);

/* Connect and exchange Hello. socket_path NULL means rxg_default_socket(). client_name is
 * shown in the daemon's logs and status (NULL: "librxgemm"). On success *out is a new
 * handle; on failure *out is NULL and the code says why (RXG_ECONNECT, RXG_EVERSION, ...). */
int rxg_connect(const char *socket_path, const char *client_name, rxg_client **out);

/* Close the connection and free the handle. NULL is allowed. */
void rxg_close(rxg_client *c);

/* The sentence explaining the last failure on this handle ("" when none). Valid until the
 * next call on the handle. With c NULL: why the calling thread's last rxg_connect failed. */
const char *rxg_errmsg(const rxg_client *c);

struct rxg_server_info {
	uint32_t protocol_version;
	const char *daemon_version;
	const char *device;       /* platform / device / OpenCL version / driver */
	uint64_t max_frame_bytes; /* the largest message body the daemon accepts */
	uint32_t client_id;       /* this connection's number in the daemon's logs and status */
};

/* What the daemon said in its Hello reply. Owned by the handle. */
const struct rxg_server_info *rxg_server_info(const rxg_client *c);

/* Time spent on one job, in nanoseconds, as measured by the daemon. h2d, kernel and d2h
 * come from the device's profiling events (0 where the device does not report them). */
struct rxg_timings {
	uint64_t queued_ns;
	uint64_t h2d_ns;
	uint64_t kernel_ns;
	uint64_t d2h_ns;
	uint64_t total_ns;
};

enum rxg_layout {
	RXG_COL_MAJOR = 0, /* element (i, j) at i + j * ld */
	RXG_ROW_MAJOR = 1, /* element (i, j) at i * ld + j */
};

/* C = alpha * op(A) * op(B) + beta * C in FP32; op(A) is m x k, op(B) k x n, C m x n.
 * A leading dimension of 0 means the tightest one. The stored A is m x k (k x m when
 * trans_a), likewise B; each array holds ld * (cols - 1) + rows elements at least (rows and
 * cols of the stored matrix, swapped for row-major). c must not be NULL: it is read when
 * beta != 0 (never when beta == 0, so NaNs there do not matter) and always receives the
 * result; elements between rows or columns (ldc padding) are left as they were. */
struct rxg_gemm_args {
	enum rxg_layout layout;
	int trans_a;
	int trans_b;
	int64_t m, n, k;
	float alpha;
	float beta;
	const float *a;
	int64_t lda;
	const float *b;
	int64_t ldb;
	float *c;
	int64_t ldc;
	/* Strided batches (leave 0 for one product): batch_count products, the i-th on the
	 * matrices that start i * stride_* floats into a, b and c (0: ld * cols, the matrices
	 * one after another). Matrices of a batch may not overlap. */
	int64_t batch_count;
	int64_t stride_a, stride_b, stride_c;
};

/* Run one GEMM and wait for it. timings may be NULL. */
int rxg_gemm(rxg_client *c, const struct rxg_gemm_args *args, struct rxg_timings *timings);

/* One finished job as the daemon remembers it. */
struct rxg_job_record {
	uint64_t request_id;
	uint32_t client_id;
	int64_t m, n, k;
	int status; /* RXG_OK or an RXG_E* code */
	struct rxg_timings timings;
};

/* An OpenCL device the daemon can see. */
struct rxg_device_info {
	uint32_t index; /* what rxgemmd --device takes */
	char *platform;
	char *name;
	char *type;    /* "GPU", "CPU", ... */
	char *version; /* the device's OpenCL version string */
	char *driver;
	uint64_t global_mem_bytes;
	uint32_t compute_units;
	uint32_t clock_mhz;
	int in_use; /* the device this daemon serves */
};

/* The GEMM kernel that serves one pair of transposes (of the column-major problem the
 * daemon computes) and one size class of C (0: under 384^2 elements, 1: under 768^2,
 * 2: under 1536^2, 3: larger). */
struct rxg_kernel_choice {
	int trans_a, trans_b;
	unsigned size_class;
	char *kernel; /* its configuration */
	double gflops; /* measured by rxgemmd --tune at the class's size; 0 for a default */
	int tuned;
};

/* The daemon's state. Allocated by rxg_status, freed by rxg_status_free; fields may be
 * added at the end in later versions. */
struct rxg_status {
	char *daemon_version;
	char *device;
	uint64_t uptime_ns;
	uint32_t clients_connected;
	uint64_t clients_total;
	uint64_t jobs_ok;
	uint64_t jobs_failed;
	uint64_t requests_rejected;
	uint32_t jobs_queued;
	uint64_t flops_total;
	uint64_t kernel_ns_total;
	uint64_t device_global_mem_bytes;
	uint64_t device_max_alloc_bytes;
	size_t n_recent;
	struct rxg_job_record *recent; /* oldest first */
	size_t n_devices;
	struct rxg_device_info *devices; /* every OpenCL device the daemon can see */
	/* The kernel cache: built programs, kept in memory and their binaries on disk. */
	char *kernel_cache_dir;          /* "" when the daemon keeps none on disk */
	int kernel_cache_writable;       /* 0: entries are read but none are written */
	uint64_t kernel_cache_max_bytes; /* bound on the entries' size */
	uint64_t kernel_cache_entries;   /* entry files in the directory */
	uint64_t kernel_cache_bytes;     /* their size */
	uint64_t kernel_cache_hits;      /* programs loaded from a disk entry */
	uint64_t kernel_cache_misses;    /* programs compiled from source */
	uint64_t kernel_cache_memory_hits; /* programs built once and handed out again */
	uint64_t kernel_cache_rejected;  /* bad entries (truncated, corrupt, foreign), rebuilt */
	uint64_t kernel_cache_evictions; /* entries removed to keep within the bound */
	uint64_t kernel_cache_compile_ns;
	uint64_t kernel_cache_load_ns;
	size_t n_kernels;
	struct rxg_kernel_choice *kernels; /* per transpose pair and size class */
	/* The device-memory budget: every job's buffers are reserved within it. */
	uint64_t vram_budget_bytes;
	uint64_t vram_reserved_bytes;     /* reserved now by the jobs admitted */
	uint64_t vram_in_use_bytes;       /* of that, in buffers the running jobs hold */
	uint64_t vram_peak_bytes;         /* most ever reserved plus pooled */
	uint64_t vram_pool_bytes;         /* idle buffers kept for reuse, within the budget */
	uint64_t vram_pool_buffers;
	uint32_t jobs_waiting_for_memory; /* queued until the budget has room */
	uint64_t vram_client_quota_bytes; /* per connection at once; 0: none */
	uint64_t jobs_split;              /* jobs bigger than the budget, run in pieces */
};

int rxg_status(rxg_client *c, struct rxg_status **out);
void rxg_status_free(struct rxg_status *st);

/* ---- NAS evaluation: a DARTS network run on the daemon's device (docs/NAS.md) ---- */
enum rxg_nas_dataset {
	RXG_NAS_CIFAR = 0,    /* NetworkCIFAR; defaults C 36, 20 layers, 10 classes, 32x32 */
	RXG_NAS_IMAGENET = 1, /* NetworkImageNet; defaults C 48, 14 layers, 1000 classes, 224x224 */
};

/* Zeros mean the defaults above (batch: 1, repeat: 1). */
struct rxg_nas_args {
	const char *genotype;       /* "DARTS_V1", "DARTS_V2", "NASNet", "AmoebaNet" or the
				     * reference's printed Genotype(...) text; NULL for the
				     * supernet */
	enum rxg_nas_dataset dataset;
	int32_t c, layers, classes, height, width, batch;
	const float *weights;       /* the state_dict blob (docs/NAS.md), n_weights floats;
				     * NULL: the documented init from weight_seed */
	size_t n_weights;
	uint64_t weight_seed;
	const float *input;         /* batch x 3 x height x width (NCHW); NULL: uniform in
				     * [-1, 1) from input_seed */
	uint64_t input_seed;
	uint32_t warmup, repeat;    /* untimed runs, then timed ones */
	float *logits;              /* receives batch x classes; NULL: not asked for */
	int supernet;               /* the search network, edges weighted by softmax(alpha) */
	uint32_t steps, multiplier; /* supernet; 0: 4 and 4 */
	const float *alpha_normal;  /* supernet: steps (steps + 3) / 2 x 8 each */
	const float *alpha_reduce;
};

struct rxg_nas_part {
	char *name;      /* "sep_conv_3x3", "stem", "preprocess", "concat", "head"; "cell 3" */
	uint64_t ns;     /* mean over the timed runs */
	uint32_t steps;  /* the plan's steps it covers */
};

/* Allocated by rxg_nas_eval, freed by rxg_nas_result_free. The parts of by_op, and those
 * of by_cell, each add up to latency_mean_ns (when the device gives profiling times;
 * both are empty otherwise). */
struct rxg_nas_result {
	char *genotype;              /* printed; "" for the supernet */
	uint64_t params;             /* the paper's count (conv, BN weight/bias, classifier) */
	uint64_t macs;               /* multiply-adds per image */
	uint64_t weight_floats;      /* the state_dict blob's length */
	uint64_t peak_device_bytes;  /* weights + activations + scratch */
	uint64_t activation_bytes;
	int32_t batch, batch_piece;  /* batch_piece < batch: run in pieces to fit the budget */
	int32_t classes;
	uint32_t steps;              /* in the plan */
	uint64_t latency_median_ns, latency_p90_ns, latency_mean_ns;
	uint64_t *run_ns;            /* every timed run */
	size_t n_runs;
	struct rxg_nas_part *by_op;
	size_t n_by_op;
	struct rxg_nas_part *by_cell; /* stem, cell 0 .. cell layers-1, head */
	size_t n_by_cell;
};

/* Evaluate one network and wait for it. RXG_OK with *out set, or an error code (the reason
 * in rxg_errmsg). */
int rxg_nas_eval(rxg_client *c, const struct rxg_nas_args *args, struct rxg_nas_result **out);
void rxg_nas_result_free(struct rxg_nas_result *r);

#ifdef __cplusplus
}
#endif

#endif

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
 * Jobs: rxg_gemm() runs one GEMM and waits for it. rxg_submit_gemm() only sends it and
 * returns its request id at once; rxg_wait(), rxg_wait_any() and rxg_cancel() follow it up,
 * and rxg_fd() lets an event loop learn when a reply is there. Any number of jobs may be in
 * flight on one handle; the daemon answers them in the order its scheduler runs them. (It
 * stops reading a connection whose replies wait unread; a send it holds back that way
 * reads them meanwhile, each kept for its wait.)
 *
 * Threads: a handle may be used from several threads at once: each may submit jobs and
 * wait for its own (a reply read by one thread is kept for the one that waits for it).
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
	X(RXG_EBUSY, 10, "the daemon's queue is full")                                      \
	X(RXG_ETIMEOUT, 11, "the job's deadline passed before it ran")                      \
	X(RXG_ECANCELLED, 12, "the job was cancelled")                                      \
	X(RXG_EREGION, 13, "shared-memory buffer unknown, unusable or in use")              \
	X(RXG_EPERM, 14, "this user is not allowed to use the daemon")                      \
	X(RXG_ETENSOR, 15, "device tensor unknown (freed, or another connection's)")        \
	X(RXG_EQUOTA, 16, "over this client's device-memory quota")                         \
	X(RXG_ECONNECT, 100, "cannot connect to the daemon")                                \
	X(RXG_EIO, 101, "connection to the daemon failed")                                  \
	X(RXG_EAGAIN, 102, "no job has finished yet")

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
	uint32_t busy_poll_us;    /* how long the daemon polls after each request and reply
				   * (rxgemmd --busy-poll); 0: not at all */
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
 * result; elements between rows or columns (ldc padding) are left as they were. A failed
 * call leaves the array c as it was when beta != 0, and may leave part of a result in it
 * when beta == 0. (With shared-memory buffers, below, any of a, b and c may be NULL instead.) */
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
	/* Shared memory (rxg_buffer_create), instead of copying matrices through the socket.
	 * NULL: the pointer above is used, as always. Otherwise the matrix lies in the buffer
	 * at the offset (bytes, a multiple of 4) and the pointer above is ignored:
	 * - a_buf, b_buf: A and B are read from there;
	 * - c_buf: C is read from there (when beta != 0), and the result replaces it there
	 *   unless c_out_buf is set; c may then be NULL;
	 * - c_out_buf: the result is written there instead (C's input comes from c_buf or c);
	 *   c may be NULL when beta == 0 or c_buf is set.
	 * A buffer that receives the result gets the whole stored C, ldc * (cols - 1) + rows
	 * floats per matrix (rows and cols swapped for row-major): the padding between columns
	 * comes from C's input when it replaces that input in place or beta reads it, zeros
	 * otherwise. The result may only overlap C's own input, at the same offset. Buffers
	 * must be registered on the same handle. */
	struct rxg_buffer *a_buf;
	size_t a_offset;
	struct rxg_buffer *b_buf;
	size_t b_offset;
	struct rxg_buffer *c_buf;
	size_t c_offset;
	struct rxg_buffer *c_out_buf;
	size_t c_out_offset;
	/* Device tensors (rxg_tensor_create) of this handle, used in place on the device with
	 * no copy at all; NULL: the pointer or buffer above. A tensor operand holds at least
	 * the floats its stored matrix needs (the same count as the arrays above), its first
	 * floats being the matrix.
	 * - a_tensor, b_tensor: A and B are read from there;
	 * - c_tensor: C's input comes from there, and the result replaces it there unless
	 *   c_out_tensor or c_out_buf is set;
	 * - c_out_tensor: the result is written there and stays on the device (read it with
	 *   rxg_tensor_read, or use it as the next GEMM's operand); it may be c_tensor, not
	 *   a_tensor or b_tensor. A tensor's elements between C's columns (ldc padding) are
	 *   left as they were unless C's input is another tensor or host data.
	 * Each of A, B and C comes from one place only: setting a tensor and a buffer for the
	 * same operand is RXG_EINVAL. */
	struct rxg_tensor *a_tensor;
	struct rxg_tensor *b_tensor;
	struct rxg_tensor *c_tensor;
	struct rxg_tensor *c_out_tensor;
};

/* Run one GEMM and wait for it. timings may be NULL.
 *
 * When A, B and C are all plain arrays (no buffer, no tensor) of 256 KiB or more together,
 * the library copies them into shared-memory buffers of its own and copies C back out,
 * rather than sending them in the request and reply: on a GPU machine that is many times
 * faster (docs/PERFORMANCE.md). It keeps up to 4 such buffers per handle between jobs.
 * The environment variable RXGEMM_STAGE_BYTES sets the threshold in bytes, or "off" to
 * send every array inline; it is read at the process's first GEMM. Copies of 2 MiB or more
 * are spread over threads of the library's own, RXGEMM_COPY_THREADS in all with the
 * caller (1 to 64; by default the CPUs the process may use, at most 16; 1: the caller
 * alone), started at the first such copy and joined when the last handle is closed. */
int rxg_gemm(rxg_client *c, const struct rxg_gemm_args *args, struct rxg_timings *timings);

/* Shared memory: a buffer is memory both this process and the daemon map (a sealed memfd
 * passed over the socket), so that matrices placed in it reach the device without a copy
 * through the socket, and results come back the same way. A buffer belongs to the handle
 * that created it and must be freed before that handle is closed (closing the handle ends
 * the daemon's side of every buffer anyway). */
typedef struct rxg_buffer rxg_buffer;

/* Create a buffer of bytes and register it with the daemon. RXG_OK with *out set; RXG_ENOMEM
 * when the shared memory cannot be made, RXG_EREGION or RXG_ETOOBIG when the daemon refuses
 * it (too many, too large), or a connection error. */
int rxg_buffer_create(rxg_client *c, size_t bytes, rxg_buffer **out);
/* The buffer's memory (bytes long, page-aligned, zero-filled at creation); NULL for NULL. */
void *rxg_buffer_ptr(const rxg_buffer *buf);
size_t rxg_buffer_size(const rxg_buffer *buf);
/* Unregister the buffer and unmap it. RXG_EREGION when jobs in flight still use it: nothing
 * is freed then, try again once they are answered. Any other outcome frees it (RXG_EIO: the
 * connection was lost, which ended the registration as well). NULL is allowed. */
int rxg_buffer_free(rxg_buffer *buf);

/* ---- Device tensors ----
 * A tensor is float32 data the daemon keeps in its device memory between jobs, so that an
 * operand used again (weights, a fixed B, a chain of products) crosses to the device once.
 * It counts against the daemon's device-memory budget and this client's quota while it
 * lives; creating one that does not fit is refused (RXG_ETOOBIG: over the budget, or what
 * other tensors leave of it; RXG_EQUOTA: over this client's quota). A tensor belongs to
 * the handle that created it: the daemon frees it with rxg_tensor_free or when the handle
 * is closed (or its process dies). Free every tensor before closing its handle. */
typedef struct rxg_tensor rxg_tensor;

#define RXG_TENSOR_MAX_DIMS 3

/* Create a tensor of dims[0] x ... x dims[ndims - 1] floats (ndims 1 to 3, each at least
 * 1) from data (that many floats, row-major as far as the daemon cares: it is a flat
 * array), or zeros when data is NULL, and wait for it. RXG_OK with *out set, else *out is
 * NULL: RXG_EINVAL, RXG_ETOOBIG, RXG_EQUOTA, RXG_ENOMEM or a connection error. */
int rxg_tensor_create(rxg_client *c, const int64_t *dims, int ndims, const float *data,
		      rxg_tensor **out);
/* The same with the floats read from a shared-memory buffer of c at offset bytes (a
 * multiple of 4): no copy through the socket. */
int rxg_tensor_create_from_buffer(rxg_client *c, const struct rxg_buffer *buf, size_t offset,
				  const int64_t *dims, int ndims, rxg_tensor **out);
/* The number of floats a tensor holds (its dims multiplied); 0 for NULL. */
size_t rxg_tensor_floats(const rxg_tensor *t);
/* Read the tensor's floats into out (n floats, at least rxg_tensor_floats) and wait (out
 * may hold part of them after a failure). RXG_OK, RXG_EINVAL (n too small), RXG_ETOOBIG (more than one reply frame carries: read
 * it into a buffer), RXG_ETENSOR or a connection error. */
int rxg_tensor_read(rxg_tensor *t, float *out, size_t n);
/* The same into a shared-memory buffer of the tensor's handle at offset bytes. */
int rxg_tensor_read_to_buffer(rxg_tensor *t, struct rxg_buffer *buf, size_t offset);
/* rxg_tensor_read as a job (see "Asynchronous jobs" below): sent at once, its id in *id;
 * rxg_wait or rxg_wait_any copies the floats into out (which must stay valid until then;
 * large data may be written there as it arrives, before the wait, and out holds nothing
 * certain after a failed one) and returns the read's result. A read sent after a job that writes the tensor (both at
 * the default priority) sees that job's result. RXG_OK, RXG_EINVAL or RXG_EIO. */
int rxg_submit_tensor_read(rxg_tensor *t, float *out, size_t n, uint64_t *id);
/* Free the tensor on the daemon and here. A job in flight that uses it still completes.
 * The handle is freed whatever the daemon answers (RXG_ETENSOR: it did not know it; a
 * connection error: closing the connection freed it anyway). NULL is allowed. */
int rxg_tensor_free(rxg_tensor *t);

/* ---- Asynchronous jobs ---- */

/* How the daemon schedules a job. All zero (or a NULL pointer) is the default. */
struct rxg_job_options {
	/* 0 (default) to 3: a waiting job of a higher level always runs before one of a lower
	 * level; within a level the daemon shares the device fairly between connections. */
	unsigned priority;
	/* The longest the job may wait in the daemon's queue, in ms from its arrival there;
	 * past that it is not run and its wait returns RXG_ETIMEOUT. 0: no limit. A job that
	 * has started is never stopped for its deadline. */
	uint64_t deadline_ms;
};

/* Send one GEMM (see rxg_gemm; opts may be NULL) and return at once, with its request id
 * (never 0) in *id. The arrays args points to are read before this returns, except c:
 * it must stay valid until the job is waited for, which writes the result there (as
 * rxg_gemm does; with beta == 0 a large result may be written as its reply arrives,
 * before the wait, so c holds nothing certain until the wait returns, nor after a failed
 * one). Every job submitted must be waited for once (rxg_wait or rxg_wait_any),
 * also a cancelled one; until then the handle keeps its reply. On failure nothing was
 * queued and *id is 0: RXG_EINVAL (bad arguments), RXG_ETOOBIG (over the daemon's frame
 * size) or RXG_EIO. The daemon's verdict on the job (RXG_EBUSY when its queue is full,
 * invalid sizes, ...) comes with the wait. */
int rxg_submit_gemm(rxg_client *c, const struct rxg_gemm_args *args,
		    const struct rxg_job_options *opts, uint64_t *id);

/* Wait for the job id and finish it: its C is in place on RXG_OK. Returns the job's result
 * (RXG_OK or the daemon's code: RXG_EBUSY, RXG_ETIMEOUT, RXG_ECANCELLED, ...), RXG_EINVAL
 * when id is not a job of this handle waiting to be waited for, or RXG_EIO. timings may be
 * NULL. */
int rxg_wait(rxg_client *c, uint64_t id, struct rxg_timings *timings);

/* Wait up to timeout_ms (-1: for ever, 0: do not block) for any job submitted with
 * rxg_submit_gemm or rxg_submit_tensor_read (never another thread's rxg_gemm) to finish, and finish it as rxg_wait
 * does. On return *id is the job's id and the value its result,
 * or *id is 0 and the value RXG_EAGAIN (none finished in time), RXG_EINVAL (no job is
 * waiting to be waited for) or RXG_EIO. */
int rxg_wait_any(rxg_client *c, int timeout_ms, uint64_t *id, struct rxg_timings *timings);

enum rxg_cancel_outcome {
	RXG_CANCEL_NOT_FOUND = 0, /* the daemon holds no such job: it has finished (its reply
				   * is there or on its way) or never arrived */
	RXG_CANCEL_QUEUED = 1,    /* it was waiting: it will not run (RXG_ECANCELLED) */
	RXG_CANCEL_RUNNING = 2,   /* it was running: it stops at its next check and returns
				   * RXG_ECANCELLED, or returns its result if it finished first */
};

/* Ask the daemon to cancel the job id and wait for its answer (not for the job), put in
 * *outcome (may be NULL). The job still has to be waited for. RXG_OK, RXG_EINVAL (id is
 * not a job of this handle), RXG_EUNSUPPORTED (an older daemon) or RXG_EIO. */
int rxg_cancel(rxg_client *c, uint64_t id, enum rxg_cancel_outcome *outcome);

/* A file descriptor that becomes readable when a reply has arrived, for poll(2), epoll or
 * an event loop. Only watch it for reading; never read, write or close it. After it polls
 * readable, call rxg_wait_any(c, 0, ...) until it returns RXG_EAGAIN: replies read while
 * waiting for another job, or by a submit that the daemon held back until its replies were
 * read (see "Jobs" above), are held by the handle and do not make the fd readable again,
 * so call it after a submit too. -1 when the connection is lost. */
int rxg_fd(const rxg_client *c);

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

/* What one client connection got from the daemon since it connected (or, as
 * rxg_status.departed, the sum over every client that has disconnected: client_id 0, name
 * "", uid and pid -1). Jobs that finish after their client left are not counted. */
struct rxg_client_stats {
	uint32_t client_id;        /* as in rxg_server_info of that connection */
	char *name;                /* the name it gave rxg_connect ("" before Hello) */
	int64_t uid, pid;          /* its credentials when it connected; -1 when unknown */
	uint64_t jobs_ok;
	uint64_t jobs_failed;      /* reached the device and failed there */
	uint64_t requests_rejected; /* answered with an error before reaching the device */
	uint32_t jobs_in_flight;   /* submitted and not answered yet */
	uint64_t flops;            /* of the jobs that succeeded: 2 m n k (times the batch) summed */
	struct rxg_timings timings; /* each phase summed over the jobs that succeeded */
	uint64_t bytes_in;         /* matrix bytes its requests carried (A, B, C) */
	uint64_t bytes_out;        /* matrix bytes the replies carried (C) */
	uint32_t tensors;          /* device tensors it holds now */
	uint64_t tensor_bytes;     /* their size in the daemon's device-memory budget */
};

/* One GEMM kernel variant's work over the jobs it ran to success. Its GFLOPS on the device
 * are flops / timings.kernel_ns. */
struct rxg_kernel_stats {
	char *kernel;              /* as in the daemon's logs and rxg_status.kernels */
	uint64_t jobs;
	uint64_t flops;
	struct rxg_timings timings; /* each phase summed over those jobs */
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
	/* The scheduler: jobs waiting for the device, and what became of refused ones. */
	uint32_t max_queue;               /* bound on jobs waiting in total; 0: none */
	uint32_t client_max_queue;        /* per connection; 0: none */
	uint32_t jobs_waiting;            /* waiting now (jobs_queued counts running ones too) */
	uint32_t clients_waiting;         /* connections with jobs waiting now */
	uint64_t jobs_rejected_busy;      /* refused with RXG_EBUSY */
	uint64_t jobs_expired;            /* deadline passed in the queue (RXG_ETIMEOUT) */
	uint64_t jobs_cancelled;          /* answered RXG_ECANCELLED */
	/* Sharing: who uses the device, with which kernels, and how busy it is. The busy
	 * times are on uptime_ns's clock: the device worker's time on jobs (the one running
	 * now included), so busy / elapsed between two snapshots is the utilisation then. */
	size_t n_clients;
	struct rxg_client_stats *clients;   /* the connected clients, the oldest first */
	struct rxg_client_stats departed;   /* the sum over the clients that have left */
	size_t n_kernel_stats;
	struct rxg_kernel_stats *kernel_stats; /* every variant that has run a job */
	uint64_t device_busy_ns;            /* since start */
	uint64_t device_recent_busy_ns;     /* within the last device_recent_window_ns */
	uint64_t device_recent_window_ns;   /* about 5 s (less just after start) */
	uint64_t device_current_job_ns;     /* how long the running job has run; 0: idle */
	double device_utilisation;          /* device_busy_ns / uptime_ns, in [0, 1] */
	double device_utilisation_recent;   /* over the recent window, in [0, 1] */
	/* Shared-memory buffers (regions) of all clients together. */
	uint32_t shm_regions;             /* mapped by the daemon now */
	uint64_t shm_region_bytes;        /* their size */
	uint64_t shm_regions_registered;  /* since the daemon started */
	uint64_t shm_jobs;                /* GEMMs that read or wrote a buffer */
	uint64_t shm_jobs_in_place;       /* of them, run on the buffers in place (devices that
					   * work on host memory): no copy at all */
	/* The NAS plan cache: planned networks kept for the next job on them. */
	uint32_t nas_plan_cache_capacity; /* plans it may keep; 0: none */
	uint32_t nas_plan_cache_entries;  /* kept now */
	uint64_t nas_plan_cache_hits;     /* handed out again (a job plans twice: the whole
					   * batch, then its piece on the device) */
	uint64_t nas_plan_cache_misses;   /* built */
	uint64_t nas_plan_cache_evictions; /* dropped for room, the least recently used */
	uint64_t nas_plan_cache_bytes;    /* host memory of the plans kept */
	/* Host buffers the daemon keeps between jobs (frames and results of 1 MiB or more),
	 * pinned on a device with memory of its own. */
	uint32_t host_buffers_kept;       /* kept now, waiting for the next job */
	uint64_t host_buffer_kept_bytes;
	uint32_t host_buffers_pinned;     /* pinned now, kept or in use */
	uint64_t host_buffer_pinned_bytes;
	uint64_t host_buffer_hits;        /* frames and results that took a kept buffer */
	uint64_t host_buffer_misses;      /* those of 1 MiB or more that found none */
	uint64_t host_buffer_pins_made;   /* since the daemon started */
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
	/* Instead of weights / input: n_weights floats (the input's batch x 3 x height x width)
	 * at a byte offset (a multiple of 4) in a shared-memory buffer of this handle, which
	 * then need not travel in the request. NULL: weights / input as above. */
	struct rxg_buffer *weights_buf;
	size_t weights_offset;
	struct rxg_buffer *input_buf;
	size_t input_offset;
	/* Or from device tensors of this handle (rxg_tensor_create), uploaded once for many
	 * evaluations: n_weights (the input's) floats exactly. NULL: as above. */
	struct rxg_tensor *weights_tensor;
	struct rxg_tensor *input_tensor;
	/* Non-zero: by_op and by_cell, every step's kernels timed by events, which costs device
	 * time (the result's profiled and unprofiled_median_ns say how much). Zero: the runs
	 * are timed from their first kernel to their last, the breakdowns are empty. */
	int want_breakdown;
};

struct rxg_nas_part {
	char *name;      /* "sep_conv_3x3", "stem", "preprocess", "concat", "head"; "cell 3" */
	uint64_t ns;     /* mean over the timed runs */
	uint32_t steps;  /* the plan's steps it covers */
};

/* Allocated by rxg_nas_eval, freed by rxg_nas_result_free. The parts of by_op, and those
 * of by_cell, each add up to latency_mean_ns (when asked for with want_breakdown and the
 * device gives profiling times; both are empty otherwise). */
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
	int profiled;                /* the timed runs had every step timed (the breakdowns):
				      * the latencies include what that cost */
	uint64_t unprofiled_median_ns; /* profiled: the median of as many runs without it */
};

/* Evaluate one network and wait for it. RXG_OK with *out set, or an error code (the reason
 * in rxg_errmsg). */
int rxg_nas_eval(rxg_client *c, const struct rxg_nas_args *args, struct rxg_nas_result **out);
void rxg_nas_result_free(struct rxg_nas_result *r);

/* ---- DARTS architecture search jobs (docs/NAS.md, "Search jobs") ----
 * The daemon trains the search's supernet (weights on the training half, the alphas on the
 * validation half, first order) one step per scheduler turn, so that other clients keep
 * being served, and hands back the derived genotype. */

/* One half of the data: count images (count x 3 x height x width float32, NCHW) and count
 * labels (int32 in [0, classes)), host arrays sent inline with the request, or (buf set)
 * at byte offsets (multiples of 4) in a shared-memory buffer of this handle, which then
 * must stay registered until the search ends. */
struct rxg_search_data {
	int64_t count;
	const float *images;
	const int32_t *labels;
	struct rxg_buffer *buf;
	size_t images_offset, labels_offset;
};

/* rxg_search_args_init fills in the defaults: zeros for the integers (the daemon's
 * defaults: C 16, layers 8, classes 10, 32 x 32, batch 64, steps 4, multiplier 4, epochs
 * 50) and NaN for the reals (the reference's: lr 0.025 annealed to lr_min 0.001, momentum
 * 0.9, weight decay 3e-4, clip 5; Adam lr 3e-4, betas 0.5 and 0.999, eps 1e-8, weight
 * decay 1e-3). A real set to a number is sent as given, 0 included. */
struct rxg_search_args {
	int32_t c, layers, classes, height, width, batch;
	uint32_t steps, multiplier;
	uint64_t seed;              /* the initial weights and alphas */
	uint32_t epochs;            /* the learning rate's cosine period */
	uint64_t max_steps;         /* stop once this many steps are done in all (a resumed
				     * state's included); 0: epochs x (train.count / batch) */
	double lr, lr_min, momentum, weight_decay, grad_clip;
	double arch_lr, arch_beta1, arch_beta2, arch_eps, arch_weight_decay;
	struct rxg_search_data train, valid;
	uint32_t progress_every;    /* a progress report after every this many steps; 0: none */
	/* A state a search handed back (want_state or state_buf), to continue from: the
	 * same network. NULL: start afresh from seed. */
	const void *resume_state;
	size_t resume_bytes;
	int want_state;             /* the final state in the result (state, state_bytes) */
	/* Or the final state written into a shared buffer of this handle at state_offset,
	 * state_len bytes at most (at least the state's size). NULL: not. */
	struct rxg_buffer *state_buf;
	size_t state_offset, state_len;
	unsigned priority;          /* as struct rxg_job_options' */
};
void rxg_search_args_init(struct rxg_search_args *args);

/* What a search reports between steps (every progress_every steps). The arrays and the
 * text are valid during the callback only. */
struct rxg_search_progress {
	uint64_t step, total_steps; /* steps done (the last one included); where it stops */
	int32_t epoch;
	double lr;                  /* the weights' learning rate of the last step */
	float train_loss, train_acc, valid_loss, valid_acc; /* the last step's; acc in [0, 1] */
	uint64_t forward_ns, backward_ns, update_ns;        /* the last step's */
	size_t n_alphas;            /* each of alpha_normal and alpha_reduce: edges x 8 */
	const float *alpha_normal, *alpha_reduce;
	const char *genotype;       /* derived from these alphas, printed */
};

struct rxg_search_step {
	uint64_t step;
	int32_t epoch;
	float train_loss, train_acc, valid_loss, valid_acc;
	uint64_t forward_ns, backward_ns, update_ns;
};

/* Allocated by rxg_search_wait (and rxg_search), freed by rxg_search_result_free. */
struct rxg_search_result {
	char *genotype;             /* the reference's printed Genotype(...), as
				     * `rxgemm nas --genotype-file` reads it */
	size_t n_alphas;
	float *alpha_normal, *alpha_reduce;
	uint64_t steps_done;        /* in all */
	struct rxg_search_step *curve; /* every step this job ran */
	size_t n_curve;
	void *state;                /* with want_state: the final state; else NULL */
	size_t state_bytes;         /* the state's size (also when written to state_buf) */
	uint64_t device_bytes;      /* the device memory the job reserved */
};

/* Send a search and return at once with its request id in *id. The data are read before
 * this returns (those in buffers are read by the daemon while it runs). Every search sent
 * must be waited for with rxg_search_wait until it returns other than RXG_EAGAIN, also a
 * cancelled one (rxg_cancel; it stops between two steps with RXG_ECANCELLED). rxg_wait and
 * rxg_wait_any do not see searches. RXG_OK, RXG_EINVAL, RXG_ETOOBIG (over the daemon's
 * frame size: give the data in buffers) or RXG_EIO. */
int rxg_submit_search(rxg_client *c, const struct rxg_search_args *args, uint64_t *id);
/* Wait up to timeout_ms (-1: for ever, 0: do not block) for the search id, calling
 * progress(p, arg) (may be NULL) for each report that arrives meanwhile. RXG_OK with *out
 * the result once the search has ended well; RXG_EAGAIN when it goes on (only reports
 * came, or none in time); or the search's error (RXG_ECANCELLED, RXG_ETOOBIG, RXG_EQUOTA,
 * RXG_EINVAL, ...), after which id is no longer valid. */
int rxg_search_wait(rxg_client *c, uint64_t id, int timeout_ms,
		    void (*progress)(const struct rxg_search_progress *p, void *arg), void *arg,
		    struct rxg_search_result **out);
/* rxg_submit_search, then rxg_search_wait until it ends. */
int rxg_search(rxg_client *c, const struct rxg_search_args *args,
	       void (*progress)(const struct rxg_search_progress *p, void *arg), void *arg,
	       struct rxg_search_result **out);
void rxg_search_result_free(struct rxg_search_result *r);

#ifdef __cplusplus
}
#endif

#endif

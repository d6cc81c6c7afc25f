/* rxgemmd.h: the daemon's internal header, one section per .c file.
 *
 * Threads: the libuv loop thread owns the listening socket, every connection, the
 * statistics and the configuration. The device worker thread (worker.c) owns the OpenCL
 * command queue and runs jobs one at a time. They meet only in worker.c's two locked lists
 * (jobs to run, jobs done); no lock is ever held while taking another. */
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
#include "rxgemm.pb-c.h"

#define RXD_ERROR_MAX 256 /* bytes of a human error sentence in a reply */

/* ---- log.c: stderr with syslog priority prefixes ("<6>"), which journald understands ---- */
void log_set_level(int level);
int log_get_level(void);
/* "debug", "info", "notice", "warning", "error" or a number 0-7; -1 when unknown. */
int log_parse_level(const char *s);
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* For start-up failures and broken invariants only: logs and exits 1. */
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t now_ns(void); /* CLOCK_MONOTONIC */

/* ---- config.c: options and the config file ---- */
struct rxd_config {
	char *socket_path;   /* where to listen */
	char *device;        /* --device: index or name substring; NULL: first GPU, else any */
	char *config_path;   /* the file read, or NULL */
	int log_level;
	uint64_t max_frame_bytes;
	bool list_devices;
};

#define RXD_DEFAULT_MAX_FRAME (256ull << 20)
#define RXD_MIN_MAX_FRAME (4ull << 10)
#define RXD_DEFAULT_CONFIG SYSCONFDIR "/rxgemmd/rxgemmd.conf"

/* Fills cfg from the defaults, the config file and argv, in that order of precedence
 * (argv wins). Returns 0 to run, or an exit code + 1 to exit with (so 1 means exit 0 after
 * --help or --version, 3 means exit 2 after a usage error, which has been printed). */
int config_init(struct rxd_config *cfg, int argc, char **argv);
void config_fini(struct rxd_config *cfg);
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

struct rxd_device {
	struct rxd_device_desc *all; /* every device of every platform, in index order */
	size_t n_all;
	const struct rxd_device_desc *desc; /* the one in use, within all[] */
	cl_context ctx;
	cl_command_queue queue;       /* used by the device worker thread only */
	char description[512];        /* platform / device / OpenCL version / driver */
	uint64_t global_mem_bytes;
	uint64_t max_alloc_bytes;
	uint64_t local_mem_bytes;
	size_t max_work_group_size;
	bool profiling;               /* the queue gives event times */
};

/* Enumerate the devices and open the one that selector names (an index from
 * --list-devices, or a case-insensitive substring of "platform device"); NULL picks the
 * first GPU, else the first device. 0, -ENODEV (nothing matches; logged) or -EIO. */
int device_open(struct rxd_device *dev, const char *selector);
void device_close(struct rxd_device *dev);
/* Print every platform and device to f (for --list-devices). 0 or -ENODEV. */
int device_list(FILE *f);
/* Build src for dev with options. On failure *log (malloc'd, may be NULL) holds the
 * compiler's output. 0 or -EIO. */
int device_build(struct rxd_device *dev, const char *name, const char *src,
		 const char *options, cl_program *out, char **log);
const char *device_strerror(cl_int err);
/* Elapsed device time of a finished event, 0 when the device gives none. */
uint64_t device_event_ns(cl_event ev);

/* ---- kernels.c (generated from kernels/NAME.cl by kernels/embed.sh) ---- */
struct rxd_kernel_source {
	const char *name; /* file name, e.g. "gemm.cl" */
	const char *text;
};
extern const struct rxd_kernel_source rxd_kernel_sources[];
extern const size_t rxd_kernel_sources_count;
const char *kernels_find(const char *name);

/* ---- gemm.c: request validation, kernel choice and launch ---- */

/* A validated GEMM in the column-major form the kernels compute: a row-major request is
 * turned into the column-major product C^T = op(B)^T op(A)^T by swapping the operands. */
struct rxd_gemm {
	int64_t m, n, k;       /* of the column-major problem */
	bool trans_a, trans_b;
	float alpha, beta;
	const float *a, *b;    /* into the request's bytes; a is the column-major first operand */
	const float *c;        /* NULL when not sent */
	int64_t lda, ldb, ldc; /* resolved, never 0 */
	size_t a_elems, b_elems, c_elems; /* floats each buffer needs (c_elems: the minimum) */
	size_t c_given_elems;  /* floats sent in c (0 when none) */
	uint64_t flops;        /* 2 m n k */
	int64_t user_m, user_n, user_k; /* the request's own shape, for logs and status */
};

struct rxd_limits {
	uint64_t max_buffer_bytes; /* the device's largest allocation */
	uint64_t max_total_bytes;  /* all of one job's buffers together */
};

/* Check a request against the protocol's rules and the limits; fill g on success.
 * Returns an RXGEMM__STATUS__* code and, on failure, a sentence in err naming the field. */
int gemm_validate(const Rxgemm__GemmRequest *rq, const struct rxd_limits *lim,
		  struct rxd_gemm *g, char *err, size_t errlen);

/* Kernel families: the edge-handling tiled kernel (kernels/gemm.cl) for small and odd
 * problems, and the register-blocked one (kernels/gemm_reg.cl) for large ones. */
enum rxd_gemm_kernel { RXD_GEMM_TILED = 0, RXD_GEMM_REG = 1 };

/* One point of the kernels' parameter space (the -D macros of the .cl files). */
struct rxd_gemm_config {
	int kernel;            /* enum rxd_gemm_kernel */
	int tsm, tsn, tsk;     /* work-group tile of C and K step */
	int wptm, wptn;        /* elements of C per work-item */
	int vwm, vwn;          /* reg: local-memory read width, 1 or 4 */
	int pada, padb;        /* reg: local row padding, floats */
	int madd;              /* reg: 0 a*b+c, 1 mad(), 2 fma() */
};

#define RXD_GEMM_CLASSES 3 /* size classes of C, each with its own kernel choice */

struct rxd_gemm_variant;
struct rxd_gemm_engine {
	struct rxd_device *dev;
	struct rxd_gemm_variant *variants; /* built and self-tested kernels */
	size_t n_variants, cap_variants;
	int choice[2][2][RXD_GEMM_CLASSES]; /* [trans_a][trans_b][class] -> variant */
	uint64_t build_ns;                 /* time spent compiling at start-up */
};

/* Build every kernel variant the engine will use, so that no job pays a compile.
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
/* The variant that serves g. */
int gemm_choose(const struct rxd_gemm_engine *eng, const struct rxd_gemm *g);
/* Enqueue the kernel alone on buffers already on the device (benchmarks, the tuner). */
cl_int gemm_enqueue(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		    cl_mem a, cl_mem b, cl_mem c, cl_event *ev);

struct rxd_job_timings {
	uint64_t h2d_ns, kernel_ns, d2h_ns;
};

/* Run g on the device; c_out receives g->c_elems floats. Device thread only. Returns an
 * RXGEMM__STATUS__* code with a sentence in err on failure; *kernel names the variant. */
int gemm_run(struct rxd_gemm_engine *eng, const struct rxd_gemm *g, float *c_out,
	     struct rxd_job_timings *t, const char **kernel, char *err, size_t errlen);
/* The same with a given variant. */
int gemm_run_variant(struct rxd_gemm_engine *eng, int variant, const struct rxd_gemm *g,
		     float *c_out, struct rxd_job_timings *t, char *err, size_t errlen);

/* ---- worker.c: the device worker thread and the job queue ---- */
struct rxd_conn;

struct rxd_job {
	struct rxd_job *next;
	struct rxd_conn *conn;       /* holds a reference (conn_ref) */
	atomic_bool *abandoned;      /* set by the loop when the client went away: skip the job */
	uint64_t request_id;
	Rxgemm__Request *req;        /* owned: the unpacked request; g points into it */
	struct rxd_gemm g;
	/* results, written by the worker */
	int status;
	char error[RXD_ERROR_MAX];
	float *c_out;                /* g.c_elems floats, malloc'd by the worker */
	const char *kernel;
	struct rxd_job_timings dev_t;
	uint64_t received_ns;  /* the frame was whole: total_ns counts from here */
	uint64_t submitted_ns; /* decoded and validated: queued_ns counts from here */
	uint64_t started_ns, finished_ns;
};

struct rxd_worker {
	pthread_t thread;
	pthread_mutex_t lock;        /* guards every field below; never held with another lock */
	pthread_cond_t cond;
	struct rxd_job *head, *tail; /* to run */
	struct rxd_job *done_head, *done_tail;
	bool stopping;
	bool started;
	uv_async_t async;            /* wakes the loop to drain done */
	struct rxd_gemm_engine *engine;
	void (*done)(struct rxd_job *job, void *arg); /* called on the loop thread */
	void *done_arg;
};

int worker_start(struct rxd_worker *w, uv_loop_t *loop, struct rxd_gemm_engine *eng,
		 void (*done)(struct rxd_job *, void *), void *arg);
void worker_submit(struct rxd_worker *w, struct rxd_job *job);
/* Let the running job finish, answer the queued ones with STATUS_SHUTDOWN, join the
 * thread and deliver every finished job. Loop thread; call once. */
void worker_stop(struct rxd_worker *w);
void job_free(struct rxd_job *job);

/* ---- stats.c: counters for status replies (loop thread only) ---- */
#define RXD_RECENT_JOBS 16

struct rxd_stats {
	uint64_t started_ns;
	uint32_t clients_connected;
	uint64_t clients_total;
	uint64_t jobs_ok, jobs_failed, requests_rejected;
	uint32_t jobs_queued;
	uint64_t flops_total, kernel_ns_total;
	Rxgemm__JobRecord recent[RXD_RECENT_JOBS];
	Rxgemm__Timings recent_t[RXD_RECENT_JOBS];
	size_t recent_next, recent_count;
};

void stats_init(struct rxd_stats *st);
void stats_job_done(struct rxd_stats *st, const struct rxd_job *job, uint32_t client_id,
		    const Rxgemm__Timings *t);
/* Fill a StatusReply; the pointers in it stay valid until the next stats_* call.
 * Returns 0 or -ENOMEM. Free with stats_status_free. */
int stats_status(const struct rxd_stats *st, const struct rxd_device *dev,
		 Rxgemm__StatusReply *out);
void stats_status_free(Rxgemm__StatusReply *out);

/* ---- server.c: the listening socket and the connections (loop thread) ---- */
struct rxd_server {
	uv_loop_t *loop;
	const struct rxd_config *cfg;
	struct rxd_device *dev;
	struct rxd_worker *worker;
	struct rxd_limits limits;
	struct rxd_stats stats;
	uv_pipe_t listener;
	bool listening;
	bool stopping;
	uint32_t next_client_id;
	struct rxd_conn *conns;      /* every open connection */
};

struct rxd_conn {
	uv_pipe_t pipe;
	struct rxd_server *srv;
	struct rxd_conn *prev, *next;
	uint32_t id;
	int refs;                    /* the connection itself + one per job in flight */
	bool closing;                /* no more reads; freed once refs reach 0 */
	bool close_after_write;      /* close when the last queued write completes */
	bool hello_done;
	atomic_bool abandoned;       /* jobs in flight see this (worker thread reads it) */
	unsigned writes_pending;
	uint32_t jobs_in_flight;
	struct frame_reader fr;
	char name[64];               /* the client's name from Hello */
	long peer_pid;
	long peer_uid;
	uint8_t readbuf[64 * 1024];
};

/* Create the socket (refusing a path where a daemon answers, replacing a stale one) and
 * start accepting. 0 or a negative errno (logged). */
int server_start(struct rxd_server *srv, uv_loop_t *loop, const struct rxd_config *cfg,
		 struct rxd_device *dev, struct rxd_worker *w);
/* Stop accepting and remove the socket; requests still arriving get STATUS_SHUTDOWN. */
void server_unlisten(struct rxd_server *srv);
/* server_unlisten, then close every connection once its queued replies are written. The
 * loop then runs out of handles and returns. */
void server_stop(struct rxd_server *srv);
void conn_ref(struct rxd_conn *c);
void conn_unref(struct rxd_conn *c);
/* Queue one Reply on c; close the connection once written when close_after is set.
 * 0 or -errno (the connection is then closed). */
int conn_send(struct rxd_conn *c, const Rxgemm__Reply *reply, bool close_after);
void conn_close(struct rxd_conn *c);

/* ---- dispatch.c: decoding, validating and routing requests (loop thread) ---- */
/* Handle one frame body from c; takes ownership of body. */
void dispatch_frame(struct rxd_conn *c, uint8_t *body, size_t len);
/* Reply to a finished job (worker_start's done callback). */
void dispatch_job_done(struct rxd_job *job, void *srv);
/* Send an error reply. */
void dispatch_error(struct rxd_conn *c, uint64_t request_id, int status, bool close_after,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif

/* loop.h: the libuv loop thread's side of the daemon: configuration, statistics, the
 * listening socket and connections, shared-memory regions and device tensors, dispatch to
 * the device worker (engine.h), the wire layer's internal side (wire.h has its protobuf
 * side) and the service manager's protocols. Nothing here is touched by the worker but
 * the job it is handed and, by reference, the regions and tensors that job holds. */
#ifndef RXGEMMD_LOOP_H
#define RXGEMMD_LOOP_H

#include <uv.h>

#include "engine.h"
#include "frame.h"

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
	uint64_t busy_poll_ns;        /* --busy-poll (worker.c); RXD_BUSY_POLL_AUTO: by device */
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
/* --busy-poll: auto's length on a device with memory of its own, in us, and the most
 * allowed. Set from a measurement: see worker.c. */
#define RXD_DEFAULT_BUSY_POLL_US 1000
#define RXD_BUSY_POLL_AUTO UINT64_MAX
#define RXD_BUSY_POLL_MAX_NS 10000000ull
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

/* ---- hostbuf.c, its loop side (engine.h has the rest) ---- */
/* On the loop thread: its frees keep buffers from now on, with a timer on loop that gives
 * back those idle for HOSTBUF_IDLE_MS. detach gives back everything kept (at shutdown). */
void hostbuf_attach(uv_loop_t *loop);
void hostbuf_detach(void);

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
	struct rxd_nas_cache *nascache; /* NAS plans (from server_start, not owned; NULL: none
					 * kept) */
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
		 struct rxd_device *dev, struct rxd_worker *w, struct rxd_nas_cache *nascache,
		 const struct rxd_conn_ops *ops);
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
/* Queue one frame whose body is head, then ext, then tail: ext (malloc'd) is taken, freed
 * once written or the connection gone, and sent from where it lies, never copied (a large
 * result). 0 or -errno, as conn_send. */
int conn_send_parts(struct rxd_conn *c, const uint8_t *head, size_t head_len, void *ext,
		    size_t ext_len, const uint8_t *tail, size_t tail_len, bool close_after);
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

#endif

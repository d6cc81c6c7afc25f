/* scheduler.h: the scheduler's queues (sched.c): pure logic, no OpenCL, no libuv, no clock.
 * The device worker holds one under its lock (worker.c). */
#ifndef RXGEMMD_SCHEDULER_H
#define RXGEMMD_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
	bool nestable;                   /* may run inside a long job's turn (a GEMM or a
					  * tensor job between two pieces of a search step):
					  * sched_next_nestable */
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
	bool nestable_only;                    /* inside sched_next_nestable */
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
/* sched_submit without the bounds, for a job that goes on (a search between two steps:
 * it was admitted once). 0, -EINVAL or -ENOMEM. */
int sched_requeue(struct rxd_sched *s, struct rxd_sched_job *j);
/* Take out the job to run now; NULL when none waits but parked ones. */
struct rxd_sched_job *sched_next(struct rxd_sched *s);
/* The same among the nestable jobs only, the others passed over as parked ones are (a
 * long job's turn runs the short jobs waiting at its pause points: worker.c); NULL when
 * none waits. Strict priority holds among the nestable ones only: the long job that
 * pauses was itself chosen by sched_next. */
struct rxd_sched_job *sched_next_nestable(struct rxd_sched *s);
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

#endif

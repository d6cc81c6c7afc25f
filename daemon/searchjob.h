/* searchjob.h: DARTS search jobs (daemon/searchjob.c): a search (search.c) run by the
 * device worker one step per scheduler turn, between which the job goes back into the
 * scheduler, so that other clients' GEMMs and NAS evaluations are served between its steps
 * by the same fairness policy (docs/NAS.md, "Search jobs").
 *
 * The life of a job: the wire layer checks a SearchRequest into a struct
 * rxd_search_job_args and searchjob_prepare lays the search out (loop thread); dispatch
 * refuses it up front when its device memory is over the budget or the client's quota,
 * and queues it. Each turn (worker thread, searchjob_turn) runs one step; the first one
 * reserves the search's memory for the whole job (a resident reservation, which the
 * budget counts apart from the one job that runs at a time) and starts or resumes the
 * search. Back on the loop thread (searchjob_done), a job with steps left sends its
 * progress when due and goes back into the scheduler (worker_requeue); a finished,
 * failed or cancelled one is answered.
 *
 * Threads: the loop thread owns the job between turns and the worker during one; they
 * hand it over through the scheduler and the done list (worker.c), so nothing here is
 * locked. A job normally ends on the worker (its last turn, or one more turn to end a
 * cancelled one); a job taken out of the scheduler unrun (cancelled while queued, its
 * client gone, shutdown) is freed by searchjob_free on the loop thread: a started search
 * is then freed with OpenCL's release calls (thread-safe) after waiting for the queue,
 * and its reservation released through the budget's lock. */
#ifndef RXGEMMD_SEARCHJOB_H
#define RXGEMMD_SEARCHJOB_H

#include "search.h"

/* Bounds of a search request besides what search_prepare checks. */
#define RXD_SEARCH_MAX_C 1024
#define RXD_SEARCH_MAX_LAYERS 64
#define RXD_SEARCH_MAX_CLASSES 100000
#define RXD_SEARCH_MAX_SIDE 4096
#define RXD_SEARCH_MAX_EPOCHS 1000000
#define RXD_SEARCH_MAX_PROGRESS_EVERY 1000000000u

/* What a validated SearchRequest asks for; the data point into the request's frame or
 * into regions that the job holds (dispatch takes the references). */
struct rxd_search_job_args {
	struct rxd_search_config cfg;       /* steps_per_epoch from the training data */
	uint64_t max_steps;                 /* stop once this many steps are done in all */
	uint32_t progress_every;            /* 0: no progress frames */
	unsigned priority;
	const float *images[2];             /* training, validation */
	const int32_t *labels[2];
	int64_t count[2];
	struct rxd_region *regions[4];      /* where the data lie (NULL: inline) */
	const void *resume;                 /* a state to continue from (copied) or NULL */
	size_t resume_bytes;
	bool want_state;
	struct rxd_region *state_region;    /* the state written here (NULL: not) */
	uint8_t *state_dest;
	uint64_t state_len;
};

/* One step's figures as the reply lists them. */
struct rxd_search_job_step {
	uint64_t step;
	int32_t epoch;
	float train_loss, train_acc, valid_loss, valid_acc;
	uint64_t forward_ns, backward_ns, update_ns;
};

struct rxd_search_job {
	struct rxd_search_job_args a;
	struct rxd_search *s;               /* laid out at prepare, started at the first turn */
	uint64_t device_bytes;              /* search_device_bytes: reserved for the job */
	uint64_t state_bytes;
	struct rxd_budget_res res;
	struct rxd_budget *res_budget;      /* where res is (NULL: none) */
	bool reserved, started, finished;
	bool state_region_held;             /* a reference to a.state_region (dispatch's) */
	void *resume_copy;                  /* owned */
	uint64_t steps_done;                /* in all (a resumed state's included) */
	uint64_t last_progress;             /* steps_done when progress was last sent */
	struct rxd_search_result last;      /* the last step's */
	struct rxd_search_job_step *curve;  /* this job's steps */
	size_t n_curve, cap_curve;
	int32_t edges;
	float *alpha_normal, *alpha_reduce; /* edges x 8 each: after the last step */
	char genotype[RXD_GENOTYPE_TEXT_MAX];
	uint8_t *state;                     /* with want_state: the final state (owned) */
};

/* The search's backward kernels, made by main.c next to nasops; NULL: search jobs are
 * refused (UNSUPPORTED). Set before the worker starts. */
void searchjob_init(struct rxd_nasgrad *gr);
void searchjob_fini(void);
bool searchjob_available(void);

/* Lay out a search for a (copied into *out, with the resume state), checking what only the
 * laid-out search knows (the state's size for want_state within max_reply_bytes, a
 * state_out region large enough). A status, with a sentence in err. Loop thread. */
int searchjob_prepare(const struct rxd_search_job_args *a, uint64_t max_reply_bytes,
		      struct rxd_search_job **out, struct rxd_error *err);
/* The scheduler's estimate of one step's work (FLOPs). */
uint64_t searchjob_step_flops(const struct rxd_search_job *sj);
/* One turn on the worker thread: the first reserves and starts, then one step (or, when
 * cancelled, the end of the job). RXD_S_OK with sj->finished set once the last step is
 * done (the results are then in sj), or a status with a sentence in err (the job ends).
 * *later: the memory is taken by others now but will come back (the worker parks the job
 * until then). pause (may be NULL): the step's pause hooks (search_set_pause). */
int searchjob_turn(struct rxd_search_job *sj, struct rxd_nasops *ops, struct rxd_budget *b,
		   uint32_t owner, bool cancelled, const struct rxd_search_pause *pause,
		   bool *later, struct rxd_error *err);
/* Whether a progress frame is due after the turn just done (loop thread); marks it sent. */
bool searchjob_progress_due(struct rxd_search_job *sj);
/* Loop thread (it drops the state region's reference). */
void searchjob_free(struct rxd_search_job *sj);

/* The pieces of the daemon that search jobs add to (declared here, not in rxgemmd.h,
 * which other work splits). */
struct rxd_conn;
struct rxd_request;
struct rxd_worker;
struct rxd_job;
struct rxd_sched;
struct rxd_sched_job;
/* dispatch.c: queue a search (taking sj and references to the regions it names), or
 * refuse it: over the budget (TOO_BIG) or the client's quota (QUOTA) up front. */
int dispatch_search(struct rxd_conn *c, struct rxd_request *rq, struct rxd_search_job *sj,
		    struct rxd_error *err);
/* wire-search.c: a finished turn of a search job (from wire_job_done): true when the job
 * goes on (progress sent when due, requeued) and nothing else is to be done with it. */
bool wire_search_turn_done(struct rxd_job *job);

#endif

/* worker.c: the device worker thread. It owns the OpenCL command queue and runs jobs one at
 * a time, in the order the scheduler (sched.c) picks; the loop thread hands jobs over and
 * gets them back finished.
 *
 * Lock order: w->lock is the only lock here and is never held while calling out (OpenCL,
 * the budget, libuv other than uv_async_send, the done callback). The scheduler's state is
 * w->lock's. The deadline timer is the loop thread's. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "engine.h"
#include "searchjob.h"

struct rxd_worker {
	pthread_t thread;
	pthread_mutex_t lock;        /* guards every field below; never held with another lock */
	pthread_cond_t cond;
	struct rxd_sched sched;      /* to run; parked ones wait for device memory */
	uint64_t mem_freed;          /* times the budget said room came back (on_freed) */
	struct rxd_job *running;     /* taken from sched, not yet on the done list */
	struct rxd_job *outer;       /* a search whose turn pauses to run short jobs
				      * (worker_pause); running is then the short one */
	uint64_t pause_end_ns;       /* worker thread: when the last pause ended */
	uint64_t cancelled;          /* jobs ended STATUS_CANCELLED (queued or running) */
	struct rxd_job *done_head, *done_tail;
	bool stopping;
	bool started;
	uv_async_t async;            /* wakes the loop to drain done */
	uv_timer_t deadline_timer;   /* loop thread: fires at the earliest queued deadline */
	uint64_t timer_due_ns;       /* loop thread: when it fires; 0: not armed */
	struct rxd_gemm_engine *engine;
	struct rxd_nasops *nasops;   /* NAS jobs; NULL: refused */
	bool zero_copy;              /* GEMMs in place on regions where the device allows
				      * (zcopy.c) */
	/* A device that fails a health check after a failed job is lost (a kernel fault on
	 * NVIDIA's driver loses the whole context): the job and every queued one are answered
	 * STATUS_DEVICE, worker_submit refuses from then on (-ENODEV), and on_lost runs once on
	 * the loop thread (main.c exits non-zero, for systemd to restart the daemon). */
	bool device_lost;            /* under lock */
	bool lost_reported;          /* loop thread */
	void (*on_lost)(void *arg);  /* NULL: nothing is told */
	void *on_lost_arg;
	uint64_t jobs_run;           /* worker thread */
	uint64_t inject_loss_at;     /* $RXGEMMD_TEST_DEVICE_LOSS: job N fails as lost; 0 never */
	int pin_inline;              /* RXD_PIPELINE_* values, from $RXGEMMD_PIN_INLINE: auto
				      * (devices with memory of their own), always, never */
	void (*done)(struct rxd_job *job, void *arg); /* called on the loop thread */
	void *done_arg;
	_Atomic uint64_t busy_since_ns; /* when the running job started; 0 when idle */
	/* Busy polling (--busy-poll): after each job the worker thread, and after each submit
	 * and reply the loop thread, poll for poll_ns before they sleep. Waking a sleeping
	 * thread took 50 to 160 us on the H200 machine, twice per job (the loop hands the job
	 * to the worker, the worker hands it back), against a 1024^3 job's 0.3 ms on the
	 * device. 0: off. */
	uint64_t poll_ns;
	_Atomic uint64_t submits;    /* jobs handed over; the polling worker watches it */
	_Atomic bool poll_wanted;    /* a job started: the loop is to poll (worker_drain) */
	uv_idle_t poll_idle;         /* loop thread: active while the loop polls */
	uint64_t poll_until_ns;      /* loop thread: when it stops */
};

static struct rxd_job *worker_job_of(struct rxd_sched_job *sj)
{
	return (struct rxd_job *)((char *)sj - offsetof(struct rxd_job, sj));
}

void job_free(struct rxd_job *job)
{
	if (!job)
		return;
	nas_job_free(job->nas); /* before the request it points into */
	searchjob_free(job->search);
	if (job->frame)
		job->frame_free(job->frame);
	hostbuf_free(job->c_out);
	free(job);
}

/* Call with w->lock held; the caller wakes the loop (uv_async_send) after unlocking. */
static void worker_push_done_locked(struct rxd_worker *w, struct rxd_job *job)
{
	job->next = NULL;
	if (job->err.status == RXD_S_CANCELLED)
		w->cancelled++;
	if (w->done_tail)
		w->done_tail->next = job;
	else
		w->done_head = job;
	w->done_tail = job;
}

/* Answer the jobs of list (taken out of the scheduler) unrun, with status and a sentence.
 * Call with w->lock held; returns how many. */
static size_t worker_fail_list(struct rxd_worker *w, struct rxd_sched_job *list, int status,
			       const char *why)
{
	uint64_t now = now_ns();
	size_t n = 0;

	while (list) {
		struct rxd_sched_job *next = list->next;
		struct rxd_job *job = worker_job_of(list);

		/* A search that has started holds device buffers: one more turn ends it on
		 * this thread, which owns the queue (searchjob.h). */
		if (status == RXD_S_CANCELLED && job->kind == RXD_JOB_SEARCH &&
		    job->search->started && !w->stopping) {
			atomic_store(&job->cancel, true);
			if (sched_requeue(&w->sched, &job->sj) == 0) {
				pthread_cond_signal(&w->cond);
				list = next;
				n++;
				continue;
			}
		}
		error_set(&job->err, status, "%s", why);
		job->started_ns = job->finished_ns = now;
		worker_push_done_locked(w, job);
		list = next;
		n++;
	}
	return n;
}

/* The test hook's directory ($RXGEMMD_TEST_HOLD, read once at start); NULL: off. */
static const char *worker_hold_dir;

/* The test hook's files, "hold" and "held"; false when the hook is off. */
static bool worker_hold_paths(char *hold, char *held)
{
	return worker_hold_dir &&
	       snprintf(hold, PATH_MAX, "%s/hold", worker_hold_dir) < PATH_MAX &&
	       snprintf(held, PATH_MAX, "%s/held", worker_hold_dir) < PATH_MAX;
}

/* Whether the test holds the worker here ("hold" exists); "held" is made to say so. */
static bool worker_test_holding(void)
{
	char hold[PATH_MAX], held[PATH_MAX];
	int fd;

	if (!worker_hold_paths(hold, held) || access(hold, F_OK) != 0)
		return false;
	if (access(held, F_OK) != 0) {
		if ((fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) >= 0)
			close(fd);
		log_msg(LOG_DEBUG, "test hook: holding the worker at a piece boundary");
	}
	return true;
}

/* "held" goes once "hold" has gone, so that a test that waits for it to go knows the
 * worker has left the point where it was held. */
static void worker_test_release(void)
{
	char hold[PATH_MAX], held[PATH_MAX];

	if (worker_hold_paths(hold, held))
		unlink(held);
}

void worker_test_hold(void)
{
	struct timespec nap = { 0, 1000000 };

	if (!worker_test_holding())
		return;
	while (worker_test_holding())
		nanosleep(&nap, NULL);
	worker_test_release();
}

static bool worker_cancelled(struct rxd_job *job)
{
	return atomic_load(&job->cancel);
}

/* On a device with memory of its own, wrap each region the job holds once (see
 * shm_region_wrap): drivers that pin such buffers then copy from and to the region at the
 * bus's speed. Returns the time it took (the first job on a region pays it). */
static uint64_t worker_pin_regions(struct rxd_worker *w, struct rxd_job *job)
{
	struct rxd_device *dev = w->engine->dev;
	uint64_t t0 = now_ns();

	if (dev->host_unified || !job->regions[0])
		return 0; /* zcopy.c wraps what it runs in place */
	for (int i = 0; i < RXD_JOB_REGIONS && job->regions[i]; i++)
		shm_region_wrap(job->regions[i], dev->ctx, dev->max_alloc_bytes);
	return now_ns() - t0;
}

/* Operands in the request's own bytes (and the result's host buffer) of at least this
 * much are pinned for their job (worker_pin_inline). On the H200 machine wrapping 4 MiB
 * took 0.47 ms, about what copying it from pageable memory does (0.39 up, 0.46 down), and
 * 64 MiB 4.8 ms against 10.5 and 7.0 (tests/bench-xfer, docs/PERFORMANCE.md). */
#define WORKER_PIN_MIN_BYTES (4u << 20)

/* Inline operands pinned for one job: the wrappers, released when it ends, and the time
 * that pinning them took (counted in the job's h2d time). */
struct worker_pins {
	cl_mem mem[4];
	int n;
	int kept;     /* ranges in a kept host buffer's pin (hostbuf_pin) instead */
	uint64_t ns;
};

/* hostbuf_pin's make and its unpin hook: a kept host buffer wrapped as a job's ranges are
 * below, for as long as hostbuf keeps the buffer. */
static void *worker_pin_make(void *base, size_t cap, void *arg)
{
	struct rxd_device *dev = arg;
	cl_mem mem;
	cl_int e;

	if (cap > dev->max_alloc_bytes)
		return NULL;
	mem = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, cap, base, &e);
	if (!mem)
		log_msg(LOG_DEBUG, "a host buffer of %zu bytes cannot be pinned (%s)", cap,
			device_strerror(e));
	return mem;
}

static void worker_pin_release(void *pin)
{
	clReleaseMemObject(pin);
}

/* Pin bytes at p for the job, as worker_pin_regions does a region: wrapped in a
 * CL_MEM_USE_HOST_PTR buffer, which NVIDIA's driver pins, the job's copies from and to
 * them run at the bus's speed instead of through the driver's bounce buffer (55 against
 * 5.6 GB/s up on the H200, docs/PERFORMANCE.md), for the pinning's cost (about 0.04 ms a
 * MiB). Where it fails, or the range is small or a region's, nothing happens: the copies
 * are as from any host memory. */
static void worker_pin_range(struct rxd_worker *w, const struct rxd_job *job,
			     struct worker_pins *pins, const void *p, size_t bytes)
{
	struct rxd_device *dev = w->engine->dev;
	size_t min = w->pin_inline == RXD_PIPELINE_ALWAYS ? 1 : WORKER_PIN_MIN_BYTES;
	cl_int e;

	if (!p || !bytes || shm_region_holding(job->regions, p, bytes))
		return;
	/* A buffer that hostbuf keeps between jobs keeps its pin too: paid once. */
	if (hostbuf_pin(p, bytes, worker_pin_make, dev)) {
		pins->kept++;
		return;
	}
	if (bytes < min || bytes > dev->max_alloc_bytes ||
	    pins->n == (int)(sizeof(pins->mem) / sizeof(pins->mem[0])))
		return;
	pins->mem[pins->n] = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR,
					    bytes, (void *)p, &e);
	if (pins->mem[pins->n])
		pins->n++;
	else
		log_msg(LOG_DEBUG, "%zu bytes of a job cannot be pinned (%s): copied from "
			"pageable memory", bytes, device_strerror(e));
}

/* A GEMM's operands that came in its request, and the host buffer its result goes back
 * from, pinned for the job on a device with memory of its own (RXGEMMD_PIN_INLINE=auto;
 * always: on any device and of any size, for the tests). */
static void worker_pin_inline(struct rxd_worker *w, struct rxd_job *job,
			      struct worker_pins *pins)
{
	const struct rxd_gemm *g = &job->g;
	uint64_t t0 = now_ns();

	if (w->pin_inline == RXD_PIPELINE_NEVER ||
	    (w->pin_inline == RXD_PIPELINE_AUTO && w->engine->dev->host_unified))
		return;
	if (!job->tensors[0])
		worker_pin_range(w, job, pins, g->a, g->a_elems * sizeof(float));
	if (!job->tensors[1])
		worker_pin_range(w, job, pins, g->b, g->b_elems * sizeof(float));
	if (!job->tensors[2])
		worker_pin_range(w, job, pins, g->c, g->c_given_elems * sizeof(float));
	if (!job->tensors[3] && !job->c_dest)
		worker_pin_range(w, job, pins, job->c_out, g->c_elems * sizeof(float));
	if (!pins->n && !pins->kept)
		return;
	pins->ns += now_ns() - t0;
	log_msg(LOG_DEBUG, "job %llu of client %u: %d inline range(s) pinned for the job, %d "
		"in kept buffers, in %.3f ms", (unsigned long long)job->request_id, job->conn_id,
		pins->n, pins->kept, (double)(now_ns() - t0) / 1e6);
}

static void worker_unpin(struct worker_pins *pins)
{
	while (pins->n > 0)
		clReleaseMemObject(pins->mem[--pins->n]);
}

/* A NAS job's weights and input from device tensors (tensors[0] and [1]): read back to
 * the host, where nas_job_run folds the weights and uploads the input like any others
 * (one device copy each way: the client's data still crosses the socket not at all). */
static int worker_nas_tensors(struct rxd_worker *w, struct rxd_job *job)
{
	for (int i = 0; i < 2; i++) {
		struct rxd_tensor *x = job->tensors[i];
		struct rxd_job_timings t;
		float *host;
		int st;

		if (!x)
			continue;
		if (!(host = malloc(x->floats * sizeof(float)))) {
			return error_set(&job->err, RXD_S_NO_MEMORY, "out of host memory for the "
					 "%s", i ? "input" : "weights");
		}
		st = tensor_read_run(x, w->engine->dev, host, &t, &job->err);
		if (st != RXD_S_OK) {
			free(host);
			return st;
		}
		job->dev_t.d2h_ns += t.d2h_ns;
		if (i)
			nas_job_give_input(job->nas, host);
		else
			nas_job_give_weights(job->nas, host);
	}
	return RXD_S_OK;
}

/* A GEMM job: its result's host memory, then admission (admit.c) for where its operands
 * are (device tensors, regions run in place, or uploaded from the host), then the run. */
static int worker_run_gemm(struct rxd_worker *w, struct rxd_job *job, struct rxd_admit *adm,
			   struct worker_pins *pins)
{
	struct rxd_gemm_engine *eng = w->engine;
	bool tensors = job->tensors[0] || job->tensors[1] || job->tensors[2] || job->tensors[3];
	bool make[3] = { true, true, true };
	float *dest = NULL;
	int st;

	/* C to the host only when it has no tensor to go to (made once: a job that waited
	 * for memory comes here again). */
	if (!job->tensors[3] && !job->c_dest && !job->c_out)
		job->c_out = hostbuf_alloc(job->g.c_elems * sizeof(float));
	dest = job->c_dest ? job->c_dest : job->c_out;
	if (!job->tensors[3] && !dest)
		return error_set(&job->err, RXD_S_NO_MEMORY, "out of host memory for the result");
	worker_pin_inline(w, job, pins);
	if (tensors) {
		make[0] = !job->tensors[0];
		make[1] = !job->tensors[1];
		make[2] = !job->tensors[3];
	} else if (zcopy_prepare(eng, w->zero_copy, &job->g, job->regions, job->c_dest)) {
		job->in_place = true;
		make[0] = make[1] = make[2] = false;
	}
	st = admit_gemm(eng, eng->budget, job->conn_id, &job->g, make, adm, &job->err);
	if (st != RXD_S_OK)
		return st;
	job->admitted_ns = now_ns();
	/* Operands the client is still writing (ready words): a job run whole through device
	 * buffers waits for each just before its upload (gemm_run_buffers), so that A goes
	 * up while B is written; every other path reads both first. */
	job->g.ready_spin_ns = w->poll_ns;
	if ((job->g.ready[0].word || job->g.ready[1].word) &&
	    (tensors || job->in_place || adm->split.split)) {
		if ((st = gemm_ready_wait(&job->g, 2, &job->err)) != RXD_S_OK)
			return st;
		job->g.ready[0].word = job->g.ready[1].word = NULL;
	}
	if (tensors)
		return tensor_gemm_run(eng, adm, &job->g, job->tensors, dest, &job->dev_t,
				       &job->kernel, &job->err);
	if (job->in_place)
		return zcopy_run(eng, &job->g, job->regions, job->c_dest, &job->dev_t, &job->kernel,
				 &job->err);
	return split_run_admitted(eng, adm, &job->g, dest, &job->dev_t, &job->kernel, &job->err);
}

static bool worker_pause_wanted(void *arg);
static int worker_pause(void *arg);

/* Run job: every kind that makes device buffers is admitted first, once (admit.c), and
 * its reservation released once when it ends, whatever the outcome. A tensor's own buffer
 * is not a job's: it is reserved as resident by tensor_make and outlives the job. Returns
 * true when the job did not run because it does not fit the memory now but will once
 * device tensors give room back (admission's a->later): the caller parks it. */
static bool worker_run_job(struct rxd_worker *w, struct rxd_job *job)
{
	struct rxd_admit adm;
	struct worker_pins pins = { .n = 0, .ns = 0 };
	uint64_t pin_ns = 0;
	float *dest;

	memset(&adm, 0, sizeof(adm));
	job->started_ns = now_ns();
	/* The loop is woken now, while the job runs, to poll for its end (worker_drain), so
	 * that the hand-back at the end costs no wake-up when the job is short. */
	if (w->poll_ns) {
		atomic_store(&w->poll_wanted, true);
		uv_async_send(&w->async);
	}
	if (job->kind == RXD_JOB_SEARCH) {
		/* One step per turn; its memory is reserved for the whole job (searchjob.c),
		 * and a cancelled search ends here, on the thread that owns the queue. */
		struct rxd_search_pause pause = { worker_pause_wanted, worker_pause, w };
		bool later = false;

		pthread_mutex_lock(&w->lock);
		w->outer = job;
		pthread_mutex_unlock(&w->lock);
		w->pause_end_ns = now_ns();
		job->err.status = searchjob_turn(job->search, w->nasops, w->engine->budget,
						 job->conn_id, worker_cancelled(job), &pause, &later,
						 &job->err);
		pthread_mutex_lock(&w->lock);
		w->outer = NULL;
		pthread_mutex_unlock(&w->lock);
		job->finished_ns = now_ns();
		return job->err.status != RXD_S_OK && later;
	}
	if (!worker_cancelled(job))
		pin_ns = worker_pin_regions(w, job);
	if (worker_cancelled(job)) {
		/* Cancelled (or its client left) between the queue and here. */
		error_set(&job->err, RXD_S_CANCELLED, "the job was cancelled before it ran");
	} else if (job->kind == RXD_JOB_NAS) {
		job->err.status = admit_nas(job->nas, w->nasops, w->engine->budget, job->conn_id,
					    &adm, &job->err);
		if (job->err.status == RXD_S_OK)
			job->err.status = worker_nas_tensors(w, job);
		if (job->err.status == RXD_S_OK)
			job->err.status = nas_job_run(job->nas, w->nasops, &adm, &job->cancel,
						      &job->err);
	} else if (job->kind == RXD_JOB_TENSOR_CREATE) {
		job->err.status = tensor_make(job->tensors[0], w->engine->dev, w->engine->budget,
					  job->conn_id, job->tensor_src, &job->dev_t, &job->err);
	} else if (job->kind == RXD_JOB_TENSOR_READ) {
		if (!(dest = job->c_dest ? job->c_dest
					 : (job->c_out = hostbuf_alloc(job->tensors[0]->floats *
								       sizeof(float))))) {
			error_set(&job->err, RXD_S_NO_MEMORY, "out of host memory for the tensor");
		} else {
			job->err.status = tensor_read_run(job->tensors[0], w->engine->dev, dest,
						      &job->dev_t, &job->err);
		}
	} else {
		job->err.status = worker_run_gemm(w, job, &adm, &pins);
	}
	admit_release(&adm);
	worker_unpin(&pins);
	job->dev_t.h2d_ns += pin_ns + pins.ns;
	job->finished_ns = now_ns();
	return job->err.status != RXD_S_OK && adm.later;
}

/* job (just run, with w->lock held) does not fit the device memory now: back into the
 * scheduler, parked, unless it was cancelled meanwhile or the daemon stops (it is then
 * answered). When memory was freed since it was taken (w->mem_freed past freed_seen) it
 * may fit already: every parked job is eligible again at once. True when parked. */
static bool worker_park_locked(struct rxd_worker *w, struct rxd_job *job, uint64_t freed_seen)
{
	if (atomic_load(&job->cancel)) {
		error_set(&job->err, RXD_S_CANCELLED, "the job was cancelled while it waited for "
			  "device memory");
		return false;
	}
	if (w->stopping || sched_park(&w->sched, &job->sj) < 0)
		return false; /* answered with admission's refusal */
	log_msg(LOG_DEBUG, "job %llu of client %u waits for device memory: %s",
		(unsigned long long)job->request_id, job->conn_id, job->err.msg);
	error_clear(&job->err);
	memset(&job->dev_t, 0, sizeof(job->dev_t));
	if (w->mem_freed != freed_seen)
		sched_unpark_all(&w->sched);
	return true;
}

/* The budget's on_freed (budget_set_notify): a device tensor gave room back, or the limits
 * changed. Any thread, without the budget's lock. */
static void worker_memory_freed(void *arg)
{
	struct rxd_worker *w = arg;

	pthread_mutex_lock(&w->lock);
	w->mem_freed++;
	if (w->sched.parked) {
		sched_unpark_all(&w->sched);
		pthread_cond_signal(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
}

/* Whether the device still works after a job failed on it: a 4-byte round trip through the
 * queue. A kernel fault on NVIDIA's driver loses the whole context, after which every call
 * fails; an ordinary failure (out of memory, say) leaves this working. */
static bool worker_device_healthy(struct rxd_worker *w)
{
	struct rxd_device *dev = w->engine->dev;
	float out = 1.0f, back = 0.0f;
	cl_int e = clFinish(dev->queue);
	cl_mem m;

	if (e != CL_SUCCESS)
		return false;
	if (!(m = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE, sizeof(float), NULL, &e)))
		return false;
	e = clEnqueueWriteBuffer(dev->queue, m, CL_TRUE, 0, sizeof(float), &out, 0, NULL, NULL);
	if (e == CL_SUCCESS)
		e = clEnqueueReadBuffer(dev->queue, m, CL_TRUE, 0, sizeof(float), &back, 0, NULL,
					NULL);
	clReleaseMemObject(m);
	return e == CL_SUCCESS && back == out;
}

/* After job failed: is the device lost? RXGEMMD_TEST_DEVICE_LOSS=N makes the N-th job run
 * fail as if it were (the tests' way to a lost device on a CPU). */
static bool worker_check_device(struct rxd_worker *w, struct rxd_job *job)
{
	w->jobs_run++;
	if (w->inject_loss_at && w->jobs_run == w->inject_loss_at) {
		error_set(&job->err, RXD_S_DEVICE, "the device failed (injected by "
			 "RXGEMMD_TEST_DEVICE_LOSS)");
		return true;
	}
	if (job->err.status != RXD_S_DEVICE &&
	    job->err.status != RXD_S_NO_MEMORY &&
	    job->err.status != RXD_S_INTERNAL)
		return false;
	if (worker_device_healthy(w))
		return false;
	snprintf(job->err.msg + strlen(job->err.msg), sizeof(job->err.msg) - strlen(job->err.msg),
		 "; the device is lost, rxgemmd exits to be restarted");
	return true;
}

/* Run job (taken from the scheduler as w->running, the lock not held) and hand it on:
 * back into the scheduler, parked, or onto the done list, the device declared lost when it
 * is. Returns with the lock held. */
static void worker_serve(struct rxd_worker *w, struct rxd_job *job, uint64_t freed_seen)
{
	bool lost, parked = false;

	if (w->device_lost) {
		error_set(&job->err, RXD_S_DEVICE, "the OpenCL device was lost; "
			 "rxgemmd is exiting to be restarted");
		lost = true;
	} else {
		parked = worker_run_job(w, job);
		lost = !parked && worker_check_device(w, job);
	}
	pthread_mutex_lock(&w->lock);
	w->running = w->outer;
	if (parked)
		parked = worker_park_locked(w, job, freed_seen);
	if (parked) {
		/* In the scheduler again: nothing to answer, but its deadline is the loop
		 * timer's again (worker_drain re-arms it). */
		pthread_mutex_unlock(&w->lock);
		uv_async_send(&w->async);
		pthread_mutex_lock(&w->lock);
		return;
	}
	worker_push_done_locked(w, job);
	if (lost && !w->device_lost) {
		/* Nothing queued can run any more: answer it now, and from here on
		 * worker_submit refuses. The loop hears of it in worker_drain. */
		w->device_lost = true;
		log_msg(LOG_ERR, "the OpenCL device is lost: %s", job->err.msg);
		worker_fail_list(w, sched_take_all(&w->sched), RXD_S_DEVICE,
				 "the OpenCL device was lost before the job ran; rxgemmd is "
				 "exiting to be restarted");
	}
	pthread_mutex_unlock(&w->lock);
	uv_async_send(&w->async);
	pthread_mutex_lock(&w->lock);
}

/* search_set_pause's question at each piece of a step: whether any job waits (the
 * device is drained for worker_pause only then), or the test hook would hold the search. */
static bool worker_pause_wanted(void *arg)
{
	struct rxd_worker *w = arg;
	bool waiting;

	pthread_mutex_lock(&w->lock);
	waiting = w->sched.queued > w->sched.parked || w->stopping || w->device_lost;
	pthread_mutex_unlock(&w->lock);
	return waiting || worker_test_holding();
}

/* search_set_pause's hook, inside a search's turn (w->outer), the device idle: the
 * nestable jobs waiting now (GEMMs, tensor jobs: sched_next_nestable) run here, each as
 * the main loop would run it, so that a tiny GEMM waits for a few of the search's
 * operations instead of a whole step (up to a second on a GPU). NAS evaluations and other
 * searches share nasops' scratch with the step and wait for its end. The pause serves
 * jobs for at most as long as the search ran since the last one (at least one job), so
 * that a stream of GEMMs halves the search's pace rather than stopping it. Worker thread.
 * 0, or -EIO when the device was lost meanwhile (the step fails). */
static int worker_pause(void *arg)
{
	struct rxd_worker *w = arg;
	uint64_t start = now_ns(), ran = start - w->pause_end_ns;
	struct timespec nap = { 0, 1000000 };
	bool lost, held = false, was_held = false;

	pthread_mutex_lock(&w->lock);
	for (unsigned served = 0; !w->stopping && !w->device_lost;) {
		struct rxd_sched_job *sj = NULL;
		uint64_t freed_seen = w->mem_freed;

		if (!served || now_ns() - start < ran || held)
			sj = sched_next_nestable(&w->sched);
		if (sj) {
			w->running = worker_job_of(sj);
			pthread_mutex_unlock(&w->lock);
			worker_serve(w, worker_job_of(sj), freed_seen);
			served++;
			continue;
		}
		/* The test hook (RXGEMMD_TEST_HOLD) holds the search here, in the middle of
		 * its step, while the jobs that come meanwhile are still served: what the
		 * tests show the pauses with. */
		pthread_mutex_unlock(&w->lock);
		held = worker_test_holding();
		if (held) {
			was_held = true;
			nanosleep(&nap, NULL);
		}
		pthread_mutex_lock(&w->lock);
		if (!held)
			break;
	}
	lost = w->device_lost;
	pthread_mutex_unlock(&w->lock);
	if (was_held)
		worker_test_release();
	w->pause_end_ns = now_ns();
	return lost ? -EIO : 0;
}

/* The worker's busy poll, after a job, the lock not held: until a job is submitted (the
 * count moves past seen) or w->poll_ns have passed. A memory release or a stop is seen
 * when it ends, at most poll_ns late. */
static void worker_poll(struct rxd_worker *w, uint64_t seen)
{
	uint64_t until = now_ns() + w->poll_ns;

	for (unsigned i = 1;; i++) {
		if (atomic_load_explicit(&w->submits, memory_order_relaxed) != seen)
			return;
		if (i % 64 == 0 && now_ns() >= until)
			return;
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause(); /* a spin-wait hint: less power, more for a sibling */
#endif
	}
}

static void *worker_main(void *arg)
{
	struct rxd_worker *w = arg;
	bool polled = true; /* nothing to poll for before the first job */

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct rxd_sched_job *sj, *expired;
		struct rxd_job *job;
		size_t n_expired;
		uint64_t freed_seen;

		/* Parked jobs wait for worker_memory_freed. */
		while (w->sched.queued == w->sched.parked && !w->stopping) {
			if (!polled && w->poll_ns) {
				uint64_t seen = atomic_load(&w->submits);

				polled = true;
				pthread_mutex_unlock(&w->lock);
				worker_poll(w, seen);
				pthread_mutex_lock(&w->lock);
				continue;
			}
			pthread_cond_wait(&w->cond, &w->lock);
		}
		polled = false;
		if (w->stopping)
			break;
		/* A job past its deadline is never started, also when the timer has not
		 * fired yet. */
		expired = sched_expire(&w->sched, now_ns(), &n_expired);
		worker_fail_list(w, expired, RXD_S_TIMEOUT,
				 "the job's deadline passed while it waited in the queue; it was "
				 "not run");
		sj = sched_next(&w->sched);
		if (!sj) {
			pthread_mutex_unlock(&w->lock);
			uv_async_send(&w->async);
			pthread_mutex_lock(&w->lock);
			continue;
		}
		job = worker_job_of(sj);
		w->running = job;
		freed_seen = w->mem_freed;
		pthread_mutex_unlock(&w->lock);
		if (n_expired)
			uv_async_send(&w->async);
		atomic_store(&w->busy_since_ns, now_ns());
		worker_serve(w, job, freed_seen);
		atomic_store(&w->busy_since_ns, 0);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void worker_arm_timer(struct rxd_worker *w, uint64_t due_ns);

static void worker_on_poll(uv_idle_t *idle)
{
	struct rxd_worker *w = idle->data;

	if (now_ns() >= w->poll_until_ns)
		uv_idle_stop(idle);
}

/* Loop thread, at a submit or a reply: the loop polls (an active idle handle makes
 * uv_run's poll return at once) for w->poll_ns from now, so that the worker's hand-back
 * and the client's next request are seen without a wake-up. */
static void worker_loop_poll(struct rxd_worker *w)
{
	if (!w->poll_ns)
		return;
	w->poll_until_ns = now_ns() + w->poll_ns;
	if (!uv_is_active((uv_handle_t *)&w->poll_idle))
		uv_idle_start(&w->poll_idle, worker_on_poll);
}

/* Hand every finished job to the loop (the async callback; also called at stop), and arm
 * the deadline timer for the queued jobs (a job parked for memory was out of the
 * scheduler while it was tried, so the timer may have passed it over). */
static void worker_drain(uv_async_t *async)
{
	struct rxd_worker *w = async->data;
	struct rxd_job *job;
	uint64_t next_due;
	bool lost;

	pthread_mutex_lock(&w->lock);
	job = w->done_head;
	w->done_head = w->done_tail = NULL;
	lost = w->device_lost;
	next_due = w->started ? sched_next_deadline(&w->sched) : 0;
	pthread_mutex_unlock(&w->lock);
	worker_arm_timer(w, next_due);
	if (job || atomic_exchange(&w->poll_wanted, false))
		worker_loop_poll(w);
	while (job) {
		struct rxd_job *next = job->next;
		w->done(job, w->done_arg);
		job = next;
	}
	/* After the replies of the jobs the loss failed have been queued. */
	if (lost && !w->lost_reported && w->on_lost) {
		w->lost_reported = true;
		w->on_lost(w->on_lost_arg);
	}
}


static void worker_on_deadline(uv_timer_t *t);

/* Arm the deadline timer for due_ns (the earliest deadline of a waiting job), unless it is
 * armed for then or earlier already. Loop thread. */
static void worker_arm_timer(struct rxd_worker *w, uint64_t due_ns)
{
	uint64_t now = now_ns(), ms;

	if (!due_ns || (w->timer_due_ns && w->timer_due_ns <= due_ns))
		return;
	w->timer_due_ns = due_ns;
	/* Whole ms, rounded up. The loop's clock may lag, so the timer can fire a little
	 * early: it then finds nothing due and arms itself again. */
	ms = due_ns > now ? (due_ns - now + 999999) / 1000000 : 0;
	uv_timer_start(&w->deadline_timer, worker_on_deadline, ms, 0);
}

static void worker_on_deadline(uv_timer_t *t)
{
	struct rxd_worker *w = t->data;
	struct rxd_sched_job *expired;
	uint64_t next;
	size_t n;

	w->timer_due_ns = 0;
	pthread_mutex_lock(&w->lock);
	expired = sched_expire(&w->sched, now_ns(), &n);
	worker_fail_list(w, expired, RXD_S_TIMEOUT,
			 "the job's deadline passed while it waited in the queue; it was not run");
	next = sched_next_deadline(&w->sched);
	pthread_mutex_unlock(&w->lock);
	if (n)
		uv_async_send(&w->async);
	worker_arm_timer(w, next);
}

int worker_start(struct rxd_worker **out, struct uv_loop_s *loop,
		 const struct rxd_worker_init *init)
{
	struct rxd_gemm_engine *eng = init->engine;
	struct rxd_worker *w;
	const char *env;
	int ret;

	*out = NULL;
	if (!(w = calloc(1, sizeof(*w))))
		return -ENOMEM;
	w->pin_inline = device_env_mode("RXGEMMD_PIN_INLINE");
	hostbuf_set_unpin(worker_pin_release);
	env = getenv("RXGEMMD_TEST_DEVICE_LOSS");
	if (env && *env) {
		w->inject_loss_at = strtoull(env, NULL, 10);
		log_msg(LOG_WARNING, "RXGEMMD_TEST_DEVICE_LOSS is set: job %llu will fail as if the "
			"device were lost", (unsigned long long)w->inject_loss_at);
	}
	worker_hold_dir = getenv("RXGEMMD_TEST_HOLD");
	if (worker_hold_dir && !*worker_hold_dir)
		worker_hold_dir = NULL;
	if (worker_hold_dir)
		log_msg(LOG_WARNING, "RXGEMMD_TEST_HOLD is set: a test may hold jobs");
	w->engine = eng;
	w->nasops = init->nasops;
	w->zero_copy = init->zero_copy;
	w->on_lost = init->on_lost;
	w->on_lost_arg = init->on_lost_arg;
	w->done = init->done;
	w->done_arg = init->done_arg;
	w->poll_ns = init->busy_poll_ns;
	sched_init(&w->sched, RXD_DEFAULT_MAX_QUEUE, RXD_DEFAULT_CLIENT_MAX_QUEUE, 0);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	if ((ret = uv_async_init(loop, &w->async, worker_drain)) < 0)
		goto out;
	w->async.data = w;
	uv_timer_init(loop, &w->deadline_timer);
	w->deadline_timer.data = w;
	uv_idle_init(loop, &w->poll_idle);
	w->poll_idle.data = w;
	if ((ret = pthread_create(&w->thread, NULL, worker_main, w)) != 0) {
		ret = -ret;
		uv_close((uv_handle_t *)&w->async, NULL);
		uv_close((uv_handle_t *)&w->deadline_timer, NULL);
		uv_close((uv_handle_t *)&w->poll_idle, NULL);
		/* The loop still lists the handles until it runs their closes: w stays
		 * allocated (a start-up failure; the daemon exits). */
		sched_fini(&w->sched);
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->cond);
		return ret;
	}
	w->started = true;
	if (eng->budget)
		budget_set_notify(eng->budget, worker_memory_freed, w);
	*out = w;
	return 0;
out:
	sched_fini(&w->sched);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
	return ret;
}

int worker_submit(struct rxd_worker *w, struct rxd_job *job)
{
	int ret;

	if (!w->started)
		return -ESHUTDOWN;
	job->sj.owner = job->conn_id;
	job->sj.request_id = job->request_id;
	pthread_mutex_lock(&w->lock);
	if (w->device_lost)
		ret = -ENODEV;
	else if ((ret = sched_submit(&w->sched, &job->sj)) == 0) {
		atomic_fetch_add(&w->submits, 1);
		pthread_cond_signal(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	if (ret == 0) {
		worker_arm_timer(w, job->sj.deadline_ns);
		worker_loop_poll(w);
	}
	return ret;
}

int worker_requeue(struct rxd_worker *w, struct rxd_job *job)
{
	int ret;

	if (!w->started)
		return -ESHUTDOWN;
	pthread_mutex_lock(&w->lock);
	if (w->device_lost)
		ret = -ENODEV;
	else if (w->stopping)
		ret = -ESHUTDOWN;
	else if ((ret = sched_requeue(&w->sched, &job->sj)) == 0) {
		atomic_fetch_add(&w->submits, 1);
		pthread_cond_signal(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	return ret;
}

void worker_set_limits(struct rxd_worker *w, uint32_t max_queue, uint32_t client_max_queue)
{
	if (!w->started)
		return;
	pthread_mutex_lock(&w->lock);
	sched_set_limits(&w->sched, max_queue, client_max_queue);
	pthread_mutex_unlock(&w->lock);
}

int worker_cancel(struct rxd_worker *w, uint32_t owner, uint64_t request_id)
{
	int outcome = RXD_CANCEL_NOT_FOUND;
	struct rxd_sched_job *sj;

	if (!w->started)
		return outcome;
	pthread_mutex_lock(&w->lock);
	if ((sj = sched_cancel(&w->sched, owner, request_id))) {
		sj->next = NULL;
		worker_fail_list(w, sj, RXD_S_CANCELLED,
				 "the job was cancelled before it ran");
		outcome = RXD_CANCEL_QUEUED;
	} else if (w->running && w->running->conn_id == owner &&
		   w->running->request_id == request_id) {
		atomic_store(&w->running->cancel, true);
		outcome = RXD_CANCEL_RUNNING;
	} else if (w->outer && w->outer->conn_id == owner && w->outer->request_id == request_id) {
		/* A search paused for a short job: it stops after its step. */
		atomic_store(&w->outer->cancel, true);
		outcome = RXD_CANCEL_RUNNING;
	} else {
		/* A search between two turns is on the done list until the loop requeues
		 * it: it stops there (wire_search_turn_done). */
		for (struct rxd_job *j = w->done_head; j; j = j->next)
			if (j->kind == RXD_JOB_SEARCH && j->conn_id == owner &&
			    j->request_id == request_id && j->err.status == RXD_S_OK &&
			    !j->search->finished) {
				atomic_store(&j->cancel, true);
				outcome = RXD_CANCEL_RUNNING;
				break;
			}
	}
	pthread_mutex_unlock(&w->lock);
	if (outcome == RXD_CANCEL_QUEUED)
		uv_async_send(&w->async);
	return outcome;
}

void worker_forget(struct rxd_worker *w, uint32_t owner)
{
	struct rxd_sched_job *list;
	size_t n;

	if (!w->started)
		return;
	pthread_mutex_lock(&w->lock);
	list = sched_remove_client(&w->sched, owner);
	n = worker_fail_list(w, list, RXD_S_CANCELLED,
			     "the client disconnected; the job was not run");
	if (w->running && w->running->conn_id == owner) {
		atomic_store(&w->running->cancel, true);
	}
	if (w->outer && w->outer->conn_id == owner)
		atomic_store(&w->outer->cancel, true);
	pthread_mutex_unlock(&w->lock);
	if (n)
		uv_async_send(&w->async);
}

void worker_queue_stats(struct rxd_worker *w, struct rxd_sched_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!w->started)
		return;
	pthread_mutex_lock(&w->lock);
	sched_stats(&w->sched, out);
	out->cancelled = w->cancelled;
	pthread_mutex_unlock(&w->lock);
}

uint64_t worker_busy_ns(struct rxd_worker *w)
{
	uint64_t since = atomic_load(&w->busy_since_ns), now = now_ns();

	return since && now > since ? now - since : 0;
}

void worker_stop(struct rxd_worker *w)
{
	struct rxd_sched_job *queued;

	if (!w->started)
		return;
	if (w->engine->budget)
		budget_set_notify(w->engine->budget, NULL, NULL);
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	queued = sched_take_all(&w->sched);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	/* The job running now, if any, finishes before the thread leaves. */
	pthread_join(w->thread, NULL);
	w->started = false;
	pthread_mutex_lock(&w->lock);
	worker_fail_list(w, queued, RXD_S_SHUTDOWN,
			 "the daemon is shutting down; the job was not run");
	pthread_mutex_unlock(&w->lock);
	worker_drain(&w->async);
	uv_close((uv_handle_t *)&w->async, NULL);
	uv_timer_stop(&w->deadline_timer);
	uv_close((uv_handle_t *)&w->deadline_timer, NULL);
	uv_close((uv_handle_t *)&w->poll_idle, NULL);
	sched_fini(&w->sched);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
}

void worker_free(struct rxd_worker *w)
{
	/* Pins are the device's: gone before it is. */
	hostbuf_unpin_all();
	hostbuf_set_unpin(NULL);
	free(w);
}

struct rxd_gemm_engine *worker_engine(const struct rxd_worker *w)
{
	return w->engine;
}

uint64_t worker_busy_poll_ns(const struct rxd_worker *w)
{
	return w->poll_ns;
}

bool worker_serves_nas(const struct rxd_worker *w)
{
	return w->nasops != NULL;
}

/* worker.c: the device worker thread. It owns the OpenCL command queue and runs jobs one at
 * a time in arrival order; the loop thread hands jobs over and gets them back finished.
 *
 * Lock order: w->lock is the only lock here and is never held while calling out (OpenCL,
 * libuv other than uv_async_send, the done callback). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rxgemmd.h"

void job_free(struct rxd_job *job)
{
	if (!job)
		return;
	nas_job_free(job->nas); /* before the request it points into */
	if (job->req)
		rxgemm__request__free_unpacked(job->req, NULL);
	free(job->c_out);
	free(job);
}

static void worker_push_done(struct rxd_worker *w, struct rxd_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&w->lock);
	if (w->done_tail)
		w->done_tail->next = job;
	else
		w->done_head = job;
	w->done_tail = job;
	pthread_mutex_unlock(&w->lock);
	uv_async_send(&w->async);
}

static void worker_run_job(struct rxd_worker *w, struct rxd_job *job)
{
	job->started_ns = now_ns();
	if (atomic_load(job->abandoned)) {
		/* The client is gone: nobody would read the answer. */
		job->status = RXGEMM__STATUS__STATUS_SHUTDOWN;
		snprintf(job->error, sizeof(job->error), "the client disconnected");
	} else if (job->kind == RXD_JOB_NAS) {
		job->status = nas_job_run(job->nas, w->nasops, w->engine->budget, job->conn_id,
					  job->abandoned, job->error, sizeof(job->error));
	} else if (!(job->c_out = malloc(job->g.c_elems * sizeof(float)))) {
		job->status = RXGEMM__STATUS__STATUS_NO_MEMORY;
		snprintf(job->error, sizeof(job->error), "out of host memory for the result");
	} else if (w->engine->budget) {
		/* Admission: reserves the job's device memory (waiting for it when others hold
		 * it) and releases it when the job ends, whatever the outcome. */
		job->status = split_run(w->engine, w->engine->budget, job->conn_id, job->abandoned,
					&job->g, job->c_out, &job->dev_t, &job->kernel, job->error,
					sizeof(job->error));
	} else {
		job->status = gemm_run(w->engine, &job->g, job->c_out, &job->dev_t, &job->kernel,
				       job->error, sizeof(job->error));
	}
	job->finished_ns = now_ns();
}

static void *worker_main(void *arg)
{
	struct rxd_worker *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct rxd_job *job;

		while (!w->head && !w->stopping)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->stopping)
			break;
		job = w->head;
		w->head = job->next;
		if (!w->head)
			w->tail = NULL;
		pthread_mutex_unlock(&w->lock);
		atomic_store(&w->busy_since_ns, now_ns());
		worker_run_job(w, job);
		atomic_store(&w->busy_since_ns, 0);
		worker_push_done(w, job);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Hand every finished job to the loop (the async callback; also called at stop). */
static void worker_drain(uv_async_t *async)
{
	struct rxd_worker *w = async->data;
	struct rxd_job *job;

	pthread_mutex_lock(&w->lock);
	job = w->done_head;
	w->done_head = w->done_tail = NULL;
	pthread_mutex_unlock(&w->lock);
	while (job) {
		struct rxd_job *next = job->next;
		w->done(job, w->done_arg);
		job = next;
	}
}

int worker_start(struct rxd_worker *w, uv_loop_t *loop, struct rxd_gemm_engine *eng,
		 void (*done)(struct rxd_job *, void *), void *arg)
{
	int ret;

	memset(w, 0, sizeof(*w));
	w->engine = eng;
	w->done = done;
	w->done_arg = arg;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	if ((ret = uv_async_init(loop, &w->async, worker_drain)) < 0)
		return ret;
	w->async.data = w;
	if ((ret = pthread_create(&w->thread, NULL, worker_main, w)) != 0) {
		uv_close((uv_handle_t *)&w->async, NULL);
		return -ret;
	}
	w->started = true;
	return 0;
}

void worker_submit(struct rxd_worker *w, struct rxd_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&w->lock);
	if (w->tail)
		w->tail->next = job;
	else
		w->head = job;
	w->tail = job;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

uint64_t worker_busy_ns(struct rxd_worker *w)
{
	uint64_t since = atomic_load(&w->busy_since_ns), now = now_ns();

	return since && now > since ? now - since : 0;
}

void worker_stop(struct rxd_worker *w)
{
	struct rxd_job *queued;

	if (!w->started)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	queued = w->head;
	w->head = w->tail = NULL;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	/* The job running now, if any, finishes before the thread leaves. */
	pthread_join(w->thread, NULL);
	w->started = false;
	while (queued) {
		struct rxd_job *next = queued->next;
		queued->status = RXGEMM__STATUS__STATUS_SHUTDOWN;
		snprintf(queued->error, sizeof(queued->error),
			 "the daemon is shutting down; the job was not run");
		queued->started_ns = queued->finished_ns = now_ns();
		worker_push_done(w, queued);
		queued = next;
	}
	worker_drain(&w->async);
	uv_close((uv_handle_t *)&w->async, NULL);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
}

/* budget.c: the device-memory budget, quotas and the buffer pool.
 *
 * Accounting: a job reserves what its buffers will take (admit.c plans it from the
 * shapes) before it runs; its buffers come out of that reservation, from the pool when an
 * idle buffer of the right size class is there, else newly made. When the job ends its
 * buffers go back to the pool, idle but still counted, so that
 *
 *     reserved_bytes + pool_bytes <= budget_bytes
 *
 * holds at every moment that the lock is free, and the device never holds more of our
 * buffers than that. A reservation that finds the room taken by idle buffers frees as many
 * of them as it needs (least recently used first); one that finds it taken by other
 * reservations is told -EAGAIN. Nothing here waits: admission (admit.c) plans every job
 * within what device tensors leave, and a job that does not fit beside them waits in the
 * scheduler (sched_park), told by the on_freed callback when tensors give room back.
 *
 * Lock order: b->lock is a leaf lock (see engine.h). Buffers are made and freed through the
 * alloc/free callbacks with the lock dropped: a freed buffer has left the accounting before
 * it is freed, and a reservation is made before its buffers exist, so the device holds at
 * most what the accounting says. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

struct rxd_budget_buf {
	struct rxd_budget_buf *next;
	void *mem;           /* cl_mem in the daemon; whatever alloc gave in tests */
	uint64_t bytes;      /* its size class (budget_round) */
};

struct rxd_budget {
	pthread_mutex_t lock;
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

uint64_t budget_round(uint64_t bytes)
{
	uint64_t step;
	int log2;

	if (bytes <= RXD_BUDGET_MIN_BUFFER)
		return RXD_BUDGET_MIN_BUFFER;
	log2 = 63 - __builtin_clzll(bytes);
	step = 1ull << (log2 - 3);
	if (bytes > UINT64_MAX - step)
		return UINT64_MAX;
	return (bytes + step - 1) / step * step;
}

uint64_t budget_resolve(uint64_t bytes, double percent, uint64_t global_mem_bytes)
{
	uint64_t v;

	if (percent > 0)
		v = (uint64_t)((double)global_mem_bytes * percent / 100.0);
	else
		v = bytes ? bytes : RXD_DEFAULT_VRAM_BUDGET;
	if (global_mem_bytes && v > global_mem_bytes)
		v = global_mem_bytes;
	if (v < RXD_MIN_VRAM_BUDGET)
		v = RXD_MIN_VRAM_BUDGET;
	return v;
}

struct rxd_budget *budget_create(uint64_t budget_bytes, uint64_t quota_bytes,
				 int (*alloc)(void *, uint64_t, void **, int *),
				 void (*free_fn)(void *, void *), void *ctx)
{
	struct rxd_budget *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	pthread_mutex_init(&b->lock, NULL);
	b->budget_bytes = budget_bytes;
	b->quota_bytes = quota_bytes;
	b->alloc = alloc;
	b->free = free_fn;
	b->ctx = ctx;
	return b;
}

static void budget_free_list(struct rxd_budget *b, struct rxd_budget_buf *list)
{
	while (list) {
		struct rxd_budget_buf *next = list->next;
		b->free(b->ctx, list->mem);
		free(list);
		list = next;
	}
}

void budget_destroy(struct rxd_budget *b)
{
	if (!b)
		return;
	if (b->live)
		fatal("budget_destroy with a reservation still live: a broken invariant");
	budget_free_list(b, b->pool);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

int budget_cl_alloc(void *dev, uint64_t bytes, void **mem, int *err)
{
	struct rxd_device *d = dev;
	cl_int e = CL_SUCCESS;
	cl_mem m;

	if (bytes > SIZE_MAX)
		return -E2BIG;
	/* Read-write, so that any idle buffer can serve as A, B or C later. */
	m = clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, (size_t)bytes, NULL, &e);
	if (err)
		*err = e;
	if (!m)
		return -ENOMEM;
	*mem = m;
	return 0;
}

void budget_cl_free(void *dev, void *mem)
{
	(void)dev;
	clReleaseMemObject((cl_mem)mem);
}

void budget_set_notify(struct rxd_budget *b, void (*on_freed)(void *arg), void *arg)
{
	pthread_mutex_lock(&b->lock);
	b->on_freed = on_freed;
	b->on_freed_arg = arg;
	pthread_mutex_unlock(&b->lock);
}

/* Tell the listener (outside the lock: it takes its own) that room may have come back. */
static void budget_notify(void (*fn)(void *), void *arg)
{
	if (fn)
		fn(arg);
}

void budget_set_limits(struct rxd_budget *b, uint64_t budget_bytes, uint64_t quota_bytes)
{
	void (*fn)(void *);
	void *arg;

	pthread_mutex_lock(&b->lock);
	b->budget_bytes = budget_bytes;
	b->quota_bytes = quota_bytes;
	fn = b->on_freed;
	arg = b->on_freed_arg;
	pthread_mutex_unlock(&b->lock);
	budget_notify(fn, arg);
}

static void budget_note_peak(struct rxd_budget *b)
{
	uint64_t now = b->reserved_bytes + b->pool_bytes;

	if (now > b->peak_bytes)
		b->peak_bytes = now;
}

/* Take idle buffers off the pool, oldest first, until reserved + pool + want fits the
 * budget; they are returned for freeing outside the lock. Call with the lock held, only
 * when reserved + want fits. */
static struct rxd_budget_buf *budget_evict_locked(struct rxd_budget *b, uint64_t want)
{
	struct rxd_budget_buf *evicted = NULL;

	while (b->pool && b->reserved_bytes + b->pool_bytes + want > b->budget_bytes) {
		struct rxd_budget_buf **pp = &b->pool, *victim;

		while ((*pp)->next)
			pp = &(*pp)->next;
		victim = *pp;
		*pp = NULL;
		b->pool_bytes -= victim->bytes;
		b->pool_buffers--;
		b->evictions++;
		victim->next = evicted;
		evicted = victim;
	}
	return evicted;
}

int budget_reserve(struct rxd_budget *b, struct rxd_budget_res *res, uint32_t owner,
		   uint64_t bytes)
{
	struct rxd_budget_buf *evicted = NULL;
	uint64_t mine = 0;
	int ret = 0;

	memset(res, 0, sizeof(*res));
	pthread_mutex_lock(&b->lock);
	/* Resident reservations (device tensors) stay until their client frees them: what
	 * does not fit beside them is told so, never kept waiting for their room. (A SIGHUP
	 * may have lowered the budget below what tensors hold.) */
	if (b->resident_bytes >= b->budget_bytes || bytes > b->budget_bytes - b->resident_bytes) {
		ret = -E2BIG;
		goto out;
	}
	if (b->quota_bytes) {
		for (struct rxd_budget_res *r = b->live; r; r = r->next)
			if (r->owner == owner)
				mine += r->bytes;
		if (mine + bytes > b->quota_bytes) {
			ret = -EDQUOT;
			goto out;
		}
	}
	if (b->reserved_bytes + bytes > b->budget_bytes) {
		ret = -EAGAIN;
		goto out;
	}
	evicted = budget_evict_locked(b, bytes);
	res->owner = owner;
	res->bytes = bytes;
	res->live = true;
	res->next = b->live;
	b->live = res;
	b->reserved_bytes += bytes;
	budget_note_peak(b);
out:
	pthread_mutex_unlock(&b->lock);
	budget_free_list(b, evicted);
	return ret;
}

int budget_reserve_resident(struct rxd_budget *b, struct rxd_budget_res *res, uint32_t owner,
			    uint64_t bytes)
{
	int ret = budget_reserve(b, res, owner, bytes);

	if (ret < 0)
		return ret;
	pthread_mutex_lock(&b->lock);
	res->resident = true;
	b->resident_bytes += bytes;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

int budget_buf_get(struct rxd_budget *b, struct rxd_budget_res *res, uint64_t bytes,
		   void **mem, int *err)
{
	uint64_t size = budget_round(bytes);
	struct rxd_budget_buf *buf = NULL, **pp;
	int ret;

	if (err)
		*err = 0;
	pthread_mutex_lock(&b->lock);
	if (!res->live || res->used_bytes + size > res->bytes) {
		pthread_mutex_unlock(&b->lock);
		return -ENOSPC;
	}
	for (pp = &b->pool; *pp; pp = &(*pp)->next)
		if ((*pp)->bytes == size) {
			buf = *pp;
			*pp = buf->next;
			b->pool_bytes -= size;
			b->pool_buffers--;
			b->reuses++;
			break;
		}
	/* Charged now, so that the room is the reservation's while the buffer is made. */
	res->used_bytes += size;
	b->in_use_bytes += size;
	pthread_mutex_unlock(&b->lock);
	if (!buf) {
		void *m = NULL;

		buf = malloc(sizeof(*buf));
		ret = buf ? b->alloc(b->ctx, size, &m, err) : -ENOMEM;
		if (ret < 0) {
			free(buf);
			pthread_mutex_lock(&b->lock);
			res->used_bytes -= size;
			b->in_use_bytes -= size;
			pthread_mutex_unlock(&b->lock);
			return ret;
		}
		buf->mem = m;
		buf->bytes = size;
		pthread_mutex_lock(&b->lock);
		b->allocations++;
		pthread_mutex_unlock(&b->lock);
	}
	/* res->bufs belongs to the reservation's thread; the lock is not needed for it. */
	buf->next = res->bufs;
	res->bufs = buf;
	*mem = buf->mem;
	return 0;
}

void budget_release(struct rxd_budget *b, struct rxd_budget_res *res)
{
	struct rxd_budget_res **pp;
	void (*fn)(void *) = NULL;
	void *arg = NULL;

	if (!res->live)
		return;
	pthread_mutex_lock(&b->lock);
	for (pp = &b->live; *pp; pp = &(*pp)->next)
		if (*pp == res) {
			*pp = res->next;
			break;
		}
	/* The buffers, most recent first at the pool's head; they were inside the
	 * reservation that goes now, so the sum cannot grow. */
	while (res->bufs) {
		struct rxd_budget_buf *buf = res->bufs;

		res->bufs = buf->next;
		buf->next = b->pool;
		b->pool = buf;
		b->pool_bytes += buf->bytes;
		b->pool_buffers++;
	}
	b->in_use_bytes -= res->used_bytes;
	b->reserved_bytes -= res->bytes;
	if (res->resident) {
		/* Only a tensor's room can be what a parked job waits for: the worker runs
		 * one job at a time, and the pool's buffers are evicted on demand. */
		b->resident_bytes -= res->bytes;
		fn = b->on_freed;
		arg = b->on_freed_arg;
	}
	res->resident = false;
	res->live = false;
	res->used_bytes = 0;
	pthread_mutex_unlock(&b->lock);
	budget_notify(fn, arg);
}

void budget_trim(struct rxd_budget *b)
{
	struct rxd_budget_buf *pool;

	pthread_mutex_lock(&b->lock);
	pool = b->pool;
	b->pool = NULL;
	b->evictions += b->pool_buffers;
	b->pool_bytes = 0;
	b->pool_buffers = 0;
	pthread_mutex_unlock(&b->lock);
	budget_free_list(b, pool);
}

void budget_note_split(struct rxd_budget *b)
{
	pthread_mutex_lock(&b->lock);
	b->split_jobs++;
	pthread_mutex_unlock(&b->lock);
}

uint64_t budget_limit(struct rxd_budget *b)
{
	uint64_t bytes;

	if (!b)
		return 0;
	pthread_mutex_lock(&b->lock);
	bytes = b->budget_bytes;
	pthread_mutex_unlock(&b->lock);
	return bytes;
}

uint32_t budget_live_count(struct rxd_budget *b, uint32_t owner, uint32_t *owner_live)
{
	uint32_t n = 0, mine = 0;

	pthread_mutex_lock(&b->lock);
	for (struct rxd_budget_res *r = b->live; r; r = r->next) {
		n++;
		mine += r->owner == owner;
	}
	pthread_mutex_unlock(&b->lock);
	if (owner_live)
		*owner_live = mine;
	return n;
}

void budget_stats(struct rxd_budget *b, struct rxd_budget_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	out->budget_bytes = b->budget_bytes;
	out->quota_bytes = b->quota_bytes;
	out->reserved_bytes = b->reserved_bytes;
	out->resident_bytes = b->resident_bytes;
	out->in_use_bytes = b->in_use_bytes;
	out->peak_bytes = b->peak_bytes;
	out->pool_bytes = b->pool_bytes;
	out->pool_buffers = b->pool_buffers;
	out->allocations = b->allocations;
	out->reuses = b->reuses;
	out->evictions = b->evictions;
	out->split_jobs = b->split_jobs;
	pthread_mutex_unlock(&b->lock);
}

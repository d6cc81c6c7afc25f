/* hostbuf.c: large host buffers kept between jobs, so that the next job's bytes land in
 * pages the process has touched before.
 *
 * A GEMM whose matrices come in its request is read into a frame body of megabytes, and
 * its result goes back from a host buffer as large; both were new memory for every job.
 * Memory new to the process costs a page fault per page at its first touch, which is most
 * of what copying into it costs: into fresh memory a copy ran 4-5x slower than into memory
 * used before on the H200 machine (tests/bench-copy, docs/PERFORMANCE.md), and about 1.7
 * ms per 4 MiB here on PoCL's machine. So a buffer of HOSTBUF_MIN_BYTES or more that the
 * loop thread frees is kept, and the next request for about its size (a frame's body,
 * frame_reader's take; a result, hostbuf_alloc) gets it instead of new memory.
 *
 * What is kept is bounded: HOSTBUF_SLOTS buffers and HOSTBUF_MAX_BYTES together, and a
 * buffer nobody took for HOSTBUF_IDLE_MS goes back to the system (a timer on the loop
 * that runs only while something is kept), so an idle daemon holds none of it.
 *
 * Any thread may allocate; only the loop thread keeps what it frees (it owns the timer),
 * other threads' frees go straight to free(). Every buffer is malloc's: free() is always
 * right for one, kept or not. */
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "loop.h"

static struct {
	pthread_mutex_t lock;
	struct {
		void *p;
		size_t cap;      /* malloc_usable_size */
		uint64_t since;  /* ns, when it was kept */
	} slot[HOSTBUF_SLOTS];
	unsigned n;
	uint64_t bytes;          /* kept, together */
	uint64_t hits, misses;   /* large requests served from what was kept, and not */
	uv_timer_t timer;
	unsigned idle_ms;        /* HOSTBUF_IDLE_MS, or the tests' */
	bool attached;
	pthread_t loop_thread;
} hb = { .lock = PTHREAD_MUTEX_INITIALIZER, .idle_ms = HOSTBUF_IDLE_MS };

static uint64_t hostbuf_now_ns(void)
{
	return uv_hrtime();
}

/* The kept buffer that best fits bytes (the smallest of bytes to twice that), taken out;
 * NULL when none does. */
static void *hostbuf_take_locked(size_t bytes, size_t *cap)
{
	unsigned best = HOSTBUF_SLOTS;
	void *p;

	for (unsigned i = 0; i < hb.n; i++)
		if (hb.slot[i].cap >= bytes && hb.slot[i].cap / 2 <= bytes &&
		    (best == HOSTBUF_SLOTS || hb.slot[i].cap < hb.slot[best].cap))
			best = i;
	if (best == HOSTBUF_SLOTS) {
		hb.misses++;
		return NULL;
	}
	hb.hits++;
	p = hb.slot[best].p;
	*cap = hb.slot[best].cap;
	hb.bytes -= hb.slot[best].cap;
	hb.slot[best] = hb.slot[--hb.n];
	return p;
}

void *hostbuf_take(size_t bytes, size_t *cap)
{
	void *p;

	if (bytes < HOSTBUF_MIN_BYTES)
		return NULL;
	pthread_mutex_lock(&hb.lock);
	p = hostbuf_take_locked(bytes, cap);
	pthread_mutex_unlock(&hb.lock);
	if (p)
		log_msg(LOG_DEBUG, "%zu bytes into a kept host buffer of %zu", bytes, *cap);
	return p;
}

void *hostbuf_alloc(size_t bytes)
{
	size_t cap;
	void *p = hostbuf_take(bytes, &cap);

	return p ? p : malloc(bytes ? bytes : 1);
}

/* Free what was kept longer than idle_ns ago (all of it with 0); the time until the
 * oldest left is due, or 0 when nothing is left. */
static uint64_t hostbuf_trim(uint64_t idle_ns)
{
	uint64_t now = hostbuf_now_ns(), next = 0;
	void *drop[HOSTBUF_SLOTS];
	unsigned n_drop = 0;

	pthread_mutex_lock(&hb.lock);
	for (unsigned i = 0; i < hb.n;) {
		uint64_t age = now - hb.slot[i].since;

		if (age >= idle_ns) {
			drop[n_drop++] = hb.slot[i].p;
			hb.bytes -= hb.slot[i].cap;
			hb.slot[i] = hb.slot[--hb.n];
			continue;
		}
		if (!next || idle_ns - age < next)
			next = idle_ns - age;
		i++;
	}
	pthread_mutex_unlock(&hb.lock);
	for (unsigned i = 0; i < n_drop; i++)
		free(drop[i]);
	return next;
}

static void hostbuf_on_timer(uv_timer_t *t)
{
	uint64_t next = hostbuf_trim((uint64_t)hb.idle_ms * 1000000u);

	if (next)
		uv_timer_start(t, hostbuf_on_timer, next / 1000000u + 1, 0);
}

void hostbuf_free(void *p)
{
	size_t cap;
	bool kept = false;

	if (!p)
		return;
	cap = malloc_usable_size(p);
	if (cap < HOSTBUF_MIN_BYTES || !hb.attached ||
	    !pthread_equal(pthread_self(), hb.loop_thread)) {
		free(p);
		return;
	}
	pthread_mutex_lock(&hb.lock);
	if (hb.n < HOSTBUF_SLOTS && hb.bytes + cap <= HOSTBUF_MAX_BYTES) {
		hb.slot[hb.n].p = p;
		hb.slot[hb.n].cap = cap;
		hb.slot[hb.n].since = hostbuf_now_ns();
		hb.n++;
		hb.bytes += cap;
		kept = true;
	}
	pthread_mutex_unlock(&hb.lock);
	if (!kept) {
		free(p);
		return;
	}
	if (!uv_is_active((uv_handle_t *)&hb.timer))
		uv_timer_start(&hb.timer, hostbuf_on_timer, hb.idle_ms, 0);
}

void hostbuf_test_idle_ms(unsigned ms)
{
	hb.idle_ms = ms;
}

void hostbuf_attach(uv_loop_t *loop)
{
	uv_timer_init(loop, &hb.timer);
	/* The timer alone must not keep the loop running at shutdown. */
	uv_unref((uv_handle_t *)&hb.timer);
	hb.loop_thread = pthread_self();
	hb.attached = true;
}

void hostbuf_detach(void)
{
	if (!hb.attached)
		return;
	hb.attached = false;
	uv_timer_stop(&hb.timer);
	uv_close((uv_handle_t *)&hb.timer, NULL);
	hostbuf_trim(0);
}

void hostbuf_stats(struct hostbuf_stats *out)
{
	pthread_mutex_lock(&hb.lock);
	out->kept = hb.n;
	out->kept_bytes = hb.bytes;
	out->hits = hb.hits;
	out->misses = hb.misses;
	pthread_mutex_unlock(&hb.lock);
}

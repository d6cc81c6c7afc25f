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
 * other threads' frees go straight to the system.
 *
 * Pins. On a GPU whose driver pins host memory wrapped in a CL_MEM_USE_HOST_PTR buffer,
 * copies from and to pinned pages run several times faster, and the worker pins a job's
 * inline operands and its result's buffer (worker.c). Pinning costs about as much as a
 * copy (2.7 ms for 64 MiB on the H100 machine, three of them in a 4096^3 job), so a
 * buffer that hostbuf tracks keeps its pin (hostbuf_pin) for as long as it stays in use
 * and kept: the next job that reuses it pays nothing. A pin must never outlive its pages
 * (the driver would copy from the old ones), so every buffer hostbuf hands out or keeps is
 * in its table, and is given back through hostbuf_free, which unpins before it frees;
 * never with free(). */
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "loop.h"

/* Buffers hostbuf knows at once: those it keeps, and those handed out (by take, or by
 * alloc when large enough) that may carry a pin. One handed out past this is the
 * caller's alone, unpinned, and kept on its free like a stranger's. */
#define HOSTBUF_TRACKED 32

struct hostbuf_entry {
	void *p;
	size_t cap;      /* malloc_usable_size */
	void *pin;       /* the device's pin of all of it (hostbuf_pin), or NULL */
	uint64_t since;  /* ns, when it was kept */
	bool kept;       /* else handed out */
};

static struct {
	pthread_mutex_t lock;
	struct hostbuf_entry e[HOSTBUF_TRACKED];
	unsigned n;              /* entries in use, e[0..n) */
	unsigned n_kept;
	uint64_t bytes;          /* kept, together */
	uint64_t hits, misses;   /* large requests served from what was kept, and not */
	uint64_t pins_made;
	void (*unpin)(void *pin);
	uv_timer_t timer;
	unsigned idle_ms;        /* HOSTBUF_IDLE_MS, or the tests' */
	bool attached;
	pthread_t loop_thread;
} hb = { .lock = PTHREAD_MUTEX_INITIALIZER, .idle_ms = HOSTBUF_IDLE_MS };

static uint64_t hostbuf_now_ns(void)
{
	return uv_hrtime();
}

/* The entry of p, or NULL. Under the lock. */
static struct hostbuf_entry *hostbuf_find_locked(const void *p)
{
	for (unsigned i = 0; i < hb.n; i++)
		if (hb.e[i].p == p)
			return &hb.e[i];
	return NULL;
}

/* Forget entry e (its buffer and pin are the caller's now). Under the lock. */
static void hostbuf_drop_locked(struct hostbuf_entry *e)
{
	if (e->kept) {
		hb.n_kept--;
		hb.bytes -= e->cap;
	}
	*e = hb.e[--hb.n];
}

/* Give back a buffer hostbuf no longer knows, after its pin. Outside the lock. */
static void hostbuf_release(void *p, void *pin)
{
	if (pin && hb.unpin)
		hb.unpin(pin);
	free(p);
}

/* The kept buffer that best fits bytes (the smallest of bytes to twice that), handed out
 * (still tracked, its pin with it); NULL when none does. */
static void *hostbuf_take_locked(size_t bytes, size_t *cap)
{
	struct hostbuf_entry *best = NULL;

	for (unsigned i = 0; i < hb.n; i++) {
		struct hostbuf_entry *e = &hb.e[i];

		if (e->kept && e->cap >= bytes && e->cap / 2 <= bytes &&
		    (!best || e->cap < best->cap))
			best = e;
	}
	if (!best) {
		hb.misses++;
		return NULL;
	}
	hb.hits++;
	best->kept = false;
	hb.n_kept--;
	hb.bytes -= best->cap;
	*cap = best->cap;
	return best->p;
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

	if (p || bytes < HOSTBUF_MIN_BYTES)
		return p ? p : malloc(bytes ? bytes : 1);
	/* New: tracked from the start where there is room, so that its pin stays with it. */
	if (!(p = malloc(bytes)))
		return NULL;
	pthread_mutex_lock(&hb.lock);
	if (hb.n < HOSTBUF_TRACKED)
		hb.e[hb.n++] = (struct hostbuf_entry){ .p = p, .cap = malloc_usable_size(p) };
	pthread_mutex_unlock(&hb.lock);
	return p;
}

/* Free what was kept longer than idle_ns ago (all of it with 0); the time until the
 * oldest left is due, or 0 when nothing is left. */
static uint64_t hostbuf_trim(uint64_t idle_ns)
{
	uint64_t now = hostbuf_now_ns(), next = 0;
	void *drop[HOSTBUF_TRACKED], *pins[HOSTBUF_TRACKED];
	unsigned n_drop = 0;

	pthread_mutex_lock(&hb.lock);
	for (unsigned i = 0; i < hb.n;) {
		struct hostbuf_entry *e = &hb.e[i];
		uint64_t age = now - e->since;

		if (!e->kept) {
			i++;
			continue;
		}
		if (age >= idle_ns) {
			drop[n_drop] = e->p;
			pins[n_drop++] = e->pin;
			hostbuf_drop_locked(e);
			continue;
		}
		if (!next || idle_ns - age < next)
			next = idle_ns - age;
		i++;
	}
	pthread_mutex_unlock(&hb.lock);
	for (unsigned i = 0; i < n_drop; i++)
		hostbuf_release(drop[i], pins[i]);
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
	struct hostbuf_entry *e;
	void *pin = NULL;
	size_t cap;
	bool keep, kept = false;

	if (!p)
		return;
	cap = malloc_usable_size(p);
	keep = cap >= HOSTBUF_MIN_BYTES && hb.attached &&
	       pthread_equal(pthread_self(), hb.loop_thread);
	pthread_mutex_lock(&hb.lock);
	e = hostbuf_find_locked(p);
	if (keep && hb.n_kept < HOSTBUF_SLOTS && hb.bytes + cap <= HOSTBUF_MAX_BYTES &&
	    (e || hb.n < HOSTBUF_TRACKED)) {
		if (!e) {
			e = &hb.e[hb.n++];
			*e = (struct hostbuf_entry){ .p = p, .cap = cap };
		}
		e->kept = true;
		e->since = hostbuf_now_ns();
		hb.n_kept++;
		hb.bytes += cap;
		kept = true;
	} else if (e) {
		pin = e->pin;
		hostbuf_drop_locked(e);
	}
	pthread_mutex_unlock(&hb.lock);
	if (!kept) {
		hostbuf_release(p, pin);
		return;
	}
	if (!uv_is_active((uv_handle_t *)&hb.timer))
		uv_timer_start(&hb.timer, hostbuf_on_timer, hb.idle_ms, 0);
}

bool hostbuf_pin(const void *p, size_t bytes, void *(*make)(void *base, size_t cap, void *arg),
		 void *arg)
{
	const uint8_t *q = p;
	void *base = NULL, *pin;
	size_t cap = 0;

	pthread_mutex_lock(&hb.lock);
	for (unsigned i = 0; i < hb.n; i++) {
		const struct hostbuf_entry *e = &hb.e[i];
		const uint8_t *b = e->p;

		if (!e->kept && q >= b && q < b + e->cap && bytes <= (size_t)(b + e->cap - q)) {
			if (e->pin) {
				pthread_mutex_unlock(&hb.lock);
				return true;
			}
			base = e->p;
			cap = e->cap;
			break;
		}
	}
	pthread_mutex_unlock(&hb.lock);
	/* Made without the lock (milliseconds): the buffer is the caller's job's until that
	 * ends, so its entry stays. */
	if (!base || !(pin = make(base, cap, arg)))
		return false;
	pthread_mutex_lock(&hb.lock);
	struct hostbuf_entry *e = hostbuf_find_locked(base);
	if (e && !e->pin) {
		e->pin = pin;
		pin = NULL;
		hb.pins_made++;
	}
	pthread_mutex_unlock(&hb.lock);
	if (pin) {
		/* Another pin came first (or the entry went): this one is not needed. */
		if (hb.unpin)
			hb.unpin(pin);
		return e != NULL;
	}
	log_msg(LOG_DEBUG, "a host buffer of %zu bytes pinned for as long as it is kept", cap);
	return true;
}

void hostbuf_set_unpin(void (*unpin)(void *pin))
{
	pthread_mutex_lock(&hb.lock);
	hb.unpin = unpin;
	pthread_mutex_unlock(&hb.lock);
}

void hostbuf_unpin_all(void)
{
	void *pins[HOSTBUF_TRACKED];
	unsigned n = 0;

	pthread_mutex_lock(&hb.lock);
	for (unsigned i = 0; i < hb.n; i++)
		if (hb.e[i].pin) {
			pins[n++] = hb.e[i].pin;
			hb.e[i].pin = NULL;
		}
	pthread_mutex_unlock(&hb.lock);
	for (unsigned i = 0; i < n; i++)
		if (hb.unpin)
			hb.unpin(pins[i]);
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
	out->kept = hb.n_kept;
	out->kept_bytes = hb.bytes;
	out->hits = hb.hits;
	out->misses = hb.misses;
	out->pinned = 0;
	out->pinned_bytes = 0;
	for (unsigned i = 0; i < hb.n; i++)
		if (hb.e[i].pin) {
			out->pinned++;
			out->pinned_bytes += hb.e[i].cap;
		}
	out->pins_made = hb.pins_made;
	pthread_mutex_unlock(&hb.lock);
}

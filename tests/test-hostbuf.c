/* test-hostbuf.c: daemon/hostbuf.c, the large host buffers the daemon keeps between jobs.
 *
 *   reuse:    a buffer of 1 MiB or more freed on the loop thread comes back for a request
 *             it fits (up to twice the request), the smallest that fits first, its bytes
 *             as they were; smaller ones, and requests too small or too large for what is
 *             kept, are malloc's; take gives NULL where nothing fits
 *   bounds:   at most HOSTBUF_SLOTS buffers and HOSTBUF_MAX_BYTES together are kept
 *   threads:  a free on another thread than the loop's, or before attach, keeps nothing
 *   idle:     what nobody took goes back once idle (a loop run until it has, with a short
 *             idle time); detach gives back everything
 *   pins:     a buffer handed out is pinned whole once and keeps its pin while kept and
 *             reused; every pin is released once, before its buffer is freed, on each way
 *             out (another thread, the bounds, idle, detach, hostbuf_unpin_all)
 *
 * The counts come from hostbuf_stats; each test runs in a process of its own (check's fork
 * mode), so each starts with nothing kept. */
#include <check.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "loop.h"

#define MIB (1u << 20)

static uv_loop_t loop;

static void attach(void)
{
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	hostbuf_attach(&loop);
}

static void detach(void)
{
	hostbuf_detach();
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0); /* the timer's close */
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}

static struct hostbuf_stats stats(void)
{
	struct hostbuf_stats s;

	hostbuf_stats(&s);
	return s;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i += 4096)
		p[i] = (unsigned char)(seed + i / 4096);
	p[n - 1] = (unsigned char)seed;
}

static int same(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i += 4096)
		if (p[i] != (unsigned char)(seed + i / 4096))
			return 0;
	return p[n - 1] == (unsigned char)seed;
}

START_TEST(test_reuse)
{
	attach();
	unsigned char *a = hostbuf_alloc(3 * MIB), *b = hostbuf_alloc(8 * MIB);
	void *small = hostbuf_alloc(MIB / 2);
	size_t cap;

	ck_assert(a && b && small);
	fill(a, 3 * MIB, 1);
	fill(b, 8 * MIB, 2);
	hostbuf_free(a);
	hostbuf_free(b);
	hostbuf_free(small); /* under the minimum: freed */
	ck_assert_uint_eq(stats().kept, 2);
	ck_assert_uint_ge(stats().kept_bytes, 11 * MIB);
	/* Too small for what is kept (under half of the smallest) and under the minimum: new. */
	ck_assert_ptr_null(hostbuf_take(MIB / 2, &cap));
	ck_assert_ptr_null(hostbuf_take(MIB + 1, &cap));
	/* Larger than both: new. */
	ck_assert_ptr_null(hostbuf_take(9 * MIB, &cap));
	/* 2.5 MiB: the 3 MiB one, the smallest that fits, as it was left. */
	unsigned char *p = hostbuf_alloc(5 * MIB / 2);
	ck_assert_ptr_eq(p, a);
	ck_assert(same(p, 3 * MIB, 1));
	/* 4.5 MiB: the 8 MiB one (at most twice), through take with its size. */
	unsigned char *q = hostbuf_take(9 * MIB / 2, &cap);
	ck_assert_ptr_eq(q, b);
	ck_assert_uint_ge(cap, 8 * MIB);
	ck_assert(same(q, 8 * MIB, 2));
	ck_assert_uint_eq(stats().kept, 0);
	ck_assert_uint_eq(stats().kept_bytes, 0);
	ck_assert_uint_eq(stats().hits, 2);
	hostbuf_free(p);
	hostbuf_free(q);
	ck_assert_uint_eq(stats().kept, 2);
	detach();
	ck_assert_uint_eq(stats().kept, 0);
}
END_TEST

START_TEST(test_bounds)
{
	void *p[HOSTBUF_SLOTS + 2];

	attach();
	for (unsigned i = 0; i < HOSTBUF_SLOTS + 2; i++)
		ck_assert_ptr_nonnull(p[i] = hostbuf_alloc(MIB + i * 4096));
	for (unsigned i = 0; i < HOSTBUF_SLOTS + 2; i++)
		hostbuf_free(p[i]);
	ck_assert_uint_eq(stats().kept, HOSTBUF_SLOTS);
	detach();

	/* Bytes: two buffers of 60% of the bound each (never touched: address space only). */
	attach();
	size_t big = (size_t)(HOSTBUF_MAX_BYTES / 10 * 6);
	void *x = hostbuf_alloc(big), *y = hostbuf_alloc(big);
	ck_assert(x && y);
	hostbuf_free(x);
	hostbuf_free(y);
	ck_assert_uint_eq(stats().kept, 1);
	ck_assert_uint_le(stats().kept_bytes, HOSTBUF_MAX_BYTES);
	detach();
}
END_TEST

static void *free_elsewhere(void *p)
{
	hostbuf_free(p);
	return NULL;
}

START_TEST(test_threads)
{
	pthread_t t;

	hostbuf_free(malloc(2 * MIB)); /* before attach */
	ck_assert_uint_eq(stats().kept, 0);
	attach();
	void *p = hostbuf_alloc(2 * MIB);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(pthread_create(&t, NULL, free_elsewhere, p), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_uint_eq(stats().kept, 0);
	/* Allocating is any thread's: the worker takes its results' buffers so. */
	hostbuf_free(hostbuf_alloc(2 * MIB));
	ck_assert_uint_eq(stats().kept, 1);
	detach();
}
END_TEST

static uv_timer_t tick, limit;

static void on_tick(uv_timer_t *t)
{
	if (stats().kept == 0) {
		uv_timer_stop(t);
		uv_timer_stop(&limit);
	}
}

static void on_limit(uv_timer_t *t)
{
	(void)t;
	uv_timer_stop(&tick); /* the assertion below says what did not happen */
}

/* Run the loop (a timer keeps it going, checking every 5 ms) until nothing is kept, at
 * most for 30 s. The trim timer is unreferenced: alone it would let the loop end at once. */
static void run_until_nothing_kept(void)
{
	uv_timer_init(&loop, &tick);
	uv_timer_init(&loop, &limit);
	uv_timer_start(&tick, on_tick, 5, 5);
	uv_timer_start(&limit, on_limit, 30000, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_uint_eq(stats().kept, 0);
	ck_assert_uint_eq(stats().kept_bytes, 0);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_close((uv_handle_t *)&limit, NULL);
}

/* With an idle time of 20 ms, what was kept goes back while the loop runs. */
START_TEST(test_idle)
{
	hostbuf_test_idle_ms(20);
	attach();
	hostbuf_free(hostbuf_alloc(2 * MIB));
	hostbuf_free(hostbuf_alloc(4 * MIB));
	ck_assert_uint_eq(stats().kept, 2);
	run_until_nothing_kept();
	/* Kept again afterwards: the timer starts again for it. */
	hostbuf_free(hostbuf_alloc(2 * MIB));
	ck_assert_uint_eq(stats().kept, 1);
	detach();
	ck_assert_uint_eq(stats().kept, 0);
}
END_TEST

/* Pins: tokens that know their buffer. unpin checks that the buffer is still there (under
 * ASan a read of freed memory fails the test) and that each pin goes once (a second free
 * of the token does). */
struct token {
	unsigned char *base;
	size_t cap;
};
static int made, unpinned;
static bool fail_make;

static void *make(void *base, size_t cap, void *arg)
{
	struct token *t;

	ck_assert_ptr_eq(arg, &made);
	if (fail_make)
		return NULL;
	t = malloc(sizeof(*t));
	ck_assert_ptr_nonnull(t);
	*t = (struct token){ .base = base, .cap = cap };
	made++;
	return t;
}

static void unpin(void *pin)
{
	struct token *t = pin;
	volatile unsigned char first = t->base[0], last = t->base[t->cap - 1];

	(void)first;
	(void)last;
	unpinned++;
	free(t);
}

static bool pin(void *p, size_t bytes)
{
	return hostbuf_pin(p, bytes, make, &made);
}

/* A buffer hostbuf handed out is pinned whole at the first range asked for in it, and
 * keeps that pin while kept and when handed out again; what hostbuf does not track, what
 * it keeps unused, and a pin that cannot be made are not pinned; every pin is released,
 * once, before its buffer goes back to the system: freed from another thread, past the
 * bounds, idle, at detach, and all at once by hostbuf_unpin_all. */
START_TEST(test_pins)
{
	pthread_t t;
	size_t cap;

	hostbuf_test_idle_ms(20);
	hostbuf_set_unpin(unpin);
	attach();
	unsigned char *a = hostbuf_alloc(2 * MIB), *stranger = malloc(2 * MIB);
	ck_assert(a && stranger);
	ck_assert(pin(a + 100, 1000));
	ck_assert(pin(a, 2 * MIB));
	ck_assert(!pin(a + 100, malloc_usable_size(a))); /* past its end */
	ck_assert(!pin(stranger, 4096));
	ck_assert_int_eq(made, 1);
	ck_assert_uint_eq(stats().pinned, 1);
	/* Kept with its pin; not pinned while nobody uses it. */
	hostbuf_free(a);
	ck_assert_uint_eq(stats().kept, 1);
	ck_assert_uint_eq(stats().pinned, 1);
	ck_assert(!pin(a, 4096));
	/* Handed out again (take, as a frame's body): the same pin. */
	ck_assert_ptr_eq(hostbuf_take(3 * MIB / 2, &cap), a);
	ck_assert(pin(a + MIB, MIB));
	ck_assert_int_eq(made, 1);
	ck_assert_int_eq(unpinned, 0);
	/* A pin that cannot be made: not pinned, and asked again later. */
	unsigned char *b = hostbuf_alloc(3 * MIB);
	fail_make = true;
	ck_assert(!pin(b, 4096));
	fail_make = false;
	ck_assert(pin(b, 4096));
	ck_assert_int_eq(made, 2);
	/* All released at once, the buffers kept in use; pinned again on demand. */
	hostbuf_unpin_all();
	ck_assert_int_eq(unpinned, 2);
	ck_assert_uint_eq(stats().pinned, 0);
	ck_assert(pin(a, 4096));
	ck_assert(pin(b, 4096));
	ck_assert_int_eq(made, 4);
	/* Freed on another thread: unpinned, then freed. */
	ck_assert_int_eq(pthread_create(&t, NULL, free_elsewhere, b), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(unpinned, 3);
	/* Past the bounds: HOSTBUF_SLOTS kept already, so a freed one goes with its pin. */
	void *fill_up[HOSTBUF_SLOTS];
	for (unsigned i = 0; i < HOSTBUF_SLOTS; i++)
		ck_assert_ptr_nonnull(fill_up[i] = hostbuf_alloc(MIB + i * 4096));
	for (unsigned i = 0; i < HOSTBUF_SLOTS; i++)
		hostbuf_free(fill_up[i]);
	ck_assert_uint_eq(stats().kept, HOSTBUF_SLOTS);
	hostbuf_free(a);
	ck_assert_int_eq(unpinned, 4);
	ck_assert_uint_eq(stats().pinned, 0);
	/* Idle: a kept pinned buffer goes back with its pin (the loop runs until nothing is
	 * kept, as in test_idle). */
	detach();
	attach();
	unsigned char *c = hostbuf_alloc(2 * MIB);
	ck_assert(pin(c, 4096));
	hostbuf_free(c);
	run_until_nothing_kept();
	ck_assert_int_eq(unpinned, 5);
	/* Detach: what is kept goes, pins first. */
	unsigned char *d = hostbuf_alloc(2 * MIB);
	ck_assert(pin(d, 4096));
	hostbuf_free(d);
	detach();
	ck_assert_int_eq(unpinned, 6);
	ck_assert_int_eq(made, 6);
	ck_assert_uint_eq(stats().pinned, 0);
	free(stranger);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hostbuf");
	TCase *tc = tcase_create("hostbuf");
	SRunner *sr;

	tcase_add_test(tc, test_reuse);
	tcase_add_test(tc, test_bounds);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_idle);
	tcase_add_test(tc, test_pins);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

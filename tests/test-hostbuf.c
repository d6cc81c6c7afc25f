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
 *
 * The counts come from hostbuf_stats; each test runs in a process of its own (check's fork
 * mode), so each starts with nothing kept. */
#include <check.h>
#include <pthread.h>
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
	free(p); /* kept ones are malloc's: free() is right for them too */
	hostbuf_free(q);
	ck_assert_uint_eq(stats().kept, 1);
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

/* With an idle time of 20 ms, what was kept goes back while the loop runs: the loop is
 * run (a timer keeps it going, checking every 5 ms) until nothing is kept, at most for
 * 30 s. The trim timer is unreferenced: alone it would let the loop end at once. */
START_TEST(test_idle)
{
	hostbuf_test_idle_ms(20);
	attach();
	hostbuf_free(hostbuf_alloc(2 * MIB));
	hostbuf_free(hostbuf_alloc(4 * MIB));
	ck_assert_uint_eq(stats().kept, 2);
	uv_timer_init(&loop, &tick);
	uv_timer_init(&loop, &limit);
	uv_timer_start(&tick, on_tick, 5, 5);
	uv_timer_start(&limit, on_limit, 30000, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_uint_eq(stats().kept, 0);
	ck_assert_uint_eq(stats().kept_bytes, 0);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_close((uv_handle_t *)&limit, NULL);
	/* Kept again afterwards: the timer starts again for it. */
	hostbuf_free(hostbuf_alloc(2 * MIB));
	ck_assert_uint_eq(stats().kept, 1);
	detach();
	ck_assert_uint_eq(stats().kept, 0);
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
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test-copy.c: librxgemm's multi-threaded copies (client/copy.c), built in here.
 *
 *   parse:    RXGEMM_COPY_THREADS's values: 1 to 64 as given, anything else the default
 *             (the CPUs, at most 16)
 *   copies:   contiguous and strided copies (rows with gaps, batches with gaps) of sizes
 *             around the piece size, alone and three to a job, give what a byte-by-byte
 *             reference gives, and leave every byte outside the rows as it was; touching
 *             writes nothing outside its range
 *   threads:  several threads copying at once, each result checked; no copy thread before
 *             a handle holds the pool, threads while one does, none left (in
 *             /proc/self/task) once the last handle drops it; a child forked while threads
 *             run has none of them, copies right, and joins threads of its own
 *   spin:     with the pool polling (rxg__copy_spin_set): pieces down to the smaller
 *             size, copies of every kind back to back (within the window) and from
 *             several threads, each result checked; the workers asleep again once the
 *             window has passed (each waiting for work, then the process's CPU time over
 *             a sleep); a drop while they poll joins them at once and a new hold starts
 *             them again; RXGEMM_COPY_SPIN=0 turns it off
 *
 * The process runs with RXGEMM_COPY_THREADS=4 (set in main), so that the threads are
 * there on a machine of any size. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "copy.h"
#include "tasks.h"

#define PIECE RXG__COPY_PIECE_BYTES
#define SPIN_PIECE RXG__COPY_SPIN_PIECE_BYTES
#define MS 1000000ull /* ns */
#define TEST_THREADS 4

START_TEST(test_parse)
{
	ck_assert_uint_eq(rxg__copy_threads_parse(NULL, 2), 2);
	ck_assert_uint_eq(rxg__copy_threads_parse(NULL, 1), 1);
	ck_assert_uint_eq(rxg__copy_threads_parse(NULL, 0), 1);
	ck_assert_uint_eq(rxg__copy_threads_parse(NULL, 16), 16);
	ck_assert_uint_eq(rxg__copy_threads_parse(NULL, 64), 16);
	ck_assert_uint_eq(rxg__copy_threads_parse("", 6), 6);
	ck_assert_uint_eq(rxg__copy_threads_parse("1", 16), 1);
	ck_assert_uint_eq(rxg__copy_threads_parse("3", 16), 3);
	ck_assert_uint_eq(rxg__copy_threads_parse("12", 2), 12);
	ck_assert_uint_eq(rxg__copy_threads_parse("64", 2), 64);
	/* Out of range or not a number: the default, as for RXGEMM_STAGE_BYTES. */
	static const char *const bad[] = { "0", "65", "1000000", "-1", "+2", " 2", "2 ", "2x",
					   "x", "off", "0x4", "99999999999999999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(rxg__copy_threads_parse(bad[i], 5) == 5, "'%s' gave %u", bad[i],
			      rxg__copy_threads_parse(bad[i], 5));
	ck_assert_uint_eq(rxg__copy_threads(), TEST_THREADS);
}
END_TEST

/* A byte pattern that differs between src, dst and position. */
static void fill(unsigned char *p, size_t n, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		x = x * 1664525u + 1013904223u;
		p[i] = (unsigned char)(x >> 24);
	}
}

/* What c does, one byte at a time, onto ref (a copy of dst's block). */
static void reference(const struct rxg__copy *c, unsigned char *ref)
{
	for (size_t b = 0; b < c->batch; b++)
		for (size_t o = 0; o < c->outer; o++)
			for (size_t x = 0; x < c->inner_bytes; x++) {
				size_t off = b * c->stride_bytes + o * c->ld_bytes + x;

				ref[off] = ((const unsigned char *)c->src)[off];
			}
}

/* The bytes a copy spans, from its first to past its last. */
static size_t span(const struct rxg__copy *c)
{
	if (!c->batch || !c->outer || !c->inner_bytes)
		return 0;
	return (c->batch - 1) * c->stride_bytes + (c->outer - 1) * c->ld_bytes + c->inner_bytes;
}

/* Run the geometries g (n of them, one job) from fresh random blocks with a margin on
 * each side, and compare every byte with the reference. */
static void check_job(const struct rxg__copy *g, unsigned n, unsigned seed, const char *what)
{
	struct rxg__copy c[RXG__COPY_MAX];
	unsigned char *src[RXG__COPY_MAX], *dst[RXG__COPY_MAX], *ref[RXG__COPY_MAX];
	size_t len[RXG__COPY_MAX];
	const size_t margin = 4096 + 17;

	for (unsigned i = 0; i < n; i++) {
		len[i] = span(&g[i]) + 2 * margin;
		src[i] = malloc(len[i]);
		dst[i] = malloc(len[i]);
		ref[i] = malloc(len[i]);
		ck_assert(src[i] && dst[i] && ref[i]);
		fill(src[i], len[i], seed + 2 * i);
		fill(dst[i], len[i], seed + 2 * i + 1);
		memcpy(ref[i], dst[i], len[i]);
		c[i] = g[i];
		c[i].src = src[i] + margin;
		c[i].dst = dst[i] + margin;
		reference(&c[i], ref[i] + margin);
	}
	rxg__copy_run(c, n);
	for (unsigned i = 0; i < n; i++) {
		if (memcmp(dst[i], ref[i], len[i]) != 0) {
			size_t at = 0;

			while (dst[i][at] == ref[i][at])
				at++;
			ck_abort_msg("%s: copy %u of %u differs from the reference at byte %zu of %zu "
				     "(inner %zu, outer %zu, ld %zu, batch %zu, stride %zu)",
				     what, i, n, at, len[i], g[i].inner_bytes, g[i].outer, g[i].ld_bytes,
				     g[i].batch, g[i].stride_bytes);
		}
		free(src[i]);
		free(dst[i]);
		free(ref[i]);
	}
}

/* A flat copy with streaming stores (uncached, as stage.c's into a staging buffer) of
 * bytes from src + so to dst + dof: exactly memcpy's result, nothing outside touched,
 * whatever the alignment of either side. */
static void check_uncached(size_t bytes, size_t so, size_t dof, unsigned seed)
{
	size_t len = bytes + 128;
	unsigned char *src = malloc(len), *dst = malloc(len), *ref = malloc(len);
	struct rxg__copy c;

	ck_assert(src && dst && ref);
	fill(src, len, seed);
	fill(dst, len, seed + 1);
	memcpy(ref, dst, len);
	memcpy(ref + dof, src + so, bytes);
	c = rxg__copy_flat(dst + dof, src + so, bytes);
	c.uncached = true;
	rxg__copy_run(&c, 1);
	ck_assert_msg(memcmp(dst, ref, len) == 0, "uncached copy of %zu bytes, source at +%zu, "
		      "destination at +%zu, differs from memcpy's", bytes, so, dof);
	free(src), free(dst), free(ref);
}

static struct rxg__copy geom(size_t inner, size_t outer, size_t ld, size_t batch, size_t stride)
{
	return (struct rxg__copy){ .inner_bytes = inner, .outer = outer, .ld_bytes = ld,
				   .batch = batch, .stride_bytes = stride };
}

/* Contiguous runs: the sizes where a copy becomes two pieces and more, and odd ones. */
static const size_t flat_sizes[] = { 0, 1, 4, 4 * 1023 + 3, PIECE - 1, PIECE, PIECE + 1,
				     2 * PIECE - 4, 2 * PIECE - 1, 2 * PIECE, 2 * PIECE + 1,
				     2 * PIECE + 63, 3 * PIECE + 4097, 7 * PIECE + 12345,
				     9 * PIECE - 3, 33 * PIECE + 5 };

/* Run the flat and strided cases; with a handle held (threads) or not (the caller alone). */
static void all_cases(unsigned seed)
{
	char what[96];

	for (size_t i = 0; i < sizeof(flat_sizes) / sizeof(flat_sizes[0]); i++) {
		size_t s = flat_sizes[i];
		struct rxg__copy g = geom(s, 1, s, 1, s);

		snprintf(what, sizeof(what), "flat %zu bytes", s);
		check_job(&g, 1, seed + (unsigned)i, what);
	}
	/* C as gemm.c copies it: m x n floats of a stored matrix with ldc padding (gaps kept),
	 * a batch with gaps between matrices, and a batch packed tight (one run). */
	struct rxg__copy strided[] = {
		geom(4 * 1001, 999, 4 * 1003, 1, 0),          /* 4 MB in rows, gaps of 8 B */
		geom(4 * 517, 1031, 4 * 600, 3, 4 * 600 * 1031 + 4 * 77), /* batch, gaps */
		geom(4 * 256, 1024, 4 * 256, 3, 4 * 256 * 1024),          /* tight: one run */
		geom(4 * 300, 7, 4 * 301, 1, 0),               /* small: one piece */
		geom(4 * 262144 + 4, 3, 4 * 262144 + 8, 1, 0), /* rows just over a piece */
		geom(4 * 130, 2017, 4 * 131, 5, 4 * 131 * 2017), /* batch, gaps between rows only */
	};
	for (size_t i = 0; i < sizeof(strided) / sizeof(strided[0]); i++) {
		snprintf(what, sizeof(what), "strided case %zu", i);
		check_job(&strided[i], 1, seed + 100 + (unsigned)i, what);
	}
	/* A, B and C in one job, as stage.c posts them. */
	struct rxg__copy three[] = { geom(3 * PIECE + 4, 1, 0, 1, 0), geom(PIECE / 2 + 8, 1, 0, 1, 0),
				     geom(5 * PIECE - 12, 1, 0, 1, 0) };
	for (size_t i = 0; i < 3; i++)
		three[i].ld_bytes = three[i].stride_bytes = three[i].inner_bytes;
	check_job(three, 3, seed + 200, "three flat copies");
	struct rxg__copy mixed[] = { strided[1], geom(PIECE + 3, 1, PIECE + 3, 1, PIECE + 3),
				     strided[0] };
	check_job(mixed, 3, seed + 300, "strided and flat in one job");
	/* Streaming stores: short copies (plain memcpy), a head to align, a tail past the last
	 * 64 bytes, and copies of several pieces. */
	static const size_t stream_sizes[] = { 1, 255, 256, 257, 4096 + 67, PIECE + 13,
					       3 * PIECE + 100 };
	static const size_t offs[][2] = { { 0, 0 }, { 1, 0 }, { 0, 1 }, { 7, 15 }, { 16, 9 } };
	for (size_t i = 0; i < sizeof(stream_sizes) / sizeof(stream_sizes[0]); i++)
		for (size_t j = 0; j < sizeof(offs) / sizeof(offs[0]); j++)
			check_uncached(stream_sizes[i], offs[j][0], offs[j][1],
				       seed + 400 + (unsigned)(i * 8 + j));
}

START_TEST(test_copies_alone)
{
	/* No handle: the caller copies every piece itself. */
	all_cases(1);
	ck_assert_uint_eq(rxg__copy_running(), 0);
}
END_TEST


START_TEST(test_copies_threaded)
{
	int tasks0 = tasks_count();

	rxg__copy_hold();
	/* Threads start at the first copy large enough to split, not before. */
	ck_assert_uint_eq(rxg__copy_running(), 0);
	all_cases(2);
	ck_assert_uint_eq(rxg__copy_running(), TEST_THREADS - 1);
	ck_assert_int_eq(tasks_count(), tasks0 + TEST_THREADS - 1);
	/* A second handle and the first one closing: the threads stay for the second. */
	rxg__copy_hold();
	rxg__copy_drop();
	ck_assert_uint_eq(rxg__copy_running(), TEST_THREADS - 1);
	rxg__copy_drop();
	ck_assert_uint_eq(rxg__copy_running(), 0);
	ck_assert_int_eq(tasks_wait(tasks0), tasks0);
	/* Opened again: started again, and joined again. */
	rxg__copy_hold();
	all_cases(3);
	ck_assert_uint_eq(rxg__copy_running(), TEST_THREADS - 1);
	rxg__copy_drop();
	ck_assert_int_eq(tasks_wait(tasks0), tasks0);
	/* An extra drop (none held) does nothing. */
	rxg__copy_drop();
	ck_assert_uint_eq(rxg__copy_running(), 0);
}
END_TEST

static void *copier(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;

	for (int i = 0; i < 2; i++)
		all_cases(seed * 1000 + (unsigned)i);
	return NULL;
}

/* Callers on several threads at once share the copy threads; every result is checked. */
START_TEST(test_concurrent)
{
	pthread_t t[5];
	int tasks0 = tasks_count();

	rxg__copy_hold();
	for (unsigned i = 0; i < 5; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, copier, (void *)(uintptr_t)(i + 10)), 0);
	for (unsigned i = 0; i < 5; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	rxg__copy_drop();
	ck_assert_int_eq(tasks_wait(tasks0), tasks0);
}
END_TEST

/* A page-touching pass writes only inside its range. */
START_TEST(test_touch)
{
	size_t len = 5 * PIECE + 3 * 4096 + 9, margin = 8192 + 5;
	unsigned char *p = malloc(len + 2 * margin), *want = malloc(len + 2 * margin);

	ck_assert(p && want);
	rxg__copy_hold();
	fill(p, len + 2 * margin, 7);
	memcpy(want, p, len + 2 * margin);
	struct rxg__copy t = geom(len, 1, len, 1, len);
	t.dst = p + margin;
	t.src = NULL;
	rxg__copy_run(&t, 1);
	ck_assert(memcmp(p, want, margin) == 0);
	ck_assert(memcmp(p + margin + len, want + margin + len, margin) == 0);
	rxg__copy_drop();
	free(p);
	free(want);
}
END_TEST

/* A child forked while the copy threads run has none of them: its copies are right, it
 * starts threads of its own when it copies, and joins them when it drops its hold. */
START_TEST(test_fork)
{
	rxg__copy_hold();
	all_cases(4);
	ck_assert_uint_eq(rxg__copy_running(), TEST_THREADS - 1);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int bad = rxg__copy_running() != 0 || tasks_count() != 1;

		all_cases(5); /* a failed check exits non-zero */
		rxg__copy_drop();
		bad |= (rxg__copy_running() != 0 || tasks_wait(1) != 1) << 1;
		_exit(bad ? 10 + bad : 0);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "the child: status 0x%x (11: threads right after fork, 12: after its drop)",
		      status);
	all_cases(6);
	ck_assert_uint_eq(rxg__copy_running(), TEST_THREADS - 1);
	rxg__copy_drop();
}
END_TEST

static struct rxg__copy flat(size_t bytes)
{
	return geom(bytes, 1, bytes, 1, bytes);
}

/* Copies one right after the other, as a staged GEMM's (A and B, then C): each is posted
 * while the workers still poll after the one before, and the caller polls for its pieces.
 * Each copy has a region of its own in one destination, from a source shifted by a byte
 * more each round, so that a piece left out (or copied twice, from the wrong round) shows
 * in the comparison with a reference built by plain memcpy. The jobs of two copies are
 * A and B as stage.c posts them. */
static void check_back_to_back(unsigned rounds, unsigned seed)
{
	struct rxg__copy g[] = {
		flat(4096 + 3),
		flat(2 * SPIN_PIECE - 1), flat(2 * SPIN_PIECE), /* one job */
		flat(2 * SPIN_PIECE + 1),
		flat(PIECE),
		flat(4 * PIECE), flat(4 * PIECE), /* one job: A and B of a 1024^3 GEMM */
		flat(4 * PIECE),                  /* C */
		flat(9 * PIECE + 13),
		geom(4 * 1001, 999, 4 * 1003, 1, 0),              /* 4 MB in rows, gaps of 8 B */
		geom(4 * 130, 2017, 4 * 131, 5, 4 * 131 * 2017), /* batch, gaps between rows */
		flat(3 * SPIN_PIECE + 65),
	};
	static const unsigned job_copies[] = { 1, 2, 1, 1, 2, 1, 1, 1, 1, 1 };
	const unsigned n = sizeof(g) / sizeof(g[0]);
	const size_t margin = 4096 + 17, shifts = 61;
	size_t off[sizeof(g) / sizeof(g[0])], len = margin;
	unsigned char *src, *dst, *ref;

	for (unsigned i = 0; i < n; i++) {
		off[i] = len;
		len += span(&g[i]) + margin;
		g[i].uncached = i % 3 == 0; /* streaming stores, as into a staging buffer */
	}
	src = malloc(len + shifts);
	dst = malloc(len);
	ref = malloc(len);
	ck_assert(src && dst && ref);
	fill(src, len + shifts, seed);
	fill(dst, len, seed + 1);
	memcpy(ref, dst, len);
	for (unsigned r = 0; r < rounds; r++) {
		const unsigned char *from = src + r % shifts;
		struct rxg__copy c[sizeof(g) / sizeof(g[0])];
		unsigned i = 0;

		for (unsigned k = 0; k < n; k++) {
			c[k] = g[k];
			c[k].src = from + off[k];
			c[k].dst = dst + off[k];
		}
		for (unsigned j = 0; i < n; i += job_copies[j++])
			rxg__copy_run(&c[i], job_copies[j]);
		for (unsigned k = 0; k < n; k++) {
			const struct rxg__copy *q = &g[k];

			for (size_t b = 0; b < q->batch; b++)
				for (size_t o = 0; o < q->outer; o++) {
					size_t at = off[k] + b * q->stride_bytes + o * q->ld_bytes;

					memcpy(ref + at, from + at, q->inner_bytes);
				}
		}
		if (memcmp(dst, ref, len) != 0) {
			size_t at = 0;
			unsigned k = 0;

			while (dst[at] == ref[at])
				at++;
			while (k + 1 < n && off[k + 1] <= at)
				k++;
			ck_abort_msg("round %u: byte %zu differs from the reference (copy %u, %zu "
				     "bytes into its region)", r, at, k, at - off[k]);
		}
	}
	free(src), free(dst), free(ref);
}

static void *spin_copier(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;

	check_back_to_back(4, seed);
	all_cases(seed);
	return NULL;
}

/* With the pool polling: a copy of two small pieces goes to the threads (it does not with
 * the pool asleep), and copies of every size and shape are right, one after the other and
 * from several threads at once. */
START_TEST(test_spin_copies)
{
	struct rxg__copy two = flat(2 * SPIN_PIECE);
	int tasks0 = tasks_count();
	pthread_t t[3];

	rxg__copy_hold();
	check_job(&two, 1, 50, "two small pieces, the pool asleep");
	ck_assert_uint_eq(rxg__copy_running(), 0);
	rxg__copy_spin_set(1 * MS);
	check_job(&two, 1, 51, "two small pieces, the pool polling");
	ck_assert_uint_eq(rxg__copy_running(), TEST_THREADS - 1);
	check_back_to_back(24, 52);
	all_cases(53);
	for (uintptr_t i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, spin_copier, (void *)(60 + i)), 0);
	for (unsigned i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	rxg__copy_spin_set(0);
	check_back_to_back(2, 54);
	rxg__copy_drop();
	ck_assert_uint_eq(rxg__copy_running(), 0);
	ck_assert_int_eq(tasks_wait(tasks0), tasks0);
}
END_TEST

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	ck_assert_int_eq(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts), 0);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u),
			       .tv_nsec = (long)(ns % 1000000000u) };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The workers poll for a bounded time after a copy, then sleep: all of them are asleep a
 * while after the window has passed, and the process then spends (nearly) no CPU while its
 * main thread sleeps. The wait is for the event (each worker on pool.work), not a time: a
 * worker that a loaded machine kept off its core polls its whole window once it runs. Three
 * workers polling would spend up to 900 ms of CPU over the 300 ms; asleep, none. */
START_TEST(test_spin_sleeps)
{
	struct rxg__copy c = flat(4 * PIECE);
	uint64_t t0, cpu;
	unsigned asleep = 0;

	rxg__copy_hold();
	rxg__copy_spin_set(20 * MS);
	check_job(&c, 1, 70, "a copy, the pool polling");
	ck_assert_uint_eq(rxg__copy_running(), TEST_THREADS - 1);
	/* 30000 naps of 1 ms or more: 30 s at least, 1500 windows. */
	for (int i = 0; i < 30000 && (asleep = rxg__copy_sleeping()) < TEST_THREADS - 1; i++)
		sleep_ns(1 * MS);
	ck_assert_msg(asleep == TEST_THREADS - 1, "%u of %u copy threads asleep 30 s after a "
		      "window of 20 ms: the others still poll", asleep, TEST_THREADS - 1);
	t0 = cpu_ns();
	sleep_ns(300 * MS);
	cpu = cpu_ns() - t0;
	ck_assert_msg(cpu < 50 * MS, "%.1f ms of CPU over a sleep of 300 ms with the copy threads "
		      "asleep: something woke them", (double)cpu / MS);
	rxg__copy_spin_set(0);
	rxg__copy_drop();
}
END_TEST

/* The last drop while the workers poll joins them, without waiting out the window: with
 * a window of an hour, a join that waited for it would run into the test's timeout. A
 * hold after it starts a new crew, which copies right. */
START_TEST(test_spin_drop)
{
	struct rxg__copy c[] = { flat(4 * PIECE), geom(4 * 1001, 999, 4 * 1003, 1, 0) };
	int tasks0 = tasks_count();

	rxg__copy_hold();
	rxg__copy_spin_set(50 * MS);
	check_job(c, 1, 80, "before the drop");
	ck_assert_uint_eq(rxg__copy_running(), TEST_THREADS - 1);
	rxg__copy_drop();
	ck_assert_uint_eq(rxg__copy_running(), 0);
	ck_assert_int_eq(tasks_wait(tasks0), tasks0);
	rxg__copy_hold();
	rxg__copy_spin_set(3600000 * MS);
	check_job(c, 2, 81, "after a new hold");
	ck_assert_uint_eq(rxg__copy_running(), TEST_THREADS - 1);
	check_job(&c[1], 1, 82, "after a new hold, again");
	rxg__copy_drop();
	ck_assert_uint_eq(rxg__copy_running(), 0);
	ck_assert_int_eq(tasks_wait(tasks0), tasks0);
	rxg__copy_spin_set(0);
	/* Held again with the pool asleep: as before any polling. */
	rxg__copy_hold();
	check_job(c, 2, 83, "the pool asleep again");
	rxg__copy_drop();
	ck_assert_int_eq(tasks_wait(tasks0), tasks0);
}
END_TEST

/* RXGEMM_COPY_SPIN=0: the settings are 0, so a copy of two small pieces stays the caller's.
 * The variable is read once per process, at the first copy: only a test in a process of
 * its own (check's default, fork mode) can set it first. */
START_TEST(test_spin_env_off)
{
	const char *mode = getenv("CK_FORK");
	struct rxg__copy two = flat(2 * SPIN_PIECE);

	if (mode && strcmp(mode, "no") == 0)
		return;
	setenv("RXGEMM_COPY_SPIN", "0", 1);
	rxg__copy_hold();
	rxg__copy_spin_set(1 * MS);
	check_job(&two, 1, 90, "two small pieces, RXGEMM_COPY_SPIN=0");
	ck_assert_uint_eq(rxg__copy_running(), 0);
	rxg__copy_spin_set(0);
	rxg__copy_drop();
	unsetenv("RXGEMM_COPY_SPIN");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("copy");
	TCase *tc = tcase_create("copy");
	SRunner *sr;

	setenv("RXGEMM_COPY_THREADS", "4", 1);
	if (!getenv("CK_DEFAULT_TIMEOUT"))
		tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_parse);
	tcase_add_test(tc, test_copies_alone);
	tcase_add_test(tc, test_copies_threaded);
	tcase_add_test(tc, test_concurrent);
	tcase_add_test(tc, test_touch);
	tcase_add_test(tc, test_fork);
	tcase_add_test(tc, test_spin_copies);
	tcase_add_test(tc, test_spin_sleeps);
	tcase_add_test(tc, test_spin_drop);
	tcase_add_test(tc, test_spin_env_off);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

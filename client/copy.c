/* copy.c: librxgemm's copies of large operands, spread over a few threads of its own.
 *
 * A GEMM of plain host arrays is staged: A and B are copied into a shared buffer and C back
 * out of it (stage.c, gemm.c). One thread's memcpy moves about 10 GB/s, and at 8192^3 the
 * three copies are 768 MB: longer than the job itself on a GPU. Several threads copying
 * disjoint slices come much closer to the memory's bandwidth, and fault a new buffer's
 * pages in parallel too.
 *
 * The threads (RXGEMM_COPY_THREADS in all, the caller included; by default as many as
 * the CPUs the process may run on, at most COPY_DEFAULT_MAX_THREADS) are started at the
 * first copy large enough to split while a handle is open, and joined when the last
 * handle closes or the library is unloaded: a program with no handle open has none.
 *
 * A copy is cut into pieces of at least RXG__COPY_PIECE_BYTES. The caller posts its job on
 * the pool's list and takes pieces itself like any worker, then waits only for the pieces
 * that workers took: a job never waits for a thread that is not copying for it, so it
 * finishes even when no worker runs (not started, stopping, or forked away). Several
 * threads may post jobs at once (several handles, or several threads of one); workers serve
 * the oldest job with pieces left.
 *
 * Where the handles poll their socket for replies (transport.c's RXGEMM_SPIN_US: by
 * default where the daemon busy-polls), the pool polls too (rxg__copy_spin_set). On the
 * H200 machine a sleeping thread runs 30 to 100 us after it is signalled, and a 1024^3
 * job's copies are 4 MiB each, 50 to 100 us of copying: workers that wake late leave the
 * caller copying alone, and the caller's own wake-up at the last piece adds as much again.
 * So an idle worker polls for the next job (A's copy is followed by B's at once, and C's
 * by the next job's A), and a caller for the pieces that workers took, for at most the
 * spin window before they sleep as without it; and pieces go down to
 * RXG__COPY_SPIN_PIECE_BYTES, so that a 4 MiB copy is spread over the threads that poll.
 * The CPU it costs is bounded in threads and in time: at most COPY_SPINNERS workers poll
 * at once, each for at most the window after the last job it saw posted (one whose window
 * ran out sleeps until it has copied again), beside a caller that is about to wait for its
 * GEMM anyway. A spin of 0 (a handle that does not poll, or RXGEMM_COPY_SPIN=0) is the
 * plain sleep, and the 1 MiB pieces.
 *
 * Lock: pool.lock, a leaf, never held while copying or polling. What pollers read without
 * it is atomic: pool.posts, a crew's stop and a job's done (each written under the lock
 * too). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "copy.h"

/* By default no more threads than this, however many CPUs: on the 16-core H200 machine
 * (one socket) the staging copies of a 4096^3 or 8192^3 job still ran faster with 16
 * threads than with 8 (64 against 40 GB/s at 4096), and a larger machine's rest of the
 * CPUs stays the program's. RXGEMM_COPY_THREADS may ask for more. */
#define COPY_DEFAULT_MAX_THREADS 16u
/* Pages are at least this long: writing one byte this far apart faults in every page. */
#define COPY_TOUCH_STEP 4096u
/* Pieces per thread: a thread that the scheduler holds back leaves little undone. */
#define COPY_PIECES_PER_THREAD 2u
/* At most this many workers poll at once. With the caller they are 8 threads, which take
 * COPY_PIECES_PER_THREAD each of a 1024^3 job's 4 MiB copy in RXG__COPY_SPIN_PIECE_BYTES
 * pieces; more would burn CPUs (half the H200 machine's 16 already) for pieces that are
 * all taken, while the workers that sleep still join the larger copies, where a wake-up
 * costs little beside the copy. */
#define COPY_SPINNERS 7u

/* One copy of a job, cut into pieces of per_piece units: bytes of one contiguous run
 * (flat), or else whole rows. */
struct copy_plan {
	struct rxg__copy c;
	bool flat;
	size_t units;
	size_t per_piece;
	size_t pieces;
};

struct copy_job {
	struct copy_job *next;
	struct copy_plan plans[RXG__COPY_MAX];
	unsigned n_plans;
	size_t pieces;          /* of all plans */
	size_t next_piece;      /* the next one nobody took; under pool.lock */
	atomic_size_t done;     /* pieces finished; added to under pool.lock, polled without */
};

/* The threads started together; stop tells them to end (set under pool.lock, polled
 * without). */
struct copy_crew {
	atomic_bool stop;
	unsigned n;
	pthread_t threads[RXG__COPY_MAX_THREADS];
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work;    /* a job was posted, or a crew must stop */
	pthread_cond_t done;    /* a job's last piece is finished */
	struct copy_job *jobs;  /* posted, oldest first */
	struct copy_crew *crew; /* NULL: no thread running */
	unsigned users;         /* open handles */
	unsigned spinners;      /* workers polling for a job now */
	unsigned sleepers;      /* workers waiting on work now */
	atomic_ulong posts;     /* jobs posted so far: a poller's sign of a new one */
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER,
	   .work = PTHREAD_COND_INITIALIZER,
	   .done = PTHREAD_COND_INITIALIZER };

static unsigned copy_threads_setting;
static bool copy_stream_on = true; /* RXGEMM_COPY_STREAM=0: off (for comparison) */
static bool copy_spin_on = true;   /* RXGEMM_COPY_SPIN=0: off (for comparison) */
static _Atomic uint64_t copy_spin_ns; /* rxg__copy_spin_set's, 0 where copy_spin_on is not */
static pthread_once_t copy_once = PTHREAD_ONCE_INIT;
static pthread_once_t copy_atfork_once = PTHREAD_ONCE_INIT;

unsigned rxg__copy_threads_parse(const char *v, unsigned cpus)
{
	unsigned dflt = cpus < 1 ? 1 : cpus > COPY_DEFAULT_MAX_THREADS ? COPY_DEFAULT_MAX_THREADS
									 : cpus;
	unsigned long n;
	char *end;

	if (!v || !*v)
		return dflt;
	errno = 0;
	n = strtoul(v, &end, 10);
	/* Anything else keeps the default, as RXGEMM_STAGE_BYTES does: a typo must not turn the
	 * threads off silently (nor start thousands). */
	if (errno || *end != '\0' || v[0] < '0' || v[0] > '9' || n < 1 ||
	    n > RXG__COPY_MAX_THREADS)
		return dflt;
	return (unsigned)n;
}

static void copy_read_env(void)
{
	const char *v;
	cpu_set_t set;
	long cpus = -1;

	/* The CPUs this process may run on (a container's or taskset's share), not the
	 * machine's. */
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		cpus = CPU_COUNT(&set);
	if (cpus < 1)
		cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpus < 1)
		cpus = 1;
	v = getenv("RXGEMM_COPY_STREAM");
	copy_stream_on = !(v && strcmp(v, "0") == 0);
	v = getenv("RXGEMM_COPY_SPIN");
	copy_spin_on = !(v && strcmp(v, "0") == 0);
	copy_threads_setting = rxg__copy_threads_parse(getenv("RXGEMM_COPY_THREADS"),
						       cpus > RXG__COPY_MAX_THREADS
							       ? RXG__COPY_MAX_THREADS
							       : (unsigned)cpus);
}

unsigned rxg__copy_threads(void)
{
	pthread_once(&copy_once, copy_read_env);
	return copy_threads_setting;
}

void rxg__copy_spin_set(uint64_t ns)
{
	pthread_once(&copy_once, copy_read_env);
	atomic_store_explicit(&copy_spin_ns, copy_spin_on ? ns : 0, memory_order_relaxed);
}

/* A spin-wait hint: less power, and more of the core for a hyperthread sibling. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static size_t copy_bytes(const struct rxg__copy *c)
{
	return c->inner_bytes * c->outer * c->batch; /* within one array: cannot overflow */
}

/* Cut c into pieces of about target bytes (at least one unit each). */
static void plan_init(struct copy_plan *p, const struct rxg__copy *c, size_t target)
{
	size_t rows = c->outer * c->batch, bytes = copy_bytes(c);

	p->c = *c;
	/* Rows that follow each other with no gap are one run of bytes. */
	p->flat = rows <= 1 || (c->ld_bytes == c->inner_bytes &&
				(c->batch <= 1 || c->stride_bytes == c->ld_bytes * c->outer));
	p->units = p->flat ? bytes : rows;
	p->pieces = 0;
	p->per_piece = 1;
	if (!p->units)
		return;
	size_t pieces = (bytes + target - 1) / target;
	if (pieces > p->units)
		pieces = p->units;
	p->per_piece = (p->units + pieces - 1) / pieces;
	if (p->flat) /* slices start a cache line apart from each other */
		p->per_piece = (p->per_piece + 63) / 64 * 64;
	p->pieces = (p->units + p->per_piece - 1) / p->per_piece;
}

#if defined(__SSE2__)
#include <emmintrin.h>

/* memcpy with streaming stores: the copy into a staging buffer is read next by the
 * device's DMA, not by a CPU, and lines a CPU still holds dirty in its own cache are
 * slower for the DMA to read (a staged 1024^3 job's upload on the H200 machine: 0.25 to
 * 0.38 ms, against 0.16 from a buffer written long before); the stores also skip reading
 * the destination's lines first. */
static void copy_stream(unsigned char *dst, const unsigned char *src, size_t n)
{
	size_t head = (16 - ((uintptr_t)dst & 15)) & 15;

	if (!copy_stream_on || n < 256) {
		memcpy(dst, src, n);
		return;
	}
	memcpy(dst, src, head);
	dst += head, src += head, n -= head;
	for (; n >= 64; n -= 64, dst += 64, src += 64) {
		__m128i a = _mm_loadu_si128((const __m128i *)src);
		__m128i b = _mm_loadu_si128((const __m128i *)(src + 16));
		__m128i c = _mm_loadu_si128((const __m128i *)(src + 32));
		__m128i d = _mm_loadu_si128((const __m128i *)(src + 48));

		_mm_stream_si128((__m128i *)dst, a);
		_mm_stream_si128((__m128i *)(dst + 16), b);
		_mm_stream_si128((__m128i *)(dst + 32), c);
		_mm_stream_si128((__m128i *)(dst + 48), d);
	}
	memcpy(dst, src, n);
	/* Streaming stores are weakly ordered: they are all visible before the job that
	 * says the copy is done (pool.lock's release, or the request sent after). */
	_mm_sfence();
}
#else
static void copy_stream(unsigned char *dst, const unsigned char *src, size_t n)
{
	memcpy(dst, src, n);
}
#endif

static void touch(void *dst, size_t bytes)
{
	volatile unsigned char *v = dst;

	if (!bytes)
		return;
	for (size_t x = 0; x < bytes; x += COPY_TOUCH_STEP)
		v[x] = 0;
	v[bytes - 1] = 0;
}

/* Copy (or touch) piece k of job. */
static void piece_run(const struct copy_job *job, size_t k)
{
	const struct copy_plan *p = job->plans;

	while (k >= p->pieces) {
		k -= p->pieces;
		p++;
	}
	size_t u0 = k * p->per_piece, u1 = u0 + p->per_piece;
	const struct rxg__copy *c = &p->c;
	unsigned char *dst = c->dst;
	const unsigned char *src = c->src;

	if (u1 > p->units)
		u1 = p->units;
	if (p->flat) {
		if (src && c->uncached)
			copy_stream(dst + u0, src + u0, u1 - u0);
		else if (src)
			memcpy(dst + u0, src + u0, u1 - u0);
		else
			touch(dst + u0, u1 - u0);
		return;
	}
	for (size_t r = u0; r < u1; r++) {
		size_t off = r / c->outer * c->stride_bytes + r % c->outer * c->ld_bytes;

		if (src)
			memcpy(dst + off, src + off, c->inner_bytes);
		else
			touch(dst + off, c->inner_bytes);
	}
}

/* The oldest job with a piece nobody took, or NULL. Under pool.lock. */
static struct copy_job *job_with_work(void)
{
	for (struct copy_job *j = pool.jobs; j; j = j->next)
		if (j->next_piece < j->pieces)
			return j;
	return NULL;
}

/* Poll, without pool.lock, until a job is posted after the seen'th, crew must stop, or ns
 * have passed. Returns false in the last case only. The clock is read only every 64 turns:
 * it costs more than a turn. */
static bool worker_poll(const struct copy_crew *crew, unsigned long seen, uint64_t ns)
{
	uint64_t until = rxg__mono_ns() + ns;

	for (unsigned i = 1;; i++) {
		if (atomic_load_explicit(&pool.posts, memory_order_relaxed) != seen ||
		    atomic_load_explicit(&crew->stop, memory_order_relaxed))
			return true;
		if (i % 64 == 0 && rxg__mono_ns() >= until)
			return false;
		cpu_relax();
	}
}

/* A worker with no job to serve, under pool.lock: poll for the next one (the lock released)
 * where the pool polls, *may_poll is set and fewer than COPY_SPINNERS workers poll; else
 * sleep on pool.work. */
static void worker_wait(const struct copy_crew *crew, bool *may_poll)
{
	uint64_t spin_ns = atomic_load_explicit(&copy_spin_ns, memory_order_relaxed);
	unsigned long seen;

	if (!*may_poll || !spin_ns || pool.spinners >= COPY_SPINNERS) {
		pool.sleepers++;
		pthread_cond_wait(&pool.work, &pool.lock);
		pool.sleepers--;
		return;
	}
	/* Read under the lock, with no job found: a job posted after that changes it. */
	seen = atomic_load_explicit(&pool.posts, memory_order_relaxed);
	pool.spinners++;
	pthread_mutex_unlock(&pool.lock);
	/* A worker whose window ran out sleeps until it has copied again, so that an idle pool
	 * polls once after its last copy; one that saw a job posted but no piece left in it
	 * may poll again, for the job after. */
	*may_poll = worker_poll(crew, seen, spin_ns);
	pthread_mutex_lock(&pool.lock);
	pool.spinners--;
}

static void *copy_worker(void *arg)
{
	struct copy_crew *crew = arg;
	struct copy_job *job;
	/* The crew starts at a copy, and the next one may follow it as after any. */
	bool may_poll = true;

	pthread_mutex_lock(&pool.lock);
	for (;;) {
		bool stop;

		while (!(stop = atomic_load_explicit(&crew->stop, memory_order_relaxed)) &&
		       !(job = job_with_work()))
			worker_wait(crew, &may_poll);
		if (stop)
			break; /* the pieces left are their callers' to copy */
		size_t k = job->next_piece++, pieces = job->pieces;

		pthread_mutex_unlock(&pool.lock);
		piece_run(job, k);
		pthread_mutex_lock(&pool.lock);
		may_poll = true;
		/* The job's caller may return (and its job go) once done reaches pieces: job is
		 * not touched after this (the caller also takes pool.lock before it returns).
		 * Release: a caller that polls done sees the piece's bytes. */
		if (atomic_fetch_add_explicit(&job->done, 1, memory_order_release) + 1 == pieces)
			pthread_cond_broadcast(&pool.done);
	}
	pthread_mutex_unlock(&pool.lock);
	return NULL;
}

/* A job of pieces was posted, under pool.lock: wake as many sleeping workers as it has
 * pieces beyond the caller's first and the polling workers' share, not all of them: on
 * the H200 machine a 1024^3 job's 4 MiB copies have 4 to 16 pieces, and 15 workers woken
 * for each would take CPUs from the few that copy (and from the daemon beside them). A
 * job that the polling workers and the caller cover with COPY_PIECES_PER_THREAD pieces
 * each wakes none: more threads than CPUs free stalled such a copy by a scheduler slice
 * (the second operand of 1024^3 jobs 1.1-1.3 ms late in 5 of 27, beside a daemon that
 * polled). */
static void copy_wake(size_t pieces)
{
	size_t want = pieces - 1;

	if (pool.spinners && pieces <= COPY_PIECES_PER_THREAD * ((size_t)pool.spinners + 1))
		return;
	want = want > pool.spinners ? want - pool.spinners : 0;
	if (want >= pool.sleepers) {
		pthread_cond_broadcast(&pool.work);
		return;
	}
	while (want--)
		pthread_cond_signal(&pool.work);
}

/* Poll, without pool.lock, until every piece of job is done or ns have passed. */
static void done_poll(const struct copy_job *job, uint64_t ns)
{
	uint64_t until = rxg__mono_ns() + ns;

	for (unsigned i = 1; atomic_load_explicit(&job->done, memory_order_acquire) < job->pieces;
	     i++) {
		if (i % 64 == 0 && rxg__mono_ns() >= until)
			return;
		cpu_relax();
	}
}

/* fork() copies only the forking thread: the child has no workers and no other thread's
 * jobs, and takes pool.lock in the state prepare left it. */
static void atfork_prepare(void)
{
	pthread_mutex_lock(&pool.lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&pool.lock);
}

static void atfork_child(void)
{
	free(pool.crew); /* its threads are the parent's; nothing to join here */
	pool.crew = NULL;
	pool.jobs = NULL;
	pool.spinners = 0; /* they polled without the lock that prepare took */
	pool.sleepers = 0;
	pthread_cond_init(&pool.work, NULL);
	pthread_cond_init(&pool.done, NULL);
	pthread_mutex_unlock(&pool.lock);
}

static void atfork_register(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* Start n workers (as many as can be), with every signal blocked: the program's signals are
 * for its own threads. Under pool.lock. */
static void crew_start(unsigned n)
{
	struct copy_crew *crew;
	sigset_t all, old;

	pthread_once(&copy_atfork_once, atfork_register);
	if (!(crew = calloc(1, sizeof(*crew))))
		return; /* the callers copy alone */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (crew->n < n && pthread_create(&crew->threads[crew->n], NULL, copy_worker, crew) == 0)
		crew->n++;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!crew->n) {
		free(crew);
		return;
	}
	pool.crew = crew;
}

/* Take the running crew, if any, out of the pool and tell its threads to end. Under
 * pool.lock. */
static struct copy_crew *crew_detach(void)
{
	struct copy_crew *crew = pool.crew;

	pool.crew = NULL;
	if (crew) {
		/* Workers that poll see it within a turn: the join waits for no window. */
		atomic_store_explicit(&crew->stop, true, memory_order_relaxed);
		pthread_cond_broadcast(&pool.work);
	}
	return crew;
}

/* Wait for a detached crew's threads and free it. Not under pool.lock. */
static void crew_join(struct copy_crew *crew)
{
	if (!crew)
		return;
	for (unsigned i = 0; i < crew->n; i++)
		pthread_join(crew->threads[i], NULL);
	free(crew);
}

void rxg__copy_run(const struct rxg__copy *copies, unsigned n)
{
	unsigned threads = rxg__copy_threads();
	/* Read once: the piece size and the poll below go together. */
	uint64_t spin_ns = atomic_load_explicit(&copy_spin_ns, memory_order_relaxed);
	size_t piece_bytes = spin_ns ? RXG__COPY_SPIN_PIECE_BYTES : RXG__COPY_PIECE_BYTES;
	struct copy_job job = { .n_plans = n };
	size_t bytes = 0, target;

	for (unsigned i = 0; i < n; i++)
		bytes += copy_bytes(&copies[i]);
	target = bytes / ((size_t)threads * COPY_PIECES_PER_THREAD);
	if (target < piece_bytes)
		target = piece_bytes;
	for (unsigned i = 0; i < n; i++) {
		plan_init(&job.plans[i], &copies[i], target);
		job.pieces += job.plans[i].pieces;
	}
	if (threads > 1 && bytes >= 2 * piece_bytes && job.pieces > 1) {
		pthread_mutex_lock(&pool.lock);
		if (!pool.crew && pool.users)
			crew_start(threads - 1);
		if (pool.crew) {
			struct copy_job **tail = &pool.jobs;

			while (*tail)
				tail = &(*tail)->next;
			*tail = &job;
			atomic_fetch_add_explicit(&pool.posts, 1, memory_order_relaxed);
			copy_wake(job.pieces);
			while (job.next_piece < job.pieces) {
				size_t k = job.next_piece++;

				pthread_mutex_unlock(&pool.lock);
				piece_run(&job, k);
				pthread_mutex_lock(&pool.lock);
				atomic_fetch_add_explicit(&job.done, 1, memory_order_relaxed);
			}
			/* The workers' last pieces are often a few us from done: a wake-up on
			 * pool.done would cost more. */
			if (spin_ns && atomic_load_explicit(&job.done, memory_order_relaxed) <
					       job.pieces) {
				pthread_mutex_unlock(&pool.lock);
				done_poll(&job, spin_ns);
				pthread_mutex_lock(&pool.lock);
			}
			while (atomic_load_explicit(&job.done, memory_order_relaxed) < job.pieces)
				pthread_cond_wait(&pool.done, &pool.lock);
			for (tail = &pool.jobs; *tail != &job; tail = &(*tail)->next)
				;
			*tail = job.next;
			pthread_mutex_unlock(&pool.lock);
			return;
		}
		pthread_mutex_unlock(&pool.lock);
	}
	for (size_t k = 0; k < job.pieces; k++)
		piece_run(&job, k);
}

void rxg__copy_hold(void)
{
	pthread_mutex_lock(&pool.lock);
	pool.users++;
	pthread_mutex_unlock(&pool.lock);
}

void rxg__copy_drop(void)
{
	struct copy_crew *crew = NULL;

	pthread_mutex_lock(&pool.lock);
	if (pool.users && --pool.users == 0)
		crew = crew_detach();
	pthread_mutex_unlock(&pool.lock);
	crew_join(crew);
}

unsigned rxg__copy_running(void)
{
	unsigned n;

	pthread_mutex_lock(&pool.lock);
	n = pool.crew ? pool.crew->n : 0;
	pthread_mutex_unlock(&pool.lock);
	return n;
}

unsigned rxg__copy_sleeping(void)
{
	unsigned n;

	pthread_mutex_lock(&pool.lock);
	n = pool.sleepers;
	pthread_mutex_unlock(&pool.lock);
	return n;
}

/* Unloaded (dlclose, or the process exits) with a handle still open: no thread of ours may
 * outlive the code it runs. */
__attribute__((destructor)) static void copy_unload(void)
{
	struct copy_crew *crew;

	pthread_mutex_lock(&pool.lock);
	crew = crew_detach();
	pthread_mutex_unlock(&pool.lock);
	crew_join(crew);
}

/* copy.h: librxgemm's internals (not installed): copies of large operands spread over a
 * few threads of the library's own (copy.c), for the staging of host arrays (stage.c) and
 * the copy of C back out of a staging buffer or a reply (gemm.c). Depends on nothing else
 * of the library. */
#ifndef RXGEMM_CLIENT_COPY_H
#define RXGEMM_CLIENT_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* One copy: batch matrices of outer rows of inner_bytes each, laid out alike on both
 * sides, ld_bytes from one row to the next and stride_bytes from one matrix to the next.
 * Only the rows are copied: what lies between them is left as it is. src NULL: no copy,
 * dst's pages are only written once each, so that they are faulted in (a new buffer). */
struct rxg__copy {
	void *dst;
	const void *src;
	size_t inner_bytes;
	size_t outer;
	size_t ld_bytes;
	size_t batch;
	size_t stride_bytes;
	/* dst is read next by the device, not by this process: written with streaming
	 * stores where the CPU has them (copy.c), past the caches. */
	bool uncached;
};

/* At most this many copies per rxg__copy_run. */
#define RXG__COPY_MAX 4
/* Pieces are at least this long (in bytes copied): a job of less than two of them is
 * copied by the calling thread alone. */
#define RXG__COPY_PIECE_BYTES (1u << 20)
/* The same while the copy threads poll (rxg__copy_spin_set): a thread that polls takes a
 * piece at once, where a sleeping one is woken too late for it, so a 1024^3 job's 4 MiB
 * copies are worth cutting finer. */
#define RXG__COPY_SPIN_PIECE_BYTES (1u << 18)
/* RXGEMM_COPY_THREADS is at most this. */
#define RXG__COPY_MAX_THREADS 64

/* CLOCK_MONOTONIC in ns, for the library's bounded polls (copy.c, transport.c). */
static inline uint64_t rxg__mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A contiguous copy of bytes from src to dst. */
static inline struct rxg__copy rxg__copy_flat(void *dst, const void *src, size_t bytes)
{
	return (struct rxg__copy){ .dst = dst, .src = src, .inner_bytes = bytes, .outer = 1,
				   .ld_bytes = bytes, .batch = 1, .stride_bytes = bytes };
}

/* Do the n (at most RXG__COPY_MAX) copies, with the library's copy threads when they are
 * large, and return when all are done. The calling thread copies too, so this never waits
 * for a thread that is not working on its own copies. Copies may overlap nothing. */
void rxg__copy_run(const struct rxg__copy *copies, unsigned n);

/* A handle opens (hold) or closes (drop): the copy threads are started at the first large
 * copy while a handle is open, and joined when the last one closes (or at unload). */
void rxg__copy_hold(void);
void rxg__copy_drop(void);

/* How long, in ns, idle copy threads poll for the next copy and a caller polls for the
 * pieces that threads took, before either sleeps; 0 (the default): they sleep at once.
 * The pool is the process's: each handle sets its own spin at connect and the last one
 * wins. RXGEMM_COPY_SPIN=0 (read once) makes every setting 0. */
void rxg__copy_spin_set(uint64_t ns);

/* How many threads copy (the caller included): RXGEMM_COPY_THREADS, read once. */
unsigned rxg__copy_threads(void);
/* The parse of RXGEMM_COPY_THREADS's value v (NULL: unset) for a process allowed cpus
 * CPUs: 1 to RXG__COPY_MAX_THREADS as given, else the default (cpus, at most 16). */
unsigned rxg__copy_threads_parse(const char *v, unsigned cpus);
/* The copy threads running now, and those of them asleep waiting for work (for tests). */
unsigned rxg__copy_running(void);
unsigned rxg__copy_sleeping(void);

#endif

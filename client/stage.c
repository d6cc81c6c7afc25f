/* stage.c: librxgemm's staging of a GEMM's host arrays through shared memory.
 *
 * A GEMM whose A, B and C are plain arrays would carry them in its request and reply
 * frames, which protobuf copies on both sides and the socket moves in small steps: on a
 * GPU machine 45 to 66 times slower than the same job through a shared buffer. Above a
 * threshold the library therefore copies the arrays into a shared buffer of its own, sends
 * references, and copies C back out of it: one memcpy each way instead of four copies and a
 * socket. The buffers are kept (a few per handle, RXG__STAGE_KEEP) so that the daemon's
 * registration and pinning of them, paid at a buffer's first job, is not paid again.
 *
 * RXGEMM_STAGE_BYTES sets the threshold in bytes of A, B and C together (default
 * STAGE_DEFAULT_BYTES; "off" sends every array inline, as before). The copies of large
 * arrays are spread over several threads (copy.c, RXGEMM_COPY_THREADS), and a new buffer's
 * pages are faulted in the same way before its first use. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "copy.h"
#include "transport.h"

/* Below this a frame's copies cost less than the buffer's bookkeeping: at 256 KiB of
 * operands (a 128^3 product) the request is one socket buffer's worth. */
#define STAGE_DEFAULT_BYTES (256u << 10)
/* Buffers grow in these steps, so that jobs of nearby sizes share one. */
#define STAGE_ROUND_BYTES (1u << 20)
/* Where B and C start: a cache line apart from what precedes them. */
#define STAGE_ALIGN 64u

static size_t stage_threshold;     /* 0: staging off */
static pthread_once_t stage_once = PTHREAD_ONCE_INIT;

static void stage_read_env(void)
{
	const char *v = getenv("RXGEMM_STAGE_BYTES");
	char *end;
	unsigned long long n;

	stage_threshold = STAGE_DEFAULT_BYTES;
	if (!v || !*v)
		return;
	if (!strcmp(v, "off")) {
		stage_threshold = 0;
		return;
	}
	errno = 0;
	n = strtoull(v, &end, 10);
	/* Anything else keeps the default: a typo must not turn staging off silently. */
	if (!errno && *end == '\0' && n > 0 && n <= SIZE_MAX)
		stage_threshold = (size_t)n;
}

static size_t stage_align(size_t n)
{
	return (n + STAGE_ALIGN - 1) / STAGE_ALIGN * STAGE_ALIGN;
}

/* A kept buffer of at least bytes (the smallest such), taken out of the pool, or NULL. */
static struct rxg_buffer *stage_take(struct rxg__stage_pool *pool, size_t bytes)
{
	struct rxg_buffer *buf = NULL;
	unsigned best = 0;

	pthread_mutex_lock(&pool->lock);
	for (unsigned i = 0; i < pool->n_kept; i++) {
		size_t size = rxg_buffer_size(pool->kept[i]);

		if (size >= bytes && (!buf || size < rxg_buffer_size(buf))) {
			buf = pool->kept[i];
			best = i;
		}
	}
	if (buf)
		pool->kept[best] = pool->kept[--pool->n_kept];
	pthread_mutex_unlock(&pool->lock);
	return buf;
}

/* Keep buf in the pool if there is room: true, else false (the caller disposes of it). */
static bool stage_keep(struct rxg__stage_pool *pool, struct rxg_buffer *buf)
{
	bool kept = false;

	pthread_mutex_lock(&pool->lock);
	pool->drop = rxg__buffer_drop;
	if (pool->n_kept < RXG__STAGE_KEEP) {
		pool->kept[pool->n_kept++] = buf;
		kept = true;
	}
	pthread_mutex_unlock(&pool->lock);
	return kept;
}

void rxg__stage_put(rxg_client *c, struct rxg_buffer *buf)
{
	if (buf && !stage_keep(rxg__client_stage(c), buf))
		rxg_buffer_free(buf); /* unregistered; on a lost connection just unmapped */
}

void rxg__stage_release(struct rxg_buffer *buf)
{
	if (buf && !stage_keep(rxg__client_stage(rxg__buffer_client(buf)), buf))
		rxg__buffer_drop(buf);
}

/* The ready words (after C, a cache line each): see rxg__stage_late_run. */
static void stage_late_init(struct rxg__stage_late *late, struct rxg_buffer *buf, size_t off_w,
			    struct rxg__copy *copies, bool row_major)
{
	uint8_t *base = rxg_buffer_ptr(buf);

	for (unsigned i = 0; i < 2; i++) {
		Rxgemm__ReadyWord *r = &late->ready[i];
		uint64_t *word = (uint64_t *)(void *)(base + off_w + i * STAGE_ALIGN);
		/* Not the value the word holds now (the last job's): this job's is new. */
		uint64_t v = __atomic_load_n(word, __ATOMIC_RELAXED) + 1;

		rxgemm__ready_word__init(r);
		r->region_id = rxg__buffer_region(buf);
		r->offset = off_w + i * STAGE_ALIGN;
		r->value = v ? v : 1;
		late->word[i] = word;
		late->copies[i] = copies[i];
	}
	/* The daemon computes a row-major product as the column-major C^T = B^T A^T and
	 * uploads its first operand, B, first: B is copied first, so that its upload
	 * overlaps A's copy rather than waiting for both. */
	late->first = row_major ? 1 : 0;
	late->n = 2;
}

void rxg__stage_late_run(struct rxg__stage_late *late)
{
	/* Each operand, then its word with release order: the daemon, which reads the word
	 * with acquire order, then finds every byte of the operand there. The copy threads'
	 * stores are ordered before this by copy.c's fence and lock. The job's request is
	 * already out, so nothing here may fail. A copy stalled for longer than the daemon's
	 * wait (2 s) gets the job a STATUS_TIMEOUT reply; the buffer is this job's until it is
	 * finished. */
	for (unsigned j = 0; j < late->n; j++) {
		unsigned i = j ? 1 - late->first : late->first;

		rxg__copy_run(&late->copies[i], 1);
		__atomic_store_n(late->word[i], late->ready[i].value, __ATOMIC_RELEASE);
	}
	late->n = 0;
}

int rxg__stage_gemm(rxg_client *c, const struct rxg_gemm_args *args, size_t a_floats,
		    size_t b_floats, size_t c_floats, struct rxg_gemm_args *staged,
		    struct rxg_buffer **stage, size_t *c_offset, struct rxg__stage_late *late)
{
	struct rxg__stage_pool *pool = rxg__client_stage(c);
	bool c_in = args->beta != 0.0f;
	size_t a_bytes = a_floats * sizeof(float), b_bytes = b_floats * sizeof(float);
	size_t c_bytes = c_floats * sizeof(float); /* each < SIZE_MAX / 2: stored_init */
	size_t off_b, off_c, off_w, need;
	struct rxg_buffer *buf;

	*stage = NULL;
	late->n = 0;
	pthread_once(&stage_once, stage_read_env);
	/* Only all-host jobs: one with a buffer or a tensor has chosen its own path. */
	if (!stage_threshold || args->a_buf || args->b_buf || args->c_buf || args->c_out_buf ||
	    args->a_tensor || args->b_tensor || args->c_tensor || args->c_out_tensor)
		return RXG_OK;
	off_b = stage_align(a_bytes);
	off_c = stage_align(off_b + b_bytes);
	if (off_c < a_bytes || off_c + c_bytes < off_c)
		return RXG_OK; /* cannot be: the frame would not fit either */
	off_w = stage_align(off_c + c_bytes);
	need = off_w + 2 * STAGE_ALIGN;
	if (a_bytes + b_bytes + c_bytes < stage_threshold)
		return RXG_OK;
	bool fresh = false;
	if (!(buf = stage_take(pool, need))) {
		size_t size = (need + STAGE_ROUND_BYTES - 1) / STAGE_ROUND_BYTES * STAGE_ROUND_BYTES;

		/* Refused (the daemon's limits on shared memory) or out of memory: the arrays go
		 * inline as they always could; the message of the failure is left in errmsg
		 * only until the next call. */
		if (size < need || rxg_buffer_create(c, size, &buf) != RXG_OK)
			return RXG_OK;
		fresh = true;
	}
	uint8_t *base = rxg_buffer_ptr(buf);
	struct rxg__copy copies[3];
	unsigned n_copies = 0;
	if (fresh) {
		/* Fault the new buffer's pages in with several threads now, rather than one at a
		 * time in the daemon's copy of C into it (or a later, larger job's copies). */
		copies[0] = rxg__copy_flat(base, NULL, rxg_buffer_size(buf));
		rxg__copy_run(copies, 1);
	}
	/* With several threads when large (copy.c). */
	copies[n_copies++] = rxg__copy_flat(base, args->a, a_bytes);
	copies[n_copies++] = rxg__copy_flat(base + off_b, args->b, b_bytes);
	if (c_in)
		copies[n_copies++] = rxg__copy_flat(base + off_c, args->c, c_bytes);
	for (unsigned i = 0; i < n_copies; i++)
		copies[i].uncached = true; /* the daemon's upload reads them, no CPU */
	if (rxg__client_ready_words(c)) {
		/* A and B after the request (rxg__stage_late_run); C, which beta reads, now. */
		stage_late_init(late, buf, off_w, copies, args->layout == RXG_ROW_MAJOR);
		if (c_in)
			rxg__copy_run(&copies[2], 1);
	} else {
		rxg__copy_run(copies, n_copies);
	}
	*staged = *args;
	staged->a_buf = buf;
	staged->a_offset = 0;
	staged->b_buf = buf;
	staged->b_offset = off_b;
	if (c_in) {
		/* C is read from the buffer and the result replaces it there. */
		staged->c_buf = buf;
		staged->c_offset = off_c;
	} else {
		staged->c_out_buf = buf;
		staged->c_out_offset = off_c;
	}
	*stage = buf;
	*c_offset = off_c;
	return RXG_OK;
}

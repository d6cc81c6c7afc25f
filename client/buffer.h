/* buffer.h: librxgemm's internals (not installed) for operands that live outside the
 * request: shared-memory buffers (buffer.c) and device tensors (tensor.c), as gemm.c and
 * nas.c put them into their requests. Both files sit on transport.h, never under it. */
#ifndef RXGEMM_CLIENT_BUFFER_H
#define RXGEMM_CLIENT_BUFFER_H

#include <stddef.h>
#include <stdint.h>

#include "copy.h"
#include "rxgemm.h"
#include "rxgemm.pb-c.h"

/* buffer.c: check that args names each operand (a, b, c) either inline or in a buffer. */
int rxg__gemm_operands(rxg_client *c, const struct rxg_gemm_args *args);
/* buffer.c: a reference to floats floats at offset in buf, which must be c's. RXG_OK or
 * RXG_EINVAL. */
int rxg__region_ref(rxg_client *c, const char *name, const struct rxg_buffer *buf,
		    size_t offset, size_t floats, Rxgemm__RegionRef *ref);
/* buffer.c: replace g's inline operands by references to args' buffers (refs holds the
 * four references: a, b, c, c_out), each a_floats, b_floats, c_floats long. Sets
 * *c_in_buffer when the result goes to a buffer (the reply then carries no C). */
int rxg__gemm_buffers(rxg_client *c, const struct rxg_gemm_args *args, Rxgemm__GemmRequest *g,
		      Rxgemm__RegionRef refs[4], size_t a_floats, size_t b_floats,
		      size_t c_floats, int *c_in_buffer);
/* buffer.c: a buffer's registration, for tensor.c. */
uint32_t rxg__buffer_region(const struct rxg_buffer *buf);
/* buffer.c: unmap and free buf without unregistering it (the connection is closing, or
 * is already lost). */
void rxg__buffer_drop(struct rxg_buffer *buf);

/* stage.c: a staged GEMM's copies of A and B that follow its request (ready words, where
 * rxg__client_ready_words): ready holds the request's a_ready and b_ready; after the
 * request is sent, rxg__stage_late_run copies each operand and then sets its word. n 0:
 * none (the copies were made before). */
struct rxg__stage_late {
	struct rxg__copy copies[2]; /* A's, B's */
	uint64_t *word[2];
	Rxgemm__ReadyWord ready[2];
	unsigned first;             /* the operand the daemon reads first: 1 (B) if row-major */
	unsigned n;
};
/* stage.c: when args gives A, B and C as host arrays (no buffer, no tensor) of at least
 * the staging threshold together, copy them into a staging buffer (A and B later, when
 * late->n is set) and fill *staged with args pointing there instead; *stage is then the
 * buffer (the caller's until rxg__stage_put) and *c_offset where C's result will be.
 * *stage NULL: not staged (below the threshold, staging off, or no buffer to be had: the
 * operands go inline). */
int rxg__stage_gemm(rxg_client *c, const struct rxg_gemm_args *args, size_t a_floats,
		    size_t b_floats, size_t c_floats, struct rxg_gemm_args *staged,
		    struct rxg_buffer **stage, size_t *c_offset, struct rxg__stage_late *late);
/* stage.c: late's copies, each followed by its word (after the request went out). */
void rxg__stage_late_run(struct rxg__stage_late *late);
/* stage.c: give a staging buffer back to the pool (or unregister it when the pool is
 * full). Makes a round trip in that case: call it with no lock of the handle held. */
void rxg__stage_put(rxg_client *c, struct rxg_buffer *buf);
/* stage.c: the same with no round trip, for a job freed unfinished (its handle closing or
 * its request never sent): kept, or when the pool is full unmapped with its registration
 * left to end with the connection. */
void rxg__stage_release(struct rxg_buffer *buf);
/* buffer.c: the handle a buffer is registered on. */
rxg_client *rxg__buffer_client(const struct rxg_buffer *buf);

/* tensor.c: a device tensor of a handle. */
struct rxg_tensor {
	rxg_client *client;
	uint32_t id;        /* the daemon's number for it on that connection */
	size_t floats;
};
/* tensor.c: put args' tensors into g (ids; their operands' inline data dropped), after
 * rxg__gemm_buffers. Sets *c_elsewhere when the result stays in a tensor. */
int rxg__gemm_tensors(rxg_client *c, const struct rxg_gemm_args *args, Rxgemm__GemmRequest *g,
		      int *c_elsewhere);
/* tensor.c: put args' weights and input tensors into q after checking them. */
int rxg__nas_tensors(rxg_client *c, const struct rxg_nas_args *args,
		     Rxgemm__NasEvalRequest *q);

#endif

/* buffer.h: librxgemm's internals shared by client.c and buffer.c (not installed). */
#ifndef RXGEMM_CLIENT_BUFFER_H
#define RXGEMM_CLIENT_BUFFER_H

#include <stddef.h>

#include "rxgemm.h"
#include "rxgemm.pb-c.h"

/* client.c: record why the current call on c fails (rxg_errmsg) and return code. */
int rxg__fail(rxg_client *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* client.c: one round trip for req under c's lock, with fd (>= 0) attached to the frame
 * (SCM_RIGHTS; the caller keeps its own descriptor). Like round_trip otherwise: on RXG_OK
 * the caller owns *out. */
int rxg__request_fd(rxg_client *c, Rxgemm__Request *req, int fd, Rxgemm__Reply__BodyCase want,
		    Rxgemm__Reply **out);

/* buffer.c: check that args names each operand (a, b, c) either inline or in a buffer. */
int rxg__gemm_operands(rxg_client *c, const struct rxg_gemm_args *args);
/* buffer.c: replace g's inline operands by references to args' buffers (refs holds the
 * four references: a, b, c, c_out), each a_floats, b_floats, c_floats long. Sets
 * *c_in_buffer when the result goes to a buffer (the reply then carries no C). Call with
 * c's lock held. */
/* A reference to floats floats at offset in buf, which must be c's. RXG_OK or RXG_EINVAL. */
int rxg__region_ref(rxg_client *c, const char *name, const struct rxg_buffer *buf,
		    size_t offset, size_t floats, Rxgemm__RegionRef *ref);
int rxg__gemm_buffers(rxg_client *c, const struct rxg_gemm_args *args, Rxgemm__GemmRequest *g,
		      Rxgemm__RegionRef refs[4], size_t a_floats, size_t b_floats,
		      size_t c_floats, int *c_in_buffer);

/* client.c: one round trip for req accepting a reply of up to reply_max_bytes; like
 * rxg__request_fd otherwise. */
int rxg__request(rxg_client *c, Rxgemm__Request *req, size_t reply_max_bytes,
		 Rxgemm__Reply__BodyCase want, Rxgemm__Reply **out);

/* client.c: send a TensorRead of tensor_id (floats long) as a job that rxg_wait and
 * rxg_wait_any finish by copying its floats into out. RXG_OK with *id set. */
int rxg__submit_tensor_read(rxg_client *c, uint32_t tensor_id, size_t floats, float *out,
			    uint64_t *id);

/* tensor.c: a device tensor of a handle. */
struct rxg_tensor {
	rxg_client *client;
	uint32_t id;        /* the daemon's number for it on that connection */
	size_t floats;
};
/* buffer.h's view of a buffer's registration, for tensor.c. */
uint32_t rxg__buffer_region(const struct rxg_buffer *buf);
/* tensor.c: put args' tensors into g (ids; their operands' inline data dropped), after
 * rxg__gemm_buffers. Sets *c_elsewhere when the result stays in a tensor. */
/* tensor.c: put args' weights and input tensors into q after checking them. */
int rxg__nas_tensors(rxg_client *c, const struct rxg_nas_args *args,
		     Rxgemm__NasEvalRequest *q);
int rxg__gemm_tensors(rxg_client *c, const struct rxg_gemm_args *args, Rxgemm__GemmRequest *g,
		      int *c_elsewhere);

#endif

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

#endif

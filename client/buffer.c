/* buffer.c: librxgemm's shared-memory buffers (see rxgemm.h, "Shared memory").
 *
 * A buffer is a memfd that both sides map: the client writes operands into it and reads
 * results from it, the daemon reads and writes it in place, and no matrix travels through
 * the socket. The memfd is sealed against shrinking and growing before it is handed over,
 * which is what lets the daemon map it without fear of SIGBUS; its descriptor goes to the
 * daemon once (SCM_RIGHTS) and is closed here right after, the mapping keeps the memory. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buffer.h"
#include "transport.h"

struct rxg_buffer {
	rxg_client *client;  /* the connection it is registered on */
	uint32_t region_id;  /* the daemon's number for it there */
	void *ptr;
	size_t bytes;
};

RXG_EXPORT int rxg_buffer_create(rxg_client *c, size_t bytes, struct rxg_buffer **out)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__RegisterRegion msg = RXGEMM__REGISTER_REGION__INIT;
	Rxgemm__Reply *reply = NULL;
	struct rxg_buffer *buf = NULL;
	void *ptr = MAP_FAILED;
	int fd = -1, rc;

	if (out)
		*out = NULL;
	if (!c)
		return RXG_EINVAL;
	if (!out)
		return rxg__fail(c, RXG_EINVAL, "rxg_buffer_create: out is NULL");
	if (bytes == 0 || bytes > (size_t)INT64_MAX)
		return rxg__fail(c, RXG_EINVAL, "rxg_buffer_create: %zu bytes is not a size a "
					       "buffer can have",
				 bytes);
	/* MFD_CLOEXEC: a program of ours that forks and execs must not hand it on. */
	fd = memfd_create("rxgemm-buffer", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0 ||
	    (ptr = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		rc = rxg__fail(c, RXG_ENOMEM, "cannot create %zu bytes of shared memory: %s", bytes,
			       strerror(errno));
		goto out;
	}
	if (!(buf = calloc(1, sizeof(*buf)))) {
		rc = rxg__fail(c, RXG_ENOMEM, "out of memory");
		goto out;
	}
	msg.size = bytes;
	req.body_case = RXGEMM__REQUEST__BODY_REGISTER_REGION;
	req.register_region = &msg;
	rc = rxg__request_fd(c, &req, fd, RXGEMM__REPLY__BODY_REGION_REGISTERED, &reply);
	if (rc != RXG_OK)
		goto out;
	buf->client = c;
	buf->region_id = reply->region_registered->region_id;
	buf->ptr = ptr;
	buf->bytes = bytes;
	*out = buf;
	buf = NULL;
	ptr = MAP_FAILED;
out:
	if (reply)
		rxgemm__reply__free_unpacked(reply, NULL);
	if (ptr != MAP_FAILED)
		munmap(ptr, bytes);
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

RXG_EXPORT void *rxg_buffer_ptr(const struct rxg_buffer *buf)
{
	return buf ? buf->ptr : NULL;
}

RXG_EXPORT size_t rxg_buffer_size(const struct rxg_buffer *buf)
{
	return buf ? buf->bytes : 0;
}

RXG_EXPORT int rxg_buffer_free(struct rxg_buffer *buf)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__UnregisterRegion msg = RXGEMM__UNREGISTER_REGION__INIT;
	Rxgemm__Reply *reply = NULL;
	int rc;

	if (!buf)
		return RXG_OK;
	msg.region_id = buf->region_id;
	req.body_case = RXGEMM__REQUEST__BODY_UNREGISTER_REGION;
	req.unregister_region = &msg;
	rc = rxg__request_fd(buf->client, &req, -1, RXGEMM__REPLY__BODY_REGION_UNREGISTERED,
			     &reply);
	if (reply)
		rxgemm__reply__free_unpacked(reply, NULL);
	/* Jobs still use it: the caller may try again once they are answered. Any other
	 * failure (a lost connection) ends the registration on the daemon's side anyway. */
	if (rc == RXG_EREGION)
		return rc;
	munmap(buf->ptr, buf->bytes);
	free(buf);
	return rc;
}

int rxg__gemm_operands(rxg_client *c, const struct rxg_gemm_args *args)
{
	const struct rxg_buffer *bufs[4] = { args->a_buf, args->b_buf, args->c_buf,
					     args->c_out_buf };
	static const char *const names[4] = { "a_buf", "b_buf", "c_buf", "c_out_buf" };

	const struct rxg_tensor *tensors[4] = { args->a_tensor, args->b_tensor, args->c_tensor,
						args->c_out_tensor };
	static const char *const tnames[4] = { "a_tensor", "b_tensor", "c_tensor",
					       "c_out_tensor" };

	if (!args->a && !args->a_buf && !args->a_tensor)
		return rxg__fail(c, RXG_EINVAL, "a is NULL and neither a_buf nor a_tensor is set");
	if (!args->b && !args->b_buf && !args->b_tensor)
		return rxg__fail(c, RXG_EINVAL, "b is NULL and neither b_buf nor b_tensor is set");
	if (!args->c && !args->c_buf && !args->c_out_buf && !args->c_tensor && !args->c_out_tensor)
		return rxg__fail(c, RXG_EINVAL, "c is NULL and none of c_buf, c_out_buf, c_tensor "
						"and c_out_tensor is set: the result has nowhere to go");
	if (!args->c && !args->c_buf && !args->c_tensor && args->beta != 0.0f)
		return rxg__fail(c, RXG_EINVAL, "beta is %g, so C is read, but c is NULL and neither "
						"c_buf nor c_tensor is set",
				 (double)args->beta);
	for (int i = 0; i < 4; i++) {
		if (tensors[i] && tensors[i]->client != c)
			return rxg__fail(c, RXG_EINVAL, "%s belongs to another connection",
					 tnames[i]);
		if (tensors[i] && bufs[i])
			return rxg__fail(c, RXG_EINVAL, "%s and %s are both set; give each operand "
							"one place",
					 tnames[i], names[i]);
	}
	for (int i = 0; i < 4; i++)
		if (bufs[i] && bufs[i]->client != c)
			return rxg__fail(c, RXG_EINVAL, "%s belongs to another connection",
					 names[i]);
	return RXG_OK;
}

/* Point ref at floats floats of buf from offset bytes, after checking that they fit. */
static int ref_fill(rxg_client *c, const char *name, const struct rxg_buffer *buf,
		    size_t offset, size_t floats, Rxgemm__RegionRef *ref)
{
	size_t bytes = floats * sizeof(float); /* floats < SIZE_MAX / 8: see stored_init */

	if (offset % sizeof(float))
		return rxg__fail(c, RXG_EINVAL, "the offset of %s in its buffer (%zu) is not a "
						"multiple of 4",
				 name, offset);
	if (offset > buf->bytes || bytes > buf->bytes - offset)
		return rxg__fail(c, RXG_EINVAL, "%s (%zu bytes at offset %zu) does not fit its "
						"buffer of %zu bytes",
				 name, bytes, offset, buf->bytes);
	rxgemm__region_ref__init(ref);
	ref->region_id = buf->region_id;
	ref->offset = offset;
	ref->length = bytes;
	return RXG_OK;
}

int rxg__region_ref(rxg_client *c, const char *name, const struct rxg_buffer *buf,
		    size_t offset, size_t floats, Rxgemm__RegionRef *ref)
{
	if (buf->client != c)
		return rxg__fail(c, RXG_EINVAL, "%s belongs to another connection", name);
	return ref_fill(c, name, buf, offset, floats, ref);
}

int rxg__gemm_buffers(rxg_client *c, const struct rxg_gemm_args *args, Rxgemm__GemmRequest *g,
		      Rxgemm__RegionRef refs[4], size_t a_floats, size_t b_floats,
		      size_t c_floats, int *c_in_buffer)
{
	const struct rxg_buffer *dest = args->c_out_buf ? args->c_out_buf : args->c_buf;
	size_t dest_offset = args->c_out_buf ? args->c_out_offset : args->c_offset;
	int rc;

	*c_in_buffer = dest != NULL;
	if (args->a_buf) {
		if ((rc = ref_fill(c, "A", args->a_buf, args->a_offset, a_floats, &refs[0])))
			return rc;
		g->a_region = &refs[0];
		g->a.data = NULL;
		g->a.len = 0;
	}
	if (args->b_buf) {
		if ((rc = ref_fill(c, "B", args->b_buf, args->b_offset, b_floats, &refs[1])))
			return rc;
		g->b_region = &refs[1];
		g->b.data = NULL;
		g->b.len = 0;
	}
	if (args->c_buf) {
		/* C goes up when beta reads it, and also when the result replaces it in place:
		 * what lies between its columns (ldc padding) then comes back unchanged. */
		bool in_place = dest == args->c_buf && dest_offset == args->c_offset;

		g->c.data = NULL;
		g->c.len = 0;
		if (args->beta != 0.0f || in_place) {
			if ((rc = ref_fill(c, "C", args->c_buf, args->c_offset, c_floats, &refs[2])))
				return rc;
			g->c_region = &refs[2];
		}
	}
	if (dest) {
		if ((rc = ref_fill(c, "the result C", dest, dest_offset, c_floats, &refs[3])))
			return rc;
		g->c_out = &refs[3];
	}
	return RXG_OK;
}

uint32_t rxg__buffer_region(const struct rxg_buffer *buf)
{
	return buf->region_id;
}

rxg_client *rxg__buffer_client(const struct rxg_buffer *buf)
{
	return buf->client;
}

void rxg__buffer_drop(struct rxg_buffer *buf)
{
	munmap(buf->ptr, buf->bytes);
	free(buf);
}

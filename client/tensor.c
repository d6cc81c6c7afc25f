/* tensor.c: librxgemm's device tensors (see rxgemm.h, "Device tensors").
 *
 * A tensor handle is only the daemon's id for it on this connection and its size: the
 * data lives in the daemon's device memory. Every call is one round trip. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "transport.h"

/* What a tensor reply carries besides its floats. */
#define TENSOR_REPLY_OVERHEAD_BYTES (64u << 10)

/* Check dims and fill msg's; *floats is their product. */
static int tensor_dims(rxg_client *c, const int64_t *dims, int ndims, Rxgemm__TensorCreate *msg,
		       size_t *floats)
{
	uint64_t n = 1;

	if (!dims || ndims < 1 || ndims > RXG_TENSOR_MAX_DIMS)
		return rxg__fail(c, RXG_EINVAL, "a tensor has 1 to %d dims (got %d%s)",
				 RXG_TENSOR_MAX_DIMS, ndims, dims ? "" : ", dims NULL");
	for (int i = 0; i < ndims; i++) {
		if (dims[i] < 1)
			return rxg__fail(c, RXG_EINVAL, "dims[%d] is %lld; each must be at least 1",
					 i, (long long)dims[i]);
		if (__builtin_mul_overflow(n, (uint64_t)dims[i], &n) ||
		    n > SIZE_MAX / sizeof(float) / 2)
			return rxg__fail(c, RXG_EINVAL, "the tensor's dims multiply past what "
					 "memory can hold");
	}
	msg->dims = (int64_t *)(uintptr_t)dims;
	msg->n_dims = (size_t)ndims;
	*floats = (size_t)n;
	return RXG_OK;
}

/* Send msg (dims set) and make the handle. */
static int tensor_create_send(rxg_client *c, Rxgemm__TensorCreate *msg, size_t floats,
			      rxg_tensor **out)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__Reply *reply = NULL;
	struct rxg_tensor *t;
	int rc;

	if (!(t = calloc(1, sizeof(*t))))
		return rxg__fail(c, RXG_ENOMEM, "out of memory");
	req.body_case = RXGEMM__REQUEST__BODY_TENSOR_CREATE;
	req.tensor_create = msg;
	rc = rxg__request(c, &req, TENSOR_REPLY_OVERHEAD_BYTES, RXGEMM__REPLY__BODY_TENSOR_CREATED,
			  &reply);
	if (rc != RXG_OK) {
		free(t);
		return rc;
	}
	t->client = c;
	t->id = reply->tensor_created->tensor_id;
	t->floats = floats;
	rxgemm__reply__free_unpacked(reply, NULL);
	*out = t;
	return RXG_OK;
}

RXG_EXPORT int rxg_tensor_create(rxg_client *c, const int64_t *dims, int ndims,
				 const float *data, rxg_tensor **out)
{
	Rxgemm__TensorCreate msg = RXGEMM__TENSOR_CREATE__INIT;
	size_t floats;
	int rc;

	if (out)
		*out = NULL;
	if (!c)
		return RXG_EINVAL;
	if (!out)
		return rxg__fail(c, RXG_EINVAL, "rxg_tensor_create: out is NULL");
	if ((rc = tensor_dims(c, dims, ndims, &msg, &floats)) != RXG_OK)
		return rc;
	if (data) {
		/* The packer only reads it. */
		msg.data.data = (uint8_t *)(uintptr_t)data;
		msg.data.len = floats * sizeof(float);
	}
	return tensor_create_send(c, &msg, floats, out);
}

RXG_EXPORT int rxg_tensor_create_from_buffer(rxg_client *c, const struct rxg_buffer *buf,
					     size_t offset, const int64_t *dims, int ndims,
					     rxg_tensor **out)
{
	Rxgemm__TensorCreate msg = RXGEMM__TENSOR_CREATE__INIT;
	Rxgemm__RegionRef ref;
	size_t floats;
	int rc;

	if (out)
		*out = NULL;
	if (!c)
		return RXG_EINVAL;
	if (!out || !buf)
		return rxg__fail(c, RXG_EINVAL, "rxg_tensor_create_from_buffer: %s is NULL",
				 !out ? "out" : "buf");
	if ((rc = tensor_dims(c, dims, ndims, &msg, &floats)) != RXG_OK)
		return rc;
	if ((rc = rxg__region_ref(c, "the tensor's data", buf, offset, floats, &ref)) != RXG_OK)
		return rc;
	msg.region = &ref;
	return tensor_create_send(c, &msg, floats, out);
}

RXG_EXPORT size_t rxg_tensor_floats(const rxg_tensor *t)
{
	return t ? t->floats : 0;
}

/* Ask for t's data into a region; on RXG_OK *reply is the checked TensorData reply (the
 * caller frees it). (Inline reads are jobs: tensor_read_submit.) */
static int tensor_read_send(rxg_tensor *t, Rxgemm__RegionRef *out_ref, Rxgemm__Reply **reply)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__TensorRead msg = RXGEMM__TENSOR_READ__INIT;
	int rc;

	msg.tensor_id = t->id;
	msg.out = out_ref;
	req.body_case = RXGEMM__REQUEST__BODY_TENSOR_READ;
	req.tensor_read = &msg;
	rc = rxg__request(t->client, &req, TENSOR_REPLY_OVERHEAD_BYTES,
			  RXGEMM__REPLY__BODY_TENSOR_DATA, reply);
	if (rc != RXG_OK)
		return rc;
	if ((*reply)->tensor_data->bytes != t->floats * sizeof(float) ||
	    (*reply)->tensor_data->data.len != 0) {
		rc = rxg__fail(t->client, RXG_EPROTO, "the daemon returned %llu bytes (%zu inline) "
			       "of a tensor of %zu floats",
			       (unsigned long long)(*reply)->tensor_data->bytes,
			       (*reply)->tensor_data->data.len, t->floats);
		rxgemm__reply__free_unpacked(*reply, NULL);
		*reply = NULL;
	}
	return rc;
}

/* An asynchronous tensor read's reply: its floats (sc.total of them) into p->c. */
static int tensor_read_finish(struct rxg_client *c, struct pending *p,
			      struct rxg_timings *timings)
{
	const Rxgemm__TensorData *d;
	int rc = rxg__reply_check(c, p, timings);

	if (rc != RXG_OK)
		return rc;
	d = p->reply->tensor_data;
	if (d->bytes != p->sc.total * sizeof(float) ||
	    (!p->c_direct && d->data.len != d->bytes))
		return rxg__fail(c, RXG_EPROTO, "the daemon returned %zu bytes of a tensor of %zu floats",
				 p->c_direct ? (size_t)d->bytes : d->data.len, p->sc.total);
	if (!p->c_direct) /* else received straight into out (transport.c) */
		memcpy(p->c, d->data.data, d->data.len);
	return RXG_OK;
}

/* Send a TensorRead of tensor_id (floats long) as a job that rxg_wait and rxg_wait_any
 * (job) or its caller's own wait finish by copying its floats into out, when they did not
 * come straight there (transport.c). RXG_OK with *id set. */
static int tensor_read_submit(rxg_client *c, uint32_t tensor_id, size_t floats, float *out,
			      bool job, uint64_t *id)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__TensorRead msg = RXGEMM__TENSOR_READ__INIT;
	struct pending *p = calloc(1, sizeof(*p));
	int rc;

	*id = 0;
	if (!p)
		return rxg__fail(c, RXG_ENOMEM, "out of memory");
	msg.tensor_id = tensor_id;
	req.body_case = RXGEMM__REQUEST__BODY_TENSOR_READ;
	req.tensor_read = &msg;
	p->job = job;
	p->want = RXGEMM__REPLY__BODY_TENSOR_DATA;
	p->finish = tensor_read_finish;
	p->reply_max_bytes = RXG__REPLY_OVERHEAD_BYTES + floats * sizeof(float);
	p->c = out;
	p->sc.total = floats;
	rc = rxg__submit(c, &req, p);
	if (rc != RXG_OK) {
		rxg__pending_free(p);
		return rc;
	}
	*id = p->id;
	return RXG_OK;
}

RXG_EXPORT int rxg_tensor_read(rxg_tensor *t, float *out, size_t n)
{
	struct pending *p = NULL;
	uint64_t id;
	int rc;

	if (!t)
		return RXG_EINVAL;
	if (!out || n < t->floats)
		return rxg__fail(t->client, RXG_EINVAL, "rxg_tensor_read: %s (the tensor holds %zu "
				 "floats)",
				 !out ? "out is NULL" : "n is too small", t->floats);
	/* As a job of this call's own, so that large data comes straight into out. */
	if ((rc = tensor_read_submit(t->client, t->id, t->floats, out, false, &id)) != RXG_OK)
		return rc;
	rc = rxg__wait_for(t->client, id, -1, &p);
	if (rc == RXG_OK)
		rc = tensor_read_finish(t->client, p, NULL);
	rxg__pending_free(p);
	return rc;
}

RXG_EXPORT int rxg_submit_tensor_read(rxg_tensor *t, float *out, size_t n, uint64_t *id)
{
	if (id)
		*id = 0;
	if (!t)
		return RXG_EINVAL;
	if (!id || !out || n < t->floats)
		return rxg__fail(t->client, RXG_EINVAL, "rxg_submit_tensor_read: %s (the tensor "
				 "holds %zu floats)",
				 !id ? "id is NULL" : !out ? "out is NULL" : "n is too small",
				 t->floats);
	return tensor_read_submit(t->client, t->id, t->floats, out, true, id);
}

RXG_EXPORT int rxg_tensor_read_to_buffer(rxg_tensor *t, struct rxg_buffer *buf, size_t offset)
{
	Rxgemm__Reply *reply = NULL;
	Rxgemm__RegionRef ref;
	int rc;

	if (!t)
		return RXG_EINVAL;
	if (!buf)
		return rxg__fail(t->client, RXG_EINVAL, "rxg_tensor_read_to_buffer: buf is NULL");
	if ((rc = rxg__region_ref(t->client, "the tensor's destination", buf, offset, t->floats,
				  &ref)) != RXG_OK)
		return rc;
	if ((rc = tensor_read_send(t, &ref, &reply)) != RXG_OK)
		return rc;
	rxgemm__reply__free_unpacked(reply, NULL);
	return RXG_OK;
}

RXG_EXPORT int rxg_tensor_free(rxg_tensor *t)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__TensorFree msg = RXGEMM__TENSOR_FREE__INIT;
	Rxgemm__Reply *reply = NULL;
	int rc;

	if (!t)
		return RXG_OK;
	msg.tensor_id = t->id;
	req.body_case = RXGEMM__REQUEST__BODY_TENSOR_FREE;
	req.tensor_free = &msg;
	rc = rxg__request(t->client, &req, TENSOR_REPLY_OVERHEAD_BYTES,
			  RXGEMM__REPLY__BODY_TENSOR_FREED, &reply);
	if (reply)
		rxgemm__reply__free_unpacked(reply, NULL);
	free(t);
	return rc;
}

int rxg__gemm_tensors(rxg_client *c, const struct rxg_gemm_args *args, Rxgemm__GemmRequest *g,
		      int *c_elsewhere)
{
	*c_elsewhere = 0;
	if (args->a_tensor) {
		g->a_tensor = args->a_tensor->id;
		g->a.data = NULL;
		g->a.len = 0;
	}
	if (args->b_tensor) {
		g->b_tensor = args->b_tensor->id;
		g->b.data = NULL;
		g->b.len = 0;
	}
	if (args->c_tensor) {
		g->c_tensor = args->c_tensor->id;
		g->c.data = NULL;
		g->c.len = 0;
		g->c_region = NULL;
	}
	if (args->c_out_tensor && args->c_out_buf)
		return rxg__fail(c, RXG_EINVAL, "c_out_tensor and c_out_buf are both set; the "
				 "result goes to one place");
	/* The result: into c_out_tensor, else (nothing else named for it) replacing C in its
	 * tensor, as it replaces C in c_buf. */
	if (args->c_out_tensor || (args->c_tensor && !args->c_out_buf)) {
		const struct rxg_tensor *dest = args->c_out_tensor ? args->c_out_tensor
								   : args->c_tensor;

		g->c_out_tensor = dest->id;
		g->c_out = NULL;
		*c_elsewhere = 1;
		/* c_buf given only as the result's place is then no input of C. */
		if (args->c_buf && args->beta == 0.0f)
			g->c_region = NULL;
	}
	return RXG_OK;
}

int rxg__nas_tensors(rxg_client *c, const struct rxg_nas_args *args, Rxgemm__NasEvalRequest *q)
{
	if (args->weights_tensor) {
		if (args->weights || args->weights_buf)
			return rxg__fail(c, RXG_EINVAL, "weights_tensor and %s are both given; give "
					 "one",
					 args->weights ? "weights" : "weights_buf");
		if (args->weights_tensor->client != c)
			return rxg__fail(c, RXG_EINVAL, "weights_tensor belongs to another "
					 "connection");
		q->weights_tensor = args->weights_tensor->id;
	}
	if (args->input_tensor) {
		if (args->input || args->input_buf)
			return rxg__fail(c, RXG_EINVAL, "input_tensor and %s are both given; give one",
					 args->input ? "input" : "input_buf");
		if (args->input_tensor->client != c)
			return rxg__fail(c, RXG_EINVAL, "input_tensor belongs to another connection");
		q->input_tensor = args->input_tensor->id;
	}
	return RXG_OK;
}

/* fuzz-decode: a frame body through the daemon's decode path, as wire_frame takes it.
 *
 * First, on any bytes, the large-field lifts (proto/lift.c) against protobuf-c's decoding,
 * as the daemon takes a request and as librxgemm reads a reply.
 * The pre-scan (wirecheck_message) first, with the daemon's limits; only a body it passes
 * reaches protobuf-c's unpack, as in the daemon. A GEMM request then goes through
 * wire_gemm_validate, a NAS request through wire_nas_eval and nas_job_prepare (genotype,
 * plan, lengths) and a search through wire_search_check and searchjob_prepare (the
 * supernet's layout, the state's size), none of which needs a device. Region references stand for a zeroed
 * region of their length (up to a bound), as wire.c's views do, so that validation sees
 * the bytes it would. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lift.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What a region reference may stand for here; longer ones are refused as wire_region
 * refuses a reference past its region's end. */
#define FAKE_REGION_BYTES (1u << 20)
static uint8_t fake_region[FAKE_REGION_BYTES] __attribute__((aligned(16)));

/* The daemon's limits on PoCL on a small machine: buffers of 1 GiB, 4 GiB per job. */
static const struct rxd_limits limits = { .max_buffer_bytes = 1ull << 30,
					  .max_total_bytes = 4ull << 30 };

/* As wire_region_bytes: inline bytes and a region both given is an error. */
static int fake_resolve(const Rxgemm__RegionRef *ref, ProtobufCBinaryData *data)
{
	if (!ref)
		return 0;
	if (data->len || ref->length > FAKE_REGION_BYTES || ref->offset % 4)
		return -1;
	data->data = fake_region;
	data->len = (size_t)ref->length;
	return 0;
}

/* The bytes behind an operand pointer that wire_gemm_validate took from view's a or b (it
 * swaps them for row-major requests); the larger when both point into the same fake
 * region. */
static size_t operand_bytes(const Rxgemm__GemmRequest *view, const float *p)
{
	const uint8_t *q = (const uint8_t *)p;

	if (q == view->a.data && q == view->b.data)
		return view->a.len > view->b.len ? view->a.len : view->b.len;
	return q == view->a.data ? view->a.len : view->b.len;
}

static void fuzz_gemm(const Rxgemm__GemmRequest *rq)
{
	Rxgemm__GemmRequest view = *rq;
	struct rxd_gemm g;
	struct rxd_error err = { 0 };

	if (fake_resolve(rq->a_region, &view.a) || fake_resolve(rq->b_region, &view.b) ||
	    fake_resolve(rq->c_region, &view.c))
		return;
	memset(&g, 0, sizeof(g));
	error_clear(&err);
	if (wire_gemm_validate(&view, &limits, &g, &err) != RXD_S_OK) {
		/* Every refusal names its reason. */
		if (!err.msg[0])
			abort();
		return;
	}
	/* What the device worker then relies on: each operand holds what the shape needs. */
	if (g.a_elems && operand_bytes(&view, g.a) / sizeof(float) < g.a_elems)
		abort();
	if (g.b_elems && operand_bytes(&view, g.b) / sizeof(float) < g.b_elems)
		abort();
	if (g.c && view.c.len / sizeof(float) < g.c_given_elems)
		abort();
}

static void fuzz_nas(const Rxgemm__NasEvalRequest *rq)
{
	Rxgemm__NasEvalRequest view = *rq;
	struct rxd_nas_job *nj = NULL;
	struct rxd_nas_eval ev;
	struct rxd_error err = { 0 };
	int st;

	if (fake_resolve(rq->weights_region, &view.weights) ||
	    fake_resolve(rq->input_region, &view.input))
		return;
	error_clear(&err);
	/* The daemon's default largest frame bounds the reply. */
	st = wire_nas_eval(&view, &ev, &err);
	if (st == RXD_S_OK)
		st = nas_job_prepare(&ev, &limits, RXD_DEFAULT_MAX_FRAME, NULL, &nj, &err);
	if (st != RXD_S_OK) {
		if (!err.msg[0] || nj)
			abort();
		return;
	}
	(void)nas_job_flops(nj);
	nas_job_free(nj);
}

static void fuzz_search(const Rxgemm__SearchRequest *rq)
{
	const Rxgemm__SearchData *half[2] = { rq->train, rq->valid };
	static const ProtobufCBinaryData none = { 0, NULL };
	ProtobufCBinaryData data[2][2];
	struct rxd_search_job_args a;
	struct rxd_search_job *sj = NULL;
	struct rxd_error err = { 0 };
	int st;

	for (int h = 0; h < 2; h++) {
		data[h][0] = half[h] ? half[h]->images : none;
		data[h][1] = half[h] ? half[h]->labels : none;
		if (half[h] && (fake_resolve(half[h]->images_region, &data[h][0]) ||
				fake_resolve(half[h]->labels_region, &data[h][1])))
			return;
	}
	error_clear(&err);
	st = wire_search_check(rq, data, &a, &err);
	if (st == RXD_S_OK) {
		a.resume = rq->resume_state.len ? rq->resume_state.data : NULL;
		a.resume_bytes = rq->resume_state.len;
		st = searchjob_prepare(&a, RXD_DEFAULT_MAX_FRAME, &sj, &err);
	}
	if (st != RXD_S_OK) {
		if (!err.msg[0] || sj)
			abort();
		return;
	}
	/* What the steps then rely on: each half holds whole batches of the shape. */
	if (a.count[0] < a.cfg.batch || a.count[1] < a.cfg.batch)
		abort();
	(void)searchjob_step_flops(sj);
	searchjob_free(sj);
}

/* The daemon's lifts (wire.c), with a threshold low enough for the fuzzer's small inputs:
 * a message decoded through a lift must pack exactly as protobuf-c's own decoding of it,
 * and decode only where protobuf-c's does. */
static void fuzz_lift(const uint8_t *data, size_t size)
{
	struct lift_field f[] = { { .outer = 3, .inner = 12 }, { .outer = 3, .inner = 13 },
				  { .outer = 3, .inner = 14 }, { .outer = 8, .inner = 9 },
				  { .outer = 8, .inner = 11 }, { .outer = 9, .inner = 2 },
				  { .outer = 12, .inner = 25 } };
	const size_t n = sizeof(f) / sizeof(f[0]);
	Rxgemm__Request *whole, *lifted;
	uint8_t *reduced, *p1, *p2;
	size_t reduced_len, l1, l2;

	if (lift_scan(data, size, f, n, 4, &reduced, &reduced_len) <= 0)
		return;
	lifted = rxgemm__request__unpack(NULL, reduced_len, reduced);
	free(reduced);
	if (!lifted)
		return;
	if (lift_restore(&lifted->base, data, f, n) != 0) {
		rxgemm__request__free_unpacked(lifted, NULL);
		return;
	}
	whole = rxgemm__request__unpack(NULL, size, data);
	if (!whole)
		abort();
	l1 = rxgemm__request__get_packed_size(whole);
	l2 = rxgemm__request__get_packed_size(lifted);
	if (l1 != l2)
		abort();
	p1 = malloc(l1 + 1);
	p2 = malloc(l2 + 1);
	if (!p1 || !p2)
		abort();
	rxgemm__request__pack(whole, p1);
	rxgemm__request__pack(lifted, p2);
	if (memcmp(p1, p2, l1))
		abort();
	free(p1);
	free(p2);
	lift_clear(&lifted->base, f, n);
	rxgemm__request__free_unpacked(lifted, NULL);
	rxgemm__request__free_unpacked(whole, NULL);
}

/* The same bytes as a Reply read the way librxgemm reads a large one (lift_locate on a
 * prefix in a buffer of its own, lift_cut_reduce, lift_cut_restore): never past the
 * prefix or the message, and decoding as protobuf-c decodes the whole. */
static void fuzz_cut(const uint8_t *data, size_t size)
{
	static const struct lift_field f[] = { { .outer = 6, .inner = 1 },
					       { .outer = 13, .inner = 1 } };
	const size_t prefixes[] = { 1 + (size ? data[0] % 64 : 0), 256 };

	for (size_t k = 0; k < sizeof(prefixes) / sizeof(prefixes[0]); k++) {
		size_t prefix = prefixes[k] < size ? prefixes[k] : size, reduced_len;
		uint8_t *pre = malloc(prefix + 1), *reduced, *payload;
		struct lift_cut cut;

		if (!pre)
			abort();
		memcpy(pre, data, prefix);
		if (!lift_locate(pre, prefix, size, f, 2, 2, &cut)) {
			free(pre);
			continue;
		}
		if (cut.data > prefix || cut.data + cut.len <= prefix || cut.data + cut.len > size)
			abort();
		if (lift_cut_reduce(&cut, pre, data + cut.data + cut.len,
				    size - cut.data - cut.len, &reduced, &reduced_len) != 0) {
			free(pre);
			continue;
		}
		Rxgemm__Reply *lifted = rxgemm__reply__unpack(NULL, reduced_len, reduced);
		free(reduced);
		free(pre);
		if (!lifted)
			continue;
		if (!(payload = malloc(cut.len)))
			abort();
		memcpy(payload, data + cut.data, cut.len);
		if (lift_cut_restore(&lifted->base, &cut, payload) != 0) {
			free(payload);
			rxgemm__reply__free_unpacked(lifted, NULL);
			continue;
		}
		Rxgemm__Reply *whole = rxgemm__reply__unpack(NULL, size, data);
		if (!whole)
			abort();
		size_t l1 = rxgemm__reply__get_packed_size(whole);
		uint8_t *p1 = malloc(l1 + 1), *p2 = malloc(l1 + 1);
		if (!p1 || !p2 || rxgemm__reply__get_packed_size(lifted) != l1)
			abort();
		rxgemm__reply__pack(whole, p1);
		rxgemm__reply__pack(lifted, p2);
		if (memcmp(p1, p2, l1))
			abort();
		free(p1);
		free(p2);
		rxgemm__reply__free_unpacked(whole, NULL);
		rxgemm__reply__free_unpacked(lifted, NULL); /* payload with it */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct wirecheck_limits lim = { .max_depth = RXD_REQUEST_MAX_DEPTH,
						     .max_elements = RXD_REQUEST_MAX_ELEMENTS };
	struct wirecheck_result wc;
	Rxgemm__Request *req;
	uint64_t id;

	fuzz_lift(data, size);
	fuzz_cut(data, size);
	if (wirecheck_message(&rxgemm__request__descriptor, data, size, &lim, &wc) != 0) {
		/* What wire_fault reads back for its reply. */
		(void)wirecheck_fault_name(wc.fault);
		(void)wirecheck_varint_field(data, size, 1, &id);
		if (wc.offset > size)
			abort();
		return 0;
	}
	req = rxgemm__request__unpack(NULL, size, data);
	if (!req)
		return 0;
	switch (req->body_case) {
	case RXGEMM__REQUEST__BODY_GEMM:
		fuzz_gemm(req->gemm);
		break;
	case RXGEMM__REQUEST__BODY_NAS_EVAL:
		fuzz_nas(req->nas_eval);
		break;
	case RXGEMM__REQUEST__BODY_SEARCH:
		fuzz_search(req->search);
		break;
	default:
		break;
	}
	rxgemm__request__free_unpacked(req, NULL);
	return 0;
}

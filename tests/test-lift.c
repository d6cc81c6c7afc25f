/* test-lift.c: proto/lift.c, whose lifted fields must decode exactly as protobuf-c decodes
 * the message as sent. The reference is protobuf-c itself: a message unpacked whole and
 * one unpacked through a lift are packed again and compared byte for byte, and the lifted
 * data must be where the original bytes hold it. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lift.h"
#include "raw.h"
#include "wirecheck.h"
#include "rxgemm.pb-c.h"

static const struct lift_field request_lifts[] = {
	{ .outer = 3, .inner = 12 }, { .outer = 3, .inner = 13 }, { .outer = 3, .inner = 14 },
	{ .outer = 9, .inner = 2 },
};
#define N_LIFTS (sizeof(request_lifts) / sizeof(request_lifts[0]))

static uint8_t *pattern(size_t len, unsigned seed)
{
	uint8_t *p = malloc(len);

	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 31u + i * 7u + (i >> 9));
	return p;
}

/* A GEMM request with A, B (and C when c_len) of the given lengths and small fields
 * around them; packed, *len its bytes. */
static uint8_t *gemm_packed(uint64_t id, size_t a_len, size_t b_len, size_t c_len, size_t *len,
			    uint8_t **a, uint8_t **b, uint8_t **c)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__GemmRequest g = RXGEMM__GEMM_REQUEST__INIT;
	uint8_t *out;

	g.m = 17, g.n = 33, g.k = 1000, g.alpha = 1.5f, g.ldc = 40, g.priority = 2;
	g.deadline_ms = 123456;
	*a = pattern(a_len, 1);
	*b = pattern(b_len, 2);
	*c = c_len ? pattern(c_len, 3) : NULL;
	g.a = (ProtobufCBinaryData){ a_len, *a };
	g.b = (ProtobufCBinaryData){ b_len, *b };
	g.c = (ProtobufCBinaryData){ c_len, *c };
	req.request_id = id;
	req.body_case = RXGEMM__REQUEST__BODY_GEMM;
	req.gemm = &g;
	*len = rxgemm__request__get_packed_size(&req);
	out = malloc(*len);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(rxgemm__request__pack(&req, out), *len);
	return out;
}

/* Two decodings of one message must pack to the same bytes (protobuf-c packs fields in
 * number order, so equal messages pack equally). */
static void assert_same(const ProtobufCMessage *a, const ProtobufCMessage *b, const char *what)
{
	size_t l1 = protobuf_c_message_get_packed_size(a);
	size_t l2 = protobuf_c_message_get_packed_size(b);
	uint8_t *p1 = malloc(l1 + 1), *p2 = malloc(l2 + 1);

	ck_assert_ptr_nonnull(p1);
	ck_assert_ptr_nonnull(p2);
	ck_assert_uint_eq(l1, l2);
	protobuf_c_message_pack(a, p1);
	protobuf_c_message_pack(b, p2);
	ck_assert_msg(!memcmp(p1, p2, l1), "%s packs differently", what);
	free(p1);
	free(p2);
}

/* The lifted decoding could not be completed (the caller unpacks the message itself):
 * free both decodings (either may be NULL); -1. */
static int give_up(ProtobufCMessage *lifted, ProtobufCMessage *whole)
{
	if (lifted)
		protobuf_c_message_free_unpacked(lifted, NULL);
	if (whole)
		protobuf_c_message_free_unpacked(whole, NULL);
	return -1;
}

/* msg through lift_scan, unpack and lift_restore must equal protobuf-c's unpack of msg
 * (when it unpacks at all), and every lifted field's data must lie in msg. Returns how
 * many fields were lifted. */
static int check_lift(const uint8_t *msg, size_t len, size_t min_bytes)
{
	struct lift_field f[N_LIFTS];
	uint8_t *reduced;
	size_t reduced_len;
	Rxgemm__Request *whole = rxgemm__request__unpack(NULL, len, msg);
	int n;

	memcpy(f, request_lifts, sizeof(f));
	n = lift_scan(msg, len, f, N_LIFTS, min_bytes, &reduced, &reduced_len);
	ck_assert_int_ge(n, 0);
	if (n == 0) {
		ck_assert_ptr_null(reduced);
		if (whole)
			rxgemm__request__free_unpacked(whole, NULL);
		return 0;
	}
	ck_assert_uint_lt(reduced_len, len);
	Rxgemm__Request *lifted = rxgemm__request__unpack(NULL, reduced_len, reduced);
	free(reduced);
	if (!lifted || lift_restore(&lifted->base, msg, f, N_LIFTS) != 0)
		return give_up((ProtobufCMessage *)lifted, (ProtobufCMessage *)whole);
	/* The reduced message decodes only where the whole one does. */
	ck_assert_msg(whole != NULL, "a lift decoded a message protobuf-c refuses");
	for (size_t i = 0; i < N_LIFTS; i++) {
		if (!f[i].lifted)
			continue;
		ck_assert_uint_ge(f[i].len, min_bytes);
		ck_assert_uint_le(f[i].offset + f[i].len, len);
	}
	assert_same(&whole->base, &lifted->base, "the lifted request");
	lift_clear(&lifted->base, f, N_LIFTS);
	rxgemm__request__free_unpacked(lifted, NULL);
	rxgemm__request__free_unpacked(whole, NULL);
	return n;
}

START_TEST(test_scan_gemm)
{
	size_t len;
	uint8_t *a, *b, *c;
	/* Request ids of 1 to 5 varint bytes move the data's offsets. */
	const uint64_t ids[] = { 1, 300, 70000, 1u << 22, 1ull << 29 };

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		uint8_t *msg = gemm_packed(ids[i], 70000, 65536, 0, &len, &a, &b, &c);
		ck_assert_int_eq(check_lift(msg, len, LIFT_MIN_BYTES), 2);
		free(msg), free(a), free(b), free(c);
	}
	/* C too; B under the threshold stays in the message. */
	uint8_t *msg = gemm_packed(5, 100000, 1000, 80000, &len, &a, &b, &c);
	ck_assert_int_eq(check_lift(msg, len, LIFT_MIN_BYTES), 2);
	free(msg), free(a), free(b), free(c);
	/* Nothing large: nothing lifted, nothing allocated. */
	msg = gemm_packed(5, 100, 1000, 8, &len, &a, &b, &c);
	ck_assert_int_eq(check_lift(msg, len, LIFT_MIN_BYTES), 0);
	free(msg), free(a), free(b), free(c);
}
END_TEST

/* Bytes appended to a packed message: as protobuf-c sees a field given twice (the last
 * bytes win; a message given twice is merged). */
static uint8_t *append(const uint8_t *msg, size_t len, const uint8_t *more, size_t more_len,
		       size_t *out_len)
{
	uint8_t *out = malloc(len + more_len);

	ck_assert_ptr_nonnull(out);
	memcpy(out, msg, len);
	memcpy(out + len, more, more_len);
	*out_len = len + more_len;
	return out;
}

START_TEST(test_scan_ambiguous)
{
	size_t len, more_len, all_len;
	uint8_t *a, *b, *c, *msg = gemm_packed(9, 70000, 70000, 0, &len, &a, &b, &c);
	uint8_t *a2 = pattern(66000, 9), *inner = malloc(70000), *more = malloc(70100);

	ck_assert_ptr_nonnull(inner);
	ck_assert_ptr_nonnull(more);
	/* gemm given twice, the second with another A: merged by protobuf-c, so nothing of
	 * gemm's is lifted and the second A is the one decoded. */
	size_t inner_len = raw_put_field(inner, 12, a2, 66000);
	more_len = raw_put_field(more, 3, inner, inner_len);
	uint8_t *all = append(msg, len, more, more_len, &all_len);
	ck_assert_int_eq(check_lift(all, all_len, LIFT_MIN_BYTES), 0);
	Rxgemm__Request *r = rxgemm__request__unpack(NULL, all_len, all);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(r->gemm->a.len, 66000);
	ck_assert(!memcmp(r->gemm->a.data, a2, 66000));
	rxgemm__request__free_unpacked(r, NULL);
	free(all);

	/* Another member of the oneof after gemm wins: the lift cannot be restored. */
	uint8_t tc[16];
	size_t tc_len = raw_put_field(tc, 9, (const uint8_t *)"\x08\x02", 2);
	all = append(msg, len, tc, tc_len, &all_len);
	ck_assert_int_eq(check_lift(all, all_len, LIFT_MIN_BYTES), -1);
	free(all);

	/* Unknown fields around stay as they were. */
	uint8_t unk[8] = { 0xf8, 0x03, 0x05 }; /* field 63, varint 5 */
	all = append(msg, len, unk, 3, &all_len);
	ck_assert_int_eq(check_lift(all, all_len, LIFT_MIN_BYTES), 2);
	free(all);
	free(more), free(inner), free(a2);
	free(msg), free(a), free(b), free(c);
}
END_TEST

/* Every way of cutting a valid message short, and a sample of bytes changed: the scan
 * never reads out of bounds (ASan builds) and never decodes what protobuf-c would not,
 * or differently. */
START_TEST(test_scan_damaged)
{
	size_t len;
	uint8_t *a, *b, *c, *msg = gemm_packed(77, 300, 200, 100, &len, &a, &b, &c);
	unsigned seed = 12345;

	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *p = malloc(cut ? cut : 1);
		ck_assert_ptr_nonnull(p);
		memcpy(p, msg, cut);
		check_lift(p, cut, 64);
		free(p);
	}
	for (int round = 0; round < 20000; round++) {
		uint8_t *p = malloc(len);
		ck_assert_ptr_nonnull(p);
		memcpy(p, msg, len);
		for (int k = 0; k < 3; k++) {
			seed = seed * 1103515245u + 12345u;
			/* Mostly the first bytes: tags and lengths. */
			size_t at = (seed >> 8) % (round % 2 ? len : 40);
			seed = seed * 1103515245u + 12345u;
			p[at] = (uint8_t)(seed >> 16);
		}
		check_lift(p, len, 64);
		free(p);
	}
	free(msg), free(a), free(b), free(c);
}
END_TEST

/* A reply packed with C empty and spliced with C's data decodes as the reply with C in. */
START_TEST(test_splice)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__GemmReply g = RXGEMM__GEMM_REPLY__INIT;
	Rxgemm__Timings t = RXGEMM__TIMINGS__INIT;
	const size_t lens[] = { 0, 1, 127, 128, 70000, 1u << 21 };

	t.kernel_ns = 999, t.total_ns = 123456789;
	g.flops = 1ull << 40;
	g.kernel = (char *)"vec:16x8";
	reply.request_id = 1ull << 33;
	reply.timings = &t;
	reply.body_case = RXGEMM__REPLY__BODY_GEMM;
	reply.gemm = &g;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t *data = pattern(lens[i] ? lens[i] : 1, (unsigned)i);
		size_t len = rxgemm__reply__get_packed_size(&reply), head_len, tail;
		uint8_t *packed = malloc(len), *head = malloc(len + LIFT_SPLICE_EXTRA);

		ck_assert_ptr_nonnull(packed);
		ck_assert_ptr_nonnull(head);
		rxgemm__reply__pack(&reply, packed);
		ck_assert_int_eq(lift_splice(packed, len, 6, 1, lens[i], head, &head_len, &tail), 0);
		ck_assert_uint_le(head_len, len + LIFT_SPLICE_EXTRA);
		size_t all_len = head_len + lens[i] + (len - tail);
		uint8_t *all = malloc(all_len);
		ck_assert_ptr_nonnull(all);
		memcpy(all, head, head_len);
		memcpy(all + head_len, data, lens[i]);
		memcpy(all + head_len + lens[i], packed + tail, len - tail);
		Rxgemm__Reply *r = rxgemm__reply__unpack(NULL, all_len, all);
		ck_assert_ptr_nonnull(r);
		ck_assert_uint_eq(r->request_id, reply.request_id);
		ck_assert_uint_eq(r->timings->total_ns, t.total_ns);
		ck_assert_int_eq(r->body_case, RXGEMM__REPLY__BODY_GEMM);
		ck_assert_uint_eq(r->gemm->flops, g.flops);
		ck_assert_str_eq(r->gemm->kernel, g.kernel);
		ck_assert_uint_eq(r->gemm->c.len, lens[i]);
		ck_assert(!lens[i] || !memcmp(r->gemm->c.data, data, lens[i]));
		rxgemm__reply__free_unpacked(r, NULL);
		free(all), free(head), free(packed), free(data);
	}
	/* No gemm in the reply: nothing to splice into. */
	Rxgemm__Reply bare = RXGEMM__REPLY__INIT;
	uint8_t packed[64], head[64 + LIFT_SPLICE_EXTRA];
	size_t head_len, tail, len = rxgemm__reply__pack(&bare, packed);
	ck_assert_int_eq(lift_splice(packed, len, 6, 1, 10, head, &head_len, &tail), -EINVAL);
}
END_TEST

/* A GEMM request sent as librxgemm sends one to a daemon that takes pads: A, B and C
 * spliced in after a pad each. Reassembled, each operand's data starts at a multiple of
 * align; protobuf-c decodes it as the request packed whole (the pads aside), and so does
 * the daemon's scan, which lifts every operand of LIFT_MIN_BYTES or more. The lengths
 * cross the varint sizes of the operands' and of the GemmRequest's own length. */
static void check_aligned(size_t a_len, size_t b_len, size_t c_len, size_t align, int64_t m)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__GemmRequest g = RXGEMM__GEMM_REQUEST__INIT;
	const size_t lens[3] = { a_len, b_len, c_len };
	const uint8_t *datas[3];
	uint8_t *a, *b, *c, *packed, *head, *all;
	struct lift_put puts[3];
	size_t n = 0, seg_end[3], tail, len, at, off[3];

	g.m = m, g.n = 33, g.k = 1000, g.alpha = 1.5f, g.ldc = 40, g.priority = 2;
	a = pattern(a_len ? a_len : 1, 11), b = pattern(b_len ? b_len : 1, 12);
	c = pattern(c_len ? c_len : 1, 13);
	datas[0] = a, datas[1] = b, datas[2] = c;
	req.request_id = 99;
	req.body_case = RXGEMM__REQUEST__BODY_GEMM;
	req.gemm = &g;
	for (size_t i = 0; i < 3; i++)
		if (lens[i])
			puts[n++] = (struct lift_put){ .inner = 12 + (uint32_t)i, .len = lens[i] };
	len = rxgemm__request__get_packed_size(&req);
	packed = malloc(len);
	head = malloc(len + LIFT_SPLICE_EXTRA + 3 * LIFT_ALIGN_EXTRA);
	ck_assert_ptr_nonnull(packed);
	ck_assert_ptr_nonnull(head);
	rxgemm__request__pack(&req, packed);
	ck_assert_int_eq(lift_splice_aligned(packed, len, 3, 31, puts, n, align, head, seg_end,
					     &tail), 0);
	ck_assert_uint_le(seg_end[n - 1], len + LIFT_SPLICE_EXTRA + n * LIFT_ALIGN_EXTRA);
	size_t all_len = seg_end[n - 1] + a_len + b_len + c_len + (len - tail);
	all = malloc(all_len);
	ck_assert_ptr_nonnull(all);
	at = 0;
	for (size_t i = 0, j = 0; i < 3; i++) {
		if (!lens[i])
			continue;
		size_t from = j ? seg_end[j - 1] : 0;

		memcpy(all + at, head + from, seg_end[j] - from);
		at += seg_end[j] - from;
		off[i] = at;
		ck_assert_msg(at % align == 0, "operand %zu at %zu: not a multiple of %zu", i, at,
			      align);
		memcpy(all + at, datas[i], lens[i]);
		at += lens[i];
		j++;
	}
	memcpy(all + at, packed + tail, len - tail);
	ck_assert_uint_eq(at + len - tail, all_len);

	/* protobuf-c: the request as if packed whole, the pad given and ignored. */
	Rxgemm__Request *r = rxgemm__request__unpack(NULL, all_len, all);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->body_case, RXGEMM__REQUEST__BODY_GEMM);
	ck_assert_uint_le(r->gemm->pad.len, 63);
	r->gemm->pad.len = 0; /* (still freed with the message) */
	g.a = (ProtobufCBinaryData){ a_len, a };
	g.b = (ProtobufCBinaryData){ b_len, b };
	g.c = (ProtobufCBinaryData){ c_len, c };
	assert_same(&r->base, &req.base, "a request spliced aligned");
	rxgemm__request__free_unpacked(r, NULL);

	/* The daemon's scan lifts the large operands where they lie. */
	struct lift_field f[3] = { { .outer = 3, .inner = 12 }, { .outer = 3, .inner = 13 },
				   { .outer = 3, .inner = 14 } };
	uint8_t *reduced;
	size_t reduced_len;
	int lifted = lift_scan(all, all_len, f, 3, LIFT_MIN_BYTES, &reduced, &reduced_len);
	int want = (a_len >= LIFT_MIN_BYTES) + (b_len >= LIFT_MIN_BYTES) + (c_len >= LIFT_MIN_BYTES);
	ck_assert_int_eq(lifted, want);
	if (lifted > 0)
		free(reduced);
	for (size_t i = 0; i < 3; i++)
		if (f[i].lifted)
			ck_assert_uint_eq(f[i].offset, off[i]);
	free(all), free(head), free(packed), free(a), free(b), free(c);
}

START_TEST(test_splice_aligned)
{
	const size_t lens[] = { 1, 100, 16300, 16371, 16384, 70000, (1u << 21) - 40,
				(1u << 21) + 3 };
	const size_t nl = sizeof(lens) / sizeof(lens[0]);

	for (size_t i = 0; i < nl; i++)
		for (size_t j = 0; j < nl; j += 3) {
			check_aligned(lens[i], lens[j], 0, 16, 17);
			check_aligned(lens[i], lens[j], lens[(i + j) % nl], 4, 1ll << 40);
			check_aligned(lens[j], 0, lens[i], 64, 5);
		}
	/* The GemmRequest's own length at each varint size's edge: 16384 - 17 bytes of pads,
	 * tags and data land each side of it as its small fields grow. */
	for (int64_t m = 1; m < (1ll << 50); m = m * 2 + 1)
		for (size_t d = 16300; d < 16400; d += 7)
			check_aligned(d, 0, 0, 16, m);
	/* Nothing to splice into, or an alignment that is not a power of two up to 64. */
	Rxgemm__Request bare = RXGEMM__REQUEST__INIT;
	struct lift_put put = { .inner = 12, .len = 100 };
	uint8_t packed[64], head[64 + LIFT_SPLICE_EXTRA + LIFT_ALIGN_EXTRA];
	size_t seg_end, tail, len = rxgemm__request__pack(&bare, packed);
	ck_assert_int_eq(lift_splice_aligned(packed, len, 3, 31, &put, 1, 16, head, &seg_end,
					     &tail), -EINVAL);
	size_t glen;
	uint8_t *a, *b, *c, *g = gemm_packed(1, 0, 0, 0, &glen, &a, &b, &c);
	uint8_t *ghead = malloc(glen + LIFT_SPLICE_EXTRA + LIFT_ALIGN_EXTRA);
	ck_assert_ptr_nonnull(ghead);
	ck_assert_int_eq(lift_splice_aligned(g, glen, 3, 31, &put, 1, 16, ghead, &seg_end, &tail),
			 0);
	ck_assert_int_eq(lift_splice_aligned(g, glen, 3, 31, &put, 1, 12, ghead, &seg_end, &tail),
			 -EINVAL);
	ck_assert_int_eq(lift_splice_aligned(g, glen, 3, 31, &put, 1, 128, ghead, &seg_end,
					     &tail), -EINVAL);
	free(ghead), free(g), free(a), free(b), free(c);
}
END_TEST

static const struct lift_field reply_lifts[] = { { .outer = 6, .inner = 1 },
						 { .outer = 13, .inner = 1 } };

/* A reply read as the client reads one: a prefix, C's data into memory of its own, the
 * rest; decoded through lift_cut_reduce it must equal protobuf-c's decoding of the whole. */
static int check_cut(const uint8_t *msg, size_t len, size_t prefix_len, size_t min_bytes)
{
	struct lift_cut cut;
	uint8_t *reduced;
	size_t reduced_len;

	if (prefix_len > len)
		prefix_len = len;
	if (!lift_locate(msg, prefix_len, len, reply_lifts, 2, min_bytes, &cut))
		return 0;
	ck_assert_uint_le(cut.data, prefix_len);
	ck_assert_uint_gt(cut.data + cut.len, prefix_len);
	ck_assert_uint_le(cut.data + cut.len, len);
	const uint8_t *suffix = msg + cut.data + cut.len;
	size_t suffix_len = len - cut.data - cut.len;
	if (lift_cut_reduce(&cut, msg, suffix, suffix_len, &reduced, &reduced_len) != 0)
		return -1;
	Rxgemm__Reply *whole = rxgemm__reply__unpack(NULL, len, msg);
	Rxgemm__Reply *lifted = rxgemm__reply__unpack(NULL, reduced_len, reduced);
	free(reduced);
	uint8_t *data = malloc(cut.len);
	ck_assert_ptr_nonnull(data);
	memcpy(data, msg + cut.data, cut.len);
	if (!lifted || lift_cut_restore(&lifted->base, &cut, data) != 0) {
		free(data);
		return give_up((ProtobufCMessage *)lifted, (ProtobufCMessage *)whole);
	}
	ck_assert_msg(whole != NULL, "a cut decoded a reply protobuf-c refuses");
	assert_same(&whole->base, &lifted->base, "the reply read through a cut");
	rxgemm__reply__free_unpacked(whole, NULL);
	rxgemm__reply__free_unpacked(lifted, NULL); /* frees data: the reply's */
	return 1;
}

START_TEST(test_cut)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__GemmReply g = RXGEMM__GEMM_REPLY__INIT;
	Rxgemm__TensorData td = RXGEMM__TENSOR_DATA__INIT;
	Rxgemm__Timings t = RXGEMM__TIMINGS__INIT;
	uint8_t *data = pattern(70000, 4);
	char err[400];

	t.h2d_ns = 5, t.total_ns = 1ull << 35;
	g.c = (ProtobufCBinaryData){ 70000, data };
	g.flops = 77;
	g.kernel = (char *)"k";
	reply.request_id = 424242;
	reply.timings = &t;
	reply.body_case = RXGEMM__REPLY__BODY_GEMM;
	reply.gemm = &g;
	for (int variant = 0; variant < 3; variant++) {
		if (variant == 1) {
			/* A long error sentence before the body: C starts past a short prefix. */
			memset(err, 'e', sizeof(err) - 1);
			err[sizeof(err) - 1] = 0;
			reply.error = err;
		}
		if (variant == 2) {
			reply.error = NULL;
			td.data = (ProtobufCBinaryData){ 70000, data };
			td.bytes = 70000;
			reply.body_case = RXGEMM__REPLY__BODY_TENSOR_DATA;
			reply.tensor_data = &td;
		}
		size_t len = rxgemm__reply__get_packed_size(&reply);
		uint8_t *msg = malloc(len);
		ck_assert_ptr_nonnull(msg);
		rxgemm__reply__pack(&reply, msg);
		int found = 0;
		for (size_t prefix = 1; prefix <= 600; prefix++)
			found += check_cut(msg, len, prefix, 1024) > 0;
		ck_assert_int_gt(found, variant == 1 ? 100 : 500);
		/* The request id, from the fields before the cut (the client's destination). */
		struct lift_cut cut;
		uint64_t id = 0;
		ck_assert_int_eq(lift_locate(msg, 600, len, reply_lifts, 2, 1024, &cut), 1);
		ck_assert_int_eq(wirecheck_varint_field(msg, cut.outer_start, 1, &id), 0);
		ck_assert_uint_eq(id, reply.request_id);
		ck_assert_int_eq(wirecheck_varint_field(msg, cut.outer_start, 2, &id),
				 -ENOENT); /* status 0 */
		/* Under min_bytes: never cut. */
		ck_assert_int_eq(check_cut(msg, len, 256, 80000), 0);
		/* Something after the body that names the body again: not cut. */
		uint8_t more[16];
		size_t more_len = raw_put_field(more, variant == 2 ? 13 : 6, (const uint8_t *)"", 0);
		size_t all_len;
		uint8_t *all = append(msg, len, more, more_len, &all_len);
		ck_assert_int_eq(check_cut(all, all_len, 600, 1024), -1);
		free(all);
		/* Data that the prefix holds whole is no cut: the rest is read as it is. */
		ck_assert_int_eq(check_cut(msg, len, len, 1), 0);
		free(msg);
	}
	/* C given twice inside one GemmReply, the second empty: protobuf-c keeps the last,
	 * so the first may not be cut out and handed over. */
	Rxgemm__GemmReply g2 = RXGEMM__GEMM_REPLY__INIT;
	g2.c = (ProtobufCBinaryData){ 70000, data };
	size_t glen = rxgemm__gemm_reply__get_packed_size(&g2);
	uint8_t *gb = malloc(glen + 8), *msg = malloc(glen + 32);
	ck_assert_ptr_nonnull(gb);
	ck_assert_ptr_nonnull(msg);
	rxgemm__gemm_reply__pack(&g2, gb);
	glen += raw_put_field(gb + glen, 1, (const uint8_t *)"", 0);
	msg[0] = 0x08, msg[1] = 0x05; /* request_id 5 */
	size_t len = 2 + raw_put_field(msg + 2, 6, gb, glen);
	Rxgemm__Reply *r = rxgemm__reply__unpack(NULL, len, msg);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(r->gemm->c.len, 0);
	rxgemm__reply__free_unpacked(r, NULL);
	ck_assert_int_eq(check_cut(msg, len, 256, 1024), -1);
	free(msg);
	free(gb);
	free(data);
}
END_TEST

/* An inner field whose tag and length lie past the end of its outer message (found by
 * review: the length was read as if the outer ran on, and the reduced message's buffer
 * overflowed). No cut may be made of it. */
START_TEST(test_cut_outside_outer)
{
	const size_t data_len = 65536, len = 8 + data_len + 10;
	uint8_t *msg = calloc(1, len);
	static const uint8_t head[8] = { 0x08, 0x01, 0x32, 0x01, 0x0a, 0x80, 0x80, 0x04 };
	struct lift_cut cut;

	ck_assert_ptr_nonnull(msg);
	memcpy(msg, head, sizeof(head));
	for (size_t prefix = 5; prefix <= 256; prefix++) {
		uint8_t *pre = malloc(prefix);
		ck_assert_ptr_nonnull(pre);
		memcpy(pre, msg, prefix);
		if (lift_locate(pre, prefix, len, reply_lifts, 2, 1024, &cut)) {
			const uint8_t *suffix = msg + cut.data + cut.len;
			uint8_t *reduced;
			size_t reduced_len;

			ck_assert_uint_le(cut.data + cut.len, len);
			ck_assert_int_eq(lift_cut_reduce(&cut, pre, suffix, len - cut.data - cut.len,
							 &reduced, &reduced_len),
					 -EINVAL);
		}
		free(pre);
	}
	/* A cut that does not lie in its outer message is refused as it stands. */
	cut = (struct lift_cut){ .outer = 6, .inner = 1, .outer_start = 2, .outer_tag_end = 3,
				 .outer_data = 4, .outer_len = 1, .field_start = 4, .data = 8,
				 .len = data_len };
	uint8_t *reduced;
	size_t reduced_len;
	ck_assert_int_eq(lift_cut_reduce(&cut, msg, msg + 8 + data_len, 10, &reduced,
					 &reduced_len),
			 -EINVAL);
	free(msg);
}
END_TEST

/* Damaged replies: the cut reads within the prefix it is given and decodes nothing that
 * protobuf-c decodes otherwise. */
START_TEST(test_cut_damaged)
{
	Rxgemm__Reply reply = RXGEMM__REPLY__INIT;
	Rxgemm__GemmReply g = RXGEMM__GEMM_REPLY__INIT;
	uint8_t *data = pattern(3000, 5);
	unsigned seed = 99;

	g.c = (ProtobufCBinaryData){ 3000, data };
	g.kernel = (char *)"kk";
	reply.request_id = 7;
	reply.body_case = RXGEMM__REPLY__BODY_GEMM;
	reply.gemm = &g;
	size_t len = rxgemm__reply__get_packed_size(&reply);
	uint8_t *msg = malloc(len);
	ck_assert_ptr_nonnull(msg);
	rxgemm__reply__pack(&reply, msg);
	for (int round = 0; round < 20000; round++) {
		uint8_t *p = malloc(len);
		ck_assert_ptr_nonnull(p);
		memcpy(p, msg, len);
		for (int k = 0; k < 1 + round % 4; k++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % (round % 3 ? 16 : len);
			seed = seed * 1103515245u + 12345u;
			p[at] = (uint8_t)(seed >> 16);
		}
		/* The prefix alone in a buffer of its own: ASan sees a read past it. */
		size_t prefix = 1 + round % 40;
		uint8_t *pre = malloc(prefix);
		ck_assert_ptr_nonnull(pre);
		memcpy(pre, p, prefix);
		struct lift_cut cut;
		if (lift_locate(pre, prefix, len, reply_lifts, 2, 100, &cut))
			check_cut(p, len, prefix, 100);
		free(pre);
		free(p);
	}
	free(msg);
	free(data);
}
END_TEST

static Suite *lift_suite(void)
{
	Suite *s = suite_create("lift");
	TCase *tc = tcase_create("scan");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_scan_gemm);
	tcase_add_test(tc, test_scan_ambiguous);
	tcase_add_test(tc, test_scan_damaged);
	suite_add_tcase(s, tc);
	tc = tcase_create("send and receive");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_splice);
	tcase_add_test(tc, test_splice_aligned);
	tcase_add_test(tc, test_cut);
	tcase_add_test(tc, test_cut_outside_outer);
	tcase_add_test(tc, test_cut_damaged);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(lift_suite());

	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

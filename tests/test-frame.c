/* test-frame.c: the incremental frame reader of proto/frame.c, fed in every split a socket
 * can produce, and the header encoding, checked against hand-written big-endian bytes. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

/* Append one frame (header + body_len bytes of a pattern derived from seed) to buf at
 * *used. The body's bytes are what the reader must hand back. */
static void put_frame(uint8_t *buf, size_t *used, uint32_t body_len, uint8_t seed)
{
	frame_header_put(buf + *used, body_len);
	*used += FRAME_HEADER_BYTES;
	for (uint32_t i = 0; i < body_len; i++)
		buf[(*used)++] = (uint8_t)(seed + i * 7u);
}

static void assert_body(const uint8_t *body, size_t body_len, uint32_t want_len, uint8_t seed)
{
	ck_assert_ptr_nonnull(body);
	ck_assert_uint_eq(body_len, want_len);
	for (uint32_t i = 0; i < want_len; i++)
		ck_assert_msg(body[i] == (uint8_t)(seed + i * 7u),
			      "body byte %u is 0x%02x, want 0x%02x", i, body[i],
			      (uint8_t)(seed + i * 7u));
}

START_TEST(test_one_piece)
{
	struct frame_reader fr;
	uint8_t buf[256];
	size_t used = 0;
	uint8_t *body;
	size_t body_len;

	put_frame(buf, &used, 100, 3);
	frame_reader_init(&fr, 1024);
	ck_assert(!frame_reader_partial(&fr));
	ssize_t n = frame_reader_feed(&fr, buf, used, &body, &body_len);
	ck_assert_int_eq(n, (ssize_t)used);
	assert_body(body, body_len, 100, 3);
	ck_assert_uint_eq(fr.last_len, 100);
	ck_assert(!frame_reader_partial(&fr));
	free(body);
	frame_reader_fini(&fr);
}
END_TEST

START_TEST(test_byte_by_byte)
{
	struct frame_reader fr;
	uint8_t buf[64];
	size_t used = 0;
	uint8_t *body = NULL;
	size_t body_len = 0;

	put_frame(buf, &used, 37, 11);
	frame_reader_init(&fr, 64);
	for (size_t i = 0; i < used; i++) {
		ssize_t n = frame_reader_feed(&fr, buf + i, 1, &body, &body_len);
		ck_assert_int_eq(n, 1);
		if (i + 1 < used) {
			ck_assert_msg(body == NULL, "a body came out after %zu of %zu bytes", i + 1,
				      used);
			ck_assert_msg(frame_reader_partial(&fr),
				      "reader not partial after %zu of %zu bytes", i + 1, used);
		}
	}
	assert_body(body, body_len, 37, 11);
	ck_assert(!frame_reader_partial(&fr));
	free(body);
	frame_reader_fini(&fr);
}
END_TEST

/* Two whole frames and the first half of a third arrive in one read; the rest of the third
 * arrives in the next read. Each call must stop at a frame's end and report how far it got. */
START_TEST(test_two_and_a_half)
{
	struct frame_reader fr;
	uint8_t buf[512];
	size_t used = 0, off = 0;
	uint8_t *body;
	size_t body_len;

	put_frame(buf, &used, 10, 1);
	size_t end1 = used;
	put_frame(buf, &used, 200, 2);
	size_t end2 = used;
	put_frame(buf, &used, 50, 3);
	size_t end3 = used;
	size_t half = end2 + (end3 - end2) / 2;

	frame_reader_init(&fr, 4096);
	ssize_t n = frame_reader_feed(&fr, buf, half, &body, &body_len);
	ck_assert_int_eq(n, (ssize_t)end1);
	assert_body(body, body_len, 10, 1);
	free(body);
	off += (size_t)n;

	n = frame_reader_feed(&fr, buf + off, half - off, &body, &body_len);
	ck_assert_int_eq(n, (ssize_t)(end2 - end1));
	assert_body(body, body_len, 200, 2);
	free(body);
	off += (size_t)n;

	n = frame_reader_feed(&fr, buf + off, half - off, &body, &body_len);
	ck_assert_int_eq(n, (ssize_t)(half - off));
	ck_assert_ptr_null(body);
	ck_assert(frame_reader_partial(&fr));
	off += (size_t)n;

	n = frame_reader_feed(&fr, buf + off, end3 - off, &body, &body_len);
	ck_assert_int_eq(n, (ssize_t)(end3 - off));
	assert_body(body, body_len, 50, 3);
	ck_assert(!frame_reader_partial(&fr));
	free(body);
	frame_reader_fini(&fr);
}
END_TEST

/* An empty protobuf message packs to zero bytes; it must still come out as a frame. */
START_TEST(test_zero_length)
{
	struct frame_reader fr;
	uint8_t buf[16];
	size_t used = 0;
	uint8_t *body;
	size_t body_len = 99;

	put_frame(buf, &used, 0, 0);
	put_frame(buf, &used, 0, 0);
	frame_reader_init(&fr, 16);
	ssize_t n = frame_reader_feed(&fr, buf, used, &body, &body_len);
	ck_assert_int_eq(n, FRAME_HEADER_BYTES);
	ck_assert_ptr_nonnull(body);
	ck_assert_uint_eq(body_len, 0);
	free(body);
	n = frame_reader_feed(&fr, buf + FRAME_HEADER_BYTES, used - FRAME_HEADER_BYTES, &body,
			      &body_len);
	ck_assert_int_eq(n, FRAME_HEADER_BYTES);
	ck_assert_ptr_nonnull(body);
	ck_assert_uint_eq(body_len, 0);
	free(body);
	frame_reader_fini(&fr);
}
END_TEST

START_TEST(test_too_big)
{
	static const uint32_t lens[] = { 1001, 0x10000, 0xFFFFFFFFu };
	for (size_t t = 0; t < sizeof(lens) / sizeof(lens[0]); t++) {
		struct frame_reader fr;
		uint8_t hdr[FRAME_HEADER_BYTES];
		uint8_t *body = (uint8_t *)&fr;
		size_t body_len = 0;

		frame_header_put(hdr, lens[t]);
		frame_reader_init(&fr, 1000);
		ssize_t n = frame_reader_feed(&fr, hdr, sizeof(hdr), &body, &body_len);
		ck_assert_msg(n == -EMSGSIZE, "length %u with max 1000: feed returned %zd",
			      lens[t], n);
		ck_assert_uint_eq(fr.last_len, lens[t]);
		ck_assert_ptr_null(body);
		frame_reader_fini(&fr);
	}
}
END_TEST

/* The cap is inclusive: a body of exactly max_bytes is a legal frame. */
START_TEST(test_exactly_max)
{
	enum { MAX = 300 };
	struct frame_reader fr;
	uint8_t buf[MAX + FRAME_HEADER_BYTES];
	size_t used = 0;
	uint8_t *body;
	size_t body_len;

	put_frame(buf, &used, MAX, 9);
	frame_reader_init(&fr, MAX);
	ssize_t n = frame_reader_feed(&fr, buf, used, &body, &body_len);
	ck_assert_int_eq(n, (ssize_t)used);
	assert_body(body, body_len, MAX, 9);
	free(body);
	frame_reader_fini(&fr);
}
END_TEST

/* A reader dropped in the middle of a frame frees what it holds (run under valgrind or
 * ASan to see it) and starts over clean after init. */
START_TEST(test_fini_partial)
{
	struct frame_reader fr;
	uint8_t buf[64];
	size_t used = 0;
	uint8_t *body;
	size_t body_len;

	put_frame(buf, &used, 20, 5);
	frame_reader_init(&fr, 64);
	ck_assert_int_eq(frame_reader_feed(&fr, buf, 10, &body, &body_len), 10);
	ck_assert_ptr_null(body);
	ck_assert(frame_reader_partial(&fr));
	frame_reader_fini(&fr);
	frame_reader_init(&fr, 64);
	ck_assert(!frame_reader_partial(&fr));
	ck_assert_int_eq(frame_reader_feed(&fr, buf, used, &body, &body_len), (ssize_t)used);
	assert_body(body, body_len, 20, 5);
	free(body);
	frame_reader_fini(&fr);
}
END_TEST

START_TEST(test_header_round_trip)
{
	static const struct {
		uint32_t len;
		uint8_t bytes[FRAME_HEADER_BYTES];
	} cases[] = {
		{ 0, { 0x00, 0x00, 0x00, 0x00 } },
		{ 1, { 0x00, 0x00, 0x00, 0x01 } },
		{ 255, { 0x00, 0x00, 0x00, 0xFF } },
		{ 256, { 0x00, 0x00, 0x01, 0x00 } },
		{ 0x01020304u, { 0x01, 0x02, 0x03, 0x04 } },
		{ 0xFFFFFFFFu, { 0xFF, 0xFF, 0xFF, 0xFF } },
	};
	for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
		uint8_t hdr[FRAME_HEADER_BYTES];

		memset(hdr, 0xAA, sizeof(hdr));
		frame_header_put(hdr, cases[t].len);
		ck_assert_msg(memcmp(hdr, cases[t].bytes, FRAME_HEADER_BYTES) == 0,
			      "header of %u is %02x %02x %02x %02x", cases[t].len, hdr[0], hdr[1],
			      hdr[2], hdr[3]);
		ck_assert_uint_eq(frame_header_get(cases[t].bytes), cases[t].len);
		ck_assert_uint_eq(frame_header_get(hdr), cases[t].len);
	}
}
END_TEST

/* A header announcing 128 MiB and a few bytes: the reader holds a few KiB, not 128 MiB; fed
 * in pieces, what it holds stays within twice what arrived (plus the first allocation),
 * and the body comes back whole. */
START_TEST(test_grows_as_bytes_arrive)
{
	enum { BIG = 128u << 20, BODY = 1u << 20, PIECE = 10007 };
	struct frame_reader fr;
	uint8_t hdr[FRAME_HEADER_BYTES], *piece = malloc(PIECE), *body;
	size_t body_len, have = 0;

	ck_assert_ptr_nonnull(piece);
	frame_reader_init(&fr, BIG);
	frame_header_put(hdr, BIG);
	ck_assert_int_eq(frame_reader_feed(&fr, hdr, sizeof(hdr), &body, &body_len), 4);
	ck_assert_ptr_null(body);
	ck_assert_uint_le(frame_reader_held_bytes(&fr), FRAME_READER_FIRST_BYTES + 1);
	memset(piece, 0x5a, 10);
	ck_assert_int_eq(frame_reader_feed(&fr, piece, 10, &body, &body_len), 10);
	ck_assert_uint_le(frame_reader_held_bytes(&fr), FRAME_READER_FIRST_BYTES + 1);
	frame_reader_fini(&fr);
	ck_assert_uint_eq(frame_reader_held_bytes(&fr), 0);

	frame_reader_init(&fr, BIG);
	frame_header_put(hdr, BODY);
	ck_assert_int_eq(frame_reader_feed(&fr, hdr, sizeof(hdr), &body, &body_len), 4);
	while (have < BODY) {
		size_t n = BODY - have < PIECE ? BODY - have : PIECE;

		for (size_t i = 0; i < n; i++)
			piece[i] = (uint8_t)((have + i) * 13u);
		ck_assert_int_eq(frame_reader_feed(&fr, piece, n, &body, &body_len), (ssize_t)n);
		have += n;
		if (have < BODY) {
			ck_assert_ptr_null(body);
			ck_assert_uint_ge(frame_reader_held_bytes(&fr), have);
			ck_assert_uint_le(frame_reader_held_bytes(&fr),
					  2 * have + FRAME_READER_FIRST_BYTES + 1);
		}
	}
	ck_assert_ptr_nonnull(body);
	ck_assert_uint_eq(body_len, BODY);
	size_t bad = BODY;
	for (size_t i = 0; i < BODY && bad == BODY; i++)
		if (body[i] != (uint8_t)(i * 13u))
			bad = i;
	ck_assert_msg(bad == BODY, "body byte %zu is wrong", bad);
	ck_assert_uint_eq(frame_reader_held_bytes(&fr), 0);
	free(body);
	free(piece);
	frame_reader_fini(&fr);
}
END_TEST

/* A large body read straight into the reader (frame_reader_space/commit), in pieces of
 * many sizes, as the daemon reads the rest of a large frame, then the small frame after it
 * through frame_reader_feed: the bytes come out as sent, the room given never exceeds
 * what is left, and the reader never holds more than about twice what has arrived. */
START_TEST(test_direct_reads)
{
	enum { BODY = 3u << 20, MIN = 4096 };
	size_t used = 0, have = 0, room, body_len, pieces = 0;
	uint8_t *stream = malloc(2 * FRAME_HEADER_BYTES + BODY + 64), *body, *dst;
	struct frame_reader fr;
	unsigned seed = 7;

	ck_assert_ptr_nonnull(stream);
	put_frame(stream, &used, BODY, 11);
	put_frame(stream, &used, 50, 5);
	frame_reader_init(&fr, BODY);
	ck_assert_ptr_null(frame_reader_space(&fr, MIN, &room)); /* no frame begun */
	ck_assert_int_eq(frame_reader_feed(&fr, stream, 2, &body, &body_len), 2);
	ck_assert_ptr_null(frame_reader_space(&fr, MIN, &room)); /* half a header */
	ck_assert_int_eq(frame_reader_feed(&fr, stream + 2, 100, &body, &body_len), 100);
	have = 100 - 2;
	while ((dst = frame_reader_space(&fr, MIN, &room)) != NULL) {
		seed = seed * 1103515245u + 12345u;
		size_t n = 1 + (seed >> 8) % (room < 300000 ? room : 300000);

		ck_assert_uint_ge(room, 1);
		ck_assert_uint_le(room, BODY - have);
		memcpy(dst, stream + FRAME_HEADER_BYTES + have, n);
		frame_reader_commit(&fr, n, &body, &body_len);
		have += n;
		pieces++;
		if (have == BODY)
			break;
		ck_assert_ptr_null(body);
		ck_assert_uint_le(frame_reader_held_bytes(&fr),
				  2 * have + FRAME_READER_FIRST_BYTES + 1);
	}
	ck_assert_uint_gt(pieces, 10);
	if (have < BODY) {
		/* Fewer than MIN bytes were left: the rest through the caller's buffer. */
		ck_assert_uint_lt(BODY - have, MIN);
		ck_assert_int_eq(frame_reader_feed(&fr, stream + FRAME_HEADER_BYTES + have,
						   BODY - have, &body, &body_len),
				 (ssize_t)(BODY - have));
	}
	assert_body(body, body_len, BODY, 11);
	free(body);
	ck_assert_uint_eq(frame_reader_held_bytes(&fr), 0);
	size_t at = FRAME_HEADER_BYTES + BODY;
	ck_assert_int_eq(frame_reader_feed(&fr, stream + at, used - at, &body, &body_len),
			 (ssize_t)(used - at));
	assert_body(body, body_len, 50, 5);
	free(body);
	frame_reader_fini(&fr);
	free(stream);
}
END_TEST

/* The owner's buffers (take): a frame announcing more than the first allocation is read
 * into the buffer take gives (its bytes from before overwritten, nothing grown), through
 * feeds and direct reads alike; one take refuses, and any small frame, grows as before. */
static uint8_t *taken;
static size_t take_asked;

static void *take_one(size_t bytes, size_t *cap)
{
	take_asked = bytes;
	if (!taken)
		return NULL;
	void *p = taken;
	taken = NULL;
	*cap = bytes + 4096; /* what the owner says it holds: more than asked */
	return p;
}

START_TEST(test_take)
{
	enum { BODY = 1u << 20 };
	size_t used = 0, room, body_len, have;
	uint8_t *stream = malloc(3 * FRAME_HEADER_BYTES + 2 * BODY + 100), *body, *dst;
	uint8_t *mine = malloc(BODY + 4096 + 1);
	struct frame_reader fr;

	ck_assert(stream && mine);
	memset(mine, 0xee, BODY + 4096 + 1); /* an earlier frame's bytes */
	put_frame(stream, &used, BODY, 21);
	put_frame(stream, &used, 100, 22);
	put_frame(stream, &used, BODY, 23);
	frame_reader_init(&fr, 2 * BODY);
	fr.take = take_one;
	/* The first: taken, read in pieces through feeds. */
	taken = mine;
	have = 0;
	while (have < FRAME_HEADER_BYTES + BODY) {
		size_t n = FRAME_HEADER_BYTES + BODY - have < 70001 ? FRAME_HEADER_BYTES + BODY - have
									  : 70001;
		ck_assert_int_eq(frame_reader_feed(&fr, stream + have, n, &body, &body_len),
				 (ssize_t)n);
		have += n;
		if (have == n) /* after the first piece: the taken buffer, whole */
			ck_assert_uint_eq(frame_reader_held_bytes(&fr), BODY + 1);
	}
	ck_assert_uint_eq(take_asked, BODY + 1);
	ck_assert_ptr_eq(body, mine);
	assert_body(body, body_len, BODY, 21);
	/* A small one: not offered to take, grown from the first allocation. */
	take_asked = 0;
	ck_assert_int_eq(frame_reader_feed(&fr, stream + have, FRAME_HEADER_BYTES + 100, &body,
					   &body_len),
			 (ssize_t)(FRAME_HEADER_BYTES + 100));
	have += FRAME_HEADER_BYTES + 100;
	ck_assert_uint_eq(take_asked, 0);
	assert_body(body, body_len, 100, 22);
	free(body);
	/* A large one that take refuses (nothing kept): grown as its bytes arrive, through
	 * direct reads. */
	ck_assert_int_eq(frame_reader_feed(&fr, stream + have, FRAME_HEADER_BYTES, &body,
					   &body_len),
			 (ssize_t)FRAME_HEADER_BYTES);
	ck_assert_uint_eq(take_asked, BODY + 1);
	ck_assert_uint_le(frame_reader_held_bytes(&fr), FRAME_READER_FIRST_BYTES + 1);
	have += FRAME_HEADER_BYTES;
	while ((dst = frame_reader_space(&fr, 1, &room)) != NULL) {
		size_t n = room < 50000 ? room : 50000;

		memcpy(dst, stream + have, n);
		have += n;
		frame_reader_commit(&fr, n, &body, &body_len);
		if (body)
			break;
	}
	ck_assert_uint_eq(have, used);
	ck_assert_ptr_ne(body, mine);
	assert_body(body, body_len, BODY, 23);
	free(body);
	free(mine);
	frame_reader_fini(&fr);
	free(stream);
}
END_TEST

static Suite *frame_suite(void)
{
	Suite *s = suite_create("frame");
	TCase *tc = tcase_create("reader");

	tcase_add_test(tc, test_one_piece);
	tcase_add_test(tc, test_byte_by_byte);
	tcase_add_test(tc, test_two_and_a_half);
	tcase_add_test(tc, test_zero_length);
	tcase_add_test(tc, test_too_big);
	tcase_add_test(tc, test_exactly_max);
	tcase_add_test(tc, test_fini_partial);
	tcase_add_test(tc, test_grows_as_bytes_arrive);
	tcase_add_test(tc, test_direct_reads);
	tcase_add_test(tc, test_take);
	suite_add_tcase(s, tc);

	tc = tcase_create("header");
	tcase_add_test(tc, test_header_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(frame_suite());

	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

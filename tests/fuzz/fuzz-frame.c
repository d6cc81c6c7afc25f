/* fuzz-frame: proto/frame.c's incremental reader fed a byte stream in random splits.
 *
 * The input's first 4 bytes choose the reader's max_bytes and seed the split lengths; the
 * rest is the stream. Every body handed out is checked against a one-pass parse of the
 * same stream (a header, then that many bytes), and so are the error (-EMSGSIZE exactly
 * where a header announces too much), the partial state at the end and the memory the
 * reader holds for a frame in progress (never much more than what has arrived). Some
 * pieces go straight into the body (frame_reader_space and _commit), as the daemon reads
 * a large frame's rest. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t next_split(uint32_t *state)
{
	/* xorshift32: any sequence will do, as long as the input decides it. */
	*state ^= *state << 13;
	*state ^= *state >> 17;
	*state ^= *state << 5;
	return *state;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct frame_reader fr;
	const uint8_t *stream;
	size_t len, pos = 0, ref = 0, max_bytes;
	uint32_t state;
	int failed = 0;

	if (size < 4)
		return 0;
	/* Small caps reach -EMSGSIZE, larger ones the doubling past FRAME_READER_FIRST_BYTES. */
	max_bytes = (size_t)data[0] * 97 + (data[1] & 1 ? 70000 : 0);
	state = (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3] | 1u;
	stream = data + 4;
	len = size - 4;
	frame_reader_init(&fr, max_bytes);
	while (pos < len) {
		/* Mostly short pieces (a byte at a time through headers), sometimes long ones. */
		uint32_t r = next_split(&state);
		size_t piece = r & 0x100 ? (r & 0x7fff) + 1 : (r & 7) + 1;
		uint8_t *body;
		size_t body_len;
		ssize_t used;

		if (piece > len - pos)
			piece = len - pos;
		/* Sometimes straight into the body, as the daemon reads a large frame. */
		size_t room;
		uint8_t *dst = r & 0x200 ? frame_reader_space(&fr, r >> 20 & 0xff, &room) : NULL;
		if (dst) {
			if (!room || room > fr.body_len - fr.body_have)
				abort();
			if (piece > room)
				piece = room;
			memcpy(dst, stream + pos, piece);
			frame_reader_commit(&fr, piece, &body, &body_len);
			used = (ssize_t)piece;
		} else {
			used = frame_reader_feed(&fr, stream + pos, piece, &body, &body_len);
		}
		if (used == -EMSGSIZE) {
			/* The reference must be at a header announcing more than the cap. */
			size_t hdr_end = ref + FRAME_HEADER_BYTES;

			if (hdr_end > pos + piece || frame_header_get(stream + ref) <= max_bytes ||
			    fr.last_len != frame_header_get(stream + ref))
				abort();
			failed = 1;
			break;
		}
		if (used < 0 || (size_t)used > piece)
			abort();
		if (body) {
			uint32_t want = frame_header_get(stream + ref);

			if (body_len != want ||
			    ref + FRAME_HEADER_BYTES + want != pos + (size_t)used ||
			    memcmp(body, stream + ref + FRAME_HEADER_BYTES, want) != 0)
				abort();
			ref += FRAME_HEADER_BYTES + want;
			free(body);
		} else if ((size_t)used != piece) {
			abort(); /* no frame completed: all of it must have been taken */
		}
		pos += (size_t)used;
		/* A frame in progress holds at most about twice what has arrived of it. */
		if (fr.body && frame_reader_held_bytes(&fr) >
				       2 * fr.body_have + FRAME_READER_FIRST_BYTES + 1)
			abort();
	}
	if (!failed && frame_reader_partial(&fr) != (ref < len))
		abort();
	frame_reader_fini(&fr);
	return 0;
}

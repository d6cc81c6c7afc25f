/* frame.c: incremental length-prefixed frame reader (see frame.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

void frame_reader_init(struct frame_reader *fr, size_t max_bytes)
{
	memset(fr, 0, sizeof(*fr));
	fr->max_bytes = max_bytes;
}

void frame_reader_fini(struct frame_reader *fr)
{
	if (fr->give)
		fr->give(fr->body);
	else
		free(fr->body);
	fr->body = NULL;
	fr->hdr_have = fr->body_have = fr->body_len = fr->body_cap = 0;
}

size_t frame_reader_held_bytes(const struct frame_reader *fr)
{
	return fr->body ? fr->body_cap + 1 : 0;
}

int frame_reader_partial(const struct frame_reader *fr)
{
	return fr->hdr_have > 0;
}

void frame_header_put(uint8_t hdr[FRAME_HEADER_BYTES], uint32_t body_len)
{
	hdr[0] = (uint8_t)(body_len >> 24);
	hdr[1] = (uint8_t)(body_len >> 16);
	hdr[2] = (uint8_t)(body_len >> 8);
	hdr[3] = (uint8_t)body_len;
}

uint32_t frame_header_get(const uint8_t hdr[FRAME_HEADER_BYTES])
{
	return (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
}

/* Make room for need body bytes (at most body_len), doubling the buffer: O(frame) copies in
 * all, and at most about twice what has arrived. 0 or -ENOMEM (the buffer is kept). */
static int frame_reader_grow(struct frame_reader *fr, size_t need)
{
	size_t cap = fr->body_cap;
	uint8_t *p;

	if (need <= cap)
		return 0;
	while (cap < need)
		cap = cap > fr->body_len / 2 ? fr->body_len : cap * 2;
	p = realloc(fr->body, cap + 1);
	if (!p)
		return -ENOMEM;
	fr->body = p;
	fr->body_cap = cap;
	return 0;
}

ssize_t frame_reader_feed(struct frame_reader *fr, const uint8_t *data, size_t len,
			  uint8_t **body, size_t *body_len)
{
	size_t used = 0;

	*body = NULL;
	*body_len = 0;
	if (fr->hdr_have < FRAME_HEADER_BYTES) {
		size_t n = FRAME_HEADER_BYTES - fr->hdr_have;
		if (n > len)
			n = len;
		memcpy(fr->hdr + fr->hdr_have, data, n);
		fr->hdr_have += n;
		used += n;
		if (fr->hdr_have < FRAME_HEADER_BYTES)
			return (ssize_t)used;
		fr->last_len = frame_header_get(fr->hdr);
		if (fr->last_len > fr->max_bytes)
			return -EMSGSIZE;
		fr->body_len = fr->last_len;
		fr->body_have = 0;
		size_t cap;
		if (fr->take && fr->body_len > FRAME_READER_FIRST_BYTES &&
		    (fr->body = fr->take(fr->body_len + 1, &cap))) {
			fr->body_cap = fr->body_len;
		} else {
			/* Not the announced length: only what arrives (see frame_reader_grow).
			 * One byte more than needed so that an empty body is still a real
			 * allocation. */
			fr->body_cap = fr->body_len < FRAME_READER_FIRST_BYTES
					       ? fr->body_len
					       : FRAME_READER_FIRST_BYTES;
			fr->body = malloc(fr->body_cap + 1);
			if (!fr->body)
				return -ENOMEM;
		}
	}
	size_t n = fr->body_len - fr->body_have;
	if (n > len - used)
		n = len - used;
	if (frame_reader_grow(fr, fr->body_have + n) < 0)
		return -ENOMEM;
	memcpy(fr->body + fr->body_have, data + used, n);
	frame_reader_commit(fr, n, body, body_len);
	return (ssize_t)(used + n);
}

uint8_t *frame_reader_space(struct frame_reader *fr, size_t min_left, size_t *room)
{
	size_t left, want;

	*room = 0;
	if (fr->hdr_have < FRAME_HEADER_BYTES || !fr->body)
		return NULL;
	left = fr->body_len - fr->body_have;
	if (left < min_left || left == 0)
		return NULL;
	/* Full: double it (frame_reader_grow), as much again as has arrived. */
	want = fr->body_cap < fr->body_len ? fr->body_cap : fr->body_len;
	if (want == fr->body_have && frame_reader_grow(fr, fr->body_have + 1) < 0)
		return NULL;
	*room = (fr->body_cap < fr->body_len ? fr->body_cap : fr->body_len) - fr->body_have;
	return fr->body + fr->body_have;
}

void frame_reader_commit(struct frame_reader *fr, size_t n, uint8_t **body, size_t *body_len)
{
	*body = NULL;
	*body_len = 0;
	fr->body_have += n;
	if (fr->body_have == fr->body_len) {
		*body = fr->body;
		*body_len = fr->body_len;
		fr->body = NULL;
		fr->hdr_have = fr->body_have = fr->body_len = fr->body_cap = 0;
	}
}

/* frame.h: the length-prefixed framing shared by rxgemmd and librxgemm.
 *
 * A frame is a 4-byte big-endian body length followed by the body (one protobuf message).
 * The reader is incremental: feed it whatever the socket gave, in any split, and it hands
 * back whole bodies. It never trusts the announced length: a frame's buffer grows (doubling)
 * as its bytes arrive, so a peer that announces a large frame and stalls holds about twice
 * what it sent, and never more than max_bytes. */
#ifndef RXGEMM_FRAME_H
#define RXGEMM_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FRAME_HEADER_BYTES 4

struct frame_reader {
	uint8_t hdr[FRAME_HEADER_BYTES];
	size_t hdr_have;
	uint8_t *body;      /* owned until handed out by frame_reader_feed */
	size_t body_len;    /* announced length of the frame being read */
	size_t body_have;
	size_t body_cap;    /* bytes allocated for the body (plus one) */
	size_t max_bytes;   /* cap on body_len */
	uint32_t last_len;  /* the length announced by the last header read (for errors) */
	/* Optional (the daemon's hostbuf_take): a buffer of at least bytes that the reader's
	 * owner has already, into which a frame announcing that much is read (its usable
	 * size in *cap), or NULL: the buffer then grows as the bytes arrive. Nothing is
	 * allocated from a header's claim: only what is there already is taken. */
	void *(*take)(size_t bytes, size_t *cap);
	/* Optional (the daemon's hostbuf_free): how the reader frees a body it still holds
	 * (frame_reader_fini), which the owner may have taken; NULL: free(). */
	void (*give)(void *body);
};

void frame_reader_init(struct frame_reader *fr, size_t max_bytes);
void frame_reader_fini(struct frame_reader *fr);

/* The first allocation for a frame's body; it doubles from there as bytes arrive. */
#define FRAME_READER_FIRST_BYTES 4096

/* Bytes the reader holds for the frame in progress. */
size_t frame_reader_held_bytes(const struct frame_reader *fr);

/* True while a frame has been started (header bytes seen) but not finished. */
int frame_reader_partial(const struct frame_reader *fr);

/* Consume bytes from data[0..len). Returns how many were consumed (>= 0). When a frame
 * completes, *body and *body_len are set (the caller owns *body and frees it with free();
 * a zero-length body comes back as a non-NULL one-byte allocation) and the return counts
 * the bytes up to the end of that frame: call again with the rest. When no frame
 * completes, *body is NULL and all of len was consumed.
 * Errors: -EMSGSIZE when a header announces more than max_bytes (fr->last_len says how
 * much; the stream cannot be resynchronised and should be closed), -ENOMEM. */
ssize_t frame_reader_feed(struct frame_reader *fr, const uint8_t *data, size_t len,
			  uint8_t **body, size_t *body_len);

/* Room for the frame body in progress to be read straight into, so that a large frame is
 * not copied through the caller's buffer: NULL when no body is in progress, fewer than
 * min_left of its bytes are still to come or memory is short (feed through a buffer then:
 * that reports it); else where they go, *room of them (the buffer doubled when full, as
 * frame_reader_feed grows it: never more than about twice what has arrived). Then
 * frame_reader_commit with what was put there. */
uint8_t *frame_reader_space(struct frame_reader *fr, size_t min_left, size_t *room);
/* n bytes (at most the room given) were put at frame_reader_space's pointer. When they end
 * the frame, *body and *body_len are set as frame_reader_feed sets them. */
void frame_reader_commit(struct frame_reader *fr, size_t n, uint8_t **body, size_t *body_len);

/* Write the header for a body of body_len bytes into hdr. */
void frame_header_put(uint8_t hdr[FRAME_HEADER_BYTES], uint32_t body_len);
uint32_t frame_header_get(const uint8_t hdr[FRAME_HEADER_BYTES]);

#endif

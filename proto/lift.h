/* lift.h: large bytes fields kept out of protobuf-c's copies.
 *
 * protobuf-c's unpack copies every bytes field into memory of its own, and its pack copies
 * it into the output: for a GEMM's operands in the frame that is a copy of megabytes into
 * fresh pages, which costs more than the socket itself (docs/PERFORMANCE.md, the ninth
 * session). A lift names a bytes field one level down, `outer.inner` (outer a message field
 * of the top message, inner a bytes field of that message), such as Request.gemm.a.
 *
 * Reading: lift_scan finds where such fields' data lie in a packed message and writes a
 * reduced copy of the message without them (all else verbatim, the enclosing lengths
 * mended); unpack that, then lift_restore points the fields at the data where it lies in
 * the original bytes, which must outlive the message. Before the message is freed,
 * lift_clear takes them back out (free_unpacked would free them otherwise).
 *
 * Writing: pack the message with the field empty, then lift_splice says how to send the
 * packed bytes with the data added as the field, the data itself never copied.
 *
 * A field is lifted only where it is unambiguous: its message occurs once at the top and
 * the field once in it, so that the reduced message plus the field decodes exactly as the
 * original would; anything else is left to protobuf-c (nothing lifted). */
#ifndef RXGEMM_LIFT_H
#define RXGEMM_LIFT_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* The data of a field smaller than this stays in the message: not worth the bookkeeping. */
#define LIFT_MIN_BYTES (64u * 1024)

struct lift_field {
	uint32_t outer, inner; /* field numbers: a message field of the top message, a bytes
				* field of that message */
	int lifted;            /* lift_scan: 1 when taken out, with its data at: */
	size_t offset, len;    /* bytes into the original message */
};

/* Scan msg[0..len) for the n fields f names and take out those whose data is at least
 * min_bytes long and unambiguous (above). Returns how many were taken out, with *reduced
 * (malloc'd, the caller frees it) and *reduced_len set, or 0 when none was (nothing
 * allocated; unpack msg itself), or -ENOMEM. Bytes that do not parse as far as the scan
 * reads lift nothing: protobuf-c gives its verdict on them. */
int lift_scan(const uint8_t *msg, size_t len, struct lift_field *f, size_t n,
	      size_t min_bytes, uint8_t **reduced, size_t *reduced_len);

/* Point m's lifted fields (m unpacked from the reduced message) at their data in msg, the
 * original bytes. 0, or -EINVAL when m does not have them as lift_scan saw them (a schema
 * that does not match the numbers: unpack msg itself instead); then nothing was changed. */
int lift_restore(ProtobufCMessage *m, const uint8_t *msg, const struct lift_field *f,
		 size_t n);

/* Empty m's lifted fields again, so that free_unpacked does not free the data. */
void lift_clear(ProtobufCMessage *m, const struct lift_field *f, size_t n);

/* The way to send packed[0..len) (a message packed with field outer.inner empty) with
 * data_len bytes of data as that field: head[0..head_len), then the data, then
 * packed[tail..len). head (at most len + LIFT_SPLICE_EXTRA bytes) takes the bytes up to
 * the field's tag and length. 0, or -EINVAL when outer is not in packed exactly once as a
 * message (pack the data inline then). */
#define LIFT_SPLICE_EXTRA 32
int lift_splice(const uint8_t *packed, size_t len, uint32_t outer, uint32_t inner,
		size_t data_len, uint8_t *head, size_t *head_len, size_t *tail);

/* Several fields sent at once, each one's data at an aligned offset, for a reader that
 * keeps the data where it arrived (the daemon's lifted fields are read as floats where
 * they lie, and moved when they are not 4-byte aligned). packed[0..len) was packed with
 * the fields empty; the message goes out as head[0..seg_end[0]), the data of puts[0],
 * head[seg_end[0]..seg_end[1]), the data of puts[1], ..., then packed[tail..len). Before
 * each field's tag a field pad (bytes, which the reader must ignore) makes its data start
 * a multiple of align bytes (a power of two, at most 64) from the message's start. head
 * takes at most len + LIFT_SPLICE_EXTRA + n * LIFT_ALIGN_EXTRA bytes. 0, or -EINVAL when
 * outer is not in packed exactly once as a message or no such layout exists (send it
 * another way then). */
#define LIFT_ALIGN_EXTRA (2 * 64 + 3 * 10)
struct lift_put {
	uint32_t inner; /* a bytes field of outer */
	size_t len;
};
int lift_splice_aligned(const uint8_t *packed, size_t len, uint32_t outer, uint32_t pad,
			const struct lift_put *puts, size_t n, size_t align, uint8_t *head,
			size_t *seg_end, size_t *tail);

/* Reading a message as it arrives: where one lifted field's data lies, found from the
 * message's first bytes, so that the data can be read straight into memory of its own. */
struct lift_cut {
	uint32_t outer, inner;
	size_t outer_start;   /* the outer field's tag: every field before it is in the prefix
			       * (wirecheck_varint_field reads them) */
	size_t outer_tag_end; /* the outer field's tag ends here; its length follows */
	size_t outer_data, outer_len;
	size_t field_start;   /* the lifted field's tag */
	size_t data, len;     /* its data: data <= prefix_len < data + len */
};

/* In a message of total_len bytes of which prefix[0..prefix_len) has come, find the first
 * of f's fields (n of them) whose tag and length lie in the prefix and whose data is at
 * least min_bytes long and goes past it. 1 with *cut set, or 0 (read the whole message;
 * nothing to lift). */
int lift_locate(const uint8_t *prefix, size_t prefix_len, size_t total_len,
		const struct lift_field *f, size_t n, size_t min_bytes, struct lift_cut *cut);

/* The message without the field cut found: prefix (as given to lift_locate) and suffix,
 * the suffix_len bytes after the field's data, make *reduced (malloc'd). 0; -EINVAL when
 * the whole message is not one where the field is unambiguous (lift.h), or -ENOMEM: read
 * it whole then. */
int lift_cut_reduce(const struct lift_cut *cut, const uint8_t *prefix, const uint8_t *suffix,
		    size_t suffix_len, uint8_t **reduced, size_t *reduced_len);

/* Point m's field cut->outer.inner at data (len bytes; m takes it: free_unpacked frees it
 * with free()). 0, or -EINVAL as lift_restore. */
int lift_cut_restore(ProtobufCMessage *m, const struct lift_cut *cut, uint8_t *data);

/* Bytes of the varint encoding of v. */
size_t lift_varint_size(uint64_t v);

#endif

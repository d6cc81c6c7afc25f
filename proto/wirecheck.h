/* wirecheck.h: a walk over a protobuf message's wire format, before it is unpacked.
 *
 * protobuf-c's unpack allocates per field occurrence (a scan record for every field, a
 * record and a copy for every unknown one), so a frame of small fields costs tens of times
 * its size before anything can look at what it holds. wirecheck_message reads the bytes
 * against the message's generated descriptor without allocating and says what is wrong
 * with them: a field the schema does not have (at any depth), a wire type a field cannot
 * have, data cut short, messages nested too deep, a field given too many times. A message
 * that passes costs its unpack at most a small multiple of its size plus, per message,
 * its fields times max_elements scan records. */
#ifndef RXGEMM_WIRECHECK_H
#define RXGEMM_WIRECHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* What is wrong, the most serious first: a walk stops at the first fault of the first
 * three kinds; an unknown field is remembered (the first one) and the walk goes on. */
enum wirecheck_fault {
	WIRECHECK_OK = 0,
	WIRECHECK_TRUNCATED,  /* a tag, value or length runs past the end of its message */
	WIRECHECK_MALFORMED,  /* field number 0, a varint over 10 bytes, a group, wire type 6
			       * or 7, a packed run that is not whole elements */
	WIRECHECK_WIRE_TYPE,  /* a known field in a wire type its type cannot have */
	WIRECHECK_DEPTH,      /* a message nested more than max_depth levels below the top */
	WIRECHECK_TOO_MANY,   /* one field of one message with more than max_elements
			       * elements (repeated) or occurrences (any other field) */
	WIRECHECK_UNKNOWN,    /* a field number that the message's schema does not have */
};

struct wirecheck_limits {
	unsigned max_depth;     /* levels of messages below the top one (top: 0) */
	uint32_t max_elements;  /* per field of one message, see WIRECHECK_TOO_MANY */
};

struct wirecheck_result {
	int fault;              /* enum wirecheck_fault */
	uint32_t field;         /* the field number concerned; 0 when no tag was read */
	unsigned depth;         /* of the message it is in (0: the top one) */
	size_t offset;          /* of its tag (or of the bad bytes) in the buffer */
	const char *message;    /* the full name of that message's type ("rxgemm.RegionRef") */
	bool top_oneof_set;     /* the top message has a known member of a oneof */
};

/* Fields of one message descriptor the walk can count (it keeps the counts on the stack);
 * a descriptor with more is refused with -EINVAL. */
#define WIRECHECK_MAX_FIELDS 128

/* Walk buf[0..len) as a desc message (its fields sorted by number, as protoc-c generates
 * them). Fills *res and returns res->fault: 0 when nothing is wrong, else an enum
 * wirecheck_fault; -EINVAL when a descriptor has more than WIRECHECK_MAX_FIELDS fields.
 * Reads nothing outside buf and allocates nothing; its stack is bounded by max_depth. */
int wirecheck_message(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
		      const struct wirecheck_limits *lim, struct wirecheck_result *res);

/* A short name for a fault, for error sentences ("unknown field", "truncated data"). */
const char *wirecheck_fault_name(int fault);

/* The last varint given for field number field at the top level of buf[0..len) (where
 * protobuf takes a repeated scalar's last value from). 0, -ENOENT (not there) or -EBADMSG
 * (buf is malformed before the end; *value then holds any value found before that). */
int wirecheck_varint_field(const uint8_t *buf, size_t len, uint32_t field, uint64_t *value);

#endif

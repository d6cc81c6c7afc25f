/* wirecheck.c: the protobuf wire format walked against generated descriptors (see
 * wirecheck.h).
 *
 * The wire format: a message is a run of (tag, value) pairs; the tag is a varint holding
 * field_number << 3 | wire_type, and the wire type says how long the value is: 0 a varint,
 * 1 eight bytes, 2 a varint length and that many bytes (strings, bytes, messages, packed
 * repeated scalars), 5 four bytes; 3 and 4 delimit groups, which proto3 has not got. */
#include <errno.h>
#include <string.h>

#include "wirecheck.h"

/* The largest field number protobuf allows (2^29 - 1). */
#define WIRECHECK_FIELD_NUMBER_MAX 0x1fffffffu

struct wirecheck_walk {
	const struct wirecheck_limits *lim;
	const uint8_t *base; /* the whole buffer, for offsets */
	struct wirecheck_result *res;
	bool have_unknown;   /* res holds the first unknown field */
};

const char *wirecheck_fault_name(int fault)
{
	switch (fault) {
	case WIRECHECK_OK: return "no fault";
	case WIRECHECK_TRUNCATED: return "truncated data";
	case WIRECHECK_MALFORMED: return "malformed data";
	case WIRECHECK_WIRE_TYPE: return "wrong wire type";
	case WIRECHECK_DEPTH: return "messages nested too deep";
	case WIRECHECK_TOO_MANY: return "too many elements";
	case WIRECHECK_UNKNOWN: return "unknown field";
	}
	return "unknown fault";
}

/* Read a varint at p[*pos..len), advancing *pos. 0, WIRECHECK_TRUNCATED or
 * WIRECHECK_MALFORMED (more than the 10 bytes a 64-bit value takes). */
static int wirecheck_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
	uint64_t x = 0;

	for (unsigned i = 0; i < 10; i++) {
		if (*pos >= len)
			return WIRECHECK_TRUNCATED;
		uint8_t b = p[(*pos)++];
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return WIRECHECK_MALFORMED;
}

/* The wire type a field of type t has when not packed. */
static unsigned wirecheck_wire_type(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return 5;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 1;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return 2;
	default: /* the integer types, bool and enums */
		return 0;
	}
}

/* How many elements of wire type wt a packed run p[0..len) holds. 0 or a fault. */
static int wirecheck_packed_count(const uint8_t *p, size_t len, unsigned wt, uint64_t *n)
{
	size_t pos = 0;
	uint64_t v;
	int ret;

	switch (wt) {
	case 5:
	case 1: {
		size_t size = wt == 5 ? 4 : 8;

		if (len % size)
			return WIRECHECK_MALFORMED;
		*n = len / size;
		return 0;
	}
	default:
		*n = 0;
		while (pos < len) {
			if ((ret = wirecheck_varint(p, len, &pos, &v)))
				return ret;
			(*n)++;
		}
		return 0;
	}
}

/* The field numbered number and its index, by bisection (protoc-c sorts them). */
static const ProtobufCFieldDescriptor *wirecheck_field(const ProtobufCMessageDescriptor *desc,
						       uint64_t number, size_t *index)
{
	size_t lo = 0, hi = desc->n_fields;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (desc->fields[mid].id == number) {
			*index = mid;
			return &desc->fields[mid];
		}
		if (desc->fields[mid].id < number)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int wirecheck_fail(struct wirecheck_walk *w, int fault, uint64_t field, unsigned depth,
			  const uint8_t *at, const ProtobufCMessageDescriptor *desc)
{
	w->res->fault = fault;
	w->res->field = field <= UINT32_MAX ? (uint32_t)field : 0;
	w->res->depth = depth;
	w->res->offset = (size_t)(at - w->base);
	w->res->message = desc->name;
	return fault;
}

/* Walk p[0..len) as one desc message at depth. 0 (an unknown field does not stop the walk),
 * a fault, or -EINVAL. */
static int wirecheck_walk(struct wirecheck_walk *w, const ProtobufCMessageDescriptor *desc,
			  const uint8_t *p, size_t len, unsigned depth)
{
	uint32_t counts[WIRECHECK_MAX_FIELDS];
	size_t pos = 0;
	int ret;

	if (desc->n_fields > WIRECHECK_MAX_FIELDS)
		return -EINVAL;
	memset(counts, 0, sizeof(counts[0]) * desc->n_fields);
	while (pos < len) {
		const ProtobufCFieldDescriptor *f;
		size_t tag_at = pos, val_at, val_len = 0, index = 0;
		uint64_t key, number, v, elements = 1;
		unsigned wt, want;

		if ((ret = wirecheck_varint(p, len, &pos, &key)))
			return wirecheck_fail(w, ret, 0, depth, p + tag_at, desc);
		number = key >> 3;
		wt = (unsigned)(key & 7);
		if (number == 0 || number > WIRECHECK_FIELD_NUMBER_MAX)
			return wirecheck_fail(w, WIRECHECK_MALFORMED, 0, depth, p + tag_at, desc);
		val_at = pos;
		switch (wt) {
		case 0:
			ret = wirecheck_varint(p, len, &pos, &v);
			break;
		case 1:
		case 5: {
			size_t size = wt == 5 ? 4 : 8;

			ret = len - pos < size ? WIRECHECK_TRUNCATED : 0;
			pos += ret ? 0 : size;
			break;
		}
		case 2:
			if ((ret = wirecheck_varint(p, len, &pos, &v)))
				break;
			if (v > len - pos) {
				ret = WIRECHECK_TRUNCATED;
				break;
			}
			val_at = pos;
			val_len = (size_t)v;
			pos += val_len;
			break;
		default:
			ret = WIRECHECK_MALFORMED;
			break;
		}
		if (ret)
			return wirecheck_fail(w, ret, number, depth, p + tag_at, desc);
		if (!(f = wirecheck_field(desc, number, &index))) {
			/* Kept going: a fault further on matters more, and the caller may want
			 * to know whether a known oneof member came too. */
			if (!w->have_unknown) {
				wirecheck_fail(w, WIRECHECK_UNKNOWN, number, depth, p + tag_at,
					       desc);
				w->res->fault = WIRECHECK_OK;
				w->have_unknown = true;
			}
			continue;
		}
		if (depth == 0 && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
			w->res->top_oneof_set = true;
		want = wirecheck_wire_type(f->type);
		if (wt != want) {
			/* Repeated scalars may come packed whatever the schema says. */
			if (wt != 2 || want == 2 || f->label != PROTOBUF_C_LABEL_REPEATED)
				return wirecheck_fail(w, WIRECHECK_WIRE_TYPE, number, depth,
						      p + tag_at, desc);
			if ((ret = wirecheck_packed_count(p + val_at, val_len, want, &elements)))
				return wirecheck_fail(w, ret, number, depth, p + tag_at, desc);
		}
		if (elements > w->lim->max_elements - counts[index])
			return wirecheck_fail(w, WIRECHECK_TOO_MANY, number, depth, p + tag_at,
					      desc);
		counts[index] += (uint32_t)elements;
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (depth >= w->lim->max_depth)
			return wirecheck_fail(w, WIRECHECK_DEPTH, number, depth, p + tag_at, desc);
		ret = wirecheck_walk(w, f->descriptor, p + val_at, val_len, depth + 1);
		if (ret)
			return ret;
	}
	return 0;
}

int wirecheck_message(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
		      const struct wirecheck_limits *lim, struct wirecheck_result *res)
{
	struct wirecheck_walk w = { .lim = lim, .base = buf, .res = res };
	int ret;

	memset(res, 0, sizeof(*res));
	ret = wirecheck_walk(&w, desc, buf, len, 0);
	if (ret)
		return ret;
	if (w.have_unknown)
		res->fault = WIRECHECK_UNKNOWN;
	return res->fault;
}

int wirecheck_varint_field(const uint8_t *buf, size_t len, uint32_t field, uint64_t *value)
{
	size_t pos = 0;
	bool found = false;

	while (pos < len) {
		uint64_t key, v;

		if (wirecheck_varint(buf, len, &pos, &key))
			return -EBADMSG;
		switch (key & 7) {
		case 0:
			if (wirecheck_varint(buf, len, &pos, &v))
				return -EBADMSG;
			if (key >> 3 == field) {
				*value = v;
				found = true;
			}
			break;
		case 1:
		case 5: {
			size_t size = (key & 7) == 5 ? 4 : 8;

			if (len - pos < size)
				return -EBADMSG;
			pos += size;
			break;
		}
		case 2:
			if (wirecheck_varint(buf, len, &pos, &v) || v > len - pos)
				return -EBADMSG;
			pos += (size_t)v;
			break;
		default:
			return -EBADMSG;
		}
	}
	return found ? 0 : -ENOENT;
}

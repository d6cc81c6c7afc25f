/* lift.c: large bytes fields kept out of protobuf-c's copies (see lift.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lift.h"

/* One field of a packed message: its tag at start, the tag's end, and for a
 * length-delimited one its data at data[0..dlen); the field ends at end. */
struct lift_wfield {
	uint32_t num;
	unsigned wt;
	size_t start, tag_end, data, dlen, end;
};

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static int lift_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
	uint64_t x = 0;

	for (unsigned i = 0; i < 10; i++) {
		if (*pos >= len)
			return -1;
		uint8_t b = p[(*pos)++];
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -1;
}

size_t lift_varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static size_t lift_varint_put(uint8_t *out, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

/* The field at *pos of a message that ends at end, of which p[0..avail) can be read
 * (avail <= end; the field's tag and any varint must lie there, its data may run on);
 * *pos is moved past it. 0, or -1 on anything this scan does not read (groups included:
 * they are not ours to lift from). */
static int lift_next_in(const uint8_t *p, size_t avail, size_t end, size_t *pos,
			struct lift_wfield *w)
{
	uint64_t tag, v;

	w->start = *pos;
	if (lift_varint(p, avail, pos, &tag) < 0 || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
		return -1;
	w->num = (uint32_t)(tag >> 3);
	w->wt = (unsigned)(tag & 7);
	w->tag_end = *pos;
	w->data = w->dlen = 0;
	switch (w->wt) {
	case WT_VARINT:
		if (lift_varint(p, avail, pos, &v) < 0)
			return -1;
		break;
	case WT_I64:
	case WT_I32: {
		size_t size = w->wt == WT_I64 ? 8 : 4;
		if (end - *pos < size)
			return -1;
		*pos += size;
		break;
	}
	case WT_LEN:
		if (lift_varint(p, avail, pos, &v) < 0 || v > end - *pos)
			return -1;
		w->data = *pos;
		w->dlen = (size_t)v;
		*pos += (size_t)v;
		break;
	default:
		return -1;
	}
	w->end = *pos;
	return 0;
}

static int lift_next(const uint8_t *p, size_t len, size_t *pos, struct lift_wfield *w)
{
	return lift_next_in(p, len, len, pos, w);
}

/* The one occurrence of field num at the top of p[0..len), length-delimited: 1 with *out
 * set, or 0 (absent, repeated, another wire type, or p does not parse). */
static int lift_find_once(const uint8_t *p, size_t len, uint32_t num, struct lift_wfield *out)
{
	struct lift_wfield w;
	size_t pos = 0;
	int seen = 0;

	while (pos < len) {
		if (lift_next(p, len, &pos, &w) < 0)
			return 0;
		if (w.num != num)
			continue;
		if (w.wt != WT_LEN || seen++)
			return 0;
		*out = w;
	}
	return seen;
}

/* Is field w (inside the outer message's data) one that f lifts from outer? */
static bool lift_is_lifted(const struct lift_field *f, size_t n, uint32_t outer, size_t base,
			   const struct lift_wfield *w)
{
	for (size_t i = 0; i < n; i++)
		if (f[i].lifted && f[i].outer == outer && f[i].inner == w->num &&
		    base + w->data == f[i].offset)
			return true;
	return false;
}

int lift_scan(const uint8_t *msg, size_t len, struct lift_field *f, size_t n,
	      size_t min_bytes, uint8_t **reduced, size_t *reduced_len)
{
	struct lift_wfield w, o, in;
	size_t pos, count = 0, removed = 0;
	uint8_t *out;

	*reduced = NULL;
	*reduced_len = 0;
	for (size_t i = 0; i < n; i++) {
		bool again = false;

		f[i].lifted = 0;
		f[i].offset = f[i].len = 0;
		for (size_t j = 0; j < i; j++)
			again |= f[j].outer == f[i].outer && f[j].inner == f[i].inner;
		if (again || !lift_find_once(msg, len, f[i].outer, &o) ||
		    !lift_find_once(msg + o.data, o.dlen, f[i].inner, &in) || in.dlen < min_bytes)
			continue;
		f[i].lifted = 1;
		f[i].offset = o.data + in.data;
		f[i].len = in.dlen;
		removed += in.end - in.start;
		count++;
	}
	if (!count)
		return 0;
	/* At most msg less the fields taken out: each outer's length only shrinks, and so
	 * its varint. */
	out = malloc(len - removed + 1);
	if (!out)
		return -ENOMEM;
	size_t at = 0;
	for (pos = 0; pos < len;) {
		bool has = false;

		lift_next(msg, len, &pos, &w); /* parsed once already: cannot fail */
		for (size_t i = 0; i < n; i++)
			has |= f[i].lifted && f[i].outer == w.num;
		if (!has) {
			memcpy(out + at, msg + w.start, w.end - w.start);
			at += w.end - w.start;
			continue;
		}
		/* The outer message again, without the lifted fields. */
		size_t keep = w.dlen;
		const uint8_t *d = msg + w.data;
		for (size_t ip = 0; ip < w.dlen;) {
			lift_next(d, w.dlen, &ip, &in);
			if (lift_is_lifted(f, n, w.num, w.data, &in))
				keep -= in.end - in.start;
		}
		memcpy(out + at, msg + w.start, w.tag_end - w.start);
		at += w.tag_end - w.start;
		at += lift_varint_put(out + at, keep);
		for (size_t ip = 0; ip < w.dlen;) {
			lift_next(d, w.dlen, &ip, &in);
			if (lift_is_lifted(f, n, w.num, w.data, &in))
				continue;
			memcpy(out + at, d + in.start, in.end - in.start);
			at += in.end - in.start;
		}
	}
	*reduced = out;
	*reduced_len = at;
	return (int)count;
}

/* Where m keeps bytes field outer.inner, and the presence word to set with it (NULL when
 * the field has none); NULL when m does not have that field as a singular bytes field of
 * a singular message present now. */
static ProtobufCBinaryData *lift_member(ProtobufCMessage *m, uint32_t outer, uint32_t inner,
					uint32_t **presence, uint32_t *presence_value)
{
	const ProtobufCFieldDescriptor *fo, *fi;
	ProtobufCMessage *sub;

	fo = protobuf_c_message_descriptor_get_field(m->descriptor, outer);
	if (!fo || fo->type != PROTOBUF_C_TYPE_MESSAGE || fo->label == PROTOBUF_C_LABEL_REPEATED)
		return NULL;
	if ((fo->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
	    *(const uint32_t *)((const char *)m + fo->quantifier_offset) != outer)
		return NULL;
	sub = *(ProtobufCMessage **)((char *)m + fo->offset);
	if (!sub)
		return NULL;
	fi = protobuf_c_message_descriptor_get_field(sub->descriptor, inner);
	if (!fi || fi->type != PROTOBUF_C_TYPE_BYTES || fi->label == PROTOBUF_C_LABEL_REPEATED)
		return NULL;
	*presence = NULL;
	if (fi->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		*presence = (uint32_t *)((char *)sub + fi->quantifier_offset);
		*presence_value = inner;
	} else if (fi->label == PROTOBUF_C_LABEL_OPTIONAL) {
		/* protobuf_c_boolean is an int */
		*presence = (uint32_t *)((char *)sub + fi->quantifier_offset);
		*presence_value = 1;
	}
	return (ProtobufCBinaryData *)((char *)sub + fi->offset);
}

int lift_restore(ProtobufCMessage *m, const uint8_t *msg, const struct lift_field *f,
		 size_t n)
{
	uint32_t *presence, value;

	for (size_t i = 0; i < n; i++) {
		const ProtobufCBinaryData *bd;

		if (!f[i].lifted)
			continue;
		bd = lift_member(m, f[i].outer, f[i].inner, &presence, &value);
		if (!bd || bd->len || (presence && *presence))
			return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		ProtobufCBinaryData *bd;

		if (!f[i].lifted)
			continue;
		bd = lift_member(m, f[i].outer, f[i].inner, &presence, &value);
		bd->data = (uint8_t *)msg + f[i].offset;
		bd->len = f[i].len;
		if (presence)
			*presence = value;
	}
	return 0;
}

void lift_clear(ProtobufCMessage *m, const struct lift_field *f, size_t n)
{
	uint32_t *presence, value;

	for (size_t i = 0; i < n; i++) {
		ProtobufCBinaryData *bd;

		if (!f[i].lifted)
			continue;
		bd = lift_member(m, f[i].outer, f[i].inner, &presence, &value);
		if (!bd)
			continue;
		bd->data = NULL;
		bd->len = 0;
		if (presence)
			*presence = 0;
	}
}

int lift_splice(const uint8_t *packed, size_t len, uint32_t outer, uint32_t inner,
		size_t data_len, uint8_t *head, size_t *head_len, size_t *tail)
{
	struct lift_wfield o;
	uint64_t tag = (uint64_t)inner << 3 | WT_LEN;
	size_t at, field = lift_varint_size(tag) + lift_varint_size(data_len);

	if (!lift_find_once(packed, len, outer, &o))
		return -EINVAL;
	memcpy(head, packed, o.tag_end);
	at = o.tag_end;
	at += lift_varint_put(head + at, (uint64_t)o.dlen + field + data_len);
	memcpy(head + at, packed + o.data, o.dlen);
	at += o.dlen;
	at += lift_varint_put(head + at, tag);
	at += lift_varint_put(head + at, data_len);
	*head_len = at;
	*tail = o.data + o.dlen;
	return 0;
}

/* The pad field of lift_splice_aligned before a field at pos (from the message's start)
 * whose tag and length take field bytes: its data's length, so that the data starts at a
 * multiple of align. */
static size_t lift_pad_len(size_t pos, size_t pad_tag_len, size_t field, size_t align)
{
	return (align - (pos + pad_tag_len + 1 + field) % align) % align;
}

/* lift_splice_aligned's layout with the outer message's length in vs bytes and the first
 * pad bump bytes longer (0 or align): written to head when head is not NULL. The outer
 * message's length. */
static size_t lift_aligned_layout(const uint8_t *packed, const struct lift_wfield *o,
				  uint64_t pad_tag, const struct lift_put *puts, size_t n,
				  size_t align, size_t vs, size_t bump, uint8_t *head,
				  size_t *seg_end)
{
	size_t ptl = lift_varint_size(pad_tag), inner = o->dlen;
	size_t at = o->tag_end + vs + o->dlen, data = 0; /* head's bytes; the data's before */

	if (head) {
		memcpy(head, packed, o->tag_end); /* the length (vs bytes) goes in last */
		memcpy(head + o->tag_end + vs, packed + o->data, o->dlen);
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t tag = (uint64_t)puts[i].inner << 3 | WT_LEN;
		size_t field = lift_varint_size(tag) + lift_varint_size(puts[i].len);
		size_t pl = lift_pad_len(at + data, ptl, field, align) + (i ? 0 : bump);

		if (head) {
			lift_varint_put(head + at, pad_tag);
			head[at + ptl] = (uint8_t)pl; /* < 128: one byte */
			memset(head + at + ptl + 1, 0, pl);
			lift_varint_put(head + at + ptl + 1 + pl, tag);
			lift_varint_put(head + at + ptl + 1 + pl + lift_varint_size(tag),
					puts[i].len);
			seg_end[i] = at + ptl + 1 + pl + field;
		}
		at += ptl + 1 + pl + field;
		data += puts[i].len; /* sent from the caller's memory, not head */
		inner += ptl + 1 + pl + field + puts[i].len;
	}
	if (head)
		lift_varint_put(head + o->tag_end, inner); /* vs bytes: the caller checked */
	return inner;
}

int lift_splice_aligned(const uint8_t *packed, size_t len, uint32_t outer, uint32_t pad,
			const struct lift_put *puts, size_t n, size_t align, uint8_t *head,
			size_t *seg_end, size_t *tail)
{
	uint64_t pad_tag = (uint64_t)pad << 3 | WT_LEN;
	struct lift_wfield o;

	if (!n || !align || align > 64 || (align & (align - 1)) ||
	    !lift_find_once(packed, len, outer, &o))
		return -EINVAL;
	/* The outer message's length comes before everything padded, and its varint's size
	 * moves them all: try each size until the length it gives has that size. One more
	 * byte of it shortens the first pad by one, so a length of exactly 128^k bytes with k
	 * of them is 128^k - 1 with k + 1: the first pad then takes align more. */
	for (size_t vs = 1; vs <= 10; vs++)
		for (size_t bump = 0; bump <= align; bump += align)
			if (lift_varint_size(lift_aligned_layout(packed, &o, pad_tag, puts, n, align,
								 vs, bump, NULL, NULL)) == vs) {
				lift_aligned_layout(packed, &o, pad_tag, puts, n, align, vs, bump,
						    head, seg_end);
				*tail = o.data + o.dlen;
				return 0;
			}
	return -EINVAL;
}

int lift_locate(const uint8_t *prefix, size_t prefix_len, size_t total_len,
		const struct lift_field *f, size_t n, size_t min_bytes, struct lift_cut *cut)
{
	struct lift_wfield w, in;
	size_t pos = 0;
	bool found = false;

	if (prefix_len > total_len)
		return 0;
	/* Fields before the one wanted must lie in the prefix whole. */
	while (!found && pos < prefix_len) {
		if (lift_next_in(prefix, prefix_len, total_len, &pos, &w) < 0)
			return 0;
		for (size_t i = 0; i < n; i++)
			found |= f[i].outer == w.num && w.wt == WT_LEN;
		if (!found && w.end > prefix_len)
			return 0;
	}
	if (!found)
		return 0;
	size_t end = w.data + w.dlen, ip = w.data;
	/* Inside the outer message: nothing of its fields may run past its end. */
	size_t avail = prefix_len < end ? prefix_len : end;
	while (ip < avail) {
		if (lift_next_in(prefix, avail, end, &ip, &in) < 0)
			return 0;
		for (size_t i = 0; i < n; i++) {
			if (f[i].outer != w.num || f[i].inner != in.num || in.wt != WT_LEN)
				continue;
			if (in.dlen < min_bytes || in.end <= prefix_len || in.end > end)
				return 0;
			*cut = (struct lift_cut){ .outer = w.num, .inner = in.num,
						  .outer_start = w.start,
						  .outer_tag_end = w.tag_end, .outer_data = w.data,
						  .outer_len = w.dlen, .field_start = in.start,
						  .data = in.data, .len = in.dlen };
			return 1;
		}
		if (in.end > avail)
			return 0;
	}
	return 0;
}

int lift_cut_reduce(const struct lift_cut *cut, const uint8_t *prefix, const uint8_t *suffix,
		    size_t suffix_len, uint8_t **reduced, size_t *reduced_len)
{
	size_t field = cut->data + cut->len - cut->field_start;
	size_t before = cut->field_start - cut->outer_data; /* the outer's bytes before it */
	struct lift_wfield o, in;
	uint8_t *out;
	size_t at;

	*reduced = NULL;
	*reduced_len = 0;
	/* A cut lift_locate made lies inside its outer message; refuse any other. */
	if (cut->outer_tag_end > cut->outer_data || cut->outer_data > cut->field_start ||
	    cut->field_start > cut->data || field > cut->outer_len ||
	    cut->field_start - cut->outer_data > cut->outer_len - field)
		return -EINVAL;
	out = malloc(cut->field_start + suffix_len + 1);
	if (!out)
		return -ENOMEM;
	memcpy(out, prefix, cut->outer_tag_end);
	at = cut->outer_tag_end;
	at += lift_varint_put(out + at, cut->outer_len - field);
	memcpy(out + at, prefix + cut->outer_data, before);
	at += before;
	memcpy(out + at, suffix, suffix_len);
	at += suffix_len;
	/* Unambiguous: the outer message once, the field now nowhere in it. */
	if (!lift_find_once(out, at, cut->outer, &o) || o.dlen != cut->outer_len - field) {
		free(out);
		return -EINVAL;
	}
	for (size_t ip = 0; ip < o.dlen;) {
		if (lift_next(out + o.data, o.dlen, &ip, &in) < 0 || in.num == cut->inner) {
			free(out);
			return -EINVAL;
		}
	}
	*reduced = out;
	*reduced_len = at;
	return 0;
}

int lift_cut_restore(ProtobufCMessage *m, const struct lift_cut *cut, uint8_t *data)
{
	struct lift_field f = { .outer = cut->outer, .inner = cut->inner, .lifted = 1,
				.offset = 0, .len = cut->len };

	return lift_restore(m, data, &f, 1);
}

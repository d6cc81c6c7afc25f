/* json.c: see json.h. */
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "json.h"

/* The length of the valid UTF-8 sequence at s (at most avail bytes), or 0 when the bytes
 * there are not one: overlong forms, surrogates and code points above U+10FFFF are
 * invalid (RFC 3629). */
static size_t utf8_valid_len(const unsigned char *s, size_t avail)
{
	uint32_t cp;
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (avail < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void json_write_string_len(FILE *f, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	fputc('"', f);
	while (i < len) {
		unsigned char ch = p[i];
		size_t n;

		switch (ch) {
		case '"': fputs("\\\"", f); i++; continue;
		case '\\': fputs("\\\\", f); i++; continue;
		case '\b': fputs("\\b", f); i++; continue;
		case '\f': fputs("\\f", f); i++; continue;
		case '\n': fputs("\\n", f); i++; continue;
		case '\r': fputs("\\r", f); i++; continue;
		case '\t': fputs("\\t", f); i++; continue;
		default: break;
		}
		if (ch < 0x20 || ch == 0x7f) {
			fprintf(f, "\\u%04x", ch);
			i++;
			continue;
		}
		n = utf8_valid_len(p + i, len - i);
		if (n == 0) {
			fputs("\\ufffd", f);
			i++;
			continue;
		}
		fwrite(p + i, 1, n, f);
		i += n;
	}
	fputc('"', f);
}

void json_write_string(FILE *f, const char *s)
{
	if (!s)
		s = "";
	json_write_string_len(f, s, strlen(s));
}

void json_write_number(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.9g", v);
	else
		fputs("null", f);
}

void json_init(struct json_writer *w, FILE *f)
{
	w->f = f;
	w->depth = 0;
	w->need_comma[0] = false;
}

/* Before a value (or a key): the comma that separates it from the one before. */
static void json_sep(struct json_writer *w)
{
	if (w->need_comma[w->depth])
		fputc(',', w->f);
	w->need_comma[w->depth] = true;
}

static void json_open(struct json_writer *w, char ch)
{
	json_sep(w);
	fputc(ch, w->f);
	assert(w->depth + 1 < JSON_MAX_DEPTH);
	w->need_comma[++w->depth] = false;
}

static void json_close(struct json_writer *w, char ch)
{
	assert(w->depth > 0);
	w->depth--;
	fputc(ch, w->f);
}

void json_begin_object(struct json_writer *w)
{
	json_open(w, '{');
}

void json_end_object(struct json_writer *w)
{
	json_close(w, '}');
}

void json_begin_array(struct json_writer *w)
{
	json_open(w, '[');
}

void json_end_array(struct json_writer *w)
{
	json_close(w, ']');
}

void json_key(struct json_writer *w, const char *key)
{
	json_sep(w);
	json_write_string(w->f, key);
	fputc(':', w->f);
	/* The value that follows belongs to this key: no comma before it. */
	w->need_comma[w->depth] = false;
}

void json_string(struct json_writer *w, const char *s)
{
	json_sep(w);
	json_write_string(w->f, s);
}

void json_number(struct json_writer *w, double v)
{
	json_sep(w);
	json_write_number(w->f, v);
}

void json_uint(struct json_writer *w, uint64_t v)
{
	json_sep(w);
	fprintf(w->f, "%" PRIu64, v);
}

void json_int(struct json_writer *w, int64_t v)
{
	json_sep(w);
	fprintf(w->f, "%" PRId64, v);
}

void json_bool(struct json_writer *w, bool v)
{
	json_sep(w);
	fputs(v ? "true" : "false", w->f);
}

void json_null(struct json_writer *w)
{
	json_sep(w);
	fputs("null", w->f);
}

void json_member_string(struct json_writer *w, const char *key, const char *s)
{
	json_key(w, key);
	json_string(w, s);
}

void json_member_number(struct json_writer *w, const char *key, double v)
{
	json_key(w, key);
	json_number(w, v);
}

void json_member_uint(struct json_writer *w, const char *key, uint64_t v)
{
	json_key(w, key);
	json_uint(w, v);
}

void json_member_int(struct json_writer *w, const char *key, int64_t v)
{
	json_key(w, key);
	json_int(w, v);
}

void json_member_bool(struct json_writer *w, const char *key, bool v)
{
	json_key(w, key);
	json_bool(w, v);
}

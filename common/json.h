/* json.h: the one JSON writer of rxgemm, rxgemmd and rxgemm-bench.
 *
 * Two layers: json_write_* put one value on a stdio stream (strings escaped, numbers that
 * JSON cannot hold written as null), and struct json_writer adds the commas and colons of
 * objects and arrays, so that callers say what they write and never place separators. */
#ifndef RXGEMM_COMMON_JSON_H
#define RXGEMM_COMMON_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* A JSON string for s (NUL-terminated): quotes, backslashes and control characters
 * escaped; valid UTF-8 kept as it is; each byte of an invalid UTF-8 sequence becomes
 * U+FFFD, so the output is always valid JSON and valid UTF-8. s NULL writes "". */
void json_write_string(FILE *f, const char *s);

/* The same for the first len bytes of s (which may hold NULs: written as \u0000). */
void json_write_string_len(FILE *f, const char *s, size_t len);

/* A number with 9 significant digits (a float round-trips); NaN and infinities, which
 * JSON has no spelling for, become null. */
void json_write_number(FILE *f, double v);

#define JSON_MAX_DEPTH 32

/* Nested objects and arrays on one stream. Inside an object, call json_key before each
 * value; inside an array, values follow one another. Deeper nesting than JSON_MAX_DEPTH
 * is a programming error (asserted). */
struct json_writer {
	FILE *f;
	int depth;
	bool need_comma[JSON_MAX_DEPTH];
};

void json_init(struct json_writer *w, FILE *f);
void json_begin_object(struct json_writer *w);
void json_end_object(struct json_writer *w);
void json_begin_array(struct json_writer *w);
void json_end_array(struct json_writer *w);
/* The key of the next value in the current object. */
void json_key(struct json_writer *w, const char *key);
void json_string(struct json_writer *w, const char *s);
void json_number(struct json_writer *w, double v);
void json_uint(struct json_writer *w, uint64_t v);
void json_int(struct json_writer *w, int64_t v);
void json_bool(struct json_writer *w, bool v);
void json_null(struct json_writer *w);

/* A key and its value in one call: json_key, then the value. */
void json_member_string(struct json_writer *w, const char *key, const char *s);
void json_member_number(struct json_writer *w, const char *key, double v);
void json_member_uint(struct json_writer *w, const char *key, uint64_t v);
void json_member_int(struct json_writer *w, const char *key, int64_t v);
void json_member_bool(struct json_writer *w, const char *key, bool v);

#endif

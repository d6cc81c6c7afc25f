/* npy.c: read and write 2-D float32 NumPy .npy files (see npy.h).
 *
 * The format (numpy/lib/format.py): the magic "\x93NUMPY", a major and a minor version
 * byte, the header length (2 bytes little-endian in 1.0, 4 bytes in 2.0 and 3.0), then the
 * header: the text of a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and a newline, and then the raw elements. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "npy.h"

/* We hand out the file's bytes as floats without swapping them. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy.c assumes a little-endian host");

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_BYTES 6
/* numpy's own reader refuses headers over 10000 bytes unless told otherwise; ours hold
 * three keys. Anything near this cap is not a file we should be reading. */
#define NPY_MAX_HEADER_BYTES (1u << 20)
/* Enough to show the shape of whatever array we are refusing (numpy allows 64). */
#define NPY_MAX_DIMS 64

enum { KEY_DESCR = 1, KEY_FORTRAN = 2, KEY_SHAPE = 4 };

struct npy_header {
	unsigned keys;        /* KEY_* seen */
	char descr[40];       /* as written, cut short for messages when longer */
	int descr_fits;       /* descr holds all of it */
	int descr_structured; /* a list of fields rather than a type string */
	int fortran_order;
	int ndims;
	int64_t dims[NPY_MAX_DIMS];
};

struct cursor {
	const char *start, *p, *end;
};

static int seterr(char *err, size_t errlen, int code, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Write "path: sentence" into err and return code. */
static int seterr(char *err, size_t errlen, int code, const char *path, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!err || errlen == 0)
		return code;
	n = snprintf(err, errlen, "%s: ", path);
	if (n >= 0 && (size_t)n < errlen) {
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return code;
}

static void skip_space(struct cursor *cur)
{
	while (cur->p < cur->end &&
	       (*cur->p == ' ' || *cur->p == '\t' || *cur->p == '\n' || *cur->p == '\r'))
		cur->p++;
}

/* Skip spaces, then consume ch if it is next. */
static int accept(struct cursor *cur, char ch)
{
	skip_space(cur);
	if (cur->p < cur->end && *cur->p == ch) {
		cur->p++;
		return 1;
	}
	return 0;
}

static int accept_word(struct cursor *cur, const char *word)
{
	size_t len = strlen(word);

	skip_space(cur);
	if ((size_t)(cur->end - cur->p) >= len && memcmp(cur->p, word, len) == 0) {
		cur->p += len;
		return 1;
	}
	return 0;
}

/* A quoted Python string without escapes (none of the values we read need them). Copies
 * at most buflen - 1 bytes into buf; *fits says whether that was all of it. */
static int parse_string(struct cursor *cur, char *buf, size_t buflen, int *fits)
{
	skip_space(cur);
	if (cur->p >= cur->end || (*cur->p != '\'' && *cur->p != '"'))
		return -1;
	char quote = *cur->p++;
	const char *s = cur->p;
	while (cur->p < cur->end && *cur->p != quote) {
		if (*cur->p == '\\')
			return -1;
		cur->p++;
	}
	if (cur->p >= cur->end)
		return -1;
	size_t len = (size_t)(cur->p - s);
	cur->p++;
	*fits = len < buflen;
	if (!*fits)
		len = buflen - 1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return 0;
}

static size_t format_shape(const struct npy_header *h, char *buf, size_t len)
{
	size_t used = 0;
	int n;

#define APPEND_(...)                                                                  \
	do {                                                                          \
		n = snprintf(buf + used, len - used, __VA_ARGS__);                    \
		if (n < 0 || (size_t)n >= len - used)                                 \
			return used;                                                  \
		used += (size_t)n;                                                    \
	} while (0)
	APPEND_("(");
	for (int i = 0; i < h->ndims; i++)
		APPEND_("%s%lld", i ? ", " : "", (long long)h->dims[i]);
	APPEND_(h->ndims == 1 ? ",)" : ")");
#undef APPEND_
	return used;
}

/* (d0, d1, ...) with an optional trailing comma; Python 2's numpy wrote 3L for 3. */
static int parse_shape(struct cursor *cur, struct npy_header *h, const char *path, char *err,
		       size_t errlen)
{
	if (!accept(cur, '('))
		return seterr(err, errlen, -EINVAL, path, "header: 'shape' is not a tuple");
	h->ndims = 0;
	if (accept(cur, ')'))
		return 0;
	for (;;) {
		skip_space(cur);
		const char *digits = cur->p;
		int64_t v = 0;
		int overflow = 0;
		while (cur->p < cur->end && *cur->p >= '0' && *cur->p <= '9') {
			if (__builtin_mul_overflow(v, 10, &v) ||
			    __builtin_add_overflow(v, *cur->p - '0', &v))
				overflow = 1;
			cur->p++;
		}
		if (cur->p == digits)
			return seterr(err, errlen, -EINVAL, path,
				      "header: 'shape' holds something other than whole numbers");
		if (overflow)
			return seterr(err, errlen, -EINVAL, path,
				      "header: shape dimension %.*s is too large",
				      (int)(cur->p - digits > 40 ? 40 : cur->p - digits), digits);
		if (cur->p < cur->end && *cur->p == 'L')
			cur->p++;
		if (h->ndims == NPY_MAX_DIMS)
			return seterr(err, errlen, -EINVAL, path,
				      "header: shape has more than %d dimensions", NPY_MAX_DIMS);
		h->dims[h->ndims++] = v;
		if (accept(cur, ')'))
			return 0;
		if (!accept(cur, ','))
			break;
		if (accept(cur, ')'))
			return 0;
	}
	return seterr(err, errlen, -EINVAL, path, "header: 'shape' is not a tuple of numbers");
}

/* The header dict: the three keys numpy writes, each once, in any order. */
static int parse_header(const char *text, size_t len, struct npy_header *h, const char *path,
			char *err, size_t errlen)
{
	struct cursor cur = { text, text, text + len };
	int rc;

	memset(h, 0, sizeof(*h));
	if (!accept(&cur, '{'))
		return seterr(err, errlen, -EINVAL, path, "header is not a Python dict");
	while (!accept(&cur, '}')) {
		char key[32];
		int fits;
		unsigned bit;

		if (parse_string(&cur, key, sizeof(key), &fits) < 0)
			return seterr(err, errlen, -EINVAL, path,
				      "header: expected a quoted key at byte %zu",
				      (size_t)(cur.p - cur.start));
		if (fits && strcmp(key, "descr") == 0)
			bit = KEY_DESCR;
		else if (fits && strcmp(key, "fortran_order") == 0)
			bit = KEY_FORTRAN;
		else if (fits && strcmp(key, "shape") == 0)
			bit = KEY_SHAPE;
		else
			return seterr(err, errlen, -EINVAL, path, "header: unexpected key '%s%s'", key,
				      fits ? "" : "...");
		if (h->keys & bit)
			return seterr(err, errlen, -EINVAL, path, "header: key '%s' appears twice", key);
		h->keys |= bit;
		if (!accept(&cur, ':'))
			return seterr(err, errlen, -EINVAL, path, "header: expected ':' after '%s'", key);

		switch (bit) {
		case KEY_DESCR:
			skip_space(&cur);
			if (cur.p < cur.end && *cur.p == '[') {
				/* A structured dtype: we refuse it below, and need not parse it. */
				h->descr_structured = 1;
				return 0;
			}
			if (parse_string(&cur, h->descr, sizeof(h->descr), &h->descr_fits) < 0)
				return seterr(err, errlen, -EINVAL, path,
					      "header: 'descr' is not a quoted string");
			break;
		case KEY_FORTRAN:
			if (accept_word(&cur, "True"))
				h->fortran_order = 1;
			else if (accept_word(&cur, "False"))
				h->fortran_order = 0;
			else
				return seterr(err, errlen, -EINVAL, path,
					      "header: 'fortran_order' is neither True nor False");
			break;
		case KEY_SHAPE:
			rc = parse_shape(&cur, h, path, err, errlen);
			if (rc < 0)
				return rc;
			break;
		}
		if (accept(&cur, '}'))
			break;
		if (!accept(&cur, ','))
			return seterr(err, errlen, -EINVAL, path,
				      "header: expected ',' or '}' at byte %zu",
				      (size_t)(cur.p - cur.start));
	}
	skip_space(&cur);
	if (cur.p != cur.end)
		return seterr(err, errlen, -EINVAL, path,
			      "header: unexpected text after the dict at byte %zu",
			      (size_t)(cur.p - cur.start));
	if (!(h->keys & KEY_DESCR))
		return seterr(err, errlen, -EINVAL, path, "header lacks 'descr'");
	if (!(h->keys & KEY_FORTRAN))
		return seterr(err, errlen, -EINVAL, path, "header lacks 'fortran_order'");
	if (!(h->keys & KEY_SHAPE))
		return seterr(err, errlen, -EINVAL, path, "header lacks 'shape'");
	return 0;
}

static uint32_t get_le(const uint8_t *p, int bytes)
{
	uint32_t v = 0;

	for (int i = bytes - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

int npy_read(const char *path, float **data, int64_t *rows, int64_t *cols, int *fortran_order,
	     char *err, size_t errlen)
{
	uint8_t pre[NPY_MAGIC_BYTES + 2 + 4];
	char *header = NULL;
	float *buf = NULL;
	struct npy_header h;
	struct stat st;
	int have_size;
	int rc = 0;
	FILE *f;

	f = fopen(path, "rb");
	if (!f)
		return seterr(err, errlen, -errno, path, "%s", strerror(errno));
	/* Regular files tell us their size, so lies in the header are caught before we
	 * allocate for them; pipes are read and found short (or long) instead. */
	have_size = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode);

	if (fread(pre, 1, NPY_MAGIC_BYTES + 2, f) != NPY_MAGIC_BYTES + 2 ||
	    memcmp(pre, NPY_MAGIC, NPY_MAGIC_BYTES) != 0) {
		rc = ferror(f) ? seterr(err, errlen, -EIO, path, "read error: %s", strerror(errno))
			       : seterr(err, errlen, -EINVAL, path,
					"not a .npy file (no \\x93NUMPY magic at the start)");
		goto out;
	}
	int major = pre[NPY_MAGIC_BYTES], minor = pre[NPY_MAGIC_BYTES + 1];
	if ((major != 1 && major != 2 && major != 3) || minor != 0) {
		rc = seterr(err, errlen, -EINVAL, path,
			    ".npy format version %d.%d is not supported (1.0, 2.0 and 3.0 are)", major,
			    minor);
		goto out;
	}
	int len_bytes = major == 1 ? 2 : 4;
	if (fread(pre + NPY_MAGIC_BYTES + 2, 1, (size_t)len_bytes, f) != (size_t)len_bytes) {
		rc = seterr(err, errlen, -EINVAL, path, "file is truncated inside the preamble");
		goto out;
	}
	uint32_t header_bytes = get_le(pre + NPY_MAGIC_BYTES + 2, len_bytes);
	uint64_t data_offset = (uint64_t)NPY_MAGIC_BYTES + 2 + (uint64_t)len_bytes + header_bytes;
	if ((have_size && data_offset > (uint64_t)st.st_size) ||
	    header_bytes > NPY_MAX_HEADER_BYTES) {
		if (have_size && data_offset > (uint64_t)st.st_size)
			rc = seterr(err, errlen, -EINVAL, path,
				    "header length %lu runs past the end of the file (%lld bytes)",
				    (unsigned long)header_bytes, (long long)st.st_size);
		else
			rc = seterr(err, errlen, -EINVAL, path,
				    "header length %lu is implausible (more than %u)",
				    (unsigned long)header_bytes, NPY_MAX_HEADER_BYTES);
		goto out;
	}
	header = malloc(header_bytes + 1);
	if (!header) {
		rc = seterr(err, errlen, -ENOMEM, path, "out of memory");
		goto out;
	}
	if (fread(header, 1, header_bytes, f) != header_bytes) {
		rc = seterr(err, errlen, -EINVAL, path, "header length %lu runs past the end of the file",
			    (unsigned long)header_bytes);
		goto out;
	}
	rc = parse_header(header, header_bytes, &h, path, err, errlen);
	if (rc < 0)
		goto out;

	char shape[256];
	format_shape(&h, shape, sizeof(shape));
	if (h.descr_structured) {
		rc = seterr(err, errlen, -EINVAL, path,
			    "dtype is a structured type (a list of fields), need float32 ('<f4')");
		goto out;
	}
	if (!h.descr_fits || strcmp(h.descr, "<f4") != 0) {
		rc = seterr(err, errlen, -EINVAL, path, "dtype is '%s%s', need float32 ('<f4')",
			    h.descr, h.descr_fits ? "" : "...");
		goto out;
	}
	if (h.ndims != 2) {
		rc = seterr(err, errlen, -EINVAL, path, "shape %s is not 2-D: need a matrix", shape);
		goto out;
	}
	int64_t floats;
	size_t bytes;
	if (__builtin_mul_overflow(h.dims[0], h.dims[1], &floats) ||
	    __builtin_mul_overflow((uint64_t)floats, sizeof(float), &bytes) || bytes > SIZE_MAX / 2) {
		rc = seterr(err, errlen, -EINVAL, path,
			    "shape %s holds more data than this machine can address", shape);
		goto out;
	}
	if (have_size) {
		uint64_t avail = (uint64_t)st.st_size - data_offset;
		if (avail < bytes) {
			rc = seterr(err, errlen, -EINVAL, path,
				    "file is truncated: header says %lld floats, found %llu",
				    (long long)floats, (unsigned long long)(avail / sizeof(float)));
			goto out;
		}
		if (avail > bytes) {
			rc = seterr(err, errlen, -EINVAL, path,
				    "%llu bytes follow the %lld floats the header announces",
				    (unsigned long long)(avail - bytes), (long long)floats);
			goto out;
		}
	}
	buf = malloc(bytes ? bytes : 1);
	if (!buf) {
		rc = seterr(err, errlen, -ENOMEM, path, "out of memory for %s floats", shape);
		goto out;
	}
	size_t got = fread(buf, 1, bytes, f);
	if (got != bytes) {
		if (ferror(f))
			rc = seterr(err, errlen, -EIO, path, "read error: %s", strerror(errno));
		else
			rc = seterr(err, errlen, -EINVAL, path,
				    "file is truncated: header says %lld floats, found %zu",
				    (long long)floats, got / sizeof(float));
		goto out;
	}
	if (!have_size && fgetc(f) != EOF) {
		rc = seterr(err, errlen, -EINVAL, path,
			    "more data follows the %lld floats the header announces", (long long)floats);
		goto out;
	}
	*data = buf;
	buf = NULL;
	*rows = h.dims[0];
	*cols = h.dims[1];
	*fortran_order = h.fortran_order;
out:
	free(buf);
	free(header);
	fclose(f);
	return rc;
}

int npy_write(const char *path, const float *data, int64_t rows, int64_t cols, int fortran_order,
	      char *err, size_t errlen)
{
	uint8_t header[192];
	int64_t floats;
	size_t bytes;
	FILE *f;
	int rc = 0;

	if (rows < 0 || cols < 0 || __builtin_mul_overflow(rows, cols, &floats) ||
	    __builtin_mul_overflow((uint64_t)floats, sizeof(float), &bytes) || (bytes && !data))
		return seterr(err, errlen, -EINVAL, path, "cannot write a %lld x %lld matrix",
			      (long long)rows, (long long)cols);

	/* Preamble, dict, spaces and a newline, padded so that the data starts at a multiple of
	 * 64 bytes as numpy's own writer does (it lets readers map the data aligned). */
	int dict = snprintf((char *)header + 10, sizeof(header) - 10,
			    "{'descr': '<f4', 'fortran_order': %s, 'shape': (%lld, %lld), }",
			    fortran_order ? "True" : "False", (long long)rows, (long long)cols);
	if (dict < 0 || (size_t)dict >= sizeof(header) - 10)
		return seterr(err, errlen, -EINVAL, path, "internal error: header too long");
	size_t total = 10 + (size_t)dict + 1;
	total += (64 - total % 64) % 64;
	if (total > sizeof(header))
		return seterr(err, errlen, -EINVAL, path, "internal error: header too long");
	memcpy(header, NPY_MAGIC, NPY_MAGIC_BYTES);
	header[6] = 1;
	header[7] = 0;
	header[8] = (uint8_t)((total - 10) & 0xff);
	header[9] = (uint8_t)((total - 10) >> 8);
	memset(header + 10 + dict, ' ', total - 10 - (size_t)dict - 1);
	header[total - 1] = '\n';

	f = fopen(path, "wb");
	if (!f)
		return seterr(err, errlen, -errno, path, "%s", strerror(errno));
	if (fwrite(header, 1, total, f) != total || (bytes && fwrite(data, 1, bytes, f) != bytes))
		rc = seterr(err, errlen, -EIO, path, "write error: %s", strerror(errno));
	/* fclose flushes: a full disk may only show here. */
	if (fclose(f) != 0 && rc == 0)
		rc = seterr(err, errlen, -EIO, path, "write error: %s", strerror(errno));
	return rc;
}

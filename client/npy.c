/* npy.c: read and write float32 NumPy .npy files, on their own or in a .npz archive (the
 * zip side is npz.c; see npy.h).
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

/* Where the .npy bytes come from: a whole file, or one member of a .npz archive. */
struct npy_source {
	FILE *f;          /* at the first byte of the .npy data */
	const char *name; /* for messages: the spec as given */
	int have_size;    /* size is known: regular files and archive members */
	uint64_t size;    /* bytes from the first one */
};

/* Open spec (see npy_load) and position src->f at its .npy bytes. */
static int source_open(const char *spec, struct npy_source *src, char *err, size_t errlen)
{
	static const char ext[] = ".npz";
	const size_t ext_len = sizeof(ext) - 1;
	const char *member = NULL, *colon = NULL;
	size_t spec_len = strlen(spec), path_len = spec_len;
	char *path = NULL;
	struct stat st;
	int rc = 0;

	memset(src, 0, sizeof(*src));
	src->name = spec;
	/* ARCHIVE.npz:NAME: the last ".npz:" splits it, so that a name may hold a colon. */
	for (const char *p = strstr(spec, ".npz:"); p; p = strstr(p + 1, ".npz:"))
		colon = p + ext_len;
	if (colon) {
		path_len = (size_t)(colon - spec);
		member = colon + 1;
		if (!*member)
			return seterr(err, errlen, -EINVAL, spec,
				      "no array name after ':' (ARCHIVE.npz:NAME)");
	}
	int npz = colon || (spec_len >= ext_len && strcmp(spec + spec_len - ext_len, ext) == 0);
	path = strndup(spec, path_len);
	if (!path)
		return seterr(err, errlen, -ENOMEM, spec, "out of memory");
	src->f = fopen(path, "rb");
	if (!src->f) {
		rc = seterr(err, errlen, -errno, spec, "%s", strerror(errno));
		goto out;
	}
	/* Regular files tell us their size, so lies in the header are caught before we
	 * allocate for them; pipes are read and found short (or long) instead. */
	src->have_size = fstat(fileno(src->f), &st) == 0 && S_ISREG(st.st_mode);
	src->size = src->have_size ? (uint64_t)st.st_size : 0;
	if (npz) {
		rc = npz_find(src->f, spec, member, &src->size, err, errlen);
		src->have_size = 1;
	}
out:
	if (rc < 0 && src->f) {
		fclose(src->f);
		src->f = NULL;
	}
	free(path);
	return rc;
}

/* Read the magic, the version, the header's length and the header, and parse it into h;
 * *data_offset is where the elements start. */
static int read_preamble(struct npy_source *src, struct npy_header *h, uint64_t *data_offset,
			 char *err, size_t errlen)
{
	uint8_t pre[NPY_MAGIC_BYTES + 2 + 4];
	const char *name = src->name;
	char *header = NULL;
	int rc;

	if (fread(pre, 1, NPY_MAGIC_BYTES + 2, src->f) != NPY_MAGIC_BYTES + 2 ||
	    memcmp(pre, NPY_MAGIC, NPY_MAGIC_BYTES) != 0) {
		if (ferror(src->f))
			return seterr(err, errlen, -EIO, name, "read error: %s", strerror(errno));
		if (memcmp(pre, "PK\x03\x04", 4) == 0)
			return seterr(err, errlen, -EINVAL, name,
				      "a zip archive, not a .npy file: name a .npz archive "
				      "ARCHIVE.npz or ARCHIVE.npz:NAME");
		return seterr(err, errlen, -EINVAL, name,
			      "not a .npy file (no \\x93NUMPY magic at the start)");
	}
	int major = pre[NPY_MAGIC_BYTES], minor = pre[NPY_MAGIC_BYTES + 1];
	if ((major != 1 && major != 2 && major != 3) || minor != 0)
		return seterr(err, errlen, -EINVAL, name,
			      ".npy format version %d.%d is not supported (1.0, 2.0 and 3.0 are)",
			      major, minor);
	int len_bytes = major == 1 ? 2 : 4;
	if (fread(pre + NPY_MAGIC_BYTES + 2, 1, (size_t)len_bytes, src->f) != (size_t)len_bytes)
		return seterr(err, errlen, -EINVAL, name, "file is truncated inside the preamble");
	uint32_t header_bytes = get_le(pre + NPY_MAGIC_BYTES + 2, len_bytes);
	*data_offset = (uint64_t)NPY_MAGIC_BYTES + 2 + (uint64_t)len_bytes + header_bytes;
	if (src->have_size && *data_offset > src->size)
		return seterr(err, errlen, -EINVAL, name,
			      "header length %lu runs past the end of the file (%llu bytes)",
			      (unsigned long)header_bytes, (unsigned long long)src->size);
	if (header_bytes > NPY_MAX_HEADER_BYTES)
		return seterr(err, errlen, -EINVAL, name,
			      "header length %lu is implausible (more than %u)",
			      (unsigned long)header_bytes, NPY_MAX_HEADER_BYTES);
	header = malloc(header_bytes + 1);
	if (!header)
		return seterr(err, errlen, -ENOMEM, name, "out of memory");
	if (fread(header, 1, header_bytes, src->f) != header_bytes)
		rc = seterr(err, errlen, -EINVAL, name,
			    "header length %lu runs past the end of the file",
			    (unsigned long)header_bytes);
	else
		rc = parse_header(header, header_bytes, h, name, err, errlen);
	free(header);
	return rc;
}

/* The dtype and the number of dimensions against what the caller takes; *bytes is the
 * size of the elements. */
static int check_array(const struct npy_header *h, const char *name, int min_dims,
		       int max_dims, size_t *bytes, char *err, size_t errlen)
{
	char shape[256];
	int64_t floats = 1;

	format_shape(h, shape, sizeof(shape));
	if (h->descr_structured)
		return seterr(err, errlen, -EINVAL, name,
			      "dtype is a structured type (a list of fields), need float32 ('<f4')");
	if (!h->descr_fits || strcmp(h->descr, "<f4") != 0)
		return seterr(err, errlen, -EINVAL, name, "dtype is '%s%s', need float32 ('<f4')",
			      h->descr, h->descr_fits ? "" : "...");
	if (h->ndims < min_dims || h->ndims > max_dims) {
		if (min_dims == 2 && max_dims == 2)
			return seterr(err, errlen, -EINVAL, name, "shape %s is not 2-D: need a matrix",
				      shape);
		return seterr(err, errlen, -EINVAL, name,
			      "shape %s has %d dimension%s: need %d to %d (a matrix, or a stack of "
			      "matrices)",
			      shape, h->ndims, h->ndims == 1 ? "" : "s", min_dims, max_dims);
	}
	for (int i = 0; i < h->ndims; i++)
		if (__builtin_mul_overflow(floats, h->dims[i], &floats))
			goto too_big;
	if (__builtin_mul_overflow((uint64_t)floats, sizeof(float), bytes) || *bytes > SIZE_MAX / 2)
		goto too_big;
	return 0;
too_big:
	return seterr(err, errlen, -EINVAL, name,
		      "shape %s holds more data than this machine can address", shape);
}

/* Read the bytes elements that follow the header at data_offset into a new *out, and make
 * sure nothing follows them. */
static int read_elements(struct npy_source *src, uint64_t data_offset, size_t bytes,
			 float **out, char *err, size_t errlen)
{
	const char *name = src->name;
	long long floats = (long long)(bytes / sizeof(float));
	float *buf;

	if (src->have_size) {
		uint64_t avail = src->size - data_offset;
		if (avail < bytes)
			return seterr(err, errlen, -EINVAL, name,
				      "file is truncated: header says %lld floats, found %llu", floats,
				      (unsigned long long)(avail / sizeof(float)));
		if (avail > bytes)
			return seterr(err, errlen, -EINVAL, name,
				      "%llu bytes follow the %lld floats the header announces",
				      (unsigned long long)(avail - bytes), floats);
	}
	buf = malloc(bytes ? bytes : 1);
	if (!buf)
		return seterr(err, errlen, -ENOMEM, name, "out of memory for %lld floats", floats);
	size_t got = fread(buf, 1, bytes, src->f);
	int rc = 0;
	if (got != bytes) {
		if (ferror(src->f))
			rc = seterr(err, errlen, -EIO, name, "read error: %s", strerror(errno));
		else
			rc = seterr(err, errlen, -EINVAL, name,
				    "file is truncated: header says %lld floats, found %zu", floats,
				    got / sizeof(float));
	} else if (!src->have_size && fgetc(src->f) != EOF) {
		rc = seterr(err, errlen, -EINVAL, name,
			    "more data follows the %lld floats the header announces", floats);
	}
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

int npy_load(const char *spec, int min_dims, int max_dims, struct npy_array *out, char *err,
	     size_t errlen)
{
	struct npy_source src;
	struct npy_header h;
	uint64_t data_offset = 0;
	float *data = NULL;
	size_t bytes = 0;
	int rc;

	if (max_dims > NPY_LOAD_MAX_DIMS || min_dims < 0 || min_dims > max_dims)
		return seterr(err, errlen, -EINVAL, spec, "internal error: bad dimension range");
	rc = source_open(spec, &src, err, errlen);
	if (rc < 0)
		return rc;
	rc = read_preamble(&src, &h, &data_offset, err, errlen);
	if (rc == 0)
		rc = check_array(&h, spec, min_dims, max_dims, &bytes, err, errlen);
	if (rc == 0)
		rc = read_elements(&src, data_offset, bytes, &data, err, errlen);
	fclose(src.f);
	if (rc < 0)
		return rc;
	out->data = data;
	out->ndims = h.ndims;
	for (int i = 0; i < NPY_LOAD_MAX_DIMS; i++)
		out->dims[i] = i < h.ndims ? h.dims[i] : 1;
	out->fortran_order = h.fortran_order;
	return 0;
}

int npy_read(const char *path, float **data, int64_t *rows, int64_t *cols, int *fortran_order,
	     char *err, size_t errlen)
{
	struct npy_array a;
	int rc = npy_load(path, 2, 2, &a, err, errlen);

	if (rc < 0)
		return rc;
	*data = a.data;
	*rows = a.dims[0];
	*cols = a.dims[1];
	*fortran_order = a.fortran_order;
	return 0;
}

/* Write the header for shape (dims, text as numpy prints it) and the data. */
static int write_npy(const char *path, const char *shape, int fortran_order, const float *data,
		     size_t bytes, char *err, size_t errlen)
{
	uint8_t header[256];
	FILE *f;
	int rc = 0;

	/* Preamble, dict, spaces and a newline, padded so that the data starts at a multiple of
	 * 64 bytes as numpy's own writer does (it lets readers map the data aligned). */
	int dict = snprintf((char *)header + 10, sizeof(header) - 10,
			    "{'descr': '<f4', 'fortran_order': %s, 'shape': %s, }",
			    fortran_order ? "True" : "False", shape);
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

int npy_write(const char *path, const float *data, int64_t rows, int64_t cols, int fortran_order,
	      char *err, size_t errlen)
{
	char shape[64];
	int64_t floats;
	size_t bytes;

	if (rows < 0 || cols < 0 || __builtin_mul_overflow(rows, cols, &floats) ||
	    __builtin_mul_overflow((uint64_t)floats, sizeof(float), &bytes) || (bytes && !data))
		return seterr(err, errlen, -EINVAL, path, "cannot write a %lld x %lld matrix",
			      (long long)rows, (long long)cols);
	snprintf(shape, sizeof(shape), "(%lld, %lld)", (long long)rows, (long long)cols);
	return write_npy(path, shape, fortran_order, data, bytes, err, errlen);
}

int npy_write_array(const char *path, const float *data, int ndims, const int64_t *dims,
		    char *err, size_t errlen)
{
	struct npy_header h = { .ndims = ndims };
	char shape[128];
	int64_t floats = 1;
	size_t bytes;

	if (ndims < 1 || ndims > NPY_LOAD_MAX_DIMS)
		return seterr(err, errlen, -EINVAL, path, "cannot write a %d-D array", ndims);
	for (int i = 0; i < ndims; i++) {
		if (dims[i] < 0 || __builtin_mul_overflow(floats, dims[i], &floats))
			return seterr(err, errlen, -EINVAL, path, "cannot write an array of %lld "
				      "elements or more", (long long)floats);
		h.dims[i] = dims[i];
	}
	if (__builtin_mul_overflow((uint64_t)floats, sizeof(float), &bytes) || (bytes && !data))
		return seterr(err, errlen, -EINVAL, path, "cannot write %lld floats",
			      (long long)floats);
	format_shape(&h, shape, sizeof(shape));
	return write_npy(path, shape, 0, data, bytes, err, errlen);
}

int npy_load_labels(const char *spec, int32_t **out, int64_t *count, char *err, size_t errlen)
{
	static const struct {
		const char *descr;
		size_t bytes;
	} types[] = { { "<i4", 4 }, { "<i8", 8 }, { "|i1", 1 }, { "|u1", 1 } };
	struct npy_source src;
	struct npy_header h;
	uint64_t data_offset = 0;
	size_t size = 0, bytes = 0;
	void *raw = NULL;
	int32_t *labels;
	int rc;

	rc = source_open(spec, &src, err, errlen);
	if (rc < 0)
		return rc;
	rc = read_preamble(&src, &h, &data_offset, err, errlen);
	for (size_t i = 0; rc == 0 && i < sizeof(types) / sizeof(types[0]); i++)
		if (h.descr_fits && !h.descr_structured && strcmp(h.descr, types[i].descr) == 0)
			size = types[i].bytes;
	if (rc == 0 && !size)
		rc = seterr(err, errlen, -EINVAL, spec, "dtype is '%s%s', need integer labels "
			    "(int32, int64, int8 or uint8)", h.descr, h.descr_fits ? "" : "...");
	if (rc == 0 && h.ndims != 1)
		rc = seterr(err, errlen, -EINVAL, spec, "labels have %d dimensions, need 1",
			    h.ndims);
	if (rc == 0 && (h.dims[0] < 0 || __builtin_mul_overflow((uint64_t)h.dims[0], size, &bytes) ||
			bytes > SIZE_MAX / 8))
		rc = seterr(err, errlen, -EINVAL, spec, "too many labels");
	/* read_elements counts in floats: its messages then speak of 4-byte words. */
	if (rc == 0)
		rc = read_elements(&src, data_offset, bytes, (float **)&raw, err, errlen);
	fclose(src.f);
	if (rc < 0)
		return rc;
	if (!(labels = malloc((size_t)h.dims[0] * sizeof(int32_t) + 1))) {
		free(raw);
		return seterr(err, errlen, -ENOMEM, spec, "out of memory for the labels");
	}
	for (int64_t i = 0; i < h.dims[0]; i++) {
		const uint8_t *p = (const uint8_t *)raw + (size_t)i * size;
		int64_t v;

		if (size == 8) {
			v = (int64_t)((uint64_t)get_le(p, 4) | (uint64_t)get_le(p + 4, 4) << 32);
		} else if (size == 4) {
			v = (int32_t)get_le(p, 4);
		} else {
			v = h.descr[1] == 'i' ? (int8_t)p[0] : p[0];
		}
		if (v < INT32_MIN || v > INT32_MAX) {
			free(raw);
			free(labels);
			return seterr(err, errlen, -EINVAL, spec, "label %lld is %lld, out of int32",
				      (long long)i, (long long)v);
		}
		labels[i] = (int32_t)v;
	}
	free(raw);
	*out = labels;
	*count = h.dims[0];
	return 0;
}

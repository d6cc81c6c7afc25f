/* npz.c: find an array in a .npz archive (numpy.savez), a zip file of NAME.npy members.
 *
 * The zip format (PKWARE's APPNOTE.TXT): the members, each a local header and its data,
 * then the central directory (one entry per member: name, method, sizes, where its local
 * header is), then the end-of-central-directory record, last in the file but for a
 * comment. Archives over 4 GiB or 65535 members (and numpy's members, whose local headers
 * it always writes in the zip64 form) carry the true values in zip64 records and "extra"
 * fields. We trust only the central directory for sizes, and the local header only for
 * the length of its name and extra field; every offset is checked against the file.
 *
 * Only stored (method 0) members are read: deflate would need zlib, which nothing else
 * here uses, and numpy.savez stores its members. A member's CRC-32 is checked before its
 * bytes are used, as Python's zipfile (and so numpy.load) does: a damaged archive is an
 * error, never a matrix with some wrong numbers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "npy.h"

#define EOCD_SIG 0x06054b50u
#define EOCD_BYTES 22
#define ZIP64_LOCATOR_SIG 0x07064b50u
#define ZIP64_LOCATOR_BYTES 20
#define ZIP64_EOCD_SIG 0x06064b50u
#define ZIP64_EOCD_BYTES 56
#define CENTRAL_SIG 0x02014b50u
#define CENTRAL_BYTES 46
#define LOCAL_SIG 0x04034b50u
#define LOCAL_BYTES 30
#define MAX_COMMENT 65535
#define ZIP64_EXTRA_ID 0x0001
/* A directory entry is at least 46 bytes: a larger directory than this would describe
 * over a million members, not an archive of a few matrices. */
#define MAX_CENTRAL_BYTES (64u << 20)
#define METHOD_STORED 0
#define METHOD_DEFLATE 8
#define FLAG_ENCRYPTED 0x1

static int seterr(char *err, size_t errlen, int code, const char *archive, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Write "archive: sentence" into err and return code. */
static int seterr(char *err, size_t errlen, int code, const char *archive, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!err || errlen == 0)
		return code;
	n = snprintf(err, errlen, "%s: ", archive);
	if (n >= 0 && (size_t)n < errlen) {
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return code;
}

static uint64_t le(const uint8_t *p, int bytes)
{
	uint64_t v = 0;

	for (int i = bytes - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int read_at(FILE *f, uint64_t offset, void *buf, size_t len)
{
	if (offset > (uint64_t)INT64_MAX || fseeko(f, (off_t)offset, SEEK_SET) != 0)
		return -1;
	return fread(buf, 1, len, f) == len ? 0 : -1;
}

/* Where the central directory is and how many entries it has, from the end record (and
 * the zip64 one when the end record's fields overflowed). */
static int find_directory(FILE *f, const char *archive, uint64_t file_bytes, uint64_t *offset,
			  uint64_t *bytes, uint64_t *entries, char *err, size_t errlen)
{
	size_t tail_len = (size_t)(file_bytes < EOCD_BYTES + MAX_COMMENT ? file_bytes
									 : EOCD_BYTES + MAX_COMMENT);
	uint64_t tail_start = file_bytes - tail_len;
	uint8_t *tail = NULL, *eocd = NULL;
	int rc = 0;

	if (file_bytes < EOCD_BYTES)
		return seterr(err, errlen, -EINVAL, archive,
			      "not a .npz archive (a zip file): too short");
	tail = malloc(tail_len);
	if (!tail)
		return seterr(err, errlen, -ENOMEM, archive, "out of memory");
	if (read_at(f, tail_start, tail, tail_len) < 0) {
		rc = seterr(err, errlen, -EIO, archive, "read error: %s", strerror(errno));
		goto out;
	}
	/* The last record whose comment reaches the end of the file. */
	for (size_t i = tail_len - EOCD_BYTES + 1; i-- > 0;) {
		if (le(tail + i, 4) == EOCD_SIG && i + EOCD_BYTES + le(tail + i + 20, 2) == tail_len) {
			eocd = tail + i;
			break;
		}
	}
	if (!eocd) {
		rc = seterr(err, errlen, -EINVAL, archive,
			    "not a .npz archive (no zip end-of-directory record)");
		goto out;
	}
	*entries = le(eocd + 10, 2);
	*bytes = le(eocd + 12, 4);
	*offset = le(eocd + 16, 4);
	if (*entries == 0xffff || *bytes == 0xffffffffu || *offset == 0xffffffffu) {
		uint64_t eocd_at = tail_start + (uint64_t)(eocd - tail);
		uint8_t loc[ZIP64_LOCATOR_BYTES], rec[ZIP64_EOCD_BYTES];

		if (eocd_at < ZIP64_LOCATOR_BYTES ||
		    read_at(f, eocd_at - ZIP64_LOCATOR_BYTES, loc, sizeof(loc)) < 0 ||
		    le(loc, 4) != ZIP64_LOCATOR_SIG || read_at(f, le(loc + 8, 8), rec, sizeof(rec)) < 0 ||
		    le(rec, 4) != ZIP64_EOCD_SIG) {
			rc = seterr(err, errlen, -EINVAL, archive,
				    "zip64 end-of-directory record missing or unreadable");
			goto out;
		}
		*entries = le(rec + 32, 8);
		*bytes = le(rec + 40, 8);
		*offset = le(rec + 48, 8);
	}
	if (*offset > file_bytes || *bytes > file_bytes - *offset || *bytes > MAX_CENTRAL_BYTES)
		rc = seterr(err, errlen, -EINVAL, archive,
			    "the zip directory (%llu bytes at %llu) does not fit in the file",
			    (unsigned long long)*bytes, (unsigned long long)*offset);
out:
	free(tail);
	return rc;
}

/* One central directory entry, its 0xffffffff fields replaced from its zip64 extra field. */
struct entry {
	const char *name;
	size_t name_len;
	unsigned method, flags;
	uint32_t crc;
	uint64_t packed_bytes, bytes, local_offset;
};

/* Parse the entry at p (end: the directory's end) into e; its length in *len. */
static int parse_entry(const uint8_t *p, const uint8_t *end, struct entry *e, size_t *len)
{
	if ((size_t)(end - p) < CENTRAL_BYTES || le(p, 4) != CENTRAL_SIG)
		return -1;
	size_t name_len = le(p + 28, 2), extra_len = le(p + 30, 2), comment_len = le(p + 32, 2);
	*len = CENTRAL_BYTES + name_len + extra_len + comment_len;
	if ((size_t)(end - p) < *len)
		return -1;
	e->flags = (unsigned)le(p + 8, 2);
	e->method = (unsigned)le(p + 10, 2);
	e->crc = (uint32_t)le(p + 16, 4);
	e->packed_bytes = le(p + 20, 4);
	e->bytes = le(p + 24, 4);
	e->local_offset = le(p + 42, 4);
	e->name = (const char *)p + CENTRAL_BYTES;
	e->name_len = name_len;
	/* The zip64 field holds, in this order, only the values that overflowed. */
	uint64_t *wide[3] = { &e->bytes, &e->packed_bytes, &e->local_offset };
	const uint8_t *x = p + CENTRAL_BYTES + name_len, *x_end = x + extra_len;
	int have_zip64 = 0;
	while (x_end - x >= 4) {
		size_t id = le(x, 2), size = le(x + 2, 2);
		if ((size_t)(x_end - x - 4) < size)
			return -1;
		if (id == ZIP64_EXTRA_ID) {
			const uint8_t *v = x + 4;
			have_zip64 = 1;
			for (int i = 0; i < 3; i++) {
				if (*wide[i] != 0xffffffffu)
					continue;
				if (v + 8 > x + 4 + size)
					return -1;
				*wide[i] = le(v, 8);
				v += 8;
			}
		}
		x += 4 + size;
	}
	/* 0xffffffff means "in the zip64 field": without one, the entry is damaged. */
	for (int i = 0; i < 3 && !have_zip64; i++)
		if (*wide[i] == 0xffffffffu)
			return -1;
	return 0;
}

/* Whether entry e holds array name: "name.npy" as numpy writes it, or exactly "name". */
static int entry_is(const struct entry *e, const char *name)
{
	size_t n = strlen(name);

	if (e->name_len == n + 4 && memcmp(e->name, name, n) == 0 && memcmp(e->name + n, ".npy", 4) == 0)
		return 1;
	return e->name_len == n && memcmp(e->name, name, n) == 0;
}

/* Add e's array name (without ".npy") to the list in buf, for messages. */
static void list_add(char *buf, size_t len, const struct entry *e)
{
	size_t used = strlen(buf), n = e->name_len;

	if (n >= 4 && memcmp(e->name + n - 4, ".npy", 4) == 0)
		n -= 4;
	if (used + n + 6 >= len) {
		if (used + 5 < len && !strstr(buf, "..."))
			strcat(buf, ", ...");
		return;
	}
	if (used)
		strcat(buf, ", ");
	strncat(buf, e->name, n);
}

/* The CRC-32 of zip (ISO 3309, reflected, polynomial 0xedb88320) of the len bytes at f's
 * position, continuing from crc (0 to start), into *out; f ends after them. Table-driven,
 * a byte at a time: about 1 GB/s, against the disk's or the page cache's speed for a
 * member read once more. */
static int crc32_file(FILE *f, uint64_t len, uint32_t *out)
{
	static const size_t chunk = 1u << 20;
	uint32_t table[256], crc = 0xffffffffu;
	unsigned char *buf = malloc(chunk);
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		table[i] = c;
	}
	while (len) {
		size_t n = len < chunk ? (size_t)len : chunk;

		if (fread(buf, 1, n, f) != n) {
			rc = -EIO;
			goto out;
		}
		for (size_t i = 0; i < n; i++)
			crc = table[(crc ^ buf[i]) & 0xff] ^ (crc >> 8);
		len -= n;
	}
	*out = crc ^ 0xffffffffu;
out:
	free(buf);
	return rc;
}

/* Position f at the data of the stored member e, checking its local header and its CRC. */
static int open_member(FILE *f, const char *archive, uint64_t file_bytes, const struct entry *e,
		       const char *shown, uint64_t *bytes, char *err, size_t errlen)
{
	uint8_t local[LOCAL_BYTES];

	if (e->flags & FLAG_ENCRYPTED)
		return seterr(err, errlen, -EINVAL, archive, "array '%s' is encrypted", shown);
	if (e->method == METHOD_DEFLATE)
		return seterr(err, errlen, -EINVAL, archive,
			      "array '%s' is compressed (numpy.savez_compressed); only uncompressed "
			      "archives are read: save with numpy.savez, or unpack it to a .npy file",
			      shown);
	if (e->method != METHOD_STORED)
		return seterr(err, errlen, -EINVAL, archive,
			      "array '%s' uses zip compression method %u; only uncompressed "
			      "(stored) archives are read",
			      shown, e->method);
	if (e->packed_bytes != e->bytes)
		return seterr(err, errlen, -EINVAL, archive,
			      "array '%s' is stored but its sizes differ (%llu and %llu bytes)", shown,
			      (unsigned long long)e->packed_bytes, (unsigned long long)e->bytes);
	if (e->local_offset > file_bytes - LOCAL_BYTES || file_bytes < LOCAL_BYTES ||
	    read_at(f, e->local_offset, local, sizeof(local)) < 0 || le(local, 4) != LOCAL_SIG)
		return seterr(err, errlen, -EINVAL, archive,
			      "array '%s': no zip local header where the directory says", shown);
	uint64_t data = e->local_offset + LOCAL_BYTES + le(local + 26, 2) + le(local + 28, 2);
	if (data > file_bytes || e->bytes > file_bytes - data)
		return seterr(err, errlen, -EINVAL, archive,
			      "array '%s' (%llu bytes) runs past the end of the file", shown,
			      (unsigned long long)e->bytes);
	if (fseeko(f, (off_t)data, SEEK_SET) != 0)
		return seterr(err, errlen, -EIO, archive, "seek error: %s", strerror(errno));
	uint32_t crc = 0;
	int rc = crc32_file(f, e->bytes, &crc);
	if (rc < 0)
		return seterr(err, errlen, rc, archive, "cannot read array '%s': %s", shown,
			      strerror(-rc));
	if (crc != e->crc)
		return seterr(err, errlen, -EINVAL, archive,
			      "array '%s' is damaged: its CRC-32 is %08x, the archive says %08x",
			      shown, (unsigned)crc, (unsigned)e->crc);
	if (fseeko(f, (off_t)data, SEEK_SET) != 0)
		return seterr(err, errlen, -EIO, archive, "seek error: %s", strerror(errno));
	*bytes = e->bytes;
	return 0;
}

int npz_find(FILE *f, const char *archive, const char *name, uint64_t *bytes, char *err,
	     size_t errlen)
{
	uint64_t dir_offset = 0, dir_bytes = 0, entries = 0, found = 0, arrays = 0;
	struct entry e, hit = { 0 };
	char names[160] = "";
	uint8_t *dir = NULL;
	struct stat st;
	int rc;

	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
		return seterr(err, errlen, -EINVAL, archive,
			      "a .npz archive must be a regular file (it is read from its end)");
	rc = find_directory(f, archive, (uint64_t)st.st_size, &dir_offset, &dir_bytes, &entries,
			    err, errlen);
	if (rc < 0)
		return rc;
	dir = malloc(dir_bytes ? dir_bytes : 1);
	if (!dir)
		return seterr(err, errlen, -ENOMEM, archive, "out of memory");
	if (read_at(f, dir_offset, dir, dir_bytes) < 0) {
		rc = seterr(err, errlen, -EIO, archive, "cannot read the zip directory");
		goto out;
	}
	const uint8_t *p = dir, *end = dir + dir_bytes;
	for (uint64_t i = 0; i < entries; i++) {
		size_t len;

		if (parse_entry(p, end, &e, &len) < 0) {
			rc = seterr(err, errlen, -EINVAL, archive,
				    "zip directory entry %llu is damaged", (unsigned long long)i);
			goto out;
		}
		p += len;
		if (e.name_len && e.name[e.name_len - 1] == '/')
			continue; /* a directory, not an array */
		arrays++;
		list_add(names, sizeof(names), &e);
		if (name ? entry_is(&e, name) : 1) {
			found++;
			hit = e;
		}
	}
	if (name && !found) {
		rc = seterr(err, errlen, -EINVAL, archive, "no array '%s' in the archive (it holds %s)",
			    name, arrays ? names : "none");
		goto out;
	}
	if (!name && arrays != 1) {
		if (arrays)
			rc = seterr(err, errlen, -EINVAL, archive,
				    "it holds %llu arrays (%s): name one as ARCHIVE.npz:NAME",
				    (unsigned long long)arrays, names);
		else
			rc = seterr(err, errlen, -EINVAL, archive, "it holds no array");
		goto out;
	}
	/* The array's name for messages, as numpy.load names it (without ".npy"). */
	size_t shown_len = hit.name_len;
	if (shown_len >= 4 && memcmp(hit.name + shown_len - 4, ".npy", 4) == 0)
		shown_len -= 4;
	char shown[128];
	snprintf(shown, sizeof(shown), "%.*s", (int)(shown_len < 100 ? shown_len : 100), hit.name);
	rc = open_member(f, archive, (uint64_t)st.st_size, &hit, shown, bytes, err, errlen);
out:
	free(dir);
	return rc;
}

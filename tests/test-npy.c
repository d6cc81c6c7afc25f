/* test-npy.c: the .npy reader/writer and the CPU reference GEMM (client/npy.c, refgemm.c).
 *
 *   npy:      round trips in both orders; hand-made headers of versions 1.0, 2.0 and 3.0;
 *             every refusal (dtype, shape, truncation, lying lengths, overflow) must name
 *             the problem in its message; pipes, where the size is not known in advance;
 *             3-D stacks written and read back
 *   npz:      hand-made zip archives: stored members (plain and zip64 fields), the only
 *             array, missing and compressed members, and directories and headers that lie
 *   refgemm:  known answers by hand, all transposes in both layouts with padded leading
 *             dimensions, alpha/beta, NaN in C with beta = 0, the comparison's tolerance
 *             and the shared random matrices */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "npy.h"
#include "refgemm.h"

static char g_dir[256];

static void path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", g_dir, name);
}

/* --- npy: helpers ------------------------------------------------------------------------ */

/* The bytes of a .npy file with the given version, announced header length, header text
 * and data; announced_len < 0 means the real length of header. */
static size_t make_npy(uint8_t *buf, size_t cap, int major, long announced_len, const char *header,
		       const void *data, size_t data_bytes)
{
	size_t hlen = strlen(header), len_bytes = major == 1 ? 2 : 4, n = 0;
	unsigned long al = announced_len < 0 ? (unsigned long)hlen : (unsigned long)announced_len;

	ck_assert_uint_le(6 + 2 + len_bytes + hlen + data_bytes, cap);
	memcpy(buf, "\x93NUMPY", 6);
	buf[6] = (uint8_t)major;
	buf[7] = 0;
	n = 8;
	for (size_t i = 0; i < len_bytes; i++)
		buf[n++] = (uint8_t)(al >> (8 * i));
	memcpy(buf + n, header, hlen);
	n += hlen;
	if (data_bytes)
		memcpy(buf + n, data, data_bytes);
	return n + data_bytes;
}

static void write_file(const char *path, const void *bytes, size_t len)
{
	FILE *f = fopen(path, "wb");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(bytes, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

/* Write a hand-made file named name and read it back. */
static int read_made(const char *name, int major, long announced_len, const char *header,
		     size_t nfloats, float **data, int64_t *rows, int64_t *cols, int *fortran,
		     char *err, size_t errlen)
{
	static uint8_t buf[1 << 16];
	float floats[64];
	char path[512];

	ck_assert_uint_le(nfloats, 64);
	for (size_t i = 0; i < nfloats; i++)
		floats[i] = (float)i;
	path_in(path, sizeof(path), name);
	write_file(path, buf,
		   make_npy(buf, sizeof(buf), major, announced_len, header, floats,
			    nfloats * sizeof(float)));
	err[0] = '\0';
	return npy_read(path, data, rows, cols, fortran, err, errlen);
}

/* A hand-made file that must be refused with -EINVAL and a message holding each of the
 * fragments. */
static void expect_refusal(const char *name, int major, long announced_len, const char *header,
			   size_t nfloats, const char *frag1, const char *frag2)
{
	float *data = (float *)0x1;
	int64_t rows = -7, cols = -7;
	int fortran = -7;
	char err[512];

	int rc = read_made(name, major, announced_len, header, nfloats, &data, &rows, &cols,
			   &fortran, err, sizeof(err));
	ck_assert_msg(rc == -EINVAL, "%s: rc %d, message '%s'", name, rc, err);
	ck_assert_msg(strstr(err, name), "message '%s' does not name the file", err);
	ck_assert_msg(strstr(err, frag1), "message '%s' lacks '%s'", err, frag1);
	if (frag2)
		ck_assert_msg(strstr(err, frag2), "message '%s' lacks '%s'", err, frag2);
	/* Outputs untouched on error. */
	ck_assert_ptr_eq(data, (float *)0x1);
	ck_assert_int_eq(rows, -7);
	ck_assert_int_eq(cols, -7);
	ck_assert_int_eq(fortran, -7);
}

static void expect_matrix(float *data, int64_t rows, int64_t cols, int fortran, int64_t want_rows,
			  int64_t want_cols, int want_fortran)
{
	ck_assert_int_eq(rows, want_rows);
	ck_assert_int_eq(cols, want_cols);
	ck_assert_int_eq(fortran, want_fortran);
	for (int64_t i = 0; i < rows * cols; i++)
		ck_assert_float_eq(data[i], (float)i);
	free(data);
}

/* --- npy: round trips -------------------------------------------------------------------- */

static void round_trip(int fortran_order)
{
	float m[12], *got = NULL;
	int64_t rows, cols;
	int fortran;
	char path[512], err[512];
	struct stat st;

	for (int i = 0; i < 12; i++)
		m[i] = (float)i * 0.5f - 2.0f;
	path_in(path, sizeof(path), fortran_order ? "rt-f.npy" : "rt-c.npy");
	ck_assert_int_eq(npy_write(path, m, 3, 4, fortran_order, err, sizeof(err)), 0);
	ck_assert_int_eq(npy_read(path, &got, &rows, &cols, &fortran, err, sizeof(err)), 0);
	ck_assert_int_eq(rows, 3);
	ck_assert_int_eq(cols, 4);
	ck_assert_int_eq(fortran, fortran_order);
	ck_assert_mem_eq(got, m, sizeof(m));
	free(got);
	/* numpy's layout: version 1.0, data aligned to 64 bytes. */
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq((st.st_size - (off_t)sizeof(m)) % 64, 0);
}

START_TEST(npy_round_trip_c_order)
{
	round_trip(0);
}
END_TEST

START_TEST(npy_round_trip_fortran_order)
{
	round_trip(1);
}
END_TEST

START_TEST(npy_write_header_text)
{
	float m[2] = { 1, 2 };
	char path[512], err[512], text[256];
	FILE *f;

	path_in(path, sizeof(path), "header.npy");
	ck_assert_int_eq(npy_write(path, m, 1, 2, 0, err, sizeof(err)), 0);
	f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	/* 10 + 60 + 1 bytes, padded to 128: a header length of 118. */
	ck_assert_uint_eq(fread(text, 1, 128 + 8, f), 128 + 8);
	fclose(f);
	ck_assert_mem_eq(text, "\x93NUMPY\x01\x00\x76\x00", 10);
	const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }";
	ck_assert_mem_eq(text + 10, dict, strlen(dict));
	for (size_t i = 10 + strlen(dict); i < 127; i++)
		ck_assert_int_eq(text[i], ' ');
	ck_assert_int_eq(text[127], '\n');
	ck_assert_mem_eq(text + 128, m, sizeof(m));
}
END_TEST

START_TEST(npy_round_trip_empty)
{
	float *got = NULL;
	int64_t rows, cols;
	int fortran;
	char path[512], err[512];

	path_in(path, sizeof(path), "empty.npy");
	ck_assert_int_eq(npy_write(path, NULL, 0, 5, 0, err, sizeof(err)), 0);
	ck_assert_int_eq(npy_read(path, &got, &rows, &cols, &fortran, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(got);
	ck_assert_int_eq(rows, 0);
	ck_assert_int_eq(cols, 5);
	free(got);
}
END_TEST

START_TEST(npy_write_refusals)
{
	float m[1] = { 0 };
	char err[512];

	ck_assert_int_eq(npy_write("/nonexistent-dir/x.npy", m, 1, 1, 0, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent-dir/x.npy"));
	ck_assert_int_eq(npy_write("x.npy", m, -1, 1, 0, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(npy_write("x.npy", NULL, 2, 2, 0, err, sizeof(err)), -EINVAL);
	/* No message buffer: still a code. */
	ck_assert_int_eq(npy_write("x.npy", m, -1, 1, 0, NULL, 0), -EINVAL);
}
END_TEST

/* --- npy: reading what others wrote ------------------------------------------------------ */

START_TEST(npy_read_v1_any_key_order)
{
	float *d;
	int64_t r, c;
	int f;
	char err[512];

	/* Keys shuffled, odd spaces, no trailing comma. */
	ck_assert_int_eq(read_made("v1-order.npy", 1, -1,
				   "{ 'shape' : ( 2 ,3 ) ,'fortran_order':True,\t'descr':'<f4' }\n",
				   6, &d, &r, &c, &f, err, sizeof(err)),
			 0);
	expect_matrix(d, r, c, f, 2, 3, 1);
}
END_TEST

START_TEST(npy_read_v1_numpy_style)
{
	float *d;
	int64_t r, c;
	int f;
	char err[512];
	char header[128];

	/* Exactly what numpy writes, padded to 64 with spaces and a newline. */
	snprintf(header, sizeof(header), "%-53s\n",
		 "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }");
	ck_assert_int_eq(read_made("v1-numpy.npy", 1, -1, header, 12, &d, &r, &c, &f, err,
				   sizeof(err)),
			 0);
	expect_matrix(d, r, c, f, 3, 4, 0);
}
END_TEST

START_TEST(npy_read_v2_and_v3)
{
	float *d;
	int64_t r, c;
	int f;
	char err[512];

	/* 4-byte header length; Python 2's 3L; trailing comma inside the tuple and the dict. */
	ck_assert_int_eq(read_made("v2.npy", 2, -1,
				   "{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 2L,), }   \n",
				   6, &d, &r, &c, &f, err, sizeof(err)),
			 0);
	expect_matrix(d, r, c, f, 3, 2, 0);
	ck_assert_int_eq(read_made("v3.npy", 3, -1,
				   "{\"descr\": \"<f4\", \"fortran_order\": True, \"shape\": (1, 5)}\n",
				   5, &d, &r, &c, &f, err, sizeof(err)),
			 0);
	expect_matrix(d, r, c, f, 1, 5, 1);
}
END_TEST

START_TEST(npy_read_pipe)
{
	static uint8_t buf[4096];
	float floats[6] = { 0, 1, 2, 3, 4, 5 };
	char path[512], err[512];
	float *d = NULL;
	int64_t r, c;
	int f;

	/* Through a FIFO the size is unknown up front: short and long data must still be found. */
	for (int variant = 0; variant < 3; variant++) {
		size_t data_bytes = variant == 0 ? sizeof(floats) : variant == 1 ? 5 * 4 : 6 * 4;
		size_t extra = variant == 2 ? 4 : 0;
		float more[7] = { 0, 1, 2, 3, 4, 5, 6 };
		size_t len = make_npy(buf, sizeof(buf), 1, -1,
				      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n",
				      variant == 2 ? (const void *)more : (const void *)floats,
				      data_bytes + extra);

		snprintf(path, sizeof(path), "%s/fifo%d", g_dir, variant);
		ck_assert_int_eq(mkfifo(path, 0600), 0);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			FILE *w = fopen(path, "wb");
			if (!w || fwrite(buf, 1, len, w) != len)
				_exit(1);
			fclose(w);
			_exit(0);
		}
		int rc = npy_read(path, &d, &r, &c, &f, err, sizeof(err));
		int status;
		waitpid(pid, &status, 0);
		if (variant == 0) {
			ck_assert_msg(rc == 0, "%s", err);
			expect_matrix(d, r, c, f, 2, 3, 0);
		} else if (variant == 1) {
			ck_assert_int_eq(rc, -EINVAL);
			ck_assert_msg(strstr(err, "truncated") && strstr(err, "6 floats") &&
					      strstr(err, "found 5"),
				      "%s", err);
		} else {
			ck_assert_int_eq(rc, -EINVAL);
			ck_assert_msg(strstr(err, "more data follows"), "%s", err);
		}
		unlink(path);
	}
}
END_TEST

/* --- npy: refusals ------------------------------------------------------------------------ */

START_TEST(npy_refuse_1d)
{
	expect_refusal("one-d.npy", 1, -1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n",
		       3, "(3,)", "2-D");
}
END_TEST

START_TEST(npy_refuse_3d_and_0d)
{
	expect_refusal("three-d.npy", 1, -1,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4, 5), }\n", 60,
		       "(3, 4, 5)", "2-D");
	expect_refusal("zero-d.npy", 1, -1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n",
		       1, "()", "2-D");
}
END_TEST

START_TEST(npy_refuse_dtypes)
{
	expect_refusal("f8.npy", 1, -1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }\n",
		       8, "'<f8'", "float32");
	expect_refusal("be.npy", 1, -1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }\n",
		       4, "'>f4'", "'<f4'");
	expect_refusal("i4.npy", 1, -1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }\n",
		       4, "'<i4'", NULL);
	expect_refusal("rec.npy", 1, -1,
		       "{'descr': [('x', '<f4'), ('y', '<f4')], 'fortran_order': False, 'shape': (2,), }\n",
		       4, "structured", NULL);
	expect_refusal("long.npy", 1, -1,
		       "{'descr': '<f4xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', "
		       "'fortran_order': False, 'shape': (1, 1), }\n",
		       1, "dtype is '<f4xxx", "...'");
}
END_TEST

START_TEST(npy_refuse_truncated)
{
	expect_refusal("short.npy", 1, -1,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }\n", 7, "truncated",
		       "header says 12 floats, found 7");
}
END_TEST

START_TEST(npy_refuse_trailing_data)
{
	expect_refusal("long-data.npy", 1, -1,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n", 5,
		       "4 bytes follow", "4 floats");
}
END_TEST

START_TEST(npy_refuse_header_past_end)
{
	expect_refusal("hdr-v1.npy", 1, 1000,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }\n", 1,
		       "header length 1000", "past the end");
	expect_refusal("hdr-v2.npy", 2, 4000000000L,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }\n", 1,
		       "header length 4000000000", "past the end");
}
END_TEST

START_TEST(npy_refuse_absurd_shapes)
{
	expect_refusal("huge-product.npy", 1, -1,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 2), }\n",
		       1, "(9223372036854775807, 2)", "more data than this machine can address");
	expect_refusal("huge-bytes.npy", 1, -1,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 1), }\n",
		       1, "more data than this machine can address", NULL);
	expect_refusal("huge-dim.npy", 1, -1,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 2), }\n",
		       1, "99999999999999999999", "too large");
	/* A believable shape that the file cannot back: refused before allocating it. */
	expect_refusal("big-claim.npy", 1, -1,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }\n", 1,
		       "truncated", "header says 10000000000 floats, found 1");
	expect_refusal("negative.npy", 1, -1,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 2), }\n", 1,
		       "whole numbers", NULL);
}
END_TEST

START_TEST(npy_refuse_malformed_headers)
{
	expect_refusal("no-shape.npy", 1, -1, "{'descr': '<f4', 'fortran_order': False}\n", 1,
		       "lacks 'shape'", NULL);
	expect_refusal("dup.npy", 1, -1,
		       "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)}\n", 1,
		       "'descr' appears twice", NULL);
	expect_refusal("unknown-key.npy", 1, -1,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), 'extra': 1}\n", 1,
		       "unexpected key 'extra'", NULL);
	expect_refusal("bad-bool.npy", 1, -1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (1, 1)}\n",
		       1, "'fortran_order'", "True nor False");
	expect_refusal("not-dict.npy", 1, -1, "['descr', '<f4']\n", 1, "not a Python dict", NULL);
	expect_refusal("unclosed.npy", 1, -1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)\n",
		       1, "expected ',' or '}'", NULL);
	expect_refusal("junk-after.npy", 1, -1,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)} junk\n", 1,
		       "after the dict", NULL);
	expect_refusal("version4.npy", 4, -1,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)}\n", 1,
		       "version 4.0", "not supported");
}
END_TEST

START_TEST(npy_refuse_not_npy)
{
	char path[512], err[512];
	float *d;
	int64_t r, c;
	int f;

	path_in(path, sizeof(path), "text.npy");
	write_file(path, "hello, world\n", 13);
	ck_assert_int_eq(npy_read(path, &d, &r, &c, &f, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "not a .npy file"), "%s", err);
	path_in(path, sizeof(path), "tiny.npy");
	write_file(path, "\x93NUM", 4);
	ck_assert_int_eq(npy_read(path, &d, &r, &c, &f, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "not a .npy file"), "%s", err);
	path_in(path, sizeof(path), "no-such-file.npy");
	ck_assert_int_eq(npy_read(path, &d, &r, &c, &f, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "no-such-file.npy") && strstr(err, "No such file"), "%s", err);
}
END_TEST

/* --- npz: arrays in zip archives --------------------------------------------------------- */

static uint8_t *put(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

/* One member of a hand-made archive. zip64: its sizes and offset in zip64 extra fields,
 * as numpy writes its local headers (and as big archives have them in the directory). */
struct zmember {
	const char *name;
	const uint8_t *data;
	size_t len;
	unsigned method;
	int zip64;
};

/* CRC-32 as zip has it, bit by bit from its definition (the reader uses a table). */
static uint32_t crc32_bits(const uint8_t *p, size_t len)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

/* The bytes of a zip archive of the members, the directory after them and the end record
 * last. */
static size_t make_zip(uint8_t *buf, size_t cap, const struct zmember *m, int n)
{
	uint64_t offsets[8];
	uint8_t *p = buf;

	ck_assert_int_le(n, 8);
	for (int i = 0; i < n; i++) {
		size_t nlen = strlen(m[i].name);
		ck_assert_uint_le((size_t)(p - buf) + 30 + nlen + 20 + m[i].len, cap);
		offsets[i] = (uint64_t)(p - buf);
		p = put(p, 0x04034b50, 4);
		p = put(p, m[i].zip64 ? 45 : 20, 2);
		p = put(p, 0, 2);
		p = put(p, m[i].method, 2);
		p = put(p, 0, 4); /* time, date */
		p = put(p, crc32_bits(m[i].data, m[i].len), 4);
		p = put(p, m[i].zip64 ? 0xffffffffu : m[i].len, 4);
		p = put(p, m[i].zip64 ? 0xffffffffu : m[i].len, 4);
		p = put(p, nlen, 2);
		p = put(p, m[i].zip64 ? 20 : 0, 2);
		memcpy(p, m[i].name, nlen);
		p += nlen;
		if (m[i].zip64) {
			p = put(p, 1, 2);
			p = put(p, 16, 2);
			p = put(p, m[i].len, 8);
			p = put(p, m[i].len, 8);
		}
		memcpy(p, m[i].data, m[i].len);
		p += m[i].len;
	}
	uint64_t dir = (uint64_t)(p - buf);
	for (int i = 0; i < n; i++) {
		size_t nlen = strlen(m[i].name);
		ck_assert_uint_le((size_t)(p - buf) + 46 + nlen + 28 + 22, cap);
		p = put(p, 0x02014b50, 4);
		p = put(p, 45, 2);
		p = put(p, m[i].zip64 ? 45 : 20, 2);
		p = put(p, 0, 2);
		p = put(p, m[i].method, 2);
		p = put(p, 0, 4);
		p = put(p, crc32_bits(m[i].data, m[i].len), 4);
		p = put(p, m[i].zip64 ? 0xffffffffu : m[i].len, 4);
		p = put(p, m[i].zip64 ? 0xffffffffu : m[i].len, 4);
		p = put(p, nlen, 2);
		p = put(p, m[i].zip64 ? 28 : 0, 2);
		p = put(p, 0, 2); /* comment */
		p = put(p, 0, 2); /* disk */
		p = put(p, 0, 2); /* internal attributes */
		p = put(p, 0, 4); /* external attributes */
		p = put(p, m[i].zip64 ? 0xffffffffu : offsets[i], 4);
		memcpy(p, m[i].name, nlen);
		p += nlen;
		if (m[i].zip64) {
			p = put(p, 1, 2);
			p = put(p, 24, 2);
			p = put(p, m[i].len, 8);
			p = put(p, m[i].len, 8);
			p = put(p, offsets[i], 8);
		}
	}
	uint64_t dir_bytes = (uint64_t)(p - buf) - dir;
	p = put(p, 0x06054b50, 4);
	p = put(p, 0, 4); /* disks */
	p = put(p, (uint64_t)n, 2);
	p = put(p, (uint64_t)n, 2);
	p = put(p, dir_bytes, 4);
	p = put(p, dir, 4);
	p = put(p, 0, 2);
	return (size_t)(p - buf);
}

/* A 2 x 3 matrix (0..5) and a 2 x 2 x 2 stack (0..7) as .npy bytes. */
static size_t npy_2x3(uint8_t *buf, size_t cap)
{
	float f[6] = { 0, 1, 2, 3, 4, 5 };
	return make_npy(buf, cap, 1, -1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n",
			f, sizeof(f));
}

static size_t npy_2x2x2(uint8_t *buf, size_t cap)
{
	float f[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
	return make_npy(buf, cap, 1, -1,
			"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }\n", f, sizeof(f));
}

/* Write the archive of the members to name and load spec (name, or name:member) from it. */
static int load_zip(const char *name, const struct zmember *m, int n, const char *member,
		    int max_dims, struct npy_array *out, char *err, size_t errlen)
{
	static uint8_t zip[1 << 14];
	char path[512], spec[600];

	path_in(path, sizeof(path), name);
	write_file(path, zip, make_zip(zip, sizeof(zip), m, n));
	snprintf(spec, sizeof(spec), "%s%s%s", path, member ? ":" : "", member ? member : "");
	err[0] = '\0';
	return npy_load(spec, 2, max_dims, out, err, errlen);
}

static void expect_counting(const struct npy_array *a, int ndims, int64_t d0, int64_t d1,
			    int64_t d2)
{
	ck_assert_int_eq(a->ndims, ndims);
	ck_assert_int_eq(a->dims[0], d0);
	ck_assert_int_eq(a->dims[1], d1);
	ck_assert_int_eq(a->dims[2], d2);
	ck_assert_int_eq(a->fortran_order, 0);
	for (int64_t i = 0; i < d0 * d1 * d2; i++)
		ck_assert_float_eq(a->data[i], (float)i);
}

START_TEST(npz_stored_members)
{
	uint8_t a[256], b[256];
	size_t la = npy_2x3(a, sizeof(a)), lb = npy_2x2x2(b, sizeof(b));
	char err[512];
	struct npy_array out;

	/* Plain members, and members in numpy's zip64 form; a name with a colon in the path. */
	for (int zip64 = 0; zip64 < 2; zip64++) {
		struct zmember m[] = { { "a.npy", a, la, 0, zip64 }, { "b.npy", b, lb, 0, zip64 } };
		const char *name = zip64 ? "odd:name.npz" : "ab.npz";

		ck_assert_msg(load_zip(name, m, 2, "a", 3, &out, err, sizeof(err)) == 0, "%s", err);
		expect_counting(&out, 2, 2, 3, 1);
		free(out.data);
		ck_assert_msg(load_zip(name, m, 2, "b", 3, &out, err, sizeof(err)) == 0, "%s", err);
		expect_counting(&out, 3, 2, 2, 2);
		free(out.data);
		/* A stack where a matrix is wanted: the 2-D reader names the shape. */
		ck_assert_int_eq(load_zip(name, m, 2, "b", 2, &out, err, sizeof(err)), -EINVAL);
		ck_assert_msg(strstr(err, ":b: shape (2, 2, 2) is not 2-D"), "%s", err);
	}
	/* The only array of an archive needs no name. */
	struct zmember one[] = { { "x.npy", b, lb, 0, 1 } };
	ck_assert_msg(load_zip("one.npz", one, 1, NULL, 3, &out, err, sizeof(err)) == 0, "%s", err);
	expect_counting(&out, 3, 2, 2, 2);
	free(out.data);
}
END_TEST

START_TEST(npz_refusals)
{
	uint8_t a[256], b[256];
	size_t la = npy_2x3(a, sizeof(a)), lb = npy_2x2x2(b, sizeof(b));
	struct zmember m[] = { { "a.npy", a, la, 0, 0 }, { "b.npy", b, lb, 8, 0 },
			       { "c.npy", a, la, 12, 0 } };
	struct npy_array out = { .data = (float *)0x1, .ndims = -7 };
	char err[512];

	/* Which array? Several, and none named: the message lists them. */
	ck_assert_int_eq(load_zip("abc.npz", m, 3, NULL, 3, &out, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "holds 3 arrays (a, b, c): name one as ARCHIVE.npz:NAME"), "%s",
		      err);
	ck_assert_int_eq(load_zip("abc.npz", m, 3, "q", 3, &out, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "no array 'q' in the archive (it holds a, b, c)"), "%s", err);
	ck_assert_int_eq(load_zip("abc.npz", m, 3, "", 3, &out, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "no array name after ':'"), "%s", err);
	/* Deflated (numpy.savez_compressed) and other methods. */
	ck_assert_int_eq(load_zip("abc.npz", m, 3, "b", 3, &out, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "array 'b' is compressed (numpy.savez_compressed)"), "%s", err);
	ck_assert_int_eq(load_zip("abc.npz", m, 3, "c", 3, &out, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "compression method 12"), "%s", err);
	/* No archive at all, under a .npz name. */
	char path[512], spec[600];
	path_in(path, sizeof(path), "text.npz");
	write_file(path, "hello, world, this is not a zip file\n", 37);
	snprintf(spec, sizeof(spec), "%s:a", path);
	ck_assert_int_eq(npy_load(spec, 2, 3, &out, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "no zip end-of-directory record"), "%s", err);
	path_in(path, sizeof(path), "missing.npz");
	snprintf(spec, sizeof(spec), "%s:a", path);
	ck_assert_int_eq(npy_load(spec, 2, 3, &out, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "missing.npz:a: No such file"), "%s", err);
	/* An archive under a .npy name: the .npy reader says what it is. */
	uint8_t zip[2048];
	path_in(path, sizeof(path), "zip-named.npy");
	write_file(path, zip, make_zip(zip, sizeof(zip), m, 1));
	ck_assert_int_eq(npy_load(path, 2, 3, &out, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "a zip archive, not a .npy file"), "%s", err);
	/* Outputs untouched throughout. */
	ck_assert_ptr_eq(out.data, (float *)0x1);
	ck_assert_int_eq(out.ndims, -7);
}
END_TEST

/* Archives whose directory or headers lie about where things are: each is refused with a
 * sentence, never read out of bounds (the sanitizer build would tell). */
START_TEST(npz_damaged)
{
	static uint8_t zip[4096];
	uint8_t a[256];
	size_t la = npy_2x3(a, sizeof(a));
	struct zmember m[] = { { "a.npy", a, la, 0, 0 } };
	size_t len = make_zip(zip, sizeof(zip), m, 1);
	size_t eocd = len - 22, dir = la + 30 + 5;
	struct npy_array out;
	char path[512], spec[600], err[512];
	static const struct {
		const char *what;
		size_t at;
		uint64_t value;
		int bytes;
		const char *want;
	} cases[] = {
		{ "directory past the end", 0, 1u << 20, 4, "does not fit in the file" },
		{ "directory longer than the file", 1, 1u << 20, 4, "does not fit in the file" },
		{ "local header elsewhere", 2, 7, 4, "no zip local header" },
		{ "member longer than the file", 3, 1u << 20, 4, "differ" },
		{ "both sizes longer than the file", 4, 1u << 20, 4, "runs past the end" },
		{ "member shorter than its .npy", 5, 20, 4, "truncated" },
		{ "member longer than its .npy", 6, 4, 4, "bytes follow" },
		{ "name longer than the entry", 7, 5000, 2, "entry 0 is damaged" },
		{ "zip64 sizes without the zip64 field", 4, 0xffffffffu, 4, "entry 0 is damaged" },
		{ "more entries than the directory holds", 8, 2, 2, "entry 1 is damaged" },
		{ "a byte of the data changed", 9, 0x40, 1, "is damaged: its CRC-32 is" },
	};

	/* The CRC-32 itself against the standard's check value ("123456789"). */
	ck_assert_uint_eq(crc32_bits((const uint8_t *)"123456789", 9), 0xcbf43926u);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t bad[4096];
		size_t badlen = len;

		memcpy(bad, zip, len);
		switch (cases[i].at) {
		case 0: /* the end record's directory offset */
			put(bad + eocd + 16, cases[i].value, 4);
			break;
		case 1: /* its directory size */
			put(bad + eocd + 12, cases[i].value, 4);
			break;
		case 2: /* the entry's local header offset */
			put(bad + dir + 42, cases[i].value, 4);
			break;
		case 3: /* the entry's compressed size */
			put(bad + dir + 20, cases[i].value, 4);
			break;
		case 4: /* both sizes */
			put(bad + dir + 20, cases[i].value, 4);
			put(bad + dir + 24, cases[i].value, 4);
			break;
		case 5: /* both sizes: fewer bytes than the .npy holds */
		case 6: /* more: the end of the member runs into the directory */
			put(bad + dir + 20, cases[i].at == 5 ? la - cases[i].value : la + cases[i].value, 4);
			put(bad + dir + 24, cases[i].at == 5 ? la - cases[i].value : la + cases[i].value, 4);
			/* A CRC that matches the new length, so that the .npy's own check speaks. */
			put(bad + dir + 16,
			    crc32_bits(bad + 35, cases[i].at == 5 ? la - cases[i].value : la + cases[i].value),
			    4);
			break;
		case 7: /* the entry's name length */
			put(bad + dir + 28, cases[i].value, 2);
			break;
		case 8: /* the entry count */
			put(bad + eocd + 8, cases[i].value, 2);
			put(bad + eocd + 10, cases[i].value, 2);
			break;
		case 9: /* the last float's high byte, sizes and headers intact */
			bad[35 + la - 1] ^= (uint8_t)cases[i].value;
			break;
		}
		path_in(path, sizeof(path), "damaged.npz");
		write_file(path, bad, badlen);
		snprintf(spec, sizeof(spec), "%s:a", path);
		err[0] = '\0';
		int rc = npy_load(spec, 2, 3, &out, err, sizeof(err));
		ck_assert_msg(rc == -EINVAL, "%s: rc %d, '%s'", cases[i].what, rc, err);
		ck_assert_msg(strstr(err, "damaged.npz") && strstr(err, cases[i].want),
			      "%s: message '%s' lacks '%s'", cases[i].what, err, cases[i].want);
	}
	/* Cut short: no end record. */
	path_in(path, sizeof(path), "cut.npz");
	write_file(path, zip, len - 10);
	snprintf(spec, sizeof(spec), "%s:a", path);
	ck_assert_int_eq(npy_load(spec, 2, 3, &out, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "no zip end-of-directory record"), "%s", err);
}
END_TEST

START_TEST(npz_fifo_refused)
{
	char path[512], spec[600], err[512];
	struct npy_array out;

	snprintf(path, sizeof(path), "%s/fifo.npz", g_dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		FILE *w = fopen(path, "wb");
		if (w)
			fclose(w);
		_exit(0);
	}
	snprintf(spec, sizeof(spec), "%s:a", path);
	ck_assert_int_eq(npy_load(spec, 2, 3, &out, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "must be a regular file"), "%s", err);
	waitpid(pid, NULL, 0);
}
END_TEST

START_TEST(npy_write_array_3d)
{
	float x[24];
	int64_t dims[3] = { 2, 3, 4 };
	struct npy_array out;
	char path[512], err[512];

	for (int i = 0; i < 24; i++)
		x[i] = (float)i;
	path_in(path, sizeof(path), "stack.npy");
	ck_assert_msg(npy_write_array(path, x, 3, dims, err, sizeof(err)) == 0, "%s", err);
	ck_assert_msg(npy_load(path, 2, 3, &out, err, sizeof(err)) == 0, "%s", err);
	expect_counting(&out, 3, 2, 3, 4);
	free(out.data);
	/* The header as numpy writes it, data at a multiple of 64 bytes. */
	FILE *f = fopen(path, "rb");
	char head[128];
	ck_assert_uint_eq(fread(head, 1, sizeof(head), f), sizeof(head));
	fclose(f);
	ck_assert(memmem(head, sizeof(head), "'shape': (2, 3, 4), }", 21) != NULL);
	size_t data_at = 10 + (size_t)(uint8_t)head[8] + ((size_t)(uint8_t)head[9] << 8);
	ck_assert_uint_eq(data_at % 64, 0);
	ck_assert_uint_le(data_at, sizeof(head));
	ck_assert_int_eq(head[data_at - 1], '\n');
	/* A stack is not read where a matrix is wanted. */
	ck_assert_int_eq(npy_load(path, 2, 2, &out, err, sizeof(err)), -EINVAL);
	/* 4-D (images, N x 3 x H x W) round-trips; 5-D is not written. */
	int64_t four[4] = { 2, 3, 2, 2 }, five[5] = { 1, 1, 1, 1, 1 };
	ck_assert_msg(npy_write_array(path, x, 4, four, err, sizeof(err)) == 0, "%s", err);
	ck_assert_msg(npy_load(path, 4, 4, &out, err, sizeof(err)) == 0, "%s", err);
	ck_assert(out.ndims == 4 && out.dims[0] == 2 && out.dims[1] == 3 && out.dims[3] == 2);
	ck_assert(memcmp(out.data, x, 24 * sizeof(float)) == 0);
	free(out.data);
	ck_assert_int_eq(npy_write_array(path, x, 5, five, err, sizeof(err)), -EINVAL);
}
END_TEST

/* --- refgemm ------------------------------------------------------------------------------ */

/* The logical 2 x 3 A and 3 x 2 B used throughout, and their product by hand:
 *   [1 2 3]   [ 7  8]   [ 1*7+2*9+3*11  1*8+2*10+3*12 ]   [ 58  64]
 *   [4 5 6] x [ 9 10] = [ 4*7+5*9+6*11  4*8+5*10+6*12 ] = [139 154]
 *             [11 12]                                               */
static const float LA[2][3] = { { 1, 2, 3 }, { 4, 5, 6 } };
static const float LB[3][2] = { { 7, 8 }, { 9, 10 }, { 11, 12 } };
static const float LC[2][2] = { { 58, 64 }, { 139, 154 } };

#define PAD -999.0f

/* Store logical (lr x lc, row by row) as a stored matrix: transposed when trans, in the
 * layout, with leading dimension ld; the padding holds PAD. */
static void store(const float *logical, int lr, int lc, int row_major, int trans, int64_t ld,
		  float *out, size_t out_len)
{
	int sr = trans ? lc : lr, sc = trans ? lr : lc;

	for (size_t i = 0; i < out_len; i++)
		out[i] = PAD;
	for (int i = 0; i < sr; i++)
		for (int j = 0; j < sc; j++) {
			float v = trans ? logical[j * lc + i] : logical[i * lc + j];
			out[row_major ? i * ld + j : i + j * ld] = v;
		}
}

START_TEST(refgemm_known_answer_row_major)
{
	float c[4] = { 0 };

	refgemm(1, 0, 0, 2, 2, 3, 1.0f, &LA[0][0], 3, &LB[0][0], 2, 0.0f, c, 2);
	ck_assert_float_eq(c[0], 58);
	ck_assert_float_eq(c[1], 64);
	ck_assert_float_eq(c[2], 139);
	ck_assert_float_eq(c[3], 154);
}
END_TEST

START_TEST(refgemm_known_answer_col_major)
{
	/* The same matrices column by column. */
	const float a[6] = { 1, 4, 2, 5, 3, 6 }, b[6] = { 7, 9, 11, 8, 10, 12 };
	float c[4] = { 0 };

	refgemm(0, 0, 0, 2, 2, 3, 1.0f, a, 2, b, 3, 0.0f, c, 2);
	ck_assert_float_eq(c[0], 58);
	ck_assert_float_eq(c[1], 139);
	ck_assert_float_eq(c[2], 64);
	ck_assert_float_eq(c[3], 154);
}
END_TEST

/* Every layout and transpose, with leading dimensions larger than needed: the same logical
 * product each time, and the padding untouched. _i: 0..7 = row_major, trans_a, trans_b. */
START_TEST(refgemm_layouts_and_transposes)
{
	int row_major = _i & 1, ta = (_i >> 1) & 1, tb = (_i >> 2) & 1;
	float a[64], b[64], c[64];
	/* Inner extents of the stored matrices, plus 2 of padding. */
	int64_t lda = (row_major ? (ta ? 2 : 3) : (ta ? 3 : 2)) + 2;
	int64_t ldb = (row_major ? (tb ? 3 : 2) : (tb ? 2 : 3)) + 2;
	int64_t ldc = 2 + 3;

	store(&LA[0][0], 2, 3, row_major, ta, lda, a, 64);
	store(&LB[0][0], 3, 2, row_major, tb, ldb, b, 64);
	for (int i = 0; i < 64; i++)
		c[i] = PAD;
	refgemm(row_major, ta, tb, 2, 2, 3, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
	for (int64_t i = 0; i < 2; i++)
		for (int64_t j = 0; j < 2; j++)
			ck_assert_float_eq(c[row_major ? i * ldc + j : i + j * ldc], LC[i][j]);
	/* Everything else still PAD: 4 results in the first 2 * ldc elements, nothing after. */
	int touched = 0;
	for (int i = 0; i < 64; i++)
		touched += c[i] != PAD;
	ck_assert_int_eq(touched, 4);
}
END_TEST

START_TEST(refgemm_beta_zero_ignores_nan)
{
	float c[4] = { NAN, NAN, INFINITY, NAN };

	refgemm(1, 0, 0, 2, 2, 3, 1.0f, &LA[0][0], 3, &LB[0][0], 2, 0.0f, c, 2);
	for (int i = 0; i < 4; i++)
		ck_assert_float_eq(c[i], (&LC[0][0])[i]);
}
END_TEST

START_TEST(refgemm_alpha_beta)
{
	float c[4] = { 1, 2, 3, 4 };

	/* 2 * A * B - 1 * C */
	refgemm(1, 0, 0, 2, 2, 3, 2.0f, &LA[0][0], 3, &LB[0][0], 2, -1.0f, c, 2);
	ck_assert_float_eq(c[0], 2 * 58 - 1);
	ck_assert_float_eq(c[1], 2 * 64 - 2);
	ck_assert_float_eq(c[2], 2 * 139 - 3);
	ck_assert_float_eq(c[3], 2 * 154 - 4);
	/* A NaN in C with beta != 0 must come through. */
	c[0] = NAN;
	refgemm(1, 0, 0, 2, 2, 3, 1.0f, &LA[0][0], 3, &LB[0][0], 2, 0.5f, c, 2);
	ck_assert(isnan(c[0]));
	ck_assert(!isnan(c[1]));
}
END_TEST

START_TEST(refgemm_1x1_and_vectors)
{
	const float a[4] = { 1, 2, 3, 4 }, b[4] = { 4, 3, 2, 1 };
	float c[16];

	/* Inner product: 1 x 4 times 4 x 1. */
	refgemm(1, 0, 0, 1, 1, 4, 1.0f, a, 4, b, 1, 0.0f, c, 1);
	ck_assert_float_eq(c[0], 4 + 6 + 6 + 4);
	/* Outer product: 4 x 1 times 1 x 4, column-major. */
	refgemm(0, 0, 0, 4, 4, 1, 1.0f, a, 4, b, 1, 0.0f, c, 4);
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			ck_assert_float_eq(c[i + j * 4], a[i] * b[j]);
}
END_TEST

/* A product as a float32 device would compute it: float accumulation, in order. */
static void float_gemm_row_major(int64_t m, int64_t n, int64_t k, const float *a, const float *b,
				 float *c)
{
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			float s = 0;
			for (int64_t l = 0; l < k; l++)
				s += a[i * k + l] * b[l * n + j];
			c[i * n + j] = s;
		}
}

START_TEST(refgemm_compare_tolerance)
{
	enum { M = 20, N = 30, K = 500 };
	static float a[M * K], b[K * N], want[M * N], got[M * N];
	uint64_t state = 42;
	double err;
	int64_t bi, bj;

	refgemm_fill_random(a, M * K, &state);
	refgemm_fill_random(b, K * N, &state);
	refgemm(1, 0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, want, N);

	/* Single-precision accumulation: rounding differences only, all accepted. */
	float_gemm_row_major(M, N, K, a, b, got);
	ck_assert_int_eq(refgemm_compare(1, M, N, K, got, want, N, &err, &bi, &bj), 0);
	ck_assert(err > 0);
	ck_assert(err <= refgemm_tolerance(1, M, N, K, want, N));

	/* One ulp everywhere: accepted. */
	for (int i = 0; i < M * N; i++)
		got[i] = nextafterf(want[i], INFINITY);
	ck_assert_int_eq(refgemm_compare(1, M, N, K, got, want, N, NULL, NULL, NULL), 0);

	/* One element off by 1% of the largest value: caught, and located. */
	memcpy(got, want, sizeof(got));
	double scale = 0;
	for (int i = 0; i < M * N; i++)
		scale = fmax(scale, fabs(want[i]));
	got[7 * N + 11] += (float)(0.01 * scale);
	ck_assert_int_eq(refgemm_compare(1, M, N, K, got, want, N, &err, &bi, &bj), 1);
	ck_assert_int_eq(bi, 7);
	ck_assert_int_eq(bj, 11);
	ck_assert(err > refgemm_tolerance(1, M, N, K, want, N));

	/* A missing term of the sum (a wrong index in a kernel) is caught too. */
	memcpy(got, want, sizeof(got));
	got[3 * N + 4] -= a[3 * K + 0] * b[0 * N + 4] + a[3 * K + 1] * b[1 * N + 4] +
			  a[3 * K + 2] * b[2 * N + 4];
	ck_assert_int_eq(refgemm_compare(1, M, N, K, got, want, N, NULL, &bi, &bj), 1);
	ck_assert_int_eq(bi, 3);
	ck_assert_int_eq(bj, 4);
}
END_TEST

START_TEST(refgemm_compare_nonfinite)
{
	/* Column-major 2 x 2 with ldc 3: the padding (index 2) must be ignored. */
	float want[6] = { 1, 2, NAN, 3, 4, NAN };
	float got[6] = { 1, 2, 12345, 3, 4, -5 };
	double err;
	int64_t bi, bj;

	ck_assert_int_eq(refgemm_compare(0, 2, 2, 1, got, want, 3, &err, &bi, &bj), 0);
	ck_assert(err == 0);
	got[4] = NAN;
	ck_assert_int_eq(refgemm_compare(0, 2, 2, 1, got, want, 3, &err, &bi, &bj), 1);
	ck_assert(isinf(err));
	ck_assert_int_eq(bi, 1);
	ck_assert_int_eq(bj, 1);
	/* NaN where NaN is expected is right; a number there is not. */
	want[4] = NAN;
	ck_assert_int_eq(refgemm_compare(0, 2, 2, 1, got, want, 3, NULL, NULL, NULL), 0);
	got[4] = 4;
	ck_assert_int_eq(refgemm_compare(0, 2, 2, 1, got, want, 3, NULL, NULL, NULL), 1);
	/* Infinities must match in sign. */
	want[0] = got[0] = INFINITY;
	want[4] = got[4] = 4;
	ck_assert_int_eq(refgemm_compare(0, 2, 2, 1, got, want, 3, NULL, NULL, NULL), 0);
	got[0] = -INFINITY;
	ck_assert_int_eq(refgemm_compare(0, 2, 2, 1, got, want, 3, NULL, NULL, NULL), 1);
}
END_TEST

START_TEST(refgemm_random_is_shared)
{
	static float x[10000], y[10000];
	uint64_t s1 = 1, s2 = 1, s3 = 2;
	double sum = 0;

	refgemm_fill_random(x, 10000, &s1);
	refgemm_fill_random(y, 5000, &s2);
	refgemm_fill_random(y + 5000, 5000, &s2);
	/* Filling in two parts gives the same stream as in one: A then B from one state. */
	ck_assert_mem_eq(x, y, sizeof(x));
	ck_assert_uint_eq(s1, s2);
	for (int i = 0; i < 10000; i++) {
		ck_assert(x[i] >= -1.0f && x[i] < 1.0f);
		/* Multiples of 2^-23: exact in any float arithmetic that follows. */
		ck_assert_float_eq(x[i] * 8388608.0f, truncf(x[i] * 8388608.0f));
		sum += x[i];
	}
	ck_assert(fabs(sum / 10000) < 0.05);
	refgemm_fill_random(y, 10000, &s3);
	ck_assert(memcmp(x, y, sizeof(x)) != 0);
	/* Seed 0 is a fine seed. */
	uint64_t s0 = 0;
	refgemm_fill_random(y, 4, &s0);
	ck_assert(y[0] != y[1] || y[1] != y[2]);
}
END_TEST

/* --- runner ------------------------------------------------------------------------------- */

/* Labels: int64, int32, uint8 and int8 read as int32 by hand-made files; floats, 2-D and
 * values past int32 refused. */
START_TEST(npy_labels)
{
	uint8_t buf[512];
	char path[512], err[512];
	int64_t i8[3] = { 0, 9, 3 }, big[1] = { 1ll << 40 };
	int32_t i4[3] = { 2, 1, 0 }, *y;
	uint8_t u1[3] = { 255, 0, 7 };
	int8_t s1[3] = { -1, 0, 7 };
	float f4[3] = { 0 };
	int64_t n;
	size_t len;

	path_in(path, sizeof(path), "labels.npy");
	len = make_npy(buf, sizeof(buf), 1, -1,
		       "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", i8, sizeof(i8));
	write_file(path, buf, len);
	ck_assert_msg(npy_load_labels(path, &y, &n, err, sizeof(err)) == 0, "%s", err);
	ck_assert(n == 3 && y[0] == 0 && y[1] == 9 && y[2] == 3);
	free(y);
	len = make_npy(buf, sizeof(buf), 1, -1,
		       "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", i4, sizeof(i4));
	write_file(path, buf, len);
	ck_assert_msg(npy_load_labels(path, &y, &n, err, sizeof(err)) == 0, "%s", err);
	ck_assert(n == 3 && y[0] == 2 && y[1] == 1 && y[2] == 0);
	free(y);
	len = make_npy(buf, sizeof(buf), 1, -1,
		       "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", u1, sizeof(u1));
	write_file(path, buf, len);
	ck_assert_msg(npy_load_labels(path, &y, &n, err, sizeof(err)) == 0, "%s", err);
	ck_assert(n == 3 && y[0] == 255 && y[1] == 0 && y[2] == 7);
	free(y);
	len = make_npy(buf, sizeof(buf), 1, -1,
		       "{'descr': '|i1', 'fortran_order': False, 'shape': (3,), }", s1, sizeof(s1));
	write_file(path, buf, len);
	ck_assert_msg(npy_load_labels(path, &y, &n, err, sizeof(err)) == 0, "%s", err);
	ck_assert(n == 3 && y[0] == -1 && y[2] == 7);
	free(y);
	len = make_npy(buf, sizeof(buf), 1, -1,
		       "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4, sizeof(f4));
	write_file(path, buf, len);
	ck_assert_int_eq(npy_load_labels(path, &y, &n, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "integer labels"), "%s", err);
	len = make_npy(buf, sizeof(buf), 1, -1,
		       "{'descr': '<i4', 'fortran_order': False, 'shape': (3, 1), }", i4,
		       sizeof(i4));
	write_file(path, buf, len);
	ck_assert_int_eq(npy_load_labels(path, &y, &n, err, sizeof(err)), -EINVAL);
	len = make_npy(buf, sizeof(buf), 1, -1,
		       "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", big, sizeof(big));
	write_file(path, buf, len);
	ck_assert_int_eq(npy_load_labels(path, &y, &n, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "out of int32"), "%s", err);
}
END_TEST

static Suite *npy_suite(void)
{
	Suite *s = suite_create("npy");
	TCase *tc = tcase_create("npy");

	tcase_add_test(tc, npy_round_trip_c_order);
	tcase_add_test(tc, npy_labels);
	tcase_add_test(tc, npy_round_trip_fortran_order);
	tcase_add_test(tc, npy_write_header_text);
	tcase_add_test(tc, npy_round_trip_empty);
	tcase_add_test(tc, npy_write_refusals);
	tcase_add_test(tc, npy_read_v1_any_key_order);
	tcase_add_test(tc, npy_read_v1_numpy_style);
	tcase_add_test(tc, npy_read_v2_and_v3);
	tcase_add_test(tc, npy_read_pipe);
	tcase_add_test(tc, npy_refuse_1d);
	tcase_add_test(tc, npy_refuse_3d_and_0d);
	tcase_add_test(tc, npy_refuse_dtypes);
	tcase_add_test(tc, npy_refuse_truncated);
	tcase_add_test(tc, npy_refuse_trailing_data);
	tcase_add_test(tc, npy_refuse_header_past_end);
	tcase_add_test(tc, npy_refuse_absurd_shapes);
	tcase_add_test(tc, npy_refuse_malformed_headers);
	tcase_add_test(tc, npy_refuse_not_npy);
	tcase_add_test(tc, npy_write_array_3d);
	suite_add_tcase(s, tc);

	tc = tcase_create("npz");
	tcase_add_test(tc, npz_stored_members);
	tcase_add_test(tc, npz_refusals);
	tcase_add_test(tc, npz_damaged);
	tcase_add_test(tc, npz_fifo_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("refgemm");
	tcase_add_test(tc, refgemm_known_answer_row_major);
	tcase_add_test(tc, refgemm_known_answer_col_major);
	tcase_add_loop_test(tc, refgemm_layouts_and_transposes, 0, 8);
	tcase_add_test(tc, refgemm_beta_zero_ignores_nan);
	tcase_add_test(tc, refgemm_alpha_beta);
	tcase_add_test(tc, refgemm_1x1_and_vectors);
	tcase_add_test(tc, refgemm_compare_tolerance);
	tcase_add_test(tc, refgemm_compare_nonfinite);
	tcase_add_test(tc, refgemm_random_is_shared);
	suite_add_tcase(s, tc);
	return s;
}

static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[512];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	SRunner *sr;
	int failed;

	snprintf(g_dir, sizeof(g_dir), "%s/test-npy-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(g_dir)) {
		perror("test-npy: mkdtemp");
		return EXIT_FAILURE;
	}
	sr = srunner_create(npy_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	remove_dir(g_dir);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test-kcache.c: the kernel cache's entry format and directory handling on their own, with
 * no OpenCL device: the SHA-256 against its published vectors, the header's layout, every
 * truncation, every flipped byte, a foreign key, a future format, the default directory
 * and --clear-cache removing only what is ours. The daemon-level behaviour (cold, warm,
 * corrupt entries rebuilt, eviction) is tests/test-kcache.sh. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "sha256.h"

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static void sha_hex(const void *data, size_t len, char out[65])
{
	uint8_t d[32];

	sha256_digest(data, len, d);
	hex(d, 32, out);
}

START_TEST(test_sha256_vectors)
{
	char h[65];
	static char million[1000000];

	sha_hex("", 0, h);
	ck_assert_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha_hex("abc", 3, h);
	ck_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	sha_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, h);
	ck_assert_str_eq(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	memset(million, 'a', sizeof(million));
	sha_hex(million, sizeof(million), h);
	ck_assert_str_eq(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

/* Fed in pieces of every size from 1 to 130, the digest is the one-shot digest. */
START_TEST(test_sha256_incremental)
{
	uint8_t data[1000], whole[32], parts[32];
	struct sha256_ctx s;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	sha256_digest(data, sizeof(data), whole);
	for (size_t step = 1; step <= 130; step++) {
		sha256_init(&s);
		for (size_t off = 0; off < sizeof(data); off += step)
			sha256_update(&s, data + off,
					     sizeof(data) - off < step ? sizeof(data) - off : step);
		sha256_final(&s, parts);
		ck_assert_msg(memcmp(whole, parts, 32) == 0, "pieces of %zu", step);
	}
}
END_TEST

/* An entry of `payload_bytes` pseudo-random bytes for key; returns its total length. */
static size_t make_entry(uint8_t *buf, const uint8_t key[32], size_t payload_bytes)
{
	for (size_t i = 0; i < payload_bytes; i++)
		buf[RXD_KCACHE_HEADER_BYTES + i] = (uint8_t)((i * 2654435761u) >> 13);
	kcache_entry_header(buf, key, buf + RXD_KCACHE_HEADER_BYTES, payload_bytes);
	return RXD_KCACHE_HEADER_BYTES + payload_bytes;
}

static void key_of(uint8_t key[32], const char *s)
{
	sha256_digest(s, strlen(s), key);
}

START_TEST(test_entry_roundtrip_and_layout)
{
	uint8_t key[32], buf[RXD_KCACHE_HEADER_BYTES + 300], sum[32];
	const uint8_t *payload;
	size_t len, plen;

	key_of(key, "device A");
	len = make_entry(buf, key, 300);
	ck_assert_int_eq(kcache_entry_check(buf, len, key, &payload, &plen), 0);
	ck_assert_ptr_eq(payload, buf + RXD_KCACHE_HEADER_BYTES);
	ck_assert_uint_eq(plen, 300);
	/* The layout is the documented one, little-endian. */
	ck_assert_int_eq(memcmp(buf, "RXGKCACH", 8), 0);
	ck_assert_uint_eq(buf[8], RXD_KCACHE_FORMAT_VERSION);
	ck_assert_uint_eq(buf[9] | buf[10] | buf[11], 0);
	ck_assert_uint_eq(buf[12], RXD_KCACHE_HEADER_BYTES);
	ck_assert_int_eq(memcmp(buf + RXD_KCACHE_OFF_KEY, key, 32), 0);
	ck_assert_uint_eq(buf[48], 300 & 0xff);
	ck_assert_uint_eq(buf[49], 300 >> 8);
	sha256_digest(buf + RXD_KCACHE_HEADER_BYTES, 300, sum);
	ck_assert_int_eq(memcmp(buf + RXD_KCACHE_OFF_PAYLOAD_SHA256, sum, 32), 0);
	sha256_digest(buf, RXD_KCACHE_OFF_HEADER_CHECK, sum);
	ck_assert_int_eq(memcmp(buf + RXD_KCACHE_OFF_HEADER_CHECK, sum, 8), 0);

	/* An empty payload is a valid entry too. */
	len = make_entry(buf, key, 0);
	ck_assert_int_eq(kcache_entry_check(buf, len, key, &payload, &plen), 0);
	ck_assert_uint_eq(plen, 0);
}
END_TEST

START_TEST(test_entry_truncated_at_every_length)
{
	uint8_t key[32], buf[RXD_KCACHE_HEADER_BYTES + 200];
	const uint8_t *payload;
	size_t len, plen;

	key_of(key, "k");
	len = make_entry(buf, key, 200);
	for (size_t cut = 0; cut < len; cut++) {
		/* A copy of exactly cut bytes, so that reading past it would be caught by ASan. */
		uint8_t *copy = malloc(cut ? cut : 1);

		memcpy(copy, buf, cut);
		ck_assert_msg(kcache_entry_check(copy, cut, key, &payload, &plen) == -ENODATA,
			      "cut at %zu", cut);
		ck_assert_ptr_null(payload);
		free(copy);
	}
	ck_assert_int_eq(kcache_entry_check(buf, len, key, &payload, &plen), 0);
}
END_TEST

START_TEST(test_entry_every_flipped_byte)
{
	uint8_t key[32], buf[RXD_KCACHE_HEADER_BYTES + 64];
	const uint8_t *payload;
	size_t len, plen;

	key_of(key, "k");
	len = make_entry(buf, key, 64);
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			int ret;

			buf[i] ^= (uint8_t)(1u << bit);
			ret = kcache_entry_check(buf, len, key, &payload, &plen);
			ck_assert_msg(ret < 0, "bit %d of byte %zu flipped: accepted", bit, i);
			/* The key is covered by the header check, so a flip there is corruption. */
			ck_assert_msg(ret == -EBADMSG || (ret == -EPROTO && i >= 8 && i < 12),
				      "bit %d of byte %zu: %d", bit, i, ret);
			buf[i] ^= (uint8_t)(1u << bit);
		}
	}
	ck_assert_int_eq(kcache_entry_check(buf, len, key, &payload, &plen), 0);
}
END_TEST

START_TEST(test_entry_other_key_format_and_trailing)
{
	uint8_t key[32], other[32], buf[RXD_KCACHE_HEADER_BYTES + 40 + 1];
	const uint8_t *payload;
	size_t len, plen;

	key_of(key, "platform / device A / driver 1");
	key_of(other, "platform / device A / driver 2");
	len = make_entry(buf, key, 40);
	/* A whole, valid entry written for another key. */
	ck_assert_int_eq(kcache_entry_check(buf, len, other, &payload, &plen), -ESTALE);
	/* A trailing byte is not what was written. */
	buf[len] = 0;
	ck_assert_int_eq(kcache_entry_check(buf, len + 1, key, &payload, &plen), -EBADMSG);
	/* A later format version (with a consistent header) is refused as such. */
	buf[RXD_KCACHE_OFF_FORMAT] = RXD_KCACHE_FORMAT_VERSION + 1;
	ck_assert_int_eq(kcache_entry_check(buf, len, key, &payload, &plen), -EPROTO);
	/* Not an entry at all. */
	memcpy(buf, "\x7f" "ELF", 4);
	ck_assert_int_eq(kcache_entry_check(buf, len, key, &payload, &plen), -EBADMSG);
	ck_assert_int_eq(kcache_entry_check(buf, 3, key, &payload, &plen), -EBADMSG);
	for (int e = 0; e < 200; e++)
		ck_assert_ptr_nonnull(kcache_entry_strerror(-e));
}
END_TEST

START_TEST(test_default_dir)
{
	char buf[4096];

	setenv("CACHE_DIRECTORY", "/var/cache/rxgemmd:/var/cache/other", 1);
	ck_assert_int_eq(kcache_default_dir(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/var/cache/rxgemmd");
	setenv("CACHE_DIRECTORY", "/srv/c", 1);
	ck_assert_int_eq(kcache_default_dir(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/srv/c");
	ck_assert_int_eq(kcache_default_dir(buf, 4), -ENAMETOOLONG);
	unsetenv("CACHE_DIRECTORY");
	setenv("XDG_CACHE_HOME", "/home/u/.xdg-cache", 1);
	setenv("HOME", "/home/u", 1);
	ck_assert_int_eq(kcache_default_dir(buf, sizeof(buf)), 0);
	if (geteuid() == 0) {
		ck_assert_str_eq(buf, "/var/cache/rxgemmd");
	} else {
		ck_assert_str_eq(buf, "/home/u/.xdg-cache/rxgemmd");
		unsetenv("XDG_CACHE_HOME");
		ck_assert_int_eq(kcache_default_dir(buf, sizeof(buf)), 0);
		ck_assert_str_eq(buf, "/home/u/.cache/rxgemmd");
		setenv("XDG_CACHE_HOME", "relative", 1); /* not absolute: ignored, as the spec says */
		ck_assert_int_eq(kcache_default_dir(buf, sizeof(buf)), 0);
		ck_assert_str_eq(buf, "/home/u/.cache/rxgemmd");
		unsetenv("HOME");
		unsetenv("XDG_CACHE_HOME");
		ck_assert_int_eq(kcache_default_dir(buf, sizeof(buf)), -ENOENT);
	}
}
END_TEST

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[8192];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

static bool exists(const char *dir, const char *name)
{
	char path[8192];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

/* --clear-cache removes entries and temporary files, and nothing that is not ours. */
START_TEST(test_clear_only_ours)
{
	char dir[] = "/tmp/rxgkc.XXXXXX";
	const char *entry = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.rxk";
	const char *upper = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF.rxk";

	ck_assert_ptr_nonnull(mkdtemp(dir));
	write_file(dir, entry, "x");
	write_file(dir, ".rxk-tmp-123-0", "x");
	write_file(dir, "README", "mine");
	write_file(dir, upper, "not an entry name");
	write_file(dir, "abc.rxk", "not an entry name");
	ck_assert_int_eq(kcache_clear(dir), 0);
	ck_assert(!exists(dir, entry));
	ck_assert(!exists(dir, ".rxk-tmp-123-0"));
	ck_assert(exists(dir, "README"));
	ck_assert(exists(dir, upper));
	ck_assert(exists(dir, "abc.rxk"));
	/* Clearing an empty or missing directory is no error. */
	ck_assert_int_eq(kcache_clear(dir), 0);
	write_file(dir, "x", "");
	{
		char gone[4200];
		snprintf(gone, sizeof(gone), "%s/does-not-exist", dir);
		ck_assert_int_eq(kcache_clear(gone), 0);
	}
	{
		char cmd[4200];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		ck_assert_int_eq(system(cmd), 0);
	}
}
END_TEST

/* A cache with no device use: init makes the directory, counts what is there, and a bound
 * below what is there evicts the oldest entries at start. */
START_TEST(test_init_counts_and_evicts)
{
	char dir[] = "/tmp/rxgkc.XXXXXX", sub[4200], name[80], path[4300];
	struct rxd_kcache *kc;
	struct rxd_kcache_stats s;
	char payload[1000];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/a/b", dir);
	ck_assert_int_eq(kcache_create(&kc, sub, 1 << 20), 0);
	kcache_stats(kc, &s);
	ck_assert_str_eq(s.dir, sub);
	ck_assert(s.writable);
	ck_assert_uint_eq(s.entries, 0);
	kcache_destroy(kc);

	memset(payload, 'p', sizeof(payload) - 1);
	payload[sizeof(payload) - 1] = '\0';
	for (int i = 0; i < 5; i++) {
		struct timespec ts[2] = { { .tv_sec = 1000000 + i }, { .tv_sec = 1000000 + i } };

		snprintf(name, sizeof(name), "%064d.rxk", i);
		write_file(sub, name, payload); /* 999 bytes each */
		snprintf(path, sizeof(path), "%s/%s", sub, name);
		ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
	}
	ck_assert_int_eq(kcache_create(&kc, sub, 2500), 0);
	kcache_stats(kc, &s);
	ck_assert_uint_eq(s.entries, 2);
	ck_assert_uint_eq(s.bytes, 2 * 999);
	ck_assert_uint_eq(s.evictions, 3);
	/* The newest two stay. */
	snprintf(name, sizeof(name), "%064d.rxk", 4);
	ck_assert(exists(sub, name));
	snprintf(name, sizeof(name), "%064d.rxk", 3);
	ck_assert(exists(sub, name));
	snprintf(name, sizeof(name), "%064d.rxk", 2);
	ck_assert(!exists(sub, name));
	kcache_destroy(kc);

	/* cache-max 0: no disk cache at all. */
	ck_assert_int_eq(kcache_create(&kc, sub, 0), 0);
	kcache_stats(kc, &s);
	ck_assert_str_eq(s.dir, "");
	kcache_destroy(kc);
	{
		char cmd[4300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		ck_assert_int_eq(system(cmd), 0);
	}
}
END_TEST

/* A directory that cannot be made is a warning: the cache works without a disk. */
START_TEST(test_init_unwritable)
{
	char dir[] = "/tmp/rxgkc.XXXXXX", sub[4200];
	struct rxd_kcache *kc;
	struct rxd_kcache_stats s;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	write_file(dir, "file", "a regular file where a directory would go");
	snprintf(sub, sizeof(sub), "%s/file/cache", dir);
	ck_assert_int_eq(kcache_create(&kc, sub, 1 << 20), 0);
	kcache_stats(kc, &s);
	ck_assert(!s.writable);
	ck_assert_uint_eq(s.entries, 0);
	kcache_destroy(kc);
	{
		char cmd[4300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		ck_assert_int_eq(system(cmd), 0);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kcache");
	TCase *tc = tcase_create("format");
	SRunner *sr;
	int failed;

	log_set_level(LOG_ERR);
	tcase_add_test(tc, test_sha256_vectors);
	tcase_add_test(tc, test_sha256_incremental);
	tcase_add_test(tc, test_entry_roundtrip_and_layout);
	tcase_add_test(tc, test_entry_truncated_at_every_length);
	tcase_add_test(tc, test_entry_every_flipped_byte);
	tcase_add_test(tc, test_entry_other_key_format_and_trailing);
	tcase_add_test(tc, test_default_dir);
	tcase_add_test(tc, test_clear_only_ours);
	tcase_add_test(tc, test_init_counts_and_evicts);
	tcase_add_test(tc, test_init_unwritable);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

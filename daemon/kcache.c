/* kcache.c: the compiled-program cache, in memory and on disk.
 *
 * Every OpenCL program the daemon builds goes through kcache_build. In memory, a built
 * program is kept per (key, context, device) and handed out again with a new reference. On
 * disk, its binary (CL_PROGRAM_BINARIES) is kept in the cache directory as one file per
 * key, so that a restart loads instead of compiling. The key is a SHA-256 of everything
 * that could make a binary wrong for us: the platform, the device, its vendor, driver and
 * OpenCL versions, the kernel source, the build options and rxgemmd's own version.
 *
 * An entry on disk is never trusted: a header carries a magic, the format version, the key
 * it was built for, the payload's length and SHA-256, and a check over the header itself.
 * A truncated, corrupt, foreign or unloadable entry is logged, removed and rebuilt. Entries
 * are written to a temporary file and renamed into place, so a reader sees a whole entry
 * or none. The data is not fsync'd: after a crash a torn entry fails its checksum and is
 * rebuilt, which costs one compile, while an fsync per entry would cost every cold start.
 *
 * The directory's size is bounded: after each write the oldest entries by mtime go until
 * the rest fit. A load touches its entry, so eviction is least recently used. Several
 * daemons may share one directory (one per device): renames are atomic, and an entry that
 * vanishes under a reader is a miss.
 *
 * Threads: kcache_build may be called from any thread; one mutex (a leaf: nothing else is
 * locked while it is held) serialises builds, so two users of one program compile it once.
 * The counters are atomics, read by the loop thread for status without taking the lock,
 * which a compile may hold for seconds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "engine.h"
#include "sha256.h"

/* One program built (or loaded) for one device of one context. */
struct rxd_kcache_prog {
	struct rxd_kcache_prog *next;
	uint8_t key[32];
	cl_context ctx;
	cl_device_id device;
	cl_program program; /* the cache's own reference */
};

struct rxd_kcache {
	char *dir;                     /* NULL: no disk cache */
	uint64_t max_bytes;            /* bound on the entries' bytes in dir */
	pthread_mutex_t lock;          /* guards progs and writes to dir; a leaf lock */
	struct rxd_kcache_prog *progs;
	atomic_bool writable;          /* false: entries are read, never written */
	/* Counters, read without the lock. */
	_Atomic uint64_t entries, bytes; /* in dir at the last scan */
	_Atomic uint64_t hits;         /* programs loaded from a disk entry */
	_Atomic uint64_t misses;       /* programs compiled from source */
	_Atomic uint64_t memory_hits;  /* programs handed out again from memory */
	_Atomic uint64_t rejected;     /* entries found bad (truncated, corrupt, foreign) */
	_Atomic uint64_t evictions;    /* entries removed to stay within max_bytes */
	_Atomic uint64_t compile_ns, load_ns;
};

/* ---- the entry format ---- */

static const uint8_t kcache_magic[8] = { 'R', 'X', 'G', 'K', 'C', 'A', 'C', 'H' };

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

void kcache_entry_header(uint8_t hdr[RXD_KCACHE_HEADER_BYTES], const uint8_t key[32],
			 const void *payload, size_t payload_bytes)
{
	uint8_t check[32];

	memset(hdr, 0, RXD_KCACHE_HEADER_BYTES);
	memcpy(hdr + RXD_KCACHE_OFF_MAGIC, kcache_magic, sizeof(kcache_magic));
	put_le32(hdr + RXD_KCACHE_OFF_FORMAT, RXD_KCACHE_FORMAT_VERSION);
	put_le32(hdr + RXD_KCACHE_OFF_HEADER_BYTES, RXD_KCACHE_HEADER_BYTES);
	memcpy(hdr + RXD_KCACHE_OFF_KEY, key, 32);
	put_le64(hdr + RXD_KCACHE_OFF_PAYLOAD_BYTES, payload_bytes);
	sha256_digest(payload, payload_bytes, hdr + RXD_KCACHE_OFF_PAYLOAD_SHA256);
	sha256_digest(hdr, RXD_KCACHE_OFF_HEADER_CHECK, check);
	memcpy(hdr + RXD_KCACHE_OFF_HEADER_CHECK, check, 8);
}

int kcache_entry_check(const uint8_t *buf, size_t len, const uint8_t key[32],
		       const uint8_t **payload, size_t *payload_bytes)
{
	uint8_t sum[32];
	uint64_t declared;

	*payload = NULL;
	*payload_bytes = 0;
	/* A short file whose start is not our magic is junk; one whose start is, was cut. */
	if (memcmp(buf, kcache_magic, len < sizeof(kcache_magic) ? len : sizeof(kcache_magic)))
		return -EBADMSG;
	if (len < RXD_KCACHE_HEADER_BYTES)
		return -ENODATA;
	if (get_le32(buf + RXD_KCACHE_OFF_FORMAT) != RXD_KCACHE_FORMAT_VERSION)
		return -EPROTO;
	if (get_le32(buf + RXD_KCACHE_OFF_HEADER_BYTES) != RXD_KCACHE_HEADER_BYTES)
		return -EBADMSG;
	sha256_digest(buf, RXD_KCACHE_OFF_HEADER_CHECK, sum);
	if (memcmp(sum, buf + RXD_KCACHE_OFF_HEADER_CHECK, 8))
		return -EBADMSG;
	if (memcmp(buf + RXD_KCACHE_OFF_KEY, key, 32))
		return -ESTALE;
	declared = get_le64(buf + RXD_KCACHE_OFF_PAYLOAD_BYTES);
	if (declared > len - RXD_KCACHE_HEADER_BYTES)
		return -ENODATA;
	if (declared < len - RXD_KCACHE_HEADER_BYTES)
		return -EBADMSG; /* trailing bytes: not what we wrote */
	sha256_digest(buf + RXD_KCACHE_HEADER_BYTES, (size_t)declared, sum);
	if (memcmp(sum, buf + RXD_KCACHE_OFF_PAYLOAD_SHA256, 32))
		return -EBADMSG;
	*payload = buf + RXD_KCACHE_HEADER_BYTES;
	*payload_bytes = (size_t)declared;
	return 0;
}

/* An entry that is not a regular file (Linux has no EFTYPE). */
#define EFTYPE_KCACHE EMEDIUMTYPE

const char *kcache_entry_strerror(int err)
{
	switch (err) {
	case 0: return "valid";
	case -ENODATA: return "truncated";
	case -EBADMSG: return "corrupt (bad magic, header or checksum)";
	case -EPROTO: return "from another cache format version";
	case -ESTALE: return "built for another key (device, driver, source or options)";
	case -EFBIG: return "larger than the cache's bound";
	case -EFTYPE_KCACHE: return "not a regular file (a link, a FIFO or a device)";
	case -EACCES: return "owned by another user";
	default: return "unreadable";
	}
}

/* Entry files are named by their key: 64 hex digits and KCACHE_SUFFIX. Nothing else in the
 * directory is ever removed, so a cache directory set to a wrong place cannot cost files. */
#define KCACHE_SUFFIX ".rxk"
#define KCACHE_NAME_LEN (64 + sizeof(KCACHE_SUFFIX) - 1)
#define KCACHE_TMP_PREFIX ".rxk-tmp-"
#define KCACHE_TMP_STALE_S 3600 /* a temporary file this old was left by a crash */

static bool kcache_is_entry_name(const char *name)
{
	if (strlen(name) != KCACHE_NAME_LEN || strcmp(name + 64, KCACHE_SUFFIX) != 0)
		return false;
	for (int i = 0; i < 64; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return true;
}

static bool kcache_is_tmp_name(const char *name)
{
	return strncmp(name, KCACHE_TMP_PREFIX, sizeof(KCACHE_TMP_PREFIX) - 1) == 0;
}

static void kcache_entry_name(const uint8_t key[32], char name[KCACHE_NAME_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		name[2 * i] = hex[key[i] >> 4];
		name[2 * i + 1] = hex[key[i] & 15];
	}
	memcpy(name + 64, KCACHE_SUFFIX, sizeof(KCACHE_SUFFIX));
}

/* ---- the directory ---- */

int kcache_default_dir(char *buf, size_t len)
{
	const char *env = getenv("CACHE_DIRECTORY");
	int n;

	/* systemd's CacheDirectory= may list several, separated by ':'; the first is ours. */
	if (env && *env) {
		size_t first = strcspn(env, ":");
		n = snprintf(buf, len, "%.*s", (int)first, env);
	} else if (geteuid() == 0) {
		n = snprintf(buf, len, "/var/cache/rxgemmd");
	} else if ((env = getenv("XDG_CACHE_HOME")) && env[0] == '/') {
		n = snprintf(buf, len, "%s/rxgemmd", env);
	} else if ((env = getenv("HOME")) && env[0] == '/') {
		n = snprintf(buf, len, "%s/.cache/rxgemmd", env);
	} else {
		return -ENOENT;
	}
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* mkdir -p, with mode 0755 less the umask. */
static int kcache_mkdirs(const char *dir)
{
	char path[PATH_MAX];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof(path))
		return -ENAMETOOLONG;
	memcpy(path, dir, len + 1);
	for (char *p = path + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;

			*p = '\0';
			if (mkdir(path, 0755) < 0 && errno != EEXIST)
				return -errno;
			*p = c;
			if (c == '\0')
				break;
		}
	}
	return 0;
}

struct kcache_file {
	char name[KCACHE_NAME_LEN + 1];
	uint64_t bytes;
	struct timespec mtime;
};

static int kcache_file_older(const void *a, const void *b)
{
	const struct kcache_file *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Count the entries in dir; when max_bytes is not 0, remove the least recently used ones
 * (never `keep`) until the rest fit, and temporary files left by a crash. Returns 0 or
 * -errno; *entries, *bytes and *evicted describe the directory afterwards. */
static int kcache_scan(const char *dir, uint64_t max_bytes, const char *keep, uint64_t *entries,
		       uint64_t *bytes, uint64_t *evicted)
{
	struct kcache_file *files = NULL;
	size_t n = 0, cap = 0;
	uint64_t total = 0;
	struct dirent *de;
	struct stat sb;
	DIR *d;
	int dfd, ret = 0;

	*entries = *bytes = *evicted = 0;
	if (!(d = opendir(dir)))
		return -errno;
	dfd = dirfd(d);
	while ((de = readdir(d))) {
		bool tmp = kcache_is_tmp_name(de->d_name);

		if (!tmp && !kcache_is_entry_name(de->d_name))
			continue;
		if (fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode))
			continue;
		if (tmp) {
			if (max_bytes && sb.st_mtime + KCACHE_TMP_STALE_S < time(NULL))
				unlinkat(dfd, de->d_name, 0);
			continue;
		}
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 64;
			struct kcache_file *grown = realloc(files, ncap * sizeof(*files));
			if (!grown) {
				ret = -ENOMEM;
				goto out;
			}
			files = grown;
			cap = ncap;
		}
		memcpy(files[n].name, de->d_name, KCACHE_NAME_LEN + 1);
		files[n].bytes = (uint64_t)sb.st_size;
		files[n].mtime = sb.st_mtim;
		total += files[n].bytes;
		n++;
	}
	if (max_bytes && total > max_bytes) {
		qsort(files, n, sizeof(*files), kcache_file_older);
		for (size_t i = 0; i < n && total > max_bytes; i++) {
			if (keep && strcmp(files[i].name, keep) == 0)
				continue;
			if (unlinkat(dfd, files[i].name, 0) < 0 && errno != ENOENT)
				continue;
			log_msg(LOG_DEBUG, "kernel cache: evicted %s (%llu bytes)", files[i].name,
				(unsigned long long)files[i].bytes);
			total -= files[i].bytes;
			files[i].bytes = UINT64_MAX; /* gone */
			(*evicted)++;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (files[i].bytes != UINT64_MAX)
			(*entries)++;
	*bytes = total;
out:
	free(files);
	closedir(d);
	return ret;
}

static void kcache_rescan(struct rxd_kcache *kc, const char *keep)
{
	uint64_t entries, bytes, evicted;

	uint64_t bound = atomic_load(&kc->writable) ? kc->max_bytes : 0;

	if (kcache_scan(kc->dir, bound, keep, &entries, &bytes, &evicted) < 0)
		return;
	atomic_store(&kc->entries, entries);
	atomic_store(&kc->bytes, bytes);
	atomic_fetch_add(&kc->evictions, evicted);
}

int kcache_clear(const char *dir)
{
	char path[PATH_MAX];
	uint64_t removed = 0, bytes = 0;
	struct dirent *de;
	struct stat sb;
	DIR *d;

	if (!dir) {
		if (kcache_default_dir(path, sizeof(path)) < 0) {
			log_msg(LOG_ERR, "no kernel cache directory: set --cache-dir");
			return -ENOENT;
		}
		dir = path;
	}
	if (!(d = opendir(dir))) {
		if (errno == ENOENT) {
			log_msg(LOG_NOTICE, "kernel cache %s does not exist: nothing to clear",
				dir);
			return 0;
		}
		log_msg(LOG_ERR, "cannot open the kernel cache %s: %s", dir, strerror(errno));
		return -errno;
	}
	while ((de = readdir(d))) {
		if (!kcache_is_entry_name(de->d_name) && !kcache_is_tmp_name(de->d_name))
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(sb.st_mode))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
			log_msg(LOG_ERR, "cannot remove %s/%s: %s", dir, de->d_name,
				strerror(errno));
			closedir(d);
			return -EIO;
		}
		removed++;
		bytes += (uint64_t)sb.st_size;
	}
	closedir(d);
	log_msg(LOG_NOTICE, "kernel cache %s cleared: %llu files, %llu bytes removed", dir,
		(unsigned long long)removed, (unsigned long long)bytes);
	return 0;
}

/* Whether dir may hold entries that the daemon loads and runs on the device: only when no
 * one but the daemon's own user can have written them, i.e. dir is the daemon's (effective
 * uid) and not writable by group or others. Returns 0, or -EPERM with why filled in; a dir
 * that cannot be looked at is left to the callers (it holds nothing to load). */
static int kcache_dir_trusted(const char *dir, char *why, size_t whylen)
{
	struct stat sb;

	if (stat(dir, &sb) < 0)
		return 0;
	if (sb.st_uid != geteuid()) {
		snprintf(why, whylen, "it belongs to uid %lu, not to the daemon's user (uid %lu)",
			 (unsigned long)sb.st_uid, (unsigned long)geteuid());
		return -EPERM;
	}
	if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(why, whylen, "others than its owner may write it (mode %04o)",
			 (unsigned)(sb.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

static int kcache_setup(struct rxd_kcache *kc, const char *dir, uint64_t max_bytes)
{
	char path[PATH_MAX], why[160];
	int ret;

	memset(kc, 0, sizeof(*kc));
	if ((ret = pthread_mutex_init(&kc->lock, NULL)) != 0)
		return -ret;
	kc->max_bytes = max_bytes;
	if (max_bytes == 0) {
		log_msg(LOG_INFO, "kernel cache on disk off (cache-max 0): kernels are compiled "
				  "at every start");
		return 0;
	}
	if (!dir) {
		if (kcache_default_dir(path, sizeof(path)) < 0) {
			log_msg(LOG_WARNING, "no kernel cache directory (no $CACHE_DIRECTORY, "
					     "$XDG_CACHE_HOME or $HOME; see --cache-dir): kernels "
					     "are compiled at every start");
			return 0;
		}
		dir = path;
	}
	if (!(kc->dir = strdup(dir)))
		return -ENOMEM;
	/* An unusable directory costs compiles, never the daemon: read what is there, and
	 * write only when we may. */
	ret = kcache_mkdirs(kc->dir);
	/* Entries are checksummed, not signed: one forged by whoever else can write the
	 * directory would run on the device. Such a directory is not used at all. */
	if (kcache_dir_trusted(kc->dir, why, sizeof(why)) < 0) {
		log_msg(LOG_WARNING, "kernel cache %s is not used: %s; kernels are compiled at "
				     "every start (see rxgemmd(8), the kernel cache)",
			kc->dir, why);
		free(kc->dir);
		kc->dir = NULL;
		return 0;
	}
	if (ret < 0 || access(kc->dir, W_OK | X_OK) < 0) {
		log_msg(LOG_WARNING, "kernel cache %s is not writable (%s): kernels that are not "
				     "in it are compiled at every start",
			kc->dir, strerror(ret < 0 ? -ret : errno));
	} else {
		atomic_store(&kc->writable, true);
	}
	kcache_rescan(kc, NULL);
	log_msg(LOG_INFO, "kernel cache %s%s: %llu entries, %.1f MiB of at most %.1f MiB",
		kc->dir, atomic_load(&kc->writable) ? "" : " (read-only)",
		(unsigned long long)atomic_load(&kc->entries),
		(double)atomic_load(&kc->bytes) / (1 << 20), (double)kc->max_bytes / (1 << 20));
	return 0;
}

int kcache_create(struct rxd_kcache **out, const char *dir, uint64_t max_bytes)
{
	struct rxd_kcache *kc = malloc(sizeof(*kc));
	int ret;

	*out = NULL;
	if (!kc)
		return -ENOMEM;
	if ((ret = kcache_setup(kc, dir, max_bytes)) < 0) {
		free(kc);
		return ret;
	}
	*out = kc;
	return 0;
}

const char *kcache_dir(const struct rxd_kcache *kc)
{
	return kc ? kc->dir : NULL;
}

void kcache_destroy(struct rxd_kcache *kc)
{
	struct rxd_kcache_prog *p, *next;

	if (!kc)
		return;
	for (p = kc->progs; p; p = next) {
		next = p->next;
		clReleaseProgram(p->program);
		free(p);
	}
	kc->progs = NULL;
	free(kc->dir);
	kc->dir = NULL;
	pthread_mutex_destroy(&kc->lock);
	free(kc);
}

void kcache_stats(struct rxd_kcache *kc, struct rxd_kcache_stats *out)
{
	out->dir = kc->dir ? kc->dir : "";
	out->writable = atomic_load(&kc->writable);
	out->max_bytes = kc->max_bytes;
	out->entries = atomic_load(&kc->entries);
	out->bytes = atomic_load(&kc->bytes);
	out->hits = atomic_load(&kc->hits);
	out->misses = atomic_load(&kc->misses);
	out->memory_hits = atomic_load(&kc->memory_hits);
	out->rejected = atomic_load(&kc->rejected);
	out->evictions = atomic_load(&kc->evictions);
	out->compile_ns = atomic_load(&kc->compile_ns);
	out->load_ns = atomic_load(&kc->load_ns);
}

void kcache_log_summary(struct rxd_kcache *kc)
{
	struct rxd_kcache_stats s;

	kcache_stats(kc, &s);
	log_msg(LOG_NOTICE,
		"kernels: %llu loaded from cache, %llu compiled in %.0f ms (loading took %.0f ms; "
		"%llu entries rejected; cache %s%s)",
		(unsigned long long)s.hits, (unsigned long long)s.misses,
		(double)s.compile_ns / 1e6, (double)s.load_ns / 1e6,
		(unsigned long long)s.rejected, *s.dir ? s.dir : "off",
		*s.dir && !s.writable ? ", read-only" : "");
}

/* ---- keys ---- */

/* Hash one field as its length and bytes, so that no two field lists hash alike. */
static void kcache_key_field(struct sha256_ctx *s, const void *data, size_t len)
{
	uint8_t le[8];

	put_le64(le, len);
	sha256_update(s, le, sizeof(le));
	sha256_update(s, data, len);
}

static void kcache_key_info(struct sha256_ctx *s, cl_device_id dev, cl_platform_id plat,
			    cl_uint what, bool platform_info)
{
	char buf[1024];
	size_t len = 0;
	cl_int err = platform_info ? clGetPlatformInfo(plat, what, sizeof(buf), buf, &len)
				   : clGetDeviceInfo(dev, what, sizeof(buf), buf, &len);

	/* A failed or oversized query still hashes as something: a marker and the error. */
	if (err != CL_SUCCESS || len > sizeof(buf))
		len = (size_t)snprintf(buf, sizeof(buf), "?%d", (int)err);
	kcache_key_field(s, buf, len);
}

void kcache_key(cl_device_id dev, const char *src, const char *options, uint8_t key[32])
{
	static const char tag[] = "rxgemmd kernel cache key v1";
	cl_platform_id plat = NULL;
	struct sha256_ctx s;

	clGetDeviceInfo(dev, CL_DEVICE_PLATFORM, sizeof(plat), &plat, NULL);
	sha256_init(&s);
	kcache_key_field(&s, tag, sizeof(tag) - 1);
	kcache_key_field(&s, PACKAGE_VERSION, sizeof(PACKAGE_VERSION) - 1);
	kcache_key_info(&s, dev, plat, CL_PLATFORM_NAME, true);
	kcache_key_info(&s, dev, plat, CL_PLATFORM_VERSION, true);
	kcache_key_info(&s, dev, plat, CL_DEVICE_NAME, false);
	kcache_key_info(&s, dev, plat, CL_DEVICE_VENDOR, false);
	kcache_key_info(&s, dev, plat, CL_DRIVER_VERSION, false);
	kcache_key_info(&s, dev, plat, CL_DEVICE_VERSION, false);
	kcache_key_field(&s, options ? options : "", options ? strlen(options) : 0);
	kcache_key_field(&s, src, strlen(src));
	sha256_final(&s, key);
}

/* ---- loading and storing ---- */

/* Read the entry `file` and check it against key. 0 with *buf (malloc'd) and the payload
 * in it; -ENOENT when there is none; another negative code (kcache_entry_strerror) when
 * there is one we must not use. */
static int kcache_read(struct rxd_kcache *kc, const char *file, const uint8_t key[32],
		       uint8_t **buf, const uint8_t **payload, size_t *payload_bytes)
{
	char path[PATH_MAX];
	struct stat sb;
	size_t got = 0;
	int fd, ret;

	*buf = NULL;
	if (snprintf(path, sizeof(path), "%s/%s", kc->dir, file) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	/* O_NONBLOCK: a FIFO put here must not hang the start; O_NOFOLLOW: nor may a link
	 * lead elsewhere. Only a regular file of our own is read. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)) < 0)
		return errno == ENOENT ? -ENOENT : errno == ELOOP ? -EFTYPE_KCACHE : -EIO;
	if (fstat(fd, &sb) < 0) {
		ret = -EIO;
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		ret = -EFTYPE_KCACHE;
		goto out;
	}
	if (sb.st_uid != geteuid()) {
		ret = -EACCES;
		goto out;
	}
	if ((uint64_t)sb.st_size > kc->max_bytes || (uint64_t)sb.st_size > SIZE_MAX) {
		ret = -EFBIG;
		goto out;
	}
	if (!(*buf = malloc(sb.st_size ? (size_t)sb.st_size : 1))) {
		ret = -ENOMEM;
		goto out;
	}
	while (got < (size_t)sb.st_size) {
		ssize_t r = read(fd, *buf + got, (size_t)sb.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break; /* shrunk under us: what we have is checked as it is */
		got += (size_t)r;
	}
	ret = kcache_entry_check(*buf, got, key, payload, payload_bytes);
	/* Touched on use, so that eviction takes the least recently used. */
	if (ret == 0)
		futimens(fd, NULL);
out:
	close(fd);
	if (ret < 0) {
		free(*buf);
		*buf = NULL;
	}
	return ret;
}

static void kcache_remove(struct rxd_kcache *kc, const char *file)
{
	char path[PATH_MAX];

	if (atomic_load(&kc->writable) &&
	    snprintf(path, sizeof(path), "%s/%s", kc->dir, file) < (int)sizeof(path))
		unlink(path);
}

/* Write the binary of prog as the entry `file`, then bring the directory back within its
 * bound. Failures are logged and cost nothing but the next start's compile. */
static void kcache_store(struct rxd_kcache *kc, const char *name, cl_program prog,
			 const uint8_t key[32], const char *file)
{
	static atomic_uint tmp_seq;
	uint8_t hdr[RXD_KCACHE_HEADER_BYTES], *bin = NULL;
	char tmp[PATH_MAX], path[PATH_MAX];
	size_t bin_bytes = 0;
	cl_uint n_devs = 0;
	int fd = -1, err = 0;

	if (clGetProgramInfo(prog, CL_PROGRAM_NUM_DEVICES, sizeof(n_devs), &n_devs, NULL) !=
		    CL_SUCCESS ||
	    n_devs != 1 ||
	    clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof(bin_bytes), &bin_bytes, NULL) !=
		    CL_SUCCESS ||
	    bin_bytes == 0) {
		log_msg(LOG_DEBUG, "%s: the driver gives no program binary: not cached", name);
		return;
	}
	if (kc->max_bytes < RXD_KCACHE_HEADER_BYTES ||
	    bin_bytes > kc->max_bytes - RXD_KCACHE_HEADER_BYTES) {
		log_msg(LOG_INFO, "%s: its binary (%zu bytes) is larger than the kernel cache's "
				  "bound: not cached",
			name, bin_bytes);
		return;
	}
	if (!(bin = malloc(bin_bytes)) ||
	    clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof(bin), &bin, NULL) != CL_SUCCESS) {
		log_msg(LOG_DEBUG, "%s: cannot read the program binary: not cached", name);
		free(bin);
		return;
	}
	kcache_entry_header(hdr, key, bin, bin_bytes);
	snprintf(path, sizeof(path), "%s/%s", kc->dir, file);
	snprintf(tmp, sizeof(tmp), "%s/" KCACHE_TMP_PREFIX "%ld-%u", kc->dir, (long)getpid(),
		 atomic_fetch_add(&tmp_seq, 1));
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
		err = errno;
		goto out;
	}
	for (int part = 0; part < 2 && !err; part++) {
		const uint8_t *p = part ? bin : hdr;
		size_t left = part ? bin_bytes : sizeof(hdr);

		while (left) {
			ssize_t w = write(fd, p, left);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				err = w < 0 ? errno : ENOSPC;
				break;
			}
			p += w;
			left -= (size_t)w;
		}
	}
	if (close(fd) < 0 && !err)
		err = errno;
	if (!err && rename(tmp, path) < 0)
		err = errno;
	if (err)
		unlink(tmp);
out:
	free(bin);
	if (err) {
		/* Once is enough: a full or read-only disk would say so at every build. */
		log_msg(LOG_WARNING, "kernel cache %s: cannot write an entry (%s): kernels that "
				     "are not in it are compiled at every start",
			kc->dir, strerror(err));
		atomic_store(&kc->writable, false);
		return;
	}
	log_msg(LOG_DEBUG, "%s: stored in the kernel cache as %s (%zu bytes)", name, file,
		bin_bytes + RXD_KCACHE_HEADER_BYTES);
	kcache_rescan(kc, file);
}

/* Create and build a program from an entry's binary. 0 or -EIO (logged at debug). */
static int kcache_load(struct rxd_device *dev, const char *name, const char *options,
		       const uint8_t *bin, size_t bin_bytes, cl_program *out)
{
	cl_int err, status = CL_SUCCESS;
	cl_program prog;

	prog = clCreateProgramWithBinary(dev->ctx, 1, &dev->desc->id, &bin_bytes, &bin, &status,
					 &err);
	if (!prog || status != CL_SUCCESS) {
		log_msg(LOG_DEBUG, "%s: clCreateProgramWithBinary: %s", name,
			device_strerror(prog ? status : err));
		if (prog)
			clReleaseProgram(prog);
		return -EIO;
	}
	err = clBuildProgram(prog, 1, &dev->desc->id, options, NULL, NULL);
	if (err != CL_SUCCESS) {
		log_msg(LOG_DEBUG, "%s: clBuildProgram from the binary: %s", name,
			device_strerror(err));
		clReleaseProgram(prog);
		return -EIO;
	}
	*out = prog;
	return 0;
}

int kcache_build(struct rxd_kcache *kc, struct rxd_device *dev, const char *name,
		 const char *src, const char *options, cl_program *out, char **log)
{
	char file[KCACHE_NAME_LEN + 1];
	struct rxd_kcache_prog *p;
	uint8_t key[32], *buf = NULL;
	const uint8_t *bin;
	size_t bin_bytes;
	uint64_t t0;
	int ret;

	*out = NULL;
	if (log)
		*log = NULL;
	if (!kc)
		return device_build(dev, name, src, options, out, log);
	kcache_key(dev->desc->id, src, options, key);
	kcache_entry_name(key, file);
	pthread_mutex_lock(&kc->lock);
	for (p = kc->progs; p; p = p->next) {
		if (p->ctx == dev->ctx && p->device == dev->desc->id && !memcmp(p->key, key, 32)) {
			clRetainProgram(p->program);
			*out = p->program;
			atomic_fetch_add(&kc->memory_hits, 1);
			log_msg(LOG_DEBUG, "%s: reused from memory", name);
			ret = 0;
			goto out;
		}
	}
	if (!(p = calloc(1, sizeof(*p)))) {
		ret = -ENOMEM;
		goto out;
	}

	t0 = now_ns();
	ret = kc->dir ? kcache_read(kc, file, key, &buf, &bin, &bin_bytes) : -ENOENT;
	if (ret == -ENOMEM || ret == -ENAMETOOLONG)
		ret = -ENOENT; /* nothing wrong with the entry: a miss, and it stays */
	if (ret == 0 && kcache_load(dev, name, options, bin, bin_bytes, &p->program) < 0)
		ret = -ENOEXEC;
	free(buf);
	if (ret == 0) {
		uint64_t dt = now_ns() - t0;

		atomic_fetch_add(&kc->hits, 1);
		atomic_fetch_add(&kc->load_ns, dt);
		log_msg(LOG_DEBUG, "%s: loaded from the kernel cache in %.1f ms", name,
			(double)dt / 1e6);
	} else {
		uint64_t dt;

		if (ret != -ENOENT) {
			atomic_fetch_add(&kc->rejected, 1);
			log_msg(LOG_WARNING, "%s: kernel cache entry %s/%s is %s: rebuilding it",
				name, kc->dir, file,
				ret == -ENOEXEC ? "not loadable on this device"
						: kcache_entry_strerror(ret));
			kcache_remove(kc, file);
		}
		t0 = now_ns();
		ret = device_build(dev, name, src, options, &p->program, log);
		dt = now_ns() - t0;
		atomic_fetch_add(&kc->misses, 1);
		atomic_fetch_add(&kc->compile_ns, dt);
		if (ret < 0) {
			free(p);
			goto out;
		}
		log_msg(LOG_DEBUG, "%s: compiled in %.1f ms", name, (double)dt / 1e6);
		if (kc->dir && atomic_load(&kc->writable))
			kcache_store(kc, name, p->program, key, file);
	}
	memcpy(p->key, key, 32);
	p->ctx = dev->ctx;
	p->device = dev->desc->id;
	p->next = kc->progs;
	kc->progs = p;
	clRetainProgram(p->program); /* one reference for the cache, one for the caller */
	*out = p->program;
	ret = 0;
out:
	pthread_mutex_unlock(&kc->lock);
	return ret;
}

/* shm.c: shared-memory regions, a connection's table of them (loop thread only).
 *
 * A client hands over a memfd with its RegisterRegion frame. Before the daemon maps it, the
 * descriptor must prove that the mapping can never fault under us: sealed against shrinking
 * (a truncated file would turn our reads into SIGBUS) and growing (the size we checked is
 * the size for good). It must not be sealed against writing: results are written there.
 * The descriptor is closed as soon as it is mapped; the mapping keeps the memory.
 *
 * Regions are counted by reference: the table holds one while the region is registered,
 * and every job in flight that reads or writes it holds one more. Only the loop thread
 * changes the counts (dispatch takes them, dispatch_job_release drops them), so they need no
 * lock; the device worker only touches the mapped bytes of regions its job holds. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loop.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

static struct rxd_shm_stats shm_counters;
static uint32_t shm_client_regions = RXD_SHM_MAX_REGIONS;
static uint64_t shm_client_bytes = RXD_SHM_DEFAULT_CLIENT_BYTES;

void shm_set_limits(uint32_t regions, uint64_t bytes)
{
	shm_client_regions = regions && regions < RXD_SHM_MAX_REGIONS ? regions
								      : RXD_SHM_MAX_REGIONS;
	shm_client_bytes = bytes;
}

void shm_init(struct rxd_shm *t)
{
	memset(t, 0, sizeof(*t));
}

void shm_region_unref(struct rxd_region *r)
{
	if (!r || --r->refs > 0)
		return;
	/* No job holds the region, so the device has finished with the wrapper; releasing
	 * it unpins the pages, which must happen while they are still mapped. */
	if (r->mem)
		clReleaseMemObject(r->mem);
	munmap(r->base, r->bytes);
	shm_counters.regions--;
	shm_counters.bytes -= r->bytes;
	free(r);
}

void shm_fini(struct rxd_shm *t)
{
	for (size_t i = 0; i < RXD_SHM_MAX_REGIONS; i++) {
		shm_region_unref(t->regions[i]);
		t->regions[i] = NULL;
	}
	t->count = 0;
	t->bytes = 0;
}

static struct rxd_region *shm_find(struct rxd_shm *t, uint32_t id, size_t *slot)
{
	for (size_t i = 0; i < RXD_SHM_MAX_REGIONS; i++)
		if (t->regions[i] && t->regions[i]->id == id) {
			if (slot)
				*slot = i;
			return t->regions[i];
		}
	return NULL;
}

/* Whether fd is a memfd t may register now: sealed against shrinking and growing (so
 * that a mapping cannot fault), writable, of a size within every bound (one region, all
 * regions, this connection's share) and, when expect_bytes is given, of that size. Fills
 * st. A status code with a sentence in err. */
static int shm_check_memfd(const struct rxd_shm *t, int fd, uint64_t expect_bytes,
			   struct stat *st, struct rxd_error *err)
{
	int seals;

	/* Only shmem files (memfds) carry seals; anything else fails here with EINVAL. */
	if ((seals = fcntl(fd, F_GET_SEALS)) < 0 || fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		return error_set(err, RXD_S_REGION,
				 "the descriptor is not a memfd that takes seals (create it with "
				 "memfd_create(MFD_ALLOW_SEALING))");
	}
	if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW)) {
		return error_set(err, RXD_S_REGION,
				 "the memfd is not sealed against %s (F_SEAL_SHRINK and F_SEAL_GROW "
				 "are required)",
				 !(seals & F_SEAL_SHRINK) && !(seals & F_SEAL_GROW) ? "shrinking or growing"
				 : !(seals & F_SEAL_SHRINK)			      ? "shrinking"
										      : "growing");
	}
	if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) {
		return error_set(err, RXD_S_REGION,
				 "the memfd is sealed against writing, but results are written "
				 "into regions; leave F_SEAL_WRITE off");
	}
	if (st->st_size <= 0) {
		return error_set(err, RXD_S_REGION,
				 "the memfd is empty; size it (ftruncate) before sealing");
	}
	if ((uint64_t)st->st_size > RXD_SHM_MAX_REGION_BYTES) {
		return error_set(err, RXD_S_TOO_BIG, "the memfd holds %llu bytes, more than the "
				  "%llu a region may have", (unsigned long long)st->st_size,
				  (unsigned long long)RXD_SHM_MAX_REGION_BYTES);
	}
	if ((uint64_t)st->st_size > RXD_SHM_MAX_TOTAL_BYTES - shm_counters.bytes) {
		return error_set(err, RXD_S_TOO_BIG, "the memfd's %llu bytes do not fit beside "
				  "the %llu bytes of regions mapped now (at most %llu together)",
				  (unsigned long long)st->st_size,
				  (unsigned long long)shm_counters.bytes,
				  (unsigned long long)RXD_SHM_MAX_TOTAL_BYTES);
	}
	/* Mappings cost the client nothing until touched (a sparse memfd): without a share of
	 * its own, one connection could hold the whole total and refuse everyone else. */
	if (shm_client_bytes && (t->bytes > shm_client_bytes ||
				 (uint64_t)st->st_size > shm_client_bytes - t->bytes)) {
		return error_set(err, RXD_S_TOO_BIG,
				 "the memfd's %llu bytes do not fit beside the %llu bytes this "
				 "connection has registered (at most %llu: client-shm-max)",
				 (unsigned long long)st->st_size, (unsigned long long)t->bytes,
				 (unsigned long long)shm_client_bytes);
	}
	if (expect_bytes && expect_bytes != (uint64_t)st->st_size) {
		return error_set(err, RXD_S_REGION,
				 "RegisterRegion.size says %llu bytes but the memfd holds %llu",
				 (unsigned long long)expect_bytes, (unsigned long long)st->st_size);
	}
	return RXD_S_OK;
}

int shm_register(struct rxd_shm *t, int fd, uint64_t expect_bytes, uint32_t *id,
		 uint64_t *bytes, struct rxd_error *err)
{
	struct rxd_region *r = NULL;
	struct stat st;
	size_t slot;
	void *base;
	int status;

	for (slot = 0; slot < RXD_SHM_MAX_REGIONS && t->regions[slot]; slot++)
		;
	if (slot == RXD_SHM_MAX_REGIONS || t->count >= shm_client_regions) {
		status = error_set(err, RXD_S_REGION,
				  "this connection has %u regions registered already, the most it "
				  "may have (client-shm-regions); unregister one first",
				  t->count);
		goto out;
	}
	if ((status = shm_check_memfd(t, fd, expect_bytes, &st, err)) != RXD_S_OK)
		goto out;
	base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		int e = errno;
		status = error_set(err,
				  e == ENOMEM ? RXD_S_NO_MEMORY
					      : RXD_S_REGION,
				  "cannot map the memfd read/write: %s%s", strerror(e),
				  e == EACCES || e == EPERM ? " (it must be opened read/write)" : "");
		goto out;
	}
	if (!(r = calloc(1, sizeof(*r)))) {
		munmap(base, (size_t)st.st_size);
		status = error_set(err, RXD_S_NO_MEMORY,
				  "out of memory for a region");
		goto out;
	}
	r->id = ++t->next_id;
	r->refs = 1;
	r->base = base;
	r->bytes = (uint64_t)st.st_size;
	t->regions[slot] = r;
	t->count++;
	t->bytes += r->bytes;
	shm_counters.regions++;
	shm_counters.bytes += r->bytes;
	shm_counters.registered++;
	*id = r->id;
	*bytes = r->bytes;
	status = RXD_S_OK;
out:
	close(fd);
	return status;
}

int shm_unregister(struct rxd_shm *t, uint32_t id, struct rxd_error *err)
{
	struct rxd_region *r;
	size_t slot;

	if (!(r = shm_find(t, id, &slot)))
		return error_set(err, RXD_S_REGION,
				"no region %u on this connection", id);
	if (r->refs > 1)
		return error_set(err, RXD_S_REGION,
				"region %u is in use by %d job%s in flight; unregister it once "
				"%s been answered",
				id, r->refs - 1, r->refs == 2 ? "" : "s",
				r->refs == 2 ? "it has" : "they have");
	t->regions[slot] = NULL;
	t->count--;
	t->bytes -= r->bytes;
	shm_region_unref(r);
	return RXD_S_OK;
}

struct rxd_region *shm_lookup(struct rxd_shm *t, uint32_t id)
{
	return shm_find(t, id, NULL);
}

void shm_region_ref(struct rxd_region *r)
{
	r->refs++;
}

struct rxd_region *shm_region_holding(struct rxd_region *const regions[RXD_JOB_REGIONS],
				      const void *p, uint64_t bytes)
{
	const uint8_t *q = p;

	for (int i = 0; i < RXD_JOB_REGIONS && regions[i]; i++) {
		const struct rxd_region *r = regions[i];

		if (q >= r->base && q < r->base + r->bytes &&
		    bytes <= (uint64_t)(r->base + r->bytes - q))
			return regions[i];
	}
	return NULL;
}

int shm_region_wrap(struct rxd_region *r, cl_context ctx, uint64_t max_alloc_bytes)
{
	cl_int e;

	if (r->mem)
		return 0;
	if (r->wrap_failed)
		return -ENOMEM;
	if (r->bytes > RXD_SHM_WRAP_MAX_BYTES || r->bytes > max_alloc_bytes) {
		r->wrap_failed = true;
		return -E2BIG;
	}
	r->mem = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, (size_t)r->bytes,
				r->base, &e);
	if (!r->mem) {
		/* Not an error for the job: its bytes are copied as from any host memory. */
		log_msg(LOG_INFO, "region %u (%llu bytes) cannot be wrapped for the device (%s); "
			"it is copied from pageable memory", r->id, (unsigned long long)r->bytes,
			device_strerror(e));
		r->wrap_failed = true;
		return -ENOMEM;
	}
	return 0;
}

void shm_note_job(void)
{
	shm_counters.jobs++;
}

void shm_note_in_place(void)
{
	shm_counters.jobs_in_place++;
}

void shm_stats(struct rxd_shm_stats *out)
{
	*out = shm_counters;
}

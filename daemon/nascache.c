/* nascache.c: plans of NAS networks kept for the next job on the same network.
 *
 * Planning a network (nas_build) walks it, registers its weights and packs its tensors by
 * liveness, which is quadratic in the tensors; every evaluation plans its network twice
 * (the whole batch on the loop thread, then its piece on the device thread). Ranking or
 * re-measuring architectures sends the same network again and again, so the plans are
 * kept, keyed by everything that shapes them (family, sizes, batch, the genotype or the
 * supernet's alphas), in a bounded table evicting the least recently used. A lookup hands
 * out a copy: the caller owns and frees its plan as if nas_build had made it, and the
 * table never shares memory with a job that may outlive an eviction.
 *
 * Both threads use the table: its lock guards everything in it and is a leaf lock. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

struct rxd_nas_cache_entry {
	unsigned char *key;
	size_t key_len;
	struct rxd_nas_plan plan;
	uint64_t used;                 /* the tick of its last use: least is evicted first */
};

/* The key: cfg's fields that shape the plan, packed without padding; a genotype's unused
 * node slots and a supernet's alphas only where they exist. NULL when out of memory. */
static unsigned char *nascache_key(const struct rxd_nas_config *cfg, size_t *len)
{
	size_t edges = cfg->supernet ? (size_t)cfg->steps * (size_t)(cfg->steps + 3) / 2 : 0;
	size_t n = 0, cap = 16 * sizeof(int32_t) + sizeof(cfg->geno) +
			    2 * edges * RXD_NAS_PRIMITIVES * sizeof(float);
	unsigned char *k = malloc(cap);
	int32_t head[] = { cfg->family, cfg->C,     cfg->layers, cfg->classes,   cfg->height,
			   cfg->width,  cfg->batch, cfg->supernet, cfg->unfused, cfg->steps,
			   cfg->multiplier };

	if (!k)
		return NULL;
#define PUT_BYTES(p, bytes)                      \
	do {                                     \
		memcpy(k + n, (p), (bytes));     \
		n += (bytes);                    \
	} while (0)
	if (!cfg->supernet)
		head[9] = head[10] = 0; /* not the evaluation networks' */
	PUT_BYTES(head, sizeof(head));
	if (cfg->supernet) {
		PUT_BYTES(cfg->alpha_normal, edges * RXD_NAS_PRIMITIVES * sizeof(float));
		PUT_BYTES(cfg->alpha_reduce, edges * RXD_NAS_PRIMITIVES * sizeof(float));
	} else {
		const struct rxd_genotype_cell *cells[2] = { &cfg->geno.normal, &cfg->geno.reduce };

		for (int i = 0; i < 2; i++) {
			const struct rxd_genotype_cell *c = cells[i];

			PUT_BYTES(&c->n_nodes, 1);
			PUT_BYTES(c->op, 2u * c->n_nodes);
			PUT_BYTES(c->input, 2u * c->n_nodes);
			PUT_BYTES(&c->n_concat, 1);
			PUT_BYTES(c->concat, c->n_concat);
		}
	}
#undef PUT_BYTES
	*len = n;
	return k;
}

int nascache_init(struct rxd_nas_cache *nc, uint32_t capacity)
{
	memset(nc, 0, sizeof(*nc));
	nc->capacity = capacity;
	if (capacity && !(nc->entries = calloc(capacity, sizeof(*nc->entries))))
		return -ENOMEM;
	if (pthread_mutex_init(&nc->lock, NULL) != 0) {
		free(nc->entries);
		nc->entries = NULL;
		return -ENOMEM;
	}
	nc->ready = true;
	return 0;
}

static void nascache_entry_free(struct rxd_nas_cache_entry *e)
{
	free(e->key);
	nas_plan_free(&e->plan);
	memset(e, 0, sizeof(*e));
}

void nascache_fini(struct rxd_nas_cache *nc)
{
	if (!nc->ready)
		return;
	for (uint32_t i = 0; i < nc->n; i++)
		nascache_entry_free(&nc->entries[i]);
	free(nc->entries);
	pthread_mutex_destroy(&nc->lock);
	memset(nc, 0, sizeof(*nc));
}

/* Under the lock: the entry of key, or NULL. */
static struct rxd_nas_cache_entry *nascache_find(struct rxd_nas_cache *nc,
						  const unsigned char *key, size_t len)
{
	for (uint32_t i = 0; i < nc->n; i++)
		if (nc->entries[i].key_len == len && memcmp(nc->entries[i].key, key, len) == 0)
			return &nc->entries[i];
	return NULL;
}

int nascache_build(struct rxd_nas_cache *nc, const struct rxd_nas_config *cfg,
		   struct rxd_nas_plan *plan, struct rxd_error *err)
{
	struct rxd_nas_cache_entry *e, fresh = { 0 };
	unsigned char *key;
	size_t len;
	int rc;

	if (!nc || !nc->ready || !nc->capacity)
		return nas_build(cfg, plan, err);
	/* A config nas_build refuses is never a key: it misses every time and is refused
	 * there. What the key reads is checked first: the alphas' presence, the genotype's
	 * counts within its arrays. */
	if (cfg->supernet ? !cfg->alpha_normal || !cfg->alpha_reduce || cfg->steps < 1 ||
				    cfg->steps > RXD_NAS_MAX_STEPS
			  : cfg->geno.normal.n_nodes > RXD_GENOTYPE_MAX_NODES ||
				    cfg->geno.reduce.n_nodes > RXD_GENOTYPE_MAX_NODES ||
				    cfg->geno.normal.n_concat > RXD_GENOTYPE_MAX_NODES ||
				    cfg->geno.reduce.n_concat > RXD_GENOTYPE_MAX_NODES)
		return nas_build(cfg, plan, err);
	if (!(key = nascache_key(cfg, &len)))
		return nas_build(cfg, plan, err);
	pthread_mutex_lock(&nc->lock);
	e = nascache_find(nc, key, len);
	if (e) {
		rc = nas_plan_copy(plan, &e->plan);
		if (rc == 0) {
			e->used = ++nc->tick;
			nc->hits++;
		}
		pthread_mutex_unlock(&nc->lock);
		free(key);
		if (rc < 0)
			error_set(err, RXD_S_NO_MEMORY, "out of memory copying a planned network");
		return rc;
	}
	pthread_mutex_unlock(&nc->lock);
	/* Built outside the lock: the other thread need not wait for it. */
	rc = nas_build(cfg, plan, err);
	if (rc < 0 || nas_plan_copy(&fresh.plan, plan) < 0) {
		free(key);
		return rc;
	}
	fresh.key = key;
	fresh.key_len = len;
	pthread_mutex_lock(&nc->lock);
	nc->misses++;
	if (nascache_find(nc, key, len)) {
		/* The other thread planned it meanwhile. */
		pthread_mutex_unlock(&nc->lock);
		nascache_entry_free(&fresh);
		return 0;
	}
	if (nc->n < nc->capacity) {
		e = &nc->entries[nc->n++];
	} else {
		e = &nc->entries[0];
		for (uint32_t i = 1; i < nc->n; i++)
			if (nc->entries[i].used < e->used)
				e = &nc->entries[i];
		nascache_entry_free(e);
		nc->evictions++;
	}
	*e = fresh;
	e->used = ++nc->tick;
	pthread_mutex_unlock(&nc->lock);
	return 0;
}

void nascache_stats(struct rxd_nas_cache *nc, struct rxd_nas_cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!nc || !nc->ready)
		return;
	pthread_mutex_lock(&nc->lock);
	out->capacity = nc->capacity;
	out->entries = nc->n;
	out->hits = nc->hits;
	out->misses = nc->misses;
	out->evictions = nc->evictions;
	for (uint32_t i = 0; i < nc->n; i++)
		out->bytes += nas_plan_host_bytes(&nc->entries[i].plan);
	pthread_mutex_unlock(&nc->lock);
}

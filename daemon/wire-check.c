/* wire-check.c: the checks of the wire layer: everything a request says, against the
 * protocol's rules and the daemon's limits (loop thread).
 *
 * Nothing in a request is trusted: every size is checked for overflow before it is used,
 * every buffer length against the shape, every region reference against its region. What
 * passes becomes an internal struct (struct rxd_gemm, struct rxd_nas_eval) that the
 * modules below use without knowing the protocol. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* The stored matrix `name` has `rows` x `cols` logical elements; check its leading
 * dimension and its data, and compute how many floats the device buffer needs. */
static int wire_check_matrix(const char *name, bool row_major, int64_t rows, int64_t cols,
			     int64_t ld, int64_t batch, int64_t stride,
			     const ProtobufCBinaryData *data, bool optional,
			     uint64_t tensor_floats, const struct rxd_limits *lim,
			     int64_t *ld_out, int64_t *stride_out,
			     size_t *need_out, size_t *given_out, struct rxd_error *err)
{
	/* inner: the extent along the contiguous index; outer: the other. */
	int64_t inner = row_major ? cols : rows, outer = row_major ? rows : cols;
	uint64_t need, full, bytes, floats;

	if (ld < 0)
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "ld%s must not be negative (got %lld)", name, (long long)ld);
	if (ld == 0)
		ld = inner;
	if (ld < inner)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "ld%s (%lld) is smaller than the %s "
				 "of %c (%lld)", name, (long long)ld,
				 row_major ? "columns" : "rows", toupper((unsigned char)name[0]),
				 (long long)inner);
	if (__builtin_mul_overflow((uint64_t)ld, (uint64_t)(outer - 1), &need) ||
	    __builtin_add_overflow(need, (uint64_t)inner, &need) ||
	    __builtin_mul_overflow((uint64_t)ld, (uint64_t)outer, &full))
		return error_set(err, RXD_S_TOO_BIG,
				 "%s: %lld x %lld with ld%s %lld overflows 64 bits", name,
				 (long long)rows, (long long)cols, name, (long long)ld);
	if (stride < 0)
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "stride_%s must not be negative (got %lld)", name,
				 (long long)stride);
	if (stride == 0)
		stride = full > INT64_MAX ? INT64_MAX : (int64_t)full;
	if (batch > 1) {
		uint64_t span;

		/* Matrices of a batch may not overlap: C's would race, and A's and B's
		 * would only be a way to send less than the shape says. */
		if ((uint64_t)stride < need)
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "stride_%s (%lld) is smaller than one matrix of %s (%llu "
					 "floats)",
					 name, (long long)stride, name, (unsigned long long)need);
		if (__builtin_mul_overflow((uint64_t)stride, (uint64_t)(batch - 1), &span) ||
		    __builtin_add_overflow(need, span, &need) ||
		    __builtin_add_overflow(full, span, &full))
			return error_set(err, RXD_S_TOO_BIG, "%s: %lld matrices %lld floats apart "
					 "overflow 64 bits", name, (long long)batch,
					 (long long)stride);
	}
	if (__builtin_mul_overflow(need, (uint64_t)sizeof(float), &bytes))
		return error_set(err, RXD_S_TOO_BIG, "%s: %llu floats overflow 64 bits", name,
				 (unsigned long long)need);
	if (bytes > lim->max_buffer_bytes || need > INT_MAX)
		return error_set(err, RXD_S_TOO_BIG,
				 "%s needs %llu bytes on the device, more than its largest buffer "
				 "(%llu bytes)",
				 name, (unsigned long long)bytes,
				 (unsigned long long)(lim->max_buffer_bytes < (uint64_t)INT_MAX * 4
							      ? lim->max_buffer_bytes
							      : (uint64_t)INT_MAX * 4));
	*ld_out = ld;
	*stride_out = batch > 1 ? stride : 0;
	*need_out = need;
	*given_out = 0;
	if (tensor_floats) {
		/* A device tensor may hold more than the matrix: its first floats are it. */
		if (tensor_floats < need)
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "%s_tensor holds %llu floats but %s%lld x %lld with ld%s "
					 "%lld needs %llu",
					 name, (unsigned long long)tensor_floats,
					 batch > 1 ? "a batch of " : "", (long long)rows,
					 (long long)cols, name, (long long)ld,
					 (unsigned long long)need);
		*given_out = need;
		return RXD_S_OK;
	}
	if (data->len == 0 && optional)
		return RXD_S_OK;
	if (data->len % sizeof(float))
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "%s is %zu bytes, not a whole number of floats", name, data->len);
	floats = data->len / sizeof(float);
	if (floats < need || floats > full)
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "%s holds %llu floats but %s%lld x %lld with ld%s %lld "
				 "needs %llu%s%llu",
				 name, (unsigned long long)floats, batch > 1 ? "a batch of " : "",
				 (long long)rows, (long long)cols, name, (long long)ld,
				 (unsigned long long)need, need == full ? "" : " to ",
				 need == full ? 0ull : (unsigned long long)full);
	*given_out = floats;
	return RXD_S_OK;
}

int wire_gemm_validate(const Rxgemm__GemmRequest *rq, const struct rxd_limits *lim,
		       struct rxd_gemm *g, struct rxd_error *err)
{
	static const uint64_t none[3] = { 0, 0, 0 };

	return wire_gemm_validate_tensors(rq, lim, none, g, err);
}

int wire_gemm_validate_tensors(const Rxgemm__GemmRequest *rq, const struct rxd_limits *lim,
			       const uint64_t tensor_floats[3], struct rxd_gemm *g,
			       struct rxd_error *err)
{
	bool row_major;
	int64_t lda, ldb, ldc, batch, sa, sb, sc;
	size_t a_need, b_need, c_need, a_given, b_given, c_given;
	uint64_t flops, total;
	int st;

	memset(g, 0, sizeof(*g));
	error_clear(err);
	if (rq->layout != RXGEMM__LAYOUT__LAYOUT_COL_MAJOR &&
	    rq->layout != RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR)
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "layout %d is neither COL_MAJOR (0) nor ROW_MAJOR (1)",
				 (int)rq->layout);
	row_major = rq->layout == RXGEMM__LAYOUT__LAYOUT_ROW_MAJOR;
	if (rq->m < 1 || rq->n < 1 || rq->k < 1) {
		const char *which = rq->m < 1 ? "m" : rq->n < 1 ? "n" : "k";
		long long v = rq->m < 1 ? rq->m : rq->n < 1 ? rq->n : rq->k;
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "%s must be at least 1 (got %lld)", which, v);
	}
	if (rq->batch_count < 0)
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "batch_count must not be negative (got %lld)",
				 (long long)rq->batch_count);
	batch = rq->batch_count ? rq->batch_count : 1;
	if (__builtin_mul_overflow((uint64_t)rq->m, (uint64_t)rq->n, &flops) ||
	    __builtin_mul_overflow(flops, (uint64_t)rq->k, &flops) ||
	    __builtin_mul_overflow(flops, 2u, &flops) ||
	    __builtin_mul_overflow(flops, (uint64_t)batch, &flops))
		return error_set(err, RXD_S_TOO_BIG,
				 "m x n x k (%lld x %lld x %lld) x batch_count %lld overflows 64 "
				 "bits",
				 (long long)rq->m, (long long)rq->n, (long long)rq->k,
				 (long long)batch);
	st = wire_check_matrix("a", row_major, rq->trans_a ? rq->k : rq->m,
			       rq->trans_a ? rq->m : rq->k, rq->lda, batch, rq->stride_a, &rq->a,
			       false, tensor_floats[0], lim, &lda, &sa, &a_need, &a_given, err);
	if (st)
		return st;
	st = wire_check_matrix("b", row_major, rq->trans_b ? rq->n : rq->k,
			       rq->trans_b ? rq->k : rq->n, rq->ldb, batch, rq->stride_b, &rq->b,
			       false, tensor_floats[1], lim, &ldb, &sb, &b_need, &b_given, err);
	if (st)
		return st;
	st = wire_check_matrix("c", row_major, rq->m, rq->n, rq->ldc, batch, rq->stride_c, &rq->c,
			       true, tensor_floats[2], lim, &ldc, &sc, &c_need, &c_given, err);
	if (st)
		return st;
	if (c_given == 0 && rq->beta != 0.0f)
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "c is missing but beta is %g, so C is read", (double)rq->beta);
	total = (a_need + b_need + c_need) * sizeof(float); /* each < 2^33: no overflow */
	if (total > lim->max_total_bytes)
		return error_set(err, RXD_S_TOO_BIG, "a, b and c need %llu bytes on the device "
				 "together, more than the %llu it allows a job",
				 (unsigned long long)total,
				 (unsigned long long)lim->max_total_bytes);

	g->user_m = rq->m;
	g->user_n = rq->n;
	g->user_k = rq->k;
	g->k = rq->k;
	g->alpha = rq->alpha;
	g->beta = rq->beta;
	g->flops = flops;
	g->c = c_given && !tensor_floats[2] ? (const float *)rq->c.data : NULL;
	g->ldc = ldc;
	g->batch_count = batch;
	g->stride_c = sc;
	g->c_elems = c_need;
	g->c_given_elems = c_given;
	if (!row_major) {
		g->m = rq->m, g->n = rq->n;
		g->trans_a = rq->trans_a, g->trans_b = rq->trans_b;
		g->a = (const float *)rq->a.data, g->lda = lda, g->a_elems = a_need;
		g->b = (const float *)rq->b.data, g->ldb = ldb, g->b_elems = b_need;
		g->stride_a = sa, g->stride_b = sb;
	} else {
		/* Row-major C is column-major C^T = op(B)^T op(A)^T, and a row-major stored
		 * matrix is its column-major transpose: swap the operands, keep the flags. */
		g->m = rq->n, g->n = rq->m;
		g->trans_a = rq->trans_b, g->trans_b = rq->trans_a;
		g->a = (const float *)rq->b.data, g->lda = ldb, g->a_elems = b_need;
		g->b = (const float *)rq->a.data, g->ldb = lda, g->b_elems = a_need;
		g->stride_a = sb, g->stride_b = sa;
	}
	return RXD_S_OK;
}

int wire_region(struct rxd_shm *t, const Rxgemm__RegionRef *ref, const char *field,
		struct rxd_region **out, uint8_t **data, struct rxd_error *err)
{
	struct rxd_region *r;

	*out = NULL;
	*data = NULL;
	if (!(r = shm_lookup(t, ref->region_id)))
		return error_set(err, RXD_S_REGION, "%s: no region %u on this connection", field,
				 ref->region_id);
	if (ref->offset % sizeof(float))
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "%s.offset (%llu) is not a multiple of 4: floats must be aligned",
				 field, (unsigned long long)ref->offset);
	if (ref->offset > r->bytes)
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "%s.offset (%llu) is past the end of region %u (%llu bytes)",
				 field, (unsigned long long)ref->offset, ref->region_id,
				 (unsigned long long)r->bytes);
	if (ref->length == 0)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "%s.length is 0", field);
	/* offset <= bytes here, so the subtraction cannot wrap where offset + length could. */
	if (ref->length > r->bytes - ref->offset)
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "%s: %llu bytes at offset %llu run past the end of region %u "
				 "(%llu bytes)",
				 field, (unsigned long long)ref->length,
				 (unsigned long long)ref->offset, ref->region_id,
				 (unsigned long long)r->bytes);
	*out = r;
	*data = r->base + ref->offset;
	return RXD_S_OK;
}

int wire_nas_eval(const Rxgemm__NasEvalRequest *rq, struct rxd_nas_eval *ev,
		  struct rxd_error *err)
{
	struct rxd_nas_config *c = &ev->cfg;
	bool imagenet = rq->dataset == RXGEMM__NAS_DATASET__NAS_IMAGENET;

	memset(ev, 0, sizeof(*ev));
	if (rq->dataset != RXGEMM__NAS_DATASET__NAS_CIFAR && !imagenet)
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "dataset %d is neither CIFAR (0) nor ImageNet (1)",
				 (int)rq->dataset);
	/* The defaults are the papers' networks. */
	c->family = imagenet ? RXD_NAS_IMAGENET : RXD_NAS_CIFAR;
	c->C = rq->c ? rq->c : imagenet ? 48 : 36;
	c->layers = rq->layers ? rq->layers : imagenet ? 14 : 20;
	c->classes = rq->classes ? rq->classes : imagenet ? 1000 : 10;
	c->height = rq->height ? rq->height : imagenet ? 224 : 32;
	c->width = rq->width ? rq->width : imagenet ? 224 : 32;
	c->batch = rq->batch ? rq->batch : 1;
	c->supernet = rq->supernet;
	if (rq->supernet) {
		size_t edges;

		if (rq->genotype && *rq->genotype)
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "genotype must be empty for the supernet");
		c->steps = rq->steps ? (int32_t)rq->steps : 4;
		c->multiplier = rq->multiplier ? (int32_t)rq->multiplier : 4;
		if (rq->steps > RXD_NAS_MAX_STEPS)
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "steps is %u; it must be 1 to %d", rq->steps,
					 RXD_NAS_MAX_STEPS);
		edges = (size_t)c->steps * (size_t)(c->steps + 3) / 2;
		if (rq->n_alpha_normal != edges * RXD_NAS_PRIMITIVES ||
		    rq->n_alpha_reduce != edges * RXD_NAS_PRIMITIVES)
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "alpha_normal and alpha_reduce must have %zu values each "
					 "(%zu edges x %d operations); they have %zu and %zu",
					 edges * RXD_NAS_PRIMITIVES, edges, RXD_NAS_PRIMITIVES,
					 rq->n_alpha_normal, rq->n_alpha_reduce);
		c->alpha_normal = rq->alpha_normal;
		c->alpha_reduce = rq->alpha_reduce;
	} else {
		const char *g = rq->genotype ? rq->genotype : "";

		if (rq->n_alpha_normal || rq->n_alpha_reduce || rq->steps || rq->multiplier)
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "alphas, steps and multiplier are for the supernet only");
		if (!*g)
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "genotype is empty: give a name (DARTS_V1, DARTS_V2, "
					 "NASNet, AmoebaNet) or a Genotype(...) text");
		if (genotype_named(g, &c->geno) < 0) {
			if (strncmp(g, "Genotype", 8) != 0)
				return error_set(err, RXD_S_INVALID_ARGUMENT,
						 "genotype '%.40s' is not a known name (DARTS_V1, "
						 "DARTS_V2, NASNet, AmoebaNet) nor a Genotype(...) "
						 "text",
						 g);
			if (genotype_parse(g, strlen(g), &c->geno, err) < 0)
				return RXD_S_INVALID_ARGUMENT;
		}
	}
	if (rq->warmup > RXD_NAS_MAX_WARMUP || rq->repeat > RXD_NAS_MAX_REPEAT)
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "warmup (%u) and repeat (%u) may be at most %d and %d", rq->warmup,
				 rq->repeat, RXD_NAS_MAX_WARMUP, RXD_NAS_MAX_REPEAT);
	ev->warmup = rq->warmup;
	ev->repeat = rq->repeat ? rq->repeat : 1;
	ev->want_logits = rq->want_logits;
	ev->want_breakdown = rq->want_breakdown;
	ev->weight_seed = rq->weight_seed;
	ev->input_seed = rq->input_seed;
	ev->weights = rq->weights.len ? rq->weights.data : NULL;
	ev->weights_bytes = rq->weights.len;
	ev->input = rq->input.len ? rq->input.data : NULL;
	ev->input_bytes = rq->input.len;
	return RXD_S_OK;
}

int wire_tensor_dims(const int64_t *dims, size_t ndims, uint64_t max_bytes, const char *field,
		     struct rxd_error *err)
{
	uint64_t floats = 1;

	if (ndims < 1 || ndims > RXD_TENSOR_MAX_DIMS)
		return error_set(err, RXD_S_INVALID_ARGUMENT,
				 "%s has %zu dims; a tensor has 1 to %d", field, ndims,
				 RXD_TENSOR_MAX_DIMS);
	for (size_t i = 0; i < ndims; i++) {
		if (dims[i] < 1)
			return error_set(err, RXD_S_INVALID_ARGUMENT,
					 "%s[%zu] is %lld; each must be at least 1", field, i,
					 (long long)dims[i]);
		if (__builtin_mul_overflow(floats, (uint64_t)dims[i], &floats) ||
		    floats > UINT64_MAX / sizeof(float))
			return error_set(err, RXD_S_TOO_BIG,
					 "%s: the tensor's size overflows 64 bits", field);
	}
	if (floats * sizeof(float) > max_bytes)
		return error_set(err, RXD_S_TOO_BIG,
				 "a tensor of %llu floats (%llu bytes) is more than the device's "
				 "largest buffer (%llu bytes)",
				 (unsigned long long)floats,
				 (unsigned long long)(floats * sizeof(float)),
				 (unsigned long long)max_bytes);
	return RXD_S_OK;
}

/* ---- SearchRequest ------------------------------------------------------------------------ */

/* An int32 field where 0 means def: within [1, max]. */
static int wire_search_int(int32_t v, int32_t def, int32_t max, const char *field, int32_t *out,
			   struct rxd_error *err)
{
	if (v < 0 || v > max)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "%s is %d; it must be 1 to %d (0: %d)",
				 field, v, max, def);
	*out = v ? v : def;
	return RXD_S_OK;
}

/* A Real: unset, def; set, a finite value. */
static int wire_search_real(const Rxgemm__Real *r, double def, const char *field, double *out,
			    struct rxd_error *err)
{
	if (!r) {
		*out = def;
		return RXD_S_OK;
	}
	if (!isfinite(r->value))
		return error_set(err, RXD_S_INVALID_ARGUMENT, "%s is not a finite number", field);
	*out = r->value;
	return RXD_S_OK;
}

/* One half's data (name "train" or "valid"), its bytes resolved (inline or a region):
 * count images of the configured shape and as many labels, each in [0, classes). */
static int wire_search_half(const Rxgemm__SearchData *d, const char *name,
			    const ProtobufCBinaryData *images, const ProtobufCBinaryData *labels,
			    const struct rxd_search_config *cfg, struct rxd_search_job_args *a,
			    int half, struct rxd_error *err)
{
	uint64_t per_image = 3ull * (uint64_t)cfg->height * (uint64_t)cfg->width * sizeof(float);
	uint64_t bytes;
	const int32_t *y;

	if (!d)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "%s (the %s data) is missing", name,
				 half ? "validation" : "training");
	if (d->count < cfg->batch)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "%s.count is %lld; a step takes "
				 "batch (%d) images of each half", name, (long long)d->count,
				 cfg->batch);
	if (__builtin_mul_overflow((uint64_t)d->count, per_image, &bytes) || bytes > SIZE_MAX)
		return error_set(err, RXD_S_TOO_BIG, "%s: %lld images of 3 x %d x %d floats are "
				 "more than this daemon takes", name, (long long)d->count,
				 cfg->height, cfg->width);
	if (images->len != bytes)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "%s.images holds %zu bytes; %lld "
				 "images of 3 x %d x %d float32 are %llu", name, images->len,
				 (long long)d->count, cfg->height, cfg->width,
				 (unsigned long long)bytes);
	if (labels->len / sizeof(int32_t) != (uint64_t)d->count ||
	    labels->len % sizeof(int32_t))
		return error_set(err, RXD_S_INVALID_ARGUMENT, "%s.labels holds %zu bytes; %lld "
				 "int32 labels are %llu", name, labels->len, (long long)d->count,
				 (unsigned long long)d->count * sizeof(int32_t));
	if (((uintptr_t)images->data | (uintptr_t)labels->data) % sizeof(float))
		return error_set(err, RXD_S_INVALID_ARGUMENT, "%s's data are not 4-byte aligned",
				 name);
	y = (const int32_t *)labels->data;
	for (int64_t i = 0; i < d->count; i++)
		if (y[i] < 0 || y[i] >= cfg->classes)
			return error_set(err, RXD_S_INVALID_ARGUMENT, "%s.labels[%lld] is %d; labels "
					 "must be 0 to classes - 1 (%d)", name, (long long)i,
					 y[i], cfg->classes - 1);
	a->images[half] = (const float *)images->data;
	a->labels[half] = y;
	a->count[half] = d->count;
	return RXD_S_OK;
}

int wire_search_check(const Rxgemm__SearchRequest *rq, const ProtobufCBinaryData data[2][2],
		      struct rxd_search_job_args *a, struct rxd_error *err)
{
	struct rxd_search_config *c = &a->cfg;
	const struct {
		const Rxgemm__Real *r;
		const char *name;
		double *dst;
	} reals[] = {
		{ rq->lr, "lr", &c->lr },
		{ rq->lr_min, "lr_min", &c->lr_min },
		{ rq->momentum, "momentum", &c->momentum },
		{ rq->weight_decay, "weight_decay", &c->weight_decay },
		{ rq->grad_clip, "grad_clip", &c->grad_clip },
		{ rq->arch_lr, "arch_lr", &c->arch_lr },
		{ rq->arch_beta1, "arch_beta1", &c->arch_beta1 },
		{ rq->arch_beta2, "arch_beta2", &c->arch_beta2 },
		{ rq->arch_eps, "arch_eps", &c->arch_eps },
		{ rq->arch_weight_decay, "arch_weight_decay", &c->arch_weight_decay },
	};
	struct rxd_search_config def;
	int st;

	memset(a, 0, sizeof(*a));
	search_config_defaults(&def);
	*c = def;
	if ((st = wire_search_int(rq->c, def.C, RXD_SEARCH_MAX_C, "c", &c->C, err)) ||
	    (st = wire_search_int(rq->layers, def.layers, RXD_SEARCH_MAX_LAYERS, "layers",
				  &c->layers, err)) ||
	    (st = wire_search_int(rq->classes, def.classes, RXD_SEARCH_MAX_CLASSES, "classes",
				  &c->classes, err)) ||
	    (st = wire_search_int(rq->height, def.height, RXD_SEARCH_MAX_SIDE, "height",
				  &c->height, err)) ||
	    (st = wire_search_int(rq->width, def.width, RXD_SEARCH_MAX_SIDE, "width", &c->width,
				  err)) ||
	    (st = wire_search_int(rq->batch, def.batch, INT32_MAX, "batch", &c->batch, err)))
		return st;
	if (c->classes < 2)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "classes is %d; a search needs at "
				 "least 2", c->classes);
	if (rq->steps > RXD_NAS_MAX_STEPS)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "steps is %u; it must be 1 to %d "
				 "(0: %d)", rq->steps, RXD_NAS_MAX_STEPS, def.steps);
	c->steps = rq->steps ? (int32_t)rq->steps : def.steps;
	if (rq->multiplier > (uint32_t)c->steps)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "multiplier is %u; it must be 1 to "
				 "steps (%d)", rq->multiplier, c->steps);
	c->multiplier = rq->multiplier ? (int32_t)rq->multiplier
				       : def.multiplier <= c->steps ? def.multiplier : c->steps;
	if (rq->epochs > RXD_SEARCH_MAX_EPOCHS)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "epochs is %u; it must be 1 to %d "
				 "(0: %d)", rq->epochs, RXD_SEARCH_MAX_EPOCHS, def.epochs);
	c->epochs = rq->epochs ? (int32_t)rq->epochs : def.epochs;
	c->seed = rq->seed;
	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++)
		if ((st = wire_search_real(reals[i].r, *reals[i].dst, reals[i].name, reals[i].dst,
					   err)))
			return st;
	if (rq->progress_every > RXD_SEARCH_MAX_PROGRESS_EVERY)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "progress_every is %u; at most %u",
				 rq->progress_every, RXD_SEARCH_MAX_PROGRESS_EVERY);
	if (rq->priority >= RXD_SCHED_LEVELS)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "priority is %u; it must be 0 to %d",
				 rq->priority, RXD_SCHED_LEVELS - 1);
	if (rq->want_state && rq->state_out)
		return error_set(err, RXD_S_INVALID_ARGUMENT, "want_state and state_out are both "
				 "given; send one");
	a->max_steps = rq->max_steps;
	a->progress_every = rq->progress_every;
	a->priority = rq->priority;
	a->want_state = rq->want_state;
	if ((st = wire_search_half(rq->train, "train", &data[0][0], &data[0][1], c, a, 0,
				   err)) ||
	    (st = wire_search_half(rq->valid, "valid", &data[1][0], &data[1][1], c, a, 1,
				   err)))
		return st;
	return RXD_S_OK;
}

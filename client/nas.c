/* nas.c: librxgemm's NAS evaluation request (rxg_nas_eval): the arguments checked, the
 * weights and input inline, in shared buffers or in device tensors, and the reply copied
 * into a struct rxg_nas_result that the caller owns. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "transport.h"

RXG_EXPORT void rxg_nas_result_free(struct rxg_nas_result *r)
{
	if (!r)
		return;
	free(r->genotype);
	free(r->run_ns);
	for (size_t i = 0; r->by_op && i < r->n_by_op; i++)
		free(r->by_op[i].name);
	for (size_t i = 0; r->by_cell && i < r->n_by_cell; i++)
		free(r->by_cell[i].name);
	free(r->by_op);
	free(r->by_cell);
	free(r);
}

static int nas_parts_from_wire(struct rxg_nas_part **out, size_t *n,
			       Rxgemm__NasLatencyPart *const *w, size_t nw)
{
	*n = 0;
	*out = calloc(nw ? nw : 1, sizeof(**out));
	if (!*out)
		return -1;
	for (size_t i = 0; i < nw; i++) {
		(*out)[i].name = rxg__dup_string(w[i]->name);
		if (!(*out)[i].name)
			return -1;
		(*out)[i].ns = w[i]->ns;
		(*out)[i].steps = w[i]->steps;
		*n = i + 1;
	}
	return 0;
}

/* The checks of args that need no request: RXG_OK or RXG_EINVAL with the reason. */
static int nas_args_check(rxg_client *c, const struct rxg_nas_args *args)
{
	if (args->dataset != RXG_NAS_CIFAR && args->dataset != RXG_NAS_IMAGENET)
		return rxg__fail(c, RXG_EINVAL,
				 "dataset %d is neither RXG_NAS_CIFAR nor RXG_NAS_IMAGENET",
				 (int)args->dataset);
	if (args->c < 0 || args->layers < 0 || args->classes < 0 || args->height < 0 ||
	    args->width < 0 || args->batch < 0)
		return rxg__fail(c, RXG_EINVAL, "c, layers, classes, height, width and batch must "
						"not be negative");
	if (!args->supernet && (!args->genotype || !*args->genotype))
		return rxg__fail(c, RXG_EINVAL, "genotype is empty (and supernet is not set)");
	if ((args->weights && args->weights_buf) || (args->input && args->input_buf))
		return rxg__fail(c, RXG_EINVAL, "%s and %s_buf are both given; give one",
				 args->weights && args->weights_buf ? "weights" : "input",
				 args->weights && args->weights_buf ? "weights" : "input");
	return RXG_OK;
}

/* The reply's result in a struct rxg_nas_result the caller owns; NULL when out of memory. */
static struct rxg_nas_result *nas_result_from_wire(const Rxgemm__NasEvalReply *w)
{
	struct rxg_nas_result *r = calloc(1, sizeof(*r));

	if (!r || !(r->genotype = rxg__dup_string(w->genotype)) ||
	    !(r->run_ns = calloc(w->n_run_ns ? w->n_run_ns : 1, sizeof(uint64_t))) ||
	    nas_parts_from_wire(&r->by_op, &r->n_by_op, w->by_op, w->n_by_op) < 0 ||
	    nas_parts_from_wire(&r->by_cell, &r->n_by_cell, w->by_cell, w->n_by_cell) < 0) {
		rxg_nas_result_free(r);
		return NULL;
	}
	if (w->n_run_ns)
		memcpy(r->run_ns, w->run_ns, w->n_run_ns * sizeof(uint64_t));
	r->n_runs = w->n_run_ns;
	r->params = w->params;
	r->macs = w->macs;
	r->weight_floats = w->weight_floats;
	r->peak_device_bytes = w->peak_device_bytes;
	r->activation_bytes = w->activation_bytes;
	r->batch = w->batch;
	r->batch_piece = w->batch_piece;
	r->classes = w->classes;
	r->steps = w->steps;
	r->latency_median_ns = w->latency_median_ns;
	r->latency_p90_ns = w->latency_p90_ns;
	r->latency_mean_ns = w->latency_mean_ns;
	r->profiled = w->profiled;
	r->unprofiled_median_ns = w->unprofiled_median_ns;
	return r;
}

/* About 110 lines: the request's fields one by one (inline, in a buffer or in a tensor),
 * then the reply's checks; the argument checks and the result's copy are apart. */
RXG_EXPORT int rxg_nas_eval(rxg_client *c, const struct rxg_nas_args *args,
			    struct rxg_nas_result **out)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__NasEvalRequest q = RXGEMM__NAS_EVAL_REQUEST__INIT;
	Rxgemm__Reply *reply = NULL;
	struct pending *p = NULL;
	Rxgemm__RegionRef regions[2];
	const Rxgemm__NasEvalReply *w;
	struct rxg_nas_result *r = NULL;
	bool imagenet;
	uint64_t batch, classes, h, wd, in_floats, logit_floats;
	size_t edges = 0;
	int rc;

	if (out)
		*out = NULL;
	if (!c)
		return RXG_EINVAL;
	if (!args || !out) {
		rc = rxg__fail(c, RXG_EINVAL, "rxg_nas_eval: args or out is NULL");
		goto out;
	}
	if ((rc = nas_args_check(c, args)) != RXG_OK)
		goto out;
	imagenet = args->dataset == RXG_NAS_IMAGENET;
	/* The daemon's defaults, to know the lengths of input and logits. */
	batch = args->batch ? (uint64_t)args->batch : 1;
	classes = args->classes ? (uint64_t)args->classes : imagenet ? 1000 : 10;
	h = args->height ? (uint64_t)args->height : imagenet ? 224 : 32;
	wd = args->width ? (uint64_t)args->width : imagenet ? 224 : 32;
	in_floats = batch * 3 * h * wd; /* each factor < 2^31: no overflow */
	logit_floats = batch * classes;
	q.genotype = (char *)(args->supernet ? "" : args->genotype);
	q.dataset = imagenet ? RXGEMM__NAS_DATASET__NAS_IMAGENET : RXGEMM__NAS_DATASET__NAS_CIFAR;
	q.c = args->c;
	q.layers = args->layers;
	q.classes = args->classes;
	q.height = args->height;
	q.width = args->width;
	q.batch = args->batch;
	if ((rc = rxg__nas_tensors(c, args, &q)) != RXG_OK)
		goto out;
	if (args->weights) {
		q.weights.data = (uint8_t *)(uintptr_t)args->weights;
		q.weights.len = args->n_weights * sizeof(float);
	}
	if (args->weights_buf) {
		if ((rc = rxg__region_ref(c, "weights", args->weights_buf, args->weights_offset,
					  args->n_weights, &regions[0])) != RXG_OK)
			goto out;
		q.weights_region = &regions[0];
	}
	if (args->input_buf) {
		if ((rc = rxg__region_ref(c, "input", args->input_buf, args->input_offset,
					  (size_t)in_floats, &regions[1])) != RXG_OK)
			goto out;
		q.input_region = &regions[1];
	}
	q.weight_seed = args->weight_seed;
	if (args->input) {
		q.input.data = (uint8_t *)(uintptr_t)args->input;
		q.input.len = (size_t)in_floats * sizeof(float);
	}
	q.input_seed = args->input_seed;
	q.warmup = args->warmup;
	q.repeat = args->repeat;
	q.want_logits = args->logits != NULL;
	q.want_breakdown = args->want_breakdown != 0;
	if (args->supernet) {
		uint32_t steps = args->steps ? args->steps : 4;

		if (steps > 64 || !args->alpha_normal || !args->alpha_reduce) {
			rc = rxg__fail(c, RXG_EINVAL, "the supernet needs alpha_normal and alpha_reduce "
				       "(and steps of at most 64)");
			goto out;
		}
		edges = (size_t)steps * (steps + 3) / 2;
		q.supernet = true;
		q.steps = args->steps;
		q.multiplier = args->multiplier;
		q.n_alpha_normal = q.n_alpha_reduce = edges * 8;
		q.alpha_normal = (float *)(uintptr_t)args->alpha_normal;
		q.alpha_reduce = (float *)(uintptr_t)args->alpha_reduce;
	}
	req.body_case = RXGEMM__REQUEST__BODY_NAS_EVAL;
	req.nas_eval = &q;
	rc = rxg__call(c, &req, (size_t)(logit_floats * sizeof(float)) + RXG__REPLY_OVERHEAD_BYTES,
		       RXGEMM__REPLY__BODY_NAS_EVAL, &p);
	if (rc != RXG_OK)
		goto out;
	reply = p->reply;
	w = reply->nas_eval;
	if (args->logits && w->logits.len != logit_floats * sizeof(float)) {
		rc = rxg__fail(c, RXG_EPROTO, "the daemon returned %zu bytes of logits; %llu x %llu "
			       "floats are %llu",
			       w->logits.len, (unsigned long long)batch, (unsigned long long)classes,
			       (unsigned long long)(logit_floats * sizeof(float)));
		goto out;
	}
	if (!(r = nas_result_from_wire(w))) {
		rc = rxg__fail(c, RXG_ENOMEM, "out of memory for the NAS result");
		goto out;
	}
	if (args->logits)
		memcpy(args->logits, w->logits.data, w->logits.len);
	*out = r;
	r = NULL;
out:
	rxg_nas_result_free(r);
	rxg__pending_free(p); /* and the reply */
	return rc;
}

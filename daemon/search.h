/* search.h: the DARTS architecture search on the device, one search step at a time
 * (daemon/search.c; the state format and the defaults are in docs/NAS.md).
 *
 * A search owns the supernet of the reference's search phase (nasplan.c lowers it; BN in
 * training mode, affine only in the stem), its weights, the architecture weights alpha,
 * the optimisers' moments and a step counter, all on one device. search_step runs one
 * first-order DARTS step (the architecture step on the validation batch, then the weight
 * step on the training batch) and waits for it, so that a device worker can run one step
 * per scheduler turn and stop between any two.
 *
 * Threads: search_prepare, search_bytes, search_derive and search_free (of a search that
 * never started) may run anywhere; everything else runs on the thread that owns the
 * device queue (the device worker). Errors are 0 or a negative errno with a sentence in
 * err where one is taken: -EINVAL (bad configuration, batch or state, or a search that has
 * not started where a started one is needed), -E2BIG (a size past the device's or the
 * indexing limits), -ENOMEM, -EIO (an OpenCL call failed; logged). */
#ifndef RXGEMMD_SEARCH_H
#define RXGEMMD_SEARCH_H

#include "nasgrad.h"

#define RXD_SEARCH_STATE_VERSION 1
#define RXD_SEARCH_STATE_HEADER 128 /* bytes before the float arrays */

struct rxd_search_config {
	int32_t C, layers, classes;  /* initial channels, cells, classes */
	int32_t height, width, batch; /* images, and the images of each half's batch */
	int32_t steps, multiplier;   /* nodes per cell, nodes concatenated (4, 4) */
	uint64_t seed;               /* the initial weights and alphas */
	/* Weights: SGD with momentum, the learning rate cosine-annealed from lr to lr_min
	 * over epochs of steps_per_epoch steps, the gradient's global norm clipped. */
	double lr, lr_min, momentum, weight_decay, grad_clip;
	int32_t epochs;
	int64_t steps_per_epoch;
	/* Alphas: Adam. */
	double arch_lr, arch_beta1, arch_beta2, arch_eps, arch_weight_decay;
};

/* The reference's defaults: C 16, layers 8, 10 classes, 32 x 32, batch 64, steps 4,
 * multiplier 4, seed 0, lr 0.025 to 0.001 over 50 epochs (steps_per_epoch 1 until the
 * caller knows its data), momentum 0.9, weight decay 3e-4, clip 5; Adam 3e-4,
 * betas (0.5, 0.999), eps 1e-8, weight decay 1e-3. */
void search_config_defaults(struct rxd_search_config *cfg);

/* One half's batch, on the host: images cfg.batch x 3 x height x width float32 (NCHW),
 * labels cfg.batch int32 in [0, classes). */
struct rxd_search_batch {
	const float *images;
	const int32_t *labels;
};

/* What one step measured. The training figures come from the weight step's forward, the
 * validation figures from the architecture step's (both in training mode, as the
 * reference's search loop sees them). */
struct rxd_search_result {
	uint64_t step;               /* steps done, this one included */
	int32_t epoch;               /* the epoch this step belonged to (from 0) */
	double lr;                   /* the weights' learning rate it used */
	float train_loss, train_acc, valid_loss, valid_acc; /* accuracies in [0, 1] */
	float grad_norm;             /* the weights' gradient norm before clipping */
	uint64_t forward_ns, backward_ns, update_ns; /* both steps' together, wall clock; the
						      * batches' upload counts as forward */
};

struct rxd_search;

/* Check cfg and lay out the search (the supernet's plan, its training program, the
 * device memory), without touching a device. *out is freed with search_free. */
int search_prepare(const struct rxd_search_config *cfg, struct rxd_search **out,
		   struct rxd_error *err);
/* The device memory a prepared search takes while it runs (every buffer, and the most the
 * kernels' scratch can grow to), in bytes: what admission reserves. */
uint64_t search_device_bytes(const struct rxd_search *s);
/* The same for a configuration (prepares and frees one). 0, or as search_prepare. */
int search_bytes(const struct rxd_search_config *cfg, uint64_t *bytes, struct rxd_error *err);
/* Device worker: allocate the device state and initialise it from cfg.seed (the
 * reference's initialisation: PyTorch's default uniform bounds, BN gamma 1 and beta 0,
 * alphas 1e-3 x N(0, 1)). ops and gr must outlive s; the kernels' scratch grows in them
 * and is theirs to release. */
int search_start(struct rxd_search *s, struct rxd_nasops *ops, struct rxd_nasgrad *gr,
		 struct rxd_error *err);
/* One first-order DARTS step; waits for the device. train and valid are read during the
 * call only. On an error the state may be half updated: a failed step ends the search. */
int search_step(struct rxd_search *s, const struct rxd_search_batch *train,
		const struct rxd_search_batch *valid, struct rxd_search_result *r,
		struct rxd_error *err);
/* The loss of batch at the current state and its gradients, changing nothing but the BN
 * running statistics: dweights (search_trainable_floats, NULL: not wanted) in the order of
 * the trainable entries of the state_dict (conv weights, BN weight and bias, the
 * classifier's weight and bias) and dalpha (2 x edges x 8: normal rows then reduce rows;
 * NULL: not wanted). For tests and comparisons with other implementations. */
int search_gradients(struct rxd_search *s, const struct rxd_search_batch *batch, float *loss,
		     float *dweights, float *dalpha, struct rxd_error *err);
/* Sizes: edges per cell (steps (steps + 3) / 2), trainable floats, the state blob's. */
int32_t search_edges(const struct rxd_search *s);
uint64_t search_trainable_floats(const struct rxd_search *s);
uint64_t search_state_bytes(const struct rxd_search *s);
uint64_t search_steps_done(const struct rxd_search *s);
const struct rxd_nas_plan *search_plan(const struct rxd_search *s);
/* The current alphas (edges x 8 each; the host's copy, exact). */
void search_alphas(const struct rxd_search *s, float *normal, float *reduce);
/* Replace the alphas (for tests and a client that brings its own), after search_start
 * (which draws the initial ones). Device worker. -EINVAL when one is not finite. */
int search_set_alphas(struct rxd_search *s, const float *normal, const float *reduce);
/* The genotype of the current alphas (search_derive). */
void search_genotype(const struct rxd_search *s, struct rxd_genotype *g);
/* The reference's rule, from alphas of edges = steps (steps + 3) / 2 rows of 8: per node
 * the two incoming edges whose strongest operation other than none has the largest
 * softmax weight (the earlier edge on a tie), each with that operation (the first on a
 * tie); the last multiplier nodes concatenated. */
void search_derive(const float *alpha_normal, const float *alpha_reduce, int32_t steps,
		   int32_t multiplier, struct rxd_genotype *g);
/* The whole state into buf (search_state_bytes), as docs/NAS.md describes; waits. */
int search_state_save(struct rxd_search *s, void *buf, size_t len, struct rxd_error *err);
/* Replace the state with one search_state_save made for the same network (C, layers,
 * classes, height, width, steps, multiplier); the batch and the hyperparameters may
 * differ. -EINVAL with a sentence when it does not fit or is damaged. */
int search_state_load(struct rxd_search *s, const void *buf, size_t len,
		      struct rxd_error *err);
/* Hooks that search_step calls between its operations (the daemon serves short jobs there:
 * worker.c). The step enqueues its operations in pieces of about SEARCH_PAUSE_NS of device
 * work each and keeps at most two pieces on the device, so that a job that comes waits
 * behind a millisecond or two of the search, not a whole step (up to a second on a GPU).
 * At each piece's end wanted says whether anything waits; only then is the device drained
 * and run called (whatever it runs on the same queue then waits behind nothing). run
 * returns 0, or -errno to fail the step; its time is left out of the step's timings. */
struct rxd_search_pause {
	bool (*wanted)(void *arg);
	int (*run)(void *arg);
	void *arg;
};
/* p NULL: no pauses (the device is then never waited for mid-step). */
void search_set_pause(struct rxd_search *s, const struct rxd_search_pause *p);
/* Free everything (waits for the device when the search started). */
void search_free(struct rxd_search *s);

#endif

/* cmd-nas-search.c: rxgemm nas-search, a DARTS architecture search run by the daemon
 * (docs/NAS.md, "Search jobs"): the data from .npy files or CIFAR-10's binary batches, a
 * progress line (or JSON lines), the genotype and the alphas written at the end, Ctrl-C
 * cancelling cleanly, and with --state the state kept for --resume.
 *
 * With --state the search runs in segments of --checkpoint-every steps, each resumed from
 * the state the one before handed back (a resumed search equals a straight one bit for
 * bit), so that Ctrl-C loses at most the segment it interrupts and leaves a state that
 * --resume continues from. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "npy.h"

enum {
	OPT_TRAIN_IMAGES = 768,
	OPT_TRAIN_LABELS,
	OPT_VALID_IMAGES,
	OPT_VALID_LABELS,
	OPT_CIFAR10,
	OPT_S_C,
	OPT_S_LAYERS,
	OPT_S_CLASSES,
	OPT_S_BATCH,
	OPT_S_NODES,
	OPT_S_MULTIPLIER,
	OPT_S_SEED,
	OPT_S_EPOCHS,
	OPT_S_MAX_STEPS,
	OPT_S_LR,
	OPT_S_LR_MIN,
	OPT_S_MOMENTUM,
	OPT_S_WEIGHT_DECAY,
	OPT_S_GRAD_CLIP,
	OPT_S_ARCH_LR,
	OPT_S_ARCH_WEIGHT_DECAY,
	OPT_S_PROGRESS_EVERY,
	OPT_S_OUT_GENOTYPE,
	OPT_S_OUT_ALPHAS,
	OPT_S_STATE,
	OPT_S_RESUME,
	OPT_S_CHECKPOINT,
};

#define CIFAR_RECORD 3073 /* 1 label byte, 3 x 32 x 32 pixel bytes (R, G, B planes) */
#define CIFAR_MAX_FILES 16

/* The reference's CIFAR-10 normalisation (utils.py: _data_transforms_cifar10). */
static const float cifar_mean[3] = { 0.49139968f, 0.48215827f, 0.44653124f };
static const float cifar_std[3] = { 0.24703233f, 0.24348505f, 0.26158768f };

struct search_opts {
	struct rxg_search_args a;
	const char *socket;
	const char *files[4];        /* train images, labels, valid images, labels */
	const char *cifar[CIFAR_MAX_FILES];
	int n_cifar;
	const char *out_genotype, *out_alphas, *state, *resume;
	uint64_t checkpoint;
	int json;
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int parse_real(const char *opt, const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(*out))
		return usage_error("%s: '%s' is not a number", opt, s);
	return EXIT_OK;
}

/* About 100 lines: one case per option. */
static int search_parse(int argc, char **argv, struct search_opts *o)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "train-images", required_argument, NULL, OPT_TRAIN_IMAGES },
		{ "train-labels", required_argument, NULL, OPT_TRAIN_LABELS },
		{ "valid-images", required_argument, NULL, OPT_VALID_IMAGES },
		{ "valid-labels", required_argument, NULL, OPT_VALID_LABELS },
		{ "cifar10", required_argument, NULL, OPT_CIFAR10 },
		{ "C", required_argument, NULL, OPT_S_C },
		{ "layers", required_argument, NULL, OPT_S_LAYERS },
		{ "classes", required_argument, NULL, OPT_S_CLASSES },
		{ "batch", required_argument, NULL, OPT_S_BATCH },
		{ "nodes", required_argument, NULL, OPT_S_NODES },
		{ "multiplier", required_argument, NULL, OPT_S_MULTIPLIER },
		{ "seed", required_argument, NULL, OPT_S_SEED },
		{ "epochs", required_argument, NULL, OPT_S_EPOCHS },
		{ "max-steps", required_argument, NULL, OPT_S_MAX_STEPS },
		{ "lr", required_argument, NULL, OPT_S_LR },
		{ "lr-min", required_argument, NULL, OPT_S_LR_MIN },
		{ "momentum", required_argument, NULL, OPT_S_MOMENTUM },
		{ "weight-decay", required_argument, NULL, OPT_S_WEIGHT_DECAY },
		{ "grad-clip", required_argument, NULL, OPT_S_GRAD_CLIP },
		{ "arch-lr", required_argument, NULL, OPT_S_ARCH_LR },
		{ "arch-weight-decay", required_argument, NULL, OPT_S_ARCH_WEIGHT_DECAY },
		{ "progress-every", required_argument, NULL, OPT_S_PROGRESS_EVERY },
		{ "out-genotype", required_argument, NULL, OPT_S_OUT_GENOTYPE },
		{ "out-alphas", required_argument, NULL, OPT_S_OUT_ALPHAS },
		{ "state", required_argument, NULL, OPT_S_STATE },
		{ "resume", required_argument, NULL, OPT_S_RESUME },
		{ "checkpoint-every", required_argument, NULL, OPT_S_CHECKPOINT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	struct rxg_search_args *a = &o->a;
	int64_t v;
	int opt, rc;

	rxg_search_args_init(a);
	a->progress_every = 1;
	o->checkpoint = 50;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		rc = EXIT_OK;
		switch (opt) {
		case OPT_SOCKET: o->socket = optarg; break;
		case OPT_TRAIN_IMAGES: o->files[0] = optarg; break;
		case OPT_TRAIN_LABELS: o->files[1] = optarg; break;
		case OPT_VALID_IMAGES: o->files[2] = optarg; break;
		case OPT_VALID_LABELS: o->files[3] = optarg; break;
		case OPT_CIFAR10:
			if (o->n_cifar == CIFAR_MAX_FILES)
				return usage_error("--cifar10: at most %d files", CIFAR_MAX_FILES);
			o->cifar[o->n_cifar++] = optarg;
			break;
		case OPT_S_C:
			if ((rc = parse_int64("--C", optarg, 1, 1024, &v)) == EXIT_OK)
				a->c = (int32_t)v;
			break;
		case OPT_S_LAYERS:
			if ((rc = parse_int64("--layers", optarg, 1, 64, &v)) == EXIT_OK)
				a->layers = (int32_t)v;
			break;
		case OPT_S_CLASSES:
			if ((rc = parse_int64("--classes", optarg, 2, 100000, &v)) == EXIT_OK)
				a->classes = (int32_t)v;
			break;
		case OPT_S_BATCH:
			if ((rc = parse_int64("--batch", optarg, 1, 65536, &v)) == EXIT_OK)
				a->batch = (int32_t)v;
			break;
		case OPT_S_NODES:
			if ((rc = parse_int64("--nodes", optarg, 1, 8, &v)) == EXIT_OK)
				a->steps = (uint32_t)v;
			break;
		case OPT_S_MULTIPLIER:
			if ((rc = parse_int64("--multiplier", optarg, 1, 8, &v)) == EXIT_OK)
				a->multiplier = (uint32_t)v;
			break;
		case OPT_S_SEED: rc = parse_uint64("--seed", optarg, &a->seed); break;
		case OPT_S_EPOCHS:
			if ((rc = parse_int64("--epochs", optarg, 1, 1000000, &v)) == EXIT_OK)
				a->epochs = (uint32_t)v;
			break;
		case OPT_S_MAX_STEPS: rc = parse_uint64("--max-steps", optarg, &a->max_steps); break;
		case OPT_S_LR: rc = parse_real("--lr", optarg, &a->lr); break;
		case OPT_S_LR_MIN: rc = parse_real("--lr-min", optarg, &a->lr_min); break;
		case OPT_S_MOMENTUM: rc = parse_real("--momentum", optarg, &a->momentum); break;
		case OPT_S_WEIGHT_DECAY:
			rc = parse_real("--weight-decay", optarg, &a->weight_decay);
			break;
		case OPT_S_GRAD_CLIP: rc = parse_real("--grad-clip", optarg, &a->grad_clip); break;
		case OPT_S_ARCH_LR: rc = parse_real("--arch-lr", optarg, &a->arch_lr); break;
		case OPT_S_ARCH_WEIGHT_DECAY:
			rc = parse_real("--arch-weight-decay", optarg, &a->arch_weight_decay);
			break;
		case OPT_S_PROGRESS_EVERY:
			if ((rc = parse_int64("--progress-every", optarg, 0, 1000000000, &v)) == EXIT_OK)
				a->progress_every = (uint32_t)v;
			break;
		case OPT_S_OUT_GENOTYPE: o->out_genotype = optarg; break;
		case OPT_S_OUT_ALPHAS: o->out_alphas = optarg; break;
		case OPT_S_STATE: o->state = optarg; break;
		case OPT_S_RESUME: o->resume = optarg; break;
		case OPT_S_CHECKPOINT:
			if ((rc = parse_int64("--checkpoint-every", optarg, 1, INT64_MAX, &v)) ==
			    EXIT_OK)
				o->checkpoint = (uint64_t)v;
			break;
		case OPT_JSON: o->json = 1; break;
		default: return option_error(opt, argv);
		}
		if (rc != EXIT_OK)
			return rc;
	}
	if (optind < argc)
		return usage_error("nas-search: unexpected argument '%s'", argv[optind]);
	if (o->n_cifar && (o->files[0] || o->files[1] || o->files[2] || o->files[3]))
		return usage_error("nas-search: give --cifar10 or the .npy files, not both");
	if (!o->n_cifar && !(o->files[0] && o->files[1] && o->files[2] && o->files[3]))
		return usage_error("nas-search: the data are --train-images, --train-labels, "
				   "--valid-images and --valid-labels (.npy), or --cifar10 FILE");
	return EXIT_OK;
}

/* The .npy data: images N x 3 x H x W float32 (H and W from the file), labels N. */
static int search_load_npy(struct search_opts *o, float **x, int32_t **y)
{
	struct rxg_search_data *half[2] = { &o->a.train, &o->a.valid };
	char err[512];

	for (int h = 0; h < 2; h++) {
		struct npy_array img;
		int64_t n;

		if (npy_load(o->files[2 * h], 4, 4, &img, err, sizeof(err)) < 0)
			return file_error("%s", err);
		x[h] = img.data;
		if (img.fortran_order || img.dims[1] != 3 || img.dims[2] > 4096 || img.dims[3] > 4096)
			return file_error("%s: need a C-ordered N x 3 x H x W array", o->files[2 * h]);
		if ((o->a.height && o->a.height != img.dims[2]) ||
		    (o->a.width && o->a.width != img.dims[3]))
			return file_error("%s: the images are %lldx%lld, the training images %dx%d",
					  o->files[2 * h], (long long)img.dims[2],
					  (long long)img.dims[3], o->a.height, o->a.width);
		o->a.height = (int32_t)img.dims[2];
		o->a.width = (int32_t)img.dims[3];
		if (npy_load_labels(o->files[2 * h + 1], &y[h], &n, err, sizeof(err)) < 0)
			return file_error("%s", err);
		if (n != img.dims[0])
			return file_error("%s holds %lld labels for %lld images", o->files[2 * h + 1],
					  (long long)n, (long long)img.dims[0]);
		half[h]->count = n;
		half[h]->images = x[h];
		half[h]->labels = y[h];
	}
	return EXIT_OK;
}

/* CIFAR-10's binary batches (data_batch_N.bin), in the order given, normalised as the
 * reference does and split as its search does (train_portion 0.5): the first half of the
 * images trains the weights, the second half the alphas. */
static int search_load_cifar(struct search_opts *o, float **x, int32_t **y)
{
	size_t total = 0, at = 0, half;
	uint8_t rec[CIFAR_RECORD];
	float *all;
	int32_t *labels;

	for (int i = 0; i < o->n_cifar; i++) {
		FILE *f = fopen(o->cifar[i], "rb");
		long len;

		if (!f || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0) {
			if (f)
				fclose(f);
			return file_error("--cifar10: %s: %s", o->cifar[i], strerror(errno));
		}
		fclose(f);
		if (len == 0 || len % CIFAR_RECORD)
			return file_error("--cifar10: %s is %ld bytes, not whole records of %d (1 "
					  "label byte, 3072 pixel bytes)", o->cifar[i], len,
					  CIFAR_RECORD);
		total += (size_t)len / CIFAR_RECORD;
	}
	all = xmalloc(total * 3072 * sizeof(float));
	labels = xmalloc(total * sizeof(int32_t));
	for (int i = 0; i < o->n_cifar; i++) {
		FILE *f = fopen(o->cifar[i], "rb");

		if (!f)
			return file_error("--cifar10: %s: %s", o->cifar[i], strerror(errno));
		while (fread(rec, 1, sizeof(rec), f) == sizeof(rec)) {
			if (rec[0] > 9) {
				fclose(f);
				return file_error("--cifar10: %s: record %zu has label %u", o->cifar[i],
						  at, rec[0]);
			}
			labels[at] = rec[0];
			for (int p = 0; p < 3072; p++)
				all[at * 3072 + (size_t)p] = ((float)rec[1 + p] / 255.0f -
							      cifar_mean[p / 1024]) /
							     cifar_std[p / 1024];
			at++;
		}
		fclose(f);
	}
	half = total / 2;
	if (half == 0)
		return file_error("--cifar10: %zu image%s: too few to split", total,
				  total == 1 ? "" : "s");
	x[0] = all;
	y[0] = labels;
	o->a.height = o->a.width = 32;
	o->a.train = (struct rxg_search_data){ .count = (int64_t)half, .images = all,
					       .labels = labels };
	o->a.valid = (struct rxg_search_data){ .count = (int64_t)(total - half),
					       .images = all + half * 3072,
					       .labels = labels + half };
	return EXIT_OK;
}

/* What the progress callback shows. */
struct search_view {
	const struct search_opts *o;
	uint64_t start_ns, start_step;
	int tty;
	int shown;                   /* a progress line is on the terminal */
};

static void search_progress(const struct rxg_search_progress *p, void *arg)
{
	struct search_view *v = arg;

	if (v->o->json) {
		struct json_writer w;

		json_init(&w, stdout);
		json_begin_object(&w);
		json_member_string(&w, "event", "progress");
		json_member_uint(&w, "step", p->step);
		json_member_uint(&w, "total_steps", p->total_steps);
		json_member_int(&w, "epoch", p->epoch);
		json_member_number(&w, "lr", p->lr);
		json_member_number(&w, "train_loss", p->train_loss);
		json_member_number(&w, "train_acc", p->train_acc);
		json_member_number(&w, "valid_loss", p->valid_loss);
		json_member_number(&w, "valid_acc", p->valid_acc);
		json_member_uint(&w, "forward_ns", p->forward_ns);
		json_member_uint(&w, "backward_ns", p->backward_ns);
		json_member_uint(&w, "update_ns", p->update_ns);
		json_member_string(&w, "genotype", p->genotype);
		json_end_object(&w);
		fputc('\n', stdout);
		fflush(stdout);
		return;
	}
	if (v->tty) {
		double spent = (double)(now_ns() - v->start_ns) / 1e9;
		uint64_t done = p->step - v->start_step, left = p->total_steps - p->step;
		double eta = done ? spent / (double)done * (double)left : 0;

		fprintf(stderr, "\rrxgemm: epoch %d step %llu/%llu  loss %.4f acc %.3f  valid loss "
			"%.4f acc %.3f  ETA %02d:%02d:%02d ", p->epoch, (unsigned long long)p->step,
			(unsigned long long)p->total_steps, p->train_loss, p->train_acc,
			p->valid_loss, p->valid_acc, (int)(eta / 3600), (int)fmod(eta / 60, 60),
			(int)fmod(eta, 60));
		v->shown = 1;
	}
}

static int write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		return file_error("%s: %s", path, strerror(errno));
	return EXIT_OK;
}

/* The state of --resume, or NULL (*len 0) without it. */
static int read_state(const char *path, void **buf, size_t *len)
{
	FILE *f;
	long n;

	*buf = NULL;
	*len = 0;
	if (!path)
		return EXIT_OK;
	if (!(f = fopen(path, "rb")) || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		if (f)
			fclose(f);
		return file_error("--resume: %s: %s", path, errno ? strerror(errno) : "empty");
	}
	*buf = xmalloc((size_t)n);
	if (fread(*buf, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		return file_error("--resume: %s: short read", path);
	}
	fclose(f);
	*len = (size_t)n;
	return EXIT_OK;
}

/* One search (a segment with --state) to its end or to Ctrl-C (then cancelled): RXG_OK
 * with *out, or the error. */
static int search_run(rxg_client *c, const struct rxg_search_args *a, struct search_view *v,
		      struct rxg_search_result **out)
{
	uint64_t id;
	int rc, cancelled = 0;

	if ((rc = rxg_submit_search(c, a, &id)) != RXG_OK)
		return rc;
	/* Short waits, so that Ctrl-C is seen between reports. */
	while ((rc = rxg_search_wait(c, id, 200, search_progress, v, out)) == RXG_EAGAIN) {
		if (interrupted && !cancelled) {
			rxg_cancel(c, id, NULL);
			cancelled = 1;
		}
	}
	return rc;
}

static void search_final_json(const struct rxg_search_result *r, int cancelled)
{
	struct json_writer w;

	json_init(&w, stdout);
	json_begin_object(&w);
	json_member_string(&w, "event", cancelled ? "cancelled" : "done");
	json_member_uint(&w, "steps_done", r->steps_done);
	json_member_string(&w, "genotype", r->genotype);
	json_member_uint(&w, "device_bytes", r->device_bytes);
	json_key(&w, "alpha_normal");
	json_begin_array(&w);
	for (size_t i = 0; i < r->n_alphas; i++)
		json_number(&w, r->alpha_normal[i]);
	json_end_array(&w);
	json_key(&w, "alpha_reduce");
	json_begin_array(&w);
	for (size_t i = 0; i < r->n_alphas; i++)
		json_number(&w, r->alpha_reduce[i]);
	json_end_array(&w);
	json_end_object(&w);
	fputc('\n', stdout);
}

/* The outputs of a finished (or, with --state, interrupted) search. */
static int search_write(const struct search_opts *o, const struct rxg_search_result *r,
			int cancelled)
{
	char err[512];
	int rc;

	if (o->state && r->state && (rc = write_file(o->state, r->state, r->state_bytes)) != EXIT_OK)
		return rc;
	if (o->out_genotype) {
		size_t len = strlen(r->genotype);
		char *text = xmalloc(len + 2);

		memcpy(text, r->genotype, len);
		text[len] = '\n';
		rc = write_file(o->out_genotype, text, len + 1);
		free(text);
		if (rc != EXIT_OK)
			return rc;
	}
	if (o->out_alphas) {
		/* [2][edges][8]: normal cells, then reduction cells. */
		int64_t dims[3] = { 2, (int64_t)(r->n_alphas / 8), 8 };
		float *both = xmalloc(2 * r->n_alphas * sizeof(float) + 1);

		memcpy(both, r->alpha_normal, r->n_alphas * sizeof(float));
		memcpy(both + r->n_alphas, r->alpha_reduce, r->n_alphas * sizeof(float));
		rc = npy_write_array(o->out_alphas, both, 3, dims, err, sizeof(err));
		free(both);
		if (rc < 0)
			return file_error("%s", err);
	}
	if (o->json)
		search_final_json(r, cancelled);
	else
		printf("%s after %llu steps\n%s\n", cancelled ? "cancelled (state saved)" : "done",
		       (unsigned long long)r->steps_done, r->genotype);
	return EXIT_OK;
}

/* About 90 lines: the data, then the search in one piece or in segments (--state). */
int cmd_nas_search(int argc, char **argv, const char *socket)
{
	struct search_opts o;
	struct search_view v = { 0 };
	struct rxg_search_result *r = NULL, *last = NULL;
	float *x[2] = { NULL, NULL };
	int32_t *y[2] = { NULL, NULL };
	void *resume = NULL;
	size_t resume_len = 0;
	rxg_client *c = NULL;
	struct sigaction sa;
	int rc, xrc, cancelled = 0;

	memset(&o, 0, sizeof(o));
	o.socket = socket;
	if ((rc = search_parse(argc, argv, &o)) != EXIT_OK)
		return rc;
	for (int i = 0; i < 3; i++) {
		const char *out[3] = { o.out_genotype, o.out_alphas, o.state };

		if (out[i] && (rc = output_check(i == 0   ? "--out-genotype"
						  : i == 1 ? "--out-alphas"
							   : "--state",
						  out[i])) != EXIT_OK)
			return rc;
	}
	rc = o.n_cifar ? search_load_cifar(&o, x, y) : search_load_npy(&o, x, y);
	if (rc == EXIT_OK)
		rc = read_state(o.resume, &resume, &resume_len);
	if (rc != EXIT_OK)
		goto out;
	if ((xrc = rxg_connect(o.socket, CLIENT_NAME, &c)) != RXG_OK) {
		rc = daemon_error(NULL, xrc);
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigaction(SIGINT, &sa, NULL);
	v.o = &o;
	v.tty = isatty(STDERR_FILENO) && !o.json;
	v.start_ns = now_ns();
	o.a.resume_state = resume;
	o.a.resume_bytes = resume_len;
	if (!o.state) {
		xrc = search_run(c, &o.a, &v, &r);
		cancelled = xrc == RXG_ECANCELLED;
	} else {
		/* Segments of --checkpoint-every steps, each from the last one's state (whose
		 * step count is at byte 48, docs/NAS.md). */
		uint64_t goal = o.a.max_steps, done = 0;

		for (int i = 0; resume && resume_len >= 56 && i < 8; i++)
			done |= (uint64_t)((const uint8_t *)resume)[48 + i] << (8 * i);
		for (;;) {
			struct rxg_search_args seg = o.a;

			seg.want_state = 1;
			seg.max_steps = done + o.checkpoint;
			if (goal && seg.max_steps > goal)
				seg.max_steps = goal;
			xrc = search_run(c, &seg, &v, &r);
			if (xrc != RXG_OK)
				break;
			rxg_search_result_free(last);
			last = r;
			r = NULL;
			o.a.resume_state = last->state;
			o.a.resume_bytes = last->state_bytes;
			/* Ended: the goal reached, interrupted, or fewer steps than asked (the
			 * daemon's own end, every epoch done). */
			if (interrupted || (goal && last->steps_done >= goal) ||
			    last->steps_done < seg.max_steps)
				break;
			done = last->steps_done;
		}
		cancelled = xrc == RXG_ECANCELLED || (xrc == RXG_OK && interrupted);
		if (cancelled && last)
			xrc = RXG_OK;
		r = last;
		last = NULL;
	}
	if (v.shown)
		fputc('\n', stderr);
	if (xrc == RXG_ECANCELLED) {
		fprintf(stderr, "rxgemm: nas-search cancelled%s\n",
			o.state ? " before its first checkpoint; no state saved" : "");
		rc = 130;
		goto out;
	}
	if (xrc != RXG_OK) {
		rc = daemon_error(c, xrc);
		goto out;
	}
	rc = search_write(&o, r, cancelled);
	if (rc == EXIT_OK && cancelled)
		rc = 130;
out:
	rxg_search_result_free(r);
	rxg_search_result_free(last);
	rxg_close(c);
	free(x[0]);
	free(x[1]);
	free(y[0]);
	free(y[1]);
	free(resume);
	return rc;
}

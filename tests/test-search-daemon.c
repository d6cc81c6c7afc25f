/* test-search-daemon.c: DARTS search jobs through a real rxgemmd on the OpenCL device
 * (PoCL here) and librxgemm's rxg_submit_search / rxg_search_wait.
 *
 * The reference is the search engine run in this process (daemon/search.c on its own
 * device, set up as main.c sets it up: convolutions through the GEMM engine), stepping
 * through the batches by the rule docs/NAS.md states (step k takes batch k mod
 * (count / batch) of each half): the job's genotype and alphas must equal it.
 *
 *   progress:  reports arrive with increasing step numbers, one per step asked for
 *   resume:    state out at step 2, resumed to step 4, equals straight through to 4
 *   cancel:    between steps, RXG_ECANCELLED; the connection keeps serving
 *   sharing:   a GEMM from another connection, sent once the search has reported its
 *              first step, is answered while the search still runs (it is cancelled
 *              afterwards, which only a running search can be)
 *   pauses:    a search held by the test hook in the middle of a step still lets another
 *              client's GEMMs through (they run in the step's pauses), and ends with
 *              the reference's alphas
 *   leaving:   a client that disconnects mid-search cancels it (the daemon's count)
 *   refusals:  bad sizes, labels out of range, a state region too small, a resume state
 *              of another network; over the budget (TOO_BIG) and the quota (QUOTA) up
 *              front, each with its code */
#include <check.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon-run.h"
#include "rxgemm.h"
#include "loop.h"
#include "search.h"

static struct daemon_run g_daemon;
static rxg_client *g_c;
static int g_skip;
static const char *const *g_args;

/* The tiny network: C 4, 3 layers (a normal cell then two reductions), 8x8, 4 classes,
 * batch 2; 4 training and 4 validation images (2 batches each). */
#define T_C 4
#define T_LAYERS 3
#define T_CLASSES 4
#define T_SIDE 8
#define T_BATCH 2
#define T_COUNT 4
#define T_PER_IMAGE (3 * T_SIDE * T_SIDE)

static float g_tx[T_COUNT * T_PER_IMAGE], g_vx[T_COUNT * T_PER_IMAGE];
static int32_t g_ty[T_COUNT], g_vy[T_COUNT];

static void make_data(void)
{
	uint64_t st = 7;

	for (size_t i = 0; i < T_COUNT * T_PER_IMAGE; i++) {
		st = st * 6364136223846793005ull + 1442695040888963407ull;
		g_tx[i] = (float)((double)(st >> 11) / 9007199254740992.0 * 2 - 1);
		st = st * 6364136223846793005ull + 1442695040888963407ull;
		g_vx[i] = (float)((double)(st >> 11) / 9007199254740992.0 * 2 - 1);
	}
	for (int i = 0; i < T_COUNT; i++) {
		g_ty[i] = i % T_CLASSES;
		g_vy[i] = (3 * i + 1) % T_CLASSES;
	}
}

static void tiny_args(struct rxg_search_args *a, uint64_t seed, uint64_t max_steps)
{
	rxg_search_args_init(a);
	a->c = T_C;
	a->layers = T_LAYERS;
	a->classes = T_CLASSES;
	a->height = a->width = T_SIDE;
	a->batch = T_BATCH;
	a->seed = seed;
	a->epochs = 3;
	a->max_steps = max_steps;
	a->train = (struct rxg_search_data){ .count = T_COUNT, .images = g_tx, .labels = g_ty };
	a->valid = (struct rxg_search_data){ .count = T_COUNT, .images = g_vx, .labels = g_vy };
}

/* ---- the reference: the engine in this process ------------------------------------------ */

static struct rxd_device g_dev;
static struct rxd_gemm_engine g_eng;
static struct rxd_nasops g_ops;
static struct rxd_nasgrad g_gr;
static bool g_ref_ready;

static void ref_open(void)
{
	if (g_ref_ready)
		return;
	ck_assert_msg(device_open(&g_dev, getenv("RXGEMM_TEST_DEVICE"), NULL) == 0, "no device");
	ck_assert(gemm_init(&g_eng, &g_dev, NULL) == 0);
	ck_assert(nasops_init(&g_ops, &g_dev, &g_eng) == 0);
	ck_assert(nasgrad_init(&g_gr, &g_dev, &g_eng) == 0);
	g_ref_ready = true;
}

/* steps steps of the tiny search from seed; its alphas (edges x 8 each) and genotype. */
static void ref_search(uint64_t seed, int steps, float *an, float *ar, char *geno, size_t len)
{
	struct rxd_search_config cfg;
	struct rxd_error err = { 0 };
	struct rxd_search *s;
	struct rxd_genotype g;

	ref_open();
	search_config_defaults(&cfg);
	cfg.C = T_C;
	cfg.layers = T_LAYERS;
	cfg.classes = T_CLASSES;
	cfg.height = cfg.width = T_SIDE;
	cfg.batch = T_BATCH;
	cfg.seed = seed;
	cfg.epochs = 3;
	cfg.steps_per_epoch = T_COUNT / T_BATCH;
	ck_assert_msg(search_prepare(&cfg, &s, &err) == 0, "%s", err.msg);
	ck_assert_msg(search_start(s, &g_ops, &g_gr, &err) == 0, "%s", err.msg);
	for (int k = 0; k < steps; k++) {
		int b = k % (T_COUNT / T_BATCH);
		struct rxd_search_batch tb = { g_tx + b * T_BATCH * T_PER_IMAGE, g_ty + b * T_BATCH };
		struct rxd_search_batch vb = { g_vx + b * T_BATCH * T_PER_IMAGE, g_vy + b * T_BATCH };
		struct rxd_search_result r;

		ck_assert_msg(search_step(s, &tb, &vb, &r, &err) == 0, "%s", err.msg);
	}
	search_alphas(s, an, ar);
	search_genotype(s, &g);
	genotype_format(&g, geno, len);
	search_free(s);
	nasops_release_scratch(&g_ops);
	nasgrad_release_scratch(&g_gr);
}

/* ---- fixtures ---------------------------------------------------------------------------- */

static void setup(void)
{
	int rc = daemon_run_start(&g_daemon, g_args);

	if (rc == DAEMON_RUN_SKIP) {
		g_skip = 1;
		return;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(rxg_connect(g_daemon.socket_path, "test-search-daemon", &g_c), RXG_OK);
}

static void teardown(void)
{
	rxg_close(g_c);
	g_c = NULL;
	if (!g_skip) {
		int st = daemon_run_stop(&g_daemon, SIGTERM, 120);

		if (st != 0)
			daemon_run_dump_log(&g_daemon);
		ck_assert_int_eq(st, 0);
	}
	daemon_run_cleanup(&g_daemon);
}

static void setup_budget(void)
{
	static const char *const args[] = { "--vram-budget", "64M", NULL };

	g_args = args;
	setup();
}

static void setup_quota(void)
{
	static const char *const args[] = { "--client-quota", "64M", NULL };

	g_args = args;
	setup();
}

static void setup_default(void)
{
	g_args = NULL;
	setup();
}

/* A daemon with the test hook on (RXGEMMD_TEST_HOLD: worker.c holds a search at a pause
 * while the file "hold" exists in its directory). */
static void setup_hold(void)
{
	ck_assert_int_eq(daemon_run_init(&g_daemon), 0);
	setenv("RXGEMMD_TEST_HOLD", g_daemon.dir, 1);
	g_args = NULL;
	setup();
	unsetenv("RXGEMMD_TEST_HOLD");
}

/* ---- progress and the in-process reference -------------------------------------------------- */

struct seen {
	uint64_t steps[64];
	int n;
	bool bad;
};

static void on_progress(const struct rxg_search_progress *p, void *arg)
{
	struct seen *s = arg;
	struct rxd_genotype g;
	struct rxd_error err;

	if (s->n < 64)
		s->steps[s->n] = p->step;
	s->n++;
	/* Each report's genotype is one the parser takes, derived from its alphas. */
	if (p->n_alphas != 14 * 8 || !p->alpha_normal ||
	    genotype_parse(p->genotype, strlen(p->genotype), &g, &err) != 0)
		s->bad = true;
}

START_TEST(progress_and_reference)
{
	struct rxg_search_args a;
	struct rxg_search_result *r = NULL;
	struct seen seen = { { 0 }, 0, false };
	float an[14 * 8], ar[14 * 8];
	char geno[RXD_GENOTYPE_TEXT_MAX];
	struct rxd_genotype g;
	struct rxd_error err;
	int rc;

	if (g_skip)
		return;
	tiny_args(&a, 3, 4);
	a.progress_every = 1;
	rc = rxg_search(g_c, &a, on_progress, &seen, &r);
	ck_assert_msg(rc == RXG_OK, "search: %s", rxg_errmsg(g_c));
	ck_assert_int_eq(seen.n, 4);
	ck_assert(!seen.bad);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(seen.steps[i], (uint64_t)i + 1);
	ck_assert_uint_eq(r->steps_done, 4);
	ck_assert_uint_eq(r->n_curve, 4);
	for (size_t i = 0; i < r->n_curve; i++) {
		ck_assert_uint_eq(r->curve[i].step, i + 1);
		ck_assert(isfinite(r->curve[i].train_loss) && r->curve[i].train_loss > 0);
		ck_assert(r->curve[i].forward_ns > 0 && r->curve[i].backward_ns > 0);
	}
	ck_assert(r->device_bytes > 0);
	ck_assert_uint_eq(r->n_alphas, 14 * 8);
	ref_search(3, 4, an, ar, geno, sizeof(geno));
	ck_assert_msg(memcmp(r->alpha_normal, an, sizeof(an)) == 0 &&
		      memcmp(r->alpha_reduce, ar, sizeof(ar)) == 0,
		      "the daemon's alphas differ from the search run here");
	ck_assert_str_eq(r->genotype, geno);
	/* The text `rxgemm nas --genotype-file` reads. */
	ck_assert_msg(genotype_parse(r->genotype, strlen(r->genotype), &g, &err) == 0, "%s",
		      err.msg);
	rxg_search_result_free(r);
}
END_TEST

/* ---- resume ------------------------------------------------------------------------------ */

START_TEST(resume_equals_straight)
{
	struct rxg_search_args a;
	struct rxg_search_result *straight = NULL, *half = NULL, *rest = NULL;
	int rc;

	if (g_skip)
		return;
	tiny_args(&a, 9, 4);
	a.want_state = 1;
	rc = rxg_search(g_c, &a, NULL, NULL, &straight);
	ck_assert_msg(rc == RXG_OK, "%s", rxg_errmsg(g_c));
	tiny_args(&a, 9, 2);
	a.want_state = 1;
	rc = rxg_search(g_c, &a, NULL, NULL, &half);
	ck_assert_msg(rc == RXG_OK, "%s", rxg_errmsg(g_c));
	ck_assert(half->state && half->state_bytes == straight->state_bytes);
	/* Another seed: the state replaces all of it. */
	tiny_args(&a, 1234, 4);
	a.want_state = 1;
	a.resume_state = half->state;
	a.resume_bytes = half->state_bytes;
	/* The state is read as floats where it lies in the request (64 KiB or more): the
	 * library sends it after a pad that aligns it (SearchRequest.pad), so the daemon does
	 * not move it first. */
	ck_assert_uint_ge(half->state_bytes, 65536);
	int moved = daemon_run_log_count(&g_daemon, "request 12.25's ");
	rc = rxg_search(g_c, &a, NULL, NULL, &rest);
	ck_assert_msg(rc == RXG_OK, "%s", rxg_errmsg(g_c));
	ck_assert_uint_eq(rest->steps_done, 4);
	ck_assert_uint_eq(rest->n_curve, 2);
	ck_assert_uint_eq(rest->curve[0].step, 3);
	ck_assert_msg(memcmp(rest->state, straight->state, straight->state_bytes) == 0,
		      "resumed at step 2: the state at step 4 differs from a straight run's");
	ck_assert(memcmp(rest->alpha_normal, straight->alpha_normal,
			 straight->n_alphas * sizeof(float)) == 0);
	ck_assert_str_eq(rest->genotype, straight->genotype);
	/* progress_every's varint before it (none, 2 and 3 bytes) puts the state at three
	 * offsets of protobuf-c's layout, at least two off alignment: still never moved, and
	 * the same state at the end. */
	for (int i = 1; i < 3; i++) {
		struct rxg_search_result *again = NULL;

		a.progress_every = i == 1 ? 1 : 200;
		rc = rxg_search(g_c, &a, NULL, NULL, &again);
		ck_assert_msg(rc == RXG_OK, "%s", rxg_errmsg(g_c));
		ck_assert(memcmp(again->state, straight->state, straight->state_bytes) == 0);
		rxg_search_result_free(again);
	}
	ck_assert_int_eq(daemon_run_log_count(&g_daemon, "request 12.25's "), moved);
	/* The state into a shared buffer instead, then resumed from there. */
	{
		struct rxg_buffer *buf;
		struct rxg_search_result *r2 = NULL;

		ck_assert_int_eq(rxg_buffer_create(g_c, straight->state_bytes, &buf), RXG_OK);
		tiny_args(&a, 9, 2);
		a.state_buf = buf;
		a.state_len = straight->state_bytes;
		rc = rxg_search(g_c, &a, NULL, NULL, &r2);
		ck_assert_msg(rc == RXG_OK, "%s", rxg_errmsg(g_c));
		ck_assert(!r2->state && r2->state_bytes == straight->state_bytes);
		ck_assert(memcmp(rxg_buffer_ptr(buf), half->state, half->state_bytes) == 0);
		rxg_search_result_free(r2);
		ck_assert_int_eq(rxg_buffer_free(buf), RXG_OK);
	}
	rxg_search_result_free(straight);
	rxg_search_result_free(half);
	rxg_search_result_free(rest);
}
END_TEST

/* ---- cancel, sharing, leaving ------------------------------------------------------------ */

/* Wait for the first report of search id (failing if it ends first). */
static void first_report(rxg_client *c, uint64_t id)
{
	struct seen seen = { { 0 }, 0, false };
	struct rxg_search_result *r = NULL;

	while (seen.n == 0) {
		int rc = rxg_search_wait(c, id, -1, on_progress, &seen, &r);

		ck_assert_msg(rc == RXG_EAGAIN, "the search ended before its first report: %d %s",
			      rc, rxg_errmsg(c));
	}
}

/* A small GEMM on c against its answer by hand. */
static void small_gemm(rxg_client *c)
{
	float A[4] = { 1, 2, 3, 4 }, B[4] = { 5, 6, 7, 8 }, C[4] = { 0 };
	struct rxg_gemm_args g = { 0 };

	g.m = g.n = g.k = 2;
	g.alpha = 1;
	g.a = A;
	g.b = B;
	g.c = C;
	ck_assert_msg(rxg_gemm(c, &g, NULL) == RXG_OK, "%s", rxg_errmsg(c));
	/* Column-major: C = A B. */
	ck_assert(C[0] == 23 && C[1] == 34 && C[2] == 31 && C[3] == 46);
}

START_TEST(cancel_between_steps)
{
	struct rxg_search_args a;
	struct rxg_search_result *r = NULL;
	enum rxg_cancel_outcome outcome;
	uint64_t id;
	int rc;

	if (g_skip)
		return;
	tiny_args(&a, 5, 100000);
	a.progress_every = 1;
	ck_assert_int_eq(rxg_submit_search(g_c, &a, &id), RXG_OK);
	first_report(g_c, id);
	ck_assert_int_eq(rxg_cancel(g_c, id, &outcome), RXG_OK);
	ck_assert_int_ne(outcome, RXG_CANCEL_NOT_FOUND);
	while ((rc = rxg_search_wait(g_c, id, -1, NULL, NULL, &r)) == RXG_EAGAIN)
		;
	ck_assert_msg(rc == RXG_ECANCELLED, "%d %s", rc, rxg_errmsg(g_c));
	ck_assert(r == NULL);
	small_gemm(g_c);
}
END_TEST

START_TEST(gemm_served_meanwhile)
{
	struct rxg_search_args a;
	struct rxg_search_result *r = NULL;
	rxg_client *other;
	uint64_t id;
	int rc;

	if (g_skip)
		return;
	ck_assert_int_eq(rxg_connect(g_daemon.socket_path, "gemm-client", &other), RXG_OK);
	tiny_args(&a, 6, 100000);
	a.progress_every = 1;
	ck_assert_int_eq(rxg_submit_search(g_c, &a, &id), RXG_OK);
	first_report(g_c, id);
	/* The search has 99999 steps to go; the scheduler gives the GEMM's connection its
	 * turn between two of them. */
	small_gemm(other);
	/* Only a search still running ends cancelled: it had not finished. */
	ck_assert_int_eq(rxg_cancel(g_c, id, NULL), RXG_OK);
	while ((rc = rxg_search_wait(g_c, id, -1, NULL, NULL, &r)) == RXG_EAGAIN)
		;
	ck_assert_int_eq(rc, RXG_ECANCELLED);
	rxg_close(other);
}
END_TEST

/* A GEMM from another client, sent while a search is held in the middle of its first step,
 * is answered (in one of the step's pauses: the step cannot end while it is held, so no
 * report can have come), and the search then ends with the alphas it has without the
 * GEMM. */
START_TEST(gemm_in_a_pause)
{
	struct rxg_search_args a;
	struct rxg_search_result *r = NULL;
	struct seen seen = { { 0 }, 0, false };
	float an[14 * 8], ar[14 * 8];
	char geno[RXD_GENOTYPE_TEXT_MAX], hold[PATH_MAX], held[PATH_MAX];
	rxg_client *other;
	uint64_t id;
	int rc, fd, i;

	if (g_skip)
		return;
	snprintf(hold, sizeof(hold), "%s/hold", g_daemon.dir);
	snprintf(held, sizeof(held), "%s/held", g_daemon.dir);
	ck_assert_int_ge(fd = open(hold, O_WRONLY | O_CREAT | O_CLOEXEC, 0600), 0);
	close(fd);
	tiny_args(&a, 7, 2);
	a.progress_every = 1;
	ck_assert_int_eq(rxg_submit_search(g_c, &a, &id), RXG_OK);
	/* The worker says when it holds the search (the limit is only for a hang). */
	for (i = 0; i < 60000 && access(held, F_OK) != 0; i++)
		usleep(10000);
	ck_assert_msg(access(held, F_OK) == 0, "the search never reached a pause");
	ck_assert_int_eq(rxg_connect(g_daemon.socket_path, "gemm-client", &other), RXG_OK);
	small_gemm(other);
	small_gemm(other);
	/* Still held: no step has ended. */
	rc = rxg_search_wait(g_c, id, 0, on_progress, &seen, &r);
	ck_assert_msg(rc == RXG_EAGAIN && seen.n == 0, "rc %d, %d reports", rc, seen.n);
	unlink(hold);
	while ((rc = rxg_search_wait(g_c, id, -1, on_progress, &seen, &r)) == RXG_EAGAIN)
		;
	ck_assert_msg(rc == RXG_OK, "search: %s", rxg_errmsg(g_c));
	ck_assert_int_eq(seen.n, 2);
	ref_search(7, 2, an, ar, geno, sizeof(geno));
	ck_assert_msg(memcmp(r->alpha_normal, an, sizeof(an)) == 0 &&
		      memcmp(r->alpha_reduce, ar, sizeof(ar)) == 0,
		      "the alphas differ from the search run here after GEMMs in its pauses");
	rxg_search_result_free(r);
	rxg_close(other);
}
END_TEST

START_TEST(disconnect_cancels)
{
	struct rxg_search_args a;
	struct rxg_status *st0 = NULL, *st = NULL;
	rxg_client *leaver;
	uint64_t id;

	if (g_skip)
		return;
	ck_assert_int_eq(rxg_status(g_c, &st0), RXG_OK);
	ck_assert_int_eq(rxg_connect(g_daemon.socket_path, "leaver", &leaver), RXG_OK);
	tiny_args(&a, 8, 100000);
	a.progress_every = 1;
	ck_assert_int_eq(rxg_submit_search(leaver, &a, &id), RXG_OK);
	first_report(leaver, id);
	rxg_close(leaver);
	/* The daemon counts the search cancelled once it has ended it; it serves on. (The
	 * bound only keeps a broken daemon from holding the test for ever: each round waits
	 * for a reply.) */
	for (int round = 0;; round++) {
		ck_assert_msg(round < 100000, "the search of the client that left goes on");
		ck_assert_int_eq(rxg_status(g_c, &st), RXG_OK);
		if (st->jobs_cancelled > st0->jobs_cancelled && st->jobs_queued == 0)
			break;
		rxg_status_free(st);
		st = NULL;
		small_gemm(g_c);
	}
	ck_assert_uint_eq(st->jobs_cancelled, st0->jobs_cancelled + 1);
	rxg_status_free(st);
	rxg_status_free(st0);
	small_gemm(g_c);
}
END_TEST

/* ---- refusals ---------------------------------------------------------------------------- */

static void expect_refusal(const struct rxg_search_args *a, int code, const char *words)
{
	struct rxg_search_result *r = NULL;
	int rc = rxg_search(g_c, a, NULL, NULL, &r);

	ck_assert_msg(rc == code, "got %d (%s), expected %d", rc, rxg_errmsg(g_c), code);
	ck_assert_msg(strstr(rxg_errmsg(g_c), words), "'%s' lacks '%s'", rxg_errmsg(g_c), words);
	ck_assert(r == NULL);
}

START_TEST(refusals)
{
	struct rxg_search_args a;
	int32_t bad_labels[T_COUNT] = { 0, 1, 2, T_CLASSES };
	struct rxg_buffer *buf;

	if (g_skip)
		return;
	tiny_args(&a, 1, 2);
	a.batch = 8; /* more than the 4 images of each half */
	expect_refusal(&a, RXG_EINVAL, "train.count is 4");
	tiny_args(&a, 1, 2);
	a.train.labels = bad_labels;
	expect_refusal(&a, RXG_EINVAL, "train.labels[3] is 4");
	tiny_args(&a, 1, 2);
	a.classes = 1;
	expect_refusal(&a, RXG_EINVAL, "classes");
	tiny_args(&a, 1, 2);
	a.steps = 9;
	expect_refusal(&a, RXG_EINVAL, "steps is 9");
	tiny_args(&a, 1, 2);
	a.multiplier = 5;
	expect_refusal(&a, RXG_EINVAL, "multiplier is 5");
	tiny_args(&a, 1, 2);
	a.grad_clip = 0;
	expect_refusal(&a, RXG_EINVAL, "grad clip");
	tiny_args(&a, 1, 2);
	a.lr = INFINITY;
	expect_refusal(&a, RXG_EINVAL, "lr is not a finite number");
	/* A region too small for the state. */
	ck_assert_int_eq(rxg_buffer_create(g_c, 4096, &buf), RXG_OK);
	tiny_args(&a, 1, 2);
	a.state_buf = buf;
	a.state_len = 4096;
	expect_refusal(&a, RXG_EINVAL, "state_out's length is 4096 bytes");
	/* A state of another size (another network's). */
	tiny_args(&a, 1, 2);
	a.resume_state = rxg_buffer_ptr(buf);
	a.resume_bytes = 4096;
	expect_refusal(&a, RXG_EINVAL, "the resume state is 4096 bytes");
	ck_assert_int_eq(rxg_buffer_free(buf), RXG_OK);
	/* The daemon serves on. */
	small_gemm(g_c);
}
END_TEST

START_TEST(over_budget)
{
	struct rxg_search_args a;

	if (g_skip)
		return;
	tiny_args(&a, 1, 2);
	expect_refusal(&a, RXG_ETOOBIG, "more than the daemon's whole budget");
	small_gemm(g_c);
}
END_TEST

START_TEST(over_quota)
{
	struct rxg_search_args a;

	if (g_skip)
		return;
	tiny_args(&a, 1, 2);
	expect_refusal(&a, RXG_EQUOTA, "client's quota");
	small_gemm(g_c);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("search-daemon");
	TCase *tc;
	SRunner *sr;
	int failed;

	if (!getenv("RXGEMMD"))
		return DAEMON_RUN_SKIP;
	log_set_level(LOG_WARNING);
	make_data();
	tc = tcase_create("search");
	tcase_set_timeout(tc, 1200);
	tcase_add_unchecked_fixture(tc, setup_default, teardown);
	tcase_add_test(tc, refusals);
	tcase_add_test(tc, progress_and_reference);
	tcase_add_test(tc, resume_equals_straight);
	tcase_add_test(tc, cancel_between_steps);
	tcase_add_test(tc, gemm_served_meanwhile);
	tcase_add_test(tc, disconnect_cancels);
	suite_add_tcase(s, tc);
	tc = tcase_create("pauses");
	tcase_set_timeout(tc, 1200);
	tcase_add_unchecked_fixture(tc, setup_hold, teardown);
	tcase_add_test(tc, gemm_in_a_pause);
	suite_add_tcase(s, tc);
	tc = tcase_create("budget");
	tcase_set_timeout(tc, 600);
	tcase_add_unchecked_fixture(tc, setup_budget, teardown);
	tcase_add_test(tc, over_budget);
	suite_add_tcase(s, tc);
	tc = tcase_create("quota");
	tcase_set_timeout(tc, 600);
	tcase_add_unchecked_fixture(tc, setup_quota, teardown);
	tcase_add_test(tc, over_quota);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (g_ref_ready) {
		nasgrad_fini(&g_gr);
		nasops_fini(&g_ops);
		gemm_fini(&g_eng);
		device_close(&g_dev);
	}
	if (g_skip)
		return DAEMON_RUN_SKIP;
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test-sched.c: the scheduler's policy (daemon/sched.c) with fake jobs and a fake clock.
 *
 * Jobs are plain structs with a cost; "running" one advances a counter by its cost (a
 * device doing one FLOP per tick), so every figure here is exact and nothing depends on
 * timing. The fairness bounds asserted are DRR's: within one job plus one quantum. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

#define POOL 4096

struct fjob {
	struct rxd_sched_job sj; /* first: the scheduler hands this back */
	int tag;
};

static struct fjob pool[POOL];
static size_t pool_used;

static struct fjob *fj_new(uint32_t owner, uint64_t id, uint64_t cost, unsigned prio,
			   uint64_t deadline)
{
	struct fjob *f;

	ck_assert_uint_lt(pool_used, POOL);
	f = &pool[pool_used++];
	memset(f, 0, sizeof(*f));
	f->sj.owner = owner;
	f->sj.request_id = id;
	f->sj.cost = cost;
	f->sj.priority = prio;
	f->sj.deadline_ns = deadline;
	return f;
}

static void submit_ok(struct rxd_sched *s, uint32_t owner, uint64_t id, uint64_t cost,
		      unsigned prio, uint64_t deadline)
{
	struct fjob *f = fj_new(owner, id, cost, prio, deadline);
	int ret = sched_submit(s, &f->sj);

	ck_assert_msg(ret == 0, "submit owner %u id %llu: %d", owner, (unsigned long long)id, ret);
}

static size_t list_len(const struct rxd_sched_job *j)
{
	size_t n = 0;

	for (; j; j = j->next)
		n++;
	return n;
}

static void setup(void)
{
	pool_used = 0;
}

START_TEST(test_one_client_fifo)
{
	struct rxd_sched s;

	sched_init(&s, 0, 0, 10);
	for (uint64_t i = 1; i <= 20; i++)
		submit_ok(&s, 7, i, (i * 37) % 101 + 1, 0, 0);
	for (uint64_t i = 1; i <= 20; i++) {
		struct rxd_sched_job *j = sched_next(&s);

		ck_assert_ptr_nonnull(j);
		ck_assert_uint_eq(j->request_id, i);
	}
	ck_assert_ptr_null(sched_next(&s));
	sched_fini(&s);
}
END_TEST

/* Owners that always have work waiting, each with its own job size; run until the clock
 * reaches horizon and return the FLOPs each was served. */
static void run_backlogged(struct rxd_sched *s, size_t n, const uint64_t *costs,
			   uint64_t horizon, uint64_t *served)
{
	uint64_t clock = 0, next_id = 1;

	memset(served, 0, n * sizeof(*served));
	for (size_t i = 0; i < n; i++)
		for (int q = 0; q < 3; q++)
			submit_ok(s, (uint32_t)i + 1, next_id++, costs[i], 0, 0);
	while (clock < horizon) {
		struct rxd_sched_job *j = sched_next(s);

		ck_assert_ptr_nonnull(j);
		clock += j->cost;
		served[j->owner - 1] += j->cost;
		/* Keep the owner backlogged: the job served comes back as a new one. */
		j->request_id = next_id++;
		ck_assert_int_eq(sched_submit(s, j), 0);
	}
}

START_TEST(test_equal_clients_equal_shares)
{
	struct rxd_sched s;
	uint64_t costs[3] = { 1000, 1000, 1000 }, served[3];
	uint64_t quantum = 300, horizon = 3000000;

	sched_init(&s, 0, 0, quantum);
	run_backlogged(&s, 3, costs, horizon, served);
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++) {
			uint64_t d = served[i] > served[k] ? served[i] - served[k]
							   : served[k] - served[i];

			ck_assert_msg(d <= 1000 + quantum, "owner %d served %llu, owner %d %llu",
				      i + 1, (unsigned long long)served[i], k + 1,
				      (unsigned long long)served[k]);
		}
	sched_fini(&s);
}
END_TEST

/* Huge, middling and tiny jobs: the FLOPs served come out equal, not the job counts. */
START_TEST(test_unequal_jobs_equal_flops)
{
	struct rxd_sched s;
	uint64_t costs[3] = { 100000, 730, 3 }, served[3];
	uint64_t quantum = 500, horizon = 30000000, total = 0;

	sched_init(&s, 0, 0, quantum);
	run_backlogged(&s, 3, costs, horizon, served);
	for (int i = 0; i < 3; i++)
		total += served[i];
	for (int i = 0; i < 3; i++) {
		/* Each a third, within the biggest job and a quantum. */
		uint64_t third = total / 3;
		uint64_t d = served[i] > third ? served[i] - third : third - served[i];

		ck_assert_msg(d <= 100000 + quantum, "owner %d (jobs of %llu) served %llu of %llu",
			      i + 1, (unsigned long long)costs[i], (unsigned long long)served[i],
			      (unsigned long long)total);
	}
	sched_fini(&s);
}
END_TEST

/* A client queues a long stream of huge jobs; another then queues small ones. In FIFO
 * order they would all wait for the whole stream; here they all run before the stream's
 * second job. */
START_TEST(test_small_not_starved_by_huge)
{
	struct rxd_sched s;
	const uint64_t huge = 1ull << 40, small = 1ull << 20;
	int small_seen = 0, huge_seen = 0;

	sched_init(&s, 0, 0, RXD_SCHED_QUANTUM);
	for (uint64_t i = 1; i <= 100; i++)
		submit_ok(&s, 1, i, huge, 0, 0);
	for (uint64_t i = 1; i <= 10; i++)
		submit_ok(&s, 2, 1000 + i, small, 0, 0);
	for (int n = 0; n < 11; n++) {
		struct rxd_sched_job *j = sched_next(&s);

		ck_assert_ptr_nonnull(j);
		if (j->owner == 2)
			small_seen++;
		else
			huge_seen++;
	}
	ck_assert_int_eq(small_seen, 10);
	ck_assert_int_eq(huge_seen, 1);
	sched_fini(&s);
}
END_TEST

/* The daemon's case: the stream's first job is running already (taken out) when the small
 * ones arrive, and its owner keeps queueing while they wait. The small ones still all run
 * before the stream's next job, and each of the stream's jobs after that alternates with
 * nothing to starve: the small owner's queue is empty then. */
START_TEST(test_small_arrive_while_huge_runs)
{
	struct rxd_sched s;
	const uint64_t huge = sched_cost(2ull * 384 * 384 * 384);
	const uint64_t small = sched_cost(2ull * 64 * 48 * 80);
	struct rxd_sched_job *j;

	sched_init(&s, 0, 0, RXD_SCHED_QUANTUM);
	for (uint64_t i = 1; i <= 5; i++)
		submit_ok(&s, 1, i, huge, 0, 0);
	j = sched_next(&s);
	ck_assert_ptr_nonnull(j);
	ck_assert_uint_eq(j->request_id, 1); /* alone: it runs at once */
	for (uint64_t i = 1; i <= 6; i++)
		submit_ok(&s, 2, 100 + i, small, 0, 0);
	submit_ok(&s, 1, 6, huge, 0, 0);
	for (uint64_t i = 1; i <= 6; i++) {
		j = sched_next(&s);
		ck_assert_ptr_nonnull(j);
		ck_assert_msg(j->owner == 2 && j->request_id == 100 + i,
			      "pick %llu: owner %u job %llu", (unsigned long long)i, j->owner,
			      (unsigned long long)j->request_id);
	}
	for (uint64_t i = 2; i <= 6; i++) {
		j = sched_next(&s);
		ck_assert_ptr_nonnull(j);
		ck_assert_uint_eq(j->owner, 1);
		ck_assert_uint_eq(j->request_id, i);
	}
	ck_assert_ptr_null(sched_next(&s));
	sched_fini(&s);
}
END_TEST

/* A job far bigger than the quantum is found in one step, not after 2^40 empty turns. */
START_TEST(test_huge_cost_small_quantum)
{
	struct rxd_sched s;
	struct rxd_sched_job *j;

	sched_init(&s, 0, 0, 1);
	submit_ok(&s, 1, 1, RXD_SCHED_MAX_COST, 0, 0);
	submit_ok(&s, 2, 2, 1ull << 50, 0, 0);
	submit_ok(&s, 3, 3, UINT64_MAX, 0, 0); /* capped */
	j = sched_next(&s);
	ck_assert_ptr_nonnull(j);
	ck_assert_uint_eq(j->request_id, 2); /* the cheapest is ready first */
	ck_assert_ptr_nonnull(sched_next(&s));
	ck_assert_ptr_nonnull(sched_next(&s));
	ck_assert_ptr_null(sched_next(&s));
	ck_assert_uint_eq(sched_cost(UINT64_MAX), RXD_SCHED_MAX_COST);
	ck_assert_uint_eq(sched_cost(0), RXD_SCHED_JOB_OVERHEAD);
	sched_fini(&s);
}
END_TEST

START_TEST(test_priorities)
{
	struct rxd_sched s;
	uint64_t order[8];
	int a = 0, b = 0;

	sched_init(&s, 0, 0, 100);
	submit_ok(&s, 1, 1, 50, 0, 0);
	submit_ok(&s, 1, 2, 50, 0, 0);
	submit_ok(&s, 2, 3, 50, 1, 0);
	submit_ok(&s, 3, 4, 50, 3, 0);
	submit_ok(&s, 3, 5, 50, 3, 0);
	submit_ok(&s, 4, 6, 50, 3, 0);
	submit_ok(&s, 4, 7, 50, 3, 0);
	submit_ok(&s, 2, 8, 50, 2, 0);
	for (int i = 0; i < 8; i++) {
		struct rxd_sched_job *j = sched_next(&s);

		ck_assert_ptr_nonnull(j);
		order[i] = j->request_id;
	}
	/* Level 3 first, shared by owners 3 and 4; then 2, 1, 0. */
	for (int i = 0; i < 4; i++) {
		ck_assert_msg(order[i] >= 4 && order[i] <= 7, "position %d: job %llu", i,
			      (unsigned long long)order[i]);
		if (order[i] <= 5)
			a++;
		else
			b++;
	}
	ck_assert_int_eq(a, 2);
	ck_assert_int_eq(b, 2);
	ck_assert_uint_eq(order[4], 8);
	ck_assert_uint_eq(order[5], 3);
	ck_assert_uint_eq(order[6], 1);
	ck_assert_uint_eq(order[7], 2);
	/* A level out of range is refused. */
	{
		struct fjob *f = fj_new(1, 9, 1, RXD_SCHED_LEVELS, 0);
		ck_assert_int_eq(sched_submit(&s, &f->sj), -EINVAL);
	}
	sched_fini(&s);
}
END_TEST

/* A higher level that arrives later still goes first; a lower one waits however long. */
START_TEST(test_priority_preempts_queue)
{
	struct rxd_sched s;
	struct rxd_sched_job *j;

	sched_init(&s, 0, 0, 10);
	for (uint64_t i = 1; i <= 5; i++)
		submit_ok(&s, 1, i, 5, 0, 0);
	j = sched_next(&s);
	ck_assert_uint_eq(j->request_id, 1);
	submit_ok(&s, 2, 100, 1000, 1, 0);
	j = sched_next(&s);
	ck_assert_uint_eq(j->request_id, 100);
	j = sched_next(&s);
	ck_assert_uint_eq(j->request_id, 2);
	sched_fini(&s);
}
END_TEST

START_TEST(test_deadlines)
{
	struct rxd_sched s;
	struct rxd_sched_job *list, *j;
	size_t n;

	sched_init(&s, 0, 0, 10);
	submit_ok(&s, 1, 1, 5, 0, 1000);
	submit_ok(&s, 1, 2, 5, 0, 0);
	submit_ok(&s, 2, 3, 5, 2, 2000);
	submit_ok(&s, 2, 4, 5, 0, 1500);
	submit_ok(&s, 3, 5, 5, 0, 999);
	ck_assert_uint_eq(sched_next_deadline(&s), 999);
	/* Nothing is due yet. */
	list = sched_expire(&s, 998, &n);
	ck_assert_ptr_null(list);
	ck_assert_uint_eq(n, 0);
	/* At 1000: the jobs due at 999 and 1000 (a deadline reached counts as passed). */
	list = sched_expire(&s, 1000, &n);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(list_len(list), 2);
	for (j = list; j; j = j->next)
		ck_assert(j->request_id == 1 || j->request_id == 5);
	ck_assert_uint_eq(sched_next_deadline(&s), 1500);
	ck_assert_uint_eq(sched_client_queued(&s, 3), 0);
	/* At 1600 job 4 is due; job 3 (level 2) is next to run, job 2 waits for ever. */
	list = sched_expire(&s, 1600, &n);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(list->request_id, 4);
	j = sched_next(&s);
	ck_assert_uint_eq(j->request_id, 3);
	ck_assert_uint_eq(sched_next_deadline(&s), 0);
	list = sched_expire(&s, UINT64_MAX, &n);
	ck_assert_uint_eq(n, 0);
	j = sched_next(&s);
	ck_assert_uint_eq(j->request_id, 2);
	ck_assert_ptr_null(sched_next(&s));
	{
		struct rxd_sched_stats st;
		sched_stats(&s, &st);
		ck_assert_uint_eq(st.expired, 3);
		ck_assert_uint_eq(st.queued, 0);
		ck_assert_uint_eq(st.clients, 0);
	}
	sched_fini(&s);
}
END_TEST

/* Expiring every job of an owner at once frees it; the others keep their places. */
START_TEST(test_expire_whole_client)
{
	struct rxd_sched s;
	size_t n;

	sched_init(&s, 0, 0, 10);
	for (uint64_t i = 1; i <= 4; i++)
		submit_ok(&s, 1, i, 5, (unsigned)(i % 4), 10);
	submit_ok(&s, 2, 9, 5, 0, 0);
	ck_assert_uint_eq(list_len(sched_expire(&s, 10, &n)), 4);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(sched_client_queued(&s, 1), 0);
	ck_assert_uint_eq(sched_next(&s)->request_id, 9);
	ck_assert_ptr_null(sched_next(&s));
	sched_fini(&s);
}
END_TEST

START_TEST(test_bounds_busy)
{
	struct rxd_sched s;
	struct rxd_sched_stats st;
	struct fjob *f;

	sched_init(&s, 5, 3, 10);
	for (uint64_t i = 1; i <= 3; i++)
		submit_ok(&s, 1, i, 5, 0, 0);
	f = fj_new(1, 4, 5, 0, 0);
	ck_assert_int_eq(sched_submit(&s, &f->sj), -EBUSY);
	/* Another priority level counts against the same bound. */
	f = fj_new(1, 5, 5, 3, 0);
	ck_assert_int_eq(sched_submit(&s, &f->sj), -EBUSY);
	submit_ok(&s, 2, 1, 5, 0, 0);
	submit_ok(&s, 2, 2, 5, 0, 0);
	f = fj_new(2, 3, 5, 0, 0);
	ck_assert_int_eq(sched_submit(&s, &f->sj), -ENOBUFS);
	f = fj_new(3, 1, 5, 0, 0);
	ck_assert_int_eq(sched_submit(&s, &f->sj), -ENOBUFS);
	sched_stats(&s, &st);
	ck_assert_uint_eq(st.queued, 5);
	ck_assert_uint_eq(st.clients, 2);
	ck_assert_uint_eq(st.rejected_client, 2);
	ck_assert_uint_eq(st.rejected_total, 2);
	ck_assert_uint_eq(st.max_queue, 5);
	ck_assert_uint_eq(st.client_max_queue, 3);
	/* One leaves: room again, for anyone under their own bound. */
	ck_assert_ptr_nonnull(sched_next(&s));
	submit_ok(&s, 3, 1, 5, 0, 0);
	/* New bounds apply to new submissions only. */
	sched_set_limits(&s, 0, 1);
	f = fj_new(3, 2, 5, 0, 0);
	ck_assert_int_eq(sched_submit(&s, &f->sj), -EBUSY);
	submit_ok(&s, 4, 1, 5, 0, 0);
	sched_stats(&s, &st);
	ck_assert_uint_eq(st.queued, 6);
	ck_assert_ptr_nonnull(sched_take_all(&s));
	sched_stats(&s, &st);
	ck_assert_uint_eq(st.queued, 0);
	ck_assert_uint_eq(st.clients, 0);
	ck_assert_uint_eq(st.cancelled, 0);
	sched_fini(&s);
}
END_TEST

START_TEST(test_cancel)
{
	struct rxd_sched s;
	struct rxd_sched_job *j;
	struct rxd_sched_stats st;

	sched_init(&s, 0, 0, 100);
	for (uint64_t i = 1; i <= 4; i++)
		submit_ok(&s, 1, i, 10, 0, 0);
	submit_ok(&s, 2, 2, 10, 0, 0);
	/* Owner 1's job 2, not owner 2's. */
	j = sched_cancel(&s, 1, 2);
	ck_assert_ptr_nonnull(j);
	ck_assert_uint_eq(j->owner, 1);
	ck_assert_uint_eq(j->request_id, 2);
	ck_assert_ptr_null(sched_cancel(&s, 1, 2)); /* gone */
	ck_assert_ptr_null(sched_cancel(&s, 1, 99));
	ck_assert_ptr_null(sched_cancel(&s, 5, 1));
	/* The tail too, then the rest in order. */
	ck_assert_ptr_nonnull(sched_cancel(&s, 1, 4));
	submit_ok(&s, 1, 5, 10, 0, 0);
	ck_assert_uint_eq(sched_client_queued(&s, 1), 3);
	{
		uint64_t want[] = { 1, 3, 5 };
		int k = 0;

		while ((j = sched_next(&s)))
			if (j->owner == 1)
				ck_assert_uint_eq(j->request_id, want[k++]);
		ck_assert_int_eq(k, 3);
	}
	sched_stats(&s, &st);
	ck_assert_uint_eq(st.cancelled, 2);
	sched_fini(&s);
}
END_TEST

START_TEST(test_remove_client)
{
	struct rxd_sched s;
	struct rxd_sched_job *list, *j;
	struct rxd_sched_stats st;

	sched_init(&s, 10, 0, 100);
	for (uint64_t i = 1; i <= 6; i++)
		submit_ok(&s, 1, i, 10, (unsigned)(i % 3), 0);
	for (uint64_t i = 1; i <= 3; i++)
		submit_ok(&s, 2, i, 10, 0, 0);
	/* Owner 1 is in the middle of its turn when it goes. */
	j = sched_next(&s);
	ck_assert_uint_eq(j->owner, 1);
	list = sched_remove_client(&s, 1);
	ck_assert_uint_eq(list_len(list), 5);
	for (j = list; j; j = j->next)
		ck_assert_uint_eq(j->owner, 1);
	ck_assert_ptr_null(sched_remove_client(&s, 1));
	ck_assert_uint_eq(sched_client_queued(&s, 1), 0);
	sched_stats(&s, &st);
	ck_assert_uint_eq(st.queued, 3);
	ck_assert_uint_eq(st.clients, 1);
	ck_assert_uint_eq(st.cancelled, 5);
	/* The total bound counts only what is left. */
	for (uint64_t i = 1; i <= 7; i++)
		submit_ok(&s, 3, i, 10, 0, 0);
	for (int n = 0; n < 10; n++) {
		j = sched_next(&s);
		ck_assert_ptr_nonnull(j);
		ck_assert_uint_ne(j->owner, 1);
	}
	ck_assert_ptr_null(sched_next(&s));
	sched_fini(&s);
}
END_TEST

/* An owner whose queue ran empty starts again from nothing: idle time earns no credit to
 * spend later against a backlogged owner. */
/* A job parked for memory (sched_park) is passed over: the others run, its owner's later
 * ones too; it still counts as queued, can expire and be cancelled; once unparked it runs
 * first of its owner's, its turn not charged. */
START_TEST(test_park)
{
	struct rxd_sched s;
	struct rxd_sched_stats st;
	struct rxd_sched_job *j, *big;
	size_t n;

	sched_init(&s, 0, 0, 100);
	submit_ok(&s, 1, 1, 50, 0, 0);
	submit_ok(&s, 1, 2, 50, 0, 0);
	submit_ok(&s, 2, 3, 50, 0, 0);
	big = sched_next(&s);
	ck_assert_uint_eq(big->request_id, 1);
	ck_assert_int_eq(sched_park(&s, big), 0);
	sched_stats(&s, &st);
	ck_assert_uint_eq(st.queued, 3);
	ck_assert_uint_eq(st.parked, 1);
	/* Owner 1's second job and owner 2's run; the parked one does not. */
	for (int i = 0; i < 2; i++) {
		j = sched_next(&s);
		ck_assert_ptr_nonnull(j);
		ck_assert_uint_ne(j->request_id, 1);
	}
	ck_assert_ptr_null(sched_next(&s));
	sched_stats(&s, &st);
	ck_assert_uint_eq(st.queued, 1);
	ck_assert_uint_eq(st.parked, 1);
	/* Memory came back: it runs. */
	sched_unpark_all(&s);
	ck_assert_uint_eq(s.parked, 0);
	ck_assert_ptr_eq(sched_next(&s), big);
	ck_assert_uint_eq(s.queued, 0);

	/* Parked, it can be cancelled, and it expires. */
	submit_ok(&s, 3, 10, 10, 0, 0);
	submit_ok(&s, 4, 11, 10, 2, 500);
	j = sched_next(&s);
	ck_assert_uint_eq(j->request_id, 11); /* the higher priority first */
	ck_assert_int_eq(sched_park(&s, j), 0);
	j = sched_next(&s);
	ck_assert_uint_eq(j->request_id, 10);
	ck_assert_int_eq(sched_park(&s, j), 0);
	ck_assert_uint_eq(s.parked, 2);
	ck_assert_ptr_null(sched_next(&s));
	ck_assert_uint_eq(sched_next_deadline(&s), 500);
	j = sched_expire(&s, 600, &n);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(j->request_id, 11);
	ck_assert_uint_eq(s.parked, 1);
	j = sched_cancel(&s, 3, 10);
	ck_assert_ptr_nonnull(j);
	ck_assert(!j->parked);
	ck_assert_uint_eq(s.parked, 0);
	ck_assert_uint_eq(s.queued, 0);
	sched_fini(&s);
}
END_TEST

/* In a long job's pause only nestable jobs are taken, passed over the others as parked
 * ones are (an owner's later nestable job too), fairly between owners; the others stay
 * queued for sched_next, in their order. */
START_TEST(test_next_nestable)
{
	struct rxd_sched s;
	struct fjob *f;
	struct rxd_sched_job *j;
	int from[3] = { 0 };

	sched_init(&s, 0, 0, 100);
	f = fj_new(1, 1, 1000, 0, 0); /* a search's turn: not nestable */
	ck_assert_int_eq(sched_submit(&s, &f->sj), 0);
	for (uint64_t id = 2; id < 8; id++) {
		f = fj_new(id < 5 ? 1 : 2, id, 50, 0, 0);
		f->sj.nestable = true;
		ck_assert_int_eq(sched_submit(&s, &f->sj), 0);
	}
	f = fj_new(2, 8, 50, 0, 0); /* another owner's NAS job: not nestable */
	ck_assert_int_eq(sched_submit(&s, &f->sj), 0);
	/* The first four alternate between the owners (equal costs, DRR). */
	for (int i = 0; i < 4; i++) {
		ck_assert_ptr_nonnull(j = sched_next_nestable(&s));
		ck_assert(j->nestable);
		from[j->owner]++;
	}
	ck_assert_int_eq(from[1], 2);
	ck_assert_int_eq(from[2], 2);
	for (int i = 0; i < 2; i++) {
		ck_assert_ptr_nonnull(j = sched_next_nestable(&s));
		ck_assert(j->nestable);
	}
	ck_assert_ptr_null(sched_next_nestable(&s));
	ck_assert_uint_eq(s.queued, 2);
	ck_assert(!s.nestable_only);
	/* The rest, for the main loop. */
	j = sched_next(&s);
	ck_assert_ptr_nonnull(j);
	ck_assert(!j->nestable);
	ck_assert_ptr_nonnull(j = sched_next(&s));
	ck_assert(!j->nestable);
	ck_assert_ptr_null(sched_next(&s));
	sched_fini(&s);
}
END_TEST

/* Two owners with endless work, one of them with a parked job at its head: the other
 * gets every turn meanwhile; after unparking, the shares are equal again (DRR's bound). */
START_TEST(test_park_fair)
{
	struct rxd_sched s;
	struct rxd_sched_job *j, *parked;
	uint64_t served[2] = { 0, 0 };

	sched_init(&s, 0, 0, 64);
	for (uint64_t i = 0; i < 200; i++) {
		submit_ok(&s, 1, 1000 + i, 100, 0, 0);
		submit_ok(&s, 2, 2000 + i, 100, 0, 0);
	}
	parked = sched_next(&s);
	ck_assert_int_eq(sched_park(&s, parked), 0);
	/* Owner 1's later jobs still run beside owner 2's: the park holds back one job. */
	for (int i = 0; i < 100; i++) {
		j = sched_next(&s);
		ck_assert_ptr_ne(j, parked);
		served[j->owner - 1] += j->cost;
	}
	ck_assert_uint_le(served[0] > served[1] ? served[0] - served[1] : served[1] - served[0],
			  100 + 64);
	sched_unpark_all(&s);
	served[0] = served[1] = 0;
	for (int i = 0; i < 100; i++) {
		j = sched_next(&s);
		served[j->owner - 1] += j->cost;
	}
	ck_assert_uint_le(served[0] > served[1] ? served[0] - served[1] : served[1] - served[0],
			  100 + 64);
	/* Everything parked: nothing to run, the queue intact. */
	while ((j = sched_next(&s)))
		ck_assert_int_eq(sched_park(&s, j), 0);
	ck_assert_uint_eq(s.parked, s.queued);
	ck_assert_uint_eq(s.queued, 400 - 200);
	ck_assert_uint_eq(list_len(sched_take_all(&s)), 200);
	ck_assert_uint_eq(s.parked, 0);
	sched_fini(&s);
}
END_TEST

START_TEST(test_no_credit_for_idle)
{
	struct rxd_sched s;
	struct rxd_sched_job *j;

	sched_init(&s, 0, 0, 1000);
	/* Owner 1 is served a cheap job out of a fresh quantum, then has nothing. */
	submit_ok(&s, 1, 1, 1, 0, 0);
	ck_assert_uint_eq(sched_next(&s)->request_id, 1);
	/* Owner 2 is backlogged with jobs of 600; owner 1 comes back with jobs of 600. */
	submit_ok(&s, 2, 10, 600, 0, 0);
	submit_ok(&s, 2, 11, 600, 0, 0);
	submit_ok(&s, 1, 2, 600, 0, 0);
	submit_ok(&s, 1, 3, 600, 0, 0);
	/* Had owner 1 kept its 999 it would run twice in a row; it alternates instead. */
	j = sched_next(&s);
	ck_assert_uint_eq(j->owner, 2);
	j = sched_next(&s);
	ck_assert_uint_eq(j->owner, 1);
	j = sched_next(&s);
	ck_assert_uint_eq(j->owner, 2);
	j = sched_next(&s);
	ck_assert_uint_eq(j->owner, 1);
	sched_fini(&s);
}
END_TEST

static Suite *sched_suite(void)
{
	Suite *s = suite_create("sched");
	TCase *tc = tcase_create("policy");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_one_client_fifo);
	tcase_add_test(tc, test_equal_clients_equal_shares);
	tcase_add_test(tc, test_unequal_jobs_equal_flops);
	tcase_add_test(tc, test_small_arrive_while_huge_runs);
	tcase_add_test(tc, test_small_not_starved_by_huge);
	tcase_add_test(tc, test_huge_cost_small_quantum);
	tcase_add_test(tc, test_priorities);
	tcase_add_test(tc, test_priority_preempts_queue);
	tcase_add_test(tc, test_deadlines);
	tcase_add_test(tc, test_expire_whole_client);
	tcase_add_test(tc, test_bounds_busy);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_remove_client);
	tcase_add_test(tc, test_no_credit_for_idle);
	tcase_add_test(tc, test_park);
	tcase_add_test(tc, test_park_fair);
	tcase_add_test(tc, test_next_nestable);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(sched_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

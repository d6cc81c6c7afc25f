/* sched.c: which queued job the device worker runs next.
 *
 * Pure logic: the caller (worker.c) holds the lock, passes the time in and runs the jobs;
 * tests/test-sched.c drives it with a fake clock and fake jobs.
 *
 * Why this policy. One device serves every process of the machine, one job at a time. A
 * first-come queue lets a process that queues a hundred 8192^3 GEMMs make everyone else
 * wait minutes for a 64^3 one. So:
 *
 * - Each connection (owner) has its own queue, and the owners take turns by deficit round
 *   robin (Shreedhar and Varghese): on its turn an owner's deficit grows by a quantum of
 *   FLOPs, and it runs its next jobs while their cost fits what it has; what is left
 *   carries to its next turn, so a job bigger than the quantum runs after enough turns.
 *   Served work, counted in FLOPs, is then shared equally between owners with work waiting,
 *   whatever their jobs' sizes, to within one job plus one quantum. An owner whose queue
 *   runs empty loses its deficit: idle time earns no credit.
 * - A job costs its FLOPs plus RXD_SCHED_JOB_OVERHEAD, the fixed price of a job (a reply,
 *   transfers, a launch), so that a stream of 1 x 1 x 1 GEMMs is not free.
 * - The quantum is small next to a large GEMM, which keeps the interleaving fine; the
 *   turns in which nobody's deficit reaches its next job's cost are skipped in one step
 *   (sched_next), so a small quantum costs no time.
 * - Priority levels are strict: a waiting job of a higher level always runs first; DRR
 *   shares each level between its owners. Priorities are the clients' own word: the
 *   daemon serves one machine's processes, which may all ask for the top level, and then
 *   get the fairness of one level again.
 * - A deadline bounds a job's time in the queue: past it the job is handed back unrun
 *   (the client has stopped waiting for it, and the device's time is better spent on
 *   jobs someone still wants). A running job is never stopped for its deadline.
 * - Bounds on the jobs waiting per owner and in total keep one client from filling the
 *   daemon's memory with queued matrices: over one, a submission is refused at once
 *   (the client sees BUSY and can retry), never held.
 * - A job that admission (admit.c) found does not fit the device memory now, but will
 *   once device tensors are freed, is parked: it keeps its place at the head of its
 *   owner's queue, its turn's cost given back, and every round passes over it, so that
 *   jobs that fit (its owner's later ones too) run meanwhile rather than wait behind it.
 *   When memory is freed every parked job is eligible again. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

static uint64_t sched_add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

void sched_init(struct rxd_sched *s, uint32_t max_queue, uint32_t client_max_queue,
		uint64_t quantum)
{
	memset(s, 0, sizeof(*s));
	s->max_queue = max_queue;
	s->client_max_queue = client_max_queue;
	s->quantum = quantum ? quantum : RXD_SCHED_QUANTUM;
}

void sched_fini(struct rxd_sched *s)
{
	struct rxd_sched_client *c = s->clients, *next;

	for (; c; c = next) {
		next = c->next;
		free(c);
	}
	memset(s, 0, sizeof(*s));
}

void sched_set_limits(struct rxd_sched *s, uint32_t max_queue, uint32_t client_max_queue)
{
	s->max_queue = max_queue;
	s->client_max_queue = client_max_queue;
}

uint64_t sched_cost(uint64_t flops)
{
	uint64_t cost = sched_add_sat(flops, RXD_SCHED_JOB_OVERHEAD);

	return cost > RXD_SCHED_MAX_COST ? RXD_SCHED_MAX_COST : cost;
}

static struct rxd_sched_client *sched_find(const struct rxd_sched *s, uint32_t owner)
{
	struct rxd_sched_client *c;

	for (c = s->clients; c && c->owner != owner; c = c->next)
		;
	return c;
}

uint32_t sched_client_queued(const struct rxd_sched *s, uint32_t owner)
{
	struct rxd_sched_client *c = sched_find(s, owner);

	return c ? c->queued : 0;
}

static void sched_ring_push(struct rxd_sched *s, struct rxd_sched_client *c, unsigned lvl)
{
	c->ring_next[lvl] = NULL;
	if (s->ring_tail[lvl])
		s->ring_tail[lvl]->ring_next[lvl] = c;
	else
		s->ring_head[lvl] = c;
	s->ring_tail[lvl] = c;
}

static void sched_ring_remove(struct rxd_sched *s, struct rxd_sched_client *c, unsigned lvl)
{
	struct rxd_sched_client **pp = &s->ring_head[lvl], *prev = NULL;

	while (*pp && *pp != c) {
		prev = *pp;
		pp = &(*pp)->ring_next[lvl];
	}
	if (!*pp)
		return;
	*pp = c->ring_next[lvl];
	if (s->ring_tail[lvl] == c)
		s->ring_tail[lvl] = prev;
	c->ring_next[lvl] = NULL;
}

/* The head of the level's round goes to its end. */
static void sched_ring_rotate(struct rxd_sched *s, unsigned lvl)
{
	struct rxd_sched_client *c = s->ring_head[lvl];

	if (!c || !c->ring_next[lvl])
		return;
	s->ring_head[lvl] = c->ring_next[lvl];
	sched_ring_push(s, c, lvl);
}

/* j, queued at lvl of c behind prev (NULL: j is the head), leaves. An owner's level that
 * runs empty leaves the round and loses its deficit; an owner with nothing left is freed. */
static void sched_unlink(struct rxd_sched *s, struct rxd_sched_client *c, unsigned lvl,
			 struct rxd_sched_job *prev, struct rxd_sched_job *j)
{
	if (prev)
		prev->next = j->next;
	else
		c->head[lvl] = j->next;
	if (c->tail[lvl] == j)
		c->tail[lvl] = prev;
	j->next = NULL;
	c->queued--;
	s->queued--;
	if (j->parked) {
		j->parked = false;
		s->parked--;
	}
	if (!c->head[lvl]) {
		sched_ring_remove(s, c, lvl);
		c->deficit[lvl] = 0;
		c->granted[lvl] = false;
	}
	if (c->queued == 0) {
		struct rxd_sched_client **pp = &s->clients;

		while (*pp != c)
			pp = &(*pp)->next;
		*pp = c->next;
		free(c);
	}
}

/* sched_submit, within the bounds when bounded. */
static int sched_enqueue(struct rxd_sched *s, struct rxd_sched_job *j, bool bounded)
{
	struct rxd_sched_client *c;
	unsigned lvl = j->priority;

	if (lvl >= RXD_SCHED_LEVELS)
		return -EINVAL;
	if (bounded && s->max_queue && s->queued >= s->max_queue) {
		s->rejected_total++;
		return -ENOBUFS;
	}
	c = sched_find(s, j->owner);
	if (bounded && s->client_max_queue && c && c->queued >= s->client_max_queue) {
		s->rejected_client++;
		return -EBUSY; /* a queue bound; -EDQUOT is the budget's quota (budget.c) */
	}
	if (!c) {
		if (!(c = calloc(1, sizeof(*c))))
			return -ENOMEM;
		c->owner = j->owner;
		c->next = s->clients;
		s->clients = c;
	}
	j->parked = false;
	if (j->cost == 0)
		j->cost = 1;
	else if (j->cost > RXD_SCHED_MAX_COST)
		j->cost = RXD_SCHED_MAX_COST;
	j->next = NULL;
	if (c->tail[lvl]) {
		c->tail[lvl]->next = j;
	} else {
		c->head[lvl] = j;
		/* A newcomer to the level joins the round at its end, with no credit. */
		sched_ring_push(s, c, lvl);
	}
	c->tail[lvl] = j;
	c->queued++;
	s->queued++;
	return 0;
}

int sched_submit(struct rxd_sched *s, struct rxd_sched_job *j)
{
	return sched_enqueue(s, j, true);
}

/* A job that goes on (a search between two steps) was admitted to the queue once: a
 * bound reached meanwhile must not end it half done. */
int sched_requeue(struct rxd_sched *s, struct rxd_sched_job *j)
{
	return sched_enqueue(s, j, false);
}

/* c's first job at lvl that is not parked (*prev: the one before it), or NULL; while
 * s->nestable_only, its first nestable one (the others are passed over as parked ones
 * are). */
static struct rxd_sched_job *sched_runnable(const struct rxd_sched *s,
					    struct rxd_sched_client *c, unsigned lvl,
					    struct rxd_sched_job **prev)
{
	struct rxd_sched_job *j = c->head[lvl];

	*prev = NULL;
	while (j && (j->parked || (s->nestable_only && !j->nestable))) {
		*prev = j;
		j = j->next;
	}
	return j;
}

/* Every owner in lvl's round has had its quantum and none could run its next job: add
 * the turns in which still nobody could, all at once (the order of the round is that of
 * a whole number of turns later, so only the deficits change). Owners whose jobs are all
 * parked take no part. */
static void sched_skip_turns(struct rxd_sched *s, unsigned lvl)
{
	uint64_t turns = UINT64_MAX;
	struct rxd_sched_client *c;
	struct rxd_sched_job *j, *prev;

	for (c = s->ring_head[lvl]; c; c = c->ring_next[lvl]) {
		uint64_t need, t;

		if (!(j = sched_runnable(s, c, lvl, &prev)))
			continue;
		need = j->cost - c->deficit[lvl]; /* > 0 */
		t = (need + s->quantum - 1) / s->quantum;
		if (t < turns)
			turns = t;
	}
	/* The next pass gives each its quantum once more: the last of the turns. */
	if (turns > 1 && turns != UINT64_MAX)
		for (c = s->ring_head[lvl]; c; c = c->ring_next[lvl])
			if (sched_runnable(s, c, lvl, &prev))
				c->deficit[lvl] =
					sched_add_sat(c->deficit[lvl], (turns - 1) * s->quantum);
}

struct rxd_sched_job *sched_next(struct rxd_sched *s)
{
	if (s->parked == s->queued)
		return NULL;
	for (int lvl = RXD_SCHED_LEVELS - 1; lvl >= 0; lvl--) {
		size_t n = 0, runnable = 0;

		for (struct rxd_sched_client *c = s->ring_head[lvl]; c; c = c->ring_next[lvl]) {
			struct rxd_sched_job *prev;

			n++;
			if (sched_runnable(s, c, (unsigned)lvl, &prev))
				runnable++;
		}
		if (runnable == 0)
			continue;
		for (;;) {
			for (size_t visits = 0; visits < n; visits++) {
				struct rxd_sched_client *c = s->ring_head[lvl];
				struct rxd_sched_job *prev, *j = sched_runnable(s, c, (unsigned)lvl, &prev);

				if (!j) {
					/* Everything it has here waits for memory: its turn
					 * passes, earning nothing. */
					sched_ring_rotate(s, (unsigned)lvl);
					continue;
				}
				if (!c->granted[lvl]) {
					c->deficit[lvl] =
						sched_add_sat(c->deficit[lvl], s->quantum);
					c->granted[lvl] = true;
				}
				if (j->cost <= c->deficit[lvl]) {
					/* The owner keeps its turn (and the rest of its deficit)
					 * for its next job. */
					c->deficit[lvl] -= j->cost;
					sched_unlink(s, c, (unsigned)lvl, prev, j);
					return j;
				}
				c->granted[lvl] = false;
				sched_ring_rotate(s, (unsigned)lvl);
			}
			sched_skip_turns(s, (unsigned)lvl);
		}
	}
	return NULL;
}

struct rxd_sched_job *sched_next_nestable(struct rxd_sched *s)
{
	struct rxd_sched_job *j;

	s->nestable_only = true;
	j = sched_next(s);
	s->nestable_only = false;
	return j;
}

int sched_park(struct rxd_sched *s, struct rxd_sched_job *j)
{
	struct rxd_sched_client *c = sched_find(s, j->owner);
	unsigned lvl = j->priority;

	if (!c) {
		if (!(c = calloc(1, sizeof(*c))))
			return -ENOMEM;
		c->owner = j->owner;
		c->next = s->clients;
		s->clients = c;
	}
	j->next = c->head[lvl];
	c->head[lvl] = j;
	if (!c->tail[lvl]) {
		c->tail[lvl] = j;
		sched_ring_push(s, c, lvl);
	} else {
		/* It did not run: its turn is not charged. */
		c->deficit[lvl] = sched_add_sat(c->deficit[lvl], j->cost);
	}
	j->parked = true;
	c->queued++;
	s->queued++;
	s->parked++;
	return 0;
}

void sched_unpark_all(struct rxd_sched *s)
{
	for (struct rxd_sched_client *c = s->clients; c; c = c->next)
		for (unsigned lvl = 0; lvl < RXD_SCHED_LEVELS; lvl++)
			for (struct rxd_sched_job *j = c->head[lvl]; j; j = j->next)
				j->parked = false;
	s->parked = 0;
}

struct rxd_sched_job *sched_expire(struct rxd_sched *s, uint64_t now_ns, size_t *count)
{
	struct rxd_sched_job *out = NULL, **tail = &out;
	struct rxd_sched_client *c, *cnext;
	size_t n = 0;

	for (c = s->clients; c; c = cnext) {
		/* sched_unlink may free c once its last job leaves. */
		cnext = c->next;
		for (unsigned lvl = 0; lvl < RXD_SCHED_LEVELS && c; lvl++) {
			struct rxd_sched_job *prev = NULL, *j = c->head[lvl], *jnext;
			bool last = false;

			for (; j && !last; j = jnext) {
				jnext = j->next;
				if (!j->deadline_ns || j->deadline_ns > now_ns) {
					prev = j;
					continue;
				}
				last = c->queued == 1;
				sched_unlink(s, c, lvl, prev, j);
				*tail = j;
				tail = &j->next;
				n++;
				s->expired++;
			}
			if (last)
				c = NULL; /* freed */
		}
	}
	if (count)
		*count = n;
	return out;
}

uint64_t sched_next_deadline(const struct rxd_sched *s)
{
	uint64_t first = 0;

	for (const struct rxd_sched_client *c = s->clients; c; c = c->next)
		for (unsigned lvl = 0; lvl < RXD_SCHED_LEVELS; lvl++)
			for (const struct rxd_sched_job *j = c->head[lvl]; j; j = j->next)
				if (j->deadline_ns && (!first || j->deadline_ns < first))
					first = j->deadline_ns;
	return first;
}

struct rxd_sched_job *sched_cancel(struct rxd_sched *s, uint32_t owner, uint64_t request_id)
{
	struct rxd_sched_client *c = sched_find(s, owner);

	if (!c)
		return NULL;
	for (unsigned lvl = 0; lvl < RXD_SCHED_LEVELS; lvl++) {
		struct rxd_sched_job *prev = NULL;

		for (struct rxd_sched_job *j = c->head[lvl]; j; prev = j, j = j->next)
			if (j->request_id == request_id) {
				sched_unlink(s, c, lvl, prev, j);
				s->cancelled++;
				return j;
			}
	}
	return NULL;
}

/* Take out every job of c (freeing it) onto *tail; their number. */
static size_t sched_take_client(struct rxd_sched *s, struct rxd_sched_client *c,
				struct rxd_sched_job ***tail)
{
	size_t n = 0;

	while (c) {
		unsigned lvl = 0;
		struct rxd_sched_job *j;
		bool last = c->queued == 1;

		while (!c->head[lvl])
			lvl++;
		j = c->head[lvl];
		sched_unlink(s, c, lvl, NULL, j);
		**tail = j;
		*tail = &j->next;
		n++;
		if (last)
			c = NULL; /* freed */
	}
	return n;
}

struct rxd_sched_job *sched_remove_client(struct rxd_sched *s, uint32_t owner)
{
	struct rxd_sched_job *out = NULL, **tail = &out;

	s->cancelled += sched_take_client(s, sched_find(s, owner), &tail);
	return out;
}

struct rxd_sched_job *sched_take_all(struct rxd_sched *s)
{
	struct rxd_sched_job *out = NULL, **tail = &out;

	while (s->clients)
		sched_take_client(s, s->clients, &tail);
	return out;
}

void sched_stats(const struct rxd_sched *s, struct rxd_sched_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->queued = s->queued;
	for (const struct rxd_sched_client *c = s->clients; c; c = c->next)
		out->clients++;
	out->max_queue = s->max_queue;
	out->client_max_queue = s->client_max_queue;
	out->rejected_total = s->rejected_total;
	out->rejected_client = s->rejected_client;
	out->expired = s->expired;
	out->cancelled = s->cancelled;
	out->parked = s->parked;
}

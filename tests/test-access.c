/* test-access.c: access control on a real rxgemmd (allow-uids, allow-gids, status-detail).
 *
 * The daemon allows uid 12345 and group 4242 (neither is the test's): clients run in
 * forked children that drop from root to nobody, with or without 4242 among their
 * supplementary groups. Without it, Hello is refused with RXG_EPERM and a sentence and the
 * connection closed; with it, the client is served (a GEMM checked against refgemm). Root is
 * always served, and sees every client; nobody sees other users' clients as counts only:
 * no name, uid or pid, and no shapes of their recent jobs. Needs root (else skipped). */
#include <check.h>
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon-run.h"
#include "refgemm.h"
#include "rxgemm.h"

#define NOBODY 65534
#define ALLOWED_GROUP 4242

static struct daemon_run g_daemon;
static int g_daemon_failed;

static void daemon_up(void)
{
	static const char *const args[] = { "--allow-uids", "12345", "--allow-gids", "4242",
					    NULL };
	int rc;

	if (geteuid() != 0) {
		fprintf(stderr, "test-access: needs root to become other users; skipped\n");
		exit(DAEMON_RUN_SKIP);
	}
	rc = daemon_run_start(&g_daemon, args);
	if (rc == DAEMON_RUN_SKIP) {
		daemon_run_cleanup(&g_daemon);
		exit(DAEMON_RUN_SKIP);
	}
	if (rc != 0) {
		daemon_run_cleanup(&g_daemon);
		exit(EXIT_FAILURE);
	}
	/* The socket is 0660 root's: let nobody reach it (the daemon decides, not the mode). */
	if (chmod(g_daemon.dir, 0755) < 0 || chmod(g_daemon.socket_path, 0666) < 0) {
		perror("test-access: chmod");
		exit(EXIT_FAILURE);
	}
}

static void daemon_down(void)
{
	int rc = daemon_run_stop(&g_daemon, SIGTERM, 60);

	if (rc != 0) {
		fprintf(stderr, "test-access: rxgemmd exited with %d\n", rc);
		daemon_run_dump_log(&g_daemon);
		g_daemon_failed = 1;
	}
	daemon_run_cleanup(&g_daemon);
}

/* A GEMM of m x n x k through c, checked against the reference; RXG_OK or the error. */
static int run_gemm(rxg_client *c, int64_t m, int64_t n, int64_t k)
{
	float *a = malloc(sizeof(float) * (size_t)(m * k)), *b = malloc(sizeof(float) * (size_t)(k * n));
	float *got = calloc((size_t)(m * n), sizeof(float)), *want = calloc((size_t)(m * n), sizeof(float));
	uint64_t seed = 7;
	struct rxg_gemm_args args = { .layout = RXG_ROW_MAJOR, .m = m, .n = n, .k = k,
				      .alpha = 1.0f, .a = a, .b = b, .c = got };
	int rc;

	if (!a || !b || !got || !want)
		return RXG_ENOMEM;
	refgemm_fill_random(a, (size_t)(m * k), &seed);
	refgemm_fill_random(b, (size_t)(k * n), &seed);
	rc = rxg_gemm(c, &args, NULL);
	if (rc == RXG_OK) {
		refgemm(1, 0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, want, n);
		if (refgemm_compare(1, m, n, k, got, want, n, NULL, NULL, NULL) != 0)
			rc = RXG_EINTERNAL;
	}
	free(a), free(b), free(got), free(want);
	return rc;
}

/* Become nobody, with group ALLOWED_GROUP among the supplementary ones or none. */
static void become_nobody(int with_group)
{
	gid_t g = ALLOWED_GROUP;

	if (setgroups(with_group ? 1 : 0, &g) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0) {
		perror("test-access: cannot become nobody");
		_exit(3);
	}
}

#define CHILD_CHECK(cond, ...)                                                             \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "child: " __VA_ARGS__);                            \
			fputc('\n', stderr);                                               \
			_exit(1);                                                          \
		}                                                                          \
	} while (0)

/* Run fn in a child process; it passes when the child exits 0. */
static void in_child(void (*fn)(void))
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fn();
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "the child failed (status %d; see above)", status);
}

static void refused_child(void)
{
	rxg_client *c = NULL;
	int rc;

	become_nobody(0);
	rc = rxg_connect(g_daemon.socket_path, "access-refused", &c);
	CHILD_CHECK(rc == RXG_EPERM, "connect as nobody without the group: %s (%s), want EPERM",
		    rxg_strerror(rc), rxg_errmsg(NULL));
	CHILD_CHECK(strstr(rxg_errmsg(NULL), "uid 65534 is not allowed"), "message: %s",
		    rxg_errmsg(NULL));
	CHILD_CHECK(c == NULL, "a handle after a refusal");
}

/* Not in allow-uids, not in allow-gids: refused at Hello with a sentence. */
START_TEST(test_refused)
{
	in_child(refused_child);
}
END_TEST

/* What nobody (with the group) sees of a root client that ran a job, and of itself. */
static void allowed_child(void)
{
	rxg_client *c = NULL;
	struct rxg_status *st = NULL;
	int rc, seen_self = 0, seen_root = 0, own_jobs = 0, hidden_jobs = 0;
	uint32_t self;

	become_nobody(1);
	rc = rxg_connect(g_daemon.socket_path, "access-allowed", &c);
	CHILD_CHECK(rc == RXG_OK, "connect as nobody with group %d: %s (%s)", ALLOWED_GROUP,
		    rxg_strerror(rc), rxg_errmsg(NULL));
	self = rxg_server_info(c)->client_id;
	rc = run_gemm(c, 20, 30, 40);
	CHILD_CHECK(rc == RXG_OK, "gemm: %s (%s)", rxg_strerror(rc), rxg_errmsg(c));
	rc = rxg_status(c, &st);
	CHILD_CHECK(rc == RXG_OK, "status: %s (%s)", rxg_strerror(rc), rxg_errmsg(c));
	for (size_t i = 0; i < st->n_clients; i++) {
		const struct rxg_client_stats *cs = &st->clients[i];

		if (cs->client_id == self) {
			seen_self = 1;
			CHILD_CHECK(strcmp(cs->name, "access-allowed") == 0 && cs->uid == NOBODY &&
					    cs->pid == getpid(),
				    "own entry: '%s' uid %lld pid %lld", cs->name,
				    (long long)cs->uid, (long long)cs->pid);
		} else {
			/* The root watcher: there, and counted, but nameless. */
			seen_root = 1;
			CHILD_CHECK(cs->name[0] == '\0' && cs->uid == -1 && cs->pid == -1,
				    "another user's client shows '%s' uid %lld pid %lld", cs->name,
				    (long long)cs->uid, (long long)cs->pid);
			CHILD_CHECK(cs->jobs_ok >= 1, "another user's client's counts are gone");
		}
	}
	CHILD_CHECK(seen_self && seen_root && st->clients_connected >= 2,
		    "clients: self %d, root's %d, connected %u", seen_self, seen_root,
		    st->clients_connected);
	for (size_t i = 0; i < st->n_recent; i++) {
		const struct rxg_job_record *r = &st->recent[i];

		if (r->client_id == self) {
			own_jobs++;
			CHILD_CHECK(r->m == 20 && r->n == 30 && r->k == 40, "own job %lldx%lldx%lld",
				    (long long)r->m, (long long)r->n, (long long)r->k);
		} else {
			hidden_jobs++;
			CHILD_CHECK(r->m == 0 && r->n == 0 && r->k == 0,
				    "another user's job shows %lldx%lldx%lld", (long long)r->m,
				    (long long)r->n, (long long)r->k);
		}
	}
	CHILD_CHECK(own_jobs == 1 && hidden_jobs >= 1, "recent: own %d, others %d", own_jobs,
		    hidden_jobs);
	rxg_status_free(st);
	rxg_close(c);
}

/* A supplementary group in allow-gids lets nobody in; root is always in and sees all. */
START_TEST(test_allowed_by_group)
{
	rxg_client *root = NULL;
	struct rxg_status *st = NULL;
	int rc, saw_nobody = 0;

	rc = rxg_connect(g_daemon.socket_path, "access-root", &root);
	ck_assert_msg(rc == RXG_OK, "root: %s (%s)", rxg_strerror(rc), rxg_errmsg(NULL));
	ck_assert_int_eq(run_gemm(root, 11, 12, 13), RXG_OK);
	in_child(allowed_child);
	/* Root sees the other user's job in full. */
	ck_assert_int_eq(rxg_status(root, &st), RXG_OK);
	for (size_t i = 0; i < st->n_recent; i++)
		saw_nobody |= st->recent[i].m == 20 && st->recent[i].n == 30 &&
			      st->recent[i].k == 40;
	ck_assert_msg(saw_nobody, "root does not see nobody's job's shape");
	rxg_status_free(st);
	rxg_close(root);
}
END_TEST

static Suite *access_suite(void)
{
	Suite *s = suite_create("access");
	TCase *tc = tcase_create("daemon");

	tcase_add_unchecked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_refused);
	tcase_add_test(tc, test_allowed_by_group);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(access_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed || g_daemon_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

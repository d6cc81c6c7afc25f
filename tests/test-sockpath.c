/* test-sockpath.c: the default socket path rule shared by rxgemmd and librxgemm, from its
 * inputs: environment, root or not, and which sockets exist. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sockpath.h"

static char buf[256];

START_TEST(test_precedence)
{
	ck_assert_int_eq(sockpath_choose(buf, sizeof(buf), "/x/s", "/rt", "/xdg", false, true), 0);
	ck_assert_str_eq(buf, "/x/s"); /* RXGEMM_SOCKET wins */
	ck_assert_int_eq(sockpath_choose(buf, sizeof(buf), "", "/rt", "/xdg", false, false), 0);
	ck_assert_str_eq(buf, "/rt/rxgemmd.sock"); /* then systemd's RuntimeDirectory */
	ck_assert_int_eq(sockpath_choose(buf, sizeof(buf), NULL, NULL, "/xdg", false, false), 0);
	ck_assert_str_eq(buf, "/xdg/rxgemmd.sock"); /* a user's own daemon */
	ck_assert_int_eq(sockpath_choose(buf, sizeof(buf), NULL, NULL, "/xdg", true, false), 0);
	ck_assert_str_eq(buf, SOCKPATH_SYSTEM); /* root: the system path */
	ck_assert_int_eq(sockpath_choose(buf, sizeof(buf), NULL, NULL, NULL, false, false), 0);
	ck_assert_str_eq(buf, SOCKPATH_SYSTEM);
}
END_TEST

START_TEST(test_too_long)
{
	char small[8];

	ck_assert_int_lt(sockpath_choose(small, sizeof(small), "/a/long/path", NULL, NULL, false,
					 false),
			 0);
}
END_TEST

START_TEST(test_client_falls_back_to_the_system_socket)
{
	char dir[] = "/tmp/rxg-sockpath-XXXXXX";
	char path[64];
	struct stat st;
	bool have_system = stat(SOCKPATH_SYSTEM, &st) == 0 && S_ISSOCK(st.st_mode);

	ck_assert_ptr_nonnull(mkdtemp(dir));
	/* The user's runtime directory has no socket: a client takes the system one if the
	 * system service is there, the daemon always keeps the user's own path. */
	ck_assert_int_eq(sockpath_choose(buf, sizeof(buf), NULL, NULL, dir, false, true), 0);
	snprintf(path, sizeof(path), "%s/rxgemmd.sock", dir);
	ck_assert_str_eq(buf, have_system ? SOCKPATH_SYSTEM : path);
	ck_assert_int_eq(sockpath_choose(buf, sizeof(buf), NULL, NULL, dir, false, false), 0);
	ck_assert_str_eq(buf, path);
	/* With a socket of the user's own there, the client uses it. */
	{
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		ck_assert_int_eq(sockpath_choose(buf, sizeof(buf), NULL, NULL, dir, false, true), 0);
		ck_assert_str_eq(buf, path);
		close(fd);
		unlink(path);
	}
	rmdir(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sockpath");
	TCase *tc = tcase_create("rule");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_precedence);
	tcase_add_test(tc, test_too_long);
	tcase_add_test(tc, test_client_falls_back_to_the_system_socket);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* sockpath.c: the default socket path (see sockpath.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sockpath.h"

int sockpath_choose(char *buf, size_t len, const char *env_socket, const char *env_runtime,
		    const char *env_xdg, bool root, bool client)
{
	struct stat st;
	int n;

	if (env_socket && *env_socket)
		n = snprintf(buf, len, "%s", env_socket);
	else if (env_runtime && *env_runtime)
		n = snprintf(buf, len, "%s/rxgemmd.sock", env_runtime);
	else if (!root && env_xdg && *env_xdg)
		n = snprintf(buf, len, "%s/rxgemmd.sock", env_xdg);
	else
		n = snprintf(buf, len, "%s", SOCKPATH_SYSTEM);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	/* A user's own daemon lives in their runtime directory; when there is none there but
	 * the system service's socket exists, a client means that one. */
	if (client && !root && !(env_socket && *env_socket) && !(env_runtime && *env_runtime) &&
	    env_xdg && *env_xdg && stat(buf, &st) != 0 && stat(SOCKPATH_SYSTEM, &st) == 0 &&
	    S_ISSOCK(st.st_mode)) {
		n = snprintf(buf, len, "%s", SOCKPATH_SYSTEM);
		if (n < 0 || (size_t)n >= len)
			return -ENAMETOOLONG;
	}
	return 0;
}

int sockpath_default(char *buf, size_t len)
{
	return sockpath_choose(buf, len, getenv("RXGEMM_SOCKET"), getenv("RUNTIME_DIRECTORY"),
			       getenv("XDG_RUNTIME_DIR"), geteuid() == 0, false);
}

int sockpath_client_default(char *buf, size_t len)
{
	return sockpath_choose(buf, len, getenv("RXGEMM_SOCKET"), getenv("RUNTIME_DIRECTORY"),
			       getenv("XDG_RUNTIME_DIR"), geteuid() == 0, true);
}

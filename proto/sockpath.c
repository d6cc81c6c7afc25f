/* sockpath.c: the default socket path (see sockpath.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "sockpath.h"

int sockpath_default(char *buf, size_t len)
{
	const char *env;
	int n;

	if ((env = getenv("RXGEMM_SOCKET")) && *env)
		n = snprintf(buf, len, "%s", env);
	else if ((env = getenv("RUNTIME_DIRECTORY")) && *env)
		n = snprintf(buf, len, "%s/rxgemmd.sock", env);
	else if (geteuid() != 0 && (env = getenv("XDG_RUNTIME_DIR")) && *env)
		n = snprintf(buf, len, "%s/rxgemmd.sock", env);
	else
		n = snprintf(buf, len, "/run/rxgemmd/rxgemmd.sock");
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

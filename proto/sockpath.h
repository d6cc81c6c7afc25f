/* sockpath.h: where rxgemmd listens when no --socket is given; shared by daemon and client
 * so that both sides agree without configuration. */
#ifndef RXGEMM_SOCKPATH_H
#define RXGEMM_SOCKPATH_H

#include <stdbool.h>
#include <stddef.h>

#define SOCKPATH_SYSTEM "/run/rxgemmd/rxgemmd.sock" /* the system service's */

/* The daemon's default: $RXGEMM_SOCKET if set, else $RUNTIME_DIRECTORY/rxgemmd.sock
 * (systemd's RuntimeDirectory=), else the system path for root, else
 * $XDG_RUNTIME_DIR/rxgemmd.sock, else the system path. Returns 0, or -ENAMETOOLONG when it
 * does not fit in len bytes. */
int sockpath_default(char *buf, size_t len);

/* The client's default: the same, except that a user with no socket in their runtime
 * directory, where the system service's socket exists, gets the system one. */
int sockpath_client_default(char *buf, size_t len);

/* The rule itself, from its inputs (for tests). */
int sockpath_choose(char *buf, size_t len, const char *env_socket, const char *env_runtime,
		    const char *env_xdg, bool root, bool client);

#endif

/* sockpath.h: where rxgemmd listens when no --socket is given; shared by daemon and client
 * so that both sides agree without configuration. */
#ifndef RXGEMM_SOCKPATH_H
#define RXGEMM_SOCKPATH_H

#include <stddef.h>

/* $RXGEMM_SOCKET if set, else $RUNTIME_DIRECTORY/rxgemmd.sock (systemd's RuntimeDirectory=),
 * else /run/rxgemmd/rxgemmd.sock for root, else $XDG_RUNTIME_DIR/rxgemmd.sock, else
 * /run/rxgemmd/rxgemmd.sock. Returns 0, or -ENAMETOOLONG when it does not fit in len bytes. */
int sockpath_default(char *buf, size_t len);

#endif

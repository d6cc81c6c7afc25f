/* raw.h: the protocol spoken by hand, for tests that must send what librxgemm never would
 * (bad fields, unknown fields, descriptors, half frames) and read every reply as it comes.
 *
 * One blocking socket per struct raw. Every helper fails the running check test (through
 * ck_assert) on anything unexpected, so a test reads as the conversation it has. */
#ifndef RXGEMM_TESTS_RAW_H
#define RXGEMM_TESTS_RAW_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "rxgemm.pb-c.h"

/* How long any one reply may take before the daemon is called hung: generous, as a
 * loaded 2-core machine compiling kernels beside the test can take minutes. */
#define RAW_REPLY_TIMEOUT_MS 300000

struct raw {
	int fd;
	struct frame_reader fr;
	uint8_t buf[65536];
	size_t off, have;
	int eof; /* the daemon closed the connection */
};

/* Connect to the daemon listening at path. */
void raw_open(struct raw *r, const char *path);
void raw_close(struct raw *r);
/* Send len bytes as they are (a frame's pieces, garbage). */
void raw_send_bytes(struct raw *r, const void *data, size_t len);
/* req packed into one frame, followed by extra_len raw bytes inside the frame (unknown
 * fields); malloc'd, *len its bytes. */
uint8_t *raw_frame(const Rxgemm__Request *req, const void *extra, size_t extra_len,
		   size_t *len);
void raw_send(struct raw *r, const Rxgemm__Request *req);
/* A length-delimited field (tag, length, data) written by hand at out, for messages
 * protobuf-c would never pack (a field twice, a field past its message); its bytes (at
 * most len + 15). */
size_t raw_put_field(uint8_t *out, uint32_t num, const void *data, size_t len);
void raw_send_extra(struct raw *r, const Rxgemm__Request *req, const void *extra,
		    size_t extra_len);
/* len bytes in one sendmsg with n (at most 16, may be 0) descriptors attached. */
void raw_send_bytes_fds(struct raw *r, const void *data, size_t len, const int *fds, int n);
/* req's frame in one sendmsg with n (at most 16, may be 0) descriptors attached. */
void raw_send_fds(struct raw *r, const Rxgemm__Request *req, const int *fds, int n);
/* The next reply (free with rxgemm__reply__free_unpacked), or NULL when the daemon closed
 * the connection between frames. Closing inside a frame, or nothing within
 * RAW_REPLY_TIMEOUT_MS, fails the test. */
Rxgemm__Reply *raw_recv(struct raw *r);
/* raw_recv that must give a reply. */
Rxgemm__Reply *raw_recv_reply(struct raw *r);
/* The next reply must answer id with status; one that is not OK must carry a sentence,
 * which must contain text unless text is NULL. */
Rxgemm__Reply *raw_expect(struct raw *r, uint64_t id, Rxgemm__Status status, const char *text);
void raw_expect_free(struct raw *r, uint64_t id, Rxgemm__Status status, const char *text);
/* The daemon must close the connection before it sends another reply. */
void raw_expect_eof(struct raw *r);
/* Hello (request_id id, the given protocol version) without waiting for its reply. */
void raw_send_hello(struct raw *r, uint64_t id, uint32_t version, const char *name);
/* Hello as request 1, answered OK, announcing capability unless that is NULL; returns the
 * client id the daemon gave. */
uint32_t raw_hello(struct raw *r, const char *name, const char *capability);
/* A status request, with n descriptors attached (they must be refused or ignored). */
void raw_send_status(struct raw *r, uint64_t id, const int *fds, int n);
/* A status request answered OK; the reply is the caller's. */
Rxgemm__Reply *raw_status(struct raw *r, uint64_t id);

#endif

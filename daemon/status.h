/* status.h: the daemon's one status type and its one error struct.
 *
 * Every function whose failure can reach a client returns an enum rxd_status (RXD_S_OK is
 * 0) and fills a struct rxd_error with the status and a sentence for the reply. The wire
 * layer (wire.c) alone turns a status into the protocol's Status code: the table's
 * second column is that code, exactly as proto/rxgemm.proto numbers it (checked there at
 * compile time). Nothing here knows protobuf. */
#ifndef RXD_STATUS_H
#define RXD_STATUS_H

#define RXD_ERROR_MAX 256 /* bytes of a human error sentence in a reply */

/* X(name, wire code, default sentence) */
#define RXD_STATUS_TABLE(X)                                                                   \
	X(OK, 0, "success")                                                                   \
	X(INVALID_ARGUMENT, 1, "a field is out of range or inconsistent with another")       \
	X(TOO_BIG, 2, "over a limit of this daemon")                                          \
	X(PROTOCOL, 3, "malformed frame or message")                                          \
	X(VERSION, 4, "protocol version mismatch")                                            \
	X(DEVICE, 5, "the OpenCL device failed the job")                                      \
	X(NO_MEMORY, 6, "host or device memory could not be had")                             \
	X(SHUTDOWN, 7, "the daemon is shutting down")                                         \
	X(UNSUPPORTED, 8, "a request kind this daemon does not serve")                        \
	X(INTERNAL, 9, "a bug in the daemon")                                                 \
	X(BUSY, 10, "a queue bound is reached; retry later")                                  \
	X(TIMEOUT, 11, "the job's deadline passed while it waited")                           \
	X(CANCELLED, 12, "the job was cancelled")                                             \
	X(REGION, 13, "a shared-memory region is unknown, unusable or in use")                \
	X(PERMISSION, 14, "this user is not allowed to use the daemon")                       \
	X(TENSOR, 15, "a device tensor is unknown on this connection")                        \
	X(QUOTA, 16, "over this client's device-memory quota")

enum rxd_status {
#define RXD_STATUS_ENUM(name, wire, msg) RXD_S_##name,
	RXD_STATUS_TABLE(RXD_STATUS_ENUM)
#undef RXD_STATUS_ENUM
	RXD_S_COUNT
};

/* What failed and why, for one reply: status RXD_S_OK and an empty msg when nothing did. */
struct rxd_error {
	int status;                  /* enum rxd_status */
	char msg[RXD_ERROR_MAX];     /* one sentence, may quote the client's input */
};

/* Set e (may be NULL) to status and the sentence fmt makes; returns status, so that a
 * failing function can `return error_set(err, RXD_S_..., "...")`. */
int error_set(struct rxd_error *e, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Back to no error. */
void error_clear(struct rxd_error *e);
/* "INVALID_ARGUMENT"; "?" when out of range. */
const char *status_name(int status);
/* The table's default sentence; "unknown status" when out of range. */
const char *status_message(int status);
/* The protocol's code for status (the table's second column); INTERNAL's when out of
 * range. Only the wire layer calls this. */
unsigned status_wire_code(int status);

#endif

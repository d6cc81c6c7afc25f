/* raw.c: the protocol spoken by hand (see raw.h). */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "raw.h"

#define RAW_MAX_FDS 16

void raw_open(struct raw *r, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(r, 0, sizeof(*r));
	r->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(r->fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ck_assert_msg(connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect(%s): %s",
		      path, strerror(errno));
	frame_reader_init(&r->fr, (size_t)1 << 30);
}

void raw_close(struct raw *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	frame_reader_fini(&r->fr);
}

void raw_send_bytes(struct raw *r, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t n = send(r->fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		ck_assert_msg(n > 0, "send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

uint8_t *raw_frame(const Rxgemm__Request *req, const void *extra, size_t extra_len,
		   size_t *len)
{
	size_t body = rxgemm__request__get_packed_size(req);
	uint8_t *f = malloc(FRAME_HEADER_BYTES + body + extra_len);

	ck_assert_ptr_nonnull(f);
	rxgemm__request__pack(req, f + FRAME_HEADER_BYTES);
	if (extra_len)
		memcpy(f + FRAME_HEADER_BYTES + body, extra, extra_len);
	frame_header_put(f, (uint32_t)(body + extra_len));
	*len = FRAME_HEADER_BYTES + body + extra_len;
	return f;
}

size_t raw_put_field(uint8_t *out, uint32_t num, const void *data, size_t len)
{
	const uint64_t v[2] = { (uint64_t)num << 3 | 2, len };
	size_t at = 0;

	for (int i = 0; i < 2; i++)
		for (uint64_t x = v[i];; x >>= 7) {
			out[at++] = (uint8_t)((x & 0x7f) | (x >= 0x80 ? 0x80 : 0));
			if (x < 0x80)
				break;
		}
	memcpy(out + at, data, len);
	return at + len;
}

void raw_send_extra(struct raw *r, const Rxgemm__Request *req, const void *extra,
		    size_t extra_len)
{
	size_t len;
	uint8_t *f = raw_frame(req, extra, extra_len, &len);

	raw_send_bytes(r, f, len);
	free(f);
}

void raw_send(struct raw *r, const Rxgemm__Request *req)
{
	raw_send_extra(r, req, NULL, 0);
}

void raw_send_bytes_fds(struct raw *r, const void *data, size_t len, const int *fds, int n)
{
	union {
		struct cmsghdr align;
		uint8_t buf[CMSG_SPACE(sizeof(int) * RAW_MAX_FDS)];
	} ctl;
	struct iovec iov = { .iov_base = (void *)(uintptr_t)data, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	ck_assert_int_le(n, RAW_MAX_FDS);
	if (n > 0) {
		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n);
	}
	/* One sendmsg, all or nothing: the tests decide where descriptors ride, and a short
	 * send would move the rest of the bytes away from them. */
	ssize_t sent = sendmsg(r->fd, &msg, MSG_NOSIGNAL);
	ck_assert_msg(sent == (ssize_t)len, "sendmsg: %zd of %zu: %s", sent, len, strerror(errno));
}

void raw_send_fds(struct raw *r, const Rxgemm__Request *req, const int *fds, int n)
{
	size_t len;
	uint8_t *f = raw_frame(req, NULL, 0, &len);

	raw_send_bytes_fds(r, f, len, fds, n);
	free(f);
}

Rxgemm__Reply *raw_recv(struct raw *r)
{
	for (;;) {
		if (r->off < r->have) {
			uint8_t *body;
			size_t body_len;
			ssize_t n = frame_reader_feed(&r->fr, r->buf + r->off, r->have - r->off,
						      &body, &body_len);
			ck_assert_msg(n >= 0, "reading a reply frame: %s", strerror((int)-n));
			r->off += (size_t)n;
			if (body) {
				Rxgemm__Reply *rep = rxgemm__reply__unpack(NULL, body_len, body);
				free(body);
				ck_assert_msg(rep != NULL, "a %zu-byte reply does not parse as Reply",
					      body_len);
				return rep;
			}
			continue;
		}
		if (r->eof)
			return NULL;
		struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
		int pr = poll(&pfd, 1, RAW_REPLY_TIMEOUT_MS);
		if (pr < 0 && errno == EINTR)
			continue;
		ck_assert_msg(pr > 0, "no reply from rxgemmd within %d s",
			      RAW_REPLY_TIMEOUT_MS / 1000);
		ssize_t n = recv(r->fd, r->buf, sizeof(r->buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* ECONNRESET counts as the daemon closing the connection. */
			ck_assert_msg(n == 0 || errno == ECONNRESET, "recv: %s", strerror(errno));
			ck_assert_msg(!frame_reader_partial(&r->fr),
				      "connection closed in the middle of a reply frame");
			r->eof = 1;
			return NULL;
		}
		r->off = 0;
		r->have = (size_t)n;
	}
}

Rxgemm__Reply *raw_recv_reply(struct raw *r)
{
	Rxgemm__Reply *rep = raw_recv(r);

	ck_assert_msg(rep != NULL, "the daemon closed the connection; a reply was due");
	return rep;
}

Rxgemm__Reply *raw_expect(struct raw *r, uint64_t id, Rxgemm__Status status, const char *text)
{
	Rxgemm__Reply *rep = raw_recv(r);

	ck_assert_msg(rep != NULL, "connection closed; expected a reply to request %" PRIu64, id);
	ck_assert_msg(rep->request_id == id && rep->status == status,
		      "reply to %" PRIu64 " with status %d (\"%s\"); want request %" PRIu64
		      ", status %d",
		      rep->request_id, rep->status, rep->error ? rep->error : "", id, status);
	if (status != RXGEMM__STATUS__STATUS_OK)
		ck_assert_msg(rep->error && rep->error[0],
			      "request %" PRIu64 ": status %d with no error sentence", id, status);
	if (text)
		ck_assert_msg(rep->error && strstr(rep->error, text),
			      "request %" PRIu64 ": \"%s\" does not say \"%s\"", id,
			      rep->error ? rep->error : "", text);
	return rep;
}

void raw_expect_free(struct raw *r, uint64_t id, Rxgemm__Status status, const char *text)
{
	rxgemm__reply__free_unpacked(raw_expect(r, id, status, text), NULL);
}

void raw_expect_eof(struct raw *r)
{
	Rxgemm__Reply *rep = raw_recv(r);

	ck_assert_msg(rep == NULL, "expected the daemon to close the connection, got a reply "
				   "(request_id %" PRIu64 ", status %d, \"%s\")",
		      rep ? rep->request_id : 0, rep ? rep->status : 0,
		      rep && rep->error ? rep->error : "");
}

void raw_send_hello(struct raw *r, uint64_t id, uint32_t version, const char *name)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__Hello hello = RXGEMM__HELLO__INIT;

	hello.protocol_version = version;
	hello.client_name = (char *)name;
	req.request_id = id;
	req.body_case = RXGEMM__REQUEST__BODY_HELLO;
	req.hello = &hello;
	raw_send(r, &req);
}

uint32_t raw_hello(struct raw *r, const char *name, const char *capability)
{
	raw_send_hello(r, 1, RXGEMM_PROTOCOL_VERSION, name);
	Rxgemm__Reply *rep = raw_expect(r, 1, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_HELLO);
	if (capability) {
		int found = 0;
		for (size_t i = 0; i < rep->hello->n_capabilities; i++)
			found |= strcmp(rep->hello->capabilities[i], capability) == 0;
		ck_assert_msg(found, "Hello does not announce the \"%s\" capability", capability);
	}
	uint32_t id = rep->hello->client_id;
	rxgemm__reply__free_unpacked(rep, NULL);
	return id;
}

void raw_send_status(struct raw *r, uint64_t id, const int *fds, int n)
{
	Rxgemm__Request req = RXGEMM__REQUEST__INIT;
	Rxgemm__StatusRequest sreq = RXGEMM__STATUS_REQUEST__INIT;

	req.request_id = id;
	req.body_case = RXGEMM__REQUEST__BODY_STATUS;
	req.status = &sreq;
	raw_send_fds(r, &req, fds, n);
}

Rxgemm__Reply *raw_status(struct raw *r, uint64_t id)
{
	raw_send_status(r, id, NULL, 0);
	Rxgemm__Reply *rep = raw_expect(r, id, RXGEMM__STATUS__STATUS_OK, NULL);
	ck_assert_int_eq(rep->body_case, RXGEMM__REPLY__BODY_STATUS_REPLY);
	return rep;
}

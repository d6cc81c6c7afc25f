/* sha256.h: SHA-256 (FIPS 180-4), incremental and one-shot. No allocation, no errors. */
#ifndef RXGEMM_SHA256_H
#define RXGEMM_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* One digest in progress; the fields are private to sha256.c. */
struct sha256_ctx {
	uint32_t h[8];
	uint64_t bytes;
	uint8_t buf[64];
	size_t fill;
};

void sha256_init(struct sha256_ctx *s);
/* Any number of calls with any lengths digest the concatenation of their data. */
void sha256_update(struct sha256_ctx *s, const void *data, size_t len);
/* Write the digest; the context must be initialised again before reuse. */
void sha256_final(struct sha256_ctx *s, uint8_t out[32]);
/* The digest of one buffer. */
void sha256_digest(const void *data, size_t len, uint8_t out[32]);

#endif

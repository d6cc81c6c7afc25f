/* fuzz-genotype: daemon/genotype.c's parser of the reference's printed genotypes.
 *
 * Whatever it accepts must be a genotype genotype_check accepts too, and must print
 * (genotype_format) to a text that parses back to the same genotype: the parser and the
 * printer agree. Every refusal names a byte inside the text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "genotype.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rxd_genotype g, again;
	char text[RXD_GENOTYPE_TEXT_MAX];
	struct rxd_error err = { 0 };
	size_t n;
	unsigned long byte;

	memset(&g, 0, sizeof(g));
	error_clear(&err);
	/* Not NUL-terminated: the parser must keep within len. */
	if (genotype_parse((const char *)data, size, &g, &err) < 0) {
		if (sscanf(err.msg, "genotype text, byte %lu:", &byte) != 1 || byte > size)
			abort();
		return 0;
	}
	if (genotype_check(&g, &err) < 0)
		abort();
	n = genotype_format(&g, text, sizeof(text));
	if (n >= sizeof(text))
		abort();
	memset(&again, 0, sizeof(again));
	if (genotype_parse(text, n, &again, &err) < 0 ||
	    memcmp(&g, &again, sizeof(g)) != 0)
		abort();
	return 0;
}

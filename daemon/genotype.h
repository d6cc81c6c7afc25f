/* genotype.h: DARTS cell genotypes (genotype.c): pure, no OpenCL, no libuv. */
#ifndef RXGEMMD_GENOTYPE_H
#define RXGEMMD_GENOTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* ---- genotype.c: DARTS cell genotypes, the named ones, their printed form ---- */
/* The operations, in the order of the reference's PRIMITIVES (the search space is the
 * first RXD_NAS_PRIMITIVES), then the two the NASNet and AmoebaNet genotypes use. */
enum rxd_nas_op {
	RXD_OP_NONE = 0,
	RXD_OP_MAX_POOL_3X3,
	RXD_OP_AVG_POOL_3X3,
	RXD_OP_SKIP_CONNECT,
	RXD_OP_SEP_CONV_3X3,
	RXD_OP_SEP_CONV_5X5,
	RXD_OP_DIL_CONV_3X3,
	RXD_OP_DIL_CONV_5X5,
	RXD_OP_SEP_CONV_7X7,
	RXD_OP_CONV_7X1_1X7,
	RXD_OP_COUNT
};
#define RXD_NAS_PRIMITIVES 8
#define RXD_GENOTYPE_MAX_NODES 8 /* intermediate nodes of a cell */
#define RXD_GENOTYPE_TEXT_MAX 2048 /* the printed form of any valid genotype fits */

/* Node i (0..n_nodes-1) is op[2i](state[input[2i]]) + op[2i+1](state[input[2i+1]]), where
 * state 0 and 1 are the cell's inputs (cells k-2 and k-1) and state i+2 is node i. The
 * cell's output concatenates the states listed in concat (increasing, each 2..n_nodes+1). */
struct rxd_genotype_cell {
	uint8_t n_nodes;
	uint8_t op[2 * RXD_GENOTYPE_MAX_NODES];    /* enum rxd_nas_op */
	uint8_t input[2 * RXD_GENOTYPE_MAX_NODES];
	uint8_t n_concat;
	uint8_t concat[RXD_GENOTYPE_MAX_NODES];
};

struct rxd_genotype {
	struct rxd_genotype_cell normal, reduce;
};

/* "sep_conv_3x3" for RXD_OP_SEP_CONV_3X3; "?" when out of range. */
const char *genotype_op_name(int op);
/* The operation named s[0..len), or -ENOENT. */
int genotype_op_parse(const char *s, size_t len);
/* The i-th named genotype's name ("DARTS_V1", "DARTS_V2", "NASNet", "AmoebaNet"), NULL
 * past the last. */
const char *genotype_name(size_t i);
/* Fill g with a named genotype. 0 or -ENOENT. */
int genotype_named(const char *name, struct rxd_genotype *g);
/* Parse text[0..len) (the reference's printed form; see genotype.c), strictly. 0, or
 * -EINVAL with a sentence in err that starts "genotype text, byte N:" (N from 0). */
int genotype_parse(const char *text, size_t len, struct rxd_genotype *g, struct rxd_error *err);
/* Check a genotype built by other means (the same rules as the parser). 0 or -EINVAL. */
int genotype_check(const struct rxd_genotype *g, struct rxd_error *err);
/* Print g the way the reference does, NUL-terminated within len; returns the length the
 * whole text needs (without the NUL), like snprintf. */
size_t genotype_format(const struct rxd_genotype *g, char *buf, size_t len);

#endif

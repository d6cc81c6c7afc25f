/* gemm-variant.h: one built GEMM kernel, shared by the engine (gemm.c, which builds and
 * checks it) and the launch code (gemm-launch.c, which runs it). Private to those two
 * files: everyone else names a variant by its index in rxd_gemm_engine.variants. */
#ifndef RXGEMMD_GEMM_VARIANT_H
#define RXGEMMD_GEMM_VARIANT_H
#include <stdbool.h>

#include "engine.h"

/* A kernel family at one configuration for one (trans_a, trans_b). */
struct rxd_gemm_variant {
	bool trans_a, trans_b;
	struct rxd_gemm_config cfg;
	cl_program program;
	cl_kernel kernel;
	cl_kernel reduce;      /* split-K's sum (register-blocked variants only), or NULL */
	char name[96];
	/* gemm_enqueue_at's self-test at odd offsets: run on first use, remembered. */
	bool at_tested, at_failed;
};

#endif

/* refnas.h: the CPU reference of NAS plans (tests only). */
#ifndef REFNAS_H
#define REFNAS_H

#include <stdbool.h>

#include "nasplan.h"

/* Run plan's steps on the CPU with weights (plan->weight_floats, from nas_fold) on input
 * (batch x 3 x h x w); logits receives batch x classes. packed: the tensors at their arena
 * offsets, as the device runs them; else each in its own memory (so comparing the two
 * checks the packing). 0 or -ENOMEM. */
int refnas_run(const struct rxd_nas_plan *plan, const float *weights, const float *input,
	       float *logits, bool packed);

/* A genotype that puts operation op (enum rxd_nas_op) at stride 1 and 2, beside an
 * identity edge (before and after it) and beside 'none' (before and after it), with
 * skip_connect at both strides beside identities: every way the planner fuses a node.
 * reduce_only: for a 1-layer network (its one cell reduces) of any size: no skip_connect
 * at stride 2 (a FactorizedReduce, which needs even sizes) unless op is skip_connect. */
void refnas_op_genotype(int op, bool reduce_only, struct rxd_genotype *g);

#endif

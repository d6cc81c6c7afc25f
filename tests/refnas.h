/* refnas.h: the CPU reference of NAS plans (tests only). */
#ifndef REFNAS_H
#define REFNAS_H

#include <stdbool.h>

#include "rxgemmd.h"

/* Run plan's steps on the CPU with weights (plan->weight_floats, from nas_fold) on input
 * (batch x 3 x h x w); logits receives batch x classes. packed: the tensors at their arena
 * offsets, as the device runs them; else each in its own memory (so comparing the two
 * checks the packing). 0 or -ENOMEM. */
int refnas_run(const struct rxd_nas_plan *plan, const float *weights, const float *input,
	       float *logits, bool packed);

#endif

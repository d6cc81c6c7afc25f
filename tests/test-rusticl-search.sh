#!/bin/sh
# test-rusticl-search.sh: the DARTS search's tests (test-search) again on Mesa's rusticl
# (llvmpipe on the CPU), at the smallest shapes (RXGEMM_TEST_SMALL: the whole supernet's
# gradients, determinism, the genotype, memory and refusals; not the longer learning and
# resume runs). A search step that only PoCL runs right fails here.
# Skipped (77) when Mesa's OpenCL ICD is not installed.
set -eu
here=$(dirname "$0")
if ! [ -e /etc/OpenCL/vendors/rusticl.icd ]; then
	echo "rusticl is not installed (Debian: mesa-opencl-icd): skipping"
	exit 77
fi
RUSTICL_ENABLE=${RUSTICL_ENABLE:-llvmpipe} RXGEMM_TEST_DEVICE=rusticl RXGEMM_TEST_SMALL=1 \
	exec "${TESTS_BUILDDIR:-$here}/test-search"

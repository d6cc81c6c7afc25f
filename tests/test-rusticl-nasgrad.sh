#!/bin/sh
# test-rusticl-nasgrad.sh: the backward and optimiser kernels' tests (test-nasgrad) again on
# Mesa's rusticl (llvmpipe on the CPU), which compiles OpenCL C as rusticl does on a GPU: a
# kernel that only PoCL accepts fails here. The shapes are small already.
# Skipped (77) when Mesa's OpenCL ICD is not installed.
set -eu
here=$(dirname "$0")
if ! [ -e /etc/OpenCL/vendors/rusticl.icd ]; then
	echo "rusticl is not installed (Debian: mesa-opencl-icd): skipping"
	exit 77
fi
RUSTICL_ENABLE=${RUSTICL_ENABLE:-llvmpipe} RXGEMM_TEST_DEVICE=rusticl RXGEMM_TEST_SMALL=1 \
	exec "${TESTS_BUILDDIR:-$here}/test-nasgrad"

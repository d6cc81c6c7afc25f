#!/bin/sh
# test-rusticl.sh: the kernel correctness tests again on Mesa's rusticl (llvmpipe on the
# CPU). rusticl shares its OpenCL C compiler path with rusticl on an RX 590, so a kernel
# that only PoCL accepts fails here. Small shapes: llvmpipe runs at about 1 GFLOPS.
# Skipped (77) when Mesa's OpenCL ICD is not installed.
set -eu
here=$(dirname "$0")
if ! [ -e /etc/OpenCL/vendors/rusticl.icd ]; then
	echo "rusticl is not installed (Debian: mesa-opencl-icd): skipping"
	exit 77
fi
RUSTICL_ENABLE=${RUSTICL_ENABLE:-llvmpipe} RXGEMM_TEST_DEVICE=rusticl RXGEMM_TEST_SMALL=1 \
	exec "${TESTS_BUILDDIR:-$here}/test-gemm"

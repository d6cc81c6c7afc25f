#!/bin/bash
# run-syscalls.sh: the system calls rxgemmd makes with NVIDIA's OpenCL driver, on a GPU
# machine (the device tool), for rxgemmd.service's SystemCallFilter=: tests/test-syscalls.sh
# traces the daemon there and writes the calls it saw to $OUT/calls.txt, which is then
# checked here against the unit's filter (the GPU machine has no systemd-analyze):
#   RXGEMM_SYSCALLS_OUT=calls.txt RXGEMMD=... RXGEMM=... tests/test-syscalls.sh
# Build here, then:
#   ../shared/gpu/bundle daemon/rxgemmd client/rxgemm /usr/bin/strace /usr/bin/pgrep
# and on the GPU machine: bash tests/gpu/run-syscalls.sh (results under $OUT).
set -uo pipefail
. .gpu/env.sh
: "${OUT:?OUT must name a folder for the results}"
RXGEMMD=$(command -v rxgemmd) RXGEMM=$(command -v rxgemm) TESTS_SRCDIR=tests \
	RXGEMM_TEST_DEVICE=${DEVICE:-NVIDIA} RXGEMM_SYSCALLS_ONLY_DEVICE=1 \
	RXGEMM_SYSCALLS_OUT=$OUT/calls.txt \
	bash tests/test-syscalls.sh 2>&1 | tee "$OUT/syscalls.log"

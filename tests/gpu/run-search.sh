#!/bin/bash
# run-search.sh: the DARTS search engine (daemon/search.c) on a GPU machine (the device tool),
# beside the PyTorch reference in the same run:
#   1. test-search on the GPU's driver (gradients against the double reference, learning,
#      determinism, resume);
#   2. rxgemmd's first-order step at the reference configuration (C 16, 8 layers, batch 64,
#      32x32): bench-search, forward, backward and update medians;
#   3. the same step in PyTorch eager mode (tests/gpu/search_torch_ref.py --time);
#   4. the same search in both: bench-search --dump (state after 0, 1 and 10 steps on the
#      same batches) and search_torch_ref.py --compare, which exits 1 on disagreement, at a
#      small network and at the reference configuration.
# Build here, then:
#   ../shared/gpu/bundle tests/test-search tests/bench-search
# and on the GPU machine: bash tests/gpu/run-search.sh (results under $OUT, summary in
# $OUT/search.txt). Variables (optional): DEVICE (NVIDIA), STEPS (10).
set -uo pipefail
. .gpu/env.sh
: "${OUT:?OUT must name a folder for the results}"
DEVICE=${DEVICE:-NVIDIA}
STEPS=${STEPS:-10}
W=$(mktemp -d "${TMPDIR:-/tmp}/rxsearch.XXXXXX")
trap 'rm -rf "$W"' EXIT
rc=0
S=$OUT/search.txt
: >"$S"

step() {
	local name=$1 s=0
	shift
	echo "== $name" | tee -a "$S"
	timeout 600 "$@" >"$OUT/$name.log" 2>&1 || s=$?
	tail -n 4 "$OUT/$name.log" | tee -a "$S"
	[ "$s" -eq 0 ] || { rc=1; echo "   $name failed (rc $s)" | tee -a "$S"; }
}

{ date -u; nvidia-smi -L; } >"$OUT/devices.txt" 2>&1
step test-search env RXGEMM_TEST_DEVICE="$DEVICE" CK_DEFAULT_TIMEOUT=600 test-search
step bench-search bench-search 16 8 64 32 "$STEPS" "$DEVICE"
step torch-time python3 tests/gpu/search_torch_ref.py --time --C 16 --layers 8 --batch 64 \
	--size 32 --steps "$STEPS"
step dump-small bench-search --dump "$W/small" 4 3 8 16 "$DEVICE"
step compare-small python3 tests/gpu/search_torch_ref.py --compare "$W/small"
step dump-ref bench-search --dump "$W/ref" 16 8 64 32 "$DEVICE"
step compare-ref python3 tests/gpu/search_torch_ref.py --compare "$W/ref"
exit $rc

#!/bin/bash
# run-search-sharing.sh: issue 17's sharing figure on a GPU machine (the device tool): a
# tiny GEMM's round trip (p50, p99) from one client while another runs a DARTS search job
# through the same daemon (the reference configuration: C 16, 8 layers, batch 64, 32x32,
# on synthetic data), beside the same round trip with the GPU to itself; the goal is a p99
# under 5 ms during the search. The search's per-step forward, backward and update times
# come from its own progress reports. Build here, then:
#   ../shared/gpu/bundle daemon/rxgemmd client/rxgemm tests/bench-sharing
#   cp client/.libs/librxgemm.so.0 .gpu/lib/
# and on the GPU machine: bash tests/gpu/run-search-sharing.sh (a few minutes; results
# under $OUT: summary.txt, the latency JSON of both runs, the search's JSON lines, the
# daemon's log).
#
# LOCAL=1 tests/gpu/run-search-sharing.sh runs the same steps here with this build tree's
# programs, the default OpenCL device (PoCL) and a tiny search: a check of the script.
# Variables (optional): DEVICE (default NVIDIA; LOCAL: the daemon's choice), C, LAYERS,
# BATCH, SIDE, ITERATIONS (of the tiny GEMM), SMALL (its size, default 8), OUT.
set -uo pipefail

if [ -n "${LOCAL:-}" ]; then
	top=$(cd "$(dirname "$0")/../.." && pwd)
	RXGEMMD=$top/daemon/rxgemmd RXGEMM=$top/client/rxgemm SHARING=$top/tests/bench-sharing
	DEVICE=${DEVICE:-}
	C=${C:-4} LAYERS=${LAYERS:-3} BATCH=${BATCH:-2} SIDE=${SIDE:-8}
	ITERATIONS=${ITERATIONS:-50}
	OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/run-search-sharing.XXXXXX")}
else
	# shellcheck source=/dev/null
	. .gpu/env.sh
	RXGEMMD=rxgemmd RXGEMM=rxgemm SHARING=bench-sharing
	DEVICE=${DEVICE-NVIDIA}
	C=${C:-16} LAYERS=${LAYERS:-8} BATCH=${BATCH:-64} SIDE=${SIDE:-32}
	ITERATIONS=${ITERATIONS:-3000}
fi
SMALL=${SMALL:-8}
: "${OUT:?OUT must name a folder for the results}"
mkdir -p "$OUT" || exit 1
PY=
for p in ${PYTHON:-} python3 /usr/bin/python3; do
	"$p" -c 'import numpy' 2>/dev/null && { PY=$p; break; }
done
[ -n "$PY" ] || { echo "no python3 with numpy (to make the search's data)" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/rxsearch.XXXXXX")
SOCK=$W/d.sock
PID= SPID=
rc=0
cleanup() {
	for p in $SPID $PID; do
		if kill -0 "$p" 2>/dev/null; then
			kill -TERM "$p"
			wait "$p"
		fi
	done
	rm -rf "$W"
}
trap cleanup EXIT

# Synthetic data: 4 batches per half (the data only have to keep the search busy).
"$PY" - "$W" "$BATCH" "$SIDE" <<'PY' || exit 1
import sys, numpy as np
w, b, s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(1)
for half in ("train", "valid"):
    np.save(f"{w}/{half}_x.npy", rng.standard_normal((4 * b, 3, s, s)).astype(np.float32))
    np.save(f"{w}/{half}_y.npy", rng.integers(0, 10, 4 * b).astype(np.int32))
PY

{
	date -u
	command -v nvidia-smi >/dev/null && nvidia-smi -L
	"$RXGEMMD" --list-devices
} >"$OUT/devices.txt" 2>&1
"$RXGEMMD" --socket "$SOCK" ${DEVICE:+--device "$DEVICE"} --cache-dir "$W/cache" --auto-tune never \
	</dev/null >"$OUT/daemon.log" 2>&1 &
PID=$!
for ((i = 0; i < 3000; i++)); do
	[ -S "$SOCK" ] && break
	kill -0 "$PID" 2>/dev/null || { echo "rxgemmd exited before it was ready:" >&2; tail "$OUT/daemon.log" >&2; exit 1; }
	sleep 0.1
done
[ -S "$SOCK" ] || { echo "rxgemmd not ready after 300 s" >&2; exit 1; }

# The tiny GEMM alone first.
timeout 300 "$SHARING" --socket "$SOCK" --latency --size "$SMALL" --iterations "$ITERATIONS" \
	--json >"$OUT/alone.json" 2>"$OUT/alone.err" || rc=1

# The search, long enough to outlast the measurement; the measurement starts once it has
# reported its first step (it is then running, not compiling or waiting).
"$RXGEMM" --socket "$SOCK" nas-search --train-images "$W/train_x.npy" \
	--train-labels "$W/train_y.npy" --valid-images "$W/valid_x.npy" \
	--valid-labels "$W/valid_y.npy" --C "$C" --layers "$LAYERS" --batch "$BATCH" \
	--epochs 1000000 --max-steps 1000000 --json >"$OUT/search.jsonl" 2>"$OUT/search.err" &
SPID=$!
for ((i = 0; i < 6000; i++)); do
	grep -q '"event":"progress"' "$OUT/search.jsonl" 2>/dev/null && break
	kill -0 "$SPID" 2>/dev/null || break
	sleep 0.1
done
if ! grep -q '"event":"progress"' "$OUT/search.jsonl"; then
	echo "the search reported no step:" >&2
	tail "$OUT/search.err" >&2
	exit 1
fi
timeout 600 "$SHARING" --socket "$SOCK" --latency --size "$SMALL" --iterations "$ITERATIONS" \
	--json >"$OUT/beside-search.json" 2>"$OUT/beside-search.err" || rc=1
# Ctrl-C: the search is cancelled between two steps; still running then, it exits 130.
kill -INT "$SPID"
s=0
wait "$SPID" || s=$?
SPID=
[ "$s" -eq 130 ] || { echo "the search exited $s, not 130 (cancelled while running)" >&2; rc=1; }
"$RXGEMM" --socket "$SOCK" status --json >"$OUT/status.json" 2>&1
kill -TERM "$PID"
wait "$PID" || rc=1
PID=

"$PY" - "$OUT" "$C" "$LAYERS" "$BATCH" "$SIDE" <<'PY' | tee "$OUT/summary.txt"
import json, statistics, sys
d, c, layers, batch, side = sys.argv[1:6]
def lat(name):
    j = json.load(open(f"{d}/{name}.json"))
    return next(v for v in j.values() if isinstance(v, dict) and "p99_ms" in v)
steps = [json.loads(l) for l in open(f"{d}/search.jsonl") if '"progress"' in l]
print(f"search: C {c}, {layers} layers, batch {batch}, {side}x{side}; {len(steps)} steps during the run")
if steps:
    for k in ("forward_ns", "backward_ns", "update_ns"):
        print(f"  step {k[:-3]}: median {statistics.median(s[k] for s in steps) / 1e6:.2f} ms")
for name, label in (("alone", "tiny GEMM alone"), ("beside-search", "tiny GEMM beside the search")):
    l = lat(name)
    print(f"{label}: p50 {l['p50_ms']:.3f} ms, p99 {l['p99_ms']:.3f} ms, max {l['max_ms']:.3f} ms"
          f" ({l['jobs']} jobs, {l['wrong']} wrong, {l['failed']} failed)")
print("goal (issue 17): p99 under 5 ms beside the search:",
      "met" if lat("beside-search")["p99_ms"] < 5 else "NOT met")
PY
exit $rc

#!/bin/bash
# run-resident.sh: GEMMs on device tensors on a GPU machine (the device tool), in
# one run: tests/test-tensor against the GPU (the copy paths a CPU device never takes), then
# rxgemm gemm --resident at each size beside the same job inline, and a tiny job's round
# trip on tensors; summary.md compares each run's wall time with its kernel time.
# Build here, then:
#   ../shared/gpu/bundle daemon/rxgemmd client/rxgemm tests/test-tensor
#   cp client/.libs/librxgemm.so.0 .gpu/lib/
# and on the GPU machine: bash tests/gpu/run-resident.sh (results under $OUT).
# Variables (optional): SIZES (default 1024 2048 4096 8192), RUNS (20), DEVICE (NVIDIA).
set -uo pipefail
. .gpu/env.sh
: "${OUT:?OUT must name a folder for the results}"
SIZES=${SIZES:-1024 2048 4096 8192}
RUNS=${RUNS:-20}
DEVICE=${DEVICE-NVIDIA}
W=$(mktemp -d "${TMPDIR:-/tmp}/rxres.XXXXXX")
SOCK=$W/d.sock
PID=
rc=0
cleanup() {
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
		kill -TERM "$PID"
		wait "$PID"
	fi
	rm -rf "$W"
}
trap cleanup EXIT

{ date -u; nvidia-smi -L; } >"$OUT/devices.txt" 2>&1
# The check suite on the GPU: every operand-source mix, the chain, accounting, misuse.
RXGEMMD=$(command -v rxgemmd) RXGEMM_TEST_DEVICE=$DEVICE timeout 500 test-tensor \
	>"$OUT/test-tensor.txt" 2>&1 || { rc=1; echo "test-tensor failed" >&2; }

rxgemmd --socket "$SOCK" ${DEVICE:+--device "$DEVICE"} --auto-tune never \
	--cache-dir "$W/cache" --max-frame 1G --client-max-memory 4G </dev/null \
	>"$OUT/daemon.log" 2>&1 &
PID=$!
for ((i = 0; i < 3000; i++)); do
	[ -S "$SOCK" ] && break
	kill -0 "$PID" 2>/dev/null || { echo "rxgemmd exited" >&2; tail "$OUT/daemon.log" >&2; exit 1; }
	sleep 0.1
done
for n in $SIZES; do
	# The CPU reference (summed in double) takes too long past 2048^3.
	check=; [ "$n" -le 2048 ] && check=--check
	timeout 300 rxgemm --socket "$SOCK" gemm -m "$n" -n "$n" -k "$n" --resident "$RUNS" $check \
		--json >"$OUT/resident-$n.json" 2>>"$OUT/errors.txt" || rc=1
	timeout 300 rxgemm --socket "$SOCK" gemm -m "$n" -n "$n" -k "$n" --repeat 5 --shm never \
		--json >"$OUT/inline-$n.json" 2>>"$OUT/errors.txt" || rc=1
done
timeout 300 rxgemm --socket "$SOCK" gemm -m 8 -n 8 -k 8 --resident 2000 --json \
	>"$OUT/resident-tiny.json" 2>>"$OUT/errors.txt" || rc=1

python3 - "$OUT" $SIZES >"$OUT/summary.md" 2>"$OUT/summary.err" <<'PY'
import json, os, sys
d, sizes = sys.argv[1], sys.argv[2:]
def load(name):
    try:
        return json.load(open(os.path.join(d, name)))
    except Exception as e:
        print("(%s: %s)" % (name, e)); return None
print("# GEMMs on device tensors (rxgemm gemm --resident), median of the runs\n")
print("| n | kernel ms | wall ms | wall/kernel | TFLOPS (wall) | upload ms | read-back ms | inline wall ms | check |")
print("|---|---|---|---|---|---|---|---|---|")
for n in sizes:
    r, i = load("resident-%s.json" % n), load("inline-%s.json" % n)
    if not r: continue
    m = r["summary"]["median"]
    iw = i["summary"]["median"]["wall_ns"] / 1e6 if i else float("nan")
    print("| %s | %.3f | %.3f | %.2f | %.1f | %.2f | %.2f | %.3f | %s |" % (
        n, m["kernel_ns"] / 1e6, m["wall_ns"] / 1e6, m["wall_ns"] / max(m["kernel_ns"], 1),
        r["flops"] / m["wall_ns"] / 1e3, r["resident"]["upload_ns"] / 1e6,
        r["resident"]["read_ns"] / 1e6, iw,
        "-" if not r["check"] else "ok" if r["check"]["ok"] else "FAILED"))
t = load("resident-tiny.json")
if t:
    walls = sorted(x["wall_ns"] for x in t["runs"])
    print("\ntiny 8^3 on tensors, %d runs: round trip p50 %.3f ms, p90 %.3f ms" % (
        len(walls), walls[len(walls) // 2] / 1e6, walls[len(walls) * 9 // 10] / 1e6))
PY
tail -n 3 "$OUT/test-tensor.txt" >>"$OUT/summary.md"
cat "$OUT/summary.md"
# What comes back from the device tool is a few files: the raw results go in one archive.
(cd "$OUT" && tar czf raw.tar.gz --exclude=raw.tar.gz --exclude=summary.md -- * && \
	find . -maxdepth 1 -type f ! -name raw.tar.gz ! -name summary.md -delete)
exit $rc

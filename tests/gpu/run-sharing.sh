#!/bin/bash
# run-sharing.sh: the sharing measurements on a GPU machine (the device tool): how rxgemmd
# shares the GPU between clients (1, 2, 4 and 8 clients submitting 1024^3 GEMMs, matrices
# in the frames and in shared memory), a tiny job's latency alone and beside a 4096^3
# neighbour, and what the daemon path costs one GEMM: bench-sharing --overhead (through
# the daemon, shared memory) against rxgemm-bench --e2e (the same job in-process, malloc'd
# and pinned host memory) at 1024, 2048 and 4096; the goal is within 5% at n >= 1024.
# Build here, then:
#   ../shared/gpu/bundle daemon/rxgemmd client/rxgemm tools/rxgemm-bench tests/bench-sharing
#   cp client/.libs/librxgemm.so.0 .gpu/lib/
# and on the GPU machine: bash tests/gpu/run-sharing.sh (under 5 minutes; results under
# $OUT: summary.md, one JSON or CSV per run with its stderr beside it, the daemon's log and
# final status).
#
# LOCAL=1 tests/gpu/run-sharing.sh runs the same steps on this machine with this build
# tree's programs, the default OpenCL device (PoCL) and small sizes: a check of the script.
# Variables (optional): DEVICE (default NVIDIA; LOCAL: the daemons' own choice), SIZE,
# CLIENTS, SECONDS_EACH, SMALL, BIG, ITERATIONS, SIZES (the overhead's), REPEAT, OUT.
set -uo pipefail

if [ -n "${LOCAL:-}" ]; then
	top=$(cd "$(dirname "$0")/../.." && pwd)
	RXGEMMD=$top/daemon/rxgemmd RXGEMM=$top/client/rxgemm
	BENCH=$top/tools/rxgemm-bench SHARING=$top/tests/bench-sharing
	DEVICE=${DEVICE:-}
	SIZE=${SIZE:-64} CLIENTS=${CLIENTS:-1 2} SECONDS_EACH=${SECONDS_EACH:-0.5}
	BIG=${BIG:-128} ITERATIONS=${ITERATIONS:-200} SIZES=${SIZES:-64,128} REPEAT=${REPEAT:-5}
	OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/run-sharing.XXXXXX")}
else
	# shellcheck source=/dev/null
	. .gpu/env.sh
	RXGEMMD=rxgemmd RXGEMM=rxgemm BENCH=rxgemm-bench SHARING=bench-sharing
	DEVICE=${DEVICE-NVIDIA}
	SIZE=${SIZE:-1024} CLIENTS=${CLIENTS:-1 2 4 8} SECONDS_EACH=${SECONDS_EACH:-5}
	BIG=${BIG:-4096} ITERATIONS=${ITERATIONS:-5000} SIZES=${SIZES:-1024,2048,4096}
	REPEAT=${REPEAT:-20}
fi
SMALL=${SMALL:-8}
: "${OUT:?OUT must name a folder for the results}"
mkdir -p "$OUT" || exit 1
W=$(mktemp -d "${TMPDIR:-/tmp}/rxshare.XXXXXX")
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

# step NAME OUTFILE CMD...: run CMD under a time limit, stdout to $OUT/OUTFILE, stderr to
# $OUT/NAME.err; a failure is noted in $OUT/steps.txt and the run goes on.
step() {
	local name=$1 file=$2 s=0
	shift 2
	echo "== $name" >&2
	timeout 200 "$@" >"$OUT/$file" 2>"$OUT/$name.err" || s=$?
	echo "$name rc=$s: $*" >>"$OUT/steps.txt"
	[ "$s" -eq 0 ] || { rc=1; echo "   $name failed (rc $s): $(tail -n 3 "$OUT/$name.err")" >&2; }
}

{
	date -u
	command -v nvidia-smi >/dev/null && nvidia-smi -L
	"$RXGEMMD" --list-devices
} >"$OUT/devices.txt" 2>&1
: >"$OUT/steps.txt"

# The in-process side first, with the GPU to itself: the daemon's job (writes of A and B,
# compute, read of C) by the wall clock, from malloc'd and from pinned host memory.
step e2e e2e.csv "$BENCH" ${DEVICE:+--device "$DEVICE"} --e2e --sizes "$SIZES" \
	--repeat "$REPEAT" --csv

# The daemon: no tuning and an empty kernel cache, so that it runs the engine's default
# kernels, the ones rxgemm-bench --e2e ran (both print the variant: the summary compares).
"$RXGEMMD" --socket "$SOCK" ${DEVICE:+--device "$DEVICE"} --auto-tune never \
	--cache-dir "$W/cache" --max-frame 1G </dev/null >"$OUT/daemon.log" 2>&1 &
PID=$!
t0=$(date +%s)
for ((i = 0; i < 3000; i++)); do
	[ -S "$SOCK" ] && break
	kill -0 "$PID" 2>/dev/null || { echo "rxgemmd exited before it was ready:" >&2; tail "$OUT/daemon.log" >&2; exit 1; }
	sleep 0.1
done
[ -S "$SOCK" ] || { echo "rxgemmd not ready after 300 s" >&2; exit 1; }
echo "rxgemmd ready after $(($(date +%s) - t0)) s" | tee -a "$OUT/steps.txt" >&2

for shm in "" --shm; do
	for n in $CLIENTS; do
		step "clients-$n${shm:+-shm}" "clients-$n${shm:+-shm}.json" "$SHARING" --socket "$SOCK" \
			--clients "$n" --seconds "$SECONDS_EACH" --size "$SIZE" $shm --json
	done
done
step latency latency.json "$SHARING" --socket "$SOCK" --latency --size "$SMALL" \
	--iterations "$ITERATIONS" --json
step latency-shm latency-shm.json "$SHARING" --socket "$SOCK" --latency --size "$SMALL" \
	--iterations "$ITERATIONS" --shm --json
step neighbour-shm neighbour-shm.json "$SHARING" --socket "$SOCK" --neighbour --shm \
	--size "$SMALL" --big-size "$BIG" --seconds "$SECONDS_EACH" --json
step overhead overhead.json "$SHARING" --socket "$SOCK" --overhead --sizes "$SIZES" \
	--repeat "$REPEAT" --baseline "$OUT/e2e.csv" --json
step overhead-noshm overhead-noshm.json "$SHARING" --socket "$SOCK" --overhead --no-shm \
	--sizes "$SIZES" --repeat "$REPEAT" --baseline "$OUT/e2e.csv" --json
"$RXGEMM" --socket "$SOCK" status --json >"$OUT/status.json" 2>&1
kill -TERM "$PID"
s=0
wait "$PID" || s=$?
PID=
echo "rxgemmd rc=$s after SIGTERM" >>"$OUT/steps.txt"
[ "$s" -eq 0 ] || rc=1

# shellcheck disable=SC2086 # one argument per client count
python3 - "$OUT" "$SIZE" $CLIENTS >"$OUT/summary.md" 2>"$OUT/summary.err" <<'PY'
import csv, json, os, sys
d, size, counts = sys.argv[1], sys.argv[2], sys.argv[3:]

def load(name):
    try:
        return json.load(open(os.path.join(d, name)))
    except Exception as e:
        print("(%s: %s)" % (name, e))
        return None

def f(x, fmt="%.3f"):
    return "-" if x is None else fmt % x

print("# rxgemmd sharing and overhead")
print()
print(open(os.path.join(d, "steps.txt")).read().replace("\n", "  \n"))
for shm in (False, True):
    runs = [r for r in (load("clients-%s%s.json" % (n, "-shm" if shm else "")) for n in counts) if r]
    if not runs:
        continue
    if not shm:
        print("device:", runs[0]["device"])
    print()
    print("%s^3 GEMMs back to back, matrices %s:" % (size, "in shared memory" if shm else "in the frames"))
    print()
    print("| clients | jobs/s | GFLOPS | per client GFLOPS (min-max) | Jain | device busy | mean ms (max client) | all verified |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        pc = r["per_client"]
        g = [c["gflops"] or 0 for c in pc]
        ok = r["verified"] == r["jobs"] and r["wrong"] == 0 and r["failed"] == 0
        print("| %d | %.1f | %.1f | %.1f-%.1f | %.4f | %.0f%% | %.2f | %s |" % (
            r["clients"], r["jobs_per_s"] or 0, r["gflops"] or 0, min(g), max(g), r["jain"] or 0,
            100 * (r["device_busy"] or 0), max(c["mean_ms"] or 0 for c in pc),
            "yes (%d jobs)" % r["jobs"] if ok else "NO"))
lat, lats, nb = load("latency.json"), load("latency-shm.json"), load("neighbour-shm.json")
rows = []
if lat: rows.append(("alone, frames", lat["alone"]))
if lats: rows.append(("alone, shm", lats["alone"]))
if nb:
    rows.append(("alone, shm (neighbour run)", nb["alone"]))
    rows.append(("beside %d^3 GEMMs, shm" % nb["big_size"], nb["beside"]))
if rows:
    print()
    print("| %s^3 round trip, ms | jobs | min | p50 | p90 | p99 | max | daemon p50 | verified |" % (lat or lats or nb)["size"])
    print("|---|---|---|---|---|---|---|---|---|")
    for label, x in rows:
        print("| %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            label, x["jobs"], f(x["min_ms"]), f(x["p50_ms"]), f(x["p90_ms"]), f(x["p99_ms"]),
            f(x["max_ms"]), f(x["daemon_p50_ms"]), "yes" if x["verified"] == x["jobs"] else "NO"))
if nb:
    print()
    print("p50 beside / alone: %.1fx; the neighbour ran %d jobs at %.1f GFLOPS" % (
        nb["p50_ratio"] or 0, nb["neighbour"]["jobs"], nb["neighbour"]["gflops"] or 0))
e2e = {}
try:
    for r in csv.DictReader(open(os.path.join(d, "e2e.csv"))):
        e2e[(int(r["n"]), r["host"])] = r
except Exception as e:
    print("(e2e.csv: %s)" % e)
for name, label in (("overhead.json", "shared memory"), ("overhead-noshm.json", "matrices in the frames")):
    ov = load(name)
    if not ov:
        continue
    print()
    print("One n^3 GEMM end to end (C = A B, beta 0), median of %d (best), ms; through the daemon with %s, against rxgemm-bench --e2e in-process:" % (ov["repeat"], label))
    print()
    print("| n | daemon path | daemon's own time | h2d / kernel / d2h (device) | in-process malloc | in-process pinned | daemon / malloc | daemon / pinned | within 5% of malloc | kernels |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in ov["results"]:
        m, p = e2e.get((r["n"], "malloc")), e2e.get((r["n"], "pinned"))
        same = m is not None and m["kernel"] == r["kernel"]
        print("| %d | %s (%s) | %s | %s / %s / %s | %s (%s) | %s (%s) | %s | %s | %s | %s |" % (
            r["n"], f(r["wall_p50_ms"]), f(r["wall_best_ms"]), f(r["daemon_p50_ms"]),
            f(r["h2d_p50_ms"]), f(r["kernel_p50_ms"]), f(r["d2h_p50_ms"]),
            m["median_ms"] if m else "-", m["best_ms"] if m else "-",
            p["median_ms"] if p else "-", p["best_ms"] if p else "-",
            f(r["ratio_inproc"]), f(r["ratio_pinned"]),
            "-" if r["ratio_inproc"] is None else ("yes" if r["ratio_inproc"] <= 1.05 else "no"),
            "same" if same else "DIFFER: %s vs %s" % (r["kernel"], m["kernel"] if m else "-")))
if e2e:
    print()
    print("In-process phases (rxgemm-bench --e2e, medians, ms):")
    print()
    print("| n | host | wall | h2d | kernel | d2h | GFLOPS | check |")
    print("|---|---|---|---|---|---|---|---|")
    for (n, host), r in sorted(e2e.items()):
        print("| %d | %s | %s | %s | %s | %s | %s | %s |" % (n, host, r["median_ms"], r["h2d_ms"],
              r["kernel_ms"], r["d2h_ms"], r["gflops"], r["check"]))
PY
[ -s "$OUT/summary.err" ] && { rc=1; cat "$OUT/summary.err" >&2; }
cat "$OUT/summary.md"
echo "results: $OUT" >&2
exit "$rc"

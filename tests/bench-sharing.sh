#!/bin/bash
# bench-sharing.sh: how rxgemmd shares its device. Starts a daemon, runs
# tests/bench-sharing with 1, 2, 4 and 8 clients submitting SIZE^3 GEMMs back to back, then
# the latency of a tiny job alone and beside a client submitting BIG^3 GEMMs, and prints a
# summary. A benchmark, not a test: make check does not run it (tests/test-sharing.sh is
# its smoke test).
#
#   RXGEMMD=daemon/rxgemmd BENCH_SHARING=tests/bench-sharing tests/bench-sharing.sh
#
# Variables (all optional):
#   RXGEMMD        the daemon (default: rxgemmd on PATH)
#   BENCH_SHARING  the benchmark program (default: bench-sharing beside this script)
#   DEVICE         --device for the daemon (default: its own choice, the first GPU)
#   CLIENTS        the client counts (default "1 2 4 8")
#   SECONDS_EACH   seconds per run and per latency phase (default 5)
#   SIZE           the clients' m = n = k (default 1024)
#   SMALL, BIG     the latency job's and the neighbour's sizes (default 8 and 4096)
#   ITERATIONS     tiny jobs in the latency run (default 5000)
#   OUT            a folder for the raw JSON and the daemon's log
#   DAEMON_ARGS    more options for the daemon
set -euo pipefail

RXGEMMD=${RXGEMMD:-rxgemmd}
BENCH_SHARING=${BENCH_SHARING:-$(dirname "$0")/bench-sharing}
CLIENTS=${CLIENTS:-1 2 4 8}
SECONDS_EACH=${SECONDS_EACH:-5}
SIZE=${SIZE:-1024}
SMALL=${SMALL:-8}
BIG=${BIG:-4096}
ITERATIONS=${ITERATIONS:-5000}
DEVICE=${DEVICE:-}

for p in "$RXGEMMD" "$BENCH_SHARING"; do
	command -v "$p" >/dev/null || { echo "bench-sharing: $p is not a program (set RXGEMMD and BENCH_SHARING)" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "bench-sharing: the summary needs python3" >&2; exit 2; }
W=$(mktemp -d "${TMPDIR:-/tmp}/rxgshare.XXXXXX")
PID=
cleanup() {
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
		kill -TERM "$PID"
		wait "$PID" || true
	fi
	rm -rf "$W"
}
trap cleanup EXIT
OUT=${OUT:-}
[ -n "$OUT" ] && mkdir -p "$OUT"
R=${OUT:-$W}
SOCK=$W/d.sock

# shellcheck disable=SC2086
"$RXGEMMD" --socket "$SOCK" ${DEVICE:+--device "$DEVICE"} ${DAEMON_ARGS:-} </dev/null >"$R/daemon.log" 2>&1 &
PID=$!
for ((i = 0; i < 6000; i++)); do
	[ -S "$SOCK" ] && break
	kill -0 "$PID" 2>/dev/null || { echo "rxgemmd exited before it was ready:" >&2; cat "$R/daemon.log" >&2; exit 1; }
	sleep 0.05
done
[ -S "$SOCK" ] || { echo "rxgemmd not ready after 300 s" >&2; exit 1; }

rc=0
for n in $CLIENTS; do
	echo "== $n clients, ${SIZE}^3, ${SECONDS_EACH} s" >&2
	"$BENCH_SHARING" --socket "$SOCK" --clients "$n" --seconds "$SECONDS_EACH" --size "$SIZE" \
		--json >"$R/clients-$n.json" || rc=1
done
echo "== latency, ${SMALL}^3 x $ITERATIONS" >&2
"$BENCH_SHARING" --socket "$SOCK" --latency --size "$SMALL" --iterations "$ITERATIONS" --json \
	>"$R/latency.json" || rc=1
echo "== neighbour, ${SMALL}^3 beside ${BIG}^3, ${SECONDS_EACH} s each" >&2
"$BENCH_SHARING" --socket "$SOCK" --neighbour --size "$SMALL" --big-size "$BIG" \
	--seconds "$SECONDS_EACH" --json >"$R/neighbour.json" || rc=1
kill -TERM "$PID"
wait "$PID" || { echo "rxgemmd exited with $? after SIGTERM" >&2; rc=1; }
PID=

echo
echo "rxgemmd sharing, $(date -u +%Y-%m-%d)"
echo "command: CLIENTS=\"$CLIENTS\" SECONDS_EACH=$SECONDS_EACH SIZE=$SIZE SMALL=$SMALL BIG=$BIG${DEVICE:+ DEVICE=$DEVICE} tests/bench-sharing.sh"
python3 - "$R" $CLIENTS <<'PY'
import json, sys
d, counts = sys.argv[1], sys.argv[2:]
runs = [json.load(open("%s/clients-%s.json" % (d, n))) for n in counts]
print("device:", runs[0]["device"])
print()
print("| clients | jobs/s | GFLOPS | per client GFLOPS (min-max) | Jain | device busy | mean ms (max client) | all verified |")
print("|---|---|---|---|---|---|---|---|")
for r in runs:
    pc = r["per_client"]
    g = [c["gflops"] or 0 for c in pc]
    ok = r["verified"] == r["jobs"] and r["wrong"] == 0 and r["failed"] == 0
    print("| %d | %.1f | %.1f | %.1f-%.1f | %.4f | %.0f%% | %.2f | %s |" % (
        r["clients"], r["jobs_per_s"], r["gflops"], min(g), max(g), r["jain"] or 0,
        100 * (r["device_busy"] or 0), max(c["mean_ms"] or 0 for c in pc),
        "yes (%d jobs)" % r["jobs"] if ok else "NO"))
lat = json.load(open(d + "/latency.json"))
nb = json.load(open(d + "/neighbour.json"))
print()
print("| %d^3 round trip, ms | jobs | p50 | p90 | p99 | max | daemon p50 |" % lat["size"])
print("|---|---|---|---|---|---|---|")
for label, x in (("latency run", lat["alone"]), ("alone", nb["alone"]),
                 ("beside %d^3 GEMMs" % nb["big_size"], nb["beside"])):
    print("| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f |" % (
        label, x["jobs"], x["p50_ms"], x["p90_ms"], x["p99_ms"], x["max_ms"], x["daemon_p50_ms"]))
print()
print("p50 beside / alone: %.1fx; the neighbour ran %d jobs at %.1f GFLOPS" % (
    nb["p50_ratio"], nb["neighbour"]["jobs"], nb["neighbour"]["gflops"] or 0))
PY
[ -n "$OUT" ] && echo "raw figures: $OUT"
exit "$rc"

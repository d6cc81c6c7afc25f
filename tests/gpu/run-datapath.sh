#!/bin/bash
# run-datapath.sh: the data path's measurements on a GPU machine (the device tool), in one
# run: host <-> device bandwidth from each kind of host memory (tests/bench-xfer), whether
# a wrapped shared-memory region takes device memory, PyTorch's GEMM from pageable, pinned
# and resident memory (../shared/gpu/torch_anchors.py, copied beside this script's
# output by the caller as torch_anchors.py in the checkout's .gpu/), and one GEMM through
# rxgemmd with its matrices in shared memory and in the frames (bench-sharing --overhead),
# plus a tiny job's round trip; and the same GEMM on device tensors (--resident): all six
# paths (inline, shm, resident; PyTorch pageable, pinned, resident) in one table, ours both
# checked job by job and back to back as PyTorch times its own ("b2b"). Plain host
# arrays (staged by librxgemm) run twice, with its copy threads (the default) and with one
# (RXGEMM_COPY_THREADS=1), and tests/bench-copy times the staging copies alone by threads.
# tests/gpu/sock-ceiling.py times the bytes of each size's frames (A and B in, C out: 12
# MiB at 1024) crossing a bare Unix socket: the least the frames path can cost.
# Build here, then:
#   ../shared/gpu/bundle daemon/rxgemmd client/rxgemm tests/bench-sharing tests/bench-xfer \
#	tests/bench-copy
#   cp client/.libs/librxgemm.so.0 .gpu/lib/ && cp ../shared/gpu/torch_anchors.py .gpu/
# and on the GPU machine: bash tests/gpu/run-datapath.sh (about 4 minutes; results under
# $OUT: summary.md and the raw files beside it).
# Variables (optional): SIZES (default 1024,2048,4096,8192), REPEAT (10), DEVICE (NVIDIA).
set -uo pipefail
. .gpu/env.sh
: "${OUT:?OUT must name a folder for the results}"
SIZES=${SIZES:-1024,2048,4096,8192}
REPEAT=${REPEAT:-10}
DEVICE=${DEVICE-NVIDIA}
W=$(mktemp -d "${TMPDIR:-/tmp}/rxdata.XXXXXX")
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

step() {
	local name=$1 file=$2 s=0
	shift 2
	echo "== $name" >&2
	timeout 300 "$@" >"$OUT/$file" 2>"$OUT/$name.err" || s=$?
	echo "$name rc=$s: $*" >>"$OUT/steps.txt"
	[ "$s" -eq 0 ] || { rc=1; echo "   $name failed (rc $s): $(tail -n 3 "$OUT/$name.err")" >&2; }
}

: >"$OUT/steps.txt"
{ date -u; nvidia-smi -L; nvidia-smi --query-gpu=pcie.link.gen.current,pcie.link.width.current --format=csv; } \
	>"$OUT/devices.txt" 2>&1
step xfer xfer.csv bench-xfer --device "$DEVICE" --mib 4,64,256 --reps 7
VRAM_PROBE_CMD='nvidia-smi --query-gpu=memory.used --format=csv,noheader' \
	step vram-probe vram-probe.txt bench-xfer --device "$DEVICE" --vram-probe 4096
step copy copy.csv bench-copy --sizes "$SIZES" --threads 1,2,4,8,16 --reps 5
step torch torch.csv env PYTHONUNBUFFERED=1 python3 .gpu/torch_anchors.py ${SIZES//,/ }
SOCK_MIB=
for n in ${SIZES//,/ }; do SOCK_MIB+=${SOCK_MIB:+,}$((3 * n * n * 4 >> 20)); done
step socket socket.txt python3 tests/gpu/sock-ceiling.py "$SOCK_MIB" 5

# start_daemon ENV...: rxgemmd on $SOCK with the default kernels (no tuning, an empty cache).
start_daemon() {
	rm -rf "$W/cache"
	env "$@" rxgemmd --socket "$SOCK" ${DEVICE:+--device "$DEVICE"} --auto-tune never \
		--cache-dir "$W/cache" --max-frame 1G --client-max-memory 4G </dev/null \
		>>"$OUT/daemon.log" 2>&1 &
	PID=$!
	for ((i = 0; i < 3000; i++)); do
		[ -S "$SOCK" ] && return 0
		kill -0 "$PID" 2>/dev/null || { echo "rxgemmd exited before it was ready" >&2; tail "$OUT/daemon.log" >&2; exit 1; }
		sleep 0.1
	done
}
stop_daemon() {
	local s=0
	kill -TERM "$PID"
	wait "$PID" || s=$?
	PID=
	echo "rxgemmd rc=$s after SIGTERM" >>"$OUT/steps.txt"
}

# Copies and kernels one after the other (RXGEMMD_PIPELINE=never), for comparison.
start_daemon RXGEMMD_PIPELINE=never
step overhead-serial overhead-serial.json bench-sharing --socket "$SOCK" --overhead \
	--sizes "$SIZES" --repeat "$REPEAT" --json
stop_daemon
start_daemon RXGEMMD_PIPELINE=auto
step overhead overhead.json bench-sharing --socket "$SOCK" --overhead --sizes "$SIZES" \
	--repeat "$REPEAT" --json
# Plain host arrays: librxgemm stages them through shared memory of its own (the default),
# and the same with staging off, the matrices in the frames.
step overhead-noshm overhead-noshm.json bench-sharing --socket "$SOCK" --overhead --no-shm \
	--sizes "$SIZES" --repeat "$REPEAT" --json
step overhead-noshm-t1 overhead-noshm-t1.json env RXGEMM_COPY_THREADS=1 bench-sharing \
	--socket "$SOCK" --overhead --no-shm --sizes "$SIZES" --repeat "$REPEAT" --json
step overhead-frames overhead-frames.json env RXGEMM_STAGE_BYTES=off bench-sharing \
	--socket "$SOCK" --overhead --no-shm --sizes "$SIZES" --repeat "$REPEAT" --json
step overhead-resident overhead-resident.json bench-sharing --socket "$SOCK" --overhead \
	--resident --sizes "$SIZES" --repeat "$REPEAT" --json
step latency-shm latency-shm.json bench-sharing --socket "$SOCK" --latency --size 8 \
	--iterations 3000 --shm --json
rxgemm --socket "$SOCK" status --json >"$OUT/status.json" 2>&1
stop_daemon
# The frames path again with its operands and result copied from pageable memory, as
# before the daemon pinned them for the job (RXGEMMD_PIN_INLINE=never), for comparison.
start_daemon RXGEMMD_PIN_INLINE=never
step overhead-frames-unpinned overhead-frames-unpinned.json env RXGEMM_STAGE_BYTES=off \
	bench-sharing --socket "$SOCK" --overhead --no-shm --sizes "$SIZES" --repeat "$REPEAT" \
	--json
stop_daemon

python3 - "$OUT" >"$OUT/summary.md" 2>"$OUT/summary.err" <<'PY'
import csv, json, os, sys
d = sys.argv[1]
def load(name):
    try:
        return json.load(open(os.path.join(d, name)))
    except Exception as e:
        print("(%s: %s)" % (name, e)); return None
print("# rxgemmd data path\n")
torch = {}
try:
    for r in csv.DictReader(open(os.path.join(d, "torch.csv"))):
        torch[(r["path"], int(r["n"]))] = float(r["median_ms"])
except Exception as e:
    print("(torch.csv: %s)" % e)
ours = {}
for name, label in (("overhead.json", "shm"), ("overhead-noshm.json", "inline"), ("overhead-noshm-t1.json", "inline1"), ("overhead-frames.json", "frames"), ("overhead-frames-unpinned.json", "frames0"), ("overhead-serial.json", "serial"), ("overhead-resident.json", "resident")):
    j = load(name)
    if not j: continue
    rows = j.get("results", j if isinstance(j, list) else [])
    for r in rows:
        ours[(label, int(r["n"]))] = r
# The three ways a caller's matrices can reach the device, each beside PyTorch's own.
# "host" is plain arrays through rxg_gemm (librxgemm stages them), "frames" the same with
# staging off; "1 thread" the host arrays copied by the calling thread alone. "b2b":
# bench-sharing's back-to-back pass, its jobs timed with nothing between them as
# torch_anchors.py times its own (the other columns check each C between jobs, a gap longer
# than the daemon's busy poll); older JSON without it shows "-".
print("| n | frames unpinned ms | frames ms | host arrays 1 thread ms | host arrays ms | host/pinned | host b2b ms | host b2b/pinned | torch pageable ms | shm ms | torch pinned ms | shm/pinned | shm b2b ms | shm b2b/pinned | resident ms | resident b2b ms | torch resident ms | resident/resident | shm unpipelined ms | shm h2d+kernel+d2h ms |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
def ms(r): return None if not r else r.get("wall_p50_ms")
def b2b(r): return None if not r else r.get("b2b_p50_ms")
f = lambda x: "-" if x is None else "%.3f" % x
rat = lambda a, b: "-" if a is None or not b else "%.2f" % (a / b)
for n in sorted({k[1] for k in ours}):
    p = torch.get(("pinned", n)); pg = torch.get(("pageable", n)); rs = torch.get(("resident", n))
    s = ours.get(("shm", n)); i = ours.get(("inline", n)); se = ours.get(("serial", n))
    r = ours.get(("resident", n))
    def ph(r):
        if not r: return "-"
        return "%.3f+%.3f+%.3f" % (r.get("h2d_p50_ms") or 0, r.get("kernel_p50_ms") or 0, r.get("d2h_p50_ms") or 0)
    fr = ours.get(("frames", n)); i1 = ours.get(("inline1", n)); f0 = ours.get(("frames0", n))
    print("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (n, f(ms(f0)), f(ms(fr)), f(ms(i1)), f(ms(i)), rat(ms(i), p), f(b2b(i)), rat(b2b(i), p), f(pg), f(ms(s)), f(p), rat(ms(s), p), f(b2b(s)), rat(b2b(s), p), f(ms(r)), f(b2b(r)), f(rs), rat(ms(r), rs), f(ms(se)), ph(s)))
# Each target against torch pinned, per n: checked / back to back.
def vs_pinned(label):
    return ", ".join("%d: %s / %s" % (n, rat(ms(ours.get((label, n))), torch.get(("pinned", n))), rat(b2b(ours.get((label, n))), torch.get(("pinned", n))))
                     for n in sorted({k[1] for k in ours}))
print("\nThe targets (over torch pinned, checked / b2b): shm at most 1.1x (%s);" % vs_pinned("shm"))
print("host arrays at most 2x (%s);" % vs_pinned("inline"))
print("frames (%s; unpinned %s);" % (vs_pinned("frames"), vs_pinned("frames0")))
print("resident within 1.1x of the kernel alone.")
try:
    rows = list(csv.DictReader(open(os.path.join(d, "copy.csv"))))
    print("\nlibrxgemm's staging copies alone (bench-copy: A and B in, C out; reused buffer, and a fresh one faulted in):\n")
    print("| n | threads | reused ms | GB/s | fresh ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %s | %s | %s |" % (r["n"], r["threads"], r["reused_ms"], r["reused_gbps"], r["fresh_ms"]))
except Exception as e:
    print("(copy.csv: %s)" % e)
try:
    lines = open(os.path.join(d, "socket.txt")).read().splitlines()
    print("\nA bare Unix socket moving each size's frames bytes (sock-ceiling.py; median ms):\n")
    for line in lines:
        print("    " + line)
except Exception as e:
    print("(socket.txt: %s)" % e)
print()
print("raw: overhead.json, overhead-noshm.json, overhead-noshm-t1.json, copy.csv, overhead-resident.json, torch.csv, xfer.csv, vram-probe.txt, latency-shm.json, socket.txt")
PY
cat "$OUT/summary.md"
# What comes back from the device tool is a few files: the raw results go in one archive.
(cd "$OUT" && tar czf raw.tar.gz --exclude=raw.tar.gz --exclude=summary.md -- * && \
	find . -maxdepth 1 -type f ! -name raw.tar.gz ! -name summary.md -delete)
exit $rc

#!/bin/bash
# run-nas-speed.sh: NAS evaluation latency on a GPU machine (the device tool), each figure
# beside PyTorch's in the same run: DARTS_V2 on CIFAR (C 36, 20 cells) and on ImageNet
# (C 48, 14 cells) at batches 1, 16, 64 and 256, through `rxgemm nas` with each set of NAS
# kernels (RXGEMMD_NAS_KERNELS: docs/rxgemmd.8), and through tests/nas_torch_ref.py in
# eager mode (cudnn.benchmark on) and as a CUDA graph.
# Build here, then:
#   ../shared/gpu/bundle daemon/rxgemmd client/rxgemm && cp client/.libs/librxgemm.so.0 .gpu/lib/
# and on the GPU machine: bash tests/gpu/run-nas-speed.sh (about 5 minutes; results in
# $OUT/nas-speed.txt, one line per figure, and the daemons' logs).
# Variables (optional):
#   BATCHES (default "1 16 64 256"), IMAGENET_BATCHES (default BATCHES);
#   REPEAT (timed runs, 20);
#   WARMUP (runs before the timed ones, on both sides alike; default 20, so that both are
#     timed at the GPU's steady clocks: at batch 1 three warm-up runs leave it ramping);
#   DEVICE (NVIDIA);
#   KERNELS (the RXGEMMD_NAS_KERNELS values to compare, default "auto old pws new"; auto
#     is pws on a GPU).
# The daemons log at debug level: their logs (in $OUT) have each step's time and shape
# from the breakdown's runs at batch 256.
set -uo pipefail
. .gpu/env.sh
: "${OUT:?OUT must name a folder for the results}"
BATCHES=${BATCHES:-1 16 64 256}
REPEAT=${REPEAT:-20}
WARMUP=${WARMUP:-20}
IMAGENET_BATCHES=${IMAGENET_BATCHES-$BATCHES}
DEVICE=${DEVICE-NVIDIA}
KERNELS=${KERNELS:-auto old pws new}
W=$(mktemp -d "${TMPDIR:-/tmp}/rxnas.XXXXXX")
SOCK=$W/d.sock
PID=
cleanup() {
	[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID"
	rm -rf "$W"
}
trap cleanup EXIT
R=$OUT/nas-speed.txt
{ date -u; nvidia-smi -L; } >"$R" 2>&1

# nets: "dataset batch" pairs, CIFAR and ImageNet at each of their batches.
nets() {
	for b in $BATCHES; do echo "cifar10 $b"; done
	for b in $IMAGENET_BATCHES; do echo "imagenet $b"; done
}

for kern in $KERNELS; do
	RXGEMMD_NAS_KERNELS=$kern rxgemmd --socket "$SOCK" ${DEVICE:+--device "$DEVICE"} \
		--auto-tune never --cache-dir "$W/cache" --client-max-memory 4G --log-level debug \
		</dev/null >"$OUT/daemon-$kern.log" 2>&1 &
	PID=$!
	for ((i = 0; i < 3000; i++)); do
		rxgemm --socket "$SOCK" status >/dev/null 2>&1 && break
		sleep 0.1
	done
	nets | while read -r ds b; do
		printf 'rxgemmd kernels=%s %s batch %s: ' "$kern" "$ds" "$b" >>"$R"
		timeout 300 rxgemm --socket "$SOCK" nas --genotype DARTS_V2 --dataset "$ds" \
			--batch "$b" --warmup "$WARMUP" --repeat "$REPEAT" \
			$([ "$b" = 256 ] && echo --breakdown) \
			--json >"$W/nas.json" 2>>"$R" &&
			python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print("median %.3f ms, p90 %.3f ms, steps %d" % (j["latency_median_ns"] / 1e6,
      j["latency_p90_ns"] / 1e6, j["steps"]))
if sys.argv[2] == "1":
    print("   by op (mean): " + ", ".join("%s %.2f ms" % (p["name"], p["ns"] / 1e6)
                                       for p in j["by_op"]))
    if j.get("profiled"):
        print("   profiled (every step timed); without that, median %.3f ms"
              % (j["unprofiled_median_ns"] / 1e6))
' "$W/nas.json" "$([ "$b" = 256 ] && echo 1 || echo 0)" >>"$R" 2>&1
		cp "$W/nas.json" "$OUT/nas-$kern-$ds-$b.json" 2>/dev/null
	done
	kill -TERM "$PID"
	wait "$PID"
	PID=
done

nets | while read -r ds b; do
	for mode in "--cudnn-benchmark" "--cudnn-benchmark --cuda-graph"; do
		printf 'pytorch %s %s batch %s: ' "$mode" "$ds" "$b" >>"$R"
		timeout 300 python3 tests/nas_torch_ref.py --genotype DARTS_V2 --dataset "$ds" \
			--batch "$b" --warmup "$WARMUP" --repeat "$REPEAT" $mode 2>&1 |
			grep 'latency median' >>"$R"
	done
done
tar -C "$OUT" -czf "$OUT/json.tar.gz" $(cd "$OUT" && ls nas-*.json) && rm -f "$OUT"/nas-*.json
cat "$R"

#!/bin/bash
# bench-startup.sh: rxgemmd's start-to-ready time and its first GEMM's latency, with the
# kernel cache cold and warm. A benchmark, not a test: make check does not run it.
#
#   RXGEMMD=daemon/rxgemmd RXGEMM=client/rxgemm tests/bench-startup.sh
#
# Variables (all optional):
#   RXGEMMD, RXGEMM  the daemon and the CLI (default: rxgemmd and rxgemm on PATH)
#   DEVICE           --device for the daemon (default: its own choice, the first GPU)
#   RUNS             rounds of the four scenarios (default 5)
#   SIZE             the GEMM's m = n = k (default 1024)
#   OUT              a folder for the raw figures (bench-startup.csv) and the daemons' logs
#
# On the GPU machine, from a bundle (../shared/gpu/bundle daemon/rxgemmd client/rxgemm, and
# client/.libs/librxgemm.so.0 copied into .gpu/lib/):
#   . .gpu/env.sh && DEVICE=NVIDIA bash tests/bench-startup.sh
#
# Each round runs four scenarios. Drivers keep compile caches of their own (PoCL's kernel
# cache, NVIDIA's ComputeCache, Mesa's shader cache), so every scenario says what state
# both caches are in; each round gets fresh directories for both:
#   cold         rxgemmd cache empty, driver cache empty: the first start on a machine
#   warm         both as the cold start left them: an ordinary restart
#   ours-only    rxgemmd cache warm, driver cache empty: what the rxgemmd cache alone buys
#   driver-only  no rxgemmd cache (--cache-max 0), driver cache warm: a restart before
#                rxgemmd had its own cache
# Start-to-ready runs from the daemon's exec to its socket accepting connections (the
# daemon creates it only once every kernel is built or loaded and self-tested). The first
# GEMM is the first job after that, SIZE^3 row-major, run twice (--repeat 2): the first
# run's time against the second's shows what the first job still pays.
set -euo pipefail

RXGEMMD=${RXGEMMD:-rxgemmd}
RXGEMM=${RXGEMM:-rxgemm}
RUNS=${RUNS:-5}
SIZE=${SIZE:-1024}
DEVICE=${DEVICE:-}

for p in "$RXGEMMD" "$RXGEMM"; do
	command -v "$p" >/dev/null || { echo "bench-startup: $p is not a program (set RXGEMMD and RXGEMM)" >&2; exit 2; }
done
W=$(mktemp -d "${TMPDIR:-/tmp}/rxgbench.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkfifo "$W/tick"
exec 9<>"$W/tick" # read -t on it sleeps without a fork
[ -n "${OUT:-}" ] && mkdir -p "$OUT"
CSV=${OUT:+$OUT/bench-startup.csv}
CSV=${CSV:-$W/bench-startup.csv}
echo "scenario,round,ready_ms,hits,misses,compile_ms,load_ms,first_job_ms,first_wall_ms,second_job_ms" >"$CSV"

ms() { awk -v ns="${1:-0}" 'BEGIN { printf "%.1f", ns / 1e6 }'; }

# json_nth FILE KEY N: the Nth number under "KEY" in FILE (our CLI writes one line).
json_nth() { grep -o "\"$2\":[0-9]*" "$1" | sed -n "${3}p" | cut -d: -f2; }

# run SCENARIO ROUND CACHE_ARGS... : one start, one GEMM, one status, one stop.
run() {
	local scen=$1 round=$2 t0 t1 pid sock=$W/d.sock log i
	shift 2
	log=${OUT:+$OUT/$scen-$round.log}
	log=${log:-$W/daemon.log}
	rm -f "$sock"
	t0=$(date +%s%N)
	"$RXGEMMD" --socket "$sock" ${DEVICE:+--device "$DEVICE"} "$@" </dev/null >"$log" 2>&1 &
	pid=$!
	for ((i = 0; i < 300000; i++)); do
		[ -S "$sock" ] && break
		kill -0 "$pid" 2>/dev/null || { echo "rxgemmd exited before it was ready:" >&2; cat "$log" >&2; exit 1; }
		read -r -t 0.001 -u 9 || true
	done
	t1=$(date +%s%N)
	"$RXGEMM" --socket "$sock" gemm -m "$SIZE" -n "$SIZE" -k "$SIZE" --repeat 2 --json >"$W/gemm.json"
	"$RXGEMM" --socket "$sock" status --json >"$W/status.json"
	kill -TERM "$pid"
	wait "$pid" || { echo "rxgemmd exited with $? after SIGTERM" >&2; exit 1; }
	[ -z "${DEV_NAME:-}" ] && DEV_NAME=$(sed -n 's/.*"device":"\([^"]*\)".*/\1/p' "$W/gemm.json" | head -n 1)
	sed -n 's/.*"kernel_cache":{\([^}]*\)}.*/\1/p' "$W/status.json" >"$W/kc.json"
	printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$scen" "$round" "$(ms $((t1 - t0)))" \
		"$(json_nth "$W/kc.json" hits 1)" "$(json_nth "$W/kc.json" misses 1)" \
		"$(ms "$(json_nth "$W/kc.json" compile_ns 1)")" "$(ms "$(json_nth "$W/kc.json" load_ns 1)")" \
		"$(ms "$(json_nth "$W/gemm.json" total_ns 1)")" "$(ms "$(json_nth "$W/gemm.json" wall_ns 1)")" \
		"$(ms "$(json_nth "$W/gemm.json" total_ns 2)")" | tee -a "$CSV" >&2
}

# drivers DIR: point every driver's compile cache at DIR.
drivers() {
	mkdir -p "$1"
	export POCL_CACHE_DIR=$1/pocl CUDA_CACHE_PATH=$1/nv MESA_SHADER_CACHE_DIR=$1/mesa
	unset POCL_KERNEL_CACHE CUDA_CACHE_DISABLE MESA_SHADER_CACHE_DISABLE
}

for ((r = 1; r <= RUNS; r++)); do
	rm -rf "$W/rx" "$W/drv" "$W/drv-empty"
	drivers "$W/drv"
	run cold "$r" --cache-dir "$W/rx"
	run warm "$r" --cache-dir "$W/rx"
	drivers "$W/drv-empty"
	run ours-only "$r" --cache-dir "$W/rx"
	drivers "$W/drv"
	run driver-only "$r" --cache-max 0
done

echo
echo "rxgemmd start-up, $(date -u +%Y-%m-%d), $RUNS rounds, first GEMM ${SIZE}^3"
echo "device: ${DEV_NAME:-?}"
echo "command: RUNS=$RUNS SIZE=$SIZE${DEVICE:+ DEVICE=$DEVICE} tests/bench-startup.sh"
echo
awk -F, 'NR > 1 {
	n[$1]++; k = $1 SUBSEP n[$1]
	ready[k] = $3; hits[$1] = $4; miss[$1] = $5; comp[k] = $6; load[k] = $7
	first[k] = $8; second[k] = $10
	if (!($1 in seen)) { seen[$1] = 1; order[++ns] = $1 }
}
function median(a, s, cnt,    v, i, j, t) {
	for (i = 1; i <= cnt; i++) v[i] = a[s SUBSEP i] + 0
	for (i = 2; i <= cnt; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
	return cnt % 2 ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
}
function minimum(a, s, cnt,    i, m) {
	m = a[s SUBSEP 1] + 0
	for (i = 2; i <= cnt; i++) if (a[s SUBSEP i] + 0 < m) m = a[s SUBSEP i] + 0
	return m
}
END {
	printf "| scenario | loaded / compiled | start-to-ready ms (median, min) | compile ms | load ms | first GEMM ms (daemon) | second GEMM ms |\n"
	printf "|---|---|---|---|---|---|---|\n"
	for (i = 1; i <= ns; i++) {
		s = order[i]; c = n[s]
		med[s] = median(ready, s, c)
		printf "| %s | %d / %d | %.0f (%.0f) | %.0f | %.0f | %.1f | %.1f |\n", s, hits[s], miss[s],
			med[s], minimum(ready, s, c), median(comp, s, c), median(load, s, c),
			median(first, s, c), median(second, s, c)
	}
	if (("cold" in med) && ("warm" in med) && med["warm"] > 0)
		printf "\nstart-to-ready, cold / warm: %.1fx", med["cold"] / med["warm"]
	if (("cold" in med) && ("ours-only" in med) && med["ours-only"] > 0)
		printf "; cold / ours-only: %.1fx", med["cold"] / med["ours-only"]
	if (("driver-only" in med) && ("warm" in med) && med["warm"] > 0)
		printf "; driver-only / warm: %.1fx", med["driver-only"] / med["warm"]
	printf "\n"
}' "$CSV"
[ -n "${OUT:-}" ] && echo "raw figures: $CSV"
exit 0

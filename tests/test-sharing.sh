#!/bin/bash
# test-sharing.sh: a smoke test of tests/bench-sharing (the benchmark itself is
# tests/bench-sharing.sh, not run by make check): two clients for a second, the latency
# and neighbour modes briefly, against a real daemon, with the matrices in the frames and
# in shared memory (--shm); the overhead mode beside rxgemm-bench --e2e, its in-process
# baseline. Every job must have verified (bench-sharing checks each C exactly), the JSON
# must parse and its figures add up.
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init
T=$TL_TMP
B=${BENCH_SHARING:-}
if [ ! -x "$B" ]; then
	echo "FAIL: BENCH_SHARING ($B) is not an executable"
	exit 1
fi
BENCH=${RXGEMM_BENCH:-$(dirname "$RXGEMMD")/rxgemm-bench}
dev=()
[ -n "${RXGEMM_TEST_DEVICE:-}" ] && dev=(--device "$RXGEMM_TEST_DEVICE")

# The daemon's count of jobs that used shared memory, and of buffers registered and mapped.
shm_counts() {
	"$RXGEMM" --socket "$S" status --json | python3 -c \
		'import json, sys; s = json.load(sys.stdin)["shm"]; print(s["jobs"], s["registered"], s["regions"])'
}

tl_run "bad option" 2 "$B" --clients 0 && tl_ok "--clients 0 is a usage error"
tl_run "two modes" 2 "$B" --latency --overhead && tl_ok "--latency --overhead is a usage error"
tl_run "bad sizes" 2 "$B" --overhead --sizes 64,x && tl_ok "--sizes 64,x is a usage error"
tl_run "no daemon" 3 "$B" --socket "$T/none.sock" --latency --iterations 1 &&
	tl_ok "no daemon: exit 3"

tl_daemon_start sharing
S=$TL_DAEMON_SOCKET

if tl_run "2 clients" 0 "$B" --socket "$S" --clients 2 --seconds 1 --size 64 --json; then
	cp "$TL_OUT" "$T/clients.json"
	tl_json "2 clients" "$T/clients.json" \
		"d['mode'] == 'clients' and d['clients'] == 2 and d['jobs'] > 0 \
		 and d['verified'] == d['jobs'] and d['wrong'] == 0 and d['failed'] == 0 \
		 and len(d['per_client']) == 2 and all(c['jobs'] > 0 for c in d['per_client']) \
		 and sum(c['jobs'] for c in d['per_client']) == d['jobs'] \
		 and abs(sum(c['share'] for c in d['per_client']) - 1) < 1e-6 \
		 and 0.5 <= d['jain'] <= 1 + 1e-9 and 0 <= d['device_busy'] <= 1 \
		 and d['gflops'] > 0 and d['seconds'] >= 1" &&
		tl_ok "2 clients: every job verified, shares sum to 1, Jain's index in [0.5, 1]"
fi
if tl_run "2 clients, table" 0 "$B" --socket "$S" --clients 2 --seconds 0.3 --size 32; then
	tl_expect_output "table" "Jain's fairness" && tl_ok "2 clients, table output"
fi
if tl_run "latency" 0 "$B" --socket "$S" --latency --iterations 50 --json; then
	cp "$TL_OUT" "$T/latency.json"
	tl_json "latency" "$T/latency.json" \
		"d['alone']['jobs'] == 50 and d['alone']['verified'] == 50 \
		 and 0 < d['alone']['min_ms'] <= d['alone']['p50_ms'] <= d['alone']['p99_ms'] <= d['alone']['max_ms']" &&
		tl_ok "latency: 50 verified jobs, ordered percentiles"
fi
if tl_run "neighbour" 0 "$B" --socket "$S" --neighbour --seconds 0.5 --big-size 192 --json; then
	cp "$TL_OUT" "$T/neighbour.json"
	tl_json "neighbour" "$T/neighbour.json" \
		"d['alone']['jobs'] > 0 and d['beside']['jobs'] > 0 and d['neighbour']['jobs'] > 0 \
		 and d['alone']['verified'] == d['alone']['jobs'] \
		 and d['beside']['verified'] == d['beside']['jobs'] \
		 and d['neighbour']['verified'] == d['neighbour']['jobs'] and d['p50_ratio'] > 0" &&
		tl_ok "neighbour: both phases and the neighbour verified"
fi

# --shm: every client makes its three buffers once and all its jobs use them.
read -r jobs0 reg0 _ < <(shm_counts)
if tl_run "2 clients, shm" 0 "$B" --socket "$S" --clients 2 --seconds 1 --size 64 --shm --json; then
	cp "$TL_OUT" "$T/clients-shm.json"
	read -r jobs1 reg1 mapped1 < <(shm_counts)
	tl_json "2 clients, shm" "$T/clients-shm.json" \
		"d['mode'] == 'clients' and d['shm'] and d['jobs'] > 0 \
		 and d['verified'] == d['jobs'] and d['wrong'] == 0 and d['failed'] == 0 \
		 and all(c['jobs'] > 0 for c in d['per_client']) \
		 and $jobs1 - $jobs0 == d['jobs'] + 2 and $reg1 - $reg0 == 6 and $mapped1 == 0" &&
		tl_ok "2 clients, shm: every job verified and went through shared memory (3 buffers per client, freed)"
fi
if tl_run "neighbour, shm" 0 "$B" --socket "$S" --neighbour --shm --seconds 0.3 --big-size 128 --json; then
	cp "$TL_OUT" "$T/neighbour-shm.json"
	tl_json "neighbour, shm" "$T/neighbour-shm.json" \
		"d['shm'] and d['alone']['jobs'] > 0 and d['beside']['jobs'] > 0 \
		 and d['neighbour']['jobs'] > 0 \
		 and d['alone']['verified'] == d['alone']['jobs'] \
		 and d['beside']['verified'] == d['beside']['jobs'] \
		 and d['neighbour']['verified'] == d['neighbour']['jobs']" &&
		tl_ok "neighbour, shm: both phases and the neighbour verified"
fi

# --overhead against rxgemm-bench --e2e, the same GEMM in-process.
if tl_run "e2e" 0 "$BENCH" ${dev[@]+"${dev[@]}"} --e2e --sizes 64 --repeat 3 --warmup 1 --csv; then
	cp "$TL_OUT" "$T/e2e.csv"
	[ "$(wc -l <"$T/e2e.csv")" -eq 3 ] &&
		awk -F, 'NR > 1 && !($1 == 64 && ($6 == "malloc" || $6 == "pinned") && $8 > 0 &&
			$9 > 0 && $9 <= $8 && $14 == "ok") { bad = 1 } END { exit bad }' "$T/e2e.csv" &&
		tl_ok "rxgemm-bench --e2e: malloc and pinned rows, median >= best > 0, C right" ||
		{ tl_fail "rxgemm-bench --e2e output"; cat "$T/e2e.csv"; }
fi
tl_run "e2e and tune" 2 "$BENCH" --e2e --tune && tl_ok "rxgemm-bench --e2e --tune is a usage error"
if tl_run "overhead" 0 "$B" --socket "$S" --overhead --sizes 64,96 --repeat 5 --baseline "$T/e2e.csv" --json; then
	cp "$TL_OUT" "$T/overhead.json"
	tl_json "overhead" "$T/overhead.json" \
		"d['mode'] == 'overhead' and d['shm'] and d['repeat'] == 5 \
		 and [r['n'] for r in d['results']] == [64, 96] \
		 and all(r['jobs'] == 5 and r['verified'] == 5 and r['wrong'] == 0 \
			 and 0 < r['wall_best_ms'] <= r['wall_p50_ms'] and r['ratio_daemon'] > 0 \
			 and r['kernel'] not in ('', '?') for r in d['results']) \
		 and d['results'][0]['ratio_inproc'] > 0 and d['results'][0]['ratio_pinned'] > 0 \
		 and d['results'][1]['ratio_inproc'] is None" &&
		tl_ok "overhead: verified jobs, a ratio to the daemon's time and to the in-process baseline"
fi
if tl_run "overhead, table" 0 "$B" --socket "$S" --overhead --sizes 64 --repeat 3 --baseline "$T/e2e.csv"; then
	awk '$1 == 64 && $12 > 0 && $13 > 0 { ok = 1 } END { exit !ok }' "$TL_OUT" &&
		tl_ok "overhead, table: a row for n = 64 with both ratios" ||
		{ tl_fail "overhead table"; cat "$TL_OUT"; }
fi
if tl_run "overhead, resident" 0 "$B" --socket "$S" --overhead --resident --sizes 64,96 --repeat 4 --json; then
	cp "$TL_OUT" "$T/overhead-resident.json"
	tl_json "overhead, resident" "$T/overhead-resident.json" \
		"d['resident'] and not d['shm'] and [r['n'] for r in d['results']] == [64, 96] \
		 and all(r['jobs'] == 4 and r['verified'] == 4 and r['wrong'] == 0 \
			 and r['h2d_p50_ms'] == 0 and r['d2h_p50_ms'] == 0 and r['kernel_p50_ms'] > 0 \
			 for r in d['results'])" &&
		tl_ok "overhead, resident: verified jobs on device tensors, with nothing copied to or from the device"
fi
tl_run "resident alone" 2 "$B" --socket "$S" --latency --resident &&
	tl_ok "--resident without --overhead is a usage error"
tl_run "overhead, bad baseline" 2 "$B" --socket "$S" --overhead --sizes 64 --baseline "$T/clients.json" &&
	tl_ok "overhead: a baseline that is not rxgemm-bench --e2e --csv is a usage error"

tl_daemon_stop "$TL_DAEMON_PID" TERM
[ "$TL_STATUS" -eq 0 ] && tl_ok "daemon stops cleanly" || tl_fail "daemon exited with $TL_STATUS"
tl_finish

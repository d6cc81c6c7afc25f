#!/bin/bash
# test-sharing.sh: a smoke test of tests/bench-sharing (the benchmark itself is
# tests/bench-sharing.sh, not run by make check): two clients for a second, the latency
# and neighbour modes briefly, against a real daemon. Every job must have verified
# (bench-sharing checks each C exactly), the JSON must parse and its figures add up.
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

tl_run "bad option" 2 "$B" --clients 0 && tl_ok "--clients 0 is a usage error"
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

tl_daemon_stop "$TL_DAEMON_PID" TERM
[ "$TL_STATUS" -eq 0 ] && tl_ok "daemon stops cleanly" || tl_fail "daemon exited with $TL_STATUS"
tl_finish

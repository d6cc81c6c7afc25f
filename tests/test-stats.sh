#!/bin/bash
# test-stats.sh: the sharing statistics through rxgemm(1) against a real daemon: status's
# client and kernel tables, status --json (valid JSON; counts and FLOPs of two client
# processes that have left, in the departed total; variants summing to the jobs;
# utilisation within [0, 1]; our own uid), and top in batch mode. tests/test-stats.c
# checks the same figures for connected clients through the library.
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init
T=$TL_TMP

tl_daemon_start stats
S=$TL_DAEMON_SOCKET
R=("$RXGEMM" --socket "$S")

# --- usage errors (no daemon needed, but one is there) ------------------------------------
for bad in "-n 0" "-d 0" "-d x" "--bogus" "-n 1 extra"; do
	# shellcheck disable=SC2086
	tl_run "top $bad" 2 "${R[@]}" top $bad && tl_ok "top $bad is a usage error"
done
tl_run "top, no daemon" 3 "$RXGEMM" --socket "$T/none.sock" top -n 1 &&
	tl_ok "top without a daemon exits 3"

# --- two clients' jobs, then status ----------------------------------------------------------
tl_run "client one" 0 "${R[@]}" gemm --check -m 64 -n 32 -k 16 --repeat 3 && tl_ok "client one ran 3 jobs"
tl_run "client two" 0 "${R[@]}" gemm --check -m 50 -n 40 -k 30 --transa && tl_ok "client two ran 1 job"
FLOPS=$((3 * 2 * 64 * 32 * 16 + 2 * 50 * 40 * 30))
BYTES_OUT=$(((3 * 64 * 32 + 50 * 40) * 4))
MY_UID=$(id -u)

if tl_run "status --json" 0 "${R[@]}" status --json; then
	cp "$TL_OUT" "$T/status.json"
	if command -v python3 >/dev/null 2>&1; then
		if python3 -m json.tool "$T/status.json" >/dev/null; then
			tl_ok "status --json is valid JSON (python3 -m json.tool)"
		else
			tl_fail "status --json is not valid JSON"
		fi
	fi
	# The two CLI processes have left: their work is the departed total, and the daemon's.
	tl_json "departed totals" "$T/status.json" \
		"d['departed_clients']['jobs_ok'] == 4 and d['departed_clients']['flops'] == $FLOPS \
		 and d['departed_clients']['bytes_out'] == $BYTES_OUT \
		 and d['departed_clients']['jobs_failed'] == 0 and d['jobs_ok'] == 4 \
		 and d['flops_total'] == $FLOPS" &&
		tl_ok "departed clients: 4 jobs, $FLOPS FLOPs (2mnk summed), $BYTES_OUT bytes out"
	tl_json "variants" "$T/status.json" \
		"len(d['kernel_stats']) >= 1 and sum(v['jobs'] for v in d['kernel_stats']) == d['jobs_ok'] \
		 and sum(v['flops'] for v in d['kernel_stats']) == d['flops_total'] \
		 and all(v['kernel'] and (v['gflops'] is None or v['gflops'] > 0) for v in d['kernel_stats'])" &&
		tl_ok "kernel variants' jobs and FLOPs sum to the daemon's"
	tl_json "utilisation" "$T/status.json" \
		"0 <= d['utilisation']['since_start'] <= 1 and 0 <= d['utilisation']['recent'] <= 1 \
		 and 0 < d['utilisation']['busy_ns'] <= d['uptime_ns'] \
		 and d['utilisation']['recent_busy_ns'] <= d['utilisation']['recent_window_ns']" &&
		tl_ok "utilisation within [0, 1], busy time within the uptime"
	# The status client itself is the one connected client.
	tl_json "own row" "$T/status.json" \
		"len(d['clients']) == 1 and d['clients'][0]['uid'] == $MY_UID \
		 and d['clients'][0]['name'] == 'rxgemm-cli' and d['clients'][0]['pid'] > 0 \
		 and d['clients'][0]['jobs_ok'] == 0" &&
		tl_ok "the status client is listed with uid $MY_UID"
fi

if tl_run "status" 0 "${R[@]}" status; then
	cp "$TL_OUT" "$T/status.txt"
	if grep -Eq '^ *id +name +uid +pid' "$T/status.txt" &&
		grep -Eq "^ *[0-9]+ +rxgemm-cli +$MY_UID " "$T/status.txt" &&
		grep -Eq '^ *- +\(departed\) .* 4 +0 +0 ' "$T/status.txt" &&
		grep -Eq '^kernel +jobs +GFLOP' "$T/status.txt" &&
		grep -Eq '^busy: .*since start' "$T/status.txt"; then
		tl_ok "status prints the client and kernel tables"
	else
		tl_fail "status lacks the client or kernel tables"
		sed 's/^/    /' "$T/status.txt"
	fi
fi

# --- top in batch mode ------------------------------------------------------------------------
if tl_run "top -n 2" 0 "${R[@]}" top -n 2 -d 0.2; then
	cp "$TL_OUT" "$T/top.txt"
	frames=$(grep -c '^rxgemm top - up ' "$T/top.txt" || true)
	if [ "$frames" -eq 2 ] && ! grep -q $'\033' "$T/top.txt" &&
		grep -q 'busy over the last' "$T/top.txt"; then
		tl_ok "top -n 2 prints two frames, no escapes when not on a terminal"
	else
		tl_fail "top -n 2 printed $frames frames (want 2), or escapes, or no interval"
		sed 's/^/    /' "$T/top.txt"
	fi
fi

# A client working while top watches: it shows with a rate.
if [ -x "${BENCH_SHARING:-}" ]; then
	"$BENCH_SHARING" --socket "$S" --clients 1 --seconds 3 --size 64 >"$T/bench.txt" 2>&1 &
	BENCH=$!
	TL_PIDS+=("$BENCH")
	if tl_run "top while busy" 0 "${R[@]}" top -n 6 -d 0.5; then
		cp "$TL_OUT" "$T/top-busy.txt"
		if grep -Eq '^ *[0-9]+ +bench-sharing-0 +[0-9]+ +[0-9]+ +[01] +[0-9.]*[1-9][0-9.]* ' \
			"$T/top-busy.txt"; then
			tl_ok "top shows the working client with a job rate"
		else
			tl_fail "top does not show bench-sharing-0 working"
			sed 's/^/    /' "$T/top-busy.txt"
		fi
	fi
	wait "$BENCH" || tl_fail "bench-sharing beside top failed: $(cat "$T/bench.txt")"
fi

tl_daemon_stop "$TL_DAEMON_PID" TERM
[ "$TL_STATUS" -eq 0 ] && tl_ok "daemon stops cleanly" || tl_fail "daemon exited with $TL_STATUS"
tl_finish

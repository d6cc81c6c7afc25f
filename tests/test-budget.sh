#!/bin/bash
# test-budget.sh: the device-memory budget end to end (the accounting itself is unit-tested
# in test-budget.c). Under a tiny budget on PoCL: jobs whose combined need exceeds the
# budget all complete and the reported peak never exceeds it; GEMMs several times bigger
# than the budget run in pieces and match the CPU reference (both layouts, transposes,
# beta != 0); reservations return to zero after jobs, failures and a client that
# disconnects mid-job; a per-client quota fails only the job over it; bad budget values
# in the config are refused; SIGHUP takes a new budget. The daemons copy every operand
# through device buffers (--zero-copy never), as on a GPU: on PoCL the CLI's
# shared-memory jobs would otherwise run in place and need no device memory at all
# (test-shm's test_in_place checks that).
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init
T=$TL_TMP
BUDGET=$((4 * 1024 * 1024))

status_json() { # FILE: the daemon's status as JSON
	"$RXGEMM" --socket "$TL_DAEMON_SOCKET" status --json >"$1"
}

tl_daemon_start tiny --vram-budget 4M --auto-tune never --zero-copy never
S=$TL_DAEMON_SOCKET

# Start-up: the kernels' self-tests took their buffers from the budget (they wait in its
# pool for the jobs) and never more than it.
if status_json "$T/st0.json"; then
	tl_json "self-tests accounted" "$T/st0.json" \
		"d['memory']['pool_buffers'] > 0 and 0 < d['memory']['peak_bytes'] <= $BUDGET and d['memory']['reserved_bytes'] == 0" &&
		tl_ok "the kernels' self-tests at start-up are accounted in the budget"
else
	tl_fail "status --json at start"
fi

# Jobs that fit one at a time (3 MiB each) but not together: all run, admitted in turn.
ok=1
for i in 1 2 3 4 5 6; do
	tl_run "fitting job $i" 0 "$RXGEMM" --socket "$S" gemm -m 512 -n 512 -k 512 --seed "$i" --check || ok=0
done
[ "$ok" = 1 ] && tl_ok "six 3 MiB jobs (18 MiB together) complete under a 4 MiB budget"

# Several times the budget: 1024^3 needs 12 MiB; odd shapes, transposes, layouts, beta.
ok=1
while read -r args; do
	# shellcheck disable=SC2086
	tl_run "split $args" 0 "$RXGEMM" --socket "$S" gemm $args --check || ok=0
done <<'JOBS'
-m 1024 -n 1024 -k 1024
-m 1024 -n 1024 -k 1024 --col-major --beta 0.5 --alpha -2
-m 777 -n 555 -k 1500 --transa --beta 0.25
-m 1000 -n 1200 -k 700 --transb --col-major --beta -1
-m 1500 -n 300 -k 2000 --transa --transb
-m 3000 -n 5 -k 900 --col-major --transa --beta 2
JOBS
[ "$ok" = 1 ] && tl_ok "GEMMs up to 4x the budget run in pieces and match the CPU reference"

if status_json "$T/st1.json"; then
	tl_json "peak within the budget" "$T/st1.json" \
		"d['memory']['budget_bytes'] == $BUDGET and 0 < d['memory']['peak_bytes'] <= $BUDGET" &&
		tl_ok "the reported peak ($(python3 -c "import json;print(json.load(open('$T/st1.json'))['memory']['peak_bytes'])" 2>/dev/null || echo '?') bytes) is within the 4 MiB budget"
	tl_json "split jobs counted" "$T/st1.json" "d['memory']['jobs_split'] >= 6" &&
		tl_ok "the big jobs ran in pieces"
	tl_json "nothing reserved after jobs" "$T/st1.json" \
		"d['memory']['reserved_bytes'] == 0 and d['memory']['in_use_bytes'] == 0 and d['memory']['jobs_waiting'] == 0 and d['memory']['pool_bytes'] <= $BUDGET" &&
		tl_ok "reservations are back to zero after the jobs; the pool stays within the budget"
else
	tl_fail "status --json"
fi
if tl_run "status text" 0 "$RXGEMM" --socket "$S" status; then
	tl_expect_output "status text" '^budget: +4\.0 MiB, 0 B reserved' &&
		tl_expect_output "status text" 'jobs waiting for memory' && tl_ok "status shows the budget"
fi

# A client that goes away mid-job: its reservation is released when the job ends.
"$RXGEMM" --socket "$S" gemm -m 2048 -n 2048 -k 2048 >/dev/null 2>&1 &
cpid=$!
for ((i = 0; i < 200; i++)); do
	status_json "$T/st2.json"
	python3 -c "import json,sys; sys.exit(0 if json.load(open('$T/st2.json'))['memory']['reserved_bytes'] > 0 else 1)" 2>/dev/null && break
	sleep 0.05
done
kill -KILL "$cpid" 2>/dev/null || true
wait "$cpid" 2>/dev/null || true
for ((i = 0; i < 600; i++)); do
	status_json "$T/st3.json"
	python3 -c "import json,sys; d=json.load(open('$T/st3.json')); sys.exit(0 if d['jobs_queued'] == 0 else 1)" 2>/dev/null && break
	sleep 0.1
done
tl_json "released after a disconnect" "$T/st3.json" \
	"d['jobs_queued'] == 0 and d['memory']['reserved_bytes'] == 0 and d['memory']['in_use_bytes'] == 0 and d['memory']['peak_bytes'] <= $BUDGET" &&
	tl_ok "a client killed mid-job leaves nothing reserved"
tl_run "still serving" 0 "$RXGEMM" --socket "$S" gemm -m 64 -n 64 -k 64 --check && tl_ok "the daemon serves after the disconnect"
tl_daemon_stop "$TL_DAEMON_PID" TERM
[ "$TL_STATUS" -eq 0 ] && tl_ok "stopped cleanly with the pool freed" || tl_fail "exit $TL_STATUS after SIGTERM"

# The tuner at a first start works within the budget: the classes whose buffers do not fit
# (3 x 1024^2 and 3 x 2048^2 floats: 12 and 48 MiB) keep their defaults.
tl_daemon_start tunetiny --vram-budget 4M --auto-tune always --auto-tune-budget 4 \
	--cache-dir "$T/tunecache"
if status_json "$T/st-tune.json"; then
	tl_json "tuner within the budget" "$T/st-tune.json" \
		"0 < d['memory']['peak_bytes'] <= $BUDGET" &&
		grep -q 'class 2 (1024x1024x1024) needs 12.0 MiB, more than the device-memory budget' "$TL_DAEMON_LOG" &&
		grep -q 'class 3 (2048x2048x2048) needs 48.0 MiB' "$TL_DAEMON_LOG" &&
		tl_ok "the first-start tuner stays within a 4 MiB budget and skips the classes that do not fit"
else
	tl_fail "status --json after tuning"
fi
tl_daemon_stop "$TL_DAEMON_PID" TERM


# A per-client quota: the job over it fails with its sentence, nothing else does.
tl_daemon_start quota --vram-budget 64M --client-quota 1M --auto-tune never \
	--zero-copy never
S=$TL_DAEMON_SOCKET
if tl_run "over the quota" 3 "$RXGEMM" --socket "$S" gemm -m 512 -n 512 -k 512; then
	tl_expect_output "over the quota" "quota of 1048576 bytes" && tl_ok "a job over the client quota gets a clear error"
fi
tl_run "under the quota" 0 "$RXGEMM" --socket "$S" gemm -m 200 -n 200 -k 200 --check &&
	tl_ok "a job within the quota runs after another's failure"
if status_json "$T/st4.json"; then
	tl_json "quota status" "$T/st4.json" \
		"d['memory']['client_quota_bytes'] == 1048576 and d['memory']['reserved_bytes'] == 0 and d['jobs_failed'] == 1 and d['jobs_ok'] == 1" &&
		tl_ok "the failed job released its reservation; the quota is reported"
fi

# SIGHUP: a new budget from the config file.
printf 'vram-budget = 8M\n' >"$T/b.conf"
tl_daemon_stop "$TL_DAEMON_PID" TERM
tl_daemon_start reload --config "$T/b.conf" --auto-tune never
S=$TL_DAEMON_SOCKET
status_json "$T/st5.json" && tl_json "budget from the file" "$T/st5.json" "d['memory']['budget_bytes'] == 8 << 20" &&
	tl_ok "vram-budget from the config file"
printf 'vram-budget = 50%%\nclient-quota = 2M\n' >"$T/b.conf"
kill -HUP "$TL_DAEMON_PID"
for ((i = 0; i < 100; i++)); do
	grep -q 'reloaded' "$TL_DAEMON_LOG" && break
	sleep 0.05
done
status_json "$T/st6.json" && tl_json "budget after SIGHUP" "$T/st6.json" \
	"abs(d['memory']['budget_bytes'] - d['device_global_mem_bytes'] // 2) <= 1 and d['memory']['client_quota_bytes'] == 2 << 20" &&
	tl_ok "SIGHUP takes a new budget (50%) and quota"
tl_daemon_stop "$TL_DAEMON_PID" TERM

# Bad values in the config file: refused with the file and line.
bad() { # NAME CONTENT PATTERN
	printf '%s\n' "$2" >"$T/bad.conf"
	if tl_run "$1" 2 "$RXGEMMD" --config "$T/bad.conf" --socket "$T/bad.sock"; then
		tl_expect_output "$1" "$3" && tl_ok "$1 is refused"
	fi
}
bad "a zero budget" "vram-budget = 0" "bad\.conf:1: vram-budget '0'"
bad "a budget under 4M" "vram-budget = 1M" "bad\.conf:1: vram-budget '1M'"
bad "a budget that is no size" "vram-budget = lots" "bad\.conf:1: vram-budget 'lots'"
bad "a budget over 100%" "vram-budget = 150%" "bad\.conf:1: vram-budget '150%'"
bad "a budget of 0%" "vram-budget = 0%" "bad\.conf:1: vram-budget '0%'"
bad "a negative budget" "vram-budget = -1G" "bad\.conf:1: vram-budget '-1G'"
bad "a quota that is no size" "client-quota = 1X" "bad\.conf:1: client-quota '1X'"
if tl_run "bad --vram-budget" 2 "$RXGEMMD" --vram-budget 12Q --socket "$T/bad.sock"; then
	tl_expect_output "bad --vram-budget" "--vram-budget: vram-budget '12Q'" && tl_ok "a bad --vram-budget is refused"
fi
for v in 6G 512M 75% 100% 4M; do
	printf 'vram-budget = %s\n' "$v" >"$T/size.conf"
	tl_run "budget $v" 0 "$RXGEMMD" --config "$T/size.conf" --list-devices && tl_ok "vram-budget = $v is accepted"
done

tl_finish

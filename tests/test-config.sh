#!/bin/bash
# test-config.sh: rxgemmd's config file and device selection, end to end: what the file
# says is used, the command line wins over it, and every bad line stops the daemon with a
# message naming the file and line.
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init
T=$TL_TMP

# A config file that names the socket, the log level and the frame limit.
cat >"$T/good.conf" <<CONF
# rxgemmd test configuration
socket = $T/from-conf.sock
log-level = debug     # per-job lines
max-frame=64K
CONF

"$RXGEMMD" --config "$T/good.conf" </dev/null >"$T/conf.log" 2>&1 &
pid=$!
TL_PIDS+=("$pid")
for ((i = 0; i < 6000; i++)); do
	[ -S "$T/from-conf.sock" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
if [ -S "$T/from-conf.sock" ]; then
	tl_ok "the config file's socket is used"
	# max-frame = 64K: a 128 x 128 x 128 job (128 KiB of A and B) is over the limit.
	if tl_run "small job" 0 "$RXGEMM" --socket "$T/from-conf.sock" gemm -m 16 -n 16 -k 16 --check; then
		tl_ok "a job within the config's max-frame runs"
	fi
	if tl_run "big job" 3 "$RXGEMM" --socket "$T/from-conf.sock" gemm -m 128 -n 128 -k 128; then
		tl_expect_output "big job" '65536' && tl_ok "the config's max-frame is enforced"
	fi
	# log-level = debug: the per-job line is logged at priority 7.
	if grep -q '^<7>rxgemmd: client [0-9]* request [0-9]*: gemm 16x16x16 done' "$T/conf.log"; then
		tl_ok "the config's log level is used"
	else
		tl_fail "no debug line for the job in the log"
		cat "$T/conf.log"
	fi
	tl_daemon_stop "$pid" TERM
	[ "$TL_STATUS" -eq 0 ] && tl_ok "stopped" || tl_fail "exit $TL_STATUS after SIGTERM"
else
	if tl_log_says_no_device "$T/conf.log"; then
		echo "SKIP: no OpenCL device"
		exit 77
	fi
	tl_fail "rxgemmd did not listen on the config file's socket"
	cat "$T/conf.log"
fi

# The command line wins: --socket and --log-level over the file's.
tl_daemon_start cli --config "$T/good.conf" --log-level info
if [ -S "$TL_DAEMON_SOCKET" ] && [ ! -e "$T/from-conf.sock" ]; then
	tl_ok "--socket overrides the config file"
fi
if tl_run "cli job" 0 "$RXGEMM" --socket "$TL_DAEMON_SOCKET" gemm -m 8 -n 8 -k 8 --check; then
	if grep -q '^<7>' "$TL_DAEMON_LOG"; then
		tl_fail "--log-level info still logs debug lines"
	else
		tl_ok "--log-level overrides the config file"
	fi
fi
tl_daemon_stop "$TL_DAEMON_PID" TERM

# Device selection by index and by name, and one that matches nothing.
if tl_run "device 0" 0 "$RXGEMMD" --list-devices; then
	first=$(sed -n 's/^0: \(.*\) \/ .*/\1/p' "$TL_OUT" | head -n 1)
	RXGEMM_TEST_DEVICE=0 tl_daemon_start by-index
	grep -q "device 0: $first" "$TL_DAEMON_LOG" && tl_ok "--device 0 serves device 0" ||
		tl_fail "--device 0: log does not name device 0 ($first)"
	tl_daemon_stop "$TL_DAEMON_PID" TERM
	RXGEMM_TEST_DEVICE=$first tl_daemon_start by-name
	grep -q "device 0: $first" "$TL_DAEMON_LOG" && tl_ok "--device NAME serves that device" ||
		tl_fail "--device '$first': log does not name it"
	tl_daemon_stop "$TL_DAEMON_PID" TERM
fi
if tl_run "no such device" 1 "$RXGEMMD" --socket "$T/none.sock" --device no-such-device-xyz; then
	tl_expect_output "no such device" "no OpenCL device matches 'no-such-device-xyz'" &&
		tl_ok "an unknown device is refused with a message"
fi
if tl_run "device index out of range" 1 "$RXGEMMD" --socket "$T/none.sock" --device 99; then
	tl_ok "an out-of-range device index is refused"
fi
[ ! -e "$T/none.sock" ] && tl_ok "a daemon that found no device left no socket" ||
	tl_fail "a socket was left behind"

# Bad config files: each exits 2 naming the file and line.
bad() { # NAME CONTENT PATTERN
	printf '%s\n' "$2" >"$T/bad.conf"
	if tl_run "$1" 2 "$RXGEMMD" --config "$T/bad.conf" --socket "$T/bad.sock"; then
		tl_expect_output "$1" "$3" && tl_ok "$1"
	fi
}
bad "unknown key" "sockett = /x" "bad\.conf:1: unknown key 'sockett'"
bad "no equals sign" $'# ok\nsocket /x' "bad\.conf:2: expected 'key = value'"
bad "bad log level" "log-level = loud" "bad\.conf:1: unknown log level 'loud'"
bad "bad size" "max-frame = 12Q" "bad\.conf:1: max-frame '12Q'"
bad "too small a frame limit" "max-frame = 100" "bad\.conf:1: max-frame '100'"
if tl_run "missing config" 2 "$RXGEMMD" --config "$T/does-not-exist.conf"; then
	tl_expect_output "missing config" "does-not-exist\.conf" && tl_ok "a missing --config file is an error"
fi
for sz in 4096 64K 256M 1G 4096B 64KiB; do
	printf 'max-frame = %s\n' "$sz" >"$T/size.conf"
	# --list-devices exits before serving, after the configuration has been read.
	if tl_run "size $sz" 0 "$RXGEMMD" --config "$T/size.conf" --list-devices; then
		tl_ok "max-frame = $sz is accepted"
	fi
done

# Queue bounds (max-queue, client-max-queue): from the file, shown by status, reloaded by
# SIGHUP; bad values are refused with the file and line.
bad "a queue bound that is no number" "max-queue = many" "bad\.conf:1: max-queue 'many'"
bad "a negative client queue bound" "client-max-queue = -1" "bad\.conf:1: client-max-queue '-1'"
# Per-connection memory and timeouts (server.c).
bad "a memory bound that is no size" "client-max-memory = lots" "bad\.conf:1: client-max-memory 'lots'"
bad "a total memory bound that is no size" "max-memory = 3 apples" "bad\.conf:1: max-memory '3 apples'"
bad "a frame timeout that is no duration" "frame-timeout = soon" "bad\.conf:1: frame-timeout 'soon'"
bad "an idle timeout over a day" "idle-timeout = 90000" "bad\.conf:1: idle-timeout '90000'"
bad "a negative stall timeout" "stall-timeout = -1" "bad\.conf:1: stall-timeout '-1'"
bad "a shutdown timeout in hours" "shutdown-timeout = 2h" "bad\.conf:1: shutdown-timeout '2h'"
# Busy polling (test-sched-daemon runs every scheduling test with it on): a duration up
# to 10 ms, or auto.
bad "a busy poll over 10 ms" "busy-poll = 20ms" "bad\.conf:1: busy-poll '20ms' is not auto or a duration up to 10ms"
bad "a busy poll that is no duration" "busy-poll = often" "bad\.conf:1: busy-poll 'often'"
for bp in auto 0 250us 1ms 0.5ms 10ms; do
	printf 'busy-poll = %s\n' "$bp" >"$T/bp.conf"
	if tl_run "busy-poll $bp" 0 "$RXGEMMD" --config "$T/bp.conf" --list-devices; then
		tl_ok "busy-poll = $bp is accepted"
	fi
done
printf 'max-queue = 5\nclient-max-queue = 2\n' >"$T/q.conf"
tl_daemon_start queue --config "$T/q.conf"
qjson() { # FILE: status --json of the queue daemon
	tl_run "status --json" 0 "$RXGEMM" --socket "$TL_DAEMON_SOCKET" status --json &&
		cp "$TL_OUT" "$1"
}
qjson "$T/q1.json" && tl_json "queue bounds" "$T/q1.json" \
	"d['queue']['max_queue'] == 5 and d['queue']['client_max_queue'] == 2" &&
	tl_ok "max-queue and client-max-queue from the config file"
printf 'max-queue = 0\nclient-max-queue = 7\n' >"$T/q.conf"
kill -HUP "$TL_DAEMON_PID"
for ((i = 0; i < 100; i++)); do
	grep -q 'reloaded' "$TL_DAEMON_LOG" && break
	sleep 0.05
done
qjson "$T/q2.json" && tl_json "queue bounds after SIGHUP" "$T/q2.json" \
	"d['queue']['max_queue'] == 0 and d['queue']['client_max_queue'] == 7" &&
	tl_ok "SIGHUP takes new queue bounds"
# Start-up checks come first: a socket another daemon serves is refused before the second
# daemon opens the device ("device 0:" is its first line about it).
if tl_run "socket in use" 1 "$RXGEMMD" --socket "$TL_DAEMON_SOCKET"; then
	tl_expect_output "socket in use" "another daemon is serving on $TL_DAEMON_SOCKET" &&
		! grep -q "device 0:" "$TL_OUT" "$TL_ERR" &&
		tl_ok "a socket in use is reported before the device is opened"
fi
tl_daemon_stop "$TL_DAEMON_PID" TERM

# Shared-memory bounds per connection (client-shm-regions, client-shm-max; test-shm shows
# them at work): good values are taken, bad ones refused with the file and line.
bad "no regions" "client-shm-regions = 0" "bad\.conf:1: client-shm-regions '0'"
bad "more regions than the table" "client-shm-regions = 65" \
	"bad\.conf:1: client-shm-regions '65' is not a number of regions from 1 to 64"
bad "a shm bound that is no size" "client-shm-max = lots" "bad\.conf:1: client-shm-max 'lots'"
bad "an unknown user" "allow-uids = 1000, no-such-user-h1" \
	"bad\.conf:1: allow-uids 'no-such-user-h1' is not a user name or number"
bad "an unknown group" "allow-gids = no-such-group-h1" \
	"bad\.conf:1: allow-gids 'no-such-group-h1' is not a group name or number"
bad "a bad status detail" "status-detail = some" "bad\.conf:1: status-detail 'some' is not own or all"
printf 'allow-uids = root, 65534\nallow-gids = 0 4242\nstatus-detail = all\n' >"$T/acl.conf"
if tl_run "access control keys" 0 "$RXGEMMD" --config "$T/acl.conf" --list-devices; then
	tl_ok "allow-uids, allow-gids and status-detail are accepted"
fi
printf 'client-shm-regions = 8\nclient-shm-max = 16G\n' >"$T/shm.conf"
if tl_run "shm bounds" 0 "$RXGEMMD" --config "$T/shm.conf" --list-devices; then
	tl_ok "client-shm-regions and client-shm-max are accepted"
fi

# A socket in a directory that does not exist: the right errno, before the device.
if tl_run "socket dir missing" 1 "$RXGEMMD" --socket "$T/missing/rxgemmd.sock"; then
	tl_expect_output "socket dir missing" \
		"cannot listen on $T/missing/rxgemmd\.sock: its directory $T/missing: No such file or directory" &&
		! grep -q "device 0:" "$TL_OUT" "$TL_ERR" &&
		tl_ok "a missing socket directory is reported at once, as ENOENT"
fi

# PoCL hides its devices from a user who cannot write its cache (HOME=/ for nobody): the
# daemon says so and names POCL_CACHE_DIR, which then helps. Needs root to become nobody.
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1 && [ -z "${RXGEMM_TEST_DEVICE:-}" ]; then
	as_nobody() {
		setpriv --reuid=65534 --regid=65534 --clear-groups \
			env -u XDG_CACHE_HOME -u POCL_CACHE_DIR "$@"
	}
	rc=0
	as_nobody HOME=/ "$RXGEMMD" --list-devices >"$T/nobody.out" 2>&1 || rc=$?
	if grep -q "no OpenCL device found" "$T/nobody.out"; then
		[ "$rc" -eq 1 ] && grep -q "PoCL (the CPU OpenCL driver) hides its devices when it cannot write its kernel cache //*\.cache/pocl, and / is not writable for this user: set POCL_CACHE_DIR" "$T/nobody.out" &&
			tl_ok "no device for want of PoCL's cache: the message names POCL_CACHE_DIR" ||
			tl_fail "no device for want of PoCL's cache: exit $rc, $(cat "$T/nobody.out")"
		mkdir -p "$T/pocl" && chmod 0777 "$T" "$T/pocl"
		rc=0
		as_nobody HOME=/ POCL_CACHE_DIR="$T/pocl" "$RXGEMMD" --list-devices >"$T/nobody2.out" 2>&1 || rc=$?
		[ "$rc" -eq 0 ] && grep -q "^0: " "$T/nobody2.out" &&
			tl_ok "with POCL_CACHE_DIR writable, the same user sees the device" ||
			tl_fail "POCL_CACHE_DIR did not help: exit $rc, $(cat "$T/nobody2.out")"
	else
		echo "skipped: a driver other than PoCL's shows devices without a cache (exit $rc)"
	fi
else
	echo "skipped: PoCL's cache for another user (needs root and setpriv)"
fi

tl_finish

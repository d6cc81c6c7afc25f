# shellcheck shell=bash disable=SC2034
# lib.sh: helpers for the shell tests; source it from a bash script run with set -euo pipefail.
#
#   tl_init                         temp dir ($TL_TMP), cleanup trap, failure counter
#   tl_daemon_start NAME [ARG...]   start $RXGEMMD on $TL_TMP/NAME.sock; sets TL_DAEMON_PID,
#                                   TL_DAEMON_SOCKET, TL_DAEMON_LOG; exits 77 when the
#                                   daemon finds no OpenCL device
#   tl_daemon_stop PID SIG [SECS]   signal it and wait; the exit status lands in TL_STATUS
#   tl_run NAME WANT_RC CMD...      run CMD (stdout in $TL_OUT, stderr in $TL_ERR), record
#                                   a failure when its exit status is not WANT_RC
#   tl_fail MSG / tl_ok MSG         record and print a result
#   tl_finish                       print the summary and exit 0 or 1
#
# Every command runs under a time limit, so a hung daemon fails a test rather than the run.

TL_FAILED=0
TL_PASSED=0
TL_PIDS=()
TL_CMD_TIMEOUT=${TL_CMD_TIMEOUT:-120}

# tl_python MODULES: set PY to a python3 that imports MODULES (e.g. "numpy, pytest"):
# $PYTHON, then the first python3 on PATH, then Debian's (where another python3, a pyenv
# shim say, comes first on PATH). Returns 1, PY empty, when none does.
tl_python() {
	local p
	PY=
	for p in ${PYTHON:-} python3 /usr/bin/python3; do
		if "$p" -c "import $1" 2>/dev/null; then
			PY=$p
			return 0
		fi
	done
	return 1
}

tl_init() {
	if [ -z "${RXGEMMD:-}" ] || [ -z "${RXGEMM:-}" ]; then
		echo "SKIP: RXGEMMD and RXGEMM are not set (run this through make check)"
		exit 77
	fi
	for p in "$RXGEMMD" "$RXGEMM"; do
		if [ ! -x "$p" ]; then
			echo "FAIL: $p is not an executable"
			exit 1
		fi
	done
	TL_TMP=$(mktemp -d "${TMPDIR:-/tmp}/rxgt.XXXXXX")
	TL_OUT=$TL_TMP/stdout
	TL_ERR=$TL_TMP/stderr
	trap tl_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

tl_cleanup() {
	local rc=$? pid
	for pid in ${TL_PIDS[@]+"${TL_PIDS[@]}"}; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
	done
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -n "${TL_TMP:-}" ]; then
		for log in "$TL_TMP"/*.log; do
			[ -f "$log" ] || continue
			echo "----- $log -----"
			cat "$log"
		done
	fi
	[ -n "${TL_TMP:-}" ] && rm -rf "$TL_TMP"
	exit "$rc"
}

tl_ok() {
	TL_PASSED=$((TL_PASSED + 1))
	echo "ok: $*"
}

tl_fail() {
	TL_FAILED=$((TL_FAILED + 1))
	echo "FAIL: $*"
}

# Show what the last tl_run printed, indented.
tl_show_output() {
	if [ -s "$TL_OUT" ]; then
		echo "  stdout:"
		sed 's/^/    /' "$TL_OUT" | head -n 40
	fi
	if [ -s "$TL_ERR" ]; then
		echo "  stderr:"
		sed 's/^/    /' "$TL_ERR" | head -n 40
	fi
}

# tl_run NAME WANT_RC CMD...: returns 0 when CMD exited with WANT_RC, else records a failure
# and returns 1 (use it in an if or with ||, as set -e is on).
tl_run() {
	local name=$1 want=$2 rc=0
	shift 2
	if command -v timeout >/dev/null 2>&1; then
		timeout "$TL_CMD_TIMEOUT" "$@" >"$TL_OUT" 2>"$TL_ERR" || rc=$?
	else
		"$@" >"$TL_OUT" 2>"$TL_ERR" || rc=$?
	fi
	if [ "$rc" -ne "$want" ]; then
		if [ "$rc" -eq 124 ]; then
			tl_fail "$name: no exit within $TL_CMD_TIMEOUT s (want exit $want): $*"
		else
			tl_fail "$name: exit $rc, want $want: $*"
		fi
		tl_show_output
		return 1
	fi
	return 0
}

# tl_asan_runtime LIB: the AddressSanitizer runtime LIB links (tests/sanitize.sh builds the
# whole tree with it), else nothing. A program that loads an instrumented LIB without
# being linked with the runtime itself (python3, or LIB given in LD_PRELOAD) must have the
# runtime preloaded first, or ASan aborts at start.
tl_asan_runtime() {
	ldd "$1" 2>/dev/null | awk '$1 ~ /^libasan\.so/ { print $3; exit }'
}

# tl_expect_output NAME ERE: the last command's stdout or stderr matches ERE (any case).
tl_expect_output() {
	if grep -Eqi -- "$2" "$TL_OUT" "$TL_ERR"; then
		return 0
	fi
	tl_fail "$1: output does not match /$2/"
	tl_show_output
	return 1
}

# Whether something accepts connections on the Unix socket $1.
tl_connectable() {
	if command -v python3 >/dev/null 2>&1; then
		python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
EOF
	else
		[ -S "$1" ]
	fi
}

# The state letter of process $1 (R, S, Z, ...), empty when it is gone.
tl_proc_state() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	echo "${stat%% *}"
}

tl_log_says_no_device() {
	grep -Eqi 'no opencl|no device|no such device|device not found|platform not found|CL_DEVICE_NOT_FOUND|CL_PLATFORM_NOT_FOUND|no gpu|no usable device' "$1"
}

# tl_daemon_start NAME [ARG...]
tl_daemon_start() {
	local name=$1 i state
	shift
	TL_DAEMON_SOCKET=$TL_TMP/$name.sock
	TL_DAEMON_LOG=$TL_TMP/$name.log
	local dev=()
	if [ -n "${RXGEMM_TEST_DEVICE:-}" ]; then
		dev=(--device "$RXGEMM_TEST_DEVICE")
	fi
	"$RXGEMMD" --socket "$TL_DAEMON_SOCKET" --log-level debug ${dev[@]+"${dev[@]}"} "$@" \
		</dev/null >>"$TL_DAEMON_LOG" 2>&1 &
	TL_DAEMON_PID=$!
	TL_PIDS+=("$TL_DAEMON_PID")
	# PoCL compiles the kernels at first start: allow 300 s in 50 ms steps.
	for ((i = 0; i < 6000; i++)); do
		state=$(tl_proc_state "$TL_DAEMON_PID")
		if [ -z "$state" ] || [ "$state" = Z ]; then
			local rc=0
			wait "$TL_DAEMON_PID" || rc=$?
			if tl_log_says_no_device "$TL_DAEMON_LOG"; then
				echo "SKIP: rxgemmd found no OpenCL device:"
				cat "$TL_DAEMON_LOG"
				exit 77
			fi
			echo "FAIL: rxgemmd ($name) exited with $rc before it was ready"
			exit 1
		fi
		if [ -S "$TL_DAEMON_SOCKET" ] && tl_connectable "$TL_DAEMON_SOCKET"; then
			return 0
		fi
		sleep 0.05
	done
	echo "FAIL: rxgemmd ($name) not ready after 300 s"
	exit 1
}

# tl_daemon_stop PID SIG [SECS]: TL_STATUS gets the exit status (128 + n for a signal,
# 124 when it had to be killed after SECS).
tl_daemon_stop() {
	local pid=$1 sig=$2 secs=${3:-60} i state
	TL_STATUS=0
	kill -s "$sig" "$pid" 2>/dev/null || true
	for ((i = 0; i < secs * 20; i++)); do
		state=$(tl_proc_state "$pid")
		if [ -z "$state" ] || [ "$state" = Z ]; then
			wait "$pid" || TL_STATUS=$?
			return 0
		fi
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	TL_STATUS=124
}

# tl_json NAME FILE PYTHON-EXPR: FILE holds exactly one JSON value (d) for which EXPR is
# true. Without python3 only checks that FILE starts with { and ends with }.
tl_json() {
	local name=$1 file=$2 expr=$3
	if command -v python3 >/dev/null 2>&1; then
		if ! python3 - "$file" "$expr" <<'EOF'; then
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    sys.exit("not JSON: %s" % e)
if not eval(sys.argv[2]):
    sys.exit("JSON does not satisfy: %s" % sys.argv[2])
EOF
			tl_fail "$name: bad JSON output"
			sed 's/^/    /' "$file" | head -n 20
			return 1
		fi
	else
		if ! tr -d ' \n\t' <"$file" | grep -q '^{.*}$'; then
			tl_fail "$name: output is not one JSON object"
			return 1
		fi
	fi
	return 0
}

tl_finish() {
	echo "$TL_PASSED passed, $TL_FAILED failed"
	if [ "$TL_FAILED" -ne 0 ]; then
		exit 1
	fi
	exit 0
}

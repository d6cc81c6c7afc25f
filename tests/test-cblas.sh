#!/bin/bash
# test-cblas.sh: the CBLAS shim (client/cblas.c) under programs that call BLAS as they
# always have, against a real daemon on PoCL:
# - a C program linked with -lblas, run with LD_PRELOAD of the shim: every product right
#   (checked by the program against its own double-precision loop), the big ones counted
#   as jobs of the shim's client in the daemon's status, the small ones not;
# - the same program linked against the shim alone (no -lblas): the shim finds the BLAS;
# - with no daemon at all, and with RXGEMM_CBLAS_THRESHOLD=off: right, and no job;
# - Debian's numpy, whose float32 matmul calls the system CBLAS: its product is a job of
#   the daemon and equals numpy's float64 product (skipped without numpy).
set -euo pipefail
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init

B=${TESTS_BUILDDIR:-$(dirname "$0")}
SHIM=$B/../client/.libs/librxgemm-cblas.so
LIBDIR=$B/../client/.libs
if [ ! -e "$SHIM" ]; then
	echo "SKIP: no shared librxgemm-cblas at $SHIM (built with --disable-shared?)"
	exit 77
fi
DEMO=$B/cblas-demo
# In a sanitizer build the shim is instrumented: its runtime goes first in LD_PRELOAD.
ASAN_RT=$(tl_asan_runtime "$SHIM")
PRELOAD="${ASAN_RT:+$ASAN_RT }$SHIM"
LINKED=$B/cblas-demo-linked
# The system BLAS the linked program finds through the shim, and numpy through it.
have_blas=0
ldconfig -p 2>/dev/null | grep -q 'libblas.so.3' && have_blas=1

tl_daemon_start cblas
S=$TL_DAEMON_SOCKET
export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export RXGEMM_SOCKET=$S
# 100000 multiply-adds: the demo's 8^3 and 20 x 30 x 10 stay on the CPU, the rest go.
export RXGEMM_CBLAS_THRESHOLD=100000

# jobs_ok of the shim's clients (connected or departed: the sum over departed ones is the
# daemon's, so take the total), the daemon's total, and the recent jobs' shapes.
status() {
	tl_run "status" 0 "$RXGEMM" --socket "$S" status --json || exit 1
	cp "$TL_OUT" "$TL_TMP/$1.json"
}
jobs_ok() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["jobs_ok"])' "$TL_TMP/$1.json"
}
recent_has() { # FILE m n k
	python3 - "$TL_TMP/$1.json" "$2" "$3" "$4" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
m, n, k = map(int, sys.argv[2:])
sys.exit(0 if any((r["m"], r["n"], r["k"]) == (m, n, k) and r["status"].lower() == "ok"
                  for r in d["recent"]) else 1)
EOF
}

# run_demo NAME PROGRAM [ENV...]: runs it, checks its own verdict; DEMO_BIG gets the count
# of products at or over the threshold (at least $MIN_BIG of them).
MIN_BIG=4
run_demo() {
	local name=$1 prog=$2
	shift 2
	tl_run "$name" 0 env "$@" RXGEMM_CBLAS_VERBOSE=1 "$prog" || return 1
	DEMO_BIG=$(sed -n 's/^products [0-9]* big \([0-9]*\)$/\1/p' "$TL_OUT")
	if [ -z "$DEMO_BIG" ] || [ "$DEMO_BIG" -lt "$MIN_BIG" ]; then
		tl_fail "$name: no 'products N big B' line with B >= $MIN_BIG"
		tl_show_output
		return 1
	fi
	return 0
}

# --- preloaded into a program linked with -lblas -------------------------------------------
if [ -x "$DEMO" ]; then
	status before
	if run_demo "preload" "$DEMO" LD_PRELOAD="$PRELOAD"; then
		tl_ok "LD_PRELOAD: cblas_sgemm and sgemm_ give the right products"
		if grep -q 'cblas_sgemm 150 x 120 x 110 on the daemon' "$TL_ERR" &&
			grep -q 'sgemm_ 120 x 111 x 100 on the daemon' "$TL_ERR" &&
			grep -q 'cblas_sgemm 8 x 8 x 8 on the CPU' "$TL_ERR"; then
			tl_ok "LD_PRELOAD: RXGEMM_CBLAS_VERBOSE says where each call went"
		else
			tl_fail "LD_PRELOAD: RXGEMM_CBLAS_VERBOSE lines missing"
			tl_show_output
		fi
		status after
		want=$(($(jobs_ok before) + DEMO_BIG))
		if [ "$(jobs_ok after)" -eq "$want" ]; then
			tl_ok "LD_PRELOAD: the daemon ran the $DEMO_BIG big products, not the small ones"
		else
			tl_fail "LD_PRELOAD: daemon's jobs_ok $(jobs_ok before) -> $(jobs_ok after), want $want"
		fi
		if recent_has after 150 120 110 && recent_has after 120 111 100; then
			tl_ok "LD_PRELOAD: status lists the cblas_sgemm and the sgemm_ jobs"
		else
			tl_fail "LD_PRELOAD: the recent jobs miss 150x120x110 or 120x111x100"
		fi
	fi

	status before
	MIN_BIG=0
	if run_demo "threshold off" "$DEMO" LD_PRELOAD="$PRELOAD" RXGEMM_CBLAS_THRESHOLD=off; then
		status after
		if [ "$(jobs_ok after)" -eq "$(jobs_ok before)" ]; then
			tl_ok "RXGEMM_CBLAS_THRESHOLD=off: right products, none on the daemon"
		else
			tl_fail "RXGEMM_CBLAS_THRESHOLD=off: the daemon ran jobs"
		fi
	fi
	MIN_BIG=4

	if run_demo "no daemon" "$DEMO" LD_PRELOAD="$PRELOAD" RXGEMM_SOCKET="$TL_TMP/nothing.sock"; then
		if grep -q 'no daemon' "$TL_ERR"; then
			tl_ok "no daemon: the system BLAS computes every product right"
		else
			tl_fail "no daemon: the shim did not say it found none"
			tl_show_output
		fi
	fi
else
	echo "note: tests/cblas-demo not built (configure found no -lblas with cblas_sgemm)"
fi

# --- linked against the shim instead of the BLAS --------------------------------------------
status before
if run_demo "linked" "$LINKED"; then
	status after
	want=$(($(jobs_ok before) + DEMO_BIG))
	if [ "$(jobs_ok after)" -eq "$want" ]; then
		tl_ok "linked with -lrxgemm-cblas: right products, the $DEMO_BIG big ones on the daemon"
	else
		tl_fail "linked: daemon's jobs_ok $(jobs_ok before) -> $(jobs_ok after), want $want"
	fi
fi
if run_demo "linked, no daemon" "$LINKED" RXGEMM_SOCKET="$TL_TMP/nothing.sock"; then
	if [ "$have_blas" -eq 1 ]; then
		tl_ok "linked, no daemon: the shim found libblas.so.3 and computed right"
	else
		tl_ok "linked, no daemon: the shim's own loop computed right (no libblas.so.3)"
	fi
fi

# --- Debian's numpy --------------------------------------------------------------------------
if ! tl_python numpy; then
	echo "note: no python3 with numpy: the numpy part is skipped"
elif ! ldd "$("$PY" -c 'import numpy.core._multiarray_umath as m; print(m.__file__)')" |
	grep -Eq 'libc?blas\.so'; then
	echo "note: this numpy carries its own BLAS (not the system's): the numpy part is skipped"
else
	status before
	cat >"$TL_TMP/np.py" <<'EOF'
import numpy as np
rng = np.random.default_rng(7)
a = rng.standard_normal((300, 200), dtype=np.float32)
b = rng.standard_normal((200, 250), dtype=np.float32)
c = a @ b
want = a.astype(np.float64) @ b.astype(np.float64)
err = np.abs(c - want).max()
print("max error", err)
assert c.dtype == np.float32 and c.shape == (300, 250)
assert err < 1e-3, err
EOF
	if tl_run "numpy" 0 env LD_PRELOAD="$PRELOAD" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" RXGEMM_CBLAS_VERBOSE=1 "$PY" "$TL_TMP/np.py"; then
		status after
		if [ "$(jobs_ok after)" -eq $(($(jobs_ok before) + 1)) ] &&
			{ recent_has after 300 250 200 || recent_has after 250 300 200; }; then
			tl_ok "numpy: a float32 matmul through the system CBLAS ran on the daemon, right"
		else
			tl_fail "numpy: the daemon's counters do not show the 300 x 250 x 200 job"
			tl_show_output
		fi
	fi
fi

tl_daemon_stop "$TL_DAEMON_PID" TERM
tl_finish

#!/bin/bash
# test-python.sh: the rxgemm Python package (python/rxgemm) from the build tree, by pytest
# (tests/python/) against a private daemon on PoCL. Skipped (77) without a python3 that has
# numpy and pytest (Debian: python3-numpy, python3-pytest).
set -euo pipefail
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

SRC=${TESTS_SRCDIR:-$(dirname "$0")}
B=${TESTS_BUILDDIR:-$(dirname "$0")}
LIB=$B/../client/.libs/librxgemm.so
if ! tl_python "numpy, pytest"; then
	echo "SKIP: no python3 with numpy and pytest (Debian: python3-numpy python3-pytest)"
	exit 77
fi
if [ ! -e "$LIB" ]; then
	echo "SKIP: no shared librxgemm at $LIB (built with --disable-shared?)"
	exit 77
fi
tl_init
# With busy polling on (a CPU device has it off by default): the Hello reply says so, and
# the whole suite runs with the daemon's threads polling.
tl_daemon_start python --busy-poll 250us
rc=0
# In a sanitizer build librxgemm is instrumented and python3 is not: the runtime is
# preloaded, and python's own leaks at exit are not this test's to report.
ASAN_RT=$(tl_asan_runtime "$LIB")
env ${ASAN_RT:+LD_PRELOAD="$ASAN_RT" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"} \
	RXGEMM_SOCKET="$TL_DAEMON_SOCKET" RXGEMM_LIBRARY="$LIB" RXGEMM="$RXGEMM" \
	RXGEMM_TEST_BUSY_POLL_US=250 \
	PYTHONPATH="$SRC/../python${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
	timeout 1200 "$PY" -m pytest -q -p no:cacheprovider -rs "$SRC/python" || rc=$?
tl_daemon_stop "$TL_DAEMON_PID" TERM
# pytest: 0 all passed, 1 some failed, 5 none collected (a broken run, not a skip).
[ "$rc" -eq 0 ] || { echo "FAIL: pytest exited with $rc"; exit 1; }
exit 0

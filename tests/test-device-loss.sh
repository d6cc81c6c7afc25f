#!/bin/bash
# test-device-loss.sh: a lost device (a kernel fault on NVIDIA's driver loses the whole
# OpenCL context) is answered and ends the daemon non-zero, for systemd to restart it.
# The loss is injected on PoCL with RXGEMMD_TEST_DEVICE_LOSS=N (job N fails as if the
# device were gone): that job gets STATUS_DEVICE with a sentence, a job sent afterwards
# gets STATUS_DEVICE too (never a hang), and the daemon exits by itself with status 1
# after answering. A device that fails a job but still works (a GEMM too big for it)
# keeps serving: covered by test-budget.sh and test-shm's failures, which exit 0.
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init

RXGEMMD_TEST_DEVICE_LOSS=2 tl_daemon_start lost --auto-tune never
S=$TL_DAEMON_SOCKET
P=$TL_DAEMON_PID

if tl_run "first job" 0 "$RXGEMM" --socket "$S" gemm -m 64 -n 48 -k 32 --check; then
	tl_ok "a job before the loss runs"
fi
# The CLI's exit code for an error the daemon reports is 3.
if tl_run "the lost job" 3 "$RXGEMM" --socket "$S" gemm -m 64 -n 48 -k 32; then
	tl_expect_output "the lost job" "device" && tl_ok "the job that met the loss gets a device error"
fi
# The daemon exits on its own: wait for it (a generous bound: it only has to answer and
# close), then check how.
tl_daemon_stop "$P" 0 120
if [ "$TL_STATUS" = 1 ]; then
	tl_ok "the daemon exits with status 1 after losing its device"
else
	tl_fail "the daemon's exit status after the loss is $TL_STATUS, want 1"
	cat "$TL_DAEMON_LOG"
fi
if grep -q "the OpenCL device is lost" "$TL_DAEMON_LOG"; then
	tl_ok "the log says the device is lost"
else
	tl_fail "the log does not say that the device is lost"
fi
# Nothing listens any more: a client gets a clear connection error, not a hang.
if tl_run "after the exit" 3 "$RXGEMM" --socket "$S" status; then
	tl_ok "after the exit a client is told that no daemon answers"
fi
tl_finish

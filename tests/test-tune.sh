#!/bin/bash
# test-tune.sh: rxgemmd --tune end to end on a tiny time budget: it stores a choice for
# every transpose pair and size class beside the kernel cache, a restarted daemon loads it
# (log and rxgemm status say so) and serves correct results with it in every class, a
# damaged tuning file is survived, and another cache directory holds no tuning.
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init
T=$TL_TMP
D=$T/cache
dev=()
[ -n "${RXGEMM_TEST_DEVICE:-}" ] && dev=(--device "$RXGEMM_TEST_DEVICE")

TL_CMD_TIMEOUT=300
if ! tl_run "tune" 0 "$RXGEMMD" --tune --tune-budget 8 --cache-dir "$D" ${dev[@]+"${dev[@]}"}; then
	if tl_log_says_no_device "$TL_ERR"; then
		echo "SKIP: no OpenCL device"
		exit 77
	fi
	tl_finish
fi
tl_expect_output "tune" 'tuning stored in' && tl_ok "--tune stores its result"
# It says how long it took against its budget (the overrun, if any, is one measurement).
tl_expect_output "tune" 'tuning (took [0-9.]+ s of its 8 s|stopped at its time limit of 8 s \(after [0-9.]+ s)' &&
	tl_ok "--tune reports its time against the budget"
files=("$D"/tune-*.txt)
if [ -f "${files[0]}" ]; then
	tune=${files[0]}
	lines=$(grep -vc '^#' "$tune")
	[ "$lines" -eq 24 ] && tl_ok "24 choices (4 transpose pairs x 6 classes)" ||
		tl_fail "$lines choices in $tune, want 24"
	if grep -v '^#' "$tune" | grep -Eqv '^[01] [01] [0-5] (reg|tiled|vec):[0-9x:vpmk]+ [0-9.]+$'; then
		tl_fail "malformed lines in $tune"
		cat "$tune"
	else
		tl_ok "every line is a transpose pair, a class, a configuration and GFLOPS"
	fi
	awk '!/^#/ && $5 > 0 { found = 1 } END { exit !found }' "$tune" &&
		tl_ok "the search measured at least one class" ||
		tl_fail "no measured GFLOPS in $tune"
	nn0=$(awk '!/^#/ && $1 == 0 && $2 == 0 && $3 == 0 { print $4 }' "$tune")
else
	tl_fail "no tune-*.txt in $D"
	tl_finish
fi

# A restart loads it.
tl_daemon_start tuned --cache-dir "$D"
grep -q 'loaded 24 tuned kernel choices' "$TL_DAEMON_LOG" && tl_ok "a restart loads the tuning" ||
	tl_fail "the restarted daemon did not load the tuning"
S=$TL_DAEMON_SOCKET
if tl_run "status" 0 "$RXGEMM" --socket "$S" status --json; then
	cp "$TL_OUT" "$T/status.json"
	tl_json "status kernels" "$T/status.json" \
		"len(d['kernels']) == 24 and any(k['tuned'] and k['gflops'] > 0 for k in d['kernels']) and [k['kernel'] for k in d['kernels'] if not k['trans_a'] and not k['trans_b'] and k['size_class'] == 0][0] == '$nn0-NN'" &&
		tl_ok "rxgemm status shows the tuned choices"
fi
tl_run "status text" 0 "$RXGEMM" --socket "$S" status && tl_expect_output "status text" "$nn0-NN" &&
	tl_ok "the status table names the tuned kernel"
# One shape in each size class, each transpose, checked against the CPU.
for shape in "-m 200 -n 200 -k 33" "-m 500 -n 500 -k 20" "-m 1000 -n 1000 -k 9" "-m 1540 -n 1540 -k 5" \
	"-m 1000 -n 37 -k 300" "-m 50 -n 999 -k 300"; do
	for t in "" "--transa" "--transb" "--transa --transb"; do
		# shellcheck disable=SC2086
		tl_run "gemm $shape $t" 0 "$RXGEMM" --socket "$S" gemm $shape $t --check || true
	done
done
[ "$TL_FAILED" -eq 0 ] && tl_ok "tuned kernels give correct results in every class and transpose"
tl_daemon_stop "$TL_DAEMON_PID" TERM

# A damaged file: bad lines are skipped with a warning, the rest still serves.
printf '0 0 0 reg:999x1x1:1x1:v1x1:p0x0:m0 1.0\nnot a line at all\n' >>"$tune"
tl_daemon_start damaged --cache-dir "$D"
grep -q 'ignoring a malformed line' "$TL_DAEMON_LOG" && tl_ok "a damaged tuning file is reported" ||
	tl_fail "no warning about the damaged tuning file"
tl_run "gemm after damage" 0 "$RXGEMM" --socket "$TL_DAEMON_SOCKET" gemm -m 100 -n 90 -k 80 --check &&
	tl_ok "the daemon serves correctly with a damaged tuning file"
tl_daemon_stop "$TL_DAEMON_PID" TERM

# Another cache directory has no tuning: the defaults serve.
tl_daemon_start other --cache-dir "$T/other"
grep -q 'no tuning stored for this device' "$TL_DAEMON_LOG" && tl_ok "no tuning elsewhere: defaults" ||
	tl_fail "the daemon did not say it uses the defaults"
tl_daemon_stop "$TL_DAEMON_PID" TERM

# Tuning at the first start on a device, bounded in time, then loaded by the next start.
tl_daemon_start first --cache-dir "$T/auto" --auto-tune always --auto-tune-budget 5
grep -q 'tuning stored in' "$TL_DAEMON_LOG" && tl_ok "the first start tunes and stores" ||
	tl_fail "--auto-tune always did not tune at the first start"
tl_run "gemm after auto-tune" 0 "$RXGEMM" --socket "$TL_DAEMON_SOCKET" gemm -m 300 -n 200 -k 100 --transa --check &&
	tl_ok "the auto-tuned daemon serves correct results"
tl_daemon_stop "$TL_DAEMON_PID" TERM
tl_daemon_start second --cache-dir "$T/auto" --auto-tune always --auto-tune-budget 5
grep -q 'loaded 24 tuned kernel choices' "$TL_DAEMON_LOG" && ! grep -q 'tuning:' "$TL_DAEMON_LOG" &&
	tl_ok "the next start loads it and does not search again" ||
	tl_fail "the second start searched again or loaded nothing"
tl_daemon_stop "$TL_DAEMON_PID" TERM
# On a CPU device the default (gpu) does not search.
tl_daemon_start cpu-default --cache-dir "$T/auto-cpu"
if grep -q '(CPU,' "$TL_DAEMON_LOG"; then
	grep -q 'tuning:' "$TL_DAEMON_LOG" && tl_fail "auto-tune=gpu searched on a CPU" ||
		tl_ok "auto-tune=gpu leaves CPU devices on their defaults"
fi
tl_daemon_stop "$TL_DAEMON_PID" TERM
# On a terminal (a pty from script(1)) the bar moves with the budget's time: its percents
# never go down, it passes through values between 0 and 100 and ends at 100, each draw
# with an ETA.
if command -v script >/dev/null 2>&1; then
	cp -a "$D" "$T/cache-pty"
	printf -v cmd '%q ' "$RXGEMMD" --tune --tune-budget 8 --cache-dir "$T/cache-pty" \
		${dev[@]+"${dev[@]}"}
	if tl_run "tune on a tty" 0 script -qec "$cmd" /dev/null; then
		tr '\r' '\n' <"$TL_OUT" | grep -aE '^\[[# ]{30}\] +[0-9]+% ETA +[0-9]+:[0-5][0-9] ' >"$T/bar" || true
		if [ -s "$T/bar" ] && awk '{ p = $0; sub(/^[^]]*\] */, "", p); p += 0;
			if (p < last) bad = 1; if (p > 0 && p < 100) mid = 1; last = p }
			END { exit bad || !mid || last != 100 }' "$T/bar"; then
			tl_ok "the tuning bar on a terminal moves to 100% with an ETA ($(wc -l <"$T/bar") draws)"
		else
			tl_fail "the tuning bar does not move monotonically through the middle to 100%"
			head -c 2000 "$T/bar"
		fi
	fi
else
	echo "note: no script(1): the tuning bar on a terminal is not checked"
fi
tl_run "bad auto-tune" 2 "$RXGEMMD" --auto-tune sometimes --list-devices &&
	tl_expect_output "bad auto-tune" "auto-tune 'sometimes'" && tl_ok "a bad --auto-tune is refused"

tl_finish

#!/bin/bash
# test-top.sh: `rxgemm top` on a real terminal, driven through tmux: every line fits the
# window (80 columns, then 60 after a resize), q quits, Ctrl-C quits, and both leave the
# alternate screen so that what was on the terminal before comes back; -b and --json for
# scripts. Skipped (77) without tmux.
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init
T=$TL_TMP

if ! command -v tmux >/dev/null 2>&1; then
	echo "SKIP: tmux is not installed (Debian: apt-get install tmux)"
	exit 77
fi

tl_daemon_start top
S=$TL_DAEMON_SOCKET
# A few jobs, so that the client and kernel tables have rows (and long kernel names).
for i in 1 2 3; do
	tl_run "job $i" 0 "$RXGEMM" --socket "$S" gemm -m 64 -n 48 -k 32 >/dev/null || true
done

# Our own tmux server (its socket in $T), so that nothing of the user's is touched.
TM=(tmux -S "$T/tmux.sock" -f /dev/null)
# tl_cleanup exits with the status it finds ($?): hand it the script's, not kill-server's
# (set -e would stop the trap at a failing command, hence the ||).
trap 'tl_rc=$?; "${TM[@]}" kill-server 2>/dev/null || true; (exit $tl_rc) || tl_cleanup; tl_cleanup' EXIT

# pane_wait NAME ERE [SECS]: the pane shows a line matching ERE (the poll stops at once
# when it does; the time limit is only for a hang).
pane_wait() {
	local i
	for ((i = 0; i < ${3:-60} * 10; i++)); do
		if "${TM[@]}" capture-pane -p -J -t top >"$T/pane" 2>/dev/null && grep -Eq -- "$2" "$T/pane"; then
			return 0
		fi
		sleep 0.1
	done
	tl_fail "$1: the pane never showed /$2/:"
	sed 's/^/    /' "$T/pane"
	return 1
}

# pane_fits NAME COLS: wait until a whole frame fits COLS columns: the header is on the
# pane and its widest line is within COLS (and wider than 40, so that a pane caught
# between two drawings does not pass as empty). Polled, because top redraws on its own
# timer and on SIGWINCH, both late on a loaded machine; the limit is only for a hang.
pane_fits() {
	local i w=0
	for ((i = 0; i < 600; i++)); do
		"${TM[@]}" capture-pane -p -J -t top >"$T/pane" 2>/dev/null || true
		w=$(LC_ALL=C.UTF-8 awk '{ if (length($0) > w) w = length($0) } END { print w + 0 }' "$T/pane")
		if grep -q '^rxgemm top - up' "$T/pane" && [ "$w" -le "$2" ] && [ "$w" -gt 40 ]; then
			tl_ok "$1 (widest $w)"
			return 0
		fi
		sleep 0.1
	done
	tl_fail "$1: the widest line stayed $w columns:"
	sed 's/^/    /' "$T/pane"
	return 1
}

alternate_on() {
	"${TM[@]}" display-message -p -t top '#{alternate_on}'
}

# start_top: a shell in an 80 x 24 window that prints a marker, runs top, then says how it
# ended. The shell is bash, whatever tmux's default-shell is: Ctrl-C reaches the shell
# too, and bash goes on when its child handled the signal and exited, where dash (the
# /bin/sh that tmux takes when SHELL is unset) dies with it and the pane closes.
cat >"$T/top-pane.sh" <<EOF
printf 'BEFORE-TOP\n'
'$RXGEMM' --socket '$S' top -d 0.3
echo "TOP-EXITED \$?"
sleep 600
EOF
# The second time the pane is respawned in place: killing the only session makes the tmux
# server exit, and a new-session that reaches its socket while it exits fails with "server
# exited unexpectedly".
start_top() {
	if "${TM[@]}" has-session -t top 2>/dev/null; then
		"${TM[@]}" respawn-pane -k -t top "exec bash '$T/top-pane.sh'"
		return
	fi
	"${TM[@]}" new-session -d -s top -x 80 -y 24 "exec bash '$T/top-pane.sh'"
	"${TM[@]}" set-option -t top window-size manual >/dev/null 2>&1 || true
}

start_top
if pane_wait "top starts" '^rxgemm top - up'; then
	[ "$(alternate_on)" = 1 ] && tl_ok "top runs on the alternate screen" ||
		tl_fail "top did not switch to the alternate screen"
	pane_fits "every line fits 80 columns" 80
	if grep -q 'BEFORE-TOP' "$T/pane"; then
		tl_fail "the frame did not replace the screen"
	fi
	# Narrower: the redraw that SIGWINCH brings fits 60 columns.
	"${TM[@]}" resize-window -t top -x 60 -y 24
	pane_fits "after a resize to 60 columns every line fits" 60
	"${TM[@]}" send-keys -t top q
	if pane_wait "q quits" '^TOP-EXITED 0$' 30; then
		tl_ok "q quits with exit 0"
		if grep -q '^BEFORE-TOP$' "$T/pane" && ! grep -q 'rxgemm top - up' "$T/pane" &&
			[ "$(alternate_on)" = 0 ]; then
			tl_ok "after q the screen is as it was before top"
		else
			tl_fail "after q the screen is not restored"
			sed 's/^/    /' "$T/pane"
		fi
	fi
fi

start_top
if pane_wait "top starts again" '^rxgemm top - up'; then
	"${TM[@]}" send-keys -t top C-c
	if pane_wait "Ctrl-C quits" '^TOP-EXITED [0-9]+$' 30; then
		if grep -q '^BEFORE-TOP$' "$T/pane" && ! grep -q 'rxgemm top - up' "$T/pane" &&
			[ "$(alternate_on)" = 0 ]; then
			tl_ok "Ctrl-C quits and restores the screen"
		else
			tl_fail "after Ctrl-C the screen is not restored"
			sed 's/^/    /' "$T/pane"
		fi
	fi
fi
"${TM[@]}" kill-server 2>/dev/null || true

# For scripts: -b prints N frames one after another, --json one JSON object per frame.
if tl_run "top -b" 0 "$RXGEMM" --socket "$S" top -b -n 2 -d 0.05; then
	[ "$(grep -c '^rxgemm top - up' "$TL_OUT")" -eq 2 ] && ! grep -q $'\033' "$TL_OUT" &&
		tl_ok "top -b -n 2: two frames, no escape sequences" || { tl_fail "top -b output"; tl_show_output; }
fi
if tl_run "top --json" 0 "$RXGEMM" --socket "$S" top --json -n 2 -d 0.05; then
	if [ "$(wc -l <"$TL_OUT")" -eq 2 ] && command -v python3 >/dev/null 2>&1 &&
		python3 -c 'import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    assert d["jobs_ok"] >= 3 and "clients" in d' "$TL_OUT"; then
		tl_ok "top --json -n 2: two lines of JSON with the counters"
	else
		tl_fail "top --json output"
		tl_show_output
	fi
fi

tl_daemon_stop "$TL_DAEMON_PID" TERM 60
tl_finish

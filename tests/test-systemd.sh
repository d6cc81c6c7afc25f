#!/bin/bash
# test-systemd.sh: rxgemmd's systemd integration, for real but without systemd as PID 1:
#   - systemd-analyze verify finds nothing to say about rxgemmd.service and rxgemmd.socket
#     (their man pages resolve too);
#   - socket activation: systemd-socket-activate listens, the first client's connection
#     starts rxgemmd on that socket, jobs succeed, and SIGTERM leaves the socket (it is the
#     service manager's) where a daemon on its own socket removes it;
#   - the sysusers.d and tmpfiles.d snippets create the user, the group and the
#     directories in a scratch root;
#   - the bash completion completes rxgemm's commands and options;
#   - hang-timeout (when the watchdog stops) takes durations and refuses the rest.
# Each part needs its tool and is skipped without it; with none of them the test is skipped.
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init
T=$TL_TMP
SRC=$TESTS_SRCDIR/..
BUILD=$TESTS_BUILDDIR/..
ran=0

# --- the units ------------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
	ran=$((ran + 1))
	mkdir -p "$T/units" "$T/man/man1" "$T/man/man5" "$T/man/man8"
	# The unit as installed, but running the daemon under test.
	sed "s|^ExecStart=.*|ExecStart=$RXGEMMD|" "$BUILD/systemd/rxgemmd.service" \
		>"$T/units/rxgemmd.service"
	cp "$SRC/systemd/rxgemmd.socket" "$T/units/"
	cp "$SRC/docs/rxgemm.1" "$T/man/man1/"
	cp "$SRC/docs/rxgemmd.conf.5" "$T/man/man5/"
	cp "$SRC/docs/rxgemmd.8" "$T/man/man8/"
	man_opt=()
	command -v man >/dev/null 2>&1 || man_opt=(--man=no)
	# verify exits 0 on unknown keys and bad values, so any output is a failure.
	if (cd "$T/units" && MANPATH=$T/man tl_run "verify" 0 systemd-analyze verify \
		${man_opt[@]+"${man_opt[@]}"} ./rxgemmd.socket ./rxgemmd.service); then
		if [ -s "$TL_OUT" ] || [ -s "$TL_ERR" ]; then
			tl_fail "systemd-analyze verify has something to say"
			tl_show_output
		else
			tl_ok "systemd-analyze verify: the units are clean"
		fi
	fi
	# The sandbox as systemd scores it (0 is the best, 10 the worst): at most 1.0, so
	# that dropping a hardening line fails here. --offline needs systemd 250 or later.
	if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
		if (cd "$T/units" && tl_run "security" 0 systemd-analyze security --offline=true \
			--no-pager ./rxgemmd.service); then
			score=$(sed -n 's/.*Overall exposure level for rxgemmd.service: \([0-9.]*\).*/\1/p' \
				"$TL_OUT")
			if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 1.0) }'; then
				tl_ok "systemd-analyze security: exposure $score"
			else
				tl_fail "systemd-analyze security: exposure '${score:-?}', want at most 1.0"
				tl_show_output
			fi
		fi
	fi
	grep -q '^Type=notify$' "$T/units/rxgemmd.service" &&
		grep -q '^WatchdogSec=' "$T/units/rxgemmd.service" &&
		grep -q '^ListenStream=/run/rxgemmd/rxgemmd.sock$' "$T/units/rxgemmd.socket" &&
		grep -q '^SocketMode=0660$' "$T/units/rxgemmd.socket" &&
		grep -q '^SocketGroup=rxgemm$' "$T/units/rxgemmd.socket" &&
		tl_ok "notify service with a watchdog; socket 0660 for group rxgemm" ||
		tl_fail "the units lost Type=notify, WatchdogSec=, or the socket's path or mode"
	# Every hardening setting carries its reason on the line above.
	if awk '/^# Hardening/ { h = 1 } /^\[/ { h = 0 } h && /^[A-Za-z]/ && prev !~ /^#/ {
		print; bad = 1 } { prev = $0 } END { exit bad }' \
		"$SRC/systemd/rxgemmd.service.in" >"$T/uncommented"; then
		tl_ok "every hardening setting is explained"
	else
		tl_fail "hardening settings without a comment: $(tr '\n' ' ' <"$T/uncommented")"
	fi
fi

# --- socket activation ----------------------------------------------------------------------
if command -v systemd-socket-activate >/dev/null 2>&1; then
	ran=$((ran + 1))
	sock=$T/activated.sock
	log=$T/activated.log
	dev=()
	[ -n "${RXGEMM_TEST_DEVICE:-}" ] && dev=(--device "$RXGEMM_TEST_DEVICE")
	# No --socket: the daemon must take the socket it is passed.
	systemd-socket-activate -l "$sock" "$RXGEMMD" --log-level debug \
		${dev[@]+"${dev[@]}"} </dev/null >"$log" 2>&1 &
	apid=$!
	TL_PIDS+=("$apid")
	for ((i = 0; i < 200; i++)); do
		[ -S "$sock" ] && break
		sleep 0.05
	done
	if [ ! -S "$sock" ]; then
		tl_fail "systemd-socket-activate did not listen on $sock"
		cat "$log"
	elif grep -q '^<[0-7]>rxgemmd:' "$log"; then
		tl_fail "rxgemmd started before any client connected"
	else
		# The first connection starts the daemon; the client waits in the backlog
		# through the warm-up.
		if tl_run "first job" 0 "$RXGEMM" --socket "$sock" gemm -m 96 -n 80 -k 64 --check; then
			tl_ok "the first client's job ran on a socket-activated daemon"
		elif tl_log_says_no_device "$log"; then
			echo "SKIP: no OpenCL device"
			exit 77
		fi
		if grep -q "listening on $sock, passed by the service manager" "$log"; then
			tl_ok "the daemon served the socket it was passed"
		else
			tl_fail "the log does not say the daemon took the passed socket"
			cat "$log"
		fi
		tl_run "second job" 0 "$RXGEMM" --socket "$sock" gemm -m 33 -n 17 -k 5 --check &&
			tl_ok "a second client is served too"
		tl_daemon_stop "$apid" TERM
		[ "$TL_STATUS" -eq 0 ] && tl_ok "SIGTERM: exit 0" || tl_fail "exit $TL_STATUS after SIGTERM"
		[ -S "$sock" ] && tl_ok "the passed socket is left to the service manager" ||
			tl_fail "the daemon removed a socket it did not create"
	fi

	# LISTEN_FDS meant for another process (LISTEN_PID): the daemon makes its own socket.
	LISTEN_PID=1 LISTEN_FDS=1 tl_daemon_start own-socket
	grep -q 'passed by the service manager' "$TL_DAEMON_LOG" &&
		tl_fail "the daemon took LISTEN_FDS meant for another process"
	tl_daemon_stop "$TL_DAEMON_PID" TERM
	[ ! -e "$TL_DAEMON_SOCKET" ] && tl_ok "a daemon removes the socket it made" ||
		tl_fail "the daemon left its own socket behind"
fi

# --- sysusers.d and tmpfiles.d --------------------------------------------------------------
if command -v systemd-sysusers >/dev/null 2>&1; then
	ran=$((ran + 1))
	root=$T/root
	mkdir -p "$root/etc"
	if tl_run "sysusers" 0 systemd-sysusers --root="$root" "$SRC/systemd/sysusers.d/rxgemmd.conf"; then
		if grep -q '^rxgemm:x:[0-9]*:[0-9]*:rxgemmd GEMM daemon:/var/cache/rxgemmd:' "$root/etc/passwd" &&
			grep -q '^rxgemm:x:' "$root/etc/group" &&
			grep -Eq '^render:x:[0-9]+:(.*,)?rxgemm(,|$)' "$root/etc/group"; then
			tl_ok "sysusers.d: user and group rxgemm, a member of render"
		else
			tl_fail "sysusers.d did not make the user, the group or the membership"
			cat "$root/etc/passwd" "$root/etc/group"
		fi
	fi
	if command -v systemd-tmpfiles >/dev/null 2>&1 &&
		tl_run "tmpfiles" 0 systemd-tmpfiles --root="$root" --create \
			"$SRC/systemd/tmpfiles.d/rxgemmd.conf"; then
		[ -d "$root/run/rxgemmd" ] && [ -d "$root/var/cache/rxgemmd" ] &&
			tl_ok "tmpfiles.d: /run/rxgemmd and /var/cache/rxgemmd" ||
			tl_fail "tmpfiles.d did not make the directories"
	fi
fi

# --- bash completion ------------------------------------------------------------------------
if [ -f /usr/share/bash-completion/bash_completion ]; then
	ran=$((ran + 1))
	complete_words() { # WORD... : what completing the last word offers
		bash -c '
			. /usr/share/bash-completion/bash_completion
			. "$1"; shift
			COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
			COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
			_rxgemm rxgemm "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
			echo "${COMPREPLY[*]}"' _ "$SRC/packaging/bash-completion/rxgemm" "$@"
	}
	expect_completion() { # WANT WORD...
		local want=$1 got
		shift
		got=$(complete_words "$@")
		[ "$got" = "$want" ] && tl_ok "completion of '$*': $want" ||
			tl_fail "completion of '$*': got '$got', want '$want'"
	}
	expect_completion "gemm status devices bench top nas nas-search" rxgemm ""
	expect_completion "status" rxgemm --socket /tmp/x st
	expect_completion "--transa --transb" rxgemm gemm --tr
	expect_completion "auto always" rxgemm gemm --shm a
	expect_completion "--json --socket --help --version" rxgemm devices --
	expect_completion "--delay" rxgemm top --de
	expect_completion "" rxgemm top -d ""
fi

# --- hang-timeout, the watchdog's knob -------------------------------------------------------
# --list-devices exits after the options are read: a good value exits 0, a bad one 2.
ran=$((ran + 1))
for t in 120 0 0.5 500ms 30s 2min; do
	tl_run "hang-timeout $t" 0 "$RXGEMMD" --hang-timeout "$t" --list-devices &&
		tl_ok "--hang-timeout $t is accepted"
done
for t in soon -1 2h 1e9 ''; do
	if tl_run "hang-timeout '$t'" 2 "$RXGEMMD" --hang-timeout "$t" --list-devices; then
		tl_expect_output "hang-timeout '$t'" "hang-timeout '$t' is not a duration" &&
			tl_ok "--hang-timeout '$t' is refused"
	fi
done

if [ "$ran" -eq 0 ]; then
	echo "SKIP: no systemd-analyze, systemd-socket-activate, systemd-sysusers or bash-completion"
	exit 77
fi
tl_finish

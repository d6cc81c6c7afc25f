#!/bin/bash
# test-syscalls.sh: every system call rxgemmd makes, OpenCL drivers included, is one that
# rxgemmd.service's SystemCallFilter= lets through. The filter answers any other call with
# EPERM (SystemCallErrorNumber=), which a driver would meet only on a real machine under
# systemd, as a failure far from its cause; this finds it here instead.
#
# The daemon runs under strace -f from a cold kernel cache (the drivers' compilers run, as
# at a service's first start), then serves GEMMs inline, through shared memory and on
# device tensors, a split-K GEMM, a NAS evaluation, status, devices, a reload (SIGHUP)
# and a stop (SIGTERM). Each device class here is traced: PoCL, and rusticl when
# installed. The allowed set is the unit file's SystemCallFilter= lines expanded by
# systemd-analyze syscall-filter, plus @default, which systemd always permits.
#
# Set RXGEMM_SYSCALLS_OUT=FILE to also write the calls seen (one per line), as
# tests/gpu/run-syscalls.sh does on the GPU machine. Skipped (77) without strace,
# systemd-analyze or python3, and for sanitizer builds (their runtime's calls are not the
# service's).
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init

UNIT=${RXGEMM_UNIT:-${TESTS_SRCDIR:-$(dirname "$0")}/../systemd/rxgemmd.service.in}
for tool in strace python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool is not installed"
		exit 77
	fi
done
if [ -z "${RXGEMM_SYSCALLS_OUT:-}" ] && ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "SKIP: systemd-analyze is not installed"
	exit 77
fi
if ldd "$RXGEMMD" 2>/dev/null | grep -Eq 'lib(asan|ubsan)'; then
	echo "SKIP: a sanitizer build"
	exit 77
fi
# strace needs ptrace; some containers forbid it.
if ! strace -f -qq -o /dev/null true 2>/dev/null; then
	echo "SKIP: strace cannot trace here (ptrace not permitted)"
	exit 77
fi
T=$TL_TMP

# trace NAME [RXGEMMD-ARG...]: one traced daemon life with the workload; the calls seen
# go to $T/NAME.calls.
trace() {
	local name=$1 sock=$T/$1.sock i pid
	shift
	mkdir -p "$T/$name-cache"
	# A cold cache of our own and of the drivers' (XDG_CACHE_HOME, as the unit sets it).
	CACHE_DIRECTORY=$T/$name-cache XDG_CACHE_HOME=$T/$name-cache \
		strace -f -qq -o "$T/$name.trace" \
		"$RXGEMMD" --socket "$sock" --log-level debug "$@" \
		</dev/null >>"$T/$name.log" 2>&1 &
	local tracer=$!
	TL_PIDS+=("$tracer")
	for ((i = 0; i < 12000; i++)); do
		if ! kill -0 "$tracer" 2>/dev/null; then
			if tl_log_says_no_device "$T/$name.log"; then
				echo "$name: no such device here, not traced"
				return 0
			fi
			tl_fail "$name: rxgemmd exited before it was ready"
			cat "$T/$name.log"
			return 1
		fi
		[ -S "$sock" ] && tl_connectable "$sock" && break
		sleep 0.05
	done
	pid=$(pgrep -P "$tracer" -x rxgemmd || true)
	if [ -z "$pid" ]; then
		tl_fail "$name: no rxgemmd under strace"
		return 1
	fi
	local r=("$RXGEMM" --socket "$sock")
	tl_run "$name: inline GEMM" 0 "${r[@]}" gemm -m 61 -n 33 -k 47 --check --shm never &&
		tl_ok "$name: inline GEMM"
	tl_run "$name: shared-memory GEMM" 0 "${r[@]}" gemm -m 96 -n 80 -k 64 --transa --check \
		--shm always && tl_ok "$name: shared-memory GEMM"
	tl_run "$name: GEMM on device tensors" 0 "${r[@]}" gemm -m 64 -n 64 -k 64 --check \
		--resident 3 && tl_ok "$name: GEMM on device tensors"
	tl_run "$name: thin GEMM (split-K)" 0 "${r[@]}" gemm -m 16 -n 16 -k 4096 --check &&
		tl_ok "$name: thin GEMM"
	tl_run "$name: NAS evaluation" 0 "${r[@]}" nas --genotype DARTS_V2 --C 4 --layers 2 \
		--size 8x8 --batch 2 --warmup 0 --repeat 1 && tl_ok "$name: NAS evaluation"
	tl_run "$name: status" 0 "${r[@]}" status --json && tl_ok "$name: status"
	tl_run "$name: devices" 0 "${r[@]}" devices && tl_ok "$name: devices"
	# A reload, waited for through the log, then a stop.
	local before
	before=$(grep -c 'reloaded\|reload' "$T/$name.log" || true)
	kill -HUP "$pid"
	for ((i = 0; i < 2400; i++)); do
		[ "$(grep -c 'reloaded\|reload' "$T/$name.log" || true)" -gt "$before" ] && break
		sleep 0.05
	done
	tl_run "$name: status after the reload" 0 "${r[@]}" status && tl_ok "$name: reload"
	kill -TERM "$pid"
	local rc=0
	wait "$tracer" || rc=$?
	if [ "$rc" -ne 0 ]; then
		tl_fail "$name: rxgemmd under strace exited with $rc"
		cat "$T/$name.log"
	fi
	# "PID name(" for every call, finished or not ("<... name resumed>" repeats one).
	sed -n 's/^[0-9]\+ \+\([a-z0-9_]\+\)(.*/\1/p' "$T/$name.trace" | sort -u >"$T/$name.calls"
	if [ ! -s "$T/$name.calls" ]; then
		tl_fail "$name: strace saw no system calls"
		return 1
	fi
}

# RXGEMM_SYSCALLS_ONLY_DEVICE=1 (the GPU machine): only RXGEMM_TEST_DEVICE's driver.
if [ -z "${RXGEMM_SYSCALLS_ONLY_DEVICE:-}" ]; then
	trace pocl --device pthread
	if [ -e /etc/OpenCL/vendors/rusticl.icd ]; then
		RUSTICL_ENABLE=${RUSTICL_ENABLE:-llvmpipe} trace rusticl --device rusticl
	fi
fi
if [ -n "${RXGEMM_TEST_DEVICE:-}" ]; then
	trace device --device "$RXGEMM_TEST_DEVICE"
fi
cat "$T"/*.calls 2>/dev/null | sort -u >"$T/all.calls"
if [ -n "${RXGEMM_SYSCALLS_OUT:-}" ]; then
	cp "$T/all.calls" "$RXGEMM_SYSCALLS_OUT"
fi

# The allowed set, by systemd's rules: the first allow line starts from nothing, each
# further allow line adds, each ~ line removes; @default is always allowed.
if command -v systemd-analyze >/dev/null 2>&1; then
	if ! python3 - "$UNIT" "$T/all.calls" <<'EOF'; then
import subprocess, sys

def expand(name, seen):
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager", name],
                         check=True, capture_output=True, text=True).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        calls |= expand(word, seen)
    return calls

allowed = expand("@default", set())
lines = [l.split("=", 1)[1].split() for l in open(sys.argv[1])
         if l.startswith("SystemCallFilter=")]
if not lines:
    sys.exit("%s has no SystemCallFilter= line" % sys.argv[1])
for words in lines:
    deny = words and words[0].startswith("~")
    if deny:
        words = [words[0][1:]] + words[1:]
    group = set()
    for w in words:
        group |= expand(w, set())
    if deny:
        allowed -= group
    else:
        allowed |= group
seen = {l.strip() for l in open(sys.argv[2]) if l.strip()}
missing = sorted(seen - allowed)
if missing:
    print("rxgemmd made system calls that rxgemmd.service's SystemCallFilter= refuses:",
          " ".join(missing))
    sys.exit(1)
print("%d distinct system calls, all allowed by the unit's filter" % len(seen))
EOF
		tl_fail "a system call outside the unit's SystemCallFilter="
	else
		tl_ok "every system call is allowed by the unit's SystemCallFilter="
	fi
fi
tl_finish

#!/bin/bash
# test-kcache.sh: the kernel cache end to end, through the daemon's own counters
# (`rxgemm status --json`) and the files in the cache directory:
#   - a cold start compiles every program and stores one entry per program;
#   - a restart loads every program from the cache and compiles none, and touches what it
#     loads (LRU);
#   - a truncated entry, one with flipped payload bytes, one written for another key and
#     one whose payload the driver refuses are each detected, rebuilt, and the daemon's
#     results are still right;
#   - --cache-max bounds the directory (evicting the least recently used entries, at
#     start and after writes), also from the config file; cache-max 0 keeps nothing;
#   - --clear-cache empties the directory of entries and of nothing else;
#   - an unwritable cache directory is a warning: the daemon serves, compiling;
#   - a FIFO or a symbolic link in place of an entry is rejected and rebuilt (the start
#     does not hang); a directory others may write (mode 0777) is not used at all;
#   - two daemons starting at once on one directory leave valid entries.
# The expectations are expressions evaluated later (SC2016), and A && ok || fail reports both ways (SC2015).
# shellcheck disable=SC2016,SC2015
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init
T=$TL_TMP

# kc_field FILE NAME: a number or boolean from the "kernel_cache" object of a status JSON.
kc_field() {
	sed -n 's/.*"kernel_cache":{\([^}]*\)}.*/\1/p' "$1" | tr ',' '\n' |
		sed -n "s/^\"$2\":\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p"
}

# kc_status NAME: the running daemon's status into $T/NAME.json; sets HITS, MISSES,
# REJECTED, ENTRIES, BYTES, EVICTIONS, WRITABLE, DIR.
kc_status() {
	if ! tl_run "$1: status" 0 "$RXGEMM" --socket "$TL_DAEMON_SOCKET" status --json; then
		return 1
	fi
	cp "$TL_OUT" "$T/$1.json"
	HITS=$(kc_field "$T/$1.json" hits)
	MISSES=$(kc_field "$T/$1.json" misses)
	REJECTED=$(kc_field "$T/$1.json" rejected)
	ENTRIES=$(kc_field "$T/$1.json" entries)
	BYTES=$(kc_field "$T/$1.json" bytes)
	EVICTIONS=$(kc_field "$T/$1.json" evictions)
	WRITABLE=$(kc_field "$T/$1.json" writable)
	DIR=$(kc_field "$T/$1.json" dir)
	if [ -z "$HITS" ] || [ -z "$MISSES" ] || [ -z "$REJECTED" ] || [ -z "$ENTRIES" ]; then
		tl_fail "$1: no kernel_cache counters in the status"
		cat "$T/$1.json"
		return 1
	fi
	return 0
}

# expect NAME CONDITION: a bash arithmetic or test expression over the counters.
expect() {
	if eval "$2"; then
		tl_ok "$1"
	else
		tl_fail "$1: not ($2) with hits=$HITS misses=$MISSES rejected=$REJECTED" \
			"entries=$ENTRIES bytes=$BYTES evictions=$EVICTIONS writable=$WRITABLE dir=$DIR"
	fi
}

# The entry files of directory $1, oldest name first, and their total size.
entries_of() { find "$1" -maxdepth 1 -name '*.rxk' -type f | sort; }
count_entries() { entries_of "$1" | wc -l; }
bytes_of() {
	local total=0 f
	for f in $(entries_of "$1"); do
		total=$((total + $(stat -c %s "$f")))
	done
	echo "$total"
}

# Every transpose combination, checked against the CPU reference.
check_jobs() {
	local name=$1 ok=1 ta tb
	for ta in "" --transa; do
		for tb in "" --transb; do
			# shellcheck disable=SC2086
			tl_run "$name: gemm $ta $tb" 0 "$RXGEMM" --socket "$TL_DAEMON_SOCKET" gemm \
				-m 70 -n 45 -k 33 $ta $tb --check || ok=0
		done
	done
	[ "$ok" -eq 1 ] && tl_ok "$name: every transpose gives the right result"
	return 0
}

stop() {
	tl_daemon_stop "$TL_DAEMON_PID" TERM
	[ "$TL_STATUS" -eq 0 ] || tl_fail "$1: exit $TL_STATUS after SIGTERM"
}

flip_byte() { # FILE OFFSET
	local b
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	# shellcheck disable=SC2059
	printf "$(printf '\\%03o' $((b ^ 0xa5)))" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

C=$T/cache

# --- Cold: everything compiled, one entry per program. --------------------------------
tl_daemon_start cold --cache-dir "$C"
kc_status cold
N=$MISSES
expect "cold start compiles (misses > 0)" '[ "$MISSES" -gt 0 ]'
expect "cold start loads nothing" '[ "$HITS" -eq 0 ] && [ "$REJECTED" -eq 0 ]'
expect "cold start stores an entry per compiled program" \
	'[ "$ENTRIES" -eq "$MISSES" ] && [ "$(count_entries "$C")" -eq "$MISSES" ]'
expect "the status counts the directory's bytes" '[ "$BYTES" -eq "$(bytes_of "$C")" ] && [ "$BYTES" -gt 0 ]'
expect "the status names the directory, writable" '[ "$DIR" = "$C" ] && [ "$WRITABLE" = true ]'
grep -q "kernels: 0 loaded from cache, $N compiled in" "$TL_DAEMON_LOG" &&
	tl_ok "the cold start's log line" || tl_fail "no 'kernels: 0 loaded from cache, $N compiled' line"
if tl_run "status text" 0 "$RXGEMM" --socket "$TL_DAEMON_SOCKET" status; then
	tl_expect_output "status text" "^kernels: +0 loaded from cache in [0-9]+ ms, $N compiled" &&
		tl_expect_output "status text" "^cache: +$C, $N entries" &&
		tl_ok "rxgemm status shows the cache"
fi
check_jobs cold
stop cold

# --- Warm: everything loaded, nothing compiled, entries touched. ----------------------
for f in $(entries_of "$C"); do touch -d @1000000000 "$f"; done
tl_daemon_start warm --cache-dir "$C"
kc_status warm
expect "warm start compiles nothing" '[ "$MISSES" -eq 0 ]'
expect "warm start loads every program" '[ "$HITS" -eq "$N" ] && [ "$REJECTED" -eq 0 ]'
grep -q "kernels: $N loaded from cache, 0 compiled in" "$TL_DAEMON_LOG" &&
	tl_ok "the warm start's log line" || tl_fail "no 'kernels: $N loaded from cache, 0 compiled' line"
old=0
for f in $(entries_of "$C"); do
	[ "$(stat -c %Y "$f")" -gt 1000000000 ] || old=$((old + 1))
done
[ "$old" -eq 0 ] && tl_ok "loading touches the entries (LRU)" || tl_fail "$old entries not touched"
check_jobs warm
stop warm

# --- Bad entries: each detected, rebuilt, and the results still right. ---------------
# corrupt NAME HOW: damage the first entry, restart, and check that exactly it was rebuilt.
corrupt() {
	local name=$1 how=$2 first second size
	first=$(entries_of "$C" | head -n 1)
	second=$(entries_of "$C" | sed -n 2p)
	size=$(stat -c %s "$first")
	case $how in
	truncate) truncate -s $((size / 2)) "$first" ;;
	flip)
		for off in 200 $((size / 2)) $((size - 1)); do flip_byte "$first" "$off"; done ;;
	other-key) cp "$second" "$first" ;;
	garbage)
		# A well-formed entry for the right key whose payload is not a program binary:
		# only the driver can tell, and it must refuse it without harm.
		python3 - "$first" <<'EOF'
import hashlib, struct, sys
path = sys.argv[1]
key = open(path, 'rb').read()[16:48]
payload = bytes((i * 131 + 7) % 256 for i in range(4096))
h = b'RXGKCACH' + struct.pack('<II', 1, 96) + key + struct.pack('<Q', len(payload))
h += hashlib.sha256(payload).digest()
open(path, 'wb').write(h + hashlib.sha256(h).digest()[:8] + payload)
EOF
		;;
	esac
	tl_daemon_start "$name" --cache-dir "$C"
	kc_status "$name"
	expect "$name: the bad entry is rejected and only it is compiled again" \
		'[ "$REJECTED" -eq 1 ] && [ "$MISSES" -eq 1 ] && [ "$HITS" -eq $((N - 1)) ]'
	expect "$name: the entry is written again" '[ "$(count_entries "$C")" -eq "$N" ]'
	check_jobs "$name"
	stop "$name"
}
corrupt truncated truncate
grep -q "is truncated: rebuilding" "$T/truncated.log" && tl_ok "the log says truncated" ||
	tl_fail "truncated: the log does not say why"
corrupt flipped flip
grep -q "is corrupt .*: rebuilding" "$T/flipped.log" && tl_ok "the log says corrupt" ||
	tl_fail "flipped: the log does not say why"
if [ "$N" -ge 2 ]; then
	corrupt other-key other-key
	grep -q "is built for another key .*: rebuilding" "$T/other-key.log" &&
		tl_ok "the log says another key" || tl_fail "other-key: the log does not say why"
fi
if command -v python3 >/dev/null 2>&1; then
	corrupt garbage garbage
	grep -q "is not loadable on this device: rebuilding" "$T/garbage.log" &&
		tl_ok "the log says not loadable" || tl_fail "garbage: the log does not say why"
else
	echo "skipped: a payload the driver refuses (no python3 to write it)"
fi
# After all that, every entry is whole again.
tl_daemon_start rewarm --cache-dir "$C"
kc_status rewarm
expect "every rebuilt entry loads on the next start" \
	'[ "$HITS" -eq "$N" ] && [ "$MISSES" -eq 0 ] && [ "$REJECTED" -eq 0 ]'
stop rewarm

# --- The size bound. -------------------------------------------------------------------
# Room for the largest entry and a half, but never for N / 2 entries: less than the N / 2
# smallest together. The entries differ in size (the NAS program is many times a GEMM
# variant's), so a bound from the largest alone could keep most of the small ones.
largest=0
for f in $(entries_of "$C"); do
	s=$(stat -c %s "$f")
	[ "$s" -gt "$largest" ] && largest=$s
done
bound=$((largest + largest / 2))
half_smallest=$(for f in $(entries_of "$C"); do stat -c %s "$f"; done | sort -n |
	head -n $((N / 2)) | awk '{ t += $1 } END { print t + 0 }')
[ "$half_smallest" -gt 0 ] && [ $((half_smallest - 1)) -lt "$bound" ] && bound=$((half_smallest - 1))
# Entries larger than the bound are never stored (the log says so): neither kept nor evicted.
too_big=$(for f in $(entries_of "$C"); do stat -c %s "$f"; done | awk -v b="$bound" '$1 > b { n++ } END { print n + 0 }')
if [ "$N" -ge 2 ]; then
	# From the config file: a cold start whose entries do not all fit.
	printf 'cache-dir = %s\ncache-max = %s\n' "$T/small" "$bound" >"$T/small.conf"
	tl_daemon_start bounded --config "$T/small.conf"
	kc_status bounded
	expect "bounded: the config file's cache-dir is used" '[ "$DIR" = "$T/small" ]'
	# Entries differ in size (a GEMM variant, the NAS kernels), so small ones may share
	# the room; every one of the N was kept, evicted or too large to store, and most were
	# not kept.
	expect "bounded: the directory stays within cache-max" \
		'[ "$(bytes_of "$T/small")" -le "$bound" ] && [ "$(count_entries "$T/small")" -ge 1 ] && [ "$(count_entries "$T/small")" -lt $((N / 2)) ]'
	expect "bounded: evictions are counted" '[ $((EVICTIONS + ENTRIES + too_big)) -eq "$N" ] && [ "$ENTRIES" -eq "$(count_entries "$T/small")" ]'
	check_jobs bounded
	stop bounded
	# A full directory and a lower bound: the least recently used go at start. The most
	# recently used is made the first program the daemon builds, so that it is loaded
	# before the programs compiled after it push it out in turn.
	cp -a "$C" "$T/lowered"
	for f in $(entries_of "$T/lowered"); do touch -d @1000000000 "$f"; done
	first=$(sed -n 's/.*stored in the kernel cache as \([0-9a-f]*\.rxk\).*/\1/p' "$T/cold.log" | head -n 1)
	touch -d @2000000000 "$T/lowered/$first"
	tl_daemon_start lowered --cache-dir "$T/lowered" --cache-max "$bound"
	kc_status lowered
	expect "lowered: the directory is brought within the bound" \
		'[ "$(bytes_of "$T/lowered")" -le "$bound" ] && [ "$EVICTIONS" -ge $((N - 1)) ]'
	expect "lowered: the most recently used entry was kept and loaded" '[ "$HITS" -ge 1 ]'
	stop lowered
else
	echo "skipped: eviction needs two programs, the daemon builds $N"
fi
# A bound smaller than any entry: nothing is kept, the daemon serves.
tl_daemon_start tiny --cache-dir "$T/tiny" --cache-max 1K
kc_status tiny
expect "tiny: nothing is stored" '[ "$(count_entries "$T/tiny")" -eq 0 ] && [ "$ENTRIES" -eq 0 ]'
check_jobs tiny
stop tiny
# cache-max 0: no cache on disk at all.
tl_daemon_start off --cache-dir "$T/off" --cache-max 0
kc_status off
expect "cache-max 0: no directory, none reported" '[ ! -e "$T/off" ] && [ -z "$DIR" ]'
stop off

# --- --clear-cache. --------------------------------------------------------------------
echo "not ours" >"$C/README"
if tl_run "clear" 0 "$RXGEMMD" --cache-dir "$C" --clear-cache; then
	[ "$(count_entries "$C")" -eq 0 ] && [ -f "$C/README" ] &&
		tl_ok "--clear-cache removes every entry and nothing else" ||
		tl_fail "--clear-cache left $(count_entries "$C") entries or removed README"
fi
printf 'cache-dir = %s\n' "$T/small" >"$T/clear.conf"
if [ -d "$T/small" ] && tl_run "clear from config" 0 "$RXGEMMD" --config "$T/clear.conf" --clear-cache; then
	[ "$(count_entries "$T/small")" -eq 0 ] && tl_ok "--clear-cache uses the config file's cache-dir" ||
		tl_fail "--clear-cache with cache-dir in the config left entries"
fi
if tl_run "clear missing" 0 "$RXGEMMD" --cache-dir "$T/never-made" --clear-cache; then
	tl_ok "--clear-cache on a missing directory is no error"
fi
# And after clearing, a cold start again.
tl_daemon_start cleared --cache-dir "$C"
kc_status cleared
expect "after --clear-cache everything is compiled again" '[ "$MISSES" -eq "$N" ] && [ "$HITS" -eq 0 ]'
stop cleared

# --- An unwritable cache directory. ---------------------------------------------------
echo "a file where the cache's parent directory should be" >"$T/file"
tl_daemon_start unwritable --cache-dir "$T/file/cache"
kc_status unwritable
expect "unwritable: the daemon serves, compiling, and says the cache is read-only" \
	'[ "$MISSES" -eq "$N" ] && [ "$WRITABLE" = false ] && [ "$ENTRIES" -eq 0 ]'
grep -q "kernel cache $T/file/cache is not writable" "$TL_DAEMON_LOG" &&
	tl_ok "unwritable: a warning names the directory" || tl_fail "unwritable: no warning"
check_jobs unwritable
stop unwritable
if [ "$(id -u)" -ne 0 ]; then
	# A populated directory we may read but not write: loads, writes nothing.
	chmod 0555 "$C"
	tl_daemon_start readonly --cache-dir "$C"
	kc_status readonly
	expect "read-only: loads every entry" '[ "$HITS" -eq "$N" ] && [ "$WRITABLE" = false ]'
	check_jobs readonly
	stop readonly
	chmod 0755 "$C"
else
	echo "skipped: a read-only directory (root may write anyway)"
fi

# --- What is not a regular file of ours is never read, and never hangs the start. ------
if [ "$N" -ge 3 ]; then
	cp -a "$C" "$T/odd"
	first=$(entries_of "$T/odd" | head -n 1)
	second=$(entries_of "$T/odd" | sed -n 2p)
	rm -f "$first" "$second"
	mkfifo "$first" # opened without O_NONBLOCK, this would block the start for good
	ln -s "$(entries_of "$C" | sed -n 2p)" "$second" # a valid entry, but through a link
	tl_daemon_start odd --cache-dir "$T/odd"
	kc_status odd
	expect "odd: a FIFO and a link are rejected, compiled again, the rest loaded" \
		'[ "$REJECTED" -eq 2 ] && [ "$MISSES" -eq 2 ] && [ "$HITS" -eq $((N - 2)) ]'
	[ "$(grep -c "is not a regular file (a link, a FIFO or a device): rebuilding" \
		"$T/odd.log")" -eq 2 ] && tl_ok "odd: the log says not a regular file, twice" ||
		tl_fail "odd: no 'not a regular file' warnings"
	[ -f "$first" ] && [ ! -L "$second" ] && [ -f "$second" ] &&
		tl_ok "odd: both are written again as entries" || tl_fail "odd: not rewritten"
	check_jobs odd
	stop odd
else
	echo "skipped: a FIFO and a link need three programs, the daemon builds $N"
fi

# --- A directory others may write is not trusted: its entries are never loaded. --------
cp -a "$C" "$T/open"
chmod 0777 "$T/open"
before=$(cd "$T/open" && ls -l --time-style=+%s | sort | md5sum)
tl_daemon_start open --cache-dir "$T/open"
kc_status open
expect "open (0777): nothing is loaded from it, everything compiled" \
	'[ "$HITS" -eq 0 ] && [ "$MISSES" -eq "$N" ] && [ -z "$DIR" ]'
[ "$(grep -c "kernel cache $T/open is not used: others than its owner may write it (mode 0777)" \
	"$T/open.log")" -eq 1 ] && tl_ok "open: one warning says why" ||
	tl_fail "open: no warning that the directory is not used"
[ "$(cd "$T/open" && ls -l --time-style=+%s | sort | md5sum)" = "$before" ] &&
	tl_ok "open: nothing in it was written, touched or removed" || tl_fail "open: it was changed"
check_jobs open
stop open

# --- Two daemons at once on one empty directory. -------------------------------------
twins=()
for twin in a b; do
	"$RXGEMMD" --socket "$T/twin-$twin.sock" --cache-dir "$T/shared" --log-level debug \
		${RXGEMM_TEST_DEVICE:+--device "$RXGEMM_TEST_DEVICE"} </dev/null >"$T/twin-$twin.log" 2>&1 &
	twins+=($!)
	TL_PIDS+=($!)
done
for ((i = 0; i < 6000; i++)); do
	[ -S "$T/twin-a.sock" ] && [ -S "$T/twin-b.sock" ] && break
	sleep 0.05
done
for pid in "${twins[@]}"; do
	tl_daemon_stop "$pid" TERM
	[ "$TL_STATUS" -eq 0 ] || tl_fail "twin daemon $pid: exit $TL_STATUS"
done
tl_daemon_start twins-after --cache-dir "$T/shared"
kc_status twins-after
expect "two daemons writing one directory leave valid entries" \
	'[ "$HITS" -eq "$N" ] && [ "$REJECTED" -eq 0 ] && [ -z "$(find "$T/shared" -name ".rxk-tmp-*")" ]'
stop twins-after

tl_finish

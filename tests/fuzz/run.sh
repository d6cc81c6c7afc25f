#!/usr/bin/env bash
# tests/fuzz/run.sh: build the libFuzzer targets in a build directory of their own and run
# each for a bounded time, starting from the seeds in tests/fuzz/corpus/<target>/.
#
#   FUZZ_SECONDS=60    how long each target runs
#   FUZZ_TARGETS="decode frame npy genotype config"   which ones
#   FUZZ_BUILDDIR      where (default: build-fuzz at the top of the source tree); the
#                      corpus grown there is kept for the next run, the repository's is not
#                      touched
#   FUZZ_RSS_MB=2048   a target over this much memory counts as a failure
#   CC=clang           a compiler with libFuzzer
#
# Exits 0 when every target ran its time without a crash, a leak, a timeout or an
# out-of-memory; otherwise 1, naming the input that failed and replaying it. The source tree
# is copied (the files git knows, or all of it outside git) so that a tree already
# configured in place can still be fuzzed.
set -euo pipefail

srcdir=$(cd "$(dirname "$0")/../.." && pwd)
builddir=${FUZZ_BUILDDIR:-$srcdir/build-fuzz}
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-decode frame npy genotype config}
rss_mb=${FUZZ_RSS_MB:-2048}
export CC=${CC:-clang}

say() { printf '\n==> %s\n' "$*"; }

# The tree to build: a copy under builddir, refreshed each run (tar keeps the files' times,
# so make rebuilds only what changed).
mkdir -p "$builddir/src"
if git -C "$srcdir" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$srcdir" && git ls-files -co --exclude-standard -z | tar -cf - --null -T -) |
		tar -xf - -C "$builddir/src"
else
	tar -C "$srcdir" -cf - --exclude=./build-fuzz --exclude=./build-sanitize . |
		tar -xf - -C "$builddir/src"
fi
cd "$builddir/src"
if [ ! -x configure ]; then
	say "autoreconf"
	autoreconf -fi >/dev/null
fi
if [ ! -f Makefile ] || ! grep -q '^ENABLE_FUZZING_TRUE = $' Makefile; then
	say "configure --enable-fuzzing (CC=$CC)"
	./configure --enable-fuzzing --with-systemd=no >"$builddir/configure.log" 2>&1 || {
		tail -n 30 "$builddir/configure.log"
		exit 1
	}
fi
say "make fuzz"
nice make -j"$(nproc)" fuzz

# The largest input each target is given: frames past the reader's first allocation, a
# request with a genotype text and a supernet's alphas.
max_len() {
	case "$1" in
	frame) echo 65536 ;;
	decode) echo 16384 ;;
	*) echo 8192 ;;
	esac
}

status=0
for t in $targets; do
	bin=$builddir/src/tests/fuzz/fuzz-$t
	work=$builddir/corpus/$t
	art=$builddir/artifacts/$t
	log=$builddir/fuzz-$t.log
	mkdir -p "$work" "$art"
	rm -f "$art"/*
	say "fuzz-$t for ${seconds}s (log: $log)"
	rc=0
	"$bin" -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout=30 \
		-max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="$art/" \
		"$work" "$srcdir/tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
	grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units)' "$log" |
		tail -n 2 || true
	found=$(find "$art" -type f | head -n 1)
	if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
		status=1
		echo "fuzz-$t FAILED (exit $rc); the input: ${found:-none saved}" >&2
		grep -E 'ERROR|SUMMARY|runtime error' "$log" | head -n 5 >&2 || true
		if [ -n "$found" ]; then
			echo "--- replay: $bin $found" >&2
			# The report's head; not ASan's legend of shadow bytes.
			RXGEMM_FUZZ_VERBOSE=1 "$bin" "$found" 2>&1 |
				grep -v "^  [A-Z].*: *[0-9a-f][0-9a-f]$" | head -n 40 >&2 || true
		fi
	fi
done
[ "$status" -eq 0 ] && say "fuzzing: no failures ($targets, ${seconds}s each)"
exit "$status"

#!/bin/sh
# test-symbols.sh: librxgemm exports exactly the functions rxgemm.h declares, every one of
# them in a version node of client/librxgemm.sym: nothing of the bundled framing or
# protobuf code and no internal rxg__ helper leaks into the ABI, and no declared function
# is missing from the library.
set -eu
src=${TESTS_SRCDIR:-$(dirname "$0")}/..
build=${TESTS_BUILDDIR:-$(dirname "$0")}/..
lib=$build/client/.libs/librxgemm.so
if ! [ -e "$lib" ]; then
	echo "no shared librxgemm at $lib (built with --disable-shared?): skipping"
	exit 77
fi
command -v nm >/dev/null || { echo "nm (binutils) is not installed: skipping"; exit 77; }
t=$(mktemp -d "${TMPDIR:-/tmp}/rxsym.XXXXXX")
trap 'rm -rf "$t"' EXIT

# Declared: every rxg_name( outside comments of the installed header.
sed 's|/\*.*\*/||g' "$src/client/rxgemm.h" | grep -v '^[[:space:]]*\*' |
	grep -o '\brxg_[a-z0-9_]*(' | tr -d '(' | sort -u >"$t/declared"
# Exported: the defined dynamic symbols, with their version node.
nm -D --defined-only "$lib" | awk '$3 !~ /^RXGEMM_/ { print $3 }' >"$t/versioned"
sed 's/@.*//' "$t/versioned" | sort -u >"$t/exported"

rc=0
if [ "$(wc -l <"$t/declared")" -lt 10 ]; then
	echo "FAIL: found only $(wc -l <"$t/declared") functions in rxgemm.h: the parse broke"
	exit 1
fi
if ! diff -u "$t/declared" "$t/exported" >"$t/diff"; then
	echo "FAIL: exported symbols differ from rxgemm.h's functions (- declared only, + exported only):"
	cat "$t/diff"
	rc=1
fi
if grep '^rxg__' "$t/exported" >"$t/internal"; then
	echo "FAIL: internal rxg__ helpers exported (librxgemm.sym's pattern must not match them):"
	cat "$t/internal"
	rc=1
fi
if grep -v '@@\?RXGEMM_' "$t/versioned" >"$t/unversioned"; then
	echo "FAIL: symbols outside a version node of librxgemm.sym:"
	cat "$t/unversioned"
	rc=1
fi
[ "$rc" -eq 0 ] && echo "ok: librxgemm exports the $(wc -l <"$t/declared") functions of rxgemm.h, all versioned"
exit "$rc"

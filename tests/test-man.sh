#!/bin/bash
# test-man.sh: every man page passes groff's checks with all warnings on (-ww) and, where
# Debian's mandoc is installed, mandoc -T lint; each renders to text with its NAME for
# whatis (lexgrog, when man-db is there); and rxgemm(1)'s SYNOPSIS puts each command on its
# own line and its DESCRIPTION gives nas its own entry.
# Skipped (77) without groff.
set -euo pipefail

SRC=${TESTS_SRCDIR:-$(dirname "$0")}/..
if ! command -v groff >/dev/null 2>&1; then
	echo "SKIP: groff is not installed (Debian: groff-base)"
	exit 77
fi
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
T=$(mktemp -d "${TMPDIR:-/tmp}/rxgman.XXXXXX")
trap 'rm -rf "$T"' EXIT

for page in "$SRC"/docs/*.[1578]; do
	name=$(basename "$page")
	if groff -ww -z -man "$page" 2>"$T/warn" && [ ! -s "$T/warn" ]; then
		ok "$name: groff -ww -z -man is silent"
	else
		fail "$name: groff warns:"
		sed 's/^/    /' "$T/warn"
	fi
	if command -v mandoc >/dev/null 2>&1; then
		# -W warning: the style notes below that level are mandoc's taste, not errors.
		if mandoc -T lint -W warning "$page" >"$T/lint" 2>&1; then
			ok "$name: mandoc -T lint"
		else
			fail "$name: mandoc -T lint:"
			sed 's/^/    /' "$T/lint"
		fi
	fi
	# Rendered: the NAME section's command and at least a screenful of text.
	cmd=${name%.*}
	if MANWIDTH=80 groff -man -Tutf8 -P -cbou "$page" >"$T/$name.txt" 2>"$T/warn" &&
		grep -q "^NAME" "$T/$name.txt" && grep -Eq "^ +$cmd (\\\\)?-|^ +$cmd -" "$T/$name.txt" &&
		[ "$(wc -l <"$T/$name.txt")" -gt 30 ]; then
		ok "$name renders ($(wc -l <"$T/$name.txt") lines)"
	else
		fail "$name does not render with its NAME line"
		head -n 20 "$T/$name.txt"
	fi
	if command -v lexgrog >/dev/null 2>&1; then
		if lexgrog "$page" | grep -q ": \"$cmd - "; then
			ok "$name: whatis finds its description"
		else
			fail "$name: lexgrog: $(lexgrog "$page" 2>&1)"
		fi
	fi
done

# rxgemm(1): in the rendered SYNOPSIS every command starts a line of its own.
R=$T/rxgemm.1.txt
# (Justification may widen the spaces between words: squeeze them.)
sed -n '/^SYNOPSIS/,/^DESCRIPTION/p' "$R" | tr -s ' ' >"$T/synopsis"
for cmd in gemm status devices bench top nas nas-search; do
	if grep -Eq "^ +rxgemm \[--socket PATH\] $cmd( |$)" "$T/synopsis"; then
		ok "rxgemm(1) SYNOPSIS: $cmd on its own line"
	else
		fail "rxgemm(1) SYNOPSIS: no line starting 'rxgemm [--socket PATH] $cmd'"
		cat "$T/synopsis"
	fi
done
# In DESCRIPTION each command is a tagged paragraph: its name alone at the margin's indent.
sed -n '/^DESCRIPTION/,/^[A-Z][A-Z ]*$/p' "$R" | sed '$d' >"$T/description"
for cmd in gemm status devices bench top nas nas-search; do
	if grep -Eq "^ {7}$cmd( |$)" "$T/description"; then
		ok "rxgemm(1) DESCRIPTION: $cmd has its own entry"
	else
		fail "rxgemm(1) DESCRIPTION: $cmd is not a tagged entry"
	fi
done
if grep -q '/usr/share/doc/rxgemmd/NAS.md' "$R"; then
	ok "rxgemm(1) points at the installed NAS.md"
else
	fail "rxgemm(1) does not point at /usr/share/doc/rxgemmd/NAS.md"
fi
# rxgemmd(8) no longer says jobs run in arrival order (SCHEDULING says how they do).
if sed -n '/^DESCRIPTION/,/^OPTIONS/p' "$T/rxgemmd.8.txt" | tr '\n' ' ' | tr -s ' ' |
	grep -q 'one at a time in arrival order'; then
	fail "rxgemmd(8) still says jobs run in arrival order"
else
	ok "rxgemmd(8): the order of jobs refers to SCHEDULING"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

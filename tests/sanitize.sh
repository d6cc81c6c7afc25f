#!/usr/bin/env bash
# tests/sanitize.sh: the whole test suite (make check) on a build with AddressSanitizer and
# UndefinedBehaviorSanitizer, in a build directory of its own.
#
#   SANITIZE_BUILDDIR   where (default: build-sanitize at the top of the source tree)
#   CC                  gcc or clang (default: the system's cc)
#   RXGEMM_TEST_SMALL   1 (the default here) trims the slowest GEMM and NAS cases, which
#                       run several times slower instrumented; 0 runs them whole
#   TESTS               as for make check: a subset
#
# Every report fails: ASan and UBSan stop the program at the first finding (UBSan is built
# not to recover), and LeakSanitizer's leaks fail the test except those inside the OpenCL
# drivers, which tests/lsan.supp lists with the reason for each. The source tree is copied
# (the files git knows, or all of it outside git) so that a tree configured in place can
# still be built here.
set -euo pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=${SANITIZE_BUILDDIR:-$srcdir/build-sanitize}
san_cflags='-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1'

say() { printf '\n==> %s\n' "$*"; }

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
if [ ! -f Makefile ]; then
	say "configure with ASan and UBSan (CC=${CC:-cc})"
	./configure CFLAGS="$san_cflags" LDFLAGS='-fsanitize=address,undefined' \
		>"$builddir/configure.log" 2>&1 || {
		tail -n 30 "$builddir/configure.log"
		exit 1
	}
fi
say "make"
nice make -j"$(nproc)"

# halt_on_error: the first finding ends the program, so a test cannot pass over one.
# detect_stack_use_after_return finds what a plain build lets through silently (a pointer
# to a returned function's locals), the class of the daemon-run.c bug of issue 13.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:print_stacktrace=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$srcdir/tests/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export RXGEMM_TEST_SMALL=${RXGEMM_TEST_SMALL:-1}

# Mesa's Clover (an OpenCL platform every daemon enumerates) loads its gallium pipe driver
# and dlcloses it again; memory that driver keeps in its own globals then looks leaked,
# with a stack in an unmapped "<unknown module>" that no suppression can name. Keeping
# every library mapped to the end (dlclose does nothing) lets LeakSanitizer see those
# pointers, and name the driver of any real leak for tests/lsan.supp. It is preloaded
# into every process of the run; verify_asan_link_order then lets the ASan runtime come
# second.
cat >"$builddir/nodlclose.c" <<'SHIM'
int dlclose(void *handle);
/* Libraries stay loaded until exit (tests/sanitize.sh says why). */
int dlclose(void *handle) { (void)handle; return 0; }
SHIM
${CC:-cc} -shared -fPIC -O1 -o "$builddir/nodlclose.so" "$builddir/nodlclose.c"
export LD_PRELOAD="$builddir/nodlclose.so${LD_PRELOAD:+ $LD_PRELOAD}"
ASAN_OPTIONS="$ASAN_OPTIONS:verify_asan_link_order=0"

say "make check (ASan + UBSan)"
status=0
nice make -j"$(nproc)" check ${TESTS:+TESTS="$TESTS"} || status=$?
# A sanitizer's report anywhere in the logs fails the run even if a test swallowed the
# exit status (a script test that ignores a child's failure, a daemon's stderr in a log).
reports=$(grep -lE '^(==[0-9]+==ERROR: |SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer|.*: runtime error: )' \
	tests/*.log 2>/dev/null || true)
for f in tests/*.log; do
	[ -f "${f%.log}.trs" ] || continue
	case "$(sed -n 's/^:test-result: //p' "${f%.log}.trs")" in
	PASS | SKIP) ;;
	*) echo "--- $f"; tail -n 60 "$f" ;;
	esac
done
if [ -n "$reports" ]; then
	echo "sanitizer reports in: $reports" >&2
	[ "$status" -ne 0 ] || status=1
fi
[ "$status" -eq 0 ] && say "sanitizers: make check passed with no report"
exit "$status"

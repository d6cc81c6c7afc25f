#!/usr/bin/env bash
# quickstart.sh: from a fresh Debian 12 checkout to a running rxgemmd in one command.
#
#   ./quickstart.sh run    install what is missing, build, start rxgemmd on the best OpenCL
#                          device present (a GPU, else PoCL on the CPU), run GEMMs through
#                          the rxgemm CLI (checked against a CPU reference), show the
#                          daemon's status with per-job timings, and stop the daemon
#   ./quickstart.sh test   install what is missing, build, then `make check` and
#                          `make distcheck` (the whole test suite, twice); in CI (CI=true)
#                          or with RXGEMM_TEST_DEB=1 also build, lint, install and run the
#                          Debian packages (tests/test-deb.sh, as root)
#
# Runs as root or through sudo for apt-get; everything else runs as the calling user.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(build-essential autoconf automake libtool pkg-config
	ocl-icd-opencl-dev opencl-headers ocl-icd-libopencl1 pocl-opencl-icd mesa-opencl-icd
	libuv1-dev libprotobuf-c-dev protobuf-c-compiler check libsystemd-dev
	systemd bash-completion dpkg-dev debhelper lintian
	libclblast1 gnuplot-nox # the peer rxgemm-bench compares with, and its plots
	tmux groff-base # the terminal test of rxgemm top, the man-page check
	clang libclang-rt-dev # libFuzzer for tests/fuzz/run.sh (gcc's ASan/UBSan come with gcc)
	python3-numpy python3-pytest libblas-dev # the Python package's tests, the CBLAS shim's
	strace) # tests/test-syscalls.sh: the unit's SystemCallFilter= against what the daemon calls

say() { printf '\n==> %s\n' "$*"; }

install_deps() {
	local missing=() p sudo=()
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || { echo "need root or sudo to install packages" >&2; exit 1; }
		sudo=(sudo)
	fi
	"${sudo[@]}" apt-get update -q
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
		"${missing[@]}"
}

build() {
	if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
		say "autoreconf"
		autoreconf -fi
	fi
	if [ ! -f Makefile ] || [ configure -nt Makefile ]; then
		say "configure"
		./configure --enable-werror
	fi
	say "make"
	make -j"$(nproc)"
}

run() {
	local dir sock pid ok=0 i
	dir=$(mktemp -d "${TMPDIR:-/tmp}/rxgemmd-quickstart.XXXXXX")
	sock="$dir/rxgemmd.sock"
	say "starting rxgemmd on $sock (log: $dir/rxgemmd.log)"
	daemon/rxgemmd --socket "$sock" 2> >(tee "$dir/rxgemmd.log" >&2) &
	pid=$!
	# The socket appears once the device is open and the kernels are built and self-tested.
	for ((i = 0; i < 600; i++)); do
		[ -S "$sock" ] && { ok=1; break; }
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	if [ "$ok" -ne 1 ]; then
		echo "rxgemmd did not become ready; see $dir/rxgemmd.log" >&2
		kill "$pid" 2>/dev/null || true
		exit 1
	fi
	trap 'kill -TERM $pid 2>/dev/null || true' EXIT
	local cli=(client/rxgemm --socket "$sock")
	say "square GEMM, 1024 x 1024 x 1024, three times"
	"${cli[@]}" gemm -m 1024 -n 1024 -k 1024 --check --repeat 3
	say "odd-sized GEMM, 1000 x 777 x 333, alpha 0.5, beta 2"
	"${cli[@]}" gemm -m 1000 -n 777 -k 333 --alpha 0.5 --beta 2 --check
	say "transposed GEMM, op(A) = A^T and op(B) = B^T, 513 x 769 x 257, column-major"
	"${cli[@]}" gemm -m 513 -n 769 -k 257 --transa --transb --col-major --check
	say "rxgemm status"
	"${cli[@]}" status
	say "stopping rxgemmd"
	trap - EXIT
	kill -TERM "$pid"
	wait "$pid"
	echo "rxgemmd exited with status $?"
	rm -rf "$dir"
}

# One closing line with the counts of every check test case and test script.
summarize() {
	local passed=0 failed=0 skipped=0 log res total fails errors bad
	for log in tests/*.log; do
		[ -f "${log%.log}.trs" ] || continue
		res=$(sed -n 's/^:test-result: //p' "${log%.log}.trs")
		if [ "$res" = SKIP ]; then
			skipped=$((skipped + 1))
		elif grep -q 'Checks: [0-9]*, Failures: [0-9]*, Errors: [0-9]*' "$log"; then
			read -r total fails errors < <(sed -n 's/.*Checks: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2 \3/p' "$log" | tail -n 1)
			bad=$((fails + errors))
			passed=$((passed + total - bad))
			failed=$((failed + bad))
			[ "$res" = PASS ] || [ "$bad" -gt 0 ] || failed=$((failed + 1))
		elif [ "$res" = PASS ]; then
			passed=$((passed + 1))
		else
			failed=$((failed + 1))
		fi
	done
	echo "tests: $passed passed, $failed failed, $skipped skipped"
}

# print_failed DIR: the log of each test under DIR/tests that did not pass, so that a CI
# record shows why, not only which.
print_failed() {
	local f
	for f in "$1"/tests/*.log; do
		case "$(sed -n 's/^:test-result: //p' "${f%.log}.trs" 2>/dev/null)" in
		PASS) ;;
		*) [ -f "${f%.log}.trs" ] && { echo "--- $f"; cat "$f"; } ;;
		esac
	done
}

test_all() {
	local status=0
	say "make check"
	make -j"$(nproc)" check || status=$?
	print_failed .
	summarize
	[ "$status" -eq 0 ] || exit "$status"
	# It installs packages and adds the user rxgemm: only in CI or when asked for.
	if [ "${CI:-}" = true ] || [ "${RXGEMM_TEST_DEB:-}" = 1 ]; then
		say "Debian packages: build, lintian, dpkg -i, jobs on the installed daemon"
		status=0
		DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" tests/test-deb.sh || status=$?
		[ "$status" -eq 0 ] || [ "$status" -eq 77 ] || exit "$status"
	fi
	say "make distcheck"
	status=0
	make -j"$(nproc)" distcheck || status=$?
	if [ "$status" -ne 0 ]; then
		# distcheck's own build, left behind when its check fails.
		for d in rxgemmd-*/_build/sub; do
			[ -d "$d" ] && print_failed "$d"
		done
		exit "$status"
	fi
	# The hardening checks, in CI or each when asked for (RXGEMM_TEST_SOAK=1,
	# RXGEMM_TEST_FUZZ=1, RXGEMM_TEST_SANITIZE=1): a short soak, the fuzzers for a minute
	# each, make check under ASan and UBSan. The last two build in directories of their
	# own (build-fuzz, build-sanitize).
	if [ "${CI:-}" = true ] || [ "${RXGEMM_TEST_SOAK:-}" = 1 ]; then
		say "soak: ${SOAK_CLIENTS:-16} clients for ${SOAK_SECONDS:-20}s"
		SOAK_SECONDS=${SOAK_SECONDS:-20} tests/soak.sh
	fi
	if [ "${CI:-}" = true ] || [ "${RXGEMM_TEST_FUZZ:-}" = 1 ]; then
		say "fuzzing: each target for ${FUZZ_SECONDS:-60}s"
		tests/fuzz/run.sh
	fi
	if [ "${CI:-}" = true ] || [ "${RXGEMM_TEST_SANITIZE:-}" = 1 ]; then
		say "make check under ASan and UBSan"
		tests/sanitize.sh
	fi
}

case "${1:-}" in
run) install_deps; build; run ;;
test) install_deps; build; test_all ;;
*) echo "usage: $0 run|test" >&2; exit 2 ;;
esac

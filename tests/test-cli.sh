#!/bin/bash
# test-cli.sh: rxgemm(1) and rxgemmd's command line against a real daemon: GEMMs checked
# against the CPU reference (--check) and against known answers computed here, .npy files
# in both orders, JSON output, exit codes, status and devices, start-up and shutdown.
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init

HAVE_PY=0
if command -v python3 >/dev/null 2>&1; then
	HAVE_PY=1
fi
T=$TL_TMP
JOBS=0 # GEMM jobs that ran on the daemon, for the status check

# The version configure.ac gives, when the source tree is at hand.
VERSION=
if [ -f "${TESTS_SRCDIR:-$(dirname "$0")}/../configure.ac" ]; then
	VERSION=$(sed -n 's/^AC_INIT(\[[^]]*\], *\[\([^]]*\)\].*/\1/p' \
		"${TESTS_SRCDIR:-$(dirname "$0")}/../configure.ac")
fi

# --- rxgemmd's own options (no daemon needed) ---------------------------------------------

if tl_run "rxgemmd --version" 0 "$RXGEMMD" --version; then
	if [ -n "$VERSION" ]; then
		tl_expect_output "rxgemmd --version" "(^|[^0-9.])${VERSION//./\\.}([^0-9.]|$)" &&
			tl_ok "rxgemmd --version says $VERSION"
	else
		tl_expect_output "rxgemmd --version" '[0-9]+\.[0-9]+' && tl_ok "rxgemmd --version"
	fi
fi
if tl_run "rxgemmd --help" 0 "$RXGEMMD" --help; then
	tl_expect_output "rxgemmd --help" '--socket' && tl_ok "rxgemmd --help"
fi
# An unknown option: one line naming it, then where the help is (not the whole help).
if tl_run "rxgemmd --bogus" 2 "$RXGEMMD" --bogus-option; then
	if [ "$(cat "$TL_ERR")" = "rxgemmd: unknown option '--bogus-option'
Try 'rxgemmd --help'." ] && [ ! -s "$TL_OUT" ]; then
		tl_ok "rxgemmd with an unknown option: one line and 'Try --help', exit 2"
	else
		tl_fail "rxgemmd --bogus-option: not one line plus 'Try --help'"
		tl_show_output
	fi
fi
if tl_run "rxgemmd --socket without value" 2 "$RXGEMMD" --socket; then
	[ "$(wc -l <"$TL_ERR")" -eq 2 ] && tl_expect_output "rxgemmd --socket" "option '--socket' needs a value" &&
		tl_ok "rxgemmd --socket without a value: one line and 'Try --help'"
fi
if tl_run "rxgemmd --json alone" 2 "$RXGEMMD" --json; then
	tl_expect_output "rxgemmd --json alone" 'goes with --list-devices' &&
		tl_ok "rxgemmd --json without --list-devices is a usage error"
fi
# Every program has --version.
for prog in "$RXGEMM" "${RXGEMM_BENCH:-$(dirname "$RXGEMMD")/rxgemm-bench}"; do
	if tl_run "$(basename "$prog") --version" 0 "$prog" --version; then
		tl_expect_output "--version" "^$(basename "$prog") ${VERSION:-[0-9]+\.[0-9]+}" &&
			tl_ok "$(basename "$prog") --version"
	fi
done
if tl_run "rxgemmd --list-devices" 0 "$RXGEMMD" --list-devices; then
	cp "$TL_OUT" "$T/list-devices.txt"
	if [ -s "$T/list-devices.txt" ]; then
		tl_ok "rxgemmd --list-devices"
	else
		tl_fail "rxgemmd --list-devices printed nothing"
	fi
fi
# The same list as JSON: it parses, and each device of the text list is in it by name.
if tl_run "rxgemmd --list-devices --json" 0 "$RXGEMMD" --list-devices --json; then
	cp "$TL_OUT" "$T/list-devices.json"
	if [ "$HAVE_PY" = 1 ]; then
		if python3 -m json.tool "$T/list-devices.json" >/dev/null 2>"$TL_ERR"; then
			tl_json "--list-devices --json" "$T/list-devices.json" \
				"len(d['devices']) == $(grep -c '^[0-9]*: ' "$T/list-devices.txt") and all(x['name'] in open('$T/list-devices.txt').read() and x['compute_units'] > 0 for x in d['devices'])" &&
				tl_ok "rxgemmd --list-devices --json parses and lists the same devices"
		else
			tl_fail "rxgemmd --list-devices --json: python3 -m json.tool: $(cat "$TL_ERR")"
		fi
	fi
fi

# --- a daemon ----------------------------------------------------------------------------

tl_daemon_start main
S=$TL_DAEMON_SOCKET
MAIN_PID=$TL_DAEMON_PID
# The start-up line says where the time to ready went, with the same program counts as the
# kernel cache's own summary line.
# (The socket accepts just before the line is written: wait for it.)
for ((i = 0; i < 600; i++)); do
	grep -q 'ready after' "$TL_DAEMON_LOG" && break
	sleep 0.05
done
ready=$(grep -oE 'ready after [0-9.]+ s: device open [0-9]+ ms; kernels [0-9]+ ms \(GEMM [0-9]+, NAS [0-9]+\), of which [0-9]+ ms loading [0-9]+ programs from the cache and [0-9]+ ms compiling [0-9]+, the other [0-9]+ ms the driver finishing the programs and the self-tests; tuning [0-9]+ ms; socket [0-9]+ ms' "$TL_DAEMON_LOG" || true)
summary=$(grep -oE 'kernels: [0-9]+ loaded from cache, [0-9]+ compiled' "$TL_DAEMON_LOG" || true)
if [ -n "$ready" ] && [ -n "$summary" ]; then
	[[ $summary =~ ([0-9]+)\ loaded\ from\ cache,\ ([0-9]+) ]]
	hits=${BASH_REMATCH[1]} misses=${BASH_REMATCH[2]}
	if echo "$ready" | grep -q "loading $hits programs from the cache and [0-9]* ms compiling $misses," &&
		[ $((hits + misses)) -gt 0 ]; then
		tl_ok "the start-up log splits the time to ready ($hits loaded, $misses compiled)"
	else
		tl_fail "start-up line and cache summary disagree: '$ready' / '$summary'"
	fi
else
	tl_fail "no start-up time line in the log"
	grep -E 'ready|kernels:' "$TL_DAEMON_LOG" | sed 's/^/    /'
fi
R=("$RXGEMM" --socket "$S")

# gemm_ok NAME NJOBS [ARG...]: a --check run (NJOBS jobs) that must succeed and report
# GFLOPS.
gemm_ok() {
	local name=$1 njobs=$2
	shift 2
	if tl_run "$name" 0 "${R[@]}" gemm --check "$@"; then
		JOBS=$((JOBS + njobs))
		tl_expect_output "$name" 'GFLOPS' && tl_ok "$name"
	fi
	return 0
}

gemm_ok "square 128" 1 -m 128 -n 128 -k 128
gemm_ok "odd 67x129x33" 1 -m 67 -n 129 -k 33
gemm_ok "transa" 1 -m 45 -n 37 -k 29 --transa
gemm_ok "transb" 1 -m 45 -n 37 -k 29 --transb
gemm_ok "transa transb" 1 -m 45 -n 37 -k 29 --transa --transb
gemm_ok "col-major" 1 -m 67 -n 45 -k 33 --col-major
gemm_ok "col-major transa transb" 1 -m 31 -n 47 -k 19 --col-major --transa --transb
gemm_ok "alpha beta" 1 -m 50 -n 40 -k 30 --alpha 0.5 --beta -2 --seed 7
gemm_ok "repeat 3" 3 -m 64 -n 32 -k 16 --repeat 3
gemm_ok "priority and deadline" 1 -m 48 -n 40 -k 24 --priority 3 --deadline-ms 600000

# --shm: the matrices through a shared-memory buffer (small ones only when asked).
gemm_ok "--shm always" 1 -m 45 -n 37 -k 29 --transb --shm always
gemm_ok "--shm always, beta, repeat" 2 -m 50 -n 40 -k 30 --beta 0.5 --col-major --shm always \
	--repeat 2
gemm_ok "--shm never, 3 MiB" 1 -m 512 -n 512 -k 512 --shm never
gemm_ok "--shm auto, 3 MiB" 1 -m 512 -n 512 -k 512 --beta -1
for when in always never auto; do
	case $when in
	always) want=shm; args=(-m 8 -n 8 -k 8) ;;
	never) want=inline; args=(-m 300 -n 300 -k 300) ;;
	auto) want=shm; args=(-m 300 -n 300 -k 300) ;;
	esac
	if tl_run "--shm $when --json" 0 "${R[@]}" gemm "${args[@]}" --check --json --shm "$when"
	then
		JOBS=$((JOBS + 1))
		cp "$TL_OUT" "$T/shm-$when.json"
		tl_json "--shm $when --json" "$T/shm-$when.json" \
			"d['transfer'] == '$want' and d['check']['ok']" &&
			tl_ok "--shm $when: transfer $want"
	fi
done
# --resident R: A and B uploaded once as device tensors, R runs on them with C kept on the
# device, C read back once and checked against the CPU reference.
if tl_run "--resident 3" 0 "${R[@]}" gemm --check -m 70 -n 50 -k 40 --transa --beta 0.5 \
	--resident 3; then
	JOBS=$((JOBS + 3))
	if tl_expect_output "--resident 3" 'device tensors \(--resident 3\): uploaded once.*read back once' &&
		tl_expect_output "--resident 3" '^check: ok'; then
		runs=$(grep -cE '^[0-9]+ +[0-9.]+ ' "$TL_OUT")
		if [ "$runs" -eq 3 ]; then
			tl_ok "--resident 3: three runs on device tensors, C checked"
		else
			tl_fail "--resident 3: $runs run rows, want 3"
			tl_show_output
		fi
	fi
fi
if tl_run "--resident --json" 0 "${R[@]}" gemm --check --json -m 33 -n 21 -k 17 --col-major \
	--resident 2; then
	JOBS=$((JOBS + 2))
	cp "$TL_OUT" "$T/resident.json"
	tl_json "--resident --json" "$T/resident.json" \
		"d['transfer'] == 'resident' and len(d['runs']) == 2 and d['check']['ok'] \
		 and all(r['h2d_ns'] == 0 and r['d2h_ns'] == 0 for r in d['runs']) \
		 and d['resident']['upload_bytes'] == (33 * 17 + 17 * 21) * 4 \
		 and d['resident']['read_bytes'] == 33 * 21 * 4 and d['resident']['upload_ns'] > 0" &&
		tl_ok "--resident --json: no copies in the runs, one upload, one read-back"
fi
tl_run "--resident with --repeat" 2 "${R[@]}" gemm -m 8 -n 8 -k 8 --resident 2 --repeat 2 &&
	tl_expect_output "--resident with --repeat" 'neither --repeat nor --shm' &&
	tl_ok "--resident refuses --repeat"
if tl_run "status --json tensors" 0 "${R[@]}" status --json; then
	cp "$TL_OUT" "$T/status-tensors.json"
	tl_json "status --json tensors" "$T/status-tensors.json" \
		"all(c['tensors'] == 0 and c['tensor_bytes'] == 0 for c in d['clients'])" &&
		tl_ok "status --json lists each client's tensors (none held now)"
fi
if tl_run "--shm always --out" 0 "${R[@]}" gemm -m 24 -n 16 -k 8 --seed 5 --shm always \
	--out "$T/c1-shm.npy"; then
	JOBS=$((JOBS + 1))
fi

if tl_run "gemm --json" 0 "${R[@]}" gemm -m 40 -n 30 -k 20 --check --json; then
	JOBS=$((JOBS + 1))
	cp "$TL_OUT" "$T/gemm.json"
	tl_json "gemm --json" "$T/gemm.json" 'isinstance(d, dict)' && tl_ok "gemm --json parses"
fi

# --- .npy files --------------------------------------------------------------------------

# npy_header_has FILE ERE: the .npy header of FILE matches ERE.
npy_header_has() {
	head -c 256 "$1" | tr -d '\000' | tr '\n' ' ' | grep -Eq -- "$2"
}

# c1 (24 x 16) and c2 (16 x 12) in C order, f2 (16 x 12) in Fortran order.
if tl_run "--out" 0 "${R[@]}" gemm -m 24 -n 16 -k 8 --seed 5 --out "$T/c1.npy"; then
	JOBS=$((JOBS + 1))
	if [ ! -s "$T/c1.npy" ]; then
		tl_fail "--out wrote no file"
	elif ! head -c 6 "$T/c1.npy" | tr -d '\000' | grep -aq 'NUMPY'; then
		tl_fail "--out: $T/c1.npy is not a .npy file"
	elif ! npy_header_has "$T/c1.npy" "'descr': *'<f4'" ||
		! npy_header_has "$T/c1.npy" "'fortran_order': *False" ||
		! npy_header_has "$T/c1.npy" "'shape': *\(24, *16,? *\)"; then
		tl_fail "--out: header of c1.npy is not '<f4', C order, (24, 16):"
		head -c 128 "$T/c1.npy" | tr -d '\000'
		echo
	else
		size=$(wc -c <"$T/c1.npy")
		hlen=$(($(od -An -tu1 -j8 -N1 "$T/c1.npy") + 256 * $(od -An -tu1 -j9 -N1 "$T/c1.npy") + 10))
		if [ "$size" -ne $((hlen + 24 * 16 * 4)) ]; then
			tl_fail "--out: c1.npy has $size bytes, want $hlen + $((24 * 16 * 4))"
		else
			tl_ok "--out writes a float32 .npy in C order"
		fi
	fi
fi
tl_run "--out c2" 0 "${R[@]}" gemm -m 16 -n 12 -k 4 --seed 6 --out "$T/c2.npy" &&
	JOBS=$((JOBS + 1))
if tl_run "--col-major --out" 0 "${R[@]}" gemm -m 16 -n 12 -k 4 --seed 6 --col-major \
	--out "$T/f2.npy"; then
	JOBS=$((JOBS + 1))
	if npy_header_has "$T/f2.npy" "'fortran_order': *True" &&
		npy_header_has "$T/f2.npy" "'shape': *\(16, *12,? *\)"; then
		tl_ok "--col-major --out writes Fortran order"
	else
		tl_fail "--col-major --out: header of f2.npy is not Fortran order (16, 12):"
		head -c 128 "$T/f2.npy" | tr -d '\000'
		echo
	fi
fi
# c1: 24 x 16, c2: 16 x 12, f2: 16 x 12 (Fortran order).
gemm_ok "--a/--b from --out" 1 -m 24 -n 12 -k 16 --a "$T/c1.npy" --b "$T/c2.npy"
gemm_ok "Fortran-order --b" 1 -m 24 -n 12 -k 16 --a "$T/c1.npy" --b "$T/f2.npy"
gemm_ok "Fortran-order --a, transposed" 1 -m 12 -n 12 -k 16 --a "$T/f2.npy" --b "$T/c2.npy" \
	--transa
gemm_ok "Fortran-order --a, both transposed" 1 -m 12 -n 24 -k 16 --a "$T/f2.npy" \
	--b "$T/c1.npy" --transa --transb
gemm_ok "Fortran-order files, col-major run" 1 -m 24 -n 12 -k 16 --a "$T/c1.npy" \
	--b "$T/f2.npy" --col-major
gemm_ok "shapes from the files" 1 --a "$T/c1.npy" --b "$T/c2.npy"

# The same seed gives the same matrices, so the same result.
if [ -s "$T/c1-shm.npy" ] && [ -s "$T/c1.npy" ]; then
	if cmp -s "$T/c1.npy" "$T/c1-shm.npy"; then
		tl_ok "--out through shared memory equals --out inline"
	else
		tl_fail "--out through shared memory differs from --out inline"
	fi
fi
if tl_run "--seed repeatable" 0 "${R[@]}" gemm -m 24 -n 16 -k 8 --seed 5 --out "$T/c1b.npy"; then
	JOBS=$((JOBS + 1))
	if cmp -s "$T/c1.npy" "$T/c1b.npy"; then
		tl_ok "--seed is repeatable"
	else
		tl_fail "two runs with --seed 5 wrote different results"
	fi
fi

# Known answers, computed here: C = 0.5 * A * B + 2 * C with small integers (exact in
# float32), A given in C and in Fortran order, results read back in both orders.
if [ "$HAVE_PY" = 1 ]; then
	python3 - "$T" <<'EOF'
import struct, sys
def write_npy(path, rows, cols, vals, fortran=False, descr='<f4'):
    hdr = "{'descr': '%s', 'fortran_order': %s, 'shape': (%d, %d), }" % (
        descr, 'True' if fortran else 'False', rows, cols)
    hdr += ' ' * ((64 - (10 + len(hdr) + 1) % 64) % 64) + '\n'
    fmt = '<d' if descr == '<f8' else '<f'
    order = [(i, j) for j in range(cols) for i in range(rows)] if fortran else \
            [(i, j) for i in range(rows) for j in range(cols)]
    with open(path, 'wb') as f:
        f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode())
        for i, j in order:
            f.write(struct.pack(fmt, vals[i][j]))
t = sys.argv[1]
A = [[(i * 4 + j) % 7 - 3 for j in range(4)] for i in range(3)]
B = [[(i * 2 + j) % 5 - 2 for j in range(2)] for i in range(4)]
C = [[i - j for j in range(2)] for i in range(3)]
write_npy(t + '/ka.npy', 3, 4, A)
write_npy(t + '/ka_f.npy', 3, 4, A, fortran=True)
write_npy(t + '/kb.npy', 4, 2, B)
write_npy(t + '/kc.npy', 3, 2, C)
write_npy(t + '/ka64.npy', 3, 4, A, descr='<f8')
# Not 2-D: a vector of 12 and a 3 x 2 x 2 array.
for name, shape, n in (('k1d.npy', '(12,)', 12), ('k3d.npy', '(3, 2, 2)', 12)):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape
    hdr += ' ' * ((64 - (10 + len(hdr) + 1) % 64) % 64) + '\n'
    with open(t + '/' + name, 'wb') as f:
        f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode())
        f.write(struct.pack('<%df' % n, *range(n)))
want = [[0.5 * sum(A[i][l] * B[l][j] for l in range(4)) + 2 * C[i][j] for j in range(2)]
        for i in range(3)]
with open(t + '/kwant.txt', 'w') as f:
    f.write(repr(want))
EOF
	cat >"$T/npycmp.py" <<'EOF'
import ast, struct, sys
path, want_path = sys.argv[1], sys.argv[2]
want = ast.literal_eval(open(want_path).read())
data = open(path, 'rb').read()
if data[:6] != b'\x93NUMPY':
    sys.exit('%s: not a .npy file' % path)
hlen = struct.unpack('<H', data[8:10])[0] if data[6] == 1 else struct.unpack('<I', data[8:12])[0]
off = 10 if data[6] == 1 else 12
hdr = ast.literal_eval(data[off:off + hlen].decode('latin1'))
rows, cols = hdr['shape']
if hdr['descr'] != '<f4' or (rows, cols) != (len(want), len(want[0])):
    sys.exit('%s: header %r' % (path, hdr))
vals = struct.unpack('<%df' % (rows * cols), data[off + hlen:off + hlen + 4 * rows * cols])
for i in range(rows):
    for j in range(cols):
        got = vals[j * rows + i] if hdr['fortran_order'] else vals[i * cols + j]
        if abs(got - want[i][j]) > 1e-5:
            sys.exit('%s: C(%d,%d) = %g, want %g' % (path, i, j, got, want[i][j]))
EOF
	KA=(--alpha 0.5 --beta 2 --b "$T/kb.npy" --c "$T/kc.npy")
	for v in "C-order A:ka.npy:ko1.npy:" "Fortran-order A:ka_f.npy:ko2.npy:" \
		"col-major run:ka.npy:ko3.npy:--col-major"; do
		IFS=: read -r label afile ofile extra <<<"$v"
		# shellcheck disable=SC2086
		if tl_run "known answer, $label" 0 "${R[@]}" gemm -m 3 -n 2 -k 4 --a "$T/$afile" \
			"${KA[@]}" --out "$T/$ofile" $extra; then
			JOBS=$((JOBS + 1))
			if python3 "$T/npycmp.py" "$T/$ofile" "$T/kwant.txt" >"$TL_OUT" 2>&1; then
				tl_ok "known answer, $label"
			else
				tl_fail "known answer, $label: $(cat "$TL_OUT")"
			fi
		fi
	done

	if tl_run "float64 .npy" 4 "${R[@]}" gemm -m 3 -n 2 -k 4 --a "$T/ka64.npy" \
		--b "$T/kb.npy"; then
		tl_expect_output "float64 .npy" 'ka64\.npy' && tl_ok "a float64 .npy exits 4"
	fi
	for f in k1d.npy k3d.npy; do
		if tl_run "$f" 4 "${R[@]}" gemm -m 3 -n 2 -k 4 --a "$T/$f" --b "$T/kb.npy"; then
			tl_expect_output "$f" "${f//./\\.}" && tl_ok "a .npy that is not 2-D ($f) exits 4"
		fi
	done
else
	echo "note: no python3; known-answer and dtype checks not run"
fi

# --- file errors -------------------------------------------------------------------------

if tl_run "wrong shape" 4 "${R[@]}" gemm -m 10 -n 12 -k 16 --a "$T/c1.npy" --b "$T/c2.npy"; then
	tl_expect_output "wrong shape" 'c1\.npy' && tl_ok "a file of the wrong shape exits 4"
fi
if tl_run "missing file" 4 "${R[@]}" gemm -m 8 -n 8 -k 8 --a "$T/no-such.npy"; then
	tl_expect_output "missing file" 'no-such\.npy' && tl_ok "a missing file exits 4"
fi
printf 'this is not a .npy file\n' >"$T/text.npy"
if tl_run "not a .npy" 4 "${R[@]}" gemm -m 8 -n 8 -k 8 --b "$T/text.npy"; then
	tl_expect_output "not a .npy" 'text\.npy' && tl_ok "a file that is not .npy exits 4"
fi

# --- usage errors ------------------------------------------------------------------------

usage_error() {
	local name=$1
	shift
	if tl_run "$name" 2 "${R[@]}" "$@"; then
		if [ -s "$TL_ERR" ]; then
			tl_ok "$name exits 2"
		else
			tl_fail "$name: exit 2 but nothing on stderr"
		fi
	fi
	return 0
}
usage_error "-m 0" gemm -m 0 -n 8 -k 8
usage_error "-m abc" gemm -m abc -n 8 -k 8
usage_error "-n -5" gemm -m 8 -n -5 -k 8
usage_error "-k 12x" gemm -m 8 -n 8 -k 12x
usage_error "unknown option" gemm -m 8 -n 8 -k 8 --bogus-option
usage_error "unknown command" frobnicate
usage_error "no command"
usage_error "--alpha abc" gemm -m 8 -n 8 -k 8 --alpha abc
usage_error "--shm sometimes" gemm -m 8 -n 8 -k 8 --shm sometimes
usage_error "--priority 4" gemm -m 8 -n 8 -k 8 --priority 4
usage_error "--deadline-ms -1" gemm -m 8 -n 8 -k 8 --deadline-ms -1

# Each message says what to do, with the documented exit code.
if tl_run "no command lists all" 2 "${R[@]}"; then
	tl_expect_output "no command lists all" 'gemm, status, devices, bench, top or nas' &&
		tl_ok "no command: the message lists all six commands"
fi
# 35.5 PiB for C: refused before any allocation, in human units, with this machine's memory.
if tl_run "huge gemm" 2 "${R[@]}" gemm -m 99999999 -n 99999999 -k 4; then
	tl_expect_output "huge gemm" 'needs 35\.5 PiB of memory .*C 35\.5 PiB.*this machine has [0-9.]+ [KMGT]iB' &&
		tl_ok "a GEMM larger than memory is a usage error with sizes and the limit"
fi
# A missing output directory is found before the job runs (the daemon counts no job).
if tl_run "--out in a missing directory" 4 "${R[@]}" gemm -m 8 -n 8 -k 8 \
	--out "$T/no-such-dir/c.npy"; then
	tl_expect_output "--out in a missing directory" "cannot write .*no-such-dir/c\.npy: directory .*No such file" &&
		tl_ok "--out in a missing directory exits 4 before submitting"
fi
if tl_run "--out a directory" 4 "${R[@]}" gemm -m 8 -n 8 -k 8 --out "$T"; then
	tl_expect_output "--out a directory" "is a directory" && tl_ok "--out naming a directory exits 4"
fi
if tl_run "--beta without --c" 0 "${R[@]}" gemm -m 8 -n 8 -k 8 --beta 1 --check; then
	JOBS=$((JOBS + 1))
	if grep -q 'warning: --beta 1 without --c' "$TL_ERR" && ! grep -q warning "$TL_OUT"; then
		tl_ok "--beta without --c warns on stderr"
	else
		tl_fail "--beta without --c: no warning on stderr"
		tl_show_output
	fi
fi
if tl_run "--beta 0 without --c" 0 "${R[@]}" gemm -m 8 -n 8 -k 8; then
	JOBS=$((JOBS + 1))
	[ -s "$TL_ERR" ] && tl_fail "beta 0 without --c printed on stderr: $(cat "$TL_ERR")" ||
		tl_ok "no warning when beta is 0"
fi
# Permission denied on the socket (a directory another user may not enter): the message
# names the rxgemm group and logging in again. Needs root to become another user.
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1; then
	mkdir -m 700 "$T/private"
	if tl_run "permission denied" 3 setpriv --reuid=65534 --regid=65534 --clear-groups \
		"$RXGEMM" --socket "$T/private/rxgemmd.sock" status; then
		tl_expect_output "permission denied" 'Permission denied' &&
			tl_expect_output "permission denied" "'rxgemm' group" &&
			tl_expect_output "permission denied" 'log out and in again' &&
			tl_ok "permission denied names the rxgemm group and logging in again"
	fi
else
	echo "note: not root (or no setpriv): the permission-denied message is not checked"
fi

# --- no daemon ---------------------------------------------------------------------------

for cmd in "gemm -m 8 -n 8 -k 8" status devices; do
	# shellcheck disable=SC2086
	if tl_run "no daemon: $cmd" 3 "$RXGEMM" --socket "$T/nobody.sock" $cmd; then
		if [ -s "$TL_ERR" ]; then
			tl_ok "no daemon: $cmd exits 3"
		else
			tl_fail "no daemon: $cmd exits 3 without a message"
		fi
	fi
done
if tl_run "RXGEMM_SOCKET" 0 env RXGEMM_SOCKET="$S" "$RXGEMM" status; then
	tl_ok "RXGEMM_SOCKET names the default socket"
fi

# --- status and devices ------------------------------------------------------------------

if tl_run "status" 0 "${R[@]}" status; then
	tl_expect_output "status" 'jobs' && tl_expect_output "status" 'queue: .*bounds' &&
		tl_ok "status"
fi
if tl_run "status --json" 0 "${R[@]}" status --json; then
	cp "$TL_OUT" "$T/status.json"
	tl_json "status --json" "$T/status.json" \
		"isinstance(d, dict) and d.get('jobs_ok', -1) >= $JOBS and d.get('jobs_failed') == 0 and len(d.get('recent', [])) > 0 and d['queue']['max_queue'] > 0" &&
		tl_ok "status --json counts the $JOBS jobs run"
	# The --shm runs above: 7 jobs through buffers, each buffer freed again.
	tl_json "status --json shm" "$T/status.json" \
		"d['shm']['jobs'] >= 7 and d['shm']['registered'] >= 6 and d['shm']['regions'] == 0 and d['shm']['region_bytes'] == 0" &&
		tl_ok "status --json counts the --shm jobs, and no buffer is left mapped"
	# The 3 MiB job with --shm never: a 1 MiB result and a 2 MiB frame, for which the
	# daemon had no kept buffer at first.
	tl_json "status --json host_buffers" "$T/status.json" \
		"sorted(d['host_buffers']) == ['hits', 'kept', 'kept_bytes', 'misses', 'pinned', 'pinned_bytes', 'pins_made'] and d['host_buffers']['misses'] >= 1 and d['host_buffers']['kept'] <= 8 and d['host_buffers']['kept_bytes'] <= 1 << 30" &&
		tl_ok "status --json counts the host buffers the daemon keeps"
fi
if tl_run "status" 0 "${R[@]}" status; then
	tl_expect_output "status" '^shm: +0 buffers mapped' &&
		tl_expect_output "status" '^host: +[0-9]+ buffers kept .*pins made' &&
		tl_ok "status shows the buffers"
fi
# --prometheus: the text exposition format, read by a strict parser of it; the counters
# agree with --json (no job runs in between).
if [ "$HAVE_PY" = 1 ] && tl_run "status --prometheus" 0 "${R[@]}" status --prometheus; then
	cp "$TL_OUT" "$T/status.prom"
	if python3 "$TESTS_SRCDIR/prom-parse.py" "$T/status.prom" >"$T/prom.json" 2>"$TL_ERR"; then
		tl_ok "status --prometheus parses as the text exposition format"
		tl_json "prometheus values" "$T/prom.json" "(lambda v, st: v('rxgemm_jobs_ok_total') == st['jobs_ok'] and v('rxgemm_jobs_failed_total') == st['jobs_failed'] and v('rxgemm_vram_budget_bytes') == st['memory']['budget_bytes'] and v('rxgemm_vram_peak_bytes') == st['memory']['peak_bytes'] and v('rxgemm_queue_jobs_waiting') == 0 and v('rxgemm_device_busy_seconds_total') > 0 and v('rxgemm_host_buffer_misses_total') == st['host_buffers']['misses'] and v('rxgemm_host_buffer_hits_total') == st['host_buffers']['hits'] and any(s[0] == 'rxgemm_client_jobs_ok_total' and s[1] == {'client': 'departed'} and s[2] >= $JOBS - 1 for s in d) and any(s[0] == 'rxgemm_client_jobs_ok_total' and s[1].get('name') == 'rxgemm-cli' for s in d) and len([s for s in d if s[0] == 'rxgemm_kernel_variant_gflops' and s[1]['kernel'] and s[2] > 0]) == len(st['kernel_stats']) > 0)(lambda n: [s[2] for s in d if s[0] == n][0], __import__('json').load(open('$T/status.json')))" &&
			tl_ok "status --prometheus: jobs, failures, queue, budget, busy, host buffers, per client and per kernel agree with --json"
	else
		tl_fail "status --prometheus: $(cat "$TL_ERR")"
		head -n 20 "$T/status.prom"
	fi
fi
usage_error "--json and --prometheus" status --json --prometheus
usage_error "devices --prometheus" devices --prometheus
if tl_run "devices" 0 "${R[@]}" devices; then
	cp "$TL_OUT" "$T/devices.txt"
	if tl_run "devices --json" 0 "${R[@]}" devices --json; then
		cp "$TL_OUT" "$T/devices.json"
		if tl_json "devices --json" "$T/devices.json" \
			"len([x for x in (d.get('devices', []) if isinstance(d, dict) else d) if x.get('in_use')]) == 1"; then
			tl_ok "devices --json marks one device in use"
			if [ "$HAVE_PY" = 1 ]; then
				name=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d=d.get("devices", d) if isinstance(d, dict) else d; print([x["name"] for x in d if x.get("in_use")][0])' "$T/devices.json")
				if grep -qF -- "$name" "$T/devices.txt" && grep -qF -- "$name" "$T/list-devices.txt"; then
					tl_ok "devices and rxgemmd --list-devices show $name"
				else
					tl_fail "the device in use ($name) is missing from 'devices' or '--list-devices'"
				fi
			fi
		fi
	fi
fi

# --- start-up refusal and shutdown -------------------------------------------------------

if tl_run "second daemon on a live socket" 1 "$RXGEMMD" --socket "$S" \
	${RXGEMM_TEST_DEVICE:+--device "$RXGEMM_TEST_DEVICE"}; then
	if [ -s "$TL_ERR" ] || [ -s "$TL_OUT" ]; then
		tl_ok "a second rxgemmd on a live socket exits 1"
	else
		tl_fail "a second rxgemmd exits 1 without a message"
	fi
fi
if [ ! -S "$S" ]; then
	tl_fail "the refused second daemon removed the first one's socket file"
elif tl_run "first daemon after the refusal" 0 "${R[@]}" gemm -m 32 -n 32 -k 32 --check; then
	tl_ok "the first daemon still serves after a refused second one"
fi

# --- rxgemm bench: a size sweep through the daemon ---------------------------------------
if tl_run "bench json" 0 "${R[@]}" bench --sizes 32,48 --repeat 2 --json; then
	cp "$TL_OUT" "$T/bench.json"
	tl_json "bench json" "$T/bench.json" \
		"[r['n'] for r in d['results']] == [32, 48] and all(r['e2e_gflops'] > 0 and r['wall_ns'] > 0 for r in d['results'])" &&
		tl_ok "rxgemm bench --json reports every size"
fi
if tl_run "bench csv" 0 "${R[@]}" bench --sizes 40 --transa --transb --csv; then
	[ "$(wc -l <"$TL_OUT")" -eq 2 ] && grep -q '^40,1,1,' "$TL_OUT" &&
		tl_ok "rxgemm bench --csv: a header and one row per size" ||
		{ tl_fail "rxgemm bench --csv output"; tl_show_output; }
fi
tl_run "bench bad sizes" 2 "${R[@]}" bench --sizes 32,,64 && tl_ok "rxgemm bench refuses a bad size list"

tl_daemon_stop "$MAIN_PID" TERM 60
if [ "$TL_STATUS" -ne 0 ]; then
	tl_fail "rxgemmd exited with $TL_STATUS after SIGTERM, want 0"
elif [ -e "$S" ]; then
	tl_fail "rxgemmd left its socket file $S after SIGTERM"
else
	tl_ok "SIGTERM: exit 0, socket removed"
fi
if tl_run "after shutdown" 3 "${R[@]}" status; then
	tl_ok "status after shutdown exits 3"
fi

tl_finish

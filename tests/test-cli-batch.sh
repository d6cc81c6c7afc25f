#!/bin/bash
# test-cli-batch.sh: rxgemm gemm with 3-D .npy stacks (batched GEMM, broadcast as numpy's
# matmul) and arrays of .npz archives, against a real daemon. Every result is compared by
# numpy (in float64) with alpha * op(A) @ op(B) + beta * C of the input files, and its
# shape with the one numpy's matmul gives; bad inputs must fail with exit 4 and a message
# that says what is wrong. Skipped (77) without a python3 that has numpy.
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

if ! tl_python numpy; then
	echo "SKIP: no python3 with numpy (Debian: python3-numpy)"
	exit 77
fi
tl_init
T=$TL_TMP

# The numpy side: "make NAME SHAPE [fortran]" writes a seeded random float32 array to
# $T/NAME.npy; "check OUT A B [C] [--transa] [--transb] [--alpha X] [--beta Y]" compares
# OUT with the reference computed from the inputs (ARCHIVE.npz:NAME read by numpy.load).
cat >"$T/ref.py" <<'EOF'
import sys
import zlib
import numpy as np

def load(spec):
    if ".npz:" in spec:
        path, name = spec.rsplit(":", 1)
        return np.load(path)[name]
    if spec.endswith(".npz"):
        (only,) = np.load(spec).values()
        return only
    return np.load(spec)

cmd = sys.argv[1]
if cmd == "make":
    name, shape = sys.argv[2], tuple(int(x) for x in sys.argv[3].split("x"))
    rng = np.random.default_rng(zlib.crc32(sys.argv[2].encode()))
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    if len(sys.argv) > 4 and sys.argv[4] == "fortran":
        x = np.asfortranarray(x)
    np.save(sys.argv[2], x)
    sys.exit(0)
args = sys.argv[2:]
ta = "--transa" in args
tb = "--transb" in args
alpha = float(args[args.index("--alpha") + 1]) if "--alpha" in args else 1.0
beta = float(args[args.index("--beta") + 1]) if "--beta" in args else 0.0
files = [x for i, x in enumerate(args) if not x.startswith("--") and
         (i == 0 or args[i - 1] not in ("--alpha", "--beta"))]
out, a, b = load(files[0]), load(files[1]), load(files[2])
a64, b64 = a.astype(np.float64), b.astype(np.float64)
if ta:
    a64 = np.swapaxes(a64, -1, -2)
if tb:
    b64 = np.swapaxes(b64, -1, -2)
want = alpha * np.matmul(a64, b64)
if beta != 0:
    want = want + beta * load(files[3]).astype(np.float64)
if out.dtype != np.float32 or out.shape != want.shape:
    print("result %s %s, numpy's %s" % (out.dtype, out.shape, want.shape))
    sys.exit(1)
k = a64.shape[-1]
tol = 1e-5 * k * (np.abs(want).max() + 1)
err = np.abs(out.astype(np.float64) - want).max()
if not err <= tol:
    print("max error %g over tolerance %g" % (err, tol))
    sys.exit(1)
EOF

tl_daemon_start batch
R=("$RXGEMM" --socket "$TL_DAEMON_SOCKET")

mk() { (cd "$T" && "$PY" ref.py make "$@"); }

# batch_ok NAME OUT-NAME A B [C] [GEMM-OPTION...]: run rxgemm gemm on the files and check
# its --out against numpy. The files are paths under $T; options go to both sides.
batch_ok() {
	local name=$1 out=$T/$2.npy
	shift 2
	local files=() opts=()
	while [ $# -gt 0 ] && [[ $1 != --* ]]; do
		files+=("$1")
		shift
	done
	opts=("$@")
	local fileopts=(--a "$T/${files[0]}" --b "$T/${files[1]}")
	[ ${#files[@]} -gt 2 ] && fileopts+=(--c "$T/${files[2]}")
	# What changes how the job travels, not its result, is not numpy's business.
	local refopts=() i
	for ((i = 0; i < ${#opts[@]}; i++)); do
		case ${opts[i]} in
		--col-major) ;;
		--shm | --resident | -m | -n | -k) i=$((i + 1)) ;;
		*) refopts+=("${opts[i]}") ;;
		esac
	done
	rm -f "$out"
	if tl_run "$name" 0 "${R[@]}" gemm "${fileopts[@]}" --out "$out" --check "${opts[@]}"; then
		if ! tl_expect_output "$name" '^check: ok'; then
			return 0
		fi
		local refargs=("$out")
		for f in "${files[@]}"; do refargs+=("$T/$f"); done
		if (cd "$T" && "$PY" ref.py check "${refargs[@]}" ${refopts[@]+"${refopts[@]}"}) \
			>"$T/ref.out" 2>&1; then
			tl_ok "$name"
		else
			tl_fail "$name: numpy disagrees: $(cat "$T/ref.out")"
		fi
	fi
	return 0
}

# --- each broadcast form, against numpy's matmul ------------------------------------------
mk a3 4x5x6
mk b3 4x6x7
mk b2 6x7
mk b13 1x6x7
mk a2 5x6
mk a13 1x5x6
batch_ok "stack @ stack" o1 a3.npy b3.npy
batch_ok "stack @ matrix" o2 a3.npy b2.npy
batch_ok "stack @ stack of 1" o3 a3.npy b13.npy
batch_ok "matrix @ stack" o4 a2.npy b3.npy
batch_ok "stack of 1 @ stack" o5 a13.npy b3.npy
batch_ok "stack of 1 @ stack of 1: a 3-D result of 1" o6 a13.npy b13.npy
batch_ok "stack of 1 @ matrix: a 3-D result of 1" o7 a13.npy b2.npy

# Layouts and options on stacks: Fortran-ordered files (batch index fastest), transposes,
# column-major sending, shared memory, device tensors, alpha and beta with a C stack and
# with one C for every product.
mk af 3x9x4 fortran
mk bf 3x4x8 fortran
batch_ok "Fortran-ordered stacks" o8 af.npy bf.npy
mk at 3x4x9
mk bt 8x4
batch_ok "--transa --transb on a stack and a matrix" o9 at.npy bt.npy --transa --transb
batch_ok "--col-major stacks" o10 af.npy bf.npy --col-major
batch_ok "--shm always stacks" o11 a3.npy b2.npy --shm always
batch_ok "--resident stacks" o12 a2.npy b3.npy --resident 2
mk c3 4x5x7
mk c2 5x7
batch_ok "alpha, beta, C a stack" o13 a3.npy b3.npy c3.npy --alpha 0.5 --beta -2
batch_ok "beta with one C for the batch, column-major" o14 a3.npy b2.npy c2.npy --beta 1.5 \
	--col-major
# A bigger batch of odd shapes, through the kernels' edges.
mk ab 6x37x29
mk bb 29x41
batch_ok "6 x (37 x 29 @ 29 x 41)" o15 ab.npy bb.npy

# --json: the batch's length (null for one 2-D product) and the flops of all products.
if tl_run "--json batch" 0 "${R[@]}" gemm --a "$T/a3.npy" --b "$T/b2.npy" --json --check; then
	cp "$TL_OUT" "$T/batch.json"
	if "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(not (d["batch"] == 4 and d["flops"] == 2*4*5*6*7 and d["check"]["ok"]))' "$T/batch.json"; then
		tl_ok "--json: batch 4 and the flops of four products"
	else
		tl_fail "--json batch: $(cat "$T/batch.json")"
	fi
fi
if tl_run "--json single" 0 "${R[@]}" gemm --a "$T/a2.npy" --b "$T/b2.npy" --json; then
	if "$PY" -c 'import json,sys; d=json.load(sys.stdin); sys.exit(not (d["batch"] is None and d["m"] == 5))' <"$TL_OUT"; then
		tl_ok "--json: batch null for a 2-D product"
	else
		tl_fail "--json single: $(cat "$TL_OUT")"
	fi
fi

# --- .npz archives ------------------------------------------------------------------------
(cd "$T" && "$PY" -c '
import numpy as np
rng = np.random.default_rng(7)
a = rng.uniform(-1, 1, (3, 11, 6)).astype(np.float32)
b = rng.uniform(-1, 1, (6, 9)).astype(np.float32)
c = rng.uniform(-1, 1, (3, 11, 9)).astype(np.float32)
np.savez("in.npz", a=a, b=b, c=c, extra=np.zeros(3))
np.savez("only.npz", np.asfortranarray(b))
np.savez_compressed("packed.npz", a=a, b=b)
np.save("big4d.npy", np.zeros((2, 3, 4, 5), np.float32))
np.save("f64.npy", np.zeros((3, 11, 6)))
np.save("b5.npy", rng.uniform(-1, 1, (5, 6, 9)).astype(np.float32))
')
batch_ok ".npz members by name" o20 in.npz:a in.npz:b in.npz:c --beta 0.25
# only.npz holds one Fortran-ordered 6 x 9 matrix, used as B^T (--transb).
mk a96 2x4x9
batch_ok ".npz with its only array, --transb" o22 a96.npy only.npz --transb
mk b69 6x9
batch_ok ".npz member with a .npy file" o23 in.npz:a b69.npy

# --- errors: exit 4 and a sentence naming the problem -------------------------------------
# bad NAME WANT-ERE GEMM-ARGS...
bad() {
	local name=$1 want=$2
	shift 2
	rm -f "$T/never.npy"
	if tl_run "$name" 4 "${R[@]}" gemm "$@" --out "$T/never.npy"; then
		if tl_expect_output "$name" "$want"; then
			if [ -e "$T/never.npy" ]; then
				tl_fail "$name: --out was written all the same"
			else
				tl_ok "$name: exit 4, '$want'"
			fi
		fi
	fi
	return 0
}
bad "stacks of 4 and 5" 'stack of 4 matrices and B .* one of 5: they do not broadcast' \
	--a "$T/a3.npy" --b "$T/b5.npy"
bad "stack of C that does not broadcast" 'A .* stack of 4 .* C .* one of 3' \
	--a "$T/a3.npy" --b "$T/b2.npy" --c "$T/in.npz:c" --beta 1
bad "float64 stack" "dtype is '<f8', need float32" --a "$T/f64.npy" --b "$T/b2.npy"
bad "4-D array" 'shape \(2, 3, 4, 5\) has 4 dimensions: need 2 to 3' \
	--a "$T/big4d.npy" --b "$T/b2.npy"
bad "missing .npz member" "no array 'q' in the archive \\(it holds a, b, c, extra\\)" \
	--a "$T/in.npz:q" --b "$T/b2.npy"
bad "compressed .npz" "array 'a' is compressed \\(numpy.savez_compressed\\).*numpy.savez" \
	--a "$T/packed.npz:a" --b "$T/b2.npy"
bad ".npz with several arrays, no name" 'holds 4 arrays \(a, b, c, extra\): name one as ARCHIVE.npz:NAME' \
	--a "$T/in.npz" --b "$T/b2.npy"
bad "float64 .npz member" "in.npz:extra: .*dtype is '<f8'" --a "$T/in.npz:extra" --b "$T/b2.npy"
cp "$T/in.npz" "$T/zip-named.npy"
bad "a zip file named .npy" 'a zip archive, not a .npy file' --a "$T/zip-named.npy" --b "$T/b2.npy"
bad "stack whose matrices do not fit" 'shape \(4, 5, 6\) does not fit: expected matrices \(7, 6\)' \
	--a "$T/a3.npy" --b "$T/b2.npy" -m 7

# The daemon still serves after all that.
batch_ok "still serving" o30 a3.npy b3.npy
tl_daemon_stop "$TL_DAEMON_PID" TERM
tl_finish

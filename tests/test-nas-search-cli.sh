#!/bin/bash
# test-nas-search-cli.sh: `rxgemm nas-search` against a real daemon, on tiny synthetic data
# made here with numpy: the genotype file `rxgemm nas --genotype-file` evaluates, the
# alphas' .npy against the JSON result, a search stopped at step 2 (--state) and resumed
# (--resume) to step 4 equal to one straight to 4 (also by a daemon started afresh), the
# same in checkpointed segments, Ctrl-C saving a state that --resume continues, CIFAR-10
# batch files split in halves, and the usage (exit 2) and file (exit 4) errors.
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init
T=$TL_TMP

if ! tl_python numpy; then
	echo "SKIP: no python3 with numpy"
	exit 77
fi

# --- data: 4 images of 3 x 8 x 8 per half, 4 classes; CIFAR-10 style batch files ----------
"$PY" - "$T" <<'EOF'
import sys, numpy as np
t = sys.argv[1]
rng = np.random.default_rng(5)
for half in ("train", "valid"):
    np.save(f"{t}/{half}_x.npy", rng.uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32))
    np.save(f"{t}/{half}_y.npy", np.arange(4, dtype=np.int64) % 4)
np.save(f"{t}/float_y.npy", np.zeros(4, dtype=np.float32))
for i in (1, 2):
    rec = np.zeros((4, 3073), dtype=np.uint8)
    rec[:, 0] = np.arange(4) + i
    rec[:, 1:] = rng.integers(0, 256, (4, 3072))
    rec.tofile(f"{t}/data_batch_{i}.bin")
open(f"{t}/short.bin", "wb").write(b"\0" * 3000)
EOF
DATA=(--train-images "$T/train_x.npy" --train-labels "$T/train_y.npy"
	--valid-images "$T/valid_x.npy" --valid-labels "$T/valid_y.npy")
TINY=(--C 4 --layers 3 --classes 4 --batch 2 --epochs 3 --seed 3)

# --- usage and file errors (no daemon needed for these) -------------------------------------
R0=("$RXGEMM" --socket "$T/nobody.sock")
if tl_run "no data" 2 "${R0[@]}" nas-search --C 4; then
	tl_expect_output "no data" "train-images" && tl_ok "nas-search without data exits 2"
fi
if tl_run "both sources" 2 "${R0[@]}" nas-search "${DATA[@]}" --cifar10 "$T/data_batch_1.bin"; then
	tl_ok "nas-search with .npy and CIFAR-10 files exits 2"
fi
if tl_run "bad option" 2 "${R0[@]}" nas-search --bogus; then
	tl_ok "nas-search with an unknown option exits 2"
fi
if tl_run "float labels" 4 "${R0[@]}" nas-search --train-images "$T/train_x.npy" \
	--train-labels "$T/float_y.npy" --valid-images "$T/valid_x.npy" \
	--valid-labels "$T/valid_y.npy"; then
	tl_expect_output "float labels" "integer labels" && tl_ok "float labels exit 4"
fi
if tl_run "short cifar" 4 "${R0[@]}" nas-search --cifar10 "$T/short.bin"; then
	tl_expect_output "short cifar" "not whole records" && tl_ok "a truncated batch file exits 4"
fi

# --- a daemon ---------------------------------------------------------------------------------
tl_daemon_start search
R=("$RXGEMM" --socket "$TL_DAEMON_SOCKET")

# Straight to step 4.
if tl_run "straight" 0 "${R[@]}" nas-search "${DATA[@]}" "${TINY[@]}" --max-steps 4 --json \
	--out-genotype "$T/g.txt" --out-alphas "$T/a.npy"; then
	tail -n 1 "$TL_OUT" >"$T/final.json"
	progress=$(grep -c '"event":"progress"' "$TL_OUT" || true)
	[ "$progress" -eq 4 ] && tl_ok "nas-search --json: one progress line per step" ||
		tl_fail "nas-search --json: $progress progress lines, want 4"
	tl_json "final" "$T/final.json" \
		"d['event'] == 'done' and d['steps_done'] == 4 and d['genotype'].startswith('Genotype(') and len(d['alpha_normal']) == 112" &&
		tl_ok "nas-search --json ends with the result"
	if "$PY" - "$T" <<'EOF'; then
import json, sys, numpy as np
t = sys.argv[1]
a = np.load(f"{t}/a.npy")
d = json.load(open(f"{t}/final.json"))
assert a.shape == (2, 14, 8) and a.dtype == np.float32, a.shape
assert np.array_equal(a[0].ravel(), np.array(d["alpha_normal"], dtype=np.float32))
assert np.array_equal(a[1].ravel(), np.array(d["alpha_reduce"], dtype=np.float32))
assert open(f"{t}/g.txt").read().strip() == d["genotype"]
EOF
		tl_ok "--out-alphas and --out-genotype hold the result"
	else
		tl_fail "--out-alphas or --out-genotype differ from the JSON result"
	fi
fi
if tl_run "genotype file" 0 "${R[@]}" nas --genotype-file "$T/g.txt" --C 4 --layers 3 \
	--classes 4 --size 8 --batch 1 --warmup 0 --repeat 1 --json; then
	tl_ok "rxgemm nas --genotype-file evaluates the genotype found"
fi

same_alphas() { # same_alphas NAME A.npy B.npy
	if "$PY" -c 'import sys, numpy as np; sys.exit(0 if np.array_equal(np.load(sys.argv[1]), np.load(sys.argv[2])) else 1)' "$2" "$3"; then
		tl_ok "$1"
	else
		tl_fail "$1: the alphas differ"
	fi
}

# Stopped at 2 with --state, resumed to 4.
if tl_run "first half" 0 "${R[@]}" nas-search "${DATA[@]}" "${TINY[@]}" --max-steps 2 \
	--state "$T/s.bin" && [ -s "$T/s.bin" ] &&
	tl_run "resumed" 0 "${R[@]}" nas-search "${DATA[@]}" "${TINY[@]}" --max-steps 4 \
		--resume "$T/s.bin" --out-alphas "$T/b.npy" --out-genotype "$T/g2.txt"; then
	same_alphas "resumed at step 2 to step 4 equals straight to 4" "$T/a.npy" "$T/b.npy"
	cmp -s "$T/g.txt" "$T/g2.txt" && tl_ok "the resumed search finds the same genotype" ||
		tl_fail "the resumed search's genotype differs"
fi
# In segments of one step (a checkpoint after each).
if tl_run "segments" 0 "${R[@]}" nas-search "${DATA[@]}" "${TINY[@]}" --max-steps 4 \
	--state "$T/s1.bin" --checkpoint-every 1 --out-alphas "$T/c.npy"; then
	same_alphas "checkpointed every step equals straight" "$T/a.npy" "$T/c.npy"
fi

# Ctrl-C: a long search, interrupted once it has reported two steps, keeps its state.
"${R[@]}" nas-search "${DATA[@]}" "${TINY[@]}" --epochs 100000 --max-steps 100000 --json \
	--state "$T/int.bin" --checkpoint-every 1 >"$T/int.out" 2>"$T/int.err" &
pid=$!
TL_PIDS+=("$pid")
for ((i = 0; i < 6000; i++)); do
	[ "$(grep -c '"event":"progress"' "$T/int.out" || true)" -ge 2 ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
if [ "$rc" -eq 130 ] && [ -s "$T/int.bin" ] && grep -q '"event":"cancelled"' "$T/int.out"; then
	tl_ok "Ctrl-C cancels the search, saves the state and exits 130"
	steps=$("$PY" -c 'import sys; print(int.from_bytes(open(sys.argv[1], "rb").read()[48:56], "little"))' "$T/int.bin")
	if tl_run "resume after Ctrl-C" 0 "${R[@]}" nas-search "${DATA[@]}" "${TINY[@]}" \
		--epochs 100000 --resume "$T/int.bin" --max-steps $((steps + 1)) --json; then
		tail -n 1 "$TL_OUT" >"$T/r.json"
		tl_json "resume after Ctrl-C" "$T/r.json" "d['steps_done'] == $((steps + 1))" &&
			tl_ok "--resume continues the interrupted search (from step $steps)"
	fi
else
	tl_fail "Ctrl-C: exit $rc, state $(stat -c %s "$T/int.bin" 2>/dev/null || echo none)"
	sed 's/^/    /' "$T/int.err" | head -n 10
fi

# CIFAR-10 batch files: 8 records, 4 to train and 4 to validate, at 32 x 32.
if tl_run "cifar10" 0 "${R[@]}" nas-search --cifar10 "$T/data_batch_1.bin" \
	--cifar10 "$T/data_batch_2.bin" --C 4 --layers 3 --batch 2 --max-steps 1 --json; then
	tail -n 1 "$TL_OUT" >"$T/cifar.json"
	tl_json "cifar10" "$T/cifar.json" "d['event'] == 'done' and d['steps_done'] == 1" &&
		tl_ok "nas-search --cifar10 runs on CIFAR-10 batch files"
fi
# What the daemon refuses: a batch larger than a half.
if tl_run "batch too large" 3 "${R[@]}" nas-search "${DATA[@]}" --C 4 --layers 3 --classes 4 \
	--batch 8 --max-steps 1; then
	tl_expect_output "batch too large" "train.count is 4" &&
		tl_ok "a refused search exits 3 with the daemon's reason"
fi

tl_daemon_stop "$TL_DAEMON_PID" TERM
[ "$TL_STATUS" -eq 0 ] && tl_ok "rxgemmd stops cleanly after the searches" ||
	tl_fail "rxgemmd exited $TL_STATUS"

# The state is self-contained: a daemon started afresh resumes it to the same alphas.
tl_daemon_start search-again
if tl_run "resumed elsewhere" 0 "$RXGEMM" --socket "$TL_DAEMON_SOCKET" nas-search "${DATA[@]}" 	"${TINY[@]}" --max-steps 4 --resume "$T/s.bin" --out-alphas "$T/d.npy"; then
	same_alphas "resumed by a restarted daemon equals straight" "$T/a.npy" "$T/d.npy"
fi
tl_daemon_stop "$TL_DAEMON_PID" TERM
tl_finish

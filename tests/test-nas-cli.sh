#!/bin/bash
# test-nas-cli.sh: `rxgemm nas` against a real daemon: the report and --json (counts of the
# network, latency and breakdowns that add up), --logits-out written as .npy and the same
# logits again from the same seeds, weights and inputs from raw files, every usage error
# (exit 2), file error (exit 4) and refusal by the daemon of what the user gave (2 or 4)
# with its message.
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init
T=$TL_TMP

# --- usage errors (no daemon needed) -------------------------------------------------------
R0=("$RXGEMM" --socket "$T/nobody.sock")
usage() {
	local name=$1
	shift
	if tl_run "$name" 2 "${R0[@]}" nas "$@"; then
		[ -s "$TL_ERR" ] && tl_ok "nas $name exits 2" || tl_fail "nas $name: no message"
	fi
	return 0
}
usage "--dataset" --dataset mnist
usage "--C 0" --C 0
usage "--size" --size 32x
usage "--batch" --batch 0
usage "--repeat" --repeat 0
usage "--warmup" --warmup 101
usage "unknown option" --bogus
usage "argument" DARTS_V2
if tl_run "nas missing genotype file" 4 "${R0[@]}" nas --genotype-file "$T/none.txt"; then
	tl_ok "nas --genotype-file of a missing file exits 4"
fi
printf 'abc' > "$T/odd.raw"
if tl_run "nas odd weights" 4 "${R0[@]}" nas --weights "$T/odd.raw"; then
	tl_expect_output "nas odd weights" 'not whole float32' && tl_ok "nas: a raw file of 3 bytes exits 4"
fi
if tl_run "nas no daemon" 3 "${R0[@]}" nas; then
	tl_ok "nas without a daemon exits 3"
fi

# --- a daemon ------------------------------------------------------------------------------
tl_daemon_start nas --nas-plan-cache 2
S=$TL_DAEMON_SOCKET
R=("$RXGEMM" --socket "$S")
SMALL=(--C 4 --layers 3 --size 8 --batch 2 --warmup 1 --repeat 3)

if tl_run "nas report" 0 "${R[@]}" nas --genotype NASNet "${SMALL[@]}" --breakdown; then
	tl_expect_output "nas report" "sep_conv_7x7" && tl_expect_output "nas report" "median" &&
		tl_expect_output "nas report" "cell 2" && tl_ok "nas prints the report and its breakdowns"
fi
if tl_run "nas json" 0 "${R[@]}" nas "${SMALL[@]}" --breakdown --json --logits-out "$T/a.npy"; then
	cp "$TL_OUT" "$T/nas.json"
	tl_json "nas json" "$T/nas.json" \
		"d['batch'] == 2 and len(d['run_ns']) == 3 and d['params'] > 0 and d['macs'] > 0 and len(d['by_cell']) == 5 and sum(p['steps'] for p in d['by_op']) == d['steps'] and (not d['by_op'] or d['latency_mean_ns'] - len(d['by_op']) <= sum(p['ns'] for p in d['by_op']) <= d['latency_mean_ns']) and 'dil_conv_3x3' in d['genotype'] and d['profiled'] == bool(d['by_op']) and (not d['profiled'] or d['unprofiled_median_ns'] > 0)" &&
		tl_ok "nas --json: counts, three runs, breakdowns adding up to the mean"
	# A .npy of 2 x 10 float32: header says so and 80 bytes of data follow it.
	size=$(wc -c <"$T/a.npy")
	if head -c 128 "$T/a.npy" | grep -aq "'shape': (2, 10)" && [ $(((size - 80) % 64)) -eq 0 ]; then
		tl_ok "nas --logits-out writes a 2 x 10 .npy"
	else
		tl_fail "nas --logits-out: unexpected file ($size bytes)"
	fi
fi
if tl_run "nas json, no breakdown" 0 "${R[@]}" nas "${SMALL[@]}" --json; then
	cp "$TL_OUT" "$T/nas-plain.json"
	tl_json "nas json, no breakdown" "$T/nas-plain.json" \
		"d['by_op'] == [] and d['by_cell'] == [] and d['profiled'] is False and 'unprofiled_median_ns' not in d and d['latency_median_ns'] > 0" &&
		tl_ok "nas --json without --breakdown: no breakdowns, not profiled"
fi
# The same seeds give the same logits; another weight seed does not.
if tl_run "nas again" 0 "${R[@]}" nas "${SMALL[@]}" --logits-out "$T/b.npy"; then
	cmp -s "$T/a.npy" "$T/b.npy" && tl_ok "nas: the same seeds give the same logits" ||
		tl_fail "nas: the same seeds gave other logits"
fi
if tl_run "nas seed" 0 "${R[@]}" nas "${SMALL[@]}" --weight-seed 2 --logits-out "$T/c.npy"; then
	cmp -s "$T/a.npy" "$T/c.npy" && tl_fail "nas: --weight-seed changed nothing" ||
		tl_ok "nas: another --weight-seed gives other logits"
fi
# Weights of the wrong length: the daemon says the length it needs.
head -c 400 /dev/zero > "$T/w.raw"
if tl_run "nas short weights" 4 "${R[@]}" nas "${SMALL[@]}" --weights "$T/w.raw"; then
	tl_expect_output "nas short weights" '--weights: .*w\.raw: weights has 100 floats; .* has [0-9]+' &&
		tl_ok "nas: a blob of the wrong length is a file error (4) with the length needed"
fi
# A genotype name the daemon does not know is a usage error, as is a shape it refuses.
if tl_run "nas unknown genotype" 2 "${R[@]}" nas "${SMALL[@]}" --genotype FOO; then
	tl_expect_output "nas unknown genotype" "genotype 'FOO' is not a known name" &&
		tl_ok "nas --genotype FOO exits 2 with the known names"
fi
if tl_run "nas logits in a missing dir" 4 "${R[@]}" nas "${SMALL[@]}" --logits-out "$T/nodir/l.npy"; then
	tl_expect_output "nas logits in a missing dir" 'logits-out: cannot write' &&
		tl_ok "nas --logits-out in a missing directory exits 4 before the run"
fi
# Input from a raw file of the right and the wrong size.
head -c $((2 * 3 * 8 * 8 * 4)) /dev/zero > "$T/x.raw"
if tl_run "nas raw input" 0 "${R[@]}" nas "${SMALL[@]}" --input "$T/x.raw"; then
	tl_ok "nas --input of raw floats"
fi
head -c 12 /dev/zero > "$T/x3.raw"
if tl_run "nas input size" 4 "${R[@]}" nas "${SMALL[@]}" --input "$T/x3.raw"; then
	tl_expect_output "nas input size" '2 x 3 x 8 x 8' && tl_ok "nas: an input of the wrong size exits 4"
fi
printf "%s" "Genotype(normal=[('sep_conv_3x3', 0), ('max_pool_3x3', 7)], normal_concat=[2], reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])" > "$T/g.txt"
if tl_run "nas bad genotype" 4 "${R[@]}" nas "${SMALL[@]}" --genotype-file "$T/g.txt"; then
	tl_expect_output "nas bad genotype" 'genotype-file: .*g\.txt: .*byte 55: .*takes input 7' &&
		tl_ok "nas: a genotype file with a bad input index exits 4 and names the byte"
fi
sed -i 's/7)/1)/' "$T/g.txt"
if tl_run "nas genotype file" 0 "${R[@]}" nas "${SMALL[@]}" --genotype-file "$T/g.txt" --json; then
	tl_expect_output "nas genotype file" '"genotype":"Genotype\(normal=\[\('"'"'sep_conv_3x3'"'"', 0\), \('"'"'max_pool_3x3'"'"', 1\)\]' &&
		tl_ok "nas --genotype-file evaluates the text"
fi

# The plan cache (2 plans here): a network planned once is handed out again, the least
# recently used goes for room. Networks no earlier test used (C 2, 6, 10).
plans() { # NAME: the status's nas_plan_cache as "entries hits misses evictions" into $T/NAME
	"${R[@]}" status --json >"$T/st.json" &&
		python3 -c 'import json, sys; c = json.load(open(sys.argv[1]))["nas_plan_cache"]; print(c["entries"], c["hits"], c["misses"], c["evictions"], c["capacity"])' \
			"$T/st.json" >"$T/$1"
}
NET=(--layers 3 --size 8 --warmup 0 --repeat 1)
if plans p0 && "${R[@]}" nas --C 2 "${NET[@]}" >/dev/null && plans p1 &&
	"${R[@]}" nas --C 2 "${NET[@]}" >/dev/null && plans p2 &&
	"${R[@]}" nas --C 6 "${NET[@]}" >/dev/null && "${R[@]}" nas --C 10 "${NET[@]}" >/dev/null &&
	plans p3 && "${R[@]}" nas --C 2 "${NET[@]}" >/dev/null && plans p4; then
	read -r e0 h0 m0 v0 cap <"$T/p0"
	read -r e1 h1 m1 v1 _ <"$T/p1"
	read -r e2 h2 m2 v2 _ <"$T/p2"
	read -r e3 h3 m3 v3 _ <"$T/p3"
	read -r e4 h4 m4 v4 _ <"$T/p4"
	# A job plans twice (the whole batch, then its piece on the device): a new network is
	# one miss and one hit, the same again two hits; two more networks evict it.
	if [ "$cap" -eq 2 ] && [ $((m1 - m0)) -eq 1 ] && [ $((h1 - h0)) -eq 1 ] &&
		[ $((m2 - m1)) -eq 0 ] && [ $((h2 - h1)) -eq 2 ] && [ $((m3 - m2)) -eq 2 ] &&
		[ "$e3" -eq 2 ] && [ $((v3 - v2)) -ge 1 ] && [ $((m4 - m3)) -eq 1 ]; then
		tl_ok "nas plan cache: built once, then hits; the least recently used evicted"
	else
		tl_fail "nas plan cache: $(cat "$T/p0" "$T/p1" "$T/p2" "$T/p3" "$T/p4" | tr '\n' '/')"
	fi
else
	tl_fail "nas plan cache: a job or status failed"
fi
if tl_run "status nas plans" 0 "${R[@]}" status; then
	tl_expect_output "status nas plans" 'nas plans: 2 of 2 kept .*hits, .*misses, .*evicted' &&
		tl_ok "status shows the nas plan cache"
fi

# examples/rank-genotypes: the four named ones and the file's, ranked.
RANK="${TESTS_BUILDDIR:-$(dirname "$0")}/../examples/rank-genotypes"
if [ -x "$RANK" ]; then
	if tl_run "rank-genotypes" 0 "$RANK" --socket "$S" --C 4 --layers 3 --size 8 --repeat 2 "$T/g.txt"; then
		[ "$(grep -cE '^[1-5] ' "$TL_OUT")" -eq 5 ] && tl_expect_output "rank-genotypes" 'AmoebaNet' &&
			tl_ok "rank-genotypes ranks five genotypes" || { tl_fail "rank-genotypes output"; tl_show_output; }
	fi
	# Random genotypes of the search space, seeded: ranked, with what each cost in all.
	if tl_run "rank-genotypes random" 0 "$RANK" --socket "$S" --C 4 --layers 3 --size 8 --repeat 2 \
		--random 3 --seed 7; then
		[ "$(grep -cE '^[1-3] +random [0-2] ' "$TL_OUT")" -eq 3 ] &&
			tl_expect_output "rank-genotypes random" 'per genotype: [0-9.]+ ms in all, [0-9.]+ ms of it timed runs; [0-9.]+% not in the timed runs' &&
			tl_ok "rank-genotypes --random ranks three drawn genotypes and says what was not timed" ||
			{ tl_fail "rank-genotypes --random output"; tl_show_output; }
	fi
fi

tl_daemon_stop "$TL_DAEMON_PID" TERM 60
[ "$TL_STATUS" -eq 0 ] && tl_ok "daemon stops cleanly" || tl_fail "daemon exited $TL_STATUS"
tl_finish

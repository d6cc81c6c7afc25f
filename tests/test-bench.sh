#!/bin/bash
# test-bench.sh: rxgemm-bench, the in-process kernel benchmark: a size sweep in CSV and
# JSON with CLBlast beside it when libclblast is there (and both giving the same C),
# chosen configurations, a tiny tuning search, the plot, and bad arguments.
set -euo pipefail

# shellcheck source=tests/lib.sh
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
tl_init
T=$TL_TMP
BENCH=${RXGEMM_BENCH:-$(dirname "$RXGEMMD")/rxgemm-bench}
dev=()
[ -n "${RXGEMM_TEST_DEVICE:-}" ] && dev=(--device "$RXGEMM_TEST_DEVICE")
B=("$BENCH" ${dev[@]+"${dev[@]}"} --repeat 1 --warmup 1)

if ! tl_run "csv" 0 "${B[@]}" --sizes 32,48 --shapes 40x8x24 --csv; then
	if tl_log_says_no_device "$TL_ERR"; then
		echo "SKIP: no OpenCL device"
		exit 77
	fi
	tl_finish
fi
cp "$TL_OUT" "$T/out.csv"
[ "$(wc -l <"$T/out.csv")" -eq 4 ] && head -n 1 "$T/out.csv" | grep -q '^m,n,k,trans_a,trans_b,kernel,ours_gflops' &&
	tl_ok "CSV: a header and a row per size" || { tl_fail "CSV shape"; cat "$T/out.csv"; }
awk -F, 'NR > 1 && !($7 > 0) { bad = 1 } END { exit bad }' "$T/out.csv" &&
	tl_ok "every size has a rate" || tl_fail "a size without a rate"
if ldconfig -p | grep -q 'libclblast.so.1'; then
	awk -F, 'NR > 1 && ($8 <= 0 || $11 != "ok") { bad = 1 } END { exit bad }' "$T/out.csv" &&
		tl_ok "CLBlast ran beside us and gave the same C" ||
		{ tl_fail "CLBlast missing or disagreeing"; cat "$T/out.csv"; }
else
	echo "note: libclblast not installed: the CLBlast column is not checked"
fi
if tl_run "json" 0 "${B[@]}" --sizes 32 --transa --transb --json; then
	cp "$TL_OUT" "$T/out.json"
	tl_json "json" "$T/out.json" "d['results'][0]['m'] == 32 and d['results'][0]['trans_a'] and d['results'][0]['kernel'].endswith('-TT')" &&
		tl_ok "JSON output with the transposes"
fi
# Without CLBlast and without a peak, the columns not measured say so ("-", empty, null)
# instead of 0.0.
if tl_run "no clblast table" 0 "${B[@]}" --sizes 32 --no-clblast; then
	row=$(grep -E '^ +32 +32 +32 ' "$TL_OUT" || true)
	# The last four columns: CLBlast, ratio, % peak, check.
	if [ -n "$row" ] && echo "$row" | grep -Eq ' - +- +- +- *$'; then
		tl_ok "--no-clblast without --peak-gflops: CLBlast, ratio, % peak and check show -"
	else
		tl_fail "--no-clblast table row: '$row'"
		tl_show_output
	fi
fi
if tl_run "peak table" 0 "${B[@]}" --sizes 32 --no-clblast --peak-gflops 1000000; then
	grep -Eq '^ +32 +32 +32 .* - +- +[0-9]+\.[0-9] +- *$' "$TL_OUT" &&
		tl_ok "--peak-gflops fills the % peak column" || { tl_fail "% peak column"; tl_show_output; }
fi
if tl_run "no clblast json" 0 "${B[@]}" --sizes 32 --no-clblast --json; then
	cp "$TL_OUT" "$T/noclb.json"
	tl_json "no clblast json" "$T/noclb.json" \
		"(lambda r: [r['clblast_gflops'], r['ratio'], r['pct_peak'], r['check'], d['peak_gflops']] == [None] * 5 and r['ours_gflops'] > 0)(d['results'][0]) and isinstance(d['device'], str)" &&
		tl_ok "--no-clblast --json: null where nothing was measured"
fi
if tl_run "no clblast csv" 0 "${B[@]}" --sizes 32 --no-clblast --csv; then
	tail -n 1 "$TL_OUT" | grep -Eq '^32,32,32,0,0,[^,]+,[0-9.]+,,,,-$' &&
		tl_ok "--no-clblast --csv: empty fields where nothing was measured" ||
		{ tl_fail "--no-clblast --csv row"; tl_show_output; }
fi
if tl_run "bench --version" 0 "$BENCH" --version; then
	tl_expect_output "bench --version" '^rxgemm-bench [0-9]+\.[0-9]+' && tl_ok "rxgemm-bench --version"
fi
if tl_run "bench --bogus" 2 "$BENCH" --bogus; then
	[ "$(cat "$TL_ERR")" = "rxgemm-bench: unknown option '--bogus'
Try 'rxgemm-bench --help'." ] && tl_ok "rxgemm-bench --bogus: one line and 'Try --help'" ||
		{ tl_fail "rxgemm-bench --bogus message"; tl_show_output; }
fi
# A plot suffix we cannot draw is refused before the run, not written as SVG.
if tl_run "plot suffix" 2 "${B[@]}" --sizes 32 --plot "$T/p.jpg"; then
	[ ! -e "$T/p.jpg" ] && tl_expect_output "plot suffix" '\.svg, \.png or \.pdf' &&
		tl_ok "--plot with an unknown suffix is refused and writes nothing"
fi
cfg=reg:32x32x16:8x8:v4x4:p0x0:m0
if tl_run "config" 0 "${B[@]}" --sizes 40 --config "$cfg" --csv; then
	grep -q ",$cfg-NN," "$TL_OUT" && tl_ok "--config times the configuration given" ||
		{ tl_fail "--config did not use $cfg"; tl_show_output; }
fi
# Several configurations (as --tune's grid): each line says how far the search is, "n of
# N", and an ETA, the last one 0:00.
cfg2=reg:32x32x8:4x4:v4x4:p0x0:m0
if tl_run "configs progress" 0 "${B[@]}" --sizes 32 --config "$cfg" --config "$cfg2" --no-clblast; then
	grep -Eq '^ +1 of 2, ETA [0-9]+:[0-5][0-9] +reg:' "$TL_ERR" &&
		grep -Eq '^ +2 of 2, ETA 0:00 +reg:' "$TL_ERR" &&
		tl_ok "a search over configurations shows n of N and an ETA" ||
		{ tl_fail "no 'n of N, ETA' lines"; tl_show_output; }
fi
tl_run "bad config" 2 "${B[@]}" --config reg:7x7x7:1x1:v4x4:p0x0:m0 && tl_ok "a bad --config is refused"
tl_run "bad sizes" 2 "${B[@]}" --sizes 0 && tl_ok "a bad --sizes is refused"
if command -v gnuplot >/dev/null 2>&1; then
	if tl_run "plot" 0 "${B[@]}" --sizes 32,64 --peak-gflops 100 --plot "$T/p.svg"; then
		grep -q '<svg' "$T/p.svg" && grep -q 'rxgemmd' "$T/p.svg" && tl_ok "--plot draws an SVG" ||
			tl_fail "--plot wrote no SVG"
	fi
	# PDF through gnuplot's pdfcairo terminal (Debian's gnuplot-nox has it): a real PDF.
	if gnuplot -e 'set terminal' 2>&1 | grep -q pdfcairo; then
		if tl_run "plot pdf" 0 "${B[@]}" --sizes 32,64 --plot "$T/p.pdf"; then
			head -c 5 "$T/p.pdf" | grep -q '^%PDF-' && tail -c 1024 "$T/p.pdf" | grep -aq '%%EOF' &&
				tl_ok "--plot x.pdf writes a PDF" || tl_fail "--plot x.pdf wrote no PDF"
		fi
	else
		echo "note: this gnuplot has no pdfcairo terminal: PDF not checked"
	fi
	tl_run "plot fails" 1 "${B[@]}" --sizes 32 --plot "$T/no/such/dir/p.svg" &&
		tl_ok "a plot that cannot be written is an error"
else
	echo "note: gnuplot not installed: --plot not checked"
fi
tl_finish

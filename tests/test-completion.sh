#!/bin/bash
# test-completion.sh: the bash completion of rxgemm, rxgemmd and rxgemm-bench: each file is
# sourced beside bash-completion's own library and its function run with COMP_WORDS and
# COMP_CWORD set as bash sets them, and COMPREPLY compared with what the options allow.
# Skipped (77) without the bash-completion package.
set -euo pipefail

SRC=${TESTS_SRCDIR:-$(dirname "$0")}/..
LIB=/usr/share/bash-completion/bash_completion
if [ ! -f "$LIB" ]; then
	echo "SKIP: $LIB is missing (Debian: bash-completion)"
	exit 77
fi
passed=0 failed=0

# complete FILE FUNCTION WORD...: COMPREPLY, sorted, for completing the last WORD.
complete() {
	bash -c '
		. "$1"
		. "$2"
		func=$3
		shift 3
		COMP_WORDS=("$@")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMP_LINE="$*"
		COMP_POINT=${#COMP_LINE}
		COMPREPLY=()
		"$func" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
		printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " " | sed "s/ $//"' \
		_ "$LIB" "$SRC/packaging/bash-completion/$1" "$2" "${@:3}"
}

# expect WANT FILE FUNCTION WORD...
expect() {
	local want=$1 got
	shift
	got=$(complete "$@")
	if [ "$got" = "$want" ]; then
		passed=$((passed + 1))
		echo "ok: ${*:3} -> $want"
	else
		failed=$((failed + 1))
		echo "FAIL: ${*:3}: got '$got', want '$want'"
	fi
}

# rxgemm: --priority offers its four levels (the numeric case used to catch it first).
expect "0 1 2 3" rxgemm _rxgemm rxgemm gemm --priority ""
expect "2" rxgemm _rxgemm rxgemm gemm -m 8 --priority 2
expect "" rxgemm _rxgemm rxgemm gemm --deadline-ms ""
expect "--resident" rxgemm _rxgemm rxgemm gemm --res
expect "" rxgemm _rxgemm rxgemm gemm --resident ""
expect "bench devices gemm nas nas-search status top" rxgemm _rxgemm rxgemm ""
expect "--train-images --train-labels" rxgemm _rxgemm rxgemm nas-search --tra
expect "--checkpoint-every --cifar10 --classes" rxgemm _rxgemm rxgemm nas-search --c
expect "" rxgemm _rxgemm rxgemm nas-search --max-steps ""
expect "--prometheus" rxgemm _rxgemm rxgemm status --pr
expect "--batch" rxgemm _rxgemm rxgemm top --ba
expect "DARTS_V1 DARTS_V2" rxgemm _rxgemm rxgemm nas --genotype DA
# rxgemmd: option names and the values of the options with a fixed set.
expect "--list-devices --log-level" rxgemmd _rxgemmd rxgemmd --l
expect "debug" rxgemmd _rxgemmd rxgemmd --log-level d
expect "always" rxgemmd _rxgemmd rxgemmd --auto-tune al
expect "" rxgemmd _rxgemmd rxgemmd --tune-budget ""
expect "--tune --tune-budget" rxgemmd _rxgemmd rxgemmd --tun
expect "--version" rxgemmd _rxgemmd rxgemmd --vers
# rxgemm-bench.
expect "--no-clblast" rxgemm-bench _rxgemm_bench rxgemm-bench --no
expect "--peak-gflops --plot" rxgemm-bench _rxgemm_bench rxgemm-bench --p
expect "" rxgemm-bench _rxgemm_bench rxgemm-bench --sizes ""
expect "--version" rxgemm-bench _rxgemm_bench rxgemm-bench --vers

# Every long option that --help lists is one the completion offers (when built).
for prog in rxgemmd rxgemm-bench; do
	bin=${RXGEMMD:+$(dirname "$RXGEMMD")/$prog}
	[ -n "$bin" ] && [ -x "$bin" ] || continue
	func=_${prog//-/_}
	offered=$(complete "$prog" "$func" "$prog" --)
	for opt in $("$bin" --help | grep -oE '^ +(-[a-zA-Z], )?--[a-z][a-z0-9-]*' | grep -oE -- '--[a-z][a-z0-9-]*'); do
		if [[ " $offered " == *" $opt "* ]]; then
			passed=$((passed + 1))
		else
			failed=$((failed + 1))
			echo "FAIL: $prog --help lists $opt; the completion does not offer it"
		fi
	done
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

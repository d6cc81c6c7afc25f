#!/usr/bin/env bash
# tests/soak.sh: many clients of mixed work against one daemon for a while, watching the
# daemon's memory and descriptors.
#
#   SOAK_SECONDS=60     how long the clients keep submitting (CI runs 20)
#   SOAK_CLIENTS=16     how many run at once
#   SOAK_RSS_SLACK_MB=48  see "memory" below
#   SOAK_FD_SLACK=4     see "descriptors" below
#   RXGEMMD, RXGEMM     the programs (default: the build in this source tree)
#
# Each client loops over GEMMs (inline and through shared memory, row- and column-major,
# transposed, with and without beta, shapes from 1 to 333) checked against the CLI's CPU
# reference (--check), and small NAS networks (DARTS_V2, C 4, 2 cells, 8x8, batch 2) whose
# logits must equal those of a first run with the same seeds. The daemon's RSS
# (/proc/PID/status) and open descriptors (/proc/PID/fd) are sampled every second into
# samples.txt. It fails when:
#   - any job fails (a wrong result, an error, a CLI that does not exit in time);
#   - memory: after a warm-up (a quarter of the run, at least 5 s), the peak RSS of the
#     second half of the rest exceeds the peak of its first half by more than
#     SOAK_RSS_SLACK_MB: a daemon that holds on to something per job keeps climbing, one
#     that does not levels off once its pools and caches are filled;
#   - descriptors: once every client has gone, the daemon holds more than it did before
#     the first one came, plus SOAK_FD_SLACK;
#   - the daemon does not report every job done without failure, or does not exit 0 on
#     SIGTERM.
# A summary line gives jobs, RSS at start, after warm-up, peak and end, and descriptors.
set -euo pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
RXGEMMD=${RXGEMMD:-$srcdir/daemon/rxgemmd}
RXGEMM=${RXGEMM:-$srcdir/client/rxgemm}
export RXGEMMD RXGEMM
seconds=${SOAK_SECONDS:-60}
clients=${SOAK_CLIENTS:-16}
rss_slack_kb=$((${SOAK_RSS_SLACK_MB:-48} * 1024))
fd_slack=${SOAK_FD_SLACK:-4}
# shellcheck source=tests/lib.sh
. "$srcdir/tests/lib.sh"
tl_init
if [ -n "${SOAK_KEEP:-}" ]; then
	echo "soak: files in $TL_TMP"
	trap - EXIT
fi

# The kernels are built once into the test's own cache, then the daemon serves from it.
tl_daemon_start soak --cache-dir "$TL_TMP/kcache" --max-queue 4096
pid=$TL_DAEMON_PID
sock=$TL_DAEMON_SOCKET
cli=("$RXGEMM" --socket "$sock")
nas_args=(nas --genotype DARTS_V2 --C 4 --layers 2 --size 8x8 --batch 2 --warmup 0 --repeat 1
	--weight-seed 7 --input-seed 9)

# The NAS reference: one run before the others, alone.
if ! timeout 120 "${cli[@]}" "${nas_args[@]}" --logits-out "$TL_TMP/nas-ref.npy" \
	>"$TL_TMP/nas-ref.out" 2>&1; then
	cat "$TL_TMP/nas-ref.out"
	tl_fail "the reference NAS run failed"
	tl_finish
fi

rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$1/status" 2>/dev/null; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

fds_start=$(fd_count "$pid")
rss_start=$(rss_kb "$pid")

# One client: jobs until the end time; a line per job in client-N.jobs ("ok ..." or
# "FAIL ..."), the failing job's output in client-N.fail.
client() {
	local id=$1 end=$2 n=0 shapes=(1 7 17 64 100 129 256 333) m k nn args rc out
	out=$TL_TMP/client-$id
	while [ "$(date +%s)" -lt "$end" ]; do
		n=$((n + 1))
		m=${shapes[$(((id * 7 + n * 3) % 8))]}
		nn=${shapes[$(((id * 5 + n) % 8))]}
		k=${shapes[$(((id + n * 5) % 8))]}
		# With beta, C's old values can cancel the product almost exactly, and the CLI's
		# --check tolerance, scaled by the largest |C| alone (refgemm_tolerance), is then
		# tighter than float rounding: a 1 x 1 result fails about once in 3000 jobs. A
		# result of 17 or more elements has a large enough element.
		if [ $(((id + n) % 5)) -eq 2 ] || [ $(((id + n) % 5)) -eq 3 ]; then
			[ $((m * nn)) -ge 17 ] || m=17
		fi
		case $(((id + n) % 5)) in
		0) args=(gemm -m "$m" -n "$nn" -k "$k" --shm never --check --seed "$n") ;;
		1) args=(gemm -m "$m" -n "$nn" -k "$k" --shm always --transa --check --seed "$n") ;;
		2) args=(gemm -m "$m" -n "$nn" -k "$k" --shm always --col-major --transb --beta 0.5
			--alpha 2 --check --seed "$n") ;;
		3) args=(gemm -m "$m" -n "$nn" -k "$k" --shm never --beta 1 --col-major --check
			--repeat 2 --priority $((n % 4)) --seed "$n") ;;
		4) args=("${nas_args[@]}" --logits-out "$out.npy") ;;
		esac
		rc=0
		timeout 300 "${cli[@]}" "${args[@]}" >"$out.out" 2>&1 || rc=$?
		if [ "$rc" -eq 0 ] && [ "${args[0]}" = nas ] &&
			! cmp -s "$out.npy" "$TL_TMP/nas-ref.npy"; then
			echo "logits differ from the reference run" >>"$out.out"
			rc=99
		fi
		if [ "$rc" -eq 0 ]; then
			echo "ok ${args[*]}" >>"$out.jobs"
		else
			echo "FAIL (exit $rc) ${args[*]}" >>"$out.jobs"
			{
				echo "--- client $id, job $n, exit $rc: ${args[*]}"
				cat "$out.out"
			} >>"$out.fail"
		fi
	done
}

start=$(date +%s)
end=$((start + seconds))
client_pids=()
for ((c = 0; c < clients; c++)); do
	client "$c" "$end" &
	client_pids+=($!)
done
# One sample a second while the clients run: seconds since start, RSS in KiB, descriptors.
while :; do
	alive=0
	for p in "${client_pids[@]}"; do
		kill -0 "$p" 2>/dev/null && alive=1
	done
	[ "$alive" -eq 1 ] || break
	echo "$(($(date +%s) - start)) $(rss_kb "$pid") $(fd_count "$pid")" >>"$TL_TMP/samples.txt"
	sleep 1
done
for p in "${client_pids[@]}"; do
	wait "$p" || true
done

# Every connection is closed by now from the clients' side; the daemon notices at once,
# but give it a moment on a busy machine.
for ((i = 0; i < 50; i++)); do
	fds_end=$(fd_count "$pid")
	[ "$fds_end" -le $((fds_start + fd_slack)) ] && break
	sleep 0.2
done
rss_end=$(rss_kb "$pid")

jobs_ok=$(cat "$TL_TMP"/client-*.jobs 2>/dev/null | grep -c '^ok' || true)
jobs_bad=$(cat "$TL_TMP"/client-*.jobs 2>/dev/null | grep -c '^FAIL' || true)
nas_ok=$(cat "$TL_TMP"/client-*.jobs 2>/dev/null | grep -c '^ok nas' || true)
if [ "$jobs_bad" -eq 0 ] && [ "$jobs_ok" -gt 0 ]; then
	tl_ok "$jobs_ok jobs by $clients clients in ${seconds}s ($nas_ok NAS), all correct"
else
	tl_fail "$jobs_bad of $((jobs_ok + jobs_bad)) jobs failed"
	cat "$TL_TMP"/client-*.fail 2>/dev/null | head -n 60
fi

# Memory: warm-up, then the two halves of the rest.
warm=$((seconds / 4 > 5 ? seconds / 4 : 5))
read -r rss_warm peak_a peak_b peak < <(awk -v w="$warm" -v d="$seconds" '
	{ t = $1; r = $2; if (r > peak) peak = r }
	t <= w { warm = r }
	t > w && t <= w + (d - w) / 2 { if (r > a) a = r }
	t > w + (d - w) / 2 { if (r > b) b = r }
	END { print warm + 0, a + 0, b + 0, peak + 0 }' "$TL_TMP/samples.txt")
if [ "$peak_a" -eq 0 ] || [ "$peak_b" -eq 0 ]; then
	tl_fail "too few samples for the memory check (a run of ${seconds}s; need at least 10)"
elif [ $((peak_b - peak_a)) -gt "$rss_slack_kb" ]; then
	tl_fail "RSS keeps growing: peak $((peak_a / 1024)) MiB after warm-up, then" \
		"$((peak_b / 1024)) MiB (more than ${SOAK_RSS_SLACK_MB:-48} MiB more)"
else
	tl_ok "RSS levels off: peak $((peak_a / 1024)) MiB after warm-up," \
		"$((peak_b / 1024)) MiB later"
fi
if [ "$fds_end" -le $((fds_start + fd_slack)) ]; then
	tl_ok "descriptors: $fds_start before the clients, $fds_end after"
else
	tl_fail "descriptors leak: $fds_start before the clients, $fds_end after"
	ls -l "/proc/$pid/fd" | tail -n 20
fi

# The daemon's own account: every job it ran succeeded.
if tl_run "status" 0 "${cli[@]}" status --json &&
	tl_json "status after the soak" "$TL_OUT" 'd["jobs_failed"] == 0 and d["jobs_ok"] > 0'; then
	tl_ok "the daemon counts no failed job"
fi
tl_daemon_stop "$pid" TERM 60
if [ "$TL_STATUS" -eq 0 ]; then
	tl_ok "SIGTERM: exit 0"
else
	tl_fail "SIGTERM: exit $TL_STATUS"
fi
echo "soak: clients $clients, ${seconds}s, jobs $jobs_ok ok $jobs_bad failed;" \
	"RSS MiB start $((rss_start / 1024)) warm $((rss_warm / 1024)) peak $((peak / 1024))" \
	"end $((rss_end / 1024)); fds $fds_start -> $fds_end"
tl_finish

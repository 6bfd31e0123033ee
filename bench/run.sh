#!/bin/sh
# Runs the performance workloads of BENCHMARKS.md with vmemcache-bench and
# regenerates its "Throughput and latency" section and bench/throughput.svg.
#
#   w1    get-or-put, values 8 B - 8 KiB log-uniform, key_space 2.4 (~37 % hits)
#   w2    get-or-put, values 8 B - 32 KiB log-uniform, key_space 1.5
#         (~63 % hits)
#   put   put-only, 256 - 1024 B uniform, into a full cache (every put evicts)
#   get   get-only, 256 - 1024 B uniform, from a pre-filled set
#
# Each at every thread count of THREADS, REPS times, the repetitions
# interleaved (rep 1 of every workload, then rep 2, ...) so that a slow
# minute of a shared machine does not fall on one configuration; the report
# gives medians. LIB=/path/to/dir runs the same driver against another
# libvmemcache.so.0 (LD_LIBRARY_PATH). Defaults: POOL=1G DIR=/dev/shm REPS=3
# THREADS="1 2" OPS=2000000 (per run, all threads together).
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/bench/workloads.sh"
OUT=${OUT:-$SRC/bench/results}
mkdir -p "$OUT"

echo "== building the library and the driver (Release) in $BUILD"
build_driver
if [ -n "${LIB:-}" ]; then
	export LD_LIBRARY_PATH="$LIB"
fi

res="$OUT/perf.txt"
{
	echo "# vmemcache-bench, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -m), $(nproc) cores"
	echo "# $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')"
} >"$res"
rep=1
while [ "$rep" -le "$REPS" ]; do
	for w in $WORKLOADS; do
		for t in $THREADS; do
			printf '== rep %s/%s %s n_threads=%s\n' "$rep" "$REPS" "$w" "$t"
			# shellcheck disable=SC2046
			line=$("$BUILD/bench/vmemcache-bench" $(params "$w") \
				n_threads="$t" ops_count="$OPS" cache_size="$POOL" \
				dir="$DIR" progress=0 | grep '^RESULT')
			echo "$line" | sed "s/^RESULT /RESULT workload=$w rep=$rep /" | tee -a "$res"
		done
	done
	rep=$((rep + 1))
done

python3 "$SRC/bench/report.py" "$res" "$SRC/bench/throughput.svg" "$SRC/BENCHMARKS.md"
echo "== BENCHMARKS.md and bench/throughput.svg updated from $res"

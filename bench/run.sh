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
BUILD=${BUILD:-$SRC/build/bench-run}
OUT=${OUT:-$SRC/bench/results}
DIR=${DIR:-/dev/shm}
POOL=${POOL:-1G}
REPS=${REPS:-3}
THREADS=${THREADS:-1 2}
OPS=${OPS:-2000000}
WORKLOADS=${WORKLOADS:-w1 w2 put get}
mkdir -p "$BUILD" "$OUT"

echo "== building the library and the driver (Release) in $BUILD"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTS=OFF \
	-DBUILD_EXAMPLES=OFF >/dev/null
cmake --build "$BUILD" -j "$(nproc)" >/dev/null
if [ -n "${LIB:-}" ]; then
	export LD_LIBRARY_PATH="$LIB"
fi

params() {
	case $1 in
	w1) echo "min_size=8 max_size=8192 size_distrib=log key_space=2.4" ;;
	w2) echo "min_size=8 max_size=32768 size_distrib=log key_space=1.5" ;;
	put) echo "mode=put-only min_size=256 max_size=1024 size_distrib=uniform" ;;
	get) echo "mode=get-only min_size=256 max_size=1024 size_distrib=uniform" ;;
	*) echo "run.sh: unknown workload $1" >&2; exit 1 ;;
	esac
}

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

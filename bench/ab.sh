#!/bin/sh
# Before/after: runs the workloads of bench/run.sh against two builds of
# libvmemcache.so.0 with one driver, alternating between them run by run, so
# that both see the same minutes of a shared machine, and prints the median
# throughput and hit p99 of each.
#
#   bench/ab.sh DIR_A DIR_B     (each a directory holding libvmemcache.so.0)
#
# Environment as for bench/run.sh: THREADS="1 2" REPS=3 OPS=2000000 POOL=1G
# DIR=/dev/shm WORKLOADS="w1 w2 put get". The driver is built (Release) in
# BUILD=build/bench-run.
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 DIR_A DIR_B" >&2
	exit 2
fi
A=$(cd "$1" && pwd)
B=$(cd "$2" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/bench/workloads.sh"
build_driver

out=$(mktemp)
trap 'rm -f "$out"' EXIT
rep=1
while [ "$rep" -le "$REPS" ]; do
	for w in $WORKLOADS; do
		for t in $THREADS; do
			for lib in A B; do
				if [ $lib = A ]; then dir=$A; else dir=$B; fi
				# shellcheck disable=SC2046
				line=$(LD_LIBRARY_PATH=$dir "$BUILD/bench/vmemcache-bench" \
					$(params "$w") n_threads="$t" ops_count="$OPS" \
					cache_size="$POOL" dir="$DIR" progress=0 | grep '^RESULT')
				ops=$(echo "$line" | sed 's/.*ops_per_s=\([0-9]*\).*/\1/')
				p99=$(echo "$line" | sed 's/.*hit_p99_us=\([0-9.a-z]*\).*/\1/')
				echo "$w $t $lib $ops $p99" | tee -a "$out" >&2
			done
		done
	done
	rep=$((rep + 1))
done

python3 - "$out" "$A" "$B" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print("A = %s\nB = %s" % (sys.argv[2], sys.argv[3]))
print("%-5s %7s  %-24s %-24s %6s" % ("work", "threads", "A Mops/s (hit p99 us)",
                                     "B Mops/s (hit p99 us)", "B/A"))
keys = []
for w, t, _, _, _ in rows:
    if (w, t) not in keys:
        keys.append((w, t))
for w, t in keys:
    med = {}
    for lib in "AB":
        ops = [int(r[3]) for r in rows if (r[0], r[1], r[2]) == (w, t, lib)]
        p99 = [r[4] for r in rows if (r[0], r[1], r[2]) == (w, t, lib)]
        med[lib] = (statistics.median(ops) / 1e6, statistics.median(
            float(x) for x in p99) if p99[0] != "nan" else float("nan"))
    cell = lambda m: "%.3f (%.2f)" % m
    print("%-5s %7s  %-24s %-24s %5.2fx" % (w, t, cell(med["A"]), cell(med["B"]),
                                            med["B"][0] / med["A"][0]))
PY

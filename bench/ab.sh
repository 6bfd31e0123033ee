#!/bin/sh
# Before/after: runs the workloads of bench/run.sh against two or more
# builds of libvmemcache.so.0 with one driver, alternating between them run
# by run, so that all see the same minutes of a shared machine, and prints
# the median throughput and hit p99 of each, with each library's ratio to
# the first.
#
#   bench/ab.sh DIR_A DIR_B [DIR_C ...]   (each holding libvmemcache.so.0)
#
# Environment as for bench/run.sh: THREADS="1 2" REPS=3 OPS=2000000 POOL=1G
# DIR=/dev/shm WORKLOADS="w1 w2 put get". The driver is built (Release) in
# BUILD=build/bench-run.
set -eu

if [ $# -lt 2 ]; then
	echo "usage: $0 DIR_A DIR_B [DIR_C ...]" >&2
	exit 2
fi
dirs=""
for d in "$@"; do
	dirs="$dirs $(cd "$d" && pwd)"
done
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/bench/workloads.sh"
build_driver

out=$(mktemp)
trap 'rm -f "$out"' EXIT
rep=1
while [ "$rep" -le "$REPS" ]; do
	for w in $WORKLOADS; do
		for t in $THREADS; do
			lib=0
			for dir in $dirs; do
				# shellcheck disable=SC2046
				line=$(LD_LIBRARY_PATH=$dir "$BUILD/bench/vmemcache-bench" \
					$(params "$w") n_threads="$t" ops_count="$OPS" \
					cache_size="$POOL" dir="$DIR" progress=0 | grep '^RESULT')
				ops=$(echo "$line" | sed 's/.*ops_per_s=\([0-9]*\).*/\1/')
				p99=$(echo "$line" | sed 's/.*hit_p99_us=\([0-9.a-z]*\).*/\1/')
				echo "$w $t $lib $ops $p99" | tee -a "$out" >&2
				lib=$((lib + 1))
			done
		done
	done
	rep=$((rep + 1))
done

# shellcheck disable=SC2086
python3 - "$out" $dirs <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
libs = sys.argv[2:]
names = [chr(ord("A") + i) for i in range(len(libs))]
for name, lib in zip(names, libs):
    print("%s = %s" % (name, lib))
head = "%-5s %7s" % ("work", "threads")
for i, name in enumerate(names):
    head += "  %-22s" % ("%s Mops/s (hit p99 us)" % name)
    if i:
        head += " %6s" % ("%s/A" % name)
print(head)
keys = []
for w, t, _, _, _ in rows:
    if (w, t) not in keys:
        keys.append((w, t))
for w, t in keys:
    line = "%-5s %7s" % (w, t)
    first = None
    for i in range(len(libs)):
        mine = [r for r in rows if (r[0], r[1], r[2]) == (w, t, str(i))]
        ops = statistics.median(int(r[3]) for r in mine) / 1e6
        p99 = [r[4] for r in mine]
        p99 = statistics.median(float(x) for x in p99) if p99[0] != "nan" else float("nan")
        line += "  %-22s" % ("%.3f (%.2f)" % (ops, p99))
        if first is None:
            first = ops
        else:
            line += " %5.2fx" % (ops / first)
    print(line)
PY

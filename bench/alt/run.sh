#!/bin/sh
# Runs the comparisons with the alternatives and regenerates their section
# of BENCHMARKS.md and the plots in bench/alt/:
#   - frag: churn with mixed sizes, libvmemcache against memkind's PMEM kind
#   - vmemcache-bench against memcached (loopback, text protocol)
#   - benches/compare.rs: the Rust API against quick_cache
# Installs memcached and libmemkind-dev when root and they are missing; skips
# with a message what it cannot run. Short runs (a few minutes in all on a
# 2-core machine); POOL, OPS, FRAG_OPS and DIR override the sizes.
set -eu

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRC/build/alt-run}
OUT=$SRC/bench/alt/results
DIR=${DIR:-/dev/shm}
POOL=${POOL:-256M}
OPS=${OPS:-1000000}
FRAG_OPS=${FRAG_OPS:-1000000}
mkdir -p "$BUILD" "$OUT"

need=""
command -v memcached >/dev/null 2>&1 || need="$need memcached"
[ -f /usr/include/memkind.h ] || need="$need libmemkind-dev"
if [ -n "$need" ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		apt-get install -y $need >/dev/null 2>&1 ||
			{ apt-get update >/dev/null 2>&1 &&
			  apt-get install -y $need >/dev/null 2>&1; } ||
			echo "run.sh: could not install$need" >&2
	else
		echo "run.sh: missing$need (not root: install it to compare)" >&2
	fi
fi

echo "== building the library and the driver"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTS=OFF \
	-DBUILD_EXAMPLES=OFF >/dev/null
cmake --build "$BUILD" -j2 >/dev/null
CFLAGS="-std=c11 -O2 -Wall -Wextra"
MK=""
if [ -f /usr/include/memkind.h ]; then
	MK="-DHAVE_MEMKIND -lmemkind"
else
	echo "run.sh: no memkind: frag runs libvmemcache alone" >&2
fi
# shellcheck disable=SC2086
cc $CFLAGS -I"$SRC/include" "$SRC/bench/alt/frag.c" -o "$BUILD/frag" \
	-L"$BUILD" -lvmemcache $MK -lm -Wl,-rpath,"$BUILD"
cc $CFLAGS "$SRC/bench/alt/memcached-client.c" -o "$BUILD/memcached-client" \
	-lpthread -lm
export LD_LIBRARY_PATH="$BUILD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "== fragmentation: frag pool=$POOL ops=$FRAG_OPS"
"$BUILD/frag" dir="$DIR" pool="$POOL" ops="$FRAG_OPS" | tee "$OUT/frag.txt" |
	grep SUMMARY

echo "== get-or-put 8 B - 8 KiB log, key_space 2.7: vmemcache-bench"
: >"$OUT/driver.txt"
for t in 1 2; do
	"$BUILD/bench/vmemcache-bench" n_threads=$t ops_count="$OPS" \
		cache_size="$POOL" dir="$DIR" progress=0 | grep '^RESULT' |
		tee -a "$OUT/driver.txt"
done

: >"$OUT/memcached.txt"
if command -v memcached >/dev/null 2>&1; then
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	mb=$(python3 -c "import sys; v='$POOL'; m={'K':1/1024,'M':1,'G':1024}; print(max(1,int(float(v[:-1])*m[v[-1]])) if v[-1] in m else max(1,int(v)>>20))")
	echo "== the same against memcached -m $mb -t 2 on 127.0.0.1:$port"
	for t in 1 2; do
		# a fresh server per run, bounded by timeout, stopped at the end
		user=""
		[ "$(id -u)" = 0 ] && user="-u nobody"
		# shellcheck disable=SC2086
		timeout 600 memcached -l 127.0.0.1 -p "$port" -U 0 -m "$mb" -t 2 \
			-I 1m $user &
		mpid=$!
		i=0
		until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null; do
			i=$((i + 1)); [ $i -gt 50 ] && break; sleep 0.1
		done
		"$BUILD/memcached-client" port="$port" n_threads=$t \
			ops_count="$OPS" cache_size="$POOL" |
			tee -a "$OUT/memcached.txt" || echo "run.sh: memcached client failed" >&2
		kill "$mpid" 2>/dev/null || true
		wait "$mpid" 2>/dev/null || true
	done
else
	echo "run.sh: no memcached: skipped" >&2
fi

echo "== Rust API against quick_cache: cargo bench --bench compare"
(cd "$SRC" && cargo bench -q --bench compare -- pool="$POOL" ops="$OPS" \
	dir="$DIR") | tee "$OUT/compare.txt"

python3 "$SRC/bench/alt/report.py" "$OUT" "$SRC/bench/alt" "$SRC/BENCHMARKS.md"
echo "== BENCHMARKS.md and bench/alt/*.svg updated"

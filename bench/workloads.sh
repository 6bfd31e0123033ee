# Sourced by bench/run.sh and bench/ab.sh: the workloads of BENCHMARKS.md,
# the settings both scripts share (each overridable from the environment),
# and the Release build of the library and the driver. Expects SRC, the
# repository's top directory.

BUILD=${BUILD:-$SRC/build/bench-run}
DIR=${DIR:-/dev/shm}
POOL=${POOL:-1G}
REPS=${REPS:-3}
THREADS=${THREADS:-1 2}
OPS=${OPS:-2000000}
WORKLOADS=${WORKLOADS:-w1 w2 put get}

# The driver's parameters of workload $1.
params() {
	case $1 in
	w1) echo "min_size=8 max_size=8192 size_distrib=log key_space=2.4" ;;
	w2) echo "min_size=8 max_size=32768 size_distrib=log key_space=1.5" ;;
	put) echo "mode=put-only min_size=256 max_size=1024 size_distrib=uniform" ;;
	get) echo "mode=get-only min_size=256 max_size=1024 size_distrib=uniform" ;;
	*) echo "$0: unknown workload $1" >&2; exit 1 ;;
	esac
}

# Builds the library and vmemcache-bench (Release) in $BUILD.
build_driver() {
	mkdir -p "$BUILD"
	cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTS=OFF \
		-DBUILD_EXAMPLES=OFF >/dev/null
	cmake --build "$BUILD" -j "$(nproc)" >/dev/null
}

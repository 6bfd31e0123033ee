#!/usr/bin/env bash
# The first command on a fresh machine: installs what the C library needs
# (cmake, make, a C compiler, pkg-config), builds libvmemcache.so.0 in
# build/examples, and runs the example programs (../shared/examples) against
# a cache in /tmp, printing their output.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh

ensure_c_tools
build=build/examples
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)"

examples=$(cd .. && pwd)/shared/examples
if [ ! -d "$examples" ]; then
	echo "no example programs: $examples does not exist"
	exit 0
fi
status=0
for source in "$examples"/*.c; do
	name=$(basename "$source" .c)
	printf '\n==> %s (%s)\n' "$name" "$source"
	output=$("$build/examples/$name" /tmp) || status=1
	printf '%s\n' "$output"
	if [ -f "$examples/$name.expected" ]; then
		if [ "$output" = "$(cat "$examples/$name.expected")" ]; then
			echo "(as expected)"
		else
			echo "(differs from $name.expected)"
			status=1
		fi
	fi
done
exit $status

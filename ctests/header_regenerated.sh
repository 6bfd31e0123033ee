#!/bin/sh
# header_regenerated.sh SOURCE_DIR -- include/libvmemcache.h is exactly what
# cbindgen generates from src/capi.rs with cbindgen.toml.
set -u
src=$1
CBINDGEN_VERSION=0.29.4
PATH=$PATH:${CARGO_HOME:-$HOME/.cargo}/bin
if ! command -v cbindgen >/dev/null 2>&1; then
	echo "header-regenerated: cbindgen not found (cargo install cbindgen --locked --version $CBINDGEN_VERSION): skipped"
	exit 77
fi
version=$(cbindgen --version | awk '{ print $2 }')
if [ "$version" != "$CBINDGEN_VERSION" ]; then
	echo "header-regenerated: cbindgen $version, but the header comes from $CBINDGEN_VERSION: skipped"
	exit 77
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cd "$src" || exit 1
if ! cbindgen --quiet --config cbindgen.toml --crate vmemcache --output "$out"; then
	echo "header-regenerated: cbindgen failed"
	exit 1
fi
if ! diff -u include/libvmemcache.h "$out"; then
	echo "header-regenerated: include/libvmemcache.h is stale; regenerate it with"
	echo "    cbindgen --config cbindgen.toml --crate vmemcache --output include/libvmemcache.h"
	exit 1
fi
echo "header-regenerated: include/libvmemcache.h matches cbindgen $version"

#!/bin/sh
# pkgconfig.sh CMAKE BUILD_DIR CC PROGRAM POOL_DIR -- installs the build into
# a temporary prefix, then builds and runs PROGRAM with nothing but what
# `pkg-config --cflags --libs libvmemcache` says, against that installation.
set -u
cmake=$1
build=$2
cc=$3
program=$4
pool=$5
if ! command -v pkg-config >/dev/null 2>&1; then
	echo "pkg-config: pkg-config not found: skipped"
	exit 77
fi
prefix=$(mktemp -d)
# `cmake --install` rewrites the build directory's install manifest; keep the
# one of a real installation for `make uninstall`.
manifest=$build/install_manifest.txt
[ -f "$manifest" ] && cp "$manifest" "$prefix.manifest"
cleanup() {
	rm -rf "$prefix"
	if [ -f "$prefix.manifest" ]; then
		mv "$prefix.manifest" "$manifest"
	else
		rm -f "$manifest"
	fi
}
trap cleanup EXIT

"$cmake" --install "$build" --prefix "$prefix" >/dev/null || exit 1

pc=$(find "$prefix" -name libvmemcache.pc)
[ -n "$pc" ] || { echo "pkg-config: libvmemcache.pc not installed"; exit 1; }
libdir_rel=${pc#"$prefix"/}
libdir_rel=${libdir_rel%/pkgconfig/libvmemcache.pc}
fail=0
bad() { echo "pkg-config: $*"; fail=1; }

# The file, exactly as libvmemcache 0.8 writes it.
cat > "$prefix/expected.pc" <<PC
prefix=$prefix
libdir=$prefix/$libdir_rel
version=0.8
includedir=$prefix/include

Name: libvmemcache
Description: libvmemcache - buffer based LRU cache
Version: 0.8
URL: http://github.com/pmem/vmemcache
Libs: -L$prefix/$libdir_rel -lvmemcache
Cflags: -I$prefix/include
PC
diff -u "$prefix/expected.pc" "$pc" || bad "libvmemcache.pc differs"
for f in "include/libvmemcache.h" "$libdir_rel/libvmemcache.so.0" \
		"share/man/man3/vmemcache.3"; do
	[ -f "$prefix/$f" ] || bad "$f not installed"
done
[ "$(readlink "$prefix/$libdir_rel/libvmemcache.so")" = libvmemcache.so.0 ] ||
	bad "$libdir_rel/libvmemcache.so is not a link to libvmemcache.so.0"

export PKG_CONFIG_PATH="$prefix/$libdir_rel/pkgconfig"
[ "$(pkg-config --modversion libvmemcache)" = 0.8 ] || bad "version is not 0.8"
flags=$(pkg-config --cflags --libs libvmemcache) || exit 1
echo "pkg-config: $flags"
# shellcheck disable=SC2086 # the flags are words
"$cc" -o "$prefix/user" "$program" $flags || exit 1
LD_LIBRARY_PATH="$prefix/$libdir_rel" "$prefix/user" "$pool" || bad "the program failed"
# It ran against the installed library.
LD_LIBRARY_PATH="$prefix/$libdir_rel" ldd "$prefix/user" 2>/dev/null |
	grep -q "libvmemcache.so.0 => $prefix/" || bad "the program did not load $prefix's library"
[ $fail -eq 0 ] && echo "pkg-config: all checks passed"
exit $fail

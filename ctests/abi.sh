#!/bin/sh
# abi.sh LIBRARY -- the shared object exports exactly the 15 functions of
# libvmemcache.h, all at version LIBVMEMCACHE_1.0 (the node of libvmemcache
# 0.8, with no parent), nothing else global; its soname is libvmemcache.so.0;
# it is linked with full RELRO; and it depends on nothing beyond the C
# library and the dynamic loader. Prints the DT_NEEDED entries.
set -u
lib=$1
for tool in readelf nm; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "abi: $tool not found (binutils): skipped"
		exit 77
	fi
done

fail=0
bad() { echo "abi: $*"; fail=1; }

expected="vmemcache_add
vmemcache_bench_set
vmemcache_callback_on_evict
vmemcache_callback_on_miss
vmemcache_delete
vmemcache_errormsg
vmemcache_evict
vmemcache_exists
vmemcache_get
vmemcache_get_stat
vmemcache_new
vmemcache_put
vmemcache_set_eviction_policy
vmemcache_set_extent_size
vmemcache_set_size"

# Every defined symbol of the dynamic symbol table that is not local:
# NAME@@VERSION TYPE BIND.
defined=$(readelf --dyn-syms -W "$lib" |
	awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" && $5 != "LOCAL" { print $8, $4, $5 }' |
	sort)
functions=$(printf '%s\n' "$defined" | awk '$2 == "FUNC" { print $1 }')
others=$(printf '%s\n' "$defined" | awk '$2 != "FUNC" { print $1, $2, $3 }')

want=$(printf '%s\n' "$expected" | sed 's/$/@@LIBVMEMCACHE_1.0/')
if [ "$functions" != "$want" ]; then
	bad "exported functions differ from the 15 of libvmemcache.h at LIBVMEMCACHE_1.0:"
	printf '%s\n' "$want" > /tmp/abi-want.$$
	printf '%s\n' "$functions" > /tmp/abi-got.$$
	diff /tmp/abi-want.$$ /tmp/abi-got.$$
	rm -f /tmp/abi-want.$$ /tmp/abi-got.$$
fi
for f in $(printf '%s\n' "$defined" | awk '$2 == "FUNC" && $3 != "GLOBAL" { print $1 }'); do
	bad "not a GLOBAL binding: $f"
done
# GNU ld adds the version node itself as an absolute object; nothing else.
if [ "$others" != "LIBVMEMCACHE_1.0 OBJECT GLOBAL" ]; then
	bad "defined non-function symbols other than the version node:"
	printf '%s\n' "$others"
fi

# nm agrees (a second reading of the same table).
nm_defined=$(nm -D --defined-only "$lib" | awk '{ print $3 }' | sort)
nm_want=$(printf '%s\n%s\n' "$want" "LIBVMEMCACHE_1.0" | sort)
if [ "$nm_defined" != "$nm_want" ]; then
	bad "nm -D --defined-only lists:"
	printf '%s\n' "$nm_defined"
fi

# The version definitions: the base (the soname) and one node, no parent.
verdef=$(readelf -V -W "$lib" | sed -n '/Version definition section/,/^$/p')
printf '%s\n' "$verdef" | grep -q 'Flags: BASE.*Name: libvmemcache.so.0' ||
	bad "no BASE version definition named libvmemcache.so.0"
printf '%s\n' "$verdef" | grep -q 'Flags: none.*Name: LIBVMEMCACHE_1.0' ||
	bad "no version definition LIBVMEMCACHE_1.0"
if [ "$(printf '%s\n' "$verdef" | grep -c 'Name:')" -ne 2 ] ||
		printf '%s\n' "$verdef" | grep -q 'Parent'; then
	bad "unexpected version definitions:"
	printf '%s\n' "$verdef"
fi

dynamic=$(readelf -d -W "$lib")
soname=$(printf '%s\n' "$dynamic" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libvmemcache.so.0 ] || bad "SONAME is '$soname', expected libvmemcache.so.0"
printf '%s\n' "$dynamic" | grep -q '(BIND_NOW)\|(FLAGS).*BIND_NOW\|(FLAGS_1).*NOW' ||
	bad "not linked with -z now"
readelf -l -W "$lib" | grep -q GNU_RELRO || bad "no GNU_RELRO segment"
printf '%s\n' "$dynamic" | grep -q '(TEXTREL)' && bad "text relocations"

needed=$(printf '%s\n' "$dynamic" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "abi: DT_NEEDED:" $needed
for n in $needed; do
	case $n in
	libc.so.*|ld-linux*.so.*) ;;
	*) bad "needs $n (only the C library and the loader are expected)" ;;
	esac
done

[ $fail -eq 0 ] && echo "abi: 15 functions at LIBVMEMCACHE_1.0, soname $soname: all checks passed"
exit $fail

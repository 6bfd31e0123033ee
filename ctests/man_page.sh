#!/bin/sh
# man_page.sh PAGE MAP -- the man page documents every exported function (as
# listed in the version script) and, where groff is installed, renders
# without a warning.
set -u
page=$1
map=$2
fail=0
for f in $(sed -n 's/^[[:space:]]*\(vmemcache_[a-z_]*\);$/\1/p' "$map"); do
	grep -qw "$f" "$page" || {
		echo "man-page: $f is not documented"
		fail=1
	}
done
for word in VMEMCACHE_SHARDING ENOMEM EINVAL ENOSPC EEXIST ENOENT EAGAIN ESRCH \
		EALREADY EBUSY VMEMCACHE_STAT_HEAP_ENTRIES VMEMCACHE_BENCH_NO_ALLOC; do
	grep -q "$word" "$page" || { echo "man-page: $word is not mentioned"; fail=1; }
done
if command -v groff >/dev/null 2>&1; then
	warnings=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
	if [ -n "$warnings" ]; then
		echo "man-page: groff warns:"
		echo "$warnings"
		fail=1
	fi
else
	echo "man-page: groff not found, rendering not checked"
fi
[ $fail -eq 0 ] && echo "man-page: all checks passed"
exit $fail

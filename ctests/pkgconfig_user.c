/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* pkgconfig_user.c POOL_DIR -- a program built with pkg-config's flags only. */

#include <libvmemcache.h>
#include <stdio.h>
#include <string.h>

int
main(int argc, char *argv[])
{
	char buf[16];
	VMEMcache *cache = vmemcache_new();
	if (argc < 2 || cache == NULL || vmemcache_add(cache, argv[1]) != 0) {
		fprintf(stderr, "cannot create a cache: %s\n",
			vmemcache_errormsg());
		return 1;
	}
	if (vmemcache_put(cache, "key", 3, "value", 5) != 0 ||
			vmemcache_get(cache, "key", 3, buf, sizeof(buf), 0,
				NULL) != 5 || memcmp(buf, "value", 5) != 0) {
		fprintf(stderr, "put/get failed: %s\n", vmemcache_errormsg());
		return 1;
	}
	vmemcache_delete(cache);
	printf("installed library: put and get work\n");
	return 0;
}

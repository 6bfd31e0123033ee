/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * racy.c -- a control for the helgrind and drd tests: two threads configure
 * one handle at once, which the contract leaves unsynchronised (SPEC 8.5),
 * so the library's writes to the handle race. The checkers must report it:
 * that shows they watch the library's own memory, and that the annotations
 * which make the other runs clean do not blind them.
 */

#include <pthread.h>
#include <stdio.h>

#include <libvmemcache.h>

static VMEMcache *cache;

static void *
configure(void *arg)
{
	size_t i;
	(void) arg;
	for (i = 0; i < 100; i++)
		(void) vmemcache_set_size(cache, VMEMCACHE_MIN_POOL + i);
	return NULL;
}

int
main(void)
{
	pthread_t t[2];
	int i;
	cache = vmemcache_new();
	if (cache == NULL)
		return 1;
	for (i = 0; i < 2; i++)
		if (pthread_create(&t[i], NULL, configure, NULL) != 0)
			return 1;
	for (i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	vmemcache_delete(cache);
	printf("racy: done\n");
	return 0;
}

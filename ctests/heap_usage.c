/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * heap_usage.c POOL -- the library's DRAM, as a program that defines its own
 * malloc, realloc and free sees it (SPEC 12 item 3).
 *
 * This executable defines the allocation functions, so the dynamic linker
 * sends the library's calls to them. While the program is inside
 * vmemcache_new, vmemcache_add, vmemcache_callback_on_evict, each
 * vmemcache_put and vmemcache_delete, they add up malloc_usable_size of what
 * is allocated and subtract what is freed. With a 1 MiB pool, 256-byte
 * extents, LRU, 8-byte keys and 32-byte values, filled up to the first
 * eviction, the total per entry must stay within 180 bytes, and after
 * vmemcache_delete it must be exactly 0. Allocations through calloc or the
 * aligned allocators would escape the count (and their frees would not), so
 * the library must make none while traced.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvmemcache.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_calloc(size_t nmemb, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *ptr);

static int tracing;
static long long traced;		/* bytes */
static unsigned long long other_allocators;	/* calls while tracing */

void *
malloc(size_t size)
{
	void *p = __libc_malloc(size);
	if (tracing && p != NULL)
		traced += (long long)malloc_usable_size(p);
	return p;
}

void
free(void *ptr)
{
	if (tracing && ptr != NULL)
		traced -= (long long)malloc_usable_size(ptr);
	__libc_free(ptr);
}

void *
realloc(void *ptr, size_t size)
{
	long long before = tracing && ptr != NULL ?
		(long long)malloc_usable_size(ptr) : 0;
	void *p = __libc_realloc(ptr, size);
	if (tracing && (p != NULL || size == 0))
		traced += (p != NULL ? (long long)malloc_usable_size(p) : 0) -
			before;
	return p;
}

void *
calloc(size_t nmemb, size_t size)
{
	if (tracing)
		other_allocators++;
	return __libc_calloc(nmemb, size);
}

void *
memalign(size_t alignment, size_t size)
{
	if (tracing)
		other_allocators++;
	return __libc_memalign(alignment, size);
}

void *
aligned_alloc(size_t alignment, size_t size)
{
	return memalign(alignment, size);
}

int
posix_memalign(void **memptr, size_t alignment, size_t size)
{
	void *p = memalign(alignment, size);
	if (p == NULL)
		return ENOMEM;
	*memptr = p;
	return 0;
}

static int evicted;

static void
on_evict(VMEMcache *cache, const void *key, size_t key_size, void *arg)
{
	(void) cache;
	(void) key;
	(void) key_size;
	(void) arg;
	evicted++;
}

#define TRACE(call) do { tracing = 1; call; tracing = 0; } while (0)

int
main(int argc, char *argv[])
{
	VMEMcache *cache;
	uint64_t n;
	unsigned long long entries;
	char value[32];
	int ret = 0, failed_puts = 0;
	double per_entry;

	if (argc < 2) {
		fprintf(stderr, "usage: %s POOL\n", argv[0]);
		return 2;
	}
	memset(value, 'v', sizeof(value));

	TRACE(cache = vmemcache_new());
	if (cache == NULL || vmemcache_set_size(cache, VMEMCACHE_MIN_POOL) ||
			vmemcache_set_extent_size(cache, 256) ||
			vmemcache_set_eviction_policy(cache,
				VMEMCACHE_REPLACEMENT_LRU)) {
		fprintf(stderr, "cannot configure: %s\n", vmemcache_errormsg());
		return 1;
	}
	TRACE(ret = vmemcache_add(cache, argv[1]));
	if (ret) {
		fprintf(stderr, "vmemcache_add: %s\n", vmemcache_errormsg());
		return 1;
	}
	TRACE(vmemcache_callback_on_evict(cache, on_evict, NULL));
	for (n = 0; !evicted; n++) {
		TRACE(ret = vmemcache_put(cache, &n, sizeof(n), value,
			sizeof(value)));
		if (ret)
			failed_puts++;
	}
	entries = n - (uint64_t)evicted;
	per_entry = (double)traced / (double)entries;
	printf("heap-usage: %llu entries, %lld bytes traced, %.1f bytes per "
		"entry\n", entries, traced, per_entry);
	ret = 0;
	if (failed_puts) {
		printf("heap-usage: %d puts failed\n", failed_puts);
		ret = 1;
	}
	if (per_entry > 180.0) {
		printf("heap-usage: more than 180 bytes per entry\n");
		ret = 1;
	}
	TRACE(vmemcache_delete(cache));
	printf("heap-usage: %lld bytes traced after vmemcache_delete\n",
		traced);
	if (traced != 0) {
		printf("heap-usage: the library keeps DRAM after "
			"vmemcache_delete\n");
		ret = 1;
	}
	if (other_allocators) {
		printf("heap-usage: %llu allocations through calloc or an "
			"aligned allocator, invisible to the count\n",
			other_allocators);
		ret = 1;
	}
	return ret;
}

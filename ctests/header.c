/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * header.c -- libvmemcache.h is source-compatible with libvmemcache 0.8's:
 * it compiles as C89, C11 and C++17 (header.cpp) with every warning an
 * error, its macros have the original replacement lists, its enums the
 * original values, its callbacks are function types, and every function has
 * the original prototype. Running the program checks the values once more.
 */

#include <libvmemcache.h>
#include <libvmemcache.h> /* the include guard works */

#include <stdio.h>

/*
 * Redefining a macro with a different replacement list is a constraint
 * violation, so these compile only if the header's definitions are the same.
 */
#define LIBVMEMCACHE_H 1
#define VMEMCACHE_MAJOR_VERSION 0
#define VMEMCACHE_MINOR_VERSION 8
#define VMEMCACHE_MIN_POOL ((size_t)(1024 * 1024))
#define VMEMCACHE_MIN_EXTENT ((size_t)256)

#if VMEMCACHE_MAJOR_VERSION != 0 || VMEMCACHE_MINOR_VERSION != 8
#error "wrong version"
#endif

/* A compile-time assertion that works in C89 as well as in C++. */
#define ASSERT_AT_FILE_SCOPE(name, cond) typedef char name[(cond) ? 1 : -1]

ASSERT_AT_FILE_SCOPE(min_pool, VMEMCACHE_MIN_POOL == 1048576);
ASSERT_AT_FILE_SCOPE(min_extent, VMEMCACHE_MIN_EXTENT == 256);
ASSERT_AT_FILE_SCOPE(repl_none, VMEMCACHE_REPLACEMENT_NONE == 0);
ASSERT_AT_FILE_SCOPE(repl_lru, VMEMCACHE_REPLACEMENT_LRU == 1);
ASSERT_AT_FILE_SCOPE(repl_num, VMEMCACHE_REPLACEMENT_NUM == 2);
ASSERT_AT_FILE_SCOPE(stat_put, VMEMCACHE_STAT_PUT == 0);
ASSERT_AT_FILE_SCOPE(stat_get, VMEMCACHE_STAT_GET == 1);
ASSERT_AT_FILE_SCOPE(stat_hit, VMEMCACHE_STAT_HIT == 2);
ASSERT_AT_FILE_SCOPE(stat_miss, VMEMCACHE_STAT_MISS == 3);
ASSERT_AT_FILE_SCOPE(stat_evict, VMEMCACHE_STAT_EVICT == 4);
ASSERT_AT_FILE_SCOPE(stat_entries, VMEMCACHE_STAT_ENTRIES == 5);
ASSERT_AT_FILE_SCOPE(stat_dram, VMEMCACHE_STAT_DRAM_SIZE_USED == 6);
ASSERT_AT_FILE_SCOPE(stat_pool, VMEMCACHE_STAT_POOL_SIZE_USED == 7);
ASSERT_AT_FILE_SCOPE(stat_heap, VMEMCACHE_STAT_HEAP_ENTRIES == 8);
ASSERT_AT_FILE_SCOPE(stats_num, VMEMCACHE_STATS_NUM == 9);
ASSERT_AT_FILE_SCOPE(bench_index, VMEMCACHE_BENCH_INDEX_ONLY == 0);
ASSERT_AT_FILE_SCOPE(bench_alloc, VMEMCACHE_BENCH_NO_ALLOC == 1);
ASSERT_AT_FILE_SCOPE(bench_memcpy, VMEMCACHE_BENCH_NO_MEMCPY == 2);
ASSERT_AT_FILE_SCOPE(bench_prefault, VMEMCACHE_BENCH_PREFAULT == 3);
/* C passes the enums as 32-bit integers. */
ASSERT_AT_FILE_SCOPE(repl_size, sizeof(enum vmemcache_repl_p) == 4);
ASSERT_AT_FILE_SCOPE(stat_size, sizeof(enum vmemcache_statistic) == 4);
ASSERT_AT_FILE_SCOPE(bench_size, sizeof(enum vmemcache_bench_cfg) == 4);

/*
 * The callback typedefs are function types: they declare functions, which
 * the definitions below then match (a pointer typedef would declare
 * variables, and the definitions would conflict with them).
 */
vmemcache_on_evict count_evict;
vmemcache_on_miss count_miss;

static int callbacks;

void
count_evict(VMEMcache *cache, const void *key, size_t key_size, void *arg)
{
	(void) cache;
	(void) key;
	(void) key_size;
	(void) arg;
	callbacks++;
}

void
count_miss(VMEMcache *cache, const void *key, size_t key_size, void *arg)
{
	(void) cache;
	(void) key;
	(void) key_size;
	(void) arg;
	callbacks++;
}

/* The prototypes of libvmemcache 0.8, as pointer types. */
typedef VMEMcache *new_fn(void);
typedef int set_eviction_policy_fn(VMEMcache *cache,
	enum vmemcache_repl_p repl_p);
typedef int set_size_fn(VMEMcache *cache, size_t size);
typedef int set_extent_size_fn(VMEMcache *cache, size_t extent_size);
typedef int add_fn(VMEMcache *cache, const char *path);
typedef void delete_fn(VMEMcache *cache);
typedef void callback_on_evict_fn(VMEMcache *cache,
	vmemcache_on_evict *evict, void *arg);
typedef void callback_on_miss_fn(VMEMcache *cache,
	vmemcache_on_miss *miss, void *arg);
typedef ssize_t get_fn(VMEMcache *cache, const void *key, size_t key_size,
	void *vbuf, size_t vbufsize, size_t offset, size_t *vsize);
typedef int exists_fn(VMEMcache *cache, const void *key, size_t key_size,
	size_t *vsize);
typedef int put_fn(VMEMcache *cache, const void *key, size_t key_size,
	const void *value, size_t value_size);
typedef int evict_fn(VMEMcache *cache, const void *key, size_t ksize);
typedef int get_stat_fn(VMEMcache *cache, enum vmemcache_statistic stat,
	void *value, size_t value_size);
typedef const char *errormsg_fn(void);
typedef void bench_set_fn(VMEMcache *cache, enum vmemcache_bench_cfg cfg,
	size_t val);

/* Initialising these is an error if a prototype differs. */
static new_fn *const p_new = vmemcache_new;
static set_eviction_policy_fn *const p_set_eviction_policy =
	vmemcache_set_eviction_policy;
static set_size_fn *const p_set_size = vmemcache_set_size;
static set_extent_size_fn *const p_set_extent_size =
	vmemcache_set_extent_size;
static add_fn *const p_add = vmemcache_add;
static delete_fn *const p_delete = vmemcache_delete;
static callback_on_evict_fn *const p_callback_on_evict =
	vmemcache_callback_on_evict;
static callback_on_miss_fn *const p_callback_on_miss =
	vmemcache_callback_on_miss;
static get_fn *const p_get = vmemcache_get;
static exists_fn *const p_exists = vmemcache_exists;
static put_fn *const p_put = vmemcache_put;
static evict_fn *const p_evict = vmemcache_evict;
static get_stat_fn *const p_get_stat = vmemcache_get_stat;
static errormsg_fn *const p_errormsg = vmemcache_errormsg;
static bench_set_fn *const p_bench_set = vmemcache_bench_set;

static int failures;

static void
check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "header: %s\n", what);
		failures++;
	}
}

int
main(void)
{
	/* The functions link, and a handle can be made and freed. */
	VMEMcache *c = p_new();
	check(c != NULL, "vmemcache_new failed");
	check(p_set_eviction_policy(c, VMEMCACHE_REPLACEMENT_LRU) == 0,
		"set_eviction_policy");
	check(p_set_size(c, VMEMCACHE_MIN_POOL) == 0, "set_size");
	check(p_set_extent_size(c, VMEMCACHE_MIN_EXTENT) == 0,
		"set_extent_size");
	p_callback_on_evict(c, count_evict, NULL);
	p_callback_on_miss(c, count_miss, NULL);
	check(p_add(NULL, NULL) == -1, "add(NULL)");
	check(p_put(NULL, "k", 1, "v", 1) == -1, "put(NULL)");
	check(p_get(NULL, "k", 1, NULL, 0, 0, NULL) == -1, "get(NULL)");
	check(p_exists(NULL, "k", 1, NULL) == -1, "exists(NULL)");
	check(p_evict(NULL, "k", 1) == -1, "evict(NULL)");
	check(p_get_stat(NULL, VMEMCACHE_STAT_PUT, NULL, 0) == -1,
		"get_stat(NULL)");
	p_bench_set(NULL, VMEMCACHE_BENCH_PREFAULT, 0);
	check(p_errormsg()[0] != '\0', "no message after a failure");
	p_delete(c);
	check(callbacks == 0, "a callback ran");

	check(VMEMCACHE_MIN_POOL == 1024 * 1024, "VMEMCACHE_MIN_POOL");
	check(VMEMCACHE_MIN_EXTENT == 256, "VMEMCACHE_MIN_EXTENT");
	check(VMEMCACHE_STATS_NUM == 9, "VMEMCACHE_STATS_NUM");
	if (failures == 0)
		printf("header: all checks passed\n");
	return failures != 0;
}

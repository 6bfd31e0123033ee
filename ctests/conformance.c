/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * conformance.c -- the contract of libvmemcache, checked from C.
 *
 * Usage: conformance POOL SCRATCH [TEST...]
 *
 * POOL is where caches are created (a directory, or a device DAX), SCRATCH a
 * directory for the files the path checks need. Without TEST names every
 * test runs except sharding_invalid, which expects VMEMCACHE_SHARDING to hold
 * a bad value. Each failed check prints file:line and what was expected; the
 * exit status is the number of failed checks (capped), 0 when all pass.
 *
 * Compile with -DSTATS_ENABLED=0 for a library built without statistics:
 * every statistic must then read 0.
 */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <libvmemcache.h>

#ifndef STATS_ENABLED
#define STATS_ENABLED 1
#endif

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)

/* errno before every call that must succeed; it must still be there after. */
#define SENTINEL 7777

static const char *pool_path;	/* caches live here */
static const char *scratch_dir;	/* files for the path checks */
static int pool_is_dax;		/* pool_path is a device DAX */
static int failures;

/* --- checking ------------------------------------------------------------ */

static void
failed(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	failures++;
}

#define CHECK(cond) do { \
	if (!(cond)) \
		failed(__FILE__, __LINE__, "check failed: %s", #cond); \
} while (0)

#define CHECK_EQ(a, b) do { \
	unsigned long long a_ = (unsigned long long)(a); \
	unsigned long long b_ = (unsigned long long)(b); \
	if (a_ != b_) \
		failed(__FILE__, __LINE__, "%s == %llu, expected %s == %llu", \
			#a, a_, #b, b_); \
} while (0)

#define CHECK_STR(a, b) do { \
	const char *a_ = (a); \
	const char *b_ = (b); \
	if (strcmp(a_, b_) != 0) \
		failed(__FILE__, __LINE__, "%s is \"%s\", expected \"%s\"", \
			#a, a_, b_); \
} while (0)

#define CHECK_MSG(expected) CHECK_STR(vmemcache_errormsg(), expected)

/* A call that must return `expected` and leave errno alone. */
#define CHECK_RET(call, expected) do { \
	long long r_; \
	int e_; \
	errno = SENTINEL; \
	r_ = (long long)(call); \
	e_ = errno; \
	if (r_ != (long long)(expected)) \
		failed(__FILE__, __LINE__, "%s returned %lld, expected %lld " \
			"(errno %d, message \"%s\")", #call, r_, \
			(long long)(expected), e_, vmemcache_errormsg()); \
	if (e_ != SENTINEL) \
		failed(__FILE__, __LINE__, "%s changed errno to %d", #call, e_); \
} while (0)

#define CHECK_OK(call) CHECK_RET(call, 0)

/* A void call that must leave errno alone. */
#define CHECK_VOID(call) do { \
	int e_; \
	errno = SENTINEL; \
	call; \
	e_ = errno; \
	if (e_ != SENTINEL) \
		failed(__FILE__, __LINE__, "%s changed errno to %d", #call, e_); \
} while (0)

/*
 * A call that must fail: return -1 with errno `err` and record `msg` (NULL:
 * any message, or none).
 */
#define CHECK_FAIL(call, err, msg) do { \
	long long r_; \
	int e_; \
	errno = 0; \
	r_ = (long long)(call); \
	e_ = errno; \
	check_failure(__FILE__, __LINE__, #call, r_, e_, err, #err, msg); \
} while (0)

static void
check_failure(const char *file, int line, const char *call, long long r,
	int e, int err, const char *errname, const char *msg)
{
	if (r != -1)
		failed(file, line, "%s returned %lld, expected -1", call, r);
	if (e != err)
		failed(file, line, "%s: errno %d (%s), expected %s", call, e,
			strerror(e), errname);
	if (msg != NULL && strcmp(vmemcache_errormsg(), msg) != 0)
		failed(file, line, "%s: message \"%s\", expected \"%s\"", call,
			vmemcache_errormsg(), msg);
}

/* Aborts the current test: what follows cannot run. */
#define REQUIRE(cond) do { \
	if (!(cond)) { \
		failed(__FILE__, __LINE__, "required: %s (errno %d, \"%s\")", \
			#cond, errno, vmemcache_errormsg()); \
		return; \
	} \
} while (0)

/* Records a known message in this thread's buffer. */
#define KNOWN_MESSAGE "size 0 smaller than 1048576"
static void
set_known_message(void)
{
	VMEMcache *c = vmemcache_new();
	if (c == NULL || vmemcache_set_size(c, 0) != -1 ||
			strcmp(vmemcache_errormsg(), KNOWN_MESSAGE) != 0)
		failed(__FILE__, __LINE__, "could not record a known message");
	vmemcache_delete(c);
}

/* --- helpers ---------------------------------------------------------------- */

static unsigned long long
stat_of(VMEMcache *c, enum vmemcache_statistic s)
{
	unsigned long long v = ~0ULL;
	errno = SENTINEL;
	if (vmemcache_get_stat(c, s, &v, sizeof(v)) != 0)
		failed(__FILE__, __LINE__, "get_stat(%d) failed: %s", (int)s,
			vmemcache_errormsg());
	if (errno != SENTINEL)
		failed(__FILE__, __LINE__, "get_stat changed errno");
	return v;
}

/* A statistic must read `v`, or 0 in a build without statistics. */
#define CHECK_STAT(c, s, v) do { \
	unsigned long long got_ = stat_of(c, s); \
	unsigned long long want_ = STATS_ENABLED ? \
		(unsigned long long)(v) : 0ULL; \
	if (got_ != want_) \
		failed(__FILE__, __LINE__, "%s is %llu, expected %llu", #s, \
			got_, want_); \
} while (0)

static VMEMcache *
cache_in(const char *path, size_t size, size_t extent,
	enum vmemcache_repl_p policy)
{
	VMEMcache *c = vmemcache_new();
	if (c == NULL) {
		failed(__FILE__, __LINE__, "vmemcache_new: %s",
			vmemcache_errormsg());
		return NULL;
	}
	if ((size && vmemcache_set_size(c, size)) ||
			(extent && vmemcache_set_extent_size(c, extent)) ||
			vmemcache_set_eviction_policy(c, policy) ||
			vmemcache_add(c, path)) {
		failed(__FILE__, __LINE__, "cannot create a cache in %s: %s",
			path, vmemcache_errormsg());
		vmemcache_delete(c);
		return NULL;
	}
	return c;
}

/* A cache in the pool under test. */
static VMEMcache *
new_cache(size_t size, size_t extent, enum vmemcache_repl_p policy)
{
	return cache_in(pool_path, size, extent, policy);
}

/* A second cache alive at the same time: never on the device DAX. */
static VMEMcache *
other_cache(size_t size)
{
	return cache_in(scratch_dir, size, 0, VMEMCACHE_REPLACEMENT_LRU);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

/* The byte at `i` of the value stored under the key number `k`. */
static unsigned char
pattern(uint64_t k, size_t i)
{
	return (unsigned char)((k * 131 + i * 7 + (i >> 8)) & 0xff);
}

static void
fill(unsigned char *buf, uint64_t k, size_t len)
{
	size_t i;
	for (i = 0; i < len; i++)
		buf[i] = pattern(k, i);
}

static int
matches(const unsigned char *buf, uint64_t k, size_t off, size_t len)
{
	size_t i;
	for (i = 0; i < len; i++)
		if (buf[i] != pattern(k, off + i))
			return 0;
	return 1;
}

/* Evicts until nothing is left; returns how many were evicted. */
static unsigned
drain(VMEMcache *c)
{
	unsigned n = 0;
	while (vmemcache_evict(c, NULL, 0) == 0)
		n++;
	return n;
}

static void
check_empty_after_drain(VMEMcache *c, int line)
{
	int before = failures;
	CHECK_STAT(c, VMEMCACHE_STAT_ENTRIES, 0);
	CHECK_STAT(c, VMEMCACHE_STAT_DRAM_SIZE_USED, 0);
	CHECK_STAT(c, VMEMCACHE_STAT_POOL_SIZE_USED, 0);
	CHECK_STAT(c, VMEMCACHE_STAT_HEAP_ENTRIES, 1);
	if (failures != before)
		failed(__FILE__, line, "(the cache above was drained here)");
}

/* Counts evictions and remembers the last key evicted. */
struct evict_log {
	unsigned count;
	char last[64];
	size_t last_size;
};

static void
log_evict(VMEMcache *c, const void *key, size_t ksize, void *arg)
{
	struct evict_log *log = arg;
	(void) c;
	log->count++;
	log->last_size = ksize;
	memset(log->last, 0, sizeof(log->last));
	memcpy(log->last, key, ksize < sizeof(log->last) - 1 ?
		ksize : sizeof(log->last) - 1);
}

static char *
scratch_file(const char *name)
{
	static char path[4096];
	snprintf(path, sizeof(path), "%s/%s.%d", scratch_dir, name,
		(int)getpid());
	return path;
}

/* --- configuration (SPEC 3.1-3.5) -------------------------------------------- */

static void
test_setters(void)
{
	VMEMcache *c = vmemcache_new();
	REQUIRE(c != NULL);

	CHECK_FAIL(vmemcache_set_size(c, 0), EINVAL,
		"size 0 smaller than 1048576");
	CHECK_FAIL(vmemcache_set_size(c, VMEMCACHE_MIN_POOL - 1), EINVAL,
		"size 1048575 smaller than 1048576");
	CHECK_FAIL(vmemcache_set_size(c, (size_t)1 << 56), EINVAL,
		"implausible large size 72057594037927936");
	CHECK_FAIL(vmemcache_set_size(c, SIZE_MAX), EINVAL,
		"implausible large size 18446744073709551615");
	CHECK_OK(vmemcache_set_size(c, ((size_t)1 << 56) - 1));
	CHECK_OK(vmemcache_set_size(c, VMEMCACHE_MIN_POOL));

	CHECK_FAIL(vmemcache_set_extent_size(c, 0), EINVAL,
		"extent size 0 smaller than 256 bytes");
	CHECK_FAIL(vmemcache_set_extent_size(c, VMEMCACHE_MIN_EXTENT - 1),
		EINVAL, "extent size 255 smaller than 256 bytes");
	CHECK_OK(vmemcache_set_extent_size(c, SIZE_MAX));
	CHECK_OK(vmemcache_set_extent_size(c, 300));
	CHECK_OK(vmemcache_set_extent_size(c, VMEMCACHE_MIN_EXTENT));

	/* Out-of-range policies are refused here rather than crashing add. */
	CHECK_FAIL(vmemcache_set_eviction_policy(c, VMEMCACHE_REPLACEMENT_NUM),
		EINVAL, "invalid replacement policy: 2");
	CHECK_FAIL(vmemcache_set_eviction_policy(c,
		(enum vmemcache_repl_p)-1), EINVAL,
		"invalid replacement policy: 4294967295");
	CHECK_OK(vmemcache_set_eviction_policy(c, VMEMCACHE_REPLACEMENT_NONE));
	CHECK_OK(vmemcache_set_eviction_policy(c, VMEMCACHE_REPLACEMENT_LRU));

	CHECK_VOID(vmemcache_delete(c));
}

static void
test_add_paths(void)
{
	char file[4096], deep[4200], longpath[9000];
	struct stat st;
	FILE *f;
	size_t i;
	VMEMcache *c = vmemcache_new();
	REQUIRE(c != NULL);

	/* The extent is checked against an explicit size before the path. */
	CHECK_OK(vmemcache_set_size(c, VMEMCACHE_MIN_POOL));
	CHECK_OK(vmemcache_set_extent_size(c, 2 * MiB));
	CHECK_FAIL(vmemcache_add(c, NULL), EINVAL,
		"extent size 2097152 larger than cache size: 1048576 bytes");
	CHECK_OK(vmemcache_set_extent_size(c, VMEMCACHE_MIN_EXTENT));

	CHECK_FAIL(vmemcache_add(c, NULL), EINVAL, "invalid (NULL) path");

	snprintf(file, sizeof(file), "%s", scratch_file("regular-file"));
	f = fopen(file, "w");
	REQUIRE(f != NULL);
	fclose(f);
	CHECK_FAIL(vmemcache_add(c, file), ENOTDIR, "open: Not a directory");

	snprintf(deep, sizeof(deep), "%s/x/y", file);
	{
		char msg[4400];
		snprintf(msg, sizeof(msg), "os_access \"%s\": Not a directory",
			deep);
		CHECK_FAIL(vmemcache_add(c, deep), ENOTDIR, msg);
	}

	/* A missing path is taken for a directory: open fails. */
	CHECK_FAIL(vmemcache_add(c, scratch_file("does-not-exist")), ENOENT,
		"open: No such file or directory");

	/* A character device that is not a device DAX: no message. */
	if (stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode)) {
		set_known_message();
		CHECK_FAIL(vmemcache_add(c, "/dev/null"), EINVAL, KNOWN_MESSAGE);
	}

	/* Messages longer than the buffer are truncated to 8191 bytes. */
	for (i = 0; i + 2 < sizeof(longpath); i += 2) {
		longpath[i] = 'x';
		longpath[i + 1] = '/';
	}
	longpath[i] = '\0';
	errno = 0;
	CHECK_EQ(vmemcache_add(c, longpath), -1);
	CHECK_EQ(errno, ENAMETOOLONG);
	CHECK_EQ(strlen(vmemcache_errormsg()), 8191);
	CHECK(strncmp(vmemcache_errormsg(), "os_access \"x/x/", 15) == 0);

	if (geteuid() != 0) {
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s", scratch_file("read-only-dir"));
		if (mkdir(dir, 0500) == 0) {
			CHECK_FAIL(vmemcache_add(c, dir), EACCES,
				"open: Permission denied");
			rmdir(dir);
		}
	}

	/* A failed add leaves the handle unconfigured: it can be retried. */
	CHECK_OK(vmemcache_add(c, pool_path));
	CHECK_OK(vmemcache_put(c, "key", 3, "value", 5));
	{
		char buf[8];
		size_t vsize = 0;
		CHECK_RET(vmemcache_get(c, "key", 3, buf, sizeof(buf), 0,
			&vsize), 5);
		CHECK_EQ(vsize, 5);
		CHECK(memcmp(buf, "value", 5) == 0);
	}

	/* Once added, the cache is in use. */
	CHECK_FAIL(vmemcache_add(c, pool_path), EBUSY,
		"the cache is already initialized");
	CHECK_FAIL(vmemcache_set_size(c, 2 * MiB), EALREADY,
		"cache already in use");
	CHECK_FAIL(vmemcache_set_extent_size(c, 512), EALREADY,
		"cache already in use");
	CHECK_FAIL(vmemcache_set_eviction_policy(c,
		VMEMCACHE_REPLACEMENT_NONE), EALREADY, "cache already in use");
	/* Even an invalid value: the state is checked first. */
	CHECK_FAIL(vmemcache_set_size(c, 0), EALREADY, "cache already in use");

	vmemcache_delete(c);
	unlink(file);
}

/* An extent larger than the default pool is accepted: one value fits. */
static void
test_extent_larger_than_default_pool(void)
{
	struct evict_log log = {0};
	size_t vsize = 0;
	VMEMcache *c;

	if (pool_is_dax)
		return; /* no size set would map the whole device */
	c = vmemcache_new();
	REQUIRE(c != NULL);
	CHECK_OK(vmemcache_set_extent_size(c, 2 * MiB));
	CHECK_OK(vmemcache_add(c, pool_path));
	vmemcache_callback_on_evict(c, log_evict, &log);
	CHECK_OK(vmemcache_put(c, "a", 1, "1", 1));
	CHECK_OK(vmemcache_put(c, "b", 1, "2", 1));
	CHECK_EQ(log.count, 1);
	CHECK_STR(log.last, "a");
	CHECK_RET(vmemcache_exists(c, "a", 1, &vsize), 0);
	CHECK_RET(vmemcache_exists(c, "b", 1, &vsize), 1);
	CHECK_STAT(c, VMEMCACHE_STAT_ENTRIES, 1);
	vmemcache_delete(c);
}

/* --- get, exists (SPEC 5, 6.1) ---------------------------------------------- */

static void
test_get_offsets(void)
{
	static const struct {
		size_t bufsize, offset;
		ssize_t ret;
	} table[] = {
		{32, 0, 32}, {32, 2, 30}, {32, 31, 1}, {32, 32, 0}, {32, 33, 0},
		{64, 0, 32}, {64, 4, 28}, {64, 31, 1}, {64, 32, 0}, {64, 33, 0},
		{16, 0, 16}, {16, 2, 16}, {16, 16, 16}, {16, 18, 14},
		{16, 32, 0}, {16, 33, 0},
	};
	unsigned char value[32], buf[64];
	size_t i, vsize;
	VMEMcache *c = new_cache(VMEMCACHE_MIN_POOL, 0,
		VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);

	fill(value, 1, sizeof(value));
	CHECK_OK(vmemcache_put(c, "k", 1, value, sizeof(value)));
	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		size_t n = (size_t)table[i].ret;
		memset(buf, 0xEE, sizeof(buf));
		vsize = 0;
		CHECK_RET(vmemcache_get(c, "k", 1, buf, table[i].bufsize,
			table[i].offset, &vsize), table[i].ret);
		CHECK_EQ(vsize, 32);
		if (!matches(buf, 1, table[i].offset, n))
			failed(__FILE__, __LINE__, "row %zu: wrong bytes", i);
		if (n < sizeof(buf) && buf[n] != 0xEE)
			failed(__FILE__, __LINE__, "row %zu: wrote past %zu",
				i, n);
	}

	/* A NULL buffer copies nothing but reports the size. */
	vsize = 0;
	CHECK_RET(vmemcache_get(c, "k", 1, NULL, 16, 0, &vsize), 0);
	CHECK_EQ(vsize, 32);
	vsize = 0;
	CHECK_RET(vmemcache_get(c, "k", 1, NULL, 0, 40, &vsize), 0);
	CHECK_EQ(vsize, 32);
	/* So does an empty buffer; and vsize may be NULL. */
	vsize = 0;
	CHECK_RET(vmemcache_get(c, "k", 1, buf, 0, 0, &vsize), 0);
	CHECK_EQ(vsize, 32);
	CHECK_RET(vmemcache_get(c, "k", 1, buf, 8, 0, NULL), 8);

	/* A miss: ENOENT, vsize untouched, and no message recorded. */
	set_known_message();
	vsize = 12345;
	CHECK_FAIL(vmemcache_get(c, "missing", 7, buf, sizeof(buf), 0, &vsize),
		ENOENT, KNOWN_MESSAGE);
	CHECK_EQ(vsize, 12345);

	vmemcache_delete(c);
}

static void
test_exists(void)
{
	size_t vsize;
	VMEMcache *c = new_cache(VMEMCACHE_MIN_POOL, 0,
		VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);

	CHECK_OK(vmemcache_put(c, "present", 7, "0123456789", 10));
	vsize = 0;
	CHECK_RET(vmemcache_exists(c, "present", 7, &vsize), 1);
	CHECK_EQ(vsize, 10);
	CHECK_RET(vmemcache_exists(c, "present", 7, NULL), 1);
	vsize = 777;
	CHECK_RET(vmemcache_exists(c, "absent", 6, &vsize), 0);
	CHECK_EQ(vsize, 777);
	/* A key that is a prefix of a present one is another key. */
	CHECK_RET(vmemcache_exists(c, "pres", 4, &vsize), 0);
	/* exists counts neither hits nor misses. */
	CHECK_STAT(c, VMEMCACHE_STAT_HIT, 0);
	CHECK_STAT(c, VMEMCACHE_STAT_MISS, 0);
	CHECK_STAT(c, VMEMCACHE_STAT_GET, 0);
	vmemcache_delete(c);
}

static void
test_keys(void)
{
	unsigned char longkey[3000], binkey[4] = {0, 0xff, 0x80, 0};
	char buf[16];
	size_t vsize;
	struct evict_log log = {0};
	unsigned i;
	VMEMcache *c = new_cache(VMEMCACHE_MIN_POOL, 0,
		VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);
	vmemcache_callback_on_evict(c, log_evict, &log);

	/* The empty key is a key of its own, even as a NULL pointer. */
	CHECK_OK(vmemcache_put(c, NULL, 0, "empty", 5));
	CHECK_RET(vmemcache_get(c, "", 0, buf, sizeof(buf), 0, &vsize), 5);
	CHECK_RET(vmemcache_exists(c, NULL, 0, NULL), 1);
	CHECK_OK(vmemcache_put(c, "a", 1, "A", 1));
	CHECK_OK(vmemcache_put(c, "ab", 2, "AB", 2));
	CHECK_OK(vmemcache_put(c, "abc", 3, "ABC", 3));
	CHECK_RET(vmemcache_get(c, "ab", 2, buf, sizeof(buf), 0, &vsize), 2);
	CHECK(memcmp(buf, "AB", 2) == 0);
	CHECK_OK(vmemcache_put(c, binkey, sizeof(binkey), "bin", 3));
	CHECK_FAIL(vmemcache_get(c, binkey, 3, buf, sizeof(buf), 0, NULL),
		ENOENT, NULL);
	CHECK_RET(vmemcache_get(c, binkey, sizeof(binkey), buf, sizeof(buf), 0,
		NULL), 3);
	for (i = 0; i < sizeof(longkey); i++)
		longkey[i] = (unsigned char)(i * 7);
	CHECK_OK(vmemcache_put(c, longkey, sizeof(longkey), "long", 4));
	CHECK_RET(vmemcache_get(c, longkey, sizeof(longkey), buf, sizeof(buf),
		0, &vsize), 4);
	CHECK_OK(vmemcache_evict(c, longkey, sizeof(longkey)));
	CHECK_EQ(log.count, 1);

	/* A duplicate key fails before anything is evicted. */
	{
		static unsigned char big[200000];
		unsigned n = 0;
		char key[32];
		while (log.count == 1 && n < 100) {
			snprintf(key, sizeof(key), "filler%u", n++);
			CHECK_OK(vmemcache_put(c, key, strlen(key), big,
				sizeof(big)));
		}
		REQUIRE(log.count > 1);
		i = log.count;
		CHECK_FAIL(vmemcache_put(c, key, strlen(key), big, sizeof(big)),
			EEXIST, "inserting to the index failed");
		CHECK_EQ(log.count, i);
	}
	vmemcache_delete(c);
}

/* --- evict (SPEC 6.2, 6.3) -------------------------------------------------- */

struct reentry {
	VMEMcache *cache;
	unsigned calls;
	int nested_evict;	/* result of evicting the same key */
	ssize_t got;		/* result of a get of the evicted key */
	size_t vsize;
	int value_ok;
	int put_other;		/* result of a put of another key */
};

static void
evict_reenter(VMEMcache *c, const void *key, size_t ksize, void *arg)
{
	struct reentry *r = arg;
	unsigned char buf[1000];
	r->calls++;
	if (r->calls > 1)
		return;
	r->vsize = 0;
	r->got = vmemcache_get(c, key, ksize, buf, sizeof(buf), 0, &r->vsize);
	r->value_ok = r->got == 1000 && matches(buf, 5, 0, 1000);
	r->nested_evict = vmemcache_evict(c, key, ksize);
	r->put_other = vmemcache_put(c, "other", 5, "x", 1);
}

static void
test_evict(void)
{
	struct evict_log log = {0};
	struct reentry r;
	unsigned char value[1000];
	size_t vsize;
	VMEMcache *c = new_cache(VMEMCACHE_MIN_POOL, 0,
		VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);
	vmemcache_callback_on_evict(c, log_evict, &log);

	CHECK_FAIL(vmemcache_evict(c, "nope", 4), ENOENT,
		"vmemcache_evict: cannot find an element with the given key");
	CHECK_FAIL(vmemcache_evict(c, NULL, 0), ESRCH, "no element to evict");
	CHECK_EQ(log.count, 0);

	CHECK_OK(vmemcache_put(c, "k1", 2, "v1", 2));
	CHECK_OK(vmemcache_put(c, "k2", 2, "v2", 2));
	CHECK_OK(vmemcache_evict(c, "k2", 2));
	CHECK_EQ(log.count, 1);
	CHECK_STR(log.last, "k2");
	CHECK_EQ(log.last_size, 2);
	CHECK_RET(vmemcache_exists(c, "k2", 2, &vsize), 0);
	CHECK_FAIL(vmemcache_evict(c, "k2", 2), ENOENT,
		"vmemcache_evict: cannot find an element with the given key");
	/* ksize is ignored when the key is NULL. */
	CHECK_OK(vmemcache_evict(c, NULL, 12345));
	CHECK_EQ(log.count, 2);
	CHECK_STR(log.last, "k1");
	CHECK_FAIL(vmemcache_evict(c, NULL, 0), ESRCH, "no element to evict");

	/* Inside on_evict the entry is readable and the cache re-enterable. */
	memset(&r, 0, sizeof(r));
	fill(value, 5, sizeof(value));
	vmemcache_callback_on_evict(c, evict_reenter, &r);
	CHECK_OK(vmemcache_put(c, "victim", 6, value, sizeof(value)));
	CHECK_OK(vmemcache_evict(c, "victim", 6));
	CHECK_EQ(r.calls, 1);
	CHECK_EQ(r.got, 1000);
	CHECK_EQ(r.vsize, 1000);
	CHECK(r.value_ok);
	CHECK_EQ(r.nested_evict, 0); /* already being evicted: a no-op */
	CHECK_EQ(r.put_other, 0);
	CHECK_RET(vmemcache_exists(c, "victim", 6, &vsize), 0);
	CHECK_RET(vmemcache_exists(c, "other", 5, &vsize), 1);
	/* The same through the LRU path. */
	vmemcache_callback_on_evict(c, log_evict, &log);
	CHECK_OK(vmemcache_evict(c, "other", 5));
	vmemcache_callback_on_evict(c, evict_reenter, &r);
	memset(&r, 0, sizeof(r));
	CHECK_OK(vmemcache_put(c, "victim", 6, value, sizeof(value)));
	CHECK_OK(vmemcache_evict(c, NULL, 0));
	CHECK_EQ(r.calls, 1);
	CHECK(r.value_ok);
	CHECK_EQ(r.nested_evict, 0);
	CHECK_EQ(r.put_other, 0);

	/* Removing the callback. */
	vmemcache_callback_on_evict(c, NULL, NULL);
	CHECK_EQ(drain(c), 1);
	vmemcache_delete(c);
}

/* Entries put in INDEX_ONLY mode are not in the LRU list (SPEC 10). */
static void
test_evict_not_in_lru(void)
{
	struct evict_log log = {0};
	size_t vsize;
	VMEMcache *c = new_cache(VMEMCACHE_MIN_POOL, 0,
		VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);
	vmemcache_callback_on_evict(c, log_evict, &log);

	vmemcache_bench_set(c, VMEMCACHE_BENCH_INDEX_ONLY, 1);
	CHECK_OK(vmemcache_put(c, "io", 2, "value", 5));
	vmemcache_bench_set(c, VMEMCACHE_BENCH_INDEX_ONLY, 0);

	/* on_evict runs, then the eviction fails (kept from the original). */
	CHECK_FAIL(vmemcache_evict(c, "io", 2), ESRCH, "LRU queue is empty");
	CHECK_EQ(log.count, 1);
	CHECK_OK(vmemcache_put(c, "normal", 6, "value", 5));
	CHECK_FAIL(vmemcache_evict(c, "io", 2), EAGAIN,
		"entry is busy and cannot be evicted");
	CHECK_EQ(log.count, 2);
	CHECK_RET(vmemcache_exists(c, "io", 2, &vsize), 1);
	/* LRU evictions never pick it. */
	CHECK_EQ(drain(c), 1);
	CHECK_STR(log.last, "normal");
	CHECK_RET(vmemcache_exists(c, "io", 2, &vsize), 1);
	vmemcache_delete(c);
}

static void
test_policy_none(void)
{
	struct evict_log log = {0};
	static unsigned char value[100 * 1024];
	char key[16];
	unsigned n = 0;
	int r;
	VMEMcache *c = new_cache(VMEMCACHE_MIN_POOL, 0,
		VMEMCACHE_REPLACEMENT_NONE);
	REQUIRE(c != NULL);
	vmemcache_callback_on_evict(c, log_evict, &log);

	for (;;) {
		snprintf(key, sizeof(key), "%u", n);
		errno = 0;
		r = vmemcache_put(c, key, strlen(key), value, sizeof(value));
		if (r != 0)
			break;
		n++;
		REQUIRE(n < 100);
	}
	/* ENOSPC and ESRCH where the original left errno unchanged. */
	CHECK_EQ(r, -1);
	CHECK_EQ(errno, ENOSPC);
	CHECK_MSG("no element to evict");
	CHECK_EQ(n, 10);
	CHECK_FAIL(vmemcache_evict(c, NULL, 0), ESRCH, "no element to evict");
	CHECK_EQ(log.count, 0);
	/* Evicting by key works; then the put fits. */
	CHECK_OK(vmemcache_evict(c, "3", 1));
	CHECK_EQ(log.count, 1);
	CHECK_OK(vmemcache_put(c, key, strlen(key), value, sizeof(value)));
	CHECK_STAT(c, VMEMCACHE_STAT_ENTRIES, 10);
	vmemcache_delete(c);
}

/* --- errno and messages (SPEC 2) ------------------------------------------------ */

static void
test_errno_untouched(void)
{
	char buf[8];
	size_t vsize;
	unsigned long long v;
	struct evict_log log = {0};
	VMEMcache *c;

	/* Every function, on success. */
	errno = SENTINEL;
	c = vmemcache_new();
	CHECK_EQ(errno, SENTINEL);
	REQUIRE(c != NULL);
	CHECK_OK(vmemcache_set_size(c, VMEMCACHE_MIN_POOL));
	CHECK_OK(vmemcache_set_extent_size(c, 512));
	CHECK_OK(vmemcache_set_eviction_policy(c, VMEMCACHE_REPLACEMENT_LRU));
	CHECK_VOID(vmemcache_callback_on_evict(c, log_evict, &log));
	CHECK_VOID(vmemcache_callback_on_miss(c, NULL, NULL));
	CHECK_OK(vmemcache_add(c, pool_path));
	CHECK_OK(vmemcache_put(c, "a", 1, "1", 1));
	CHECK_OK(vmemcache_put(c, "b", 1, "2", 1));
	CHECK_RET(vmemcache_get(c, "a", 1, buf, sizeof(buf), 0, &vsize), 1);
	CHECK_RET(vmemcache_exists(c, "a", 1, &vsize), 1);
	CHECK_RET(vmemcache_exists(c, "z", 1, &vsize), 0);
	CHECK_OK(vmemcache_get_stat(c, VMEMCACHE_STAT_PUT, &v, sizeof(v)));
	CHECK_OK(vmemcache_evict(c, "a", 1));
	CHECK_OK(vmemcache_evict(c, NULL, 0));
	CHECK_VOID(vmemcache_bench_set(c, VMEMCACHE_BENCH_PREFAULT, 0));
	CHECK_VOID(vmemcache_bench_set(c, VMEMCACHE_BENCH_NO_MEMCPY, 0));
	CHECK_VOID((void) vmemcache_errormsg());
	CHECK_VOID(vmemcache_delete(c));
	CHECK_VOID(vmemcache_delete(NULL));
	CHECK_EQ(log.count, 2);
}

struct thread_messages {
	char initial[64];
	char own[128];
	char after[128];
};

static void *
message_thread(void *arg)
{
	struct thread_messages *m = arg;
	VMEMcache *c;
	snprintf(m->initial, sizeof(m->initial), "%s", vmemcache_errormsg());
	c = vmemcache_new();
	if (c != NULL) {
		(void) vmemcache_set_extent_size(c, 1);
		snprintf(m->own, sizeof(m->own), "%s", vmemcache_errormsg());
		vmemcache_delete(c);
	}
	return NULL;
}

static void
test_errormsg_per_thread(void)
{
	pthread_t t;
	struct thread_messages m;
	const char *mine;
	VMEMcache *c = vmemcache_new();
	REQUIRE(c != NULL);

	set_known_message();
	mine = vmemcache_errormsg();
	memset(&m, 0, sizeof(m));
	REQUIRE(pthread_create(&t, NULL, message_thread, &m) == 0);
	pthread_join(t, NULL);
	CHECK_STR(m.initial, "");
	CHECK_STR(m.own, "extent size 1 smaller than 256 bytes");
	/* This thread's message is untouched, at the same address. */
	CHECK(vmemcache_errormsg() == mine);
	CHECK_MSG(KNOWN_MESSAGE);
	vmemcache_delete(c);
}

/* --- statistics (SPEC 9) ------------------------------------------------------- */

static void
test_stats_sequence(void)
{
	char key[16], buf[64];
	unsigned i;
	VMEMcache *c = new_cache(VMEMCACHE_MIN_POOL, 0,
		VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);

	CHECK_STAT(c, VMEMCACHE_STAT_HEAP_ENTRIES, 1);
	CHECK_STAT(c, VMEMCACHE_STAT_POOL_SIZE_USED, 0);
	for (i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "key%u", i);
		CHECK_OK(vmemcache_put(c, key, strlen(key), "0123456789", 10));
	}
	CHECK_STAT(c, VMEMCACHE_STAT_PUT, 10);
	CHECK_STAT(c, VMEMCACHE_STAT_ENTRIES, 10);
	if (STATS_ENABLED) {
		CHECK(stat_of(c, VMEMCACHE_STAT_DRAM_SIZE_USED) > 0);
		CHECK(stat_of(c, VMEMCACHE_STAT_POOL_SIZE_USED) >= 100);
		CHECK(stat_of(c, VMEMCACHE_STAT_POOL_SIZE_USED) <= MiB);
	}
	for (i = 0; i < 11; i++) {
		snprintf(key, sizeof(key), "key%u", i % 10);
		CHECK_RET(vmemcache_get(c, key, strlen(key), buf, sizeof(buf),
			0, NULL), 10);
	}
	CHECK_FAIL(vmemcache_get(c, "x", 1, buf, sizeof(buf), 0, NULL), ENOENT,
		NULL);
	CHECK_FAIL(vmemcache_get(c, "y", 1, buf, sizeof(buf), 0, NULL), ENOENT,
		NULL);
	CHECK_STAT(c, VMEMCACHE_STAT_GET, 13);
	CHECK_STAT(c, VMEMCACHE_STAT_HIT, 11);
	CHECK_STAT(c, VMEMCACHE_STAT_MISS, 2);
	CHECK_STAT(c, VMEMCACHE_STAT_EVICT, 0);
	CHECK_EQ(drain(c), 10);
	CHECK_STAT(c, VMEMCACHE_STAT_EVICT, 10);
	CHECK_STAT(c, VMEMCACHE_STAT_PUT, 10);
	check_empty_after_drain(c, __LINE__);
	vmemcache_delete(c);
}

static void
test_stat_errors(void)
{
	unsigned long long v = 42;
	unsigned char small[4];
	VMEMcache *c = new_cache(VMEMCACHE_MIN_POOL, 0,
		VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);

	CHECK_FAIL(vmemcache_get_stat(c, VMEMCACHE_STAT_PUT, small,
		sizeof(small)), EINVAL,
		"wrong size of the value: 4 (should be: 8)");
	CHECK_FAIL(vmemcache_get_stat(c, VMEMCACHE_STAT_PUT, &v, 16), EINVAL,
		"wrong size of the value: 16 (should be: 8)");
	/* The size is checked first. */
	CHECK_FAIL(vmemcache_get_stat(c, VMEMCACHE_STATS_NUM, &v, 0), EINVAL,
		"wrong size of the value: 0 (should be: 8)");
	CHECK_FAIL(vmemcache_get_stat(c, VMEMCACHE_STATS_NUM, &v, sizeof(v)),
		EINVAL, "unknown value of statistic: 9");
	CHECK_FAIL(vmemcache_get_stat(c,
		(enum vmemcache_statistic)0x7fffffff, &v, sizeof(v)),
		EINVAL, "unknown value of statistic: 2147483647");
	CHECK_FAIL(vmemcache_get_stat(c, (enum vmemcache_statistic)-1, &v,
		sizeof(v)), EINVAL, "unknown value of statistic: 4294967295");
	CHECK_EQ(v, 42);
	vmemcache_delete(c);
}

/* --- callbacks: on_evict depth (SPEC 7.4, 12 item 9) ------------------------------ */

#define DEEP_LEVELS 500

struct deep {
	VMEMcache *cache;
	unsigned depth, max_depth;
	int descending;		/* cleared once DEEP_LEVELS is reached */
	uint64_t next_key;
	unsigned puts, put_failures, bad_values, callbacks;
	unsigned char *buf;	/* for reading victims back */
};

static void
deep_evict(VMEMcache *c, const void *key, size_t ksize, void *arg)
{
	struct deep *d = arg;
	uint64_t k, victim;
	size_t size, vsize = 0;
	ssize_t got;
	unsigned char *value;

	d->callbacks++;
	/* The victim is still readable, with its value intact. */
	if (ksize == sizeof(victim)) {
		memcpy(&victim, key, sizeof(victim));
		got = vmemcache_get(c, key, ksize, d->buf, 64 * KiB, 0, &vsize);
		if (got < 0 || (size_t)got != vsize ||
				!matches(d->buf, victim, 0, vsize))
			d->bad_values++;
	} else {
		d->bad_values++;
	}
	if (!d->descending)
		return;
	if (d->depth == DEEP_LEVELS) {
		d->descending = 0;
		return;
	}
	d->depth++;
	if (d->depth > d->max_depth)
		d->max_depth = d->depth;
	k = d->next_key++;
	size = 128 + (size_t)(rnd() % (64 * KiB - 128 + 1));
	/* Each level has its own value: deeper levels run inside this put. */
	value = malloc(size);
	if (value == NULL) {
		d->put_failures++;
	} else {
		fill(value, k, size);
		/* This put needs room, so it evicts, and we come back here. */
		if (vmemcache_put(c, &k, sizeof(k), value, size) != 0)
			d->put_failures++;
		free(value);
	}
	d->puts++;
	d->depth--;
}

static void
test_evict_deep(void)
{
	struct deep d;
	uint64_t k;
	unsigned char small[128];
	VMEMcache *c = new_cache(VMEMCACHE_MIN_POOL, 0,
		VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);

	memset(&d, 0, sizeof(d));
	d.buf = malloc(64 * KiB);
	REQUIRE(d.buf != NULL);
	vmemcache_callback_on_evict(c, deep_evict, &d);

	/* Fill the pool with small values: enough victims for every level. */
	for (k = 0; d.callbacks == 0; k++) {
		fill(small, k, sizeof(small));
		CHECK_OK(vmemcache_put(c, &k, sizeof(k), small, sizeof(small)));
		REQUIRE(k < 100000);
	}
	d.next_key = 1u << 20;
	d.descending = 1;
	d.callbacks = 0;
	fill(small, k, sizeof(small));
	CHECK_OK(vmemcache_put(c, &k, sizeof(k), small, sizeof(small)));
	CHECK_EQ(d.max_depth, DEEP_LEVELS);
	CHECK_EQ(d.puts, DEEP_LEVELS);
	CHECK_EQ(d.put_failures, 0);
	CHECK_EQ(d.bad_values, 0);
	CHECK_EQ(d.depth, 0);

	vmemcache_callback_on_evict(c, NULL, NULL);
	drain(c);
	check_empty_after_drain(c, __LINE__);
	vmemcache_delete(c);
	free(d.buf);
}

/* --- callbacks: on_miss (SPEC 7.2, decisions 14 #1-#3) --------------------------- */

struct miss {
	VMEMcache *target;	/* where the callback puts (NULL: same cache) */
	const char *value;
	size_t value_size;
	int put_result;
	int put_errno;
	unsigned calls;
	/* Nested get from inside the callback. */
	const char *inner_key;
	ssize_t inner_result;
	char inner_buf[16];
	int skip_put;
};

static void
miss_put(VMEMcache *c, const void *key, size_t ksize, void *arg)
{
	struct miss *m = arg;
	m->calls++;
	if (m->inner_key != NULL) {
		const char *inner = m->inner_key;
		m->inner_key = NULL; /* the inner miss puts its own key */
		memset(m->inner_buf, 0, sizeof(m->inner_buf));
		m->inner_result = vmemcache_get(c, inner, strlen(inner),
			m->inner_buf, sizeof(m->inner_buf), 0, NULL);
		m->inner_key = inner;
	}
	if (m->skip_put)
		return;
	errno = 0;
	m->put_result = vmemcache_put(m->target ? m->target : c, key, ksize,
		m->value, m->value_size);
	m->put_errno = errno;
}

/* An on_miss that puts the key "other", whatever was asked for. */
static void
miss_put_other(VMEMcache *c, const void *key, size_t ksize, void *arg)
{
	struct miss *m = arg;
	(void) key;
	(void) ksize;
	m->calls++;
	m->put_result = vmemcache_put(c, "other", 5, m->value, m->value_size);
}

static void
test_on_miss(void)
{
	char buf[32];
	size_t vsize;
	struct miss m;
	VMEMcache *c = new_cache(VMEMCACHE_MIN_POOL, 0,
		VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);

	memset(&m, 0, sizeof(m));
	m.value = "0123456789";
	m.value_size = 10;
	vmemcache_callback_on_miss(c, miss_put, &m);

	/* Satisfied from the offset on, like a hit (decision 14 #1). */
	memset(buf, 0, sizeof(buf));
	vsize = 0;
	CHECK_RET(vmemcache_get(c, "k1", 2, buf, 4, 3, &vsize), 4);
	CHECK_STR(buf, "3456");
	CHECK_EQ(vsize, 10);
	CHECK_EQ(m.calls, 1);
	CHECK_EQ(m.put_result, 0);
	/* Now it is a plain hit: the callback is not called. */
	memset(buf, 0, sizeof(buf));
	CHECK_RET(vmemcache_get(c, "k1", 2, buf, 4, 3, &vsize), 4);
	CHECK_STR(buf, "3456");
	CHECK_EQ(m.calls, 1);

	/* A NULL buffer: the clamped length all the same (kept, #2). */
	vsize = 0;
	CHECK_RET(vmemcache_get(c, "k2", 2, NULL, 4, 3, &vsize), 4);
	CHECK_EQ(vsize, 10);
	/* The offset past the end: 0. */
	CHECK_RET(vmemcache_get(c, "k3", 2, buf, 4, 20, &vsize), 0);
	CHECK_EQ(vsize, 10);

	/* A value larger than the cache: the put fails, the get succeeds. */
	{
		size_t big = 3 * MiB;
		char *value = malloc(big);
		REQUIRE(value != NULL);
		memset(value, 'B', big);
		memcpy(value, "big value", 9);
		m.value = value;
		m.value_size = big;
		memset(buf, 0, sizeof(buf));
		vsize = 0;
		errno = 0;
		CHECK_EQ(vmemcache_get(c, "huge", 4, buf, 8, 0, &vsize), 8);
		CHECK_EQ(m.put_result, -1);
		CHECK_EQ(m.put_errno, ENOSPC);
		CHECK_EQ(vsize, big);
		CHECK(memcmp(buf, "big valu", 8) == 0);
		CHECK_RET(vmemcache_exists(c, "huge", 4, NULL), 0);
		free(value);
		m.value = "0123456789";
		m.value_size = 10;
	}

	/* No callback: a plain miss. */
	vmemcache_callback_on_miss(c, NULL, NULL);
	CHECK_FAIL(vmemcache_get(c, "k4", 2, buf, 4, 0, &vsize), ENOENT, NULL);
	vmemcache_delete(c);
}

static void
test_on_miss_nested(void)
{
	char buf[16];
	size_t vsize;
	struct miss m;
	VMEMcache *c = new_cache(VMEMCACHE_MIN_POOL, 0,
		VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);

	/*
	 * The outer miss gets another missing key; that inner miss is
	 * satisfied by its own put, and the outer one by the outer put,
	 * each into its own buffer (decision 14 #3).
	 */
	memset(&m, 0, sizeof(m));
	m.value = "abcdef";
	m.value_size = 6;
	m.inner_key = "inner";
	vmemcache_callback_on_miss(c, miss_put, &m);
	memset(buf, 0, sizeof(buf));
	vsize = 0;
	CHECK_RET(vmemcache_get(c, "outer", 5, buf, sizeof(buf), 1, &vsize), 5);
	CHECK_STR(buf, "bcdef");
	CHECK_EQ(vsize, 6);
	CHECK_EQ(m.inner_result, 6);
	CHECK_STR(m.inner_buf, "abcdef");
	CHECK_EQ(m.calls, 2);

	/*
	 * An inner miss nobody satisfies does not make the outer get believe
	 * it was satisfied (the original returned the inner buffer size).
	 */
	m.calls = 0;
	m.inner_key = "inner2";
	m.skip_put = 1;
	memset(buf, 0, sizeof(buf));
	CHECK_FAIL(vmemcache_get(c, "outer2", 6, buf, sizeof(buf), 0, &vsize),
		ENOENT, NULL);
	CHECK_EQ(m.inner_result, -1);
	CHECK_EQ(m.calls, 2);
	CHECK_EQ(buf[0], 0);

	/* A put of another key does not satisfy the get. */
	memset(&m, 0, sizeof(m));
	m.value = "xyz";
	m.value_size = 3;
	vmemcache_callback_on_miss(c, miss_put_other, &m);
	memset(buf, 0, sizeof(buf));
	CHECK_FAIL(vmemcache_get(c, "mine", 4, buf, sizeof(buf), 0, &vsize),
		ENOENT, NULL);
	CHECK_EQ(m.calls, 1);
	CHECK_EQ(m.put_result, 0);
	CHECK_EQ(buf[0], 0);
	CHECK_RET(vmemcache_get(c, "other", 5, buf, sizeof(buf), 0, &vsize), 3);
	CHECK_EQ(m.calls, 1);
	vmemcache_delete(c);
}

static void
test_on_miss_cross_cache(void)
{
	char buf[16];
	size_t vsize = 0;
	struct miss m;
	VMEMcache *a = new_cache(VMEMCACHE_MIN_POOL, 0,
		VMEMCACHE_REPLACEMENT_LRU);
	VMEMcache *b = other_cache(VMEMCACHE_MIN_POOL);
	if (a == NULL || b == NULL) {
		vmemcache_delete(a);
		vmemcache_delete(b);
		REQUIRE(0);
	}

	/* A put of the key into another cache satisfies the get too. */
	memset(&m, 0, sizeof(m));
	m.target = b;
	m.value = "elsewhere";
	m.value_size = 9;
	vmemcache_callback_on_miss(a, miss_put, &m);
	memset(buf, 0, sizeof(buf));
	CHECK_RET(vmemcache_get(a, "key", 3, buf, sizeof(buf), 0, &vsize), 9);
	CHECK_STR(buf, "elsewhere");
	CHECK_RET(vmemcache_exists(a, "key", 3, NULL), 0);
	CHECK_RET(vmemcache_exists(b, "key", 3, NULL), 1);
	CHECK_STAT(a, VMEMCACHE_STAT_MISS, 1);
	CHECK_STAT(a, VMEMCACHE_STAT_PUT, 0);
	CHECK_STAT(b, VMEMCACHE_STAT_PUT, 1);
	vmemcache_delete(a);
	vmemcache_delete(b);
}

static void
test_on_miss_stats(void)
{
	char key[16], buf[16];
	unsigned i;
	struct miss m;
	VMEMcache *c = new_cache(VMEMCACHE_MIN_POOL, 0,
		VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);

	memset(&m, 0, sizeof(m));
	m.value = "value";
	m.value_size = 5;
	vmemcache_callback_on_miss(c, miss_put, &m);
	for (i = 0; i < 7; i++) {
		snprintf(key, sizeof(key), "k%u", i);
		CHECK_RET(vmemcache_get(c, key, strlen(key), buf, sizeof(buf),
			0, NULL), 5);
	}
	/* Gets satisfied by on_miss count as misses, never as hits. */
	CHECK_STAT(c, VMEMCACHE_STAT_PUT, 7);
	CHECK_STAT(c, VMEMCACHE_STAT_GET, 7);
	CHECK_STAT(c, VMEMCACHE_STAT_MISS, 7);
	CHECK_STAT(c, VMEMCACHE_STAT_HIT, 0);
	CHECK_STAT(c, VMEMCACHE_STAT_ENTRIES, 7);
	vmemcache_delete(c);
}

/* Callbacks registered before add, switched later, not run by delete. */
static void
test_callback_registration(void)
{
	struct evict_log log = {0}, log2 = {0};
	VMEMcache *c = vmemcache_new();
	REQUIRE(c != NULL);
	CHECK_OK(vmemcache_set_size(c, VMEMCACHE_MIN_POOL));
	vmemcache_callback_on_evict(c, log_evict, &log);
	CHECK_OK(vmemcache_add(c, pool_path));
	CHECK_OK(vmemcache_put(c, "a", 1, "1", 1));
	CHECK_OK(vmemcache_evict(c, "a", 1));
	CHECK_EQ(log.count, 1);
	vmemcache_callback_on_evict(c, log_evict, &log2);
	CHECK_OK(vmemcache_put(c, "b", 1, "1", 1));
	CHECK_OK(vmemcache_evict(c, NULL, 0));
	CHECK_EQ(log.count, 1);
	CHECK_EQ(log2.count, 1);
	CHECK_OK(vmemcache_put(c, "c", 1, "1", 1));
	vmemcache_delete(c);
	CHECK_EQ(log2.count, 1);
}

/* --- compatibility requirements (SPEC 12) ------------------------------------------ */

/* Item 1: capacity arithmetic with 512 KiB values. */
static void
test_capacity(void)
{
	static const struct {
		size_t pool;
		unsigned fit;
	} cases[] = {{1 * MiB, 1}, {10 * MiB, 19}};
	size_t c_i;
	unsigned char *value = malloc(MiB + 1);
	REQUIRE(value != NULL);
	memset(value, 'v', MiB + 1);

	for (c_i = 0; c_i < sizeof(cases) / sizeof(cases[0]); c_i++) {
		unsigned n;
		struct evict_log log = {0};
		VMEMcache *c = new_cache(cases[c_i].pool, 0,
			VMEMCACHE_REPLACEMENT_NONE);
		if (c == NULL)
			break;
		for (n = 0; n < cases[c_i].fit; n++)
			CHECK_OK(vmemcache_put(c, &n, sizeof(n), value,
				512 * KiB));
		CHECK_FAIL(vmemcache_put(c, &n, sizeof(n), value, 512 * KiB),
			ENOSPC, "no element to evict");
		vmemcache_delete(c);

		/* Under LRU, one more value evicts exactly one. */
		c = new_cache(cases[c_i].pool, 0, VMEMCACHE_REPLACEMENT_LRU);
		if (c == NULL)
			break;
		vmemcache_callback_on_evict(c, log_evict, &log);
		for (n = 0; n <= cases[c_i].fit; n++)
			CHECK_OK(vmemcache_put(c, &n, sizeof(n), value,
				512 * KiB));
		CHECK_EQ(log.count, 1);
		vmemcache_delete(c);
	}

	/*
	 * Values that can never fit fail at once, evicting nothing (decision
	 * 14 #6); one larger than the pool is never even read.
	 */
	{
		struct evict_log log = {0};
		unsigned char small[256];
		VMEMcache *c = new_cache(MiB, 0, VMEMCACHE_REPLACEMENT_LRU);
		if (c != NULL) {
			vmemcache_callback_on_evict(c, log_evict, &log);
			CHECK_OK(vmemcache_put(c, "a", 1, "1", 1));
			CHECK_FAIL(vmemcache_put(c, "b", 1, value, MiB), ENOSPC,
				"value larger than entire cache");
			CHECK_FAIL(vmemcache_put(c, "c", 1, small, MiB + 1),
				ENOSPC, "value larger than entire cache");
			CHECK_EQ(log.count, 0);
			CHECK_RET(vmemcache_exists(c, "a", 1, NULL), 1);
			/* An empty value takes no pool space. */
			CHECK_OK(vmemcache_put(c, "empty", 5, NULL, 0));
			{
				size_t vsize = 99;
				CHECK_RET(vmemcache_get(c, "empty", 5, small,
					sizeof(small), 0, &vsize), 0);
				CHECK_EQ(vsize, 0);
			}
			vmemcache_delete(c);
		}
	}
	free(value);
}

/* The default pool is 1 MiB. */
static void
test_default_size(void)
{
	static unsigned char value[512 * 1024];
	VMEMcache *c;
	if (pool_is_dax)
		return; /* the default there is the whole device */
	c = vmemcache_new();
	REQUIRE(c != NULL);
	CHECK_OK(vmemcache_set_eviction_policy(c, VMEMCACHE_REPLACEMENT_NONE));
	CHECK_OK(vmemcache_add(c, pool_path));
	CHECK_OK(vmemcache_put(c, "1", 1, value, sizeof(value)));
	CHECK_FAIL(vmemcache_put(c, "2", 1, value, sizeof(value)), ENOSPC,
		"no element to evict");
	vmemcache_delete(c);
}

/* Item 2: space utilisation under random sizes. */
static void
test_utilisation(void)
{
	enum { PUTS = 6000 };
	struct evict_log log = {0};
	unsigned char *value = malloc(70 * 256);
	char key[32];
	unsigned i;
	double worst = 1.0;
	VMEMcache *c = new_cache(MiB, 256, VMEMCACHE_REPLACEMENT_LRU);
	if (c == NULL || value == NULL) {
		vmemcache_delete(c);
		free(value);
		REQUIRE(0);
	}
	vmemcache_callback_on_evict(c, log_evict, &log);
	memset(value, 'u', 70 * 256);

	for (i = 0; i < PUTS; i++) {
		size_t size = 256 * (1 + (size_t)(rnd() % 70));
		snprintf(key, sizeof(key), "%u", i);
		CHECK_OK(vmemcache_put(c, key, strlen(key), value, size));
		if (log.count > 0 && STATS_ENABLED) {
			double used = (double)stat_of(c,
				VMEMCACHE_STAT_POOL_SIZE_USED) / (double)MiB;
			if (used < worst)
				worst = used;
		}
	}
	CHECK(log.count > 0);
	if (worst < 0.87)
		failed(__FILE__, __LINE__, "utilisation fell to %.3f (< 0.87)",
			worst);
	printf("    utilisation after the first eviction: >= %.3f\n", worst);
	vmemcache_delete(c);
	free(value);
}

/* Item 5: draining removes everything, recently used entries included. */
static void
test_drain(void)
{
	char key[16], buf[64];
	unsigned i, n = 300;
	VMEMcache *c = new_cache(MiB, 0, VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);

	for (i = 0; i < n; i++) {
		size_t size = 1 + (size_t)(rnd() % 3000);
		unsigned char value[3000];
		fill(value, i, size);
		snprintf(key, sizeof(key), "%u", i);
		CHECK_OK(vmemcache_put(c, key, strlen(key), value, size));
	}
	for (i = 0; i < n; i += 3) {
		snprintf(key, sizeof(key), "%u", i);
		CHECK_RET(vmemcache_get(c, key, strlen(key), buf, 10, 0,
			NULL) >= 0, 1);
	}
	CHECK_EQ(drain(c), n);
	CHECK_FAIL(vmemcache_evict(c, NULL, 0), ESRCH, "no element to evict");
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "%u", i);
		CHECK_RET(vmemcache_exists(c, key, strlen(key), NULL), 0);
	}
	check_empty_after_drain(c, __LINE__);
	vmemcache_delete(c);
}

/* Item 6: a used entry moves behind unused ones. */
static void
test_recency(void)
{
	struct evict_log log = {0};
	char key[8], buf[8];
	unsigned i;
	VMEMcache *c = new_cache(MiB, 0, VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);
	vmemcache_callback_on_evict(c, log_evict, &log);

	for (i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "#%u", i);
		CHECK_OK(vmemcache_put(c, key, strlen(key), key, strlen(key)));
	}
	CHECK_OK(vmemcache_evict(c, "#5", 2));
	CHECK_STR(log.last, "#5");
	CHECK_OK(vmemcache_evict(c, NULL, 0));
	CHECK_STR(log.last, "#0");
	CHECK_RET(vmemcache_get(c, "#1", 2, buf, sizeof(buf), 0, NULL), 2);
	CHECK_OK(vmemcache_evict(c, NULL, 0));
	CHECK_STR(log.last, "#2");
	CHECK_EQ(log.count, 3);
	vmemcache_delete(c);
}

/* Item 8: the benchmark knobs (SPEC 10, decision 14 #9). */
static void
test_bench_knobs(void)
{
	unsigned char value[1000], buf[1000];
	size_t vsize;
	unsigned long long pool_before;
	VMEMcache *c = new_cache(MiB, 0, VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);
	fill(value, 9, sizeof(value));

	/* INDEX_ONLY: indexed with size 0, nothing stored or copied. */
	CHECK_VOID(vmemcache_bench_set(c, VMEMCACHE_BENCH_INDEX_ONLY, 1));
	CHECK_OK(vmemcache_put(c, "io", 2, value, sizeof(value)));
	vsize = 555;
	CHECK_RET(vmemcache_exists(c, "io", 2, &vsize), 1);
	CHECK_EQ(vsize, 0);
	vsize = 555;
	memset(buf, 0xEE, sizeof(buf));
	CHECK_RET(vmemcache_get(c, "io", 2, buf, sizeof(buf), 0, &vsize), 0);
	CHECK_EQ(vsize, 555);
	CHECK_EQ(buf[0], 0xEE);
	CHECK_STAT(c, VMEMCACHE_STAT_POOL_SIZE_USED, 0);
	CHECK_VOID(vmemcache_bench_set(c, VMEMCACHE_BENCH_INDEX_ONLY, 0));

	/* NO_ALLOC: indexed and evictable, no pool space, nothing stored. */
	CHECK_VOID(vmemcache_bench_set(c, VMEMCACHE_BENCH_NO_ALLOC, 1));
	CHECK_OK(vmemcache_put(c, "na", 2, value, sizeof(value)));
	CHECK_STAT(c, VMEMCACHE_STAT_POOL_SIZE_USED, 0);
	vsize = 0;
	CHECK_RET(vmemcache_exists(c, "na", 2, &vsize), 1);
	CHECK_EQ(vsize, sizeof(value));
	vsize = 0;
	CHECK_RET(vmemcache_get(c, "na", 2, buf, 100, 0, &vsize), 100);
	CHECK_EQ(vsize, sizeof(value));
	CHECK_VOID(vmemcache_bench_set(c, VMEMCACHE_BENCH_NO_ALLOC, 0));
	CHECK_OK(vmemcache_evict(c, NULL, 0));
	CHECK_RET(vmemcache_exists(c, "na", 2, NULL), 0);

	/* NO_MEMCPY: pool space is taken, no bytes move either way. */
	CHECK_VOID(vmemcache_bench_set(c, VMEMCACHE_BENCH_NO_MEMCPY, 1));
	pool_before = stat_of(c, VMEMCACHE_STAT_POOL_SIZE_USED);
	CHECK_OK(vmemcache_put(c, "nm", 2, value, sizeof(value)));
	if (STATS_ENABLED)
		CHECK(stat_of(c, VMEMCACHE_STAT_POOL_SIZE_USED) >=
			pool_before + sizeof(value));
	memset(buf, 0xEE, sizeof(buf));
	vsize = 0;
	CHECK_RET(vmemcache_get(c, "nm", 2, buf, sizeof(buf), 0, &vsize),
		sizeof(value));
	CHECK_EQ(vsize, sizeof(value));
	CHECK_EQ(buf[0], 0xEE);
	CHECK_EQ(buf[999], 0xEE);
	CHECK_VOID(vmemcache_bench_set(c, VMEMCACHE_BENCH_NO_MEMCPY, 0));

	/* PREFAULT touches the pool without changing what it holds. */
	CHECK_OK(vmemcache_put(c, "pf", 2, value, sizeof(value)));
	CHECK_VOID(vmemcache_bench_set(c, VMEMCACHE_BENCH_PREFAULT, 0));
	memset(buf, 0, sizeof(buf));
	CHECK_RET(vmemcache_get(c, "pf", 2, buf, sizeof(buf), 0, NULL),
		sizeof(value));
	CHECK(matches(buf, 9, 0, sizeof(value)));

	/* Unknown switches: a message, errno unchanged, no effect. */
	set_known_message();
	CHECK_VOID(vmemcache_bench_set(c, (enum vmemcache_bench_cfg)7, 1));
	CHECK_MSG("invalid config parameter: 7");
	vmemcache_delete(c);
}

/* --- bad input (decisions 14 #7, #8) --------------------------------------------- */

static void
dummy_callback(VMEMcache *c, const void *key, size_t ksize, void *arg)
{
	(void) c; (void) key; (void) ksize; (void) arg;
}

static void
test_bad_input(void)
{
	char buf[8];
	size_t vsize = 0;
	unsigned long long v = 0;
	static const char *not_ready =
		"the cache is not initialized (vmemcache_add has not succeeded)";
	VMEMcache *c;

	/* A NULL cache everywhere. */
	CHECK_FAIL(vmemcache_set_eviction_policy(NULL,
		VMEMCACHE_REPLACEMENT_LRU), EINVAL, "invalid (NULL) cache");
	CHECK_FAIL(vmemcache_set_size(NULL, MiB), EINVAL,
		"invalid (NULL) cache");
	CHECK_FAIL(vmemcache_set_extent_size(NULL, 256), EINVAL,
		"invalid (NULL) cache");
	CHECK_FAIL(vmemcache_add(NULL, pool_path), EINVAL,
		"invalid (NULL) cache");
	CHECK_FAIL(vmemcache_put(NULL, "k", 1, "v", 1), EINVAL,
		"invalid (NULL) cache");
	CHECK_FAIL(vmemcache_get(NULL, "k", 1, buf, sizeof(buf), 0, &vsize),
		EINVAL, "invalid (NULL) cache");
	CHECK_FAIL(vmemcache_exists(NULL, "k", 1, &vsize), EINVAL,
		"invalid (NULL) cache");
	CHECK_FAIL(vmemcache_evict(NULL, "k", 1), EINVAL,
		"invalid (NULL) cache");
	CHECK_FAIL(vmemcache_evict(NULL, NULL, 0), EINVAL,
		"invalid (NULL) cache");
	CHECK_FAIL(vmemcache_get_stat(NULL, VMEMCACHE_STAT_PUT, &v, sizeof(v)),
		EINVAL, "invalid (NULL) cache");
	errno = 0;
	vmemcache_callback_on_evict(NULL, dummy_callback, NULL);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	vmemcache_callback_on_miss(NULL, dummy_callback, NULL);
	CHECK_EQ(errno, EINVAL);
	CHECK_VOID(vmemcache_bench_set(NULL, VMEMCACHE_BENCH_PREFAULT, 0));
	CHECK_VOID(vmemcache_delete(NULL));

	/* Everything but configuration before add. */
	c = vmemcache_new();
	REQUIRE(c != NULL);
	CHECK_OK(vmemcache_set_size(c, MiB));
	CHECK_FAIL(vmemcache_put(c, "k", 1, "v", 1), EINVAL, not_ready);
	CHECK_FAIL(vmemcache_put(c, "k", 1, buf, 2 * MiB), EINVAL, not_ready);
	CHECK_FAIL(vmemcache_get(c, "k", 1, buf, sizeof(buf), 0, &vsize),
		EINVAL, not_ready);
	CHECK_FAIL(vmemcache_exists(c, "k", 1, &vsize), EINVAL, not_ready);
	CHECK_FAIL(vmemcache_evict(c, "k", 1), EINVAL, not_ready);
	CHECK_FAIL(vmemcache_evict(c, NULL, 0), EINVAL, not_ready);
	CHECK_FAIL(vmemcache_get_stat(c, VMEMCACHE_STAT_PUT, &v, sizeof(v)),
		EINVAL, not_ready);
	set_known_message();
	CHECK_VOID(vmemcache_bench_set(c, VMEMCACHE_BENCH_PREFAULT, 0));
	CHECK_VOID(vmemcache_bench_set(c, VMEMCACHE_BENCH_INDEX_ONLY, 1));
	CHECK_MSG(KNOWN_MESSAGE);
	CHECK_OK(vmemcache_add(c, pool_path));
	/* The ignored switch did not take effect. */
	CHECK_OK(vmemcache_put(c, "k", 1, "v", 1));
	vsize = 0;
	CHECK_RET(vmemcache_exists(c, "k", 1, &vsize), 1);
	CHECK_EQ(vsize, 1);

	/* NULL keys and values with a size. */
	CHECK_FAIL(vmemcache_put(c, NULL, 3, "v", 1), EINVAL,
		"invalid (NULL) key");
	CHECK_FAIL(vmemcache_put(c, "k2", 2, NULL, 1), EINVAL,
		"invalid (NULL) value");
	CHECK_FAIL(vmemcache_get(c, NULL, 3, buf, sizeof(buf), 0, &vsize),
		EINVAL, "invalid (NULL) key");
	CHECK_FAIL(vmemcache_exists(c, NULL, 3, &vsize), EINVAL,
		"invalid (NULL) key");
	CHECK_FAIL(vmemcache_get_stat(c, VMEMCACHE_STAT_PUT, NULL, 8), EINVAL,
		"invalid (NULL) value");
	/* A NULL value of size 0 is an empty value. */
	CHECK_OK(vmemcache_put(c, "k3", 2, NULL, 0));
	vsize = 9;
	CHECK_RET(vmemcache_get(c, "k3", 2, buf, sizeof(buf), 0, &vsize), 0);
	CHECK_EQ(vsize, 0);
	vmemcache_delete(c);
}

/* --- VMEMCACHE_SHARDING (decision 14 #17) --------------------------------------- */

static void
test_sharding_invalid(void)
{
	const char *value = getenv("VMEMCACHE_SHARDING");
	VMEMcache *c = vmemcache_new();
	REQUIRE(c != NULL);
	REQUIRE(value != NULL);
	CHECK_FAIL(vmemcache_add(c, pool_path), EINVAL, NULL);
	if (strstr(vmemcache_errormsg(), "VMEMCACHE_SHARDING") == NULL ||
			strstr(vmemcache_errormsg(), value) == NULL)
		failed(__FILE__, __LINE__, "message \"%s\" does not name "
			"VMEMCACHE_SHARDING and \"%s\"", vmemcache_errormsg(),
			value);
	vmemcache_delete(c);
}

/* --- threads (SPEC 12 item 7), small ---------------------------------------------- */

#define THREADS 4
#define THREAD_OPS 50000	/* per thread; CONFORMANCE_THREAD_OPS overrides */
#define THREAD_KEYS 2000

struct worker {
	VMEMcache *cache;
	unsigned id;
	unsigned bad_values, unexpected;
	uint64_t rng;
};

static void
thread_miss(VMEMcache *c, const void *key, size_t ksize, void *arg)
{
	unsigned char value[2048];
	uint64_t k;
	(void) arg;
	if (ksize != sizeof(k))
		return;
	memcpy(&k, key, sizeof(k));
	fill(value, k, 64 + k % 1984);
	(void) vmemcache_put(c, key, ksize, value, 64 + k % 1984);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned char value[2048], buf[2048];
	unsigned i, ops = THREAD_OPS;
	const char *env = getenv("CONFORMANCE_THREAD_OPS");

	/* Runs under valgrind's checkers take fewer. */
	if (env != NULL)
		ops = (unsigned)strtoul(env, NULL, 0);
	for (i = 0; i < ops; i++) {
		uint64_t x, k;
		size_t size, vsize;
		ssize_t got;
		int r;
		w->rng ^= w->rng << 13;
		w->rng ^= w->rng >> 7;
		w->rng ^= w->rng << 17;
		x = w->rng;
		k = x % THREAD_KEYS;
		size = 64 + k % 1984;
		switch ((x >> 32) % 8) {
		case 0: case 1: case 2:
			fill(value, k, size);
			errno = 0;
			r = vmemcache_put(w->cache, &k, sizeof(k), value, size);
			/* ENOSPC: every entry was claimed by others. */
			if (r != 0 && errno != EEXIST && errno != ENOSPC)
				w->unexpected++;
			break;
		case 3: case 4: case 5: case 6:
			vsize = 0;
			errno = 0;
			got = vmemcache_get(w->cache, &k, sizeof(k), buf,
				sizeof(buf), 0, &vsize);
			if (got < 0 && errno != ENOENT)
				w->unexpected++;
			if (got >= 0 && ((size_t)got != size || vsize != size ||
					!matches(buf, k, 0, size)))
				w->bad_values++;
			break;
		default:
			errno = 0;
			if ((x >> 40) & 1)
				r = vmemcache_evict(w->cache, &k, sizeof(k));
			else
				r = vmemcache_evict(w->cache, NULL, 0);
			if (r != 0 && errno != ENOENT && errno != EAGAIN &&
					errno != ESRCH)
				w->unexpected++;
			break;
		}
	}
	return NULL;
}

static void
test_threads(void)
{
	pthread_t t[THREADS];
	struct worker w[THREADS];
	unsigned i, bad = 0, unexpected = 0;
	VMEMcache *c = new_cache(2 * MiB, 0, VMEMCACHE_REPLACEMENT_LRU);
	REQUIRE(c != NULL);
	vmemcache_callback_on_miss(c, thread_miss, NULL);

	for (i = 0; i < THREADS; i++) {
		w[i].cache = c;
		w[i].id = i;
		w[i].bad_values = w[i].unexpected = 0;
		w[i].rng = 0x12345678ULL * (i + 1) + 1;
		if (pthread_create(&t[i], NULL, worker_main, &w[i]) != 0) {
			failed(__FILE__, __LINE__, "pthread_create");
			break;
		}
	}
	while (i-- > 0) {
		pthread_join(t[i], NULL);
		bad += w[i].bad_values;
		unexpected += w[i].unexpected;
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(unexpected, 0);
	drain(c);
	check_empty_after_drain(c, __LINE__);
	vmemcache_delete(c);
}

/* --- main ---------------------------------------------------------------------------- */

static const struct test {
	const char *name;
	void (*fn)(void);
	int by_default;
} tests[] = {
	{"setters", test_setters, 1},
	{"add_paths", test_add_paths, 1},
	{"extent_larger_than_default_pool",
		test_extent_larger_than_default_pool, 1},
	{"get_offsets", test_get_offsets, 1},
	{"exists", test_exists, 1},
	{"keys", test_keys, 1},
	{"evict", test_evict, 1},
	{"evict_not_in_lru", test_evict_not_in_lru, 1},
	{"policy_none", test_policy_none, 1},
	{"errno_untouched", test_errno_untouched, 1},
	{"errormsg_per_thread", test_errormsg_per_thread, 1},
	{"stats_sequence", test_stats_sequence, 1},
	{"stat_errors", test_stat_errors, 1},
	{"evict_deep", test_evict_deep, 1},
	{"on_miss", test_on_miss, 1},
	{"on_miss_nested", test_on_miss_nested, 1},
	{"on_miss_cross_cache", test_on_miss_cross_cache, 1},
	{"on_miss_stats", test_on_miss_stats, 1},
	{"callback_registration", test_callback_registration, 1},
	{"capacity", test_capacity, 1},
	{"default_size", test_default_size, 1},
	{"utilisation", test_utilisation, 1},
	{"drain", test_drain, 1},
	{"recency", test_recency, 1},
	{"bench_knobs", test_bench_knobs, 1},
	{"bad_input", test_bad_input, 1},
	{"threads", test_threads, 1},
	{"sharding_invalid", test_sharding_invalid, 0},
};

static void
run(const struct test *t)
{
	int before = failures;
	printf("%s\n", t->name);
	fflush(stdout);
	t->fn();
	if (failures != before)
		printf("    FAILED (%d)\n", failures - before);
	fflush(stdout);
}

int
main(int argc, char *argv[])
{
	struct stat st;
	size_t i;
	int a;

	if (argc < 3) {
		fprintf(stderr, "usage: %s POOL SCRATCH [TEST...]\n", argv[0]);
		return 2;
	}
	pool_path = argv[1];
	scratch_dir = argv[2];
	pool_is_dax = stat(pool_path, &st) == 0 && S_ISCHR(st.st_mode);
	printf("conformance: pool %s%s, statistics %s\n", pool_path,
		pool_is_dax ? " (device DAX)" : "",
		STATS_ENABLED ? "on" : "off (all must read 0)");

	if (argc == 3) {
		for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			if (tests[i].by_default)
				run(&tests[i]);
	}
	for (a = 3; a < argc; a++) {
		for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			if (strcmp(argv[a], tests[i].name) == 0)
				break;
		if (i == sizeof(tests) / sizeof(tests[0])) {
			fprintf(stderr, "no test named %s\n", argv[a]);
			return 2;
		}
		run(&tests[i]);
	}

	if (failures) {
		printf("%d check(s) failed\n", failures);
		return failures < 100 ? failures : 100;
	}
	printf("all checks passed\n");
	return 0;
}

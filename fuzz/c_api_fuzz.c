/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * c_api_fuzz.c -- libFuzzer target: random operation sequences through the
 * C functions, checked against a model after every step.
 *
 * The input is read as a configuration (pool size, extent size, policy)
 * followed by operations: puts of keys of 0 to 1500 bytes with values of 0
 * bytes to more than the pool (a NULL value for an empty one), gets with
 * random offsets and buffer sizes (NULL buffers too), gets whose miss
 * on_miss fills, exists, evictions by key and of the LRU victim, and
 * get_stat with good and bad arguments. The model knows, for each of a few
 * keys, whether it is present and its value (length and generation; every
 * byte follows from them). Entries the cache evicts on its own are
 * reported by on_evict and leave the model. After every step: every answer
 * and errno as the contract says, errno untouched by successful calls,
 * ENTRIES equal to the model's count, the key touched reading back as the
 * model says, and vmemcache_internal_validate() (the heap, index and policy
 * invariants). At the end of an input every key is read back and the cache
 * drains to empty.
 *
 * Built with clang -fsanitize=fuzzer,address against the static library
 * (cargo features c-malloc, internals), whose Rust code carries libFuzzer's
 * coverage instrumentation. Pools go to the directory in FUZZ_POOL_DIR
 * (default /tmp). Any broken rule aborts with a message.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvmemcache.h>

/* Not in the header: the static library's invariant check (internals). */
int vmemcache_internal_validate(VMEMcache *cache);

#define KEYS 32
#define MAX_KEY 1500
#define MAX_VALUE ((size_t)5 << 20)	/* beyond any pool below */
#define SENTINEL 4242

struct model_entry {
	int present;
	size_t len;
	uint64_t gen;
};

static struct model_entry model[KEYS];
static unsigned char keys[KEYS][MAX_KEY];
static size_t key_len[KEYS];
static unsigned char *value_buf, *out_buf, *expect_buf;
static VMEMcache *cache;
static int lru;
static uint64_t next_gen;
static int fill_mode;		/* on_miss puts the key */
static uint64_t fill_gen;	/* the generation it put */
static int evicted[KEYS * 4];
static int evicted_count;
static unsigned step;

/* --- input ------------------------------------------------------------------- */

static const uint8_t *in;
static size_t in_left;

static unsigned
byte(void)
{
	if (in_left == 0)
		return 0;
	in_left--;
	return *in++;
}

static size_t
u16(void)
{
	return byte() | (size_t)byte() << 8;
}

/* --- checking ----------------------------------------------------------------- */

static void
broken(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
broken(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "c_api_fuzz: step %u: ", step);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (message \"%s\")\n", vmemcache_errormsg());
	abort();
}

#define EXPECT(cond, ...) do { if (!(cond)) broken(__VA_ARGS__); } while (0)

/* --- keys and values ------------------------------------------------------------ */

static void
init_keys(void)
{
	int id;
	size_t i;
	for (id = 0; id < KEYS; id++) {
		key_len[id] = id == 0 ? 0 : id == KEYS - 1 ? MAX_KEY :
			1 + (size_t)(id * 7) % 40;
		for (i = 0; i < key_len[id]; i++)
			keys[id][i] = i == 0 ? (unsigned char)id :
				(unsigned char)(id * 31 + i);
	}
}

static int
key_id(const void *key, size_t ksize)
{
	int id;
	for (id = 0; id < KEYS; id++)
		if (key_len[id] == ksize &&
				(ksize == 0 || memcmp(keys[id], key, ksize) == 0))
			return id;
	return -1;
}

static void
make_value(unsigned char *buf, size_t len, uint64_t gen)
{
	uint64_t x = gen * 0x9e3779b97f4a7c15ULL | 1;
	size_t i;
	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (unsigned char)x;
	}
}

static size_t
fill_len(int id)
{
	return (size_t)id * 97;
}

/* --- callbacks --------------------------------------------------------------------- */

static void
on_evict(VMEMcache *c, const void *key, size_t ksize, void *arg)
{
	size_t vsize = 0;
	int id = key_id(key, ksize);
	(void) arg;
	EXPECT(c == cache && id >= 0, "on_evict of a key not ours");
	/* Still readable while the callback runs. */
	EXPECT(vmemcache_exists(c, key, ksize, &vsize) == 1,
		"on_evict: key %d is not there", id);
	EXPECT(evicted_count < (int)(sizeof(evicted) / sizeof(evicted[0])),
		"too many evictions in one step");
	evicted[evicted_count++] = id;
}

static void
on_miss(VMEMcache *c, const void *key, size_t ksize, void *arg)
{
	int id = key_id(key, ksize);
	unsigned char *v;
	(void) arg;
	EXPECT(c == cache && id >= 0, "on_miss of a key not ours");
	if (!fill_mode)
		return;
	v = malloc(fill_len(id) + 1);
	EXPECT(v != NULL, "out of memory");
	fill_gen = next_gen++;
	make_value(v, fill_len(id), fill_gen);
	/* May fail for lack of room (NONE): the get is satisfied anyway. */
	(void) vmemcache_put(c, key, ksize, v, fill_len(id));
	free(v);
}

/* --- model upkeep ------------------------------------------------------------------- */

static unsigned long long
stat_of(enum vmemcache_statistic s)
{
	unsigned long long v = ~0ULL;
	errno = SENTINEL;
	EXPECT(vmemcache_get_stat(cache, s, &v, sizeof(v)) == 0,
		"get_stat %d failed", (int)s);
	EXPECT(errno == SENTINEL, "get_stat changed errno");
	return v;
}

static unsigned
model_count(void)
{
	unsigned n = 0;
	int id;
	for (id = 0; id < KEYS; id++)
		n += model[id].present != 0;
	return n;
}

/* Drops what on_evict reported; returns how many. */
static int
take_evictions(void)
{
	int i, n = evicted_count;
	for (i = 0; i < n; i++) {
		int id = evicted[i];
		EXPECT(model[id].present, "on_evict of key %d, absent in the "
			"model", id);
		EXPECT(vmemcache_exists(cache, keys[id], key_len[id], NULL) == 0,
			"key %d still there after its eviction", id);
		model[id].present = 0;
	}
	evicted_count = 0;
	return n;
}

/* exists() and a whole get of key id agree with the model. */
static void
check_key(int id)
{
	size_t vsize = SIZE_MAX;
	int r = vmemcache_exists(cache, keys[id], key_len[id], &vsize);
	if (!model[id].present) {
		EXPECT(r == 0 && vsize == SIZE_MAX, "key %d: exists %d", id, r);
		return;
	}
	EXPECT(r == 1 && vsize == model[id].len,
		"key %d: exists %d, %zu bytes, model %zu", id, r, vsize,
		model[id].len);
}

static void
check_step(void)
{
	unsigned long long entries = stat_of(VMEMCACHE_STAT_ENTRIES);
	EXPECT(entries == model_count(), "ENTRIES %llu, model %u", entries,
		model_count());
	errno = SENTINEL;
	EXPECT(vmemcache_internal_validate(cache) == 0, "invariants");
	EXPECT(errno == SENTINEL, "validate changed errno");
}

/* --- operations ----------------------------------------------------------------------- */

static size_t
value_size(size_t pool)
{
	switch (byte() % 5) {
	case 0:
		return byte();
	case 1:
		return u16();
	case 2:
		return u16() * 16;
	case 3:
		return 0;
	default:
		/* Around what the pool holds, and beyond. */
		return pool - 16384 + u16();
	}
}

static void
op_put(int id, size_t len, size_t pool, size_t extent, size_t max_value)
{
	uint64_t gen = next_gen++;
	unsigned long long used = stat_of(VMEMCACHE_STAT_POOL_SIZE_USED);
	int r, e, n;

	make_value(value_buf, len, gen);
	errno = SENTINEL;
	r = vmemcache_put(cache, keys[id], key_len[id],
		len == 0 && (gen & 1) ? NULL : value_buf, len);
	e = errno;
	n = take_evictions();
	if (len > pool || len > max_value) {
		EXPECT(r == -1 && e == ENOSPC && n == 0,
			"put of %zu bytes that never fit: %d errno %d, %d "
			"evicted", len, r, e, n);
		return;
	}
	if (model[id].present) {
		EXPECT(r == -1 && e == EEXIST && n == 0,
			"put of a present key: %d errno %d, %d evicted", r, e, n);
		return;
	}
	if (r == 0) {
		EXPECT(e == SENTINEL, "a successful put changed errno");
		model[id].present = 1;
		model[id].len = len;
		model[id].gen = gen;
		return;
	}
	EXPECT(!lru, "LRU put of %zu bytes failed: errno %d", len, e);
	EXPECT(r == -1 && e == ENOSPC && n == 0, "NONE put: %d errno %d, %d "
		"evicted", r, e, n);
	/* Any free extent anywhere serves a put: it failed for lack of them. */
	EXPECT(used + (len + extent - 1) / extent * extent > max_value,
		"NONE put of %zu bytes failed with %llu of %zu in use", len,
		used, max_value);
}

static void
op_get(int id, size_t offset, size_t bufsize, int null_buf, int fill)
{
	size_t vsize = SIZE_MAX, len, expect, i;
	uint64_t gen;
	int present_before = model[id].present, filled = 0;
	ssize_t r;
	int e;

	memset(out_buf, 0xA5, bufsize + 1);
	fill_mode = fill;
	errno = SENTINEL;
	r = vmemcache_get(cache, keys[id], key_len[id],
		null_buf ? NULL : out_buf, bufsize, offset, &vsize);
	e = errno;
	fill_mode = 0;
	take_evictions();

	if (!present_before && !fill) {
		EXPECT(r == -1 && e == ENOENT && vsize == SIZE_MAX,
			"get of an absent key: %zd errno %d", r, e);
		return;
	}
	if (!present_before) {
		/* Satisfied from on_miss: the clamped length, even without
		 * a buffer, copied from the offset. */
		filled = 1;
		len = fill_len(id);
		gen = fill_gen;
	} else {
		len = model[id].len;
		gen = model[id].gen;
	}
	expect = offset >= len ? 0 : len - offset < bufsize ? len - offset :
		bufsize;
	if (null_buf && !filled)
		expect = 0;
	EXPECT(r >= 0 && (size_t)r == expect && vsize == len,
		"get %zu/%zu%s of %zu bytes: %zd (vsize %zu), expected %zu",
		offset, bufsize, null_buf ? " NULL" : "", len, r, vsize,
		expect);
	EXPECT(e == SENTINEL, "a successful get changed errno to %d", e);
	if (!null_buf) {
		make_value(expect_buf, len, gen);
		EXPECT(expect == 0 ||
			memcmp(out_buf, expect_buf + offset, expect) == 0,
			"get returned other bytes");
		for (i = expect; i <= bufsize; i++)
			EXPECT(out_buf[i] == 0xA5, "get wrote past %zu", expect);
	}
	if (filled && vmemcache_exists(cache, keys[id], key_len[id], NULL)) {
		model[id].present = 1;
		model[id].len = len;
		model[id].gen = gen;
	} else if (filled) {
		EXPECT(!lru, "an LRU fill was not stored");
	}
}

static void
op_evict(int id)
{
	int r, e, n, present = model[id].present;
	errno = SENTINEL;
	r = vmemcache_evict(cache, keys[id], key_len[id]);
	e = errno;
	n = take_evictions();
	if (present)
		EXPECT(r == 0 && e == SENTINEL && n == 1,
			"evict of a present key: %d errno %d, %d callbacks", r,
			e, n);
	else
		EXPECT(r == -1 && e == ENOENT && n == 0,
			"evict of an absent key: %d errno %d", r, e);
}

static void
op_evict_lru(void)
{
	unsigned before = model_count();
	int r, e, n;
	errno = SENTINEL;
	r = vmemcache_evict(cache, NULL, byte());
	e = errno;
	n = take_evictions();
	if (lru && before > 0)
		EXPECT(r == 0 && e == SENTINEL && n == 1,
			"LRU eviction: %d errno %d, %d callbacks", r, e, n);
	else
		EXPECT(r == -1 && e == ESRCH && n == 0,
			"eviction with nothing evictable: %d errno %d", r, e);
}

static void
op_stat(void)
{
	unsigned id = byte() % 12;
	size_t size = byte() % 4 == 0 ? byte() % 16 : 8;
	unsigned long long v = 0;
	int r, e;
	errno = SENTINEL;
	r = vmemcache_get_stat(cache, (enum vmemcache_statistic)id, &v, size);
	e = errno;
	if (size != 8 || id >= VMEMCACHE_STATS_NUM)
		EXPECT(r == -1 && e == EINVAL, "get_stat(%u, %zu): %d errno %d",
			id, size, r, e);
	else
		EXPECT(r == 0 && e == SENTINEL, "get_stat(%u): %d errno %d",
			id, r, e);
}

/* --- one input ---------------------------------------------------------------------------- */

static void
finish(void)
{
	int id;
	unsigned present = model_count(), drained = 0;
	for (id = 0; id < KEYS; id++)
		if (model[id].present)
			op_get(id, 0, model[id].len, 0, 0);
	if (lru) {
		while (vmemcache_evict(cache, NULL, 0) == 0)
			drained++;
	} else {
		for (id = 0; id < KEYS; id++)
			if (vmemcache_evict(cache, keys[id], key_len[id]) == 0)
				drained++;
	}
	EXPECT((int)drained == take_evictions() && drained == present,
		"drained %u of %u", drained, present);
	EXPECT(stat_of(VMEMCACHE_STAT_ENTRIES) == 0 &&
		stat_of(VMEMCACHE_STAT_DRAM_SIZE_USED) == 0 &&
		stat_of(VMEMCACHE_STAT_POOL_SIZE_USED) == 0 &&
		stat_of(VMEMCACHE_STAT_HEAP_ENTRIES) == 1,
		"not empty after the drain");
	check_step();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t extents[] = {256, 512, 1000, 4096, 65536, 2 << 20};
	const char *dir = getenv("FUZZ_POOL_DIR");
	size_t pool, extent, max_value;
	unsigned b;

	if (value_buf == NULL) {
		init_keys();
		value_buf = malloc(MAX_VALUE);
		out_buf = malloc(MAX_VALUE + 1);
		expect_buf = malloc(MAX_VALUE);
		if (!value_buf || !out_buf || !expect_buf)
			abort();
	}
	in = data;
	in_left = size;
	memset(model, 0, sizeof(model));
	evicted_count = 0;
	step = 0;

	pool = ((size_t)1 << 20) + (size_t)(byte() % 4) * (512 << 10);
	b = byte();
	extent = b % 8 < 6 ? extents[b % 6] : 256 + (size_t)b * 37;
	lru = byte() % 4 != 0;

	cache = vmemcache_new();
	EXPECT(cache != NULL, "vmemcache_new");
	EXPECT(vmemcache_set_size(cache, pool) == 0, "set_size");
	EXPECT(vmemcache_set_eviction_policy(cache, lru ?
		VMEMCACHE_REPLACEMENT_LRU : VMEMCACHE_REPLACEMENT_NONE) == 0,
		"set_eviction_policy");
	if (extent > pool) {
		EXPECT(vmemcache_set_extent_size(cache, extent) == 0,
			"set_extent_size");
		EXPECT(vmemcache_add(cache, dir ? dir : "/tmp") == -1 &&
			errno == EINVAL, "extent larger than the pool accepted");
		extent = 256;
	}
	EXPECT(vmemcache_set_extent_size(cache, extent) == 0, "extent");
	if (vmemcache_add(cache, dir ? dir : "/tmp") != 0) {
		fprintf(stderr, "c_api_fuzz: cannot create a cache in %s: %s\n",
			dir ? dir : "/tmp", vmemcache_errormsg());
		abort();
	}
	vmemcache_callback_on_evict(cache, on_evict, NULL);
	vmemcache_callback_on_miss(cache, on_miss, NULL);
	/*
	 * The largest value: whole extents of the pool less its 8 KiB reserve
	 * (an extent larger than that shrinks to it). This reimplementation's
	 * layout, which the contract leaves open (SPEC 8, 14 #6).
	 */
	if (extent > pool - 8192)
		extent = pool - 8192;
	max_value = (pool - 8192) / extent * extent;

	while (in_left > 0) {
		unsigned op = byte() % 16;
		int id = (int)(byte() % KEYS);
		step++;
		if (op < 5) {
			op_put(id, value_size(pool), pool, extent, max_value);
		} else if (op < 9) {
			size_t offset = byte() % 2 ? byte() : u16();
			size_t bufsize = byte() % 2 ? byte() : u16();
			op_get(id, offset, bufsize, byte() % 8 == 0, op == 8);
		} else if (op < 11) {
			check_key(id);
		} else if (op < 13) {
			op_evict(id);
		} else if (op < 15) {
			op_evict_lru();
		} else {
			op_stat();
		}
		check_key(id);
		check_step();
	}
	finish();
	vmemcache_delete(cache);
	cache = NULL;
	return 0;
}

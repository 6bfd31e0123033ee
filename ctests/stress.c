/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * stress.c -- many threads on one full cache, every value self-checking
 * (SPEC 12 item 7).
 *
 * Usage: stress DIR THREADS OPS [SEED [lru|none|both]]
 *
 * OPS counts the operations of all threads together. SEED "random" (the
 * default) takes one from the clock.
 *
 * One cache in DIR, kept full, and THREADS threads sharing OPS operations:
 * puts, whole and partial gets (random offsets and buffer sizes, NULL
 * buffers), gets whose miss is satisfied by a put from on_miss, exists,
 * evictions by key and (under LRU) of the LRU victim. An eighth of the
 * operations go to a handful of hot keys, so gets race evictions and puts of
 * the same key. on_evict reads the entry being evicted (it must still be
 * there, whole) and now and then puts another key from inside the callback.
 *
 * A value encodes its key and its length in every byte, so each byte a get
 * returns is checked, whatever the offset. Every failure must carry one of
 * the errnos the contract allows for it. Afterwards, with the threads gone:
 * every key still present reads back whole; the statistics agree with what
 * the threads counted (puts, hits, misses, evictions; entries = puts -
 * evictions, so nothing was lost); and the cache drains -- with
 * vmemcache_evict(c, NULL, 0) under LRU, by key under NONE, which cannot
 * pick victims -- to ENTRIES = DRAM = POOL = 0 and HEAP_ENTRIES = 1.
 *
 * The pool is 4 MiB; STRESS_POOL_SIZE in the environment changes it (runs
 * under valgrind use 1 MiB, so that their few operations fill it).
 *
 * SEED (default: from the clock) is printed first; with it a run repeats
 * each thread's sequence of operations (the interleaving is the
 * scheduler's). The policy defaults to both, one after the other. The exit
 * status is 0 when every check passed.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libvmemcache.h>

#ifndef STATS_ENABLED
#define STATS_ENABLED 1
#endif

#define DEFAULT_POOL_SIZE ((size_t)4 << 20)
#define KEYS 2048		/* key numbers 0 .. KEYS-1 */
#define HOT_KEYS 4		/* the first few, shared by every thread */
#define MAX_VALUE ((size_t)32 << 10)
#define MAX_KEY 32
#define PARTIAL_RANGE 5000	/* offsets and buffer sizes of partial gets */
#define MAX_REPORTS 20		/* failures printed in full */

static VMEMcache *cache;
static size_t pool_size = DEFAULT_POOL_SIZE;
static int policy_lru;
static unsigned nthreads;
static unsigned long long seed;
static atomic_int draining;	/* on_evict only checks, never puts */

static atomic_ulong failures;
static atomic_ulong puts_ok;		/* every successful put */
static atomic_ulong expected_hits;	/* gets that found their key */
static atomic_ulong expected_misses;	/* gets that did not */
static atomic_ulong evict_callbacks;
static atomic_ulong evict_backed_out;	/* by key, failed after on_evict */

/* Per-thread tallies, printed at the end. */
struct tally {
	unsigned long puts, put_exists, put_nospc;
	unsigned long gets, hits, misses, satisfied;
	unsigned long exists, evicts, evict_noent, evict_busy, evict_empty;
	unsigned long lru_evicts, lru_none, callback_puts;
};

struct worker {
	pthread_t thread;
	unsigned id;
	unsigned long ops;
	uint64_t rng;
	struct tally t;
};

/* The worker running on this thread (callbacks run on the caller's). */
static __thread struct worker *self;
/* on_miss puts the missing key only while this is set ... */
static __thread int miss_mode;
/* ... and says here that it ran, and the length it put. */
static __thread int miss_called;
static __thread size_t miss_len;
/* Nesting of puts made from inside on_evict. */
static __thread int evict_depth;

static void
failure(const char *fmt, ...)
{
	va_list ap;
	unsigned long n = atomic_fetch_add(&failures, 1);
	if (n >= MAX_REPORTS)
		return;
	fprintf(stderr, "stress: FAILED (seed %llu, %s, thread %d, op %lu): ",
		seed, policy_lru ? "lru" : "none",
		self ? (int)self->id : -1, self ? self->ops : 0UL);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* --- keys and self-checking values ------------------------------------------ */

static uint64_t
mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint64_t
rnd(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

/* Key number k: its 8 bytes, then k % 24 bytes derived from it. */
static size_t
make_key(uint64_t k, unsigned char *key)
{
	size_t i, len = 8 + (size_t)(k % 24);
	memcpy(key, &k, 8);
	for (i = 8; i < len; i++)
		key[i] = (unsigned char)(k * 37 + i);
	return len;
}

static int
parse_key(const void *key, size_t ksize, uint64_t *k)
{
	unsigned char expected[MAX_KEY];
	if (key == NULL || ksize < 8 || ksize > MAX_KEY)
		return 0;
	memcpy(k, key, 8);
	return *k < KEYS && make_key(*k, expected) == ksize &&
		memcmp(expected, key, ksize) == 0;
}

/* The length of generation `gen` of key k's value: mostly up to 4 KiB. */
static size_t
value_len(uint64_t k, uint64_t gen)
{
	uint64_t h = mix(k * 0x9e3779b97f4a7c15ULL ^ gen);
	switch (h % 16) {
	case 0:
		return 0;
	case 1:
		return (size_t)((h >> 8) % (MAX_VALUE + 1));
	default:
		return 1 + (size_t)((h >> 8) % 4096);
	}
}

/* Word w of a value of key k and length len: every byte depends on both. */
static uint64_t
value_word(uint64_t k, size_t len, size_t w)
{
	return mix((k << 40) ^ ((uint64_t)len << 8) ^
		(uint64_t)w * 0x2545f4914f6cdd1dULL);
}

static void
fill_value(unsigned char *buf, uint64_t k, size_t len)
{
	size_t i;
	for (i = 0; i < len; i += 8) {
		uint64_t w = value_word(k, len, i / 8);
		memcpy(buf + i, &w, len - i < 8 ? len - i : 8);
	}
}

/* Whether buf holds bytes off .. off+n-1 of key k's value of length len. */
static int
value_ok(const unsigned char *buf, uint64_t k, size_t len, size_t off,
	size_t n)
{
	size_t i;
	if (n == 0)
		return 1;
	if (off + n > len)
		return 0;
	for (i = 0; i < n; i++) {
		size_t pos = off + i;
		uint64_t w = value_word(k, len, pos / 8);
		if (buf[i] != (unsigned char)(w >> (8 * (pos % 8))))
			return 0;
	}
	return 1;
}

/* --- operations -------------------------------------------------------------- */

/* A put of key k with a fresh value; counts it. */
static void
do_put(uint64_t k, uint64_t gen, const char *where)
{
	unsigned char key[MAX_KEY];
	unsigned char *value = malloc(MAX_VALUE);
	size_t ksize = make_key(k, key), len = value_len(k, gen);
	int r, e;

	if (value == NULL) {
		failure("out of memory in the test");
		return;
	}
	fill_value(value, k, len);
	errno = 0;
	r = vmemcache_put(cache, key, ksize, value, len);
	e = errno;
	free(value);
	self->t.puts++;
	if (r == 0) {
		atomic_fetch_add(&puts_ok, 1);
		return;
	}
	if (r != -1) {
		failure("%s: put returned %d", where, r);
	} else if (e == EEXIST) {
		self->t.put_exists++;
	} else if (e == ENOSPC) {
		/*
		 * NONE: the cache is full. LRU: only when other threads have
		 * every entry in use, or hold the free space in their own
		 * allocations in progress -- never with one thread.
		 */
		self->t.put_nospc++;
		if (policy_lru && nthreads == 1)
			failure("%s: put of %zu bytes: ENOSPC with one thread "
				"(%s)", where, len, vmemcache_errormsg());
	} else {
		failure("%s: put failed with errno %d (%s)", where, e,
			vmemcache_errormsg());
	}
}

static void
on_evict(VMEMcache *c, const void *key, size_t ksize, void *arg)
{
	unsigned char *buf;
	size_t vsize = SIZE_MAX;
	ssize_t got;
	uint64_t k;
	(void) arg;

	atomic_fetch_add(&evict_callbacks, 1);
	if (c != cache || !parse_key(key, ksize, &k)) {
		failure("on_evict with a key or cache not ours");
		return;
	}
	/* The entry stays readable, whole, until the callback returns. */
	buf = malloc(MAX_VALUE);
	if (buf == NULL) {
		failure("out of memory in the test");
		return;
	}
	errno = 0;
	got = vmemcache_get(c, key, ksize, buf, MAX_VALUE, 0, &vsize);
	if (got < 0) {
		failure("on_evict: get of the key being evicted: errno %d",
			errno);
	} else {
		atomic_fetch_add(&expected_hits, 1);
		if ((size_t)got != vsize || !value_ok(buf, k, vsize, 0, vsize))
			failure("on_evict: key %llu: bad value (%zd of %zu "
				"bytes)", (unsigned long long)k, got, vsize);
	}
	free(buf);

	/* A put from inside the callback, which may evict in turn. */
	if (!atomic_load(&draining) && self != NULL && evict_depth < 2 &&
			rnd(&self->rng) % 8 == 0) {
		uint64_t x = rnd(&self->rng);
		evict_depth++;
		self->t.callback_puts++;
		do_put(HOT_KEYS + x % (KEYS - HOT_KEYS), x >> 16, "on_evict");
		evict_depth--;
	}
}

static void
on_miss(VMEMcache *c, const void *key, size_t ksize, void *arg)
{
	uint64_t k, gen;
	(void) arg;

	if (c != cache || !parse_key(key, ksize, &k)) {
		failure("on_miss with a key or cache not ours");
		return;
	}
	if (!miss_mode)
		return;
	miss_called = 1;
	gen = rnd(&self->rng);
	miss_len = value_len(k, gen);
	/* It satisfies the get even when the put itself then fails. */
	do_put(k, gen, "on_miss");
}

/*
 * A get of key k from `offset` into a buffer of `bufsize` bytes (NULL when
 * `null_buf`). With `with_miss`, a miss is satisfied by on_miss.
 */
static void
do_get(uint64_t k, size_t offset, size_t bufsize, int null_buf, int with_miss)
{
	unsigned char key[MAX_KEY];
	unsigned char *buf = NULL;
	size_t ksize = make_key(k, key), vsize = SIZE_MAX, expect;
	ssize_t got;
	int e;

	if (!null_buf) {
		buf = malloc(bufsize ? bufsize : 1);
		if (buf == NULL) {
			failure("out of memory in the test");
			return;
		}
	}
	miss_mode = with_miss;
	miss_called = 0;
	errno = 0;
	got = vmemcache_get(cache, key, ksize, buf, bufsize, offset, &vsize);
	e = errno;
	miss_mode = 0;
	self->t.gets++;

	if (got == -1 && !miss_called) {
		atomic_fetch_add(&expected_misses, 1);
		self->t.misses++;
		if (e != ENOENT)
			failure("get failed with errno %d", e);
		if (vsize != SIZE_MAX)
			failure("a missing get wrote vsize");
		if (with_miss)
			failure("a miss with on_miss putting was not "
				"satisfied");
		goto out;
	}
	if (got < 0) {
		failure("a get satisfied by on_miss failed: errno %d", e);
		atomic_fetch_add(&expected_misses, 1);
		goto out;
	}
	if (miss_called) {
		/*
		 * Satisfied by the put from on_miss: counted as a miss; the
		 * clamped length even without a buffer (kept quirk), copied
		 * from the offset (fixed quirk).
		 */
		atomic_fetch_add(&expected_misses, 1);
		self->t.satisfied++;
		if (vsize != miss_len)
			failure("satisfied get: vsize %zu, put %zu", vsize,
				miss_len);
		expect = offset >= vsize ? 0 :
			(vsize - offset < bufsize ? vsize - offset : bufsize);
	} else {
		atomic_fetch_add(&expected_hits, 1);
		self->t.hits++;
		expect = null_buf || offset >= vsize ? 0 :
			(vsize - offset < bufsize ? vsize - offset : bufsize);
	}
	if (vsize > MAX_VALUE)
		failure("key %llu: vsize %zu", (unsigned long long)k, vsize);
	else if ((size_t)got != expect)
		failure("key %llu: get (offset %zu, buffer %zu%s) of a %zu-byte "
			"value returned %zd, expected %zu",
			(unsigned long long)k, offset, bufsize,
			null_buf ? ", NULL" : "", vsize, got, expect);
	else if (!null_buf && !value_ok(buf, k, vsize, offset, (size_t)got))
		failure("key %llu: wrong bytes (offset %zu, %zd of %zu)",
			(unsigned long long)k, offset, got, vsize);
out:
	free(buf);
}

static void
do_exists(uint64_t k)
{
	unsigned char key[MAX_KEY];
	size_t ksize = make_key(k, key), vsize = SIZE_MAX;
	int r = vmemcache_exists(cache, key, ksize, &vsize);
	self->t.exists++;
	if (r == 1 && vsize > MAX_VALUE)
		failure("exists: vsize %zu", vsize);
	else if (r == 0 && vsize != SIZE_MAX)
		failure("exists wrote vsize for an absent key");
	else if (r != 0 && r != 1)
		failure("exists returned %d (errno %d)", r, errno);
}

static void
do_evict(uint64_t k)
{
	unsigned char key[MAX_KEY];
	size_t ksize = make_key(k, key);
	int r, e;

	errno = 0;
	r = vmemcache_evict(cache, key, ksize);
	e = errno;
	self->t.evicts++;
	if (r == 0)
		return;
	if (r != -1) {
		failure("evict returned %d", r);
	} else if (e == ENOENT) {
		self->t.evict_noent++;
	} else if (policy_lru && (e == EAGAIN || e == ESRCH)) {
		/* In use (or the list empty): on_evict ran all the same. */
		atomic_fetch_add(&evict_backed_out, 1);
		if (e == EAGAIN)
			self->t.evict_busy++;
		else
			self->t.evict_empty++;
		if (nthreads == 1)
			failure("evict by key: errno %d with one thread", e);
	} else {
		failure("evict by key failed with errno %d (%s)", e,
			vmemcache_errormsg());
	}
}

static void
do_evict_lru(void)
{
	int r, e;
	errno = 0;
	r = vmemcache_evict(cache, NULL, 0);
	e = errno;
	if (r == 0) {
		self->t.lru_evicts++;
		if (!policy_lru)
			failure("policy NONE evicted a victim");
	} else if (r == -1 && e == ESRCH) {
		self->t.lru_none++;
	} else {
		failure("evict(NULL) returned %d, errno %d", r, e);
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned long n = w->ops;

	self = w;
	for (w->ops = 0; w->ops < n; w->ops++) {
		uint64_t x = rnd(&w->rng), k;
		unsigned op = (unsigned)(x % 100);
		if ((x >> 8) % 8 == 0)
			k = (x >> 12) % HOT_KEYS;
		else
			k = HOT_KEYS + (x >> 12) % (KEYS - HOT_KEYS);

		if (op < 25) {
			do_put(k, rnd(&w->rng), "put");
		} else if (op < 50) {
			do_get(k, 0, MAX_VALUE, 0, 0);
		} else if (op < 65) {
			uint64_t y = rnd(&w->rng);
			do_get(k, (size_t)(y % PARTIAL_RANGE),
				(size_t)((y >> 16) % PARTIAL_RANGE),
				(y >> 32) % 8 == 0, 0);
		} else if (op < 75) {
			uint64_t y = rnd(&w->rng);
			do_get(k, (size_t)(y % PARTIAL_RANGE),
				(size_t)((y >> 16) % PARTIAL_RANGE),
				(y >> 32) % 8 == 0, 1);
		} else if (op < 80) {
			do_exists(k);
		} else if (op < 92 || (!policy_lru && op % 4 != 0)) {
			do_evict(k);
		} else {
			/* Under NONE rarely: it must fail with ESRCH. */
			do_evict_lru();
		}
	}
	return NULL;
}

/* --- checks with the threads gone ----------------------------------------------- */

static unsigned long long
stat_of(enum vmemcache_statistic s)
{
	unsigned long long v = 0;
	if (vmemcache_get_stat(cache, s, &v, sizeof(v)) != 0)
		failure("get_stat(%d): %s", (int)s, vmemcache_errormsg());
	return v;
}

static void
check_stat(const char *name, enum vmemcache_statistic s,
	unsigned long long expected)
{
	unsigned long long v = stat_of(s);
	if (!STATS_ENABLED)
		expected = 0;
	if (v != expected)
		failure("%s is %llu, expected %llu", name, v, expected);
}

#define CHECK_STAT(s, v) check_stat(#s, s, v)

/* Reads back every key present; returns how many there are. */
static unsigned long
check_contents(void)
{
	unsigned long present = 0;
	uint64_t k;
	for (k = 0; k < KEYS; k++) {
		size_t vsize = SIZE_MAX;
		unsigned char key[MAX_KEY];
		size_t ksize = make_key(k, key);
		if (vmemcache_exists(cache, key, ksize, &vsize) != 1)
			continue;
		present++;
		do_get(k, 0, MAX_VALUE, 0, 0);
	}
	return present;
}

static void
drain_and_check(unsigned long present)
{
	unsigned long drained = 0;
	atomic_store(&draining, 1);
	if (policy_lru) {
		while (vmemcache_evict(cache, NULL, 0) == 0)
			drained++;
		if (errno != ESRCH)
			failure("the drain ended with errno %d", errno);
	} else {
		uint64_t k;
		for (k = 0; k < KEYS; k++) {
			unsigned char key[MAX_KEY];
			size_t ksize = make_key(k, key);
			if (vmemcache_evict(cache, key, ksize) == 0)
				drained++;
		}
	}
	if (drained != present)
		failure("drained %lu entries, %lu were present", drained,
			present);
	CHECK_STAT(VMEMCACHE_STAT_ENTRIES, 0);
	CHECK_STAT(VMEMCACHE_STAT_DRAM_SIZE_USED, 0);
	CHECK_STAT(VMEMCACHE_STAT_POOL_SIZE_USED, 0);
	CHECK_STAT(VMEMCACHE_STAT_HEAP_ENTRIES, 1);
}

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
run(const char *dir, unsigned long ops, int lru)
{
	struct worker *w = calloc(nthreads, sizeof(*w));
	struct worker main_worker = {0};
	struct tally sum = {0};
	unsigned long present, removals;
	unsigned i, started;
	double t0, t1;

	policy_lru = lru;
	atomic_store(&failures, 0);
	atomic_store(&puts_ok, 0);
	atomic_store(&expected_hits, 0);
	atomic_store(&expected_misses, 0);
	atomic_store(&evict_callbacks, 0);
	atomic_store(&evict_backed_out, 0);
	atomic_store(&draining, 0);
	if (w == NULL) {
		fprintf(stderr, "stress: out of memory\n");
		return 1;
	}

	cache = vmemcache_new();
	if (cache == NULL || vmemcache_set_size(cache, pool_size) ||
			vmemcache_set_eviction_policy(cache, lru ?
				VMEMCACHE_REPLACEMENT_LRU :
				VMEMCACHE_REPLACEMENT_NONE) ||
			vmemcache_add(cache, dir)) {
		fprintf(stderr, "stress: cannot create a cache in %s: %s\n",
			dir, vmemcache_errormsg());
		free(w);
		vmemcache_delete(cache);
		return 1;
	}
	vmemcache_callback_on_evict(cache, on_evict, NULL);
	vmemcache_callback_on_miss(cache, on_miss, NULL);

	t0 = now();
	for (started = 0; started < nthreads; started++) {
		w[started].id = started;
		w[started].ops = ops / nthreads +
			(started < ops % nthreads ? 1 : 0);
		w[started].rng = mix(seed + 0x100 * (started + 1) +
			(unsigned)lru) | 1;
		if (pthread_create(&w[started].thread, NULL, worker_main,
				&w[started]) != 0) {
			fprintf(stderr, "stress: cannot start thread %u\n",
				started);
			atomic_fetch_add(&failures, 1);
			break;
		}
	}
	for (i = 0; i < started; i++) {
		pthread_join(w[i].thread, NULL);
		sum.puts += w[i].t.puts;
		sum.put_exists += w[i].t.put_exists;
		sum.put_nospc += w[i].t.put_nospc;
		sum.gets += w[i].t.gets;
		sum.hits += w[i].t.hits;
		sum.misses += w[i].t.misses;
		sum.satisfied += w[i].t.satisfied;
		sum.exists += w[i].t.exists;
		sum.evicts += w[i].t.evicts;
		sum.evict_noent += w[i].t.evict_noent;
		sum.evict_busy += w[i].t.evict_busy;
		sum.evict_empty += w[i].t.evict_empty;
		sum.lru_evicts += w[i].t.lru_evicts;
		sum.lru_none += w[i].t.lru_none;
		sum.callback_puts += w[i].t.callback_puts;
	}
	t1 = now();

	/* The main thread checks from here on. */
	main_worker.id = nthreads;
	main_worker.rng = mix(seed) | 1;
	self = &main_worker;

	/* Nothing lost: what was put and not evicted is there, whole. */
	removals = atomic_load(&evict_callbacks) -
		atomic_load(&evict_backed_out);
	present = check_contents();
	CHECK_STAT(VMEMCACHE_STAT_PUT, atomic_load(&puts_ok));
	CHECK_STAT(VMEMCACHE_STAT_EVICT, removals);
	CHECK_STAT(VMEMCACHE_STAT_ENTRIES, present);
	if (atomic_load(&puts_ok) - removals != present)
		failure("%lu puts - %lu evictions != %lu entries present",
			atomic_load(&puts_ok), removals, present);
	CHECK_STAT(VMEMCACHE_STAT_HIT, atomic_load(&expected_hits));
	CHECK_STAT(VMEMCACHE_STAT_MISS, atomic_load(&expected_misses));
	CHECK_STAT(VMEMCACHE_STAT_GET, atomic_load(&expected_hits) +
		atomic_load(&expected_misses));
	if (STATS_ENABLED && stat_of(VMEMCACHE_STAT_POOL_SIZE_USED) >
			pool_size)
		failure("POOL_SIZE_USED above the pool size");

	printf("stress %s: %u threads, %lu ops in %.2f s (%.0f ops/s); "
		"at the end %lu entries, %.1f%% of the pool in use\n",
		lru ? "lru" : "none", nthreads, ops, t1 - t0,
		(double)ops / (t1 - t0 > 0 ? t1 - t0 : 1), present,
		100.0 * (double)stat_of(VMEMCACHE_STAT_POOL_SIZE_USED) /
		(double)pool_size);
	printf("  puts %lu (ok %lu, EEXIST %lu, ENOSPC %lu, %lu from "
		"on_evict), gets %lu (hits %lu, misses %lu, satisfied by "
		"on_miss %lu), exists %lu\n", sum.puts,
		atomic_load(&puts_ok), sum.put_exists, sum.put_nospc,
		sum.callback_puts, sum.gets, sum.hits, sum.misses,
		sum.satisfied, sum.exists);
	printf("  evict by key %lu (ENOENT %lu, EAGAIN %lu, ESRCH %lu), "
		"evict LRU %lu (ESRCH %lu), on_evict %lu, removed %lu\n",
		sum.evicts, sum.evict_noent, sum.evict_busy, sum.evict_empty,
		sum.lru_evicts, sum.lru_none, atomic_load(&evict_callbacks),
		removals);

	drain_and_check(present);
	vmemcache_delete(cache);
	cache = NULL;
	self = NULL;
	free(w);
	if (atomic_load(&failures)) {
		printf("stress %s: %lu check(s) failed (seed %llu)\n",
			lru ? "lru" : "none", atomic_load(&failures), seed);
		return 1;
	}
	return 0;
}

int
main(int argc, char *argv[])
{
	unsigned long ops;
	const char *policy = "both";
	int status = 0;

	if (argc < 4 || argc > 6) {
		fprintf(stderr, "usage: %s DIR THREADS OPS [SEED|random "
			"[lru|none|both]]\n", argv[0]);
		return 2;
	}
	nthreads = (unsigned)strtoul(argv[2], NULL, 0);
	ops = strtoul(argv[3], NULL, 0);
	if (argc >= 5 && strcmp(argv[4], "random") != 0)
		seed = strtoull(argv[4], NULL, 0);
	else
		seed = (unsigned long long)time(NULL) * 1000003ULL ^
			(unsigned long long)getpid();
	if (argc >= 6)
		policy = argv[5];
	if (getenv("STRESS_POOL_SIZE") != NULL)
		pool_size = (size_t)strtoull(getenv("STRESS_POOL_SIZE"), NULL,
			0);
	if (nthreads == 0 || (strcmp(policy, "lru") != 0 &&
			strcmp(policy, "none") != 0 &&
			strcmp(policy, "both") != 0)) {
		fprintf(stderr, "stress: bad arguments\n");
		return 2;
	}
	printf("stress: seed %llu (replay: STRESS_POOL_SIZE=%zu %s %s %u %lu "
		"%llu %s)\n", seed, pool_size, argv[0], argv[1], nthreads, ops,
		seed, policy);
	fflush(stdout);

	if (strcmp(policy, "none") != 0)
		status |= run(argv[1], ops, 1);
	if (strcmp(policy, "lru") != 0)
		status |= run(argv[1], ops, 0);
	return status;
}

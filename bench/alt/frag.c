/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * frag -- long churn with mixed value sizes: libvmemcache (through its C
 * API) against an LRU cache built on memkind's PMEM kind, in one run.
 *
 * Both caches get a pool of the same size in the same directory and the
 * same stream of operations: get-or-put over a key space about 2.7 times
 * larger than what the pool holds (each op gets a key drawn uniformly; on a
 * miss it puts a value for it). Values are stored by copying them in, so the
 * pool really holds them.
 *
 * The memkind cache: a direct-mapped table of keys in DRAM (the key is a
 * number below the key space, so the table is a perfect hash), a doubly
 * linked LRU list, values memkind_malloc'ed from one PMEM kind created with
 * memkind_create_pmem(dir, pool_size). When an allocation fails it frees the
 * least recently used value and retries, like libvmemcache does.
 *
 * Scenarios:
 *   log      value sizes log-uniform in 256 B .. 64 KiB the whole run
 *   bimodal  first half: 80 % small (256 B .. 1 KiB), 20 % large
 *            (16 .. 64 KiB); second half the reverse (20 % small, 80 %
 *            large). The size of a value is drawn when it is put.
 *
 * Reported every 1/20 of the run (lines starting with SERIES), per cache:
 *   util      live value bytes / pool size (what the cache really keeps)
 *   needless  evictions made by a put although the free value space
 *             (pool size - live value bytes) was already >= the value's
 *             size plus one extent per live value: a failed allocation
 *             despite free space, i.e. the cost of fragmentation (internal:
 *             rounding to size classes; external: holes too small or
 *             scattered). The slack keeps libvmemcache's rounding of values
 *             up to whole extents out of it (and is granted to both).
 *   mops      operations per second in that interval, millions
 *   hit       hit ratio in that interval
 * and a SUMMARY line per cache and scenario over the second half of the run.
 *
 * usage: frag [dir=/dev/shm] [pool=256M] [ops=1000000] [seed=1]
 *             [scenario=log|bimodal|both] [extent=256]
 */

#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libvmemcache.h>

#ifdef HAVE_MEMKIND
#include <memkind.h>
#endif

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define SMALL_MIN 256
#define MAX_VALUE (64 * KiB)
#define INTERVALS 20

static const char *dir = "/dev/shm";
static uint64_t pool = 256 * MiB;
static uint64_t ops = 1000000;
static uint64_t seed = 1;
static uint64_t extent = 256;
static const char *scenario = "both";

static inline uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t
rng_next(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ULL;
	return mix64(*s);
}

static inline double
unit(uint64_t r)
{
	return (double)(r >> 11) * 0x1.0p-53;
}

static double
now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t
draw_log(uint64_t *rng, double min, double max)
{
	double s = floor(min * pow((max + 1.0) / min, unit(rng_next(rng))));
	return s < min ? (uint64_t)min : s > max ? (uint64_t)max : (uint64_t)s;
}

static uint64_t
draw_uniform(uint64_t *rng, uint64_t min, uint64_t max)
{
	return min + rng_next(rng) % (max - min + 1);
}

/* The size of a value put at operation i of n. */
static uint64_t
draw_size(int bimodal, uint64_t i, uint64_t n, uint64_t *rng)
{
	if (!bimodal)
		return draw_log(rng, SMALL_MIN, MAX_VALUE);
	double p_small = i < n / 2 ? 0.8 : 0.2;
	if (unit(rng_next(rng)) < p_small)
		return draw_uniform(rng, SMALL_MIN, 1 * KiB);
	return draw_uniform(rng, 16 * KiB, MAX_VALUE);
}

/* ------------------------------------------------------------------------ */
/* A cache behind four functions, so both run the same loop. */

struct backend {
	const char *name;
	int (*open)(void);
	int (*get)(uint64_t key, void *buf, size_t bufsize); /* 1 hit, 0 miss */
	int (*put)(uint64_t key, const void *val, size_t size); /* 0 ok */
	void (*close)(void);
};

/* Shared by both: what is live, and the needless-eviction count. */
static uint32_t *live_size;	/* per key; 0 = absent */
static uint64_t live_bytes, live_count;
static uint64_t evictions, needless;
static uint64_t cur_put_size;	/* the value being put, 0 outside puts */
static uint64_t n_keys;

static void
note_eviction(uint64_t key)
{
	/* the slack keeps rounding up to whole extents out of the count */
	if (cur_put_size && pool - live_bytes >=
			cur_put_size + live_count * extent)
		needless++;
	live_count--;
	evictions++;
	live_bytes -= live_size[key];
	live_size[key] = 0;
}

/* --- libvmemcache --- */

static VMEMcache *vc;

static void
vc_on_evict(VMEMcache *c, const void *key, size_t ksize, void *arg)
{
	(void)c;
	(void)arg;
	uint64_t k;
	if (ksize != sizeof(k))
		abort();
	memcpy(&k, key, sizeof(k));
	note_eviction(k);
}

static int
vc_open(void)
{
	vc = vmemcache_new();
	if (vc == NULL || vmemcache_set_size(vc, pool) ||
			vmemcache_set_extent_size(vc, extent) ||
			vmemcache_add(vc, dir)) {
		fprintf(stderr, "vmemcache: %s\n", vmemcache_errormsg());
		return -1;
	}
	vmemcache_callback_on_evict(vc, vc_on_evict, NULL);
	return 0;
}

static int
vc_get(uint64_t key, void *buf, size_t bufsize)
{
	size_t vsize;
	ssize_t r = vmemcache_get(vc, &key, sizeof(key), buf, bufsize, 0,
			&vsize);
	if (r >= 0)
		return 1;
	if (errno != ENOENT) {
		fprintf(stderr, "vmemcache_get: %s\n", vmemcache_errormsg());
		exit(1);
	}
	return 0;
}

static int
vc_put(uint64_t key, const void *val, size_t size)
{
	return vmemcache_put(vc, &key, sizeof(key), val, size);
}

static void
vc_close(void)
{
	vmemcache_delete(vc);
	vc = NULL;
}

#ifdef HAVE_MEMKIND
/* --- memkind + DRAM table + LRU list --- */

#define NIL UINT32_MAX

struct mk_entry {
	void *ptr;
	uint32_t prev, next;	/* toward MRU / toward LRU */
};

static memkind_t kind;
static struct mk_entry *tab;
static uint32_t mru = NIL, lru = NIL;

static void
mk_unlink(uint32_t k)
{
	struct mk_entry *e = &tab[k];
	if (e->prev != NIL)
		tab[e->prev].next = e->next;
	else
		mru = e->next;
	if (e->next != NIL)
		tab[e->next].prev = e->prev;
	else
		lru = e->prev;
}

static void
mk_push_front(uint32_t k)
{
	struct mk_entry *e = &tab[k];
	e->prev = NIL;
	e->next = mru;
	if (mru != NIL)
		tab[mru].prev = k;
	mru = k;
	if (lru == NIL)
		lru = k;
}

static int
mk_open(void)
{
	int err = memkind_create_pmem(dir, pool, &kind);
	if (err) {
		char msg[MEMKIND_ERROR_MESSAGE_SIZE];
		memkind_error_message(err, msg, sizeof(msg));
		fprintf(stderr, "memkind_create_pmem: %s\n", msg);
		return -1;
	}
	tab = calloc(n_keys, sizeof(*tab));
	if (tab == NULL)
		return -1;
	mru = lru = NIL;
	return 0;
}

static int
mk_get(uint64_t key, void *buf, size_t bufsize)
{
	struct mk_entry *e = &tab[key];
	if (e->ptr == NULL)
		return 0;
	size_t n = live_size[key] < bufsize ? live_size[key] : bufsize;
	memcpy(buf, e->ptr, n);
	mk_unlink((uint32_t)key);
	mk_push_front((uint32_t)key);
	return 1;
}

static int
mk_put(uint64_t key, const void *val, size_t size)
{
	void *p;
	while ((p = memkind_malloc(kind, size)) == NULL) {
		if (lru == NIL)
			return -1;
		uint32_t victim = lru;
		mk_unlink(victim);
		memkind_free(kind, tab[victim].ptr);
		tab[victim].ptr = NULL;
		note_eviction(victim);
	}
	memcpy(p, val, size);
	tab[key].ptr = p;
	mk_push_front((uint32_t)key);
	return 0;
}

static void
mk_close(void)
{
	for (uint32_t k = mru; k != NIL; k = tab[k].next)
		memkind_free(kind, tab[k].ptr);
	free(tab);
	tab = NULL;
	memkind_destroy_kind(kind);
}
#endif

static const struct backend backends[] = {
	{"vmemcache", vc_open, vc_get, vc_put, vc_close},
#ifdef HAVE_MEMKIND
	{"memkind", mk_open, mk_get, mk_put, mk_close},
#endif
};

/* ------------------------------------------------------------------------ */

static unsigned char valbuf[MAX_VALUE];
static unsigned char getbuf[MAX_VALUE];

static int
run(const struct backend *b, int bimodal)
{
	const char *scen = bimodal ? "bimodal" : "log";
	/* mean of the log-uniform sizes, used for the key space of both */
	double mean = (double)(MAX_VALUE - SMALL_MIN) /
		log((double)MAX_VALUE / SMALL_MIN);
	n_keys = (uint64_t)(2.7 * (double)pool / mean);
	live_size = calloc(n_keys, sizeof(*live_size));
	if (live_size == NULL)
		return -1;
	live_bytes = live_count = evictions = needless = 0;
	if (b->open())
		return -1;

	uint64_t rng = seed, size_rng = mix64(seed + 17);
	uint64_t step = ops / INTERVALS;
	uint64_t hits = 0, puts_failed = 0;
	uint64_t h_hits = 0, h_needless = 0, h_evict = 0;
	double util_sum = 0.0, h_time = 0.0;
	unsigned h_samples = 0;
	for (unsigned iv = 0; iv < INTERVALS; iv++) {
		uint64_t hits0 = hits, needless0 = needless, ev0 = evictions;
		double t0 = now();
		for (uint64_t i = iv * step; i < (iv + 1) * step; i++) {
			uint64_t key = rng_next(&rng) % n_keys;
			if (b->get(key, getbuf, sizeof(getbuf))) {
				hits++;
				continue;
			}
			uint64_t size = draw_size(bimodal, i, ops, &size_rng);
			memcpy(valbuf, &key, sizeof(key));
			cur_put_size = size;
			int r = b->put(key, valbuf, size);
			cur_put_size = 0;
			if (r) {
				puts_failed++;
				continue;
			}
			live_size[key] = (uint32_t)size;
			live_bytes += size;
			live_count++;
		}
		double dt = now() - t0;
		double util = (double)live_bytes / (double)pool;
		printf("SERIES impl=%s scenario=%s op=%" PRIu64
			" util=%.4f needless=%" PRIu64 " evictions=%" PRIu64
			" mops=%.4f hit=%.4f\n", b->name, scen, (iv + 1) * step,
			util, needless - needless0, evictions - ev0,
			(double)step / dt / 1e6,
			(double)(hits - hits0) / (double)step);
		if (iv >= INTERVALS / 2) {
			util_sum += util;
			h_samples++;
			h_time += dt;
			h_hits += hits - hits0;
			h_needless += needless - needless0;
			h_evict += evictions - ev0;
		}
		fflush(stdout);
	}
	uint64_t h_ops = step * h_samples;
	printf("SUMMARY impl=%s scenario=%s pool=%" PRIu64 " ops=%" PRIu64
		" util_mean=%.4f needless=%" PRIu64 " evictions=%" PRIu64
		" needless_share=%.4f mops=%.4f hit=%.4f put_failed=%" PRIu64
		"\n", b->name, scen, pool, h_ops, util_sum / h_samples,
		h_needless, h_evict,
		h_evict ? (double)h_needless / (double)h_evict : 0.0,
		(double)h_ops / h_time / 1e6, (double)h_hits / (double)h_ops,
		puts_failed);
	fflush(stdout);
	b->close();
	free(live_size);
	live_size = NULL;
	return 0;
}

static uint64_t
parse_size(const char *v)
{
	char *end;
	uint64_t x = strtoull(v, &end, 0);
	switch (*end) {
	case 'K': case 'k': x *= KiB; break;
	case 'M': case 'm': x *= MiB; break;
	case 'G': case 'g': x *= 1024 * MiB; break;
	default: break;
	}
	return x;
}

int
main(int argc, char *argv[])
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "dir=", 4) == 0)
			dir = a + 4;
		else if (strncmp(a, "pool=", 5) == 0)
			pool = parse_size(a + 5);
		else if (strncmp(a, "ops=", 4) == 0)
			ops = parse_size(a + 4);
		else if (strncmp(a, "seed=", 5) == 0)
			seed = parse_size(a + 5);
		else if (strncmp(a, "extent=", 7) == 0)
			extent = parse_size(a + 7);
		else if (strncmp(a, "scenario=", 9) == 0)
			scenario = a + 9;
		else {
			fprintf(stderr, "usage: frag [dir=D] [pool=B] [ops=N] "
				"[seed=N] [extent=B] [scenario=log|bimodal|both]\n");
			return 2;
		}
	}
	if (ops < INTERVALS || pool < 16 * MiB) {
		fprintf(stderr, "frag: need ops >= %d and pool >= 16M\n",
			INTERVALS);
		return 2;
	}
#ifndef HAVE_MEMKIND
	fprintf(stderr, "frag: built without memkind (libmemkind-dev): "
		"only libvmemcache runs\n");
#endif
	int fail = 0;
	for (int bim = 0; bim <= 1; bim++) {
		if (strcmp(scenario, "both") != 0 &&
				strcmp(scenario, bim ? "bimodal" : "log") != 0)
			continue;
		for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]);
				i++)
			if (run(&backends[i], bim)) {
				fprintf(stderr, "frag: %s failed\n",
					backends[i].name);
				fail = 1;
			}
	}
	return fail;
}

/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * vmemcache-bench -- a workload driver for libvmemcache.
 *
 * It uses nothing but the public header, so the same binary measures any
 * libvmemcache.so.0 the dynamic linker finds (LD_LIBRARY_PATH). Run it with
 * "help" for the parameters and what each workload measures; BENCHMARKS.md
 * in the source tree explains the figures it prints.
 *
 * The hot loop takes no lock and writes no memory shared between threads:
 * every thread keeps its own counters and latency histograms, merged when
 * the run is over, and publishes its progress with relaxed stores.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#endif

#include <libvmemcache.h>

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)

/* Keys of put-only threads: thread t uses t << PUT_ONLY_SHIFT + i. */
#define PUT_ONLY_SHIFT 44

/* ------------------------------------------------------------------------ */
/* Parameters */

enum mode { MODE_GET_OR_PUT, MODE_PUT_ONLY, MODE_GET_ONLY };
enum type { TYPE_FULL, TYPE_ALLOC, TYPE_REPL, TYPE_INDEX };
enum size_distrib { SIZE_UNIFORM, SIZE_LOG, SIZE_POW };
enum key_distrib { KEY_UNIFORM, KEY_ZIPF };

static struct params {
	unsigned n_threads;
	uint64_t ops_count;
	int64_t warm_up;		/* -1: auto */
	uint64_t min_size;
	uint64_t max_size;
	enum size_distrib size_distrib;
	uint64_t cache_size;
	uint64_t cache_extent_size;
	enum vmemcache_repl_p repl_policy;
	enum key_distrib key_distrib;
	double zipf_s;
	double key_space;		/* < 0: the mode's default */
	uint64_t key_size;
	uint64_t get_size;
	uint64_t seed;
	enum type type;
	enum mode mode;
	const char *dir;
	uint64_t latency_sample;
	double progress;
} P = {
	.n_threads = 1,
	.ops_count = 2000000,
	.warm_up = -1,
	.min_size = 8,
	.max_size = 8 * KiB,
	.size_distrib = SIZE_LOG,
	.cache_size = 1 * GiB,
	.cache_extent_size = 256,
	.repl_policy = VMEMCACHE_REPLACEMENT_LRU,
	.key_distrib = KEY_UNIFORM,
	.zipf_s = 0.99,
	.key_space = -1.0,
	.key_size = 16,
	.get_size = 0,
	.seed = 1,
	.type = TYPE_FULL,
	.mode = MODE_GET_OR_PUT,
	.dir = "/dev/shm",
	.latency_sample = 4,
	.progress = 2.0,
};

static const char *const mode_names[] = {"get-or-put", "put-only", "get-only"};
static const char *const type_names[] = {"full", "alloc", "repl", "index"};
static const char *const size_names[] = {"uniform", "log", "pow"};
static const char *const key_names[] = {"uniform", "zipf"};

static const char usage[] =
"usage: vmemcache-bench [name=value ...]   (or: vmemcache-bench help)\n"
"\n"
"Workloads (mode=):\n"
"  get-or-put  every op gets a key drawn from key_distrib and, on a miss,\n"
"              puts it (the value's size is a function of the key). Hit\n"
"              latency = the get; miss latency = the failed get + its put.\n"
"  put-only    every op puts a new key (threads use disjoint key ranges)\n"
"              into a cache the warm-up filled: each put evicts.\n"
"  get-only    the threads first put a set of key_space x (pool / mean\n"
"              size) keys (which must fit), then every op gets one of them.\n"
"\n"
"What is measured (type=), through vmemcache_bench_set:\n"
"  full   the whole library: index, replacement policy, allocation, copies.\n"
"  alloc  NO_MEMCPY: puts allocate pool space (evicting as needed) but do\n"
"         not copy the value; hits report the size but copy nothing.\n"
"  repl   NO_ALLOC: puts index the key and register it with the policy but\n"
"         take no pool space; hits look up and mark used, copy nothing.\n"
"         Nothing fills the pool, so the driver evicts (vmemcache_evict\n"
"         with a NULL key) to keep as many entries as a full pool of the\n"
"         size distribution would hold: index + replacement + eviction.\n"
"  index  INDEX_ONLY: puts only insert into the index; hits only look up.\n"
"         Entries are never evicted, so get-or-put ends up hitting on\n"
"         every key once all were put.\n"
"  Values are checked only with type=full.\n"
"\n"
"Parameters (default):\n"
"  n_threads=N          threads (1)\n"
"  ops_count=N          measured operations, all threads together (2000000)\n"
"  warm_up=N|auto       operations before measuring, all threads together;\n"
"                       auto: get-or-put runs until each thread put twice\n"
"                       its share of the pool in bytes (or made 5 ops per\n"
"                       key); put-only puts until each thread put 1.1 times\n"
"                       its share of the pool; get-only runs ops_count/10 (auto)\n"
"  min_size=B max_size=B  value sizes, bytes (8, 8192)\n"
"  size_distrib=D       with u uniform in [0,1) (log):\n"
"                         uniform: min + floor(u * (max - min + 1))\n"
"                         log:     floor(min * ((max + 1) / min)^u), i.e.\n"
"                                  log-uniform: density ~ 1/size, each\n"
"                                  doubling of the size equally likely\n"
"                         pow:     min + floor((max - min + 1) * u^(1/3)),\n"
"                                  density ~ (size - min)^2: skewed toward\n"
"                                  large values\n"
"  cache_size=B         pool size, bytes; suffixes K, M, G (1G)\n"
"  cache_extent_size=B  extent size, bytes (256)\n"
"  repl_policy=P        lru | none (lru)\n"
"  key_distrib=D        uniform | zipf (uniform); zipf: key of rank r (1..n)\n"
"                       drawn with probability ~ 1 / r^zipf_s\n"
"  zipf_s=S             zipf exponent (0.99)\n"
"  key_space=X          distinct keys = X * (pool size / mean value size)\n"
"                       (get-or-put 2.7, get-only 0.5; unused by put-only)\n"
"  key_size=B           key length in bytes, >= 8 (16)\n"
"  get_size=B           bytes a get copies at most; 0 = whole value (0)\n"
"  seed=N               seed of sizes, keys and draws (1)\n"
"  type=T               full | alloc | repl | index (full)\n"
"  mode=M               get-or-put | put-only | get-only (get-or-put)\n"
"  dir=PATH             where the pool is created (/dev/shm)\n"
"  latency_sample=N     time one operation in N (4); 0: none\n"
"  progress=S           progress report on stderr every S seconds (2); 0: off\n"
"\n"
"Output: the parameters, throughput in ops/s and GB/s (bytes put plus bytes\n"
"copied out by gets, 10^9 per second, over the measured wall time), the hit\n"
"ratio, latency percentiles (us) of hits and misses, the library's\n"
"statistics, pool utilisation (POOL_SIZE_USED / pool) and live value bytes /\n"
"pool, DRAM per entry (DRAM_SIZE_USED / ENTRIES), and one line starting with\n"
"RESULT holding the same as key=value pairs. Values carry their key and\n"
"length; a get that returns anything else is counted as bad, and the run\n"
"then exits with status 1, as it does on any unexpected error.\n";

static void
die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("vmemcache-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static uint64_t
parse_u64(const char *name, const char *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 0);
	if (errno != 0 || end == v || v[0] == '-')
		die("bad value for %s: %s", name, v);
	uint64_t mult = 1;
	switch (*end) {
	case 'k': case 'K': mult = KiB; end++; break;
	case 'm': case 'M': mult = MiB; end++; break;
	case 'g': case 'G': mult = GiB; end++; break;
	default: break;
	}
	if (*end != '\0' || (mult > 1 && x > UINT64_MAX / mult))
		die("bad value for %s: %s", name, v);
	return (uint64_t)x * mult;
}

static double
parse_double(const char *name, const char *v)
{
	char *end;
	errno = 0;
	double x = strtod(v, &end);
	if (errno != 0 || end == v || *end != '\0' || !(x >= 0.0))
		die("bad value for %s: %s", name, v);
	return x;
}

static int
parse_enum(const char *name, const char *v, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v, names[i]) == 0)
			return i;
	die("bad value for %s: %s", name, v);
	return -1;
}

static void
parse_args(int argc, char *argv[])
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "help") == 0 || strcmp(a, "--help") == 0 ||
				strcmp(a, "-h") == 0) {
			fputs(usage, stdout);
			exit(0);
		}
		const char *eq = strchr(a, '=');
		if (eq == NULL)
			die("expected name=value, got \"%s\" (try: help)", a);
		char name[64];
		size_t len = (size_t)(eq - a);
		if (len >= sizeof(name))
			die("unknown parameter in \"%s\"", a);
		memcpy(name, a, len);
		name[len] = '\0';
		const char *v = eq + 1;

		if (strcmp(name, "n_threads") == 0) {
			uint64_t n = parse_u64(name, v);
			if (n < 1 || n > 1024)
				die("n_threads must be within 1..1024");
			P.n_threads = (unsigned)n;
		} else if (strcmp(name, "ops_count") == 0) {
			P.ops_count = parse_u64(name, v);
		} else if (strcmp(name, "warm_up") == 0) {
			if (strcmp(v, "auto") == 0)
				P.warm_up = -1;
			else
				P.warm_up = (int64_t)parse_u64(name, v);
		} else if (strcmp(name, "min_size") == 0) {
			P.min_size = parse_u64(name, v);
		} else if (strcmp(name, "max_size") == 0) {
			P.max_size = parse_u64(name, v);
		} else if (strcmp(name, "size_distrib") == 0) {
			P.size_distrib = (enum size_distrib)
				parse_enum(name, v, size_names, 3);
		} else if (strcmp(name, "cache_size") == 0) {
			P.cache_size = parse_u64(name, v);
		} else if (strcmp(name, "cache_extent_size") == 0) {
			P.cache_extent_size = parse_u64(name, v);
		} else if (strcmp(name, "repl_policy") == 0) {
			if (strcmp(v, "lru") == 0 || strcmp(v, "1") == 0)
				P.repl_policy = VMEMCACHE_REPLACEMENT_LRU;
			else if (strcmp(v, "none") == 0 || strcmp(v, "0") == 0)
				P.repl_policy = VMEMCACHE_REPLACEMENT_NONE;
			else
				die("bad value for repl_policy: %s", v);
		} else if (strcmp(name, "key_distrib") == 0) {
			P.key_distrib = (enum key_distrib)
				parse_enum(name, v, key_names, 2);
		} else if (strcmp(name, "zipf_s") == 0) {
			P.zipf_s = parse_double(name, v);
		} else if (strcmp(name, "key_space") == 0) {
			P.key_space = parse_double(name, v);
		} else if (strcmp(name, "key_size") == 0) {
			P.key_size = parse_u64(name, v);
		} else if (strcmp(name, "get_size") == 0) {
			P.get_size = parse_u64(name, v);
		} else if (strcmp(name, "seed") == 0) {
			P.seed = parse_u64(name, v);
		} else if (strcmp(name, "type") == 0) {
			P.type = (enum type)parse_enum(name, v, type_names, 4);
		} else if (strcmp(name, "mode") == 0) {
			P.mode = (enum mode)parse_enum(name, v, mode_names, 3);
		} else if (strcmp(name, "dir") == 0) {
			P.dir = v;
		} else if (strcmp(name, "latency_sample") == 0) {
			P.latency_sample = parse_u64(name, v);
		} else if (strcmp(name, "progress") == 0) {
			P.progress = parse_double(name, v);
		} else {
			die("unknown parameter \"%s\" (try: help)", name);
		}
	}

	if (P.min_size < 1 || P.max_size < P.min_size)
		die("need 1 <= min_size <= max_size");
	if (P.max_size > P.cache_size)
		die("max_size larger than cache_size");
	if (P.key_size < 8 || P.key_size > 4096)
		die("key_size must be within 8..4096");
	if (P.key_distrib == KEY_ZIPF && P.zipf_s <= 0.0)
		die("zipf_s must be positive");
	if (P.key_space < 0.0)
		P.key_space = P.mode == MODE_GET_ONLY ? 0.5 : 2.7;
}

/* ------------------------------------------------------------------------ */
/* Random numbers, sizes, keys and values */

static inline uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* splitmix64: one per thread. */
static inline uint64_t
rng_next(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ULL;
	return mix64(*state);
}

static inline double
unit(uint64_t r)
{
	return (double)(r >> 11) * 0x1.0p-53;
}

/* The size of the value of key k: a function of the key and the seed. */
static uint64_t
value_size(uint64_t k)
{
	double u = unit(mix64(k ^ mix64(P.seed ^ 0x5a5a5a5a5a5a5a5aULL)));
	double min = (double)P.min_size, max = (double)P.max_size;
	double s;
	switch (P.size_distrib) {
	case SIZE_UNIFORM:
		s = min + floor(u * (max - min + 1.0));
		break;
	case SIZE_LOG:
		s = floor(min * pow((max + 1.0) / min, u));
		break;
	case SIZE_POW:
	default:
		s = min + floor((max - min + 1.0) * cbrt(u));
		break;
	}
	if (s < min)
		s = min;
	if (s > max)
		s = max;
	return (uint64_t)s;
}

/*
 * A key: its number, little-endian, then bytes derived from it.
 */
static inline void
make_key(uint64_t k, unsigned char *key)
{
	memcpy(key, &k, 8);
	if (P.key_size > 8) {
		uint64_t w = mix64(k);
		for (uint64_t i = 8; i < P.key_size; i += 8) {
			size_t n = P.key_size - i < 8 ? P.key_size - i : 8;
			memcpy(key + i, &w, n);
			w = mix64(w);
		}
	}
}

/*
 * A value is conceptually a stream of 8-byte words W(j) = f(key, length, j);
 * the driver writes (and checks) only words 0 and 1, every 32nd word (one
 * per 256 bytes, so a misplaced extent cannot go unnoticed) and the last
 * word, which keeps puts and gets cheap.
 */
static inline uint64_t
value_word(uint64_t k, uint64_t len, uint64_t j)
{
	return mix64(k * 0x9e3779b97f4a7c15ULL ^ len * 0xc2b2ae3d27d4eb4fULL ^
		(j + 1) * 0x165667b19e3779f9ULL);
}

static inline void
put_word(unsigned char *buf, uint64_t k, uint64_t len, uint64_t j)
{
	uint64_t w = value_word(k, len, j);
	uint64_t off = j * 8;
	if (len - off >= 8) {
		/* a constant size: an inline store, not a call */
		memcpy(buf + off, &w, 8);
		return;
	}
	memcpy(buf + off, &w, (size_t)(len - off));
}

static inline int
check_word(const unsigned char *buf, uint64_t k, uint64_t len, uint64_t j,
		uint64_t copied)
{
	uint64_t w = value_word(k, len, j);
	uint64_t off = j * 8;
	if (off >= copied)
		return 1;
	if (copied - off >= 8) {
		/* a constant size: an inline load, not a call */
		uint64_t got;
		memcpy(&got, buf + off, 8);
		return got == w;
	}
	return memcmp(buf + off, &w, (size_t)(copied - off)) == 0;
}

static void
stamp_value(unsigned char *buf, uint64_t k, uint64_t len)
{
	uint64_t last = (len - 1) / 8;
	for (uint64_t j = 0; j <= last; j = (j < 1 ? j + 1 : (j | 31) + 1))
		put_word(buf, k, len, j);
	put_word(buf, k, len, last);
}

static int
value_ok(const unsigned char *buf, uint64_t k, uint64_t len, uint64_t copied)
{
	uint64_t last = (len - 1) / 8;
	for (uint64_t j = 0; j <= last; j = (j < 1 ? j + 1 : (j | 31) + 1))
		if (!check_word(buf, k, len, j, copied))
			return 0;
	return check_word(buf, k, len, last, copied);
}

/*
 * Zipf by rejection-inversion (W. Hormann, G. Derflinger: "Rejection-
 * inversion to generate variates from monotone discrete distributions",
 * 1996): O(1) per draw for any number of keys.
 */
static struct zipf {
	double q, n;
	double h_x1, h_n, s;
} Z;

static double
helper1(double x)
{
	return fabs(x) > 1e-8 ? log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}

static double
helper2(double x)
{
	return fabs(x) > 1e-8 ? expm1(x) / x : 1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x));
}

static double
zipf_h(double x)
{
	return exp(-Z.q * log(x));
}

static double
zipf_hint(double x)
{
	double lx = log(x);
	return helper2((1.0 - Z.q) * lx) * lx;
}

static double
zipf_hint_inv(double x)
{
	double t = x * (1.0 - Z.q);
	if (t < -1.0)
		t = -1.0;
	return exp(helper1(t) * x);
}

static void
zipf_init(uint64_t n, double s)
{
	Z.q = s;
	Z.n = (double)n;
	Z.h_x1 = zipf_hint(1.5) - 1.0;
	Z.h_n = zipf_hint(Z.n + 0.5);
	Z.s = 2.0 - zipf_hint_inv(zipf_hint(2.5) - zipf_h(2.0));
}

/* A rank in 0..n-1 (0 the most frequent). */
static uint64_t
zipf_next(uint64_t *rng)
{
	for (;;) {
		double u = Z.h_n + unit(rng_next(rng)) * (Z.h_x1 - Z.h_n);
		double x = zipf_hint_inv(u);
		double k = floor(x + 0.5);
		if (k < 1.0)
			k = 1.0;
		else if (k > Z.n)
			k = Z.n;
		if (k - x <= Z.s || u >= zipf_hint(k + 0.5) - zipf_h(k))
			return (uint64_t)k - 1;
	}
}

/* ------------------------------------------------------------------------ */
/* Time and latency histograms */

static inline uint64_t
now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/* Ticks of the latency clock: the TSC where there is one (cheaper). */
static inline uint64_t
ticks(void)
{
#ifdef HAVE_TSC
	return __rdtsc();
#else
	return now_ns();
#endif
}

static double ns_per_tick = 1.0;

/* Measures the tick rate against CLOCK_MONOTONIC. */
static void
calibrate_ticks(void)
{
#ifdef HAVE_TSC
	uint64_t n0 = now_ns(), t0 = ticks();
	struct timespec d = {0, 50 * 1000 * 1000};
	nanosleep(&d, NULL);
	uint64_t n1 = now_ns(), t1 = ticks();
	if (t1 > t0)
		ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
#endif
}

/*
 * Log-linear buckets of ticks: exact below 64, then 32 buckets per power of
 * two (3 % resolution).
 */
#define SUB_BITS 5
#define HIST_BUCKETS (64 + (64 - 6) * (1 << SUB_BITS))

struct hist {
	uint64_t count[HIST_BUCKETS];
	uint64_t n;
	uint64_t sum;
};

static inline unsigned
bucket_of(uint64_t v)
{
	if (v < 64)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);
	unsigned sub = (unsigned)(v >> (e - SUB_BITS)) & ((1u << SUB_BITS) - 1);
	return 64u + (e - 6u) * (1u << SUB_BITS) + sub;
}

/* The middle of a bucket, in ticks. */
static double
bucket_mid(unsigned b)
{
	if (b < 64)
		return b;
	unsigned e = (b - 64) / (1u << SUB_BITS) + 6;
	unsigned sub = (b - 64) % (1u << SUB_BITS);
	double width = ldexp(1.0, (int)(e - SUB_BITS));
	return ldexp(1.0, (int)e) + (sub + 0.5) * width;
}

static inline void
hist_add(struct hist *h, uint64_t v)
{
	h->count[bucket_of(v)]++;
	h->n++;
	h->sum += v;
}

static void
hist_merge(struct hist *into, const struct hist *h)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		into->count[i] += h->count[i];
	into->n += h->n;
	into->sum += h->sum;
}

/* The mean in microseconds. */
static double
hist_mean(const struct hist *h)
{
	return h->n ? (double)h->sum / (double)h->n * ns_per_tick / 1000.0 : NAN;
}

/* The q-quantile in microseconds (NAN without samples). */
static double
hist_quantile(const struct hist *h, double q)
{
	if (h->n == 0)
		return NAN;
	uint64_t rank = (uint64_t)ceil(q * (double)h->n);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank)
			return bucket_mid(i) * ns_per_tick / 1000.0;
	}
	return NAN;
}

/* ------------------------------------------------------------------------ */
/* The run */

struct worker {
	unsigned id;
	pthread_t thread;
	uint64_t rng;
	unsigned char *key;
	unsigned char *put_buf;
	unsigned char *get_buf;

	/* counted over the measured phase only */
	uint64_t ops, hits, misses, puts, put_exists, put_nospace, evicts;
	uint64_t bytes_put, bytes_got;
	uint64_t bad, errors;
	struct hist hit_lat, miss_lat;

	/* over the whole run */
	uint64_t own_entries;	/* type=repl: puts minus our evictions */
	uint64_t bytes_all;	/* value bytes of every successful put */
	uint64_t next_key;	/* put-only: keys used */
	uint64_t prefill_keys;	/* get-only: [first, first + n) */
	uint64_t prefill_first;
	uint64_t t_start, t_end;

	/* read by the progress reporter */
	volatile uint64_t progress __attribute__((aligned(64)));
} __attribute__((aligned(64)));

static VMEMcache *cache;
static struct worker *workers;
static pthread_barrier_t barrier;
static uint64_t key_count;		/* get-or-put and get-only */
static uint64_t entries_cap;		/* type=repl: entries allowed per thread */
static double mean_size, mean_footprint;
static unsigned warm_done;		/* workers done warming up */

static void
report_error(struct worker *w, const char *what)
{
	if (w->errors++ < 5)
		fprintf(stderr, "thread %u: %s: %s (errno %d)\n", w->id, what,
			vmemcache_errormsg(), errno);
}

/* Keeps this thread's entries under its share (type=repl). */
static void
repl_evict(struct worker *w)
{
	while (w->own_entries > entries_cap) {
		if (vmemcache_evict(cache, NULL, 0) != 0) {
			if (errno != ESRCH)
				report_error(w, "vmemcache_evict");
			return;
		}
		w->own_entries--;
		w->evicts++;
	}
}

/* Puts key k; returns 0 on success or EEXIST/ENOSPC, -1 on other errors. */
static int
do_put(struct worker *w, uint64_t k)
{
	uint64_t len = value_size(k);
	make_key(k, w->key);
	if (P.type == TYPE_FULL)
		stamp_value(w->put_buf, k, len);
	if (vmemcache_put(cache, w->key, P.key_size, w->put_buf, len) == 0) {
		w->puts++;
		w->bytes_all += len;
		if (P.type == TYPE_FULL)
			w->bytes_put += len;
		w->own_entries++;
		if (P.type == TYPE_REPL)
			repl_evict(w);
		return 0;
	}
	if (errno == EEXIST) {
		w->put_exists++;	/* another thread put it first */
		return 0;
	}
	if (errno == ENOSPC) {
		w->put_nospace++;	/* policy none: the pool is full */
		return 0;
	}
	report_error(w, "vmemcache_put");
	return -1;
}

/* Gets key k; returns 1 on a hit, 0 on a miss. */
static int
do_get(struct worker *w, uint64_t k)
{
	size_t vsize = 0;
	size_t bufsize = P.get_size ? P.get_size : P.max_size;
	make_key(k, w->key);
	ssize_t n = vmemcache_get(cache, w->key, P.key_size, w->get_buf,
		bufsize, 0, &vsize);
	if (n < 0) {
		if (errno != ENOENT)
			report_error(w, "vmemcache_get");
		return 0;
	}
	if (P.type == TYPE_FULL)
		w->bytes_got += (uint64_t)n;
	if (P.type == TYPE_FULL || P.type == TYPE_ALLOC) {
		uint64_t len = value_size(k);
		uint64_t want = len < bufsize ? len : bufsize;
		if (vsize != len || (uint64_t)n != want ||
				(P.type == TYPE_FULL &&
				!value_ok(w->get_buf, k, len, (uint64_t)n))) {
			if (w->bad++ < 5)
				fprintf(stderr, "thread %u: bad value for key %"
					PRIu64 ": %zd bytes of %zu, expected %"
					PRIu64 " of %" PRIu64 "\n", w->id, k,
					n, vsize, want, len);
		}
	}
	return 1;
}

static inline uint64_t
draw_key(struct worker *w, uint64_t n)
{
	if (P.key_distrib == KEY_ZIPF)
		return zipf_next(&w->rng);
	return rng_next(&w->rng) % n;
}

/* One operation of the mix; `timed` records its latency. */
static inline void
one_op(struct worker *w, int timed)
{
	uint64_t t0 = 0;
	switch (P.mode) {
	case MODE_GET_OR_PUT: {
		uint64_t k = draw_key(w, key_count);
		if (timed)
			t0 = ticks();
		if (do_get(w, k)) {
			w->hits++;
			if (timed)
				hist_add(&w->hit_lat, ticks() - t0);
		} else {
			w->misses++;
			do_put(w, k);
			if (timed)
				hist_add(&w->miss_lat, ticks() - t0);
		}
		break;
	}
	case MODE_PUT_ONLY: {
		uint64_t k = ((uint64_t)w->id << PUT_ONLY_SHIFT) + w->next_key++;
		if (timed)
			t0 = ticks();
		do_put(w, k);
		if (timed)
			hist_add(&w->miss_lat, ticks() - t0);
		break;
	}
	case MODE_GET_ONLY: {
		uint64_t k = draw_key(w, key_count);
		if (timed)
			t0 = ticks();
		if (do_get(w, k)) {
			w->hits++;
			if (timed)
				hist_add(&w->hit_lat, ticks() - t0);
		} else {
			w->misses++;
			if (timed)
				hist_add(&w->miss_lat, ticks() - t0);
		}
		break;
	}
	}
}

static void
reset_counts(struct worker *w)
{
	w->ops = w->hits = w->misses = w->puts = w->put_exists = 0;
	w->put_nospace = w->evicts = w->bytes_put = w->bytes_got = 0;
	memset(&w->hit_lat, 0, sizeof(w->hit_lat));
	memset(&w->miss_lat, 0, sizeof(w->miss_lat));
}

/* This thread's share of n. */
static uint64_t
share(uint64_t n, unsigned id)
{
	return n / P.n_threads + (id < n % P.n_threads ? 1 : 0);
}

static void
warm_up(struct worker *w)
{
	if (P.mode == MODE_GET_ONLY) {
		for (uint64_t i = 0; i < w->prefill_keys; i++) {
			if (do_put(w, w->prefill_first + i) != 0)
				break;
			w->progress = i + 1;
		}
	}

	uint64_t pool_share = P.cache_size / P.n_threads;
	uint64_t limit, ops = 0;
	if (P.warm_up >= 0)
		limit = share((uint64_t)P.warm_up, w->id);
	else if (P.mode == MODE_GET_OR_PUT)
		limit = share(5 * key_count, w->id);
	else if (P.mode == MODE_PUT_ONLY)
		limit = UINT64_MAX;
	else
		limit = share(P.ops_count / 10, w->id);

	uint64_t bytes_goal = UINT64_MAX;
	if (P.warm_up < 0 && P.mode == MODE_GET_OR_PUT)
		bytes_goal = 2 * pool_share;
	else if (P.warm_up < 0 && P.mode == MODE_PUT_ONLY)
		bytes_goal = pool_share + pool_share / 10;

	while (ops < limit && w->bytes_all < bytes_goal && w->errors == 0) {
		one_op(w, 0);
		ops++;
		if ((ops & 1023) == 0)
			w->progress = ops;
	}
}

static void
measure(struct worker *w)
{
	uint64_t n = share(P.ops_count, w->id);
	uint64_t sample = P.latency_sample;
	uint64_t next_timed = sample ? w->id % sample : UINT64_MAX;
	w->t_start = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		int timed = i == next_timed;
		if (timed)
			next_timed += sample;
		one_op(w, timed);
		if ((i & 1023) == 1023)
			w->progress = i + 1;
	}
	w->t_end = now_ns();
	w->ops = n;
	w->progress = n;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	warm_up(w);
	reset_counts(w);
	__atomic_add_fetch(&warm_done, 1, __ATOMIC_RELEASE);
	pthread_barrier_wait(&barrier);	/* warm-up done */
	pthread_barrier_wait(&barrier);	/* progress counters reset */
	measure(w);
	return NULL;
}

static uint64_t
get_stat(enum vmemcache_statistic s)
{
	unsigned long long v = 0;
	if (vmemcache_get_stat(cache, s, &v, sizeof(v)) != 0)
		die("vmemcache_get_stat(%d): %s", (int)s, vmemcache_errormsg());
	return v;
}

/* Sums the value sizes of every key the run may have left in the cache. */
static uint64_t
live_bytes(void)
{
	unsigned char key[4096];
	uint64_t total = 0;
	size_t vsize;
	if (P.mode == MODE_PUT_ONLY) {
		for (unsigned t = 0; t < P.n_threads; t++) {
			for (uint64_t i = 0; i < workers[t].next_key; i++) {
				make_key(((uint64_t)t << PUT_ONLY_SHIFT) + i, key);
				if (vmemcache_exists(cache, key, P.key_size, &vsize) == 1)
					total += vsize;
			}
		}
	} else {
		for (uint64_t k = 0; k < key_count; k++) {
			make_key(k, key);
			if (vmemcache_exists(cache, key, P.key_size, &vsize) == 1)
				total += vsize;
		}
	}
	return total;
}

static void
print_params(void)
{
	printf("vmemcache-bench\n");
	printf("  mode=%s type=%s n_threads=%u ops_count=%" PRIu64 " warm_up=",
		mode_names[P.mode], type_names[P.type], P.n_threads, P.ops_count);
	if (P.warm_up < 0)
		printf("auto\n");
	else
		printf("%" PRId64 "\n", P.warm_up);
	printf("  min_size=%" PRIu64 " max_size=%" PRIu64 " size_distrib=%s"
		" (mean %.0f B, %.0f B in whole extents)\n",
		P.min_size, P.max_size, size_names[P.size_distrib], mean_size,
		mean_footprint);
	printf("  cache_size=%" PRIu64 " cache_extent_size=%" PRIu64
		" repl_policy=%s dir=%s\n", P.cache_size, P.cache_extent_size,
		P.repl_policy == VMEMCACHE_REPLACEMENT_LRU ? "lru" : "none", P.dir);
	printf("  key_distrib=%s", key_names[P.key_distrib]);
	if (P.key_distrib == KEY_ZIPF)
		printf(" zipf_s=%g", P.zipf_s);
	printf(" key_space=%g", P.key_space);
	if (P.mode != MODE_PUT_ONLY)
		printf(" (%" PRIu64 " keys)", key_count);
	printf(" key_size=%" PRIu64 " get_size=%" PRIu64 " seed=%" PRIu64
		" latency_sample=%" PRIu64 "\n", P.key_size, P.get_size, P.seed,
		P.latency_sample);
}

int
main(int argc, char *argv[])
{
	parse_args(argc, argv);
	calibrate_ticks();

	/* Mean size and pool footprint of the size distribution. */
	const uint64_t samples = 1 << 20;
	double sum = 0.0, foot = 0.0;
	for (uint64_t k = 0; k < samples; k++) {
		uint64_t s = value_size(k * 0x9e3779b97f4a7c15ULL + 12345);
		uint64_t e = P.cache_extent_size;
		sum += (double)s;
		foot += (double)((s + e - 1) / e * e);
	}
	mean_size = sum / (double)samples;
	mean_footprint = foot / (double)samples;

	key_count = (uint64_t)(P.key_space * (double)P.cache_size / mean_size);
	if (key_count < 1)
		key_count = 1;
	if (P.key_distrib == KEY_ZIPF)
		zipf_init(key_count, P.zipf_s);
	/* What a full pool holds, less the 8 KiB the heap reserves. */
	uint64_t capacity = (uint64_t)((double)(P.cache_size - 8192) / mean_footprint);
	entries_cap = capacity / P.n_threads;

	print_params();
	fflush(stdout);

	cache = vmemcache_new();
	if (cache == NULL)
		die("vmemcache_new: %s", vmemcache_errormsg());
	if (vmemcache_set_size(cache, P.cache_size) != 0 ||
			vmemcache_set_extent_size(cache, P.cache_extent_size) != 0 ||
			vmemcache_set_eviction_policy(cache, P.repl_policy) != 0)
		die("configuration: %s", vmemcache_errormsg());
	if (vmemcache_add(cache, P.dir) != 0)
		die("vmemcache_add \"%s\": %s", P.dir, vmemcache_errormsg());
	switch (P.type) {
	case TYPE_INDEX:
		vmemcache_bench_set(cache, VMEMCACHE_BENCH_INDEX_ONLY, 1);
		break;
	case TYPE_REPL:
		vmemcache_bench_set(cache, VMEMCACHE_BENCH_NO_ALLOC, 1);
		break;
	case TYPE_ALLOC:
		vmemcache_bench_set(cache, VMEMCACHE_BENCH_NO_MEMCPY, 1);
		break;
	case TYPE_FULL:
		break;
	}

	if (posix_memalign((void **)&workers, 64, sizeof(*workers) * P.n_threads))
		die("out of memory");
	memset(workers, 0, sizeof(*workers) * P.n_threads);
	uint64_t prefill_total = P.mode == MODE_GET_ONLY ? key_count : 0;
	uint64_t first = 0;
	for (unsigned t = 0; t < P.n_threads; t++) {
		struct worker *w = &workers[t];
		w->id = t;
		w->rng = mix64(P.seed * 0x9e3779b97f4a7c15ULL + t + 1);
		w->key = malloc(P.key_size);
		w->put_buf = malloc(P.max_size);
		w->get_buf = malloc(P.get_size ? P.get_size : P.max_size);
		if (!w->key || !w->put_buf || !w->get_buf)
			die("out of memory");
		memset(w->put_buf, 0xa5, P.max_size);
		w->prefill_first = first;
		w->prefill_keys = share(prefill_total, t);
		first += w->prefill_keys;
	}

	if (pthread_barrier_init(&barrier, NULL, P.n_threads + 1))
		die("pthread_barrier_init failed");
	for (unsigned t = 0; t < P.n_threads; t++)
		if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]))
			die("pthread_create failed");

	/* The main thread only reports progress. */
	if (P.progress > 0.0) {
		uint64_t start = now_ns(), last = start;
		while (__atomic_load_n(&warm_done, __ATOMIC_ACQUIRE) < P.n_threads) {
			struct timespec d = {0, 20 * 1000 * 1000};
			nanosleep(&d, NULL);
			uint64_t now = now_ns();
			if ((double)(now - last) < P.progress * 1e9)
				continue;
			uint64_t done = 0;
			for (unsigned t = 0; t < P.n_threads; t++)
				done += __atomic_load_n(&workers[t].progress, __ATOMIC_RELAXED);
			fprintf(stderr, "warm-up: %.1f s, %" PRIu64 " ops\n",
				(double)(now - start) / 1e9, done);
			last = now;
		}
	}
	pthread_barrier_wait(&barrier);
	for (unsigned t = 0; t < P.n_threads; t++)
		workers[t].progress = 0;
	uint64_t stats_before[VMEMCACHE_STATS_NUM];
	for (int s = 0; s < VMEMCACHE_STATS_NUM; s++)
		stats_before[s] = get_stat((enum vmemcache_statistic)s);
	pthread_barrier_wait(&barrier);

	if (P.progress > 0.0) {
		uint64_t start = now_ns(), last = start;
		for (;;) {
			struct timespec d = {0, 20 * 1000 * 1000};
			nanosleep(&d, NULL);
			uint64_t done = 0;
			for (unsigned t = 0; t < P.n_threads; t++)
				done += __atomic_load_n(&workers[t].progress, __ATOMIC_RELAXED);
			if (done >= P.ops_count)
				break;
			uint64_t now = now_ns();
			if ((double)(now - last) >= P.progress * 1e9) {
				fprintf(stderr, "measuring: %.1f s, %.0f %%, %.3f Mops/s\n",
					(double)(now - start) / 1e9,
					100.0 * (double)done / (double)P.ops_count,
					(double)done / ((double)(now - start) / 1e9) / 1e6);
				last = now;
			}
		}
	}
	for (unsigned t = 0; t < P.n_threads; t++)
		pthread_join(workers[t].thread, NULL);

	/* Totals. */
	struct worker tot;
	memset(&tot, 0, sizeof(tot));
	uint64_t t_start = UINT64_MAX, t_end = 0;
	for (unsigned t = 0; t < P.n_threads; t++) {
		struct worker *w = &workers[t];
		tot.ops += w->ops;
		tot.hits += w->hits;
		tot.misses += w->misses;
		tot.puts += w->puts;
		tot.put_exists += w->put_exists;
		tot.put_nospace += w->put_nospace;
		tot.evicts += w->evicts;
		tot.bytes_put += w->bytes_put;
		tot.bytes_got += w->bytes_got;
		tot.bad += w->bad;
		tot.errors += w->errors;
		hist_merge(&tot.hit_lat, &w->hit_lat);
		hist_merge(&tot.miss_lat, &w->miss_lat);
		if (w->t_start < t_start)
			t_start = w->t_start;
		if (w->t_end > t_end)
			t_end = w->t_end;
	}
	double secs = (double)(t_end - t_start) / 1e9;
	double ops_s = (double)tot.ops / secs;
	double gb_s = (double)(tot.bytes_put + tot.bytes_got) / secs / 1e9;
	double hit_ratio = tot.hits + tot.misses ?
		(double)tot.hits / (double)(tot.hits + tot.misses) : NAN;

	uint64_t st[VMEMCACHE_STATS_NUM];
	for (int s = 0; s < VMEMCACHE_STATS_NUM; s++)
		st[s] = get_stat((enum vmemcache_statistic)s);
	uint64_t live = live_bytes();
	double util = (double)st[VMEMCACHE_STAT_POOL_SIZE_USED] / (double)P.cache_size;
	double live_ratio = (double)live / (double)P.cache_size;
	double dram_per_entry = st[VMEMCACHE_STAT_ENTRIES] ?
		(double)st[VMEMCACHE_STAT_DRAM_SIZE_USED] /
		(double)st[VMEMCACHE_STAT_ENTRIES] : NAN;
	const char *lat_miss_name = P.mode == MODE_PUT_ONLY ? "put" : "miss";

	printf("results\n");
	printf("  time %.3f s, %" PRIu64 " ops: %.4f Mops/s, %.3f GB/s\n",
		secs, tot.ops, ops_s / 1e6, gb_s);
	if (P.mode != MODE_PUT_ONLY)
		printf("  hits %" PRIu64 ", misses %" PRIu64 ": hit ratio %.4f\n",
			tot.hits, tot.misses, hit_ratio);
	printf("  puts %" PRIu64 " (%" PRIu64 " already present, %" PRIu64
		" without space), bytes put %" PRIu64 ", bytes got %" PRIu64 "\n",
		tot.puts, tot.put_exists, tot.put_nospace, tot.bytes_put,
		tot.bytes_got);
	if (P.type == TYPE_REPL)
		printf("  evictions by the driver %" PRIu64 "\n", tot.evicts);
	printf("  latency (us)      p50      p99    p99.9     mean   samples\n");
	if (P.mode != MODE_PUT_ONLY)
		printf("    hit      %8.3f %8.3f %8.3f %8.3f %9" PRIu64 "\n",
			hist_quantile(&tot.hit_lat, 0.5),
			hist_quantile(&tot.hit_lat, 0.99),
			hist_quantile(&tot.hit_lat, 0.999),
			hist_mean(&tot.hit_lat), tot.hit_lat.n);
	printf("    %-8s %8.3f %8.3f %8.3f %8.3f %9" PRIu64 "\n", lat_miss_name,
		hist_quantile(&tot.miss_lat, 0.5),
		hist_quantile(&tot.miss_lat, 0.99),
		hist_quantile(&tot.miss_lat, 0.999),
		hist_mean(&tot.miss_lat), tot.miss_lat.n);
	printf("  statistics (measured phase / end)\n");
	static const char *const stat_names[] = {"put", "get", "hit", "miss",
		"evict", "entries", "dram_size_used", "pool_size_used",
		"heap_entries"};
	for (int s = 0; s < VMEMCACHE_STATS_NUM; s++) {
		if (s <= VMEMCACHE_STAT_EVICT)
			printf("    %-16s %14" PRIu64 "\n", stat_names[s],
				st[s] - stats_before[s]);
		else
			printf("    %-16s %14" PRIu64 "\n", stat_names[s], st[s]);
	}
	printf("  utilisation %.4f (pool_size_used / pool), live values %.4f"
		" (value bytes / pool)\n", util, live_ratio);
	printf("  DRAM per entry %.1f B\n", dram_per_entry);
	printf("  bad values %" PRIu64 ", errors %" PRIu64 "\n", tot.bad, tot.errors);

	printf("RESULT mode=%s type=%s threads=%u ops=%" PRIu64 " secs=%.4f"
		" ops_per_s=%.0f gb_per_s=%.4f hit_ratio=%.4f"
		" hit_p50_us=%.3f hit_p99_us=%.3f hit_p999_us=%.3f"
		" %s_p50_us=%.3f %s_p99_us=%.3f %s_p999_us=%.3f"
		" utilisation=%.4f live=%.4f dram_per_entry=%.1f"
		" entries=%" PRIu64 " evictions=%" PRIu64
		" min_size=%" PRIu64 " max_size=%" PRIu64 " size_distrib=%s"
		" key_distrib=%s key_space=%g keys=%" PRIu64 " cache_size=%" PRIu64
		" extent=%" PRIu64 " bad=%" PRIu64 " errors=%" PRIu64 "\n",
		mode_names[P.mode], type_names[P.type], P.n_threads, tot.ops, secs,
		ops_s, gb_s, hit_ratio,
		hist_quantile(&tot.hit_lat, 0.5), hist_quantile(&tot.hit_lat, 0.99),
		hist_quantile(&tot.hit_lat, 0.999),
		lat_miss_name, hist_quantile(&tot.miss_lat, 0.5),
		lat_miss_name, hist_quantile(&tot.miss_lat, 0.99),
		lat_miss_name, hist_quantile(&tot.miss_lat, 0.999),
		util, live_ratio, dram_per_entry, st[VMEMCACHE_STAT_ENTRIES],
		st[VMEMCACHE_STAT_EVICT] - stats_before[VMEMCACHE_STAT_EVICT],
		P.min_size, P.max_size, size_names[P.size_distrib],
		key_names[P.key_distrib], P.key_space,
		P.mode == MODE_PUT_ONLY ? 0 : key_count, P.cache_size,
		P.cache_extent_size, tot.bad, tot.errors);

	vmemcache_delete(cache);
	for (unsigned t = 0; t < P.n_threads; t++) {
		free(workers[t].key);
		free(workers[t].put_buf);
		free(workers[t].get_buf);
	}
	free(workers);
	pthread_barrier_destroy(&barrier);
	return tot.bad || tot.errors ? 1 : 0;
}

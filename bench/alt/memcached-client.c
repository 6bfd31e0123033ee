/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * memcached-client -- the get-or-put workload of vmemcache-bench, against a
 * memcached server through its text protocol (one blocking TCP connection
 * per thread, one request in flight: the latency a synchronous caller sees).
 *
 * Keys, value sizes and draws follow vmemcache-bench's definitions for the
 * parameters below (key k is drawn uniformly from the key space; the size of
 * its value is a function of k and the seed, the same function as the
 * driver's, so the two see the same sizes for the same parameters). The
 * generator is copied rather than shared: in the driver it reads its global
 * parameter block, and factoring it out would mean reworking a file that is
 * still being tuned. The key is its number in 16 hexadecimal digits (memcached
 * keys are text), the value carries the key number in its first 8 bytes and
 * is checked on every hit.
 *
 * usage: memcached-client port=N [host=127.0.0.1] [n_threads=1]
 *        [ops_count=500000] [warm_up=auto] [min_size=8] [max_size=8192]
 *        [size_distrib=log|uniform|pow] [cache_size=256M] [key_space=2.7]
 *        [seed=1]
 * Prints the same RESULT keys as the driver: ops_s, hit_ratio, hit_p50_us,
 * hit_p99_us, hit_p999_us, miss_p50_us, miss_p99_us, miss_p999_us, bad.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)

static const char *host = "127.0.0.1";
static int port;
static unsigned n_threads = 1;
static uint64_t ops_count = 500000;
static int64_t warm_up = -1;
static uint64_t min_size = 8, max_size = 8 * KiB;
static int size_distrib = 1; /* 0 uniform, 1 log, 2 pow */
static uint64_t cache_size = 256 * MiB;
static double key_space = 2.7;
static uint64_t seed = 1;
static uint64_t key_count;

static inline uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

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

/* As vmemcache-bench's value_size(). */
static uint64_t
value_size(uint64_t k)
{
	double u = unit(mix64(k ^ mix64(seed ^ 0x5a5a5a5a5a5a5a5aULL)));
	double min = (double)min_size, max = (double)max_size, s;
	if (size_distrib == 0)
		s = min + floor(u * (max - min + 1.0));
	else if (size_distrib == 1)
		s = floor(min * pow((max + 1.0) / min, u));
	else
		s = min + floor((max - min + 1.0) * cbrt(u));
	if (s < min)
		s = min;
	if (s > max)
		s = max;
	return (uint64_t)s;
}

/* As vmemcache-bench's mean size: numerically, over many keys. */
static double
mean_value_size(void)
{
	double sum = 0.0;
	for (uint64_t k = 0; k < 200000; k++)
		sum += (double)value_size(k * 7919 + 1);
	return sum / 200000.0;
}

static inline uint64_t
now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/* Log-linear histogram of nanoseconds, 32 buckets per power of two. */
#define SUB 5
#define NB (64 + 58 * (1 << SUB))
struct hist {
	uint64_t c[NB], n;
};

static inline unsigned
bucket(uint64_t v)
{
	if (v < 64)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);
	return 64u + (e - 6u) * (1u << SUB) +
		((unsigned)(v >> (e - SUB)) & ((1u << SUB) - 1));
}

static double
mid(unsigned b)
{
	if (b < 64)
		return b;
	unsigned e = (b - 64) / (1u << SUB) + 6, s = (b - 64) % (1u << SUB);
	return ldexp(1.0, (int)e) + (s + 0.5) * ldexp(1.0, (int)(e - SUB));
}

static double
quantile_us(const struct hist *h, double q)
{
	if (h->n == 0)
		return NAN;
	uint64_t rank = (uint64_t)ceil(q * (double)h->n), seen = 0;
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < NB; i++)
		if ((seen += h->c[i]) >= rank)
			return mid(i) / 1000.0;
	return NAN;
}

struct worker {
	unsigned id;
	pthread_t th;
	int fd;
	uint64_t rng;
	char *rbuf;
	size_t rlen, rpos;
	unsigned char *val;
	uint64_t ops, hits, bad, errors;
	struct hist hit, miss;
};

static void
die(const char *what)
{
	perror(what);
	exit(2);
}

static void
send_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n) {
		ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			die("send");
		}
		p += r;
		n -= (size_t)r;
	}
}

#define RBUF (256 * 1024)

/* Ensures n unread bytes are buffered. */
static void
fill(struct worker *w, size_t n)
{
	if (w->rpos + n > RBUF) {
		memmove(w->rbuf, w->rbuf + w->rpos, w->rlen - w->rpos);
		w->rlen -= w->rpos;
		w->rpos = 0;
	}
	while (w->rlen - w->rpos < n) {
		ssize_t r = recv(w->fd, w->rbuf + w->rlen, RBUF - w->rlen, 0);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			die("recv");
		}
		w->rlen += (size_t)r;
	}
}

/* Reads one "\r\n"-terminated line; returns it NUL-terminated. */
static char *
read_line(struct worker *w)
{
	for (;;) {
		char *start = w->rbuf + w->rpos;
		char *nl = memmem(start, w->rlen - w->rpos, "\r\n", 2);
		if (nl) {
			*nl = '\0';
			w->rpos = (size_t)(nl + 2 - w->rbuf);
			return start;
		}
		fill(w, w->rlen - w->rpos + 1);
	}
}

/* 1 hit, 0 miss. */
static int
mc_get(struct worker *w, uint64_t k)
{
	char req[64];
	int n = snprintf(req, sizeof(req), "get %016" PRIx64 "\r\n", k);
	send_all(w->fd, req, (size_t)n);
	char *line = read_line(w);
	if (strcmp(line, "END") == 0)
		return 0;
	unsigned flags;
	size_t bytes;
	char key[64];
	if (sscanf(line, "VALUE %63s %u %zu", key, &flags, &bytes) != 3) {
		fprintf(stderr, "unexpected reply: %s\n", line);
		exit(2);
	}
	fill(w, bytes + 2);
	uint64_t got;
	memcpy(w->val, w->rbuf + w->rpos, bytes);
	memcpy(&got, w->val, sizeof(got));
	if (bytes != value_size(k) || got != k)
		w->bad++;
	w->rpos += bytes + 2;
	line = read_line(w);
	if (strcmp(line, "END") != 0) {
		fprintf(stderr, "unexpected reply: %s\n", line);
		exit(2);
	}
	return 1;
}

static void
mc_set(struct worker *w, uint64_t k)
{
	uint64_t len = value_size(k);
	char req[96];
	int n = snprintf(req, sizeof(req), "set %016" PRIx64 " 0 0 %" PRIu64
		"\r\n", k, len);
	memcpy(w->val, &k, sizeof(k));
	memcpy(w->val + len, "\r\n", 2);
	/* one send for header and body: no Nagle stall between them */
	static __thread char *out;
	if (out == NULL && (out = malloc(max_size + 128)) == NULL)
		die("malloc");
	memcpy(out, req, (size_t)n);
	memcpy(out + n, w->val, len + 2);
	send_all(w->fd, out, (size_t)n + len + 2);
	char *line = read_line(w);
	if (strcmp(line, "STORED") != 0 && w->errors++ < 5)
		fprintf(stderr, "set: %s\n", line);
}

static uint64_t warm_per_thread, ops_per_thread;
static pthread_barrier_t barrier;
static uint64_t t_start, t_end;

static void *
work(void *arg)
{
	struct worker *w = arg;
	for (uint64_t i = 0; i < warm_per_thread; i++) {
		uint64_t k = rng_next(&w->rng) % key_count;
		if (!mc_get(w, k))
			mc_set(w, k);
	}
	pthread_barrier_wait(&barrier);
	if (w->id == 0)
		t_start = now_ns();
	for (uint64_t i = 0; i < ops_per_thread; i++) {
		uint64_t k = rng_next(&w->rng) % key_count;
		uint64_t t0 = now_ns();
		if (mc_get(w, k)) {
			w->hits++;
			w->hit.c[bucket(now_ns() - t0)]++;
			w->hit.n++;
		} else {
			mc_set(w, k);
			w->miss.c[bucket(now_ns() - t0)]++;
			w->miss.n++;
		}
		w->ops++;
	}
	pthread_barrier_wait(&barrier);
	if (w->id == 0)
		t_end = now_ns();
	return NULL;
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
		char *a = argv[i], *v = strchr(a, '=');
		if (v == NULL)
			goto usage;
		*v++ = '\0';
		if (!strcmp(a, "port"))
			port = atoi(v);
		else if (!strcmp(a, "host"))
			host = v;
		else if (!strcmp(a, "n_threads"))
			n_threads = (unsigned)atoi(v);
		else if (!strcmp(a, "ops_count"))
			ops_count = parse_size(v);
		else if (!strcmp(a, "warm_up"))
			warm_up = strcmp(v, "auto") ? (int64_t)parse_size(v) : -1;
		else if (!strcmp(a, "min_size"))
			min_size = parse_size(v);
		else if (!strcmp(a, "max_size"))
			max_size = parse_size(v);
		else if (!strcmp(a, "size_distrib"))
			size_distrib = !strcmp(v, "uniform") ? 0 :
				!strcmp(v, "log") ? 1 : 2;
		else if (!strcmp(a, "cache_size"))
			cache_size = parse_size(v);
		else if (!strcmp(a, "key_space"))
			key_space = atof(v);
		else if (!strcmp(a, "seed"))
			seed = parse_size(v);
		else
			goto usage;
	}
	if (port <= 0 || n_threads < 1 || min_size < 8 || max_size < min_size)
		goto usage;

	double mean = mean_value_size();
	key_count = (uint64_t)(key_space * (double)cache_size / mean);
	if (key_count < 1)
		key_count = 1;
	/* auto: as the driver, until twice the pool in bytes was put */
	uint64_t warm = warm_up >= 0 ? (uint64_t)warm_up :
		(uint64_t)(2.0 * (double)cache_size / mean / (1.0 - 0.37));
	warm_per_thread = warm / n_threads;
	ops_per_thread = ops_count / n_threads;

	struct worker *ws = calloc(n_threads, sizeof(*ws));
	if (ws == NULL)
		die("calloc");
	pthread_barrier_init(&barrier, NULL, n_threads);
	for (unsigned t = 0; t < n_threads; t++) {
		struct worker *w = &ws[t];
		w->id = t;
		w->rng = mix64(seed * 1000003 + t + 1);
		w->rbuf = malloc(RBUF);
		w->val = malloc(max_size + 2);
		if (w->rbuf == NULL || w->val == NULL)
			die("malloc");
		w->fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET,
			.sin_port = htons((uint16_t)port)};
		inet_pton(AF_INET, host, &sa.sin_addr);
		if (w->fd < 0 || connect(w->fd, (struct sockaddr *)&sa,
				sizeof(sa)) < 0)
			die("connect");
		int one = 1;
		setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	for (unsigned t = 0; t < n_threads; t++)
		if (pthread_create(&ws[t].th, NULL, work, &ws[t]))
			die("pthread_create");
	struct hist *hit = calloc(1, sizeof(*hit)), *miss = calloc(1,
		sizeof(*miss));
	uint64_t ops = 0, hits = 0, bad = 0, errors = 0;
	for (unsigned t = 0; t < n_threads; t++) {
		pthread_join(ws[t].th, NULL);
		ops += ws[t].ops;
		hits += ws[t].hits;
		bad += ws[t].bad;
		errors += ws[t].errors;
		for (unsigned b = 0; b < NB; b++) {
			hit->c[b] += ws[t].hit.c[b];
			miss->c[b] += ws[t].miss.c[b];
		}
		hit->n += ws[t].hit.n;
		miss->n += ws[t].miss.n;
		close(ws[t].fd);
	}
	double secs = (double)(t_end - t_start) / 1e9;
	printf("RESULT impl=memcached n_threads=%u ops=%" PRIu64 " keys=%"
		PRIu64 " ops_s=%.0f hit_ratio=%.4f hit_p50_us=%.2f hit_p99_us=%.2f"
		" hit_p999_us=%.2f miss_p50_us=%.2f miss_p99_us=%.2f"
		" miss_p999_us=%.2f bad=%" PRIu64 " errors=%" PRIu64 "\n",
		n_threads, ops, key_count, (double)ops / secs,
		(double)hits / (double)ops, quantile_us(hit, 0.5),
		quantile_us(hit, 0.99), quantile_us(hit, 0.999),
		quantile_us(miss, 0.5), quantile_us(miss, 0.99),
		quantile_us(miss, 0.999), bad, errors);
	return bad || errors ? 1 : 0;
usage:
	fprintf(stderr, "usage: memcached-client port=N [host=H] [n_threads=N]"
		" [ops_count=N] [warm_up=N|auto] [min_size=B] [max_size=B]"
		" [size_distrib=log|uniform|pow] [cache_size=B] [key_space=X]"
		" [seed=N]\n");
	return 2;
}

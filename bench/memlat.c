/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * memlat -- the cost of one dependent load from a working set of a given
 * size: a random cyclic chain of cache lines is followed, each load's
 * address coming from the previous one, as in a trie walk. BENCHMARKS.md
 * quotes its figures. Build: cc -O2 bench/memlat.c -o memlat
 * Run: ./memlat MiB [huge]   ("huge": ask for transparent huge pages)
 */

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define LINE 64
#define HUGE_PAGE (2UL << 20)

static uint64_t
next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

int
main(int argc, char *argv[])
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s MiB [huge]\n", argv[0]);
		return 2;
	}
	size_t lines = strtoull(argv[1], NULL, 10) * (1UL << 20) / LINE;
	if (lines < 2)
		return 2;
	size_t bytes = (lines * LINE + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
	uint64_t *a = aligned_alloc(HUGE_PAGE, bytes);
	size_t *order = malloc(lines * sizeof(*order));
	if (!a || !order)
		return 1;
	if (argc > 2)
		madvise(a, bytes, MADV_HUGEPAGE);
	uint64_t seed = 88172645463325252ULL;
	for (size_t i = 0; i < lines; i++)
		order[i] = i;
	for (size_t i = lines - 1; i > 0; i--) {
		size_t j = next_rand(&seed) % (i + 1);
		size_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (size_t i = 0; i < lines; i++)
		a[order[i] * (LINE / 8)] = order[(i + 1) % lines] * (LINE / 8);

	const long loads = 10000000;
	struct timespec t0, t1;
	uint64_t p = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < loads; i++)
		p = a[p];
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 +
		(double)(t1.tv_nsec - t0.tv_nsec);
	printf("%s MiB%s: %.1f ns per dependent load (end %llu)\n", argv[1],
		argc > 2 ? " (huge pages asked)" : "", ns / loads,
		(unsigned long long)p);
	return 0;
}

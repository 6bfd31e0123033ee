/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * lifecycle -- the wall-clock cost of a cache's life outside the workload:
 * vmemcache_add of a pool of the given size, the first 100 000 puts of
 * 4 KiB values into it (which touch 400 MB of the pool for the first time),
 * and vmemcache_delete. BENCHMARKS.md quotes its figures.
 * Build: cc -O2 bench/lifecycle.c -Iinclude -Lbuild/bench-run -l:libvmemcache.so.0 -o lifecycle
 * Run: LD_LIBRARY_PATH=build/bench-run ./lifecycle GiB [DIR]   (DIR: /dev/shm)
 */

#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libvmemcache.h>

#define PUTS 100000
#define VALUE 4096

static double
now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int
main(int argc, char *argv[])
{
	static char value[VALUE];
	const char *dir = argc > 2 ? argv[2] : "/dev/shm";
	double gib = argc > 1 ? atof(argv[1]) : 1.0;
	size_t size = (size_t)(gib * (double)(1UL << 30));
	double t0, t1, t2, t3;
	VMEMcache *c;

	if (argc < 2 || gib <= 0) {
		fprintf(stderr, "usage: %s GiB [DIR]\n", argv[0]);
		return 2;
	}
	memset(value, 0x5a, sizeof(value));
	t0 = now();
	c = vmemcache_new();
	if (c == NULL || vmemcache_set_size(c, size) != 0 ||
			vmemcache_add(c, dir) != 0) {
		fprintf(stderr, "cache of %zu bytes in %s: %s\n", size, dir,
			vmemcache_errormsg());
		return 1;
	}
	t1 = now();
	for (unsigned i = 0; i < PUTS; i++) {
		if (vmemcache_put(c, &i, sizeof(i), value, sizeof(value)) != 0) {
			fprintf(stderr, "put %u: %s\n", i, vmemcache_errormsg());
			return 1;
		}
	}
	t2 = now();
	vmemcache_delete(c);
	t3 = now();
	printf("pool %.2f GiB in %s: add %.3f s, %d puts of %d B %.3f s, "
		"delete %.3f s\n", gib, dir, t1 - t0, PUTS, VALUE, t2 - t1,
		t3 - t2);
	return 0;
}

/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * cores -- what two cores of this machine do together when they share
 * nothing, and what one line shared between them costs. BENCHMARKS.md
 * quotes its figures when it discusses puts on two threads.
 *
 *   write N   N threads each write whole 64-byte lines at random places
 *             of their own 512 MiB (transparent huge pages asked for)
 *   read N    the same with one 8-byte load per line
 *   handoff   two threads take turns incrementing one shared counter;
 *             prints the time of one turn (a line moving between cores)
 *
 * Build: cc -O2 -pthread bench/cores.c -o cores
 * Run:   ./cores write 1; ./cores write 2; ./cores read 2; ./cores handoff
 */

#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define LINE 64
#define AREA (512UL << 20)
#define LINES_PER_THREAD 20000000UL
#define TURNS 2000000L
#define MAX_THREADS 16

static int writing;
static _Atomic long turn;

static double
now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *
lines(void *arg)
{
	char *area = mmap(NULL, AREA, PROT_READ | PROT_WRITE,
		MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	madvise(area, AREA, MADV_HUGEPAGE);
	memset(area, 1, AREA);

	uint64_t x = 0x9e3779b97f4a7c15ULL ^ (uintptr_t)arg;
	double t0 = now();
	for (uint64_t i = 0; i < LINES_PER_THREAD; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		char *p = area + (x % (AREA / LINE)) * LINE;
		if (writing)
			memset(p, (int)i, LINE);
		else
			(void)*(volatile uint64_t *)p;
	}
	double secs = now() - t0;
	printf("thread %u: %.1f M lines/s\n", (unsigned)(uintptr_t)arg,
		(double)LINES_PER_THREAD / secs / 1e6);
	munmap(area, AREA);
	return NULL;
}

static void *
take_turns(void *arg)
{
	long me = (long)(intptr_t)arg;
	for (long i = 0; i < TURNS; i++) {
		while (atomic_load_explicit(&turn, memory_order_acquire) % 2 != me)
			;
		atomic_fetch_add_explicit(&turn, 1, memory_order_acq_rel);
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	pthread_t t[MAX_THREADS];
	if (argc < 2) {
		fprintf(stderr, "usage: %s write|read THREADS | handoff\n", argv[0]);
		return 2;
	}
	if (argc == 2 && strcmp(argv[1], "handoff") == 0) {
		double t0 = now();
		for (long i = 0; i < 2; i++)
			pthread_create(&t[i], NULL, take_turns, (void *)(intptr_t)i);
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		printf("one turn: %.0f ns\n", (now() - t0) / (2.0 * TURNS) * 1e9);
		return 0;
	}
	int n = argc == 3 ? atoi(argv[2]) : 0;
	if (n < 1 || n > MAX_THREADS ||
			(strcmp(argv[1], "write") != 0 && strcmp(argv[1], "read") != 0)) {
		fprintf(stderr, "usage: %s write|read THREADS | handoff\n", argv[0]);
		return 2;
	}
	writing = strcmp(argv[1], "write") == 0;
	for (int i = 0; i < n; i++)
		pthread_create(&t[i], NULL, lines, (void *)(uintptr_t)i);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	return 0;
}

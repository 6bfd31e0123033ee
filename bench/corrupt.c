/*
 * A preloadable wrapper of vmemcache_get that damages what every get
 * returns, to show that vmemcache-bench notices a bad value: with
 * CORRUPT_AT=first it flips a bit of the value's first byte, with
 * CORRUPT_AT=inner of byte 256 (the start of a word the driver checks
 * inside the value, when the value holds it), with CORRUPT_AT=last of the
 * last byte copied.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <libvmemcache.h>

typedef ssize_t get_fn(VMEMcache *, const void *, size_t, void *, size_t,
		size_t, size_t *);

static get_fn *real_get;
static const char *corrupt_at = "";

/* Before main: the driver's threads only read these two. */
__attribute__((constructor)) static void
resolve(void)
{
	real_get = (get_fn *)dlsym(RTLD_NEXT, "vmemcache_get");
	const char *at = getenv("CORRUPT_AT");
	if (at != NULL)
		corrupt_at = at;
}

ssize_t
vmemcache_get(VMEMcache *cache, const void *key, size_t key_size,
		void *vbuf, size_t vbufsize, size_t offset, size_t *vsize)
{
	ssize_t n = real_get(cache, key, key_size, vbuf, vbufsize, offset,
			vsize);
	if (n <= 0 || vbuf == NULL)
		return n;
	size_t pos = 0;
	if (strcmp(corrupt_at, "inner") == 0 && n > 256)
		pos = 256;
	else if (strcmp(corrupt_at, "last") == 0)
		pos = (size_t)n - 1;
	((unsigned char *)vbuf)[pos] ^= 0x10;
	return n;
}

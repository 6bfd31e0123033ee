/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * faults.c -- failures from outside and bad input, from C.
 *
 * Usage: faults DIR [TEST...]
 *
 * Caches are created in DIR. A witness cache, filled before the first test,
 * is read back whole after every fault: a failure must lose nothing already
 * stored. Each fault must give the errno and message of the contract and
 * must not crash. The faults:
 *
 *  - a full filesystem at creation (a tiny tmpfs, mounted here when root;
 *    skipped, saying why, otherwise), and a pool larger than memory on
 *    tmpfs: posix_fallocate fails with ENOSPC;
 *  - a pool on tmpfs in a process whose private memory is limited
 *    (RLIMIT_DATA), where the pool cannot be anonymous memory: add falls
 *    back to the file and the cache works;
 *  - an unwritable directory (as root, in a child that drops to uid
 *    65534): EACCES from open;
 *  - a path under a regular file, the regular file itself, /dev/null;
 *  - a value larger than the pool and one larger than the empty pool can
 *    hold; keys of 0 bytes and of 1 MiB;
 *  - NULL pointers in every argument of every function, calls before add
 *    and after a failed add, out-of-range enums, get_stat with wrong sizes;
 *  - DRAM exhaustion: this program defines malloc, realloc and free (the
 *    library's calls come here, SPEC 12 item 3) and makes the n-th
 *    allocation fail, for n = 1, 2, ... until the call needs no more, in
 *    vmemcache_new, vmemcache_add, vmemcache_put, the callback setters and
 *    the calls that must not allocate at all (get, exists, evict,
 *    get_stat). Each such call must fail with ENOMEM, or succeed, and
 *    leave the cache consistent.
 *
 * Exit status: the number of failed checks (capped), 0 when all pass.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libvmemcache.h>

#define MiB ((size_t)1 << 20)
#define TMPFS_MAGIC 0x01021994
#define SENTINEL 5151

static const char *dir;
static int failures;

/* --- DRAM fault injection ------------------------------------------------------- */

extern void *__libc_malloc(size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_calloc(size_t nmemb, size_t size);
extern void __libc_free(void *ptr);

/* While > 0: counts allocations down; the one that reaches 0 fails. */
static int countdown;
static int injected;		/* allocations made to fail */
static unsigned long allocations;	/* while counting */
static int counting;

static int persistent_failure;

static int
inject(void)
{
	if (counting)
		allocations++;
	if (countdown > 0 && --countdown == 0) {
		injected++;
		/* Memory gone for good: every later allocation fails too. */
		if (persistent_failure)
			countdown = 1;
		return 1;
	}
	return 0;
}

void *
malloc(size_t size)
{
	if (inject()) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_malloc(size);
}

void *
realloc(void *ptr, size_t size)
{
	if (inject()) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_realloc(ptr, size);
}

void *
calloc(size_t nmemb, size_t size)
{
	if (inject()) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_calloc(nmemb, size);
}

void
free(void *ptr)
{
	__libc_free(ptr);
}

/* Arms the injection: the n-th allocation from now fails (0: none). */
static void
fail_allocation(int n)
{
	injected = 0;
	countdown = n;
}

static void
disarm(void)
{
	countdown = 0;
}

/* --- checking -------------------------------------------------------------------- */

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

/* A call that must fail: -1 with errno `err` and message `msg` (NULL: any). */
#define CHECK_FAIL(call, err, msg) do { \
	long long r_; \
	int e_; \
	errno = 0; \
	r_ = (long long)(call); \
	e_ = errno; \
	check_failure(__FILE__, __LINE__, #call, r_, e_, err, msg); \
	check_witness(__FILE__, __LINE__); \
} while (0)

/* A call that must succeed (return `expected`) and leave errno alone. */
#define CHECK_RET(call, expected) do { \
	long long r_; \
	errno = SENTINEL; \
	r_ = (long long)(call); \
	if (r_ != (long long)(expected)) \
		failed(__FILE__, __LINE__, "%s returned %lld, expected %lld " \
			"(errno %d, \"%s\")", #call, r_, (long long)(expected), \
			errno, vmemcache_errormsg()); \
	else if (errno != SENTINEL) \
		failed(__FILE__, __LINE__, "%s changed errno to %d", #call, \
			errno); \
} while (0)

#define CHECK_OK(call) CHECK_RET(call, 0)

#define REQUIRE(cond) do { \
	if (!(cond)) { \
		failed(__FILE__, __LINE__, "required: %s (errno %d, \"%s\")", \
			#cond, errno, vmemcache_errormsg()); \
		return; \
	} \
} while (0)

#define SKIP(...) do { \
	printf("    skipped: "); \
	printf(__VA_ARGS__); \
	printf("\n"); \
} while (0)

static void check_witness(const char *file, int line);

static void
check_failure(const char *file, int line, const char *call, long long r,
	int e, int err, const char *msg)
{
	if (r != -1)
		failed(file, line, "%s returned %lld, expected -1", call, r);
	if (e != err)
		failed(file, line, "%s: errno %d (%s), expected %d (%s)", call, e,
			strerror(e), err, strerror(err));
	if (msg != NULL && strcmp(vmemcache_errormsg(), msg) != 0)
		failed(file, line, "%s: message \"%s\", expected \"%s\"", call,
			vmemcache_errormsg(), msg);
}

/* --- the witness: stored before the faults, read back after each ------------------------ */

#define WITNESS_ENTRIES 64
static VMEMcache *witness;

static void
witness_value(unsigned i, unsigned char *buf, size_t *len)
{
	size_t j;
	*len = 100 + i * 37;
	for (j = 0; j < *len; j++)
		buf[j] = (unsigned char)(i * 13 + j * 7);
}

static void
make_witness(void)
{
	unsigned char buf[4096];
	size_t len;
	unsigned i;

	witness = vmemcache_new();
	if (witness == NULL || vmemcache_set_size(witness, 8 * MiB) ||
			vmemcache_add(witness, dir)) {
		failed(__FILE__, __LINE__, "cannot create the witness cache: %s",
			vmemcache_errormsg());
		exit(1);
	}
	for (i = 0; i < WITNESS_ENTRIES; i++) {
		witness_value(i, buf, &len);
		if (vmemcache_put(witness, &i, sizeof(i), buf, len) != 0) {
			failed(__FILE__, __LINE__, "witness put: %s",
				vmemcache_errormsg());
			exit(1);
		}
	}
}

static void
check_witness(const char *file, int line)
{
	unsigned char want[4096], got[4096];
	size_t len, vsize;
	unsigned long long entries = 0;
	unsigned i;
	int saved = errno;

	for (i = 0; i < WITNESS_ENTRIES; i++) {
		witness_value(i, want, &len);
		vsize = 0;
		if (vmemcache_get(witness, &i, sizeof(i), got, sizeof(got), 0,
				&vsize) != (ssize_t)len || vsize != len ||
				memcmp(want, got, len) != 0) {
			failed(file, line, "the witness lost entry %u", i);
			break;
		}
	}
	if (vmemcache_get_stat(witness, VMEMCACHE_STAT_ENTRIES, &entries,
			sizeof(entries)) != 0 ||
			(entries != WITNESS_ENTRIES && entries != 0))
		failed(file, line, "the witness holds %llu entries", entries);
	errno = saved;
}

/* --- helpers ------------------------------------------------------------------------ */

static VMEMcache *
new_cache(size_t size)
{
	VMEMcache *c = vmemcache_new();
	if (c == NULL || vmemcache_set_size(c, size) || vmemcache_add(c, dir)) {
		failed(__FILE__, __LINE__, "cannot create a cache: %s",
			vmemcache_errormsg());
		vmemcache_delete(c);
		return NULL;
	}
	return c;
}

static unsigned long long
stat_of(VMEMcache *c, enum vmemcache_statistic s)
{
	unsigned long long v = ~0ULL;
	if (vmemcache_get_stat(c, s, &v, sizeof(v)) != 0)
		failed(__FILE__, __LINE__, "get_stat: %s", vmemcache_errormsg());
	return v;
}

static char scratch[4096];

/* A scratch directory of ours under /tmp, which every uid can traverse. */
static const char *
scratch_dir(void)
{
	if (scratch[0] == '\0') {
		snprintf(scratch, sizeof(scratch), "/tmp/vmemcache-faults.XXXXXX");
		if (mkdtemp(scratch) == NULL || chmod(scratch, 0755) != 0) {
			failed(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
			scratch[0] = '\0';
			return NULL;
		}
	}
	return scratch;
}

/* --- the filesystem ----------------------------------------------------------------------- */

/* A full filesystem at creation: a 512 KiB tmpfs cannot hold a 1 MiB pool. */
static void
test_full_filesystem(void)
{
	char mnt[4200], fill[4300];
	VMEMcache *c;
	FILE *f;

	if (geteuid() != 0) {
		SKIP("mounting a small tmpfs needs root");
		return;
	}
	REQUIRE(scratch_dir() != NULL);
	snprintf(mnt, sizeof(mnt), "%s/small-tmpfs", scratch);
	REQUIRE(mkdir(mnt, 0755) == 0);
	if (mount("vmemcache-faults", mnt, "tmpfs", 0, "size=512k") != 0) {
		SKIP("cannot mount a tmpfs here: %s", strerror(errno));
		rmdir(mnt);
		return;
	}
	c = vmemcache_new();
	REQUIRE(c != NULL);
	CHECK_OK(vmemcache_set_size(c, MiB));
	CHECK_FAIL(vmemcache_add(c, mnt), ENOSPC,
		"posix_fallocate: No space left on device");
	/* And with what is left after a file takes most of it. */
	snprintf(fill, sizeof(fill), "%s/fill", mnt);
	f = fopen(fill, "w");
	if (f != NULL) {
		static char block[400 << 10];
		fwrite(block, 1, sizeof(block), f);
		fclose(f);
	}
	CHECK_FAIL(vmemcache_add(c, mnt), ENOSPC,
		"posix_fallocate: No space left on device");
	unlink(fill);
	/* No file is left behind: the whole tmpfs is free again. */
	{
		struct statfs st;
		if (statfs(mnt, &st) == 0)
			CHECK_EQ(st.f_bfree, st.f_blocks);
	}
	/* The failed add can be retried elsewhere. */
	CHECK_OK(vmemcache_add(c, dir));
	CHECK_OK(vmemcache_put(c, "k", 1, "v", 1));
	vmemcache_delete(c);
	umount(mnt);
	rmdir(mnt);
}

/* The first writable tmpfs among the usual places, or NULL. */
static const char *
find_tmpfs(struct statfs *st)
{
	static const char *candidates[] = {"/dev/shm", "/run", "/tmp"};
	size_t i;

	for (i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
		if (statfs(candidates[i], st) == 0 &&
				st->f_type == TMPFS_MAGIC &&
				access(candidates[i], W_OK) == 0)
			return candidates[i];
	return NULL;
}

/* A pool larger than memory, on tmpfs: posix_fallocate refuses it. */
static void
test_pool_larger_than_memory(void)
{
	struct statfs st;
	const char *tmpfs = find_tmpfs(&st);
	VMEMcache *c;

	if (tmpfs == NULL) {
		SKIP("no writable tmpfs among /dev/shm, /run, /tmp");
		return;
	}
	if ((unsigned long long)st.f_blocks * st.f_bsize >= (1ULL << 40)) {
		SKIP("%s holds 1 TiB", tmpfs);
		return;
	}
	c = vmemcache_new();
	REQUIRE(c != NULL);
	CHECK_OK(vmemcache_set_size(c, (size_t)1 << 40));
	CHECK_FAIL(vmemcache_add(c, tmpfs), ENOSPC,
		"posix_fallocate: No space left on device");
	/* The largest size the setter accepts: beyond any file size. */
	CHECK_OK(vmemcache_set_size(c, ((size_t)1 << 56) - 1));
	errno = 0;
	CHECK_EQ(vmemcache_add(c, tmpfs), -1);
	CHECK(errno == EFBIG || errno == ENOSPC);
	CHECK(strncmp(vmemcache_errormsg(), "posix_fallocate: ", 17) == 0);
	check_witness(__FILE__, __LINE__);
	/* Nothing was left in the filesystem. */
	{
		struct statfs after;
		if (statfs(tmpfs, &after) == 0 && after.f_bfree + 256 <
				st.f_bfree)
			failed(__FILE__, __LINE__, "%s lost %llu blocks", tmpfs,
				(unsigned long long)(st.f_bfree - after.f_bfree));
	}
	CHECK_OK(vmemcache_set_size(c, MiB));
	CHECK_OK(vmemcache_add(c, tmpfs));
	vmemcache_delete(c);
}

/*
 * Waits for the test's child `pid`: exit 0 passes, exit 77 skips (saying
 * `skip_why`), anything else fails.
 */
static void
check_child(pid_t pid, const char *who, const char *skip_why)
{
	int status;

	REQUIRE(waitpid(pid, &status, 0) == pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		SKIP("%s", skip_why);
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		failed(__FILE__, __LINE__, "%s failed (status %#x)", who,
			status);
}

/* The process's data size in bytes (VmData), or 0 if unknown. */
static unsigned long long
data_size(void)
{
	char line[256];
	unsigned long long kib = 0;
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmData: %llu kB", &kib) == 1)
			break;
	fclose(f);
	return kib << 10;
}

/*
 * A pool on tmpfs when the process may not have that much private memory
 * (RLIMIT_DATA counts private mappings, not shared ones): add still works,
 * with the pool in the tmpfs file, and holds what is put.
 */
static void
test_tmpfs_pool_without_private_memory(void)
{
	const size_t pool = 64 * MiB;
	struct statfs st;
	const char *tmpfs = find_tmpfs(&st);
	unsigned long long data = data_size();
	pid_t pid;

	if (tmpfs == NULL || data == 0) {
		SKIP("no writable tmpfs among /dev/shm, /run, /tmp, or no VmData");
		return;
	}
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		struct rlimit lim = {data + 16 * MiB, data + 16 * MiB};
		struct statfs before, after;
		char value[1000], got[1000];
		size_t vsize = 0;
		unsigned i;
		VMEMcache *c;

		failures = 0;
		if (setrlimit(RLIMIT_DATA, &lim) != 0)
			_exit(77);
		c = vmemcache_new();
		if (c == NULL)
			_exit(1);
		CHECK_OK(vmemcache_set_size(c, pool));
		/* (No REQUIRE here: its return would carry on in the child.) */
		if (statfs(tmpfs, &before) != 0 ||
				vmemcache_add(c, tmpfs) != 0 ||
				statfs(tmpfs, &after) != 0) {
			fprintf(stderr, "add on %s with RLIMIT_DATA %llu: %s\n",
				tmpfs, (unsigned long long)lim.rlim_cur,
				vmemcache_errormsg());
			_exit(1);
		}
		/* The file holds the pool's space. */
		CHECK((before.f_bfree - after.f_bfree) * before.f_bsize >= pool);
		for (i = 0; i < 1000; i++) {
			memset(value, (int)i, sizeof(value));
			CHECK_OK(vmemcache_put(c, &i, sizeof(i), value,
				sizeof(value)));
		}
		for (i = 0; i < 1000; i++) {
			memset(value, (int)i, sizeof(value));
			CHECK_RET(vmemcache_get(c, &i, sizeof(i), got,
				sizeof(got), 0, &vsize), (long long)sizeof(got));
			CHECK_EQ(vsize, sizeof(value));
			CHECK(memcmp(got, value, sizeof(got)) == 0);
		}
		vmemcache_delete(c);
		_exit(failures ? 1 : 0);
	}
	check_child(pid, "the limited child",
		"the child could not lower its RLIMIT_DATA");
}

/* An unwritable directory: EACCES from open (as root, as uid 65534). */
static void
test_unwritable_directory(void)
{
	char ro[4200];
	pid_t pid;

	REQUIRE(scratch_dir() != NULL);
	snprintf(ro, sizeof(ro), "%s/read-only", scratch);
	REQUIRE(mkdir(ro, 0555) == 0 || errno == EEXIST);
	REQUIRE(chmod(ro, 0555) == 0);
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		VMEMcache *c;
		failures = 0;
		if (geteuid() == 0 && (setgid(65534) != 0 ||
				setuid(65534) != 0)) {
			fprintf(stderr, "cannot drop to uid 65534: %s\n",
				strerror(errno));
			_exit(77);
		}
		c = vmemcache_new();
		if (c == NULL)
			_exit(1);
		CHECK_FAIL(vmemcache_add(c, ro), EACCES,
			"open: Permission denied");
		/* Retried where it may write, it works. */
		if (vmemcache_add(c, "/tmp") != 0) {
			fprintf(stderr, "add in /tmp as uid %d: %s\n",
				(int)geteuid(), vmemcache_errormsg());
			failures++;
		}
		vmemcache_delete(c);
		_exit(failures ? 1 : 0);
	}
	check_child(pid, "the unprivileged child",
		"could not drop privileges");
	rmdir(ro);
}

static void
test_bad_paths(void)
{
	char file[4200], deep[4300], msg[4400];
	struct stat st;
	FILE *f;
	VMEMcache *c = vmemcache_new();
	REQUIRE(c != NULL);
	REQUIRE(scratch_dir() != NULL);

	snprintf(file, sizeof(file), "%s/regular-file", scratch);
	f = fopen(file, "w");
	REQUIRE(f != NULL);
	fclose(f);
	CHECK_FAIL(vmemcache_add(c, file), ENOTDIR, "open: Not a directory");
	snprintf(deep, sizeof(deep), "%s/x/y", file);
	snprintf(msg, sizeof(msg), "os_access \"%s\": Not a directory", deep);
	CHECK_FAIL(vmemcache_add(c, deep), ENOTDIR, msg);
	CHECK_FAIL(vmemcache_add(c, NULL), EINVAL, "invalid (NULL) path");
	CHECK_FAIL(vmemcache_add(c, ""), ENOENT,
		"open: No such file or directory");
	if (stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode)) {
		/* Not a device DAX: EINVAL and no message of its own. */
		CHECK_FAIL(vmemcache_add(c, NULL), EINVAL,
			"invalid (NULL) path");
		CHECK_FAIL(vmemcache_add(c, "/dev/null"), EINVAL,
			"invalid (NULL) path");
	}
	/* After all that, the handle still works. */
	CHECK_OK(vmemcache_add(c, dir));
	CHECK_OK(vmemcache_put(c, "k", 1, "v", 1));
	vmemcache_delete(c);
	unlink(file);
}

/* --- sizes and keys --------------------------------------------------------------------- */

static void
test_value_sizes(void)
{
	static unsigned char big[2 * MiB + 1];
	unsigned long long evictions;
	unsigned i;
	VMEMcache *c = new_cache(MiB);
	REQUIRE(c != NULL);

	for (i = 0; i < 100; i++)
		CHECK_OK(vmemcache_put(c, &i, sizeof(i), big, 1000));
	evictions = stat_of(c, VMEMCACHE_STAT_EVICT);
	/* Larger than the pool: refused unread (a shorter buffer is fine). */
	CHECK_FAIL(vmemcache_put(c, "big", 3, "tiny", MiB + 1), ENOSPC,
		"value larger than entire cache");
	CHECK_FAIL(vmemcache_put(c, "big", 3, big, 2 * MiB + 1), ENOSPC,
		"value larger than entire cache");
	/* Not larger than the pool, but than what it can ever hold. */
	CHECK_FAIL(vmemcache_put(c, "big", 3, big, MiB), ENOSPC,
		"value larger than entire cache");
	CHECK_FAIL(vmemcache_put(c, "big", 3, big, MiB - 8192 + 1), ENOSPC,
		"value larger than entire cache");
	/* None of these evicted anything. */
	CHECK_EQ(stat_of(c, VMEMCACHE_STAT_EVICT), evictions);
	CHECK_EQ(stat_of(c, VMEMCACHE_STAT_ENTRIES), 100);
	/* The largest value that fits does, evicting everything else. */
	CHECK_OK(vmemcache_put(c, "big", 3, big, MiB - 8192));
	CHECK_EQ(stat_of(c, VMEMCACHE_STAT_ENTRIES), 1);
	vmemcache_delete(c);
}

static void
test_key_sizes(void)
{
	static unsigned char key[MiB], other[MiB];
	char buf[16];
	size_t vsize = 0;
	unsigned long long dram;
	size_t i;
	VMEMcache *c = new_cache(2 * MiB);
	REQUIRE(c != NULL);

	for (i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char)(i * 131 + (i >> 12));
	memcpy(other, key, sizeof(other));
	other[sizeof(other) - 1] ^= 1;

	/* The empty key, as NULL and as a real pointer. */
	CHECK_OK(vmemcache_put(c, NULL, 0, "empty", 5));
	CHECK_RET(vmemcache_get(c, "", 0, buf, sizeof(buf), 0, &vsize), 5);
	CHECK_RET(vmemcache_exists(c, NULL, 0, NULL), 1);
	CHECK_FAIL(vmemcache_put(c, "", 0, "again", 5), EEXIST,
		"inserting to the index failed");

	/* A 1 MiB key: its DRAM is counted, and one bit tells keys apart. */
	dram = stat_of(c, VMEMCACHE_STAT_DRAM_SIZE_USED);
	CHECK_OK(vmemcache_put(c, key, sizeof(key), "huge key", 8));
	CHECK(stat_of(c, VMEMCACHE_STAT_DRAM_SIZE_USED) >= dram + MiB);
	CHECK_RET(vmemcache_get(c, key, sizeof(key), buf, sizeof(buf), 0,
		&vsize), 8);
	CHECK(memcmp(buf, "huge key", 8) == 0);
	CHECK_RET(vmemcache_exists(c, other, sizeof(other), NULL), 0);
	CHECK_RET(vmemcache_exists(c, key, sizeof(key) - 1, NULL), 0);
	CHECK_OK(vmemcache_put(c, other, sizeof(other), "other", 5));
	CHECK_RET(vmemcache_get(c, key, sizeof(key), buf, sizeof(buf), 0,
		&vsize), 8);
	CHECK_OK(vmemcache_evict(c, key, sizeof(key)));
	CHECK_RET(vmemcache_exists(c, key, sizeof(key), NULL), 0);
	CHECK_RET(vmemcache_exists(c, other, sizeof(other), NULL), 1);
	CHECK_OK(vmemcache_evict(c, other, sizeof(other)));
	CHECK_OK(vmemcache_evict(c, NULL, 0));
	CHECK_EQ(stat_of(c, VMEMCACHE_STAT_DRAM_SIZE_USED), 0);
	CHECK_EQ(stat_of(c, VMEMCACHE_STAT_ENTRIES), 0);
	check_witness(__FILE__, __LINE__);
	vmemcache_delete(c);
}

/* --- bad arguments ------------------------------------------------------------------------- */

static void
on_any(VMEMcache *c, const void *key, size_t ksize, void *arg)
{
	(void) c; (void) key; (void) ksize; (void) arg;
}

static const char *not_ready =
	"the cache is not initialized (vmemcache_add has not succeeded)";

/* Every data call on a handle that is not ready. */
static void
check_not_ready(VMEMcache *c)
{
	char buf[8];
	size_t vsize = 77;
	unsigned long long v = 0;
	CHECK_FAIL(vmemcache_put(c, "k", 1, "v", 1), EINVAL, not_ready);
	CHECK_FAIL(vmemcache_get(c, "k", 1, buf, sizeof(buf), 0, &vsize),
		EINVAL, not_ready);
	CHECK_EQ(vsize, 77);
	CHECK_FAIL(vmemcache_exists(c, "k", 1, &vsize), EINVAL, not_ready);
	CHECK_FAIL(vmemcache_evict(c, "k", 1), EINVAL, not_ready);
	CHECK_FAIL(vmemcache_evict(c, NULL, 0), EINVAL, not_ready);
	CHECK_FAIL(vmemcache_get_stat(c, VMEMCACHE_STAT_PUT, &v, sizeof(v)),
		EINVAL, not_ready);
	errno = SENTINEL;
	vmemcache_bench_set(c, VMEMCACHE_BENCH_PREFAULT, 0);
	vmemcache_bench_set(c, VMEMCACHE_BENCH_INDEX_ONLY, 1);
	CHECK_EQ(errno, SENTINEL);
}

static void
test_null_arguments(void)
{
	char buf[8];
	size_t vsize = 0;
	unsigned long long v = 0;
	const char *null_cache = "invalid (NULL) cache";
	VMEMcache *c;

	CHECK_FAIL(vmemcache_set_eviction_policy(NULL,
		VMEMCACHE_REPLACEMENT_LRU), EINVAL, null_cache);
	CHECK_FAIL(vmemcache_set_size(NULL, MiB), EINVAL, null_cache);
	CHECK_FAIL(vmemcache_set_extent_size(NULL, 256), EINVAL, null_cache);
	CHECK_FAIL(vmemcache_add(NULL, dir), EINVAL, null_cache);
	CHECK_FAIL(vmemcache_add(NULL, NULL), EINVAL, null_cache);
	CHECK_FAIL(vmemcache_put(NULL, "k", 1, "v", 1), EINVAL, null_cache);
	CHECK_FAIL(vmemcache_put(NULL, NULL, 1, NULL, 1), EINVAL, NULL);
	CHECK_FAIL(vmemcache_get(NULL, "k", 1, buf, sizeof(buf), 0, &vsize),
		EINVAL, null_cache);
	CHECK_FAIL(vmemcache_get(NULL, NULL, 1, NULL, 1, 0, NULL), EINVAL,
		null_cache);
	CHECK_FAIL(vmemcache_exists(NULL, "k", 1, &vsize), EINVAL, null_cache);
	CHECK_FAIL(vmemcache_evict(NULL, "k", 1), EINVAL, null_cache);
	CHECK_FAIL(vmemcache_evict(NULL, NULL, 0), EINVAL, null_cache);
	CHECK_FAIL(vmemcache_get_stat(NULL, VMEMCACHE_STAT_PUT, &v, sizeof(v)),
		EINVAL, null_cache);
	CHECK_FAIL(vmemcache_get_stat(NULL, VMEMCACHE_STAT_PUT, NULL, 8),
		EINVAL, null_cache);
	errno = 0;
	vmemcache_callback_on_evict(NULL, on_any, NULL);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	vmemcache_callback_on_miss(NULL, NULL, NULL);
	CHECK_EQ(errno, EINVAL);
	errno = SENTINEL;
	vmemcache_bench_set(NULL, VMEMCACHE_BENCH_INDEX_ONLY, 1);
	vmemcache_delete(NULL);
	CHECK_EQ(errno, SENTINEL);
	CHECK(vmemcache_errormsg() != NULL);

	c = new_cache(MiB);
	REQUIRE(c != NULL);
	CHECK_OK(vmemcache_put(c, "k", 1, "value", 5));
	/* NULL key or value with a size; NULL where a size of 0 allows. */
	CHECK_FAIL(vmemcache_put(c, NULL, 1, "v", 1), EINVAL,
		"invalid (NULL) key");
	CHECK_FAIL(vmemcache_put(c, "k2", 2, NULL, 1), EINVAL,
		"invalid (NULL) value");
	CHECK_FAIL(vmemcache_get(c, NULL, 1, buf, sizeof(buf), 0, &vsize),
		EINVAL, "invalid (NULL) key");
	CHECK_FAIL(vmemcache_exists(c, NULL, 1, &vsize), EINVAL,
		"invalid (NULL) key");
	CHECK_RET(vmemcache_exists(c, "k", 1, NULL), 1);
	CHECK_FAIL(vmemcache_get_stat(c, VMEMCACHE_STAT_PUT, NULL, 8), EINVAL,
		"invalid (NULL) value");
	/* NULL buffer and NULL vsize are allowed. */
	CHECK_RET(vmemcache_get(c, "k", 1, NULL, 100, 0, NULL), 0);
	CHECK_RET(vmemcache_get(c, "k", 1, buf, sizeof(buf), 1, NULL), 4);
	CHECK_RET(vmemcache_exists(c, "k", 1, NULL), 1);
	CHECK_OK(vmemcache_put(c, "empty", 5, NULL, 0));
	/* NULL callbacks switch them off. */
	vmemcache_callback_on_evict(c, NULL, NULL);
	vmemcache_callback_on_miss(c, NULL, NULL);
	CHECK_OK(vmemcache_evict(c, "k", 1));
	vmemcache_delete(c);
}

static void
test_calls_before_and_after_failed_add(void)
{
	VMEMcache *c = vmemcache_new();
	REQUIRE(c != NULL);
	check_not_ready(c);
	/* A failed add leaves it unconfigured ... */
	CHECK_FAIL(vmemcache_add(c, "/dev/null/x"), ENOTDIR, NULL);
	check_not_ready(c);
	CHECK_OK(vmemcache_set_size(c, 2 * MiB));
	CHECK_OK(vmemcache_set_extent_size(c, 512));
	/* ... and it can be configured and added afterwards. */
	CHECK_OK(vmemcache_add(c, dir));
	CHECK_OK(vmemcache_put(c, "k", 1, "v", 1));
	CHECK_RET(vmemcache_exists(c, "k", 1, NULL), 1);
	vmemcache_delete(c);
}

static void
test_invalid_enums(void)
{
	unsigned long long v = 0;
	static const unsigned bad_stats[] = {9, 10, 100, 0x7fffffff, UINT_MAX};
	static const size_t bad_sizes[] = {0, 1, 4, 7, 9, 16, SIZE_MAX};
	char msg[128];
	size_t i;
	VMEMcache *c = vmemcache_new();
	REQUIRE(c != NULL);

	CHECK_FAIL(vmemcache_set_eviction_policy(c, VMEMCACHE_REPLACEMENT_NUM),
		EINVAL, "invalid replacement policy: 2");
	CHECK_FAIL(vmemcache_set_eviction_policy(c,
		(enum vmemcache_repl_p)0x7fffffff), EINVAL,
		"invalid replacement policy: 2147483647");
	CHECK_FAIL(vmemcache_set_eviction_policy(c, (enum vmemcache_repl_p)-1),
		EINVAL, "invalid replacement policy: 4294967295");
	CHECK_OK(vmemcache_add(c, dir));

	for (i = 0; i < sizeof(bad_stats) / sizeof(bad_stats[0]); i++) {
		snprintf(msg, sizeof(msg), "unknown value of statistic: %u",
			bad_stats[i]);
		CHECK_FAIL(vmemcache_get_stat(c,
			(enum vmemcache_statistic)bad_stats[i], &v, sizeof(v)),
			EINVAL, msg);
	}
	for (i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		snprintf(msg, sizeof(msg), "wrong size of the value: %zu "
			"(should be: 8)", bad_sizes[i]);
		CHECK_FAIL(vmemcache_get_stat(c, VMEMCACHE_STAT_PUT, &v,
			bad_sizes[i]), EINVAL, msg);
		/* The size is checked before the statistic. */
		CHECK_FAIL(vmemcache_get_stat(c, (enum vmemcache_statistic)99,
			&v, bad_sizes[i]), EINVAL, msg);
	}
	for (i = 0; i < 3; i++) {
		unsigned cfg = i == 0 ? 4 : i == 1 ? 7 : UINT_MAX;
		snprintf(msg, sizeof(msg), "invalid config parameter: %u", cfg);
		errno = SENTINEL;
		vmemcache_bench_set(c, (enum vmemcache_bench_cfg)cfg, 1);
		CHECK_EQ(errno, SENTINEL);
		CHECK(strcmp(vmemcache_errormsg(), msg) == 0);
	}
	/* None of that changed anything. */
	CHECK_OK(vmemcache_put(c, "k", 1, "value", 5));
	{
		char buf[8];
		size_t vsize = 0;
		CHECK_RET(vmemcache_get(c, "k", 1, buf, sizeof(buf), 0, &vsize),
			5);
		CHECK_EQ(vsize, 5);
	}
	vmemcache_delete(c);
}

/* --- DRAM exhaustion ---------------------------------------------------------------------- */
/*
 * Each attempt runs in a child process, so that a library that aborts
 * (rather than report ENOMEM) fails the test with the allocation that
 * killed it, and the sweep goes on. Two kinds of exhaustion: a single
 * allocation fails (a transient shortage), or every allocation from the
 * n-th on fails (memory gone for good: reporting the failure must not
 * need memory either).
 */

#define MAX_ATTEMPTS 2000

/* The body of one attempt: returns 0 when no allocation was made to fail
 * (the sweep is over), 1 otherwise; checks with CHECK*. */
typedef int oom_body(int n, int persistent);

static int
oom_sweep(const char *what, oom_body *body)
{
	int n, persistent, last = 0;
	for (persistent = 0; persistent <= 1; persistent++) {
		for (n = 1; n < MAX_ATTEMPTS; n++) {
			int status;
			pid_t pid;
			fflush(NULL);
			pid = fork();
			if (pid < 0) {
				failed(__FILE__, __LINE__, "fork: %s",
					strerror(errno));
				return 0;
			}
			if (pid == 0) {
				int more;
				failures = 0;
				more = body(n, persistent);
				_exit(failures ? 100 : more);
			}
			if (waitpid(pid, &status, 0) != pid) {
				failed(__FILE__, __LINE__, "waitpid");
				return 0;
			}
			if (WIFSIGNALED(status)) {
				failed(__FILE__, __LINE__, "%s: killed by signal "
					"%d when allocation #%d%s failed", what,
					WTERMSIG(status), n, persistent ?
					" and every later one" : "");
				continue;
			}
			if (WEXITSTATUS(status) == 100) {
				failed(__FILE__, __LINE__, "%s: allocation #%d%s "
					"failing: checks failed (above)", what, n,
					persistent ? " and later" : "");
				continue;
			}
			if (WEXITSTATUS(status) == 0)
				break;
		}
		last = n - 1;
	}
	printf("    %s: each of its %d allocations failed in turn, alone "
		"and with every later one\n", what, last);
	return last;
}

/* Arms the injection: allocation n from now fails, and with `persistent`
 * every later one too. */
static void
arm(int n, int persistent)
{
	fail_allocation(n);
	persistent_failure = persistent;
}

static void
disarm_all(void)
{
	disarm();
	persistent_failure = 0;
}

static int
oom_new(int n, int persistent)
{
	VMEMcache *c;
	int e;
	arm(n, persistent);
	errno = 0;
	c = vmemcache_new();
	e = errno;
	disarm_all();
	if (injected == 0) {
		CHECK(c != NULL);
		vmemcache_delete(c);
		return 0;
	}
	CHECK(c == NULL);
	CHECK_EQ(e, ENOMEM);
	CHECK(strcmp(vmemcache_errormsg(),
		"Zalloc: Cannot allocate memory") == 0);
	(void) persistent;
	return 1;
}

static int
oom_add(int n, int persistent)
{
	int r, e;
	VMEMcache *c = vmemcache_new();
	if (c == NULL || vmemcache_set_size(c, 2 * MiB) != 0)
		return failed(__FILE__, __LINE__, "new"), 1;
	vmemcache_callback_on_evict(c, on_any, NULL);
	arm(n, persistent);
	errno = 0;
	r = vmemcache_add(c, dir);
	e = errno;
	disarm_all();
	if (injected == 0) {
		CHECK_EQ(r, 0);
	} else if (r != -1 || e != ENOMEM) {
		failed(__FILE__, __LINE__, "add: %d, errno %d (%s)", r, e,
			vmemcache_errormsg());
	} else {
		/* Even with no memory left, the message is recorded. */
		CHECK(strcmp(vmemcache_errormsg(),
			"Zalloc: Cannot allocate memory") == 0);
		/* The handle is still usable. */
		CHECK_OK(vmemcache_add(c, dir));
	}
	CHECK_OK(vmemcache_put(c, "k", 1, "v", 1));
	vmemcache_delete(c);
	return injected != 0;
}

static int
oom_callbacks(int n, int persistent)
{
	int hit;
	VMEMcache *c = new_cache(MiB);
	if (c == NULL)
		return 1;
	arm(n, persistent);
	errno = 0;
	vmemcache_callback_on_evict(c, on_any, NULL);
	vmemcache_callback_on_miss(c, on_any, NULL);
	disarm_all();
	hit = injected != 0;
	if (hit) {
		CHECK_EQ(errno, ENOMEM);
		CHECK(strcmp(vmemcache_errormsg(),
			"Zalloc: Cannot allocate memory") == 0);
	}
	(void) persistent;
	/* Whatever stuck, the cache works, and the callbacks can be set. */
	vmemcache_callback_on_evict(c, on_any, NULL);
	vmemcache_callback_on_miss(c, on_any, NULL);
	CHECK_OK(vmemcache_put(c, "k", 1, "v", 1));
	CHECK_OK(vmemcache_evict(c, "k", 1));
	vmemcache_delete(c);
	return hit;
}

/* put under injection, with a key of oom_key_size bytes into the witness
 * (the child's copy): ENOMEM or success, nothing else changes. */
static size_t oom_key_size;

static int
oom_put(int n, int persistent)
{
	static unsigned char value[5000], key[2000];
	unsigned long long entries, dram, pool;
	size_t i, ksize = oom_key_size;
	int r, e;

	for (i = 0; i < ksize; i++)
		key[i] = (unsigned char)(0xF0 ^ i);
	entries = stat_of(witness, VMEMCACHE_STAT_ENTRIES);
	dram = stat_of(witness, VMEMCACHE_STAT_DRAM_SIZE_USED);
	pool = stat_of(witness, VMEMCACHE_STAT_POOL_SIZE_USED);
	arm(n, persistent);
	errno = 0;
	r = vmemcache_put(witness, key, ksize, value, sizeof(value));
	e = errno;
	disarm_all();
	if (injected == 0) {
		CHECK_EQ(r, 0);
		return 0;
	}
	if (r == -1) {
		if (e != ENOMEM || strcmp(vmemcache_errormsg(),
				"Zalloc: Cannot allocate memory") != 0)
			failed(__FILE__, __LINE__, "put: errno %d (%s)", e,
				vmemcache_errormsg());
		CHECK_EQ(stat_of(witness, VMEMCACHE_STAT_ENTRIES), entries);
		CHECK_EQ(stat_of(witness, VMEMCACHE_STAT_DRAM_SIZE_USED), dram);
		CHECK_EQ(stat_of(witness, VMEMCACHE_STAT_POOL_SIZE_USED), pool);
		CHECK_RET(vmemcache_exists(witness, key, ksize, NULL), 0);
	} else {
		CHECK_RET(vmemcache_exists(witness, key, ksize, NULL), 1);
	}
	check_witness(__FILE__, __LINE__);
	return 1;
}

static void
test_oom(void)
{
	size_t sizes[] = {1, 8, 40, 1500};
	size_t i;
	(void) vmemcache_errormsg();	/* this thread's message buffer */
	oom_sweep("vmemcache_new", oom_new);
	oom_sweep("vmemcache_add", oom_add);
	oom_sweep("the callback setters", oom_callbacks);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char what[64];
		oom_key_size = sizes[i];
		snprintf(what, sizeof(what), "vmemcache_put (%zu-byte key)",
			sizes[i]);
		oom_sweep(what, oom_put);
	}
}

/* Calls that must not allocate at all (after the thread's message buffer,
 * which the first message allocated). */
static void
test_no_allocation(void)
{
	char buf[64];
	size_t vsize;
	unsigned long long v;
	unsigned i = 3;
	unsigned char longkey[3000] = {0};
	VMEMcache *c = new_cache(MiB);
	REQUIRE(c != NULL);
	(void) vmemcache_errormsg();
	CHECK_OK(vmemcache_put(c, longkey, sizeof(longkey), "v", 1));

	allocations = 0;
	counting = 1;
	CHECK_RET(vmemcache_get(witness, &i, sizeof(i), buf, sizeof(buf), 5,
		&vsize), sizeof(buf));
	CHECK_RET(vmemcache_get(c, longkey, sizeof(longkey), buf, sizeof(buf),
		0, &vsize), 1);
	CHECK_FAIL(vmemcache_get(c, "missing", 7, buf, sizeof(buf), 0, NULL),
		ENOENT, NULL);
	CHECK_RET(vmemcache_exists(witness, &i, sizeof(i), NULL), 1);
	CHECK_RET(vmemcache_get_stat(witness, VMEMCACHE_STAT_HIT, &v,
		sizeof(v)), 0);
	CHECK_FAIL(vmemcache_evict(c, "missing", 7), ENOENT, NULL);
	CHECK_OK(vmemcache_evict(c, longkey, sizeof(longkey)));
	CHECK_FAIL(vmemcache_evict(c, NULL, 0), ESRCH, "no element to evict");
	CHECK_FAIL(vmemcache_get_stat(c, (enum vmemcache_statistic)42, &v,
		sizeof(v)), EINVAL, "unknown value of statistic: 42");
	counting = 0;
	CHECK_EQ(allocations, 0);
	vmemcache_delete(c);
}

/* --- main ---------------------------------------------------------------------------------- */

static const struct test {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{"full_filesystem", test_full_filesystem},
	{"pool_larger_than_memory", test_pool_larger_than_memory},
	{"tmpfs_pool_without_private_memory",
		test_tmpfs_pool_without_private_memory},
	{"unwritable_directory", test_unwritable_directory},
	{"bad_paths", test_bad_paths},
	{"value_sizes", test_value_sizes},
	{"key_sizes", test_key_sizes},
	{"null_arguments", test_null_arguments},
	{"calls_before_and_after_failed_add",
		test_calls_before_and_after_failed_add},
	{"invalid_enums", test_invalid_enums},
	{"oom", test_oom},
	{"no_allocation", test_no_allocation},
};

static void
run(const struct test *t)
{
	int before = failures;
	printf("%s\n", t->name);
	fflush(stdout);
	t->fn();
	check_witness(__FILE__, __LINE__);
	if (failures != before)
		printf("    FAILED (%d)\n", failures - before);
	fflush(stdout);
}

int
main(int argc, char *argv[])
{
	size_t i;
	int a;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR [TEST...]\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	make_witness();
	if (argc == 2)
		for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			run(&tests[i]);
	for (a = 2; a < argc; a++) {
		for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			if (strcmp(argv[a], tests[i].name) == 0)
				break;
		if (i == sizeof(tests) / sizeof(tests[0])) {
			fprintf(stderr, "no test named %s\n", argv[a]);
			return 2;
		}
		run(&tests[i]);
	}
	vmemcache_delete(witness);
	if (scratch[0] != '\0')
		rmdir(scratch);
	if (failures) {
		printf("%d check(s) failed\n", failures);
		return failures < 100 ? failures : 100;
	}
	printf("all checks passed\n");
	return 0;
}

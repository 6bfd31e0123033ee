/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * The C translation unit of the libvmemcache target. The library's code is
 * the Rust static archive, linked whole into the shared object; CMake needs
 * a source of the target's own to create it, and this one also makes every
 * library build compile the public header.
 */

#include "libvmemcache.h"

/* The exported functions are declared by the header and defined in Rust. */
typedef VMEMcache *vmemcache_new_fn(void);

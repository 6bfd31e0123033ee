/*
 * Copyright the vmemcache authors.
 * SPDX-License-Identifier: BSD-3-Clause
 */

/*
 * header.cpp -- the header checks of header.c, compiled as C++: the header
 * must declare everything with C linkage and be valid C++.
 */

#include "header.c"

/* C++ sees the enums as distinct types; the prototypes must still match. */
static_assert(sizeof(vmemcache_on_evict *) == sizeof(void (*)()),
	"callback pointer");

//! Sharded critnib index (SPEC §8.3): maps keys to entry records.
//!
//! The index owns 256 shards (one when sharding is disabled), each a set
//! of critnib tries behind one reader-writer lock, plus the trie nodes and
//! the shard's statistics counters. A key's shard is the low 8 bits of a
//! simplified fast-hash of the key.
//!
//! # Tries per shard
//!
//! A shard of a cache of fewer than 512 extents has one trie, as in the
//! original. A large cache's index would be deep: a shard of a 1 GiB pool
//! of small values holds thousands of keys, three or four nodes deep, and
//! every level is a cache miss. So [`Index::for_capacity`] gives each shard
//! a power of two of tries, up to 16384, about one for every extent of the
//! pool, and the hash bits above the shard's pick a key's trie. Full of
//! values of one or more extents, most tries then hold no key or one.
//! Such tries have *paired roots*: a root of two slots, where a single key
//! is a leaf in the first and a second key a leaf in the second, so that a
//! lookup loads the root and then the entry record, two misses, where one
//! trie per shard costs four or five, and a trie of two keys needs no node
//! (whose miss would come between). Only from a third key on does a trie
//! have nodes, all under the first slot. A key put into an empty trie has
//! the second slot to itself, and there the trie keeps a *value hint*:
//! where the key's value starts in the pool and how many of its lines to
//! ask for, up to a KiB. A get asks for them as soon as it has read the
//! root, so the value's misses overlap the record's instead of following
//! them: a get is two misses deep instead of three. The tries are
//! otherwise canonical critnibs, locked by their shard's lock. The roots
//! cost 16 bytes per extent, 64 MiB at most (reached from a pool of 1 GiB
//! of 256-byte extents), all in one mapping, in transparent huge
//! pages where the kernel gives them, so that reading a root at random does
//! not begin with a page walk. They are not counted in `DRAM_SIZE_USED`
//! (nor were the original's shard headers); with sharding disabled there
//! is a single trie, without pairs, whose node accounting is exactly the
//! original's.
//!
//! # The trie
//!
//! The string a trie compares is a 4-byte little-endian length prefix
//! followed by the key bytes; byte positions past the end of a key read as
//! zero. Keys are at most [`entry::MAX_KEY`](crate::entry::MAX_KEY) bytes,
//! so the prefix is exact, and because the length comes first a key that is
//! a prefix of another one still differs from it. The trie branches on
//! 4-bit nibbles, high nibble first.
//!
//! The trie is canonical: an internal node exists exactly where two or more
//! keys of the shard first differ, and its position is that first differing
//! nibble; a node never has fewer than two children (removing a key that
//! would leave one collapses the node); an empty trie has no root and a
//! single key is a leaf at the root. (With paired roots, two keys are the
//! root's two leaves, a node at the root has more than two keys under it,
//! and a removal that leaves two takes them back into the pair.) Leaves
//! are tagged pointers to the entry
//! records themselves, so a key costs no leaf allocation; the pointer's top
//! bits carry 10 bits of the key's hash, so that a lookup of an absent key
//! rarely has to read a record to see that it is not there.
//!
//! Nodes have variable size: an 8-byte header (nibble position and a bitmap
//! of present children) followed by the child words, with room for an even
//! number of children. That makes every node size a size glibc's `malloc`
//! serves without slack (24 bytes for two children, 136 for sixteen, which
//! is the original's fixed node size), and a node is `realloc`ed only on
//! every second child added or removed. A failed allocation leaves the trie
//! as it was and reports [`Error::OutOfMemory`].
//!
//! # References and locks
//!
//! The index holds one reference on every entry it contains. Lookups take a
//! reference for their caller under the shard's read lock; insertion takes
//! over the caller's reference; removal and [`Index::drain`] hand the
//! index's reference back. The index never drops a reference itself, so it
//! never destroys an entry: the last [`Entry::release`] and the
//! [`Entry::destroy`] that follows happen in the caller, outside any shard
//! lock. No shard lock is held while code outside the index runs, except
//! the closure given to [`Index::peek`]; lookups allocate nothing.
//!
//! The trie itself has no atomics: readers walk it under the shard's read
//! lock and writers change it under the write lock, so everything written
//! into an entry before its insertion (key, value size, storage) is visible
//! to every thread that finds it.
//!
//! The index never reads an entry's value (a value hint only asks for its
//! lines, which cannot fault even where the hint is stale), its policy slot
//! or its links, and it never frees an entry record.

use std::alloc::{self, Layout};
use std::ffi::OsStr;
use std::mem::size_of;
use std::ptr::{self, NonNull};

use crate::entry::{accounted_size, Entry, EntryPtr};
use crate::error::{Error, Result};
use crate::stats::{sum_clamped, Counter};
use crate::sync::RwLock;

/// Number of shards when sharding is on (a power of two).
const SHARDS: usize = 256;
/// log2 of [`SHARDS`]: the hash bits that pick the shard.
const SHARD_BITS: u32 = SHARDS.trailing_zeros();
/// Most tries a shard has (a power of two).
const MAX_TRIES: usize = 16384;
// A key's shard and trie come from the low 32 bits of its hash, all that
// an entry keeps (`Entry::locator`).
const _: () = assert!(SHARDS * MAX_TRIES <= 1 << 32);
/// Keys a trie should hold when the cache is full, for
/// [`Index::for_capacity`].
const KEYS_PER_TRIE: usize = 1;

/// Counter totals of the index.
#[allow(dead_code)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexStats {
    pub(crate) puts: u64,
    pub(crate) evictions: u64,
    pub(crate) entries: u64,
    pub(crate) dram: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

// ---------------------------------------------------------------------------
// Sharding

/// Multiplier of the fast-hash.
const HASH_M: u64 = 0x8803_55f2_1e6d_1965;

/// The fast-hash's finaliser.
#[inline]
fn mix(mut h: u64) -> u64 {
    h ^= h >> 23;
    h = h.wrapping_mul(0x2127_599b_f432_5c37);
    h ^= h >> 47;
    h
}

/// The simplified fast-hash of the original (SPEC §8.3), computed without
/// reading past the end of `key`: the trailing bytes are gathered into a
/// zero-extended little-endian word instead of being masked out of an
/// over-long load.
pub(crate) fn hash(key: &[u8]) -> u64 {
    let mut h = (key.len() as u64).wrapping_mul(HASH_M);
    let mut words = key.chunks_exact(8);
    for word in &mut words {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(word);
        h = (h ^ mix(u64::from_le_bytes(buf))).wrapping_mul(HASH_M);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut buf = [0u8; 8];
        buf[..tail.len()].copy_from_slice(tail);
        h = (h ^ mix(u64::from_le_bytes(buf))).wrapping_mul(HASH_M);
    }
    mix(h)
}

#[allow(dead_code)]
/// Interprets a value of `VMEMCACHE_SHARDING` (`None` when unset).
pub(crate) fn parse_sharding(value: Option<&OsStr>) -> Result<bool> {
    let Some(value) = value else {
        return Ok(true);
    };
    let text = value.to_string_lossy();
    let word = text.to_ascii_lowercase();
    match word.as_str() {
        "1" | "y" | "yes" => Ok(true),
        "0" | "n" | "no" => Ok(false),
        _ => Err(Error::InvalidSharding(text.into_owned())),
    }
}

/// Whether `VMEMCACHE_SHARDING` asks for sharding.
#[allow(dead_code)]
pub(crate) fn sharding_from_env() -> Result<bool> {
    parse_sharding(std::env::var_os("VMEMCACHE_SHARDING").as_deref())
}

// ---------------------------------------------------------------------------
// The compared string

/// Bytes of the length prefix in front of the key.
const PREFIX: usize = 4;

/// Byte `byte` of the string the trie compares for `key`.
#[inline]
fn string_byte(key: &[u8], byte: u32) -> u8 {
    let byte = byte as usize;
    if byte < PREFIX {
        // Longer keys than MAX_KEY are never inserted; a lookup of one
        // merely reads a truncated length and fails at the leaf.
        (key.len() as u32).to_le_bytes()[byte]
    } else {
        key.get(byte - PREFIX).copied().unwrap_or(0)
    }
}

/// A nibble position in the compared string: `2 * byte + 1` for the low
/// nibble of `byte`, `2 * byte` for its high nibble.
type Pos = u64;

/// The nibble of `key`'s string at `pos`.
#[inline]
fn nibble_at(key: &[u8], pos: Pos) -> u8 {
    let value = string_byte(key, (pos >> 1) as u32);
    if pos & 1 == 0 {
        value >> 4
    } else {
        value & 0xf
    }
}

/// The first byte index where `a` and `b` differ, if one is not a prefix
/// of the other.
fn mismatch(a: &[u8], b: &[u8]) -> Option<usize> {
    // Equal 32-byte blocks are skipped with a slice comparison (memcmp),
    // which matters for long keys that share long prefixes.
    let mut offset = 0;
    for (x, y) in a.chunks_exact(32).zip(b.chunks_exact(32)) {
        if x != y {
            break;
        }
        offset += 32;
    }
    a.get(offset..)?
        .iter()
        .zip(b.get(offset..)?)
        .position(|(x, y)| x != y)
        .map(|p| offset + p)
}

/// The first nibble position where the strings of `a` and `b` differ;
/// `None` when the keys are equal.
fn first_diff(a: &[u8], b: &[u8]) -> Option<Pos> {
    let (byte, x, y) = if a.len() != b.len() {
        let la = (a.len() as u32).to_le_bytes();
        let lb = (b.len() as u32).to_le_bytes();
        let i = (0..PREFIX).find(|&i| la[i] != lb[i])?;
        (i, la[i], lb[i])
    } else {
        let i = mismatch(a, b)?;
        (PREFIX + i, a[i], b[i])
    };
    let low = (x ^ y) & 0xf0 == 0;
    Some(byte as u64 * 2 + low as u64)
}

// ---------------------------------------------------------------------------
// Nodes and slots

/// Tag bit of a slot that points to an entry record.
const LEAF: usize = 1;
/// Set in a leaf slot whose top bits hold its key's [`key_tag`].
const TAGGED: usize = 2;
/// The only bit set below bit 6 in a *value hint*: a root's second slot
/// that holds, instead of a second leaf, the pool line where the value of
/// the root's single leaf starts and how many lines to ask for (see
/// [`Trie`]).
const HINT: usize = 4;
/// First bit of a value hint's line count.
const HINT_LINES_SHIFT: u32 = 48;
/// Most lines a value hint asks for.
const HINT_LINES: usize = 16;
/// First bit of a leaf slot's key tag.
const TAG_SHIFT: u32 = 54;
/// Bits of the locator ([`Entry::locator`]) that no placement uses: they
/// are the key tag.
const TAG_FROM: u32 = 22;

// The placement bits (shard and trie) stay below the tag's.
const _: () = assert!(SHARD_BITS + MAX_TRIES.trailing_zeros() <= TAG_FROM);
const _: () = assert!(TAG_SHIFT + (32 - TAG_FROM) == 64);
/// The tag's bits in a slot (none on targets with narrower addresses,
/// where leaves carry no tag).
const TAG_MASK: usize = (u64::MAX << TAG_SHIFT) as usize;

/// The key tag of the key whose locator is `locator`, in the slot's bits:
/// 10 bits of the key's hash that neither its shard nor its trie depend
/// on, so keys of one trie differ there as often as random bits do.
#[inline]
fn key_tag(locator: u32) -> usize {
    (((locator >> TAG_FROM) as u64) << TAG_SHIFT) as usize
}

/// A child word (or the root): empty, a tagged entry pointer, or a node
/// pointer; in a root's second slot also a value hint ([`Slot::hint`]).
/// Entry records and nodes are 8-aligned, so bits 0 to 2 are free.
///
/// A leaf also carries its key's tag ([`key_tag`]) in its top bits (when
/// the record's address leaves them clear, which user-space addresses do):
/// a lookup of another key that ends at this leaf sees the mismatch in most
/// cases without reading the record, a cache miss in a large cache. Most
/// lookups of absent keys (every put's existence check, every miss of a
/// get) end that way.
///
/// Invariant: a non-empty slot stored in a trie points to a live node owned
/// by that trie or to an entry on which the index holds a reference.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
struct Slot(usize);

impl Slot {
    const EMPTY: Slot = Slot(0);

    /// The leaf of `entry`, which must be alive (its locator is read).
    fn leaf(entry: EntryPtr) -> Slot {
        let address = entry.as_ptr() as usize;
        if TAG_MASK == 0 || address & TAG_MASK != 0 {
            return Slot(address | LEAF);
        }
        // SAFETY: the callers hold a reference on the entry.
        let locator = unsafe { entry.get() }.locator();
        Slot(address | LEAF | TAGGED | key_tag(locator))
    }

    fn from_node(node: NodePtr) -> Slot {
        Slot(node.0.as_ptr() as usize)
    }

    /// The value hint for a value whose first `bytes` bytes lie from
    /// `value` on (empty for null, or for an address beyond 48 bits): the
    /// line of `value`, and in the top 16 bits the number of lines to ask
    /// for, less one.
    fn hint(value: *const u8, bytes: usize) -> Slot {
        let address = value as usize as u64 & !63;
        if value.is_null() || address >> HINT_LINES_SHIFT != 0 {
            return Slot::EMPTY;
        }
        let lines = bytes.div_ceil(64).clamp(1, HINT_LINES) as u64;
        Slot((address | HINT as u64 | (lines - 1) << HINT_LINES_SHIFT) as usize)
    }

    /// The first pool line and the number of lines a value hint names.
    #[inline]
    fn hinted(self) -> Option<(*const u8, usize)> {
        if self.0 & (LEAF | HINT) != HINT {
            return None;
        }
        let word = self.0 as u64;
        let address = word & ((1 << HINT_LINES_SHIFT) - 1) & !63;
        Some((
            address as usize as *const u8,
            (word >> HINT_LINES_SHIFT) as usize + 1,
        ))
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The entry of a leaf slot.
    fn entry(self) -> Option<EntryPtr> {
        if self.0 & LEAF == 0 {
            return None;
        }
        let address = if self.0 & TAGGED != 0 {
            self.0 & !TAG_MASK
        } else {
            self.0
        };
        // SAFETY: leaf slots are only made by `Slot::leaf` from a live
        // entry pointer, which is non-null once the tags are cleared.
        Some(unsafe { EntryPtr::from_raw((address & !(LEAF | TAGGED)) as *const Entry) })
    }

    /// False when this leaf's key tag shows that its key is not the key
    /// whose locator is `locator`; true when it may be.
    #[inline]
    fn may_hold(self, locator: u32) -> bool {
        self.0 & TAGGED == 0 || self.0 & TAG_MASK == key_tag(locator)
    }

    /// The node of a node slot.
    fn node(self) -> Option<NodePtr> {
        if self.0 & (LEAF | HINT) != 0 {
            return None;
        }
        NonNull::new(self.0 as *mut Node).map(NodePtr)
    }
}

/// The header of an internal node; `cap` child slots follow it.
#[derive(Clone, Copy)]
#[repr(C)]
struct Node {
    /// Byte of the compared string this node branches on.
    byte: u32,
    /// Bit `n` is set when the child for nibble `n` is present; children
    /// are stored in nibble order.
    bitmap: u16,
    /// 1 when the node branches on the low nibble of `byte`.
    low: u8,
    /// Number of child slots allocated (even, 2 to 16).
    cap: u8,
}

const NODE_HEADER: usize = size_of::<Node>();
const NODE_ALIGN: usize = 8;

// The child words follow the header without padding.
const _: () = assert!(NODE_HEADER == 8 && NODE_HEADER % size_of::<usize>() == 0);

/// Bytes of a node with room for `cap` children.
const fn node_bytes(cap: usize) -> usize {
    NODE_HEADER + cap * size_of::<Slot>()
}

/// Child slots to allocate for `count` children: rounded up to even, so
/// that `node_bytes` plus malloc's 8-byte chunk header is a multiple of 16.
const fn cap_for(count: usize) -> usize {
    (count + 1) & !1
}

fn node_layout(cap: usize) -> Layout {
    // SAFETY: the alignment is a power of two and the size (at most 136
    // bytes) is far from overflowing when rounded up to it.
    unsafe { Layout::from_size_align_unchecked(node_bytes(cap), NODE_ALIGN) }
}

/// DRAM a node with room for `cap` children accounts for.
fn node_dram(cap: usize) -> usize {
    accounted_size(node_bytes(cap))
}

/// A pointer to a node.
///
/// Invariant: it points to a live, initialised node whose first
/// `popcount(bitmap)` child slots are initialised, owned by a trie the
/// caller has borrowed (shared for reading, exclusively for writing).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct NodePtr(NonNull<Node>);

impl NodePtr {
    fn header(self) -> Node {
        // SAFETY: by the type's invariant the node is live.
        unsafe { self.0.as_ptr().read() }
    }

    fn pos(self) -> Pos {
        let h = self.header();
        h.byte as u64 * 2 + h.low as u64
    }

    fn bitmap(self) -> u16 {
        self.header().bitmap
    }

    fn count(self) -> usize {
        self.bitmap().count_ones() as usize
    }

    fn cap(self) -> usize {
        self.header().cap as usize
    }

    fn slots(self) -> *mut Slot {
        // SAFETY: the child slots start right after the header, inside the
        // same allocation.
        unsafe { (self.0.as_ptr() as *mut u8).add(NODE_HEADER) as *mut Slot }
    }

    /// Index in the child array of the child for `nibble`, if present.
    #[inline]
    fn rank(self, nibble: u8) -> Option<usize> {
        let bit = 1u16 << nibble;
        let bitmap = self.bitmap();
        if bitmap & bit == 0 {
            return None;
        }
        Some((bitmap & (bit - 1)).count_ones() as usize)
    }

    /// The child slot at array index `i` (`i < count`).
    fn slot(self, i: usize) -> Slot {
        debug_assert!(i < self.count());
        // SAFETY: `i` is below the number of initialised children.
        unsafe { *self.slots().add(i) }
    }

    /// Where the child slot at array index `i` lives (`i < count`).
    fn slot_mut(self, i: usize) -> *mut Slot {
        debug_assert!(i < self.count());
        // SAFETY: `i` is within the allocated child slots.
        unsafe { self.slots().add(i) }
    }

    fn child(self, nibble: u8) -> Option<Slot> {
        self.rank(nibble).map(|i| self.slot(i))
    }

    /// The children with their nibbles, in nibble order.
    fn children(self) -> impl Iterator<Item = (u8, Slot)> {
        let bitmap = self.bitmap();
        (0..16u8)
            .filter(move |n| bitmap & (1 << n) != 0)
            .enumerate()
            .map(move |(i, n)| (n, self.slot(i)))
    }

    /// Allocates a node at `pos` with two children (`a.0 != b.0`).
    fn new(pos: Pos, a: (u8, Slot), b: (u8, Slot)) -> Result<NodePtr> {
        let (first, second) = if a.0 < b.0 { (a, b) } else { (b, a) };
        let cap = 2;
        let raw = node_alloc(node_layout(cap));
        let node = NonNull::new(raw as *mut Node).ok_or(Error::OutOfMemory)?;
        // SAFETY: `raw` is a fresh allocation of `node_bytes(2)` bytes,
        // 8-aligned: room for the header and two child words.
        unsafe {
            node.as_ptr().write(Node {
                byte: (pos >> 1) as u32,
                bitmap: (1u16 << first.0) | (1u16 << second.0),
                low: (pos & 1) as u8,
                cap: cap as u8,
            });
            let slots = raw.add(NODE_HEADER) as *mut Slot;
            slots.write(first.1);
            slots.add(1).write(second.1);
        }
        Ok(NodePtr(node))
    }

    /// Adds the child `slot` for the absent `nibble`, growing the node when
    /// it is full. Returns the (possibly moved) node and the DRAM added; on
    /// failure the node is unchanged.
    fn add_child(self, nibble: u8, slot: Slot) -> Result<(NodePtr, usize)> {
        let count = self.count();
        let cap = self.cap();
        if count >= 16 {
            return Err(Error::Internal("adding a child to a full index node"));
        }
        let (node, added) = if count < cap {
            (self, 0)
        } else {
            let new_cap = cap_for(count + 1);
            let raw = node_realloc(self, new_cap);
            let node = NonNull::new(raw as *mut Node).ok_or(Error::OutOfMemory)?;
            // SAFETY: the new block got the header and children and room
            // for `new_cap` slots.
            unsafe { (*node.as_ptr()).cap = new_cap as u8 };
            (NodePtr(node), node_dram(new_cap) - node_dram(cap))
        };
        let bit = 1u16 << nibble;
        let bitmap = node.bitmap();
        let at = (bitmap & (bit - 1)).count_ones() as usize;
        // SAFETY: there is room for `count + 1` slots; the slots from `at`
        // on move up by one (an overlapping copy), then the new one goes in.
        unsafe {
            let slots = node.slots();
            ptr::copy(slots.add(at), slots.add(at + 1), count - at);
            slots.add(at).write(slot);
            (*node.0.as_ptr()).bitmap = bitmap | bit;
        }
        Ok((node, added))
    }

    /// Removes the child at array index `i` of a node with at least three
    /// children, shrinking the allocation when a smaller one suffices.
    /// Returns the (possibly moved) node and the DRAM released.
    fn remove_child(self, nibble: u8, i: usize) -> (NodePtr, usize) {
        let count = self.count();
        // SAFETY: `i < count`; the later slots move down by one.
        unsafe {
            let slots = self.slots();
            ptr::copy(slots.add(i + 1), slots.add(i), count - i - 1);
            (*self.0.as_ptr()).bitmap &= !(1u16 << nibble);
        }
        let cap = self.cap();
        let new_cap = cap_for(count - 1);
        if new_cap >= cap {
            return (self, 0);
        }
        let raw = node_realloc(self, new_cap);
        match NonNull::new(raw as *mut Node) {
            Some(node) => {
                // SAFETY: the new block got the first `new_cap` slots, which
                // hold every remaining child.
                unsafe { (*node.as_ptr()).cap = new_cap as u8 };
                (NodePtr(node), node_dram(cap) - node_dram(new_cap))
            }
            // Shrinking failed: the larger block is still valid and simply
            // stays as it is.
            None => (self, 0),
        }
    }

    /// Frees the node (not its children); returns the DRAM released.
    fn free(self) -> usize {
        let cap = self.cap();
        // SAFETY: the node was allocated with the layout of its `cap`, and
        // the trie no longer refers to it.
        unsafe { alloc::dealloc(self.0.as_ptr() as *mut u8, node_layout(cap)) };
        node_dram(cap)
    }
}

/// Allocates a node block; null on failure.
fn node_alloc(layout: Layout) -> *mut u8 {
    #[cfg(test)]
    if tests::inject_alloc_failure() {
        return ptr::null_mut();
    }
    // SAFETY: node layouts have a non-zero size.
    unsafe { alloc::alloc(layout) }
}

/// Resizes `node` to `new_cap` slots; null on failure (the old block is
/// then untouched).
fn node_realloc(node: NodePtr, new_cap: usize) -> *mut u8 {
    #[cfg(test)]
    if tests::inject_alloc_failure() {
        return ptr::null_mut();
    }
    // A new block, the copy and a free rather than `realloc`: glibc's
    // realloc always takes the lock of the malloc arena that owns the block,
    // and a node often belongs to another thread's arena (whichever thread
    // made it), while small mallocs and frees are mostly served from the
    // calling thread's own cache without any lock.
    let old = node_layout(node.cap());
    let new = node_layout(new_cap);
    // SAFETY: node layouts have a non-zero size.
    let p = unsafe { alloc::alloc(new) };
    if p.is_null() {
        return p;
    }
    // SAFETY: both blocks are live and distinct; the copy stays within the
    // smaller one. The old block was allocated with the layout of the
    // node's current `cap` and is not used again.
    unsafe {
        ptr::copy_nonoverlapping(node.0.as_ptr() as *const u8, p, old.size().min(new.size()));
        alloc::dealloc(node.0.as_ptr() as *mut u8, old);
    }
    p
}

/// DRAM an indexed entry accounts for: its record and its run list.
#[inline]
fn entry_dram(entry: &Entry) -> u64 {
    entry.dram_size() as u64
}

// ---------------------------------------------------------------------------
// One trie

/// The critnib of one trie. It owns its nodes; see [`Slot`] for what the
/// leaves refer to.
///
/// `root` is the critnib's root. `second` is empty except in an index with
/// *paired roots* ([`Index::pairs`]): there a trie of two keys keeps both
/// as leaves, in `root` and `second`, instead of under a node of its own,
/// so a lookup of either reads the root's line and then the record, with
/// no node's miss between them. A third key puts all three under nodes at
/// `root` as usual, and a removal that leaves two leaves under the top
/// node alone takes them back into the pair. The 16 bytes of a trie never
/// straddle two cache lines.
///
/// Beside a single key put into an empty trie, `second` holds a *value
/// hint* ([`Slot::hint`]): the pool line where that key's value starts,
/// and how many of the value's lines (up to [`HINT_LINES`]) to ask for. A
/// get of the key asks for them as soon as it has read the root, so the
/// value's misses overlap the record's instead of following it. The
/// hint is only ever used for a prefetch, which cannot fault; it goes when
/// a second key comes, and a key left alone by a removal gets none (its
/// value's place is in its record, whose miss the removal would take).
#[repr(C, align(16))]
struct Trie {
    root: Slot,
    second: Slot,
}

// An empty trie is zero bytes, what a fresh anonymous mapping holds (see
// `RootMemory`).
const _: () = assert!(Slot::EMPTY.0 == 0);

impl Trie {
    /// The entry whose key is `key`; `locator` is the key's
    /// ([`Entry::locator`]); `pairs` tells whether the trie's index has
    /// paired roots.
    fn find(&self, key: &[u8], locator: u32, pairs: bool) -> Option<EntryPtr> {
        let mut slot = self.root;
        if slot.node().is_none() {
            // At most two keys, as leaves in the root's two slots.
            let second = self.second;
            if second.entry().is_none() {
                if let Some((value, lines)) = second.hinted() {
                    if slot.may_hold(locator) {
                        for line in 0..lines {
                            crate::hint::prefetch(value.wrapping_add(line * 64));
                        }
                    }
                }
                // A put of another key compares it with this leaf's only
                // where the pair cannot take it beside the leaf.
                return Self::at_leaf(slot, key, locator, !pairs);
            }
            // A put of another key puts all three under a node, which
            // compares the keys of both.
            return Self::at_leaf(slot, key, locator, true)
                .or_else(|| Self::at_leaf(second, key, locator, true));
        }
        while let Some(node) = slot.node() {
            slot = node.child(nibble_at(key, node.pos()))?;
        }
        Self::at_leaf(slot, key, locator, true)
    }

    /// The entry of the leaf `slot` if its key is `key` (whose locator is
    /// `locator`). When the leaf's tag rules the key out and `prefetch`
    /// says that a put of the key would compare it with the leaf's, the
    /// record's miss starts now.
    #[inline]
    fn at_leaf(slot: Slot, key: &[u8], locator: u32, prefetch: bool) -> Option<EntryPtr> {
        let entry = slot.entry()?;
        if !slot.may_hold(locator) {
            if prefetch {
                let header = entry.as_ptr() as *const u8;
                crate::hint::prefetch(header);
                crate::hint::prefetch(header.wrapping_add(size_of::<Entry>()));
            }
            return None;
        }
        // SAFETY: the index's reference keeps the entry alive while the
        // trie is borrowed.
        (unsafe { entry.get() }.key() == key).then_some(entry)
    }

    /// Inserts `entry`; `value` is where its value starts in the pool and
    /// how many of its bytes follow there in one run (null: unknown or no
    /// storage). Returns the DRAM the new or grown nodes added.
    /// `pairs` tells whether the trie's index has paired roots.
    fn insert(&mut self, entry: EntryPtr, value: (*const u8, usize), pairs: bool) -> Result<usize> {
        if !pairs || self.root.node().is_some() {
            return Self::insert_at(&mut self.root, entry);
        }
        let leaf = Slot::leaf(entry);
        if self.root.is_empty() {
            self.root = leaf;
            self.second = Slot::hint(value.0, value.1);
            return Ok(0);
        }
        // One or two leaves: the key must be neither of theirs, which a
        // leaf's tag mostly tells without its record.
        // SAFETY: the caller holds a reference on `entry`.
        let e = unsafe { entry.get() };
        for slot in [self.root, self.second] {
            if let Some(other) = slot.entry() {
                // SAFETY: indexed entries are alive while the trie is
                // borrowed.
                if slot.may_hold(e.locator()) && unsafe { other.get() }.key() == e.key() {
                    return Err(Error::KeyExists);
                }
            }
        }
        if self.second.entry().is_none() {
            self.second = leaf;
            return Ok(0);
        }
        // A third key: the three go under nodes at the root, built aside
        // so that a failed allocation leaves the pair as it was.
        let mut top = self.root;
        let second = self
            .second
            .entry()
            .ok_or(Error::Internal("a node in a root's second slot"))?;
        let mut added = Self::insert_at(&mut top, second)?;
        match Self::insert_at(&mut top, entry) {
            Ok(more) => added += more,
            Err(err) => {
                // `top` is still the node of the first two.
                if let Some(node) = top.node() {
                    node.free();
                }
                return Err(err);
            }
        }
        self.root = top;
        self.second = Slot::EMPTY;
        Ok(added)
    }

    /// Inserts `entry` into the critnib whose root is `top`; returns the
    /// DRAM the new or grown node added.
    fn insert_at(top: &mut Slot, entry: EntryPtr) -> Result<usize> {
        // SAFETY: the caller holds a reference on `entry`.
        let key = unsafe { entry.get() }.key();
        let leaf = Slot::leaf(entry);
        if top.is_empty() {
            *top = leaf;
            return Ok(0);
        }

        // Some key of the subtree `key` belongs to: follow its nibbles as
        // far as they go, then any child.
        let mut slot = *top;
        while let Some(node) = slot.node() {
            slot = match node.child(nibble_at(key, node.pos())) {
                Some(child) => child,
                None => node.slot(0),
            };
        }
        let other = slot
            .entry()
            .ok_or(Error::Internal("empty slot in the index"))?;
        // SAFETY: indexed entries are alive while the trie is borrowed.
        let other = unsafe { other.get() }.key();
        let diff = first_diff(key, other).ok_or(Error::KeyExists)?;

        // Down again to where the new key branches off. Above `diff` the
        // key agrees with `other`, so it follows `other`'s path.
        let mut at: *mut Slot = top;
        loop {
            // SAFETY: `at` points to the root or into a child array of this
            // trie, which we borrow exclusively.
            let here = unsafe { *at };
            if let Some(node) = here.node() {
                let pos = node.pos();
                if pos < diff {
                    let i = node
                        .rank(nibble_at(key, pos))
                        .ok_or(Error::Internal("index path lost"))?;
                    at = node.slot_mut(i);
                    continue;
                }
                if pos == diff {
                    // The key's nibble is absent here: had a child for it
                    // existed, the leaf found above would agree at `diff`.
                    let (grown, added) = node.add_child(nibble_at(key, pos), leaf)?;
                    // SAFETY: as above.
                    unsafe { *at = Slot::from_node(grown) };
                    return Ok(added);
                }
            }
            // `here` holds `other` and keys agreeing with it up to beyond
            // `diff`: a new node at `diff` separates them from the key.
            let node = NodePtr::new(
                diff,
                (nibble_at(key, diff), leaf),
                (nibble_at(other, diff), here),
            )?;
            // SAFETY: as above.
            unsafe { *at = Slot::from_node(node) };
            return Ok(node_dram(node.cap()));
        }
    }

    /// Removes this very entry; returns the DRAM released by nodes, or
    /// `None` if the entry is not in the trie. `pairs` tells whether the
    /// trie's index has paired roots.
    fn remove(&mut self, entry: EntryPtr, pairs: bool) -> Option<usize> {
        if self.root.node().is_none() {
            // Leaves only: the second moves up if the first goes.
            let leaf = Slot::leaf(entry);
            if self.root == leaf {
                let second = std::mem::replace(&mut self.second, Slot::EMPTY);
                self.root = if second.entry().is_some() {
                    second
                } else {
                    Slot::EMPTY
                };
            } else if self.second == leaf {
                self.second = Slot::EMPTY;
            } else {
                return None;
            }
            return Some(0);
        }
        let mut released = Self::remove_at(&mut self.root, entry)?;
        if pairs {
            // Two leaves left under the top node alone go back into the pair.
            if let Some(node) = self.root.node() {
                if node.count() == 2 {
                    let (first, second) = (node.slot(0), node.slot(1));
                    if first.entry().is_some() && second.entry().is_some() {
                        released += node.free();
                        self.root = first;
                        self.second = second;
                    }
                }
            }
        }
        Some(released)
    }

    /// Removes this very entry from the critnib whose root is `top`;
    /// returns the DRAM released by nodes, or `None` if the entry is not
    /// there.
    fn remove_at(top: &mut Slot, entry: EntryPtr) -> Option<usize> {
        // SAFETY: the caller holds a reference on `entry`.
        let key = unsafe { entry.get() }.key();
        let leaf = Slot::leaf(entry);
        let mut parent: Option<(*mut Slot, NodePtr, u8, usize)> = None;
        let mut at: *mut Slot = top;
        loop {
            // SAFETY: `at` points to the root or into a child array of this
            // trie, which we borrow exclusively.
            let here = unsafe { *at };
            let Some(node) = here.node() else {
                if here != leaf {
                    return None;
                }
                break;
            };
            let nibble = nibble_at(key, node.pos());
            let i = node.rank(nibble)?;
            parent = Some((at, node, nibble, i));
            at = node.slot_mut(i);
        }
        let Some((parent_at, node, nibble, i)) = parent else {
            *top = Slot::EMPTY;
            return Some(0);
        };
        let (replacement, released) = if node.count() == 2 {
            // The node would keep one child: it collapses into it.
            let sibling = node.slot(1 - i);
            (sibling, node.free())
        } else {
            let (node, released) = node.remove_child(nibble, i);
            (Slot::from_node(node), released)
        };
        // SAFETY: `parent_at` is the root or a slot of a node other than the
        // one just freed or moved.
        unsafe { *parent_at = replacement };
        Some(released)
    }

    /// Empties the trie, handing every entry to `f` and freeing every node
    /// without recursion or extra memory; returns the DRAM released by
    /// nodes.
    ///
    /// The walk pops the last child of the top node. When that child is a
    /// node and the top has others, the two are rotated: the child becomes
    /// the top and the old top takes the child's first slot (whose occupant
    /// moves into the vacated last slot). The chain of first children only
    /// grows, and every rotation takes one node off the other branches, so
    /// the walk ends after as many steps as there are nodes and entries.
    fn dismantle(&mut self, mut f: impl FnMut(EntryPtr)) -> usize {
        let mut released = 0;
        if let Some(entry) = std::mem::replace(&mut self.second, Slot::EMPTY).entry() {
            f(entry);
        }
        let mut top = std::mem::replace(&mut self.root, Slot::EMPTY);
        loop {
            if let Some(entry) = top.entry() {
                f(entry);
                return released;
            }
            let Some(node) = top.node() else {
                return released;
            };
            let count = node.count();
            if count == 0 {
                released += node.free();
                return released;
            }
            let last = node.slot(count - 1);
            if let Some(entry) = last.entry() {
                // Clear the highest set bit: the count drops by one, and the
                // bitmap no longer has to match nibbles.
                let bitmap = node.bitmap();
                let highest = 15 - bitmap.leading_zeros();
                // SAFETY: the node is ours alone while the trie is borrowed
                // exclusively.
                unsafe { (*node.0.as_ptr()).bitmap = bitmap & !(1u16 << highest) };
                f(entry);
            } else if let Some(child) = last.node() {
                if count == 1 {
                    released += node.free();
                } else {
                    // SAFETY: both nodes are ours; the child has at least
                    // two children, so its slot 0 is initialised.
                    unsafe {
                        *node.slot_mut(count - 1) = child.slot(0);
                        *child.slot_mut(0) = Slot::from_node(node);
                    }
                }
                top = Slot::from_node(child);
            } else {
                // An empty child slot cannot occur; stop rather than loop.
                return released;
            }
        }
    }

    /// The leftmost entry under `slot`.
    fn leftmost(mut slot: Slot) -> Option<EntryPtr> {
        while let Some(node) = slot.node() {
            if node.count() == 0 {
                return None;
            }
            slot = node.slot(0);
        }
        slot.entry()
    }

    /// Checks the trie's invariants; returns the number of entries and the
    /// DRAM the trie and its entries hold.
    fn validate(&self, place: (usize, usize), index: &Index) -> Result<(u64, u64), String> {
        let mut entries = 0u64;
        let mut dram = 0u64;
        let mut stack = Vec::new();
        if !self.second.is_empty() {
            if !index.pairs {
                return Err("a second slot in use at a root without pairs".into());
            }
            if self.second.entry().is_none() && self.second.hinted().is_none() {
                return Err("neither a leaf nor a value hint in the root's second slot".into());
            }
            if self.root.entry().is_none() {
                return Err("a second slot in use without a first leaf".into());
            }
            if self.second.entry().is_some() {
                stack.push(self.second);
            }
        }
        if let Some(node) = self.root.node() {
            let leaves = node.children().filter(|(_, c)| c.entry().is_some());
            if index.pairs && node.count() == 2 && leaves.count() == 2 {
                return Err("two keys under a node instead of in the pair".into());
            }
        }
        if !self.root.is_empty() {
            stack.push(self.root);
        }
        while let Some(slot) = stack.pop() {
            if let Some(entry) = slot.entry() {
                // SAFETY: indexed entries are alive while the trie is
                // borrowed.
                let e = unsafe { entry.get() };
                let key = e.key();
                if index.locate(key) != place {
                    return Err(format!(
                        "key {:?} is in shard {} trie {}",
                        abbrev(key),
                        place.0,
                        place.1
                    ));
                }
                if !slot.may_hold(e.locator()) {
                    return Err(format!("key {:?} has a wrong tag", abbrev(key)));
                }
                if self.find(key, e.locator(), index.pairs) != Some(entry) {
                    return Err(format!("key {:?} is off its path", abbrev(key)));
                }
                if e.refs() == 0 {
                    return Err(format!("key {:?} has no reference", abbrev(key)));
                }
                entries += 1;
                dram += entry_dram(e);
                continue;
            }
            let Some(node) = slot.node() else {
                return Err("empty child slot".into());
            };
            let (count, cap, pos) = (node.count(), node.cap(), node.pos());
            if count < 2 {
                return Err(format!("node at {} has {} children", pos, count));
            }
            if cap < count || cap > 16 || cap % 2 != 0 {
                return Err(format!("node at {} has {} slots for {}", pos, cap, count));
            }
            dram += node_dram(cap) as u64;
            let mut first: Option<&[u8]> = None;
            for (nibble, child) in node.children() {
                if let Some(sub) = child.node() {
                    if sub.pos() <= pos {
                        return Err(format!("node at {} below node at {}", sub.pos(), pos));
                    }
                }
                let rep = Self::leftmost(child).ok_or("subtree without entries")?;
                // SAFETY: as above.
                let rep = unsafe { rep.get() }.key();
                if nibble_at(rep, pos) != nibble {
                    return Err(format!("key {:?} under the wrong nibble", abbrev(rep)));
                }
                match first {
                    None => first = Some(rep),
                    Some(first) => {
                        if first_diff(first, rep) != Some(pos) {
                            return Err(format!(
                                "node at {} but keys {:?} and {:?} first differ at {:?}",
                                pos,
                                abbrev(first),
                                abbrev(rep),
                                first_diff(first, rep)
                            ));
                        }
                    }
                }
                stack.push(child);
            }
        }
        Ok((entries, dram))
    }

    /// A census of the trie (for tests and benchmarks).
    #[cfg(any(test, feature = "internals"))]
    fn census(&self) -> Census {
        let mut census = Census::default();
        let mut stack = vec![self.root, self.second];
        while let Some(slot) = stack.pop() {
            if let Some(node) = slot.node() {
                census.nodes += 1;
                census.node_dram += node_dram(node.cap()) as u64;
                stack.extend(node.children().map(|(_, child)| child));
            } else if let Some(entry) = slot.entry() {
                census.entries += 1;
                // SAFETY: indexed entries are alive while the trie is
                // borrowed.
                census.entry_dram += entry_dram(unsafe { entry.get() });
            }
        }
        census
    }
}

/// What a trie holds, counted by walking it.
#[cfg(any(test, feature = "internals"))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Census {
    entries: u64,
    nodes: u64,
    entry_dram: u64,
    node_dram: u64,
}

/// The start of a key, for messages.
fn abbrev(key: &[u8]) -> &[u8] {
    &key[..key.len().min(16)]
}

// ---------------------------------------------------------------------------
// Shards and the index

/// Size of a huge page of the x86-64 and AArch64 kernels' transparent huge
/// pages (a 4 KiB base page's PMD).
const HUGE_PAGE: usize = 2 << 20;

/// Every shard's array of tries, in one anonymous mapping. A large index's
/// roots take tens of MiB (16 bytes per trie, 2 M tries for a 1 GiB pool of
/// 256-byte extents), and every lookup reads one at random: in 4 KiB pages
/// each of those reads began with a page walk whose table entries had left
/// the caches. From [`HUGE_PAGE`] up the mapping starts on a huge page's
/// boundary and is advised for transparent huge pages, so that a few TLB
/// entries cover all the roots. The pages are zero, which is an empty trie.
struct RootMemory {
    /// Owns the pages; unmapped on drop.
    _map: memmap2::MmapMut,
    /// The first trie: the mapping's start, or its first huge page
    /// boundary.
    first: NonNull<Trie>,
}

impl RootMemory {
    /// Zeroed room for `count` tries (at least one).
    fn new(count: usize) -> Result<RootMemory> {
        let len = count
            .checked_mul(size_of::<Trie>())
            .ok_or(Error::OutOfMemory)?;
        let huge = len >= HUGE_PAGE;
        let slack = if huge { HUGE_PAGE } else { 0 };
        let mut map = memmap2::MmapOptions::new()
            .len(len.checked_add(slack).ok_or(Error::OutOfMemory)?)
            .map_anon()
            .map_err(|_| Error::OutOfMemory)?;
        let base = map.as_mut_ptr();
        let start = if huge {
            (base as usize).next_multiple_of(HUGE_PAGE) - base as usize
        } else {
            0
        };
        // A page-aligned offset inside the mapping: the tries are aligned.
        let addr = base.wrapping_add(start);
        if huge {
            // Advice only: without huge pages the roots work the same.
            // SAFETY: advice on a range of a mapping this function owns.
            let _ = unsafe { libc::madvise(addr.cast(), len, libc::MADV_HUGEPAGE) };
        }
        // Every page allocated now, as an array on the heap would be when
        // filled with empty tries: no page fault (nor a huge page's zeroing)
        // in the middle of a put.
        // SAFETY: the mapping is this function's.
        if !unsafe { crate::pool::populate(addr.cast(), len) } {
            return Err(Error::OutOfMemory);
        }
        Ok(RootMemory {
            first: NonNull::new(addr.cast()).ok_or(Error::OutOfMemory)?,
            _map: map,
        })
    }
}

// SAFETY: the index owns the mapping; `first` is only read, and the tries
// it points to are reached through the shards' locks.
unsafe impl Send for RootMemory {}
// SAFETY: as above.
unsafe impl Sync for RootMemory {}

/// One shard's array of tries, a part of the index's [`RootMemory`], which
/// outlives it.
struct Tries {
    first: NonNull<Trie>,
    len: usize,
}

// SAFETY: a `Tries` is the unique owner of its part of the mapping, as a
// `Box<[Trie]>` is of its array; `Trie` is `Send` and `Sync`.
unsafe impl Send for Tries {}
// SAFETY: as above.
unsafe impl Sync for Tries {}

impl std::ops::Deref for Tries {
    type Target = [Trie];

    fn deref(&self) -> &[Trie] {
        // SAFETY: `len` zero-initialised (empty) tries at `first`, inside
        // the mapping, which lives as long as the index and so as `self`.
        unsafe { std::slice::from_raw_parts(self.first.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Tries {
    fn deref_mut(&mut self) -> &mut [Trie] {
        // SAFETY: as in `deref`; the parts of the shards do not overlap.
        unsafe { std::slice::from_raw_parts_mut(self.first.as_ptr(), self.len) }
    }
}

/// One shard: its tries, their lock and its counters, on cache lines of
/// its own, so a get writes no line but its shard's (the read lock writes
/// one anyway).
#[repr(align(64))]
struct Shard {
    /// The shard's tries; a key's trie is picked by hash bits above the
    /// shard number (see [`Index::locate`]).
    trie: RwLock<Tries>,
    puts: Counter,
    evictions: Counter,
    entries: Counter,
    dram: Counter,
    hits: Counter,
    misses: Counter,
}

impl Shard {
    fn new(tries: Tries) -> Shard {
        Shard {
            trie: RwLock::new(tries),
            puts: Counter::new(),
            evictions: Counter::new(),
            entries: Counter::new(),
            dram: Counter::new(),
            hits: Counter::new(),
            misses: Counter::new(),
        }
    }
}

/// The index.
///
/// Dropping it frees its nodes but not the entries still indexed: their
/// references are lost. The cache drains the index (see [`Index::drain`])
/// before dropping it.
pub(crate) struct Index {
    shards: Box<[Shard]>,
    /// Shard number mask: 255 with sharding, 0 without.
    mask: usize,
    /// Trie number mask within a shard: tries per shard minus one.
    tree_mask: usize,
    /// Whether a trie of two keys keeps both in its root's pair of slots
    /// (see [`Trie`]): with several tries per shard, where most tries hold
    /// a key or two. A single trie per shard keeps the original's canonical
    /// critnib, and with it the original's node count in `DRAM_SIZE_USED`.
    pairs: bool,
    /// Where the shards' tries are, one shard's after another's, fixed at
    /// creation, so that [`Index::prefetch`] can name a root without the
    /// shard's lock; declared after `shards`, so dropped after them.
    memory: RootMemory,
}

#[allow(dead_code)]
impl Index {
    /// An empty index with one trie per shard.
    pub(crate) fn new(sharded: bool) -> Result<Index> {
        Index::with_tries(sharded, 1)
    }

    /// An empty index sized for at most `max_entries` entries: with
    /// sharding, enough tries per shard for about [`KEYS_PER_TRIE`] keys
    /// each when full, up to [`MAX_TRIES`] per shard; without, one trie.
    pub(crate) fn for_capacity(sharded: bool, max_entries: usize) -> Result<Index> {
        Index::with_tries(sharded, max_entries / SHARDS / KEYS_PER_TRIE)
    }

    /// An empty index with `tries` tries per shard, rounded up to a power
    /// of two between 1 and [`MAX_TRIES`] (one when sharding is off).
    pub(crate) fn with_tries(sharded: bool, tries: usize) -> Result<Index> {
        let mut index = Index::with_layout(sharded, tries, false)?;
        index.pairs = index.tries_per_shard() > 1;
        Ok(index)
    }

    /// [`Index::with_tries`] with paired roots as `pairs` says, whatever
    /// the number of tries.
    fn with_layout(sharded: bool, tries: usize, pairs: bool) -> Result<Index> {
        let count = if sharded { SHARDS } else { 1 };
        let tries = if sharded {
            tries.clamp(1, MAX_TRIES).next_power_of_two()
        } else {
            1
        };
        let memory = RootMemory::new(count * tries)?;
        let mut shards = Vec::new();
        shards
            .try_reserve_exact(count)
            .map_err(|_| Error::OutOfMemory)?;
        for n in 0..count {
            // SAFETY: `count * tries` tries fit in the mapping.
            let first = unsafe { memory.first.add(n * tries) };
            shards.push(Shard::new(Tries { first, len: tries }));
        }
        let index = Index {
            shards: shards.into_boxed_slice(),
            mask: count - 1,
            tree_mask: tries - 1,
            pairs,
            memory,
        };
        // Counters stored to under the write lock and read without it
        // (statistics): atomics, not data, for valgrind's thread checkers.
        // Their addresses are final: the box of shards stays put.
        for shard in index.shards.iter() {
            for counter in [&shard.puts, &shard.evictions, &shard.entries, &shard.dram] {
                counter.announce_atomic();
            }
        }
        Ok(index)
    }

    /// Tries per shard.
    pub(crate) fn tries_per_shard(&self) -> usize {
        self.tree_mask + 1
    }

    /// The shard number and the trie number within the shard of `key`:
    /// the low 8 bits of its hash and the bits above them.
    #[inline]
    fn locate(&self, key: &[u8]) -> (usize, usize) {
        if self.mask == 0 {
            return (0, 0);
        }
        self.place(hash(key) as usize)
    }

    /// The shard number and trie number of a key whose hash is `h` (only
    /// the low 32 bits count).
    #[inline]
    fn place(&self, h: usize) -> (usize, usize) {
        (h & self.mask, (h >> SHARD_BITS) & self.tree_mask)
    }

    /// Asks the processor to fetch the root of the trie that holds keys of
    /// locator `locator` ([`Entry::locator`]): a put about to evict that
    /// entry, or a lookup about to take the shard's lock, starts the miss
    /// early. A hint only; it reads nothing.
    #[inline]
    pub(crate) fn prefetch(&self, locator: u32) {
        crate::hint::prefetch(self.root_of(locator));
    }

    /// Where the trie of keys of locator `locator` lies: the shards' arrays
    /// follow one another in the mapping.
    #[inline]
    fn root_of(&self, locator: u32) -> *const Trie {
        let (shard, tree) = self.place(locator as usize);
        let tries = self.tree_mask + 1;
        self.memory
            .first
            .as_ptr()
            .wrapping_add(shard * tries + tree)
    }

    /// The shard number of `key`.
    fn shard_of(&self, key: &[u8]) -> usize {
        self.locate(key).0
    }

    /// The shard and trie number of the key whose locator is `locator`
    /// ([`Entry::locator`]), without hashing the key again.
    #[inline]
    fn shard_at(&self, locator: u32) -> (&Shard, usize) {
        let (shard, tree) = self.place(locator as usize);
        // `place` is below the number of shards by construction.
        (&self.shards[shard], tree)
    }

    /// Looks `key` up; on a hit takes a reference for the caller. With
    /// `count`, counts a hit or a miss.
    pub(crate) fn lookup(&self, key: &[u8], count: bool) -> Option<EntryPtr> {
        let locator = hash(key) as u32;
        // Asked for before the lock, which later loads must wait for: the
        // root's miss then overlaps the lock's (its line is often the other
        // threads' last).
        self.prefetch(locator);
        let (shard, tree) = self.shard_at(locator);
        let tries = shard.trie.read();
        let found = tries[tree].find(key, locator, self.pairs);
        if let Some(entry) = found {
            // SAFETY: the index's reference keeps the entry alive while the
            // read lock is held.
            unsafe { entry.get() }.acquire();
        }
        drop(tries);
        if count {
            match found {
                Some(_) => shard.hits.add(1),
                None => shard.misses.add(1),
            }
        }
        found
    }

    /// Runs `f` on the entry of `key` under the shard's read lock.
    pub(crate) fn peek<R>(&self, key: &[u8], f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let locator = hash(key) as u32;
        // As in `lookup`.
        self.prefetch(locator);
        self.peek_at(locator, key, f)
    }

    /// [`Index::peek`] for a caller that has the key's locator already
    /// (`hash(key) as u32`).
    pub(crate) fn peek_at<R>(
        &self,
        locator: u32,
        key: &[u8],
        f: impl FnOnce(&Entry) -> R,
    ) -> Option<R> {
        let (shard, tree) = self.shard_at(locator);
        let tries = shard.trie.read();
        let entry = tries[tree].find(key, locator, self.pairs)?;
        // SAFETY: the index's reference keeps the entry alive while the read
        // lock is held, which it is for the whole call of `f`.
        Some(f(unsafe { entry.get() }))
    }

    /// Inserts, taking over the caller's reference on success.
    ///
    /// Fails with [`Error::KeyExists`] when an entry with the same key is
    /// indexed and with [`Error::OutOfMemory`] when a node cannot be
    /// allocated; the index is then unchanged and the reference stays with
    /// the caller.
    pub(crate) fn insert(&self, entry: EntryPtr) -> Result<()> {
        self.insert_valued(entry, (ptr::null(), 0))
    }

    /// [`Index::insert`] of an entry whose value starts at `value.0` in the
    /// pool, with `value.1` bytes of it there in one run: a trie that the
    /// key has to itself keeps that as its value hint (see [`Trie`]).
    pub(crate) fn insert_valued(&self, entry: EntryPtr, value: (*const u8, usize)) -> Result<()> {
        // SAFETY: the caller holds a reference on `entry`.
        let e = unsafe { entry.get() };
        let (shard, tree) = self.shard_at(e.locator());
        let mut tries = shard.trie.write();
        let added = tries[tree].insert(entry, value, self.pairs)?;
        // Every change of these counters holds the shard's write lock.
        shard.puts.add_locked(1);
        shard.entries.add_locked(1);
        if cfg!(feature = "stats") {
            shard.dram.add_locked(entry_dram(e) + added as u64);
        }
        Ok(())
    }

    /// Removes this very entry; `true` hands the index's reference to the
    /// caller. `false` when the entry is not indexed (it was removed
    /// already, or another entry holds its key).
    pub(crate) fn remove(&self, entry: EntryPtr) -> bool {
        // SAFETY: the caller holds a reference on `entry`.
        let e = unsafe { entry.get() };
        let (shard, tree) = self.shard_at(e.locator());
        let mut tries = shard.trie.write();
        let Some(released) = tries[tree].remove(entry, self.pairs) else {
            return false;
        };
        // As in `insert_valued`.
        shard.evictions.add_locked(1);
        shard.entries.sub_locked(1);
        if cfg!(feature = "stats") {
            shard.dram.sub_locked(entry_dram(e) + released as u64);
        }
        true
    }

    /// Takes every entry out, handing each index reference to `f`.
    ///
    /// The entries and DRAM counters fall to zero; no eviction is counted.
    pub(crate) fn drain(&mut self, mut f: impl FnMut(EntryPtr)) {
        for shard in self.shards.iter_mut() {
            let Shard {
                trie,
                entries,
                dram,
                ..
            } = shard;
            for one in trie.get_mut().iter_mut() {
                let released = one.dismantle(|entry| {
                    entries.sub(1);
                    if cfg!(feature = "stats") {
                        // SAFETY: the index's reference is still held here;
                        // `f` may drop it afterwards.
                        dram.sub(entry_dram(unsafe { entry.get() }));
                    }
                    f(entry);
                });
                dram.sub(released as u64);
            }
        }
    }

    /// Counter totals.
    pub(crate) fn stats(&self) -> IndexStats {
        let sum =
            |field: fn(&Shard) -> &Counter| sum_clamped(self.shards.iter().map(|s| field(s).get()));
        IndexStats {
            puts: sum(|s| &s.puts),
            evictions: sum(|s| &s.evictions),
            entries: sum(|s| &s.entries),
            dram: sum(|s| &s.dram),
            hits: sum(|s| &s.hits),
            misses: sum(|s| &s.misses),
        }
    }

    /// Checks every invariant: the canonical form of every trie, every key
    /// in its shard, and (with statistics) the entries and DRAM counters
    /// against a recount.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for (i, shard) in self.shards.iter().enumerate() {
            let tries = shard.trie.read();
            let (mut entries, mut dram) = (0, 0);
            for (t, one) in tries.iter().enumerate() {
                let (e, d) = one
                    .validate((i, t), self)
                    .map_err(|e| format!("shard {} trie {}: {}", i, t, e))?;
                entries += e;
                dram += d;
            }
            if cfg!(feature = "stats") {
                let counted = (shard.entries.get(), shard.dram.get());
                if counted != (entries as i64, dram as i64) {
                    return Err(format!(
                        "shard {}: counters say {} entries and {} bytes, recount {} and {}",
                        i, counted.0, counted.1, entries, dram
                    ));
                }
            }
        }
        Ok(())
    }

    /// A census of every trie (for tests and benchmarks).
    #[cfg(any(test, feature = "internals"))]
    fn census(&self) -> Census {
        let mut total = Census::default();
        for shard in self.shards.iter() {
            for one in shard.trie.read().iter() {
                let c = one.census();
                total.entries += c.entries;
                total.nodes += c.nodes;
                total.entry_dram += c.entry_dram;
                total.node_dram += c.node_dram;
            }
        }
        total
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        for shard in self.shards.iter_mut() {
            for one in shard.trie.get_mut().iter_mut() {
                one.dismantle(|_| {});
            }
        }
    }
}

#[cfg(feature = "internals")]
pub mod bench {
    //! Benchmark of the index: insert and lookup costs, and DRAM per entry.
    //!
    //! Run with `cargo bench --features internals --bench index`; a numeric
    //! argument replaces the default of 1 Mi entries.

    use super::{Census, Index};
    use crate::entry::{Entry, EntryPtr};
    use std::time::Instant;

    /// A xorshift64* generator: reproducible keys without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// `n` records with distinct random keys of `len` bytes, with LRU links.
    fn records(n: usize, len: usize, seed: u64) -> Vec<EntryPtr> {
        let mut rng = Rng(seed | 1);
        let mut seen = std::collections::HashSet::with_capacity(n);
        let mut out = Vec::with_capacity(n);
        let mut key = vec![0u8; len];
        while out.len() < n {
            for chunk in key.chunks_mut(8) {
                let word = rng.next().to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
            if seen.insert(key.clone()) {
                match Entry::create(&key, true) {
                    Ok(e) => out.push(e),
                    Err(e) => panic!("cannot create a record: {}", e),
                }
            }
        }
        out
    }

    /// Drops a reference that the caller holds.
    fn release(e: EntryPtr) {
        // SAFETY: the caller gives up a reference it holds.
        if unsafe { e.get() }.release() {
            // SAFETY: that was the last reference.
            let _no_storage = unsafe { Entry::destroy(e) };
        }
    }

    /// Empties the index, destroying its records.
    fn release_all(index: &mut Index) {
        index.drain(release);
    }

    /// Empties the index, keeping its records (and their references) for
    /// another round.
    fn take_back(index: &mut Index) {
        index.drain(|_| {});
    }

    /// Inserts `records` with `threads` threads; ns per insert.
    fn insert(index: &Index, records: &[EntryPtr], threads: usize) -> f64 {
        let start = Instant::now();
        std::thread::scope(|s| {
            for part in records.chunks(records.len().div_ceil(threads)) {
                s.spawn(move || {
                    for e in part {
                        if let Err(err) = index.insert(*e) {
                            panic!("insert failed: {}", err);
                        }
                    }
                });
            }
        });
        start.elapsed().as_nanos() as f64 / records.len() as f64
    }

    /// `ops` lookups of random present keys per thread; ns per lookup.
    /// With `disjoint`, each thread looks up its own share of the keys.
    fn lookup(
        index: &Index,
        records: &[EntryPtr],
        threads: usize,
        ops: usize,
        disjoint: bool,
    ) -> f64 {
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let records = if disjoint {
                    let share = records.len() / threads;
                    &records[t * share..(t + 1) * share]
                } else {
                    records
                };
                s.spawn(move || {
                    let mut rng = Rng(0x1234_5678 + t as u64);
                    for _ in 0..ops {
                        let e = records[rng.next() as usize % records.len()];
                        // SAFETY: the index holds a reference on every record
                        // during the lookups.
                        let key = unsafe { e.get() }.key();
                        match index.lookup(key, true) {
                            // SAFETY: the lookup's reference is ours to drop;
                            // the index still holds one.
                            Some(found) => drop(unsafe { found.get() }.release()),
                            None => panic!("a present key was not found"),
                        }
                    }
                });
            }
        });
        start.elapsed().as_nanos() as f64 / ops as f64
    }

    fn dram_line(label: &str, census: Census) {
        let n = census.entries.max(1) as f64;
        println!(
            "  {:<34} {:>7.1} B/entry total, {:>5.1} B/entry nodes, {:.3} nodes/entry",
            label,
            (census.entry_dram + census.node_dram) as f64 / n,
            census.node_dram as f64 / n,
            census.nodes as f64 / n,
        );
    }

    /// Runs the benchmark and prints its figures.
    pub fn main(args: &[String]) {
        let n = args
            .iter()
            .skip(1)
            .find_map(|a| a.parse::<usize>().ok())
            .unwrap_or(1 << 20);
        let cpus = std::thread::available_parallelism().map_or(1, |p| p.get());
        println!("index benchmark: {} entries, {} CPUs", n, cpus);

        let keys16 = records(n, 16, 1);
        let sized = Index::for_capacity(true, n).map_or(1, |i| i.tries_per_shard());
        for (tries, threads) in [(1, 1), (1, 2), (sized, 1), (sized, 2)] {
            if threads == 1 {
                println!("16-byte random keys, sharded, {} trie(s) per shard:", tries);
            }
            let Ok(mut index) = Index::with_tries(true, tries) else {
                panic!("cannot create the index");
            };
            let ns = insert(&index, &keys16, threads);
            println!(
                "  insert, {} thread(s): {:>8.1} ns/op of wall time ({:.2} Mops/s total)",
                threads,
                ns,
                1e3 / ns
            );
            if threads == 1 {
                for (lookup_threads, disjoint) in [(1, false), (2, false), (2, true)] {
                    let ns = lookup(&index, &keys16, lookup_threads, 2 * n, disjoint);
                    println!(
                        "  lookup+release, {} thread(s){}: {:>8.1} ns/op per thread ({:.2} Mops/s total)",
                        lookup_threads,
                        if disjoint { ", each its own keys" } else { "" },
                        ns,
                        lookup_threads as f64 * 1e3 / ns
                    );
                }
            }
            take_back(&mut index);
        }
        {
            let Ok(mut index) = Index::new(false) else {
                panic!("cannot create the index");
            };
            let ns = insert(&index, &keys16, 1);
            println!("  unsharded insert, 1 thread: {:>8.1} ns/op", ns);
            let ns = lookup(&index, &keys16, 1, n, false);
            println!("  unsharded lookup+release, 1 thread: {:>8.1} ns/op", ns);
            release_all(&mut index);
        }
        drop(keys16);

        println!("DRAM per entry (records with LRU links + index nodes, as malloc counts):");
        for (len, seed) in [(8usize, 2u64), (16, 3), (100, 4)] {
            let set = records(n, len, seed);
            let Ok(mut index) = Index::new(true) else {
                panic!("cannot create the index");
            };
            insert(&index, &set, 1);
            dram_line(
                &format!("{}-byte random keys, {} entries", len, n),
                index.census(),
            );
            release_all(&mut index);
        }
        for sharded in [true, false] {
            let Ok(mut index) = Index::new(sharded) else {
                panic!("cannot create the index");
            };
            for i in 0..4064u64 {
                let e = match Entry::create(&i.to_le_bytes(), true) {
                    Ok(e) => e,
                    Err(e) => panic!("cannot create a record: {}", e),
                };
                if let Err(err) = index.insert(e) {
                    panic!("insert failed: {}", err);
                }
            }
            let label = if sharded {
                "8-byte counter keys, 4064, sharded"
            } else {
                "8-byte counter keys, 4064, 1 shard"
            };
            dram_line(label, index.census());
            release_all(&mut index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::Allocation;
    use proptest::prelude::*;
    use std::cell::Cell;
    use std::collections::{BTreeMap, HashSet};
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

    thread_local! {
        /// Fails the n-th node allocation from now on this thread (0: none).
        static FAIL_ALLOC: Cell<u32> = const { Cell::new(0) };
    }

    pub(super) fn inject_alloc_failure() -> bool {
        FAIL_ALLOC.with(|f| match f.get() {
            0 => false,
            n => {
                f.set(n - 1);
                n == 1
            }
        })
    }

    fn fail_allocation(n: u32) {
        FAIL_ALLOC.with(|f| f.set(n));
    }

    fn make(key: &[u8]) -> EntryPtr {
        Entry::create(key, true).expect("entry record")
    }

    fn refs(e: EntryPtr) -> u32 {
        // SAFETY: tests only ask about entries they hold a reference on.
        unsafe { e.get() }.refs()
    }

    fn key_of(e: EntryPtr) -> Vec<u8> {
        // SAFETY: as above.
        unsafe { e.get() }.key().to_vec()
    }

    /// Drops a reference; destroys the entry when it was the last one.
    fn put_back(e: EntryPtr) -> bool {
        // SAFETY: the caller holds the reference it gives up.
        if unsafe { e.get() }.release() {
            // SAFETY: that was the last reference.
            let _no_storage = unsafe { Entry::destroy(e) };
            true
        } else {
            false
        }
    }

    fn check(index: &Index) {
        if let Err(message) = index.validate() {
            panic!("{}", message);
        }
    }

    /// The counters, or all zeros without the `stats` feature.
    fn expect(index: &Index, expected: IndexStats) {
        if cfg!(feature = "stats") {
            assert_eq!(index.stats(), expected);
        } else {
            assert_eq!(index.stats(), IndexStats::default());
        }
    }

    /// Drains and destroys everything; returns how many entries there were.
    fn clear(index: &mut Index) -> usize {
        let mut n = 0;
        index.drain(|e| {
            assert!(put_back(e));
            n += 1;
        });
        check(index);
        assert_eq!(index.census(), Census::default());
        n
    }

    fn counter_key(i: u64) -> [u8; 8] {
        i.to_le_bytes()
    }

    // --- hash and sharding ------------------------------------------------

    /// The original's formula as written in C: whole-word native loads, the
    /// last one reading past the key and masked.
    fn reference_hash(key: &[u8]) -> u64 {
        fn mix(mut h: u64) -> u64 {
            h ^= h >> 23;
            h = h.wrapping_mul(0x2127599bf4325c37);
            h ^ (h >> 47)
        }
        let m: u64 = 0x880355f21e6d1965;
        let mut padded = key.to_vec();
        padded.extend_from_slice(&[0xa5; 8]);
        let load = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&padded[at..at + 8]);
            u64::from_ne_bytes(w)
        };
        let mut h = (key.len() as u64).wrapping_mul(m);
        let words = key.len() / 8;
        for i in 0..words {
            h = (h ^ mix(load(8 * i))).wrapping_mul(m);
        }
        let rest = key.len() & 7;
        if rest != 0 {
            let v = load(8 * words) & ((1u64 << (8 * rest)) - 1);
            h = (h ^ mix(v)).wrapping_mul(m);
        }
        mix(h)
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn hash_matches_the_original_formula() {
        let bytes: Vec<u8> = (0..48u32).map(|i| (i * 37 + 200) as u8).collect();
        for len in 0..=40 {
            assert_eq!(
                hash(&bytes[..len]),
                reference_hash(&bytes[..len]),
                "len {}",
                len
            );
            let ff = vec![0xffu8; len];
            assert_eq!(hash(&ff), reference_hash(&ff), "len {}", len);
        }
        // The length enters the hash: zero keys of different lengths differ.
        assert_ne!(hash(&[]), hash(&[0]));
        assert_ne!(hash(&[0; 8]), hash(&[0; 9]));
    }

    #[test]
    fn hash_never_reads_past_the_key() {
        // SAFETY: plain anonymous mapping of two pages, the second made
        // inaccessible; keys end exactly at the boundary, so any read past
        // a key faults.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let base = libc::mmap(
                ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED);
            let base = base as *mut u8;
            assert_eq!(
                libc::mprotect(base.add(page) as _, page, libc::PROT_NONE),
                0
            );
            for i in 0..page {
                *base.add(i) = (i * 7) as u8;
            }
            let index = Index::new(true).unwrap();
            for len in 0..=64 {
                let key = std::slice::from_raw_parts(base.add(page - len), len);
                assert_eq!(hash(key), reference_hash(key), "len {}", len);
                assert_eq!(index.lookup(key, true), None);
                let e = make(key);
                index.insert(e).unwrap();
                assert_eq!(index.lookup(key, false), Some(e));
                put_back(e);
            }
            check(&index);
            let mut index = index;
            assert_eq!(clear(&mut index), 65);
            assert_eq!(libc::munmap(base as _, 2 * page), 0);
        }
    }

    #[test]
    fn sharding_values() {
        let parse = |s: &str| parse_sharding(Some(OsStr::new(s)));
        assert_eq!(parse_sharding(None), Ok(true));
        for yes in ["1", "y", "Y", "yes", "YES", "yEs"] {
            assert_eq!(parse(yes), Ok(true), "{}", yes);
        }
        for no in ["0", "n", "N", "no", "NO", "nO"] {
            assert_eq!(parse(no), Ok(false), "{}", no);
        }
        for bad in ["", "2", "true", "off", " yes", "yes\n", "00", "ja"] {
            assert_eq!(
                parse(bad),
                Err(Error::InvalidSharding(bad.into())),
                "{:?}",
                bad
            );
        }
        assert_eq!(
            parse_sharding(Some(OsStr::from_bytes(b"y\xff"))),
            Err(Error::InvalidSharding("y\u{fffd}".into()))
        );
        // The environment is read once here; no test changes it.
        let var = std::env::var_os("VMEMCACHE_SHARDING");
        assert_eq!(sharding_from_env(), parse_sharding(var.as_deref()));
    }

    #[test]
    fn shards_follow_the_hash() {
        let sharded = Index::new(true).unwrap();
        let single = Index::new(false).unwrap();
        assert_eq!(sharded.shards.len(), 256);
        assert_eq!(single.shards.len(), 1);
        let mut seen = HashSet::new();
        for i in 0..4096u64 {
            let key = counter_key(i);
            assert_eq!(sharded.shard_of(&key), (hash(&key) & 255) as usize);
            assert_eq!(single.shard_of(&key), 0);
            seen.insert(sharded.shard_of(&key));
        }
        assert_eq!(seen.len(), 256);
        assert_eq!(std::mem::size_of::<Shard>() % 64, 0);
        assert_eq!(std::mem::align_of::<Shard>(), 64);
    }

    // --- the compared string ------------------------------------------------

    #[test]
    fn string_positions() {
        let key = [0xab, 0x80];
        // Length 2, little-endian, then the key, then zeros.
        let expected = [0x0, 0x2, 0, 0, 0, 0, 0, 0, 0xa, 0xb, 0x8, 0x0, 0, 0, 0, 0];
        for (pos, nibble) in expected.iter().enumerate() {
            assert_eq!(nibble_at(&key, pos as Pos), *nibble, "pos {}", pos);
        }
        assert_eq!(first_diff(b"", b""), None);
        assert_eq!(first_diff(b"abc", b"abc"), None);
        assert_eq!(first_diff(b"", b"\0"), Some(1));
        assert_eq!(first_diff(b"a", &[0x61 + 0x10]), Some(8));
        assert_eq!(first_diff(b"a", b"b"), Some(9));
        assert_eq!(first_diff(&[0u8; 256], &[1u8; 256]), Some(9));
        let mut long = vec![7u8; 1000];
        let other = long.clone();
        long[999] = 0x87;
        assert_eq!(first_diff(&long, &other), Some(2 * (4 + 999)));
        // 300 and 301 differ in the low nibble of the length's first byte.
        assert_eq!(first_diff(&long[..300], &other[..301]), Some(1));
        assert_eq!(first_diff(&long[..300], &other[..556]), Some(3));
        assert_eq!(first_diff(&[0u8; 0x12c], &[0u8; 0x112c]), Some(2));
    }

    #[test]
    fn entry_dram_is_the_record() {
        let e = make(&counter_key(1));
        // SAFETY: the test holds the only reference.
        assert_eq!(entry_dram(unsafe { e.get() }), 56);
        put_back(e);
        let e = Entry::create(b"", false).unwrap();
        // SAFETY: as above.
        assert_eq!(entry_dram(unsafe { e.get() }), 40);
        put_back(e);
        assert_eq!(node_dram(2), 24);
        assert_eq!(node_dram(4), 40);
        assert_eq!(node_dram(16), 136);
        for cap in (2..=16).step_by(2) {
            assert_eq!(node_dram(cap), node_bytes(cap), "no malloc slack");
        }
    }

    // --- examples -----------------------------------------------------------

    #[test]
    fn empty_index() {
        let mut index = Index::new(true).unwrap();
        assert_eq!(index.lookup(b"nothing", true), None);
        assert_eq!(index.peek(b"nothing", |_| ()), None);
        let e = make(b"nothing");
        assert!(!index.remove(e));
        put_back(e);
        check(&index);
        expect(
            &index,
            IndexStats {
                misses: 1,
                ..IndexStats::default()
            },
        );
        assert_eq!(clear(&mut index), 0);
    }

    #[test]
    fn single_key_is_a_leaf_at_the_root() {
        let index = Index::new(false).unwrap();
        let e = make(b"k");
        index.insert(e).unwrap();
        assert_eq!(index.shards[0].trie.read()[0].root, Slot::leaf(e));
        assert_eq!(index.census().nodes, 0);
        assert!(index.remove(e));
        assert!(index.shards[0].trie.read()[0].root.is_empty());
        assert_eq!(refs(e), 1);
        put_back(e);
        check(&index);
    }

    /// The root's two slots of the only trie of `index`.
    fn pair(index: &Index) -> (Slot, Slot) {
        let tries = index.shards[0].trie.read();
        (tries[0].root, tries[0].second)
    }

    #[test]
    fn two_keys_of_a_trie_share_its_root() {
        let mut index = Index::with_layout(false, 1, true).unwrap();
        let k = |i: u64| counter_key(i);
        let (a, b, c) = (make(&k(0)), make(&k(1)), make(&k(2)));
        index.insert(a).unwrap();
        assert_eq!(pair(&index), (Slot::leaf(a), Slot::EMPTY));
        index.insert(b).unwrap();
        assert_eq!(pair(&index), (Slot::leaf(a), Slot::leaf(b)));
        assert_eq!(index.census().nodes, 0);
        check(&index);
        for (key, e) in [(k(0), a), (k(1), b)] {
            assert_eq!(index.lookup(&key, false), Some(e));
            put_back(e);
        }
        assert_eq!(index.lookup(&k(2), false), None);

        // A third key takes the three under a node; the DRAM counted is
        // that node's.
        index.insert(c).unwrap();
        let (root, second) = pair(&index);
        assert!(root.node().is_some());
        assert!(second.is_empty());
        assert_eq!(index.census().nodes, 1);
        if cfg!(feature = "stats") {
            let records: u64 = [a, b, c]
                .iter()
                .map(|e| entry_dram(unsafe { e.get() }))
                .sum();
            assert_eq!(index.stats().dram, records + node_dram(4) as u64);
        }
        check(&index);

        // Back to two: the pair again, in the node's order.
        assert!(index.remove(b));
        put_back(b);
        assert_eq!(pair(&index), (Slot::leaf(a), Slot::leaf(c)));
        assert_eq!(index.census().nodes, 0);
        check(&index);
        // The first leaf goes: the second moves up.
        assert!(index.remove(a));
        put_back(a);
        assert_eq!(pair(&index), (Slot::leaf(c), Slot::EMPTY));
        assert!(!index.remove(a));
        put_back(a);
        check(&index);
        assert_eq!(clear(&mut index), 1);
        assert_eq!(pair(&index), (Slot::EMPTY, Slot::EMPTY));
    }

    #[test]
    fn a_pair_refuses_its_keys_again() {
        let mut index = Index::with_layout(false, 1, true).unwrap();
        index.insert(make(b"a")).unwrap();
        index.insert(make(b"b")).unwrap();
        let before = (pair(&index), index.stats());
        for key in [b"a", b"b"] {
            let twin = make(key);
            assert_eq!(index.insert(twin), Err(Error::KeyExists));
            assert_eq!(refs(twin), 1);
            assert!(put_back(twin));
        }
        assert_eq!((pair(&index), index.stats()), before);
        // The same with the second leaf alone beside nothing else: one key.
        let a = index.lookup(b"a", false).unwrap();
        put_back(a);
        assert!(index.remove(a));
        put_back(a);
        let twin = make(b"b");
        assert_eq!(index.insert(twin), Err(Error::KeyExists));
        assert!(put_back(twin));
        check(&index);
        assert_eq!(clear(&mut index), 1);
    }

    #[test]
    fn a_failed_third_key_leaves_the_pair() {
        let mut index = Index::with_layout(false, 1, true).unwrap();
        let k = |i: u64| counter_key(i);
        let (a, b) = (make(&k(0)), make(&k(1)));
        index.insert(a).unwrap();
        index.insert(b).unwrap();
        let before = (pair(&index), index.stats(), index.census());
        // The first node, for the two leaves, then the growth of that node
        // for the third key (or a node of its own for a key differing
        // elsewhere): either failure leaves the pair as it was.
        for (key, n) in [(k(2), 1), (k(2), 2), (k(0x100), 2)] {
            let e = make(&key);
            fail_allocation(n);
            assert_eq!(index.insert(e), Err(Error::OutOfMemory));
            fail_allocation(0);
            assert_eq!((pair(&index), index.stats(), index.census()), before);
            assert_eq!(index.lookup(&key, false), None);
            assert!(put_back(e));
            check(&index);
        }
        index.insert(make(&k(2))).unwrap();
        check(&index);
        assert_eq!(clear(&mut index), 3);
    }

    #[test]
    fn validate_notices_a_broken_pair() {
        let mut index = Index::with_layout(false, 1, true).unwrap();
        let (a, b) = (make(b"a"), make(b"b"));
        index.insert(a).unwrap();
        index.insert(b).unwrap();
        check(&index);
        let set = |root: Slot, second: Slot| {
            let mut tries = index.shards[0].trie.write();
            tries[0].root = root;
            tries[0].second = second;
        };
        set(Slot::EMPTY, Slot::leaf(b));
        assert!(index.validate().unwrap_err().contains("without a first"));
        set(Slot::leaf(a), Slot::leaf(b));
        index.pairs = false;
        assert!(index.validate().unwrap_err().contains("without pairs"));
        index.pairs = true;
        check(&index);
        // Two leaves under a node at the root are not canonical with pairs.
        let c = make(b"c");
        index.insert(c).unwrap();
        assert!(index.remove(c));
        put_back(c);
        let node = NodePtr::new(
            first_diff(b"a", b"b").unwrap(),
            (
                nibble_at(b"a", first_diff(b"a", b"b").unwrap()),
                Slot::leaf(a),
            ),
            (
                nibble_at(b"b", first_diff(b"a", b"b").unwrap()),
                Slot::leaf(b),
            ),
        )
        .unwrap();
        set(Slot::from_node(node), Slot::EMPTY);
        assert!(index
            .validate()
            .unwrap_err()
            .contains("instead of in the pair"));
        set(Slot::leaf(a), Slot::leaf(b));
        node.free();
        check(&index);
        assert_eq!(clear(&mut index), 2);
    }

    /// Memory that stands for a pool in value hints.
    static VALUES: [u8; 4096] = [0; 4096];

    /// Where a value of `key` would start and how long it is: somewhere in
    /// [`VALUES`] for keys of even length, nowhere for the others.
    fn value_of(key: &[u8]) -> (*const u8, usize) {
        if key.len() % 2 == 0 {
            (
                VALUES.as_ptr().wrapping_add(key.len() % 4096),
                64 * key.len() + 1,
            )
        } else {
            (ptr::null(), 0)
        }
    }

    #[test]
    fn value_hints_name_lines() {
        let at = VALUES.as_ptr().wrapping_add(100);
        let line = (at as usize & !63) as *const u8;
        assert_eq!(Slot::hint(ptr::null(), 100), Slot::EMPTY);
        for (bytes, lines) in [(0, 1), (1, 1), (64, 1), (65, 2), (1024, 16), (1 << 20, 16)] {
            let hint = Slot::hint(at, bytes);
            assert_eq!(hint.hinted(), Some((line, lines)), "{bytes} bytes");
            assert_eq!((hint.entry(), hint.node()), (None, None));
        }
        // No room for the count above an address of more than 48 bits.
        if usize::BITS == 64 {
            assert_eq!(
                Slot::hint((1u64 << 50) as usize as *const u8, 64),
                Slot::EMPTY
            );
        }
        let e = make(b"k");
        assert_eq!(Slot::leaf(e).hinted(), None);
        put_back(e);
    }

    #[test]
    fn a_key_alone_in_its_trie_keeps_a_value_hint() {
        let index = Index::with_layout(false, 1, true).unwrap();
        let (a, b) = (make(b"a"), make(b"b"));
        let value = (VALUES.as_ptr(), 300);
        index.insert_valued(a, value).unwrap();
        assert_eq!(pair(&index), (Slot::leaf(a), Slot::hint(value.0, value.1)));
        assert_eq!(index.census().entries, 1);
        check(&index);
        assert_eq!(index.lookup(b"a", false), Some(a));
        put_back(a);
        assert_eq!(index.lookup(b"b", false), None);
        // A second key takes the slot; the hint is gone for good.
        index.insert_valued(b, value).unwrap();
        assert_eq!(pair(&index), (Slot::leaf(a), Slot::leaf(b)));
        assert!(index.remove(b));
        put_back(b);
        assert_eq!(pair(&index), (Slot::leaf(a), Slot::EMPTY));
        check(&index);
        // The key with its hint goes (its reference back to us): nothing is
        // left.
        assert!(index.remove(a));
        index.insert_valued(a, value).unwrap();
        assert!(index.remove(a));
        assert_eq!(refs(a), 1);
        assert_eq!(pair(&index), (Slot::EMPTY, Slot::EMPTY));
        // Without pairs there are no hints.
        let mut plain = Index::with_layout(false, 1, false).unwrap();
        plain.insert_valued(a, value).unwrap();
        assert_eq!(pair(&plain), (Slot::leaf(a), Slot::EMPTY));
        assert_eq!(clear(&mut plain), 1);
        check(&index);
    }

    #[test]
    fn validate_notices_a_misplaced_hint() {
        let mut index = Index::with_layout(false, 1, true).unwrap();
        let a = make(b"a");
        index.insert_valued(a, (VALUES.as_ptr(), 64)).unwrap();
        check(&index);
        let set = |root: Slot, second: Slot| {
            let mut tries = index.shards[0].trie.write();
            tries[0].root = root;
            tries[0].second = second;
        };
        let hint = Slot::hint(VALUES.as_ptr(), 64);
        set(Slot::EMPTY, hint);
        assert!(index.validate().unwrap_err().contains("without a first"));
        set(Slot::leaf(a), hint);
        index.pairs = false;
        assert!(index.validate().unwrap_err().contains("without pairs"));
        index.pairs = true;
        set(Slot::leaf(a), Slot(8));
        assert!(index
            .validate()
            .unwrap_err()
            .contains("neither a leaf nor a value hint"));
        set(Slot::leaf(a), hint);
        check(&index);
        assert_eq!(clear(&mut index), 1);
    }

    #[test]
    fn node_counts_match_the_original() {
        // SPEC §8.3: unsharded, 8-byte counter keys, LRU records of 56
        // bytes. Keys 0–15 share one node; 16 and 17 add one each.
        let mut index = Index::new(false).unwrap();
        for i in 0..18u64 {
            index.insert(make(&counter_key(i))).unwrap();
            check(&index);
            let n = i + 1;
            let census = index.census();
            let nodes = match n {
                1 => 0,
                2..=16 => 1,
                17 => 2,
                _ => 3,
            };
            assert_eq!(census.nodes, nodes, "{} keys", n);
            if (2..=16).contains(&n) {
                let dram = n * 56 + node_dram(cap_for(n as usize)) as u64;
                assert_eq!(census.entry_dram + census.node_dram, dram);
                if cfg!(feature = "stats") {
                    assert_eq!(index.stats().dram, dram);
                }
            }
        }
        assert_eq!(clear(&mut index), 18);
    }

    #[test]
    fn zero_length_and_prefix_keys() {
        let mut index = Index::new(false).unwrap();
        let keys: Vec<&[u8]> = vec![b"", b"\0", b"\0\0", b"a", b"ab", b"abc", b"\xff", b"\x80\0"];
        let entries: Vec<EntryPtr> = keys.iter().map(|k| make(k)).collect();
        for e in &entries {
            index.insert(*e).unwrap();
            check(&index);
        }
        for (k, e) in keys.iter().zip(&entries) {
            assert_eq!(index.lookup(k, false), Some(*e));
            put_back(*e);
        }
        assert_eq!(index.lookup(b"\0\0\0", false), None);
        assert_eq!(index.lookup(b"abcd", false), None);
        assert!(index.remove(entries[0]));
        put_back(entries[0]);
        check(&index);
        assert_eq!(index.lookup(b"", false), None);
        assert_eq!(index.lookup(b"\0", false), Some(entries[1]));
        put_back(entries[1]);
        assert_eq!(clear(&mut index), keys.len() - 1);
    }

    #[test]
    fn megabyte_keys() {
        let mut index = Index::new(true).unwrap();
        let mut a = vec![0x5au8; 1 << 20];
        a[12345] = 0x80;
        let mut b = a.clone();
        *b.last_mut().unwrap() ^= 1;
        let c = a[..a.len() - 1].to_vec();
        let mut index_keys = Vec::new();
        for key in [&a, &b, &c] {
            let e = make(key);
            index.insert(e).unwrap();
            index_keys.push(e);
        }
        check(&index);
        for (key, e) in [&a, &b, &c].iter().zip(&index_keys) {
            assert_eq!(index.lookup(key, true), Some(*e));
            put_back(*e);
        }
        let mut d = a.clone();
        d[1 << 19] = 0;
        assert_eq!(index.lookup(&d, true), None);
        expect(
            &index,
            IndexStats {
                puts: 3,
                entries: 3,
                dram: index.census().entry_dram + index.census().node_dram,
                hits: 3,
                misses: 1,
                ..IndexStats::default()
            },
        );
        let dup = make(&b);
        assert_eq!(index.insert(dup), Err(Error::KeyExists));
        put_back(dup);
        assert!(index.remove(index_keys[1]));
        put_back(index_keys[1]);
        check(&index);
        assert_eq!(clear(&mut index), 2);
    }

    #[test]
    fn duplicate_insert_changes_nothing() {
        for sharded in [false, true] {
            let mut index = Index::new(sharded).unwrap();
            let keys: Vec<Vec<u8>> = (0..40u64).map(|i| counter_key(i * 7).to_vec()).collect();
            let entries: Vec<EntryPtr> = keys.iter().map(|k| make(k)).collect();
            for e in &entries {
                index.insert(*e).unwrap();
            }
            let before = (index.stats(), index.census());
            for (k, e) in keys.iter().zip(&entries) {
                let twin = make(k);
                assert_eq!(index.insert(twin), Err(Error::KeyExists));
                assert_eq!(refs(twin), 1);
                assert_eq!(refs(*e), 1);
                assert!(!index.remove(twin), "another entry holds the key");
                assert!(put_back(twin));
                assert_eq!(index.lookup(k, false), Some(*e));
                put_back(*e);
            }
            assert_eq!((index.stats(), index.census()), before);
            check(&index);
            assert_eq!(clear(&mut index), keys.len());
        }
    }

    #[test]
    fn remove_hands_back_the_reference() {
        let mut index = Index::new(true).unwrap();
        let a = make(b"alpha");
        let b = make(b"beta");
        index.insert(a).unwrap();
        index.insert(b).unwrap();
        assert!(index.remove(a));
        assert_eq!(refs(a), 1, "the index's reference is now the caller's");
        assert!(!index.remove(a), "already removed");
        let a2 = make(b"alpha");
        index.insert(a2).unwrap();
        assert!(!index.remove(a), "another entry holds the key");
        assert!(put_back(a));
        assert_eq!(
            index.peek(b"alpha", |e| e as *const Entry),
            Some(a2.as_ptr() as *const Entry)
        );
        assert_eq!(index.peek(b"beta", |e| e.key().len()), Some(4));
        assert_eq!(refs(a2), 1, "peek takes no reference");
        expect(
            &index,
            IndexStats {
                puts: 3,
                evictions: 1,
                entries: 2,
                dram: index.census().entry_dram + index.census().node_dram,
                ..IndexStats::default()
            },
        );
        check(&index);
        assert_eq!(clear(&mut index), 2);
        expect(
            &index,
            IndexStats {
                puts: 3,
                evictions: 1,
                ..IndexStats::default()
            },
        );
        // A drained index is as good as new.
        let c = make(b"gamma");
        index.insert(c).unwrap();
        check(&index);
        assert_eq!(clear(&mut index), 1);
    }

    #[test]
    fn failed_allocations_leave_the_trie_unchanged() {
        let mut index = Index::new(false).unwrap();
        let k = |i: u64| counter_key(i);
        index.insert(make(&k(0))).unwrap();
        index.insert(make(&k(1))).unwrap();
        let before = (index.stats(), index.census());

        // Growing the two-child node.
        let e = make(&k(2));
        fail_allocation(1);
        assert_eq!(index.insert(e), Err(Error::OutOfMemory));
        assert_eq!((index.stats(), index.census()), before);
        assert_eq!(refs(e), 1);
        assert_eq!(index.lookup(&k(2), false), None);
        check(&index);
        // Splicing a new node above it.
        let f = make(&k(0x100));
        fail_allocation(1);
        assert_eq!(index.insert(f), Err(Error::OutOfMemory));
        assert_eq!((index.stats(), index.census()), before);
        check(&index);

        index.insert(e).unwrap();
        index.insert(f).unwrap();
        check(&index);
        assert_eq!(index.census().nodes, 2);

        // A node with three children and room for four fails to shrink when
        // one goes: it keeps its block, and everything stays consistent.
        let g = index.lookup(&k(1), false).unwrap();
        put_back(g);
        fail_allocation(1);
        assert!(index.remove(g));
        put_back(g);
        check(&index);
        let census = index.census();
        assert_eq!(census.node_dram, (node_dram(2) + node_dram(4)) as u64);
        // The spare slot is used without reallocating.
        fail_allocation(1);
        index.insert(make(&k(3))).unwrap();
        fail_allocation(0);
        assert_eq!(index.census().node_dram, census.node_dram);
        check(&index);
        assert_eq!(clear(&mut index), 4);
    }

    #[test]
    fn deep_tries_are_dismantled_without_recursion() {
        // Keys that first differ one nibble further each: a chain of nodes
        // as deep as the keys are long, in both directions.
        let mut index = Index::new(false).unwrap();
        for len in [64usize, 65] {
            for i in 0..2 * len {
                let mut key = vec![0u8; len];
                key[i / 2] = if i % 2 == 0 { 0x10 } else { 0x01 };
                index.insert(make(&key)).unwrap();
                let mut key = vec![0xffu8; len];
                key[i / 2] = if i % 2 == 0 { 0xef } else { 0xfe };
                index.insert(make(&key)).unwrap();
            }
            index.insert(make(&vec![0u8; len])).unwrap();
        }
        check(&index);
        assert!(index.census().nodes > 500);
        assert_eq!(clear(&mut index), (4 * 64 + 1) + (4 * 65 + 1));
        // Dropping an index that still holds entries frees its nodes only.
        let index = Index::new(false).unwrap();
        let kept: Vec<EntryPtr> = (0..300u64).map(|i| make(&counter_key(i * 13))).collect();
        for e in &kept {
            index.insert(*e).unwrap();
        }
        drop(index);
        for e in kept {
            assert!(put_back(e));
        }
    }

    #[test]
    fn dram_follows_the_entries() {
        for sharded in [false, true] {
            let index = Index::new(sharded).unwrap();
            let entries: Vec<EntryPtr> = (0..5000u64)
                .map(|i| {
                    let mut key = format!("{:x}:user:", i * 2654435761 % (1 << 32)).into_bytes();
                    key.resize(key.len().max(8 + (i % 40) as usize), b'#');
                    make(&key)
                })
                .collect();
            for e in &entries {
                index.insert(*e).unwrap();
            }
            check(&index);
            let census = index.census();
            assert_eq!(census.entries, 5000);
            if cfg!(feature = "stats") {
                assert_eq!(index.stats().dram, census.entry_dram + census.node_dram);
                assert_eq!(index.stats().entries, 5000);
            }
            for e in &entries {
                assert!(index.remove(*e));
                assert!(put_back(*e));
            }
            check(&index);
            let stats = index.stats();
            assert_eq!((stats.entries, stats.dram), (0, 0));
            assert_eq!(index.census(), Census::default());
        }
    }

    #[test]
    fn leaves_carry_their_key_tag() {
        let e = make(b"tagged");
        // SAFETY: alive until put back below.
        let locator = unsafe { e.get() }.locator();
        let leaf = Slot::leaf(e);
        assert_eq!(leaf.entry(), Some(e));
        assert!(leaf.node().is_none());
        assert_ne!(leaf.0 & TAGGED, 0, "user-space records get a tag");
        assert!(leaf.may_hold(locator));
        // Any other value of the tag bits rules the key out; the placement
        // bits do not count.
        assert!(!leaf.may_hold(locator ^ (1 << TAG_FROM)));
        assert!(!leaf.may_hold(locator ^ (1 << 31)));
        assert!(leaf.may_hold(locator ^ ((1 << TAG_FROM) - 1)));
        // A leaf without a tag (a record above the tag bits) may hold any
        // key, and still names its entry.
        let untagged = Slot(e.as_ptr() as usize | LEAF);
        assert_eq!(untagged.entry(), Some(e));
        assert!(untagged.may_hold(locator ^ (1 << 31)));
        put_back(e);
    }

    #[test]
    fn a_lookup_trusts_a_mismatching_tag() {
        let index = Index::new(false).unwrap();
        let e = make(b"k");
        index.insert(e).unwrap();
        let locator = hash(b"k") as u32;
        assert_eq!(index.peek_at(locator, b"k", |_| ()), Some(()));
        // The same record behind a leaf whose tag says another key: the
        // lookup answers from the tag without comparing the keys, and
        // validation reports the damage.
        let root = |slot: Slot| index.shards[0].trie.write()[0].root = slot;
        root(Slot(Slot::leaf(e).0 ^ (1 << TAG_SHIFT)));
        assert_eq!(index.peek_at(locator, b"k", |_| ()), None);
        assert!(index.lookup(b"k", false).is_none());
        assert!(index.validate().unwrap_err().contains("wrong tag"));
        // Without a tag, the keys are compared.
        root(Slot(e.as_ptr() as usize | LEAF));
        assert_eq!(index.peek_at(locator, b"k", |_| ()), Some(()));
        root(Slot::leaf(e));
        check(&index);
        assert!(index.remove(e));
        put_back(e);
    }

    #[test]
    fn keys_of_one_trie_with_one_tag_are_still_told_apart() {
        // Keys whose locators agree in every tag bit share the tag; their
        // records decide.
        let mut by_tag: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
        for i in 0u32..20_000 {
            let key = i.to_le_bytes().to_vec();
            by_tag
                .entry(key_tag(hash(&key) as u32))
                .or_default()
                .push(key);
        }
        let all = by_tag.into_values().find(|keys| keys.len() >= 4).unwrap();
        // In a critnib, and in a pair of leaves with one tag and beyond.
        for (pairs, n) in [(false, all.len()), (true, 2), (true, all.len())] {
            let keys = &all[..n];
            let mut index = Index::with_layout(false, 1, pairs).unwrap();
            for key in keys {
                index.insert(make(key)).unwrap();
            }
            check(&index);
            for key in keys {
                let found = index.lookup(key, false).expect("indexed");
                assert_eq!(key_of(found), *key);
                put_back(found);
                let twin = make(key);
                assert_eq!(index.insert(twin), Err(Error::KeyExists));
                assert!(put_back(twin));
            }
            let absent = {
                let mut k = keys[0].clone();
                k.push(0);
                k
            };
            assert!(index.lookup(&absent, false).is_none());
            assert_eq!(clear(&mut index), keys.len());
        }
    }

    #[test]
    fn validate_notices_damage() {
        let mut index = Index::new(false).unwrap();
        for key in [b"ab", b"ac", b"b\0"] {
            index.insert(make(key)).unwrap();
        }
        check(&index);
        let root = index.shards[0].trie.read()[0].root.node().unwrap();
        let damage = |f: &dyn Fn(&mut Node)| {
            // SAFETY: the test owns the index; no other thread sees it.
            unsafe { f(&mut *root.0.as_ptr()) }
        };
        let original = root.header();
        damage(&|n| n.low ^= 1);
        assert!(index.validate().is_err());
        damage(&|n| *n = original);
        damage(&|n| n.byte += 1);
        assert!(index.validate().is_err());
        damage(&|n| *n = original);
        damage(&|n| n.bitmap &= n.bitmap - 1);
        assert!(index.validate().unwrap_err().contains("1 children"));
        damage(&|n| *n = original);
        check(&index);
        if cfg!(feature = "stats") {
            index.shards[0].dram.add(1);
            assert!(index.validate().unwrap_err().contains("counters"));
            index.shards[0].dram.sub(1);
        }
        check(&index);
        assert_eq!(clear(&mut index), 3);
    }

    // --- against a model ----------------------------------------------------

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Vec<u8>),
        Lookup(Vec<u8>, bool),
        Peek(Vec<u8>),
        Remove(Vec<u8>),
        RemoveTwin(Vec<u8>),
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            Just(0u8),
            Just(1),
            Just(0x0f),
            Just(0x10),
            Just(0x7f),
            Just(0x80),
            Just(0xff),
            any::<u8>()
        ];
        let stem = prop_oneof![
            4 => 0usize..10,
            2 => Just(31usize),
            2 => Just(32usize),
            1 => Just(1000usize),
            1 => Just(3000usize),
        ];
        let fill = prop_oneof![Just(0u8), Just(b'x'), Just(0x80), Just(0xff)];
        (stem, fill, prop::collection::vec(byte, 0..3)).prop_map(|(n, fill, tail)| {
            let mut key = vec![fill; n];
            key.extend(tail);
            key
        })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => key().prop_map(Op::Insert),
            3 => (key(), any::<bool>()).prop_map(|(k, c)| Op::Lookup(k, c)),
            1 => key().prop_map(Op::Peek),
            2 => key().prop_map(Op::Remove),
            1 => key().prop_map(Op::RemoveTwin),
        ]
    }

    fn run_model(mut index: Index, ops: Vec<Op>, drain_at_end: bool) {
        let mut model: BTreeMap<Vec<u8>, EntryPtr> = BTreeMap::new();
        let mut want = IndexStats::default();
        for op in ops {
            match op {
                Op::Insert(k) => {
                    let e = make(&k);
                    // Half the keys say where a value of theirs would be.
                    let value = value_of(&k);
                    match model.entry(k) {
                        std::collections::btree_map::Entry::Occupied(_) => {
                            assert_eq!(index.insert_valued(e, value), Err(Error::KeyExists));
                            assert_eq!(refs(e), 1);
                            assert!(put_back(e));
                        }
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            index.insert_valued(e, value).unwrap();
                            slot.insert(e);
                            want.puts += 1;
                        }
                    }
                }
                Op::Lookup(k, count) => {
                    let found = index.lookup(&k, count);
                    assert_eq!(found, model.get(&k).copied());
                    if let Some(e) = found {
                        assert_eq!(refs(e), 2);
                        assert_eq!(key_of(e), k);
                        assert!(!put_back(e));
                    }
                    if count {
                        if found.is_some() {
                            want.hits += 1;
                        } else {
                            want.misses += 1;
                        }
                    }
                }
                Op::Peek(k) => {
                    let seen = index.peek(&k, |e| (e as *const Entry, e.key().to_vec()));
                    let expected = model
                        .get(&k)
                        .map(|e| (e.as_ptr() as *const Entry, k.clone()));
                    assert_eq!(seen, expected);
                }
                Op::Remove(k) => match model.remove(&k) {
                    Some(e) => {
                        assert!(index.remove(e));
                        assert_eq!(refs(e), 1);
                        assert!(!index.remove(e));
                        assert!(put_back(e));
                        want.evictions += 1;
                    }
                    None => {
                        let stranger = make(&k);
                        assert!(!index.remove(stranger));
                        assert!(put_back(stranger));
                    }
                },
                Op::RemoveTwin(k) => {
                    let twin = make(&k);
                    assert!(!index.remove(twin));
                    assert!(put_back(twin));
                }
            }
            check(&index);
            for e in model.values() {
                assert_eq!(refs(*e), 1);
            }
            let census = index.census();
            assert_eq!(census.entries, model.len() as u64);
            want.entries = model.len() as u64;
            want.dram = census.entry_dram + census.node_dram;
            expect(&index, want);
        }
        if drain_at_end {
            let mut drained = HashSet::new();
            index.drain(|e| {
                assert_eq!(refs(e), 1);
                assert!(drained.insert(e.as_ptr() as usize));
                assert!(put_back(e));
            });
            let expected: HashSet<usize> = model.values().map(|e| e.as_ptr() as usize).collect();
            assert_eq!(drained, expected);
        } else {
            for e in model.values() {
                assert!(index.remove(*e));
                assert!(put_back(*e));
            }
        }
        check(&index);
        let stats = index.stats();
        assert_eq!((stats.entries, stats.dram), (0, 0));
        assert_eq!(index.census(), Census::default());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn matches_a_map_unsharded(ops in prop::collection::vec(op(), 1..150), drain in any::<bool>()) {
            run_model(Index::with_tries(false, 1).unwrap(), ops, drain);
        }

        #[test]
        fn matches_a_map_sharded(ops in prop::collection::vec(op(), 1..150), drain in any::<bool>()) {
            run_model(Index::with_tries(true, 1).unwrap(), ops, drain);
        }

        #[test]
        fn matches_a_map_with_several_tries_per_shard(
            ops in prop::collection::vec(op(), 1..150),
            drain in any::<bool>(),
        ) {
            let index = Index::with_tries(true, 4).unwrap();
            assert_eq!(index.tries_per_shard(), 4);
            assert!(index.pairs);
            run_model(index, ops, drain);
        }

        #[test]
        fn matches_a_map_with_paired_roots(
            ops in prop::collection::vec(op(), 1..150),
            drain in any::<bool>(),
        ) {
            // Every key in one trie: the pair fills, overflows into nodes
            // and comes back as the keys come and go.
            run_model(Index::with_layout(false, 1, true).unwrap(), ops, drain);
        }
    }

    // --- concurrency --------------------------------------------------------

    /// Two writers insert and remove `n` keys between them, and two readers
    /// look them up.
    fn concurrent(mut index: Index, n: usize) {
        const WRITERS: usize = 2;
        const READERS: usize = 2;
        const ROUNDS: usize = 6000;
        // Keys with long shared prefixes, so writers reshape the same nodes
        // the readers walk.
        let keys: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut k = vec![b'k'; (i % 4) * 20];
                k.extend(format!("{:02x}", i).bytes());
                k
            })
            .collect();
        let published: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
        let created = AtomicUsize::new(0);
        let destroyed = AtomicUsize::new(0);
        let lookups = AtomicU64::new(0);
        let writers_done = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        // Counting is relaxed everywhere below: the totals are read after
        // the threads are joined, which orders every update before.
        let release = |e: EntryPtr| {
            if put_back(e) {
                destroyed.fetch_add(1, Ordering::Relaxed);
            }
        };
        std::thread::scope(|s| {
            for w in 0..WRITERS {
                let (index, keys, published, created) = (&index, &keys, &published, &created);
                let (writers_done, stop, release) = (&writers_done, &stop, &release);
                s.spawn(move || {
                    let mut present: Vec<Option<EntryPtr>> = vec![None; n];
                    let mut rng = 0x9e3779b97f4a7c15u64 ^ w as u64;
                    for round in 0..ROUNDS {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let i = (rng as usize % (n / WRITERS)) * WRITERS + w;
                        match present[i].take() {
                            Some(e) => {
                                assert!(index.remove(e));
                                release(e);
                            }
                            None => {
                                let e = make(&keys[i]);
                                created.fetch_add(1, Ordering::Relaxed);
                                let gen = round as u64 + 1;
                                // SAFETY: not yet published.
                                unsafe {
                                    Entry::set_value(e, (i << 32) | gen as usize, Allocation::EMPTY)
                                };
                                // Relaxed: the insertion's lock release and a
                                // reader's lock acquisition order this store
                                // before any load of a reader that finds `e`.
                                published[i].store(gen, Ordering::Relaxed);
                                index.insert_valued(e, value_of(&keys[i])).unwrap();
                                present[i] = Some(e);
                            }
                        }
                    }
                    for e in present.into_iter().flatten() {
                        assert!(index.remove(e));
                        release(e);
                    }
                    // Relaxed: only ends the readers' loop.
                    if writers_done.fetch_add(1, Ordering::Relaxed) + 1 == WRITERS {
                        stop.store(true, Ordering::Relaxed);
                    }
                });
            }
            for r in 0..READERS {
                let (index, keys, published, lookups) = (&index, &keys, &published, &lookups);
                let (stop, release) = (&stop, &release);
                s.spawn(move || {
                    let mut i = r;
                    // Relaxed: a flag to stop on, guarding no data.
                    while !stop.load(Ordering::Relaxed) {
                        i = (i + 7) % n;
                        lookups.fetch_add(1, Ordering::Relaxed);
                        if let Some(e) = index.lookup(&keys[i], true) {
                            // SAFETY: the lookup's reference is ours.
                            let entry = unsafe { e.get() };
                            assert_eq!(entry.key(), &keys[i][..]);
                            let v = entry.vsize();
                            assert_eq!(v >> 32, i);
                            assert!(v as u64 & 0xffff_ffff <= published[i].load(Ordering::Relaxed));
                            release(e);
                        }
                        index.peek(&keys[(i + 1) % n], |e| {
                            assert_eq!(e.vsize() >> 32, (i + 1) % n);
                            assert!(e.refs() >= 1);
                        });
                    }
                });
            }
        });
        check(&index);
        let stats = index.stats();
        assert_eq!((stats.entries, stats.dram), (0, 0));
        if cfg!(feature = "stats") {
            assert_eq!(stats.hits + stats.misses, lookups.load(Ordering::Relaxed));
            assert_eq!(stats.puts, created.load(Ordering::Relaxed) as u64);
            assert_eq!(stats.evictions, stats.puts);
        }
        assert_eq!(clear(&mut index), 0);
        assert_eq!(
            created.load(Ordering::Relaxed),
            destroyed.load(Ordering::Relaxed)
        );
    }

    #[test]
    fn concurrent_readers_and_writers_unsharded() {
        concurrent(Index::with_tries(false, 1).unwrap(), 64);
    }

    #[test]
    fn concurrent_readers_and_writers_sharded() {
        concurrent(Index::with_tries(true, 1).unwrap(), 64);
    }

    #[test]
    fn concurrent_readers_and_writers_several_tries_per_shard() {
        concurrent(Index::with_tries(true, 8).unwrap(), 64);
    }

    #[test]
    fn concurrent_readers_and_writers_of_a_pair() {
        // Four keys in one trie: the writers keep moving it between the
        // pair and a node.
        concurrent(Index::with_layout(false, 1, true).unwrap(), 4);
    }

    #[test]
    fn tries_follow_the_capacity() {
        // Small pools keep one trie per shard, as the original has.
        let small = Index::for_capacity(true, SHARDS * KEYS_PER_TRIE).unwrap();
        assert_eq!(small.tries_per_shard(), 1);
        let mid = Index::for_capacity(true, SHARDS * KEYS_PER_TRIE * 5).unwrap();
        assert_eq!(mid.tries_per_shard(), 8);
        let big = Index::for_capacity(true, usize::MAX / 2).unwrap();
        assert_eq!(big.tries_per_shard(), MAX_TRIES);
        let single = Index::for_capacity(false, usize::MAX / 2).unwrap();
        assert_eq!(single.tries_per_shard(), 1);
        // Pairs come with several tries per shard only.
        assert_eq!(
            (small.pairs, mid.pairs, big.pairs, single.pairs),
            (false, true, true, false)
        );
        // The trie is picked by the hash bits above the shard's.
        let mut seen = HashSet::new();
        for i in 0..4096u64 {
            let key = counter_key(i);
            let h = hash(&key) as usize;
            assert_eq!(mid.locate(&key), (h & 255, (h >> 8) & 7));
            assert_eq!(single.locate(&key), (0, 0));
            seen.insert(mid.locate(&key).1);
            // An entry's locator (32 bits of the hash) places it alike.
            let locator = Entry::create(&key, false).map(|p| {
                // SAFETY: alive until destroyed here.
                let locator = unsafe { p.get() }.locator();
                // SAFETY: never published.
                unsafe { Entry::destroy(p) };
                locator
            });
            let locator = locator.unwrap();
            for index in [&small, &mid, &big, &single] {
                assert_eq!(index.place(locator as usize), index.locate(&key));
                index.prefetch(locator);
            }
        }
        assert_eq!(seen.len(), 8);
        // The roots a prefetch names are the shards' arrays of tries.
        for index in [&small, &mid, &big, &single] {
            let last = index.tree_mask;
            for (n, shard) in index.shards.iter().enumerate() {
                let tries = shard.trie.read();
                for tree in [0, last] {
                    let locator = (n | tree << SHARD_BITS) as u32;
                    assert_eq!(index.place(locator as usize), (n, tree));
                    assert_eq!(index.root_of(locator), &tries[tree] as *const Trie);
                }
            }
        }
    }

    #[test]
    fn roots_lie_in_one_mapping_on_huge_page_boundaries() {
        let big = Index::for_capacity(true, usize::MAX / 2).unwrap();
        let small = Index::for_capacity(true, SHARDS * KEYS_PER_TRIE).unwrap();
        let single = Index::new(false).unwrap();
        // 64 MiB of roots: from a huge page's start, the shards' arrays one
        // after another.
        let root = |index: &Index, shard: usize| index.shards[shard].trie.read().as_ptr() as usize;
        let first = root(&big, 0);
        assert_eq!(first % HUGE_PAGE, 0);
        assert!(SHARDS * MAX_TRIES * size_of::<Trie>() >= HUGE_PAGE);
        for n in 0..SHARDS {
            assert_eq!(root(&big, n), first + n * MAX_TRIES * size_of::<Trie>());
        }
        // Every trie starts empty, and the last one of the last shard is
        // inside the mapping.
        for index in [&big, &small, &single] {
            for shard in index.shards.iter() {
                let tries = shard.trie.read();
                assert_eq!(tries.len(), index.tries_per_shard());
                assert!(tries
                    .iter()
                    .all(|t| t.root.is_empty() && t.second.is_empty()));
            }
        }
        // Smaller ones need no alignment beyond a page's.
        assert_eq!(root(&small, 0) % 4096, 0);
        assert_eq!(root(&small, 1), root(&small, 0) + size_of::<Trie>());
    }
}

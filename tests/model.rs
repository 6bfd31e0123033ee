//! Random operation sequences against a model (the Rust side of the fuzz
//! targets; `fuzz/c_api_fuzz.c` is the C side).
//!
//! Each case builds a cache with a random pool size, extent size and
//! policy, then applies a random sequence of puts (keys of 0 to 1100 bytes,
//! values of 0 bytes to more than the pool), whole and partial gets with
//! random offsets and buffer sizes, gets whose miss `on_miss` fills,
//! `exists`, evictions by key and of the LRU victim. The model is a map key
//! → value; entries the cache evicts on its own are reported by `on_evict`
//! and dropped from it. After every step the cache must agree with the
//! model (every answer, the ENTRIES statistic, the keys the step touched),
//! and `validate()` must find every invariant of the heap, the index and
//! the policy intact; at the end every key is read back and the cache
//! drains to empty.
//!
//! `VMEMCACHE_FUZZ_CASES` sets the number of cases (default 24);
//! `VMEMCACHE_FUZZ_SECONDS` instead runs batches of cases, each with a new
//! seed, until that many seconds have passed (the CI smoke run and longer
//! runs by hand). A failure is shrunk to a minimal sequence and printed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use vmemcache::{Cache, CacheBuilder, Error, Policy, Stat};

/// Distinct keys a case uses (few, so that operations meet each other).
const KEYS: u8 = 48;

#[derive(Debug, Clone)]
struct Setup {
    pool_size: usize,
    extent_size: usize,
    policy: Policy,
    in_directory: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Put { key: u8, len: usize },
    Get { key: u8, offset: usize, buf: usize },
    GetOrFill { key: u8, offset: usize, buf: usize },
    Exists { key: u8 },
    Evict { key: u8 },
    EvictLru,
}

/// Key number `id`: empty for 0, 1100 bytes for the last one (longer than
/// the original's on-stack limit), otherwise up to 37 bytes; the first byte
/// tells them apart.
fn key(id: u8) -> Vec<u8> {
    let len = match id {
        0 => 0,
        id if id == KEYS - 1 => 1100,
        id => 1 + id as usize % 37,
    };
    (0..len)
        .map(|i| {
            if i == 0 {
                id
            } else {
                (id as usize * 31 + i) as u8
            }
        })
        .collect()
}

/// A value whose bytes depend on its generation (every put makes a new
/// one), so a stale or misplaced copy shows.
fn value(len: usize, generation: u64) -> Vec<u8> {
    let mut x = generation.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![Just(1usize << 20), Just(2 << 20), (1usize << 20)..(3 << 20)],
        prop_oneof![
            Just(256usize),
            Just(512),
            Just(4096),
            256usize..5000,
            Just(1 << 20)
        ],
        prop_oneof![Just(Policy::Lru), Just(Policy::None)],
        prop::bool::weighted(0.1),
    )
        .prop_map(|(pool_size, extent_size, policy, in_directory)| Setup {
            pool_size,
            extent_size,
            policy,
            in_directory,
        })
}

fn value_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 0usize..300,
        4 => 300usize..20_000,
        1 => 20_000usize..200_000,
        1 => Just(0usize),
        // Around what the pool can hold, and beyond.
        1 => (1usize << 20) - 20_000..(3 << 20) + 10,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    let pos = || prop_oneof![0usize..64, 0usize..30_000];
    prop_oneof![
        6 => (key.clone(), value_len()).prop_map(|(key, len)| Op::Put { key, len }),
        4 => (key.clone(), pos(), pos()).prop_map(|(key, offset, buf)| Op::Get { key, offset, buf }),
        2 => (key.clone(), pos(), pos())
            .prop_map(|(key, offset, buf)| Op::GetOrFill { key, offset, buf }),
        1 => key.clone().prop_map(|key| Op::Exists { key }),
        2 => key.prop_map(|key| Op::Evict { key }),
        1 => Just(Op::EvictLru),
    ]
}

fn case() -> impl Strategy<Value = (Setup, Vec<Op>)> {
    (setup(), prop::collection::vec(op(), 1..300))
}

/// What on_miss puts for key `id` when a GetOrFill asked for it.
fn fill_len(id: u8) -> usize {
    id as usize * 97
}

struct Harness {
    cache: Cache,
    model: HashMap<Vec<u8>, Vec<u8>>,
    evicted: Arc<Mutex<Vec<Vec<u8>>>>,
    fill: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    setup: Setup,
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

impl Harness {
    fn new(setup: &Setup) -> Harness {
        let evicted = Arc::new(Mutex::new(Vec::new()));
        let fill = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(1));
        let log = Arc::clone(&evicted);
        let (fill_on, gen) = (Arc::clone(&fill), Arc::clone(&generation));
        let mut builder = CacheBuilder::new()
            .size(setup.pool_size)
            .extent_size(setup.extent_size)
            .policy(setup.policy)
            .on_evict(move |cache, key| {
                // The entry is still readable while the callback runs.
                assert!(cache.exists(key).is_some(), "on_evict of an absent key");
                log.lock().unwrap().push(key.to_vec());
            })
            .on_miss(move |cache, key| {
                if fill_on.load(Ordering::Relaxed) {
                    let id = key.first().copied().unwrap_or(0);
                    let v = value(fill_len(id), gen.fetch_add(1, Ordering::Relaxed));
                    // May fail (no room under NONE): the get is satisfied
                    // all the same.
                    let _ = cache.put(key, &v);
                }
            });
        builder = if setup.in_directory {
            builder.path(std::env::temp_dir())
        } else {
            builder.anonymous()
        };
        Harness {
            cache: builder.build().expect("cache"),
            model: HashMap::new(),
            evicted,
            fill,
            generation,
            setup: setup.clone(),
        }
    }

    /// Drops from the model what `on_evict` reported; returns how many.
    fn take_evictions(&mut self) -> Result<usize, TestCaseError> {
        let evicted: Vec<Vec<u8>> = std::mem::take(&mut *self.evicted.lock().unwrap());
        for key in &evicted {
            check(self.model.remove(key).is_some(), || {
                format!("on_evict of {key:?}, which the model lacks")
            })?;
            check(self.cache.exists(key).is_none(), || {
                format!("{key:?} still present after its eviction")
            })?;
        }
        Ok(evicted.len())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let lru = self.setup.policy == Policy::Lru;
        match *op {
            Op::Put { key: id, len } => {
                let k = key(id);
                let v = value(len, self.generation.fetch_add(1, Ordering::Relaxed));
                let used = self.cache.stat(Stat::PoolSizeUsed) as usize;
                let result = self.cache.put(&k, &v);
                let evictions = self.take_evictions()?;
                // A value that can never fit is refused first (SPEC §4
                // step 2 and §14 #6), then a present key (§14 #5).
                if len > self.cache.max_value_size() {
                    check(result == Err(Error::ValueTooLarge), || {
                        format!("put of {len} bytes (at most {}): {result:?}", {
                            self.cache.max_value_size()
                        })
                    })?;
                    check(evictions == 0, || "a put that can never fit evicted".into())?;
                } else if self.model.contains_key(&k) {
                    check(result == Err(Error::KeyExists), || {
                        format!("put of a present key: {result:?}")
                    })?;
                    check(evictions == 0, || "a duplicate put evicted".into())?;
                } else if lru {
                    check(result.is_ok(), || format!("LRU put: {result:?}"))?;
                } else {
                    check(result.is_ok() || result == Err(Error::NoSpace), || {
                        format!("NONE put: {result:?}")
                    })?;
                    check(evictions == 0, || "policy NONE evicted".into())?;
                    if result.is_err() && cfg!(feature = "stats") {
                        let e = self.cache.extent_size();
                        let need = len.div_ceil(e) * e;
                        check(used + need > self.cache.max_value_size(), || {
                            format!("NoSpace for {need} bytes with {used} in use")
                        })?;
                    }
                }
                if result.is_ok() {
                    self.model.insert(k.clone(), v);
                }
                self.check_key(&k)?;
            }
            Op::Get {
                key: id,
                offset,
                buf,
            }
            | Op::GetOrFill {
                key: id,
                offset,
                buf,
            } => {
                let fill = matches!(op, Op::GetOrFill { .. });
                let k = key(id);
                let mut out = vec![0xA5u8; buf];
                let before = self.generation.load(Ordering::Relaxed);
                self.fill.store(fill, Ordering::Relaxed);
                let result = self.cache.get_into(&k, offset, &mut out);
                self.fill.store(false, Ordering::Relaxed);
                // A fill puts generation `before`; the put may evict others.
                let filled =
                    (fill && !self.model.contains_key(&k)).then(|| value(fill_len(id), before));
                self.take_evictions()?;
                let expected = match (&filled, self.model.get(&k)) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(v)) => Some(v.clone()),
                    (None, None) => None,
                };
                match (expected, result) {
                    (Some(v), Ok(found)) => {
                        let n = v.len().saturating_sub(offset).min(buf);
                        check(found.size == v.len() && found.copied == n, || {
                            format!("get {offset}/{buf} of {} bytes: {found:?}", v.len())
                        })?;
                        check(out[..n] == v[offset.min(v.len())..][..n], || {
                            "get returned other bytes".into()
                        })?;
                        check(out[n..].iter().all(|&b| b == 0xA5), || {
                            "get wrote past what it copied".into()
                        })?;
                    }
                    (None, Err(Error::Miss)) => {}
                    (expected, result) => {
                        return Err(TestCaseError::fail(format!(
                            "get: {result:?}, model {:?}",
                            expected.map(|v| v.len())
                        )))
                    }
                }
                if let Some(v) = filled {
                    // The fill's put stored it when there was room.
                    if self.cache.exists(&k).is_some() {
                        self.model.insert(k.clone(), v);
                    } else {
                        check(!lru || fill_len(id) > self.cache.max_value_size(), || {
                            "an LRU fill was not stored".into()
                        })?;
                    }
                }
                self.check_key(&k)?;
            }
            Op::Exists { key: id } => self.check_key(&key(id))?,
            Op::Evict { key: id } => {
                let k = key(id);
                let result = self.cache.evict(&k);
                let evictions = self.take_evictions()?;
                if self.model.contains_key(&k) {
                    return Err(TestCaseError::fail(format!(
                        "evict of a present key: {result:?}, key still in the model"
                    )));
                }
                match result {
                    Ok(()) => check(evictions == 1, || {
                        format!("evict by key: {evictions} callbacks")
                    })?,
                    Err(Error::KeyNotFound) => {
                        check(evictions == 0, || "a failed evict ran on_evict".into())?
                    }
                    other => return Err(TestCaseError::fail(format!("evict: {other:?}"))),
                }
            }
            Op::EvictLru => {
                let was_empty = self.model.is_empty();
                let result = self.cache.evict_lru();
                let evictions = self.take_evictions()?;
                if lru && !was_empty {
                    check(result.is_ok() && evictions == 1, || {
                        format!("LRU eviction: {result:?}, {evictions} callbacks")
                    })?;
                } else {
                    check(result == Err(Error::NoVictim) && evictions == 0, || {
                        format!("eviction with nothing evictable: {result:?}")
                    })?;
                }
            }
        }
        if cfg!(feature = "stats") {
            let entries = self.cache.stat(Stat::Entries) as usize;
            check(entries == self.model.len(), || {
                format!("ENTRIES {entries}, model {}", self.model.len())
            })?;
            check(
                self.cache.stat(Stat::PoolSizeUsed) as usize <= self.cache.max_value_size(),
                || "POOL_SIZE_USED beyond the heap".into(),
            )?;
        }
        self.cache.validate().map_err(TestCaseError::fail)
    }

    /// `exists` agrees with the model on `k`.
    fn check_key(&self, k: &[u8]) -> Result<(), TestCaseError> {
        let got = self.cache.exists(k);
        let want = self.model.get(k).map(Vec::len);
        check(got == want, || {
            format!("exists {got:?}, model {want:?} (key of {} bytes)", k.len())
        })
    }

    /// Every key reads back whole, then the cache drains to empty.
    fn finish(mut self) -> Result<(), TestCaseError> {
        for (k, v) in &self.model {
            let got = self.cache.get(k);
            check(got.as_deref() == Some(&v[..]), || {
                format!("final read of a {}-byte key", k.len())
            })?;
        }
        let keys: Vec<Vec<u8>> = self.model.keys().cloned().collect();
        if self.setup.policy == Policy::Lru {
            while self.cache.evict_lru().is_ok() {}
        } else {
            for k in &keys {
                check(self.cache.evict(k).is_ok(), || "drain by key".into())?;
            }
        }
        let drained = self.take_evictions()?;
        check(drained == keys.len() && self.model.is_empty(), || {
            format!("drained {drained} of {}", keys.len())
        })?;
        if cfg!(feature = "stats") {
            for (stat, want) in [
                (Stat::Entries, 0),
                (Stat::DramSizeUsed, 0),
                (Stat::PoolSizeUsed, 0),
                (Stat::HeapEntries, 1),
            ] {
                let got = self.cache.stat(stat);
                check(got == want, || format!("{stat:?} is {got} after the drain"))?;
            }
        }
        self.cache.validate().map_err(TestCaseError::fail)
    }
}

fn run_case(setup: &Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new(setup);
    for (i, op) in ops.iter().enumerate() {
        h.step(op)
            .map_err(|e| TestCaseError::fail(format!("step {i} ({op:?}): {e}")))?;
    }
    h.finish()
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn random_operations_agree_with_the_model() {
    let seconds = env_number("VMEMCACHE_FUZZ_SECONDS");
    let cases = env_number("VMEMCACHE_FUZZ_CASES").unwrap_or(24) as u32;
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut seed = env_number("VMEMCACHE_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut total = 0u64;
    loop {
        // Each batch from its own printed seed, so a failure can be
        // replayed with VMEMCACHE_FUZZ_SEED (and the same case count).
        eprintln!("model: seed {seed}, {cases} cases");
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let config = Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
        if let Err(e) = runner.run(&case(), |(setup, ops)| run_case(&setup, &ops)) {
            panic!("model: seed {seed}: {e}");
        }
        total += cases as u64;
        match deadline {
            Some(d) if Instant::now() < d => seed = seed.wrapping_add(1),
            _ => break,
        }
    }
    eprintln!("model: {total} cases passed");
}

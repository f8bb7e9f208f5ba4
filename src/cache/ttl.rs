//! A TTL cache over quick_cache with single-flight loading, per-key-stripe generations that close
//! the miss/invalidate race, and counters.
//!
//! The race: a reader misses, reads the old row, a write commits and invalidates, and the reader
//! then stores the old row. Here every entry carries the generation of its key's stripe read
//! *before* its row was loaded, and a hit is served only while that generation is still current.
//! Invalidation bumps the generation (after COMMIT, before the write is acknowledged), so an
//! entry loaded before an acknowledged write can never be served after it.

use super::clock::now_ms;
use quick_cache::sync::{Cache, GuardResult};
use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter};
use serde::Serialize;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Relaxed, SeqCst},
};

/// A cache key: which generation stripe it belongs to (user-scoped keys use the user id, so
/// invalidating a user touches one stripe).
pub trait CacheKey: Eq + Hash + Clone + Send + Sync + 'static {
    /// The stripe selector.
    fn stripe(&self) -> u64;
}

#[derive(Clone)]
struct Entry<V> {
    value: V,
    generation: u64,
    expires_ms: u64,
}

#[derive(Clone, Default)]
struct EvictionCounter(Arc<AtomicU64>);

impl<K, V> Lifecycle<K, V> for EvictionCounter {
    type RequestState = ();
    // quick_cache calls `on_evict` also for the old value of a key that is written again (every
    // write-through `put`), but `before_evict` only when capacity pushes an entry out
    fn before_evict(&self, _: &mut (), _: &K, _: &mut V) {
        self.0.fetch_add(1, Relaxed);
    }
}

type Inner<K, V> = Cache<K, Arc<Entry<V>>, UnitWeighter, DefaultHashBuilder, EvictionCounter>;

/// Counters of one cache, as `/stats/cache` shows them.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CacheStats {
    /// Reads served from the cache.
    pub hits: u64,
    /// Reads that loaded from the database.
    pub misses: u64,
    /// hits / (hits + misses), 0 when unused.
    pub hit_rate: f64,
    /// Entries held.
    pub size: u64,
    /// Most entries held.
    pub capacity: u64,
    /// Time to live.
    pub ttl_ms: u64,
    /// Invalidations by writes.
    pub invalidations: u64,
    /// Entries found or swept out expired.
    pub expired: u64,
    /// Entries evicted for capacity.
    pub evictions: u64,
}

/// A TTL cache with generation-checked, single-flight loading.
pub struct TtlCache<K: CacheKey, V: Clone + Send + Sync + 'static> {
    inner: Inner<K, V>,
    generations: Box<[AtomicU64]>,
    ttl_ms: u64,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    expired: AtomicU64,
    evictions: Arc<AtomicU64>,
}

impl<K: CacheKey, V: Clone + Send + Sync + 'static> TtlCache<K, V> {
    /// A cache of at most `capacity` entries living `ttl_ms`, with `stripes` generation stripes
    /// (rounded up to a power of two).
    pub fn new(capacity: usize, ttl_ms: u64, stripes: usize) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let capacity = capacity.max(1);
        let stripes = stripes.max(1).next_power_of_two();
        TtlCache {
            inner: Cache::with(
                capacity,
                capacity as u64,
                UnitWeighter,
                DefaultHashBuilder::default(),
                EvictionCounter(evictions.clone()),
            ),
            generations: (0..stripes).map(|_| AtomicU64::new(0)).collect(),
            ttl_ms,
            capacity: capacity as u64,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            evictions,
        }
    }

    fn generation(&self, key: &K) -> &AtomicU64 {
        &self.generations[(key.stripe() as usize) & (self.generations.len() - 1)]
    }

    fn fresh(&self, e: &Entry<V>, key: &K, now: u64) -> Result<(), bool> {
        if e.generation != self.generation(key).load(SeqCst) {
            Err(false)
        } else if e.expires_ms <= now {
            Err(true)
        } else {
            Ok(())
        }
    }

    /// The cached value if present, fresh and not invalidated (no load on a miss).
    pub fn peek(&self, key: &K) -> Option<V> {
        let e = self.inner.get(key)?;
        self.fresh(&e, key, now_ms()).ok().map(|()| e.value.clone())
    }

    /// Returns the cached value, or runs `load` once for a burst of concurrent misses on the same
    /// key and caches its result. Errors are returned and not cached.
    pub fn get_or_load<E>(&self, key: &K, load: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        let now = now_ms();
        for _ in 0..3 {
            match self.inner.get_value_or_guard(key, None) {
                GuardResult::Value(e) => match self.fresh(&e, key, now) {
                    Ok(()) => {
                        self.hits.fetch_add(1, Relaxed);
                        return Ok(e.value.clone());
                    }
                    Err(expired) => {
                        if expired {
                            self.expired.fetch_add(1, Relaxed);
                        }
                        self.inner.remove_if(key, |cur| Arc::ptr_eq(cur, &e));
                    }
                },
                GuardResult::Guard(g) => {
                    self.misses.fetch_add(1, Relaxed);
                    let generation = self.generation(key).load(SeqCst);
                    let value = load()?;
                    let _ = g.insert(Arc::new(Entry {
                        value: value.clone(),
                        generation,
                        expires_ms: now.saturating_add(self.ttl_ms),
                    }));
                    return Ok(value);
                }
                GuardResult::Timeout => break,
            }
        }
        // invalidated on every attempt (heavy write traffic on this key): read through, uncached
        self.misses.fetch_add(1, Relaxed);
        load()
    }

    /// Replaces an entry with a value the writer knows to be current (write-through). Call after
    /// COMMIT, like [`TtlCache::invalidate`]; concurrent loads of older rows are rejected.
    pub fn put(&self, key: K, value: V) {
        let g = self.generation(&key);
        let generation = g.fetch_add(1, SeqCst) + 1;
        self.invalidations.fetch_add(1, Relaxed);
        self.inner.insert(
            key,
            Arc::new(Entry {
                value,
                generation,
                expires_ms: now_ms().saturating_add(self.ttl_ms),
            }),
        );
    }

    /// Makes every entry of `key`'s stripe stale and drops `key`'s entry.
    pub fn invalidate(&self, key: &K) {
        self.generation(key).fetch_add(1, SeqCst);
        self.invalidations.fetch_add(1, Relaxed);
        self.inner.remove(key);
    }

    /// Makes every entry of one stripe stale (e.g. every account of one user).
    pub fn invalidate_stripe(&self, stripe: u64) {
        self.generations[(stripe as usize) & (self.generations.len() - 1)].fetch_add(1, SeqCst);
        self.invalidations.fetch_add(1, Relaxed);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        for g in self.generations.iter() {
            g.fetch_add(1, SeqCst);
        }
        self.inner.clear();
    }

    /// Removes expired and invalidated entries; returns how many expired ones it removed.
    pub fn sweep(&self) -> u64 {
        let now = now_ms();
        let removed = AtomicU64::new(0);
        self.inner.retain(|k, e| match self.fresh(e, k, now) {
            Ok(()) => true,
            Err(expired) => {
                if expired {
                    removed.fetch_add(1, Relaxed);
                }
                false
            }
        });
        let n = removed.into_inner();
        self.expired.fetch_add(n, Relaxed);
        n
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        let hits = self.hits.load(Relaxed);
        let misses = self.misses.load(Relaxed);
        CacheStats {
            hits,
            misses,
            hit_rate: if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            },
            size: self.inner.len() as u64,
            capacity: self.capacity,
            ttl_ms: self.ttl_ms,
            invalidations: self.invalidations.load(Relaxed),
            expired: self.expired.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl CacheKey for u64 {
        fn stripe(&self) -> u64 {
            *self
        }
    }

    #[test]
    fn evictions_count_entries_pushed_out_not_values_replaced() {
        let c: TtlCache<u64, u32> = TtlCache::new(100, 60_000, 64);
        for v in 0..50 {
            c.put(1, v);
        }
        assert_eq!(c.stats().evictions, 0);
        for k in 0..1_000 {
            c.put(k, 0);
        }
        let s = c.stats();
        assert!(s.evictions > 0 && s.evictions <= 1_000, "{s:?}");
    }

    #[test]
    fn hit_miss_invalidate() {
        let c: TtlCache<u64, u32> = TtlCache::new(100, 60_000, 64);
        assert_eq!(c.get_or_load(&1, || Ok::<_, ()>(10)), Ok(10));
        assert_eq!(c.get_or_load(&1, || Ok::<_, ()>(99)), Ok(10));
        c.invalidate(&1);
        assert_eq!(c.get_or_load(&1, || Ok::<_, ()>(11)), Ok(11));
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.invalidations), (1, 2, 1));
    }

    #[test]
    fn an_entry_loaded_before_an_invalidation_is_never_served_after_it() {
        let c: TtlCache<u64, u32> = TtlCache::new(100, 60_000, 64);
        // the loader reads the old row, then the write commits and invalidates, then it stores
        let v = c.get_or_load(&7, || {
            c.invalidate(&7);
            Ok::<_, ()>(1)
        });
        assert_eq!(v, Ok(1));
        assert_eq!(c.peek(&7), None, "stale entry served");
        assert_eq!(c.get_or_load(&7, || Ok::<_, ()>(2)), Ok(2));
    }

    #[test]
    fn a_load_that_a_write_through_or_a_stripe_invalidation_overtakes_is_not_served() {
        let c: TtlCache<u64, u32> = TtlCache::new(100, 60_000, 64);
        // the loader read the old row (1) before the writer put the new value (2)
        let v = c.get_or_load(&7, || {
            c.put(7, 2);
            Ok::<_, ()>(1)
        });
        assert_eq!(v, Ok(1), "the loader's own caller gets what it read");
        assert_ne!(c.peek(&7), Some(1), "stale load served after a put");
        assert_eq!(c.get_or_load(&7, || Ok::<_, ()>(2)), Ok(2));
        // the same when the writer drops every entry of the key's stripe (a user's lists)
        let v = c.get_or_load(&9, || {
            c.invalidate_stripe(9);
            Ok::<_, ()>(1)
        });
        assert_eq!(v, Ok(1));
        assert_eq!(
            c.peek(&9),
            None,
            "stale load served after a stripe invalidation"
        );
        assert_eq!(c.get_or_load(&9, || Ok::<_, ()>(3)), Ok(3));
    }

    #[test]
    fn errors_are_not_cached_and_expiry_is_counted() {
        let c: TtlCache<u64, u32> = TtlCache::new(100, 0, 64);
        assert_eq!(
            c.get_or_load(&1, || Err::<u32, _>("db down")),
            Err("db down")
        );
        assert_eq!(c.get_or_load(&1, || Ok::<_, ()>(5)), Ok(5));
        // ttl 0: the entry is expired at once
        assert_eq!(c.get_or_load(&1, || Ok::<_, ()>(6)), Ok(6));
        assert!(c.stats().expired >= 1);
        c.sweep();
        assert_eq!(c.stats().size, 0);
    }

    #[test]
    fn a_burst_of_misses_on_one_key_runs_one_load() {
        let c: Arc<TtlCache<u64, u32>> = Arc::new(TtlCache::new(100, 60_000, 64));
        let loads = Arc::new(AtomicU64::new(0));
        let barrier = Arc::new(std::sync::Barrier::new(16));
        let hs: Vec<_> = (0..16)
            .map(|_| {
                let (c, loads, barrier) = (c.clone(), loads.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    c.get_or_load(&3, || {
                        loads.fetch_add(1, SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Ok::<_, ()>(3)
                    })
                })
            })
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap(), Ok(3));
        }
        assert_eq!(loads.load(SeqCst), 1);
    }
}

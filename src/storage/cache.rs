//! A byte-bounded cache of decoded SSTable data blocks, shared by every table of an engine.
//!
//! Reading a block means a positioned read, a CRC check and a structural walk. Tables are
//! immutable, so a block never goes stale, and real workloads read a small set of hot keys
//! far more often than the rest; keeping those blocks parsed in memory turns most repeated
//! reads into a hash lookup.
//!
//! Design:
//! - **Keyed by `(table_id, block_offset)`.** Table ids are never reused while the cache lives,
//!   so a block can never be served for the wrong table, and a dropped table's blocks simply
//!   age out (or are erased eagerly by [`BlockCache::erase_table`]).
//! - **Sharded.** The key space is split by hash over up to 16 shards, each behind its own
//!   mutex held only for a hash lookup or an eviction sweep — never during I/O — so concurrent
//!   readers rarely contend. Small caches use fewer shards so that a shard can still hold a
//!   few blocks.
//! - **CLOCK eviction.** Each entry has a reference bit set by `get`; the clock hand clears set
//!   bits and evicts the first entry whose bit is clear — an approximation of LRU that needs no
//!   list splicing on the (much more frequent) hit path. Entries that a reader currently holds
//!   (`Arc` count > 1) are passed over too while anything else can go, since evicting them would
//!   not free their memory yet.
//! - **Charged in bytes.** Each entry is charged what the caller says it costs (a block's
//!   approximate heap size). Invariant: after `insert` returns, every shard's charge is within
//!   its share of the capacity, hence the total is within the capacity. A block larger than its
//!   shard's share is not cached at all.
//!
//! The cache holds `Arc`s, so a reader keeps using a block even if it is evicted meanwhile;
//! memory held by such readers is not charged to the cache.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::bloom::mix64;
use super::sstable::Block;

/// Most shards a cache is split into.
const MAX_SHARDS: usize = 16;
/// A shard should be able to hold at least this much, or sharding costs more hit rate than it
/// saves in contention.
const MIN_SHARD_BYTES: u64 = 256 * 1024;

/// A cheap hasher for `(u64, u64)` keys, whose parts are already well spread or sequential;
/// SipHash would dominate the cost of a hit.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = mix64(self.0 ^ n, 0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Key = (u64, u64);

struct Slot {
    key: Key,
    block: Arc<Block>,
    charge: u64,
    referenced: bool,
}

/// One independently locked part of the cache.
struct Shard {
    capacity: u64,
    used: u64,
    /// The clock: occupied and free slots in a ring the hand sweeps.
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    map: HashMap<Key, usize, BuildHasherDefault<KeyHasher>>,
    hand: usize,
}

/// Net change to the cache-wide counters caused by one shard operation.
#[derive(Default)]
struct Delta {
    added_bytes: u64,
    removed_bytes: u64,
    added_entries: u64,
    removed_entries: u64,
}

impl Shard {
    fn new(capacity: u64) -> Shard {
        Shard {
            capacity,
            used: 0,
            slots: Vec::new(),
            free: Vec::new(),
            map: HashMap::default(),
            hand: 0,
        }
    }

    fn remove_at(&mut self, i: usize, delta: &mut Delta) {
        if let Some(slot) = self.slots[i].take() {
            self.map.remove(&slot.key);
            self.free.push(i);
            self.used -= slot.charge;
            delta.removed_bytes += slot.charge;
            delta.removed_entries += 1;
        }
    }

    /// Evicts one entry chosen by the clock; false if the shard is empty.
    fn evict_one(&mut self, delta: &mut Delta) -> bool {
        let n = self.slots.len();
        if self.map.is_empty() || n == 0 {
            return false;
        }
        // The first sweep clears every reference bit it passes; by the end of the second every
        // unpinned entry has been considered with its bit clear.
        let mut pinned = None;
        for _ in 0..2 * n {
            let i = self.hand;
            self.hand = (self.hand + 1) % n;
            let Some(slot) = &mut self.slots[i] else {
                continue;
            };
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            if Arc::strong_count(&slot.block) > 1 {
                pinned.get_or_insert(i);
                continue;
            }
            self.remove_at(i, delta);
            return true;
        }
        // Everything is held by readers: evict anyway to keep the memory bound.
        let victim = pinned.or_else(|| self.slots.iter().position(Option::is_some));
        match victim {
            Some(i) => {
                self.remove_at(i, delta);
                true
            }
            None => false,
        }
    }

    fn insert(&mut self, key: Key, block: Arc<Block>, charge: u64, delta: &mut Delta) {
        if charge > self.capacity {
            return;
        }
        if let Some(&i) = self.map.get(&key) {
            // A concurrent miss loaded the same block; keep one copy.
            self.remove_at(i, delta);
        }
        while self.used + charge > self.capacity {
            if !self.evict_one(delta) {
                break;
            }
        }
        let slot = Slot {
            key,
            block,
            charge,
            referenced: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.map.insert(key, i);
        self.used += charge;
        delta.added_bytes += charge;
        delta.added_entries += 1;
    }
}

/// Point-in-time counters of a [`BlockCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Bytes currently charged, never more than `capacity`.
    pub bytes: u64,
    pub capacity: u64,
    pub entries: u64,
}

/// The shared block cache; see the module documentation.
pub struct BlockCache {
    shards: Box<[Mutex<Shard>]>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    bytes: AtomicU64,
    entries: AtomicU64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("shards", &self.shards.len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl BlockCache {
    /// A cache that holds at most `capacity_bytes` of charged blocks. Zero disables caching
    /// (every lookup misses).
    pub fn new(capacity_bytes: usize) -> BlockCache {
        let capacity = capacity_bytes as u64;
        let mut n = MAX_SHARDS;
        while n > 1 && capacity / (n as u64) < MIN_SHARD_BYTES {
            n /= 2;
        }
        // Shares differ by at most one byte and sum to exactly `capacity`.
        let shards = (0..n as u64)
            .map(|i| {
                let share = capacity / n as u64 + u64::from(i < capacity % n as u64);
                Mutex::new(Shard::new(share))
            })
            .collect();
        BlockCache {
            shards,
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: Key) -> &Mutex<Shard> {
        let h = mix64(key.0 ^ 0x243f_6a88_85a3_08d3, key.1 ^ 0x1319_8a2e_0370_7344);
        // High bits: the low bits also pick the HashMap bucket inside the shard.
        let i = ((h >> 32) as usize) % self.shards.len();
        &self.shards[i]
    }

    fn apply(&self, d: Delta) {
        // Added before removed, so the global counters never dip below zero transiently.
        if d.added_bytes > 0 {
            self.bytes.fetch_add(d.added_bytes, Ordering::Relaxed);
        }
        if d.added_entries > 0 {
            self.entries.fetch_add(d.added_entries, Ordering::Relaxed);
        }
        if d.removed_bytes > 0 {
            self.bytes.fetch_sub(d.removed_bytes, Ordering::Relaxed);
        }
        if d.removed_entries > 0 {
            self.entries.fetch_sub(d.removed_entries, Ordering::Relaxed);
        }
    }

    /// The cached block at `offset` of table `table_id`, marking it recently used.
    pub fn get(&self, table_id: u64, offset: u64) -> Option<Arc<Block>> {
        let key = (table_id, offset);
        let found = {
            let mut shard = self.shard(key).lock();
            let shard = &mut *shard;
            shard.map.get(&key).copied().and_then(|i| {
                let slot = shard.slots[i].as_mut()?;
                slot.referenced = true;
                Some(Arc::clone(&slot.block))
            })
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches `block` under `(table_id, offset)`, charged `charge` bytes, evicting as needed.
    /// Replaces an existing entry for the key. A block whose charge exceeds its shard's share
    /// of the capacity is not cached.
    pub fn insert(&self, table_id: u64, offset: u64, block: Arc<Block>, charge: usize) {
        let key = (table_id, offset);
        let mut delta = Delta::default();
        {
            let mut shard = self.shard(key).lock();
            shard.insert(key, block, charge as u64, &mut delta);
            // Applied under the shard lock so this shard's contribution to the totals is
            // never ahead of or behind its real state by more than this one operation.
            self.apply(delta);
        }
    }

    /// Drops every cached block of `table_id`. Best effort: a concurrent reader that missed
    /// before the erase may still insert a block afterwards; it then ages out normally.
    pub fn erase_table(&self, table_id: u64) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let mut delta = Delta::default();
            let victims: Vec<usize> = shard
                .map
                .iter()
                .filter(|((t, _), _)| *t == table_id)
                .map(|(_, &i)| i)
                .collect();
            for i in victims {
                shard.remove_at(i, &mut delta);
            }
            self.apply(delta);
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            capacity: self.capacity,
            entries: self.entries.load(Ordering::Relaxed),
        }
    }

    /// Exact charged bytes, summed under the shard locks (tests check the invariant with it).
    #[cfg(test)]
    fn charged_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().used).sum()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn block(tag: u8) -> Arc<Block> {
        Arc::new(Block::for_test(tag))
    }

    fn tag(b: &Block) -> u8 {
        b.test_tag()
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let c = BlockCache::new(10_000);
        assert!(c.get(1, 0).is_none());
        c.insert(1, 0, block(7), 100);
        assert_eq!(tag(&c.get(1, 0).unwrap()), 7);
        assert_eq!(tag(&c.get(1, 0).unwrap()), 7);
        assert!(c.get(1, 4096).is_none());
        assert!(c.get(2, 0).is_none(), "same offset, other table");
        let s = c.stats();
        assert_eq!(
            s,
            CacheStats {
                hits: 2,
                misses: 3,
                bytes: 100,
                capacity: 10_000,
                entries: 1
            }
        );
    }

    #[test]
    fn reinsert_replaces_and_recharges() {
        let c = BlockCache::new(1000);
        c.insert(1, 0, block(1), 300);
        c.insert(1, 0, block(2), 500);
        assert_eq!(tag(&c.get(1, 0).unwrap()), 2);
        assert_eq!((c.stats().bytes, c.stats().entries), (500, 1));
    }

    #[test]
    fn oversized_blocks_are_not_cached() {
        let c = BlockCache::new(1000);
        c.insert(1, 0, block(1), 1001);
        assert!(c.get(1, 0).is_none());
        assert_eq!(c.stats().bytes, 0);
        let off = BlockCache::new(0);
        off.insert(1, 0, block(1), 1);
        assert!(off.get(1, 0).is_none());
    }

    #[test]
    fn eviction_prefers_unreferenced_entries() {
        let c = BlockCache::new(1000); // one shard
        assert_eq!(c.shards.len(), 1);
        for i in 0..3 {
            c.insert(1, i, block(i as u8), 300);
        }
        // Touch block 0 (reference bit) without holding it.
        drop(c.get(1, 0));
        c.insert(1, 3, block(3), 300);
        assert!(
            c.get(1, 1).is_none(),
            "the untouched oldest entry goes first"
        );
        assert!(c.get(1, 0).is_some());

        // An entry held by a reader is passed over while an unheld one can go.
        let c = BlockCache::new(1000);
        for i in 0..3 {
            c.insert(1, i, block(i as u8), 300);
        }
        let held = c.get(1, 0).unwrap();
        c.insert(1, 3, block(3), 300); // clears 0's bit, evicts 1
        c.insert(1, 4, block(4), 300); // 0 is held: evicts 2
        assert!(c.get(1, 0).is_some());
        assert!(c.get(1, 1).is_none() && c.get(1, 2).is_none());
        drop(held);

        // When everything is held, the bound still wins.
        let c = BlockCache::new(1000);
        let held: Vec<_> = (0..3)
            .map(|i| {
                c.insert(1, i, block(i as u8), 300);
                c.get(1, i).unwrap()
            })
            .collect();
        c.insert(1, 3, block(3), 300);
        assert!(c.stats().bytes <= 1000);
        assert_eq!(c.stats().entries, 3);
        drop(held);
    }

    #[test]
    fn erase_table_drops_only_that_table() {
        let c = BlockCache::new(10 << 20);
        for t in 1..=3u64 {
            for off in 0..50u64 {
                c.insert(t, off * 4096, block(t as u8), 1000);
            }
        }
        c.erase_table(2);
        assert_eq!(c.stats().entries, 100);
        assert_eq!(c.stats().bytes, 100_000);
        assert!(c.get(2, 0).is_none());
        assert!(c.get(1, 0).is_some() && c.get(3, 49 * 4096).is_some());
    }

    #[test]
    fn small_caches_use_fewer_shards_and_shares_sum_to_capacity() {
        for cap in [0usize, 1, 1000, 300_000, 1 << 20, 3 << 20, (32 << 20) + 7] {
            let c = BlockCache::new(cap);
            let total: u64 = c.shards.iter().map(|s| s.lock().capacity).sum();
            assert_eq!(total, cap as u64);
            assert!(c.shards.len().is_power_of_two() && c.shards.len() <= MAX_SHARDS);
        }
        assert_eq!(BlockCache::new(32 << 20).shards.len(), 16);
    }

    #[test]
    fn concurrent_readers_and_writers() {
        let c = Arc::new(BlockCache::new(2 << 20));
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                    for _ in 0..20_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let (table, off) = (x % 4, (x >> 8) % 512);
                        // A block's tag is derived from its key, so a hit must match it.
                        let want = (table * 31 + off) as u8;
                        match c.get(table, off) {
                            Some(b) => assert_eq!(tag(&b), want),
                            None => c.insert(table, off, block(want), 1000 + (x % 9000) as usize),
                        }
                        if x % 5000 == 0 {
                            c.erase_table(table);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = c.stats();
        assert!(s.bytes <= s.capacity);
        assert_eq!(s.bytes, c.charged_bytes());
        assert_eq!(s.hits + s.misses, 8 * 20_000);
        assert!(s.hits > 0);
    }

    proptest! {
        #[test]
        fn capacity_is_respected_under_random_inserts(
            capacity in 0usize..3_000_000,
            ops in prop::collection::vec((0u64..4, 0u64..64, 0usize..400_000, any::<bool>()), 1..200),
        ) {
            let c = BlockCache::new(capacity);
            let mut held = Vec::new();
            for (table, off, charge, hold) in ops {
                c.insert(table, off, block(off as u8), charge);
                let s = c.stats();
                prop_assert!(s.bytes <= s.capacity, "{s:?}");
                prop_assert_eq!(s.bytes, c.charged_bytes());
                if let Some(b) = c.get(table, off) {
                    prop_assert_eq!(tag(&b), off as u8);
                    if hold {
                        held.push(b);
                    }
                }
            }
        }
    }
}

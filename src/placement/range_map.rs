//! Range placement: ordered split points on a table's shard key.
//!
//! ```text
//!   split points:        s1            s2
//!   ranges:      (-inf, s1) │ [s1, s2) │ [s2, +inf)
//!   owners:        shard 0  │ shard 2  │ shard 1
//! ```
//!
//! Keys are memcomparable encodings of the shard-key columns (`types::keycode`), so byte order
//! is SQL order and a bound on the first shard-key column is a bound on encoded keys: a range
//! predicate touches only the ranges it overlaps.
//!
//! Invariants: split points are strictly increasing; there is always one more owner than split
//! points (range `i` starts at split `i-1`, the first at -inf, and ends before split `i`).

use serde::{Deserialize, Serialize};
use std::ops::Bound;

/// One range: start (None: -inf), end (None: +inf), owner.
pub type RangeEntry<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, usize);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeMap {
    splits: Vec<Vec<u8>>,
    owners: Vec<usize>,
}

impl RangeMap {
    /// One range covering every key.
    pub fn single(owner: usize) -> RangeMap {
        RangeMap {
            splits: Vec::new(),
            owners: vec![owner],
        }
    }

    pub fn splits(&self) -> &[Vec<u8>] {
        &self.splits
    }

    pub fn owners(&self) -> &[usize] {
        &self.owners
    }

    /// The index of the range holding `key`.
    pub fn range_of(&self, key: &[u8]) -> usize {
        self.splits.partition_point(|s| s.as_slice() <= key)
    }

    pub fn owner(&self, key: &[u8]) -> usize {
        self.owners[self.range_of(key)]
    }

    /// The ranges `(start, end)` with their owners, in key order.
    pub fn ranges(&self) -> Vec<RangeEntry<'_>> {
        (0..self.owners.len())
            .map(|i| {
                let start = i.checked_sub(1).map(|j| self.splits[j].as_slice());
                let end = self.splits.get(i).map(Vec::as_slice);
                (start, end, self.owners[i])
            })
            .collect()
    }

    /// Splits the range holding `at` there; the part from `at` on goes to `owner`. Returns
    /// false (and changes nothing) if `at` already is a split point.
    pub fn split(&mut self, at: Vec<u8>, owner: usize) -> bool {
        let i = self.splits.partition_point(|s| *s < at);
        if self.splits.get(i) == Some(&at) {
            return false;
        }
        self.splits.insert(i, at);
        self.owners.insert(i + 1, owner);
        true
    }

    /// Gives range `i` to `owner`.
    pub fn assign(&mut self, i: usize, owner: usize) {
        self.owners[i] = owner;
    }

    /// Owners of the ranges overlapping `[lower, upper]` (bounds on encoded keys), deduplicated
    /// and sorted.
    pub fn owners_between(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Vec<usize> {
        let first = match lower {
            Bound::Unbounded => 0,
            Bound::Included(k) | Bound::Excluded(k) => self.range_of(k),
        };
        let last = match upper {
            Bound::Unbounded => self.owners.len() - 1,
            // Ranges starting at or before the bound overlap it (a range starting exactly at an
            // excluded bound does not).
            Bound::Included(k) => self.range_of(k),
            Bound::Excluded(k) => self.splits.partition_point(|s| s.as_slice() < k),
        };
        let mut out: Vec<usize> = if first <= last {
            self.owners[first..=last].to_vec()
        } else {
            Vec::new()
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every shard owning a range of this table.
    pub fn all_owners(&self) -> Vec<usize> {
        let mut out = self.owners.clone();
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(splits: &[u8], owners: &[usize]) -> RangeMap {
        RangeMap {
            splits: splits.iter().map(|s| vec![*s]).collect(),
            owners: owners.to_vec(),
        }
    }

    #[test]
    fn lookup_and_bounds() {
        let m = map(&[10, 20], &[0, 2, 1]);
        assert_eq!(m.owner(&[5]), 0);
        assert_eq!(m.owner(&[10]), 2);
        assert_eq!(m.owner(&[19, 255]), 2);
        assert_eq!(m.owner(&[20]), 1);
        assert_eq!(
            m.owners_between(Bound::Included(&[12]), Bound::Unbounded),
            vec![1, 2]
        );
        assert_eq!(
            m.owners_between(Bound::Unbounded, Bound::Excluded(&[10])),
            vec![0]
        );
        assert_eq!(
            m.owners_between(Bound::Unbounded, Bound::Included(&[10])),
            vec![0, 2]
        );
        assert_eq!(
            m.owners_between(Bound::Included(&[25]), Bound::Included(&[3])),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn split_keeps_invariants() {
        let mut m = RangeMap::single(0);
        assert!(m.split(vec![20], 1));
        assert!(m.split(vec![10], 2));
        assert!(!m.split(vec![10], 3));
        assert_eq!(m, map(&[10, 20], &[0, 2, 1]));
    }

    proptest! {
        /// Pruning never drops the owner of a key inside the bounds.
        #[test]
        fn owners_between_is_a_superset(
            splits in proptest::collection::btree_set(0u8..50, 0..6),
            lo in 0u8..50, hi in 0u8..50, key in 0u8..50, inc in any::<bool>(),
        ) {
            let splits: Vec<u8> = splits.into_iter().collect();
            let owners: Vec<usize> = (0..=splits.len()).collect();
            let m = map(&splits, &owners);
            let upper = if inc { Bound::Included(&[hi][..]) } else { Bound::Excluded(&[hi][..]) };
            let within = key >= lo && (if inc { key <= hi } else { key < hi });
            if within {
                prop_assert!(m.owners_between(Bound::Included(&[lo]), upper).contains(&m.owner(&[key])));
            }
        }
    }
}

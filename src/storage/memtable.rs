//! The memtable: recent versions in a lock-free sorted map.
//!
//! Entries live in a `crossbeam_skiplist::SkipMap` keyed by `(user key, ts, seq)` ordered
//! key ascending, ts descending, seq descending. `seq` is the engine's private write sequence
//! number: every batch (or committed prepare) gets the next one under the writer lock, and the
//! engine publishes `visible_seq` only after all of a batch's entries are inserted. Readers
//! take `visible_seq` as their snapshot and ignore entries with a larger `seq`, which is what
//! keeps a half-inserted batch invisible without blocking readers — and it keeps working when
//! commit timestamps arrive out of order (2PC commits can carry an older `commit_ts` than a
//! batch applied after their prepare).
//!
//! `seq` is also why the same `(key, ts)` may appear several times here: a later write of an
//! identical version is a new entry with a larger `seq` instead of an in-place overwrite that
//! a concurrent reader might see half-done. Readers take, per `(key, ts)`, the largest `seq`
//! within their snapshot; a flush writes only that one, so `seq` never reaches disk.
//!
//! Entries are never removed: a memtable is frozen and then dropped whole once flushed, so
//! iterators can resume from a remembered key without fearing concurrent deletion.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use crossbeam_skiplist::SkipMap;

use super::Result;
use super::iter::{Direction, Entry, EntryIter, KeyRange};

/// Per-entry bookkeeping cost added to key and value sizes (skiplist node, tower, vectors).
const ENTRY_OVERHEAD: usize = 64;
/// How many raw entries an iterator copies out per skiplist descent.
const FILL_BATCH: usize = 64;

/// One version: the user key and the value share a single allocation (`data` = key bytes then
/// value bytes), because a write-heavy workload spends much of its time in the allocator.
#[derive(Debug, Clone)]
pub(crate) struct MemKey {
    data: Box<[u8]>,
    key_len: usize,
    has_value: bool,
    ts: u64,
    seq: u64,
}

impl MemKey {
    /// A search key carrying no value.
    fn probe(key: &[u8], ts: u64, seq: u64) -> MemKey {
        MemKey {
            data: key.into(),
            key_len: key.len(),
            has_value: false,
            ts,
            seq,
        }
    }

    fn key(&self) -> &[u8] {
        &self.data[..self.key_len]
    }

    fn value(&self) -> Option<&[u8]> {
        self.has_value.then(|| &self.data[self.key_len..])
    }
}

/// Equality and order look at `(key, ts, seq)` only; the value is payload.
impl PartialEq for MemKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for MemKey {}

impl Ord for MemKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key()
            .cmp(other.key())
            .then_with(|| other.ts.cmp(&self.ts))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

pub(crate) struct Memtable {
    map: SkipMap<MemKey, ()>,
    bytes: AtomicUsize,
}

impl Memtable {
    pub(crate) fn new() -> Memtable {
        Memtable {
            map: SkipMap::new(),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Inserts one version. Only the engine's writer calls this, with `seq` above the
    /// published `visible_seq`, so no reader can see the entry until the batch is published.
    pub(crate) fn insert(&self, key: &[u8], ts: u64, seq: u64, value: Option<&[u8]>) {
        let size = key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD;
        let mut data = Vec::with_capacity(key.len() + value.map_or(0, <[u8]>::len));
        data.extend_from_slice(key);
        if let Some(v) = value {
            data.extend_from_slice(v);
        }
        let entry = MemKey {
            data: data.into_boxed_slice(),
            key_len: key.len(),
            has_value: value.is_some(),
            ts,
            seq,
        };
        self.map.insert(entry, ());
        self.bytes.fetch_add(size, AtomicOrdering::Relaxed);
    }

    pub(crate) fn approx_bytes(&self) -> usize {
        self.bytes.load(AtomicOrdering::Relaxed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The newest version of `key` with `ts <= read_ts` within snapshot `snap_seq`, as
    /// `(ts, value)`.
    pub(crate) fn get(
        &self,
        key: &[u8],
        read_ts: u64,
        snap_seq: u64,
    ) -> Option<(u64, Option<Vec<u8>>)> {
        let probe = MemKey::probe(key, read_ts, u64::MAX);
        let mut cur = self.map.lower_bound(Bound::Included(&probe));
        while let Some(e) = cur {
            let k = e.key();
            if k.key() != key {
                break;
            }
            if k.seq <= snap_seq {
                return Some((k.ts, k.value().map(<[u8]>::to_vec)));
            }
            cur = e.next();
        }
        None
    }

    /// About how many live user keys of `[start, end)` the memtable holds: keys whose newest
    /// version is not a tombstone, counted up to `cap` entries and extrapolated past it by the
    /// bytes counted (the rest of the memtable is assumed to be in the range: an overestimate).
    pub(crate) fn estimate_keys(&self, start: &[u8], end: &[u8], cap: usize) -> u64 {
        let lo = MemKey::probe(start, u64::MAX, u64::MAX);
        let hi = MemKey::probe(end, u64::MAX, u64::MAX);
        let (mut live, mut entries, mut bytes) = (0u64, 0usize, 0usize);
        let mut last: Option<Vec<u8>> = None;
        for e in self.map.range(lo..hi) {
            let k = e.key();
            entries += 1;
            bytes += k.data.len() + ENTRY_OVERHEAD;
            // Versions of a key are adjacent, newest first: the first one decides.
            if last.as_deref() != Some(k.key()) {
                if k.has_value {
                    live += 1;
                }
                let buf = last.get_or_insert_with(Vec::new);
                buf.clear();
                buf.extend_from_slice(k.key());
            }
            if entries >= cap {
                let total = self.approx_bytes().max(bytes);
                return (live as u128 * total as u128 / bytes.max(1) as u128) as u64;
            }
        }
        live
    }

    /// Whether any version of `key` older than `ts` exists, regardless of snapshot. Compaction
    /// asks this before dropping a tombstone that may still shadow memtable data.
    pub(crate) fn has_version_below(&self, key: &[u8], ts: u64) -> bool {
        let probe = MemKey::probe(key, ts, 0);
        self.map
            .lower_bound(Bound::Excluded(&probe))
            .is_some_and(|e| e.key().key() == key)
    }

    /// Calls `f` on every version in internal order, one call per `(key, ts)` (the newest
    /// write of a rewritten version), borrowing instead of copying. Meant for flushing an
    /// immutable memtable, where every entry is published and no snapshot applies.
    pub(crate) fn for_each_version(
        &self,
        mut f: impl FnMut(&[u8], u64, Option<&[u8]>) -> super::Result<()>,
    ) -> super::Result<()> {
        // The previous version's key, in a buffer reused across entries (no per-entry copy).
        let mut last_key: Vec<u8> = Vec::new();
        let mut last_ts: Option<u64> = None;
        for e in self.map.iter() {
            let k = e.key();
            if last_ts == Some(k.ts) && last_key == k.key() {
                continue;
            }
            f(k.key(), k.ts, k.value())?;
            last_key.clear();
            last_key.extend_from_slice(k.key());
            last_ts = Some(k.ts);
        }
        Ok(())
    }

    /// An iterator over the versions in `range` visible in snapshot `snap_seq`, one entry per
    /// `(key, ts)`.
    pub(crate) fn iter(
        self: &Arc<Self>,
        range: KeyRange,
        dir: Direction,
        snap_seq: u64,
    ) -> MemIter {
        MemIter {
            mem: Arc::clone(self),
            range,
            dir,
            snap_seq,
            resume: None,
            buf: VecDeque::new(),
            last: None,
            pending: None,
            done: false,
        }
    }
}

/// A snapshot iterator that owns an `Arc` of its memtable. Skiplist entries borrow the map, so
/// instead of holding one across calls it copies out small batches and resumes after the last
/// raw key it looked at.
pub(crate) struct MemIter {
    mem: Arc<Memtable>,
    range: KeyRange,
    dir: Direction,
    snap_seq: u64,
    /// The last raw skiplist key examined; the next fill starts strictly after it.
    resume: Option<MemKey>,
    buf: VecDeque<Entry>,
    /// Forward: the `(key, ts)` last emitted, whose older-`seq` duplicates must be skipped.
    last: Option<(Vec<u8>, u64)>,
    /// Reverse: duplicates arrive lowest `seq` first, so the candidate is held back until the
    /// `(key, ts)` changes.
    pending: Option<Entry>,
    done: bool,
}

impl MemIter {
    fn fill(&mut self) {
        let map = &self.mem.map;
        let mut cur = match self.dir {
            Direction::Forward => {
                let bound = match (&self.resume, &self.range.start) {
                    (Some(k), _) => Bound::Excluded(k.clone()),
                    (None, Bound::Included(k)) => {
                        Bound::Included(MemKey::probe(k, u64::MAX, u64::MAX))
                    }
                    (None, Bound::Excluded(k)) => Bound::Excluded(MemKey::probe(k, 0, 0)),
                    (None, Bound::Unbounded) => Bound::Unbounded,
                };
                map.lower_bound(bound.as_ref())
            }
            Direction::Reverse => {
                let bound = match (&self.resume, &self.range.end) {
                    (Some(k), _) => Bound::Excluded(k.clone()),
                    (None, Bound::Included(k)) => Bound::Included(MemKey::probe(k, 0, 0)),
                    (None, Bound::Excluded(k)) => {
                        Bound::Excluded(MemKey::probe(k, u64::MAX, u64::MAX))
                    }
                    (None, Bound::Unbounded) => Bound::Unbounded,
                };
                map.upper_bound(bound.as_ref())
            }
        };

        let mut examined = 0;
        loop {
            let Some(e) = cur else {
                self.done = true;
                break;
            };
            let k = e.key();
            let in_range = match self.dir {
                Direction::Forward => self.range.before_end(k.key()),
                Direction::Reverse => self.range.after_start(k.key()),
            };
            if !in_range {
                self.done = true;
                break;
            }
            if k.seq <= self.snap_seq {
                match self.dir {
                    Direction::Forward => {
                        let dup = self
                            .last
                            .as_ref()
                            .is_some_and(|(lk, lt)| *lt == k.ts && lk.as_slice() == k.key());
                        if !dup {
                            self.last = Some((k.key().to_vec(), k.ts));
                            self.buf.push_back(Entry {
                                key: k.key().to_vec(),
                                ts: k.ts,
                                value: k.value().map(<[u8]>::to_vec),
                            });
                        }
                    }
                    Direction::Reverse => {
                        let entry = Entry {
                            key: k.key().to_vec(),
                            ts: k.ts,
                            value: k.value().map(<[u8]>::to_vec),
                        };
                        let same = self
                            .pending
                            .as_ref()
                            .is_some_and(|p| p.ts == k.ts && p.key.as_slice() == k.key());
                        if let Some(prev) = self.pending.replace(entry)
                            && !same
                        {
                            self.buf.push_back(prev);
                        }
                    }
                }
            }
            examined += 1;
            if examined == FILL_BATCH {
                self.resume = Some(k.clone());
                return;
            }
            cur = match self.dir {
                Direction::Forward => e.next(),
                Direction::Reverse => e.prev(),
            };
        }
        if let Some(p) = self.pending.take() {
            self.buf.push_back(p);
        }
    }
}

impl EntryIter for MemIter {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        loop {
            if let Some(e) = self.buf.pop_front() {
                return Ok(Some(e));
            }
            if self.done {
                return Ok(None);
            }
            self.fill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(it: &mut MemIter) -> Vec<(Vec<u8>, u64, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        while let Some(e) = it.next_entry().unwrap() {
            out.push((e.key, e.ts, e.value));
        }
        out
    }

    #[test]
    fn snapshot_hides_unpublished_and_keeps_newest_seq() {
        let m = Arc::new(Memtable::new());
        m.insert(b"a", 5, 1, Some(b"first"));
        m.insert(b"a", 5, 3, Some(b"rewrite"));
        m.insert(b"a", 2, 2, None);
        m.insert(b"b", 9, 4, Some(b"b9"));

        assert_eq!(m.get(b"a", 10, 1), Some((5, Some(b"first".to_vec()))));
        assert_eq!(m.get(b"a", 10, 3), Some((5, Some(b"rewrite".to_vec()))));
        assert_eq!(m.get(b"a", 4, 3), Some((2, None)));
        assert_eq!(m.get(b"a", 1, 3), None);
        assert_eq!(m.get(b"b", 10, 3), None);
        assert_eq!(m.get(b"b", 10, 4), Some((9, Some(b"b9".to_vec()))));
        assert!(m.has_version_below(b"a", 5));
        assert!(!m.has_version_below(b"a", 2));

        let fwd = collect(&mut m.iter(KeyRange::all(), Direction::Forward, 3));
        assert_eq!(
            fwd,
            vec![
                (b"a".to_vec(), 5, Some(b"rewrite".to_vec())),
                (b"a".to_vec(), 2, None),
            ]
        );
        let mut rev = collect(&mut m.iter(KeyRange::all(), Direction::Reverse, 4));
        rev.reverse();
        assert_eq!(rev[0], (b"a".to_vec(), 5, Some(b"rewrite".to_vec())));
        assert_eq!(rev.len(), 3);
    }

    #[test]
    fn iterators_respect_bounds_across_fill_batches() {
        let m = Arc::new(Memtable::new());
        let mut seq = 0;
        for k in 0u32..200 {
            for ts in [1u64, 3] {
                seq += 1;
                m.insert(&k.to_be_bytes(), ts, seq, Some(&[ts as u8]));
            }
        }
        let lo = 10u32.to_be_bytes();
        let hi = 150u32.to_be_bytes();
        let range = KeyRange::new(Bound::Excluded(&lo[..]), Bound::Included(&hi[..]));
        let fwd = collect(&mut m.iter(range.clone(), Direction::Forward, u64::MAX));
        assert_eq!(fwd.len(), 140 * 2);
        assert_eq!(fwd[0], (11u32.to_be_bytes().to_vec(), 3, Some(vec![3])));
        assert_eq!(fwd.last().unwrap().0, hi.to_vec());
        let mut rev = collect(&mut m.iter(range, Direction::Reverse, u64::MAX));
        rev.reverse();
        assert_eq!(rev, fwd);
    }
}

//! Sorted version streams, their k-way merge, and MVCC visibility.
//!
//! Every source (memtable snapshot, SSTable) exposes an [`EntryIter`]: a stream of versions in
//! internal order (forward: user key ascending, then timestamp descending) or exactly its
//! reverse, already restricted to a user-key [`KeyRange`]. Within one source each
//! `(key, ts)` appears at most once.
//!
//! [`MergeIter`] combines any number of sources with a binary heap, holding one entry per source
//! at a time, so a scan costs memory proportional to the number of sources, not their size. Two
//! sources may both hold the same `(key, ts)` (e.g. a rewritten version); sources are ranked
//! newest first and the merge yields only the newest source's copy.
//!
//! [`collect_visible`] turns the merged version stream into what a reader at `read_ts` sees:
//! per user key the newest version with `ts <= read_ts`, tombstones hiding the key. Forward, the
//! first qualifying version of each key is the answer; in reverse a key's versions arrive oldest
//! first, so the last qualifying one is.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Bound;

use super::Result;

/// One stored version. `value == None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: Vec<u8>,
    pub ts: u64,
    pub value: Option<Vec<u8>>,
}

/// Internal order: key ascending, then version descending (newest first).
pub(crate) fn cmp_internal(a_key: &[u8], a_ts: u64, b_key: &[u8], b_ts: u64) -> Ordering {
    a_key.cmp(b_key).then_with(|| b_ts.cmp(&a_ts))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Forward,
    Reverse,
}

/// A user-key range with owned bounds, shared by all sources of one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    pub(crate) fn new(start: Bound<&[u8]>, end: Bound<&[u8]>) -> KeyRange {
        KeyRange {
            start: start.map(<[u8]>::to_vec),
            end: end.map(<[u8]>::to_vec),
        }
    }

    pub(crate) fn all() -> KeyRange {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// `key` is not beyond the end bound.
    pub(crate) fn before_end(&self, key: &[u8]) -> bool {
        match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        }
    }

    /// `key` is not before the start bound.
    pub(crate) fn after_start(&self, key: &[u8]) -> bool {
        match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.after_start(key) && self.before_end(key)
    }

    /// True when no key can satisfy both bounds, so no source needs to be touched.
    pub(crate) fn is_empty(&self) -> bool {
        match (&self.start, &self.end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e))
            | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
            _ => false,
        }
    }

    /// Whether the range can intersect `[min, max]` (inclusive user keys). May answer true for
    /// a degenerate empty range; it is only used to skip sources that cannot contribute.
    pub(crate) fn overlaps(&self, min: &[u8], max: &[u8]) -> bool {
        self.after_start(max) && self.before_end(min)
    }
}

/// A stream of versions in one direction, restricted to a key range.
pub(crate) trait EntryIter: Send {
    fn next_entry(&mut self) -> Result<Option<Entry>>;
}

struct HeapItem {
    entry: Entry,
    /// Rank of the source: 0 is the newest.
    src: usize,
    dir: Direction,
}

impl HeapItem {
    /// The order in which items should leave the heap: `Less` leaves first.
    fn emit_order(&self, other: &HeapItem) -> Ordering {
        let by_key = cmp_internal(
            &self.entry.key,
            self.entry.ts,
            &other.entry.key,
            other.entry.ts,
        );
        let by_key = match self.dir {
            Direction::Forward => by_key,
            Direction::Reverse => by_key.reverse(),
        };
        by_key.then_with(|| self.src.cmp(&other.src))
    }
}

impl PartialEq for HeapItem {
    fn eq(&self, other: &Self) -> bool {
        self.emit_order(other) == Ordering::Equal
    }
}
impl Eq for HeapItem {}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapItem {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap pops the greatest item; we want the first in emit order.
        other.emit_order(self)
    }
}

/// K-way merge of sources ranked newest first; duplicates of a `(key, ts)` resolve to the
/// newest source.
pub(crate) struct MergeIter {
    dir: Direction,
    sources: Vec<Box<dyn EntryIter>>,
    heap: BinaryHeap<HeapItem>,
}

impl MergeIter {
    /// `sources[0]` is the newest source. Every source must iterate in direction `dir`.
    pub(crate) fn new(dir: Direction, mut sources: Vec<Box<dyn EntryIter>>) -> Result<MergeIter> {
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (src, s) in sources.iter_mut().enumerate() {
            if let Some(entry) = s.next_entry()? {
                heap.push(HeapItem { entry, src, dir });
            }
        }
        Ok(MergeIter { dir, sources, heap })
    }

    fn refill(&mut self, src: usize) -> Result<()> {
        if let Some(entry) = self.sources[src].next_entry()? {
            self.heap.push(HeapItem {
                entry,
                src,
                dir: self.dir,
            });
        }
        Ok(())
    }
}

impl EntryIter for MergeIter {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        let Some(top) = self.heap.pop() else {
            return Ok(None);
        };
        self.refill(top.src)?;
        // Older sources' copies of the same version sort right after it; drop them.
        while let Some(dup) = self.heap.peek() {
            if dup.entry.ts != top.entry.ts || dup.entry.key != top.entry.key {
                break;
            }
            let dup = self.heap.pop().expect("peeked");
            self.refill(dup.src)?;
        }
        Ok(Some(top.entry))
    }
}

/// Resolves a merged version stream (in `dir`) into at most `limit` live `(key, value)` pairs
/// as seen at `read_ts`.
pub(crate) fn collect_visible(
    iter: &mut dyn EntryIter,
    dir: Direction,
    read_ts: u64,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    match dir {
        Direction::Forward => {
            // The key whose answer is already decided; its older versions are skipped. When
            // the answer was a value, the key is the last one pushed, so it is not copied.
            enum Decided {
                Nothing,
                LastPushed,
                Deleted(Vec<u8>),
            }
            let mut decided = Decided::Nothing;
            while let Some(e) = iter.next_entry()? {
                let skip = e.ts > read_ts
                    || match &decided {
                        Decided::Nothing => false,
                        Decided::LastPushed => out.last().is_some_and(|(k, _)| *k == e.key),
                        Decided::Deleted(k) => *k == e.key,
                    };
                if skip {
                    continue;
                }
                match e.value {
                    Some(v) => {
                        out.push((e.key, v));
                        if out.len() == limit {
                            break;
                        }
                        decided = Decided::LastPushed;
                    }
                    None => decided = Decided::Deleted(e.key),
                }
            }
        }
        Direction::Reverse => {
            // Versions of a key arrive oldest first: remember the newest qualifying one until
            // the key changes.
            let mut current: Option<Vec<u8>> = None;
            let mut candidate: Option<Option<Vec<u8>>> = None;
            loop {
                let next = iter.next_entry()?;
                let key_changes = match &next {
                    Some(e) => current.as_deref() != Some(e.key.as_slice()),
                    None => true,
                };
                if key_changes {
                    if let (Some(k), Some(Some(v))) = (current.take(), candidate.take()) {
                        out.push((k, v));
                        if out.len() == limit {
                            break;
                        }
                    }
                    candidate = None;
                }
                let Some(e) = next else { break };
                if key_changes {
                    current = Some(e.key);
                }
                if e.ts <= read_ts {
                    candidate = Some(e.value);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A source over a pre-sorted vector, for exercising the merge in isolation.
    pub(crate) struct VecIter(pub std::vec::IntoIter<Entry>);

    impl EntryIter for VecIter {
        fn next_entry(&mut self) -> Result<Option<Entry>> {
            Ok(self.0.next())
        }
    }

    fn e(key: &str, ts: u64, value: Option<&str>) -> Entry {
        Entry {
            key: key.as_bytes().to_vec(),
            ts,
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    fn sources(dir: Direction) -> Vec<Box<dyn EntryIter>> {
        let mut newer = vec![e("a", 5, Some("a5-new")), e("c", 3, None)];
        let mut older = vec![
            e("a", 5, Some("a5-old")),
            e("a", 2, Some("a2")),
            e("b", 4, Some("b4")),
            e("c", 1, Some("c1")),
        ];
        if dir == Direction::Reverse {
            newer.reverse();
            older.reverse();
        }
        vec![
            Box::new(VecIter(newer.into_iter())),
            Box::new(VecIter(older.into_iter())),
        ]
    }

    #[test]
    fn merge_orders_and_dedups_newest_source() {
        let mut m = MergeIter::new(Direction::Forward, sources(Direction::Forward)).unwrap();
        let mut got = Vec::new();
        while let Some(x) = m.next_entry().unwrap() {
            got.push(x);
        }
        assert_eq!(
            got,
            vec![
                e("a", 5, Some("a5-new")),
                e("a", 2, Some("a2")),
                e("b", 4, Some("b4")),
                e("c", 3, None),
                e("c", 1, Some("c1")),
            ]
        );
        let mut m = MergeIter::new(Direction::Reverse, sources(Direction::Reverse)).unwrap();
        let mut rev = Vec::new();
        while let Some(x) = m.next_entry().unwrap() {
            rev.push(x);
        }
        got.reverse();
        assert_eq!(rev, got);
    }

    #[test]
    fn visibility_in_both_directions() {
        let kv = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        for (read_ts, want) in [
            (0, vec![]),
            (1, vec![kv("c", "c1")]),
            (2, vec![kv("a", "a2"), kv("c", "c1")]),
            (4, vec![kv("a", "a2"), kv("b", "b4")]),
            (9, vec![kv("a", "a5-new"), kv("b", "b4")]),
        ] {
            let mut m = MergeIter::new(Direction::Forward, sources(Direction::Forward)).unwrap();
            assert_eq!(
                collect_visible(&mut m, Direction::Forward, read_ts, usize::MAX).unwrap(),
                want
            );
            let mut m = MergeIter::new(Direction::Reverse, sources(Direction::Reverse)).unwrap();
            let mut rev = want.clone();
            rev.reverse();
            assert_eq!(
                collect_visible(&mut m, Direction::Reverse, read_ts, usize::MAX).unwrap(),
                rev
            );
            let mut m = MergeIter::new(Direction::Forward, sources(Direction::Forward)).unwrap();
            assert_eq!(
                collect_visible(&mut m, Direction::Forward, read_ts, 1).unwrap(),
                want.iter().take(1).cloned().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn key_range_predicates() {
        let r = KeyRange::new(Bound::Excluded(b"b"), Bound::Included(b"d"));
        assert!(!r.contains(b"b"));
        assert!(r.contains(b"c"));
        assert!(r.contains(b"d"));
        assert!(!r.contains(b"e"));
        assert!(r.overlaps(b"a", b"c"));
        assert!(!r.overlaps(b"a", b"b"));
        assert!(!r.overlaps(b"e", b"f"));
        assert!(r.overlaps(b"a", b"z"));
        assert!(KeyRange::new(Bound::Included(b"b"), Bound::Excluded(b"b")).is_empty());
        assert!(!KeyRange::new(Bound::Included(b"b"), Bound::Included(b"b")).is_empty());
    }
}

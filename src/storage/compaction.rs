//! Version garbage collection applied while tables are merged.
//!
//! Compaction merges tables into one and, given a `gc_watermark`, drops versions no reader can
//! need any more. The caller promises two things about the watermark: no reader will use a
//! `read_ts` below it, and no transaction will commit at a timestamp at or below it from now on
//! (including undecided prepared transactions). Under that promise, per user key:
//!
//! ```text
//!   versions (newest first):  ts=40  ts=25 | ts=18  ts=12  ts=3      watermark = 20
//!                              keep   keep | keep   drop   drop
//!                                          ^ newest version <= watermark: what a reader at
//!                                            the watermark sees; everything older is shadowed
//! ```
//!
//! - every version newer than the watermark is kept (readers above the watermark may see any);
//! - the newest version at or below the watermark is kept if it is a value;
//! - if it is a tombstone it is dropped too, since the older versions it hid are all being
//!   dropped and it would shadow nothing — unless a memtable still holds an older version of
//!   the key (a commit that arrived out of timestamp order), in which case the tombstone must
//!   stay to keep hiding it;
//! - all older versions are dropped.
//!
//! Reads at any `read_ts >= watermark` return the same answers before and after.

use super::Result;
use super::iter::{Entry, EntryIter};

/// Filters a merged forward stream (internal order, one entry per version) by the rule above.
/// `shadows_elsewhere(key, ts)` reports whether data outside the compaction's inputs holds a
/// version of `key` older than `ts`.
pub(crate) struct GcIter<I, F> {
    inner: I,
    watermark: u64,
    shadows_elsewhere: F,
    current: Option<Vec<u8>>,
    /// Whether the newest version <= watermark of `current` has been seen already.
    settled: bool,
    pub(crate) dropped: u64,
}

impl<I, F> GcIter<I, F>
where
    I: EntryIter,
    F: Fn(&[u8], u64) -> bool + Send,
{
    pub(crate) fn new(inner: I, watermark: u64, shadows_elsewhere: F) -> Self {
        GcIter {
            inner,
            watermark,
            shadows_elsewhere,
            current: None,
            settled: false,
            dropped: 0,
        }
    }
}

impl<I, F> EntryIter for GcIter<I, F>
where
    I: EntryIter,
    F: Fn(&[u8], u64) -> bool + Send,
{
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        while let Some(e) = self.inner.next_entry()? {
            if self.current.as_deref() != Some(e.key.as_slice()) {
                self.current = Some(e.key.clone());
                self.settled = false;
            }
            if e.ts > self.watermark {
                return Ok(Some(e));
            }
            if self.settled {
                self.dropped += 1;
                continue;
            }
            self.settled = true;
            if e.value.is_some() || (self.shadows_elsewhere)(&e.key, e.ts) {
                return Ok(Some(e));
            }
            self.dropped += 1;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::super::iter::tests::VecIter;
    use super::*;

    fn e(key: &str, ts: u64, value: Option<&str>) -> Entry {
        Entry {
            key: key.as_bytes().to_vec(),
            ts,
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    fn run(input: Vec<Entry>, wm: u64, elsewhere: &[(&str, u64)]) -> Vec<Entry> {
        let mut gc = GcIter::new(VecIter(input.into_iter()), wm, |k: &[u8], ts: u64| {
            elsewhere
                .iter()
                .any(|(ek, ets)| ek.as_bytes() == k && *ets < ts)
        });
        let mut out = Vec::new();
        while let Some(x) = gc.next_entry().unwrap() {
            out.push(x);
        }
        out
    }

    #[test]
    fn keeps_newer_and_newest_below_watermark() {
        let input = vec![
            e("a", 40, Some("a40")),
            e("a", 25, None),
            e("a", 18, Some("a18")),
            e("a", 12, Some("a12")),
            e("a", 3, None),
            e("b", 15, None),
            e("b", 9, Some("b9")),
            e("c", 30, None),
            e("c", 10, Some("c10")),
            e("d", 5, Some("d5")),
        ];
        let out = run(input, 20, &[]);
        assert_eq!(
            out,
            vec![
                e("a", 40, Some("a40")),
                e("a", 25, None),
                e("a", 18, Some("a18")),
                e("c", 30, None),
                e("c", 10, Some("c10")),
                e("d", 5, Some("d5")),
            ]
        );
    }

    #[test]
    fn tombstone_stays_when_something_older_lives_elsewhere() {
        let input = vec![e("b", 15, None), e("b", 9, Some("b9"))];
        assert_eq!(run(input.clone(), 20, &[("b", 4)]), vec![e("b", 15, None)]);
        assert_eq!(run(input, 20, &[("b", 16)]), vec![]);
    }
}

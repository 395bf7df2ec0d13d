//! A version: the immutable set of live SSTables, arranged in levels.
//!
//! ```text
//!   L0   t9  t8  t7          flushed memtables, newest first; key ranges may overlap
//!   L1   [a..f] [g..m] [n..z]   sorted, non-overlapping; target size level1_target_bytes
//!   L2   [a..c] [d..e] ...      ratio times larger than L1, and so on down to L6
//! ```
//!
//! Invariants:
//! - Within L1 and below, tables are sorted by key and their `[min_key, max_key]` ranges are
//!   disjoint, so at most one table per level can hold a given user key (compaction never
//!   splits one user key's versions across two output files).
//! - Data in a shallower level was written later than data in a deeper level *for the same
//!   key*, and an L0 table with a larger id was written later than one with a smaller id. This
//!   is the source rank the merge uses when the same `(key, ts)` appears twice.
//! - A version is never mutated: flushes and compactions build a new one and swap it in, so a
//!   reader holding an `Arc<Version>` keeps its tables (and their open files) alive.

use std::sync::Arc;

use super::iter::{Direction, Entry, EntryIter, KeyRange};
use super::sstable::{Table, TableIter};
use super::{LevelStats, Result};

/// Levels 0..NUM_LEVELS; the last level is never compacted further.
pub(crate) const NUM_LEVELS: usize = 7;

#[derive(Clone)]
pub(crate) struct Version {
    pub levels: Vec<Vec<Arc<Table>>>,
}

impl Version {
    pub(crate) fn empty() -> Version {
        Version {
            levels: vec![Vec::new(); NUM_LEVELS],
        }
    }

    /// A new version without the tables in `removed` and with `added` placed in their levels.
    pub(crate) fn edit(&self, removed: &[u64], added: Vec<(usize, Arc<Table>)>) -> Version {
        let mut levels: Vec<Vec<Arc<Table>>> = self
            .levels
            .iter()
            .map(|l| {
                l.iter()
                    .filter(|t| !removed.contains(&t.id()))
                    .cloned()
                    .collect()
            })
            .collect();
        for (level, t) in added {
            levels[level].push(t);
        }
        levels[0].sort_by_key(|t| std::cmp::Reverse(t.id()));
        for l in levels.iter_mut().skip(1) {
            l.sort_by(|a, b| a.meta().min_key.cmp(&b.meta().min_key));
        }
        Version { levels }
    }

    pub(crate) fn all_tables(&self) -> impl Iterator<Item = (usize, &Arc<Table>)> {
        self.levels
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.iter().map(move |t| (i, t)))
    }

    pub(crate) fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level].iter().map(|t| t.file_size()).sum()
    }

    pub(crate) fn level_stats(&self) -> Vec<LevelStats> {
        self.levels
            .iter()
            .enumerate()
            .map(|(level, l)| LevelStats {
                level,
                files: l.len(),
                bytes: l.iter().map(|t| t.file_size()).sum(),
            })
            .collect()
    }

    /// The one table of sorted level `level` (>= 1) whose range may hold `key`.
    pub(crate) fn table_for_key(&self, level: usize, key: &[u8]) -> Option<&Arc<Table>> {
        let l = &self.levels[level];
        let i = l.partition_point(|t| t.meta().max_key.as_slice() < key);
        l.get(i).filter(|t| t.meta().min_key.as_slice() <= key)
    }

    /// Tables of `level` whose key range intersects `[min, max]`.
    pub(crate) fn overlapping(&self, level: usize, min: &[u8], max: &[u8]) -> Vec<Arc<Table>> {
        self.levels[level]
            .iter()
            .filter(|t| t.meta().min_key.as_slice() <= max && t.meta().max_key.as_slice() >= min)
            .cloned()
            .collect()
    }

    /// Checks the level invariants; a description of the first violation otherwise.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        for (level, l) in self.levels.iter().enumerate().skip(1) {
            for w in l.windows(2) {
                if w[0].meta().max_key >= w[1].meta().min_key {
                    return Err(format!(
                        "L{level}: tables {} and {} overlap",
                        w[0].id(),
                        w[1].id()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Iterates one sorted level (>= 1) as a single source, opening each table's iterator only
/// when the previous one is exhausted.
pub(crate) struct LevelIter {
    tables: Vec<Arc<Table>>,
    range: KeyRange,
    dir: Direction,
    next: usize,
    current: Option<TableIter>,
}

impl LevelIter {
    /// `tables` must be one sorted level; only those overlapping `range` are visited.
    pub(crate) fn new(tables: &[Arc<Table>], range: KeyRange, dir: Direction) -> LevelIter {
        let mut tables: Vec<Arc<Table>> = tables
            .iter()
            .filter(|t| {
                t.meta().entry_count > 0 && range.overlaps(&t.meta().min_key, &t.meta().max_key)
            })
            .cloned()
            .collect();
        if dir == Direction::Reverse {
            tables.reverse();
        }
        LevelIter {
            tables,
            range,
            dir,
            next: 0,
            current: None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

impl EntryIter for LevelIter {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        loop {
            if let Some(cur) = &mut self.current {
                if let Some(e) = cur.next_entry()? {
                    return Ok(Some(e));
                }
                self.current = None;
            }
            let Some(t) = self.tables.get(self.next) else {
                return Ok(None);
            };
            self.next += 1;
            self.current = Some(t.iter(self.range.clone(), self.dir));
        }
    }
}

/// A compaction the picker chose: `inputs` from `level` and the overlapping `next_inputs`
/// from `level + 1`, merged into `level + 1`.
pub(crate) struct Pick {
    pub level: usize,
    pub inputs: Vec<Arc<Table>>,
    pub next_inputs: Vec<Arc<Table>>,
}

impl Pick {
    pub(crate) fn output_level(&self) -> usize {
        self.level + 1
    }
}

/// Size limits of the levels, from the engine options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LevelLimits {
    pub l0_trigger: usize,
    pub level1_bytes: u64,
    pub ratio: u64,
}

impl LevelLimits {
    pub(crate) fn target_bytes(&self, level: usize) -> u64 {
        let mut t = self.level1_bytes.max(1);
        for _ in 1..level {
            t = t.saturating_mul(self.ratio.max(2));
        }
        t
    }

    /// How urgently each level needs compacting: L0 by file count, deeper levels by size
    /// against their target. A score >= 1 means "compact".
    pub(crate) fn scores(&self, v: &Version) -> Vec<f64> {
        (0..NUM_LEVELS - 1)
            .map(|level| {
                if level == 0 {
                    v.levels[0].len() as f64 / self.l0_trigger.max(1) as f64
                } else {
                    v.level_bytes(level) as f64 / self.target_bytes(level) as f64
                }
            })
            .collect()
    }

    /// Chooses the most urgent compaction, if any level is over its limit. `pointers[level]`
    /// is the largest key the previous compaction of that level consumed, so successive
    /// compactions of a level walk its key space round-robin instead of rewriting one range.
    pub(crate) fn pick(&self, v: &Version, pointers: &[Vec<u8>]) -> Option<Pick> {
        let scores = self.scores(v);
        let (level, score) = scores
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        if score < 1.0 {
            return None;
        }
        Some(pick_level(v, level, pointers))
    }
}

/// Builds the compaction of `level` into `level + 1`.
pub(crate) fn pick_level(v: &Version, level: usize, pointers: &[Vec<u8>]) -> Pick {
    let inputs: Vec<Arc<Table>> = if level == 0 {
        // L0 tables overlap each other, so all of them go down together; that keeps the
        // invariant that an L0 table is newer than everything below it.
        v.levels[0].clone()
    } else {
        let l = &v.levels[level];
        let ptr = pointers.get(level).map(Vec::as_slice).unwrap_or(&[]);
        let t = l
            .iter()
            .find(|t| ptr.is_empty() || t.meta().min_key.as_slice() > ptr)
            .or_else(|| l.first());
        t.cloned().into_iter().collect()
    };
    let next_inputs = match key_span(&inputs) {
        Some((min, max)) => v.overlapping(level + 1, &min, &max),
        None => Vec::new(),
    };
    Pick {
        level,
        inputs,
        next_inputs,
    }
}

/// The smallest and largest user key over `tables`.
pub(crate) fn key_span(tables: &[Arc<Table>]) -> Option<(Vec<u8>, Vec<u8>)> {
    let min = tables.iter().map(|t| &t.meta().min_key).min()?.clone();
    let max = tables.iter().map(|t| &t.meta().max_key).max()?.clone();
    Some((min, max))
}

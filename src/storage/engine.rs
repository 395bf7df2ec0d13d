//! The engine: recovery, the write path, flush, compaction and reads.
//!
//! ```text
//!   writers ──▶ writer mutex ──▶ WAL append (+ fdatasync) ──▶ memtable insert ──▶ publish seq
//!                  │ (memtable over limit)
//!                  └──▶ rotate WAL, freeze memtable ──▶ SSTable ──▶ delete covered WAL segments
//!
//!   readers ──▶ visible_seq + Arc snapshot {active, frozen, tables} ──▶ merge ──▶ visibility
//! ```
//!
//! Invariants:
//! - **Durability before visibility.** A batch is inserted into the memtable only after its WAL
//!   record is durable, and the call returns only after that. If a WAL write or fsync fails the
//!   log's state is unknown, so the engine is poisoned: it refuses further writes until reopened.
//! - **Atomic visibility.** Writers are serialized by the writer mutex and give each batch the
//!   next sequence number; `visible_seq` is advanced only after the whole batch is in the
//!   memtable. Readers load `visible_seq` first and then snapshot the component list, so they
//!   see every batch published before they started and never part of one. Rotation happens
//!   between batches, so a batch is always entirely in one memtable, and therefore entirely in
//!   one table.
//! - **Readers never wait on I/O done by writers.** They hold the state lock only to clone an
//!   `Arc`; fsyncs happen under the writer mutex, which readers never take.
//! - **WAL coverage.** A WAL segment is deleted only after an SSTable whose name covers it is
//!   durable. Prepared-but-undecided transactions are re-logged into the new segment (and
//!   fsynced) before the rotation completes, so deleting old segments never loses them.
//! - **Newest wins.** Sources are ranked active memtable, frozen memtable, then tables by
//!   descending WAL coverage; among copies of the same `(key, ts)` the highest-ranked wins.
//!   Different timestamps are compared by timestamp, never by source, because 2PC commits may
//!   arrive out of timestamp order.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::compaction::GcIter;
use super::files::{self, FileKind, sync_dir, table_path, wal_path};
use super::iter::{Direction, EntryIter, KeyRange, MergeIter, collect_visible};
use super::memtable::Memtable;
use super::sstable::{Table, write_table};
use super::wal::{self, WalRecord, WalWriter};
use super::{
    EngineOptions, EngineStats, Result, StorageError, WriteBatch, WriteOp, corruption, io_err,
};

/// The set of components a reader merges. Replaced wholesale (copy-on-write) so a reader's
/// snapshot is one `Arc` clone.
struct Components {
    active: Arc<Memtable>,
    frozen: Option<Arc<Memtable>>,
    /// Newest first (descending `hi`).
    tables: Vec<Arc<Table>>,
}

/// A frozen memtable waiting to become table `[lo, hi)`.
struct FlushJob {
    mem: Arc<Memtable>,
    lo: u64,
    hi: u64,
}

/// Everything only writers touch, guarded by the writer mutex.
struct Writer {
    wal: WalWriter,
    /// Older live WAL segments as `(seq, bytes)`, all not yet covered by a table.
    old_segments: Vec<(u64, u64)>,
    next_write_seq: u64,
    next_segment: u64,
    /// `lo` of the next flushed table: the first WAL segment not covered by a table.
    flush_lo: u64,
    /// A rotation whose table could not be written yet; retried before the next rotation.
    unfinished: Option<FlushJob>,
    poisoned: Option<String>,
}

impl Writer {
    fn wal_bytes(&self) -> u64 {
        self.old_segments.iter().map(|s| s.1).sum::<u64>() + self.wal.len()
    }
}

/// A log-structured MVCC storage engine for one shard. `Send + Sync`: share it in an `Arc`.
pub struct Engine {
    dir: PathBuf,
    opts: EngineOptions,
    /// Holds the directory's advisory lock for the engine's lifetime.
    _lock: File,
    writer: Mutex<Writer>,
    state: RwLock<Arc<Components>>,
    /// Prepared, undecided transactions. Changed only under the writer mutex, but kept in its
    /// own lock so `in_doubt` never waits behind an fsync.
    pending: Mutex<BTreeMap<u64, Vec<WriteOp>>>,
    visible_seq: AtomicU64,
    max_committed_ts: AtomicU64,
    wal_bytes: AtomicU64,
    compaction: Mutex<()>,
}

/// What recovery rebuilt from the WAL.
struct Replayed {
    mem: Memtable,
    pending: BTreeMap<u64, Vec<WriteOp>>,
    last_seq: u64,
    max_ts: u64,
}

impl Replayed {
    fn publish(&mut self, ts: u64, ops: Vec<WriteOp>) {
        self.last_seq += 1;
        for op in ops {
            self.mem.insert(op.key, ts, self.last_seq, op.value);
        }
        self.max_ts = self.max_ts.max(ts);
    }

    fn apply(&mut self, path: &Path, rec: WalRecord) -> Result<()> {
        match rec {
            WalRecord::Batch { commit_ts, ops } => self.publish(commit_ts, ops),
            WalRecord::Prepare { txid, ops } => {
                // A second prepare of an undecided txid is the copy re-logged at a rotation
                // whose old segment was not deleted yet; the ops are the same.
                self.pending.insert(txid, ops);
            }
            WalRecord::Commit { txid, commit_ts } => {
                let ops = self.pending.remove(&txid).ok_or_else(|| {
                    corruption(
                        path,
                        format!("commit of transaction {txid} with no prepare"),
                    )
                })?;
                self.publish(commit_ts, ops);
            }
            WalRecord::Abort { txid } => {
                self.pending.remove(&txid).ok_or_else(|| {
                    corruption(path, format!("abort of transaction {txid} with no prepare"))
                })?;
            }
        }
        Ok(())
    }
}

fn remove_file_logged(path: &Path, why: &str) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(path = %path.display(), why, "deleted file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), why, error = %e, "could not delete file"),
    }
}

impl Engine {
    /// Opens (creating if needed) the engine in `dir` and recovers its state: loads all tables,
    /// replays the WAL segments they do not cover, truncates a torn WAL tail, and restores
    /// undecided prepared transactions.
    pub fn open(dir: &Path, opts: EngineOptions) -> Result<Engine> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock_path = dir.join(files::LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StorageError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }

        // Inventory the directory.
        let mut wal_segs = Vec::new();
        let mut table_ranges = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            match files::classify(name) {
                FileKind::Wal { seq } => wal_segs.push(seq),
                FileKind::Table { lo, hi } => table_ranges.push((lo, hi)),
                FileKind::Temp => remove_file_logged(&entry.path(), "leftover temporary file"),
                FileKind::Lock => {}
                FileKind::Unknown => {
                    tracing::warn!(
                        file = name,
                        "ignoring unrecognised file in storage directory"
                    )
                }
            }
        }
        wal_segs.sort_unstable();

        // Resolve table ranges: nested ones are finished compactions' inputs.
        table_ranges.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut kept: Vec<(u64, u64)> = Vec::new();
        let mut subsumed = Vec::new();
        for (lo, hi) in table_ranges {
            match kept.last() {
                Some(&(_, last_hi)) if hi <= last_hi => subsumed.push((lo, hi)),
                Some(&(last_lo, last_hi)) if lo < last_hi => {
                    return Err(corruption(
                        &table_path(dir, lo, hi),
                        format!("WAL range overlaps table [{last_lo}, {last_hi}) partially"),
                    ));
                }
                _ => kept.push((lo, hi)),
            }
        }
        let mut tables = Vec::with_capacity(kept.len());
        for &(lo, hi) in kept.iter().rev() {
            tables.push(Arc::new(Table::open(&table_path(dir, lo, hi), lo, hi)?));
        }
        for (lo, hi) in subsumed {
            remove_file_logged(&table_path(dir, lo, hi), "table superseded by a compaction");
        }
        let covered_upto = kept.last().map_or(0, |r| r.1);

        // Replay the WAL segments no table covers.
        let mut replayed = Replayed {
            mem: Memtable::new(),
            pending: BTreeMap::new(),
            last_seq: 0,
            max_ts: tables
                .iter()
                .map(|t| t.meta().high_water_ts)
                .max()
                .unwrap_or(0),
        };
        let (covered, live): (Vec<u64>, Vec<u64>) =
            wal_segs.iter().copied().partition(|&s| s < covered_upto);
        let mut old_segments = Vec::with_capacity(live.len());
        for (i, &seq) in live.iter().enumerate() {
            let path = wal_path(dir, seq);
            let is_last = i + 1 == live.len();
            let outcome = wal::replay_segment(&path, is_last, |rec| replayed.apply(&path, rec))?;
            if let Some(reason) = &outcome.torn {
                tracing::warn!(
                    path = %path.display(),
                    offset = outcome.valid_len,
                    discarded = outcome.file_len - outcome.valid_len,
                    reason = reason.as_str(),
                    "truncating torn tail of the WAL (an unacknowledged write)"
                );
                wal::truncate_segment(&path, outcome.valid_len)?;
            }
            if outcome.valid_len == 0 {
                // Holds nothing (e.g. a restart with no writes); the new segment replaces it.
                remove_file_logged(&path, "empty WAL segment");
                continue;
            }
            old_segments.push((seq, outcome.valid_len));
        }
        for &seq in &covered {
            remove_file_logged(&wal_path(dir, seq), "WAL segment already in a table");
        }

        let next_segment = wal_segs
            .last()
            .map_or(1, |s| s + 1)
            .max(covered_upto)
            .max(1);
        let wal = WalWriter::create(dir, next_segment, opts.sync)?;
        let writer = Writer {
            wal,
            old_segments,
            next_write_seq: replayed.last_seq + 1,
            next_segment: next_segment + 1,
            flush_lo: covered_upto,
            unfinished: None,
            poisoned: None,
        };
        tracing::info!(
            dir = %dir.display(),
            tables = tables.len(),
            replayed_segments = live.len(),
            recovered_bytes = replayed.mem.approx_bytes(),
            in_doubt = replayed.pending.len(),
            max_committed_ts = replayed.max_ts,
            "storage engine opened"
        );
        let engine = Engine {
            dir: dir.to_path_buf(),
            _lock: lock,
            wal_bytes: AtomicU64::new(writer.wal_bytes()),
            writer: Mutex::new(writer),
            state: RwLock::new(Arc::new(Components {
                active: Arc::new(replayed.mem),
                frozen: None,
                tables,
            })),
            pending: Mutex::new(replayed.pending),
            visible_seq: AtomicU64::new(replayed.last_seq),
            max_committed_ts: AtomicU64::new(replayed.max_ts),
            compaction: Mutex::new(()),
            opts,
        };
        {
            let mut w = engine.writer.lock();
            engine.maybe_flush_locked(&mut w);
        }
        Ok(engine)
    }

    /// Atomically and durably applies `batch` at version `batch.commit_ts`: one WAL record,
    /// fsynced (under [`super::SyncMode::Fsync`]) before returning, then inserted into the
    /// memtable and published. After a crash either all ops are visible or none.
    pub fn apply(&self, batch: &WriteBatch) -> Result<()> {
        let frame = wal::encode_batch(batch.commit_ts, &batch.ops)?;
        let mut w = self.writer.lock();
        self.append_locked(&mut w, &frame)?;
        let ops = batch
            .ops
            .iter()
            .map(|op| (op.key.clone(), op.value.clone()));
        self.publish_locked(&mut w, batch.commit_ts, ops);
        self.maybe_flush_locked(&mut w);
        Ok(())
    }

    /// Durably records `ops` under transaction `txid` without making them visible. The
    /// transaction stays in doubt, across restarts, until [`Engine::commit_prepared`] or
    /// [`Engine::abort_prepared`].
    pub fn prepare(&self, txid: u64, ops: Vec<WriteOp>) -> Result<()> {
        let frame = wal::encode_prepare(txid, &ops)?;
        let mut w = self.writer.lock();
        if self.pending.lock().contains_key(&txid) {
            return Err(StorageError::AlreadyPrepared { txid });
        }
        self.append_locked(&mut w, &frame)?;
        self.pending.lock().insert(txid, ops);
        Ok(())
    }

    /// Durably records the commit of prepared transaction `txid`, then makes its ops visible
    /// at `commit_ts`.
    pub fn commit_prepared(&self, txid: u64, commit_ts: u64) -> Result<()> {
        let frame = wal::encode_commit(txid, commit_ts)?;
        let mut w = self.writer.lock();
        if !self.pending.lock().contains_key(&txid) {
            return Err(StorageError::NotPrepared { txid });
        }
        self.append_locked(&mut w, &frame)?;
        let ops = self
            .pending
            .lock()
            .remove(&txid)
            .expect("pending changes only under the writer lock");
        let ops = ops.into_iter().map(|op| (op.key, op.value));
        self.publish_locked(&mut w, commit_ts, ops);
        self.maybe_flush_locked(&mut w);
        Ok(())
    }

    /// Durably records the abort of prepared transaction `txid` and discards its ops.
    pub fn abort_prepared(&self, txid: u64) -> Result<()> {
        let frame = wal::encode_abort(txid)?;
        let mut w = self.writer.lock();
        if !self.pending.lock().contains_key(&txid) {
            return Err(StorageError::NotPrepared { txid });
        }
        self.append_locked(&mut w, &frame)?;
        self.pending.lock().remove(&txid);
        Ok(())
    }

    /// Prepared transactions with no recorded outcome, in ascending txid order.
    pub fn in_doubt(&self) -> Vec<u64> {
        self.pending.lock().keys().copied().collect()
    }

    /// The value of `key` as of `read_ts`: the newest version with `ts <= read_ts`, `None` if
    /// there is none or it is a tombstone.
    pub fn get(&self, key: &[u8], read_ts: u64) -> Result<Option<Vec<u8>>> {
        let (snap_seq, c) = self.snapshot();
        type Found = Option<(u64, Option<Vec<u8>>)>;
        // Strictly newer only: on a timestamp tie the source consulted first (newer) wins.
        fn consider(best: &mut Found, found: Found) {
            if let Some((ts, v)) = found
                && best.as_ref().is_none_or(|(bts, _)| ts > *bts)
            {
                *best = Some((ts, v));
            }
        }
        let mut best: Found = None;
        consider(&mut best, c.active.get(key, read_ts, snap_seq));
        if let Some(f) = &c.frozen {
            consider(&mut best, f.get(key, read_ts, snap_seq));
        }
        for t in &c.tables {
            // A table whose newest version is not newer than what we have cannot change the
            // answer (ties go to the newer source, already consulted).
            if best
                .as_ref()
                .is_some_and(|(bts, _)| t.meta().max_ts <= *bts)
            {
                continue;
            }
            consider(&mut best, t.get(key, read_ts)?);
        }
        Ok(best.and_then(|(_, v)| v))
    }

    /// Live entries with keys within `start`/`end`, ascending, each at its newest version
    /// `<= read_ts`, at most `limit` of them. Page by calling again with
    /// `Bound::Excluded(last_key)`.
    pub fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        read_ts: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_dir(
            KeyRange::new(start, end),
            Direction::Forward,
            read_ts,
            limit,
        )
    }

    /// Like [`Engine::scan`] but descending: iteration begins at the `end` bound.
    pub fn scan_rev(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        read_ts: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_dir(
            KeyRange::new(start, end),
            Direction::Reverse,
            read_ts,
            limit,
        )
    }

    /// The highest commit timestamp ever applied, including recovered ones; 0 if none.
    pub fn max_committed_ts(&self) -> u64 {
        self.max_committed_ts.load(Ordering::Acquire)
    }

    /// Rotates the WAL and writes the memtable into an SSTable (a no-op if it is empty).
    pub fn flush(&self) -> Result<()> {
        let mut w = self.writer.lock();
        self.flush_locked(&mut w)
    }

    /// Merges all SSTables into one, dropping versions no reader at or above `gc_watermark`
    /// can see (the `compaction` module documents the rule and the caller's promise).
    /// Writers and readers proceed meanwhile; tables flushed during the compaction stay as
    /// they are.
    pub fn compact(&self, gc_watermark: u64) -> Result<()> {
        let _only_one = self.compaction.lock();
        let snap = Arc::clone(&self.state.read());
        let inputs = snap.tables.clone();
        if inputs.is_empty() {
            return Ok(());
        }
        let lo = inputs.iter().map(|t| t.lo()).min().expect("non-empty");
        let hi = inputs.iter().map(|t| t.hi()).max().expect("non-empty");
        let high_water = inputs
            .iter()
            .map(|t| t.meta().high_water_ts)
            .max()
            .unwrap_or(0);
        let sources: Vec<Box<dyn EntryIter>> = inputs
            .iter()
            .map(|t| Box::new(t.iter(KeyRange::all(), Direction::Forward)) as Box<dyn EntryIter>)
            .collect();
        let merged = MergeIter::new(Direction::Forward, sources)?;
        // Memtables as of the snapshot: anything committed later is above the watermark.
        let mems: Vec<Arc<Memtable>> = std::iter::once(Arc::clone(&snap.active))
            .chain(snap.frozen.clone())
            .collect();
        let mut gc = GcIter::new(merged, gc_watermark, |key: &[u8], ts: u64| {
            mems.iter().any(|m| m.has_version_below(key, ts))
        });
        let path = table_path(&self.dir, lo, hi);
        write_table(&path, &mut gc, high_water)?;
        let dropped = gc.dropped;
        let table = Arc::new(Table::open(&path, lo, hi)?);
        {
            let mut st = self.state.write();
            let mut tables: Vec<Arc<Table>> = st
                .tables
                .iter()
                .filter(|t| !inputs.iter().any(|i| Arc::ptr_eq(i, t)))
                .cloned()
                .chain(std::iter::once(Arc::clone(&table)))
                .collect();
            tables.sort_by_key(|t| std::cmp::Reverse(t.hi()));
            *st = Arc::new(Components {
                active: Arc::clone(&st.active),
                frozen: st.frozen.clone(),
                tables,
            });
        }
        // Open handles keep serving readers that still hold the inputs.
        for t in &inputs {
            if t.path() != path {
                remove_file_logged(t.path(), "compacted into a new table");
            }
        }
        if let Err(e) = sync_dir(&self.dir) {
            tracing::warn!(error = %e, "directory sync after compaction failed");
        }
        tracing::info!(
            inputs = inputs.len(),
            output = %path.display(),
            entries = table.meta().entry_count,
            bytes = table.file_size(),
            dropped_versions = dropped,
            gc_watermark,
            "compaction finished"
        );
        Ok(())
    }

    /// Current footprint.
    pub fn stats(&self) -> EngineStats {
        let c = Arc::clone(&self.state.read());
        EngineStats {
            memtable_bytes: c.active.approx_bytes()
                + c.frozen.as_ref().map_or(0, |f| f.approx_bytes()),
            sstable_count: c.tables.len(),
            sstable_bytes: c.tables.iter().map(|t| t.file_size()).sum(),
            wal_bytes: self.wal_bytes.load(Ordering::Relaxed),
            levels: vec![super::LevelStats {
                level: 0,
                files: c.tables.len(),
                bytes: c.tables.iter().map(|t| t.file_size()).sum(),
            }],
            ..EngineStats::default()
        }
    }

    /// A consistent read view. `visible_seq` is loaded before the components so that every
    /// batch published before the read began is in a component of the snapshot.
    fn snapshot(&self) -> (u64, Arc<Components>) {
        let seq = self.visible_seq.load(Ordering::Acquire);
        (seq, Arc::clone(&self.state.read()))
    }

    fn scan_dir(
        &self,
        range: KeyRange,
        dir: Direction,
        read_ts: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if limit == 0 || range.is_empty() {
            return Ok(Vec::new());
        }
        let (snap_seq, c) = self.snapshot();
        let mut sources: Vec<Box<dyn EntryIter>> = Vec::with_capacity(2 + c.tables.len());
        sources.push(Box::new(c.active.iter(range.clone(), dir, snap_seq)));
        if let Some(f) = &c.frozen {
            sources.push(Box::new(f.iter(range.clone(), dir, snap_seq)));
        }
        for t in &c.tables {
            let m = t.meta();
            if m.entry_count > 0 && m.min_ts <= read_ts && range.overlaps(&m.min_key, &m.max_key) {
                sources.push(Box::new(t.iter(range.clone(), dir)));
            }
        }
        let mut merged = MergeIter::new(dir, sources)?;
        collect_visible(&mut merged, dir, read_ts, limit)
    }

    /// Appends a frame to the active WAL segment. Any failure poisons the engine: a partial
    /// frame may now sit mid-log, and after a failed fsync the kernel may have dropped the
    /// dirty pages, so nothing appended after this point could be trusted.
    fn append_locked(&self, w: &mut Writer, frame: &[u8]) -> Result<()> {
        if let Some(reason) = &w.poisoned {
            return Err(StorageError::Poisoned(reason.clone()));
        }
        if let Err(e) = w.wal.append(frame) {
            tracing::error!(error = %e, "WAL append failed; engine refuses further writes");
            w.poisoned = Some(e.to_string());
            return Err(e);
        }
        self.wal_bytes.store(w.wal_bytes(), Ordering::Relaxed);
        Ok(())
    }

    /// Inserts one durable batch under a fresh sequence number and publishes it.
    fn publish_locked(
        &self,
        w: &mut Writer,
        commit_ts: u64,
        ops: impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
    ) {
        let seq = w.next_write_seq;
        w.next_write_seq += 1;
        // Only writers replace `active`, and we are the writer: this stays the active table.
        let active = Arc::clone(&self.state.read().active);
        for (key, value) in ops {
            active.insert(key, commit_ts, seq, value);
        }
        self.visible_seq.store(seq, Ordering::Release);
        self.max_committed_ts.fetch_max(commit_ts, Ordering::AcqRel);
    }

    /// Flushes if the active memtable is over its limit. The triggering write is already
    /// durable and visible, so a flush failure is logged (and retried by later writes) rather
    /// than reported as that write's failure.
    fn maybe_flush_locked(&self, w: &mut Writer) {
        let over = self.state.read().active.approx_bytes() >= self.opts.memtable_limit_bytes;
        if (over || w.unfinished.is_some())
            && let Err(e) = self.flush_locked(w)
        {
            tracing::error!(error = %e, "memtable flush failed; will retry on a later write");
        }
    }

    fn flush_locked(&self, w: &mut Writer) -> Result<()> {
        if let Some(job) = w.unfinished.take()
            && let Err(e) = self.finish_flush(w, &job)
        {
            w.unfinished = Some(job);
            return Err(e);
        }
        let active = Arc::clone(&self.state.read().active);
        if active.is_empty() {
            return Ok(());
        }
        if let Some(reason) = &w.poisoned {
            return Err(StorageError::Poisoned(reason.clone()));
        }

        // Rotate: the new segment must durably hold every undecided prepare before the old
        // segments can ever be deleted.
        let seg = w.next_segment;
        w.next_segment += 1;
        let mut new_wal = WalWriter::create(&self.dir, seg, self.opts.sync)?;
        let relog = (|| {
            for (txid, ops) in self.pending.lock().iter() {
                new_wal.write_frame(&wal::encode_prepare(*txid, ops)?)?;
            }
            new_wal.force_sync()
        })();
        if let Err(e) = relog {
            let path = new_wal.path().to_path_buf();
            drop(new_wal);
            remove_file_logged(&path, "abandoned WAL rotation");
            return Err(e);
        }
        let old = std::mem::replace(&mut w.wal, new_wal);
        w.old_segments.push((old.seq(), old.len()));
        drop(old);
        {
            let mut st = self.state.write();
            *st = Arc::new(Components {
                active: Arc::new(Memtable::new()),
                frozen: Some(Arc::clone(&active)),
                tables: st.tables.clone(),
            });
        }
        self.wal_bytes.store(w.wal_bytes(), Ordering::Relaxed);
        let job = FlushJob {
            mem: active,
            lo: w.flush_lo,
            hi: seg,
        };
        w.flush_lo = seg;
        if let Err(e) = self.finish_flush(w, &job) {
            w.unfinished = Some(job);
            return Err(e);
        }
        Ok(())
    }

    /// Writes a frozen memtable as table `[lo, hi)`, installs it, and deletes the WAL segments
    /// it covers.
    fn finish_flush(&self, w: &mut Writer, job: &FlushJob) -> Result<()> {
        let path = table_path(&self.dir, job.lo, job.hi);
        let high_water = self.max_committed_ts.load(Ordering::Acquire);
        let mut source = job.mem.iter(KeyRange::all(), Direction::Forward, u64::MAX);
        write_table(&path, &mut source, high_water)?;
        let table = Arc::new(Table::open(&path, job.lo, job.hi)?);
        {
            let mut st = self.state.write();
            let tables = std::iter::once(Arc::clone(&table))
                .chain(st.tables.iter().cloned())
                .collect();
            *st = Arc::new(Components {
                active: Arc::clone(&st.active),
                frozen: None,
                tables,
            });
        }
        let (covered, live): (Vec<_>, Vec<_>) = std::mem::take(&mut w.old_segments)
            .into_iter()
            .partition(|(s, _)| *s < job.hi);
        w.old_segments = live;
        for (seq, _) in covered {
            remove_file_logged(&wal_path(&self.dir, seq), "WAL segment flushed to a table");
        }
        if let Err(e) = sync_dir(&self.dir) {
            // Recovery deletes covered segments again, so this only delays reclamation.
            tracing::warn!(error = %e, "directory sync after WAL cleanup failed");
        }
        self.wal_bytes.store(w.wal_bytes(), Ordering::Relaxed);
        tracing::info!(
            table = %path.display(),
            entries = table.meta().entry_count,
            bytes = table.file_size(),
            "flushed memtable"
        );
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Under SyncMode::None this narrows the window for losing acknowledged writes to an OS
        // crash; under Fsync everything is already durable.
        self.writer.get_mut().wal.sync_on_close();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .field("max_committed_ts", &self.max_committed_ts())
            .finish_non_exhaustive()
    }
}

//! The engine: recovery, the group-committed write path, background flush and leveled
//! compaction, and snapshot reads over memtables and levels.
//!
//! ```text
//!   writers ─▶ throttle ─▶ writer mutex: WAL write, seq, memtable insert ─▶ group fsync ─▶ publish
//!                              │ active memtable over limit
//!                              └─▶ rotate WAL segment, active becomes immutable ─┐
//!   flush thread   ◀───────────────────────────────────────────────────────────┘
//!        immutable memtable ─▶ L0 table ─▶ manifest edit (AddTable, LogNumber) ─▶ drop WAL segs
//!   compaction thread
//!        pick level by score ─▶ merge + GC ─▶ output tables ─▶ manifest edit ─▶ drop inputs
//!
//!   readers ─▶ visible_seq + Arc<Components>{active, immutables, version} ─▶ merge ─▶ visibility
//! ```
//!
//! Invariants:
//! - **Durability before acknowledgement and visibility.** A record is written and inserted
//!   into the memtable under the writer mutex with a sequence number above `visible_seq`, so no
//!   reader sees it; the writer then waits until an fsync covers its record. One fsync covers
//!   every record written before it started, so concurrent committers share fsyncs (group
//!   commit): whoever finds no fsync in flight issues one for everything written so far, the
//!   others wait for it. Only then is `visible_seq` raised past the record's sequence number.
//!   If an fsync or WAL write fails the log's state is unknown and the engine is poisoned.
//! - **Atomic visibility.** Sequence numbers are assigned in WAL order under the writer mutex,
//!   and `visible_seq` only moves to a sequence number all of whose predecessors are durable.
//!   Rotation happens between records, so a batch lies entirely in one memtable.
//! - **Rotation makes the frozen memtable durable**: the old segment is fsynced before the
//!   memtable is frozen, so a flushed table never holds an unacknowledgeable write.
//! - **WAL coverage.** The manifest's log number only moves past a segment once a table holding
//!   all of that segment's data is named by a durable manifest edit; only then is the segment
//!   deleted. Undecided prepared transactions are re-logged into each new segment at rotation.
//! - **Atomic table-set changes.** Each flush and compaction is one manifest edit, fsynced
//!   before the version is swapped in and before any file it retires is deleted; edits and
//!   version swaps happen in the same order (both under the manifest mutex).
//! - **Newest wins.** Sources are ranked active memtable, immutables (newest first), L0 tables
//!   (newest first), then L1, L2, ...; copies of the same `(key, ts)` resolve to the higher
//!   rank. Different timestamps are compared by timestamp, never by rank, because 2PC commits
//!   may arrive out of timestamp order.
//! - **Bounded memory.** A writer that would need more than `max_immutable_memtables` frozen
//!   memtables, or that meets `l0_stop_trigger` L0 tables, waits for the background threads
//!   (a stall, counted in the stats) instead of growing memory or read amplification.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::cache::BlockCache;
use super::compaction::GcIter;
use super::files::{self, FileKind, sync_dir, table_path, wal_path};
use super::iter::{Direction, Entry, EntryIter, KeyRange, MergeIter, collect_visible};
use super::manifest::{self, Change, Manifest, ManifestState, TableInfo};
use super::memtable::Memtable;
use super::sstable::{ReadCounters, Table, TableBuilder, TableOptions};
use super::version::{LevelIter, LevelLimits, NUM_LEVELS, Pick, Version, key_span};
use super::wal::{self, WalRecord, WalWriter};
use super::{
    EngineOptions, EngineStats, Result, StorageError, SyncMode, WriteBatch, WriteOp, corruption,
    io_err,
};

/// A frozen memtable and the first WAL segment that does *not* feed it: once it is in a
/// table, segments below `log_hi` hold nothing that is not in tables.
struct Immutable {
    mem: Arc<Memtable>,
    log_hi: u64,
}

/// The set of components a reader merges. Replaced wholesale (copy-on-write) so a reader's
/// snapshot is one `Arc` clone.
struct Components {
    active: Arc<Memtable>,
    /// Newest first.
    immutables: Vec<Arc<Immutable>>,
    version: Arc<Version>,
}

/// Everything only writers touch, guarded by the writer mutex.
struct Writer {
    wal: WalWriter,
    /// Total bytes ever written to the WAL by this engine instance: the position group commit
    /// syncs up to.
    lsn: u64,
    /// `lsn` at which the active segment's byte 0 lies.
    seg_start_lsn: u64,
    next_write_seq: u64,
    next_segment: u64,
}

/// Group-commit state: how far the WAL is known durable and whether an fsync is in flight.
struct SyncState {
    synced_lsn: u64,
    syncing: bool,
    /// The active segment's file; swapped at rotation (after the old one was fsynced).
    file: Arc<File>,
    path: PathBuf,
}

/// Coordination between foreground and background threads.
#[derive(Default)]
struct BgState {
    shutdown: bool,
    /// The last flush failure, until a flush succeeds; stalled writers report it.
    flush_error: Option<String>,
    /// The last compaction failure, until one succeeds; writers stalled on L0 report it.
    compaction_error: Option<String>,
}

/// Work counters since open.
#[derive(Default)]
struct Counters {
    wal_records: AtomicU64,
    wal_syncs: AtomicU64,
    wal_active_bytes: AtomicU64,
    wal_closed_bytes: AtomicU64,
    user_bytes: AtomicU64,
    flush_bytes: AtomicU64,
    compaction_written: AtomicU64,
    compaction_read: AtomicU64,
    flushes: AtomicU64,
    compactions: AtomicU64,
    stalls: AtomicU64,
    stall_micros: AtomicU64,
}

struct Inner {
    dir: PathBuf,
    opts: EngineOptions,
    table_opts: TableOptions,
    limits: LevelLimits,
    /// Holds the directory's advisory lock for the engine's lifetime.
    _lock: File,
    writer: Mutex<Writer>,
    state: RwLock<Arc<Components>>,
    /// Prepared, undecided transactions. Changed only under the writer mutex, but kept in its
    /// own lock so `in_doubt` never waits behind an fsync.
    pending: Mutex<BTreeMap<u64, Vec<WriteOp>>>,
    visible_seq: AtomicU64,
    max_committed_ts: AtomicU64,
    /// `Writer::lsn` as of the last completed write, for group-commit leaders.
    written_lsn: AtomicU64,
    /// `SyncState::synced_lsn`, readable without the sync mutex (for WAL record stamps).
    synced_lsn_hint: AtomicU64,
    sync: Mutex<SyncState>,
    sync_cv: Condvar,
    /// Set when a WAL write or fsync failed: the log's state is unknown until reopen.
    poison: Mutex<Option<String>>,
    /// Fast-path flag for `poison`, checked on every write.
    poisoned: AtomicBool,
    manifest: Mutex<Manifest>,
    /// Closed WAL segments not yet deleted: seq -> bytes.
    segments: Mutex<BTreeMap<u64, u64>>,
    bg: Mutex<BgState>,
    /// Background threads wait here for work.
    work_cv: Condvar,
    /// Foreground threads wait here for background progress.
    done_cv: Condvar,
    shutting_down: AtomicBool,
    /// One compaction at a time (background or manual).
    compacting: Mutex<Vec<Vec<u8>>>,
    gc_watermark: AtomicU64,
    /// Segments holding records after this redo position are kept (see `set_redo_retain`).
    redo_retain: AtomicU64,
    /// Every segment below this one has its rows in tables.
    flushed_log: AtomicU64,
    /// Sequence number of the active WAL segment (readable without the writer mutex).
    active_segment: AtomicU64,
    cache: Arc<BlockCache>,
    read_counters: Arc<ReadCounters>,
    counters: Counters,
}

/// A log-structured MVCC storage engine for one shard. `Send + Sync`: share it in an `Arc`.
pub struct Engine {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

/// What a full verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub tables: usize,
    pub entries: u64,
    pub wal_segments: usize,
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
            self.mem
                .insert(&op.key, ts, self.last_seq, op.value.as_deref());
        }
        self.max_ts = self.max_ts.max(ts);
    }

    /// Applies one record to the recovered row state.
    fn apply(&mut self, path: &Path, rec: WalRecord) -> Result<()> {
        match rec {
            WalRecord::Batch { commit_ts, ops, .. } => self.publish(commit_ts, ops),
            WalRecord::Prepare { txid, ops, .. } => {
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
            WalRecord::Redo { .. } => {}
        }
        Ok(())
    }
}

/// The redo blob a record carries, if any.
fn redo_of(rec: &WalRecord) -> &[u8] {
    match rec {
        WalRecord::Batch { redo, .. }
        | WalRecord::Prepare { redo, .. }
        | WalRecord::Redo { redo } => redo,
        WalRecord::Commit { .. } | WalRecord::Abort { .. } => &[],
    }
}

/// Bits of a redo position given to the offset within a segment; the segment number sits
/// above them. Positions therefore survive restarts and order like the log itself.
pub const REDO_SEGMENT_SHIFT: u32 = 36;

/// The redo position of the log byte `offset` of segment `seq`.
pub fn redo_position(seq: u64, offset: u64) -> u64 {
    debug_assert!(offset < 1 << REDO_SEGMENT_SHIFT);
    (seq << REDO_SEGMENT_SHIFT) | offset
}

fn remove_file_logged(path: &Path, why: &str) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(path = %path.display(), why, "deleted file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), why, error = %e, "could not delete file"),
    }
}

/// Bytes preallocated per WAL segment: about one memtable's worth of records, within
/// [1 MiB, 64 MiB]. A segment that outgrows it simply extends the file.
fn wal_prealloc(opts: &EngineOptions) -> u64 {
    (opts.memtable_limit_bytes as u64 + (1 << 20)).clamp(1 << 20, 64 << 20)
}

fn shutting_down() -> StorageError {
    StorageError::Poisoned("the engine is shutting down".to_owned())
}

fn table_info(level: usize, t: &Table) -> TableInfo {
    let m = t.meta();
    TableInfo {
        level: level as u32,
        id: t.id(),
        size: t.file_size(),
        min_key: m.min_key.clone(),
        max_key: m.max_key.clone(),
        min_ts: m.min_ts,
        max_ts: m.max_ts,
    }
}

impl Engine {
    /// Opens (creating if needed) the engine in `dir` and recovers its state: reads the
    /// manifest, opens its tables, replays the WAL segments they do not cover, truncates a torn
    /// WAL tail, restores undecided prepared transactions, and starts the background threads.
    pub fn open(dir: &Path, opts: EngineOptions) -> Result<Engine> {
        Engine::open_with_redo(dir, opts, u64::MAX, &mut |_, _| Ok(()))
    }

    /// [`Engine::open`] for an engine whose records carry redo for an upper layer: every redo
    /// blob logged after position `redo_after` is handed to `sink` with its position (the end
    /// of its record), in log order, before this returns — including blobs in segments whose
    /// rows are already in tables, which are kept for exactly this (see
    /// [`Engine::set_redo_retain`]). `redo_after` also becomes the initial retain position.
    pub fn open_with_redo(
        dir: &Path,
        opts: EngineOptions,
        redo_after: u64,
        sink: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<Engine> {
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
        let mut table_files = Vec::new();
        let mut manifests = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            match files::classify(name) {
                FileKind::Wal { seq } => wal_segs.push(seq),
                FileKind::Table { id } => table_files.push(id),
                FileKind::Manifest => manifests.push(dir.join(name)),
                FileKind::Temp => remove_file_logged(&dir.join(name), "unfinished temporary file"),
                FileKind::Lock | FileKind::Current | FileKind::Unknown => {}
            }
        }
        wal_segs.sort_unstable();

        let (state, old_manifest) = match manifest::recover(dir)? {
            Some((state, path)) => (state, Some(path)),
            None => {
                if !wal_segs.is_empty() || !table_files.is_empty() {
                    return Err(corruption(
                        &dir.join(manifest::CURRENT),
                        "missing, but the directory holds WAL segments or tables \
                         (a damaged engine directory, or one from an older format)",
                    ));
                }
                (
                    ManifestState {
                        next_file: 1,
                        ..ManifestState::default()
                    },
                    None,
                )
            }
        };
        let manifest_name = old_manifest.as_deref().unwrap_or(dir).to_path_buf();

        let cache = Arc::new(BlockCache::new(opts.block_cache_bytes));
        let read_counters = Arc::new(ReadCounters::default());
        let mut added = Vec::with_capacity(state.tables.len());
        for info in state.tables.values() {
            let path = table_path(dir, info.id);
            if !path.exists() {
                return Err(corruption(
                    &manifest_name,
                    format!(
                        "names table {} (level {}), whose file {} is missing",
                        info.id,
                        info.level,
                        path.display()
                    ),
                ));
            }
            if info.level as usize >= NUM_LEVELS {
                return Err(corruption(
                    &manifest_name,
                    format!("table {} is at impossible level {}", info.id, info.level),
                ));
            }
            let t = Table::open(
                &path,
                info.id,
                Arc::clone(&cache),
                Arc::clone(&read_counters),
            )?;
            added.push((info.level as usize, Arc::new(t)));
        }
        let version = Version::empty().edit(&[], added);
        version.check().map_err(|d| corruption(&manifest_name, d))?;
        // The WAL: segments below the log number are in tables; the rest must be contiguous
        // from it, since a segment at or above it is only ever deleted after the log number
        // has moved past it.
        let (covered, live): (Vec<u64>, Vec<u64>) = wal_segs
            .iter()
            .copied()
            .partition(|&s| s < state.log_number);
        // Older segments still holding redo the upper layer has not checkpointed.
        let retain_seg = (redo_after >> REDO_SEGMENT_SHIFT).max(1);
        let (redo_only, covered): (Vec<u64>, Vec<u64>) =
            covered.into_iter().partition(|&s| s >= retain_seg);
        let redo_missing = match redo_only.first() {
            Some(&first) => first != retain_seg,
            None => retain_seg < state.log_number,
        } || redo_only.windows(2).any(|w| w[1] != w[0] + 1)
            || redo_only.last().is_some_and(|&l| l + 1 != state.log_number);
        if redo_missing {
            return Err(corruption(
                &manifest_name,
                format!(
                    "WAL segments from {retain_seg} to {} hold index redo after the last \
                     index checkpoint and must all exist, but found {redo_only:?}",
                    state.log_number.saturating_sub(1)
                ),
            ));
        }
        let first_expected = state.log_number.max(1);
        let missing = match live.first() {
            Some(&first) => first != first_expected,
            None => state.log_number > 0,
        } || live.windows(2).any(|w| w[1] != w[0] + 1);
        if missing {
            return Err(corruption(
                &manifest_name,
                format!(
                    "WAL segments from {first_expected} on must all exist, but found {live:?}: \
                     acknowledged writes may be lost"
                ),
            ));
        }
        // Only now, with the manifest and WAL known consistent, delete leftovers.
        for id in table_files {
            if !state.tables.contains_key(&id) {
                remove_file_logged(&table_path(dir, id), "table not named by the manifest");
            }
        }
        for m in &manifests {
            if Some(m) != old_manifest.as_ref() {
                remove_file_logged(m, "superseded manifest");
            }
        }

        let mut replayed = Replayed {
            mem: Memtable::new(),
            pending: BTreeMap::new(),
            last_seq: 0,
            max_ts: version
                .all_tables()
                .map(|(_, t)| t.meta().high_water_ts.max(t.meta().max_ts))
                .max()
                .unwrap_or(0)
                .max(state.high_water),
        };
        let mut closed = BTreeMap::new();
        for &seq in &redo_only {
            // Sealed segments whose rows are in tables: only their redo is still needed.
            let path = wal_path(dir, seq);
            let outcome = wal::replay_segment(&path, false, |end, rec| {
                let pos = redo_position(seq, end);
                let redo = redo_of(&rec);
                if !redo.is_empty() && pos > redo_after {
                    sink(pos, redo)?;
                }
                Ok(())
            })?;
            closed.insert(seq, outcome.valid_len);
        }
        if let Some(&last) = live.last() {
            // Redo handed to the sink may be checkpointed into index pages before this open
            // finishes, so everything replayed must already be durable: a record that only
            // sat in the page cache could vanish in an OS crash after the pages were written.
            let path = wal_path(dir, last);
            File::open(&path)
                .and_then(|f| f.sync_data())
                .map_err(io_err(&path))?;
        }
        let mut last_len = 0;
        for (i, &seq) in live.iter().enumerate() {
            let path = wal_path(dir, seq);
            let is_last = i + 1 == live.len();
            let outcome = wal::replay_segment(&path, is_last, |end, rec| {
                let pos = redo_position(seq, end);
                let redo = redo_of(&rec);
                if !redo.is_empty() && pos > redo_after {
                    sink(pos, redo)?;
                }
                replayed.apply(&path, rec)
            })?;
            if outcome.torn.as_deref() == Some(wal::ZERO_FILL) {
                // The unused, preallocated end of the segment.
                wal::truncate_segment(&path, outcome.valid_len)?;
            } else if let Some(reason) = &outcome.torn {
                tracing::warn!(
                    path = %path.display(),
                    offset = outcome.valid_len,
                    discarded = outcome.file_len - outcome.valid_len,
                    reason = reason.as_str(),
                    "truncating torn tail of the WAL (an unacknowledged write)"
                );
                wal::truncate_segment(&path, outcome.valid_len)?;
            }
            if is_last {
                last_len = outcome.valid_len;
            } else {
                closed.insert(seq, outcome.valid_len);
            }
        }
        for &seq in &covered {
            remove_file_logged(&wal_path(dir, seq), "WAL segment already in a table");
        }

        let state_log_number = state.log_number;
        let manifest = Manifest::create(dir, state, old_manifest.as_deref())?;
        // Appends continue in the newest segment (after its torn tail was cut off).
        let (wal, next_segment) = match live.last() {
            Some(&seq) => {
                // Replayed records are about to become visible; some were written but never
                // fsynced before the crash, so make them durable first.
                let mut w = WalWriter::open_append(dir, seq, last_len, wal_prealloc(&opts))?;
                w.force_sync()?;
                (
                    w,
                    seq.checked_add(1).ok_or_else(|| {
                        corruption(&wal_path(dir, seq), "WAL sequence number exhausted")
                    })?,
                )
            }
            None => (
                WalWriter::create(dir, first_expected, wal_prealloc(&opts))?,
                first_expected + 1,
            ),
        };
        let wal_len = wal.len();
        let sync = SyncState {
            // The reopened segment was fsynced above; positions count from its byte 0.
            synced_lsn: wal_len,
            syncing: false,
            file: wal.handle(),
            path: wal.path().to_path_buf(),
        };
        tracing::info!(
            dir = %dir.display(),
            tables = version.all_tables().count(),
            replayed_segments = live.len(),
            recovered_bytes = replayed.mem.approx_bytes(),
            in_doubt = replayed.pending.len(),
            max_committed_ts = replayed.max_ts,
            "storage engine opened"
        );
        let counters = Counters::default();
        counters
            .wal_closed_bytes
            .store(closed.values().sum(), Ordering::Relaxed);
        counters
            .wal_active_bytes
            .store(wal.len(), Ordering::Relaxed);
        let limits = LevelLimits {
            l0_trigger: opts.l0_compaction_trigger,
            level1_bytes: opts.level1_target_bytes,
            ratio: opts.level_size_ratio,
        };
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            table_opts: TableOptions {
                block_bytes: opts.block_bytes,
                bloom_bits_per_key: opts.bloom_bits_per_key,
            },
            limits,
            _lock: lock,
            writer: Mutex::new(Writer {
                wal,
                lsn: wal_len,
                seg_start_lsn: 0,
                next_write_seq: replayed.last_seq + 1,
                next_segment,
            }),
            state: RwLock::new(Arc::new(Components {
                active: Arc::new(replayed.mem),
                immutables: Vec::new(),
                version: Arc::new(version),
            })),
            pending: Mutex::new(replayed.pending),
            visible_seq: AtomicU64::new(replayed.last_seq),
            max_committed_ts: AtomicU64::new(replayed.max_ts),
            written_lsn: AtomicU64::new(wal_len),
            synced_lsn_hint: AtomicU64::new(wal_len),
            sync: Mutex::new(sync),
            sync_cv: Condvar::new(),
            poison: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            manifest: Mutex::new(manifest),
            segments: Mutex::new(closed),
            bg: Mutex::new(BgState::default()),
            work_cv: Condvar::new(),
            done_cv: Condvar::new(),
            shutting_down: AtomicBool::new(false),
            compacting: Mutex::new(vec![Vec::new(); NUM_LEVELS]),
            gc_watermark: AtomicU64::new(0),
            redo_retain: AtomicU64::new(redo_after),
            flushed_log: AtomicU64::new(state_log_number),
            active_segment: AtomicU64::new(next_segment - 1),
            cache,
            read_counters,
            counters,
            opts,
        });
        let mut threads = Vec::with_capacity(2);
        for (name, body) in [
            ("sharddb-flush", Inner::flush_loop as fn(&Inner)),
            ("sharddb-compact", Inner::compaction_loop as fn(&Inner)),
        ] {
            let inner = Arc::clone(&inner);
            let handle = std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || body(&inner))
                .map_err(io_err(dir))?;
            threads.push(handle);
        }
        Ok(Engine { inner, threads })
    }

    /// Atomically and durably applies `batch` at version `batch.commit_ts`: one WAL record,
    /// fsynced (under [`SyncMode::Fsync`], shared with concurrent writers) before returning,
    /// then published. After a crash either all ops are visible or none.
    pub fn apply(&self, batch: &WriteBatch) -> Result<()> {
        self.apply_with_redo(batch, &[], &mut |_| {})
    }

    /// [`Engine::apply`] with an upper-layer redo blob in the same record (so it is exactly as
    /// durable as the rows). `logged` runs with the record's redo position as soon as the
    /// record is written, before waiting for the fsync: the caller's changes that the blob
    /// describes are then ordered in the log, and it may release what it held to keep them so.
    pub fn apply_with_redo(
        &self,
        batch: &WriteBatch,
        redo: &[u8],
        logged: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let mut frame = wal::encode_batch(batch.commit_ts, &batch.ops, redo)?;
        let inner = &self.inner;
        let (lsn, seq, pos) = {
            let mut w = inner.writer_for_write()?;
            let lsn = inner.append(&mut w, &mut frame)?;
            let seq = inner.insert_locked(&mut w, batch.commit_ts, &batch.ops);
            (lsn, seq, redo_position(w.wal.seq(), w.wal.len()))
        };
        logged(pos);
        inner.wait_durable(lsn)?;
        inner.visible_seq.fetch_max(seq, Ordering::AcqRel);
        Ok(())
    }

    /// Logs a redo blob alone and waits until it is durable; `logged` as in
    /// [`Engine::apply_with_redo`].
    pub fn log_redo(&self, redo: &[u8], logged: &mut dyn FnMut(u64)) -> Result<()> {
        let mut frame = wal::encode_redo(redo)?;
        let inner = &self.inner;
        let (lsn, pos) = {
            let mut w = inner.writer_for_write()?;
            let lsn = inner.append(&mut w, &mut frame)?;
            (lsn, redo_position(w.wal.seq(), w.wal.len()))
        };
        logged(pos);
        inner.wait_durable(lsn)
    }

    /// The active segment's sequence number: the segment part of [`Engine::redo_position`],
    /// without taking the writer mutex (for cheap "how far has the log moved" checks).
    pub fn redo_segment(&self) -> u64 {
        self.inner.active_segment.load(Ordering::Acquire)
    }

    /// The redo position just past everything written to the log so far.
    pub fn redo_position(&self) -> u64 {
        let w = self.inner.writer.lock();
        redo_position(w.wal.seq(), w.wal.len())
    }

    /// Returns once everything written to the log so far is durable (a page-writing layer
    /// calls it before writing pages whose changes the log describes).
    pub fn sync_wal(&self) -> Result<()> {
        let inner = &self.inner;
        // After a failed write the log's state is unknown: pages must not be written on it.
        inner.check_poison()?;
        if inner.opts.sync == SyncMode::None {
            // Even without per-commit fsyncs, pages must never run ahead of the log: that
            // would lose index entries for good, not just recent commits. Checkpoints are
            // rare, so this fsync is cheap.
            let (file, path) = {
                let s = inner.sync.lock();
                (Arc::clone(&s.file), s.path.clone())
            };
            return file.sync_data().map_err(io_err(&path));
        }
        inner.wait_durable(inner.written_lsn.load(Ordering::Acquire))
    }

    /// Returns the current redo position and lowers the retain position to it, atomically
    /// with respect to rotation: a layer that starts logging redo from here (a new index) can
    /// never find the segment holding this position deleted.
    pub fn pin_redo_position(&self) -> u64 {
        let w = self.inner.writer.lock();
        let pos = redo_position(w.wal.seq(), w.wal.len());
        self.inner.redo_retain.fetch_min(pos, Ordering::AcqRel);
        pos
    }

    /// Keeps every log segment holding records after redo position `pos` — even once its rows
    /// are in tables — until a later call moves `pos` past it. The upper layer sets it to its
    /// oldest checkpoint, so the redo it would need after a crash is never deleted. It may move
    /// backwards only to a position in the active segment (which is never deleted anyway), as
    /// when a new index starts at the current position.
    pub fn set_redo_retain(&self, pos: u64) {
        self.inner.redo_retain.store(pos, Ordering::Release);
        self.inner.retire_segments();
    }

    /// Durably records `ops` under transaction `txid` without making them visible. The
    /// transaction stays in doubt, across restarts, until [`Engine::commit_prepared`] or
    /// [`Engine::abort_prepared`].
    pub fn prepare(&self, txid: u64, ops: Vec<WriteOp>) -> Result<()> {
        self.prepare_with_redo(txid, ops, &[], &mut |_| {})
    }

    /// [`Engine::prepare`] with a redo blob, as [`Engine::apply_with_redo`]. Re-logged copies
    /// of an undecided prepare (at rotations) do not repeat the blob: redo is kept by
    /// [`Engine::set_redo_retain`], not by re-logging.
    pub fn prepare_with_redo(
        &self,
        txid: u64,
        ops: Vec<WriteOp>,
        redo: &[u8],
        logged: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let mut frame = wal::encode_prepare(txid, &ops, redo)?;
        let inner = &self.inner;
        let (lsn, pos) = {
            let mut w = inner.writer_for_write()?;
            if inner.pending.lock().contains_key(&txid) {
                return Err(StorageError::AlreadyPrepared { txid });
            }
            let lsn = inner.append(&mut w, &mut frame)?;
            inner.pending.lock().insert(txid, ops);
            (lsn, redo_position(w.wal.seq(), w.wal.len()))
        };
        logged(pos);
        inner.wait_durable(lsn)
    }

    /// Durably records the commit of prepared transaction `txid`, then makes its ops visible
    /// at `commit_ts`.
    pub fn commit_prepared(&self, txid: u64, commit_ts: u64) -> Result<()> {
        let mut frame = wal::encode_commit(txid, commit_ts)?;
        let inner = &self.inner;
        let (lsn, seq) = {
            let mut w = inner.writer_for_write()?;
            if !inner.pending.lock().contains_key(&txid) {
                return Err(StorageError::NotPrepared { txid });
            }
            let lsn = inner.append(&mut w, &mut frame)?;
            let ops = inner
                .pending
                .lock()
                .remove(&txid)
                .expect("pending changes only under the writer lock");
            let seq = inner.insert_locked(&mut w, commit_ts, &ops);
            (lsn, seq)
        };
        inner.wait_durable(lsn)?;
        inner.visible_seq.fetch_max(seq, Ordering::AcqRel);
        Ok(())
    }

    /// Durably records the abort of prepared transaction `txid` and discards its ops.
    pub fn abort_prepared(&self, txid: u64) -> Result<()> {
        let mut frame = wal::encode_abort(txid)?;
        let inner = &self.inner;
        let lsn = {
            let mut w = inner.writer_for_write()?;
            if !inner.pending.lock().contains_key(&txid) {
                return Err(StorageError::NotPrepared { txid });
            }
            let lsn = inner.append(&mut w, &mut frame)?;
            inner.pending.lock().remove(&txid);
            lsn
        };
        inner.wait_durable(lsn)
    }

    /// Prepared transactions with no recorded outcome, in ascending txid order.
    pub fn in_doubt(&self) -> Vec<u64> {
        self.inner.pending.lock().keys().copied().collect()
    }

    /// The value of `key` as of `read_ts`: the newest version with `ts <= read_ts`, `None` if
    /// there is none or it is a tombstone.
    pub fn get(&self, key: &[u8], read_ts: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.get_versioned(key, read_ts)?.and_then(|(_, v)| v))
    }

    /// The newest version of `key` with `ts <= read_ts` and its commit timestamp: `Some((ts,
    /// None))` for a tombstone, `None` if there is no version (or garbage collection removed
    /// it, which only happens below the GC watermark). Writers use it to tell whether a key
    /// changed after their snapshot.
    pub fn get_versioned(
        &self,
        key: &[u8],
        read_ts: u64,
    ) -> Result<Option<(u64, Option<Vec<u8>>)>> {
        let (snap_seq, c) = self.inner.snapshot();
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
        for imm in &c.immutables {
            consider(&mut best, imm.mem.get(key, read_ts, snap_seq));
        }
        // A table whose newest version is not newer than what we have cannot change the
        // answer (ties go to the newer source, already consulted).
        let useless = |best: &Found, t: &Table| {
            best.as_ref()
                .is_some_and(|(bts, _)| t.meta().max_ts <= *bts)
        };
        for t in &c.version.levels[0] {
            if !useless(&best, t) {
                consider(&mut best, t.get(key, read_ts)?);
            }
        }
        for level in 1..NUM_LEVELS {
            if let Some(t) = c.version.table_for_key(level, key)
                && !useless(&best, t)
            {
                consider(&mut best, t.get(key, read_ts)?);
            }
        }
        Ok(best)
    }

    /// About how many live keys lie in `[start, end)`, without reading data blocks: SSTable
    /// footers and block indexes, plus a bounded count of the memtables. Keys rewritten in
    /// several components count once per component, so it leans high; for planning only.
    pub fn estimate_keys(&self, start: &[u8], end: &[u8]) -> u64 {
        /// Memtable entries counted before extrapolating.
        const MEMTABLE_COUNT_CAP: usize = 50_000;
        let c = Arc::clone(&self.inner.state.read());
        let mut n = c.active.estimate_keys(start, end, MEMTABLE_COUNT_CAP);
        for i in &c.immutables {
            n += i.mem.estimate_keys(start, end, MEMTABLE_COUNT_CAP);
        }
        for (_, t) in c.version.all_tables() {
            n += t.estimate_keys(start, end);
        }
        n
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
        self.inner.scan_dir(
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
        self.inner.scan_dir(
            KeyRange::new(start, end),
            Direction::Reverse,
            read_ts,
            limit,
        )
    }

    /// Live entries whose key starts with `prefix`, ascending, as [`Engine::scan`].
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
        read_ts: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let end = prefix_successor(prefix);
        let end = match &end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        self.scan(Bound::Included(prefix), end, read_ts, limit)
    }

    /// The highest commit timestamp ever applied, including recovered ones; 0 if none.
    pub fn max_committed_ts(&self) -> u64 {
        self.inner.max_committed_ts.load(Ordering::Acquire)
    }

    /// Raises the garbage-collection watermark used by background compactions. The caller
    /// promises what [`super::compaction`] describes: no reader below it, and no commit at or
    /// below it from now on. It never moves backwards.
    pub fn set_gc_watermark(&self, ts: u64) {
        self.inner.gc_watermark.fetch_max(ts, Ordering::AcqRel);
    }

    /// Freezes the active memtable (if it holds anything) and waits until every immutable
    /// memtable is in an L0 table.
    pub fn flush(&self) -> Result<()> {
        let inner = &self.inner;
        // Everything written before this call lies in memtables feeding segments below
        // `target`; later rotations (by concurrent writers) need not be waited for.
        let target = {
            let mut w = inner.writer.lock();
            inner.check_poison()?;
            if !inner.state.read().active.is_empty() {
                inner.rotate(&mut w)?;
            }
            inner.state.read().immutables.first().map(|i| i.log_hi)
        };
        let Some(target) = target else {
            return Ok(());
        };
        let mut bg = inner.bg.lock();
        loop {
            let pending = inner
                .state
                .read()
                .immutables
                .iter()
                .any(|i| i.log_hi <= target);
            if !pending {
                return Ok(());
            }
            if let Some(e) = &bg.flush_error {
                return Err(StorageError::Poisoned(format!(
                    "memtable flush failed: {e}"
                )));
            }
            if bg.shutdown {
                return Err(shutting_down());
            }
            inner.done_cv.wait_for(&mut bg, Duration::from_millis(100));
        }
    }

    /// Merges every SSTable of every level into the deepest populated level, dropping versions
    /// no reader at or above `gc_watermark` can see (see [`super::compaction`] for the rule and
    /// the caller's promise). Readers and writers proceed meanwhile.
    pub fn compact(&self, gc_watermark: u64) -> Result<()> {
        let inner = &self.inner;
        inner.gc_watermark.fetch_max(gc_watermark, Ordering::AcqRel);
        let mut pointers = inner.compacting.lock();
        let v = Arc::clone(&inner.state.read().version);
        let deepest = (1..NUM_LEVELS)
            .rev()
            .find(|&l| !v.levels[l].is_empty())
            .unwrap_or(1);
        if v.all_tables().next().is_none() {
            return Ok(());
        }
        let pick = Pick {
            level: deepest - 1,
            inputs: Vec::new(),
            next_inputs: Vec::new(),
        };
        let by_level: Vec<(usize, Vec<Arc<Table>>)> = (0..=deepest)
            .map(|l| (l, v.levels[l].clone()))
            .filter(|(_, ts)| !ts.is_empty())
            .collect();
        inner.run_compaction(&pick, by_level, deepest, &mut pointers)
    }

    /// Reads every block of every table (bypassing the cache), checks checksums, ordering and
    /// level invariants, and that the manifest and the files agree.
    pub fn verify(&self) -> Result<VerifyReport> {
        let inner = &self.inner;
        let v = Arc::clone(&inner.state.read().version);
        let manifest_path = inner.manifest.lock().path().to_path_buf();
        v.check().map_err(|d| corruption(&manifest_path, d))?;
        let mut report = VerifyReport::default();
        for (_, t) in v.all_tables() {
            report.entries += t.verify()?;
            report.tables += 1;
        }
        let listed: Vec<u64> = {
            let m = inner.manifest.lock();
            m.state().tables.keys().copied().collect()
        };
        let mut in_version: Vec<u64> = v.all_tables().map(|(_, t)| t.id()).collect();
        in_version.sort_unstable();
        if listed != in_version {
            // A flush or compaction may have installed a newer version since we looked.
            let now: Vec<u64> = {
                let v = Arc::clone(&inner.state.read().version);
                let mut ids: Vec<u64> = v.all_tables().map(|(_, t)| t.id()).collect();
                ids.sort_unstable();
                ids
            };
            let listed: Vec<u64> = inner
                .manifest
                .lock()
                .state()
                .tables
                .keys()
                .copied()
                .collect();
            if listed != now {
                return Err(corruption(
                    &manifest_path,
                    format!("manifest lists tables {listed:?} but the engine holds {now:?}"),
                ));
            }
        }
        report.wal_segments = inner.segments.lock().len() + 1;
        Ok(report)
    }

    /// Current footprint and work counters.
    pub fn stats(&self) -> EngineStats {
        let inner = &self.inner;
        let c = Arc::clone(&inner.state.read());
        let levels = c.version.level_stats();
        let cache = inner.cache.stats();
        let k = &inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EngineStats {
            memtable_bytes: c.active.approx_bytes()
                + c.immutables
                    .iter()
                    .map(|i| i.mem.approx_bytes())
                    .sum::<usize>(),
            immutable_memtables: c.immutables.len(),
            sstable_count: levels.iter().map(|l| l.files).sum(),
            sstable_bytes: levels.iter().map(|l| l.bytes).sum(),
            levels,
            wal_bytes: get(&k.wal_closed_bytes) + get(&k.wal_active_bytes),
            wal_segments: inner.segments.lock().len() + 1,
            wal_records: get(&k.wal_records),
            wal_syncs: get(&k.wal_syncs),
            bloom_checks: get(&inner.read_counters.bloom_checks),
            bloom_negatives: get(&inner.read_counters.bloom_negatives),
            bloom_false_positives: get(&inner.read_counters.bloom_false_positives),
            cache_hits: cache.hits,
            cache_misses: cache.misses,
            cache_bytes: cache.bytes,
            cache_capacity: cache.capacity,
            user_bytes: get(&k.user_bytes),
            flush_bytes: get(&k.flush_bytes),
            compaction_bytes_written: get(&k.compaction_written),
            compaction_bytes_read: get(&k.compaction_read),
            flushes: get(&k.flushes),
            compactions: get(&k.compactions),
            write_stalls: get(&k.stalls),
            stall_micros: get(&k.stall_micros),
        }
    }

    /// Blocks until no background compaction is due (all level scores below 1) and no
    /// immutable memtable waits. For tests and benchmarks that want a settled tree.
    pub fn wait_for_background(&self) -> Result<()> {
        self.flush_pending()?;
        let inner = &self.inner;
        let mut bg = inner.bg.lock();
        loop {
            let v = Arc::clone(&inner.state.read().version);
            let busy = inner.limits.scores(&v).iter().any(|&s| s >= 1.0)
                || !inner.state.read().immutables.is_empty();
            if !busy {
                return Ok(());
            }
            if bg.shutdown {
                return Err(shutting_down());
            }
            if let Some(e) = &bg.flush_error {
                return Err(StorageError::Poisoned(format!(
                    "memtable flush failed: {e}"
                )));
            }
            inner.work_cv.notify_all();
            inner.done_cv.wait_for(&mut bg, Duration::from_millis(50));
        }
    }

    /// Waits for immutable memtables already queued, without freezing the active one.
    fn flush_pending(&self) -> Result<()> {
        let inner = &self.inner;
        let mut bg = inner.bg.lock();
        while !inner.state.read().immutables.is_empty() {
            if let Some(e) = &bg.flush_error {
                return Err(StorageError::Poisoned(format!(
                    "memtable flush failed: {e}"
                )));
            }
            inner.done_cv.wait_for(&mut bg, Duration::from_millis(50));
        }
        Ok(())
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` if there is none
/// (the prefix is all 0xFF bytes). Shared by every layer that turns a prefix into a range.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Inner {
    /// Deletes closed segments whose rows are all in tables and which hold no redo after the
    /// retain position.
    fn retire_segments(&self) {
        let limit = self
            .flushed_log
            .load(Ordering::Acquire)
            .min(self.redo_retain.load(Ordering::Acquire) >> REDO_SEGMENT_SHIFT);
        let retired: Vec<(u64, u64)> = {
            let mut segs = self.segments.lock();
            let keep = segs.split_off(&limit);
            std::mem::replace(&mut *segs, keep).into_iter().collect()
        };
        if retired.is_empty() {
            return;
        }
        for (seq, bytes) in retired {
            remove_file_logged(&wal_path(&self.dir, seq), "WAL segment no longer needed");
            self.counters
                .wal_closed_bytes
                .fetch_sub(bytes, Ordering::Relaxed);
        }
        if let Err(e) = sync_dir(&self.dir) {
            // Recovery deletes retired segments again, so this only delays reclamation.
            tracing::warn!(error = %e, "directory sync after WAL cleanup failed");
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
        let mut sources: Vec<Box<dyn EntryIter>> = Vec::with_capacity(8);
        sources.push(Box::new(c.active.iter(range.clone(), dir, snap_seq)));
        for imm in &c.immutables {
            sources.push(Box::new(imm.mem.iter(range.clone(), dir, snap_seq)));
        }
        for t in &c.version.levels[0] {
            let m = t.meta();
            if m.entry_count > 0 && m.min_ts <= read_ts && range.overlaps(&m.min_key, &m.max_key) {
                sources.push(Box::new(t.iter(range.clone(), dir)));
            }
        }
        for level in &c.version.levels[1..] {
            let it = LevelIter::new(level, range.clone(), dir);
            if !it.is_empty() {
                sources.push(Box::new(it));
            }
        }
        let mut merged = MergeIter::new(dir, sources)?;
        collect_visible(&mut merged, dir, read_ts, limit)
    }

    fn check_poison(&self) -> Result<()> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        match &*self.poison.lock() {
            Some(reason) => Err(StorageError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    fn set_poison(&self, reason: String) {
        tracing::error!(
            reason,
            "WAL failure; engine refuses further writes until reopened"
        );
        self.poison.lock().get_or_insert(reason);
        self.poisoned.store(true, Ordering::Release);
    }

    /// Takes the writer mutex for one write, first making room: rotating a full memtable and
    /// waiting (throttling) while flushes or L0 compactions are behind.
    fn writer_for_write(&self) -> Result<parking_lot::MutexGuard<'_, Writer>> {
        let l0 = self.state.read().version.levels[0].len();
        if l0 >= self.opts.l0_slowdown_trigger && l0 < self.opts.l0_stop_trigger {
            // Give compaction a share of the disk before this write, rather than stopping
            // writes outright later.
            self.counters.stalls.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
            self.counters
                .stall_micros
                .fetch_add(1000, Ordering::Relaxed);
        }
        let mut w = self.writer.lock();
        let mut stalled: Option<Instant> = None;
        loop {
            self.check_poison()?;
            let (full, immutables, l0) = {
                let c = self.state.read();
                (
                    c.active.approx_bytes() >= self.opts.memtable_limit_bytes,
                    c.immutables.len(),
                    c.version.levels[0].len(),
                )
            };
            let must_wait = (full && immutables >= self.opts.max_immutable_memtables.max(1))
                || l0 >= self.opts.l0_stop_trigger;
            if !must_wait {
                if full {
                    self.rotate(&mut w)?;
                }
                break;
            }
            stalled.get_or_insert_with(Instant::now);
            let mut bg = self.bg.lock();
            if bg.shutdown {
                return Err(shutting_down());
            }
            if let Some(e) = &bg.flush_error {
                return Err(StorageError::Poisoned(format!(
                    "background flush is failing, so writes cannot proceed: {e}"
                )));
            }
            if l0 >= self.opts.l0_stop_trigger
                && let Some(e) = &bg.compaction_error
            {
                return Err(StorageError::Poisoned(format!(
                    "background compaction is failing and L0 is full, so writes cannot proceed: {e}"
                )));
            }
            self.work_cv.notify_all();
            self.done_cv.wait_for(&mut bg, Duration::from_millis(100));
        }
        if let Some(since) = stalled {
            self.counters.stalls.fetch_add(1, Ordering::Relaxed);
            self.counters
                .stall_micros
                .fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        Ok(w)
    }

    /// Writes a frame to the active segment (no fsync) and returns the log position that must
    /// become durable before it may be acknowledged. A failure poisons the engine: a partial
    /// frame may now sit mid-log.
    fn append(&self, w: &mut Writer, frame: &mut [u8]) -> Result<u64> {
        // How much of this segment an fsync has covered: a later reader of the log uses it to
        // tell a torn unsynced tail from damaged acknowledged data (see `wal`).
        let durable = self
            .synced_lsn_hint
            .load(Ordering::Acquire)
            .saturating_sub(w.seg_start_lsn)
            .min(w.wal.len());
        if let Err(e) = w.wal.write_frame(frame, durable) {
            self.set_poison(e.to_string());
            return Err(e);
        }
        w.lsn += frame.len() as u64;
        self.written_lsn.store(w.lsn, Ordering::Release);
        self.counters.wal_records.fetch_add(1, Ordering::Relaxed);
        self.counters
            .wal_active_bytes
            .store(w.wal.len(), Ordering::Relaxed);
        Ok(w.lsn)
    }

    /// Inserts one batch under a fresh sequence number (invisible until published) and
    /// returns that number.
    fn insert_locked(&self, w: &mut Writer, commit_ts: u64, ops: &[WriteOp]) -> u64 {
        let seq = w.next_write_seq;
        w.next_write_seq += 1;
        // Only writers replace `active`, and we are the writer: this stays the active table.
        let active = Arc::clone(&self.state.read().active);
        let mut bytes = 0u64;
        for op in ops {
            bytes += (op.key.len() + op.value.as_ref().map_or(0, Vec::len)) as u64;
            active.insert(&op.key, commit_ts, seq, op.value.as_deref());
        }
        self.counters.user_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.max_committed_ts.fetch_max(commit_ts, Ordering::AcqRel);
        seq
    }

    /// Group commit: returns once the WAL is durable at least up to `lsn`. The first waiter
    /// that finds no fsync in flight syncs everything written so far; the rest wait for it.
    fn wait_durable(&self, lsn: u64) -> Result<()> {
        if self.opts.sync == SyncMode::None {
            return Ok(());
        }
        let mut s = self.sync.lock();
        loop {
            if s.synced_lsn >= lsn {
                return Ok(());
            }
            if s.syncing {
                self.sync_cv.wait(&mut s);
                continue;
            }
            self.check_poison()?;
            s.syncing = true;
            let file = Arc::clone(&s.file);
            let path = s.path.clone();
            // Everything written before this load is in `file` or in an older segment that
            // its rotation already fsynced.
            let target = self.writer_lsn_hint();
            let result = parking_lot::MutexGuard::unlocked(&mut s, || file.sync_data());
            s.syncing = false;
            match result {
                Ok(()) => {
                    s.synced_lsn = s.synced_lsn.max(target);
                    self.synced_lsn_hint
                        .fetch_max(s.synced_lsn, Ordering::AcqRel);
                    self.counters.wal_syncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.set_poison(io_err(&path)(e).to_string());
                }
            }
            self.sync_cv.notify_all();
        }
    }

    /// The WAL position reached by writes so far. Read under the sync mutex; the writer
    /// publishes it after each write, so it never runs ahead of bytes actually written.
    fn writer_lsn_hint(&self) -> u64 {
        self.written_lsn.load(Ordering::Acquire)
    }
}

impl Inner {
    /// Freezes the active memtable: fsyncs the active segment (so everything in the memtable
    /// is durable and may be published), starts a new segment holding a copy of every
    /// undecided prepare, and queues the memtable for the flush thread.
    fn rotate(&self, w: &mut Writer) -> Result<()> {
        // A failed group-commit fsync poisons without the writer lock; Linux reports an fsync
        // error only once, so a later fsync succeeding proves nothing about the failed writes.
        self.check_poison()?;
        // Sealed before the new segment exists: a crash in between leaves it the newest
        // segment, whose zero tail replay accepts.
        if let Err(e) = w.wal.seal() {
            self.set_poison(e.to_string());
            return Err(e);
        }
        self.check_poison()?;
        let seg = w.next_segment;
        let mut new_wal = WalWriter::create(&self.dir, seg, wal_prealloc(&self.opts))?;
        let relog = (|| {
            for (txid, ops) in self.pending.lock().iter() {
                // Nothing of the new segment is durable yet.
                new_wal.write_frame(&mut wal::encode_prepare(*txid, ops, &[])?, 0)?;
            }
            new_wal.force_sync()
        })();
        if let Err(e) = relog {
            let path = new_wal.path().to_path_buf();
            drop(new_wal);
            remove_file_logged(&path, "abandoned WAL rotation");
            return Err(e);
        }
        w.next_segment += 1;
        self.active_segment.store(seg, Ordering::Release);
        let relogged = new_wal.len();
        let old = std::mem::replace(&mut w.wal, new_wal);
        self.segments.lock().insert(old.seq(), old.len());
        self.counters
            .wal_closed_bytes
            .fetch_add(old.len(), Ordering::Relaxed);
        self.counters
            .wal_active_bytes
            .store(relogged, Ordering::Relaxed);
        w.seg_start_lsn = w.lsn;
        w.lsn += relogged;
        self.written_lsn.store(w.lsn, Ordering::Release);
        {
            let mut s = self.sync.lock();
            s.synced_lsn = s.synced_lsn.max(w.lsn);
            self.synced_lsn_hint
                .fetch_max(s.synced_lsn, Ordering::AcqRel);
            s.file = w.wal.handle();
            s.path = w.wal.path().to_path_buf();
        }
        self.sync_cv.notify_all();
        // Everything written so far is durable: the frozen memtable is entirely publishable.
        self.visible_seq
            .fetch_max(w.next_write_seq - 1, Ordering::AcqRel);
        {
            let mut st = self.state.write();
            let frozen = Arc::new(Immutable {
                mem: Arc::clone(&st.active),
                log_hi: seg,
            });
            let immutables = std::iter::once(frozen)
                .chain(st.immutables.iter().cloned())
                .collect();
            *st = Arc::new(Components {
                active: Arc::new(Memtable::new()),
                immutables,
                version: Arc::clone(&st.version),
            });
        }
        drop(old);
        let _bg = self.bg.lock();
        self.work_cv.notify_all();
        Ok(())
    }

    /// Waits on the work condition variable; false once the engine shuts down.
    fn idle(&self, timeout: Duration) -> bool {
        let mut bg = self.bg.lock();
        if bg.shutdown {
            return false;
        }
        self.work_cv.wait_for(&mut bg, timeout);
        !bg.shutdown
    }

    /// Wakes foreground waiters after background progress.
    fn progressed(&self) {
        let _bg = self.bg.lock();
        self.done_cv.notify_all();
        self.work_cv.notify_all();
    }

    fn flush_loop(&self) {
        loop {
            let job = self.state.read().immutables.last().cloned();
            let Some(job) = job else {
                if !self.idle(Duration::from_millis(200)) {
                    return;
                }
                continue;
            };
            match self.flush_one(&job) {
                Ok(()) => {
                    self.bg.lock().flush_error = None;
                    self.progressed();
                }
                Err(e) => {
                    if self.shutting_down.load(Ordering::Acquire) {
                        return;
                    }
                    tracing::error!(error = %e, "memtable flush failed; retrying");
                    self.bg.lock().flush_error = Some(e.to_string());
                    self.progressed();
                    if !self.idle(Duration::from_millis(500)) {
                        return;
                    }
                }
            }
        }
    }

    /// Writes the oldest immutable memtable as an L0 table, records it (and the WAL segments
    /// it retires) in the manifest, installs it, and deletes the retired segments.
    fn flush_one(&self, job: &Arc<Immutable>) -> Result<()> {
        let started = Instant::now();
        let table = if job.mem.is_empty() {
            None
        } else {
            let id = self.manifest.lock().next_file();
            let path = table_path(&self.dir, id);
            let mut builder = TableBuilder::create(&path, &self.table_opts)?;
            let mut n = 0u64;
            let filled = job.mem.for_each_version(|key, ts, value| {
                builder.add_parts(key, ts, value)?;
                n += 1;
                if n.is_multiple_of(4096) && self.shutting_down.load(Ordering::Acquire) {
                    return Err(shutting_down());
                }
                Ok(())
            });
            if let Err(e) = filled {
                builder.abandon();
                return Err(e);
            }
            let high_water = self.max_committed_ts.load(Ordering::Acquire);
            builder.finish(high_water)?;
            let table = Table::open(
                &path,
                id,
                Arc::clone(&self.cache),
                Arc::clone(&self.read_counters),
            )?;
            Some(Arc::new(table))
        };
        let mut changes = Vec::with_capacity(2);
        if let Some(t) = &table {
            changes.push(Change::AddTable(table_info(0, t)));
        }
        changes.push(Change::LogNumber(job.log_hi));
        changes.push(Change::HighWater(
            self.max_committed_ts.load(Ordering::Acquire),
        ));
        {
            let mut m = self.manifest.lock();
            // On failure the edit's fate is unknown, so its table stays; if the edit did not
            // become durable, the next open deletes the table as an orphan.
            m.log(changes)?;
            let mut st = self.state.write();
            let added: Vec<(usize, Arc<Table>)> =
                table.iter().map(|t| (0, Arc::clone(t))).collect();
            *st = Arc::new(Components {
                active: Arc::clone(&st.active),
                immutables: st
                    .immutables
                    .iter()
                    .filter(|i| !Arc::ptr_eq(i, job))
                    .cloned()
                    .collect(),
                version: Arc::new(st.version.edit(&[], added)),
            });
        }
        self.flushed_log.fetch_max(job.log_hi, Ordering::AcqRel);
        self.retire_segments();
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = &table {
            self.counters
                .flush_bytes
                .fetch_add(t.file_size(), Ordering::Relaxed);
            tracing::debug!(
                table = t.id(),
                entries = t.meta().entry_count,
                bytes = t.file_size(),
                millis = started.elapsed().as_millis() as u64,
                "flushed memtable to L0"
            );
        }
        Ok(())
    }

    fn compaction_loop(&self) {
        loop {
            let did = {
                let mut pointers = self.compacting.lock();
                let v = Arc::clone(&self.state.read().version);
                match self.limits.pick(&v, &pointers) {
                    None => Ok(false),
                    Some(pick) => {
                        let by_level = vec![
                            (pick.level, pick.inputs.clone()),
                            (pick.output_level(), pick.next_inputs.clone()),
                        ];
                        let out = pick.output_level();
                        self.run_compaction(&pick, by_level, out, &mut pointers)
                            .map(|()| true)
                    }
                }
            };
            match did {
                Ok(true) => {
                    self.bg.lock().compaction_error = None;
                    self.progressed();
                }
                Ok(false) => {
                    if !self.idle(Duration::from_millis(500)) {
                        return;
                    }
                }
                Err(e) => {
                    if self.shutting_down.load(Ordering::Acquire) {
                        return;
                    }
                    tracing::error!(error = %e, "compaction failed; will retry");
                    self.bg.lock().compaction_error = Some(e.to_string());
                    self.progressed();
                    if !self.idle(Duration::from_secs(1)) {
                        return;
                    }
                }
            }
        }
    }

    /// Merges `by_level` (tables grouped by level, shallowest first) into `output_level`,
    /// dropping versions below the GC watermark that no reader can see, and swaps the result
    /// in with one manifest edit. A single input table with nothing to merge against is moved
    /// down by the edit alone.
    fn run_compaction(
        &self,
        pick: &Pick,
        by_level: Vec<(usize, Vec<Arc<Table>>)>,
        output_level: usize,
        pointers: &mut [Vec<u8>],
    ) -> Result<()> {
        let inputs: Vec<Arc<Table>> = by_level
            .iter()
            .flat_map(|(_, t)| t.iter().cloned())
            .collect();
        if inputs.is_empty() {
            return Ok(());
        }
        let input_ids: Vec<u64> = inputs.iter().map(|t| t.id()).collect();
        let next_pointer = key_span(&pick.inputs).map(|(_, max)| max);
        if pick.inputs.len() == 1 && pick.next_inputs.is_empty() {
            let t = &inputs[0];
            let mut m = self.manifest.lock();
            m.log(vec![
                Change::RemoveTable { id: t.id() },
                Change::AddTable(table_info(output_level, t)),
            ])?;
            let mut st = self.state.write();
            *st = Arc::new(Components {
                active: Arc::clone(&st.active),
                immutables: st.immutables.clone(),
                version: Arc::new(
                    st.version
                        .edit(&input_ids, vec![(output_level, Arc::clone(t))]),
                ),
            });
            tracing::debug!(
                table = t.id(),
                from = by_level[0].0,
                to = output_level,
                "moved table down"
            );
            if let Some(p) = next_pointer {
                pointers[pick.level] = p;
            }
            return Ok(());
        }

        let started = Instant::now();
        let watermark = self.gc_watermark.load(Ordering::Acquire);
        let mut sources: Vec<Box<dyn EntryIter>> = Vec::new();
        for (level, tables) in &by_level {
            if *level == 0 {
                for t in tables {
                    sources.push(Box::new(t.iter(KeyRange::all(), Direction::Forward)));
                }
            } else {
                sources.push(Box::new(LevelIter::new(
                    tables,
                    KeyRange::all(),
                    Direction::Forward,
                )));
            }
        }
        let merged = MergeIter::new(Direction::Forward, sources)?;
        // A prepared, undecided transaction may still commit below a tombstone's timestamp
        // (its commit timestamp was chosen before the watermark passed it), so its keys keep
        // their tombstones.
        let prepared: std::collections::HashSet<Vec<u8>> = self
            .pending
            .lock()
            .values()
            .flat_map(|ops| ops.iter().map(|op| op.key.clone()))
            .collect();
        // Everything outside the inputs, looked up at the moment a tombstone is judged (so the
        // compaction pins no memtable): data committed after the watermark was set is above
        // it and harmless; anything else is in a memtable or table found here, including
        // memtables flushed to new L0 tables since the compaction began.
        let mut gc = GcIter::new(merged, watermark, |key: &[u8], ts: u64| {
            if prepared.contains(key) {
                return true;
            }
            let c = Arc::clone(&self.state.read());
            c.active.has_version_below(key, ts)
                || c.immutables
                    .iter()
                    .any(|i| i.mem.has_version_below(key, ts))
                || c.version
                    .all_tables()
                    .any(|(_, t)| !input_ids.contains(&t.id()) && t.may_contain(key))
        });
        let high_water = inputs
            .iter()
            .map(|t| t.meta().high_water_ts)
            .max()
            .unwrap_or(0);

        let mut outputs: Vec<Arc<Table>> = Vec::new();
        let mut builder: Option<(TableBuilder, u64)> = None;
        let result = (|| -> Result<()> {
            let mut last_key: Option<Vec<u8>> = None;
            let mut n = 0u64;
            while let Some(e) = gc.next_entry()? {
                n += 1;
                if n.is_multiple_of(4096) && self.shutting_down.load(Ordering::Acquire) {
                    return Err(shutting_down());
                }
                let new_key = last_key.as_deref() != Some(e.key.as_slice());
                // Split only between user keys: all versions of a key stay in one table.
                if new_key
                    && builder
                        .as_ref()
                        .is_some_and(|(b, _)| b.approx_file_size() >= self.opts.target_file_bytes)
                {
                    let (b, id) = builder.take().expect("checked");
                    outputs.push(self.finish_output(b, id, high_water)?);
                }
                if builder.is_none() {
                    let id = self.manifest.lock().next_file();
                    let b = TableBuilder::create(&table_path(&self.dir, id), &self.table_opts)?;
                    builder = Some((b, id));
                }
                let (b, _) = builder.as_mut().expect("just created");
                add_entry(b, &e)?;
                if new_key {
                    last_key = Some(e.key);
                }
            }
            if let Some((b, id)) = builder.take() {
                if b.entry_count() > 0 {
                    outputs.push(self.finish_output(b, id, high_water)?);
                } else {
                    b.abandon();
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            if let Some((b, _)) = builder.take() {
                b.abandon();
            }
            for t in &outputs {
                remove_file_logged(t.path(), "output of a failed compaction");
            }
            return Err(e);
        }
        let dropped = gc.dropped;

        let mut changes: Vec<Change> = input_ids
            .iter()
            .map(|&id| Change::RemoveTable { id })
            .collect();
        changes.extend(
            outputs
                .iter()
                .map(|t| Change::AddTable(table_info(output_level, t))),
        );
        {
            let mut m = self.manifest.lock();
            // As for flushes: outputs of an edit of unknown fate are left for recovery.
            m.log(changes)?;
            let mut st = self.state.write();
            let added = outputs
                .iter()
                .map(|t| (output_level, Arc::clone(t)))
                .collect();
            *st = Arc::new(Components {
                active: Arc::clone(&st.active),
                immutables: st.immutables.clone(),
                version: Arc::new(st.version.edit(&input_ids, added)),
            });
        }
        if let Some(p) = next_pointer {
            pointers[pick.level] = p;
        }
        // Open handles keep serving readers that still hold the inputs.
        for t in &inputs {
            remove_file_logged(t.path(), "compacted into new tables");
            self.cache.erase_table(t.id());
        }
        if let Err(e) = sync_dir(&self.dir) {
            tracing::warn!(error = %e, "directory sync after compaction failed");
        }
        let read: u64 = inputs.iter().map(|t| t.file_size()).sum();
        let written: u64 = outputs.iter().map(|t| t.file_size()).sum();
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        self.counters
            .compaction_read
            .fetch_add(read, Ordering::Relaxed);
        self.counters
            .compaction_written
            .fetch_add(written, Ordering::Relaxed);
        tracing::debug!(
            inputs = inputs.len(),
            outputs = outputs.len(),
            output_level,
            read,
            written,
            dropped_versions = dropped,
            gc_watermark = watermark,
            millis = started.elapsed().as_millis() as u64,
            "compaction finished"
        );
        Ok(())
    }

    fn finish_output(&self, b: TableBuilder, id: u64, high_water: u64) -> Result<Arc<Table>> {
        b.finish(high_water)?;
        let t = Table::open(
            &table_path(&self.dir, id),
            id,
            Arc::clone(&self.cache),
            Arc::clone(&self.read_counters),
        )?;
        Ok(Arc::new(t))
    }
}

fn add_entry(b: &mut TableBuilder, e: &Entry) -> Result<()> {
    b.add(e)
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        {
            let mut bg = self.inner.bg.lock();
            bg.shutdown = true;
            self.inner.work_cv.notify_all();
            self.inner.done_cv.notify_all();
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a storage background thread panicked");
            }
        }
        // Under SyncMode::None this narrows the window for losing acknowledged writes to an OS
        // crash; under Fsync everything is already durable.
        self.inner.writer.lock().wal.sync_on_close();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.inner.dir)
            .field("opts", &self.inner.opts)
            .field("max_committed_ts", &self.max_committed_ts())
            .finish_non_exhaustive()
    }
}

//! The per-shard storage engine: a log-structured store of MVCC versions.
//!
//! Every shard owns one [`Engine`]. It stores *versions*: a user key (arbitrary bytes) paired
//! with a commit timestamp, holding either a value or a tombstone. The internal order is
//! user key ascending (bytewise), then timestamp **descending**, so the newest version of a key
//! is met first by a forward iterator:
//!
//! ```text
//!   ("a", 9) < ("a", 4) < ("a", 1) < ("b", 7) < ("b", 2) < ...
//! ```
//!
//! A reader at `read_ts` sees, per user key, the newest version with `ts <= read_ts`; if that
//! version is a tombstone the key does not exist for that reader.
//!
//! ```text
//!   apply / prepare / commit ──▶ WAL segment (fsync) ──▶ active memtable ──(limit)──▶ frozen
//!                                                                                      │ flush
//!   get / scan ◀── k-way merge ◀── active + frozen memtables + SSTables (newest first) ◀┘
//! ```
//!
//! Module boundaries (each grows independently when the engine becomes a leveled LSM):
//! - `wal`: segment files, record framing, replay with torn-tail handling.
//! - `memtable`: the in-memory sorted version map and its snapshot iterators.
//! - `sstable`: the immutable sorted file format, its builder, reader and iterators.
//! - `iter`: the shared entry type, k-way merge and MVCC visibility resolution.
//! - `compaction`: the garbage-collection rule applied when tables are merged.
//! - `files`: on-disk naming scheme and directory durability helpers.
//! - `engine`: the orchestration — recovery, write path, flush, compaction, reads.
//!
//! Invariants the whole module keeps:
//! - A write is acknowledged only after its WAL record is durable (with [`SyncMode::Fsync`]).
//! - Readers never observe part of a batch, and never wait for an fsync.
//! - Every byte read back from disk is covered by a CRC32C; a mismatch is reported as
//!   [`StorageError::Corruption`] naming the file, never skipped silently. The only bytes that
//!   may be discarded are an unacknowledged torn record at the tail of the newest WAL segment.

mod bloom;
mod cache;
mod compaction;
mod engine;
mod files;
mod iter;
mod manifest;
mod memtable;
mod sstable;
pub mod stress;
mod version;
mod wal;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use engine::{Engine, REDO_SEGMENT_SHIFT, VerifyReport, prefix_successor, redo_position};

/// How hard the engine works to make an acknowledged write survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Every WAL append is followed by `fdatasync` before the write is acknowledged, and every
    /// SSTable and directory change is fsynced. This is the only mode that is crash-safe.
    #[default]
    Fsync,
    /// WAL appends are handed to the OS without fsync. **Unsafe**: an OS crash or power loss may
    /// lose acknowledged writes or leave a WAL that fails recovery with a corruption error. A
    /// process crash alone loses nothing. Meant only for benchmarks and tests. SSTables and
    /// directory operations are still fsynced, because flushes delete WAL segments.
    None,
}

/// Tuning knobs for [`Engine::open`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Once the active memtable holds at least this many (approximate) bytes it becomes
    /// immutable, the WAL rotates, and a background thread flushes it to an L0 SSTable.
    pub memtable_limit_bytes: usize,
    /// Immutable memtables allowed to wait for a flush; a writer that would exceed this waits
    /// (is throttled) until a flush finishes. Memtable memory is therefore bounded by about
    /// `(max_immutable_memtables + 1) * memtable_limit_bytes`.
    pub max_immutable_memtables: usize,
    /// Durability of WAL appends; see [`SyncMode`].
    pub sync: SyncMode,
    /// Memory limit of the engine's block cache (decoded SSTable data blocks).
    pub block_cache_bytes: usize,
    /// Target size of an SSTable data block before compression of shared key prefixes.
    pub block_bytes: usize,
    /// Bloom filter bits per distinct user key (about 1% false positives at 10).
    pub bloom_bits_per_key: usize,
    /// Compactions split their output into files of about this size.
    pub target_file_bytes: u64,
    /// Number of L0 files that triggers an L0 → L1 compaction.
    pub l0_compaction_trigger: usize,
    /// Number of L0 files at which each write is delayed briefly, and at which writes wait for
    /// compaction to catch up.
    pub l0_slowdown_trigger: usize,
    pub l0_stop_trigger: usize,
    /// Target size of L1; each deeper level may hold `level_size_ratio` times more.
    pub level1_target_bytes: u64,
    pub level_size_ratio: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memtable_limit_bytes: 32 * 1024 * 1024,
            max_immutable_memtables: 2,
            sync: SyncMode::Fsync,
            block_cache_bytes: 32 * 1024 * 1024,
            block_bytes: 4096,
            bloom_bits_per_key: 10,
            target_file_bytes: 8 * 1024 * 1024,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 12,
            l0_stop_trigger: 20,
            level1_target_bytes: 64 * 1024 * 1024,
            level_size_ratio: 10,
        }
    }
}

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system I/O call failed on the named file or directory.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Bytes read from the named file are not what the engine wrote (bad checksum, malformed
    /// structure, inconsistent log). The engine never guesses past such damage.
    #[error("corruption in {}: {detail}", path.display())]
    Corruption { path: PathBuf, detail: String },
    /// `prepare` was called for a transaction id that is already prepared and undecided.
    #[error("transaction {txid} is already prepared")]
    AlreadyPrepared { txid: u64 },
    /// `commit_prepared` / `abort_prepared` named a transaction that is not prepared (never
    /// prepared, or its outcome was already recorded).
    #[error("transaction {txid} is not prepared (unknown, or already committed or aborted)")]
    NotPrepared { txid: u64 },
    /// The caller passed something the engine cannot store (e.g. a record over the size limit).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Another engine instance (in this or another process) holds the directory lock.
    #[error("storage directory {} is already in use by another engine instance", path.display())]
    Locked { path: PathBuf },
    /// An earlier WAL write or fsync failed, so the on-disk log state is unknown; the engine
    /// refuses further writes until it is reopened (and recovery re-establishes the truth).
    #[error("engine refuses writes after an earlier WAL failure: {0}; reopen the engine")]
    Poisoned(String),
}

/// Result alias used throughout the storage engine.
pub type Result<T> = std::result::Result<T, StorageError>;

/// One key mutation: `Some(value)` writes a value, `None` writes a tombstone (delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOp {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

impl WriteOp {
    /// A put of `value` under `key`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> WriteOp {
        WriteOp {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    /// A delete (tombstone) of `key`.
    pub fn delete(key: impl Into<Vec<u8>>) -> WriteOp {
        WriteOp {
            key: key.into(),
            value: None,
        }
    }
}

/// A set of mutations that become durable and visible together at version `commit_ts`.
/// If the same key appears twice, the later op wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBatch {
    pub commit_ts: u64,
    pub ops: Vec<WriteOp>,
}

/// Size and file count of one LSM level.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LevelStats {
    /// 0 for the overlapping level fed by flushes, 1.. for the sorted levels below it.
    pub level: usize,
    pub files: usize,
    pub bytes: u64,
}

/// A point-in-time summary of the engine's footprint and of its work counters since open.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EngineStats {
    /// Approximate bytes held by the active and all immutable memtables.
    pub memtable_bytes: usize,
    /// Immutable memtables waiting for (or in) a background flush.
    pub immutable_memtables: usize,
    /// Number of live SSTables over all levels.
    pub sstable_count: usize,
    /// Total size in bytes of the live SSTable files.
    pub sstable_bytes: u64,
    /// Per level, L0 first; every level the engine manages is listed, empty ones included.
    pub levels: Vec<LevelStats>,
    /// Total size in bytes of the live WAL segments.
    pub wal_bytes: u64,
    /// Number of live WAL segments.
    pub wal_segments: usize,
    /// WAL records appended and fsyncs issued since open: records/syncs is the group-commit
    /// factor.
    pub wal_records: u64,
    pub wal_syncs: u64,
    /// Point reads that consulted a table's bloom filter, and how many of those it answered
    /// "definitely absent" (a block read avoided).
    pub bloom_checks: u64,
    pub bloom_negatives: u64,
    /// Bloom filter said "maybe" but the table did not hold the key.
    pub bloom_false_positives: u64,
    /// Block cache lookups that hit / missed, and its current and maximum size.
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bytes: u64,
    pub cache_capacity: u64,
    /// Key and value bytes accepted from callers since open.
    pub user_bytes: u64,
    /// Bytes written to SSTables by flushes and by compactions since open.
    pub flush_bytes: u64,
    pub compaction_bytes_written: u64,
    pub compaction_bytes_read: u64,
    pub flushes: u64,
    pub compactions: u64,
    /// Writes that had to wait because flushes or L0 compactions fell behind, and the total
    /// time they waited.
    pub write_stalls: u64,
    pub stall_micros: u64,
}

impl EngineStats {
    /// Bytes the engine wrote to disk (WAL + flushes + compactions) per byte the caller wrote.
    /// 0 before anything was written.
    pub fn write_amplification(&self) -> f64 {
        if self.user_bytes == 0 {
            return 0.0;
        }
        let wal_and_tables = self.flush_bytes + self.compaction_bytes_written;
        // The WAL roughly carries the user bytes once more (plus framing).
        (self.user_bytes + wal_and_tables) as f64 / self.user_bytes as f64
    }

    /// Bytes on disk per byte of the deepest non-empty level, which holds (at most) one version
    /// of each key after compaction: the usual leveled-LSM estimate. 1.0 is the ideal; 0 when
    /// nothing is on disk.
    pub fn space_amplification(&self) -> f64 {
        let last = self
            .levels
            .iter()
            .rev()
            .find(|l| l.bytes > 0)
            .map_or(0, |l| l.bytes);
        if last == 0 {
            return 0.0;
        }
        (self.sstable_bytes + self.wal_bytes) as f64 / last as f64
    }
}

/// Builds a closure that attaches `path` to an `io::Error`, so every I/O failure names its file.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Shorthand for a corruption error naming `path`.
pub(crate) fn corruption(path: &Path, detail: impl Into<String>) -> StorageError {
    StorageError::Corruption {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

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

mod compaction;
mod engine;
mod files;
mod iter;
mod memtable;
mod sstable;
mod wal;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use engine::Engine;

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
    /// Once the active memtable holds at least this many (approximate) bytes after a write,
    /// that write rotates the WAL and flushes the memtable into an SSTable.
    pub memtable_limit_bytes: usize,
    /// Durability of WAL appends; see [`SyncMode`].
    pub sync: SyncMode,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memtable_limit_bytes: 32 * 1024 * 1024,
            sync: SyncMode::Fsync,
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

/// A point-in-time summary of the engine's footprint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Approximate bytes held by the active and (if any) frozen memtables.
    pub memtable_bytes: usize,
    /// Number of live SSTables.
    pub sstable_count: usize,
    /// Total size in bytes of the live SSTable files.
    pub sstable_bytes: u64,
    /// Total size in bytes of the live WAL segments.
    pub wal_bytes: u64,
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

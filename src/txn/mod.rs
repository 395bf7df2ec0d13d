//! Transactions across shards.
//!
//! - [`clock`]: a hybrid logical clock issuing snapshot and commit timestamps, so that one
//!   timestamp names a consistent cut across all shards;
//! - [`locks`]: the per-shard lock manager (shared/exclusive key and key-range locks, async
//!   waits, deadlock prevention by wait-die or wound-wait);
//! - [`coordinator`]: a transaction's life across shards — begin, locking reads and writes
//!   buffered as intents on the shards, one-phase commit when one shard was written and
//!   two-phase commit (presumed abort) when several were, rollback, savepoints, and recovery
//!   of in-doubt prepared transactions from the durable decision log;
//! - [`faults`]: crash points at two-phase commit's phase boundaries, for crash tests;
//! - [`snapshots`]: the timestamps still in use, from which the storage GC watermark follows.
//!
//! What travels to a shard with each request of a transaction is a [`TxnCtx`]: who is asking
//! (the transaction id, which is also its age for deadlock prevention), at which isolation
//! level, under which deadlock policy, and which statement (for savepoints).

pub mod clock;
pub mod coordinator;
pub mod faults;
pub mod locks;
pub mod snapshots;

use serde::{Deserialize, Serialize};

pub use locks::DeadlockPolicy;

/// The four SQL isolation levels, with sharddb's meaning of each (DESIGN.md §6):
/// - `ReadUncommitted`: reads see the newest version of a row, uncommitted ones included;
/// - `ReadCommitted`: each statement reads a fresh snapshot;
/// - `RepeatableRead`: the whole transaction reads one snapshot; updating a row that changed
///   after it fails with 40001 (first updater wins);
/// - `Serializable`: strict two-phase locking — shared locks on rows read, shared key-range
///   locks on ranges scanned, reads of the newest committed versions under those locks.
///
/// Writers take exclusive row locks held to the end at every level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl Isolation {
    /// PostgreSQL's spelling, as `SHOW transaction_isolation` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "read uncommitted",
            Isolation::ReadCommitted => "read committed",
            Isolation::RepeatableRead => "repeatable read",
            Isolation::Serializable => "serializable",
        }
    }

    pub fn parse(s: &str) -> Option<Isolation> {
        let norm: Vec<String> = s
            .split(|c: char| c.is_whitespace() || c == '_' || c == '-')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        match norm.join(" ").as_str() {
            "read uncommitted" => Some(Isolation::ReadUncommitted),
            "read committed" => Some(Isolation::ReadCommitted),
            "repeatable read" => Some(Isolation::RepeatableRead),
            "serializable" => Some(Isolation::Serializable),
            _ => None,
        }
    }
}

/// Who is asking, sent with every request a transaction makes of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnCtx {
    /// Unique across shards and time-ordered (a Snowflake id): smaller is older.
    pub txid: u64,
    pub isolation: Isolation,
    pub policy: DeadlockPolicy,
    /// 0: wait for locks as long as it takes.
    pub lock_timeout_ms: u64,
    /// The statement's number within the transaction; savepoints roll back to one.
    pub seq: u32,
}

impl TxnCtx {
    pub fn owner(&self) -> locks::LockOwner {
        locks::LockOwner {
            txid: self.txid,
            policy: self.policy,
        }
    }

    pub fn lock_timeout(&self) -> Option<std::time::Duration> {
        (self.lock_timeout_ms > 0).then(|| std::time::Duration::from_millis(self.lock_timeout_ms))
    }
}

//! Transactions across shards.
//!
//! This first version gives every statement atomicity and durability across shards:
//! - [`clock`]: a hybrid logical clock issuing commit and snapshot timestamps;
//! - [`coordinator`]: commits a statement's write set with one-phase commit when it touches one
//!   shard and two-phase commit (presumed abort) when it touches several, and resolves in-doubt
//!   prepared writes at startup from the durable decision log;
//! - [`snapshots`]: the timestamps still in use, from which the storage GC watermark follows.
//!
//! Writing statements are serialized by the coordinator's write lock; explicit transaction
//! blocks, isolation levels and the lock manager come with the transactions issue.

pub mod clock;
pub mod coordinator;
pub mod snapshots;

//! sharddb: a sharded relational database that speaks the PostgreSQL wire protocol.
//!
//! ```text
//! psql ─▶ wire (pgwire) ─▶ sql (parse, bind, plan, execute) ─▶ txn (1PC / 2PC)
//!                                   │ ShardRequest (rpc)
//!                                   ▼
//!                         shard ─▶ storage (WAL + memtable + SSTables, MVCC)
//! ```
//! See `docs/ARCHITECTURE.md` for the whole picture.

pub mod anomalies;
pub mod catalog;
pub mod config;
pub mod error;
pub mod id;
pub mod index;
pub mod placement;
pub mod rpc;
pub mod server;
pub mod shard;
pub mod sql;
pub mod storage;
pub mod txn;
pub mod types;
pub mod wire;

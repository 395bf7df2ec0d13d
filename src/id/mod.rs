//! Globally unique, time-ordered 64-bit identifiers.
//!
//! See [`snowflake`]: 41 bits of milliseconds since the sharddb epoch (2026-01-01), 10 bits of
//! node id, 12 bits of sequence. One generator per node (`Database::ids`, shared with the
//! coordinator) makes the hidden row ids of tables without a primary key, `BIGSERIAL` / `SERIAL`
//! column values and `snowflake_id()` (through the same SQL default), and transaction ids.

pub mod snowflake;

pub use snowflake::{Clock, SnowflakeGenerator, SnowflakeParts, SystemClock};

//! Globally unique, time-ordered 64-bit identifiers.
//!
//! See [`snowflake`]: 41 bits of milliseconds since the sharddb epoch, 10 bits of node id, 12 bits
//! of sequence. Used for hidden row ids of tables without a primary key and for transaction ids.

pub mod snowflake;

pub use snowflake::{Clock, SnowflakeGenerator, SystemClock};

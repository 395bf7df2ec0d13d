//! SQL: parsing, binding, planning and execution.
//!
//! ```text
//!  text ─parser─▶ AST ─binder─▶ Bound (Plan + DML/DDL) ─executor/session─▶ rows, commits
//! ```
//! - [`parser`]: sqlparser with the PostgreSQL dialect; errors carry positions.
//! - [`binder`] and [`scope`]: names → positions, types, coercions, aggregation, pushdown.
//! - [`expr`] and [`functions`]: bound scalar expressions and the function library.
//! - [`plan`]: relational operators; [`access`]: index access paths (choice, key ranges);
//!   [`executor`]: runs them against shards.
//! - [`pushdown`]: which work above a scan runs on the shards; [`aggregate`]: the
//!   accumulators both the coordinator and the shards use.
//! - [`session`]: the database handle and per-connection statement execution.

pub mod access;
pub mod aggregate;
pub mod binder;
pub mod executor;
pub mod expr;
pub mod functions;
pub mod join;
pub mod join_strategy;
pub mod parser;
pub mod plan;
pub mod pushdown;
pub mod scope;
pub mod session;

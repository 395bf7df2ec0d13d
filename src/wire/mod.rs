//! The PostgreSQL wire protocol front end (pgwire).
//!
//! Each TCP connection gets its own [`handler::ConnectionHandler`] holding that client's
//! [`Session`](crate::sql::session::Session); the simple and extended query protocols both end in
//! `Session::execute`, which runs on tokio's blocking pool because shard calls block. Values are
//! encoded per column in the format the client asked for: text (PostgreSQL output functions) or
//! binary (PostgreSQL send functions), with the real type OIDs.

pub mod handler;
pub mod server;

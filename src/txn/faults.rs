//! Crash points for tests of two-phase commit.
//!
//! A test sets `SHARDDB_TEST_CRASH_AT=<point>` in a server process's environment; when the
//! coordinator passes that point of a two-phase commit the process aborts on the spot, as
//! `kill -9` would stop it (no clean shutdown, nothing flushed that was not already). The
//! points are the protocol's phase boundaries:
//!
//! - `before-prepare`: nothing prepared yet;
//! - `between-prepares`: some participants prepared, not all;
//! - `after-prepares`: all prepared, no decision;
//! - `after-decision`: the commit decision is durable, no participant told;
//! - `between-commits`: some participants committed, not all;
//! - `after-commits`: all committed, the decision record not yet dropped.
//!
//! And the boundaries of an online placement change (`placement::rebalance`):
//!
//! - `move-after-copy`: the moving rows are copied to their new owners, the map not switched;
//! - `move-after-switch`: the new map is durable and installed, the originals not deleted;
//! - `move-mid-cleanup`: the originals deleted on some shards, not all.
//!
//! Unset (always, outside such tests) a point costs one relaxed load.

use std::sync::OnceLock;

pub const POINTS: &[&str] = &[
    "before-prepare",
    "between-prepares",
    "after-prepares",
    "after-decision",
    "between-commits",
    "after-commits",
    "move-after-copy",
    "move-after-switch",
    "move-mid-cleanup",
];

fn configured() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| {
        std::env::var("SHARDDB_TEST_CRASH_AT")
            .ok()
            .filter(|p| !p.is_empty())
    })
    .as_deref()
}

/// Aborts the process if the test setting names `point`.
pub fn hit(point: &str) {
    if configured() == Some(point) {
        eprintln!("sharddb: crash point {point} reached (SHARDDB_TEST_CRASH_AT); aborting");
        std::process::abort();
    }
}

//! A hybrid logical clock: timestamps are microseconds of wall time, bumped by one when the wall
//! clock has not advanced past the last timestamp issued.
//!
//! Invariants: `now()` is strictly increasing; after `observe(ts)` every later `now()` is greater
//! than `ts`. At startup the clock observes the highest commit timestamp of every shard, so a
//! clock that stepped backwards across a restart can never issue a timestamp that sorts before
//! data already on disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Default)]
pub struct HybridClock {
    last: AtomicU64,
}

impl HybridClock {
    pub fn new() -> HybridClock {
        HybridClock::default()
    }

    pub fn now(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut last = self.last.load(Ordering::Acquire);
        loop {
            let next = wall.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// Ensures every later timestamp is greater than `ts`.
    pub fn observe(&self, ts: u64) {
        self.last.fetch_max(ts, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_and_observes() {
        let c = HybridClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b > a);
        c.observe(u64::MAX / 2);
        assert!(c.now() > u64::MAX / 2);
    }
}

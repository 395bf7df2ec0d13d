//! The registry of timestamps still in use, from which the garbage-collection watermark is
//! derived.
//!
//! Storage compactions drop versions no reader can see, given a watermark with two promises
//! (see `storage::compaction`): no reader uses a `read_ts` below it, and nothing commits at or
//! below it from now on. This registry keeps both: every statement registers its read
//! timestamp, and every commit registers its commit timestamp, for as long as they are in use.
//!
//! Invariant: timestamps are drawn from the clock *inside* the registry's lock, and the
//! watermark is computed inside the same lock, so a timestamp handed out after a watermark was
//! computed is always above it (the clock is monotonic). Without that, a commit could draw a
//! timestamp, be overtaken by a watermark computation that did not see it yet, and then commit
//! below the watermark.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::txn::clock::HybridClock;

#[derive(Default)]
pub struct SnapshotRegistry {
    active: Mutex<BTreeMap<u64, usize>>,
}

/// A registered timestamp; unregistered on drop.
pub struct Registered {
    registry: Arc<SnapshotRegistry>,
    ts: u64,
}

impl Registered {
    pub fn ts(&self) -> u64 {
        self.ts
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut active = self.registry.active.lock();
        if let Some(n) = active.get_mut(&self.ts) {
            *n -= 1;
            if *n == 0 {
                active.remove(&self.ts);
            }
        }
    }
}

impl SnapshotRegistry {
    /// Draws a timestamp from `clock` and keeps it registered until the guard drops.
    pub fn register(self: &Arc<Self>, clock: &HybridClock) -> Registered {
        let mut active = self.active.lock();
        let ts = clock.now();
        *active.entry(ts).or_insert(0) += 1;
        Registered {
            registry: Arc::clone(self),
            ts,
        }
    }

    /// The highest timestamp safe to garbage-collect below: one less than the oldest
    /// registered timestamp, or one less than a fresh clock reading when none is registered.
    pub fn watermark(&self, clock: &HybridClock) -> u64 {
        let active = self.active.lock();
        match active.keys().next() {
            Some(&oldest) => oldest.saturating_sub(1),
            None => clock.now().saturating_sub(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_stays_below_every_registered_timestamp() {
        let clock = HybridClock::new();
        let reg = Arc::new(SnapshotRegistry::default());
        let a = reg.register(&clock);
        let b = reg.register(&clock);
        assert!(reg.watermark(&clock) < a.ts());
        drop(a);
        assert!(reg.watermark(&clock) < b.ts());
        assert!(reg.watermark(&clock) >= b.ts().saturating_sub(1));
        drop(b);
        let w = reg.watermark(&clock);
        let later = reg.register(&clock);
        assert!(later.ts() > w);
    }
}

//! Snowflake IDs: `[0][41 bits ms since EPOCH][10 bits node][12 bits sequence]`.
//!
//! Invariants:
//! - ids from one generator are strictly increasing;
//! - ids from generators with different node ids never collide;
//! - when the 4096 ids of one millisecond are used up, or the wall clock steps backwards, the
//!   generator waits for its clock to pass the last millisecond it used instead of ever reusing a
//!   (millisecond, sequence) pair.
//!
//! The clock is injectable so tests can step it backwards.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2026-01-01T00:00:00Z in milliseconds since the Unix epoch. Ids encode time relative to it,
/// which leaves about 69 years of 41-bit milliseconds.
pub const EPOCH_MS: u64 = 1_767_225_600_000;
pub const NODE_BITS: u32 = 10;
pub const SEQUENCE_BITS: u32 = 12;
pub const MAX_NODE: u16 = (1 << NODE_BITS) - 1;
const MAX_SEQUENCE: u64 = (1 << SEQUENCE_BITS) - 1;

/// A source of wall-clock milliseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

pub struct SnowflakeGenerator {
    node: u64,
    clock: Arc<dyn Clock>,
    /// (last millisecond used, last sequence used in it)
    state: Mutex<(u64, u64)>,
}

impl SnowflakeGenerator {
    pub fn new(node: u16) -> SnowflakeGenerator {
        SnowflakeGenerator::with_clock(node, Arc::new(SystemClock))
    }

    pub fn with_clock(node: u16, clock: Arc<dyn Clock>) -> SnowflakeGenerator {
        SnowflakeGenerator {
            node: u64::from(node & MAX_NODE),
            clock,
            state: Mutex::new((0, 0)),
        }
    }

    /// The next id; blocks (briefly) rather than reuse an id.
    pub fn next_id(&self) -> i64 {
        let mut state = self.state.lock();
        loop {
            let now = self.clock.now_ms().saturating_sub(EPOCH_MS);
            let (last_ms, last_seq) = *state;
            if now > last_ms {
                *state = (now, 0);
                return self.compose(now, 0);
            }
            if now == last_ms && last_seq < MAX_SEQUENCE {
                *state = (now, last_seq + 1);
                return self.compose(now, last_seq + 1);
            }
            // Sequence exhausted in this millisecond, or the clock went backwards: wait until the
            // clock passes the last millisecond we handed out.
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn compose(&self, ms: u64, seq: u64) -> i64 {
        ((ms << (NODE_BITS + SEQUENCE_BITS)) | (self.node << SEQUENCE_BITS) | seq) as i64
    }
}

/// Milliseconds since the Unix epoch encoded in an id.
pub fn timestamp_ms(id: i64) -> u64 {
    ((id as u64) >> (NODE_BITS + SEQUENCE_BITS)) + EPOCH_MS
}

pub fn node_of(id: i64) -> u16 {
    (((id as u64) >> SEQUENCE_BITS) & u64::from(MAX_NODE)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct ManualClock(AtomicU64);
    impl Clock for ManualClock {
        fn now_ms(&self) -> u64 {
            // Advance one ms per 50 reads so a stepped-back clock eventually catches up.
            let v = self.0.fetch_add(1, Ordering::SeqCst);
            EPOCH_MS + v / 50
        }
    }

    #[test]
    fn ids_are_unique_and_increasing_across_threads() {
        let generator = Arc::new(SnowflakeGenerator::new(7));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let g = generator.clone();
                std::thread::spawn(move || {
                    let ids: Vec<i64> = (0..20_000).map(|_| g.next_id()).collect();
                    assert!(ids.windows(2).all(|w| w[0] < w[1]));
                    ids
                })
            })
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(all.insert(id), "duplicate id {id}");
                assert_eq!(node_of(id), 7);
            }
        }
    }

    #[test]
    fn clock_step_back_never_duplicates() {
        let clock = Arc::new(ManualClock(AtomicU64::new(10_000)));
        let generator = SnowflakeGenerator::with_clock(1, clock.clone());
        let mut last = generator.next_id();
        for i in 0..5_000 {
            if i == 100 {
                clock.0.store(0, Ordering::SeqCst); // step back 200 ms
            }
            let id = generator.next_id();
            assert!(id > last);
            last = id;
        }
    }

    #[test]
    fn decode_roundtrip() {
        let generator = SnowflakeGenerator::new(MAX_NODE);
        let before = SystemClock.now_ms();
        let id = generator.next_id();
        assert!(timestamp_ms(id) >= before);
        assert_eq!(node_of(id), MAX_NODE);
    }
}

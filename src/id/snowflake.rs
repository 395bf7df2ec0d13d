//! Snowflake ids: 64-bit, time-ordered, unique across nodes without coordination.
//!
//! ```text
//!  63  62                                        22 21           12 11            0
//! ┌───┬────────────────────────────────────────────┬───────────────┬──────────────┐
//! │ 0 │ 41 bits: milliseconds since EPOCH_MS       │ 10 bits: node │ 12 bits: seq │
//! └───┴────────────────────────────────────────────┴───────────────┴──────────────┘
//! ```
//!
//! `EPOCH_MS` is 2026-01-01T00:00:00Z, so 41 bits of milliseconds last until 2095-09. The sign
//! bit is always 0: ids are positive `bigint`s and sort by time as integers.
//!
//! Why Snowflake ids rather than a sequence: a sequence needs one counter that every node asks,
//! which is a round trip per batch and a single point of failure in a cluster; a Snowflake id is
//! made locally from the clock and the node id (`--node-id`, unique per node), yet ids from all
//! nodes still sort roughly by creation time, which the lock manager relies on for transaction
//! ages (smaller txid = older) and which keeps new rows of a `BIGSERIAL` key together.
//!
//! Invariants of one [`SnowflakeGenerator`] (one per node, shared by every user of ids):
//! - its ids are strictly increasing (in the order the calls returned), so no id repeats;
//! - ids from generators with different node ids never collide;
//! - an id never encodes a time later than the clock read when it was issued;
//! - when the 4096 ids of one millisecond are used up, the generator waits for the clock to
//!   reach the next millisecond; when the clock steps backwards, it waits for the clock to come
//!   back to the last millisecond it used (continuing that millisecond's sequence if any is
//!   left). It never reuses a (millisecond, sequence) pair. Waiting sleeps for the time
//!   remaining (at most [`MAX_SLEEP`] at a time, so a clock that jumps forward ends the wait
//!   promptly); a step back of more than a second is logged.
//!
//! The state is one `AtomicU64` updated by compare-and-swap, so concurrent callers never block
//! each other (no lock is held while waiting, and `next_id` is synchronous: callers run on
//! tokio's blocking pool, never across an `.await`).
//!
//! What this does not cover: the generator's state is not persisted, so a clock that is behind
//! the last run's ids when the node restarts can repeat ids of that run (a repeated hidden row
//! id is a unique violation on insert, not silent corruption). The clock must also be within the
//! format's range; [`SnowflakeGenerator::check_clock`] is called at startup.
//!
//! The clock is injectable ([`Clock`]) so tests can freeze it or step it backwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2026-01-01T00:00:00Z in milliseconds since the Unix epoch. Ids encode time relative to it.
pub const EPOCH_MS: u64 = 1_767_225_600_000;
pub const TIMESTAMP_BITS: u32 = 41;
pub const NODE_BITS: u32 = 10;
pub const SEQUENCE_BITS: u32 = 12;
/// Largest node id (`--node-id` is 0..=1023).
pub const MAX_NODE: u16 = (1 << NODE_BITS) - 1;
/// Ids one generator can issue per millisecond: the format's ceiling is 4,096,000 ids/s.
pub const IDS_PER_MS: u64 = 1 << SEQUENCE_BITS;
const MAX_SEQUENCE: u64 = IDS_PER_MS - 1;
/// Largest encodable millisecond since `EPOCH_MS` (2095-09-06).
pub const MAX_MS: u64 = (1 << TIMESTAMP_BITS) - 1;
/// Longest single sleep while waiting for the clock: the wait re-reads the clock at least this
/// often.
pub const MAX_SLEEP: Duration = Duration::from_millis(10);
/// A wait for a clock that stepped back further than this is logged.
const STEP_BACK_WARN_US: u64 = 1_000_000;

/// A wall clock, injectable for tests.
pub trait Clock: Send + Sync {
    /// Microseconds since the Unix epoch.
    fn now_us(&self) -> u64;

    /// Blocks the calling thread for about `d`.
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// The operating system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    }
}

/// An id taken apart: see the module documentation for the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnowflakeParts {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub node: u16,
    pub sequence: u16,
}

/// Decodes an id; `None` for a negative number, which no generator produces.
pub fn decode(id: i64) -> Option<SnowflakeParts> {
    if id < 0 {
        return None;
    }
    let id = id as u64;
    Some(SnowflakeParts {
        unix_ms: (id >> (NODE_BITS + SEQUENCE_BITS)) + EPOCH_MS,
        node: ((id >> SEQUENCE_BITS) & u64::from(MAX_NODE)) as u16,
        sequence: (id & MAX_SEQUENCE) as u16,
    })
}

pub struct SnowflakeGenerator {
    /// The node id, already shifted into place.
    node_bits: u64,
    clock: Arc<dyn Clock>,
    /// The last id issued, without its node bits: `(ms since EPOCH_MS) << SEQUENCE_BITS | seq`.
    /// Only ever increases (compare-and-swap), which is what makes ids unique and increasing.
    last: AtomicU64,
    /// The millisecond a clock step back was last logged for, so a long wait logs once.
    warned_for: AtomicU64,
}

impl SnowflakeGenerator {
    /// A generator for node `node` (0..=1023) on the system clock.
    pub fn new(node: u16) -> Result<SnowflakeGenerator, String> {
        SnowflakeGenerator::with_clock(node, Arc::new(SystemClock))
    }

    pub fn with_clock(node: u16, clock: Arc<dyn Clock>) -> Result<SnowflakeGenerator, String> {
        if node > MAX_NODE {
            return Err(format!(
                "node id must be between 0 and {MAX_NODE}, got {node}"
            ));
        }
        Ok(SnowflakeGenerator {
            node_bits: u64::from(node) << SEQUENCE_BITS,
            clock,
            last: AtomicU64::new(0),
            warned_for: AtomicU64::new(u64::MAX),
        })
    }

    pub fn node(&self) -> u16 {
        (self.node_bits >> SEQUENCE_BITS) as u16
    }

    /// Whether the clock is inside the range ids can encode (2026-01-01 .. 2095-09-06): outside
    /// it, ids would not be ordered by time, or (before the epoch) the generator would stall
    /// after 4096 ids. Checked when the database opens.
    pub fn check_clock(&self) -> Result<(), String> {
        let now_ms = self.clock.now_us() / 1000;
        if now_ms < EPOCH_MS || now_ms - EPOCH_MS > MAX_MS {
            return Err(format!(
                "the system clock reads {now_ms} ms since 1970, outside the range Snowflake ids \
                 can encode ({EPOCH_MS} = 2026-01-01T00:00:00Z plus 2^41 ms); fix the clock"
            ));
        }
        Ok(())
    }

    /// The next id. Never returns an id twice; may block (sleeping, never spinning) while the
    /// current millisecond's sequence is used up or the clock is behind the last id.
    pub fn next_id(&self) -> i64 {
        loop {
            let now_us = self.clock.now_us();
            let now = (now_us / 1000).saturating_sub(EPOCH_MS).min(MAX_MS);
            // Relaxed is enough: `last` is the only shared state, and read-modify-write
            // coherence on one location already orders every caller's updates.
            let last = self.last.load(Ordering::Relaxed);
            let last_ms = last >> SEQUENCE_BITS;
            let next = if now > last_ms {
                now << SEQUENCE_BITS
            } else if now == last_ms && last & MAX_SEQUENCE < MAX_SEQUENCE {
                last + 1
            } else {
                // Used up (now == last_ms) or the clock is behind: wait for it to reach the
                // millisecond after, or the last one used.
                let target_ms = if now == last_ms { last_ms + 1 } else { last_ms };
                self.wait_for(target_ms, now_us);
                continue;
            };
            if self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                let ms = next >> SEQUENCE_BITS;
                let seq = next & MAX_SEQUENCE;
                return ((ms << (NODE_BITS + SEQUENCE_BITS)) | self.node_bits | seq) as i64;
            }
        }
    }

    /// Sleeps until the clock reaches `target_ms` (since `EPOCH_MS`), or for [`MAX_SLEEP`],
    /// whichever is sooner.
    fn wait_for(&self, target_ms: u64, now_us: u64) {
        if target_ms > MAX_MS {
            // Past 2095-09-06: no id can be made. Keep waiting rather than wrap around.
            if self.warned_for.swap(target_ms, Ordering::Relaxed) != target_ms {
                tracing::error!("the clock is past the last millisecond Snowflake ids can encode");
            }
            self.clock.sleep(MAX_SLEEP);
            return;
        }
        let target_us = (EPOCH_MS + target_ms) * 1000;
        let behind = target_us.saturating_sub(now_us);
        if behind == 0 {
            return;
        }
        if behind > STEP_BACK_WARN_US
            && self.warned_for.swap(target_ms, Ordering::Relaxed) != target_ms
        {
            tracing::warn!(
                behind_ms = behind / 1000,
                "the clock stepped back: Snowflake ids wait until it passes the last id's time"
            );
        }
        self.clock
            .sleep(Duration::from_micros(behind).min(MAX_SLEEP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A clock tests move by hand. With `advance_on_sleep`, `sleep` moves it forward by the
    /// requested time (simulated time, deterministic); otherwise `sleep` really sleeps (up to
    /// 1 ms) and the clock stays frozen until the test moves it.
    struct ManualClock {
        us: AtomicU64,
        slept_us: AtomicU64,
        sleeps: AtomicU64,
        advance_on_sleep: AtomicBool,
    }

    impl ManualClock {
        fn at_ms(ms_since_epoch: u64, advance_on_sleep: bool) -> Arc<ManualClock> {
            Arc::new(ManualClock {
                us: AtomicU64::new((EPOCH_MS + ms_since_epoch) * 1000),
                slept_us: AtomicU64::new(0),
                sleeps: AtomicU64::new(0),
                advance_on_sleep: AtomicBool::new(advance_on_sleep),
            })
        }
        fn set_ms(&self, ms_since_epoch: u64) {
            self.us
                .store((EPOCH_MS + ms_since_epoch) * 1000, Ordering::SeqCst);
        }
        fn slept_us(&self) -> u64 {
            self.slept_us.load(Ordering::SeqCst)
        }
    }

    impl Clock for ManualClock {
        fn now_us(&self) -> u64 {
            self.us.load(Ordering::SeqCst)
        }
        fn sleep(&self, d: Duration) {
            self.sleeps.fetch_add(1, Ordering::SeqCst);
            self.slept_us
                .fetch_add(d.as_micros() as u64, Ordering::SeqCst);
            if self.advance_on_sleep.load(Ordering::SeqCst) {
                self.us.fetch_add(d.as_micros() as u64, Ordering::SeqCst);
            } else {
                std::thread::sleep(d.min(Duration::from_millis(1)));
            }
        }
    }

    fn ms_of(id: i64) -> u64 {
        decode(id).unwrap().unix_ms - EPOCH_MS
    }

    #[test]
    fn eight_threads_share_one_generator_without_duplicates() {
        const THREADS: usize = 8;
        const PER_THREAD: usize = 1_000_000;
        let generator = Arc::new(SnowflakeGenerator::new(7).unwrap());
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let g = generator.clone();
                std::thread::spawn(move || {
                    let ids: Vec<i64> = (0..PER_THREAD).map(|_| g.next_id()).collect();
                    let increasing = ids.windows(2).all(|w| w[0] < w[1]);
                    (ids, increasing)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(THREADS * PER_THREAD);
        for h in handles {
            let (ids, increasing) = h.join().unwrap();
            assert!(increasing, "one thread's ids are not strictly increasing");
            all.extend(ids);
        }
        assert!(
            all.iter()
                .all(|id| *id > 0 && decode(*id).unwrap().node == 7)
        );
        all.sort_unstable();
        let before = all.len();
        all.dedup();
        assert_eq!(all.len(), before, "duplicate ids");
        assert_eq!(all.len(), THREADS * PER_THREAD);
    }

    #[test]
    fn clock_step_back_waits_and_never_duplicates() {
        let clock = ManualClock::at_ms(1_000, true);
        let generator = SnowflakeGenerator::with_clock(1, clock.clone()).unwrap();
        let mut ids: Vec<i64> = (0..10).map(|_| generator.next_id()).collect();
        assert!(ids.iter().all(|id| ms_of(*id) == 1_000));
        // Step back 5 ms: the next id waits (5 ms of simulated sleep) until the clock is back
        // at 1000 ms, then continues that millisecond's sequence.
        clock.set_ms(995);
        let id = generator.next_id();
        assert_eq!(clock.slept_us(), 5_000);
        assert!(clock.now_us() / 1000 - EPOCH_MS >= 1_000);
        assert_eq!(ms_of(id), 1_000);
        assert_eq!(decode(id).unwrap().sequence, 10);
        ids.push(id);
        // Repeated step backs mixed with used-up milliseconds. An id is never ahead of the
        // clock that issued it.
        let clock_ms = || clock.now_us() / 1000 - EPOCH_MS;
        for _ in 0..50 {
            for _ in 0..5_000 {
                let id = generator.next_id();
                assert!(ms_of(id) <= clock_ms());
                ids.push(id);
            }
            let slept = clock.slept_us();
            clock.set_ms(clock_ms() - 5);
            ids.push(generator.next_id());
            assert!(
                clock.slept_us() >= slept + 5_000,
                "did not wait out the step back"
            );
        }
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "not strictly increasing"
        );
    }

    #[test]
    fn exhausted_millisecond_waits_for_the_next() {
        let clock = ManualClock::at_ms(500, true);
        let generator = SnowflakeGenerator::with_clock(3, clock.clone()).unwrap();
        for seq in 0..IDS_PER_MS {
            let parts = decode(generator.next_id()).unwrap();
            assert_eq!(parts.unix_ms, EPOCH_MS + 500);
            assert_eq!(u64::from(parts.sequence), seq);
        }
        assert_eq!(
            clock.slept_us(),
            0,
            "no wait within the 4096 ids of a millisecond"
        );
        let parts = decode(generator.next_id()).unwrap();
        assert_eq!(parts.unix_ms, EPOCH_MS + 501);
        assert_eq!(parts.sequence, 0);
        // It slept exactly until the next millisecond, in one sleep.
        assert_eq!(clock.slept_us(), 1_000);
        assert_eq!(clock.sleeps.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn exhausted_millisecond_blocks_until_the_clock_moves() {
        let clock = ManualClock::at_ms(42, false);
        let generator = Arc::new(SnowflakeGenerator::with_clock(0, clock.clone()).unwrap());
        for _ in 0..IDS_PER_MS {
            generator.next_id();
        }
        let g = generator.clone();
        let waiter = std::thread::spawn(move || g.next_id());
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "the 4097th id did not wait for the clock"
        );
        assert!(clock.sleeps.load(Ordering::SeqCst) > 0);
        clock.set_ms(43);
        let id = waiter.join().unwrap();
        assert_eq!(ms_of(id), 43);
        assert_eq!(decode(id).unwrap().sequence, 0);
    }

    #[test]
    fn decode_round_trip() {
        let clock = ManualClock::at_ms(123_456_789, true);
        for node in [0, 1, 512, MAX_NODE] {
            let generator = SnowflakeGenerator::with_clock(node, clock.clone()).unwrap();
            assert_eq!(generator.node(), node);
            let id = generator.next_id();
            let parts = decode(id).unwrap();
            assert_eq!(parts.unix_ms, EPOCH_MS + 123_456_789);
            assert_eq!(parts.node, node);
            assert_eq!(parts.sequence, 0);
            assert_eq!(
                id,
                (123_456_789i64 << 22) | (i64::from(node) << 12),
                "layout"
            );
        }
        // The system clock: an id's time is between the clock reads around it.
        let generator = SnowflakeGenerator::new(MAX_NODE).unwrap();
        let before = SystemClock.now_us() / 1000;
        let id = generator.next_id();
        let after = SystemClock.now_us() / 1000;
        let parts = decode(id).unwrap();
        assert!(before <= parts.unix_ms && parts.unix_ms <= after);
        assert_eq!(parts.node, MAX_NODE);
        assert_eq!(decode(-1), None);
        assert_eq!(decode(0).unwrap().unix_ms, EPOCH_MS);
        assert_eq!(decode(i64::MAX).unwrap().unix_ms, EPOCH_MS + MAX_MS);
    }

    #[test]
    fn different_nodes_never_collide() {
        let clock = ManualClock::at_ms(7, true);
        let a = SnowflakeGenerator::with_clock(1, clock.clone()).unwrap();
        let b = SnowflakeGenerator::with_clock(2, clock.clone()).unwrap();
        let mut ids: Vec<i64> = (0..10_000)
            .flat_map(|_| [a.next_id(), b.next_id()])
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 20_000);
    }

    #[test]
    fn node_and_clock_range_are_checked() {
        assert!(SnowflakeGenerator::new(MAX_NODE + 1).is_err());
        assert!(
            SnowflakeGenerator::new(MAX_NODE)
                .unwrap()
                .check_clock()
                .is_ok()
        );
        let early = Arc::new(ManualClock {
            us: AtomicU64::new((EPOCH_MS - 1) * 1000),
            slept_us: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
            advance_on_sleep: AtomicBool::new(true),
        });
        let g = SnowflakeGenerator::with_clock(0, early).unwrap();
        assert!(g.check_clock().unwrap_err().contains("2026-01-01"));
    }
}

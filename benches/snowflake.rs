//! Snowflake id generation (`sharddb::id::SnowflakeGenerator`) against the format's ceiling:
//! 12 bits of sequence allow 4096 ids per millisecond, 4,096,000 ids/s per generator (per
//! node). Beyond that the generator sleeps until the next millisecond, so the interesting
//! number is how close one generator gets to the ceiling, alone and shared by threads.
//!
//! Run: `cargo bench --bench snowflake` (`-- --warm-up-time 1 --measurement-time 3` for a
//! quick run). Throughput is reported in ids (elements) per second. Ids are
//! `snowflake/<case>`:
//! - `one_thread`: one thread calling `next_id` on the system clock;
//! - `four_threads`: four threads sharing one generator (the time per element is the wall time
//!   divided by all threads' ids, so the throughput is the aggregate rate; thread start-up is
//!   inside each sample, about 1% of it);
//! - `uncapped`: one thread on a clock that moves a millisecond per reading, so the sequence is
//!   never used up: the generator's own cost (clock read + compare-and-swap), i.e. how far
//!   above the ceiling it could go.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sharddb::id::snowflake::{Clock, EPOCH_MS, IDS_PER_MS, SnowflakeGenerator, SystemClock};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Ids per second one generator can make at most.
const CEILING: u64 = IDS_PER_MS * 1000;

/// A clock that is a millisecond later at every reading (and reads the system clock too, so
/// the cost of a clock read stays in the measurement).
struct RacingClock(AtomicU64);

impl Clock for RacingClock {
    fn now_us(&self) -> u64 {
        black_box(SystemClock.now_us());
        (EPOCH_MS + self.0.fetch_add(1, Ordering::Relaxed)) * 1000
    }
}

fn bench_snowflake(c: &mut Criterion) {
    let mut group = c.benchmark_group("snowflake");
    group.throughput(Throughput::Elements(1));

    let generator = SnowflakeGenerator::new(1).expect("node 1");
    group.bench_function("one_thread", |b| b.iter(|| black_box(generator.next_id())));

    const THREADS: u64 = 4;
    let shared = Arc::new(SnowflakeGenerator::new(2).expect("node 2"));
    group.bench_function("four_threads", |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(THREADS);
            let barrier = Arc::new(Barrier::new(THREADS as usize + 1));
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let g = shared.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        for _ in 0..per_thread {
                            black_box(g.next_id());
                        }
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            for h in handles {
                h.join().expect("bench thread");
            }
            let elapsed = start.elapsed();
            // Scale to exactly `iters` ids (per_thread * THREADS may round up).
            Duration::from_secs_f64(
                elapsed.as_secs_f64() * iters as f64 / (per_thread * THREADS) as f64,
            )
        })
    });

    let uncapped =
        SnowflakeGenerator::with_clock(3, Arc::new(RacingClock(AtomicU64::new(0)))).expect("node");
    group.bench_function("uncapped", |b| b.iter(|| black_box(uncapped.next_id())));
    group.finish();
    println!(
        "ceiling: {CEILING} ids/s per generator (4096 per millisecond); compare the thrpt \
         lines above"
    );
}

criterion_group!(benches, bench_snowflake);
criterion_main!(benches);

//! A child process that drives one storage engine hard, for the crash and memory tests in
//! `tests/storage_crash.rs` (and for manual soak runs).
//!
//! `write` mode: writer threads commit batches forever with small memtables and levels, so
//! flushes and compactions run constantly. Every batch is a pure function of its commit
//! timestamp (see `sharddb::storage::stress::batch_for`), so the parent only needs the acknowledged timestamps, printed
//! as `ack <ts>` lines once `apply` returned, to know exactly what must be on disk after it
//! kills this process with SIGKILL. Progress lines `stats <flushes> <compactions>` let the
//! parent aim its kill at a busy moment.
//!
//! `memory` mode: writes (and reads) many times more data than the memtable and cache limits,
//! sampling the engine's own accounting and the process's peak RSS, and prints one JSON line
//! with what it saw.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use sharddb::storage::stress::{batch_for, crash_options, splitmix};
use sharddb::storage::{Engine, EngineOptions, SyncMode, WriteBatch, WriteOp};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Commit deterministic batches until killed.
    Write {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 2)]
        writers: u64,
        /// Number of distinct user keys the batches touch.
        #[arg(long, default_value_t = 3000)]
        keys: u64,
    },
    /// Write `mb` MiB through small limits and report memory use as JSON.
    Memory {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 256)]
        mb: u64,
        #[arg(long, default_value_t = 4)]
        memtable_mb: usize,
        #[arg(long, default_value_t = 8)]
        cache_mb: usize,
    },
}

fn write_mode(dir: PathBuf, writers: u64, keys: u64) {
    let engine = Arc::new(Engine::open(&dir, crash_options()).expect("open engine"));
    // Continue above anything a previous incarnation committed.
    let next_ts = Arc::new(AtomicU64::new(engine.max_committed_ts() + 1));
    let out = Arc::new(parking_lot::Mutex::new(std::io::stdout()));
    let mut threads = Vec::new();
    for _ in 0..writers {
        let engine = Arc::clone(&engine);
        let next_ts = Arc::clone(&next_ts);
        let out = Arc::clone(&out);
        threads.push(std::thread::spawn(move || {
            loop {
                let ts = next_ts.fetch_add(1, Ordering::AcqRel);
                let batch = WriteBatch {
                    commit_ts: ts,
                    ops: batch_for(ts, keys),
                };
                engine.apply(&batch).expect("apply");
                let mut o = out.lock();
                writeln!(o, "ack {ts}").expect("stdout");
                o.flush().expect("stdout");
            }
        }));
    }
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let s = engine.stats();
        let mut o = out.lock();
        writeln!(o, "stats {} {}", s.flushes, s.compactions).expect("stdout");
        o.flush().expect("stdout");
    }
}

/// (current, peak) resident set size in bytes, from /proc/self/status.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn memory_mode(dir: PathBuf, mb: u64, memtable_mb: usize, cache_mb: usize) {
    let opts = EngineOptions {
        memtable_limit_bytes: memtable_mb << 20,
        block_cache_bytes: cache_mb << 20,
        sync: SyncMode::None,
        target_file_bytes: 4 << 20,
        level1_target_bytes: 16 << 20,
        ..EngineOptions::default()
    };
    let (baseline, _) = rss();
    let engine = Engine::open(&dir, opts.clone()).expect("open engine");
    let value = vec![b'v'; 100];
    let total_keys = (mb << 20) / 116;
    let started = Instant::now();
    let mut max_memtable = 0usize;
    let mut max_cache = 0u64;
    let mut ts = 0u64;
    let mut r = 42u64;
    for i in 0..total_keys {
        ts += 1;
        r = splitmix(r);
        let key = format!("{:016x}", r).into_bytes();
        engine
            .apply(&WriteBatch {
                commit_ts: ts,
                ops: vec![WriteOp::put(key, value.clone())],
            })
            .expect("apply");
        if i % 4 == 0 {
            // Reads of older keys pull blocks through the cache.
            let probe = format!("{:016x}", splitmix(r ^ 0xABCD)).into_bytes();
            engine.get(&probe, ts).expect("get");
        }
        if i % 2000 == 0 {
            let s = engine.stats();
            max_memtable = max_memtable.max(s.memtable_bytes);
            max_cache = max_cache.max(s.cache_bytes);
        }
    }
    engine.wait_for_background().expect("settle");
    let s = engine.stats();
    let (_, peak) = rss();
    println!(
        "{}",
        serde_json::json!({
            "baseline_rss": baseline,
            "peak_rss": peak,
            "max_memtable_bytes": max_memtable,
            "max_cache_bytes": max_cache,
            "cache_capacity": s.cache_capacity,
            "memtable_limit": opts.memtable_limit_bytes,
            "max_immutable_memtables": opts.max_immutable_memtables,
            "written_bytes": total_keys * 116,
            "sstable_bytes": s.sstable_bytes,
            "write_stalls": s.write_stalls,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
}

fn main() {
    let args = Args::parse();
    match args.mode {
        Mode::Write { dir, writers, keys } => write_mode(dir, writers, keys),
        Mode::Memory {
            dir,
            mb,
            memtable_mb,
            cache_mb,
        } => memory_mode(dir, mb, memtable_mb, cache_mb),
    }
}

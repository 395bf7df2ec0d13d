//! The storage engine against fjall, db_bench style: the same workloads on both engines in the
//! same process run, 16-byte keys and 100-byte values, one key per write.
//!
//! Run: `cargo bench --bench storage`, then `python3 tools/storage_bench_report.py` for the
//! markdown table. Benchmark ids are `storage/<workload>/<engine>`, engine `sharddb` or `fjall`.
//!
//! Environment:
//! - `SHARDDB_BENCH_KEYS` (default 1,000,000): N, the number of keys a fill writes and the
//!   pre-filled database holds. 100000 gives a quick run.
//! - `SHARDDB_BENCH_FSYNC_WRITES` (default 2,000): writes per sample of the fsync workloads.
//! - `SHARDDB_BENCH_DIR` (default: the system temp dir): where the scratch databases live. Use a
//!   directory on the disk under test (not a tmpfs, where fsync is free).
//!
//! Workloads (`<workload>` in the id):
//! - `fillseq`, `fillrandom`: each sample writes N keys, ascending or in a fixed random order,
//!   into a fresh database. `fillrandom_2threads`: the random order split in two halves, one
//!   writer thread each.
//! - `readrandom_hit`, `readrandom_miss`: batches of 100,000 (or N if smaller) point reads of
//!   random present / absent keys. Absent keys interleave with present ones (present keys are the
//!   even numbers, absent ones the odd numbers), so they fall inside every table's key range and
//!   only a filter or a search can rule them out.
//! - `readseq`: one full forward scan of the N keys per sample (sharddb: `scan` pages of 1,000
//!   keys, each resuming after the last key of the previous page; fjall: one `iter()`).
//! - `overwrite`: batches of 100,000 (or N) writes of random present keys with new values.
//! - `fsync_write_1thread`, `fsync_write_2threads`: `SHARDDB_BENCH_FSYNC_WRITES` single-key
//!   writes into a fresh database, each durable before it returns, by one writer or split over
//!   two (where group commit can share an fsync between writers).
//!
//! The read workloads and `overwrite` share one pre-filled database per engine, built once
//! (untimed) the first time one of them runs: N keys written in random order, then flushed so
//! reads go to the on-disk tables (fjall: `rotate_memtable_and_wait`), then left until the
//! engine's background flushes and compactions are idle.
//!
//! Durability is matched on both sides:
//! - main workloads: every write is handed to the OS (a `write` syscall) but not fsynced.
//!   sharddb `SyncMode::None`; fjall's default `manual_journal_persist(false)`, under which
//!   each write flushes its journal buffer to the OS (`PersistMode::Buffer`) and nothing is
//!   fsynced (fjall 3 has no background fsync timer). Both still fsync their table files.
//! - fsync workloads: sharddb `SyncMode::Fsync` (fdatasync before `apply` returns); fjall
//!   `Database::persist(PersistMode::SyncData)` (fdatasync) after each `insert`.
//!
//! fjall is a dev-dependency, version 3 (3.1.13 when this was written; `Database`, `Keyspace`).
//!
//! Sizes are matched: fjall's memtable (`max_memtable_size`) and block cache (`cache_size`) are
//! set to sharddb's `EngineOptions::default()` memtable limit and block cache size. Everything
//! else is each engine's default (fjall 3: leveled compaction, bloom filters, LZ4 only on the
//! last level, min(cores, 4) background workers).
//!
//! sharddb writes are one-op `WriteBatch`es whose `commit_ts` comes from one counter shared by
//! all writers; its reads use `read_ts = u64::MAX`.
//!
//! Timing: criterion's flat sampling, 10 samples, 0.5 s warm-up and target time. A workload run
//! that takes longer than 50 ms (every fill, scan and read batch at the default N) is then one
//! iteration per sample, about 11-12 runs per benchmark in all, and criterion warns that the
//! samples do not fit in the target time; that is intended. Only the workload loop is timed;
//! opening, pre-filling, dropping and deleting databases are not. Background work an engine
//! defers past the end of a fill (fjall flushes and compacts in background threads) is not
//! charged to the fill.

use std::cell::{Cell, OnceCell};
use std::hint::black_box;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{
    Bencher, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use sharddb::storage::{Engine, EngineOptions, SyncMode, WriteBatch, WriteOp};

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;
/// Point reads / overwrites per sample (capped at N).
const OP_BATCH: usize = 100_000;
/// Keys per `Engine::scan` call in `readseq`.
const SCAN_PAGE: usize = 1000;

// ---------------------------------------------------------------------------------------------
// Configuration, keys, values

struct Env {
    /// N: keys per fill and in the pre-filled database.
    keys: usize,
    fsync_writes: usize,
    dir: PathBuf,
}

impl Env {
    fn from_env() -> Env {
        fn num(name: &str, default: usize) -> usize {
            match std::env::var(name) {
                Ok(s) => s
                    .replace(['_', ','], "")
                    .parse()
                    .unwrap_or_else(|e| panic!("{name}={s:?}: {e}")),
                Err(_) => default,
            }
        }
        let env = Env {
            keys: num("SHARDDB_BENCH_KEYS", 1_000_000).max(1),
            fsync_writes: num("SHARDDB_BENCH_FSYNC_WRITES", 2_000).max(2),
            dir: std::env::var_os("SHARDDB_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
        };
        std::fs::create_dir_all(&env.dir).expect("create SHARDDB_BENCH_DIR");
        eprintln!(
            "storage bench: N = {} keys, {} fsync writes per sample, scratch dir {}",
            env.keys,
            env.fsync_writes,
            env.dir.display()
        );
        env
    }

    fn op_batch(&self) -> usize {
        OP_BATCH.min(self.keys)
    }

    fn scratch(&self, engine: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("storage-bench-{engine}-"))
            .tempdir_in(&self.dir)
            .expect("scratch dir")
    }
}

/// Key number `n` as 16 zero-padded ASCII digits, so byte order is numeric order. Present key
/// `i` (0 <= i < N) is number `2i`; absent key `i` is number `2i + 1`.
fn key(n: u64) -> [u8; KEY_LEN] {
    let mut k = [b'0'; KEY_LEN];
    let mut rest = n;
    for b in k.iter_mut().rev() {
        if rest == 0 {
            break;
        }
        *b = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    k
}

fn present_key(i: u64) -> [u8; KEY_LEN] {
    key(2 * i)
}

fn absent_key(i: u64) -> [u8; KEY_LEN] {
    key(2 * i + 1)
}

/// 100-byte values cut from a pool of random (incompressible) bytes at a position derived from
/// a number, so they differ without being generated inside the timed loop.
struct Values(Vec<u8>);

impl Values {
    const POOL: usize = 1 << 20;

    fn new() -> Values {
        let mut pool = vec![0u8; Self::POOL + VALUE_LEN];
        StdRng::seed_from_u64(0x5EED).fill_bytes(&mut pool);
        Values(pool)
    }

    fn get(&self, n: u64) -> &[u8] {
        let at = (n.wrapping_mul(7919) % Self::POOL as u64) as usize;
        &self.0[at..at + VALUE_LEN]
    }
}

/// Deterministic pseudo-random number `n` of a stream: cheap enough to call in a timed loop.
fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn shuffled(n: usize, seed: u64) -> Vec<u64> {
    let mut order: Vec<u64> = (0..n as u64).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    order
}

// ---------------------------------------------------------------------------------------------
// The two engines behind one interface

trait Store: Sized + Sync {
    const NAME: &'static str;
    /// Opens a fresh database in `dir`; `fsync` selects per-write durability.
    fn open(dir: &Path, fsync: bool) -> Self;
    /// Writes one key, durably if opened with `fsync`.
    fn put(&self, key: &[u8], value: &[u8]);
    /// Length of the value of `key`, if present.
    fn get_len(&self, key: &[u8]) -> Option<usize>;
    /// Reads every key in order; returns how many.
    fn scan_all(&self) -> usize;
    /// Writes the memtable to disk and waits for that.
    fn flush(&self);
    /// Whether background flushes or compactions are running or queued.
    fn busy(&self) -> bool;
    /// Counters that change while background work makes progress.
    fn progress(&self) -> Vec<u64>;
    /// A one-line description of the on-disk shape, for the log.
    fn describe(&self) -> String;
    /// This engine's pre-filled database in `fx`.
    fn fixture(fx: &Fixtures) -> &OnceCell<Loaded<Self>>;

    /// Waits (at most 2 minutes) until background work is idle and has stopped progressing.
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = self.progress();
        let mut quiet = 0;
        while quiet < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.progress();
            if self.busy() || now != last {
                quiet = 0;
            } else {
                quiet += 1;
            }
            last = now;
        }
    }
}

struct Sharddb {
    engine: Engine,
    /// The commit timestamp of the latest write; writers take the next one.
    ts: AtomicU64,
}

impl Store for Sharddb {
    const NAME: &'static str = "sharddb";

    fn open(dir: &Path, fsync: bool) -> Self {
        let opts = EngineOptions {
            sync: if fsync {
                SyncMode::Fsync
            } else {
                SyncMode::None
            },
            ..EngineOptions::default()
        };
        let engine = Engine::open(dir, opts).expect("open sharddb engine");
        let ts = AtomicU64::new(engine.max_committed_ts());
        Sharddb { engine, ts }
    }

    fn put(&self, key: &[u8], value: &[u8]) {
        let commit_ts = self.ts.fetch_add(1, Ordering::Relaxed) + 1;
        let batch = WriteBatch {
            commit_ts,
            ops: vec![WriteOp::put(key, value)],
        };
        self.engine.apply(&batch).expect("sharddb apply");
    }

    fn get_len(&self, key: &[u8]) -> Option<usize> {
        self.engine
            .get(key, u64::MAX)
            .expect("sharddb get")
            .map(|v| v.len())
    }

    fn scan_all(&self) -> usize {
        let mut count = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let start = match &after {
                None => Bound::Unbounded,
                Some(k) => Bound::Excluded(k.as_slice()),
            };
            let mut page = self
                .engine
                .scan(start, Bound::Unbounded, u64::MAX, SCAN_PAGE)
                .expect("sharddb scan");
            count += page.len();
            let full = page.len() == SCAN_PAGE;
            black_box(&page);
            match page.pop() {
                Some((k, _)) if full => after = Some(k),
                _ => return count,
            }
        }
    }

    fn flush(&self) {
        self.engine.flush().expect("sharddb flush");
    }

    fn busy(&self) -> bool {
        self.engine.stats().immutable_memtables > 0
    }

    fn progress(&self) -> Vec<u64> {
        let s = self.engine.stats();
        vec![
            s.flushes,
            s.compactions,
            s.sstable_count as u64,
            s.sstable_bytes,
        ]
    }

    fn describe(&self) -> String {
        let s = self.engine.stats();
        let levels: Vec<String> = s
            .levels
            .iter()
            .map(|l| format!("L{}:{}", l.level, l.files))
            .collect();
        format!(
            "{} tables, {:.1} MiB, files per level [{}], memtable {:.1} MiB",
            s.sstable_count,
            s.sstable_bytes as f64 / (1 << 20) as f64,
            levels.join(" "),
            s.memtable_bytes as f64 / (1 << 20) as f64
        )
    }

    fn fixture(fx: &Fixtures) -> &OnceCell<Loaded<Self>> {
        &fx.sharddb
    }
}

struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
    fsync: bool,
}

impl Store for Fjall {
    const NAME: &'static str = "fjall";

    fn open(dir: &Path, fsync: bool) -> Self {
        let defaults = EngineOptions::default();
        let db = fjall::Database::builder(dir)
            .cache_size(defaults.block_cache_bytes as u64)
            .manual_journal_persist(false)
            .open()
            .expect("open fjall database");
        let ks = db
            .keyspace("bench", || {
                fjall::KeyspaceCreateOptions::default()
                    .max_memtable_size(defaults.memtable_limit_bytes as u64)
                    .manual_journal_persist(false)
            })
            .expect("open fjall keyspace");
        Fjall { db, ks, fsync }
    }

    fn put(&self, key: &[u8], value: &[u8]) {
        self.ks.insert(key, value).expect("fjall insert");
        if self.fsync {
            self.db
                .persist(fjall::PersistMode::SyncData)
                .expect("fjall persist");
        }
    }

    fn get_len(&self, key: &[u8]) -> Option<usize> {
        self.ks.get(key).expect("fjall get").map(|v| v.len())
    }

    fn scan_all(&self) -> usize {
        let mut count = 0;
        for kv in self.ks.iter() {
            let kv = kv.into_inner().expect("fjall iter");
            black_box(&kv);
            count += 1;
        }
        count
    }

    fn flush(&self) {
        // Public but doc(hidden) in fjall 3: seals the memtable and waits for its flush.
        self.ks
            .rotate_memtable_and_wait()
            .expect("fjall rotate memtable");
    }

    fn busy(&self) -> bool {
        self.db.outstanding_flushes() > 0 || self.db.active_compactions() > 0
    }

    fn progress(&self) -> Vec<u64> {
        vec![
            self.db.compactions_completed() as u64,
            self.ks.table_count() as u64,
            self.ks.l0_table_count() as u64,
            self.ks.disk_space(),
        ]
    }

    fn describe(&self) -> String {
        format!(
            "{} tables ({} in L0), {:.1} MiB, {} compactions",
            self.ks.table_count(),
            self.ks.l0_table_count(),
            self.ks.disk_space() as f64 / (1 << 20) as f64,
            self.db.compactions_completed()
        )
    }

    fn fixture(fx: &Fixtures) -> &OnceCell<Loaded<Self>> {
        &fx.fjall
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads

/// Writes present keys `order[..]` (values by key number), split over `threads` writers.
fn fill<S: Store>(store: &S, values: &Values, order: &[u64], threads: usize) {
    let write = |part: &[u64]| {
        for &i in part {
            store.put(&present_key(i), values.get(i));
        }
    };
    if threads <= 1 {
        write(order);
    } else {
        let chunk = order.len().div_ceil(threads);
        std::thread::scope(|s| {
            for part in order.chunks(chunk) {
                s.spawn(move || write(part));
            }
        });
    }
}

/// Everything the workloads share: configuration, key orders, and the pre-filled databases.
struct Ctx {
    env: Env,
    values: Values,
    /// Present key numbers 0..N ascending, and in a fixed random order.
    seq: Vec<u64>,
    random: Vec<u64>,
    /// Key numbers of the fsync workloads.
    fsync_keys: Vec<u64>,
    fixtures: Fixtures,
    /// Position in the random stream of `readrandom_*` / `overwrite` keys; advances so that
    /// successive batches use different keys.
    stream: Cell<u64>,
}

impl Ctx {
    /// The next `len` numbers of the random key stream.
    fn take_stream(&self, len: usize) -> std::ops::Range<u64> {
        let first = self.stream.get();
        self.stream.set(first + len as u64);
        first..first + len as u64
    }

    /// This engine's pre-filled database, built on first use: N keys written in random order,
    /// flushed, and left until background work is idle. Untimed.
    fn loaded<S: Store>(&self) -> &S {
        &S::fixture(&self.fixtures)
            .get_or_init(|| {
                let dir = self.env.scratch(S::NAME);
                let store = S::open(dir.path(), false);
                let start = Instant::now();
                fill(&store, &self.values, &self.random, 1);
                store.flush();
                let filled = start.elapsed();
                store.settle();
                eprintln!(
                    "{}: pre-filled {} keys in random order and flushed in {:.2?}, idle after \
                     {:.2?}: {}",
                    S::NAME,
                    self.random.len(),
                    filled,
                    start.elapsed(),
                    store.describe()
                );
                Loaded { store, _dir: dir }
            })
            .store
    }
}

/// A pre-filled database; the store is dropped before its directory.
struct Loaded<S> {
    store: S,
    _dir: tempfile::TempDir,
}

#[derive(Default)]
struct Fixtures {
    sharddb: OnceCell<Loaded<Sharddb>>,
    fjall: OnceCell<Loaded<Fjall>>,
}

/// Each iteration writes `keys` into a fresh database with `threads` writers; only the writes
/// are timed.
fn fill_fresh<S: Store>(b: &mut Bencher<'_>, ctx: &Ctx, keys: &[u64], threads: usize, fsync: bool) {
    b.iter_custom(|iters| {
        let mut timed = Duration::ZERO;
        for _ in 0..iters {
            let dir = ctx.env.scratch(S::NAME);
            let store = S::open(dir.path(), fsync);
            let start = Instant::now();
            fill(&store, &ctx.values, keys, threads);
            timed += start.elapsed();
            drop(store);
            drop(dir);
        }
        timed
    });
}

fn fillseq<S: Store>(b: &mut Bencher<'_>, ctx: &Ctx) {
    fill_fresh::<S>(b, ctx, &ctx.seq, 1, false);
}

fn fillrandom<S: Store>(b: &mut Bencher<'_>, ctx: &Ctx) {
    fill_fresh::<S>(b, ctx, &ctx.random, 1, false);
}

fn fillrandom_2threads<S: Store>(b: &mut Bencher<'_>, ctx: &Ctx) {
    fill_fresh::<S>(b, ctx, &ctx.random, 2, false);
}

fn fsync_write_1thread<S: Store>(b: &mut Bencher<'_>, ctx: &Ctx) {
    fill_fresh::<S>(b, ctx, &ctx.fsync_keys, 1, true);
}

fn fsync_write_2threads<S: Store>(b: &mut Bencher<'_>, ctx: &Ctx) {
    fill_fresh::<S>(b, ctx, &ctx.fsync_keys, 2, true);
}

/// Batches of point reads of random present (`hits`) or absent keys of the pre-filled database.
fn readrandom<S: Store>(b: &mut Bencher<'_>, ctx: &Ctx, hits: bool) {
    let store = ctx.loaded::<S>();
    let n = ctx.env.keys as u64;
    let batch = ctx.env.op_batch();
    b.iter_custom(|iters| {
        let mut timed = Duration::ZERO;
        for _ in 0..iters {
            let stream = ctx.take_stream(batch);
            let start = Instant::now();
            let mut found = 0usize;
            for r in stream {
                let i = splitmix64(r) % n;
                let k = if hits { present_key(i) } else { absent_key(i) };
                found += usize::from(black_box(store.get_len(&k)).is_some());
            }
            timed += start.elapsed();
            let expected = if hits { batch } else { 0 };
            assert_eq!(found, expected, "{}: wrong point read results", S::NAME);
        }
        timed
    });
}

fn readrandom_hit<S: Store>(b: &mut Bencher<'_>, ctx: &Ctx) {
    readrandom::<S>(b, ctx, true);
}

fn readrandom_miss<S: Store>(b: &mut Bencher<'_>, ctx: &Ctx) {
    readrandom::<S>(b, ctx, false);
}

/// One full forward scan of the pre-filled database per iteration.
fn readseq<S: Store>(b: &mut Bencher<'_>, ctx: &Ctx) {
    let store = ctx.loaded::<S>();
    b.iter_custom(|iters| {
        let mut timed = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            let count = store.scan_all();
            timed += start.elapsed();
            assert_eq!(count, ctx.env.keys, "{}: scan saw the wrong count", S::NAME);
        }
        timed
    });
}

/// Batches of writes of new values to random present keys of the pre-filled database.
fn overwrite<S: Store>(b: &mut Bencher<'_>, ctx: &Ctx) {
    let store = ctx.loaded::<S>();
    let n = ctx.env.keys as u64;
    let batch = ctx.env.op_batch();
    b.iter_custom(|iters| {
        let mut timed = Duration::ZERO;
        for _ in 0..iters {
            let stream = ctx.take_stream(batch);
            let start = Instant::now();
            for r in stream {
                let i = splitmix64(r) % n;
                store.put(&present_key(i), ctx.values.get(r));
            }
            timed += start.elapsed();
        }
        timed
    });
}

// ---------------------------------------------------------------------------------------------
// Registration

fn bench_storage(c: &mut Criterion) {
    let env = Env::from_env();
    let n = env.keys;
    let batch = env.op_batch();
    let w = env.fsync_writes;
    let mut ctx = Ctx {
        values: Values::new(),
        seq: (0..n as u64).collect(),
        random: shuffled(n, 42),
        fsync_keys: (0..w as u64).collect(),
        fixtures: Fixtures::default(),
        stream: Cell::new(0),
        env,
    };

    let mut group = c.benchmark_group("storage");
    // One workload iteration per sample, the fewest samples criterion accepts: see the module
    // documentation.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(500));

    // Registers `storage/<workload>/sharddb` and `storage/<workload>/fjall`.
    macro_rules! both {
        ($workload:ident, $elements:expr) => {{
            group.throughput(Throughput::Elements($elements as u64));
            group.bench_function(
                BenchmarkId::new(stringify!($workload), Sharddb::NAME),
                |b| $workload::<Sharddb>(b, &ctx),
            );
            group.bench_function(BenchmarkId::new(stringify!($workload), Fjall::NAME), |b| {
                $workload::<Fjall>(b, &ctx)
            });
        }};
    }

    both!(fillseq, n);
    both!(fillrandom, n);
    both!(fillrandom_2threads, n);
    // These four share one pre-filled database per engine; overwrite changes it, so it is last.
    both!(readrandom_hit, batch);
    both!(readrandom_miss, batch);
    both!(readseq, n);
    both!(overwrite, batch);
    if let Some(l) = ctx.fixtures.sharddb.get() {
        eprintln!("sharddb after overwrite: {}", l.store.describe());
    }
    if let Some(l) = ctx.fixtures.fjall.get() {
        eprintln!("fjall after overwrite: {}", l.store.describe());
    }
    // Close them (and stop their background work) before the fsync workloads.
    drop(ctx.fixtures.sharddb.take());
    drop(ctx.fixtures.fjall.take());
    both!(fsync_write_1thread, w);
    both!(fsync_write_2threads, w);

    group.finish();
}

criterion_group!(benches, bench_storage);
criterion_main!(benches);

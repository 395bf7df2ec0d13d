//! Model-based and fault-injection tests for the index module.
//!
//! The reference model is a `BTreeSet<Vec<u8>>`. The harness behaves like the integrator will:
//! it logs every mutation with an LSN, checkpoints whenever the pool is more than half dirty,
//! and after a "crash" (dropping the tree without checkpoint) reopens the file, expects exactly
//! the state of the last checkpoint, and replays its log above `checkpoint_lsn`.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::select;

use super::checkpoint::{FailPoint, dw_path};
use super::{BTree, BufferPool, IndexError};

#[derive(Debug, Clone)]
enum B {
    In(Vec<u8>),
    Ex(Vec<u8>),
    Un,
}

impl B {
    fn bound(&self) -> Bound<&[u8]> {
        match self {
            B::In(k) => Bound::Included(k),
            B::Ex(k) => Bound::Excluded(k),
            B::Un => Bound::Unbounded,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Vec<u8>),
    Delete(Vec<u8>),
    Contains(Vec<u8>),
    Scan(B, B, bool, usize),
    Checkpoint,
    Crash,
}

/// Short keys from a tiny alphabet (many collisions) plus long keys near `max_key_len` that
/// share a long prefix, so separators stay long and internal fan-out small (deep trees).
fn key(ps: usize) -> impl Strategy<Value = Vec<u8>> {
    let max = BTree::max_key_len(ps);
    prop_oneof![
        3 => prop::collection::vec(select(b"abcd".to_vec()), 0..5),
        2 => prop::collection::vec(select(b"abcd".to_vec()), 0..6).prop_map(move |s| {
            let mut k = vec![b'x'; max - 5];
            k.extend(s);
            k.truncate(max);
            k
        }),
    ]
}

fn bound(ps: usize) -> impl Strategy<Value = B> {
    prop_oneof![
        key(ps).prop_map(B::In),
        key(ps).prop_map(B::Ex),
        Just(B::Un)
    ]
}

fn op(ps: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => key(ps).prop_map(Op::Insert),
        6 => key(ps).prop_map(Op::Delete),
        2 => key(ps).prop_map(Op::Contains),
        2 => (bound(ps), bound(ps), any::<bool>(), prop_oneof![1..5usize, Just(usize::MAX)])
            .prop_map(|(a, b, r, l)| Op::Scan(a, b, r, l)),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Crash),
    ]
}

/// A page size, keys to insert first (so that trees get deep), then random operations.
fn case(max_ops: usize) -> impl Strategy<Value = (usize, Vec<Vec<u8>>, Vec<Op>)> {
    prop_oneof![Just(256usize), Just(512usize)].prop_flat_map(move |ps| {
        (
            Just(ps),
            prop::collection::vec(key(ps), 0..400),
            prop::collection::vec(op(ps), 1..max_ops),
        )
    })
}

fn all(tree: &BTree) -> Vec<Vec<u8>> {
    tree.scan(Bound::Unbounded, Bound::Unbounded, false, usize::MAX)
        .unwrap()
}

fn expected_scan(
    model: &BTreeSet<Vec<u8>>,
    lo: &B,
    hi: &B,
    rev: bool,
    limit: usize,
) -> Vec<Vec<u8>> {
    let (lo, hi) = (lo.bound(), hi.bound());
    let inb = |k: &Vec<u8>| {
        let k = k.as_slice();
        (match lo {
            Bound::Included(s) => k >= s,
            Bound::Excluded(s) => k > s,
            Bound::Unbounded => true,
        }) && (match hi {
            Bound::Included(e) => k <= e,
            Bound::Excluded(e) => k < e,
            Bound::Unbounded => true,
        })
    };
    let it = model.iter().filter(|k| inb(k)).cloned();
    if rev {
        it.rev().take(limit).collect()
    } else {
        it.take(limit).collect()
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    path: PathBuf,
    pool: Arc<BufferPool>,
    tree: Option<BTree>,
    model: BTreeSet<Vec<u8>>,
    ckpt_model: BTreeSet<Vec<u8>>,
    ckpt_lsn: u64,
    lsn: u64,
    /// Mutations above `ckpt_lsn`: (lsn, is_insert, key).
    log: Vec<(u64, bool, Vec<u8>)>,
}

impl Harness {
    fn new(ps: usize, pool_pages: usize, bulk: Option<&BTreeSet<Vec<u8>>>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idx");
        let pool = BufferPool::new(pool_pages * ps, ps);
        let model = bulk.cloned().unwrap_or_default();
        let tree = match bulk {
            None => BTree::create(&path, &pool, b"meta", 0).unwrap(),
            Some(keys) => {
                BTree::bulk_load(&path, &pool, b"meta", 0, keys.iter().cloned().map(Ok)).unwrap()
            }
        };
        Harness {
            _dir: dir,
            path,
            pool,
            tree: Some(tree),
            ckpt_model: model.clone(),
            model,
            ckpt_lsn: 0,
            lsn: 0,
            log: Vec::new(),
        }
    }

    fn tree(&self) -> &BTree {
        self.tree.as_ref().unwrap()
    }

    fn maybe_checkpoint(&mut self) {
        if self.pool.dirty_pages() > self.pool.capacity_pages() / 2 {
            self.checkpoint();
        }
    }

    fn checkpoint(&mut self) {
        self.tree().checkpoint(self.lsn).unwrap();
        assert_eq!(self.tree().dirty_pages(), 0);
        self.ckpt_model = self.model.clone();
        self.ckpt_lsn = self.lsn;
        self.log.clear();
    }

    fn mutate(&mut self, insert: bool, k: &[u8]) -> bool {
        let t = self.tree();
        if insert {
            t.insert(k).unwrap()
        } else {
            t.delete(k).unwrap()
        }
    }

    fn apply(&mut self, op: &Op) {
        self.maybe_checkpoint();
        match op {
            Op::Insert(k) | Op::Delete(k) => {
                let insert = matches!(op, Op::Insert(_));
                self.lsn += 1;
                let got = self.mutate(insert, k);
                let want = if insert {
                    self.model.insert(k.clone())
                } else {
                    self.model.remove(k)
                };
                assert_eq!(got, want, "{op:?}");
                self.log.push((self.lsn, insert, k.clone()));
            }
            Op::Contains(k) => assert_eq!(self.tree().contains(k).unwrap(), self.model.contains(k)),
            Op::Scan(lo, hi, rev, limit) => {
                let got = self
                    .tree()
                    .scan(lo.bound(), hi.bound(), *rev, *limit)
                    .unwrap();
                assert_eq!(
                    got,
                    expected_scan(&self.model, lo, hi, *rev, *limit),
                    "{op:?}"
                );
            }
            Op::Checkpoint => self.checkpoint(),
            Op::Crash => self.crash_and_recover(),
        }
    }

    /// Drops the tree without checkpoint, reopens, checks the last checkpoint's state, replays.
    fn crash_and_recover(&mut self) {
        drop(self.tree.take());
        assert_eq!(
            self.pool.dirty_pages(),
            0,
            "a dropped tree releases its frames"
        );
        let tree = BTree::open(&self.path, &self.pool).unwrap();
        assert_eq!(tree.checkpoint_lsn(), self.ckpt_lsn);
        assert_eq!(tree.meta(), b"meta");
        tree.check().unwrap();
        assert_eq!(
            all(&tree),
            self.ckpt_model.iter().cloned().collect::<Vec<_>>()
        );
        self.tree = Some(tree);
        let log = std::mem::take(&mut self.log);
        let mut state = self.ckpt_model.clone();
        let mut keep_from = 0;
        for (i, (lsn, insert, k)) in log.iter().enumerate() {
            if self.pool.dirty_pages() > self.pool.capacity_pages() / 2 {
                let last = if i == 0 { self.ckpt_lsn } else { log[i - 1].0 };
                self.tree().checkpoint(last).unwrap();
                self.ckpt_model = state.clone();
                self.ckpt_lsn = last;
                keep_from = i;
            }
            self.mutate(*insert, k);
            if *insert {
                state.insert(k.clone());
            } else {
                state.remove(k);
            }
            let _ = lsn;
        }
        self.log = log[keep_from..].to_vec();
        assert_eq!(state, self.model);
        assert_eq!(
            all(self.tree()),
            self.model.iter().cloned().collect::<Vec<_>>()
        );
    }

    fn finish(&mut self) {
        let stats = self.tree().check().unwrap();
        assert_eq!(stats.entries, self.model.len() as u64);
        assert_eq!(
            stats,
            TreeStatsNoFile::from(self.tree().stats()).with(stats.file_bytes)
        );
        assert_eq!(
            all(self.tree()),
            self.model.iter().cloned().collect::<Vec<_>>()
        );
        let rev = self
            .tree()
            .scan(Bound::Unbounded, Bound::Unbounded, true, usize::MAX)
            .unwrap();
        assert_eq!(rev, self.model.iter().rev().cloned().collect::<Vec<_>>());
    }
}

/// `stats()` and `check()` must agree on everything they both report.
struct TreeStatsNoFile(super::TreeStats);
impl From<super::TreeStats> for TreeStatsNoFile {
    fn from(s: super::TreeStats) -> Self {
        TreeStatsNoFile(s)
    }
}
impl TreeStatsNoFile {
    fn with(mut self, file_bytes: u64) -> super::TreeStats {
        self.0.file_bytes = file_bytes;
        self.0
    }
}

fn run_ops(h: &mut Harness, ops: &[Op]) {
    for (i, op) in ops.iter().enumerate() {
        h.apply(op);
        if i % 64 == 63 {
            h.tree().check().unwrap();
        }
    }
    h.finish();
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    /// Random inserts / deletes / lookups / scans / checkpoints / crashes against the model.
    #[test]
    fn model_with_crashes((ps, prefill, ops) in case(300)) {
        // 64 frames: still far fewer than the pages of a 4-level tree, and half the checkpoints
        // (each costs three fsyncs, which dominate the runtime on a busy disk) of 32 frames.
        let mut h = Harness::new(ps, 64, None);
        for k in prefill {
            h.apply(&Op::Insert(k));
        }
        run_ops(&mut h, &ops);
    }

    /// Bulk-loaded trees satisfy every invariant and then behave like any other tree.
    #[test]
    fn bulk_load_then_mutate(
        (ps, keys, ops) in prop_oneof![Just(256usize), Just(512usize)].prop_flat_map(|ps| (
            Just(ps),
            prop::collection::btree_set(key(ps), 0..1200),
            prop::collection::vec(op(ps), 0..150),
        ))
    ) {
        let mut h = Harness::new(ps, 64, Some(&keys));
        let stats = h.tree().check().unwrap();
        prop_assert_eq!(stats.entries, keys.len() as u64);
        prop_assert_eq!(all(h.tree()), keys.iter().cloned().collect::<Vec<_>>());
        run_ops(&mut h, &ops);
    }
}

#[test]
fn deep_tree_from_long_keys() {
    // Long keys with a long shared prefix: four per page, so the tree gets deep quickly.
    let ps = 256;
    let mut h = Harness::new(ps, 32, None);
    let max = BTree::max_key_len(ps);
    let keys: Vec<Vec<u8>> = (0..600u32)
        .map(|i| {
            let mut k = vec![b'x'; max - 4];
            k.extend_from_slice(&(i.wrapping_mul(2_654_435_761)).to_be_bytes());
            k
        })
        .collect();
    for k in &keys {
        h.apply(&Op::Insert(k.clone()));
    }
    assert!(h.tree().stats().height >= 4, "{:?}", h.tree().stats());
    h.tree().check().unwrap();
    for k in keys.iter().step_by(2) {
        h.apply(&Op::Delete(k.clone()));
    }
    h.apply(&Op::Crash);
    h.finish();
    for k in keys.iter().skip(1).step_by(2) {
        h.apply(&Op::Delete(k.clone()));
    }
    h.finish();
    let s = h.tree().stats();
    assert_eq!(
        (s.height, s.entries),
        (1, 0),
        "tree shrinks back to an empty leaf root"
    );
    assert_eq!(
        s.free_pages + 2,
        s.pages,
        "all other pages are on the free list"
    );
}

fn build(path: &Path, pool: &Arc<BufferPool>, keys: &[&[u8]]) -> BTree {
    let t = BTree::create(path, pool, b"m", 0).unwrap();
    for k in keys {
        assert!(t.insert(k).unwrap());
    }
    t
}

fn numbered(n: u32) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("key{i:06}").into_bytes()).collect()
}

#[test]
fn crash_during_checkpoint() {
    let old = numbered(300);
    let cases: [(FailPoint, Option<&str>, bool); 5] = [
        (FailPoint::AfterDoubleWrite, None, true),
        (FailPoint::AfterDoubleWrite, Some("truncate"), false),
        (FailPoint::AfterDoubleWrite, Some("flip"), false),
        (FailPoint::AfterInPlacePages(0), None, true),
        (FailPoint::AfterInPlacePages(3), None, true),
    ];
    for (point, damage, expect_new) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idx");
        let pool = BufferPool::new(1 << 20, 512);
        let t = BTree::create(&path, &pool, b"m", 0).unwrap();
        for k in &old {
            t.insert(k).unwrap();
        }
        t.checkpoint(1).unwrap();
        let mut new: BTreeSet<Vec<u8>> = old.iter().cloned().collect();
        for (i, k) in old.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            assert!(t.delete(k).unwrap());
            new.remove(k);
            let n = format!("new{i:05}").into_bytes();
            t.insert(&n).unwrap();
            new.insert(n);
        }
        t.fail_next_checkpoint(point);
        assert!(t.checkpoint(2).is_err());
        drop(t);
        let dw = dw_path(&path);
        match damage {
            Some("truncate") => {
                let len = std::fs::metadata(&dw).unwrap().len();
                let f = std::fs::OpenOptions::new().write(true).open(&dw).unwrap();
                f.set_len(len / 2).unwrap();
            }
            Some(_) => {
                let mut b = std::fs::read(&dw).unwrap();
                let mid = b.len() / 2;
                b[mid] ^= 0x40;
                std::fs::write(&dw, b).unwrap();
            }
            None => {}
        }
        let t = BTree::open(&path, &pool).unwrap();
        assert!(!dw.exists(), "open deals with the double-write file");
        t.check().unwrap();
        let (lsn, want): (u64, Vec<Vec<u8>>) = if expect_new {
            (2, new.iter().cloned().collect())
        } else {
            (1, old.clone())
        };
        assert_eq!(t.checkpoint_lsn(), lsn, "{point:?} {damage:?}");
        assert_eq!(all(&t), want, "{point:?} {damage:?}");
        // The reopened tree keeps working and checkpointing.
        t.insert(b"after").unwrap();
        t.checkpoint(3).unwrap();
        drop(t);
        let t = BTree::open(&path, &pool).unwrap();
        assert!(t.contains(b"after").unwrap());
        t.destroy().unwrap();
        assert!(!path.exists());
    }
}

#[test]
fn tree_much_larger_than_pool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    let ps = 512;
    let pool = BufferPool::new(16 * ps, ps);
    assert_eq!(pool.capacity_pages(), 16);
    let t = BTree::create(&path, &pool, b"", 0).unwrap();
    let keys = numbered(20_000);
    let mut lsn = 0;
    let ckpt = |t: &BTree, lsn: u64| {
        if pool.dirty_pages() > pool.capacity_pages() / 2 {
            t.checkpoint(lsn).unwrap();
        }
    };
    for k in &keys {
        ckpt(&t, lsn);
        lsn += 1;
        assert!(t.insert(k).unwrap());
    }
    let s = t.check().unwrap();
    assert_eq!(s.entries, 20_000);
    assert!(
        s.pages > 10 * 16,
        "tree ({} pages) is much larger than the pool",
        s.pages
    );
    // Random-order lookups and deletions force constant eviction.
    let mut model: BTreeSet<Vec<u8>> = keys.iter().cloned().collect();
    let mut x = 12345u64;
    for _ in 0..3000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = &keys[(x >> 33) as usize % keys.len()];
        assert_eq!(t.contains(k).unwrap(), model.contains(k));
        if x & 1 == 0 {
            ckpt(&t, lsn);
            lsn += 1;
            assert_eq!(t.delete(k).unwrap(), model.remove(k));
        }
    }
    assert_eq!(all(&t), model.iter().cloned().collect::<Vec<_>>());
    let from = b"key010000".as_slice();
    let got = t
        .scan(Bound::Included(from), Bound::Unbounded, true, 50)
        .unwrap();
    let want: Vec<_> = model
        .range(from.to_vec()..)
        .rev()
        .take(50)
        .cloned()
        .collect();
    assert_eq!(got, want);
    let got = t
        .scan(Bound::Unbounded, Bound::Excluded(from), true, 50)
        .unwrap();
    let want: Vec<_> = model
        .range(..from.to_vec())
        .rev()
        .take(50)
        .cloned()
        .collect();
    assert_eq!(got, want);
    t.check().unwrap();
    let ps = pool.stats();
    assert!(ps.evictions > 1000 && ps.misses > 1000, "{ps:?}");
    assert!(ps.resident_pages <= 16);
    t.checkpoint(lsn).unwrap();
    drop(t);
    let t = BTree::open(&path, &pool).unwrap();
    assert_eq!(t.check().unwrap().entries, model.len() as u64);
}

#[test]
fn corrupted_page_is_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let ps = 256;
    let pool = BufferPool::new(64 * ps, ps);
    let keys = numbered(400);
    let t = build(
        &path,
        &pool,
        &keys.iter().map(|k| k.as_slice()).collect::<Vec<_>>(),
    );
    t.checkpoint(7).unwrap();
    let pages = t.stats().pages;
    drop(t);
    let clean = std::fs::read(&path).unwrap();
    for victim in 1..pages as usize {
        let mut b = clean.clone();
        b[victim * ps + 30] ^= 0x01;
        std::fs::write(&path, &b).unwrap();
        let t = BTree::open(&path, &pool).unwrap();
        let err = t.check().unwrap_err();
        match &err {
            IndexError::Corruption { detail, .. } => {
                assert!(detail.contains(&format!("page {victim}")), "{detail}")
            }
            e => panic!("{e}"),
        }
        // Every read path fails cleanly (or succeeds, if it does not touch the page).
        let _ = t.scan(Bound::Unbounded, Bound::Unbounded, false, usize::MAX);
        let _ = t.scan(Bound::Unbounded, Bound::Unbounded, true, usize::MAX);
        for k in keys.iter().step_by(7) {
            let _ = t.contains(k);
            let _ = t.insert(k);
            let _ = t.delete(k);
        }
    }
    // A damaged meta page or a truncated file is refused by open.
    let mut b = clean.clone();
    b[40] ^= 0x01;
    std::fs::write(&path, &b).unwrap();
    assert!(matches!(
        BTree::open(&path, &pool),
        Err(IndexError::Corruption { .. })
    ));
    std::fs::write(&path, &clean[..clean.len() - ps]).unwrap();
    assert!(matches!(
        BTree::open(&path, &pool),
        Err(IndexError::Corruption { .. })
    ));
    std::fs::write(&path, &clean[..10]).unwrap();
    assert!(matches!(
        BTree::open(&path, &pool),
        Err(IndexError::Corruption { .. })
    ));
    // Garbage page bytes with a valid checksum must not panic either.
    let mut b = clean.clone();
    for (i, x) in b[ps + 4..2 * ps].iter_mut().enumerate() {
        *x = (i * 37) as u8;
    }
    super::page::seal(1, &mut b[ps..2 * ps]);
    std::fs::write(&path, &b).unwrap();
    let t = BTree::open(&path, &pool).unwrap();
    assert!(t.check().is_err());
    let _ = t.scan(Bound::Unbounded, Bound::Unbounded, false, usize::MAX);
    // The wrong page size is an argument error, not corruption.
    std::fs::write(&path, &clean).unwrap();
    let other = BufferPool::new(1 << 16, 512);
    assert!(matches!(
        BTree::open(&path, &other),
        Err(IndexError::InvalidArgument(_))
    ));
}

#[test]
fn argument_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pool = BufferPool::new(0, 256);
    assert_eq!(pool.capacity_pages(), 16);
    let max = BTree::max_key_len(256);
    let path = dir.path().join("a");
    let t = BTree::create(&path, &pool, &[1; 128], 5).unwrap();
    assert_eq!((t.meta(), t.checkpoint_lsn()), (vec![1; 128], 5));
    assert!(t.insert(&vec![0; max]).unwrap());
    assert!(matches!(
        t.insert(&vec![0; max + 1]),
        Err(IndexError::KeyTooLarge { len, max: m }) if len == max + 1 && m == max
    ));
    assert!(!t.insert(&vec![0; max]).unwrap());
    assert!(matches!(
        BTree::create(&path, &pool, b"", 0),
        Err(IndexError::Io { .. })
    ));
    let p2 = dir.path().join("b");
    assert!(matches!(
        BTree::create(&p2, &pool, &[0; 129], 0),
        Err(IndexError::InvalidArgument(_))
    ));
    let unsorted = [b"b".to_vec(), b"a".to_vec()];
    assert!(matches!(
        BTree::bulk_load(&p2, &pool, b"", 0, unsorted.into_iter().map(Ok)),
        Err(IndexError::InvalidArgument(_))
    ));
    let dup = [b"a".to_vec(), b"a".to_vec()];
    assert!(BTree::bulk_load(&p2, &pool, b"", 0, dup.into_iter().map(Ok)).is_err());
    let big = [vec![0u8; max + 1]];
    assert!(matches!(
        BTree::bulk_load(&p2, &pool, b"", 0, big.into_iter().map(Ok)),
        Err(IndexError::KeyTooLarge { .. })
    ));
    assert!(!p2.exists() && !super::sibling_path(&p2, ".tmp").exists());
    let empty = BTree::bulk_load(&p2, &pool, b"e", 9, std::iter::empty()).unwrap();
    assert_eq!(empty.check().unwrap().entries, 0);
    assert_eq!(empty.checkpoint_lsn(), 9);
}

#[test]
fn pool_exhaustion_leaves_tree_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let pool = BufferPool::new(0, 256);
    let t = BTree::create(&dir.path().join("x"), &pool, b"", 0).unwrap();
    let keys = numbered(2000);
    let mut inserted = BTreeSet::new();
    let mut exhausted = false;
    for k in &keys {
        match t.insert(k) {
            Ok(_) => {
                inserted.insert(k.clone());
            }
            Err(IndexError::PoolExhausted { capacity_pages: 16 }) => {
                exhausted = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(exhausted, "never checkpointing must exhaust a 16-page pool");
    t.check().unwrap();
    assert_eq!(all(&t), inserted.into_iter().collect::<Vec<_>>());
    t.checkpoint(1).unwrap();
    assert_eq!(pool.dirty_pages(), 0);
    assert!(t.insert(b"zzz").unwrap());
}

#[test]
fn concurrent_trees_share_a_pool() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BTree>();
    assert_send_sync::<BufferPool>();
    let dir = tempfile::tempdir().unwrap();
    let pool = BufferPool::new(64 * 512, 512);
    let trees: Vec<Arc<BTree>> = (0..3)
        .map(|i| Arc::new(BTree::create(&dir.path().join(format!("t{i}")), &pool, b"", 0).unwrap()))
        .collect();
    let lock = Arc::new(parking_lot::Mutex::new(()));
    std::thread::scope(|s| {
        for (i, t) in trees.iter().enumerate() {
            let (t, pool, lock) = (Arc::clone(t), Arc::clone(&pool), Arc::clone(&lock));
            s.spawn(move || {
                for n in 0..1500u32 {
                    {
                        // One thread at a time decides to checkpoint its tree, as a shard would.
                        let _g = lock.lock();
                        if pool.dirty_pages() > pool.capacity_pages() / 2 {
                            t.checkpoint(n as u64).unwrap();
                        }
                        t.insert(format!("{i}-{n:05}").as_bytes()).unwrap();
                    }
                    if n % 100 == 0 {
                        assert_eq!(
                            t.scan(Bound::Unbounded, Bound::Unbounded, false, usize::MAX)
                                .unwrap()
                                .len(),
                            n as usize + 1
                        );
                    }
                }
            });
            let t = Arc::clone(&trees[(i + 1) % 3]);
            s.spawn(move || {
                for _ in 0..200 {
                    let r = t
                        .scan(Bound::Unbounded, Bound::Unbounded, true, 10)
                        .unwrap();
                    assert!(r.windows(2).all(|w| w[0] > w[1]));
                }
            });
        }
    });
    for t in &trees {
        assert_eq!(t.check().unwrap().entries, 1500);
    }
}

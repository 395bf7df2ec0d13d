//! The buffer pool shared by all index files of a shard.
//!
//! Frames are keyed by (tree id, page number); tree ids come from a process-wide counter so two
//! opens of the same path never share frames. Replacement is CLOCK (a referenced bit gives a
//! recently used frame a second chance) over frames that are unpinned and **clean**.
//!
//! The pool is no-steal: a dirty frame is never written back here. Its only way to disk is a
//! tree checkpoint, which copies the tree's dirty frames out, makes them durable via the
//! double-write file and then marks them clean. That is what keeps the index file equal to the
//! last checkpoint at all times. If a page must be brought in and every frame is pinned or
//! dirty, the pool reports `PoolExhausted` instead of breaking that rule.
//!
//! Locking: one mutex guards the frame table (mapping, pins, flags, counters); each frame's bytes
//! sit behind their own RwLock so page copies and disk reads happen outside the table mutex.
//! Lock order is table → frame; a thread holding a frame lock never waits for the table mutex.
//! A frame being loaded is write-locked before the table mutex is released, so a concurrent hit
//! on it simply waits for the load; a failed load leaves the frame marked invalid, and whoever
//! sees that retries (and then loads, and fails, itself).
//!
//! Writes are installed all at once (`install`): either every page of one tree operation gets a
//! frame and becomes dirty, or none does — so `PoolExhausted` never leaves a half-applied
//! operation behind.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockWriteGuard};

use super::page;
use super::{IndexError, Result};

/// Counters describing the pool, for `pg_stat`-style views (sent as is in shard statistics,
/// hence serializable).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PoolCounters {
    pub capacity_pages: u64,
    pub resident_pages: u64,
    pub dirty_pages: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    /// Pages written in place by checkpoints (double-write copies not counted).
    pub page_writes: u64,
    pub checkpoints: u64,
}

/// One open index file as the pool sees it.
pub(crate) struct PageFile {
    pub id: u64,
    pub path: PathBuf,
    pub file: File,
}

type Key = (u64, u32);

#[derive(Default)]
struct Slot {
    key: Option<Key>,
    pins: u32,
    dirty: bool,
    referenced: bool,
}

#[derive(Default)]
struct Frame {
    valid: bool,
    bytes: Vec<u8>,
}

struct Table {
    slots: Vec<Slot>,
    map: HashMap<Key, usize>,
    hand: usize,
    dirty: usize,
    dirty_by_file: HashMap<u64, usize>,
    counters: PoolCounters,
}

/// A bounded page cache shared by several trees.
pub struct BufferPool {
    page_size: usize,
    capacity: usize,
    table: Mutex<Table>,
    frames: Box<[RwLock<Frame>]>,
}

impl BufferPool {
    /// capacity_pages = max(capacity_bytes / page_size, 16). Frame memory is allocated on first
    /// use. Panics if `page_size` is outside 256..=65536 (a configuration error).
    pub fn new(capacity_bytes: usize, page_size: usize) -> Arc<BufferPool> {
        assert!(
            (page::MIN_PAGE_SIZE..=page::MAX_PAGE_SIZE).contains(&page_size),
            "index page size {page_size} outside {}..={}",
            page::MIN_PAGE_SIZE,
            page::MAX_PAGE_SIZE
        );
        let capacity = (capacity_bytes / page_size).max(16);
        Arc::new(BufferPool {
            page_size,
            capacity,
            table: Mutex::new(Table {
                slots: (0..capacity).map(|_| Slot::default()).collect(),
                map: HashMap::with_capacity(capacity),
                hand: 0,
                dirty: 0,
                dirty_by_file: HashMap::new(),
                counters: PoolCounters::default(),
            }),
            frames: (0..capacity)
                .map(|_| RwLock::new(Frame::default()))
                .collect(),
        })
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    pub fn capacity_pages(&self) -> usize {
        self.capacity
    }

    /// Dirty frames over all trees.
    pub fn dirty_pages(&self) -> usize {
        self.table.lock().dirty
    }

    pub fn stats(&self) -> PoolCounters {
        let t = self.table.lock();
        PoolCounters {
            capacity_pages: self.capacity as u64,
            resident_pages: t.map.len() as u64,
            dirty_pages: t.dirty as u64,
            ..t.counters.clone()
        }
    }

    fn exhausted(&self) -> IndexError {
        IndexError::PoolExhausted {
            capacity_pages: self.capacity,
        }
    }

    /// Runs `f` on the bytes of page `pno`, loading (and checksum-verifying) it on a miss.
    pub(crate) fn read<R>(&self, pf: &PageFile, pno: u32, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let key = (pf.id, pno);
        let mut f = Some(f);
        loop {
            let mut t = self.table.lock();
            if let Some(&i) = t.map.get(&key) {
                t.slots[i].pins += 1;
                t.slots[i].referenced = true;
                t.counters.hits += 1;
                drop(t);
                let out = {
                    let fr = self.frames[i].read();
                    fr.valid.then(|| (f.take().expect("used once"))(&fr.bytes))
                };
                self.unpin(i);
                match out {
                    Some(r) => return Ok(r),
                    None => {
                        std::thread::yield_now();
                        continue;
                    }
                }
            }
            t.counters.misses += 1;
            let i = t
                .victims(1, |_| false)
                .pop()
                .ok_or_else(|| self.exhausted())?;
            t.take_frame(i, key);
            t.slots[i].pins = 1;
            let mut fr = self.frames[i].write();
            fr.valid = false;
            drop(t);
            fr.bytes.resize(self.page_size, 0);
            match self.load(pf, pno, &mut fr.bytes) {
                Ok(()) => {
                    fr.valid = true;
                    let fr = RwLockWriteGuard::downgrade(fr);
                    let r = (f.take().expect("used once"))(&fr.bytes);
                    drop(fr);
                    self.unpin(i);
                    return Ok(r);
                }
                Err(e) => {
                    drop(fr);
                    let mut t = self.table.lock();
                    if t.slots[i].key == Some(key) {
                        t.map.remove(&key);
                        t.slots[i].key = None;
                    }
                    t.slots[i].pins -= 1;
                    return Err(e);
                }
            }
        }
    }

    fn load(&self, pf: &PageFile, pno: u32, buf: &mut [u8]) -> Result<()> {
        let off = pno as u64 * self.page_size as u64;
        if let Err(e) = pf.file.read_exact_at(buf, off) {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                return Err(IndexError::Corruption {
                    path: pf.path.clone(),
                    detail: format!("page {pno} lies beyond the end of the file"),
                });
            }
            return Err(super::io_err(&pf.path)(e));
        }
        if !page::verify(pno, buf) {
            return Err(IndexError::Corruption {
                path: pf.path.clone(),
                detail: format!("page {pno}: checksum mismatch"),
            });
        }
        Ok(())
    }

    fn unpin(&self, i: usize) {
        self.table.lock().slots[i].pins -= 1;
    }

    /// Installs the new contents of pages of tree `file_id` as dirty frames, all or nothing.
    pub(crate) fn install(&self, file_id: u64, pages: Vec<(u32, Vec<u8>)>) -> Result<()> {
        let mut t = self.table.lock();
        let missing = pages
            .iter()
            .filter(|(p, _)| !t.map.contains_key(&(file_id, *p)))
            .count();
        let victims = t.victims(missing, |k| {
            k.0 == file_id && pages.iter().any(|(p, _)| *p == k.1)
        });
        if victims.len() < missing {
            return Err(self.exhausted());
        }
        let mut victims = victims.into_iter();
        for (pno, bytes) in pages {
            let key = (file_id, pno);
            let i = match t.map.get(&key) {
                Some(&i) => i,
                None => {
                    let i = victims.next().expect("counted above");
                    t.take_frame(i, key);
                    i
                }
            };
            if !t.slots[i].dirty {
                t.slots[i].dirty = true;
                t.dirty += 1;
                *t.dirty_by_file.entry(file_id).or_default() += 1;
            }
            let mut fr = self.frames[i].write();
            fr.bytes = bytes;
            fr.valid = true;
        }
        Ok(())
    }

    /// Copies of all dirty pages of a tree, ascending by page number.
    pub(crate) fn dirty_of(&self, file_id: u64) -> Vec<(u32, Vec<u8>)> {
        let t = self.table.lock();
        let mut out: Vec<(u32, Vec<u8>)> = t
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.dirty && s.key.is_some_and(|k| k.0 == file_id))
            .map(|(i, s)| {
                (
                    s.key.expect("filtered").1,
                    self.frames[i].read().bytes.clone(),
                )
            })
            .collect();
        out.sort_unstable_by_key(|(p, _)| *p);
        out
    }

    /// Marks the tree's frames clean after a completed checkpoint.
    pub(crate) fn checkpoint_done(&self, file_id: u64, pages_written: usize) {
        let mut t = self.table.lock();
        let mut cleaned = 0;
        for s in t.slots.iter_mut() {
            if s.dirty && s.key.is_some_and(|k| k.0 == file_id) {
                s.dirty = false;
                cleaned += 1;
            }
        }
        t.dirty -= cleaned;
        t.dirty_by_file.remove(&file_id);
        t.counters.page_writes += pages_written as u64;
        t.counters.checkpoints += 1;
    }

    pub(crate) fn dirty_of_count(&self, file_id: u64) -> usize {
        self.table
            .lock()
            .dirty_by_file
            .get(&file_id)
            .copied()
            .unwrap_or(0)
    }

    /// Forgets every frame of a tree, dirty ones included (a close without checkpoint is a
    /// crash for that tree).
    pub(crate) fn release(&self, file_id: u64) {
        let mut t = self.table.lock();
        let t = &mut *t;
        for s in t.slots.iter_mut() {
            if let Some(k) = s.key.filter(|k| k.0 == file_id) {
                t.map.remove(&k);
                s.key = None;
                if s.dirty {
                    s.dirty = false;
                    t.dirty -= 1;
                }
                s.referenced = false;
            }
        }
        t.dirty_by_file.remove(&file_id);
    }
}

impl Table {
    /// Up to `n` distinct replaceable frames: empty ones first, then CLOCK over unpinned clean
    /// frames whose key is not `protected`.
    fn victims(&mut self, n: usize, protected: impl Fn(&Key) -> bool) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        if n == 0 {
            return out;
        }
        for (i, s) in self.slots.iter().enumerate() {
            if out.len() == n {
                return out;
            }
            if s.key.is_none() && s.pins == 0 {
                out.push(i);
            }
        }
        let cap = self.slots.len();
        for _ in 0..2 * cap {
            if out.len() == n {
                break;
            }
            let i = self.hand;
            self.hand = (self.hand + 1) % cap;
            let s = &mut self.slots[i];
            let Some(k) = s.key else { continue };
            if s.pins > 0 || s.dirty || protected(&k) || out.contains(&i) {
                continue;
            }
            if s.referenced {
                s.referenced = false;
                continue;
            }
            out.push(i);
        }
        out
    }

    /// Re-keys frame `i` (evicting its clean page, if any) for `key`.
    fn take_frame(&mut self, i: usize, key: Key) {
        if let Some(old) = self.slots[i].key.take() {
            self.map.remove(&old);
            self.counters.evictions += 1;
        }
        let s = &mut self.slots[i];
        s.key = Some(key);
        s.dirty = false;
        s.referenced = true;
        self.map.insert(key, i);
    }
}

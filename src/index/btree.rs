//! The B+tree: lookups, range scans, and inserts/deletes that keep every page between the
//! minimum fill and the page size.
//!
//! Shape: all leaves at level 0 and equal depth, linked both ways in key order; internal pages
//! hold only separators and child pointers (entries have no values — the key is the entry).
//!
//! Writes run as an [`Op`]: every page an insert or delete changes (including freed and newly
//! allocated ones) is collected in the op's private write set together with a copy of the meta
//! record, and only at the end installed into the pool in one all-or-nothing step. A failure in
//! the middle (an I/O error, `PoolExhausted`, corruption found on the way) therefore leaves the
//! tree exactly as it was. Readers copy pages out of the pool and never hold a frame across
//! calls, so one tree-level RwLock is the only lock the tree needs: readers share it, writers
//! and checkpoints take it exclusively.
//!
//! Rebalancing works bottom-up along the descent path. A page that overflows is split at its
//! byte midpoint and the new separator goes to the parent; a non-root page that underflows
//! (less than `usable/4` bytes) is merged with a sibling if the result fits, otherwise the two
//! are redistributed evenly. Both change the parent (a redistribution may even make it overflow,
//! since the new separator can be longer), so the parent is examined next. At the root, an
//! overflow grows a new root and an internal root left with one child is collapsed into it.

use std::fs::OpenOptions;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::checkpoint::{self, FailPoint};
use super::page::{self, Kind, Meta, NONE, Node};
use super::pool::{BufferPool, PageFile};
use super::{IndexError, Result, io_err, sync_dir};

static NEXT_TREE_ID: AtomicU64 = AtomicU64::new(1);

/// Size and shape of a tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreeStats {
    pub height: u32,
    /// Pages in the file, the meta page included.
    pub pages: u64,
    pub leaf_pages: u64,
    pub free_pages: u64,
    pub entries: u64,
    pub file_bytes: u64,
}

/// One index: a set of byte-string keys in a page file. See the module docs.
pub struct BTree {
    pub(super) pool: Arc<BufferPool>,
    pub(super) file: PageFile,
    pub(super) state: RwLock<Meta>,
    blob: Vec<u8>,
    fail_point: Mutex<Option<FailPoint>>,
}

impl BTree {
    /// Creates a new empty index file at `path` (must not exist); durable (file and directory
    /// fsynced) on return.
    pub fn create(
        path: &Path,
        pool: &Arc<BufferPool>,
        meta: &[u8],
        checkpoint_lsn: u64,
    ) -> Result<BTree> {
        let ps = pool.page_size();
        check_meta_len(meta, ps)?;
        remove_stale_dw(path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io_err(path))?;
        let m = Meta {
            root: 1,
            height: 1,
            page_count: 2,
            free_head: NONE,
            entries: 0,
            checkpoint_lsn,
            leaf_pages: 1,
            free_pages: 0,
        };
        let mut leaf = Node::leaf(NONE, NONE, Vec::new()).encode(ps);
        page::seal(1, &mut leaf);
        let mut buf = m.encode(ps, meta);
        buf.extend_from_slice(&leaf);
        file.write_all_at(&buf, 0).map_err(io_err(path))?;
        file.sync_all().map_err(io_err(path))?;
        sync_dir(path)?;
        Ok(BTree::from_parts(pool, path, file, m, meta.to_vec()))
    }

    /// Creates the file from strictly ascending `entries`, bottom-up at ~90% fill, via
    /// `<path>.tmp` + rename. Durable on return. See `bulk`.
    pub fn bulk_load(
        path: &Path,
        pool: &Arc<BufferPool>,
        meta: &[u8],
        checkpoint_lsn: u64,
        entries: impl Iterator<Item = Result<Vec<u8>>>,
    ) -> Result<BTree> {
        check_meta_len(meta, pool.page_size())?;
        if path.exists() {
            return Err(IndexError::InvalidArgument(format!(
                "bulk_load: {} already exists",
                path.display()
            )));
        }
        remove_stale_dw(path)?;
        super::bulk::build(path, pool.page_size(), meta, checkpoint_lsn, entries)?;
        BTree::open(path, pool)
    }

    /// Opens an existing index file, completing or discarding an interrupted checkpoint first.
    pub fn open(path: &Path, pool: &Arc<BufferPool>) -> Result<BTree> {
        let ps = pool.page_size();
        checkpoint::recover(path, ps)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        let corrupt = |detail: String| IndexError::Corruption {
            path: path.to_path_buf(),
            detail,
        };
        let len = file.metadata().map_err(io_err(path))?.len();
        if len < ps as u64 {
            return Err(corrupt(format!("file of {len} bytes has no meta page")));
        }
        let mut buf = vec![0u8; ps];
        file.read_exact_at(&mut buf, 0).map_err(io_err(path))?;
        let (m, blob) = Meta::decode(&buf, ps).map_err(|e| match e {
            Ok(found) => IndexError::InvalidArgument(format!(
                "{} has page size {found}, the buffer pool uses {ps}",
                path.display()
            )),
            Err(detail) => corrupt(detail),
        })?;
        if len < m.page_count as u64 * ps as u64 {
            return Err(corrupt(format!(
                "file of {len} bytes is shorter than its {} pages",
                m.page_count
            )));
        }
        Ok(BTree::from_parts(pool, path, file, m, blob))
    }

    fn from_parts(
        pool: &Arc<BufferPool>,
        path: &Path,
        file: std::fs::File,
        meta: Meta,
        blob: Vec<u8>,
    ) -> BTree {
        BTree {
            pool: Arc::clone(pool),
            file: PageFile {
                id: NEXT_TREE_ID.fetch_add(1, Ordering::Relaxed),
                path: path.to_path_buf(),
                file,
            },
            state: RwLock::new(meta),
            blob,
            fail_point: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    pub fn meta(&self) -> Vec<u8> {
        self.blob.clone()
    }

    pub fn checkpoint_lsn(&self) -> u64 {
        self.state.read().checkpoint_lsn
    }

    pub fn max_key_len(page_size: usize) -> usize {
        page::max_key_len(page_size)
    }

    fn page_size(&self) -> usize {
        self.pool.page_size()
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = page::max_key_len(self.page_size());
        if key.len() > max {
            return Err(IndexError::KeyTooLarge {
                len: key.len(),
                max,
            });
        }
        Ok(())
    }

    pub(super) fn corrupt(&self, detail: String) -> IndexError {
        IndexError::Corruption {
            path: self.file.path.clone(),
            detail,
        }
    }

    /// Reads and decodes a tree page through the pool.
    pub(super) fn read_node(&self, meta: &Meta, pno: u32) -> Result<Node> {
        if pno == NONE || pno >= meta.page_count {
            return Err(self.corrupt(format!(
                "page number {pno} out of range (page count {})",
                meta.page_count
            )));
        }
        self.pool
            .read(&self.file, pno, Node::decode)?
            .map_err(|d| self.corrupt(format!("page {pno}: {d}")))
    }

    /// Set semantics: returns false (and changes nothing) if the key is already present.
    pub fn insert(&self, key: &[u8]) -> Result<bool> {
        self.check_key(key)?;
        let mut st = self.state.write();
        let mut op = Op::new(self, &st);
        let mut path = op.descend(key)?;
        let leaf = &mut path.last_mut().expect("non-empty path").node;
        let Err(pos) = leaf.keys.binary_search_by(|k| k.as_slice().cmp(key)) else {
            return Ok(false);
        };
        leaf.keys.insert(pos, key.to_vec());
        op.meta.entries += 1;
        op.fixup(path)?;
        *st = op.commit()?;
        Ok(true)
    }

    /// Returns false if the key was absent.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        if key.len() > page::max_key_len(self.page_size()) {
            return Ok(false);
        }
        let mut st = self.state.write();
        let mut op = Op::new(self, &st);
        let mut path = op.descend(key)?;
        let leaf = &mut path.last_mut().expect("non-empty path").node;
        let Ok(pos) = leaf.keys.binary_search_by(|k| k.as_slice().cmp(key)) else {
            return Ok(false);
        };
        leaf.keys.remove(pos);
        op.meta.entries -= 1;
        op.fixup(path)?;
        *st = op.commit()?;
        Ok(true)
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        if key.len() > page::max_key_len(self.page_size()) {
            return Ok(false);
        }
        let st = self.state.read();
        let leaf = self.leaf_for(&st, Some(key), false)?;
        self.read_view(&st, leaf, |v| Ok(v.keys.binary_search(&key).is_ok()))
    }

    /// Runs `f` on a validated view of tree page `pno` (the read path: no copies of keys).
    fn read_view<R>(
        &self,
        meta: &Meta,
        pno: u32,
        f: impl FnOnce(page::NodeView<'_>) -> Result<R>,
    ) -> Result<R> {
        if pno == NONE || pno >= meta.page_count {
            return Err(self.corrupt(format!(
                "page number {pno} out of range (page count {})",
                meta.page_count
            )));
        }
        self.pool.read(&self.file, pno, |bytes| {
            match page::NodeView::parse(bytes) {
                Ok(v) => f(v),
                Err(d) => Err(self.corrupt(format!("page {pno}: {d}"))),
            }
        })?
    }

    /// The leaf covering `key` (or the leftmost / rightmost leaf for `None`), found through
    /// page views.
    fn leaf_for(&self, st: &Meta, key: Option<&[u8]>, rightmost: bool) -> Result<u32> {
        let mut pno = st.root;
        let mut level = st.height - 1;
        loop {
            let next = self.read_view(st, pno, |v| {
                let ok = match v.kind {
                    Kind::Leaf => level == 0,
                    Kind::Internal => {
                        v.level as u32 == level
                            && !v.keys.is_empty()
                            && v.children.len() == v.keys.len() + 1
                    }
                    Kind::Free => false,
                };
                if !ok {
                    return Err(self.corrupt(format!(
                        "page {pno}: expected a tree page at level {level}, found {:?} at level {}",
                        v.kind, v.level
                    )));
                }
                if level == 0 {
                    return Ok(None);
                }
                let idx = match key {
                    Some(k) => v.keys.partition_point(|s| *s <= k),
                    None if rightmost => v.children.len() - 1,
                    None => 0,
                };
                Ok(Some(v.children[idx]))
            })?;
            match next {
                None => return Ok(pno),
                Some(child) => {
                    pno = child;
                    level -= 1;
                }
            }
        }
    }

    /// Keys within the bounds, ascending (or descending if `reverse`), at most `limit`.
    pub fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let after_start = |k: &[u8]| match start {
            Bound::Included(s) => k >= s,
            Bound::Excluded(s) => k > s,
            Bound::Unbounded => true,
        };
        let before_end = |k: &[u8]| match end {
            Bound::Included(e) => k <= e,
            Bound::Excluded(e) => k < e,
            Bound::Unbounded => true,
        };
        let st = self.state.read();
        let from = if reverse { end } else { start };
        let from = match from {
            Bound::Included(k) | Bound::Excluded(k) => Some(k),
            Bound::Unbounded => None,
        };
        let mut pno = self.leaf_for(&st, from, reverse)?;
        let mut came_from = NONE;
        // A corrupt link cycle must not spin forever: no scan visits more leaves than exist.
        for _ in 0..st.page_count {
            let (done, next, back) = self.read_view(&st, pno, |leaf| {
                if leaf.kind != Kind::Leaf {
                    return Err(self.corrupt(format!("page {pno}: expected a leaf")));
                }
                let mut done = false;
                let mut take = |k: &[u8]| {
                    out.push(k.to_vec());
                    out.len() == limit
                };
                if reverse {
                    for k in leaf.keys.iter().rev() {
                        if !before_end(k) {
                            continue;
                        }
                        if !after_start(k) || take(k) {
                            done = true;
                            break;
                        }
                    }
                    Ok((done, leaf.prev, leaf.next))
                } else {
                    for k in &leaf.keys {
                        if !after_start(k) {
                            continue;
                        }
                        if !before_end(k) || take(k) {
                            done = true;
                            break;
                        }
                    }
                    Ok((done, leaf.next, leaf.prev))
                }
            })?;
            if came_from != NONE && back != came_from {
                return Err(self.corrupt(format!(
                    "page {pno}: not a leaf linked back to leaf {came_from}"
                )));
            }
            if done || next == NONE {
                return Ok(out);
            }
            came_from = pno;
            pno = next;
        }
        Err(self.corrupt("leaf links form a cycle".into()))
    }

    /// Atomically persists the current state with checkpoint_lsn = lsn. After it returns, this
    /// tree has no dirty pages.
    pub fn checkpoint(&self, lsn: u64) -> Result<()> {
        let mut st = self.state.write();
        let ps = self.page_size();
        let mut m = st.clone();
        m.checkpoint_lsn = lsn;
        let mut pages = vec![(0u32, m.encode(ps, &self.blob))];
        for (pno, mut img) in self.pool.dirty_of(self.file.id) {
            page::seal(pno, &mut img);
            pages.push((pno, img));
        }
        let fail = self.fail_point.lock().take();
        checkpoint::write(&self.file, ps, lsn, &pages, fail)?;
        self.pool.checkpoint_done(self.file.id, pages.len());
        *st = m;
        Ok(())
    }

    /// Makes the next checkpoint stop at `point`, as if the process died there.
    #[cfg(test)]
    pub(super) fn fail_next_checkpoint(&self, point: FailPoint) {
        *self.fail_point.lock() = Some(point);
    }

    pub fn dirty_pages(&self) -> usize {
        self.pool.dirty_of_count(self.file.id)
    }

    /// Full invariant check; see `check`.
    pub fn check(&self) -> Result<TreeStats> {
        let st = self.state.read();
        let mut stats = super::check::check(self, &st)?;
        stats.file_bytes = self.file_bytes(&st);
        Ok(stats)
    }

    fn file_bytes(&self, st: &Meta) -> u64 {
        self.file
            .file
            .metadata()
            .map(|m| m.len())
            .unwrap_or(st.page_count as u64 * self.page_size() as u64)
    }

    pub fn stats(&self) -> TreeStats {
        let st = self.state.read();
        TreeStats {
            height: st.height,
            pages: st.page_count as u64,
            leaf_pages: st.leaf_pages,
            free_pages: st.free_pages,
            entries: st.entries,
            file_bytes: self.file_bytes(&st),
        }
    }

    /// Closes the tree: releases its frames WITHOUT writing dirty pages (what a crash would
    /// do). Call `checkpoint` first for a clean close.
    pub fn close(self) {
        drop(self)
    }

    /// Deletes the index file (and any `.dw`): for DROP INDEX. Releases its frames.
    pub fn destroy(self) -> Result<()> {
        let path = self.file.path.clone();
        drop(self);
        std::fs::remove_file(&path).map_err(io_err(&path))?;
        remove_stale_dw(&path)?;
        sync_dir(&path)
    }
}

impl Drop for BTree {
    fn drop(&mut self) {
        self.pool.release(self.file.id);
    }
}

fn check_meta_len(meta: &[u8], ps: usize) -> Result<()> {
    let max = page::max_meta_len(ps);
    if meta.len() > max {
        return Err(IndexError::InvalidArgument(format!(
            "index meta of {} bytes exceeds {max} bytes for page size {ps}",
            meta.len()
        )));
    }
    Ok(())
}

/// A `.dw` left by a destroyed index of the same name must never be applied to a new file.
fn remove_stale_dw(path: &Path) -> Result<()> {
    let dw = checkpoint::dw_path(path);
    match std::fs::remove_file(&dw) {
        Ok(()) => sync_dir(&dw),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&dw)(e)),
    }
}

/// Which child of an internal page covers `key`: the number of separators `<= key`.
pub(super) fn child_index(node: &Node, key: &[u8]) -> usize {
    node.keys.partition_point(|s| s.as_slice() <= key)
}

fn expect_shape(tree: &BTree, node: &Node, pno: u32, level: u32) -> Result<()> {
    let ok = match node.kind {
        Kind::Leaf => level == 0,
        // Only a transient root may have a single child; a stored one is collapsed.
        Kind::Internal => {
            node.level as u32 == level
                && !node.keys.is_empty()
                && node.children.len() == node.keys.len() + 1
        }
        Kind::Free => false,
    };
    if ok {
        Ok(())
    } else {
        Err(tree.corrupt(format!(
            "page {pno}: expected a tree page at level {level}, found {:?} at level {}",
            node.kind, node.level
        )))
    }
}

/// One page on the descent path of a write.
struct Step {
    pno: u32,
    node: Node,
    /// Internal pages: index of the child the descent took.
    child: usize,
}

/// The private write set of one insert or delete; see the module docs.
struct Op<'a> {
    tree: &'a BTree,
    ps: usize,
    base: Meta,
    meta: Meta,
    pages: std::collections::BTreeMap<u32, Node>,
}

impl<'a> Op<'a> {
    fn new(tree: &'a BTree, meta: &Meta) -> Op<'a> {
        Op {
            tree,
            ps: tree.page_size(),
            base: meta.clone(),
            meta: meta.clone(),
            pages: Default::default(),
        }
    }

    fn get(&self, pno: u32) -> Result<Node> {
        match self.pages.get(&pno) {
            Some(n) => Ok(n.clone()),
            None => self.tree.read_node(&self.base, pno),
        }
    }

    fn put(&mut self, pno: u32, node: Node) {
        self.pages.insert(pno, node);
    }

    fn alloc(&mut self) -> Result<u32> {
        if self.meta.free_head != NONE {
            let pno = self.meta.free_head;
            let node = self.get(pno)?;
            if node.kind != Kind::Free || node.next >= self.meta.page_count {
                return Err(self
                    .tree
                    .corrupt(format!("page {pno}: free-list entry is not a free page")));
            }
            self.meta.free_head = node.next;
            self.meta.free_pages -= 1;
            return Ok(pno);
        }
        let pno = self.meta.page_count;
        if pno == u32::MAX {
            return Err(IndexError::InvalidArgument("index file is full".into()));
        }
        self.meta.page_count += 1;
        Ok(pno)
    }

    fn free(&mut self, pno: u32, was_leaf: bool) {
        self.put(pno, Node::free(self.meta.free_head));
        self.meta.free_head = pno;
        self.meta.free_pages += 1;
        if was_leaf {
            self.meta.leaf_pages -= 1;
        }
    }

    /// Updates the `prev` link of the leaf at `pno` (no-op for `NONE`).
    fn relink_prev(&mut self, pno: u32, prev: u32) -> Result<()> {
        if pno != NONE {
            let mut n = self.get(pno)?;
            if !n.is_leaf() {
                return Err(self
                    .tree
                    .corrupt(format!("page {pno}: leaf link to a non-leaf")));
            }
            n.prev = prev;
            self.put(pno, n);
        }
        Ok(())
    }

    fn descend(&mut self, key: &[u8]) -> Result<Vec<Step>> {
        let mut path = Vec::with_capacity(self.meta.height as usize);
        let mut pno = self.meta.root;
        let mut level = self.meta.height - 1;
        loop {
            let node = self.get(pno)?;
            expect_shape(self.tree, &node, pno, level)?;
            let child = if level == 0 {
                0
            } else {
                child_index(&node, key)
            };
            let next = node.children.get(child).copied();
            path.push(Step { pno, node, child });
            if level == 0 {
                return Ok(path);
            }
            pno = next.expect("shape checked");
            level -= 1;
        }
    }

    /// Restores the size invariants bottom-up after the last page of `path` changed.
    fn fixup(&mut self, mut path: Vec<Step>) -> Result<()> {
        let min = page::min_fill(self.ps);
        while let Some(Step { pno, mut node, .. }) = path.pop() {
            let Some(parent) = path.last_mut() else {
                return self.fix_root(pno, node);
            };
            if !node.fits(self.ps) {
                let (sep, right) = self.split(pno, &mut node)?;
                parent.node.keys.insert(parent.child, sep);
                parent.node.children.insert(parent.child + 1, right);
            } else if node.used() < min {
                self.rebalance(&mut parent.node, parent.child, pno, node)?;
            } else {
                self.put(pno, node);
                return Ok(());
            }
        }
        Ok(())
    }

    fn fix_root(&mut self, pno: u32, mut node: Node) -> Result<()> {
        if !node.fits(self.ps) {
            let level = node.level + 1;
            let (sep, right) = self.split(pno, &mut node)?;
            let root = self.alloc()?;
            self.put(root, Node::internal(level, vec![sep], vec![pno, right]));
            self.meta.root = root;
            self.meta.height += 1;
        } else if node.kind == Kind::Internal && node.keys.is_empty() {
            self.meta.root = node.children[0];
            self.meta.height -= 1;
            self.free(pno, false);
        } else {
            self.put(pno, node);
        }
        Ok(())
    }

    /// Splits an overflowing page in two; returns the separator and the new right page.
    fn split(&mut self, pno: u32, node: &mut Node) -> Result<(Vec<u8>, u32)> {
        let rpno = self.alloc()?;
        let (sep, right) = if node.is_leaf() {
            let m = page::leaf_split_point(&node.keys);
            let rkeys = node.keys.split_off(m);
            let sep = page::separator(node.keys.last().expect("m >= 1"), &rkeys[0]);
            let right = Node::leaf(pno, node.next, rkeys);
            self.relink_prev(node.next, rpno)?;
            node.next = rpno;
            self.meta.leaf_pages += 1;
            (sep, right)
        } else {
            let m = page::internal_split_point(&node.keys);
            let rkeys = node.keys.split_off(m + 1);
            let sep = node.keys.pop().expect("m >= 1");
            let rchildren = node.children.split_off(m + 1);
            (sep, Node::internal(node.level, rkeys, rchildren))
        };
        self.put(pno, node.clone());
        self.put(rpno, right);
        Ok((sep, rpno))
    }

    /// Merges the underfull child `ci` of `parent` with a sibling, or evens the two out.
    fn rebalance(&mut self, parent: &mut Node, ci: usize, pno: u32, node: Node) -> Result<()> {
        let li = if ci > 0 { ci - 1 } else { ci };
        let (lpno, rpno) = (parent.children[li], parent.children[li + 1]);
        let (mut left, mut right) = if ci > 0 {
            (self.get(lpno)?, node)
        } else {
            (node, self.get(rpno)?)
        };
        let sibling = if ci > 0 {
            (lpno, &left)
        } else {
            (rpno, &right)
        };
        if left.kind != right.kind || left.level != right.level {
            return Err(self.tree.corrupt(format!(
                "page {}: sibling of page {pno} has another shape",
                sibling.0
            )));
        }
        if left.is_leaf() {
            let mut keys = std::mem::take(&mut left.keys);
            keys.append(&mut right.keys);
            let merged = Node::leaf(left.prev, right.next, keys);
            if merged.fits(self.ps) {
                self.relink_prev(right.next, lpno)?;
                self.put(lpno, merged);
                self.free(rpno, true);
                parent.keys.remove(li);
                parent.children.remove(li + 1);
            } else {
                let mut keys = merged.keys;
                let m = page::leaf_split_point(&keys);
                right.keys = keys.split_off(m);
                left.keys = keys;
                parent.keys[li] = page::separator(left.keys.last().expect("m>=1"), &right.keys[0]);
                self.put(lpno, left);
                self.put(rpno, right);
            }
        } else {
            let mut keys = std::mem::take(&mut left.keys);
            keys.push(parent.keys[li].clone());
            keys.append(&mut right.keys);
            let mut children = std::mem::take(&mut left.children);
            children.append(&mut right.children);
            let merged = Node::internal(left.level, keys, children);
            if merged.fits(self.ps) {
                self.put(lpno, merged);
                self.free(rpno, false);
                parent.keys.remove(li);
                parent.children.remove(li + 1);
            } else {
                let (mut keys, mut children) = (merged.keys, merged.children);
                let m = page::internal_split_point(&keys);
                right.keys = keys.split_off(m + 1);
                parent.keys[li] = keys.pop().expect("m >= 1");
                right.children = children.split_off(m + 1);
                left.keys = keys;
                left.children = children;
                self.put(lpno, left);
                self.put(rpno, right);
            }
        }
        Ok(())
    }

    /// Installs the write set into the pool (all or nothing) and returns the new meta record.
    fn commit(self) -> Result<Meta> {
        let pages = self
            .pages
            .iter()
            .map(|(&pno, n)| (pno, n.encode(self.ps)))
            .collect();
        self.tree.pool.install(self.tree.file.id, pages)?;
        Ok(self.meta)
    }
}

//! Bottom-up bulk load: builds a tree from strictly ascending keys in one pass.
//!
//! Each level keeps at most two pages in memory: `cur`, being filled to ~90% of the usable
//! bytes, and `prev`, the page completed before it. A page is written (and its separator handed
//! to the level above) only once its successor is complete, so at the end the last two pages of
//! every level are still in memory and can be fixed up: if the last page is underfull, the two
//! are merged (if they fit one page) or evened out. That way no page of a bulk-loaded tree is
//! below the minimum fill, exactly as for a tree built by inserts.
//!
//! Page numbers are assigned when a page is *started*, so a leaf's `next` link is known when it
//! is written; a page number left unused by a final merge becomes a free page. The file is
//! written as `<path>.tmp`, fsynced, renamed over `<path>` and the directory fsynced, so a crash
//! never leaves a half-built index under the real name.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::page::{self, Meta, NONE, Node};
use super::{IndexError, Result, io_err, sibling_path, sync_dir};

struct Pending {
    pno: u32,
    node: Node,
    /// The separator to the page before this one (unused for a level's first page).
    low: Vec<u8>,
}

struct Level {
    prev: Option<Pending>,
    cur: Pending,
    written: u64,
}

struct Builder<'a> {
    path: &'a Path,
    file: File,
    ps: usize,
    /// Fill target in used bytes.
    target: usize,
    next_pno: u32,
    levels: Vec<Level>,
    free: Vec<u32>,
    leaf_pages: u64,
}

pub(crate) fn build(
    path: &Path,
    ps: usize,
    blob: &[u8],
    lsn: u64,
    entries: impl Iterator<Item = Result<Vec<u8>>>,
) -> Result<()> {
    let tmp = sibling_path(path, ".tmp");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    let mut b = Builder {
        path: &tmp,
        file,
        ps,
        target: page::usable(ps) * 9 / 10,
        next_pno: 1,
        levels: Vec::new(),
        free: Vec::new(),
        leaf_pages: 0,
    };
    let result = b.run(entries, blob, lsn);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    drop(b);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path)
}

impl Builder<'_> {
    fn run(
        &mut self,
        entries: impl Iterator<Item = Result<Vec<u8>>>,
        blob: &[u8],
        lsn: u64,
    ) -> Result<()> {
        let max = page::max_key_len(self.ps);
        let first = self.alloc();
        self.levels.push(Level {
            prev: None,
            cur: Pending {
                pno: first,
                node: Node::leaf(NONE, NONE, Vec::new()),
                low: Vec::new(),
            },
            written: 0,
        });
        let mut count = 0u64;
        let mut last: Option<Vec<u8>> = None;
        for key in entries {
            let key = key?;
            if key.len() > max {
                return Err(IndexError::KeyTooLarge {
                    len: key.len(),
                    max,
                });
            }
            if let Some(l) = &last
                && *l >= key
            {
                return Err(IndexError::InvalidArgument(format!(
                    "bulk_load: entry {count} is not strictly greater than its predecessor"
                )));
            }
            self.add_leaf_key(&key, last.as_deref())?;
            last = Some(key);
            count += 1;
        }
        let (root, height) = self.finish()?;
        // Pages left unused by final merges are chained as the free list.
        let mut free_head = NONE;
        for pno in self.free.clone() {
            self.write(pno, &Node::free(free_head))?;
            free_head = pno;
        }
        let meta = Meta {
            root,
            height,
            page_count: self.next_pno,
            free_head,
            entries: count,
            checkpoint_lsn: lsn,
            leaf_pages: self.leaf_pages,
            free_pages: self.free.len() as u64,
        };
        self.file
            .write_all_at(&meta.encode(self.ps, blob), 0)
            .map_err(io_err(self.path))?;
        self.file.sync_all().map_err(io_err(self.path))
    }

    fn alloc(&mut self) -> u32 {
        let p = self.next_pno;
        self.next_pno += 1;
        p
    }

    fn write(&mut self, pno: u32, node: &Node) -> Result<()> {
        let mut img = node.encode(self.ps);
        page::seal(pno, &mut img);
        if node.is_leaf() {
            self.leaf_pages += 1;
        }
        self.file
            .write_all_at(&img, pno as u64 * self.ps as u64)
            .map_err(io_err(self.path))
    }

    fn add_leaf_key(&mut self, key: &[u8], last: Option<&[u8]>) -> Result<()> {
        let cur = &self.levels[0].cur.node;
        if !cur.keys.is_empty() && cur.used() + page::leaf_entry(key.len()) > self.target {
            let low = page::separator(last.expect("page non-empty"), key);
            self.roll(0, low)?;
        }
        self.levels[0].cur.node.keys.push(key.to_vec());
        Ok(())
    }

    /// Adds child `child` with separator `sep` (ignored for the level's first child) to `level`.
    fn add_child(&mut self, level: usize, sep: Vec<u8>, child: u32) -> Result<()> {
        if level == self.levels.len() {
            let pno = self.alloc();
            self.levels.push(Level {
                prev: None,
                cur: Pending {
                    pno,
                    node: Node::internal(level as u16, Vec::new(), vec![child]),
                    low: Vec::new(),
                },
                written: 0,
            });
            return Ok(());
        }
        let cur = &self.levels[level].cur.node;
        if !cur.keys.is_empty() && cur.used() + page::internal_entry(sep.len()) > self.target {
            self.roll(level, sep)?;
            self.levels[level].cur.node.children.push(child);
            return Ok(());
        }
        let cur = &mut self.levels[level].cur.node;
        cur.keys.push(sep);
        cur.children.push(child);
        Ok(())
    }

    /// Completes `cur` of `level` and starts a new page whose separator is `low`; the page
    /// completed before `cur` is written now.
    fn roll(&mut self, level: usize, low: Vec<u8>) -> Result<()> {
        let pno = self.alloc();
        let l = &mut self.levels[level];
        let leaf = l.cur.node.is_leaf();
        let node = if leaf {
            l.cur.node.next = pno;
            Node::leaf(l.cur.pno, NONE, Vec::new())
        } else {
            Node::internal(level as u16, Vec::new(), Vec::new())
        };
        let done = std::mem::replace(&mut l.cur, Pending { pno, node, low });
        if let Some(p) = l.prev.replace(done) {
            self.flush(level, p)?;
        }
        Ok(())
    }

    fn flush(&mut self, level: usize, p: Pending) -> Result<()> {
        self.write(p.pno, &p.node)?;
        self.levels[level].written += 1;
        self.add_child(level + 1, p.low, p.pno)
    }

    /// Fixes up and writes the last pages of every level; returns (root, height).
    fn finish(&mut self) -> Result<(u32, u32)> {
        let min = page::min_fill(self.ps);
        let mut level = 0;
        loop {
            let l = &mut self.levels[level];
            let mut cur = Some(std::mem::replace(
                &mut l.cur,
                Pending {
                    pno: NONE,
                    node: Node::free(NONE),
                    low: Vec::new(),
                },
            ));
            let mut prev = l.prev.take();
            if let (Some(p), Some(c)) = (prev.as_mut(), cur.as_mut())
                && c.node.used() < min
                && self.even_out(p, c)
            {
                self.free.push(c.pno);
                cur = None;
            }
            let written = self.levels[level].written;
            if written == 0 && (prev.is_none() || cur.is_none()) {
                let root = prev.or(cur).expect("one page");
                self.write(root.pno, &root.node)?;
                return Ok((root.pno, level as u32 + 1));
            }
            for p in [prev, cur].into_iter().flatten() {
                self.flush(level, p)?;
            }
            level += 1;
        }
    }

    /// Merges `c` into `p` (returns true) or redistributes the two evenly.
    fn even_out(&self, p: &mut Pending, c: &mut Pending) -> bool {
        if p.node.is_leaf() {
            let mut keys = std::mem::take(&mut p.node.keys);
            keys.append(&mut c.node.keys);
            if Node::leaf(0, 0, keys.clone()).fits(self.ps) {
                p.node.keys = keys;
                p.node.next = NONE;
                return true;
            }
            let m = page::leaf_split_point(&keys);
            c.node.keys = keys.split_off(m);
            p.node.keys = keys;
            c.low = page::separator(p.node.keys.last().expect("m>=1"), &c.node.keys[0]);
            false
        } else {
            let mut keys = std::mem::take(&mut p.node.keys);
            keys.push(std::mem::take(&mut c.low));
            keys.append(&mut c.node.keys);
            let mut children = std::mem::take(&mut p.node.children);
            children.append(&mut c.node.children);
            let merged = Node::internal(p.node.level, keys, children);
            if merged.fits(self.ps) {
                p.node = merged;
                return true;
            }
            let (mut keys, mut children) = (merged.keys, merged.children);
            let m = page::internal_split_point(&keys);
            c.node.keys = keys.split_off(m + 1);
            c.low = keys.pop().expect("m >= 1");
            c.node.children = children.split_off(m + 1);
            p.node.keys = keys;
            p.node.children = children;
            false
        }
    }
}

//! The full invariant checker behind [`BTree::check`](super::BTree::check).
//!
//! It walks the tree depth-first from the root, through the pool (so it sees the current,
//! possibly not yet checkpointed state), holding one page per level, and verifies everything the
//! tree operations promise:
//! - each page decodes, has the expected kind and level, and fits its page;
//! - keys strictly ascend within a page and across the whole leaf sequence;
//! - every key lies within its parent's separator bounds (`lower <= key < upper`);
//! - all leaves are at the same depth (level 0, depth = height);
//! - the leaf links visit the leaves exactly in tree order, both ways, with `NONE` at the ends;
//! - every non-root page is at least at the minimum fill, and every internal page has >= 2
//!   children;
//! - the entry, leaf and free counts equal the meta record;
//! - reachable pages plus free-list pages are exactly pages 1..page_count, none twice.
//!
//! The first violation is returned as `Corruption` naming the page.

use super::btree::{BTree, TreeStats};
use super::page::{self, Kind, Meta, NONE};
use super::{IndexError, Result};

struct Walker<'a> {
    tree: &'a BTree,
    meta: &'a Meta,
    seen: Vec<bool>,
    last_leaf: u32,
    last_key: Option<Vec<u8>>,
    entries: u64,
    leaves: u64,
    pages: u64,
}

pub(crate) fn check(tree: &BTree, meta: &Meta) -> Result<TreeStats> {
    let mut w = Walker {
        tree,
        meta,
        seen: vec![false; meta.page_count as usize],
        last_leaf: NONE,
        last_key: None,
        entries: 0,
        leaves: 0,
        pages: 0,
    };
    w.walk(meta.root, meta.height - 1, None, None, true)?;
    if w.last_leaf != NONE {
        let last = tree.read_node(meta, w.last_leaf)?;
        if last.next != NONE {
            return Err(w.bad(
                w.last_leaf,
                format!("last leaf has next link {}", last.next),
            ));
        }
    }
    if w.entries != meta.entries {
        return Err(w.bad(
            0,
            format!("meta says {} entries, tree has {}", meta.entries, w.entries),
        ));
    }
    if w.leaves != meta.leaf_pages {
        return Err(w.bad(
            0,
            format!(
                "meta says {} leaves, tree has {}",
                meta.leaf_pages, w.leaves
            ),
        ));
    }
    let mut free = 0u64;
    let mut pno = meta.free_head;
    while pno != NONE {
        w.visit(pno)?;
        let node = tree.read_node(meta, pno)?;
        if node.kind != Kind::Free {
            return Err(w.bad(pno, format!("free-list entry is a {:?} page", node.kind)));
        }
        free += 1;
        pno = node.next;
    }
    if free != meta.free_pages {
        return Err(w.bad(
            0,
            format!("meta says {} free pages, list has {free}", meta.free_pages),
        ));
    }
    if let Some(p) = w.seen.iter().skip(1).position(|s| !s) {
        return Err(w.bad(
            p as u32 + 1,
            "page neither reachable nor free (leaked)".into(),
        ));
    }
    Ok(TreeStats {
        height: meta.height,
        pages: meta.page_count as u64,
        leaf_pages: w.leaves,
        free_pages: free,
        entries: w.entries,
        file_bytes: 0,
    })
}

impl Walker<'_> {
    fn bad(&self, pno: u32, detail: String) -> IndexError {
        self.tree.corrupt(format!("check: page {pno}: {detail}"))
    }

    fn visit(&mut self, pno: u32) -> Result<()> {
        match self.seen.get_mut(pno as usize) {
            Some(s) if pno != NONE && !*s => {
                *s = true;
                self.pages += 1;
                Ok(())
            }
            Some(_) if pno != NONE => Err(self.bad(pno, "page reached twice".into())),
            _ => Err(self.bad(pno, "page number out of range".into())),
        }
    }

    fn walk(
        &mut self,
        pno: u32,
        level: u32,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
        root: bool,
    ) -> Result<()> {
        self.visit(pno)?;
        let ps = self.tree.pool.page_size();
        let node = self.tree.read_node(self.meta, pno)?;
        let expect = if level == 0 {
            Kind::Leaf
        } else {
            Kind::Internal
        };
        if node.kind != expect || node.level as u32 != level {
            return Err(self.bad(
                pno,
                format!(
                    "{:?} at level {}, expected {expect:?} at level {level}",
                    node.kind, node.level
                ),
            ));
        }
        if !node.fits(ps) {
            return Err(self.bad(pno, "page overflows".into()));
        }
        if !root && node.used() < page::min_fill(ps) {
            return Err(self.bad(
                pno,
                format!(
                    "underfull: {} bytes used, minimum {}",
                    node.used(),
                    page::min_fill(ps)
                ),
            ));
        }
        for w in node.keys.windows(2) {
            if w[0] >= w[1] {
                return Err(self.bad(pno, format!("keys not ascending: {:?} >= {:?}", w[0], w[1])));
            }
        }
        if let (Some(first), Some(lo)) = (node.keys.first(), lower)
            && first.as_slice() < lo
        {
            return Err(self.bad(pno, format!("key {first:?} below parent separator {lo:?}")));
        }
        if let (Some(last), Some(hi)) = (node.keys.last(), upper)
            && last.as_slice() >= hi
        {
            return Err(self.bad(
                pno,
                format!("key {last:?} not below parent separator {hi:?}"),
            ));
        }
        if node.kind == Kind::Leaf {
            return self.leaf(pno, node);
        }
        if node.children.len() != node.keys.len() + 1 || node.keys.is_empty() {
            return Err(self.bad(
                pno,
                format!("internal page with {} children", node.children.len()),
            ));
        }
        for (i, &child) in node.children.iter().enumerate() {
            let lo = if i == 0 {
                lower
            } else {
                Some(node.keys[i - 1].as_slice())
            };
            let hi = node.keys.get(i).map(|k| k.as_slice()).or(upper);
            self.walk(child, level - 1, lo, hi, false)?;
        }
        Ok(())
    }

    fn leaf(&mut self, pno: u32, node: page::Node) -> Result<()> {
        if node.prev != self.last_leaf {
            return Err(self.bad(
                pno,
                format!(
                    "prev link {} but the previous leaf is {}",
                    node.prev, self.last_leaf
                ),
            ));
        }
        if self.last_leaf != NONE {
            let before = self.tree.read_node(self.meta, self.last_leaf)?;
            if before.next != pno {
                return Err(self.bad(
                    self.last_leaf,
                    format!("next link {} but the next leaf is {pno}", before.next),
                ));
            }
        }
        if let (Some(prev), Some(first)) = (&self.last_key, node.keys.first())
            && prev >= first
        {
            return Err(self.bad(
                pno,
                format!("first key {first:?} not above previous leaf's {prev:?}"),
            ));
        }
        if let Some(last) = node.keys.last() {
            self.last_key = Some(last.clone());
        }
        self.entries += node.keys.len() as u64;
        self.leaves += 1;
        self.last_leaf = pno;
        Ok(())
    }
}

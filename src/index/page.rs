//! Byte layout of index pages, their checksums and the fill accounting the tree balances by.
//!
//! Every page is `page_size` bytes. Tree and free pages share one header:
//!
//! ```text
//!   0..4   crc32c over (page number ‖ bytes 4..page_size): also catches a page written at the
//!          wrong offset, not just torn or flipped bytes
//!   4      kind (1 leaf, 2 internal, 3 free, 4 meta)   5 reserved
//!   6..8   level (0 = leaf)                             8..10 entry count
//!   10..12 reserved
//!   12..16 prev leaf (0 = none)                        16..20 next leaf / next free page
//!   20..   leaf:     (len u16, key)*                   sorted packed entries
//!          internal: child0 u32, (len u16, key, child u32)*
//! ```
//!
//! Page 0 is the meta page, so page number 0 doubles as "none" in links. An internal page with
//! separators s1..sn and children c0..cn routes key k to c_i where s_i <= k < s_(i+1): every key
//! under c_i is `>= s_i` and `< s_(i+1)`.
//!
//! Fill is measured in *used bytes* (everything after the header) against `usable =
//! page_size - HEADER`. `max_key_len` is chosen so that any 4 entries fit one page; that bound
//! (one entry is at most a quarter of a page) is what guarantees that a byte-balanced split or
//! redistribution leaves both halves above the minimum fill of `usable / 4`.
//!
//! Decoding never trusts the bytes: every length and count is bounds-checked and a malformed
//! page is reported as a description string, which callers turn into `Corruption`.

use std::ops::Range;

pub(crate) const HEADER: usize = 20;
/// Page number meaning "no page" in sibling / free-list links (page 0 is the meta page).
pub(crate) const NONE: u32 = 0;
pub(crate) const MIN_PAGE_SIZE: usize = 256;
pub(crate) const MAX_PAGE_SIZE: usize = 65536;

const KIND_LEAF: u8 = 1;
const KIND_INTERNAL: u8 = 2;
const KIND_FREE: u8 = 3;
const KIND_META: u8 = 4;

const META_MAGIC: u64 = u64::from_le_bytes(*b"SDBIDX01");
const FORMAT_VERSION: u32 = 1;
const META_BLOB_AT: usize = 84;

/// Bytes of a page available for entries.
pub(crate) fn usable(page_size: usize) -> usize {
    page_size - HEADER
}

/// A non-root tree page using fewer bytes than this is underfull.
pub(crate) fn min_fill(page_size: usize) -> usize {
    usable(page_size) / 4
}

/// Largest key such that four of them fit in a leaf and in an internal page.
pub(crate) fn max_key_len(page_size: usize) -> usize {
    if page_size < HEADER + 64 {
        return 0;
    }
    (((page_size - HEADER - 4) / 4).saturating_sub(6)).min(u16::MAX as usize)
}

/// Largest caller meta blob stored in page 0.
pub(crate) fn max_meta_len(page_size: usize) -> usize {
    (page_size / 2).min(page_size - META_BLOB_AT)
}

pub(crate) fn leaf_entry(len: usize) -> usize {
    2 + len
}

pub(crate) fn internal_entry(len: usize) -> usize {
    6 + len
}

fn checksum(pno: u32, page: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&pno.to_le_bytes()), &page[4..])
}

/// Stamps the checksum; done once per write to disk, not per in-memory change.
pub(crate) fn seal(pno: u32, page: &mut [u8]) {
    let c = checksum(pno, page);
    page[0..4].copy_from_slice(&c.to_le_bytes());
}

pub(crate) fn verify(pno: u32, page: &[u8]) -> bool {
    page.len() >= HEADER && page[0..4] == checksum(pno, page).to_le_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Leaf,
    Internal,
    Free,
}

/// A decoded tree (or free) page. The tree works on decoded copies and re-encodes whole pages;
/// pages are small, and this keeps every byte-level concern in this file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub level: u16,
    pub prev: u32,
    pub next: u32,
    pub keys: Vec<Vec<u8>>,
    /// Internal pages only: `keys.len() + 1` children.
    pub children: Vec<u32>,
}

impl Node {
    pub fn leaf(prev: u32, next: u32, keys: Vec<Vec<u8>>) -> Node {
        Node {
            kind: Kind::Leaf,
            level: 0,
            prev,
            next,
            keys,
            children: Vec::new(),
        }
    }

    pub fn internal(level: u16, keys: Vec<Vec<u8>>, children: Vec<u32>) -> Node {
        Node {
            kind: Kind::Internal,
            level,
            prev: NONE,
            next: NONE,
            keys,
            children,
        }
    }

    pub fn free(next: u32) -> Node {
        Node {
            kind: Kind::Free,
            level: 0,
            prev: NONE,
            next,
            keys: Vec::new(),
            children: Vec::new(),
        }
    }

    pub fn is_leaf(&self) -> bool {
        self.kind == Kind::Leaf
    }

    /// Bytes used after the header.
    pub fn used(&self) -> usize {
        match self.kind {
            Kind::Leaf => self.keys.iter().map(|k| leaf_entry(k.len())).sum(),
            Kind::Internal => {
                4 + self
                    .keys
                    .iter()
                    .map(|k| internal_entry(k.len()))
                    .sum::<usize>()
            }
            Kind::Free => 0,
        }
    }

    pub fn fits(&self, page_size: usize) -> bool {
        self.used() <= usable(page_size)
    }

    /// Encodes into a fresh page buffer (checksum left for `seal`). The caller guarantees
    /// `fits(page_size)`.
    pub fn encode(&self, page_size: usize) -> Vec<u8> {
        debug_assert!(self.fits(page_size));
        let mut b = vec![0u8; page_size];
        b[4] = match self.kind {
            Kind::Leaf => KIND_LEAF,
            Kind::Internal => KIND_INTERNAL,
            Kind::Free => KIND_FREE,
        };
        b[6..8].copy_from_slice(&self.level.to_le_bytes());
        b[8..10].copy_from_slice(&(self.keys.len() as u16).to_le_bytes());
        b[12..16].copy_from_slice(&self.prev.to_le_bytes());
        b[16..20].copy_from_slice(&self.next.to_le_bytes());
        let mut at = HEADER;
        let mut put = |bytes: &[u8]| {
            b[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if self.kind == Kind::Internal {
            put(&self.children[0].to_le_bytes());
        }
        for (i, k) in self.keys.iter().enumerate() {
            put(&(k.len() as u16).to_le_bytes());
            put(k);
            if self.kind == Kind::Internal {
                put(&self.children[i + 1].to_le_bytes());
            }
        }
        b
    }

    /// Decodes a tree or free page into an owned copy; `Err` describes what is malformed
    /// (the checks are [`NodeView::parse`]'s).
    pub fn decode(page: &[u8]) -> Result<Node, String> {
        let v = NodeView::parse(page)?;
        Ok(Node {
            kind: v.kind,
            level: v.level,
            prev: v.prev,
            next: v.next,
            keys: v.keys.iter().map(|k| k.to_vec()).collect(),
            children: v.children,
        })
    }
}

/// A validated, borrowed view of a tree page for the read path: lookups and scans search the
/// page's bytes in place instead of copying every key out (which made readers spend most of
/// their time in the allocator). Validation is the same as [`Node::decode`]'s.
pub(crate) struct NodeView<'a> {
    pub kind: Kind,
    pub level: u16,
    pub prev: u32,
    pub next: u32,
    pub keys: Vec<&'a [u8]>,
    /// Internal pages only: `keys.len() + 1` children.
    pub children: Vec<u32>,
}

impl<'a> NodeView<'a> {
    pub fn parse(page: &'a [u8]) -> Result<NodeView<'a>, String> {
        if page.len() < HEADER {
            return Err(format!("page buffer of {} bytes is too short", page.len()));
        }
        let kind = match page[4] {
            KIND_LEAF => Kind::Leaf,
            KIND_INTERNAL => Kind::Internal,
            KIND_FREE => Kind::Free,
            KIND_META => return Err("meta page found where a tree page was expected".into()),
            k => return Err(format!("unknown page kind {k}")),
        };
        let level = u16::from_le_bytes([page[6], page[7]]);
        let count = u16::from_le_bytes([page[8], page[9]]) as usize;
        let max = max_key_len(page.len());
        let mut cur = Cursor { page, at: HEADER };
        let mut keys = Vec::with_capacity(count);
        let mut children = Vec::new();
        match kind {
            Kind::Free => {}
            Kind::Leaf => {
                if level != 0 {
                    return Err(format!("leaf page has level {level}"));
                }
                for _ in 0..count {
                    keys.push(cur.key(max)?);
                }
            }
            Kind::Internal => {
                if level == 0 {
                    return Err("internal page has level 0".into());
                }
                children.reserve(count + 1);
                children.push(cur.u32()?);
                for _ in 0..count {
                    keys.push(cur.key(max)?);
                    children.push(cur.u32()?);
                }
            }
        }
        Ok(NodeView {
            kind,
            level,
            prev: u32_at(page, 12),
            next: u32_at(page, 16),
            keys,
            children,
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

struct Cursor<'a> {
    page: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn range(&mut self, n: usize) -> Result<Range<usize>, String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.page.len());
        match end {
            Some(end) => {
                let r = self.at..end;
                self.at = end;
                Ok(r)
            }
            None => Err(format!(
                "entry at offset {} overruns the page ({n} bytes wanted)",
                self.at
            )),
        }
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let r = self.range(n)?;
        Ok(&self.page[r])
    }
    fn key(&mut self, max: usize) -> Result<&'a [u8], String> {
        let len = self.u16()? as usize;
        if len > max {
            return Err(format!("key of {len} bytes exceeds the maximum {max}"));
        }
        self.bytes(len)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32_at(b, 0))
    }
}

/// The tree's root record: everything about a tree that is not in its tree pages. Kept in
/// memory while open and written as page 0 by every checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub root: u32,
    /// Number of levels; 1 = a single leaf root.
    pub height: u32,
    /// Pages in the file including page 0; allocation extends it.
    pub page_count: u32,
    pub free_head: u32,
    pub entries: u64,
    pub checkpoint_lsn: u64,
    pub leaf_pages: u64,
    pub free_pages: u64,
}

impl Meta {
    pub fn encode(&self, page_size: usize, blob: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; page_size];
        b[4] = KIND_META;
        b[8..16].copy_from_slice(&META_MAGIC.to_le_bytes());
        b[16..20].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[20..24].copy_from_slice(&(page_size as u32).to_le_bytes());
        b[24..28].copy_from_slice(&self.root.to_le_bytes());
        b[28..32].copy_from_slice(&self.height.to_le_bytes());
        b[32..36].copy_from_slice(&self.page_count.to_le_bytes());
        b[36..40].copy_from_slice(&self.free_head.to_le_bytes());
        b[40..48].copy_from_slice(&self.entries.to_le_bytes());
        b[48..56].copy_from_slice(&self.checkpoint_lsn.to_le_bytes());
        b[56..64].copy_from_slice(&self.leaf_pages.to_le_bytes());
        b[64..72].copy_from_slice(&self.free_pages.to_le_bytes());
        b[72..76].copy_from_slice(&(blob.len() as u32).to_le_bytes());
        b[META_BLOB_AT..META_BLOB_AT + blob.len()].copy_from_slice(blob);
        seal(0, &mut b);
        b
    }

    /// Decodes page 0. `Err(Ok(found))` means the file has another page size than the pool;
    /// `Err(Err(detail))` means the page is damaged.
    pub fn decode(page: &[u8], page_size: usize) -> Result<(Meta, Vec<u8>), Result<usize, String>> {
        if page.len() < META_BLOB_AT || page[4] != KIND_META || u64_at(page, 8) != META_MAGIC {
            return Err(Err("page 0 is not an index meta page (bad magic)".into()));
        }
        let found = u32_at(page, 20) as usize;
        if found != page_size {
            return Err(Ok(found));
        }
        if !verify(0, page) {
            return Err(Err("page 0 (meta): checksum mismatch".into()));
        }
        let version = u32_at(page, 16);
        if version != FORMAT_VERSION {
            return Err(Err(format!("unsupported index format version {version}")));
        }
        let meta = Meta {
            root: u32_at(page, 24),
            height: u32_at(page, 28),
            page_count: u32_at(page, 32),
            free_head: u32_at(page, 36),
            entries: u64_at(page, 40),
            checkpoint_lsn: u64_at(page, 48),
            leaf_pages: u64_at(page, 56),
            free_pages: u64_at(page, 64),
        };
        let blob_len = u32_at(page, 72) as usize;
        if blob_len > max_meta_len(page_size) {
            return Err(Err(format!(
                "page 0 (meta): blob length {blob_len} too large"
            )));
        }
        let pc = meta.page_count;
        if pc < 2
            || meta.root == NONE
            || meta.root >= pc
            || meta.free_head >= pc
            || meta.height == 0
            || meta.height > 64
        {
            return Err(Err(format!("page 0 (meta): inconsistent fields {meta:?}")));
        }
        let blob = page[META_BLOB_AT..META_BLOB_AT + blob_len].to_vec();
        Ok((meta, blob))
    }
}

/// Shortest key `s` with `left < s <= right` (requires `left < right`): a prefix of `right`
/// one byte longer than the common prefix. Short separators keep internal fan-out high.
pub(crate) fn separator(left: &[u8], right: &[u8]) -> Vec<u8> {
    let lcp = left.iter().zip(right).take_while(|(a, b)| a == b).count();
    right[..(lcp + 1).min(right.len())].to_vec()
}

/// Index `m` (1..n) such that splitting leaf keys into `[..m]` and `[m..]` balances their bytes.
pub(crate) fn leaf_split_point(keys: &[Vec<u8>]) -> usize {
    let total: usize = keys.iter().map(|k| leaf_entry(k.len())).sum();
    let mut acc = 0;
    let mut best = (usize::MAX, 1);
    for (i, k) in keys.iter().enumerate().take(keys.len() - 1) {
        acc += leaf_entry(k.len());
        let diff = acc.abs_diff(total - acc);
        if diff < best.0 {
            best = (diff, i + 1);
        }
    }
    best.1
}

/// Index `m` (1..n-1) of the separator to push up when splitting internal keys into
/// `[..m]` / `[m+1..]`, balancing the bytes of the two halves.
pub(crate) fn internal_split_point(keys: &[Vec<u8>]) -> usize {
    let total: usize = keys.iter().map(|k| internal_entry(k.len())).sum();
    let mut left = 0;
    let mut best = (usize::MAX, 1);
    for (m, k) in keys.iter().enumerate() {
        let right = total - left - internal_entry(k.len());
        if m >= 1 && m + 1 < keys.len() {
            let diff = left.abs_diff(right);
            if diff < best.0 {
                best = (diff, m);
            }
        }
        left += internal_entry(k.len());
    }
    best.1
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn node_roundtrip_and_checksum() {
        let ps = 256;
        let leaf = Node::leaf(3, 9, vec![b"".to_vec(), b"abc".to_vec(), vec![7; 40]]);
        let mut b = leaf.encode(ps);
        seal(5, &mut b);
        assert!(verify(5, &b));
        assert!(!verify(6, &b), "checksum binds the page number");
        assert_eq!(Node::decode(&b).unwrap(), leaf);
        let int = Node::internal(2, vec![b"m".to_vec()], vec![4, 8]);
        assert_eq!(Node::decode(&int.encode(ps)).unwrap(), int);
        b[9] = 0xff; // absurd entry count must not panic
        assert!(Node::decode(&b).is_err());
    }

    #[test]
    fn four_max_keys_fit() {
        for ps in [256usize, 512, 4096, 8192, 65536] {
            let k = max_key_len(ps);
            let keys = vec![vec![1u8; k]; 4];
            assert!(Node::leaf(0, 0, keys.clone()).fits(ps));
            assert!(Node::internal(1, keys, vec![1; 5]).fits(ps));
            assert!(internal_entry(k) <= (usable(ps) - 4) / 4);
        }
    }

    #[test]
    fn separator_is_between() {
        for (l, r) in [
            (&b"abc"[..], &b"abd"[..]),
            (b"", b"a"),
            (b"ab", b"abc"),
            (b"a", b"b"),
        ] {
            let s = separator(l, r);
            assert!(l < &s[..] && &s[..] <= r, "{l:?} {r:?} {s:?}");
        }
    }
}

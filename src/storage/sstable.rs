//! SSTables: immutable sorted files of versions, read block by block.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//!   +------------------+------------------+-----+-------------+--------+---------------+
//!   | data block 0     | data block 1     | ... | index block | footer | trailer (16B) |
//!   +------------------+------------------+-----+-------------+--------+---------------+
//!
//!   data block  (~4 KiB; larger only when a single entry is larger)
//!     repeated entry: key_len u32 | key | ts u64 | flag u8 (0 tombstone, 1 value)
//!                     | [val_len u32 | val]          (value part only when flag = 1)
//!     entry_count u32
//!     crc32c u32 over every preceding byte of the block
//!
//!   index block (one handle per data block, in order)
//!     block_count u32
//!     repeated: offset u64 | len u32 | last_key_len u32 | last_key | last_ts u64
//!     crc32c u32 over every preceding byte of the index block
//!
//!   footer
//!     index_offset u64 | index_len u32 | entry_count u64
//!     min_ts u64 | max_ts u64 | high_water_ts u64
//!     min_key_len u32 | min_key | max_key_len u32 | max_key
//!     crc32c u32 over every preceding byte of the footer
//!
//!   trailer
//!     footer_len u32 (footer bytes including its crc) | format_version u32 | magic u64
//! ```
//!
//! Entries are in internal order (key ascending, ts descending) with each `(key, ts)` at most
//! once. `high_water_ts` is the engine's highest commit timestamp when the table was written —
//! at least `max_ts`, and kept even when compaction garbage-collects the newest versions — so
//! `max_committed_ts` never moves backwards across a restart after the WAL is gone.
//!
//! An open [`Table`] keeps only the trailer, footer and index in memory; data blocks are read on
//! demand with positioned reads (one shared file handle, no seek cursor, so readers never
//! contend) and every block's checksum is verified on each read. Any structural problem is a
//! [`super::StorageError::Corruption`] naming the file.
//!
//! Tables are written under a temporary name, fsynced, renamed into place, and the directory is
//! fsynced, so a table that exists under its final name is complete.

use std::cmp::Ordering;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files::{read_exact_at, sync_dir, tmp_path};
use super::iter::{Direction, Entry, EntryIter, KeyRange, cmp_internal};
use super::{Result, corruption, io_err};

const MAGIC: u64 = u64::from_le_bytes(*b"SHDBSST\x01");
const FORMAT_VERSION: u32 = 1;
const TRAILER_LEN: u64 = 16;
/// Target size of a data block.
pub(crate) const BLOCK_TARGET: usize = 4096;
const FLAG_TOMBSTONE: u8 = 0;
const FLAG_VALUE: u8 = 1;

/// Where a data block lives and the last version it holds (for binary search).
#[derive(Debug, Clone)]
struct BlockHandle {
    offset: u64,
    len: u32,
    last_key: Vec<u8>,
    last_ts: u64,
}

/// Table-wide facts from the footer.
#[derive(Debug, Clone, Default)]
pub(crate) struct TableMeta {
    pub entry_count: u64,
    pub min_key: Vec<u8>,
    pub max_key: Vec<u8>,
    pub min_ts: u64,
    pub max_ts: u64,
    pub high_water_ts: u64,
}

/// A decoded data block. Shared behind an `Arc` so a future block cache can hand the same
/// decoded block to many readers.
#[derive(Debug)]
pub(crate) struct Block {
    entries: Vec<Entry>,
}

/// Streams sorted entries into a new table file.
struct TableBuilder {
    tmp: PathBuf,
    out: BufWriter<File>,
    block: Vec<u8>,
    block_entries: u32,
    offset: u64,
    index: Vec<BlockHandle>,
    meta: TableMeta,
    last: Option<(Vec<u8>, u64)>,
}

impl TableBuilder {
    fn create(tmp: PathBuf) -> Result<TableBuilder> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        Ok(TableBuilder {
            out: BufWriter::with_capacity(256 * 1024, file),
            tmp,
            block: Vec::with_capacity(BLOCK_TARGET + 512),
            block_entries: 0,
            offset: 0,
            index: Vec::new(),
            meta: TableMeta {
                min_ts: u64::MAX,
                ..TableMeta::default()
            },
            last: None,
        })
    }

    fn add(&mut self, e: &Entry) -> Result<()> {
        if let Some((lk, lt)) = &self.last
            && cmp_internal(lk, *lt, &e.key, e.ts) != Ordering::Less
        {
            return Err(corruption(
                &self.tmp,
                format!(
                    "table input out of order: ({lk:?}, {lt}) then ({:?}, {})",
                    e.key, e.ts
                ),
            ));
        }
        let entry_len = 4 + e.key.len() + 8 + 1 + e.value.as_ref().map_or(0, |v| 4 + v.len());
        if self.block_entries > 0 && self.block.len() + entry_len + 8 > BLOCK_TARGET {
            self.finish_block()?;
        }
        let key_len =
            u32::try_from(e.key.len()).map_err(|_| corruption(&self.tmp, "key too long"))?;
        self.block.extend_from_slice(&key_len.to_le_bytes());
        self.block.extend_from_slice(&e.key);
        self.block.extend_from_slice(&e.ts.to_le_bytes());
        match &e.value {
            None => self.block.push(FLAG_TOMBSTONE),
            Some(v) => {
                let vlen =
                    u32::try_from(v.len()).map_err(|_| corruption(&self.tmp, "value too long"))?;
                self.block.push(FLAG_VALUE);
                self.block.extend_from_slice(&vlen.to_le_bytes());
                self.block.extend_from_slice(v);
            }
        }
        self.block_entries += 1;
        if self.meta.entry_count == 0 {
            self.meta.min_key = e.key.clone();
        }
        self.meta.entry_count += 1;
        self.meta.min_ts = self.meta.min_ts.min(e.ts);
        self.meta.max_ts = self.meta.max_ts.max(e.ts);
        self.last = Some((e.key.clone(), e.ts));
        Ok(())
    }

    fn finish_block(&mut self) -> Result<()> {
        if self.block_entries == 0 {
            return Ok(());
        }
        self.block
            .extend_from_slice(&self.block_entries.to_le_bytes());
        let crc = crc32c::crc32c(&self.block);
        self.block.extend_from_slice(&crc.to_le_bytes());
        self.out.write_all(&self.block).map_err(io_err(&self.tmp))?;
        let (last_key, last_ts) = self.last.clone().expect("non-empty block has a last entry");
        self.index.push(BlockHandle {
            offset: self.offset,
            len: self.block.len() as u32,
            last_key,
            last_ts,
        });
        self.offset += self.block.len() as u64;
        self.block.clear();
        self.block_entries = 0;
        Ok(())
    }

    /// Writes index, footer and trailer, then makes the file durable. Returns the temp path.
    fn finish(mut self, high_water_ts: u64) -> Result<PathBuf> {
        self.finish_block()?;
        let mut index = Vec::new();
        index.extend_from_slice(&(self.index.len() as u32).to_le_bytes());
        for h in &self.index {
            index.extend_from_slice(&h.offset.to_le_bytes());
            index.extend_from_slice(&h.len.to_le_bytes());
            index.extend_from_slice(&(h.last_key.len() as u32).to_le_bytes());
            index.extend_from_slice(&h.last_key);
            index.extend_from_slice(&h.last_ts.to_le_bytes());
        }
        let crc = crc32c::crc32c(&index);
        index.extend_from_slice(&crc.to_le_bytes());

        let mut meta = std::mem::take(&mut self.meta);
        if meta.entry_count == 0 {
            meta.min_ts = 0;
        } else {
            meta.max_key = self.last.take().expect("entries were added").0;
        }
        let mut footer = Vec::new();
        footer.extend_from_slice(&self.offset.to_le_bytes());
        footer.extend_from_slice(&(index.len() as u32).to_le_bytes());
        footer.extend_from_slice(&meta.entry_count.to_le_bytes());
        footer.extend_from_slice(&meta.min_ts.to_le_bytes());
        footer.extend_from_slice(&meta.max_ts.to_le_bytes());
        footer.extend_from_slice(&high_water_ts.max(meta.max_ts).to_le_bytes());
        footer.extend_from_slice(&(meta.min_key.len() as u32).to_le_bytes());
        footer.extend_from_slice(&meta.min_key);
        footer.extend_from_slice(&(meta.max_key.len() as u32).to_le_bytes());
        footer.extend_from_slice(&meta.max_key);
        let crc = crc32c::crc32c(&footer);
        footer.extend_from_slice(&crc.to_le_bytes());

        let mut trailer = [0u8; TRAILER_LEN as usize];
        trailer[0..4].copy_from_slice(&(footer.len() as u32).to_le_bytes());
        trailer[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        trailer[8..16].copy_from_slice(&MAGIC.to_le_bytes());

        let tmp = self.tmp;
        let mut out = self.out;
        out.write_all(&index).map_err(io_err(&tmp))?;
        out.write_all(&footer).map_err(io_err(&tmp))?;
        out.write_all(&trailer).map_err(io_err(&tmp))?;
        let file = out.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err(&tmp))?;
        Ok(tmp)
    }
}

/// Writes every entry of `source` (internal order, unique versions) into a new table at
/// `path`, atomically: the file appears under `path` only once complete and durable.
pub(crate) fn write_table(
    path: &Path,
    source: &mut dyn EntryIter,
    high_water_ts: u64,
) -> Result<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut b = TableBuilder::create(tmp.clone())?;
        while let Some(e) = source.next_entry()? {
            b.add(&e)?;
        }
        let tmp = b.finish(high_water_ts)?;
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        sync_dir(dir)
    })();
    if result.is_err() {
        // Leftover temp files are also removed on open; this just avoids wasting space now.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// An open, immutable table. Shared by readers through `Arc`; dropping the last reference
/// closes the file (which may already be unlinked by a compaction).
#[derive(Debug)]
pub(crate) struct Table {
    path: PathBuf,
    file: File,
    file_size: u64,
    lo: u64,
    hi: u64,
    index: Vec<BlockHandle>,
    meta: TableMeta,
}

/// Bounds-checked reader for footer and index decoding.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(corruption(
                self.path,
                format!("{} truncated at byte {}", self.what, self.pos),
            ));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

/// Splits `[body..., crc u32]` and verifies the checksum.
fn check_crc<'a>(buf: &'a [u8], path: &Path, what: &str) -> Result<&'a [u8]> {
    if buf.len() < 4 {
        return Err(corruption(path, format!("{what} too short")));
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != stored {
        return Err(corruption(path, format!("{what}: checksum mismatch")));
    }
    Ok(body)
}

impl Table {
    /// Opens a table and loads its index. `lo`/`hi` come from the file name.
    pub(crate) fn open(path: &Path, lo: u64, hi: u64) -> Result<Table> {
        let file = File::open(path).map_err(io_err(path))?;
        let file_size = file.metadata().map_err(io_err(path))?.len();
        if file_size < TRAILER_LEN {
            return Err(corruption(
                path,
                format!("file of {file_size} bytes has no trailer"),
            ));
        }
        let mut trailer = [0u8; TRAILER_LEN as usize];
        read_exact_at(&file, &mut trailer, file_size - TRAILER_LEN).map_err(io_err(path))?;
        let footer_len = u32::from_le_bytes(trailer[0..4].try_into().expect("4")) as u64;
        let version = u32::from_le_bytes(trailer[4..8].try_into().expect("4"));
        let magic = u64::from_le_bytes(trailer[8..16].try_into().expect("8"));
        if magic != MAGIC {
            return Err(corruption(
                path,
                "bad magic: not an SSTable or damaged trailer",
            ));
        }
        if version != FORMAT_VERSION {
            return Err(corruption(
                path,
                format!("unsupported format version {version}"),
            ));
        }
        if footer_len > file_size - TRAILER_LEN {
            return Err(corruption(
                path,
                format!("footer length {footer_len} exceeds file"),
            ));
        }
        let footer_off = file_size - TRAILER_LEN - footer_len;
        let mut footer = vec![0u8; footer_len as usize];
        read_exact_at(&file, &mut footer, footer_off).map_err(io_err(path))?;
        let body = check_crc(&footer, path, "footer")?;
        let mut r = Reader {
            buf: body,
            pos: 0,
            path,
            what: "footer",
        };
        let index_off = r.u64()?;
        let index_len = r.u32()? as u64;
        let meta = TableMeta {
            entry_count: r.u64()?,
            min_ts: r.u64()?,
            max_ts: r.u64()?,
            high_water_ts: r.u64()?,
            min_key: r.bytes()?,
            max_key: r.bytes()?,
        };
        if index_off.checked_add(index_len) != Some(footer_off) {
            return Err(corruption(
                path,
                format!("index at {index_off}+{index_len} does not end at footer {footer_off}"),
            ));
        }

        let mut raw = vec![0u8; index_len as usize];
        read_exact_at(&file, &mut raw, index_off).map_err(io_err(path))?;
        let body = check_crc(&raw, path, "index block")?;
        let mut r = Reader {
            buf: body,
            pos: 0,
            path,
            what: "index block",
        };
        let n = r.u32()? as usize;
        let mut index = Vec::with_capacity(n.min(body.len() / 24));
        let mut expect_off = 0u64;
        for i in 0..n {
            let h = BlockHandle {
                offset: r.u64()?,
                len: r.u32()?,
                last_key: r.bytes()?,
                last_ts: r.u64()?,
            };
            if h.offset != expect_off || h.len < 8 {
                return Err(corruption(
                    path,
                    format!("index entry {i} has a bad block handle"),
                ));
            }
            if let Some(prev) = index.last() {
                let prev: &BlockHandle = prev;
                if cmp_internal(&prev.last_key, prev.last_ts, &h.last_key, h.last_ts)
                    != Ordering::Less
                {
                    return Err(corruption(path, format!("index entry {i} out of order")));
                }
            }
            expect_off += h.len as u64;
            index.push(h);
        }
        if expect_off != index_off || r.pos != body.len() {
            return Err(corruption(path, "index does not describe the data region"));
        }
        if (meta.entry_count == 0) != index.is_empty() {
            return Err(corruption(path, "entry count disagrees with index"));
        }
        Ok(Table {
            path: path.to_path_buf(),
            file,
            file_size,
            lo,
            hi,
            index,
            meta,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
    pub(crate) fn lo(&self) -> u64 {
        self.lo
    }
    pub(crate) fn hi(&self) -> u64 {
        self.hi
    }
    pub(crate) fn file_size(&self) -> u64 {
        self.file_size
    }
    pub(crate) fn meta(&self) -> &TableMeta {
        &self.meta
    }

    /// Reads, verifies and decodes data block `i`.
    fn read_block(&self, i: usize) -> Result<Arc<Block>> {
        let h = &self.index[i];
        let mut raw = vec![0u8; h.len as usize];
        read_exact_at(&self.file, &mut raw, h.offset).map_err(io_err(&self.path))?;
        let what = format!("data block {i} at offset {}", h.offset);
        let body = check_crc(&raw, &self.path, &what)?;
        let bad = |detail: &str| corruption(&self.path, format!("{what}: {detail}"));
        let (entries_raw, count) = body.split_at(body.len() - 4);
        let count = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
        let mut r = Reader {
            buf: entries_raw,
            pos: 0,
            path: &self.path,
            what: "data block",
        };
        let mut entries: Vec<Entry> = Vec::with_capacity(count.min(entries_raw.len() / 13));
        for _ in 0..count {
            let key = r.bytes()?;
            let ts = r.u64()?;
            let value = match r.take(1)?[0] {
                FLAG_TOMBSTONE => None,
                FLAG_VALUE => Some(r.bytes()?),
                f => return Err(bad(&format!("unknown entry flag {f}"))),
            };
            if let Some(prev) = entries.last()
                && cmp_internal(&prev.key, prev.ts, &key, ts) != Ordering::Less
            {
                return Err(bad("entries out of order"));
            }
            entries.push(Entry { key, ts, value });
        }
        if r.pos != entries_raw.len() {
            return Err(bad("trailing bytes after entries"));
        }
        match entries.last() {
            Some(last) if last.key == h.last_key && last.ts == h.last_ts => {}
            _ => return Err(bad("last entry disagrees with the index")),
        }
        Ok(Arc::new(Block { entries }))
    }

    /// Index of the first block whose last version is `>= (key, ts)` (or `> (key, ts)` when
    /// `strict`), i.e. the only block that can hold the first such version.
    fn seek_block(&self, key: &[u8], ts: u64, strict: bool) -> usize {
        self.index.partition_point(|h| {
            let o = cmp_internal(&h.last_key, h.last_ts, key, ts);
            o == Ordering::Less || (strict && o == Ordering::Equal)
        })
    }

    /// The newest version of `key` with `ts <= read_ts`, as `(ts, value)`.
    pub(crate) fn get(&self, key: &[u8], read_ts: u64) -> Result<Option<(u64, Option<Vec<u8>>)>> {
        if self.index.is_empty()
            || key < self.meta.min_key.as_slice()
            || key > self.meta.max_key.as_slice()
            || read_ts < self.meta.min_ts
        {
            return Ok(None);
        }
        let b = self.seek_block(key, read_ts, false);
        if b == self.index.len() {
            return Ok(None);
        }
        let block = self.read_block(b)?;
        let i = seek_entry(&block.entries, key, read_ts, false);
        Ok(block
            .entries
            .get(i)
            .filter(|e| e.key == key)
            .map(|e| (e.ts, e.value.clone())))
    }

    /// A lazy iterator over the versions in `range`; blocks are read as it advances.
    pub(crate) fn iter(self: &Arc<Self>, range: KeyRange, dir: Direction) -> TableIter {
        TableIter {
            table: Arc::clone(self),
            range,
            dir,
            block_idx: 0,
            block: None,
            pos: 0,
            started: false,
            done: false,
        }
    }
}

/// Position of the first entry `>= (key, ts)` (or `> (key, ts)` when `strict`).
fn seek_entry(entries: &[Entry], key: &[u8], ts: u64, strict: bool) -> usize {
    entries.partition_point(|e| {
        let o = cmp_internal(&e.key, e.ts, key, ts);
        o == Ordering::Less || (strict && o == Ordering::Equal)
    })
}

/// Iterates one table within a key range. Holds at most one decoded block.
pub(crate) struct TableIter {
    table: Arc<Table>,
    range: KeyRange,
    dir: Direction,
    block_idx: usize,
    block: Option<Arc<Block>>,
    /// Forward: index of the next entry to return. Reverse: one past it.
    pos: usize,
    started: bool,
    done: bool,
}

impl TableIter {
    fn load(&mut self, i: usize) -> Result<()> {
        self.block = Some(self.table.read_block(i)?);
        self.block_idx = i;
        Ok(())
    }

    /// Positions the iterator at the first entry in range for its direction.
    fn seek(&mut self) -> Result<()> {
        let n = self.table.index.len();
        if n == 0 {
            self.done = true;
            return Ok(());
        }
        // `(key, ts, strict)`: forward starts at the first entry >= / > it; reverse starts
        // just before the first entry >= / > it.
        let target = match self.dir {
            Direction::Forward => match &self.range.start {
                std::ops::Bound::Included(k) => Some((k.clone(), u64::MAX, false)),
                std::ops::Bound::Excluded(k) => Some((k.clone(), 0, true)),
                std::ops::Bound::Unbounded => None,
            },
            Direction::Reverse => match &self.range.end {
                std::ops::Bound::Included(k) => Some((k.clone(), 0, true)),
                std::ops::Bound::Excluded(k) => Some((k.clone(), u64::MAX, false)),
                std::ops::Bound::Unbounded => None,
            },
        };
        match (self.dir, target) {
            (Direction::Forward, None) => {
                self.load(0)?;
                self.pos = 0;
            }
            (Direction::Forward, Some((k, ts, strict))) => {
                let b = self.table.seek_block(&k, ts, strict);
                if b == n {
                    self.done = true;
                } else {
                    self.load(b)?;
                    let block = self.block.as_ref().expect("loaded");
                    self.pos = seek_entry(&block.entries, &k, ts, strict);
                }
            }
            (Direction::Reverse, None) => {
                self.load(n - 1)?;
                self.pos = self.block.as_ref().expect("loaded").entries.len();
            }
            (Direction::Reverse, Some((k, ts, strict))) => {
                let b = self.table.seek_block(&k, ts, strict);
                if b == n {
                    self.load(n - 1)?;
                    self.pos = self.block.as_ref().expect("loaded").entries.len();
                } else {
                    self.load(b)?;
                    let block = self.block.as_ref().expect("loaded");
                    self.pos = seek_entry(&block.entries, &k, ts, strict);
                }
            }
        }
        Ok(())
    }
}

impl EntryIter for TableIter {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        if !self.started {
            self.started = true;
            self.seek()?;
        }
        while !self.done {
            let block = self
                .block
                .as_ref()
                .expect("a block is loaded while not done");
            match self.dir {
                Direction::Forward => {
                    if let Some(e) = block.entries.get(self.pos) {
                        self.pos += 1;
                        if !self.range.before_end(&e.key) {
                            self.done = true;
                            break;
                        }
                        return Ok(Some(e.clone()));
                    }
                    if self.block_idx + 1 == self.table.index.len() {
                        self.done = true;
                    } else {
                        self.load(self.block_idx + 1)?;
                        self.pos = 0;
                    }
                }
                Direction::Reverse => {
                    if self.pos > 0 {
                        self.pos -= 1;
                        let e = &block.entries[self.pos];
                        if !self.range.after_start(&e.key) {
                            self.done = true;
                            break;
                        }
                        return Ok(Some(e.clone()));
                    }
                    if self.block_idx == 0 {
                        self.done = true;
                    } else {
                        self.load(self.block_idx - 1)?;
                        self.pos = self.block.as_ref().expect("loaded").entries.len();
                    }
                }
            }
        }
        self.block = None;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::super::StorageError;
    use super::super::iter::tests::VecIter;
    use super::*;

    /// Keys k0000..k(n-1), each with versions 30, 20, 10; every third version a tombstone.
    fn sample(n: usize) -> Vec<Entry> {
        let mut v = Vec::new();
        for i in 0..n {
            for ts in [30u64, 20, 10] {
                let key = format!("k{i:04}").into_bytes();
                let value = (!(i + ts as usize).is_multiple_of(3))
                    .then(|| vec![b'x'; (i * 7 + ts as usize) % 90]);
                v.push(Entry { key, ts, value });
            }
        }
        v
    }

    fn build(dir: &Path, entries: Vec<Entry>) -> Arc<Table> {
        let path = super::super::files::table_path(dir, 1, 2);
        write_table(&path, &mut VecIter(entries.into_iter()), 77).unwrap();
        Arc::new(Table::open(&path, 1, 2).unwrap())
    }

    fn drain(it: &mut TableIter) -> Vec<Entry> {
        let mut v = Vec::new();
        while let Some(e) = it.next_entry().unwrap() {
            v.push(e);
        }
        v
    }

    #[test]
    fn round_trip_gets_and_bounded_iteration() {
        let dir = tempfile::tempdir().unwrap();
        let entries = sample(400);
        let t = build(dir.path(), entries.clone());
        assert!(
            t.index.len() > 5,
            "expected several blocks, got {}",
            t.index.len()
        );
        assert_eq!(t.meta().entry_count, entries.len() as u64);
        assert_eq!(t.meta().min_key, b"k0000");
        assert_eq!(t.meta().max_key, b"k0399");
        assert_eq!((t.meta().min_ts, t.meta().max_ts), (10, 30));
        assert_eq!(t.meta().high_water_ts, 77);
        assert!(!tmp_path(t.path()).exists());

        // Point reads: newest version <= read_ts.
        for i in [0usize, 1, 150, 399] {
            let key = format!("k{i:04}").into_bytes();
            for (read_ts, want_ts) in [(5, None), (10, Some(10)), (25, Some(20)), (99, Some(30))] {
                let got = t.get(&key, read_ts).unwrap();
                let want = want_ts.map(|ts| {
                    let e = entries.iter().find(|e| e.key == key && e.ts == ts).unwrap();
                    (ts, e.value.clone())
                });
                assert_eq!(got, want, "key {i} at {read_ts}");
            }
        }
        assert_eq!(t.get(b"k0150x", 99).unwrap(), None);
        assert_eq!(t.get(b"a", 99).unwrap(), None);
        assert_eq!(t.get(b"z", 99).unwrap(), None);

        // Full scans both ways.
        let all = drain(&mut t.iter(KeyRange::all(), Direction::Forward));
        assert_eq!(all, entries);
        let mut rev = drain(&mut t.iter(KeyRange::all(), Direction::Reverse));
        rev.reverse();
        assert_eq!(rev, entries);

        // Every bound combination against a filter over the model.
        let keys = [
            &b"k0000"[..],
            b"k0101",
            b"k0101\0",
            b"k0250",
            b"k0399",
            b"k9",
        ];
        let bounds = |k: &'static [u8]| [Bound::Included(k), Bound::Excluded(k)];
        for s in keys {
            for e in keys {
                for (sb, eb) in bounds(s).into_iter().zip(bounds(e)).chain([
                    (Bound::Unbounded, Bound::Included(e)),
                    (Bound::Included(s), Bound::Unbounded),
                    (Bound::Excluded(s), Bound::Included(e)),
                ]) {
                    let range = KeyRange::new(sb, eb);
                    let want: Vec<Entry> = entries
                        .iter()
                        .filter(|x| range.contains(&x.key))
                        .cloned()
                        .collect();
                    let fwd = drain(&mut t.iter(range.clone(), Direction::Forward));
                    assert_eq!(fwd, want, "{sb:?}..{eb:?}");
                    let mut rev = drain(&mut t.iter(range, Direction::Reverse));
                    rev.reverse();
                    assert_eq!(rev, want, "rev {sb:?}..{eb:?}");
                }
            }
        }
    }

    #[test]
    fn empty_table_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let t = build(dir.path(), Vec::new());
        assert_eq!(t.meta().entry_count, 0);
        assert_eq!(t.get(b"a", 5).unwrap(), None);
        assert!(drain(&mut t.iter(KeyRange::all(), Direction::Forward)).is_empty());
        assert!(drain(&mut t.iter(KeyRange::all(), Direction::Reverse)).is_empty());
    }

    #[test]
    fn out_of_order_input_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut entries = sample(3);
        entries.swap(0, 1);
        let path = super::super::files::table_path(dir.path(), 1, 2);
        assert!(write_table(&path, &mut VecIter(entries.into_iter()), 0).is_err());
        assert!(!path.exists());
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn block_checksum_mismatch_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let entries = sample(400);
        let t = build(dir.path(), entries.clone());
        let path = t.path().to_path_buf();
        let victim = t.index[3].offset + 10;
        drop(t);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[victim as usize] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();

        // Opening still works (index and footer are intact); reading the block fails.
        let t = Arc::new(Table::open(&path, 1, 2).unwrap());
        let key = t.index[3].last_key.clone();
        let err = t.get(&key, u64::MAX).unwrap_err();
        match &err {
            StorageError::Corruption { path: p, detail } => {
                assert_eq!(p, &path);
                assert!(detail.contains("checksum"), "{detail}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(
            err.to_string()
                .contains("sst-00000000000000000001-00000000000000000002.sst")
        );
        let mut it = t.iter(KeyRange::all(), Direction::Forward);
        let res: Result<Vec<_>> = std::iter::from_fn(|| it.next_entry().transpose()).collect();
        assert!(matches!(res, Err(StorageError::Corruption { .. })));
    }

    #[test]
    fn damaged_footer_index_or_trailer_fails_open() {
        let dir = tempfile::tempdir().unwrap();
        let t = build(dir.path(), sample(50));
        let path = t.path().to_path_buf();
        let size = t.file_size();
        let index_pos = t.index.last().map(|h| h.offset + h.len as u64).unwrap();
        drop(t);
        let good = std::fs::read(&path).unwrap();
        for pos in [index_pos + 2, size - TRAILER_LEN - 6, size - 3, size - 14] {
            let mut bytes = good.clone();
            bytes[pos as usize] ^= 0x08;
            std::fs::write(&path, &bytes).unwrap();
            let err = Table::open(&path, 1, 2).unwrap_err();
            assert!(
                matches!(err, StorageError::Corruption { .. }),
                "pos {pos}: {err}"
            );
        }
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(Table::open(&path, 1, 2).is_err());
    }
}

//! SSTables: immutable sorted files of versions, read block by block through a shared cache.
//!
//! Layout, format version 2 (all fixed-width integers little-endian; `varint` is LEB128 of a
//! u32):
//!
//! ```text
//!   +--------------+-----+--------------+-------------+--------------+--------+---------------+
//!   | data block 0 | ... | data block n | index block | bloom block  | footer | trailer (28B) |
//!   +--------------+-----+--------------+-------------+--------------+--------+---------------+
//!
//!   data block  (about `block_bytes`; larger only when a single entry is larger)
//!     repeated entry:
//!       shared varint          bytes of the key shared with the previous entry's key
//!                              (0 at a restart point, i.e. every 16th entry of the block)
//!       unshared varint | unshared key bytes
//!       ts u64 | flag u8 (0 tombstone, 1 value) | [value_len varint | value]  (when flag = 1)
//!     restart_offset u32 * restart_count   (offset of each restart entry; the first is 0)
//!     restart_count u32
//!     crc32c u32 over every preceding byte of the block
//!
//!   index block (one handle per data block, in order; the blocks tile [0, index start))
//!     block_count u32
//!     repeated: offset u64 | len u32 | last_key_len u32 | last_key | last_ts u64
//!     crc32c u32
//!
//!   bloom block
//!     filter over the distinct user keys (see `bloom`: bit array, then k u8)
//!     crc32c u32
//!
//!   footer (table properties)
//!     entry_count u64 | tombstone_count u64 | distinct_keys u64
//!     min_ts u64 | max_ts u64 | high_water_ts u64
//!     min_key_len u32 | min_key | max_key_len u32 | max_key
//!     crc32c u32
//!
//!   trailer (fixed size, so it can be found from the end of the file)
//!     index_len u32 | bloom_len u32 | footer_len u32     (each including its crc)
//!     crc32c u32 over those 12 bytes
//!     format_version u32 (= 2) | magic u64
//! ```
//!
//! Why this shape:
//! - **Prefix compression with restart points.** Keys in a table are sorted and versions of a
//!   key are adjacent, so consecutive keys share long prefixes (entirely, for versions of one
//!   key). Storing only the differing suffix shrinks blocks; a full key every 16 entries keeps
//!   a point lookup to a binary search over the restart points plus a scan of at most 16
//!   entries, instead of a scan of the whole block.
//! - **Everything under a CRC.** Every byte of the file is covered by exactly one checksum
//!   (magic and version are compared with constants), and each region is verified before any
//!   of it is interpreted, so a damaged file yields [`super::StorageError::Corruption`] naming
//!   it — never a panic and never silently wrong data. Structural checks after the CRC (entry
//!   framing, ordering, agreement between blocks, index and footer) guard against writer bugs.
//! - **Bloom filter over user keys.** A point read asks whether the table holds any version of
//!   a key; most tables of a leveled LSM do not, and the filter answers that without reading a
//!   data block.
//! - **Footer properties** let the engine skip tables by key range and timestamp and plan
//!   compactions without reading data. `high_water_ts` is the engine's highest commit
//!   timestamp when the table was written — at least `max_ts`, and kept even when compaction
//!   garbage-collects the newest versions — so `max_committed_ts` never moves backwards across
//!   a restart after the WAL is gone.
//!
//! Entries are in internal order (key ascending, ts descending) with each `(key, ts)` at most
//! once; the builder refuses anything else.
//!
//! An open [`Table`] keeps the index, the bloom filter and the footer in memory. Data blocks
//! are read with positioned reads (one shared file handle, no seek cursor, so readers never
//! contend), verified, parsed once into a [`Block`] and shared through the engine's
//! [`BlockCache`] under the table's id. Iterators hold an `Arc` of their current block.
//!
//! Tables are written under a temporary name, fsynced, renamed into place, and the directory is
//! fsynced, so a table that exists under its final name is complete.

use std::cmp::Ordering;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::ops::{Bound, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use super::bloom::{BloomBuilder, BloomReader};
use super::cache::BlockCache;
use super::files::{read_exact_at, sync_dir, tmp_path};
use super::iter::{Direction, Entry, EntryIter, KeyRange, cmp_internal};
use super::{Result, StorageError, corruption, io_err};

const MAGIC: u64 = u64::from_le_bytes(*b"SHDBSST\x02");
const FORMAT_VERSION: u32 = 2;
const TRAILER_LEN: u64 = 28;
/// A full key is stored every this many entries of a block.
const RESTART_INTERVAL: usize = 16;
const FLAG_TOMBSTONE: u8 = 0;
const FLAG_VALUE: u8 = 1;
/// Smallest possible data block: one entry with an empty key (2 + 8 + 1 bytes), one restart
/// offset, the restart count and the checksum.
const MIN_BLOCK_LEN: u32 = 11 + 4 + 4 + 4;

/// Tuning of the tables a builder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableOptions {
    /// Target size of a data block, in bytes after prefix compression.
    pub block_bytes: usize,
    /// Bloom filter bits per distinct user key.
    pub bloom_bits_per_key: usize,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            block_bytes: 4096,
            bloom_bits_per_key: 10,
        }
    }
}

/// Point-read counters shared by all tables of an engine.
#[derive(Debug, Default)]
pub(crate) struct ReadCounters {
    /// Point reads that consulted a bloom filter (the key was within the table's key range).
    pub bloom_checks: AtomicU64,
    /// ... and were answered "definitely absent" by it.
    pub bloom_negatives: AtomicU64,
    /// ... and were answered "maybe", but the table held no version of the key at all.
    pub bloom_false_positives: AtomicU64,
}

/// Where a data block lives and the last version it holds (for binary search).
#[derive(Debug, Clone)]
struct BlockHandle {
    offset: u64,
    len: u32,
    last_key: Vec<u8>,
    last_ts: u64,
}

/// Table-wide facts from the footer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TableMeta {
    pub entry_count: u64,
    pub tombstone_count: u64,
    /// Distinct user keys.
    pub distinct_keys: u64,
    /// Smallest and largest user key; empty when the table is.
    pub min_key: Vec<u8>,
    pub max_key: Vec<u8>,
    /// Oldest and newest version; both 0 when the table is empty.
    pub min_ts: u64,
    pub max_ts: u64,
    pub high_water_ts: u64,
}

// ---------------------------------------------------------------------------------------------
// Small encoding helpers.

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u32) -> usize {
    match v {
        0..0x80 => 1,
        0x80..0x4000 => 2,
        0x4000..0x20_0000 => 3,
        0x20_0000..0x1000_0000 => 4,
        _ => 5,
    }
}

/// Decodes a varint at `*pos`, advancing it; `None` if truncated or wider than 32 bits.
fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u32> {
    let mut v: u32 = 0;
    for i in 0..5 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if i == 4 && b > 0x0f {
            return None;
        }
        v |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn le_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

fn le_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Splits `[body..., crc u32]`, verifies the checksum and returns the body.
fn verify_crc(mut raw: Vec<u8>, path: &Path, what: &str) -> Result<Vec<u8>> {
    let Some(body_len) = raw.len().checked_sub(4) else {
        return Err(corruption(
            path,
            format!("{what}: too short for a checksum"),
        ));
    };
    let stored = le_u32(&raw[body_len..]).unwrap_or_default();
    if crc32c::crc32c(&raw[..body_len]) != stored {
        return Err(corruption(path, format!("{what}: checksum mismatch")));
    }
    raw.truncate(body_len);
    Ok(raw)
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
        let s = self.take(4)?;
        le_u32(s).ok_or_else(|| corruption(self.path, self.what))
    }
    fn u64(&mut self) -> Result<u64> {
        let s = self.take(8)?;
        le_u64(s).ok_or_else(|| corruption(self.path, self.what))
    }
    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn finish(&self) -> Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(corruption(
                self.path,
                format!(
                    "{}: {} trailing bytes",
                    self.what,
                    self.buf.len() - self.pos
                ),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Data blocks.

/// A structural problem inside a data block; the table turns it into a corruption error that
/// names the file and the block.
#[derive(Debug)]
struct Malformed(&'static str);

/// One entry as stored: its key is relative to the previous entry's.
struct RawEntry<'a> {
    shared: usize,
    unshared: &'a [u8],
    ts: u64,
    value: Option<Range<usize>>,
    /// Offset of the following entry.
    next: usize,
}

/// An entry decoded in place: the key lives in the caller's buffer, the value in the block.
struct Decoded {
    ts: u64,
    value: Option<Range<usize>>,
    next: usize,
}

/// A verified, parsed data block: what the block cache holds.
///
/// The entries stay prefix-compressed (a block in the cache costs about what it costs on
/// disk); parsing checked once that every entry decodes, that entries are strictly ordered
/// and that the restart array points at entries with a full key, so readers decode without
/// surprises. Decoding still reports errors instead of assuming, as data came from disk.
#[derive(Debug)]
pub(crate) struct Block {
    /// The entries region (restart array and checksum stripped).
    data: Vec<u8>,
    restarts: Vec<u32>,
}

impl Block {
    /// Parses a block body (checksum already verified and stripped). `after` is the last
    /// version of the previous block, which this block's first entry must follow; `last` is the
    /// version the index says this block ends with.
    fn parse(
        mut body: Vec<u8>,
        after: Option<(&[u8], u64)>,
        last: (&[u8], u64),
    ) -> std::result::Result<Block, Malformed> {
        let len = body.len();
        let count_at = len
            .checked_sub(4)
            .ok_or(Malformed("too short for a restart count"))?;
        let count = le_u32(&body[count_at..]).ok_or(Malformed("restart count"))? as usize;
        let data_len = count
            .checked_mul(4)
            .and_then(|b| count_at.checked_sub(b))
            .ok_or(Malformed("restart array larger than the block"))?;
        if count == 0 {
            return Err(Malformed("no restart points"));
        }
        let mut restarts = Vec::with_capacity(count);
        for chunk in body[data_len..count_at].chunks_exact(4) {
            let r = le_u32(chunk).ok_or(Malformed("restart offset"))?;
            let ok = match restarts.last() {
                None => r == 0,
                Some(&prev) => r > prev,
            };
            if !ok || r as usize >= data_len {
                return Err(Malformed(
                    "restart offsets not increasing within the entries",
                ));
            }
            restarts.push(r);
        }
        body.truncate(data_len);
        let block = Block {
            data: body,
            restarts,
        };

        // Walk every entry once.
        let mut key: Vec<u8> = Vec::new();
        let mut next_key: Vec<u8> = Vec::new();
        let mut ts = 0u64;
        let mut off = 0usize;
        let mut restart_i = 0usize;
        let mut entries = 0usize;
        while off < data_len {
            let raw = block.raw_at(off)?;
            if block.restarts.get(restart_i) == Some(&(off as u32)) {
                if raw.shared != 0 {
                    return Err(Malformed("restart entry does not hold a full key"));
                }
                restart_i += 1;
            }
            if raw.shared > key.len() {
                return Err(Malformed("shared prefix longer than the previous key"));
            }
            next_key.clear();
            next_key.extend_from_slice(&key[..raw.shared]);
            next_key.extend_from_slice(raw.unshared);
            let prev = if entries == 0 {
                after
            } else {
                Some((key.as_slice(), ts))
            };
            if let Some((pk, pts)) = prev
                && cmp_internal(pk, pts, &next_key, raw.ts) != Ordering::Less
            {
                return Err(Malformed("entries out of order"));
            }
            std::mem::swap(&mut key, &mut next_key);
            ts = raw.ts;
            off = raw.next;
            entries += 1;
        }
        if restart_i != block.restarts.len() {
            return Err(Malformed("restart offset inside an entry"));
        }
        if entries == 0 || key.as_slice() != last.0 || ts != last.1 {
            return Err(Malformed("last entry disagrees with the index"));
        }
        Ok(block)
    }

    /// Approximate heap bytes held, the block's charge in the cache.
    pub(crate) fn charge(&self) -> usize {
        self.data.capacity()
            + self.restarts.capacity() * 4
            + std::mem::size_of::<Block>()
            + 2 * std::mem::size_of::<usize>() // Arc counts
    }

    fn raw_at(&self, off: usize) -> std::result::Result<RawEntry<'_>, Malformed> {
        let d = &self.data;
        let mut p = off;
        let shared = get_varint(d, &mut p).ok_or(Malformed("bad shared length"))? as usize;
        let unshared = get_varint(d, &mut p).ok_or(Malformed("bad key length"))? as usize;
        let key_end = p
            .checked_add(unshared)
            .filter(|&e| e <= d.len())
            .ok_or(Malformed("key runs past the block"))?;
        let unshared = &d[p..key_end];
        p = key_end;
        let ts = d
            .get(p..p + 8)
            .and_then(le_u64)
            .ok_or(Malformed("truncated timestamp"))?;
        p += 8;
        let flag = *d.get(p).ok_or(Malformed("truncated flag"))?;
        p += 1;
        let value = match flag {
            FLAG_TOMBSTONE => None,
            FLAG_VALUE => {
                let n = get_varint(d, &mut p).ok_or(Malformed("bad value length"))? as usize;
                let end = p
                    .checked_add(n)
                    .filter(|&e| e <= d.len())
                    .ok_or(Malformed("value runs past the block"))?;
                let v = p..end;
                p = end;
                Some(v)
            }
            _ => return Err(Malformed("unknown entry flag")),
        };
        Ok(RawEntry {
            shared,
            unshared,
            ts,
            value,
            next: p,
        })
    }

    /// Decodes the entry at `off`, given the previous entry's key in `key` (anything at a
    /// restart point); leaves this entry's key in `key`.
    fn decode_at(&self, off: usize, key: &mut Vec<u8>) -> std::result::Result<Decoded, Malformed> {
        let raw = self.raw_at(off)?;
        if raw.shared > key.len() {
            return Err(Malformed("shared prefix longer than the previous key"));
        }
        key.truncate(raw.shared);
        key.extend_from_slice(raw.unshared);
        Ok(Decoded {
            ts: raw.ts,
            value: raw.value,
            next: raw.next,
        })
    }

    fn value(&self, r: &Option<Range<usize>>) -> Option<Vec<u8>> {
        r.as_ref().map(|r| self.data[r.clone()].to_vec())
    }

    fn at_end(&self, off: usize) -> bool {
        off >= self.data.len()
    }

    /// Finds the first entry at or after `(key, ts)` (strictly after when `strict`): binary
    /// search over the restart points, then a forward scan of at most one restart interval.
    /// Leaves that entry's key in `kbuf`; `None` if every entry of the block is before the
    /// target. `prev_is_key` becomes whether the entry just before the found position has user
    /// key `key`; it is left untouched when that entry is in an earlier block.
    fn seek(
        &self,
        key: &[u8],
        ts: u64,
        strict: bool,
        kbuf: &mut Vec<u8>,
        prev_is_key: &mut bool,
    ) -> std::result::Result<Option<Decoded>, Malformed> {
        let before = |k: &[u8], t: u64| {
            let o = cmp_internal(k, t, key, ts);
            o == Ordering::Less || (strict && o == Ordering::Equal)
        };
        // Restart points whose entry is before the target: [0, lo).
        let (mut lo, mut hi) = (0usize, self.restarts.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let raw = self.raw_at(self.restarts[mid] as usize)?;
            if raw.shared != 0 {
                return Err(Malformed("restart entry does not hold a full key"));
            }
            if before(raw.unshared, raw.ts) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut off = self
            .restarts
            .get(lo.saturating_sub(1))
            .copied()
            .unwrap_or(0) as usize;
        kbuf.clear();
        while !self.at_end(off) {
            let d = self.decode_at(off, kbuf)?;
            if !before(kbuf, d.ts) {
                return Ok(Some(d));
            }
            *prev_is_key = kbuf.as_slice() == key;
            off = d.next;
        }
        Ok(None)
    }

    /// Every entry, in order (reverse iteration and verification use this).
    fn decode_all(&self) -> std::result::Result<Vec<Entry>, Malformed> {
        let mut out = Vec::with_capacity(self.restarts.len() * RESTART_INTERVAL);
        let mut key = Vec::new();
        let mut off = 0;
        while !self.at_end(off) {
            let d = self.decode_at(off, &mut key)?;
            out.push(Entry {
                key: key.clone(),
                ts: d.ts,
                value: self.value(&d.value),
            });
            off = d.next;
        }
        Ok(out)
    }

    /// A stand-in block that carries only a tag, for cache tests.
    #[cfg(test)]
    pub(crate) fn for_test(tag: u8) -> Block {
        Block {
            data: vec![tag],
            restarts: Vec::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn test_tag(&self) -> u8 {
        self.data[0]
    }
}

// ---------------------------------------------------------------------------------------------
// Writing.

/// A key for an error message: escaped, and cut short if long.
fn show_key(key: &[u8]) -> String {
    const MAX: usize = 64;
    let shown = key[..key.len().min(MAX)].escape_ascii().to_string();
    if key.len() > MAX {
        format!("\"{shown}\"... ({} bytes)", key.len())
    } else {
        format!("\"{shown}\"")
    }
}

fn too_large(path: &Path, what: &str) -> StorageError {
    StorageError::InvalidArgument(format!(
        "{what} too large for an SSTable ({})",
        path.display()
    ))
}

/// Streams entries in internal order into a new table file. Used whole by flushes
/// ([`write_table`]) and incrementally by compactions, which cut their output into several
/// tables by watching [`TableBuilder::approx_file_size`].
///
/// The file is written under [`tmp_path`] and appears under its final name only when
/// [`TableBuilder::finish`] succeeds. A builder dropped without finishing (including after an
/// error) removes its temporary file, like [`TableBuilder::abandon`].
pub(crate) struct TableBuilder {
    path: PathBuf,
    tmp: PathBuf,
    /// `None` once the file has been closed by `finish`.
    out: Option<BufWriter<File>>,
    opts: TableOptions,
    block: Vec<u8>,
    restarts: Vec<u32>,
    block_entries: usize,
    /// Bytes written so far (complete blocks).
    offset: u64,
    index: Vec<BlockHandle>,
    index_bytes: usize,
    bloom: BloomBuilder,
    /// The last entry added; meaningful once `entry_count > 0`.
    last_key: Vec<u8>,
    last_ts: u64,
    entry_count: u64,
    tombstones: u64,
    distinct_keys: u64,
    min_key: Vec<u8>,
    min_ts: u64,
    max_ts: u64,
    finished: bool,
}

impl std::fmt::Debug for TableBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableBuilder")
            .field("path", &self.path)
            .field("entries", &self.entry_count)
            .field("approx_file_size", &self.approx_file_size())
            .finish_non_exhaustive()
    }
}

fn closed(tmp: &Path) -> StorageError {
    StorageError::InvalidArgument(format!(
        "table builder for {} is already closed",
        tmp.display()
    ))
}

fn write_out(out: &mut Option<BufWriter<File>>, tmp: &Path, bytes: &[u8]) -> Result<()> {
    let Some(out) = out.as_mut() else {
        return Err(closed(tmp));
    };
    out.write_all(bytes).map_err(io_err(tmp))
}

impl TableBuilder {
    /// Starts a table that will be renamed to `final_path` by [`TableBuilder::finish`].
    pub(crate) fn create(final_path: &Path, opts: &TableOptions) -> Result<TableBuilder> {
        let tmp = tmp_path(final_path);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        Ok(TableBuilder {
            path: final_path.to_path_buf(),
            out: Some(BufWriter::with_capacity(256 * 1024, file)),
            tmp,
            opts: *opts,
            block: Vec::with_capacity(opts.block_bytes.min(1 << 20) + 64),
            restarts: Vec::new(),
            block_entries: 0,
            offset: 0,
            index: Vec::new(),
            index_bytes: 4 + 4,
            bloom: BloomBuilder::new(opts.bloom_bits_per_key),
            last_key: Vec::new(),
            last_ts: 0,
            entry_count: 0,
            tombstones: 0,
            distinct_keys: 0,
            min_key: Vec::new(),
            min_ts: u64::MAX,
            max_ts: 0,
            finished: false,
        })
    }

    /// Appends one version. Versions must arrive in internal order (key ascending, ts
    /// descending), each `(key, ts)` once; anything else is rejected and leaves the builder as
    /// it was.
    pub(crate) fn add(&mut self, e: &Entry) -> Result<()> {
        self.add_parts(&e.key, e.ts, e.value.as_deref())
    }

    /// [`TableBuilder::add`] from borrowed parts, so a flush can stream a memtable without
    /// copying each entry out first.
    pub(crate) fn add_parts(&mut self, key: &[u8], ts: u64, value: Option<&[u8]>) -> Result<()> {
        if self.entry_count > 0
            && cmp_internal(&self.last_key, self.last_ts, key, ts) != Ordering::Less
        {
            return Err(StorageError::InvalidArgument(format!(
                "table input out of order for {}: ({}, {}) then ({}, {})",
                self.path.display(),
                show_key(&self.last_key),
                self.last_ts,
                show_key(key),
                ts
            )));
        }
        let key_len = u32::try_from(key.len()).map_err(|_| too_large(&self.path, "key"))?;
        let value_len = match value {
            None => None,
            Some(v) => Some(u32::try_from(v.len()).map_err(|_| too_large(&self.path, "value"))?),
        };
        let encoded_len = |shared: usize| {
            let unshared = key_len as usize - shared;
            varint_len(shared as u32)
                + varint_len(unshared as u32)
                + unshared
                + 8
                + 1
                + value_len.map_or(0, |n| varint_len(n) + n as usize)
        };
        let shares = |b: &TableBuilder| {
            if b.block_entries.is_multiple_of(RESTART_INTERVAL) {
                0
            } else {
                common_prefix(&b.last_key, key)
            }
        };
        // Close the block first if this entry would push it past the target (restart array,
        // count and checksum included).
        if self.block_entries > 0
            && self.block.len() + encoded_len(shares(self)) + 4 * (self.restarts.len() + 1) + 8
                > self.opts.block_bytes
        {
            self.finish_block()?;
        }
        let shared = shares(self);
        if self.block_entries.is_multiple_of(RESTART_INTERVAL) {
            let at = u32::try_from(self.block.len()).map_err(|_| too_large(&self.path, "block"))?;
            self.restarts.push(at);
        }
        put_varint(&mut self.block, shared as u32);
        put_varint(&mut self.block, key_len - shared as u32);
        self.block.extend_from_slice(&key[shared..]);
        self.block.extend_from_slice(&ts.to_le_bytes());
        match (value, value_len) {
            (Some(v), Some(n)) => {
                self.block.push(FLAG_VALUE);
                put_varint(&mut self.block, n);
                self.block.extend_from_slice(v);
            }
            _ => {
                self.block.push(FLAG_TOMBSTONE);
                self.tombstones += 1;
            }
        }
        self.block_entries += 1;

        if self.entry_count == 0 {
            self.min_key = key.to_vec();
        }
        if self.entry_count == 0 || self.last_key != key {
            self.distinct_keys += 1;
        }
        self.bloom.add_key(key);
        self.entry_count += 1;
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.last_ts = ts;
        Ok(())
    }

    /// About how large the file would be if finished now.
    pub(crate) fn approx_file_size(&self) -> u64 {
        let tail = self.block.len()
            + 4 * self.restarts.len()
            + self.index_bytes
            + self.bloom.approx_bytes()
            + self.min_key.len()
            + self.last_key.len()
            + 64
            + TRAILER_LEN as usize;
        self.offset + tail as u64
    }

    /// The user key of the last entry added.
    #[cfg(test)]
    pub(crate) fn last_key(&self) -> Option<&[u8]> {
        (self.entry_count > 0).then_some(self.last_key.as_slice())
    }

    pub(crate) fn entry_count(&self) -> u64 {
        self.entry_count
    }

    fn finish_block(&mut self) -> Result<()> {
        if self.block_entries == 0 {
            return Ok(());
        }
        for r in &self.restarts {
            self.block.extend_from_slice(&r.to_le_bytes());
        }
        self.block
            .extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c(&self.block);
        self.block.extend_from_slice(&crc.to_le_bytes());
        let len = u32::try_from(self.block.len()).map_err(|_| too_large(&self.path, "entry"))?;
        write_out(&mut self.out, &self.tmp, &self.block)?;
        self.index.push(BlockHandle {
            offset: self.offset,
            len,
            last_key: self.last_key.clone(),
            last_ts: self.last_ts,
        });
        self.index_bytes += 8 + 4 + 4 + self.last_key.len() + 8;
        self.offset += u64::from(len);
        self.block.clear();
        self.restarts.clear();
        self.block_entries = 0;
        Ok(())
    }

    /// Writes the index, bloom filter, footer and trailer, makes the file durable and renames
    /// it into place (then makes the rename durable). Returns the file size.
    pub(crate) fn finish(mut self, high_water_ts: u64) -> Result<u64> {
        self.finish_block()?;

        let mut index = Vec::with_capacity(self.index_bytes);
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

        let mut bloom = self.bloom.build();
        let crc = crc32c::crc32c(&bloom);
        bloom.extend_from_slice(&crc.to_le_bytes());

        let (min_ts, max_key) = if self.entry_count == 0 {
            (0, &[][..])
        } else {
            (self.min_ts, self.last_key.as_slice())
        };
        let mut footer = Vec::with_capacity(64 + self.min_key.len() + max_key.len());
        for v in [
            self.entry_count,
            self.tombstones,
            self.distinct_keys,
            min_ts,
            self.max_ts,
            high_water_ts.max(self.max_ts),
        ] {
            footer.extend_from_slice(&v.to_le_bytes());
        }
        footer.extend_from_slice(&(self.min_key.len() as u32).to_le_bytes());
        footer.extend_from_slice(&self.min_key);
        footer.extend_from_slice(&(max_key.len() as u32).to_le_bytes());
        footer.extend_from_slice(max_key);
        let crc = crc32c::crc32c(&footer);
        footer.extend_from_slice(&crc.to_le_bytes());

        let len32 =
            |b: &[u8], what| u32::try_from(b.len()).map_err(|_| too_large(&self.path, what));
        let mut trailer = Vec::with_capacity(TRAILER_LEN as usize);
        trailer.extend_from_slice(&len32(&index, "index")?.to_le_bytes());
        trailer.extend_from_slice(&len32(&bloom, "bloom filter")?.to_le_bytes());
        trailer.extend_from_slice(&len32(&footer, "footer")?.to_le_bytes());
        let crc = crc32c::crc32c(&trailer);
        trailer.extend_from_slice(&crc.to_le_bytes());
        trailer.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        trailer.extend_from_slice(&MAGIC.to_le_bytes());
        debug_assert_eq!(trailer.len() as u64, TRAILER_LEN);

        for part in [&index, &bloom, &footer, &trailer] {
            write_out(&mut self.out, &self.tmp, part)?;
        }
        let size = self.offset + (index.len() + bloom.len() + footer.len() + trailer.len()) as u64;
        let out = self.out.take().ok_or_else(|| closed(&self.tmp))?;
        let file = out
            .into_inner()
            .map_err(|e| io_err(&self.tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err(&self.tmp))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(io_err(&self.path))?;
        self.finished = true;
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        sync_dir(dir)?;
        Ok(size)
    }

    /// Gives up on the table: closes and deletes the temporary file.
    pub(crate) fn abandon(self) {
        drop(self);
    }
}

impl Drop for TableBuilder {
    fn drop(&mut self) {
        if !self.finished {
            // Close before deleting (required on some platforms). Leftover temporary files
            // are also removed when the engine opens; this just frees the space now.
            drop(self.out.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes every entry of `source` (internal order, unique versions) into a new table at
/// `path`, atomically: the file appears under `path` only once complete and durable. Returns
/// the file size.
#[cfg(test)]
pub(crate) fn write_table(
    path: &Path,
    source: &mut dyn EntryIter,
    high_water_ts: u64,
    opts: &TableOptions,
) -> Result<u64> {
    let mut b = TableBuilder::create(path, opts)?;
    while let Some(e) = source.next_entry()? {
        b.add(&e)?;
    }
    b.finish(high_water_ts)
}

// ---------------------------------------------------------------------------------------------
// Reading.

/// An open, immutable table. Shared by readers through `Arc`; dropping the last reference
/// closes the file (which may already be unlinked by a compaction) and erases its blocks from
/// the cache.
pub(crate) struct Table {
    path: PathBuf,
    file: File,
    file_size: u64,
    id: u64,
    index: Vec<BlockHandle>,
    bloom: Vec<u8>,
    meta: TableMeta,
    cache: Arc<BlockCache>,
    counters: Arc<ReadCounters>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("path", &self.path)
            .field("id", &self.id)
            .field("file_size", &self.file_size)
            .field("blocks", &self.index.len())
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Table {
    /// Opens a table, verifying and loading its trailer, footer, index and bloom filter.
    /// `id` names the table in `cache` and must not be used by any other table sharing that
    /// cache while the cache lives.
    pub(crate) fn open(
        path: &Path,
        id: u64,
        cache: Arc<BlockCache>,
        counters: Arc<ReadCounters>,
    ) -> Result<Table> {
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
        let field = |at: usize| le_u32(&trailer[at..at + 4]).unwrap_or_default();
        let magic = le_u64(&trailer[20..28]).unwrap_or_default();
        if magic != MAGIC {
            return Err(corruption(
                path,
                "bad magic: not an SSTable or damaged trailer",
            ));
        }
        let version = field(16);
        if version != FORMAT_VERSION {
            return Err(corruption(
                path,
                format!("unsupported format version {version} (expected {FORMAT_VERSION})"),
            ));
        }
        if crc32c::crc32c(&trailer[..12]) != field(12) {
            return Err(corruption(path, "trailer: checksum mismatch"));
        }
        let (index_len, bloom_len, footer_len) = (
            u64::from(field(0)),
            u64::from(field(4)),
            u64::from(field(8)),
        );
        let meta_len = index_len + bloom_len + footer_len;
        if meta_len > file_size - TRAILER_LEN {
            return Err(corruption(
                path,
                format!("trailer describes {meta_len} bytes of metadata, more than the file"),
            ));
        }
        let index_off = file_size - TRAILER_LEN - meta_len;
        let mut raw = vec![0u8; meta_len as usize];
        read_exact_at(&file, &mut raw, index_off).map_err(io_err(path))?;
        let footer_raw = raw.split_off((index_len + bloom_len) as usize);
        let bloom_raw = raw.split_off(index_len as usize);
        let index_raw = raw;

        let footer = verify_crc(footer_raw, path, "footer")?;
        let mut r = Reader {
            buf: &footer,
            pos: 0,
            path,
            what: "footer",
        };
        let meta = TableMeta {
            entry_count: r.u64()?,
            tombstone_count: r.u64()?,
            distinct_keys: r.u64()?,
            min_ts: r.u64()?,
            max_ts: r.u64()?,
            high_water_ts: r.u64()?,
            min_key: r.bytes()?,
            max_key: r.bytes()?,
        };
        r.finish()?;

        let index_body = verify_crc(index_raw, path, "index block")?;
        let index = parse_index(&index_body, index_off, path)?;

        let bloom = verify_crc(bloom_raw, path, "bloom block")?;
        if BloomReader::new(&bloom).is_none() {
            return Err(corruption(path, "bloom block does not hold a filter"));
        }

        let consistent = if index.is_empty() {
            meta.entry_count == 0 && meta.distinct_keys == 0 && meta.tombstone_count == 0
        } else {
            let last = &index[index.len() - 1];
            meta.entry_count >= index.len() as u64
                && (1..=meta.entry_count).contains(&meta.distinct_keys)
                && meta.tombstone_count <= meta.entry_count
                && meta.min_key <= meta.max_key
                && last.last_key == meta.max_key
                && meta.min_ts <= meta.max_ts
                && meta.max_ts <= meta.high_water_ts
        };
        if !consistent {
            return Err(corruption(path, "footer disagrees with the index"));
        }
        Ok(Table {
            path: path.to_path_buf(),
            file,
            file_size,
            id,
            index,
            bloom,
            meta,
            cache,
            counters,
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
    pub(crate) fn file_size(&self) -> u64 {
        self.file_size
    }
    pub(crate) fn meta(&self) -> &TableMeta {
        &self.meta
    }

    /// About how many user keys of `[start, end)` the table holds, from the footer and the
    /// block index alone (no I/O): its distinct keys scaled by the share of blocks the range
    /// touches (blocks cut by the range count half). Deleted keys count until compaction drops
    /// them: the footer's tombstone count is per version and table-wide, so subtracting it
    /// could make a table sharing a file with a mass-deleted one look empty.
    pub(crate) fn estimate_keys(&self, start: &[u8], end: &[u8]) -> u64 {
        let m = &self.meta;
        if self.index.is_empty() || m.max_key.as_slice() < start || m.min_key.as_slice() >= end {
            return 0;
        }
        let keys = m.distinct_keys;
        if start <= m.min_key.as_slice() && m.max_key.as_slice() < end {
            return keys;
        }
        let n = self.index.len();
        let first = self
            .index
            .partition_point(|h| h.last_key.as_slice() < start);
        // The block holding the first key >= end may still hold keys below it.
        let after = self.index.partition_point(|h| h.last_key.as_slice() < end);
        let last = after.min(n - 1);
        let mut halves = 2 * (last + 1).saturating_sub(first) as u64;
        if start > m.min_key.as_slice() {
            halves = halves.saturating_sub(1);
        }
        if after < n {
            halves = halves.saturating_sub(1);
        }
        let scaled = u128::from(keys) * u128::from(halves.max(1)) / (2 * n as u128);
        u64::try_from(scaled).unwrap_or(u64::MAX)
    }

    fn in_key_range(&self, key: &[u8]) -> bool {
        !self.index.is_empty()
            && key >= self.meta.min_key.as_slice()
            && key <= self.meta.max_key.as_slice()
    }

    fn bloom_may_contain(&self, key: &[u8]) -> bool {
        // Validated at open; a filter that cannot be read only costs block reads.
        BloomReader::new(&self.bloom).is_none_or(|b| b.may_contain(key))
    }

    /// Whether the table may hold a version of `key`, from the key range and the bloom filter
    /// alone (no I/O). False means it certainly does not.
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        self.in_key_range(key) && self.bloom_may_contain(key)
    }

    fn block_error(&self, i: usize, m: Malformed) -> StorageError {
        let offset = self.index.get(i).map_or(0, |h| h.offset);
        corruption(
            &self.path,
            format!("data block {i} at offset {offset}: {}", m.0),
        )
    }

    /// Reads, verifies and parses data block `i`, bypassing the cache.
    fn load_block(&self, i: usize) -> Result<Block> {
        let h = &self.index[i];
        let mut raw = vec![0u8; h.len as usize];
        read_exact_at(&self.file, &mut raw, h.offset).map_err(io_err(&self.path))?;
        let what = format!("data block {i} at offset {}", h.offset);
        let body = verify_crc(raw, &self.path, &what)?;
        let after = i
            .checked_sub(1)
            .map(|p| (self.index[p].last_key.as_slice(), self.index[p].last_ts));
        Block::parse(body, after, (&h.last_key, h.last_ts)).map_err(|m| self.block_error(i, m))
    }

    /// Data block `i`, from the cache or from disk (then cached).
    fn read_block(&self, i: usize) -> Result<Arc<Block>> {
        let offset = self.index[i].offset;
        if let Some(b) = self.cache.get(self.id, offset) {
            return Ok(b);
        }
        let b = Arc::new(self.load_block(i)?);
        self.cache
            .insert(self.id, offset, Arc::clone(&b), b.charge());
        Ok(b)
    }

    /// Index of the first block whose last version is `>= (key, ts)` (or `> (key, ts)` when
    /// `strict`), i.e. the only block that can hold the first such version.
    fn seek_block(&self, key: &[u8], ts: u64, strict: bool) -> usize {
        self.index.partition_point(|h| {
            let o = cmp_internal(&h.last_key, h.last_ts, key, ts);
            o == Ordering::Less || (strict && o == Ordering::Equal)
        })
    }

    /// The newest version of `key` with `ts <= read_ts`, as `(ts, value)` (`None` value: a
    /// tombstone). Consults the key range and the bloom filter before reading any block.
    pub(crate) fn get(&self, key: &[u8], read_ts: u64) -> Result<Option<(u64, Option<Vec<u8>>)>> {
        if !self.in_key_range(key) || read_ts < self.meta.min_ts {
            return Ok(None);
        }
        let c = &self.counters;
        c.bloom_checks.fetch_add(1, AtomicOrdering::Relaxed);
        if !self.bloom_may_contain(key) {
            c.bloom_negatives.fetch_add(1, AtomicOrdering::Relaxed);
            return Ok(None);
        }
        let b = self.seek_block(key, read_ts, false);
        // Whether the version just before (key, read_ts) in table order belongs to `key`: if
        // neither it nor the one at the position does, the table holds no version of `key`.
        let mut held = b > 0 && self.index[b - 1].last_key == key;
        let mut found = None;
        if b < self.index.len() {
            let block = self.read_block(b)?;
            let mut kbuf = Vec::new();
            let at = block
                .seek(key, read_ts, false, &mut kbuf, &mut held)
                .map_err(|m| self.block_error(b, m))?;
            if let Some(d) = at
                && kbuf == key
            {
                found = Some((d.ts, block.value(&d.value)));
                held = true;
            }
        }
        if !held {
            c.bloom_false_positives
                .fetch_add(1, AtomicOrdering::Relaxed);
        }
        Ok(found)
    }

    /// A lazy iterator over the versions in `range`; blocks are read (through the cache) as it
    /// advances.
    pub(crate) fn iter(self: &Arc<Self>, range: KeyRange, dir: Direction) -> TableIter {
        TableIter {
            table: Arc::clone(self),
            range,
            dir,
            started: false,
            done: false,
            block_idx: 0,
            block: None,
            off: 0,
            key: Vec::new(),
            pending: None,
            rev: Vec::new(),
        }
    }

    /// Reads every block from disk (bypassing the cache) and checks checksums, the internal
    /// order across the whole table, the bloom filter (no key missing) and the footer's counts,
    /// key range and timestamps. Returns the entry count.
    pub(crate) fn verify(&self) -> Result<u64> {
        let bloom = BloomReader::new(&self.bloom);
        let mut count = 0u64;
        let mut tombstones = 0u64;
        let mut distinct = 0u64;
        let (mut min_ts, mut max_ts) = (u64::MAX, 0u64);
        let mut first_key: Option<Vec<u8>> = None;
        let mut prev: Option<(Vec<u8>, u64)> = None;
        for i in 0..self.index.len() {
            let block = self.load_block(i)?;
            let entries = block.decode_all().map_err(|m| self.block_error(i, m))?;
            for e in entries {
                let new_key = match &prev {
                    Some((pk, pts)) => {
                        if cmp_internal(pk, *pts, &e.key, e.ts) != Ordering::Less {
                            return Err(self.block_error(i, Malformed("entries out of order")));
                        }
                        *pk != e.key
                    }
                    None => true,
                };
                if new_key {
                    distinct += 1;
                    if bloom.is_some_and(|b| !b.may_contain(&e.key)) {
                        return Err(corruption(&self.path, "bloom filter misses a key"));
                    }
                }
                count += 1;
                tombstones += u64::from(e.value.is_none());
                min_ts = min_ts.min(e.ts);
                max_ts = max_ts.max(e.ts);
                if first_key.is_none() {
                    first_key = Some(e.key.clone());
                }
                prev = Some((e.key, e.ts));
            }
        }
        let m = &self.meta;
        let mismatch = |what: &str, footer: &dyn std::fmt::Debug, data: &dyn std::fmt::Debug| {
            corruption(
                &self.path,
                format!("footer {what} {footer:?} disagrees with the data ({data:?})"),
            )
        };
        if count != m.entry_count {
            return Err(mismatch("entry count", &m.entry_count, &count));
        }
        if tombstones != m.tombstone_count {
            return Err(mismatch("tombstone count", &m.tombstone_count, &tombstones));
        }
        if distinct != m.distinct_keys {
            return Err(mismatch("distinct keys", &m.distinct_keys, &distinct));
        }
        if let (Some(first), Some((last, _))) = (&first_key, &prev) {
            if *first != m.min_key {
                return Err(mismatch("min key", &m.min_key, first));
            }
            if *last != m.max_key {
                return Err(mismatch("max key", &m.max_key, last));
            }
            if (min_ts, max_ts) != (m.min_ts, m.max_ts) {
                return Err(mismatch(
                    "ts range",
                    &(m.min_ts, m.max_ts),
                    &(min_ts, max_ts),
                ));
            }
        }
        Ok(count)
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // The id is never reused, so these blocks can never be asked for again.
        self.cache.erase_table(self.id);
    }
}

/// Decodes and validates the index block body: handles in strictly increasing order that tile
/// the data region `[0, data_end)` exactly.
fn parse_index(body: &[u8], data_end: u64, path: &Path) -> Result<Vec<BlockHandle>> {
    let mut r = Reader {
        buf: body,
        pos: 0,
        path,
        what: "index block",
    };
    let n = r.u32()? as usize;
    let mut index: Vec<BlockHandle> = Vec::with_capacity(n.min(body.len() / 24));
    let mut expect_off = 0u64;
    for i in 0..n {
        let h = BlockHandle {
            offset: r.u64()?,
            len: r.u32()?,
            last_key: r.bytes()?,
            last_ts: r.u64()?,
        };
        if h.offset != expect_off || h.len < MIN_BLOCK_LEN {
            return Err(corruption(
                path,
                format!("index entry {i} has a bad block handle"),
            ));
        }
        if let Some(prev) = index.last()
            && cmp_internal(&prev.last_key, prev.last_ts, &h.last_key, h.last_ts) != Ordering::Less
        {
            return Err(corruption(path, format!("index entry {i} out of order")));
        }
        expect_off += u64::from(h.len);
        index.push(h);
    }
    r.finish()?;
    if expect_off != data_end {
        return Err(corruption(path, "index does not describe the data region"));
    }
    Ok(index)
}

/// Iterates one table within a key range, holding at most one block.
///
/// Forward iteration decodes the current block in place, entry by entry. Reverse iteration
/// cannot walk prefix-compressed entries backwards, so it decodes the current block into a
/// vector and pops from its end.
pub(crate) struct TableIter {
    table: Arc<Table>,
    range: KeyRange,
    dir: Direction,
    started: bool,
    done: bool,
    block_idx: usize,
    /// Forward: the current block, the offset of its next entry, and the key of the entry
    /// before that offset (the base of the next entry's shared prefix).
    block: Option<Arc<Block>>,
    off: usize,
    key: Vec<u8>,
    /// Forward: the entry the seek landed on, returned before decoding further.
    pending: Option<Entry>,
    /// Reverse: the not yet returned entries of the current block, next one last.
    rev: Vec<Entry>,
}

impl TableIter {
    fn load_forward(&mut self, i: usize) -> Result<()> {
        self.block = Some(self.table.read_block(i)?);
        self.block_idx = i;
        self.off = 0;
        self.key.clear();
        Ok(())
    }

    fn load_reverse(&mut self, i: usize) -> Result<()> {
        let block = self.table.read_block(i)?;
        self.rev = block
            .decode_all()
            .map_err(|m| self.table.block_error(i, m))?;
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
                Bound::Included(k) => Some((k.clone(), u64::MAX, false)),
                Bound::Excluded(k) => Some((k.clone(), 0, true)),
                Bound::Unbounded => None,
            },
            Direction::Reverse => match &self.range.end {
                Bound::Included(k) => Some((k.clone(), 0, true)),
                Bound::Excluded(k) => Some((k.clone(), u64::MAX, false)),
                Bound::Unbounded => None,
            },
        };
        match (self.dir, target) {
            (Direction::Forward, None) => self.load_forward(0)?,
            (Direction::Forward, Some((k, ts, strict))) => {
                let b = self.table.seek_block(&k, ts, strict);
                if b == n {
                    self.done = true;
                    return Ok(());
                }
                self.load_forward(b)?;
                let Some(block) = self.block.clone() else {
                    return Ok(());
                };
                let mut unused = false;
                let at = block
                    .seek(&k, ts, strict, &mut self.key, &mut unused)
                    .map_err(|m| self.table.block_error(b, m))?;
                match at {
                    Some(d) => {
                        self.pending = Some(Entry {
                            key: self.key.clone(),
                            ts: d.ts,
                            value: block.value(&d.value),
                        });
                        self.off = d.next;
                    }
                    // Cannot happen (the index says the block reaches the target); move on.
                    None => self.off = block.data.len(),
                }
            }
            (Direction::Reverse, None) => self.load_reverse(n - 1)?,
            (Direction::Reverse, Some((k, ts, strict))) => {
                let b = self.table.seek_block(&k, ts, strict);
                if b == n {
                    self.load_reverse(n - 1)?;
                } else {
                    self.load_reverse(b)?;
                    let keep = self.rev.partition_point(|e| {
                        let o = cmp_internal(&e.key, e.ts, &k, ts);
                        o == Ordering::Less || (strict && o == Ordering::Equal)
                    });
                    self.rev.truncate(keep);
                }
            }
        }
        Ok(())
    }

    fn next_forward(&mut self) -> Result<Option<Entry>> {
        loop {
            let e = match self.pending.take() {
                Some(e) => e,
                None => {
                    let Some(block) = &self.block else {
                        return Ok(None);
                    };
                    if block.at_end(self.off) {
                        if self.block_idx + 1 >= self.table.index.len() {
                            return Ok(None);
                        }
                        self.load_forward(self.block_idx + 1)?;
                        continue;
                    }
                    let d = block
                        .decode_at(self.off, &mut self.key)
                        .map_err(|m| self.table.block_error(self.block_idx, m))?;
                    self.off = d.next;
                    Entry {
                        key: self.key.clone(),
                        ts: d.ts,
                        value: block.value(&d.value),
                    }
                }
            };
            if !self.range.before_end(&e.key) {
                return Ok(None);
            }
            return Ok(Some(e));
        }
    }

    fn next_reverse(&mut self) -> Result<Option<Entry>> {
        loop {
            if let Some(e) = self.rev.pop() {
                if !self.range.after_start(&e.key) {
                    return Ok(None);
                }
                return Ok(Some(e));
            }
            if self.block_idx == 0 {
                return Ok(None);
            }
            self.load_reverse(self.block_idx - 1)?;
        }
    }
}

impl EntryIter for TableIter {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.done {
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            self.seek()?;
            if self.done {
                return Ok(None);
            }
        }
        let next = match self.dir {
            Direction::Forward => self.next_forward()?,
            Direction::Reverse => self.next_reverse()?,
        };
        if next.is_none() {
            // Release the block early; the iterator may live on inside a merge.
            self.done = true;
            self.block = None;
            self.rev = Vec::new();
            self.pending = None;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests;

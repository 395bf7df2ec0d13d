//! The write-ahead log: the single durability point of a shard.
//!
//! The log is a sequence of segment files (`wal-<seq>.log`, see [`super::files`]). Each holds
//! back-to-back records:
//!
//! ```text
//!   +-----------+-----------+-------------+------------------------------------------+
//!   | len u32LE | crc u32LE | stamp u64LE | payload (len bytes)                      |
//!   |           |           |             |   kind u8 = 1 Batch   commit_ts u64, ops |
//!   |           |           |             |   kind u8 = 2 Prepare txid u64, ops      |
//!   |           |           |             |   kind u8 = 3 Commit  txid u64, commit_ts|
//!   |           |           |             |   kind u8 = 4 Abort   txid u64           |
//!   |           |           |             |   kind u8 = 5 Batch   + redo             |
//!   |           |           |             |   kind u8 = 6 Prepare + redo             |
//!   |           |           |             |   kind u8 = 7 Redo    redo               |
//!   +-----------+-----------+-------------+------------------------------------------+
//!   crc = crc32c(payload, then stamp). ops = count u32, then per op: key_len u32, key,
//!   tag u8 (0 tombstone, 1 value), and for values: val_len u32, val. redo = len u32, bytes.
//!   Little-endian.
//! ```
//!
//! **Redo** is an opaque blob the engine carries for the layer above it (the B+tree indexes,
//! see `crate::index`): riding in the same record as a batch's row ops, a write's index changes
//! are exactly as durable as its rows. The engine hands redo blobs back at recovery, with their
//! log position, and keeps segments holding redo the layer above still needs (see
//! `Engine::set_redo_retain`).
//!
//! **The stamp** is the offset up to which this segment was known durable (fsynced) when the
//! record was written. Group commit writes many records between fsyncs, and after an OS crash
//! or power loss the kernel may have written those unsynced records back in any order, so
//! damage is not confined to the very last record. What separates "never acknowledged" from
//! "acknowledged and then damaged" is whether an fsync covered the bad record, and the stamps of
//! later records say exactly that.
//!
//! Replay of a segment stops at the first bad record (bad length or checksum) at offset `X`:
//! - in the **last** segment, if no later intact record (found by scanning the rest of the file
//!   for a frame whose checksum verifies) carries a stamp past `X`, no fsync ever covered `X`:
//!   it and everything after it were never acknowledged. That is a torn tail: replay stops and
//!   the caller truncates it away. Cut-off appends, zero fill and scribbled unsynced records all
//!   land here;
//! - otherwise — a later record proves `X` was durable, or the bad record is in an older segment
//!   (those were fsynced whole at rotation), or a checksum-valid payload does not decode — it is a
//!   [`StorageError::Corruption`] naming the file and offset. Nothing is skipped silently.
//!
//! A length of zero is never valid (every payload has a kind byte), which keeps zero-filled
//! tails (whose "checksum" of an empty payload would be 0 and match) from parsing as records.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files::{read_exact_at, sync_dir, wal_path, write_all_at};
use super::{Result, StorageError, WriteOp, corruption, io_err};

/// Upper bound on one record's payload. Larger batches are rejected up front; on replay a
/// larger length field can only be damage.
pub(crate) const MAX_RECORD_BYTES: usize = 1 << 30;
const HEADER_LEN: usize = 16;
/// The stamp of frames whose every predecessor is durable (manifest edits are fsynced one by
/// one), so any later intact frame proves an earlier damaged one was durable.
pub(crate) const STAMP_ALL_DURABLE: u64 = u64::MAX;

const KIND_BATCH: u8 = 1;
const KIND_PREPARE: u8 = 2;
const KIND_COMMIT: u8 = 3;
const KIND_ABORT: u8 = 4;
const KIND_BATCH_REDO: u8 = 5;
const KIND_PREPARE_REDO: u8 = 6;
const KIND_REDO: u8 = 7;

const TAG_TOMBSTONE: u8 = 0;
const TAG_VALUE: u8 = 1;

/// A decoded WAL record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WalRecord {
    /// A one-phase commit: all ops become visible at `commit_ts`. `redo` (possibly empty) is
    /// the upper layer's blob logged atomically with them.
    Batch {
        commit_ts: u64,
        ops: Vec<WriteOp>,
        redo: Vec<u8>,
    },
    /// Ops held durably under `txid`, invisible until a matching `Commit`.
    Prepare {
        txid: u64,
        ops: Vec<WriteOp>,
        redo: Vec<u8>,
    },
    /// Only an upper-layer redo blob.
    Redo { redo: Vec<u8> },
    /// The prepared ops of `txid` become visible at `commit_ts`.
    Commit { txid: u64, commit_ts: u64 },
    /// The prepared ops of `txid` are discarded.
    Abort { txid: u64 },
}

/// Builds a complete frame (header + payload) in one buffer so the append is one `write`.
struct FrameBuilder {
    buf: Vec<u8>,
}

impl FrameBuilder {
    fn new(kind: u8, payload_hint: usize) -> FrameBuilder {
        let mut buf = Vec::with_capacity(HEADER_LEN + 1 + payload_hint);
        buf.extend_from_slice(&[0u8; HEADER_LEN]);
        buf.push(kind);
        FrameBuilder { buf }
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn ops(&mut self, ops: &[WriteOp]) -> Result<()> {
        self.u32(len_u32(ops.len(), "op count")?);
        for op in ops {
            self.u32(len_u32(op.key.len(), "key length")?);
            self.buf.extend_from_slice(&op.key);
            match &op.value {
                None => self.buf.push(TAG_TOMBSTONE),
                Some(v) => {
                    self.buf.push(TAG_VALUE);
                    self.u32(len_u32(v.len(), "value length")?);
                    self.buf.extend_from_slice(v);
                }
            }
        }
        Ok(())
    }

    /// Appends a non-empty redo blob (length-prefixed); an empty one is simply absent.
    fn redo(&mut self, redo: &[u8]) -> Result<()> {
        if !redo.is_empty() {
            self.u32(len_u32(redo.len(), "redo length")?);
            self.buf.extend_from_slice(redo);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<u8>> {
        let payload_len = self.buf.len() - HEADER_LEN;
        if payload_len > MAX_RECORD_BYTES {
            return Err(StorageError::InvalidArgument(format!(
                "WAL record of {payload_len} bytes exceeds the {MAX_RECORD_BYTES}-byte limit"
            )));
        }
        // Until `stamp_frame` runs, the crc field holds the payload's crc alone, so stamping
        // under the writer lock costs a checksum of 8 bytes, not of the whole payload.
        let crc = crc32c::crc32c(&self.buf[HEADER_LEN..]);
        self.buf[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        Ok(self.buf)
    }
}

/// Completes a frame from `encode_*`: sets its stamp and the final checksum. Must be called
/// exactly once per frame, before it is written (`WalWriter::write_frame` does it).
pub(crate) fn stamp_frame(frame: &mut [u8], stamp: u64) {
    let payload_crc = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
    let crc = crc32c::crc32c_append(payload_crc, &stamp.to_le_bytes());
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    frame[8..16].copy_from_slice(&stamp.to_le_bytes());
}

fn len_u32(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| StorageError::InvalidArgument(format!("{what} {n} too large")))
}

fn ops_size_hint(ops: &[WriteOp]) -> usize {
    ops.iter()
        .map(|o| 9 + o.key.len() + o.value.as_ref().map_or(0, |v| v.len()))
        .sum::<usize>()
        + 4
}

/// A batch record; with an empty `redo` it is the original (kind 1) record.
pub(crate) fn encode_batch(commit_ts: u64, ops: &[WriteOp], redo: &[u8]) -> Result<Vec<u8>> {
    let kind = if redo.is_empty() {
        KIND_BATCH
    } else {
        KIND_BATCH_REDO
    };
    let mut f = FrameBuilder::new(kind, 12 + ops_size_hint(ops) + redo.len());
    f.u64(commit_ts);
    f.ops(ops)?;
    f.redo(redo)?;
    f.finish()
}

pub(crate) fn encode_prepare(txid: u64, ops: &[WriteOp], redo: &[u8]) -> Result<Vec<u8>> {
    let kind = if redo.is_empty() {
        KIND_PREPARE
    } else {
        KIND_PREPARE_REDO
    };
    let mut f = FrameBuilder::new(kind, 12 + ops_size_hint(ops) + redo.len());
    f.u64(txid);
    f.ops(ops)?;
    f.redo(redo)?;
    f.finish()
}

pub(crate) fn encode_redo(redo: &[u8]) -> Result<Vec<u8>> {
    let mut f = FrameBuilder::new(KIND_REDO, 4 + redo.len());
    f.buf
        .extend_from_slice(&len_u32(redo.len(), "redo length")?.to_le_bytes());
    f.buf.extend_from_slice(redo);
    f.finish()
}

pub(crate) fn encode_commit(txid: u64, commit_ts: u64) -> Result<Vec<u8>> {
    let mut f = FrameBuilder::new(KIND_COMMIT, 16);
    f.u64(txid);
    f.u64(commit_ts);
    f.finish()
}

pub(crate) fn encode_abort(txid: u64) -> Result<Vec<u8>> {
    let mut f = FrameBuilder::new(KIND_ABORT, 8);
    f.u64(txid);
    f.finish()
}

/// Bounds-checked little-endian reader over a log payload (WAL records and manifest edits).
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }

    /// A length-prefixed (u32) byte string.
    pub(crate) fn bytes(&mut self) -> std::result::Result<Vec<u8>, String> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    pub(crate) fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("payload truncated at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(crate) fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn ops(&mut self) -> std::result::Result<Vec<WriteOp>, String> {
        let n = self.u32()? as usize;
        // Each op needs at least 5 bytes, so a count larger than that is damage, and bounding
        // the allocation by it keeps a bad count from reserving gigabytes.
        let mut ops = Vec::with_capacity(n.min((self.buf.len() - self.pos) / 5));
        for _ in 0..n {
            let klen = self.u32()? as usize;
            let key = self.take(klen)?.to_vec();
            let value = match self.u8()? {
                TAG_TOMBSTONE => None,
                TAG_VALUE => {
                    let vlen = self.u32()? as usize;
                    Some(self.take(vlen)?.to_vec())
                }
                t => return Err(format!("unknown op tag {t}")),
            };
            ops.push(WriteOp { key, value });
        }
        Ok(ops)
    }
}

/// Decodes a checksum-verified payload.
pub(crate) fn decode(payload: &[u8]) -> std::result::Result<WalRecord, String> {
    let mut c = Cursor::new(payload);
    let rec = match c.u8()? {
        KIND_BATCH => WalRecord::Batch {
            commit_ts: c.u64()?,
            ops: c.ops()?,
            redo: Vec::new(),
        },
        KIND_PREPARE => WalRecord::Prepare {
            txid: c.u64()?,
            ops: c.ops()?,
            redo: Vec::new(),
        },
        KIND_BATCH_REDO => WalRecord::Batch {
            commit_ts: c.u64()?,
            ops: c.ops()?,
            redo: c.bytes()?,
        },
        KIND_PREPARE_REDO => WalRecord::Prepare {
            txid: c.u64()?,
            ops: c.ops()?,
            redo: c.bytes()?,
        },
        KIND_REDO => WalRecord::Redo { redo: c.bytes()? },
        KIND_COMMIT => WalRecord::Commit {
            txid: c.u64()?,
            commit_ts: c.u64()?,
        },
        KIND_ABORT => WalRecord::Abort { txid: c.u64()? },
        k => return Err(format!("unknown record kind {k}")),
    };
    if c.pos != payload.len() {
        return Err(format!(
            "{} trailing bytes after record",
            payload.len() - c.pos
        ));
    }
    Ok(rec)
}

/// The append handle of the active segment. Owned by the engine's writer lock, so appends are
/// serialized and records never interleave.
pub(crate) struct WalWriter {
    /// Shared so a group-commit leader can fsync it without holding the writer lock.
    file: Arc<File>,
    path: PathBuf,
    seq: u64,
    len: u64,
}

impl WalWriter {
    /// Creates segment `seq` (which must not exist) and makes its directory entry durable, so a
    /// record later fsynced into it cannot vanish with the entry.
    ///
    /// The file is extended to `prealloc` bytes (zeros, sparse) and that size made durable up
    /// front, so the `fdatasync` of each group commit need not also journal a new file size.
    /// Replay treats the zeros after the last record as never-written space.
    pub(crate) fn create(dir: &Path, seq: u64, prealloc: u64) -> Result<WalWriter> {
        let path = wal_path(dir, seq);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if prealloc > 0 {
            file.set_len(prealloc).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        sync_dir(dir)?;
        tracing::debug!(path = %path.display(), "created WAL segment");
        Ok(WalWriter {
            file: Arc::new(file),
            path,
            seq,
            len: 0,
        })
    }

    /// Reopens existing segment `seq`, already cut back to its last good record at `len`,
    /// for further appends.
    pub(crate) fn open_append(dir: &Path, seq: u64, len: u64, prealloc: u64) -> Result<WalWriter> {
        let path = wal_path(dir, seq);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if prealloc > len {
            file.set_len(prealloc).map_err(io_err(&path))?;
        }
        file.sync_all().map_err(io_err(&path))?;
        Ok(WalWriter {
            file: Arc::new(file),
            path,
            seq,
            len,
        })
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The segment's file, for an fsync done outside the writer lock.
    pub(crate) fn handle(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Stamps a frame from `encode_*` with `durable` (the offset up to which this segment is
    /// known fsynced) and writes it without syncing. On error the segment may hold a partial
    /// frame, so the caller must stop appending to it.
    pub(crate) fn write_frame(&mut self, frame: &mut [u8], stamp: u64) -> Result<()> {
        stamp_frame(frame, stamp);
        write_all_at(&self.file, frame, self.len).map_err(io_err(&self.path))?;
        self.len += frame.len() as u64;
        Ok(())
    }

    /// Cuts the preallocated space off a segment that is being closed and makes its records and
    /// its exact length durable. Once a newer segment exists, replay expects this one to end at
    /// its last record (anything else there is damage to fsynced data).
    pub(crate) fn seal(&mut self) -> Result<()> {
        self.file.set_len(self.len).map_err(io_err(&self.path))?;
        self.file.sync_all().map_err(io_err(&self.path))
    }

    /// Makes everything written so far durable regardless of the sync mode. Used when older
    /// segments are about to be deleted, which must never depend on an unsynced write.
    pub(crate) fn force_sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(io_err(&self.path))
    }

    /// Appends one frame and makes it durable (the engine instead syncs through group
    /// commit; see `engine`).
    #[cfg(test)]
    pub(crate) fn append(&mut self, frame: &[u8]) -> Result<()> {
        // Everything before this record was fsynced by the previous append.
        let durable = self.len;
        self.write_frame(&mut frame.to_vec(), durable)?;
        self.force_sync()
    }

    /// Best-effort durability on close even in [`super::SyncMode::None`].
    pub(crate) fn sync_on_close(&mut self) {
        if let Err(e) = self.file.sync_data() {
            tracing::warn!(path = %self.path.display(), error = %e, "WAL sync on close failed");
        }
    }
}

/// How replay of one segment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplayOutcome {
    /// Offset just past the last good record.
    pub valid_len: u64,
    /// Size of the file when replay began.
    pub file_len: u64,
    /// Why the bytes past `valid_len` were judged a torn tail, if there were any.
    pub torn: Option<String>,
}

/// Replays one segment, feeding each good record to `apply` in order, with the offset just
/// past the record (its end).
///
/// `is_last` must be true only for the newest segment: only there may a torn tail exist.
pub(crate) fn replay_segment(
    path: &Path,
    is_last: bool,
    mut apply: impl FnMut(u64, WalRecord) -> Result<()>,
) -> Result<ReplayOutcome> {
    replay_frames(path, is_last, |off, payload| {
        // The checksum matched, so these are the bytes that were written: failing to decode
        // them is never a torn write.
        let rec = decode(payload).map_err(|d| {
            corruption(path, format!("undecodable WAL record at offset {off}: {d}"))
        })?;
        apply(off + (HEADER_LEN + payload.len()) as u64, rec)
    })
}

/// Encodes `payload` as one complete checksummed frame stamped [`STAMP_ALL_DURABLE`] (the
/// framing shared by WAL and manifest; manifest edits are fsynced one at a time).
pub(crate) fn frame(payload: &[u8]) -> Result<Vec<u8>> {
    if payload.is_empty() || payload.len() > MAX_RECORD_BYTES {
        return Err(StorageError::InvalidArgument(format!(
            "log record of {} bytes is empty or over the {MAX_RECORD_BYTES}-byte limit",
            payload.len()
        )));
    }
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    buf.extend_from_slice(&[0u8; 8]);
    buf.extend_from_slice(payload);
    stamp_frame(&mut buf, STAMP_ALL_DURABLE);
    Ok(buf)
}

/// Checks the frame starting at `buf[0]` (with at most `buf.len()` bytes available): its
/// payload length and stamp if it is complete and its checksum verifies.
fn intact_frame(buf: &[u8]) -> Option<(usize, u64)> {
    let header = buf.get(..HEADER_LEN)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    if len == 0 || len > MAX_RECORD_BYTES {
        return None;
    }
    let payload = buf.get(HEADER_LEN..HEADER_LEN + len)?;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let stamp_bytes = &header[8..16];
    let want = crc32c::crc32c_append(crc32c::crc32c(payload), stamp_bytes);
    (want == crc).then(|| {
        (
            len,
            u64::from_le_bytes(stamp_bytes.try_into().expect("8 bytes")),
        )
    })
}

/// After a bad record at `bad_at`, looks for an intact later frame whose stamp proves that an
/// fsync covered `bad_at`; returns its offset. The scan tries every byte offset (a damaged
/// length field gives no way to skip ahead), so it runs only on this error path.
fn later_proof(file: &File, path: &Path, bad_at: u64, file_len: u64) -> Result<Option<u64>> {
    let rest_len = usize::try_from(file_len - bad_at).unwrap_or(usize::MAX);
    let mut rest = vec![0u8; rest_len];
    read_exact_at(file, &mut rest, bad_at).map_err(io_err(path))?;
    for start in 1..rest.len().saturating_sub(HEADER_LEN - 1) {
        if let Some((_, stamp)) = intact_frame(&rest[start..])
            && stamp > bad_at
        {
            return Ok(Some(bad_at + start as u64));
        }
    }
    Ok(None)
}

/// Reads the checksummed frames of one log file (a WAL segment or a manifest), handing each
/// verified payload and its offset to `apply`, with the torn-tail rules described above.
pub(crate) fn replay_frames(
    path: &Path,
    is_last: bool,
    mut apply: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<ReplayOutcome> {
    let file = File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut off = 0u64;
    let mut header = [0u8; HEADER_LEN];
    let mut payload = Vec::new();

    'records: while off < file_len {
        let remaining = file_len - off;
        let reason = 'record: {
            if remaining < HEADER_LEN as u64 {
                break 'record "incomplete record header".to_owned();
            }
            reader.read_exact(&mut header).map_err(io_err(path))?;
            let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as u64;
            let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
            let end = HEADER_LEN as u64 + len;
            if len == 0 || len > MAX_RECORD_BYTES as u64 {
                break 'record format!("impossible record length {len}");
            }
            if end > remaining {
                break 'record format!("record length {len} runs past end of file");
            }
            payload.resize(len as usize, 0);
            reader.read_exact(&mut payload).map_err(io_err(path))?;
            if crc32c::crc32c_append(crc32c::crc32c(&payload), &header[8..16]) != crc {
                break 'record "checksum mismatch".to_owned();
            }
            apply(off, &payload)?;
            off += end;
            continue 'records;
        };

        if !is_last {
            return Err(corruption(
                path,
                format!(
                    "bad log record at offset {off}: {reason} (this segment was fsynced whole \
                     before a newer one began)"
                ),
            ));
        }
        if zero_from(reader.get_ref(), path, off, file_len)? {
            // Preallocated space, or space the filesystem extended but never filled.
            return Ok(ReplayOutcome {
                valid_len: off,
                file_len,
                torn: Some(ZERO_FILL.to_owned()),
            });
        }
        if let Some(proof) = later_proof(reader.get_ref(), path, off, file_len)? {
            return Err(corruption(
                path,
                format!(
                    "bad log record at offset {off}: {reason}; the intact record at offset \
                     {proof} was written after an fsync covered it, so acknowledged data is \
                     damaged"
                ),
            ));
        }
        return Ok(ReplayOutcome {
            valid_len: off,
            file_len,
            torn: Some(reason),
        });
    }
    Ok(ReplayOutcome {
        valid_len: off,
        file_len,
        torn: None,
    })
}

/// The torn-tail reason for a tail of zeros: preallocated space, not damage.
pub(crate) const ZERO_FILL: &str = "zero fill";

/// True if every byte in `[from, to)` is zero.
fn zero_from(file: &File, path: &Path, from: u64, to: u64) -> Result<bool> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = from;
    while pos < to {
        let n = ((to - pos) as usize).min(buf.len());
        read_exact_at(file, &mut buf[..n], pos).map_err(io_err(path))?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// Cuts a segment back to `len` bytes and makes the new length durable, so the torn bytes can
/// never be mistaken for data after a later append or crash.
pub(crate) fn truncate_segment(path: &Path, len: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    file.set_len(len).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample_records() -> Vec<WalRecord> {
        vec![
            WalRecord::Batch {
                commit_ts: 7,
                ops: vec![
                    WriteOp::put(b"k1".to_vec(), b"v1".to_vec()),
                    WriteOp::delete(b"k2".to_vec()),
                    WriteOp::put(Vec::new(), Vec::new()),
                ],
                redo: Vec::new(),
            },
            WalRecord::Prepare {
                txid: 99,
                ops: vec![WriteOp::put(b"p".to_vec(), vec![0xAB; 300])],
                redo: Vec::new(),
            },
            WalRecord::Batch {
                commit_ts: 8,
                ops: vec![WriteOp::put(b"r".to_vec(), b"row".to_vec())],
                redo: b"index entry".to_vec(),
            },
            WalRecord::Prepare {
                txid: 100,
                ops: vec![WriteOp::delete(b"q".to_vec())],
                redo: vec![0; 70],
            },
            WalRecord::Redo {
                redo: b"gc".to_vec(),
            },
            WalRecord::Commit {
                txid: 99,
                commit_ts: 12,
            },
            WalRecord::Abort { txid: 5 },
            WalRecord::Batch {
                commit_ts: u64::MAX,
                ops: vec![],
                redo: Vec::new(),
            },
        ]
    }

    fn encode(rec: &WalRecord) -> Vec<u8> {
        match rec {
            WalRecord::Batch {
                commit_ts,
                ops,
                redo,
            } => encode_batch(*commit_ts, ops, redo),
            WalRecord::Prepare { txid, ops, redo } => encode_prepare(*txid, ops, redo),
            WalRecord::Redo { redo } => encode_redo(redo),
            WalRecord::Commit { txid, commit_ts } => encode_commit(*txid, *commit_ts),
            WalRecord::Abort { txid } => encode_abort(*txid),
        }
        .unwrap()
    }

    fn write_segment(dir: &Path, seq: u64, recs: &[WalRecord]) -> (PathBuf, Vec<u64>) {
        let mut w = WalWriter::create(dir, seq, 0).unwrap();
        let mut offsets = Vec::new();
        for r in recs {
            offsets.push(w.len());
            w.append(&encode(r)).unwrap();
        }
        (w.path().to_path_buf(), offsets)
    }

    fn replay(path: &Path, is_last: bool) -> Result<(Vec<WalRecord>, ReplayOutcome)> {
        let mut got = Vec::new();
        let out = replay_segment(path, is_last, |_, r| {
            got.push(r);
            Ok(())
        })?;
        Ok((got, out))
    }

    #[test]
    fn records_encode_and_decode() {
        for rec in sample_records() {
            let frame = encode(&rec);
            let len = u32::from_le_bytes(frame[0..4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(frame[4..8].try_into().unwrap());
            assert_eq!(len, frame.len() - HEADER_LEN);
            assert_eq!(crc, crc32c::crc32c(&frame[HEADER_LEN..]));
            assert_eq!(decode(&frame[HEADER_LEN..]).unwrap(), rec);
        }
        assert!(decode(&[]).is_err());
        assert!(decode(&[9]).is_err());
        let mut frame = encode(&WalRecord::Abort { txid: 1 });
        frame.push(0);
        assert!(decode(&frame[HEADER_LEN..]).is_err());
    }

    #[test]
    fn segment_replays_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let recs = sample_records();
        let (path, _) = write_segment(dir.path(), 1, &recs);
        let (got, out) = replay(&path, true).unwrap();
        assert_eq!(got, recs);
        assert_eq!(out.torn, None);
        assert_eq!(out.valid_len, out.file_len);
    }

    #[test]
    fn torn_tail_is_reported_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let recs = sample_records();
        let (path, offsets) = write_segment(dir.path(), 1, &recs);
        let full = std::fs::metadata(&path).unwrap().len();
        let last = *offsets.last().unwrap();
        // Every way of cutting the last record short is a torn tail.
        for cut in [last + 1, last + 5, last + 8, full - 1] {
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(cut).unwrap();
            let (got, out) = replay(&path, true).unwrap();
            assert_eq!(got, recs[..recs.len() - 1], "cut at {cut}");
            assert_eq!(out.valid_len, last);
            assert!(out.torn.is_some());
            truncate_segment(&path, out.valid_len).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().len(), last);
            let (again, out) = replay(&path, true).unwrap();
            assert_eq!(again.len(), recs.len() - 1);
            assert_eq!(out.torn, None);
            // Restore the full record for the next cut.
            let mut f = OpenOptions::new().append(true).open(&path).unwrap();
            let mut again = encode(recs.last().unwrap());
            stamp_frame(&mut again, last);
            f.write_all(&again).unwrap();
        }
    }

    #[test]
    fn zero_filled_and_scribbled_tails_are_torn() {
        let dir = tempfile::tempdir().unwrap();
        let recs = sample_records();
        let (path, _) = write_segment(dir.path(), 1, &recs);
        let good = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
        let (got, out) = replay(&path, true).unwrap();
        assert_eq!(got, recs);
        assert_eq!(out.valid_len, good);
        assert!(out.torn.is_some());

        // A full-length final record whose bytes never all reached the disk.
        truncate_segment(&path, good).unwrap();
        let mut frame = encode(&recs[0]);
        stamp_frame(&mut frame, good);
        let n = frame.len();
        frame[n - 1] ^= 0xFF;
        f.write_all(&frame).unwrap();
        let (got, out) = replay(&path, true).unwrap();
        assert_eq!(got, recs);
        assert_eq!(out.valid_len, good);
    }

    #[test]
    fn mid_log_corruption_is_an_error_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let recs = sample_records();
        let (path, offsets) = write_segment(dir.path(), 1, &recs);
        let mut bytes = std::fs::read(&path).unwrap();
        let victim = offsets[1] as usize + HEADER_LEN + 3;
        bytes[victim] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        for is_last in [true, false] {
            let err = replay(&path, is_last).unwrap_err();
            match &err {
                StorageError::Corruption { path: p, detail } => {
                    assert_eq!(p, &path);
                    assert!(
                        detail.contains(&format!("offset {}", offsets[1])),
                        "{detail}"
                    );
                }
                other => panic!("expected corruption, got {other:?}"),
            }
            assert!(err.to_string().contains("wal-00000000000000000001.log"));
        }
    }

    #[test]
    fn damaged_tail_of_an_older_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let recs = sample_records();
        let (path, offsets) = write_segment(dir.path(), 1, &recs);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(offsets[4] + 3).unwrap();
        assert!(matches!(
            replay(&path, false),
            Err(StorageError::Corruption { .. })
        ));
        assert!(replay(&path, true).unwrap().1.torn.is_some());
    }

    #[test]
    fn preallocated_zero_tail_is_unused_space_until_the_segment_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let recs = sample_records();
        let mut w = WalWriter::create(dir.path(), 1, 1 << 20).unwrap();
        for r in &recs {
            let durable = w.len();
            w.write_frame(&mut encode(r), durable).unwrap();
        }
        let written = w.len();
        let path = w.path().to_path_buf();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        // As the newest segment, the zeros after the records are simply unused.
        let (got, out) = replay(&path, true).unwrap();
        assert_eq!((got, out.valid_len), (recs.clone(), written));
        assert_eq!(out.torn.as_deref(), Some(ZERO_FILL));
        // Unsealed, an older segment with a zero tail would be damage; sealed, it ends exactly
        // at its last record.
        assert!(replay(&path, false).is_err());
        w.seal().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), written);
        let (got, out) = replay(&path, false).unwrap();
        assert_eq!((got, out.torn), (recs, None));
    }

    #[test]
    fn checksum_valid_but_undecodable_is_an_error_even_at_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = wal_path(dir.path(), 1);
        std::fs::write(&path, frame(&[42u8, 1, 2, 3]).unwrap()).unwrap();
        assert!(matches!(
            replay(&path, true),
            Err(StorageError::Corruption { .. })
        ));
    }

    /// Group commit: records 2 and 3 were written after the last fsync (their stamps stop at
    /// record 2), so damage to record 2 with record 3 intact is an unacknowledged tail after
    /// an OS crash, while damage to record 1 is proven durable by record 2's stamp.
    #[test]
    fn stamps_separate_an_unsynced_tail_from_damaged_durable_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = wal_path(dir.path(), 1);
        let recs = sample_records();
        let mut w = WalWriter::create(dir.path(), 1, 0).unwrap();
        let mut offsets = Vec::new();
        let mut durable = 0;
        for (i, r) in recs.iter().take(4).enumerate() {
            offsets.push(w.len());
            w.write_frame(&mut encode(r), durable).unwrap();
            if i < 2 {
                w.force_sync().unwrap();
                durable = w.len();
            }
        }
        drop(w);
        let good = std::fs::read(&path).unwrap();

        let mut bytes = good.clone();
        bytes[offsets[2] as usize + HEADER_LEN] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let (got, out) = replay(&path, true).unwrap();
        assert_eq!(got, recs[..2]);
        assert_eq!(out.valid_len, offsets[2]);
        assert!(out.torn.is_some());

        let mut bytes = good.clone();
        bytes[offsets[1] as usize + HEADER_LEN] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let err = replay(&path, true).unwrap_err().to_string();
        assert!(err.contains(&format!("offset {}", offsets[1])), "{err}");
        assert!(err.contains(&format!("offset {}", offsets[2])), "{err}");
    }
}

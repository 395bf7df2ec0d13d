//! The secondary indexes of one shard: B+trees kept in step with the rows, logged in the
//! shard's WAL, checkpointed, and read with MVCC checks.
//!
//! ```text
//!  Apply / Prepare ──▶ write lock ──▶ entries of the new rows inserted into the trees
//!                        │            (pages dirty in the buffer pool, never written yet)
//!                        ├──▶ one WAL record: row ops + redo {index, insert/delete, entry}
//!                        └──▶ lock released as soon as the record is written; fsync shared
//!  checkpoint: WAL synced ─▶ every tree writes its dirty pages atomically at position P
//!              ─▶ engine.set_redo_retain(P): older WAL may now be deleted
//!  open: trees at their checkpoints ─▶ engine replays the redo logged after them
//! ```
//!
//! **Entries.** An entry is `encode_key_tuple(index columns) ‖ encoded primary key`, with no
//! timestamp: a tree holds every entry any row version may need. A reader takes the primary
//! key from the entry, reads the row at its snapshot, and keeps the row only if that version
//! still produces exactly this entry. So entries of uncommitted or prepared writes (their rows
//! are invisible), of aborted writes, and of versions a snapshot does not see are all skipped,
//! and an entry that exists without its row is merely garbage, never a wrong answer.
//!
//! **Why logical redo is enough.** Trees are never written in place except by an atomic
//! checkpoint (no-steal buffer pool plus a double-write file, see `crate::index`), so after a
//! crash each tree is exactly its last checkpoint — structurally whole — and replaying the
//! logged inserts and deletes after that position, in log order, rebuilds it. The write lock
//! is held from the first tree change to the record's write, so the log order of two records
//! touching one entry is the order their changes were made. A change made but never logged
//! (the record failed, or the process died before writing it) can only be an insert for a row
//! that was then never written, or a garbage-collection delete of a dead entry: both harmless
//! under the rule above. Every checkpoint first makes the WAL durable, so pages never hold
//! changes the log could lose.
//!
//! **Garbage collection.** An update or delete leaves the old version's entry in place (older
//! snapshots may still need it) and queues it as a candidate, stamped with the commit time
//! that made it dead. Any later write that produces the same entry again cancels the
//! candidate. Once the GC watermark reaches the stamp, no snapshot can see the version that
//! needed it and no newer version produces it, so it is deleted (logged as redo). Candidates
//! are logged with the write that made them (so a crash replays them) and saved with every
//! checkpoint (so the log before it may go). The one gap: a prepared transaction still in
//! doubt across a crash no longer knows which entries it replaced, which leaves those as
//! harmless garbage.
//!
//! **Unique indexes** are checked by the coordinator, which asks every shard for rows whose
//! latest committed version holds a value (`UniqueCheck`): uniqueness is global while rows
//! are placed by primary key. Writing statements are serialized by the coordinator today,
//! so a check and the write it guards cannot interleave with another writer.

use crate::error::{SqlError, SqlResult, sqlstate};
use crate::index::{BTree, BufferPool, IndexError};
use crate::rpc::{IndexScanRequest, IndexSpec, IndexStats, PoolStats, RowWrite, UniqueProbe};
use crate::shard::as_ref_bound;
use crate::shard::index_build::EntrySorter;
use crate::shard::keys;
use crate::shard::storage_error;
use crate::sql::expr::EvalContext;
use crate::storage::{
    Engine, REDO_SEGMENT_SHIFT, StorageError, WriteBatch, WriteOp, prefix_successor,
};
use crate::types::keycode::{
    decode_key_value, decode_key_value_desc, encode_key_value, encode_key_value_desc,
};
use crate::types::{Row, Value, row};
use parking_lot::{Mutex, MutexGuard, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions, TryLockError};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Sizing of a shard's indexes.
#[derive(Debug, Clone, Copy)]
pub struct IndexOptions {
    /// Bytes of the shard's buffer pool, shared by all its indexes.
    pub pool_bytes: usize,
    pub page_size: usize,
    /// Memory for sorting a new index's entries; larger builds spill sorted runs to disk.
    pub build_run_bytes: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            pool_bytes: 16 << 20,
            page_size: 8192,
            build_run_bytes: 32 << 20,
        }
    }
}

const INDEX_DIR: &str = "indexes";
const LOCK_FILE: &str = "LOCK";
const REDO_DELETE: u8 = 0;
const REDO_INSERT: u8 = 1;
const REDO_DEAD: u8 = 2;
const GC_FILE: &str = "gc-candidates";
/// Start of the error for a request naming an index the shard does not have (dropped after
/// the statement was planned); the session re-plans on it.
pub const MISSING_INDEX: &str = "index with id";
const GC_MAGIC: &[u8; 8] = b"SDBGC001";
/// Test-only setting: milliseconds each shard pauses at the start of an index build, so
/// tests can observe that a build blocks writers and not readers.
pub const BUILD_PAUSE_ENV: &str = "SHARDDB_TEST_INDEX_BUILD_PAUSE_MS";
/// Entries examined per unique probe page.
const PROBE_PAGE: usize = 256;

pub(crate) fn index_error(e: IndexError) -> SqlError {
    match &e {
        IndexError::Corruption { .. } => SqlError::new(sqlstate::DATA_CORRUPTED, e.to_string()),
        IndexError::Io { .. } => SqlError::new(sqlstate::IO_ERROR, e.to_string()),
        IndexError::KeyTooLarge { .. } => {
            SqlError::new(sqlstate::PROGRAM_LIMIT_EXCEEDED, e.to_string())
        }
        IndexError::PoolExhausted { .. } => SqlError::new(sqlstate::OUT_OF_MEMORY, e.to_string()),
        IndexError::InvalidArgument(_) => SqlError::internal(e.to_string()),
    }
}

fn index_file(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("idx-{id:010}.btree"))
}

struct OpenIndex {
    spec: IndexSpec,
    tree: BTree,
}

/// What a logged change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Insert,
    Delete,
    /// No version committed at or after `since` produces the entry: a GC candidate (the
    /// trees do not change; logged so candidates survive restarts).
    Dead {
        since: u64,
    },
}

/// One change to one tree, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    index_id: u32,
    kind: Kind,
    entry: Vec<u8>,
}

fn encode_redo(changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + changes.iter().map(|c| 17 + c.entry.len()).sum::<usize>());
    out.extend_from_slice(&(changes.len() as u32).to_le_bytes());
    for c in changes {
        out.extend_from_slice(&c.index_id.to_le_bytes());
        match c.kind {
            Kind::Insert => out.push(REDO_INSERT),
            Kind::Delete => out.push(REDO_DELETE),
            Kind::Dead { since } => {
                out.push(REDO_DEAD);
                out.extend_from_slice(&since.to_le_bytes());
            }
        }
        out.extend_from_slice(&(c.entry.len() as u32).to_le_bytes());
        out.extend_from_slice(&c.entry);
    }
    out
}

fn decode_redo(mut b: &[u8]) -> Result<Vec<Change>, String> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if b.len() < n {
            return Err("index redo truncated".to_owned());
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Ok(head)
    }
    let u32_of = |s: &[u8]| u32::from_le_bytes(s.try_into().expect("4 bytes"));
    let n = u32_of(take(&mut b, 4)?) as usize;
    let mut out = Vec::with_capacity(n.min(b.len() / 9));
    for _ in 0..n {
        let index_id = u32_of(take(&mut b, 4)?);
        let kind = match take(&mut b, 1)?[0] {
            REDO_INSERT => Kind::Insert,
            REDO_DELETE => Kind::Delete,
            REDO_DEAD => Kind::Dead {
                since: u64::from_le_bytes(take(&mut b, 8)?.try_into().expect("8 bytes")),
            },
            t => return Err(format!("unknown index redo op {t}")),
        };
        let len = u32_of(take(&mut b, 4)?) as usize;
        let entry = take(&mut b, len)?.to_vec();
        out.push(Change {
            index_id,
            kind,
            entry,
        });
    }
    if !b.is_empty() {
        return Err("trailing bytes after index redo".to_owned());
    }
    Ok(out)
}

/// How an index read sees a row: by engine key, the value the reader's view holds (engine
/// versions at its timestamp, possibly under intents).
pub type RowReader<'a> = dyn Fn(&[u8]) -> SqlResult<Option<Vec<u8>>> + 'a;

/// One page of an index scan: the rows, their engine keys, and where to resume.
pub type IndexScanPage = (Vec<Row>, Vec<Vec<u8>>, Option<Vec<u8>>);

/// The table id of an engine row key, if it is one.
fn table_of(key: &[u8]) -> Option<u32> {
    if key.len() >= 5 && key[0] == keys::ROW_PREFIX {
        Some(u32::from_be_bytes(key[1..5].try_into().expect("4 bytes")))
    } else {
        None
    }
}

/// The entry `spec` holds for `row` stored under engine key `row_key`.
fn entry_for(spec: &IndexSpec, row_key: &[u8], row: &Row) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + row_key.len());
    key_prefix_into(spec, row, &mut out);
    out.extend_from_slice(&row_key[5..]);
    out
}

/// An entry over the tree's key limit, in PostgreSQL's words (SQLSTATE 54000).
fn entry_too_large(spec: &IndexSpec, len: usize, max: usize) -> SqlError {
    SqlError::new(
        sqlstate::PROGRAM_LIMIT_EXCEEDED,
        format!(
            "index row size {len} exceeds btree maximum {max} for index \"{}\"",
            spec.name
        ),
    )
    .with_hint(
        "Values larger than a quarter of an index page cannot be indexed; index a shorter \
         column instead.",
    )
}

/// The index-column part of an entry.
fn key_prefix_into(spec: &IndexSpec, row: &Row, out: &mut Vec<u8>) {
    for c in &spec.columns {
        // A row shorter than its table reads its missing trailing columns as NULL.
        let v = row.get(c.ordinal).unwrap_or(&Value::Null);
        if c.desc {
            encode_key_value_desc(v, c.ty, out);
        } else {
            encode_key_value(v, c.ty, out);
        }
    }
}

/// The engine key of the row an entry points at.
fn row_key_of(spec: &IndexSpec, entry: &[u8]) -> SqlResult<Vec<u8>> {
    let mut rest = entry;
    for c in &spec.columns {
        if c.desc {
            decode_key_value_desc(&mut rest, c.ty)?;
        } else {
            decode_key_value(&mut rest, c.ty)?;
        }
    }
    Ok(keys::row_key(spec.table_id, rest))
}

/// An entry of one index: (index id, entry bytes).
type IndexEntry = (u32, Vec<u8>);

/// Prepared writes' index work, settled at commit or abort.
#[derive(Default)]
struct PreparedWork {
    /// Entries of the versions the transaction replaces.
    replaced: Vec<(u32, Vec<u8>)>,
    /// Entries the transaction's versions produce (inserted, or already present — in which
    /// case their GC candidacy was cancelled).
    produced: Vec<(u32, Vec<u8>)>,
}

#[derive(Default)]
struct GcState {
    /// (index, entry) -> commit timestamp from which no new version produces it.
    candidates: HashMap<(u32, Vec<u8>), u64>,
    prepared: HashMap<u64, PreparedWork>,
    /// Redo position the persisted candidate file was written at (`None`: never saved):
    /// recovery replays the candidate bookkeeping of later records only, so the WAL after it
    /// is retained like the WAL after a tree checkpoint.
    saved_at: Option<u64>,
}

impl GcState {
    /// The bookkeeping a logged change implies (also replayed at recovery).
    fn note(&mut self, c: &Change) {
        match c.kind {
            // Insert: produced again, so live — no pending candidate may delete it.
            // Delete: collected.
            Kind::Insert | Kind::Delete => {
                self.candidates.remove(&(c.index_id, c.entry.clone()));
            }
            Kind::Dead { since } => {
                let at = self
                    .candidates
                    .entry((c.index_id, c.entry.clone()))
                    .or_insert(since);
                *at = (*at).max(since);
            }
        }
    }
}

/// Writes the candidate set durably (write, fsync, rename, directory fsync).
fn save_candidates(dir: &Path, gc: &GcState, pos: u64) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(GC_MAGIC);
    out.extend_from_slice(&pos.to_le_bytes());
    out.extend_from_slice(&(gc.candidates.len() as u64).to_le_bytes());
    for ((id, entry), since) in &gc.candidates {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&since.to_le_bytes());
        out.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        out.extend_from_slice(entry);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(format!("{GC_FILE}.tmp"));
    {
        use std::io::Write;
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(GC_FILE))?;
    File::open(dir)?.sync_all()
}

/// Deletes the candidate file durably (the last index is gone).
fn remove_candidates(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(GC_FILE)) {
        Ok(()) => File::open(dir)?.sync_all(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reads the candidate file; `None` if there is none.
fn load_candidates(dir: &Path) -> SqlResult<Option<GcState>> {
    let path = dir.join(GC_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(storage_error(StorageError::Io { path, source: e })),
    };
    let bad = |d: &str| SqlError::new(sqlstate::DATA_CORRUPTED, format!("{}: {d}", path.display()));
    if bytes.len() < 28 || &bytes[..8] != GC_MAGIC {
        return Err(bad("not a candidate file"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(bad("checksum mismatch"));
    }
    let u64_at = |o: usize| u64::from_le_bytes(body[o..o + 8].try_into().expect("8 bytes"));
    let mut gc = GcState {
        saved_at: Some(u64_at(8)),
        ..GcState::default()
    };
    let n = u64_at(16);
    let mut o = 24;
    for _ in 0..n {
        if o + 16 > body.len() {
            return Err(bad("truncated"));
        }
        let id = u32::from_le_bytes(body[o..o + 4].try_into().expect("4 bytes"));
        let since = u64_at(o + 4);
        let len = u32::from_le_bytes(body[o + 12..o + 16].try_into().expect("4 bytes")) as usize;
        o += 16;
        if o + len > body.len() {
            return Err(bad("truncated"));
        }
        gc.candidates.insert((id, body[o..o + len].to_vec()), since);
        o += len;
    }
    if o != body.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(Some(gc))
}

pub struct ShardIndexes {
    dir: PathBuf,
    pool: Arc<BufferPool>,
    trees: RwLock<BTreeMap<u32, Arc<OpenIndex>>>,
    /// Held from the first tree change of a write to the write of its WAL record, and by
    /// checkpoints (see the module comment).
    write: Mutex<()>,
    gc: Mutex<GcState>,
    build_run_bytes: usize,
    _lock: File,
}

impl ShardIndexes {
    /// Opens the index directory of the shard in `shard_dir` (creating it) and every index in
    /// it, each at its last checkpoint. Returns the indexes and the redo position to replay
    /// from (`u64::MAX` with no indexes).
    pub fn open(shard_dir: &Path, opts: IndexOptions) -> SqlResult<(ShardIndexes, u64)> {
        let dir = shard_dir.join(INDEX_DIR);
        let io = |e: std::io::Error| {
            storage_error(StorageError::Io {
                path: dir.clone(),
                source: e,
            })
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(storage_error(StorageError::Locked { path: dir.clone() }));
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let pool = BufferPool::new(opts.pool_bytes, opts.page_size);
        let mut trees = BTreeMap::new();
        let mut after = u64::MAX;
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                // A build or candidate save cut short by a crash.
                std::fs::remove_file(entry.path()).map_err(io)?;
                continue;
            }
            let Some(id) = name
                .strip_prefix("idx-")
                .and_then(|r| r.strip_suffix(".btree"))
                .and_then(|r| r.parse::<u32>().ok())
            else {
                continue;
            };
            let tree = BTree::open(&entry.path(), &pool).map_err(index_error)?;
            let spec: IndexSpec = serde_json::from_slice(&tree.meta()).map_err(|e| {
                SqlError::new(
                    sqlstate::DATA_CORRUPTED,
                    format!("index file {} has an unreadable definition: {e}", name),
                )
            })?;
            if spec.index_id != id {
                return Err(SqlError::new(
                    sqlstate::DATA_CORRUPTED,
                    format!("index file {name} holds index {}", spec.index_id),
                ));
            }
            after = after.min(tree.checkpoint_lsn());
            trees.insert(id, Arc::new(OpenIndex { spec, tree }));
        }
        let mut gc = load_candidates(&dir)?.unwrap_or_default();
        if trees.is_empty() {
            // Candidates of dropped indexes only; their WAL need not be kept, and the file
            // must not make a future index's recovery reach back to it.
            gc = GcState::default();
            remove_candidates(&dir).map_err(io)?;
        } else if let Some(at) = gc.saved_at {
            after = after.min(at);
        }
        Ok((
            ShardIndexes {
                dir,
                pool,
                trees: RwLock::new(trees),
                write: Mutex::new(()),
                gc: Mutex::new(gc),
                build_run_bytes: opts.build_run_bytes,
                _lock: lock,
            },
            after,
        ))
    }

    /// Applies one redo blob found in the WAL at `pos` during recovery, to every tree whose
    /// checkpoint is older. Checkpoints when the pool fills with dirty pages: the pages then
    /// hold changes logged at or before `pos`.
    pub fn replay(&self, pos: u64, blob: &[u8]) -> Result<(), StorageError> {
        let changes = decode_redo(blob).map_err(|d| StorageError::Corruption {
            path: self.dir.clone(),
            detail: format!("undecodable index redo at WAL position {pos:#x}: {d}"),
        })?;
        let trees = self.trees.read();
        {
            let mut gc = self.gc.lock();
            if gc.saved_at.is_none_or(|at| pos > at) {
                for c in &changes {
                    gc.note(c);
                }
            }
        }
        let recovery_error = |path: &Path, what: &str, e: String| StorageError::Corruption {
            path: path.to_path_buf(),
            detail: format!("{what} during recovery: {e}"),
        };
        for c in &changes {
            // A record may hold more changes than the pool can keep dirty: checkpoint as at
            // run time. Up to `pos - 1`, so this record counts as not yet applied and is
            // replayed whole after a crash (applying a change twice is harmless).
            if self.pool.dirty_pages() * 2 > self.pool.capacity_pages() {
                self.recovery_checkpoint(&trees, pos - 1)?;
            }
            if let Some(t) = trees.get(&c.index_id)
                && pos > t.tree.checkpoint_lsn()
            {
                let r = match c.kind {
                    Kind::Insert => t.tree.insert(&c.entry),
                    Kind::Delete => t.tree.delete(&c.entry),
                    Kind::Dead { .. } => continue,
                };
                r.map_err(|e| {
                    recovery_error(t.tree.path(), "replaying index redo", e.to_string())
                })?;
            }
        }
        if self.pool.dirty_pages() * 2 > self.pool.capacity_pages() {
            self.recovery_checkpoint(&trees, pos)?;
        }
        Ok(())
    }

    /// A checkpoint while the engine is still replaying (records up to `at` are applied; the
    /// engine has fsynced the log it replays). Candidates are saved first, as always.
    fn recovery_checkpoint(
        &self,
        trees: &BTreeMap<u32, Arc<OpenIndex>>,
        at: u64,
    ) -> Result<(), StorageError> {
        {
            let mut gc = self.gc.lock();
            // Only a state at least as new as the saved one may replace it.
            if gc.saved_at.is_none_or(|s| at >= s) {
                save_candidates(&self.dir, &gc, at).map_err(|e| StorageError::Io {
                    path: self.dir.join(GC_FILE),
                    source: e,
                })?;
                gc.saved_at = Some(at);
            }
        }
        for t in trees.values() {
            let at = at.max(t.tree.checkpoint_lsn());
            t.tree
                .checkpoint(at)
                .map_err(|e| StorageError::Corruption {
                    path: t.tree.path().to_path_buf(),
                    detail: format!("checkpoint during recovery: {e}"),
                })?;
        }
        Ok(())
    }

    fn has_indexes_on(&self, ops: &[WriteOp]) -> bool {
        let trees = self.trees.read();
        if trees.is_empty() {
            return false;
        }
        ops.iter()
            .filter_map(|o| table_of(&o.key))
            .any(|t| trees.values().any(|i| i.spec.table_id == t))
    }

    /// The tree changes a write set makes, and the entries of the versions it replaces.
    fn changes_for(
        &self,
        engine: &Engine,
        ops: &[WriteOp],
    ) -> SqlResult<(Vec<Change>, Vec<IndexEntry>)> {
        let trees = self.trees.read();
        let mut changes = Vec::new();
        let mut replaced = Vec::new();
        for op in ops {
            let Some(table) = table_of(&op.key) else {
                continue;
            };
            let indexes: Vec<&Arc<OpenIndex>> = trees
                .values()
                .filter(|i| i.spec.table_id == table)
                .collect();
            if indexes.is_empty() {
                continue;
            }
            let new_row = match &op.value {
                Some(v) => Some(row::decode_row(v)?),
                None => None,
            };
            let old_row = match engine.get(&op.key, u64::MAX).map_err(storage_error)? {
                Some(v) => Some(row::decode_row(&v)?),
                None => None,
            };
            for i in indexes {
                let new_entry = new_row.as_ref().map(|r| entry_for(&i.spec, &op.key, r));
                let old_entry = old_row.as_ref().map(|r| entry_for(&i.spec, &op.key, r));
                if let Some(e) = &new_entry {
                    let max = BTree::max_key_len(self.pool.page_size());
                    if e.len() > max {
                        return Err(entry_too_large(&i.spec, e.len(), max));
                    }
                    changes.push(Change {
                        index_id: i.spec.index_id,
                        kind: Kind::Insert,
                        entry: e.clone(),
                    });
                }
                if let Some(o) = old_entry
                    && new_entry.as_ref() != Some(&o)
                {
                    replaced.push((i.spec.index_id, o));
                }
            }
        }
        Ok((changes, replaced))
    }

    /// Makes room in the pool and bounds the retained WAL before a write: checkpoints when
    /// more than half the pool is dirty or the WAL has moved two segments past the oldest
    /// checkpoint. Called with the write lock held.
    fn maybe_checkpoint(&self, engine: &Engine, _held: &MutexGuard<'_, ()>) -> SqlResult<()> {
        let dirty = self.pool.dirty_pages() * 2 > self.pool.capacity_pages();
        if dirty || self.wal_behind(engine) {
            self.checkpoint_locked(engine)?;
        }
        Ok(())
    }

    /// True when the WAL has moved two segments past where recovery would start: time to
    /// checkpoint so the engine may delete the segments in between.
    fn wal_behind(&self, engine: &Engine) -> bool {
        let oldest = self.retain_position();
        oldest != u64::MAX && engine.redo_segment() >= (oldest >> REDO_SEGMENT_SHIFT) + 2
    }

    /// Writes for tables without indexes still move the WAL; checkpoint now and then so
    /// indexes on idle tables do not pin it forever.
    fn checkpoint_if_behind(&self, engine: &Engine) -> SqlResult<()> {
        if self.trees.read().is_empty() || !self.wal_behind(engine) {
            return Ok(());
        }
        let held = self.write.lock();
        let r = if self.wal_behind(engine) {
            self.checkpoint_locked(engine)
        } else {
            Ok(())
        };
        drop(held);
        r
    }

    /// Writes every tree's dirty pages at the current log position, then lets the engine
    /// delete the WAL before it. Caller holds the write lock, so no tree change is waiting
    /// for its record.
    fn checkpoint_locked(&self, engine: &Engine) -> SqlResult<()> {
        let pos = engine.redo_position();
        // The log before the pages: every change in them is in a record at or before `pos`.
        engine.sync_wal().map_err(storage_error)?;
        // Candidates before trees: a crash between leaves the trees older, and recovery
        // replays from the older of the two.
        {
            let mut gc = self.gc.lock();
            save_candidates(&self.dir, &gc, pos).map_err(|e| {
                storage_error(StorageError::Io {
                    path: self.dir.join(GC_FILE),
                    source: e,
                })
            })?;
            gc.saved_at = Some(pos);
        }
        let trees: Vec<Arc<OpenIndex>> = self.trees.read().values().cloned().collect();
        for t in trees {
            t.tree
                .checkpoint(pos.max(t.tree.checkpoint_lsn()))
                .map_err(index_error)?;
        }
        engine.set_redo_retain(self.retain_position());
        Ok(())
    }

    /// Where recovery would start replaying: the oldest tree checkpoint or candidate save;
    /// `u64::MAX` with no indexes.
    fn retain_position(&self) -> u64 {
        let trees = self.oldest_checkpoint();
        if trees == u64::MAX {
            return u64::MAX;
        }
        trees.min(self.gc.lock().saved_at.unwrap_or(u64::MAX))
    }

    /// Checkpoints every index (a clean shutdown, or an admin request).
    pub fn checkpoint(&self, engine: &Engine) -> SqlResult<()> {
        let held = self.write.lock();
        let r = self.checkpoint_locked(engine);
        drop(held);
        r
    }

    /// Applies changes to the trees (the caller logs them next). A statement may change more
    /// pages than the pool can hold dirty, so this checkpoints whenever half the pool is dirty
    /// — also between changes not logged yet, which is safe: an unlogged change is an insert
    /// whose row is not written yet (harmless if it never is; replayed again if it is) or a
    /// deletion of an entry that is dead already.
    fn apply_changes(&self, engine: &Engine, changes: &[Change]) -> SqlResult<()> {
        let trees: BTreeMap<u32, Arc<OpenIndex>> = self.trees.read().clone();
        for c in changes {
            if self.pool.dirty_pages() * 2 > self.pool.capacity_pages() {
                self.checkpoint_locked(engine)?;
            }
            if let Some(t) = trees.get(&c.index_id) {
                match c.kind {
                    Kind::Insert => t.tree.insert(&c.entry),
                    Kind::Delete => t.tree.delete(&c.entry),
                    Kind::Dead { .. } => continue,
                }
                .map_err(index_error)?;
            }
        }
        Ok(())
    }

    /// Records the GC bookkeeping of logged changes.
    fn note(&self, changes: &[Change]) {
        let mut gc = self.gc.lock();
        for c in changes {
            gc.note(c);
        }
    }

    fn dead(entries: Vec<(u32, Vec<u8>)>, since: u64) -> impl Iterator<Item = Change> {
        entries.into_iter().map(move |(index_id, entry)| Change {
            index_id,
            kind: Kind::Dead { since },
            entry,
        })
    }

    /// Logs entries as GC candidates from `since` on (after a two-phase commit or abort).
    fn log_dead(&self, engine: &Engine, entries: Vec<(u32, Vec<u8>)>, since: u64) -> SqlResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let changes: Vec<Change> = Self::dead(entries, since).collect();
        let mut held = Some(self.write.lock());
        engine
            .log_redo(&encode_redo(&changes), &mut |_| {
                self.note(&changes);
                drop(held.take())
            })
            .map_err(storage_error)
    }

    /// One-phase commit of `writes` with their index changes in the same WAL record.
    pub fn apply(&self, engine: &Engine, commit_ts: u64, writes: Vec<RowWrite>) -> SqlResult<()> {
        let batch = WriteBatch {
            commit_ts,
            ops: to_ops(writes),
        };
        if !self.has_indexes_on(&batch.ops) {
            // Before the write: a failed checkpoint must fail a write that did not happen,
            // never report a committed one as failed.
            self.checkpoint_if_behind(engine)?;
            return engine.apply(&batch).map_err(storage_error);
        }
        let mut held = Some(self.write.lock());
        self.maybe_checkpoint(engine, held.as_ref().expect("held"))?;
        let (mut changes, replaced) = self.changes_for(engine, &batch.ops)?;
        changes.extend(Self::dead(replaced, commit_ts));
        self.apply_changes(engine, &changes)?;
        let redo = encode_redo(&changes);
        // The bookkeeping only once the record is written: a write that fails must not leave
        // a candidate for an entry its row still needs.
        engine
            .apply_with_redo(&batch, &redo, &mut |_| {
                self.note(&changes);
                drop(held.take())
            })
            .map_err(storage_error)?;
        Ok(())
    }

    /// First phase of two-phase commit: the entries go in now (invisible until the rows are),
    /// logged with the prepare record.
    pub fn prepare(&self, engine: &Engine, txid: u64, writes: Vec<RowWrite>) -> SqlResult<()> {
        let ops = to_ops(writes);
        if !self.has_indexes_on(&ops) {
            self.checkpoint_if_behind(engine)?;
            return engine.prepare(txid, ops).map_err(storage_error);
        }
        let mut held = Some(self.write.lock());
        self.maybe_checkpoint(engine, held.as_ref().expect("held"))?;
        let (changes, replaced) = self.changes_for(engine, &ops)?;
        self.apply_changes(engine, &changes)?;
        let produced = changes
            .iter()
            .map(|c| (c.index_id, c.entry.clone()))
            .collect();
        let redo = encode_redo(&changes);
        engine
            .prepare_with_redo(txid, ops, &redo, &mut |_| {
                self.note(&changes);
                drop(held.take())
            })
            .map_err(storage_error)?;
        self.gc
            .lock()
            .prepared
            .insert(txid, PreparedWork { replaced, produced });
        Ok(())
    }

    pub fn commit_prepared(&self, engine: &Engine, txid: u64, commit_ts: u64) -> SqlResult<()> {
        engine
            .commit_prepared(txid, commit_ts)
            .map_err(storage_error)?;
        let work = self.gc.lock().prepared.remove(&txid);
        match work {
            Some(w) => self.log_dead(engine, w.replaced, commit_ts),
            None => Ok(()),
        }
    }

    pub fn abort_prepared(&self, engine: &Engine, txid: u64) -> SqlResult<()> {
        engine.abort_prepared(txid).map_err(storage_error)?;
        let work = self.gc.lock().prepared.remove(&txid);
        let Some(w) = work else { return Ok(()) };
        // What the aborted versions produced is dead from now on, unless the committed
        // version produces it too.
        let trees = self.trees.read().clone();
        let mut dead = Vec::new();
        for (id, entry) in w.produced {
            let Some(t) = trees.get(&id) else { continue };
            if self
                .confirmed_row(engine, &t.spec, &entry, u64::MAX)?
                .is_none()
            {
                dead.push((id, entry));
            }
        }
        self.log_dead(engine, dead, engine.max_committed_ts())
    }

    /// Deletes the candidates the watermark has passed (see the module comment).
    pub fn collect_garbage(&self, engine: &Engine, watermark: u64) -> SqlResult<()> {
        let mut held = Some(self.write.lock());
        // Candidates leave the set only once their deletion is logged (the Delete's
        // bookkeeping removes them), so a failure or crash before that keeps them.
        let due: Vec<(u32, Vec<u8>)> = self
            .gc
            .lock()
            .candidates
            .iter()
            .filter(|(_, ts)| **ts <= watermark)
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        self.maybe_checkpoint(engine, held.as_ref().expect("held"))?;
        // A backstop for the bookkeeping: never delete an entry the row's latest committed
        // version still produces.
        let trees = self.trees.read().clone();
        let mut changes = Vec::with_capacity(due.len());
        for (index_id, entry) in due {
            let Some(t) = trees.get(&index_id) else {
                continue;
            };
            if self
                .confirmed_row(engine, &t.spec, &entry, u64::MAX)?
                .is_some()
            {
                // Live after all: not a candidate.
                self.gc.lock().candidates.remove(&(index_id, entry));
                continue;
            }
            changes.push(Change {
                index_id,
                kind: Kind::Delete,
                entry,
            });
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.apply_changes(engine, &changes)?;
        engine
            .log_redo(&encode_redo(&changes), &mut |_| {
                self.note(&changes);
                drop(held.take())
            })
            .map_err(storage_error)?;
        Ok(())
    }

    /// Builds an index from the table's rows visible at `read_ts` by bulk loading the sorted
    /// entries; from then on writes maintain it.
    pub fn create(&self, engine: &Engine, spec: IndexSpec, read_ts: u64) -> SqlResult<()> {
        let held = self.write.lock();
        if let Some(existing) = self.trees.read().get(&spec.index_id) {
            if existing.spec == spec {
                return Ok(());
            }
            return Err(SqlError::internal(format!(
                "index id {} already exists with another definition",
                spec.index_id
            )));
        }
        // Pin the log from here: this index's first changes are logged after this position.
        let start = engine.pin_redo_position();
        if self.trees.read().is_empty() {
            // The first index: no candidate state may reach back before it.
            let mut gc = self.gc.lock();
            *gc = GcState::default();
            remove_candidates(&self.dir).map_err(|e| {
                storage_error(StorageError::Io {
                    path: self.dir.join(GC_FILE),
                    source: e,
                })
            })?;
        }
        let result = match self.build(engine, &spec, read_ts, start) {
            Ok(tree) => {
                self.trees
                    .write()
                    .insert(spec.index_id, Arc::new(OpenIndex { spec, tree }));
                Ok(())
            }
            Err(e) => {
                // Unpin: nothing of this index is in the log.
                engine.set_redo_retain(self.retain_position());
                Err(e)
            }
        };
        drop(held);
        result
    }

    /// Scans, sorts and bulk-loads a new index's entries (see [`ShardIndexes::create`]).
    fn build(
        &self,
        engine: &Engine,
        spec: &IndexSpec,
        read_ts: u64,
        start: u64,
    ) -> SqlResult<BTree> {
        if let Some(ms) = std::env::var(BUILD_PAUSE_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            // Test-only: makes a build long enough for tests to observe what it blocks.
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let max = BTree::max_key_len(self.pool.page_size());
        let io = |e: std::io::Error| {
            storage_error(StorageError::Io {
                path: self.dir.clone(),
                source: e,
            })
        };
        let mut entries = EntrySorter::new(&self.dir, spec.index_id, self.build_run_bytes);
        let prefix = keys::table_prefix(spec.table_id);
        let end = keys::table_end(spec.table_id);
        let mut from = Bound::Included(prefix);
        let mut seen = 0u64;
        loop {
            let page = engine
                .scan(
                    as_ref_bound(&from),
                    Bound::Excluded(end.as_slice()),
                    read_ts,
                    1024,
                )
                .map_err(storage_error)?;
            let done = page.len() < 1024;
            for (k, v) in &page {
                let r = row::decode_row(v)?;
                let e = entry_for(spec, k, &r);
                if e.len() > max {
                    return Err(entry_too_large(spec, e.len(), max));
                }
                entries.push(e).map_err(io)?;
            }
            seen += page.len() as u64;
            if seen % (128 * 1024) < page.len() as u64 {
                tracing::info!(index = %spec.name, rows = seen, "building index: reading rows");
            }
            match page.into_iter().last() {
                Some((k, _)) if !done => from = Bound::Excluded(k),
                _ => break,
            }
        }
        tracing::info!(
            index = %spec.name,
            rows = seen,
            spilled_runs = entries.runs(),
            "building index: loading sorted entries"
        );
        let sorted = entries.finish().map_err(io)?;
        let dir = self.dir.clone();
        let sorted = sorted.map(|r| {
            r.map_err(|e| IndexError::Io {
                path: dir.clone(),
                source: e,
            })
        });
        let meta = serde_json::to_vec(&spec).map_err(|e| SqlError::internal(e.to_string()))?;
        let path = index_file(&self.dir, spec.index_id);
        let tree =
            BTree::bulk_load(&path, &self.pool, &meta, start, sorted).map_err(index_error)?;
        tracing::info!(index = %spec.name, pages = tree.stats().pages, "index built");
        Ok(tree)
    }

    fn oldest_checkpoint(&self) -> u64 {
        self.trees
            .read()
            .values()
            .map(|t| t.tree.checkpoint_lsn())
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Drops an index (its file is deleted); unknown ids are ignored.
    pub fn drop_index(&self, engine: &Engine, index_id: u32) -> SqlResult<()> {
        let held = self.write.lock();
        let removed = self.trees.write().remove(&index_id);
        if let Some(t) = removed {
            let name = t.spec.name.clone();
            match Arc::try_unwrap(t) {
                Ok(open) => open.tree.destroy().map_err(index_error)?,
                Err(shared) => {
                    // A reader still holds it: delete the file now; frames go with the last
                    // reference.
                    let path = shared.tree.path().to_path_buf();
                    let mut dw = path.clone().into_os_string();
                    dw.push(".dw");
                    let _ = std::fs::remove_file(PathBuf::from(dw));
                    std::fs::remove_file(&path)
                        .map_err(|e| storage_error(StorageError::Io { path, source: e }))?;
                }
            }
            // The deletion must be durable before the WAL it needed may go: a file coming
            // back after a power loss would want redo that no longer exists.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| {
                    storage_error(StorageError::Io {
                        path: self.dir.clone(),
                        source: e,
                    })
                })?;
            {
                let last = self.trees.read().is_empty();
                let mut gc = self.gc.lock();
                gc.candidates.retain(|(id, _), _| *id != index_id);
                if last {
                    *gc = GcState::default();
                    remove_candidates(&self.dir).map_err(|e| {
                        storage_error(StorageError::Io {
                            path: self.dir.join(GC_FILE),
                            source: e,
                        })
                    })?;
                }
            }
            tracing::info!(index = %name, "index dropped");
        }
        engine.set_redo_retain(self.retain_position());
        drop(held);
        Ok(())
    }

    /// Drops every index not in `keep`.
    pub fn retain(&self, engine: &Engine, keep: &[u32]) -> SqlResult<()> {
        let ids: Vec<u32> = self.trees.read().keys().copied().collect();
        for id in ids {
            if !keep.contains(&id) {
                tracing::warn!(index_id = id, "dropping an index the catalog does not know");
                self.drop_index(engine, id)?;
            }
        }
        Ok(())
    }

    fn tree(&self, index_id: u32) -> SqlResult<Arc<OpenIndex>> {
        self.trees.read().get(&index_id).cloned().ok_or_else(|| {
            SqlError::new(
                sqlstate::UNDEFINED_OBJECT,
                format!("{MISSING_INDEX} {index_id} does not exist on this shard"),
            )
        })
    }

    /// Rows through an index (see `IndexScanRequest`), with their engine keys and where to
    /// resume, each read through `read` (the reader's view). `overlay` lists
    /// the intents the reader sees on the index's table: their entries are not in the tree
    /// yet (entries go in at commit), so they are merged in here.
    pub fn scan(
        &self,
        req: &IndexScanRequest,
        read: &RowReader<'_>,
        overlay: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> SqlResult<IndexScanPage> {
        let t = self.tree(req.index_id)?;
        let limit = req.limit.max(1);
        let mut entries = t
            .tree
            .scan(
                as_ref_bound(&req.start),
                as_ref_bound(&req.end),
                req.reverse,
                limit,
            )
            .map_err(index_error)?;
        let resume_after = if entries.len() >= limit {
            entries.last().cloned()
        } else {
            None
        };
        if !overlay.is_empty() {
            // Intent entries within the bounds and within this page (the next page, which
            // resumes after the last tree entry, takes the rest).
            let in_page = |e: &Vec<u8>| match &resume_after {
                None => true,
                Some(last) if req.reverse => e >= last,
                Some(last) => e <= last,
            };
            let bounds = (as_ref_bound(&req.start), as_ref_bound(&req.end));
            for (key, value) in overlay {
                let Some(v) = value else { continue };
                let r = row::decode_row(v)?;
                let e = entry_for(&t.spec, key, &r);
                if std::ops::RangeBounds::<[u8]>::contains(&bounds, e.as_slice()) && in_page(&e) {
                    entries.push(e);
                }
            }
            entries.sort();
            entries.dedup();
            if req.reverse {
                entries.reverse();
            }
        }
        let ctx = EvalContext::empty();
        let mut rows = Vec::new();
        let mut keys = Vec::new();
        for e in &entries {
            let row_key = row_key_of(&t.spec, e)?;
            let Some(bytes) = read(&row_key)? else {
                continue;
            };
            let r = row::decode_row(&bytes)?;
            // The version read must be one that produces this entry (see the module comment).
            if entry_for(&t.spec, &row_key, &r) != *e {
                continue;
            }
            if let Some(f) = &req.filter
                && f.eval(&r, &ctx)? != Value::Bool(true)
            {
                continue;
            }
            rows.push(r);
            keys.push(row_key);
        }
        Ok((rows, keys, resume_after))
    }

    /// The index entries a row version holds in this shard's indexes on its table, checked
    /// against the tree's entry size limit (54000), so an oversized value fails the statement
    /// that writes it rather than its commit.
    pub fn entries_of(
        &self,
        row_key: &[u8],
        value: Option<&[u8]>,
    ) -> SqlResult<Vec<(u32, Vec<u8>)>> {
        let (Some(table), Some(value)) = (table_of(row_key), value) else {
            return Ok(Vec::new());
        };
        let trees = self.trees.read();
        let mut out = Vec::new();
        let mut decoded = None;
        for i in trees.values().filter(|i| i.spec.table_id == table) {
            let r = match &decoded {
                Some(r) => r,
                None => decoded.insert(row::decode_row(value)?),
            };
            let e = entry_for(&i.spec, row_key, r);
            let max = BTree::max_key_len(self.pool.page_size());
            if e.len() > max {
                return Err(entry_too_large(&i.spec, e.len(), max));
            }
            out.push((i.spec.index_id, e));
        }
        Ok(out)
    }

    /// The table an index of this shard belongs to.
    pub fn table_of_index(&self, index_id: u32) -> Option<u32> {
        self.trees.read().get(&index_id).map(|t| t.spec.table_id)
    }

    /// The row an entry points at, as of `read_ts`, if that version produces this entry.
    fn confirmed_row(
        &self,
        engine: &Engine,
        spec: &IndexSpec,
        entry: &[u8],
        read_ts: u64,
    ) -> SqlResult<Option<Row>> {
        let row_key = row_key_of(spec, entry)?;
        let Some(bytes) = engine.get(&row_key, read_ts).map_err(storage_error)? else {
            return Ok(None);
        };
        let r = row::decode_row(&bytes)?;
        Ok((entry_for(spec, &row_key, &r) == entry).then_some(r))
    }

    /// Rows holding each probe's values in their newest version as `read` sees it (the
    /// newest committed version, or the checking transaction's own intent); `overlay` is that
    /// transaction's intents on the table, whose entries are not in the tree yet.
    pub fn unique_check(
        &self,
        index_id: u32,
        probes: Vec<UniqueProbe>,
        read: &RowReader<'_>,
        overlay: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> SqlResult<Vec<(usize, Vec<u8>)>> {
        let t = self.tree(index_id)?;
        let mut own_entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (key, value) in overlay {
            if let Some(v) = value {
                let r = row::decode_row(v)?;
                own_entries.push((entry_for(&t.spec, key, &r), key.clone()));
            }
        }
        let confirmed = |e: &[u8]| -> SqlResult<Option<Vec<u8>>> {
            let row_key = row_key_of(&t.spec, e)?;
            let Some(bytes) = read(&row_key)? else {
                return Ok(None);
            };
            let r = row::decode_row(&bytes)?;
            Ok((entry_for(&t.spec, &row_key, &r) == e).then_some(row_key))
        };
        let mut hits = Vec::new();
        for (i, p) in probes.iter().enumerate() {
            let mut found: Vec<Vec<u8>> = own_entries
                .iter()
                .filter(|(e, _)| e.starts_with(&p.key))
                .map(|(_, k)| k.clone())
                .collect();
            let end = prefix_successor(&p.key);
            let mut start = Bound::Included(p.key.clone());
            loop {
                let end_b = match &end {
                    Some(e) => Bound::Excluded(e.as_slice()),
                    None => Bound::Unbounded,
                };
                let entries = t
                    .tree
                    .scan(as_ref_bound(&start), end_b, false, PROBE_PAGE)
                    .map_err(index_error)?;
                for e in &entries {
                    if let Some(k) = confirmed(e)? {
                        found.push(k);
                    }
                }
                match entries.last() {
                    Some(last) if entries.len() >= PROBE_PAGE => {
                        start = Bound::Excluded(last.clone())
                    }
                    _ => break,
                }
            }
            found.sort();
            found.dedup();
            hits.extend(found.into_iter().map(|k| (i, k)));
        }
        Ok(hits)
    }

    fn stats_of(&self, t: &OpenIndex, check: bool) -> IndexStats {
        let (s, check_error) = if check {
            match t.tree.check() {
                Ok(s) => (s, None),
                Err(e) => (t.tree.stats(), Some(e.to_string())),
            }
        } else {
            (t.tree.stats(), None)
        };
        IndexStats {
            index_id: t.spec.index_id,
            table_id: t.spec.table_id,
            name: t.spec.name.clone(),
            entries: s.entries,
            height: s.height,
            pages: s.pages,
            leaf_pages: s.leaf_pages,
            dirty_pages: t.tree.dirty_pages() as u64,
            file_bytes: s.file_bytes,
            checkpoint_lsn: t.tree.checkpoint_lsn(),
            check_error,
        }
    }

    /// Sizes of every index; with `check`, also the invariant checker's verdict.
    pub fn stats(&self, check: bool) -> Vec<IndexStats> {
        let trees: Vec<Arc<OpenIndex>> = self.trees.read().values().cloned().collect();
        trees.iter().map(|t| self.stats_of(t, check)).collect()
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }
}

pub(crate) fn to_ops(writes: Vec<RowWrite>) -> Vec<WriteOp> {
    writes
        .into_iter()
        .map(|w| WriteOp {
            key: w.key,
            value: w.value,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redo_round_trips_and_rejects_damage() {
        let changes = vec![
            Change {
                index_id: 7,
                kind: Kind::Insert,
                entry: b"abc".to_vec(),
            },
            Change {
                index_id: 9,
                kind: Kind::Delete,
                entry: Vec::new(),
            },
            Change {
                index_id: 9,
                kind: Kind::Dead { since: 77 },
                entry: b"x".to_vec(),
            },
        ];
        let blob = encode_redo(&changes);
        assert_eq!(decode_redo(&blob).unwrap(), changes);
        for cut in 0..blob.len() {
            assert!(decode_redo(&blob[..cut]).is_err());
        }
        let mut bad = blob.clone();
        bad[8] = 9;
        assert!(decode_redo(&bad).is_err());
    }
}

//! The manifest: which SSTables are live, at which level, and which WAL segments they replace.
//!
//! Flushes and compactions change the set of tables; a crash in the middle of either must leave
//! the engine in the old state or the new one, never a mix. The manifest makes each change one
//! atomic record:
//!
//! ```text
//!   CURRENT                 "MANIFEST-<n:020>\n", replaced by write-tmp + fsync + rename
//!   MANIFEST-<n:020>        frames (same framing and torn-tail rules as the WAL), each one edit:
//!     edit = count u32, then per change:
//!       1 AddTable    level u32 | id u64 | size u64 | min_key | max_key | min_ts u64 | max_ts u64
//!       2 RemoveTable id u64
//!       3 LogNumber   seg u64        WAL segments with seq < seg are in tables: never replay
//!       4 NextFile    id u64         table ids below this were handed out
//!       5 HighWater   ts u64         highest commit timestamp ever flushed: survives even
//!                                    when compaction garbage-collects every version
//!     (keys are len u32 + bytes; integers little-endian)
//! ```
//!
//! The first record of every manifest is a snapshot of the whole state, so a manifest can be
//! read on its own. On open the engine writes a fresh manifest with one snapshot record, points
//! CURRENT at it, and deletes the old one; a long-running engine does the same once its
//! manifest grows past [`ROLL_BYTES`].
//!
//! Invariants:
//! - An edit is durable (fsynced) before anything depends on it: a compaction's input files and
//!   a flush's WAL segments are deleted only after the edit that retires them is durable, and a
//!   table is only named in an edit after its file is durable under its final name.
//! - Consequently a torn last record can only be an edit whose effects never happened, and
//!   dropping it is safe; a bad record anywhere else is corruption naming the manifest.
//! - CURRENT always names a complete manifest: the new manifest is fsynced before the rename.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::files::{sync_dir, tmp_path};
use super::wal::{Cursor, frame, replay_frames, truncate_segment};
use super::{Result, corruption, io_err};

/// Name of the pointer file.
pub(crate) const CURRENT: &str = "CURRENT";
/// A manifest past this size is rewritten as a single snapshot.
pub(crate) const ROLL_BYTES: u64 = 4 * 1024 * 1024;

const ADD_TABLE: u8 = 1;
const REMOVE_TABLE: u8 = 2;
const LOG_NUMBER: u8 = 3;
const NEXT_FILE: u8 = 4;
const HIGH_WATER: u8 = 5;

/// What the manifest records about one live table: enough to place it in a level and to know
/// its key range without opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableInfo {
    pub level: u32,
    pub id: u64,
    pub size: u64,
    pub min_key: Vec<u8>,
    pub max_key: Vec<u8>,
    pub min_ts: u64,
    pub max_ts: u64,
}

/// One change within an edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    AddTable(TableInfo),
    RemoveTable { id: u64 },
    LogNumber(u64),
    NextFile(u64),
    HighWater(u64),
}

/// The state a manifest describes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ManifestState {
    pub tables: BTreeMap<u64, TableInfo>,
    /// WAL segments with a smaller sequence number are fully contained in tables.
    pub log_number: u64,
    /// The next unused table id (table ids and manifest numbers share this counter).
    pub next_file: u64,
    /// The highest commit timestamp any flush has written.
    pub high_water: u64,
}

impl ManifestState {
    fn apply(&mut self, path: &Path, change: Change) -> Result<()> {
        match change {
            Change::AddTable(t) => {
                if self.tables.insert(t.id, t.clone()).is_some() {
                    return Err(corruption(path, format!("table {} added twice", t.id)));
                }
                self.next_file = self.next_file.max(t.id.saturating_add(1));
            }
            Change::RemoveTable { id } => {
                if self.tables.remove(&id).is_none() {
                    return Err(corruption(
                        path,
                        format!("removal of table {id}, which is not live"),
                    ));
                }
            }
            // Never moves backwards, so replaying an older snapshot value is harmless.
            Change::LogNumber(n) => self.log_number = self.log_number.max(n),
            Change::NextFile(n) => self.next_file = self.next_file.max(n),
            Change::HighWater(ts) => self.high_water = self.high_water.max(ts),
        }
        Ok(())
    }

    /// The changes that rebuild this state from nothing.
    fn snapshot(&self) -> Vec<Change> {
        let mut out: Vec<Change> = self
            .tables
            .values()
            .cloned()
            .map(Change::AddTable)
            .collect();
        out.push(Change::LogNumber(self.log_number));
        out.push(Change::NextFile(self.next_file));
        out.push(Change::HighWater(self.high_water));
        out
    }
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
    buf.extend_from_slice(b);
}

pub(crate) fn encode_edit(changes: &[Change]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64 * changes.len() + 4);
    buf.extend_from_slice(&(changes.len() as u32).to_le_bytes());
    for c in changes {
        match c {
            Change::AddTable(t) => {
                buf.push(ADD_TABLE);
                buf.extend_from_slice(&t.level.to_le_bytes());
                buf.extend_from_slice(&t.id.to_le_bytes());
                buf.extend_from_slice(&t.size.to_le_bytes());
                put_bytes(&mut buf, &t.min_key);
                put_bytes(&mut buf, &t.max_key);
                buf.extend_from_slice(&t.min_ts.to_le_bytes());
                buf.extend_from_slice(&t.max_ts.to_le_bytes());
            }
            Change::RemoveTable { id } => {
                buf.push(REMOVE_TABLE);
                buf.extend_from_slice(&id.to_le_bytes());
            }
            Change::LogNumber(n) => {
                buf.push(LOG_NUMBER);
                buf.extend_from_slice(&n.to_le_bytes());
            }
            Change::NextFile(n) => {
                buf.push(NEXT_FILE);
                buf.extend_from_slice(&n.to_le_bytes());
            }
            Change::HighWater(ts) => {
                buf.push(HIGH_WATER);
                buf.extend_from_slice(&ts.to_le_bytes());
            }
        }
    }
    buf
}

pub(crate) fn decode_edit(payload: &[u8]) -> std::result::Result<Vec<Change>, String> {
    let mut c = Cursor::new(payload);
    let n = c.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(payload.len() / 9));
    for _ in 0..n {
        out.push(match c.u8()? {
            ADD_TABLE => Change::AddTable(TableInfo {
                level: c.u32()?,
                id: c.u64()?,
                size: c.u64()?,
                min_key: c.bytes()?,
                max_key: c.bytes()?,
                min_ts: c.u64()?,
                max_ts: c.u64()?,
            }),
            REMOVE_TABLE => Change::RemoveTable { id: c.u64()? },
            LOG_NUMBER => Change::LogNumber(c.u64()?),
            NEXT_FILE => Change::NextFile(c.u64()?),
            HIGH_WATER => Change::HighWater(c.u64()?),
            k => return Err(format!("unknown change kind {k}")),
        });
    }
    if c.pos != payload.len() {
        return Err(format!(
            "{} trailing bytes after edit",
            payload.len() - c.pos
        ));
    }
    Ok(out)
}

pub(crate) fn manifest_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("MANIFEST-{number:020}"))
}

/// Reads CURRENT and replays the manifest it names. `Ok(None)` when there is no CURRENT (a
/// new engine directory). Returns the state and the manifest's path.
pub(crate) fn recover(dir: &Path) -> Result<Option<(ManifestState, PathBuf)>> {
    let current = dir.join(CURRENT);
    let name = match std::fs::read_to_string(&current) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&current)(e)),
    };
    let name = name.strip_suffix('\n').unwrap_or(&name);
    let valid = name
        .strip_prefix("MANIFEST-")
        .is_some_and(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return Err(corruption(
            &current,
            format!("does not name a manifest file: {name:?}"),
        ));
    }
    let path = dir.join(name);
    if !path.exists() {
        return Err(corruption(
            &current,
            format!("names {name}, which does not exist"),
        ));
    }
    let mut state = ManifestState::default();
    let mut records = 0usize;
    let outcome = replay_frames(&path, true, |off, payload| {
        let changes = decode_edit(payload).map_err(|d| {
            corruption(
                &path,
                format!("undecodable manifest edit at offset {off}: {d}"),
            )
        })?;
        for c in changes {
            state.apply(&path, c)?;
        }
        records += 1;
        Ok(())
    })?;
    if records == 0 {
        return Err(corruption(
            &path,
            "manifest holds no complete snapshot record",
        ));
    }
    if let Some(reason) = outcome.torn {
        // Only an edit whose effects never happened can be torn (see the module invariants).
        tracing::warn!(path = %path.display(), reason, offset = outcome.valid_len,
            "dropping torn manifest tail");
        truncate_segment(&path, outcome.valid_len)?;
    }
    Ok(Some((state, path)))
}

/// The append handle of the live manifest.
pub(crate) struct Manifest {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    len: u64,
    state: ManifestState,
    /// Set once an append or roll-over failed: the file may end in a partial record, or the
    /// edit's durability is unknown, so no further edit may be appended (or acted on) until the
    /// engine is reopened and recovery re-establishes the truth.
    broken: Option<String>,
}

impl Manifest {
    /// Writes a new manifest holding `state` as one snapshot record, makes CURRENT name it,
    /// and deletes `old` (the previous manifest), in that order.
    pub(crate) fn create(
        dir: &Path,
        mut state: ManifestState,
        old: Option<&Path>,
    ) -> Result<Manifest> {
        let number = state.next_file;
        state.next_file += 1;
        let path = manifest_path(dir, number);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let rec = frame(&encode_edit(&state.snapshot()))?;
        file.write_all(&rec).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
        let current = dir.join(CURRENT);
        let tmp = tmp_path(&current);
        let body = format!(
            "{}\n",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
        );
        std::fs::write(&tmp, body.as_bytes()).map_err(io_err(&tmp))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &current).map_err(io_err(&current))?;
        sync_dir(dir)?;
        if let Some(old) = old.filter(|o| *o != path)
            && let Err(e) = std::fs::remove_file(old)
        {
            tracing::warn!(path = %old.display(), error = %e, "could not delete old manifest");
        }
        Ok(Manifest {
            dir: dir.to_path_buf(),
            file,
            path,
            len: rec.len() as u64,
            state,
            broken: None,
        })
    }

    pub(crate) fn state(&self) -> &ManifestState {
        &self.state
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    pub(crate) fn size(&self) -> u64 {
        self.len
    }

    /// Hands out a fresh table id, durable with the next edit (an id handed out but never
    /// logged is simply skipped after a crash; orphan files are deleted on open).
    pub(crate) fn next_file(&mut self) -> u64 {
        let id = self.state.next_file;
        self.state.next_file += 1;
        id
    }

    /// Applies `changes` atomically: appended as one record and fsynced before returning.
    /// On failure the in-memory state is unchanged; the caller must treat the manifest as
    /// unusable (a partial record may sit at its end) until reopened.
    pub(crate) fn log(&mut self, mut changes: Vec<Change>) -> Result<()> {
        if let Some(reason) = &self.broken {
            return Err(super::StorageError::Poisoned(format!(
                "an earlier manifest write failed ({reason}); reopen the engine"
            )));
        }
        changes.push(Change::NextFile(self.state.next_file));
        let mut next = self.state.clone();
        for c in &changes {
            next.apply(&self.path, c.clone())?;
        }
        let rec = frame(&encode_edit(&changes))?;
        let written = self
            .file
            .write_all(&rec)
            .and_then(|()| self.file.sync_data())
            .map_err(io_err(&self.path));
        if let Err(e) = written {
            self.broken = Some(e.to_string());
            return Err(e);
        }
        self.len += rec.len() as u64;
        self.state = next;
        if self.len > ROLL_BYTES {
            let old = self.path.clone();
            match Manifest::create(&self.dir, self.state.clone(), Some(&old)) {
                Ok(m) => *self = m,
                Err(e) => {
                    // CURRENT may already name the new file, which further edits would miss:
                    // stop editing rather than guess which one recovery will read.
                    tracing::error!(error = %e, "manifest roll-over failed; no further edits until reopen");
                    self.broken = Some(e.to_string());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(level: u32, id: u64) -> TableInfo {
        TableInfo {
            level,
            id,
            size: 100 + id,
            min_key: format!("a{id}").into_bytes(),
            max_key: format!("z{id}").into_bytes(),
            min_ts: 1,
            max_ts: id,
        }
    }

    #[test]
    fn edits_round_trip() {
        let changes = vec![
            Change::AddTable(info(0, 7)),
            Change::RemoveTable { id: 3 },
            Change::LogNumber(9),
            Change::NextFile(11),
            Change::HighWater(99),
        ];
        assert_eq!(decode_edit(&encode_edit(&changes)).unwrap(), changes);
        assert!(decode_edit(&[1, 0, 0, 0, 9]).is_err());
        assert!(decode_edit(&[]).is_err());
    }

    #[test]
    fn state_survives_reopen_and_roll() {
        let dir = tempfile::tempdir().unwrap();
        assert!(recover(dir.path()).unwrap().is_none());
        let mut m = Manifest::create(dir.path(), ManifestState::default(), None).unwrap();
        let a = m.next_file();
        let b = m.next_file();
        m.log(vec![Change::AddTable(info(0, a)), Change::LogNumber(4)])
            .unwrap();
        m.log(vec![
            Change::AddTable(info(1, b)),
            Change::RemoveTable { id: a },
        ])
        .unwrap();
        let expect = m.state().clone();
        drop(m);
        let (state, path) = recover(dir.path()).unwrap().unwrap();
        assert_eq!(state.tables, expect.tables);
        assert_eq!(state.log_number, 4);
        assert!(state.next_file > b);
        let m = Manifest::create(dir.path(), state.clone(), Some(&path)).unwrap();
        assert!(!path.exists());
        drop(m);
        let (again, _) = recover(dir.path()).unwrap().unwrap();
        assert_eq!(again.tables, state.tables);
    }

    #[test]
    fn flipped_byte_mid_manifest_is_corruption_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::create(dir.path(), ManifestState::default(), None).unwrap();
        for i in 0..5 {
            let id = m.next_file();
            m.log(vec![Change::AddTable(info(0, id)), Change::LogNumber(i)])
                .unwrap();
        }
        let path = m.path().to_path_buf();
        drop(m);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let err = recover(dir.path()).unwrap_err();
        assert!(err.to_string().contains("MANIFEST-"), "{err}");
        assert!(matches!(err, super::super::StorageError::Corruption { .. }));
    }

    #[test]
    fn torn_last_edit_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::create(dir.path(), ManifestState::default(), None).unwrap();
        let id = m.next_file();
        m.log(vec![Change::AddTable(info(0, id))]).unwrap();
        let before = m.size();
        m.log(vec![Change::LogNumber(77)]).unwrap();
        let path = m.path().to_path_buf();
        drop(m);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(before + 5).unwrap();
        let (state, _) = recover(dir.path()).unwrap().unwrap();
        assert_eq!(state.log_number, 0);
        assert!(state.tables.contains_key(&id));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
    }

    #[test]
    fn current_naming_a_missing_manifest_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CURRENT), "MANIFEST-00000000000000000042\n").unwrap();
        let err = recover(dir.path()).unwrap_err();
        assert!(err.to_string().contains("CURRENT"), "{err}");
    }
}

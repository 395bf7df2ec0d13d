//! On-disk layout of an engine directory and the durability helpers for directory changes.
//!
//! ```text
//!   LOCK                      advisory lock: one engine instance per directory
//!   CURRENT                   names the live manifest (see `manifest`)
//!   MANIFEST-<n:020>          the edit log of live tables per level and the WAL log number
//!   wal-<seq:020>.log         WAL segments, replayed in seq order from the log number on
//!   tbl-<id:020>.sst          an SSTable; live only if the manifest names it
//!   *.tmp                     half-written files; deleted on open
//! ```
//!
//! The manifest, not the directory listing, says which tables are live: a table file the
//! manifest does not name is the output of a flush or compaction whose edit never became
//! durable (or an input whose deletion was interrupted), and is deleted on open.
//!
//! Every create/rename/delete that recovery depends on is followed by an fsync of the directory,
//! because on Linux a file's data being durable says nothing about its directory entry.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{Result, io_err};

pub(crate) const LOCK_FILE: &str = "LOCK";
const TMP_SUFFIX: &str = ".tmp";

/// What a directory entry is, as far as the engine is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Wal { seq: u64 },
    Table { id: u64 },
    Manifest,
    Current,
    Temp,
    Lock,
    Unknown,
}

pub(crate) fn wal_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("wal-{seq:020}.log"))
}

pub(crate) fn table_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("tbl-{id:020}.sst"))
}

/// The temporary name a file is written under before being renamed into place.
pub(crate) fn tmp_path(final_path: &Path) -> PathBuf {
    let mut name = final_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(TMP_SUFFIX);
    final_path.with_file_name(name)
}

fn parse_u64_20(s: &str) -> Option<u64> {
    if s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Classifies a file name. Only exact engine-produced names are recognised, so stray files
/// are left alone rather than misread.
pub(crate) fn classify(name: &str) -> FileKind {
    if name == LOCK_FILE {
        return FileKind::Lock;
    }
    if name.ends_with(TMP_SUFFIX) {
        return FileKind::Temp;
    }
    if let Some(seq) = name
        .strip_prefix("wal-")
        .and_then(|r| r.strip_suffix(".log"))
        .and_then(parse_u64_20)
    {
        return FileKind::Wal { seq };
    }
    if let Some(id) = name
        .strip_prefix("tbl-")
        .and_then(|r| r.strip_suffix(".sst"))
        .and_then(parse_u64_20)
    {
        return FileKind::Table { id };
    }
    if name == "CURRENT" {
        return FileKind::Current;
    }
    if name
        .strip_prefix("MANIFEST-")
        .is_some_and(|r| parse_u64_20(r).is_some())
    {
        return FileKind::Manifest;
    }
    FileKind::Unknown
}

/// Makes the directory's entries (creations, renames, deletions) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened as files here; renames are made durable by the OS.
        let _ = dir;
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes at `offset` without moving any shared cursor, so many
/// readers can use one file handle concurrently.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let mut done = 0usize;
        while done < buf.len() {
            let n = file.seek_read(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

/// Writes all of `buf` at `offset` without moving any shared cursor (the WAL is preallocated,
/// so appends go to the logical end, not the file's end).
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.write_all_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let mut done = 0usize;
        while done < buf.len() {
            let n = file.seek_write(&buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_classify() {
        let dir = Path::new("/x");
        let w = wal_path(dir, 42);
        let t = table_path(dir, 17);
        let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(classify(&name(&w)), FileKind::Wal { seq: 42 });
        assert_eq!(classify(&name(&t)), FileKind::Table { id: 17 });
        assert_eq!(classify(&name(&tmp_path(&t))), FileKind::Temp);
        assert_eq!(classify("LOCK"), FileKind::Lock);
        assert_eq!(classify("wal-12.log"), FileKind::Unknown);
        assert_eq!(classify("CURRENT"), FileKind::Current);
        assert_eq!(
            classify("MANIFEST-00000000000000000005"),
            FileKind::Manifest
        );
        assert_eq!(classify("MANIFEST-5"), FileKind::Unknown);
        assert_eq!(classify("tbl-5.sst"), FileKind::Unknown);
    }
}

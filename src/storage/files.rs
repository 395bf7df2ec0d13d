//! On-disk layout of an engine directory and the durability helpers for directory changes.
//!
//! ```text
//!   LOCK                                  advisory lock: one engine instance per directory
//!   wal-<seq:020>.log                     WAL segments, replayed in seq order
//!   sst-<lo:020>-<hi:020>.sst             SSTable holding the data of WAL segments lo <= s < hi
//!   *.tmp                                 half-written files; deleted on open
//! ```
//!
//! There is no manifest: the SSTable name itself says which WAL segments it replaces. A flush
//! names its table `[lo, hi)` where `hi` is the segment that became active at the rotation, and
//! `lo` is the previous flush's `hi`, so the ranges of live tables are disjoint and contiguous.
//! A compaction of tables `[a, b), [b, c)` writes `[a, c)`. That gives recovery three rules:
//! - WAL segments with `seq < max(hi)` are already in tables: delete them, don't replay them.
//! - A table whose range lies inside another table's range is an input of a compaction that
//!   finished (its output was durably renamed before any input was deleted): delete it.
//! - Two tables whose ranges partially overlap cannot be produced by the engine: corruption.
//!
//! Ranges also order tables by age: a larger `hi` holds newer data, which wins when two tables
//! hold the same (key, version).
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
    Table { lo: u64, hi: u64 },
    Temp,
    Lock,
    Unknown,
}

pub(crate) fn wal_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("wal-{seq:020}.log"))
}

pub(crate) fn table_path(dir: &Path, lo: u64, hi: u64) -> PathBuf {
    dir.join(format!("sst-{lo:020}-{hi:020}.sst"))
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
    if let Some((lo, hi)) = name
        .strip_prefix("sst-")
        .and_then(|r| r.strip_suffix(".sst"))
        .and_then(|r| r.split_once('-'))
        .and_then(|(lo, hi)| Some((parse_u64_20(lo)?, parse_u64_20(hi)?)))
        && lo < hi
    {
        return FileKind::Table { lo, hi };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_classify() {
        let dir = Path::new("/x");
        let w = wal_path(dir, 42);
        let t = table_path(dir, 3, 17);
        let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(classify(&name(&w)), FileKind::Wal { seq: 42 });
        assert_eq!(classify(&name(&t)), FileKind::Table { lo: 3, hi: 17 });
        assert_eq!(classify(&name(&tmp_path(&t))), FileKind::Temp);
        assert_eq!(classify("LOCK"), FileKind::Lock);
        assert_eq!(classify("wal-12.log"), FileKind::Unknown);
        assert_eq!(
            classify("sst-00000000000000000005-00000000000000000005.sst"),
            FileKind::Unknown
        );
    }
}

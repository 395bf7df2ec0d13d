//! The double-write checkpoint: how a set of page images becomes durable atomically.
//!
//! In-place page writes are not atomic as a group (nor, on power loss, individually). So a
//! checkpoint first writes every page image (the tree's dirty pages plus the new meta page) to
//! `<path>.dw`, framed as
//!
//! ```text
//!   magic u64 ‖ lsn u64 ‖ count u32 ‖ page_size u32 ‖ (page_no u32 ‖ page)* ‖ crc32c u32
//! ```
//!
//! with the crc over everything before it, fsyncs it and its directory, and only then overwrites
//! the pages in place, fsyncs the index file and deletes the `.dw`.
//!
//! Recovery (`recover`, run by `open`) therefore has exactly two cases: a `.dw` that is complete
//! and verifies was durable before any in-place write began, so re-applying it (idempotent)
//! yields the new checkpoint; any other `.dw` was torn before in-place writing started, so the
//! file still holds the previous checkpoint and the `.dw` is discarded. The unlink at the end of
//! a checkpoint is not followed by a directory fsync: a resurrected `.dw` holds the same images
//! as the file, and the next checkpoint's `.dw` replaces it durably before any in-place write.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::page;
use super::pool::PageFile;
use super::{IndexError, Result, io_err, sibling_path, sync_dir};

const DW_MAGIC: u64 = u64::from_le_bytes(*b"SDBIDXDW");
const DW_HEADER: usize = 24;

pub(crate) fn dw_path(path: &Path) -> PathBuf {
    sibling_path(path, ".dw")
}

/// Test hook: where a checkpoint stops, as if the process were killed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum FailPoint {
    /// The `.dw` file is durable; nothing written in place.
    AfterDoubleWrite,
    /// The `.dw` file is durable and this many pages were written in place.
    AfterInPlacePages(usize),
}

fn injected(path: &Path) -> IndexError {
    IndexError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other("injected crash (test fail point)"),
    }
}

/// Writes `pages` (sealed images, page 0 = meta included) atomically into the index file.
pub(crate) fn write(
    pf: &PageFile,
    page_size: usize,
    lsn: u64,
    pages: &[(u32, Vec<u8>)],
    fail: Option<FailPoint>,
) -> Result<()> {
    let dw = dw_path(&pf.path);
    let mut buf = Vec::with_capacity(DW_HEADER + pages.len() * (4 + page_size) + 4);
    buf.extend_from_slice(&DW_MAGIC.to_le_bytes());
    buf.extend_from_slice(&lsn.to_le_bytes());
    buf.extend_from_slice(&(pages.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(page_size as u32).to_le_bytes());
    for (pno, img) in pages {
        buf.extend_from_slice(&pno.to_le_bytes());
        buf.extend_from_slice(img);
    }
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    {
        let mut f = File::create(&dw).map_err(io_err(&dw))?;
        f.write_all(&buf).map_err(io_err(&dw))?;
        f.sync_all().map_err(io_err(&dw))?;
    }
    sync_dir(&dw)?;
    if fail == Some(FailPoint::AfterDoubleWrite) {
        return Err(injected(&dw));
    }
    for (n, (pno, img)) in pages.iter().enumerate() {
        if fail == Some(FailPoint::AfterInPlacePages(n)) {
            return Err(injected(&pf.path));
        }
        pf.file
            .write_all_at(img, *pno as u64 * page_size as u64)
            .map_err(io_err(&pf.path))?;
    }
    pf.file.sync_all().map_err(io_err(&pf.path))?;
    match fs::remove_file(&dw) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&dw)(e)),
    }
}

/// Page images of a double-write file: (page number, image).
type DwPages<'a> = Vec<(u32, &'a [u8])>;

/// Parses a double-write file: `None` if it is incomplete or damaged in any way,
/// `Some(Err(page_size))` if it is intact but was written with another page size.
fn parse(buf: &[u8], page_size: usize) -> Option<std::result::Result<DwPages<'_>, usize>> {
    if buf.len() < DW_HEADER + 4 {
        return None;
    }
    let (body, tail) = buf.split_at(buf.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != tail {
        return None;
    }
    if body[0..8] != DW_MAGIC.to_le_bytes() {
        return None;
    }
    let count = u32::from_le_bytes(body[16..20].try_into().ok()?) as usize;
    let ps = u32::from_le_bytes(body[20..24].try_into().ok()?) as usize;
    if ps != page_size {
        return Some(Err(ps));
    }
    if body.len() != DW_HEADER + count.checked_mul(4 + ps)? {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for rec in body[DW_HEADER..].chunks_exact(4 + ps) {
        let pno = u32::from_le_bytes(rec[0..4].try_into().ok()?);
        let img = &rec[4..];
        if !page::verify(pno, img) {
            return None;
        }
        out.push((pno, img));
    }
    Some(Ok(out))
}

/// Completes or discards an interrupted checkpoint of the index file at `path`. Returns whether
/// a double-write file was re-applied.
pub(crate) fn recover(path: &Path, page_size: usize) -> Result<bool> {
    let dw = dw_path(path);
    let buf = match fs::read(&dw) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(&dw)(e)),
    };
    let parsed = parse(&buf, page_size).transpose().map_err(|found| {
        IndexError::InvalidArgument(format!(
            "{} was written with page size {found}, the pool uses {page_size}",
            dw.display()
        ))
    })?;
    let applied = match parsed {
        Some(pages) => {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err(path))?;
            for (pno, img) in &pages {
                f.write_all_at(img, *pno as u64 * page_size as u64)
                    .map_err(io_err(path))?;
            }
            f.sync_all().map_err(io_err(path))?;
            tracing::info!(path = %path.display(), pages = pages.len(), "index: completed an interrupted checkpoint from its double-write file");
            true
        }
        None => {
            tracing::warn!(path = %dw.display(), bytes = buf.len(), "index: discarding an incomplete double-write file; the index stays at its previous checkpoint");
            false
        }
    };
    fs::remove_file(&dw).map_err(io_err(&dw))?;
    sync_dir(&dw)?;
    Ok(applied)
}

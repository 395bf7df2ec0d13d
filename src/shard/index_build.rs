//! Sorting a new index's entries in bounded memory, for the bottom-up bulk load.
//!
//! A table's rows come out in primary-key order, its index entries in no useful order, and the
//! bulk load needs them sorted. Entries are gathered into a run of at most `run_bytes`; a full
//! run is sorted, deduplicated and spilled to a temporary file next to the index
//! (`build-<index>-<n>.tmp`, `[len u32 LE][entry]...`); at the end the runs are merged with a
//! heap, one buffered reader per run, and equal entries collapse. So memory is one run plus a
//! read buffer per run, whatever the table's size. A table that fits one run never touches the
//! disk. Run files are deleted when the sorted stream is dropped, and any left by a crash are
//! deleted when the shard's indexes are opened (they end in `.tmp`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub struct EntrySorter {
    dir: PathBuf,
    tag: String,
    run_bytes: usize,
    buf: Vec<Vec<u8>>,
    buf_bytes: usize,
    runs: Vec<PathBuf>,
}

impl EntrySorter {
    pub fn new(dir: &Path, index_id: u32, run_bytes: usize) -> EntrySorter {
        EntrySorter {
            dir: dir.to_path_buf(),
            tag: format!("build-{index_id}"),
            run_bytes: run_bytes.max(1),
            buf: Vec::new(),
            buf_bytes: 0,
            runs: Vec::new(),
        }
    }

    pub fn push(&mut self, entry: Vec<u8>) -> std::io::Result<()> {
        // Count the allocation, not only the bytes: many short entries are mostly overhead.
        self.buf_bytes += entry.len() + std::mem::size_of::<Vec<u8>>();
        self.buf.push(entry);
        if self.buf_bytes >= self.run_bytes {
            self.spill()?;
        }
        Ok(())
    }

    /// Runs spilled so far (for logs and tests).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    fn spill(&mut self) -> std::io::Result<()> {
        self.buf.sort_unstable();
        self.buf.dedup();
        let path = self
            .dir
            .join(format!("{}-{}.tmp", self.tag, self.runs.len()));
        // Registered before writing, so a failed write is still cleaned up.
        self.runs.push(path.clone());
        let mut w = BufWriter::with_capacity(256 * 1024, File::create(&path)?);
        for e in self.buf.drain(..) {
            w.write_all(&(e.len() as u32).to_le_bytes())?;
            w.write_all(&e)?;
        }
        w.flush()?;
        self.buf_bytes = 0;
        Ok(())
    }

    /// All entries pushed, ascending and without duplicates.
    pub fn finish(mut self) -> std::io::Result<SortedEntries> {
        let runs = std::mem::take(&mut self.runs);
        let mut out = SortedEntries {
            mem: Vec::new().into_iter(),
            readers: Vec::new(),
            heap: BinaryHeap::new(),
            last: None,
            files: runs,
        };
        if out.files.is_empty() {
            self.buf.sort_unstable();
            self.buf.dedup();
            out.mem = std::mem::take(&mut self.buf).into_iter();
            return Ok(out);
        }
        if !self.buf.is_empty() {
            self.runs = std::mem::take(&mut out.files);
            self.spill()?;
            out.files = std::mem::take(&mut self.runs);
        }
        for (i, path) in out.files.iter().enumerate() {
            let mut r = BufReader::with_capacity(64 * 1024, File::open(path)?);
            if let Some(e) = read_entry(&mut r)? {
                out.heap.push(Reverse((e, i)));
            }
            out.readers.push(r);
        }
        Ok(out)
    }
}

impl Drop for EntrySorter {
    fn drop(&mut self) {
        for p in &self.runs {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn read_entry(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut e = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut e)?;
    Ok(Some(e))
}

/// The merged, deduplicated stream; deletes the run files when dropped.
pub struct SortedEntries {
    mem: std::vec::IntoIter<Vec<u8>>,
    readers: Vec<BufReader<File>>,
    heap: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
    last: Option<Vec<u8>>,
    files: Vec<PathBuf>,
}

impl Iterator for SortedEntries {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.files.is_empty() {
            return self.mem.next().map(Ok);
        }
        loop {
            let Reverse((e, i)) = self.heap.pop()?;
            match read_entry(&mut self.readers[i]) {
                Ok(Some(next)) => self.heap.push(Reverse((next, i))),
                Ok(None) => {}
                Err(err) => return Some(Err(err)),
            }
            // Runs are deduplicated each; the same entry may still sit in several runs.
            if self.last.as_ref() != Some(&e) {
                self.last = Some(e.clone());
                return Some(Ok(e));
            }
        }
    }
}

impl Drop for SortedEntries {
    fn drop(&mut self) {
        for p in &self.files {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sorts_like_a_btreeset_with_any_run_size(
            entries in prop::collection::vec(prop::collection::vec(0u8..4, 0..6), 0..400),
            run_bytes in 1usize..400,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = EntrySorter::new(dir.path(), 7, run_bytes);
            for e in &entries {
                s.push(e.clone()).unwrap();
            }
            let got: Vec<Vec<u8>> = s.finish().unwrap().map(Result::unwrap).collect();
            let want: Vec<Vec<u8>> = entries
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            prop_assert_eq!(got, want);
            // Every run file is gone.
            prop_assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }
}

//! Sorting a new index's entries in bounded memory, for the bottom-up bulk load.
//!
//! A table's rows come out in primary-key order, its index entries in no useful order, and the
//! bulk load needs them sorted. Entries are gathered into a run of at most `run_bytes`; a full
//! run is sorted, deduplicated and spilled to a temporary file next to the index
//! (`build-<index>-<n>.tmp`, `[len u32 LE][entry]...`); at the end the runs are merged with a
//! heap, one buffered reader per run, and equal entries collapse. At most `MAX_FAN_IN` runs are
//! merged at once (earlier runs are first merged into bigger ones), so memory is one run plus
//! `MAX_FAN_IN` read buffers, and open files stay few, whatever the table's size. A table that
//! fits one run never touches the disk. Run files are deleted when the sorted stream is dropped, and any left by a crash are
//! deleted when the shard's indexes are opened (they end in `.tmp`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Most runs merged in one pass.
const MAX_FAN_IN: usize = 64;

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
        self.runs = std::mem::take(&mut out.files);
        if !self.buf.is_empty() {
            self.spill()?;
        }
        // Merge passes until one final merge can take every run.
        let mut merged = 0;
        while self.runs.len() > MAX_FAN_IN {
            let group: Vec<PathBuf> = self.runs.drain(..MAX_FAN_IN).collect();
            let path = self.dir.join(format!("{}-merged-{merged}.tmp", self.tag));
            merged += 1;
            self.runs.push(path.clone());
            let merge = SortedEntries::merge(group)?;
            let mut w = BufWriter::with_capacity(256 * 1024, File::create(&path)?);
            for e in merge {
                let e = e?;
                w.write_all(&(e.len() as u32).to_le_bytes())?;
                w.write_all(&e)?;
            }
            w.flush()?;
        }
        out.files = std::mem::take(&mut self.runs);
        out.open_readers()?;
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

/// The next entry of a run, `None` at its clean end. A run cut off anywhere else is an error:
/// silently ending early would leave entries out of the index.
fn read_entry(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "index build run file ends inside an entry length",
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
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

impl SortedEntries {
    /// A merge of run files (deleted when it is dropped).
    fn merge(files: Vec<PathBuf>) -> std::io::Result<SortedEntries> {
        let mut out = SortedEntries {
            mem: Vec::new().into_iter(),
            readers: Vec::new(),
            heap: BinaryHeap::new(),
            last: None,
            files,
        };
        out.open_readers()?;
        Ok(out)
    }

    fn open_readers(&mut self) -> std::io::Result<()> {
        for (i, path) in self.files.iter().enumerate() {
            let mut r = BufReader::with_capacity(64 * 1024, File::open(path)?);
            if let Some(e) = read_entry(&mut r)? {
                self.heap.push(Reverse((e, i)));
            }
            self.readers.push(r);
        }
        Ok(())
    }
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
        #![proptest_config(ProptestConfig {
            // Each case writes up to hundreds of run files; PROPTEST_CASES raises it.
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(24),
            ..ProptestConfig::default()
        })]
        #[test]
        fn sorts_like_a_btreeset_with_any_run_size(
            // Up to thousands of entries in runs of a few: more runs than one merge takes.
            entries in prop::collection::vec(prop::collection::vec(0u8..4, 0..6), 0..1500),
            run_bytes in 1usize..200,
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

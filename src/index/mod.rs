//! Secondary-index storage: a page-structured B+tree per index file, sharing one bounded
//! buffer pool per shard.
//!
//! ```text
//!   BTree (insert / delete / contains / scan)      one RwLock per tree: readers share,
//!     │  copy-out reads, all-or-nothing writes        writers (and checkpoints) exclusive
//!     ▼
//!   BufferPool (CLOCK over frames keyed by (tree id, page), pin counts, dirty tracking)
//!     │  clean pages load/evict freely; dirty pages leave only through a checkpoint
//!     ▼
//!   <index file>  page 0 = meta, then leaf / internal / free pages, each crc32c-sealed
//!   <index file>.dw  double-write copy of one checkpoint, present only while it is applied
//! ```
//!
//! Durability is checkpoint-based and deliberately independent of the WAL: the index file on
//! disk is always exactly the state of the last completed [`BTree::checkpoint`] (the pool never
//! steals dirty pages, and a checkpoint is made atomic by the double-write file). The caller
//! records `checkpoint_lsn` and replays its own logical insert/delete records above it after a
//! crash; because the tree has set semantics, replaying an operation twice is harmless.
//!
//! Contract details the integrator relies on:
//! - A failed insert/delete (I/O error, `PoolExhausted`, corruption) changes nothing.
//! - If `checkpoint` fails, the in-memory tree is unchanged and still dirty; the durable state
//!   is then either the previous checkpoint or this one (if its `.dw` became durable), and
//!   `checkpoint_lsn()` after reopening says which — replay from there as usual.
//! - `delete` / `contains` of a key longer than `max_key_len` answer `false` (it cannot be
//!   present); only `insert` and `bulk_load` report `KeyTooLarge`.
//! - One process must not open the same file twice at once (each open gets its own frames).
//!
//! Module map (one concept per file):
//! - `page`: byte layout of meta and tree pages, checksums, fill accounting.
//! - `pool`: the shared buffer pool.
//! - `btree`: the tree and its operations (split, merge, redistribute, scans).
//! - `bulk`: bottom-up construction from sorted input.
//! - `checkpoint`: the double-write protocol and its recovery.
//! - `check`: the full invariant checker.

mod btree;
mod bulk;
mod check;
mod checkpoint;
mod page;
mod pool;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use btree::{BTree, TreeStats};
pub use pool::{BufferPool, PoolCounters};

/// Result alias for the index module.
pub type Result<T> = std::result::Result<T, IndexError>;

/// Everything that can go wrong in an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// An operating-system I/O call failed on the named file or directory.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Bytes in the named file (or a structural invariant found by `check`) are not what the
    /// index wrote; `detail` names the page.
    #[error("index corruption in {}: {detail}", path.display())]
    Corruption { path: PathBuf, detail: String },
    /// A key longer than [`BTree::max_key_len`] for the pool's page size.
    #[error("index key of {len} bytes exceeds the maximum of {max} bytes")]
    KeyTooLarge { len: usize, max: usize },
    /// A page had to be loaded (or a write installed) but every frame is pinned or dirty; the
    /// caller should checkpoint more often (when `dirty_pages()` exceeds half the capacity).
    #[error("buffer pool exhausted: all {capacity_pages} frames are pinned or dirty")]
    PoolExhausted { capacity_pages: usize },
    /// The caller passed something the index cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes a directory entry change (create, rename, unlink) durable.
pub(crate) fn sync_dir(file_path: &std::path::Path) -> Result<()> {
    let dir = match file_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    #[cfg(unix)]
    {
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// `<path><suffix>`, e.g. the double-write file `<path>.dw`.
pub(crate) fn sibling_path(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

//! The deterministic workload shared by the storage crash tests and the stress binary.
//!
//! A crash test must know exactly what an acknowledged write contained without trusting the
//! engine to tell it, and without the child process streaming whole batches to the parent. So
//! every batch is a pure function of its commit timestamp: the child prints only the
//! timestamps it got acknowledged, and the test recomputes the batches. Each batch carries a
//! marker key `batch/<ts>`, which makes "is this batch there at all" a single lookup, against
//! which the rest of the batch must agree (all or nothing).

use super::{EngineOptions, SyncMode, WriteOp};

/// The engine options of the crash workload: tiny memtables and levels so that flushes and
/// multi-level compactions happen many times per second.
pub fn crash_options() -> EngineOptions {
    EngineOptions {
        memtable_limit_bytes: 64 * 1024,
        max_immutable_memtables: 2,
        sync: SyncMode::Fsync,
        block_cache_bytes: 1 << 20,
        block_bytes: 1024,
        bloom_bits_per_key: 10,
        target_file_bytes: 64 * 1024,
        l0_compaction_trigger: 3,
        l0_slowdown_trigger: 8,
        l0_stop_trigger: 12,
        level1_target_bytes: 256 * 1024,
        level_size_ratio: 4,
    }
}

pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The batch committed at `ts`: a marker key naming the batch, plus 1..=6 puts or deletes of
/// keys in `0..keys`.
pub fn batch_for(ts: u64, keys: u64) -> Vec<WriteOp> {
    let mut ops = vec![WriteOp::put(
        format!("batch/{ts:012}").into_bytes(),
        ts.to_le_bytes().to_vec(),
    )];
    let mut r = splitmix(ts);
    let n = 1 + r % 6;
    for i in 0..n {
        r = splitmix(r ^ i);
        let key = format!("key/{:06}", r % keys).into_bytes();
        if ops.iter().any(|o| o.key == key) {
            continue;
        }
        if r.is_multiple_of(7) {
            ops.push(WriteOp::delete(key));
        } else {
            let len = 20 + (r >> 8) % 200;
            let mut v = format!("{ts}:").into_bytes();
            v.resize(len as usize, b'a' + (ts % 26) as u8);
            ops.push(WriteOp::put(key, v));
        }
    }
    ops
}

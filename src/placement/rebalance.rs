//! Moving rows when the shard map changes (ADD SHARD, REMOVE SHARD, SPLIT AT), online.
//!
//! ```text
//!  old map v ── copy (snapshot T0) ── catch-up + switch (DDL gate) ── delete originals ── v+1
//!    readers & writers: v            writers wait briefly          readers & writers: v+1
//! ```
//!
//! 1. A durable move record is written, and the router starts dropping rows a shard does not
//!    own (`ShardMap::filter_unowned`): copies are about to exist on two shards.
//! 2. Under the DDL gate (no transaction with writes is open) the coordinator starts recording
//!    the keys transactions write, and the copy snapshot T0 is taken.
//! 3. Without the gate, every row whose owner changes is read at T0 and written to its new
//!    owner. Reads and writes go on under map v; the copies are invisible to them (not owned).
//! 4. Under the gate again: every key written since step 2 is copied once more from its old
//!    owner's newest state (or deleted at the new owner), then map v+1 takes effect at a fresh
//!    timestamp S: written to the metadata engine (the commit point), installed on every shard.
//!    Requests routed with v, and reads older than S, are refused from then on and routed
//!    again (or the transaction retries), so nobody mixes the two placements.
//! 5. Without the gate, the originals are deleted from their old shards; then the filter is
//!    turned off and the move record removed.
//!
//! A crash anywhere leaves only rows their shard does not own under the stored map (copies
//! before the switch, originals after it); startup sees the move record and deletes them
//! ([`drop_unowned`]) before serving. Invariant: under any map a reader can use, each row is
//! visible on exactly its owner.

use super::{PlacementKind, PlacementManager, ShardMap, TableRoute};
use crate::catalog::{Catalog, TableDef};
use crate::error::{SqlError, SqlResult};
use crate::rpc::{RowWrite, ScanRequest, ShardRequest, ShardResponse};
use crate::shard::keys;
use crate::shard::storage_error;
use crate::storage::{WriteBatch, WriteOp};
use crate::txn::coordinator::Coordinator;
use crate::types::{Row, row};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

const MOVE_KEY: &[u8] = b"p/move";
/// Rows per scan page and per copy batch: bounds the memory a move holds at once.
const PAGE: usize = 1024;

/// What a map change moved.
#[derive(Debug, Clone, Default)]
pub struct MoveReport {
    /// Rows of the tables whose placement changed (the others are not read).
    pub rows_scanned: u64,
    pub rows_moved: u64,
    pub bytes_moved: u64,
    /// Keys written during the copy and copied again at the switch.
    pub rows_caught_up: u64,
    pub elapsed_ms: u64,
}

impl MoveReport {
    pub fn moved_fraction(&self) -> f64 {
        if self.rows_scanned == 0 {
            0.0
        } else {
            self.rows_moved as f64 / self.rows_scanned as f64
        }
    }
}

pub struct Mover<'a> {
    pub coord: &'a Coordinator,
    pub catalog: &'a Catalog,
    pub placement: &'a PlacementManager,
}

fn encode_pk(row: &[crate::types::Value], route: &TableRoute) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    for (c, ty) in route.pk.iter().zip(&route.pk_types) {
        crate::types::keycode::encode_key_value(&row[*c], *ty, &mut out);
    }
    out
}

fn row_write(table_id: u32, route: &TableRoute, r: &Row) -> RowWrite {
    let mut value = Vec::with_capacity(64);
    row::encode_row(r, &mut value);
    RowWrite {
        key: keys::row_key(table_id, &encode_pk(r, route)),
        value: Some(value),
    }
}

impl Mover<'_> {
    /// Every row of `table` on `shard` visible at `read_ts` (not routed: addressed directly),
    /// a page at a time.
    pub fn for_each_page(
        &self,
        table: &TableDef,
        shard: usize,
        read_ts: u64,
        f: &mut dyn FnMut(Vec<Row>) -> SqlResult<()>,
    ) -> SqlResult<()> {
        let mut start = Bound::Included(keys::table_prefix(table.id));
        loop {
            let resp = self.coord.call(
                shard,
                ShardRequest::Scan(ScanRequest {
                    start: start.clone(),
                    end: Bound::Excluded(keys::table_end(table.id)),
                    read_ts,
                    limit: PAGE,
                    filter: None,
                    txn: None,
                }),
            )?;
            let ShardResponse::Rows { rows, resume_after } = resp else {
                return Err(SqlError::internal("unexpected shard response to Scan"));
            };
            f(rows)?;
            match resume_after {
                Some(k) => start = Bound::Excluded(k),
                None => return Ok(()),
            }
        }
    }

    /// Changes the map to `new` (its version must be the current one's + 1), moving every row
    /// whose owner changes. The caller holds `placement.change`.
    pub fn change_map(&self, mut new: ShardMap) -> SqlResult<MoveReport> {
        let started = Instant::now();
        let old = self.placement.current();
        if new.version != old.version + 1 {
            return Err(SqlError::internal(
                "shard map versions must follow each other",
            ));
        }
        let mut report = MoveReport::default();
        if self.move_pending()? {
            // Copies left by a move that failed before its switch: not owned where they are,
            // and a stale copy would come back if this move made its shard the owner.
            drop_unowned(self.coord, self.catalog, &old)?;
        }
        self.set_move_record(Some(new.version))?;
        let mut filtering = (*old).clone();
        filtering.filter_unowned = true;
        self.placement.set_current(filtering);

        // 2. Start recording writes and take the copy snapshot with no writer open.
        let snapshot = {
            let _gate = self.coord.write_guard();
            // Its keys were written before tracking began: an in-doubt commit finished after
            // T0 would be missed by both the copy and the catch-up.
            self.coord.recover()?;
            self.coord.start_move_tracking();
            self.coord.begin_read()
        };
        let t0 = snapshot.ts();

        // 3. Copy what moves, page by page.
        let tables = self.catalog.tables();
        for table in &tables {
            let route = TableRoute::for_table(table);
            let unchanged = match route.kind {
                PlacementKind::Hash => old.ring() == new.ring(),
                PlacementKind::Range => {
                    old.effective_range_map(table.id) == new.effective_range_map(table.id)
                }
            };
            if unchanged {
                continue; // no row of this table changes owner
            }
            for &shard in old.shards() {
                let mut batches: BTreeMap<usize, Vec<RowWrite>> = BTreeMap::new();
                let result = self.for_each_page(table, shard, t0, &mut |rows| {
                    for r in rows {
                        if old.owner_of_row(&route, &r) != shard {
                            continue; // not a row of this shard (left by an earlier crash)
                        }
                        report.rows_scanned += 1;
                        let to = new.owner_of_row(&route, &r);
                        if to == shard {
                            continue;
                        }
                        let w = row_write(table.id, &route, &r);
                        report.rows_moved += 1;
                        report.bytes_moved +=
                            (w.key.len() + w.value.as_ref().map_or(0, Vec::len)) as u64;
                        let batch = batches.entry(to).or_default();
                        batch.push(w);
                        if batch.len() >= PAGE {
                            let batch = std::mem::take(batch);
                            self.coord.apply_outside_txn(to, batch)?;
                        }
                    }
                    Ok(())
                });
                if let Err(e) = result {
                    self.abandon(&old);
                    return Err(e);
                }
                for (to, batch) in batches {
                    if let Err(e) = self.coord.apply_outside_txn(to, batch) {
                        self.abandon(&old);
                        return Err(e);
                    }
                }
            }
        }
        drop(snapshot);
        crate::txn::faults::hit("move-after-copy");

        // 4. Catch up and switch, with writers held off.
        {
            let _gate = self.coord.write_guard();
            // A two-phase commit left in doubt would be finished later on the old owner,
            // after the catch-up copied its older value: finish it now.
            self.coord.recover()?;
            let tracked = self.coord.take_move_tracking();
            let routes: HashMap<u32, TableRoute> = self
                .catalog
                .tables()
                .iter()
                .map(|t| (t.id, TableRoute::for_table(t)))
                .collect();
            let latest = self.coord.begin_read();
            for (shard, keys) in tracked {
                let mut batches: BTreeMap<usize, Vec<RowWrite>> = BTreeMap::new();
                for key in keys {
                    let Some((table_id, pk)) = keys::split_row_key(&key) else {
                        continue;
                    };
                    // A dropped table's rows are unreachable (its id is never reused).
                    let Some(route) = routes.get(&table_id) else {
                        continue;
                    };
                    let to = new.owner_of_pk(route, pk)?;
                    if to == shard {
                        continue;
                    }
                    let resp = self.coord.call(
                        shard,
                        ShardRequest::Get {
                            key: key.clone(),
                            read_ts: latest.ts(),
                            txn: None,
                        },
                    )?;
                    let ShardResponse::Row(r) = resp else {
                        return Err(SqlError::internal("unexpected shard response to Get"));
                    };
                    let value = match r {
                        Some(r) => {
                            let mut v = Vec::with_capacity(64);
                            row::encode_row(&r, &mut v);
                            Some(v)
                        }
                        None => None,
                    };
                    report.rows_caught_up += 1;
                    batches.entry(to).or_default().push(RowWrite { key, value });
                }
                for (to, batch) in batches {
                    for chunk in batch.chunks(PAGE) {
                        self.coord.apply_outside_txn(to, chunk.to_vec())?;
                    }
                }
            }
            drop(latest);
            // S: after every commit so far (the copies included).
            let effective = self.coord.begin_read();
            new.effective_ts = effective.ts();
            new.filter_unowned = false;
            self.placement.publish(new.clone())?;
            let mut filtering = new.clone();
            filtering.filter_unowned = true;
            self.placement.set_current(filtering);
            self.install(&new)?;
        }

        crate::txn::faults::hit("move-after-switch");
        // 5. Delete the originals. Snapshots older than the deletions still see them, so reads
        // below the last deletion keep filtering.
        drop_unowned(self.coord, self.catalog, &new)?;
        new.unowned_visible_below = self.coord.begin_read().ts();
        self.placement.set_current(new);
        self.set_move_record(None)?;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            rows_moved = report.rows_moved,
            bytes_moved = report.bytes_moved,
            caught_up = report.rows_caught_up,
            elapsed_ms = report.elapsed_ms,
            "shard map change done"
        );
        Ok(report)
    }

    /// A move that failed before its switch: the old map stays; copies it made are not owned
    /// where they are and are removed by the next startup (the move record stays) or move.
    fn abandon(&self, old: &Arc<ShardMap>) {
        self.coord.take_move_tracking();
        let mut m = (**old).clone();
        m.filter_unowned = true;
        self.placement.set_current(m);
    }

    /// Tells every shard of the map (and every shard slot) which version to accept.
    pub fn install(&self, map: &ShardMap) -> SqlResult<()> {
        for shard in 0..self.coord.shard_count() {
            self.coord.call(
                shard,
                ShardRequest::InstallMap {
                    map_version: map.version,
                    effective_ts: map.effective_ts,
                },
            )?;
        }
        Ok(())
    }

    fn set_move_record(&self, version: Option<u64>) -> SqlResult<()> {
        let meta = self.placement.meta();
        let commit_ts = meta.max_committed_ts() + 1;
        meta.apply(&WriteBatch {
            commit_ts,
            ops: vec![WriteOp {
                key: MOVE_KEY.to_vec(),
                value: version.map(|v| v.to_be_bytes().to_vec()),
            }],
        })
        .map_err(storage_error)
    }

    fn move_pending(&self) -> SqlResult<bool> {
        Ok(self
            .placement
            .meta()
            .get(MOVE_KEY, u64::MAX)
            .map_err(storage_error)?
            .is_some())
    }

    /// At startup: finishes or undoes an interrupted move (see the module comment).
    pub fn recover(&self) -> SqlResult<()> {
        if self.move_pending()? {
            let map = self.placement.current();
            tracing::warn!(
                version = map.version,
                "an interrupted shard map change: deleting rows their shard does not own"
            );
            drop_unowned(self.coord, self.catalog, &map)?;
            self.set_move_record(None)?;
        }
        Ok(())
    }
}

/// Deletes, on every shard, the rows it does not own under `map`. Returns how many.
pub fn drop_unowned(coord: &Coordinator, catalog: &Catalog, map: &ShardMap) -> SqlResult<u64> {
    let mut deleted = 0;
    for shard in 0..coord.shard_count() {
        deleted += drop_unowned_on(coord, catalog, map, shard)?;
        if deleted > 0 {
            crate::txn::faults::hit("move-mid-cleanup");
        }
    }
    Ok(deleted)
}

/// Deletes the rows `shard` holds but does not own under `map`.
pub fn drop_unowned_on(
    coord: &Coordinator,
    catalog: &Catalog,
    map: &ShardMap,
    shard: usize,
) -> SqlResult<u64> {
    let mut deleted = 0u64;
    for table in catalog.tables() {
        let route = TableRoute::for_table(&table);
        {
            let snapshot = coord.begin_read();
            let mut start = Bound::Included(keys::table_prefix(table.id));
            loop {
                let resp = coord.call(
                    shard,
                    ShardRequest::Scan(ScanRequest {
                        start: start.clone(),
                        end: Bound::Excluded(keys::table_end(table.id)),
                        read_ts: snapshot.ts(),
                        limit: PAGE,
                        filter: None,
                        txn: None,
                    }),
                )?;
                let ShardResponse::Rows { rows, resume_after } = resp else {
                    return Err(SqlError::internal("unexpected shard response to Scan"));
                };
                let writes: Vec<RowWrite> = rows
                    .iter()
                    .filter(|r| {
                        !map.shards().contains(&shard) || map.owner_of_row(&route, r) != shard
                    })
                    .map(|r| RowWrite {
                        key: keys::row_key(table.id, &encode_pk(r, &route)),
                        value: None,
                    })
                    .collect();
                deleted += writes.len() as u64;
                if !writes.is_empty() {
                    coord.apply_outside_txn(shard, writes)?;
                }
                match resume_after {
                    Some(k) => start = Bound::Excluded(k),
                    None => break,
                }
            }
        }
    }
    Ok(deleted)
}

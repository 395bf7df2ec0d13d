//! The database and its sessions: statement execution from bound plans to committed writes.
//!
//! [`Database`] owns the shared parts (catalog, coordinator, placement, id generator).
//! [`Session`] is one client connection's state (settings) and runs statements synchronously;
//! the wire layer calls it on tokio's blocking pool because shard calls (and fsync) block.
//!
//! Every statement runs in a transaction: the session's open transaction block (BEGIN ...
//! COMMIT), or an implicit one around the single statement (autocommit). Reads see what the
//! isolation level says (see [`crate::txn::Isolation`]); writes lock the rows they change,
//! become intents on the shards, and are committed by the coordinator at COMMIT (one phase on
//! one shard, two phases across several). After an error inside a block, statements fail with
//! 25P02 until ROLLBACK (or ROLLBACK TO a savepoint), as in PostgreSQL.

use crate::catalog::{Catalog, IndexDef, Relation, TableDef};
use crate::error::{SqlError, SqlResult, sqlstate};
use crate::id::SnowflakeGenerator;
use crate::placement::{PlacementManager, TableRoute};
use crate::rpc::ScanRequest;
use crate::rpc::{
    KeyState, LocalShardClient, RowWrite, ShardClient, ShardRequest, ShardResponse, TxnWrite,
    UniqueProbe,
};
use crate::shard::{Shard, keys};
use crate::sql::binder::{
    Binder, Bound, ColumnSource, DeletePlan, InsertPlan, OutputColumn, Returning, UpdatePlan,
};
use crate::sql::executor::{Executor, SCAN_PAGE, encode_pk};
use crate::sql::expr::EvalContext;
use crate::storage::{Engine, EngineOptions, SyncMode};
use crate::txn::clock::HybridClock;
use crate::txn::coordinator::{Coordinator, Txn, Wounds, aborts_transaction};
use crate::txn::snapshots::Registered;
use crate::txn::{DeadlockPolicy, Isolation, TxnCtx};
use crate::types::cast::{self, CastContext};
use crate::types::format::format_text;
use crate::types::{DataType, Row, Value, keycode, row};
use sqlparser::ast;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to open a database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub data_dir: PathBuf,
    pub shards: usize,
    pub sync: bool,
    pub memtable_limit_bytes: usize,
    /// Block cache memory for all engines together (each shard gets an equal share).
    pub block_cache_bytes: usize,
    /// Index buffer pool memory for all shards together (each gets an equal share).
    pub index_pool_bytes: usize,
    /// Most bytes of materialized rows one statement may hold.
    pub statement_mem_bytes: usize,
    /// The `deadlock_policy` sessions start with.
    pub deadlock_policy: DeadlockPolicy,
    /// Points per shard on the consistent-hash ring of a new data directory.
    pub vnodes: u32,
    /// Rows past which a range splits itself (0: never).
    pub range_split_rows: u64,
    /// This node's Snowflake node id (0..=1023), unique per node of a cluster.
    pub node_id: u16,
}

/// Rows owned by (table id, shard, range index for range tables).
type RowCount = (u32, usize, Option<usize>, u64);

pub struct Database {
    pub catalog: Catalog,
    pub coordinator: Coordinator,
    pub placement: PlacementManager,
    /// Opens (creating if needed) the shard with a given id, for ALTER CLUSTER ADD SHARD.
    new_shard: Box<dyn Fn(usize) -> SqlResult<Arc<dyn ShardClient>> + Send + Sync>,
    /// The node's one Snowflake id generator: hidden row ids, `snowflake_id()` (and so
    /// `BIGSERIAL` defaults) and, through the coordinator, transaction ids.
    pub ids: Arc<SnowflakeGenerator>,
    pub statement_mem_bytes: usize,
    pub deadlock_policy: DeadlockPolicy,
    range_split_rows: u64,
    /// Rows inserted into each range-placed table since its ranges were last measured.
    inserted_since_check: parking_lot::Mutex<HashMap<u32, u64>>,
    /// Row estimates for planning joins.
    pub table_stats: crate::sql::join_strategy::TableStatistics,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ClusterFile {
    shards: usize,
}

impl crate::sql::join_strategy::RowEstimator for Database {
    fn table_rows(&self, table_id: u32, shards: &[usize]) -> u64 {
        self.table_stats
            .table_rows(&self.coordinator, table_id, shards)
    }
}

impl Database {
    /// Opens (or creates) the data directory, recovers every shard and resolves in-doubt
    /// two-phase commits. Blocking: call from a blocking context.
    pub fn open(opts: &DbOptions) -> SqlResult<Arc<Database>> {
        let io = |what: &str, p: &Path, e: std::io::Error| {
            SqlError::new(sqlstate::IO_ERROR, format!("{what} {}: {e}", p.display()))
        };
        let ids = Arc::new(
            SnowflakeGenerator::new(opts.node_id)
                .map_err(|e| SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, e))?,
        );
        ids.check_clock()
            .map_err(|e| SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, e))?;
        std::fs::create_dir_all(&opts.data_dir)
            .map_err(|e| io("cannot create data directory", &opts.data_dir, e))?;
        let cluster_path = opts.data_dir.join("cluster.json");
        let shards = match std::fs::read(&cluster_path) {
            Ok(bytes) => {
                let c: ClusterFile = serde_json::from_slice(&bytes).map_err(|e| {
                    SqlError::new(
                        sqlstate::DATA_CORRUPTED,
                        format!("{} is unreadable: {e}", cluster_path.display()),
                    )
                })?;
                if c.shards != opts.shards {
                    tracing::warn!(
                        existing = c.shards,
                        requested = opts.shards,
                        "data directory was created with a different shard count; using the existing one"
                    );
                }
                c.shards
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let tmp = opts.data_dir.join("cluster.json.tmp");
                let body = serde_json::to_vec(&ClusterFile {
                    shards: opts.shards,
                })
                .map_err(|e| SqlError::internal(e.to_string()))?;
                write_durably(&tmp, &cluster_path, &body)
                    .map_err(|e| io("cannot write", &cluster_path, e))?;
                opts.shards
            }
            Err(e) => return Err(io("cannot read", &cluster_path, e)),
        };
        let engine_opts = move || EngineOptions {
            memtable_limit_bytes: opts.memtable_limit_bytes,
            block_cache_bytes: opts.block_cache_bytes / (shards + 1),
            sync: if opts.sync {
                SyncMode::Fsync
            } else {
                SyncMode::None
            },
            ..EngineOptions::default()
        };
        let meta = Arc::new(
            Engine::open(&opts.data_dir.join("meta"), engine_opts())
                .map_err(crate::shard::storage_error)?,
        );
        let clock = Arc::new(HybridClock::new());
        clock.observe(meta.max_committed_ts());
        let wounds = Wounds::new();
        let txn_opts = crate::shard::TxnOptions {
            clock: clock.clone(),
            wounds: wounds.clone(),
            ..Default::default()
        };
        // The shard map is authoritative for which shards exist (shards added online are
        // not in cluster.json, which only seeds the first map).
        let had_map = PlacementManager::stored(&meta)?;
        let placement = PlacementManager::load(meta.clone(), shards, opts.vnodes)?;
        let slots = placement
            .current()
            .shards()
            .iter()
            .max()
            .map_or(1, |m| m + 1);
        let data_dir = opts.data_dir.clone();
        let pool_bytes = opts.index_pool_bytes / shards;
        let (mem_opts, sync) = (opts.memtable_limit_bytes, opts.sync);
        let cache = opts.block_cache_bytes / (shards + 1);
        let new_shard = move |i: usize| -> SqlResult<Arc<dyn ShardClient>> {
            let dir = data_dir.join(format!("shard-{i}"));
            let index_opts = crate::shard::indexes::IndexOptions {
                pool_bytes,
                ..Default::default()
            };
            let engine_opts = EngineOptions {
                memtable_limit_bytes: mem_opts,
                block_cache_bytes: cache,
                sync: if sync {
                    SyncMode::Fsync
                } else {
                    SyncMode::None
                },
                ..EngineOptions::default()
            };
            let shard = Shard::open_with(i, &dir, engine_opts, index_opts, txn_opts.clone())?;
            Ok(Arc::new(LocalShardClient::new(Arc::new(shard))))
        };
        let mut clients: Vec<Arc<dyn ShardClient>> = Vec::with_capacity(slots);
        for i in 0..slots {
            clients.push(new_shard(i)?);
        }
        let coordinator = Coordinator::new(clients, meta.clone(), clock, &wounds, ids.clone());
        coordinator.recover()?;
        let catalog = Catalog::load(meta)?;
        if !had_map {
            if !catalog.tables().is_empty() {
                return Err(SqlError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "the data directory {} was written by a sharddb without a shard map \
                         (rows placed by hash modulo the shard count)",
                        opts.data_dir.display()
                    ),
                )
                .with_hint(
                    "Dump its tables with that version and load them into a new directory.",
                ));
            }
            placement.publish((*placement.current()).clone())?;
        }
        let db = Database {
            statement_mem_bytes: opts.statement_mem_bytes,
            deadlock_policy: opts.deadlock_policy,
            catalog,
            coordinator,
            placement,
            new_shard: Box::new(new_shard),
            ids,
            range_split_rows: opts.range_split_rows,
            inserted_since_check: parking_lot::Mutex::new(HashMap::new()),
            table_stats: Default::default(),
        };
        db.retain_indexes()?;
        let mover = db.mover();
        mover.install(&db.placement.current())?;
        mover.recover()?;
        Ok(Arc::new(db))
    }

    /// ALTER CLUSTER ADD SHARD: opens a shard under the next id and moves to it the keys the
    /// ring gives it (and nothing of range tables).
    pub fn add_shard(&self) -> SqlResult<(usize, (u64, crate::placement::rebalance::MoveReport))> {
        let _change = self.placement.change.lock();
        let cur = self.placement.current();
        let id = self.coordinator.shard_count();
        if id > 1023 {
            return Err(SqlError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                "a cluster has at most 1024 shards",
            ));
        }
        let client = (self.new_shard)(id)?;
        // A directory left by an add that crashed before its switch holds nothing owned:
        // `Mover::recover` removed its rows, or they are removed here.
        let id2 = self.coordinator.add_shard(client);
        debug_assert_eq!(id, id2);
        // The new shard starts with every secondary index (empty), so copied rows are indexed.
        let read_ts = self.coordinator.begin_read().ts();
        for table in self.catalog.tables() {
            for index in table.secondary_indexes() {
                self.coordinator.call(
                    id,
                    ShardRequest::CreateIndex {
                        spec: index.spec(&table),
                        read_ts,
                    },
                )?;
            }
        }
        self.coordinator.call(
            id,
            ShardRequest::InstallMap {
                map_version: cur.version,
                effective_ts: cur.effective_ts,
            },
        )?;
        crate::placement::rebalance::drop_unowned_on(&self.coordinator, &self.catalog, &cur, id)?;
        let next = cur.next(|m| m.add_shard(id));
        let version = next.version;
        let report = self.mover().change_map(next)?;
        Ok((id, (version, report)))
    }

    /// ALTER CLUSTER REMOVE SHARD n: its arcs go to the ring neighbours, its ranges to the
    /// least loaded shards, and its rows follow. The shard's files stay (unused).
    pub fn remove_shard(
        &self,
        shard: usize,
    ) -> SqlResult<(u64, crate::placement::rebalance::MoveReport)> {
        let _change = self.placement.change.lock();
        let cur = self.placement.current();
        if !cur.shards().contains(&shard) {
            return Err(SqlError::new(
                sqlstate::UNDEFINED_OBJECT,
                format!("shard {shard} is not in the cluster"),
            ));
        }
        if cur.shards().len() == 1 {
            return Err(SqlError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                "cannot remove the last shard",
            ));
        }
        // Range tables without a map entry live on the first shard, which may be the one
        // leaving: give them entries first, under the current first shard.
        let range_tables: Vec<u32> = self
            .catalog
            .tables()
            .iter()
            .filter(|t| t.placement.kind == crate::placement::PlacementKind::Range)
            .map(|t| t.id)
            .collect();
        let next = cur.next(|m| {
            for t in &range_tables {
                let rm = m.effective_range_map(*t);
                m.set_range_map(*t, rm);
            }
            m.remove_shard(shard);
            let tables: Vec<u32> = m.range_tables().map(|(t, _)| *t).collect();
            for t in tables {
                let mut rm = m.range_map(t).expect("listed").clone();
                for i in 0..rm.owners().len() {
                    if rm.owners()[i] == shard {
                        let to = m.least_loaded(Some(shard));
                        rm.assign(i, to);
                        m.set_range_map(t, rm.clone());
                    }
                }
            }
        });
        let version = next.version;
        Ok((version, self.mover().change_map(next)?))
    }

    /// ALTER TABLE t SPLIT AT: each point splits the range holding it; the upper part goes to
    /// the least loaded shard (other than the range's owner when there is one) and its rows
    /// move there.
    pub fn split_at(
        &self,
        table: &TableDef,
        points: &[Vec<Value>],
    ) -> SqlResult<(u64, crate::placement::rebalance::MoveReport)> {
        let _change = self.placement.change.lock();
        let route = TableRoute::for_table(table);
        let keys = points.iter().map(|p| route.key_of_values(p)).collect();
        self.split_keys(table, keys)
    }

    /// Splits `table`'s ranges at encoded shard keys `keys`; the caller holds the change lock.
    fn split_keys(
        &self,
        table: &TableDef,
        keys: Vec<Vec<u8>>,
    ) -> SqlResult<(u64, crate::placement::rebalance::MoveReport)> {
        match self.catalog.get(&table.name) {
            Some(Relation::Table(t)) if t.id == table.id => {}
            _ => return Err(crate::catalog::undefined_table(&table.name)),
        }
        let cur = self.placement.current();
        let mut rm = cur
            .range_map(table.id)
            .cloned()
            .unwrap_or_else(|| crate::placement::range_map::RangeMap::single(cur.shards()[0]));
        let mut next = cur.next(|_| {});
        let mut changed = false;
        for key in keys {
            let holder = rm.owner(&key);
            next.set_range_map(table.id, rm.clone());
            let to = next.least_loaded(Some(holder));
            changed |= rm.split(key, to);
        }
        if !changed {
            return Err(SqlError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                "every split point already is one",
            ));
        }
        next.set_range_map(table.id, rm);
        let version = next.version;
        Ok((version, self.mover().change_map(next)?))
    }

    /// Counts rows a statement inserted into a range-placed table; when enough have arrived
    /// since the last look, measures the table's ranges in the background and splits any
    /// holding more than `range_split_rows` at its median.
    pub fn note_range_inserts(self: &Arc<Self>, table: &TableDef, rows: u64) {
        if self.range_split_rows == 0
            || table.placement.kind != crate::placement::PlacementKind::Range
        {
            return;
        }
        let due = {
            let mut counts = self.inserted_since_check.lock();
            let n = counts.entry(table.id).or_default();
            *n += rows;
            if *n >= (self.range_split_rows / 4).max(1) {
                *n = 0;
                true
            } else {
                false
            }
        };
        if due {
            let db = self.clone();
            let table_id = table.id;
            let name = table.name.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = db.auto_split(table_id, &name) {
                    tracing::warn!(table = %name, error = %e, "automatic range split failed");
                }
            });
        }
    }

    /// Splits every range of the table holding more than `range_split_rows` rows at (about)
    /// its median key, found from a sample of every 16th key.
    pub fn auto_split(&self, table_id: u32, name: &str) -> SqlResult<()> {
        let Some(_change) = self.placement.change.try_lock() else {
            return Ok(()); // another change runs; the next inserts look again
        };
        let table = match self.catalog.get(name) {
            Some(Relation::Table(t)) if t.id == table_id => t,
            _ => return Ok(()),
        };
        let map = self.placement.current();
        let route = TableRoute::for_table(&table);
        let rm = map.effective_range_map(table.id);
        let snapshot = self.coordinator.begin_read();
        let mut counts = vec![0u64; rm.owners().len()];
        let mut samples: Vec<Vec<Vec<u8>>> = vec![Vec::new(); rm.owners().len()];
        for &shard in map.shards() {
            self.mover()
                .for_each_page(&table, shard, snapshot.ts(), &mut |rows| {
                    for r in rows {
                        if map.owner_of_row(&route, &r) != shard {
                            continue;
                        }
                        let key = route.key_of_row(&r);
                        let i = rm.range_of(&key);
                        if counts[i].is_multiple_of(16) {
                            samples[i].push(key);
                        }
                        counts[i] += 1;
                    }
                    Ok(())
                })?;
        }
        drop(snapshot);
        let mut splits = Vec::new();
        for (i, n) in counts.iter().enumerate() {
            if *n > self.range_split_rows {
                let s = &mut samples[i];
                s.sort();
                s.dedup();
                // The median, unless it is the range's own start (a range of one repeated
                // shard-key value cannot split).
                if let Some(mid) = s.get(s.len() / 2)
                    && rm.ranges()[i].0 != Some(mid.as_slice())
                {
                    splits.push(mid.clone());
                }
            }
        }
        if splits.is_empty() {
            return Ok(());
        }
        let (version, report) = self.split_keys(&table, splits)?;
        tracing::info!(
            table = %name,
            version,
            rows_moved = report.rows_moved,
            "range grew past --range-split-rows and split itself"
        );
        Ok(())
    }

    /// SHOW SHARDS: one row per live shard (rows counted by scanning: exact, not cheap).
    fn show_shards(&self) -> SqlResult<Outcome> {
        let map = self.placement.current();
        let shares = map.ring().shares();
        let counts = self.count_rows(&map)?;
        let mut ranges: BTreeMap<usize, i64> = BTreeMap::new();
        for (_, rm) in map.range_tables() {
            for o in rm.owners() {
                *ranges.entry(*o).or_default() += 1;
            }
        }
        let rows: Vec<Row> = map
            .shards()
            .iter()
            .map(|s| {
                vec![
                    Value::Int(*s as i64),
                    Value::Text("active".into()),
                    Value::Float(
                        (shares.get(s).copied().unwrap_or(0.0) * 10_000.0).round() / 100.0,
                    ),
                    Value::Int(i64::from(map.ring().vnodes())),
                    Value::Int(ranges.get(s).copied().unwrap_or(0)),
                    Value::Int(
                        counts
                            .iter()
                            .filter(|c| c.1 == *s)
                            .map(|c| c.3)
                            .sum::<u64>() as i64,
                    ),
                    Value::Int(map.version as i64),
                ]
            })
            .collect();
        Ok(Outcome::Rows {
            columns: shard_columns(),
            tag: format!("SHOW {}", rows.len()),
            rows,
        })
    }

    /// SHOW RANGES: the ranges of every range-placed table, in key order.
    fn show_ranges(&self) -> SqlResult<Outcome> {
        let map = self.placement.current();
        let counts = self.count_rows(&map)?;
        let mut rows = Vec::new();
        let mut tables = self.catalog.tables();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        for t in tables {
            if t.placement.kind != crate::placement::PlacementKind::Range {
                continue;
            }
            let route = TableRoute::for_table(&t);
            let rm = map.effective_range_map(t.id);
            let show = |k: Option<&[u8]>, inf: &str| -> String {
                let Some(mut k) = k else {
                    return inf.to_string();
                };
                let mut parts = Vec::new();
                for ty in &route.key_types {
                    match keycode::decode_key_value(&mut k, *ty) {
                        Ok(v) => parts.push(
                            crate::types::format::format_text(&v, *ty)
                                .unwrap_or_else(|| "NULL".into()),
                        ),
                        Err(_) => break,
                    }
                    if k.is_empty() {
                        break;
                    }
                }
                format!("({})", parts.join(", "))
            };
            for (i, (start, end, owner)) in rm.ranges().into_iter().enumerate() {
                let n: u64 = counts
                    .iter()
                    .filter(|c| c.0 == t.id && c.2 == Some(i))
                    .map(|c| c.3)
                    .sum();
                rows.push(vec![
                    Value::Text(t.name.clone()),
                    Value::Text(show(start, "-infinity")),
                    Value::Text(show(end, "+infinity")),
                    Value::Int(owner as i64),
                    Value::Int(n as i64),
                ]);
            }
        }
        Ok(Outcome::Rows {
            columns: range_columns(),
            tag: format!("SHOW {}", rows.len()),
            rows,
        })
    }

    /// Rows owned per (table, shard, range index for range tables), counted by scanning.
    fn count_rows(&self, map: &crate::placement::ShardMap) -> SqlResult<Vec<RowCount>> {
        let snapshot = self.coordinator.begin_read();
        let mut out: BTreeMap<(u32, usize, Option<usize>), u64> = BTreeMap::new();
        for t in self.catalog.tables() {
            let route = TableRoute::for_table(&t);
            let rm = map.effective_range_map(t.id);
            for &shard in map.shards() {
                self.mover()
                    .for_each_page(&t, shard, snapshot.ts(), &mut |rows| {
                        for r in rows {
                            if map.owner_of_row(&route, &r) != shard {
                                continue;
                            }
                            let range = match route.kind {
                                crate::placement::PlacementKind::Range => {
                                    Some(rm.range_of(&route.key_of_row(&r)))
                                }
                                crate::placement::PlacementKind::Hash => None,
                            };
                            *out.entry((t.id, shard, range)).or_default() += 1;
                        }
                        Ok(())
                    })?;
            }
        }
        Ok(out.into_iter().map(|((t, s, r), n)| (t, s, r, n)).collect())
    }

    pub fn mover(&self) -> crate::placement::rebalance::Mover<'_> {
        crate::placement::rebalance::Mover {
            coord: &self.coordinator,
            catalog: &self.catalog,
            placement: &self.placement,
        }
    }

    /// Tells every shard which indexes the catalog names, so index files built by a CREATE
    /// INDEX (or CREATE TABLE) that crashed before its catalog write, or left by a DROP whose
    /// shard-side part did not happen, are removed.
    fn retain_indexes(&self) -> SqlResult<()> {
        let ids = self.catalog.secondary_index_ids();
        for shard in 0..self.coordinator.shard_count() {
            match self.coordinator.call(
                shard,
                ShardRequest::RetainIndexes {
                    index_ids: ids.clone(),
                },
            ) {
                Ok(_) => {}
                // A shard without index support has nothing to reconcile.
                Err(e) if e.code == sqlstate::FEATURE_NOT_SUPPORTED && ids.is_empty() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends `request` to every shard, in shard order.
    pub fn call_all(&self, request: impl Fn() -> ShardRequest) -> SqlResult<Vec<ShardResponse>> {
        (0..self.coordinator.shard_count())
            .map(|shard| self.coordinator.call(shard, request()))
            .collect()
    }

    /// Drops an index on every shard, best effort (a failure is logged: the index is no longer
    /// in the catalog, and `RetainIndexes` at the next start removes what is left).
    fn drop_index_on_shards(&self, index_id: u32) {
        for shard in 0..self.coordinator.shard_count() {
            if let Err(e) = self
                .coordinator
                .call(shard, ShardRequest::DropIndex { index_id })
            {
                tracing::warn!(index_id, shard, error = %e, "could not drop index on shard");
            }
        }
    }

    /// Builds `index` on every shard from the rows visible at `read_ts`; on failure drops it
    /// again everywhere.
    fn build_index_on_shards(
        &self,
        table: &TableDef,
        index: &IndexDef,
        read_ts: u64,
    ) -> SqlResult<()> {
        let spec = index.spec(table);
        let started = std::time::Instant::now();
        // The shards build at once: each scans, sorts and loads only its own rows.
        let requests = (0..self.coordinator.shard_count())
            .map(|shard| {
                let request = ShardRequest::CreateIndex {
                    spec: spec.clone(),
                    read_ts,
                };
                (shard, request)
            })
            .collect();
        let results = self.coordinator.call_parallel(requests);
        if let Some(e) = results.into_iter().find_map(Result::err) {
            self.drop_index_on_shards(index.id);
            return Err(e);
        }
        tracing::info!(
            index = %index.name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index built on every shard"
        );
        Ok(())
    }

    /// Calls `f` with every row of `table` visible at `read_ts`, a shard page at a time.
    fn for_each_row(
        &self,
        table: &TableDef,
        read_ts: u64,
        f: &mut dyn FnMut(Row) -> SqlResult<()>,
    ) -> SqlResult<()> {
        self.for_each_page(table, read_ts, &mut |_, rows| {
            rows.into_iter().try_for_each(&mut *f)
        })
    }

    /// Calls `f` with each shard's rows of `table` visible at `read_ts`, a scan page at a
    /// time (so a table of any size is walked in bounded memory).
    fn for_each_page(
        &self,
        table: &TableDef,
        read_ts: u64,
        f: &mut dyn FnMut(usize, Vec<Row>) -> SqlResult<()>,
    ) -> SqlResult<()> {
        for shard in 0..self.coordinator.shard_count() {
            let mut start = std::ops::Bound::Included(keys::table_prefix(table.id));
            loop {
                let resp = self.coordinator.call(
                    shard,
                    ShardRequest::Scan(ScanRequest {
                        start: start.clone(),
                        end: std::ops::Bound::Excluded(keys::table_end(table.id)),
                        read_ts,
                        limit: SCAN_PAGE,
                        filter: None,
                        txn: None,
                    }),
                )?;
                let ShardResponse::Rows { rows, resume_after } = resp else {
                    return Err(SqlError::internal("unexpected shard response to Scan"));
                };
                f(shard, rows)?;
                match resume_after {
                    Some(k) => start = std::ops::Bound::Excluded(k),
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// CREATE INDEX on a possibly populated table: holds the write lock for the whole build
    /// (writers wait, readers do not), checks uniqueness over the visible rows, builds on every
    /// shard, then writes the catalog entry (the commit point).
    fn create_index(&self, table: &TableDef, mut index: IndexDef) -> SqlResult<()> {
        // Not while rows move: a new shard must get this index, and copies must be indexed.
        let _placement = self.placement.change.lock();
        let _write = self.coordinator.write_guard();
        // A two-phase commit left in doubt by a failure after its decision would commit below
        // the build's snapshot once resolved, so its rows would miss the index: resolve any
        // now, as a restart would (with the write lock held, none is in progress).
        self.coordinator.recover()?;
        let snapshot = self.coordinator.begin_read();
        let read_ts = snapshot.ts();
        // The table may have been dropped or re-created since binding.
        match self.catalog.get(&table.name) {
            Some(Relation::Table(t)) if t.id == table.id => {}
            _ => return Err(crate::catalog::undefined_table(&table.name)),
        }
        if self.catalog.name_taken(&index.name) {
            return Err(SqlError::new(
                sqlstate::DUPLICATE_TABLE,
                format!("relation \"{}\" already exists", index.name),
            ));
        }
        tracing::info!(index = %index.name, table = %table.name, "building index");
        if index.unique {
            let types: Vec<DataType> = table.columns.iter().map(|c| c.ty).collect();
            let cols: Vec<usize> = index.columns.iter().map(|c| c.column).collect();
            let mut seen: HashSet<Vec<u8>> = HashSet::new();
            let mut rows = 0u64;
            let mut held = 0usize;
            let limit = self.statement_mem_bytes;
            self.for_each_row(table, read_ts, &mut |row| {
                rows += 1;
                if cols.iter().any(|c| row[*c].is_null()) {
                    return Ok(());
                }
                let key = encode_pk(&row, &cols, &types);
                held += key.len() + 48;
                if held > limit {
                    return Err(SqlError::new(
                        sqlstate::OUT_OF_MEMORY,
                        format!(
                            "checking \"{}\" for duplicates needs more than the statement \
                             memory limit",
                            index.name
                        ),
                    )
                    .with_hint("Raise --statement-mem-mb for the build."));
                }
                if !seen.insert(key) {
                    return Err(SqlError::new(
                        sqlstate::UNIQUE_VIOLATION,
                        format!("could not create unique index \"{}\"", index.name),
                    )
                    .with_detail(format!(
                        "Key {} is duplicated.",
                        key_text(table, &cols, &row)
                    )));
                }
                Ok(())
            })?;
            tracing::info!(index = %index.name, rows, "unique index: no duplicates");
        }
        index.id = self.catalog.allocate_index_id()?;
        index.built_ts = read_ts;
        self.build_index_on_shards(table, &index, read_ts)?;
        if let Err(e) = self.catalog.add_index(index.clone()) {
            self.drop_index_on_shards(index.id);
            return Err(e);
        }
        tracing::info!(index = %index.name, id = index.id, "index created");
        Ok(())
    }
}

/// `(a, b)=(1, x)` as PostgreSQL shows a key in error details.
fn key_text(table: &TableDef, cols: &[usize], row: &[Value]) -> String {
    let names: Vec<&str> = cols
        .iter()
        .map(|i| table.columns[*i].name.as_str())
        .collect();
    let vals: Vec<String> = cols
        .iter()
        .map(|i| format_text(&row[*i], table.columns[*i].ty).unwrap_or_else(|| "null".into()))
        .collect();
    format!("({})=({})", names.join(", "), vals.join(", "))
}

fn write_durably(tmp: &Path, dst: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(tmp, dst)?;
    if let Some(dir) = dst.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

const DEFINITION_CHANGED: &str = "was changed by a concurrent statement";

/// The table definition a writing statement was planned with, checked once the write lock
/// is held (DDL takes the same lock, so it cannot change after this).
fn ensure_current(db: &Database, planned: &TableDef) -> SqlResult<()> {
    match db.catalog.get(&planned.name) {
        Some(crate::catalog::Relation::Table(t)) if *t == *planned => Ok(()),
        _ => Err(SqlError::new(
            sqlstate::SERIALIZATION_FAILURE,
            format!("relation \"{}\" {DEFINITION_CHANGED}", planned.name),
        )
        .with_hint("Retry the statement.")),
    }
}

/// Errors that mean DDL changed what the statement was planned against: its table's
/// definition, or an index its plan reads that was dropped meanwhile.
fn column(name: &str, ty: DataType) -> OutputColumn {
    OutputColumn {
        name: name.into(),
        ty,
    }
}

fn shard_columns() -> Vec<OutputColumn> {
    vec![
        column("shard", DataType::Int8),
        column("state", DataType::Text),
        column("ring_share_pct", DataType::Float8),
        column("vnodes", DataType::Int8),
        column("ranges", DataType::Int8),
        column("rows", DataType::Int8),
        column("map_version", DataType::Int8),
    ]
}

fn range_columns() -> Vec<OutputColumn> {
    vec![
        column("table_name", DataType::Text),
        column("range_start", DataType::Text),
        column("range_end", DataType::Text),
        column("shard", DataType::Int8),
        column("rows", DataType::Int8),
    ]
}

fn report_columns() -> Vec<OutputColumn> {
    vec![
        column("change", DataType::Text),
        column("map_version", DataType::Int8),
        column("rows_scanned", DataType::Int8),
        column("rows_moved", DataType::Int8),
        column("moved_pct", DataType::Float8),
        column("bytes_moved", DataType::Int8),
        column("rows_caught_up", DataType::Int8),
        column("elapsed_ms", DataType::Int8),
    ]
}

/// The one-row answer of a placement change: what moved.
fn report_outcome(
    change: String,
    r: &(u64, crate::placement::rebalance::MoveReport),
    tag: &str,
) -> Outcome {
    let (version, r) = r;
    Outcome::Rows {
        columns: report_columns(),
        rows: vec![vec![
            Value::Text(change),
            Value::Int(*version as i64),
            Value::Int(r.rows_scanned as i64),
            Value::Int(r.rows_moved as i64),
            Value::Float((r.moved_fraction() * 10_000.0).round() / 100.0),
            Value::Int(r.bytes_moved as i64),
            Value::Int(r.rows_caught_up as i64),
            Value::Int(r.elapsed_ms as i64),
        ]],
        tag: tag.to_string(),
    }
}

fn is_definition_changed(e: &SqlError) -> bool {
    (e.code == sqlstate::SERIALIZATION_FAILURE && e.message.ends_with(DEFINITION_CHANGED))
        || (e.code == sqlstate::UNDEFINED_OBJECT
            && e.message.starts_with(crate::shard::indexes::MISSING_INDEX))
}

/// What a statement produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    Rows {
        columns: Vec<OutputColumn>,
        rows: Vec<Row>,
        tag: String,
    },
    Command {
        tag: String,
    },
}

/// A statement after parsing, with what a client may ask about it before executing it.
#[derive(Debug, Clone)]
pub struct Described {
    pub param_types: Vec<DataType>,
    pub columns: Vec<OutputColumn>,
}

pub struct Session {
    db: Arc<Database>,
    settings: HashMap<String, String>,
    /// The open transaction block, if any (BEGIN ... COMMIT/ROLLBACK).
    block: Option<Block>,
    /// The isolation level and access mode of the block whose statement is running (the
    /// block itself is out of `block` meanwhile).
    running: Option<(Isolation, bool)>,
}

/// A transaction block, explicit (BEGIN) or implicit (one autocommit statement).
struct Block {
    /// Begun at the block's first statement (so the snapshot and the age are taken then, as
    /// PostgreSQL takes its snapshot), and gone once rolled back after an error.
    txn: Option<Txn>,
    isolation: Isolation,
    read_only: bool,
    explicit: bool,
    /// A statement failed: everything but ROLLBACK (TO SAVEPOINT) fails with 25P02.
    failed: bool,
    /// Savepoints, oldest first, with the statement number each was taken after.
    savepoints: Vec<(String, u32)>,
    /// A statement other than transaction control ran (SET TRANSACTION must come before).
    started: bool,
}

impl Block {
    fn new(isolation: Isolation, read_only: bool, explicit: bool) -> Block {
        Block {
            txn: None,
            isolation,
            read_only,
            explicit,
            failed: false,
            savepoints: Vec::new(),
            started: false,
        }
    }
}

/// The timestamp a statement reads at, what it sends to shards, and the registration that
/// keeps garbage collection from removing what it reads.
struct ReadView {
    read_ts: u64,
    ctx: Option<TxnCtx>,
    _registered: Option<Registered>,
}

fn in_failed_block() -> SqlError {
    SqlError::new(
        sqlstate::IN_FAILED_SQL_TRANSACTION,
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

fn serialization_failure() -> SqlError {
    SqlError::new(
        sqlstate::SERIALIZATION_FAILURE,
        "could not serialize access due to concurrent update",
    )
    .with_hint("Retry the transaction.")
}

fn read_only_violation(what: &str) -> SqlError {
    SqlError::new(
        sqlstate::READ_ONLY_SQL_TRANSACTION,
        format!("cannot execute {what} in a read-only transaction"),
    )
}

/// `lock_timeout` in milliseconds: a number (ms) or a number with a unit, like PostgreSQL.
fn parse_duration_ms(name: &str, value: &str) -> SqlResult<u64> {
    let v = value.trim().to_lowercase();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let bad = || {
        SqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"{name}\": \"{value}\""),
        )
        .with_hint("Valid units for this parameter are \"ms\", \"s\", \"min\", \"h\", and \"d\".")
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "ms" => 1.0,
        "s" => 1e3,
        "min" => 60e3,
        "h" => 3600e3,
        "d" => 86400e3,
        _ => return Err(bad()),
    };
    Ok((n * scale).round() as u64)
}

fn isolation_of(level: &ast::TransactionIsolationLevel) -> SqlResult<Isolation> {
    use ast::TransactionIsolationLevel as L;
    Ok(match level {
        L::ReadUncommitted => Isolation::ReadUncommitted,
        L::ReadCommitted => Isolation::ReadCommitted,
        L::RepeatableRead => Isolation::RepeatableRead,
        L::Serializable => Isolation::Serializable,
        L::Snapshot => return Err(SqlError::unsupported("isolation level SNAPSHOT")),
    })
}

/// The isolation level and access mode a list of transaction modes names.
fn modes_of(modes: &[ast::TransactionMode]) -> SqlResult<(Option<Isolation>, Option<bool>)> {
    let mut isolation = None;
    let mut read_only = None;
    for m in modes {
        match m {
            ast::TransactionMode::IsolationLevel(l) => isolation = Some(isolation_of(l)?),
            ast::TransactionMode::AccessMode(a) => {
                read_only = Some(*a == ast::TransactionAccessMode::ReadOnly)
            }
        }
    }
    Ok((isolation, read_only))
}

fn invalid_isolation(value: &str) -> SqlError {
    SqlError::new(
        sqlstate::INVALID_PARAMETER_VALUE,
        format!("invalid value for parameter \"transaction_isolation\": \"{value}\""),
    )
    .with_hint("Available values: serializable, repeatable read, read committed, read uncommitted.")
}

const SERVER_VERSION: &str = "15.0 (sharddb 0.1.0)";

impl Drop for Session {
    /// A connection that ends inside a transaction block rolls it back (its locks and
    /// intents would otherwise outlive it).
    fn drop(&mut self) {
        let Some(txn) = self.block.take().and_then(|mut b| b.txn.take()) else {
            return;
        };
        let db = self.db.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(move || db.coordinator.rollback(txn));
            }
            Err(_) => db.coordinator.rollback(txn),
        }
    }
}

impl Session {
    pub fn new(db: Arc<Database>) -> Session {
        let mut settings = HashMap::new();
        for (k, v) in [
            ("server_version", SERVER_VERSION),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("datestyle", "ISO, MDY"),
            ("timezone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("transaction_isolation", "read committed"),
            ("default_transaction_isolation", "read committed"),
            ("search_path", "\"$user\", public"),
            ("extra_float_digits", "1"),
            ("application_name", ""),
            ("enable_indexscan", "on"),
            ("enable_seqscan", "on"),
            ("sharddb.pushdown", "on"),
            ("lock_timeout", "0"),
            ("transaction_read_only", "off"),
            ("default_transaction_read_only", "off"),
        ] {
            settings.insert(k.to_string(), v.to_string());
        }
        settings.insert(
            "deadlock_policy".to_string(),
            db.deadlock_policy.to_string(),
        );
        Session {
            db,
            settings,
            block: None,
            running: None,
        }
    }

    /// True inside an explicit transaction block; with the second value, a failed one.
    pub fn transaction_status(&self) -> (bool, bool) {
        match &self.block {
            Some(b) if b.explicit => (true, b.failed),
            _ => (false, false),
        }
    }

    /// Settings as `SHOW` and `current_setting` see them: the transaction's own level and
    /// access mode inside a block.
    fn effective_settings(&self) -> HashMap<String, String> {
        let mut settings = self.settings.clone();
        let (iso, ro) = match (&self.block, self.running) {
            (Some(b), _) => (b.isolation, b.read_only),
            (None, Some(running)) => running,
            (None, None) => (self.default_isolation(), self.default_read_only()),
        };
        settings.insert("transaction_isolation".into(), iso.name().into());
        settings.insert(
            "transaction_read_only".into(),
            if ro { "on" } else { "off" }.into(),
        );
        settings
    }

    fn default_isolation(&self) -> Isolation {
        self.settings
            .get("default_transaction_isolation")
            .and_then(|v| Isolation::parse(v))
            .unwrap_or(Isolation::ReadCommitted)
    }

    fn default_read_only(&self) -> bool {
        self.settings
            .get("default_transaction_read_only")
            .is_some_and(|v| v == "on")
    }

    fn binder(&self, param_types: &[Option<DataType>]) -> Binder<'_> {
        Binder::new(&self.db.catalog, param_types.to_vec())
            .with_map(self.db.placement.current())
            .with_index_scans(
                self.settings.get("enable_indexscan").map(String::as_str) != Some("off"),
            )
            .with_pushdown(self.settings.get("sharddb.pushdown").map(String::as_str) != Some("off"))
            .with_estimator(&*self.db)
            .with_settings(self.effective_settings())
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Parameter and result types of a statement, without running it.
    pub fn describe(
        &self,
        stmt: &ast::Statement,
        param_types: &[Option<DataType>],
    ) -> SqlResult<Described> {
        let binder = self.binder(param_types);
        let bound = binder.bind_statement(stmt)?;
        let columns = match &bound {
            Bound::Query { columns, .. } => columns.clone(),
            Bound::Insert(InsertPlan { returning, .. })
            | Bound::Update(UpdatePlan { returning, .. })
            | Bound::Delete(DeletePlan { returning, .. }) => returning
                .as_ref()
                .map(|r| r.columns.clone())
                .unwrap_or_default(),
            Bound::Explain(_) | Bound::ExplainAnalyze { .. } => vec![OutputColumn {
                name: "QUERY PLAN".into(),
                ty: DataType::Text,
            }],
            Bound::ShowShards => shard_columns(),
            Bound::ShowRanges => range_columns(),
            Bound::AddShard | Bound::RemoveShard(_) | Bound::SplitAt { .. } => report_columns(),
            Bound::Show { name } => vec![OutputColumn {
                name: name.clone(),
                ty: DataType::Text,
            }],
            _ => Vec::new(),
        };
        Ok(Described {
            param_types: binder.param_types(),
            columns,
        })
    }

    /// Executes one statement with parameter values (already of the described types).
    pub fn execute(
        &mut self,
        stmt: &ast::Statement,
        param_types: &[Option<DataType>],
        params: &[Value],
    ) -> SqlResult<Outcome> {
        let result = self.execute_inner(stmt, param_types, params);
        if let Err(e) = &result {
            // Transaction control that fails inside a block fails the block, as in PostgreSQL
            // (statements fail theirs in `execute_inner`; failing twice is harmless).
            self.statement_failed(e);
        }
        result
    }

    fn execute_inner(
        &mut self,
        stmt: &ast::Statement,
        param_types: &[Option<DataType>],
        params: &[Value],
    ) -> SqlResult<Outcome> {
        use ast::Statement as S;
        match stmt {
            S::StartTransaction { modes, .. } => return self.begin(modes),
            S::Commit { .. } => return self.commit(),
            S::Rollback {
                savepoint: None, ..
            } => return Ok(self.rollback()),
            S::Rollback {
                savepoint: Some(name),
                ..
            } => return self.rollback_to(&name.value),
            _ => {}
        }
        if self.block.as_ref().is_some_and(|b| b.failed) {
            return Err(in_failed_block());
        }
        match stmt {
            // Drivers (psycopg) free their protocol-level prepared statements this way; the
            // statements live in the connection's protocol state, which keeps them until the
            // connection ends or the driver replaces them by name.
            S::Deallocate { name, .. } => {
                let all = name.value.eq_ignore_ascii_case("all");
                return Ok(Outcome::Command {
                    tag: if all { "DEALLOCATE ALL" } else { "DEALLOCATE" }.into(),
                });
            }
            S::Savepoint { name } => return self.savepoint(&name.value),
            S::ReleaseSavepoint { name } => return self.release(&name.value),
            S::Set(ast::Set::SetTransaction { modes, session, .. }) => {
                return self.set_transaction(modes, *session);
            }
            _ => {}
        }
        match self.block.take() {
            Some(mut block) => {
                // Settings do not start the transaction (SET transaction_isolation may follow).
                if !matches!(stmt, S::Set(_) | S::ShowVariable { .. }) {
                    block.started = true;
                }
                self.running = Some((block.isolation, block.read_only));
                let result = self.run_statement(stmt, param_types, params, &mut block);
                self.running = None;
                if let Err(e) = &result {
                    self.fail(&mut block, e);
                }
                self.block = Some(block);
                result
            }
            None => {
                let mut block =
                    Block::new(self.default_isolation(), self.default_read_only(), false);
                self.running = Some((block.isolation, block.read_only));
                let result = self.run_statement(stmt, param_types, params, &mut block);
                self.running = None;
                match (result, block.txn.take()) {
                    (Ok(outcome), Some(txn)) => {
                        self.db.coordinator.commit_txn(txn)?;
                        Ok(outcome)
                    }
                    (Err(e), Some(txn)) => {
                        self.db.coordinator.rollback(txn);
                        Err(e)
                    }
                    (result, None) => result,
                }
            }
        }
    }

    /// A statement failed before it reached [`Session::execute`] (it did not parse).
    pub fn statement_failed(&mut self, e: &SqlError) {
        if let Some(mut block) = self.block.take() {
            self.fail(&mut block, e);
            self.block = Some(block);
        }
    }

    /// A statement of `block` failed: the block is failed; its transaction is rolled back at
    /// once (releasing its locks) unless a savepoint may still bring it back.
    fn fail(&self, block: &mut Block, e: &SqlError) {
        block.failed = true;
        if aborts_transaction(e) {
            block.savepoints.clear();
        }
        if block.savepoints.is_empty()
            && let Some(txn) = block.txn.take()
        {
            self.db.coordinator.rollback(txn);
        }
    }

    fn begin(&mut self, modes: &[ast::TransactionMode]) -> SqlResult<Outcome> {
        let (isolation, read_only) = modes_of(modes)?;
        match &mut self.block {
            // PostgreSQL warns and carries on.
            Some(b) => {
                if !b.started {
                    if let Some(i) = isolation {
                        b.isolation = i;
                    }
                    if let Some(r) = read_only {
                        b.read_only = r;
                    }
                }
            }
            None => {
                self.block = Some(Block::new(
                    isolation.unwrap_or_else(|| self.default_isolation()),
                    read_only.unwrap_or_else(|| self.default_read_only()),
                    true,
                ));
            }
        }
        Ok(Outcome::Command {
            tag: "BEGIN".into(),
        })
    }

    fn commit(&mut self) -> SqlResult<Outcome> {
        let Some(mut block) = self.block.take() else {
            // Outside a block PostgreSQL warns and does nothing.
            return Ok(Outcome::Command {
                tag: "COMMIT".into(),
            });
        };
        if block.failed {
            if let Some(txn) = block.txn.take() {
                self.db.coordinator.rollback(txn);
            }
            return Ok(Outcome::Command {
                tag: "ROLLBACK".into(),
            });
        }
        if let Some(txn) = block.txn.take() {
            self.db.coordinator.commit_txn(txn)?;
        }
        Ok(Outcome::Command {
            tag: "COMMIT".into(),
        })
    }

    fn rollback(&mut self) -> Outcome {
        if let Some(mut block) = self.block.take()
            && let Some(txn) = block.txn.take()
        {
            self.db.coordinator.rollback(txn);
        }
        Outcome::Command {
            tag: "ROLLBACK".into(),
        }
    }

    fn explicit_block(&mut self, what: &str) -> SqlResult<&mut Block> {
        match &mut self.block {
            Some(b) if b.explicit => Ok(b),
            _ => Err(SqlError::new(
                sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                format!("{what} can only be used in transaction blocks"),
            )),
        }
    }

    fn savepoint(&mut self, name: &str) -> SqlResult<Outcome> {
        let db = self.db.clone();
        let (iso, ro) = {
            let b = self.explicit_block("SAVEPOINT")?;
            (b.isolation, b.read_only)
        };
        let policy = self.policy();
        let timeout = self.lock_timeout_ms();
        let b = self.explicit_block("SAVEPOINT")?;
        let txn = b
            .txn
            .get_or_insert_with(|| db.coordinator.begin(iso, policy, timeout, ro));
        let seq = txn.seq();
        b.started = true;
        b.savepoints.push((name.to_lowercase(), seq));
        Ok(Outcome::Command {
            tag: "SAVEPOINT".into(),
        })
    }

    fn find_savepoint(b: &Block, name: &str) -> SqlResult<usize> {
        let name = name.to_lowercase();
        b.savepoints
            .iter()
            .rposition(|(n, _)| *n == name)
            .ok_or_else(|| {
                SqlError::new(
                    sqlstate::INVALID_SAVEPOINT_SPECIFICATION,
                    format!("savepoint \"{name}\" does not exist"),
                )
            })
    }

    fn release(&mut self, name: &str) -> SqlResult<Outcome> {
        let b = self.explicit_block("RELEASE SAVEPOINT")?;
        let at = Self::find_savepoint(b, name)?;
        b.savepoints.truncate(at);
        Ok(Outcome::Command {
            tag: "RELEASE".into(),
        })
    }

    fn rollback_to(&mut self, name: &str) -> SqlResult<Outcome> {
        let db = self.db.clone();
        let b = self.explicit_block("ROLLBACK TO SAVEPOINT")?;
        let at = match Self::find_savepoint(b, name) {
            Ok(at) => at,
            Err(e) if b.failed && b.txn.is_none() => {
                // The whole transaction is gone (it was aborted to prevent a deadlock).
                return Err(in_failed_block().with_detail(e.message));
            }
            Err(e) => return Err(e),
        };
        let seq = b.savepoints[at].1;
        if let Some(txn) = b.txn.as_mut() {
            db.coordinator.check_wounded(txn)?;
            db.coordinator.rollback_to(txn, seq)?;
        }
        b.savepoints.truncate(at + 1);
        b.failed = false;
        Ok(Outcome::Command {
            tag: "ROLLBACK".into(),
        })
    }

    fn set_transaction(
        &mut self,
        modes: &[ast::TransactionMode],
        session: bool,
    ) -> SqlResult<Outcome> {
        let (isolation, read_only) = modes_of(modes)?;
        if session {
            if let Some(i) = isolation {
                self.settings
                    .insert("default_transaction_isolation".into(), i.name().into());
            }
            if let Some(r) = read_only {
                self.settings.insert(
                    "default_transaction_read_only".into(),
                    if r { "on" } else { "off" }.into(),
                );
            }
        } else if let Some(b) = self.block.as_mut().filter(|b| b.explicit) {
            if b.started && isolation.is_some_and(|i| i != b.isolation) {
                return Err(SqlError::new(
                    sqlstate::ACTIVE_SQL_TRANSACTION,
                    "SET TRANSACTION ISOLATION LEVEL must be called before any query",
                ));
            }
            if let Some(i) = isolation {
                b.isolation = i;
            }
            if let Some(r) = read_only {
                b.read_only = r;
            }
        }
        // Outside a block PostgreSQL warns that it has no effect.
        Ok(Outcome::Command { tag: "SET".into() })
    }

    fn policy(&self) -> DeadlockPolicy {
        self.settings
            .get("deadlock_policy")
            .and_then(|p| p.parse().ok())
            .unwrap_or(self.db.deadlock_policy)
    }

    fn lock_timeout_ms(&self) -> u64 {
        self.settings
            .get("lock_timeout")
            .and_then(|v| parse_duration_ms("lock_timeout", v).ok())
            .unwrap_or(0)
    }

    /// The block's transaction, begun now if this is its first statement that needs one.
    fn txn<'b>(&self, block: &'b mut Block) -> SqlResult<&'b mut Txn> {
        let db = &self.db;
        let txn = match &mut block.txn {
            Some(t) => t,
            slot => slot.insert(db.coordinator.begin(
                block.isolation,
                self.policy(),
                self.lock_timeout_ms(),
                block.read_only,
            )),
        };
        db.coordinator.check_wounded(txn)?;
        Ok(txn)
    }

    /// Where a statement of `block` reads (see [`Isolation`]).
    fn read_view(&self, block: &mut Block) -> SqlResult<ReadView> {
        let coord = &self.db.coordinator;
        // A lone snapshot read needs no transaction: nothing to lock, nothing of its own.
        let plain = !block.explicit
            && block.txn.is_none()
            && matches!(
                block.isolation,
                Isolation::ReadCommitted | Isolation::RepeatableRead
            );
        if plain {
            let registered = coord.begin_read();
            return Ok(ReadView {
                read_ts: registered.ts(),
                ctx: None,
                _registered: Some(registered),
            });
        }
        let txn = self.txn(block)?;
        txn.next_statement();
        // A SERIALIZABLE transaction's shared locks sit on the shards that owned its rows
        // when it read them; after a data move they protect nothing, so it cannot go on.
        if txn.isolation == Isolation::Serializable
            && txn.start_ts() < self.db.placement.current().effective_ts
        {
            return Err(crate::error::stale_shard_map(
                "the SERIALIZABLE transaction's locks predate a data move between shards".into(),
            ));
        }
        if txn.isolation == Isolation::Serializable {
            // Its reads take shared locks wherever they go; commit and rollback release them.
            coord.touch_all(txn);
        }
        let ctx = Some(txn.ctx());
        Ok(match txn.isolation {
            Isolation::RepeatableRead => ReadView {
                read_ts: txn.start_ts(),
                ctx,
                _registered: None,
            },
            _ => {
                let registered = coord.begin_read();
                ReadView {
                    read_ts: registered.ts(),
                    ctx,
                    _registered: Some(registered),
                }
            }
        })
    }

    /// Binds and runs one statement in `block`. A writing statement is bound before it holds
    /// the DDL gate; if DDL changed its table meanwhile it is bound again against the new
    /// definition — a few times at most, then the client gets 40001 and retries.
    fn run_statement(
        &mut self,
        stmt: &ast::Statement,
        param_types: &[Option<DataType>],
        params: &[Value],
        block: &mut Block,
    ) -> SqlResult<Outcome> {
        let mut attempts = 0;
        loop {
            let horizon = block
                .txn
                .as_ref()
                .filter(|t| t.isolation == Isolation::RepeatableRead)
                .map(Txn::start_ts);
            let bound = self
                .binder(param_types)
                .with_index_horizon(horizon)
                .bind_statement(stmt)?;
            match self.run_bound(bound, params, block) {
                Err(e) if is_definition_changed(&e) && attempts < 3 => attempts += 1,
                // Routed with a map that changed meanwhile: route again with the new one
                // (a snapshot older than the new map fails again and reaches the client).
                Err(e) if crate::error::is_stale_shard_map(&e) && attempts < 3 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(2 << attempts));
                }
                other => return other,
            }
        }
    }

    fn run_bound(
        &mut self,
        bound: Bound,
        params: &[Value],
        block: &mut Block,
    ) -> SqlResult<Outcome> {
        let db = self.db.clone();
        let ddl = match &bound {
            Bound::CreateIndex { .. } => Some("CREATE INDEX"),
            Bound::DropIndexes { .. } => Some("DROP INDEX"),
            Bound::DropTables { views: false, .. } => Some("DROP TABLE"),
            Bound::AddShard => Some("ALTER CLUSTER ADD SHARD"),
            Bound::RemoveShard(_) => Some("ALTER CLUSTER REMOVE SHARD"),
            Bound::SplitAt { .. } => Some("ALTER TABLE ... SPLIT AT"),
            _ => None,
        };
        if let Some(what) = ddl
            && block.explicit
        {
            // It would wait for every writing transaction to end, this one included.
            return Err(SqlError::new(
                sqlstate::ACTIVE_SQL_TRANSACTION,
                format!("{what} cannot run inside a transaction block"),
            )
            .with_hint(
                "sharddb runs index and table removal DDL outside transactions; COMMIT first.",
            ));
        }
        match bound {
            Bound::Query { plan, columns } => {
                let view = self.read_view(block)?;
                let exec = Executor::new(&db.coordinator, &db.placement, view.read_ts, params)
                    .with_txn(view.ctx)
                    .with_mem_limit(db.statement_mem_bytes);
                let rows = exec.run(&plan, &[])?;
                let tag = format!("SELECT {}", rows.len());
                Ok(Outcome::Rows { columns, rows, tag })
            }
            Bound::Insert(p) => self.insert(p, params, block),
            Bound::Update(p) => self.update(p, params, block),
            Bound::Delete(p) => self.delete(p, params, block),
            Bound::ShowShards => db.show_shards(),
            Bound::ShowRanges => db.show_ranges(),
            Bound::AddShard => {
                let (shard, report) = db.add_shard()?;
                Ok(report_outcome(
                    format!("added shard {shard}"),
                    &report,
                    "ALTER CLUSTER",
                ))
            }
            Bound::RemoveShard(shard) => {
                let report = db.remove_shard(shard)?;
                Ok(report_outcome(
                    format!("removed shard {shard}"),
                    &report,
                    "ALTER CLUSTER",
                ))
            }
            Bound::SplitAt { table, points } => {
                let report = db.split_at(&table, &points)?;
                Ok(report_outcome(
                    format!("{} split point(s) on {}", points.len(), table.name),
                    &report,
                    "ALTER TABLE",
                ))
            }
            Bound::CreateTable { def, if_not_exists } => {
                // Not while rows move (a new shard must get the table's indexes). A transaction
                // that wrote holds the DDL gate a move may be waiting for: it must not wait.
                let holds_gate = block.txn.as_ref().is_some_and(Txn::has_written);
                let _placement = if holds_gate {
                    Some(db.placement.change.try_lock().ok_or_else(|| {
                        SqlError::new(
                            sqlstate::LOCK_NOT_AVAILABLE,
                            "a placement change (ADD SHARD, SPLIT AT) is in progress",
                        )
                        .with_hint("Retry CREATE TABLE, or run it outside this transaction.")
                    })?)
                } else {
                    Some(db.placement.change.lock())
                };
                // The table is new, so its (empty) indexes are built at any snapshot.
                let build = |t: &TableDef| -> SqlResult<()> {
                    let read_ts = db.coordinator.begin_read().ts();
                    for i in t.secondary_indexes() {
                        db.build_index_on_shards(t, i, read_ts)?;
                    }
                    Ok(())
                };
                let undo = |t: &TableDef| {
                    for i in t.secondary_indexes() {
                        db.drop_index_on_shards(i.id);
                    }
                };
                // A new range table has one range on the first shard without a map entry
                // (`ShardMap::effective_range_map`); SPLIT AT creates the entry.
                if db
                    .catalog
                    .create_table(def.clone(), if_not_exists, &build, &undo)?
                    .is_none()
                {
                    tracing::info!(table = %def.name, "relation already exists, skipping");
                }
                Ok(Outcome::Command {
                    tag: "CREATE TABLE".into(),
                })
            }
            Bound::CreateIndex {
                table,
                index,
                if_not_exists,
            } => {
                if if_not_exists && db.catalog.name_taken(&index.name) {
                    tracing::info!(index = %index.name, "relation already exists, skipping");
                } else {
                    db.create_index(&table, index)?;
                }
                Ok(Outcome::Command {
                    tag: "CREATE INDEX".into(),
                })
            }
            Bound::DropIndexes { names, if_exists } => {
                for n in &names {
                    match db.catalog.index(n) {
                        Some((t, i)) if i.constraint => {
                            return Err(SqlError::new(
                                sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                                format!(
                                    "cannot drop index {n} because constraint {n} on table {} \
                                     requires it",
                                    t.name
                                ),
                            )
                            .with_hint(format!(
                                "You can drop constraint {n} on table {} instead.",
                                t.name
                            )));
                        }
                        Some(_) => {}
                        None if db.catalog.get(n).is_some() => {
                            return Err(SqlError::new(
                                sqlstate::WRONG_OBJECT_TYPE,
                                format!("\"{n}\" is not an index"),
                            ));
                        }
                        None if if_exists => {}
                        None => return Err(crate::catalog::undefined_index(n)),
                    }
                }
                // Writers hold this lock while they check unique indexes; none is mid-statement.
                let _write = db.coordinator.write_guard();
                for n in &names {
                    if db.catalog.index(n).is_none() {
                        continue;
                    }
                    let index = db.catalog.remove_index(n)?;
                    db.drop_index_on_shards(index.id);
                }
                Ok(Outcome::Command {
                    tag: "DROP INDEX".into(),
                })
            }
            Bound::CreateView { def, or_replace } => {
                db.catalog.create_view(def, or_replace)?;
                Ok(Outcome::Command {
                    tag: "CREATE VIEW".into(),
                })
            }
            Bound::DropTables {
                names,
                if_exists,
                views,
            } => {
                // Check everything first so that a failing name drops nothing.
                for n in &names {
                    match (db.catalog.get(n), views) {
                        // Even with IF EXISTS: the view exists and cannot be dropped.
                        (Some(Relation::System(view)), _) => return Err(view.read_only_error()),
                        (None, _) if db.catalog.index(n).is_some() => {
                            return Err(SqlError::new(
                                sqlstate::WRONG_OBJECT_TYPE,
                                format!(
                                    "\"{n}\" is not a {}",
                                    if views { "view" } else { "table" }
                                ),
                            )
                            .with_hint("Use DROP INDEX to remove an index."));
                        }
                        (None, _) if if_exists => {}
                        (None, _) => {
                            return Err(SqlError::new(
                                sqlstate::UNDEFINED_TABLE,
                                format!(
                                    "{} \"{n}\" does not exist",
                                    if views { "view" } else { "table" }
                                ),
                            ));
                        }
                        (Some(Relation::Table(_)), true) => {
                            return Err(SqlError::new(
                                sqlstate::WRONG_OBJECT_TYPE,
                                format!("\"{n}\" is not a view"),
                            )
                            .with_hint("Use DROP TABLE to remove a table."));
                        }
                        (Some(Relation::View(_)), false) => {
                            return Err(SqlError::new(
                                sqlstate::WRONG_OBJECT_TYPE,
                                format!("\"{n}\" is not a table"),
                            )
                            .with_hint("Use DROP VIEW to remove a view."));
                        }
                        _ => {}
                    }
                }
                for n in &names {
                    if db.catalog.get(n).is_none() {
                        continue;
                    }
                    // Under the write lock, like every index DDL: a writing statement never
                    // sees an index it planned with vanish before it is done.
                    let dropped = {
                        // Views have no rows or indexes: no writer to wait for (and a
                        // transaction block may drop one, holding the gate itself).
                        let _write = matches!(db.catalog.get(n), Some(Relation::Table(_)))
                            .then(|| db.coordinator.write_guard());
                        let rel = db.catalog.drop_relation(n)?;
                        if let Relation::Table(t) = &rel {
                            for i in t.secondary_indexes() {
                                db.drop_index_on_shards(i.id);
                            }
                        }
                        rel
                    };
                    if let Relation::Table(t) = dropped {
                        self.delete_all_rows(&t)?;
                    }
                }
                Ok(Outcome::Command {
                    tag: if views { "DROP VIEW" } else { "DROP TABLE" }.into(),
                })
            }
            Bound::ExplainAnalyze { plan } => {
                let view = self.read_view(block)?;
                let exec = Executor::new(&db.coordinator, &db.placement, view.read_ts, params)
                    .with_txn(view.ctx)
                    .with_mem_limit(db.statement_mem_bytes)
                    .with_analyze();
                // The routes under the map the execution uses (a move may have landed since
                // binding).
                let mut lines = plan.explain_routed(&exec.map);
                let started = std::time::Instant::now();
                let rows = exec.run(&plan, &[])?;
                let elapsed = started.elapsed();
                lines.push(format!(
                    "Execution: {} rows in {:.3} ms",
                    rows.len(),
                    elapsed.as_secs_f64() * 1e3
                ));
                for v in exec.visits() {
                    if v.shard == usize::MAX {
                        lines.push(format!("  {}", v.table));
                        continue;
                    }
                    lines.push(format!(
                        "  Shard {} <- {}: {} rows, {} requests, {:.3} ms",
                        v.shard,
                        v.table,
                        v.rows,
                        v.requests,
                        v.micros as f64 / 1e3
                    ));
                }
                Ok(Outcome::Rows {
                    columns: vec![OutputColumn {
                        name: "QUERY PLAN".into(),
                        ty: DataType::Text,
                    }],
                    tag: format!("EXPLAIN {}", lines.len()),
                    rows: lines.into_iter().map(|l| vec![Value::Text(l)]).collect(),
                })
            }
            Bound::Explain(lines) => Ok(Outcome::Rows {
                columns: vec![OutputColumn {
                    name: "QUERY PLAN".into(),
                    ty: DataType::Text,
                }],
                tag: format!("EXPLAIN {}", lines.len()),
                rows: lines.into_iter().map(|l| vec![Value::Text(l)]).collect(),
            }),
            Bound::Set { name, value } => {
                let name = name.to_lowercase();
                match name.as_str() {
                    "transaction_isolation" => {
                        let i =
                            Isolation::parse(&value).ok_or_else(|| invalid_isolation(&value))?;
                        if block.explicit {
                            if block.started && i != block.isolation {
                                return Err(SqlError::new(
                                    sqlstate::ACTIVE_SQL_TRANSACTION,
                                    "SET TRANSACTION ISOLATION LEVEL must be called before any query",
                                ));
                            }
                            block.isolation = i;
                        }
                        return Ok(Outcome::Command { tag: "SET".into() });
                    }
                    "default_transaction_isolation" => {
                        let i =
                            Isolation::parse(&value).ok_or_else(|| invalid_isolation(&value))?;
                        self.settings.insert(name, i.name().into());
                        return Ok(Outcome::Command { tag: "SET".into() });
                    }
                    "deadlock_policy" => {
                        let p: DeadlockPolicy = value.parse().map_err(|_| {
                            SqlError::new(
                                sqlstate::INVALID_PARAMETER_VALUE,
                                format!(
                                    "invalid value for parameter \"deadlock_policy\": \"{value}\""
                                ),
                            )
                            .with_hint("Available values: wait_die, wound_wait.")
                        })?;
                        self.settings.insert(name, p.to_string());
                        return Ok(Outcome::Command { tag: "SET".into() });
                    }
                    "lock_timeout" => {
                        parse_duration_ms(&name, &value)?;
                    }
                    _ => {}
                }
                let value = if BOOL_SETTINGS.contains(&name.as_str()) {
                    parse_bool_setting(&name, &value)?.to_string()
                } else {
                    value
                };
                self.settings.insert(name, value);
                Ok(Outcome::Command { tag: "SET".into() })
            }
            Bound::Show { name } => {
                let key = name.to_lowercase();
                let settings = self.effective_settings();
                if key == "all" {
                    let mut all: Vec<(&String, &String)> = settings.iter().collect();
                    all.sort();
                    let rows: Vec<Row> = all
                        .into_iter()
                        .map(|(k, v)| vec![Value::Text(k.clone()), Value::Text(v.clone())])
                        .collect();
                    return Ok(Outcome::Rows {
                        columns: vec![
                            OutputColumn {
                                name: "name".into(),
                                ty: DataType::Text,
                            },
                            OutputColumn {
                                name: "setting".into(),
                                ty: DataType::Text,
                            },
                        ],
                        tag: format!("SHOW {}", rows.len()),
                        rows,
                    });
                }
                // `SHOW prefix.name` arrives as two words (custom settings like
                // `sharddb.pushdown`).
                let key = match key.split_once(' ') {
                    Some((prefix, n)) if !settings.contains_key(&key) && !n.contains(' ') => {
                        format!("{prefix}.{n}")
                    }
                    _ => key,
                };
                let value = settings.get(&key).cloned().ok_or_else(|| {
                    SqlError::new(
                        sqlstate::UNDEFINED_OBJECT,
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                Ok(Outcome::Rows {
                    columns: vec![OutputColumn {
                        name: key,
                        ty: DataType::Text,
                    }],
                    rows: vec![vec![Value::Text(value)]],
                    tag: "SHOW".into(),
                })
            }
            // Transaction control is handled before binding (see `execute`).
            Bound::Begin => Ok(Outcome::Command {
                tag: "BEGIN".into(),
            }),
            Bound::Commit => Ok(Outcome::Command {
                tag: "COMMIT".into(),
            }),
            Bound::Rollback => Ok(Outcome::Command {
                tag: "ROLLBACK".into(),
            }),
        }
    }

    fn returning_outcome(
        &self,
        returning: Option<Returning>,
        rows: &[Row],
        params: &[Value],
        tag: String,
        exec: &Executor<'_>,
    ) -> SqlResult<Outcome> {
        match returning {
            None => Ok(Outcome::Command { tag }),
            Some(r) => {
                let ctx = EvalContext {
                    params,
                    outer: Vec::new(),
                    subqueries: Some(exec),
                    ids: Some(&self.db.ids),
                };
                let out = rows
                    .iter()
                    .map(|row| r.exprs.iter().map(|e| e.eval(row, &ctx)).collect())
                    .collect::<SqlResult<Vec<Row>>>()?;
                Ok(Outcome::Rows {
                    columns: r.columns,
                    rows: out,
                    tag,
                })
            }
        }
    }

    /// What every writing statement does first: a transaction that may write, the DDL gate
    /// held (so the table's definition stays put), and the definition checked.
    fn begin_writing<'b>(
        &self,
        block: &'b mut Block,
        what: &str,
        table: &TableDef,
    ) -> SqlResult<&'b mut Txn> {
        if block.read_only {
            return Err(read_only_violation(what));
        }
        let txn = self.txn(block)?;
        self.db.coordinator.enter_writing(txn)?;
        ensure_current(&self.db, table)?;
        Ok(txn)
    }

    fn insert(&mut self, p: InsertPlan, params: &[Value], block: &mut Block) -> SqlResult<Outcome> {
        let db = self.db.clone();
        self.begin_writing(block, "INSERT", &p.table)?;
        let view = self.read_view(block)?;
        let txn = block.txn.as_mut().expect("begun by begin_writing");
        let exec = Executor::new(&db.coordinator, &db.placement, view.read_ts, params)
            .with_txn(view.ctx)
            .with_mem_limit(db.statement_mem_bytes);
        txn.map_version = exec.map.version;
        let source = exec.run(&p.source, &[])?;
        let ctx = exec.ctx(&[]);
        let table = &p.table;
        let route = TableRoute::for_table(table);
        let types: Vec<DataType> = table.columns.iter().map(|c| c.ty).collect();
        let mut writes: BTreeMap<usize, Vec<TxnWrite>> = BTreeMap::new();
        let mut positions: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut new_keys: HashSet<Vec<u8>> = HashSet::new();
        let mut inserted = Vec::with_capacity(source.len());
        for src in source {
            let mut row = Vec::with_capacity(table.columns.len());
            for (ci, s) in p.columns.iter().enumerate() {
                let col = &table.columns[ci];
                let v = match s {
                    ColumnSource::Input { index, from } => {
                        let v = src.get(*index).cloned().unwrap_or(Value::Null);
                        if v.is_null() {
                            v
                        } else {
                            cast::cast(v, *from, col.ty, CastContext::Assignment)?
                        }
                    }
                    ColumnSource::Default(e) => e.eval(&[], &ctx)?,
                    ColumnSource::RowId => Value::Int(db.ids.next_id()),
                };
                row.push(v);
            }
            check_not_null(table, &row)?;
            let pk = encode_pk(&row, &table.primary_key, &types);
            if !new_keys.insert(pk.clone()) {
                return Err(duplicate_key(table, &row));
            }
            let shard = exec.map.owner_of_row(&route, &row);
            let mut value = Vec::with_capacity(64);
            row::encode_row(&row, &mut value);
            writes.entry(shard).or_default().push(TxnWrite {
                key: keys::row_key(table.id, &pk),
                value: Some(value),
                must_not_exist: true,
            });
            positions.entry(shard).or_default().push(inserted.len());
            inserted.push(row);
        }
        let own: HashSet<Vec<u8>> = new_keys
            .iter()
            .map(|pk| keys::row_key(table.id, pk))
            .collect();
        self.check_unique_indexes(txn, &exec, table, &inserted, &own, None)?;
        let dups = db.coordinator.write(txn, writes)?;
        if let Some(ri) = first_duplicate(&dups, |shard, i| {
            positions.get(&shard).and_then(|p| p.get(i)).copied()
        }) {
            return Err(duplicate_key(table, &inserted[ri]));
        }
        db.note_range_inserts(table, inserted.len() as u64);
        let tag = format!("INSERT 0 {}", inserted.len());
        self.returning_outcome(p.returning, &inserted, params, tag, &exec)
    }

    /// Unique indexes: no two rows of `rows` (the statement's new row versions) and no other
    /// row may hold the same non-NULL key. Each probed value is locked exclusively on every
    /// shard first (so a concurrent insert of the same value waits for this transaction to
    /// end), then probed against the newest committed rows and this transaction's own writes;
    /// hits on `own` engine keys (rows this statement rewrites or writes) are ignored because
    /// their new values are among `rows`. With `changed` (an UPDATE's assigned columns),
    /// indexes none of whose columns change are skipped: each row keeps the key it already
    /// held uniquely.
    fn check_unique_indexes(
        &self,
        txn: &mut Txn,
        exec: &Executor<'_>,
        table: &TableDef,
        rows: &[Row],
        own: &HashSet<Vec<u8>>,
        changed: Option<&[usize]>,
    ) -> SqlResult<()> {
        const PROBE_BATCH: usize = 4096;
        let db = &self.db;
        let ctx = txn.ctx();
        let route = TableRoute::for_table(table);
        let map = &exec.map;
        for index in table.secondary_indexes().filter(|i| i.unique) {
            let cols: Vec<usize> = index.columns.iter().map(|c| c.column).collect();
            if let Some(changed) = changed
                && !cols.iter().any(|c| changed.contains(c))
            {
                continue;
            }
            let types: Vec<DataType> = cols.iter().map(|c| table.columns[*c].ty).collect();
            let desc: Vec<bool> = index.columns.iter().map(|c| c.desc).collect();
            let violation = |row: &Row| {
                SqlError::new(
                    sqlstate::UNIQUE_VIOLATION,
                    format!(
                        "duplicate key value violates unique constraint \"{}\"",
                        index.name
                    ),
                )
                .with_detail(format!(
                    "Key {} already exists.",
                    key_text(table, &cols, row)
                ))
            };
            let mut seen: HashSet<Vec<u8>> = HashSet::new();
            let mut probes: Vec<UniqueProbe> = Vec::new();
            let mut probe_rows: Vec<usize> = Vec::new();
            for (ri, row) in rows.iter().enumerate() {
                let values: Vec<Value> = cols.iter().map(|c| row[*c].clone()).collect();
                if values.iter().any(Value::is_null) {
                    continue; // NULLs are distinct
                }
                let mut key = Vec::new();
                keycode::encode_key_tuple(&values, &types, &desc, &mut key);
                if !seen.insert(key.clone()) {
                    return Err(violation(row));
                }
                probes.push(UniqueProbe { key });
                probe_rows.push(ri);
            }
            for (chunk_no, chunk) in probes.chunks(PROBE_BATCH).enumerate() {
                for &shard in map.shards() {
                    let resp = db.coordinator.call_txn(
                        txn,
                        shard,
                        ShardRequest::routed(
                            map.version,
                            None,
                            ShardRequest::UniqueCheck {
                                index_id: index.id,
                                probes: chunk.to_vec(),
                                txn: Some(ctx),
                            },
                        ),
                    )?;
                    let ShardResponse::UniqueHits(hits) = resp else {
                        return Err(SqlError::internal(
                            "unexpected shard response to UniqueCheck",
                        ));
                    };
                    // A copy left by a shard-map change on a shard that does not own it holds
                    // nothing (its owner's row is the row).
                    let owned = |key: &[u8]| {
                        !map.filter_unowned
                            || keys::split_row_key(key)
                                .and_then(|(_, pk)| map.owner_of_pk(&route, pk).ok())
                                .is_none_or(|o| o == shard)
                    };
                    if let Some((pos, _)) = hits
                        .iter()
                        .find(|(_, key)| !own.contains(key) && owned(key))
                    {
                        let ri = probe_rows
                            .get(chunk_no * PROBE_BATCH + pos)
                            .ok_or_else(|| SqlError::internal("UniqueCheck hit out of range"))?;
                        return Err(violation(&rows[*ri]));
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads the rows a statement changes and locks them. At READ COMMITTED a row changed
    /// after the statement's snapshot makes the statement start over with a new snapshot
    /// (keeping the locks it has, so the second look is final); at REPEATABLE READ it fails
    /// with 40001 (first updater wins); under SERIALIZABLE the shared locks the scan took
    /// already kept the rows still.
    fn locked_rows(
        &self,
        block: &mut Block,
        table: &TableDef,
        scan: &crate::sql::plan::Plan,
        params: &[Value],
    ) -> SqlResult<(Vec<Row>, ReadView)> {
        let db = &self.db;
        let types: Vec<DataType> = table.columns.iter().map(|c| c.ty).collect();
        let mut attempts = 0;
        loop {
            let view = self.read_view(block)?;
            let txn = block.txn.as_mut().expect("begun by begin_writing");
            // At READ UNCOMMITTED the rows to change are found as READ COMMITTED finds them
            // (committed versions and the transaction's own intents), as in PostgreSQL: a new
            // value computed from another transaction's intent would outlive that intent's
            // rollback (the lock wait ends, the committed version is unchanged, and the write
            // goes through with the rolled-back value in it).
            let scan_ctx = view.ctx.map(|mut c| {
                if c.isolation == Isolation::ReadUncommitted {
                    c.isolation = Isolation::ReadCommitted;
                }
                c
            });
            let exec = Executor::new(&db.coordinator, &db.placement, view.read_ts, params)
                .with_txn(scan_ctx)
                .with_mem_limit(db.statement_mem_bytes);
            txn.map_version = exec.map.version;
            let rows = exec.run(scan, &[])?;
            let route = TableRoute::for_table(table);
            let mut by_shard: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
            for r in &rows {
                let pk = encode_pk(r, &table.primary_key, &types);
                by_shard
                    .entry(exec.map.owner_of_row(&route, r))
                    .or_default()
                    .push(keys::row_key(table.id, &pk));
            }
            let states = db.coordinator.lock_rows(txn, by_shard)?;
            let changed = states
                .values()
                .flatten()
                .any(|s| matches!(s, KeyState::Committed { ts, .. } if *ts > view.read_ts));
            if !changed || txn.isolation == Isolation::Serializable {
                return Ok((rows, view));
            }
            if txn.isolation == Isolation::RepeatableRead {
                return Err(serialization_failure());
            }
            attempts += 1;
            if attempts > 100 {
                return Err(serialization_failure()
                    .with_detail("The rows kept changing under a READ COMMITTED statement."));
            }
        }
    }

    fn update(&mut self, p: UpdatePlan, params: &[Value], block: &mut Block) -> SqlResult<Outcome> {
        let db = self.db.clone();
        self.begin_writing(block, "UPDATE", &p.table)?;
        let (old_rows, view) = self.locked_rows(block, &p.table, &p.scan, params)?;
        let txn = block.txn.as_mut().expect("begun by begin_writing");
        let exec = Executor::new(&db.coordinator, &db.placement, view.read_ts, params)
            .with_txn(view.ctx)
            .with_mem_limit(db.statement_mem_bytes);
        txn.map_version = exec.map.version;
        let ctx = exec.ctx(&[]);
        let table = &p.table;
        let route = TableRoute::for_table(table);
        let types: Vec<DataType> = table.columns.iter().map(|c| c.ty).collect();
        let mut new_rows = Vec::with_capacity(old_rows.len());
        let mut old_keys: HashSet<Vec<u8>> = HashSet::new();
        for old in &old_rows {
            let mut new = old.clone();
            for (i, e) in &p.assignments {
                new[*i] = e.eval(old, &ctx)?;
            }
            check_not_null(table, &new)?;
            old_keys.insert(encode_pk(old, &table.primary_key, &types));
            new_rows.push(new);
        }
        // A new key conflicts if two rows of this statement take it, or a row outside the
        // statement holds it (the shard checks that once it holds the key's lock). Keys
        // vacated by moved rows and not retaken are deleted.
        let mut new_keys: HashSet<Vec<u8>> = HashSet::new();
        for new in &new_rows {
            let nk = encode_pk(new, &table.primary_key, &types);
            if !new_keys.insert(nk) {
                return Err(duplicate_key(table, new));
            }
        }
        let own: HashSet<Vec<u8>> = old_keys
            .iter()
            .chain(new_keys.iter())
            .map(|pk| keys::row_key(table.id, pk))
            .collect();
        let assigned: Vec<usize> = p.assignments.iter().map(|(c, _)| *c).collect();
        self.check_unique_indexes(txn, &exec, table, &new_rows, &own, Some(&assigned))?;
        let mut writes: BTreeMap<usize, Vec<TxnWrite>> = BTreeMap::new();
        let mut positions: BTreeMap<usize, Vec<Option<usize>>> = BTreeMap::new();
        for ok in old_keys.iter().filter(|k| !new_keys.contains(*k)) {
            let shard = exec.map.owner_of_pk(&route, ok)?;
            writes.entry(shard).or_default().push(TxnWrite {
                key: keys::row_key(table.id, ok),
                value: None,
                must_not_exist: false,
            });
            positions.entry(shard).or_default().push(None);
        }
        for (ri, new) in new_rows.iter().enumerate() {
            let nk = encode_pk(new, &table.primary_key, &types);
            let mut value = Vec::with_capacity(64);
            row::encode_row(new, &mut value);
            let shard = exec.map.owner_of_row(&route, new);
            writes.entry(shard).or_default().push(TxnWrite {
                key: keys::row_key(table.id, &nk),
                value: Some(value),
                must_not_exist: !old_keys.contains(&nk),
            });
            positions.entry(shard).or_default().push(Some(ri));
        }
        let dups = db.coordinator.write(txn, writes)?;
        if let Some(ri) = first_duplicate(&dups, |shard, i| {
            positions
                .get(&shard)
                .and_then(|p| p.get(i))
                .copied()
                .flatten()
        }) {
            return Err(duplicate_key(table, &new_rows[ri]));
        }
        let tag = format!("UPDATE {}", new_rows.len());
        self.returning_outcome(p.returning, &new_rows, params, tag, &exec)
    }

    fn delete(&mut self, p: DeletePlan, params: &[Value], block: &mut Block) -> SqlResult<Outcome> {
        let db = self.db.clone();
        self.begin_writing(block, "DELETE", &p.table)?;
        let (rows, view) = self.locked_rows(block, &p.table, &p.scan, params)?;
        let txn = block.txn.as_mut().expect("begun by begin_writing");
        let exec = Executor::new(&db.coordinator, &db.placement, view.read_ts, params)
            .with_txn(view.ctx)
            .with_mem_limit(db.statement_mem_bytes);
        txn.map_version = exec.map.version;
        let table = &p.table;
        let route = TableRoute::for_table(table);
        let types: Vec<DataType> = table.columns.iter().map(|c| c.ty).collect();
        let mut writes: BTreeMap<usize, Vec<TxnWrite>> = BTreeMap::new();
        for r in &rows {
            let pk = encode_pk(r, &table.primary_key, &types);
            writes
                .entry(exec.map.owner_of_row(&route, r))
                .or_default()
                .push(TxnWrite {
                    key: keys::row_key(table.id, &pk),
                    value: None,
                    must_not_exist: false,
                });
        }
        db.coordinator.write(txn, writes)?;
        let tag = format!("DELETE {}", rows.len());
        self.returning_outcome(p.returning, &rows, params, tag, &exec)
    }

    /// Deletes a dropped table's rows, shard by shard, a page at a time.
    fn delete_all_rows(&self, table: &TableDef) -> SqlResult<()> {
        let db = &self.db;
        // Not while rows move: copies made for a dropped table would never be deleted.
        let _placement = db.placement.change.lock();
        let _write = db.coordinator.write_guard();
        let types: Vec<DataType> = table.columns.iter().map(|c| c.ty).collect();
        let snapshot = db.coordinator.begin_read();
        let read_ts = snapshot.ts();
        // Page by page on each shard, so a table of any size is dropped in bounded memory.
        db.for_each_page(table, read_ts, &mut |shard, rows| {
            let writes: Vec<RowWrite> = rows
                .iter()
                .map(|r| RowWrite {
                    key: keys::row_key(table.id, &encode_pk(r, &table.primary_key, &types)),
                    value: None,
                })
                .collect();
            // Each page commits on its own: the table is already gone from the catalog, so
            // nobody can observe a half-deleted table.
            if !writes.is_empty() {
                db.coordinator.apply_outside_txn(shard, writes)?;
            }
            Ok(())
        })
    }
}

/// Planner switches, boolean like PostgreSQL's. `enable_seqscan` is accepted for
/// compatibility; sharddb has no cost model for it to bias.
const BOOL_SETTINGS: &[&str] = &["enable_indexscan", "enable_seqscan", "sharddb.pushdown"];

/// PostgreSQL's boolean setting syntax (`on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0`, and
/// unique prefixes), shown as `on`/`off`.
fn parse_bool_setting(name: &str, value: &str) -> SqlResult<&'static str> {
    let v = value.trim().to_lowercase();
    let on = ["on", "true", "yes", "1"];
    let off = ["off", "false", "no", "0"];
    let matches = |words: &[&str]| {
        words.iter().any(|w| *w == v)
            || (v.len() >= 2 && words.iter().any(|w| w.len() > 2 && w.starts_with(&v)))
            || (v.len() == 1 && ["t", "y"].contains(&v.as_str()) && words.contains(&"true"))
            || (v.len() == 1 && ["f", "n"].contains(&v.as_str()) && words.contains(&"false"))
    };
    if matches(&on) {
        Ok("on")
    } else if matches(&off) {
        Ok("off")
    } else {
        Err(SqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("parameter \"{name}\" requires a Boolean value"),
        ))
    }
}

fn check_not_null(table: &TableDef, row: &[Value]) -> SqlResult<()> {
    for (c, v) in table.columns.iter().zip(row) {
        if !c.nullable && v.is_null() {
            return Err(SqlError::new(
                sqlstate::NOT_NULL_VIOLATION,
                format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    c.name, table.name
                ),
            )
            .with_detail(format!("Failing row contains ({}).", show_row(table, row))));
        }
    }
    Ok(())
}

fn show_row(table: &TableDef, row: &[Value]) -> String {
    table
        .columns
        .iter()
        .zip(row)
        .filter(|(c, _)| !c.hidden)
        .map(|(c, v)| format_text(v, c.ty).unwrap_or_else(|| "null".into()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statement row behind the first refused write a `Write` reported, found with `row_of`
/// (shard, position in that shard's writes) — `None` for a position naming no statement row.
fn first_duplicate(
    dups: &[(usize, Vec<usize>)],
    row_of: impl Fn(usize, usize) -> Option<usize>,
) -> Option<usize> {
    dups.iter()
        .flat_map(|(shard, positions)| positions.iter().map(move |i| (*shard, *i)))
        .find_map(|(shard, i)| row_of(shard, i))
}

fn duplicate_key(table: &TableDef, row: &[Value]) -> SqlError {
    let cols: Vec<&str> = table
        .primary_key
        .iter()
        .map(|i| table.columns[*i].name.as_str())
        .collect();
    let vals: Vec<String> = table
        .primary_key
        .iter()
        .map(|i| format_text(&row[*i], table.columns[*i].ty).unwrap_or_else(|| "null".into()))
        .collect();
    SqlError::new(
        sqlstate::UNIQUE_VIOLATION,
        format!(
            "duplicate key value violates unique constraint \"{}_pkey\"",
            table.name
        ),
    )
    .with_detail(format!(
        "Key ({})=({}) already exists.",
        cols.join(", "),
        vals.join(", ")
    ))
}

//! The database and its sessions: statement execution from bound plans to committed writes.
//!
//! [`Database`] owns the shared parts (catalog, coordinator, placement, id generator).
//! [`Session`] is one client connection's state (settings) and runs statements synchronously;
//! the wire layer calls it on tokio's blocking pool because shard calls (and fsync) block.
//!
//! Write statements read the rows they change and commit their write set while holding the
//! coordinator's write lock, so they are serialized with each other; reads take a fresh snapshot
//! timestamp per statement and never wait for writers.

use crate::catalog::{Catalog, IndexDef, Relation, TableDef};
use crate::error::{SqlError, SqlResult, sqlstate};
use crate::id::SnowflakeGenerator;
use crate::placement::Placement;
use crate::rpc::ScanRequest;
use crate::rpc::{
    LocalShardClient, RowWrite, ShardClient, ShardRequest, ShardResponse, UniqueProbe,
};
use crate::shard::{Shard, keys};
use crate::sql::binder::{
    Binder, Bound, ColumnSource, DeletePlan, InsertPlan, OutputColumn, Returning, UpdatePlan,
};
use crate::sql::executor::{Executor, SCAN_PAGE, encode_pk};
use crate::sql::expr::EvalContext;
use crate::storage::{Engine, EngineOptions, SyncMode};
use crate::txn::clock::HybridClock;
use crate::txn::coordinator::Coordinator;
use crate::txn::snapshots::Registered;
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
}

/// What a writing statement holds from its first read to its commit: the coordinator's write
/// lock, a registered read snapshot (so garbage collection keeps what it reads), and an
/// executor reading at that snapshot.
struct WriteStatement<'a> {
    _write: parking_lot::MutexGuard<'a, ()>,
    _snapshot: Registered,
    exec: Executor<'a>,
}

pub struct Database {
    pub catalog: Catalog,
    pub coordinator: Coordinator,
    pub placement: Placement,
    pub ids: SnowflakeGenerator,
    pub statement_mem_bytes: usize,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ClusterFile {
    shards: usize,
}

impl Database {
    fn begin_write<'a>(&'a self, params: &'a [Value]) -> WriteStatement<'a> {
        let write = self.coordinator.write_guard();
        let snapshot = self.coordinator.begin_read();
        let exec = Executor::new(&self.coordinator, &self.placement, snapshot.ts(), params)
            .with_mem_limit(self.statement_mem_bytes);
        WriteStatement {
            _write: write,
            _snapshot: snapshot,
            exec,
        }
    }

    /// Opens (or creates) the data directory, recovers every shard and resolves in-doubt
    /// two-phase commits. Blocking: call from a blocking context.
    pub fn open(opts: &DbOptions) -> SqlResult<Arc<Database>> {
        let io = |what: &str, p: &Path, e: std::io::Error| {
            SqlError::new(sqlstate::IO_ERROR, format!("{what} {}: {e}", p.display()))
        };
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
        let engine_opts = || EngineOptions {
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
        let mut clients: Vec<Arc<dyn ShardClient>> = Vec::with_capacity(shards);
        for i in 0..shards {
            let dir = opts.data_dir.join(format!("shard-{i}"));
            let index_opts = crate::shard::indexes::IndexOptions {
                pool_bytes: opts.index_pool_bytes / shards,
                ..Default::default()
            };
            let shard = Shard::open_with(i, &dir, engine_opts(), index_opts)?;
            clients.push(Arc::new(LocalShardClient::new(Arc::new(shard))));
        }
        let clock = Arc::new(HybridClock::new());
        clock.observe(meta.max_committed_ts());
        let coordinator = Coordinator::new(clients, meta.clone(), clock);
        coordinator.recover()?;
        let catalog = Catalog::load(meta)?;
        let db = Database {
            statement_mem_bytes: opts.statement_mem_bytes,
            catalog,
            coordinator,
            placement: Placement::new(shards),
            ids: SnowflakeGenerator::new(0),
        };
        db.retain_indexes()?;
        Ok(Arc::new(db))
    }

    /// Tells every shard which indexes the catalog names, so index files built by a CREATE
    /// INDEX (or CREATE TABLE) that crashed before its catalog write, or left by a DROP whose
    /// shard-side part did not happen, are removed.
    fn retain_indexes(&self) -> SqlResult<()> {
        let ids = self.catalog.secondary_index_ids();
        for shard in 0..self.placement.shard_count() {
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
        (0..self.placement.shard_count())
            .map(|shard| self.coordinator.call(shard, request()))
            .collect()
    }

    /// Drops an index on every shard, best effort (a failure is logged: the index is no longer
    /// in the catalog, and `RetainIndexes` at the next start removes what is left).
    fn drop_index_on_shards(&self, index_id: u32) {
        for shard in 0..self.placement.shard_count() {
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
        let requests = (0..self.placement.shard_count())
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
        for shard in 0..self.placement.shard_count() {
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

/// An error raised after a statement's writes committed must not make it run again.
fn after_commit(e: SqlError) -> SqlError {
    if is_definition_changed(&e) {
        let message = format!("the statement's changes were committed, but {}", e.message);
        SqlError::new(sqlstate::INTERNAL_ERROR, message)
    } else {
        e
    }
}

/// Errors that mean DDL changed what the statement was planned against: its table's
/// definition, or an index its plan reads that was dropped meanwhile.
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
}

const SERVER_VERSION: &str = "15.0 (sharddb 0.1.0)";

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
        ] {
            settings.insert(k.to_string(), v.to_string());
        }
        Session { db, settings }
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
        let binder = Binder::new(&self.db.catalog, param_types.to_vec()).with_index_scans(
            self.settings.get("enable_indexscan").map(String::as_str) != Some("off"),
        );
        let bound = binder.bind_statement(stmt)?;
        let columns = match &bound {
            Bound::Query { columns, .. } => columns.clone(),
            Bound::Insert(InsertPlan { returning, .. })
            | Bound::Update(UpdatePlan { returning, .. })
            | Bound::Delete(DeletePlan { returning, .. }) => returning
                .as_ref()
                .map(|r| r.columns.clone())
                .unwrap_or_default(),
            Bound::Explain(_) => vec![OutputColumn {
                name: "QUERY PLAN".into(),
                ty: DataType::Text,
            }],
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
        // A writing statement is bound before it takes the write lock; if DDL changed its
        // table meanwhile (an index created or dropped), it is bound again against the new
        // definition — a few times at most, then the client gets 40001 and retries.
        let mut attempts = 0;
        loop {
            let binder = Binder::new(&self.db.catalog, param_types.to_vec()).with_index_scans(
                self.settings.get("enable_indexscan").map(String::as_str) != Some("off"),
            );
            let bound = binder.bind_statement(stmt)?;
            match self.run_bound(bound, params) {
                Err(e) if is_definition_changed(&e) && attempts < 3 => attempts += 1,
                other => return other,
            }
        }
    }

    fn run_bound(&mut self, bound: Bound, params: &[Value]) -> SqlResult<Outcome> {
        let db = self.db.clone();
        match bound {
            Bound::Query { plan, columns } => {
                let snapshot = db.coordinator.begin_read();
                let read_ts = snapshot.ts();
                let exec = Executor::new(&db.coordinator, &db.placement, read_ts, params)
                    .with_mem_limit(db.statement_mem_bytes);
                let rows = exec.run(&plan, &[])?;
                let tag = format!("SELECT {}", rows.len());
                Ok(Outcome::Rows { columns, rows, tag })
            }
            Bound::Insert(p) => self.insert(p, params),
            Bound::Update(p) => self.update(p, params),
            Bound::Delete(p) => self.delete(p, params),
            Bound::CreateTable { def, if_not_exists } => {
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
                        let _write = db.coordinator.write_guard();
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
                if name == "transaction_isolation" || name == "default_transaction_isolation" {
                    let v = value.to_lowercase();
                    if v != "read committed" {
                        return Err(SqlError::unsupported(format!(
                            "isolation level {v} (transactions come with their own issue)"
                        )));
                    }
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
                if key == "all" {
                    let mut all: Vec<(&String, &String)> = self.settings.iter().collect();
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
                let value = self.settings.get(&key).cloned().ok_or_else(|| {
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
            Bound::Begin => Err(SqlError::unsupported(
                "transaction blocks (BEGIN/START TRANSACTION); every statement commits on its own",
            )),
            // Outside a transaction block PostgreSQL accepts these with a warning.
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

    fn insert(&mut self, p: InsertPlan, params: &[Value]) -> SqlResult<Outcome> {
        let db = self.db.clone();
        let statement = db.begin_write(params);
        ensure_current(&db, &p.table)?;
        let exec = &statement.exec;
        let source = exec.run(&p.source, &[])?;
        let ctx = exec.ctx(&[]);
        let table = &p.table;
        let types: Vec<DataType> = table.columns.iter().map(|c| c.ty).collect();
        let mut writes: BTreeMap<usize, Vec<RowWrite>> = BTreeMap::new();
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
            if !new_keys.insert(pk.clone()) || self.key_exists(table, &pk, exec.read_ts)? {
                return Err(duplicate_key(table, &row));
            }
            let shard = db.placement.shard_for_key(&pk);
            let mut value = Vec::with_capacity(64);
            row::encode_row(&row, &mut value);
            writes.entry(shard).or_default().push(RowWrite {
                key: keys::row_key(table.id, &pk),
                value: Some(value),
            });
            inserted.push(row);
        }
        let own: HashSet<Vec<u8>> = new_keys
            .iter()
            .map(|pk| keys::row_key(table.id, pk))
            .collect();
        self.check_unique_indexes(table, &inserted, &own, None)?;
        db.coordinator.commit(writes)?;
        let tag = format!("INSERT 0 {}", inserted.len());
        self.returning_outcome(p.returning, &inserted, params, tag, exec)
            .map_err(after_commit)
    }

    /// Unique indexes: no two rows of `rows` (the statement's new row versions) and no stored
    /// row outside the statement may hold the same non-NULL key. Stored rows are probed with
    /// one `UniqueCheck` per index per shard; hits on `own` engine keys (rows this statement
    /// rewrites or writes) are ignored because their new values are among `rows`. With
    /// `changed` (an UPDATE's assigned columns), indexes none of whose columns change are
    /// skipped: each row keeps the key it already held uniquely.
    ///
    /// Safe against concurrent writers because writing statements hold the coordinator's
    /// write lock from their first read to their commit.
    fn check_unique_indexes(
        &self,
        table: &TableDef,
        rows: &[Row],
        own: &HashSet<Vec<u8>>,
        changed: Option<&[usize]>,
    ) -> SqlResult<()> {
        const PROBE_BATCH: usize = 4096;
        let db = &self.db;
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
                for shard in 0..db.placement.shard_count() {
                    let resp = db.coordinator.call(
                        shard,
                        ShardRequest::UniqueCheck {
                            index_id: index.id,
                            probes: chunk.to_vec(),
                        },
                    )?;
                    let ShardResponse::UniqueHits(hits) = resp else {
                        return Err(SqlError::internal(
                            "unexpected shard response to UniqueCheck",
                        ));
                    };
                    if let Some((pos, _)) = hits.iter().find(|(_, key)| !own.contains(key)) {
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

    fn key_exists(&self, table: &TableDef, pk: &[u8], read_ts: u64) -> SqlResult<bool> {
        let shard = self.db.placement.shard_for_key(pk);
        match self.db.coordinator.call(
            shard,
            ShardRequest::Get {
                key: keys::row_key(table.id, pk),
                read_ts,
            },
        )? {
            ShardResponse::Row(r) => Ok(r.is_some()),
            _ => Err(SqlError::internal("unexpected shard response to Get")),
        }
    }

    fn update(&mut self, p: UpdatePlan, params: &[Value]) -> SqlResult<Outcome> {
        let db = self.db.clone();
        let statement = db.begin_write(params);
        ensure_current(&db, &p.table)?;
        let exec = &statement.exec;
        let old_rows = exec.run(&p.scan, &[])?;
        let ctx = exec.ctx(&[]);
        let table = &p.table;
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
        // statement holds it. Keys vacated by moved rows and not retaken are deleted.
        let mut new_keys: HashSet<Vec<u8>> = HashSet::new();
        for (old, new) in old_rows.iter().zip(&new_rows) {
            let ok = encode_pk(old, &table.primary_key, &types);
            let nk = encode_pk(new, &table.primary_key, &types);
            if !new_keys.insert(nk.clone())
                || (ok != nk
                    && !old_keys.contains(&nk)
                    && self.key_exists(table, &nk, exec.read_ts)?)
            {
                return Err(duplicate_key(table, new));
            }
        }
        let own: HashSet<Vec<u8>> = old_keys
            .iter()
            .chain(new_keys.iter())
            .map(|pk| keys::row_key(table.id, pk))
            .collect();
        let assigned: Vec<usize> = p.assignments.iter().map(|(c, _)| *c).collect();
        self.check_unique_indexes(table, &new_rows, &own, Some(&assigned))?;
        let mut writes: BTreeMap<usize, Vec<RowWrite>> = BTreeMap::new();
        for ok in old_keys.iter().filter(|k| !new_keys.contains(*k)) {
            writes
                .entry(db.placement.shard_for_key(ok))
                .or_default()
                .push(RowWrite {
                    key: keys::row_key(table.id, ok),
                    value: None,
                });
        }
        for new in &new_rows {
            let nk = encode_pk(new, &table.primary_key, &types);
            let mut value = Vec::with_capacity(64);
            row::encode_row(new, &mut value);
            writes
                .entry(db.placement.shard_for_key(&nk))
                .or_default()
                .push(RowWrite {
                    key: keys::row_key(table.id, &nk),
                    value: Some(value),
                });
        }
        db.coordinator.commit(writes)?;
        let tag = format!("UPDATE {}", new_rows.len());
        self.returning_outcome(p.returning, &new_rows, params, tag, exec)
            .map_err(after_commit)
    }

    fn delete(&mut self, p: DeletePlan, params: &[Value]) -> SqlResult<Outcome> {
        let db = self.db.clone();
        let statement = db.begin_write(params);
        ensure_current(&db, &p.table)?;
        let exec = &statement.exec;
        let rows = exec.run(&p.scan, &[])?;
        let table = &p.table;
        let types: Vec<DataType> = table.columns.iter().map(|c| c.ty).collect();
        let mut writes: BTreeMap<usize, Vec<RowWrite>> = BTreeMap::new();
        for r in &rows {
            let pk = encode_pk(r, &table.primary_key, &types);
            writes
                .entry(db.placement.shard_for_key(&pk))
                .or_default()
                .push(RowWrite {
                    key: keys::row_key(table.id, &pk),
                    value: None,
                });
        }
        db.coordinator.commit(writes)?;
        let tag = format!("DELETE {}", rows.len());
        self.returning_outcome(p.returning, &rows, params, tag, exec)
            .map_err(after_commit)
    }

    /// Deletes a dropped table's rows, shard by shard, a page at a time.
    fn delete_all_rows(&self, table: &TableDef) -> SqlResult<()> {
        let db = &self.db;
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
                db.coordinator.commit(BTreeMap::from([(shard, writes)]))?;
            }
            Ok(())
        })
    }
}

/// Planner switches, boolean like PostgreSQL's. `enable_seqscan` is accepted for
/// compatibility; sharddb has no cost model for it to bias.
const BOOL_SETTINGS: &[&str] = &["enable_indexscan", "enable_seqscan"];

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

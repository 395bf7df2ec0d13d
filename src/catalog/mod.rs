//! The catalog: tables and views, durable in the cluster's metadata store.
//!
//! Definitions live in memory behind a lock for binding, and every change is first written to the
//! metadata engine (a storage [`Engine`] of its own, with its own WAL) so that it survives
//! `kill -9`. Table ids are never reused: a dropped table's rows may linger on shards after a
//! crash between "catalog entry removed" and "rows deleted", and a fresh id keeps them unreachable.
//!
//! System views ([`system`]) are relations too, but built in rather than stored: [`Catalog::get`]
//! resolves their names first, and their names cannot be taken by tables or views.
//!
//! Invariants: names are unique across tables and views (as PostgreSQL relations are); a table's
//! primary key columns are NOT NULL; a table without a declared primary key has a hidden
//! `_rowid bigint` column last, filled with Snowflake ids, which is its key.

pub mod system;

use crate::error::{SqlError, SqlResult, sqlstate};
use crate::shard::storage_error;
use crate::storage::{Engine, WriteBatch, WriteOp};
use crate::types::DataType;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
pub use system::SystemView;

/// Name of the hidden key column of tables without a primary key.
pub const ROWID_COLUMN: &str = "_rowid";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: DataType,
    pub nullable: bool,
    /// The DEFAULT expression as SQL text, bound when a row is inserted.
    pub default: Option<String>,
    /// Hidden columns (the generated row id) are not part of `*` or of INSERT's column list.
    pub hidden: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub id: u32,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Indexes into `columns` forming the primary key, in key order.
    pub primary_key: Vec<usize>,
    /// The table's indexes: the primary key's (no B+tree: rows are stored clustered by it) and
    /// the secondary ones (a B+tree per shard). Absent in catalogs written before indexes.
    #[serde(default)]
    pub indexes: Vec<IndexDef>,
    /// `PARTITION BY HASH/RANGE (...)`; hash on the primary key by default.
    #[serde(default)]
    pub placement: crate::placement::PlacementSpec,
}

/// One key column of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexKeyColumn {
    /// Position in the table's columns.
    pub column: usize,
    pub desc: bool,
}

/// An index definition. Index names share the relation namespace (as in PostgreSQL); index ids
/// come from the table-id counter and are never reused (shards name index files by id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    pub id: u32,
    pub name: String,
    pub table_id: u32,
    pub columns: Vec<IndexKeyColumn>,
    pub unique: bool,
    /// Created by a PRIMARY KEY or UNIQUE constraint: DROP INDEX refuses it (2BP01).
    #[serde(default)]
    pub constraint: bool,
    /// The primary key: served by the table's own key order, so it has no B+tree on the
    /// shards. Its id is the table's id.
    #[serde(default)]
    pub primary: bool,
    /// The snapshot the index was built from: a transaction whose snapshot is older may see
    /// row versions the index has no entries for, so it must not read through the index
    /// (PostgreSQL's `indcheckxmin`). 0 for indexes built with their (empty) table.
    #[serde(default)]
    pub built_ts: u64,
}

impl IndexDef {
    /// What a shard needs to build and maintain this index.
    pub fn spec(&self, table: &TableDef) -> crate::rpc::IndexSpec {
        crate::rpc::IndexSpec {
            index_id: self.id,
            table_id: table.id,
            name: self.name.clone(),
            columns: self
                .columns
                .iter()
                .map(|c| crate::rpc::IndexColumn {
                    ordinal: c.column,
                    ty: table.columns[c.column].ty,
                    desc: c.desc,
                })
                .collect(),
            unique: self.unique,
        }
    }
}

impl TableDef {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
    pub fn has_hidden_rowid(&self) -> bool {
        self.columns.last().is_some_and(|c| c.hidden)
    }
    /// Indexes with a B+tree on the shards (everything but the primary key's).
    pub fn secondary_indexes(&self) -> impl Iterator<Item = &IndexDef> {
        self.indexes.iter().filter(|i| !i.primary)
    }
    /// The `<table>_pkey` entry for a declared primary key (none for a hidden row id).
    pub fn pkey_index(&self) -> Option<IndexDef> {
        if self.has_hidden_rowid() {
            return None;
        }
        Some(IndexDef {
            id: self.id,
            name: format!("{}_pkey", self.name),
            table_id: self.id,
            columns: self
                .primary_key
                .iter()
                .map(|c| IndexKeyColumn {
                    column: *c,
                    desc: false,
                })
                .collect(),
            unique: true,
            constraint: true,
            primary: true,
            built_ts: 0,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewDef {
    pub name: String,
    /// The defining query as SQL text; re-bound at each use.
    pub sql: String,
    /// Explicit column names from `CREATE VIEW v (a, b)`, if given.
    pub columns: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Relation {
    Table(Arc<TableDef>),
    View(Arc<ViewDef>),
    /// A built-in read-only view over the shards' statistics; never stored.
    System(SystemView),
}

#[derive(Serialize, Deserialize)]
enum Stored {
    Table(TableDef),
    View(ViewDef),
}

#[derive(Default)]
struct State {
    relations: HashMap<String, Relation>,
    /// Index name → name of its table.
    indexes: HashMap<String, String>,
    next_table_id: u32,
}

impl State {
    fn name_taken(&self, name: &str) -> bool {
        self.relations.contains_key(name) || self.indexes.contains_key(name)
    }
}

pub struct Catalog {
    meta: Arc<Engine>,
    state: RwLock<State>,
    /// Serializes catalog writes so that ids and versions are assigned in order.
    write: Mutex<()>,
}

const REL_PREFIX: &[u8] = b"c/rel/";
const NEXT_ID_KEY: &[u8] = b"c/next_table_id";
const READ_LATEST: u64 = u64::MAX;

impl Catalog {
    /// Loads the catalog from the metadata engine.
    pub fn load(meta: Arc<Engine>) -> SqlResult<Catalog> {
        let mut state = State {
            relations: HashMap::new(),
            indexes: HashMap::new(),
            next_table_id: 1,
        };
        let mut start: std::ops::Bound<Vec<u8>> = std::ops::Bound::Included(REL_PREFIX.to_vec());
        let mut end = REL_PREFIX.to_vec();
        *end.last_mut().expect("non-empty prefix") += 1;
        loop {
            let page = meta
                .scan(
                    match &start {
                        std::ops::Bound::Included(k) => std::ops::Bound::Included(k.as_slice()),
                        std::ops::Bound::Excluded(k) => std::ops::Bound::Excluded(k.as_slice()),
                        std::ops::Bound::Unbounded => std::ops::Bound::Unbounded,
                    },
                    std::ops::Bound::Excluded(end.as_slice()),
                    READ_LATEST,
                    256,
                )
                .map_err(storage_error)?;
            let full = page.len() == 256;
            for (key, value) in &page {
                let stored: Stored = serde_json::from_slice(value).map_err(|e| {
                    SqlError::new(
                        sqlstate::DATA_CORRUPTED,
                        format!(
                            "catalog entry {} is unreadable: {e}",
                            String::from_utf8_lossy(key)
                        ),
                    )
                })?;
                let name = match &stored {
                    Stored::Table(t) => &t.name,
                    Stored::View(v) => &v.name,
                };
                if SystemView::lookup(name).is_some() {
                    // Only a data directory written before the name was reserved can hold this.
                    tracing::warn!(
                        relation = %name,
                        "a stored relation has the name of a system view; the system view shadows it"
                    );
                }
                match stored {
                    Stored::Table(mut t) => {
                        state.next_table_id = state.next_table_id.max(t.id + 1);
                        // Catalogs written before indexes existed: name the primary key.
                        if !t.indexes.iter().any(|i| i.primary)
                            && let Some(pkey) = t.pkey_index()
                        {
                            t.indexes.insert(0, pkey);
                        }
                        for i in &t.indexes {
                            state.next_table_id = state.next_table_id.max(i.id + 1);
                            state.indexes.insert(i.name.clone(), t.name.clone());
                        }
                        state
                            .relations
                            .insert(t.name.clone(), Relation::Table(Arc::new(t)));
                    }
                    Stored::View(v) => {
                        state
                            .relations
                            .insert(v.name.clone(), Relation::View(Arc::new(v)));
                    }
                }
            }
            match (full, page.last()) {
                (true, Some((k, _))) => start = std::ops::Bound::Excluded(k.clone()),
                _ => break,
            }
        }
        if let Some(bytes) = meta.get(NEXT_ID_KEY, READ_LATEST).map_err(storage_error)?
            && let Ok(arr) = <[u8; 4]>::try_from(bytes.as_slice())
        {
            state.next_table_id = state.next_table_id.max(u32::from_be_bytes(arr));
        }
        Ok(Catalog {
            meta,
            state: RwLock::new(state),
            write: Mutex::new(()),
        })
    }

    /// The relation called `name`: a system view if one has that name, else a stored relation.
    pub fn get(&self, name: &str) -> Option<Relation> {
        if let Some(view) = SystemView::lookup(name) {
            return Some(Relation::System(view));
        }
        self.state.read().relations.get(name).cloned()
    }

    /// The table called `name`, as the target of INSERT, UPDATE or DELETE.
    pub fn table(&self, name: &str) -> SqlResult<Arc<TableDef>> {
        match self.get(name) {
            Some(Relation::Table(t)) => Ok(t),
            Some(Relation::View(_)) => Err(SqlError::new(
                sqlstate::WRONG_OBJECT_TYPE,
                format!("\"{name}\" is a view, not a table"),
            )),
            Some(Relation::System(view)) => Err(view.read_only_error()),
            None => Err(undefined_table(name)),
        }
    }

    pub fn tables(&self) -> Vec<Arc<TableDef>> {
        let state = self.state.read();
        let mut v: Vec<_> = state
            .relations
            .values()
            .filter_map(|r| match r {
                Relation::Table(t) => Some(t.clone()),
                Relation::View(_) | Relation::System(_) => None,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Whether `name` is taken in the relation namespace (tables, views, indexes, system views).
    pub fn name_taken(&self, name: &str) -> bool {
        SystemView::lookup(name).is_some() || self.state.read().name_taken(name)
    }

    /// PostgreSQL's `ChooseRelationName`: `<table>_<cols>_<suffix>`, with a number appended
    /// (`1`, `2`, ...) until the name is free in the catalog and not in `also_taken`.
    pub fn choose_name(
        &self,
        table: &str,
        cols: &[&str],
        suffix: &str,
        also_taken: &[String],
    ) -> String {
        let mut base = table.to_string();
        for c in cols {
            base.push('_');
            base.push_str(c);
        }
        let free = |n: &str| !self.name_taken(n) && !also_taken.iter().any(|t| t == n);
        let first = format!("{base}_{suffix}");
        if free(&first) {
            return first;
        }
        (1..)
            .map(|i| format!("{base}_{suffix}{i}"))
            .find(|n| free(n))
            .expect("some number is free")
    }

    fn duplicate(name: &str) -> SqlError {
        SqlError::new(
            sqlstate::DUPLICATE_TABLE,
            format!("relation \"{name}\" already exists"),
        )
    }

    /// Creates a table, assigning its id and its indexes' ids (the primary key's index takes the
    /// table's id; secondary indexes fresh ones). Returns `Ok(None)` when it exists and
    /// `if_not_exists`. A system view's name counts as existing (42P07).
    ///
    /// `build` creates the secondary indexes on the shards; it runs after the ids are durably
    /// reserved and before the definition is written (the commit point), so a crash in between
    /// leaves only index files the catalog does not name, which `RetainIndexes` removes at
    /// startup. If writing the definition fails, `undo` is called with the def.
    pub fn create_table(
        &self,
        mut def: TableDef,
        if_not_exists: bool,
        build: &dyn Fn(&TableDef) -> SqlResult<()>,
        undo: &dyn Fn(&TableDef),
    ) -> SqlResult<Option<Arc<TableDef>>> {
        let _w = self.write.lock();
        if let Some(view) = SystemView::lookup(&def.name) {
            if if_not_exists {
                return Ok(None);
            }
            return Err(view.name_taken_error());
        }
        if self.state.read().name_taken(&def.name) {
            if if_not_exists {
                return Ok(None);
            }
            return Err(Self::duplicate(&def.name));
        }
        for i in &def.indexes {
            if self.name_taken(&i.name) {
                return Err(Self::duplicate(&i.name));
            }
        }
        let id = self.state.read().next_table_id;
        def.id = id;
        let mut next = id + 1;
        for i in &mut def.indexes {
            i.table_id = id;
            if i.primary {
                i.id = id;
            } else {
                i.id = next;
                next += 1;
            }
        }
        let counter = WriteOp {
            key: NEXT_ID_KEY.to_vec(),
            value: Some(next.to_be_bytes().to_vec()),
        };
        if def.secondary_indexes().next().is_some() {
            self.persist(vec![counter.clone()])?;
            self.state.write().next_table_id = next;
            build(&def)?;
        }
        let ops = vec![
            WriteOp {
                key: rel_key(&def.name),
                value: Some(encode(&Stored::Table(def.clone()))?),
            },
            counter,
        ];
        if let Err(e) = self.persist(ops) {
            undo(&def);
            return Err(e);
        }
        let def = Arc::new(def);
        let mut state = self.state.write();
        state.next_table_id = next;
        for i in &def.indexes {
            state.indexes.insert(i.name.clone(), def.name.clone());
        }
        state
            .relations
            .insert(def.name.clone(), Relation::Table(def.clone()));
        Ok(Some(def))
    }

    /// The index called `name` and its table.
    pub fn index(&self, name: &str) -> Option<(Arc<TableDef>, IndexDef)> {
        let state = self.state.read();
        let table = state.indexes.get(name)?;
        let Some(Relation::Table(t)) = state.relations.get(table) else {
            return None;
        };
        let def = t.indexes.iter().find(|i| i.name == name)?.clone();
        Some((t.clone(), def))
    }

    /// Reserves a fresh id for an index (durably, so it is never handed out again).
    pub fn allocate_index_id(&self) -> SqlResult<u32> {
        let _w = self.write.lock();
        let id = self.state.read().next_table_id;
        self.persist(vec![WriteOp {
            key: NEXT_ID_KEY.to_vec(),
            value: Some((id + 1).to_be_bytes().to_vec()),
        }])?;
        self.state.write().next_table_id = id + 1;
        Ok(id)
    }

    /// Adds an index (already built on the shards) to its table's definition: the commit point
    /// of CREATE INDEX.
    pub fn add_index(&self, index: IndexDef) -> SqlResult<Arc<TableDef>> {
        let _w = self.write.lock();
        if self.name_taken(&index.name) {
            return Err(Self::duplicate(&index.name));
        }
        let table = self
            .tables()
            .into_iter()
            .find(|t| t.id == index.table_id)
            .ok_or_else(|| SqlError::new(sqlstate::UNDEFINED_TABLE, "table was dropped"))?;
        let mut def = (*table).clone();
        def.indexes.push(index.clone());
        self.persist(vec![WriteOp {
            key: rel_key(&def.name),
            value: Some(encode(&Stored::Table(def.clone()))?),
        }])?;
        let def = Arc::new(def);
        let mut state = self.state.write();
        state.indexes.insert(index.name, def.name.clone());
        state
            .relations
            .insert(def.name.clone(), Relation::Table(def.clone()));
        Ok(def)
    }

    /// Removes an index from its table's definition; the caller drops it on the shards.
    pub fn remove_index(&self, name: &str) -> SqlResult<IndexDef> {
        let _w = self.write.lock();
        let (table, index) = self.index(name).ok_or_else(|| undefined_index(name))?;
        let mut def = (*table).clone();
        def.indexes.retain(|i| i.name != name);
        self.persist(vec![WriteOp {
            key: rel_key(&def.name),
            value: Some(encode(&Stored::Table(def.clone()))?),
        }])?;
        let mut state = self.state.write();
        state.indexes.remove(name);
        state
            .relations
            .insert(def.name.clone(), Relation::Table(Arc::new(def)));
        Ok(index)
    }

    /// Ids of every index with a B+tree on the shards.
    pub fn secondary_index_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .tables()
            .iter()
            .flat_map(|t| t.secondary_indexes().map(|i| i.id).collect::<Vec<_>>())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Creates (or replaces) a view. A system view's name is taken, even with `or_replace`.
    pub fn create_view(&self, def: ViewDef, or_replace: bool) -> SqlResult<()> {
        let _w = self.write.lock();
        if let Some(view) = SystemView::lookup(&def.name) {
            return Err(view.name_taken_error());
        }
        let existing = self.state.read().relations.get(&def.name).cloned();
        match existing {
            Some(Relation::View(_)) if or_replace => {}
            Some(_) => return Err(Self::duplicate(&def.name)),
            None if self.state.read().indexes.contains_key(&def.name) => {
                return Err(Self::duplicate(&def.name));
            }
            None => {}
        }
        self.persist(vec![WriteOp {
            key: rel_key(&def.name),
            value: Some(encode(&Stored::View(def.clone()))?),
        }])?;
        self.state
            .write()
            .relations
            .insert(def.name.clone(), Relation::View(Arc::new(def)));
        Ok(())
    }

    /// Removes a relation's definition. The caller deletes a table's rows afterwards.
    pub fn drop_relation(&self, name: &str) -> SqlResult<Relation> {
        let _w = self.write.lock();
        if let Some(view) = SystemView::lookup(name) {
            return Err(view.read_only_error());
        }
        let rel = self
            .state
            .read()
            .relations
            .get(name)
            .cloned()
            .ok_or_else(|| undefined_table(name))?;
        self.persist(vec![WriteOp {
            key: rel_key(name),
            value: None,
        }])?;
        let mut state = self.state.write();
        state.relations.remove(name);
        if let Relation::Table(t) = &rel {
            for i in &t.indexes {
                state.indexes.remove(&i.name);
            }
        }
        Ok(rel)
    }

    fn persist(&self, ops: Vec<WriteOp>) -> SqlResult<()> {
        let commit_ts = self.meta.max_committed_ts() + 1;
        self.meta
            .apply(&WriteBatch { commit_ts, ops })
            .map_err(storage_error)
    }
}

pub fn undefined_table(name: &str) -> SqlError {
    SqlError::new(
        sqlstate::UNDEFINED_TABLE,
        format!("relation \"{name}\" does not exist"),
    )
}

pub fn undefined_index(name: &str) -> SqlError {
    SqlError::new(
        sqlstate::UNDEFINED_OBJECT,
        format!("index \"{name}\" does not exist"),
    )
}

fn rel_key(name: &str) -> Vec<u8> {
    let mut k = REL_PREFIX.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn encode(stored: &Stored) -> SqlResult<Vec<u8>> {
    serde_json::to_vec(stored).map_err(|e| SqlError::internal(format!("catalog encode: {e}")))
}

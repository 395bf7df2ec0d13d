//! The binder: sqlparser's AST → bound statements and [`Plan`]s.
//!
//! Binding resolves every name against the catalog and the query's scopes, gives every
//! expression a type, inserts PostgreSQL's implicit coercions as explicit casts, folds typed
//! literals (`'42'` compared with an integer becomes the integer 42, with 22P02 if it is not one),
//! infers the types of `$n` parameters from their context, and plans aggregation, ordering and
//! joins. Nothing downstream looks at SQL text or names again.

use crate::catalog::{
    Catalog, ColumnDef, IndexDef, IndexKeyColumn, ROWID_COLUMN, Relation, SystemView, TableDef,
    ViewDef,
};
use crate::error::{SqlError, SqlResult, sqlstate};
use crate::placement::{PlacementKind, PlacementSpec};
use crate::sql::access;
use crate::sql::expr::{CastCtx, CmpOp, Expr, SubqueryKind};
use crate::sql::functions;
use crate::sql::plan::{Access, AggCall, AggFunc, JoinKind, Plan, SetOpKind, SortKey};
use crate::sql::scope::{Scope, ScopeColumn};
use crate::types::arith::{self, ArithOp};
use crate::types::cast::{self, CastContext};
use crate::types::{DataType, Value, parse};
use sqlparser::ast;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

/// A result column: name and type.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputColumn {
    pub name: String,
    pub ty: DataType,
}

/// Where each stored column of an inserted row comes from.
#[derive(Debug, Clone)]
pub enum ColumnSource {
    /// Column `index` of the source rows, assignment-cast from `from`.
    Input { index: usize, from: DataType },
    /// A DEFAULT expression (or NULL when there is none).
    Default(Expr),
    /// A fresh Snowflake id (hidden row id).
    RowId,
}

#[derive(Debug, Clone)]
pub struct Returning {
    pub exprs: Vec<Expr>,
    pub columns: Vec<OutputColumn>,
}

#[derive(Debug, Clone)]
pub struct InsertPlan {
    pub table: Arc<TableDef>,
    pub source: Plan,
    pub columns: Vec<ColumnSource>,
    pub returning: Option<Returning>,
}

#[derive(Debug, Clone)]
pub struct UpdatePlan {
    pub table: Arc<TableDef>,
    /// Produces the current rows to update (all stored columns).
    pub scan: Plan,
    /// (column index, new value over the old row), already cast to the column type.
    pub assignments: Vec<(usize, Expr)>,
    pub returning: Option<Returning>,
}

#[derive(Debug, Clone)]
pub struct DeletePlan {
    pub table: Arc<TableDef>,
    pub scan: Plan,
    pub returning: Option<Returning>,
}

#[derive(Debug, Clone)]
pub enum Bound {
    Query {
        plan: Plan,
        columns: Vec<OutputColumn>,
    },
    Insert(InsertPlan),
    Update(UpdatePlan),
    Delete(DeletePlan),
    CreateTable {
        def: TableDef,
        if_not_exists: bool,
    },
    CreateView {
        def: ViewDef,
        or_replace: bool,
    },
    DropTables {
        names: Vec<String>,
        if_exists: bool,
        views: bool,
    },
    /// `CREATE INDEX`: the definition has its name and columns; the id is assigned when it is
    /// built.
    CreateIndex {
        table: Arc<TableDef>,
        index: IndexDef,
        if_not_exists: bool,
    },
    DropIndexes {
        names: Vec<String>,
        if_exists: bool,
    },
    Explain(Vec<String>),
    /// `EXPLAIN ANALYZE` of a query: runs it and adds, per scan and shard, rows and time.
    ExplainAnalyze {
        plan: Plan,
    },
    /// `SHOW SHARDS`: each shard, its share of the hash ring, its ranges and row count.
    ShowShards,
    /// `SHOW RANGES`: every range of every range-placed table.
    ShowRanges,
    /// `ALTER CLUSTER ADD SHARD`.
    AddShard,
    /// `ALTER CLUSTER REMOVE SHARD n`.
    RemoveShard(usize),
    /// `ALTER TABLE t SPLIT AT (v, ...), ...`: split points as shard-key values.
    SplitAt {
        table: Arc<TableDef>,
        points: Vec<Vec<Value>>,
    },
    Set {
        name: String,
        value: String,
    },
    Show {
        name: String,
    },
    Begin,
    Commit,
    Rollback,
}

#[derive(Clone)]
struct CteDef {
    query: ast::Query,
    columns: Vec<String>,
    /// The CTEs visible where this one was defined (earlier ones only: no forward references).
    visible: Vec<HashMap<String, CteDef>>,
}

/// Binding context of one expression.
struct Cx<'a> {
    scope: &'a Scope,
    outer: &'a [&'a Scope],
    aggs: Option<&'a RefCell<Vec<AggCall>>>,
    /// Clause name used in "not allowed in ..." errors.
    clause: &'static str,
}

pub struct Binder<'a> {
    catalog: &'a Catalog,
    params: RefCell<Vec<Option<DataType>>>,
    next_subquery: Cell<usize>,
    /// One entry per query nesting level being bound; set when that level references an outer one.
    correlated: RefCell<Vec<bool>>,
    ctes: RefCell<Vec<HashMap<String, CteDef>>>,
    depth: Cell<usize>,
    /// The tables scanned by this statement, for choosing indexes.
    tables: RefCell<HashMap<u32, Arc<TableDef>>>,
    /// `enable_indexscan`: when off, scans never use secondary indexes.
    index_scans: bool,
    /// `sharddb.pushdown`: when off, everything above a scan runs at the coordinator.
    pushdown: bool,
    /// The session's settings, for `current_setting(name)` (a constant per statement).
    settings: HashMap<String, String>,
    /// The snapshot the statement reads at, when it is older than now (REPEATABLE READ):
    /// indexes built from a later snapshot are not used (see `IndexDef::built_ts`).
    index_horizon: Option<u64>,
    /// The shard map, for EXPLAIN's routes.
    map: Option<Arc<crate::placement::ShardMap>>,
    /// Row estimates, for choosing where joins run (`sql/join_strategy.rs`).
    estimator: Option<&'a dyn crate::sql::join_strategy::RowEstimator>,
}

/// What filter pushdown needs to pick access paths.
pub struct AccessCtx<'a> {
    pub tables: &'a HashMap<u32, Arc<TableDef>>,
    pub index_scans: bool,
}

const MAX_DEPTH: usize = 64;

/// Identifier normalization: unquoted names fold to lower case, as in PostgreSQL.
pub fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn object_name(name: &ast::ObjectName) -> SqlResult<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ast::ObjectNamePart::Identifier(i) => Ok(ident(i)),
            other => Err(SqlError::unsupported(format!("name part {other}"))),
        })
        .collect::<SqlResult<_>>()?;
    match parts.as_slice() {
        [n] => Ok(n.clone()),
        [schema, n] if schema == "public" => Ok(n.clone()),
        _ => Err(SqlError::unsupported(format!(
            "qualified name \"{}\" (schemas)",
            parts.join(".")
        ))),
    }
}

fn type_mismatch(msg: String) -> SqlError {
    SqlError::new(sqlstate::DATATYPE_MISMATCH, msg)
}

/// Maps a SQL type name to a [`DataType`].
pub fn convert_type(t: &ast::DataType) -> SqlResult<DataType> {
    use ast::DataType as T;
    let char_len = |l: &Option<ast::CharacterLength>| -> Option<u32> {
        match l {
            Some(ast::CharacterLength::IntegerLength { length, .. }) => Some(*length as u32),
            _ => None,
        }
    };
    Ok(match t {
        T::SmallInt(_) | T::Int2(_) => DataType::Int2,
        T::Int(_) | T::Integer(_) | T::Int4(_) => DataType::Int4,
        T::BigInt(_) | T::Int8(_) => DataType::Int8,
        T::Real | T::Float4 => DataType::Float4,
        T::DoublePrecision | T::Float8 | T::Double(_) => DataType::Float8,
        T::Float(info) => match info {
            ast::ExactNumberInfo::Precision(p) if *p <= 24 => DataType::Float4,
            _ => DataType::Float8,
        },
        T::Numeric(info) | T::Decimal(info) | T::Dec(info) => match info {
            ast::ExactNumberInfo::None => DataType::Numeric(None),
            ast::ExactNumberInfo::Precision(p) => {
                check_numeric_typmod(*p, 0)?;
                DataType::Numeric(Some((*p as u32, 0)))
            }
            ast::ExactNumberInfo::PrecisionAndScale(p, s) => {
                if *s < 0 || *s as u64 > *p {
                    return Err(SqlError::syntax(format!(
                        "NUMERIC scale {s} must be between 0 and precision {p}"
                    )));
                }
                check_numeric_typmod(*p, *s as u64)?;
                DataType::Numeric(Some((*p as u32, *s as u32)))
            }
        },
        T::Bool | T::Boolean => DataType::Bool,
        T::Text | T::String(None) => DataType::Text,
        T::Varchar(l) | T::CharacterVarying(l) | T::CharVarying(l) => {
            DataType::Varchar(char_len(l))
        }
        T::Char(l) | T::Character(l) => DataType::Char(char_len(l).unwrap_or(1)),
        T::Bytea => DataType::Bytea,
        T::Date => DataType::Date,
        T::Timestamp(_, ast::TimezoneInfo::None | ast::TimezoneInfo::WithoutTimeZone) => {
            DataType::Timestamp
        }
        T::Uuid => DataType::Uuid,
        T::Custom(name, mods) if mods.is_empty() => match object_name(name)?.as_str() {
            "int2" => DataType::Int2,
            "int4" => DataType::Int4,
            "int8" => DataType::Int8,
            "float4" => DataType::Float4,
            "float8" => DataType::Float8,
            "bool" => DataType::Bool,
            "bpchar" => DataType::Char(1),
            // SERIAL types only exist in CREATE TABLE (see `serial_column`); elsewhere, as in
            // PostgreSQL, they are unknown type names.
            other => {
                return Err(SqlError::new(
                    sqlstate::UNDEFINED_OBJECT,
                    format!("type \"{other}\" does not exist"),
                ));
            }
        },
        other => return Err(SqlError::unsupported(format!("type {other}"))),
    })
}

/// `PARTITION BY HASH (a, b)` / `PARTITION BY RANGE (a)`: sqlparser reads the clause as a
/// function-call expression. The columns must belong to the primary key, so that a key lookup
/// and a uniqueness check of the key each stay on one shard (PostgreSQL asks the same of unique
/// constraints on partitioned tables).
fn bind_partition_by(
    e: &ast::Expr,
    columns: &[ColumnDef],
    primary_key: &[usize],
    primary_declared: bool,
) -> SqlResult<PlacementSpec> {
    let usage = || {
        SqlError::syntax(format!(
            "unsupported partitioning clause \"PARTITION BY {e}\""
        ))
        .with_hint("Write PARTITION BY HASH (columns) or PARTITION BY RANGE (columns).")
    };
    let ast::Expr::Function(f) = e else {
        return Err(usage());
    };
    let kind = match object_name(&f.name)?.as_str() {
        "hash" => PlacementKind::Hash,
        "range" => PlacementKind::Range,
        "list" => {
            return Err(SqlError::unsupported("PARTITION BY LIST")
                .with_hint("Use PARTITION BY HASH or PARTITION BY RANGE."));
        }
        _ => return Err(usage()),
    };
    let ast::FunctionArguments::List(list) = &f.args else {
        return Err(usage());
    };
    let mut cols = Vec::new();
    for arg in &list.args {
        let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Identifier(id))) = arg
        else {
            return Err(
                SqlError::unsupported(format!("partitioning by the expression {arg}"))
                    .with_hint("Partition by columns."),
            );
        };
        let name = ident(id);
        let pos = columns
            .iter()
            .position(|c| c.name == name && !c.hidden)
            .ok_or_else(|| {
                SqlError::new(
                    sqlstate::UNDEFINED_COLUMN,
                    format!("column \"{name}\" named in partition key does not exist"),
                )
            })?;
        if cols.contains(&pos) {
            return Err(SqlError::new(
                sqlstate::DUPLICATE_COLUMN,
                format!("column \"{name}\" appears twice in partition key"),
            ));
        }
        if !primary_declared || !primary_key.contains(&pos) {
            return Err(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "the partition key must be part of the primary key",
            )
            .with_detail(format!(
                "Column \"{name}\" is not in the table's primary key."
            ))
            .with_hint(
                "Declare a PRIMARY KEY that includes every PARTITION BY column: rows are found \
                 by their key, so the key must name the shard.",
            ));
        }
        cols.push(pos);
    }
    if cols.is_empty() {
        return Err(usage());
    }
    Ok(PlacementSpec {
        kind,
        columns: if cols == primary_key {
            Vec::new()
        } else {
            cols
        },
    })
}

/// The shards an INSERT of constant rows writes under `map`; `None` if not known before
/// execution (parameters, INSERT ... SELECT, defaults).
fn insert_shards(i: &InsertPlan, map: &crate::placement::ShardMap) -> Option<usize> {
    let Plan::Values { rows, .. } = &i.source else {
        return None;
    };
    let route = crate::placement::TableRoute::for_table(&i.table);
    let ctx = crate::sql::expr::EvalContext::empty();
    let mut shards = std::collections::BTreeSet::new();
    for r in rows {
        let mut row = vec![Value::Null; i.table.columns.len()];
        for c in &route.key_columns {
            match i.columns.get(*c)? {
                ColumnSource::Input { index, .. } => {
                    row[*c] = r.get(*index)?.eval(&[], &ctx).ok()?;
                    if !crate::placement::router::fits(&row[*c], i.table.columns[*c].ty) {
                        return None;
                    }
                }
                _ => return None,
            }
        }
        shards.insert(map.owner_of_row(&route, &row));
    }
    Some(shards.len())
}

/// The default of `SERIAL` / `BIGSERIAL` columns.
const SERIAL_DEFAULT: &str = "snowflake_id()";

/// Whether a CREATE TABLE column type is one of PostgreSQL's SERIAL shorthands. sharddb has no
/// sequences (a cluster-wide counter would be a round trip and a single point of failure); a
/// serial column is `bigint NOT NULL DEFAULT snowflake_id()` instead. That includes `SERIAL` /
/// `SERIAL4`, which is `integer` in PostgreSQL: a Snowflake id needs 64 bits. `SMALLSERIAL`
/// cannot be honoured at all (0A000).
fn serial_column(t: &ast::DataType) -> SqlResult<bool> {
    let ast::DataType::Custom(name, mods) = t else {
        return Ok(false);
    };
    if !mods.is_empty() {
        return Ok(false);
    }
    match object_name(name).as_deref() {
        Ok("serial" | "serial4" | "bigserial" | "serial8") => Ok(true),
        Ok("smallserial" | "serial2") => Err(SqlError::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "SMALLSERIAL is not supported: serial columns are filled with 64-bit Snowflake ids, \
             which do not fit in smallint",
        )
        .with_hint("Use BIGSERIAL (SERIAL is also bigint in sharddb).")),
        _ => Ok(false),
    }
}

fn check_numeric_typmod(p: u64, _s: u64) -> SqlResult<()> {
    if p == 0 || p > 1000 {
        return Err(SqlError::syntax(format!(
            "NUMERIC precision {p} must be between 1 and 1000"
        )));
    }
    if p > 28 {
        return Err(SqlError::unsupported(format!(
            "numeric precision {p} (sharddb's numeric holds 28 significant digits)"
        )));
    }
    Ok(())
}

/// What sharddb's unique constraints do not support.
fn check_unique_constraint(u: &ast::UniqueConstraint) -> SqlResult<()> {
    if matches!(u.nulls_distinct, ast::NullsDistinctOption::NotDistinct) {
        return Err(SqlError::unsupported("NULLS NOT DISTINCT"));
    }
    if !u.include.is_empty() {
        return Err(SqlError::unsupported("INCLUDE columns in a constraint"));
    }
    if u.characteristics.is_some() {
        return Err(SqlError::unsupported("deferrable constraints"));
    }
    Ok(())
}

fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::And(items) => items.into_iter().for_each(|i| conjuncts(i, out)),
        other => out.push(other),
    }
}

/// A rough evaluation cost, so that cheap conjuncts run first (as PostgreSQL orders quals):
/// `id <> 5 AND s::numeric > 10` must not fail on the row the first conjunct excludes.
fn cost(e: &Expr) -> usize {
    let mut c = 0;
    e.walk(&mut |x| {
        c += match x {
            Expr::Subquery { .. } => 1000,
            Expr::Cast { .. } | Expr::Func { .. } | Expr::Like { .. } => 10,
            _ => 1,
        }
    });
    c
}

fn and_all(mut items: Vec<Expr>) -> Option<Expr> {
    items.sort_by_key(cost);
    match items.len() {
        0 => None,
        1 => items.pop(),
        _ => Some(Expr::And(items)),
    }
}

/// Column indices an expression reads from its own row.
fn columns_used(e: &Expr) -> Vec<usize> {
    let mut v = Vec::new();
    e.walk(&mut |x| {
        if let Expr::Column(i) = x {
            v.push(*i);
        }
    });
    v
}

fn has_subquery(e: &Expr) -> bool {
    let mut found = false;
    e.walk(&mut |x| {
        if matches!(x, Expr::Subquery { .. }) {
            found = true;
        }
    });
    found
}

fn shift_columns(e: Expr, by: isize) -> Expr {
    e.transform(&mut |x| {
        Ok(match x {
            Expr::Column(i) => Expr::Column((i as isize + by) as usize),
            other => other,
        })
    })
    .expect("shifting columns cannot fail")
}

impl<'a> Binder<'a> {
    pub fn new(catalog: &'a Catalog, param_types: Vec<Option<DataType>>) -> Binder<'a> {
        Binder {
            catalog,
            params: RefCell::new(param_types),
            next_subquery: Cell::new(0),
            correlated: RefCell::new(Vec::new()),
            ctes: RefCell::new(Vec::new()),
            depth: Cell::new(0),
            tables: RefCell::new(HashMap::new()),
            index_scans: true,
            pushdown: true,
            estimator: None,
            settings: HashMap::new(),
            index_horizon: None,
            map: None,
        }
    }

    pub fn with_map(mut self, map: Arc<crate::placement::ShardMap>) -> Self {
        self.map = Some(map);
        self
    }

    pub fn with_index_horizon(mut self, snapshot: Option<u64>) -> Self {
        self.index_horizon = snapshot;
        self
    }

    pub fn with_settings(mut self, settings: HashMap<String, String>) -> Self {
        self.settings = settings;
        self
    }

    /// Whether scans may use secondary indexes (the `enable_indexscan` setting).
    pub fn with_index_scans(mut self, on: bool) -> Self {
        self.index_scans = on;
        self
    }

    /// Row estimates for choosing join strategies; without them only co-located joins run on
    /// the shards.
    pub fn with_estimator(mut self, est: &'a dyn crate::sql::join_strategy::RowEstimator) -> Self {
        self.estimator = Some(est);
        self
    }

    /// Whether aggregation, DISTINCT and top-N may run on the shards (`sql/pushdown.rs`; the
    /// `sharddb.pushdown` setting).
    pub fn with_pushdown(mut self, on: bool) -> Self {
        self.pushdown = on;
        self
    }

    fn push_filter(&self, plan: Plan, pred: Expr) -> Plan {
        let tables = self.tables.borrow();
        push_filter(
            plan,
            pred,
            &AccessCtx {
                tables: &tables,
                index_scans: self.index_scans,
            },
        )
    }

    /// Parameter types as inferred (unknown ones default to text).
    pub fn param_types(&self) -> Vec<DataType> {
        self.params
            .borrow()
            .iter()
            .map(|t| match t {
                Some(DataType::Unknown) | None => DataType::Text,
                Some(t) => *t,
            })
            .collect()
    }

    pub fn bind_statement(&self, stmt: &ast::Statement) -> SqlResult<Bound> {
        use ast::Statement as S;
        match stmt {
            S::Query(q) => {
                let (plan, scope) = self.bind_query(q, &[])?;
                use crate::sql::join_strategy::{Choice, choose_strategies};
                let plan = if self.pushdown {
                    crate::sql::pushdown::push_down(plan)?
                } else {
                    plan
                };
                let plan = match &self.map {
                    Some(map) if self.pushdown => {
                        choose_strategies(plan, Choice::Estimate(self.estimator), map)?
                    }
                    Some(map) => choose_strategies(plan, Choice::GatherAll, map)?,
                    None => plan,
                };
                let columns = text_unknowns(scope)
                    .columns
                    .iter()
                    .map(|c| OutputColumn {
                        name: c.name.clone(),
                        ty: c.ty,
                    })
                    .collect();
                Ok(Bound::Query { plan, columns })
            }
            S::Insert(ins) => self.bind_insert(ins).map(Bound::Insert),
            S::Update(upd) => self.bind_update(upd).map(Bound::Update),
            S::Delete(del) => self.bind_delete(del).map(Bound::Delete),
            S::CreateTable(ct) => self.bind_create_table(ct),
            S::CreateIndex(ci) => self.bind_create_index(ci),
            S::CreateView(cv) => {
                if cv.materialized {
                    return Err(SqlError::unsupported("materialized views"));
                }
                let name = object_name(&cv.name)?;
                let columns: Vec<String> = cv.columns.iter().map(|c| ident(&c.name)).collect();
                // Bind once now so that errors surface at CREATE time.
                let (_, scope) = self.bind_query(&cv.query, &[])?;
                if !columns.is_empty() && columns.len() > scope.len() {
                    return Err(SqlError::syntax(
                        "CREATE VIEW specifies more column names than columns",
                    ));
                }
                Ok(Bound::CreateView {
                    def: ViewDef {
                        name,
                        sql: cv.query.to_string(),
                        columns,
                    },
                    or_replace: cv.or_replace,
                })
            }
            S::Drop {
                object_type,
                if_exists,
                names,
                ..
            } => {
                let views = match object_type {
                    ast::ObjectType::Table => false,
                    ast::ObjectType::View => true,
                    ast::ObjectType::Index => {
                        let names = names.iter().map(object_name).collect::<SqlResult<_>>()?;
                        return Ok(Bound::DropIndexes {
                            names,
                            if_exists: *if_exists,
                        });
                    }
                    other => return Err(SqlError::unsupported(format!("DROP {other}"))),
                };
                let names = names.iter().map(object_name).collect::<SqlResult<_>>()?;
                Ok(Bound::DropTables {
                    names,
                    if_exists: *if_exists,
                    views,
                })
            }
            S::Explain {
                statement,
                analyze,
                options,
                ..
            } => {
                // `EXPLAIN (ANALYZE [true|false], COSTS ..., VERBOSE ...)`: ANALYZE is honoured;
                // the others change nothing sharddb prints (it has no costs), as with VERBOSE.
                let mut analyze = *analyze;
                for o in options.iter().flatten() {
                    let on = match &o.arg {
                        None => true,
                        Some(e) => !matches!(
                            e.to_string().to_ascii_lowercase().as_str(),
                            "false" | "off" | "0"
                        ),
                    };
                    match ident(&o.name).as_str() {
                        "analyze" => analyze = on,
                        "costs" | "verbose" | "timing" | "summary" | "buffers" => {}
                        "format" => {
                            let text = o.arg.as_ref().map(|e| e.to_string().to_ascii_lowercase());
                            if text.as_deref() != Some("text") {
                                return Err(SqlError::unsupported(
                                    "EXPLAIN formats other than TEXT",
                                ));
                            }
                        }
                        other => {
                            return Err(SqlError::new(
                                sqlstate::SYNTAX_ERROR,
                                format!("unrecognized EXPLAIN option \"{other}\""),
                            ));
                        }
                    }
                }
                let bound = self.bind_statement(statement)?;
                let explain = |p: &Plan| match &self.map {
                    Some(m) => p.explain_routed(m),
                    None => p.explain(),
                };
                // Which commit protocol a write takes: one written shard commits in one phase.
                let protocol = |shards: Option<usize>| match shards {
                    Some(0) => " (no shard written)".to_string(),
                    Some(1) => " (one shard: 1PC)".to_string(),
                    Some(n) => format!(" ({n} shards: 2PC)"),
                    None => " (1PC if the rows are on one shard, else 2PC)".to_string(),
                };
                let scan_shards = |p: &Plan| {
                    let m = self.map.as_ref()?;
                    let mut node = p;
                    loop {
                        match node {
                            Plan::Filter { input, .. } | Plan::Project { input, .. } => {
                                node = input
                            }
                            Plan::Scan { .. } => {
                                return node
                                    .scan_route(m)
                                    .filter(|r| r.shards.len() <= 1)
                                    .map(|r| r.shards.len());
                            }
                            _ => return None,
                        }
                    }
                };
                if analyze {
                    return match bound {
                        Bound::Query { plan, .. } => Ok(Bound::ExplainAnalyze { plan }),
                        _ => Err(SqlError::unsupported(
                            "EXPLAIN ANALYZE of a statement other than a query",
                        )
                        .with_hint("EXPLAIN (without ANALYZE) shows the route of a write.")),
                    };
                }
                let lines = match &bound {
                    Bound::Query { plan, .. } => explain(plan),
                    Bound::Insert(i) => {
                        let shards = self.map.as_ref().and_then(|m| insert_shards(i, m));
                        let mut v = vec![format!("Insert on {}{}", i.table.name, protocol(shards))];
                        v.extend(explain(&i.source).into_iter().map(|l| format!("  {l}")));
                        v
                    }
                    Bound::Update(u) => {
                        // Assigning a partition column moves rows to owners known only then.
                        let key = crate::placement::TableRoute::for_table(&u.table).key_columns;
                        let moves = u.assignments.iter().any(|(c, _)| key.contains(c));
                        let shards = if moves { None } else { scan_shards(&u.scan) };
                        let mut v = vec![format!("Update on {}{}", u.table.name, protocol(shards))];
                        v.extend(explain(&u.scan).into_iter().map(|l| format!("  {l}")));
                        v
                    }
                    Bound::Delete(d) => {
                        let mut v = vec![format!(
                            "Delete on {}{}",
                            d.table.name,
                            protocol(scan_shards(&d.scan))
                        )];
                        v.extend(explain(&d.scan).into_iter().map(|l| format!("  {l}")));
                        v
                    }
                    _ => return Err(SqlError::unsupported("EXPLAIN of this statement")),
                };
                Ok(Bound::Explain(lines))
            }
            S::StartTransaction { .. } => Ok(Bound::Begin),
            S::Commit { .. } => Ok(Bound::Commit),
            S::Rollback { .. } => Ok(Bound::Rollback),
            S::Set(set) => self.bind_set(set),
            S::ShowVariable { variable } => {
                let name = variable.iter().map(ident).collect::<Vec<_>>().join(" ");
                Ok(match name.as_str() {
                    "shards" => Bound::ShowShards,
                    "ranges" => Bound::ShowRanges,
                    _ => Bound::Show { name },
                })
            }
            S::Call(f) => self.bind_cluster_command(f),
            other => {
                let text = other.to_string();
                let head: String = text
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                Err(SqlError::unsupported(format!("statement {head}")))
            }
        }
    }

    /// The placement commands, which `sql::parser` rewrites into calls of internal procedures:
    /// `ALTER CLUSTER ADD SHARD`, `ALTER CLUSTER REMOVE SHARD n`, `ALTER TABLE t SPLIT AT ...`.
    fn bind_cluster_command(&self, f: &ast::Function) -> SqlResult<Bound> {
        let name = object_name(&f.name)?;
        let args: Vec<&ast::Expr> = match &f.args {
            ast::FunctionArguments::List(list) => list
                .args
                .iter()
                .map(|a| match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
                    other => Err(SqlError::syntax(format!("unexpected argument {other}"))),
                })
                .collect::<SqlResult<_>>()?,
            ast::FunctionArguments::None => Vec::new(),
            ast::FunctionArguments::Subquery(_) => {
                return Err(SqlError::syntax("unexpected subquery"));
            }
        };
        let constant = |e: &ast::Expr, ty: DataType| -> SqlResult<Value> {
            let empty = Scope::default();
            let (bound, t) = self.bind_expr(
                e,
                &Cx {
                    scope: &empty,
                    outer: &[],
                    aggs: None,
                    clause: "SPLIT AT",
                },
            )?;
            let bound = self.coerce(bound, t, ty, CastCtx::Assignment)?;
            bound.eval(&[], &crate::sql::expr::EvalContext::empty())
        };
        match name.as_str() {
            "sharddb_add_shard" if args.is_empty() => Ok(Bound::AddShard),
            "sharddb_remove_shard" if args.len() == 1 => match constant(args[0], DataType::Int8)? {
                Value::Int(n) if n >= 0 => Ok(Bound::RemoveShard(n as usize)),
                _ => Err(SqlError::new(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    "REMOVE SHARD takes a shard number",
                )),
            },
            "sharddb_split_at" if args.len() >= 2 => {
                let table_name = match args[0] {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) => s.clone(),
                        _ => return Err(SqlError::syntax("SPLIT AT needs a table name")),
                    },
                    _ => return Err(SqlError::syntax("SPLIT AT needs a table name")),
                };
                let table = self.catalog.table(&table_name)?;
                if table.placement.kind != PlacementKind::Range {
                    return Err(SqlError::new(
                        sqlstate::WRONG_OBJECT_TYPE,
                        format!("table \"{table_name}\" is not placed by range"),
                    )
                    .with_hint(
                        "SPLIT AT applies to tables created with PARTITION BY RANGE (...); \
                         hash-placed tables spread over the ring by themselves.",
                    ));
                }
                let key_cols = if table.placement.columns.is_empty() {
                    table.primary_key.clone()
                } else {
                    table.placement.columns.clone()
                };
                let mut points = Vec::new();
                for a in &args[1..] {
                    let items: Vec<&ast::Expr> = match a {
                        ast::Expr::Nested(e) => vec![&**e],
                        ast::Expr::Tuple(es) => es.iter().collect(),
                        other => vec![*other],
                    };
                    if items.len() > key_cols.len() {
                        return Err(SqlError::new(
                            sqlstate::SYNTAX_ERROR,
                            format!(
                                "split point {a} has {} values, the partition key {} columns",
                                items.len(),
                                key_cols.len()
                            ),
                        ));
                    }
                    let mut values = Vec::new();
                    for (e, c) in items.iter().zip(&key_cols) {
                        let v = constant(e, table.columns[*c].ty)?;
                        if v.is_null() {
                            return Err(SqlError::new(
                                sqlstate::NOT_NULL_VIOLATION,
                                "a split point cannot be NULL",
                            ));
                        }
                        values.push(v);
                    }
                    points.push(values);
                }
                Ok(Bound::SplitAt { table, points })
            }
            _ => Err(SqlError::unsupported(format!("CALL {name}"))),
        }
    }

    fn bind_set(&self, set: &ast::Set) -> SqlResult<Bound> {
        match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => {
                // `prefix.name` is a custom setting (like PostgreSQL's placeholder variables),
                // such as `sharddb.pushdown`.
                let name = match variable.0.as_slice() {
                    [
                        ast::ObjectNamePart::Identifier(prefix),
                        ast::ObjectNamePart::Identifier(n),
                    ] if ident(prefix) != "public" => format!("{}.{}", ident(prefix), ident(n)),
                    _ => object_name(variable)?,
                };
                let value = values
                    .iter()
                    .map(|v| match v {
                        ast::Expr::Value(ast::ValueWithSpan {
                            value: ast::Value::SingleQuotedString(s),
                            ..
                        }) => s.clone(),
                        ast::Expr::Identifier(i) => i.value.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                Ok(Bound::Set { name, value })
            }
            ast::Set::SetTimeZone { value, .. } => Ok(Bound::Set {
                name: "timezone".into(),
                value: match value {
                    ast::Expr::Value(ast::ValueWithSpan {
                        value: ast::Value::SingleQuotedString(s),
                        ..
                    }) => s.clone(),
                    other => other.to_string(),
                },
            }),
            ast::Set::SetNames { charset_name, .. } => Ok(Bound::Set {
                name: "client_encoding".into(),
                value: charset_name.to_string(),
            }),
            other => Err(SqlError::unsupported(format!("{other}"))),
        }
    }

    // ---------------------------------------------------------------- DDL

    fn bind_create_table(&self, ct: &ast::CreateTable) -> SqlResult<Bound> {
        if ct.query.is_some() {
            return Err(SqlError::unsupported("CREATE TABLE ... AS"));
        }
        if ct.like.is_some() || ct.inherits.is_some() {
            return Err(SqlError::unsupported("CREATE TABLE LIKE/INHERITS"));
        }
        let name = object_name(&ct.name)?;
        let mut columns: Vec<ColumnDef> = Vec::new();
        let mut primary_key: Option<Vec<usize>> = None;
        // UNIQUE constraints: key columns and the constraint's name if given.
        let mut uniques: Vec<(Vec<usize>, Option<String>)> = Vec::new();
        let set_pk = |pk: &mut Option<Vec<usize>>, cols: Vec<usize>| -> SqlResult<()> {
            if pk.is_some() {
                return Err(SqlError::new(
                    sqlstate::INVALID_TABLE_DEFINITION,
                    format!("multiple primary keys for table \"{name}\" are not allowed"),
                ));
            }
            *pk = Some(cols);
            Ok(())
        };
        for (i, col) in ct.columns.iter().enumerate() {
            let col_name = ident(&col.name);
            if columns.iter().any(|c| c.name == col_name) {
                return Err(SqlError::new(
                    sqlstate::DUPLICATE_COLUMN,
                    format!("column \"{col_name}\" specified more than once"),
                ));
            }
            let serial = serial_column(&col.data_type)?;
            let ty = if serial {
                DataType::Int8
            } else {
                convert_type(&col.data_type)?
            };
            let mut def = ColumnDef {
                name: col_name.clone(),
                ty,
                nullable: !serial,
                default: serial.then(|| SERIAL_DEFAULT.to_string()),
                hidden: false,
            };
            // As PostgreSQL words it: a serial column brings its own NOT NULL and DEFAULT.
            let serial_conflict = |what: &str| {
                SqlError::syntax(format!(
                    "{what} for column \"{col_name}\" of table \"{name}\""
                ))
            };
            for opt in &col.options {
                match &opt.option {
                    ast::ColumnOption::Null if serial => {
                        return Err(serial_conflict("conflicting NULL/NOT NULL declarations"));
                    }
                    ast::ColumnOption::Default(_) if serial => {
                        return Err(serial_conflict("multiple default values specified"));
                    }
                    ast::ColumnOption::Null => def.nullable = true,
                    ast::ColumnOption::NotNull => def.nullable = false,
                    ast::ColumnOption::Default(e) => {
                        // Bind now to report errors at CREATE time.
                        let empty = Scope::default();
                        let (bound, t) = self
                            .bind_expr(
                                e,
                                &Cx {
                                    scope: &empty,
                                    outer: &[],
                                    aggs: None,
                                    clause: "DEFAULT expressions",
                                },
                            )
                            .map_err(|err| {
                                if err.code == sqlstate::UNDEFINED_COLUMN {
                                    SqlError::new(
                                        sqlstate::FEATURE_NOT_SUPPORTED,
                                        "cannot use column reference in DEFAULT expression",
                                    )
                                } else {
                                    err
                                }
                            })?;
                        if has_subquery(&bound) {
                            return Err(SqlError::unsupported("subqueries in DEFAULT"));
                        }
                        // Type errors surface now; length and precision checks at INSERT time.
                        self.coerce(bound, t, base_type(ty), CastCtx::Assignment)?;
                        def.default = Some(e.to_string());
                    }
                    ast::ColumnOption::PrimaryKey(_) => {
                        set_pk(&mut primary_key, vec![i])?;
                        def.nullable = false;
                    }
                    ast::ColumnOption::Unique(u) => {
                        check_unique_constraint(u)?;
                        let name = opt.name.as_ref().or(u.name.as_ref()).map(ident);
                        uniques.push((vec![i], name));
                    }
                    other => {
                        return Err(SqlError::unsupported(format!("column option {other}")));
                    }
                }
            }
            columns.push(def);
        }
        for c in &ct.constraints {
            match c {
                ast::TableConstraint::PrimaryKey(pk) => {
                    let mut idx = Vec::new();
                    for ic in &pk.columns {
                        let n = match &ic.column.expr {
                            ast::Expr::Identifier(i) => ident(i),
                            other => {
                                return Err(SqlError::unsupported(format!(
                                    "primary key expression {other}"
                                )));
                            }
                        };
                        let pos = columns.iter().position(|c| c.name == n).ok_or_else(|| {
                            SqlError::new(
                                sqlstate::UNDEFINED_COLUMN,
                                format!("column \"{n}\" named in key does not exist"),
                            )
                        })?;
                        columns[pos].nullable = false;
                        idx.push(pos);
                    }
                    set_pk(&mut primary_key, idx)?;
                }
                ast::TableConstraint::Unique(u) => {
                    check_unique_constraint(u)?;
                    let mut idx = Vec::new();
                    for ic in &u.columns {
                        let n = match &ic.column.expr {
                            ast::Expr::Identifier(i) => ident(i),
                            other => {
                                return Err(SqlError::unsupported(format!(
                                    "unique constraint expression {other}"
                                )));
                            }
                        };
                        let pos = columns.iter().position(|c| c.name == n).ok_or_else(|| {
                            SqlError::new(
                                sqlstate::UNDEFINED_COLUMN,
                                format!("column \"{n}\" named in key does not exist"),
                            )
                        })?;
                        idx.push(pos);
                    }
                    uniques.push((idx, u.name.as_ref().map(ident)));
                }
                other => {
                    return Err(SqlError::unsupported(format!("table constraint {other}")));
                }
            }
        }
        let primary_declared = primary_key.is_some();
        let primary_key = match primary_key {
            Some(pk) => pk,
            None => {
                columns.push(ColumnDef {
                    name: ROWID_COLUMN.to_string(),
                    ty: DataType::Int8,
                    nullable: false,
                    default: None,
                    hidden: true,
                });
                vec![columns.len() - 1]
            }
        };
        let placement = match &ct.partition_by {
            None => PlacementSpec::default(),
            Some(e) => bind_partition_by(e, &columns, &primary_key, primary_declared)?,
        };
        let mut def = TableDef {
            id: 0,
            name,
            columns,
            primary_key,
            indexes: Vec::new(),
            placement,
        };
        def.indexes.extend(def.pkey_index());
        let mut taken: Vec<String> = vec![def.name.clone()];
        taken.extend(def.indexes.iter().map(|i| i.name.clone()));
        for (cols, explicit) in uniques {
            let index_name = match explicit {
                Some(n) => {
                    if taken.contains(&n) {
                        return Err(SqlError::new(
                            sqlstate::DUPLICATE_TABLE,
                            format!("relation \"{n}\" already exists"),
                        ));
                    }
                    n
                }
                None => {
                    let names: Vec<&str> =
                        cols.iter().map(|c| def.columns[*c].name.as_str()).collect();
                    self.catalog.choose_name(&def.name, &names, "key", &taken)
                }
            };
            taken.push(index_name.clone());
            def.indexes.push(IndexDef {
                id: 0,
                name: index_name,
                table_id: 0,
                columns: cols
                    .into_iter()
                    .map(|column| IndexKeyColumn {
                        column,
                        desc: false,
                    })
                    .collect(),
                unique: true,
                constraint: true,
                primary: false,
                built_ts: 0,
            });
        }
        Ok(Bound::CreateTable {
            def,
            if_not_exists: ct.if_not_exists,
        })
    }

    fn bind_create_index(&self, ci: &ast::CreateIndex) -> SqlResult<Bound> {
        if ci.concurrently {
            return Err(
                SqlError::unsupported("CREATE INDEX CONCURRENTLY").with_hint(
                    "Use CREATE INDEX: a build blocks writers to the table, never readers.",
                ),
            );
        }
        if let Some(using) = &ci.using
            && !matches!(using, ast::IndexType::BTree)
        {
            return Err(SqlError::unsupported(format!(
                "access method \"{}\"",
                using.to_string().to_lowercase()
            ))
            .with_hint("btree is the only index method."));
        }
        if ci.predicate.is_some() {
            return Err(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "partial indexes (CREATE INDEX ... WHERE) are not supported yet",
            )
            .with_hint("Index the whole table: leave out the WHERE clause."));
        }
        if !ci.include.is_empty() {
            return Err(SqlError::unsupported("INCLUDE columns in an index"));
        }
        if ci.nulls_distinct == Some(false) {
            return Err(SqlError::unsupported("NULLS NOT DISTINCT"));
        }
        if !ci.with.is_empty() || !ci.index_options.is_empty() || !ci.alter_options.is_empty() {
            return Err(SqlError::unsupported("index storage options"));
        }
        if ci.r#async {
            return Err(SqlError::unsupported("CREATE INDEX ASYNC"));
        }
        let table_name = object_name(&ci.table_name)?;
        let table = self.catalog.table(&table_name)?;
        let mut columns = Vec::new();
        for ic in &ci.columns {
            if ic.operator_class.is_some() {
                return Err(SqlError::unsupported("operator classes in an index"));
            }
            let n = match &ic.column.expr {
                ast::Expr::Identifier(i) => ident(i),
                other => {
                    return Err(SqlError::new(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!("index expressions such as {other} are not supported yet"),
                    )
                    .with_hint("Only plain columns can be indexed."));
                }
            };
            let column = table
                .column_index(&n)
                .filter(|c| !table.columns[*c].hidden)
                .ok_or_else(|| {
                    SqlError::new(
                        sqlstate::UNDEFINED_COLUMN,
                        format!("column \"{n}\" does not exist"),
                    )
                })?;
            let desc = match &ic.column.options.sort {
                None | Some(ast::OrderBySort::Asc) => false,
                Some(ast::OrderBySort::Desc) => true,
                Some(ast::OrderBySort::Using(_)) => {
                    return Err(SqlError::unsupported("USING operator in an index column"));
                }
            };
            if let Some(nulls_first) = ic.column.options.nulls_first
                && nulls_first != desc
            {
                return Err(SqlError::unsupported(format!(
                    "{} {} in an index",
                    if desc { "DESC" } else { "ASC" },
                    if nulls_first {
                        "NULLS FIRST"
                    } else {
                        "NULLS LAST"
                    }
                ))
                .with_hint(
                    "NULLs sort last in ascending and first in descending index columns, as \
                     PostgreSQL's defaults; leave out NULLS FIRST/LAST.",
                ));
            }
            columns.push(IndexKeyColumn { column, desc });
        }
        if columns.is_empty() {
            return Err(SqlError::syntax("an index needs at least one column"));
        }
        if columns.len() > 32 {
            return Err(SqlError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                "cannot use more than 32 columns in an index",
            ));
        }
        let name = match &ci.name {
            Some(n) => object_name(n)?,
            None => {
                let names: Vec<&str> = columns
                    .iter()
                    .map(|c| table.columns[c.column].name.as_str())
                    .collect();
                self.catalog.choose_name(&table.name, &names, "idx", &[])
            }
        };
        Ok(Bound::CreateIndex {
            index: IndexDef {
                id: 0,
                name,
                table_id: table.id,
                columns,
                unique: ci.unique,
                constraint: false,
                primary: false,
                built_ts: 0,
            },
            table,
            if_not_exists: ci.if_not_exists,
        })
    }

    // ---------------------------------------------------------------- DML

    fn table_scope(table: &TableDef, qualifier: &str) -> Scope {
        Scope::new(
            table
                .columns
                .iter()
                .map(|c| ScopeColumn {
                    qualifier: Some(qualifier.to_string()),
                    name: c.name.clone(),
                    ty: c.ty,
                    hidden: c.hidden,
                    qualified_only: false,
                })
                .collect(),
        )
    }

    /// A system view's columns, qualified by the name (or alias) it is referenced under.
    fn system_scope(view: SystemView, qualifier: &str) -> Scope {
        Scope::new(
            view.columns()
                .into_iter()
                .map(|(name, ty)| ScopeColumn {
                    qualifier: Some(qualifier.to_string()),
                    name: name.to_string(),
                    ty,
                    hidden: false,
                    qualified_only: false,
                })
                .collect(),
        )
    }

    fn scan_plan(&self, table: &Arc<TableDef>) -> Plan {
        // The indexes this statement may read through: none built after its snapshot.
        let usable = match self.index_horizon {
            Some(h) if table.indexes.iter().any(|i| i.built_ts > h) => {
                let mut t = (**table).clone();
                t.indexes.retain(|i| i.built_ts <= h);
                Arc::new(t)
            }
            _ => table.clone(),
        };
        self.tables.borrow_mut().insert(table.id, usable);
        Plan::Scan {
            table_id: table.id,
            table_name: table.name.clone(),
            column_types: table.columns.iter().map(|c| c.ty).collect(),
            primary_key: table.primary_key.clone(),
            placement: table.placement.clone(),
            access: Access::Full,
            filter: None,
        }
    }

    fn bind_returning(
        &self,
        items: &Option<Vec<ast::SelectItem>>,
        scope: &Scope,
    ) -> SqlResult<Option<Returning>> {
        let Some(items) = items else { return Ok(None) };
        let (exprs, columns) = self.bind_select_list(items, scope, &[], None)?;
        Ok(Some(Returning {
            exprs,
            columns: columns
                .into_iter()
                .map(|c| OutputColumn {
                    name: c.name,
                    ty: concrete(c.ty),
                })
                .collect(),
        }))
    }

    fn bind_insert(&self, ins: &ast::Insert) -> SqlResult<InsertPlan> {
        let name = match &ins.table {
            ast::TableObject::TableName(n) => object_name(n)?,
            _ => return Err(SqlError::unsupported("INSERT into a table function")),
        };
        if ins.on.is_some() {
            return Err(SqlError::unsupported("INSERT ... ON CONFLICT"));
        }
        // Other dialects' INSERT forms that sqlparser accepts but PostgreSQL's grammar does not;
        // ignoring them would silently change what the statement means.
        let foreign = if ins.or.is_some() {
            Some("OR")
        } else if ins.ignore {
            Some("IGNORE")
        } else if ins.replace_into {
            Some("REPLACE")
        } else if ins.overwrite {
            Some("OVERWRITE")
        } else if !ins.assignments.is_empty() {
            Some("SET")
        } else if ins.partitioned.is_some() || !ins.after_columns.is_empty() {
            Some("PARTITION")
        } else if ins.priority.is_some()
            || ins.insert_alias.is_some()
            || ins.settings.is_some()
            || ins.format_clause.is_some()
            || ins.output.is_some()
            || ins.by_name
        {
            Some("INSERT")
        } else {
            None
        };
        if let Some(word) = foreign {
            return Err(SqlError::syntax(format!(
                "syntax error at or near \"{word}\""
            )));
        }
        if !ins.into {
            return Err(SqlError::syntax(format!(
                "syntax error at or near \"{}\"",
                match &ins.table {
                    ast::TableObject::TableName(n) => n.to_string(),
                    other => other.to_string(),
                }
            )));
        }
        let table = self.catalog.table(&name)?;
        let qualifier = ins
            .table_alias
            .as_ref()
            .map(|a| ident(&a.alias))
            .unwrap_or_else(|| name.clone());
        // Target columns in the order the source provides them.
        let targets: Vec<usize> = if ins.columns.is_empty() {
            (0..table.columns.len())
                .filter(|i| !table.columns[*i].hidden)
                .collect()
        } else {
            let mut v = Vec::new();
            for c in &ins.columns {
                let n = object_name(c)?;
                let idx = table
                    .column_index(&n)
                    .filter(|i| !table.columns[*i].hidden)
                    .ok_or_else(|| {
                        SqlError::new(
                            sqlstate::UNDEFINED_COLUMN,
                            format!("column \"{n}\" of relation \"{name}\" does not exist"),
                        )
                    })?;
                if v.contains(&idx) {
                    return Err(SqlError::new(
                        sqlstate::DUPLICATE_COLUMN,
                        format!("column \"{n}\" specified more than once"),
                    ));
                }
                v.push(idx);
            }
            v
        };
        let target_types: Vec<DataType> = targets.iter().map(|i| table.columns[*i].ty).collect();
        let source_ast = ins
            .source
            .as_ref()
            .ok_or_else(|| SqlError::unsupported("INSERT ... DEFAULT VALUES"))?;
        // VALUES rows are bound with the target column types as context so that literals and
        // parameters take the column's type; DEFAULT stays a marker (NULL literal + flag).
        let (source, source_types, default_marks) =
            self.bind_insert_source(source_ast, &target_types)?;
        if source_types.len() > targets.len() {
            return Err(SqlError::syntax(
                "INSERT has more expressions than target columns",
            ));
        }
        if source_types.len() < targets.len() && ins.columns.is_empty() {
            // Fewer values than columns: the remaining columns take their defaults.
        } else if source_types.len() < targets.len() {
            return Err(SqlError::syntax(
                "INSERT has more target columns than expressions",
            ));
        }
        let mut columns = Vec::with_capacity(table.columns.len());
        for (ci, col) in table.columns.iter().enumerate() {
            if col.hidden {
                columns.push(ColumnSource::RowId);
                continue;
            }
            match targets
                .iter()
                .position(|t| *t == ci)
                .filter(|p| *p < source_types.len())
            {
                Some(p) if default_marks.is_empty() || !default_marks.iter().all(|row| row[p]) => {
                    if !cast::can_coerce(source_types[p], col.ty, CastContext::Assignment) {
                        return Err(type_mismatch(format!(
                            "column \"{}\" is of type {} but expression is of type {}",
                            col.name,
                            col.ty.name(),
                            source_types[p].name()
                        ))
                        .with_hint("You will need to rewrite or cast the expression."));
                    }
                    columns.push(ColumnSource::Input {
                        index: p,
                        from: source_types[p],
                    });
                }
                _ => columns.push(ColumnSource::Default(self.default_expr(col)?)),
            }
        }
        // Rows that mix DEFAULT with values: replace DEFAULT markers by the default expression.
        let source = match source {
            Plan::Values { rows, width } if default_marks.iter().any(|r| r.iter().any(|d| *d)) => {
                let mut new_rows = Vec::with_capacity(rows.len());
                for (row, marks) in rows.into_iter().zip(&default_marks) {
                    let mut nr = Vec::with_capacity(row.len());
                    for (p, (e, is_default)) in row.into_iter().zip(marks).enumerate() {
                        if *is_default {
                            let col = &table.columns[targets[p]];
                            let d = self.default_expr(col)?;
                            // Default expressions are already of the column type; the input
                            // cast from that type is a no-op.
                            nr.push(self.coerce(d, col.ty, source_types[p], CastCtx::Explicit)?);
                        } else {
                            nr.push(e);
                        }
                    }
                    new_rows.push(nr);
                }
                Plan::Values {
                    rows: new_rows,
                    width,
                }
            }
            other => other,
        };
        let scope = Self::table_scope(&table, &qualifier);
        let returning = self.bind_returning(&ins.returning, &scope)?;
        Ok(InsertPlan {
            table,
            source,
            columns,
            returning,
        })
    }

    /// The column's DEFAULT (cast to its type), or NULL.
    fn default_expr(&self, col: &ColumnDef) -> SqlResult<Expr> {
        let Some(text) = &col.default else {
            return Ok(Expr::Literal(Value::Null));
        };
        let e = crate::sql::parser::parse_expr(text)?;
        let empty = Scope::default();
        let (bound, t) = self.bind_expr(
            &e,
            &Cx {
                scope: &empty,
                outer: &[],
                aggs: None,
                clause: "DEFAULT expressions",
            },
        )?;
        self.coerce(bound, t, col.ty, CastCtx::Assignment)
    }

    /// Binds the source of an INSERT. Returns the plan, its column types, and for VALUES which
    /// entries were the keyword DEFAULT.
    fn bind_insert_source(
        &self,
        q: &ast::Query,
        target_types: &[DataType],
    ) -> SqlResult<(Plan, Vec<DataType>, Vec<Vec<bool>>)> {
        if let (ast::SetExpr::Values(values), None, None, None) =
            (q.body.as_ref(), &q.with, &q.order_by, &q.limit_clause)
        {
            let (plan, types, marks) = self.bind_values(values, &[], Some(target_types))?;
            return Ok((plan, types, marks));
        }
        let (plan, scope) = self.bind_query(q, &[])?;
        let types = scope.types();
        let marks = Vec::new();
        Ok((plan, types, marks))
    }

    fn bind_update(&self, upd: &ast::Update) -> SqlResult<UpdatePlan> {
        if upd.from.is_some() {
            return Err(SqlError::unsupported("UPDATE ... FROM"));
        }
        if !upd.table.joins.is_empty() {
            return Err(SqlError::unsupported("UPDATE of a join"));
        }
        let (name, alias) = match &upd.table.relation {
            ast::TableFactor::Table { name, alias, .. } => (object_name(name)?, alias.clone()),
            _ => return Err(SqlError::unsupported("UPDATE of this relation")),
        };
        let table = self.catalog.table(&name)?;
        let qualifier = alias
            .map(|a| ident(&a.name))
            .unwrap_or_else(|| name.clone());
        let scope = Self::table_scope(&table, &qualifier);
        let cx = Cx {
            scope: &scope,
            outer: &[],
            aggs: None,
            clause: "UPDATE",
        };
        let mut assignments: Vec<(usize, Expr)> = Vec::new();
        for a in &upd.assignments {
            let col_name = match &a.target {
                ast::AssignmentTarget::ColumnName(n) => {
                    // `SET t.col = ...` is not PostgreSQL, but a bare name may come qualified.
                    match n.0.last() {
                        Some(ast::ObjectNamePart::Identifier(i)) => ident(i),
                        _ => return Err(SqlError::syntax("invalid assignment target")),
                    }
                }
                ast::AssignmentTarget::Tuple(_) => {
                    return Err(SqlError::unsupported("UPDATE SET (a, b) = ..."));
                }
            };
            let idx = table
                .column_index(&col_name)
                .filter(|i| !table.columns[*i].hidden)
                .ok_or_else(|| {
                    SqlError::new(
                        sqlstate::UNDEFINED_COLUMN,
                        format!("column \"{col_name}\" of relation \"{name}\" does not exist"),
                    )
                })?;
            if assignments.iter().any(|(i, _)| *i == idx) {
                return Err(SqlError::syntax(format!(
                    "multiple assignments to same column \"{col_name}\""
                )));
            }
            let col = &table.columns[idx];
            let value = if is_default_keyword(&a.value) {
                self.default_expr(col)?
            } else {
                let (e, t) = self.bind_expr(&a.value, &cx)?;
                if !cast::can_coerce(t, col.ty, CastContext::Assignment) {
                    return Err(type_mismatch(format!(
                        "column \"{}\" is of type {} but expression is of type {}",
                        col.name,
                        col.ty.name(),
                        t.name()
                    ))
                    .with_hint("You will need to rewrite or cast the expression."));
                }
                self.coerce(e, t, col.ty, CastCtx::Assignment)?
            };
            assignments.push((idx, value));
        }
        let scan = self.bind_dml_scan(&table, &scope, &upd.selection)?;
        let returning = self.bind_returning(&upd.returning, &scope)?;
        Ok(UpdatePlan {
            table,
            scan,
            assignments,
            returning,
        })
    }

    fn bind_delete(&self, del: &ast::Delete) -> SqlResult<DeletePlan> {
        if del.using.is_some() {
            return Err(SqlError::unsupported("DELETE ... USING"));
        }
        let from = match &del.from {
            ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
        };
        let [twj] = from.as_slice() else {
            return Err(SqlError::unsupported("DELETE from several tables"));
        };
        if !twj.joins.is_empty() {
            return Err(SqlError::unsupported("DELETE from a join"));
        }
        let (name, alias) = match &twj.relation {
            ast::TableFactor::Table { name, alias, .. } => (object_name(name)?, alias.clone()),
            _ => return Err(SqlError::unsupported("DELETE from this relation")),
        };
        let table = self.catalog.table(&name)?;
        let qualifier = alias
            .map(|a| ident(&a.name))
            .unwrap_or_else(|| name.clone());
        let scope = Self::table_scope(&table, &qualifier);
        let scan = self.bind_dml_scan(&table, &scope, &del.selection)?;
        let returning = self.bind_returning(&del.returning, &scope)?;
        Ok(DeletePlan {
            table,
            scan,
            returning,
        })
    }

    fn bind_dml_scan(
        &self,
        table: &Arc<TableDef>,
        scope: &Scope,
        selection: &Option<ast::Expr>,
    ) -> SqlResult<Plan> {
        let plan = self.scan_plan(table);
        match selection {
            None => Ok(plan),
            Some(w) => {
                let pred = self.bind_predicate(w, scope, &[], "WHERE")?;
                Ok(self.push_filter(plan, pred))
            }
        }
    }

    fn bind_predicate(
        &self,
        e: &ast::Expr,
        scope: &Scope,
        outer: &[&Scope],
        clause: &'static str,
    ) -> SqlResult<Expr> {
        let (b, t) = self.bind_expr(
            e,
            &Cx {
                scope,
                outer,
                aggs: None,
                clause,
            },
        )?;
        self.coerce_bool(b, t, clause)
    }

    fn coerce_bool(&self, e: Expr, t: DataType, clause: &str) -> SqlResult<Expr> {
        match t {
            DataType::Bool => Ok(e),
            DataType::Unknown => self.coerce(e, t, DataType::Bool, CastCtx::Implicit),
            other => Err(type_mismatch(format!(
                "argument of {clause} must be type boolean, not type {}",
                other.name()
            ))),
        }
    }

    // ---------------------------------------------------------------- queries

    /// Binds a query; `outer` are the enclosing queries' scopes, innermost first.
    pub fn bind_query(&self, q: &ast::Query, outer: &[&Scope]) -> SqlResult<(Plan, Scope)> {
        let depth = self.depth.get();
        if depth >= MAX_DEPTH {
            return Err(SqlError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                "query nesting is too deep",
            ));
        }
        self.depth.set(depth + 1);
        let result = self.bind_query_inner(q, outer);
        self.depth.set(depth);
        result
    }

    fn bind_query_inner(&self, q: &ast::Query, outer: &[&Scope]) -> SqlResult<(Plan, Scope)> {
        if q.fetch.is_some() || !q.locks.is_empty() {
            return Err(SqlError::unsupported("FETCH / FOR UPDATE"));
        }
        let pushed_ctes = if let Some(with) = &q.with {
            if with.recursive {
                return Err(SqlError::unsupported("WITH RECURSIVE"));
            }
            let mut map = HashMap::new();
            self.ctes.borrow_mut().push(HashMap::new());
            for cte in &with.cte_tables {
                let name = ident(&cte.alias.name);
                if map.contains_key(&name) {
                    self.ctes.borrow_mut().pop();
                    return Err(SqlError::new(
                        sqlstate::DUPLICATE_ALIAS,
                        format!("WITH query name \"{name}\" specified more than once"),
                    ));
                }
                let def = CteDef {
                    query: (*cte.query).clone(),
                    columns: cte.alias.columns.iter().map(|c| ident(&c.name)).collect(),
                    visible: self.ctes.borrow().clone(),
                };
                // Later CTEs may reference earlier ones.
                self.ctes
                    .borrow_mut()
                    .last_mut()
                    .expect("pushed")
                    .insert(name.clone(), def.clone());
                map.insert(name, def);
            }
            true
        } else {
            false
        };
        let result = self.bind_query_body(q, outer);
        if pushed_ctes {
            self.ctes.borrow_mut().pop();
        }
        result
    }

    fn bind_query_body(&self, q: &ast::Query, outer: &[&Scope]) -> SqlResult<(Plan, Scope)> {
        let order_by: &[ast::OrderByExpr] = match &q.order_by {
            None => &[],
            Some(ob) => match &ob.kind {
                ast::OrderByKind::Expressions(v) => v,
                ast::OrderByKind::All(_) => return Err(SqlError::unsupported("ORDER BY ALL")),
            },
        };
        let (limit, offset) = match &q.limit_clause {
            None => (None, None),
            Some(ast::LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if !limit_by.is_empty() {
                    return Err(SqlError::unsupported("LIMIT BY"));
                }
                (limit.clone(), offset.as_ref().map(|o| o.value.clone()))
            }
            Some(ast::LimitClause::OffsetCommaLimit { offset, limit }) => {
                (Some(limit.clone()), Some(offset.clone()))
            }
        };
        let (plan, scope) = match q.body.as_ref() {
            ast::SetExpr::Select(sel) => self.bind_select(sel, order_by, outer)?,
            body => {
                let (plan, scope) = self.bind_set_expr(body, outer)?;
                if order_by.is_empty() {
                    (plan, scope)
                } else {
                    let keys = self.bind_output_order(order_by, &scope, outer)?;
                    (
                        Plan::Sort {
                            input: Box::new(plan),
                            keys,
                        },
                        scope,
                    )
                }
            }
        };
        let mut plan = self.bind_limit(plan, limit.as_ref(), offset.as_ref(), outer)?;
        if self.index_scans {
            access::apply_top_n(&mut plan, &self.tables.borrow());
        }
        Ok((plan, scope))
    }

    fn bind_limit(
        &self,
        plan: Plan,
        limit: Option<&ast::Expr>,
        offset: Option<&ast::Expr>,
        outer: &[&Scope],
    ) -> SqlResult<Plan> {
        if limit.is_none() && offset.is_none() {
            return Ok(plan);
        }
        let empty = Scope::default();
        let bind_count = |e: &ast::Expr, clause: &'static str| -> SqlResult<Option<Expr>> {
            if matches!(
                e,
                ast::Expr::Value(ast::ValueWithSpan {
                    value: ast::Value::Null,
                    ..
                })
            ) {
                return Ok(None);
            }
            let (b, t) = self.bind_expr(
                e,
                &Cx {
                    scope: &empty,
                    outer,
                    aggs: None,
                    clause,
                },
            )?;
            if !(t.is_numeric_family() || t == DataType::Unknown) {
                return Err(type_mismatch(format!(
                    "argument of {clause} must be type bigint, not type {}",
                    t.name()
                )));
            }
            Ok(Some(self.coerce(
                b,
                t,
                DataType::Int8,
                CastCtx::Assignment,
            )?))
        };
        let limit = match limit {
            Some(e) => bind_count(e, "LIMIT")?,
            None => None,
        };
        let offset = match offset {
            Some(e) => bind_count(e, "OFFSET")?,
            None => None,
        };
        Ok(Plan::Limit {
            input: Box::new(plan),
            limit,
            offset,
        })
    }

    /// ORDER BY over a finished result (set operations, VALUES): output names or ordinals only,
    /// or expressions over output columns.
    fn bind_output_order(
        &self,
        order_by: &[ast::OrderByExpr],
        scope: &Scope,
        outer: &[&Scope],
    ) -> SqlResult<Vec<SortKey>> {
        let mut keys = Vec::new();
        for ob in order_by {
            let expr = if let Some(i) = self.order_ordinal(&ob.expr, scope.len())? {
                Expr::Column(i)
            } else {
                let (e, _) = self.bind_expr(
                    &ob.expr,
                    &Cx {
                        scope,
                        outer,
                        aggs: None,
                        clause: "ORDER BY",
                    },
                )?;
                e
            };
            keys.push(sort_key(expr, &ob.options));
        }
        Ok(keys)
    }

    fn order_ordinal(&self, e: &ast::Expr, width: usize) -> SqlResult<Option<usize>> {
        self.ordinal(e, width, "ORDER BY")
    }

    fn ordinal(&self, e: &ast::Expr, width: usize, clause: &str) -> SqlResult<Option<usize>> {
        if let ast::Expr::Value(ast::ValueWithSpan {
            value: ast::Value::Number(n, _),
            ..
        }) = e
        {
            let pos: i64 = n
                .parse()
                .map_err(|_| SqlError::syntax(format!("non-integer constant in {clause}: {n}")))?;
            if pos < 1 || pos as usize > width {
                return Err(SqlError::new(
                    sqlstate::INVALID_COLUMN_REFERENCE,
                    format!("{clause} position {pos} is not in select list"),
                ));
            }
            return Ok(Some(pos as usize - 1));
        }
        Ok(None)
    }

    fn bind_set_expr(&self, body: &ast::SetExpr, outer: &[&Scope]) -> SqlResult<(Plan, Scope)> {
        match body {
            ast::SetExpr::Select(sel) => self.bind_select(sel, &[], outer),
            ast::SetExpr::Query(q) => self.bind_query(q, outer),
            ast::SetExpr::Values(v) => {
                let (plan, types, marks) = self.bind_values(v, outer, None)?;
                if marks.iter().any(|r| r.iter().any(|d| *d)) {
                    return Err(SqlError::syntax("DEFAULT is not allowed in this context"));
                }
                let scope = Scope::new(
                    types
                        .iter()
                        .enumerate()
                        .map(|(i, t)| ScopeColumn {
                            qualifier: None,
                            name: format!("column{}", i + 1),
                            ty: *t,
                            hidden: false,
                            qualified_only: false,
                        })
                        .collect(),
                );
                Ok((plan, scope))
            }
            ast::SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let (lp, ls) = self.bind_set_expr(left, outer)?;
                let (rp, rs) = self.bind_set_expr(right, outer)?;
                let kind = match op {
                    ast::SetOperator::Union => SetOpKind::Union,
                    ast::SetOperator::Intersect => SetOpKind::Intersect,
                    ast::SetOperator::Except | ast::SetOperator::Minus => SetOpKind::Except,
                };
                let all = match set_quantifier {
                    ast::SetQuantifier::All => true,
                    ast::SetQuantifier::Distinct | ast::SetQuantifier::None => false,
                    other => return Err(SqlError::unsupported(format!("{op} {other}"))),
                };
                if ls.len() != rs.len() {
                    return Err(SqlError::syntax(format!(
                        "each {op} query must have the same number of columns"
                    )));
                }
                let mut types = Vec::new();
                for (l, r) in ls.columns.iter().zip(&rs.columns) {
                    types.push(cast::common_type(&[l.ty, r.ty], &op.to_string())?);
                }
                let lp = self.cast_plan_to(lp, &ls.types(), &types)?;
                let rp = self.cast_plan_to(rp, &rs.types(), &types)?;
                let scope = Scope::new(
                    ls.columns
                        .iter()
                        .zip(&types)
                        .map(|(c, t)| ScopeColumn {
                            qualifier: None,
                            name: c.name.clone(),
                            ty: *t,
                            hidden: false,
                            qualified_only: false,
                        })
                        .collect(),
                );
                Ok((
                    Plan::SetOp {
                        op: kind,
                        all,
                        left: Box::new(lp),
                        right: Box::new(rp),
                        types,
                    },
                    scope,
                ))
            }
            other => Err(SqlError::unsupported(format!("query body {other}"))),
        }
    }

    /// Wraps `plan` in a projection casting its columns from `from` to `to` where they differ.
    fn cast_plan_to(&self, plan: Plan, from: &[DataType], to: &[DataType]) -> SqlResult<Plan> {
        if from == to {
            return Ok(plan);
        }
        let exprs = from
            .iter()
            .zip(to)
            .enumerate()
            .map(|(i, (f, t))| self.coerce(Expr::Column(i), *f, *t, CastCtx::Implicit))
            .collect::<SqlResult<Vec<_>>>()?;
        Ok(Plan::Project {
            input: Box::new(plan),
            exprs,
        })
    }

    /// Binds VALUES rows. With `targets` (INSERT), each entry is coerced to its target column type
    /// and the keyword DEFAULT is recognised. Returns the plan, column types and DEFAULT marks.
    fn bind_values(
        &self,
        values: &ast::Values,
        outer: &[&Scope],
        targets: Option<&[DataType]>,
    ) -> SqlResult<(Plan, Vec<DataType>, Vec<Vec<bool>>)> {
        let empty = Scope::default();
        let cx = Cx {
            scope: &empty,
            outer,
            aggs: None,
            clause: "VALUES",
        };
        let width = values.rows.first().map(|r| r.content.len()).unwrap_or(0);
        let mut bound_rows: Vec<Vec<(Expr, DataType)>> = Vec::new();
        let mut marks = Vec::new();
        for row in &values.rows {
            if row.content.len() != width {
                return Err(SqlError::syntax("VALUES lists must all be the same length"));
            }
            let mut br = Vec::with_capacity(width);
            let mut mr = Vec::with_capacity(width);
            for (i, e) in row.content.iter().enumerate() {
                if targets.is_some() && is_default_keyword(e) {
                    br.push((Expr::Literal(Value::Null), DataType::Unknown));
                    mr.push(true);
                    continue;
                }
                let (b, t) = self.bind_expr(e, &cx)?;
                // In INSERT, literals and parameters take the target column's type directly.
                let (b, t) = match targets.and_then(|ts| ts.get(i)) {
                    Some(target) if t == DataType::Unknown => {
                        (self.coerce(b, t, *target, CastCtx::Assignment)?, *target)
                    }
                    _ => (b, t),
                };
                br.push((b, t));
                mr.push(false);
            }
            bound_rows.push(br);
            marks.push(mr);
        }
        let mut types = Vec::with_capacity(width);
        for c in 0..width {
            let col_types: Vec<DataType> = bound_rows
                .iter()
                .zip(&marks)
                .filter(|(_, m)| !m[c])
                .map(|(r, _)| r[c].1)
                .collect();
            let t = if col_types.is_empty() {
                targets
                    .and_then(|ts| ts.get(c).copied())
                    .unwrap_or(DataType::Text)
            } else {
                cast::common_type(&col_types, "VALUES")?
            };
            types.push(t);
        }
        let mut rows = Vec::with_capacity(bound_rows.len());
        for (br, mr) in bound_rows.into_iter().zip(&marks) {
            let mut r = Vec::with_capacity(width);
            for (c, (e, t)) in br.into_iter().enumerate() {
                if mr[c] {
                    r.push(e);
                } else {
                    r.push(self.coerce(e, t, types[c], CastCtx::Implicit)?);
                }
            }
            rows.push(r);
        }
        Ok((Plan::Values { rows, width }, types, marks))
    }

    fn bind_select(
        &self,
        sel: &ast::Select,
        order_by: &[ast::OrderByExpr],
        outer: &[&Scope],
    ) -> SqlResult<(Plan, Scope)> {
        if sel.top.is_some()
            || sel.into.is_some()
            || !sel.lateral_views.is_empty()
            || sel.prewhere.is_some()
            || !sel.named_window.is_empty()
            || sel.qualify.is_some()
            || !sel.cluster_by.is_empty()
            || !sel.distribute_by.is_empty()
            || !sel.sort_by.is_empty()
        {
            return Err(SqlError::unsupported("this SELECT clause"));
        }
        // FROM
        let (mut plan, scope) = if sel.from.is_empty() {
            (
                Plan::Values {
                    rows: vec![vec![]],
                    width: 0,
                },
                Scope::default(),
            )
        } else {
            let mut acc: Option<(Plan, Scope)> = None;
            for twj in &sel.from {
                let (p, s) = self.bind_table_with_joins(twj, outer)?;
                acc = Some(match acc {
                    None => (p, s),
                    Some((lp, ls)) => {
                        duplicate_tables(&ls, &s)?;
                        let lw = ls.len();
                        let rw = s.len();
                        (
                            Plan::Join {
                                left: Box::new(lp),
                                right: Box::new(p),
                                kind: JoinKind::Inner,
                                on: None,
                                left_width: lw,
                                right_width: rw,
                                equi: vec![],
                                strategy: Default::default(),
                            },
                            ls.join(&s),
                        )
                    }
                });
            }
            acc.expect("non-empty FROM")
        };
        // WHERE
        if let Some(w) = &sel.selection {
            let pred = self.bind_predicate(w, &scope, outer, "WHERE")?;
            plan = self.push_filter(plan, pred);
        }
        // Aggregation?
        let group_exprs_ast: &[ast::Expr] = match &sel.group_by {
            ast::GroupByExpr::Expressions(v, mods) => {
                if !mods.is_empty() {
                    return Err(SqlError::unsupported("GROUP BY modifiers"));
                }
                v
            }
            ast::GroupByExpr::All(_) => return Err(SqlError::unsupported("GROUP BY ALL")),
        };
        let aggs = RefCell::new(Vec::<AggCall>::new());
        let agg_cx = Cx {
            scope: &scope,
            outer,
            aggs: Some(&aggs),
            clause: "SELECT",
        };
        // Select list, bound over the FROM scope (aggregates collected).
        let (mut select_exprs, select_cols) =
            self.bind_select_list(&sel.projection, &scope, outer, Some(&aggs))?;
        let having = match &sel.having {
            Some(h) => {
                let (b, t) = self.bind_expr(
                    h,
                    &Cx {
                        clause: "HAVING",
                        ..agg_cx
                    },
                )?;
                Some(self.coerce_bool(b, t, "HAVING")?)
            }
            None => None,
        };
        // ORDER BY keys: an output column (ordinal or alias) or an expression over FROM.
        enum OrderTarget {
            Output(usize),
            Extra(Expr),
        }
        let mut order_targets = Vec::new();
        for ob in order_by {
            if let Some(i) = self.order_ordinal(&ob.expr, select_cols.len())? {
                order_targets.push((OrderTarget::Output(i), &ob.options));
                continue;
            }
            if let ast::Expr::Identifier(id) = &ob.expr {
                let n = ident(id);
                let matches: Vec<usize> = select_cols
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.name == n && c.qualifier.is_none())
                    .map(|(i, _)| i)
                    .collect();
                if matches.len() > 1 {
                    // PostgreSQL only complains if the candidates differ.
                    let first = &select_exprs[matches[0]];
                    if matches.iter().any(|m| &select_exprs[*m] != first) {
                        return Err(SqlError::new(
                            sqlstate::AMBIGUOUS_COLUMN,
                            format!("ORDER BY \"{n}\" is ambiguous"),
                        ));
                    }
                }
                if let Some(i) = matches.first() {
                    order_targets.push((OrderTarget::Output(*i), &ob.options));
                    continue;
                }
            }
            let (e, _) = self.bind_expr(
                &ob.expr,
                &Cx {
                    clause: "ORDER BY",
                    ..agg_cx
                },
            )?;
            // An expression equal to an output column sorts by that column.
            match select_exprs.iter().position(|s| *s == e) {
                Some(i) => order_targets.push((OrderTarget::Output(i), &ob.options)),
                None => order_targets.push((OrderTarget::Extra(e), &ob.options)),
            }
        }
        let is_distinct = match &sel.distinct {
            None | Some(ast::Distinct::All) => false,
            Some(ast::Distinct::Distinct) => true,
            Some(ast::Distinct::On(_)) => return Err(SqlError::unsupported("DISTINCT ON")),
        };
        if is_distinct
            && order_targets
                .iter()
                .any(|(t, _)| matches!(t, OrderTarget::Extra(_)))
        {
            return Err(SqlError::new(
                sqlstate::INVALID_COLUMN_REFERENCE,
                "for SELECT DISTINCT, ORDER BY expressions must appear in select list",
            ));
        }
        let mut extra_exprs: Vec<Expr> = Vec::new();
        let mut sort_keys = Vec::new();
        for (t, opts) in order_targets {
            let col = match t {
                OrderTarget::Output(i) => i,
                OrderTarget::Extra(e) => {
                    extra_exprs.push(e);
                    select_exprs.len() + extra_exprs.len() - 1
                }
            };
            sort_keys.push(sort_key(Expr::Column(col), opts));
        }
        let aggregating =
            !group_exprs_ast.is_empty() || !aggs.borrow().is_empty() || having.is_some();
        if aggregating {
            // GROUP BY items: ordinals and output aliases refer to the select list.
            let mut groups: Vec<Expr> = Vec::new();
            let mut group_types = Vec::new();
            let plain_cx = Cx {
                scope: &scope,
                outer,
                aggs: None,
                clause: "GROUP BY",
            };
            for g in group_exprs_ast {
                let (e, t) = if let Some(i) = self.ordinal(g, select_cols.len(), "GROUP BY")? {
                    (select_exprs[i].clone(), select_cols[i].ty)
                } else if let ast::Expr::Identifier(id) = g {
                    let n = ident(id);
                    match scope.resolve(None, &n)? {
                        Some(_) => self.bind_expr(g, &plain_cx)?,
                        None => match select_cols.iter().position(|c| c.name == n) {
                            Some(i) => (select_exprs[i].clone(), select_cols[i].ty),
                            None => self.bind_expr(g, &plain_cx)?,
                        },
                    }
                } else {
                    self.bind_expr(g, &plain_cx)?
                };
                let mut has_agg = false;
                e.walk(&mut |x| has_agg |= matches!(x, Expr::AggRef(_)));
                if has_agg {
                    return Err(SqlError::new(
                        sqlstate::GROUPING_ERROR,
                        "aggregate functions are not allowed in GROUP BY",
                    ));
                }
                groups.push(e);
                group_types.push(t);
            }
            let n_groups = groups.len();
            let rewrite = |e: Expr| -> SqlResult<Expr> { post_agg(e, &groups, n_groups, &scope) };
            select_exprs = select_exprs
                .into_iter()
                .map(&rewrite)
                .collect::<SqlResult<_>>()?;
            extra_exprs = extra_exprs
                .into_iter()
                .map(&rewrite)
                .collect::<SqlResult<_>>()?;
            let having = having.map(&rewrite).transpose()?;
            plan = Plan::Aggregate {
                input: Box::new(plan),
                group_by: groups.clone(),
                group_types: group_types.into_iter().map(concrete).collect(),
                aggs: aggs.into_inner(),
            };
            if let Some(h) = having {
                plan = Plan::Filter {
                    input: Box::new(plan),
                    predicate: h,
                };
            }
        }
        let n_out = select_exprs.len();
        let has_extra = !extra_exprs.is_empty();
        let mut all_exprs = select_exprs;
        all_exprs.extend(extra_exprs);
        let mut out_types: Vec<DataType> = select_cols.iter().map(|c| c.ty).collect();
        plan = Plan::Project {
            input: Box::new(plan),
            exprs: all_exprs,
        };
        if is_distinct {
            plan = Plan::Distinct {
                input: Box::new(plan),
                types: std::mem::take(&mut out_types)
                    .into_iter()
                    .map(concrete)
                    .collect(),
            };
        }
        if !sort_keys.is_empty() {
            plan = Plan::Sort {
                input: Box::new(plan),
                keys: sort_keys,
            };
        }
        if has_extra {
            plan = Plan::Project {
                input: Box::new(plan),
                exprs: (0..n_out).map(Expr::Column).collect(),
            };
        }
        let out_scope = Scope::new(
            select_cols
                .into_iter()
                .map(|c| ScopeColumn {
                    qualifier: None,
                    ..c
                })
                .collect(),
        );
        Ok((plan, out_scope))
    }

    /// Binds a select list (or RETURNING list), expanding wildcards. Returns the expressions and
    /// the output columns (named as PostgreSQL names them).
    fn bind_select_list(
        &self,
        items: &[ast::SelectItem],
        scope: &Scope,
        outer: &[&Scope],
        aggs: Option<&RefCell<Vec<AggCall>>>,
    ) -> SqlResult<(Vec<Expr>, Vec<ScopeColumn>)> {
        let cx = Cx {
            scope,
            outer,
            aggs,
            clause: "SELECT",
        };
        let mut exprs = Vec::new();
        let mut cols = Vec::new();
        let mut push =
            |e: Expr, t: DataType, name: String, exprs: &mut Vec<Expr>| -> SqlResult<()> {
                // Untyped literals stay `unknown` here so that UNION and INSERT can resolve them;
                // contexts that expose them (results, derived tables) relabel them as text.
                exprs.push(e);
                cols.push(ScopeColumn {
                    qualifier: None,
                    name,
                    ty: t,
                    hidden: false,
                    qualified_only: false,
                });
                Ok(())
            };
        for item in items {
            match item {
                ast::SelectItem::UnnamedExpr(e) => {
                    let (b, t) = self.bind_expr(e, &cx)?;
                    push(b, t, output_name(e), &mut exprs)?;
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    let (b, t) = self.bind_expr(expr, &cx)?;
                    push(b, t, ident(alias), &mut exprs)?;
                }
                ast::SelectItem::Wildcard(_) => {
                    if scope.is_empty() {
                        return Err(SqlError::syntax(
                            "SELECT * with no tables specified is not valid",
                        ));
                    }
                    for (i, c) in scope.columns.iter().enumerate() {
                        if !c.hidden {
                            push(Expr::Column(i), c.ty, c.name.clone(), &mut exprs)?;
                        }
                    }
                }
                ast::SelectItem::QualifiedWildcard(kind, _) => {
                    let q = match kind {
                        ast::SelectItemQualifiedWildcardKind::ObjectName(n) => object_name(n)?,
                        ast::SelectItemQualifiedWildcardKind::Expr(e) => {
                            return Err(SqlError::unsupported(format!("{e}.*")));
                        }
                    };
                    if !scope.has_qualifier(&q) {
                        return Err(SqlError::new(
                            sqlstate::UNDEFINED_TABLE,
                            format!("missing FROM-clause entry for table \"{q}\""),
                        ));
                    }
                    for (i, c) in scope.columns.iter().enumerate() {
                        if !c.hidden && c.qualifier.as_deref() == Some(q.as_str()) {
                            push(Expr::Column(i), c.ty, c.name.clone(), &mut exprs)?;
                        }
                    }
                }
                ast::SelectItem::ExprWithAliases { .. } => {
                    return Err(SqlError::unsupported("multiple aliases"));
                }
            }
        }
        Ok((exprs, cols))
    }

    fn bind_table_with_joins(
        &self,
        twj: &ast::TableWithJoins,
        outer: &[&Scope],
    ) -> SqlResult<(Plan, Scope)> {
        let (mut plan, mut scope) = self.bind_table_factor(&twj.relation, outer)?;
        for join in &twj.joins {
            let (rp, rs) = self.bind_table_factor(&join.relation, outer)?;
            use ast::JoinOperator as J;
            let (kind, constraint) = match &join.join_operator {
                J::Join(c) | J::Inner(c) => (JoinKind::Inner, Some(c)),
                J::Left(c) | J::LeftOuter(c) => (JoinKind::Left, Some(c)),
                J::Right(c) | J::RightOuter(c) => (JoinKind::Right, Some(c)),
                J::FullOuter(c) => (JoinKind::Full, Some(c)),
                J::CrossJoin(_) => (JoinKind::Inner, None),
                other => return Err(SqlError::unsupported(format!("join {other:?}"))),
            };
            duplicate_tables(&scope, &rs)?;
            let combined = scope.join(&rs);
            let lw = scope.len();
            let rw = rs.len();
            let mut using: Vec<(usize, usize, String)> = Vec::new();
            let on = match constraint {
                None => None,
                Some(ast::JoinConstraint::None) => {
                    return Err(SqlError::syntax(
                        "syntax error: JOIN requires an ON or USING clause (or use CROSS JOIN)",
                    ));
                }
                Some(ast::JoinConstraint::On(e)) => {
                    Some(self.bind_predicate(e, &combined, outer, "JOIN/ON")?)
                }
                Some(ast::JoinConstraint::Using(names)) => {
                    for n in names {
                        let n = object_name(n)?;
                        using.push(self.using_pair(&scope, &rs, &n)?);
                    }
                    self.using_condition(&using, &scope, &rs)?
                }
                Some(ast::JoinConstraint::Natural) => {
                    for c in &scope.columns {
                        if c.hidden || c.qualified_only {
                            continue;
                        }
                        if rs.resolve(None, &c.name)?.is_some()
                            && !using.iter().any(|(_, _, n)| *n == c.name)
                        {
                            using.push(self.using_pair(&scope, &rs, &c.name)?);
                        }
                    }
                    self.using_condition(&using, &scope, &rs)?
                }
                Some(other) => return Err(SqlError::unsupported(format!("join {other:?}"))),
            };
            let equi = on.as_ref().map(|e| equi_keys(e, lw)).unwrap_or_default();
            plan = Plan::Join {
                left: Box::new(plan),
                right: Box::new(rp),
                kind,
                on,
                left_width: lw,
                right_width: rw,
                equi,
                strategy: Default::default(),
            };
            scope = combined;
            if !using.is_empty() {
                // USING columns come first, merged; the per-side copies stay reachable only
                // through their qualifiers and leave `*`.
                let mut exprs = Vec::new();
                let mut cols = Vec::new();
                for (li, ri, name) in &using {
                    let lt = scope.columns[*li].ty;
                    let rt = scope.columns[lw + *ri].ty;
                    let t = cast::common_type(&[lt, rt], "JOIN/USING")?;
                    let l = self.coerce(Expr::Column(*li), lt, t, CastCtx::Implicit)?;
                    let r = self.coerce(Expr::Column(lw + *ri), rt, t, CastCtx::Implicit)?;
                    exprs.push(match kind {
                        JoinKind::Inner | JoinKind::Left => l,
                        JoinKind::Right => r,
                        JoinKind::Full => Expr::Coalesce(vec![l, r]),
                    });
                    cols.push(ScopeColumn {
                        qualifier: None,
                        name: name.clone(),
                        ty: t,
                        hidden: false,
                        qualified_only: false,
                    });
                }
                for (i, c) in scope.columns.iter().enumerate() {
                    let is_using = using.iter().any(|(li, ri, _)| i == *li || i == lw + *ri);
                    exprs.push(Expr::Column(i));
                    cols.push(ScopeColumn {
                        hidden: c.hidden || is_using,
                        qualified_only: c.qualified_only || is_using,
                        ..c.clone()
                    });
                }
                plan = Plan::Project {
                    input: Box::new(plan),
                    exprs,
                };
                scope = Scope::new(cols);
            }
        }
        Ok((plan, scope))
    }

    fn using_pair(
        &self,
        left: &Scope,
        right: &Scope,
        n: &str,
    ) -> SqlResult<(usize, usize, String)> {
        let missing = |side: &str| {
            SqlError::new(
                sqlstate::UNDEFINED_COLUMN,
                format!("column \"{n}\" specified in USING clause does not exist in {side} table"),
            )
        };
        let li = left.resolve(None, n)?.ok_or_else(|| missing("left"))?;
        let ri = right.resolve(None, n)?.ok_or_else(|| missing("right"))?;
        Ok((li, ri, n.to_string()))
    }

    fn using_condition(
        &self,
        using: &[(usize, usize, String)],
        left: &Scope,
        right: &Scope,
    ) -> SqlResult<Option<Expr>> {
        let lw = left.len();
        let mut conds = Vec::new();
        for (li, ri, _) in using {
            let lt = left.columns[*li].ty;
            let rt = right.columns[*ri].ty;
            conds.push(self.bind_comparison(
                CmpOp::Eq,
                (Expr::Column(*li), lt),
                (Expr::Column(lw + *ri), rt),
            )?);
        }
        Ok(and_all(conds))
    }

    fn bind_table_factor(
        &self,
        tf: &ast::TableFactor,
        outer: &[&Scope],
    ) -> SqlResult<(Plan, Scope)> {
        match tf {
            ast::TableFactor::Table {
                name, alias, args, ..
            } => {
                if args.is_some() {
                    return Err(SqlError::unsupported("table functions"));
                }
                let n = object_name(name)?;
                let qualifier = alias.as_ref().map(|a| ident(&a.name)).unwrap_or(n.clone());
                let (plan, scope) = self.bind_relation(&n)?;
                let scope = apply_alias_columns(scope.with_qualifier(&qualifier), alias)?;
                Ok((plan, scope))
            }
            ast::TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                if *lateral {
                    return Err(SqlError::unsupported("LATERAL"));
                }
                // A derived table sees no columns of its FROM siblings, but may see outer queries.
                let (plan, scope) = self.bind_query(subquery, outer)?;
                let scope = text_unknowns(scope);
                let scope = match alias {
                    Some(a) => apply_alias_columns(scope.with_qualifier(&ident(&a.name)), alias)?,
                    None => scope,
                };
                Ok((plan, scope))
            }
            ast::TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let (plan, scope) = self.bind_table_with_joins(table_with_joins, outer)?;
                let scope = match alias {
                    Some(a) => apply_alias_columns(scope.with_qualifier(&ident(&a.name)), alias)?,
                    None => scope,
                };
                Ok((plan, scope))
            }
            other => Err(SqlError::unsupported(format!("FROM item {other}"))),
        }
    }

    /// A table, view, system view or CTE by name (CTEs shadow the catalog, as in PostgreSQL).
    fn bind_relation(&self, name: &str) -> SqlResult<(Plan, Scope)> {
        let cte = self
            .ctes
            .borrow()
            .iter()
            .rev()
            .find_map(|m| m.get(name).cloned());
        if let Some(cte) = cte {
            // Bind the CTE's query in the scope where it was defined: hide this and later
            // CTE levels from it so it cannot refer to itself.
            let saved = std::mem::replace(&mut *self.ctes.borrow_mut(), cte.visible.clone());
            let result = self.bind_query(&cte.query, &[]);
            *self.ctes.borrow_mut() = saved;
            let (plan, scope) = result?;
            let scope = rename_columns(text_unknowns(scope), &cte.columns)?;
            return Ok((plan, scope));
        }
        match self.catalog.get(name) {
            Some(Relation::Table(t)) => Ok((self.scan_plan(&t), Self::table_scope(&t, name))),
            Some(Relation::View(v)) => {
                let q = crate::sql::parser::parse_query(&v.sql)?;
                let saved = std::mem::take(&mut *self.ctes.borrow_mut());
                let result = self.bind_query(&q, &[]);
                *self.ctes.borrow_mut() = saved;
                let (plan, scope) = result?;
                let scope = rename_columns(text_unknowns(scope), &v.columns)?;
                Ok((plan, scope))
            }
            Some(Relation::System(view)) => {
                Ok((Plan::SystemScan { view }, Self::system_scope(view, name)))
            }
            None if self.catalog.index(name).is_some() => Err(SqlError::new(
                sqlstate::WRONG_OBJECT_TYPE,
                format!("\"{name}\" is an index"),
            )),
            None => Err(crate::catalog::undefined_table(name)),
        }
    }

    // ---------------------------------------------------------------- expressions

    /// Inserts the coercion of `e` from `from` to `to`. Untyped literals are converted now (so a
    /// bad literal is reported at bind time, as PostgreSQL does), parameters take the type.
    pub fn coerce(&self, e: Expr, from: DataType, to: DataType, ctx: CastCtx) -> SqlResult<Expr> {
        if from == to || to == DataType::Unknown {
            return Ok(e);
        }
        if from == DataType::Unknown {
            match e {
                Expr::Literal(Value::Null) => return Ok(e),
                Expr::Literal(Value::Text(s)) => {
                    // Parse as the base type, then apply the typmod (varchar(n), numeric(p,s))
                    // with the context's rules: explicit casts truncate, assignments check.
                    let base = base_type(to);
                    let v = parse::parse_text(&s, base)?;
                    return if base == to {
                        Ok(Expr::Literal(v))
                    } else {
                        Ok(Expr::Literal(cast::cast(v, base, to, ctx.into())?))
                    };
                }
                Expr::Param(i) => {
                    let mut params = self.params.borrow_mut();
                    if params.len() <= i {
                        params.resize(i + 1, None);
                    }
                    if matches!(params[i], None | Some(DataType::Unknown)) {
                        params[i] = Some(base_type(to));
                    }
                    let pt = params[i].expect("just set");
                    drop(params);
                    return if pt == to {
                        Ok(Expr::Param(i))
                    } else {
                        Ok(Expr::Cast {
                            expr: Box::new(Expr::Param(i)),
                            from: pt,
                            to,
                            context: ctx,
                        })
                    };
                }
                other => {
                    // An unknown-typed value is text going through the type's input function,
                    // which any type accepts (`SELECT 1 UNION SELECT 'x'` fails with 22P02).
                    return Ok(Expr::Cast {
                        expr: Box::new(other),
                        from: DataType::Text,
                        to,
                        context: CastCtx::Explicit,
                    });
                }
            }
        }
        if !cast::can_coerce(from, to, ctx.into()) {
            return Err(if ctx == CastCtx::Explicit {
                SqlError::new(
                    "42846",
                    format!("cannot cast type {} to {}", from.name(), to.name()),
                )
            } else {
                type_mismatch(format!(
                    "cannot convert type {} to {}",
                    from.name(),
                    to.name()
                ))
            });
        }
        // Constant-fold casts of literals.
        if let Expr::Literal(v) = &e {
            if v.is_null() {
                return Ok(e);
            }
            return Ok(Expr::Literal(cast::cast(v.clone(), from, to, ctx.into())?));
        }
        Ok(Expr::Cast {
            expr: Box::new(e),
            from,
            to,
            context: ctx,
        })
    }

    /// Binds `l op r` for a comparison, unifying the operand types.
    fn bind_comparison(
        &self,
        op: CmpOp,
        (l, lt): (Expr, DataType),
        (r, rt): (Expr, DataType),
    ) -> SqlResult<Expr> {
        let t = self.compare_type(lt, rt, cmp_symbol(op))?;
        Ok(Expr::Cmp {
            op,
            left: Box::new(self.coerce(l, lt, t, CastCtx::Implicit)?),
            right: Box::new(self.coerce(r, rt, t, CastCtx::Implicit)?),
        })
    }

    /// The type two operands are compared in, or 42883 as PostgreSQL reports it.
    fn compare_type(&self, lt: DataType, rt: DataType, symbol: &str) -> SqlResult<DataType> {
        use DataType::Unknown;
        Ok(match (lt, rt) {
            (Unknown, Unknown) => DataType::Text,
            (Unknown, t) | (t, Unknown) => t,
            (a, b) if a == b => a,
            (a, b) if a.is_numeric_family() && b.is_numeric_family() => {
                cast::common_type(&[a, b], "comparison")?
            }
            (a, b) if a.is_string() && b.is_string() => DataType::Text,
            (a, b) if base_type(a) == base_type(b) => base_type(a),
            (DataType::Date, DataType::Timestamp) | (DataType::Timestamp, DataType::Date) => {
                DataType::Timestamp
            }
            (a, b) => {
                return Err(operator_does_not_exist(&format!(
                    "{} {symbol} {}",
                    a.name(),
                    b.name()
                )));
            }
        })
    }

    fn bind_expr(&self, e: &ast::Expr, cx: &Cx<'_>) -> SqlResult<(Expr, DataType)> {
        use ast::Expr as E;
        match e {
            E::Identifier(id) => self.bind_column(None, &ident(id), cx),
            E::CompoundIdentifier(parts) => {
                let names: Vec<String> = parts.iter().map(ident).collect();
                match names.as_slice() {
                    [q, c] => self.bind_column(Some(q), c, cx),
                    [s, q, c] if s == "public" => self.bind_column(Some(q), c, cx),
                    _ => Err(SqlError::unsupported(format!(
                        "column reference {}",
                        names.join(".")
                    ))),
                }
            }
            E::Value(v) => self.bind_value(&v.value),
            E::TypedString(ts) => {
                let t = convert_type(&ts.data_type)?;
                let s = match &ts.value.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                Ok((
                    self.coerce(
                        Expr::Literal(Value::Text(s)),
                        DataType::Unknown,
                        t,
                        CastCtx::Explicit,
                    )?,
                    t,
                ))
            }
            E::Nested(inner) => self.bind_expr(inner, cx),
            E::Cast {
                expr, data_type, ..
            } => {
                let to = convert_type(data_type)?;
                // A numeric literal cast to a float type converts from its text, as PostgreSQL's
                // numeric → float8 does, so literals beyond our 28-digit numeric keep their value.
                if matches!(to, DataType::Float4 | DataType::Float8)
                    && let Some(text) = numeric_literal_text(expr)
                    && let Ok(v) = parse::parse_text(&text, to)
                {
                    return Ok((Expr::Literal(v), to));
                }
                let (b, t) = self.bind_expr(expr, cx)?;
                Ok((self.coerce(b, t, to, CastCtx::Explicit)?, to))
            }
            E::UnaryOp { op, expr } => match op {
                ast::UnaryOperator::Not => {
                    let (b, t) = self.bind_expr(expr, cx)?;
                    let b = self.coerce_bool(b, t, "NOT")?;
                    Ok((Expr::Not(Box::new(b)), DataType::Bool))
                }
                ast::UnaryOperator::Minus => {
                    // Fold negative numeric literals so that -2147483648 is an integer.
                    if let E::Value(ast::ValueWithSpan {
                        value: ast::Value::Number(n, _),
                        ..
                    }) = expr.as_ref()
                    {
                        return self.bind_number(&format!("-{n}"));
                    }
                    let (b, t) = self.bind_expr(expr, cx)?;
                    let t = if t == DataType::Unknown {
                        DataType::Float8
                    } else {
                        t
                    };
                    let b = self.coerce(b, DataType::Unknown.max_if(t), t, CastCtx::Implicit)?;
                    if !t.is_numeric_family() {
                        return Err(operator_does_not_exist(&format!("- {}", t.name())));
                    }
                    Ok((
                        Expr::Negate {
                            expr: Box::new(b),
                            ty: t,
                        },
                        t,
                    ))
                }
                ast::UnaryOperator::Plus => {
                    let (b, t) = self.bind_expr(expr, cx)?;
                    if !(t.is_numeric_family() || t == DataType::Unknown) {
                        return Err(operator_does_not_exist(&format!("+ {}", t.name())));
                    }
                    Ok((b, t))
                }
                other => Err(SqlError::unsupported(format!("operator {other}"))),
            },
            E::BinaryOp { left, op, right } => self.bind_binary(left, op, right, cx),
            E::IsNull(x) | E::IsNotNull(x) => {
                let (b, _) = self.bind_expr(x, cx)?;
                Ok((
                    Expr::IsNull {
                        expr: Box::new(b),
                        negated: matches!(e, E::IsNotNull(_)),
                    },
                    DataType::Bool,
                ))
            }
            E::IsTrue(x) | E::IsNotTrue(x) | E::IsFalse(x) | E::IsNotFalse(x) => {
                let (b, t) = self.bind_expr(x, cx)?;
                let b = self.coerce_bool(b, t, "IS TRUE")?;
                Ok((
                    Expr::IsBool {
                        expr: Box::new(b),
                        value: matches!(e, E::IsTrue(_) | E::IsNotTrue(_)),
                        negated: matches!(e, E::IsNotTrue(_) | E::IsNotFalse(_)),
                    },
                    DataType::Bool,
                ))
            }
            E::IsUnknown(x) | E::IsNotUnknown(x) => {
                let (b, t) = self.bind_expr(x, cx)?;
                let b = self.coerce_bool(b, t, "IS UNKNOWN")?;
                Ok((
                    Expr::IsNull {
                        expr: Box::new(b),
                        negated: matches!(e, E::IsNotUnknown(_)),
                    },
                    DataType::Bool,
                ))
            }
            E::IsDistinctFrom(a, b) | E::IsNotDistinctFrom(a, b) => {
                let l = self.bind_expr(a, cx)?;
                let r = self.bind_expr(b, cx)?;
                let t = self.compare_type(l.1, r.1, "=")?;
                Ok((
                    Expr::IsDistinct {
                        left: Box::new(self.coerce(l.0, l.1, t, CastCtx::Implicit)?),
                        right: Box::new(self.coerce(r.0, r.1, t, CastCtx::Implicit)?),
                        negated: matches!(e, E::IsNotDistinctFrom(..)),
                    },
                    DataType::Bool,
                ))
            }
            E::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let v = self.bind_expr(expr, cx)?;
                let lo = self.bind_expr(low, cx)?;
                let hi = self.bind_expr(high, cx)?;
                let ge = self.bind_comparison(CmpOp::GtEq, v.clone(), lo)?;
                let le = self.bind_comparison(CmpOp::LtEq, v, hi)?;
                let both = Expr::And(vec![ge, le]);
                Ok((
                    if *negated {
                        Expr::Not(Box::new(both))
                    } else {
                        both
                    },
                    DataType::Bool,
                ))
            }
            E::In {
                expr,
                target: ast::InTarget::List(list),
                negated,
                ..
            } => {
                let (v, vt) = self.bind_expr(expr, cx)?;
                let mut items = Vec::with_capacity(list.len());
                let mut types = vec![vt];
                for item in list {
                    let (b, t) = self.bind_expr(item, cx)?;
                    types.push(t);
                    items.push((b, t));
                }
                let t = if types.iter().all(|t| *t == DataType::Unknown) {
                    DataType::Text
                } else {
                    let known: Vec<DataType> = types
                        .iter()
                        .copied()
                        .filter(|t| *t != DataType::Unknown)
                        .collect();
                    let mut t = known[0];
                    for k in &known[1..] {
                        t = self.compare_type(t, *k, "=")?;
                    }
                    t
                };
                let v = self.coerce(v, vt, t, CastCtx::Implicit)?;
                let list = items
                    .into_iter()
                    .map(|(b, bt)| self.coerce(b, bt, t, CastCtx::Implicit))
                    .collect::<SqlResult<_>>()?;
                Ok((
                    Expr::InList {
                        expr: Box::new(v),
                        list,
                        negated: *negated,
                    },
                    DataType::Bool,
                ))
            }
            E::In {
                expr,
                target: ast::InTarget::Subquery(subquery),
                negated,
                ..
            } => {
                let (v, vt) = self.bind_expr(expr, cx)?;
                let (mut plan, scope, id, correlated) = self.bind_subquery(subquery, cx)?;
                if scope.len() != 1 {
                    return Err(SqlError::syntax("subquery has too many columns"));
                }
                let st = scope.columns[0].ty;
                let t = self.compare_type(vt, st, "=")?;
                let v = self.coerce(v, vt, t, CastCtx::Implicit)?;
                if st != t {
                    plan = self.cast_plan_to(plan, &[st], &[t])?;
                }
                let sub = Expr::Subquery {
                    id,
                    kind: SubqueryKind::In,
                    plan: Box::new(plan),
                    lhs: Some(Box::new(v)),
                    correlated,
                };
                Ok((
                    if *negated {
                        Expr::Not(Box::new(sub))
                    } else {
                        sub
                    },
                    DataType::Bool,
                ))
            }
            E::Exists { subquery, negated } => {
                let (plan, _, id, correlated) = self.bind_subquery(subquery, cx)?;
                let sub = Expr::Subquery {
                    id,
                    kind: SubqueryKind::Exists,
                    plan: Box::new(plan),
                    lhs: None,
                    correlated,
                };
                Ok((
                    if *negated {
                        Expr::Not(Box::new(sub))
                    } else {
                        sub
                    },
                    DataType::Bool,
                ))
            }
            E::Subquery(q) => {
                let (plan, scope, id, correlated) = self.bind_subquery(q, cx)?;
                if scope.len() != 1 {
                    return Err(SqlError::syntax("subquery must return only one column"));
                }
                Ok((
                    Expr::Subquery {
                        id,
                        kind: SubqueryKind::Scalar,
                        plan: Box::new(plan),
                        lhs: None,
                        correlated,
                    },
                    scope.columns[0].ty,
                ))
            }
            E::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            }
            | E::ILike {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any {
                    return Err(SqlError::unsupported("LIKE ANY"));
                }
                let ci = matches!(e, E::ILike { .. });
                let s = self.bind_text_operand(expr, cx, if ci { "~~*" } else { "~~" })?;
                let p = self.bind_text_operand(pattern, cx, if ci { "~~*" } else { "~~" })?;
                let escape = match escape_char {
                    Some(esc) => Some(Box::new(self.bind_text_operand(esc, cx, "ESCAPE")?)),
                    None => None,
                };
                Ok((
                    Expr::Like {
                        expr: Box::new(s),
                        pattern: Box::new(p),
                        escape,
                        case_insensitive: ci,
                        negated: *negated,
                    },
                    DataType::Bool,
                ))
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut results = Vec::new();
                for w in conditions {
                    results.push(self.bind_expr(&w.result, cx)?);
                }
                let else_b = match else_result {
                    Some(x) => Some(self.bind_expr(x, cx)?),
                    None => None,
                };
                // PostgreSQL resolves the ELSE branch first, which shows in its error messages.
                let mut types: Vec<DataType> = Vec::with_capacity(results.len() + 1);
                if let Some((_, t)) = &else_b {
                    types.push(*t);
                }
                types.extend(results.iter().map(|r| r.1));
                let rt = cast::common_type(&types, "CASE")?;
                let mut whens = Vec::new();
                match operand {
                    Some(op) => {
                        let (ob, ot) = self.bind_expr(op, cx)?;
                        let mut conds = Vec::new();
                        let mut t = ot;
                        for w in conditions {
                            let c = self.bind_expr(&w.condition, cx)?;
                            t = self.compare_type(t, c.1, "=")?;
                            conds.push(c);
                        }
                        let ob = self.coerce(ob, ot, t, CastCtx::Implicit)?;
                        for ((c, ct), (r, rtt)) in conds.into_iter().zip(results) {
                            whens.push((
                                self.coerce(c, ct, t, CastCtx::Implicit)?,
                                self.coerce(r, rtt, rt, CastCtx::Implicit)?,
                            ));
                        }
                        let else_expr = match else_b {
                            Some((x, xt)) => {
                                Some(Box::new(self.coerce(x, xt, rt, CastCtx::Implicit)?))
                            }
                            None => None,
                        };
                        Ok((
                            Expr::Case {
                                operand: Some(Box::new(ob)),
                                whens,
                                else_expr,
                            },
                            rt,
                        ))
                    }
                    None => {
                        for (w, (r, rtt)) in conditions.iter().zip(results) {
                            let (c, ct) = self.bind_expr(&w.condition, cx)?;
                            let c = self.coerce_bool(c, ct, "CASE/WHEN")?;
                            whens.push((c, self.coerce(r, rtt, rt, CastCtx::Implicit)?));
                        }
                        let else_expr = match else_b {
                            Some((x, xt)) => {
                                Some(Box::new(self.coerce(x, xt, rt, CastCtx::Implicit)?))
                            }
                            None => None,
                        };
                        Ok((
                            Expr::Case {
                                operand: None,
                                whens,
                                else_expr,
                            },
                            rt,
                        ))
                    }
                }
            }
            E::Function(f) => self.bind_function(f, cx),
            E::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![expr.as_ref().clone()];
                args.push(match substring_from {
                    Some(f) => f.as_ref().clone(),
                    None => E::Value(ast::Value::Number("1".into(), false).into()),
                });
                if let Some(f) = substring_for {
                    args.push(f.as_ref().clone());
                }
                self.bind_scalar_call("substring", &args, cx)
            }
            E::Position { expr, r#in } => self.bind_scalar_call(
                "strpos",
                &[r#in.as_ref().clone(), expr.as_ref().clone()],
                cx,
            ),
            E::Trim {
                trim_where,
                trim_what,
                expr,
                trim_characters,
            } => {
                if trim_characters.as_ref().is_some_and(|c| c.len() != 1) {
                    return Err(SqlError::unsupported("TRIM with several character lists"));
                }
                let name = match trim_where {
                    Some(ast::TrimWhereField::Leading) => "ltrim",
                    Some(ast::TrimWhereField::Trailing) => "rtrim",
                    _ => "btrim",
                };
                let mut args = vec![expr.as_ref().clone()];
                if let Some(w) = trim_what {
                    args.push(w.as_ref().clone());
                } else if let Some(chars) = trim_characters {
                    args.push(chars[0].clone());
                }
                self.bind_scalar_call(name, &args, cx)
            }
            E::Ceil { expr, field } | E::Floor { expr, field } => {
                if !matches!(
                    field,
                    ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime)
                ) {
                    return Err(SqlError::unsupported("CEIL/FLOOR with a field"));
                }
                let name = if matches!(e, E::Ceil { .. }) {
                    "ceil"
                } else {
                    "floor"
                };
                self.bind_scalar_call(name, &[expr.as_ref().clone()], cx)
            }
            other => Err(SqlError::unsupported(format!("expression {other}"))),
        }
    }

    fn bind_text_operand(&self, e: &ast::Expr, cx: &Cx<'_>, op: &str) -> SqlResult<Expr> {
        let (b, t) = self.bind_expr(e, cx)?;
        if t.is_string() || t == DataType::Unknown {
            self.coerce(b, t, DataType::Text, CastCtx::Implicit)
        } else {
            Err(operator_does_not_exist(&format!("{} {op} text", t.name())))
        }
    }

    fn bind_value(&self, v: &ast::Value) -> SqlResult<(Expr, DataType)> {
        use ast::Value as V;
        match v {
            V::Number(n, _) => self.bind_number(n),
            V::SingleQuotedString(s)
            | V::EscapedStringLiteral(s)
            | V::UnicodeStringLiteral(s)
            | V::NationalStringLiteral(s) => {
                Ok((Expr::Literal(Value::Text(s.clone())), DataType::Unknown))
            }
            V::DollarQuotedString(d) => Ok((
                Expr::Literal(Value::Text(d.value.clone())),
                DataType::Unknown,
            )),
            V::Boolean(b) => Ok((Expr::Literal(Value::Bool(*b)), DataType::Bool)),
            V::Null => Ok((Expr::Literal(Value::Null), DataType::Unknown)),
            V::Placeholder(p) => {
                let n: usize = p
                    .strip_prefix('$')
                    .and_then(|d| d.parse().ok())
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| SqlError::syntax(format!("syntax error at or near \"{p}\"")))?;
                let i = n - 1;
                let mut params = self.params.borrow_mut();
                if params.len() <= i {
                    params.resize(i + 1, None);
                }
                let t = params[i].unwrap_or(DataType::Unknown);
                Ok((Expr::Param(i), t))
            }
            V::HexStringLiteral(h) => {
                let bytes = parse::parse_text(&format!("\\x{h}"), DataType::Bytea)?;
                Ok((Expr::Literal(bytes), DataType::Bytea))
            }
            other => Err(SqlError::unsupported(format!("literal {other}"))),
        }
    }

    fn bind_number(&self, n: &str) -> SqlResult<(Expr, DataType)> {
        if !n.contains(['.', 'e', 'E'])
            && let Ok(i) = n.parse::<i64>()
        {
            let t = if i32::try_from(i).is_ok() {
                DataType::Int4
            } else {
                DataType::Int8
            };
            return Ok((Expr::Literal(Value::Int(i)), t));
        }
        match parse::parse_text(n, DataType::Numeric(None)) {
            Ok(v) => Ok((Expr::Literal(v), DataType::Numeric(None))),
            // Beyond numeric's 28 digits: keep the value as double precision (PostgreSQL's
            // numeric would hold it exactly; callers mostly cast such literals to float8).
            Err(e) => match n.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok((Expr::Literal(Value::Float(f)), DataType::Float8)),
                _ => Err(e),
            },
        }
    }

    fn bind_column(
        &self,
        qualifier: Option<&str>,
        name: &str,
        cx: &Cx<'_>,
    ) -> SqlResult<(Expr, DataType)> {
        if let Some(i) = cx.scope.resolve(qualifier, name)? {
            return Ok((Expr::Column(i), cx.scope.columns[i].ty));
        }
        for (d, s) in cx.outer.iter().enumerate() {
            if let Some(i) = s.resolve(qualifier, name)? {
                // Every query level between here and the owner of the column is correlated.
                let mut corr = self.correlated.borrow_mut();
                let n = corr.len();
                for flag in corr.iter_mut().skip(n.saturating_sub(d + 1)) {
                    *flag = true;
                }
                return Ok((
                    Expr::Outer {
                        depth: d + 1,
                        index: i,
                    },
                    s.columns[i].ty,
                ));
            }
        }
        if let Some(q) = qualifier {
            let known = cx.scope.has_qualifier(q) || cx.outer.iter().any(|s| s.has_qualifier(q));
            if !known {
                return Err(SqlError::new(
                    sqlstate::UNDEFINED_TABLE,
                    format!("missing FROM-clause entry for table \"{q}\""),
                ));
            }
            return Err(SqlError::new(
                sqlstate::UNDEFINED_COLUMN,
                format!("column {q}.{name} does not exist"),
            ));
        }
        Err(SqlError::new(
            sqlstate::UNDEFINED_COLUMN,
            format!("column \"{name}\" does not exist"),
        ))
    }

    /// Binds a subquery with the current scope as its innermost outer scope.
    fn bind_subquery(&self, q: &ast::Query, cx: &Cx<'_>) -> SqlResult<(Plan, Scope, usize, bool)> {
        let mut outer: Vec<&Scope> = Vec::with_capacity(cx.outer.len() + 1);
        outer.push(cx.scope);
        outer.extend(cx.outer.iter().copied());
        self.correlated.borrow_mut().push(false);
        let result = self.bind_query(q, &outer);
        let correlated = self.correlated.borrow_mut().pop().unwrap_or(true);
        let (plan, scope) = result?;
        let scope = text_unknowns(scope);
        let id = self.next_subquery.get();
        self.next_subquery.set(id + 1);
        Ok((plan, scope, id, correlated))
    }

    fn bind_binary(
        &self,
        left: &ast::Expr,
        op: &ast::BinaryOperator,
        right: &ast::Expr,
        cx: &Cx<'_>,
    ) -> SqlResult<(Expr, DataType)> {
        use ast::BinaryOperator as B;
        match op {
            B::And | B::Or => {
                let (l, lt) = self.bind_expr(left, cx)?;
                let (r, rt) = self.bind_expr(right, cx)?;
                let name = if matches!(op, B::And) { "AND" } else { "OR" };
                let l = self.coerce_bool(l, lt, name)?;
                let r = self.coerce_bool(r, rt, name)?;
                let mut items = Vec::new();
                for x in [l, r] {
                    match (op, x) {
                        (B::And, Expr::And(v)) => items.extend(v),
                        (B::Or, Expr::Or(v)) => items.extend(v),
                        (_, x) => items.push(x),
                    }
                }
                Ok((
                    if matches!(op, B::And) {
                        Expr::And(items)
                    } else {
                        Expr::Or(items)
                    },
                    DataType::Bool,
                ))
            }
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
                let cmp = match op {
                    B::Eq => CmpOp::Eq,
                    B::NotEq => CmpOp::NotEq,
                    B::Lt => CmpOp::Lt,
                    B::LtEq => CmpOp::LtEq,
                    B::Gt => CmpOp::Gt,
                    _ => CmpOp::GtEq,
                };
                let l = self.bind_expr(left, cx)?;
                let r = self.bind_expr(right, cx)?;
                Ok((self.bind_comparison(cmp, l, r)?, DataType::Bool))
            }
            B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => {
                let aop = match op {
                    B::Plus => ArithOp::Add,
                    B::Minus => ArithOp::Sub,
                    B::Multiply => ArithOp::Mul,
                    B::Divide => ArithOp::Div,
                    _ => ArithOp::Mod,
                };
                let (l, lt) = self.bind_expr(left, cx)?;
                let (r, rt) = self.bind_expr(right, cx)?;
                let (lc, rc, res) = arith::arith_types(aop, lt, rt)?;
                let l = self.coerce(l, lt, lc, CastCtx::Implicit)?;
                let r = self.coerce(r, rt, rc, CastCtx::Implicit)?;
                let e = Expr::Arith {
                    op: aop,
                    left: Box::new(l),
                    right: Box::new(r),
                    ty: res,
                };
                // Fold constant arithmetic so errors like overflow surface once and early.
                Ok((fold_constant(e)?, res))
            }
            B::StringConcat => {
                let (l, lt) = self.bind_expr(left, cx)?;
                let (r, rt) = self.bind_expr(right, cx)?;
                if lt == DataType::Bytea && matches!(rt, DataType::Bytea | DataType::Unknown)
                    || rt == DataType::Bytea && lt == DataType::Unknown
                {
                    let l = self.coerce(l, lt, DataType::Bytea, CastCtx::Implicit)?;
                    let r = self.coerce(r, rt, DataType::Bytea, CastCtx::Implicit)?;
                    return Ok((Expr::Concat(Box::new(l), Box::new(r)), DataType::Bytea));
                }
                let stringish = |t: DataType| t.is_string() || t == DataType::Unknown;
                if !stringish(lt) && !stringish(rt) {
                    return Err(operator_does_not_exist(&format!(
                        "{} || {}",
                        lt.name(),
                        rt.name()
                    )));
                }
                let to_text = |e: Expr, t: DataType| -> SqlResult<Expr> {
                    let ctx = if t.is_string() || t == DataType::Unknown {
                        CastCtx::Implicit
                    } else {
                        CastCtx::Explicit
                    };
                    self.coerce(e, t, DataType::Text, ctx)
                };
                Ok((
                    Expr::Concat(Box::new(to_text(l, lt)?), Box::new(to_text(r, rt)?)),
                    DataType::Text,
                ))
            }
            other => Err(SqlError::unsupported(format!("operator {other}"))),
        }
    }

    fn bind_function(&self, f: &ast::Function, cx: &Cx<'_>) -> SqlResult<(Expr, DataType)> {
        let name = object_name(&f.name)?;
        if f.over.is_some() {
            return Err(SqlError::unsupported("window functions"));
        }
        if f.filter.is_some() || !f.within_group.is_empty() {
            return Err(SqlError::unsupported("aggregate FILTER / WITHIN GROUP"));
        }
        let (args, distinct, star) = match &f.args {
            ast::FunctionArguments::None => (Vec::new(), false, false),
            ast::FunctionArguments::Subquery(_) => {
                return Err(SqlError::unsupported(
                    "function call with a subquery argument",
                ));
            }
            ast::FunctionArguments::List(list) => {
                if !list.clauses.is_empty() {
                    return Err(SqlError::unsupported("function argument clauses"));
                }
                let distinct = matches!(
                    list.duplicate_treatment,
                    Some(ast::DuplicateTreatment::Distinct)
                );
                let mut args = Vec::new();
                let mut star = false;
                for a in &list.args {
                    match a {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                            args.push(e.clone())
                        }
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => star = true,
                        other => {
                            return Err(SqlError::unsupported(format!(
                                "function argument {other}"
                            )));
                        }
                    }
                }
                (args, distinct, star)
            }
        };
        let agg = match name.as_str() {
            "count" => Some(if star {
                AggFunc::CountStar
            } else {
                AggFunc::Count
            }),
            "sum" => Some(AggFunc::Sum),
            "avg" => Some(AggFunc::Avg),
            "min" => Some(AggFunc::Min),
            "max" => Some(AggFunc::Max),
            "bool_and" | "every" => Some(AggFunc::BoolAnd),
            "bool_or" => Some(AggFunc::BoolOr),
            "string_agg" => Some(AggFunc::StringAgg),
            _ => None,
        };
        if let Some(func) = agg {
            return self.bind_aggregate(func, &name, &args, distinct, cx);
        }
        if star || distinct {
            return Err(SqlError::syntax(format!(
                "{} specified, but {name} is not an aggregate function",
                if star { "*" } else { "DISTINCT" }
            )));
        }
        if name == "current_setting" && (args.len() == 1 || args.len() == 2) {
            let (setting, _) = self.bind_expr(&args[0], cx)?;
            let Expr::Literal(Value::Text(setting)) = setting else {
                return Err(SqlError::unsupported(
                    "current_setting() with a non-constant name",
                ));
            };
            let missing_ok = match args.get(1) {
                Some(a) => matches!(self.bind_expr(a, cx)?.0, Expr::Literal(Value::Bool(true))),
                None => false,
            };
            return match self.settings.get(&setting.to_lowercase()) {
                Some(v) => Ok((Expr::Literal(Value::Text(v.clone())), DataType::Text)),
                None if missing_ok => Ok((Expr::Literal(Value::Null), DataType::Text)),
                None => Err(SqlError::new(
                    sqlstate::UNDEFINED_OBJECT,
                    format!("unrecognized configuration parameter \"{setting}\""),
                )),
            };
        }
        match name.as_str() {
            "coalesce" | "greatest" | "least" => {
                if args.is_empty() {
                    return Err(SqlError::syntax(format!("{name} needs arguments")));
                }
                let bound = args
                    .iter()
                    .map(|a| self.bind_expr(a, cx))
                    .collect::<SqlResult<Vec<_>>>()?;
                let types: Vec<DataType> = bound.iter().map(|b| b.1).collect();
                let t = cast::common_type(&types, &name.to_uppercase())?;
                let items = bound
                    .into_iter()
                    .map(|(b, bt)| self.coerce(b, bt, t, CastCtx::Implicit))
                    .collect::<SqlResult<Vec<_>>>()?;
                Ok((
                    match name.as_str() {
                        "coalesce" => Expr::Coalesce(items),
                        "greatest" => Expr::Greatest(items),
                        _ => Expr::Least(items),
                    },
                    t,
                ))
            }
            "nullif" => {
                let [a, b] = args.as_slice() else {
                    return Err(function_does_not_exist(&name, &[]));
                };
                let (a, at) = self.bind_expr(a, cx)?;
                let (b, bt) = self.bind_expr(b, cx)?;
                let t = self.compare_type(at, bt, "=")?;
                let rt = if at == DataType::Unknown {
                    DataType::Text
                } else {
                    at
                };
                Ok((
                    Expr::NullIf(
                        Box::new(self.coerce(a, at, t, CastCtx::Implicit)?),
                        Box::new(self.coerce(b, bt, t, CastCtx::Implicit)?),
                    ),
                    if t == at { rt } else { t },
                ))
            }
            _ => self.bind_scalar_call(&name, &args, cx),
        }
    }

    fn bind_scalar_call(
        &self,
        name: &str,
        args: &[ast::Expr],
        cx: &Cx<'_>,
    ) -> SqlResult<(Expr, DataType)> {
        let bound = args
            .iter()
            .map(|a| self.bind_expr(a, cx))
            .collect::<SqlResult<Vec<_>>>()?;
        let types: Vec<DataType> = bound.iter().map(|b| b.1).collect();
        let (func, arg_types, ret) = functions::resolve(name, &types)?;
        let args = bound
            .into_iter()
            .zip(arg_types)
            .map(|((b, bt), t)| self.coerce(b, bt, t, CastCtx::Implicit))
            .collect::<SqlResult<Vec<_>>>()?;
        Ok((Expr::Func { func, args }, ret))
    }

    fn bind_aggregate(
        &self,
        func: AggFunc,
        name: &str,
        args: &[ast::Expr],
        distinct: bool,
        cx: &Cx<'_>,
    ) -> SqlResult<(Expr, DataType)> {
        let Some(aggs) = cx.aggs else {
            return Err(SqlError::new(
                sqlstate::GROUPING_ERROR,
                format!("aggregate functions are not allowed in {}", cx.clause),
            ));
        };
        // Arguments see the same rows but may not contain aggregates themselves.
        let inner = Cx {
            scope: cx.scope,
            outer: cx.outer,
            aggs: None,
            clause: "aggregate function calls",
        };
        let nested_err = |e: SqlError| {
            if e.code == sqlstate::GROUPING_ERROR {
                SqlError::new(
                    sqlstate::GROUPING_ERROR,
                    "aggregate function calls cannot be nested",
                )
            } else {
                e
            }
        };
        let mut bound = Vec::new();
        for a in args {
            bound.push(self.bind_expr(a, &inner).map_err(nested_err)?);
        }
        let (call, ty) = match func {
            AggFunc::CountStar => (
                AggCall {
                    func,
                    args: vec![],
                    distinct: false,
                    arg_type: DataType::Int8,
                    result_type: DataType::Int8,
                },
                DataType::Int8,
            ),
            _ => {
                let expected = if func == AggFunc::StringAgg { 2 } else { 1 };
                if bound.len() != expected {
                    let types: Vec<DataType> = bound.iter().map(|b| b.1).collect();
                    return Err(function_does_not_exist(name, &types));
                }
                let (mut a, mut at) = bound.remove(0);
                if at == DataType::Unknown {
                    a = self.coerce(a, at, DataType::Text, CastCtx::Implicit)?;
                    at = DataType::Text;
                }
                let rt = match func {
                    AggFunc::Count => DataType::Int8,
                    AggFunc::Sum => match at {
                        DataType::Int2 | DataType::Int4 => DataType::Int8,
                        DataType::Int8 | DataType::Numeric(_) => DataType::Numeric(None),
                        DataType::Float4 => DataType::Float4,
                        DataType::Float8 => DataType::Float8,
                        other => return Err(function_does_not_exist(name, &[other])),
                    },
                    AggFunc::Avg => match at {
                        t if t.is_integer() => DataType::Numeric(None),
                        DataType::Numeric(_) => DataType::Numeric(None),
                        DataType::Float4 | DataType::Float8 => DataType::Float8,
                        other => return Err(function_does_not_exist(name, &[other])),
                    },
                    AggFunc::Min | AggFunc::Max => match at {
                        DataType::Varchar(_) | DataType::Char(_) => DataType::Text,
                        DataType::Numeric(_) => DataType::Numeric(None),
                        DataType::Bool | DataType::Bytea => {
                            return Err(function_does_not_exist(name, &[at]));
                        }
                        t => t,
                    },
                    AggFunc::BoolAnd | AggFunc::BoolOr => {
                        a = self.coerce_bool(a, at, name)?;
                        at = DataType::Bool;
                        DataType::Bool
                    }
                    AggFunc::StringAgg => {
                        a = self.coerce(a, at, DataType::Text, CastCtx::Implicit)?;
                        at = DataType::Text;
                        DataType::Text
                    }
                    AggFunc::CountStar => unreachable!("handled above"),
                };
                let mut call_args = vec![a];
                if func == AggFunc::StringAgg {
                    let (sep, st) = bound.remove(0);
                    call_args.push(self.coerce(sep, st, DataType::Text, CastCtx::Implicit)?);
                }
                (
                    AggCall {
                        func,
                        args: call_args,
                        distinct,
                        arg_type: at,
                        result_type: rt,
                    },
                    rt,
                )
            }
        };
        let mut list = aggs.borrow_mut();
        let idx = match list.iter().position(|c| *c == call) {
            Some(i) => i,
            None => {
                list.push(call);
                list.len() - 1
            }
        };
        Ok((Expr::AggRef(idx), ty))
    }
}

impl DataType {
    /// `Unknown` when self is Unknown, else `t` — used to keep an untyped operand's origin.
    fn max_if(self, t: DataType) -> DataType {
        if self == DataType::Unknown { t } else { self }
    }
}

/// The type without modifiers (varchar(5) → varchar).
fn base_type(t: DataType) -> DataType {
    match t {
        DataType::Varchar(_) => DataType::Varchar(None),
        DataType::Numeric(_) => DataType::Numeric(None),
        DataType::Char(_) => DataType::Char(1).max_len_base(),
        other => other,
    }
}

impl DataType {
    fn max_len_base(self) -> DataType {
        // char(n) literals parse as text and are then padded by the typmod cast.
        DataType::Text
    }
}

/// Untyped (`unknown`) values are text or NULL at run time.
fn concrete(t: DataType) -> DataType {
    if t == DataType::Unknown {
        DataType::Text
    } else {
        t
    }
}

/// Relabels `unknown` output columns as text, as PostgreSQL does where a query's result is used.
fn text_unknowns(mut scope: Scope) -> Scope {
    for c in &mut scope.columns {
        c.ty = concrete(c.ty);
    }
    scope
}

fn duplicate_tables(left: &Scope, right: &Scope) -> SqlResult<()> {
    for c in &right.columns {
        if let Some(q) = &c.qualifier
            && left.has_qualifier(q)
        {
            return Err(SqlError::new(
                sqlstate::DUPLICATE_ALIAS,
                format!("table name \"{q}\" specified more than once"),
            ));
        }
    }
    Ok(())
}

fn cmp_symbol(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "=",
        CmpOp::NotEq => "<>",
        CmpOp::Lt => "<",
        CmpOp::LtEq => "<=",
        CmpOp::Gt => ">",
        CmpOp::GtEq => ">=",
    }
}

fn operator_does_not_exist(sig: &str) -> SqlError {
    SqlError::new(
        sqlstate::UNDEFINED_FUNCTION,
        format!("operator does not exist: {sig}"),
    )
    .with_hint(
        "No operator matches the given name and argument types. You might need to add explicit type casts.",
    )
}

fn function_does_not_exist(name: &str, types: &[DataType]) -> SqlError {
    let args: Vec<&str> = types.iter().map(|t| t.name()).collect();
    SqlError::new(
        sqlstate::UNDEFINED_FUNCTION,
        format!("function {name}({}) does not exist", args.join(", ")),
    )
    .with_hint(
        "No function matches the given name and argument types. You might need to add explicit type casts.",
    )
}

fn fold_constant(e: Expr) -> SqlResult<Expr> {
    // Division by zero is reported at run time in PostgreSQL too, but only if the row is
    // reached; keep it unevaluated so `WHERE false AND 1/0 = 1` does not fail.
    if let Expr::Arith { left, right, .. } = &e
        && matches!(left.as_ref(), Expr::Literal(_))
        && matches!(right.as_ref(), Expr::Literal(_))
        && let Ok(v) = e.eval(&[], &crate::sql::expr::EvalContext::empty())
    {
        return Ok(Expr::Literal(v));
    }
    Ok(e)
}

fn is_default_keyword(e: &ast::Expr) -> bool {
    matches!(e, ast::Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// The output column name PostgreSQL gives an unaliased select item.
fn output_name(e: &ast::Expr) -> String {
    use ast::Expr as E;
    match e {
        E::Identifier(i) => ident(i),
        E::CompoundIdentifier(parts) => parts.last().map(ident).unwrap_or_default(),
        E::Nested(inner) => output_name(inner),
        E::Function(f) => f
            .name
            .0
            .last()
            .map(|p| match p {
                ast::ObjectNamePart::Identifier(i) => ident(i),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "?column?".into()),
        E::Cast {
            expr, data_type, ..
        } => match output_name(expr).as_str() {
            "?column?" => type_output_name(data_type),
            n => n.to_string(),
        },
        E::Case { .. } => "case".into(),
        E::Exists { .. } => "exists".into(),
        E::Subquery(q) => match q.body.as_ref() {
            ast::SetExpr::Select(s) => match s.projection.as_slice() {
                [ast::SelectItem::UnnamedExpr(x)] => output_name(x),
                [ast::SelectItem::ExprWithAlias { alias, .. }] => ident(alias),
                _ => "?column?".into(),
            },
            _ => "?column?".into(),
        },
        E::Substring { .. } => "substring".into(),
        E::Position { .. } => "position".into(),
        E::Trim { .. } => "btrim".into(),
        E::Ceil { .. } => "ceil".into(),
        E::Floor { .. } => "floor".into(),
        E::TypedString(ts) => type_output_name(&ts.data_type),
        _ => "?column?".into(),
    }
}

fn type_output_name(t: &ast::DataType) -> String {
    match convert_type(t) {
        Ok(DataType::Int2) => "int2".into(),
        Ok(DataType::Int4) => "int4".into(),
        Ok(DataType::Int8) => "int8".into(),
        Ok(DataType::Float4) => "float4".into(),
        Ok(DataType::Float8) => "float8".into(),
        Ok(DataType::Bool) => "bool".into(),
        Ok(DataType::Varchar(_)) => "varchar".into(),
        Ok(DataType::Char(_)) => "bpchar".into(),
        Ok(DataType::Timestamp) => "timestamp".into(),
        Ok(t) => t.name().to_string(),
        Err(_) => "?column?".into(),
    }
}

fn sort_key(expr: Expr, opts: &ast::OrderByOptions) -> SortKey {
    let desc = matches!(opts.sort, Some(ast::OrderBySort::Desc));
    SortKey {
        expr,
        desc,
        // PostgreSQL: NULLs sort as larger than any value by default.
        nulls_first: opts.nulls_first.unwrap_or(desc),
    }
}

fn apply_alias_columns(scope: Scope, alias: &Option<ast::TableAlias>) -> SqlResult<Scope> {
    match alias {
        Some(a) if !a.columns.is_empty() => {
            let names: Vec<String> = a.columns.iter().map(|c| ident(&c.name)).collect();
            rename_columns(scope, &names)
        }
        _ => Ok(scope),
    }
}

fn rename_columns(mut scope: Scope, names: &[String]) -> SqlResult<Scope> {
    let visible: Vec<usize> = (0..scope.len())
        .filter(|i| !scope.columns[*i].hidden)
        .collect();
    if names.len() > visible.len() {
        return Err(SqlError::syntax(format!(
            "table has {} columns available but {} columns specified",
            visible.len(),
            names.len()
        )));
    }
    for (n, i) in names.iter().zip(visible) {
        scope.columns[i].name = n.clone();
    }
    Ok(scope)
}

/// Rewrites an expression bound over the FROM row into one over the aggregate's output row
/// (group values, then aggregate results).
fn post_agg(e: Expr, groups: &[Expr], n_groups: usize, scope: &Scope) -> SqlResult<Expr> {
    if let Some(i) = groups.iter().position(|g| *g == e) {
        return Ok(Expr::Column(i));
    }
    match e {
        Expr::AggRef(i) => Ok(Expr::Column(n_groups + i)),
        Expr::Column(c) => {
            let col = &scope.columns[c];
            let shown = match &col.qualifier {
                Some(q) => format!("{q}.{}", col.name),
                None => col.name.clone(),
            };
            Err(SqlError::new(
                sqlstate::GROUPING_ERROR,
                format!(
                    "column \"{shown}\" must appear in the GROUP BY clause or be used in an aggregate function"
                ),
            ))
        }
        Expr::Subquery {
            id,
            kind,
            plan,
            lhs,
            correlated: true,
        } => {
            // The subquery now runs once per group: its references to this query's FROM row
            // must become references to the aggregate's output row.
            let plan = remap_outer_plan(*plan, 1, &mut |index| {
                post_agg(Expr::Column(index), groups, n_groups, scope).map_err(|e| {
                    if e.code != sqlstate::GROUPING_ERROR {
                        return e;
                    }
                    let col = &scope.columns[index];
                    let shown = match &col.qualifier {
                        Some(q) => format!("{q}.{}", col.name),
                        None => col.name.clone(),
                    };
                    SqlError::new(
                        sqlstate::GROUPING_ERROR,
                        format!("subquery uses ungrouped column \"{shown}\" from outer query"),
                    )
                })
            })?;
            let lhs = match lhs {
                Some(l) => Some(Box::new(post_agg(*l, groups, n_groups, scope)?)),
                None => None,
            };
            Ok(Expr::Subquery {
                id,
                kind,
                plan: Box::new(plan),
                lhs,
                correlated: true,
            })
        }
        other => other.map_children(&mut |c| post_agg(c, groups, n_groups, scope)),
    }
}

/// Rewrites the references a subquery plan makes to the query `depth` levels out, mapping each
/// referenced column index through `map` (which yields an expression over the new outer row).
fn remap_outer_plan(
    plan: Plan,
    depth: usize,
    map: &mut dyn FnMut(usize) -> SqlResult<Expr>,
) -> SqlResult<Plan> {
    plan.map_exprs(&mut |e| remap_outer_expr(e, depth, map))
}

fn remap_outer_expr(
    e: Expr,
    depth: usize,
    map: &mut dyn FnMut(usize) -> SqlResult<Expr>,
) -> SqlResult<Expr> {
    e.transform(&mut |node| match node {
        Expr::Outer { depth: d, index } if d == depth => match map(index)? {
            Expr::Column(i) => Ok(Expr::Outer { depth, index: i }),
            _ => Err(SqlError::unsupported(
                "an outer reference to an expression of grouped columns in a subquery",
            )),
        },
        Expr::Subquery {
            id,
            kind,
            plan,
            lhs,
            correlated,
        } => Ok(Expr::Subquery {
            id,
            kind,
            plan: Box::new(remap_outer_plan(*plan, depth + 1, map)?),
            lhs,
            correlated,
        }),
        other => Ok(other),
    })
}

/// Splits a filter over `plan`'s output into the parts a shard can run (pushed into scans, also
/// through inner joins) and the rest, and recognises primary-key point lookups.
pub fn push_filter(plan: Plan, pred: Expr, cx: &AccessCtx<'_>) -> Plan {
    let mut parts = Vec::new();
    conjuncts(pred, &mut parts);
    push_conjuncts(plan, parts, cx)
}

fn push_conjuncts(plan: Plan, parts: Vec<Expr>, cx: &AccessCtx<'_>) -> Plan {
    if parts.is_empty() {
        return plan;
    }
    match plan {
        Plan::Scan {
            table_id,
            table_name,
            column_types,
            primary_key,
            placement,
            access,
            filter,
        } => {
            let mut ship = Vec::new();
            let mut keep = Vec::new();
            if let Some(f) = filter {
                conjuncts(f, &mut ship);
            }
            for p in parts {
                if p.is_shippable() {
                    ship.push(p);
                } else {
                    keep.push(p);
                }
            }
            let access = match access {
                Access::Full | Access::Index(_) => {
                    match point_access(&primary_key, ship.iter().chain(keep.iter())) {
                        Access::Full if cx.index_scans => cx
                            .tables
                            .get(&table_id)
                            .and_then(|t| access::choose_index(t, ship.iter().chain(keep.iter())))
                            .map(|ix| Access::Index(Box::new(ix)))
                            .unwrap_or(Access::Full),
                        a => a,
                    }
                }
                a => a,
            };
            let scan = Plan::Scan {
                table_id,
                table_name,
                column_types,
                primary_key,
                placement,
                access,
                filter: and_all(ship),
            };
            match and_all(keep) {
                Some(p) => Plan::Filter {
                    input: Box::new(scan),
                    predicate: p,
                },
                None => scan,
            }
        }
        Plan::Join {
            left,
            right,
            kind: JoinKind::Inner,
            on,
            left_width,
            right_width,
            equi: _,
            strategy: _,
        } => {
            let mut to_left = Vec::new();
            let mut to_right = Vec::new();
            let mut stay = Vec::new();
            if let Some(o) = on {
                conjuncts(o, &mut stay);
            }
            let mut rest = Vec::new();
            for p in parts.into_iter().chain(stay) {
                let cols = columns_used(&p);
                let safe = !has_subquery(&p) || cols.is_empty();
                if safe && !cols.is_empty() && cols.iter().all(|c| *c < left_width) {
                    to_left.push(p);
                } else if safe && !cols.is_empty() && cols.iter().all(|c| *c >= left_width) {
                    to_right.push(shift_columns(p, -(left_width as isize)));
                } else {
                    rest.push(p);
                }
            }
            let left = push_conjuncts(*left, to_left, cx);
            let right = push_conjuncts(*right, to_right, cx);
            let on = and_all(rest);
            let equi = on
                .as_ref()
                .map(|e| equi_keys(e, left_width))
                .unwrap_or_default();
            Plan::Join {
                left: Box::new(left),
                right: Box::new(right),
                kind: JoinKind::Inner,
                on,
                left_width,
                right_width,
                equi,
                strategy: Default::default(),
            }
        }
        // An outer join: WHERE conjuncts on the preserved side's columns only filter that
        // side's rows (the padded rows they would see come from those same rows), and ON
        // conjuncts on the other side's columns only filter which of its rows can match.
        Plan::Join {
            left,
            right,
            kind: kind @ (JoinKind::Left | JoinKind::Right),
            on,
            left_width,
            right_width,
            equi: _,
            strategy: _,
        } => {
            let preserved_left = kind == JoinKind::Left;
            let side_of = |p: &Expr| {
                let cols = columns_used(p);
                let safe = !has_subquery(p) || cols.is_empty();
                if !safe || cols.is_empty() {
                    None
                } else if cols.iter().all(|c| *c < left_width) {
                    Some(true)
                } else if cols.iter().all(|c| *c >= left_width) {
                    Some(false)
                } else {
                    None
                }
            };
            let (mut to_left, mut to_right, mut keep, mut on_rest) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for p in parts {
                match side_of(&p) {
                    Some(true) if preserved_left => to_left.push(p),
                    Some(false) if !preserved_left => {
                        to_right.push(shift_columns(p, -(left_width as isize)))
                    }
                    _ => keep.push(p),
                }
            }
            let mut on_parts = Vec::new();
            if let Some(o) = on {
                conjuncts(o, &mut on_parts);
            }
            for p in on_parts {
                match side_of(&p) {
                    Some(false) if preserved_left => {
                        to_right.push(shift_columns(p, -(left_width as isize)))
                    }
                    Some(true) if !preserved_left => to_left.push(p),
                    _ => on_rest.push(p),
                }
            }
            let left = push_conjuncts(*left, to_left, cx);
            let right = push_conjuncts(*right, to_right, cx);
            let on = and_all(on_rest);
            let equi = on
                .as_ref()
                .map(|e| equi_keys(e, left_width))
                .unwrap_or_default();
            let join = Plan::Join {
                left: Box::new(left),
                right: Box::new(right),
                kind,
                on,
                left_width,
                right_width,
                equi,
                strategy: Default::default(),
            };
            match and_all(keep) {
                Some(p) => Plan::Filter {
                    input: Box::new(join),
                    predicate: p,
                },
                None => join,
            }
        }
        other => Plan::Filter {
            input: Box::new(other),
            predicate: and_all(parts).expect("non-empty"),
        },
    }
}

/// If the conjuncts fix every primary-key column to a row-independent value, a point lookup.
fn point_access<'e>(pk: &[usize], conjuncts: impl Iterator<Item = &'e Expr>) -> Access {
    let mut values: Vec<Option<Expr>> = vec![None; pk.len()];
    for c in conjuncts {
        if let Expr::Cmp {
            op: CmpOp::Eq,
            left,
            right,
        } = c
        {
            let (col, val) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(i), v) | (v, Expr::Column(i)) if columns_used(v).is_empty() => {
                    (*i, v)
                }
                _ => continue,
            };
            if has_subquery(val) {
                continue;
            }
            if let Some(k) = pk.iter().position(|p| *p == col) {
                values[k] = Some(val.clone());
            }
        }
    }
    if values.iter().all(|v| v.is_some()) {
        Access::Point {
            key: values.into_iter().map(|v| v.expect("checked")).collect(),
        }
    } else {
        Access::Full
    }
}

/// Equality conjuncts `left-side expr = right-side expr` usable as hash-join keys.
fn equi_keys(on: &Expr, left_width: usize) -> Vec<(Expr, Expr, DataType)> {
    let mut parts = Vec::new();
    conjuncts(on.clone(), &mut parts);
    let mut keys = Vec::new();
    for p in parts {
        if let Expr::Cmp {
            op: CmpOp::Eq,
            left,
            right,
        } = p
        {
            if has_subquery(&left) || has_subquery(&right) {
                continue;
            }
            let lc = columns_used(&left);
            let rc = columns_used(&right);
            if lc.is_empty() || rc.is_empty() {
                continue;
            }
            let all_left = |v: &[usize]| v.iter().all(|c| *c < left_width);
            let all_right = |v: &[usize]| v.iter().all(|c| *c >= left_width);
            if all_left(&lc) && all_right(&rc) {
                keys.push((
                    *left,
                    shift_columns(*right, -(left_width as isize)),
                    DataType::Unknown,
                ));
            } else if all_right(&lc) && all_left(&rc) {
                keys.push((
                    *right,
                    shift_columns(*left, -(left_width as isize)),
                    DataType::Unknown,
                ));
            }
        }
    }
    keys
}

/// The text of a (possibly negated) numeric literal, e.g. `-1e-308`.
fn numeric_literal_text(e: &ast::Expr) -> Option<String> {
    match e {
        ast::Expr::Value(ast::ValueWithSpan {
            value: ast::Value::Number(n, _),
            ..
        }) => Some(n.to_string()),
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => numeric_literal_text(expr).map(|t| format!("-{t}")),
        ast::Expr::Nested(inner) => numeric_literal_text(inner),
        _ => None,
    }
}

//! Per-connection protocol handling: startup, simple query, extended query (parse / bind /
//! describe / execute), result encoding and error reporting.

use crate::error::{SqlError, sqlstate};
use crate::sql::binder::OutputColumn;
use crate::sql::parser;
use crate::sql::session::{Database, Described, Outcome, Session};
use crate::types::{DataType, Value, binary, format::format_text, parse::parse_text};
use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use futures::{Sink, stream};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::simplequery::Query;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use sqlparser::ast;
use std::fmt::Debug;
use std::sync::Arc;

/// The server version reported to clients: PostgreSQL 15 compatible.
pub const SERVER_VERSION: &str = "15.0 (sharddb 0.1.0)";

/// A statement prepared through the extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub statement: ast::Statement,
    /// Parameter types the client sent in Parse (None where it left them open).
    pub client_types: Vec<Option<DataType>>,
    pub described: Described,
}

pub struct ConnectionHandler {
    session: Arc<parking_lot::Mutex<Session>>,
    parser: Arc<StatementParser>,
}

pub struct StatementParser {
    session: Arc<parking_lot::Mutex<Session>>,
}

impl ConnectionHandler {
    pub fn new(db: Arc<Database>) -> ConnectionHandler {
        let session = Arc::new(parking_lot::Mutex::new(Session::new(db)));
        ConnectionHandler {
            parser: Arc::new(StatementParser {
                session: session.clone(),
            }),
            session,
        }
    }
}

/// Handler set for one connection.
pub struct ConnectionHandlers {
    pub handler: Arc<ConnectionHandler>,
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.handler.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.handler.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.handler.clone()
    }
}

#[async_trait]
impl StartupHandler for ConnectionHandler {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Trust authentication: any user, no password (the embedded default on loopback).
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let mut params = DefaultServerParameterProvider::default();
            params.server_version = SERVER_VERSION.to_string();
            params.time_zone = "UTC".to_string();
            finish_authentication(client, &params).await?;
        }
        Ok(())
    }
}

pub fn to_pg_error(e: SqlError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e)))
}

fn error_info(e: SqlError) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".to_string(), e.code, e.message);
    info.position = e.position.map(|p| p.to_string());
    info.detail = e.detail;
    info.hint = e.hint;
    info
}

fn pg_type(t: DataType) -> Type {
    Type::from_oid(t.oid()).unwrap_or(Type::TEXT)
}

fn field_infos(columns: &[OutputColumn], format: &Format) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            FieldInfo::new(
                c.name.clone(),
                None,
                None,
                pg_type(c.ty),
                format.format_for(i),
            )
            .with_type_size(c.ty.type_len())
            .with_type_modifier(c.ty.type_modifier())
        })
        .collect()
}

/// Encodes result rows as DataRow messages in each column's requested format.
fn encode_rows(
    rows: Vec<Vec<Value>>,
    columns: &[OutputColumn],
    fields: &[FieldInfo],
) -> Vec<PgWireResult<DataRow>> {
    let mut out = Vec::with_capacity(rows.len());
    let mut scratch = Vec::new();
    for row in rows {
        let mut buf = BytesMut::with_capacity(16 * row.len());
        for (i, v) in row.iter().enumerate() {
            if v.is_null() {
                buf.put_i32(-1);
                continue;
            }
            let ty = columns[i].ty;
            if fields[i].format() == FieldFormat::Binary {
                scratch.clear();
                binary::encode_binary(v, ty, &mut scratch);
                buf.put_i32(scratch.len() as i32);
                buf.put_slice(&scratch);
            } else {
                let text = format_text(v, ty).unwrap_or_default();
                buf.put_i32(text.len() as i32);
                buf.put_slice(text.as_bytes());
            }
        }
        out.push(Ok(DataRow::new(buf, row.len() as i16)));
    }
    out
}

/// Splits "INSERT 0 3" into ("INSERT 0", Some(3)); "CREATE TABLE" into itself and None.
fn split_tag(tag: &str) -> (&str, Option<usize>) {
    match tag.rsplit_once(' ') {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (head, n.parse().ok())
        }
        _ => (tag, None),
    }
}

/// The wire status a session is in: idle, in a block, or in a failed block.
fn wire_status(session: &Session) -> TransactionStatus {
    match session.transaction_status() {
        (false, _) => TransactionStatus::Idle,
        (true, false) => TransactionStatus::Transaction,
        (true, true) => TransactionStatus::Error,
    }
}

/// A statement's response; transaction control says whether it left the session in a block
/// (pgwire derives the ReadyForQuery status from that).
fn statement_response(outcome: Outcome, format: &Format, in_block: bool) -> Response {
    if let Outcome::Command { tag } = &outcome
        && matches!(
            tag.as_str(),
            "BEGIN" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE"
        )
    {
        let t = Tag::new(tag);
        return if in_block {
            Response::TransactionStart(t)
        } else {
            Response::TransactionEnd(t)
        };
    }
    outcome_response(outcome, format)
}

fn outcome_response(outcome: Outcome, format: &Format) -> Response {
    match outcome {
        Outcome::Rows { columns, rows, tag } => {
            let fields = field_infos(&columns, format);
            let data = encode_rows(rows, &columns, &fields);
            let mut resp = QueryResponse::new(Arc::new(fields), stream::iter(data));
            resp.set_command_tag(split_tag(&tag).0);
            Response::Query(resp)
        }
        Outcome::Command { tag } => {
            let (head, rows) = split_tag(&tag);
            // "INSERT 0 n": the 0 is the legacy OID field.
            let t = match head.strip_suffix(" 0") {
                Some(cmd) if cmd == "INSERT" => Tag::new(cmd).with_oid(0),
                _ => Tag::new(head),
            };
            Response::Execution(match rows {
                Some(n) => t.with_rows(n),
                None => t,
            })
        }
    }
}

/// Runs session work, which blocks (fsync, storage reads), without stalling other connections.
///
/// On the multi-threaded runtime the work runs in place on this worker thread while the worker's
/// other tasks move to another thread (`block_in_place`): no hand-off to a blocking-pool thread
/// and back per statement, which cost two context switches per point query. Elsewhere it falls
/// back to the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> PgWireResult<T> {
    use std::panic::AssertUnwindSafe;
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        // A bug that panics must cost one statement (XX000), not the connection.
        return tokio::task::block_in_place(|| std::panic::catch_unwind(AssertUnwindSafe(f)))
            .map_err(|_| to_pg_error(SqlError::internal("statement execution panicked")));
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| to_pg_error(SqlError::internal(format!("executor task failed: {e}"))))
}

#[async_trait]
impl SimpleQueryHandler for ConnectionHandler {
    /// pgwire's simple-query loop, except that the ReadyForQuery status is the session's own:
    /// pgwire derives it from the responses, which cannot express "this COMMIT failed and the
    /// transaction is over" (idle after an error) or "ROLLBACK TO SAVEPOINT made a failed block
    /// usable again" — and drivers (psycopg) choose BEGIN or SAVEPOINT from that status.
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        use pgwire::api::PgWireConnectionState;
        use pgwire::api::query::{
            send_execution_response, send_query_response, send_ready_for_query,
        };
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let sql = query.query;
        if sql.chars().all(|c| c == ';' || c.is_whitespace()) {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    pgwire::messages::response::EmptyQueryResponse::new(),
                ))
                .await?;
        } else {
            let handle = client
                .session_extensions()
                .get::<Arc<pgwire::api::ConnectionHandle>>();
            let cancel = match handle {
                Some(h) => Some(h.start_query().await),
                None => None,
            };
            let responses = match cancel {
                Some(rx) => {
                    match futures::future::select(
                        SimpleQueryHandler::do_query(self, client, &sql),
                        rx,
                    )
                    .await
                    {
                        futures::future::Either::Left((result, _)) => result,
                        futures::future::Either::Right(_) => Err(PgWireError::QueryCanceled),
                    }
                }
                None => SimpleQueryHandler::do_query(self, client, &sql).await,
            }?;
            for r in responses {
                match r {
                    Response::EmptyQuery => {
                        client
                            .feed(PgWireBackendMessage::EmptyQueryResponse(
                                pgwire::messages::response::EmptyQueryResponse::new(),
                            ))
                            .await?;
                    }
                    Response::Query(results) => send_query_response(client, results, true).await?,
                    Response::Execution(tag)
                    | Response::TransactionStart(tag)
                    | Response::TransactionEnd(tag) => send_execution_response(client, tag).await?,
                    Response::Error(e) => {
                        client
                            .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                            .await?;
                    }
                    _ => {
                        let e = error_info(SqlError::unsupported("COPY"));
                        client
                            .feed(PgWireBackendMessage::ErrorResponse(e.into()))
                            .await?;
                    }
                }
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        let status = wire_status(&self.session.lock());
        client.set_transaction_status(status);
        send_ready_for_query(client, status).await?;
        Ok(())
    }

    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session.clone();
        let sql = query.to_string();
        let results = blocking(move || {
            let mut session = session.lock();
            let statements = match parser::parse_statements(&sql) {
                Ok(s) => s,
                Err(e) => {
                    // As in PostgreSQL, a statement that does not parse fails the block too.
                    session.statement_failed(&e);
                    return vec![(Err(e), false)];
                }
            };
            let mut out = Vec::with_capacity(statements.len());
            for stmt in &statements {
                let r = session.execute(stmt, &[], &[]);
                let in_block = session.transaction_status().0;
                let failed = r.is_err();
                out.push((r, in_block));
                if failed {
                    break; // PostgreSQL stops a multi-statement query at the first error
                }
            }
            out
        })
        .await?;
        Ok(results
            .into_iter()
            .map(|(r, in_block)| match r {
                Ok(o) => statement_response(o, &Format::UnifiedText, in_block),
                Err(e) => Response::Error(Box::new(error_info(e))),
            })
            .collect())
    }
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = match parser::parse_statements(sql) {
            Ok(s) => s,
            Err(e) => {
                // As in PostgreSQL, a statement that does not parse fails the open block
                // (which may roll back on the shards: blocking work).
                let session = self.session.clone();
                let failed = e.clone();
                blocking(move || session.lock().statement_failed(&failed)).await?;
                return Err(to_pg_error(e));
            }
        };
        let statement = match statements.len() {
            0 => return Ok(None),
            1 => statements.pop().expect("one statement"),
            _ => {
                return Err(to_pg_error(SqlError::syntax(
                    "cannot insert multiple commands into a prepared statement",
                )));
            }
        };
        let client_types: Vec<Option<DataType>> = types
            .iter()
            .map(|t| t.as_ref().and_then(|t| DataType::from_oid(t.oid())))
            .map(|t| t.filter(|t| *t != DataType::Unknown))
            .collect();
        let session = self.session.clone();
        let stmt = statement.clone();
        let ct = client_types.clone();
        let described = blocking(move || {
            let mut session = session.lock();
            let r = session.describe(&stmt, &ct);
            if let Err(e) = &r {
                session.statement_failed(e);
            }
            r
        })
        .await?
        .map_err(to_pg_error)?;
        Ok(Some(Arc::new(Prepared {
            statement,
            client_types,
            described,
        })))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(stmt
            .described
            .param_types
            .iter()
            .map(|t| pg_type(*t))
            .collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(field_infos(
            &stmt.described.columns,
            column_format.unwrap_or(&Format::UnifiedText),
        ))
    }
}

/// Decodes the Bind message's parameter values into typed values.
fn decode_params(portal: &Portal<Arc<Prepared>>) -> Result<Vec<Value>, SqlError> {
    let prepared = &portal.statement.statement;
    let types = &prepared.described.param_types;
    if portal.parameters.len() != types.len() {
        return Err(SqlError::new(
            sqlstate::PROTOCOL_VIOLATION,
            format!(
                "bind message supplies {} parameters, but prepared statement requires {}",
                portal.parameters.len(),
                types.len()
            ),
        ));
    }
    portal
        .parameters
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ty = types[i];
            match p {
                None => Ok(Value::Null),
                Some(bytes) if portal.parameter_format.is_binary(i) => {
                    binary::decode_binary(bytes, ty)
                }
                Some(bytes) => {
                    let s = std::str::from_utf8(bytes).map_err(|_| {
                        SqlError::new("22021", "invalid byte sequence for encoding \"UTF8\"")
                    })?;
                    parse_text(s, ty)
                }
            }
        })
        .collect()
}

#[async_trait]
impl ExtendedQueryHandler for ConnectionHandler {
    type Statement = Arc<Prepared>;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    /// As pgwire's, but ReadyForQuery carries the session's own transaction status (see
    /// `on_query`).
    async fn on_sync<C>(
        &self,
        client: &mut C,
        _message: pgwire::messages::extendedquery::Sync,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        client.portal_store().rm_portal(pgwire::api::DEFAULT_NAME);
        let status = wire_status(&self.session.lock());
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(
                pgwire::messages::response::ReadyForQuery::new(status),
            ))
            .await?;
        client.flush().await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let params = match decode_params(portal) {
            Ok(p) => p,
            Err(e) => {
                let session = self.session.clone();
                let failed = e.clone();
                blocking(move || session.lock().statement_failed(&failed)).await?;
                return Err(to_pg_error(e));
            }
        };
        let prepared = portal.statement.statement.clone();
        let session = self.session.clone();
        let outcome = blocking(move || {
            // Bind with the types fixed at Parse so parameter values match.
            let types: Vec<Option<DataType>> = prepared
                .described
                .param_types
                .iter()
                .map(|t| Some(*t))
                .collect();
            let mut session = session.lock();
            let r = session.execute(&prepared.statement, &types, &params);
            r.map(|o| (o, session.transaction_status().0))
        })
        .await?
        .map_err(to_pg_error)?;
        let (outcome, in_block) = outcome;
        Ok(statement_response(
            outcome,
            &portal.result_column_format,
            in_block,
        ))
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let d = &target.statement.described;
        let params = d.param_types.iter().map(|t| pg_type(*t)).collect();
        let fields = field_infos(&d.columns, &Format::UnifiedBinary);
        Ok(DescribeStatementResponse::new(params, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let d = &portal.statement.statement.described;
        Ok(DescribePortalResponse::new(field_infos(
            &d.columns,
            &portal.result_column_format,
        )))
    }
}

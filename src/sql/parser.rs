//! Parsing SQL text with sqlparser's PostgreSQL dialect.
//!
//! Parse errors become SQLSTATE 42601 with the 1-based character position PostgreSQL clients use
//! to draw the error cursor; sqlparser reports line and column, which are converted here.

use crate::error::{SqlError, SqlResult};
use sqlparser::ast;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};

/// Nesting limit for the recursive-descent parser: deep input is an error, never a stack overflow.
const RECURSION_LIMIT: usize = 200;

pub fn parse_statements(sql: &str) -> SqlResult<Vec<ast::Statement>> {
    if let Some(call) = rewrite_placement_command(sql) {
        return parse_plain(&call);
    }
    parse_plain(sql)
}

/// The placement commands sqlparser has no grammar for, as calls of internal procedures that
/// the binder knows (`Binder::bind_cluster_command`):
///
/// ```text
/// ALTER CLUSTER ADD SHARD             → CALL sharddb_add_shard()
/// ALTER CLUSTER REMOVE SHARD n        → CALL sharddb_remove_shard(n)
/// ALTER TABLE t SPLIT AT (v), (w, x)  → CALL sharddb_split_at('t', (v), (w, x))
/// ```
/// Recognized only as a whole statement (psql and drivers send one statement at a time).
fn rewrite_placement_command(sql: &str) -> Option<String> {
    let text = sql.trim().trim_end_matches(';').trim_end();
    let mut words = text.split_whitespace();
    let w = |s: Option<&str>| s.map(str::to_ascii_lowercase);
    if w(words.next()).as_deref() != Some("alter") {
        return None;
    }
    match w(words.next()).as_deref() {
        Some("cluster") => {
            let verb = w(words.next())?;
            if w(words.next()).as_deref() != Some("shard") {
                return None;
            }
            let rest: Vec<&str> = words.collect();
            match (verb.as_str(), rest.as_slice()) {
                ("add", []) => Some("CALL sharddb_add_shard()".into()),
                ("remove", [n]) => Some(format!("CALL sharddb_remove_shard({n})")),
                _ => None,
            }
        }
        Some("table") => {
            let name = words.next()?;
            if w(words.next()).as_deref() != Some("split")
                || w(words.next()).as_deref() != Some("at")
            {
                return None;
            }
            // The rest of the text after "AT", verbatim.
            let at = text.to_ascii_lowercase().find(" split ")?;
            let after_split = &text[at + " split ".len()..];
            let rest = after_split.trim_start()[2..].trim_start();
            let name = name.trim_matches('"').replace('\'', "''");
            let name = if sql.contains(&format!("\"{name}\"")) {
                name
            } else {
                name.to_lowercase()
            };
            Some(format!("CALL sharddb_split_at('{name}', {rest})"))
        }
        _ => None,
    }
}

fn parse_plain(sql: &str) -> SqlResult<Vec<ast::Statement>> {
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| parse_error(sql, e))
}

pub fn parse_query(sql: &str) -> SqlResult<ast::Query> {
    let mut stmts = parse_statements(sql)?;
    match (stmts.pop(), stmts.is_empty()) {
        (Some(ast::Statement::Query(q)), true) => Ok(*q),
        _ => Err(SqlError::internal(format!(
            "stored query is not a query: {sql}"
        ))),
    }
}

pub fn parse_expr(sql: &str) -> SqlResult<ast::Expr> {
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| parse_error(sql, e))
}

fn parse_error(sql: &str, e: ParserError) -> SqlError {
    let text = match &e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => {
            return SqlError::new(
                crate::error::sqlstate::PROGRAM_LIMIT_EXCEEDED,
                "statement is nested too deeply",
            );
        }
    };
    // Messages end with " at Line: L, Column: C".
    let (message, position) = match text.rfind(" at Line: ") {
        Some(idx) => {
            let loc = &text[idx + " at Line: ".len()..];
            let mut parts = loc.split(", Column: ");
            let line: Option<usize> = parts.next().and_then(|l| l.trim().parse().ok());
            let col: Option<usize> = parts.next().and_then(|c| c.trim().parse().ok());
            let pos = match (line, col) {
                (Some(l), Some(c)) => char_position(sql, l, c),
                _ => None,
            };
            (text[..idx].to_string(), pos)
        }
        None => (text, None),
    };
    let near = position.and_then(|p| {
        sql.chars()
            .skip(p - 1)
            .collect::<String>()
            .split_whitespace()
            .next()
            .map(str::to_string)
    });
    let msg = match near {
        Some(tok) => format!("syntax error at or near \"{tok}\" ({message})"),
        None => format!("syntax error at end of input ({message})"),
    };
    let err = SqlError::syntax(msg);
    match position {
        Some(p) => err.with_position(p),
        None => err.with_position(sql.chars().count().max(1)),
    }
}

/// 1-based character offset of (line, column), both 1-based.
fn char_position(sql: &str, line: usize, col: usize) -> Option<usize> {
    let mut offset = 0usize;
    for (i, l) in sql.split('\n').enumerate() {
        if i + 1 == line {
            let len = l.chars().count();
            return (col <= len).then_some(offset + col);
        }
        offset += l.chars().count() + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_error_has_position() {
        let e = parse_statements("SELECT * FORM t").unwrap_err();
        assert_eq!(e.code, "42601");
        assert!(e.position.is_some(), "{e:?}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let sql = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(parse_statements(&sql).is_err());
    }
}

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
/// Recognized from sqlparser's tokens (so comments, case, quoting and line breaks behave as in
/// any statement), only as a whole statement: psql and drivers send one at a time.
fn rewrite_placement_command(sql: &str) -> Option<String> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    // Positions (in `tokens`) of the tokens that are not whitespace or comments.
    let mut sig: Vec<usize> = (0..tokens.len())
        .filter(|i| !matches!(tokens[*i].token, Token::Whitespace(_)))
        .collect();
    while sig
        .last()
        .is_some_and(|i| matches!(tokens[*i].token, Token::SemiColon))
    {
        sig.pop();
    }
    if sig
        .iter()
        .any(|i| matches!(tokens[*i].token, Token::SemiColon))
    {
        return None; // several statements
    }
    let word = |k: usize| match sig.get(k).map(|i| &tokens[*i].token) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
        _ => None,
    };
    if word(0).as_deref() != Some("alter") {
        return None;
    }
    match word(1).as_deref() {
        Some("cluster") => {
            if word(3).as_deref() != Some("shard") {
                return None;
            }
            match (word(2).as_deref(), sig.len()) {
                (Some("add"), 4) => Some("CALL sharddb_add_shard()".into()),
                (Some("remove"), 5) => match &tokens[sig[4]].token {
                    Token::Number(n, _) => Some(format!("CALL sharddb_remove_shard({n})")),
                    _ => None,
                },
                _ => None,
            }
        }
        Some("table") => {
            let name = match sig.get(2).map(|i| &tokens[*i].token) {
                Some(Token::Word(w)) if w.quote_style.is_some() => w.value.clone(),
                Some(Token::Word(w)) => w.value.to_lowercase(),
                _ => return None,
            };
            if word(3).as_deref() != Some("split") || word(4).as_deref() != Some("at") {
                return None;
            }
            let first = *sig.get(5)?;
            let last = *sig.last()?;
            let start = byte_offset(sql, &tokens[first].span.start)?;
            let end = match tokens.get(last + 1) {
                Some(t) => byte_offset(sql, &t.span.start)?,
                None => sql.len(),
            };
            let rest = sql.get(start..end)?;
            let name = name.replace('\'', "''");
            Some(format!("CALL sharddb_split_at('{name}', {rest})"))
        }
        _ => None,
    }
}

/// The byte offset of a tokenizer location (1-based line and character column).
fn byte_offset(sql: &str, loc: &sqlparser::tokenizer::Location) -> Option<usize> {
    let mut offset = 0;
    for (i, line) in sql.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == loc.line {
            let col = (loc.column as usize).checked_sub(1)?;
            return Some(offset + line.char_indices().nth(col).map_or(line.len(), |(b, _)| b));
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod placement_command_tests {
    use super::rewrite_placement_command as rw;

    #[test]
    fn rewrites_placement_commands() {
        assert_eq!(
            rw("alter cluster add shard;").unwrap(),
            "CALL sharddb_add_shard()"
        );
        assert_eq!(
            rw("ALTER CLUSTER\n REMOVE SHARD 3").unwrap(),
            "CALL sharddb_remove_shard(3)"
        );
        assert_eq!(
            rw("ALTER TABLE Events SPLIT AT ('2026-06-01'), ('a split €') ;").unwrap(),
            "CALL sharddb_split_at('events', ('2026-06-01'), ('a split €'))"
        );
        assert_eq!(
            rw("ALTER TABLE \"We'ird\"\nSPLIT\tAT (1) -- split AT (5)").unwrap(),
            "CALL sharddb_split_at('We''ird', (1))"
        );
        assert_eq!(
            rw("ALTER TABLE split SPLIT AT (1)").unwrap(),
            "CALL sharddb_split_at('split', (1))"
        );
        assert!(rw("ALTER TABLE t SPLIT AT (1); SELECT 1").is_none());
        assert!(rw("ALTER TABLE t ADD COLUMN x int").is_none());
        assert!(rw("ALTER CLUSTER ADD SHARD 5").is_none());
        assert!(rw("SELECT 1").is_none());
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

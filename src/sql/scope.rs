//! Name scopes for binding: which columns a query level can see, under which qualifiers.
//!
//! A [`Scope`] lists the columns of an operator's output row in position order. Lookups follow
//! PostgreSQL: an unqualified name must match exactly one visible column (else 42702 ambiguous);
//! a qualified name matches the column of that table alias. Columns merged by `JOIN ... USING`
//! stay reachable through their table qualifier only, and hidden columns (the generated row id)
//! never appear in `*`.

use crate::error::{SqlError, SqlResult, sqlstate};
use crate::types::DataType;

#[derive(Debug, Clone, PartialEq)]
pub struct ScopeColumn {
    /// Table name or alias the column can be qualified with.
    pub qualifier: Option<String>,
    pub name: String,
    pub ty: DataType,
    /// Not part of `*` expansion.
    pub hidden: bool,
    /// Only reachable as `qualifier.name` (the per-side copies of a USING column).
    pub qualified_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    pub columns: Vec<ScopeColumn>,
}

impl Scope {
    pub fn new(columns: Vec<ScopeColumn>) -> Scope {
        Scope { columns }
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    pub fn types(&self) -> Vec<DataType> {
        self.columns.iter().map(|c| c.ty).collect()
    }

    /// Concatenation for joins: `self` columns first.
    pub fn join(&self, other: &Scope) -> Scope {
        let mut columns = self.columns.clone();
        columns.extend(other.columns.iter().cloned());
        Scope { columns }
    }

    /// Re-qualifies every column (a derived table or view alias).
    pub fn with_qualifier(mut self, qualifier: &str) -> Scope {
        for c in &mut self.columns {
            c.qualifier = Some(qualifier.to_string());
        }
        self
    }

    /// Finds a column. `Ok(None)` when no column matches (the caller may try outer scopes).
    pub fn resolve(&self, qualifier: Option<&str>, name: &str) -> SqlResult<Option<usize>> {
        let mut found: Option<usize> = None;
        for (i, c) in self.columns.iter().enumerate() {
            let matches = match qualifier {
                Some(q) => c.qualifier.as_deref() == Some(q) && c.name == name,
                None => !c.qualified_only && c.name == name,
            };
            if matches {
                if found.is_some() {
                    let shown = match qualifier {
                        Some(q) => format!("{q}.{name}"),
                        None => name.to_string(),
                    };
                    return Err(SqlError::new(
                        sqlstate::AMBIGUOUS_COLUMN,
                        format!("column reference \"{shown}\" is ambiguous"),
                    ));
                }
                found = Some(i);
            }
        }
        Ok(found)
    }

    /// True if some column carries this qualifier.
    pub fn has_qualifier(&self, qualifier: &str) -> bool {
        self.columns
            .iter()
            .any(|c| c.qualifier.as_deref() == Some(qualifier))
    }
}

//! SQL data types and values.
//!
//! A [`Value`] is the runtime representation of one SQL datum. Values do not carry their SQL type:
//! the binder computes a [`DataType`] for every expression and column, and code that needs the
//! distinction (integer overflow width, `real` vs `double precision` output, `char(n)` padding)
//! gets it from there. This keeps values small and comparisons cheap.
//!
//! Representation invariants:
//! - all integer types (`smallint`, `integer`, `bigint`) are `Value::Int(i64)`, and a value is
//!   always within the range of the type the binder assigned to it;
//! - `real` values are `Value::Float` holding a number exactly representable as `f32`;
//! - `date` is days since 1970-01-01, `timestamp` is microseconds since 1970-01-01 00:00:00;
//! - `numeric` is an exact decimal (`rust_decimal`, 28 significant digits) whose scale is the
//!   display scale PostgreSQL would show.
//!
//! Submodules: [`format`] (text output), [`parse`] (text input), [`binary`] (binary wire format),
//! [`cast`] (conversions and type resolution), [`compare`] (ordering), [`arith`] (operators),
//! [`numeric`] (exact decimal arithmetic), [`datetime`] (calendar math), [`keycode`]
//! (order-preserving key encoding), [`row`] (row encoding).

pub mod arith;
pub mod binary;
pub mod cast;
pub mod compare;
pub mod datetime;
pub mod format;
pub mod keycode;
pub mod numeric;
pub mod parse;
pub mod row;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A SQL type as the binder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `numeric(precision, scale)`; `None` means unconstrained.
    Numeric(Option<(u32, u32)>),
    Text,
    /// `varchar(n)`; `None` means unlimited.
    Varchar(Option<u32>),
    /// `char(n)`, blank-padded to n.
    Char(u32),
    Bytea,
    Date,
    Timestamp,
    Uuid,
    /// The type of an untyped literal (`'abc'`, `NULL`) before context decides it.
    Unknown,
}

impl DataType {
    /// PostgreSQL type OID.
    pub fn oid(self) -> u32 {
        match self {
            DataType::Bool => 16,
            DataType::Bytea => 17,
            DataType::Int8 => 20,
            DataType::Int2 => 21,
            DataType::Int4 => 23,
            DataType::Text => 25,
            DataType::Float4 => 700,
            DataType::Float8 => 701,
            DataType::Unknown => 705,
            DataType::Char(_) => 1042,
            DataType::Varchar(_) => 1043,
            DataType::Date => 1082,
            DataType::Timestamp => 1114,
            DataType::Numeric(_) => 1700,
            DataType::Uuid => 2950,
        }
    }

    /// The name PostgreSQL uses in messages (`integer`, `character varying`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "boolean",
            DataType::Int2 => "smallint",
            DataType::Int4 => "integer",
            DataType::Int8 => "bigint",
            DataType::Float4 => "real",
            DataType::Float8 => "double precision",
            DataType::Numeric(_) => "numeric",
            DataType::Text => "text",
            DataType::Varchar(_) => "character varying",
            DataType::Char(_) => "character",
            DataType::Bytea => "bytea",
            DataType::Date => "date",
            DataType::Timestamp => "timestamp without time zone",
            DataType::Uuid => "uuid",
            DataType::Unknown => "unknown",
        }
    }

    /// `pg_type.typlen`: fixed width in bytes, or -1 for variable width.
    pub fn type_len(self) -> i16 {
        match self {
            DataType::Bool => 1,
            DataType::Int2 => 2,
            DataType::Int4 | DataType::Float4 | DataType::Date => 4,
            DataType::Int8 | DataType::Float8 | DataType::Timestamp => 8,
            DataType::Uuid => 16,
            DataType::Unknown => -2,
            _ => -1,
        }
    }

    /// `pg_attribute.atttypmod` for the type, -1 when it has none.
    pub fn type_modifier(self) -> i32 {
        match self {
            DataType::Numeric(Some((p, s))) => (((p << 16) | s) + 4) as i32,
            DataType::Varchar(Some(n)) | DataType::Char(n) => n as i32 + 4,
            _ => -1,
        }
    }

    pub fn is_integer(self) -> bool {
        matches!(self, DataType::Int2 | DataType::Int4 | DataType::Int8)
    }

    pub fn is_float(self) -> bool {
        matches!(self, DataType::Float4 | DataType::Float8)
    }

    pub fn is_numeric_family(self) -> bool {
        self.is_integer() || self.is_float() || matches!(self, DataType::Numeric(_))
    }

    pub fn is_string(self) -> bool {
        matches!(
            self,
            DataType::Text | DataType::Varchar(_) | DataType::Char(_)
        )
    }

    /// The type from a PostgreSQL OID, for parameter types sent by clients.
    pub fn from_oid(oid: u32) -> Option<DataType> {
        Some(match oid {
            16 => DataType::Bool,
            17 => DataType::Bytea,
            20 => DataType::Int8,
            21 => DataType::Int2,
            23 => DataType::Int4,
            25 => DataType::Text,
            700 => DataType::Float4,
            701 => DataType::Float8,
            705 | 0 => DataType::Unknown,
            1042 => DataType::Char(1),
            1043 => DataType::Varchar(None),
            1082 => DataType::Date,
            1114 => DataType::Timestamp,
            1700 => DataType::Numeric(None),
            2950 => DataType::Uuid,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataType::Numeric(Some((p, s))) => write!(f, "numeric({p},{s})"),
            DataType::Varchar(Some(n)) => write!(f, "character varying({n})"),
            DataType::Char(n) => write!(f, "character({n})"),
            other => f.write_str(other.name()),
        }
    }
}

/// One SQL datum. See the module docs for the representation invariants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Numeric(Decimal),
    Text(String),
    Bytea(Vec<u8>),
    Date(i32),
    Timestamp(i64),
    Uuid(uuid::Uuid),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// A row of values, in column order.
pub type Row = Vec<Value>;

//! The scalar function library: overload resolution and evaluation of built-in functions, plus
//! the LIKE matcher.
//!
//! Resolution follows PostgreSQL's function-call algorithm (`func_select_candidate`) over a
//! static signature table, so the same calls resolve to the same overloads: `round(2)` is
//! `round(double precision)` because `float8` is the preferred numeric type, `length('abc')` is
//! `length(text)` because an untyped literal prefers the string category, `mod(5, 2::int2)` is
//! `mod(integer, integer)` (most exact matches), and `to_hex(1::int2)` is ambiguous (42725).
//! Each overload is its own [`ScalarFunc`] variant, so evaluation never re-inspects types.
//!
//! Evaluation rules:
//! - every function is strict (NULL in → NULL out) except `concat` / `concat_ws`, which skip
//!   NULL arguments (and `concat_ws` is NULL only for a NULL separator);
//! - string functions count characters, never bytes, and never slice inside a character;
//! - results larger than PostgreSQL's 1 GB allocation limit fail with 54000 `requested length too
//!   large` before anything is allocated;
//! - `lower` / `upper` / `initcap` use Unicode case mapping (PostgreSQL with a UTF-8 locale);
//! - numeric transcendental functions are computed by [`crate::types::numeric`] with
//!   PostgreSQL's result-scale rules, limited to 28 fraction digits.
//!
//! `concat` and `concat_ws` take arguments of any type (PostgreSQL's `VARIADIC "any"`):
//! [`resolve`] leaves their types alone (untyped literals become text) and [`eval`] prints each
//! value with its output function. Values do not carry their type, so a `real` argument prints
//! with `double precision` digits unless the caller casts it to text first.
//!
//! `md5` is implemented here (RFC 1321).
//!
//! Snowflake ids (see [`crate::id::snowflake`] for the format: 41 bits of milliseconds since
//! 2026-01-01T00:00:00Z, 10 bits of node id, 12 bits of sequence):
//! - `snowflake_id() → bigint` makes a fresh id from the node's one generator, on every call
//!   (volatile: once per row, never folded, never shipped to a shard, where no generator is;
//!   [`crate::sql::expr::Expr::eval`] calls the generator in its [`EvalContext`]); it is also
//!   the default of `BIGSERIAL` / `SERIAL` columns;
//! - `snowflake_timestamp(bigint) → timestamp` is the id's creation time (UTC, millisecond
//!   precision, as `timestamp without time zone`);
//! - `snowflake_node(bigint) → integer` is the node id that made it.
//!
//! The two decoders are strict like every function (NULL → NULL) and reject negative numbers,
//! which are never Snowflake ids (22023).
//!
//! [`EvalContext`]: crate::sql::expr::EvalContext

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{SqlError, SqlResult, sqlstate};
use crate::types::arith::{ArithOp, eval_arith};
use crate::types::cast::{CastContext, can_coerce, check_int, float_overflow, float_underflow};
use crate::types::format::format_text;
use crate::types::numeric::{self, BigDec};
use crate::types::{DataType, Value};

/// One built-in function overload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScalarFunc {
    AbsInt2,
    AbsInt4,
    AbsInt8,
    AbsFloat4,
    AbsFloat8,
    AbsNumeric,
    RoundFloat8,
    RoundNumeric,
    RoundNumericScale,
    TruncFloat8,
    TruncNumeric,
    TruncNumericScale,
    CeilFloat8,
    CeilNumeric,
    FloorFloat8,
    FloorNumeric,
    SqrtFloat8,
    SqrtNumeric,
    CbrtFloat8,
    PowerFloat8,
    PowerNumeric,
    ExpFloat8,
    ExpNumeric,
    LnFloat8,
    LnNumeric,
    Log10Float8,
    Log10Numeric,
    LogNumericBase,
    ModInt2,
    ModInt4,
    ModInt8,
    ModNumeric,
    SignFloat8,
    SignNumeric,
    Pi,
    Degrees,
    Radians,
    /// `length(text)`, `char_length`, `character_length`.
    CharLength,
    /// The `character` overloads, which ignore trailing blanks.
    CharLengthBpchar,
    LengthBytea,
    OctetLength,
    OctetLengthBytea,
    Lower,
    Upper,
    Initcap,
    Substr,
    SubstrLen,
    SubstrBytea,
    SubstrByteaLen,
    Strpos,
    PositionBytea,
    Ltrim,
    LtrimChars,
    Rtrim,
    RtrimChars,
    Btrim,
    BtrimChars,
    LtrimBytea,
    RtrimBytea,
    BtrimBytea,
    Replace,
    Concat,
    ConcatWs,
    Left,
    Right,
    Lpad,
    LpadFill,
    Rpad,
    RpadFill,
    Repeat,
    Reverse,
    SplitPart,
    StartsWith,
    Md5,
    Md5Bytea,
    Chr,
    Ascii,
    ToHexInt4,
    ToHexInt8,
    GenRandomUuid,
    /// `snowflake_id()`: evaluated by [`crate::sql::expr::Expr::eval`], which holds the
    /// node's generator; [`eval`] cannot.
    SnowflakeId,
    SnowflakeTimestamp,
    SnowflakeNode,
    /// `substring(text, text [, text])` (POSIX / SQL regular expressions). Resolution picks it
    /// where PostgreSQL would, then reports it as not supported.
    SubstringRegex,
}

// ---------------------------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------------------------

/// Placeholder for "character of any length" in the signature table.
const BPCHAR: DataType = DataType::Char(0);
const NUMERIC: DataType = DataType::Numeric(None);

struct Sig {
    name: &'static str,
    args: &'static [DataType],
    ret: DataType,
    func: ScalarFunc,
}

macro_rules! sig {
    ($name:literal, [$($arg:expr),*], $ret:expr, $func:ident) => {
        Sig { name: $name, args: &[$($arg),*], ret: $ret, func: ScalarFunc::$func }
    };
}

use DataType::{Bool, Bytea, Float4, Float8, Int2, Int4, Int8, Text, Timestamp, Uuid};

static SIGNATURES: &[Sig] = &[
    sig!("abs", [Int2], Int2, AbsInt2),
    sig!("abs", [Int4], Int4, AbsInt4),
    sig!("abs", [Int8], Int8, AbsInt8),
    sig!("abs", [Float4], Float4, AbsFloat4),
    sig!("abs", [Float8], Float8, AbsFloat8),
    sig!("abs", [NUMERIC], NUMERIC, AbsNumeric),
    sig!("round", [Float8], Float8, RoundFloat8),
    sig!("round", [NUMERIC], NUMERIC, RoundNumeric),
    sig!("round", [NUMERIC, Int4], NUMERIC, RoundNumericScale),
    sig!("trunc", [Float8], Float8, TruncFloat8),
    sig!("trunc", [NUMERIC], NUMERIC, TruncNumeric),
    sig!("trunc", [NUMERIC, Int4], NUMERIC, TruncNumericScale),
    sig!("ceil", [Float8], Float8, CeilFloat8),
    sig!("ceil", [NUMERIC], NUMERIC, CeilNumeric),
    sig!("ceiling", [Float8], Float8, CeilFloat8),
    sig!("ceiling", [NUMERIC], NUMERIC, CeilNumeric),
    sig!("floor", [Float8], Float8, FloorFloat8),
    sig!("floor", [NUMERIC], NUMERIC, FloorNumeric),
    sig!("sqrt", [Float8], Float8, SqrtFloat8),
    sig!("sqrt", [NUMERIC], NUMERIC, SqrtNumeric),
    sig!("cbrt", [Float8], Float8, CbrtFloat8),
    sig!("power", [Float8, Float8], Float8, PowerFloat8),
    sig!("power", [NUMERIC, NUMERIC], NUMERIC, PowerNumeric),
    sig!("pow", [Float8, Float8], Float8, PowerFloat8),
    sig!("pow", [NUMERIC, NUMERIC], NUMERIC, PowerNumeric),
    sig!("exp", [Float8], Float8, ExpFloat8),
    sig!("exp", [NUMERIC], NUMERIC, ExpNumeric),
    sig!("ln", [Float8], Float8, LnFloat8),
    sig!("ln", [NUMERIC], NUMERIC, LnNumeric),
    sig!("log", [Float8], Float8, Log10Float8),
    sig!("log", [NUMERIC], NUMERIC, Log10Numeric),
    sig!("log", [NUMERIC, NUMERIC], NUMERIC, LogNumericBase),
    sig!("log10", [Float8], Float8, Log10Float8),
    sig!("log10", [NUMERIC], NUMERIC, Log10Numeric),
    sig!("mod", [Int2, Int2], Int2, ModInt2),
    sig!("mod", [Int4, Int4], Int4, ModInt4),
    sig!("mod", [Int8, Int8], Int8, ModInt8),
    sig!("mod", [NUMERIC, NUMERIC], NUMERIC, ModNumeric),
    sig!("sign", [Float8], Float8, SignFloat8),
    sig!("sign", [NUMERIC], NUMERIC, SignNumeric),
    sig!("pi", [], Float8, Pi),
    sig!("degrees", [Float8], Float8, Degrees),
    sig!("radians", [Float8], Float8, Radians),
    sig!("length", [Text], Int4, CharLength),
    sig!("length", [BPCHAR], Int4, CharLengthBpchar),
    sig!("length", [Bytea], Int4, LengthBytea),
    sig!("char_length", [Text], Int4, CharLength),
    sig!("char_length", [BPCHAR], Int4, CharLengthBpchar),
    sig!("character_length", [Text], Int4, CharLength),
    sig!("character_length", [BPCHAR], Int4, CharLengthBpchar),
    sig!("octet_length", [Text], Int4, OctetLength),
    sig!("octet_length", [BPCHAR], Int4, OctetLength),
    sig!("octet_length", [Bytea], Int4, OctetLengthBytea),
    sig!("lower", [Text], Text, Lower),
    sig!("upper", [Text], Text, Upper),
    sig!("initcap", [Text], Text, Initcap),
    sig!("substr", [Text, Int4], Text, Substr),
    sig!("substr", [Text, Int4, Int4], Text, SubstrLen),
    sig!("substr", [Bytea, Int4], Bytea, SubstrBytea),
    sig!("substr", [Bytea, Int4, Int4], Bytea, SubstrByteaLen),
    sig!("substring", [Text, Int4], Text, Substr),
    sig!("substring", [Text, Int4, Int4], Text, SubstrLen),
    sig!("substring", [Bytea, Int4], Bytea, SubstrBytea),
    sig!("substring", [Bytea, Int4, Int4], Bytea, SubstrByteaLen),
    sig!("substring", [Text, Text], Text, SubstringRegex),
    sig!("substring", [Text, Text, Text], Text, SubstringRegex),
    sig!("position", [Text, Text], Int4, Strpos),
    sig!("position", [Bytea, Bytea], Int4, PositionBytea),
    sig!("strpos", [Text, Text], Int4, Strpos),
    sig!("ltrim", [Text], Text, Ltrim),
    sig!("ltrim", [Text, Text], Text, LtrimChars),
    sig!("ltrim", [Bytea, Bytea], Bytea, LtrimBytea),
    sig!("rtrim", [Text], Text, Rtrim),
    sig!("rtrim", [Text, Text], Text, RtrimChars),
    sig!("rtrim", [Bytea, Bytea], Bytea, RtrimBytea),
    sig!("btrim", [Text], Text, Btrim),
    sig!("btrim", [Text, Text], Text, BtrimChars),
    sig!("btrim", [Bytea, Bytea], Bytea, BtrimBytea),
    sig!("replace", [Text, Text, Text], Text, Replace),
    sig!("left", [Text, Int4], Text, Left),
    sig!("right", [Text, Int4], Text, Right),
    sig!("lpad", [Text, Int4], Text, Lpad),
    sig!("lpad", [Text, Int4, Text], Text, LpadFill),
    sig!("rpad", [Text, Int4], Text, Rpad),
    sig!("rpad", [Text, Int4, Text], Text, RpadFill),
    sig!("repeat", [Text, Int4], Text, Repeat),
    sig!("reverse", [Text], Text, Reverse),
    sig!("split_part", [Text, Text, Int4], Text, SplitPart),
    sig!("starts_with", [Text, Text], Bool, StartsWith),
    sig!("md5", [Text], Text, Md5),
    sig!("md5", [Bytea], Text, Md5Bytea),
    sig!("chr", [Int4], Text, Chr),
    sig!("ascii", [Text], Int4, Ascii),
    sig!("to_hex", [Int4], Text, ToHexInt4),
    sig!("to_hex", [Int8], Text, ToHexInt8),
    sig!("gen_random_uuid", [], Uuid, GenRandomUuid),
    sig!("snowflake_id", [], Int8, SnowflakeId),
    sig!("snowflake_timestamp", [Int8], Timestamp, SnowflakeTimestamp),
    sig!("snowflake_node", [Int8], Int4, SnowflakeNode),
];

fn same_type(a: DataType, b: DataType) -> bool {
    crate::types::cast::base_type(a) == crate::types::cast::base_type(b)
}

/// Type category letters as in `pg_type.typcategory`, for the resolution heuristics.
fn category(t: DataType) -> char {
    match t {
        DataType::Bool => 'B',
        t if t.is_numeric_family() => 'N',
        t if t.is_string() => 'S',
        DataType::Date | DataType::Timestamp => 'D',
        DataType::Unknown => 'X',
        _ => 'U',
    }
}

fn is_preferred(t: DataType) -> bool {
    matches!(t, DataType::Float8 | DataType::Text | DataType::Bool)
}

fn signature_text(name: &str, args: &[DataType]) -> String {
    let names: Vec<&str> = args.iter().map(|t| t.name()).collect();
    format!("{name}({})", names.join(", "))
}

fn no_function(name: &str, args: &[DataType]) -> SqlError {
    SqlError::new(
        sqlstate::UNDEFINED_FUNCTION,
        format!("function {} does not exist", signature_text(name, args)),
    )
    .with_hint(
        "No function matches the given name and argument types. You might need to add explicit type casts.",
    )
}

fn ambiguous_function(name: &str, args: &[DataType]) -> SqlError {
    SqlError::new(
        "42725",
        format!("function {} is not unique", signature_text(name, args)),
    )
    .with_hint(
        "Could not choose a best candidate function. You might need to add explicit type casts.",
    )
}

/// PostgreSQL's heuristics for choosing among implicitly applicable candidates
/// (`func_select_candidate`). Returns `None` when the choice is ambiguous.
fn select_candidate<'a>(args: &[DataType], mut cands: Vec<&'a Sig>) -> Option<&'a Sig> {
    let keep_best = |cands: Vec<&'a Sig>, score: &dyn Fn(&Sig) -> usize| -> Vec<&'a Sig> {
        let best = cands.iter().map(|s| score(s)).max().unwrap_or(0);
        cands.into_iter().filter(|s| score(s) == best).collect()
    };
    // Most exact matches.
    cands = keep_best(cands, &|s: &Sig| {
        args.iter()
            .zip(s.args)
            .filter(|(a, c)| **a != DataType::Unknown && same_type(**a, **c))
            .count()
    });
    if cands.len() == 1 {
        return cands.pop();
    }
    // Most positions taking an exact match or the preferred type of the input's category.
    cands = keep_best(cands, &|s: &Sig| {
        args.iter()
            .zip(s.args)
            .filter(|(a, c)| {
                **a != DataType::Unknown
                    && (same_type(**a, **c)
                        || (is_preferred(**c) && category(**a) == category(**c)))
            })
            .count()
    });
    if cands.len() == 1 {
        return cands.pop();
    }
    // Unknown arguments: prefer the string category, else the single category on offer, and
    // within it the preferred type.
    if args.contains(&DataType::Unknown) {
        let mut filtered = cands.clone();
        let mut resolved = true;
        for (i, _) in args
            .iter()
            .enumerate()
            .filter(|(_, a)| **a == DataType::Unknown)
        {
            let cats: Vec<char> = filtered.iter().map(|s| category(s.args[i])).collect();
            let cat = if cats.contains(&'S') {
                'S'
            } else if cats.windows(2).all(|w| w[0] == w[1]) && !cats.is_empty() {
                cats[0]
            } else {
                resolved = false;
                break;
            };
            filtered.retain(|s| category(s.args[i]) == cat);
            if filtered.iter().any(|s| is_preferred(s.args[i])) {
                filtered.retain(|s| is_preferred(s.args[i]));
            }
        }
        if resolved && !filtered.is_empty() {
            cands = filtered;
        }
        if cands.len() == 1 {
            return cands.pop();
        }
        // Unknowns take the type shared by all known arguments, if there is one.
        let known: Vec<DataType> = args
            .iter()
            .copied()
            .filter(|a| *a != DataType::Unknown)
            .collect();
        if let Some(&first) = known.first()
            && known.iter().all(|k| same_type(*k, first))
        {
            let fitting: Vec<&Sig> = cands
                .iter()
                .copied()
                .filter(|s| {
                    args.iter().zip(s.args).all(|(a, c)| {
                        *a != DataType::Unknown || can_coerce(first, *c, CastContext::Implicit)
                    })
                })
                .collect();
            if fitting.len() == 1 {
                return fitting.into_iter().next();
            }
        }
    }
    None
}

/// Resolves a function call: the overload, the type each argument must be coerced to, and the
/// result type. `name` must already be lowercased.
pub fn resolve(name: &str, args: &[DataType]) -> SqlResult<(ScalarFunc, Vec<DataType>, DataType)> {
    match name {
        // VARIADIC "any": arguments keep their types (untyped literals become text) and are
        // printed with their output functions at evaluation time.
        "concat" if !args.is_empty() => {
            return Ok((ScalarFunc::Concat, any_args(args), Text));
        }
        "concat_ws" if args.len() >= 2 && can_coerce(args[0], Text, CastContext::Implicit) => {
            let mut coerce = any_args(args);
            coerce[0] = Text;
            return Ok((ScalarFunc::ConcatWs, coerce, Text));
        }
        _ => {}
    }
    let by_name: Vec<&Sig> = SIGNATURES
        .iter()
        .filter(|s| s.name == name && s.args.len() == args.len())
        .collect();
    let exact = by_name
        .iter()
        .find(|s| args.iter().zip(s.args).all(|(a, c)| same_type(*a, *c)));
    let chosen = match exact {
        Some(s) => *s,
        None => {
            let applicable: Vec<&Sig> = by_name
                .into_iter()
                .filter(|s| {
                    args.iter()
                        .zip(s.args)
                        .all(|(a, c)| can_coerce(*a, *c, CastContext::Implicit))
                })
                .collect();
            match applicable.len() {
                0 => return Err(no_function(name, args)),
                1 => applicable[0],
                _ => select_candidate(args, applicable)
                    .ok_or_else(|| ambiguous_function(name, args))?,
            }
        }
    };
    if chosen.func == ScalarFunc::SubstringRegex {
        return Err(regex_unsupported());
    }
    let coerce: Vec<DataType> = args
        .iter()
        .zip(chosen.args)
        .map(|(a, c)| match (*a, *c) {
            // A `character` parameter keeps the argument's own length.
            (DataType::Char(n), DataType::Char(0)) => DataType::Char(n),
            (_, DataType::Char(0)) => DataType::Char(1),
            (_, c) => c,
        })
        .collect();
    Ok((chosen.func, coerce, chosen.ret))
}

fn any_args(args: &[DataType]) -> Vec<DataType> {
    args.iter()
        .map(|a| if *a == DataType::Unknown { Text } else { *a })
        .collect()
}

fn regex_unsupported() -> SqlError {
    SqlError::unsupported("substring with a regular expression")
}

/// Whether the function must be re-evaluated for every row (never constant-folded).
pub fn is_volatile(func: ScalarFunc) -> bool {
    matches!(func, ScalarFunc::GenRandomUuid | ScalarFunc::SnowflakeId)
}

/// Whether the function needs the node's state (its Snowflake generator), so an expression
/// calling it must run at the coordinator, not be shipped to a shard.
pub fn runs_at_coordinator(func: ScalarFunc) -> bool {
    matches!(func, ScalarFunc::SnowflakeId)
}

/// The id's parts, or 22023 for a negative number (no Snowflake id is negative).
fn snowflake_parts(id: i64) -> SqlResult<crate::id::SnowflakeParts> {
    crate::id::snowflake::decode(id).ok_or_else(|| {
        SqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("{id} is not a Snowflake id"),
        )
        .with_detail("Snowflake ids are positive: the sign bit is always 0.")
    })
}

// ---------------------------------------------------------------------------------------------
// Evaluation helpers
// ---------------------------------------------------------------------------------------------

/// PostgreSQL's MaxAllocSize: no single value may reach 1 GB.
const MAX_ALLOC: usize = 0x3fff_ffff;

fn too_large() -> SqlError {
    SqlError::new(
        sqlstate::PROGRAM_LIMIT_EXCEEDED,
        "requested length too large",
    )
}

fn arg_error(func: ScalarFunc, args: &[Value]) -> SqlError {
    SqlError::internal(format!(
        "function {func:?} called with unexpected arguments {args:?}"
    ))
}

fn text_arg(v: &Value) -> Option<&str> {
    match v {
        Value::Text(s) => Some(s),
        _ => None,
    }
}

fn int_arg(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn float_arg(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        Value::Numeric(d) => Some(crate::types::cast::numeric_to_f64(d)),
        _ => None,
    }
}

fn dec_arg(v: &Value) -> Option<BigDec> {
    match v {
        Value::Numeric(d) => Some(BigDec::from_decimal(d)),
        Value::Int(i) => Some(BigDec::from_i64(*i)),
        _ => None,
    }
}

fn bytes_arg(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Bytea(b) => Some(b),
        _ => None,
    }
}

/// Byte offset of the `n`-th character (or the string length if there are fewer).
fn char_offset(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

/// PostgreSQL's substring bounds: 1-based `start`, optional `len` (negative is an error).
/// Returns the 0-based half-open range clipped to `total`.
fn substring_range(start: i64, len: Option<i64>, total: usize) -> SqlResult<(usize, usize)> {
    let end = match len {
        Some(l) if l < 0 => {
            return Err(SqlError::new(
                "22011",
                "negative substring length not allowed",
            ));
        }
        Some(l) => start.saturating_add(l),
        None => i64::MAX,
    };
    let from = start.max(1);
    if end <= from {
        return Ok((0, 0));
    }
    let clip = |v: i64| (v - 1).clamp(0, total as i64) as usize;
    Ok((clip(from), clip(end)))
}

fn substr_text(s: &str, start: i64, len: Option<i64>) -> SqlResult<String> {
    let total = s.chars().count();
    let (a, b) = substring_range(start, len, total)?;
    Ok(s.chars().skip(a).take(b - a).collect())
}

fn substr_bytes(s: &[u8], start: i64, len: Option<i64>) -> SqlResult<Vec<u8>> {
    let (a, b) = substring_range(start, len, s.len())?;
    Ok(s[a..b].to_vec())
}

fn strpos(s: &str, sub: &str) -> i64 {
    match s.find(sub) {
        Some(byte) => s[..byte].chars().count() as i64 + 1,
        None => 0,
    }
}

fn position_bytes(s: &[u8], sub: &[u8]) -> i64 {
    if sub.is_empty() {
        return 1;
    }
    s.windows(sub.len())
        .position(|w| w == sub)
        .map_or(0, |p| p as i64 + 1)
}

fn trim_text(s: &str, chars: &str, left: bool, right: bool) -> String {
    let set: Vec<char> = chars.chars().collect();
    let is_trim = |c: char| set.contains(&c);
    let mut t = s;
    if left {
        t = t.trim_start_matches(is_trim);
    }
    if right {
        t = t.trim_end_matches(is_trim);
    }
    t.to_string()
}

fn trim_bytes(s: &[u8], set: &[u8], left: bool, right: bool) -> Vec<u8> {
    let mut a = 0;
    let mut b = s.len();
    if left {
        while a < b && set.contains(&s[a]) {
            a += 1;
        }
    }
    if right {
        while b > a && set.contains(&s[b - 1]) {
            b -= 1;
        }
    }
    s[a..b].to_vec()
}

/// PostgreSQL maps case one character at a time (`towupper`), so a character whose full Unicode
/// mapping is several characters (`ß` → `SS`) is left unchanged rather than expanded.
fn case_char(c: char, upper: bool) -> char {
    let mut it: Box<dyn Iterator<Item = char>> = if upper {
        Box::new(c.to_uppercase())
    } else {
        Box::new(c.to_lowercase())
    };
    match (it.next(), it.next()) {
        (Some(m), None) => m,
        _ => c,
    }
}

fn map_case(s: &str, upper: bool) -> String {
    if s.is_ascii() {
        return if upper {
            s.to_ascii_uppercase()
        } else {
            s.to_ascii_lowercase()
        };
    }
    s.chars().map(|c| case_char(c, upper)).collect()
}

fn initcap(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_word = false;
    for c in s.chars() {
        out.push(case_char(c, !in_word));
        in_word = c.is_alphanumeric();
    }
    out
}

fn left(s: &str, n: i64) -> String {
    let total = s.chars().count() as i64;
    let keep = if n >= 0 {
        n
    } else {
        total.saturating_add(n).max(0)
    };
    s[..char_offset(s, keep.min(total) as usize)].to_string()
}

fn right(s: &str, n: i64) -> String {
    let total = s.chars().count() as i64;
    // PostgreSQL negates n in 32-bit arithmetic, so i32::MIN wraps around and keeps everything.
    if n == i32::MIN as i64 {
        return s.to_string();
    }
    let skip = if n >= 0 {
        (total - n).max(0)
    } else {
        n.saturating_neg().min(total)
    };
    s[char_offset(s, skip as usize)..].to_string()
}

fn pad(s: &str, len: i64, fill: &str, left_side: bool) -> SqlResult<String> {
    if len <= 0 {
        return Ok(String::new());
    }
    let len = len as usize;
    let have = s.chars().count();
    if have >= len {
        return Ok(s[..char_offset(s, len)].to_string());
    }
    if fill.is_empty() {
        return Ok(s.to_string());
    }
    let need = len - have;
    let fill_chars: Vec<char> = fill.chars().collect();
    let max_fill_bytes = fill_chars.iter().map(|c| c.len_utf8()).max().unwrap_or(1);
    if need.saturating_mul(max_fill_bytes).saturating_add(s.len()) > MAX_ALLOC {
        return Err(too_large());
    }
    let padding: String = fill_chars.iter().cycle().take(need).collect();
    Ok(if left_side {
        padding + s
    } else {
        let mut out = s.to_string();
        out.push_str(&padding);
        out
    })
}

fn repeat(s: &str, n: i64) -> SqlResult<String> {
    if n <= 0 || s.is_empty() {
        return Ok(String::new());
    }
    match (n as usize).checked_mul(s.len()) {
        Some(total) if total <= MAX_ALLOC => Ok(s.repeat(n as usize)),
        _ => Err(too_large()),
    }
}

fn split_part(s: &str, delim: &str, n: i64) -> SqlResult<String> {
    if n == 0 {
        return Err(SqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            "field position must not be zero",
        ));
    }
    if s.is_empty() {
        return Ok(String::new());
    }
    if delim.is_empty() {
        return Ok(if n == 1 || n == -1 {
            s.to_string()
        } else {
            String::new()
        });
    }
    let parts: Vec<&str> = s.split(delim).collect();
    let idx = if n > 0 {
        usize::try_from(n - 1).ok()
    } else {
        (parts.len() as i64)
            .checked_add(n)
            .and_then(|i| usize::try_from(i).ok())
    };
    Ok(idx
        .and_then(|i| parts.get(i))
        .map_or_else(String::new, |p| p.to_string()))
}

fn chr(n: i64) -> SqlResult<String> {
    if n < 0 {
        return Err(SqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            "character number must be positive",
        ));
    }
    if n == 0 {
        return Err(SqlError::new(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            "null character not permitted",
        ));
    }
    if n > 0x10ffff {
        return Err(SqlError::new(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!("requested character too large for encoding: {n}"),
        ));
    }
    char::from_u32(n as u32)
        .map(|c| c.to_string())
        .ok_or_else(|| {
            SqlError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("requested character not valid for encoding: {n}"),
            )
        })
}

/// Text output of a `concat` argument. The binder normally converts arguments to text already;
/// this keeps raw values printable too.
fn concat_piece(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.clone()),
        other => format_text(other, DataType::Unknown),
    }
}

fn neg_sqrt() -> SqlError {
    SqlError::new(
        sqlstate::INVALID_ARGUMENT_FOR_POWER,
        "cannot take square root of a negative number",
    )
}

fn log_domain(x: f64) -> SqlResult<()> {
    if x == 0.0 {
        return Err(SqlError::new(
            sqlstate::INVALID_ARGUMENT_FOR_LOG,
            "cannot take logarithm of zero",
        ));
    }
    if x < 0.0 {
        return Err(SqlError::new(
            sqlstate::INVALID_ARGUMENT_FOR_LOG,
            "cannot take logarithm of a negative number",
        ));
    }
    Ok(())
}

/// PostgreSQL's `check_float8_val`: infinity / zero results are errors unless the inputs
/// explain them.
fn check_float(r: f64, inf_ok: bool, zero_ok: bool) -> SqlResult<f64> {
    if r.is_infinite() && !inf_ok {
        return Err(float_overflow());
    }
    if r == 0.0 && !zero_ok {
        return Err(float_underflow());
    }
    Ok(r)
}

/// PostgreSQL's `dpow`, including its explicit NaN and infinity rules.
fn float_power(x: f64, y: f64) -> SqlResult<f64> {
    if x.is_nan() {
        return Ok(if y.is_nan() || y != 0.0 {
            f64::NAN
        } else {
            1.0
        });
    }
    if y.is_nan() {
        return Ok(if x != 1.0 { f64::NAN } else { 1.0 });
    }
    if x == 0.0 && y < 0.0 {
        return Err(SqlError::new(
            sqlstate::INVALID_ARGUMENT_FOR_POWER,
            "zero raised to a negative power is undefined",
        ));
    }
    if x < 0.0 && y.floor() != y {
        return Err(SqlError::new(
            sqlstate::INVALID_ARGUMENT_FOR_POWER,
            "a negative number raised to a non-integer power yields a complex result",
        ));
    }
    if y.is_infinite() {
        let ax = x.abs();
        return Ok(if ax == 1.0 {
            1.0
        } else if y > 0.0 {
            if ax > 1.0 { y } else { 0.0 }
        } else if ax > 1.0 {
            0.0
        } else {
            -y
        });
    }
    if x.is_infinite() {
        if y == 0.0 {
            return Ok(1.0);
        }
        if x > 0.0 {
            return Ok(if y > 0.0 { x } else { 0.0 });
        }
        let half = y / 2.0;
        let odd_integer = y.floor() == y && half.floor() != half;
        return Ok(if y > 0.0 {
            if odd_integer { x } else { -x }
        } else if odd_integer {
            -0.0
        } else {
            0.0
        });
    }
    let r = x.powf(y);
    check_float(r, false, x == 0.0)
}

fn float_exp(x: f64) -> SqlResult<f64> {
    if x.is_nan() {
        return Ok(x);
    }
    if x.is_infinite() {
        return Ok(if x > 0.0 { x } else { 0.0 });
    }
    check_float(x.exp(), false, false)
}

/// `round(numeric, n)` / `trunc(numeric, n)`: n may be negative (round to tens, hundreds...).
fn round_numeric(d: &BigDec, places: i64, truncate: bool) -> SqlResult<Decimal> {
    let places = places.clamp(-100, numeric::MAX_SCALE as i64);
    if places >= 0 {
        let p = places as u32;
        let r = if truncate {
            d.truncated(p)
        } else {
            d.with_scale(p)
        };
        return r.to_decimal();
    }
    let shift = (-places) as u32;
    // Move the rounding position to the units digit, round there, then scale back up.
    let moved = BigDec::new(d.neg, d.mag.clone(), d.scale + shift);
    let r = if truncate {
        moved.truncated(0)
    } else {
        moved.with_scale(0)
    };
    BigDec::new(r.neg, r.mag, 0)
        .with_scale(0)
        .mul(&pow10_dec(shift))
        .to_decimal()
}

fn pow10_dec(k: u32) -> BigDec {
    BigDec::new(false, numeric::BigUint::pow10(k), 0)
}

fn numeric_sign(d: &BigDec) -> Decimal {
    if d.is_zero() {
        Decimal::ZERO
    } else if d.neg {
        Decimal::NEGATIVE_ONE
    } else {
        Decimal::ONE
    }
}

fn abs_int(v: i64, ty: DataType) -> SqlResult<Value> {
    v.checked_abs()
        .ok_or_else(|| crate::types::cast::int_out_of_range(ty))
        .and_then(|a| check_int(a, ty))
        .map(Value::Int)
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// Evaluates `func` on arguments already coerced to the types [`resolve`] returned.
pub fn eval(func: ScalarFunc, args: &[Value]) -> SqlResult<Value> {
    use ScalarFunc as F;
    match func {
        F::Concat => {
            let mut out = String::new();
            for piece in args.iter().filter_map(concat_piece) {
                out.push_str(&piece);
                if out.len() > MAX_ALLOC {
                    return Err(too_large());
                }
            }
            return Ok(Value::Text(out));
        }
        F::ConcatWs => {
            let Some(sep) = args.first().and_then(concat_piece) else {
                return Ok(Value::Null);
            };
            let pieces: Vec<String> = args[1..].iter().filter_map(concat_piece).collect();
            let total: usize = pieces.iter().map(String::len).sum::<usize>()
                + sep.len() * pieces.len().saturating_sub(1);
            if total > MAX_ALLOC {
                return Err(too_large());
            }
            return Ok(Value::Text(pieces.join(&sep)));
        }
        _ => {}
    }
    if args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    let bad = || arg_error(func, args);
    let t = |i: usize| args.get(i).and_then(text_arg).ok_or_else(bad);
    let int = |i: usize| args.get(i).and_then(int_arg).ok_or_else(bad);
    let fl = |i: usize| args.get(i).and_then(float_arg).ok_or_else(bad);
    let dec = |i: usize| args.get(i).and_then(dec_arg).ok_or_else(bad);
    let by = |i: usize| args.get(i).and_then(bytes_arg).ok_or_else(bad);
    let text = |s: String| Ok(Value::Text(s));
    let float = |f: f64| Ok(Value::Float(f));
    let numeric = |d: SqlResult<Decimal>| d.map(Value::Numeric);
    match func {
        F::AbsInt2 => abs_int(int(0)?, Int2),
        F::AbsInt4 => abs_int(int(0)?, Int4),
        F::AbsInt8 => abs_int(int(0)?, Int8),
        F::AbsFloat4 | F::AbsFloat8 => float(fl(0)?.abs()),
        F::AbsNumeric => {
            let d = dec(0)?;
            numeric(BigDec::new(false, d.mag, d.scale).to_decimal())
        }
        F::RoundFloat8 => float(fl(0)?.round_ties_even()),
        F::RoundNumeric => numeric(round_numeric(&dec(0)?, 0, false)),
        F::RoundNumericScale => numeric(round_numeric(&dec(0)?, int(1)?, false)),
        F::TruncFloat8 => float(fl(0)?.trunc()),
        F::TruncNumeric => numeric(round_numeric(&dec(0)?, 0, true)),
        F::TruncNumericScale => numeric(round_numeric(&dec(0)?, int(1)?, true)),
        F::CeilFloat8 => float(fl(0)?.ceil()),
        F::FloorFloat8 => float(fl(0)?.floor()),
        F::CeilNumeric | F::FloorNumeric => {
            let d = dec(0)?;
            let tr = d.truncated(0);
            let has_frac = tr.cmp_value(&d) != std::cmp::Ordering::Equal;
            let adjust = match func {
                F::CeilNumeric => has_frac && !d.neg,
                _ => has_frac && d.neg,
            };
            let r = if adjust {
                let one = BigDec::from_i64(if d.neg { -1 } else { 1 });
                tr.add(&one)
            } else {
                tr
            };
            numeric(r.to_decimal())
        }
        F::SqrtFloat8 => {
            let x = fl(0)?;
            if x < 0.0 {
                return Err(neg_sqrt());
            }
            float(x.sqrt())
        }
        F::SqrtNumeric => numeric(numeric::sqrt(&dec(0)?)?.to_decimal()),
        F::CbrtFloat8 => float(fl(0)?.cbrt()),
        F::PowerFloat8 => float(float_power(fl(0)?, fl(1)?)?),
        F::PowerNumeric => numeric(numeric::power(&dec(0)?, &dec(1)?)?.to_decimal()),
        F::ExpFloat8 => float(float_exp(fl(0)?)?),
        F::ExpNumeric => numeric(numeric::exp(&dec(0)?)?.to_decimal()),
        F::LnFloat8 | F::Log10Float8 => {
            let x = fl(0)?;
            log_domain(x)?;
            let r = if func == F::LnFloat8 {
                x.ln()
            } else {
                x.log10()
            };
            float(check_float(r, x.is_infinite(), x == 1.0)?)
        }
        F::LnNumeric => numeric(numeric::ln(&dec(0)?)?.to_decimal()),
        F::Log10Numeric => numeric(numeric::log(&BigDec::from_i64(10), &dec(0)?)?.to_decimal()),
        F::LogNumericBase => numeric(numeric::log(&dec(0)?, &dec(1)?)?.to_decimal()),
        F::ModInt2 => eval_arith(ArithOp::Mod, &args[0], &args[1], Int2),
        F::ModInt4 => eval_arith(ArithOp::Mod, &args[0], &args[1], Int4),
        F::ModInt8 => eval_arith(ArithOp::Mod, &args[0], &args[1], Int8),
        F::ModNumeric => eval_arith(ArithOp::Mod, &args[0], &args[1], NUMERIC),
        F::SignFloat8 => {
            let x = fl(0)?;
            float(if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            })
        }
        F::SignNumeric => Ok(Value::Numeric(numeric_sign(&dec(0)?))),
        F::Pi => float(std::f64::consts::PI),
        F::Degrees => {
            let x = fl(0)?;
            let r = x / RADIANS_PER_DEGREE;
            float(check_float(r, x.is_infinite(), x == 0.0)?)
        }
        F::Radians => {
            let x = fl(0)?;
            let r = x * RADIANS_PER_DEGREE;
            float(check_float(r, x.is_infinite(), x == 0.0)?)
        }
        F::CharLength => Ok(Value::Int(t(0)?.chars().count() as i64)),
        F::CharLengthBpchar => Ok(Value::Int(
            t(0)?.trim_end_matches(' ').chars().count() as i64
        )),
        F::LengthBytea | F::OctetLengthBytea => Ok(Value::Int(by(0)?.len() as i64)),
        F::OctetLength => Ok(Value::Int(t(0)?.len() as i64)),
        F::Lower => text(map_case(t(0)?, false)),
        F::Upper => text(map_case(t(0)?, true)),
        F::Initcap => text(initcap(t(0)?)),
        F::Substr => text(substr_text(t(0)?, int(1)?, None)?),
        F::SubstrLen => text(substr_text(t(0)?, int(1)?, Some(int(2)?))?),
        F::SubstrBytea => Ok(Value::Bytea(substr_bytes(by(0)?, int(1)?, None)?)),
        F::SubstrByteaLen => Ok(Value::Bytea(substr_bytes(by(0)?, int(1)?, Some(int(2)?))?)),
        F::Strpos => Ok(Value::Int(strpos(t(0)?, t(1)?))),
        F::PositionBytea => Ok(Value::Int(position_bytes(by(0)?, by(1)?))),
        F::Ltrim => text(trim_text(t(0)?, " ", true, false)),
        F::Rtrim => text(trim_text(t(0)?, " ", false, true)),
        F::Btrim => text(trim_text(t(0)?, " ", true, true)),
        F::LtrimChars => text(trim_text(t(0)?, t(1)?, true, false)),
        F::RtrimChars => text(trim_text(t(0)?, t(1)?, false, true)),
        F::BtrimChars => text(trim_text(t(0)?, t(1)?, true, true)),
        F::LtrimBytea => Ok(Value::Bytea(trim_bytes(by(0)?, by(1)?, true, false))),
        F::RtrimBytea => Ok(Value::Bytea(trim_bytes(by(0)?, by(1)?, false, true))),
        F::BtrimBytea => Ok(Value::Bytea(trim_bytes(by(0)?, by(1)?, true, true))),
        F::Replace => {
            let (s, from, to) = (t(0)?, t(1)?, t(2)?);
            if from.is_empty() {
                return text(s.to_string());
            }
            let count = s.matches(from).count();
            let size = s.len() - count * from.len() + count.saturating_mul(to.len());
            if size > MAX_ALLOC {
                return Err(too_large());
            }
            text(s.replace(from, to))
        }
        F::Left => text(left(t(0)?, int(1)?)),
        F::Right => text(right(t(0)?, int(1)?)),
        F::Lpad => text(pad(t(0)?, int(1)?, " ", true)?),
        F::LpadFill => text(pad(t(0)?, int(1)?, t(2)?, true)?),
        F::Rpad => text(pad(t(0)?, int(1)?, " ", false)?),
        F::RpadFill => text(pad(t(0)?, int(1)?, t(2)?, false)?),
        F::Repeat => text(repeat(t(0)?, int(1)?)?),
        F::Reverse => text(t(0)?.chars().rev().collect()),
        F::SplitPart => text(split_part(t(0)?, t(1)?, int(2)?)?),
        F::StartsWith => Ok(Value::Bool(t(0)?.starts_with(t(1)?))),
        F::Md5 => text(md5_hex(t(0)?.as_bytes())),
        F::Md5Bytea => text(md5_hex(by(0)?)),
        F::Chr => text(chr(int(0)?)?),
        F::Ascii => Ok(Value::Int(t(0)?.chars().next().map_or(0, |c| c as i64))),
        F::ToHexInt4 => text(format!("{:x}", int(0)? as i32 as u32)),
        F::ToHexInt8 => text(format!("{:x}", int(0)? as u64)),
        F::GenRandomUuid => Ok(Value::Uuid(uuid::Uuid::new_v4())),
        F::SnowflakeId => Err(SqlError::internal(
            "snowflake_id() evaluated without the node's id generator",
        )),
        // At most 2^41 ms after 2026, so the microseconds fit an i64 many times over.
        F::SnowflakeTimestamp => Ok(Value::Timestamp(
            snowflake_parts(int(0)?)?.unix_ms as i64 * 1000,
        )),
        F::SnowflakeNode => Ok(Value::Int(i64::from(snowflake_parts(int(0)?)?.node))),
        F::SubstringRegex => Err(regex_unsupported()),
        F::Concat | F::ConcatWs => Err(bad()),
    }
}

/// PostgreSQL's RADIANS_PER_DEGREE.
const RADIANS_PER_DEGREE: f64 = 0.017_453_292_519_943_295;

// ---------------------------------------------------------------------------------------------
// LIKE
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum LikeToken {
    Lit(char),
    One,
    Many,
    /// An escape character with nothing after it; an error only if matching reaches it, which
    /// is when PostgreSQL reports it too.
    DanglingEscape,
}

fn like_tokens(pattern: &str, escape: Option<char>, lower: bool) -> Vec<LikeToken> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    let push_lit = |out: &mut Vec<LikeToken>, c: char| {
        if lower {
            out.extend(c.to_lowercase().map(LikeToken::Lit));
        } else {
            out.push(LikeToken::Lit(c));
        }
    };
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            match chars.next() {
                Some(e) => push_lit(&mut out, e),
                None => out.push(LikeToken::DanglingEscape),
            }
        } else if c == '%' {
            // Runs of % are equivalent to one.
            if out.last() != Some(&LikeToken::Many) {
                out.push(LikeToken::Many);
            }
        } else if c == '_' {
            out.push(LikeToken::One);
        } else {
            push_lit(&mut out, c);
        }
    }
    out
}

fn dangling_escape() -> SqlError {
    SqlError::new(
        sqlstate::INVALID_ESCAPE_SEQUENCE,
        "LIKE pattern must not end with escape character",
    )
}

fn like_tokens_match(s: &[char], p: &[LikeToken]) -> SqlResult<bool> {
    // Greedy matching with a single backtrack point (the last %): O(len(s) · len(p)), no
    // exponential blow-up on patterns like '%a%a%a%...b'.
    let (mut si, mut pi) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(LikeToken::DanglingEscape) => return Err(dangling_escape()),
            Some(LikeToken::One) => {
                si += 1;
                pi += 1;
                continue;
            }
            Some(LikeToken::Lit(c)) if *c == s[si] => {
                si += 1;
                pi += 1;
                continue;
            }
            Some(LikeToken::Many) => {
                if p.get(pi + 1) == Some(&LikeToken::DanglingEscape) {
                    return Err(dangling_escape());
                }
                pi += 1;
                backtrack = Some((pi, si));
                continue;
            }
            _ => {}
        }
        match backtrack {
            Some((bp, bs)) => {
                pi = bp;
                si = bs + 1;
                backtrack = Some((bp, bs + 1));
            }
            None => return Ok(false),
        }
    }
    Ok(p[pi..].iter().all(|t| *t == LikeToken::Many))
}

/// `s LIKE pattern [ESCAPE escape]` (`ILIKE` when `case_insensitive`).
///
/// `escape` is the escape character: callers pass `Some('\\')` when the query has no ESCAPE
/// clause (PostgreSQL's default) and `None` for `ESCAPE ''`, which disables escaping.
pub fn like_match(
    s: &str,
    pattern: &str,
    escape: Option<char>,
    case_insensitive: bool,
) -> SqlResult<bool> {
    let tokens = like_tokens(pattern, escape, case_insensitive);
    let chars: Vec<char> = if case_insensitive {
        s.chars().flat_map(char::to_lowercase).collect()
    } else {
        s.chars().collect()
    };
    like_tokens_match(&chars, &tokens)
}

// ---------------------------------------------------------------------------------------------
// MD5 (RFC 1321)
// ---------------------------------------------------------------------------------------------

fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // K[i] = floor(2^32 · |sin(i + 1)|), computed once rather than tabulated.
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut state: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks_exact(64) {
        let m: Vec<u32> = chunk
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = state;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let rotated = a
                .wrapping_add(f)
                .wrapping_add(k[i])
                .wrapping_add(m[g])
                .rotate_left(S[i]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(rotated);
        }
        state[0] = state[0].wrapping_add(a);
        state[1] = state[1].wrapping_add(b);
        state[2] = state[2].wrapping_add(c);
        state[3] = state[3].wrapping_add(d);
    }
    state
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType as T;

    fn r(name: &str, args: &[T]) -> SqlResult<(ScalarFunc, Vec<T>, T)> {
        resolve(name, args)
    }
    fn ret(name: &str, args: &[T]) -> T {
        r(name, args).unwrap().2
    }
    fn txt(s: &str) -> Value {
        Value::Text(s.into())
    }
    fn num(s: &str) -> Value {
        Value::Numeric(s.parse().unwrap())
    }
    fn ev(f: ScalarFunc, args: &[Value]) -> SqlResult<Value> {
        eval(f, args)
    }
    fn s(f: ScalarFunc, args: &[Value]) -> String {
        match ev(f, args).unwrap() {
            Value::Text(s) => s,
            Value::Numeric(d) => crate::types::format::format_numeric(&d),
            Value::Float(x) => crate::types::format::format_float8(x),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Bytea(b) => crate::types::format::format_bytea(&b),
            other => format!("{other:?}"),
        }
    }
    use ScalarFunc as F;

    #[test]
    fn resolution_matches_postgres() {
        // select pg_typeof(sqrt(2)), pg_typeof(round(2)), pg_typeof(round(2, 1)),
        //   pg_typeof(abs(2::int2)), pg_typeof(trunc(2)), pg_typeof(ceil(2)), pg_typeof(log(2)),
        //   pg_typeof(power(2, 3)), pg_typeof(mod(5, 2::int2)), pg_typeof(mod(5::int2, 2::int2)),
        //   pg_typeof(sign(2)), pg_typeof(abs('1'))
        // → double precision, double precision, numeric, smallint, double precision,
        //   double precision, double precision, double precision, integer, smallint,
        //   double precision, double precision
        assert_eq!(ret("sqrt", &[T::Int4]), T::Float8);
        assert_eq!(ret("round", &[T::Int4]), T::Float8);
        assert_eq!(ret("round", &[T::Int4, T::Int4]), NUMERIC);
        assert_eq!(ret("abs", &[T::Int2]), T::Int2);
        assert_eq!(ret("trunc", &[T::Int4]), T::Float8);
        assert_eq!(ret("ceil", &[T::Int4]), T::Float8);
        assert_eq!(ret("log", &[T::Int4]), T::Float8);
        assert_eq!(ret("power", &[T::Int4, T::Int4]), T::Float8);
        assert_eq!(r("mod", &[T::Int4, T::Int2]).unwrap().0, F::ModInt4);
        assert_eq!(ret("mod", &[T::Int2, T::Int2]), T::Int2);
        assert_eq!(ret("sign", &[T::Int4]), T::Float8);
        assert_eq!(
            r("abs", &[T::Unknown]).unwrap(),
            (F::AbsFloat8, vec![T::Float8], T::Float8)
        );
        // select pg_typeof(round(2.5::float4)), pg_typeof(abs(2.5::float4)), pg_typeof(round('2.5')),
        //   pg_typeof(length('abc')), pg_typeof(mod(5, 2.5)), pg_typeof(mod('5', 2)),
        //   pg_typeof(sign(1::float4)) → double, real, double, integer, numeric, integer, double
        assert_eq!(ret("round", &[T::Float4]), T::Float8);
        assert_eq!(ret("abs", &[T::Float4]), T::Float4);
        assert_eq!(ret("round", &[T::Unknown]), T::Float8);
        assert_eq!(
            r("length", &[T::Unknown]).unwrap(),
            (F::CharLength, vec![T::Text], T::Int4)
        );
        assert_eq!(ret("mod", &[T::Int4, NUMERIC]), NUMERIC);
        assert_eq!(r("mod", &[T::Unknown, T::Int4]).unwrap().0, F::ModInt4);
        assert_eq!(ret("sign", &[T::Float4]), T::Float8);
        // select pg_typeof(ln(2::int4)), pg_typeof(exp(1.0)), pg_typeof(power(2::int8, 2.5))
        assert_eq!(ret("ln", &[T::Int4]), T::Float8);
        assert_eq!(ret("exp", &[NUMERIC]), NUMERIC);
        assert_eq!(ret("power", &[T::Int8, NUMERIC]), NUMERIC);
        // select pg_typeof(round(NULL, 2)), pg_typeof(substr(NULL, 1)), pg_typeof(lower(NULL)),
        //        pg_typeof(abs(NULL)) → numeric text text double precision
        assert_eq!(ret("round", &[T::Unknown, T::Int4]), NUMERIC);
        assert_eq!(r("substr", &[T::Unknown, T::Int4]).unwrap().0, F::Substr);
        assert_eq!(ret("lower", &[T::Unknown]), T::Text);
        // position('a'::char(3) in 'a'), lower('A'::varchar), length('ab'::varchar),
        // length('ab'::char(5)) uses the bpchar overload
        assert_eq!(
            r("position", &[T::Char(3), T::Unknown]).unwrap().0,
            F::Strpos
        );
        assert_eq!(r("lower", &[T::Varchar(None)]).unwrap().1, vec![T::Text]);
        assert_eq!(
            r("length", &[T::Varchar(Some(4))]).unwrap().0,
            F::CharLength
        );
        assert_eq!(
            r("length", &[T::Char(5)]).unwrap(),
            (F::CharLengthBpchar, vec![T::Char(5)], T::Int4)
        );
        // select length(1) → function length(integer) does not exist
        let e = r("length", &[T::Int4]).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("42883", "function length(integer) does not exist")
        );
        assert_eq!(
            e.hint.as_deref(),
            Some(
                "No function matches the given name and argument types. You might need to add explicit type casts."
            )
        );
        // select left('abc', 2::int8) → function left(unknown, bigint) does not exist
        assert_eq!(
            r("left", &[T::Unknown, T::Int8]).unwrap_err().message,
            "function left(unknown, bigint) does not exist"
        );
        assert_eq!(r("round", &[T::Float8, T::Int4]).unwrap_err().code, "42883");
        assert_eq!(
            r("nosuch", &[]).unwrap_err().message,
            "function nosuch() does not exist"
        );
        // select to_hex(1::int2) → function to_hex(smallint) is not unique
        let e = r("to_hex", &[T::Int2]).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("42725", "function to_hex(smallint) is not unique")
        );
        // select concat() / concat_ws(',') → does not exist
        assert_eq!(r("concat", &[]).unwrap_err().code, "42883");
        assert_eq!(r("concat_ws", &[T::Unknown]).unwrap_err().code, "42883");
        assert_eq!(
            r("concat", &[T::Int4, T::Unknown]).unwrap().1,
            vec![T::Int4, T::Text]
        );
        assert_eq!(
            r("concat_ws", &[T::Unknown, T::Int4]).unwrap().1,
            vec![T::Text, T::Int4]
        );
        assert_eq!(
            r("concat_ws", &[T::Int4, T::Int4]).unwrap_err().code,
            "42883"
        );
        assert_eq!(r("gen_random_uuid", &[]).unwrap().2, T::Uuid);
        assert_eq!(r("md5", &[T::Bytea]).unwrap().0, F::Md5Bytea);
        assert_eq!(
            r("substring", &[T::Text, T::Unknown]).unwrap_err().code,
            "0A000"
        );
        assert_eq!(
            r("btrim", &[T::Bytea, T::Unknown]).unwrap().0,
            F::BtrimBytea
        );
    }

    #[test]
    fn math() {
        // select round(2.5), round(-2.5), round(2.5::float8), round(3.5::float8),
        //   round(1.2345, 2), round(1234.5, -2), round(1.5, -2), round(12.5, -1), round(1.23, 5),
        //   trunc(1.239, 2), trunc(-1.5), trunc(1234.5, -2)
        //   → 3 -3 2 4 1.23 1200 0 10 1.23000 1.23 -1 1200
        assert_eq!(s(F::RoundNumeric, &[num("2.5")]), "3");
        assert_eq!(s(F::RoundNumeric, &[num("-2.5")]), "-3");
        assert_eq!(s(F::RoundFloat8, &[Value::Float(2.5)]), "2");
        assert_eq!(s(F::RoundFloat8, &[Value::Float(3.5)]), "4");
        assert_eq!(
            s(F::RoundNumericScale, &[num("1.2345"), Value::Int(2)]),
            "1.23"
        );
        assert_eq!(
            s(F::RoundNumericScale, &[num("1234.5"), Value::Int(-2)]),
            "1200"
        );
        assert_eq!(s(F::RoundNumericScale, &[num("1.5"), Value::Int(-2)]), "0");
        assert_eq!(
            s(F::RoundNumericScale, &[num("12.5"), Value::Int(-1)]),
            "10"
        );
        assert_eq!(
            s(F::RoundNumericScale, &[num("1.23"), Value::Int(5)]),
            "1.23000"
        );
        assert_eq!(
            s(F::TruncNumericScale, &[num("1.239"), Value::Int(2)]),
            "1.23"
        );
        assert_eq!(s(F::TruncNumeric, &[num("-1.5")]), "-1");
        assert_eq!(
            s(F::TruncNumericScale, &[num("1234.5"), Value::Int(-2)]),
            "1200"
        );
        // select round(12345.6789::numeric, -2), round(-1.005, 2), trunc(-1.999, 1), round(0.0, 3),
        //        ceil(-0.5), floor(0.5), ceil(0.000) → 12300 -1.01 -1.9 0.000 0 0 0
        assert_eq!(
            s(F::RoundNumericScale, &[num("12345.6789"), Value::Int(-2)]),
            "12300"
        );
        assert_eq!(
            s(F::RoundNumericScale, &[num("-1.005"), Value::Int(2)]),
            "-1.01"
        );
        assert_eq!(
            s(F::TruncNumericScale, &[num("-1.999"), Value::Int(1)]),
            "-1.9"
        );
        assert_eq!(
            s(F::RoundNumericScale, &[num("0.0"), Value::Int(3)]),
            "0.000"
        );
        assert_eq!(s(F::CeilNumeric, &[num("-0.5")]), "0");
        assert_eq!(s(F::FloorNumeric, &[num("0.5")]), "0");
        assert_eq!(s(F::CeilNumeric, &[num("0.000")]), "0");
        // select ceil(1.2), ceil(-1.2), floor(-1.2), floor(1.50) → 2 -1 -2 1
        assert_eq!(s(F::CeilNumeric, &[num("1.2")]), "2");
        assert_eq!(s(F::CeilNumeric, &[num("-1.2")]), "-1");
        assert_eq!(s(F::FloorNumeric, &[num("-1.2")]), "-2");
        assert_eq!(s(F::FloorNumeric, &[num("1.50")]), "1");
        // select round(1.5::numeric, -2147483648), round(15.5, -100) → 0 0
        assert_eq!(
            s(
                F::RoundNumericScale,
                &[num("1.5"), Value::Int(i32::MIN as i64)]
            ),
            "0"
        );
        assert_eq!(
            s(F::RoundNumericScale, &[num("99.5"), Value::Int(-2)]),
            "100"
        );
        // select ceil(1.2::float8), floor(-0.5::float8), ceil(-0.5::float8), round(-0.4::float8),
        //   sign(-2.5), sign(0.0), sign(-2::float8), abs(-0.0::float8), abs(-1.50)
        //   → 2 -1 -0 -0 -1 0 -1 0 1.50
        assert_eq!(s(F::CeilFloat8, &[Value::Float(1.2)]), "2");
        assert_eq!(s(F::FloorFloat8, &[Value::Float(-0.5)]), "-1");
        assert_eq!(s(F::CeilFloat8, &[Value::Float(-0.5)]), "-0");
        assert_eq!(s(F::RoundFloat8, &[Value::Float(-0.4)]), "-0");
        assert_eq!(s(F::SignNumeric, &[num("-2.5")]), "-1");
        assert_eq!(s(F::SignNumeric, &[num("0.0")]), "0");
        assert_eq!(s(F::SignFloat8, &[Value::Float(-2.0)]), "-1");
        assert_eq!(s(F::AbsFloat8, &[Value::Float(-0.0)]), "0");
        assert_eq!(s(F::AbsNumeric, &[num("-1.50")]), "1.50");
        assert_eq!(s(F::SignFloat8, &[Value::Float(f64::NAN)]), "0");
        // select abs(-32768::int2), abs((-2147483648)::int4) → smallint/integer out of range
        assert_eq!(
            ev(F::AbsInt2, &[Value::Int(-32768)]).unwrap_err().message,
            "smallint out of range"
        );
        assert_eq!(
            ev(F::AbsInt4, &[Value::Int(-2147483648)])
                .unwrap_err()
                .message,
            "integer out of range"
        );
        assert_eq!(
            ev(F::AbsInt8, &[Value::Int(i64::MIN)]).unwrap_err().code,
            "22003"
        );
        // select exp(1::float8), ln(2::float8), log(100::float8), log10(1000::float8),
        //   cbrt(27::float8), cbrt(-8::float8), degrees(pi()), radians(180), pi()
        assert_eq!(s(F::ExpFloat8, &[Value::Float(1.0)]), "2.718281828459045");
        assert_eq!(s(F::LnFloat8, &[Value::Float(2.0)]), "0.6931471805599453");
        assert_eq!(s(F::Log10Float8, &[Value::Float(100.0)]), "2");
        assert_eq!(
            s(F::Log10Float8, &[Value::Float(8.0)]),
            "0.9030899869919435"
        );
        // PostgreSQL (glibc cbrt) prints 3.0000000000000004; Rust's cbrt is correctly rounded.
        assert_eq!(s(F::CbrtFloat8, &[Value::Float(27.0)]), "3");
        assert_eq!(s(F::CbrtFloat8, &[Value::Float(-8.0)]), "-2");
        assert_eq!(s(F::Degrees, &[Value::Float(std::f64::consts::PI)]), "180");
        assert_eq!(s(F::Radians, &[Value::Float(180.0)]), "3.141592653589793");
        assert_eq!(s(F::Pi, &[]), "3.141592653589793");
        // errors: sqrt(-1), ln(0), ln(-1), power(0, -1), power(-2, 0.5), exp(1000), exp(-1000),
        //         power(0.5::float8, 10000), power(10::float8, 400)
        assert_eq!(
            ev(F::SqrtFloat8, &[Value::Float(-1.0)]).unwrap_err().code,
            "2201F"
        );
        assert_eq!(
            ev(F::SqrtNumeric, &[num("-1")]).unwrap_err().message,
            "cannot take square root of a negative number"
        );
        assert_eq!(
            ev(F::LnFloat8, &[Value::Float(0.0)]).unwrap_err().message,
            "cannot take logarithm of zero"
        );
        assert_eq!(
            ev(F::Log10Float8, &[Value::Float(-1.0)]).unwrap_err().code,
            "2201E"
        );
        assert_eq!(
            ev(F::PowerFloat8, &[Value::Float(0.0), Value::Float(-1.0)])
                .unwrap_err()
                .code,
            "2201F"
        );
        assert_eq!(
            ev(F::PowerFloat8, &[Value::Float(-2.0), Value::Float(0.5)])
                .unwrap_err()
                .code,
            "2201F"
        );
        assert_eq!(
            ev(F::ExpFloat8, &[Value::Float(1000.0)])
                .unwrap_err()
                .message,
            "value out of range: overflow"
        );
        assert_eq!(
            ev(F::ExpFloat8, &[Value::Float(-1000.0)])
                .unwrap_err()
                .message,
            "value out of range: underflow"
        );
        assert_eq!(
            ev(F::PowerFloat8, &[Value::Float(0.5), Value::Float(10000.0)])
                .unwrap_err()
                .message,
            "value out of range: underflow"
        );
        assert_eq!(
            ev(F::PowerFloat8, &[Value::Float(10.0), Value::Float(400.0)])
                .unwrap_err()
                .message,
            "value out of range: overflow"
        );
        // select power(8::float8, 1.0/3), power(2::float8, -1074), power(-8::float8, 3),
        //   power(-1::float8, 'Infinity'), power('-Infinity'::float8, 3), exp(-745.1::float8)
        //   → 2 5e-324 -512 1 -Infinity 5e-324
        assert_eq!(
            s(
                F::PowerFloat8,
                &[Value::Float(8.0), Value::Float(1.0 / 3.0)]
            ),
            "2"
        );
        assert_eq!(
            s(F::PowerFloat8, &[Value::Float(2.0), Value::Float(-1074.0)]),
            "5e-324"
        );
        assert_eq!(
            s(F::PowerFloat8, &[Value::Float(-8.0), Value::Float(3.0)]),
            "-512"
        );
        assert_eq!(
            s(
                F::PowerFloat8,
                &[Value::Float(-1.0), Value::Float(f64::INFINITY)]
            ),
            "1"
        );
        assert_eq!(
            s(
                F::PowerFloat8,
                &[Value::Float(f64::NEG_INFINITY), Value::Float(3.0)]
            ),
            "-Infinity"
        );
        assert_eq!(s(F::ExpFloat8, &[Value::Float(-745.1)]), "5e-324");
        assert_eq!(
            s(F::PowerFloat8, &[Value::Float(f64::NAN), Value::Float(0.0)]),
            "1"
        );
        // numeric versions: select sqrt(2::numeric), ln(2.0), log(100::numeric), log(2.0, 8.0),
        //   exp(1.0), power(2.0, 10), mod(-7.5, 2), mod(7::int2, 0::int2)
        assert_eq!(s(F::SqrtNumeric, &[num("2")]), "1.414213562373095");
        assert_eq!(s(F::LnNumeric, &[num("2.0")]), "0.6931471805599453");
        assert_eq!(s(F::Log10Numeric, &[num("100")]), "2.0000000000000000");
        assert_eq!(
            s(F::LogNumericBase, &[num("2.0"), num("8.0")]),
            "3.0000000000000000"
        );
        assert_eq!(s(F::ExpNumeric, &[num("1.0")]), "2.7182818284590452");
        assert_eq!(
            s(F::PowerNumeric, &[num("2.0"), num("10")]),
            "1024.0000000000000000"
        );
        assert_eq!(s(F::ModNumeric, &[num("-7.5"), num("2")]), "-1.5");
        assert_eq!(
            ev(F::ModInt2, &[Value::Int(7), Value::Int(0)])
                .unwrap_err()
                .code,
            "22012"
        );
        assert_eq!(ev(F::SqrtFloat8, &[Value::Null]).unwrap(), Value::Null);
    }

    #[test]
    fn strings() {
        // select substr('hello', 2), substr('hello', 0, 3), substr('hello', -2, 5),
        //   substr('hello', 10), substr('hello', 2, 100), substr('héllo', 2, 2),
        //   substring('hello', -5, 3) → ello he he '' ello él ''
        assert_eq!(s(F::Substr, &[txt("hello"), Value::Int(2)]), "ello");
        assert_eq!(
            s(F::SubstrLen, &[txt("hello"), Value::Int(0), Value::Int(3)]),
            "he"
        );
        assert_eq!(
            s(F::SubstrLen, &[txt("hello"), Value::Int(-2), Value::Int(5)]),
            "he"
        );
        assert_eq!(s(F::Substr, &[txt("hello"), Value::Int(10)]), "");
        assert_eq!(
            s(
                F::SubstrLen,
                &[txt("hello"), Value::Int(2), Value::Int(100)]
            ),
            "ello"
        );
        assert_eq!(
            s(F::SubstrLen, &[txt("héllo"), Value::Int(2), Value::Int(2)]),
            "él"
        );
        assert_eq!(
            s(F::SubstrLen, &[txt("hello"), Value::Int(-5), Value::Int(3)]),
            ""
        );
        assert_eq!(
            s(
                F::SubstrLen,
                &[
                    txt("hello"),
                    Value::Int(i32::MAX as i64),
                    Value::Int(i32::MAX as i64)
                ]
            ),
            ""
        );
        assert_eq!(
            s(
                F::SubstrLen,
                &[
                    txt("hello"),
                    Value::Int(i32::MIN as i64),
                    Value::Int(i32::MAX as i64)
                ]
            ),
            ""
        );
        // select substr('hello', 2, -1) → negative substring length not allowed (22011)
        assert_eq!(
            ev(F::SubstrLen, &[txt("hello"), Value::Int(2), Value::Int(-1)])
                .unwrap_err()
                .code,
            "22011"
        );
        // select position('lo' in 'hello'), strpos('hello', ''), strpos('héllo', 'l'), position('' in '')
        assert_eq!(s(F::Strpos, &[txt("hello"), txt("lo")]), "4");
        assert_eq!(s(F::Strpos, &[txt("hello"), txt("")]), "1");
        assert_eq!(s(F::Strpos, &[txt("héllo"), txt("l")]), "3");
        assert_eq!(s(F::Strpos, &[txt(""), txt("")]), "1");
        assert_eq!(s(F::Strpos, &[txt("abc"), txt("x")]), "0");
        // select ltrim('  xx  '), rtrim('  xx  ') || '|', btrim('xxaxx', 'x'), ltrim('abcba', 'ab'),
        //   trim(both 'ab' from 'abcba'), btrim('', ''), btrim('abc', ''), btrim(E'\tab\t')
        assert_eq!(s(F::Ltrim, &[txt("  xx  ")]), "xx  ");
        assert_eq!(s(F::Rtrim, &[txt("  xx  ")]), "  xx");
        assert_eq!(s(F::BtrimChars, &[txt("xxaxx"), txt("x")]), "a");
        assert_eq!(s(F::LtrimChars, &[txt("abcba"), txt("ab")]), "cba");
        assert_eq!(s(F::BtrimChars, &[txt("abcba"), txt("ab")]), "c");
        assert_eq!(s(F::BtrimChars, &[txt("abc"), txt("")]), "abc");
        assert_eq!(s(F::Btrim, &[txt("\tab\t")]), "\tab\t");
        // select replace('abcabc', 'b', 'XX'), replace('abc', '', 'X'), replace('aaa', 'aa', 'b')
        assert_eq!(
            s(F::Replace, &[txt("abcabc"), txt("b"), txt("XX")]),
            "aXXcaXXc"
        );
        assert_eq!(s(F::Replace, &[txt("abc"), txt(""), txt("X")]), "abc");
        assert_eq!(s(F::Replace, &[txt("aaa"), txt("aa"), txt("b")]), "ba");
        // select concat('a', NULL, 1, 2.50, true), concat_ws(',', 'a', NULL, 'b'), concat_ws(NULL, 'a')
        //   → a12.50t, "a,b", NULL   (arguments arrive as text after the binder's coercion)
        assert_eq!(
            s(
                F::Concat,
                &[txt("a"), Value::Null, txt("1"), txt("2.50"), txt("t")]
            ),
            "a12.50t"
        );
        assert_eq!(s(F::Concat, &[Value::Null]), "");
        assert_eq!(
            s(F::Concat, &[Value::Int(1), Value::Bool(true), num("2.50")]),
            "1t2.50"
        );
        assert_eq!(
            s(F::ConcatWs, &[txt(","), txt("a"), Value::Null, txt("b")]),
            "a,b"
        );
        assert_eq!(
            ev(F::ConcatWs, &[Value::Null, txt("a")]).unwrap(),
            Value::Null
        );
        // select left('héllo', 2), left('hello', -2), right('hello', 2), right('hello', -2),
        //   left('hi', 10), left('hi', -10), left('abc', -2147483648), right('abc', -2147483648)
        //   → hé hel lo llo hi '' '' abc
        assert_eq!(s(F::Left, &[txt("héllo"), Value::Int(2)]), "hé");
        assert_eq!(s(F::Left, &[txt("hello"), Value::Int(-2)]), "hel");
        assert_eq!(s(F::Right, &[txt("hello"), Value::Int(2)]), "lo");
        assert_eq!(s(F::Right, &[txt("hello"), Value::Int(-2)]), "llo");
        assert_eq!(s(F::Left, &[txt("hi"), Value::Int(10)]), "hi");
        assert_eq!(s(F::Left, &[txt("hi"), Value::Int(-10)]), "");
        assert_eq!(s(F::Left, &[txt("abc"), Value::Int(i32::MIN as i64)]), "");
        assert_eq!(
            s(F::Right, &[txt("abc"), Value::Int(i32::MIN as i64)]),
            "abc"
        );
        // select lpad('hi', 5), lpad('hi', 5, 'xy'), lpad('hello', 3), rpad('hi', 5, 'xy'),
        //   lpad('hi', 5, ''), lpad('hi', -1), rpad('héllo', 2), lpad('ab', 5, 'é')
        assert_eq!(s(F::Lpad, &[txt("hi"), Value::Int(5)]), "   hi");
        assert_eq!(
            s(F::LpadFill, &[txt("hi"), Value::Int(5), txt("xy")]),
            "xyxhi"
        );
        assert_eq!(s(F::Lpad, &[txt("hello"), Value::Int(3)]), "hel");
        assert_eq!(
            s(F::RpadFill, &[txt("hi"), Value::Int(5), txt("xy")]),
            "hixyx"
        );
        assert_eq!(s(F::LpadFill, &[txt("hi"), Value::Int(5), txt("")]), "hi");
        assert_eq!(s(F::Lpad, &[txt("hi"), Value::Int(-1)]), "");
        assert_eq!(s(F::Rpad, &[txt("héllo"), Value::Int(2)]), "hé");
        assert_eq!(
            s(F::LpadFill, &[txt("ab"), Value::Int(5), txt("é")]),
            "éééab"
        );
        // select repeat('ab', 3), repeat('ab', 0), repeat('ab', -1), reverse('héllo'),
        //        repeat('x', 2147483647) → requested length too large (54000)
        assert_eq!(s(F::Repeat, &[txt("ab"), Value::Int(3)]), "ababab");
        assert_eq!(s(F::Repeat, &[txt("ab"), Value::Int(-1)]), "");
        assert_eq!(s(F::Reverse, &[txt("héllo")]), "olléh");
        assert_eq!(
            ev(F::Repeat, &[txt("x"), Value::Int(i32::MAX as i64)])
                .unwrap_err()
                .code,
            "54000"
        );
        assert_eq!(
            ev(F::Lpad, &[txt("x"), Value::Int(i32::MAX as i64)])
                .unwrap_err()
                .code,
            "54000"
        );
        // select split_part('a,b,c', ',', 2), split_part('a,b,c', ',', 4), split_part('a,b,c', ',', -1),
        //   split_part('a,b,c', '', 1), split_part('', ',', 1), split_part('a,b,c', ',', -4),
        //   split_part('abc', '', -1), split_part('abc', '', 2), split_part('a,b,c', ',', -3),
        //   split_part('a,,b', ',', 2) → b '' c a,b,c '' '' abc '' a ''
        let sp = |a: &str, d: &str, n: i64| s(F::SplitPart, &[txt(a), txt(d), Value::Int(n)]);
        assert_eq!(sp("a,b,c", ",", 2), "b");
        assert_eq!(sp("a,b,c", ",", 4), "");
        assert_eq!(sp("a,b,c", ",", -1), "c");
        assert_eq!(sp("a,b,c", "", 1), "a,b,c");
        assert_eq!(sp("", ",", 1), "");
        assert_eq!(sp("a,b,c", ",", -4), "");
        assert_eq!(sp("abc", "", -1), "abc");
        assert_eq!(sp("abc", "", 2), "");
        assert_eq!(sp("a,b,c", ",", -3), "a");
        assert_eq!(sp("a,,b", ",", 2), "");
        let e = ev(F::SplitPart, &[txt("a,b"), txt(","), Value::Int(0)]).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("22023", "field position must not be zero")
        );
        // select starts_with('hello', 'he'), md5(''), md5('abc'), md5('\x01'::bytea), chr(65),
        //   chr(233), ascii('é'), ascii(''), to_hex(255), to_hex(-1), to_hex(-1::int8),
        //   to_hex(-2147483648), to_hex(9223372036854775807)
        assert_eq!(s(F::StartsWith, &[txt("hello"), txt("he")]), "true");
        assert_eq!(s(F::Md5, &[txt("")]), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(s(F::Md5, &[txt("abc")]), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            s(F::Md5Bytea, &[Value::Bytea(vec![1])]),
            "55a54008ad1ba589aa210d2629c1df41"
        );
        assert_eq!(s(F::Md5, &[txt(&"a".repeat(200))]), md5_reference_200a());
        assert_eq!(s(F::Chr, &[Value::Int(65)]), "A");
        assert_eq!(s(F::Chr, &[Value::Int(233)]), "é");
        assert_eq!(s(F::Ascii, &[txt("é")]), "233");
        assert_eq!(s(F::Ascii, &[txt("")]), "0");
        assert_eq!(s(F::ToHexInt4, &[Value::Int(255)]), "ff");
        assert_eq!(s(F::ToHexInt4, &[Value::Int(-1)]), "ffffffff");
        assert_eq!(s(F::ToHexInt8, &[Value::Int(-1)]), "ffffffffffffffff");
        assert_eq!(s(F::ToHexInt4, &[Value::Int(-2147483648)]), "80000000");
        assert_eq!(s(F::ToHexInt8, &[Value::Int(i64::MAX)]), "7fffffffffffffff");
        // select chr(0) → 54000 null character not permitted; chr(-1) → 22023;
        //        chr(1114112), chr(55296) → 54000
        assert_eq!(ev(F::Chr, &[Value::Int(0)]).unwrap_err().code, "54000");
        assert_eq!(ev(F::Chr, &[Value::Int(-1)]).unwrap_err().code, "22023");
        assert_eq!(
            ev(F::Chr, &[Value::Int(1_114_112)]).unwrap_err().message,
            "requested character too large for encoding: 1114112"
        );
        assert_eq!(
            ev(F::Chr, &[Value::Int(55_296)]).unwrap_err().message,
            "requested character not valid for encoding: 55296"
        );
        // select initcap('hello wORLD foo-bar 1abc éa'), lower('ÀB'), upper('àb'), length('héllo'),
        //   octet_length('héllo'), char_length('ab  '::char(5)), octet_length('ab'::char(5))
        assert_eq!(
            s(F::Initcap, &[txt("hello wORLD foo-bar 1abc éa")]),
            "Hello World Foo-Bar 1abc Éa"
        );
        assert_eq!(s(F::Lower, &[txt("ÀB")]), "àb");
        assert_eq!(s(F::Upper, &[txt("àb")]), "ÀB");
        assert_eq!(s(F::CharLength, &[txt("héllo")]), "5");
        assert_eq!(s(F::OctetLength, &[txt("héllo")]), "6");
        assert_eq!(s(F::CharLengthBpchar, &[txt("ab   ")]), "2");
        assert_eq!(s(F::OctetLength, &[txt("ab   ")]), "5");
        // bytea: select length('\x0102'::bytea), position('\x02'::bytea in '\x0102'::bytea),
        //   substr('\x010203'::bytea, 2, 1), btrim('\x010201'::bytea, '\x01'::bytea)
        assert_eq!(s(F::LengthBytea, &[Value::Bytea(vec![1, 2])]), "2");
        assert_eq!(
            s(
                F::PositionBytea,
                &[Value::Bytea(vec![1, 2]), Value::Bytea(vec![2])]
            ),
            "2"
        );
        assert_eq!(
            s(
                F::SubstrByteaLen,
                &[Value::Bytea(vec![1, 2, 3]), Value::Int(2), Value::Int(1)]
            ),
            "\\x02"
        );
        assert_eq!(
            s(
                F::BtrimBytea,
                &[Value::Bytea(vec![1, 2, 1]), Value::Bytea(vec![1])]
            ),
            "\\x02"
        );
        assert!(matches!(ev(F::GenRandomUuid, &[]).unwrap(), Value::Uuid(_)));
    }

    #[test]
    fn snowflake() {
        assert_eq!(
            r("snowflake_id", &[]).unwrap(),
            (F::SnowflakeId, vec![], T::Int8)
        );
        assert_eq!(
            r("snowflake_timestamp", &[T::Int4]).unwrap(),
            (F::SnowflakeTimestamp, vec![T::Int8], T::Timestamp)
        );
        assert_eq!(ret("snowflake_node", &[T::Unknown]), T::Int4);
        for (name, args) in [
            ("snowflake_timestamp", vec![T::Text]),
            ("snowflake_timestamp", vec![T::Numeric(None)]),
            ("snowflake_node", vec![T::Int8, T::Int8]),
            ("snowflake_node", vec![]),
            ("snowflake_id", vec![T::Int8]),
        ] {
            assert_eq!(r(name, &args).unwrap_err().code, "42883", "{name}{args:?}");
        }
        assert!(is_volatile(F::SnowflakeId) && runs_at_coordinator(F::SnowflakeId));
        assert!(!is_volatile(F::SnowflakeNode) && !runs_at_coordinator(F::SnowflakeTimestamp));
        // 1000 ms after the epoch, node 5, sequence 9
        let id = Value::Int((1000 << 22) | (5 << 12) | 9);
        assert_eq!(
            ev(F::SnowflakeTimestamp, std::slice::from_ref(&id)).unwrap(),
            Value::Timestamp((crate::id::snowflake::EPOCH_MS as i64 + 1000) * 1000)
        );
        assert_eq!(ev(F::SnowflakeNode, &[id]).unwrap(), Value::Int(5));
        assert_eq!(ev(F::SnowflakeNode, &[Value::Null]).unwrap(), Value::Null);
        assert_eq!(
            ev(F::SnowflakeTimestamp, &[Value::Null]).unwrap(),
            Value::Null
        );
        assert_eq!(
            ev(F::SnowflakeNode, &[Value::Int(-1)]).unwrap_err().code,
            "22023"
        );
        assert_eq!(
            ev(F::SnowflakeTimestamp, &[Value::Int(i64::MIN)])
                .unwrap_err()
                .code,
            "22023"
        );
        // The largest id decodes without overflow (2095-09-06).
        assert!(ev(F::SnowflakeTimestamp, &[Value::Int(i64::MAX)]).is_ok());
        // Only the expression evaluator holds a generator.
        assert_eq!(ev(F::SnowflakeId, &[]).unwrap_err().code, "XX000");
    }

    /// md5 of 200 'a's, from `select md5(repeat('a', 200))` (exercises multi-block input).
    fn md5_reference_200a() -> &'static str {
        "887f30b43b2867f4a9accceee7d16e6c"
    }

    #[test]
    fn like() {
        // select 'é' ilike 'É', 'straße' ilike 'STRASSE', 'A_c' like 'a\_c', 'a_c' like 'a\_c',
        //        'abc' like 'a%%c', 'ab' like 'a_c%', '' like '%' → t f f t t f t
        assert!(like_match("é", "É", Some('\\'), true).unwrap());
        assert!(!like_match("straße", "STRASSE", Some('\\'), true).unwrap());
        assert!(!like_match("A_c", "a\\_c", Some('\\'), false).unwrap());
        assert!(like_match("a_c", "a\\_c", Some('\\'), false).unwrap());
        assert!(like_match("abc", "a%%c", Some('\\'), false).unwrap());
        assert!(!like_match("ab", "a_c%", Some('\\'), false).unwrap());
        assert!(like_match("", "%", Some('\\'), false).unwrap());
        // select 'a%' like 'a#%' escape '#', 'a' like 'a#' escape '#' → t f
        assert!(like_match("a%", "a#%", Some('#'), false).unwrap());
        assert!(!like_match("a", "a#", Some('#'), false).unwrap());
        // select 'ab' like 'a\', 'abc' like 'a%\', 'a' like '\', 'a' like '%\' → 22025
        for (s, p) in [("ab", "a\\"), ("abc", "a%\\"), ("a", "\\"), ("a", "%\\")] {
            assert_eq!(
                like_match(s, p, Some('\\'), false).unwrap_err().code,
                "22025",
                "{s} {p}"
            );
        }
        // select 'a' like 'a\' → f (the dangling escape is never reached)
        assert!(!like_match("a", "a\\", Some('\\'), false).unwrap());
        assert!(like_match("a\\b", "a\\b", Some('!'), false).unwrap());
        assert!(like_match("a\\", "a\\", None, false).unwrap());
        assert!(like_match("héllo", "h_llo", Some('\\'), false).unwrap());
        assert!(like_match("xaaab", "%a%b", Some('\\'), false).unwrap());
        assert!(!like_match("xaaac", "%a%b", Some('\\'), false).unwrap());
        // Pathological pattern stays fast.
        let s = "a".repeat(5000);
        let p = format!("{}b", "%a".repeat(200));
        assert!(!like_match(&s, &p, Some('\\'), false).unwrap());
    }

    proptest::proptest! {
        #[test]
        fn string_functions_never_panic(
            s in "\\PC{0,12}", t in "\\PC{0,4}", a in proptest::prelude::any::<i64>(), b in -20i64..20
        ) {
            for f in [F::Substr, F::Left, F::Right, F::Lpad, F::Rpad, F::Repeat] {
                let n = if f == F::Repeat || f == F::Lpad || f == F::Rpad { b } else { a };
                let _ = eval(f, &[txt(&s), Value::Int(n)]);
            }
            let _ = eval(F::SubstrLen, &[txt(&s), Value::Int(a), Value::Int(b)]);
            let _ = eval(F::SubstrLen, &[txt(&s), Value::Int(b), Value::Int(a)]);
            let _ = eval(F::SplitPart, &[txt(&s), txt(&t), Value::Int(a)]);
            let _ = eval(F::LpadFill, &[txt(&s), Value::Int(b), txt(&t)]);
            let _ = eval(F::Chr, &[Value::Int(a)]);
            let _ = eval(F::RoundNumericScale, &[Value::Numeric(Decimal::new(a, 3)), Value::Int(b)]);
            let _ = eval(F::PowerNumeric, &[Value::Numeric(Decimal::new(b, 1)), Value::Numeric(Decimal::new(a % 100_000, 2))]);
            let _ = eval(F::Strpos, &[txt(&s), txt(&t)]);
            let _ = eval(F::BtrimChars, &[txt(&s), txt(&t)]);
            let _ = like_match(&s, &t, Some('\\'), true);
            let _ = like_match(&s, &t, None, false);
            let _ = like_match(&s, &t, Some('é'), false);
        }
    }
}

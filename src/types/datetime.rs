//! Calendar arithmetic shared by date/timestamp input, output, casts and operators.
//!
//! Dates are days since 1970-01-01 (`i32`), timestamps microseconds since 1970-01-01 00:00:00
//! (`i64`), both in the proleptic Gregorian calendar with astronomical year numbering internally
//! (year 0 is 1 BC), exactly as PostgreSQL computes them.
//!
//! Invariants:
//! - a finite date lies in `DATE_MIN..=DATE_MAX` (4714-11-24 BC ..= 5874897-12-31, PostgreSQL's
//!   range); `i32::MAX` / `i32::MIN` are `infinity` / `-infinity`, which sort after / before every
//!   finite date just like in PostgreSQL, so plain integer comparison stays correct;
//! - a finite timestamp lies in `TS_MIN..TS_END`. PostgreSQL allows timestamps up to
//!   294276-12-31, but with a 1970 epoch that does not fit in an `i64`, so the upper bound here is
//!   294247-01-01 (exclusive). `i64::MAX` / `i64::MIN` are `infinity` / `-infinity`.
//!
//! All functions are total: out-of-range inputs give `None` instead of overflowing.

use crate::error::{SqlError, SqlResult, sqlstate};

pub const USECS_PER_SEC: i64 = 1_000_000;
pub const USECS_PER_DAY: i64 = 86_400 * USECS_PER_SEC;

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch for its binary formats.
pub const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
pub const PG_EPOCH_USECS: i64 = PG_EPOCH_DAYS as i64 * USECS_PER_DAY;

pub const DATE_POS_INFINITY: i32 = i32::MAX;
pub const DATE_NEG_INFINITY: i32 = i32::MIN;
pub const TS_POS_INFINITY: i64 = i64::MAX;
pub const TS_NEG_INFINITY: i64 = i64::MIN;

/// 4714-11-24 BC, Julian day 0.
pub const DATE_MIN: i32 = days_from_civil(-4713, 11, 24) as i32;
/// 5874897-12-31.
pub const DATE_MAX: i32 = days_from_civil(5_874_897, 12, 31) as i32;
pub const TS_MIN: i64 = DATE_MIN as i64 * USECS_PER_DAY;
/// 294247-01-01 00:00:00, exclusive (see module docs).
pub const TS_END: i64 = days_from_civil(294_247, 1, 1) * USECS_PER_DAY;

/// Days since 1970-01-01 of a proleptic Gregorian date (astronomical year). Callers keep
/// `year` within a few million so the arithmetic cannot overflow.
pub const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Shift the year to start in March so the leap day is the last day of the "year".
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: (astronomical year, month, day).
pub const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

pub fn is_leap_year(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

pub fn date_is_finite(d: i32) -> bool {
    d != DATE_POS_INFINITY && d != DATE_NEG_INFINITY
}

pub fn date_in_range(d: i32) -> bool {
    !date_is_finite(d) || (DATE_MIN..=DATE_MAX).contains(&d)
}

pub fn timestamp_is_finite(t: i64) -> bool {
    t != TS_POS_INFINITY && t != TS_NEG_INFINITY
}

pub fn timestamp_in_range(t: i64) -> bool {
    !timestamp_is_finite(t) || (TS_MIN..TS_END).contains(&t)
}

/// `date` → `timestamp` (midnight). Infinities map to infinities.
pub fn date_to_timestamp(d: i32) -> SqlResult<i64> {
    match d {
        DATE_POS_INFINITY => Ok(TS_POS_INFINITY),
        DATE_NEG_INFINITY => Ok(TS_NEG_INFINITY),
        _ => match (d as i64).checked_mul(USECS_PER_DAY) {
            Some(t) if timestamp_in_range(t) => Ok(t),
            _ => Err(SqlError::new(
                sqlstate::DATETIME_FIELD_OVERFLOW,
                "date out of range for timestamp",
            )),
        },
    }
}

/// `timestamp` → `date`, dropping the time of day (flooring, also before 1970).
pub fn timestamp_to_date(t: i64) -> i32 {
    match t {
        TS_POS_INFINITY => DATE_POS_INFINITY,
        TS_NEG_INFINITY => DATE_NEG_INFINITY,
        // Every finite timestamp's day fits in i32 because TS range ⊂ date range.
        _ => t.div_euclid(USECS_PER_DAY) as i32,
    }
}

/// Today's date in UTC (sharddb sessions run in UTC).
pub fn today() -> i32 {
    let now = chrono::Utc::now();
    timestamp_to_date(now.timestamp_micros())
}

/// The current time in UTC, microseconds since 1970.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Splits microseconds within a day into (hour, minute, second, microsecond).
pub fn split_time_of_day(usecs: i64) -> (u32, u32, u32, u32) {
    let secs = usecs / USECS_PER_SEC;
    let frac = (usecs % USECS_PER_SEC) as u32;
    (
        (secs / 3600) as u32,
        ((secs / 60) % 60) as u32,
        (secs % 60) as u32,
        frac,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_match_postgres() {
        // select '4714-11-24 BC'::date - '1970-01-01'::date  → -2440588
        // select '5874897-12-31'::date - '1970-01-01'::date  → 2145042905
        // select '2000-01-01'::date - '1970-01-01'::date     → 10957
        assert_eq!(DATE_MIN, -2_440_588);
        assert_eq!(DATE_MAX, 2_145_042_905);
        assert_eq!(days_from_civil(2000, 1, 1), PG_EPOCH_DAYS as i64);
        // select '0001-01-01'::date - '0001-12-31 BC'::date → 1
        assert_eq!(days_from_civil(1, 1, 1) - days_from_civil(0, 12, 31), 1);
        assert_eq!(TS_END, 9_223_371_244_800_000_000);
    }

    #[test]
    fn civil_round_trip() {
        for d in (DATE_MIN as i64..=DATE_MAX as i64).step_by(9_973) {
            let (y, m, day) = civil_from_days(d);
            assert!((1..=12).contains(&m));
            assert!(day >= 1 && day <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, day), d);
        }
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_753), (2024, 1, 31));
    }

    #[test]
    fn timestamp_date_floor() {
        assert_eq!(timestamp_to_date(-1), -1);
        assert_eq!(timestamp_to_date(USECS_PER_DAY), 1);
        assert_eq!(timestamp_to_date(TS_POS_INFINITY), DATE_POS_INFINITY);
    }
}

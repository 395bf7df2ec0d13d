//! Exact decimal arithmetic for `numeric`, wider than `rust_decimal`'s 96-bit mantissa.
//!
//! PostgreSQL's `numeric` is arbitrary precision: `+`, `-`, `*` are exact and `/`, `sqrt`, `ln`,
//! `exp`, `power` round their result half away from zero at a scale chosen by fixed rules
//! (`select_div_scale` and friends). Doing the operation in `rust_decimal` directly would round
//! intermediate results its own way, so every operation here is computed exactly (or, for the
//! transcendental functions, with ~100 guard digits) on a small unsigned big integer, and only the
//! final result is rounded — once — into a [`Decimal`].
//!
//! Invariants:
//! - [`BigUint`] limbs are little-endian base 2^32 with no high zero limbs (zero is empty);
//! - a [`BigDec`] is `±mag × 10^-scale`; zero is never negative;
//! - [`BigDec::to_decimal`] is the only place precision is lost: it drops fraction digits (half
//!   away from zero) until the value fits 28 fraction digits and a 96-bit mantissa, and reports
//!   `value overflows numeric format` (22003) when even the integer part does not fit.
//!
//! The transcendental functions work in binary fixed point ([`Fixed`], `FRAC_BITS` fraction bits)
//! so that rescaling after a multiplication is a shift rather than a division by 10^k. Inputs are
//! range-checked first (with an `f64` estimate) so that intermediate values stay small: no
//! user-supplied exponent can make a computation allocate or loop without bound.

use std::cmp::Ordering;

use rust_decimal::Decimal;

use crate::error::{SqlError, SqlResult, sqlstate};

/// Largest mantissa a `Decimal` can hold.
const MAX_MANTISSA: u128 = (1u128 << 96) - 1;
/// Largest scale a `Decimal` can hold.
pub const MAX_SCALE: u32 = 28;
/// PostgreSQL's NUMERIC_MIN_SIG_DIGITS: results of `/`, `sqrt`, `ln`, ... carry at least this
/// many significant digits.
pub const MIN_SIG_DIGITS: i64 = 16;

pub fn overflow_error() -> SqlError {
    SqlError::new(
        sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
        "value overflows numeric format",
    )
}

// ---------------------------------------------------------------------------------------------
// Unsigned big integers
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BigUint {
    limbs: Vec<u32>,
}

impl BigUint {
    pub fn zero() -> BigUint {
        BigUint { limbs: Vec::new() }
    }

    pub fn from_u128(mut v: u128) -> BigUint {
        let mut limbs = Vec::new();
        while v != 0 {
            limbs.push(v as u32);
            v >>= 32;
        }
        BigUint { limbs }
    }

    fn normalize(&mut self) {
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
    }

    pub fn is_zero(&self) -> bool {
        self.limbs.is_empty()
    }

    pub fn to_u128(&self) -> Option<u128> {
        if self.limbs.len() > 4 {
            return None;
        }
        Some(
            self.limbs
                .iter()
                .rev()
                .fold(0u128, |acc, &l| (acc << 32) | l as u128),
        )
    }

    pub fn bits(&self) -> u64 {
        match self.limbs.last() {
            None => 0,
            Some(&top) => (self.limbs.len() as u64 - 1) * 32 + (32 - top.leading_zeros() as u64),
        }
    }

    fn bit(&self, i: u64) -> bool {
        let limb = (i / 32) as usize;
        limb < self.limbs.len() && (self.limbs[limb] >> (i % 32)) & 1 == 1
    }

    pub fn cmp_mag(&self, other: &BigUint) -> Ordering {
        self.limbs
            .len()
            .cmp(&other.limbs.len())
            .then_with(|| self.limbs.iter().rev().cmp(other.limbs.iter().rev()))
    }

    pub fn add(&self, other: &BigUint) -> BigUint {
        let n = self.limbs.len().max(other.limbs.len());
        let mut out = Vec::with_capacity(n + 1);
        let mut carry = 0u64;
        for i in 0..n {
            let s = *self.limbs.get(i).unwrap_or(&0) as u64
                + *other.limbs.get(i).unwrap_or(&0) as u64
                + carry;
            out.push(s as u32);
            carry = s >> 32;
        }
        if carry != 0 {
            out.push(carry as u32);
        }
        let mut r = BigUint { limbs: out };
        r.normalize();
        r
    }

    /// `self - other`; callers guarantee `self >= other` (saturates at zero otherwise).
    pub fn sub(&self, other: &BigUint) -> BigUint {
        if self.cmp_mag(other) != Ordering::Greater {
            return BigUint::zero();
        }
        let mut out = Vec::with_capacity(self.limbs.len());
        let mut borrow = 0i64;
        for i in 0..self.limbs.len() {
            let mut d = self.limbs[i] as i64 - *other.limbs.get(i).unwrap_or(&0) as i64 - borrow;
            if d < 0 {
                d += 1 << 32;
                borrow = 1;
            } else {
                borrow = 0;
            }
            out.push(d as u32);
        }
        let mut r = BigUint { limbs: out };
        r.normalize();
        r
    }

    pub fn mul(&self, other: &BigUint) -> BigUint {
        if self.is_zero() || other.is_zero() {
            return BigUint::zero();
        }
        let mut out = vec![0u32; self.limbs.len() + other.limbs.len()];
        for (i, &a) in self.limbs.iter().enumerate() {
            let mut carry = 0u64;
            for (j, &b) in other.limbs.iter().enumerate() {
                let t = a as u64 * b as u64 + out[i + j] as u64 + carry;
                out[i + j] = t as u32;
                carry = t >> 32;
            }
            out[i + other.limbs.len()] = carry as u32;
        }
        let mut r = BigUint { limbs: out };
        r.normalize();
        r
    }

    pub fn mul_small(&mut self, m: u32) {
        let mut carry = 0u64;
        for l in self.limbs.iter_mut() {
            let t = *l as u64 * m as u64 + carry;
            *l = t as u32;
            carry = t >> 32;
        }
        if carry != 0 {
            self.limbs.push(carry as u32);
        }
        self.normalize();
    }

    pub fn add_small(&mut self, a: u32) {
        let mut carry = a as u64;
        for l in self.limbs.iter_mut() {
            if carry == 0 {
                break;
            }
            let t = *l as u64 + carry;
            *l = t as u32;
            carry = t >> 32;
        }
        if carry != 0 {
            self.limbs.push(carry as u32);
        }
    }

    /// Divides in place by a nonzero `d`, returning the remainder.
    pub fn divrem_small(&mut self, d: u32) -> u32 {
        debug_assert!(d != 0);
        let d = d.max(1) as u64;
        let mut rem = 0u64;
        for l in self.limbs.iter_mut().rev() {
            let cur = (rem << 32) | *l as u64;
            *l = (cur / d) as u32;
            rem = cur % d;
        }
        self.normalize();
        rem as u32
    }

    pub fn shl(&self, n: u64) -> BigUint {
        if self.is_zero() {
            return BigUint::zero();
        }
        let limb_shift = (n / 32) as usize;
        let bit_shift = (n % 32) as u32;
        let mut out = vec![0u32; limb_shift];
        let mut carry = 0u32;
        for &l in &self.limbs {
            if bit_shift == 0 {
                out.push(l);
            } else {
                out.push((l << bit_shift) | carry);
                carry = l >> (32 - bit_shift);
            }
        }
        if carry != 0 {
            out.push(carry);
        }
        BigUint { limbs: out }
    }

    pub fn shr(&self, n: u64) -> BigUint {
        let limb_shift = (n / 32) as usize;
        if limb_shift >= self.limbs.len() {
            return BigUint::zero();
        }
        let bit_shift = (n % 32) as u32;
        let src = &self.limbs[limb_shift..];
        let mut out = Vec::with_capacity(src.len());
        for i in 0..src.len() {
            let lo = src[i];
            if bit_shift == 0 {
                out.push(lo);
            } else {
                let hi = src.get(i + 1).copied().unwrap_or(0);
                out.push((lo >> bit_shift) | (hi << (32 - bit_shift)));
            }
        }
        let mut r = BigUint { limbs: out };
        r.normalize();
        r
    }

    /// Quotient and remainder; `d` must be nonzero (a zero divisor yields (0, self)).
    pub fn divrem(&self, d: &BigUint) -> (BigUint, BigUint) {
        if d.is_zero() {
            return (BigUint::zero(), self.clone());
        }
        if d.limbs.len() == 1 {
            let mut q = self.clone();
            let r = q.divrem_small(d.limbs[0]);
            return (q, BigUint::from_u128(r as u128));
        }
        if self.cmp_mag(d) == Ordering::Less {
            return (BigUint::zero(), self.clone());
        }
        // Schoolbook binary long division: the operands here are at most a few hundred bits.
        let nbits = self.bits();
        let mut q = vec![0u32; self.limbs.len()];
        let mut r = BigUint::zero();
        for i in (0..nbits).rev() {
            r = r.shl(1);
            if self.bit(i) {
                if r.limbs.is_empty() {
                    r.limbs.push(1);
                } else {
                    r.limbs[0] |= 1;
                }
            }
            if r.cmp_mag(d) != Ordering::Less {
                r = r.sub(d);
                q[(i / 32) as usize] |= 1 << (i % 32);
            }
        }
        let mut q = BigUint { limbs: q };
        q.normalize();
        (q, r)
    }

    pub fn pow10(k: u32) -> BigUint {
        let mut r = BigUint::from_u128(1);
        let mut k = k;
        while k >= 9 {
            r.mul_small(1_000_000_000);
            k -= 9;
        }
        r.mul_small(10u32.pow(k));
        r
    }

    pub fn to_decimal_string(&self) -> String {
        if self.is_zero() {
            return "0".to_string();
        }
        let mut chunks = Vec::new();
        let mut v = self.clone();
        while !v.is_zero() {
            chunks.push(v.divrem_small(1_000_000_000));
        }
        let mut s = String::new();
        for (i, c) in chunks.iter().rev().enumerate() {
            if i == 0 {
                s.push_str(&c.to_string());
            } else {
                s.push_str(&format!("{c:09}"));
            }
        }
        s
    }

    /// Number of decimal digits (0 for zero).
    pub fn decimal_digits(&self) -> u32 {
        if self.is_zero() {
            0
        } else {
            self.to_decimal_string().len() as u32
        }
    }

    /// Floor of the square root (Newton's method from an over-estimate).
    pub fn isqrt(&self) -> BigUint {
        if self.is_zero() {
            return BigUint::zero();
        }
        let mut x = BigUint::from_u128(1).shl(self.bits().div_ceil(2));
        loop {
            let (q, _) = self.divrem(&x);
            let y = x.add(&q).shr(1);
            if y.cmp_mag(&x) != Ordering::Less {
                return x;
            }
            x = y;
        }
    }
}

/// Divides by 10^k rounding half away from zero (the magnitude is rounded half up).
fn div_pow10_round(mag: &BigUint, k: u32) -> BigUint {
    if k == 0 {
        return mag.clone();
    }
    let (mut q, r) = mag.divrem(&BigUint::pow10(k));
    let mut half = BigUint::pow10(k - 1);
    half.mul_small(5);
    if r.cmp_mag(&half) != Ordering::Less {
        q.add_small(1);
    }
    q
}

// ---------------------------------------------------------------------------------------------
// Signed big decimals
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct BigDec {
    pub neg: bool,
    pub mag: BigUint,
    pub scale: u32,
}

impl BigDec {
    pub fn new(neg: bool, mag: BigUint, scale: u32) -> BigDec {
        let neg = neg && !mag.is_zero();
        BigDec { neg, mag, scale }
    }

    pub fn zero(scale: u32) -> BigDec {
        BigDec::new(false, BigUint::zero(), scale)
    }

    pub fn from_decimal(d: &Decimal) -> BigDec {
        let m = d.mantissa();
        BigDec::new(m < 0, BigUint::from_u128(m.unsigned_abs()), d.scale())
    }

    pub fn from_i64(v: i64) -> BigDec {
        BigDec::new(v < 0, BigUint::from_u128(v.unsigned_abs() as u128), 0)
    }

    pub fn is_zero(&self) -> bool {
        self.mag.is_zero()
    }

    /// Rounds half away from zero (or pads with zeros) to exactly `scale` fraction digits.
    pub fn with_scale(&self, scale: u32) -> BigDec {
        match scale.cmp(&self.scale) {
            Ordering::Equal => self.clone(),
            Ordering::Greater => BigDec::new(
                self.neg,
                self.mag.mul(&BigUint::pow10(scale - self.scale)),
                scale,
            ),
            Ordering::Less => BigDec::new(
                self.neg,
                div_pow10_round(&self.mag, self.scale - scale),
                scale,
            ),
        }
    }

    /// Truncates toward zero to `scale` fraction digits (never increases the scale).
    pub fn truncated(&self, scale: u32) -> BigDec {
        if scale >= self.scale {
            return self.with_scale(scale);
        }
        let (q, _) = self.mag.divrem(&BigUint::pow10(self.scale - scale));
        BigDec::new(self.neg, q, scale)
    }

    /// Converts to a `Decimal`, rounding away fraction digits that do not fit.
    pub fn to_decimal(&self) -> SqlResult<Decimal> {
        let digits = self.mag.decimal_digits();
        // Fraction digits we can keep: at most 28, and at most 29 significant digits in total
        // (29 digits fit a 96-bit mantissa only when the value is small enough; checked below).
        let int_digits = digits.saturating_sub(self.scale);
        let mut scale = self
            .scale
            .min(MAX_SCALE)
            .min(29u32.saturating_sub(int_digits));
        loop {
            let r = self.with_scale(scale);
            if let Some(m) = r.mag.to_u128().filter(|&m| m <= MAX_MANTISSA) {
                let signed = if r.neg { -(m as i128) } else { m as i128 };
                return Decimal::try_from_i128_with_scale(signed, scale)
                    .map_err(|_| overflow_error());
            }
            if scale == 0 {
                return Err(overflow_error());
            }
            scale -= 1;
        }
    }

    /// Decimal exponent of the leading digit: the value lies in [10^e, 10^(e+1)). `None` for 0.
    pub fn leading_exponent(&self) -> Option<i64> {
        if self.is_zero() {
            None
        } else {
            Some(self.mag.decimal_digits() as i64 - 1 - self.scale as i64)
        }
    }

    /// PostgreSQL's (weight, first digit) in base 10000 for a nonzero value.
    fn nbase_weight_and_first_digit(&self) -> (i64, u32) {
        match self.leading_exponent() {
            None => (0, 0),
            Some(e) => {
                let weight = e.div_euclid(4);
                let lead_digits = (e - 4 * weight + 1) as usize;
                // The first base-10000 digit is the leading `lead_digits` decimal digits, padded
                // on the right with zeros when the value has fewer digits than that.
                let s = self.mag.to_decimal_string();
                let bytes = s.as_bytes();
                let first = (0..lead_digits).fold(0u32, |acc, i| {
                    acc * 10
                        + bytes
                            .get(i)
                            .map_or(0, |b| u32::from(b.saturating_sub(b'0')))
                });
                (weight, first)
            }
        }
    }

    fn aligned(&self, other: &BigDec) -> (BigUint, BigUint, u32) {
        let scale = self.scale.max(other.scale);
        (
            self.with_scale(scale).mag,
            other.with_scale(scale).mag,
            scale,
        )
    }

    pub fn add(&self, other: &BigDec) -> BigDec {
        let (a, b, scale) = self.aligned(other);
        if self.neg == other.neg {
            return BigDec::new(self.neg, a.add(&b), scale);
        }
        match a.cmp_mag(&b) {
            Ordering::Less => BigDec::new(other.neg, b.sub(&a), scale),
            _ => BigDec::new(self.neg, a.sub(&b), scale),
        }
    }

    pub fn negated(&self) -> BigDec {
        BigDec::new(!self.neg, self.mag.clone(), self.scale)
    }

    pub fn sub(&self, other: &BigDec) -> BigDec {
        self.add(&other.negated())
    }

    pub fn mul(&self, other: &BigDec) -> BigDec {
        BigDec::new(
            self.neg != other.neg,
            self.mag.mul(&other.mag),
            self.scale + other.scale,
        )
    }

    /// `self / other` rounded half away from zero to `rscale` digits; `other` must be nonzero.
    pub fn div_round(&self, other: &BigDec, rscale: u32) -> BigDec {
        // a/b = (ma/mb)·10^(sb-sa); we want round(ma·10^(sb-sa+rscale) / mb).
        let k = other.scale as i64 - self.scale as i64 + rscale as i64;
        let (num, den) = if k >= 0 {
            (self.mag.mul(&BigUint::pow10(k as u32)), other.mag.clone())
        } else {
            (
                self.mag.clone(),
                other.mag.mul(&BigUint::pow10((-k) as u32)),
            )
        };
        let (mut q, r) = num.divrem(&den);
        if r.shl(1).cmp_mag(&den) != Ordering::Less {
            q.add_small(1);
        }
        BigDec::new(self.neg != other.neg, q, rscale)
    }

    /// Remainder of truncating division, sign of the dividend, scale max(sa, sb).
    pub fn rem(&self, other: &BigDec) -> BigDec {
        let (a, b, scale) = self.aligned(other);
        let (_, r) = a.divrem(&b);
        BigDec::new(self.neg, r, scale)
    }

    pub fn cmp_value(&self, other: &BigDec) -> Ordering {
        match (self.neg, other.neg) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (neg, _) => {
                let (a, b, _) = self.aligned(other);
                let c = a.cmp_mag(&b);
                if neg { c.reverse() } else { c }
            }
        }
    }

    /// Approximate value, for range estimates only.
    pub fn to_f64(&self) -> f64 {
        let s = self.mag.to_decimal_string();
        let v: f64 = format!("{s}e-{}", self.scale).parse().unwrap_or(f64::MAX);
        if self.neg { -v } else { v }
    }

    /// `log10(|self|)` estimate that does not overflow for huge or tiny values.
    fn log10_estimate(&self) -> f64 {
        let s = self.mag.to_decimal_string();
        let lead: f64 = format!("0.{}", &s[..s.len().min(17)])
            .parse()
            .unwrap_or(1.0);
        lead.log10() + s.len() as f64 - self.scale as f64
    }
}

/// The exact decimal value of a finite float (every binary fraction is a finite decimal).
pub fn f64_to_bigdec(f: f64) -> BigDec {
    if !f.is_finite() || f == 0.0 {
        return BigDec::zero(0);
    }
    let bits = f.to_bits();
    let neg = bits >> 63 == 1;
    let exp_bits = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    let (mut mant, mut exp) = if exp_bits == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp_bits - 1075)
    };
    while mant & 1 == 0 && exp < 0 {
        mant >>= 1;
        exp += 1;
    }
    let m = BigUint::from_u128(mant as u128);
    if exp >= 0 {
        BigDec::new(neg, m.shl(exp as u64), 0)
    } else {
        // m·2^-k = m·5^k / 10^k
        let k = (-exp) as u32;
        let mut mag = m;
        for _ in 0..k {
            mag.mul_small(5);
        }
        BigDec::new(neg, mag, k)
    }
}

impl BigDec {
    /// The value as a `Decimal` if it is representable without rounding (trailing fraction
    /// zeros are dropped first).
    pub fn to_decimal_exact(&self) -> Option<Decimal> {
        let mut mag = self.mag.clone();
        let mut scale = self.scale;
        while scale > 0 {
            let mut q = mag.clone();
            if q.divrem_small(10) != 0 {
                break;
            }
            mag = q;
            scale -= 1;
        }
        if scale > MAX_SCALE {
            return None;
        }
        let m = mag.to_u128().filter(|&m| m <= MAX_MANTISSA)?;
        let signed = if self.neg { -(m as i128) } else { m as i128 };
        Decimal::try_from_i128_with_scale(signed, scale).ok()
    }
}

/// Scale of a quotient, PostgreSQL's `select_div_scale`.
pub fn select_div_scale(a: &BigDec, b: &BigDec) -> u32 {
    let (w1, f1) = a.nbase_weight_and_first_digit();
    let (w2, f2) = b.nbase_weight_and_first_digit();
    let mut qweight = w1 - w2;
    if f1 <= f2 {
        qweight -= 1;
    }
    let rscale = (MIN_SIG_DIGITS - qweight * 4)
        .max(a.scale as i64)
        .max(b.scale as i64)
        .clamp(0, 1000);
    rscale as u32
}

/// Clamps a PostgreSQL result scale (which may be up to 1000) to what `Decimal` can hold; the
/// final [`BigDec::to_decimal`] would do the same, this just avoids computing digits we drop.
fn clamp_scale(rscale: i64) -> u32 {
    rscale.clamp(0, MAX_SCALE as i64) as u32
}

// ---------------------------------------------------------------------------------------------
// Binary fixed point for the transcendental functions
// ---------------------------------------------------------------------------------------------

/// Fraction bits of [`Fixed`]: ~100 decimal digits, far beyond the 29 we can return, so the
/// errors of argument reduction and series truncation never reach a returned digit.
const FRAC_BITS: u64 = 340;

#[derive(Clone, Debug)]
struct Fixed {
    neg: bool,
    mag: BigUint,
}

impl Fixed {
    fn one() -> Fixed {
        Fixed {
            neg: false,
            mag: BigUint::from_u128(1).shl(FRAC_BITS),
        }
    }

    fn from_dec(d: &BigDec) -> Fixed {
        let (q, _) = d.mag.shl(FRAC_BITS).divrem(&BigUint::pow10(d.scale));
        Fixed {
            neg: d.neg && !q.is_zero(),
            mag: q,
        }
    }

    fn from_small(v: u32) -> Fixed {
        Fixed {
            neg: false,
            mag: BigUint::from_u128(v as u128).shl(FRAC_BITS),
        }
    }

    /// Rounds half away from zero to `scale` decimal digits.
    fn to_dec(&self, scale: u32) -> BigDec {
        let scaled = self.mag.mul(&BigUint::pow10(scale));
        let mut q = scaled.shr(FRAC_BITS);
        if scaled.bit(FRAC_BITS - 1) {
            q.add_small(1);
        }
        BigDec::new(self.neg, q, scale)
    }

    fn add(&self, o: &Fixed) -> Fixed {
        if self.neg == o.neg {
            return Fixed {
                neg: self.neg,
                mag: self.mag.add(&o.mag),
            };
        }
        match self.mag.cmp_mag(&o.mag) {
            Ordering::Less => Fixed {
                neg: o.neg,
                mag: o.mag.sub(&self.mag),
            },
            _ => Fixed {
                neg: self.neg,
                mag: self.mag.sub(&o.mag),
            },
        }
    }

    fn sub(&self, o: &Fixed) -> Fixed {
        self.add(&Fixed {
            neg: !o.neg,
            mag: o.mag.clone(),
        })
    }

    fn mul(&self, o: &Fixed) -> Fixed {
        Fixed {
            neg: self.neg != o.neg,
            mag: self.mag.mul(&o.mag).shr(FRAC_BITS),
        }
    }

    fn div(&self, o: &Fixed) -> Fixed {
        let (q, _) = self.mag.shl(FRAC_BITS).divrem(&o.mag);
        Fixed {
            neg: self.neg != o.neg,
            mag: q,
        }
    }

    fn div_small(&self, d: u32) -> Fixed {
        let mut mag = self.mag.clone();
        mag.divrem_small(d);
        Fixed { neg: self.neg, mag }
    }

    fn sqrt(&self) -> Fixed {
        Fixed {
            neg: false,
            mag: self.mag.shl(FRAC_BITS).isqrt(),
        }
    }

    fn is_zero(&self) -> bool {
        self.mag.is_zero()
    }
}

/// ln 2 = 2·atanh(1/3) = 2·Σ 3^-(2k+1)/(2k+1).
fn ln2() -> Fixed {
    let mut term = Fixed::one().div_small(3);
    let mut sum = term.clone();
    let mut k = 1u32;
    while !term.is_zero() {
        term = term.div_small(9);
        sum = sum.add(&term.div_small(2 * k + 1));
        k += 1;
    }
    Fixed {
        neg: false,
        mag: sum.mag.shl(1),
    }
}

/// Natural logarithm of a positive fixed-point number.
fn fixed_ln(x: &Fixed) -> Fixed {
    // x = m·2^e with m in [1, 2): the power of two is exact and contributes e·ln 2.
    let e = x.mag.bits() as i64 - 1 - FRAC_BITS as i64;
    let mut m = if e >= 0 {
        Fixed {
            neg: false,
            mag: x.mag.shr(e as u64),
        }
    } else {
        Fixed {
            neg: false,
            mag: x.mag.shl((-e) as u64),
        }
    };
    // Square roots bring m close to 1 where the atanh series converges quickly.
    let limit = Fixed::from_small(11).div_small(10);
    let mut halvings = 0u64;
    while m.mag.cmp_mag(&limit.mag) == Ordering::Greater {
        m = m.sqrt();
        halvings += 1;
    }
    // ln m = 2·atanh(u), u = (m-1)/(m+1).
    let one = Fixed::one();
    let u = m.sub(&one).div(&m.add(&one));
    let u2 = u.mul(&u);
    let mut power = u.clone();
    let mut sum = u;
    let mut k = 1u32;
    loop {
        power = power.mul(&u2);
        let term = power.div_small(2 * k + 1);
        if term.is_zero() {
            break;
        }
        sum = sum.add(&term);
        k += 1;
    }
    let ln_m = Fixed {
        neg: sum.neg,
        mag: sum.mag.shl(1 + halvings),
    };
    let ln2_e = {
        let mut mag = ln2().mag;
        mag.mul_small(e.unsigned_abs() as u32);
        Fixed { neg: e < 0, mag }
    };
    ln_m.add(&ln2_e)
}

/// e^x for |x| small enough that the result fits (callers check x ≤ ~70).
fn fixed_exp(x: &Fixed) -> Fixed {
    if x.neg {
        let pos = fixed_exp(&Fixed {
            neg: false,
            mag: x.mag.clone(),
        });
        return Fixed::one().div(&pos);
    }
    // x = n·ln 2 + r with r in [0, ln 2): e^x = 2^n·e^r, and the shift is exact.
    let l2 = ln2();
    let (n, _) = x.mag.divrem(&l2.mag);
    let n = n.to_u128().unwrap_or(0) as u32;
    let mut n_ln2 = l2.mag.clone();
    n_ln2.mul_small(n);
    let r = Fixed {
        neg: false,
        mag: x.mag.sub(&n_ln2),
    };
    // e^r = (e^(r/256))^256 with a rapidly converging Taylor series for the small argument.
    const SQUARINGS: u64 = 8;
    let y = Fixed {
        neg: false,
        mag: r.mag.shr(SQUARINGS),
    };
    let mut term = Fixed::one();
    let mut sum = Fixed::one();
    let mut k = 1u32;
    loop {
        term = term.mul(&y).div_small(k);
        if term.is_zero() {
            break;
        }
        sum = sum.add(&term);
        k += 1;
    }
    for _ in 0..SQUARINGS {
        sum = sum.mul(&sum);
    }
    Fixed {
        neg: false,
        mag: sum.mag.shl(n as u64),
    }
}

fn domain_error(code: &str, msg: &str) -> SqlError {
    SqlError::new(code, msg)
}

/// PostgreSQL's `estimate_ln_dweight`: decimal weight of ln(x), used to pick result scales.
fn estimate_ln_dweight(x: &BigDec) -> i64 {
    if x.neg || x.is_zero() {
        return 0;
    }
    let v = x.to_f64();
    if (0.9..=1.1).contains(&v) {
        let d = x.sub(&BigDec::from_i64(1));
        d.leading_exponent().unwrap_or_default()
    } else {
        let ln = x.log10_estimate() * std::f64::consts::LN_10;
        ln.abs().log10() as i64
    }
}

/// `sqrt(numeric)`.
pub fn sqrt(x: &BigDec) -> SqlResult<BigDec> {
    if x.neg {
        return Err(domain_error(
            sqlstate::INVALID_ARGUMENT_FOR_POWER,
            "cannot take square root of a negative number",
        ));
    }
    // PostgreSQL: sweight = (weight + 1) * DEC_DIGITS / 2 - 1, rscale = 16 - sweight.
    let (weight, _) = x.nbase_weight_and_first_digit();
    let sweight = (weight + 1) * 4 / 2 - 1;
    let rscale = (MIN_SIG_DIGITS - sweight)
        .max(x.scale as i64)
        .clamp(0, 1000);
    let r = clamp_scale(rscale);
    if x.is_zero() {
        return Ok(BigDec::zero(r));
    }
    // sqrt(m·10^-s)·10^r = sqrt(m·10^(2r-s)); r ≥ s keeps the exponent non-negative.
    let shift = 2 * r as i64 - x.scale as i64;
    let n = if shift >= 0 {
        x.mag.mul(&BigUint::pow10(shift as u32))
    } else {
        x.with_scale(2 * r).mag
    };
    let mut q = n.isqrt();
    // Round half up: sqrt(n) ≥ q + 1/2  ⇔  n > q² + q.
    let q2q = q.mul(&q).add(&q);
    if n.cmp_mag(&q2q) == Ordering::Greater {
        q.add_small(1);
    }
    Ok(BigDec::new(false, q, r))
}

fn check_ln_arg(x: &BigDec) -> SqlResult<()> {
    if x.is_zero() {
        return Err(domain_error(
            sqlstate::INVALID_ARGUMENT_FOR_LOG,
            "cannot take logarithm of zero",
        ));
    }
    if x.neg {
        return Err(domain_error(
            sqlstate::INVALID_ARGUMENT_FOR_LOG,
            "cannot take logarithm of a negative number",
        ));
    }
    Ok(())
}

/// `ln(numeric)`.
pub fn ln(x: &BigDec) -> SqlResult<BigDec> {
    check_ln_arg(x)?;
    let rscale = (MIN_SIG_DIGITS - estimate_ln_dweight(x))
        .max(x.scale as i64)
        .clamp(0, 1000);
    Ok(fixed_ln(&Fixed::from_dec(x)).to_dec(clamp_scale(rscale)))
}

/// `log(base, x)` for numerics (`log(x)` is `log(10, x)`).
pub fn log(base: &BigDec, x: &BigDec) -> SqlResult<BigDec> {
    check_ln_arg(base)?;
    check_ln_arg(x)?;
    let result_dweight = estimate_ln_dweight(x) - estimate_ln_dweight(base);
    let rscale = (MIN_SIG_DIGITS - result_dweight)
        .max(base.scale as i64)
        .max(x.scale as i64)
        .clamp(0, 1000);
    let ln_base = fixed_ln(&Fixed::from_dec(base));
    if ln_base.is_zero() {
        return Err(SqlError::division_by_zero());
    }
    let ln_x = fixed_ln(&Fixed::from_dec(x));
    Ok(ln_x.div(&ln_base).to_dec(clamp_scale(rscale)))
}

/// e^x beyond this overflows a `Decimal` (ln(7.9e28) ≈ 66.5).
const EXP_OVERFLOW: f64 = 66.6;
/// e^x below this rounds to zero at any scale we can return (e^-70 ≈ 4e-31).
const EXP_UNDERFLOW: f64 = -70.0;

/// `exp(numeric)`.
pub fn exp(x: &BigDec) -> SqlResult<BigDec> {
    let v = x.to_f64();
    // PostgreSQL: rscale = 16 - (int)(x·log10(e)), at least the input's scale.
    let dweight = (v * std::f64::consts::LOG10_E).clamp(-2000.0, 2000.0) as i64;
    let rscale = (MIN_SIG_DIGITS - dweight)
        .max(x.scale as i64)
        .clamp(0, 1000);
    if v > EXP_OVERFLOW {
        return Err(overflow_error());
    }
    if v < EXP_UNDERFLOW {
        return Ok(BigDec::zero(clamp_scale(rscale)));
    }
    Ok(fixed_exp(&Fixed::from_dec(x)).to_dec(clamp_scale(rscale)))
}

/// `power(numeric, numeric)`.
pub fn power(base: &BigDec, exp_: &BigDec) -> SqlResult<BigDec> {
    let exp_is_integer = exp_.truncated(0).cmp_value(exp_) == Ordering::Equal;
    if base.is_zero() && exp_.neg {
        return Err(domain_error(
            sqlstate::INVALID_ARGUMENT_FOR_POWER,
            "zero raised to a negative power is undefined",
        ));
    }
    if base.neg && !exp_is_integer {
        return Err(domain_error(
            sqlstate::INVALID_ARGUMENT_FOR_POWER,
            "a negative number raised to a non-integer power yields a complex result",
        ));
    }
    let int_exp = if exp_is_integer {
        exp_.truncated(0)
            .to_decimal()
            .ok()
            .and_then(|d| i64::try_from(d.mantissa()).ok())
            .filter(|n| i32::try_from(*n).is_ok())
    } else {
        None
    };
    if let Some(n) = int_exp {
        // PostgreSQL's power_var_int path: rscale = max(16, base scale).
        let rscale = clamp_scale(MIN_SIG_DIGITS.max(base.scale as i64));
        if n == 0 {
            return Ok(BigDec::new(false, BigUint::pow10(rscale), rscale));
        }
        if base.is_zero() {
            return Ok(BigDec::zero(rscale));
        }
        let log10 = base.log10_estimate() * n as f64;
        if log10 > 29.5 {
            return Err(overflow_error());
        }
        if log10 < -31.0 {
            return Ok(BigDec::zero(rscale));
        }
        let b = Fixed::from_dec(base);
        let mut result = Fixed::one();
        let mut sq = b;
        let mut k = n.unsigned_abs();
        while k > 0 {
            if k & 1 == 1 {
                result = result.mul(&sq);
            }
            k >>= 1;
            if k > 0 {
                sq = sq.mul(&sq);
            }
        }
        if n < 0 {
            result = Fixed::one().div(&result);
        }
        return Ok(result.to_dec(rscale));
    }
    if base.is_zero() {
        // 0 ^ positive non-integer: PostgreSQL returns zero with scale 16.
        return Ok(BigDec::zero(MIN_SIG_DIGITS as u32));
    }
    let ln_base = fixed_ln(&Fixed::from_dec(base));
    let product = ln_base.mul(&Fixed::from_dec(exp_));
    let v = product.to_dec(20).to_f64();
    let dweight = (v * std::f64::consts::LOG10_E).clamp(-2000.0, 2000.0) as i64;
    let rscale = (MIN_SIG_DIGITS - dweight)
        .max(base.scale as i64)
        .max(exp_.scale as i64)
        .clamp(0, 1000);
    if v > EXP_OVERFLOW {
        return Err(overflow_error());
    }
    if v < EXP_UNDERFLOW {
        return Ok(BigDec::zero(clamp_scale(rscale)));
    }
    let result = fixed_exp(&product).to_dec(clamp_scale(rscale));
    // A negative base only gets here with an integer exponent too large for the repeated
    // squaring path; the sign then follows the exponent's parity.
    let odd = exp_.truncated(0).mag.clone().divrem_small(2) == 1;
    Ok(if base.neg && odd {
        result.negated()
    } else {
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> BigDec {
        BigDec::from_decimal(&Decimal::from_str(s).unwrap())
    }

    fn s(b: SqlResult<BigDec>) -> String {
        b.unwrap().to_decimal().unwrap().to_string()
    }

    #[test]
    fn biguint_basics() {
        let a = BigUint::from_u128(u128::MAX);
        let b = a.mul(&a);
        let (q, r) = b.divrem(&a);
        assert_eq!(q, a);
        assert!(r.is_zero());
        assert_eq!(
            BigUint::pow10(30).to_decimal_string(),
            format!("1{}", "0".repeat(30))
        );
        assert_eq!(BigUint::from_u128(99).isqrt().to_u128(), Some(9));
        assert_eq!(BigUint::from_u128(100).isqrt().to_u128(), Some(10));
    }

    #[test]
    fn division_scale_matches_postgres() {
        // select 1::numeric/3, 10::numeric/4, 100::numeric/7, 1::numeric/7000000,
        //        12345678901234567890::numeric/3, 0::numeric/3
        let cases = [
            ("1", "3", "0.33333333333333333333"),
            ("10", "4", "2.5000000000000000"),
            ("100", "7", "14.2857142857142857"),
            ("1", "7000000", "0.000000142857142857142857"),
            ("12345678901234567890", "3", "4115226300411522630"),
            ("0", "3", "0.00000000000000000000"),
            ("1.000", "3", "0.33333333333333333333"),
        ];
        for (a, b, want) in cases {
            let (a, b) = (d(a), d(b));
            let r = a.div_round(&b, select_div_scale(&a, &b));
            assert_eq!(r.to_decimal().unwrap().to_string(), want, "{a:?}/{b:?}");
        }
    }

    #[test]
    fn transcendental_match_postgres() {
        // select sqrt(2.0), sqrt(100::numeric), sqrt(0.0001), sqrt(12345678901234567890::numeric)
        assert_eq!(s(sqrt(&d("2.0"))), "1.414213562373095");
        assert_eq!(s(sqrt(&d("100"))), "10.000000000000000");
        assert_eq!(s(sqrt(&d("0.0001"))), "0.01000000000000000");
        assert_eq!(s(sqrt(&d("12345678901234567890"))), "3513641828.8201443");
        // select ln(2.0), ln(10::numeric), ln(1e20::numeric), ln(0.001), ln(1.5)
        assert_eq!(s(ln(&d("2.0"))), "0.6931471805599453");
        assert_eq!(s(ln(&d("10"))), "2.3025850929940457");
        assert_eq!(s(ln(&d("100000000000000000000"))), "46.051701859880914");
        assert_eq!(s(ln(&d("0.001"))), "-6.9077552789821371");
        assert_eq!(s(ln(&d("1.5"))), "0.4054651081081644");
        // select log(100::numeric), log(2.0), log(2.0, 8.0)
        assert_eq!(s(log(&d("10"), &d("100"))), "2.0000000000000000");
        assert_eq!(s(log(&d("10"), &d("2.0"))), "0.3010299956639812");
        assert_eq!(s(log(&d("2.0"), &d("8.0"))), "3.0000000000000000");
        // select exp(1.0), exp(10.5), exp(-5.0), exp(0.0), exp(50::numeric)
        assert_eq!(s(exp(&d("1.0"))), "2.7182818284590452");
        assert_eq!(s(exp(&d("10.5"))), "36315.502674246638");
        assert_eq!(s(exp(&d("-5.0"))), "0.006737946999085467");
        assert_eq!(s(exp(&d("0.0"))), "1.0000000000000000");
        assert_eq!(s(exp(&d("50"))), "5184705528587072464087");
        // select power(2.0, 10), power(2::numeric, 0.5), power(1.5, 2.5),
        //        power(10::numeric, -2), power(-2.0, 3), power(0.0, 0)
        assert_eq!(s(power(&d("2.0"), &d("10"))), "1024.0000000000000000");
        assert_eq!(s(power(&d("2"), &d("0.5"))), "1.4142135623730950");
        assert_eq!(s(power(&d("1.5"), &d("2.5"))), "2.7556759606310754");
        assert_eq!(s(power(&d("10"), &d("-2"))), "0.0100000000000000");
        assert_eq!(s(power(&d("-2.0"), &d("3"))), "-8.0000000000000000");
        assert_eq!(s(power(&d("0.0"), &d("0"))), "1.0000000000000000");
        // select power(0.0, -1) → zero raised to a negative power is undefined (2201F)
        assert_eq!(power(&d("0.0"), &d("-1")).unwrap_err().code, "2201F");
        assert_eq!(power(&d("-2.0"), &d("0.5")).unwrap_err().code, "2201F");
        assert_eq!(ln(&d("0")).unwrap_err().code, "2201E");
        // select log(1.0, 10.0) → division by zero
        assert_eq!(log(&d("1.0"), &d("10.0")).unwrap_err().code, "22012");
        assert_eq!(exp(&d("1000")).unwrap_err().code, "22003");
    }

    #[test]
    fn to_decimal_rounds_and_overflows() {
        let v = BigDec::new(false, BigUint::pow10(40), 10);
        assert_eq!(v.to_decimal().unwrap_err().code, "22003");
        // 1/3 with 40 digits keeps 28.
        let third = d("1").div_round(&d("3"), 40);
        assert_eq!(
            third.to_decimal().unwrap().to_string(),
            "0.3333333333333333333333333333"
        );
        let big = d("79228162514264337593543950335").add(&d("0.5"));
        assert_eq!(big.to_decimal().unwrap_err().code, "22003");
    }
}

//! Exact fixed-point decimals: every price, quantity, fee and balance is an `i64` count of
//! 10^-8 units (`Dec`). Stored as SQLite INTEGER so SQL orders and range-scans prices correctly.
//! Intermediate products use `i128` and are rounded exactly once.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Fractional digits carried by every [`Dec`].
pub const SCALE_DIGITS: u32 = 8;
/// 10^8: one whole unit in raw units.
pub const SCALE: i64 = 100_000_000;

/// An exact decimal with 8 fractional digits, stored as raw units of 10^-8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dec(pub i64);

/// Why a decimal could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDecError {
    /// Empty input.
    #[error("empty number")]
    Empty,
    /// Not a plain decimal number (NaN, infinities, letters, several dots...).
    #[error("not a decimal number: {0:?}")]
    Invalid(String),
    /// More than 8 fractional digits after normalising.
    #[error("more than 8 fractional digits: {0:?}")]
    TooPrecise(String),
    /// Outside the representable range.
    #[error("number out of range: {0:?}")]
    Overflow(String),
}

impl Dec {
    /// Zero.
    pub const ZERO: Dec = Dec(0);
    /// One whole unit.
    pub const ONE: Dec = Dec(SCALE);

    /// Builds a value from whole units (`Dec::from_int(5)` is 5).
    ///
    /// # Panics
    /// Beyond ±92,233,720,368 units, which a `Dec` cannot hold (in release builds too: it never
    /// wraps); [`Dec::checked_from_int`] answers `None` there instead.
    pub const fn from_int(n: i64) -> Dec {
        match Dec::checked_from_int(n) {
            Some(d) => d,
            None => panic!("Dec::from_int: beyond the range of a Dec"),
        }
    }

    /// Builds a value from whole units, or `None` beyond what a `Dec` can hold.
    pub const fn checked_from_int(n: i64) -> Option<Dec> {
        match n.checked_mul(SCALE) {
            Some(raw) => Some(Dec(raw)),
            None => None,
        }
    }

    /// The raw count of 10^-8 units.
    pub const fn raw(self) -> i64 {
        self.0
    }

    /// True when strictly greater than zero.
    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// True when this is an exact multiple of `step` (a zero step accepts everything).
    pub fn is_multiple_of(self, step: Dec) -> bool {
        step.0 == 0 || self.0 % step.0 == 0
    }

    /// Checked addition.
    pub fn checked_add(self, o: Dec) -> Option<Dec> {
        self.0.checked_add(o.0).map(Dec)
    }

    /// Checked subtraction.
    pub fn checked_sub(self, o: Dec) -> Option<Dec> {
        self.0.checked_sub(o.0).map(Dec)
    }

    /// Parses a decimal in plain or exponent notation; the value must be exact in 8 digits.
    pub fn parse(s: &str) -> Result<Dec, ParseDecError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(ParseDecError::Empty);
        }
        let invalid = || ParseDecError::Invalid(s.to_string());
        let (neg, body) = match t.as_bytes()[0] {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        let (mantissa, exp) = match body.find(['e', 'E']) {
            Some(i) => {
                let e: i32 = body[i + 1..].parse().map_err(|_| invalid())?;
                (&body[..i], e)
            }
            None => (body, 0),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((a, b)) => (a, b),
            None => (mantissa, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty())
            || !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        // digits as one integer, with the decimal point `point` digits from the right
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let point = frac_part.len() as i64 - exp as i64; // fractional digit count after exponent
        let digits = if digits.is_empty() { "0" } else { digits };
        // strip trailing zeros that sit in the fraction
        let mut d = digits.to_string();
        let mut point = point;
        while point > 0 && d.len() > 1 && d.ends_with('0') {
            d.pop();
            point -= 1;
        }
        if d == "0" {
            return Ok(Dec(0));
        }
        if point > SCALE_DIGITS as i64 {
            return Err(ParseDecError::TooPrecise(s.to_string()));
        }
        let shift = SCALE_DIGITS as i64 - point; // zeros to append to reach raw units
        if d.len() as i64 + shift > 19 {
            return Err(ParseDecError::Overflow(s.to_string()));
        }
        let mut raw: i128 = d.parse().map_err(|_| invalid())?;
        for _ in 0..shift {
            raw *= 10;
        }
        let raw = if neg { -raw } else { raw };
        i64::try_from(raw)
            .map(Dec)
            .map_err(|_| ParseDecError::Overflow(s.to_string()))
    }
}

impl fmt::Display for Dec {
    /// Plain notation, no exponent, no trailing zeros: `100.5`, `0.00000001`, `-3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0 as i128;
        let sign = if v < 0 { "-" } else { "" };
        let a = v.unsigned_abs();
        let int = a / SCALE as u128;
        let frac = a % SCALE as u128;
        if frac == 0 {
            write!(f, "{sign}{int}")
        } else {
            let s = format!("{frac:08}");
            write!(f, "{sign}{int}.{}", s.trim_end_matches('0'))
        }
    }
}

impl FromStr for Dec {
    type Err = ParseDecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dec::parse(s)
    }
}

impl Serialize for Dec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dec {
    /// Accepts a JSON string or a JSON number; numbers are read from their exact text.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let text = match &v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a decimal string or number, got {other}"
                )));
            }
        };
        Dec::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A whole number written as ASCII digits only (no sign, no point), as chat arguments and the
/// query string take it. One too large for a `u64` saturates: every such number lies beyond
/// any range it is checked against, and the check's own answer names that range.
pub fn parse_whole(s: &str) -> Option<u64> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // all digits: parsing can fail only by overflowing
    digits.then(|| s.parse().unwrap_or(u64::MAX))
}

/// Divides `n / d` rounding half away from zero (`d` may be negative).
pub fn div_round_half_away(n: i128, d: i128) -> i128 {
    assert!(d != 0, "division by zero");
    let (n, d) = if d < 0 { (-n, -d) } else { (n, d) };
    let q = n / d;
    let r = n % d;
    if 2 * r.abs() >= d { q + n.signum() } else { q }
}

/// Divides `n / d` (d > 0) rounding towards negative infinity.
pub fn div_floor(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d != 0 && (n < 0) != (d < 0) {
        q - 1
    } else {
        q
    }
}

/// Divides `n / d` (d > 0) rounding towards positive infinity.
pub fn div_ceil(n: i128, d: i128) -> i128 {
    -div_floor(-n, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn whole_units_beyond_the_range_are_refused_not_wrapped() {
        let most = i64::MAX / SCALE;
        assert_eq!(Dec::checked_from_int(most), Some(Dec(most * SCALE)));
        assert_eq!(Dec::checked_from_int(most + 1), None);
        assert_eq!(Dec::checked_from_int(-most - 1), None);
        assert!(std::panic::catch_unwind(|| Dec::from_int(185_000_000_000)).is_err());
    }

    #[test]
    fn parses_plain_and_exponent_forms() {
        assert_eq!(Dec::parse("100.5").unwrap(), Dec(10_050_000_000));
        assert_eq!(Dec::parse("0.00000001").unwrap(), Dec(1));
        assert_eq!(Dec::parse("-3").unwrap(), Dec::from_int(-3));
        assert_eq!(Dec::parse("1e2").unwrap(), Dec::from_int(100));
        assert_eq!(Dec::parse("1.5E-3").unwrap(), Dec(150_000));
        assert_eq!(Dec::parse(".5").unwrap(), Dec(50_000_000));
        assert_eq!(Dec::parse("5.").unwrap(), Dec::from_int(5));
        assert_eq!(Dec::parse("0.100000000").unwrap(), Dec(10_000_000));
        assert_eq!(Dec::parse("0e999999").unwrap(), Dec(0));
    }

    #[test]
    fn rejects_what_is_not_exact() {
        for bad in [
            "",
            "NaN",
            "inf",
            "-Infinity",
            "1.2.3",
            "abc",
            "1e",
            "--1",
            "0x10",
            "1,5",
        ] {
            assert!(Dec::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(matches!(
            Dec::parse("0.000000001"),
            Err(ParseDecError::TooPrecise(_))
        ));
        assert!(matches!(
            Dec::parse("1e300"),
            Err(ParseDecError::Overflow(_))
        ));
        assert!(matches!(
            Dec::parse("99999999999"),
            Err(ParseDecError::Overflow(_))
        ));
        assert!(Dec::parse("1e-99999999999").is_err());
    }

    #[test]
    fn formats_without_trailing_zeros() {
        assert_eq!(Dec(10_050_000_000).to_string(), "100.5");
        assert_eq!(Dec(-1).to_string(), "-0.00000001");
        assert_eq!(Dec(0).to_string(), "0");
        assert_eq!(Dec(i64::MIN).to_string(), "-92233720368.54775808");
    }

    #[test]
    fn rounding_helpers() {
        assert_eq!(div_round_half_away(5, 2), 3);
        assert_eq!(div_round_half_away(-5, 2), -3);
        assert_eq!(div_round_half_away(4, 3), 1);
        assert_eq!(div_round_half_away(-4, 3), -1);
        assert_eq!(div_round_half_away(5, -2), -3);
        assert_eq!(div_floor(-1, 2), -1);
        assert_eq!(div_ceil(1, 2), 1);
        assert_eq!(div_ceil(-1, 2), 0);
    }

    proptest! {
        #[test]
        fn format_parse_round_trip(raw in any::<i64>()) {
            let d = Dec(raw);
            prop_assert_eq!(Dec::parse(&d.to_string()).unwrap(), d);
        }

        #[test]
        fn json_number_and_string_agree(raw in -1_000_000_000_000_000i64..1_000_000_000_000_000) {
            let d = Dec(raw);
            let from_str: Dec = serde_json::from_str(&format!("\"{d}\"")).unwrap();
            let from_num: Dec = serde_json::from_str(&d.to_string()).unwrap();
            prop_assert_eq!(from_str, d);
            prop_assert_eq!(from_num, d);
        }

        #[test]
        fn half_away_matches_definition(n in -1_000_000i128..1_000_000, d in 1i128..1000) {
            let q = div_round_half_away(n, d);
            // |n/d - q| <= 1/2, ties away from zero
            let diff2 = (2 * (n - q * d)).abs();
            prop_assert!(diff2 <= d);
            if diff2 == d { prop_assert!(q.abs() * d > n.abs()); }
        }
    }
}

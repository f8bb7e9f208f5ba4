//! Exact number and date text: plain and exponent decimals rounded to 8 digits, exact integers
//! written as decimals, and ISO dates in UTC as milliseconds.

use crate::domain::money::{Dec, ParseDecError};

/// Splits decimal text into (negative, significant digits without leading zeros, count of
/// fractional digits after applying the exponent). `None` when not a plain decimal.
pub(super) fn decimal_parts(s: &str) -> Option<(bool, String, i64)> {
    let t = s.trim();
    let (neg, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    let mut digits = digits.trim_start_matches('0').to_string();
    let mut point = frac_part.len() as i64 - i64::from(exp);
    while point > 0 && digits.ends_with('0') {
        digits.pop();
        point -= 1;
    }
    Some((neg, digits, point))
}

/// An integer written as decimal text (`1672677900000`, `1.6726779e12`, `5.0`); `None` when not
/// integral or out of i64 range.
pub(super) fn parse_exact_int(s: &str) -> Option<i64> {
    let (neg, digits, point) = decimal_parts(s)?;
    if digits.is_empty() {
        return Some(0);
    }
    if point > 0 {
        return None;
    }
    let shift = -point;
    if digits.len() as i64 + shift > 19 {
        return None;
    }
    let mut v: i128 = digits.parse().ok()?;
    for _ in 0..shift {
        v *= 10;
    }
    i64::try_from(if neg { -v } else { v }).ok()
}

/// [`Dec::parse`], except that more than 8 fractional digits are rounded half away from zero.
pub(super) fn parse_dec_rounded(s: &str) -> Result<Dec, ParseDecError> {
    match Dec::parse(s) {
        Err(ParseDecError::TooPrecise(_)) => {}
        other => return other,
    }
    let (neg, digits, point) =
        decimal_parts(s).ok_or_else(|| ParseDecError::Invalid(s.to_string()))?;
    let drop = point - 8; // > 0 here: digits to remove from the right
    let len = digits.len() as i64;
    let (kept, next) = if drop > len {
        ("", b'0')
    } else {
        let cut = (len - drop) as usize;
        (&digits[..cut], digits.as_bytes()[cut])
    };
    if kept.len() > 19 {
        return Err(ParseDecError::Overflow(s.to_string()));
    }
    let mut v: i128 = if kept.is_empty() {
        0
    } else {
        kept.parse()
            .map_err(|_| ParseDecError::Invalid(s.to_string()))?
    };
    if next >= b'5' {
        v += 1;
    }
    i64::try_from(if neg { -v } else { v })
        .map(Dec)
        .map_err(|_| ParseDecError::Overflow(s.to_string()))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub(super) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400; // [0, 399]
    let mp = i64::from((m + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

pub(super) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

pub(super) struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let s = self.b.get(self.i..self.i + n)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(s.iter().fold(0, |acc, b| acc * 10 + u32::from(b - b'0')))
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn done(&self) -> bool {
        self.i == self.b.len()
    }
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.fff…]]][Z|±HH[:MM]]` → ms since the epoch (UTC unless an offset
/// is given).
pub(super) fn parse_iso_utc_ms(s: &str) -> Option<i64> {
    let mut c = Cursor {
        b: s.trim().as_bytes(),
        i: 0,
    };
    let y = i64::from(c.digits(4)?);
    if !c.eat(b'-') {
        return None;
    }
    let mo = c.digits(2)?;
    if !c.eat(b'-') {
        return None;
    }
    let d = c.digits(2)?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let (mut hh, mut mm, mut ss, mut ms) = (0, 0, 0, 0);
    let mut offset_min: i64 = 0;
    if !c.done() {
        if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
            return None;
        }
        hh = c.digits(2)?;
        if !c.eat(b':') {
            return None;
        }
        mm = c.digits(2)?;
        if c.eat(b':') {
            ss = c.digits(2)?;
            if c.eat(b'.') {
                let start = c.i;
                while c.peek().is_some_and(|b| b.is_ascii_digit()) {
                    c.i += 1;
                }
                let frac = &c.b[start..c.i];
                if frac.is_empty() {
                    return None;
                }
                // milliseconds: the first three fractional digits (truncated)
                for k in 0..3 {
                    ms = ms * 10 + frac.get(k).map_or(0, |b| u32::from(b - b'0'));
                }
            }
        }
        if hh > 23 || mm > 59 || ss > 59 {
            return None;
        }
        match c.peek() {
            None => {}
            Some(b'Z' | b'z') => c.i += 1,
            Some(sign @ (b'+' | b'-')) => {
                c.i += 1;
                let oh = c.digits(2)?;
                c.eat(b':');
                let om = if c.done() { 0 } else { c.digits(2)? };
                if oh > 23 || om > 59 {
                    return None;
                }
                let off = i64::from(oh * 60 + om);
                offset_min = if sign == b'+' { off } else { -off };
            }
            Some(_) => return None,
        }
        if !c.done() {
            return None;
        }
    }
    let secs =
        days_from_civil(y, mo, d) * 86_400 + i64::from(hh * 3600 + mm * 60 + ss) - offset_min * 60;
    Some(secs * 1000 + i64::from(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::MAX_TS_MS;

    #[test]
    fn iso_dates_and_civil_conversion() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(parse_iso_utc_ms("2000-02-29"), Some(951_782_400_000));
        assert_eq!(
            parse_iso_utc_ms("2024-12-31 23:59:59"),
            Some(1_735_689_599_000)
        );
        assert_eq!(
            parse_iso_utc_ms("2021-11-17T01:00:00Z"),
            Some(1_637_110_800_000)
        );
        assert_eq!(
            parse_iso_utc_ms("2021-11-17T01:00:00.25Z"),
            Some(1_637_110_800_250)
        );
        assert_eq!(
            parse_iso_utc_ms("2021-11-17 03:30:00+02:30"),
            Some(1_637_110_800_000)
        );
        assert_eq!(
            parse_iso_utc_ms("9999-12-31T23:59:59.999Z"),
            Some(MAX_TS_MS)
        );
        for bad in [
            "2023-02-29",
            "2023-13-01",
            "2023-00-10",
            "2023-01-32",
            "2023-01-01 24:00:00",
            "2023-01-01 12:60:00",
            "2023-01-01T12:00:00Q",
            "2023-1-01",
            "23-01-01",
            "2023-01-01 12",
            "2023-01-01T12:00:00.Z",
            "",
        ] {
            assert_eq!(parse_iso_utc_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn number_helpers() {
        assert_eq!(parse_exact_int("1672677900000"), Some(1_672_677_900_000));
        assert_eq!(parse_exact_int("1.6726779E12"), Some(1_672_677_900_000));
        assert_eq!(parse_exact_int("5.000"), Some(5));
        assert_eq!(parse_exact_int("-0"), Some(0));
        assert_eq!(parse_exact_int("5.5"), None);
        assert_eq!(parse_exact_int("1e19"), None);
        assert_eq!(parse_exact_int("x"), None);
        let r = |s: &str| parse_dec_rounded(s).map(|d| d.to_string());
        assert_eq!(r("1.123456785").as_deref(), Ok("1.12345679"));
        assert_eq!(r("1.123456784999").as_deref(), Ok("1.12345678"));
        assert_eq!(r("-1.123456785").as_deref(), Ok("-1.12345679"));
        assert_eq!(r("0.000000005").as_deref(), Ok("0.00000001"));
        assert_eq!(r("0.000000004999").as_deref(), Ok("0"));
        assert_eq!(r("5e-9").as_deref(), Ok("0.00000001"));
        assert_eq!(r("1e-99999").as_deref(), Ok("0"));
        assert_eq!(r("0.999999999").as_deref(), Ok("1"));
        assert_eq!(r("2.5").as_deref(), Ok("2.5"));
        assert!(matches!(r("1e300"), Err(ParseDecError::Overflow(_))));
        assert!(matches!(
            r("92233720368.547758079"),
            Err(ParseDecError::Overflow(_))
        ));
        assert!(matches!(r("abc"), Err(ParseDecError::Invalid(_))));
    }
}

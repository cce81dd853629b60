//! Timestamp parsing for imported logs.
//!
//! Accepted forms: RFC 3339 / ISO 8601 with an offset (`2011-10-01T00:38:44.546+02:00`, `...Z`),
//! ISO 8601 without an offset (`2012-04-03T16:55:38`, taken as UTC), `YYYY-MM-DD HH:MM:SS` with an
//! optional fraction and with hours that need not be zero-padded (`2012-04-03 1:04:54`), a bare
//! date (`2012-04-03`, midnight UTC), and a bare integer, taken as Unix seconds.
//!
//! Importers take times through [`parse_checked`], which also rejects a time outside the range of
//! [`prescient_core::limits::check_time`], so that a huge number of seconds is an error rather than a
//! time that saturates somewhere downstream.

use chrono::NaiveDate;
use prescient_core::Timestamp;
use prescient_core::limits::check_time;

/// What the timestamp parser accepts, for error messages.
pub const EXPECTED: &str = "expected ISO 8601 or YYYY-MM-DD HH:MM:SS or Unix seconds";

/// Parses a timestamp as [`parse_timestamp`] does and checks it against the accepted range.
///
/// # Errors
/// A message naming the text: it is not a timestamp, or it is one outside 1900..=9999.
pub(crate) fn parse_checked(s: &str) -> Result<Timestamp, String> {
    let t = parse_timestamp(s).ok_or_else(|| {
        if is_integer(s.trim()) {
            // Only an integer too large for the time type gets here.
            format!("{s:?} is outside the accepted range 1900-01-01 to 9999-12-31")
        } else {
            format!("cannot parse {s:?} as a timestamp ({EXPECTED})")
        }
    })?;
    check_time(t)
        .map_err(|_| format!("{s:?} is outside the accepted range 1900-01-01 to 9999-12-31"))?;
    Ok(t)
}

fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Parses a timestamp in any of the accepted forms; `None` if it is none of them, or if it is a
/// number of seconds too large for a [`Timestamp`] (it does not saturate).
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.is_empty() {
        return None;
    }
    if is_integer(s) {
        let secs: i64 = s.parse().ok()?;
        return Some(Timestamp::from_micros(secs.checked_mul(1_000_000)?));
    }
    let mut c = Cursor { b, i: 0 };
    let year = c.number(4, 4)?;
    c.expect(b'-')?;
    let month = c.number(1, 2)?;
    c.expect(b'-')?;
    let day = c.number(1, 2)?;
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    if c.done() {
        return Some(Timestamp::from_micros(
            date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros(),
        ));
    }
    match c.next()? {
        b'T' | b't' | b' ' => {}
        _ => return None,
    }
    let hour = c.number(1, 2)?;
    c.expect(b':')?;
    let minute = c.number(1, 2)?;
    let mut second = 0;
    let mut micros = 0;
    if c.peek() == Some(b':') {
        c.i += 1;
        second = c.number(1, 2)?;
        if matches!(c.peek(), Some(b'.' | b',')) {
            c.i += 1;
            let start = c.i;
            let mut scale = 100_000;
            while let Some(d) = c.peek().filter(u8::is_ascii_digit) {
                micros += u32::from(d - b'0') * scale;
                scale /= 10;
                c.i += 1;
            }
            if c.i == start {
                return None;
            }
        }
    }
    let offset_secs: i64 = match c.next() {
        None => 0,
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let hh = c.number(2, 2)?;
            if c.peek() == Some(b':') {
                c.i += 1;
            }
            let mm = if c.done() { 0 } else { c.number(2, 2)? };
            if hh > 23 || mm > 59 {
                return None;
            }
            let o = i64::from(hh * 3600 + mm * 60);
            if sign == b'-' { -o } else { o }
        }
        Some(_) => return None,
    };
    if !c.done() {
        return None;
    }
    let dt = date.and_hms_micro_opt(hour, minute, second, micros)?;
    let us = dt
        .and_utc()
        .timestamp_micros()
        .checked_sub(offset_secs.checked_mul(1_000_000)?)?;
    Some(Timestamp::from_micros(us))
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Between `min` and `max` ASCII digits.
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        let mut v: u32 = 0;
        while self.i - start < max {
            match self.peek() {
                Some(d) if d.is_ascii_digit() => {
                    v = v * 10 + u32::from(d - b'0');
                    self.i += 1;
                }
                _ => break,
            }
        }
        (self.i - start >= min).then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> String {
        parse_timestamp(s).map_or_else(|| "none".to_owned(), |t| t.to_string())
    }

    #[test]
    fn forms() {
        assert_eq!(
            t("2011-10-01T00:38:44.546+02:00"),
            "2011-09-30T22:38:44.546Z"
        );
        assert_eq!(t("2023-04-03T10:08:18Z"), "2023-04-03T10:08:18Z");
        assert_eq!(t("2012-04-03T16:55:38"), "2012-04-03T16:55:38Z");
        assert_eq!(t("2012-04-03 16:55:38"), "2012-04-03T16:55:38Z");
        assert_eq!(t("2012-04-03 1:04:54"), "2012-04-03T01:04:54Z");
        assert_eq!(t("2012-04-03 01:04:54.25"), "2012-04-03T01:04:54.250Z");
        assert_eq!(t("2012-04-03T01:04:54-0130"), "2012-04-03T02:34:54Z");
        assert_eq!(t("2012-04-03"), "2012-04-03T00:00:00Z");
        assert_eq!(t("807256800"), "1995-08-01T06:00:00Z");
        assert_eq!(t("2012-04-03 16:55"), "2012-04-03T16:55:00Z");
    }

    #[test]
    fn huge_seconds_do_not_saturate() {
        assert_eq!(t("9223372036855"), "none");
        assert_eq!(t("-9223372036855"), "none");
        let msg = parse_checked("9223372036855").unwrap_err();
        assert!(msg.contains("outside the accepted range"), "{msg}");
        let msg = parse_checked("9223372036854").unwrap_err();
        assert!(msg.contains("outside the accepted range"), "{msg}");
        let msg = parse_checked("0001-01-01").unwrap_err();
        assert!(msg.contains("outside the accepted range"), "{msg}");
        assert!(parse_checked("253402300799").is_ok());
        let msg = parse_checked("yesterday").unwrap_err();
        assert!(msg.contains("cannot parse \"yesterday\""), "{msg}");
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "2012-13-45 xx",
            "2012-02-30 10:00:00",
            "2012-04-03 25:00:00",
            "2012-04-03T10:00:00+25:00",
            "2012-04-03T10:00:00 junk",
            "12-04-03",
            "2012-04-03 10:00:00.",
            "abc",
        ] {
            assert_eq!(t(s), "none", "{s}");
        }
    }
}

//! Parsing of human durations on the command line: `250us`, `2ms`, `0.1ms`, `30s`, `5m`, `1h`, `1d`, `none`.

use std::time::Duration;

/// Parses a duration such as `2ms`, `0.1ms`, `1h` or `1d`. A bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!(
            "invalid duration {s:?}: expected a number and a unit, e.g. 2ms, 0.1ms, 30s, 1h, 1d"
        )
    })?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "m" | "min" | "mins" => value * 60.0,
        "h" | "hr" | "hour" | "hours" => value * 3600.0,
        "d" | "day" | "days" => value * 86_400.0,
        other => {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {other:?} (use us, ms, s, m, h or d)"
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "invalid duration {s:?}: must be a finite, non-negative time"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration limit that may be absent (`none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<Duration>);

/// Like [`parse_duration`], but `none` (or `off`, `inf`) means no limit.
pub fn parse_optional_duration(s: &str) -> Result<Limit, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "none" | "off" | "inf" | "infinite" => Ok(Limit(None)),
        _ => parse_duration(s).map(|d| Limit(Some(d))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_duration("0.1ms"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_optional_duration("none"), Ok(Limit(None)));
        assert!(parse_duration("2 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}

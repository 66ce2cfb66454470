//! Quantities as users write them on the command line: sizes and spans
//! of time.

use crate::error::{Error, Result};

/// Parses `123`, `100k`, `64M`, `2G`, `1T` (powers of 1024, case-insensitive).
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_lowercase() {
                'k' => 1u64 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                'b' => 1,
                _ => {
                    return Err(Error::invalid(format!(
                        "invalid size {s:?}: use k, m, g or t"
                    )))
                }
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| Error::invalid(format!("invalid size {s:?}")))?;
    n.checked_mul(mult)
        .ok_or_else(|| Error::invalid(format!("size {s:?} is too large")))
}

/// A span of time in seconds, as grace periods, ages and intervals are
/// given: `0`, `30s`, `15m`, `24h`, `2d`, `1h30m` (jiff's friendly
/// format; a day is 24 hours). Not `forget --keep-within`'s grammar,
/// which is restic's and where `m` means months
/// ([`crate::ops::forget::KeepDuration`]).
pub fn parse_duration(s: &str) -> Result<u64> {
    if s.trim() == "0" {
        return Ok(0);
    }
    // Days and weeks count 24 hours and 7 days (as a grace period or an
    // age means), not calendar days.
    let span: jiff::Span = s.parse().map_err(|e| {
        Error::invalid(format!(
            "invalid duration {s:?} (use e.g. 26h, 7d, 30m, 0): {e}"
        ))
    })?;
    let secs = span
        .total((
            jiff::Unit::Second,
            jiff::SpanRelativeTo::days_are_24_hours(),
        ))
        .map_err(|e| {
            Error::invalid(format!(
                "invalid duration {s:?} (use e.g. 26h, 7d, 30m, 0): {e}"
            ))
        })?;
    if secs < 0.0 {
        return Err(Error::invalid(format!("duration {s:?} is negative")));
    }
    Ok(secs.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_count_days_of_24_hours() {
        assert_eq!(parse_duration("0").expect("test"), 0);
        assert_eq!(parse_duration("90s").expect("test"), 90);
        assert_eq!(parse_duration("1h30m").expect("test"), 5400);
        assert_eq!(parse_duration("2d").expect("test"), 172_800);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1h").is_err());
    }
}

//! Go-style durations (`5m`, `1h30m`, `500ms`, `1.5s`), as Flux's flags and
//! Provider `timeout` use them.

use std::time::{Duration, Instant};

/// The longest duration Go accepts (`math.MaxInt64` nanoseconds, about 292
/// years). Anything longer is refused, as Go's `time.ParseDuration` does, so
/// no flag or Provider `timeout` can overflow time arithmetic later.
pub const MAX: Duration = Duration::new(9_223_372_036, 854_775_807);

/// `now + duration`, saturating: past what an `Instant` can hold (or past
/// [`MAX`]), the result is as late as can be said. Never panics.
pub fn after(now: Instant, duration: Duration) -> Instant {
    now.checked_add(duration)
        .or_else(|| now.checked_add(MAX))
        .unwrap_or(now)
}

/// `1 << 63`: Go's bound on the magnitude of a duration in nanoseconds.
const LIMIT: u64 = 1 << 63;

/// Parses a Go duration, with Go's own integer algorithm
/// (`time.ParseDuration`): the same inputs accepted, the same nanoseconds
/// (fractions truncated, not rounded), up to Go's maximum
/// `2562047h47m16.854775807s`. A negative duration, which Go accepts, is
/// refused: no flag or `timeout` herald reads means anything negative.
/// Used by clap for every duration flag.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (expected e.g. 30s, 5m, 1h30m, 500ms)");
    let out_of_range = || {
        format!("duration {text:?} is out of range (at most 2562047h47m16.854775807s, as in Go)")
    };
    let mut rest = text;
    let mut negative = false;
    if let Some(sign @ ('-' | '+')) = rest.chars().next() {
        negative = sign == '-';
        rest = &rest[1..];
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        if !rest.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let before = rest.len();
        let (whole, after_whole) = leading_int(rest).ok_or_else(out_of_range)?;
        rest = after_whole;
        let had_whole = before != rest.len();
        let (mut fraction, mut scale, mut had_fraction) = (0u64, 1f64, false);
        if let Some(after_dot) = rest.strip_prefix('.') {
            let before = after_dot.len();
            let (f, s, after_fraction) = leading_fraction(after_dot);
            (fraction, scale) = (f, s);
            rest = after_fraction;
            had_fraction = before != rest.len();
        }
        if !had_whole && !had_fraction {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(format!("missing unit in duration {text:?}"));
        }
        let unit: u64 = match &rest[..unit_len] {
            "ns" => 1,
            // Go takes the micro sign and the Greek mu alike.
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(format!("unknown unit {other:?} in duration {text:?}")),
        };
        rest = &rest[unit_len..];
        if whole > LIMIT / unit {
            return Err(out_of_range());
        }
        let mut value = whole * unit;
        if fraction > 0 {
            // As Go: float64 keeps fractions of hours nanosecond-exact.
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(out_of_range());
            }
        }
        total = total.checked_add(value).ok_or_else(out_of_range)?;
        if total > LIMIT {
            return Err(out_of_range());
        }
    }
    if negative {
        return Err(format!(
            "invalid duration {text:?}: a negative duration means nothing here"
        ));
    }
    if total > LIMIT - 1 {
        return Err(out_of_range());
    }
    Ok(Duration::from_nanos(total))
}

/// Go's `leadingInt`: the leading digits as a number (`None` past 1 << 63).
fn leading_int(text: &str) -> Option<(u64, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let mut value: u64 = 0;
    for digit in text[..digits].bytes() {
        if value > LIMIT / 10 {
            return None;
        }
        value = value * 10 + u64::from(digit - b'0');
        if value > LIMIT {
            return None;
        }
    }
    Some((value, &text[digits..]))
}

/// Go's `leadingFraction`: the digits after the dot, as a number and its
/// scale; digits past what a u64 holds are skipped, as Go skips them.
fn leading_fraction(text: &str) -> (u64, f64, &str) {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (mut value, mut scale, mut overflow) = (0u64, 1f64, false);
    for digit in text[..digits].bytes() {
        if overflow {
            continue;
        }
        if value > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let next = value * 10 + u64::from(digit - b'0');
        if next > LIMIT {
            overflow = true;
            continue;
        }
        value = next;
        scale *= 10.0;
    }
    (value, scale, &text[digits..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "m", "5x", "1..2s", "-1s", ".s", "1.s.", "+"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn after_saturates() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert!(after(now, Duration::MAX) > now);
    }

    #[test]
    fn durations_beyond_gos_range_are_refused() {
        assert_eq!(parse("2562047h"), Ok(Duration::from_secs(2_562_047 * 3600)));
        for absurd in [
            "3000000000000000h",
            "2562048h",
            "1e300h",
            "99999999999999999999999s",
        ] {
            let error = parse(absurd).expect_err(absurd);
            assert!(error.contains(absurd), "{error}");
        }
    }
}

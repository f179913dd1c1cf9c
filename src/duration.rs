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

/// Parses a Go duration. Used by clap for every duration flag.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (expected e.g. 30s, 5m, 1h30m, 500ms)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let value: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    let duration = Duration::try_from_secs_f64(total).map_err(|_| invalid())?;
    if duration > MAX {
        return Err(format!(
            "duration {text:?} is out of range (at most 2562047h47m16.854775807s, as in Go)"
        ));
    }
    Ok(duration)
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
        for bad in ["", "5", "m", "5x", "1..2s", "-1s"] {
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

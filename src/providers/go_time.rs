//! Event timestamps as Flux's Go code formats them: Go parses the event's
//! RFC 3339 `timestamp` into a `time.Time` (the zero time when there is
//! none) and providers print it again with `time.RFC3339` (UTC, whole
//! seconds) or as Unix seconds.

use k8s_openapi::jiff::Timestamp;

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`) in Unix seconds.
const GO_ZERO_UNIX: i64 = -62_135_596_800;

fn parse(timestamp: &str) -> Option<Timestamp> {
    timestamp.parse().ok()
}

/// `time.Time.Format(time.RFC3339)` of the event's timestamp.
pub fn rfc3339(timestamp: &str) -> String {
    parse(timestamp).map_or_else(
        || "0001-01-01T00:00:00Z".to_owned(),
        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// `time.Time.Unix()` of the event's timestamp.
pub fn unix(timestamp: &str) -> i64 {
    parse(timestamp).map_or(GO_ZERO_UNIX, |t| t.as_second())
}

/// `max(0, time.Time.UnixNano())` of the event's timestamp, as OTLP
/// exporters write span times (0 when there is none).
pub fn unix_nanos(timestamp: &str) -> u64 {
    parse(timestamp).map_or(0, |t| {
        u64::try_from(t.as_nanosecond().max(0)).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(rfc3339("2026-11-20T07:26:19Z"), "2026-11-20T07:26:19Z");
        assert_eq!(
            rfc3339("2026-11-20T09:26:19.123+02:00"),
            "2026-11-20T07:26:19Z"
        );
        assert_eq!(rfc3339(""), "0001-01-01T00:00:00Z");
        assert_eq!(unix("1970-01-01T00:01:00Z"), 60);
        assert_eq!(unix(""), GO_ZERO_UNIX);
        assert_eq!(unix_nanos("1970-01-01T00:01:00.5Z"), 60_500_000_000);
        assert_eq!(unix_nanos(""), 0);
    }
}

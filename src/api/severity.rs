//! Event severities and the Alert's severity filter (DESIGN §3.2).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Severity of a Flux event, ordered from least to most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Trace,
    Info,
    Warn,
    Error,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Self::Trace, Self::Info, Self::Warn, Self::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|sev| sev.as_str() == s)
            .ok_or_else(|| format!("unknown severity {s:?} (expected trace, info, warn or error)"))
    }
}

/// `spec.eventSeverity`: a threshold (`error` = errors only, `info` = info and above)
/// or an explicit list of the severities to deliver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SeverityFilter {
    AtLeast(Severity),
    Exactly(Vec<Severity>),
}

impl SeverityFilter {
    /// The filter as a bit set, so routing tests a severity with one AND.
    pub fn mask(&self) -> SeverityMask {
        match self {
            Self::AtLeast(min) => SeverityMask(
                Severity::ALL
                    .into_iter()
                    .filter(|s| s >= min)
                    .fold(0, |m, s| m | s.bit()),
            ),
            Self::Exactly(list) => SeverityMask(list.iter().fold(0, |m, s| m | s.bit())),
        }
    }
}

/// Decoded by hand so that a wrong value is named the way the API server
/// names it ("unsupported value"), not as serde's "did not match any variant
/// of untagged enum".
impl<'de> Deserialize<'de> for SeverityFilter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FilterVisitor)
    }
}

const SUPPORTED: &str = r#"supported values: "trace", "info", "warn", "error", or a list of them"#;

struct FilterVisitor;

impl<'de> serde::de::Visitor<'de> for FilterVisitor {
    type Value = SeverityFilter;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a severity or a list of severities ({SUPPORTED})")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        parse_severity(text).map(SeverityFilter::AtLeast)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut items: A,
    ) -> Result<Self::Value, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = items.next_element::<SeverityItem>()? {
            list.push(item.0);
        }
        if list.is_empty() {
            return Err(serde::de::Error::custom(format!(
                "an empty list delivers nothing; {SUPPORTED}"
            )));
        }
        Ok(SeverityFilter::Exactly(list))
    }
}

/// One item of the list form, with the same message as the scalar form.
struct SeverityItem(Severity);

impl<'de> Deserialize<'de> for SeverityItem {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl serde::de::Visitor<'_> for ItemVisitor {
            type Value = SeverityItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a severity ({SUPPORTED})")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                parse_severity(text).map(SeverityItem)
            }
        }
        deserializer.deserialize_str(ItemVisitor)
    }
}

fn parse_severity<E: serde::de::Error>(text: &str) -> Result<Severity, E> {
    text.parse().map_err(|_| {
        let shown: String = text.chars().take(40).collect();
        E::custom(format!("unsupported value {shown:?}: {SUPPORTED}"))
    })
}

/// A compiled severity filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeverityMask(u8);

impl SeverityMask {
    pub fn contains(self, severity: Severity) -> bool {
        self.0 & severity.bit() != 0
    }
}

/// Every list form the API server accepts: one to four distinct
/// severities, in any order (64 lists). The node cannot be typed (it is a
/// string or a list), so neither `items` nor a CEL rule can reach inside
/// it (the API server builds no CEL type for an untyped node), and value
/// validations such as `minItems` pass any string: listing the lists is
/// the one check that refuses `[info, erorr]` as Flux's enum refuses
/// `erorr`.
fn severity_lists() -> Vec<Vec<&'static str>> {
    fn extend(prefix: &mut Vec<&'static str>, out: &mut Vec<Vec<&'static str>>) {
        if !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for severity in Severity::ALL {
            if !prefix.contains(&severity.as_str()) {
                prefix.push(severity.as_str());
                extend(prefix, out);
                prefix.pop();
            }
        }
    }
    let mut lists = Vec::new();
    extend(&mut Vec::new(), &mut lists);
    lists.sort_by_key(Vec::len);
    lists
}

/// The schema must be structural (DESIGN §3.1): a string or a list cannot be
/// typed, so the node keeps unknown fields and carries only value validations.
impl JsonSchema for SeverityFilter {
    fn schema_name() -> Cow<'static, str> {
        "SeverityFilter".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Severities to deliver: a threshold string (trace, info, warn, error; \
                'info' delivers info, warn and error) or a list of exact severities. \
                Absent: error only, unless herald runs with --default-event-severity.",
            "x-kubernetes-preserve-unknown-fields": true,
            "anyOf": [
                {"enum": ["trace", "info", "warn", "error"]},
                {"enum": severity_lists()}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(yaml: &str) -> SeverityFilter {
        serde_json::from_value(crate::yaml::parse_document(yaml).expect("yaml"))
            .expect("valid filter")
    }

    #[test]
    fn threshold_includes_higher_severities() {
        let info = filter("info").mask();
        assert!(!info.contains(Severity::Trace));
        assert!(info.contains(Severity::Info));
        assert!(info.contains(Severity::Warn));
        assert!(info.contains(Severity::Error));
        let error = filter("error").mask();
        assert!(error.contains(Severity::Error));
        assert!(!error.contains(Severity::Warn));
    }

    #[test]
    fn list_matches_exactly() {
        let mask = filter(r#"["error", "warn"]"#).mask();
        assert!(mask.contains(Severity::Error));
        assert!(mask.contains(Severity::Warn));
        assert!(!mask.contains(Severity::Info));
        let only_info = filter("[info]").mask();
        assert!(only_info.contains(Severity::Info));
        assert!(!only_info.contains(Severity::Error));
    }

    #[test]
    fn ordering_and_parsing() {
        assert!(Severity::Trace < Severity::Info);
        assert!(Severity::Info < Severity::Warn);
        assert!(Severity::Warn < Severity::Error);
        assert_eq!("warn".parse::<Severity>(), Ok(Severity::Warn));
        assert!("fatal".parse::<Severity>().is_err());
        assert!(serde_json::from_value::<SeverityFilter>(serde_json::json!("fatal")).is_err());
    }
}

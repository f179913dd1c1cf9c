//! YAML in and out, through serde-saphyr.
//!
//! serde-saphyr was chosen over the deprecated `serde_yaml` and its forks:
//! it is actively maintained, pure safe Rust (no libyaml port), never
//! panics on malformed input, and bounds the work a hostile document can
//! cause (alias expansion, nesting depth, total scalar bytes) with budgets.
//! Documents are parsed into `serde_json::Value`, the shape Kubernetes
//! objects have anyway, so `serde_path_to_error` can name a failing field.

use serde::Serialize;
use serde_json::Value;

/// Parse options: errors carry line and column but never a snippet of the
/// source, which could quote a Secret's value.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        with_snippet: false,
    }
}

/// Parses one YAML document (a manifest file is split into documents first).
pub fn parse_document(text: &str) -> Result<Value, String> {
    serde_saphyr::from_str_with_options::<Value>(text, options()).map_err(|e| e.to_string())
}

/// Parses a multi-document YAML stream.
pub fn parse_stream(text: &str) -> Result<Vec<Value>, String> {
    serde_saphyr::from_multiple_with_options::<Value>(text, options()).map_err(|e| e.to_string())
}

/// Serializes a value as one YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, String> {
    serde_saphyr::to_string(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_give_the_place_and_never_quote_the_source() {
        let error = parse_document("a: 1\nb: [unclosed, hunter2\n").expect_err("broken");
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("line") || error.contains(':'), "{error}");
    }

    #[test]
    fn round_trips_kubernetes_shaped_values() {
        let value =
            parse_document("kind: Secret\nstringData: {token: '12345', n: 1}\n").expect("valid");
        assert_eq!(value["stringData"]["token"], "12345");
        assert_eq!(value["stringData"]["n"], 1);
        let text = to_string(&value).expect("serializes");
        assert_eq!(parse_document(&text).expect("valid"), value);
    }

    #[test]
    fn streams_split_into_documents() {
        let docs = parse_stream("a: 1\n---\nb: 2\n").expect("valid");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["b"], 2);
    }

    /// An alias bomb is refused by the budget instead of exhausting memory.
    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse_document(&text).is_err());
    }
}

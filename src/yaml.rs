//! YAML in and out, through serde-saphyr.
//!
//! serde-saphyr was chosen over the deprecated `serde_yaml` and its forks:
//! it is actively maintained, pure safe Rust (no libyaml port), never
//! panics on malformed input, and bounds the work a hostile document can
//! cause (alias expansion, nesting depth, total scalar bytes) with budgets.
//! Documents are parsed into `serde_json::Value`, the shape Kubernetes
//! objects have anyway, so `serde_path_to_error` can name a failing field.
//!
//! Loading ten thousand objects is mostly YAML parsing, and half of that
//! was serde-saphyr's general machinery (anchors, merge keys, budgets,
//! typed scalars) that plain manifests never use. [`plain`] builds the
//! value straight from the parser's events for documents made only of
//! mappings, sequences, strings and decimal integers, and gives up on
//! anything else, which serde-saphyr then parses: the answer is the same
//! either way (a test holds the two to it), only the cost differs.

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
    if let Some(value) = plain::parse(text) {
        return Ok(value);
    }
    serde_saphyr::from_str_with_options::<Value>(text, options()).map_err(|e| e.to_string())
}

/// The plain shape of manifests, read from the parser's events.
mod plain {
    use std::borrow::Cow;

    use granit_parser::{Event, Parser, ScalarStyle};
    use serde_json::{Map, Number, Value};

    /// Deeper documents are left to serde-saphyr, whose budget refuses
    /// absurd nesting with an error that says so.
    const MAX_DEPTH: usize = 64;

    /// Plain scalars that YAML 1.1 or 1.2 read as something other than a
    /// string (compared ignoring case).
    const NOT_STRINGS: [&str; 14] = [
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "inf", "nan", "infinity",
        "nil", "none",
    ];

    /// An open collection.
    enum Open {
        Sequence(Vec<Value>),
        /// A mapping and the key waiting for its value.
        Mapping(Map<String, Value>, Option<String>),
    }

    /// The document's value, or `None` when it uses anything beyond plain
    /// mappings, sequences, strings and decimal integers (anchors,
    /// aliases, tags, merge keys, duplicate keys, other scalar types,
    /// directives, several documents) or does not parse.
    pub fn parse(text: &str) -> Option<Value> {
        let mut open: Vec<Open> = Vec::new();
        let mut root = None;
        let mut documents = 0;
        for event in Parser::new_from_str(text) {
            let (event, _) = event.ok()?;
            let value = match event {
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
                Event::DocumentStart(_, version) => {
                    documents += 1;
                    if documents > 1 || version.is_some() {
                        return None;
                    }
                    continue;
                }
                Event::Scalar(text, style, 0, None) => scalar(text, style)?,
                Event::SequenceStart(_, 0, None) | Event::MappingStart(_, 0, None)
                    if open.len() >= MAX_DEPTH =>
                {
                    return None;
                }
                Event::SequenceStart(_, 0, None) => {
                    open.push(Open::Sequence(Vec::new()));
                    continue;
                }
                Event::MappingStart(_, 0, None) => {
                    open.push(Open::Mapping(Map::new(), None));
                    continue;
                }
                Event::SequenceEnd => match open.pop()? {
                    Open::Sequence(items) => Value::Array(items),
                    Open::Mapping(..) => return None,
                },
                Event::MappingEnd => match open.pop()? {
                    Open::Mapping(map, None) => Value::Object(map),
                    _ => return None,
                },
                _ => return None,
            };
            match open.last_mut() {
                None if root.is_none() => root = Some(value),
                None => return None,
                Some(Open::Sequence(items)) => items.push(value),
                Some(Open::Mapping(map, pending)) => match pending.take() {
                    Some(key) => {
                        map.insert(key, value);
                    }
                    None => match value {
                        Value::String(key) if !map.contains_key(&key) => *pending = Some(key),
                        _ => return None,
                    },
                },
            }
        }
        if !open.is_empty() {
            return None;
        }
        root
    }

    /// A scalar that is certainly a string or a decimal integer. The
    /// parser's text is moved into the value, not copied, when it owns it.
    fn scalar(text: Cow<'_, str>, style: ScalarStyle) -> Option<Value> {
        if style != ScalarStyle::Plain {
            return Some(Value::String(text.into_owned()));
        }
        let first = text.chars().next()?;
        if first.is_ascii_alphabetic() {
            let special = NOT_STRINGS.iter().any(|s| s.eq_ignore_ascii_case(&text));
            return (!special).then(|| Value::String(text.into_owned()));
        }
        integer(&text).map(Value::Number)
    }

    /// `0`, or digits not starting with 0, optionally negative, that fit.
    fn integer(text: &str) -> Option<Number> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        let plain = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && text != "-0";
        if !plain {
            return None;
        }
        match text.parse::<u64>() {
            Ok(n) => Some(Number::from(n)),
            Err(_) => text.parse::<i64>().ok().map(Number::from),
        }
    }
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

    /// The plain reading gives exactly serde-saphyr's value, or leaves the
    /// document to it: on every manifest the tests use and on documents
    /// made to sit on the edges (scalars YAML types, keys, anchors, tags,
    /// block scalars, flow style, nesting).
    #[test]
    fn the_plain_reading_agrees_with_serde_saphyr() {
        let mut documents: Vec<String> = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures"
        ))];
        dirs.push(concat!(env!("CARGO_MANIFEST_DIR"), "/examples").into());
        dirs.push(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy").into());
        dirs.push(concat!(env!("CARGO_MANIFEST_DIR"), "/crds").into());
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("readable").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    let text = std::fs::read_to_string(&path).expect("text");
                    documents.extend(text.split("\n---").map(str::to_owned));
                }
            }
        }
        let from_files = documents.len();
        assert!(from_files > 25, "{from_files} documents found");
        let edges = [
            "a: yes",
            "a: No",
            "a: on",
            "a: OFF",
            "a: y",
            "a: ~",
            "a: null",
            "a: Null",
            "a:",
            "a: true",
            "a: False",
            "a: 1.5",
            "a: 0x1F",
            "a: 0o17",
            "a: 012",
            "a: -0",
            "a: 0",
            "a: -12",
            "a: +12",
            "a: 1_000",
            "a: 99999999999999999999",
            "a: -9223372036854775808",
            "a: 18446744073709551615",
            "a: .inf",
            "a: -.Inf",
            "a: .NaN",
            "a: inf",
            "a: NaN",
            "a: 2001-12-14t21:59:43.10-05:00",
            "a: 1e3",
            "a: '1'",
            "a: \"yes\"",
            "a: it's",
            "a: 'it''s'",
            "a: \"\\u00e9\\t\"",
            "a: !!str 5",
            "a: !custom x",
            "a: &x 1\nb: *x",
            "base: &b {x: 1}\nc: {<<: *b, y: 2}",
            "a: 1\na: 2",
            "1: a",
            "true: a",
            "? [x]\n: y",
            "a: |\n  line\n  two\n",
            "a: >-\n  folded\n  text\n",
            "a: plain\n  continued",
            "a: [1, b, {c: d}, [e]]",
            "- a\n- 1\n- {b: [c]}",
            "%YAML 1.2\n---\na: 1",
            "just text",
            "42",
            "",
            "# only a comment",
            "a: {b: [",
            "a: \"unterminated",
            "a: x # comment\nb: y",
            "a: 'x'  # comment",
            "a: ^regex\\b",
            "a: /path",
            "a: http://x:1/y",
            "a: ns-000/app-0",
            "a: Non\u{e9}",
            "a: \u{e9}t\u{e9}",
            "a: @x",
            "a: `x`",
            "a:\n- 1\n- two",
            "a: {b: 1, b: 2}",
            "a: [[[[[[1]]]]]]",
            "a: none",
            "a: Nil",
            "a: 00",
            "a: -",
        ];
        documents.extend(edges.iter().map(|e| (*e).to_owned()));
        let deep = format!("a: {}1{}", "[".repeat(100), "]".repeat(100));
        documents.push(deep);
        // Each manifest with one character replaced, along its length.
        let manifests: Vec<String> = documents[..from_files]
            .iter()
            .filter(|d| d.len() < 2_000)
            .cloned()
            .collect();
        for manifest in manifests {
            let chars: Vec<char> = manifest.chars().collect();
            for (i, with) in [
                ' ', ':', '-', '#', '\'', '"', '\n', '{', '[', '0', 'y', '&', '!',
            ]
            .iter()
            .cycle()
            .enumerate()
            .take(chars.len())
            .step_by(3)
            {
                let mut mutated = chars.clone();
                mutated[i] = *with;
                documents.push(mutated.into_iter().collect());
            }
        }
        let mut plain_read = 0;
        for document in &documents {
            let Some(fast) = plain::parse(document) else {
                continue;
            };
            plain_read += 1;
            let slow = serde_saphyr::from_str_with_options::<Value>(document, options())
                .map_err(|e| e.to_string());
            assert_eq!(Ok(fast), slow, "{document:?}");
        }
        // The fast path is not dead code: most real manifests take it.
        assert!(
            plain_read * 2 > from_files,
            "{plain_read} of {from_files} read plainly"
        );
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

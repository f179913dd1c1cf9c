//! `labelSelector` and `fieldSelector` query parameters, with the syntax
//! and the supported fields of kube-apiserver.

use serde_json::Value;

use super::resources::Resource;
use super::status::ApiError;

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Eq,
    NotEq,
    In,
    NotIn,
    Exists,
    NotExists,
}

#[derive(Clone, Debug)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    /// Labels: a missing key never equals but always "not equals".
    fn matches(&self, value: Option<&str>) -> bool {
        match self.op {
            Op::Eq | Op::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotEq | Op::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Op::Exists => value.is_some(),
            Op::NotExists => value.is_none(),
        }
    }
}

/// Both selectors of a list or watch request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Selector {
    pub fn parse(
        res: &Resource,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Self, ApiError> {
        let labels = match labels {
            Some(s) => parse_labels(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            None => Vec::new(),
        };
        let fields = match fields {
            Some(s) => parse_fields(res, s)?,
            None => Vec::new(),
        };
        Ok(Self { labels, fields })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether `object` (as the requested API shows it) is selected.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        self.labels
            .iter()
            .all(|r| r.matches(labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str)))
            && self.fields.iter().all(|r| {
                let pointer = format!("/{}", r.key.replace('.', "/"));
                let value = object.pointer(&pointer).map(field_text);
                // Fields always have a value for selection (absent = "").
                r.matches(Some(value.as_deref().unwrap_or("")))
            })
    }
}

fn field_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Splits on commas outside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn valid_key(key: &str) -> Result<String, String> {
    let ok = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(key.to_owned())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn valid_value(value: &str) -> Result<String, String> {
    let value = value.trim();
    let ok = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

/// `key in (a,b)` / `key notin (a,b)`; None when `term` is not set-based.
fn parse_set(term: &str) -> Option<Result<Requirement, String>> {
    let open = term.find('(')?;
    let head: Vec<&str> = term[..open].split_whitespace().collect();
    let [key, keyword] = head[..] else {
        return Some(Err(format!("invalid set requirement {term:?}")));
    };
    let op = match keyword {
        "in" => Op::In,
        "notin" => Op::NotIn,
        other => return Some(Err(format!("unknown operator {other:?}"))),
    };
    let Some(body) = term[open + 1..].trim_end().strip_suffix(')') else {
        return Some(Err(format!("missing ')' in {term:?}")));
    };
    let values: Result<Vec<String>, String> = body.split(',').map(valid_value).collect();
    Some(values.and_then(|values| {
        Ok(Requirement {
            key: valid_key(key)?,
            op,
            values,
        })
    }))
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    let term = term.trim();
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement {
            key: valid_key(key.trim())?,
            op: Op::NotExists,
            values: Vec::new(),
        });
    }
    if let Some(set) = parse_set(term) {
        return set;
    }
    for (token, op) in [("!=", Op::NotEq), ("==", Op::Eq), ("=", Op::Eq)] {
        if let Some((key, value)) = term.split_once(token) {
            return Ok(Requirement {
                key: valid_key(key.trim())?,
                op,
                values: vec![valid_value(value)?],
            });
        }
    }
    Ok(Requirement {
        key: valid_key(term)?,
        op: Op::Exists,
        values: Vec::new(),
    })
}

fn parse_labels(s: &str) -> Result<Vec<Requirement>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    terms(s).into_iter().map(parse_term).collect()
}

fn parse_fields(res: &Resource, s: &str) -> Result<Vec<Requirement>, ApiError> {
    let mut out = Vec::new();
    if s.trim().is_empty() {
        return Ok(out);
    }
    for term in s.split(',') {
        let parsed = [("!=", Op::NotEq), ("==", Op::Eq), ("=", Op::Eq)]
            .into_iter()
            .find_map(|(token, op)| term.split_once(token).map(|(k, v)| (k, op, v)));
        let Some((key, op, value)) = parsed else {
            return Err(ApiError::bad_request(format!(
                "invalid selector: '{s}'; can't understand '{term}'"
            )));
        };
        let key = key.trim();
        if !["metadata.name", "metadata.namespace"].contains(&key) && !res.selectable(key) {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {key}"
            )));
        }
        out.push(Requirement {
            key: key.to_owned(),
            op,
            values: vec![value.trim().to_owned()],
        });
    }
    Ok(out)
}

//! Alert message templates (DESIGN §3.10): minijinja templates compiled once
//! when the routing table is built, rendered per notification.
//!
//! A template bug never loses a notification: a syntax error is reported
//! when the table is built and the Alert sends the default format; a render
//! error at delivery time falls back to the default format for that
//! notification.

use std::collections::BTreeMap;

use minijinja::value::{Serde, Value};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::api::{FluxEvent, InvolvedObject, MessageTemplate};
use crate::notification::Notification;

/// Upper bound on the work one render may do, so a runaway loop in a
/// template cannot stall a delivery queue.
const RENDER_FUEL: u64 = 200_000;

const TEXT: &str = "text";
const BLOCKS: &str = "blocks";
const THREAD_KEY: &str = "threadKey";

/// The compiled templates of one Alert.
#[derive(Debug)]
pub struct CompiledTemplate {
    env: Environment<'static>,
    has_text: bool,
    has_blocks: bool,
    has_thread_key: bool,
}

/// What a template rendered for one notification.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    pub text: Option<String>,
    /// A JSON array (checked at render time).
    pub blocks: Option<serde_json::Value>,
    /// Empty keys are dropped: no thread.
    pub thread_key: Option<String>,
}

/// A template that does not compile: the field and a message with line and column.
#[derive(Debug, PartialEq, Eq)]
pub struct CompileError {
    pub field: &'static str,
    pub message: String,
}

impl CompiledTemplate {
    /// Compiles every field; all syntax errors are returned together.
    pub fn compile(spec: &MessageTemplate) -> Result<Self, Vec<CompileError>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(RENDER_FUEL));
        env.set_debug(true);
        env.add_filter("commit", commit);
        let mut errors = Vec::new();
        let fields = [
            (TEXT, "spec.template.text", &spec.text),
            (BLOCKS, "spec.template.blocks", &spec.blocks),
            (THREAD_KEY, "spec.template.threadKey", &spec.thread_key),
        ];
        for (name, field, source) in fields {
            let Some(source) = source.as_ref().filter(|s| !s.trim().is_empty()) else {
                continue;
            };
            if let Err(e) = env.add_template_owned(name, source.clone()) {
                errors.push(CompileError {
                    field,
                    message: describe_syntax_error(&e, source),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let has = |name| env.get_template(name).is_ok();
        Ok(Self {
            has_text: has(TEXT),
            has_blocks: has(BLOCKS),
            has_thread_key: has(THREAD_KEY),
            env,
        })
    }

    /// Whether the template renders Slack Block Kit blocks.
    pub fn has_blocks(&self) -> bool {
        self.has_blocks
    }

    /// Whether the template groups notifications into threads.
    pub fn has_thread_key(&self) -> bool {
        self.has_thread_key
    }

    /// Renders every field for one notification.
    pub fn render(&self, n: &Notification) -> Result<Rendered, String> {
        let context = Value::from(Serde(Context::of(n)));
        let render = |name: &str| -> Result<String, String> {
            let template = self.env.get_template(name).map_err(|e| e.to_string())?;
            template
                .render(context.clone())
                .map_err(|e| format!("spec.template.{name}: {e}"))
        };
        let text = match self.has_text {
            true => Some(render(TEXT)?.trim_end().to_owned()),
            false => None,
        };
        let blocks = match self.has_blocks {
            true => {
                let json = render(BLOCKS)?;
                let value: serde_json::Value = serde_json::from_str(&json)
                    .map_err(|e| format!("spec.template.blocks: rendered text is not JSON: {e}"))?;
                if !value.is_array() {
                    return Err(
                        "spec.template.blocks: must render to a JSON array of blocks".into(),
                    );
                }
                Some(value)
            }
            false => None,
        };
        let thread_key = match self.has_thread_key {
            true => Some(render(THREAD_KEY)?.trim().to_owned()).filter(|k| !k.is_empty()),
            false => None,
        };
        Ok(Rendered {
            text,
            blocks,
            thread_key,
        })
    }
}

/// The variables a template sees.
#[derive(Serialize)]
struct Context<'a> {
    event: &'a FluxEvent,
    object: &'a InvolvedObject,
    severity: &'static str,
    message: &'a str,
    reason: &'a str,
    /// Flux's event API v1: the action ("" for a v1beta1 event).
    action: &'a str,
    /// Flux's event API v1: the related object, when the event has one.
    related_object: Option<&'a InvolvedObject>,
    timestamp: &'a str,
    controller: &'a str,
    metadata: &'a BTreeMap<String, String>,
    revision: &'a str,
    alert: Named<'a>,
    provider: ProviderContext<'a>,
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
    namespace: &'a str,
}

#[derive(Serialize)]
struct ProviderContext<'a> {
    name: &'a str,
    namespace: &'a str,
    #[serde(rename = "type")]
    kind: String,
    channel: &'a str,
}

impl<'a> Context<'a> {
    fn of(n: &'a Notification) -> Self {
        let event = &*n.event;
        let route = &*n.route;
        Self {
            event,
            object: &event.involved_object,
            severity: event.severity.as_str(),
            message: &event.message,
            reason: &event.reason,
            action: &event.action,
            related_object: event.related_object.as_ref(),
            timestamp: &event.timestamp,
            controller: &event.reporting_controller,
            metadata: &n.metadata,
            revision: n.metadata.get("revision").map_or("", String::as_str),
            alert: Named {
                name: &route.alert.name,
                namespace: &route.alert.namespace,
            },
            provider: ProviderContext {
                name: &route.provider.name,
                namespace: &route.provider.namespace,
                kind: route.provider_type.as_str().to_owned(),
                channel: route.provider_channel.as_deref().unwrap_or(""),
            },
        }
    }
}

/// The `commit` filter: the Git SHA of a Flux revision (`main@sha1:<sha>`,
/// `sha1:<sha>`, legacy `main/<sha>`, or a bare SHA); "" for anything else,
/// such as a Helm chart version.
pub fn commit(revision: &str) -> String {
    let candidate = match revision.rsplit_once('@') {
        Some((_, digest)) => digest,
        None => revision,
    };
    let candidate = match candidate.split_once(':') {
        Some(("sha1" | "sha256", hex)) => hex,
        Some(_) => return String::new(),
        None => candidate.rsplit_once('/').map_or(candidate, |(_, sha)| sha),
    };
    let is_sha =
        matches!(candidate.len(), 40 | 64) && candidate.bytes().all(|b| b.is_ascii_hexdigit());
    if is_sha {
        candidate.to_owned()
    } else {
        String::new()
    }
}

fn describe_syntax_error(error: &minijinja::Error, source: &str) -> String {
    let detail = error.detail().unwrap_or("invalid template").to_owned();
    let line = error.line().unwrap_or(1);
    let column = error
        .range()
        .map(|range| {
            let start = range.start.min(source.len());
            let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
            source[line_start..start].chars().count() + 1
        })
        .unwrap_or(1);
    format!("syntax error at line {line}, column {column}: {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_extracts_git_shas_only() {
        let sha = "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1";
        assert_eq!(commit(&format!("main@sha1:{sha}")), sha);
        assert_eq!(commit(&format!("sha1:{sha}")), sha);
        assert_eq!(commit(&format!("main/{sha}")), sha);
        assert_eq!(commit(&format!("refs/heads/feature/x@sha1:{sha}")), sha);
        assert_eq!(commit(sha), sha);
        assert_eq!(commit("6.7.1"), "");
        assert_eq!(commit("v1.2.3@sha256:abc"), "");
        assert_eq!(commit(""), "");
    }

    #[test]
    fn syntax_errors_name_field_line_and_column() {
        let spec = MessageTemplate {
            text: Some("line one\n  {{ message }".into()),
            blocks: Some("[{% for %}]".into()),
            thread_key: Some("{{ ok }}".into()),
        };
        let errors = CompiledTemplate::compile(&spec).expect_err("syntax errors");
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].field, "spec.template.text");
        assert!(
            errors[0]
                .message
                .starts_with("syntax error at line 2, column "),
            "{}",
            errors[0].message
        );
        assert_eq!(errors[1].field, "spec.template.blocks");
    }
}

//! Telegram: Flux POSTs `sendMessage` to the Bot API,
//! `https://api.telegram.org/bot<token>/sendMessage`, with `{"chat_id",
//! "message_thread_id" (when the channel is `<chat>:<topic>`), "text",
//! "parse_mode": "MarkdownV2"}`. The text is the bold heading (`💫`, or
//! `🚨` for errors, and `<kind>/<name>/<namespace>`), the message and one
//! `\- *key*: value` line per metadata entry, every MarkdownV2 special
//! character escaped. A text template replaces the message and the
//! metadata lines (escaped too: it shows as written).
//!
//! Flux always uses `https://api.telegram.org` and ignores the address;
//! herald uses the address, when there is one, as the Bot API base (a
//! self-hosted Bot API server, or a test's lookalike) and `check` warns
//! that Flux would not.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::{
    Body, Invalid, Notifier, Request, Response, Settings, ThreadAnchor, Verdict, judge_status,
    listed_metadata, message_text,
};
use crate::api::Reason;
use crate::api::Severity;
use crate::mask::{self, SecretString};
use crate::notification::Notification;
use crate::template::Rendered;

/// The Bot API Flux always posts to.
const API: &str = "https://api.telegram.org";
/// What MarkdownV2 needs escaped (Flux's list).
const SPECIAL: &str = "\\.-_[]()~>`#+=|{}!*";

pub struct Telegram {
    settings: Settings,
    /// `<base>/bot<token>/sendMessage`.
    url: SecretString,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let token = settings
        .token
        .as_ref()
        .filter(|t| !t.expose().is_empty())
        .ok_or_else(|| Invalid::Setting {
            reason: Reason::SecretKeyMissing,
            message: "telegram needs the bot token in the 'token' key of spec.secretRef's Secret"
                .into(),
        })?;
    if settings.channel.is_none() {
        return Err(Invalid::Setting {
            reason: Reason::ChannelMissing,
            message: "telegram needs spec.channel: the chat id (or @channel, or <chat>:<topic>)"
                .into(),
        });
    }
    let base = settings
        .address
        .as_ref()
        .map_or(API, |a| a.expose())
        .trim_end_matches('/');
    let url = SecretString::new(format!("{base}/bot{}/sendMessage", token.expose()));
    Ok(Arc::new(Telegram { settings, url }))
}

#[derive(Serialize)]
struct Payload<'a> {
    chat_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message_thread_id: &'a str,
    text: String,
    parse_mode: &'static str,
}

/// `text` with every MarkdownV2 special character escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if SPECIAL.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Flux's message text.
fn text(n: &Notification, rendered: Option<&Rendered>) -> String {
    let emoji = match n.event.severity {
        Severity::Error => "🚨",
        _ => "💫",
    };
    let object = &n.event.involved_object;
    let heading = format!(
        "{emoji} {}/{}/{}",
        object.kind.to_lowercase(),
        object.name,
        object.namespace
    );
    let mut text = format!(
        "*{}*\n{}\n",
        escape(&heading),
        escape(message_text(n, rendered))
    );
    for (key, value) in listed_metadata(n, rendered) {
        let _ = writeln!(text, "\\- *{}*: {}", escape(key), escape(value));
    }
    text
}

impl Notifier for Telegram {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let channel = n.route.channel().unwrap_or("");
        let (chat_id, thread) = channel.split_once(':').unwrap_or((channel, ""));
        let payload = Payload {
            chat_id,
            message_thread_id: thread,
            text: text(n, rendered),
            parse_mode: "MarkdownV2",
        };
        Ok(Request::post(&self.url, Body::json(&payload)?))
    }

    /// The Bot API answers `{"ok": false, "description", "parameters":
    /// {"retry_after"}}` on failure: a 429 waits `retry_after` seconds when
    /// no `Retry-After` header says otherwise.
    fn judge(&self, response: &Response<'_>) -> Verdict {
        let body: Option<Value> = serde_json::from_slice(response.body).ok();
        let description = body
            .as_ref()
            .and_then(|b| b["description"].as_str())
            .unwrap_or("")
            .to_owned();
        match judge_status(response) {
            Verdict::Delivered if body.as_ref().is_some_and(|b| b["ok"] == false) => {
                Verdict::Fail(format!("Telegram refused the message: {description}"))
            }
            Verdict::Retry { reason, after } => Verdict::Retry {
                reason,
                after: after.or_else(|| {
                    body.as_ref()
                        .and_then(|b| b["parameters"]["retry_after"].as_u64())
                        .filter(|_| !response.headers.contains_key("retry-after"))
                        .map(Duration::from_secs)
                }),
            },
            verdict => verdict,
        }
    }

    fn masked_address(&self) -> String {
        mask::url(self.url.expose())
    }

    fn secrets(&self) -> Vec<&SecretString> {
        let mut secrets = self.settings.secrets();
        secrets.push(&self.url);
        secrets
    }

    fn warnings(&self) -> Vec<String> {
        if self.settings.address.is_some() {
            vec![
                "telegram: herald posts to the address as the Bot API base; Flux ignores the address and always posts to https://api.telegram.org".to_owned(),
            ]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::notification;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    #[test]
    fn text_escapes_markdown_v2() {
        let n = notification(
            Severity::Info,
            &[
                ("kubernetes.io/somekey", "some.value"),
                ("test", "metadata"),
            ],
        );
        assert_eq!(
            text(&n, None),
            "*💫 kustomization/app/flux\\-system*\nHealth check failed\n\\- *kubernetes\\.io/somekey*: some\\.value\n\\- *test*: metadata\n"
        );
        assert_eq!(escape("a\\b*c"), "a\\\\b\\*c");
    }

    #[test]
    fn the_address_replaces_the_bot_api_base() {
        let settings = |address: Option<&str>| Settings {
            address: address.map(SecretString::new),
            token: Some(SecretString::new("123:abc")),
            channel: Some("@flux".into()),
            ..Settings::default()
        };
        let n = notification(Severity::Info, &[]);
        let default = new(settings(None)).expect("built");
        let url = default.request(&n, None, None).expect("request").url;
        assert_eq!(
            url.expose(),
            "https://api.telegram.org/bot123:abc/sendMessage"
        );
        assert_eq!(default.masked_address(), "https://api.telegram.org/***");
        assert!(default.warnings().is_empty());
        let local = new(settings(Some("https://bot-api.internal:8081/"))).expect("built");
        let url = local.request(&n, None, None).expect("request").url;
        assert_eq!(
            url.expose(),
            "https://bot-api.internal:8081/bot123:abc/sendMessage"
        );
        assert_eq!(local.warnings().len(), 1);
        assert!(
            new(Settings {
                channel: None,
                ..settings(None)
            })
            .is_err()
        );
        assert!(
            new(Settings {
                token: None,
                ..settings(None)
            })
            .is_err()
        );
    }

    #[test]
    fn retry_after_comes_from_the_body() {
        let mut n = notification(Severity::Info, &[]);
        Arc::make_mut(&mut n.route).provider_channel = Some("-100:7".into());
        let telegram = new(Settings {
            token: Some(SecretString::new("123:abc")),
            channel: Some("-100:7".into()),
            ..Settings::default()
        })
        .expect("built");
        let body = telegram
            .request(&n, None, None)
            .expect("request")
            .body
            .show();
        assert_eq!(body["chat_id"], "-100");
        assert_eq!(body["message_thread_id"], "7");
        let headers = HeaderMap::new();
        let answer = br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5","parameters":{"retry_after":5}}"#;
        let verdict = telegram.judge(&Response {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: &headers,
            body: answer,
        });
        assert!(
            matches!(verdict, Verdict::Retry { after: Some(d), .. } if d == Duration::from_secs(5))
        );
        let verdict = telegram.judge(&Response {
            status: StatusCode::OK,
            headers: &headers,
            body: br#"{"ok":false,"description":"Bad Request"}"#,
        });
        assert!(matches!(verdict, Verdict::Fail(_)));
        let verdict = telegram.judge(&Response {
            status: StatusCode::OK,
            headers: &headers,
            body: br#"{"ok":true,"result":{}}"#,
        });
        assert_eq!(verdict, Verdict::Delivered);
    }
}

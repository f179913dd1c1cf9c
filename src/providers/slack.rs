//! Slack: incoming webhooks and the bot API (`chat.postMessage`), with
//! Flux's message format (DESIGN §3.8).

use serde_json::{Value, json};

use super::{BodyVerdict, Endpoint, Notifier, Settings, ThreadAnchor};
use crate::api::Severity;
use crate::routing::Notification;
use crate::template::Rendered;

/// Where `chat.postMessage` lives; used when a Provider has a token and no address.
pub const POST_MESSAGE_URL: &str = "https://slack.com/api/chat.postMessage";

pub struct Slack {
    settings: Settings,
    bot_api: bool,
}

impl Slack {
    pub fn new(settings: Settings) -> Self {
        let bot_api = settings.token.is_some()
            || settings
                .address
                .expose()
                .trim_end_matches('/')
                .ends_with("/chat.postMessage");
        Self { settings, bot_api }
    }
}

impl Notifier for Slack {
    fn endpoint(&self) -> Endpoint<'_> {
        Endpoint {
            url: &self.settings.address,
            bearer: self.settings.token.as_ref(),
        }
    }

    fn payload(&self, n: &Notification, rendered: Option<&Rendered>) -> Value {
        let event = &n.event;
        let object = &event.involved_object;
        let author = format!(
            "{}/{}.{}",
            object.kind.to_lowercase(),
            object.name,
            object.namespace
        );
        let rendered_text = rendered.and_then(|r| r.text.as_deref());
        let text = rendered_text.unwrap_or(&event.message);
        let first_line = text.lines().next().unwrap_or("");
        let mut attachment = json!({
            "color": color(event.severity),
            "fallback": format!("{author}: {first_line}"),
        });
        let blocks = rendered.and_then(|r| r.blocks.clone());
        let has_blocks = blocks.is_some();
        match blocks {
            Some(blocks) => attachment["blocks"] = blocks,
            None => {
                attachment["author_name"] = Value::from(author);
                attachment["text"] = Value::from(text);
                attachment["mrkdwn_in"] = json!(["text"]);
            }
        }
        // The default format lists the metadata; a text template chooses what to show.
        if rendered_text.is_none() && !has_blocks && !n.metadata.is_empty() {
            let fields: Vec<Value> = n
                .metadata
                .iter()
                .map(|(key, value)| json!({"title": key, "value": value, "short": false}))
                .collect();
            attachment["fields"] = Value::Array(fields);
        }
        let username = self
            .settings
            .username
            .as_deref()
            .filter(|u| !u.is_empty())
            .unwrap_or(&event.reporting_controller);
        let mut payload = json!({ "username": username, "attachments": [attachment] });
        if has_blocks {
            payload["text"] = Value::from(text);
        }
        let channel = n
            .alert
            .channel
            .as_deref()
            .or(self.settings.channel.as_deref());
        if let Some(channel) = channel.filter(|c| !c.is_empty()) {
            payload["channel"] = Value::from(channel);
        }
        payload
    }

    fn supports_threads(&self) -> bool {
        self.bot_api
    }

    fn thread_anchor(&self, body: &[u8]) -> Option<ThreadAnchor> {
        let reply: Value = serde_json::from_slice(body).ok()?;
        Some(ThreadAnchor {
            ts: reply.get("ts")?.as_str()?.to_owned(),
            channel: reply.get("channel")?.as_str()?.to_owned(),
        })
    }

    fn reply_in_thread(&self, payload: &mut Value, anchor: &ThreadAnchor) {
        payload["thread_ts"] = Value::from(anchor.ts.as_str());
        payload["channel"] = Value::from(anchor.channel.as_str());
    }

    fn judge_body(&self, body: &[u8]) -> BodyVerdict {
        if !self.bot_api {
            return BodyVerdict::Delivered;
        }
        let reply: Value = match serde_json::from_slice(body) {
            Ok(reply) => reply,
            Err(_) => {
                return BodyVerdict::Fail("Slack API answered with a body that is not JSON".into());
            }
        };
        if reply.get("ok").and_then(Value::as_bool) == Some(true) {
            return BodyVerdict::Delivered;
        }
        let error = reply
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        match error {
            "ratelimited"
            | "rate_limited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable" => BodyVerdict::Retry(format!("Slack API error: {error}")),
            _ => BodyVerdict::Fail(format!("Slack API error: {error}")),
        }
    }

    fn warnings(&self) -> Vec<String> {
        let no_channel = self.settings.channel.as_deref().is_none_or(str::is_empty);
        if self.bot_api && no_channel {
            vec!["the Slack bot API needs a channel: set spec.channel on the Provider or on every Alert using it".into()]
        } else {
            Vec::new()
        }
    }
}

fn color(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "danger",
        Severity::Warn => "warning",
        _ => "good",
    }
}

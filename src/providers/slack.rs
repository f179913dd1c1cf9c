//! Slack: incoming webhooks and the bot API (`chat.postMessage`), with
//! Flux's message format (DESIGN §3.8).

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::{
    Auth, Body, Invalid, Notifier, Request, Response, Settings, ThreadAnchor, Verdict,
    judge_status, listed_metadata, message_text,
};
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::{Digest, Notification};
use crate::template::Rendered;

/// Where `chat.postMessage` lives; used when a Provider has a token and no address.
pub const POST_MESSAGE_URL: &str = "https://slack.com/api/chat.postMessage";

pub struct Slack {
    settings: Settings,
    bot_api: bool,
}

/// A Slack provider. A bot token alone means `chat.postMessage`.
pub fn new(mut settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    if settings.address.is_none() && settings.token.is_some() {
        settings.address = Some(SecretString::new(POST_MESSAGE_URL));
    }
    let bot_api = settings.token.is_some()
        || settings
            .address()?
            .expose()
            .trim_end_matches('/')
            .ends_with("/chat.postMessage");
    Ok(Arc::new(Slack { settings, bot_api }))
}

/// A Slack message. Typed rather than built with `json!`: this is the
/// payload of most notifications herald sends, and a map of owned keys
/// and values was a third of the work of delivering one (callgrind).
/// Fields are in alphabetical order, the order a JSON map gives them.
#[derive(Serialize)]
struct Payload<'a> {
    attachments: Vec<Attachment<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    /// Always `""`, as Flux's struct marshals its unset icon fields.
    icon_emoji: &'static str,
    icon_url: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_ts: Option<&'a str>,
    username: &'a str,
}

/// One attachment, in Flux's style (colour bar, author, text, fields).
#[derive(Default, Serialize)]
struct Attachment<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    author_name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocks: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    color: Option<&'static str>,
    fallback: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<Vec<Field<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mrkdwn_in: Option<[&'static str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Cow<'a, str>>,
}

/// A metadata entry shown under the text.
#[derive(Serialize)]
struct Field<'a> {
    short: bool,
    title: &'a str,
    value: &'a str,
}

impl Slack {
    fn message<'a>(&'a self, n: &'a Notification, rendered: Option<&'a Rendered>) -> Payload<'a> {
        let templated = rendered.is_some_and(|r| r.text.is_some() || r.blocks.is_some());
        if let Some(digest) = n.digest.as_deref().filter(|_| !templated) {
            return self.digest_message(n, digest);
        }
        let event = &n.event;
        let author = n.object_name();
        let rendered_text = rendered.and_then(|r| r.text.as_deref());
        let text = message_text(n, rendered);
        let first_line = text.lines().next().unwrap_or("");
        let blocks = rendered.and_then(|r| r.blocks.as_ref());
        let mut attachment = Attachment {
            color: Some(color(event.severity)),
            fallback: format!("{author}: {first_line}"),
            blocks,
            ..Attachment::default()
        };
        if blocks.is_none() {
            attachment.author_name = Some(Cow::Owned(author));
            attachment.text = Some(Cow::Borrowed(text));
            attachment.mrkdwn_in = Some(["text"]);
        }
        // The default format lists the metadata; a text template chooses what to show.
        if rendered_text.is_none() && blocks.is_none() && !n.metadata.is_empty() {
            attachment.fields = Some(
                listed_metadata(n, rendered)
                    .map(|(key, value)| Field {
                        short: false,
                        title: key,
                        value,
                    })
                    .collect(),
            );
        }
        Payload {
            attachments: vec![attachment],
            channel: n.route.channel(),
            text: blocks.map(|_| Cow::Borrowed(text)),
            thread_ts: None,
            icon_emoji: "",
            icon_url: "",
            username: self.username(n),
        }
    }

    /// The Provider's username, else the event's reporting controller (as Flux).
    fn username<'a>(&'a self, n: &'a Notification) -> &'a str {
        self.settings
            .username
            .as_deref()
            .filter(|u| !u.is_empty())
            .unwrap_or(&n.event.reporting_controller)
    }

    /// A digest: its heading as the message text, then one attachment per
    /// listed notification, in Flux's attachment style, and a last one
    /// counting those not listed.
    fn digest_message<'a>(&'a self, n: &'a Notification, digest: &'a Digest) -> Payload<'a> {
        let mut attachments: Vec<Attachment<'a>> = digest
            .lines
            .iter()
            .map(|line| {
                let first_line = line.message.lines().next().unwrap_or("");
                Attachment {
                    author_name: Some(Cow::Borrowed(&line.object)),
                    color: Some(color(line.severity)),
                    fallback: format!("{}: {first_line}", line.object),
                    mrkdwn_in: Some(["text"]),
                    text: Some(Cow::Borrowed(&line.message)),
                    ..Attachment::default()
                }
            })
            .collect();
        let more = digest.total.saturating_sub(digest.lines.len());
        if more > 0 {
            let counted = format!("… and {more} more");
            attachments.push(Attachment {
                text: Some(Cow::Owned(counted.clone())),
                fallback: counted,
                ..Attachment::default()
            });
        }
        Payload {
            attachments,
            channel: n.route.channel(),
            text: Some(Cow::Owned(format!(
                "{} for Alert {}",
                digest.heading(),
                n.route.alert
            ))),
            thread_ts: None,
            icon_emoji: "",
            icon_url: "",
            username: self.username(n),
        }
    }
}

impl Notifier for Slack {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let mut payload = self.message(n, rendered);
        if let Some(anchor) = thread {
            payload.thread_ts = Some(&anchor.ts);
            payload.channel = Some(&anchor.channel);
        }
        // Flux's header: `application/json`, no charset.
        let body = Body::json(&payload)?;
        let url = self.settings.address().map_err(|_| "no address")?;
        let auth = self.settings.token.clone().map_or(Auth::None, Auth::Bearer);
        Ok(Request::post(url, body).auth(auth))
    }

    fn judge(&self, response: &Response<'_>) -> Verdict {
        if !self.bot_api || !response.status.is_success() {
            return judge_status(response);
        }
        let reply: Value = match serde_json::from_slice(response.body) {
            Ok(reply) => reply,
            Err(_) => {
                return Verdict::Fail("Slack API answered with a body that is not JSON".into());
            }
        };
        if reply.get("ok").and_then(Value::as_bool) == Some(true) {
            return Verdict::Delivered;
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
            | "service_unavailable" => Verdict::Retry {
                reason: format!("Slack API error: {error}"),
                after: None,
            },
            _ => Verdict::Fail(format!("Slack API error: {error}")),
        }
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

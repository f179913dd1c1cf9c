//! Flux's Slack-compatible payload, as `discord` and `rocket` send it:
//! every field of Flux's struct present, empty strings included.

use serde::Serialize;

use super::{listed_metadata, message_text};
use crate::notification::Notification;
use crate::template::Rendered;

#[derive(Serialize)]
pub struct Payload<'a> {
    pub channel: &'a str,
    pub username: &'a str,
    pub icon_url: &'a str,
    pub icon_emoji: &'a str,
    pub attachments: [Attachment<'a>; 1],
}

#[derive(Serialize)]
pub struct Attachment<'a> {
    pub fallback: &'a str,
    pub color: &'a str,
    pub author_name: String,
    pub text: &'a str,
    pub mrkdwn_in: [&'static str; 1],
    pub fields: Vec<Field<'a>>,
}

#[derive(Serialize)]
pub struct Field<'a> {
    pub title: &'a str,
    pub value: &'a str,
    pub short: bool,
}

/// The payload with one attachment: the object as author, the message (or
/// rendered text) as text, and one field per metadata key unless a text
/// template chose what to show.
pub fn payload<'a>(
    n: &'a Notification,
    rendered: Option<&'a Rendered>,
    channel: &'a str,
    username: &'a str,
    color: &'a str,
) -> Payload<'a> {
    let fields = listed_metadata(n, rendered)
        .map(|(title, value)| Field {
            title,
            value,
            short: false,
        })
        .collect();
    Payload {
        channel,
        username,
        icon_url: "",
        icon_emoji: "",
        attachments: [Attachment {
            fallback: "",
            color,
            author_name: n.object_name(),
            text: message_text(n, rendered),
            mrkdwn_in: ["text"],
            fields,
        }],
    }
}

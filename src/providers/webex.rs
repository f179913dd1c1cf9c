//! Webex: Flux POSTs `{"roomId", "markdown"}` to the address (the Messages
//! API, `https://webexapis.com/v1/messages`) with `Authorization: Bearer
//! <token>`. The room is the channel (the Alert's, else the Provider's;
//! omitted when there is none). The markdown is a heading (`✅`, or `💣`
//! for errors, and the object in bold), the message and one `>**key**:
//! value` line per metadata entry; a text template replaces the message
//! and the metadata lines.

use std::fmt::Write;
use std::sync::Arc;

use serde::Serialize;

use super::{
    Auth, Body, Invalid, Notifier, Request, Settings, ThreadAnchor, listed_metadata, message_text,
};
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::template::Rendered;

pub struct Webex {
    settings: Settings,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    settings.address()?;
    Ok(Arc::new(Webex { settings }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    room_id: &'a str,
    #[serde(skip_serializing_if = "String::is_empty")]
    markdown: String,
}

/// Flux's markdown message.
fn markdown(n: &Notification, rendered: Option<&Rendered>) -> String {
    let emoji = match n.event.severity {
        Severity::Error => "💣",
        _ => "✅",
    };
    let mut text = format!(
        "{emoji} **{}**\n{}\n",
        n.object_name(),
        message_text(n, rendered)
    );
    for (key, value) in listed_metadata(n, rendered) {
        let _ = writeln!(text, ">**{key}**: {value}");
    }
    text
}

impl Notifier for Webex {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let payload = Payload {
            room_id: n.route.channel().unwrap_or(""),
            markdown: markdown(n, rendered),
        };
        let url = self.settings.address().map_err(|_| "no address")?;
        let token = (self.settings.token.clone()).unwrap_or_else(|| SecretString::new(""));
        Ok(Request::post(url, Body::json(&payload)?).auth(Auth::Bearer(token)))
    }

    fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.settings.token.is_none() {
            warnings.push(
                "webex: spec.secretRef's Secret has no 'token': the Messages API will refuse the request"
                    .to_owned(),
            );
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::notification;

    #[test]
    fn markdown_names_the_object_and_lists_metadata() {
        let n = notification(Severity::Error, &[("revision", "main@sha1:abc")]);
        assert_eq!(
            markdown(&n, None),
            "💣 **kustomization/app.flux-system**\nHealth check failed\n>**revision**: main@sha1:abc\n"
        );
        let n = notification(Severity::Info, &[]);
        assert!(markdown(&n, None).starts_with("✅ "));
    }
}

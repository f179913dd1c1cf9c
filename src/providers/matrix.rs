//! Matrix: Flux PUTs an `m.room.message` event,
//! `{"body", "msgtype": "m.text"}`, to
//! `<address>/_matrix/client/r0/rooms/<room>/send/m.room.message/<txn>`
//! with `Authorization: Bearer <token>`. The room is the channel (the
//! Alert's, else the Provider's); the transaction id is the SHA-1 of the
//! event as Flux's forwarder marshals it, so a repeated event is the same
//! transaction. The body is the heading (`💫`, or `🚨` for errors, and
//! `<kind>/<name>.<namespace>`), the message and one `- key: value` line
//! per metadata entry; a text template replaces the message and the
//! metadata lines.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{
    Auth, Body, Invalid, Notifier, Request, Response, Settings, ThreadAnchor, Verdict, generic,
    judge_status, listed_metadata, message_text,
};
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::template::Rendered;

pub struct Matrix {
    settings: Settings,
    /// Marshals the event as Flux does, for the transaction id.
    forwarder: Arc<dyn Notifier>,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    settings.address()?;
    let forwarder = generic::new(settings.clone())?;
    Ok(Arc::new(Matrix {
        settings,
        forwarder,
    }))
}

/// Flux's message body.
fn text(n: &Notification, rendered: Option<&Rendered>) -> String {
    let emoji = match n.event.severity {
        Severity::Error => "🚨",
        _ => "💫",
    };
    let mut text = format!(
        "{emoji} {}\n{}\n",
        n.object_name(),
        message_text(n, rendered)
    );
    for (key, value) in listed_metadata(n, rendered) {
        let _ = writeln!(text, "- {key}: {value}");
    }
    text
}

/// The hex SHA-1 of JSON as Go's `encoding/json` writes it (`<`, `>`, `&`,
/// U+2028 and U+2029 escaped).
fn go_json_sha1(json: &[u8]) -> String {
    let text = String::from_utf8_lossy(json)
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    crate::hex::encode(digest.as_ref())
}

impl Notifier for Matrix {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let room = n
            .route
            .channel()
            .ok_or("matrix needs the room id in spec.channel")?;
        let event = self.forwarder.request(n, None, None)?.body;
        let txn = go_json_sha1(&event.bytes);
        let address = self.settings.address().map_err(|_| "no address")?;
        let url = SecretString::new(format!(
            "{}/_matrix/client/r0/rooms/{room}/send/m.room.message/{txn}",
            address.expose().trim_end_matches('/')
        ));
        let payload = json!({"body": text(n, rendered), "msgtype": "m.text"});
        let token = (self.settings.token.clone()).unwrap_or_else(|| SecretString::new(""));
        let mut request = Request::post(&url, Body::json(&payload)?).auth(Auth::Bearer(token));
        request.method = Method::PUT;
        Ok(request)
    }

    /// A 429 (`M_LIMIT_EXCEEDED`) waits `retry_after_ms` when no
    /// `Retry-After` header says otherwise.
    fn judge(&self, response: &Response<'_>) -> Verdict {
        match judge_status(response) {
            Verdict::Retry { reason, after } => Verdict::Retry {
                reason,
                after: after.or_else(|| {
                    serde_json::from_slice::<Value>(response.body)
                        .ok()
                        .and_then(|b| b["retry_after_ms"].as_u64())
                        .filter(|_| !response.headers.contains_key("retry-after"))
                        .map(Duration::from_millis)
                }),
            },
            verdict => verdict,
        }
    }

    fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.settings.channel.is_none() {
            warnings.push("matrix: no spec.channel (room id): only Alerts with their own spec.channel can deliver".to_owned());
        }
        if self.settings.token.is_none() {
            warnings.push("matrix: spec.secretRef's Secret has no 'token': the homeserver will refuse the request".to_owned());
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::notification;

    /// Flux's own test vector for its transaction id.
    #[test]
    fn transaction_id_is_flux_sha1() {
        let json = br#"{"involvedObject":{},"severity":"info","timestamp":"2021-08-24T16:18:00Z","message":"update successful","reason":"update sucesful","reportingController":""}"#;
        assert_eq!(
            go_json_sha1(json),
            "37d91b4f6a1e44c6a38273b0a0fd408fade7b0f5"
        );
    }

    #[test]
    fn the_request_puts_to_the_room() {
        let matrix = new(Settings {
            address: Some(SecretString::new("https://matrix.example.org/")),
            token: Some(SecretString::new("syt_token")),
            channel: Some("!room:example.org".into()),
            ..Settings::default()
        })
        .expect("built");
        let mut n = notification(Severity::Error, &[("revision", "r1")]);
        Arc::make_mut(&mut n.route).provider_channel = Some("!room:example.org".into());
        let request = matrix.request(&n, None, None).expect("request");
        assert_eq!(request.method, Method::PUT);
        let url = request.url.expose();
        assert!(
            url.starts_with(
                "https://matrix.example.org/_matrix/client/r0/rooms/!room:example.org/send/m.room.message/"
            ),
            "{url}"
        );
        assert_eq!(
            request.body.show(),
            json!({"body": "🚨 kustomization/app.flux-system\nHealth check failed\n- revision: r1\n", "msgtype": "m.text"})
        );
        // The same event is the same transaction.
        assert_eq!(
            matrix
                .request(&n, None, None)
                .expect("request")
                .url
                .expose(),
            url
        );
    }
}

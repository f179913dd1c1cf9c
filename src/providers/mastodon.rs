//! Mastodon (Flux v1.10's `mastodon` type): a status is posted to
//! `<address>/api/v1/statuses` (the address is the instance, e.g.
//! `https://mastodon.social`) with the access token from the Secret's
//! `token` key as `Authorization: Bearer`. The JSON body is `{"status":
//! <text>}`, the text in the style of Flux's chat notifiers: the object
//! (`<kind>/<name>.<namespace>`), the message, then one `key: value` line
//! per metadata entry; a text template replaces the message and drops the
//! metadata. Mastodon refuses statuses over 500 characters by default, so
//! the text is cut there (with `…`).
//!
//! Flux v1.10's controller is not on the module proxy here, so this is not
//! compared with its requests; the README says so.

use std::sync::Arc;

use serde::Serialize;

use super::{
    Auth, Body, Invalid, Notifier, Request, Settings, ThreadAnchor, listed_metadata, message_text,
};
use crate::api::Reason;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::template::Rendered;

/// Mastodon's default limit on a status, in characters.
const MAX_STATUS: usize = 500;

pub struct Mastodon {
    settings: Settings,
    /// `<address>/api/v1/statuses`.
    url: SecretString,
    token: SecretString,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let address = settings.address()?;
    let token = settings
        .token
        .clone()
        .filter(|t| !t.expose().is_empty())
        .ok_or_else(|| Invalid::Setting {
            reason: Reason::SecretKeyMissing,
            message: "mastodon posts with the access token in the 'token' key of spec.secretRef's Secret, and there is none".into(),
        })?;
    let url = SecretString::new(format!(
        "{}/api/v1/statuses",
        address.expose().trim_end_matches('/')
    ));
    Ok(Arc::new(Mastodon {
        settings,
        url,
        token,
    }))
}

#[derive(Serialize)]
struct Status {
    status: String,
}

/// The status text: object, message, metadata lines; cut at the limit.
fn status_text(n: &Notification, rendered: Option<&Rendered>) -> String {
    let mut text = format!("{}\n{}", n.object_name(), message_text(n, rendered));
    for (key, value) in listed_metadata(n, rendered) {
        text.push_str(&format!("\n{key}: {value}"));
    }
    match text.char_indices().nth(MAX_STATUS - 1) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

impl Notifier for Mastodon {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let body = Status {
            status: status_text(n, rendered),
        };
        Ok(Request::post(&self.url, Body::json(&body)?).auth(Auth::Bearer(self.token.clone())))
    }
}

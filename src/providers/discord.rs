//! Discord: Flux posts Slack's format to the webhook's Slack-compatible
//! endpoint (`<address>/slack`). Colour `danger` for errors, `good`
//! otherwise; the username is the Provider's, else the reporting
//! controller; no channel (a Discord webhook posts to its own).

use std::sync::Arc;

use super::{Body, Invalid, Notifier, Request, Settings, ThreadAnchor, slack_compat};
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::template::Rendered;

pub struct Discord {
    settings: Settings,
    /// The address with `/slack` appended.
    url: SecretString,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let url = slack_endpoint(settings.address()?.expose());
    Ok(Arc::new(Discord {
        url: SecretString::new(url),
        settings,
    }))
}

/// `<address>/slack`, unless the address already ends with `/slack` (the
/// query, if any, stays at the end).
fn slack_endpoint(address: &str) -> String {
    if address.ends_with("/slack") {
        return address.to_owned();
    }
    match url::Url::parse(address) {
        Ok(mut url) => {
            let path = format!("{}/slack", url.path().trim_end_matches('/'));
            url.set_path(&path);
            url.to_string()
        }
        Err(_) => address.to_owned(),
    }
}

impl Notifier for Discord {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let username = self
            .settings
            .username
            .as_deref()
            .filter(|u| !u.is_empty())
            .unwrap_or(&n.event.reporting_controller);
        let color = match n.event.severity {
            Severity::Error => "danger",
            _ => "good",
        };
        let payload = slack_compat::payload(n, rendered, "", username, color);
        Ok(Request::post(&self.url, Body::json(&payload)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_is_appended_once() {
        assert_eq!(
            slack_endpoint("https://discord.com/api/webhooks/1/abc"),
            "https://discord.com/api/webhooks/1/abc/slack"
        );
        assert_eq!(
            slack_endpoint("https://discord.com/api/webhooks/1/abc/"),
            "https://discord.com/api/webhooks/1/abc/slack"
        );
        assert_eq!(
            slack_endpoint("https://discord.com/api/webhooks/1/abc/slack"),
            "https://discord.com/api/webhooks/1/abc/slack"
        );
        assert_eq!(
            slack_endpoint("https://discord.com/api/webhooks/1/abc?wait=true"),
            "https://discord.com/api/webhooks/1/abc/slack?wait=true"
        );
    }
}

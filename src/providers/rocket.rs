//! Rocket.Chat: Flux's Slack-compatible payload to the incoming webhook.
//! Colour `#FF0000` for errors, `#0076D7` otherwise; the channel (the
//! Alert's, else the Provider's) and username as set, empty otherwise.

use std::sync::Arc;

use super::{Body, Invalid, Notifier, Request, Settings, ThreadAnchor, slack_compat};
use crate::api::Severity;
use crate::notification::Notification;
use crate::template::Rendered;

pub struct Rocket {
    settings: Settings,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    settings.address()?;
    Ok(Arc::new(Rocket { settings }))
}

impl Notifier for Rocket {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let color = match n.event.severity {
            Severity::Error => "#FF0000",
            _ => "#0076D7",
        };
        let channel = n.route.channel().unwrap_or("");
        let username = self.settings.username.as_deref().unwrap_or("");
        let payload = slack_compat::payload(n, rendered, channel, username, color);
        let url = self.settings.address().map_err(|_| "no address")?;
        Ok(Request::post(url, Body::json(&payload)?))
    }
}

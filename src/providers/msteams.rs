//! Microsoft Teams, chosen by address as Flux chooses: an Office 365
//! connector (`*.webhook.office.com`) gets the legacy MessageCard; any other
//! address (Workflows / Power Automate) gets an Adaptive Card 1.4. Errors
//! are red (`FF0000` / `attention`). A text template fills the MessageCard's
//! `activityTitle` or the Adaptive Card's message TextBlock.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    Body, Invalid, Notifier, Request, Settings, ThreadAnchor, listed_metadata, message_text,
};
use crate::api::Severity;
use crate::notification::Notification;
use crate::template::Rendered;

/// The Adaptive Card schema version Teams supports.
const ADAPTIVE_CARD_VERSION: &str = "1.4";
/// Hosts of the deprecated Office 365 connectors.
const CONNECTOR_HOST_SUFFIX: &str = ".webhook.office.com";

pub struct MsTeams {
    settings: Settings,
    /// The address is an Office 365 connector: send a MessageCard.
    connector: bool,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let connector = url::Url::parse(settings.address()?.expose())
        .ok()
        .and_then(|url| url.host_str().map(|h| h.ends_with(CONNECTOR_HOST_SUFFIX)))
        .unwrap_or(false);
    Ok(Arc::new(MsTeams {
        settings,
        connector,
    }))
}

impl MsTeams {
    fn message_card(n: &Notification, rendered: Option<&Rendered>) -> Value {
        let object = n.object_name();
        let facts: Vec<Value> = listed_metadata(n, rendered)
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect();
        let color = match n.event.severity {
            Severity::Error => "FF0000",
            _ => "0076D7",
        };
        json!({
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": color,
            "summary": object,
            "sections": [{
                "activityTitle": message_text(n, rendered),
                "activitySubtitle": object,
                "facts": facts,
            }],
        })
    }

    fn adaptive_card(n: &Notification, rendered: Option<&Rendered>) -> Value {
        let mut message = json!({"type": "TextBlock", "wrap": true});
        let text = message_text(n, rendered);
        if !text.is_empty() {
            message["text"] = Value::from(text);
        }
        if n.event.severity == Severity::Error {
            message["color"] = Value::from("attention");
        }
        // `summary` first, then the other keys sorted.
        let (summary, others): (Vec<_>, Vec<_>) =
            listed_metadata(n, rendered).partition(|(key, _)| key.as_str() == "summary");
        let facts: Vec<Value> = summary
            .into_iter()
            .chain(others)
            .map(|(title, value)| json!({"title": title, "value": value}))
            .collect();
        let mut fact_set = json!({"type": "FactSet"});
        if !facts.is_empty() {
            fact_set["facts"] = Value::Array(facts);
        }
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": ADAPTIVE_CARD_VERSION,
                    "body": [{
                        "type": "Container",
                        "items": [
                            {
                                "type": "TextBlock",
                                "text": n.object_name(),
                                "size": "large",
                                "weight": "bolder",
                                "wrap": true,
                            },
                            message,
                            fact_set,
                        ],
                    }],
                    "msteams": {"width": "Full"},
                },
            }],
        })
    }
}

impl Notifier for MsTeams {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let payload = if self.connector {
            Self::message_card(n, rendered)
        } else {
            Self::adaptive_card(n, rendered)
        };
        let url = self.settings.address().map_err(|_| "no address")?;
        Ok(Request::post(url, Body::json(&payload)?))
    }
}

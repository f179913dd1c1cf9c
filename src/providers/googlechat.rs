//! Google Chat: Flux's card (`cards`, v1 format) to the space's webhook:
//! the object as header title, the reporting controller as subtitle, the
//! message (red for errors) in a text paragraph and the metadata as
//! key-value widgets. A text template fills the text paragraph.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    Body, Invalid, Notifier, Request, Settings, ThreadAnchor, listed_metadata, message_text,
};
use crate::api::Severity;
use crate::notification::Notification;
use crate::template::Rendered;

pub struct GoogleChat {
    settings: Settings,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    settings.address()?;
    Ok(Arc::new(GoogleChat { settings }))
}

impl Notifier for GoogleChat {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let text = message_text(n, rendered);
        let text = match n.event.severity {
            Severity::Error => format!("<font color=\"#ff0000\">{text}</font>"),
            _ => text.to_owned(),
        };
        let mut sections = vec![json!({
            "header": "",
            "widgets": [{"textParagraph": {"text": text}, "keyValue": null}],
        })];
        let widgets: Vec<Value> = listed_metadata(n, rendered)
            .map(|(key, value)| {
                json!({
                    "textParagraph": null,
                    "keyValue": {
                        "topLabel": key,
                        "content": value,
                        "contentMultiline": false,
                        "bottomLabel": null,
                        "icon": null,
                    },
                })
            })
            .collect();
        if !widgets.is_empty() {
            sections.push(json!({"header": "", "widgets": widgets}));
        }
        let payload = json!({
            "cards": [{
                "header": {
                    "title": n.object_name(),
                    "subtitle": n.event.reporting_controller,
                    "imageUrl": null,
                    "imageStyle": null,
                },
                "sections": sections,
            }],
        });
        let url = self.settings.address().map_err(|_| "no address")?;
        Ok(Request::post(url, Body::json(&payload)?))
    }
}

//! Grafana: Flux POSTs a Graphite-format annotation to the address
//! (`/api/annotations/graphite`): `when` (the event's time in Unix
//! *seconds*, as Flux sends it), `text` the object
//! (`kind/name.namespace`, kind lower case) and `tags`: `flux`, the
//! reporting controller, each metadata pair as `key: value` (`:` inside
//! either replaced by `|`; sorted by key, where Go's order is random), then
//! `kind: …`, `name: …`, `namespace: …`. A bearer `token` wins over basic
//! auth (used when both a username and a password are set).

use std::sync::Arc;

use serde::Serialize;

use super::{Auth, Body, Invalid, Notifier, Request, Settings, ThreadAnchor, go_time};
use crate::notification::Notification;
use crate::template::Rendered;

pub struct Grafana {
    settings: Settings,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    settings.address()?;
    Ok(Arc::new(Grafana { settings }))
}

#[derive(Serialize)]
struct Annotation<'a> {
    when: i64,
    text: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
}

impl Notifier for Grafana {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let event = &n.event;
        let object = &event.involved_object;
        let mut tags = vec!["flux".to_owned(), event.reporting_controller.clone()];
        tags.extend(
            n.metadata
                .iter()
                .map(|(k, v)| format!("{}: {}", k.replace(':', "|"), v.replace(':', "|"))),
        );
        tags.push(format!("kind: {}", object.kind));
        tags.push(format!("name: {}", object.name));
        tags.push(format!("namespace: {}", object.namespace));
        let default_text = format!(
            "{}/{}.{}",
            object.kind.to_lowercase(),
            object.name,
            object.namespace
        );
        let text = rendered
            .and_then(|r| r.text.as_deref())
            .unwrap_or(&default_text);
        let body = Annotation {
            when: go_time::unix(&event.timestamp),
            text,
            tags,
        };
        let url = self.settings.address().map_err(|_| "no address")?;
        let mut request = Request::post(url, Body::json(&body)?);
        let settings = &self.settings;
        match (&settings.token, &settings.username, &settings.password) {
            (Some(token), _, _) if !token.expose().is_empty() => {
                request = request.auth(Auth::Bearer(token.clone()));
            }
            (_, Some(username), Some(password))
                if !username.is_empty() && !password.expose().is_empty() =>
            {
                request = request.auth(Auth::Basic {
                    username: username.clone(),
                    password: password.clone(),
                });
            }
            _ => {}
        }
        Ok(request)
    }
}

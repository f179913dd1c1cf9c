//! Providers: one module per notification service, each turning a routed
//! [`Notification`] into an HTTP request and judging the response body. The
//! dispatcher owns the HTTP client, retries and masking; providers stay pure.

pub mod slack;

use std::sync::Arc;

use serde_json::Value;

use crate::api::ProviderType;
use crate::mask::SecretString;
use crate::routing::Notification;
use crate::template::Rendered;

/// What a provider needs to deliver, resolved from its spec and Secret.
#[derive(Clone, Debug)]
pub struct Settings {
    pub address: SecretString,
    pub token: Option<SecretString>,
    pub channel: Option<String>,
    pub username: Option<String>,
}

/// Where a request goes and how it authenticates.
pub struct Endpoint<'a> {
    pub url: &'a SecretString,
    pub bearer: Option<&'a SecretString>,
}

/// Why a 2xx response still did not deliver the notification.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyVerdict {
    Delivered,
    Retry(String),
    Fail(String),
}

/// Where a thread started: what later notifications reply to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadAnchor {
    pub ts: String,
    pub channel: String,
}

/// One notification service.
pub trait Notifier: Send + Sync {
    /// The request target and credentials.
    fn endpoint(&self) -> Endpoint<'_>;

    /// The JSON body for one notification, in the Alert's rendered template
    /// when there is one, else in the provider's default format.
    fn payload(&self, notification: &Notification, rendered: Option<&Rendered>) -> Value;

    /// Whether notifications can be grouped into threads (DESIGN §3.11).
    fn supports_threads(&self) -> bool {
        false
    }

    /// The thread a delivered message started, read from the response body.
    fn thread_anchor(&self, _body: &[u8]) -> Option<ThreadAnchor> {
        None
    }

    /// Turns a payload into a reply in an existing thread.
    fn reply_in_thread(&self, _payload: &mut Value, _anchor: &ThreadAnchor) {}

    /// Judges the body of a 2xx response (some APIs answer 200 with an error).
    fn judge_body(&self, _body: &[u8]) -> BodyVerdict {
        BodyVerdict::Delivered
    }

    /// The address as it may be shown: scheme and host only.
    fn masked_address(&self) -> String {
        crate::mask::url(self.endpoint().url.expose())
    }

    /// Everything that must never be printed.
    fn secrets(&self) -> Vec<&SecretString> {
        let endpoint = self.endpoint();
        std::iter::once(endpoint.url)
            .chain(endpoint.bearer)
            .collect()
    }

    /// Problems worth a warning in `herald check` (e.g. a bot token without a channel).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A provider type herald cannot deliver to yet.
#[derive(Debug, thiserror::Error)]
#[error("provider type '{0}' is not supported by herald yet")]
pub struct Unsupported(pub String);

/// Builds the notifier for a provider type.
pub fn build(kind: ProviderType, settings: Settings) -> Result<Arc<dyn Notifier>, Unsupported> {
    match kind {
        ProviderType::Slack => Ok(Arc::new(slack::Slack::new(settings))),
        other => Err(Unsupported(other.as_str())),
    }
}

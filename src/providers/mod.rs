//! Providers: one module per notification service. Each turns a
//! [`Notification`] into a [`Request`] (method, URL, headers, body, auth)
//! and judges the [`Response`]; nothing else. The dispatcher owns the HTTP
//! clients, retries, `Retry-After`, timeouts, masking and metrics.
//!
//! Adding a provider: write `src/providers/<name>.rs` with a `new(Settings)`
//! constructor returning an [`Arc<dyn Notifier>`](Notifier), declare the
//! module below, add the type's [`ProviderType`] variant and its row in
//! [`registry`].

pub mod alertmanager;
pub mod azureeventhub;
pub mod datadog;
pub mod discord;
pub mod generic;
pub mod git;
mod go_time;
pub mod googlechat;
pub mod googlepubsub;
pub mod grafana;
pub mod identity;
pub mod incidentio;
pub mod lark;
pub mod mastodon;
pub mod matrix;
pub mod msteams;
pub mod nats;
pub mod opsgenie;
pub mod otel;
pub mod pagerduty;
pub mod pem;
pub mod registry;
pub mod resolve;
pub mod rocket;
pub mod sentry;
pub mod slack;
mod slack_compat;
pub mod telegram;
pub mod webex;
pub mod zoom;
pub mod zulip;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::api::{ProviderType, Reason};
use crate::mask::{self, SecretString};
use crate::notification::Notification;
use crate::template::Rendered;

/// Builds a provider from its settings, or says why it cannot be built.
pub type Constructor = fn(Settings) -> Result<Arc<dyn Notifier>, Invalid>;

/// What a provider reads from its Provider and Secret, resolved by routing.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The Secret's `address` (else `url`), else `spec.address`; checked to
    /// be an http(s) URL.
    pub address: Option<SecretString>,
    /// The Secret's `token`.
    pub token: Option<SecretString>,
    /// `spec.username`, or the Secret's `username` when it also has a
    /// `password` (as in Flux, the Secret's basic auth wins).
    pub username: Option<String>,
    /// The Secret's `password`.
    pub password: Option<SecretString>,
    /// `spec.channel` (an Alert's `spec.channel` overrides it per
    /// notification: see [`crate::notification::Route::channel`]).
    pub channel: Option<String>,
    /// The Secret's `headers` (a YAML map, values checked to be valid
    /// header values), sent with every request after the provider's own.
    pub headers: Vec<(HeaderName, SecretString)>,
    /// The same `headers` with their names as written: Pub/Sub publishes
    /// them as message attributes, whose names are case-sensitive.
    pub header_pairs: Vec<(String, SecretString)>,
    /// The Secret's `creds` (a NATS credentials file) and `nkey` (an NKey
    /// seed): NATS authentication, read as Flux reads them.
    pub nats_creds: Option<SecretString>,
    pub nats_nkey: Option<SecretString>,
    /// Every key of the Secret (`spec.secretRef`), masked, for the GitHub
    /// types (they read the GitHub App keys); empty for the others.
    pub secret_data: std::collections::BTreeMap<String, SecretString>,
    /// The Provider's `metadata.uid`, or with none (manifests) a UUID
    /// derived from its namespace and name: commit status ids and comment
    /// markers embed it.
    pub provider_uid: String,
    /// `spec.commitStatusExpr`, compiled; with the Provider as CEL sees it.
    pub commit_status_expr: Option<CommitStatusExpr>,
    /// `spec.serviceAccountName` in controller mode with the
    /// `ObjectLevelWorkloadIdentity` gate on, for the types that exchange it
    /// for a cloud token (see [`identity`]).
    pub workload_identity: Option<Arc<identity::WorkloadIdentity>>,
}

/// A compiled `spec.commitStatusExpr` and the Provider object its
/// `provider` variable reads.
#[derive(Clone, Debug)]
pub struct CommitStatusExpr {
    pub expression: Arc<crate::cel::Expression>,
    pub provider: Arc<Value>,
}

impl Settings {
    /// The address, for providers that need one.
    pub fn address(&self) -> Result<&SecretString, Invalid> {
        self.address.as_ref().ok_or(Invalid::NoAddress)
    }

    /// Every secret value among the settings.
    pub fn secrets(&self) -> Vec<&SecretString> {
        self.address
            .iter()
            .chain(&self.token)
            .chain(&self.password)
            .chain(self.headers.iter().map(|(_, value)| value))
            .chain(self.header_pairs.iter().map(|(_, value)| value))
            .chain(&self.nats_creds)
            .chain(&self.nats_nkey)
            .chain(self.secret_data.values())
            .collect()
    }
}

/// Why a Provider's settings cannot make a provider.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The provider needs an address and there is none (routing says where
    /// it looked).
    NoAddress,
    /// Another setting is missing or unusable: a `Ready=False` reason and a
    /// message that quotes no secret.
    Setting { reason: Reason, message: String },
}

/// Builds the provider for a type, or says why its settings cannot make one.
pub fn build(kind: ProviderType, settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    (registry::entry(kind).new)(settings)
}

/// One HTTP request to a notification service.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    /// The full URL: webhook paths and queries are credentials.
    pub url: SecretString,
    /// The provider's own headers (Content-Type comes from the body).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Headers set after the Secret's `headers`, so none of those replaces
    /// them (generic-hmac's signature, as Flux sets it last).
    pub final_headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Body,
    pub auth: Auth,
}

impl Request {
    /// A POST of `body` to `url`, without auth.
    pub fn post(url: &SecretString, body: Body) -> Self {
        Self {
            method: Method::POST,
            url: url.clone(),
            headers: Vec::new(),
            final_headers: Vec::new(),
            body,
            auth: Auth::None,
        }
    }

    /// Adds a header (chainable).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Adds a header no Secret `headers` entry replaces (chainable).
    pub fn final_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.final_headers.push((name, value));
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
}

/// A request body: its bytes exactly as sent, and their content type.
#[derive(Clone, Debug)]
pub struct Body {
    /// Empty for a request without a body: no `Content-Type` is sent.
    pub content_type: &'static str,
    pub bytes: Bytes,
}

impl Body {
    /// `value` as JSON, `Content-Type: application/json` (as Flux sends it).
    pub fn json(value: &impl Serialize) -> Result<Self, String> {
        Self::json_as("application/json", value)
    }

    /// `value` as JSON with another content type.
    pub fn json_as(content_type: &'static str, value: &impl Serialize) -> Result<Self, String> {
        // Most payloads are under a kilobyte: one allocation instead of
        // growing from serde_json's 128 bytes.
        let mut bytes = Vec::with_capacity(1024);
        serde_json::to_writer(&mut bytes, value).map_err(|e| format!("cannot encode JSON: {e}"))?;
        Ok(Self {
            content_type,
            bytes: bytes.into(),
        })
    }

    /// The body as `herald route` shows it: JSON as a value, anything else
    /// as text.
    pub fn show(&self) -> Value {
        if self.content_type.contains("json")
            && let Ok(value) = serde_json::from_slice(&self.bytes)
        {
            return value;
        }
        Value::String(String::from_utf8_lossy(&self.bytes).into_owned())
    }
}

/// How a request authenticates.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(SecretString),
    /// `Authorization: Basic …`.
    Basic {
        username: String,
        password: SecretString,
    },
    /// A credential in a header of the service's own (GitLab's
    /// `PRIVATE-TOKEN`, Gitea's `Authorization: token …`): sent as is and
    /// marked sensitive like the others.
    Header(HeaderName, SecretString),
}

/// A service's answer, as far as providers judge it.
pub struct Response<'a> {
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
    /// The first 64 KiB of the body.
    pub body: &'a [u8],
}

/// What a response means for the notification.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again; after `after` when the service said so in its body
    /// (`None`: the dispatcher obeys a `Retry-After` header, else backs off).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Give up: the service refused the notification.
    Fail(String),
}

/// The usual judgement (DESIGN §3.9): any 2xx delivers; 408, 429 and 5xx
/// are retried; other statuses fail at once.
pub fn judge_status(response: &Response<'_>) -> Verdict {
    let status = response.status;
    if status.is_success() {
        return Verdict::Delivered;
    }
    let snippet: String = String::from_utf8_lossy(response.body)
        .chars()
        .take(200)
        .collect();
    let reason = format!("HTTP {status}: {}", snippet.trim());
    let retryable = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    if retryable {
        Verdict::Retry {
            reason,
            after: None,
        }
    } else {
        Verdict::Fail(reason)
    }
}

/// A service's whole answer, owned: what a [`Sender`] returns.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The first 64 KiB of the body.
    pub body: Vec<u8>,
    /// The `Retry-After` header, parsed and capped by the dispatcher.
    pub retry_after: Option<Duration>,
}

impl Reply {
    /// The answer as [`Notifier::judge`] sees it.
    pub fn response(&self) -> Response<'_> {
        Response {
            status: self.status,
            headers: &self.headers,
            body: &self.body,
        }
    }

    /// The usual judgement ([`judge_status`]), with the service's
    /// `Retry-After` when it is retried.
    pub fn verdict(&self) -> Verdict {
        match judge_status(&self.response()) {
            Verdict::Retry { reason, after } => Verdict::Retry {
                reason,
                after: after.or(self.retry_after),
            },
            verdict => verdict,
        }
    }

    /// The body as JSON, or an error naming what was expected.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, Verdict> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Verdict::Fail(format!("cannot read {what} from the answer: {e}")))
    }
}

/// Why a [`Sender`] got no answer.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// Connection failed, timed out or broke: worth another attempt.
    Transport(String),
    /// The request cannot be sent as built (bad header, bad URL): it would
    /// fail on every attempt.
    Invalid(String),
}

impl From<SendError> for Verdict {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Transport(reason) => Verdict::Retry {
                reason,
                after: None,
            },
            SendError::Invalid(reason) => Verdict::Fail(reason),
        }
    }
}

/// Sends one request the way the dispatcher sends single requests: over
/// the destination's HTTP client (its CA, client certificate and proxy),
/// within its timeout, with the Secret's `headers`. Errors never quote the
/// URL.
pub trait Sender: Sync {
    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Reply, SendError>>;
}

/// A delivery that takes more than one request (read the commit's statuses,
/// then write one; get a token, then publish) or is not HTTP at all (NATS).
/// The dispatcher calls [`Conversation::deliver`] on every attempt, in place
/// of sending [`Notifier::request`], and treats its verdict like a
/// response's: retries, backoff, circuit breaker and max age are the same.
pub trait Conversation: Send + Sync {
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        rendered: Option<&'a Rendered>,
        sender: &'a dyn Sender,
    ) -> BoxFuture<'a, Verdict>;
}

/// Where a thread started: what later notifications reply to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadAnchor {
    pub ts: String,
    pub channel: String,
}

/// One notification service.
pub trait Notifier: Send + Sync {
    /// The settings it was built from.
    fn settings(&self) -> &Settings;

    /// The request delivering one notification: in the Alert's rendered
    /// template when there is one, else in the service's default format;
    /// a reply in `thread` when given (only when [`Notifier::supports_threads`]).
    /// An error fails the notification (it would fail on every attempt).
    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String>;

    /// Why nothing is sent for this notification, when Flux sends nothing
    /// (PagerDuty and incident.io skip `Progressing` events): the
    /// dispatcher logs it at debug level and counts it as `skipped`.
    fn skips(&self, _n: &Notification) -> Option<&'static str> {
        None
    }

    /// A second request Flux sends after the first one was delivered
    /// (PagerDuty's change event for info events); retried like the first,
    /// and the notification is delivered once both are.
    fn follow_up(
        &self,
        _n: &Notification,
        _rendered: Option<&Rendered>,
    ) -> Result<Option<Request>, String> {
        Ok(None)
    }

    /// The provider's delivery when it is more than one request (see
    /// [`Conversation`]); `None` for the single-request providers.
    /// [`Notifier::request`] is then only what `herald route` shows.
    fn conversation(&self) -> Option<&dyn Conversation> {
        None
    }

    /// Whether a response delivered the notification.
    fn judge(&self, response: &Response<'_>) -> Verdict {
        judge_status(response)
    }

    /// The body `herald route` prints for a notification.
    fn payload(&self, n: &Notification, rendered: Option<&Rendered>) -> Result<Value, String> {
        Ok(self.request(n, rendered, None)?.body.show())
    }

    /// Whether notifications can be grouped into threads (DESIGN §3.11).
    fn supports_threads(&self) -> bool {
        false
    }

    /// The thread a delivered message started, read from the response body.
    fn thread_anchor(&self, _body: &[u8]) -> Option<ThreadAnchor> {
        None
    }

    /// The address as it may be shown: scheme and host only.
    fn masked_address(&self) -> String {
        self.settings()
            .address
            .as_ref()
            .map_or_else(|| "***".to_owned(), |a| mask::url(a.expose()))
    }

    /// Everything that must never be printed.
    fn secrets(&self) -> Vec<&SecretString> {
        self.settings().secrets()
    }

    /// Problems worth a warning in `herald check` (e.g. a bot token without a channel).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The message text: the rendered `spec.template.text` when the Alert has
/// one, else the event's message.
pub fn message_text<'a>(n: &'a Notification, rendered: Option<&'a Rendered>) -> &'a str {
    rendered
        .and_then(|r| r.text.as_deref())
        .unwrap_or(&n.event.message)
}

/// The metadata chat messages list: none when a text template chooses what
/// to show, else every merged key, sorted.
pub fn listed_metadata<'a>(
    n: &'a Notification,
    rendered: Option<&Rendered>,
) -> impl Iterator<Item = (&'a String, &'a String)> {
    let templated = rendered.is_some_and(|r| r.text.is_some());
    n.metadata.iter().filter(move |_| !templated)
}

#[cfg(test)]
pub(crate) mod testing {
    //! A notification to build requests from in unit tests.

    use std::sync::Arc;

    use crate::api::{ProviderType, Severity};
    use crate::notification::{Notification, Route};
    use crate::source::ObjectKey;

    pub fn notification(severity: Severity, metadata: &[(&str, &str)]) -> Notification {
        let mut event =
            crate::api::event::sample("Kustomization", "app", severity, "Health check failed", &[]);
        event.involved_object.namespace = "flux-system".into();
        Notification {
            event: Arc::new(event),
            metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            route: Arc::new(Route {
                alert: ObjectKey::new("flux-system", "alert"),
                alert_uid: String::new(),
                alert_channel: None,
                provider: ObjectKey::new("flux-system", "provider"),
                provider_type: ProviderType::Generic,
                provider_channel: None,
                alert_object: None,
            }),
            digest: None,
        }
    }
}

//! `azureeventhub`: sends the event as Flux marshals it (the JSON `generic`
//! POSTs) as one event to an Azure Event Hub. As in Flux, either the
//! address is a SAS connection string (`Endpoint=sb://<ns>/;
//! SharedAccessKeyName=…;SharedAccessKey=…;EntityPath=<hub>`), or the address
//! is the hub's name, the channel its namespace (`<ns>` gets
//! `.servicebus.windows.net` unless it has `.servicebus.` already) and the
//! Secret's `token` a JWT.
//!
//! Flux speaks AMQP through Azure's Go SDK; herald uses the Event Hubs REST
//! API, `POST https://<ns>/<hub>/messages`, through the Provider's HTTP
//! client: the event's body is the same bytes. With a connection string,
//! every attempt signs a fresh SAS token (HMAC-SHA256 of the resource URI
//! and an expiry an hour ahead); with a JWT, it is the bearer token.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, HeaderValue};

use super::identity::{SCOPE_EVENT_HUBS, WorkloadIdentity};
use super::{
    Auth, Conversation, Invalid, Notifier, Request, Sender, Settings, ThreadAnchor, Verdict,
    generic,
};
use crate::api::Reason;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::template::Rendered;

/// The REST API's content type for sending an event.
const CONTENT_TYPE: &str = "application/atom+xml;type=entry;charset=utf-8";
/// The REST API version herald speaks.
const API_VERSION: &str = "2014-01";
/// How long a SAS token is valid.
const SAS_LIFETIME: u64 = 3600;

pub struct EventHub {
    settings: Settings,
    /// `https://<namespace host>/<hub>`: the SAS resource, and where the
    /// messages go (`/messages` below it).
    resource: String,
    credential: Credential,
    /// The Secret had `headers`, which Event Hubs does not get.
    ignored_headers: bool,
}

enum Credential {
    Sas {
        key_name: String,
        key: ring::hmac::Key,
    },
    Jwt(SecretString),
    /// `spec.serviceAccountName`: a bearer token exchanged with Azure AD
    /// for every attempt that has no cached one.
    Identity(Arc<WorkloadIdentity>),
}

fn invalid(reason: Reason, message: impl Into<String>) -> Invalid {
    Invalid::Setting {
        reason,
        message: message.into(),
    }
}

pub fn new(mut settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let address = settings.address()?.expose().trim().to_owned();
    let identity = settings.workload_identity.clone();
    let (resource, credential) = if address.contains("SharedAccessKey") {
        if identity.is_some() {
            return Err(invalid(
                Reason::InvalidCredentials,
                "the address is a SAS connection string and spec.serviceAccountName is set: \
                 use one of them (as Flux requires)",
            ));
        }
        if settings.token.is_some() {
            return Err(invalid(
                Reason::InvalidCredentials,
                "the address is a SAS connection string and spec.secretRef's Secret has a \
                 'token' too: use one of them (as Flux requires)",
            ));
        }
        connection_string(&address)?
    } else {
        let credential = match (settings.token.clone(), identity) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    Reason::InvalidCredentials,
                    "spec.serviceAccountName and a JWT in the 'token' key of spec.secretRef's \
                     Secret are both set: use one of them (as Flux requires)",
                ));
            }
            (Some(token), None) => Credential::Jwt(token),
            (None, Some(identity)) => Credential::Identity(identity),
            (None, None) => {
                return Err(invalid(
                    Reason::SecretKeyMissing,
                    "azureeventhub needs a SAS connection string as the address, a JWT in the \
                     'token' key of spec.secretRef's Secret, or spec.serviceAccountName (workload \
                     identity): herald does not use the controller's own managed identity",
                ));
            }
        };
        let namespace = settings.channel.as_deref().ok_or_else(|| {
            invalid(
                Reason::ChannelMissing,
                "spec.channel: with a JWT, azureeventhub needs the Event Hubs namespace in the \
                 channel, and there is none",
            )
        })?;
        let host = fully_qualified(namespace);
        let resource = format!("https://{host}/{address}");
        check_url(&resource)?;
        (resource, credential)
    };
    // Flux sends no Secret headers to Event Hubs.
    let ignored_headers = !settings.headers.is_empty();
    settings.headers.clear();
    Ok(Arc::new(EventHub {
        settings,
        resource,
        credential,
        ignored_headers,
    }))
}

/// The namespace's host: as given when it has `.servicebus.`, else with
/// the suffix of the cloud `AZURE_AUTHORITY_HOST` names (Flux's rule).
fn fully_qualified(namespace: &str) -> String {
    if namespace.contains(".servicebus.") {
        return namespace.to_owned();
    }
    let authority = std::env::var("AZURE_AUTHORITY_HOST").unwrap_or_default();
    let suffix = if authority.contains("chinacloudapi.cn") {
        ".servicebus.chinacloudapi.cn"
    } else if authority.contains("microsoftonline.us") {
        ".servicebus.usgovcloudapi.net"
    } else {
        ".servicebus.windows.net"
    };
    format!("{namespace}{suffix}")
}

fn check_url(resource: &str) -> Result<(), Invalid> {
    url::Url::parse(resource).map(|_| ()).map_err(|e| {
        invalid(
            Reason::InvalidAddress,
            format!("the Event Hub's namespace and name do not make a URL ({e})"),
        )
    })
}

/// The resource and SAS key of a connection string; errors name the
/// missing part, never a value.
fn connection_string(address: &str) -> Result<(String, Credential), Invalid> {
    let mut endpoint = None;
    let mut key_name = None;
    let mut key = None;
    let mut hub = None;
    for part in address.split(';').filter(|p| !p.trim().is_empty()) {
        let Some((name, value)) = part.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match name.trim() {
            "Endpoint" => endpoint = Some(value),
            "SharedAccessKeyName" => key_name = Some(value),
            "SharedAccessKey" => key = Some(value),
            "EntityPath" => hub = Some(value),
            _ => {}
        }
    }
    let missing = |what: &str| {
        invalid(
            Reason::InvalidAddress,
            format!("the SAS connection string in the address has no {what}"),
        )
    };
    let endpoint = endpoint.ok_or_else(|| missing("Endpoint"))?;
    let key_name = key_name.ok_or_else(|| missing("SharedAccessKeyName"))?;
    let key = key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| missing("SharedAccessKey"))?;
    let hub = hub
        .filter(|h| !h.is_empty())
        .ok_or_else(|| missing("EntityPath (the Event Hub's name)"))?;
    let host = endpoint
        .strip_prefix("sb://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|host| !host.is_empty() && !host.contains('/'))
        .ok_or_else(|| {
            invalid(
                Reason::InvalidAddress,
                "the Endpoint of the SAS connection string in the address is not sb://<host>/",
            )
        })?;
    let resource = format!("https://{host}/{hub}");
    check_url(&resource)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    Ok((
        resource,
        Credential::Sas {
            key_name: key_name.to_owned(),
            key,
        },
    ))
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl EventHub {
    /// `SharedAccessSignature sr=…&sig=…&se=…&skn=…`, valid for an hour
    /// from `now` (Unix seconds).
    fn sas(&self, key_name: &str, key: &ring::hmac::Key, now: u64) -> String {
        let resource = encode(&self.resource.to_lowercase());
        let expiry = now + SAS_LIFETIME;
        let signature = ring::hmac::sign(key, format!("{resource}\n{expiry}").as_bytes());
        let signature = encode(&STANDARD.encode(signature.as_ref()));
        format!("SharedAccessSignature sr={resource}&sig={signature}&se={expiry}&skn={key_name}")
    }

    /// The send request, signed at `now` (Unix seconds).
    fn send_request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        now: u64,
        exchanged: Option<SecretString>,
    ) -> Result<Request, String> {
        let mut body = generic::go_event_json(n, rendered)?;
        body.content_type = CONTENT_TYPE;
        let url = SecretString::new(format!(
            "{}/messages?api-version={API_VERSION}",
            self.resource
        ));
        let request = Request::post(&url, body);
        Ok(match &self.credential {
            Credential::Jwt(token) => request.auth(Auth::Bearer(token.clone())),
            // `herald route` has no cluster, so no token: it shows where
            // one would go.
            Credential::Identity(_) => request
                .auth(Auth::Bearer(exchanged.unwrap_or_else(|| {
                    SecretString::new("<workload identity token>".to_owned())
                }))),
            Credential::Sas { key_name, key } => {
                let mut value = HeaderValue::from_str(&self.sas(key_name, key, now))
                    .map_err(|_| "the SAS key name is not a valid header value")?;
                value.set_sensitive(true);
                request.header(AUTHORIZATION, value)
            }
        })
    }

    async fn send(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        sender: &dyn Sender,
    ) -> Verdict {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let identity = match &self.credential {
            Credential::Identity(identity) => Some(identity),
            _ => None,
        };
        // With workload identity, a 401 drops the cached token and the
        // send is tried once more with a new one (it may have been revoked).
        let mut fresh = false;
        loop {
            let exchanged = match identity {
                Some(identity) => match identity.azure_token(SCOPE_EVENT_HUBS, sender).await {
                    Ok(token) => Some(token),
                    Err(verdict) => return verdict,
                },
                None => None,
            };
            let request = match self.send_request(n, rendered, now, exchanged) {
                Ok(request) => request,
                Err(e) => return Verdict::Fail(e),
            };
            let reply = match sender.send(&request).await {
                Ok(reply) => reply,
                Err(e) => return e.into(),
            };
            match identity {
                Some(identity) if reply.status == reqwest::StatusCode::UNAUTHORIZED => {
                    identity.forget(SCOPE_EVENT_HUBS);
                    if fresh {
                        return reply.verdict();
                    }
                    fresh = true;
                }
                _ => return reply.verdict(),
            }
        }
    }
}

impl Conversation for EventHub {
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        rendered: Option<&'a Rendered>,
        sender: &'a dyn Sender,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(self.send(n, rendered, sender))
    }
}

impl Notifier for EventHub {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What `herald route` shows: the request as the next attempt would
    /// send it.
    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        self.send_request(n, rendered, 0, None)
    }

    fn conversation(&self) -> Option<&dyn Conversation> {
        Some(self)
    }

    fn masked_address(&self) -> String {
        crate::mask::url(&self.resource)
    }

    fn warnings(&self) -> Vec<String> {
        match self.ignored_headers {
            true => vec!["the Secret's 'headers' are not sent to Event Hubs (as in Flux)".into()],
            false => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Severity;
    use crate::providers::testing::notification;

    fn settings(address: &str, token: Option<&str>, channel: Option<&str>) -> Settings {
        Settings {
            address: Some(SecretString::new(address.to_owned())),
            token: token.map(|t| SecretString::new(t.to_owned())),
            channel: channel.map(str::to_owned),
            ..Settings::default()
        }
    }

    fn refused(s: Settings) -> (Reason, String) {
        match new(s) {
            Err(Invalid::Setting { reason, message }) => (reason, message),
            Err(Invalid::NoAddress) => panic!("no address"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn a_jwt_goes_to_the_namespace_in_the_channel() {
        let hub = new(settings("my-hub", Some("jwt-token"), Some("my-ns"))).expect("built");
        let n = notification(Severity::Info, &[]);
        let request = hub.request(&n, None, None).expect("request");
        assert_eq!(
            request.url.expose(),
            "https://my-ns.servicebus.windows.net/my-hub/messages?api-version=2014-01"
        );
        assert!(matches!(request.auth, Auth::Bearer(ref t) if t.expose() == "jwt-token"));
        assert_eq!(request.body.content_type, CONTENT_TYPE);
        assert_eq!(
            fully_qualified("ns.servicebus.usgovcloudapi.net"),
            "ns.servicebus.usgovcloudapi.net"
        );
    }

    #[test]
    fn bad_credentials_are_refused_without_quoting_them() {
        let sas = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=s3cret-key";
        let (reason, message) = refused(settings(sas, None, None));
        assert_eq!(reason, Reason::InvalidAddress);
        assert!(message.contains("EntityPath"), "{message}");
        assert!(!message.contains("s3cret-key"), "{message}");
        let with_hub = format!("{sas};EntityPath=hub");
        let (reason, _) = refused(settings(&with_hub, Some("jwt"), None));
        assert_eq!(reason, Reason::InvalidCredentials);
        let (reason, message) = refused(settings("hub", None, Some("ns")));
        assert_eq!(reason, Reason::SecretKeyMissing);
        assert!(message.contains("serviceAccountName"), "{message}");
        let (reason, _) = refused(settings("hub", Some("jwt"), None));
        assert_eq!(reason, Reason::ChannelMissing);
    }
}

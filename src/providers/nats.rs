//! `nats`: publishes the event as Flux marshals it (the same JSON `generic`
//! POSTs) to the subject named by the channel, on the NATS server(s) of the
//! address (`nats://host:port`, comma-separated for a cluster).
//! Authentication as Flux reads it: the Secret's `creds` (a credentials
//! file), else its `nkey` (an NKey seed), else `username` and `password`.
//!
//! Flux connects, publishes, flushes and disconnects for every event; herald
//! keeps one connection per Provider and opens a new one when it broke.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions, ServerAddr};
use futures::future::BoxFuture;
use tokio::sync::Mutex;

use super::{
    Conversation, Invalid, Notifier, Request, Sender, Settings, ThreadAnchor, Verdict, generic,
};
use crate::api::Reason;
use crate::notification::Notification;
use crate::template::Rendered;

/// The client name the server lists for herald's connection (Flux's).
const CLIENT_NAME: &str = "NATS Provider Publisher";
/// How long connecting, or publishing and flushing, may take: Flux's
/// default Provider timeout.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Reconnection attempts the client makes on its own before herald drops
/// it and connects afresh on the next notification.
const MAX_RECONNECTS: usize = 3;

pub struct Nats {
    settings: Settings,
    servers: Vec<ServerAddr>,
    auth: Auth,
    /// The connection, once made; replaced when it broke.
    client: Mutex<Option<Client>>,
}

/// How herald authenticates, in Flux's order of preference.
enum Auth {
    Creds,
    Nkey,
    UserPassword,
    None,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let address = settings.address()?.expose();
    let servers = address
        .split(',')
        .map(|server| server.trim().parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Invalid::Setting {
            reason: Reason::InvalidAddress,
            message: format!(
                "the address is not a NATS server URL (nats://host:port, comma-separated for several): {e}"
            ),
        })?;
    if settings.channel.is_none() {
        return Err(Invalid::Setting {
            reason: Reason::ChannelMissing,
            message: "spec.channel: nats publishes to the subject named by the channel, and there is none".into(),
        });
    }
    let auth = if settings.nats_creds.is_some() {
        // Checked now, so a malformed file is `Ready=False`, not a failed delivery.
        let creds = settings.nats_creds.as_ref().map(|c| c.expose().to_owned());
        ConnectOptions::with_credentials(&creds.unwrap_or_default()).map_err(|_| {
            Invalid::Setting {
                reason: Reason::InvalidCredentials,
                message: "the 'creds' key of spec.secretRef's Secret is not a NATS credentials file (a JWT and an NKey seed)".into(),
            }
        })?;
        Auth::Creds
    } else if settings.nats_nkey.is_some() {
        Auth::Nkey
    } else if settings.username.is_some() && settings.password.is_some() {
        Auth::UserPassword
    } else {
        Auth::None
    };
    Ok(Arc::new(Nats {
        settings,
        servers,
        auth,
        client: Mutex::new(None),
    }))
}

impl Nats {
    /// The connection options: Flux's client name and credentials.
    fn options(&self) -> Result<ConnectOptions, String> {
        let options = ConnectOptions::new()
            .name(CLIENT_NAME)
            .connection_timeout(TIMEOUT)
            .max_reconnects(MAX_RECONNECTS);
        let secret = |value: &Option<crate::mask::SecretString>| {
            value
                .as_ref()
                .map(|v| v.expose().to_owned())
                .unwrap_or_default()
        };
        Ok(match self.auth {
            Auth::Creds => options
                .credentials(&secret(&self.settings.nats_creds))
                .map_err(|_| "the 'creds' key is not a NATS credentials file".to_owned())?,
            Auth::Nkey => options.nkey(secret(&self.settings.nats_nkey)),
            Auth::UserPassword => options.user_and_password(
                self.settings.username.clone().unwrap_or_default(),
                secret(&self.settings.password),
            ),
            Auth::None => options,
        })
    }

    /// The open connection, connecting first when there is none or it broke.
    async fn client(&self) -> Result<Client, Verdict> {
        let mut cached = self.client.lock().await;
        if let Some(client) = cached.as_ref() {
            if client.connection_state() == async_nats::connection::State::Connected {
                return Ok(client.clone());
            }
            *cached = None;
        }
        let options = self.options().map_err(Verdict::Fail)?;
        let client = options
            .connect(self.servers.as_slice())
            .await
            .map_err(|e| {
                let reason = format!("cannot connect to the NATS server: {e}");
                match e.kind() {
                    // The server refused the credentials; another attempt
                    // would be refused too.
                    ConnectErrorKind::AuthorizationViolation
                    | ConnectErrorKind::Authentication
                    | ConnectErrorKind::ServerParse => Verdict::Fail(reason),
                    _ => Verdict::Retry {
                        reason,
                        after: None,
                    },
                }
            })?;
        *cached = Some(client.clone());
        Ok(client)
    }

    /// Drops a connection that failed, so the next attempt opens a new one.
    async fn forget(&self) {
        *self.client.lock().await = None;
    }

    fn subject<'a>(&'a self, n: &'a Notification) -> &'a str {
        n.route
            .channel()
            .or(self.settings.channel.as_deref())
            .unwrap_or_default()
    }

    async fn publish(&self, n: &Notification, rendered: Option<&Rendered>) -> Verdict {
        let body = match generic::go_event_json(n, rendered) {
            Ok(body) => body,
            Err(e) => return Verdict::Fail(e),
        };
        let subject = self.subject(n).to_owned();
        let client = match self.client().await {
            Ok(client) => client,
            Err(verdict) => return verdict,
        };
        let sent = tokio::time::timeout(TIMEOUT, async {
            client
                .publish(subject, body.bytes)
                .await
                .map_err(|e| match e.kind() {
                    async_nats::client::PublishErrorKind::InvalidSubject => {
                        Verdict::Fail(format!("the channel is not a valid NATS subject: {e}"))
                    }
                    async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                        Verdict::Fail(format!("the server refuses a message this large: {e}"))
                    }
                    _ => Verdict::Retry {
                        reason: format!("cannot publish to NATS: {e}"),
                        after: None,
                    },
                })?;
            client.flush().await.map_err(|e| Verdict::Retry {
                reason: format!("cannot flush the NATS connection: {e}"),
                after: None,
            })
        })
        .await;
        match sent {
            Ok(Ok(())) => Verdict::Delivered,
            Ok(Err(verdict)) => {
                self.forget().await;
                verdict
            }
            Err(_) => {
                self.forget().await;
                Verdict::Retry {
                    reason: format!("publishing to NATS timed out after {TIMEOUT:?}"),
                    after: None,
                }
            }
        }
    }
}

impl Conversation for Nats {
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        rendered: Option<&'a Rendered>,
        _sender: &'a dyn Sender,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(self.publish(n, rendered))
    }
}

impl Notifier for Nats {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What `herald route` shows: the message, as if POSTed to the server.
    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let url = self.settings.address().map_err(|_| "no address")?;
        Ok(Request::post(url, generic::go_event_json(n, rendered)?))
    }

    fn conversation(&self) -> Option<&dyn Conversation> {
        Some(self)
    }

    fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.settings.headers.is_empty() {
            warnings.push("the Secret's 'headers' are not sent to NATS (as in Flux)".into());
        }
        if self.settings.token.is_some() && matches!(self.auth, Auth::None) {
            warnings.push(
                "the Secret's 'token' is not used by nats (as in Flux): set 'creds', 'nkey' or \
                 'username' and 'password'"
                    .into(),
            );
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::SecretString;

    fn settings(address: &str, channel: Option<&str>) -> Settings {
        Settings {
            address: Some(SecretString::new(address.to_owned())),
            channel: channel.map(str::to_owned),
            ..Settings::default()
        }
    }

    fn invalid(settings: Settings) -> Invalid {
        match new(settings) {
            Err(e) => e,
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn a_subject_is_required() {
        let Invalid::Setting { reason, message } = invalid(settings("nats://127.0.0.1:4222", None))
        else {
            panic!("not a setting");
        };
        assert_eq!(reason, Reason::ChannelMissing);
        assert!(message.contains("spec.channel"), "{message}");
    }

    #[test]
    fn servers_are_parsed_and_a_bad_address_quotes_nothing() {
        assert!(new(settings("nats://a:4222, nats://b:4222", Some("flux"))).is_ok());
        assert!(new(settings("127.0.0.1:4222", Some("flux"))).is_ok());
        let Invalid::Setting { reason, message } =
            invalid(settings("http://user:s3cret-pw@host:1", Some("flux")))
        else {
            panic!("not a setting");
        };
        assert_eq!(reason, Reason::InvalidAddress);
        assert!(!message.contains("s3cret-pw"), "{message}");
    }

    #[test]
    fn a_malformed_creds_file_is_refused() {
        let mut s = settings("nats://127.0.0.1:4222", Some("flux"));
        s.nats_creds = Some(SecretString::new("not a creds file"));
        let Invalid::Setting { reason, message } = invalid(s) else {
            panic!("not a setting");
        };
        assert_eq!(reason, Reason::InvalidCredentials);
        assert!(!message.contains("not a creds file"), "{message}");
    }
}

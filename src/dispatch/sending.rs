//! HTTP sending: one request over a destination's client, its headers
//! (auth marked sensitive), a bounded read of the answer, and transport
//! errors described without the URL (which may hold a secret).

use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};

use crate::mask::SecretString;
use crate::providers::resolve::Destination;
use crate::providers::{Auth, Reply, Request, SendError, Sender};

use super::retry;

/// How much of a response body is read (Slack's replies are small).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Sends requests over one destination's client, for single requests and
/// conversations alike.
pub(super) struct HttpSender<'a> {
    pub(super) client: &'a reqwest::Client,
    pub(super) timeout: Duration,
    pub(super) extra_headers: &'a [(reqwest::header::HeaderName, SecretString)],
    /// Whose requests these are: their URLs are parsed once per destination.
    pub(super) destination: &'a Destination,
}

impl HttpSender<'_> {
    pub(super) async fn send_now(&self, request: &Request) -> Result<Reply, SendError> {
        let headers = request_headers(request, self.extra_headers).map_err(SendError::Invalid)?;
        let url = request.url.expose();
        let builder = match self.destination.parsed_url(url) {
            Some(parsed) => self.client.request(request.method.clone(), parsed),
            // reqwest says why it does not parse.
            None => self.client.request(request.method.clone(), url),
        };
        let sent = builder
            .timeout(self.timeout)
            .headers(headers)
            .body(request.body.bytes.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) if e.is_builder() => {
                return Err(SendError::Invalid(e.without_url().to_string()));
            }
            Err(e) => return Err(SendError::Transport(describe(e))),
        };
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
        let body = read_limited(response).await;
        Ok(Reply {
            status,
            headers,
            body,
            retry_after,
        })
    }
}

impl Sender for HttpSender<'_> {
    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Reply, SendError>> {
        Box::pin(self.send_now(request))
    }
}

/// The headers of a request: its body's Content-Type, the provider's
/// headers, its auth, then the Secret's `headers` (which win, as in Flux).
/// Credentials are marked sensitive.
fn request_headers(
    request: &Request,
    extra: &[(reqwest::header::HeaderName, SecretString)],
) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    // A read without a body (a forge's GET) has no content type.
    if !request.body.content_type.is_empty() {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(request.body.content_type),
        );
    }
    for (name, value) in &request.headers {
        headers.append(name.clone(), value.clone());
    }
    let authorization = match &request.auth {
        Auth::None | Auth::Header(..) => None,
        Auth::Bearer(token) => Some(format!("Bearer {}", token.expose())),
        Auth::Basic { username, password } => {
            use base64::Engine;
            let pair = format!("{username}:{}", password.expose());
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        }
    };
    if let Some(authorization) = authorization {
        let mut value = HeaderValue::from_str(&authorization)
            .map_err(|_| "the credentials are not a valid Authorization header".to_owned())?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    if let Auth::Header(name, credential) = &request.auth {
        let mut value = HeaderValue::from_str(credential.expose())
            .map_err(|_| format!("the credentials are not a valid {name} header"))?;
        value.set_sensitive(true);
        headers.insert(name.clone(), value);
    }
    for (name, value) in extra {
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| format!("the value of header {name} is not valid"))?;
        value.set_sensitive(true);
        headers.insert(name.clone(), value);
    }
    for (name, value) in &request.final_headers {
        headers.insert(name.clone(), value.clone());
    }
    Ok(headers)
}

/// A transport error with its causes, without the URL reqwest would quote.
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads at most [`MAX_RESPONSE_BODY`] bytes of a response: a hostile or
/// broken endpoint cannot make herald buffer an endless body.
async fn read_limited(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_RESPONSE_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BODY {
            break;
        }
    }
    body
}

//! The webhook endpoint on `--receiverAddr`: `POST /hook/<digest>`.
//!
//! Answers as Flux's receiver server does: 404 for a path no Receiver has,
//! 503 for a suspended or not-ready Receiver, 400 when verification fails,
//! 500 when a target cannot be resolved, filtered or annotated (the others
//! are still tried), 200 otherwise; and, with the event endpoint's
//! hardening, 413 above 3 MiB, 408 for a body not sent in time, 503 with
//! `Retry-After` when too many bodies are being read or too many requests
//! are being handled at once, 405 for methods other than POST. A request
//! is verified before anything is annotated; a request that fails
//! verification annotates nothing. Responses and logs never carry a token,
//! a signature or the webhook path's digest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::annotate::{Target, Targets, default_api_version};
use super::oidc::KeyCache;
use super::replay::{self, Replays};
use super::table::{Entry, ReceiverTable, State as EntryState};
use super::verify::{self, Rejection, Verified};
use crate::api::{ReceiverResource, ReceiverType};
use crate::cel::{self, Expression};
use crate::metrics::Metrics;
use crate::receiver::budget::BodyBudget;
use crate::receiver::{Refusal, read_body};

/// Verified requests being handled at once (verification with fetched
/// keys, API calls); more are answered 503 with `Retry-After`.
pub const MAX_IN_FLIGHT: usize = 64;
/// Deadline for resolving and annotating every target of one request.
pub const ANNOTATE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the webhook endpoint needs.
pub struct WebhookServer {
    pub table: Arc<ArcSwap<ReceiverTable>>,
    pub targets: Arc<dyn Targets>,
    pub keys: Arc<KeyCache>,
    pub metrics: Arc<Metrics>,
    pub body_budget: BodyBudget,
    pub body_timeout: Duration,
    pub replays: Replays,
    /// `--receiver-replay-protection`: a request whose sender's delivery
    /// id was handled within the window is acknowledged, not acted on.
    /// Off by default, as in Flux: every verified request acts.
    pub replay_protection: bool,
    pub in_flight: Arc<Semaphore>,
    pub no_cross_namespace_refs: bool,
    /// Cleared at shutdown: later requests are answered 503.
    pub accepting: AtomicBool,
}

impl WebhookServer {
    pub fn new(
        table: Arc<ArcSwap<ReceiverTable>>,
        targets: Arc<dyn Targets>,
        keys: Arc<KeyCache>,
        metrics: Arc<Metrics>,
        body_timeout: Duration,
        no_cross_namespace_refs: bool,
        replay_protection: bool,
    ) -> Self {
        Self {
            table,
            targets,
            keys,
            metrics,
            // Its own pools: webhook floods never starve the event endpoint.
            body_budget: BodyBudget::new(Default::default()),
            body_timeout,
            replays: Replays::default(),
            replay_protection,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            no_cross_namespace_refs,
            accepting: AtomicBool::new(true),
        }
    }
}

/// The router: every path, every method.
pub fn router(server: Arc<WebhookServer>) -> Router {
    Router::new().fallback(handle).with_state(server)
}

fn text(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}

fn unavailable(message: &'static str) -> Response {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

async fn handle(
    State(server): State<Arc<WebhookServer>>,
    request: axum::extract::Request,
) -> Response {
    let entry = {
        let path = request.uri().path();
        let table = server.table.load();
        match table.get(path) {
            Some(entry) if path.starts_with(crate::api::receiver::WEBHOOK_PATH_PREFIX) => {
                entry.clone()
            }
            _ => {
                server.metrics.webhook("", "", "not_found");
                return text(StatusCode::NOT_FOUND, "no receiver for this path\n");
            }
        }
    };
    let receiver = entry.key.to_string();
    let kind = entry.kind.as_str();
    let count = |result: &'static str| server.metrics.webhook(&receiver, kind, result);
    if request.method() != Method::POST {
        count("method_not_allowed");
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only POST is accepted\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    match entry.state {
        EntryState::Ready => {}
        EntryState::Suspended => {
            count("suspended");
            tracing::warn!(%receiver, "webhook refused: receiver is suspended");
            return text(StatusCode::SERVICE_UNAVAILABLE, "receiver is suspended\n");
        }
        EntryState::NotReady => {
            count("not_ready");
            tracing::warn!(%receiver, "webhook refused: receiver is not ready");
            return text(StatusCode::SERVICE_UNAVAILABLE, "receiver is not ready\n");
        }
    }
    if !server.accepting.load(Ordering::Acquire) {
        count("shutting_down");
        return unavailable("herald is shutting down\n");
    }
    let (parts, body) = request.into_parts();
    let mut reservation = server.body_budget.reservation();
    let body = match read_body(body, &mut reservation, server.body_timeout).await {
        Ok(body) => body,
        Err(refusal) => {
            let (result, response) = match refusal {
                Refusal::TooLarge => (
                    "too_large",
                    text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request body is larger than 3 MiB\n",
                    ),
                ),
                Refusal::Unreadable => (
                    "unreadable",
                    text(StatusCode::BAD_REQUEST, "cannot read the request body\n"),
                ),
                Refusal::Timeout => (
                    "timeout",
                    text(
                        StatusCode::REQUEST_TIMEOUT,
                        "request body not received in time\n",
                    ),
                ),
                Refusal::OverBudget => (
                    "over_budget",
                    unavailable("too many request bodies are being read at once\n"),
                ),
            };
            count(result);
            return response;
        }
    };
    // Bodies being read are bounded by the memory budget; what follows
    // (fetching keys, API calls) by the number of requests at once.
    let Ok(_permit) = server.in_flight.clone().try_acquire_owned() else {
        count("busy");
        return unavailable("too many webhook requests are being handled\n");
    };
    let headers = parts.headers;
    let verified = match verify_request(&server.keys, &entry, &headers, &body).await {
        Ok(verified) => verified,
        Err(rejection) => {
            count("rejected");
            tracing::warn!(%receiver, receiver_type = kind, reason = %rejection, "webhook refused: unable to validate payload");
            return text(StatusCode::BAD_REQUEST, "request verification failed\n");
        }
    };
    let replay_key = server
        .replay_protection
        .then(|| delivery_key(&entry, &headers, &body))
        .flatten();
    if let Some(key) = &replay_key
        && server.replays.seen(key, Instant::now())
    {
        count("replayed");
        tracing::warn!(%receiver, "webhook ignored: the same request was already handled");
        return text(StatusCode::OK, "already handled\n");
    }
    if let Some(event) = verified.event.as_deref() {
        tracing::info!(%receiver, receiver_type = kind, event = %truncate(event), "handling webhook event");
    }
    // A body of up to 3 MiB parsed into CEL values: off the async workers.
    let request =
        match crate::parallel::off_runtime(|| FilterInput::new(&entry, &headers, &body, &verified))
        {
            Ok(request) => request,
            Err(e) => {
                count("filter_failed");
                tracing::error!(%receiver, error = %e, "unable to create resource filters");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "unable to create resource filters\n",
                );
            }
        };
    drop(body);
    drop(reservation);
    let work = reconcile_all(&server, &entry, &request);
    let failed = match tokio::time::timeout(ANNOTATE_TIMEOUT, work).await {
        Ok(failed) => failed,
        Err(_) => {
            tracing::error!(%receiver, "requesting reconciliation timed out");
            true
        }
    };
    if failed {
        count("failed");
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reconciliation could not be requested for every resource\n",
        )
    } else {
        if let Some(key) = replay_key {
            server.replays.record(key, Instant::now());
        }
        count("accepted");
        text(StatusCode::OK, "reconciliation requested\n")
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(128).collect()
}

/// Verifies a request as the Receiver's type requires.
async fn verify_request(
    keys: &KeyCache,
    entry: &Entry,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verified, Rejection> {
    match entry.kind {
        ReceiverType::GenericOidc => {
            let claims = keys.verify_generic_oidc(&entry.oidc, headers).await?;
            Ok(Verified {
                claims: Some(claims),
                ..Default::default()
            })
        }
        ReceiverType::Gcr => {
            let email = entry.secret.email.as_deref().unwrap_or_default();
            if email.is_empty() {
                return Err(Rejection(
                    "invalid secret data: required field 'email' for GCR receiver".into(),
                ));
            }
            let audience = entry.secret.audience.as_deref().unwrap_or_default();
            if audience.is_empty() {
                return Err(Rejection(
                    "invalid secret data: required field 'audience' for GCR receiver".into(),
                ));
            }
            keys.verify_gcr(headers, email, audience).await?;
            let unwrapped = verify::unwrap_gcr_payload(body)?;
            Ok(Verified {
                filter_body: Some(unwrapped),
                ..Default::default()
            })
        }
        kind => verify::verify(kind, headers, body, &entry.token, &entry.events),
    }
}

/// What a request is remembered by for the opt-in replay protection: the
/// sender's own delivery id, for the types whose senders give one — never
/// the body or a credential alone (a CI job posting the same signed body on
/// every deploy, or a reused bearer token, is a new request each time).
/// `None`: the type has no delivery id, or this request carries none, and
/// the request is always acted on.
fn delivery_key(entry: &Entry, headers: &HeaderMap, body: &[u8]) -> Option<replay::Key> {
    let id = delivery_id(entry.kind, headers, body)?;
    Some(replay::key(&[
        entry.key.namespace.as_bytes(),
        entry.key.name.as_bytes(),
        b"delivery",
        id.as_bytes(),
    ]))
}

/// The sender's unique id of one delivery (the same on its retries).
fn delivery_id(kind: ReceiverType, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let field = |path: &[&str]| {
        let value: Value = serde_json::from_slice(body).ok()?;
        path.iter()
            .try_fold(&value, |node, key| node.get(key))?
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    match kind {
        ReceiverType::Github => header("X-GitHub-Delivery"),
        ReceiverType::Gitlab => header("X-Gitlab-Event-UUID"),
        ReceiverType::Bitbucket => header("X-Request-Id"),
        ReceiverType::Nexus => header("X-Nexus-Webhook-Delivery"),
        ReceiverType::Cdevents => header("Ce-Id"),
        // Pub/Sub push: the message id, kept on redeliveries.
        ReceiverType::Gcr => field(&["message", "messageId"]),
        // Azure Container Registry: the event's id.
        ReceiverType::Acr => field(&["id"]),
        ReceiverType::Generic
        | ReceiverType::GenericHmac
        | ReceiverType::GenericOidc
        | ReceiverType::Harbor
        | ReceiverType::Dockerhub
        | ReceiverType::Quay => None,
    }
}

/// What CEL filters read: `req` (the JSON body, when the request says it
/// is JSON) and `claims` (generic-oidc).
struct FilterInput {
    req: cel::Value,
    claims: Option<cel::Value>,
}

impl FilterInput {
    fn new(
        entry: &Entry,
        headers: &HeaderMap,
        body: &[u8],
        verified: &Verified,
    ) -> Result<Self, String> {
        let claims = verified.claims.as_ref().map(cel::value);
        if !entry.has_filters() {
            return Ok(Self {
                req: cel::Value::Null,
                claims,
            });
        }
        let source = verified.filter_body.as_deref().unwrap_or(body);
        let req = if is_json(headers) {
            let mut values = serde_json::Deserializer::from_slice(source).into_iter::<Value>();
            match values.next() {
                Some(Ok(value @ (Value::Object(_) | Value::Null))) => value,
                Some(Ok(_)) => {
                    return Err("failed to parse request body as JSON: not an object".into());
                }
                Some(Err(e)) => {
                    return Err(format!(
                        "failed to parse request body as JSON at line {} column {}",
                        e.line(),
                        e.column()
                    ));
                }
                None => return Err("failed to parse request body as JSON: EOF".into()),
            }
        } else {
            Value::Object(Default::default())
        };
        Ok(Self {
            req: cel::value(&req),
            claims,
        })
    }

    fn accepts(&self, filters: &[&Expression], target: &Target) -> Result<bool, String> {
        if filters.is_empty() {
            return Ok(true);
        }
        let mut variables = vec![
            ("res", cel::value(&target.object)),
            ("req", self.req.clone()),
        ];
        if let Some(claims) = &self.claims {
            variables.push(("claims", claims.clone()));
        }
        for filter in filters {
            if !filter.evaluate_bool(&variables)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Flux's `isJSONContent`: some comma-separated Content-Type is
/// `application/json`.
fn is_json(headers: &HeaderMap) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    for part in content_type.split(',') {
        match verify::media_type(part) {
            Ok(media) if media == "application/json" => return true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    false
}

/// Requests reconciliation of every resource; true when any failed.
async fn reconcile_all(server: &WebhookServer, entry: &Entry, input: &FilterInput) -> bool {
    let mut failed = false;
    for (i, resource) in entry.resources.iter().enumerate() {
        let mut filters: Vec<&Expression> = Vec::new();
        if let Some(top) = &entry.resource_filter {
            filters.push(top);
        }
        if let Some(Some(own)) = entry.filters.get(i) {
            filters.push(own);
        }
        if let Err(error) = reconcile_one(server, entry, resource, &filters, input).await {
            tracing::error!(
                receiver = %entry.key,
                kind = %resource.kind,
                name = %resource.name,
                %error,
                "unable to request reconciliation"
            );
            failed = true;
        }
    }
    failed
}

async fn reconcile_one(
    server: &WebhookServer,
    entry: &Entry,
    resource: &ReceiverResource,
    filters: &[&Expression],
    input: &FilterInput,
) -> Result<(), String> {
    let namespace = match resource.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(namespace) => {
            if server.no_cross_namespace_refs && namespace != entry.key.namespace {
                return Err("cross-namespace references are not allowed".into());
            }
            namespace
        }
        None => entry.key.namespace.as_str(),
    };
    let api_version = match resource.api_version.as_deref().filter(|v| !v.is_empty()) {
        Some(version) => version,
        None => default_api_version(&resource.kind)
            .ok_or_else(|| format!("apiVersion must be specified for kind {:?}", resource.kind))?,
    };
    let targets = server
        .targets
        .resolve(resource, namespace, api_version)
        .await?;
    if resource.name == "*" && targets.is_empty() {
        tracing::warn!(
            receiver = %entry.key,
            kind = %resource.kind,
            namespace,
            "no resources found with matching labels"
        );
        return Ok(());
    }
    let kind = entry.kind.as_str();
    let receiver = entry.key.to_string();
    let count = |result: &'static str| {
        server
            .metrics
            .webhook_annotations
            .get_or_create(&crate::metrics::WebhookLabels {
                receiver: receiver.clone(),
                receiver_type: kind,
                result,
            })
            .inc()
    };
    for target in &targets {
        // Bounded by the expressions' cost budget, and off the async workers.
        if !crate::parallel::off_runtime(|| input.accepts(filters, target))? {
            count("filtered");
            tracing::debug!(receiver = %entry.key, target = %format!("{}/{}.{}", target.kind, target.name, target.namespace), "not annotated: the CEL filter returned false");
            continue;
        }
        if let Err(e) = server.targets.annotate(target).await {
            count("failed");
            return Err(e);
        }
        count("annotated");
        tracing::info!(receiver = %entry.key, target = %format!("{}/{}.{}", target.kind, target.name, target.namespace), "resource annotated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::table::{self, ReceiverSecret, SecretLookup};
    use axum::body::Body;
    use futures::future::BoxFuture;
    use ring::hmac;
    use serde_json::json;
    use std::sync::Mutex;
    use tower::ServiceExt as _;

    /// Targets that exist only in memory: every name resolves, `*` to two.
    #[derive(Default)]
    struct FakeTargets {
        annotated: Mutex<Vec<String>>,
    }

    impl Targets for FakeTargets {
        fn resolve<'a>(
            &'a self,
            reference: &'a ReceiverResource,
            namespace: &'a str,
            api_version: &'a str,
        ) -> BoxFuture<'a, Result<Vec<Target>, String>> {
            let names: Vec<String> = if reference.name == "*" {
                vec!["one".into(), "two".into()]
            } else {
                vec![reference.name.clone()]
            };
            let targets = names
                .into_iter()
                .map(|name| Target {
                    api_version: api_version.into(),
                    kind: reference.kind.clone(),
                    namespace: namespace.into(),
                    object: json!({"metadata": {"name": name, "namespace": namespace}}),
                    name,
                })
                .collect();
            Box::pin(async move { Ok(targets) })
        }

        fn annotate<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), String>> {
            self.annotated.lock().unwrap().push(target.name.clone());
            Box::pin(async { Ok(()) })
        }
    }

    const TOKEN: &str = "t0ken";

    fn server(spec: serde_json::Value) -> (Arc<WebhookServer>, Arc<FakeTargets>, String) {
        let receiver: crate::api::Receiver = serde_json::from_value(json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
            "metadata": {"name": "hook", "namespace": "apps"},
            "spec": spec,
        }))
        .unwrap();
        let secret = ReceiverSecret {
            token: Some(TOKEN.as_bytes().to_vec()),
            ..Default::default()
        };
        let (built, statuses) =
            table::build(&[Arc::new(receiver)], |_| SecretLookup::Found(&secret));
        let path = statuses[0].webhook_path.clone().unwrap();
        let targets = Arc::new(FakeTargets::default());
        let server = Arc::new(WebhookServer::new(
            Arc::new(ArcSwap::from_pointee(built)),
            targets.clone(),
            Arc::new(KeyCache::new("http://127.0.0.1:9/".into())),
            Arc::new(Metrics::default()),
            Duration::from_secs(5),
            true,
            false,
        ));
        (server, targets, path)
    }

    async fn call(
        server: &Arc<WebhookServer>,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (StatusCode, String) {
        let mut request = axum::http::Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = router(server.clone())
            .oneshot(request.body(Body::from(body.to_vec())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn signature(body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, TOKEN.as_bytes());
        format!("sha256={}", verify::hex(hmac::sign(&key, body).as_ref()))
    }

    #[tokio::test]
    async fn verified_requests_annotate_once_and_refused_ones_never() {
        let (server, targets, path) = server(json!({
            "type": "generic-hmac", "secretRef": {"name": "s"},
            "resources": [{"kind": "GitRepository", "name": "app"}],
        }));
        let body = br#"{"a":1}"#;
        let (status, _) = call(
            &server,
            "POST",
            &path,
            &[("X-Signature", "sha256=00".into())],
            body,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            call(&server, "GET", &path, &[], b"").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            call(&server, "POST", "/hook/nope", &[], b"").await.0,
            StatusCode::NOT_FOUND
        );
        assert!(targets.annotated.lock().unwrap().is_empty());
        let signed = [("X-Signature", signature(body))];
        assert_eq!(
            call(&server, "POST", &path, &signed, body).await.0,
            StatusCode::OK
        );
        assert_eq!(*targets.annotated.lock().unwrap(), ["app"]);
        // The same signed body again (a CI job on its next deploy): acted
        // on again, as Flux does.
        let (status, text) = call(&server, "POST", &path, &signed, body).await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::OK, "reconciliation requested\n")
        );
        assert_eq!(targets.annotated.lock().unwrap().len(), 2);
        let metrics = server.metrics.encode();
        assert!(metrics.contains(r#"herald_webhook_requests_total{receiver="apps/hook",receiver_type="generic-hmac",result="accepted"} 2"#), "{metrics}");
        assert!(!metrics.contains(TOKEN));
    }

    #[tokio::test]
    async fn filters_select_and_errors_are_500_without_stopping_the_rest() {
        let (server, targets, path) = server(json!({
            "type": "generic", "secretRef": {"name": "s"},
            "resourceFilter": "res.metadata.name != 'two'",
            "resources": [
                {"kind": "GitRepository", "name": "*", "matchLabels": {"a": "b"}},
                {"kind": "GitRepository", "name": "picked", "filter": "req.pick == res.metadata.name"},
                {"kind": "Kustomization", "name": "no-version"},
                {"kind": "GitRepository", "name": "elsewhere", "namespace": "other"},
                {"kind": "GitRepository", "name": "last"},
            ],
        }));
        let json_type = ("Content-Type", "application/json".to_owned());
        let (status, _) = call(
            &server,
            "POST",
            &path,
            std::slice::from_ref(&json_type),
            br#"{"pick":"picked"}"#,
        )
        .await;
        // No default apiVersion for Kustomization, and no cross-namespace refs.
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            *targets.annotated.lock().unwrap(),
            ["one", "picked", "last"]
        );
        // A body that is not JSON cannot feed the filters.
        let (status, _) = call(&server, "POST", &path, &[json_type], b"[1]").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(targets.annotated.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn suspended_receivers_answer_503() {
        let (server, targets, path) = server(json!({
            "type": "generic", "secretRef": {"name": "s"}, "suspend": true,
            "resources": [{"kind": "GitRepository", "name": "app"}],
        }));
        assert_eq!(
            call(&server, "POST", &path, &[], b"").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert!(targets.annotated.lock().unwrap().is_empty());
    }
}

//! The dispatcher's own guarantees, in process: a panic while delivering one
//! notification is caught, logged masked and counted, and the notifications
//! queued behind it are still delivered; a provider's conversation is
//! retried as a whole, like a single request.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use futures::future::BoxFuture;

use super::delivery::WORKER_IDLE_HEALTHY;
use super::*;
use crate::notification::Notification;
use crate::providers::{
    Body, Conversation, Notifier, Request, Sender, Settings, ThreadAnchor, Verdict,
};
use crate::routing::Delivery;
use crate::routing::{Destination, TableOptions};
use crate::source::manifests;
use crate::template::Rendered;

/// Delegates to a real notifier, but panics (quoting the secret address)
/// on events whose message says "boom".
struct Panicky(Arc<dyn Notifier>);

impl Notifier for Panicky {
    fn settings(&self) -> &Settings {
        self.0.settings()
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        if n.event.message.contains("boom") {
            let address = self
                .0
                .settings()
                .address
                .as_ref()
                .map(|a| a.expose().to_owned());
            panic!("boom while posting to {address:?}");
        }
        self.0.request(n, rendered, thread)
    }
}

/// An HTTP sink answering 200 and recording the request bodies.
async fn sink() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let recorded = received.clone();
    let app = axum::Router::new().fallback(move |body: bytes::Bytes| {
        let recorded = recorded.clone();
        async move {
            let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            recorded.lock().expect("sink").push(value);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (
        format!("http://{address}/services/secret-webhook-path"),
        received,
    )
}

/// Notifications of one event per message, routed by a Slack Provider at
/// `address` whose notifier is wrapped by `wrap`.
fn notifications(
    address: &str,
    messages: &[&str],
    wrap: fn(Arc<dyn Notifier>) -> Arc<dyn Notifier>,
) -> Vec<Delivery> {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: slack, namespace: flux-system}}\n\
         spec: {{type: slack, address: '{address}'}}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: alert, namespace: flux-system}}\n\
         spec: {{providerRef: {{name: slack}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n"
    );
    std::fs::write(dir.path().join("m.yaml"), text).expect("write");
    let (snapshot, _) = manifests::load(dir.path());
    let (table, problems) = crate::routing::build(&snapshot, &TableOptions::default());
    assert!(problems.is_empty(), "{problems:#?}");
    messages
        .iter()
        .flat_map(|message| {
            let event = crate::api::event::sample(
                "Kustomization",
                "app",
                crate::api::Severity::Error,
                message,
                &[],
            );
            table.notifications(event)
        })
        .map(|mut n| {
            let real = &n.alert.destination;
            let destination = Arc::new(Destination {
                key: real.key.clone(),
                kind: real.kind,
                channel: real.channel.clone(),
                notifier: wrap(real.notifier.clone()),
                timeout: real.timeout,
                transport: real.transport.clone(),
                queue: real.queue,
                address: Default::default(),
            });
            n.alert = Arc::new(n.alert.with_destination(destination));
            n
        })
        .collect()
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_panic_while_delivering_loses_nothing_silently() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (address, received) = sink().await;
    let metrics = Arc::new(Metrics::default());
    let dispatcher = Dispatcher::new(DispatchConfig::default(), metrics.clone(), None);
    let queued = dispatcher
        .try_enqueue(notifications(
            &address,
            &["boom", "after", "later"],
            |real| Arc::new(Panicky(real)),
        ))
        .expect("queued");
    assert_eq!(queued.queued, 3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while (dispatcher.pending() > 0 || received.lock().expect("sink").len() < 2)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let texts: Vec<Value> = received
        .lock()
        .expect("sink")
        .iter()
        .map(|body| body["attachments"][0]["text"].clone())
        .collect();
    assert_eq!(texts, ["after", "later"], "the ones behind were delivered");
    assert_eq!(dispatcher.pending(), 0);
    let exposition = metrics.encode();
    for line in [
        "herald_queue_depth 0",
        "herald_notifications_total{provider_type=\"slack\",result=\"failed\"} 1",
        "herald_notifications_total{provider_type=\"slack\",result=\"delivered\"} 2",
    ] {
        assert!(exposition.contains(line), "missing {line} in\n{exposition}");
    }
    let logs = String::from_utf8_lossy(&logs.0.lock().expect("logs")).into_owned();
    let line = logs
        .lines()
        .find(|l| l.contains("internal error while delivering"))
        .unwrap_or_else(|| panic!("the panic is logged:\n{logs}"));
    assert!(line.contains("flux-system/alert"), "{line}");
    assert!(!logs.contains("secret-webhook-path"), "{logs}");
}

/// Reads before it writes, as commit-status providers do: GETs the
/// address, and POSTs the real notifier's request only when the answer
/// says the message is absent.
struct ReadThenWrite(Arc<dyn Notifier>);

impl Notifier for ReadThenWrite {
    fn settings(&self) -> &Settings {
        self.0.settings()
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        self.0.request(n, rendered, thread)
    }

    fn conversation(&self) -> Option<&dyn Conversation> {
        Some(self)
    }
}

impl Conversation for ReadThenWrite {
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        rendered: Option<&'a Rendered>,
        sender: &'a dyn Sender,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let Some(address) = self.0.settings().address.clone() else {
                return Verdict::Fail("no address".to_owned());
            };
            let mut read = Request::post(&address, Body::json(&()).expect("json"));
            read.method = reqwest::Method::GET;
            let reply = match sender.send(&read).await {
                Ok(reply) => reply,
                Err(e) => return e.into(),
            };
            if !reply.status.is_success() {
                return reply.verdict();
            }
            if reply.body == b"present" {
                return Verdict::Delivered;
            }
            let write = match self.0.request(n, rendered, None) {
                Ok(write) => write,
                Err(e) => return Verdict::Fail(e),
            };
            match sender.send(&write).await {
                Ok(reply) => reply.verdict(),
                Err(e) => e.into(),
            }
        })
    }
}

#[tokio::test]
async fn a_conversation_is_retried_as_a_whole() {
    // GET answers 503 once (with Retry-After: 0), then "absent"; POST 200.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let recorded = seen.clone();
    let app = axum::Router::new().fallback(move |method: reqwest::Method, body: bytes::Bytes| {
        let recorded = recorded.clone();
        async move {
            let mut seen = recorded.lock().expect("seen");
            let gets = seen.iter().filter(|s| s.starts_with("GET")).count();
            seen.push(format!("{method} {}", String::from_utf8_lossy(&body)));
            match (method.as_str(), gets) {
                ("GET", 0) => (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "0")],
                    "busy",
                ),
                ("GET", _) => (axum::http::StatusCode::OK, [("x-seen", "1")], "absent"),
                _ => (axum::http::StatusCode::OK, [("x-seen", "1")], "ok"),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let metrics = Arc::new(Metrics::default());
    let dispatcher = Dispatcher::new(DispatchConfig::default(), metrics.clone(), None);
    dispatcher
        .try_enqueue(notifications(&address, &["deployed"], |real| {
            Arc::new(ReadThenWrite(real))
        }))
        .expect("queued");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dispatcher.pending() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen[0].starts_with("GET") && seen[1].starts_with("GET"),
        "{seen:?}"
    );
    assert!(
        seen[2].starts_with("POST") && seen[2].contains("deployed"),
        "{seen:?}"
    );
    let exposition = metrics.encode();
    for line in [
        "herald_delivery_retries_total{provider_type=\"slack\"} 1",
        "herald_notifications_total{provider_type=\"slack\",result=\"delivered\"} 1",
    ] {
        assert!(exposition.contains(line), "missing {line} in\n{exposition}");
    }
}

/// A healthy destination's worker exits soon after its queue empties (a
/// later notification gets a new one); a failing destination's worker
/// stays, keeping the breaker's count of failures in a row.
#[tokio::test]
async fn idle_workers_of_healthy_destinations_exit_and_failing_ones_stay() {
    let lanes = |d: &Dispatcher| d.inner.lanes.lock().expect("lanes").len();
    let wait_idle = |d: &Dispatcher| {
        let d = d.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while d.pending() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let (address, received) = sink().await;
    let dispatcher = Dispatcher::new(DispatchConfig::default(), Arc::default(), None);
    dispatcher
        .try_enqueue(notifications(&address, &["one"], |real| real))
        .expect("queued");
    wait_idle(&dispatcher).await;
    assert_eq!(lanes(&dispatcher), 1, "the worker waits a little for more");
    tokio::time::sleep(WORKER_IDLE_HEALTHY + Duration::from_millis(500)).await;
    assert_eq!(lanes(&dispatcher), 0, "then exits");
    dispatcher
        .try_enqueue(notifications(&address, &["two"], |real| real))
        .expect("queued");
    wait_idle(&dispatcher).await;
    assert_eq!(received.lock().expect("sink").len(), 2);

    // A destination answering 500: the notification is retried until its
    // max age, then given up; the worker keeps the failures.
    let app =
        axum::Router::new().fallback(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let failing = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let config = DispatchConfig {
        max_delivery_age: Duration::from_millis(300),
        initial_backoff: Duration::from_millis(50),
        ..DispatchConfig::default()
    };
    let dispatcher = Dispatcher::new(config, Arc::default(), None);
    dispatcher
        .try_enqueue(notifications(&failing, &["lost"], |real| real))
        .expect("queued");
    wait_idle(&dispatcher).await;
    tokio::time::sleep(WORKER_IDLE_HEALTHY + Duration::from_millis(500)).await;
    assert_eq!(
        lanes(&dispatcher),
        1,
        "the failing destination's worker stays"
    );
}

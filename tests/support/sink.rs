//! A recording webhook sink: a real HTTP server on 127.0.0.1 that records
//! every request and answers from a script (then 200 by default).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// The query string, when there is one.
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: serde_json::Value,
    /// The body's bytes as received.
    pub raw: Vec<u8>,
}

impl Received {
    /// The Slack attachment text of this request ("" when it has none).
    pub fn text(&self) -> String {
        self.body["attachments"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A scripted answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    script: VecDeque<Answer>,
    default: Option<Answer>,
    /// Answer like Slack's chat.postMessage: `ok`, a fresh `ts`, the channel.
    slack_api: bool,
}

/// The sink; clones share state.
#[derive(Clone)]
pub struct Sink {
    inner: Arc<Mutex<Inner>>,
    pub url: String,
    _runtime: Arc<tokio::runtime::Runtime>,
}

impl Sink {
    /// Starts a sink on its own runtime thread, so tests may be sync or async.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts an HTTPS sink with this server certificate (and, when the
    /// config asks for one, a required client certificate).
    pub fn start_tls(config: Arc<rustls::ServerConfig>) -> Self {
        Self::start_with(Some(config))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind sink");
        let address = listener.local_addr().expect("sink address");
        let app = Router::new().fallback(record).with_state(inner.clone());
        let scheme = match tls {
            None => {
                runtime.spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
                "http"
            }
            Some(config) => {
                runtime.spawn(serve_tls(listener, app, config));
                "https"
            }
        };
        Self {
            inner,
            url: format!("{scheme}://{address}/services/T000/B000/secret-webhook-path"),
            _runtime: Arc::new(runtime),
        }
    }

    /// `host:port` the sink listens on.
    pub fn authority(&self) -> String {
        let rest = self.url.split_once("://").map_or("", |(_, rest)| rest);
        rest.split('/').next().unwrap_or_default().to_owned()
    }

    /// Answers the next requests with these, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inner.lock().expect("sink").script.extend(answers);
    }

    /// Answers every unscripted request with this.
    pub fn default_answer(&self, answer: Answer) {
        self.inner.lock().expect("sink").default = Some(answer);
    }

    /// Answers unscripted requests as `chat.postMessage` does, with
    /// `ts` = `1000.<request number>` and `channel` = `C0THREADS`.
    pub fn answer_like_slack_api(&self) {
        self.inner.lock().expect("sink").slack_api = true;
    }

    /// The Slack attachment text of every request received, in order.
    pub fn texts(&self) -> Vec<String> {
        self.received().iter().map(Received::text).collect()
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().expect("sink").received.clone()
    }

    /// Waits until at least `count` requests arrived (or the timeout passes).
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= count || Instant::now() >= deadline {
                return received;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Serves HTTPS: a TLS handshake per connection (failed handshakes, such
/// as a client without the required certificate, end that connection).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = {
        let mut inner = inner.lock().expect("sink");
        inner.received.push(Received {
            at: Instant::now(),
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            raw: body.to_vec(),
        });
        let default = if inner.slack_api {
            let ts = format!("1000.{:06}", inner.received.len() - 1);
            Answer::status(200).body(format!(
                r#"{{"ok":true,"ts":"{ts}","channel":"C0THREADS"}}"#
            ))
        } else {
            inner
                .default
                .clone()
                .unwrap_or_else(|| Answer::status(200).body("ok"))
        };
        inner.script.pop_front().unwrap_or(default)
    };
    tokio::time::sleep(answer.delay).await;
    let mut response = (
        StatusCode::from_u16(answer.status).expect("status"),
        answer.body,
    )
        .into_response();
    for (name, value) in answer.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    response
}

/// A TCP listener that accepts connections, reads nothing and never
/// answers: the address of a dead destination whose requests time out.
pub struct BlackHole {
    pub url: String,
    connections: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl BlackHole {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind black hole");
        let address = listener.local_addr().expect("black hole address");
        let connections = Arc::new(Mutex::new(Vec::new()));
        let held = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                // Kept open, never read or answered.
                held.lock().expect("black hole").push(stream);
            }
        });
        Self {
            url: format!("http://{address}/services/T000/B000/secret-webhook-path"),
            connections,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.lock().expect("black hole").len()
    }
}

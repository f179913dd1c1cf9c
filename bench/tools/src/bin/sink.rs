//! The webhook sink of herald's pipeline benchmark: answers every POST
//! `200 ok` (as a Slack incoming webhook does) and counts them, on one or
//! more addresses. `GET /count` on any of them answers
//! `<requests> <distinct paths> <connections>`.
//!
//! `sink ADDR [ADDR...]`
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    connections: AtomicU64,
    paths: Mutex<HashSet<String>>,
}

async fn answer(
    counts: Arc<Counts>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() == Method::GET && request.uri().path() == "/count" {
        let text = format!(
            "{} {} {}\n",
            counts.requests.load(Ordering::Relaxed),
            counts.paths.lock().expect("paths").len(),
            counts.connections.load(Ordering::Relaxed),
        );
        return Ok(Response::new(Full::new(Bytes::from(text))));
    }
    let path = request.uri().path().to_owned();
    let _ = request.into_body().collect().await;
    {
        let mut paths = counts.paths.lock().expect("paths");
        if !paths.contains(&path) {
            paths.insert(path);
        }
    }
    counts.requests.fetch_add(1, Ordering::Relaxed);
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

async fn serve(listener: tokio::net::TcpListener, counts: Arc<Counts>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        counts.connections.fetch_add(1, Ordering::Relaxed);
        let counts = counts.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |r| answer(counts.clone(), r));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let counts = Arc::new(Counts::default());
    let mut servers = tokio::task::JoinSet::new();
    let addresses: Vec<String> = std::env::args().skip(1).collect();
    for address in if addresses.is_empty() {
        vec!["127.0.0.1:9595".to_owned()]
    } else {
        addresses
    } {
        let listener = tokio::net::TcpListener::bind(&address).await?;
        eprintln!("sink listening on {}", listener.local_addr()?);
        servers.spawn(serve(listener, counts.clone()));
    }
    while servers.join_next().await.is_some() {}
    Ok(())
}

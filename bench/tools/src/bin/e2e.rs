//! End-to-end latency: sends events to herald at a fixed rate and runs the
//! webhook sink herald delivers to; latency is sink receive time minus send
//! time, matched by an id in the message.
//!
//! `e2e --events URL --sink ADDR --rate N --seconds S --event FILE`
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

type Times = Arc<Mutex<HashMap<u64, Instant>>>;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// Records when each notification (its message carries `id=<n>`) arrives.
async fn sink(listener: tokio::net::TcpListener, received: Times) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let received = received.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let received = received.clone();
                async move {
                    let body = request
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let at = Instant::now();
                    let text = String::from_utf8_lossy(&body);
                    if let Some(id) = text.split("id=").nth(1).and_then(|rest| {
                        rest.split(|c: char| !c.is_ascii_digit())
                            .next()?
                            .parse::<u64>()
                            .ok()
                    }) {
                        received.lock().expect("sink").entry(id).or_insert(at);
                    }
                    Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events = arg("--events", "http://127.0.0.1:9090/");
    let rate: u64 = arg("--rate", "1000").parse()?;
    let seconds: u64 = arg("--seconds", "10").parse()?;
    let template = std::fs::read_to_string(arg("--event", "event.json"))?;
    let listener = tokio::net::TcpListener::bind(arg("--sink", "127.0.0.1:9595")).await?;

    let received: Times = Arc::default();
    tokio::spawn(sink(listener, received.clone()));
    let sent: Times = Arc::default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let accepted = Arc::new(Mutex::new(0u64));
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for id in 0..total {
        ticker.tick().await;
        let body = template.replace("BENCH_ID", &format!("id={id}"));
        let (client, events, sent, accepted) = (
            client.clone(),
            events.clone(),
            sent.clone(),
            accepted.clone(),
        );
        requests.spawn(async move {
            let at = Instant::now();
            let response = client
                .post(&events)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            if response.is_ok_and(|r| r.status().as_u16() == 202) {
                sent.lock().expect("sent").insert(id, at);
                *accepted.lock().expect("accepted") += 1;
            }
        });
    }
    let sending = started.elapsed();
    while requests.join_next().await.is_some() {}
    // Let the last notifications arrive.
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().expect("sink").len() < *accepted.lock().expect("accepted") as usize
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = sent.lock().expect("sent").clone();
    let received = received.lock().expect("sink").clone();
    let mut latencies: Vec<Duration> = received
        .iter()
        .filter_map(|(id, at)| sent.get(id).map(|s| at.saturating_duration_since(*s)))
        .collect();
    latencies.sort();
    println!(
        "sent: {total} in {:.2}s ({:.0}/s)",
        sending.as_secs_f64(),
        total as f64 / sending.as_secs_f64()
    );
    println!("accepted: {}", sent.len());
    println!("delivered: {}", received.len());
    println!(
        "latency: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    Ok(())
}

//! The event endpoint under hostile and unusual requests (DESIGN §3.7).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::herald::{Herald, client};
use support::sink::{Answer, Sink};
use support::{event_file, seed_copy};

const SEED_SLACK: [&str; 3] = ["02-provider.yaml", "03-alert.yaml", "04-secret.yaml"];

fn herald(sink: &Sink, extra: &[&str]) -> (Herald, tempfile::TempDir) {
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    (Herald::serve(dir.path(), extra), dir)
}

fn event_body() -> String {
    std::fs::read_to_string(event_file("kustomization-error.json")).expect("event")
}

#[test]
fn malformed_requests_get_a_4xx_with_a_reason() {
    let sink = Sink::start();
    let (herald, _dir) = herald(&sink, &[]);

    let (status, body) = herald.post(b"\x00\xffgarbage".to_vec());
    assert_eq!(status, 400);
    assert!(body.contains("invalid event JSON"), "{body}");

    let missing = event_body().replace("\"reason\": \"ReconciliationFailed\",", "");
    let (status, body) = herald.post(missing);
    assert_eq!(status, 400);
    assert!(body.contains("reason"), "{body}");

    let no_namespace = event_body().replace("\"namespace\": \"flux-system\",", "");
    let (status, body) = herald.post(no_namespace);
    assert_eq!(status, 400);
    assert!(body.contains("involvedObject.namespace"), "{body}");

    let deep = format!("{}{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    assert_eq!(herald.post(deep).0, 400);

    let (status, _) = client::request(reqwest::Method::GET, &herald.events, Vec::new());
    assert_eq!(status, 405);
    let (status, _) = client::request(
        reqwest::Method::PUT,
        &format!("{}/any/path", herald.events),
        Vec::new(),
    );
    assert_eq!(status, 405);

    // Any path is accepted for POST, as Flux's senders use several.
    let (status, _) = client::post(
        &format!("{}/some/path", herald.events),
        event_body().into_bytes(),
    );
    assert_eq!(status, 202);

    // Still serving, and nothing delivered for the refused requests.
    assert!(sink.wait_for(1, Duration::from_secs(10)).len() == 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received().len(), 1);
}

#[test]
fn bodies_over_three_mebibytes_are_refused() {
    let sink = Sink::start();
    let (herald, _dir) = herald(&sink, &[]);
    let padding = "x".repeat(3 * 1024 * 1024);
    let huge = event_body().replace(
        "\"severity\"",
        &format!("\"padding\": \"{padding}\", \"severity\""),
    );
    assert_eq!(herald.post(huge).0, 413);
    // Just under the limit is fine.
    let padding = "x".repeat(2 * 1024 * 1024);
    let big = event_body().replace(
        "\"severity\"",
        &format!("\"padding\": \"{padding}\", \"severity\""),
    );
    assert_eq!(herald.post(big).0, 202);
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_the_retry_is_not_a_duplicate() {
    let sink = Sink::start();
    sink.script([Answer::status(200).delay(Duration::from_secs(3))]);
    let (herald, _dir) = herald(&sink, &["--queue-capacity=1"]);
    assert_eq!(herald.post(event_body()).0, 202);
    sink.wait_for(1, Duration::from_secs(10));
    let second = event_body().replace("dry-run failed", "apply failed");
    let response = support::herald::client::post(&herald.events, second.clone().into_bytes());
    assert_eq!(response.0, 503);
    assert!(response.1.contains("queue is full"));
    // Once the queue drains, Flux's retry of the same event is accepted, not a 429.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut status = 503;
    while status == 503 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        status = herald.post(second.clone()).0;
    }
    assert_eq!(status, 202);
    assert_eq!(sink.wait_for(2, Duration::from_secs(10)).len(), 2);
}

#[test]
fn retry_after_header_on_503() {
    let sink = Sink::start();
    sink.script([Answer::status(200).delay(Duration::from_secs(3))]);
    let (herald, _dir) = herald(&sink, &["--queue-capacity=1"]);
    assert_eq!(herald.post(event_body()).0, 202);
    sink.wait_for(1, Duration::from_secs(10));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let retry_after = runtime.block_on(async {
        reqwest::Client::new()
            .post(&herald.events)
            .body(event_body().replace("dry-run", "other"))
            .send()
            .await
            .expect("post")
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    });
    assert_eq!(retry_after.as_deref(), Some("5"));
}

#[test]
fn slow_clients_are_cut_off() {
    let sink = Sink::start();
    let (herald, _dir) = herald(
        &sink,
        &["--header-read-timeout=1s", "--body-read-timeout=1s"],
    );
    let address = herald.events.trim_start_matches("http://").to_owned();

    // Headers that never finish.
    let mut stream = TcpStream::connect(&address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let mut buffer = Vec::new();
    let _ = stream.read_to_end(&mut buffer);
    // Closed by herald (possibly with a 408) well before our 10 s read timeout.
    let text = String::from_utf8_lossy(&buffer);
    assert!(text.is_empty() || text.contains("408"), "{text}");

    // A body that never finishes.
    let mut stream = TcpStream::connect(&address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"invol")
        .expect("write");
    let mut buffer = Vec::new();
    let _ = stream.read_to_end(&mut buffer);
    let text = String::from_utf8_lossy(&buffer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");

    // And the server still answers.
    assert_eq!(herald.post(event_body()).0, 202);
}

#[test]
fn health_readiness_and_metrics() {
    let sink = Sink::start();
    let (herald, _dir) = herald(&sink, &[]);
    assert_eq!(client::get(&format!("{}/healthz", herald.health)).0, 200);
    assert_eq!(client::get(&format!("{}/readyz", herald.health)).0, 200);
    assert_eq!(herald.post(event_body()).0, 202);
    assert_eq!(herald.post(event_body()).0, 429);
    assert_eq!(herald.post("{}").0, 400);
    sink.wait_for(1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    let (status, metrics) = client::get(&format!("{}/metrics", herald.metrics));
    assert_eq!(status, 200);
    for expected in [
        "herald_events_received_total{result=\"accepted\"} 1",
        "herald_events_received_total{result=\"duplicate\"} 1",
        "herald_events_received_total{result=\"invalid\"} 1",
        "herald_notifications_total{provider_type=\"slack\",result=\"delivered\"} 1",
        "herald_delivery_latency_seconds_count{provider_type=\"slack\"} 1",
        "herald_queue_depth 0",
        "herald_alerts 1",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
    assert!(!metrics.contains("secret-webhook-path"));
}

/// A slow-body flood (DESIGN §3.7): 100 clients each stream a 2.9 MiB body
/// slowly. The bytes of bodies being read at once are budgeted, so herald's
/// peak memory stays bounded, the flood is refused with 503 + Retry-After
/// past the budget, and small events are still read and accepted.
#[test]
fn a_slow_body_flood_keeps_memory_bounded_and_small_events_flowing() {
    const CLIENTS: usize = 100;
    const BODY: usize = 2_900 * 1024;
    const CHUNK: usize = 64 * 1024;
    let sink = Sink::start();
    let (herald, _dir) = herald(&sink, &["--body-read-timeout", "60s"]);
    let address = herald.events.trim_start_matches("http://").to_owned();
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let address = address.clone();
        let finished = finished.clone();
        clients.push(std::thread::spawn(move || -> Option<u16> {
            let mut stream = TcpStream::connect(&address).ok()?;
            let head = format!(
                "POST / HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).ok()?;
            let chunk = vec![b' '; CHUNK];
            let mut sent = 0;
            while sent < BODY && !finished.load(std::sync::atomic::Ordering::Relaxed) {
                let n = CHUNK.min(BODY - sent);
                if stream.write_all(&chunk[..n]).is_err() {
                    break; // refused: herald closed the connection
                }
                sent += n;
                std::thread::sleep(Duration::from_millis(40));
            }
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            let mut answer = [0u8; 64];
            let n = stream.read(&mut answer).ok()?;
            let text = String::from_utf8_lossy(&answer[..n]).into_owned();
            text.split(' ').nth(1)?.parse().ok()
        }));
    }
    // While the flood streams, ordinary events are still accepted.
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..5 {
        let body = event_body().replace("dry-run failed", &format!("dry-run failed {i}"));
        assert_eq!(herald.post(body).0, 202, "small event {i} during the flood");
        std::thread::sleep(Duration::from_millis(300));
    }
    finished.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses: Vec<Option<u16>> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    let (_, metrics) = client::get(&format!("{}/metrics", herald.metrics));
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_events_received_total{result=\"over_budget\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused > 0, "no body was refused: {statuses:?}\n{metrics}");
    let answered_503 = statuses.iter().filter(|s| **s == Some(503)).count();
    eprintln!(
        "refused over budget: {refused}; 503 read by clients: {answered_503}; peak RSS {} MiB",
        herald.peak_rss() / (1024 * 1024)
    );
    let peak = herald.peak_rss();
    assert!(
        peak < 160 * 1024 * 1024,
        "peak RSS {} MiB during the flood",
        peak / (1024 * 1024)
    );
    assert_eq!(sink.wait_for(5, Duration::from_secs(10)).len(), 5);
}

/// A minimal info event (the seed's Alert routes errors only, so nothing is
/// queued) with a distinct message.
fn burst_event(n: usize) -> String {
    format!(
        r#"{{"involvedObject":{{"kind":"Kustomization","name":"app","namespace":"flux-system"}},"severity":"info","message":"burst {n}","reason":"Progressing"}}"#
    )
}

/// POSTs `bodies` pipelined on one connection (all written before any answer
/// is read); returns the status codes in order.
fn pipelined(address: &str, bodies: Vec<String>) -> Vec<u16> {
    use std::io::{BufRead, BufReader, BufWriter};
    let stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let count = bodies.len();
    let writer = stream.try_clone().expect("clone");
    let writing = std::thread::spawn(move || {
        let mut writer = BufWriter::with_capacity(1 << 16, writer);
        for body in bodies {
            write!(
                writer,
                "POST / HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .expect("write");
        }
        writer.flush().expect("flush");
    });
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let mut statuses = Vec::with_capacity(count);
    let mut line = String::new();
    while statuses.len() < count {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("status line") > 0,
            "closed"
        );
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {line:?}"));
        let mut length = 0usize;
        loop {
            line.clear();
            reader.read_line(&mut line).expect("header");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("content-length");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        statuses.push(status);
    }
    writing.join().expect("writer");
    statuses
}

/// The duplicate filter used to stop remembering new events for good once
/// it held 200,000 keys within the interval; a recent event's repeat then
/// went through again. It now forgets the oldest keys instead.
#[test]
fn duplicate_suppression_survives_a_burst_of_distinct_events() {
    let sink = Sink::start();
    let (herald, _dir) = herald(&sink, &["--log-level=info"]);
    let address = herald.events.trim_start_matches("http://").to_owned();
    let total = 201_000;
    let connections = 2;
    let senders: Vec<_> = (0..connections)
        .map(|c| {
            let address = address.clone();
            std::thread::spawn(move || {
                let bodies = (c..total).step_by(connections).map(burst_event).collect();
                pipelined(&address, bodies)
            })
        })
        .collect();
    for sender in senders {
        let statuses = sender.join().expect("sender");
        assert!(
            statuses.iter().all(|s| *s == 202),
            "every distinct event accepted"
        );
    }
    for recent in [total - 1, total - 2, total - 1000] {
        assert_eq!(
            herald.post(burst_event(recent)).0,
            429,
            "event {recent} was sent moments ago"
        );
    }
    let fresh = burst_event(total);
    assert_eq!(herald.post(fresh.clone()).0, 202);
    assert_eq!(herald.post(fresh).0, 429);
}

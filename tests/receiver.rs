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

//! Delivery semantics (DESIGN §3.9) against real local HTTP sinks.

mod support;

use std::time::{Duration, Instant};

use support::herald::Herald;
use support::sink::{Answer, BlackHole, Sink};
use support::{event_file, seed_copy};

const WAIT: Duration = Duration::from_secs(15);
const SEED_SLACK: [&str; 3] = ["02-provider.yaml", "03-alert.yaml", "04-secret.yaml"];

/// The kustomization-error event with a distinct message.
fn error_event(n: usize) -> String {
    let body = std::fs::read_to_string(event_file("kustomization-error.json")).expect("event");
    body.replace("dry-run failed", &format!("dry-run failed #{n:03}"))
}

#[test]
fn two_server_errors_then_success_is_one_delivery_in_three_attempts() {
    let sink = Sink::start();
    sink.script([Answer::status(500), Answer::status(500)]);
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(herald.post(error_event(1)).0, 202);
    let received = sink.wait_for(3, WAIT);
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| r.body == received[0].body));
    assert!(herald.wait_for_log("\"delivered\"", WAIT).is_some());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sink.received().len(),
        3,
        "delivered notification was sent again"
    );
    let metrics = support::herald::client::get(&format!("{}/metrics", herald.metrics)).1;
    assert!(
        metrics
            .contains("herald_notifications_total{provider_type=\"slack\",result=\"delivered\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_delivery_retries_total{provider_type=\"slack\"} 2"),
        "{metrics}"
    );
    herald.assert_no_secret_in_logs();
}

#[test]
fn too_many_requests_waits_for_retry_after() {
    let sink = Sink::start();
    sink.script([Answer::status(429).header("retry-after", "2")]);
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(herald.post(error_event(1)).0, 202);
    let received = sink.wait_for(2, WAIT);
    assert_eq!(received.len(), 2);
    let waited = received[1].at - received[0].at;
    assert!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, before Retry-After"
    );
}

#[test]
fn retry_after_as_http_date_is_obeyed() {
    let sink = Sink::start();
    let when = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3));
    sink.script([Answer::status(503).header("retry-after", when)]);
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(herald.post(error_event(1)).0, 202);
    let received = sink.wait_for(2, WAIT);
    assert_eq!(received.len(), 2);
    // HTTP dates have one-second resolution.
    assert!(received[1].at - received[0].at >= Duration::from_secs(1));
}

#[test]
fn client_errors_are_never_retried() {
    let sink = Sink::start();
    sink.default_answer(Answer::status(400).body("invalid_payload"));
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(herald.post(error_event(1)).0, 202);
    let line = herald
        .wait_for_log("not retrying", WAIT)
        .expect("failure logged");
    assert!(line.contains("400"), "{line}");
    assert!(
        line.contains("http://127.0.0.1"),
        "masked address expected in {line}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sink.received().len(), 1);
    herald.assert_no_secret_in_logs();
}

#[test]
fn a_sink_down_past_max_delivery_age_is_given_up_without_crashing() {
    let sink = Sink::start();
    sink.default_answer(Answer::status(503));
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let herald = Herald::serve(dir.path(), &["--max-delivery-age=1s"]);
    assert_eq!(herald.post(error_event(1)).0, 202);
    let line = herald
        .wait_for_log("giving up", WAIT)
        .expect("give-up logged");
    assert!(line.contains("\"level\":\"ERROR\""), "{line}");
    assert!(line.contains("http://127.0.0.1:"), "{line}");
    assert!(sink.received().len() >= 2, "retried before giving up");
    // Still serving.
    assert_eq!(herald.post(error_event(2)).0, 202);
    herald.assert_no_secret_in_logs();
}

#[test]
fn unreachable_address_is_retried_and_masked() {
    // A port nothing listens on: connection refused on every attempt.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = seed_copy(
        &SEED_SLACK,
        &format!("http://127.0.0.1:{port}/services/secret-webhook-path"),
    );
    let herald = Herald::serve(dir.path(), &["--max-delivery-age=1s"]);
    assert_eq!(herald.post(error_event(1)).0, 202);
    let retry = herald
        .wait_for_log("will retry", WAIT)
        .expect("retry logged");
    assert!(retry.contains("connection failed"), "{retry}");
    assert!(herald.wait_for_log("giving up", WAIT).is_some());
    herald.assert_no_secret_in_logs();
}

#[test]
fn hundred_events_to_one_destination_arrive_in_order() {
    let sink = Sink::start();
    // Early failures force retries while later notifications wait in the queue.
    sink.script([
        Answer::status(500),
        Answer::status(200),
        Answer::status(503),
    ]);
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let herald = Herald::serve(dir.path(), &[]);
    for n in 0..100 {
        assert_eq!(herald.post(error_event(n)).0, 202);
    }
    let received = sink.wait_for(102, Duration::from_secs(30));
    assert_eq!(received.len(), 102);
    let mut delivered: Vec<String> = received.iter().map(|r| r.text()).collect();
    // Requests 0 and 2 failed and were repeated by the next attempt.
    delivered.remove(2);
    delivered.remove(0);
    let expected: Vec<String> = (0..100)
        .map(|n| {
            format!(
                "Deployment/my-app/my-app-deployment dry-run failed #{n:03}: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
            )
        })
        .collect();
    assert_eq!(delivered, expected);
}

const BOT_SECRET: &str = "
apiVersion: v1
kind: Secret
metadata: {name: slack-url, namespace: flux-system}
stringData:
  address: ADDRESS
  token: xoxb-test-token
";

const BOT_PROVIDER: &str = "
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: slack, namespace: flux-system}
spec: {type: slack, channel: C0123, secretRef: {name: slack-url}}
";

fn bot_setup(sink: &Sink) -> tempfile::TempDir {
    let dir = seed_copy(&["03-alert.yaml"], &sink.url);
    let address = sink.url.replace(
        "/services/T000/B000/secret-webhook-path",
        "/api/chat.postMessage",
    );
    std::fs::write(
        dir.path().join("secret.yaml"),
        BOT_SECRET.replace("ADDRESS", &address),
    )
    .expect("write");
    std::fs::write(dir.path().join("provider.yaml"), BOT_PROVIDER).expect("write");
    dir
}

#[test]
fn bot_api_uses_the_token_and_treats_ok_false_as_failure() {
    let sink = Sink::start();
    sink.script([
        Answer::status(200).body(r#"{"ok":false,"error":"ratelimited"}"#),
        Answer::status(200).body(r#"{"ok":true,"ts":"1.2","channel":"C0123"}"#),
        Answer::status(200).body(r#"{"ok":false,"error":"channel_not_found"}"#),
    ]);
    let dir = bot_setup(&sink);
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(herald.post(error_event(1)).0, 202);
    let received = sink.wait_for(2, WAIT);
    assert_eq!(received.len(), 2, "ratelimited is retried");
    assert_eq!(received[0].path, "/api/chat.postMessage");
    assert_eq!(
        received[0].headers["authorization"],
        "Bearer xoxb-test-token"
    );
    assert_eq!(received[0].body["channel"], "C0123");

    assert_eq!(herald.post(error_event(2)).0, 202);
    let line = herald
        .wait_for_log("channel_not_found", WAIT)
        .expect("ok:false logged");
    assert!(line.contains("not retrying"), "{line}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.received().len(), 3);
    herald.assert_no_secret_in_logs();
}

#[test]
fn sigterm_drains_queued_notifications_in_order() {
    let sink = Sink::start();
    sink.default_answer(Answer::status(200).delay(Duration::from_millis(50)));
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let mut herald = Herald::serve(dir.path(), &[]);
    for n in 0..30 {
        assert_eq!(herald.post(error_event(n)).0, 202);
    }
    let started = Instant::now();
    let status = herald.terminate(Duration::from_secs(30));
    assert_eq!(status, Some(0));
    let received = sink.received();
    assert_eq!(received.len(), 30, "queued notifications lost at shutdown");
    let texts: Vec<_> = received
        .iter()
        .map(|r| r.body["attachments"][0]["text"].clone())
        .collect();
    let mut sorted = texts.clone();
    sorted.sort_by_key(|t| t.as_str().unwrap_or_default().to_owned());
    assert_eq!(texts, sorted);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn sigterm_past_the_deadline_logs_each_undelivered_notification() {
    let sink = Sink::start();
    sink.default_answer(Answer::status(200).delay(Duration::from_secs(60)));
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let mut herald = Herald::serve(dir.path(), &["--shutdown-timeout=1s"]);
    for n in 0..3 {
        assert_eq!(herald.post(error_event(n)).0, 202);
    }
    sink.wait_for(1, WAIT);
    assert_eq!(herald.terminate(Duration::from_secs(20)), Some(0));
    let undelivered: Vec<String> = herald
        .logs()
        .into_iter()
        .filter(|l| l.contains("notification not delivered"))
        .collect();
    assert_eq!(undelivered.len(), 3, "{undelivered:#?}");
    assert!(undelivered.iter().all(|l| l.contains("http://127.0.0.1:")));
    herald.assert_no_secret_in_logs();
}

/// A Slack webhook Provider named `name` (its address in a Secret, its
/// request `timeout`) and an Alert of the same name sending it every
/// Kustomization error.
fn destination(name: &str, address: &str, timeout: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: {name}-url, namespace: flux-system}}
stringData: {{address: "{address}"}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {{name: {name}, namespace: flux-system}}
spec: {{type: slack, timeout: {timeout}, secretRef: {{name: {name}-url}}}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {{name: {name}, namespace: flux-system}}
spec:
  providerRef: {{name: {name}}}
  eventSeverity: error
  eventSources:
    - {{kind: Kustomization, name: "*"}}
"#
    )
}

fn manifests(destinations: &[String]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, text) in destinations.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{i}.yaml")), text).expect("write");
    }
    dir
}

fn metrics(herald: &Herald) -> String {
    support::herald::client::get(&format!("{}/metrics", herald.metrics)).1
}

/// Waits until at least `count` log lines contain `text`; returns them.
fn wait_for_logs(herald: &Herald, text: &str, count: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines: Vec<String> = herald
            .logs()
            .into_iter()
            .filter(|l| l.contains(text))
            .collect();
        if lines.len() >= count || Instant::now() >= deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the metrics contain `line`.
fn wait_for_metric(herald: &Herald, line: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = metrics(herald);
        if text.contains(line) || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One Provider's address accepts connections and never answers; another
/// is healthy. The dead one's queue fills up to its own bound, its further
/// notifications are given up, and every event still gets 202 and reaches
/// the healthy Provider, in order.
#[test]
fn a_black_hole_destination_never_blocks_a_healthy_one() {
    let dead = BlackHole::start();
    let sink = Sink::start();
    let dir = manifests(&[
        destination("dead", &dead.url, "2s"),
        destination("healthy", &sink.url, "2s"),
    ]);
    // Without a bound per destination, the dead one would take all 100
    // slots. The healthy one's bound leaves room for a slow moment.
    let herald = Herald::serve(
        dir.path(),
        &["--queue-capacity=100", "--destination-queue-capacity=40"],
    );
    let events = 120;
    for n in 0..events {
        assert_eq!(herald.post(error_event(n)).0, 202, "event {n}");
        // Events arrive no faster than the healthy destination takes them
        // (one request at a time); bursts beyond its bound are given up.
        std::thread::sleep(Duration::from_millis(10));
    }
    let received = sink.wait_for(events, Duration::from_secs(30));
    assert_eq!(received.len(), events, "{:#?}", herald.logs());
    let expected: Vec<String> = (0..events)
        .map(|n| {
            format!(
                "Deployment/my-app/my-app-deployment dry-run failed #{n:03}: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
            )
        })
        .collect();
    assert_eq!(sink.texts(), expected);
    // The dead destination holds 40; the other 80 were given up at once, each logged.
    let refused = wait_for_logs(&herald, "the destination's queue is full", 80, WAIT);
    assert_eq!(refused.len(), 80);
    assert!(
        refused
            .iter()
            .all(|l| l.contains("\"alert\":\"flux-system/dead\""))
    );
    assert!(refused[0].contains("http://127.0.0.1:"), "{}", refused[0]);
    let metrics = metrics(&herald);
    for line in [
        "herald_notifications_total{provider_type=\"slack\",result=\"queue_full\"} 80",
        "herald_events_received_total{result=\"accepted\"} 120",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    herald.assert_no_secret_in_logs();
}

/// Notifications queued behind a request that will never be answered are
/// given up when they pass --max-delivery-age, without an attempt of their
/// own and without waiting for that request's timeout.
#[test]
fn expired_notifications_are_given_up_without_another_attempt() {
    let dead = BlackHole::start();
    // The first request hangs for 10 s; the others expire after 1 s.
    let dir = manifests(&[destination("dead", &dead.url, "10s")]);
    let herald = Herald::serve(dir.path(), &["--max-delivery-age=1s"]);
    for n in 0..5 {
        assert_eq!(herald.post(error_event(n)).0, 202);
    }
    let given_up = wait_for_logs(&herald, "giving up", 5, Duration::from_secs(30));
    assert_eq!(given_up.len(), 5, "{given_up:#?}");
    assert_eq!(
        dead.connections(),
        1,
        "only the first notification was sent"
    );
    // The four waiting ones went first, while the first was still in flight.
    for line in &given_up[..4] {
        assert!(line.contains("\"attempt\":0"), "{line}");
    }
    assert!(given_up[4].contains("\"attempt\":1"), "{}", given_up[4]);
    assert!(given_up[4].contains("timed out"), "{}", given_up[4]);
    let metrics = wait_for_metric(&herald, "herald_queue_depth 0", WAIT);
    assert!(
        metrics
            .contains("herald_notifications_total{provider_type=\"slack\",result=\"expired\"} 5"),
        "{metrics}"
    );
    assert!(metrics.contains("herald_queue_depth 0"), "{metrics}");
    herald.assert_no_secret_in_logs();
}

/// A destination that keeps failing gets one probe at a time at a growing
/// interval, not a fresh series of retries for every notification; once it
/// answers again, the circuit closes and delivery resumes.
#[test]
fn a_failing_destination_is_probed_not_hammered() {
    let sink = Sink::start();
    sink.default_answer(Answer::status(503));
    let dir = manifests(&[destination("flaky", &sink.url, "2s")]);
    let herald = Herald::serve(dir.path(), &["--max-delivery-age=2s"]);
    let notifications = 20;
    for n in 0..notifications {
        assert_eq!(herald.post(error_event(n)).0, 202);
        std::thread::sleep(Duration::from_millis(250));
    }
    let requests = sink.received().len();
    // Without the breaker each notification gets its own series of retries
    // (about four each here); with it, five failures open the circuit and
    // probes then double their interval.
    assert!(
        requests < notifications,
        "{requests} requests for {notifications} notifications"
    );
    assert!(
        herald.wait_for_log("circuit open", WAIT).is_some(),
        "circuit opened"
    );
    assert!(metrics(&herald).contains("herald_destinations_open 1"));

    // The destination recovers; events keep coming (each lives 2s, less
    // than the probe interval may be by now): a probe gets through.
    sink.default_answer(Answer::status(200));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 100;
    while herald
        .wait_for_log("circuit closed", Duration::ZERO)
        .is_none()
        && Instant::now() < deadline
    {
        assert_eq!(herald.post(error_event(n)).0, 202);
        n += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let line = herald
        .wait_for_log("circuit closed", WAIT)
        .unwrap_or_else(|| panic!("circuit closed after a probe: {:#?}", herald.logs()));
    assert!(line.contains("http://127.0.0.1:"), "{line}");
    assert_eq!(herald.post(error_event(n)).0, 202);
    let last = format!("#{n:03}");
    let deadline = Instant::now() + WAIT;
    while !sink.texts().iter().any(|t| t.contains(&last)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        sink.texts().iter().any(|t| t.contains(&last)),
        "delivered at once with the circuit closed"
    );
    let metrics = wait_for_metric(&herald, "herald_queue_depth 0", WAIT);
    assert!(metrics.contains("herald_destinations_open 0"), "{metrics}");
    herald.assert_no_secret_in_logs();
}

/// `Retry-After: 18446744073709551615` used to overflow the worker's time
/// arithmetic: it panicked, and the notifications queued behind were lost
/// without a trace. Now the pause is capped at the remaining max age.
#[test]
fn an_absurd_retry_after_is_capped_and_later_notifications_still_deliver() {
    let sink = Sink::start();
    sink.script([Answer::status(429)
        .header("retry-after", u64::MAX.to_string())
        .delay(Duration::from_millis(1500))]);
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let herald = Herald::serve(dir.path(), &["--max-delivery-age=3s"]);
    assert_eq!(herald.post(error_event(1)).0, 202);
    sink.wait_for(1, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    // Queued behind the request that will be answered 429.
    assert_eq!(herald.post(error_event(2)).0, 202);
    assert_eq!(herald.post(error_event(3)).0, 202);
    let given_up = herald
        .wait_for_log("giving up", WAIT)
        .unwrap_or_else(|| panic!("the first notification is given up: {:#?}", herald.logs()));
    assert!(given_up.contains("\"attempt\":1"), "{given_up}");
    assert!(given_up.contains("429"), "{given_up}");
    let received = sink.wait_for(3, Duration::from_secs(30));
    let texts: Vec<String> = received.iter().map(|r| r.text()).collect();
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(
        texts[1].contains("#002") && texts[2].contains("#003"),
        "{texts:#?}"
    );
    let metrics = wait_for_metric(&herald, "herald_queue_depth 0", WAIT);
    for line in [
        "herald_queue_depth 0",
        "herald_notifications_total{provider_type=\"slack\",result=\"expired\"} 1",
        "herald_notifications_total{provider_type=\"slack\",result=\"delivered\"} 2",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(
        !herald.logs().iter().any(|l| l.contains("panicked")),
        "{:#?}",
        herald.logs()
    );
    herald.assert_no_secret_in_logs();
}

/// A black hole takes every place of the global bound (its own bound is
/// larger): its further events get 503, but events for a healthy
/// destination are still accepted — the black hole gives up its oldest
/// notifications to make room (logged, counted, Warning Event) — and are
/// delivered within seconds.
#[test]
fn a_black_hole_that_fills_the_global_bound_makes_room_for_a_healthy_destination() {
    let dead = BlackHole::start();
    let sink = Sink::start();
    let healthy = destination("healthy", &sink.url, "2s").replace("Kustomization", "HelmRelease");
    let dir = manifests(&[destination("dead", &dead.url, "30s"), healthy]);
    let herald = Herald::serve(
        dir.path(),
        &["--queue-capacity=50", "--destination-queue-capacity=1000"],
    );
    let mut accepted = 0;
    for n in 0..60 {
        match herald.post(error_event(n)).0 {
            202 => accepted += 1,
            503 => {}
            other => panic!("event {n}: {other}"),
        }
    }
    assert_eq!(accepted, 50, "the black hole holds the whole bound");
    let helm = std::fs::read_to_string(event_file("helmrelease-error.json")).expect("event");
    let started = Instant::now();
    for n in 0..10 {
        let event = helm.replace("\"message\": \"", &format!("\"message\": \"#{n} "));
        assert_eq!(herald.post(event).0, 202, "healthy event {n}");
    }
    let received = sink.wait_for(10, Duration::from_secs(10));
    assert_eq!(received.len(), 10, "{:#?}", herald.logs());
    eprintln!(
        "10 healthy notifications delivered {:?} after the first was posted",
        started.elapsed()
    );
    // One place per healthy notification at most: each delivered one
    // frees its place for the next.
    let evicted = wait_for_logs(
        &herald,
        "the global queue is full (--queue-capacity)",
        1,
        WAIT,
    );
    assert!((1..=10).contains(&evicted.len()), "{evicted:#?}");
    assert!(
        evicted
            .iter()
            .all(|l| l.contains("\"alert\":\"flux-system/dead\""))
    );
    let line = format!(
        "herald_notifications_total{{provider_type=\"slack\",result=\"evicted\"}} {}",
        evicted.len()
    );
    let metrics = wait_for_metric(&herald, &line, WAIT);
    assert!(metrics.contains(&line), "{metrics}");
    herald.assert_no_secret_in_logs();
}

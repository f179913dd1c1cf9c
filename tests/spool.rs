//! The durable spool (`--spool-dir`, DESIGN §3.14) against real processes:
//! herald is killed with SIGKILL while its only destination is down, and
//! a new process on the same directory delivers every accepted
//! notification, in order.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::herald::{Herald, binary};
use support::sink::{Answer, Sink};
use support::{event_file, seed_copy};

const SEED_SLACK: [&str; 3] = ["02-provider.yaml", "03-alert.yaml", "04-secret.yaml"];
const EVENTS: usize = 40;

fn error_event(n: usize) -> String {
    let body = std::fs::read_to_string(event_file("kustomization-error.json")).expect("event");
    body.replace("dry-run failed", &format!("dry-run failed #{n:03}"))
}

/// The numbers of the events the sink answered 200 to, in order, from
/// its `from`th request on.
fn delivered_numbers(sink: &Sink, from: usize) -> Vec<usize> {
    sink.received()
        .iter()
        .skip(from)
        .filter_map(|r| {
            let text = r.text();
            let at = text.find("dry-run failed #")? + "dry-run failed #".len();
            text.get(at..at + 3)?.parse().ok()
        })
        .collect()
}

fn metric(herald: &Herald, line_start: &str) -> Option<f64> {
    let text = support::herald::client::get(&format!("{}/metrics", herald.metrics)).1;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn sigkill_with_a_queue_to_a_down_sink_loses_nothing() {
    let sink = Sink::start();
    sink.default_answer(Answer::status(503));
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let spool = tempfile::tempdir().expect("spool dir");
    let spool_flag = format!("--spool-dir={}", spool.path().display());

    let mut first = Herald::serve(dir.path(), &[&spool_flag]);
    for n in 0..EVENTS {
        assert_eq!(first.post(error_event(n)).0, 202, "event {n}");
    }
    // The destination is down: the first notification is being retried.
    let deadline = Instant::now() + Duration::from_secs(15);
    while sink.received().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sink.received().len() >= 2, "herald tried the sink");
    first.kill();
    let attempts_before_kill = sink.received().len();

    // The sink comes up; a new herald on the same spool delivers everything.
    sink.default_answer(Answer::status(200).body("ok"));
    let second = Herald::serve(dir.path(), &[&spool_flag]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered_numbers(&sink, attempts_before_kill).len() < EVENTS && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let delivered = delivered_numbers(&sink, attempts_before_kill);
    let distinct: BTreeSet<usize> = delivered.iter().copied().collect();
    let duplicates = delivered.len() - distinct.len();
    println!(
        "accepted {EVENTS}, delivered {} distinct after the restart, {duplicates} duplicates",
        distinct.len()
    );
    assert_eq!(
        distinct.len(),
        EVENTS,
        "every accepted notification: {delivered:?}"
    );
    // Nothing was delivered before the kill (the sink answered 503), so
    // nothing is a duplicate; and one destination keeps acceptance order.
    assert_eq!(duplicates, 0, "{delivered:?}");
    assert_eq!(delivered, (0..EVENTS).collect::<Vec<_>>());
    assert!(
        second
            .wait_for_log("pending notifications queued again", Duration::from_secs(1))
            .is_some()
    );
    second.assert_no_secret_in_logs();

    // Delivered notifications leave the spool: a third start sends nothing.
    let mut second = second;
    assert_eq!(second.terminate(Duration::from_secs(30)), Some(0));
    let before = sink.received().len();
    let third = Herald::serve(dir.path(), &[&spool_flag]);
    assert_eq!(third.post(error_event(999)).0, 202);
    let received = sink.wait_for(before + 1, Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500));
    let after: Vec<usize> = delivered_numbers(&sink, before);
    assert_eq!(after, [999], "only the new event: {received:?}");
    assert_eq!(
        metric(
            &third,
            "herald_notifications_total{provider_type=\"slack\",result=\"delivered\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn notifications_abandoned_at_shutdown_are_delivered_after_the_restart() {
    let sink = Sink::start();
    sink.default_answer(Answer::status(503));
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let spool = tempfile::tempdir().expect("spool dir");
    let spool_flag = format!("--spool-dir={}", spool.path().display());
    let mut first = Herald::serve(dir.path(), &[&spool_flag, "--shutdown-timeout=1s"]);
    for n in 0..3 {
        assert_eq!(first.post(error_event(n)).0, 202);
    }
    assert_eq!(first.terminate(Duration::from_secs(30)), Some(0));
    assert!(
        first
            .wait_for_log("kept in the spool", Duration::from_secs(1))
            .is_some(),
        "{:#?}",
        first.logs()
    );
    let before = sink.received().len();
    sink.default_answer(Answer::status(200).body("ok"));
    let _second = Herald::serve(dir.path(), &[&spool_flag]);
    sink.wait_for(before + 3, Duration::from_secs(15));
    assert_eq!(delivered_numbers(&sink, before), [0, 1, 2]);
}

#[test]
fn an_unusable_spool_dir_stops_herald_with_a_clear_error() {
    let dir = seed_copy(&SEED_SLACK, "http://127.0.0.1:9/hook");
    let not_a_dir = dir.path().join("02-provider.yaml");
    let output = Command::new(binary())
        .args(["serve", "--manifests"])
        .arg(dir.path())
        .arg(format!("--spool-dir={}", not_a_dir.display()))
        .args([
            "--events-addr=127.0.0.1:0",
            "--metrics-addr=127.0.0.1:0",
            "--health-addr=127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .output()
        .expect("run herald");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--spool-dir"), "{stderr}");
    assert!(stderr.contains("02-provider.yaml"), "{stderr}");
}

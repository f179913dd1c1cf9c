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

/// A tmpfs of its own, unmounted when dropped. Mounting needs root (CI runs
/// as root); without it the test fails saying so, never skips.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs (this test needs root to fill a disk): {status}"
        );
        Self { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "cannot resize the tmpfs");
    }

    /// Fills what is left with a file.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.dir.path().join("filler")).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let small = vec![0u8; 512];
        while file.write_all(&small).is_ok() {}
        let _ = file.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn readyz(herald: &Herald) -> u16 {
    support::herald::client::get(&format!("{}/readyz", herald.health)).0
}

/// Waits until `check` holds, up to `timeout`.
fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// The disk under the spool fills up: events get 503 with Retry-After,
/// `/readyz` says not ready and `herald_spool_writable` is 0, with one log
/// line; a notification delivered meanwhile has its removal retried. Once
/// the disk grows, herald recovers by itself (one log line), events are
/// accepted and delivered again, and after a SIGKILL and restart nothing
/// delivered before is delivered again.
#[test]
fn a_full_disk_makes_herald_unready_until_space_returns() {
    let disk = SmallDisk::mount("2m");
    let sink = Sink::start();
    sink.default_answer(Answer::status(503));
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let spool_flag = format!("--spool-dir={}", disk.path().display());
    let mut herald = Herald::serve(dir.path(), &[&spool_flag]);
    assert_eq!(herald.post(error_event(0)).0, 202);
    // Event 0 waits for the sink; the disk fills meanwhile.
    assert!(eventually(Duration::from_secs(10), || !sink
        .received()
        .is_empty()));
    disk.fill();
    assert!(
        eventually(Duration::from_secs(10), || herald.post(error_event(1)).0
            == 503),
        "an event was accepted on a full disk: {:#?}",
        herald.logs()
    );
    let (status, retry_after) =
        support::herald::client::post_retry_after(&herald.events, error_event(2).into_bytes());
    assert_eq!(status, 503);
    assert!(retry_after.is_some(), "503 without Retry-After");
    assert!(eventually(Duration::from_secs(5), || readyz(&herald) == 503));
    assert_eq!(metric(&herald, "herald_spool_writable "), Some(0.0));
    // The sink comes back: event 0 is delivered, its removal cannot be
    // written yet.
    let attempts = sink.received().len();
    sink.default_answer(Answer::status(200).body("ok"));
    assert!(eventually(Duration::from_secs(15), || {
        delivered_numbers(&sink, attempts) == [0]
    }));

    disk.resize("16m");
    assert!(
        eventually(Duration::from_secs(10), || readyz(&herald) == 200),
        "herald did not recover after the disk grew: {:#?}",
        herald.logs()
    );
    assert_eq!(metric(&herald, "herald_spool_writable "), Some(1.0));
    assert_eq!(herald.post(error_event(3)).0, 202);
    assert!(
        eventually(Duration::from_secs(10), || {
            delivered_numbers(&sink, attempts) == [0, 3]
        }),
        "{:?}",
        delivered_numbers(&sink, attempts)
    );
    let logs = herald.logs();
    let count = |text: &str| logs.iter().filter(|l| l.contains(text)).count();
    assert_eq!(count("spool: cannot write"), 1, "{logs:#?}");
    assert_eq!(count("spool: writable again"), 1, "{logs:#?}");

    // Both removals were written: a restart delivers nothing again.
    std::thread::sleep(Duration::from_millis(500));
    herald.kill();
    let before = sink.received().len();
    let again = Herald::serve(dir.path(), &[&spool_flag]);
    assert!(eventually(Duration::from_secs(5), || readyz(&again) == 200));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        sink.received().len(),
        before,
        "delivered again after the restart: {:?}",
        delivered_numbers(&sink, before)
    );
}

/// Random bytes in the spool file: herald starts anyway, sets the file
/// aside (named in the log, counted), and works on a fresh spool; a second
/// herald on the same directory is still refused.
#[test]
fn a_damaged_spool_file_is_set_aside_and_herald_starts() {
    let sink = Sink::start();
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let spool = tempfile::tempdir().expect("spool dir");
    let bytes: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(spool.path().join("herald-spool.redb"), &bytes).expect("damage");
    let spool_flag = format!("--spool-dir={}", spool.path().display());
    let herald = Herald::serve(dir.path(), &[&spool_flag]);
    assert!(eventually(Duration::from_secs(10), || readyz(&herald) == 200));
    let set_aside: Vec<_> = std::fs::read_dir(spool.path())
        .expect("read spool dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("herald-spool.redb.damaged-"))
        .collect();
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    let kept = std::fs::read(spool.path().join(&set_aside[0])).expect("kept");
    assert_eq!(kept, bytes, "the damaged file is kept as it was");
    assert!(
        herald
            .logs()
            .iter()
            .any(|l| l.contains(&set_aside[0]) && l.contains("records_read")),
        "{:#?}",
        herald.logs()
    );
    assert_eq!(
        metric(&herald, "herald_spool_files_set_aside_total "),
        Some(1.0)
    );
    assert_eq!(herald.post(error_event(7)).0, 202);
    assert!(eventually(Duration::from_secs(10), || delivered_numbers(
        &sink, 0
    ) == [7]));

    let second = Command::new(binary())
        .args(["serve", "--manifests"])
        .arg(dir.path())
        .arg(&spool_flag)
        .args([
            "--events-addr=127.0.0.1:0",
            "--metrics-addr=127.0.0.1:0",
            "--health-addr=127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .output()
        .expect("run a second herald");
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another herald has it open"), "{stderr}");
}

/// Spooled notifications whose Alert the first table after a restart does
/// not route (its Provider's Secret not there yet) are kept, not deleted,
/// and delivered once a later table routes the Alert.
#[test]
fn spooled_notifications_wait_for_their_alert_across_a_config_gap() {
    let sink = Sink::start();
    sink.default_answer(Answer::status(503));
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let spool = tempfile::tempdir().expect("spool dir");
    let spool_flag = format!("--spool-dir={}", spool.path().display());
    let mut first = Herald::serve(dir.path(), &[&spool_flag]);
    for n in 0..3 {
        assert_eq!(first.post(error_event(n)).0, 202, "event {n}");
    }
    assert!(eventually(Duration::from_secs(10), || !sink
        .received()
        .is_empty()));
    first.kill();

    // The Secret is missing when herald starts again: the Alert does not route.
    let secret = dir.path().join("04-secret.yaml");
    let secret_text = std::fs::read_to_string(&secret).expect("secret");
    std::fs::remove_file(&secret).expect("remove the Secret");
    let attempts = sink.received().len();
    sink.default_answer(Answer::status(200).body("ok"));
    let second = Herald::serve(dir.path(), &[&spool_flag]);
    assert!(
        second
            .wait_for_log("waiting_for_their_alert", Duration::from_secs(10))
            .is_some(),
        "{:#?}",
        second.logs()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        sink.received().len(),
        attempts,
        "delivered without a Secret"
    );

    // The Secret arrives: the next table routes the Alert, and every
    // notification is delivered, in order.
    std::fs::write(&secret, secret_text).expect("restore the Secret");
    assert!(
        eventually(Duration::from_secs(15), || {
            delivered_numbers(&sink, attempts) == [0, 1, 2]
        }),
        "{:?} {:#?}",
        delivered_numbers(&sink, attempts),
        second.logs()
    );
}

/// Chaos: under steady load with `--spool-dir`, herald is killed with
/// SIGKILL at random moments 20 times, once more while the disk is full,
/// and restarted on the same directory each time. At the end every event
/// answered 202 has been delivered at least once, in the order accepted
/// (first deliveries), and duplicates are few (notifications in flight or
/// delivered but not yet forgotten at a kill).
#[test]
fn chaos_sigkills_under_load_lose_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let disk = SmallDisk::mount("8m");
    let sink = Sink::start();
    sink.default_answer(
        Answer::status(200)
            .body("ok")
            .delay(Duration::from_millis(5)),
    );
    let dir = seed_copy(&SEED_SLACK, &sink.url);
    let spool_flag = format!("--spool-dir={}", disk.path().display());
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(Vec::<usize>::new()));
    let kills = 21;
    for round in 0..kills {
        let herald = Herald::serve(dir.path(), &[&spool_flag, "--rate-limit-interval=0"]);
        let stop = Arc::new(AtomicBool::new(false));
        let full_disk = round == kills - 1;
        let load = {
            let (events, stop, next, accepted) = (
                herald.events.clone(),
                stop.clone(),
                next.clone(),
                accepted.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let n = next.fetch_add(1, Ordering::AcqRel);
                    let body = error_event(n % 1000)
                        .replace("dry-run failed #", &format!("dry-run failed [{n:05}] #"));
                    match support::herald::client::try_post(&events, body.into_bytes()) {
                        Some(202) => accepted.lock().expect("accepted").push(n),
                        Some(_) => {}
                        // The process is gone: the round is over.
                        None => break,
                    }
                    // Steady load, about what one destination takes: a
                    // backlog far past the destination's own bound would
                    // test that bound, not the spool.
                    std::thread::sleep(Duration::from_millis(4));
                }
            })
        };
        if full_disk {
            std::thread::sleep(Duration::from_millis(200));
            disk.fill();
        }
        let wait = 150 + rand::random::<u64>() % 600;
        std::thread::sleep(Duration::from_millis(wait));
        // SIGKILL at a random moment, under load.
        let _ = Command::new("kill")
            .args(["-9", &herald.pid().to_string()])
            .status();
        stop.store(true, Ordering::Release);
        let _ = load.join();
        drop(herald);
        if full_disk {
            std::fs::remove_file(disk.path().join("filler")).expect("free the disk");
        }
    }
    // A last herald delivers what is left.
    let last = Herald::serve(dir.path(), &[&spool_flag]);
    let accepted = accepted.lock().expect("accepted").clone();
    let number = |r: &support::sink::Received| -> Option<usize> {
        let text = r.text();
        let at = text.find("dry-run failed [")? + "dry-run failed [".len();
        text.get(at..at + 5)?.parse().ok()
    };
    let all_delivered = eventually(Duration::from_secs(60), || {
        let delivered: BTreeSet<usize> = sink.received().iter().filter_map(number).collect();
        accepted.iter().all(|n| delivered.contains(n))
    });
    let deliveries: Vec<usize> = sink.received().iter().filter_map(number).collect();
    let distinct: BTreeSet<usize> = deliveries.iter().copied().collect();
    let duplicates = deliveries.len() - distinct.len();
    let missing: Vec<usize> = accepted
        .iter()
        .copied()
        .filter(|n| !distinct.contains(n))
        .collect();
    println!(
        "chaos: {kills} SIGKILLs (the last while the disk was full), {} events accepted, {} delivered, {duplicates} duplicates, {} missing",
        accepted.len(),
        distinct.len(),
        missing.len()
    );
    assert!(
        all_delivered,
        "accepted but never delivered: {missing:?}\n{:#?}",
        last.logs()
    );
    // Order: first deliveries follow acceptance order.
    let mut seen = BTreeSet::new();
    let first: Vec<usize> = deliveries
        .iter()
        .copied()
        .filter(|n| seen.insert(*n))
        .collect();
    assert!(
        first.windows(2).all(|w| w[0] < w[1]),
        "first deliveries out of order: {first:?}"
    );
    // Only notifications in flight or not yet forgotten at a kill come twice:
    // a few per kill at most.
    assert!(
        duplicates <= kills * 20,
        "{duplicates} duplicates for {kills} kills"
    );
    assert!(
        accepted.len() > kills * 5,
        "too little load: {}",
        accepted.len()
    );
}

//! Runs the real `herald` binary and reads its JSON logs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `herald serve`.
pub struct Herald {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    pub events: String,
    pub metrics: String,
    pub health: String,
    /// The webhook receiver server (`herald controller` only).
    pub webhooks: String,
}

/// The binary under test: `HERALD_BIN` when set (e.g. a copy that no
/// other build sharing the target directory can replace mid-run), else the
/// one cargo built for these tests.
pub fn binary() -> &'static str {
    static BINARY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        std::env::var("HERALD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_herald").to_owned())
    })
}

impl Herald {
    /// Starts `herald serve` on ephemeral ports with extra flags.
    pub fn serve(manifests: &Path, extra: &[&str]) -> Self {
        let mut args = vec![
            "serve".to_owned(),
            "--manifests".to_owned(),
            manifests.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::start(&args, &[])
    }

    /// Starts `herald controller` against a kubeconfig, on ephemeral ports.
    pub fn controller(kubeconfig: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut args = vec!["controller".to_owned()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut env: Vec<(&str, &str)> = env.to_vec();
        let kubeconfig = kubeconfig.display().to_string();
        env.push(("KUBECONFIG", &kubeconfig));
        Self::start(&args, &env)
    }

    /// Starts `herald` with a subcommand and its flags, on ephemeral ports
    /// (with fast retries and reloads), and waits until it listens.
    pub fn start(args: &[String], env: &[(&str, &str)]) -> Self {
        let (command, flags) = args.split_first().expect("a subcommand");
        let per_command: &[&str] = if command == "serve" {
            &["--reload-interval=100ms"]
        } else {
            &["--receiverAddr=127.0.0.1:0"]
        };
        let mut child = Command::new(binary())
            .arg(command)
            .args(per_command)
            .args([
                "--events-addr=127.0.0.1:0",
                "--metrics-addr=127.0.0.1:0",
                "--health-addr=127.0.0.1:0",
                "--log-encoding=json",
                "--log-level=debug",
                "--retry-backoff=100ms",
            ])
            .args(flags)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start herald");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("logs").push(line);
            }
        });
        let mut herald = Self {
            child,
            logs,
            events: String::new(),
            metrics: String::new(),
            health: String::new(),
            webhooks: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && (herald.events.is_empty() || herald.metrics.is_empty() || herald.health.is_empty())
        {
            for line in herald.logs() {
                let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if log["message"] != "listening" {
                    continue;
                }
                let url = format!("http://{}", log["address"].as_str().unwrap_or_default());
                match log["server"].as_str() {
                    Some("events") => herald.events = url,
                    Some("metrics") => herald.metrics = url,
                    Some("health") => herald.health = url,
                    Some("webhooks") => herald.webhooks = url,
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !herald.events.is_empty(),
            "herald did not start: {:#?}",
            herald.logs()
        );
        herald
    }

    /// The process id, for reading its memory from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory of the process so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kib * 1024
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }

    /// Fails if any log line quotes a test webhook path or a Slack token.
    pub fn assert_no_secret_in_logs(&self) {
        for line in self.logs() {
            assert!(
                !line.contains("secret-webhook-path"),
                "webhook path leaked: {line}"
            );
            assert!(!line.contains("xoxb-"), "token leaked: {line}");
        }
    }

    /// Waits for a log line containing `text`.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| l.contains(text)) {
                return Some(line);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// POSTs a body to the event endpoint; returns status and body text.
    pub fn post(&self, body: impl Into<Vec<u8>>) -> (u16, String) {
        client::post(&self.events, body.into())
    }

    /// POSTs a fixture event file.
    pub fn post_file(&self, path: &Path) -> u16 {
        self.post(std::fs::read(path).expect("event file")).0
    }

    /// SIGKILL: no shutdown, no lease released.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal blocking HTTP helpers on top of reqwest's async client.
pub mod client {
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    pub fn post(url: &str, body: Vec<u8>) -> (u16, String) {
        request(::reqwest::Method::POST, url, body)
    }

    pub fn get(url: &str) -> (u16, String) {
        request(::reqwest::Method::GET, url, Vec::new())
    }

    /// A GET's status, or `None` when nothing answers (yet).
    pub fn try_get(url: &str) -> Option<u16> {
        runtime().block_on(async {
            let response = ::reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .ok()?
                .get(url)
                .send()
                .await
                .ok()?;
            Some(response.status().as_u16())
        })
    }

    /// A POST's status, or `None` when the server is gone.
    pub fn try_post(url: &str, body: Vec<u8>) -> Option<u16> {
        runtime().block_on(async {
            let response = ::reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .ok()?
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .ok()?;
            Some(response.status().as_u16())
        })
    }

    /// A POST's status and the value of its `Retry-After` header.
    pub fn post_retry_after(url: &str, body: Vec<u8>) -> (u16, Option<String>) {
        runtime().block_on(async {
            let response = ::reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("request");
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (response.status().as_u16(), retry_after)
        })
    }

    pub fn request(method: ::reqwest::Method, url: &str, body: Vec<u8>) -> (u16, String) {
        runtime().block_on(async {
            let client = ::reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            let response = client
                .request(method, url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        })
    }
}

//! A real `nats-server` (the Debian package `nats-server`) on 127.0.0.1
//! with user/password or NKey authorization and its monitoring endpoint, stopped
//! when dropped; restartable on the same port.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Option<Child>,
    config: PathBuf,
    _dir: tempfile::TempDir,
    pub port: u16,
    /// The monitoring endpoint (`/connz`, `/varz`).
    pub monitor: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl NatsServer {
    /// Starts a server accepting these users (name, password).
    pub fn start(users: &[(&str, &str)]) -> Self {
        let users: Vec<String> = users
            .iter()
            .map(|(user, password)| {
                format!(
                    "{{user: {}, password: {}}}",
                    serde_json::to_string(user).expect("user"),
                    serde_json::to_string(password).expect("password")
                )
            })
            .collect();
        Self::start_with(&users)
    }

    /// Starts a server accepting users with these NKey public keys.
    pub fn start_nkeys(public_keys: &[&str]) -> Self {
        let users: Vec<String> = public_keys
            .iter()
            .map(|key| format!("{{nkey: {key}}}"))
            .collect();
        Self::start_with(&users)
    }

    fn start_with(users: &[String]) -> Self {
        let port = free_port();
        let monitor_port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor_port}\n\
                 authorization {{ users = [ {} ] }}\n",
                users.join(", ")
            ),
        )
        .expect("write nats.conf");
        let mut server = Self {
            child: None,
            config,
            _dir: dir,
            port,
            monitor: format!("http://127.0.0.1:{monitor_port}"),
        };
        server.run();
        server
    }

    fn run(&mut self) {
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run nats-server ({e}): install it (Debian/Ubuntu: \
                     `apt-get install nats-server`; .ci/run does) to run the NATS tests"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (its clients see the connection drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

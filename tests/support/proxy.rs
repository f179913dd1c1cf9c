//! A tiny recording HTTP proxy on 127.0.0.1: it tunnels `CONNECT` requests
//! and forwards plain HTTP requests (absolute-form), recording each
//! request line and its `Proxy-Authorization`. With an upstream set, every
//! connection goes there whatever host was asked for, so a test can use a
//! real service's host name (e.g. `*.webhook.office.com`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the proxy received.
#[derive(Clone, Debug)]
pub struct Proxied {
    /// `CONNECT host:port HTTP/1.1` or `POST http://host/path HTTP/1.1`.
    pub request_line: String,
    pub proxy_authorization: Option<String>,
}

pub struct Proxy {
    pub url: String,
    seen: Arc<Mutex<Vec<Proxied>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    pub fn start(upstream: Option<String>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let address: SocketAddr = listener.local_addr().expect("proxy address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(handle(stream, upstream.clone(), recorded.clone()));
            }
        });
        Self {
            url: format!("http://{address}"),
            seen,
            _runtime: runtime,
        }
    }

    pub fn seen(&self) -> Vec<Proxied> {
        self.seen.lock().expect("proxy").clone()
    }

    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Proxied> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.seen();
            if seen.len() >= count || Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

async fn handle(mut client: TcpStream, upstream: Option<String>, seen: Arc<Mutex<Vec<Proxied>>>) {
    // Read the request head (bounded).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let Ok(n) = client.read(&mut buf).await else {
            return;
        };
        if n == 0 || head.len() > 64 * 1024 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let proxy_authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, value)| value.trim().to_owned());
    seen.lock().expect("proxy").push(Proxied {
        request_line: request_line.clone(),
        proxy_authorization,
    });
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let connect = method == "CONNECT";
    let destination = match &upstream {
        Some(upstream) => upstream.clone(),
        None if connect => target.to_owned(),
        None => match url::Url::parse(target) {
            Ok(url) => format!(
                "{}:{}",
                url.host_str().unwrap_or_default(),
                url.port_or_known_default().unwrap_or(80)
            ),
            Err(_) => return,
        },
    };
    let Ok(mut server) = TcpStream::connect(destination).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    if connect {
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        // Anything the client sent after the CONNECT head goes on.
        if server.write_all(&head[end..]).await.is_err() {
            return;
        }
    } else if server.write_all(&head).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

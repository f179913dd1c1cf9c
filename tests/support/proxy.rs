//! A TCP proxy between herald and the API server that can cut every open
//! connection (watches included) and refuse new ones for a while.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct Proxy {
    /// `127.0.0.1:PORT`.
    pub address: String,
    shared: Arc<Shared>,
}

struct Shared {
    /// Open connections: (client side, upstream side).
    connections: Mutex<Vec<(TcpStream, TcpStream)>>,
    paused: AtomicBool,
    stopped: AtomicBool,
}

impl Proxy {
    /// Listens on 127.0.0.1 and forwards every connection to `upstream`
    /// (`HOST:PORT`).
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let address = listener.local_addr().expect("proxy address").to_string();
        let shared = Arc::new(Shared {
            connections: Mutex::new(Vec::new()),
            paused: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        });
        let upstream = upstream.to_owned();
        let state = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if state.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if state.paused.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                if let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) {
                    state
                        .connections
                        .lock()
                        .expect("connections")
                        .push((c3, s3));
                }
                std::thread::spawn(move || pipe(client, server));
                std::thread::spawn(move || pipe(s2, c2));
            }
        });
        Self { address, shared }
    }

    /// Closes every open connection, both ways, mid-stream.
    pub fn cut(&self) {
        for (client, server) in self
            .shared
            .connections
            .lock()
            .expect("connections")
            .drain(..)
        {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    /// Cuts every connection and refuses new ones until `resume()`.
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
        self.cut();
    }

    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop so that it sees `stopped`.
        let _ = TcpStream::connect(&self.address);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

//! Serving HTTP with the limits a cluster-facing endpoint needs: a header
//! read timeout, a cap on concurrent connections, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Connections served at once per listener; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 4096;
/// Open connections get this long to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Limits applied to every connection.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Binds a Go-style address (`:9090` means every interface, as in Flux's flags).
/// Checks a listen address flag's value as Flux's controllers take it:
/// `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (every interface).
pub fn parse_listen_address(value: &str) -> Result<String, String> {
    let expected = "expected HOST:PORT or :PORT, e.g. :9090 or 127.0.0.1:9090";
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(format!("{value:?} has no port: {expected}"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "{value:?}: {port:?} is not a port (0-65535): {expected}"
        ));
    }
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.contains(':') && !bracketed {
        return Err(format!(
            "{value:?}: an IPv6 host goes in brackets, e.g. [::1]:9090"
        ));
    }
    Ok(value.to_owned())
}

pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    let address = if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_owned()
    };
    TcpListener::bind(address).await
}

/// Serves `router` until `shutdown` is cancelled, then lets open
/// connections finish for a short grace period.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = shutdown.cancelled() => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, _peer): (_, SocketAddr) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Client errors (resets, timeouts, malformed requests) end only that connection.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

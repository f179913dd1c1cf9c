//! `herald serve`: the receiver, routing and dispatch, configured from a
//! manifest directory that is re-read when it changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{DeliveryArgs, LogArgs, LogEncoding, RoutingArgs};
use crate::dispatch::Dispatcher;
use crate::http::{self, Limits};
use crate::metrics::Metrics;
use crate::receiver::{self, Receiver, dedup::Dedup};
use crate::routing::{self, RoutingTable, TableOptions};
use crate::source::{Level, manifests};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub routing: RoutingArgs,

    /// Address of the event endpoint Flux's controllers POST to (`:9090`
    /// means every interface).
    #[arg(long, value_name = "ADDR", default_value = ":9090")]
    pub events_addr: String,

    /// Address of the Prometheus endpoint (`/metrics`).
    #[arg(long, value_name = "ADDR", default_value = ":8080")]
    pub metrics_addr: String,

    /// Address of the health endpoints (`/healthz`, `/readyz`).
    #[arg(long, value_name = "ADDR", default_value = ":9440")]
    pub health_addr: String,

    /// An event identical to one accepted within this interval is answered
    /// 429 and not delivered again (0 disables).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::duration::parse)]
    pub rate_limit_interval: Duration,

    /// On SIGTERM/SIGINT, keep delivering queued notifications this long, then exit.
    #[arg(long, value_name = "DURATION", default_value = "25s", value_parser = crate::duration::parse)]
    pub shutdown_timeout: Duration,

    /// How often the manifest directory is checked for changes.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::duration::parse)]
    pub reload_interval: Duration,

    /// Deadline for a client to send its request headers.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::duration::parse)]
    pub header_read_timeout: Duration,

    /// Deadline for a client to send a whole request body.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::duration::parse)]
    pub body_read_timeout: Duration,

    #[command(flatten)]
    pub delivery: DeliveryArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

pub fn run(args: ServeArgs) -> i32 {
    args.log.init(LogEncoding::Console);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return 1;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "herald serve failed");
            1
        }
    }
}

/// Loads the directory, builds a table and logs every problem.
fn load_table(args: &RoutingArgs, options: &TableOptions, metrics: &Metrics) -> RoutingTable {
    let (snapshot, mut problems) = manifests::load(&args.manifests);
    let (table, more) = routing::build(&snapshot, options);
    problems.extend(more);
    for problem in &problems {
        match problem.level {
            Level::Error => tracing::error!(problem = %problem, "configuration problem"),
            Level::Warning => tracing::warn!(problem = %problem, "configuration warning"),
            Level::Note => tracing::debug!(problem = %problem, "configuration note"),
        }
    }
    metrics.alerts.set(table.alert_count() as i64);
    let problem_count = problems.iter().filter(|p| p.level != Level::Note).count();
    metrics.config_problems.set(problem_count as i64);
    tracing::info!(
        alerts = table.alert_count(),
        providers = snapshot.providers.len(),
        problems = problem_count,
        "routing table loaded"
    );
    table
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let options = args.routing.table_options();
    let table = Arc::new(ArcSwap::from_pointee(load_table(
        &args.routing,
        &options,
        &metrics,
    )));
    let ready = Arc::new(AtomicBool::new(true));

    let dispatcher = Dispatcher::new(args.delivery.dispatch_config(), metrics.clone());
    let receiver = Arc::new(Receiver {
        table: table.clone(),
        dispatcher: dispatcher.clone(),
        dedup: Dedup::new(args.rate_limit_interval),
        metrics: metrics.clone(),
        body_timeout: args.body_read_timeout,
        accepting: AtomicBool::new(true),
    });

    let stop_events = CancellationToken::new();
    let stop_rest = CancellationToken::new();
    let limits = Limits {
        header_read_timeout: args.header_read_timeout,
    };
    let events_listener = http::bind(&args.events_addr).await?;
    let metrics_listener = http::bind(&args.metrics_addr).await?;
    let health_listener = http::bind(&args.health_addr).await?;
    for (server, listener) in [
        ("events", &events_listener),
        ("metrics", &metrics_listener),
        ("health", &health_listener),
    ] {
        tracing::info!(server, address = %listener.local_addr()?, "listening");
    }
    let events_server = tokio::spawn(http::serve(
        events_listener,
        receiver::router(receiver.clone()),
        limits,
        stop_events.clone(),
    ));
    tokio::spawn(http::serve(
        metrics_listener,
        metrics_router(metrics.clone()),
        limits,
        stop_rest.clone(),
    ));
    tokio::spawn(http::serve(
        health_listener,
        health_router(ready.clone()),
        limits,
        stop_rest.clone(),
    ));
    tokio::spawn(watch_manifests(
        args.routing.clone(),
        options,
        args.reload_interval,
        table,
        metrics,
    ));

    shutdown_signal().await;
    tracing::info!(
        pending = dispatcher.pending(),
        "shutting down: draining queued notifications"
    );
    ready.store(false, Ordering::Release);
    receiver.accepting.store(false, Ordering::Release);
    stop_events.cancel();
    let _ = events_server.await;
    let abandoned = dispatcher.drain(args.shutdown_timeout).await;
    if abandoned > 0 {
        tracing::error!(
            abandoned,
            "shutdown timeout reached: notifications not delivered"
        );
    } else {
        tracing::info!("all queued notifications finished");
    }
    stop_rest.cancel();
    Ok(())
}

/// Re-reads the directory when its fingerprint changes and swaps the table.
/// Notifications already queued keep the destination they were routed to.
async fn watch_manifests(
    args: RoutingArgs,
    options: TableOptions,
    every: Duration,
    table: Arc<ArcSwap<RoutingTable>>,
    metrics: Arc<Metrics>,
) {
    let dir = args.manifests.clone();
    let mut last = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || manifests::fingerprint(&dir)
    })
    .await
    .unwrap_or_default();
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(50)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (args, options, metrics, dir) =
            (args.clone(), options.clone(), metrics.clone(), dir.clone());
        let reloaded = tokio::task::spawn_blocking(move || {
            let current = manifests::fingerprint(&dir);
            (current != last)
                .then(|| (load_table(&args, &options, &metrics), current))
                .ok_or(last)
        })
        .await;
        match reloaded {
            Ok(Ok((new_table, current))) => {
                table.store(Arc::new(new_table));
                last = current;
            }
            Ok(Err(unchanged)) => last = unchanged,
            Err(e) => {
                tracing::error!(error = %e, "reloading manifests failed");
                return;
            }
        }
    }
}

fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(metrics): State<Arc<Metrics>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }),
        )
        .with_state(metrics)
}

fn health_router(ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(ready): State<Arc<AtomicBool>>| async move {
                if ready.load(Ordering::Acquire) {
                    (StatusCode::OK, "ready\n").into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
                }
            }),
        )
        .with_state(ready)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; SIGINT only");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

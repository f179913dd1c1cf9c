//! The part of herald both `serve` and `controller` run: the event,
//! metrics and health servers, the dispatcher, and the shutdown drain. A
//! config source (manifest directory or Kubernetes) swaps routing tables in
//! through [`Runtime::table`] and sets [`Runtime::ready`] once it has one.

use anyhow::Context;
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::dispatch::{DispatchConfig, Dispatcher};
use crate::http::{self, Limits};
use crate::metrics::Metrics;
use crate::receiver::{self, LabelResolver, Receiver, dedup::Dedup};
use crate::report::Reporter;
use crate::routing::{Delivery, RoutingTable};
use crate::source::{Level, Problem};
use crate::spool::{Pending, Spool};

/// Addresses, limits and timeouts of the servers.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    pub events_addr: String,
    pub metrics_addr: String,
    pub health_addr: String,
    pub limits: Limits,
    pub body_read_timeout: Duration,
    pub rate_limit_interval: Duration,
    pub shutdown_timeout: Duration,
    pub dispatch: DispatchConfig,
}

/// Optional integrations of controller mode.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Where warnings about Alerts go (Kubernetes Events).
    pub reporter: Option<Arc<dyn Reporter>>,
    /// How `matchLabels` reads an involved object's labels.
    pub labels: Option<Arc<dyn LabelResolver>>,
    /// Where accepted notifications are kept until they finish (`--spool-dir`).
    pub spool: Option<Arc<Spool>>,
}

pub struct Runtime {
    pub metrics: Arc<Metrics>,
    pub table: Arc<ArcSwap<RoutingTable>>,
    /// False until the first routing table is loaded, and again at shutdown.
    pub ready: Arc<AtomicBool>,
    pub dispatcher: Dispatcher,
    receiver: Arc<Receiver>,
    options: RuntimeOptions,
    spool: Option<Arc<Spool>>,
    /// What the spool held at start-up, until the first table is published.
    replay: Arc<Mutex<Option<Pending>>>,
    /// The configuration problems last logged (see [`publish`]).
    logged: Arc<Mutex<HashSet<String>>>,
}

impl Runtime {
    pub fn new(options: RuntimeOptions, hooks: Hooks) -> Self {
        let metrics = Arc::new(Metrics::default());
        if let Some(spool) = &hooks.spool {
            spool.attach_gauge(metrics.spool_writable.clone());
            if spool.set_aside().is_some() {
                metrics.spool_set_aside.inc();
            }
        }
        let table = Arc::new(ArcSwap::from_pointee(RoutingTable::default()));
        let dispatcher = match &hooks.spool {
            Some(spool) => Dispatcher::with_spool(
                options.dispatch.clone(),
                metrics.clone(),
                hooks.reporter.clone(),
                spool.clone(),
            ),
            None => Dispatcher::new(
                options.dispatch.clone(),
                metrics.clone(),
                hooks.reporter.clone(),
            ),
        };
        let receiver = Arc::new(Receiver {
            table: table.clone(),
            dispatcher: dispatcher.clone(),
            dedup: Dedup::new(options.rate_limit_interval),
            metrics: metrics.clone(),
            body_timeout: options.body_read_timeout,
            body_budget: crate::receiver::budget::BodyBudget::new(Default::default()),
            accepting: AtomicBool::new(true),
            labels: hooks.labels,
            reporter: hooks.reporter,
            spool: hooks.spool.clone(),
        });
        Self {
            metrics,
            table,
            ready: Arc::new(AtomicBool::new(false)),
            dispatcher,
            receiver,
            options,
            spool: hooks.spool,
            replay: Arc::default(),
            logged: Arc::default(),
        }
    }

    /// Queues what the spool held at start-up once the first routing table
    /// is published: each through its Alert as that table has it.
    pub fn replay_after_first_table(&self, pending: Pending) {
        if !pending.is_empty() {
            tracing::info!(
                notifications = pending.len(),
                "spool: notifications pending from before the restart will be delivered"
            );
            *self.replay.lock().unwrap_or_else(|e| e.into_inner()) = Some(pending);
        }
    }

    /// Swaps in a new routing table, logging the problems found building it.
    pub fn publish(&self, table: RoutingTable, problems: &[Problem]) {
        self.publisher().publish(table, problems);
    }

    /// A handle a config source keeps to publish tables while the runtime runs.
    pub fn publisher(&self) -> Publisher {
        Publisher {
            table: self.table.clone(),
            metrics: self.metrics.clone(),
            ready: self.ready.clone(),
            dispatcher: self.dispatcher.clone(),
            spool: self.spool.clone(),
            replay: self.replay.clone(),
            logged: self.logged.clone(),
        }
    }

    /// Serves until `shutdown` resolves, then drains the queues (DESIGN §4):
    /// readiness goes false, the event endpoint stops accepting, queued
    /// notifications are delivered until `shutdown_timeout`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let options = &self.options;
        let stop_events = CancellationToken::new();
        let stop_rest = CancellationToken::new();
        let listen = |flag: &'static str, address: &str| {
            let address = address.to_owned();
            async move {
                http::bind(&address)
                    .await
                    .with_context(|| format!("cannot listen on {flag} {address}"))
            }
        };
        let events_listener = listen("--events-addr", &options.events_addr).await?;
        let metrics_listener = listen("--metrics-addr", &options.metrics_addr).await?;
        let health_listener = listen("--health-addr", &options.health_addr).await?;
        for (server, listener) in [
            ("events", &events_listener),
            ("metrics", &metrics_listener),
            ("health", &health_listener),
        ] {
            tracing::info!(server, address = %listener.local_addr()?, "listening");
        }
        let events_server = tokio::spawn(http::serve(
            events_listener,
            receiver::router(self.receiver.clone()),
            options.limits,
            stop_events.clone(),
        ));
        tokio::spawn(http::serve(
            metrics_listener,
            metrics_router(self.metrics.clone()),
            options.limits,
            stop_rest.clone(),
        ));
        tokio::spawn(http::serve(
            health_listener,
            health_router(
                self.ready.clone(),
                self.spool.as_ref().map(|spool| spool.health()),
            ),
            options.limits,
            stop_rest.clone(),
        ));

        tokio::spawn(release_memory_when_idle(self.metrics.clone()));

        shutdown.await;
        tracing::info!(
            pending = self.dispatcher.pending(),
            "shutting down: draining queued notifications"
        );
        self.ready.store(false, Ordering::Release);
        self.receiver.accepting.store(false, Ordering::Release);
        stop_events.cancel();
        let _ = events_server.await;
        let abandoned = self.dispatcher.drain(options.shutdown_timeout).await;
        if let Some(spool) = &self.spool {
            // Removals of the notifications finished while draining.
            spool.flush().await;
        }
        if abandoned > 0 && self.spool.is_some() {
            tracing::warn!(
                abandoned,
                "shutdown timeout reached: notifications kept in the spool, delivered after the restart"
            );
        } else if abandoned > 0 {
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
}

/// Publishes routing tables: logs their problems, swaps them in, and marks
/// herald ready after the first.
#[derive(Clone)]
pub struct Publisher {
    table: Arc<ArcSwap<RoutingTable>>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    dispatcher: Dispatcher,
    spool: Option<Arc<Spool>>,
    replay: Arc<Mutex<Option<Pending>>>,
    /// The configuration problems last logged (see [`publish`]).
    logged: Arc<Mutex<HashSet<String>>>,
}

impl Publisher {
    pub fn publish(&self, table: RoutingTable, problems: &[Problem]) {
        publish(&self.table, &self.metrics, table, problems, &self.logged);
        self.replay_spool();
        self.ready.store(true, Ordering::Release);
    }

    /// Queues the spool's pending notifications, oldest first, before
    /// herald reports ready (so before new events, for every one that fits
    /// the queue); the rest wait in a task for room.
    fn replay_spool(&self) {
        let pending = self.replay.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (Some(pending), Some(spool)) = (pending, &self.spool) else {
            return;
        };
        let max_age = self.dispatcher.max_delivery_age();
        let replay = crate::routing::replay::replay(pending, &self.table.load(), spool, max_age);
        let total = replay.deliveries.len();
        let waiting_for_alert = replay.waiting.as_ref().map_or(0, Pending::len);
        if let Some(waiting) = replay.waiting {
            // Tried again with the next table (and given up at max age).
            *self.replay.lock().unwrap_or_else(|e| e.into_inner()) = Some(waiting);
        }
        let mut waiting = replay.deliveries.into_iter();
        for (delivery, accepted) in waiting.by_ref() {
            if let Err(mut back) = self.dispatcher.try_requeue(vec![delivery], accepted) {
                let rest: Vec<_> = back
                    .pop()
                    .map(|d| (d, accepted))
                    .into_iter()
                    .chain(waiting)
                    .collect();
                tracing::warn!(
                    waiting = rest.len(),
                    "spool: the queue is full; the rest of the pending notifications are queued as room frees up"
                );
                tokio::spawn(requeue_when_room(self.dispatcher.clone(), rest));
                break;
            }
        }
        if total > 0 || replay.given_up > 0 || waiting_for_alert > 0 {
            tracing::info!(
                notifications = total,
                waiting_for_their_alert = waiting_for_alert,
                given_up = replay.given_up,
                "spool: pending notifications queued again"
            );
        }
    }
}

/// Queues spooled notifications one by one, waiting while the queue is full.
/// One past `--max-delivery-age` meanwhile is given up (logged, counted).
async fn requeue_when_room(dispatcher: Dispatcher, rest: Vec<(Delivery, Instant)>) {
    let max_age = dispatcher.max_delivery_age();
    for (delivery, accepted) in rest {
        let mut delivery = vec![delivery];
        while let Err(back) = dispatcher.try_requeue(delivery, accepted) {
            if accepted.elapsed() >= max_age {
                back.iter().for_each(|d| dispatcher.give_up_unqueued(d));
                break;
            }
            delivery = back;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Logs a new table's problems, updates the gauges and swaps the table in.
/// Each problem is logged once, when it appears (tables are rebuilt on
/// every change and at every interval), and once more when it is gone;
/// `logged` holds those logged so far.
pub fn publish(
    current: &ArcSwap<RoutingTable>,
    metrics: &Metrics,
    table: RoutingTable,
    problems: &[Problem],
    logged: &Mutex<HashSet<String>>,
) {
    let now: HashSet<String> = problems.iter().map(ToString::to_string).collect();
    let mut logged = logged.lock().unwrap_or_else(|e| e.into_inner());
    for problem in problems {
        let text = problem.to_string();
        if logged.contains(&text) {
            continue;
        }
        match problem.level {
            Level::Error => tracing::error!(problem = %text, "configuration problem"),
            Level::Warning => tracing::warn!(problem = %text, "configuration warning"),
            Level::Note => tracing::debug!(problem = %text, "configuration note"),
        }
    }
    for gone in logged.difference(&now) {
        tracing::info!(problem = %gone, "configuration problem resolved");
    }
    *logged = now;
    drop(logged);
    let problem_count = problems.iter().filter(|p| p.level != Level::Note).count();
    metrics.alerts.set(table.alert_count() as i64);
    metrics.config_problems.set(problem_count as i64);
    tracing::info!(
        alerts = table.alert_count(),
        problems = problem_count,
        "routing table loaded"
    );
    current.store(Arc::new(table));
    crate::memory::release_free();
}

/// How often [`release_memory_when_idle`] looks whether events stopped.
const IDLE_CHECK: Duration = Duration::from_secs(2);

/// Once events stop arriving after a busy spell, gives the memory that
/// spell's requests, notifications and connections used back to the
/// system ([`crate::memory::release_free`]): once per spell, never while
/// events arrive.
async fn release_memory_when_idle(metrics: Arc<Metrics>) {
    let accepted = || {
        metrics
            .events
            .get_or_create(&crate::metrics::ResultLabel { result: "accepted" })
            .get()
    };
    let mut ticker = tokio::time::interval(IDLE_CHECK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = accepted();
    let mut released = last;
    loop {
        ticker.tick().await;
        let now = accepted();
        if now == last && now != released {
            crate::memory::release_free();
            released = now;
        }
        last = now;
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

/// What `/readyz` answers from: the first table is loaded, and (with
/// `--spool-dir`) events can be made durable — while the spool cannot be
/// written (a full disk), herald is not ready, so Kubernetes sends events
/// to a replica that can take them.
#[derive(Clone)]
struct ReadyState {
    loaded: Arc<AtomicBool>,
    spool: Option<Arc<crate::spool::Health>>,
}

fn health_router(ready: Arc<AtomicBool>, spool: Option<Arc<crate::spool::Health>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(state): State<ReadyState>| async move {
                if !state.loaded.load(Ordering::Acquire) {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
                } else if state.spool.as_ref().is_some_and(|h| !h.writable()) {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: the spool cannot be written\n",
                    )
                        .into_response()
                } else {
                    (StatusCode::OK, "ready\n").into_response()
                }
            }),
        )
        .with_state(ReadyState {
            loaded: ready,
            spool,
        })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
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

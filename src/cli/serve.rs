//! `herald serve`: the receiver, routing and dispatch, configured from a
//! manifest directory that is re-read when it changes.

use std::time::Duration;

use clap::Args;

use super::{DeliveryArgs, LogArgs, LogEncoding, RoutingArgs, ServerArgs};
use crate::routing::{self, RoutingTable};
use crate::runtime::{self, Hooks, Publisher, Runtime};
use crate::source::{Problem, manifests};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub routing: RoutingArgs,

    #[command(flatten)]
    pub server: ServerArgs,

    /// How often the manifest directory is checked for changes.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::duration::parse)]
    pub reload_interval: Duration,

    #[command(flatten)]
    pub delivery: DeliveryArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

pub fn run(args: ServeArgs) -> i32 {
    args.log.init(LogEncoding::Console);
    super::block_on(serve(args))
}

/// Loads the directory and builds a table.
fn load_table(args: &RoutingArgs) -> (RoutingTable, Vec<Problem>) {
    let (snapshot, mut problems) = manifests::load(&args.manifests);
    let (table, more) = routing::build(&snapshot, &args.table_options());
    problems.extend(more);
    (table, problems)
}

/// A manifest directory (or file) that cannot be read at start is an
/// error, not an empty table that answers 202 to every event and sends
/// nothing. Later, a reload that fails keeps the last table.
fn check_manifests(path: &std::path::Path) -> anyhow::Result<()> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("--manifests {shown}: cannot read it: {e}"))?;
    let readable = if meta.is_dir() {
        std::fs::read_dir(path).map(drop)
    } else {
        std::fs::File::open(path).map(drop)
    };
    readable.map_err(|e| anyhow::anyhow!("--manifests {shown}: cannot read it: {e}"))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    check_manifests(&args.routing.manifests)?;
    let (spool, pending) = args.delivery.open_spool()?;
    let runtime = Runtime::new(
        args.server.runtime_options(args.delivery.dispatch_config()),
        Hooks {
            spool,
            ..Hooks::default()
        },
    );
    if let Some(pending) = pending {
        runtime.replay_after_first_table(pending);
    }
    let (table, problems) = load_table(&args.routing);
    runtime.publish(table, &problems);
    tokio::spawn(watch_manifests(
        args.routing.clone(),
        args.reload_interval,
        runtime.publisher(),
    ));
    runtime.run(runtime::shutdown_signal()).await
}

/// Re-reads the directory when its fingerprint changes and swaps the table.
/// Notifications already queued keep the destination they were routed to.
async fn watch_manifests(args: RoutingArgs, every: Duration, publisher: Publisher) {
    let dir = args.manifests.clone();
    let fingerprint = move || {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || manifests::fingerprint(&dir))
    };
    let mut last = fingerprint().await.unwrap_or_default();
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(50)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Ok(current) = fingerprint().await else {
            continue;
        };
        if current == last {
            continue;
        }
        last = current;
        let args = args.clone();
        match tokio::task::spawn_blocking(move || load_table(&args)).await {
            Ok((new_table, problems)) => publisher.publish(new_table, &problems),
            Err(e) => tracing::error!(error = %e, "reloading manifests failed"),
        }
    }
}

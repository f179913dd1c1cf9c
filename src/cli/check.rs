//! `herald check`: validate manifests the way the controller would.

use clap::Args;

use super::RoutingArgs;
use crate::routing;
use crate::source::{Level, Origin, manifests};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub routing: RoutingArgs,
}

pub fn run(args: &CheckArgs) -> i32 {
    let (snapshot, mut problems) = manifests::load(&args.routing.manifests);
    let (table, more) = routing::build(&snapshot, &args.routing.table_options());
    problems.extend(more);
    problems.retain(|p| p.level != Level::Note);
    // In file order, as a person reads the manifests.
    problems.sort_by_key(|p| match &p.origin {
        Origin::File { path, document } => (Some(path.clone()), *document),
        Origin::Cluster => (None, 0),
    });
    for problem in &problems {
        if super::emit(&format!("{problem}\n")).is_err() {
            break;
        }
    }
    let errors = problems.iter().filter(|p| p.level == Level::Error).count();
    let warnings = problems.len() - errors;
    let summary = format!(
        "{} alerts ({} routing), {} providers, {} secrets: {errors} errors, {warnings} warnings",
        snapshot.alerts.len(),
        table.alert_count(),
        snapshot.providers.len(),
        snapshot.secrets.len(),
    );
    if errors > 0 {
        eprintln!("check failed: {summary}");
        1
    } else {
        eprintln!("check passed: {summary}");
        0
    }
}

//! `herald route`: a dry run that prints what would be sent.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use serde_json::Value;

use super::RoutingArgs;
use crate::api::FluxEvent;
use crate::routing::{self, Delivery};
use crate::source::{Level, manifests};

#[derive(Debug, Args)]
pub struct RouteArgs {
    #[command(flatten)]
    pub routing: RoutingArgs,

    /// Event files (JSON, as Flux's controllers POST them).
    #[arg(value_name = "EVENT.json", required = true)]
    pub events: Vec<PathBuf>,
}

/// One line of `herald route` output.
#[derive(Serialize)]
struct Line<'a> {
    event: String,
    alert: String,
    provider: String,
    #[serde(rename = "type")]
    kind: String,
    address: String,
    payload: &'a Value,
    /// The rendered `spec.template.threadKey`, when the Alert has one.
    #[serde(rename = "threadKey", skip_serializing_if = "Option::is_none")]
    thread_key: Option<String>,
}

pub fn run(args: &RouteArgs) -> i32 {
    let (snapshot, mut problems) = manifests::load(&args.routing.manifests);
    let (table, more) = routing::build(&snapshot, &args.routing.table_options());
    problems.extend(more);
    for problem in problems.iter().filter(|p| p.level == Level::Error) {
        eprintln!("{problem}");
    }
    let mut status = 0;
    for path in &args.events {
        let event = match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|body| FluxEvent::from_json(&body).map_err(|e| e.to_string()))
        {
            Ok(event) => event,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                status = 1;
                continue;
            }
        };
        for notification in table.notifications(event) {
            if super::emit(&format!("{}\n", render(&notification))).is_err() {
                return status;
            }
        }
    }
    status
}

fn render(n: &Delivery) -> String {
    let destination = &n.alert.destination;
    let rendered = n.render().unwrap_or_else(|error| {
        eprintln!("{}: {error}; the default format is shown", n.alert.key);
        None
    });
    let thread_key = rendered.as_ref().and_then(|r| r.thread_key.clone());
    let payload = destination
        .notifier
        .payload(n, rendered.as_ref())
        .unwrap_or_else(|error| {
            let error = crate::mask::redact(&error, &destination.notifier.secrets());
            eprintln!("{}: cannot build the request: {error}", n.alert.key);
            Value::Null
        });
    let line = Line {
        event: n.event.object_ref(),
        alert: n.alert.key.to_string(),
        provider: destination.key.to_string(),
        kind: destination.kind.as_str(),
        address: destination.notifier.masked_address(),
        payload: &payload,
        thread_key,
    };
    serde_json::to_string(&line).unwrap_or_default()
}

//! `herald route`: a dry run that prints what would be sent.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use serde_json::Value;

use super::MatchingArgs;
use crate::api::FluxEvent;
use crate::routing::{self, Delivery};
use crate::source::{Level, manifests};

#[derive(Debug, Args)]
pub struct RouteArgs {
    /// Directory of YAML manifests (Alert, Provider, Secret; other kinds
    /// supply labels for matchLabels). Read recursively, multi-document files allowed.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "cluster",
        conflicts_with = "cluster"
    )]
    pub manifests: Option<PathBuf>,

    /// Read Alerts, Providers and their Secrets from a cluster instead
    /// (read-only: list and get, within the controller's RBAC).
    #[arg(long)]
    pub cluster: bool,

    /// With `--cluster`: the kubeconfig (default: `KUBECONFIG`, then in-cluster).
    #[arg(long, value_name = "PATH", requires = "cluster")]
    pub kubeconfig: Option<PathBuf>,

    /// With `--cluster`: only this namespace's Alerts and Providers (default: all).
    #[arg(long, value_name = "NAMESPACE", requires = "cluster")]
    pub namespace: Option<String>,

    #[command(flatten)]
    pub matching: MatchingArgs,

    /// Event files (JSON, as Flux's controllers POST them).
    #[arg(value_name = "EVENT.json", required = true)]
    pub events: Vec<PathBuf>,

    /// Instead of the payloads, print for each event every Alert in scope
    /// and the first rule that kept it from matching, or "matched".
    #[arg(long)]
    pub explain: bool,

    /// Output of `--explain`: `text` (for people) or `json` (one object per line).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub output: String,

    /// Window in which a repeated event is a duplicate (as `serve`'s flag),
    /// for `--explain` over several event files.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::duration::parse)]
    pub rate_limit_interval: std::time::Duration,
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
    let source = match &args.manifests {
        Some(dir) => Source::Manifests(dir.clone()),
        None => match Cluster::connect(args) {
            Ok(cluster) => Source::Cluster(Box::new(cluster)),
            Err(e) => {
                eprintln!("error: {e:#}");
                return 1;
            }
        },
    };
    let (snapshot, mut problems) = match &source {
        Source::Manifests(dir) => manifests::load(dir),
        Source::Cluster(cluster) => (cluster.snapshot.clone(), Vec::new()),
    };
    let (table, more) = routing::build(&snapshot, &args.matching.table_options());
    problems.extend(more);
    // Errors, and warnings such as a misspelt field that is ignored.
    for problem in problems.iter().filter(|p| p.level != Level::Note) {
        eprintln!("{problem}");
    }
    if args.explain {
        let options = args.matching.table_options();
        let explainer = Explainer {
            snapshot,
            problems: &problems,
            options: &options,
            json: args.output == "json",
            dedup: crate::receiver::dedup::Dedup::new(args.rate_limit_interval),
            cluster: match &source {
                Source::Cluster(cluster) => Some(cluster.as_ref()),
                Source::Manifests(_) => None,
            },
        };
        return explainer.run(&args.events);
    }
    let mut status = 0;
    // As `serve` and `route --explain`: an event repeated within
    // --rate-limit-interval is a duplicate and sends nothing again.
    let dedup = crate::receiver::dedup::Dedup::new(args.rate_limit_interval);
    for path in &args.events {
        let event = match read_event(path) {
            Ok(event) => event,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                status = 1;
                continue;
            }
        };
        if matches!(
            dedup.admit(&event, std::time::Instant::now()),
            crate::receiver::dedup::Admission::Duplicate
        ) {
            eprintln!(
                "{}: duplicate of an earlier event of this run: serve answers 429 and sends nothing (--rate-limit-interval=0 routes it again)",
                path.display()
            );
            continue;
        }
        let notifications = match &source {
            Source::Cluster(cluster) => cluster.notifications(&table, event),
            Source::Manifests(_) => table.notifications(event),
        };
        for notification in notifications {
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
        kind: destination.kind.as_str().to_owned(),
        address: destination.notifier.masked_address(),
        payload: &payload,
        thread_key,
    };
    serde_json::to_string(&line).unwrap_or_default()
}

fn read_event(path: &std::path::Path) -> Result<FluxEvent, String> {
    std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|body| FluxEvent::from_json(&body).map_err(|e| e.to_string()))
}

/// Where `route` reads Alerts and Providers from.
enum Source {
    Manifests(PathBuf),
    Cluster(Box<Cluster>),
}

/// A cluster `route` reads from, with the one runtime its client lives on
/// for the whole command (a client used from another runtime than the one
/// it was built on fails: "buffer's worker closed unexpectedly"), and the
/// controller's own label resolver for `matchLabels`.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    snapshot: crate::source::Snapshot,
    labels: crate::cluster::labels::ClusterLabels,
}

impl Cluster {
    fn connect(args: &RouteArgs) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (client, snapshot) = runtime.block_on(async {
            let client = crate::cluster::snapshot::client(args.kubeconfig.as_deref()).await?;
            let snapshot =
                crate::cluster::snapshot::read(&client, args.namespace.as_deref()).await?;
            anyhow::Ok((client, snapshot))
        })?;
        Ok(Self {
            runtime,
            snapshot,
            labels: crate::cluster::labels::ClusterLabels::new(client),
        })
    }

    /// The involved object's labels, read as the controller reads them.
    fn labels_of(
        &self,
        event: &FluxEvent,
    ) -> Result<std::collections::BTreeMap<String, String>, String> {
        use crate::receiver::LabelResolver;
        self.runtime
            .block_on(self.labels.labels(&event.involved_object))
    }

    /// What the controller would send for `event`: labels are read only
    /// when some candidate Alert has `matchLabels`; when they cannot be
    /// read, such Alerts do not match (said on standard error).
    fn notifications(&self, table: &routing::RoutingTable, event: FluxEvent) -> Vec<Delivery> {
        if !table.needs_labels(&event) {
            return table.notifications(event);
        }
        let labels = self.labels_of(&event);
        let routed = match &labels {
            Ok(labels) => table.route_with(&event, routing::Labels::Fetched(labels)),
            Err(error) => {
                eprintln!(
                    "matchLabels: cannot read the labels of {}: {error}",
                    event.object_ref()
                );
                table.route_with(&event, routing::Labels::Unavailable)
            }
        };
        routing::notifications_for(event, routed.alerts)
    }
}

/// `herald route --explain`.
struct Explainer<'a> {
    snapshot: crate::source::Snapshot,
    /// With `--cluster`: where an involved object's labels are read.
    cluster: Option<&'a Cluster>,
    problems: &'a [crate::source::Problem],
    options: &'a routing::TableOptions,
    json: bool,
    /// Events seen so far in this run, as the receiver's duplicate filter sees them.
    dedup: crate::receiver::dedup::Dedup,
}

/// One line of `herald route --explain --output json`.
#[derive(Serialize)]
struct ExplainLine<'a> {
    event: String,
    severity: &'static str,
    #[serde(flatten)]
    explanation: &'a routing::explain::Explanation,
}

impl Explainer<'_> {
    fn run(mut self, events: &[PathBuf]) -> i32 {
        let mut status = 0;
        for path in events {
            let event = match read_event(path) {
                Ok(event) => event,
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    status = 1;
                    continue;
                }
            };
            let duplicate = matches!(
                self.dedup.admit(&event, std::time::Instant::now()),
                crate::receiver::dedup::Admission::Duplicate
            );
            if let Some(cluster) = self.cluster {
                match cluster.labels_of(&event) {
                    Ok(labels) => {
                        let object = &event.involved_object;
                        let key = crate::source::ObjectKey::new(
                            object.namespace.as_str(),
                            object.name.as_str(),
                        );
                        self.snapshot
                            .labels
                            .insert((object.kind.clone(), key), labels);
                    }
                    Err(error) => eprintln!(
                        "matchLabels: cannot read the labels of {}: {error}",
                        event.object_ref()
                    ),
                }
            }
            let explanations = routing::explain::explain(
                &self.snapshot,
                self.problems,
                self.options,
                &event,
                duplicate,
            );
            if super::emit(&self.format(&event, &explanations)).is_err() {
                return status;
            }
        }
        status
    }

    fn format(&self, event: &FluxEvent, explanations: &[routing::explain::Explanation]) -> String {
        let object = event.object_ref();
        let severity = event.severity.as_str();
        if self.json {
            return explanations
                .iter()
                .map(|explanation| {
                    let line = ExplainLine {
                        event: object.clone(),
                        severity,
                        explanation,
                    };
                    serde_json::to_string(&line).unwrap_or_default() + "\n"
                })
                .collect();
        }
        let mut text = format!("event {object} ({severity}):\n");
        if explanations.is_empty() {
            text.push_str(&format!(
                "  no Alert in namespace {} or naming it\n",
                event.involved_object.namespace
            ));
        }
        for e in explanations {
            let verdict = if e.matched { "matched" } else { e.rule };
            text.push_str(&format!("  {}: {verdict}: {}\n", e.alert, e.detail));
        }
        text
    }
}

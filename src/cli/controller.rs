//! `herald controller`: in-cluster mode, a drop-in for Flux's
//! notification-controller (same flags, names and defaults).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{DeliveryArgs, LogArgs, LogEncoding, MatchingArgs, ServerArgs};
use crate::cluster::events::EventReporter;
use crate::cluster::labels::ClusterLabels;
use crate::cluster::leader::{self, ElectionConfig};
use crate::cluster::source::ClusterSource;
use crate::cluster::status::StatusWriter;
use crate::runtime::{self, Hooks, Runtime};
use crate::webhook::annotate::ClusterTargets;
use crate::webhook::oidc::KeyCache;
use crate::webhook::server::WebhookServer;

/// The Lease Flux's notification-controller elects its leader with.
const LEASE_NAME: &str = "notification-controller-leader-election";

#[derive(Debug, Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub matching: MatchingArgs,

    /// Receivers: acknowledge without acting on a request whose sender's
    /// delivery id (GitHub's X-GitHub-Delivery, GitLab's
    /// X-Gitlab-Event-UUID, …) was handled in the last 5 minutes. Off by
    /// default, as in Flux: every verified request requests a reconciliation.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub receiver_replay_protection: bool,

    /// The kubeconfig to reach the API server with, as Flux's controllers
    /// take it (default: in-cluster, else `KUBECONFIG`, else ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// Address of the webhook receiver server: `POST /hook/<digest>` for
    /// each Receiver (its `status.webhookPath`).
    #[arg(long = "receiverAddr", value_name = "ADDR", default_value = ":9292", value_parser = crate::http::parse_listen_address)]
    pub receiver_addr: String,

    /// Where gcr Receivers fetch Google's token signing keys (JWKS). Only
    /// for tests and air-gapped mirrors.
    #[arg(long, value_name = "URL", default_value = crate::webhook::oidc::GOOGLE_JWKS_URL, hide = true)]
    pub gcr_jwks_url: String,

    /// Watch Alerts, Providers and Secrets in every namespace; when false,
    /// only in herald's own (RUNTIME_NAMESPACE, else the service account's).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    pub watch_all_namespaces: bool,

    /// Elect a leader with a Lease; only the leader writes status. Every
    /// replica receives and delivers events.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub enable_leader_election: bool,

    /// How long a leader's lease lasts without renewal.
    #[arg(long, value_name = "DURATION", default_value = "35s", value_parser = crate::duration::parse)]
    pub leader_election_lease_duration: Duration,

    /// A leader that could not renew for this long steps down.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::duration::parse)]
    pub leader_election_renew_deadline: Duration,

    /// How often replicas try to acquire or renew the lease.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::duration::parse)]
    pub leader_election_retry_period: Duration,

    /// Flux's feature gates, `NAME=BOOL` pairs separated by commas (the
    /// flag may repeat). `ObjectLevelWorkloadIdentity=true` lets Providers
    /// use `spec.serviceAccountName`; Flux's other gates
    /// (`CacheSecretsAndConfigMaps`, `DisableConfigWatchers`) are accepted
    /// and change nothing in herald; an unknown gate is an error, as in Flux.
    #[arg(long = "feature-gates", value_name = "GATES", value_parser = parse_feature_gates, action = clap::ArgAction::Append)]
    pub feature_gates: Vec<FeatureGates>,

    #[command(flatten)]
    pub delivery: DeliveryArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// Flux flags herald does not implement, filled by the argument
    /// pre-processing (see `super::parse`).
    #[arg(skip)]
    pub ignored_flags: Vec<String>,
}

/// The gates Flux v1.9.3's notification-controller knows.
const KNOWN_GATES: [&str; 3] = [
    crate::providers::identity::FEATURE_GATE,
    "CacheSecretsAndConfigMaps",
    "DisableConfigWatchers",
];

/// One `--feature-gates` value: gate names and their settings, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureGates(pub Vec<(String, bool)>);

/// Parses `A=true,B=false` as Flux's flag does (Go's `ParseBool` values),
/// refusing gates Flux does not know, so a typo does not silently leave a
/// gate off.
pub fn parse_feature_gates(text: &str) -> Result<FeatureGates, String> {
    let mut gates = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("'{pair}' is not NAME=BOOL"))?;
        let name = name.trim();
        if !KNOWN_GATES.contains(&name) {
            return Err(format!(
                "feature gate '{name}' is not supported (known: {})",
                KNOWN_GATES.join(", ")
            ));
        }
        let value = match value.trim() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            other => return Err(format!("feature gate '{name}': '{other}' is not a boolean")),
        };
        gates.push((name.to_owned(), value));
    }
    Ok(FeatureGates(gates))
}

impl ControllerArgs {
    /// The gate's setting: the last one given, else off (Flux's default
    /// for every gate it has).
    pub fn gate(&self, name: &str) -> bool {
        self.feature_gates
            .iter()
            .flat_map(|g| &g.0)
            .rfind(|(n, _)| n == name)
            .is_some_and(|(_, on)| *on)
    }
}

pub fn run(args: ControllerArgs) -> i32 {
    args.log.init(LogEncoding::Json);
    for flag in &args.ignored_flags {
        tracing::warn!(flag, "flag not implemented by herald; ignored");
    }
    super::block_on(controller(args))
}

/// Starts the webhook receiver server on `--receiverAddr`; it stops
/// taking requests when `stop` is cancelled.
async fn serve_webhooks(
    args: &ControllerArgs,
    server: Arc<WebhookServer>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = crate::http::bind(&args.receiver_addr)
        .await
        .with_context(|| format!("cannot listen on --receiverAddr {}", args.receiver_addr))?;
    tracing::info!(server = "webhooks", address = %listener.local_addr()?, "listening");
    let limits = crate::http::Limits {
        header_read_timeout: args.server.header_read_timeout,
    };
    tokio::spawn(crate::http::serve(
        listener,
        crate::webhook::server::router(server),
        limits,
        stop,
    ));
    Ok(())
}

/// This replica's name, under which it writes status and Events: the pod
/// name when Kubernetes injects it, else the host's name. Stable across
/// restarts, so an object's managed fields do not grow a manager per run.
fn instance_name() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(host_name)
}

/// The host's name as the system reports it (a pod's name in Kubernetes).
fn host_name() -> String {
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "herald".into())
}

/// This process's leader-election identity: the host's name and a random
/// suffix, as client-go's controllers make it, so that no two processes
/// ever share one — not two started by hand on one machine, not a restart
/// that finds its predecessor's lease still held.
fn election_identity() -> String {
    let suffix: u128 = rand::random();
    let hex = format!("{suffix:032x}");
    format!(
        "{}_{}-{}-{}-{}-{}",
        host_name(),
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    let mut config = crate::cluster::snapshot::config(args.kubeconfig.as_deref()).await?;
    // Names herald in the API server's audit log.
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static(concat!("herald/", env!("CARGO_PKG_VERSION"))),
    ));
    let client = kube::Client::try_from(config).context("cannot build the Kubernetes client")?;
    if args.gate(crate::providers::identity::FEATURE_GATE) {
        tracing::info!(
            gate = crate::providers::identity::FEATURE_GATE,
            "object-level workload identity is enabled: Providers may set spec.serviceAccountName"
        );
        crate::providers::identity::enable(client.clone());
    } else {
        crate::providers::identity::disable();
    }
    let own_namespace = std::env::var("RUNTIME_NAMESPACE")
        .unwrap_or_else(|_| client.default_namespace().to_owned());
    let watched = (!args.watch_all_namespaces).then(|| own_namespace.clone());
    let identity = instance_name();

    let leader = Arc::new(AtomicBool::new(!args.enable_leader_election));
    let receiver_table = Arc::new(arc_swap::ArcSwap::from_pointee(Default::default()));
    let source = ClusterSource::new(client.clone(), watched, args.matching.table_options())
        .with_receivers(receiver_table.clone());
    let reporter = EventReporter::start(client.clone(), source.alert_store(), identity.clone());
    let (spool, pending) = args.delivery.open_spool()?;
    let runtime = Runtime::new(
        args.server.runtime_options(args.delivery.dispatch_config()),
        Hooks {
            reporter: Some(reporter.clone()),
            labels: Some(Arc::new(ClusterLabels::new(client.clone()))),
            spool,
        },
    );
    if let Some(pending) = pending {
        runtime.replay_after_first_table(pending);
    }
    let stop_election = CancellationToken::new();
    let election = if args.enable_leader_election {
        let config = ElectionConfig {
            namespace: own_namespace,
            lease_name: LEASE_NAME.into(),
            identity: election_identity(),
            lease_duration: args.leader_election_lease_duration,
            renew_deadline: args.leader_election_renew_deadline,
            retry_period: args.leader_election_retry_period,
        };
        Some(tokio::spawn(leader::run(
            client.clone(),
            config,
            leader.clone(),
            source.trigger(),
            stop_election.clone(),
        )))
    } else {
        None
    };
    let webhooks = Arc::new(WebhookServer::new(
        receiver_table,
        Arc::new(ClusterTargets::new(client.clone(), identity.clone())),
        Arc::new(KeyCache::new(args.gcr_jwks_url.clone())),
        runtime.metrics.clone(),
        args.server.body_read_timeout,
        args.matching.no_cross_namespace_refs,
        args.receiver_replay_protection,
    ));
    let stop_webhooks = CancellationToken::new();
    serve_webhooks(&args, webhooks.clone(), stop_webhooks.clone()).await?;
    let status = StatusWriter::new(client, leader, identity, reporter);
    tokio::spawn(source.run(runtime.publisher(), status));
    let shutdown = async {
        runtime::shutdown_signal().await;
        webhooks
            .accepting
            .store(false, std::sync::atomic::Ordering::Release);
        stop_webhooks.cancel();
    };
    let result = runtime.run(shutdown).await;
    stop_election.cancel();
    if let Some(election) = election {
        let _ = tokio::time::timeout(Duration::from_secs(5), election).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_identities_are_the_host_name_and_unique() {
        let (a, b) = (election_identity(), election_identity());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{}_", host_name())), "{a}");
    }

    #[test]
    fn feature_gates_are_fluxs_and_an_unknown_one_is_named() {
        assert_eq!(
            parse_feature_gates("ObjectLevelWorkloadIdentity=true, DisableConfigWatchers=f"),
            Ok(FeatureGates(vec![
                ("ObjectLevelWorkloadIdentity".into(), true),
                ("DisableConfigWatchers".into(), false),
            ]))
        );
        let error =
            parse_feature_gates("ObjectLevelWorkloadIdentity=true,ObjectLevelIdentity=true")
                .expect_err("unknown gate");
        assert!(
            error.starts_with("feature gate 'ObjectLevelIdentity' is not supported"),
            "{error}"
        );
        let error = parse_feature_gates("ObjectLevelWorkloadIdentity=yes").expect_err("not a bool");
        assert!(error.contains("'yes' is not a boolean"), "{error}");
        let error = parse_feature_gates("ObjectLevelWorkloadIdentity").expect_err("no value");
        assert!(error.contains("is not NAME=BOOL"), "{error}");
    }
}

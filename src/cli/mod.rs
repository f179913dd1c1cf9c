//! The command line (DESIGN §2): `serve`, `route`, `check`, `crds`.

pub mod check;
pub mod controller;
pub mod route;
pub mod serve;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::api::Severity;
use crate::dispatch::DispatchConfig;
use crate::http::Limits;
use crate::routing::TableOptions;
use crate::runtime::RuntimeOptions;

/// herald: a drop-in replacement for Flux's notification-controller.
///
/// It serves Flux's Alert, Provider and Receiver resources, receives the
/// events Flux's controllers send, and delivers the matching notifications
/// to every provider type Flux has. Run it in a cluster (`controller`), on
/// a directory of manifests with no cluster (`serve`, `route`, `check`),
/// or print its CRDs (`crds`).
#[derive(Debug, Parser)]
// As with Go's flag package (Flux's), a repeated flag takes its last value.
#[command(name = "herald", version, about, long_about, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive events and deliver notifications, with Alerts, Providers and
    /// Secrets read from YAML manifests under a directory (no cluster needed).
    /// The directory is re-read when its files change.
    Serve(Box<serve::ServeArgs>),
    /// Dry run: print, one JSON line each, the notifications the given event
    /// files would produce. Sends nothing; addresses are masked.
    Route(route::RouteArgs),
    /// Validate every Alert, Provider and Secret under a directory the way
    /// the controller would. Prints one line per problem; exit status 1 on
    /// any error.
    Check(check::CheckArgs),
    /// Run in a Kubernetes cluster in place of Flux's notification-controller:
    /// watch Alerts, Providers and Secrets, write their status, receive and
    /// deliver events. Accepts Flux's flags; unknown Flux flags are ignored
    /// with a warning.
    Controller(Box<controller::ControllerArgs>),
    /// Print the CustomResourceDefinitions for Alert, Provider and Receiver (YAML).
    Crds,
}

/// Where the manifests are and how they become a routing table.
#[derive(Debug, Clone, Args)]
pub struct RoutingArgs {
    /// Directory of YAML manifests (Alert, Provider, Secret; other kinds
    /// supply labels for matchLabels). Read recursively, multi-document files allowed.
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,

    #[command(flatten)]
    pub matching: MatchingArgs,
}

impl RoutingArgs {
    pub fn table_options(&self) -> TableOptions {
        self.matching.table_options()
    }
}

/// How Alerts match events (shared by every command).
#[derive(Debug, Clone, Args)]
pub struct MatchingArgs {
    /// Severity an Alert without `eventSeverity` matches from: `error`
    /// (herald's default: errors only) or `info` (Flux's behaviour).
    #[arg(long, value_name = "SEVERITY", default_value = "error", value_parser = parse_severity)]
    pub default_event_severity: Severity,

    /// Alerts only route events of objects in their own namespace.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub no_cross_namespace_refs: bool,

    /// This cluster's name, added to every notification's metadata as
    /// `cluster` (an Alert's own `eventMetadata.cluster` wins), so that
    /// clusters posting to one channel can be told apart. Off by default.
    #[arg(long, value_name = "NAME", env = "HERALD_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
}

impl MatchingArgs {
    pub fn table_options(&self) -> TableOptions {
        TableOptions {
            default_severity: self.default_event_severity,
            no_cross_namespace_refs: self.no_cross_namespace_refs,
            cluster_name: self.cluster_name.clone(),
        }
    }
}

/// The servers' addresses, limits and timeouts (shared by `serve` and `controller`).
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address of the event endpoint Flux's controllers POST to (`:9090`
    /// means every interface).
    #[arg(long, value_name = "ADDR", default_value = ":9090", value_parser = crate::http::parse_listen_address)]
    pub events_addr: String,

    /// Address of the Prometheus endpoint (`/metrics`).
    #[arg(long, value_name = "ADDR", default_value = ":8080", value_parser = crate::http::parse_listen_address)]
    pub metrics_addr: String,

    /// Address of the health endpoints (`/healthz`, `/readyz`).
    #[arg(long, value_name = "ADDR", default_value = ":9440", value_parser = crate::http::parse_listen_address)]
    pub health_addr: String,

    /// An event identical to one accepted within this interval is answered
    /// 429 and not delivered again (0 disables).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::duration::parse)]
    pub rate_limit_interval: Duration,

    /// On SIGTERM/SIGINT, keep delivering queued notifications this long, then exit.
    #[arg(long, value_name = "DURATION", default_value = "25s", value_parser = crate::duration::parse)]
    pub shutdown_timeout: Duration,

    /// Deadline for a client to send its request headers.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::duration::parse)]
    pub header_read_timeout: Duration,

    /// Deadline for a client to send a whole request body.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::duration::parse)]
    pub body_read_timeout: Duration,
}

impl ServerArgs {
    pub fn runtime_options(&self, dispatch: DispatchConfig) -> RuntimeOptions {
        RuntimeOptions {
            events_addr: self.events_addr.clone(),
            metrics_addr: self.metrics_addr.clone(),
            health_addr: self.health_addr.clone(),
            limits: Limits {
                header_read_timeout: self.header_read_timeout,
            },
            body_read_timeout: self.body_read_timeout,
            rate_limit_interval: self.rate_limit_interval,
            shutdown_timeout: self.shutdown_timeout,
            dispatch,
        }
    }
}

/// Runs a command's async main on a multi-threaded runtime; returns the exit code.
pub(crate) fn block_on(main: impl std::future::Future<Output = anyhow::Result<()>>) -> i32 {
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
    match runtime.block_on(main) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "herald failed");
            1
        }
    }
}

/// How notifications are delivered.
#[derive(Debug, Clone, Args)]
pub struct DeliveryArgs {
    /// Give up on a notification this long after its event was accepted
    /// (retries continue until then).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = crate::duration::parse)]
    pub max_delivery_age: Duration,

    /// First retry delay; doubles on every attempt (with jitter), up to 1m.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::duration::parse)]
    pub retry_backoff: Duration,

    /// Notifications accepted and not yet delivered, across all
    /// destinations. When full, events are answered 503 and Flux retries.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub queue_capacity: usize,

    /// Notifications accepted and not yet delivered, per destination. When
    /// one destination is full, its new notifications are given up (logged,
    /// counted, Warning Event) and the events' other notifications are still
    /// accepted: a dead destination never blocks another.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub destination_queue_capacity: usize,

    /// How long a Slack thread (`spec.template.threadKey`) is remembered;
    /// a later notification with the same key then starts a new thread.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::duration::parse)]
    pub thread_ttl: Duration,

    /// Keep every accepted notification in this directory until it is
    /// delivered or given up: written before the event is answered 202, and
    /// delivered after a crash or restart. Without it, notifications
    /// pending at a crash are lost.
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<std::path::PathBuf>,
}

impl DeliveryArgs {
    /// Opens `--spool-dir` when given: the spool and what it held.
    pub fn open_spool(
        &self,
    ) -> anyhow::Result<(
        Option<std::sync::Arc<crate::spool::Spool>>,
        Option<crate::spool::Pending>,
    )> {
        let Some(dir) = &self.spool_dir else {
            return Ok((None, None));
        };
        let (spool, pending) = crate::spool::Spool::open(dir)?;
        Ok((Some(spool), Some(pending)))
    }

    pub fn dispatch_config(&self) -> DispatchConfig {
        DispatchConfig {
            queue_capacity: self.queue_capacity.max(1),
            destination_queue_capacity: self.destination_queue_capacity.max(1),
            max_delivery_age: self.max_delivery_age,
            initial_backoff: self.retry_backoff,
            max_backoff: Duration::from_secs(60).max(self.retry_backoff),
            thread_ttl: self.thread_ttl,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log verbosity: trace, debug, info, warn or error.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format: `console` (human-readable) or `json` [default: json for
    /// `controller`, console for the other commands].
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub log_encoding: Option<LogEncoding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogEncoding {
    Console,
    Json,
}

impl LogArgs {
    /// Installs the global subscriber (logs go to stderr).
    pub fn init(&self, default_encoding: LogEncoding) {
        // kube's client logs every failed request at ERROR, a line per
        // retry while the API server is away; herald logs each failure
        // that matters itself (one WARN per watch per outage), so below
        // debug the client's own lines are left out.
        let quiet_client = if matches!(self.log_level.as_str(), "debug" | "trace") {
            ""
        } else {
            ",kube_client::client::builder=off"
        };
        let filter = tracing_subscriber::EnvFilter::try_new(format!(
            "{},hyper=warn,reqwest=warn{quiet_client}",
            self.log_level
        ))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let _ = match self.log_encoding.unwrap_or(default_encoding) {
            LogEncoding::Json => builder.json().flatten_event(true).try_init(),
            LogEncoding::Console => builder.with_ansi(false).try_init(),
        };
    }
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    text.parse()
}

/// Writes to stdout without panicking when the reader has gone away
/// (`herald route ... | head`): the error ends the command quietly.
pub(crate) fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Parses the command line. For `controller`, flags of Flux's
/// notification-controller that herald does not implement are removed
/// first and kept to be logged, so Flux's Deployment args work unchanged.
pub fn parse() -> Cli {
    parse_from(std::env::args().collect())
}

/// [`parse`] on given arguments. Flags with no subcommand before them mean
/// `controller`: swapping only the image in Flux's Deployment (whose args
/// are flags) runs herald as the controller.
pub fn parse_from(mut args: Vec<String>) -> Cli {
    let flags_first = args
        .get(1)
        .is_some_and(|a| a.starts_with("--") && !["--help", "--version"].contains(&a.as_str()));
    if flags_first {
        args.insert(1, "controller".to_owned());
    }
    if args.get(1).map(String::as_str) != Some("controller") {
        return Cli::parse_from(args);
    }
    let command = <Cli as clap::CommandFactory>::command();
    let known: Vec<String> = command
        .find_subcommand("controller")
        .map(|c| {
            c.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut kept = Vec::new();
    let mut ignored = Vec::new();
    for (position, arg) in args.into_iter().enumerate() {
        let flag = arg
            .strip_prefix("--")
            .map(|f| f.split('=').next().unwrap_or(f));
        let unknown = match flag {
            Some(name) => {
                !name.is_empty()
                    && !["help", "version"].contains(&name)
                    && !known.iter().any(|k| k == name)
            }
            None => false,
        };
        if position >= 2 && unknown {
            ignored.push(arg);
        } else {
            kept.push(arg);
        }
    }
    let mut cli = Cli::parse_from(kept);
    if let Command::Controller(args) = &mut cli.command {
        args.ignored_flags = ignored;
    }
    cli
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Route(args) => route::run(&args),
        Command::Controller(args) => controller::run(*args),
        Command::Check(args) => check::run(&args),
        Command::Crds => match emit(&crate::api::crd::crds_yaml()) {
            Ok(()) => 0,
            Err(_) => 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn fluxs_deployment_args_run_the_controller() {
        let cli = parse_from(args(
            "herald --watch-all-namespaces=true --log-level=info --log-encoding=json --enable-leader-election \
             --storage-path=/data --feature-gates=CacheSecretsAndConfigMaps=true,ObjectLevelWorkloadIdentity=true",
        ));
        let Command::Controller(controller) = cli.command else {
            panic!("expected the controller command");
        };
        assert!(controller.watch_all_namespaces);
        assert!(controller.enable_leader_election);
        assert_eq!(controller.log.log_level, "info");
        assert_eq!(controller.ignored_flags, ["--storage-path=/data"]);
        assert!(controller.gate("ObjectLevelWorkloadIdentity"));
        assert!(!controller.gate("DisableConfigWatchers"));
        assert_eq!(controller.server.events_addr, ":9090");
        assert_eq!(controller.receiver_addr, ":9292");
    }

    #[test]
    fn a_repeated_flag_takes_its_last_value() {
        let cli = parse_from(args("herald --log-level=info --log-level=debug"));
        let Command::Controller(controller) = cli.command else {
            panic!("expected the controller command");
        };
        assert_eq!(controller.log.log_level, "debug");
    }

    #[test]
    fn out_of_range_durations_are_refused_naming_the_flag() {
        for flag in [
            "--rate-limit-interval",
            "--max-delivery-age",
            "--retry-backoff",
            "--thread-ttl",
            "--shutdown-timeout",
        ] {
            let error = Cli::try_parse_from([
                "herald",
                "serve",
                "--manifests",
                "dir",
                flag,
                "3000000000000000h",
            ])
            .expect_err(flag)
            .to_string();
            assert!(error.contains(flag), "{error}");
            assert!(error.contains("out of range"), "{error}");
        }
    }

    #[test]
    fn go_style_booleans() {
        let cli = parse_from(args(
            "herald controller --watch-all-namespaces=false --no-cross-namespace-refs",
        ));
        let Command::Controller(controller) = cli.command else {
            panic!("expected the controller command");
        };
        assert!(!controller.watch_all_namespaces);
        assert!(controller.matching.no_cross_namespace_refs);
        assert!(!controller.enable_leader_election);
    }
}

//! Shared test support: a recording webhook sink, a `herald serve` process,
//! a real `nats-server` (`nats`), an OTLP protobuf reader (`otlp`),
//! a real kube-apiserver (`kubeapi`), a TCP proxy that cuts connections
//! (`cutter`), a recording HTTP proxy (`proxy`) and test certificates (`tls`).
#![allow(dead_code)]

pub mod cutter;
pub mod herald;
pub mod kubeapi;
pub mod nats;
pub mod otlp;
pub mod proxy;
pub mod sink;
pub mod tls;

use std::path::{Path, PathBuf};

/// The fixtures the tests read (`tests/fixtures` in the repository: the
/// seed manifests, Flux's events and Flux's reference CRDs), or
/// `HERALD_FIXTURES` when set. `.ci/run` checks that the repository's copy
/// matches the project's shared reference copy when one is beside it.
pub fn fixtures() -> PathBuf {
    std::env::var_os("HERALD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
}

/// Flux v1.9.3's own CRDs (Alert, Provider, Receiver).
pub fn flux_crds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flux-crds")
}

/// A fixture event file.
pub fn event_file(name: &str) -> PathBuf {
    fixtures().join("events").join(name)
}

/// Copies the named seed manifests into a fresh directory, pointing the
/// Slack Secret's url at `webhook`.
pub fn seed_copy(files: &[&str], webhook: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for file in files {
        let text =
            std::fs::read_to_string(fixtures().join("seed").join(file)).expect("seed fixture");
        let text = text.replace(
            "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            webhook,
        );
        std::fs::write(dir.path().join(file), text).expect("write manifest");
    }
    dir
}

/// Every seed manifest.
pub const SEED: [&str; 6] = [
    "00-namespace.yaml",
    "01-kustomization.yaml",
    "02-provider.yaml",
    "03-alert.yaml",
    "04-secret.yaml",
    "05-two-channels.yaml",
];

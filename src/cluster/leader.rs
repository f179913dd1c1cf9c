//! Leader election with a `coordination.k8s.io/v1` Lease, as
//! controller-runtime does it for Flux: every replica receives and delivers
//! events; only the leader writes status.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Timings, with Flux's defaults.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    /// How long a lease is valid without renewal (`--leader-election-lease-duration`).
    pub lease_duration: Duration,
    /// The leader steps down when it could not renew for this long.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

/// Runs the election until `stop`; `leader` tells whether this replica
/// leads, and `changed` is rung when that flips. On stop, a leader releases
/// the lease so another replica takes over at once.
pub async fn run(
    client: Client,
    config: ElectionConfig,
    leader: Arc<AtomicBool>,
    changed: Arc<Notify>,
    stop: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        let leading = match try_acquire_or_renew(&api, &config).await {
            Ok(leading) => {
                if leading {
                    last_renewal = tokio::time::Instant::now();
                }
                leading
            }
            Err(e) => {
                tracing::warn!(error = %e, lease = %config.lease_name, "leader election: cannot reach the lease");
                // Keep leading until the renew deadline passes.
                leader.load(Ordering::Acquire) && last_renewal.elapsed() < config.renew_deadline
            }
        };
        if leader.swap(leading, Ordering::AcqRel) != leading {
            tracing::info!(identity = %config.identity, leading, "leader election: leadership changed");
            changed.notify_one();
        }
        tokio::select! {
            () = tokio::time::sleep(config.retry_period) => {}
            () = stop.cancelled() => break,
        }
    }
    if leader.load(Ordering::Acquire) {
        release(&api, &config).await;
        leader.store(false, Ordering::Release);
    }
}

/// One round: `Ok(true)` when this replica holds the lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &ElectionConfig,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(&config.lease_name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.lease_name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(held_by(config, now, now, 0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let transitions = spec.lease_transitions.unwrap_or(0);
    let next = if holder == config.identity {
        let acquired = spec.acquire_time.map_or(now, |t| t.0);
        held_by(config, acquired, now, transitions)
    } else if holder.is_empty() || expired(&spec, now) {
        held_by(config, now, now, transitions + 1)
    } else {
        return Ok(false);
    };
    lease.spec = Some(next);
    // `replace` carries the resourceVersion read above: if another replica
    // wrote the lease in between, this fails with 409 and it keeps it.
    match api
        .replace(&config.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

fn held_by(
    config: &ElectionConfig,
    acquired: Timestamp,
    renewed: Timestamp,
    transitions: i32,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(
            i32::try_from(config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
        ),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(renewed)),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    renewed + duration < now
}

async fn release(api: &Api<Lease>, config: &ElectionConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&config.lease_name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    if let Err(e) = api
        .replace(&config.lease_name, &PostParams::default(), &lease)
        .await
    {
        tracing::warn!(error = %e, "leader election: cannot release the lease");
    }
}

//! Leader election with a `coordination.k8s.io/v1` Lease, as
//! controller-runtime does it for Flux: every replica receives and delivers
//! events; only the leader writes status.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
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
    let mut last_renewal = Instant::now();
    let mut observed: Option<Observation> = None;
    tracing::info!(identity = %config.identity, lease = %config.lease_name, "leader election: taking part");
    loop {
        let was_leading = leader.load(Ordering::Acquire);
        // A leader's round may take no longer than what is left of its
        // renew deadline, so a hung API call cannot keep it leading; a
        // follower's round is bounded by the retry period.
        let budget = if was_leading {
            config
                .renew_deadline
                .saturating_sub(last_renewal.elapsed())
                .max(Duration::from_millis(1))
        } else {
            config.retry_period.max(Duration::from_secs(1))
        };
        let round =
            tokio::time::timeout(budget, try_acquire_or_renew(&api, &config, &mut observed));
        let outcome = round.await.unwrap_or_else(|_| Err(RoundError::TimedOut));
        let leading = match outcome {
            Ok(leading) => {
                if leading {
                    last_renewal = Instant::now();
                }
                leading
            }
            Err(e) => {
                tracing::warn!(error = %e, lease = %config.lease_name, "leader election: cannot reach the lease");
                // Keep leading until the renew deadline passes.
                was_leading && last_renewal.elapsed() < config.renew_deadline
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

/// Why a round could not tell who leads.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no answer within the renew deadline")]
    TimedOut,
}

/// The lease record as this replica last saw it, and when (by its own
/// clock). As in client-go, another holder's lease expires a lease duration
/// after this replica last saw the record change, never by comparing the
/// other replica's `renewTime` with this replica's clock: clocks differ.
struct Observation {
    record: LeaseRecord,
    at: Instant,
}

/// What identifies one renewal of a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LeaseRecord {
    holder: String,
    renew_time: Option<MicroTime>,
    acquire_time: Option<MicroTime>,
    transitions: i32,
    duration_seconds: i32,
}

impl LeaseRecord {
    fn of(spec: &LeaseSpec) -> Self {
        Self {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            renew_time: spec.renew_time.clone(),
            acquire_time: spec.acquire_time.clone(),
            transitions: spec.lease_transitions.unwrap_or(0),
            duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
        }
    }
}

/// Notes the record, restarting the expiry clock when it changed.
fn observe(observed: &mut Option<Observation>, record: LeaseRecord, now: Instant) -> &Observation {
    if observed.as_ref().is_none_or(|o| o.record != record) {
        *observed = Some(Observation { record, at: now });
    }
    observed.as_ref().expect("just set")
}

/// Whether another holder's lease has run out, by local observation time.
fn expired(observation: &Observation, now: Instant) -> bool {
    let seconds = u64::try_from(observation.record.duration_seconds).unwrap_or(0);
    let valid_until = observation
        .at
        .checked_add(Duration::from_secs(seconds))
        .unwrap_or(observation.at);
    valid_until <= now
}

/// One round: `Ok(true)` when this replica holds the lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &ElectionConfig,
    observed: &mut Option<Observation>,
) -> Result<bool, RoundError> {
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
            Err(e) => Err(e.into()),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let transitions = spec.lease_transitions.unwrap_or(0);
    let observation = observe(observed, LeaseRecord::of(&spec), Instant::now());
    let next = if holder == config.identity {
        let acquired = spec.acquire_time.map_or(now, |t| t.0);
        held_by(config, acquired, now, transitions)
    } else if holder.is_empty() || expired(observation, Instant::now()) {
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
        Err(e) => Err(e.into()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str, renewed_at_secs: i64) -> LeaseRecord {
        let renewed = Timestamp::from_second(renewed_at_secs).expect("time");
        LeaseRecord {
            holder: holder.into(),
            renew_time: Some(MicroTime(renewed)),
            acquire_time: None,
            transitions: 0,
            duration_seconds: 15,
        }
    }

    /// client-go's rule: expiry runs from when this replica saw the record
    /// change, whatever the holder's clock wrote into renewTime.
    #[test]
    fn expiry_is_judged_by_local_observation_time() {
        let start = Instant::now();
        let mut observed = None;
        // A renewTime far in the past (the holder's clock is behind) is not
        // expired when just observed.
        let first = observe(&mut observed, record("other", 0), start);
        assert!(!expired(first, start + Duration::from_secs(14)));
        assert!(expired(first, start + Duration::from_secs(15)));
        // The same record seen again does not restart the clock.
        let again = observe(
            &mut observed,
            record("other", 0),
            start + Duration::from_secs(10),
        );
        assert_eq!(again.at, start);
        // A renewal (new renewTime, even one in the future) restarts it.
        let renewed = observe(
            &mut observed,
            record("other", 4_000_000_000),
            start + Duration::from_secs(20),
        );
        assert!(!expired(renewed, start + Duration::from_secs(30)));
        assert!(expired(renewed, start + Duration::from_secs(35)));
    }

    #[test]
    fn absurd_durations_never_overflow() {
        let start = Instant::now();
        let mut observed = None;
        let mut huge = record("other", 0);
        huge.duration_seconds = i32::MAX;
        assert!(!expired(observe(&mut observed, huge, start), start));
        let mut negative = record("other", 1);
        negative.duration_seconds = -5;
        assert!(expired(observe(&mut observed, negative, start), start));
    }
}

//! `Ready` conditions on Alerts, Providers and Receivers (DESIGN §3.1,
//! §3.13; Receivers also get `status.webhookPath`), written through
//! the status subresource, only by the leader, and only when they change —
//! so writing status never causes another watch event and rebuild.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde_json::json;

use super::events::EventReporter;
use crate::api::Reason;
use crate::api::{Alert, Decoded, Provider, Receiver, Undecodable};
use crate::source::{Kind, Level, ObjectKey, Problem};
use crate::webhook::table::ReceiverStatus;

pub use crate::api::condition::{READY, RECONCILING, STALLED};

pub struct StatusWriter {
    client: Client,
    leader: Arc<AtomicBool>,
    field_manager: String,
    /// Where a change to `Ready=False` by an error is also recorded as a Warning Event.
    events: Arc<EventReporter>,
    /// What this replica last wrote to each object and the watch has not
    /// shown yet. Builds come faster than watch echoes (with hundreds of
    /// objects, a second build runs before the first one's writes come
    /// back): without this, the same condition was written twice, and the
    /// second write moved `lastTransitionTime`.
    written: Mutex<HashMap<WrittenKey, Written>>,
}

/// An object's kind, namespace and name, and its uid (a re-created object
/// is another one).
type WrittenKey = (String, ObjectKey, Option<String>);

/// A status write: for which generation, what it said, since when.
#[derive(Clone, Debug, PartialEq)]
struct Written {
    generation: Option<i64>,
    status: &'static str,
    reason: String,
    message: String,
    since: Time,
    fields: Vec<(&'static str, Option<String>)>,
    progress: Option<&'static str>,
    /// When it was written: a record the watch never echoes (the object
    /// was deleted meanwhile) is forgotten after [`WRITTEN_KEPT`].
    at: std::time::Instant,
}

/// How long a write is remembered while its echo is awaited.
const WRITTEN_KEPT: std::time::Duration = std::time::Duration::from_secs(300);

/// What a `Ready` condition should say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
    pub message: String,
    /// Not ready because of an error (not merely suspended): worth an Event.
    pub failed: bool,
    /// The kstatus condition set `True` beside `Ready`, if any:
    /// [`STALLED`] for an error that will not fix itself without a change
    /// to the object (kstatus: Failed, so a Flux Kustomization waiting on
    /// it fails at once instead of at its timeout), [`RECONCILING`] while
    /// it waits for something that may come (kstatus: InProgress).
    pub progress: Option<&'static str>,
    /// Record a Normal Event when it becomes ready (Receivers, as Flux).
    pub announce: bool,
    /// The reason of the Warning Event when it turns not ready (see
    /// [`Reason::event_reason`]).
    pub event_reason: Reason,
}

impl StatusWriter {
    pub fn new(
        client: Client,
        leader: Arc<AtomicBool>,
        field_manager: String,
        events: Arc<EventReporter>,
    ) -> Self {
        Self {
            client,
            leader,
            field_manager,
            events,
            written: Mutex::default(),
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<WrittenKey, Written>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings every object's `Ready` condition in line with the problems of
    /// the last build. Does nothing unless this replica leads.
    pub async fn update(
        &self,
        alerts: &[Arc<Alert>],
        providers: &[Arc<Provider>],
        problems: &[Problem],
    ) {
        if !self.leader.load(Ordering::Acquire) {
            return;
        }
        for alert in alerts {
            let wanted = readiness(Kind::Alert, key_of(alert.as_ref()), problems);
            let status = alert.status.as_ref();
            let current = status.map(|s| (&s.conditions, s.observed_generation));
            let handled = status.and_then(|s| s.last_handled_reconcile_at.clone());
            let fields = [reconcile_request(&alert.metadata, handled)];
            self.write::<Alert>(&alert.metadata, current, wanted, &fields)
                .await;
        }
        for provider in providers {
            let wanted = readiness(Kind::Provider, key_of(provider.as_ref()), problems);
            let status = provider.status.as_ref();
            let current = status.map(|s| (&s.conditions, s.observed_generation));
            let handled = status.and_then(|s| s.last_handled_reconcile_at.clone());
            let fields = [reconcile_request(&provider.metadata, handled)];
            self.write::<Provider>(&provider.metadata, current, wanted, &fields)
                .await;
        }
    }

    /// Brings every Receiver's `Ready` condition and `webhookPath` in line
    /// with the last build (a suspended Receiver's status is left alone, as
    /// Flux leaves it). Does nothing unless this replica leads.
    pub async fn update_receivers(&self, receivers: &[Arc<Receiver>], statuses: &[ReceiverStatus]) {
        if !self.leader.load(Ordering::Acquire) {
            return;
        }
        for receiver in receivers {
            let key = key_of(receiver.as_ref());
            let Some(wanted) = statuses.iter().find(|s| s.key == key) else {
                continue;
            };
            if wanted.untouched {
                continue;
            }
            let current = receiver
                .status
                .as_ref()
                .map(|s| (&s.conditions, s.observed_generation));
            let status = receiver.status.as_ref();
            let current_path = status.and_then(|s| s.webhook_path.clone());
            let current_handled = status.and_then(|s| s.last_handled_reconcile_at.clone());
            let readiness = Readiness {
                ready: wanted.ready,
                reason: wanted.reason.into(),
                message: wanted.message.clone(),
                failed: wanted.failed,
                progress: wanted.progress,
                announce: true,
                event_reason: wanted.reason,
            };
            let fields = vec![
                StatusField {
                    name: "webhookPath",
                    current: current_path,
                    wanted: wanted.webhook_path.clone(),
                },
                reconcile_request(&receiver.metadata, current_handled),
            ];
            self.write::<Receiver>(&receiver.metadata, current, readiness, &fields)
                .await;
        }
    }

    /// Objects that do not decode are `Ready=False` (`InvalidSpec`, naming
    /// the field and value), with a Warning Event when that is new; their
    /// other status fields are left as they are. Does nothing unless this
    /// replica leads.
    pub async fn update_undecodable(
        &self,
        objects: &[(Kind, Arc<Undecodable>)],
        receivers: &[Arc<Undecodable>],
    ) {
        if !self.leader.load(Ordering::Acquire) {
            return;
        }
        let all = objects
            .iter()
            .map(|(kind, object)| (Some(*kind), object))
            .chain(receivers.iter().map(|object| (None, object)));
        for (kind, object) in all {
            let current = object
                .status
                .as_ref()
                .map(|s| (&s.conditions, s.observed_generation));
            let wanted = Readiness {
                ready: false,
                failed: true,
                progress: Some(STALLED),
                announce: false,
                reason: Reason::InvalidSpec.into(),
                message: format!("cannot be read: {}", object.error),
                event_reason: Reason::InvalidSpec.event_reason(kind == Some(Kind::Alert)),
            };
            let meta = &object.metadata;
            match kind {
                Some(Kind::Alert) => self.write::<Alert>(meta, current, wanted, &[]).await,
                Some(Kind::Provider) => self.write::<Provider>(meta, current, wanted, &[]).await,
                None => self.write::<Receiver>(meta, current, wanted, &[]).await,
            }
        }
    }

    /// Writes the `Ready` condition (and `fields`) of the object `meta`
    /// names, of kind `K`, unless it already says that.
    async fn write<K>(
        &self,
        meta: &ObjectMeta,
        current: Option<(&Vec<Condition>, Option<i64>)>,
        wanted: Readiness,
        fields: &[StatusField],
    ) where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let generation = meta.generation;
        let existing =
            current.and_then(|(conditions, _)| conditions.iter().find(|c| c.type_ == READY));
        let observed = current.and_then(|(_, observed)| observed);
        let status = if wanted.ready { "True" } else { "False" };
        let progress_now = current.and_then(|(conditions, _)| {
            [STALLED, RECONCILING].into_iter().find(|kind| {
                conditions
                    .iter()
                    .any(|c| c.type_ == *kind && c.status == "True")
            })
        });
        let unchanged = existing.is_some_and(|c| {
            c.status == status && c.reason == wanted.reason && c.message == wanted.message
        }) && observed == generation
            && progress_now == wanted.progress
            && fields.iter().all(|f| f.current == f.wanted);
        let cache_key: WrittenKey = (
            K::kind(&()).into_owned(),
            ObjectKey::new(
                meta.namespace.as_deref().unwrap_or("default"),
                meta.name.as_deref().unwrap_or(""),
            ),
            meta.uid.clone(),
        );
        if unchanged {
            // The watch shows what was written: nothing to remember.
            self.written().remove(&cache_key);
            return;
        }
        let wanted_fields: Vec<(&'static str, Option<String>)> =
            fields.iter().map(|f| (f.name, f.wanted.clone())).collect();
        let pending = self.written().get(&cache_key).cloned();
        if let Some(pending) = &pending
            && pending.generation == generation
            && pending.status == status
            && pending.reason == wanted.reason
            && pending.message == wanted.message
            && pending.fields == wanted_fields
            && pending.progress == wanted.progress
            && pending.at.elapsed() < WRITTEN_KEPT
        {
            // Written already; the watch has not shown it yet.
            return;
        }
        // The transition time moves only when the status flips.
        let since = existing
            .filter(|c| c.status == status)
            .map(|c| c.last_transition_time.clone())
            .or_else(|| {
                pending
                    .as_ref()
                    .filter(|p| p.status == status)
                    .map(|p| p.since.clone())
            })
            .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
        let record = Written {
            generation,
            status,
            reason: wanted.reason.clone(),
            message: wanted.message.clone(),
            since: since.clone(),
            fields: wanted_fields,
            progress: wanted.progress,
            at: std::time::Instant::now(),
        };
        let mut patch = json!({
            "status": {
                "observedGeneration": generation,
                "conditions": [{
                    "type": READY,
                    "status": status,
                    "reason": wanted.reason,
                    "message": wanted.message,
                    "lastTransitionTime": since,
                    "observedGeneration": generation,
                }]
            }
        });
        if let Some(progress) = wanted.progress {
            // The list is replaced as a whole: without this entry, such a
            // condition from before is removed.
            let progress_since = current
                .and_then(|(conditions, _)| {
                    conditions
                        .iter()
                        .find(|c| c.type_ == progress && c.status == "True")
                })
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| since.clone());
            if let Some(conditions) = patch["status"]["conditions"].as_array_mut() {
                conditions.push(json!({
                    "type": progress,
                    "status": "True",
                    "reason": wanted.reason,
                    "message": wanted.message,
                    "lastTransitionTime": progress_since,
                    "observedGeneration": generation,
                }));
            }
        }
        for field in fields {
            // A merge patch removes the field with null.
            patch["status"][field.name] = json!(field.wanted);
        }
        let (namespace, name) = (
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name.as_deref().unwrap_or(""),
        );
        // The answer is decoded leniently: the object may be one herald's
        // types do not accept (and kube logs a body it cannot decode).
        let api: Api<Decoded<K>> = Api::namespaced(self.client.clone(), namespace);
        let params = PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..Default::default()
        };
        match api.patch_status(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                tracing::debug!(kind = K::kind(&()).as_ref(), namespace, name, ready = wanted.ready, reason = %wanted.reason, "status updated");
                let new_failure = existing
                    .is_none_or(|c| c.reason != wanted.reason || c.message != wanted.message)
                    && pending
                        .as_ref()
                        .is_none_or(|p| p.reason != wanted.reason || p.message != wanted.message);
                let mut written = self.written();
                // Now and then, not on every write: thousands of objects
                // are written at start-up.
                if written.len() % 1024 == 1023 {
                    written.retain(|_, w| w.at.elapsed() < WRITTEN_KEPT);
                }
                written.insert(cache_key, record);
                drop(written);
                if wanted.failed && new_failure {
                    let event_reason = wanted.event_reason.as_str();
                    let message = if event_reason == wanted.reason {
                        wanted.message.clone()
                    } else {
                        format!("{}: {}", wanted.reason, wanted.message)
                    };
                    self.events
                        .object_warning(reference::<K>(meta), event_reason, message);
                }
                let became_ready = existing.is_none_or(|c| c.status != "True")
                    && pending.as_ref().is_none_or(|p| p.status != "True");
                if wanted.ready && wanted.announce && became_ready {
                    self.events.object_normal(
                        reference::<K>(meta),
                        &wanted.reason,
                        wanted.message.clone(),
                    );
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(kind = K::kind(&()).as_ref(), namespace, name, error = %e, "cannot update status")
            }
        }
    }
}

/// A status field besides `Ready` (Receivers' `webhookPath` and
/// `lastHandledReconcileAt`): as it is, and as it should be.
struct StatusField {
    name: &'static str,
    current: Option<String>,
    wanted: Option<String>,
}

/// `status.lastHandledReconcileAt`: the object's
/// `reconcile.fluxcd.io/requestedAt` annotation once handled (what `flux
/// reconcile` sets and then waits to see echoed), for every kind herald
/// reconciles.
fn reconcile_request(meta: &ObjectMeta, handled: Option<String>) -> StatusField {
    let requested = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::webhook::annotate::REQUESTED_AT))
        .cloned();
    StatusField {
        name: "lastHandledReconcileAt",
        wanted: requested.or_else(|| handled.clone()),
        current: handled,
    }
}

/// A reference to the object `meta` names, of kind `K`, for an Event.
fn reference<K: Resource<DynamicType = ()>>(meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

fn key_of<K: Resource>(object: &K) -> ObjectKey {
    let meta = object.meta();
    ObjectKey::new(
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or(""),
    )
}

/// The `Ready` condition of one object: the reason of its first error (or
/// note), all their messages; ready when it has neither.
pub fn readiness(kind: Kind, key: ObjectKey, problems: &[Problem]) -> Readiness {
    let target = Some((kind, key));
    let mine: Vec<&Problem> = problems.iter().filter(|p| p.target == target).collect();
    let blocking: Vec<&&Problem> = mine.iter().filter(|p| p.level != Level::Warning).collect();
    let worst = blocking.iter().rev().max_by_key(|p| p.level);
    match worst {
        Some(worst) => Readiness {
            // Switched off on purpose: a suspended object is ready as far as
            // kstatus is concerned (`Ready=True`, reason `Suspended`), so
            // suspending an Alert or Provider never fails a Kustomization
            // that health-checks it (Flux's v1beta3 objects have no status).
            ready: blocking.iter().all(|p| p.reason.is_suspension()),
            failed: worst.level == Level::Error,
            progress: (worst.level == Level::Error && !worst.reason.may_fix_itself())
                .then_some(STALLED),
            announce: false,
            event_reason: worst.reason.event_reason(kind == Kind::Alert),
            reason: worst.reason.into(),
            message: blocking
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        },
        None => {
            let warnings: Vec<&str> = mine.iter().map(|p| p.message.as_str()).collect();
            let base = match kind {
                Kind::Alert => "Alert is ready: matching events are delivered",
                Kind::Provider => "Provider is ready",
            };
            let message = if warnings.is_empty() {
                base.to_owned()
            } else {
                format!("{base} (warning: {})", warnings.join("; "))
            };
            Readiness {
                ready: true,
                failed: false,
                progress: None,
                announce: false,
                reason: Reason::Succeeded.into(),
                message,
                event_reason: Reason::Succeeded,
            }
        }
    }
}

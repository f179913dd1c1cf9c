//! Kubernetes Warning Events (DESIGN §3.9): dispatch failures, template
//! render failures and matchLabels lookup failures on Alerts, and objects
//! turning `Ready=False`. Recorded as Flux's controller records them (a
//! `core/v1` Event, as client-go's recorder writes it): source component
//! and reporting controller `notification-controller` (tools filter on
//! them; `events.k8s.io/v1` would refuse a source), a repeat of the same
//! Event (object, type, reason and message) within [`SERIES_WINDOW`]
//! counted in its `count` rather than recorded again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event as K8sEvent, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use tokio::sync::mpsc;

use crate::api::{Alert, Decoded};
use crate::report::Reporter;
use crate::source::ObjectKey;

/// Warnings waiting to be published; past this, new ones are dropped (they
/// are logged anyway) rather than slowing delivery.
const BACKLOG: usize = 1024;
/// Events' notes are limited to 1 kB by the API.
const MAX_NOTE: usize = 1000;
/// The reporting controller and source component, as Flux's.
pub const COMPONENT: &str = "notification-controller";
/// A repeat within this long is counted in the first Event's series.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// Events remembered for their series at most.
const MAX_SERIES: usize = 4096;

pub struct EventReporter {
    queue: mpsc::Sender<Warning>,
}

/// A warning waiting to be published.
struct Warning {
    about: Subject,
    reason: String,
    message: String,
    /// Normal (a success worth telling, as Flux records one) or Warning.
    normal: bool,
}

enum Subject {
    /// An Alert, looked up in the store for its UID.
    Alert(ObjectKey),
    /// Any object whose reference the caller has.
    Object(ObjectReference),
}

impl EventReporter {
    /// Starts the publishing task. `alerts` supplies the Alerts' UIDs.
    pub fn start(client: Client, alerts: Store<Decoded<Alert>>, instance: String) -> Arc<Self> {
        let (queue, pending) = mpsc::channel::<Warning>(BACKLOG);
        let publisher = Publisher {
            client,
            instance,
            series: HashMap::new(),
        };
        tokio::spawn(publish_all(publisher, alerts, pending));
        Arc::new(Self { queue })
    }

    /// Records a Warning Event about any object (e.g. a Provider that
    /// stopped being ready).
    pub fn object_warning(&self, reference: ObjectReference, reason: &str, message: String) {
        self.enqueue(Warning {
            about: Subject::Object(reference),
            reason: reason.to_owned(),
            message,
            normal: false,
        });
    }

    /// Records a Normal Event about any object (a Receiver ready, as
    /// Flux's controller records it).
    pub fn object_normal(&self, reference: ObjectReference, reason: &str, message: String) {
        self.enqueue(Warning {
            about: Subject::Object(reference),
            reason: reason.to_owned(),
            message,
            normal: true,
        });
    }

    fn enqueue(&self, warning: Warning) {
        if self.queue.try_send(warning).is_err() {
            tracing::debug!("event backlog full: Event dropped");
        }
    }
}

impl Reporter for EventReporter {
    fn alert_warning(&self, alert: &ObjectKey, reason: crate::api::Reason, message: String) {
        self.enqueue(Warning {
            about: Subject::Alert(alert.clone()),
            reason: reason.into(),
            message,
            normal: false,
        });
    }
}

async fn publish_all(
    mut publisher: Publisher,
    alerts: Store<Decoded<Alert>>,
    mut pending: mpsc::Receiver<Warning>,
) {
    while let Some(warning) = pending.recv().await {
        let reference = match warning.about {
            Subject::Object(reference) => reference,
            Subject::Alert(key) => {
                match alerts.get(&ObjectRef::new(&key.name).within(&key.namespace)) {
                    Some(alert) => alert.object_ref(&()),
                    None => continue,
                }
            }
        };
        let type_ = if warning.normal { "Normal" } else { "Warning" };
        let note = truncate(warning.message);
        if let Err(e) = publisher
            .publish(type_, &warning.reason, note, reference.clone())
            .await
        {
            tracing::warn!(object = ?reference.name, error = %e, "cannot record a Kubernetes Event");
        }
    }
}

/// Creates Events and counts repeats.
struct Publisher {
    client: Client,
    instance: String,
    /// Recent Events by what makes a repeat, with when last seen.
    series: HashMap<SeriesKey, (K8sEvent, Instant)>,
}

/// An Event's identity for its series: object, type, reason and message.
#[derive(Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    object: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
    type_: &'static str,
    reason: String,
    note: String,
}

impl Publisher {
    async fn publish(
        &mut self,
        type_: &'static str,
        reason: &str,
        note: String,
        regarding: ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Instant::now();
        self.series
            .retain(|_, (_, seen)| now.duration_since(*seen) < SERIES_WINDOW);
        if self.series.len() >= MAX_SERIES {
            self.series.clear();
        }
        let key = SeriesKey {
            object: (
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ),
            type_,
            reason: reason.to_owned(),
            note: note.clone(),
        };
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let now_stamp = k8s_openapi::jiff::Timestamp::now();
        let event = match self.series.get(&key) {
            Some((first, _)) => {
                let mut event = first.clone();
                event.count = Some(event.count.unwrap_or(1) + 1);
                event.last_timestamp = Some(Time(now_stamp));
                let patch = serde_json::json!({
                    "count": event.count,
                    "lastTimestamp": event.last_timestamp,
                });
                events
                    .patch(
                        event.metadata.name.as_deref().unwrap_or_default(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                event
            }
            None => {
                let name = format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(COMPONENT),
                    now_stamp.as_nanosecond()
                );
                let event = K8sEvent {
                    metadata: ObjectMeta {
                        name: Some(name),
                        namespace: Some(namespace),
                        ..Default::default()
                    },
                    involved_object: regarding,
                    type_: Some(type_.to_owned()),
                    reason: Some(reason.to_owned()),
                    message: Some(note),
                    source: Some(EventSource {
                        component: Some(COMPONENT.to_owned()),
                        host: None,
                    }),
                    first_timestamp: Some(Time(now_stamp)),
                    last_timestamp: Some(Time(now_stamp)),
                    count: Some(1),
                    reporting_component: Some(COMPONENT.to_owned()),
                    reporting_instance: Some(self.instance.clone()),
                    ..Default::default()
                };
                events.create(&PostParams::default(), &event).await?
            }
        };
        self.series.insert(key, (event, now));
        Ok(())
    }
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_NOTE {
        let mut end = MAX_NOTE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

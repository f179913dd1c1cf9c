//! Kubernetes Warning Events (DESIGN §3.9): dispatch failures, template
//! render failures and matchLabels lookup failures on Alerts, and objects
//! turning `Ready=False`, recorded with kube-rs's event recorder (which
//! aggregates repeats into a series).

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter as EventSource};
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
        let recorder = Recorder::new(
            client,
            EventSource {
                controller: "herald".into(),
                instance: Some(instance),
            },
        );
        tokio::spawn(publish_all(recorder, alerts, pending));
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
    recorder: Recorder,
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
        let event = Event {
            type_: if warning.normal {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: warning.reason,
            note: Some(truncate(warning.message)),
            action: "Notify".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(object = ?reference.name, error = %e, "cannot record a Kubernetes Event");
        }
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

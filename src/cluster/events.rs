//! Kubernetes Warning Events on Alerts (DESIGN §3.9): dispatch failures,
//! template render failures and matchLabels lookup failures, recorded with
//! kube-rs's event recorder (which aggregates repeats into a series).

use std::sync::Arc;

use kube::runtime::events::{Event, EventType, Recorder, Reporter as EventSource};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use tokio::sync::mpsc;

use crate::api::Alert;
use crate::report::Reporter;
use crate::source::ObjectKey;

/// Warnings waiting to be published; past this, new ones are dropped (and
/// still logged) rather than slowing delivery.
const BACKLOG: usize = 1024;
/// Events' notes are limited to 1 kB by the API.
const MAX_NOTE: usize = 1000;

pub struct EventReporter {
    queue: mpsc::Sender<(ObjectKey, &'static str, String)>,
}

impl EventReporter {
    /// Starts the publishing task. `alerts` supplies the Alerts' UIDs.
    pub fn start(client: Client, alerts: Store<Alert>, instance: String) -> Arc<Self> {
        let (queue, mut pending) = mpsc::channel::<(ObjectKey, &'static str, String)>(BACKLOG);
        let recorder = Recorder::new(
            client,
            EventSource {
                controller: "herald".into(),
                instance: Some(instance),
            },
        );
        tokio::spawn(async move {
            while let Some((key, reason, message)) = pending.recv().await {
                let Some(alert) = alerts.get(&ObjectRef::new(&key.name).within(&key.namespace))
                else {
                    continue;
                };
                let event = Event {
                    type_: EventType::Warning,
                    reason: reason.into(),
                    note: Some(truncate(message)),
                    action: "Notify".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &alert.object_ref(&())).await {
                    tracing::warn!(alert = %key, error = %e, "cannot record a Kubernetes Event");
                }
            }
        });
        Arc::new(Self { queue })
    }
}

impl Reporter for EventReporter {
    fn alert_warning(&self, alert: &ObjectKey, reason: &'static str, message: String) {
        if self
            .queue
            .try_send((alert.clone(), reason, message))
            .is_err()
        {
            tracing::debug!(%alert, reason, "event backlog full: Event dropped");
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

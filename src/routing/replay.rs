//! The routing side of the spool ([`crate::spool`]): a notification as a
//! record to keep, and the records read back after a restart as
//! notifications again, through the Alerts of the current table.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{Delivery, RoutingTable};
use crate::notification::Notification;
use crate::spool::{Pending, Record, Spool};

impl Delivery {
    /// The record that keeps this notification, accepted at `accepted`.
    pub fn record(&self, accepted: SystemTime) -> Record {
        Record::new(
            &self.alert.key,
            accepted,
            (*self.event).clone(),
            self.metadata.clone(),
        )
    }
}

/// Spooled notifications ready to be queued again.
#[derive(Default)]
pub struct Replay {
    /// Oldest first, each with when it was accepted.
    pub deliveries: Vec<(Delivery, Instant)>,
    /// Records whose Alert this table does not route, kept for the next.
    pub waiting: Option<Pending>,
    /// Records given up: their Alert did not route within max age.
    pub given_up: usize,
}

/// The pending notifications as deliveries through `table`'s Alerts,
/// oldest first, each with the instant it was accepted. A record whose
/// Alert this table does not route (a Secret not read yet, a manifest
/// directory not synced yet, the Alert deleted) is kept for a later table
/// ([`Replay::waiting`]) until it is older than `max_age`; then it is
/// logged, removed from `spool` and counted given up.
pub fn replay(pending: Pending, table: &RoutingTable, spool: &Spool, max_age: Duration) -> Replay {
    let alerts = table.alerts_by_key();
    let now_wall = SystemTime::now();
    let now = Instant::now();
    let mut replay = Replay::default();
    let mut waiting = Vec::new();
    for (id, record) in pending.into_records() {
        let key = record.alert();
        let age = record.age(now_wall);
        let Some(alert) = alerts.get(&key) else {
            if age >= max_age {
                tracing::error!(alert = %key, event = %record.event.object_ref(),
                    "spooled notification given up: its Alert did not route within --max-delivery-age (deleted, suspended, or its Provider not ready)");
                spool.remove(id);
                replay.given_up += 1;
            } else {
                waiting.push((id, record));
            }
            continue;
        };
        let accepted = now.checked_sub(age).unwrap_or(now);
        let delivery = Delivery {
            notification: Notification {
                event: Arc::new(record.event),
                metadata: record.metadata,
                route: alert.route.clone(),
                digest: None,
            },
            alert: alert.clone(),
            spooled: vec![id],
        };
        replay.deliveries.push((delivery, accepted));
    }
    if !waiting.is_empty() {
        replay.waiting = Some(Pending::from(waiting));
    }
    replay
}

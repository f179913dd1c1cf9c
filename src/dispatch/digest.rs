//! Digests (`Alert.spec.digest`, DESIGN §3.14): an Alert's notifications
//! within a window go out as one message.
//!
//! The first notification after a quiet spell is sent at once: the first
//! failure of a deploy is what an operator needs to see now, and a quiet
//! Alert should not become a slower one. It opens a window; notifications
//! arriving while it is open are held, and when it ends they go out as one
//! digest (at most `maxItems` listed, the rest counted). A window that held
//! something is followed by another, so a storm yields one message per
//! window; one that held nothing closes, and the next notification is sent
//! at once again.
//!
//! Held notifications are accepted (the event got its 202) and stay in the
//! spool, when there is one, until the digest that carries them finishes;
//! after a crash they are delivered one by one. At shutdown, open windows
//! are sent at once so the drain delivers them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::api::FluxEvent;
use crate::duration::after;
use crate::notification::{Digest, DigestLine, Notification};
use crate::routing::{CompiledAlert, Delivery, DigestPolicy};
use crate::source::ObjectKey;

use super::Dispatcher;
use super::outcome::{GivenUp, Outcome};

/// The open windows, one per Alert.
#[derive(Default)]
pub(super) struct Digests {
    windows: Mutex<HashMap<ObjectKey, Window>>,
}

/// What one Alert's open window holds.
#[derive(Default)]
struct Window {
    /// Held notifications, oldest first, at most `maxItems`.
    held: Vec<Delivery>,
    /// Held beyond `maxItems`: only counted.
    more: usize,
    /// Spool records of those beyond `maxItems`.
    more_spooled: Vec<u64>,
}

/// What [`Digests::offer`] did with a notification.
pub(super) enum Offer {
    /// Send it now: no digest, or the first of a window (`opened` says
    /// whether a window was opened and needs its timer).
    Send {
        delivery: Delivery,
        opened: Option<DigestPolicy>,
    },
    /// Held for the window's digest.
    Held,
}

impl Digests {
    fn windows(&self) -> MutexGuard<'_, HashMap<ObjectKey, Window>> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds the notification when its Alert's window is open.
    pub(super) fn offer(&self, delivery: Delivery) -> Offer {
        let policy = delivery.alert.digest.filter(|_| delivery.digest.is_none());
        let Some(policy) = policy else {
            return Offer::Send {
                delivery,
                opened: None,
            };
        };
        let mut windows = self.windows();
        let Some(window) = windows.get_mut(&delivery.alert.key) else {
            windows.insert(delivery.alert.key.clone(), Window::default());
            return Offer::Send {
                delivery,
                opened: Some(policy),
            };
        };
        if window.held.len() < policy.max_items {
            window.held.push(delivery);
        } else {
            window.more += 1;
            window.more_spooled.extend(&delivery.spooled);
        }
        Offer::Held
    }

    /// Ends `alert`'s window: its digest, if it held anything (the window
    /// then stays open for another round), else `None` (the window is
    /// closed).
    pub(super) fn close(&self, alert: &ObjectKey) -> Option<Delivery> {
        let mut windows = self.windows();
        let window = windows.get_mut(alert)?;
        if window.held.is_empty() {
            windows.remove(alert);
            return None;
        }
        let window = std::mem::take(window);
        drop(windows);
        Some(window.digest())
    }

    /// Ends every window now (at shutdown): their digests.
    pub(super) fn close_all(&self) -> Vec<Delivery> {
        let windows = std::mem::take(&mut *self.windows());
        windows
            .into_values()
            .filter(|w| !w.held.is_empty())
            .map(Window::digest)
            .collect()
    }
}

impl Window {
    /// One notification standing for everything held: about the first
    /// object, at the highest severity held, its message the list; sent
    /// through the Alert as the latest held notification saw it.
    fn digest(self) -> Delivery {
        let latest: Arc<CompiledAlert> = self
            .held
            .last()
            .map(|d| d.alert.clone())
            .expect("a digest holds at least one notification");
        let window = latest
            .digest
            .map_or_else(String::new, |p| format_window(p.window));
        let lines: Vec<DigestLine> = self
            .held
            .iter()
            .map(|d| DigestLine {
                object: d.object_name(),
                severity: d.event.severity,
                message: d.event.message.clone(),
            })
            .collect();
        let digest = Digest {
            total: lines.len() + self.more,
            lines,
            window,
        };
        let first = &self.held[0].event;
        let event = FluxEvent {
            involved_object: first.involved_object.clone(),
            related_object: None,
            severity: self
                .held
                .iter()
                .map(|d| d.event.severity)
                .max()
                .unwrap_or(first.severity),
            timestamp: self.held[self.held.len() - 1].event.timestamp.clone(),
            message: digest.text(),
            reason: "Digest".to_owned(),
            action: String::new(),
            metadata: Default::default(),
            reporting_controller: first.reporting_controller.clone(),
            reporting_instance: first.reporting_instance.clone(),
        };
        let mut spooled: Vec<u64> = self.held.iter().flat_map(|d| d.spooled.clone()).collect();
        spooled.extend(self.more_spooled);
        Delivery {
            notification: Notification {
                event: Arc::new(event),
                metadata: Default::default(),
                route: latest.route.clone(),
                digest: Some(Arc::new(digest)),
            },
            alert: latest,
            spooled,
        }
    }
}

/// A window as a Go duration (`2m`, `1h30m`, `90s`).
fn format_window(window: std::time::Duration) -> String {
    let total = window.as_secs();
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || text.is_empty() {
        text.push_str(&format!("{seconds}s"));
    }
    text
}

/// The dispatcher's side of digests: holding, and each window's timer.
impl Dispatcher {
    /// Passes each notification through its Alert's digest window: those
    /// to send now, and how many were held. A window opened here gets its
    /// timer.
    pub(super) fn hold_for_digests(&self, notifications: Vec<Delivery>) -> (Vec<Delivery>, usize) {
        let inner = &self.inner;
        let mut send = Vec::with_capacity(notifications.len());
        let mut held = 0;
        for notification in notifications {
            let kind = notification
                .alert
                .digest
                .is_some()
                .then(|| notification.alert.destination.kind.as_str());
            match inner.digests.offer(notification) {
                Offer::Send { delivery, opened } => {
                    if let Some(policy) = opened {
                        tokio::spawn(
                            self.clone()
                                .digest_rounds(delivery.alert.key.clone(), policy),
                        );
                    }
                    send.push(delivery);
                }
                Offer::Held => {
                    held += 1;
                    inner
                        .metrics
                        .notification(kind.unwrap_or_default(), "held_for_digest");
                }
            }
        }
        (send, held)
    }

    /// An Alert's digest windows, one after another while they hold
    /// something; each digest is queued when its window ends (its max age
    /// counts from then).
    async fn digest_rounds(self, alert: crate::source::ObjectKey, policy: DigestPolicy) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(policy.window) => {}
                () = self.inner.abandon.cancelled() => return,
            }
            let Some(digest) = self.inner.digests.close(&alert) else {
                return;
            };
            self.queue_digest(digest);
        }
    }

    /// Queues a digest whose window ended. When the global bound has no
    /// room for it (and its destination holds the most, so nothing makes
    /// room), it stays held — its notifications still spooled — and is
    /// queued as soon as there is room; it is given up only past
    /// `--max-delivery-age`, naming the bound that was full.
    pub(super) fn queue_digest(&self, digest: Delivery) {
        tracing::debug!(alert = %digest.alert.key, notifications = digest.digest.as_ref().map_or(0, |d| d.total),
            "digest window ended: sending its digest");
        let accepted = Instant::now();
        if let Err(back) = self.try_enqueue_accepted(vec![digest], accepted) {
            tokio::spawn(self.clone().queue_when_room(back, accepted));
        }
    }

    async fn queue_when_room(self, mut waiting: Vec<Delivery>, accepted: Instant) {
        let deadline = after(accepted, self.inner.config.max_delivery_age);
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = self.inner.abandon.cancelled() => {
                    waiting.into_iter().for_each(|d| self.inner.finish(&d, Outcome::Abandoned));
                    return;
                }
            }
            match self.try_enqueue_accepted(waiting, accepted) {
                Ok(_) => return,
                Err(back) if Instant::now() >= deadline => {
                    for digest in &back {
                        self.inner
                            .finish(digest, Outcome::GivenUp(GivenUp::GlobalFullTooLong));
                    }
                    return;
                }
                Err(back) => waiting = back,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_read_as_go_durations() {
        use std::time::Duration;
        assert_eq!(format_window(Duration::from_secs(120)), "2m");
        assert_eq!(format_window(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_window(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_window(Duration::from_secs(1)), "1s");
    }
}

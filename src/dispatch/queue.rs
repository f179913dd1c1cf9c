//! Queues and bounds: one FIFO queue per destination, the global bound on
//! everything accepted and not finished, each destination's own bound, and
//! the fair sharing of the global one (DESIGN §3.9).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::duration::after;
use crate::routing::Delivery;

use super::outcome::{GivenUp, Outcome};
use super::{Dispatcher, Enqueued, Inner};

/// What to do with a notification whose destination's own queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LaneFull {
    /// Give it up at once (logged, counted, Warning Event): a new event's.
    GiveUp,
    /// Hand it back to be tried again: one read back from the spool.
    HandBack,
}

/// One destination's queue, served by one worker.
pub(super) struct Lane {
    /// Waiting notifications, oldest first (so also soonest to expire).
    jobs: Mutex<VecDeque<Job>>,
    /// This destination's share: accepted and not finished.
    pub(super) permits: Arc<Semaphore>,
    /// Wakes the worker when a notification is queued.
    pub(super) wake: Notify,
}

impl Lane {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            jobs: Mutex::new(VecDeque::new()),
            permits: Arc::new(Semaphore::new(capacity.clamp(1, Semaphore::MAX_PERMITS))),
            wake: Notify::new(),
        }
    }

    pub(super) fn jobs(&self) -> MutexGuard<'_, VecDeque<Job>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn push(&self, job: Job) {
        self.jobs().push_back(job);
        self.wake.notify_one();
    }

    pub(super) fn pop(&self) -> Option<Job> {
        let mut jobs = self.jobs();
        let job = jobs.pop_front();
        // Most destinations hold one notification at a time: give an
        // emptied buffer back rather than keep it for each of thousands
        // of idle destinations.
        if jobs.is_empty() && jobs.capacity() > 0 {
            *jobs = VecDeque::new();
        }
        job
    }

    pub(super) fn is_empty(&self) -> bool {
        self.jobs().is_empty()
    }

    /// When the oldest queued notification passes its max age.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.jobs().front().map(|job| job.deadline)
    }

    /// Takes the queued notifications past their max age. They were queued
    /// in the order accepted, so they are the front of the queue.
    pub(super) fn take_expired(&self, now: Instant) -> Vec<Job> {
        let mut jobs = self.jobs();
        let mut expired = Vec::new();
        while jobs.front().is_some_and(|job| job.expired(now)) {
            expired.extend(jobs.pop_front());
        }
        expired
    }
}

pub(super) struct Job {
    pub(super) notification: Delivery,
    pub(super) accepted: Instant,
    /// `accepted` + `--max-delivery-age`.
    pub(super) deadline: Instant,
    _permit: Option<OwnedSemaphorePermit>,
    _lane_permit: OwnedSemaphorePermit,
}

impl Job {
    pub(super) fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    pub(super) fn remaining(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }
}

impl Dispatcher {
    pub(super) fn enqueue(
        &self,
        notifications: Vec<Delivery>,
        accepted: Instant,
        lane_full: LaneFull,
    ) -> Result<Enqueued, Vec<Delivery>> {
        if notifications.is_empty() {
            return Ok(Enqueued::default());
        }
        let inner = &self.inner;
        // Nothing is held for a digest when the event will be refused.
        if inner.permits.available_permits() < notifications.len()
            && !self.make_room(&notifications)
        {
            return Err(notifications);
        }
        let (notifications, held) = self.hold_for_digests(notifications);
        if notifications.is_empty() {
            return Ok(Enqueued {
                held,
                ..Enqueued::default()
            });
        }
        let mut lanes = inner.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let mut created = Vec::new();
        let mut queued = Vec::with_capacity(notifications.len());
        let mut refused = Vec::new();
        for notification in notifications {
            let queue = notification.alert.destination.queue;
            let lane = lanes
                .entry(queue)
                .or_insert_with(|| {
                    created.push(queue);
                    Arc::new(Lane::new(inner.config.destination_queue_capacity))
                })
                .clone();
            match lane.permits.clone().try_acquire_owned() {
                Ok(permit) => queued.push((notification, lane, permit)),
                Err(_) => refused.push(notification),
            }
        }
        if lane_full == LaneFull::HandBack && !refused.is_empty() {
            for queue in created {
                lanes.remove(&queue);
            }
            let back = queued.into_iter().map(|(n, _, _)| n).chain(refused);
            return Err(back.collect());
        }
        let global = match u32::try_from(queued.len()) {
            Ok(0) => None,
            Ok(count) => inner.permits.clone().try_acquire_many_owned(count).ok(),
            Err(_) => None,
        };
        if global.is_none() && !queued.is_empty() {
            for queue in created {
                lanes.remove(&queue);
            }
            let back = queued.into_iter().map(|(n, _, _)| n).chain(refused);
            return Err(back.collect());
        }
        let mut global = global;
        let deadline = after(accepted, inner.config.max_delivery_age);
        let enqueued = Enqueued {
            queued: queued.len(),
            refused: refused.len(),
            held,
        };
        for (notification, lane, lane_permit) in queued {
            // `global` holds one permit per queued notification.
            let permit = global.as_mut().and_then(|p| p.split(1));
            lane.push(Job {
                notification,
                accepted,
                deadline,
                _permit: permit,
                _lane_permit: lane_permit,
            });
        }
        for queue in created {
            let Some(lane) = lanes.get(&queue).cloned() else {
                continue;
            };
            if lane.is_empty() {
                lanes.remove(&queue);
            } else {
                inner.start_worker(queue, lane);
            }
        }
        drop(lanes);
        for notification in refused {
            inner.finish(&notification, Outcome::GivenUp(GivenUp::DestinationFull));
        }
        inner.update_depth();
        Ok(enqueued)
    }

    /// Shares the global bound fairly (DESIGN §3.9): when it cannot take
    /// `notifications`, the destination holding the most gives up its
    /// oldest queued notification, one at a time, as long as it holds more
    /// than the destinations asking — so a dead destination that filled
    /// the bound makes room for a healthy one instead of getting its events
    /// refused. Whether there is room now.
    pub(super) fn make_room(&self, notifications: &[Delivery]) -> bool {
        let inner = &self.inner;
        let wanted = notifications.len();
        let asking: Vec<u64> = notifications
            .iter()
            .map(|n| n.alert.destination.queue)
            .collect();
        let mut evicted = Vec::new();
        {
            let lanes = inner.lanes.lock().unwrap_or_else(|e| e.into_inner());
            let held = |queue: &u64| lanes.get(queue).map_or(0, |lane| lane.jobs().len());
            // After taking its places, the longest asking queue holds this many.
            let asking_holds = asking.iter().map(held).max().unwrap_or(0) + wanted;
            let short = wanted.saturating_sub(inner.permits.available_permits());
            for _ in 0..short {
                let longest = lanes
                    .iter()
                    .filter(|(queue, _)| !asking.contains(queue))
                    .map(|(_, lane)| (lane.jobs().len(), lane))
                    .max_by_key(|(held, _)| *held);
                match longest {
                    Some((held, lane)) if held > asking_holds => {
                        evicted.extend(lane.jobs().pop_front());
                    }
                    _ => break,
                }
            }
        }
        for job in evicted {
            // Dropping the job frees its places.
            inner.finish(&job.notification, Outcome::GivenUp(GivenUp::Evicted));
        }
        inner.update_depth();
        inner.permits.available_permits() >= wanted
    }
}

impl Inner {
    pub(super) fn pending(&self) -> usize {
        let capacity = self.config.queue_capacity.min(Semaphore::MAX_PERMITS);
        capacity.saturating_sub(self.permits.available_permits())
    }

    pub(super) fn update_depth(&self) {
        self.metrics
            .queue_depth
            .set(i64::try_from(self.pending()).unwrap_or(i64::MAX));
    }

    /// Forgets a finished notification's spool record.
    pub(super) fn unspool(&self, n: &Delivery) {
        if let Some(spool) = &self.spool {
            n.spooled.iter().for_each(|id| spool.remove(*id));
        }
    }
}

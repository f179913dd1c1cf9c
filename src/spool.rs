//! The durable spool (`--spool-dir`, DESIGN §3.14): every accepted
//! notification is written to disk before the event is answered 202, and
//! forgotten when it finishes (delivered, failed or given up). After a
//! crash, an OOM kill or a restart, what was still pending is read back in
//! the order it was accepted and delivered.
//!
//! The store is [`redb`]: embedded, crash-safe (copy-on-write B-trees,
//! checksummed commits), no file format of herald's own. One thread owns
//! the database and commits in groups: every append and removal waiting
//! when a commit starts goes into it, so concurrent events share one
//! `fsync` instead of queueing for one each.
//!
//! A record is the notification as routed (the cleaned event, the merged
//! metadata, the Alert's key); it is delivered through the Alert as it is
//! when read back (its Provider and template then), and not matched again:
//! it was accepted once already.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::api::FluxEvent;
use crate::notification::Notification;
use crate::routing::{Delivery, RoutingTable};
use crate::source::ObjectKey;

/// Record id (in acceptance order) → JSON of a [`Record`].
const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("pending");
/// The database file inside `--spool-dir`.
pub const FILE_NAME: &str = "herald-spool.redb";
/// Most operations one commit takes.
const MAX_BATCH: usize = 4096;

/// Why the spool cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("--spool-dir {dir}: {what}")]
    Open { dir: PathBuf, what: String },
    #[error("cannot write to the spool: {0}")]
    Write(String),
}

/// One accepted notification, as kept on disk.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    /// `namespace/name` of the Alert it matched.
    pub alert_namespace: String,
    pub alert_name: String,
    /// When the event was accepted: its max age counts from then.
    pub accepted_unix_ms: u64,
    pub event: FluxEvent,
    pub metadata: BTreeMap<String, String>,
}

impl Record {
    /// The record of a notification accepted now.
    pub fn of(delivery: &Delivery, accepted: SystemTime) -> Self {
        Self {
            alert_namespace: delivery.alert.key.namespace.clone(),
            alert_name: delivery.alert.key.name.clone(),
            accepted_unix_ms: unix_ms(accepted),
            event: (*delivery.event).clone(),
            metadata: delivery.metadata.clone(),
        }
    }

    fn alert(&self) -> ObjectKey {
        ObjectKey::new(self.alert_namespace.as_str(), self.alert_name.as_str())
    }
}

enum Op {
    Append(Vec<Vec<u8>>, oneshot::Sender<Result<Vec<u64>, String>>),
    Remove(u64),
}

/// A handle on the spool; clones share the writer.
pub struct Spool {
    ops: mpsc::Sender<Op>,
}

/// What was pending in the spool when it was opened, oldest first.
pub struct Pending(Vec<(u64, Record)>);

impl Spool {
    /// Opens (or creates) the spool in `dir` and reads what is pending.
    /// A record that cannot be read is logged and dropped, never fatal.
    pub fn open(dir: &Path) -> Result<(Arc<Self>, Pending), SpoolError> {
        let failed = |what: String| SpoolError::Open {
            dir: dir.to_owned(),
            what,
        };
        std::fs::create_dir_all(dir).map_err(|e| failed(format!("cannot create it: {e}")))?;
        let db = Database::create(dir.join(FILE_NAME))
            .map_err(|e| failed(format!("cannot open {FILE_NAME}: {e}")))?;
        let (pending, unreadable) = read_pending(&db).map_err(failed)?;
        let next = pending
            .last()
            .map_or(1, |(id, _)| id + 1)
            .max(unreadable.iter().max().map_or(1, |id| id + 1));
        let (ops, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("herald-spool".to_owned())
            .spawn(move || write_loop(&db, next, &queue))
            .map_err(|e| failed(format!("cannot start its writer: {e}")))?;
        let spool = Arc::new(Self { ops });
        for id in unreadable {
            spool.remove(id);
        }
        Ok((spool, Pending(pending)))
    }

    /// Writes the records durably; their ids, in order, once committed.
    pub async fn append(&self, records: &[Record]) -> Result<Vec<u64>, SpoolError> {
        let encoded = records
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SpoolError::Write(format!("cannot encode a record: {e}")))?;
        let (done, committed) = oneshot::channel();
        self.ops
            .send(Op::Append(encoded, done))
            .map_err(|_| SpoolError::Write("its writer has stopped".to_owned()))?;
        committed
            .await
            .map_err(|_| SpoolError::Write("its writer has stopped".to_owned()))?
            .map_err(SpoolError::Write)
    }

    /// Waits until every operation sent so far is committed (at shutdown:
    /// the removals of what finished while draining).
    pub async fn flush(&self) {
        if let Err(error) = self.append(&[]).await {
            tracing::error!(%error, "spool: last removals not written; those notifications may be sent again after the restart");
        }
    }

    /// Forgets a finished notification (in the next commit).
    pub fn remove(&self, id: u64) {
        let _ = self.ops.send(Op::Remove(id));
    }
}

impl Pending {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pending notifications as deliveries through `table`'s Alerts,
    /// oldest first, each with the instant it was accepted. Records whose
    /// Alert is gone (deleted, suspended, its Provider not ready) are
    /// logged, removed from `spool` and returned apart.
    pub fn deliveries(self, table: &RoutingTable, spool: &Spool) -> Replay {
        let alerts = table.alerts_by_key();
        let now_wall = SystemTime::now();
        let now = Instant::now();
        let mut replay = Replay::default();
        for (id, record) in self.0 {
            let key = record.alert();
            let Some(alert) = alerts.get(&key) else {
                tracing::error!(alert = %key, event = %record.event.object_ref(),
                    "spooled notification not delivered: its Alert no longer routes (deleted, suspended or its Provider not ready)");
                spool.remove(id);
                replay.orphaned += 1;
                continue;
            };
            let age = now_wall
                .duration_since(UNIX_EPOCH + Duration::from_millis(record.accepted_unix_ms))
                .unwrap_or_default();
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
        replay
    }
}

/// Spooled notifications ready to be queued again.
#[derive(Default)]
pub struct Replay {
    /// Oldest first, each with when it was accepted.
    pub deliveries: Vec<(Delivery, Instant)>,
    /// Records dropped because their Alert is gone.
    pub orphaned: usize,
}

/// Records read back, oldest first, and the ids of those unreadable.
type ReadBack = (Vec<(u64, Record)>, Vec<u64>);

/// Reads every record, oldest first; ids of unreadable ones apart.
fn read_pending(db: &Database) -> Result<ReadBack, String> {
    let read = db
        .begin_read()
        .map_err(|e| format!("cannot read it: {e}"))?;
    let table = match read.open_table(PENDING) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let mut pending = Vec::new();
    let mut unreadable = Vec::new();
    for entry in table.iter().map_err(|e| format!("cannot read it: {e}"))? {
        let (id, bytes) = entry.map_err(|e| format!("cannot read it: {e}"))?;
        let id = id.value();
        match serde_json::from_slice::<Record>(bytes.value()) {
            Ok(record) => pending.push((id, record)),
            Err(e) => {
                tracing::error!(record = id, error = %e, "spool record unreadable: dropped");
                unreadable.push(id);
            }
        }
    }
    Ok((pending, unreadable))
}

/// The writer: commits every operation waiting, in groups, until every
/// handle is gone.
fn write_loop(db: &Database, mut next: u64, queue: &mpsc::Receiver<Op>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut ids = Vec::new();
        let committed = commit(db, &batch, &mut next, &mut ids);
        if let Err(error) = &committed {
            tracing::error!(%error, operations = batch.len(), "spool commit failed");
        }
        let mut ids = ids.into_iter();
        for op in batch {
            if let Op::Append(records, done) = op {
                let result = match &committed {
                    Ok(()) => Ok(ids.by_ref().take(records.len()).collect()),
                    Err(e) => Err(e.clone()),
                };
                let _ = done.send(result);
            }
        }
    }
}

/// One transaction: the batch's appends (given ids from `next`, pushed to
/// `ids` in order) and removals.
fn commit(db: &Database, batch: &[Op], next: &mut u64, ids: &mut Vec<u64>) -> Result<(), String> {
    let write = db.begin_write().map_err(|e| e.to_string())?;
    let start = *next;
    {
        let mut table = write.open_table(PENDING).map_err(|e| e.to_string())?;
        for op in batch {
            match op {
                Op::Append(records, _) => {
                    for record in records {
                        table
                            .insert(*next, record.as_slice())
                            .map_err(|e| e.to_string())?;
                        ids.push(*next);
                        *next += 1;
                    }
                }
                Op::Remove(id) => {
                    table.remove(*id).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    write.commit().map_err(|e| {
        *next = start;
        ids.clear();
        e.to_string()
    })
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(message: &str) -> Record {
        Record {
            alert_namespace: "flux-system".to_owned(),
            alert_name: "alert".to_owned(),
            accepted_unix_ms: unix_ms(SystemTime::now()),
            event: crate::api::event::sample(
                "Kustomization",
                "app",
                crate::api::Severity::Info,
                message,
                &[],
            ),
            metadata: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn records_survive_reopening_in_order_until_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, pending) = Spool::open(dir.path()).expect("open");
        assert!(pending.is_empty());
        let first = spool
            .append(&[record("one"), record("two")])
            .await
            .expect("append");
        let second = spool.append(&[record("three")]).await.expect("append");
        assert_eq!(first.len(), 2);
        assert!(
            first[0] < first[1] && first[1] < second[0],
            "{first:?} {second:?}"
        );
        spool.remove(first[0]);
        // A durable append after the removal proves the removal committed.
        let fourth = spool.append(&[record("four")]).await.expect("append");
        drop(spool);
        // The writer thread ends when the last handle goes; wait for it to
        // release the database.
        let reopened = (0..100).find_map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            Spool::open(dir.path()).ok()
        });
        let (_spool, pending) = reopened.expect("reopen");
        let messages: Vec<(u64, String)> = pending
            .0
            .iter()
            .map(|(id, r)| (*id, r.event.message.clone()))
            .collect();
        assert_eq!(
            messages,
            [
                (first[1], "two".to_owned()),
                (second[0], "three".to_owned()),
                (fourth[0], "four".to_owned())
            ]
        );
    }

    #[test]
    fn an_unusable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").expect("write");
        let Err(error) = Spool::open(&file) else {
            panic!("a file is not a spool directory");
        };
        let text = error.to_string();
        assert!(text.starts_with("--spool-dir "), "{text}");
        assert!(text.contains("cannot create it"), "{text}");
    }
}

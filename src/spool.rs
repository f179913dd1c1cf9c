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
//! it was accepted once already ([`crate::routing::replay`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::api::FluxEvent;
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
    /// The record of a notification to `alert`, accepted at `accepted`.
    pub fn new(
        alert: &ObjectKey,
        accepted: SystemTime,
        event: FluxEvent,
        metadata: BTreeMap<String, String>,
    ) -> Self {
        Self {
            alert_namespace: alert.namespace.clone(),
            alert_name: alert.name.clone(),
            accepted_unix_ms: unix_ms(accepted),
            event,
            metadata,
        }
    }

    /// The Alert it matched.
    pub fn alert(&self) -> ObjectKey {
        ObjectKey::new(self.alert_namespace.as_str(), self.alert_name.as_str())
    }

    /// How long ago it was accepted, by the wall clock at `now`.
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(UNIX_EPOCH + Duration::from_millis(self.accepted_unix_ms))
            .unwrap_or_default()
    }
}

enum Op {
    Append(Vec<Vec<u8>>, oneshot::Sender<Result<Vec<u64>, String>>),
    Remove(u64),
}

/// A handle on the spool; clones share the writer.
pub struct Spool {
    ops: mpsc::Sender<Op>,
    health: Arc<Health>,
    /// The damaged file set aside when this spool was opened, if one was.
    set_aside: Option<SetAside>,
}

/// Whether the spool can make events durable now, shared by the writer
/// (which finds out) and readiness and metrics (which tell).
#[derive(Default)]
pub struct Health {
    unwritable: std::sync::atomic::AtomicBool,
    /// `herald_spool_writable`, once the metrics exist.
    gauge: std::sync::OnceLock<prometheus_client::metrics::gauge::Gauge>,
}

impl Health {
    pub fn writable(&self) -> bool {
        !self.unwritable.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records a transition, with one log line and the gauge; nothing when
    /// the state is unchanged.
    fn set_writable(&self, writable: bool, error: Option<&str>) {
        let was = self
            .unwritable
            .swap(!writable, std::sync::atomic::Ordering::AcqRel);
        if let Some(gauge) = self.gauge.get() {
            gauge.set(i64::from(writable));
        }
        match (was, writable) {
            (false, false) => tracing::error!(
                error = error.unwrap_or_default(),
                "spool: cannot write (a full disk?): not ready, and events are answered 503 with Retry-After until it can; retrying every second"
            ),
            (true, true) => tracing::info!("spool: writable again: ready, events are accepted"),
            _ => {}
        }
    }
}

/// What was pending in the spool when it was opened, oldest first.
pub struct Pending(Vec<(u64, Record)>);

/// A damaged spool file set aside at start-up: its new name and how many
/// records could be read from it (those are kept).
#[derive(Debug)]
pub struct SetAside {
    pub path: PathBuf,
    pub records_read: usize,
}

/// Why a spool file could not be opened.
enum OpenFailure {
    /// Another process holds it, or the file cannot be reached: refused.
    Refused(String),
    /// Its contents are damaged: set aside.
    Damaged(String),
}

impl Spool {
    /// Opens (or creates) the spool in `dir` and reads what is pending.
    /// A record that cannot be read is logged and dropped, never fatal. A
    /// damaged file is set aside (renamed with a timestamp, kept for
    /// inspection) and a fresh one started, keeping the records that could
    /// be read; a file another herald holds is refused.
    pub fn open(dir: &Path) -> Result<(Arc<Self>, Pending), SpoolError> {
        let failed = |what: String| SpoolError::Open {
            dir: dir.to_owned(),
            what,
        };
        std::fs::create_dir_all(dir).map_err(|e| failed(format!("cannot create it: {e}")))?;
        let path = dir.join(FILE_NAME);
        let (db, pending, unreadable, set_aside) = match open_file(&path) {
            Ok((
                db,
                ReadBack {
                    pending,
                    unreadable,
                    damage: None,
                },
            )) => (db, pending, unreadable, None),
            Ok((
                db,
                ReadBack {
                    pending,
                    damage: Some(damage),
                    ..
                },
            )) => {
                drop(db);
                let set_aside = set_aside(&path, &damage, pending.len()).map_err(failed)?;
                let db = fresh(&path, &pending).map_err(failed)?;
                (db, pending, Vec::new(), Some(set_aside))
            }
            Err(OpenFailure::Refused(what)) => return Err(failed(what)),
            Err(OpenFailure::Damaged(damage)) => {
                let set_aside = set_aside(&path, &damage, 0).map_err(failed)?;
                let db = fresh(&path, &[]).map_err(failed)?;
                (db, Vec::new(), Vec::new(), Some(set_aside))
            }
        };
        let next = pending
            .last()
            .map_or(1, |(id, _)| id + 1)
            .max(unreadable.iter().max().map_or(1, |id| id + 1));
        let (ops, queue) = mpsc::channel();
        let health = Arc::new(Health::default());
        let mut writer = Writer {
            path,
            db: Some(db),
            next,
            failed_removals: Vec::new(),
            health: health.clone(),
            last_compaction: None,
        };
        std::thread::Builder::new()
            .name("herald-spool".to_owned())
            .spawn(move || writer.run(&queue))
            .map_err(|e| failed(format!("cannot start its writer: {e}")))?;
        let spool = Arc::new(Self {
            ops,
            health,
            set_aside,
        });
        for id in unreadable {
            spool.remove(id);
        }
        Ok((spool, Pending(pending)))
    }

    /// The damaged file set aside when this spool was opened, if one was.
    pub fn set_aside(&self) -> Option<&SetAside> {
        self.set_aside.as_ref()
    }

    /// Whether events can be made durable now (readiness says so).
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Reports the spool's state in `gauge` (`herald_spool_writable`).
    pub fn attach_gauge(&self, gauge: prometheus_client::metrics::gauge::Gauge) {
        gauge.set(i64::from(self.health.writable()));
        let _ = self.health.gauge.set(gauge);
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

    /// The records, oldest first, with their ids.
    pub fn into_records(self) -> Vec<(u64, Record)> {
        self.0
    }
}

impl From<Vec<(u64, Record)>> for Pending {
    fn from(records: Vec<(u64, Record)>) -> Self {
        Self(records)
    }
}

/// What was read back from a spool file.
struct ReadBack {
    /// Records read, oldest first.
    pending: Vec<(u64, Record)>,
    /// Ids of records whose contents are not a record.
    unreadable: Vec<u64>,
    /// Why reading stopped before the end, when the file is damaged.
    damage: Option<String>,
}

/// Opens the file and reads every record it holds.
fn open_file(path: &Path) -> Result<(Database, ReadBack), OpenFailure> {
    let db = Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => OpenFailure::Refused(format!(
            "cannot open {FILE_NAME}: another herald has it open"
        )),
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if matches!(
                io.kind(),
                std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::ReadOnlyFilesystem
                    | std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::IsADirectory
            ) =>
        {
            OpenFailure::Refused(format!("cannot open {FILE_NAME}: {io}"))
        }
        other => OpenFailure::Damaged(other.to_string()),
    })?;
    let read = read_pending(&db);
    Ok((db, read))
}

/// Renames a damaged spool file aside, keeping it for inspection.
fn set_aside(path: &Path, damage: &str, records_read: usize) -> Result<SetAside, String> {
    let stamp = unix_ms(SystemTime::now());
    let aside = path.with_file_name(format!("{FILE_NAME}.damaged-{stamp}"));
    std::fs::rename(path, &aside)
        .map_err(|e| format!("{FILE_NAME} is damaged ({damage}) and cannot be set aside: {e}"))?;
    tracing::error!(
        file = %aside.display(),
        records_read,
        damage,
        "spool: the spool file is damaged: set aside for inspection, starting a fresh one with the records that could be read"
    );
    Ok(SetAside {
        path: aside,
        records_read,
    })
}

/// A new spool file holding `records` (read from a damaged one), under
/// their old ids.
fn fresh(path: &Path, records: &[(u64, Record)]) -> Result<Database, String> {
    let db = Database::create(path).map_err(|e| format!("cannot create {FILE_NAME}: {e}"))?;
    let write = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut table = write.open_table(PENDING).map_err(|e| e.to_string())?;
        for (id, record) in records {
            let bytes = serde_json::to_vec(record).map_err(|e| e.to_string())?;
            table
                .insert(*id, bytes.as_slice())
                .map_err(|e| e.to_string())?;
        }
    }
    write.commit().map_err(|e| e.to_string())?;
    Ok(db)
}

/// Reads every record, oldest first; ids of unreadable ones apart. Reading
/// stops at the first damaged page, keeping what came before.
fn read_pending(db: &Database) -> ReadBack {
    let mut back = ReadBack {
        pending: Vec::new(),
        unreadable: Vec::new(),
        damage: None,
    };
    let read = match db.begin_read() {
        Ok(read) => read,
        Err(e) => {
            back.damage = Some(e.to_string());
            return back;
        }
    };
    let table = match read.open_table(PENDING) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return back,
        Err(e) => {
            back.damage = Some(e.to_string());
            return back;
        }
    };
    let entries = match table.iter() {
        Ok(entries) => entries,
        Err(e) => {
            back.damage = Some(e.to_string());
            return back;
        }
    };
    for entry in entries {
        let (id, bytes) = match entry {
            Ok(entry) => entry,
            Err(e) => {
                back.damage = Some(e.to_string());
                break;
            }
        };
        let id = id.value();
        if id == PROBE {
            continue;
        }
        match serde_json::from_slice::<Record>(bytes.value()) {
            Ok(record) => back.pending.push((id, record)),
            Err(e) => {
                tracing::error!(record = id, error = %e, "spool record unreadable: dropped");
                back.unreadable.push(id);
            }
        }
    }
    back
}

/// The key the writer probes a full disk with (records start at 1).
const PROBE: u64 = 0;
/// How often an unwritable spool is tried again.
const RETRY_UNWRITABLE: Duration = Duration::from_secs(1);
/// A spool file larger than this with nothing pending is compacted.
const COMPACT_ABOVE: u64 = 8 << 20;
/// At most one compaction in this long.
const COMPACT_EVERY: Duration = Duration::from_secs(60);

/// The thread that owns the database.
struct Writer {
    path: PathBuf,
    /// `None` after a failed commit: redb refuses every later write on a
    /// database that saw an I/O error, so it is closed and opened again.
    db: Option<Database>,
    next: u64,
    /// Removals whose commit failed: in the next commit, so a finished
    /// notification is not delivered again after a restart.
    failed_removals: Vec<u64>,
    health: Arc<Health>,
    last_compaction: Option<Instant>,
}

impl Writer {
    /// Commits every operation waiting, in groups, until every handle is
    /// gone. While the spool cannot be written, it tries again every second.
    fn run(&mut self, queue: &mpsc::Receiver<Op>) {
        loop {
            let first = if self.health.writable() {
                queue
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected)
            } else {
                queue.recv_timeout(RETRY_UNWRITABLE)
            };
            let mut batch = match first {
                Ok(op) => vec![op],
                Err(mpsc::RecvTimeoutError::Timeout) => Vec::new(),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.write(batch);
        }
        if !self.failed_removals.is_empty() {
            self.write(Vec::new());
        }
    }

    /// Commits one batch and answers its appends.
    fn write(&mut self, batch: Vec<Op>) {
        let probing = !self.health.writable();
        let mut ids = Vec::new();
        let committed = self.commit(&batch, probing, &mut ids);
        match &committed {
            Ok(()) => {
                self.failed_removals.clear();
                self.health.set_writable(true, None);
                self.compact_if_mostly_empty();
            }
            Err(error) => {
                tracing::debug!(%error, operations = batch.len(), "spool commit failed");
                self.failed_removals
                    .extend(batch.iter().filter_map(|op| match op {
                        Op::Remove(id) => Some(*id),
                        Op::Append(..) => None,
                    }));
                // Closed now, opened again on the next try.
                self.db = None;
                self.health.set_writable(false, Some(error));
            }
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

    fn database(&mut self) -> Result<&Database, String> {
        if self.db.is_none() {
            let db = Database::create(&self.path).map_err(|e| format!("cannot reopen: {e}"))?;
            self.db = Some(db);
        }
        self.db.as_ref().ok_or_else(|| "not open".to_owned())
    }

    /// One transaction: the batch's appends (given ids from `next`, pushed
    /// to `ids` in order), its removals and those that failed before. While
    /// `probing` a full disk, a probe record is written too (and removed in
    /// the next commit): a commit with nothing to write would pass on a
    /// disk that still has no room.
    fn commit(&mut self, batch: &[Op], probing: bool, ids: &mut Vec<u64>) -> Result<(), String> {
        let retried: Vec<u64> = self.failed_removals.clone();
        let start = self.next;
        let mut next = self.next;
        let db = self.database()?;
        let write = db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut table = write.open_table(PENDING).map_err(|e| e.to_string())?;
            if probing {
                table
                    .insert(PROBE, [0u8; 64].as_slice())
                    .map_err(|e| e.to_string())?;
            } else {
                table.remove(PROBE).map_err(|e| e.to_string())?;
            }
            for id in retried {
                table.remove(id).map_err(|e| e.to_string())?;
            }
            for op in batch {
                match op {
                    Op::Append(records, _) => {
                        for record in records {
                            table
                                .insert(next, record.as_slice())
                                .map_err(|e| e.to_string())?;
                            ids.push(next);
                            next += 1;
                        }
                    }
                    Op::Remove(id) => {
                        table.remove(*id).map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        match write.commit() {
            Ok(()) => {
                self.next = next;
                Ok(())
            }
            Err(e) => {
                self.next = start;
                ids.clear();
                Err(e.to_string())
            }
        }
    }

    /// After a burst the file keeps its size: when nothing is pending and
    /// it is large, it is compacted (here, on the writer's thread, never on
    /// the path that answers events; appends wait meanwhile).
    fn compact_if_mostly_empty(&mut self) {
        if self
            .last_compaction
            .is_some_and(|at| at.elapsed() < COMPACT_EVERY)
        {
            return;
        }
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if size <= COMPACT_ABOVE {
            return;
        }
        let Some(db) = self.db.as_mut() else {
            return;
        };
        let empty = db
            .begin_read()
            .ok()
            .and_then(|read| read.open_table(PENDING).ok())
            .and_then(|table| table.len().ok())
            .is_some_and(|len| len <= 1);
        if !empty {
            return;
        }
        self.last_compaction = Some(Instant::now());
        match db.compact() {
            Ok(_) => {
                let after = std::fs::metadata(&self.path).map_or(0, |m| m.len());
                tracing::info!(before = size, after, "spool: compacted the emptied file");
            }
            Err(error) => {
                tracing::warn!(%error, "spool: compaction failed; the file keeps its size")
            }
        }
    }
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

    /// After a burst the file is compacted once it is empty again.
    #[tokio::test]
    async fn an_emptied_file_is_compacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, _) = Spool::open(dir.path()).expect("open");
        let long = "x".repeat(2_000);
        let mut ids = Vec::new();
        for _ in 0..10 {
            let batch: Vec<Record> = (0..1_000).map(|_| record(&long)).collect();
            ids.extend(spool.append(&batch).await.expect("append"));
        }
        let file = dir.path().join(FILE_NAME);
        let full = std::fs::metadata(&file).expect("size").len();
        assert!(full > COMPACT_ABOVE, "{full}");
        for id in ids {
            spool.remove(id);
        }
        spool.flush().await;
        // The compaction follows the commit that emptied the table.
        spool.flush().await;
        let emptied = std::fs::metadata(&file).expect("size").len();
        assert!(emptied < full / 4, "{full} -> {emptied}");
    }

    /// A damaged file is set aside and a fresh spool started; a second
    /// open of a spool in use is refused.
    #[test]
    fn a_damaged_file_is_set_aside_and_one_in_use_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), vec![0xA5u8; 20_000]).expect("damage");
        let (spool, pending) = Spool::open(dir.path()).expect("open");
        assert!(pending.is_empty());
        let aside = spool.set_aside().expect("set aside");
        assert_eq!(aside.records_read, 0);
        assert_eq!(
            std::fs::read(&aside.path).expect("kept"),
            vec![0xA5u8; 20_000]
        );
        let Err(error) = Spool::open(dir.path()) else {
            panic!("a spool in use was opened twice");
        };
        assert!(error.to_string().contains("another herald"), "{error}");
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

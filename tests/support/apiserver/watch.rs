//! Watch streams: newline-delimited JSON events from a resourceVersion on,
//! synthetic ADDED events for the current state (legacy `rv` unset/0 and
//! streaming lists' `sendInitialEvents`), BOOKMARKs about every second,
//! 410 Gone for a compacted resourceVersion, a clean end at
//! `timeoutSeconds` and an abrupt one on `drop_watches()`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch as signal};
use tokio::time::Instant;

use super::Shared;
use super::http::{Output, Request, Target, parse_rv, stream_body};
use super::resources::Resource;
use super::select::Selector;
use super::status::ApiError;
use super::store::{ChangeType, ObjKey, Store};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// kube-apiserver's `--min-request-timeout` default, for watches without
/// `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// What one watch selects and how it shows objects.
struct View {
    res: &'static Resource,
    version: String,
    namespace: Option<String>,
    selector: Selector,
    output: Output,
}

impl View {
    fn in_scope(&self, store_key: &ObjKey) -> bool {
        (store_key.group.as_str(), store_key.plural.as_str()) == self.res.storage
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == store_key.namespace)
    }

    /// The object as shown, if the selector selects it.
    fn show(&self, stored: &Value) -> Option<Value> {
        let full = self.res.render(&self.version, stored);
        self.selector
            .matches(&full)
            .then(|| self.output.object(self.res, &self.version, stored))
    }

    fn event(kind: &str, object: Value) -> Bytes {
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let (kind, api_version) = match self.output {
            Output::Full => (
                self.res.kind.to_owned(),
                self.res.api_version(&self.version),
            ),
            Output::Metadata => (
                "PartialObjectMetadata".to_owned(),
                "meta.k8s.io/v1".to_owned(),
            ),
        };
        let mut metadata = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        Self::event(
            "BOOKMARK",
            json!({"kind": kind, "apiVersion": api_version, "metadata": metadata}),
        )
    }

    /// ADDED events for every selected current object.
    fn initial(&self, store: &Store) -> Vec<Bytes> {
        store
            .current(self.res.storage, self.namespace.as_deref())
            .iter()
            .filter_map(|(_, object)| self.show(object))
            .map(|object| Self::event("ADDED", object))
            .collect()
    }

    /// Events for changes after `after`. A modification that moves an
    /// object into (out of) the selection is ADDED (DELETED), as upstream.
    fn pending(&self, store: &Store, after: u64) -> Vec<Bytes> {
        let mut lines = Vec::new();
        for change in store.changes_after(after) {
            if !self.in_scope(&change.key) {
                continue;
            }
            let now = self.show(&change.object);
            let before = change.prev.as_ref().and_then(|p| self.show(p)).is_some();
            let event = match (change.kind, before, now) {
                (ChangeType::Deleted, true, _) => Some((
                    "DELETED",
                    self.output.object(self.res, &self.version, &change.object),
                )),
                (ChangeType::Deleted, false, _) => None,
                (ChangeType::Added, _, Some(object)) => Some(("ADDED", object)),
                (ChangeType::Modified, true, Some(object)) => Some(("MODIFIED", object)),
                (ChangeType::Modified, false, Some(object)) => Some(("ADDED", object)),
                // Upstream's cacher: the previous content at the new version.
                (ChangeType::Modified, true, None) => change.prev.as_ref().map(|prev| {
                    let mut prev = prev.clone();
                    super::store::set_resource_version(&mut prev, change.rv);
                    (
                        "DELETED",
                        self.output.object(self.res, &self.version, &prev),
                    )
                }),
                (_, _, None) => None,
            };
            if let Some((kind, object)) = event {
                lines.push(Self::event(kind, object));
            }
        }
        lines
    }
}

/// Checks watch options as upstream's `validateWatchOptions`.
fn validate(req: &Request) -> Result<Option<bool>, ApiError> {
    let forbidden = |why: &str| {
        ApiError::unprocessable(format!("ListOptions.meta.k8s.io \"\" is invalid: {why}"))
    };
    let send_initial = req.flag("sendInitialEvents")?;
    let matching = req.param("resourceVersionMatch");
    if send_initial.is_some() && matching != Some("NotOlderThan") {
        return Err(forbidden(
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if matching.is_some() && send_initial.is_none() {
        return Err(forbidden(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ));
    }
    Ok(send_initial)
}

fn timeout(req: &Request) -> Result<Duration, ApiError> {
    match req.param("timeoutSeconds") {
        None => Ok(DEFAULT_TIMEOUT),
        Some(text) => match text.parse::<u64>() {
            Ok(0) => Ok(DEFAULT_TIMEOUT),
            Ok(seconds) => Ok(Duration::from_secs(seconds)),
            Err(_) => Err(ApiError::bad_request(format!(
                "invalid timeoutSeconds {text:?}"
            ))),
        },
    }
}

fn streaming_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
}

/// The ERROR event of a watch whose resourceVersion is compacted away.
fn expired_event(rv: u64, compacted: u64) -> Bytes {
    let status = ApiError::expired(format!("too old resource version: {rv} ({compacted})"));
    View::event("ERROR", status.to_json())
}

/// A watch from a resourceVersion the history no longer has: HTTP 200 and
/// one ERROR event with a 410 Status, as kube-apiserver answers.
fn gone(rv: u64, compacted: u64) -> Response {
    let mut response = (StatusCode::OK, expired_event(rv, compacted)).into_response();
    streaming_headers(&mut response);
    response
}

/// Starts a watch on `t`'s collection.
pub(crate) fn start(
    shared: &Arc<Shared>,
    req: &Request,
    t: &Target,
    output: Output,
) -> Result<Response, ApiError> {
    let send_initial = validate(req)?;
    let timeout = timeout(req)?;
    let bookmarks = req.flag("allowWatchBookmarks")?.unwrap_or(false);
    let view = View {
        res: t.res,
        version: t.version.clone(),
        namespace: t.namespace.clone(),
        selector: Selector::parse(
            t.res,
            req.param("labelSelector"),
            req.param("fieldSelector"),
        )?,
        output,
    };
    let from = match req.param("resourceVersion") {
        None | Some("0") => None,
        Some(text) => Some(parse_rv(text)?),
    };

    // Subscribe before reading the store so no later change is missed.
    let changes = shared.changes.subscribe();
    let drops = shared.drops.subscribe();
    let compactions = shared.compactions.subscribe();
    let generation = *drops.borrow();
    let store = shared.store();
    let mut lines = Vec::new();
    let last = match (from, send_initial) {
        (_, Some(true)) | (None, None) => {
            lines = view.initial(&store);
            if bookmarks {
                lines.push(view.bookmark(store.rv, send_initial == Some(true)));
            }
            store.rv
        }
        (None, Some(false)) => store.rv,
        (Some(rv), _) if rv < store.compacted => return Ok(gone(rv, store.compacted)),
        (Some(rv), _) => {
            lines = view.pending(&store, rv);
            store.rv.max(rv)
        }
    };
    drop(store);

    let (tx, rx) = mpsc::channel(1024);
    let (abort, aborted) = oneshot::channel();
    let registration = shared.register_watch(generation);
    let task = WatchTask {
        shared: shared.clone(),
        view,
        bookmarks,
        last,
        tx,
        abort: Some(abort),
        changes,
        drops,
        compactions,
        deadline: Instant::now() + timeout,
        _registration: registration,
    };
    tokio::spawn(task.run(lines));
    let mut response = (StatusCode::OK, stream_body(rx, aborted)).into_response();
    streaming_headers(&mut response);
    Ok(response)
}

/// Removes a watch from the open-watch registry when its task ends.
pub(crate) struct Registration {
    pub shared: Arc<Shared>,
    pub id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.unregister_watch(self.id);
    }
}

struct WatchTask {
    shared: Arc<Shared>,
    view: View,
    bookmarks: bool,
    /// Every change up to this resourceVersion has been sent.
    last: u64,
    tx: mpsc::Sender<Bytes>,
    /// Fired to cut the connection (see `stream_body`).
    abort: Option<oneshot::Sender<()>>,
    changes: signal::Receiver<u64>,
    drops: signal::Receiver<u64>,
    compactions: signal::Receiver<u64>,
    deadline: Instant,
    _registration: Registration,
}

enum Step {
    Abort,
    Expire,
    End,
    Changed,
    Bookmark,
}

impl WatchTask {
    async fn run(mut self, initial: Vec<Bytes>) {
        if !self.send_all(initial).await {
            return;
        }
        let mut ticks =
            tokio::time::interval_at(Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
        loop {
            let step = tokio::select! {
                biased;
                _ = self.drops.changed() => Step::Abort,
                _ = self.compactions.changed() => Step::Expire,
                _ = tokio::time::sleep_until(self.deadline) => Step::End,
                _ = self.tx.closed() => Step::End,
                changed = self.changes.changed() => match changed {
                    Ok(()) => Step::Changed,
                    Err(_) => Step::End,
                },
                _ = ticks.tick(), if self.bookmarks => Step::Bookmark,
            };
            let more = match step {
                Step::Abort => {
                    self.abort();
                    false
                }
                Step::Expire => {
                    let compacted = self.shared.store().compacted;
                    let _ = self
                        .send_all(vec![expired_event(self.last, compacted)])
                        .await;
                    false
                }
                // Dropping the sender ends the body cleanly (final chunk).
                Step::End => false,
                Step::Changed => self.flush().await,
                Step::Bookmark => {
                    let bookmark = self
                        .flush()
                        .await
                        .then(|| self.view.bookmark(self.last, false));
                    match bookmark {
                        Some(line) => self.send_all(vec![line]).await,
                        None => false,
                    }
                }
            };
            if !more {
                return;
            }
        }
    }

    /// Cuts the connection mid-stream: the client sees it drop.
    fn abort(&mut self) {
        if let Some(abort) = self.abort.take() {
            let _ = abort.send(());
        }
    }

    /// Sends the events of changes since `last`.
    async fn flush(&mut self) -> bool {
        let lines = {
            let store = self.shared.store();
            let lines = self.view.pending(&store, self.last);
            self.last = store.rv;
            lines
        };
        self.send_all(lines).await
    }

    /// Sends lines in order; false once the stream is over (client gone or
    /// `drop_watches()`, which is honoured even while the client is not
    /// reading).
    async fn send_all(&mut self, lines: Vec<Bytes>) -> bool {
        for line in lines {
            let sent = tokio::select! {
                biased;
                _ = self.drops.changed() => None,
                sent = self.tx.send(line) => Some(sent.is_ok()),
            };
            match sent {
                Some(true) => {}
                Some(false) => return false,
                None => {
                    self.abort();
                    return false;
                }
            }
        }
        true
    }
}

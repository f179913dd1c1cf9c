//! The Kubernetes config source: reflectors for Alerts, Providers and
//! Receivers, and the Secrets that Providers and Receivers reference.
//!
//! Secrets are the one kind a cluster has thousands of, most unrelated to
//! herald. So herald watches Secrets' *metadata* only (names and versions,
//! no data) to learn when one changes, and GETs the data of just the
//! Secrets a Provider references. Memory holds no unrelated Secret data.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::Notify;

use super::status::StatusWriter;
use crate::api::{Alert, Decoded, Provider, Receiver, Undecodable};
use crate::routing::{self, TableOptions};
use crate::runtime::Publisher;
use crate::source::{
    Kind, Loaded, ObjectKey, Origin, SecretData, Snapshot, secret_data, undecodable_problem,
};
use crate::webhook::table::{self as receivers, ReceiverSecret, ReceiverTable, SecretLookup};

/// Quiet time after a change before the table is rebuilt, so a burst of
/// changes costs one rebuild.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// More Secrets than this to read at once are read with a paged LIST.
const BULK_READ_FROM: usize = 64;
/// Secrets per page of that LIST.
const SECRET_PAGE: u32 = 500;
/// Secret GETs in flight at once while refreshing.
const SECRET_READS_IN_FLIGHT: usize = 16;
/// Retry delay for a Secret GET that failed for a reason other than 404.
const SECRET_RETRY: Duration = Duration::from_secs(2);

pub struct ClusterSource {
    client: Client,
    /// `None`: every namespace.
    namespace: Option<String>,
    options: TableOptions,
    /// Each object decoded on its own: one that does not decode is that
    /// object's problem, never the watch's (DESIGN §3.15).
    alerts: Store<Decoded<Alert>>,
    alert_writer: reflector::store::Writer<Decoded<Alert>>,
    providers: Store<Decoded<Provider>>,
    provider_writer: reflector::store::Writer<Decoded<Provider>>,
    receivers: Store<Decoded<Receiver>>,
    receiver_writer: reflector::store::Writer<Decoded<Receiver>>,
    /// Where the receiver table is published (the webhook server reads it).
    receiver_table: Option<Arc<arc_swap::ArcSwap<ReceiverTable>>>,
    /// Rung by every watch event that may change the table.
    changed: Arc<Notify>,
    secrets: Arc<SecretCache>,
}

/// The data of referenced Secrets, and which of them must be read again.
#[derive(Default)]
struct SecretCache {
    state: Mutex<SecretState>,
}

#[derive(Default)]
struct SecretState {
    referenced: HashSet<ObjectKey>,
    data: HashMap<ObjectKey, SecretData>,
    /// The same Secrets' values as Receivers use them (untrimmed bytes).
    receiver_data: HashMap<ObjectKey, ReceiverSecret>,
    /// Referenced Secrets that do not exist.
    missing: HashSet<ObjectKey>,
    /// Referenced Secrets that changed since they were read.
    stale: HashSet<ObjectKey>,
    /// The resourceVersion of each Secret's data held in `data`.
    read_versions: HashMap<ObjectKey, String>,
    /// How often the watch has marked each referenced Secret stale: a GET
    /// whose key was marked again while it was in flight may have read the
    /// old data, so the key stays stale and is read again.
    marks: HashMap<ObjectKey, u64>,
    /// The resourceVersion the watch last reported for a stale Secret, when
    /// it reported one: a read that returns that version is current even if
    /// the mark came while it was in flight (at start-up, the watch's first
    /// list and the first reads overlap for every Secret).
    watched: HashMap<ObjectKey, String>,
}

impl SecretState {
    /// Marks a Secret to be read again, its latest version unknown.
    fn mark_stale(&mut self, key: ObjectKey) {
        *self.marks.entry(key.clone()).or_default() += 1;
        self.watched.remove(&key);
        self.stale.insert(key);
    }

    /// Marks a Secret to be read again: the watch saw it at `version`.
    fn mark_changed(&mut self, key: ObjectKey, version: &str) {
        *self.marks.entry(key.clone()).or_default() += 1;
        self.watched.insert(key.clone(), version.to_owned());
        self.stale.insert(key);
    }

    fn marks_of(&self, key: &ObjectKey) -> u64 {
        self.marks.get(key).copied().unwrap_or(0)
    }

    /// Records what a GET read. When the watch marked the key again while
    /// the GET was in flight, the data is kept (it is the newest read) but
    /// the key stays stale, to be read again.
    fn finish_read(
        &mut self,
        key: ObjectKey,
        marks_before: u64,
        found: Option<Secret>,
    ) -> ReadOutcome {
        let read_version = found
            .as_ref()
            .and_then(|secret| secret.metadata.resource_version.as_deref());
        let latest =
            read_version.is_some() && self.watched.get(&key).map(String::as_str) == read_version;
        let superseded = self.marks_of(&key) != marks_before && !latest;
        if !superseded {
            self.watched.remove(&key);
            self.stale.remove(&key);
        }
        match found {
            Some(secret) => {
                self.missing.remove(&key);
                match secret.metadata.resource_version.clone() {
                    Some(version) => self.read_versions.insert(key.clone(), version),
                    None => self.read_versions.remove(&key),
                };
                self.receiver_data
                    .insert(key.clone(), ReceiverSecret::from_secret(&secret));
                self.data.insert(key, secret_data(secret));
            }
            None => {
                self.data.remove(&key);
                self.receiver_data.remove(&key);
                self.read_versions.remove(&key);
                self.missing.insert(key);
            }
        }
        if superseded {
            ReadOutcome::Superseded
        } else {
            ReadOutcome::Current
        }
    }
}

/// Whether a Secret read is known to be current.
#[derive(Debug, PartialEq, Eq)]
enum ReadOutcome {
    Current,
    Superseded,
}

impl ClusterSource {
    pub fn new(client: Client, namespace: Option<String>, options: TableOptions) -> Self {
        let (alerts, alert_writer) = reflector::store();
        let (providers, provider_writer) = reflector::store();
        let (receivers, receiver_writer) = reflector::store();
        Self {
            client,
            namespace,
            options,
            alerts,
            alert_writer,
            providers,
            provider_writer,
            receivers,
            receiver_writer,
            receiver_table: None,
            changed: Arc::new(Notify::new()),
            secrets: Arc::default(),
        }
    }

    /// Also watches Receivers and publishes their table here.
    pub fn with_receivers(mut self, table: Arc<arc_swap::ArcSwap<ReceiverTable>>) -> Self {
        self.receiver_table = Some(table);
        self
    }

    /// The Alerts as last seen, for Event references.
    pub fn alert_store(&self) -> Store<Decoded<Alert>> {
        self.alerts.clone()
    }

    /// Rung to force a rebuild (e.g. when this replica becomes leader, so it
    /// writes the status it would not write before).
    pub fn trigger(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }

    /// Watches and rebuilds the routing table on every change, forever.
    pub async fn run(self, publisher: Publisher, status: StatusWriter) {
        let config = watcher::Config::default();
        let (alert_api, provider_api) = (
            self.api::<Decoded<Alert>>(),
            self.api::<Decoded<Provider>>(),
        );
        let receiver_api = self.api::<Decoded<Receiver>>();
        let secret_api = self.api::<PartialObjectMeta<Secret>>();
        let alert_events = reflector::reflector(
            self.alert_writer,
            watcher(alert_api, config.clone())
                .backoff(WatchBackoff::default())
                .modify(slim),
        );
        let provider_events = reflector::reflector(
            self.provider_writer,
            watcher(provider_api, config.clone())
                .backoff(WatchBackoff::default())
                .modify(slim),
        );
        let changed = self.changed.clone();
        tokio::spawn(forward("Alert", alert_events, changed.clone()));
        tokio::spawn(forward("Provider", provider_events, changed.clone()));
        if self.receiver_table.is_some() {
            // Not waited for: without the Receiver CRD, events still flow.
            let receiver_events = reflector::reflector(
                self.receiver_writer,
                watcher(receiver_api, config.clone())
                    .backoff(WatchBackoff::default())
                    .modify(slim),
            );
            tokio::spawn(forward("Receiver", receiver_events, changed.clone()));
        }
        // The Secret metadata watch starts after the first read of the
        // referenced Secrets: its own list of every Secret would compete
        // with the reads the first table waits for, and started after them
        // it reports every Secret changed since (its version differs from
        // the one read), which is then read again.
        let mut secret_watch = Some(secret_api);

        if self.alerts.wait_until_ready().await.is_err()
            || self.providers.wait_until_ready().await.is_err()
        {
            tracing::error!("the Alert and Provider watches stopped before their first list");
            return;
        }
        tracing::info!(
            namespace = self.namespace.as_deref().unwrap_or("(all)"),
            "watching Alerts, Providers and Secrets"
        );
        let client = self.client.clone();
        // Status is written by its own task from the latest build: a slow
        // API server delays status, never the next routing table.
        let (status_input, status_latest) = tokio::sync::watch::channel(None);
        tokio::spawn(write_status(status, status_latest));
        let mut next_confirm = tokio::time::Instant::now();
        loop {
            let mut undecodable = Vec::new();
            let alerts = split(self.alerts.state(), Kind::Alert, &mut undecodable);
            let providers = split(self.providers.state(), Kind::Provider, &mut undecodable);
            let (receivers, undecodable_receivers) = if self.receiver_table.is_some() {
                // Receivers' status has its own path: the kind is not used.
                let mut found = Vec::new();
                let valid = split(self.receivers.state(), Kind::Alert, &mut found);
                (valid, found.into_iter().map(|(_, object)| object).collect())
            } else {
                (Vec::new(), Vec::new())
            };
            let reading = std::time::Instant::now();
            let secrets = refresh_secrets(
                &client,
                self.namespace.as_deref(),
                &self.secrets,
                &providers,
                &receivers,
                &changed,
            )
            .await;
            if let Some(api) = secret_watch.take() {
                tokio::spawn(watch_secrets(api, self.secrets.clone(), changed.clone()));
            }
            let mut receiver_statuses = Vec::new();
            if let Some(table) = &self.receiver_table {
                let state = self.secrets.state.lock().unwrap_or_else(|e| e.into_inner());
                // CEL compiles here: off the async workers.
                let (built, statuses) = crate::parallel::off_runtime(|| {
                    receivers::build(&receivers, |key| match state.receiver_data.get(key) {
                        Some(data) => SecretLookup::Found(data),
                        None if state.missing.contains(key) => SecretLookup::Missing,
                        None => SecretLookup::Unknown,
                    })
                });
                drop(state);
                tracing::debug!(receivers = built.len(), "receiver table loaded");
                table.store(Arc::new(built));
                receiver_statuses = statuses;
            }
            let snapshot = Snapshot {
                alerts: alerts.iter().map(cluster_loaded).collect(),
                providers: providers.iter().map(cluster_loaded).collect(),
                secrets,
                labels: Default::default(),
                receivers: Vec::new(),
                unreadable_secrets: Default::default(),
                undecodable: undecodable
                    .iter()
                    .map(|(kind, object)| {
                        undecodable_problem(
                            *kind,
                            Origin::Cluster,
                            key_of_meta(&object.metadata),
                            &object.error,
                        )
                    })
                    .collect(),
            };
            let building = std::time::Instant::now();
            // About a second of CPU at 10,000 Alerts: off the async
            // workers, which serve events meanwhile.
            let (table, problems) =
                crate::parallel::off_runtime(|| routing::build(&snapshot, &self.options));
            tracing::debug!(
                alerts = snapshot.alerts.len(),
                providers = snapshot.providers.len(),
                secrets = snapshot.secrets.len(),
                secrets_ms = building.duration_since(reading).as_millis() as u64,
                build_ms = building.elapsed().as_millis() as u64,
                "routing table built"
            );
            publisher.publish(table, &problems);
            status_input.send_replace(Some(Arc::new(StatusInput {
                alerts,
                providers,
                problems,
                receivers,
                receiver_statuses,
                undecodable,
                undecodable_receivers,
            })));

            // Receivers' Secrets are read again at their interval, as Flux
            // reconciles them, even when no watch event came.
            let confirm = self
                .receivers
                .state()
                .iter()
                .filter_map(|r| r.valid().map(|r| receivers::interval(r)))
                .min();
            if let Some(every) = confirm {
                next_confirm = tokio::time::Instant::now() + every.max(Duration::from_secs(1));
            }
            tokio::select! {
                () = changed.notified() => {}
                () = tokio::time::sleep_until(next_confirm), if confirm.is_some() => {
                    let mut state = self.secrets.state.lock().unwrap_or_else(|e| e.into_inner());
                    let keys: Vec<ObjectKey> = state.referenced.iter().cloned().collect();
                    for key in keys {
                        state.mark_stale(key);
                    }
                }
            }
            tokio::time::sleep(DEBOUNCE).await;
        }
    }
}

/// What one build found, for the status task.
struct StatusInput {
    alerts: Vec<Arc<Alert>>,
    providers: Vec<Arc<Provider>>,
    problems: Vec<crate::source::Problem>,
    receivers: Vec<Arc<Receiver>>,
    receiver_statuses: Vec<receivers::ReceiverStatus>,
    /// Alerts and Providers that do not decode.
    undecodable: Vec<(Kind, Arc<Undecodable>)>,
    undecodable_receivers: Vec<Arc<Undecodable>>,
}

/// Writes the status of the latest build; builds that finish while a
/// write is under way are coalesced into the newest one.
async fn write_status(
    status: StatusWriter,
    mut latest: tokio::sync::watch::Receiver<Option<Arc<StatusInput>>>,
) {
    while latest.changed().await.is_ok() {
        let Some(input) = latest.borrow_and_update().clone() else {
            continue;
        };
        status
            .update(&input.alerts, &input.providers, &input.problems)
            .await;
        status
            .update_receivers(&input.receivers, &input.receiver_statuses)
            .await;
        status
            .update_undecodable(&input.undecodable, &input.undecodable_receivers)
            .await;
    }
}

/// The objects that decoded; those that did not go to `undecodable`,
/// with `kind`.
fn split<K>(
    objects: Vec<Arc<Decoded<K>>>,
    kind: Kind,
    undecodable: &mut Vec<(Kind, Arc<Undecodable>)>,
) -> Vec<Arc<K>> {
    let mut valid = Vec::with_capacity(objects.len());
    for object in objects {
        match &*object {
            Decoded::Valid(object) => valid.push(object.clone()),
            Decoded::Invalid(bad) => undecodable.push((kind, bad.clone())),
        }
    }
    valid
}

fn key_of_meta(meta: &kube::api::ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default(),
    )
}

fn cluster_loaded<K>(object: &Arc<K>) -> Loaded<K> {
    Loaded {
        origin: Origin::Cluster,
        object: object.clone(),
    }
}

/// Drives a reflector stream, ringing `changed` when an object is added,
/// deleted or its spec changes (a new `metadata.generation`). Status-only
/// updates — herald's own status writes among them — keep the generation
/// and change nothing herald routes by, so they ring nothing: otherwise
/// writing the status of 10,000 Alerts rebuilt the table after each batch.
async fn forward<S, K>(kind: &'static str, events: S, changed: Arc<Notify>)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    K: Resource,
{
    // Each object's generation and reconcile request: a change of either
    // rebuilds (Flux's ReconcileRequestedPredicate: `flux reconcile` sets
    // the annotation and waits for status.lastHandledReconcileAt).
    let mut generations: HashMap<ObjectKey, (Option<i64>, Option<String>)> = HashMap::new();
    let mut events = std::pin::pin!(events);
    let mut outage = Outage::new(kind);
    while let Some(event) = events.next().await {
        let Some(event) = outage.observe(event) else {
            continue;
        };
        let key = |object: &K| {
            ObjectKey::new(
                object.meta().namespace.as_deref().unwrap_or_default(),
                object.meta().name.as_deref().unwrap_or_default(),
            )
        };
        let ring = match &event {
            watcher::Event::Init => {
                generations.clear();
                false
            }
            watcher::Event::InitApply(object) => {
                generations.insert(key(object), version(object));
                false
            }
            watcher::Event::InitDone => true,
            watcher::Event::Apply(object) => {
                let seen = version(object);
                generations.insert(key(object), seen.clone()) != Some(seen)
            }
            watcher::Event::Delete(object) => {
                generations.remove(&key(object));
                true
            }
        };
        if ring {
            changed.notify_one();
        }
    }
}

/// The watches' retry delays: from 250 ms, doubling to at most 2 s, with
/// jitter, and back to the start as soon as the watch yields anything.
/// kube-runtime's default (0.8 s doubling to 30 s, reset only after 120 s
/// without errors) grew through an API server restart, so a watch re-listed
/// up to 30 s after the server answered again, and the expected `410
/// Expired` on resuming cost one more step. Retrying every 2 s while the
/// server is away costs it a request per watch every 2 s.
struct WatchBackoff {
    next: Duration,
}

const WATCH_RETRY_FIRST: Duration = Duration::from_millis(250);
const WATCH_RETRY_MAX: Duration = Duration::from_secs(2);

impl Default for WatchBackoff {
    fn default() -> Self {
        Self {
            next: WATCH_RETRY_FIRST,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(WATCH_RETRY_MAX);
        // Up to a fifth more, so that many watches do not retry in step.
        let jitter = delay.mul_f64(rand::random::<f64>() / 5.0);
        Some(delay + jitter)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = WATCH_RETRY_FIRST;
    }
}

/// One watch's view of an outage: one WARN when it starts failing, one
/// INFO when it works again, and the retries in between at debug — not a
/// line per retry for as long as the API server is away.
struct Outage {
    kind: &'static str,
    since: Option<std::time::Instant>,
    retries: u64,
}

impl Outage {
    fn new(kind: &'static str) -> Self {
        Self {
            kind,
            since: None,
            retries: 0,
        }
    }

    /// The event, or `None` (logged as this outage calls for) for an error.
    fn observe<T>(&mut self, event: Result<T, watcher::Error>) -> Option<T> {
        match event {
            Ok(event) => {
                if let Some(since) = self.since.take() {
                    tracing::info!(
                        kind = self.kind,
                        down_ms = since.elapsed().as_millis() as u64,
                        retries = self.retries,
                        "watch works again"
                    );
                }
                Some(event)
            }
            Err(e) => {
                let error = brief(&e.to_string());
                if self.since.is_none() {
                    self.since = Some(std::time::Instant::now());
                    self.retries = 0;
                    tracing::warn!(kind = self.kind, %error, "watch failed; retrying every few seconds until the API server answers");
                } else {
                    self.retries += 1;
                    tracing::debug!(kind = self.kind, %error, "watch still failing; retrying");
                }
                None
            }
        }
    }
}

/// An error's text for a log line, at most a few hundred characters: an
/// error from a client may carry a whole response.
fn brief(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// What of an object's metadata makes it worth a rebuild: its generation
/// (a spec change) and its reconcile request.
fn version<K: Resource>(object: &K) -> (Option<i64>, Option<String>) {
    let meta = object.meta();
    let requested = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::webhook::annotate::REQUESTED_AT))
        .cloned();
    (meta.generation, requested)
}

/// Drops what herald never reads from a watched object before it is
/// stored: `managedFields` and kubectl's last-applied copy are often most of
/// an object's size, and herald keeps thousands of objects.
fn slim<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
    if let Some(annotations) = object.meta_mut().annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Marks referenced Secrets stale when their metadata changes.
async fn watch_secrets(
    api: Api<PartialObjectMeta<Secret>>,
    cache: Arc<SecretCache>,
    changed: Arc<Notify>,
) {
    let events = watcher(api, watcher::Config::default()).backoff(WatchBackoff::default());
    let mut events = std::pin::pin!(events);
    // The Secrets a (re-)list showed, so that its end marks stale only the
    // referenced ones it did not show (deleted meanwhile): those it showed
    // were compared with what was read as they came.
    let mut listed: HashSet<ObjectKey> = HashSet::new();
    let mut outage = Outage::new("Secret");
    while let Some(event) = events.next().await {
        let Some(event) = outage.observe(event) else {
            continue;
        };
        let touched = match &event {
            watcher::Event::Apply(meta)
            | watcher::Event::Delete(meta)
            | watcher::Event::InitApply(meta) => {
                let key = ObjectKey::new(
                    meta.metadata.namespace.as_deref().unwrap_or_default(),
                    meta.metadata.name.as_deref().unwrap_or_default(),
                );
                let version = meta.metadata.resource_version.as_deref();
                if matches!(event, watcher::Event::InitApply(_)) {
                    listed.insert(key.clone());
                }
                let mut state = cache.state.lock().unwrap_or_else(|e| e.into_inner());
                let referenced = state.referenced.contains(&key);
                // A Secret whose data was read at this very version is current.
                let current = !matches!(event, watcher::Event::Delete(_))
                    && version.is_some()
                    && state.read_versions.get(&key).map(String::as_str) == version;
                let changed_now = referenced && !current;
                match version.filter(|_| changed_now && !matches!(event, watcher::Event::Delete(_)))
                {
                    Some(version) => state.mark_changed(key, version),
                    None if changed_now => state.mark_stale(key),
                    None => {}
                }
                changed_now && !matches!(event, watcher::Event::InitApply(_))
            }
            watcher::Event::Init => {
                listed.clear();
                false
            }
            // A re-list may have missed deletions: read again every
            // referenced Secret it did not show.
            watcher::Event::InitDone => {
                let mut state = cache.state.lock().unwrap_or_else(|e| e.into_inner());
                let unlisted: Vec<_> = state
                    .referenced
                    .iter()
                    .filter(|key| !listed.contains(*key))
                    .cloned()
                    .collect();
                let any = !unlisted.is_empty();
                for key in unlisted {
                    state.mark_stale(key);
                }
                listed = HashSet::new();
                any
            }
        };
        if touched {
            changed.notify_one();
        }
    }
}

/// Reads many referenced Secrets at once (at start-up, every one) with a
/// paged LIST instead of a GET each: thousands of GETs cost the API server
/// far more than a few pages. One page is held at a time, and the data of
/// Secrets nothing references is dropped as each page is read. A Secret
/// not listed is missing.
async fn list_secrets(
    client: &Client,
    namespace: Option<&str>,
    cache: &SecretCache,
    changed: &Arc<Notify>,
    to_read: &[ObjectKey],
) -> Result<(), kube::Error> {
    let api: Api<Secret> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let mut wanted: HashMap<ObjectKey, u64> = {
        let state = cache.state.lock().unwrap_or_else(|e| e.into_inner());
        to_read
            .iter()
            .map(|key| (key.clone(), state.marks_of(key)))
            .collect()
    };
    let mut superseded = false;
    let mut params = kube::api::ListParams::default().limit(SECRET_PAGE);
    loop {
        let page = api.list(&params).await?;
        let mut state = cache.state.lock().unwrap_or_else(|e| e.into_inner());
        for secret in page.items {
            let key = ObjectKey::new(
                secret.metadata.namespace.as_deref().unwrap_or_default(),
                secret.metadata.name.as_deref().unwrap_or_default(),
            );
            if let Some(marks_before) = wanted.remove(&key) {
                superseded |=
                    state.finish_read(key, marks_before, Some(secret)) == ReadOutcome::Superseded;
            }
        }
        drop(state);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    let mut state = cache.state.lock().unwrap_or_else(|e| e.into_inner());
    for (key, marks_before) in wanted {
        superseded |= state.finish_read(key, marks_before, None) == ReadOutcome::Superseded;
    }
    drop(state);
    if superseded {
        changed.notify_one();
    }
    Ok(())
}

/// Reads one referenced Secret and records what it holds (or that it is
/// missing); a failed read is retried shortly.
async fn read_secret(client: &Client, cache: &SecretCache, changed: &Arc<Notify>, key: ObjectKey) {
    let api: Api<Secret> = Api::namespaced(client.clone(), &key.namespace);
    let marks_before = cache
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .marks_of(&key);
    let result = api.get_opt(&key.name).await;
    let mut state = cache.state.lock().unwrap_or_else(|e| e.into_inner());
    let outcome = match result {
        Ok(found) => state.finish_read(key.clone(), marks_before, found),
        Err(e) => {
            drop(state);
            // Keep what was read before; try again shortly.
            tracing::warn!(secret = %key, error = %e, "cannot read Secret; retrying");
            let changed = changed.clone();
            tokio::spawn(async move {
                tokio::time::sleep(SECRET_RETRY).await;
                changed.notify_one();
            });
            return;
        }
    };
    if outcome == ReadOutcome::Superseded {
        changed.notify_one();
    }
}

/// Reads referenced Secrets that are new or changed, forgets unreferenced
/// ones, and returns the data of every referenced Secret that exists.
async fn refresh_secrets(
    client: &Client,
    namespace: Option<&str>,
    cache: &SecretCache,
    providers: &[Arc<Provider>],
    receivers: &[Arc<Receiver>],
    changed: &Arc<Notify>,
) -> HashMap<ObjectKey, SecretData> {
    // secretRef, certSecretRef and proxySecretRef: every Secret a Provider reads.
    let referenced: HashSet<ObjectKey> = providers
        .iter()
        .flat_map(|p| {
            let spec = &p.spec;
            let namespace = p.metadata.namespace.as_deref().unwrap_or("default");
            [
                &spec.secret_ref,
                &spec.cert_secret_ref,
                &spec.proxy_secret_ref,
            ]
            .into_iter()
            .flatten()
            .map(move |reference| ObjectKey::new(namespace, reference.name.as_str()))
        })
        .chain(receivers.iter().filter_map(|r| {
            let reference = r.spec.secret_ref.as_ref()?;
            Some(ObjectKey::new(
                r.metadata.namespace.as_deref().unwrap_or("default"),
                reference.name.as_str(),
            ))
        }))
        .collect();
    let to_read: Vec<ObjectKey> = {
        let mut state = cache.state.lock().unwrap_or_else(|e| e.into_inner());
        state.referenced = referenced.clone();
        let SecretState {
            data,
            receiver_data,
            missing,
            stale,
            read_versions,
            marks,
            watched,
            ..
        } = &mut *state;
        watched.retain(|k, _| referenced.contains(k));
        data.retain(|k, _| referenced.contains(k));
        receiver_data.retain(|k, _| referenced.contains(k));
        missing.retain(|k| referenced.contains(k));
        read_versions.retain(|k, _| referenced.contains(k));
        marks.retain(|k, _| referenced.contains(k));
        referenced
            .iter()
            .filter(|k| stale.contains(*k) || !(data.contains_key(*k) || missing.contains(*k)))
            .cloned()
            .collect()
    };
    if to_read.len() > BULK_READ_FROM {
        if let Err(e) = list_secrets(client, namespace, cache, changed, &to_read).await {
            tracing::warn!(error = %e, "cannot list Secrets; reading them one by one");
        } else {
            let state = cache.state.lock().unwrap_or_else(|e| e.into_inner());
            return state.data.clone();
        }
    }
    // A few GETs in flight at once: one at a time, many Secrets are many
    // round trips in a row.
    futures::stream::iter(to_read)
        .for_each_concurrent(SECRET_READS_IN_FLIGHT, |key| {
            read_secret(client, cache, changed, key)
        })
        .await;
    let state = cache.state.lock().unwrap_or_else(|e| e.into_inner());
    state.data.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(version: &str, token: &str) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("s".into()),
                namespace: Some("ns".into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            string_data: Some([("token".to_owned(), token.to_owned())].into()),
            ..Default::default()
        }
    }

    /// A Secret rotated while its GET is in flight: the GET may return the
    /// old data, so the key stays stale and is read again, never settling
    /// on the old token.
    #[test]
    fn a_secret_changed_during_its_read_is_read_again() {
        let key = ObjectKey::new("ns", "s");
        let mut state = SecretState::default();
        state.referenced.insert(key.clone());
        state.mark_stale(key.clone());
        let before = state.marks_of(&key);
        // The watch sees the rotation while the GET is in flight...
        state.mark_stale(key.clone());
        // ...and the GET answers with the data from before it.
        let outcome = state.finish_read(key.clone(), before, Some(secret("1", "old")));
        assert_eq!(outcome, ReadOutcome::Superseded);
        assert!(
            state.stale.contains(&key),
            "the old data must be read again"
        );
        let before = state.marks_of(&key);
        let outcome = state.finish_read(key.clone(), before, Some(secret("2", "new")));
        assert_eq!(outcome, ReadOutcome::Current);
        assert!(!state.stale.contains(&key));
        assert_eq!(state.data[&key]["token"], "new");
        assert_eq!(state.read_versions[&key], "2");
    }

    /// The watch reports a Secret while its read is in flight, at the very
    /// version the read returns: the read is current, not read again (at
    /// start-up this is every Secret, and re-reading them all doubled the
    /// requests).
    #[test]
    fn a_read_at_the_version_the_watch_reported_is_current() {
        let key = ObjectKey::new("ns", "s");
        let mut state = SecretState::default();
        state.referenced.insert(key.clone());
        let before = state.marks_of(&key);
        state.mark_changed(key.clone(), "7");
        let outcome = state.finish_read(key.clone(), before, Some(secret("7", "t")));
        assert_eq!(outcome, ReadOutcome::Current);
        assert!(!state.stale.contains(&key));
        // The same with an older read: read again.
        let before = state.marks_of(&key);
        state.mark_changed(key.clone(), "9");
        let outcome = state.finish_read(key.clone(), before, Some(secret("8", "t")));
        assert_eq!(outcome, ReadOutcome::Superseded);
        assert!(state.stale.contains(&key));
    }
}

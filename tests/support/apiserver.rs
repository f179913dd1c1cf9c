//! An in-process Kubernetes API server for controller-mode tests: the
//! stand-in for kube-apiserver (none can run on the build machines), so it
//! is faithful to what a kube-rs 5.x client relies on.
//!
//! It serves core `v1` namespaces, secrets, events and configmaps;
//! `events.k8s.io/v1` events (a view of core events, as upstream);
//! `coordination.k8s.io/v1` leases; Flux's `notification.toolkit.fluxcd.io`
//! alerts and providers at v1beta1, v1beta2 and v1beta3 (one stored object,
//! shown at the requested version); kustomizations, helmreleases and
//! gitrepositories. Plain HTTP on 127.0.0.1, no authentication, on its own
//! runtime thread so sync and async tests can use it.
//!
//! The namespaces `default`, `kube-system`, `kube-public`,
//! `kube-node-lease` and `flux-system` exist from the start (a cluster with
//! Flux installed); creating in any other namespace needs that namespace
//! first, as on a real cluster.

mod http;
mod objects;
mod patch;
mod resources;
mod select;
mod status;
mod store;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use serde_json::{Value, json};

use self::store::Store;

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    pub accept: String,
    pub content_type: String,
    pub user_agent: String,
    /// The body as JSON; Null when empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// A decoded query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// A watch request (`watch=true` or `watch=1`).
    pub fn is_watch(&self) -> bool {
        matches!(self.query_param("watch").as_deref(), Some("true" | "1"))
    }
}

/// State shared by the handlers, the watch tasks and the test.
pub(crate) struct Shared {
    store: Mutex<Store>,
    requests: Mutex<Vec<(RecordedRequest, SocketAddr)>>,
    /// The latest resourceVersion, sent after every write: wakes watches.
    changes: tokio::sync::watch::Sender<u64>,
    /// Bumped by `drop_watches()`: open watches abort.
    drops: tokio::sync::watch::Sender<u64>,
    /// Bumped by `compact()`: open watches end with a 410 ERROR event.
    compactions: tokio::sync::watch::Sender<u64>,
    /// Open watches: id → the drop generation they were opened in.
    watches: Mutex<HashMap<u64, u64>>,
    next_watch: AtomicU64,
    /// `127.0.0.1:port`, for `/api`'s serverAddressByClientCIDRs.
    address: String,
}

/// A poisoned lock only means another handler panicked; the data is fine.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// Wakes the watches after a write.
    fn notify(&self) {
        let rv = self.store().rv;
        self.changes.send_replace(rv);
    }

    fn record(&self, req: &http::Request, peer: SocketAddr) {
        let recorded = RecordedRequest {
            method: req.method.to_string(),
            path: req.path.clone(),
            query: req.raw_query.clone(),
            accept: req.accept.clone(),
            content_type: req.content_type.clone(),
            user_agent: req.user_agent.clone(),
            body: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
        };
        lock(&self.requests).push((recorded, peer));
    }

    fn register_watch(self: &Arc<Self>, generation: u64) -> watch::Registration {
        let id = self.next_watch.fetch_add(1, Ordering::Relaxed);
        lock(&self.watches).insert(id, generation);
        watch::Registration {
            shared: self.clone(),
            id,
        }
    }

    fn unregister_watch(&self, id: u64) {
        lock(&self.watches).remove(&id);
    }
}

/// The test API server; stops when dropped.
pub struct TestApiServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Namespaces every cluster (with Flux installed) has.
const INITIAL_NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "flux-system",
];

impl TestApiServer {
    /// Starts on 127.0.0.1:0 (plain HTTP, no auth) on its own runtime thread.
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-apiserver")
            .enable_all()
            .build()
            .expect("apiserver runtime");
        // A std listener: `block_on` is not allowed inside an async test.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind apiserver");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let address = listener.local_addr().expect("apiserver address");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            requests: Mutex::new(Vec::new()),
            changes: tokio::sync::watch::channel(0).0,
            drops: tokio::sync::watch::channel(0).0,
            compactions: tokio::sync::watch::channel(0).0,
            watches: Mutex::new(HashMap::new()),
            next_watch: AtomicU64::new(0),
            address: address.to_string(),
        });
        {
            let namespaces = resources::find("", "v1", "namespaces").expect("namespaces");
            let mut store = shared.store();
            for name in INITIAL_NAMESPACES {
                let object =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                objects::create(&mut store, namespaces, "", object, false).expect("seed namespace");
            }
        }
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(shared.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{address}"),
            shared,
            runtime: Some(runtime),
        }
    }

    /// Writes a kubeconfig (cluster server = url, plain HTTP, default
    /// namespace flux-system) into `dir`; returns its path (for KUBECONFIG).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: test\n  cluster:\n    server: {url}\n\
             users:\n\
             - name: test\n  user: {{}}\n\
             contexts:\n\
             - name: test\n  context:\n    cluster: test\n    user: test\n    namespace: flux-system\n\
             current-context: test\n",
            url = self.url
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// A kube client for the test itself (default namespace flux-system).
    /// Must be called inside a tokio runtime.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().expect("server url"));
        config.default_namespace = "flux-system".into();
        kube::Client::try_from(config).expect("kube client")
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests)
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// The client address of every request (same order as `requests()`):
    /// one address is one TCP connection, so this shows connection reuse.
    pub fn peers(&self) -> Vec<SocketAddr> {
        lock(&self.shared.requests)
            .iter()
            .map(|(_, p)| *p)
            .collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Aborts every open watch connection (the client sees the connection
    /// drop mid-stream); returns once all of them are closed.
    pub fn drop_watches(&self) {
        self.shared.drops.send_modify(|g| *g += 1);
        let generation = *self.shared.drops.borrow();
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&self.shared.watches)
            .values()
            .any(|opened| *opened < generation)
        {
            assert!(Instant::now() < deadline, "watches did not close");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Forgets watch history (etcd compaction with a watch-cache reset):
    /// every resourceVersion handed out before this call is too old, so a
    /// watch or list resuming from one gets 410 Gone, and open watches end
    /// with a 410 ERROR event. Either way kube's watcher re-lists — even a
    /// client that reconnected between `drop_watches()` and `compact()`.
    pub fn compact(&self) {
        {
            let mut store = self.shared.store();
            store.rv += 1;
            store.compacted = store.rv;
        }
        self.shared.compactions.send_modify(|g| *g += 1);
    }

    /// The current resourceVersion (the last one handed out).
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv
    }

    /// Direct read of a stored object as JSON (group "" for core), None if
    /// absent. Shown at the resource's preferred version.
    pub fn object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let res = resources::RESOURCES
            .iter()
            .find(|r| r.group == group && r.plural == plural)?;
        let key = store::ObjKey::new(res.storage, namespace, name);
        let store = self.shared.store();
        store.get(&key).map(|o| res.render(res.versions[0], o))
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        // Dropping a runtime blocks; tests may drop the server in async code.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Every document of `yaml` (a `kind: List` is expanded), in order.
fn documents(yaml: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let values = herald::yaml::parse_stream(yaml)
        .map_err(anyhow::Error::msg)
        .context("parse YAML documents")?;
    for value in values {
        if value.is_null() {
            continue;
        }
        let is_list = value
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"))
            && value.get("items").is_some_and(Value::is_array);
        match value {
            Value::Object(mut fields) if is_list => {
                if let Some(Value::Array(items)) = fields.remove("items") {
                    out.extend(items);
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Creates every document of a multi-document YAML string through the REST
/// API with `client`, the way `kubectl create -f` does: discovery resolves
/// each kind, then a POST to its collection. Namespace defaults to
/// "default"; cluster-scoped kinds (Namespace) get none.
pub async fn create_yaml(client: &kube::Client, yaml: &str) -> anyhow::Result<()> {
    for value in documents(yaml)? {
        let object: DynamicObject =
            serde_json::from_value(value).context("document is not a Kubernetes object")?;
        let types = object
            .types
            .clone()
            .context("document has no apiVersion and kind")?;
        let gvk = GroupVersionKind::try_from(&types)
            .with_context(|| format!("bad apiVersion {:?}", types.api_version))?;
        let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .with_context(|| format!("discover {}/{}", types.api_version, types.kind))?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => {
                let namespace = object.metadata.namespace.as_deref().unwrap_or("default");
                Api::namespaced_with(client.clone(), namespace, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let name = object.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("create {} {name}", types.kind))?;
    }
    Ok(())
}

//! A real kube-apiserver (with embedded etcd) for controller-mode tests:
//! the Go program under `tests/kube-apiserver/`, built by its `build.sh`
//! into the target directory (Go 1.26 must be installed: without it the
//! tests fail and say so).
//!
//! [`shared()`] is one server per test binary. nextest runs every test in a
//! process of its own, so the processes of one binary share it through files
//! in `target/kube-apiserver/<test binary>/`: each holds a shared flock on
//! `users` for its whole life, the first one starts the server, and the
//! server stops by itself once no process has held that lock for a few
//! seconds (so it also goes away when a test process is killed). Tests on
//! it get a fresh namespace each ([`KubeApi::namespace`]) and run herald
//! with `--watch-all-namespaces=false` in it. [`dedicated()`] starts a
//! server of the test's own (for what touches the whole cluster: watching
//! every namespace, etcd compaction), stopped when dropped.
//!
//! Every server has `crds/crds.yaml`, the test-only Flux source kinds of
//! `flux-kinds.yaml` beside this file, and `deploy/rbac.yaml`'s
//! ClusterRole bound to the non-admin user `herald`, whose kubeconfig herald
//! runs with; each namespace from [`KubeApi::namespace`] gets the
//! leader-election Role bound to that user too. The server's audit log
//! records every request of `herald` ([`KubeApi::audit`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::Scope;
use serde::Deserialize;
use serde_json::{Value, json};

/// The non-admin identity herald runs as (a user of the token file).
pub const HERALD_USER: &str = "herald";
/// Field manager of what the test support applies.
const MANAGER: &str = "herald-tests";
/// How long a shared server outlives its last test process.
const IDLE_EXIT: &str = "10s";
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// What the harness prints once it is ready.
#[derive(Clone, Debug, Deserialize)]
pub struct Endpoints {
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// Kubeconfig of the admin (group system:masters).
    pub admin: PathBuf,
    /// Kubeconfig of the user `herald` (no group but system:authenticated).
    pub herald: PathBuf,
    /// etcd's client URL.
    pub etcd: String,
    /// The API server's audit log: every request of `herald`.
    pub audit: PathBuf,
    pub pid: u32,
}

/// A running kube-apiserver.
pub struct KubeApi {
    pub endpoints: Endpoints,
    log: PathBuf,
    dedicated: Option<Dedicated>,
}

struct Dedicated {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The target directory this test binary was built into
/// (`<target>/<profile>/deps/<binary>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir().join("target"))
}

/// Builds the harness if its sources changed (`tests/kube-apiserver/build.sh`)
/// and returns its path. Panics, saying what to install, without Go.
pub fn harness_binary() -> &'static Path {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BINARY.get_or_init(|| {
        let script = manifest_dir().join("tests/kube-apiserver/build.sh");
        let output = Command::new("bash")
            .arg(&script)
            .env("CARGO_TARGET_DIR", target_dir())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e} (bash is required)", script.display()))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(format!(
                "the kube-apiserver test harness could not be built ({}):\n{stderr}",
                output.status
            ));
        }
        let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Ok(PathBuf::from(path))
    });
    match built {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    }
}

/// The server shared by every test of this test binary (see the module
/// documentation). The first call builds and starts it if needed.
pub fn shared() -> &'static KubeApi {
    static SHARED: OnceLock<KubeApi> = OnceLock::new();
    // Held (shared) for the life of this process: the server stays up.
    static USERS: OnceLock<File> = OnceLock::new();
    SHARED.get_or_init(|| {
        let binary = harness_binary();
        let name = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "tests".into());
        let dir = target_dir().join("kube-apiserver").join(name);
        std::fs::create_dir_all(&dir).expect("harness state directory");
        let users = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("users"))
            .expect("users lock");
        users.lock_shared().expect("lock users");
        let _ = USERS.set(users);
        let start = File::create(dir.join("start.lock")).expect("start lock");
        start.lock().expect("lock start");

        let state = dir.join("server.json");
        let log = dir.join("harness.log");
        let running = std::fs::read_to_string(&state)
            .ok()
            .and_then(|text| serde_json::from_str::<Endpoints>(&text).ok())
            // Alive, and running the binary just built (a rebuilt harness
            // shows as "… (deleted)").
            .filter(|e| {
                let exe = std::fs::read_link(format!("/proc/{}/exe", e.pid));
                exe.is_ok_and(|exe| Some(exe) == std::fs::canonicalize(binary).ok())
            });
        let endpoints = match running {
            Some(endpoints) => endpoints,
            None => {
                let _ = std::fs::remove_file(&state);
                let log_file = File::create(&log).expect("harness log");
                let mut command = Command::new(binary);
                command
                    .arg(format!(
                        "-kubeconfig-dir={}",
                        dir.join("kubeconfig").display()
                    ))
                    .arg("-stdin=false")
                    .arg(format!("-state-file={}", state.display()))
                    .arg(format!("-users-lock={}", dir.join("users").display()))
                    .arg(format!("-idle-exit={IDLE_EXIT}"))
                    .stdin(Stdio::null())
                    .stdout(log_file.try_clone().expect("log"))
                    .stderr(log_file);
                // Its own process group: signals meant for this test
                // process do not reach the server other processes use.
                std::os::unix::process::CommandExt::process_group(&mut command, 0);
                let mut child = command.spawn().expect("start the kube-apiserver harness");
                let deadline = Instant::now() + START_TIMEOUT;
                loop {
                    if let Some(e) = std::fs::read_to_string(&state)
                        .ok()
                        .and_then(|text| serde_json::from_str::<Endpoints>(&text).ok())
                    {
                        // Reaped by nobody: it outlives this process.
                        std::mem::forget(child);
                        break e;
                    }
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "the kube-apiserver harness exited ({status}) before it was ready:\n{}",
                            tail(&log)
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "the kube-apiserver harness was not ready within {START_TIMEOUT:?}:\n{}",
                        tail(&log)
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let api = KubeApi {
            endpoints,
            log,
            dedicated: None,
        };
        api.setup();
        drop(start);
        api
    })
}

/// A server of the caller's own, with extra kube-apiserver flags; stopped
/// when dropped.
pub fn dedicated(extra_args: &[&str]) -> KubeApi {
    let binary = harness_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("harness.log");
    let mut child = Command::new(binary)
        .arg(format!(
            "-kubeconfig-dir={}",
            dir.path().join("kubeconfig").display()
        ))
        .arg("--")
        .args(extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(&log).expect("harness log"))
        .spawn()
        .expect("start the kube-apiserver harness");
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(line);
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let endpoints = loop {
        let ready = lines
            .lock()
            .expect("lines")
            .iter()
            .find_map(|l| serde_json::from_str::<Endpoints>(l).ok());
        if let Some(e) = ready {
            break e;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the kube-apiserver harness exited ({status}) before it was ready:\n{}",
                tail(&log)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the kube-apiserver harness was not ready within {START_TIMEOUT:?}:\n{}",
            tail(&log)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let api = KubeApi {
        endpoints,
        log,
        dedicated: Some(Dedicated {
            child,
            stdin,
            lines,
            _dir: dir,
        }),
    };
    api.setup();
    api
}

/// The last lines of a log file, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Runs a future to completion on a runtime of its own (from sync code).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

static NAMESPACES: AtomicU64 = AtomicU64::new(0);

impl KubeApi {
    /// A kube client with the admin's kubeconfig. Call inside a runtime.
    pub async fn admin_client(&self) -> kube::Client {
        client_from(&self.endpoints.admin).await
    }

    /// A kube client with herald's kubeconfig. Call inside a runtime.
    pub async fn herald_client(&self) -> kube::Client {
        client_from(&self.endpoints.herald).await
    }

    /// herald's kubeconfig (the non-admin user).
    pub fn herald_kubeconfig(&self) -> &Path {
        &self.endpoints.herald
    }

    /// `127.0.0.1:PORT` of the API server.
    pub fn address(&self) -> &str {
        self.endpoints
            .server
            .strip_prefix("https://")
            .unwrap_or(&self.endpoints.server)
    }

    /// herald's kubeconfig pointed at `address` (a proxy) instead, written
    /// into `dir`. The serving certificate is for 127.0.0.1, any port.
    pub fn herald_kubeconfig_via(&self, address: &str, dir: &Path) -> PathBuf {
        let text = std::fs::read_to_string(&self.endpoints.herald).expect("herald kubeconfig");
        let text = text.replace(&self.endpoints.server, &format!("https://{address}"));
        let path = dir.join("herald-via-proxy.kubeconfig");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// The harness's log (kube-apiserver's and etcd's output).
    pub fn log(&self) -> String {
        tail(&self.log)
    }

    /// Creates a fresh namespace named after `prefix`, with
    /// `deploy/rbac.yaml`'s leader-election Role bound to herald in it.
    pub async fn namespace(&self, client: &kube::Client, prefix: &str) -> String {
        let n = NAMESPACES.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let mut prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        prefix = prefix.trim_matches('-').to_owned();
        let name = format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos % 0xffff);
        self.create_namespace(client, &name).await;
        name
    }

    /// Creates namespace `name` (if missing) with the leader-election Role
    /// bound to herald in it.
    pub async fn create_namespace(&self, client: &kube::Client, name: &str) {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace object");
        match namespaces.create(&PostParams::default(), &namespace).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("create namespace {name}: {e}"),
        }
        let (_, namespaced) = rbac_for_herald();
        apply_objects(client, &namespaced, Some(name))
            .await
            .expect("bind the leader-election Role");
    }

    /// Every audit record of the `herald` user so far (stage
    /// ResponseComplete, or ResponseStarted for watches still open).
    pub fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.endpoints.audit).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// herald's requests that the server refused with 403 Forbidden.
    pub fn forbidden(&self) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|r| r["responseStatus"]["code"] == 403)
            .collect()
    }

    /// Fails if the server refused any request of herald's (RBAC), naming
    /// the requests.
    pub fn assert_no_forbidden(&self) {
        self.assert_no_forbidden_in(None);
    }

    /// Fails if the server refused a request of herald's in one of
    /// `namespaces` (all when None) or outside any namespace.
    pub fn assert_no_forbidden_in(&self, namespaces: Option<&[String]>) {
        let refused: Vec<String> = self
            .forbidden()
            .iter()
            .filter(
                |r| match (namespaces, r["objectRef"]["namespace"].as_str()) {
                    (Some(list), Some(ns)) => list.iter().any(|n| n == ns),
                    _ => true,
                },
            )
            .map(|r| format!("{} {}", r["verb"], r["requestURI"]))
            .collect();
        assert!(
            refused.is_empty(),
            "deploy/rbac.yaml does not allow what herald asked for:\n{}",
            refused.join("\n")
        );
    }

    /// How many writes herald made to an object's status subresource
    /// (whatever their effect).
    pub fn status_writes(&self, plural: &str, namespace: &str, name: &str) -> usize {
        self.audit()
            .iter()
            .filter(|r| {
                r["stage"] == "ResponseComplete"
                    && matches!(r["verb"].as_str(), Some("patch" | "update"))
                    && r["objectRef"]["resource"] == plural
                    && r["objectRef"]["subresource"] == "status"
                    && r["objectRef"]["namespace"] == namespace
                    && r["objectRef"]["name"] == name
            })
            .count()
    }

    /// Compacts etcd at its current revision (a dedicated server only);
    /// returns the revision.
    pub fn compact(&mut self) -> i64 {
        let dedicated = self
            .dedicated
            .as_mut()
            .expect("compact() needs a dedicated() server");
        let before = dedicated.lines.lock().expect("lines").len();
        let stdin = dedicated.stdin.as_mut().expect("harness stdin");
        stdin.write_all(b"compact\n").expect("send compact");
        stdin.flush().expect("flush");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = dedicated.lines.lock().expect("lines")[before..]
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v.get("compacted").is_some() || v.get("error").is_some());
            if let Some(answer) = answer {
                return answer["compacted"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("compaction failed: {answer}"));
            }
            assert!(Instant::now() < deadline, "no answer to compact");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Applies the CRDs and the cluster-wide RBAC (idempotent: every test
    /// process does it once, so a server reused after an edit is current).
    fn setup(&self) {
        let result = block_on(async {
            let client = self.admin_client().await;
            let crds = std::fs::read_to_string(manifest_dir().join("crds/crds.yaml"))
                .context("read crds/crds.yaml")?;
            let flux =
                std::fs::read_to_string(manifest_dir().join("tests/support/flux-kinds.yaml"))
                    .context("read tests/support/flux-kinds.yaml")?;
            let mut objects = documents(&crds)?;
            objects.extend(documents(&flux)?);
            apply_objects(&client, &objects, None)
                .await
                .context("apply the CRDs")?;
            wait_established(&client, &objects).await?;
            let (cluster, _) = rbac_for_herald();
            apply_objects(&client, &cluster, None)
                .await
                .context("apply deploy/rbac.yaml's ClusterRole")?;
            anyhow::Ok(())
        });
        if let Err(e) = result {
            panic!("setting up the API server failed: {e:#}\n{}", self.log());
        }
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        let Some(dedicated) = self.dedicated.as_mut() else {
            return;
        };
        // Closing stdin stops the harness cleanly.
        drop(dedicated.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = dedicated.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = dedicated.child.kill();
        let _ = dedicated.child.wait();
    }
}

/// A shared or a dedicated server.
pub enum Server {
    Shared(&'static KubeApi),
    Dedicated(Box<KubeApi>),
}

impl Deref for Server {
    type Target = KubeApi;
    fn deref(&self) -> &KubeApi {
        match self {
            Server::Shared(api) => api,
            Server::Dedicated(api) => api,
        }
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut KubeApi {
        match self {
            Server::Shared(_) => panic!("the shared server cannot be changed"),
            Server::Dedicated(api) => api,
        }
    }
}

pub async fn client_from(kubeconfig: &Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(config).expect("kube client")
}

/// `deploy/rbac.yaml` bound to the user `herald` instead of the
/// ServiceAccount: (cluster-wide objects, namespaced objects). The rules are
/// the file's own.
pub fn rbac_for_herald() -> (Vec<Value>, Vec<Value>) {
    let text = std::fs::read_to_string(manifest_dir().join("deploy/rbac.yaml"))
        .expect("read deploy/rbac.yaml");
    let mut cluster = Vec::new();
    let mut namespaced = Vec::new();
    for mut object in documents(&text).expect("parse deploy/rbac.yaml") {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        if kind.ends_with("Binding") {
            object["subjects"] = json!([{
                "kind": "User",
                "name": HERALD_USER,
                "apiGroup": "rbac.authorization.k8s.io",
            }]);
        }
        match kind.as_str() {
            "ClusterRole" | "ClusterRoleBinding" => cluster.push(object),
            "Role" | "RoleBinding" => namespaced.push(object),
            other => panic!("deploy/rbac.yaml: unexpected kind {other}"),
        }
    }
    (cluster, namespaced)
}

/// Every document of `yaml` (a `kind: List` is expanded), in order.
pub fn documents(yaml: &str) -> anyhow::Result<Vec<Value>> {
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

/// The typed API for an object's kind, through discovery (retried briefly:
/// a CRD's kinds show in discovery a moment after it is established).
pub async fn api_for(
    client: &kube::Client,
    object: &Value,
    namespace: Option<&str>,
) -> anyhow::Result<(Api<DynamicObject>, String)> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (resource, capabilities) = loop {
        match kube::discovery::pinned_kind(client, &gvk).await {
            Ok(found) => break found,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("discover {api_version} {kind}")),
        }
    };
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let api = match capabilities.scope {
        Scope::Namespaced => {
            let ns = namespace
                .or(object["metadata"]["namespace"].as_str())
                .unwrap_or("default");
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    Ok((api, name))
}

/// Server-side applies each object (namespaced ones into `namespace` when
/// given, else their own or "default").
pub async fn apply_objects(
    client: &kube::Client,
    objects: &[Value],
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    for object in objects {
        let mut object = object.clone();
        let (api, name) = api_for(client, &object, namespace).await?;
        if let Some(ns) = namespace
            && object["metadata"].get("namespace").is_some()
        {
            object["metadata"]["namespace"] = json!(ns);
        }
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .with_context(|| format!("apply {} {name}", object["kind"]))?;
    }
    Ok(())
}

/// Creates each object (POST, as `kubectl create`), namespaced ones in
/// `namespace` when given.
pub async fn create_objects(
    client: &kube::Client,
    objects: &[Value],
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    for object in objects {
        let mut object = object.clone();
        let (api, name) = api_for(client, &object, namespace).await?;
        if let Some(ns) = namespace
            && object["metadata"].get("namespace").is_some()
        {
            object["metadata"]["namespace"] = json!(ns);
        }
        let object: DynamicObject =
            serde_json::from_value(object.clone()).context("not a Kubernetes object")?;
        api.create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("create {name}"))?;
    }
    Ok(())
}

/// Waits until every CRD among `objects` is Established.
pub async fn wait_established(client: &kube::Client, objects: &[Value]) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for object in objects {
        if object["kind"] != "CustomResourceDefinition" {
            continue;
        }
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let crd = crds
                .get(name)
                .await
                .with_context(|| format!("get {name}"))?;
            let established = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "CRD {name} not established: {:?}",
                crd.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// kstatus's own reading (`sigs.k8s.io/cli-utils/pkg/kstatus`, what
/// Flux's health checks use) of each object, through the harness's
/// `kstatus` mode: `{"status": "Current" | "InProgress" | "Failed" | …,
/// "message": …}` per object.
pub fn kstatus(objects: &[Value]) -> Vec<Value> {
    use std::io::Write as _;
    let mut child = Command::new(harness_binary())
        .arg("kstatus")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the harness's kstatus");
    let mut input = String::new();
    for object in objects {
        input.push_str(&object.to_string());
        input.push('\n');
    }
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write objects");
    let output = child.wait_with_output().expect("kstatus");
    assert!(output.status.success(), "kstatus failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("kstatus JSON"))
        .collect()
}

/// Builds the flux CLI from Go modules if needed (`tests/flux-cli/build.sh`)
/// and returns its path. Panics, saying why, when it cannot be built.
pub fn flux_binary() -> &'static Path {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    go_built(&BINARY, "tests/flux-cli/build.sh", "the flux CLI")
}

/// Builds Flux's notification-controller from Go modules if needed
/// (`tests/flux-controller/build.sh`) and returns its path. Panics, saying
/// why, when it cannot be built.
pub fn flux_controller_binary() -> &'static Path {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    go_built(
        &BINARY,
        "tests/flux-controller/build.sh",
        "Flux's notification-controller",
    )
}

/// Builds the program around Flux's event recorder from Go modules if
/// needed (`tests/flux-recorder/build.sh`) and returns its path.
pub fn flux_recorder_binary() -> &'static Path {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    go_built(
        &BINARY,
        "tests/flux-recorder/build.sh",
        "Flux's event recorder",
    )
}

/// Runs a build script that prints the path of what it built, once per
/// test process.
fn go_built<'a>(cell: &'a OnceLock<Result<PathBuf, String>>, script: &str, what: &str) -> &'a Path {
    let built = cell.get_or_init(|| {
        let script = manifest_dir().join(script);
        let output = Command::new("bash")
            .arg(&script)
            .env("CARGO_TARGET_DIR", target_dir())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e} (bash is required)", script.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{what} could not be built ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(PathBuf::from(
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        ))
    });
    match built {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    }
}

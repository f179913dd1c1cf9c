#!/usr/bin/env python3
"""Controller mode at scale, against a real kube-apiserver (the test harness
in tests/kube-apiserver): N Alerts, N Providers, N Secrets the Providers
reference and N Secrets nothing references, over 100 namespaces. Then
`herald controller` starts (as the non-admin user bound to deploy/rbac.yaml)
and the script reports:

* time from start to the first routing table holding all N Alerts (the
  "routing table loaded" log line);
* RSS once that table is loaded, and 10 s later;
* herald's API requests during start-up, by verb and resource (from the
  API server's audit log at Metadata level): a LIST+WATCH per kind, one GET
  per referenced Secret, nothing per unrelated object.

Usage: bench/controller_scale.py [--objects N] [--runs R]   (default 10000, 1)
HERALD_BIN: the binary to start (default: the release build); several,
separated by `:`, are started in turn on the same objects, R times each.
Needs: go (the harness; tests/kube-apiserver/build.sh builds it), cargo,
python3 with PyYAML.
"""

import argparse
import base64
import collections
import concurrent.futures
import http.client
import json
import os
import pathlib
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAMESPACES = 100
METADATA_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: Metadata
    users: ["herald"]
  - level: None
"""


class Api:
    """A minimal client for the admin user: enough to create objects fast."""

    def __init__(self, kubeconfig):
        config = yaml.safe_load(pathlib.Path(kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        self.host = cluster["server"].removeprefix("https://")
        self.token = config["users"][0]["user"]["token"]
        self.context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        self.local = threading.local()

    def connection(self):
        if not hasattr(self.local, "conn"):
            self.local.conn = http.client.HTTPSConnection(self.host, context=self.context)
        return self.local.conn

    def post(self, path, body):
        conn = self.connection()
        conn.request("POST", path, json.dumps(body), {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
        })
        response = conn.getresponse()
        text = response.read()
        if response.status not in (200, 201, 409):
            raise RuntimeError(f"POST {path}: {response.status} {text[:300]!r}")


def path_of(obj):
    version = obj["apiVersion"]
    kind = obj["kind"]
    plural = {"Namespace": "namespaces", "Secret": "secrets", "Alert": "alerts",
              "Provider": "providers", "ClusterRole": "clusterroles",
              "ClusterRoleBinding": "clusterrolebindings",
              "CustomResourceDefinition": "customresourcedefinitions"}[kind]
    base = "/api/v1" if version == "v1" else f"/apis/{version}"
    namespace = obj.get("metadata", {}).get("namespace")
    if namespace:
        return f"{base}/namespaces/{namespace}/{plural}"
    return f"{base}/{plural}"


def objects(n):
    """Namespaces, then per i: a referenced Secret, an unrelated Secret, a
    Provider and an Alert (each Alert its own exclusion regex)."""
    for ns in range(NAMESPACES):
        yield {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{ns:03d}"}}
    for i in range(n):
        ns = f"ns-{i % NAMESPACES:03d}"
        app = f"app-{i // NAMESPACES}"
        yield {"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": f"hook-{i}", "namespace": ns},
               "stringData": {"address": f"http://127.0.0.1:19595/hook/{i}"}}
        yield {"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": f"unrelated-{i}", "namespace": ns},
               "stringData": {"password": "x" * 64}}
        yield {"apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Provider",
               "metadata": {"name": f"slack-{i}", "namespace": ns},
               "spec": {"type": "slack", "secretRef": {"name": f"hook-{i}"}}}
        yield {"apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
               "metadata": {"name": f"alert-{i}", "namespace": ns},
               "spec": {"providerRef": {"name": f"slack-{i}"},
                        "eventSources": [{"kind": "Kustomization", "name": app}],
                        "exclusionList": [f"^(no changes|unchanged) in {ns}/{app}\\b"]}}


def rbac_for_herald():
    """deploy/rbac.yaml's ClusterRole and ClusterRoleBinding, bound to the
    harness's user `herald`."""
    out = []
    for obj in yaml.safe_load_all((ROOT / "deploy/rbac.yaml").read_text()):
        if obj and obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            if obj["kind"].endswith("Binding"):
                obj["subjects"] = [{"kind": "User", "name": "herald",
                                    "apiGroup": "rbac.authorization.k8s.io"}]
            out.append(obj)
    return out


def rss_mib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_once(label, herald_bin, ready, n):
    """Starts herald on the server's objects, reports its first table, RSS
    and API requests, and stops it."""
    print(f"--- {label}: {herald_bin}")
    audit = pathlib.Path(ready["audit"])
    audit_start = audit.stat().st_size if audit.exists() else 0

    env = dict(os.environ, KUBECONFIG=ready["herald"], RUNTIME_NAMESPACE="ns-000",
               POD_NAME="herald-bench")
    t0 = time.time()
    # HERALD_WRAP (e.g. "heaptrack -o /tmp/herald") runs herald under a profiler.
    wrap = os.environ.get("HERALD_WRAP", "").split()
    herald = subprocess.Popen(
        wrap + [str(herald_bin), "controller", "--events-addr=127.0.0.1:0",
         "--metrics-addr=127.0.0.1:0", "--health-addr=127.0.0.1:0",
         "--receiverAddr=127.0.0.1:0", "--log-encoding=json",
         f"--log-level={os.environ.get('HERALD_LOG_LEVEL', 'info')}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first_table = None
    timeline = []
    for line in herald.stderr:
        try:
            log = json.loads(line)
        except ValueError:
            continue
        fields = {k: v for k, v in log.items()
                  if k not in ("timestamp", "level", "target", "message")}
        timeline.append(f"  {time.time() - t0:6.2f} s  {log.get('message')} {fields}")
        if log.get("message") == "routing table loaded" and log.get("alerts") == n:
            first_table = time.time() - t0
            break
        if time.time() - t0 > 120:
            break
    threading.Thread(target=lambda: [None for _ in herald.stderr], daemon=True).start()
    if first_table is None:
        print("herald did not load every Alert within 120 s")
        return 1
    rss_loaded = rss_mib(herald.pid)
    time.sleep(1)
    rss_second = rss_mib(herald.pid)
    time.sleep(9)
    rss_later = rss_mib(herald.pid)
    print(f"first routing table with {n} Alerts: {first_table:.2f} s after start "
          f"(goal <= 3 s); herald's log until then:")
    print("\n".join(timeline[-12:]))
    print(f"RSS once loaded: {rss_loaded:.1f} MiB; 1 s later: {rss_second:.1f} MiB; "
          f"10 s later: {rss_later:.1f} MiB "
          f"(goal <= 100 MiB)")
    herald.send_signal(signal.SIGTERM)
    herald.wait(timeout=60)

    counts = collections.Counter()
    unrelated = 0
    with audit.open() as f:
        f.seek(audit_start)
        for line in f:
            entry = json.loads(line)
            if entry.get("user", {}).get("username") != "herald":
                continue
            if entry.get("stage") != "ResponseComplete":
                continue
            ref = entry.get("objectRef", {})
            verb = entry.get("verb")
            resource = ref.get("resource", entry.get("requestURI", "").split("?")[0])
            counts[(verb, resource)] += 1
            if resource == "secrets" and ref.get("name", "").startswith("unrelated-"):
                unrelated += 1
    print("herald's API requests during the run (verb resource: count):")
    for (verb, resource), count in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {verb} {resource}: {count}")
    secret_gets = counts.get(("get", "secrets"), 0)
    print(f"Secret GETs: {secret_gets} for {n} referenced Secrets "
          f"(the rest are re-reads of Secrets that changed during their read); "
          f"requests naming an unrelated Secret: {unrelated}")
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    n = args.objects
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    harness = subprocess.run([str(ROOT / "tests/kube-apiserver/build.sh")], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "herald"], check=True,
                   cwd=ROOT)
    herald_bin = target / "release" / "herald"
    load = open("/proc/loadavg").read().split()[:3]
    print(f"machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}; "
          f"load average {' '.join(load)}")

    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        (work / "policy.yaml").write_text(METADATA_POLICY)
        server = subprocess.Popen(
            [harness, f"-kubeconfig-dir={work}", f"-data-dir={work / 'data'}", "-stdin=false",
             "-etcd-compaction-interval=0", "--", f"--audit-policy-file={work / 'policy.yaml'}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            ready = json.loads(server.stdout.readline())
            api = Api(ready["admin"])
            for crd in yaml.safe_load_all((ROOT / "crds/crds.yaml").read_text()):
                if crd:
                    api.post(path_of(crd), crd)
            for obj in rbac_for_herald():
                api.post(path_of(obj), obj)
            time.sleep(2)  # CRDs established
            started = time.time()
            every = list(objects(n))
            for obj in every[:NAMESPACES]:
                api.post(path_of(obj), obj)
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda o: api.post(path_of(o), o), every[NAMESPACES:]))
            print(f"created {len(every)} objects in {time.time() - started:.0f}s "
                  f"({n} Alerts, {n} Providers, {n} referenced + {n} unrelated Secrets)")
            bins = os.environ.get("HERALD_BIN", str(herald_bin)).split(":")
            for run in range(args.runs):
                for binary in bins:
                    label = f"run {run + 1}" + (f", binary {bins.index(binary) + 1}" if len(bins) > 1 else "")
                    if start_once(label, binary, ready, n):
                        return 1
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())

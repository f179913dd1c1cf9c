#!/usr/bin/env python3
"""Checks herald's install manifests: deploy/ (rendered by kubectl kustomize)
and charts/herald (rendered by Helm's own engine, through helm-python-sdk).

* every document parses and is of a kind that exists;
* references inside them resolve (roleRefs, service accounts, selectors,
  named ports);
* the chart and deploy/ agree on RBAC rules, container ports and Services;
* the chart's CRDs are crds/crds.yaml;
* `helm lint` finds no errors.

Writes the rendered manifests to --out for checkov. Exit status 1 on any
problem, each printed on one line.
"""

import argparse
import json
import pathlib
import subprocess
import sys

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]

KNOWN_KINDS = {
    ("v1", "Namespace"), ("v1", "ServiceAccount"), ("v1", "Service"),
    ("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def parse(text, where):
    docs = []
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            problem(where, f"document is not a mapping: {doc!r}")
            continue
        docs.append(doc)
    return docs


def render_deploy():
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy")],
                         check=True, capture_output=True, text=True).stdout
    return out, parse(out, "deploy/")


def render_chart(values):
    with helm.Chart.load(str(ROOT / "charts/herald")) as chart:
        rendered = chart.render(values, name="herald", namespace="flux-system")
    text = "\n---\n".join(rendered[k] for k in sorted(rendered))
    return text, parse(text, f"charts/herald {values}")


def index(docs):
    return {(d.get("kind"), d.get("metadata", {}).get("name")): d for d in docs}


def check_kinds(docs, where):
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key not in KNOWN_KINDS:
            problem(where, f"unknown kind {key}")
        if not doc.get("metadata", {}).get("name"):
            problem(where, f"{key} has no metadata.name")


def check_references(docs, where):
    objects = index(docs)
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in ("RoleBinding", "ClusterRoleBinding"):
            ref = doc["roleRef"]
            if (ref["kind"], ref["name"]) not in objects:
                problem(where, f"{kind} {name} refers to missing {ref['kind']} {ref['name']}")
            for subject in doc.get("subjects", []):
                if subject["kind"] == "ServiceAccount" and ("ServiceAccount", subject["name"]) not in objects:
                    problem(where, f"{kind} {name} binds missing ServiceAccount {subject['name']}")
    deployment = objects.get(("Deployment", "notification-controller"))
    if deployment is None:
        problem(where, "no Deployment notification-controller")
        return
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    if any(labels.get(k) != v for k, v in selector.items()):
        problem(where, "Deployment selector does not match its pod labels")
    account = pod["spec"].get("serviceAccountName")
    if ("ServiceAccount", account) not in objects:
        problem(where, f"Deployment uses missing ServiceAccount {account}")
    ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    for (kind, name), doc in objects.items():
        if kind != "Service":
            continue
        if any(labels.get(k) != v for k, v in doc["spec"]["selector"].items()):
            problem(where, f"Service {name} selects no herald pod")
        for port in doc["spec"]["ports"]:
            target = port.get("targetPort")
            if isinstance(target, str) and target not in ports:
                problem(where, f"Service {name} targets unknown port name {target}")
    for probe in ("livenessProbe", "readinessProbe"):
        for container in pod["spec"]["containers"]:
            port = container.get(probe, {}).get("httpGet", {}).get("port")
            if port not in ports:
                problem(where, f"{probe} uses unknown port {port}")


def rules(docs):
    return {(d["kind"], d["metadata"]["name"]): d.get("rules")
            for d in docs if d["kind"] in ("ClusterRole", "Role")}


def surface(docs):
    """What must be the same in both: RBAC, container ports, Service ports."""
    objects = index(docs)
    deployment = objects[("Deployment", "notification-controller")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    services = {name: doc["spec"]["ports"] for (kind, name), doc in objects.items()
                if kind == "Service" and name in ("notification-controller", "webhook-receiver")}
    return {
        "rules": rules(docs),
        "container ports": container["ports"],
        "services": services,
        "security": container["securityContext"],
        "network policies": sorted(
            (json.dumps(doc["spec"], sort_keys=True) for (kind, _), doc in objects.items()
             if kind == "NetworkPolicy")),
    }


FLUX_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: notification-controller
  namespace: flux-system
spec:
  selector:
    matchLabels: {app: notification-controller}
  template:
    metadata:
      labels: {app: notification-controller}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: manager
          image: ghcr.io/fluxcd/notification-controller:v1.9.3
          args: [--watch-all-namespaces=true, --log-level=info, --log-encoding=json, --enable-leader-election]
"""


# herald's default --shutdown-timeout, plus the moment it takes to log what
# is abandoned and close connections.
DRAIN_SECONDS = 25 + 5


def check_grace_period(docs, where):
    """The pod outlives herald's drain, so every "not delivered" line is
    written before the kubelet's SIGKILL."""
    objects = docs if isinstance(docs, dict) else index(docs)
    deployment = objects[("Deployment", "notification-controller")]
    grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    if grace <= DRAIN_SECONDS:
        problem(where, f"terminationGracePeriodSeconds {grace} does not outlast herald's drain ({DRAIN_SECONDS}s)")


def check_spool():
    """With spool.enabled the pod mounts a claim that exists at the path
    --spool-dir names, and a ReadWriteOnce volume is never attached twice."""
    text, chart = render_chart({"spool": {"enabled": True}})
    where = "charts/herald (spool)"
    claims = {d["metadata"]["name"] for d in chart if d["kind"] == "PersistentVolumeClaim"}
    deployment = next(d for d in chart if d["kind"] == "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    claim = volumes.get("spool", {}).get("persistentVolumeClaim", {}).get("claimName")
    if claim not in claims:
        problem(where, f"the spool volume's claim {claim!r} is not rendered")
    if f"--spool-dir={mounts.get('spool')}" not in container["args"]:
        problem(where, "--spool-dir does not name the spool volume's mount path")
    if spec.get("strategy", {}).get("type") != "Recreate":
        problem(where, "a ReadWriteOnce spool volume needs the Recreate strategy")
    try:
        render_chart({"spool": {"enabled": True}, "replicas": 2})
        problem(where, "replicas: 2 with one spool volume is rendered instead of refused")
    except Exception as e:  # Helm's `fail`
        if "replicas: 1" not in str(e):
            problem(where, f"replicas: 2 refused without saying why: {e}")
    return text


def check_monitoring():
    """deploy/monitoring/ (kustomize) and the chart's monitoring values render
    the same dashboard ConfigMap (labelled for Grafana's sidecar) and the
    same PrometheusRule; the dashboard is valid JSON."""
    where = "monitoring"
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy/monitoring")],
                         check=True, capture_output=True, text=True).stdout
    kustomized = index(parse(out, "deploy/monitoring/"))
    text, chart = render_chart({"monitoring": {"dashboard": {"enabled": True},
                                               "prometheusRule": {"enabled": True}}})
    check_kinds(chart, "charts/herald (monitoring)")
    charted = index(chart)
    for key in [("ConfigMap", "herald-dashboard"), ("PrometheusRule", "herald")]:
        if key not in kustomized or key not in charted:
            problem(where, f"{key} is not rendered by both")
            continue
    dashboards = [json.loads(objects[("ConfigMap", "herald-dashboard")]["data"]["herald-dashboard.json"])
                  for objects in (kustomized, charted)]
    if dashboards[0] != dashboards[1]:
        problem(where, "the chart's dashboard differs from deploy/monitoring's")
    for objects, source in [(kustomized, "deploy/monitoring"), (charted, "charts/herald")]:
        labels = objects[("ConfigMap", "herald-dashboard")]["metadata"].get("labels", {})
        if labels.get("grafana_dashboard") != "1":
            problem(where, f"{source}: the dashboard ConfigMap lacks grafana_dashboard: \"1\"")
    if kustomized[("PrometheusRule", "herald")]["spec"] != charted[("PrometheusRule", "herald")]["spec"]:
        problem(where, "the chart's PrometheusRule differs from deploy/monitoring's")
    _, plain = render_chart({})
    if any(d["kind"] in ("PrometheusRule",) or d["metadata"]["name"] == "herald-dashboard" for d in plain):
        problem(where, "monitoring objects are rendered by default")
    return text


def check_cluster_name():
    """clusterName becomes --cluster-name; empty (the default) adds nothing."""
    where = "charts/herald (clusterName)"
    for values, expected in [({}, None), ({"clusterName": "prod-eu-1"}, "--cluster-name=prod-eu-1")]:
        _, chart = render_chart(values)
        args = next(d for d in chart if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        named = [a for a in args if a.startswith("--cluster-name")]
        if named != ([expected] if expected else []):
            problem(where, f"with {values} the args name the cluster as {named}")


def check_replace_flux():
    """The README's recipe, applied to Flux's own CRDs and a Flux-like
    Deployment: herald's image and herald's CRDs come out."""
    import tempfile
    reference = ROOT / "tests/fixtures/flux-crds"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        flux = "\n---\n".join((reference / f).read_text() for f in ("alerts.yaml", "providers.yaml", "receivers.yaml"))
        (tmp / "gotk-components.yaml").write_text(flux + "\n---\n" + FLUX_DEPLOYMENT)
        (tmp / "gotk-sync.yaml").write_text("")
        (tmp / "herald-crds.yaml").write_text((ROOT / "crds/crds.yaml").read_text())
        (tmp / "kustomization.yaml").write_text((ROOT / "examples/replace-flux/kustomization.yaml").read_text())
        out = subprocess.run(["kubectl", "kustomize", str(tmp)], capture_output=True, text=True)
        if out.returncode != 0:
            problem("examples/replace-flux", f"kustomize failed: {out.stderr.strip()}")
            return
        docs = index(parse(out.stdout, "examples/replace-flux"))
        image = docs[("Deployment", "notification-controller")]["spec"]["template"]["spec"]["containers"][0]["image"]
        if not image.startswith("registry.example.com/herald"):
            problem("examples/replace-flux", f"image not swapped: {image}")
        check_grace_period(docs, "examples/replace-flux")
        for name in ("alerts.notification.toolkit.fluxcd.io", "providers.notification.toolkit.fluxcd.io"):
            versions = docs[("CustomResourceDefinition", name)]["spec"]["versions"]
            if [v["name"] for v in versions] != ["v1beta1", "v1beta2", "v1beta3", "v1"]:
                problem("examples/replace-flux", f"{name}: versions {[v['name'] for v in versions]}")
            if any("status" not in v.get("subresources", {}) for v in versions):
                problem("examples/replace-flux", f"{name}: no status subresource")
        receivers = docs[("CustomResourceDefinition", "receivers.notification.toolkit.fluxcd.io")]["spec"]["versions"]
        if [v["name"] for v in receivers] != ["v1"]:
            problem("examples/replace-flux", f"receivers: versions {[v['name'] for v in receivers]}")


def check_docker_context():
    """The files the Dockerfile's build stage copies are enough for Cargo
    to read the workspace (no Docker engine runs here to build the image)."""
    import shutil
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for line in (ROOT / "Dockerfile").read_text().splitlines():
            words = line.split()
            if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
                continue
            *sources, dest = words[1:]
            for source in map(pathlib.Path, sources):
                origin = ROOT / source
                if origin.is_dir():
                    shutil.copytree(origin, tmp / dest, dirs_exist_ok=True)
                else:
                    (tmp / dest).mkdir(parents=True, exist_ok=True)
                    shutil.copy(origin, tmp / dest / source.name)
        out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--locked", "--no-deps"],
                             cwd=tmp, capture_output=True, text=True)
        if out.returncode != 0:
            problem("Dockerfile", f"the build context is not a valid Cargo workspace: {out.stderr.strip()[:300]}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, help="directory for the rendered manifests")
    out = pathlib.Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)

    deploy_text, deploy = render_deploy()
    (out / "deploy.yaml").write_text(deploy_text)
    check_kinds(deploy, "deploy/")
    check_references(deploy, "deploy/")
    check_grace_period(deploy, "deploy/")
    if "NetworkPolicy" not in {d["kind"] for d in deploy}:
        problem("deploy/", "no NetworkPolicy: events must be accepted only from the Flux namespace")

    for label, values in [("chart-default", {}),
                          ("chart-all", {"serviceMonitor": {"enabled": True},
                                         "networkPolicy": {"enabled": True},
                                         "replicas": 2})]:
        text, chart = render_chart(values)
        (out / f"{label}.yaml").write_text(text)
        where = f"charts/herald ({label})"
        check_kinds(chart, where)
        check_references(chart, where)
        check_grace_period(chart, where)
        ours, theirs = surface(chart), surface(deploy)
        for key in ours:
            if ours[key] != theirs[key]:
                problem(where, f"{key} differ from deploy/: {ours[key]} != {theirs[key]}")
        kinds = {d["kind"] for d in chart}
        if values and not {"ServiceMonitor", "NetworkPolicy"} <= kinds:
            problem(where, "ServiceMonitor and NetworkPolicy not rendered when enabled")

    chart_crds = (ROOT / "charts/herald/crds/crds.yaml").read_text()
    if chart_crds != (ROOT / "crds/crds.yaml").read_text():
        problem("charts/herald/crds/crds.yaml", "differs from crds/crds.yaml (copy it over)")
    check_kinds(parse(chart_crds, "chart crds"), "charts/herald/crds")

    (out / "chart-spool.yaml").write_text(check_spool())
    check_cluster_name()
    (out / "chart-monitoring.yaml").write_text(check_monitoring())
    check_replace_flux()
    check_docker_context()

    lint = helm.lint(str(ROOT / "charts/herald"))
    for message in lint.get("messages", []):
        if message.get("severity", 0) >= 3:
            problem("helm lint", f"{message.get('path')}: {message.get('error')}")
    for error in lint.get("errors", []) or []:
        problem("helm lint", str(error))

    for line in problems:
        print(line)
    print(f"manifests: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

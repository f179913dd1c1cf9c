#!/usr/bin/env python3
"""herald against Flux's notification-controller v1.9.3 (built from the Go
module proxy by tests/flux-controller/build.sh, as for the side-by-side
test), in turn on the same kube-apiserver (the harness in
tests/kube-apiserver), with many candidate Alerts.

For each size N: a fresh kube-apiserver holding, in namespace `bench`, N
Alerts, all on eventSources [{kind: Kustomization, name: "*"}], Alert i
with its own inclusionList `^team-<i>: ` and its own `generic` Provider
(the sink's http address, path /hook/<i>). Every Alert is a candidate for
every event and each event (message `team-<i>: ...`, i spread over
0..N-1, every message unique) reaches exactly one. Then rounds alternate herald (as the user
bound to deploy/rbac.yaml) and Flux (as admin), each a fresh process:
start, wait until it routes (herald: its routing table holds N Alerts;
both: a probe event reaches the sink) and its start-up work is done, then
`wrk -t2 -c16 -d<seconds>s` (bench/candidates.lua). Reported per round:

* accepted events/s (2xx answers over wrk's duration), p50/p99, non-2xx;
* delivered/s: notifications counted at the sink (bench/tools sink) from
  the load's start to the last one seen, waiting up to 60 s after the load
  for delivered == accepted (delivered may exceed accepted by the <= 16
  requests in flight when wrk stops: wrk does not count their answers);
* RSS once loaded, right after the load and deliveries, and 5 s later.

Then per N herald÷Flux (accepted/s, RSS), and herald's rate at the largest
N ÷ at the smallest (goal >= 0.70).

Usage: bench/vs_flux.py [--alerts 1000 10000] [--rounds 2] [--seconds 10]
                       [--controllers herald flux]
       bench/vs_flux.py --quick        (100 and 300 Alerts, 3 s, 1 round)
HERALD_BIN and SINK_BIN, when both set, are used instead of building with
cargo. Needs go (the harness, Flux), cargo, wrk (installed with apt-get
when missing and root), python3 with PyYAML.
"""

import argparse
import concurrent.futures
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from controller_scale import Api, path_of, rbac_for_herald, rss_mib  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
NS = "bench"
V1BETA3 = "notification.toolkit.fluxcd.io/v1beta3"
NO_AUDIT = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: None\n"
DELIVERY_WAIT = 60


def build_path(script):
    out = subprocess.run([str(ROOT / script)], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def rust_binaries():
    herald, sink = os.environ.get("HERALD_BIN"), os.environ.get("SINK_BIN")
    if herald and sink:
        return herald, sink
    subprocess.run(["cargo", "build", "--release", "--quiet", "--workspace", "--bins"],
                   check=True, cwd=ROOT)
    release = ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "release"
    return str(release / "herald"), str(release / "sink")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, body=None):
    """(status, text), or (None, '') when nothing answers."""
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pids, limit=180):
    """Waits until these processes together use under 10% of a core for a
    second (start-up work such as herald's status writes is done)."""
    started = time.time()
    while time.time() - started < limit:
        before = sum(map(cpu_seconds, pids))
        time.sleep(1)
        if sum(map(cpu_seconds, pids)) - before < 0.1:
            break
    return time.time() - started


def create_objects(api, n, sink_url):
    """Namespace `bench`; per i, Provider team-i (generic, the sink's path
    /hook/i: a destination of its own, as herald delivers to each one in
    order, one request at a time) and Alert team-i."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    api.post(path_of(namespace), namespace)
    every = []
    for i in range(n):
        every.append({"apiVersion": V1BETA3, "kind": "Provider",
                      "metadata": {"name": f"team-{i:05d}", "namespace": NS},
                      "spec": {"type": "generic", "address": f"{sink_url}/{i:05d}"}})
        every.append({"apiVersion": V1BETA3, "kind": "Alert",
                      "metadata": {"name": f"team-{i:05d}", "namespace": NS},
                      "spec": {"providerRef": {"name": f"team-{i:05d}"},
                               "eventSeverity": "info",
                               "eventSources": [{"kind": "Kustomization", "name": "*"}],
                               "inclusionList": [f"^team-{i:05d}: "]}})
    deadline = time.time() + 60
    while True:  # until the CRDs are established
        try:
            api.post(path_of(every[0]), every[0])
            break
        except RuntimeError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda o: api.post(path_of(o), o), every[1:]))


class Controller:
    """herald or Flux, started fresh, ready when it routes a probe event."""

    def __init__(self, name, binary, ready, work, n, sink):
        self.name, self.sink = name, sink
        events, health = free_port(), free_port()
        self.events = f"http://127.0.0.1:{events}/"
        self.log = work / f"{name}.log"
        common = [f"--events-addr=127.0.0.1:{events}", f"--health-addr=127.0.0.1:{health}",
                  f"--metrics-addr=127.0.0.1:{free_port()}",
                  f"--receiverAddr=127.0.0.1:{free_port()}"]
        if name == "herald":
            args = [binary, "controller", "--log-encoding=json"] + common
            env = dict(os.environ, KUBECONFIG=ready["herald"], RUNTIME_NAMESPACE=NS,
                       POD_NAME="herald-bench")
        else:
            args = [binary, "--enable-leader-election=false",
                    "--watch-all-namespaces=true"] + common
            env = dict(os.environ, KUBECONFIG=ready["admin"], RUNTIME_NAMESPACE=NS)
        started = time.time()
        with self.log.open("w") as log:
            self.process = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = started + 180
        try:
            while http(f"http://127.0.0.1:{health}/readyz")[0] != 200:
                self.check(deadline, "never became ready")
                time.sleep(0.05)
            while name == "herald" and not self.table_loaded(n):
                self.check(deadline, f"never loaded {n} Alerts")
                time.sleep(0.05)
            self.probe(deadline)
        except BaseException:
            self.stop()
            raise
        self.ready_after = time.time() - started

    def check(self, deadline, what):
        if self.process.poll() is not None or time.time() > deadline:
            tail = "".join(self.log.read_text().splitlines(True)[-20:])
            raise RuntimeError(f"{self.name} {what}; its log ends:\n{tail}")

    def table_loaded(self, n):
        for line in self.log.read_text().splitlines():
            if '"routing table loaded"' in line and json.loads(line).get("alerts") == n:
                return True
        return False

    def probe(self, deadline):
        """Posts events for Alert 0 until one reaches the sink."""
        before = sink_count(self.sink)
        k = 0
        while sink_count(self.sink) == before:
            self.check(deadline, "never delivered a probe event")
            k += 1
            event = {"involvedObject": {"kind": "Kustomization", "name": "app",
                                        "namespace": NS},
                     "severity": "info", "reason": "Probe", "timestamp": "2026-11-20T07:26:19Z",
                     "reportingController": "kustomize-controller",
                     "message": f"team-00000: probe {time.time_ns()} {k}"}
            http(self.events, json.dumps(event).encode())
            time.sleep(0.2)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def sink_count(port):
    status, text = http(f"http://127.0.0.1:{port}/count")
    return int(text.split()[0]) if status == 200 else 0


def to_ms(text):
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 6e4)):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * scale
    return float(text)


def parse_wrk(text):
    out = {"requests": 0, "duration": 1.0, "non2xx": 0, "timeouts": 0, "p50": 0.0, "p99": 0.0}
    for line in text.splitlines():
        words = line.split()
        if " requests in " in line:
            out["requests"] = int(words[0])
            out["duration"] = to_ms(words[3].rstrip(",")) / 1e3
        elif line.strip().startswith("Non-2xx"):
            out["non2xx"] = int(words[-1])
        elif line.strip().startswith("Socket errors"):
            out["timeouts"] = int(words[-1])
        elif words[:1] in (["50%"], ["99%"]):
            out["p" + words[0][:-1]] = to_ms(words[1])
    return out


def load(controller, n, seconds):
    """wrk against the controller, then the sink until everything accepted
    arrived (or DELIVERY_WAIT passed)."""
    sink = controller.sink
    before = last = sink_count(sink)
    started = last_at = time.time()
    wrk = subprocess.Popen(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--timeout", "10s", "--latency",
         "-s", str(ROOT / "bench/candidates.lua"), controller.events,
         "--", str(n), NS, f"{time.time_ns()}-"],
        stdout=subprocess.PIPE, text=True)
    accepted, deadline = None, None
    while True:
        now = sink_count(sink)
        if now != last:
            last, last_at = now, time.time()
        if accepted is None and wrk.poll() is not None:
            stats = parse_wrk(wrk.stdout.read())
            accepted = stats["requests"] - stats["non2xx"]
            deadline = time.time() + DELIVERY_WAIT
        if accepted is not None and (last - before >= accepted or time.time() > deadline):
            break
        time.sleep(0.05)
    delivered = last - before
    return dict(stats, accepted=accepted, delivered=delivered,
                accepted_rate=accepted / stats["duration"],
                delivered_rate=delivered / max(last_at - started, 1e-3) if delivered else 0.0)


def start_server(harness, work):
    (work / "policy.yaml").write_text(NO_AUDIT)
    with (work / "server.log").open("w") as log:
        server = subprocess.Popen(
            [harness, f"-kubeconfig-dir={work}", f"-data-dir={work / 'data'}", "-stdin=false",
             "-etcd-compaction-interval=0", "--", f"--audit-policy-file={work / 'policy.yaml'}"],
            stdout=subprocess.PIPE, stderr=log, text=True)
    line = server.stdout.readline()
    if not line:
        raise RuntimeError(f"kube-apiserver did not start: {(work / 'server.log').read_text()}")
    return server, json.loads(line)


def size(n, args, bins, sink_port):
    """One kube-apiserver with N Alerts, rounds alternating herald and Flux."""
    results = []
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        server, ready = start_server(bins["harness"], work)
        try:
            api = Api(ready["admin"])
            for obj in [c for c in yaml.safe_load_all((ROOT / "crds/crds.yaml").read_text()) if c]:
                api.post(path_of(obj), obj)
            for obj in rbac_for_herald():
                api.post(path_of(obj), obj)
            t0 = time.time()
            create_objects(api, n, f"http://127.0.0.1:{sink_port}/hook")
            print(f"N={n}: created {n} Providers and {n} Alerts in {time.time() - t0:.1f} s",
                  flush=True)
            for round_ in range(1, args.rounds + 1):
                for name in args.controllers:
                    controller = Controller(name, bins[name], ready, work, n, sink_port)
                    try:
                        quiet = settle([controller.process.pid, server.pid])
                        rss_loaded = rss_mib(controller.process.pid)
                        r = load(controller, n, args.seconds)
                        rss_after = rss_mib(controller.process.pid)
                        # herald gives memory back a few seconds after
                        # events stop (as bench/scale.sh measures it).
                        time.sleep(5)
                        r.update(n=n, name=name, round=round_, rss_loaded=rss_loaded,
                                 rss_after=rss_after, rss_settled=rss_mib(controller.process.pid))
                    finally:
                        controller.stop()
                    results.append(r)
                    print(f"N={n} {name} round {round_}: routing after "
                          f"{controller.ready_after:.1f} s, quiet after {quiet:.1f} s more; "
                          f"accepted {r['accepted']} ({r['accepted_rate']:.0f}/s), delivered "
                          f"{r['delivered']} ({r['delivered_rate']:.0f}/s), "
                          f"p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms", flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    return results


def median(results, n, name, key):
    values = [r[key] for r in results if r["n"] == n and r["name"] == name]
    return statistics.median(values) if values else 0.0


def ratio(a, b):
    return f"{a / b:.2f}" if b else "n/a"


def report(results, sizes):
    print("\n| N | controller | round | accepted/s | delivered/s | delivered/accepted "
          "| p50 ms | p99 ms | non-2xx | timeouts | RSS loaded MiB | RSS after MiB "
          "| RSS 5 s after MiB |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| ---: |")
    for r in results:
        print(f"| {r['n']} | {r['name']} | {r['round']} | {r['accepted_rate']:.0f} "
              f"| {r['delivered_rate']:.0f} | {r['delivered']}/{r['accepted']} "
              f"| {r['p50']:.2f} | {r['p99']:.2f} | {r['non2xx']} | {r['timeouts']} "
              f"| {r['rss_loaded']:.1f} | {r['rss_after']:.1f} | {r['rss_settled']:.1f} |")
    if {r["name"] for r in results} == {"herald", "flux"}:
        print("\n| N | herald÷Flux accepted/s | herald÷Flux delivered/s "
              "| herald÷Flux RSS loaded | herald÷Flux RSS after |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for n in sizes:
            cells = [ratio(median(results, n, "herald", k), median(results, n, "flux", k))
                     for k in ("accepted_rate", "delivered_rate", "rss_loaded", "rss_after")]
            print(f"| {n} | " + " | ".join(cells) + " |")
    low, high = min(sizes), max(sizes)
    if low != high:
        for key in ("accepted_rate", "delivered_rate"):
            herald, flux = (ratio(median(results, high, name, key), median(results, low, name, key))
                            for name in ("herald", "flux"))
            print(f"{key.replace('_rate', '')}/s at {high} Alerts ÷ at {low} (medians): "
                  f"herald {herald} (goal >= 0.70), Flux {flux}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="100 and 300 Alerts, 3 s, 1 round")
    parser.add_argument("--controllers", nargs="+", default=["herald", "flux"],
                        choices=["herald", "flux"], help="which to run (default both)")
    args = parser.parse_args()
    if args.quick:
        args.alerts, args.seconds, args.rounds = [100, 300], 3, 1
    if not shutil.which("wrk"):
        subprocess.run("apt-get update -qq && apt-get install -y -qq wrk", shell=True, check=True)
    bins = {"harness": build_path("tests/kube-apiserver/build.sh"),
            "flux": build_path("tests/flux-controller/build.sh")}
    bins["herald"], sink_bin = rust_binaries()
    uname = os.uname()
    print(f"machine: {os.cpu_count()} cores, {uname.sysname} {uname.release}; load average "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    print(f"shape: N Alerts each with its own inclusionList and generic Provider, every "
          f"Alert a candidate for every event; wrk -t2 -c16 -d{args.seconds}s; "
          f"{args.rounds} round(s) of herald then Flux per N", flush=True)
    sink = subprocess.Popen([sink_bin, "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    try:
        sink_port = int(sink.stderr.readline().rsplit(":", 1)[1])
        results = []
        for n in args.alerts:
            results += size(n, args, bins, sink_port)
    finally:
        sink.terminate()
        sink.wait()
    report(results, args.alerts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

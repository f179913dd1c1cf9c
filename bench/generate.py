#!/usr/bin/env python3
"""Writes N Alerts and N Providers (and their Secrets) over 100 namespaces.

generate.py DIR N WEBHOOK [--distinct]

Every Alert watches one exactly named Kustomization (`app-<i // 100>` in
`ns-<i % 100>`), so an event for `app-0` in `ns-001` matches exactly one
Alert (Alert 1), and the N Alerts are matched by N distinct events.
Providers point at WEBHOOK, each through its own Secret.

Without --distinct every Alert has the same exclusion regex and every
Provider the same address. With --distinct, the shapes users have: each
Alert its own exclusion regex (naming its app), each Provider its own
address (WEBHOOK/<i>: distinct paths on one host, as Slack webhooks are).
"""
import os
import sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
distinct = "--distinct" in sys.argv[1:]
out, count, webhook = args[0], int(args[1]), args[2]
os.makedirs(out, exist_ok=True)
namespaces = 100
with open(os.path.join(out, "generated.yaml"), "w") as f:
    for i in range(count):
        ns = f"ns-{i % namespaces:03d}"
        app = f"app-{i // namespaces}"
        address = f"{webhook}/{i}" if distinct else webhook
        exclusion = f"^(no changes|unchanged) in {ns}/{app}\\\\b" if distinct else "^noise"
        f.write(f"""---
apiVersion: v1
kind: Secret
metadata: {{name: hook-{i}, namespace: {ns}}}
stringData: {{address: "{address}"}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {{name: slack-{i}, namespace: {ns}}}
spec: {{type: slack, secretRef: {{name: hook-{i}}}}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {{name: alert-{i}, namespace: {ns}}}
spec:
  providerRef: {{name: slack-{i}}}
  eventSources: [{{kind: Kustomization, name: {app}}}]
  exclusionList: ["{exclusion}"]
""")

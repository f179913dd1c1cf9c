#!/usr/bin/env python3
"""Writes N Alerts and N Providers (and their Secrets) over 100 namespaces.

generate.py DIR N WEBHOOK [MATCHING_NAMESPACE]

Every Alert watches one exactly named Kustomization (`app-<i>`), so an event
for `app-0` in `ns-001` matches exactly one Alert. Providers point at
WEBHOOK, each through its own Secret.
"""
import os
import sys

out, count, webhook = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(out, exist_ok=True)
namespaces = 100
with open(os.path.join(out, "generated.yaml"), "w") as f:
    for i in range(count):
        ns = f"ns-{i % namespaces:03d}"
        f.write(f"""---
apiVersion: v1
kind: Secret
metadata: {{name: hook-{i}, namespace: {ns}}}
stringData: {{address: "{webhook}"}}
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
  eventSources: [{{kind: Kustomization, name: app-{i // namespaces}}}]
  exclusionList: ["^noise"]
""")

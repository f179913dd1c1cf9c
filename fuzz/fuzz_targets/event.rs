//! Event bodies as Flux's controllers (or anyone) POST them: parsing and
//! routing never panic, whatever the bytes.
#![no_main]

use std::sync::OnceLock;

use herald::api::FluxEvent;
use herald::routing::{RoutingTable, TableOptions};
use libfuzzer_sys::fuzz_target;

const MANIFESTS: &str = r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: slack, namespace: flux-system}
spec: {type: slack, address: 'https://hooks.example.com/x'}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: all, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSeverity: info
  eventSources: [{kind: Kustomization, name: '*'}, {kind: GitRepository, name: app}]
  exclusionList: ['^\d+ skipped', '(?i)dry-run']
  template: {text: '{{ object.kind }} {{ message | upper }} {{ revision | commit }}'}
"#;

fn table() -> &'static RoutingTable {
    static TABLE: OnceLock<RoutingTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let (snapshot, _) =
            herald::source::manifests::load_text(std::path::Path::new("fuzz.yaml"), MANIFESTS);
        herald::routing::build(&snapshot, &TableOptions::default()).0
    })
}

fuzz_target!(|body: &[u8]| {
    if let Ok(event) = FluxEvent::from_json(body) {
        for notification in table().notifications(event) {
            let _ = notification.render();
        }
    }
});

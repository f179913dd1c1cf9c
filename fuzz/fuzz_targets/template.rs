//! Alert templates: compiling and rendering any text never panics, and a
//! render that fails leaves the default format (the notification is kept).
#![no_main]

use herald::api::FluxEvent;
use herald::routing::TableOptions;
use libfuzzer_sys::fuzz_target;

const EVENT: &str = r#"{"involvedObject":{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"Kustomization","name":"app","namespace":"flux-system"},
"severity":"error","message":"Deployment/app dry-run failed","reason":"ReconciliationFailed",
"metadata":{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"},
"reportingController":"kustomize-controller"}"#;

fuzz_target!(|template: &str| {
    let text = serde_json::to_string(template).unwrap_or_default();
    let manifests = format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: slack, namespace: flux-system}}\n\
         spec: {{type: slack, address: 'https://hooks.example.com/x'}}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: a, namespace: flux-system}}\n\
         spec:\n  providerRef: {{name: slack}}\n  eventSources: [{{kind: Kustomization, name: '*'}}]\n\
         \x20 template: {{text: {text}, blocks: {text}, threadKey: {text}}}\n"
    );
    let (snapshot, _) =
        herald::source::manifests::load_text(std::path::Path::new("fuzz.yaml"), &manifests);
    let (table, _) = herald::routing::build(&snapshot, &TableOptions::default());
    let Ok(event) = FluxEvent::from_json(EVENT.as_bytes()) else {
        return;
    };
    for notification in table.notifications(event) {
        let _ = notification.render();
    }
});

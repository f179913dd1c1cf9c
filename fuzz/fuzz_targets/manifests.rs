//! Manifest files (Alerts, Providers, Secrets, anything else): loading and
//! building the routing table never panic, whatever the text.
#![no_main]

use herald::routing::TableOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let (snapshot, _) = herald::source::manifests::load_text(std::path::Path::new("fuzz.yaml"), text);
    let _ = herald::routing::build(&snapshot, &TableOptions::default());
});

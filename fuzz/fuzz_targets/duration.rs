//! Go-style durations as flags and Provider timeouts give them: parsing
//! never panics, and what it accepts is a finite Duration.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(duration) = herald::duration::parse(text) {
        let _ = std::time::Instant::now().checked_add(duration);
    }
});

//! The condition types herald writes, as Flux's controllers and kstatus
//! (what Flux's health checks read) name them.

/// Whether the object is configured and working.
pub const READY: &str = "Ready";
/// Failed, and will not fix itself without a change to the object
/// (kstatus: Failed).
pub const STALLED: &str = "Stalled";
/// Still working on it, or waiting for something that may come
/// (kstatus: InProgress).
pub const RECONCILING: &str = "Reconciling";

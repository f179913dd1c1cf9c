//! Controller mode: the Kubernetes side of herald. A config source built on
//! kube-rs watchers feeds the same routing table as the manifest directory;
//! status conditions and Events are written back; a Lease elects the one
//! replica that writes status.

pub mod events;
pub mod labels;
pub mod leader;
pub mod snapshot;
pub mod source;
pub mod status;

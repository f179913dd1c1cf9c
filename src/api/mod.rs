//! The API herald serves: the Alert, Provider and Receiver CRDs, Flux's event, severities.

pub mod alert;
pub mod condition;
pub mod crd;
pub mod decode;
pub mod event;
pub mod provider;
pub mod reason;
pub mod receiver;
pub mod severity;

pub use alert::{
    Alert, AlertSpec, AlertStatus, DigestSpec, EventSource, LocalReference, MessageTemplate,
};
pub use decode::{DecodeError, Decoded, Undecodable};
pub use event::{EventError, FluxEvent, InvolvedObject};
pub use provider::{Provider, ProviderSpec, ProviderStatus, ProviderType};
pub use reason::Reason;
pub use receiver::{Receiver, ReceiverResource, ReceiverSpec, ReceiverStatus, ReceiverType};
pub use severity::{Severity, SeverityFilter, SeverityMask};

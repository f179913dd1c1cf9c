//! Flux's incoming webhooks (`Receiver`, DESIGN §3.13): the webhook path,
//! each type's verification, CEL filters, and the server on `--receiverAddr`
//! that annotates the targets of a verified request.

pub mod annotate;
pub mod oidc;
pub mod replay;
pub mod server;
pub mod table;
pub mod verify;

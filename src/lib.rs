//! herald: a drop-in replacement for Flux's notification-controller.
//!
//! Data flows top-down through the modules: [`api`] (resource and event
//! types) → [`source`] (snapshots of Alerts, Providers, Secrets) →
//! [`routing`] (the immutable routing table) → [`receiver`] (the event
//! endpoint) → [`dispatch`] (per-destination queues and retries) →
//! [`providers`] (one module per notification service).

pub mod api;
pub mod cli;
pub mod cluster;
pub mod dispatch;
pub mod duration;
pub mod http;
pub mod mask;
pub mod memory;
pub mod metrics;
pub mod providers;
pub mod receiver;
pub mod report;
pub mod routing;
pub mod runtime;
pub mod source;
pub mod template;
pub mod yaml;

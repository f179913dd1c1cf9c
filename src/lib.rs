//! herald: a drop-in replacement for Flux's notification-controller.
//!
//! Data flows top-down through the modules: [`api`] (resource and event
//! types) → [`source`] (snapshots of Alerts, Providers, Secrets) →
//! [`routing`] (the immutable routing table) → [`receiver`] (the event
//! endpoint) → [`dispatch`] (per-destination queues, retries, the HTTP
//! clients) → [`providers`] (one module per notification service, each
//! turning a [`notification::Notification`] into a request).
//! [`notification`] and [`transport`] are plain values routing produces and
//! the modules below it read, so no two modules import each other.

pub mod api;
pub mod api_error;
pub mod cel;
pub mod cli;
pub mod cluster;
pub mod discovery;
pub mod dispatch;
pub mod duration;
pub mod expiring;
pub mod goregex;
pub mod hex;
pub mod http;
pub mod mask;
pub mod memory;
pub mod metrics;
pub mod notification;
pub mod parallel;
pub mod providers;
pub mod receiver;
pub mod report;
pub mod routing;
pub mod runtime;
pub mod source;
pub mod spool;
pub mod template;
pub mod transport;
pub mod webhook;
pub mod yaml;

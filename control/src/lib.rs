//! # hub-control — the control plane
//!
//! Owns what the people and machines that run the hub talk to: today the node's health and
//! readiness, and its Prometheus metrics; tenants, roles, credentials, jobs, conflicts, dead
//! letters and audit arrive with the control-plane issue.
//!
//! Depends on: metrics-exporter-prometheus, axum. Must not know about: Kafka loops, vendors,
//! mappings.

pub mod observability;

//! # hub-connectors — what the hub knows about each vendor
//!
//! One folder per vendor, each with the same parts: auth, read, write, events, errors. Today:
//! `salesforce` (the protocol logic — error classification, incremental SOQL with cursors,
//! sObject Collections upsert, API limits) and `hubspot` (the protocol logic — webhook v3 signatures and deliveries, error classification
//! and rate-limit headers, batch upsert, windowed search; client and auth to come), the hub's
//! own generic webhook contract (`generic`: the HMAC signature scheme every generic sender and
//! the hub's webhook sink use), the one error classification every connector reports in
//! (`error`), and the vendor time formats that ingest and transform both parse (`timefmt`).
//!
//! Depends on: nothing of the hub's. Must not know about: Kafka, topics, the canonical model.

pub mod error;
pub mod generic;
pub mod http;
pub mod hubspot;
pub mod oauth;
pub mod salesforce;
pub mod timefmt;

//! # hub-connectors — what the hub knows about each vendor
//!
//! One folder per vendor (`salesforce/`, `hubspot/`, … arrive with their issues), each with the
//! same parts: auth, read, write, events, errors. Today it holds the hub's own generic webhook
//! contract (`generic`: the HMAC signature scheme every generic sender and the hub's webhook
//! sink use) and the vendor time formats that ingest and transform both parse.
//!
//! Depends on: nothing of the hub's. Must not know about: Kafka, topics, the canonical model.

pub mod error;
pub mod generic;
pub mod timefmt;

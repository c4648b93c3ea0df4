//! # hub-sandbox — faithful stand-ins for the vendors' APIs
//!
//! Owns one simulator per vendor: HTTP servers reproducing each documented contract — auth,
//! paging, batch limits, rate limits, signed webhooks, error bodies — with fault knobs and a
//! clock tests can move, seeded from a deterministic generator. No machine here reaches a
//! vendor, so every connector is proven against these. Today: [`hubspot`] (vendor-apis.md §3) and
//! [`salesforce`] (§2); each starts in-process on an ephemeral port
//! (`HubSpotSandbox::start(config).await?.base_url()`), and `hub sandbox` runs both.
//! [`common`] holds what they share: clock, faults, server, PRNG, fictional dealership data, VINs.
//!
//! Depends on: `hub-connectors` only for vendor facts it must not duplicate (the HubSpot v3
//! webhook signer). Must not know about: Kafka, topics, the canonical model — a simulator speaks
//! only its vendor's wire format. Logs carry no personal data.

pub mod common;
pub mod hubspot;
pub mod salesforce;

pub use common::faults::FaultSettings;
pub use common::server::StartError;
pub use hubspot::{HubSpotConfig, HubSpotSandbox};
pub use salesforce::{SalesforceConfig, SalesforceSandbox};

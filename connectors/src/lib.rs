//! # hub-connectors — what the hub knows about each vendor
//!
//! One folder per vendor, each with the same parts — **auth** (get and refresh credentials),
//! **read** (incremental pull by cursor, bulk path for initial loads), **write** (batch upsert
//! by external id with per-record results), **events** (the vendor's change notifications,
//! verified) — each usable alone. Pure protocol modules (`read`, `write`, `errors`, …) build
//! requests and parse responses; `client`/`auth`/`events` add the I/O. Today: `salesforce`
//! (§2) and `hubspot` (§3).
//!
//! Shared by every vendor: [`http`] — the one HTTP path (a `reqwest` client, the shared
//! `governor` rate limiter configured from the vendor's published limits, `backon` retries
//! honouring `Retry-After`, refresh-once on auth errors, the budget guard, and API call
//! accounting through [`http::ApiMeter`] and `hub_vendor_api_calls_total`); [`usage`] — each
//! tenant's and connector's calls against the vendor's daily and per-window limits, with the
//! low-budget warning; [`oauth`] —
//! `state`, PKCE and the in-memory token cell; [`error`] — the one error classification every
//! connector reports in (transient / auth / rate-limited / permanent, §1.2); the hub's own
//! generic webhook contract ([`generic`]); and the vendor time formats ingest and transform
//! both parse ([`timefmt`]).
//!
//! Contract tests against the sandboxes (`hub-sandbox`, a dev-dependency) are in `tests/`;
//! each also runs against a real vendor account when credentials are in the environment.
//!
//! Depends on: nothing of the hub's (the sandbox only in tests). Must not know about: Kafka, topics, the canonical model.

pub mod build;
pub mod error;
pub mod generic;
pub mod http;
pub mod hubspot;
pub mod oauth;
pub mod salesforce;
pub mod timefmt;
pub mod usage;

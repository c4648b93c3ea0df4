//! # HubSpot — what the hub knows about HubSpot's CRM API (vendor-apis.md §3)
//!
//! The protocol logic, pure and offline: request bodies are built and responses parsed here; the
//! HTTP client that sends them lives with the connector's runtime and knows nothing of HubSpot's
//! shapes. Facts come from vendor-apis.md §3 and are cited by section where they matter.
//!
//! | Part | What it does | Used by |
//! |---|---|---|
//! | [`events`] | Verifies webhook deliveries (`X-HubSpot-Signature-v3`: base64 HMAC-SHA256 of method + URI + body + timestamp, 5-minute freshness, §3.8) and parses the JSON array of events into [`events::WebhookEvent`]s. | ingest |
//! | [`read`] | Builds search requests for incremental reads (last-modified `GTE` start and `LT` end, ascending, `after` paging, §3.4), parses pages, and narrows a time window whose total passes the 10,000-results-per-query cap. | ingest |
//! | [`write`] | Builds batch upsert bodies by a unique `idProperty` (at most 100 inputs per call, §3.5) and maps each result or multi-status (207) error back to its input. | sink |
//! | [`errors`] | Classifies an error response into [`crate::error::VendorError`] (§1.2, §3.6) and reads the `X-HubSpot-RateLimit-*` headers (§3.7). | all |
//!
//! Still to come (issue 4): `config.rs` (tenant's app, tier limits, path prefix `crm/v3/objects`
//! or `crm/objects/2026-03`), `auth.rs` (private-app tokens, OAuth 2.0 refresh), the client.
//!
//! Example config, once `config.rs` exists (shape not final):
//!
//! ```yaml
//! connector: hubspot
//! auth: { kind: private_app, token_env: HUBSPOT_TOKEN }
//! path_prefix: /crm/v3/objects
//! objects: [contacts, deals, companies]
//! webhook_secret_env: HUBSPOT_CLIENT_SECRET
//! ```

pub mod auth;
pub mod client;
pub mod errors;
pub mod events;
pub mod read;
pub mod write;

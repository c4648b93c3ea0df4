//! # HubSpot — what the hub knows about HubSpot's CRM API (vendor-apis.md §3)
//!
//! The protocol logic is pure and offline (request bodies built, responses parsed); the I/O
//! around it lives in [`client`] and [`auth`], through the shared [`crate::http`] path. Facts
//! come from vendor-apis.md §3 and are cited by section where they matter.
//!
//! | Part | What it does | Used by |
//! |---|---|---|
//! | [`auth`] | Private-app token, or OAuth 2.0 code + refresh (`/oauth/v1/token`, configurable path, `expires_in` 1800 s), tokens in memory behind a lock, refresh once on 401 (§3.1). | all |
//! | [`client`] | [`client::HubSpotClientConfig`] (tier limits → the shared limiter, path prefix) and [`client::HubSpotClient`]: windowed incremental search with narrowing past 10,000 and `after` paging, range reads for initial loads, batch read (≤ 100), batch upsert (≤ 100, 207 → per-input outcomes), webhook events → fetched objects. | ingest, sink |
//! | [`events`] | Verifies webhook deliveries (`X-HubSpot-Signature-v3`: base64 HMAC-SHA256 of method + URI + body + timestamp, 5-minute freshness, §3.8), parses the JSON array of events into [`events::WebhookEvent`]s, and says which objects to fetch. | ingest |
//! | [`read`] | Builds search requests for incremental reads (last-modified `GTE` start and `LT` end, ascending, `after` paging, §3.4), parses pages, and narrows a time window whose total passes the 10,000-results-per-query cap. | ingest |
//! | [`write`] | Builds batch upsert bodies by a unique `idProperty` (at most 100 inputs per call, §3.5) and maps each result or multi-status (207) error back to its input. | sink |
//! | [`errors`] | Classifies an error response into [`crate::error::VendorError`] (§1.2, §3.6) and reads the `X-HubSpot-RateLimit-*` headers (§3.7). | all |
//!
//! Contract tests: `connectors/tests/hubspot_contract.rs` (sandbox, or a real account with
//! `HUB_CONTRACT_HUBSPOT_URL` / `HUB_CONTRACT_HUBSPOT_TOKEN`).
//!
//! Example config (the client part deserialises into [`client::HubSpotClientConfig`]; the
//! topology's connector wrapper is not built yet):
//!
//! ```yaml
//! connector: hubspot
//! auth: { kind: private_app, token_env: HUBSPOT_TOKEN }
//! client: { base_url: https://api.hubapi.com, path_prefix: /crm/v3/objects, requests_per_10s: 190, search_per_second: 5, headroom: 0.9 }
//! objects: [contacts, deals, companies]
//! webhook_secret_env: HUBSPOT_CLIENT_SECRET
//! ```

pub mod auth;
pub mod client;
pub mod errors;
pub mod events;
pub mod read;
pub mod write;

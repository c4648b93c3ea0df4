//! # hub-control — the control plane
//!
//! Owns what the people and machines that run the hub talk to. Today:
//! - [`observability`]: the node's health, readiness and Prometheus metrics;
//! - [`store`]: the control-plane database (SQLite embedded, PostgreSQL shared), with its
//!   migrations — tenants, users, memberships, platform admins, sessions, API tokens,
//!   encrypted connector credentials, wrapped tenant data keys, sign-in attempts;
//!   [`store::audit`], the append-only, hash-chained audit log (append, list, CSV/JSON export,
//!   `verify_audit` naming every edited, deleted or truncated entry; `hub audit` in the
//!   binary); [`store::jobs`], sync jobs and schedules (`claim_due` creates each scheduled
//!   slot's job exactly once across nodes; start/heartbeat/finish under a lease that another
//!   node takes over when it lapses; cancel; "sync now"); [`store::usage`], vendor API calls
//!   per tenant, connector and UTC day, summed over the nodes by upsert, with the limits in
//!   force and the vendor's own last count (Salesforce's `Sforce-Limit-Info`), which wins;
//! - [`masking`]: masks personal data (e-mail addresses, phones, names, addresses, identity
//!   and credit details) in JSON before it is kept where it should not be in clear;
//! - [`auth`]: roles (`viewer` < `operator` < `admin` < `owner`), the [`auth::Caller`] and
//!   its one access rule (another tenant's object is 404, too low a role is 403), argon2id
//!   passwords, random bearer tokens kept only as SHA-256, the session cookie's attributes;
//! - [`crypto`]: AES-256-GCM envelope encryption — a data key per tenant, wrapped by the
//!   master key from `HUB_MASTER_KEY` / `HUB_MASTER_KEY_FILE`, re-wrappable on rotation;
//! - [`secret::Secret`]: the wrapper that keeps secrets out of `Debug`, logs and JSON;
//! - [`api`]: the REST API under `/api/v1` (first slice) — sign-in/out and `me`, tenants,
//!   members, API tokens, write-only credentials, audit list and export, sync jobs ("sync
//!   now", cancel), schedules; bearer tokens or session cookie plus CSRF header; one error
//!   shape; every route registered with what it needs, walked by the authorization-matrix
//!   test (every endpoint × every caller × own/other tenant); the OpenAPI 3.1 document,
//!   generated from the handlers with `utoipa` and served at `GET /api/v1/openapi.json`
//!   ([`api::openapi`]), tested to list exactly the registered endpoints; per-tenant request
//!   limits (keyed `governor` limiters — by the path's tenant, by the caller elsewhere —
//!   applied by the guard after the access check, `429 rate_limited` with `Retry-After`,
//!   sized by [`api::ApiConfig`], documented on every authenticated operation); and
//!   `GET /tenants/{tenant}/api-usage` (viewer): per connector the vendor, the daily and
//!   per-window limits, today's use and remaining budget, the low-budget warning flag and the
//!   daily history.
//!
//! Still to come from the control-plane issue (5): mounting the API in the node (it has no
//! control store yet), the rest of the API (connector configuration CRUD and "test
//! connection", OAuth2 authorization-code flows with state and PKCE, conflicts and dead
//! letters, compliance report, analytics, the
//! `/api/v1/ws/sync-monitor` WebSocket), the scheduler loop that drives
//! `claim_due`/`start_job` on each node. Vendor API budgets are counted in
//! `hub_connectors::usage` and flushed here by the node (`hub/src/usage.rs`); the API does
//! not yet refuse work when a budget is spent — the connectors' budget guard does.
//!
//! Depends on: sqlx, argon2, aes-gcm, metrics-exporter-prometheus, axum, utoipa, governor,
//! chrono. Must not know about:
//! Kafka loops, vendors, mappings.

// The API is new code: keep every public item of it documented.
#[warn(missing_docs)]
pub mod api;
pub mod auth;
pub mod crypto;
pub mod error;
pub mod masking;
pub mod observability;
pub mod secret;
pub mod store;

pub use auth::{Access, Caller, Principal, Role, TenantId, UserId};
pub use crypto::MasterKey;
pub use error::{ControlError, Result};
pub use secret::Secret;
pub use store::{Backend, ControlStore, StoreSettings};

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
//!   node takes over when it lapses; cancel; "sync now"); [`store::desk`], the conflicts and
//!   dead-letters desk (rows the hub's feeder materializes from `<ns>.conflicts` and the DLQs,
//!   idempotent by source offset; both sides of a conflict and a dead letter's original
//!   record sealed with the tenant's data key; compare-and-set status changes so a conflict
//!   is submitted and a dead letter replayed or discarded at most once);
//!   node takes over when it lapses; cancel; "sync now"); [`store::connectors`], connector
//!   configurations (vendor, endpoint, auth type, sync settings, mappings/filters/
//!   transformations checked for shape, enabled flag driving the schedule, optimistic
//!   version) and the OAuth2 flows' single-use, expiring `state` with its sealed PKCE verifier;
//!   node takes over when it lapses; cancel; "sync now"); [`store::compliance`], the FTC
//!   Safeguards Rule report of a tenant and period (access with roles and last use, credential
//!   age and rotations, failed sign-ins, data exports, master-key rotations; `hub audit
//!   compliance` in the binary). Pool sizes are [`StoreSettings::max_connections`], SQLite's
//!   commit durability [`StoreSettings::sqlite_durable_commits`];
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
//!   now", cancel), schedules; the conflicts and dead-letters desk (list and filter
//!   conflicts, both sides field by field, resolve one or many per field; list, inspect,
//!   replay — one, a filter's or all — and discard dead letters), whose actions enter the
//!   pipeline through the [`api::PipelineGateway`] the node hands in (501 without one);
//!   members, API tokens, connector configurations (CRUD, enable/disable, "test
//!   connection"), write-only credentials of configured connectors, the OAuth2
//!   authorization-code flow with `state` and PKCE (start, public callback), audit list and
//!   export, sync jobs ("sync now", cancel), schedules; the vendor-side calls behind the
//!   [`api::ConnectorCheck`] trait, which the hub binary implements (501 without one);
//!   bearer tokens or session cookie plus CSRF header; one error
//!   shape; every route registered with what it needs, walked by the authorization-matrix
//!   test (every endpoint × every caller × own/other tenant); the OpenAPI 3.1 document,
//!   generated from the handlers with `utoipa` and served at `GET /api/v1/openapi.json`
//!   ([`api::openapi`]), tested to list exactly the registered endpoints; the compliance
//!   report (`GET /api/v1/tenants/{tenant}/compliance-report`, admin, audited). `hub bench
//!   api` measures the API under load (50 clients: p50/p99 per endpoint group).
//!
//! Still to come from the control-plane issue (5): mounting the API in the node (it has no
//! control store yet), the rest of the API (conflicts and dead
//! letters, compliance report, analytics, the
//! `/api/v1/ws/sync-monitor` WebSocket), the scheduler loop that drives
//! `claim_due`/`start_job` on each node, rate limits and vendor API budgets.
//!
//! Depends on: sqlx, argon2, aes-gcm, metrics-exporter-prometheus, axum, utoipa. Must not know about:
//! Kafka loops, vendors, mappings (the desk's records arrive as plain structs from the hub's
//! feeder, and its actions leave through [`api::PipelineGateway`], implemented in the hub).

// The API is new code: keep every public item of it documented.
#[warn(missing_docs)]
pub mod api;
pub mod auth;
pub mod crypto;
pub mod error;
pub mod events;
pub mod masking;
pub mod observability;
pub mod scheduler;
pub mod secret;
pub mod store;

pub use auth::{Access, Caller, Principal, Role, TenantId, UserId};
pub use crypto::MasterKey;
pub use error::{ControlError, Result};
pub use secret::Secret;
pub use store::{Backend, ControlStore, StoreSettings};

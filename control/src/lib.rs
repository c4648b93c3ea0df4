//! # hub-control — the control plane
//!
//! Owns what the people and machines that run the hub talk to:
//! - [`observability`]: the node's health, readiness and Prometheus metrics;
//! - [`store`]: the control-plane database (SQLite embedded, PostgreSQL when several nodes
//!   share it; migrations for both, every store test run on both) —
//!   - tenants, users, memberships, platform admins, sessions, sign-in attempts, API tokens
//!     (hashed, scoped, expiring, revocable, last use), encrypted connector credentials and
//!     wrapped tenant data keys;
//!   - [`store::connectors`]: connector configurations (vendor, endpoint, auth type, sync
//!     settings, mappings/filters/transformations checked for shape, enabled flag driving the
//!     schedule, optimistic version) and the OAuth2 flows' single-use, expiring `state` with
//!     its sealed PKCE verifier;
//!   - [`store::jobs`]: sync jobs and schedules (`claim_due` creates each scheduled slot's job
//!     exactly once across nodes; start/heartbeat/finish under a lease another node takes over
//!     when it lapses; cancel; "sync now");
//!   - [`store::desk`]: conflicts and dead letters awaiting a person (materialized by the
//!     hub's feeder, idempotent by source offset, personal data sealed with the tenant key,
//!     compare-and-set status changes);
//!   - [`store::audit`]: the append-only, hash-chained audit log (list, CSV/JSON export,
//!     `verify_audit` naming every edited, deleted or truncated entry; `hub audit`);
//!   - [`store::compliance`]: the FTC Safeguards Rule report of a tenant and period;
//!   - [`store::analytics`]: success rate, sync time, records per hour, validation failures
//!     by field, conflict rate, per connector over a range;
//!   - [`store::usage`]: vendor API calls per tenant, connector and UTC day, added up over
//!     the nodes (each flushes its counts), against the vendor's published limits;
//! - [`scheduler`]: the loop each node runs — claims due slots, starts runnable jobs under
//!   leases on its [`scheduler::JobRunner`], heartbeats their progress, honours cancellation,
//!   lets go when taken over — publishing [`events::SyncEvent`]s on an [`events::EventBus`];
//! - [`events`]: the live sync events and their bus (in-process here; the hub's relays them
//!   through Kafka so every node sees every node's jobs);
//! - [`masking`]: masks personal data (e-mail addresses, phones, names, addresses, identity
//!   and credit details) in JSON before it is kept where it should not be in clear;
//! - [`auth`]: roles (`viewer` < `operator` < `admin` < `owner`), the [`auth::Caller`] and its
//!   one access rule (another tenant's object is 404, too low a role is 403), argon2id
//!   passwords, random bearer tokens kept only as SHA-256, the session cookie's attributes;
//! - [`crypto`]: AES-256-GCM envelope encryption — a data key per tenant, wrapped by the
//!   master key from `HUB_MASTER_KEY` / `HUB_MASTER_KEY_FILE`, re-wrapped on rotation
//!   (`hub control rotate-key`);
//! - [`secret::Secret`]: the wrapper that keeps secrets out of `Debug`, logs and JSON;
//! - [`api`]: the REST API under `/api/v1` — sign-in/out and `me`; tenants, members, API
//!   tokens; connector configurations (CRUD, enable/disable, "test connection") with
//!   write-only credentials and the OAuth2 authorization-code flow (state + PKCE); sync jobs
//!   ("sync now", cancel) and schedules; the conflicts and dead-letters desk (resolve one or
//!   many per field; replay one, a filter's or all; discard); audit list and export; the
//!   compliance report; analytics; vendor API usage and budgets; the live feed
//!   `GET /api/v1/ws/sync-monitor` (WebSocket). Per-tenant request limits (429 with
//!   `Retry-After`) apply after the access check.
//!   Bearer tokens, or the session cookie plus CSRF header; one error shape; every route
//!   registered with what it needs and walked by the authorization-matrix test; the OpenAPI
//!   3.1 document generated with `utoipa` at `GET /api/v1/openapi.json`. Vendor calls
//!   ([`api::ConnectorCheck`]) and pipeline actions ([`api::PipelineGateway`]) are traits the
//!   hub binary implements (501 without one). `hub bench api` measures it under load.
//!
//! Depends on: sqlx, argon2, aes-gcm, metrics-exporter-prometheus, axum, utoipa. Must not know
//! about: Kafka loops, vendors, mappings (the desk's records arrive as plain structs from the
//! hub's feeder, jobs run on a runner the hub hands in, and events leave through its bus).

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

//! The hub's generic webhook contract, used in both directions: senders sign what they post to
//! `POST /ingest/v1/...`, and the hub's webhook sink signs what it posts to a target.
//!
//! `X-Hub-Timestamp: <unix seconds>` and `X-Hub-Signature-256: sha256=<hex>` where the hex is
//! HMAC-SHA256(secret, "<timestamp>.<body>"). Signing the timestamp with the body and refusing
//! stale timestamps stops replays of a captured request (the same shape as Stripe's and
//! HubSpot's v3 schemes).

pub mod signature;

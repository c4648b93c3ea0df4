//! # hub-sandbox — faithful stand-ins for the vendors' APIs
//!
//! Will own one simulator per vendor (`salesforce/`, `hubspot/`, the dealer CRMs, the DMSs):
//! HTTP servers reproducing each documented contract — auth, paging, batch limits, rate
//! limits, signed webhooks, error bodies — with fault knobs, seeded from a deterministic
//! generator. No machine here reaches a vendor, so every connector is proven against these.
//! Nothing is here yet: the simulators arrive with the connector issues.
//!
//! Depends on: nothing of the hub's runtime. Must not know about: Kafka, topics, the
//! canonical model — a simulator speaks only its vendor's wire format.

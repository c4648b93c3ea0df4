//! What the ingest endpoint needs to run: the topology, a publisher, the codec, the replay
//! cache and its limits.

use std::sync::Arc;
use std::time::Duration;

use hub_connectors::generic::signature::DEFAULT_TOLERANCE_SECS;
use hub_schemas::Codec;
use hub_topology::{Runtime, Topology};

use crate::idempotency::IdempotencyCache;
use crate::publisher::Publisher;
use crate::throttle::TenantThrottle;

/// Bounds on what one request may ask of the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestLimits {
    /// Largest body accepted (`runtime.max_body_bytes`, default 1 MiB); larger → `413`.
    pub max_body_bytes: usize,
    /// Most records in one JSON array; more → `413 batch_too_large`. Default 1000.
    pub max_batch_records: usize,
    /// How far `X-Hub-Timestamp` may be from now, in seconds. Default 300.
    pub signature_tolerance_secs: i64,
    /// Longest `Idempotency-Key` accepted, in characters. Default 200.
    pub max_idempotency_key_chars: usize,
    /// Idempotency keys remembered per process. Default 100 000.
    pub idempotency_capacity: usize,
    /// How long an idempotency key is remembered. Default 24 h.
    pub idempotency_ttl: Duration,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_body_bytes: Runtime::default().max_body_bytes,
            max_batch_records: 1000,
            signature_tolerance_secs: DEFAULT_TOLERANCE_SECS,
            max_idempotency_key_chars: 200,
            idempotency_capacity: 100_000,
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl IngestLimits {
    /// The defaults, with the body limit the topology's runtime section sets.
    pub fn from_runtime(runtime: &Runtime) -> Self {
        IngestLimits {
            max_body_bytes: runtime.max_body_bytes,
            ..Self::default()
        }
    }
}

/// Shared by every ingest request.
pub struct IngestState {
    pub(crate) topology: Arc<Topology>,
    pub(crate) publisher: Arc<dyn Publisher>,
    pub(crate) codec: Arc<Codec>,
    pub(crate) limits: IngestLimits,
    pub(crate) idempotency: IdempotencyCache,
    /// Each tenant's request rate limit (`limits.ingest_per_s`, `limits.ingest_burst`).
    pub(crate) throttle: TenantThrottle,
    /// One HubSpot client per connector, shared by its poller and its webhook endpoint, so a
    /// delivery does not build an HTTP client (the account's rate limiter is shared anyway,
    /// by `hub_connectors::build`).
    pub(crate) hubspot_clients: std::sync::Mutex<
        std::collections::HashMap<String, hub_connectors::hubspot::client::HubSpotClient>,
    >,
}

impl IngestState {
    /// Limits come from `topology.runtime` (see [`IngestLimits::from_runtime`]).
    pub fn new(topology: Arc<Topology>, publisher: Arc<dyn Publisher>, codec: Arc<Codec>) -> Self {
        let limits = IngestLimits::from_runtime(&topology.runtime);
        Self::with_limits(topology, publisher, codec, limits)
    }

    pub fn with_limits(
        topology: Arc<Topology>,
        publisher: Arc<dyn Publisher>,
        codec: Arc<Codec>,
        limits: IngestLimits,
    ) -> Self {
        let idempotency =
            IdempotencyCache::new(limits.idempotency_capacity, limits.idempotency_ttl);
        IngestState {
            throttle: TenantThrottle::new(&topology),
            topology,
            publisher,
            codec,
            limits,
            idempotency,
            hubspot_clients: Default::default(),
        }
    }

    /// The HubSpot client of `connector` of `tenant` (built on first use from its `api:`
    /// section), or why there is none.
    pub(crate) fn hubspot_client(
        &self,
        tenant: &str,
        connector: &hub_topology::Connector,
    ) -> Result<hub_connectors::hubspot::client::HubSpotClient, String> {
        let key = format!("{tenant}/{}", connector.id);
        let mut clients = self
            .hubspot_clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let settings = crate::poll::api_settings(tenant, connector)
            .ok_or_else(|| format!("connector '{}' has no api: section", connector.id))?;
        let client = hub_connectors::build::hubspot(&settings).map_err(|e| e.to_string())?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    pub fn limits(&self) -> &IngestLimits {
        &self.limits
    }
}

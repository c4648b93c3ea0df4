//! HubSpot's own webhooks: `POST /ingest/hubspot/v3/{tenant}/{connector}`, the target URL of
//! the HubSpot app (vendor-apis.md §3.8).
//!
//! A delivery is a batch of events (`contact.propertyChange`, `contact.creation`, …) signed
//! with the v3 scheme: HMAC-SHA256, keyed by the app's client secret (the connector's
//! `webhook_secret`), over method, the full URL HubSpot posted to, body and timestamp;
//! deliveries older than 5 minutes are refused. Events name objects, not their content, so
//! the hub reads the changed objects back in batches (`batch/read`, through the connector's
//! shared client and rate limit) and publishes each, in the API's shape, exactly as the
//! poller does. Answers: 202 once stored; 401 for a bad signature, 400 for a body that is not
//! events (HubSpot does not retry a 4xx); 503 when HubSpot's API or the broker is away (it
//! retries those).
//!
//! The URL HubSpot signed is rebuilt from the connector's `api.public_url` (behind TLS
//! termination: `https://…`) or else `http://` + the `Host` header, and the request path.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hub_connectors::hubspot::events::accept_delivery;
use hub_schemas::records::now_ms;
use hub_topology::Vendor;
use serde_json::{Value, json};

use crate::error::IngestError;
use crate::poll::{crm_doc, hubspot_properties, publish};
use crate::state::IngestState;

/// The handler of HubSpot's deliveries.
pub(crate) async fn delivery(
    State(state): State<Arc<IngestState>>,
    Path((tenant_id, connector_id)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&state, &tenant_id, &connector_id, &uri, &headers, &body).await {
        Ok(n) => (StatusCode::ACCEPTED, axum::Json(json!({ "accepted": n }))).into_response(),
        Err(e) => {
            tracing::warn!(tenant = %tenant_id, connector = %connector_id, code = e.code(), "hubspot delivery refused");
            e.into_response()
        }
    }
}

async fn handle(
    state: &IngestState,
    tenant_id: &str,
    connector_id: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<usize, IngestError> {
    let tenant = state
        .topology
        .tenant(tenant_id)
        .ok_or(IngestError::UnknownConnector)?;
    let connector = tenant
        .connector(connector_id)
        .filter(|c| c.vendor == Vendor::Hubspot)
        .ok_or(IngestError::UnknownConnector)?;
    if body.len() > state.limits.max_body_bytes {
        return Err(IngestError::BodyTooLarge {
            limit_bytes: state.limits.max_body_bytes,
        });
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = match connector.api.as_ref().and_then(|a| a.public_url.as_deref()) {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => format!("http://{host}{path}"),
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let events = accept_delivery(
        connector.webhook_secret.as_bytes(),
        "POST",
        &url,
        body,
        header,
        now_ms(),
    )
    .map_err(|e| IngestError::VendorDelivery {
        code: e.code(),
        message: e.to_string(),
        signature: matches!(
            e,
            hub_connectors::hubspot::events::RejectedDelivery::Signature(_)
        ),
    })?;
    state
        .throttle
        .admit(&tenant.id)
        .map_err(|retry_after_secs| IngestError::Throttled { retry_after_secs })?;
    let client = state
        .hubspot_client(&tenant.id, connector)
        .map_err(IngestError::VendorUnavailable)?;
    // Every property any mapping of the connector reads.
    let mut properties: Vec<String> = Vec::new();
    for m in &connector.entities {
        for p in hubspot_properties(m) {
            if !properties.contains(&p) {
                properties.push(p);
            }
        }
    }
    let properties: Vec<&str> = properties.iter().map(String::as_str).collect();
    let changed = client
        .fetch_changed(&events, &properties)
        .await
        .map_err(|e| IngestError::VendorUnavailable(e.to_string()))?;
    let mut by_object: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (object, o) in &changed {
        by_object
            .entry(object.clone())
            .or_default()
            .push(crm_doc(o));
    }
    let mut published = 0;
    for (object, docs) in by_object {
        // Objects the connector does not map are not the hub's business.
        let Some(mapping) = connector.mapping(&object) else {
            continue;
        };
        published += publish(state, tenant, connector, mapping, docs).await?;
    }
    Ok(published)
}

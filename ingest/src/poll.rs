//! Pollers: the hub pulls changes from a vendor's API, for connectors with an `api:` section
//! and `poll_ms > 0`, and publishes them exactly as the webhook edge does
//! ([`crate::http::publish_records`]): the vendor's record, as the API returned it, in a
//! `RawChange` envelope on `<ns>.raw.<vendor>`.
//!
//! - **Salesforce:** SOQL through the REST `query` resource, `WHERE SystemModstamp >= cursor
//!   ORDER BY SystemModstamp, Id`, following `nextRecordsUrl` (vendor-apis.md §2.4), with
//!   `queryAll` so soft deletions come through (`IsDeleted`).
//! - **HubSpot:** the CRM search API filtered and sorted on `hs_lastmodifieddate`, read in
//!   time windows narrowed below the 10,000-results cap, up to a horizon a few seconds before
//!   now because search is eventually consistent (§3.4).
//!
//! The cursor advances only after the broker acknowledged what it covers, and is recorded on
//! the compacted `<ns>.cursors` after each round; a restarted poller reads on from there. A
//! crash re-reads at most a round (the resolve stage treats a system repeating itself as no
//! change).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use hub_connectors::build::{self, ApiSettings};
use hub_connectors::hubspot::client::HubSpotClient;
use hub_connectors::hubspot::read::Window;
use hub_connectors::salesforce::client::SalesforceClient;
use hub_connectors::salesforce::read::Cursor;
use hub_topology::{Connector, EntityMapping, Tenant, Vendor};
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::body::{self, IncomingRecord, MediaType};
use crate::error::IngestError;
use crate::http::publish_records;
use crate::state::IngestState;

/// How far behind now the HubSpot poller reads: search shows a change after a short delay.
const HUBSPOT_HORIZON_MS: i64 = 2_000;
/// The longest search window asked for at once: everything up to the horizon, narrowed by
/// the client while it holds more than search can page through (10,000).
const HUBSPOT_MAX_WINDOW_MS: i64 = i64::MAX / 4;

/// One poll loop: one vendor object of one connector of one tenant.
struct Poll {
    tenant: Tenant,
    connector: Connector,
    mapping: EntityMapping,
    client: Client,
    every: Duration,
}

enum Client {
    Salesforce(SalesforceClient, Option<Cursor>),
    HubSpot(HubSpotClient, Window),
}

/// Starts a poll loop per polled object of every connector with an `api:` section and
/// `poll_ms > 0`; they stop when `shutdown` turns true. A connector whose client cannot be
/// built is logged and skipped.
pub fn spawn_pollers(
    state: Arc<IngestState>,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut out = Vec::new();
    for tenant in &state.topology.tenants {
        for connector in &tenant.connectors {
            let Some(api) = &connector.api else { continue };
            if api.poll_ms == 0 {
                continue;
            }
            for poll in polls_of(&state, tenant, connector) {
                out.push(tokio::spawn(poll.run(state.clone(), shutdown.clone())));
            }
        }
    }
    out
}

/// What one [`sync_pass`] read and published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncPass {
    /// Vendor objects read (e.g. `Contact` and `Lead`).
    pub objects: usize,
    /// Records published on `<ns>.raw.<vendor>`.
    pub records: usize,
}

/// Why a [`sync_pass`] could not run or stopped. Its `Display` is classified and free of
/// personal data: a job's recorded error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncPassError {
    #[error("connector_unknown: the tenant's topology has no connector `{0}`")]
    UnknownConnector(String),
    #[error(
        "connector_not_pollable: connector `{0}` has no `api:` section the hub can read from \
         (it receives webhooks); there is nothing to pull"
    )]
    NotPollable(String),
    #[error("vendor_read_failed: {0}")]
    Read(String),
}

/// "Sync now" for one connector: one round of every polled object — everything changed
/// since its saved cursor, published like the pollers do and the cursor saved after. It runs
/// whether or not the connector polls continuously (`poll_ms`); a continuous poller running
/// at the same time may read some records twice, which the resolve stage treats as no
/// change. `progress` is called with the records published so far after each object.
pub async fn sync_pass(
    state: &IngestState,
    tenant: &str,
    connector: &str,
    mut progress: impl FnMut(SyncPass),
) -> Result<SyncPass, SyncPassError> {
    let (t, c) = state
        .topology
        .tenant(tenant)
        .and_then(|t| {
            t.connectors
                .iter()
                .find(|c| c.id == connector)
                .map(|c| (t, c))
        })
        .ok_or_else(|| SyncPassError::UnknownConnector(connector.to_string()))?;
    if c.api.is_none() {
        return Err(SyncPassError::NotPollable(connector.to_string()));
    }
    let polls = polls_of(state, t, c);
    if polls.is_empty() {
        return Err(SyncPassError::NotPollable(connector.to_string()));
    }
    let mut done = SyncPass::default();
    for mut poll in polls {
        poll.resume(state).await;
        let n = poll.once(state).await.map_err(SyncPassError::Read)?;
        metrics::counter!(hub_topology::metrics::POLL_RECORDS_TOTAL, "connector" => connector.to_string())
            .increment(n as u64);
        done.objects += 1;
        done.records += n;
        progress(done);
    }
    Ok(done)
}

/// A poll per polled object of one connector with an `api:` section; objects without a
/// mapping, and a connector whose client cannot be built, are logged and left out.
fn polls_of(state: &IngestState, tenant: &Tenant, connector: &Connector) -> Vec<Poll> {
    let mut out = Vec::new();
    let Some(api) = &connector.api else {
        return out;
    };
    let Some(settings) = api_settings(&tenant.id, connector) else {
        return out;
    };
    for object in api.polled(connector) {
        let Some(mapping) = connector.mapping(object) else {
            warn!(connector = %connector.id, object, "polled object has no mapping; skipped");
            continue;
        };
        let client = match connector.vendor {
            Vendor::Salesforce => build::salesforce(&settings)
                .map(|c| Client::Salesforce(c, None))
                .map_err(|e| e.to_string()),
            Vendor::Hubspot => state.hubspot_client(&tenant.id, connector).map(|c| {
                Client::HubSpot(
                    c,
                    Window {
                        start_ms: 0,
                        end_ms: 0,
                    },
                )
            }),
            other => {
                warn!(connector = %connector.id, vendor = other.name(), "the hub cannot poll this vendor yet");
                continue;
            }
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                warn!(connector = %connector.id, error = %e, "poller not started");
                continue;
            }
        };
        out.push(Poll {
            tenant: tenant.clone(),
            connector: connector.clone(),
            mapping: mapping.clone(),
            client,
            every: Duration::from_millis(api.poll_ms.max(1)),
        });
    }
    out
}

impl Poll {
    /// `<tenant>/<connector>/<object>`: this poller's key on `<ns>.cursors`.
    fn cursor_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.tenant.id, self.connector.id, self.mapping.vendor_entity
        )
    }

    /// Where the previous incarnation stopped, from `<ns>.cursors`.
    async fn resume(&mut self, state: &IngestState) {
        let bootstrap = state.topology.runtime.kafka_bootstrap.clone();
        let topic = state.topology.topic_names().cursors();
        let key = self.cursor_key();
        let saved = tokio::task::spawn_blocking(move || {
            crate::kafka::read_table(&bootstrap, &topic, Duration::from_secs(10))
                .map(|mut t| t.remove(&key))
        })
        .await;
        let saved = match saved {
            Ok(Ok(Some(v))) => v,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                warn!(connector = %self.connector.id, error = %e, "cursor not read; starting from the beginning");
                return;
            }
            Err(_) => return,
        };
        match &mut self.client {
            Client::Salesforce(_, cursor) => {
                if let (Some(ms), Some(id)) = (saved["modstamp_ms"].as_i64(), saved["id"].as_str())
                {
                    *cursor = Some(Cursor {
                        system_modstamp_ms: ms,
                        id: id.to_string(),
                    });
                }
            }
            Client::HubSpot(_, window) => {
                if let Some(end) = saved["end_ms"].as_i64() {
                    *window = Window {
                        start_ms: end,
                        end_ms: end,
                    };
                }
            }
        }
        info!(connector = %self.connector.id, object = %self.mapping.vendor_entity, "poller resumes from its saved cursor");
    }

    /// Records the cursor on `<ns>.cursors`, after the records it covers were stored.
    async fn save(&self, state: &IngestState) -> Result<(), String> {
        let value = match &self.client {
            Client::Salesforce(_, Some(c)) => {
                json!({"modstamp_ms": c.system_modstamp_ms, "id": c.id})
            }
            Client::HubSpot(_, w) => json!({ "end_ms": w.end_ms }),
            Client::Salesforce(_, None) => return Ok(()),
        };
        state
            .publisher
            .publish_batch(vec![crate::publisher::OutboundRecord {
                topic: state.topology.topic_names().cursors(),
                key: self.cursor_key(),
                payload: value.to_string().into_bytes(),
                headers: Vec::new(),
            }])
            .await
            .map_err(|e| e.to_string())
    }

    async fn run(mut self, state: Arc<IngestState>, mut shutdown: watch::Receiver<bool>) {
        self.resume(&state).await;
        info!(tenant = %self.tenant.id, connector = %self.connector.id, object = %self.mapping.vendor_entity, "poller started");
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.once(&state).await {
                Ok(n) if n > 0 => {
                    metrics::counter!(hub_topology::metrics::POLL_RECORDS_TOTAL, "connector" => self.connector.id.clone())
                        .increment(n as u64);
                }
                Ok(_) => {}
                Err(e) => {
                    metrics::counter!(hub_topology::metrics::POLL_ERRORS_TOTAL, "connector" => self.connector.id.clone())
                        .increment(1);
                    warn!(connector = %self.connector.id, object = %self.mapping.vendor_entity, error = %e, "poll failed; trying again next round");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One round: everything changed since the cursor, published page by page.
    async fn once(&mut self, state: &IngestState) -> Result<usize, String> {
        let mut published = 0;
        let mut advanced = false;
        match &mut self.client {
            Client::Salesforce(client, cursor) => {
                let fields = selected_fields(&self.mapping);
                let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
                let mut q = client
                    .incremental(&self.mapping.vendor_entity, &fields, cursor.clone(), true)
                    .await
                    .map_err(|e| e.to_string())?;
                while let Some(page) = q.next_page(client).await.map_err(|e| e.to_string())? {
                    let docs: Vec<Value> = page.records.into_iter().map(Value::Object).collect();
                    published += publish(state, &self.tenant, &self.connector, &self.mapping, docs)
                        .await
                        .map_err(|e| e.to_string())?;
                    if page.cursor.is_some() {
                        *cursor = page.cursor;
                        advanced = true;
                    }
                }
            }
            Client::HubSpot(client, window) => {
                let properties = hubspot_properties(&self.mapping);
                let properties: Vec<&str> = properties.iter().map(String::as_str).collect();
                let horizon = hub_schemas::records::now_ms() - HUBSPOT_HORIZON_MS;
                let mut reads = Vec::new();
                client
                    .read_range(
                        &self.mapping.vendor_entity,
                        &properties,
                        window.end_ms,
                        horizon,
                        HUBSPOT_MAX_WINDOW_MS,
                        |w| reads.push(w),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                for read in reads {
                    debug!(
                        connector = %self.connector.id,
                        start_ms = read.covered.start_ms,
                        end_ms = read.covered.end_ms,
                        records = read.records.len(),
                        "search window read"
                    );
                    let docs: Vec<Value> = read.records.iter().map(crm_doc).collect();
                    published += publish(state, &self.tenant, &self.connector, &self.mapping, docs)
                        .await
                        .map_err(|e| e.to_string())?;
                    *window = read.covered;
                    advanced = true;
                }
            }
        }
        if advanced {
            self.save(state).await?;
        }
        Ok(published)
    }
}

/// A connector's client settings, from its `api:` section.
pub(crate) fn api_settings(tenant: &str, connector: &Connector) -> Option<ApiSettings> {
    let api = connector.api.as_ref()?;
    Some(ApiSettings {
        tenant_id: tenant.to_owned(),
        connector_id: connector.id.clone(),
        base_url: api.base_url.clone(),
        token: api.token.clone(),
        jwt: api
            .jwt
            .as_ref()
            .map(|j| (j.consumer_key.clone(), j.username.clone())),
        jwt_private_key: api.jwt.as_ref().and_then(|j| j.private_key.clone()),
        requests_per_10s: api.requests_per_10s,
        headroom: api.headroom,
        daily_limit: api.daily_limit,
        budget_warn_percent: api.budget_warn_percent,
    })
}

/// A HubSpot CRM object as the v3 API returns it, the shape the shipped mappings read.
pub(crate) fn crm_doc(o: &hub_connectors::hubspot::read::CrmObject) -> Value {
    json!({
        "id": o.id,
        "properties": o.properties,
        "createdAt": o.created_at,
        "updatedAt": o.updated_at,
        "archived": o.archived,
    })
}

pub(crate) async fn publish(
    state: &IngestState,
    tenant: &Tenant,
    connector: &Connector,
    mapping: &EntityMapping,
    docs: Vec<Value>,
) -> Result<usize, IngestError> {
    if docs.is_empty() {
        return Ok(0);
    }
    let texts: Vec<String> = docs.iter().map(Value::to_string).collect();
    let records: Vec<IncomingRecord<'_>> = texts
        .iter()
        .zip(docs)
        .map(|(t, d)| IncomingRecord {
            text: Cow::Borrowed(t.as_str()),
            doc: Some(d),
        })
        .collect();
    let ids = body::ingest_ids(&tenant.id, &connector.id, None, records.len());
    publish_records(
        state,
        tenant,
        connector,
        mapping,
        MediaType::Json,
        &records,
        &ids,
    )
    .await?;
    Ok(records.len())
}

/// The top-level fields a mapping reads (`/FirstName` → `FirstName`), for the SOQL select.
fn selected_fields(mapping: &EntityMapping) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let pointers = mapping
        .fields
        .values()
        .filter_map(|f| f.from.as_deref())
        .chain(mapping.external_id.as_deref())
        .chain(mapping.updated_at.as_deref())
        .chain(mapping.deleted.as_deref());
    for p in pointers {
        if let Some(first) = p.trim_start_matches('/').split('/').next()
            && !first.is_empty()
            && !out.iter().any(|f| f == first)
        {
            out.push(first.to_string());
        }
    }
    out
}

/// The HubSpot properties a mapping reads (`/properties/email` → `email`).
pub(crate) fn hubspot_properties(mapping: &EntityMapping) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in mapping.fields.values().filter_map(|f| f.from.as_deref()) {
        if let Some(name) = p.strip_prefix("/properties/")
            && !name.contains('/')
            && !out.iter().any(|f| f == name)
        {
            out.push(name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(yaml: &str) -> EntityMapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn soql_selects_each_top_level_field_once() {
        let m = mapping(
            "vendor_entity: Contact\ncanonical: customer\nexternal_id: /Id\nupdated_at: /LastModifiedDate\ndeleted: /IsDeleted\nfields:\n  email: { from: /Email }\n  first_name: { from: /FirstName }\n  city: { from: /MailingAddress/city }\n  country: { from: /MailingAddress/country }\n",
        );
        let mut f = selected_fields(&m);
        f.sort();
        assert_eq!(
            f,
            [
                "Email",
                "FirstName",
                "Id",
                "IsDeleted",
                "LastModifiedDate",
                "MailingAddress"
            ]
        );
    }

    #[test]
    fn hubspot_reads_the_mapped_properties() {
        let m = mapping(
            "vendor_entity: contacts\ncanonical: customer\nexternal_id: /id\nfields:\n  email: { from: /properties/email }\n  phone: { from: /properties/phone }\n  kind: { default: person }\n",
        );
        let mut p = hubspot_properties(&m);
        p.sort();
        assert_eq!(p, ["email", "phone"]);
    }
}

//! The map stage: a raw vendor change → mapped, validated changes keyed by canonical key.
//!
//! Identity lives here. A record's key is derived from its content (VIN; customer key from
//! email, else phone, else the vendor's id), but a person keeps the key they were first given:
//! the cross-reference `<ns>.xref` remembers, per vendor record, the canonical key of each
//! entity it became. When a later version of that record would derive another key (the
//! customer changed their email), the hub keeps the first key and records the link — derived
//! key → first key — on `<ns>.links` (counted in `hub_identity_links_total`) instead of
//! creating a second customer. Every map worker reads all of `<ns>.links`, so when another
//! system later reports the person with the new email, its record joins the same customer.
//! Vehicles are always keyed by their VIN.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hub_schemas::records::record_key;
use hub_schemas::{Codec, Entity, RawChange, headers};
use hub_topology::{Topology, metrics as m};
use rdkafka::message::{Message, OwnedMessage};
use tracing::debug;

use crate::mapping::{Mapped, transform_raw};
use crate::pipeline::{ChangeMsg, MappedChange, Origin, XrefRecord, flatten_fields};
use crate::runner::{Out, Stage, TransformError, dead_letter};
use crate::table::{Follower, read_to_end};

pub(crate) struct MapStage {
    topology: Arc<Topology>,
    codec: Arc<Codec>,
    rt: tokio::runtime::Handle,
    bootstrap: String,
    /// Raw key → the canonical keys it became, for the partitions this worker owns.
    xref: HashMap<String, XrefRecord>,
    /// `<tenant>/<derived person key>` → the person's key, from every partition.
    links: HashMap<String, String>,
    links_reader: Option<Follower>,
}

/// A link on `<ns>.links`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Link {
    key: String,
    linked_at: i64,
}

impl MapStage {
    pub(crate) fn new(
        topology: Arc<Topology>,
        codec: Arc<Codec>,
        rt: tokio::runtime::Handle,
        bootstrap: String,
    ) -> Self {
        MapStage {
            topology,
            codec,
            rt,
            bootstrap,
            xref: HashMap::new(),
            links: HashMap::new(),
            links_reader: None,
        }
    }

    fn apply_link(&mut self, key: String, value: Option<Vec<u8>>) {
        match value.and_then(|v| serde_json::from_slice::<Link>(&v).ok()) {
            Some(l) => {
                self.links.insert(key, l.key);
            }
            None => {
                self.links.remove(&key);
            }
        }
    }

    /// The person key a derived key leads to through recorded links (a bounded walk: links
    /// never form cycles, since a link always points at a key already in use).
    fn linked(&self, tenant: &str, derived: &str) -> String {
        let mut key = derived.to_string();
        for _ in 0..8 {
            match self.links.get(&record_key(tenant, &key)) {
                Some(next) if *next != key => key = next.clone(),
                _ => break,
            }
        }
        key
    }

    /// Settles the key of one mapped entity against the cross-reference and the links;
    /// returns the key.
    fn identify(
        &mut self,
        raw_key: &str,
        raw: &RawChange,
        mapped: &Mapped,
        outs: &mut Vec<Out>,
    ) -> String {
        let entity = mapped.entity.name();
        let person = matches!(mapped.entity, Entity::Customer | Entity::Lead);
        let first = self
            .xref
            .get(raw_key)
            .and_then(|x| x.keys.get(entity))
            .cloned();
        let key = match first {
            Some(first) if first == mapped.key => return first,
            Some(first) if person => {
                // Same vendor record, new contact details: the person keeps their key, and
                // the new details lead to it from now on.
                let link = record_key(&raw.tenant, &mapped.key);
                if self.links.get(&link) != Some(&first) {
                    metrics::counter!(m::IDENTITY_LINKS_TOTAL, "tenant" => raw.tenant.clone(), "entity" => entity)
                        .increment(1);
                    debug!(tenant = %raw.tenant, entity, "identity link recorded");
                    self.links.insert(link.clone(), first.clone());
                    outs.push(Out {
                        topic: self.topology.topic_names().links(),
                        key: link,
                        payload: serde_json::to_vec(&Link {
                            key: first.clone(),
                            linked_at: hub_schemas::records::now_ms(),
                        })
                        .unwrap_or_default(),
                        headers: vec![(headers::TENANT, raw.tenant.clone())],
                    });
                }
                first
            }
            _ if person => self.linked(&raw.tenant, &mapped.key),
            _ => mapped.key.clone(),
        };
        let entry = self.xref.entry(raw_key.to_string()).or_default();
        if entry.keys.get(entity) != Some(&key) {
            entry.keys.insert(entity.to_string(), key.clone());
            outs.push(Out {
                topic: self.topology.topic_names().xref(),
                key: raw_key.to_string(),
                payload: serde_json::to_vec(&*entry).unwrap_or_default(),
                headers: vec![(headers::TENANT, raw.tenant.clone())],
            });
        }
        key
    }
}

impl Stage for MapStage {
    fn name(&self) -> &'static str {
        "map"
    }

    fn input_topics(&self) -> Vec<String> {
        self.topology.raw_topics()
    }

    fn restore(&mut self, partitions: &BTreeSet<i32>) -> Result<(), TransformError> {
        self.links.clear();
        let all: BTreeSet<i32> = (0..self.topology.runtime.partitions).collect();
        let mut reader = Follower::new(
            &self.bootstrap,
            &[self.topology.topic_names().links()],
            &all,
        )?;
        let mut records = Vec::new();
        reader.catch_up(Duration::from_secs(60), |r| records.push(r))?;
        for (_, key, value) in records {
            self.apply_link(key, value);
        }
        self.links_reader = Some(reader);
        self.xref.clear();
        let topics = [self.topology.topic_names().xref()];
        for (_, key, value) in read_to_end(
            &self.bootstrap,
            &topics,
            partitions,
            Duration::from_secs(60),
        )? {
            match value.and_then(|v| serde_json::from_slice::<XrefRecord>(&v).ok()) {
                Some(r) => {
                    self.xref.insert(key, r);
                }
                None => {
                    self.xref.remove(&key);
                }
            }
        }
        Ok(())
    }

    fn before_batch(&mut self) -> Result<(), TransformError> {
        // Links other workers recorded; their open transactions are not waited for long.
        let mut records = Vec::new();
        if let Some(reader) = &mut self.links_reader {
            reader.catch_up_within(Duration::from_millis(200), |r| records.push(r))?;
        }
        for (_, key, value) in records {
            self.apply_link(key, value);
        }
        Ok(())
    }

    fn process(&mut self, msg: &OwnedMessage, outs: &mut Vec<Out>) -> Result<(), TransformError> {
        let value = msg.payload().unwrap_or_default();
        let dlq = self.topology.topic_names().dlq_transform();
        let raw = match self.rt.block_on(self.codec.decode_raw(value)) {
            Ok(raw) => raw,
            Err(e) if e.is_retriable() => return Err(TransformError::Registry(e.to_string())),
            Err(e) => {
                let reason = format!("the record could not be decoded as a RawChange: {e}");
                outs.push(dead_letter(
                    &self.rt,
                    &self.codec,
                    dlq,
                    msg,
                    None,
                    crate::TransformFailure {
                        class: "decode",
                        reason,
                        errors: Vec::new(),
                    },
                )?);
                return Ok(());
            }
        };
        let known = self
            .topology
            .tenant(&raw.tenant)
            .and_then(|t| t.connector(&raw.connector))
            .is_some();
        let (tenant_label, connector_label) = if known {
            (raw.tenant.clone(), raw.connector.clone())
        } else {
            ("unknown".to_string(), "unknown".to_string())
        };
        let mapped = match transform_raw(&self.topology, &raw) {
            Ok(m) => m,
            Err(failure) => {
                metrics::counter!(m::TRANSFORM_RECORDS_TOTAL, "tenant" => tenant_label, "connector" => connector_label,
                    "entity" => "unknown", "outcome" => "dead_lettered")
                .increment(1);
                debug!(tenant = %raw.tenant, ingest_id = %raw.ingest_id, class = failure.class, "dead-lettered");
                outs.push(dead_letter(
                    &self.rt,
                    &self.codec,
                    dlq,
                    msg,
                    Some((&raw.tenant, &raw.ingest_id)),
                    failure,
                )?);
                return Ok(());
            }
        };
        let raw_key = msg
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        for mapped in mapped {
            let key = self.identify(&raw_key, &raw, &mapped, outs);
            let mut fields = flatten_fields(&mapped.doc);
            if mapped.entity == Entity::Customer {
                // A customer's `customer_key` is its key, which the resolve stage sets.
                fields.remove("customer_key");
            }
            let content_hash = hub_schemas::echo::fields_hash(&fields);
            let change = ChangeMsg::Change(MappedChange {
                tenant: raw.tenant.clone(),
                entity: mapped.entity.name().to_string(),
                key: key.clone(),
                origin: Origin {
                    vendor: raw.vendor.clone(),
                    connector: raw.connector.clone(),
                    vendor_entity: raw.vendor_entity.clone(),
                    external_id: raw.external_id.clone(),
                    // The mapping may have read it from a payload ingest could not (XML).
                    source_ts: mapped.doc["source_updated_at"]
                        .as_i64()
                        .unwrap_or(raw.source_ts),
                    received_at: raw.received_at,
                    ingest_id: raw.ingest_id.clone(),
                },
                fields,
                content_hash,
            });
            metrics::counter!(m::TRANSFORM_RECORDS_TOTAL, "tenant" => tenant_label.clone(), "connector" => connector_label.clone(),
                "entity" => mapped.entity.name(), "outcome" => "mapped")
            .increment(1);
            outs.push(Out {
                topic: self.topology.topic_names().changes(mapped.entity),
                key: record_key(&raw.tenant, &key),
                payload: serde_json::to_vec(&change).unwrap_or_default(),
                headers: vec![
                    (headers::TENANT, raw.tenant.clone()),
                    (headers::CONNECTOR, raw.connector.clone()),
                    (headers::INGEST_ID, raw.ingest_id.clone()),
                    (headers::ENTITY, mapped.entity.name().to_string()),
                    (headers::RECEIVED_AT_MS, raw.received_at.to_string()),
                ],
            });
        }
        Ok(())
    }
}

//! Vendor targets: canonical records written into a CRM through its own batch upsert API —
//! HubSpot's `batch/upsert` by a unique property (100 inputs per call, §3.5) and Salesforce's
//! sObject Collections upsert by an external-id field (200 per call, `allOrNone=false`,
//! §2.5) — with the connection's credentials and shared rate limiter
//! (`hub_connectors::build`).
//!
//! What is written is the connector's own mapping of the entity, reversed: every canonical
//! field mapped from a plain path (`/Email`, `/properties/email`) goes back to that path.
//! Fields built by `concatenate`, `split`, `calculate`, `lookup_value` or an expression have
//! no inverse and are not written, nor are the fields the vendor sets itself. `null` is not
//! written either (a missing value never clears the vendor's). A version whose change came
//! from the target's own system is not written back to it: that system holds it already.
//! A deletion is not propagated yet: it is acknowledged without a call (see the connector
//! issue).
//!
//! Answers per record: written → ok; the vendor's error classes map one to one —
//! transient, rate-limited and auth (after the client's own refresh) → transient with the
//! vendor's `Retry-After`; permanent → dead letter with the vendor's code and message;
//! unconfirmed (a multi-status that named neither result nor error) → transient, so the
//! ledger-guarded retry writes it again.

use std::collections::HashMap;

use hub_connectors::build::{self, ApiSettings};
use hub_connectors::error::{ErrorClass, VendorError};
use hub_connectors::hubspot::client::HubSpotClient;
use hub_connectors::hubspot::write::{UpsertInput, UpsertOutcome};
use hub_connectors::salesforce::client::SalesforceClient;
use hub_connectors::salesforce::write::Outcome as SfOutcome;
use hub_schemas::Entity;
use hub_topology::metrics as m;
use hub_topology::{Connector, FieldMapping, TargetKind, Tenant, Transform, Vendor};
use serde_json::{Map, Value as Json};

use super::{Sink, WriteResult};
use crate::error::SinkError;
use crate::record::CanonicalRecord;

/// The client of the vendor a target writes into.
#[derive(Clone)]
enum Client {
    HubSpot(HubSpotClient),
    Salesforce(SalesforceClient),
}

/// Writes canonical records into one vendor object.
#[derive(Clone)]
pub struct VendorSink {
    target_id: String,
    /// The connector whose system this writes into: its id in `external_ids` is the record
    /// to update.
    connector: String,
    client: Client,
    object: String,
    id_property: String,
    id_field: String,
    /// (canonical field, dotted; vendor property or field name).
    fields: Vec<(String, String)>,
}

impl std::fmt::Debug for VendorSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials live in the client and stay out of logs.
        f.debug_struct("VendorSink")
            .field("target_id", &self.target_id)
            .field("object", &self.object)
            .field("id_property", &self.id_property)
            .finish_non_exhaustive()
    }
}

/// The client settings of a connector's `api:` section.
pub fn api_settings(tenant: &str, connector: &Connector) -> Option<ApiSettings> {
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

/// The vendor path a canonical field goes back to, if the mapping can be reversed.
fn reverse_path(vendor: Vendor, field: &FieldMapping) -> Option<String> {
    let from = field.from.as_deref()?;
    let invertible = field.transform.iter().all(|t| {
        !matches!(
            t,
            Transform::Concatenate(_)
                | Transform::Split(_)
                | Transform::Calculate(_)
                | Transform::LookupValue(_)
                | Transform::CustomFunction(_)
        )
    });
    if !invertible {
        return None;
    }
    let path = match vendor {
        Vendor::Hubspot => from.strip_prefix("/properties/")?,
        _ => from.strip_prefix('/')?,
    };
    let writable = !path.is_empty() && !path.contains('/') && !READ_ONLY.contains(&path);
    writable.then(|| path.to_string())
}

/// Fields the vendor sets itself (§2.3, §3.3): read, never written.
const READ_ONLY: &[&str] = &[
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
    "hs_object_id",
    "createdate",
    "lastmodifieddate",
    "hs_lastmodifieddate",
];

impl VendorSink {
    /// The sink of a `kind: vendor` target of `tenant` for `entity`.
    pub fn for_target(tenant: &Tenant, target_id: &str, entity: Entity) -> Result<Self, SinkError> {
        let target = tenant
            .targets
            .iter()
            .find(|t| t.id == target_id)
            .ok_or_else(|| SinkError::Config(format!("no target '{target_id}'")))?;
        let TargetKind::Vendor {
            connector,
            object,
            id_property,
            id_field,
            ..
        } = &target.kind
        else {
            return Err(SinkError::Config(format!(
                "target '{target_id}' is not a vendor target"
            )));
        };
        let c = tenant
            .connector(connector)
            .ok_or_else(|| SinkError::Config(format!("no connector '{connector}'")))?;
        let settings = api_settings(&tenant.id, c).ok_or_else(|| {
            SinkError::Config(format!("connector '{connector}' has no api: section"))
        })?;
        let mapping = c
            .entities
            .iter()
            .find(|m| {
                m.canonical == entity && object.as_ref().is_none_or(|o| *o == m.vendor_entity)
            })
            .ok_or_else(|| {
                SinkError::Config(format!(
                    "connector '{connector}' maps no vendor entity to {}",
                    entity.name()
                ))
            })?;
        let fields = mapping
            .fields
            .iter()
            .filter_map(|(name, f)| Some((name.clone(), reverse_path(c.vendor, f)?)))
            .filter(|(_, path)| *path != *id_property)
            .collect();
        let client = match c.vendor {
            Vendor::Hubspot => Client::HubSpot(build::hubspot(&settings).map_err(config)?),
            Vendor::Salesforce => Client::Salesforce(build::salesforce(&settings).map_err(config)?),
            other => {
                return Err(SinkError::Config(format!(
                    "the hub cannot write to {} yet",
                    other.name()
                )));
            }
        };
        Ok(VendorSink {
            target_id: target_id.to_string(),
            connector: connector.clone(),
            client,
            object: mapping.vendor_entity.clone(),
            id_property: id_property.clone(),
            id_field: id_field.clone(),
            fields,
        })
    }

    /// The vendor fields written for `record`, as strings (HubSpot takes strings; Salesforce
    /// converts them by field type).
    fn properties(&self, record: &CanonicalRecord) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter_map(|(canonical, path)| {
                Some((path.clone(), text(field(&record.doc, canonical)?)?))
            })
            .collect()
    }
}

fn config(e: VendorError) -> SinkError {
    SinkError::Config(e.to_string())
}

/// A dotted canonical field of a document (`address.city`).
fn field<'a>(doc: &'a Json, dotted: &str) -> Option<&'a Json> {
    dotted.split('.').try_fold(doc, |v, part| v.get(part))
}

fn text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// A vendor error, classified once by its connector, as the sink's retry decision.
fn from_vendor(e: &VendorError) -> WriteResult {
    let reason = match e.class {
        ErrorClass::Permanent => format!("{} {}: {}", e.vendor, e.code, e.message),
        ErrorClass::Auth => format!("{} {}: credentials refused", e.vendor, e.code),
        _ => format!("{} {}", e.vendor, e.code),
    };
    by_class(e.class.clone(), reason)
}

/// Permanent → dead letter; transient, rate-limited and auth (the client already refreshed
/// once) → retried, after the vendor's `Retry-After` when it gave one.
fn by_class(class: ErrorClass, reason: String) -> WriteResult {
    match class {
        ErrorClass::Permanent => WriteResult::Permanent { reason },
        ErrorClass::Transient { retry_after } | ErrorClass::RateLimited { retry_after } => {
            WriteResult::Transient {
                retry_after,
                reason,
            }
        }
        ErrorClass::Auth => WriteResult::Transient {
            retry_after: None,
            reason,
        },
    }
}

impl Sink for VendorSink {
    fn target_id(&self) -> &str {
        &self.target_id
    }

    async fn write(&self, batch: &[CanonicalRecord]) -> Vec<WriteResult> {
        let mut results: Vec<Option<WriteResult>> = vec![None; batch.len()];
        // One input per id: a vendor refuses a batch naming the same record twice, and the
        // latest version in the batch is the one that counts.
        let mut input_of_id: HashMap<String, usize> = HashMap::new();
        let mut inputs: Vec<Input> = Vec::new();
        let mut input_of_record: Vec<Option<usize>> = vec![None; batch.len()];
        for (i, r) in batch.iter().enumerate() {
            // A deletion is not propagated yet; a version the target's own system made is
            // what that system already holds (writing it back would only make an echo).
            if r.deleted || r.origin.as_deref() == Some(self.connector.as_str()) {
                let outcome = if r.deleted { "deletion" } else { "own_change" };
                metrics::counter!(m::VENDOR_RECORDS_TOTAL, "target" => self.target_id.clone(), "outcome" => outcome)
                    .increment(1);
                results[i] = Some(WriteResult::Ok);
                continue;
            }
            let Some(id) = field(&r.doc, &self.id_field).and_then(text) else {
                results[i] = Some(WriteResult::Permanent {
                    reason: format!("the record has no {} to upsert by", self.id_field),
                });
                continue;
            };
            let props = self.properties(r);
            let n = *input_of_id.entry(id.clone()).or_insert_with(|| {
                inputs.push(Input {
                    id: id.clone(),
                    vendor_id: None,
                    props: Vec::new(),
                });
                inputs.len() - 1
            });
            inputs[n].props = props;
            if let Some(v) = r.external_ids.get(&self.connector) {
                inputs[n].vendor_id = Some(v.clone());
            }
            input_of_record[i] = Some(n);
        }
        let per_input: Vec<WriteResult> = if inputs.is_empty() {
            Vec::new()
        } else {
            match &self.client {
                Client::HubSpot(c) => self.write_hubspot(c, &inputs).await,
                Client::Salesforce(c) => self.write_salesforce(c, &inputs).await,
            }
        };
        let written = per_input.iter().filter(|r| r.is_ok()).count();
        metrics::counter!(m::VENDOR_RECORDS_TOTAL, "target" => self.target_id.clone(), "outcome" => "written")
            .increment(written as u64);
        results
            .into_iter()
            .zip(input_of_record)
            .map(|(r, n)| match (r, n) {
                (Some(r), _) => r,
                (None, Some(n)) => per_input.get(n).cloned().unwrap_or(WriteResult::Transient {
                    retry_after: None,
                    reason: "no result".into(),
                }),
                (None, None) => WriteResult::Ok,
            })
            .collect()
    }
}

/// One record to write: the value of the id property, the vendor's own id when the hub
/// knows it, and the fields.
struct Input {
    id: String,
    vendor_id: Option<String>,
    props: Vec<(String, String)>,
}

impl VendorSink {
    async fn write_hubspot(&self, client: &HubSpotClient, inputs: &[Input]) -> Vec<WriteResult> {
        let upserts: Vec<UpsertInput> = inputs
            .iter()
            .map(|i| UpsertInput {
                id: i.id.clone(),
                properties: i.props.iter().cloned().collect(),
            })
            .collect();
        match client
            .batch_upsert(&self.object, &self.id_property, &upserts)
            .await
        {
            Ok(outcomes) => outcomes
                .iter()
                .map(|o| match o {
                    UpsertOutcome::Written { .. } => WriteResult::Ok,
                    UpsertOutcome::Failed(e) => from_vendor(e),
                    UpsertOutcome::Unconfirmed => WriteResult::Transient {
                        retry_after: None,
                        reason: "hubspot named neither a result nor an error".into(),
                    },
                })
                .collect(),
            Err(e) => vec![
                WriteResult::Permanent {
                    reason: e.to_string()
                };
                inputs.len()
            ],
        }
    }

    /// Records Salesforce already knows (the hub holds their `Id`) are updated by `Id`
    /// (sObject Collections update); the others are upserted by the external-id field,
    /// which creates them. The poller then reads the created records back with their `Id`,
    /// which the resolve stage records for later versions.
    async fn write_salesforce(
        &self,
        client: &SalesforceClient,
        inputs: &[Input],
    ) -> Vec<WriteResult> {
        let mut out = vec![
            WriteResult::Transient {
                retry_after: None,
                reason: "salesforce returned no result".into(),
            };
            inputs.len()
        ];
        let fields = |i: &Input| -> Map<String, Json> {
            i.props
                .iter()
                .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                .collect()
        };
        let (known, new): (Vec<usize>, Vec<usize>) =
            (0..inputs.len()).partition(|n| inputs[*n].vendor_id.is_some());
        if !known.is_empty() {
            let records: Vec<Map<String, Json>> = known
                .iter()
                .map(|n| {
                    let mut m = fields(&inputs[*n]);
                    m.insert(
                        "Id".into(),
                        Json::String(inputs[*n].vendor_id.clone().unwrap_or_default()),
                    );
                    m
                })
                .collect();
            let results = client.update(&self.object, &records).await;
            place(&mut out, &known, results);
        }
        if !new.is_empty() {
            let records: Vec<Map<String, Json>> = new
                .iter()
                .map(|n| {
                    let mut m = fields(&inputs[*n]);
                    m.insert(
                        self.id_property.clone(),
                        Json::String(inputs[*n].id.clone()),
                    );
                    m
                })
                .collect();
            let results = client
                .upsert(&self.object, &self.id_property, &records)
                .await;
            place(&mut out, &new, results);
        }
        out
    }
}

/// Puts the results of a call over `positions` of the inputs into `out`.
fn place(
    out: &mut [WriteResult],
    positions: &[usize],
    results: Result<
        Vec<hub_connectors::salesforce::write::RecordResult>,
        hub_connectors::salesforce::client::SalesforceError,
    >,
) {
    match results {
        Ok(results) => {
            for r in results {
                if let Some(n) = positions.get(r.index) {
                    out[*n] = match &r.outcome {
                        SfOutcome::Failed(e) => from_vendor(e),
                        _ => WriteResult::Ok,
                    };
                }
            }
        }
        Err(e) => {
            let r = by_class(e.class(), e.to_string());
            for n in positions {
                out[*n] = r.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_mapping(yaml: &str) -> FieldMapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn plain_paths_reverse_to_the_vendor_field() {
        let f = field_mapping("{ from: /properties/email, transform: [trim, lowercase] }");
        assert_eq!(reverse_path(Vendor::Hubspot, &f).as_deref(), Some("email"));
        let f = field_mapping("{ from: /MailingCity, transform: [trim] }");
        assert_eq!(
            reverse_path(Vendor::Salesforce, &f).as_deref(),
            Some("MailingCity")
        );
    }

    #[test]
    fn derived_nested_and_vendor_set_fields_are_not_written() {
        for (vendor, yaml) in [
            (Vendor::Salesforce, "{ from: /MailingAddress/city }"),
            (
                Vendor::Salesforce,
                "{ from: /LastModifiedDate, transform: [timestamp_ms] }",
            ),
            (Vendor::Salesforce, "{ default: US }"),
            (
                Vendor::Hubspot,
                "{ from: /properties/createdate, transform: [timestamp_ms] }",
            ),
            (Vendor::Hubspot, "{ from: /id }"),
            (
                Vendor::Hubspot,
                "{ from: /properties/lifecyclestage, transform: [{ lookup_value: { table: { lead: new } } }] }",
            ),
        ] {
            assert_eq!(reverse_path(vendor, &field_mapping(yaml)), None, "{yaml}");
        }
    }

    #[test]
    fn canonical_values_travel_as_text_and_nulls_not_at_all() {
        let doc = serde_json::json!({
            "email": "pat@example.com", "address": {"city": "Austin", "state": null},
            "year": 2024, "opt_in": true
        });
        assert_eq!(
            field(&doc, "address.city").and_then(text).as_deref(),
            Some("Austin")
        );
        assert_eq!(field(&doc, "address.state").and_then(text), None);
        assert_eq!(field(&doc, "address.zip"), None);
        assert_eq!(field(&doc, "year").and_then(text).as_deref(), Some("2024"));
        assert_eq!(
            field(&doc, "opt_in").and_then(text).as_deref(),
            Some("true")
        );
    }

    #[test]
    fn vendor_errors_become_retries_or_dead_letters_by_class() {
        let e = |class| VendorError {
            vendor: "hubspot",
            status: 400,
            code: "VALIDATION_ERROR".into(),
            message: "Property values were not valid".into(),
            class,
        };
        assert!(matches!(
            from_vendor(&e(ErrorClass::Permanent)),
            WriteResult::Permanent { reason } if reason.contains("VALIDATION_ERROR")
        ));
        let after = Some(std::time::Duration::from_secs(10));
        assert_eq!(
            from_vendor(&e(ErrorClass::RateLimited { retry_after: after })),
            WriteResult::Transient {
                retry_after: after,
                reason: "hubspot VALIDATION_ERROR".into()
            }
        );
        assert!(matches!(
            from_vendor(&e(ErrorClass::Auth)),
            WriteResult::Transient { .. }
        ));
    }
}

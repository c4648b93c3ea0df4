//! Batch upserts by external id and updates by record id through sObject Collections
//! (vendor-apis.md §2.5).
//!
//! `PATCH …/composite/sobjects/{SObject}/{ExternalIdField}` (v46.0+) with
//! `{"allOrNone": false, "records": [{"attributes": {"type": "Vehicle__c"}, "VIN__c": "…", …}]}`:
//! at most 200 records of one object type per call, each carrying `attributes.type` and its
//! external-id value (unlike the single-record upsert, where the value is in the URL). The
//! answer is HTTP 200 even when some items fail, with one result per record in request order:
//! `{"id", "success", "created", "errors": [{"statusCode", "message", "fields"}]}`.
//! `allOrNone: false` so one dealer's bad record does not roll back the other 199.
//!
//! Update: `PATCH …/composite/sobjects` with the same body shape, each record carrying its `Id`
//! as well as `attributes.type` (§2.5). The answer is the same per-record array without
//! `created`: `{"id", "success": true, "errors": []}`, or `success: false` with errors such as
//! `ENTITY_IS_DELETED`, `INVALID_CROSS_REFERENCE_KEY` / `MALFORMED_ID` (no such record) or a
//! field's validation error.

use serde_json::{Map, Value, json};

use super::errors::{self, VENDOR, api_error_from_value};
use super::{NameError, check_api_name, check_api_version, data_root};
use crate::error::{ErrorClass, VendorError};

/// Records per sObject Collections call (§2.5).
pub const MAX_RECORDS_PER_CALL: usize = 200;

/// The upsert URL for one object and its external-id field (§2.5).
pub fn upsert_url(
    instance_url: &str,
    api_version: &str,
    sobject: &str,
    external_id_field: &str,
) -> Result<String, NameError> {
    check_api_version(api_version)?;
    check_api_name(sobject)?;
    check_api_name(external_id_field)?;
    Ok(format!(
        "{}/composite/sobjects/{sobject}/{external_id_field}",
        data_root(instance_url, api_version)
    ))
}

/// The Collections update URL, `…/composite/sobjects` (§2.5): the types are in the records.
pub fn update_url(instance_url: &str, api_version: &str) -> Result<String, NameError> {
    check_api_version(api_version)?;
    Ok(format!(
        "{}/composite/sobjects",
        data_root(instance_url, api_version)
    ))
}

/// One call's worth of records: the JSON body and where its records sit in the caller's input.
#[derive(Debug, Clone, PartialEq)]
pub struct UpsertBatch {
    /// Index in the caller's input of this batch's first record; result `i` maps to `start + i`.
    pub start: usize,
    /// How many records the body holds.
    pub len: usize,
    /// `{"allOrNone": false, "records": [...]}`.
    pub body: Value,
}

/// A record that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("record {index} has no value for the external id field {field}")]
    MissingExternalId { index: usize, field: String },
    #[error("record {index} has no record id (Id) to update")]
    MissingId { index: usize },
    #[error("record {index} is a {found}, but this call is for {expected}")]
    WrongType {
        index: usize,
        found: String,
        expected: String,
    },
}

/// Splits `records` (field name → value, without `attributes`) into bodies of at most
/// [`MAX_RECORDS_PER_CALL`], adding `attributes.type`. Each record must carry a non-empty
/// external-id value; an `attributes.type` already present must name `sobject` (§2.5: one
/// object type per upsert call).
pub fn upsert_batches(
    sobject: &str,
    external_id_field: &str,
    records: &[Map<String, Value>],
) -> Result<Vec<UpsertBatch>, WriteError> {
    check_api_name(sobject)?;
    check_api_name(external_id_field)?;
    let mut prepared = Vec::with_capacity(records.len());
    for (index, r) in records.iter().enumerate() {
        let has_key = match r.get(external_id_field) {
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        };
        if !has_key {
            return Err(WriteError::MissingExternalId {
                index,
                field: external_id_field.to_owned(),
            });
        }
        prepared.push(typed_record(index, sobject, r)?);
    }
    Ok(into_batches(&prepared))
}

/// One update call's worth of records; the same shape as an upsert's.
pub type UpdateBatch = UpsertBatch;

/// Splits `records` (field name → value, each with its `Id`) into update bodies of at most
/// [`MAX_RECORDS_PER_CALL`], adding `attributes.type` = `sobject` (§2.5: every record of an
/// update needs `attributes.type` and an id). Each record must carry a non-empty string `Id`
/// (any case, e.g. `id`); an `attributes.type` already present must name `sobject`. Whether an
/// id is well formed and exists is Salesforce's to say, per record.
pub fn update_batches(
    sobject: &str,
    records: &[Map<String, Value>],
) -> Result<Vec<UpdateBatch>, WriteError> {
    check_api_name(sobject)?;
    let mut prepared = Vec::with_capacity(records.len());
    for (index, r) in records.iter().enumerate() {
        let has_id = r.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("Id") && v.as_str().is_some_and(|s| !s.trim().is_empty())
        });
        if !has_id {
            return Err(WriteError::MissingId { index });
        }
        prepared.push(typed_record(index, sobject, r)?);
    }
    Ok(into_batches(&prepared))
}

/// `r` with `attributes: {"type": sobject}` first, refusing another declared type.
fn typed_record(index: usize, sobject: &str, r: &Map<String, Value>) -> Result<Value, WriteError> {
    if let Some(found) = r
        .get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        && found != sobject
    {
        return Err(WriteError::WrongType {
            index,
            found: found.to_owned(),
            expected: sobject.to_owned(),
        });
    }
    let mut rec = Map::with_capacity(r.len() + 1);
    rec.insert("attributes".into(), json!({ "type": sobject }));
    for (k, v) in r {
        if k != "attributes" {
            rec.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(rec))
}

/// Bodies of at most [`MAX_RECORDS_PER_CALL`] records, `allOrNone: false`.
fn into_batches(prepared: &[Value]) -> Vec<UpsertBatch> {
    prepared
        .chunks(MAX_RECORDS_PER_CALL)
        .enumerate()
        .map(|(i, chunk)| UpsertBatch {
            start: i * MAX_RECORDS_PER_CALL,
            len: chunk.len(),
            body: json!({ "allOrNone": false, "records": chunk }),
        })
        .collect()
}

/// What happened to one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created {
        id: String,
    },
    Updated {
        id: String,
    },
    /// Classified with [`errors`]; permanent ones go to the dead letter.
    Failed(VendorError),
}

/// One record's result, mapped back to the caller's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordResult {
    /// Index in the caller's input (the slice given to [`upsert_batches`] or
    /// [`update_batches`]).
    pub index: usize,
    pub outcome: Outcome,
}

/// Maps a Collections upsert response back to the batch's inputs.
///
/// A non-200 status means the whole call failed (e.g. 401, 403 `REQUEST_LIMIT_EXCEEDED`, 400
/// with more than 200 records) and is returned as one classified error. A 200 whose array does
/// not hold one result per record is a protocol break; it is returned as a transient error,
/// since the upsert is idempotent by external id and can be resent whole.
pub fn parse_upsert_results(
    batch: &UpsertBatch,
    status: u16,
    body: &[u8],
) -> Result<Vec<RecordResult>, VendorError> {
    parse_results(batch, status, body, Kind::Upsert)
}

/// Maps a Collections update response back to the batch's inputs: `Outcome::Updated` for each
/// success, `Outcome::Failed` classified with [`errors`] for each failure (§2.5). Whole-call
/// failures and a result count that does not match are handled as in
/// [`parse_upsert_results`]; resending a whole update batch writes the same values again.
pub fn parse_update_results(
    batch: &UpdateBatch,
    status: u16,
    body: &[u8],
) -> Result<Vec<RecordResult>, VendorError> {
    parse_results(batch, status, body, Kind::Update)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Upsert,
    Update,
}

fn parse_results(
    batch: &UpsertBatch,
    status: u16,
    body: &[u8],
    kind: Kind,
) -> Result<Vec<RecordResult>, VendorError> {
    if status != 200 {
        return Err(errors::classify(status, body));
    }
    let items = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if items.len() == batch.len => items,
        Ok(Value::Array(items)) => {
            return Err(protocol_error(format!(
                "{} results for {} records",
                items.len(),
                batch.len
            )));
        }
        _ => return Err(protocol_error("the result is not a JSON array".into())),
    };
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, item)| RecordResult {
            index: batch.start + i,
            outcome: item_outcome(status, item, kind),
        })
        .collect())
}

fn item_outcome(status: u16, item: &Value, kind: Kind) -> Outcome {
    let id = item.get("id").and_then(Value::as_str);
    match (item.get("success").and_then(Value::as_bool), id) {
        (Some(true), Some(id)) => {
            if kind == Kind::Upsert && item.get("created").and_then(Value::as_bool) == Some(true) {
                Outcome::Created { id: id.to_owned() }
            } else {
                Outcome::Updated { id: id.to_owned() }
            }
        }
        (Some(false), _) => {
            let errs: Vec<_> = match item.get("errors") {
                Some(Value::Array(es)) => es.iter().filter_map(api_error_from_value).collect(),
                _ => Vec::new(),
            };
            Outcome::Failed(errors::classify_record_errors(status, &errs))
        }
        _ => Outcome::Failed(protocol_error(
            "a result has neither success with an id nor a failure".into(),
        )),
    }
}

fn protocol_error(message: String) -> VendorError {
    VendorError {
        vendor: VENDOR,
        status: 200,
        code: "UNEXPECTED_RESPONSE".into(),
        message,
        class: ErrorClass::Transient { retry_after: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vehicle(vin: &str, make: &str) -> Map<String, Value> {
        json!({"VIN__c": vin, "Make__c": make, "Model_Year__c": 2023})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn upsert_url_names_object_and_external_id_field() {
        assert_eq!(
            upsert_url(
                "https://acme-motors.my.salesforce.com",
                "66.0",
                "Vehicle__c",
                "VIN__c"
            )
            .unwrap(),
            "https://acme-motors.my.salesforce.com/services/data/v66.0/composite/sobjects/Vehicle__c/VIN__c"
        );
        assert!(upsert_url("https://x", "66.0", "Vehicle__c", "VIN__c/../Id").is_err());
    }

    #[test]
    fn vehicles_get_type_attribute_and_all_or_none_false() {
        let b = upsert_batches(
            "Vehicle__c",
            "VIN__c",
            &[vehicle("1HGCM82633A004352", "Honda")],
        )
        .unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(
            b[0].body,
            json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Vehicle__c"}, "VIN__c": "1HGCM82633A004352", "Make__c": "Honda", "Model_Year__c": 2023}
            ]})
        );
    }

    #[test]
    fn four_hundred_and_one_contacts_make_three_calls_of_at_most_200() {
        let contacts: Vec<_> = (0..401)
            .map(|i| {
                json!({"DMS_Customer_Id__c": format!("C{i:05}"), "LastName": "Lee"})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect();
        let b = upsert_batches("Contact", "DMS_Customer_Id__c", &contacts).unwrap();
        assert_eq!(
            b.iter().map(|x| (x.start, x.len)).collect::<Vec<_>>(),
            [(0, 200), (200, 200), (400, 1)]
        );
        assert_eq!(b[2].body["records"][0]["DMS_Customer_Id__c"], "C00400");
    }

    #[test]
    fn record_without_vin_is_refused_before_sending() {
        let mut no_vin = vehicle("", "Ford");
        assert_eq!(
            upsert_batches(
                "Vehicle__c",
                "VIN__c",
                &[vehicle("1FTFW1E50NFA00001", "Ford"), no_vin.clone()]
            ),
            Err(WriteError::MissingExternalId {
                index: 1,
                field: "VIN__c".into()
            })
        );
        no_vin.remove("VIN__c");
        assert!(upsert_batches("Vehicle__c", "VIN__c", &[no_vin]).is_err());
    }

    #[test]
    fn record_of_another_object_type_is_refused() {
        let mut lead = vehicle("1HGCM82633A004352", "Honda");
        lead.insert("attributes".into(), json!({"type": "Lead"}));
        assert!(matches!(
            upsert_batches("Vehicle__c", "VIN__c", &[lead]),
            Err(WriteError::WrongType { index: 0, .. })
        ));
    }

    #[test]
    fn partial_failure_maps_each_result_to_its_input() {
        let batch = UpsertBatch {
            start: 200,
            len: 3,
            body: Value::Null,
        };
        let body = br#"[
          {"id":"a0X5e000001AbCdEAF","success":true,"errors":[],"created":true},
          {"id":"a0X5e000001AbCeEAF","success":true,"errors":[],"created":false},
          {"success":false,"errors":[{"statusCode":"FIELD_CUSTOM_VALIDATION_EXCEPTION","message":"Odometer cannot decrease","fields":["Odometer__c"]}]}
        ]"#;
        let r = parse_upsert_results(&batch, 200, body).unwrap();
        assert_eq!(r[0].index, 200);
        assert_eq!(
            r[0].outcome,
            Outcome::Created {
                id: "a0X5e000001AbCdEAF".into()
            }
        );
        assert_eq!(
            r[1].outcome,
            Outcome::Updated {
                id: "a0X5e000001AbCeEAF".into()
            }
        );
        assert_eq!(r[2].index, 202);
        match &r[2].outcome {
            Outcome::Failed(e) => {
                assert_eq!(e.class, ErrorClass::Permanent);
                assert_eq!(e.code, "FIELD_CUSTOM_VALIDATION_EXCEPTION");
                assert!(e.message.contains("Odometer__c"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn locked_row_on_one_record_is_retriable() {
        let batch = UpsertBatch {
            start: 0,
            len: 1,
            body: Value::Null,
        };
        let body = br#"[{"success":false,"errors":[{"statusCode":"UNABLE_TO_LOCK_ROW","message":"unable to obtain exclusive access to this record","fields":[]}]}]"#;
        let r = parse_upsert_results(&batch, 200, body).unwrap();
        assert!(
            matches!(&r[0].outcome, Outcome::Failed(e) if e.class == ErrorClass::Transient { retry_after: None })
        );
    }

    #[test]
    fn whole_call_failure_is_one_classified_error() {
        let batch = UpsertBatch {
            start: 0,
            len: 2,
            body: Value::Null,
        };
        let e = parse_upsert_results(
            &batch,
            401,
            br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        )
        .unwrap_err();
        assert_eq!(e.class, ErrorClass::Auth);
    }

    #[test]
    fn result_count_mismatch_is_a_transient_protocol_error() {
        let batch = UpsertBatch {
            start: 0,
            len: 2,
            body: Value::Null,
        };
        let e = parse_upsert_results(
            &batch,
            200,
            br#"[{"id":"003RO00000AbCdEYAV","success":true,"errors":[]}]"#,
        )
        .unwrap_err();
        assert_eq!(e.code, "UNEXPECTED_RESPONSE");
        assert!(e.is_retriable());
        assert!(parse_upsert_results(&batch, 200, b"garbage").is_err());
    }

    fn contact(id: &str, first: &str) -> Map<String, Value> {
        json!({"Id": id, "FirstName": first})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn update_url_has_no_object_in_the_path() {
        assert_eq!(
            update_url("https://acme-motors.my.salesforce.com/", "66.0").unwrap(),
            "https://acme-motors.my.salesforce.com/services/data/v66.0/composite/sobjects"
        );
        assert!(update_url("https://x", "v66").is_err());
    }

    #[test]
    fn updates_get_type_attribute_keep_their_id_and_chunk_by_200() {
        let mut records: Vec<_> = (0..401)
            .map(|i| contact(&format!("003RO0000{i:06}AAA"), "Ana"))
            .collect();
        records[1] = json!({"id": "003RO00000AbCdEYAV", "attributes": {"type": "Contact"}, "Email": "a@example.com"})
            .as_object()
            .unwrap()
            .clone();
        let b = update_batches("Contact", &records).unwrap();
        assert_eq!(
            b.iter().map(|x| (x.start, x.len)).collect::<Vec<_>>(),
            [(0, 200), (200, 200), (400, 1)]
        );
        assert_eq!(b[0].body["allOrNone"], false);
        assert_eq!(
            b[0].body["records"][0],
            json!({"attributes": {"type": "Contact"}, "Id": "003RO0000000000AAA", "FirstName": "Ana"})
        );
        assert_eq!(
            b[0].body["records"][1],
            json!({"attributes": {"type": "Contact"}, "id": "003RO00000AbCdEYAV", "Email": "a@example.com"})
        );
        assert_eq!(b[2].body["records"][0]["Id"], "003RO0000000400AAA");
    }

    #[test]
    fn update_without_an_id_or_of_another_type_is_refused_before_sending() {
        for bad in [
            json!({"FirstName": "Ana"}),
            json!({"Id": ""}),
            json!({"Id": null}),
            json!({"Id": 3}),
        ] {
            let r = vec![
                contact("003RO00000AbCdEYAV", "Ana"),
                bad.as_object().unwrap().clone(),
            ];
            assert_eq!(
                update_batches("Contact", &r),
                Err(WriteError::MissingId { index: 1 }),
                "{bad}"
            );
        }
        let mut lead = contact("00QRO00000AbCdEYAV", "Ana");
        lead.insert("attributes".into(), json!({"type": "Lead"}));
        assert!(matches!(
            update_batches("Contact", &[lead]),
            Err(WriteError::WrongType { index: 0, .. })
        ));
        assert!(update_batches("Contact); DROP", &[]).is_err());
        assert_eq!(update_batches("Contact", &[]).unwrap(), vec![]);
    }

    #[test]
    fn update_results_map_successes_to_updated_and_failures_to_classified_errors() {
        let batch = UpdateBatch {
            start: 200,
            len: 4,
            body: Value::Null,
        };
        let body = br#"[
          {"id":"003RO00000AbCdEYAV","success":true,"errors":[]},
          {"id":null,"success":false,"errors":[{"statusCode":"INVALID_CROSS_REFERENCE_KEY","message":"invalid cross reference id","fields":[]}]},
          {"id":"003RO00000AbCdFYAV","success":false,"errors":[{"statusCode":"ENTITY_IS_DELETED","message":"entity is deleted","fields":[]}]},
          {"success":false,"errors":[{"statusCode":"UNABLE_TO_LOCK_ROW","message":"unable to obtain exclusive access to this record","fields":[]}]}
        ]"#;
        let r = parse_update_results(&batch, 200, body).unwrap();
        assert_eq!(
            r.iter().map(|x| x.index).collect::<Vec<_>>(),
            [200, 201, 202, 203]
        );
        assert_eq!(
            r[0].outcome,
            Outcome::Updated {
                id: "003RO00000AbCdEYAV".into()
            }
        );
        for (i, code) in [(1, "INVALID_CROSS_REFERENCE_KEY"), (2, "ENTITY_IS_DELETED")] {
            match &r[i].outcome {
                Outcome::Failed(e) => {
                    assert_eq!(e.code, code);
                    assert_eq!(e.class, ErrorClass::Permanent);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(
            matches!(&r[3].outcome, Outcome::Failed(e) if e.class == ErrorClass::Transient { retry_after: None })
        );
        // An update never creates, even if a proxy added `created: true`.
        let one = UpdateBatch {
            start: 0,
            len: 1,
            body: Value::Null,
        };
        let r = parse_update_results(
            &one,
            200,
            br#"[{"id":"003RO00000AbCdEYAV","success":true,"errors":[],"created":true}]"#,
        )
        .unwrap();
        assert!(matches!(r[0].outcome, Outcome::Updated { .. }));
    }

    #[test]
    fn update_whole_call_failures_and_count_mismatches_are_errors() {
        let batch = UpdateBatch {
            start: 0,
            len: 2,
            body: Value::Null,
        };
        let e = parse_update_results(
            &batch,
            400,
            br#"[{"message":"Record limit reached","errorCode":"EXCEEDED_ID_LIMIT"}]"#,
        )
        .unwrap_err();
        assert_eq!(e.class, ErrorClass::Permanent);
        let e = parse_update_results(
            &batch,
            200,
            br#"[{"id":"003RO00000AbCdEYAV","success":true,"errors":[]}]"#,
        )
        .unwrap_err();
        assert_eq!(e.code, "UNEXPECTED_RESPONSE");
        assert!(e.is_retriable());
    }
}

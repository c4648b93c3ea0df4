//! Batch upsert by a unique property: `POST {prefix}/{object}/batch/upsert` (vendor-apis.md §3.5),
//! and its per-record results mapped back to the caller's input positions.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};

use super::errors::{classify, classify_category};
use crate::error::VendorError;

/// §3.5: batch endpoints take at most 100 inputs per call.
pub const MAX_BATCH_INPUTS: usize = 100;

/// One record to upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertInput {
    /// The value of the batch's `idProperty`, e.g. a contact's email or a vehicle's VIN.
    pub id: String,
    /// Values travel as strings (§3.3).
    pub properties: BTreeMap<String, String>,
}

/// One call's worth of inputs: the body to POST and where its inputs came from.
#[derive(Debug, Clone, PartialEq)]
pub struct UpsertBatch {
    /// Position in the caller's slice of this batch's first input.
    pub first_index: usize,
    pub len: usize,
    pub id_property: String,
    /// The `idProperty` values, in input order (for matching results back).
    pub ids: Vec<String>,
    pub body: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("the idProperty of a HubSpot upsert must name a unique property; it is empty")]
    EmptyIdProperty,
    #[error("input {index} has an empty {id_property} value")]
    EmptyId { index: usize, id_property: String },
    #[error("inputs {first} and {second} have the same {id_property}; merge them before writing")]
    DuplicateId {
        first: usize,
        second: usize,
        id_property: String,
    },
    #[error("HubSpot's batch response could not be read: {0}")]
    MalformedResponse(String),
    #[error(transparent)]
    Vendor(#[from] VendorError),
}

/// `{prefix}/{object}/batch/upsert`, with `prefix` from config (`/crm/v3/objects` or
/// `/crm/objects/2026-03`, §3.2).
pub fn upsert_path(prefix: &str, object: &str) -> String {
    format!("{}/{object}/batch/upsert", prefix.trim_end_matches('/'))
}

/// Splits `inputs` into bodies of at most 100 inputs. Each input carries
/// `objectWriteTraceId` = its position in `inputs`, which HubSpot echoes on a per-input error
/// (§3.5) — the reliable way to map a failure back.
///
/// Duplicate ids are refused: HubSpot is understood to reject a batch that names one record
/// twice [inferred; not in §3.5], and which of two values should win is the caller's decision.
pub fn build_upsert_batches(
    id_property: &str,
    inputs: &[UpsertInput],
) -> Result<Vec<UpsertBatch>, WriteError> {
    if id_property.trim().is_empty() {
        return Err(WriteError::EmptyIdProperty);
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, input) in inputs.iter().enumerate() {
        if input.id.trim().is_empty() {
            return Err(WriteError::EmptyId {
                index,
                id_property: id_property.to_owned(),
            });
        }
        if let Some(first) = seen.insert(input.id.as_str(), index) {
            return Err(WriteError::DuplicateId {
                first,
                second: index,
                id_property: id_property.to_owned(),
            });
        }
    }
    Ok(inputs
        .chunks(MAX_BATCH_INPUTS)
        .enumerate()
        .map(|(chunk_no, chunk)| {
            let first_index = chunk_no * MAX_BATCH_INPUTS;
            let body_inputs: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, input)| {
                    json!({
                        "id": input.id,
                        "idProperty": id_property,
                        "properties": input.properties,
                        "objectWriteTraceId": (first_index + i).to_string(),
                    })
                })
                .collect();
            UpsertBatch {
                first_index,
                len: chunk.len(),
                id_property: id_property.to_owned(),
                ids: chunk.iter().map(|i| i.id.clone()).collect(),
                body: json!({ "inputs": body_inputs }),
            }
        })
        .collect())
}

/// What became of one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpsertOutcome {
    Written {
        /// HubSpot's record id (`hs_object_id`).
        object_id: String,
        /// `new: true` on upsert results: the record was created.
        created: bool,
    },
    Failed(VendorError),
    /// Neither a result nor an error named this input: read it back before retrying.
    Unconfirmed,
}

#[derive(serde::Deserialize)]
struct RawResponse {
    #[serde(default)]
    results: Vec<RawResult>,
    #[serde(default)]
    errors: Vec<RawError>,
}

#[derive(serde::Deserialize)]
struct RawResult {
    id: String,
    #[serde(default)]
    properties: HashMap<String, Option<String>>,
    #[serde(default)]
    new: bool,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawError {
    category: Option<String>,
    message: Option<String>,
    #[serde(default)]
    context: HashMap<String, Value>,
    object_write_trace_id: Option<String>,
}

/// Reads an upsert response into one outcome per input of `batch`, in input order.
///
/// 200/201 are all results; 207 is multi-status with `errors[]` (§3.5); anything else is a
/// whole-batch failure, classified by [`classify`] and returned as `Err`.
pub fn parse_upsert_response(
    batch: &UpsertBatch,
    status: u16,
    retry_after_header: Option<&str>,
    body: &[u8],
) -> Result<Vec<UpsertOutcome>, WriteError> {
    if !matches!(status, 200 | 201 | 207) {
        return Err(classify(status, retry_after_header, body).into());
    }
    let raw: RawResponse =
        serde_json::from_slice(body).map_err(|e| WriteError::MalformedResponse(e.to_string()))?;
    let mut outcomes = vec![UpsertOutcome::Unconfirmed; batch.len];
    let position_of_id = |id: &str| -> Option<usize> {
        batch.ids.iter().position(|x| x == id).or_else(|| {
            // HubSpot stores emails in lower case, so the echoed value may differ in case
            // [inferred].
            batch.ids.iter().position(|x| x.eq_ignore_ascii_case(id))
        })
    };

    let mut failed = HashSet::new();
    for err in raw.errors {
        let mut positions: Vec<usize> = err
            .object_write_trace_id
            .as_deref()
            .and_then(|t| t.parse::<usize>().ok())
            .and_then(|abs| abs.checked_sub(batch.first_index))
            .filter(|&p| p < batch.len)
            .into_iter()
            .collect();
        if positions.is_empty()
            && let Some(Value::Array(ids)) = err.context.get("ids")
        {
            positions = ids
                .iter()
                .filter_map(Value::as_str)
                .filter_map(position_of_id)
                .collect();
        }
        let message = err
            .message
            .unwrap_or_else(|| "HubSpot rejected this record without a message".into());
        let vendor_error = classify_category(err.category.as_deref(), message);
        for p in positions {
            failed.insert(p);
            outcomes[p] = UpsertOutcome::Failed(vendor_error.clone());
        }
    }

    for result in raw.results {
        let echoed = result
            .properties
            .get(&batch.id_property)
            .and_then(|v| v.as_deref());
        if let Some(p) = echoed.and_then(position_of_id)
            && !failed.contains(&p)
        {
            outcomes[p] = UpsertOutcome::Written {
                object_id: result.id,
                created: result.new,
            };
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use proptest::prelude::*;

    fn contact(email: &str, first: &str, last: &str) -> UpsertInput {
        UpsertInput {
            id: email.into(),
            properties: [
                ("email", email),
                ("firstname", first),
                ("lastname", last),
                ("lifecyclestage", "lead"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        }
    }

    fn contacts(n: usize) -> Vec<UpsertInput> {
        (0..n)
            .map(|i| contact(&format!("buyer{i}@lakeside-motors.test"), "Maria", "Lopez"))
            .collect()
    }

    #[test]
    fn upsert_body_carries_id_property_and_trace_ids() {
        let batches = build_upsert_batches(
            "email",
            &[contact("maria.lopez@example.test", "Maria", "Lopez")],
        )
        .unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(
            batches[0].body,
            json!({"inputs": [{
                "id": "maria.lopez@example.test",
                "idProperty": "email",
                "properties": {"email": "maria.lopez@example.test", "firstname": "Maria",
                               "lastname": "Lopez", "lifecyclestage": "lead"},
                "objectWriteTraceId": "0"
            }]})
        );
        assert_eq!(
            upsert_path("/crm/v3/objects/", "contacts"),
            "/crm/v3/objects/contacts/batch/upsert"
        );
    }

    #[test]
    fn two_hundred_fifty_contacts_become_three_calls_of_at_most_one_hundred() {
        let batches = build_upsert_batches("email", &contacts(250)).unwrap();
        let sizes: Vec<usize> = batches.iter().map(|b| b.len).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        assert_eq!(batches[2].first_index, 200);
        assert_eq!(batches[2].body["inputs"][0]["objectWriteTraceId"], "200");
    }

    #[test]
    fn duplicate_or_empty_ids_are_refused_before_any_call() {
        let mut inputs = contacts(3);
        inputs.push(inputs[1].clone());
        assert_eq!(
            build_upsert_batches("email", &inputs),
            Err(WriteError::DuplicateId {
                first: 1,
                second: 3,
                id_property: "email".into()
            })
        );
        assert!(matches!(
            build_upsert_batches("email", &[contact(" ", "A", "B")]),
            Err(WriteError::EmptyId { index: 0, .. })
        ));
        assert_eq!(
            build_upsert_batches("", &contacts(1)),
            Err(WriteError::EmptyIdProperty)
        );
    }

    #[test]
    fn complete_response_maps_results_to_inputs_whatever_their_order() {
        let batches = build_upsert_batches("email", &contacts(2)).unwrap();
        let body = br#"{"status":"COMPLETE","results":[
            {"id":"602","properties":{"email":"buyer1@lakeside-motors.test"},"new":true},
            {"id":"51","properties":{"email":"BUYER0@lakeside-motors.test"},"new":false}],
            "startedAt":"2024-05-01T12:00:00.000Z","completedAt":"2024-05-01T12:00:00.200Z"}"#;
        let out = parse_upsert_response(&batches[0], 200, None, body).unwrap();
        assert_eq!(
            out,
            vec![
                UpsertOutcome::Written {
                    object_id: "51".into(),
                    created: false
                },
                UpsertOutcome::Written {
                    object_id: "602".into(),
                    created: true
                },
            ]
        );
    }

    #[test]
    fn multi_status_marks_the_failed_deal_and_keeps_the_others() {
        let deals: Vec<UpsertInput> = ["DL-2024-0001", "DL-2024-0002", "DL-2024-0003"]
            .iter()
            .map(|n| UpsertInput {
                id: (*n).into(),
                properties: [("dealname".to_owned(), format!("{n} 2021 Honda Accord"))]
                    .into_iter()
                    .collect(),
            })
            .collect();
        let batches = build_upsert_batches("dms_deal_number", &deals).unwrap();
        let body = br#"{"status":"COMPLETE","numErrors":2,
            "results":[
              {"id":"9001","properties":{"dms_deal_number":"DL-2024-0001"},"new":true},
              {"id":"9003","properties":{"dms_deal_number":"DL-2024-0003"},"new":false}],
            "errors":[
              {"status":"error","category":"VALIDATION_ERROR","message":"Property values were not valid",
               "context":{"ids":["DL-2024-0002"]},"objectWriteTraceId":"1"},
              {"status":"error","category":"VALIDATION_ERROR","message":"untraceable",
               "context":{"ids":["DL-2024-0003"]}}]}"#;
        let out = parse_upsert_response(&batches[0], 207, None, body).unwrap();
        assert!(matches!(
            out[0],
            UpsertOutcome::Written { created: true, .. }
        ));
        match &out[1] {
            UpsertOutcome::Failed(e) => {
                assert_eq!(e.code, "VALIDATION_ERROR");
                assert_eq!(e.class, ErrorClass::Permanent);
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        // An error matched by context.ids wins over a result for the same input.
        assert!(matches!(out[2], UpsertOutcome::Failed(_)));
    }

    #[test]
    fn inputs_named_by_nothing_are_unconfirmed() {
        let batches = build_upsert_batches("email", &contacts(2)).unwrap();
        let body = br#"{"status":"COMPLETE","results":[{"id":"51","properties":{"email":"buyer0@lakeside-motors.test"}}]}"#;
        let out = parse_upsert_response(&batches[0], 200, None, body).unwrap();
        assert_eq!(out[1], UpsertOutcome::Unconfirmed);
    }

    #[test]
    fn whole_batch_rate_limit_is_a_classified_error() {
        let batches = build_upsert_batches("email", &contacts(1)).unwrap();
        let err = parse_upsert_response(
            &batches[0],
            429,
            Some("10"),
            br#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","correlationId":"c","policyName":"TEN_SECONDLY_ROLLING"}"#,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            WriteError::Vendor(VendorError {
                class: ErrorClass::RateLimited { .. },
                ..
            })
        ));
        assert!(matches!(
            parse_upsert_response(&batches[0], 200, None, b"not json"),
            Err(WriteError::MalformedResponse(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn batches_cover_every_input_once_in_order(n in 0usize..450) {
            let inputs = contacts(n);
            let batches = build_upsert_batches("email", &inputs).unwrap();
            let mut next = 0;
            for b in &batches {
                prop_assert!(b.len >= 1 && b.len <= MAX_BATCH_INPUTS);
                prop_assert_eq!(b.first_index, next);
                prop_assert_eq!(b.body["inputs"].as_array().unwrap().len(), b.len);
                next += b.len;
            }
            prop_assert_eq!(next, n);
        }

        #[test]
        fn hostile_responses_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256), status in 100u16..600) {
            let batches = build_upsert_batches("email", &contacts(3)).unwrap();
            let _ = parse_upsert_response(&batches[0], status, Some("x"), &body);
            let trace = format!(r#"{{"errors":[{{"objectWriteTraceId":"{}","context":{{"ids":[1,"x"]}}}}]}}"#, status);
            let _ = parse_upsert_response(&batches[0], 207, None, trace.as_bytes());
        }
    }
}

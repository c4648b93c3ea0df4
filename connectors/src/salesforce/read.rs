//! Incremental reads through the REST `query` resource (vendor-apis.md §2.4).
//!
//! The cursor is the last delivered record's (`SystemModstamp`, `Id`). `SystemModstamp` is the
//! safer high-water mark because it also moves on system-driven updates (§2.4). The query is
//!
//! ```text
//! SELECT Id, SystemModstamp, <fields> FROM <Object>
//! WHERE SystemModstamp >= <cursor floored to the second> ORDER BY SystemModstamp ASC, Id ASC
//! ```
//!
//! Why `>=` and not `>`: SOQL datetime literals are unquoted and written to the second
//! (`2024-05-01T00:00:00Z`, §2.3) while stamps carry milliseconds, so the literal is floored and
//! several records may share the cursor's instant. The query therefore overlaps the cursor, as
//! §2.4 advises ("`>=` the saved high-water mark … order by it plus `Id` … de-duplicate"), and
//! [`QueryPage::records_after`] drops the rows at or before the cursor by (`SystemModstamp`,
//! `Id`). Ordering by `Id` too makes the tie-break deterministic.
//!
//! No `LIMIT`: §2.4 pages with `nextRecordsUrl` (up to 2,000 per page, tuned by
//! `Sforce-Query-Options: batchSize`, see [`batch_size_header`]). A `LIMIT` with a `>=` cursor
//! could also stall when more than `LIMIT` records share one second.

use chrono::DateTime;
use serde_json::{Map, Value};

use super::{NameError, check_api_name, check_api_version, data_root};
use crate::timefmt::parse_timestamp_ms;

/// Where an incremental read resumes: the last delivered record's `SystemModstamp` (epoch ms)
/// and its `Id`. Committed only after Kafka acknowledged the batch (CONVENTIONS.md).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub system_modstamp_ms: i64,
    pub id: String,
}

/// Builds the incremental SOQL for `object`, selecting `fields` plus `Id` and `SystemModstamp`
/// (added when missing, because the cursor needs them; duplicates are dropped, since SOQL
/// rejects a field selected twice). Every name is validated, so nothing can be injected.
pub fn incremental_soql(
    object: &str,
    fields: &[&str],
    since: Option<&Cursor>,
) -> Result<String, NameError> {
    check_api_name(object)?;
    let mut selected: Vec<&str> = vec!["Id", "SystemModstamp"];
    for f in fields {
        check_api_name(f)?;
        // API names are case-insensitive in SOQL.
        if !selected.iter().any(|s| s.eq_ignore_ascii_case(f)) {
            selected.push(f);
        }
    }
    let mut soql = format!("SELECT {} FROM {object}", selected.join(", "));
    if let Some(c) = since {
        soql.push_str(&format!(
            " WHERE SystemModstamp >= {}",
            soql_datetime(c.system_modstamp_ms)
        ));
    }
    soql.push_str(" ORDER BY SystemModstamp ASC, Id ASC");
    Ok(soql)
}

/// An unquoted SOQL datetime literal in UTC, floored to the second: `2024-05-01T10:00:00Z`
/// (§2.3, §2.4).
pub fn soql_datetime(epoch_ms: i64) -> String {
    let secs = epoch_ms.div_euclid(1000);
    DateTime::from_timestamp(secs, 0)
        .unwrap_or(DateTime::UNIX_EPOCH)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The URL of the first page: `{instance_url}/services/data/vNN.N/query?q=<soql>` (§2.4), or
/// `queryAll` to also see soft-deleted rows still in the Recycle Bin. The SOQL is
/// form-encoded (spaces as `+`), as in §2.4's example.
pub fn query_url(
    instance_url: &str,
    api_version: &str,
    soql: &str,
    include_deleted: bool,
) -> Result<String, NameError> {
    check_api_version(api_version)?;
    let resource = if include_deleted { "queryAll" } else { "query" };
    let q: String = form_urlencoded::byte_serialize(soql.as_bytes()).collect();
    Ok(format!(
        "{}/{resource}?q={q}",
        data_root(instance_url, api_version)
    ))
}

/// The URL of a further page: `{instance_url}{nextRecordsUrl}` (§2.4). The locator must be a
/// path under `/services/data/`, so a hostile or broken page cannot send the hub (and its
/// bearer token) to another host.
pub fn next_page_url(instance_url: &str, next_records_url: &str) -> Result<String, ReadError> {
    let ok = next_records_url.starts_with("/services/data/")
        && !next_records_url.contains("..")
        && next_records_url
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'@' && b != b'\\');
    if !ok {
        return Err(ReadError(format!(
            "nextRecordsUrl '{next_records_url}' is not a path under /services/data/"
        )));
    }
    Ok(format!(
        "{}{next_records_url}",
        instance_url.trim_end_matches('/')
    ))
}

/// The `Sforce-Query-Options` request header asking for `n` records per page; Salesforce
/// accepts 200 to 2,000 and may still return fewer (§2.4, §2.10), so `n` is clamped.
pub fn batch_size_header(n: u32) -> (&'static str, String) {
    (
        "Sforce-Query-Options",
        format!("batchSize={}", n.clamp(200, 2000)),
    )
}

/// One page of a `query` response (§2.4).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage {
    pub total_size: u64,
    pub done: bool,
    /// Present until the last page.
    pub next_records_url: Option<String>,
    /// Records as sent, each with `attributes {type, url}`.
    pub records: Vec<Map<String, Value>>,
}

/// A page that does not have the documented shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Salesforce query page: {0}")]
pub struct ReadError(pub String);

/// Parses a `query` response body.
pub fn parse_query_page(body: &[u8]) -> Result<QueryPage, ReadError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ReadError(format!("not JSON: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| ReadError("not a JSON object".into()))?;
    let total_size = o
        .get("totalSize")
        .and_then(Value::as_u64)
        .ok_or_else(|| ReadError("totalSize missing".into()))?;
    let done = o
        .get("done")
        .and_then(Value::as_bool)
        .ok_or_else(|| ReadError("done missing".into()))?;
    let records = match o.get("records") {
        Some(Value::Array(rs)) => rs
            .iter()
            .map(|r| {
                r.as_object()
                    .cloned()
                    .ok_or_else(|| ReadError("a record is not an object".into()))
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(ReadError("records missing".into())),
    };
    let next_records_url = o
        .get("nextRecordsUrl")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if !done && next_records_url.is_none() {
        return Err(ReadError(
            "done is false but nextRecordsUrl is missing".into(),
        ));
    }
    Ok(QueryPage {
        total_size,
        done,
        // The last page has `done: true` and no locator (§2.4); ignore a stray one.
        next_records_url: if done { None } else { next_records_url },
        records,
    })
}

/// The (`SystemModstamp`, `Id`) of a record, if it carries both.
pub fn record_cursor(record: &Map<String, Value>) -> Option<Cursor> {
    let stamp = parse_timestamp_ms(record.get("SystemModstamp")?.as_str()?)?;
    let id = record.get("Id")?.as_str()?;
    Some(Cursor {
        system_modstamp_ms: stamp,
        id: id.to_owned(),
    })
}

impl QueryPage {
    /// The records strictly after `cursor` by (`SystemModstamp`, `Id`): the `>=` overlap of
    /// [`incremental_soql`] removed. Records without a readable stamp or Id are kept, so nothing
    /// is silently lost (the query always selects both, so this does not happen in practice).
    pub fn records_after(&self, cursor: Option<&Cursor>) -> Vec<&Map<String, Value>> {
        self.records
            .iter()
            .filter(|r| match (cursor, record_cursor(r)) {
                (Some(c), Some(rc)) => rc > *c,
                _ => true,
            })
            .collect()
    }

    /// The cursor after this page: the greatest (`SystemModstamp`, `Id`) among its records and
    /// `current`. Unchanged when the page is empty.
    pub fn next_cursor(&self, current: Option<&Cursor>) -> Option<Cursor> {
        self.records
            .iter()
            .filter_map(record_cursor)
            .chain(current.cloned())
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAY_1_10H: i64 = 1_714_557_600_000; // 2024-05-01T10:00:00Z

    fn page_body() -> &'static [u8] {
        br#"{
          "totalSize": 5231,
          "done": false,
          "nextRecordsUrl": "/services/data/v66.0/query/01gRO0000016PIAYA2-2000",
          "records": [
            {"attributes": {"type": "Contact", "url": "/services/data/v66.0/sobjects/Contact/003RO00000AbCdEYAV"},
             "Id": "003RO00000AbCdEYAV", "Email": "pat@example.com", "SystemModstamp": "2024-05-01T10:00:00.000+0000"},
            {"attributes": {"type": "Contact", "url": "/services/data/v66.0/sobjects/Contact/003RO00000AbCdFYAV"},
             "Id": "003RO00000AbCdFYAV", "Email": "sam.rivera@example.com", "SystemModstamp": "2024-05-01T10:00:00.250+0000"},
            {"attributes": {"type": "Contact", "url": "/services/data/v66.0/sobjects/Contact/003RO00000AbCdGYAV"},
             "Id": "003RO00000AbCdGYAV", "Email": "lee.nguyen@example.com", "SystemModstamp": "2024-05-01T10:05:12.000+0000"}
          ]
        }"#
    }

    #[test]
    fn first_sync_of_contacts_reads_everything_in_modstamp_order() {
        let soql = incremental_soql("Contact", &["FirstName", "LastName", "Email"], None).unwrap();
        assert_eq!(
            soql,
            "SELECT Id, SystemModstamp, FirstName, LastName, Email FROM Contact \
             ORDER BY SystemModstamp ASC, Id ASC"
        );
    }

    #[test]
    fn resumed_sync_filters_from_the_cursor_second_and_breaks_ties_by_id() {
        let c = Cursor {
            system_modstamp_ms: MAY_1_10H + 250,
            id: "00QRO00000XyZaBYAV".into(),
        };
        let soql = incremental_soql("Lead", &["Status", "LeadSource", "Id"], Some(&c)).unwrap();
        assert_eq!(
            soql,
            "SELECT Id, SystemModstamp, Status, LeadSource FROM Lead \
             WHERE SystemModstamp >= 2024-05-01T10:00:00Z ORDER BY SystemModstamp ASC, Id ASC"
        );
    }

    #[test]
    fn custom_vehicle_object_and_vin_field_are_accepted() {
        let soql =
            incremental_soql("Vehicle__c", &["VIN__c", "Make__c", "Odometer__c"], None).unwrap();
        assert!(soql.starts_with(
            "SELECT Id, SystemModstamp, VIN__c, Make__c, Odometer__c FROM Vehicle__c"
        ));
    }

    #[test]
    fn injected_field_or_object_names_are_refused() {
        assert!(
            incremental_soql("Contact", &["Email FROM User WHERE Name != ''--"], None).is_err()
        );
        assert!(incremental_soql("Contact WHERE Id != null", &["Email"], None).is_err());
        assert_eq!(
            incremental_soql("Opportunity", &["Amount,StageName"], None),
            Err(NameError::BadApiName("Amount,StageName".into()))
        );
    }

    #[test]
    fn query_url_form_encodes_the_soql() {
        let soql = incremental_soql(
            "Opportunity",
            &["StageName", "Amount"],
            Some(&Cursor {
                system_modstamp_ms: MAY_1_10H,
                id: "006RO00000AbCdEYAV".into(),
            }),
        )
        .unwrap();
        let url = query_url(
            "https://acme-motors.my.salesforce.com/",
            "66.0",
            &soql,
            false,
        )
        .unwrap();
        assert_eq!(
            url,
            "https://acme-motors.my.salesforce.com/services/data/v66.0/query?q=\
             SELECT+Id%2C+SystemModstamp%2C+StageName%2C+Amount+FROM+Opportunity+\
             WHERE+SystemModstamp+%3E%3D+2024-05-01T10%3A00%3A00Z+ORDER+BY+SystemModstamp+ASC%2C+Id+ASC"
        );
        let all = query_url("https://acme-motors.my.salesforce.com", "66.0", &soql, true).unwrap();
        assert!(all.contains("/services/data/v66.0/queryAll?q="));
        assert!(query_url("https://x", "66.0/../../evil", &soql, false).is_err());
    }

    #[test]
    fn page_parses_with_locator_and_records() {
        let p = parse_query_page(page_body()).unwrap();
        assert_eq!(p.total_size, 5231);
        assert!(!p.done);
        assert_eq!(
            p.next_records_url.as_deref(),
            Some("/services/data/v66.0/query/01gRO0000016PIAYA2-2000")
        );
        assert_eq!(p.records.len(), 3);
        assert_eq!(
            next_page_url(
                "https://acme-motors.my.salesforce.com",
                p.next_records_url.as_deref().unwrap()
            )
            .unwrap(),
            "https://acme-motors.my.salesforce.com/services/data/v66.0/query/01gRO0000016PIAYA2-2000"
        );
    }

    #[test]
    fn last_page_has_no_locator() {
        let p = parse_query_page(br#"{"totalSize":1,"done":true,"records":[]}"#).unwrap();
        assert!(p.done);
        assert_eq!(p.next_records_url, None);
    }

    #[test]
    fn page_without_done_or_locator_is_rejected() {
        assert!(parse_query_page(br#"{"totalSize":1,"records":[]}"#).is_err());
        assert!(parse_query_page(br#"{"totalSize":1,"done":false,"records":[]}"#).is_err());
        assert!(parse_query_page(br#"[{"errorCode":"MALFORMED_QUERY"}]"#).is_err());
        assert!(parse_query_page(b"not json").is_err());
    }

    #[test]
    fn locator_pointing_elsewhere_is_refused() {
        for bad in [
            "https://evil.example.com/services/data/v66.0/query/x",
            "//evil.example.com/services/data/x",
            "/services/data/../../x",
            "/services/data/v66.0/query/x@evil",
        ] {
            assert!(
                next_page_url("https://acme-motors.my.salesforce.com", bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn records_at_or_before_the_cursor_are_dropped_from_the_overlap() {
        let p = parse_query_page(page_body()).unwrap();
        // The previous batch ended on the first contact: it and nothing earlier is delivered again.
        let c = Cursor {
            system_modstamp_ms: MAY_1_10H,
            id: "003RO00000AbCdEYAV".into(),
        };
        let ids: Vec<&str> = p
            .records_after(Some(&c))
            .iter()
            .map(|r| r["Id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["003RO00000AbCdFYAV", "003RO00000AbCdGYAV"]);
        assert_eq!(p.records_after(None).len(), 3);
    }

    #[test]
    fn same_millisecond_records_are_ordered_by_id() {
        let body = br#"{"totalSize":2,"done":true,"records":[
            {"Id":"003RO00000AbCdAYAV","SystemModstamp":"2024-05-01T10:00:00.000+0000"},
            {"Id":"003RO00000AbCdBYAV","SystemModstamp":"2024-05-01T10:00:00.000+0000"}]}"#;
        let p = parse_query_page(body).unwrap();
        let c = Cursor {
            system_modstamp_ms: MAY_1_10H,
            id: "003RO00000AbCdAYAV".into(),
        };
        assert_eq!(p.records_after(Some(&c)).len(), 1);
        assert_eq!(p.next_cursor(Some(&c)).unwrap().id, "003RO00000AbCdBYAV");
    }

    #[test]
    fn next_cursor_is_the_last_modstamp_and_id() {
        let p = parse_query_page(page_body()).unwrap();
        assert_eq!(
            p.next_cursor(None),
            Some(Cursor {
                system_modstamp_ms: MAY_1_10H + 312_000,
                id: "003RO00000AbCdGYAV".into()
            })
        );
    }

    #[test]
    fn empty_page_keeps_the_cursor() {
        let p = parse_query_page(br#"{"totalSize":0,"done":true,"records":[]}"#).unwrap();
        let c = Cursor {
            system_modstamp_ms: MAY_1_10H,
            id: "00QRO00000XyZaBYAV".into(),
        };
        assert_eq!(p.next_cursor(Some(&c)), Some(c));
        assert_eq!(p.next_cursor(None), None);
    }

    #[test]
    fn batch_size_is_clamped_to_the_documented_range() {
        assert_eq!(batch_size_header(50).1, "batchSize=200");
        assert_eq!(batch_size_header(1000).1, "batchSize=1000");
        assert_eq!(batch_size_header(5000).1, "batchSize=2000");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_page_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            if let Ok(p) = parse_query_page(&body) {
                let _ = p.next_cursor(None);
            }
        }

        #[test]
        fn names_with_any_soql_punctuation_are_refused(
            prefix in "[A-Za-z][A-Za-z0-9_]{0,10}",
            bad in "[ ,'\"()=<>!.;:*%\\-]",
            suffix in "[A-Za-z0-9_]{0,10}",
        ) {
            let name = format!("{prefix}{bad}{suffix}");
            proptest::prop_assert!(incremental_soql("Contact", &[&name], None).is_err());
            proptest::prop_assert!(incremental_soql(&name, &["Email"], None).is_err());
        }

        #[test]
        fn a_page_never_moves_the_cursor_backwards(
            cur_ms in 1_700_000_000_000i64..1_800_000_000_000,
            rec_ms in 1_700_000_000_000i64..1_800_000_000_000,
        ) {
            let stamp = DateTime::from_timestamp_millis(rec_ms).unwrap().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
            let body = serde_json::json!({"totalSize":1,"done":true,"records":[{"Id":"003RO00000AbCdEYAV","SystemModstamp":stamp}]});
            let p = parse_query_page(body.to_string().as_bytes()).unwrap();
            let c = Cursor { system_modstamp_ms: cur_ms, id: "003RO00000AbCdEYAV".into() };
            let next = p.next_cursor(Some(&c)).unwrap();
            proptest::prop_assert!(next >= c);
            proptest::prop_assert_eq!(next.system_modstamp_ms, cur_ms.max(rec_ms));
        }
    }
}

//! # Salesforce — what the hub knows about Salesforce's REST API (vendor-apis.md §2)
//!
//! The protocol logic is pure and offline (SOQL and bodies built, responses parsed); the I/O
//! around it lives in [`client`], [`auth`] and [`events`], through the shared [`crate::http`]
//! path. Facts come from vendor-apis.md §2 and are cited by section where they matter.
//!
//! | Part | What it does | Used by |
//! |---|---|---|
//! | [`auth`] | Web-server flow (authorize URL with `state` + PKCE S256, code exchange, refresh with or without rotation) and JWT bearer (claims built here, RS256 signing behind [`auth::JwtSigner`]); sessions with `instance_url` in memory; 401 `INVALID_SESSION_ID` → refresh/re-mint once (§2.1). | all |
//! | [`client`] | [`client::SalesforceClientConfig`] and [`client::SalesforceClient`]: incremental `query` following `nextRecordsUrl` with the advanced cursor per page, Bulk 2.0 query jobs polled with backoff and paged by `Sforce-Locator`, Collections upsert and update (≤ 200, per-record results), `/limits`; every call tagged `Sforce-Call-Options: client=…`. | ingest, sink |
//! | [`events`] | CDC over CometD long polling: handshake, subscribe with a replay id, connect; change events with own-write and gap detection (§2.7). | ingest |
//! | [`bulk`] | Bulk API 2.0 query job bodies, states and CSV result pages (§2.6). | ingest |
//! | [`read`] | Builds the incremental SOQL (`SystemModstamp >= cursor`, ordered by `SystemModstamp, Id`, §2.4) from validated API names, the `query`/`queryAll` URL, parses a page (`totalSize`, `done`, `records`, `nextRecordsUrl`), drops rows at or before the cursor and computes the next cursor. | ingest |
//! | [`write`] | Chunks records into sObject Collections upserts by an external-id field or updates by record id (at most 200 per call, `allOrNone: false`, `attributes.type` on each record, §2.5) and maps each per-record result back to its input position. | sink |
//! | [`errors`] | Parses the REST error array (`[{message, errorCode, fields}]`, §2.9) and classifies it into [`crate::error::VendorError`] (§1.2), including 403 `REQUEST_LIMIT_EXCEEDED` which carries no `Retry-After`. | all |
//! | [`limits`] | Reads the daily API budget from `Sforce-Limit-Info: api-usage=n/max` and from the `/limits` resource's `DailyApiRequests` (§2.8), and says when to throttle. | all |
//!
//! Contract tests: `connectors/tests/salesforce_contract.rs` (sandbox, or a real org with
//! `HUB_CONTRACT_SALESFORCE_URL` / `HUB_CONTRACT_SALESFORCE_TOKEN`). Not here yet: the
//! Pub/Sub gRPC API, Bulk 2.0 ingest, `getUpdated`/`getDeleted`, a key-store JWT signer.

pub mod auth;
pub mod bulk;
pub mod client;
pub mod errors;
pub mod events;
pub mod limits;
pub mod read;
pub mod write;

/// Checks a Salesforce API name (object, field or relationship) before it goes into SOQL or a
/// URL path: an ASCII letter first, then only `[A-Za-z0-9_]`, no trailing `_`, at most 80
/// characters. Custom names end in `__c` (fields, objects) or `__r` (relationships) and an
/// optional namespace prefix `ns__` is allowed — all of which this shape covers. Nothing else
/// (spaces, quotes, commas, parentheses, dots) can pass, so a mapped name cannot inject SOQL.
pub(crate) fn is_api_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 80
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1] != b'_'
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Checks a pinned REST API version such as `66.0` (§2.2: paths carry `vNN.N`).
pub(crate) fn is_api_version(v: &str) -> bool {
    match v.split_once('.') {
        Some((major, minor)) => {
            !major.is_empty()
                && major.len() <= 3
                && major.bytes().all(|c| c.is_ascii_digit())
                && minor.len() == 1
                && minor.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// `{instance_url}/services/data/v{version}` without a trailing slash (§2.2).
pub(crate) fn data_root(instance_url: &str, api_version: &str) -> String {
    format!(
        "{}/services/data/v{api_version}",
        instance_url.trim_end_matches('/')
    )
}

/// A name or version that cannot be put into SOQL or a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "'{0}' is not a Salesforce API name (letters, digits and '_' only, starting with a letter)"
    )]
    BadApiName(String),
    #[error("'{0}' is not a Salesforce API version such as 66.0")]
    BadApiVersion(String),
}

pub(crate) fn check_api_name(name: &str) -> Result<(), NameError> {
    if is_api_name(name) {
        Ok(())
    } else {
        Err(NameError::BadApiName(name.to_owned()))
    }
}

pub(crate) fn check_api_version(v: &str) -> Result<(), NameError> {
    if is_api_version(v) {
        Ok(())
    } else {
        Err(NameError::BadApiVersion(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_names_accept_standard_custom_and_namespaced_names() {
        for n in [
            "Contact",
            "VIN__c",
            "Vehicle__c",
            "Owner__r",
            "dms__Stock_No__c",
            "Id",
        ] {
            assert!(is_api_name(n), "{n}");
        }
    }

    #[test]
    fn api_names_reject_anything_that_could_change_the_query() {
        for n in [
            "",
            "Email, Phone",
            "Id FROM User--",
            "Name'",
            "1Field",
            "Account.Name",
            "VIN__c)",
            "Trailing_",
            "Émail",
        ] {
            assert!(!is_api_name(n), "{n}");
        }
    }

    #[test]
    fn api_versions_are_major_dot_single_digit() {
        assert!(is_api_version("66.0"));
        assert!(is_api_version("62.0"));
        assert!(!is_api_version("v66.0"));
        assert!(!is_api_version("66"));
        assert!(!is_api_version("66.0/../x"));
    }
}

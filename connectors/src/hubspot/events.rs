//! HubSpot webhook deliveries: verify the v3 signature, then parse the JSON array of events.
//!
//! vendor-apis.md §3.8. A delivery is `POST <targetUrl>` with a JSON array of events that carry
//! IDs, not records; the hub batch-reads the objects afterwards. Events arrive unordered and may
//! be retried (up to 10 times), so consumers de-duplicate on [`WebhookEvent::dedup_key`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const SIGNATURE_V3_HEADER: &str = "x-hubspot-signature-v3";
pub const TIMESTAMP_HEADER: &str = "x-hubspot-request-timestamp";
/// §3.8: "Reject the request if the timestamp is more than 5 minutes old."
pub const MAX_TIMESTAMP_AGE_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the X-HubSpot-Request-Timestamp header is not a number of milliseconds")]
    BadTimestamp,
    #[error("the request timestamp is more than 5 minutes from now; the request may be a replay")]
    Stale,
    #[error("the X-HubSpot-Signature-v3 signature does not match the request")]
    Mismatch,
}

impl SignatureError {
    /// Stable code for error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing(_) => "hubspot_signature_missing",
            SignatureError::BadTimestamp => "hubspot_signature_timestamp_invalid",
            SignatureError::Stale => "hubspot_signature_stale",
            SignatureError::Mismatch => "hubspot_signature_mismatch",
        }
    }
}

/// The escapes HubSpot says to decode in the URI before hashing (§3.8; the list is [memory] in
/// the doc). Only these: decoding everything would turn e.g. `%26` in a query value into `&`.
const DECODED_ESCAPES: [(&str, char); 12] = [
    ("3A", ':'),
    ("2F", '/'),
    ("3F", '?'),
    ("40", '@'),
    ("21", '!'),
    ("24", '$'),
    ("27", '\''),
    ("28", '('),
    ("29", ')'),
    ("2A", '*'),
    ("2C", ','),
    ("3B", ';'),
];

/// The URI as HubSpot hashed it: the full URL with the §3.8 escapes decoded in one pass (hex
/// digits in either case, as RFC 3986 makes them equivalent); every other byte is kept as is.
pub fn decode_signed_uri(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let decoded = after.get(..2).and_then(|hex| {
            DECODED_ESCAPES
                .iter()
                .find(|(code, _)| code.eq_ignore_ascii_case(hex))
                .map(|(_, c)| *c)
        });
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[2..];
            }
            None => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn mac_v3(secret: &[u8], method: &str, uri: &str, body: &[u8], timestamp: &str) -> Hmac<Sha256> {
    let mut m =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    // §3.8 table: v3 input is method + uri + rawBody + timestampHeader, key = client secret.
    m.update(method.as_bytes());
    m.update(decode_signed_uri(uri).as_bytes());
    m.update(body);
    m.update(timestamp.as_bytes());
    m
}

/// The `X-HubSpot-Signature-v3` value HubSpot would send (base64 of the HMAC-SHA256). Used by
/// the sandbox's webhook sender and by tests.
pub fn sign_v3(secret: &[u8], method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
    BASE64.encode(
        mac_v3(secret, method, uri, body, timestamp)
            .finalize()
            .into_bytes(),
    )
}

/// Checks a delivery's v3 signature and timestamp, comparing in constant time.
///
/// `uri` is the full URL HubSpot posted to (scheme, host, path, query), `now_ms` the hub's
/// clock in epoch milliseconds. Timestamps more than 5 minutes old are refused (§3.8); so are
/// those more than 5 minutes ahead, the same tolerance the hub's generic webhooks use.
pub fn verify_v3(
    secret: &[u8],
    method: &str,
    uri: &str,
    body: &[u8],
    signature_header: Option<&str>,
    timestamp_header: Option<&str>,
    now_ms: i64,
) -> Result<(), SignatureError> {
    let timestamp = timestamp_header
        .ok_or(SignatureError::Missing("X-HubSpot-Request-Timestamp"))?
        .trim();
    let signature = signature_header
        .ok_or(SignatureError::Missing("X-HubSpot-Signature-v3"))?
        .trim();
    let ts_ms: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if now_ms.abs_diff(ts_ms) > MAX_TIMESTAMP_AGE_MS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    // §3.8 [inferred]: some write-ups show a `sha256=` prefix; strip it if present.
    let signature = signature.strip_prefix("sha256=").unwrap_or(signature);
    let raw = BASE64
        .decode(signature)
        .map_err(|_| SignatureError::Mismatch)?;
    mac_v3(secret, method, uri, body, timestamp)
        .verify_slice(&raw)
        .map_err(|_| SignatureError::Mismatch)
}

/// Why a delivery was refused: a bad signature (401 to the sender) or a body that is not
/// events (400; HubSpot does not retry a 4xx, §3.8, so the body goes to the dead letter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectedDelivery {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Body(#[from] DeliveryError),
}

impl RejectedDelivery {
    pub fn code(&self) -> &'static str {
        match self {
            RejectedDelivery::Signature(e) => e.code(),
            RejectedDelivery::Body(e) => e.code(),
        }
    }
}

/// Verifies a delivery (v3 signature, 5-minute freshness) and only then parses it (§3.8).
/// `header` looks a request header up by its lower-case name.
pub fn accept_delivery<'a>(
    secret: &[u8],
    method: &str,
    uri: &str,
    body: &[u8],
    header: impl Fn(&str) -> Option<&'a str>,
    now_ms: i64,
) -> Result<Vec<WebhookEvent>, RejectedDelivery> {
    verify_v3(
        secret,
        method,
        uri,
        body,
        header(SIGNATURE_V3_HEADER),
        header(TIMESTAMP_HEADER),
        now_ms,
    )?;
    Ok(parse_delivery(body)?)
}

/// The CRM object type (as in API paths) of a webhook subscription's object, for the types
/// §3.8 lists; generic `object.*` subscriptions name no type and give `None`.
pub fn api_object_type(subscription_object: &str) -> Option<&'static str> {
    Some(match subscription_object {
        "contact" => "contacts",
        "company" => "companies",
        "deal" => "deals",
        "ticket" => "tickets",
        "product" => "products",
        "line_item" => "line_items",
        _ => return None,
    })
}

/// Which objects to batch-read for `events` (§3.8: events carry ids, not records): per
/// object type, the distinct ids, sorted. Deletions have nothing to read; a merge reads the
/// surviving (primary) record; association changes are not record changes.
pub fn objects_to_fetch(events: &[WebhookEvent]) -> std::collections::BTreeMap<String, Vec<u64>> {
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<u64>> =
        Default::default();
    for e in events {
        let Some(object) = api_object_type(&e.subscription_type.object) else {
            continue;
        };
        let id = match &e.change {
            EventChange::Deleted | EventChange::PrivacyDeleted => continue,
            EventChange::AssociationChanged { .. } => continue,
            EventChange::Merged {
                primary_object_id,
                new_object_id,
                ..
            } => new_object_id.unwrap_or(*primary_object_id),
            _ => e.object_id,
        };
        out.entry(object.to_owned()).or_default().insert(id);
    }
    out.into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

/// Why a delivery body could not be parsed into events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("the webhook body is not a JSON array of events: {0}")]
    NotAnArray(String),
    #[error("webhook event {index}: {problem}")]
    Event { index: usize, problem: String },
}

impl DeliveryError {
    pub fn code(&self) -> &'static str {
        match self {
            DeliveryError::NotAnArray(_) => "hubspot_webhook_not_array",
            DeliveryError::Event { .. } => "hubspot_webhook_event_invalid",
        }
    }
}

/// `<object>.<action>` from `subscriptionType`, e.g. `contact.propertyChange`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionType {
    /// `contact`, `company`, `deal`, `ticket`, `product`, `line_item`, or `object` for the
    /// generic subscriptions (§3.8).
    pub object: String,
    pub action: EventAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAction {
    Creation,
    Deletion,
    PropertyChange,
    Merge,
    Restore,
    AssociationChange,
    PrivacyDeletion,
    /// A type HubSpot added after this code was written: kept, not refused, so one new event
    /// type does not make whole deliveries fail.
    Other(String),
}

impl SubscriptionType {
    pub fn parse(s: &str) -> Option<Self> {
        let (object, action) = s.split_once('.')?;
        if object.is_empty() || action.is_empty() || action.contains('.') {
            return None;
        }
        let action = match action {
            "creation" => EventAction::Creation,
            "deletion" => EventAction::Deletion,
            "propertyChange" => EventAction::PropertyChange,
            "merge" => EventAction::Merge,
            "restore" => EventAction::Restore,
            "associationChange" => EventAction::AssociationChange,
            "privacyDeletion" => EventAction::PrivacyDeletion,
            other => EventAction::Other(other.to_owned()),
        };
        Some(SubscriptionType {
            object: object.to_owned(),
            action,
        })
    }
}

/// What changed, with the fields each kind of event carries (§3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventChange {
    /// `changeFlag` is `NEW` (older samples: `CREATED`).
    Created {
        change_flag: Option<String>,
    },
    Deleted,
    PropertyChanged {
        property_name: String,
        property_value: Option<String>,
    },
    Merged {
        primary_object_id: u64,
        merged_object_ids: Vec<u64>,
        new_object_id: Option<u64>,
    },
    Restored,
    AssociationChanged {
        from_object_id: u64,
        to_object_id: u64,
        association_type: Option<String>,
        association_removed: bool,
    },
    PrivacyDeleted,
    Other,
}

/// One event of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    pub event_id: u64,
    pub subscription_id: u64,
    /// The HubSpot account (hub id); routes the event to a tenant.
    pub portal_id: u64,
    pub app_id: Option<u64>,
    pub occurred_at_ms: i64,
    pub subscription_type: SubscriptionType,
    /// Counts from 0; > 0 means HubSpot is retrying.
    pub attempt_number: u32,
    pub object_id: u64,
    /// `CRM_UI`, `API`, `INTEGRATION`, … — with `source_id`, lets the hub drop echoes of its own
    /// writes (§3.8 [inferred]).
    pub change_source: Option<String>,
    pub source_id: Option<String>,
    pub change: EventChange,
}

impl WebhookEvent {
    /// §3.8: no ordering guarantee, retries happen; `occurredAt` plus `eventId` identify an event.
    pub fn dedup_key(&self) -> (u64, i64) {
        (self.event_id, self.occurred_at_ms)
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    event_id: u64,
    subscription_id: u64,
    portal_id: u64,
    app_id: Option<u64>,
    occurred_at: i64,
    subscription_type: String,
    #[serde(default)]
    attempt_number: u32,
    object_id: u64,
    change_source: Option<String>,
    source_id: Option<String>,
    change_flag: Option<String>,
    property_name: Option<String>,
    property_value: Option<String>,
    primary_object_id: Option<u64>,
    #[serde(default)]
    merged_object_ids: Vec<u64>,
    new_object_id: Option<u64>,
    from_object_id: Option<u64>,
    to_object_id: Option<u64>,
    association_type: Option<String>,
    #[serde(default)]
    association_removed: bool,
}

fn convert(raw: RawEvent) -> Result<WebhookEvent, String> {
    let subscription_type = SubscriptionType::parse(&raw.subscription_type).ok_or_else(|| {
        format!(
            "subscriptionType {:?} is not <object>.<action>",
            raw.subscription_type
        )
    })?;
    let change = match &subscription_type.action {
        EventAction::Creation => EventChange::Created {
            change_flag: raw.change_flag,
        },
        EventAction::Deletion => EventChange::Deleted,
        EventAction::PropertyChange => EventChange::PropertyChanged {
            property_name: raw
                .property_name
                .filter(|p| !p.is_empty())
                .ok_or("a propertyChange event has no propertyName")?,
            property_value: raw.property_value,
        },
        EventAction::Merge => EventChange::Merged {
            primary_object_id: raw
                .primary_object_id
                .ok_or("a merge event has no primaryObjectId")?,
            merged_object_ids: raw.merged_object_ids,
            new_object_id: raw.new_object_id,
        },
        EventAction::Restore => EventChange::Restored,
        EventAction::AssociationChange => EventChange::AssociationChanged {
            from_object_id: raw
                .from_object_id
                .ok_or("an associationChange event has no fromObjectId")?,
            to_object_id: raw
                .to_object_id
                .ok_or("an associationChange event has no toObjectId")?,
            association_type: raw.association_type,
            association_removed: raw.association_removed,
        },
        EventAction::PrivacyDeletion => EventChange::PrivacyDeleted,
        EventAction::Other(_) => EventChange::Other,
    };
    Ok(WebhookEvent {
        event_id: raw.event_id,
        subscription_id: raw.subscription_id,
        portal_id: raw.portal_id,
        app_id: raw.app_id,
        occurred_at_ms: raw.occurred_at,
        subscription_type,
        attempt_number: raw.attempt_number,
        object_id: raw.object_id,
        change_source: raw.change_source,
        source_id: raw.source_id,
        change,
    })
}

/// Parses a (verified) delivery body. One malformed event refuses the whole delivery: HubSpot
/// does not retry a 4xx (§3.8), so the caller dead-letters the body with this error.
pub fn parse_delivery(body: &[u8]) -> Result<Vec<WebhookEvent>, DeliveryError> {
    let items: Vec<serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| DeliveryError::NotAnArray(e.to_string()))?;
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            serde_json::from_value::<RawEvent>(item)
                .map_err(|e| e.to_string())
                .and_then(convert)
                .map_err(|problem| DeliveryError::Event { index, problem })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The §3.8 test vector.
    const SECRET: &[u8] = b"yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const VECTOR_BODY: &str = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
    const VECTOR_URI: &str = "https://hub.example.test/webhooks/hubspot?tenant=t1";
    const VECTOR_TS: &str = "1564113600500";

    const DEALER_URI: &str = "https://hub.example.test/webhooks/hubspot?tenant=lakeside-motors";
    const DEALER_BODY: &str = r#"[
      {"eventId":1001,"subscriptionId":12345,"portalId":62515,"appId":54321,"occurredAt":1714560000000,
       "subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":123,
       "propertyName":"phone","propertyValue":"+15551234567","changeSource":"CRM_UI","sourceId":"userId:42"},
      {"eventId":1002,"subscriptionId":12346,"portalId":62515,"appId":54321,"occurredAt":1714560001000,
       "subscriptionType":"deal.creation","attemptNumber":1,"objectId":9876,"changeSource":"API","changeFlag":"NEW"},
      {"eventId":1003,"subscriptionId":12347,"portalId":62515,"appId":54321,"occurredAt":1714560002000,
       "subscriptionType":"contact.merge","attemptNumber":0,"objectId":123,
       "primaryObjectId":123,"mergedObjectIds":[456]},
      {"eventId":1004,"subscriptionId":12348,"portalId":62515,"appId":54321,"occurredAt":1714560003000,
       "subscriptionType":"deal.associationChange","attemptNumber":0,"objectId":9876,
       "fromObjectId":9876,"toObjectId":123,"associationType":"DEAL_TO_CONTACT","associationRemoved":false}
    ]"#;
    const NOW_MS: i64 = 1_714_560_010_000;

    #[test]
    fn doc_test_vector_signature_is_reproduced() {
        let sig = sign_v3(
            SECRET,
            "POST",
            VECTOR_URI,
            VECTOR_BODY.as_bytes(),
            VECTOR_TS,
        );
        assert_eq!(sig, "hPczDvXH7pU/g1grk7YfXTEh/zzAQJO7/4uK2Zk9tPk=");
        let now = 1_564_113_600_500 + 60_000;
        verify_v3(
            SECRET,
            "POST",
            VECTOR_URI,
            VECTOR_BODY.as_bytes(),
            Some(&sig),
            Some(VECTOR_TS),
            now,
        )
        .unwrap();
    }

    fn signed(body: &str, ts_ms: i64) -> (String, String) {
        let ts = ts_ms.to_string();
        (
            sign_v3(SECRET, "POST", DEALER_URI, body.as_bytes(), &ts),
            ts,
        )
    }

    #[test]
    fn dealership_delivery_signed_by_doc_recipe_is_accepted() {
        let (sig, ts) = signed(DEALER_BODY, NOW_MS - 2_000);
        let check = verify_v3(
            SECRET,
            "POST",
            DEALER_URI,
            DEALER_BODY.as_bytes(),
            Some(&sig),
            Some(&ts),
            NOW_MS,
        );
        assert_eq!(check, Ok(()));
    }

    #[test]
    fn tampered_body_is_rejected() {
        let (sig, ts) = signed(DEALER_BODY, NOW_MS - 2_000);
        let tampered = DEALER_BODY.replace("+15551234567", "+15559999999");
        let check = verify_v3(
            SECRET,
            "POST",
            DEALER_URI,
            tampered.as_bytes(),
            Some(&sig),
            Some(&ts),
            NOW_MS,
        );
        assert_eq!(check, Err(SignatureError::Mismatch));
    }

    #[test]
    fn signature_for_another_tenant_url_is_rejected() {
        let (sig, ts) = signed(DEALER_BODY, NOW_MS);
        let other = DEALER_URI.replace("lakeside-motors", "hillside-auto");
        let check = verify_v3(
            SECRET,
            "POST",
            &other,
            DEALER_BODY.as_bytes(),
            Some(&sig),
            Some(&ts),
            NOW_MS,
        );
        assert_eq!(check, Err(SignatureError::Mismatch));
    }

    #[test]
    fn timestamp_older_than_five_minutes_is_rejected_even_when_signed() {
        let (sig, ts) = signed(DEALER_BODY, NOW_MS - MAX_TIMESTAMP_AGE_MS - 1);
        let check = verify_v3(
            SECRET,
            "POST",
            DEALER_URI,
            DEALER_BODY.as_bytes(),
            Some(&sig),
            Some(&ts),
            NOW_MS,
        );
        assert_eq!(check, Err(SignatureError::Stale));
        // Exactly five minutes old is still inside the window.
        let (sig, ts) = signed(DEALER_BODY, NOW_MS - MAX_TIMESTAMP_AGE_MS);
        assert!(
            verify_v3(
                SECRET,
                "POST",
                DEALER_URI,
                DEALER_BODY.as_bytes(),
                Some(&sig),
                Some(&ts),
                NOW_MS
            )
            .is_ok()
        );
    }

    #[test]
    fn missing_or_garbled_headers_are_refused_with_their_reason() {
        let body = DEALER_BODY.as_bytes();
        let (sig, ts) = signed(DEALER_BODY, NOW_MS);
        let v = |s: Option<&str>, t: Option<&str>| {
            verify_v3(SECRET, "POST", DEALER_URI, body, s, t, NOW_MS)
        };
        assert!(matches!(
            v(None, Some(&ts)),
            Err(SignatureError::Missing(_))
        ));
        assert!(matches!(
            v(Some(&sig), None),
            Err(SignatureError::Missing(_))
        ));
        assert_eq!(
            v(Some(&sig), Some("yesterday")),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            v(Some("not base64!!"), Some(&ts)),
            Err(SignatureError::Mismatch)
        );
        let prefixed = format!("sha256={sig}");
        assert_eq!(v(Some(&prefixed), Some(&ts)), Ok(()));
    }

    #[test]
    fn listed_escapes_in_the_uri_are_decoded_before_hashing() {
        let encoded =
            "https://hub.example.test/webhooks/hubspot?tenant=lakeside%3Amotors%2Cnorth%2a";
        assert_eq!(
            decode_signed_uri(encoded),
            "https://hub.example.test/webhooks/hubspot?tenant=lakeside:motors,north*"
        );
        // HubSpot hashed the decoded form; the hub sees the encoded one.
        let ts = NOW_MS.to_string();
        let sig = sign_v3(
            SECRET,
            "POST",
            "https://hub.example.test/webhooks/hubspot?tenant=lakeside:motors,north*",
            DEALER_BODY.as_bytes(),
            &ts,
        );
        assert_eq!(
            verify_v3(
                SECRET,
                "POST",
                encoded,
                DEALER_BODY.as_bytes(),
                Some(&sig),
                Some(&ts),
                NOW_MS
            ),
            Ok(())
        );
    }

    #[test]
    fn unlisted_escapes_and_stray_percent_signs_are_kept() {
        assert_eq!(decode_signed_uri("/a?q=x%26y%20z"), "/a?q=x%26y%20z");
        assert_eq!(decode_signed_uri("/a?q=100%"), "/a?q=100%");
        assert_eq!(decode_signed_uri("/a?q=%3"), "/a?q=%3");
        assert_eq!(decode_signed_uri("/a?q=%é3A"), "/a?q=%é3A");
        // One pass: `%253A` is `%25` (kept) then `3A`, not a double-decoded `:`.
        assert_eq!(decode_signed_uri("/a?q=%253A"), "/a?q=%253A");
    }

    #[test]
    fn dealership_delivery_parses_into_typed_events() {
        let events = parse_delivery(DEALER_BODY.as_bytes()).unwrap();
        assert_eq!(events.len(), 4);
        assert_eq!(events[0].subscription_type.object, "contact");
        assert_eq!(
            events[0].change,
            EventChange::PropertyChanged {
                property_name: "phone".into(),
                property_value: Some("+15551234567".into())
            }
        );
        assert_eq!(events[0].change_source.as_deref(), Some("CRM_UI"));
        assert_eq!(events[0].dedup_key(), (1001, 1_714_560_000_000));
        assert_eq!(events[1].subscription_type.action, EventAction::Creation);
        assert_eq!(events[1].attempt_number, 1);
        assert_eq!(
            events[2].change,
            EventChange::Merged {
                primary_object_id: 123,
                merged_object_ids: vec![456],
                new_object_id: None
            }
        );
        assert!(matches!(
            events[3].change,
            EventChange::AssociationChanged {
                from_object_id: 9876,
                to_object_id: 123,
                ..
            }
        ));
    }

    #[test]
    fn unknown_event_type_is_kept_not_refused() {
        let body = r#"[{"eventId":7,"subscriptionId":1,"portalId":62515,"occurredAt":1714560000000,
            "subscriptionType":"deal.somethingNew","objectId":9876}]"#;
        let events = parse_delivery(body.as_bytes()).unwrap();
        assert_eq!(
            events[0].subscription_type.action,
            EventAction::Other("somethingNew".into())
        );
    }

    #[test]
    fn malformed_deliveries_are_refused_with_the_event_index() {
        assert!(matches!(
            parse_delivery(br#"{"eventId":1}"#),
            Err(DeliveryError::NotAnArray(_))
        ));
        assert!(matches!(
            parse_delivery(b""),
            Err(DeliveryError::NotAnArray(_))
        ));
        let no_property = r#"[{"eventId":1,"subscriptionId":1,"portalId":1,"occurredAt":1,
            "subscriptionType":"contact.creation","objectId":1},
            {"eventId":2,"subscriptionId":1,"portalId":1,"occurredAt":1,
            "subscriptionType":"contact.propertyChange","objectId":1}]"#;
        let err = parse_delivery(no_property.as_bytes()).unwrap_err();
        assert!(
            matches!(err, DeliveryError::Event { index: 1, .. }),
            "{err}"
        );
        let bad_type = r#"[{"eventId":1,"subscriptionId":1,"portalId":1,"occurredAt":1,
            "subscriptionType":"contact","objectId":1}]"#;
        assert!(parse_delivery(bad_type.as_bytes()).is_err());
        let negative_id = r#"[{"eventId":1,"subscriptionId":1,"portalId":1,"occurredAt":1,
            "subscriptionType":"contact.deletion","objectId":-5}]"#;
        assert!(parse_delivery(negative_id.as_bytes()).is_err());
        let deep = "[".repeat(10_000);
        assert!(parse_delivery(deep.as_bytes()).is_err());
    }

    #[test]
    fn empty_delivery_is_no_events() {
        assert_eq!(parse_delivery(b"[]").unwrap(), vec![]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn hostile_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_delivery(&body);
            let _ = verify_v3(SECRET, "POST", DEALER_URI, &body, Some("abc="), Some("1714560010000"), NOW_MS);
        }

        #[test]
        fn hostile_uris_and_headers_never_panic(uri in ".{0,64}", sig in ".{0,64}", ts in ".{0,20}") {
            let _ = decode_signed_uri(&uri);
            let _ = verify_v3(SECRET, "POST", &uri, b"[]", Some(&sig), Some(&ts), NOW_MS);
        }

        #[test]
        fn any_change_to_a_signed_body_is_detected(flip in 0usize..200, bit in 0u8..8) {
            let (sig, ts) = signed(DEALER_BODY, NOW_MS);
            let mut body = DEALER_BODY.as_bytes().to_vec();
            let i = flip % body.len();
            body[i] ^= 1 << bit;
            prop_assert_eq!(
                verify_v3(SECRET, "POST", DEALER_URI, &body, Some(&sig), Some(&ts), NOW_MS),
                Err(SignatureError::Mismatch)
            );
        }
    }
}

//! Change Data Capture over CometD long polling (vendor-apis.md §2.7, "CometD JSON form"):
//! the Bayeux messages and change events, parsed without I/O, and [`CdcStream`], the client
//! that handshakes, subscribes with a replay id and long-polls `/meta/connect`.
//!
//! Replay: `-1` new events only, `-2` everything retained (72 hours), or the last replay id
//! the hub stored — which is the cursor, committed only after the events are stored
//! (CONVENTIONS.md). Gap events (`GAP_*`, `GAP_OVERFLOW`) carry only the header: the records
//! must be re-read through REST (§2.7). `changeOrigin` carries the `client=` tag of the writer's
//! `Sforce-Call-Options`, which tells the hub's own writes apart (§2.7, §2.10).
//!
//! The Pub/Sub gRPC API (Avro payloads, bitmap `changedFields`) is not implemented.

use serde_json::{Map, Value, json};

use super::client::{SalesforceClient, SalesforceError};
use super::errors::VENDOR;
use crate::error::{ErrorClass, VendorError};
use crate::http::{Request, unexpected};

/// The CDC channel of an object (§2.7): `/data/ContactChangeEvent`,
/// `/data/Vehicle__ChangeEvent` for `Vehicle__c`; `None` for a name that is not an API name.
pub fn channel_for(object: &str) -> Option<String> {
    if !super::is_api_name(object) {
        return None;
    }
    Some(match object.strip_suffix("__c") {
        Some(base) => format!("/data/{base}__ChangeEvent"),
        None => format!("/data/{object}ChangeEvent"),
    })
}

/// Where a subscription starts (§2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// `-1`: only events after the subscription.
    New,
    /// `-2`: every retained event (72 hours).
    AllRetained,
    /// After this stored replay id.
    After(i64),
}

impl ReplayFrom {
    fn id(self) -> i64 {
        match self {
            ReplayFrom::New => -1,
            ReplayFrom::AllRetained => -2,
            ReplayFrom::After(id) => id,
        }
    }
}

/// One change event.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub channel: String,
    pub replay_id: i64,
    pub entity_name: String,
    pub record_ids: Vec<String>,
    /// `CREATE`, `UPDATE`, `DELETE`, `UNDELETE`, `GAP_*`, `GAP_OVERFLOW`.
    pub change_type: String,
    pub change_origin: String,
    pub commit_timestamp_ms: Option<i64>,
    /// Field names (JSON form; the Avro form uses bitmaps, §2.7).
    pub changed_fields: Vec<String>,
    /// The record values (creates: all non-null, updates: the changed ones).
    pub fields: Map<String, Value>,
}

impl ChangeEvent {
    /// Gap and overflow events carry no values: re-read the records (§2.7).
    pub fn needs_reread(&self) -> bool {
        self.change_type.starts_with("GAP_")
    }

    /// True when the hub made this change, i.e. `changeOrigin` ends with `client=<tag>`.
    pub fn is_own_write(&self, client_tag: &str) -> bool {
        self.change_origin
            .rsplit(';')
            .next()
            .and_then(|p| p.trim().strip_prefix("client="))
            == Some(client_tag)
    }
}

/// A `/meta/*` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaReply {
    pub channel: String,
    pub successful: bool,
    pub client_id: Option<String>,
    pub error: Option<String>,
    /// `advice.reconnect`: `retry`, `handshake` or `none`.
    pub reconnect: Option<String>,
}

/// Splits a Bayeux response into meta replies and change events. Messages of other shapes are
/// skipped; a body that is not a JSON array (or object) of messages is an error.
pub fn parse_bayeux(body: &[u8]) -> Result<(Vec<MetaReply>, Vec<ChangeEvent>), String> {
    let messages = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(a)) => a,
        Ok(v @ Value::Object(_)) => vec![v],
        _ => return Err("the CometD answer is not a JSON array of messages".into()),
    };
    let mut meta = Vec::new();
    let mut events = Vec::new();
    for m in &messages {
        let channel = m.get("channel").and_then(Value::as_str).unwrap_or("");
        if channel.starts_with("/meta/") {
            let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
            meta.push(MetaReply {
                channel: channel.to_owned(),
                successful: m.get("successful").and_then(Value::as_bool) == Some(true),
                client_id: s(m.get("clientId")),
                error: s(m.get("error")),
                reconnect: s(m.get("advice").and_then(|a| a.get("reconnect"))),
            });
        } else if let Some(e) = parse_event(channel, m) {
            events.push(e);
        }
    }
    Ok((meta, events))
}

fn parse_event(channel: &str, m: &Value) -> Option<ChangeEvent> {
    let data = m.get("data")?;
    let replay_id = data.get("event")?.get("replayId")?.as_i64()?;
    let mut fields = data.get("payload")?.as_object()?.clone();
    let header = fields.remove("ChangeEventHeader")?;
    let text = |k: &str| {
        header
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let names = |k: &str| -> Vec<String> {
        header
            .get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(ChangeEvent {
        channel: channel.to_owned(),
        replay_id,
        entity_name: text("entityName"),
        record_ids: names("recordIds"),
        change_type: text("changeType"),
        change_origin: text("changeOrigin"),
        commit_timestamp_ms: header.get("commitTimestamp").and_then(Value::as_i64),
        changed_fields: names("changedFields"),
        fields,
    })
}

/// A CDC subscription over CometD. Call [`CdcStream::next_batch`] in a loop; store
/// [`CdcStream::replay_id`] after the events are stored, and start again from it.
#[derive(Debug)]
pub struct CdcStream {
    client: SalesforceClient,
    channel: String,
    replay: ReplayFrom,
    client_id: Option<String>,
}

fn cometd_error(what: String) -> VendorError {
    VendorError {
        vendor: VENDOR,
        status: 200,
        code: "COMETD".into(),
        message: what,
        class: ErrorClass::Transient { retry_after: None },
    }
}

impl CdcStream {
    /// A subscription to `channel` (e.g. from [`channel_for`], or `/data/ChangeEvents`).
    pub fn new(client: SalesforceClient, channel: String, replay: ReplayFrom) -> Self {
        CdcStream {
            client,
            channel,
            replay,
            client_id: None,
        }
    }

    /// The replay id to resume from: the last event handed out, or where it started.
    pub fn replay_id(&self) -> i64 {
        self.replay.id()
    }

    async fn bayeux(
        &self,
        messages: Value,
        endpoint: &'static str,
    ) -> Result<(Vec<MetaReply>, Vec<ChangeEvent>), SalesforceError> {
        let url = self.client.cometd_url().await?;
        let req = Request::new(reqwest::Method::POST, url, endpoint).json(&messages);
        let resp = self.client.http().send(&req, self.client.auth()).await?;
        Ok(parse_bayeux(&resp.body).map_err(|e| unexpected(VENDOR, resp.status, e))?)
    }

    /// Handshakes and subscribes with the replay id (done by `next_batch` when needed; call
    /// it first to be sure the subscription exists before something is written).
    pub async fn open(&mut self) -> Result<(), SalesforceError> {
        let (meta, _) = self
            .bayeux(
                json!([{"channel": "/meta/handshake", "version": "1.0",
                        "supportedConnectionTypes": ["long-polling"]}]),
                "cometd_handshake",
            )
            .await?;
        let hs = meta
            .iter()
            .find(|m| m.channel == "/meta/handshake" && m.successful)
            .and_then(|m| m.client_id.clone())
            .ok_or_else(|| cometd_error("the CometD handshake failed".into()))?;
        let mut ext = Map::new();
        ext.insert(self.channel.clone(), json!(self.replay.id()));
        let (meta, _) = self
            .bayeux(
                json!([{"channel": "/meta/subscribe", "clientId": hs,
                        "subscription": self.channel, "ext": {"replay": ext}}]),
                "cometd_subscribe",
            )
            .await?;
        match meta.iter().find(|m| m.channel == "/meta/subscribe") {
            Some(m) if m.successful => {
                self.client_id = Some(hs);
                Ok(())
            }
            Some(m) => Err(VendorError {
                vendor: VENDOR,
                status: 400,
                code: "COMETD_SUBSCRIBE".into(),
                // e.g. an unknown channel, or a replay id older than the 72-hour retention:
                // then a full resync is needed (§2.7).
                message: m
                    .error
                    .clone()
                    .unwrap_or_else(|| "subscribe refused".into()),
                class: ErrorClass::Permanent,
            }
            .into()),
            None => Err(cometd_error("no reply to /meta/subscribe".into()).into()),
        }
    }

    /// One long poll: the events that arrived (empty when the poll timed out). Handshakes
    /// again, from the last replay id, when the server has forgotten the client.
    pub async fn next_batch(&mut self) -> Result<Vec<ChangeEvent>, SalesforceError> {
        for _ in 0..2 {
            let Some(client_id) = self.client_id.clone() else {
                self.open().await?;
                continue;
            };
            let (meta, events) = self
                .bayeux(
                    json!([{"channel": "/meta/connect", "clientId": client_id,
                            "connectionType": "long-polling"}]),
                    "cometd_connect",
                )
                .await?;
            let connect = meta.iter().find(|m| m.channel == "/meta/connect");
            if connect.is_some_and(|m| !m.successful) {
                self.client_id = None;
                continue;
            }
            if let Some(last) = events.iter().map(|e| e.replay_id).max() {
                self.replay = ReplayFrom::After(last);
            }
            return Ok(events);
        }
        Err(cometd_error("the CometD server keeps refusing the client".into()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_follow_section_2_7() {
        assert_eq!(channel_for("Contact").unwrap(), "/data/ContactChangeEvent");
        assert_eq!(
            channel_for("Vehicle__c").unwrap(),
            "/data/Vehicle__ChangeEvent"
        );
        assert!(channel_for("Contact/../x").is_none());
    }

    #[test]
    fn events_parse_and_own_writes_are_recognised() {
        let body = br#"[{"channel":"/data/ContactChangeEvent","data":{"event":{"replayId":7},
            "payload":{"ChangeEventHeader":{"entityName":"Contact","recordIds":["003A"],
            "changeType":"UPDATE","changeOrigin":"com/salesforce/api/rest/66.0;client=automatrix-hub",
            "commitTimestamp":1714560000000,"changedFields":["Email"]},"Email":"a@example.com"}}},
            {"channel":"/meta/connect","successful":true},{"channel":"/data/X","data":"garbage"}]"#;
        let (meta, events) = parse_bayeux(body).unwrap();
        assert_eq!(meta.len(), 1);
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.replay_id, 7);
        assert!(e.is_own_write("automatrix-hub"));
        assert!(!e.is_own_write("automatrix"));
        assert_eq!(e.fields["Email"], "a@example.com");
        assert!(!e.fields.contains_key("ChangeEventHeader"));
        assert!(parse_bayeux(b"<html>").is_err());
    }
}

//! Change Data Capture over the legacy Streaming API (vendor-apis.md §2.7, "CometD JSON form"):
//! Bayeux long polling on `POST /cometd/vNN.N` (message type optionally appended to the path, as
//! CometD clients do): `/meta/handshake`, `/meta/subscribe` to `/data/ChangeEvents` or
//! `/data/<Object>ChangeEvent` (`/data/Vehicle__ChangeEvent` for `Vehicle__c`) with the replay
//! extension (`-1` new events only, `-2` everything retained for 72 hours, or a replay id),
//! `/meta/connect` (held open until events arrive or the timeout passes), `/meta/disconnect`.
//!
//! Events carry `ChangeEventHeader` (`entityName`, `recordIds`, `changeType`, `changeOrigin`,
//! `commitTimestamp`, `changedFields` as names, …) and the values; gap events only the header.
//! The Pub/Sub gRPC API with Avro payloads is not simulated.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::store::ChangeEvent;
use crate::common::{lock, token};

/// §2.7: events are retained for 72 hours.
const RETENTION_MS: i64 = 72 * 3600 * 1000;

/// A handshaken client and where each of its subscriptions stands in the feed.
#[derive(Debug, Default)]
pub struct Client {
    /// (channel, index of the next event to deliver)
    subs: Vec<(String, usize)>,
}

/// The CDC channel of an object (§2.7: `__c` becomes `__ChangeEvent`).
pub fn channel_of(object: &str) -> String {
    match object.strip_suffix("__c") {
        Some(base) => format!("/data/{base}__ChangeEvent"),
        None => format!("/data/{object}ChangeEvent"),
    }
}

fn known_channel(ch: &str) -> bool {
    ch == "/data/ChangeEvents"
        || super::schema::OBJECTS
            .iter()
            .any(|o| channel_of(o.name) == ch)
}

fn event_message(channel: &str, replay_id: usize, e: &ChangeEvent) -> Value {
    let mut payload = serde_json::Map::new();
    payload.insert(
        "ChangeEventHeader".into(),
        json!({
            "entityName": e.object,
            "recordIds": [e.record_id],
            "changeType": e.change_type,
            "changeOrigin": e.origin,
            "transactionKey": format!("{:08x}-sandbox-{replay_id}", e.commit_ms as u64 & 0xffff_ffff),
            "sequenceNumber": 1,
            "commitTimestamp": e.commit_ms,
            "commitNumber": replay_id,
            "commitUser": "005RO000001SwiUAAS",
            "nulledFields": e.values.iter().filter(|(_, v)| v.is_null()).map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            "diffFields": [],
            "changedFields": if e.change_type == "UPDATE" { json!(e.changed_fields) } else { json!([]) },
        }),
    );
    for (k, v) in &e.values {
        payload.insert(k.clone(), v.clone());
    }
    if e.change_type == "UPDATE" {
        payload.insert(
            "LastModifiedDate".into(),
            json!(super::store::sf_datetime(e.commit_ms)),
        );
    }
    json!({
        "channel": channel,
        "data": {
            "schema": format!("sandbox-{}-schema", e.object),
            "payload": payload,
            "event": {"replayId": replay_id},
        },
    })
}

fn reply(msg: &Value, channel: &str) -> Value {
    let mut r = json!({"channel": channel});
    if let Some(id) = msg.get("id") {
        r["id"] = id.clone();
    }
    if let Some(c) = msg.get("clientId") {
        r["clientId"] = c.clone();
    }
    r
}

fn unknown_client(msg: &Value, channel: &str) -> Value {
    let mut r = reply(msg, channel);
    r["successful"] = json!(false);
    r["error"] = json!("403::Unknown client");
    r["advice"] = json!({"reconnect": "handshake", "interval": 0});
    r
}

/// Events due to a client, advancing its cursors.
fn due(sh: &Shared, client_id: &str) -> Option<Vec<Value>> {
    let feed = lock(&sh.changes);
    let mut clients = lock(&sh.cometd_clients);
    let client = clients.get_mut(client_id)?;
    let mut out = Vec::new();
    for (channel, next) in &mut client.subs {
        for (i, e) in feed.iter().enumerate().skip(*next) {
            if channel == "/data/ChangeEvents" || *channel == channel_of(e.object) {
                out.push(event_message(channel, i + 1, e));
            }
        }
        *next = feed.len();
    }
    Some(out)
}

/// `POST /cometd/{version}[/{messageType}]`.
pub(crate) async fn bayeux(
    State(sh): State<Arc<Shared>>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let version = params.get("ver").map(String::as_str).unwrap_or("");
    if !sh
        .config
        .api_versions
        .iter()
        .any(|v| v == version.trim_start_matches('v'))
    {
        return (
            StatusCode::NOT_FOUND,
            Json(json!([{"error": "404::Unknown version", "successful": false}])),
        )
            .into_response();
    }
    if super::auth::authenticate(&sh, &headers).is_err() {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!([{"channel": "/meta/handshake", "successful": false, "error": "401::Authentication invalid", "advice": {"reconnect": "none"}}])),
        )
            .into_response();
    }
    let messages = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(a)) => a,
        Ok(v @ Value::Object(_)) => vec![v],
        _ => {
            return (StatusCode::BAD_REQUEST, Json(json!([{"successful": false, "error": "400::Bad request: the body is not Bayeux JSON"}]))).into_response();
        }
    };
    let mut out = Vec::new();
    for msg in messages.iter().take(100) {
        let channel = msg.get("channel").and_then(Value::as_str).unwrap_or("");
        let client_id = msg.get("clientId").and_then(Value::as_str).unwrap_or("");
        match channel {
            "/meta/handshake" => {
                let id = token(&mut lock(&sh.state).rng, "sbx");
                lock(&sh.cometd_clients).insert(id.clone(), Client::default());
                let mut r = reply(msg, channel);
                r["clientId"] = json!(id);
                r["successful"] = json!(true);
                r["version"] = json!("1.0");
                r["minimumVersion"] = json!("1.0");
                r["supportedConnectionTypes"] = json!(["long-polling"]);
                r["ext"] = json!({"replay": true, "payload.format": true});
                r["advice"] = json!({"reconnect": "retry", "interval": 0, "timeout": sh.config.cometd_timeout.as_millis() as u64});
                out.push(r);
            }
            "/meta/subscribe" | "/meta/unsubscribe" => {
                let sub = msg
                    .get("subscription")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let mut r = reply(msg, channel);
                r["subscription"] = json!(sub);
                if !lock(&sh.cometd_clients).contains_key(client_id) {
                    out.push(unknown_client(msg, channel));
                    continue;
                }
                if !known_channel(&sub) {
                    r["successful"] = json!(false);
                    r["error"] = json!(format!(
                        "400::The channel you requested to subscribe to does not exist {{{sub}}}"
                    ));
                    out.push(r);
                    continue;
                }
                if channel == "/meta/unsubscribe" {
                    if let Some(c) = lock(&sh.cometd_clients).get_mut(client_id) {
                        c.subs.retain(|(ch, _)| *ch != sub);
                    }
                    r["successful"] = json!(true);
                    out.push(r);
                    continue;
                }
                let replay = msg
                    .get("ext")
                    .and_then(|e| e.get("replay"))
                    .and_then(|r| r.get(&sub))
                    .and_then(Value::as_i64)
                    .unwrap_or(-1);
                let now = sh.clock.now_ms();
                let start = {
                    let feed = lock(&sh.changes);
                    let first_retained = feed
                        .iter()
                        .position(|e| e.commit_ms >= now - RETENTION_MS)
                        .unwrap_or(feed.len());
                    match replay {
                        -1 => Some(feed.len()),
                        -2 => Some(first_retained),
                        n if n >= 0
                            && (n as usize) <= feed.len()
                            && (n as usize) >= first_retained =>
                        {
                            Some(n as usize)
                        }
                        _ => None,
                    }
                };
                match start {
                    Some(start) => {
                        if let Some(c) = lock(&sh.cometd_clients).get_mut(client_id) {
                            c.subs.retain(|(ch, _)| *ch != sub);
                            c.subs.push((sub.clone(), start));
                        }
                        r["successful"] = json!(true);
                    }
                    None => {
                        r["successful"] = json!(false);
                        r["error"] = json!(format!(
                            "400::The replayId {{{replay}}} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events."
                        ));
                    }
                }
                out.push(r);
            }
            "/meta/connect" => {
                let deadline = tokio::time::Instant::now() + sh.config.cometd_timeout;
                let events = loop {
                    // Register for wake-ups before looking, so an event published in between
                    // is not missed.
                    let notified = sh.change_notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    match due(&sh, client_id) {
                        None => break None,
                        Some(ev) if !ev.is_empty() => break Some(ev),
                        Some(_) => {}
                    }
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        break Some(Vec::new());
                    }
                };
                match events {
                    None => out.push(unknown_client(msg, channel)),
                    Some(ev) => {
                        out.extend(ev);
                        let mut r = reply(msg, channel);
                        r["successful"] = json!(true);
                        r["advice"] = json!({"reconnect": "retry", "interval": 0, "timeout": sh.config.cometd_timeout.as_millis() as u64});
                        out.push(r);
                    }
                }
            }
            "/meta/disconnect" => {
                lock(&sh.cometd_clients).remove(client_id);
                let mut r = reply(msg, channel);
                r["successful"] = json!(true);
                out.push(r);
            }
            _ => {
                let mut r = reply(msg, channel);
                r["successful"] = json!(false);
                r["error"] = json!("400::Unsupported channel");
                out.push(r);
            }
        }
    }
    Json(Value::Array(out)).into_response()
}

/// The default long-poll hold, from Salesforce's handshake advice.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(110);

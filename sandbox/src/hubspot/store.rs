//! HubSpot's CRM objects in memory, and the pure operations on them: search (§3.4), batch read and
//! upsert (§3.5), single get. Property values are strings (§3.3); `createdate` and the
//! last-modified property (`lastmodifieddate` on contacts, `hs_lastmodifieddate` elsewhere, §3.3)
//! are kept by the store, not written by clients.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::errors::ApiError;

/// The object types this simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    Contacts,
    Companies,
    Deals,
}

impl ObjectType {
    /// Accepts the names and the object type ids of §3.2.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "contacts" | "contact" | "0-1" => Some(Self::Contacts),
            "companies" | "company" | "0-2" => Some(Self::Companies),
            "deals" | "deal" | "0-3" => Some(Self::Deals),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Contacts => "contacts",
            Self::Companies => "companies",
            Self::Deals => "deals",
        }
    }

    /// The singular used in webhook `subscriptionType`s (§3.8).
    pub fn singular(self) -> &'static str {
        match self {
            Self::Contacts => "contact",
            Self::Companies => "company",
            Self::Deals => "deal",
        }
    }

    /// §3.3: contacts use `lastmodifieddate`, every other object `hs_lastmodifieddate`.
    pub fn last_modified_property(self) -> &'static str {
        match self {
            Self::Contacts => "lastmodifieddate",
            _ => "hs_lastmodifieddate",
        }
    }

    /// Properties marked `hasUniqueValue`, usable as `idProperty` (§3.3). `vin` and
    /// `dms_deal_number` are the dealership's custom unique properties.
    pub fn unique_properties(self) -> &'static [&'static str] {
        match self {
            Self::Contacts => &["email"],
            Self::Companies => &["domain"],
            Self::Deals => &["dms_deal_number"],
        }
    }

    /// What a search returns when no `properties` are asked for (§3.4 lists the contacts' set).
    pub fn default_properties(self) -> &'static [&'static str] {
        match self {
            Self::Contacts => &[
                "createdate",
                "email",
                "firstname",
                "hs_object_id",
                "lastmodifieddate",
                "lastname",
            ],
            Self::Companies => &[
                "createdate",
                "domain",
                "hs_lastmodifieddate",
                "hs_object_id",
                "name",
            ],
            Self::Deals => &[
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ],
        }
    }

    pub const ALL: [ObjectType; 3] = [Self::Contacts, Self::Companies, Self::Deals];
}

/// Properties the store maintains; a client cannot write them.
const READ_ONLY: &[&str] = &[
    "hs_object_id",
    "createdate",
    "lastmodifieddate",
    "hs_lastmodifieddate",
];

/// Properties holding datetimes (ISO-8601 strings in responses, epoch ms in filters).
fn is_datetime_property(p: &str) -> bool {
    matches!(
        p,
        "createdate" | "lastmodifieddate" | "hs_lastmodifieddate" | "closedate"
    )
}

fn is_number_property(p: &str) -> bool {
    matches!(p, "amount" | "hs_object_id" | "year" | "numberofemployees")
}

/// §3.3: datetimes travel as ISO-8601 UTC with milliseconds.
pub fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Epoch ms from a filter or property value: a number of milliseconds or an ISO-8601 datetime
/// or date.
pub fn parse_datetime_ms(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Ok(ms) = v.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(v) {
        return Some(dt.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

/// One CRM record.
#[derive(Debug, Clone, PartialEq)]
pub struct CrmObject {
    pub id: u64,
    pub properties: BTreeMap<String, String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub archived: bool,
}

impl CrmObject {
    /// The value a filter or sort sees: datetimes as epoch ms, for the store-kept ones exactly.
    fn value(&self, object_type: ObjectType, prop: &str) -> Option<String> {
        match prop {
            "hs_object_id" => Some(self.id.to_string()),
            "createdate" => Some(self.created_ms.to_string()),
            p if p == object_type.last_modified_property() => Some(self.updated_ms.to_string()),
            p => self.properties.get(p).cloned(),
        }
    }

    /// The JSON shape of §3.4: `{id, properties, createdAt, updatedAt, archived}` with the asked
    /// properties (absent ones as `null`, as HubSpot does).
    pub fn to_json(&self, object_type: ObjectType, props: &[String]) -> Value {
        let mut p = Map::new();
        let mut put = |name: &str| {
            let v = match name {
                "hs_object_id" => Some(self.id.to_string()),
                "createdate" => Some(iso(self.created_ms)),
                n if n == object_type.last_modified_property() => Some(iso(self.updated_ms)),
                n => self.properties.get(n).cloned(),
            };
            p.insert(name.to_owned(), v.map_or(Value::Null, Value::String));
        };
        // HubSpot always returns these three alongside what was asked for.
        for always in [
            "hs_object_id",
            "createdate",
            object_type.last_modified_property(),
        ] {
            put(always);
        }
        for name in props {
            put(name);
        }
        json!({
            "id": self.id.to_string(),
            "properties": p,
            "createdAt": iso(self.created_ms),
            "updatedAt": iso(self.updated_ms),
            "archived": self.archived,
        })
    }
}

/// A change the store made, for webhooks (§3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    PropertyChanged { name: String, value: String },
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub object_type: ObjectType,
    pub object_id: u64,
    pub occurred_at_ms: i64,
    pub kind: ChangeKind,
}

/// Why one input of a batch failed: the per-record error of §3.5.
#[derive(Debug, Clone, PartialEq)]
pub struct InputError {
    pub category: &'static str,
    pub message: String,
    /// (code, property) pairs for `errors[]`.
    pub details: Vec<(&'static str, String)>,
}

#[derive(Debug, Default)]
pub struct Store {
    pub(crate) objects: BTreeMap<ObjectType, BTreeMap<u64, CrmObject>>,
    /// (type, unique property, lower-cased value) → id.
    unique: HashMap<(ObjectType, String, String), u64>,
    next_id: u64,
}

/// Checks one property value the way HubSpot's validation would (§3.6 shows `INVALID_EMAIL`).
fn validate_property(name: &str, value: &str) -> Result<(), (&'static str, String)> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err((
            "PROPERTY_DOESNT_EXIST",
            format!("Property \"{name}\" does not exist"),
        ));
    }
    if READ_ONLY.contains(&name) {
        return Err((
            "READ_ONLY_VALUE",
            format!("\"{name}\" is a read only property; its value cannot be set."),
        ));
    }
    if name == "email" && !value.is_empty() && !is_email(value) {
        // The message names the property, not the value: sandbox logs carry no personal data.
        return Err(("INVALID_EMAIL", "Email address is invalid".to_owned()));
    }
    if is_number_property(name) && !value.is_empty() && value.trim().parse::<f64>().is_err() {
        return Err((
            "INVALID_DECIMAL",
            format!("{name} must be a number; it was not"),
        ));
    }
    if is_datetime_property(name) && !value.is_empty() && parse_datetime_ms(value).is_none() {
        return Err((
            "INVALID_DATE",
            format!("{name} must be epoch milliseconds or an ISO-8601 date"),
        ));
    }
    Ok(())
}

pub fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !v.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Store {
    pub fn new() -> Self {
        Store {
            next_id: 100_001,
            ..Default::default()
        }
    }

    pub fn count(&self, t: ObjectType) -> usize {
        self.objects.get(&t).map_or(0, BTreeMap::len)
    }

    pub fn get(&self, t: ObjectType, id: u64) -> Option<&CrmObject> {
        self.objects.get(&t)?.get(&id)
    }

    /// Finds a live record by `hs_object_id` (the default) or by a unique property.
    pub fn find(&self, t: ObjectType, id_property: Option<&str>, id: &str) -> Option<&CrmObject> {
        let oid = match id_property {
            None | Some("hs_object_id") => id.trim().parse::<u64>().ok()?,
            Some(p) => *self
                .unique
                .get(&(t, p.to_owned(), id.trim().to_lowercase()))?,
        };
        self.get(t, oid).filter(|o| !o.archived)
    }

    /// Creates a record with validated `properties`; the seed generator and the API both go
    /// through here.
    pub fn create(
        &mut self,
        t: ObjectType,
        properties: BTreeMap<String, String>,
        created_ms: i64,
        updated_ms: i64,
    ) -> Result<(u64, Vec<Change>), InputError> {
        self.check_properties(t, &properties, None)?;
        let id = self.next_id;
        self.next_id += 1;
        for (k, v) in &properties {
            if t.unique_properties().contains(&k.as_str()) && !v.is_empty() {
                self.unique
                    .insert((t, k.clone(), v.trim().to_lowercase()), id);
            }
        }
        self.objects.entry(t).or_default().insert(
            id,
            CrmObject {
                id,
                properties,
                created_ms,
                updated_ms,
                archived: false,
            },
        );
        let change = Change {
            object_type: t,
            object_id: id,
            occurred_at_ms: updated_ms,
            kind: ChangeKind::Created,
        };
        Ok((id, vec![change]))
    }

    fn check_properties(
        &self,
        t: ObjectType,
        properties: &BTreeMap<String, String>,
        existing: Option<u64>,
    ) -> Result<(), InputError> {
        let mut details = Vec::new();
        let mut messages = Vec::new();
        for (k, v) in properties {
            if let Err((code, msg)) = validate_property(k, v) {
                details.push((code, k.clone()));
                messages.push(format!(
                    "{{\"isValid\":false,\"message\":\"{msg}\",\"error\":\"{code}\",\"name\":\"{k}\"}}"
                ));
            }
        }
        if !details.is_empty() {
            return Err(InputError {
                category: "VALIDATION_ERROR",
                message: format!("Property values were not valid: [{}]", messages.join(",")),
                details,
            });
        }
        for (k, v) in properties {
            if t.unique_properties().contains(&k.as_str())
                && let Some(&other) = self.unique.get(&(t, k.clone(), v.trim().to_lowercase()))
                && Some(other) != existing
            {
                return Err(InputError {
                    category: "CONFLICT",
                    message: format!(
                        "A {} with this {k} already exists. Existing ID: {other}",
                        t.singular()
                    ),
                    details: vec![("CONFLICT", k.clone())],
                });
            }
        }
        Ok(())
    }

    /// Updates `id` with `properties`; returns one change per property whose value changed
    /// (none when nothing changed, and then the last-modified date stays).
    pub fn update(
        &mut self,
        t: ObjectType,
        id: u64,
        properties: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<Vec<Change>, InputError> {
        self.check_properties(t, &properties, Some(id))?;
        let Some(obj) = self.objects.get_mut(&t).and_then(|m| m.get_mut(&id)) else {
            return Err(InputError {
                category: "OBJECT_NOT_FOUND",
                message: format!("Object not found. objectId are usually numeric. ({id})"),
                details: vec![],
            });
        };
        let mut changes = Vec::new();
        for (k, v) in properties {
            if obj.properties.get(&k) == Some(&v) {
                continue;
            }
            if t.unique_properties().contains(&k.as_str()) {
                if let Some(old) = obj.properties.get(&k) {
                    self.unique
                        .remove(&(t, k.clone(), old.trim().to_lowercase()));
                }
                if !v.is_empty() {
                    self.unique
                        .insert((t, k.clone(), v.trim().to_lowercase()), id);
                }
            }
            changes.push(Change {
                object_type: t,
                object_id: id,
                occurred_at_ms: now_ms,
                kind: ChangeKind::PropertyChanged {
                    name: k.clone(),
                    value: v.clone(),
                },
            });
            obj.properties.insert(k, v);
        }
        if !changes.is_empty() {
            // Never backwards: the seed may have stamped records later than the wall clock.
            obj.updated_ms = now_ms.max(obj.updated_ms + 1);
        }
        Ok(changes)
    }

    /// Archives (soft-deletes) a record (§3.4: restorable, hidden from search).
    pub fn archive(&mut self, t: ObjectType, id: u64, now_ms: i64) -> Option<Change> {
        let obj = self.objects.get_mut(&t)?.get_mut(&id)?;
        if obj.archived {
            return None;
        }
        obj.archived = true;
        obj.updated_ms = now_ms.max(obj.updated_ms + 1);
        for (k, v) in &obj.properties {
            if t.unique_properties().contains(&k.as_str()) {
                self.unique.remove(&(t, k.clone(), v.trim().to_lowercase()));
            }
        }
        Some(Change {
            object_type: t,
            object_id: id,
            occurred_at_ms: now_ms,
            kind: ChangeKind::Deleted,
        })
    }

    /// Live records of a type in id order.
    pub fn live(&self, t: ObjectType) -> impl Iterator<Item = &CrmObject> {
        self.objects
            .get(&t)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|o| !o.archived)
    }
}

// ---------------------------------------------------------------- search (§3.4)

/// Limits of the search endpoint; §3.4 gives two different sets of filter counts, so they are
/// settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchLimits {
    pub max_limit: u32,
    pub max_results: u64,
    pub max_filter_groups: usize,
    pub max_filters_per_group: usize,
    pub max_filters_total: usize,
}

impl Default for SearchLimits {
    /// §3.4: `limit` ≤ 200, 10,000 results per query, 5 groups, 10 filters per group, 25 in all
    /// (the 2024 changelog's numbers).
    fn default() -> Self {
        SearchLimits {
            max_limit: 200,
            max_results: 10_000,
            max_filter_groups: 5,
            max_filters_per_group: 10,
            max_filters_total: 25,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    Neq(String),
    Lt(String),
    Lte(String),
    Gt(String),
    Gte(String),
    Between(String, String),
    In(Vec<String>),
    NotIn(Vec<String>),
    HasProperty,
    NotHasProperty,
    ContainsToken(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    property: String,
    op: Op,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_filter(f: &Value) -> Result<Filter, ApiError> {
    let bad = |m: &str| ApiError::validation(format!("Invalid input JSON: {m}"));
    let o = f
        .as_object()
        .ok_or_else(|| bad("a filter is not an object"))?;
    let property = o
        .get("propertyName")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a filter has no propertyName"))?
        .to_owned();
    let operator = o
        .get("operator")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a filter has no operator"))?;
    let value = || {
        o.get("value")
            .and_then(text)
            .ok_or_else(|| bad(&format!("operator {operator} needs a value")))
    };
    let values = || {
        o.get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(text).collect::<Vec<_>>())
            .ok_or_else(|| bad(&format!("operator {operator} needs values")))
    };
    let op = match operator {
        "EQ" => Op::Eq(value()?),
        "NEQ" => Op::Neq(value()?),
        "LT" => Op::Lt(value()?),
        "LTE" => Op::Lte(value()?),
        "GT" => Op::Gt(value()?),
        "GTE" => Op::Gte(value()?),
        "BETWEEN" => Op::Between(
            value()?,
            o.get("highValue")
                .and_then(text)
                .ok_or_else(|| bad("operator BETWEEN needs a highValue"))?,
        ),
        "IN" => Op::In(values()?),
        "NOT_IN" => Op::NotIn(values()?),
        "HAS_PROPERTY" => Op::HasProperty,
        "NOT_HAS_PROPERTY" => Op::NotHasProperty,
        "CONTAINS_TOKEN" => Op::ContainsToken(value()?),
        other => {
            return Err(ApiError::validation(format!(
                "Invalid input JSON on line 1: Cannot deserialize value of type `FilterOperatorEnum` from String \"{other}\": not one of the values accepted for Enum class: [EQ, NEQ, LT, LTE, GT, GTE, BETWEEN, IN, NOT_IN, HAS_PROPERTY, NOT_HAS_PROPERTY, CONTAINS_TOKEN, NOT_CONTAINS_TOKEN]"
            )));
        }
    };
    Ok(Filter { property, op })
}

/// Compares a stored value with a filter value: as epoch ms for datetimes, as numbers when both
/// are, else as case-insensitive text (HubSpot's string filters ignore case).
fn compare(property: &str, stored: &str, wanted: &str) -> Option<std::cmp::Ordering> {
    if is_datetime_property(property) {
        return Some(parse_datetime_ms(stored)?.cmp(&parse_datetime_ms(wanted)?));
    }
    if let (Ok(a), Ok(b)) = (stored.trim().parse::<f64>(), wanted.trim().parse::<f64>()) {
        return a.partial_cmp(&b);
    }
    Some(stored.to_lowercase().cmp(&wanted.to_lowercase()))
}

impl Filter {
    fn matches(&self, t: ObjectType, o: &CrmObject) -> bool {
        use std::cmp::Ordering::*;
        let stored = o.value(t, &self.property).filter(|v| !v.is_empty());
        let cmp = |w: &str| {
            stored
                .as_deref()
                .and_then(|s| compare(&self.property, s, w))
        };
        match &self.op {
            Op::HasProperty => stored.is_some(),
            Op::NotHasProperty => stored.is_none(),
            Op::Eq(w) => cmp(w) == Some(Equal),
            Op::Neq(w) => cmp(w) != Some(Equal),
            Op::Lt(w) => cmp(w) == Some(Less),
            Op::Lte(w) => matches!(cmp(w), Some(Less | Equal)),
            Op::Gt(w) => cmp(w) == Some(Greater),
            Op::Gte(w) => matches!(cmp(w), Some(Greater | Equal)),
            Op::Between(lo, hi) => {
                matches!(cmp(lo), Some(Greater | Equal)) && matches!(cmp(hi), Some(Less | Equal))
            }
            Op::In(ws) => ws.iter().any(|w| cmp(w) == Some(Equal)),
            Op::NotIn(ws) => !ws.iter().any(|w| cmp(w) == Some(Equal)),
            Op::ContainsToken(w) => stored.as_deref().is_some_and(|s| {
                let w = w.trim_matches('*').to_lowercase();
                s.to_lowercase()
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|tok| tok == w)
                    || s.to_lowercase().contains(&w)
            }),
        }
    }
}

/// A page of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResult {
    pub total: usize,
    pub results: Vec<Value>,
    pub next_after: Option<u64>,
}

/// Runs a search request body (§3.4) over the store.
pub fn search(
    store: &Store,
    t: ObjectType,
    body: &Value,
    limits: &SearchLimits,
    visible_until_ms: i64,
) -> Result<SearchResult, ApiError> {
    let o = body
        .as_object()
        .ok_or_else(|| ApiError::validation("Invalid input JSON: the body is not an object"))?;
    let mut groups: Vec<Vec<Filter>> = Vec::new();
    if let Some(g) = o.get("filterGroups") {
        let arr = g.as_array().ok_or_else(|| {
            ApiError::validation("Invalid input JSON: filterGroups is not an array")
        })?;
        if arr.len() > limits.max_filter_groups {
            return Err(ApiError::validation(format!(
                "Too many filter groups: {} (at most {} allowed)",
                arr.len(),
                limits.max_filter_groups
            )));
        }
        let mut total = 0;
        for g in arr {
            let filters = g.get("filters").and_then(Value::as_array).ok_or_else(|| {
                ApiError::validation("Invalid input JSON: a filter group has no filters")
            })?;
            if filters.len() > limits.max_filters_per_group {
                return Err(ApiError::validation(format!(
                    "Too many filters in a filter group: {} (at most {} allowed)",
                    filters.len(),
                    limits.max_filters_per_group
                )));
            }
            total += filters.len();
            groups.push(filters.iter().map(parse_filter).collect::<Result<_, _>>()?);
        }
        if total > limits.max_filters_total {
            return Err(ApiError::validation(format!(
                "Too many filters: {total} (at most {} allowed)",
                limits.max_filters_total
            )));
        }
    }
    let sorts = match o.get("sorts") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(ApiError::validation(
                "Invalid input JSON: sorts is not an array",
            ));
        }
    };
    // §3.4: one sort only.
    if sorts.len() > 1 {
        return Err(ApiError::validation("Only one sort is supported"));
    }
    let sort = match sorts.first() {
        None => None,
        Some(Value::String(p)) => Some((p.clone(), false)),
        Some(Value::Object(s)) => {
            let p = s
                .get("propertyName")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::validation("Invalid input JSON: a sort has no propertyName")
                })?;
            let desc = match s.get("direction").and_then(Value::as_str) {
                None | Some("ASCENDING") => false,
                Some("DESCENDING") => true,
                Some(_) => {
                    return Err(ApiError::validation(
                        "Invalid input JSON: sort direction must be ASCENDING or DESCENDING",
                    ));
                }
            };
            Some((p.to_owned(), desc))
        }
        Some(_) => {
            return Err(ApiError::validation(
                "Invalid input JSON: a sort is not an object",
            ));
        }
    };
    let props: Vec<String> = match o.get("properties") {
        None | Some(Value::Null) => t
            .default_properties()
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(_) => {
            return Err(ApiError::validation(
                "Invalid input JSON: properties is not an array",
            ));
        }
    };
    let limit = match o.get("limit") {
        None | Some(Value::Null) => 10,
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::validation("Invalid input JSON: limit is not a whole number")
        })?,
    };
    if limit > u64::from(limits.max_limit) {
        return Err(ApiError::validation(format!(
            "limit must be at most {} (was {limit})",
            limits.max_limit
        )));
    }
    let after = match o.get("after") {
        None | Some(Value::Null) => 0,
        Some(v) => text(v)
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::validation("Invalid input JSON: after is not a number"))?,
    };
    // §3.4: at most 10,000 results per query; paging past them is a 400.
    if after >= limits.max_results {
        return Err(ApiError::validation(format!(
            "There was a problem with the request. Paging beyond {} results is not supported; narrow the query with a filter on the last-modified date.",
            limits.max_results
        )));
    }

    let mut hits: Vec<&CrmObject> = store
        .live(t)
        .filter(|obj| obj.updated_ms <= visible_until_ms)
        .filter(|obj| {
            groups.is_empty() || groups.iter().any(|g| g.iter().all(|f| f.matches(t, obj)))
        })
        .collect();
    if let Some((p, desc)) = &sort {
        hits.sort_by(|a, b| {
            let va = a.value(t, p);
            let vb = b.value(t, p);
            let ord = match (va.as_deref(), vb.as_deref()) {
                (Some(x), Some(y)) => compare(p, x, y).unwrap_or(std::cmp::Ordering::Equal),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            let ord = if *desc { ord.reverse() } else { ord };
            ord.then(a.id.cmp(&b.id))
        });
    }
    let total = hits.len();
    let reachable = (total as u64).min(limits.max_results);
    let start = after.min(reachable);
    let end = (after + limit).min(reachable);
    let results = hits[start as usize..end as usize]
        .iter()
        .map(|obj| obj.to_json(t, &props))
        .collect();
    Ok(SearchResult {
        total,
        results,
        next_after: (end < reachable).then_some(end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unique_email_is_enforced_case_insensitively() {
        let mut s = Store::new();
        let (id, _) = s
            .create(
                ObjectType::Contacts,
                props(&[("email", "a@example.com")]),
                1,
                1,
            )
            .unwrap();
        assert_eq!(
            s.find(ObjectType::Contacts, Some("email"), "A@EXAMPLE.COM")
                .unwrap()
                .id,
            id
        );
        let err = s
            .create(
                ObjectType::Contacts,
                props(&[("email", "a@Example.com")]),
                2,
                2,
            )
            .unwrap_err();
        assert_eq!(err.category, "CONFLICT");
    }

    #[test]
    fn invalid_email_is_a_validation_error_naming_the_property() {
        let mut s = Store::new();
        let err = s
            .create(ObjectType::Contacts, props(&[("email", "bob@")]), 1, 1)
            .unwrap_err();
        assert_eq!(err.category, "VALIDATION_ERROR");
        assert_eq!(err.details, vec![("INVALID_EMAIL", "email".to_owned())]);
    }

    #[test]
    fn search_filters_sorts_and_pages_by_last_modified() {
        let mut s = Store::new();
        for i in 0..30 {
            s.create(
                ObjectType::Deals,
                props(&[("dealname", "x")]),
                1000 + i,
                1000 + (29 - i),
            )
            .unwrap();
        }
        let body = json!({
            "filterGroups": [{"filters": [
                {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "1005"},
                {"propertyName": "hs_lastmodifieddate", "operator": "LT", "value": "1025"}]}],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
            "limit": 7
        });
        let r = search(
            &s,
            ObjectType::Deals,
            &body,
            &SearchLimits::default(),
            i64::MAX,
        )
        .unwrap();
        assert_eq!(r.total, 20);
        assert_eq!(r.next_after, Some(7));
        let first = &r.results[0]["properties"]["hs_lastmodifieddate"];
        assert_eq!(first, &json!(iso(1005)));
    }
}

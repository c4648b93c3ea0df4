//! The topology file's model. Every struct denies unknown fields, so a typo is an error
//! with a line number rather than a silently ignored setting.

use std::collections::BTreeMap;

use hub_schemas::Entity;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize};

/// A whole topology file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// File format version; only `1` exists.
    pub version: u32,
    /// Node-level settings; each can be overridden by the `hub` command's flags or env vars.
    #[serde(default)]
    pub runtime: Runtime,
    pub tenants: Vec<Tenant>,
}

/// Where the node finds Kafka, the registry and its SQL store, and where it listens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// Kafka bootstrap servers.
    pub kafka_bootstrap: String,
    /// Prefix of every topic and consumer group (`<namespace>.raw.<vendor>`, ...). Several
    /// hubs (staging and production, or test runs) can share a cluster under different ones.
    pub namespace: String,
    /// Partitions for topics the hub creates. Keys keep per-VIN / per-customer order on one
    /// partition; more partitions spread load over more workers.
    pub partitions: i32,
    /// Replication factor for topics the hub creates (1 on a single local broker).
    pub replication: i32,
    /// `embedded` serves the registry from this hub (on the control listener); otherwise the
    /// URL of a Confluent-compatible registry.
    pub registry: String,
    /// The SQL database of the SQL table sink: `sqlite://FILE` or `postgres://...`.
    pub sql_url: String,
    /// The ingest listener (`POST /ingest/v1/...`).
    pub ingest_listen: String,
    /// The control listener (metrics, health, the embedded schema registry).
    pub control_listen: String,
    /// Name of this node; stable across restarts (it makes the transform's transactional id).
    pub node_id: String,
    /// Largest webhook body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            kafka_bootstrap: "127.0.0.1:9092".into(),
            namespace: "hub".into(),
            partitions: 6,
            replication: 1,
            registry: "embedded".into(),
            sql_url: "sqlite://hub.db".into(),
            ingest_listen: "127.0.0.1:8080".into(),
            control_listen: "127.0.0.1:8081".into(),
            node_id: "node-0".into(),
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// One dealership or dealer group.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Stable id: lowercase letters, digits and dashes; it rides in every record's key.
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub connectors: Vec<Connector>,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Conflict policy per canonical entity name (`customer: { default: merge, … }`); an
    /// entity not listed gets [`Policy::default`] (`manual`: a person decides).
    #[serde(default, with = "serde_yaml::with::singleton_map_recursive")]
    pub conflicts: BTreeMap<String, crate::conflict::Policy>,
    /// What the hub accepts from this tenant; absent: [`TenantLimits::default`].
    #[serde(default, skip_serializing_if = "TenantLimits::is_default")]
    pub limits: TenantLimits,
}

/// Per-tenant limits on what the hub accepts, so one dealership's burst cannot starve the
/// others sharing a node. Defaults are generous: they stop a runaway sender, not a busy one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantLimits {
    /// Webhook requests per second the ingest endpoint accepts from this tenant, sustained,
    /// counted per node after the signature check (so unsigned traffic spends nothing).
    /// More → `429 rate_limited` with `Retry-After`. Default 50.
    pub ingest_per_s: u32,
    /// Requests accepted at once above the sustained rate (a vendor flushing a backlog).
    /// Default 200.
    pub ingest_burst: u32,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            ingest_per_s: 50,
            ingest_burst: 200,
        }
    }
}

impl TenantLimits {
    pub fn is_default(&self) -> bool {
        *self == TenantLimits::default()
    }
}

/// The vendors the hub knows. An explicit list: adding one is a deliberate change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Vendor {
    Salesforce,
    Hubspot,
    Dealersocket,
    Vinsolutions,
    Elead,
    Reynolds,
    Cdk,
    Dealertrack,
    /// Anything that posts JSON or XML to the generic ingest endpoint.
    Generic,
}

impl Vendor {
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Salesforce => "salesforce",
            Vendor::Hubspot => "hubspot",
            Vendor::Dealersocket => "dealersocket",
            Vendor::Vinsolutions => "vinsolutions",
            Vendor::Elead => "elead",
            Vendor::Reynolds => "reynolds",
            Vendor::Cdk => "cdk",
            Vendor::Dealertrack => "dealertrack",
            Vendor::Generic => "generic",
        }
    }

    /// `hub.raw.<vendor>` in the default namespace.
    pub fn raw_topic(self) -> String {
        hub_schemas::topics::raw(self.name())
    }
}

/// One connection to one vendor system.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Connector {
    pub id: String,
    pub vendor: Vendor,
    /// The HMAC-SHA256 secret webhooks are signed with. `${VAR}` or `${VAR:-default}` reads
    /// the environment, so secrets need not live in the file.
    pub webhook_secret: String,
    #[serde(default)]
    pub entities: Vec<EntityMapping>,
    /// How the hub calls the vendor's own API for this connection: to pull changes (the
    /// poller) and to write into it (a `salesforce` or `hubspot` target naming it). Absent:
    /// the vendor only pushes webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ConnectorApi>,
}

/// The vendor API side of a connector (Salesforce and HubSpot today).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorApi {
    /// The API's base URL: `https://api.hubapi.com`, a Salesforce login URL for the JWT
    /// flow or the org's instance URL with `token`, or a sandbox's address.
    pub base_url: String,
    /// A bearer token: a HubSpot private-app token, or a Salesforce session's access token
    /// (then `base_url` is the instance URL). `${VAR}` reads the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Salesforce's JWT bearer flow (server to server): the connected app's consumer key
    /// and the integration user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtBearerSettings>,
    /// How often the poller asks for changes, in ms; 0 turns polling off (the connector is
    /// then written to, or fed by webhooks, only). Default 1000.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// The vendor entities to poll; default: every `vendor_entity` of the mappings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poll: Vec<String>,
    /// Requests per rolling 10 s this account may make (HubSpot's tier, §3.7); default: the
    /// vendor's lowest published tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_10s: Option<u32>,
    /// API requests this account may make per day (Salesforce's daily allocation, §2.8:
    /// 100,000 plus 1,000 or 5,000 per licence; HubSpot's private-app daily limit, §3.7);
    /// default: the vendor's published base (Salesforce 100,000, HubSpot 250,000). The hub
    /// counts its calls against it; Salesforce's own `Sforce-Limit-Info` count wins when seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_limit: Option<u64>,
    /// Warn (log, `hub_vendor_api_budget_low`, the API's `warning` flag) once the day's
    /// remaining budget falls below this percentage of `daily_limit`, in 1..=99. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_warn_percent: Option<u8>,
    /// The share of the vendor's limits the hub may use, in (0, 1]; default 0.9, leaving
    /// the rest to the dealer's other tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<f64>,
    /// The hub's public base URL as the vendor calls it (e.g. `https://hub.dealer.example`
    /// behind TLS termination): HubSpot signs the full URL it posted to. Default:
    /// `http://` + the request's `Host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// Salesforce JWT bearer flow settings (vendor-apis.md §2.1).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtBearerSettings {
    pub consumer_key: String,
    pub username: String,
    /// The connected app's private key, PKCS#8 PEM (usually `${SF_JWT_KEY}`): assertions are
    /// signed RS256 with it. Without it they go unsigned, which only the sandbox accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

fn default_poll_ms() -> u64 {
    1000
}

impl ConnectorApi {
    /// The vendor entities the poller reads for `connector`.
    pub fn polled<'a>(&'a self, connector: &'a Connector) -> Vec<&'a str> {
        if !self.poll.is_empty() {
            return self.poll.iter().map(String::as_str).collect();
        }
        let mut out: Vec<&str> = Vec::new();
        for m in &connector.entities {
            if !out.contains(&m.vendor_entity.as_str()) {
                out.push(&m.vendor_entity);
            }
        }
        out
    }
}

/// How one vendor entity maps to one canonical entity. A connector may list several
/// mappings of the same vendor entity to different canonical entities (an ADF `prospect` →
/// a lead, a customer and a vehicle); each raw record then yields all of them, or none.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntityMapping {
    /// The vendor's name for the entity, as it appears in the ingest URL (e.g. `Contact`).
    pub vendor_entity: String,
    #[serde(deserialize_with = "entity_from_str", serialize_with = "entity_to_str")]
    pub canonical: Entity,
    /// JSON pointer to the vendor's id in the payload (e.g. `/Id`).
    #[serde(default)]
    pub external_id: Option<String>,
    /// JSON pointer to the vendor's modification time (ISO 8601 or epoch ms).
    #[serde(default)]
    pub updated_at: Option<String>,
    /// JSON pointer to a boolean that marks a deletion (e.g. `/IsDeleted`).
    #[serde(default)]
    pub deleted: Option<String>,
    /// Canonical field name → how to fill it.
    pub fields: BTreeMap<String, FieldMapping>,
    /// Rules over the whole record, checked after every field is mapped (see [`EntityRule`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<EntityRule>,
}

/// How one canonical field is filled from a vendor record, and what it must then satisfy.
///
/// ```yaml
/// fields:
///   first_name: { from: /FirstName, transform: [trim, {normalize_text: {case: title}}] }
///   email: { from: /Email, transform: [trim, lowercase], required: true, format: email }
///   year:
///     from: /Year
///     transform: [integer]
///     rules:
///       - range: { min: 1900, max: 2100 }
///         message: the model year must be between 1900 and 2100
/// ```
///
/// Paths (`from`, and `concatenate`'s parts) are JSON pointers, read the same way in JSON
/// and in XML payloads (an XML document is read as a tree: see `hub_transform::xml`):
/// `/adf/prospect/vehicle/@interest` is an attribute, `/…/name/0` the first of a repeated
/// element, and `/…/name[@part=first]` the first element whose `@part` is `first` (a filter
/// compares any key of an object — an attribute, or a child element's text). A path that
/// goes through a list without an index reads its first element; an index `0` on a single
/// element is that element. A path ending at an element that has attributes reads its text.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// Path into the vendor payload (`/Email`, `/properties/email`).
    #[serde(default)]
    pub from: Option<String>,
    /// Transformations applied in order (see [`Transform`]).
    #[serde(default)]
    pub transform: Vec<Transform>,
    /// Used when the source is missing or null.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// The record is dead-lettered when this field ends up empty.
    #[serde(default)]
    pub required: bool,
    /// A format the final value must have: a named one or `{regex: "^[A-Z]{3}$"}`.
    #[serde(default)]
    pub format: Option<Format>,
    /// Further rules on the final value (see [`Rule`]); every failed one is reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// One step of a field's transformation chain: a bare name, or a one-key map from the name
/// to its arguments. Arguments are checked when the topology is parsed (an unknown name or
/// argument, a bad time zone, phone region, currency code, expression or regular expression
/// is an error with its line), never per record.
///
/// ```yaml
/// transform:
///   - trim                       # also: lowercase, uppercase, phone_e164, timestamp_ms,
///                                #       money_minor, integer, boolean, to_string
///   - format_date: { tz: America/Chicago, input: mm/dd/yyyy }  # → epoch ms
///   - format_currency: { currency: USD, currency_field: currency }  # → minor units
///   - format_phone: { region: US }                 # → E.164
///   - normalize_text: { case: title }              # keep | lower | upper | title
///   - lookup_value: { table: { Open: new, Working: contacted }, default: other }
///   - concatenate: { from: [/FirstName, /LastName], separator: " " }
///   - split: { separator: " ", index: 0 }
///   - calculate: "value * 100"
///   - custom_function: "if value.len() > 3 { value.sub_string(0, 3) } else { value }"
/// ```
///
/// A null value passes through every step unchanged, except `concatenate` (which reads its
/// parts from the record) and, in a field without `from`, `calculate` / `custom_function`
/// (there the expression is the source and reads `record`).
///
/// Expressions are [rhai](https://rhai.rs) (see `hub_topology::sandboxed_engine` for the
/// sandbox): `value` is the field's current value and `record` the vendor payload as a map —
/// for XML, the tree described on [`FieldMapping`], so an attribute is
/// `record.adf.prospect["@status"]` and a repeated element `record.adf.prospect.vehicle[1]`.
/// A missing value is `()`. Errors are `expression_failed`, limits `expression_limit`.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    Trim,
    Lowercase,
    Uppercase,
    /// Normalises a phone number to E.164 (US default region).
    PhoneE164,
    /// ISO 8601 (with or without offset) or epoch milliseconds → epoch milliseconds.
    TimestampMs,
    /// `"$1,234.50"`, `"1234.5"` or `1234.5` → integer minor units (123450).
    MoneyMinor,
    /// A number or numeric string → integer.
    Integer,
    /// `true`/`false`, `"yes"`/`"no"`, `1`/`0` → boolean.
    Boolean,
    /// Any scalar → string.
    ToString,
    /// A date or timestamp in many shapes → epoch milliseconds.
    FormatDate(FormatDateArgs),
    /// An amount as a vendor writes it → integer minor units; the currency (from the value,
    /// else `currency`) can be written to a second field.
    FormatCurrency(FormatCurrencyArgs),
    /// A phone number in any notation → E.164, with a default region.
    FormatPhone(FormatPhoneArgs),
    /// NFC, collapsed spaces, trimmed, case changed.
    NormalizeText(NormalizeTextArgs),
    /// A vendor code → the canonical one through a table.
    LookupValue(LookupValueArgs),
    /// Several paths of the record joined into one string (replaces the value).
    Concatenate(ConcatenateArgs),
    /// One part of the value split at a separator (or all parts, as a list).
    Split(SplitArgs),
    /// One rhai expression over `value` and `record`; its result is the new value.
    Calculate(crate::Expression),
    /// A rhai script (statements, `let`, loops) over `value` and `record`; its last
    /// expression is the new value.
    CustomFunction(crate::Expression),
}

/// The transformations that take no arguments, by their names in the file.
const UNIT_TRANSFORMS: [(&str, Transform); 9] = [
    ("trim", Transform::Trim),
    ("lowercase", Transform::Lowercase),
    ("uppercase", Transform::Uppercase),
    ("phone_e164", Transform::PhoneE164),
    ("timestamp_ms", Transform::TimestampMs),
    ("money_minor", Transform::MoneyMinor),
    ("integer", Transform::Integer),
    ("boolean", Transform::Boolean),
    ("to_string", Transform::ToString),
];

const ARG_TRANSFORMS: [&str; 9] = [
    "format_date",
    "format_currency",
    "format_phone",
    "normalize_text",
    "lookup_value",
    "concatenate",
    "split",
    "calculate",
    "custom_function",
];

fn unknown_name(kind: &str, name: &str, known: &[&str]) -> String {
    format!(
        "unknown {kind} `{name}`; expected one of {}",
        known.join(", ")
    )
}

/// serde_yaml 0.9 reads enums only from YAML tags (`!format_date {…}`); the file uses the
/// plainer "name, or one-key map from name to arguments", so both directions are by hand.
impl<'de> Deserialize<'de> for Transform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Transform;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a transformation name (like trim) or a one-key map from a name to its arguments (like {format_phone: {region: US}})")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Transform, E> {
                if let Some((_, t)) = UNIT_TRANSFORMS.iter().find(|(n, _)| *n == s) {
                    return Ok(t.clone());
                }
                if ARG_TRANSFORMS.contains(&s) {
                    return Err(E::custom(format!(
                        "transformation `{s}` needs arguments: write {{{s}: {{...}}}}"
                    )));
                }
                let known: Vec<&str> = UNIT_TRANSFORMS
                    .iter()
                    .map(|(n, _)| *n)
                    .chain(ARG_TRANSFORMS)
                    .collect();
                Err(E::custom(unknown_name("transformation", s, &known)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Transform, A::Error> {
                let Some(name) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "an empty map is not a transformation; write {name: {arguments}}",
                    ));
                };
                let t = match name.as_str() {
                    "format_date" => Transform::FormatDate(map.next_value()?),
                    "format_currency" => Transform::FormatCurrency(map.next_value()?),
                    "format_phone" => Transform::FormatPhone(map.next_value()?),
                    "normalize_text" => Transform::NormalizeText(map.next_value()?),
                    "lookup_value" => Transform::LookupValue(map.next_value()?),
                    "concatenate" => Transform::Concatenate(map.next_value()?),
                    "split" => Transform::Split(map.next_value()?),
                    "calculate" => Transform::Calculate(map.next_value()?),
                    "custom_function" => {
                        let src: String = map.next_value()?;
                        Transform::CustomFunction(
                            crate::Expression::compile(&src, crate::ExpressionKind::Script)
                                .map_err(de::Error::custom)?,
                        )
                    }
                    other => {
                        if UNIT_TRANSFORMS.iter().any(|(n, _)| *n == other) {
                            return Err(de::Error::custom(format!(
                                "transformation `{other}` takes no arguments: write it as a plain name"
                            )));
                        }
                        return self.visit_str(other);
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "one transformation per list item: `{extra}` needs its own `- ` entry"
                    )));
                }
                Ok(t)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Transform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some((name, _)) = UNIT_TRANSFORMS.iter().find(|(_, t)| t == self) {
            return s.serialize_str(name);
        }
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Transform::FormatDate(a) => m.serialize_entry("format_date", a)?,
            Transform::FormatCurrency(a) => m.serialize_entry("format_currency", a)?,
            Transform::FormatPhone(a) => m.serialize_entry("format_phone", a)?,
            Transform::NormalizeText(a) => m.serialize_entry("normalize_text", a)?,
            Transform::LookupValue(a) => m.serialize_entry("lookup_value", a)?,
            Transform::Concatenate(a) => m.serialize_entry("concatenate", a)?,
            Transform::Split(a) => m.serialize_entry("split", a)?,
            Transform::Calculate(e) => m.serialize_entry("calculate", e)?,
            Transform::CustomFunction(e) => m.serialize_entry("custom_function", e)?,
            _ => {}
        }
        m.end()
    }
}

impl Transform {
    /// Whether the step reads the record rather than (only) the value.
    pub fn reads_record(&self) -> bool {
        matches!(
            self,
            Transform::Concatenate(_) | Transform::Calculate(_) | Transform::CustomFunction(_)
        )
    }
}

/// `format_date`'s arguments.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FormatDateArgs {
    /// IANA zone of times written without an offset (`America/Chicago`); UTC when unset.
    #[serde(
        default,
        deserialize_with = "tz_from_str",
        serialize_with = "tz_to_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub tz: Option<chrono_tz::Tz>,
    /// The shape of the input; `auto` (the default) tries them all.
    #[serde(default)]
    pub input: DateInputShape,
}

/// The input shapes `format_date` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum DateInputShape {
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// `2024-05-01T12:00:00Z`, `2024-05-01T12:00:00`, `2024-05-01`.
    #[serde(rename = "iso8601")]
    Iso8601,
    /// Milliseconds since the epoch (a number or a string of digits).
    #[serde(rename = "epoch_ms")]
    EpochMs,
    /// US dealer exports: `05/01/2024`, `5/1/2024`.
    #[serde(rename = "mm/dd/yyyy")]
    UsDate,
    /// STAR `xs:dateTime`.
    #[serde(rename = "star")]
    Star,
    /// Salesforce REST: `2024-05-01T12:00:00.000+0000`.
    #[serde(rename = "salesforce")]
    Salesforce,
}

fn tz_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<chrono_tz::Tz>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown time zone `{s}`; use an IANA name such as America/Chicago"
        ))
    })
}

fn tz_to_str<S: serde::Serializer>(tz: &Option<chrono_tz::Tz>, s: S) -> Result<S::Ok, S::Error> {
    match tz {
        Some(tz) => s.serialize_str(tz.name()),
        None => s.serialize_none(),
    }
}

/// `format_currency`'s arguments.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FormatCurrencyArgs {
    /// ISO 4217 code used when the value names none. Default `USD`.
    #[serde(default = "usd", deserialize_with = "currency_code")]
    pub currency: String,
    /// The value is already in minor units (a DMS that stores `123450` for $1,234.50).
    #[serde(default)]
    pub input_is_minor: bool,
    /// Canonical field (same entity) that receives the currency code, e.g. `currency`. It
    /// replaces whatever that field's own mapping produced when the amount is present, so a
    /// `currency: { default: USD }` mapping is the fallback for records without an amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_field: Option<String>,
}

impl Default for FormatCurrencyArgs {
    fn default() -> Self {
        FormatCurrencyArgs {
            currency: usd(),
            input_is_minor: false,
            currency_field: None,
        }
    }
}

fn usd() -> String {
    "USD".into()
}

fn currency_code<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "`{s}` is not an ISO 4217 currency code (three capital letters, like USD)"
        )))
    }
}

/// `format_phone`'s arguments.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FormatPhoneArgs {
    /// Country of numbers written without `+` (ISO 3166 alpha-2). Default `US`.
    #[serde(default = "us", deserialize_with = "phone_region")]
    pub region: String,
}

impl Default for FormatPhoneArgs {
    fn default() -> Self {
        FormatPhoneArgs { region: us() }
    }
}

fn us() -> String {
    "US".into()
}

fn phone_region<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    match s.parse::<phonenumber::country::Id>() {
        Ok(_) if s.len() == 2 => Ok(s),
        _ => Err(serde::de::Error::custom(format!(
            "`{s}` is not a country code the phone library knows (two capital letters, like US)"
        ))),
    }
}

/// `normalize_text`'s arguments; every one has a default, so `{normalize_text: {}}` trims,
/// collapses spaces and applies NFC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizeTextArgs {
    pub case: TextCase,
    pub trim: bool,
    pub collapse_spaces: bool,
    pub nfc: bool,
}

impl Default for NormalizeTextArgs {
    fn default() -> Self {
        NormalizeTextArgs {
            case: TextCase::Keep,
            trim: true,
            collapse_spaces: true,
            nfc: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextCase {
    #[default]
    Keep,
    Lower,
    Upper,
    /// `MARY-ANN O'BRIEN` → `Mary-Ann O'Brien`.
    Title,
}

/// `lookup_value`'s arguments. Keys are matched against the value's text; numeric and
/// boolean keys in the file (`{1: individual, 2: business}`) are read as their text.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LookupValueArgs {
    #[serde(deserialize_with = "text_keyed")]
    pub table: BTreeMap<String, serde_json::Value>,
    /// For values not in the table; without one they are `lookup_unmapped` errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub case_insensitive: bool,
}

fn text_keyed<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, serde_json::Value>, D::Error> {
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    struct Key(String);
    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Key;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a text, number or true/false key")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                    Ok(Key(s.to_string()))
                }
                fn visit_i64<E: de::Error>(self, n: i64) -> Result<Key, E> {
                    Ok(Key(n.to_string()))
                }
                fn visit_u64<E: de::Error>(self, n: u64) -> Result<Key, E> {
                    Ok(Key(n.to_string()))
                }
                fn visit_f64<E: de::Error>(self, n: f64) -> Result<Key, E> {
                    Ok(Key(
                        serde_json::Number::from_f64(n).map_or(n.to_string(), |n| n.to_string())
                    ))
                }
                fn visit_bool<E: de::Error>(self, b: bool) -> Result<Key, E> {
                    Ok(Key(b.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }
    let table = BTreeMap::<Key, serde_json::Value>::deserialize(d)?;
    Ok(table.into_iter().map(|(k, v)| (k.0, v)).collect())
}

/// `concatenate`'s arguments.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConcatenateArgs {
    /// Paths of the parts, in order.
    pub from: Vec<String>,
    #[serde(default)]
    pub separator: String,
    /// Leave out missing and blank parts (default), so no double separators appear.
    #[serde(default = "yes")]
    pub skip_empty: bool,
}

fn yes() -> bool {
    true
}

/// `split`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SplitArgs {
    #[serde(deserialize_with = "non_empty")]
    pub separator: String,
    /// The part to keep (0-based); without it the value becomes the list of parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        Err(serde::de::Error::custom("the separator must not be empty"))
    } else {
        Ok(s)
    }
}

/// Formats a field's final value is checked against: a name, or `{regex: "…"}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// 17 characters, no I/O/Q, valid ISO 3779 check digit.
    Vin,
    Email,
    /// `+` and 8–15 digits.
    E164,
    UsZip,
    UsState,
    /// The value's text matches this regular expression (anchor it with `^…$`).
    Regex(crate::Pattern),
}

const NAMED_FORMATS: [(&str, Format); 5] = [
    ("vin", Format::Vin),
    ("email", Format::Email),
    ("e164", Format::E164),
    ("us_zip", Format::UsZip),
    ("us_state", Format::UsState),
];

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Format;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a format name (vin, email, e164, us_zip, us_state) or {regex: \"...\"}",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Format, E> {
                if let Some((_, f)) = NAMED_FORMATS.iter().find(|(n, _)| *n == s) {
                    return Ok(f.clone());
                }
                let known: Vec<&str> = NAMED_FORMATS
                    .iter()
                    .map(|(n, _)| *n)
                    .chain(["{regex: ...}"])
                    .collect();
                Err(E::custom(unknown_name("format", s, &known)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Format, A::Error> {
                match map.next_key::<String>()?.as_deref() {
                    Some("regex") => {
                        let f = Format::Regex(map.next_value()?);
                        if map.next_key::<String>()?.is_some() {
                            return Err(de::Error::custom("a format map has only the key `regex`"));
                        }
                        Ok(f)
                    }
                    Some(other) => Err(de::Error::custom(format!(
                        "unknown format `{other}`; a format map has only the key `regex`"
                    ))),
                    None => Err(de::Error::custom(
                        "write a format as a name or {regex: \"...\"}",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Format::Regex(p) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("regex", p)?;
                m.end()
            }
            other => {
                let name = NAMED_FORMATS
                    .iter()
                    .find(|(_, f)| f == other)
                    .map_or("", |(n, _)| *n);
                s.serialize_str(name)
            }
        }
    }
}

/// One validation rule on a field's final value: exactly one of `range`, `length`, `regex`
/// or `custom`, with an optional `message` that replaces the hub's sentence in the error.
/// Rules are not checked on an empty value (that is `required`'s business).
///
/// ```yaml
/// rules:
///   - range: { min: 1900, max: 2100 }       # numbers (numeric text too): out_of_range
///     message: the model year must be between 1900 and 2100
///   - length: { max: 40 }                    # characters of text, items of a list: length_out_of_range
///   - regex: "^[A-Z]{3}$"                    # pattern_mismatch
///   - custom: "value != record.LastName"     # a rhai expression returning true: rule_failed
///     message: the first name repeats the last name
/// ```
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Bounds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<Bounds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<crate::Pattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<crate::Expression>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Inclusive bounds; either may be left out.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A rule over the whole record: a rhai expression that must return `true`, with `value`
/// the canonical fields mapped so far (a map) and `record` the vendor payload. `field` names
/// the field the error is reported on (default `record`).
///
/// ```yaml
/// rules:
///   - custom: "value.email != () || value.phone != ()"
///     field: email
///     message: a lead needs an email or a phone number
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntityRule {
    pub custom: crate::Expression,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A place canonical records are written to. (serde cannot deny unknown fields through
/// `flatten`, so the kind's own fields are checked by the kind.)
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Target {
    pub id: String,
    #[serde(flatten)]
    pub kind: TargetKind,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetKind {
    /// The node's SQL database (`runtime.sql_url`), one table per entity.
    Sql,
    /// Batched, HMAC-signed POSTs to an HTTP endpoint.
    Webhook {
        url: String,
        secret: String,
        #[serde(default = "default_batch")]
        batch_size: usize,
        /// The connector that reads the system this target writes into, if any: the sink
        /// then records each write so that connector's report of it is recognised as the
        /// hub's own echo (bidirectional sync without loops).
        #[serde(default)]
        connector: Option<String>,
    },
    /// A vendor system, written through its batch upsert API with the credentials and
    /// limits of `connector` (which must have an `api:` section). Fields are written back
    /// through that connector's mapping for the entity, reversed: each canonical field
    /// mapped from a plain path goes to that path. Its own reads of these writes are
    /// recognised as echoes.
    Vendor {
        connector: String,
        /// The vendor object to upsert into (`contacts`, `Contact`); default: the
        /// connector's first mapping of the routed entity.
        #[serde(default)]
        object: Option<String>,
        /// The unique property (HubSpot) or external-id field (Salesforce) to upsert by.
        id_property: String,
        /// The canonical field whose value goes into `id_property` (e.g. `email`).
        id_field: String,
        #[serde(default = "default_batch")]
        batch_size: usize,
    },
}

fn default_batch() -> usize {
    100
}

/// Which canonical entities go to which targets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(
        deserialize_with = "entities_from_str",
        serialize_with = "entities_to_str"
    )]
    pub entities: Vec<Entity>,
    pub targets: Vec<String>,
}

fn entity_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<Entity, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

fn entity_to_str<S: serde::Serializer>(e: &Entity, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(e.name())
}

fn entities_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Entity>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .collect()
}

fn entities_to_str<S: serde::Serializer>(e: &[Entity], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(e.len()))?;
    for x in e {
        seq.serialize_element(x.name())?;
    }
    seq.end()
}

impl Topology {
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.id == id)
    }

    /// Every vendor some connector uses (each needs its raw topic).
    pub fn vendors(&self) -> Vec<Vendor> {
        let mut v: Vec<Vendor> = self
            .tenants
            .iter()
            .flat_map(|t| t.connectors.iter().map(|c| c.vendor))
            .collect();
        v.sort_by_key(|x| x.name());
        v.dedup();
        v
    }

    /// The topic names of this topology's namespace.
    pub fn topic_names(&self) -> hub_schemas::Topics {
        hub_schemas::Topics::new(&self.runtime.namespace)
    }

    /// The raw topics this topology's connectors publish to.
    pub fn raw_topics(&self) -> Vec<String> {
        let names = self.topic_names();
        self.vendors().iter().map(|v| names.raw(v.name())).collect()
    }

    /// Every topic this topology reads or writes.
    pub fn topics(&self) -> Vec<String> {
        let names = self.topic_names();
        let mut t = self.raw_topics();
        t.extend(Entity::ALL.iter().map(|e| names.canonical(*e)));
        t.extend(Entity::ALL.iter().map(|e| names.changes(*e)));
        t.extend(Entity::ALL.iter().map(|e| names.state(*e)));
        t.push(names.xref());
        t.push(names.links());
        t.push(names.cursors());
        t.push(names.ledger());
        t.push(names.conflicts());
        t.push(names.sync_events());
        t.push(names.dlq_transform());
        t.push(names.dlq_sink());
        t
    }
}

impl Tenant {
    /// The conflict policy for one canonical entity.
    pub fn conflict_policy(&self, entity: Entity) -> std::borrow::Cow<'_, crate::conflict::Policy> {
        match self.conflicts.get(entity.name()) {
            Some(p) => std::borrow::Cow::Borrowed(p),
            None => std::borrow::Cow::Owned(crate::conflict::Policy::default()),
        }
    }

    pub fn connector(&self, id: &str) -> Option<&Connector> {
        self.connectors.iter().find(|c| c.id == id)
    }

    /// The targets routed this entity.
    pub fn targets_for(&self, entity: Entity) -> Vec<&Target> {
        let mut out: Vec<&Target> = Vec::new();
        for r in self.routes.iter().filter(|r| r.entities.contains(&entity)) {
            for id in &r.targets {
                if let Some(t) = self.targets.iter().find(|t| &t.id == id)
                    && !out.iter().any(|o| o.id == t.id)
                {
                    out.push(t);
                }
            }
        }
        out
    }
}

impl Connector {
    /// The first mapping of this vendor entity.
    pub fn mapping(&self, vendor_entity: &str) -> Option<&EntityMapping> {
        self.entities
            .iter()
            .find(|e| e.vendor_entity == vendor_entity)
    }

    /// Every mapping of this vendor entity, in file order.
    pub fn mappings<'a>(
        &'a self,
        vendor_entity: &'a str,
    ) -> impl Iterator<Item = &'a EntityMapping> + 'a {
        self.entities
            .iter()
            .filter(move |e| e.vendor_entity == vendor_entity)
    }
}

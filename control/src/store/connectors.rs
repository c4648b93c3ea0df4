//! Connector configurations per tenant, and the pending OAuth2 authorization-code flows that
//! fill their credentials.
//!
//! A connector's configuration ([`ConnectorConfig`]) names the vendor, the endpoint, how the
//! hub authenticates there, how it syncs ([`SyncSettings`]) and the field mappings, filters
//! and transformations (JSON whose *shape* is checked here, without the topology crate: see
//! [`ConnectorSpec::from_json`]). Its id is the name the connector's credentials
//! ([`super::credentials`]), schedule and sync jobs ([`super::jobs`]) already use.
//!
//! The configuration drives the schedule: while a connector is enabled its schedule follows
//! `sync.frequency` (set on creation and enabling, and when the frequency changes); disabling
//! it removes the schedule, so no new scheduled job is claimed (jobs already made are left to
//! run or be cancelled by hand). Deleting a connector is refused while one of its jobs is
//! pending or running ([`DeleteOutcome::JobsActive`]: cancel them first); otherwise its
//! configuration, credentials, schedule and pending OAuth flows go in one transaction (its
//! finished jobs stay, as history).
//!
//! Every change bumps `version` (1 on creation): a writer that read version *n* may ask for
//! its update to apply only if the row is still at *n* (optimistic concurrency).
//!
//! An OAuth flow ([`ControlStore::start_oauth`]) keeps, per `state`, the PKCE verifier sealed
//! with the tenant's data key and bound (AES-GCM associated data) to the connector and the
//! state; only the state's SHA-256 is stored, as for tokens. [`ControlStore::take_oauth`]
//! uses a state at most once, and not after it expired.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::auth::TenantId;
use crate::auth::token::{random_bytes, token_hash};
use crate::crypto::DataKey;
use crate::error::{ControlError, Result};
use crate::secret::Secret;

use super::credentials::{DataKeyRow, FIRST_DATA_KEY_VERSION, SELECT_DATA_KEY, unwrap_row};
use super::jobs::Frequency;
use super::{ControlStore, in_tx, on_pool};

/// Inside a transaction `$tx`: sets the connector's schedule to `$frequency`, first due at
/// `$now` for a scheduled frequency (a statement of [`ControlStore::set_schedule`]'s).
macro_rules! upsert_schedule {
    ($tx:ident, $tenant:expr, $id:expr, $frequency:expr, $now:expr) => {{
        let interval = $frequency.interval_ms();
        sqlx::query(
            "INSERT INTO schedules (tenant_id, connector, frequency, interval_ms, next_due_ms, \
             updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, connector) DO UPDATE SET frequency = excluded.frequency, \
             interval_ms = excluded.interval_ms, next_due_ms = excluded.next_due_ms, \
             updated_at_ms = excluded.updated_at_ms",
        )
        .bind($tenant.as_str())
        .bind($id)
        .bind($frequency.as_str())
        .bind(interval)
        .bind(interval.map(|_| $now))
        .bind($now)
        .execute(&mut *$tx)
        .await?;
    }};
}

/// The vendors the hub knows, as `hub_topology::Vendor` names them (the hub crate's tests
/// check the two lists agree; this crate must not depend on the topology).
pub const VENDORS: &[&str] = &[
    "salesforce",
    "hubspot",
    "dealersocket",
    "vinsolutions",
    "elead",
    "reynolds",
    "cdk",
    "dealertrack",
    "generic",
];

/// The canonical entities a mapping may target, as `hub_schemas::Entity` names them.
pub const CANONICAL_ENTITIES: &[&str] = &[
    "customer",
    "lead",
    "vehicle",
    "deal",
    "repair_order",
    "service_appointment",
    "part",
    "accounting_entry",
];

/// Smallest and largest `sync.batch_size`: one record, and 10,000 (Salesforce's Bulk API
/// batch ceiling; per-call vendor limits such as 200 or 100 are applied by the connector).
pub const BATCH_SIZE_RANGE: (i64, i64) = (1, 10_000);
/// Smallest and largest `sync.retry_attempts`: none, and 10 (beyond that a failure is not
/// transient, and the record belongs in a dead-letter topic).
pub const RETRY_ATTEMPTS_RANGE: (i64, i64) = (0, 10);
/// Most entries in each of `field_mappings`, `filters` and `transformations`.
pub const MAX_LIST_ENTRIES: usize = 200;
/// Longest URL accepted (`endpoint`, OAuth URLs).
pub const MAX_URL_CHARS: usize = 2048;
/// How long an OAuth flow's `state` stays usable: 10 minutes, time enough to sign in at the
/// vendor and consent.
pub const OAUTH_STATE_TTL_MS: i64 = 10 * 60 * 1000;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $field:literal, { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vm])* $v,)+
        }

        impl $name {
            /// Every value, in the order documented.
            pub const ALL: &[$name] = &[$($name::$v),+];

            /// The name stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s,)+
                }
            }

            fn names() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl FromStr for $name {
            type Err = ControlError;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok($name::$v),)+
                    _ => Err(ControlError::invalid(
                        $field,
                        format!("must be one of {}", Self::names()),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// How the hub authenticates at the vendor; the secrets themselves are the connector's
    /// credentials.
    AuthType, "auth_type", {
        /// OAuth 2.0 (authorization code with PKCE, then refresh).
        OAuth2 = "oauth2",
        /// A static API key or token.
        ApiKey = "api_key",
        /// HTTP basic (user and password).
        Basic = "basic",
        /// A signed JWT assertion (e.g. Salesforce's JWT bearer flow).
        Jwt = "jwt",
        /// Anything else the vendor's connector knows how to use.
        Custom = "custom",
    }
);

string_enum!(
    /// Which way records flow between the vendor and the hub.
    Direction, "sync.direction", {
        /// Vendor → hub.
        Inbound = "inbound",
        /// Hub → vendor.
        Outbound = "outbound",
        /// Both ways (the write ledger keeps echoes from looping).
        Bidirectional = "bidirectional",
    }
);

string_enum!(
    /// How a conflicting field is settled, as the topology's conflict policy names it (a
    /// `merge` priority list lives in the topology).
    ConflictStrategy, "sync.conflict_strategy", {
        /// The incoming change wins.
        SourceWins = "source_wins",
        /// The current value wins.
        TargetWins = "target_wins",
        /// By source priority, then source time.
        Merge = "merge",
        /// Held until a person resolves it.
        Manual = "manual",
        /// The conflicting fields of the change are dropped.
        Skip = "skip",
    }
);

/// How a connector syncs. Defaults are declared on [`Default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    /// How often: `manual` by default (nothing runs until someone chooses).
    pub frequency: Frequency,
    /// Which way: `inbound` by default (reading never changes the vendor's data).
    pub direction: Direction,
    /// Records per batch, within [`BATCH_SIZE_RANGE`]: 200 by default (a Salesforce
    /// sObject Collections call).
    pub batch_size: i64,
    /// Retries of a transient failure, within [`RETRY_ATTEMPTS_RANGE`]: 3 by default.
    pub retry_attempts: i64,
    /// How conflicts are settled: `manual` by default (a person decides).
    pub conflict_strategy: ConflictStrategy,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            frequency: Frequency::Manual,
            direction: Direction::Inbound,
            batch_size: 200,
            retry_attempts: 3,
            conflict_strategy: ConflictStrategy::Manual,
        }
    }
}

/// The public half of an OAuth2 app (the client secret, if any, is in the credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    /// The app's client id (Salesforce: the connected app's consumer key).
    pub client_id: String,
    /// The vendor's authorize URL, e.g. `https://login.salesforce.com/services/oauth2/authorize`.
    pub authorize_url: String,
    /// The vendor's token URL; absent: the connector's default for the vendor.
    pub token_url: Option<String>,
    /// Space-separated scopes, e.g. `api refresh_token`.
    pub scope: Option<String>,
    /// Where the vendor sends the browser back: the hub's `/api/v1/oauth/callback`, exactly
    /// as registered with the vendor's app.
    pub redirect_uri: String,
}

/// What a caller writes about a connector: everything but its id, enabled flag, version and
/// times. Built (and checked) by [`ConnectorSpec::from_json`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorSpec {
    /// A label for people, 1 to 200 characters.
    pub name: String,
    /// One of [`VENDORS`].
    pub vendor: String,
    /// The vendor API's base URL (http or https).
    pub endpoint: String,
    /// How the hub authenticates there.
    pub auth_type: AuthType,
    /// How it syncs.
    pub sync: SyncSettings,
    /// Entity mappings, in the topology's shape (a JSON array).
    pub field_mappings: Value,
    /// Record filters (a JSON array of `{field, op, value}`).
    pub filters: Value,
    /// Field transformations (a JSON array of `{field, steps}`).
    pub transformations: Value,
    /// The OAuth2 app, for `auth_type` `oauth2`.
    pub oauth: Option<OAuthSettings>,
}

/// A stored connector configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorConfig {
    /// The tenant whose connector it is.
    pub tenant: TenantId,
    /// Its id: 1 to 100 lowercase letters, digits, `-` or `_`.
    pub id: String,
    /// What it is.
    pub spec: ConnectorSpec,
    /// Whether it syncs (has a schedule).
    pub enabled: bool,
    /// 1 on creation, +1 on every change.
    pub version: i64,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it last changed.
    pub updated_at_ms: i64,
}

/// A configuration that does not pass the checks: the field it concerns (a path such as
/// `sync.batch_size` or `field_mappings[0].fields.email.from`), a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The path of the offending field in the request body.
    pub field: String,
    /// `required`, `invalid_type`, `invalid_value`, `out_of_range`, `too_long`,
    /// `unknown_field` or `invalid_url`.
    pub code: &'static str,
    /// What is wrong, for a dealership admin.
    pub message: String,
}

impl ConfigIssue {
    fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        ConfigIssue {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

type Check<T = ()> = std::result::Result<T, ConfigIssue>;

/// Checks a connector id (the same rule credentials use).
pub fn check_connector_id(id: &str) -> Check {
    let ok = !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigIssue::new(
            "id",
            "invalid_value",
            "use 1 to 100 lowercase letters, digits, '-' or '_'",
        ))
    }
}

/// Checks an absolute http(s) URL: scheme, a host (name, IPv4 or `[IPv6]`), an optional
/// port, no user info (secrets do not belong in URLs), no spaces or control characters.
pub fn check_url(field: &str, url: &str) -> Check {
    let bad = |why: &str| {
        Err(ConfigIssue::new(
            field,
            "invalid_url",
            format!("must be an http:// or https:// URL: {why}"),
        ))
    };
    if url.len() > MAX_URL_CHARS {
        return Err(ConfigIssue::new(
            field,
            "too_long",
            format!("must be at most {MAX_URL_CHARS} characters"),
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains spaces or control characters");
    }
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return bad("the scheme is missing or not http(s)");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return bad("user names and passwords go into the credentials, not the URL");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p))
                if !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') =>
            {
                (h, p.strip_prefix(':'))
            }
            _ => return bad("the IPv6 host is malformed"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && (authority.starts_with('[')
            || host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }));
    if !host_ok {
        return bad("the host is missing or malformed");
    }
    if let Some(p) = port
        && !(p.parse::<u16>().is_ok_and(|n| n > 0) && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("the port is not a number from 1 to 65535");
    }
    Ok(())
}

/// Reads one JSON object field by field, naming each by its path and refusing unknown keys.
struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn of(path: &str, value: &'a Value) -> Check<Self> {
        match value {
            Value::Object(map) => Ok(Fields {
                path: path.to_string(),
                map,
            }),
            _ => Err(ConfigIssue::new(
                if path.is_empty() { "body" } else { path },
                "invalid_type",
                "must be a JSON object",
            )),
        }
    }

    fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn only(&self, allowed: &[&str]) -> Check {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ConfigIssue::new(
                self.at(k),
                "unknown_field",
                "is not a known field",
            )),
            None => Ok(()),
        }
    }

    /// The value, unless absent or `null`.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str, max_chars: usize) -> Check<Option<String>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let s = v
            .as_str()
            .ok_or_else(|| ConfigIssue::new(self.at(key), "invalid_type", "must be a string"))?;
        if s.trim().is_empty() || s.trim() != s {
            return Err(ConfigIssue::new(
                self.at(key),
                "invalid_value",
                "must not be empty or have surrounding spaces",
            ));
        }
        if s.chars().count() > max_chars {
            return Err(ConfigIssue::new(
                self.at(key),
                "too_long",
                format!("must be at most {max_chars} characters"),
            ));
        }
        Ok(Some(s.to_string()))
    }

    fn required_string(&self, key: &str, max_chars: usize) -> Check<String> {
        self.string(key, max_chars)?
            .ok_or_else(|| ConfigIssue::new(self.at(key), "required", "is required"))
    }

    fn url(&self, key: &str) -> Check<Option<String>> {
        let v = self.string(key, MAX_URL_CHARS)?;
        if let Some(u) = &v {
            check_url(&self.at(key), u)?;
        }
        Ok(v)
    }

    fn integer(&self, key: &str, (min, max): (i64, i64)) -> Check<Option<i64>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let n = v.as_i64().ok_or_else(|| {
            ConfigIssue::new(self.at(key), "invalid_type", "must be a whole number")
        })?;
        if !(min..=max).contains(&n) {
            return Err(ConfigIssue::new(
                self.at(key),
                "out_of_range",
                format!("must be between {min} and {max}"),
            ));
        }
        Ok(Some(n))
    }

    fn list(&self, key: &str) -> Check<&'a [Value]> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) if items.len() <= MAX_LIST_ENTRIES => Ok(items),
            Some(Value::Array(_)) => Err(ConfigIssue::new(
                self.at(key),
                "too_long",
                format!("must have at most {MAX_LIST_ENTRIES} entries"),
            )),
            Some(_) => Err(ConfigIssue::new(
                self.at(key),
                "invalid_type",
                "must be a JSON array",
            )),
        }
    }
}

fn one_of(field: String, names: &[&str]) -> ConfigIssue {
    ConfigIssue::new(
        field,
        "invalid_value",
        format!("must be one of {}", names.join(", ")),
    )
}

fn enum_issue<T>(field: String, names: &[&str]) -> impl FnOnce(T) -> ConfigIssue {
    move |_| one_of(field, names)
}

fn json_pointer(field: String, v: &Value) -> Check {
    match v.as_str() {
        Some(p) if p.starts_with('/') && p.len() <= 500 => Ok(()),
        _ => Err(ConfigIssue::new(
            field,
            "invalid_value",
            "must be a JSON pointer into the vendor record, e.g. /Email",
        )),
    }
}

/// A transformation step: a bare name (`trim`) or a one-key object from the name to its
/// arguments (`{"format_phone": {"region": "US"}}`), as in the topology.
fn transform_steps(field: String, v: &Value) -> Check {
    let Value::Array(steps) = v else {
        return Err(ConfigIssue::new(
            field,
            "invalid_type",
            "must be a JSON array of steps",
        ));
    };
    for (i, step) in steps.iter().enumerate() {
        let ok = match step {
            Value::String(s) => is_step_name(s),
            Value::Object(m) => m.len() == 1 && m.keys().all(|k| is_step_name(k)),
            _ => false,
        };
        if !ok {
            return Err(ConfigIssue::new(
                format!("{field}[{i}]"),
                "invalid_value",
                "a step is a name (\"trim\") or a one-key object from a name to its arguments",
            ));
        }
    }
    Ok(())
}

fn is_step_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `field_mappings`: entity mappings in the topology's shape.
fn check_mappings(items: &[Value]) -> Check {
    for (i, m) in items.iter().enumerate() {
        let f = Fields::of(&format!("field_mappings[{i}]"), m)?;
        f.only(&[
            "vendor_entity",
            "canonical",
            "external_id",
            "updated_at",
            "deleted",
            "fields",
            "rules",
        ])?;
        f.required_string("vendor_entity", 200)?;
        let canonical = f.required_string("canonical", 100)?;
        if !CANONICAL_ENTITIES.contains(&canonical.as_str()) {
            return Err(one_of(f.at("canonical"), CANONICAL_ENTITIES));
        }
        for key in ["external_id", "updated_at", "deleted"] {
            if let Some(v) = f.get(key) {
                json_pointer(f.at(key), v)?;
            }
        }
        if let Some(rules) = f.get("rules")
            && !rules.is_array()
        {
            return Err(ConfigIssue::new(
                f.at("rules"),
                "invalid_type",
                "must be a JSON array",
            ));
        }
        let fields = f
            .get("fields")
            .ok_or_else(|| ConfigIssue::new(f.at("fields"), "required", "is required"))?;
        let fields = Fields::of(&f.at("fields"), fields)?;
        if fields.map.is_empty() {
            return Err(ConfigIssue::new(
                fields.path.clone(),
                "invalid_value",
                "must map at least one canonical field",
            ));
        }
        for (name, spec) in fields.map {
            let fm = Fields::of(&fields.at(name), spec)?;
            fm.only(&[
                "from",
                "transform",
                "default",
                "required",
                "format",
                "rules",
            ])?;
            if let Some(from) = fm.get("from") {
                json_pointer(fm.at("from"), from)?;
            }
            if let Some(t) = fm.get("transform") {
                transform_steps(fm.at("transform"), t)?;
            }
            if let Some(r) = fm.get("required")
                && !r.is_boolean()
            {
                return Err(ConfigIssue::new(
                    fm.at("required"),
                    "invalid_type",
                    "must be true or false",
                ));
            }
            if let Some(r) = fm.get("rules")
                && !r.is_array()
            {
                return Err(ConfigIssue::new(
                    fm.at("rules"),
                    "invalid_type",
                    "must be a JSON array",
                ));
            }
            if fm.get("from").is_none()
                && fm.get("default").is_none()
                && fm.get("transform").is_none()
            {
                return Err(ConfigIssue::new(
                    fm.at("from"),
                    "required",
                    "a field needs a source (from), a default, or a transform that computes it",
                ));
            }
        }
    }
    Ok(())
}

/// The operators of a filter.
pub const FILTER_OPS: &[&str] = &[
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "exists",
    "not_exists",
];

/// `filters`: `{field, op, value}`; `value` is required except for `exists`/`not_exists`,
/// and is an array for `in`/`not_in`.
fn check_filters(items: &[Value]) -> Check {
    for (i, item) in items.iter().enumerate() {
        let f = Fields::of(&format!("filters[{i}]"), item)?;
        f.only(&["field", "op", "value"])?;
        f.required_string("field", 200)?;
        let op = f.required_string("op", 20)?;
        if !FILTER_OPS.contains(&op.as_str()) {
            return Err(one_of(f.at("op"), FILTER_OPS));
        }
        match (op.as_str(), f.get("value")) {
            ("exists" | "not_exists", Some(_)) => {
                return Err(ConfigIssue::new(
                    f.at("value"),
                    "invalid_value",
                    "takes no value with this op",
                ));
            }
            ("exists" | "not_exists", None) => {}
            (_, None) => return Err(ConfigIssue::new(f.at("value"), "required", "is required")),
            ("in" | "not_in", Some(v)) if !v.is_array() => {
                return Err(ConfigIssue::new(
                    f.at("value"),
                    "invalid_type",
                    "must be a JSON array",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `transformations`: `{field, steps}`, steps as in a mapping's `transform`.
fn check_transformations(items: &[Value]) -> Check {
    for (i, item) in items.iter().enumerate() {
        let f = Fields::of(&format!("transformations[{i}]"), item)?;
        f.only(&["field", "steps"])?;
        f.required_string("field", 200)?;
        let steps = f
            .get("steps")
            .ok_or_else(|| ConfigIssue::new(f.at("steps"), "required", "is required"))?;
        transform_steps(f.at("steps"), steps)?;
        if steps.as_array().is_some_and(Vec::is_empty) {
            return Err(ConfigIssue::new(
                f.at("steps"),
                "invalid_value",
                "must list at least one step",
            ));
        }
    }
    Ok(())
}

impl ConnectorSpec {
    /// The keys of [`ConnectorSpec::to_json`] (a create body adds `id` and `enabled`).
    pub const KEYS: &[&str] = &[
        "name",
        "vendor",
        "endpoint",
        "auth_type",
        "sync",
        "field_mappings",
        "filters",
        "transformations",
        "oauth",
    ];

    /// Reads and checks a configuration from JSON, naming the first wrong field. Keys in
    /// `extra` are allowed at the top level and ignored (`id`, `enabled`, `version`).
    pub fn from_json(body: &Value, extra: &[&str]) -> Check<Self> {
        let f = Fields::of("", body)?;
        let allowed: Vec<&str> = Self::KEYS.iter().chain(extra).copied().collect();
        f.only(&allowed)?;
        let name = f.required_string("name", 200)?;
        let vendor = f.required_string("vendor", 50)?;
        if !VENDORS.contains(&vendor.as_str()) {
            return Err(one_of("vendor".into(), VENDORS));
        }
        let endpoint = f
            .url("endpoint")?
            .ok_or_else(|| ConfigIssue::new("endpoint", "required", "is required"))?;
        let auth_type: AuthType = match f.string("auth_type", 20)? {
            None => return Err(ConfigIssue::new("auth_type", "required", "is required")),
            Some(s) => s
                .parse()
                .map_err(|_| one_of("auth_type".into(), &names(AuthType::ALL, |a| a.as_str())))?,
        };
        let mut sync = SyncSettings::default();
        if let Some(s) = f.get("sync") {
            let s = Fields::of("sync", s)?;
            s.only(&[
                "frequency",
                "direction",
                "batch_size",
                "retry_attempts",
                "conflict_strategy",
            ])?;
            if let Some(v) = s.string("frequency", 20)? {
                sync.frequency = v.parse().map_err(enum_issue(
                    "sync.frequency".into(),
                    &["real-time", "hourly", "daily", "weekly", "manual"],
                ))?;
            }
            if let Some(v) = s.string("direction", 20)? {
                sync.direction = v.parse().map_err(enum_issue(
                    "sync.direction".into(),
                    &names(Direction::ALL, |d| d.as_str()),
                ))?;
            }
            if let Some(n) = s.integer("batch_size", BATCH_SIZE_RANGE)? {
                sync.batch_size = n;
            }
            if let Some(n) = s.integer("retry_attempts", RETRY_ATTEMPTS_RANGE)? {
                sync.retry_attempts = n;
            }
            if let Some(v) = s.string("conflict_strategy", 20)? {
                sync.conflict_strategy = v.parse().map_err(enum_issue(
                    "sync.conflict_strategy".into(),
                    &names(ConflictStrategy::ALL, |c| c.as_str()),
                ))?;
            }
        }
        let field_mappings = f.list("field_mappings")?;
        check_mappings(field_mappings)?;
        let filters = f.list("filters")?;
        check_filters(filters)?;
        let transformations = f.list("transformations")?;
        check_transformations(transformations)?;
        let oauth = match f.get("oauth") {
            None => None,
            Some(o) => {
                let o = Fields::of("oauth", o)?;
                o.only(&[
                    "client_id",
                    "authorize_url",
                    "token_url",
                    "scope",
                    "redirect_uri",
                ])?;
                Some(OAuthSettings {
                    client_id: o.required_string("client_id", 500)?,
                    authorize_url: o.url("authorize_url")?.ok_or_else(|| {
                        ConfigIssue::new("oauth.authorize_url", "required", "is required")
                    })?,
                    token_url: o.url("token_url")?,
                    scope: o.string("scope", 1000)?,
                    redirect_uri: o.url("redirect_uri")?.ok_or_else(|| {
                        ConfigIssue::new("oauth.redirect_uri", "required", "is required")
                    })?,
                })
            }
        };
        if oauth.is_some() && auth_type != AuthType::OAuth2 {
            return Err(ConfigIssue::new(
                "oauth",
                "invalid_value",
                "is only for auth_type oauth2",
            ));
        }
        Ok(ConnectorSpec {
            name,
            vendor,
            endpoint,
            auth_type,
            sync,
            field_mappings: Value::Array(field_mappings.to_vec()),
            filters: Value::Array(filters.to_vec()),
            transformations: Value::Array(transformations.to_vec()),
            oauth,
        })
    }

    /// The configuration as JSON, in the shape [`ConnectorSpec::from_json`] reads (what an
    /// API response shows, and what a PATCH merges into). Holds no secret.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "vendor": self.vendor,
            "endpoint": self.endpoint,
            "auth_type": self.auth_type.as_str(),
            "sync": {
                "frequency": self.sync.frequency.as_str(),
                "direction": self.sync.direction.as_str(),
                "batch_size": self.sync.batch_size,
                "retry_attempts": self.sync.retry_attempts,
                "conflict_strategy": self.sync.conflict_strategy.as_str(),
            },
            "field_mappings": self.field_mappings,
            "filters": self.filters,
            "transformations": self.transformations,
            "oauth": self.oauth.as_ref().map(|o| json!({
                "client_id": o.client_id,
                "authorize_url": o.authorize_url,
                "token_url": o.token_url,
                "scope": o.scope,
                "redirect_uri": o.redirect_uri,
            })),
        })
    }
}

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|v| name(*v)).collect()
}

/// What [`ControlStore::delete_connector`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The configuration, credentials, schedule and pending OAuth flows are gone.
    Deleted,
    /// No such connector in the tenant.
    NotFound,
    /// Refused: this many of its jobs are pending or running.
    JobsActive(i64),
}

/// An OAuth flow just started: what goes into the authorize URL.
#[derive(Debug)]
pub struct OAuthStart {
    /// The `state` parameter: a bearer secret until the callback uses it.
    pub state: Secret<String>,
    /// `BASE64URL(SHA256(verifier))`, sent with `code_challenge_method=S256`.
    pub code_challenge: String,
    /// When the state stops being accepted.
    pub expires_at_ms: i64,
}

/// A callback's `state`, accepted and used up: what the code exchange needs.
#[derive(Debug)]
pub struct OAuthGrant {
    /// The tenant whose connector it is.
    pub tenant: TenantId,
    /// The connector whose credentials the tokens become.
    pub connector: String,
    /// The PKCE verifier to send with the code.
    pub code_verifier: Secret<String>,
    /// The redirect URI the authorize request named (the token request repeats it).
    pub redirect_uri: String,
    /// Who started the flow (`user:<id>` or `token:<id>`).
    pub started_by: String,
}

/// Why a callback's `state` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRejection {
    /// No flow has this state (never issued, or its connector was deleted).
    Unknown,
    /// The flow is older than [`OAUTH_STATE_TTL_MS`].
    Expired,
    /// The state was already used (a replayed or double-submitted callback).
    Used,
}

impl StateRejection {
    /// A stable, machine-readable reason.
    pub fn code(self) -> &'static str {
        match self {
            StateRejection::Unknown => "oauth_state_unknown",
            StateRejection::Expired => "oauth_state_expired",
            StateRejection::Used => "oauth_state_used",
        }
    }
}

const CONNECTOR_COLUMNS: &str = "id, name, vendor, endpoint, auth_type, frequency, direction, \
     batch_size, retry_attempts, conflict_strategy, field_mappings, filters, transformations, \
     oauth, enabled, version, created_at_ms, updated_at_ms";

/// Reads a row of [`CONNECTOR_COLUMNS`] (18 columns: more than sqlx's tuple decoding takes).
fn connector_from_row<'r, R>(tenant: &TenantId, r: &'r R) -> Result<ConnectorConfig>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let corrupt = |what: &str| ControlError::Config(format!("stored connector has a bad {what}"));
    let json_col = |i: usize| -> Result<Value> {
        serde_json::from_str(&r.try_get::<String, _>(i)?).map_err(|_| corrupt("JSON column"))
    };
    let oauth: Option<Value> = r
        .try_get::<Option<String>, _>(13)?
        .map(|s| serde_json::from_str(&s).map_err(|_| corrupt("oauth column")))
        .transpose()?;
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let oauth = oauth.map(|o| OAuthSettings {
        client_id: text(&o, "client_id").unwrap_or_default(),
        authorize_url: text(&o, "authorize_url").unwrap_or_default(),
        token_url: text(&o, "token_url"),
        scope: text(&o, "scope"),
        redirect_uri: text(&o, "redirect_uri").unwrap_or_default(),
    });
    Ok(ConnectorConfig {
        tenant: tenant.clone(),
        id: r.try_get(0)?,
        spec: ConnectorSpec {
            name: r.try_get(1)?,
            vendor: r.try_get(2)?,
            endpoint: r.try_get(3)?,
            auth_type: r.try_get::<String, _>(4)?.parse()?,
            sync: SyncSettings {
                frequency: r.try_get::<String, _>(5)?.parse()?,
                direction: r.try_get::<String, _>(6)?.parse()?,
                batch_size: r.try_get(7)?,
                retry_attempts: r.try_get(8)?,
                conflict_strategy: r.try_get::<String, _>(9)?.parse()?,
            },
            field_mappings: json_col(10)?,
            filters: json_col(11)?,
            transformations: json_col(12)?,
            oauth,
        },
        enabled: r.try_get(14)?,
        version: r.try_get(15)?,
        created_at_ms: r.try_get(16)?,
        updated_at_ms: r.try_get(17)?,
    })
}

fn invalid_spec(issue: ConfigIssue) -> ControlError {
    ControlError::invalid("connector", issue.to_string())
}

/// Re-checks a spec built in code (the API checks the JSON before; this keeps the store's
/// own callers honest).
fn recheck(spec: &ConnectorSpec) -> Result<()> {
    let mut body = spec.to_json();
    if spec.oauth.is_none()
        && let Some(m) = body.as_object_mut()
    {
        m.remove("oauth");
    }
    ConnectorSpec::from_json(&body, &[])
        .map(|_| ())
        .map_err(invalid_spec)
}

fn oauth_text(spec: &ConnectorSpec) -> Option<String> {
    spec.to_json()
        .get("oauth")
        .filter(|o| !o.is_null())
        .map(Value::to_string)
}

impl ControlStore {
    /// Creates a connector; [`ControlError::Conflict`] when the tenant already has one with
    /// this id. An enabled connector gets its schedule in the same transaction.
    pub async fn create_connector(
        &self,
        tenant: &TenantId,
        id: &str,
        spec: &ConnectorSpec,
        enabled: bool,
    ) -> Result<ConnectorConfig> {
        check_connector_id(id).map_err(invalid_spec)?;
        recheck(spec)?;
        if self.get_tenant(tenant).await?.is_none() {
            return Err(ControlError::NotFound {
                what: format!("tenant {tenant}"),
            });
        }
        let now = self.now_ms();
        let sql = format!(
            "INSERT INTO connectors ({CONNECTOR_COLUMNS}, tenant_id) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 1, $16, $16, $17) \
             ON CONFLICT (tenant_id, id) DO NOTHING"
        );
        let inserted = in_tx!(self, |tx| {
            let n = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .bind(&spec.name)
                .bind(&spec.vendor)
                .bind(&spec.endpoint)
                .bind(spec.auth_type.as_str())
                .bind(spec.sync.frequency.as_str())
                .bind(spec.sync.direction.as_str())
                .bind(spec.sync.batch_size)
                .bind(spec.sync.retry_attempts)
                .bind(spec.sync.conflict_strategy.as_str())
                .bind(spec.field_mappings.to_string())
                .bind(spec.filters.to_string())
                .bind(spec.transformations.to_string())
                .bind(oauth_text(spec))
                .bind(enabled)
                .bind(now)
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 1 && enabled {
                upsert_schedule!(tx, tenant, id, spec.sync.frequency, now);
            }
            n
        });
        if inserted == 0 {
            return Err(ControlError::Conflict {
                what: format!("a connector with id {id}"),
            });
        }
        self.require_connector(tenant, id).await
    }

    /// A tenant's connector; `None` if it has none with this id (or it is another tenant's).
    pub async fn get_connector(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<ConnectorConfig>> {
        let sql =
            format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE tenant_id = $1 AND id = $2");
        on_pool!(self, |p| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(p)
                .await?;
            row.map(|r| connector_from_row(tenant, &r)).transpose()
        })
    }

    async fn require_connector(&self, tenant: &TenantId, id: &str) -> Result<ConnectorConfig> {
        self.get_connector(tenant, id)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: format!("connector {id}"),
            })
    }

    /// A tenant's connectors, by id.
    pub async fn list_connectors(&self, tenant: &TenantId) -> Result<Vec<ConnectorConfig>> {
        let sql =
            format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE tenant_id = $1 ORDER BY id");
        on_pool!(self, |p| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant.as_str())
                .fetch_all(p)
                .await?;
            rows.iter().map(|r| connector_from_row(tenant, r)).collect()
        })
    }

    /// Replaces a connector's configuration. With `expected_version`, only if the stored
    /// version is still that one ([`ControlError::Conflict`] otherwise). A changed frequency
    /// of an enabled connector re-schedules it.
    pub async fn update_connector(
        &self,
        tenant: &TenantId,
        id: &str,
        spec: &ConnectorSpec,
        expected_version: Option<i64>,
    ) -> Result<ConnectorConfig> {
        recheck(spec)?;
        let now = self.now_ms();
        let before = self.require_connector(tenant, id).await?;
        let version = expected_version.unwrap_or(before.version);
        let reschedule = before.enabled && before.spec.sync.frequency != spec.sync.frequency;
        let n = in_tx!(self, |tx| {
            let n = sqlx::query(
                "UPDATE connectors SET name = $1, vendor = $2, endpoint = $3, auth_type = $4, \
                 frequency = $5, direction = $6, batch_size = $7, retry_attempts = $8, \
                 conflict_strategy = $9, field_mappings = $10, filters = $11, \
                 transformations = $12, oauth = $13, version = version + 1, updated_at_ms = $14 \
                 WHERE tenant_id = $15 AND id = $16 AND version = $17",
            )
            .bind(&spec.name)
            .bind(&spec.vendor)
            .bind(&spec.endpoint)
            .bind(spec.auth_type.as_str())
            .bind(spec.sync.frequency.as_str())
            .bind(spec.sync.direction.as_str())
            .bind(spec.sync.batch_size)
            .bind(spec.sync.retry_attempts)
            .bind(spec.sync.conflict_strategy.as_str())
            .bind(spec.field_mappings.to_string())
            .bind(spec.filters.to_string())
            .bind(spec.transformations.to_string())
            .bind(oauth_text(spec))
            .bind(now)
            .bind(tenant.as_str())
            .bind(id)
            .bind(version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 && reschedule {
                upsert_schedule!(tx, tenant, id, spec.sync.frequency, now);
            }
            n
        });
        if n == 0 {
            return match self.get_connector(tenant, id).await? {
                None => Err(ControlError::NotFound {
                    what: format!("connector {id}"),
                }),
                Some(c) => Err(ControlError::Conflict {
                    what: format!(
                        "a newer version of connector {id} (version {}, not {version})",
                        c.version
                    ),
                }),
            };
        }
        self.require_connector(tenant, id).await
    }

    /// Enables or disables a connector: enabling schedules it by its frequency (first due
    /// now), disabling removes its schedule. Setting the flag it already has changes nothing
    /// (and keeps the version).
    pub async fn set_connector_enabled(
        &self,
        tenant: &TenantId,
        id: &str,
        enabled: bool,
    ) -> Result<ConnectorConfig> {
        let before = self.require_connector(tenant, id).await?;
        if before.enabled == enabled {
            return Ok(before);
        }
        let now = self.now_ms();
        let frequency = before.spec.sync.frequency;
        in_tx!(self, |tx| {
            sqlx::query(
                "UPDATE connectors SET enabled = $1, version = version + 1, updated_at_ms = $2 \
                 WHERE tenant_id = $3 AND id = $4",
            )
            .bind(enabled)
            .bind(now)
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if enabled {
                upsert_schedule!(tx, tenant, id, frequency, now);
            } else {
                sqlx::query("DELETE FROM schedules WHERE tenant_id = $1 AND connector = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        });
        self.require_connector(tenant, id).await
    }

    /// Deletes a connector with its credentials, schedule and pending OAuth flows — unless
    /// one of its jobs is pending or running (see the module docs).
    pub async fn delete_connector(&self, tenant: &TenantId, id: &str) -> Result<DeleteOutcome> {
        let t = tenant.as_str();
        in_tx!(self, |tx| {
            let exists: Option<(String,)> =
                sqlx::query_as("SELECT id FROM connectors WHERE tenant_id = $1 AND id = $2")
                    .bind(t)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Ok(DeleteOutcome::NotFound);
            }
            let (active,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM sync_jobs WHERE tenant_id = $1 AND connector = $2 \
                 AND status IN ('pending', 'running')",
            )
            .bind(t)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if active > 0 {
                return Ok(DeleteOutcome::JobsActive(active));
            }
            for sql in [
                "DELETE FROM oauth_states WHERE tenant_id = $1 AND connector = $2",
                "DELETE FROM connector_credentials WHERE tenant_id = $1 AND connector = $2",
                "DELETE FROM schedules WHERE tenant_id = $1 AND connector = $2",
                "DELETE FROM connectors WHERE tenant_id = $1 AND id = $2",
            ] {
                sqlx::query(sql).bind(t).bind(id).execute(&mut *tx).await?;
            }
        });
        Ok(DeleteOutcome::Deleted)
    }

    async fn select_data_key(&self, tenant: &TenantId) -> Result<Option<DataKeyRow>> {
        Ok(on_pool!(self, |p| sqlx::query_as(SELECT_DATA_KEY)
            .bind(tenant.as_str())
            .fetch_optional(p)
            .await?))
    }

    /// The tenant's data key, created on first use (as [`ControlStore::put_credentials`]
    /// does; a concurrent creator's key wins).
    async fn data_key(&self, tenant: &TenantId) -> Result<(DataKey, i64)> {
        let master = self.master_key();
        let t = tenant.as_str();
        if let Some(row) = self.select_data_key(tenant).await? {
            return unwrap_row(&master, tenant, row);
        }
        let dk = DataKey::generate();
        let (wrapped, nonce) = master.wrap(t, &dk)?;
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO tenant_data_keys (tenant_id, key_version, wrapped_key, nonce, \
             master_key_version, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id) DO NOTHING"
        )
        .bind(t)
        .bind(FIRST_DATA_KEY_VERSION)
        .bind(wrapped)
        .bind(nonce)
        .bind(master.version())
        .bind(self.now_ms())
        .execute(p)
        .await
        .map(|_| ())?);
        let row = self
            .select_data_key(tenant)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: format!("tenant {tenant}"),
            })?;
        unwrap_row(&master, tenant, row)
    }

    /// Starts an OAuth2 authorization-code flow for a connector: a fresh `state` and PKCE
    /// verifier, kept (the verifier sealed, the state hashed) for [`OAUTH_STATE_TTL_MS`].
    /// Flows that expired more than a day ago are swept on the way.
    pub async fn start_oauth(
        &self,
        tenant: &TenantId,
        connector: &str,
        redirect_uri: &str,
        started_by: &str,
    ) -> Result<OAuthStart> {
        self.require_connector(tenant, connector).await?;
        let now = self.now_ms();
        let state = Secret::new(URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
        // 43 characters of base64url: within RFC 7636's 43–128 unreserved characters.
        let verifier = Secret::new(URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
        let code_challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose().as_bytes()));
        let hash = token_hash(state.expose());
        let (dk, key_version) = self.data_key(tenant).await?;
        let (sealed, nonce) = dk.seal(
            tenant.as_str(),
            &verifier_aad(connector, &hash),
            verifier.expose().as_bytes(),
        )?;
        let expires_at_ms = now + OAUTH_STATE_TTL_MS;
        on_pool!(self, |p| {
            sqlx::query("DELETE FROM oauth_states WHERE expires_at_ms < $1")
                .bind(now - 24 * 3600 * 1000)
                .execute(p)
                .await?;
            sqlx::query(
                "INSERT INTO oauth_states (state_hash, tenant_id, connector, verifier_sealed, \
                 verifier_nonce, key_version, redirect_uri, created_by, created_at_ms, \
                 expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&hash)
            .bind(tenant.as_str())
            .bind(connector)
            .bind(sealed)
            .bind(nonce)
            .bind(key_version)
            .bind(redirect_uri)
            .bind(started_by)
            .bind(now)
            .bind(expires_at_ms)
            .execute(p)
            .await?;
        });
        Ok(OAuthStart {
            state,
            code_challenge,
            expires_at_ms,
        })
    }

    /// Accepts a callback's `state` once: marks its flow used and hands back what the code
    /// exchange needs, or says why the state is refused.
    pub async fn take_oauth(
        &self,
        state: &str,
    ) -> Result<std::result::Result<OAuthGrant, StateRejection>> {
        let hash = token_hash(state);
        let now = self.now_ms();
        type Row = (
            String,
            String,
            Vec<u8>,
            Vec<u8>,
            String,
            String,
            i64,
            Option<i64>,
        );
        let row: Option<Row> = on_pool!(self, |p| sqlx::query_as(
            "SELECT tenant_id, connector, verifier_sealed, verifier_nonce, redirect_uri, \
             created_by, expires_at_ms, used_at_ms FROM oauth_states WHERE state_hash = $1"
        )
        .bind(&hash)
        .fetch_optional(p)
        .await?);
        let Some((
            tenant,
            connector,
            sealed,
            nonce,
            redirect_uri,
            started_by,
            expires_at_ms,
            used_at_ms,
        )) = row
        else {
            return Ok(Err(StateRejection::Unknown));
        };
        if used_at_ms.is_some() {
            return Ok(Err(StateRejection::Used));
        }
        if now >= expires_at_ms {
            return Ok(Err(StateRejection::Expired));
        }
        // Compare-and-set: of two callbacks racing with one state, one wins.
        let n = on_pool!(self, |p| sqlx::query(
            "UPDATE oauth_states SET used_at_ms = $1 \
             WHERE state_hash = $2 AND used_at_ms IS NULL AND expires_at_ms > $1"
        )
        .bind(now)
        .bind(&hash)
        .execute(p)
        .await?
        .rows_affected());
        if n == 0 {
            return Ok(Err(StateRejection::Used));
        }
        let tenant = TenantId::new(tenant)?;
        let (dk, _) = self.data_key(&tenant).await?;
        let plain = dk.open(
            tenant.as_str(),
            &verifier_aad(&connector, &hash),
            &sealed,
            &nonce,
        )?;
        let code_verifier =
            Secret::new(String::from_utf8(plain).map_err(|_| {
                ControlError::Crypto("the sealed PKCE verifier is not text".into())
            })?);
        Ok(Ok(OAuthGrant {
            tenant,
            connector,
            code_verifier,
            redirect_uri,
            started_by,
        }))
    }
}

/// The associated data that binds a sealed verifier to its connector and state (connector ids
/// cannot hold `/`, so this never collides with a credential's).
fn verifier_aad(connector: &str, state_hash: &str) -> String {
    format!("oauth-verifier/{connector}/{state_hash}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::jobs::JobStatus;
    use crate::store::testing::on_both_backends;

    const T0: i64 = 1_800_000_000_000;

    fn tenant(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    fn body() -> Value {
        json!({
            "name": "Salesforce (Acme)",
            "vendor": "salesforce",
            "endpoint": "https://login.salesforce.com",
            "auth_type": "oauth2",
            "sync": { "frequency": "hourly", "direction": "bidirectional", "batch_size": 200 },
            "field_mappings": [{
                "vendor_entity": "Contact",
                "canonical": "customer",
                "external_id": "/Id",
                "fields": {
                    "email": { "from": "/Email", "transform": ["trim", "lowercase"], "required": true },
                    "phone": { "from": "/Phone", "transform": [{ "format_phone": { "region": "US" } }] }
                }
            }],
            "filters": [{ "field": "/IsDeleted", "op": "eq", "value": false }],
            "transformations": [{ "field": "last_name", "steps": [{ "normalize_text": { "case": "title" } }] }],
            "oauth": {
                "client_id": "3MVG9-consumer-key",
                "authorize_url": "https://login.salesforce.com/services/oauth2/authorize",
                "scope": "api refresh_token",
                "redirect_uri": "https://hub.acme.example/api/v1/oauth/callback"
            }
        })
    }

    fn spec() -> ConnectorSpec {
        ConnectorSpec::from_json(&body(), &[]).unwrap()
    }

    fn issue_of(v: Value) -> (String, &'static str) {
        let i = ConnectorSpec::from_json(&v, &["id"]).unwrap_err();
        (i.field, i.code)
    }

    fn with(path: &[&str], value: Value) -> Value {
        let mut b = body();
        let mut at = &mut b;
        for k in &path[..path.len() - 1] {
            at = if let Ok(i) = k.parse::<usize>() {
                &mut at[i]
            } else {
                &mut at[*k]
            };
        }
        at[path[path.len() - 1]] = value;
        b
    }

    #[test]
    fn a_bad_configuration_names_the_field_and_why() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                with(&["sync", "batch_size"], json!(0)),
                "sync.batch_size",
                "out_of_range",
            ),
            (
                with(&["sync", "batch_size"], json!(10_001)),
                "sync.batch_size",
                "out_of_range",
            ),
            (
                with(&["sync", "batch_size"], json!("200")),
                "sync.batch_size",
                "invalid_type",
            ),
            (
                with(&["sync", "retry_attempts"], json!(11)),
                "sync.retry_attempts",
                "out_of_range",
            ),
            (
                with(&["sync", "frequency"], json!("often")),
                "sync.frequency",
                "invalid_value",
            ),
            (
                with(&["sync", "direction"], json!("sideways")),
                "sync.direction",
                "invalid_value",
            ),
            (
                with(&["sync", "conflict_strategy"], json!("last_wins")),
                "sync.conflict_strategy",
                "invalid_value",
            ),
            (
                with(&["sync", "speed"], json!(1)),
                "sync.speed",
                "unknown_field",
            ),
            (
                with(&["vendor"], json!("oracle")),
                "vendor",
                "invalid_value",
            ),
            (
                with(&["auth_type"], json!("password")),
                "auth_type",
                "invalid_value",
            ),
            (
                with(&["endpoint"], json!("ftp://login.salesforce.com")),
                "endpoint",
                "invalid_url",
            ),
            (
                with(&["endpoint"], json!("https://user:pw@login.salesforce.com")),
                "endpoint",
                "invalid_url",
            ),
            (
                with(&["endpoint"], json!("https://")),
                "endpoint",
                "invalid_url",
            ),
            (
                with(&["endpoint"], json!("https://host:99999/x")),
                "endpoint",
                "invalid_url",
            ),
            (with(&["name"], json!("")), "name", "invalid_value"),
            (with(&["name"], json!("x".repeat(201))), "name", "too_long"),
            (with(&["colour"], json!("red")), "colour", "unknown_field"),
            (
                with(&["field_mappings", "0", "canonical"], json!("spaceship")),
                "field_mappings[0].canonical",
                "invalid_value",
            ),
            (
                with(
                    &["field_mappings", "0", "fields", "email", "from"],
                    json!("Email"),
                ),
                "field_mappings[0].fields.email.from",
                "invalid_value",
            ),
            (
                with(
                    &["field_mappings", "0", "fields", "email", "transform"],
                    json!(["Trim Me"]),
                ),
                "field_mappings[0].fields.email.transform[0]",
                "invalid_value",
            ),
            (
                with(&["field_mappings", "0", "fields", "email", "via"], json!(1)),
                "field_mappings[0].fields.email.via",
                "unknown_field",
            ),
            (
                with(&["field_mappings", "0", "fields"], json!({})),
                "field_mappings[0].fields",
                "invalid_value",
            ),
            (
                with(&["field_mappings"], json!({})),
                "field_mappings",
                "invalid_type",
            ),
            (
                with(&["filters", "0", "op"], json!("like")),
                "filters[0].op",
                "invalid_value",
            ),
            (
                with(&["filters", "0", "value"], Value::Null),
                "filters[0].value",
                "required",
            ),
            (
                with(&["transformations", "0", "steps"], json!([])),
                "transformations[0].steps",
                "invalid_value",
            ),
            (
                with(&["oauth", "redirect_uri"], json!("not a url")),
                "oauth.redirect_uri",
                "invalid_url",
            ),
            (
                with(&["auth_type"], json!("api_key")),
                "oauth",
                "invalid_value",
            ),
        ];
        for (body, field, code) in cases {
            assert_eq!(issue_of(body), (field.to_string(), code), "{field}");
        }
        let mut missing = body();
        missing.as_object_mut().unwrap().remove("endpoint");
        assert_eq!(issue_of(missing), ("endpoint".into(), "required"));
        assert_eq!(issue_of(json!([])), ("body".into(), "invalid_type"));

        for ok in [
            "https://api.hubapi.com",
            "http://127.0.0.1:8089/sf",
            "https://[::1]:443/",
            "https://acme.my.salesforce.com/services?x=1",
        ] {
            assert!(check_url("endpoint", ok).is_ok(), "{ok}");
        }
        // Defaults, and the JSON round trip a PATCH relies on.
        let minimal = ConnectorSpec::from_json(
            &json!({ "name": "n", "vendor": "cdk", "endpoint": "https://cdk.example", "auth_type": "api_key" }),
            &[],
        )
        .unwrap();
        assert_eq!(minimal.sync, SyncSettings::default());
        assert_eq!(minimal.field_mappings, json!([]));
        let s = spec();
        assert_eq!(ConnectorSpec::from_json(&s.to_json(), &[]).unwrap(), s);
        assert_eq!(Direction::ALL.len(), 3);
        assert_eq!(ConflictStrategy::ALL.len(), 5);
        assert_eq!(AuthType::ALL.len(), 5);
    }

    on_both_backends! {
        async fn connectors_are_created_changed_scheduled_and_kept_per_tenant(h) {
            let s = &h.store;
            let (acme, globex) = (tenant("acme"), tenant("globex"));
            s.create_tenant(&acme, "Acme Motors").await.unwrap();
            s.create_tenant(&globex, "Globex Auto Group").await.unwrap();
            s.pin_clock_ms(T0);

            let c = s.create_connector(&acme, "sf-main", &spec(), false).await.unwrap();
            assert_eq!((c.version, c.enabled, c.created_at_ms, c.updated_at_ms), (1, false, T0, T0));
            assert_eq!(c.spec, spec());
            assert!(s.get_schedule(&acme, "sf-main").await.unwrap().is_none(), "disabled: no schedule");
            assert_eq!(s.create_connector(&acme, "sf-main", &spec(), false).await.unwrap_err().code(), "conflict");
            assert_eq!(s.create_connector(&acme, "Bad Id", &spec(), false).await.unwrap_err().code(), "invalid_input");
            assert_eq!(s.create_connector(&tenant("nowhere"), "x", &spec(), false).await.unwrap_err().code(), "not_found");
            s.create_connector(&globex, "sf-main", &spec(), true).await.unwrap();
            assert!(s.get_schedule(&globex, "sf-main").await.unwrap().is_some());

            // Each tenant sees only its own.
            assert!(s.get_connector(&globex, "hubspot").await.unwrap().is_none());
            s.create_connector(&acme, "hubspot", &ConnectorSpec { vendor: "hubspot".into(), ..spec() }, false).await.unwrap();
            let ids: Vec<String> = s.list_connectors(&acme).await.unwrap().into_iter().map(|c| c.id).collect();
            assert_eq!(ids, ["hubspot", "sf-main"]);
            assert_eq!(s.list_connectors(&globex).await.unwrap().len(), 1);
            assert!(s.get_connector(&globex, "hubspot").await.unwrap().is_none());

            // Enabling schedules by the frequency; a frequency change re-schedules; disabling unschedules.
            s.pin_clock_ms(T0 + 1000);
            let on = s.set_connector_enabled(&acme, "sf-main", true).await.unwrap();
            assert_eq!((on.enabled, on.version), (true, 2));
            let sched = s.get_schedule(&acme, "sf-main").await.unwrap().unwrap();
            assert_eq!((sched.frequency, sched.next_due_ms), (Frequency::Hourly, Some(T0 + 1000)));
            assert_eq!(s.set_connector_enabled(&acme, "sf-main", true).await.unwrap().version, 2, "no change, no new version");

            let daily = ConnectorSpec { sync: SyncSettings { frequency: Frequency::Daily, ..spec().sync }, ..spec() };
            let changed = s.update_connector(&acme, "sf-main", &daily, Some(2)).await.unwrap();
            assert_eq!((changed.version, changed.updated_at_ms, changed.created_at_ms), (3, T0 + 1000, T0));
            assert_eq!(s.get_schedule(&acme, "sf-main").await.unwrap().unwrap().frequency, Frequency::Daily);
            // A writer holding version 2 lost the race.
            assert_eq!(s.update_connector(&acme, "sf-main", &spec(), Some(2)).await.unwrap_err().code(), "conflict");
            assert_eq!(s.update_connector(&globex, "hubspot", &spec(), None).await.unwrap_err().code(), "not_found");
            let off = s.set_connector_enabled(&acme, "sf-main", false).await.unwrap();
            assert_eq!((off.enabled, off.version), (false, 4));
            assert!(s.get_schedule(&acme, "sf-main").await.unwrap().is_none());

            // Deleting waits for active jobs, then takes credentials and schedule along.
            s.put_credentials(&acme, "sf-main", &Secret::new(json!({ "client_secret": "s3cr3t" }))).await.unwrap();
            s.set_schedule(&acme, "sf-main", Frequency::Weekly, None).await.unwrap();
            let job = s.sync_now(&acme, "sf-main").await.unwrap();
            assert_eq!(s.delete_connector(&acme, "sf-main").await.unwrap(), DeleteOutcome::JobsActive(1));
            assert!(s.get_connector(&acme, "sf-main").await.unwrap().is_some());
            assert_eq!(s.cancel_job(&acme, &job.id).await.unwrap().status, JobStatus::Cancelled);
            assert_eq!(s.delete_connector(&globex, "hubspot").await.unwrap(), DeleteOutcome::NotFound);
            assert_eq!(s.delete_connector(&acme, "sf-main").await.unwrap(), DeleteOutcome::Deleted);
            assert!(s.get_connector(&acme, "sf-main").await.unwrap().is_none());
            assert!(s.get_credentials(&acme, "sf-main").await.unwrap().is_none());
            assert!(s.get_schedule(&acme, "sf-main").await.unwrap().is_none());
            assert_eq!(s.list_jobs(&acme, 10).await.unwrap().len(), 1, "finished jobs stay as history");
            assert!(s.get_connector(&globex, "sf-main").await.unwrap().is_some(), "the other tenant's is untouched");
        }

        async fn an_oauth_state_is_used_once_and_expires(h) {
            let s = &h.store;
            let acme = tenant("acme");
            s.create_tenant(&acme, "Acme Motors").await.unwrap();
            s.create_connector(&acme, "sf-main", &spec(), false).await.unwrap();
            s.pin_clock_ms(T0);
            let redirect = "https://hub.acme.example/api/v1/oauth/callback";
            assert_eq!(s.start_oauth(&acme, "nope", redirect, "user:u1").await.unwrap_err().code(), "not_found");

            let start = s.start_oauth(&acme, "sf-main", redirect, "user:u1").await.unwrap();
            assert_eq!(start.expires_at_ms, T0 + OAUTH_STATE_TTL_MS);
            let grant = s.take_oauth(start.state.expose()).await.unwrap().unwrap();
            assert_eq!((grant.tenant.as_str(), grant.connector.as_str(), grant.redirect_uri.as_str(), grant.started_by.as_str()),
                ("acme", "sf-main", redirect, "user:u1"));
            // RFC 7636 S256: the challenge sent is the hash of the verifier kept.
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(grant.code_verifier.expose().as_bytes()));
            assert_eq!(challenge, start.code_challenge);
            assert_eq!(grant.code_verifier.expose().len(), 43);
            assert_eq!(s.take_oauth(start.state.expose()).await.unwrap().unwrap_err(), StateRejection::Used);
            assert_eq!(s.take_oauth("never-issued").await.unwrap().unwrap_err(), StateRejection::Unknown);

            // Neither the state nor the verifier is in the store in clear.
            let second = s.start_oauth(&acme, "sf-main", redirect, "user:u1").await.unwrap();
            let dump = h.raw_dump().await;
            for secret in [second.state.expose().as_str(), grant.code_verifier.expose().as_str()] {
                assert!(!dump.windows(secret.len()).any(|w| w == secret.as_bytes()), "a secret of the flow is in the raw store");
            }

            // Ten minutes later it is refused, even unused.
            s.pin_clock_ms(T0 + OAUTH_STATE_TTL_MS);
            assert_eq!(s.take_oauth(second.state.expose()).await.unwrap().unwrap_err(), StateRejection::Expired);

            // Deleting the connector ends its pending flows.
            s.pin_clock_ms(T0);
            let third = s.start_oauth(&acme, "sf-main", redirect, "user:u1").await.unwrap();
            assert_eq!(s.delete_connector(&acme, "sf-main").await.unwrap(), DeleteOutcome::Deleted);
            assert_eq!(s.take_oauth(third.state.expose()).await.unwrap().unwrap_err(), StateRejection::Unknown);
        }
    }
}

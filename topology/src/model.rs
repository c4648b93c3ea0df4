//! The topology file's model. Every struct denies unknown fields, so a typo is an error
//! with a line number rather than a silently ignored setting.

use std::collections::BTreeMap;

use hub_schemas::Entity;
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
}

/// How one vendor entity maps to one canonical entity.
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
}

/// How one canonical field is filled from a vendor record.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// JSON pointer into the vendor payload (`/Email`, `/properties/email`).
    #[serde(default)]
    pub from: Option<String>,
    /// Transformations applied in order.
    #[serde(default)]
    pub transform: Vec<Transform>,
    /// Used when the source is missing or null.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// The record is dead-lettered when this field ends up empty.
    #[serde(default)]
    pub required: bool,
    /// A named format the final value must have.
    #[serde(default)]
    pub format: Option<Format>,
}

/// A value transformation. The full transformation library arrives with the transform engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
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
}

/// Named formats a field's final value is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// 17 characters, no I/O/Q, valid ISO 3779 check digit.
    Vin,
    Email,
    /// `+` and 8–15 digits.
    E164,
    UsZip,
    UsState,
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
        t.push(names.ledger());
        t.push(names.conflicts());
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
    pub fn mapping(&self, vendor_entity: &str) -> Option<&EntityMapping> {
        self.entities
            .iter()
            .find(|e| e.vendor_entity == vendor_entity)
    }
}

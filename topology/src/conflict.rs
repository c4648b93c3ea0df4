//! Conflict strategies and the policy that picks one for a (connector, field) — the
//! topology's `conflicts:` section. The transform's conflict core (`hub_transform::conflict`)
//! applies them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a conflicting field is settled.
///
/// In the topology YAML: `source_wins`, `target_wins`, `manual`, `skip`, or
/// `{ merge: { priority: [salesforce-main, hubspot-main] } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy {
    /// The incoming change wins every conflicting field.
    SourceWins,
    /// The current value wins every conflicting field.
    TargetWins,
    /// Conflicting fields go to the higher-priority source, then the later source time, then a
    /// deterministic tie-break (source id, then value text), so the result does not depend on
    /// the order concurrent changes arrive in.
    Merge {
        /// Connector ids, highest priority first. Unlisted connectors rank below all listed.
        #[serde(default)]
        priority: Vec<String>,
    },
    /// Non-conflicting fields apply; conflicting ones are held until a person resolves them.
    Manual,
    /// Conflicting fields of the change are dropped (and recorded as skipped).
    Skip,
}

/// Strategies for one canonical entity (the caller keeps one `Policy` per entity).
///
/// Precedence, most specific first: the change's connector's field entry
/// (`connectors.<id>.fields.<field>`), the entity's field entry (`fields.<field>`), the
/// connector's strategy (`connectors.<id>.strategy`), then `default`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Strategy when nothing more specific is set.
    #[serde(default = "Policy::default_strategy")]
    pub default: Strategy,
    /// Per-field strategies for this entity, whatever the connector.
    #[serde(default)]
    pub fields: BTreeMap<String, Strategy>,
    /// Per-connector strategies, keyed by connector id.
    #[serde(default)]
    pub connectors: BTreeMap<String, ConnectorPolicy>,
    /// Two changes from different sources whose source times lie within this many
    /// milliseconds of each other are concurrent: neither saw the other. 2 s covers the clock
    /// skew and second-granularity timestamps of typical CRM/DMS APIs.
    #[serde(default = "Policy::default_concurrency_window_ms")]
    pub concurrency_window_ms: i64,
}

/// Strategies for changes coming from one connector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorPolicy {
    #[serde(default)]
    pub strategy: Option<Strategy>,
    #[serde(default)]
    pub fields: BTreeMap<String, Strategy>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::uniform(Self::default_strategy())
    }
}

impl Policy {
    fn default_strategy() -> Strategy {
        Strategy::Manual
    }

    fn default_concurrency_window_ms() -> i64 {
        2_000
    }

    /// One strategy for every connector and field, with the default window.
    pub fn uniform(strategy: Strategy) -> Self {
        Self {
            default: strategy,
            fields: BTreeMap::new(),
            connectors: BTreeMap::new(),
            concurrency_window_ms: Self::default_concurrency_window_ms(),
        }
    }

    /// The strategy for a change from `connector` to `field` (see the type's precedence).
    pub fn strategy_for(&self, connector: &str, field: &str) -> &Strategy {
        let conn = self.connectors.get(connector);
        conn.and_then(|c| c.fields.get(field))
            .or_else(|| self.fields.get(field))
            .or_else(|| conn.and_then(|c| c.strategy.as_ref()))
            .unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_read_as_plain_yaml_maps() {
        let text = "default: { merge: { priority: [sf-main, hs-marketing] } }\nfields:\n  last_name: manual\nconnectors:\n  hs-marketing: { strategy: target_wins }\n";
        let p: Policy = serde_yaml::with::singleton_map_recursive::deserialize(
            serde_yaml::Deserializer::from_str(text),
        )
        .unwrap();
        assert_eq!(
            p.strategy_for("sf-main", "email"),
            &Strategy::Merge {
                priority: vec!["sf-main".into(), "hs-marketing".into()]
            }
        );
        assert_eq!(p.strategy_for("sf-main", "last_name"), &Strategy::Manual);
        assert_eq!(
            p.strategy_for("hs-marketing", "email"),
            &Strategy::TargetWins
        );
        assert_eq!(p.concurrency_window_ms, 2_000);
    }
}

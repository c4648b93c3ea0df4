//! Offline checks of a topology file, with errors that name the line.

use std::collections::HashSet;
use std::fmt;

use apache_avro::Schema;

use hub_schemas::Entity;

use crate::model::{TargetKind, Topology};

/// One problem in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError {
    /// 1-based line, when it can be told.
    pub line: Option<usize>,
    /// Where in the document, e.g. `tenants[0].connectors[1].entities[0].fields.email`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for TopologyError {}

/// Reads the environment for `${VAR}` and `${VAR:-default}`; a missing variable without a
/// default is an error on its line.
fn expand_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<TopologyError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                errors.push(TopologyError {
                    line: Some(i + 1),
                    path: String::new(),
                    message: "unterminated '${' (write '${VAR}' or '${VAR:-default}')".into(),
                });
                rest = "";
                break;
            };
            let expr = &after[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            match env(name).or_else(|| default.map(str::to_string)) {
                Some(v) => out.push_str(&v),
                None => errors.push(TopologyError {
                    line: Some(i + 1),
                    path: String::new(),
                    message: format!("environment variable {name} is not set and has no default"),
                }),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// serde_yaml reports errors from custom deserialisers at the start of the enclosing
/// mapping; the offending value or field, quoted in the message, is usually a few lines on.
fn refine_line(text: &str, reported: usize, message: &str) -> usize {
    let quoted = message
        .split('`')
        .nth(1)
        .or_else(|| message.split('\'').nth(1))
        .filter(|q| !q.is_empty());
    let Some(q) = quoted else { return reported };
    text.lines()
        .enumerate()
        .skip(reported.saturating_sub(1))
        .take(50)
        .find(|(_, l)| l.contains(q))
        .map_or(reported, |(i, _)| i + 1)
}

fn line_of(text: &str, needles: &[&str]) -> Option<usize> {
    text.lines()
        .position(|l| needles.iter().all(|n| l.contains(n)))
        .map(|i| i + 1)
}

const COMMON_FIELDS: [&str; 10] = hub_schemas::ENVELOPE_FIELDS;

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

/// Parses and checks a topology file, reading `${VAR}`s from the process environment.
pub fn parse(text: &str) -> Result<Topology, Vec<TopologyError>> {
    parse_with_env(text, &|k| std::env::var(k).ok())
}

/// Parses and checks a topology file with the given environment.
pub fn parse_with_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Topology, Vec<TopologyError>> {
    let expanded = expand_env(text, env)?;
    let topo: Topology = serde_yaml::from_str(&expanded).map_err(|e| {
        let msg = e.to_string();
        // serde_yaml appends " at line N column M"; the line is reported separately.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        let line = e.location().map(|l| refine_line(&expanded, l.line(), &msg));
        vec![TopologyError {
            line,
            path: String::new(),
            message: msg,
        }]
    })?;
    let errors = check(&topo, text);
    if errors.is_empty() {
        Ok(topo)
    } else {
        Err(errors)
    }
}

fn check(topo: &Topology, text: &str) -> Vec<TopologyError> {
    let mut errors = Vec::new();
    let mut err = |line: Option<usize>, path: String, message: String| {
        errors.push(TopologyError {
            line,
            path,
            message,
        })
    };
    if topo.version != 1 {
        err(
            line_of(text, &["version:"]),
            "version".into(),
            format!(
                "unsupported version {}; this hub reads version 1",
                topo.version
            ),
        );
    }
    if topo.runtime.partitions < 1 {
        err(
            line_of(text, &["partitions:"]),
            "runtime.partitions".into(),
            "must be at least 1".into(),
        );
    }
    let mut tenant_ids = HashSet::new();
    for (ti, t) in topo.tenants.iter().enumerate() {
        let tpath = format!("tenants[{ti}]");
        let tline = line_of(text, &["id:", &t.id]);
        if !valid_id(&t.id) {
            err(
                tline,
                format!("{tpath}.id"),
                format!(
                    "tenant id '{}' must be lowercase letters, digits and dashes (at most 64)",
                    t.id
                ),
            );
        }
        if !tenant_ids.insert(&t.id) {
            err(
                tline,
                format!("{tpath}.id"),
                format!("tenant id '{}' is used twice", t.id),
            );
        }
        let mut connector_ids = HashSet::new();
        for (ci, c) in t.connectors.iter().enumerate() {
            let cpath = format!("{tpath}.connectors[{ci}]");
            let cline = line_of(text, &["id:", &c.id]);
            if !valid_id(&c.id) {
                err(
                    cline,
                    format!("{cpath}.id"),
                    format!(
                        "connector id '{}' must be lowercase letters, digits and dashes",
                        c.id
                    ),
                );
            }
            if !connector_ids.insert(&c.id) {
                err(
                    cline,
                    format!("{cpath}.id"),
                    format!("connector id '{}' is used twice in tenant '{}'", c.id, t.id),
                );
            }
            if c.webhook_secret.len() < 16 {
                err(
                    line_of(text, &["webhook_secret:"]),
                    format!("{cpath}.webhook_secret"),
                    "must be at least 16 characters".into(),
                );
            }
            let mut entity_names = HashSet::new();
            for (ei, m) in c.entities.iter().enumerate() {
                let epath = format!("{cpath}.entities[{ei}]");
                let eline = line_of(text, &["vendor_entity:", &m.vendor_entity]);
                if !entity_names.insert(&m.vendor_entity) {
                    err(
                        eline,
                        format!("{epath}.vendor_entity"),
                        format!(
                            "'{}' is mapped twice in connector '{}'",
                            m.vendor_entity, c.id
                        ),
                    );
                }
                for (name, p) in [
                    ("external_id", &m.external_id),
                    ("updated_at", &m.updated_at),
                    ("deleted", &m.deleted),
                ] {
                    if let Some(p) = p
                        && !p.starts_with('/')
                    {
                        err(
                            line_of(text, &[name, p]),
                            format!("{epath}.{name}"),
                            format!("'{p}' is not a JSON pointer (it must start with '/')"),
                        );
                    }
                }
                let Schema::Record(record) = m.canonical.schema() else {
                    continue;
                };
                for (field, fm) in &m.fields {
                    let fpath = format!("{epath}.fields.{field}");
                    let fline = line_of(text, &[&format!("{field}:")]);
                    if COMMON_FIELDS.contains(&field.as_str()) {
                        err(
                            fline,
                            fpath.clone(),
                            format!("'{field}' is set by the hub itself and cannot be mapped"),
                        );
                    } else if !record
                        .lookup
                        .contains_key(field.split('.').next().unwrap_or(field))
                    {
                        let mut known: Vec<&str> = record
                            .fields
                            .iter()
                            .map(|f| f.name.as_str())
                            .filter(|f| !COMMON_FIELDS.contains(f))
                            .collect();
                        known.sort_unstable();
                        err(
                            fline,
                            fpath.clone(),
                            format!(
                                "{} has no field '{field}'; it has {}",
                                m.canonical,
                                known.join(", ")
                            ),
                        );
                    }
                    match &fm.from {
                        Some(p) if !p.starts_with('/') => err(
                            fline,
                            format!("{fpath}.from"),
                            format!("'{p}' is not a JSON pointer (it must start with '/')"),
                        ),
                        None if fm.default.is_none() => {
                            err(fline, fpath.clone(), "needs 'from' or 'default'".into())
                        }
                        _ => {}
                    }
                }
            }
        }
        for (entity, policy) in &t.conflicts {
            let ppath = format!("{tpath}.conflicts.{entity}");
            let pline = line_of(text, &[&format!("{entity}:")]);
            if entity.parse::<Entity>().is_err() {
                err(
                    pline,
                    ppath.clone(),
                    format!("'{entity}' is not a canonical entity"),
                );
            }
            let mut named: Vec<&String> = policy.connectors.keys().collect();
            for s in std::iter::once(&policy.default)
                .chain(policy.fields.values())
                .chain(
                    policy
                        .connectors
                        .values()
                        .flat_map(|c| c.strategy.iter().chain(c.fields.values())),
                )
            {
                if let crate::conflict::Strategy::Merge { priority } = s {
                    named.extend(priority);
                }
            }
            for c in named {
                if t.connector(c).is_none() {
                    err(
                        pline,
                        ppath.clone(),
                        format!("tenant '{}' has no connector '{c}'", t.id),
                    );
                }
            }
            if policy.concurrency_window_ms < 0 {
                err(
                    pline,
                    format!("{ppath}.concurrency_window_ms"),
                    "must not be negative".into(),
                );
            }
        }
        let mut target_ids = HashSet::new();
        for (gi, g) in t.targets.iter().enumerate() {
            let gpath = format!("{tpath}.targets[{gi}]");
            let gline = line_of(text, &["id:", &g.id]);
            if !valid_id(&g.id) {
                err(
                    gline,
                    format!("{gpath}.id"),
                    format!(
                        "target id '{}' must be lowercase letters, digits and dashes",
                        g.id
                    ),
                );
            }
            if !target_ids.insert(&g.id) {
                err(
                    gline,
                    format!("{gpath}.id"),
                    format!("target id '{}' is used twice in tenant '{}'", g.id, t.id),
                );
            }
            if let TargetKind::Webhook {
                url,
                secret,
                batch_size,
                connector,
            } = &g.kind
            {
                if let Some(c) = connector
                    && t.connector(c).is_none()
                {
                    err(
                        line_of(text, &["connector:", c]),
                        format!("{gpath}.connector"),
                        format!("tenant '{}' has no connector '{c}'", t.id),
                    );
                }
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    err(
                        line_of(text, &["url:", url]),
                        format!("{gpath}.url"),
                        format!("'{url}' is not an http(s) URL"),
                    );
                }
                if secret.len() < 16 {
                    err(
                        line_of(text, &["secret:"]),
                        format!("{gpath}.secret"),
                        "must be at least 16 characters".into(),
                    );
                }
                if *batch_size == 0 || *batch_size > 1000 {
                    err(
                        line_of(text, &["batch_size:"]),
                        format!("{gpath}.batch_size"),
                        "must be between 1 and 1000".into(),
                    );
                }
            }
        }
        for (ri, r) in t.routes.iter().enumerate() {
            for id in &r.targets {
                if !target_ids.contains(id) {
                    err(
                        line_of(text, &["targets:", id]).or_else(|| line_of(text, &[id])),
                        format!("{tpath}.routes[{ri}].targets"),
                        format!("no target '{id}' in tenant '{}'", t.id),
                    );
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "SECRET").then(|| "0123456789abcdef-secret".to_string())
    }

    #[test]
    fn demo_topology_is_valid() {
        let t = parse_with_env(crate::DEMO_TOPOLOGY, &|_| None).unwrap();
        assert!(!t.tenants.is_empty());
        assert!(t.topics().iter().any(|x| x == "hub.raw.salesforce"));
    }

    #[test]
    fn env_vars_expand_and_missing_ones_name_their_line() {
        assert_eq!(
            expand_env("a: ${SECRET}\n", &env).unwrap(),
            "a: 0123456789abcdef-secret\n"
        );
        assert_eq!(expand_env("a: ${NOPE:-x}\n", &env).unwrap(), "a: x\n");
        let e = expand_env("a: 1\nb: ${NOPE}\n", &env).unwrap_err();
        assert_eq!(e[0].line, Some(2));
    }

    #[test]
    fn unknown_keys_and_entities_are_errors_with_lines() {
        let text = "version: 1\ntenants:\n  - id: acme\n    colour: red\n";
        let e = parse_with_env(text, &env).unwrap_err();
        assert_eq!(e[0].line, Some(4), "{e:?}");
        let text = "version: 1\ntenants:\n  - id: acme\n    connectors:\n      - id: c1\n        vendor: salesforce\n        webhook_secret: ${SECRET}\n        entities:\n          - vendor_entity: Contact\n            canonical: truck\n            fields: {}\n";
        let e = parse_with_env(text, &env).unwrap_err();
        assert_eq!(e[0].line, Some(10), "{e:?}");
        assert!(e[0].message.contains("unknown entity 'truck'"), "{e:?}");
    }

    #[test]
    fn conflict_policies_name_known_entities_and_connectors() {
        let t = crate::parse_with_env(crate::DEMO_TOPOLOGY, &|_| None).unwrap();
        let policy = t.tenants[0].conflict_policy(Entity::Customer);
        assert_eq!(
            policy.strategy_for("hs-marketing", "last_name"),
            &crate::conflict::Strategy::Manual
        );
        let bad = crate::DEMO_TOPOLOGY
            .replace(
                "      customer:\n        default:",
                "      custmer:\n        default:",
            )
            .replace(
                "priority: [sf-main, hs-marketing]",
                "priority: [sf-main, hs-nope]",
            );
        let errors = crate::parse_with_env(&bad, &|_| None).unwrap_err();
        let text = format!("{errors:?}");
        assert!(
            text.contains("'custmer' is not a canonical entity"),
            "{text}"
        );
        assert!(text.contains("no connector 'hs-nope'"), "{text}");
    }

    #[test]
    fn semantic_errors_name_field_and_line() {
        let text = "version: 1\ntenants:\n  - id: acme\n    connectors:\n      - id: c1\n        vendor: salesforce\n        webhook_secret: ${SECRET}\n        entities:\n          - vendor_entity: Contact\n            canonical: customer\n            fields:\n              shoe_size: { from: /Shoe }\n    routes:\n      - entities: [customer]\n        targets: [nowhere]\n";
        let e = parse_with_env(text, &env).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].line, Some(12));
        assert!(e[0].message.contains("no field 'shoe_size'"));
        assert_eq!(e[1].line, Some(15));
        assert!(e[1].to_string().contains("no target 'nowhere'"));
    }
}

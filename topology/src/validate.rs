//! Offline checks of a topology file, with errors that name the line.

use std::collections::HashSet;
use std::fmt;

use apache_avro::Schema;

use hub_schemas::Entity;

use crate::model::{FormatCurrencyArgs, TargetKind, Topology, Transform, Vendor};

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

/// The first line at or after `from` (1-based) holding every needle; `from` itself when
/// there is none (a flow-style mapping keeps everything on the field's line).
fn line_after(text: &str, from: Option<usize>, needles: &[&str]) -> Option<usize> {
    let start = from.unwrap_or(1);
    text.lines()
        .enumerate()
        .skip(start.saturating_sub(1))
        .take(200)
        .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
        .map_or(from, |(i, _)| Some(i + 1))
}

/// A path into a payload: JSON-pointer segments, each optionally with one `[key=value]`
/// filter (`/adf/prospect/customer/contact/name[@part=first]`).
pub(crate) fn check_path(p: &str) -> Result<(), String> {
    let Some(rest) = p.strip_prefix('/') else {
        return Err(format!(
            "'{p}' is not a path (it must start with '/', like /Email)"
        ));
    };
    for seg in rest.split('/') {
        let Some(open) = seg.find('[') else {
            if seg.contains(']') {
                return Err(format!("'{p}': ']' without '[' in '{seg}'"));
            }
            continue;
        };
        let filter = &seg[open + 1..];
        let ok = filter
            .strip_suffix(']')
            .and_then(|f| f.split_once('='))
            .is_some_and(|(k, _)| !k.is_empty() && !seg[..open].is_empty())
            && !filter[..filter.len().saturating_sub(1)].contains(['[', ']']);
        if !ok {
            return Err(format!(
                "'{p}': the filter in '{seg}' must look like name[@attribute=value] or name[child=value]"
            ));
        }
    }
    Ok(())
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
        for (name, value) in [
            ("ingest_per_s", t.limits.ingest_per_s),
            ("ingest_burst", t.limits.ingest_burst),
        ] {
            if value == 0 {
                err(
                    line_of(text, &[&format!("{name}:")]),
                    format!("{tpath}.limits.{name}"),
                    "must be at least 1".into(),
                );
            }
        }
        let mut connector_ids = HashSet::new();
        for (ci, c) in t.connectors.iter().enumerate() {
            let cpath = format!("{tpath}.connectors[{ci}]");
            let cline = line_of(text, &["id:", &c.id]);
            if let Some(api) = &c.api {
                if api.requests_per_10s == Some(0) || api.daily_limit == Some(0) {
                    err(
                        line_of(text, &["_limit:"]).or(line_of(text, &["requests_per_10s:"])),
                        format!("{cpath}.api"),
                        "requests_per_10s and daily_limit must be at least 1".into(),
                    );
                }
                if api
                    .budget_warn_percent
                    .is_some_and(|p| !(1..=99).contains(&p))
                {
                    err(
                        line_of(text, &["budget_warn_percent:"]),
                        format!("{cpath}.api.budget_warn_percent"),
                        "must be between 1 and 99 (a percentage of the daily limit)".into(),
                    );
                }
            }
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
                // One vendor entity may feed several canonical entities, but each only once.
                if !entity_names.insert((&m.vendor_entity, m.canonical)) {
                    err(
                        eline,
                        format!("{epath}.vendor_entity"),
                        format!(
                            "'{}' is mapped to {} twice in connector '{}'",
                            m.vendor_entity, m.canonical, c.id
                        ),
                    );
                }
                for (name, p) in [
                    ("external_id", &m.external_id),
                    ("updated_at", &m.updated_at),
                    ("deleted", &m.deleted),
                ] {
                    if let Some(p) = p
                        && let Err(why) = check_path(p)
                    {
                        err(line_of(text, &[name, p]), format!("{epath}.{name}"), why);
                    }
                }
                let Schema::Record(record) = m.canonical.schema() else {
                    continue;
                };
                let has_field = |field: &str| {
                    !COMMON_FIELDS.contains(&field)
                        && record
                            .lookup
                            .contains_key(field.split('.').next().unwrap_or(field))
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
                    } else if !has_field(field) {
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
                        Some(p) => {
                            if let Err(why) = check_path(p) {
                                err(fline, format!("{fpath}.from"), why);
                            }
                        }
                        None if fm.default.is_none()
                            && !fm.transform.first().is_some_and(Transform::reads_record) =>
                        {
                            err(
                                fline,
                                fpath.clone(),
                                "needs 'from', 'default', or a first transformation that reads \
                                 the record (concatenate, calculate, custom_function)"
                                    .into(),
                            )
                        }
                        None => {}
                    }
                    for (i, t) in fm.transform.iter().enumerate() {
                        let tpath = format!("{fpath}.transform[{i}]");
                        match t {
                            Transform::Concatenate(a) => {
                                for p in &a.from {
                                    if let Err(why) = check_path(p) {
                                        err(line_after(text, fline, &[p]), tpath.clone(), why);
                                    }
                                }
                            }
                            Transform::FormatCurrency(FormatCurrencyArgs {
                                currency_field: Some(cf),
                                ..
                            }) if !has_field(cf) || cf == field => err(
                                line_after(text, fline, &["currency_field", cf]),
                                format!("{tpath}.currency_field"),
                                format!(
                                    "'{cf}' must be another field of {}, like currency",
                                    m.canonical
                                ),
                            ),
                            _ => {}
                        }
                    }
                    for (i, r) in fm.rules.iter().enumerate() {
                        let rpath = format!("{fpath}.rules[{i}]");
                        let kinds = [
                            r.range.is_some(),
                            r.length.is_some(),
                            r.regex.is_some(),
                            r.custom.is_some(),
                        ];
                        let n = kinds.iter().filter(|k| **k).count();
                        if n != 1 {
                            err(
                                line_after(text, fline, &["rules"]),
                                rpath.clone(),
                                format!(
                                    "a rule has exactly one of range, length, regex or custom \
                                     (this one has {n})"
                                ),
                            );
                        }
                        for (what, b) in [("range", r.range), ("length", r.length)] {
                            let Some(b) = b else { continue };
                            let bad = match (b.min, b.max) {
                                (None, None) => Some("needs min, max or both"),
                                (Some(lo), Some(hi)) if lo > hi => Some("min is above max"),
                                (lo, hi) if [lo, hi].iter().flatten().any(|x| !x.is_finite()) => {
                                    Some("bounds must be finite numbers")
                                }
                                _ => None,
                            };
                            if let Some(bad) = bad {
                                err(
                                    line_after(text, fline, &[what]),
                                    format!("{rpath}.{what}"),
                                    bad.into(),
                                );
                            }
                        }
                    }
                }
                for (i, r) in m.rules.iter().enumerate() {
                    if let Some(f) = &r.field
                        && f != "record"
                        && !has_field(f)
                    {
                        err(
                            line_of(text, &["field:", f]),
                            format!("{epath}.rules[{i}].field"),
                            format!("{} has no field '{f}'", m.canonical),
                        );
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
            if let TargetKind::Vendor {
                connector,
                batch_size,
                ..
            } = &g.kind
            {
                match t.connector(connector) {
                    None => err(
                        line_of(text, &["connector:", connector]),
                        format!("{gpath}.connector"),
                        format!("tenant '{}' has no connector '{connector}'", t.id),
                    ),
                    Some(c) if c.api.is_none() => err(
                        line_of(text, &["connector:", connector]),
                        format!("{gpath}.connector"),
                        format!(
                            "connector '{connector}' has no api: section, so the hub cannot write to it"
                        ),
                    ),
                    Some(c) if !matches!(c.vendor, Vendor::Salesforce | Vendor::Hubspot) => err(
                        line_of(text, &["connector:", connector]),
                        format!("{gpath}.connector"),
                        format!(
                            "the hub writes to salesforce and hubspot connectors, not '{}'",
                            c.vendor.name()
                        ),
                    ),
                    Some(_) => {}
                }
                if *batch_size == 0 {
                    err(
                        line_of(text, &["batch_size:"]),
                        format!("{gpath}.batch_size"),
                        "must be at least 1".into(),
                    );
                }
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
    fn tenant_limits_and_api_budgets_default_and_refuse_nonsense() {
        let t = parse_with_env("version: 1\ntenants:\n  - id: acme\n", &env).unwrap();
        assert_eq!(t.tenants[0].limits, crate::TenantLimits::default());
        let text = "version: 1\ntenants:\n  - id: acme\n    limits: { ingest_per_s: 5, ingest_burst: 10 }\n";
        let t = parse_with_env(text, &env).unwrap();
        assert_eq!(t.tenants[0].limits.ingest_per_s, 5);
        let text = "version: 1\ntenants:\n  - id: acme\n    limits:\n      ingest_per_s: 0\n";
        let e = parse_with_env(text, &env).unwrap_err();
        assert_eq!(e[0].path, "tenants[0].limits.ingest_per_s", "{e:?}");
        assert_eq!(e[0].line, Some(5), "{e:?}");
        let text = "version: 1\ntenants:\n  - id: acme\n    connectors:\n      - id: hs\n        vendor: hubspot\n        webhook_secret: ${SECRET}\n        api:\n          base_url: https://api.hubapi.com\n          daily_limit: 650000\n          budget_warn_percent: 100\n";
        let e = parse_with_env(text, &env).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            e[0].path,
            "tenants[0].connectors[0].api.budget_warn_percent"
        );
        assert_eq!(e[0].line, Some(11), "{e:?}");
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

    const HEAD: &str = "version: 1\ntenants:\n  - id: acme\n    connectors:\n      - id: c1\n        vendor: generic\n        webhook_secret: ${SECRET}\n        entities:\n";

    fn with_entities(entities: &str) -> String {
        format!("{HEAD}{entities}")
    }

    #[test]
    fn transformations_with_arguments_and_rules_parse() {
        let text = with_entities(
            r#"          - vendor_entity: prospect
            canonical: lead
            external_id: /adf/prospect/id
            fields:
              status:
                from: /adf/prospect/@status
                transform:
                  - trim
                  - lookup_value: { table: { new: new, resend: contacted }, default: other }
              created_at: { from: /adf/prospect/requestdate, transform: [{format_date: {tz: America/Chicago, input: mm/dd/yyyy}}] }
              comments:
                transform: [{concatenate: {from: ["/adf/prospect/customer/contact/name[@part=first]", /a/b], separator: " "}}, {split: {separator: " ", index: 0}}, {normalize_text: {case: title}}, {calculate: "value + \"!\""}, {custom_function: "if value.len() > 3 { value.sub_string(0, 3) } else { value }"}]
                rules:
                  - length: { max: 40 }
                    message: too long
                  - regex: "^[A-Z]"
                  - custom: "value != record.LastName"
            rules:
              - custom: "value.comments != ()"
                field: comments
          - vendor_entity: prospect
            canonical: vehicle
            fields:
              vin: { from: /adf/prospect/vehicle/vin, format: { regex: "^[A-HJ-NPR-Z0-9]{17}$" } }
              year: { from: /y, transform: [integer], rules: [{ range: { min: 1900, max: 2100 } }] }
              list_price_minor: { from: /p, transform: [{format_currency: {currency: USD, currency_field: currency}}] }
              currency: { default: USD }
"#,
        );
        let t = parse_with_env(&text, &env).unwrap();
        let c = &t.tenants[0].connectors[0];
        assert_eq!(c.mappings("prospect").count(), 2);
        let status = &c.entities[0].fields["status"];
        assert!(matches!(status.transform[1], Transform::LookupValue(_)));
        // What parses serialises back to the same shape.
        let again = serde_yaml::to_string(&t).unwrap();
        let t2: Topology = serde_yaml::from_str(&again).unwrap();
        assert_eq!(
            t2.tenants[0].connectors[0].entities[0].fields["comments"].transform,
            c.entities[0].fields["comments"].transform
        );
    }

    fn first_error(entities: &str) -> TopologyError {
        let e = parse_with_env(&with_entities(entities), &env).unwrap_err();
        e.into_iter().next().unwrap()
    }

    #[test]
    fn bad_transformations_fail_at_parse_time_on_their_line() {
        let field = |f: &str| {
            format!(
                "          - vendor_entity: Contact\n            canonical: customer\n            fields:\n              last_name: {{ from: /L }}\n              first_name:\n                from: /F\n{f}"
            )
        };
        let cases = [
            (
                "                transform: [trim, shout]\n",
                "unknown transformation `shout`",
            ),
            (
                "                transform:\n                  - trim\n                  - format_date: { tz: Mars/Olympus }\n",
                "unknown time zone `Mars/Olympus`",
            ),
            (
                "                transform:\n                  - format_phone: { region: XX }\n",
                "`XX` is not a country code",
            ),
            (
                "                transform:\n                  - format_phone: { regoin: US }\n",
                "unknown field `regoin`",
            ),
            (
                "                transform:\n                  - calculate: \"value *\"\n",
                "expression `value *` does not compile",
            ),
            (
                "                transform:\n                  - custom_function: \"valeu + 1\"\n",
                "valeu",
            ),
            (
                "                transform: [format_date]\n",
                "needs arguments",
            ),
            (
                "                format: { regex: \"^[A-Z\" }\n",
                "regular expression `^[A-Z` is invalid",
            ),
            ("                format: phone\n", "unknown format `phone`"),
        ];
        for (f, want) in cases {
            let text = field(f);
            let e = first_error(&text);
            assert!(e.message.contains(want), "{want}: {e}");
            let offending = f.lines().count();
            let line = HEAD.lines().count() + 6 + offending;
            assert_eq!(e.line, Some(line), "{want}: {e}");
        }
    }

    #[test]
    fn semantic_rule_and_path_errors_are_reported() {
        let text = with_entities(
            "          - vendor_entity: Contact\n            canonical: customer\n            fields:\n              last_name: { from: /L, rules: [{ range: { min: 5, max: 1 } }, { regex: a, custom: \"true\" }] }\n              first_name: { from: \"/n[part\" }\n              email: { transform: [trim] }\n              phone: { from: /p, transform: [{format_currency: {currency_field: shoe}}] }\n          - vendor_entity: Contact\n            canonical: customer\n            fields: {}\n",
        );
        let e = parse_with_env(&text, &env).unwrap_err();
        let msgs: Vec<String> = e.iter().map(ToString::to_string).collect();
        let all = msgs.join("\n");
        for want in [
            "min is above max",
            "exactly one of range, length, regex or custom (this one has 2)",
            "the filter in 'n[part' must look like",
            "needs 'from', 'default'",
            "'shoe' must be another field of customer",
            "'Contact' is mapped to customer twice",
        ] {
            assert!(all.contains(want), "{want} missing from:\n{all}");
        }
        assert!(e.iter().all(|x| x.line.is_some()), "{all}");
    }

    #[test]
    fn paths_with_filters_are_checked() {
        assert!(check_path("/adf/prospect/customer/contact/name[@part=first]").is_ok());
        assert!(check_path("/a/b/0/c[kind=home]/d").is_ok());
        assert!(check_path("a/b").is_err());
        assert!(check_path("/a[=x]").is_err());
        assert!(check_path("/[a=x]").is_err());
        assert!(check_path("/a[b=x]]").is_err());
        assert!(check_path("/a]").is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_transform_and_rule_text_never_panics(
            step in "[a-z_{}:\\[\\], \"'/.*0-9@=-]{0,60}",
            rule in "[a-z_{}:\\[\\], \"'/.*0-9@=^$-]{0,60}",
        ) {
            let text = with_entities(&format!(
                "          - vendor_entity: Contact\n            canonical: customer\n            fields:\n              last_name:\n                from: /L\n                transform: [{step}]\n                rules: [{rule}]\n"
            ));
            let _ = parse_with_env(&text, &env);
        }
    }
}

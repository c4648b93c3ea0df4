use std::collections::BTreeMap;

use proptest::prelude::{Just, prop_assert, prop_assert_eq, prop_oneof, proptest};
use proptest::strategy::Strategy as Gen;
use serde_json::{Value, json};

use super::*;

const SF: &str = "salesforce-main";
const HS: &str = "hubspot-main";
/// 2026-03-02T10:00:00Z, epoch ms.
const T0: i64 = 1_772_445_600_000;

fn change(source: &str, ts: i64, fields: &[(&str, Value)]) -> Change {
    Change {
        source: source.into(),
        source_ts: ts,
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        content_hash: None,
    }
}

/// A customer last written by Salesforce at `T0`.
fn sf_customer() -> KeyState {
    let fs = |v: Value| FieldState {
        value: v,
        source: SF.into(),
        source_ts: T0,
    };
    KeyState {
        fields: BTreeMap::from([
            ("email".into(), fs(json!("ana.ruiz@example.com"))),
            ("phone".into(), fs(json!("+15125550100"))),
            ("lead_status".into(), fs(json!("working"))),
        ]),
        version: 7,
    }
}

/// HubSpot edits phone and adds a city 500 ms after Salesforce's write: concurrent.
fn hs_concurrent_edit() -> Change {
    change(
        HS,
        T0 + 500,
        &[("phone", json!("+15125550199")), ("city", json!("Austin"))],
    )
}

fn value<'a>(state: &'a KeyState, field: &str) -> &'a Value {
    &state.fields[field].value
}

#[test]
fn field_missing_from_state_applies_without_conflict() {
    let d = decide(
        &sf_customer(),
        &change(HS, T0 - 60_000, &[("city", json!("Austin"))]),
        &Policy::uniform(Strategy::Manual),
        None,
    );
    assert_eq!(d.outcome, Outcome::Applied);
    assert_eq!(value(&d.state, "city"), &json!("Austin"));
    assert_eq!(d.state.version, 8);
}

#[test]
fn same_source_newer_change_wins_and_older_is_stale() {
    let policy = Policy::uniform(Strategy::Manual);
    let newer = decide(
        &sf_customer(),
        &change(SF, T0 + 100, &[("phone", json!("+15125550111"))]),
        &policy,
        None,
    );
    assert_eq!(newer.outcome, Outcome::Applied);
    assert_eq!(value(&newer.state, "phone"), &json!("+15125550111"));

    let older = decide(
        &sf_customer(),
        &change(SF, T0 - 100, &[("phone", json!("+15125550111"))]),
        &policy,
        None,
    );
    assert_eq!(older.outcome, Outcome::Skipped);
    assert_eq!(
        older.fields["phone"],
        FieldOutcome::KeptCurrent {
            reason: KeptReason::Stale
        }
    );
    assert_eq!(older.state, sf_customer());
}

#[test]
fn equal_values_from_another_source_never_conflict() {
    let d = decide(
        &sf_customer(),
        &change(HS, T0 + 10, &[("email", json!("ana.ruiz@example.com"))]),
        &Policy::uniform(Strategy::Manual),
        None,
    );
    assert_eq!(d.outcome, Outcome::Skipped);
    assert_eq!(d.fields["email"], FieldOutcome::Unchanged);
    assert_eq!(d.state, sf_customer());
}

#[test]
fn change_made_after_the_window_saw_the_current_value_and_applies() {
    let d = decide(
        &sf_customer(),
        &change(HS, T0 + 2_001, &[("phone", json!("+15125550199"))]),
        &Policy::uniform(Strategy::Manual),
        None,
    );
    assert_eq!(d.outcome, Outcome::Applied);
    assert_eq!(
        d.fields["phone"],
        FieldOutcome::Applied {
            won_conflict: false
        }
    );
}

#[test]
fn older_change_from_another_source_conflicts_even_outside_the_window() {
    let d = decide(
        &sf_customer(),
        &change(HS, T0 - 3_600_000, &[("phone", json!("+15125550199"))]),
        &Policy::uniform(Strategy::TargetWins),
        None,
    );
    assert_eq!(
        d.fields["phone"],
        FieldOutcome::KeptCurrent {
            reason: KeptReason::LostConflict
        }
    );
}

#[test]
fn source_wins_overrides_concurrent_salesforce_value() {
    let d = decide(
        &sf_customer(),
        &hs_concurrent_edit(),
        &Policy::uniform(Strategy::SourceWins),
        None,
    );
    assert_eq!(d.outcome, Outcome::Applied);
    assert_eq!(
        d.fields["phone"],
        FieldOutcome::Applied { won_conflict: true }
    );
    assert_eq!(value(&d.state, "phone"), &json!("+15125550199"));
    assert_eq!(d.state.fields["phone"].source, HS);
}

#[test]
fn target_wins_keeps_salesforce_value_but_applies_new_fields() {
    let d = decide(
        &sf_customer(),
        &hs_concurrent_edit(),
        &Policy::uniform(Strategy::TargetWins),
        None,
    );
    assert_eq!(d.outcome, Outcome::Applied);
    assert_eq!(value(&d.state, "phone"), &json!("+15125550100"));
    assert_eq!(value(&d.state, "city"), &json!("Austin"));
    assert_eq!(d.state.version, 8);
}

#[test]
fn merge_prefers_priority_source_over_later_time() {
    let policy = Policy::uniform(Strategy::Merge {
        priority: vec![SF.into(), HS.into()],
    });
    let d = decide(&sf_customer(), &hs_concurrent_edit(), &policy, None);
    assert_eq!(value(&d.state, "phone"), &json!("+15125550100"));
    assert_eq!(value(&d.state, "city"), &json!("Austin"));
}

#[test]
fn merge_without_priority_takes_the_later_source_time() {
    let policy = Policy::uniform(Strategy::Merge { priority: vec![] });
    let d = decide(&sf_customer(), &hs_concurrent_edit(), &policy, None);
    assert_eq!(value(&d.state, "phone"), &json!("+15125550199"));
}

#[test]
fn manual_applies_non_conflicting_fields_and_holds_the_rest() {
    let d = decide(
        &sf_customer(),
        &hs_concurrent_edit(),
        &Policy::uniform(Strategy::Manual),
        None,
    );
    let Outcome::Conflict { pending } = &d.outcome else {
        panic!("expected a conflict, got {:?}", d.outcome);
    };
    assert_eq!(pending.fields.len(), 1);
    assert_eq!(pending.fields[0].field, "phone");
    assert_eq!(pending.raised_at_version, 8);
    assert_eq!(value(&d.state, "phone"), &json!("+15125550100"));
    assert_eq!(value(&d.state, "city"), &json!("Austin"));
    assert_eq!(d.fields["phone"], FieldOutcome::Held);
}

#[test]
fn manual_conflict_with_nothing_else_keeps_the_version() {
    let d = decide(
        &sf_customer(),
        &change(HS, T0 + 500, &[("phone", json!("+15125550199"))]),
        &Policy::uniform(Strategy::Manual),
        None,
    );
    assert!(matches!(d.outcome, Outcome::Conflict { .. }));
    assert_eq!(d.state, sf_customer());
}

#[test]
fn skip_drops_conflicting_fields_and_records_them() {
    let d = decide(
        &sf_customer(),
        &change(HS, T0 + 500, &[("phone", json!("+15125550199"))]),
        &Policy::uniform(Strategy::Skip),
        None,
    );
    assert_eq!(d.outcome, Outcome::Skipped);
    assert_eq!(d.fields["phone"], FieldOutcome::Skipped);
    assert_eq!(d.state, sf_customer());
}

#[test]
fn echo_of_the_hubs_own_write_changes_nothing() {
    let mut echo = hs_concurrent_edit();
    echo.content_hash = Some("ab12".into());
    let ledger = LedgerEntry {
        content_hash: "ab12".into(),
        version: 7,
    };
    let d = decide(
        &sf_customer(),
        &echo,
        &Policy::uniform(Strategy::SourceWins),
        Some(&ledger),
    );
    assert_eq!(d.outcome, Outcome::Echo);
    assert_eq!(d.state, sf_customer());
    assert!(d.fields.values().all(|o| *o == FieldOutcome::Echo));
}

#[test]
fn different_content_from_the_ledger_is_not_an_echo() {
    let mut c = hs_concurrent_edit();
    c.content_hash = Some("ab12".into());
    let ledger = LedgerEntry {
        content_hash: "cd34".into(),
        version: 7,
    };
    assert!(!is_echo(&c, Some(&ledger)));
    assert!(!is_echo(&c, None));
}

#[test]
fn policy_precedence_is_connector_field_then_field_then_connector_then_default() {
    let policy: Policy = serde_json::from_value(json!({
        "default": "manual",
        "fields": { "email": "target_wins", "phone": "skip" },
        "connectors": {
            "hubspot-main": {
                "strategy": "source_wins",
                "fields": { "email": { "merge": { "priority": ["salesforce-main"] } } }
            }
        }
    }))
    .unwrap();
    assert_eq!(policy.concurrency_window_ms, 2_000);
    assert!(matches!(
        policy.strategy_for(HS, "email"),
        Strategy::Merge { .. }
    ));
    assert_eq!(policy.strategy_for(HS, "phone"), &Strategy::Skip);
    assert_eq!(policy.strategy_for(HS, "city"), &Strategy::SourceWins);
    assert_eq!(policy.strategy_for(SF, "email"), &Strategy::TargetWins);
    assert_eq!(policy.strategy_for(SF, "city"), &Strategy::Manual);
}

#[test]
fn policy_rejects_unknown_keys() {
    let r: Result<Policy, _> = serde_json::from_value(json!({ "defualt": "manual" }));
    assert!(r.is_err());
}

#[test]
fn key_state_round_trips_through_json() {
    let s = sf_customer();
    let text = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<KeyState>(&text).unwrap(), s);
}

fn held_phone() -> (KeyState, PendingConflict) {
    let d = decide(
        &sf_customer(),
        &hs_concurrent_edit(),
        &Policy::uniform(Strategy::Manual),
        None,
    );
    match d.outcome {
        Outcome::Conflict { pending } => (d.state, pending),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn resolution(fields: &[(&str, FieldResolution)]) -> Resolution {
    Resolution {
        resolved_by: "console:jane@dealer.example".into(),
        resolved_at_ms: T0 + 60_000,
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

#[test]
fn resolving_with_the_incoming_value_writes_one_new_version() {
    let (state, pending) = held_phone();
    let r = resolve(
        &state,
        &pending,
        &resolution(&[("phone", FieldResolution::TakeIncoming)]),
    )
    .unwrap();
    assert_eq!(r.version, state.version + 1);
    assert_eq!(value(&r, "phone"), &json!("+15125550199"));
    assert_eq!(r.fields["phone"].source, HS);
}

#[test]
fn resolving_with_an_edited_value_attributes_it_to_the_resolver() {
    let (state, pending) = held_phone();
    let r = resolve(
        &state,
        &pending,
        &resolution(&[("phone", FieldResolution::Value(json!("+15125550777")))]),
    )
    .unwrap();
    assert_eq!(value(&r, "phone"), &json!("+15125550777"));
    assert_eq!(r.fields["phone"].source, "console:jane@dealer.example");
}

#[test]
fn resolution_must_cover_exactly_the_held_fields() {
    let (state, pending) = held_phone();
    let missing = resolve(&state, &pending, &resolution(&[])).unwrap_err();
    assert_eq!(missing.code(), "conflict.resolution_missing_field");
    let unknown = resolve(
        &state,
        &pending,
        &resolution(&[
            ("phone", FieldResolution::KeepCurrent),
            ("city", FieldResolution::KeepCurrent),
        ]),
    )
    .unwrap_err();
    assert_eq!(
        unknown,
        ResolveError::UnknownField {
            field: "city".into()
        }
    );
}

#[test]
fn resolution_is_refused_when_the_field_changed_since() {
    let (state, pending) = held_phone();
    let later = decide(
        &state,
        &change(SF, T0 + 10_000, &[("phone", json!("+15125550123"))]),
        &Policy::uniform(Strategy::Manual),
        None,
    );
    let err = resolve(
        &later.state,
        &pending,
        &resolution(&[("phone", FieldResolution::KeepCurrent)]),
    )
    .unwrap_err();
    assert_eq!(err.code(), "conflict.changed_since_raised");
}

// ---- properties -------------------------------------------------------------------------

const SOURCES: [&str; 4] = ["salesforce-main", "hubspot-main", "cdk-dms", "adf-email"];
const FIELDS: [&str; 3] = ["email", "phone", "city"];
const WINDOW_MS: i64 = 2_000;

fn arb_change(ts_range: std::ops::Range<i64>) -> impl Gen<Value = Change> {
    (
        0..SOURCES.len(),
        ts_range,
        proptest::collection::btree_map(
            proptest::sample::select(FIELDS.to_vec()),
            (0..3i64).prop_map(|v| json!(v)),
            1..=FIELDS.len(),
        ),
        proptest::option::of(0..3u8),
    )
        .prop_map(|(s, ts, fields, hash)| Change {
            source: SOURCES[s].into(),
            source_ts: ts,
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            content_hash: hash.map(|h| format!("h{h}")),
        })
}

fn arb_strategy() -> impl Gen<Value = Strategy> {
    prop_oneof![
        Just(Strategy::SourceWins),
        Just(Strategy::TargetWins),
        Just(Strategy::Manual),
        Just(Strategy::Skip),
        proptest::sample::subsequence(SOURCES.to_vec(), 0..=SOURCES.len())
            .prop_shuffle()
            .prop_map(|p| Strategy::Merge {
                priority: p.into_iter().map(String::from).collect()
            }),
    ]
}

fn arb_policy() -> impl Gen<Value = Policy> {
    (
        arb_strategy(),
        proptest::collection::btree_map(
            proptest::sample::select(FIELDS.to_vec()),
            arb_strategy(),
            0..2,
        ),
    )
        .prop_map(|(default, fields)| Policy {
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ..Policy::uniform(default)
        })
}

proptest! {
    /// Acceptance: merge converges whatever the order of the same concurrent changes.
    #[test]
    fn merge_converges_whatever_the_order_of_concurrent_changes(
        (changes, shuffled) in proptest::collection::vec(arb_change(T0..T0 + WINDOW_MS), 1..6)
            .prop_flat_map(|cs| (Just(cs.clone()), Just(cs).prop_shuffle())),
        priority in proptest::sample::subsequence(SOURCES.to_vec(), 0..=SOURCES.len()).prop_shuffle(),
    ) {
        let policy = Policy {
            concurrency_window_ms: WINDOW_MS,
            ..Policy::uniform(Strategy::Merge {
                priority: priority.into_iter().map(String::from).collect(),
            })
        };
        let run = |changes: &[Change]| {
            changes.iter().fold(KeyState::default(), |s, c| decide(&s, c, &policy, None).state)
        };
        let reference = run(&changes).fields;
        let mut reversed = changes.clone();
        reversed.reverse();
        prop_assert_eq!(&run(&reversed).fields, &reference);
        prop_assert_eq!(&run(&shuffled).fields, &reference);
    }

    /// Acceptance: every change ends as exactly one of applied, conflict, echo or skip, and
    /// every field of it is accounted for.
    #[test]
    fn every_change_ends_as_exactly_one_outcome_and_no_field_vanishes(
        changes in proptest::collection::vec(arb_change(T0 - 5_000..T0 + 5_000), 1..12),
        policy in arb_policy(),
        ledger_hash in proptest::option::of(0..3u8),
    ) {
        let ledger = ledger_hash.map(|h| LedgerEntry { content_hash: format!("h{h}"), version: 1 });
        let mut state = KeyState::default();
        let mut outcomes = [0usize; 4];
        for c in &changes {
            let d = decide(&state, c, &policy, ledger.as_ref());
            prop_assert_eq!(d.fields.keys().collect::<Vec<_>>(), c.fields.keys().collect::<Vec<_>>());
            let held: Vec<&String> = d.fields.iter()
                .filter(|(_, o)| **o == FieldOutcome::Held).map(|(f, _)| f).collect();
            let any_applied = d.fields.values().any(|o| matches!(o, FieldOutcome::Applied { .. }));
            let slot = match &d.outcome {
                Outcome::Applied => {
                    prop_assert!(any_applied && held.is_empty());
                    0
                }
                Outcome::Conflict { pending } => {
                    let pending_fields: Vec<&String> = pending.fields.iter().map(|p| &p.field).collect();
                    prop_assert_eq!(pending_fields, held);
                    prop_assert_eq!(pending.raised_at_version, d.state.version);
                    1
                }
                Outcome::Echo => {
                    prop_assert!(is_echo(c, ledger.as_ref()));
                    prop_assert_eq!(&d.state, &state);
                    2
                }
                Outcome::Skipped => {
                    prop_assert!(!any_applied && held.is_empty());
                    3
                }
            };
            prop_assert_eq!(slot == 2, is_echo(c, ledger.as_ref()));
            // A new version exactly when the fields changed.
            let bumped = d.state.version == state.version + 1;
            prop_assert!(bumped || d.state.version == state.version);
            prop_assert_eq!(bumped, d.state.fields != state.fields);
            outcomes[slot] += 1;
            state = d.state;
        }
        prop_assert_eq!(outcomes.iter().sum::<usize>(), changes.len());
    }

    /// Acceptance: a manual conflict, once resolved, produces exactly one new version and
    /// leaves no held field undecided.
    #[test]
    fn resolved_manual_conflict_produces_exactly_one_new_version(
        before in proptest::collection::vec(arb_change(T0 - 5_000..T0 + 5_000), 1..6),
        incoming in arb_change(T0 - 5_000..T0 + 5_000),
        choices in proptest::collection::vec(0..3u8, FIELDS.len()),
    ) {
        let manual = Policy::uniform(Strategy::Manual);
        let state = before.iter().fold(KeyState::default(), |s, c| decide(&s, c, &manual, None).state);
        let d = decide(&state, &incoming, &manual, None);
        let Outcome::Conflict { pending } = &d.outcome else {
            return Ok(());
        };
        let fields: BTreeMap<String, FieldResolution> = pending.fields.iter().zip(&choices)
            .map(|(p, c)| (p.field.clone(), match c {
                0 => FieldResolution::TakeIncoming,
                1 => FieldResolution::KeepCurrent,
                _ => FieldResolution::Value(json!("edited")),
            }))
            .collect();
        let resolution = Resolution {
            resolved_by: "console:test".into(),
            resolved_at_ms: T0 + 60_000,
            fields: fields.clone(),
        };
        let resolved = resolve(&d.state, pending, &resolution).unwrap();
        prop_assert_eq!(resolved.version, d.state.version + 1);
        for p in &pending.fields {
            let expected = match &fields[&p.field] {
                FieldResolution::TakeIncoming => &p.incoming.value,
                FieldResolution::KeepCurrent => &p.current.value,
                FieldResolution::Value(v) => v,
            };
            prop_assert_eq!(&resolved.fields[&p.field].value, expected);
        }
        // Fields outside the conflict are untouched.
        for (f, s) in &d.state.fields {
            if !pending.fields.iter().any(|p| &p.field == f) {
                prop_assert_eq!(&resolved.fields[f], s);
            }
        }
        // Leaving any held field undecided is refused.
        if let Some(first) = fields.keys().next() {
            let mut partial = resolution.clone();
            partial.fields.remove(first);
            let refused = matches!(
                resolve(&d.state, pending, &partial),
                Err(ResolveError::MissingField { .. })
            );
            prop_assert!(refused);
        }
    }
}

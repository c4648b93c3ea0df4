//! # Conflict detection and resolution per key — pure logic, no Kafka
//!
//! The transform loop keeps, per canonical key, the last accepted version ([`KeyState`]: per
//! field the value, the connector it came from and the source's timestamp) in the compacted
//! `hub.state.<entity>` topic. For every incoming [`Change`] it calls [`decide`], which returns
//! the new state and a [`Decision`] recording what happened to every field. The loop then
//! writes the state, emits the canonical record when the state changed, and puts a
//! [`PendingConflict`] on `hub.conflicts` when one is held. [`resolve`] applies a person's
//! [`Resolution`] to a pending conflict.
//!
//! ## When a field conflicts
//! A field of an incoming change conflicts when its current value came from *another* source,
//! the values differ, and the change did not see the current value: its source time is older,
//! or both lie within [`Policy::concurrency_window_ms`]. A change from the *same* source never
//! conflicts: the newer one wins and an older one is stale. Equal values never conflict.
//!
//! ## Every change ends as exactly one [`Outcome`]
//! `Echo` (the hub's own write reported back: see [`is_echo`]), else `Conflict` if any field
//! is held for a person (the rest of the change is already applied), else `Applied` if any
//! field was written, else `Skipped` (nothing to write: stale, unchanged, lost to the current
//! value, or dropped by `skip`). Every field of the change appears in [`Decision::fields`].

mod state;
mod strategy;

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use state::{Change, FieldState, KeyState, LedgerEntry};
pub use strategy::{ConnectorPolicy, Policy, Strategy};

use strategy::merge_cmp;

/// What happened to one field of an incoming change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldOutcome {
    /// The incoming value was written. `won_conflict` when it overrode a conflicting value
    /// (by `source_wins` or `merge`).
    Applied { won_conflict: bool },
    /// The incoming value equals the current one.
    Unchanged,
    /// The current value stays.
    KeptCurrent { reason: KeptReason },
    /// Conflicting, strategy `manual`: held in the pending conflict.
    Held,
    /// Conflicting, strategy `skip`: dropped.
    Skipped,
    /// The whole change is an echo of the hub's own write.
    Echo,
}

/// Why the current value was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeptReason {
    /// Same source, older change.
    Stale,
    /// Conflicting, and `target_wins` or `merge` chose the current value.
    LostConflict,
}

/// The overall result of one incoming change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    /// Some fields are held for a person; any non-conflicting fields are already applied.
    Conflict {
        pending: PendingConflict,
    },
    Echo,
    Skipped,
}

/// One held field: the value in the state when the conflict was raised and the incoming one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingField {
    pub field: String,
    pub current: FieldState,
    pub incoming: FieldState,
}

/// The held part of a change, as it goes on `hub.conflicts` (the caller adds tenant, entity
/// and key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingConflict {
    pub source: String,
    pub source_ts: i64,
    /// Version of the key state right after the decision that raised the conflict.
    pub raised_at_version: u64,
    /// Held fields, in field-name order.
    pub fields: Vec<PendingField>,
}

/// The result of [`decide`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    /// One entry for every field of the change.
    pub fields: BTreeMap<String, FieldOutcome>,
    /// The new state: `version` is one more than before iff `fields` changed.
    pub state: KeyState,
}

impl Decision {
    /// Whether the key state changed (and so has a new version to write and emit).
    pub fn state_changed(&self, before: &KeyState) -> bool {
        self.state.version != before.version
    }
}

/// Whether `change` is the hub's own last write to its source reported back: its content
/// hash equals the sink's write-ledger hash for that source and key.
pub fn is_echo(change: &Change, ledger: Option<&LedgerEntry>) -> bool {
    matches!(
        (&change.content_hash, ledger),
        (Some(hash), Some(entry)) if *hash == entry.content_hash
    )
}

/// Decides what an incoming change does to a key's state. `ledger` is the sink's last write
/// of this key to the change's source, if any (for echo suppression).
pub fn decide(
    state: &KeyState,
    change: &Change,
    policy: &Policy,
    ledger: Option<&LedgerEntry>,
) -> Decision {
    if is_echo(change, ledger) {
        return Decision {
            outcome: Outcome::Echo,
            fields: change
                .fields
                .keys()
                .map(|f| (f.clone(), FieldOutcome::Echo))
                .collect(),
            state: state.clone(),
        };
    }

    let mut next = state.fields.clone();
    let mut fields = BTreeMap::new();
    let mut held = Vec::new();
    for (field, value) in &change.fields {
        let incoming = FieldState {
            value: value.clone(),
            source: change.source.clone(),
            source_ts: change.source_ts,
        };
        let strategy = policy.strategy_for(&change.source, field);
        let outcome = match state.fields.get(field) {
            None => FieldOutcome::Applied {
                won_conflict: false,
            },
            Some(current) if current.value == *value => {
                // Under merge the provenance must also be the maximum of all candidates, or a
                // later conflict would be judged against whichever equal value came first.
                if let Strategy::Merge { priority } = strategy
                    && merge_cmp(priority, &incoming, current) == Ordering::Greater
                {
                    next.insert(field.clone(), incoming.clone());
                }
                FieldOutcome::Unchanged
            }
            Some(current) if current.source == change.source => {
                // Same source: later time wins; equal times fall back to the value text, the
                // same tie-break as merge, so replays settle the same way in any order.
                if merge_cmp(&[], &incoming, current) == Ordering::Greater {
                    FieldOutcome::Applied {
                        won_conflict: false,
                    }
                } else {
                    FieldOutcome::KeptCurrent {
                        reason: KeptReason::Stale,
                    }
                }
            }
            Some(current) => {
                let saw_current = change.source_ts
                    > current
                        .source_ts
                        .saturating_add(policy.concurrency_window_ms);
                if saw_current {
                    FieldOutcome::Applied {
                        won_conflict: false,
                    }
                } else {
                    match strategy {
                        Strategy::SourceWins => FieldOutcome::Applied { won_conflict: true },
                        Strategy::TargetWins => FieldOutcome::KeptCurrent {
                            reason: KeptReason::LostConflict,
                        },
                        Strategy::Merge { priority } => {
                            if merge_cmp(priority, &incoming, current) == Ordering::Greater {
                                FieldOutcome::Applied { won_conflict: true }
                            } else {
                                FieldOutcome::KeptCurrent {
                                    reason: KeptReason::LostConflict,
                                }
                            }
                        }
                        Strategy::Manual => {
                            held.push(PendingField {
                                field: field.clone(),
                                current: current.clone(),
                                incoming: incoming.clone(),
                            });
                            FieldOutcome::Held
                        }
                        Strategy::Skip => FieldOutcome::Skipped,
                    }
                }
            }
        };
        if matches!(outcome, FieldOutcome::Applied { .. }) {
            next.insert(field.clone(), incoming);
        }
        fields.insert(field.clone(), outcome);
    }

    let changed = next != state.fields;
    let new_state = KeyState {
        fields: next,
        version: state.version + u64::from(changed),
    };
    let outcome = if !held.is_empty() {
        Outcome::Conflict {
            pending: PendingConflict {
                source: change.source.clone(),
                source_ts: change.source_ts,
                raised_at_version: new_state.version,
                fields: held,
            },
        }
    } else if fields
        .values()
        .any(|o| matches!(o, FieldOutcome::Applied { .. }))
    {
        Outcome::Applied
    } else {
        Outcome::Skipped
    };
    Decision {
        outcome,
        fields,
        state: new_state,
    }
}

/// A person's decision on a pending conflict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// Who resolved it (e.g. `console:jane@dealer.example`); becomes the source of fields
    /// resolved with an edited [`FieldResolution::Value`].
    pub resolved_by: String,
    /// When, epoch milliseconds; the source time of edited values.
    pub resolved_at_ms: i64,
    /// One entry for every held field.
    pub fields: BTreeMap<String, FieldResolution>,
}

/// How one held field is settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldResolution {
    TakeIncoming,
    KeepCurrent,
    Value(Value),
}

/// Why a resolution could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("the conflict on field `{field}` has no decision; choose a value for every field")]
    MissingField { field: String },
    #[error("field `{field}` is not part of this conflict")]
    UnknownField { field: String },
    #[error("field `{field}` has changed since the conflict was raised; review the conflict again")]
    ChangedSince { field: String },
}

impl ResolveError {
    /// Stable code for the console and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingField { .. } => "conflict.resolution_missing_field",
            Self::UnknownField { .. } => "conflict.resolution_unknown_field",
            Self::ChangedSince { .. } => "conflict.changed_since_raised",
        }
    }
}

/// Applies a person's resolution of `pending` to the key's current state. Produces exactly
/// one new version — also when every field keeps its current value, so the decision is
/// emitted and sinks bring the disagreeing system back in line.
pub fn resolve(
    state: &KeyState,
    pending: &PendingConflict,
    resolution: &Resolution,
) -> Result<KeyState, ResolveError> {
    if let Some(field) = resolution
        .fields
        .keys()
        .find(|f| !pending.fields.iter().any(|p| &p.field == *f))
    {
        return Err(ResolveError::UnknownField {
            field: field.clone(),
        });
    }
    let mut next = state.fields.clone();
    for held in &pending.fields {
        let field = &held.field;
        let Some(choice) = resolution.fields.get(field) else {
            return Err(ResolveError::MissingField {
                field: field.clone(),
            });
        };
        // A later accepted change to the field means the person decided on outdated values.
        if state.fields.get(field) != Some(&held.current) {
            return Err(ResolveError::ChangedSince {
                field: field.clone(),
            });
        }
        let resolved = match choice {
            FieldResolution::TakeIncoming => held.incoming.clone(),
            FieldResolution::KeepCurrent => held.current.clone(),
            FieldResolution::Value(value) => FieldState {
                value: value.clone(),
                source: resolution.resolved_by.clone(),
                source_ts: resolution.resolved_at_ms,
            },
        };
        next.insert(field.clone(), resolved);
    }
    Ok(KeyState {
        fields: next,
        version: state.version + 1,
    })
}

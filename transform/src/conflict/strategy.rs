//! The order `merge` settles conflicts by. The strategies and policies themselves are part
//! of the topology (`hub_topology::conflict`).

use std::cmp::Ordering;

pub use hub_topology::conflict::{ConnectorPolicy, Policy, Strategy};

use super::state::FieldState;

/// The total order `merge` settles conflicts by: source priority, then source time, then
/// source id, then the value's JSON text. Being a total order over (source, time, value) is
/// what makes merge order-independent: the surviving field is the maximum of all candidates.
pub(crate) fn merge_cmp(priority: &[String], a: &FieldState, b: &FieldState) -> Ordering {
    let rank = |s: &str| {
        // Listed connectors outrank unlisted ones; earlier in the list outranks later.
        priority
            .iter()
            .position(|p| p == s)
            .map_or(0, |i| priority.len() - i)
    };
    rank(&a.source)
        .cmp(&rank(&b.source))
        .then(a.source_ts.cmp(&b.source_ts))
        .then_with(|| a.source.cmp(&b.source))
        .then_with(|| a.value.to_string().cmp(&b.value.to_string()))
}

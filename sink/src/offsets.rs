//! Which consumed messages were applied already: the SQL sink's offsets live in its database,
//! and Kafka's committed offset may lag them (it is committed after the database, as a hint).
//! On first seeing a partition the runner loads the stored next offset; messages below it are
//! skipped. Pure logic, no I/O.

use std::collections::HashMap;

/// A consumed position: everything below `next_offset` on `topic`/`partition` is done.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// Whether the message at `offset` was applied already, given the stored next offset.
pub fn already_applied(stored_next_offset: Option<i64>, offset: i64) -> bool {
    stored_next_offset.is_some_and(|next| offset < next)
}

/// What the runner knows of each partition it owns: the stored next offset (`None` when the
/// database has none), loaded on first sight and cleared when the partition is revoked.
#[derive(Debug, Default, Clone)]
pub struct OffsetCache {
    next: HashMap<(String, i32), Option<i64>>,
}

/// What to do with one consumed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Not seen by the database yet: process it.
    Apply,
    /// Below the stored offset: applied already, skip it.
    AlreadyApplied,
    /// The partition's stored offset is not loaded yet.
    Unknown,
}

impl OffsetCache {
    pub fn is_loaded(&self, topic: &str, partition: i32) -> bool {
        self.next.contains_key(&(topic.to_string(), partition))
    }

    /// Records the stored next offset of a partition, as read from the database.
    pub fn load(&mut self, topic: &str, partition: i32, stored_next_offset: Option<i64>) {
        self.next
            .insert((topic.to_string(), partition), stored_next_offset);
    }

    /// Moves a loaded partition forward after a commit (never backwards).
    pub fn advance(&mut self, topic: &str, partition: i32, next_offset: i64) {
        if let Some(slot) = self.next.get_mut(&(topic.to_string(), partition)) {
            *slot = Some(slot.map_or(next_offset, |n| n.max(next_offset)));
        }
    }

    /// Forgets a partition (it was revoked; another consumer may move it on).
    pub fn revoke(&mut self, topic: &str, partition: i32) {
        self.next.remove(&(topic.to_string(), partition));
    }

    pub fn clear(&mut self) {
        self.next.clear();
    }

    pub fn admit(&self, topic: &str, partition: i32, offset: i64) -> Admission {
        match self.next.get(&(topic.to_string(), partition)) {
            None => Admission::Unknown,
            Some(stored) if already_applied(*stored, offset) => Admission::AlreadyApplied,
            Some(_) => Admission::Apply,
        }
    }
}

/// The positions a batch reaches: per (topic, partition), the highest offset + 1.
pub fn positions_after<'a>(
    messages: impl IntoIterator<Item = (&'a str, i32, i64)>,
) -> Vec<Position> {
    let mut max: HashMap<(&str, i32), i64> = HashMap::new();
    for (topic, partition, offset) in messages {
        let slot = max.entry((topic, partition)).or_insert(offset);
        *slot = (*slot).max(offset);
    }
    let mut out: Vec<Position> = max
        .into_iter()
        .map(|((topic, partition), offset)| Position {
            topic: topic.to_string(),
            partition,
            next_offset: offset + 1,
        })
        .collect();
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_below_the_stored_offset_are_already_applied() {
        assert!(!already_applied(None, 0));
        assert!(already_applied(Some(10), 9));
        assert!(!already_applied(Some(10), 10));

        let mut cache = OffsetCache::default();
        assert_eq!(cache.admit("t", 0, 5), Admission::Unknown);
        cache.load("t", 0, Some(10));
        cache.load("t", 1, None);
        assert_eq!(cache.admit("t", 0, 5), Admission::AlreadyApplied);
        assert_eq!(cache.admit("t", 0, 10), Admission::Apply);
        assert_eq!(cache.admit("t", 1, 0), Admission::Apply);
        cache.advance("t", 1, 3);
        assert_eq!(cache.admit("t", 1, 2), Admission::AlreadyApplied);
        cache.advance("t", 1, 1);
        assert_eq!(
            cache.admit("t", 1, 2),
            Admission::AlreadyApplied,
            "never moves back"
        );
        cache.revoke("t", 0);
        assert_eq!(cache.admit("t", 0, 5), Admission::Unknown);
        cache.advance("t", 0, 100);
        assert!(
            !cache.is_loaded("t", 0),
            "advance does not load a revoked partition"
        );
    }

    #[test]
    fn positions_are_the_highest_offset_plus_one_per_partition() {
        let p = positions_after([("a", 0, 5), ("a", 0, 3), ("a", 1, 0), ("b", 0, 9)]);
        assert_eq!(
            p,
            vec![
                Position {
                    topic: "a".into(),
                    partition: 0,
                    next_offset: 6
                },
                Position {
                    topic: "a".into(),
                    partition: 1,
                    next_offset: 1
                },
                Position {
                    topic: "b".into(),
                    partition: 0,
                    next_offset: 10
                },
            ]
        );
    }
}

//! Reading table topics (`<ns>.state.<entity>`, `<ns>.xref`, `<ns>.ledger`) back into memory.
//!
//! A stage owns the table partitions whose numbers match its input partitions (the tables
//! are keyed like the inputs and have as many partitions, and the consumer group uses the
//! `range` assignor, which hands partition *n* of every input topic to the same member). On
//! every rebalance it rebuilds them: [`read_to_end`] reads them from the beginning up to the
//! end as of the call, `read_committed`, so an aborted write of a previous owner is never
//! taken for the truth. While it owns them, only it writes them, so it keeps them current
//! from its own output. The ledger is written by sinks, so a [`Follower`] keeps reading it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// One table record: topic, key, value (`None` for a tombstone).
pub(crate) type TableRecord = (String, String, Option<Vec<u8>>);

fn table_consumer(bootstrap: &str) -> Result<BaseConsumer, KafkaError> {
    crate::runner::client_config()
        .set("bootstrap.servers", bootstrap)
        // Assigned, never subscribed: the group id is only a name librdkafka wants.
        .set("group.id", "hub-table-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        // The position says when the end is reached; end-of-partition events would only be
        // logged as errors by librdkafka's default context.
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
}

/// Reads `partitions` of every topic in `topics` from the beginning to their end as of now.
/// Fails after `timeout` (a previous owner's transaction still open that long is broken).
pub(crate) fn read_to_end(
    bootstrap: &str,
    topics: &[String],
    partitions: &BTreeSet<i32>,
    timeout: Duration,
) -> Result<Vec<TableRecord>, KafkaError> {
    let mut out = Vec::new();
    if partitions.is_empty() {
        return Ok(out);
    }
    let consumer = table_consumer(bootstrap)?;
    let mut follower = Follower::assign(consumer, topics, partitions)?;
    follower.catch_up(timeout, |r| out.push(r))?;
    Ok(out)
}

/// A reader that stays assigned to some table partitions and catches up on demand.
pub(crate) struct Follower {
    consumer: BaseConsumer,
    /// (topic, partition) → next offset to read.
    positions: Vec<(String, i32, i64)>,
}

impl Follower {
    pub(crate) fn new(
        bootstrap: &str,
        topics: &[String],
        partitions: &BTreeSet<i32>,
    ) -> Result<Self, KafkaError> {
        Self::assign(table_consumer(bootstrap)?, topics, partitions)
    }

    fn assign(
        consumer: BaseConsumer,
        topics: &[String],
        partitions: &BTreeSet<i32>,
    ) -> Result<Self, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        let mut positions = Vec::new();
        for t in topics {
            for p in partitions {
                tpl.add_partition_offset(t, *p, Offset::Beginning)?;
                positions.push((t.clone(), *p, 0));
            }
        }
        consumer.assign(&tpl)?;
        Ok(Follower {
            consumer,
            positions,
        })
    }

    /// Reads until every partition reached the end it had when this call began; fails after
    /// `timeout`.
    pub(crate) fn catch_up(
        &mut self,
        timeout: Duration,
        each: impl FnMut(TableRecord),
    ) -> Result<(), KafkaError> {
        self.read(timeout, true, each)
    }

    /// Like [`catch_up`](Self::catch_up), but gives up quietly after `timeout`: for tables
    /// others write in transactions, whose end may wait for their commit.
    pub(crate) fn catch_up_within(
        &mut self,
        timeout: Duration,
        each: impl FnMut(TableRecord),
    ) -> Result<(), KafkaError> {
        self.read(timeout, false, each)
    }

    fn read(
        &mut self,
        timeout: Duration,
        strict: bool,
        mut each: impl FnMut(TableRecord),
    ) -> Result<(), KafkaError> {
        let deadline = Instant::now() + timeout;
        let mut targets = Vec::with_capacity(self.positions.len());
        for (t, p, _) in &self.positions {
            let (_, high) =
                self.consumer
                    .fetch_watermarks(t, *p, timeout.min(Duration::from_secs(10)))?;
            targets.push(high);
        }
        loop {
            // The end of a partition written in transactions is a commit marker, which is
            // never delivered: the consumer's position (past it) says when the end is reached.
            if let Ok(pos) = self.consumer.position() {
                for (t, p, at) in &mut self.positions {
                    if let Some(Offset::Offset(o)) = pos.find_partition(t, *p).map(|e| e.offset()) {
                        *at = (*at).max(o);
                    }
                }
            }
            if self
                .positions
                .iter()
                .zip(&targets)
                .all(|((_, _, at), high)| at >= high)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return if strict {
                    Err(KafkaError::Global(RDKafkaErrorCode::OperationTimedOut))
                } else {
                    Ok(())
                };
            }
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    let key = m
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default();
                    let topic = m.topic().to_string();
                    let (p, o) = (m.partition(), m.offset());
                    if let Some(e) = self
                        .positions
                        .iter_mut()
                        .find(|(t, q, _)| *t == topic && *q == p)
                    {
                        e.2 = e.2.max(o + 1);
                    }
                    each((topic, key, m.payload().map(<[u8]>::to_vec)));
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => return Err(e),
            }
        }
    }
}

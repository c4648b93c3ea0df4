//! The SQL store on SQLite and (with `HUB_TEST_PG_URL`) PostgreSQL: upserts by version, the
//! offsets that make the SQL sink exactly-once, the write ledger, and write throughput.

mod common;

use std::time::Instant;

use common::{Backend, customer, customer_doc, customers, unique};
use hub_schemas::Entity;
use hub_sink::offsets::{Admission, OffsetCache, Position};
use hub_sink::{CanonicalRecord, SqlStore, UpsertOutcome};
use serde_json::json;

async fn applied_count(store: &SqlStore, tenant: &str, key: &str) -> i64 {
    let row = store
        .row(Entity::Customer, tenant, key)
        .await
        .unwrap()
        .expect("row exists");
    row["hub_applied_count"].as_i64().unwrap()
}

async fn upsert_then_stale_version_is_ignored(b: Backend) {
    let (s, t, c) = (&b.store, unique("t"), unique("consumer"));
    let out = s
        .write_batch(&c, &[customer(&t, "c-1", 2_000, 0)])
        .await
        .unwrap();
    assert_eq!(out.outcomes, vec![UpsertOutcome::Written]);

    let mut older = customer(&t, "c-1", 1_000, 1);
    older.doc["first_name"] = json!("Old");
    let out = s.write_batch(&c, &[older]).await.unwrap();
    assert_eq!(out.outcomes, vec![UpsertOutcome::Stale]);

    let row = s.row(Entity::Customer, &t, "c-1").await.unwrap().unwrap();
    assert_eq!(row["first_name"], json!("Ana"));
    assert_eq!(row["source_updated_at"], json!(2_000));
    assert_eq!(row["hub_applied_count"], json!(1));
    assert_eq!(row["hub_offset"], json!(0));
    assert_eq!(
        row["address"]["city"],
        json!("Austin"),
        "nested records are JSON"
    );
    assert_eq!(row["email_opt_in"], json!(true));
    assert_eq!(row["date_of_birth"], json!(7000));

    let mut newer = customer(&t, "c-1", 3_000, 2);
    newer.doc["first_name"] = json!("Ana Maria");
    assert_eq!(s.write_batch(&c, &[newer]).await.unwrap().written(), 1);
    let row = s.row(Entity::Customer, &t, "c-1").await.unwrap().unwrap();
    assert_eq!(row["first_name"], json!("Ana Maria"));
    assert_eq!(row["hub_applied_count"], json!(2));
    assert_eq!(
        s.next_offsets(&c, "hub.canonical.customer", 0)
            .await
            .unwrap(),
        Some(3)
    );
}
on_both_backends!(
    upsert_then_stale_version_is_ignored,
    super::upsert_then_stale_version_is_ignored
);

/// The runner's filter: after a batch is written, its stored offsets mark every message of
/// the same batch as applied already, and the next message as new.
async fn replayed_batch_is_skipped_by_the_offset_filter(b: Backend) {
    let (s, t, c) = (&b.store, unique("t"), unique("consumer"));
    let batch = customers(&t, 10, 1_000, 100);
    s.write_batch(&c, &batch).await.unwrap();

    let mut cache = OffsetCache::default();
    assert_eq!(
        cache.admit("hub.canonical.customer", 0, 100),
        Admission::Unknown
    );
    let stored = s
        .next_offsets(&c, "hub.canonical.customer", 0)
        .await
        .unwrap();
    assert_eq!(stored, Some(110));
    cache.load("hub.canonical.customer", 0, stored);
    for r in &batch {
        assert_eq!(
            cache.admit(&r.topic, r.partition, r.offset),
            Admission::AlreadyApplied
        );
    }
    assert_eq!(
        cache.admit("hub.canonical.customer", 0, 110),
        Admission::Apply
    );
    assert_eq!(
        s.next_offsets(&c, "hub.canonical.customer", 1)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.next_offsets("another-group", "hub.canonical.customer", 0)
            .await
            .unwrap(),
        None
    );
}
on_both_backends!(
    replayed_batch_is_skipped_by_the_offset_filter,
    super::replayed_batch_is_skipped_by_the_offset_filter
);

/// Even without the runner's filter, the store recognises a replay by its offsets inside the
/// transaction: nothing is applied twice.
async fn replayed_batch_keeps_applied_count_at_one(b: Backend) {
    let (s, t, c) = (&b.store, unique("t"), unique("consumer"));
    let batch = customers(&t, 50, 1_000, 0);
    assert_eq!(s.write_batch(&c, &batch).await.unwrap().written(), 50);
    let again = s.write_batch(&c, &batch).await.unwrap();
    assert_eq!(again.already_applied(), 50);
    for i in [0, 25, 49] {
        assert_eq!(applied_count(s, &t, &format!("c-{i}")).await, 1);
    }
    assert_eq!(s.count_rows(Entity::Customer, &t).await.unwrap(), 50);
    // A second consumer group has its own offsets: for it the same records are new, and the
    // count shows the double application.
    let other = unique("consumer");
    assert_eq!(
        s.write_batch(&other, &batch[..1]).await.unwrap().written(),
        1
    );
    assert_eq!(applied_count(s, &t, "c-0").await, 2);
}
on_both_backends!(
    replayed_batch_keeps_applied_count_at_one,
    super::replayed_batch_keeps_applied_count_at_one
);

/// Two writers (a zombie and the partition's new owner) apply the same batch at once: one
/// applies it, the other finds it applied.
async fn concurrent_writers_apply_a_batch_once(b: Backend) {
    let (t, c) = (unique("t"), unique("consumer"));
    let other = SqlStore::connect(&b.url).await.unwrap();
    let batch = customers(&t, 200, 1_000, 0);
    let (x, y) = tokio::join!(
        b.store.write_batch(&c, &batch),
        other.write_batch(&c, &batch)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.written() + y.written(), 200);
    assert_eq!(x.already_applied() + y.already_applied(), 200);
    assert_eq!(applied_count(&b.store, &t, "c-199").await, 1);
}
on_both_backends!(
    concurrent_writers_apply_a_batch_once,
    super::concurrent_writers_apply_a_batch_once
);

async fn same_key_twice_in_a_batch_applies_in_order(b: Backend) {
    let (s, t, c) = (&b.store, unique("t"), unique("consumer"));
    let mut v2 = customer(&t, "k", 2_000, 1);
    v2.doc["first_name"] = json!("Second");
    let out = s
        .write_batch(&c, &[customer(&t, "k", 1_000, 0), v2])
        .await
        .unwrap();
    assert_eq!(
        out.outcomes,
        vec![UpsertOutcome::Written, UpsertOutcome::Written]
    );
    let row = s.row(Entity::Customer, &t, "k").await.unwrap().unwrap();
    assert_eq!(
        (row["first_name"].clone(), row["hub_applied_count"].clone()),
        (json!("Second"), json!(2))
    );

    let out = s
        .write_batch(
            &c,
            &[customer(&t, "j", 2_000, 2), customer(&t, "j", 1_000, 3)],
        )
        .await
        .unwrap();
    assert_eq!(
        out.outcomes,
        vec![UpsertOutcome::Written, UpsertOutcome::Stale]
    );
}
on_both_backends!(
    same_key_twice_in_a_batch_applies_in_order,
    super::same_key_twice_in_a_batch_applies_in_order
);

async fn deletion_is_kept_as_a_soft_deleted_row(b: Backend) {
    let (s, t, c) = (&b.store, unique("t"), unique("consumer"));
    s.write_batch(&c, &[customer(&t, "c-1", 1_000, 0)])
        .await
        .unwrap();
    let mut doc = customer_doc(&t, "c-1", 2_000, None);
    doc["deleted"] = json!(true);
    for f in ["last_name", "email", "phone", "address"] {
        doc[f] = json!(null);
    }
    let tombstone = CanonicalRecord::from_json("hub.canonical.customer", 0, 1, doc).unwrap();
    assert!(tombstone.deleted);
    assert_eq!(s.write_batch(&c, &[tombstone]).await.unwrap().written(), 1);
    let row = s.row(Entity::Customer, &t, "c-1").await.unwrap().unwrap();
    assert_eq!(row["deleted"], json!(true));
    assert_eq!(row["source_updated_at"], json!(2_000));
    assert_eq!(
        row["first_name"],
        json!("Ana"),
        "a tombstone's nulls keep the last values"
    );
    assert_eq!(row["address"]["city"], json!("Austin"));
}
on_both_backends!(
    deletion_is_kept_as_a_soft_deleted_row,
    super::deletion_is_kept_as_a_soft_deleted_row
);

async fn positions_cover_unwritten_messages_and_never_move_back(b: Backend) {
    let (s, t, c) = (&b.store, unique("t"), unique("consumer"));
    let topic = "hub.canonical.customer";
    let pos = |p: i32, n: i64| Position {
        topic: topic.into(),
        partition: p,
        next_offset: n,
    };
    s.write_batch_at(&c, &[customer(&t, "a", 1, 3)], &[pos(0, 10), pos(2, 7)])
        .await
        .unwrap();
    assert_eq!(s.next_offsets(&c, topic, 0).await.unwrap(), Some(10));
    assert_eq!(s.next_offsets(&c, topic, 2).await.unwrap(), Some(7));
    s.write_batch_at(&c, &[], &[pos(0, 4)]).await.unwrap();
    assert_eq!(
        s.next_offsets(&c, topic, 0).await.unwrap(),
        Some(10),
        "never backwards"
    );
}
on_both_backends!(
    positions_cover_unwritten_messages_and_never_move_back,
    super::positions_cover_unwritten_messages_and_never_move_back
);

/// Every entity's generated table takes a record of that entity (envelope only; arrays empty).
async fn every_entity_table_takes_its_records(b: Backend) {
    let (s, t, c) = (&b.store, unique("t"), unique("consumer"));
    for (i, e) in Entity::ALL.into_iter().enumerate() {
        let mut doc = json!({
            "tenant_id": t, "key": "k-1", "source_vendor": "cdk", "source_connector": "cdk-1",
            "source_entity": "X", "external_id": null, "source_updated_at": 5, "received_at": 6,
            "ingest_id": "i", "deleted": false
        });
        if e == Entity::RepairOrder {
            doc["lines"] = json!([{"op_code": "LOF"}]);
        }
        if e == Entity::ServiceAppointment {
            doc["services"] = json!(["oil change"]);
        }
        let r = CanonicalRecord::from_json(&e.canonical_topic(), 0, i as i64, doc).unwrap();
        assert_eq!(s.write_batch(&c, &[r]).await.unwrap().written(), 1, "{e}");
        let row = s.row(e, &t, "k-1").await.unwrap().unwrap();
        assert_eq!(row["source_vendor"], json!("cdk"), "{e}");
    }
    let ro = s
        .row(Entity::RepairOrder, &t, "k-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ro["lines"][0]["op_code"], json!("LOF"));
}
on_both_backends!(
    every_entity_table_takes_its_records,
    super::every_entity_table_takes_its_records
);

async fn reconnecting_keeps_tables_and_offsets(b: Backend) {
    let (t, c) = (unique("t"), unique("consumer"));
    b.store
        .write_batch(&c, &customers(&t, 3, 1, 0))
        .await
        .unwrap();
    let again = SqlStore::connect(&b.url).await.unwrap();
    assert_eq!(again.count_rows(Entity::Customer, &t).await.unwrap(), 3);
    assert_eq!(
        again
            .next_offsets(&c, "hub.canonical.customer", 0)
            .await
            .unwrap(),
        Some(3)
    );
}
on_both_backends!(
    reconnecting_keeps_tables_and_offsets,
    super::reconnecting_keeps_tables_and_offsets
);

async fn ledger_makes_a_replay_a_no_op(b: Backend) {
    let (s, t, target) = (&b.store, unique("t"), unique("hook"));
    let batch = customers(&t, 5, 1_000, 0);
    assert_eq!(
        s.ledger_pending(&target, &batch).await.unwrap(),
        vec![true; 5]
    );
    let refs: Vec<&CanonicalRecord> = batch.iter().collect();
    s.ledger_record(&target, &refs).await.unwrap();
    assert_eq!(
        s.ledger_pending(&target, &batch).await.unwrap(),
        vec![false; 5],
        "a replay sends nothing"
    );

    // A redelivery through another ingest (new received_at / ingest_id) is the same content.
    let mut redelivered = batch[0].clone();
    redelivered.doc["received_at"] = json!(99_999);
    redelivered.doc["ingest_id"] = json!("ing-other");
    // A newer version with new content must go; an older one must not.
    let mut newer = customer(&t, "c-1", 2_000, 9);
    newer.doc["first_name"] = json!("Changed");
    let mut older = customer(&t, "c-2", 500, 10);
    older.doc["first_name"] = json!("Old");
    // Two identical records in one batch: only the first goes.
    let fresh = customer(&t, "c-new", 1_000, 11);
    let pending = s
        .ledger_pending(&target, &[redelivered, newer, older, fresh.clone(), fresh])
        .await
        .unwrap();
    assert_eq!(pending, vec![false, true, false, true, false]);

    let entry = s
        .ledger_entry(&target, &t, Entity::Customer, "c-0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.version, 1_000);
    assert_eq!(entry.content_hash, batch[0].content_hash());
    assert!(
        s.ledger_entry("other-target", &t, Entity::Customer, "c-0")
            .await
            .unwrap()
            .is_none()
    );
}
on_both_backends!(
    ledger_makes_a_replay_a_no_op,
    super::ledger_makes_a_replay_a_no_op
);

/// Not a gate: prints how fast 20,000 records go in, in batches of 1,000.
async fn write_throughput_is_reported(b: Backend) {
    let (s, t, c) = (&b.store, unique("t"), unique("consumer"));
    let total = 20_000;
    let batch_size = 1_000;
    let start = Instant::now();
    for n in 0..total / batch_size {
        let first = (n * batch_size) as i64;
        let batch: Vec<CanonicalRecord> = (0..batch_size)
            .map(|i| {
                customer(
                    &t,
                    &format!("c-{}", first + i as i64),
                    1_000,
                    first + i as i64,
                )
            })
            .collect();
        assert_eq!(
            s.write_batch(&c, &batch).await.unwrap().written(),
            batch_size
        );
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "write throughput ({:?}): {total} customer records in batches of {batch_size}: {secs:.2} s, {:.0} records/s",
        s.backend(),
        total as f64 / secs
    );
    assert_eq!(
        s.count_rows(Entity::Customer, &t).await.unwrap(),
        total as i64
    );
}
on_both_backends!(
    write_throughput_is_reported,
    super::write_throughput_is_reported
);

#[test]
fn ddl_is_printed_for_both_backends() {
    for backend in [hub_sink::Backend::Sqlite, hub_sink::Backend::Postgres] {
        let ddl = SqlStore::ddl(backend);
        assert_eq!(ddl.len(), 2 + Entity::ALL.len());
        if std::env::var("HUB_PRINT_DDL").is_ok() {
            println!("-- {backend:?}\n{};\n", ddl.join(";\n\n"));
        }
    }
}

//! What one transform worker can do per core: a Salesforce Contact with 20 mapped fields is
//! parsed, mapped, validated and encoded to Confluent wire bytes (magic byte, schema id,
//! Avro body). Throughput is one record per iteration, so criterion's `elem/s` is records per
//! second on one core. Kafka is left out; the codec's schema id is cached after the first
//! record, as it is in the running hub.
//!
//! `cargo bench -p hub-transform --bench map_encode`
//!
//! First figures (shared 2-core dev machine, other builds running): map + validate 82 µs
//! (~12,200 records/s/core), map + validate + encode 92 µs (~10,800 records/s/core). The three
//! `phone_e164` fields are about two thirds of the mapping time (the same record without
//! phones maps in ~31 µs).

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hub_schemas::{Codec, RawChange, registry::SchemaRegistry};
use hub_topology::Topology;
use hub_transform::mapping::map_payload;
use serde_json::{Value, json};

/// The bench's own topology: the demo's Contact mapping widened to 20 canonical fields.
const TOPOLOGY: &str = r#"
version: 1
tenants:
  - id: bench-motors
    connectors:
      - id: sf-main
        vendor: salesforce
        webhook_secret: bench-salesforce-webhook-secret
        entities:
          - vendor_entity: Contact
            canonical: customer
            external_id: /Id
            updated_at: /LastModifiedDate
            deleted: /IsDeleted
            fields:
              first_name: { from: /FirstName, transform: [trim] }
              last_name: { from: /LastName, transform: [trim], required: true }
              email: { from: /Email, transform: [trim, lowercase], format: email }
              phone: { from: /Phone, transform: [phone_e164], format: e164 }
              mobile_phone: { from: /MobilePhone, transform: [phone_e164], format: e164 }
              work_phone: { from: /OtherPhone, transform: [phone_e164], format: e164 }
              address.line1: { from: /MailingStreet, transform: [trim] }
              address.line2: { from: /Mailing_Unit__c, transform: [trim] }
              address.city: { from: /MailingCity, transform: [trim] }
              address.state: { from: /MailingState, transform: [trim, uppercase], format: us_state }
              address.postal_code: { from: /MailingPostalCode, transform: [trim], format: us_zip }
              address.country: { from: /MailingCountry, default: US }
              driver_license_number: { from: /Driver_License__c, transform: [trim, uppercase] }
              driver_license_state: { from: /Driver_License_State__c, transform: [trim, uppercase], format: us_state }
              preferred_contact: { from: /Preferred_Contact__c, transform: [trim, lowercase] }
              email_opt_in: { from: /Email_Opt_In__c, transform: [boolean] }
              sms_opt_in: { from: /SMS_Opt_In__c, transform: [boolean] }
              consent_updated_at: { from: /Consent_Date__c, transform: [timestamp_ms] }
              preferred_language: { from: /Languages__c, transform: [trim, lowercase] }
              created_at: { from: /CreatedDate, transform: [timestamp_ms] }
"#;

fn contact() -> Value {
    json!({
        "attributes": {"type": "Contact", "url": "/services/data/v60.0/sobjects/Contact/003Dn00000A1b2cIAB"},
        "Id": "003Dn00000A1b2cIAB",
        "FirstName": " Pat ",
        "LastName": "Lee",
        "Email": " Pat.Lee@Example.com",
        "Phone": "(512) 555-0143",
        "MobilePhone": "512.555.0199",
        "OtherPhone": "+1 737 555 0118",
        "MailingStreet": "100 Congress Ave",
        "Mailing_Unit__c": "Suite 400",
        "MailingCity": "Austin",
        "MailingState": "tx",
        "MailingPostalCode": "78701",
        "MailingCountry": "US",
        "Driver_License__c": "tx12345678",
        "Driver_License_State__c": "TX",
        "Preferred_Contact__c": "SMS",
        "Email_Opt_In__c": true,
        "SMS_Opt_In__c": "yes",
        "Consent_Date__c": "2024-04-15T09:30:00.000+0000",
        "Languages__c": "EN",
        "CreatedDate": "2024-04-15T09:30:00.000+0000",
        "LastModifiedDate": "2024-05-01T12:00:00.000+0000",
        "IsDeleted": false
    })
}

fn raw(payload: &Value) -> RawChange {
    RawChange {
        tenant: "bench-motors".into(),
        connector: "sf-main".into(),
        vendor: "salesforce".into(),
        vendor_entity: "Contact".into(),
        external_id: Some("003Dn00000A1b2cIAB".into()),
        operation: "upsert".into(),
        source_ts: 1_714_564_800_000,
        received_at: 1_714_564_801_000,
        ingest_id: "bench".into(),
        content_type: "application/json".into(),
        payload: payload.to_string(),
    }
}

/// A codec against an in-memory registry served on loopback.
fn codec(rt: &tokio::runtime::Runtime) -> Codec {
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let app = hub_schemas::registry::router(Arc::new(SchemaRegistry::in_memory()));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    });
    Codec::new(&url)
}

fn map_encode(c: &mut Criterion) {
    let topology: Topology =
        hub_topology::parse_with_env(TOPOLOGY, &|_| None).expect("bench topology parses");
    let mapping = topology.tenants[0].connectors[0].entities[0].clone();
    assert_eq!(mapping.fields.len(), 20);
    let raw = raw(&contact());
    // One worker serves the registry; the measured loop runs on the bench's own thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let codec = codec(&rt);

    let map = |raw: &RawChange| {
        // map_payload, not dry_run: the payload is parsed once, as the map stage does.
        let payload: Value = serde_json::from_str(&raw.payload).expect("bench payload is JSON");
        map_payload(&mapping, raw, &payload).expect("bench record maps")
    };
    let first = map(&raw);
    let topic = first.entity.canonical_topic();
    let schema_text = first.entity.schema_text();
    let bytes = rt
        .block_on(codec.encode_value(&topic, schema_text, first.avro.clone()))
        .expect("encode");
    assert_eq!(bytes[0], 0, "Confluent magic byte");

    let mut group = c.benchmark_group("salesforce_contact_20_fields");
    group.throughput(Throughput::Elements(1));
    group.bench_function("map_validate", |b| {
        b.iter(|| std::hint::black_box(map(std::hint::black_box(&raw))))
    });
    group.bench_function("map_validate_encode", |b| {
        b.iter(|| {
            let m = map(std::hint::black_box(&raw));
            let bytes = rt
                .block_on(codec.encode_value(&topic, schema_text, m.avro))
                .expect("encode");
            std::hint::black_box(bytes)
        })
    });
    group.finish();
}

criterion_group!(benches, map_encode);
criterion_main!(benches);

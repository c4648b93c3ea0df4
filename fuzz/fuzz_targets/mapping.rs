//! Arbitrary bytes through the mapping engine, as JSON or as XML, against the demo topology's
//! Salesforce and HubSpot mappings. The engine must answer every payload with a record or a
//! failure, never a panic.
#![no_main]

use std::sync::OnceLock;

use hub_schemas::RawChange;
use hub_topology::Topology;
use libfuzzer_sys::fuzz_target;

fn topology() -> &'static Topology {
    static T: OnceLock<Topology> = OnceLock::new();
    T.get_or_init(|| {
        hub_topology::parse_with_env(hub_topology::DEMO_TOPOLOGY, &|_| None)
            .expect("the demo topology parses")
    })
}

/// (connector, vendor, vendor entity) of every mapping in the demo topology.
const TARGETS: [(&str, &str, &str); 3] = [
    ("sf-main", "salesforce", "Contact"),
    ("sf-main", "salesforce", "Vehicle__c"),
    ("hs-marketing", "hubspot", "contacts"),
];

fuzz_target!(|data: &[u8]| {
    // The first byte picks the content type and the mapping, so one corpus explores both.
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let content_type = if selector & 1 == 0 {
        "application/json"
    } else {
        "application/xml"
    };
    let (connector, vendor, entity) = TARGETS[usize::from(selector >> 1) % TARGETS.len()];
    let raw = RawChange {
        tenant: "demo-motors".into(),
        connector: connector.into(),
        vendor: vendor.into(),
        vendor_entity: entity.into(),
        external_id: Some("fuzz-1".into()),
        operation: if selector & 0x80 == 0 { "upsert" } else { "delete" }.into(),
        source_ts: 1_714_564_800_000,
        received_at: 1_714_564_801_000,
        ingest_id: "fuzz".into(),
        content_type: content_type.into(),
        payload: String::from_utf8_lossy(rest).into_owned(),
    };
    let _ = hub_transform::transform_raw(topology(), &raw);
});

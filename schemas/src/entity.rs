//! The canonical entities and where each one lives.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use apache_avro::Schema;

/// The fields every canonical record begins with, set by the hub itself (never mapped): who
/// and where it came from, when, and whether it is a deletion.
pub const ENVELOPE_FIELDS: [&str; 10] = [
    "tenant_id",
    "key",
    "source_vendor",
    "source_connector",
    "source_entity",
    "external_id",
    "source_updated_at",
    "received_at",
    "ingest_id",
    "deleted",
];

/// One of the canonical entity kinds the hub keeps in sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    Customer,
    Lead,
    Vehicle,
    Deal,
    RepairOrder,
    ServiceAppointment,
    Part,
    AccountingEntry,
}

impl Entity {
    /// Every entity, in a stable order.
    pub const ALL: [Entity; 8] = [
        Entity::Customer,
        Entity::Lead,
        Entity::Vehicle,
        Entity::Deal,
        Entity::RepairOrder,
        Entity::ServiceAppointment,
        Entity::Part,
        Entity::AccountingEntry,
    ];

    /// The snake_case name used in topics, tables, topology files and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Entity::Customer => "customer",
            Entity::Lead => "lead",
            Entity::Vehicle => "vehicle",
            Entity::Deal => "deal",
            Entity::RepairOrder => "repair_order",
            Entity::ServiceAppointment => "service_appointment",
            Entity::Part => "part",
            Entity::AccountingEntry => "accounting_entry",
        }
    }

    /// `hub.canonical.<entity>`: what data teams read.
    pub fn canonical_topic(self) -> String {
        format!("{}{}", crate::topics::CANONICAL_PREFIX, self.name())
    }

    /// The Avro schema text, as shipped in `schemas/avro/`.
    pub fn schema_text(self) -> &'static str {
        match self {
            Entity::Customer => include_str!("../avro/customer.avsc"),
            Entity::Lead => include_str!("../avro/lead.avsc"),
            Entity::Vehicle => include_str!("../avro/vehicle.avsc"),
            Entity::Deal => include_str!("../avro/deal.avsc"),
            Entity::RepairOrder => include_str!("../avro/repair_order.avsc"),
            Entity::ServiceAppointment => include_str!("../avro/service_appointment.avsc"),
            Entity::Part => include_str!("../avro/part.avsc"),
            Entity::AccountingEntry => include_str!("../avro/accounting_entry.avsc"),
        }
    }

    /// The parsed schema (parsed once; the shipped files are checked by tests).
    pub fn schema(self) -> &'static Schema {
        static PARSED: OnceLock<Vec<Schema>> = OnceLock::new();
        let all = PARSED.get_or_init(|| {
            Entity::ALL
                .iter()
                .map(|e| Schema::parse_str(e.schema_text()).expect("shipped schema parses"))
                .collect()
        });
        &all[self as usize]
    }

    /// Whether records of this entity are keyed by a person's customer key.
    pub fn keyed_by_person(self) -> bool {
        matches!(self, Entity::Customer | Entity::Lead)
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Entity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Entity::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Entity::ALL.iter().map(|e| e.name()).collect();
                format!("unknown entity '{s}'; expected one of {}", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entity_schema_parses_and_names_round_trip() {
        for e in Entity::ALL {
            assert!(matches!(e.schema(), Schema::Record(_)), "{e}");
            assert_eq!(e.name().parse::<Entity>().unwrap(), e);
            assert!(e.canonical_topic().starts_with("hub.canonical."));
        }
        assert!("truck".parse::<Entity>().is_err());
    }
}

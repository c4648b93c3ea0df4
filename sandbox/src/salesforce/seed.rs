//! Deterministic dealership data for the org: household accounts, their contacts, internet
//! leads, opportunities and owned vehicles (`Vehicle__c` with valid VINs).

use serde_json::{Map, Value, json};

use super::schema::SObject;
use super::store::Store;
use crate::common::people::{VEHICLES, person};
use crate::common::rng::SplitMix64;
use crate::common::vin;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeedSize {
    pub accounts: usize,
    pub contacts: usize,
    pub leads: usize,
    pub opportunities: usize,
    pub vehicles: usize,
}

const YEAR_MS: i64 = 365 * 86_400_000;
const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Test Drive",
    "Negotiation",
    "Closed Won",
    "Closed Lost",
];
const LEAD_SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Walk-in",
    "Third Party Site",
    "Referral",
];

fn obj(name: &str) -> &'static SObject {
    SObject::find(name).unwrap_or(&super::schema::OBJECTS[0])
}

fn stamps(rng: &mut SplitMix64, base_ms: i64) -> (i64, i64) {
    let created = base_ms - YEAR_MS + rng.below(YEAR_MS as u64) as i64;
    let modified = created + rng.below((base_ms - created).max(1) as u64) as i64;
    (created, modified)
}

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Fills the store; the same seed and sizes give the same records and ids.
pub fn seed(store: &mut Store, seed: u64, size: SeedSize, base_ms: i64) {
    let mut rng = SplitMix64::new(seed);
    let mut accounts = Vec::new();
    for i in 0..size.accounts {
        let p = person(&mut rng, i as u64);
        let (c, m) = stamps(&mut rng, base_ms);
        let fields = map(json!({
            "Name": format!("{} Household", p.last_name),
            "Type": "Customer",
            "Phone": p.phone,
            "BillingStreet": p.street,
            "BillingCity": p.city,
            "BillingState": p.state,
            "BillingPostalCode": p.zip,
            "BillingCountry": p.country,
            "DMS_Customer_Id__c": format!("C{:07}", i + 1),
        }));
        if let Ok(id) = store.insert(obj("Account"), fields, c, m) {
            accounts.push(id);
        }
    }
    let mut contacts = Vec::new();
    for i in 0..size.contacts {
        let p = person(&mut rng, i as u64);
        let (c, m) = stamps(&mut rng, base_ms);
        let mut fields = map(json!({
            "FirstName": p.first_name,
            "LastName": p.last_name,
            "Email": p.email,
            "Phone": p.phone,
            "MobilePhone": p.phone,
            "MailingStreet": p.street,
            "MailingCity": p.city,
            "MailingState": p.state,
            "MailingPostalCode": p.zip,
            "MailingCountry": p.country,
            "HasOptedOutOfEmail": rng.chance(0.1),
            "DoNotCall": rng.chance(0.05),
        }));
        if !accounts.is_empty() {
            fields.insert(
                "AccountId".into(),
                json!(accounts[rng.below(accounts.len() as u64) as usize]),
            );
        }
        if let Ok(id) = store.insert(obj("Contact"), fields, c, m) {
            contacts.push(id);
        }
    }
    for i in 0..size.leads {
        let p = person(&mut rng, 1_000_000 + i as u64);
        let (c, m) = stamps(&mut rng, base_ms);
        let fields = map(json!({
            "FirstName": p.first_name,
            "LastName": p.last_name,
            "Company": format!("{} {}", p.first_name, p.last_name),
            "Email": p.email,
            "Phone": p.phone,
            "City": p.city,
            "State": p.state,
            "PostalCode": p.zip,
            "Status": "Open - Not Contacted",
            "LeadSource": *rng.pick(LEAD_SOURCES),
        }));
        let _ = store.insert(obj("Lead"), fields, c, m);
    }
    for i in 0..size.opportunities {
        let (c, m) = stamps(&mut rng, base_ms);
        let (make, model, _) = *rng.pick(VEHICLES);
        let year = 2016 + rng.below(11);
        let close = chrono::DateTime::from_timestamp_millis(c + rng.below(60 * 86_400_000) as i64)
            .unwrap_or_default()
            .format("%Y-%m-%d")
            .to_string();
        let mut fields = map(json!({
            "Name": format!("{year} {make} {model}"),
            "StageName": *rng.pick(STAGES),
            "CloseDate": close,
            "Amount": 18_000 + rng.below(52_000),
            "LeadSource": *rng.pick(LEAD_SOURCES),
            "DMS_Deal_Number__c": format!("DL-2025-{:06}", i + 1),
        }));
        if !accounts.is_empty() {
            fields.insert(
                "AccountId".into(),
                json!(accounts[rng.below(accounts.len() as u64) as usize]),
            );
        }
        let _ = store.insert(obj("Opportunity"), fields, c, m);
    }
    for i in 0..size.vehicles {
        let (c, m) = stamps(&mut rng, base_ms);
        let (make, model, wmi) = *rng.pick(VEHICLES);
        let year = 2012 + rng.below(15) as u16;
        let v = vin::generate(&mut rng, wmi, year);
        let mut fields = map(json!({
            "Name": format!("{year} {make} {model}"),
            "VIN__c": v,
            "Make__c": make,
            "Model__c": model,
            "Year__c": year,
            "Odometer__c": rng.below(120_000),
            "Stock_Number__c": format!("S{:06}", i + 1),
        }));
        if !contacts.is_empty() {
            fields.insert(
                "Contact__c".into(),
                json!(contacts[rng.below(contacts.len() as u64) as usize]),
            );
        }
        let _ = store.insert(obj("Vehicle__c"), fields, c, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_org_with_valid_vins_and_links() {
        let size = SeedSize {
            accounts: 20,
            contacts: 100,
            leads: 10,
            opportunities: 10,
            vehicles: 50,
        };
        let (mut a, mut b) = (Store::default(), Store::default());
        seed(&mut a, 5, size, 1_790_000_000_000);
        seed(&mut b, 5, size, 1_790_000_000_000);
        assert_eq!(a.records.get("Contact"), b.records.get("Contact"));
        assert_eq!(a.count("Vehicle__c"), 50);
        for v in &a.records["Vehicle__c"] {
            assert!(vin::is_valid(v.fields["VIN__c"].as_str().unwrap()));
            let owner = v.fields["Contact__c"].as_str().unwrap();
            assert_eq!(a.by_id(owner).unwrap().0, "Contact");
        }
        assert!(a.records["Contact"].iter().all(|c| c.id.len() == 18));
    }
}

//! Deterministic dealership data for the HubSpot portal: fleet-customer companies, retail
//! contacts and their vehicle deals, spread over the year before `base_ms`.

use std::collections::BTreeMap;

use super::store::{ObjectType, Store, iso};
use crate::common::people::{VEHICLES, person};
use crate::common::rng::SplitMix64;
use crate::common::vin;

/// How many records to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeedSize {
    pub contacts: usize,
    pub companies: usize,
    pub deals: usize,
}

const YEAR_MS: i64 = 365 * 86_400_000;
const STAGES: &[&str] = &[
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
];
const LIFECYCLE: &[&str] = &["subscriber", "lead", "opportunity", "customer"];
const LEAD_STATUS: &[&str] = &[
    "NEW",
    "OPEN",
    "IN_PROGRESS",
    "ATTEMPTED_TO_CONTACT",
    "CONNECTED",
];

fn stamps(rng: &mut SplitMix64, base_ms: i64) -> (i64, i64) {
    let created = base_ms - YEAR_MS + rng.below(YEAR_MS as u64) as i64;
    let updated = created + rng.below((base_ms - created).max(1) as u64) as i64;
    (created, updated)
}

fn map(kv: Vec<(&str, String)>) -> BTreeMap<String, String> {
    kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Fills `store`; the same seed and sizes give the same records and ids.
pub fn seed(store: &mut Store, seed: u64, size: SeedSize, base_ms: i64) {
    let mut rng = SplitMix64::new(seed);
    for i in 0..size.companies {
        let (c, u) = stamps(&mut rng, base_ms);
        let p = person(&mut rng, i as u64);
        let name = format!("{} {} Fleet Services", p.city, p.last_name);
        let props = map(vec![
            ("name", name),
            ("domain", format!("fleet{i}.example.com")),
            ("phone", p.phone),
            ("city", p.city),
            ("state", p.state),
            ("zip", p.zip),
            ("industry", "AUTOMOTIVE".into()),
        ]);
        let _ = store.create(ObjectType::Companies, props, c, u);
    }
    for i in 0..size.contacts {
        let (c, u) = stamps(&mut rng, base_ms);
        let p = person(&mut rng, i as u64);
        let props = map(vec![
            ("email", p.email),
            ("firstname", p.first_name),
            ("lastname", p.last_name),
            ("phone", p.phone.clone()),
            ("mobilephone", p.phone),
            ("address", p.street),
            ("city", p.city),
            ("state", p.state),
            ("zip", p.zip),
            ("country", p.country),
            ("lifecyclestage", (*rng.pick(LIFECYCLE)).to_owned()),
            ("hs_lead_status", (*rng.pick(LEAD_STATUS)).to_owned()),
        ]);
        let _ = store.create(ObjectType::Contacts, props, c, u);
    }
    for i in 0..size.deals {
        let (c, u) = stamps(&mut rng, base_ms);
        let (make, model, wmi) = *rng.pick(VEHICLES);
        let year = 2016 + rng.below(11) as u16;
        let buyer = person(&mut rng, i as u64);
        let amount = 18_000 + rng.below(52_000);
        let props = map(vec![
            (
                "dealname",
                format!("{year} {make} {model} - {}", buyer.last_name),
            ),
            ("amount", format!("{amount}.00")),
            ("dealstage", (*rng.pick(STAGES)).to_owned()),
            ("pipeline", "default".into()),
            ("closedate", iso(c + rng.below(60 * 86_400_000) as i64)),
            (
                "dealtype",
                if rng.chance(0.6) {
                    "newbusiness"
                } else {
                    "existingbusiness"
                }
                .into(),
            ),
            ("dms_deal_number", format!("DL-{}-{:06}", 2025, i + 1)),
            ("vin", vin::generate(&mut rng, wmi, year)),
        ]);
        let _ = store.create(ObjectType::Deals, props, c, u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_portal() {
        let size = SeedSize {
            contacts: 200,
            companies: 10,
            deals: 50,
        };
        let (mut a, mut b) = (Store::new(), Store::new());
        seed(&mut a, 9, size, 1_790_000_000_000);
        seed(&mut b, 9, size, 1_790_000_000_000);
        assert_eq!(a.count(ObjectType::Contacts), 200);
        let x: Vec<_> = a.live(ObjectType::Contacts).cloned().collect();
        let y: Vec<_> = b.live(ObjectType::Contacts).cloned().collect();
        assert_eq!(x, y);
        assert!(
            a.live(ObjectType::Deals)
                .all(|d| vin::is_valid(&d.properties["vin"]))
        );
    }
}

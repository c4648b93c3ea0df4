//! The org's objects and fields (vendor-apis.md §2.3): the standard objects a dealership uses and
//! the usual custom `Vehicle__c` keyed by `VIN__c` (External ID, Unique), plus 18-character
//! record ids with the right key prefix and checksum.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Id,
    Reference,
    String,
    Email,
    Phone,
    Boolean,
    Number,
    Date,
    DateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
    /// Required on create (`REQUIRED_FIELD_MISSING`, §2.9).
    pub required: bool,
    /// Marked External ID, so usable in an upsert URL (§2.5).
    pub external_id: bool,
}

const fn f(name: &'static str, ty: FieldType) -> Field {
    Field {
        name,
        ty,
        required: false,
        external_id: false,
    }
}

const fn req(name: &'static str, ty: FieldType) -> Field {
    Field {
        name,
        ty,
        required: true,
        external_id: false,
    }
}

const fn ext(name: &'static str, required: bool) -> Field {
    Field {
        name,
        ty: Text,
        required,
        external_id: true,
    }
}

use FieldType::String as Text;
use FieldType::{Boolean, Date, DateTime, Email, Id, Number, Phone, Reference};

/// Fields every object has; the org maintains them, a client cannot write them.
pub const SYSTEM_FIELDS: &[Field] = &[
    f("Id", Id),
    f("IsDeleted", Boolean),
    f("CreatedDate", DateTime),
    f("LastModifiedDate", DateTime),
    f("SystemModstamp", DateTime),
];

#[derive(Debug)]
pub struct SObject {
    pub name: &'static str,
    /// §2.3: the id's first three characters name the object.
    pub key_prefix: &'static str,
    pub fields: &'static [Field],
}

pub const OBJECTS: &[SObject] = &[
    SObject {
        name: "Account",
        key_prefix: "001",
        fields: &[
            req("Name", Text),
            f("Type", Text),
            f("Phone", Phone),
            f("BillingStreet", Text),
            f("BillingCity", Text),
            f("BillingState", Text),
            f("BillingPostalCode", Text),
            f("BillingCountry", Text),
            ext("DMS_Customer_Id__c", false),
        ],
    },
    SObject {
        name: "Contact",
        key_prefix: "003",
        fields: &[
            f("AccountId", Reference),
            f("FirstName", Text),
            req("LastName", Text),
            f("Email", Email),
            f("Phone", Phone),
            f("MobilePhone", Phone),
            f("HomePhone", Phone),
            f("MailingStreet", Text),
            f("MailingCity", Text),
            f("MailingState", Text),
            f("MailingPostalCode", Text),
            f("MailingCountry", Text),
            f("Birthdate", Date),
            f("HasOptedOutOfEmail", Boolean),
            f("DoNotCall", Boolean),
            ext("DMS_Customer_Id__c", false),
        ],
    },
    SObject {
        name: "Lead",
        key_prefix: "00Q",
        fields: &[
            f("FirstName", Text),
            req("LastName", Text),
            req("Company", Text),
            f("Email", Email),
            f("Phone", Phone),
            f("MobilePhone", Phone),
            f("Street", Text),
            f("City", Text),
            f("State", Text),
            f("PostalCode", Text),
            f("Country", Text),
            req("Status", Text),
            f("LeadSource", Text),
            f("Rating", Text),
            f("Description", Text),
            f("IsConverted", Boolean),
            ext("ADF_Lead_Id__c", false),
        ],
    },
    SObject {
        name: "Opportunity",
        key_prefix: "006",
        fields: &[
            req("Name", Text),
            f("AccountId", Reference),
            req("StageName", Text),
            req("CloseDate", Date),
            f("Amount", Number),
            f("Probability", Number),
            f("IsClosed", Boolean),
            f("IsWon", Boolean),
            f("LeadSource", Text),
            f("Type", Text),
            ext("DMS_Deal_Number__c", false),
        ],
    },
    SObject {
        name: "Vehicle__c",
        key_prefix: "a0X",
        fields: &[
            f("Name", Text),
            ext("VIN__c", true),
            f("Make__c", Text),
            f("Model__c", Text),
            f("Year__c", Number),
            f("Odometer__c", Number),
            f("Stock_Number__c", Text),
            f("Contact__c", Reference),
        ],
    },
];

impl SObject {
    /// API names are case-insensitive (§2.4 SOQL); the canonical spelling comes back.
    pub fn find(name: &str) -> Option<&'static SObject> {
        OBJECTS.iter().find(|o| o.name.eq_ignore_ascii_case(name))
    }

    pub fn field(&self, name: &str) -> Option<&'static Field> {
        SYSTEM_FIELDS
            .iter()
            .chain(self.fields.iter())
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn is_system(name: &str) -> bool {
        SYSTEM_FIELDS
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn all_fields(&self) -> impl Iterator<Item = &'static Field> + '_ {
        SYSTEM_FIELDS.iter().chain(self.fields.iter())
    }
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The 18-character id of the `n`-th record with `prefix` (§2.3: 15 case-sensitive characters
/// plus a 3-character checksum of their upper-case positions).
pub fn record_id(prefix: &str, n: u64) -> String {
    let mut tail = [b'0'; 6];
    let mut v = n;
    for slot in tail.iter_mut().rev() {
        *slot = BASE62[(v % 62) as usize];
        v /= 62;
    }
    let id15 = format!("{prefix}RO0000{}", String::from_utf8_lossy(&tail));
    to_18(&id15)
}

/// 15 → 18 characters (§2.3).
pub fn to_18(id15: &str) -> String {
    const MAP: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let b = id15.as_bytes();
    let mut out = id15.to_owned();
    for chunk in b.chunks(5).take(3) {
        let mut bits = 0usize;
        for (i, c) in chunk.iter().enumerate() {
            if c.is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        out.push(char::from(MAP[bits]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighteen_character_ids_carry_the_checksum() {
        // §2.3's example id: 003RO00000AbCdE + YAV.
        assert_eq!(to_18("003RO00000AbCdE"), "003RO00000AbCdEYAV");
        let id = record_id("003", 1);
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("003"));
        assert_ne!(record_id("003", 1), record_id("003", 2));
    }

    #[test]
    fn vehicle_object_has_vin_as_external_id() {
        let v = SObject::find("vehicle__C").unwrap();
        assert!(v.field("vin__c").unwrap().external_id);
        assert!(
            SObject::find("Contact")
                .unwrap()
                .field("SystemModstamp")
                .is_some()
        );
    }
}

//! Roles per tenant and the access rule.
//!
//! The rule has two answers besides "allowed", and which one a caller gets matters: a tenant
//! the caller has no part in answers [`Access::NotFound`] — the same as an object that does
//! not exist, so that probing ids tells an outsider nothing — while a member whose role is too
//! low answers [`Access::Forbidden`], because they already know the tenant exists.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ControlError;

/// A role in one tenant. Ordered: each role may do everything the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads configuration, jobs, conflicts and dead letters.
    Viewer,
    /// Also runs syncs, resolves conflicts, replays or discards dead letters.
    Operator,
    /// Also configures connectors, credentials and API tokens.
    Admin,
    /// Also manages members and the tenant itself.
    Owner,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Admin, Role::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ControlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                ControlError::invalid("role", "must be owner, admin, operator or viewer")
            })
    }
}

/// A tenant's id: a dealership or dealer group, as it appears in API paths
/// (`/api/v1/tenants/{tenant}/...`). Lowercase letters, digits and `-`, 1 to 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn new(id: impl Into<String>) -> Result<Self, ControlError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 63
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !id.starts_with('-');
        if ok {
            Ok(TenantId(id))
        } else {
            Err(ControlError::invalid(
                "tenant",
                "use 1 to 63 lowercase letters, digits or '-', not starting with '-'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = ControlError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TenantId::new(s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's id (a UUID the store assigns).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserId(pub String);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who is calling: a signed-in console user or a machine holding an API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User(UserId),
    /// The token's id (never its secret).
    ApiToken(String),
}

/// The result of an access check, in the terms the HTTP layer answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// A member of the tenant whose role is too low: 403.
    Forbidden,
    /// Not a member of the tenant: 404, exactly as if the object did not exist.
    NotFound,
}

impl Access {
    /// The HTTP status this answer maps to.
    pub fn http_status(self) -> u16 {
        match self {
            Access::Allowed => 200,
            Access::Forbidden => 403,
            Access::NotFound => 404,
        }
    }

    pub fn is_allowed(self) -> bool {
        self == Access::Allowed
    }
}

/// An authenticated caller and every role it holds. Built by the store from a session or an
/// API token; an API token holds exactly one role in exactly one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    /// Platform admins run the hub itself and may act in every tenant.
    pub platform_admin: bool,
    pub roles: BTreeMap<TenantId, Role>,
}

impl Caller {
    /// May this caller do something that needs `needed` in `tenant`?
    pub fn can(&self, tenant: &TenantId, needed: Role) -> Access {
        if self.platform_admin {
            return Access::Allowed;
        }
        match self.roles.get(tenant) {
            None => Access::NotFound,
            Some(role) if *role >= needed => Access::Allowed,
            Some(_) => Access::Forbidden,
        }
    }

    /// The caller's role in `tenant`, if it is a member.
    pub fn role_in(&self, tenant: &TenantId) -> Option<Role> {
        self.roles.get(tenant).copied()
    }

    /// The tenants this caller may see (all of them, for a platform admin, is the caller's
    /// business to list from the store).
    pub fn tenants(&self) -> impl Iterator<Item = &TenantId> {
        self.roles.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    fn member(tenant: &str, role: Role) -> Caller {
        Caller {
            principal: Principal::User(UserId("u1".into())),
            platform_admin: false,
            roles: [(t(tenant), role)].into_iter().collect(),
        }
    }

    #[test]
    fn roles_are_ordered_viewer_to_owner() {
        assert!(Role::Viewer < Role::Operator);
        assert!(Role::Operator < Role::Admin);
        assert!(Role::Admin < Role::Owner);
    }

    #[test]
    fn role_round_trips_through_text() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn every_role_against_every_need_in_own_tenant() {
        for have in Role::ALL {
            let c = member("acme", have);
            for need in Role::ALL {
                let want = if have >= need {
                    Access::Allowed
                } else {
                    Access::Forbidden
                };
                assert_eq!(c.can(&t("acme"), need), want, "{have} needing {need}");
            }
        }
    }

    #[test]
    fn other_tenant_answers_not_found_even_for_an_owner() {
        let c = member("acme", Role::Owner);
        for need in Role::ALL {
            assert_eq!(c.can(&t("globex"), need), Access::NotFound);
            assert_eq!(c.can(&t("globex"), need).http_status(), 404);
        }
    }

    #[test]
    fn platform_admin_may_act_in_any_tenant() {
        let mut c = member("acme", Role::Viewer);
        c.platform_admin = true;
        assert_eq!(c.can(&t("globex"), Role::Owner), Access::Allowed);
        assert_eq!(c.can(&t("acme"), Role::Owner), Access::Allowed);
    }

    #[test]
    fn tenant_ids_are_path_safe() {
        assert!(TenantId::new("acme-motors-2").is_ok());
        for bad in ["", "Acme", "a/b", "-x", "a b", &"x".repeat(64)] {
            assert!(TenantId::new(bad).is_err(), "{bad:?}");
        }
    }
}

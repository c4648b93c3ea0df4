//! Tenants, users and their memberships.

use std::collections::BTreeMap;

use crate::auth::password::hash_password_off_executor;
use crate::auth::{Caller, Principal, Role, TenantId, UserId};
use crate::error::{ControlError, Result};
use crate::secret::Secret;

use super::{ControlStore, in_tx, on_pool};

/// A tenant as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at_ms: i64,
}

/// A user as listed (never with the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub platform_admin: bool,
    pub created_at_ms: i64,
    pub disabled_at_ms: Option<i64>,
}

/// Sign-in names are e-mail addresses, compared without case or surrounding blanks.
pub(crate) fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl ControlStore {
    /// Creates a tenant; its id must be unused.
    pub async fn create_tenant(&self, id: &TenantId, name: &str) -> Result<Tenant> {
        let name = name.trim();
        if name.is_empty() {
            return Err(ControlError::invalid("name", "a tenant needs a name"));
        }
        let now = self.now_ms();
        let res = on_pool!(self, |p| sqlx::query(
            "INSERT INTO tenants (id, name, created_at_ms) VALUES ($1, $2, $3)"
        )
        .bind(id.as_str())
        .bind(name)
        .bind(now)
        .execute(p)
        .await
        .map(|_| ()));
        match res {
            Ok(()) => Ok(Tenant {
                id: id.clone(),
                name: name.to_string(),
                created_at_ms: now,
            }),
            Err(e) if is_unique_violation(&e) => Err(ControlError::Conflict {
                what: format!("tenant {id}"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        let row: Option<(String, i64)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT name, created_at_ms FROM tenants WHERE id = $1"
        )
        .bind(id.as_str())
        .fetch_optional(p)
        .await?);
        Ok(row.map(|(name, created_at_ms)| Tenant {
            id: id.clone(),
            name,
            created_at_ms,
        }))
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT id, name, created_at_ms FROM tenants ORDER BY id"
        )
        .fetch_all(p)
        .await?);
        rows.into_iter()
            .map(|(id, name, created_at_ms)| {
                Ok(Tenant {
                    id: TenantId::new(id)?,
                    name,
                    created_at_ms,
                })
            })
            .collect()
    }

    /// Creates a user with an argon2id password hash; the e-mail address must be unused.
    pub async fn create_user(
        &self,
        email: &str,
        password: &Secret<String>,
        platform_admin: bool,
    ) -> Result<UserId> {
        let email = normalize_email(email);
        if !email.contains('@') || email.len() > 254 {
            return Err(ControlError::invalid("email", "not an e-mail address"));
        }
        let hash = hash_password_off_executor(password).await?;
        let id = UserId(uuid::Uuid::now_v7().to_string());
        let now = self.now_ms();
        let res = on_pool!(self, |p| sqlx::query(
            "INSERT INTO users (id, email, password_hash, platform_admin, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(&id.0)
        .bind(&email)
        .bind(&hash)
        .bind(platform_admin)
        .bind(now)
        .execute(p)
        .await
        .map(|_| ()));
        match res {
            Ok(()) => Ok(id),
            Err(e) if is_unique_violation(&e) => Err(ControlError::Conflict {
                what: format!("a user with e-mail {email}"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
        let row: Option<(String, bool, i64, Option<i64>)> = on_pool!(self, |p| {
            sqlx::query_as(
            "SELECT email, platform_admin, created_at_ms, disabled_at_ms FROM users WHERE id = $1"
        )
        .bind(&id.0)
        .fetch_optional(p)
        .await?
        });
        Ok(row.map(
            |(email, platform_admin, created_at_ms, disabled_at_ms)| User {
                id: id.clone(),
                email,
                platform_admin,
                created_at_ms,
                disabled_at_ms,
            },
        ))
    }

    /// The user signing in with `email` (compared as sign-in compares it), if any.
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
        let row: Option<(String,)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT id FROM users WHERE email = $1"
        )
        .bind(normalize_email(email))
        .fetch_optional(p)
        .await?);
        match row {
            Some((id,)) => self.get_user(&UserId(id)).await,
            None => Ok(None),
        }
    }

    /// Disables a user and ends every session they hold; their API tokens are the tenant's
    /// and stay valid until revoked.
    pub async fn disable_user(&self, id: &UserId) -> Result<()> {
        let now = self.now_ms();
        let updated = in_tx!(self, |tx| {
            let n = sqlx::query(
                "UPDATE users SET disabled_at_ms = $1 WHERE id = $2 AND disabled_at_ms IS NULL",
            )
            .bind(now)
            .bind(&id.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(&id.0)
                .execute(&mut *tx)
                .await?;
            n
        });
        if updated == 0 && self.get_user(id).await?.is_none() {
            return Err(ControlError::NotFound {
                what: format!("user {id}"),
            });
        }
        Ok(())
    }

    /// Gives `user` the role `role` in `tenant`, replacing any role they had there.
    pub async fn set_membership(&self, user: &UserId, tenant: &TenantId, role: Role) -> Result<()> {
        let now = self.now_ms();
        let res = on_pool!(self, |p| sqlx::query(
            "INSERT INTO memberships (user_id, tenant_id, role, created_at_ms) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = excluded.role"
        )
        .bind(&user.0)
        .bind(tenant.as_str())
        .bind(role.as_str())
        .bind(now)
        .execute(p)
        .await
        .map(|_| ()));
        match res {
            Ok(()) => Ok(()),
            Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                Err(ControlError::NotFound {
                    what: format!("user {user} or tenant {tenant}"),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `user` from `tenant`; answers whether they were a member.
    pub async fn remove_membership(&self, user: &UserId, tenant: &TenantId) -> Result<bool> {
        let n = on_pool!(self, |p| sqlx::query(
            "DELETE FROM memberships WHERE user_id = $1 AND tenant_id = $2"
        )
        .bind(&user.0)
        .bind(tenant.as_str())
        .execute(p)
        .await?
        .rows_affected());
        Ok(n > 0)
    }

    /// Who holds which role in `tenant` (for the compliance report and member lists).
    pub async fn list_members(&self, tenant: &TenantId) -> Result<Vec<(User, Role)>> {
        let rows: Vec<(String, String, bool, i64, Option<i64>, String)> =
            on_pool!(self, |p| sqlx::query_as(
                "SELECT u.id, u.email, u.platform_admin, u.created_at_ms, u.disabled_at_ms, m.role \
                 FROM memberships m JOIN users u ON u.id = m.user_id \
                 WHERE m.tenant_id = $1 ORDER BY u.email"
            )
            .bind(tenant.as_str())
            .fetch_all(p)
            .await?);
        rows.into_iter()
            .map(
                |(id, email, platform_admin, created_at_ms, disabled_at_ms, role)| {
                    Ok((
                        User {
                            id: UserId(id),
                            email,
                            platform_admin,
                            created_at_ms,
                            disabled_at_ms,
                        },
                        role.parse()?,
                    ))
                },
            )
            .collect()
    }

    /// The caller a user is: their platform-admin flag and every membership. `None` for an
    /// unknown or disabled user.
    pub async fn caller_for_user(&self, user: &UserId) -> Result<Option<Caller>> {
        let Some(u) = self.get_user(user).await? else {
            return Ok(None);
        };
        if u.disabled_at_ms.is_some() {
            return Ok(None);
        }
        let rows: Vec<(String, String)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT tenant_id, role FROM memberships WHERE user_id = $1"
        )
        .bind(&user.0)
        .fetch_all(p)
        .await?);
        let mut roles = BTreeMap::new();
        for (tenant, role) in rows {
            roles.insert(TenantId::new(tenant)?, role.parse::<Role>()?);
        }
        Ok(Some(Caller {
            principal: Principal::User(user.clone()),
            platform_admin: u.platform_admin,
            roles,
        }))
    }
}

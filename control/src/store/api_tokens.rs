//! API tokens for machines: one tenant, one role, an expiry, revocable. The plaintext is
//! returned once, at creation; the store keeps its SHA-256 only.
//!
//! A token's last use is kept to the minute (for the compliance report): authentication
//! writes it only when the stored time is older than [`LAST_USE_RESOLUTION_MS`], so a busy
//! token costs one write a minute, not one per request.

use std::collections::BTreeMap;

use crate::auth::token::{API_TOKEN_PREFIX, new_token, token_hash};
use crate::auth::{Caller, Principal, Role, TenantId, UserId};
use crate::error::{ControlError, Result};
use crate::secret::Secret;

use super::{ControlStore, on_pool};

/// Longest lifetime a token may be given: one year, so a forgotten token still dies.
pub const MAX_TOKEN_TTL_MS: i64 = 366 * 24 * 3600 * 1000;

/// How stale a token's recorded last use may get before authentication rewrites it.
pub const LAST_USE_RESOLUTION_MS: i64 = 60 * 1000;

/// A token as listed: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenInfo {
    pub id: String,
    pub tenant: TenantId,
    pub role: Role,
    pub name: String,
    pub created_by: Option<UserId>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// When it last authenticated a request, to the minute; `None` if never.
    pub last_used_at_ms: Option<i64>,
}

/// A freshly created token: the only time its plaintext exists outside the caller's hands.
#[derive(Debug)]
pub struct NewApiToken {
    pub token: Secret<String>,
    pub info: ApiTokenInfo,
}

type TokenRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);

fn info_from_row(r: TokenRow) -> Result<ApiTokenInfo> {
    let (
        id,
        tenant,
        role,
        name,
        created_by,
        created_at_ms,
        expires_at_ms,
        revoked_at_ms,
        last_used_at_ms,
    ) = r;
    Ok(ApiTokenInfo {
        id,
        tenant: TenantId::new(tenant)?,
        role: role.parse()?,
        name,
        created_by: created_by.map(UserId),
        created_at_ms,
        expires_at_ms,
        revoked_at_ms,
        last_used_at_ms,
    })
}

const TOKEN_COLUMNS: &str = "id, tenant_id, role, name, created_by, created_at_ms, expires_at_ms, \
                             revoked_at_ms, last_used_at_ms";

impl ControlStore {
    /// Creates a token for `tenant` with `role`, valid for `ttl_ms` (at most a year).
    pub async fn create_api_token(
        &self,
        tenant: &TenantId,
        role: Role,
        name: &str,
        ttl_ms: i64,
        created_by: Option<&UserId>,
    ) -> Result<NewApiToken> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(ControlError::invalid(
                "name",
                "give the token a name of 1 to 200 characters",
            ));
        }
        if ttl_ms <= 0 || ttl_ms > MAX_TOKEN_TTL_MS {
            return Err(ControlError::invalid(
                "expires_in",
                "must be between 1 ms and one year",
            ));
        }
        if self.get_tenant(tenant).await?.is_none() {
            return Err(ControlError::NotFound {
                what: format!("tenant {tenant}"),
            });
        }
        let token = new_token(API_TOKEN_PREFIX);
        let now = self.now_ms();
        let info = ApiTokenInfo {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.clone(),
            role,
            name: name.to_string(),
            created_by: created_by.cloned(),
            created_at_ms: now,
            expires_at_ms: now + ttl_ms,
            revoked_at_ms: None,
            last_used_at_ms: None,
        };
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, tenant_id, role, name, created_by, \
             created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        .bind(&info.id)
        .bind(token_hash(token.expose()))
        .bind(info.tenant.as_str())
        .bind(role.as_str())
        .bind(&info.name)
        .bind(info.created_by.as_ref().map(|u| u.0.as_str()))
        .bind(now)
        .bind(info.expires_at_ms)
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(NewApiToken { token, info })
    }

    /// The token a bearer secret names, if it exists, has not expired and is not revoked;
    /// records its use (see the module docs).
    pub async fn authenticate_api_token(&self, token: &str) -> Result<Option<ApiTokenInfo>> {
        if !token.starts_with(API_TOKEN_PREFIX) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens \
             WHERE token_hash = $1 AND expires_at_ms > $2 AND revoked_at_ms IS NULL"
        );
        let now = self.now_ms();
        let row: Option<TokenRow> =
            on_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(token_hash(token))
                .bind(now)
                .fetch_optional(p)
                .await?);
        let Some(mut info) = row.map(info_from_row).transpose()? else {
            return Ok(None);
        };
        if info
            .last_used_at_ms
            .is_none_or(|t| t <= now - LAST_USE_RESOLUTION_MS)
        {
            // Compare-and-set: of concurrent requests on a stale token, one writes.
            on_pool!(self, |p| sqlx::query(
                "UPDATE api_tokens SET last_used_at_ms = $1 WHERE id = $2 \
                 AND (last_used_at_ms IS NULL OR last_used_at_ms <= $3)"
            )
            .bind(now)
            .bind(&info.id)
            .bind(now - LAST_USE_RESOLUTION_MS)
            .execute(p)
            .await
            .map(|_| ())?);
            info.last_used_at_ms = Some(now);
        }
        Ok(Some(info))
    }

    /// The caller behind a bearer token: its one role in its one tenant, never a platform
    /// admin.
    pub async fn caller_for_api_token(&self, token: &str) -> Result<Option<Caller>> {
        Ok(self.authenticate_api_token(token).await?.map(|t| Caller {
            principal: Principal::ApiToken(t.id),
            platform_admin: false,
            roles: BTreeMap::from([(t.tenant, t.role)]),
        }))
    }

    /// Revokes a token of `tenant`. A token of another tenant answers NotFound, as if it did
    /// not exist; revoking twice keeps the first revocation time.
    pub async fn revoke_api_token(&self, tenant: &TenantId, id: &str) -> Result<()> {
        let now = self.now_ms();
        let n = on_pool!(self, |p| sqlx::query(
            "UPDATE api_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, $1) \
             WHERE id = $2 AND tenant_id = $3"
        )
        .bind(now)
        .bind(id)
        .bind(tenant.as_str())
        .execute(p)
        .await?
        .rows_affected());
        if n == 0 {
            return Err(ControlError::NotFound {
                what: format!("API token {id}"),
            });
        }
        Ok(())
    }

    /// A tenant's tokens, newest first, revoked and expired ones included.
    pub async fn list_api_tokens(&self, tenant: &TenantId) -> Result<Vec<ApiTokenInfo>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE tenant_id = $1 ORDER BY created_at_ms DESC, id DESC"
        );
        let rows: Vec<TokenRow> =
            on_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant.as_str())
                .fetch_all(p)
                .await?);
        rows.into_iter().map(info_from_row).collect()
    }
}

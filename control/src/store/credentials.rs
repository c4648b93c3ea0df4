//! Connector credentials, encrypted at rest (see [`crate::crypto`] for the envelope).
//!
//! Write-only from the API's point of view: [`ControlStore::put_credentials`] and
//! [`ControlStore::list_credentials`] (metadata only) back endpoints, while
//! [`ControlStore::get_credentials`] is for the hub's own connectors and "test connection",
//! never for a response body.

use serde_json::Value as Json;

use crate::auth::TenantId;
use crate::crypto::{DataKey, MasterKey};
use crate::error::{ControlError, Result};
use crate::secret::Secret;

use super::{ControlStore, in_tx, on_pool};

/// The first (and, until data-key rotation exists, only) version of a tenant's data key.
pub(super) const FIRST_DATA_KEY_VERSION: i64 = 1;

/// What may be shown about stored credentials: when they were set and how often rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialInfo {
    pub connector: String,
    pub key_version: i64,
    pub created_at_ms: i64,
    pub rotated_at_ms: Option<i64>,
    pub rotations: i64,
}

fn check_connector(connector: &str) -> Result<()> {
    let ok = !connector.is_empty()
        && connector.len() <= 100
        && connector
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ControlError::invalid(
            "connector",
            "use 1 to 100 lowercase letters, digits, '-' or '_'",
        ))
    }
}

fn tenant_missing(tenant: &TenantId) -> impl FnOnce(sqlx::Error) -> ControlError + '_ {
    move |e| match e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => ControlError::NotFound {
            what: format!("tenant {tenant}"),
        },
        e => e.into(),
    }
}

/// `(key_version, wrapped_key, nonce, master_key_version)` of `tenant_data_keys`.
pub(super) type DataKeyRow = (i64, Vec<u8>, Vec<u8>, i64);
/// `(ciphertext, nonce)` of `connector_credentials`, then its tenant's [`DataKeyRow`].
type SealedRow = (Vec<u8>, Vec<u8>, i64, Vec<u8>, Vec<u8>, i64);
/// `tenant_id` and the rest of a [`DataKeyRow`].
type TenantKeyRow = (String, i64, Vec<u8>, Vec<u8>, i64);

pub(super) fn unwrap_row(
    master: &MasterKey,
    tenant: &TenantId,
    row: DataKeyRow,
) -> Result<(DataKey, i64)> {
    let (key_version, wrapped, nonce, master_version) = row;
    Ok((
        master.unwrap(tenant.as_str(), master_version, &wrapped, &nonce)?,
        key_version,
    ))
}

pub(super) const SELECT_DATA_KEY: &str = "SELECT key_version, wrapped_key, nonce, master_key_version \
                               FROM tenant_data_keys WHERE tenant_id = $1";

impl ControlStore {
    /// The tenant's data key and its version, created on first use (another node may create
    /// it first: then theirs is used). For sealing the tenant's records outside a
    /// credentials transaction ([`super::desk`]).
    pub(crate) async fn tenant_data_key(&self, tenant: &TenantId) -> Result<(DataKey, i64)> {
        let master = self.master_key();
        let t = tenant.as_str();
        let row: Option<DataKeyRow> = on_pool!(self, |p| sqlx::query_as(SELECT_DATA_KEY)
            .bind(t)
            .fetch_optional(p)
            .await?);
        if let Some(row) = row {
            return unwrap_row(&master, tenant, row);
        }
        let dk = DataKey::generate();
        let (wrapped, nonce) = master.wrap(t, &dk)?;
        let now = self.now_ms();
        let inserted = on_pool!(self, |p| sqlx::query(
            "INSERT INTO tenant_data_keys (tenant_id, key_version, wrapped_key, \
             nonce, master_key_version, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(t)
        .bind(FIRST_DATA_KEY_VERSION)
        .bind(wrapped)
        .bind(nonce)
        .bind(master.version())
        .bind(now)
        .execute(p)
        .await
        .map_err(tenant_missing(tenant))?
        .rows_affected());
        if inserted == 1 {
            return Ok((dk, FIRST_DATA_KEY_VERSION));
        }
        let row: DataKeyRow = on_pool!(self, |p| sqlx::query_as(SELECT_DATA_KEY)
            .bind(t)
            .fetch_one(p)
            .await?);
        unwrap_row(&master, tenant, row)
    }

    /// Stores (or replaces, counting a rotation) a connector's credentials for `tenant`,
    /// creating the tenant's data key on first use.
    pub async fn put_credentials(
        &self,
        tenant: &TenantId,
        connector: &str,
        secret: &Secret<Json>,
    ) -> Result<CredentialInfo> {
        check_connector(connector)?;
        if !secret.expose().is_object() {
            return Err(ControlError::invalid(
                "credentials",
                "must be a JSON object",
            ));
        }
        let plain =
            Secret::new(serde_json::to_vec(secret.expose()).map_err(|e| {
                ControlError::invalid("credentials", format!("not serialisable: {e}"))
            })?);
        let master = self.master_key();
        let now = self.now_ms();
        let t = tenant.as_str();
        in_tx!(self, |tx| {
            let row: Option<DataKeyRow> = sqlx::query_as(SELECT_DATA_KEY)
                .bind(t)
                .fetch_optional(&mut *tx)
                .await?;
            let (data_key, key_version) = match row {
                Some(row) => unwrap_row(&master, tenant, row)?,
                None => {
                    let dk = DataKey::generate();
                    let (wrapped, nonce) = master.wrap(t, &dk)?;
                    // Another node may create it first: then use theirs.
                    let inserted = sqlx::query(
                        "INSERT INTO tenant_data_keys (tenant_id, key_version, wrapped_key, \
                         nonce, master_key_version, created_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id) DO NOTHING",
                    )
                    .bind(t)
                    .bind(FIRST_DATA_KEY_VERSION)
                    .bind(wrapped)
                    .bind(nonce)
                    .bind(master.version())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(tenant_missing(tenant))?
                    .rows_affected();
                    if inserted == 1 {
                        (dk, FIRST_DATA_KEY_VERSION)
                    } else {
                        let row: DataKeyRow = sqlx::query_as(SELECT_DATA_KEY)
                            .bind(t)
                            .fetch_one(&mut *tx)
                            .await?;
                        unwrap_row(&master, tenant, row)?
                    }
                }
            };
            let (ciphertext, nonce) = data_key.seal(t, connector, plain.expose())?;
            sqlx::query(
                "INSERT INTO connector_credentials (tenant_id, connector, ciphertext, nonce, \
                 key_version, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (tenant_id, connector) DO UPDATE SET \
                 ciphertext = excluded.ciphertext, nonce = excluded.nonce, \
                 key_version = excluded.key_version, rotated_at_ms = excluded.created_at_ms, \
                 rotations = connector_credentials.rotations + 1",
            )
            .bind(t)
            .bind(connector)
            .bind(ciphertext)
            .bind(nonce)
            .bind(key_version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        });
        self.credential_info(tenant, connector)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: format!("credentials of {connector}"),
            })
    }

    /// Decrypts a connector's credentials. For the hub's own use (connectors, "test
    /// connection"): never put the result in a response or a log line.
    pub async fn get_credentials(
        &self,
        tenant: &TenantId,
        connector: &str,
    ) -> Result<Option<Secret<Json>>> {
        let row: Option<SealedRow> = on_pool!(self, |p| sqlx::query_as(
            "SELECT c.ciphertext, c.nonce, k.key_version, k.wrapped_key, k.nonce, \
                 k.master_key_version \
                 FROM connector_credentials c JOIN tenant_data_keys k ON k.tenant_id = c.tenant_id \
                 WHERE c.tenant_id = $1 AND c.connector = $2"
        )
        .bind(tenant.as_str())
        .bind(connector)
        .fetch_optional(p)
        .await?);
        let Some((ct, nonce, key_version, wrapped, key_nonce, master_version)) = row else {
            return Ok(None);
        };
        let (data_key, _) = unwrap_row(
            &self.master_key(),
            tenant,
            (key_version, wrapped, key_nonce, master_version),
        )?;
        let plain = Secret::new(data_key.open(tenant.as_str(), connector, &ct, &nonce)?);
        let json = serde_json::from_slice(plain.expose())
            .map_err(|_| ControlError::Crypto("decrypted credentials are not JSON".to_string()))?;
        Ok(Some(Secret::new(json)))
    }

    pub async fn credential_info(
        &self,
        tenant: &TenantId,
        connector: &str,
    ) -> Result<Option<CredentialInfo>> {
        Ok(self
            .list_credentials(tenant)
            .await?
            .into_iter()
            .find(|c| c.connector == connector))
    }

    /// Metadata of every connector credential a tenant holds (the compliance report's
    /// credential age and rotations).
    pub async fn list_credentials(&self, tenant: &TenantId) -> Result<Vec<CredentialInfo>> {
        let rows: Vec<(String, i64, i64, Option<i64>, i64)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT connector, key_version, created_at_ms, rotated_at_ms, rotations \
             FROM connector_credentials WHERE tenant_id = $1 ORDER BY connector"
        )
        .bind(tenant.as_str())
        .fetch_all(p)
        .await?);
        Ok(rows
            .into_iter()
            .map(
                |(connector, key_version, created_at_ms, rotated_at_ms, rotations)| {
                    CredentialInfo {
                        connector,
                        key_version,
                        created_at_ms,
                        rotated_at_ms,
                        rotations,
                    }
                },
            )
            .collect())
    }

    /// Deletes a connector's credentials; answers whether there were any.
    pub async fn delete_credentials(&self, tenant: &TenantId, connector: &str) -> Result<bool> {
        let n = on_pool!(self, |p| sqlx::query(
            "DELETE FROM connector_credentials WHERE tenant_id = $1 AND connector = $2"
        )
        .bind(tenant.as_str())
        .bind(connector)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n > 0)
    }

    /// Re-wraps every tenant's data key under `new` in one transaction (recording the
    /// rotation in `master_key_rotations`), then uses `new` from here on; answers how many
    /// keys were re-wrapped. Credentials' ciphertexts are
    /// untouched. Other control nodes must be restarted with the new key (they say so,
    /// naming both versions, until they are).
    pub async fn rotate_master_key(&self, new: MasterKey) -> Result<u64> {
        let old = self.master_key();
        if new.version() == old.version() {
            return Err(ControlError::invalid(
                "master_key_version",
                format!(
                    "the new master key needs a version other than {}",
                    old.version()
                ),
            ));
        }
        let now = self.now_ms();
        let count = in_tx!(self, |tx| {
            let rows: Vec<TenantKeyRow> = sqlx::query_as(
                "SELECT tenant_id, key_version, wrapped_key, nonce, master_key_version \
                 FROM tenant_data_keys ORDER BY tenant_id",
            )
            .fetch_all(&mut *tx)
            .await?;
            let mut count = 0u64;
            for (tenant, key_version, wrapped, nonce, master_version) in rows {
                let tenant = TenantId::new(tenant)?;
                let (dk, _) =
                    unwrap_row(&old, &tenant, (key_version, wrapped, nonce, master_version))?;
                let (wrapped, nonce) = new.wrap(tenant.as_str(), &dk)?;
                sqlx::query(
                    "UPDATE tenant_data_keys SET wrapped_key = $1, nonce = $2, \
                     master_key_version = $3, rewrapped_at_ms = $4 WHERE tenant_id = $5",
                )
                .bind(wrapped)
                .bind(nonce)
                .bind(new.version())
                .bind(now)
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?;
                count += 1;
            }
            // In the same transaction: the compliance report's record of rotations.
            sqlx::query(
                "INSERT INTO master_key_rotations (from_version, to_version, rotated_at_ms, \
                 data_keys_rewrapped) VALUES ($1, $2, $3, $4)",
            )
            .bind(old.version())
            .bind(new.version())
            .bind(now)
            .bind(count as i64)
            .execute(&mut *tx)
            .await?;
            count
        });
        self.set_master_key(new);
        Ok(count)
    }
}

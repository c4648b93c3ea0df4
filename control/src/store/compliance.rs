//! The compliance report for the FTC Safeguards Rule (16 CFR 314.4: access controls,
//! monitoring of authorized users, encryption and key management), for one tenant and one
//! period `[from_ms, to_ms)`:
//!
//! - **access**: who can act in the tenant and with which role — members (since when, last
//!   successful sign-in, disabled or not), platform admins (who can act in every tenant), and
//!   the API tokens live at generation time (role, creator, expiry, last use to the minute);
//! - **credentials**: each connector credential's age, last rotation, rotations ever and in
//!   the period (from the audit log's `credentials.rotate` entries);
//! - **failed sign-ins** of the tenant's members in the period, per sign-in name, with how
//!   many client addresses they came from;
//! - **data exports** in the period: the audit log's `audit.export` and `compliance.report`
//!   entries (who, when, from where, what range);
//! - **master key**: the version the tenant's data key is wrapped under, when it was created
//!   and last re-wrapped, and the master-key rotations of the period (platform-wide: one
//!   rotation re-wraps every tenant's key).
//!
//! Read from the tables that already hold these facts; nothing is kept for the report alone
//! but a token's last use and the rotations' record (migration 0006).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::auth::{Role, TenantId};
use crate::error::{ControlError, Result};

use super::{ControlStore, on_pool};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The report (serialised as the API's and `hub audit compliance`'s JSON).
#[derive(Debug, Clone, Serialize)]
pub struct ComplianceReport {
    /// The tenant's id.
    pub tenant: String,
    /// The tenant's name.
    pub tenant_name: String,
    /// The period's first instant (Unix ms, included).
    pub from_ms: i64,
    /// The period's end (Unix ms, excluded).
    pub to_ms: i64,
    /// When the report was generated: the access and credential sections are as of then.
    pub generated_at_ms: i64,
    /// Who has access, with which role.
    pub access: AccessSection,
    /// Connector credentials' age and rotations.
    pub credentials: Vec<CredentialAge>,
    /// Failed sign-ins of the tenant's members in the period.
    pub failed_sign_ins: FailedSignIns,
    /// Exports of data (the audit log, this report) in the period.
    pub data_exports: Vec<DataExport>,
    /// The tenant's data key and the master-key rotations of the period.
    pub master_key: MasterKeySection,
}

/// Who has access.
#[derive(Debug, Clone, Serialize)]
pub struct AccessSection {
    /// The tenant's members, by e-mail address.
    pub members: Vec<MemberAccess>,
    /// Platform admins: every tenant's data is within their reach.
    pub platform_admins: Vec<PlatformAdmin>,
    /// API tokens neither revoked nor expired at generation time, newest first.
    pub api_tokens: Vec<TokenAccess>,
}

/// A member of the tenant.
#[derive(Debug, Clone, Serialize)]
pub struct MemberAccess {
    pub user_id: String,
    pub email: String,
    pub role: Role,
    /// When the membership was made (a role change keeps the date).
    pub member_since_ms: i64,
    /// A disabled user cannot sign in; the membership stays until removed.
    pub disabled: bool,
    /// The last successful password sign-in, if any is on record.
    pub last_sign_in_ms: Option<i64>,
}

/// A platform admin.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformAdmin {
    pub user_id: String,
    pub email: String,
    pub disabled: bool,
}

/// A live API token (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct TokenAccess {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_by: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// To the minute; `None` if it never authenticated a request.
    pub last_used_at_ms: Option<i64>,
}

/// One connector credential's age and rotations.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialAge {
    pub connector: String,
    pub key_version: i64,
    pub created_at_ms: i64,
    pub rotated_at_ms: Option<i64>,
    /// Rotations since the credential was first stored.
    pub rotations: i64,
    /// Rotations inside the period.
    pub rotations_in_period: i64,
    /// Whole days since first stored, at generation time.
    pub age_days: i64,
    /// Whole days since the secret last changed (stored or rotated), at generation time.
    pub days_since_rotation: i64,
}

/// Failed sign-ins in the period.
#[derive(Debug, Clone, Serialize)]
pub struct FailedSignIns {
    /// Every failed attempt naming one of the tenant's members.
    pub total: i64,
    /// Per sign-in name, most failures first.
    pub by_login: Vec<FailedSignIn>,
}

/// Failed sign-ins of one sign-in name.
#[derive(Debug, Clone, Serialize)]
pub struct FailedSignIn {
    pub login: String,
    pub failures: i64,
    /// Distinct client addresses the failures came from.
    pub client_addrs: i64,
    pub last_at_ms: i64,
}

/// One export of data, from the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct DataExport {
    /// The audit entry's seq (to find it in `hub audit export`).
    pub audit_seq: i64,
    pub at_ms: i64,
    pub actor: String,
    /// `audit.export` or `compliance.report`.
    pub action: String,
    pub target: String,
    /// What was exported: format and range, as the entry recorded it.
    pub details: Option<Value>,
    pub client_addr: Option<String>,
}

/// The tenant's data key and the master-key rotations.
#[derive(Debug, Clone, Serialize)]
pub struct MasterKeySection {
    /// `None` until the tenant stores its first credential.
    pub data_key: Option<DataKeyStatus>,
    /// Master-key rotations in the period, oldest first (platform-wide).
    pub rotations: Vec<MasterKeyRotation>,
}

/// Where the tenant's data key stands.
#[derive(Debug, Clone, Serialize)]
pub struct DataKeyStatus {
    pub key_version: i64,
    /// The master key's version it is wrapped under.
    pub master_key_version: i64,
    pub created_at_ms: i64,
    /// When a master-key rotation last re-wrapped it.
    pub rewrapped_at_ms: Option<i64>,
}

/// One master-key rotation.
#[derive(Debug, Clone, Serialize)]
pub struct MasterKeyRotation {
    pub from_version: i64,
    pub to_version: i64,
    pub rotated_at_ms: i64,
    /// Tenant data keys it re-wrapped.
    pub data_keys_rewrapped: i64,
}

/// The tenant's members' sign-in names, as a subquery on `$1` (the tenant).
const MEMBER_LOGINS: &str =
    "SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.tenant_id = $1";

impl ControlStore {
    /// The compliance report of `tenant` for `[from_ms, to_ms)` (see the module docs).
    pub async fn compliance_report(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<ComplianceReport> {
        if from_ms > to_ms {
            return Err(ControlError::invalid("from_ms", "must not be after to_ms"));
        }
        let now = self.now_ms();
        let t = self
            .get_tenant(tenant)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: format!("tenant {tenant}"),
            })?;
        let id = tenant.as_str();

        let members: Vec<(String, String, String, i64, Option<i64>)> =
            on_pool!(self, |p| sqlx::query_as(
                "SELECT u.id, u.email, m.role, m.created_at_ms, u.disabled_at_ms \
                 FROM memberships m JOIN users u ON u.id = m.user_id \
                 WHERE m.tenant_id = $1 ORDER BY u.email"
            )
            .bind(id)
            .fetch_all(p)
            .await?);
        let last_sign_in: BTreeMap<String, i64> = on_pool!(self, |p| {
            let sql = format!(
                "SELECT login, MAX(attempted_at_ms) FROM login_attempts \
                 WHERE succeeded = TRUE AND login IN ({MEMBER_LOGINS}) GROUP BY login"
            );
            sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_all(p)
                .await?
        })
        .into_iter()
        .collect();
        let members = members
            .into_iter()
            .map(|(user_id, email, role, since, disabled)| {
                Ok(MemberAccess {
                    last_sign_in_ms: last_sign_in.get(&email).copied(),
                    user_id,
                    email,
                    role: role.parse()?,
                    member_since_ms: since,
                    disabled: disabled.is_some(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let admins: Vec<(String, String, Option<i64>)> = on_pool!(self, |p| {
            sqlx::query_as(
            "SELECT id, email, disabled_at_ms FROM users WHERE platform_admin = TRUE ORDER BY email"
        )
        .fetch_all(p)
        .await?
        });
        let platform_admins = admins
            .into_iter()
            .map(|(user_id, email, disabled)| PlatformAdmin {
                user_id,
                email,
                disabled: disabled.is_some(),
            })
            .collect();
        let api_tokens = self
            .list_api_tokens(tenant)
            .await?
            .into_iter()
            .filter(|t| t.revoked_at_ms.is_none() && t.expires_at_ms > now)
            .map(|t| TokenAccess {
                id: t.id,
                name: t.name,
                role: t.role,
                created_by: t.created_by.map(|u| u.0),
                created_at_ms: t.created_at_ms,
                expires_at_ms: t.expires_at_ms,
                last_used_at_ms: t.last_used_at_ms,
            })
            .collect();

        let rotated: BTreeMap<String, i64> =
            on_pool!(self, |p| sqlx::query_as::<_, (String, i64)>(
                "SELECT target, COUNT(*) FROM audit_log WHERE tenant_id = $1 \
             AND action = 'credentials.rotate' AND at_ms >= $2 AND at_ms < $3 GROUP BY target"
            )
            .bind(id)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(p)
            .await?)
            .into_iter()
            .collect();
        let credentials = self
            .list_credentials(tenant)
            .await?
            .into_iter()
            .map(|c| CredentialAge {
                rotations_in_period: rotated
                    .get(&format!("connector/{}", c.connector))
                    .copied()
                    .unwrap_or(0),
                age_days: (now - c.created_at_ms).max(0) / DAY_MS,
                days_since_rotation: (now - c.rotated_at_ms.unwrap_or(c.created_at_ms)).max(0)
                    / DAY_MS,
                connector: c.connector,
                key_version: c.key_version,
                created_at_ms: c.created_at_ms,
                rotated_at_ms: c.rotated_at_ms,
                rotations: c.rotations,
            })
            .collect();

        let failed: Vec<(String, i64, i64, i64)> = on_pool!(self, |p| {
            let sql = format!(
                "SELECT login, COUNT(*), COUNT(DISTINCT client_addr), MAX(attempted_at_ms) \
                 FROM login_attempts WHERE succeeded = FALSE \
                 AND attempted_at_ms >= $2 AND attempted_at_ms < $3 \
                 AND login IN ({MEMBER_LOGINS}) \
                 GROUP BY login ORDER BY COUNT(*) DESC, login"
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(p)
                .await?
        });
        let failed_sign_ins = FailedSignIns {
            total: failed.iter().map(|f| f.1).sum(),
            by_login: failed
                .into_iter()
                .map(|(login, failures, client_addrs, last_at_ms)| FailedSignIn {
                    login,
                    failures,
                    client_addrs,
                    last_at_ms,
                })
                .collect(),
        };

        type ExportRow = (
            i64,
            i64,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
        );
        let exports: Vec<ExportRow> = on_pool!(self, |p| sqlx::query_as(
            "SELECT seq, at_ms, actor, action, target, after_json, client_addr FROM audit_log \
             WHERE tenant_id = $1 AND action IN ('audit.export', 'compliance.report') \
             AND at_ms >= $2 AND at_ms < $3 ORDER BY seq"
        )
        .bind(id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(p)
        .await?);
        let data_exports = exports
            .into_iter()
            .map(
                |(audit_seq, at_ms, actor, action, target, after, client_addr)| DataExport {
                    audit_seq,
                    at_ms,
                    actor,
                    action,
                    target,
                    details: after.and_then(|a| serde_json::from_str(&a).ok()),
                    client_addr,
                },
            )
            .collect();

        let data_key: Option<(i64, i64, i64, Option<i64>)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT key_version, master_key_version, created_at_ms, rewrapped_at_ms \
             FROM tenant_data_keys WHERE tenant_id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await?);
        let rotations: Vec<(i64, i64, i64, i64)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT from_version, to_version, rotated_at_ms, data_keys_rewrapped \
             FROM master_key_rotations WHERE rotated_at_ms >= $1 AND rotated_at_ms < $2 \
             ORDER BY id"
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(p)
        .await?);
        let master_key = MasterKeySection {
            data_key: data_key.map(
                |(key_version, master_key_version, created_at_ms, rewrapped_at_ms)| DataKeyStatus {
                    key_version,
                    master_key_version,
                    created_at_ms,
                    rewrapped_at_ms,
                },
            ),
            rotations: rotations
                .into_iter()
                .map(
                    |(from_version, to_version, rotated_at_ms, data_keys_rewrapped)| {
                        MasterKeyRotation {
                            from_version,
                            to_version,
                            rotated_at_ms,
                            data_keys_rewrapped,
                        }
                    },
                )
                .collect(),
        };

        Ok(ComplianceReport {
            tenant: t.id.to_string(),
            tenant_name: t.name,
            from_ms,
            to_ms,
            generated_at_ms: now,
            access: AccessSection {
                members,
                platform_admins,
                api_tokens,
            },
            credentials,
            failed_sign_ins,
            data_exports,
            master_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::auth::{Role, TenantId};
    use crate::crypto::MasterKey;
    use crate::secret::Secret;
    use crate::store::audit::AuditEntry;
    use crate::store::testing::on_both_backends;

    const T0: i64 = 1_800_000_000_000;
    const DAY: i64 = 24 * 3600 * 1000;
    const PASSWORD: &str = "correct horse battery staple";

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    on_both_backends! {
        async fn the_report_names_access_credentials_sign_ins_exports_and_key_rotations(h) {
            let s = &h.store;
            s.pin_clock_ms(T0);
            let (acme, globex) = (t("acme"), t("globex"));
            s.create_tenant(&acme, "Acme Motors").await.unwrap();
            s.create_tenant(&globex, "Globex Auto").await.unwrap();
            let pw = Secret::new(PASSWORD.to_string());
            let ann = s.create_user("ann@acme.example", &pw, false).await.unwrap();
            let bob = s.create_user("bob@acme.example", &pw, false).await.unwrap();
            let gil = s.create_user("gil@globex.example", &pw, false).await.unwrap();
            s.create_user("root@hub.example", &pw, true).await.unwrap();
            s.set_membership(&ann, &acme, Role::Owner).await.unwrap();
            s.set_membership(&bob, &acme, Role::Viewer).await.unwrap();
            s.set_membership(&gil, &globex, Role::Owner).await.unwrap();

            // Credentials on day 0, one rotated on day 3 (and audited as the API does).
            let creds = Secret::new(json!({ "api_key": "k" }));
            s.put_credentials(&acme, "salesforce", &creds).await.unwrap();
            s.put_credentials(&acme, "hubspot", &creds).await.unwrap();
            s.pin_clock_ms(T0 + 3 * DAY);
            s.put_credentials(&acme, "salesforce", &creds).await.unwrap();
            let rotate = AuditEntry {
                actor: format!("user:{ann}"),
                tenant: Some(acme.clone()),
                action: "credentials.rotate".into(),
                target: "connector/salesforce".into(),
                ..AuditEntry::default()
            };
            s.append_audit(rotate.clone()).await.unwrap();
            // Globex's rotation is not Acme's.
            s.append_audit(AuditEntry { tenant: Some(globex.clone()), ..rotate }).await.unwrap();

            // Sign-ins on day 4: bob fails twice from two places then succeeds; gil (globex) fails.
            s.pin_clock_ms(T0 + 4 * DAY);
            let wrong = Secret::new("not the password".to_string());
            assert!(s.login("bob@acme.example", &wrong, "192.0.2.1").await.is_err());
            assert!(s.login("bob@acme.example", &wrong, "192.0.2.2").await.is_err());
            assert!(s.login("gil@globex.example", &wrong, "192.0.2.3").await.is_err());
            s.login("bob@acme.example", &pw, "192.0.2.1").await.unwrap();

            // Tokens: one live and used, one revoked, one of globex.
            let live = s.create_api_token(&acme, Role::Operator, "dms sync", 30 * DAY, Some(&ann)).await.unwrap();
            let gone = s.create_api_token(&acme, Role::Admin, "old", 30 * DAY, None).await.unwrap();
            s.revoke_api_token(&acme, &gone.info.id).await.unwrap();
            s.create_api_token(&globex, Role::Owner, "globex", 30 * DAY, None).await.unwrap();
            assert!(s.authenticate_api_token(live.token.expose()).await.unwrap().is_some());

            // An export on day 5, a master-key rotation on day 6.
            s.pin_clock_ms(T0 + 5 * DAY);
            s.append_audit(AuditEntry {
                actor: format!("user:{ann}"),
                tenant: Some(acme.clone()),
                action: "audit.export".into(),
                target: "audit/acme".into(),
                after: Some(json!({ "format": "csv", "from_ms": 0, "to_ms": T0 })),
                client_addr: Some("192.0.2.9".into()),
                ..AuditEntry::default()
            }).await.unwrap();
            s.pin_clock_ms(T0 + 6 * DAY);
            assert_eq!(s.rotate_master_key(MasterKey::generate(2)).await.unwrap(), 1);

            s.pin_clock_ms(T0 + 10 * DAY);
            let r = s.compliance_report(&acme, T0 + DAY, T0 + 7 * DAY).await.unwrap();
            assert_eq!((r.tenant.as_str(), r.tenant_name.as_str()), ("acme", "Acme Motors"));
            assert_eq!(r.generated_at_ms, T0 + 10 * DAY);

            let members: Vec<(&str, Role, Option<i64>)> = r.access.members.iter()
                .map(|m| (m.email.as_str(), m.role, m.last_sign_in_ms)).collect();
            assert_eq!(members, vec![
                ("ann@acme.example", Role::Owner, None),
                ("bob@acme.example", Role::Viewer, Some(T0 + 4 * DAY)),
            ]);
            assert_eq!(r.access.platform_admins.len(), 1);
            assert_eq!(r.access.platform_admins[0].email, "root@hub.example");
            assert_eq!(r.access.api_tokens.len(), 1, "{:?}", r.access.api_tokens);
            let tok = &r.access.api_tokens[0];
            assert_eq!((tok.name.as_str(), tok.role), ("dms sync", Role::Operator));
            assert_eq!(tok.last_used_at_ms, Some(T0 + 4 * DAY));
            assert_eq!(tok.created_by.as_deref(), Some(ann.0.as_str()));

            let creds: Vec<(&str, i64, i64, i64, i64)> = r.credentials.iter()
                .map(|c| (c.connector.as_str(), c.rotations, c.rotations_in_period, c.age_days, c.days_since_rotation))
                .collect();
            assert_eq!(creds, vec![("hubspot", 0, 0, 10, 10), ("salesforce", 1, 1, 10, 7)]);

            assert_eq!(r.failed_sign_ins.total, 2);
            let f = &r.failed_sign_ins.by_login[0];
            assert_eq!((f.login.as_str(), f.failures, f.client_addrs), ("bob@acme.example", 2, 2));

            assert_eq!(r.data_exports.len(), 1);
            let e = &r.data_exports[0];
            assert_eq!((e.action.as_str(), e.client_addr.as_deref()), ("audit.export", Some("192.0.2.9")));
            assert_eq!(e.details.as_ref().unwrap()["format"], "csv");

            let dk = r.master_key.data_key.as_ref().expect("acme has a data key");
            assert_eq!((dk.master_key_version, dk.rewrapped_at_ms), (2, Some(T0 + 6 * DAY)));
            assert_eq!(r.master_key.rotations.len(), 1);
            let rot = &r.master_key.rotations[0];
            assert_eq!((rot.from_version, rot.to_version, rot.data_keys_rewrapped), (1, 2, 1));

            // A period before any of it: access and credentials (as of now) remain, events do not.
            let early = s.compliance_report(&acme, T0 - 2 * DAY, T0 - DAY).await.unwrap();
            assert_eq!(early.failed_sign_ins.total, 0);
            assert!(early.data_exports.is_empty() && early.master_key.rotations.is_empty());
            assert_eq!(early.credentials[1].rotations_in_period, 0);
            assert_eq!(early.access.members.len(), 2);

            let err = s.compliance_report(&acme, T0, T0 - 1).await.unwrap_err();
            assert_eq!(err.code(), "invalid_input");
            assert!(s.compliance_report(&t("nobody"), 0, T0).await.is_err());
        }

        async fn a_token_records_its_last_use_at_most_once_a_minute(h) {
            let s = &h.store;
            s.pin_clock_ms(T0);
            let acme = t("acme");
            s.create_tenant(&acme, "Acme").await.unwrap();
            let tok = s.create_api_token(&acme, Role::Viewer, "ci", DAY, None).await.unwrap();
            let last = || async { s.list_api_tokens(&acme).await.unwrap()[0].last_used_at_ms };
            assert_eq!(last().await, None);
            s.authenticate_api_token(tok.token.expose()).await.unwrap().unwrap();
            assert_eq!(last().await, Some(T0));
            s.pin_clock_ms(T0 + 59_000);
            s.authenticate_api_token(tok.token.expose()).await.unwrap().unwrap();
            assert_eq!(last().await, Some(T0), "within the minute: not rewritten");
            s.pin_clock_ms(T0 + 60_000);
            s.authenticate_api_token(tok.token.expose()).await.unwrap().unwrap();
            assert_eq!(last().await, Some(T0 + 60_000));
        }
    }
}

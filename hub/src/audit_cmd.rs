//! `hub audit`: check the control plane's hash-chained audit log, export a date range of it,
//! and write a tenant's FTC Safeguards Rule compliance report, straight from the store (no
//! running node needed).

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Subcommand, ValueEnum};
use hub_control::store::audit::AuditEntry;
use hub_control::{ControlStore, MasterKey, StoreSettings, TenantId};

/// What `hub audit` does.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Walk the whole chain; print every broken entry and exit non-zero if there is one.
    Verify {
        /// The control-plane store: `sqlite://FILE` or `postgres://...`.
        #[arg(long, env = "HUB_CONTROL_STORE")]
        store: String,
    },
    /// Write the entries of a date range to stdout, as CSV or JSON, hashes included.
    Export {
        /// The control-plane store: `sqlite://FILE` or `postgres://...`.
        #[arg(long, env = "HUB_CONTROL_STORE")]
        store: String,
        /// First day or instant included: `2026-01-01`, an RFC 3339 time, or Unix ms.
        #[arg(long)]
        from: String,
        /// First day or instant excluded (same forms as --from).
        #[arg(long)]
        to: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Only this tenant's entries (default: every tenant's and the platform's).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Write a tenant's compliance report (FTC Safeguards Rule) for a period to stdout, as
    /// JSON: who has access with which role, credential age and rotations, failed sign-ins,
    /// data exports, master-key rotations. Generating it is recorded in the audit log.
    Compliance {
        /// The control-plane store: `sqlite://FILE` or `postgres://...`.
        #[arg(long, env = "HUB_CONTROL_STORE")]
        store: String,
        /// The tenant's id.
        #[arg(long)]
        tenant: String,
        /// First day or instant included (same forms as `export`).
        #[arg(long)]
        from: String,
        /// First day or instant excluded.
        #[arg(long)]
        to: String,
    },
}

/// The export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One header row, then one row per entry.
    Csv,
    /// A JSON array of entries.
    Json,
}

/// Runs one `hub audit` command.
pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { store } => {
            let store = open(&store).await?;
            let report = store.verify_audit().await?;
            store.close().await;
            for b in &report.breaks {
                println!("BROKEN {b}");
            }
            if !report.is_intact() {
                bail!(
                    "the audit log is broken: {} problem(s) in {} entries (head at {})",
                    report.breaks.len(),
                    report.entries_checked,
                    report.head_seq
                );
            }
            println!(
                "audit log intact: {} entries, head at {}",
                report.entries_checked, report.head_seq
            );
            Ok(())
        }
        AuditCommand::Export {
            store,
            from,
            to,
            format,
            tenant,
        } => {
            let from_ms = parse_time(&from).context("--from")?;
            let to_ms = parse_time(&to).context("--to")?;
            let tenant = tenant.map(TenantId::new).transpose()?;
            let store = open(&store).await?;
            let out = match format {
                ExportFormat::Csv => {
                    store
                        .export_audit_csv(tenant.as_ref(), from_ms, to_ms)
                        .await
                }
                ExportFormat::Json => {
                    store
                        .export_audit_json(tenant.as_ref(), from_ms, to_ms)
                        .await
                }
            };
            store.close().await;
            print!("{}", out?);
            Ok(())
        }
        AuditCommand::Compliance {
            store,
            tenant,
            from,
            to,
        } => {
            let from_ms = parse_time(&from).context("--from")?;
            let to_ms = parse_time(&to).context("--to")?;
            let tenant = TenantId::new(tenant)?;
            let store = open(&store).await?;
            let report = compliance(&store, &tenant, from_ms, to_ms).await;
            store.close().await;
            println!("{}", serde_json::to_string_pretty(&report?)?);
            Ok(())
        }
    }
}

/// The report, audited first (a sensitive read, as over the API); the actor is the operating
/// system's user running the command.
async fn compliance(
    store: &ControlStore,
    tenant: &TenantId,
    from_ms: i64,
    to_ms: i64,
) -> anyhow::Result<hub_control::store::compliance::ComplianceReport> {
    if store.get_tenant(tenant).await?.is_none() {
        bail!("no tenant {tenant} in this store");
    }
    if from_ms > to_ms {
        bail!("--from is after --to");
    }
    let who = std::env::var("USER").unwrap_or_else(|_| "unknown".to_string());
    store
        .append_audit(AuditEntry {
            actor: format!("cli:{who}"),
            tenant: Some(tenant.clone()),
            action: "compliance.report".to_string(),
            target: format!("compliance-report/{tenant}"),
            before: None,
            after: Some(
                serde_json::json!({ "format": "json", "from_ms": from_ms, "to_ms": to_ms }),
            ),
            client_addr: None,
        })
        .await?;
    Ok(store.compliance_report(tenant, from_ms, to_ms).await?)
}

async fn open(url: &str) -> anyhow::Result<ControlStore> {
    // Connecting creates a missing SQLite file; a mistyped path must not verify as an empty,
    // intact log.
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap_or(rest);
        if !path.contains(":memory:") && !std::path::Path::new(path).exists() {
            bail!("{path}: no control-plane store there");
        }
    }
    // The audit log holds nothing encrypted: without a configured master key, a throwaway one
    // lets the store open (it is never used to decrypt).
    let key = MasterKey::from_env().unwrap_or_else(|_| MasterKey::generate(1));
    ControlStore::connect(url, key, StoreSettings::default())
        .await
        .context("opening the control-plane store")
}

/// `2026-01-31` (midnight UTC), an RFC 3339 time, or Unix milliseconds.
fn parse_time(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        return Ok(DateTime::<Utc>::from_naive_utc_and_offset(midnight, Utc).timestamp_millis());
    }
    bail!("{text:?} is not a date (2026-01-31), an RFC 3339 time or Unix milliseconds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_compliance_report_is_audited_and_names_the_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, MasterKey::generate(1), StoreSettings::default())
            .await
            .unwrap();
        let acme = TenantId::new("acme").unwrap();
        assert!(
            compliance(&store, &acme, 0, 1).await.is_err(),
            "no such tenant"
        );
        store.create_tenant(&acme, "Acme Motors").await.unwrap();
        let report = compliance(&store, &acme, 0, i64::MAX).await.unwrap();
        assert_eq!(report.tenant_name, "Acme Motors");
        assert_eq!(report.data_exports.len(), 1, "this report's own entry");
        assert!(report.data_exports[0].actor.starts_with("cli:"));
        assert!(compliance(&store, &acme, 2, 1).await.is_err());
        assert!(store.verify_audit().await.unwrap().is_intact());
        store.close().await;
    }

    #[test]
    fn times_parse_in_every_form() {
        assert_eq!(parse_time("1800000000000").unwrap(), 1_800_000_000_000);
        assert_eq!(parse_time("1970-01-02").unwrap(), 86_400_000);
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert!(parse_time("yesterday").is_err());
    }
}

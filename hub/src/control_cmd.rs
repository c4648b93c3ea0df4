//! `hub control`: what must happen in the control-plane store before anyone can sign in.

use anyhow::Context;
use clap::Subcommand;
use hub_control::{ControlStore, MasterKey, Secret, StoreSettings};

/// What `hub control` does.
#[derive(Subcommand, Debug)]
pub enum ControlCommand {
    /// Creates a platform admin, who can then sign in at `POST /api/v1/auth/login` and create
    /// tenants. The password is read from `HUB_ADMIN_PASSWORD`, never from the command line
    /// (which shell history and `ps` would keep).
    AddAdmin {
        /// The control-plane store: `sqlite://FILE` or `postgres://...`.
        #[arg(long, env = "HUB_CONTROL_STORE")]
        store: String,
        /// The admin's e-mail address (the sign-in name).
        #[arg(long)]
        email: String,
    },
    /// Rotates the master key: re-wraps every tenant's data key under the new key, in one
    /// transaction. The current key comes from `HUB_MASTER_KEY` / `HUB_MASTER_KEY_FILE`, the
    /// new one from `HUB_NEW_MASTER_KEY` or `--new-key-file` (base64 of 32 bytes), its version
    /// from `--new-version` (default: the current one plus 1). Restart every node with the new
    /// key afterwards; until then they refuse to open data keys and say which version they need.
    RotateKey {
        /// The control-plane store: `sqlite://FILE` or `postgres://...`.
        #[arg(long, env = "HUB_CONTROL_STORE")]
        store: String,
        /// A file holding the new key (instead of `HUB_NEW_MASTER_KEY`).
        #[arg(long)]
        new_key_file: Option<std::path::PathBuf>,
        /// The new key's version.
        #[arg(long)]
        new_version: Option<i64>,
    },
}

pub async fn run(cmd: ControlCommand) -> anyhow::Result<()> {
    match cmd {
        ControlCommand::AddAdmin { store, email } => {
            let password = std::env::var("HUB_ADMIN_PASSWORD")
                .context("set HUB_ADMIN_PASSWORD to the new admin's password")?;
            let key = MasterKey::from_env()
                .context("set HUB_MASTER_KEY (base64 of 32 bytes) or HUB_MASTER_KEY_FILE")?;
            let store = ControlStore::connect(&store, key, StoreSettings::default())
                .await
                .context("opening the control store")?;
            let id = store
                .create_user(&email, &Secret::new(password), true)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("platform admin created: user {id}");
            Ok(())
        }
        ControlCommand::RotateKey {
            store,
            new_key_file,
            new_version,
        } => {
            let old = MasterKey::from_env()
                .context("set HUB_MASTER_KEY (or HUB_MASTER_KEY_FILE) to the current master key")?;
            let text = match &new_key_file {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
                None => std::env::var("HUB_NEW_MASTER_KEY")
                    .context("set HUB_NEW_MASTER_KEY to the new key, or pass --new-key-file")?,
            };
            let version = new_version.unwrap_or(old.version() + 1);
            let new = MasterKey::from_base64(version, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
            let old_version = old.version();
            let store = ControlStore::connect(&store, old, StoreSettings::default())
                .await
                .context("opening the control store")?;
            let n = store
                .rotate_master_key(new)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "master key rotated from version {old_version} to {version}: {n} tenant data keys re-wrapped; \
                 restart every node with the new key (HUB_MASTER_KEY_VERSION={version})"
            );
            Ok(())
        }
    }
}

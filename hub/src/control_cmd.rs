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
    }
}

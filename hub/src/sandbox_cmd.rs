//! `hub sandbox`: the HubSpot and Salesforce simulators (hub-sandbox), seeded, on fixed local
//! ports, for trying a connector by hand. Prints base URLs and credentials; stops on Ctrl-C.

use clap::Args;
use hub_sandbox::hubspot::seed::SeedSize as HubSpotSeed;
use hub_sandbox::salesforce::seed::SeedSize as SalesforceSeed;
use hub_sandbox::{HubSpotConfig, HubSpotSandbox, SalesforceConfig, SalesforceSandbox};

#[derive(Args, Debug)]
pub struct SandboxArgs {
    /// Address of the HubSpot simulator.
    #[arg(
        long,
        env = "HUB_SANDBOX_HUBSPOT_LISTEN",
        default_value = "127.0.0.1:8711"
    )]
    hubspot_listen: String,
    /// Address of the Salesforce simulator.
    #[arg(
        long,
        env = "HUB_SANDBOX_SALESFORCE_LISTEN",
        default_value = "127.0.0.1:8712"
    )]
    salesforce_listen: String,
    /// Seed of the generated data (same seed, same records).
    #[arg(long, env = "HUB_SANDBOX_SEED", default_value_t = 1)]
    seed: u64,
    /// Contacts to generate in each sandbox.
    #[arg(long, env = "HUB_SANDBOX_CONTACTS", default_value_t = 20_000)]
    contacts: usize,
    /// Where the HubSpot sandbox posts webhooks (none by default).
    #[arg(long, env = "HUB_SANDBOX_HUBSPOT_WEBHOOK_URL")]
    hubspot_webhook_url: Option<String>,
}

pub async fn run(args: SandboxArgs) -> anyhow::Result<()> {
    let mut hs = HubSpotConfig {
        listen: args.hubspot_listen.clone(),
        seed: args.seed,
        seed_size: HubSpotSeed {
            contacts: args.contacts,
            companies: args.contacts / 20,
            deals: args.contacts / 4,
        },
        ..Default::default()
    };
    hs.webhook.target_url = args.hubspot_webhook_url.clone();
    let sf = SalesforceConfig {
        listen: args.salesforce_listen.clone(),
        seed: args.seed,
        seed_size: SalesforceSeed {
            accounts: args.contacts / 2,
            contacts: args.contacts,
            leads: args.contacts / 4,
            opportunities: args.contacts / 4,
            vehicles: args.contacts / 2,
        },
        ..Default::default()
    };
    let hubspot = HubSpotSandbox::start(hs).await?;
    let salesforce = SalesforceSandbox::start(sf).await?;
    let h = hubspot.config();
    let s = salesforce.config();
    println!(
        "\nVendor sandboxes are running (seed {seed}).\n\
         \nHubSpot     {hb}   (stands in for https://api.hubapi.com)\
         \n  private-app token  {pat}\
         \n  OAuth client_id    {hcid}\
         \n  client_secret      {hsec}   (also the webhook signing key)\
         \n  redirect_uri       {hred}\
         \n  authorize          {hb}/oauth/authorize?client_id={hcid}&redirect_uri={hred}&approve=1\
         \n  webhooks to        {hook}\
         \n\nSalesforce  {sb}   (login host and instance_url)\
         \n  consumer key       {ck}\
         \n  consumer secret    {cs}\
         \n  username (JWT sub) {user}\
         \n  redirect_uri       {sred}\
         \n  API versions       {vers}\
         \n\nCtrl-C stops both.\n",
        seed = args.seed,
        hb = hubspot.base_url(),
        pat = hubspot.private_app_token(),
        hcid = h.client_id,
        hsec = h.client_secret,
        hred = h.redirect_uri,
        hook = args.hubspot_webhook_url.as_deref().unwrap_or("(none)"),
        sb = salesforce.base_url(),
        ck = s.consumer_key,
        cs = s.consumer_secret,
        user = s.username,
        sred = s.redirect_uri,
        vers = s.api_versions.join(", "),
    );
    tokio::signal::ctrl_c().await?;
    hubspot.shutdown().await;
    salesforce.shutdown().await;
    Ok(())
}

//! `hub` — the AutoMatrix Integration Hub's one binary.
//!
//! `hub run` runs a node with the roles asked for; `hub demo` starts everything on one
//! machine on embedded defaults; `hub validate` checks a topology offline; `hub bench`
//! measures the real pipeline and the control API under load; `hub mapping test` and `hub test` try mappings offline; `hub audit` verifies and exports the
//! audit log. Everything that takes a setting also reads it from `HUB_*`.

mod admin;
mod audit_cmd;
mod bench;
mod bench_api;
mod bench_sync;
mod connector_check;
mod control_cmd;
mod demo;
mod desk;
mod jobs;
mod mapping_cmd;
mod node;
mod sandbox_cmd;
mod usage;

/// glibc malloc/free were a third of the transform stages' CPU under load (perf, `hub bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "hub",
    version,
    about = "AutoMatrix Integration Hub: keeps a dealership's CRMs and DMSs in sync through Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node with the given roles on a topology file.
    Run(RunArgs),
    /// Check a topology file offline; errors name the line.
    Validate {
        /// The topology YAML file.
        file: PathBuf,
    },
    /// Start a local Kafka, the hub with every role, and sample traffic, on embedded defaults.
    Demo(demo::DemoArgs),
    /// Try mappings offline: one sample through one mapping.
    Mapping {
        #[command(subcommand)]
        which: mapping_cmd::MappingCommand,
    },
    /// Run the test cases of mapping files (a topology file's mappings are checked too).
    Test {
        /// Mapping files (`connectors/mappings/*.yaml`) or topology files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Benchmarks of the real pipeline.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
    /// Run the HubSpot and Salesforce simulators, seeded, on local ports.
    Sandbox(sandbox_cmd::SandboxArgs),
    /// Prepare the control-plane store (the first platform admin).
    Control {
        #[command(subcommand)]
        which: control_cmd::ControlCommand,
    },
    /// Verify or export the control plane's hash-chained audit log.
    Audit {
        #[command(subcommand)]
        which: audit_cmd::AuditCommand,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum Role {
    Ingest,
    Transform,
    Sink,
    Control,
    All,
}

/// Settings that override the topology file's `runtime` section.
#[derive(Args, Clone, Debug, Default)]
pub struct Overrides {
    /// Kafka bootstrap servers.
    #[arg(long, env = "HUB_KAFKA_BOOTSTRAP")]
    pub kafka: Option<String>,
    /// Topic and consumer-group namespace.
    #[arg(long, env = "HUB_NAMESPACE")]
    pub namespace: Option<String>,
    /// SQL table sink database: sqlite://FILE or postgres://...
    #[arg(long, env = "HUB_SQL_URL")]
    pub sql_url: Option<String>,
    /// `embedded` or the URL of a Confluent-compatible schema registry.
    #[arg(long, env = "HUB_REGISTRY")]
    pub registry: Option<String>,
    /// Ingest listener address.
    #[arg(long, env = "HUB_INGEST_LISTEN")]
    pub ingest_listen: Option<String>,
    /// Control listener address (metrics, health, embedded registry).
    #[arg(long, env = "HUB_CONTROL_LISTEN")]
    pub control_listen: Option<String>,
    /// This node's stable name.
    #[arg(long, env = "HUB_NODE_ID")]
    pub node_id: Option<String>,
}

impl Overrides {
    pub fn apply(&self, rt: &mut hub_topology::Runtime) {
        let set = |dst: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                *dst = v.clone();
            }
        };
        set(&mut rt.kafka_bootstrap, &self.kafka);
        set(&mut rt.namespace, &self.namespace);
        set(&mut rt.sql_url, &self.sql_url);
        set(&mut rt.registry, &self.registry);
        set(&mut rt.ingest_listen, &self.ingest_listen);
        set(&mut rt.control_listen, &self.control_listen);
        set(&mut rt.node_id, &self.node_id);
    }
}

#[derive(Args)]
struct RunArgs {
    /// The topology YAML file.
    #[arg(long, env = "HUB_CONFIG")]
    config: PathBuf,
    /// Roles this node runs (repeatable or comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "all",
        env = "HUB_ROLE"
    )]
    role: Vec<Role>,
    #[command(flatten)]
    overrides: Overrides,
}

/// Reads and checks a topology file, printing every error with its line.
pub fn load_topology(path: &std::path::Path) -> anyhow::Result<hub_topology::Topology> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    hub_topology::parse(&text).map_err(|errors| {
        for e in &errors {
            eprintln!("{}: {e}", path.display());
        }
        anyhow::anyhow!("{} has {} error(s)", path.display(), errors.len())
    })
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HUB_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,sqlx=warn"));
    let json = std::env::var("HUB_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Mapping { which } => return mapping_cmd::mapping(which),
        Command::Test { files } => return mapping_cmd::test(&files),
        command => Cli { command },
    };
    if let Command::Validate { file } = &cli.command {
        return match load_topology(file) {
            Ok(t) => {
                println!(
                    "{}: ok ({} tenant(s), {} topic(s))",
                    file.display(),
                    t.tenants.len(),
                    t.topics().len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async move {
        match cli.command {
            Command::Run(args) => {
                let mut topology = load_topology(&args.config)?;
                args.overrides.apply(&mut topology.runtime);
                let node = node::Node::start(topology, &args.role).await?;
                node::wait_for_signal().await;
                node.shutdown().await;
                Ok(())
            }
            Command::Demo(args) => demo::run(args).await,
            Command::Bench { which } => bench::run(which).await,
            Command::Sandbox(args) => sandbox_cmd::run(args).await,
            Command::Audit { which } => audit_cmd::run(which).await,
            Command::Control { which } => control_cmd::run(which).await,
            Command::Validate { .. } | Command::Mapping { .. } | Command::Test { .. } => {
                unreachable!("handled above")
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

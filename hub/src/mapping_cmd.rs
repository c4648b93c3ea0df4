//! `hub mapping test` (one sample through one mapping) and `hub test` (the test cases of
//! mapping files). Offline and synchronous: no Kafka, no registry, no runtime.
//!
//! Exit codes: 0 all good; 1 a record failed validation or a test case failed; 2 the
//! command could not do its job (unreadable or malformed file, unknown entity, a sample that
//! is not what its content type says).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use hub_topology::EntityMapping;
use hub_transform::mapping_file::{self, MappingFile};
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum MappingCommand {
    /// Map one sample payload and print the canonical record, or every failed rule.
    Test(MappingTestArgs),
}

#[derive(Args)]
pub struct MappingTestArgs {
    /// A mapping file (or a topology file; its connectors' mappings are used).
    #[arg(long)]
    mapping: PathBuf,
    /// The vendor payload: a JSON object, or an XML document.
    #[arg(long)]
    sample: PathBuf,
    /// The vendor entity the sample is of; needed when the file maps more than one.
    #[arg(long)]
    entity: Option<String>,
    /// The sample's content type; by default told from its extension (`.xml`) or first
    /// character (`<`).
    #[arg(long)]
    content_type: Option<String>,
    /// Print one JSON object (`ok`, `record` or `class`/`reason`/`errors`) instead of text.
    #[arg(long)]
    json: bool,
}

fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// A file's mappings, and its test cases when it is a mapping file.
enum Loaded {
    Mappings(MappingFile),
    /// (connector id, its mappings) of every connector in a topology file.
    Topology(Vec<(String, Vec<EntityMapping>)>),
}

impl Loaded {
    fn entities(&self) -> Vec<&EntityMapping> {
        match self {
            Loaded::Mappings(f) => f.entities.iter().collect(),
            Loaded::Topology(cs) => cs.iter().flat_map(|(_, es)| es.iter()).collect(),
        }
    }
}

/// A topology file is told by its top-level `tenants:`; anything else is a mapping file.
fn is_topology(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("tenants:"))
}

/// Reads a mapping or topology file; on failure prints every error with its line.
fn load(path: &Path) -> Result<Loaded, ()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| eprintln!("error: reading {}: {e}", path.display()))?;
    if is_topology(&text) {
        let topology = hub_topology::parse(&text).map_err(|errors| {
            for e in &errors {
                eprintln!("{}: {e}", path.display());
            }
        })?;
        return Ok(Loaded::Topology(
            topology
                .tenants
                .into_iter()
                .flat_map(|t| t.connectors)
                .map(|c| (c.id, c.entities))
                .collect(),
        ));
    }
    mapping_file::load(&text)
        .map(Loaded::Mappings)
        .map_err(|err| {
            for e in &err.0 {
                eprintln!("{}: {e}", path.display());
            }
        })
}

pub fn mapping(cmd: MappingCommand) -> ExitCode {
    match cmd {
        MappingCommand::Test(args) => mapping_test(args),
    }
}

fn mapping_test(args: MappingTestArgs) -> ExitCode {
    let Ok(loaded) = load(&args.mapping) else {
        return ExitCode::from(2);
    };
    let entities = loaded.entities();
    let mapping = match &args.entity {
        Some(name) => entities.iter().find(|m| &m.vendor_entity == name),
        None if entities.len() == 1 => entities.first(),
        None => {
            return usage_error(format!(
                "{} maps {}; say which with --entity",
                args.mapping.display(),
                names(&entities)
            ));
        }
    };
    let Some(mapping) = mapping else {
        return usage_error(format!(
            "{} has no mapping for '{}'; it maps {}",
            args.mapping.display(),
            args.entity.as_deref().unwrap_or_default(),
            names(&entities)
        ));
    };
    let payload = match std::fs::read_to_string(&args.sample) {
        Ok(p) => p,
        Err(e) => return usage_error(format!("reading {}: {e}", args.sample.display())),
    };
    let content_type = args.content_type.clone().unwrap_or_else(|| {
        let xml = args.sample.extension().is_some_and(|e| e == "xml")
            || payload.trim_start().starts_with('<');
        if xml {
            "application/xml"
        } else {
            "application/json"
        }
        .to_string()
    });
    let result = hub_transform::mapping::dry_run(mapping, &content_type, &payload);
    match result {
        Ok(m) => {
            let out = if args.json {
                json!({"ok": true, "entity": m.entity.name(), "key": m.key, "record": m.doc})
            } else {
                m.doc
            };
            println!("{}", pretty(&out));
            ExitCode::SUCCESS
        }
        Err(f) => {
            if args.json {
                println!(
                    "{}",
                    pretty(&json!({
                        "ok": false,
                        "class": f.class,
                        "reason": f.reason,
                        "errors": f.errors,
                    }))
                );
            } else {
                for e in &f.errors {
                    println!(
                        "error: {}: {}: {}",
                        e.field.as_deref().unwrap_or("-"),
                        e.code,
                        e.message
                    );
                }
                eprintln!("{} ({})", f.reason, f.class);
            }
            // A record that broke rules is the sample's fault (1); one that could not be
            // read or has no mapping for its shape is the command's (2).
            if f.class == "validation" {
                ExitCode::FAILURE
            } else {
                ExitCode::from(2)
            }
        }
    }
}

fn names(entities: &[&EntityMapping]) -> String {
    entities
        .iter()
        .map(|m| m.vendor_entity.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// `hub test FILE...`: every test case of every mapping file, reported like `cargo test`.
pub fn test(files: &[PathBuf]) -> ExitCode {
    let (mut passed, mut failed, mut broken) = (0, 0, 0);
    for path in files {
        let Ok(loaded) = load(path) else {
            broken += 1;
            continue;
        };
        let file = match loaded {
            Loaded::Mappings(f) => f,
            Loaded::Topology(connectors) => {
                // A topology carries no test cases; loading it has checked its mappings.
                for (id, entities) in connectors {
                    println!(
                        "{}: connector {id}: {} mapping(s) checked, no test cases",
                        path.display(),
                        entities.len()
                    );
                }
                continue;
            }
        };
        let report = mapping_file::run_tests(&file);
        println!(
            "\nrunning {} test{} from {}",
            report.cases.len(),
            if report.cases.len() == 1 { "" } else { "s" },
            path.display()
        );
        for case in &report.cases {
            println!(
                "test {}::{} ... {}",
                case.entity,
                case.name,
                if case.passed() { "ok" } else { "FAILED" }
            );
        }
        let failures: Vec<_> = report.cases.iter().filter(|c| !c.passed()).collect();
        if !failures.is_empty() {
            println!("\nfailures:");
            for case in &failures {
                println!(
                    "\n---- {}::{} ----\n{}",
                    case.entity,
                    case.name,
                    case.failure.as_deref().unwrap_or_default()
                );
            }
        }
        println!(
            "\ntest result: {}. {} passed; {} failed",
            if report.ok() { "ok" } else { "FAILED" },
            report.passed(),
            report.failed()
        );
        passed += report.passed();
        failed += report.failed();
    }
    if files.len() > 1 {
        println!(
            "\nhub test: {passed} passed; {failed} failed in {} file(s){}",
            files.len(),
            if broken > 0 {
                format!("; {broken} could not be read")
            } else {
                String::new()
            }
        );
    }
    if broken > 0 {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

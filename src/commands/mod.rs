//! One module per command. `dispatch` loads what a command needs (the
//! configuration only for commands that talk to Kafka or serve telemetry)
//! and runs it.

mod api;
mod demo;
mod dlq;
mod fd_limit;
mod receive;
mod run;
mod send;
mod setup_topics;
mod signals;
mod tenants;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::{Config, Overrides};
use crate::telemetry;
use crate::topology::{EMBEDDED_ORIGIN, Topology};

pub mod keygen;

/// Runs the parsed command line; the exit code is the command's own
/// (`setup-topics --check` exits 2 on drift).
pub async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let Cli { global, command } = cli;
    match command {
        // Commands that neither talk to Kafka nor serve telemetry run without
        // a configuration, so a customer can use them anywhere.
        Command::Keygen(args) => keygen::run(&args),
        Command::Receive(args) => receive::run(args).await,
        // The demo brings its own cluster and configuration.
        Command::Demo(args) => demo::run(args).await,
        command => {
            let config = load_config(&global)?;
            with_config(command, config).await
        }
    }
}

async fn with_config(command: Command, config: Config) -> Result<ExitCode> {
    match command {
        Command::Run(args) => run::run(args, config).await,
        Command::SetupTopics(args) => setup_topics::setup_topics(args, config).await,
        Command::Tenants(command) => tenants::run(command, &config).await,
        Command::Dlq(command) => dlq::run(command, &config).await,
        Command::Send(args) => send::run(args, &config).await,
        Command::Api(args) => api::run(args, config).await,
        Command::Keygen(_) | Command::Receive(_) | Command::Demo(_) => {
            unreachable!("dispatched without a configuration")
        }
    }
}

/// Loads and validates the configuration, then starts logging in the
/// configured format.
fn load_config(global: &GlobalArgs) -> Result<Config> {
    let overrides = Overrides {
        bootstrap_servers: global.bootstrap_servers.clone(),
    };
    let config = Config::load(global.config.as_deref(), &overrides)?;
    telemetry::init_logging(config.telemetry.log_format);
    Ok(config)
}

/// Loads the topology named by `--topology` (`flag`), else by the
/// `topology` configuration key, else the embedded one; returns it with the
/// name to show for it.
fn load_topology(flag: Option<&Path>, config: &Config) -> Result<(Topology, String)> {
    let path = flag.or(config.topology.as_deref());
    let origin = path.map_or_else(|| EMBEDDED_ORIGIN.to_string(), |p| p.display().to_string());
    Ok((Topology::load(path)?, origin))
}

/// `n` and the noun, plural unless `n` is 1.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The tenants topic of the configured topology.
fn tenants_topic(config: &Config) -> Result<String> {
    let (topology, _) = load_topology(None, config)?;
    Ok(topology.tenants.name)
}

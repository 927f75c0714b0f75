//! The command line: clap definitions only. Each command's behaviour lives in
//! `commands/`, one file per command.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};

/// Kafka-native, multi-tenant webhook delivery: every event encrypted for its
/// tenant alone, signed, delivered in partition order, never lost.
#[derive(Debug, Parser)]
#[command(name = "hookline", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags that every command understands.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Configuration file (TOML). Without it, `config/hookline.toml` is read
    /// when it exists, otherwise the built-in defaults apply.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Kafka bootstrap servers, comma-separated; wins over the file and the
    /// environment.
    #[arg(long, global = true, value_name = "LIST")]
    pub bootstrap_servers: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one consumer-group replica that delivers events (SIGTERM/SIGINT
    /// drain and commit, then exit 0).
    Run(RunArgs),

    /// Create or reconcile the topics declared in the topology file.
    SetupTopics(SetupTopicsArgs),

    /// Manage tenants on the compacted `tenants` topic.
    #[command(subcommand)]
    Tenants(TenantsCommand),

    /// Generate a customer's RSA key pair (PKCS#8 private, SPKI public).
    Keygen(KeygenArgs),

    /// Produce one event, for trying things out (real producers write to
    /// Kafka directly).
    Send(SendArgs),

    /// Reference customer endpoint: verify, decrypt and print one JSON line
    /// per delivery.
    Receive(ReceiveArgs),

    /// The whole flow in one process on an embedded broker, no services
    /// needed.
    Demo(DemoArgs),

    /// Serve the tenant self-service HTTP API.
    Api(ApiArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Topology file; overrides the `topology` configuration key.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SetupTopicsArgs {
    /// Topology file; overrides the `topology` configuration key.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,

    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Change nothing; exit 2 when the cluster differs from the topology.
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Write a tenant record (validated before it is produced).
    Put(TenantPutArgs),
    /// Print one tenant record as JSON.
    Get {
        /// Tenant id.
        id: String,
    },
    /// List all tenants as a table.
    List {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a tenant (writes a tombstone).
    Delete {
        /// Tenant id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct TenantPutArgs {
    /// Tenant id (the key of its events).
    pub id: String,

    /// Webhook URL (http or https).
    #[arg(long, value_name = "U")]
    pub url: String,

    /// The tenant's RSA public key: PEM (SPKI or PKCS#1) or base64 of a PEM.
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,

    /// JWE `kid`; defaults to the RFC 7638 thumbprint of the key.
    #[arg(long, value_name = "K")]
    pub key_id: Option<String>,

    /// Event-type patterns, comma-separated (`*` matches any run of
    /// characters); default: all events.
    #[arg(long, value_name = "P,…", value_delimiter = ',')]
    pub events: Option<Vec<String>>,

    /// Standard Webhooks signing secret (`whsec_…`).
    #[arg(long, value_name = "S", conflicts_with = "generate_secret")]
    pub signing_secret: Option<String>,

    /// Generate a new signing secret and print it once.
    #[arg(long)]
    pub generate_secret: bool,

    /// Store the tenant as disabled (its events are dead-lettered).
    #[arg(long)]
    pub disabled: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write `private.pem` and `public.pem` into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// RSA modulus size.
    #[arg(long, value_name = "N", default_value_t = 2048,
          value_parser = clap::builder::PossibleValuesParser::new(["2048", "3072", "4096"])
              .try_map(|s| s.parse::<u32>()))]
    pub bits: u32,

    /// Overwrite existing key files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Tenant id (the record key).
    pub tenant: String,

    /// Event type, e.g. `order.created`.
    #[arg(long = "type", value_name = "T")]
    pub event_type: String,

    /// Event data, any JSON.
    #[arg(long, value_name = "JSON")]
    pub data: String,

    /// Event id (becomes `webhook-id`); derived from the record position when
    /// absent.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// PKCS#8 private key file(s); several for key rotation (chosen by `kid`).
    #[arg(long = "private-key", value_name = "FILE", required = true, num_args = 1..)]
    pub private_keys: Vec<PathBuf>,

    /// Signing secret (`whsec_…`) to verify `webhook-signature` with.
    #[arg(long, value_name = "S")]
    pub signing_secret: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of sample events to produce.
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub events: u32,

    /// Number of tenants.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub tenants: u32,

    /// Keep delivering after the summary until interrupted.
    #[arg(long)]
    pub keep_running: bool,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_every_command_of_the_contract() {
        let help = Cli::command().render_long_help().to_string();
        for command in [
            "run",
            "setup-topics",
            "tenants",
            "keygen",
            "send",
            "receive",
            "demo",
            "api",
        ] {
            assert!(
                help.lines()
                    .any(|line| line.trim_start().starts_with(command)),
                "`{command}` missing from --help:\n{help}"
            );
        }
    }

    #[test]
    fn keygen_refuses_unsupported_sizes() {
        let err = Cli::try_parse_from(["hookline", "keygen", "--out", "k", "--bits", "1024"])
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
    }

    #[test]
    fn global_flags_work_after_the_command() {
        let cli = Cli::try_parse_from([
            "hookline",
            "run",
            "--bootstrap-servers",
            "127.0.0.1:19092",
            "--config",
            "x.toml",
        ])
        .unwrap();
        assert_eq!(
            cli.global.bootstrap_servers.as_deref(),
            Some("127.0.0.1:19092")
        );
        assert_eq!(cli.global.config, Some(PathBuf::from("x.toml")));
    }
}

//! The command line: clap definitions only. Each command's behaviour lives in
//! `commands/`, one file per command.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

use crate::delivery::dead_letter::DlqReason;
use crate::tenants::RateLimit;

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

    /// Dead letters: what was dead-lettered, and replaying it.
    #[command(subcommand)]
    Dlq(DlqCommand),

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
    /// Suspend a tenant: its events are parked on the dead-letter topic
    /// (`tenant_suspended`) until `tenants resume`, which delivers them in
    /// order.
    Suspend {
        /// Tenant id.
        id: String,
    },
    /// Resume a tenant: deliver its parked events, in order, then its new
    /// ones.
    #[command(
        long_about = "Resume a tenant: deliver its parked events, in order, then its \
        new ones.\n\n\
        Clears the suspension in the tenant record, then replays the tenant's `tenant_suspended` \
        dead letters to the events topic (as `hookline dlq replay --tenant ID --reason \
        tenant_suspended` does, sharing its memory), waits until the replicas have delivered \
        them, and replays what was parked meanwhile, until nothing new is parked. Until then the \
        replicas keep parking the tenant's new events behind the replayed ones, so its receiver \
        sees every event in the order it was produced. Exit 0 once caught up; 1 if the replicas \
        do not deliver within --wait, or the tenant's events keep being parked (its endpoint \
        fails again): the same command continues where it stopped."
    )]
    Resume(TenantResumeArgs),
}

#[derive(Debug, Args)]
pub struct TenantResumeArgs {
    /// Tenant id.
    pub id: String,

    /// How long to wait for the replicas to deliver each round of replayed
    /// events.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
    pub wait: std::time::Duration,
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

    /// The signing secret being replaced (`whsec_…`), during a rotation:
    /// requests are signed with it too, after the new one, for `--grace`,
    /// so that the tenant's receiver may switch secrets in its own time.
    /// Needs `--signing-secret` or `--generate-secret`.
    #[arg(long, value_name = "S")]
    pub previous_signing_secret: Option<String>,

    /// How long `--previous-signing-secret` keeps signing, from now
    /// (`24h`, `90m`, `0s` drops it at once).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "24h",
        value_parser = humantime::parse_duration,
        requires = "previous_signing_secret"
    )]
    pub grace: std::time::Duration,

    /// Store the tenant as disabled (its events are dead-lettered).
    #[arg(long)]
    pub disabled: bool,

    /// At most N events per second to this tenant (fractions allowed: 0.5
    /// is one event every 2 s), from 0.000001 to 1000000; the tenant's
    /// events are spaced at least 1/N s apart, other tenants are not
    /// affected. Default: unlimited.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Write dead letters back to the events topic, in order, each once.
    #[command(
        long_about = "Write dead letters back to the events topic, in order, each once.\n\n\
            Each replayed record keeps the dead letter's key, value and headers, without the \
            `dlq.*` headers, and gains `hookline.replay-of` = `<dlq partition>:<offset>`; an \
            event with an `id` keeps its `webhook-id`. A tenant's dead letters are written in \
            the order they were dead-lettered, which is the order of its events. The run stops \
            at the first failed write (exit 1).",
        after_long_help = REPLAY_REMEMBERING_HELP
    )]
    Replay(DlqReplayArgs),

    /// Dead letters per tenant and reason, with the oldest and newest.
    Stats(DlqStatsArgs),
}

/// How `dlq replay` remembers what it replayed, for its `--help`.
const REPLAY_REMEMBERING_HELP: &str = "\
What is remembered:
  A replay reads the dead-letter topic up to its end as it is when the run starts, and
  remembers how far it got in a consumer group of its own, one per filter:
  `<kafka.group_id>.replay.<hash>`, the hash taken over the sorted tenants and reasons and
  --since/--until exactly as written (so `--since 2h` is the same filter every time). It
  commits a dead-letter partition's offset only once every record replayed before it was
  acknowledged on the events topic. Running the same command again therefore replays only
  dead letters written since; --again starts from the beginning. The summary names the group;
  `kafka-consumer-groups --describe --group <group>` shows how far it got.

  Two different filters are two groups, and do not know of each other: where they overlap
  (`--tenant acme` and `--reason tenant_suspended`), each replays the overlap. A dead letter
  newer than an --until given as a duration is left for a later run, with everything after it
  in its partition.";

#[derive(Debug, Args)]
pub struct DlqReplayArgs {
    /// Only this tenant's dead letters (the record key); repeat for more.
    /// Default: every tenant.
    #[arg(long = "tenant", value_name = "T")]
    pub tenants: Vec<String>,

    /// Only dead letters with this `dlq.reason`; repeat for more. One of
    /// retries_exhausted, rejected, unknown_tenant, tenant_disabled,
    /// invalid_tenant, invalid_event, payload_too_large,
    /// blocked_destination, tenant_suspended. Default: every reason.
    #[arg(long = "reason", value_name = "R")]
    pub reasons: Vec<DlqReason>,

    /// Only dead letters written at or after this instant: RFC 3339
    /// (2026-11-28T10:00:00Z) or a duration back from now (2h, 30m). The
    /// time is the dead-letter record's own, when it was dead-lettered.
    #[arg(long, value_name = "S")]
    pub since: Option<String>,

    /// Only dead letters written before this instant, in the same forms as
    /// --since.
    #[arg(long, value_name = "U")]
    pub until: Option<String>,

    /// Print what would be replayed, per tenant and reason; send nothing and
    /// remember nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Start from the beginning of the dead-letter topic, replaying again
    /// what this filter replayed before.
    #[arg(long)]
    pub again: bool,
}

#[derive(Debug, Args)]
pub struct DlqStatsArgs {
    /// Only this tenant's dead letters; repeat for more. Default: every
    /// tenant.
    #[arg(long = "tenant", value_name = "T")]
    pub tenants: Vec<String>,

    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
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

    /// PKCS#8 private key file(s); several for key rotation (chosen by
    /// `kid`). A plain FILE is held under its RFC 7638 thumbprint, the `kid`
    /// hookline uses when the tenant record sets no `key_id`; `KID=FILE`
    /// holds it under the tenant's `key_id`. A file whose name contains `=`
    /// is given with a directory, e.g. `./a=b.pem`.
    #[arg(long = "private-key", value_name = "[KID=]FILE", required = true, num_args = 1..)]
    pub private_keys: Vec<PrivateKeyArg>,

    /// Signing secret (`whsec_…`) to verify `webhook-signature` with;
    /// repeat it (or separate secrets with commas) to accept a signature
    /// made with any of them, the old and the new secret during a
    /// rotation. Prefer the environment variable: a flag is visible in
    /// process lists.
    #[arg(
        long = "signing-secret",
        value_name = "S",
        env = "HOOKLINE_SIGNING_SECRET",
        hide_env_values = true,
        value_delimiter = ',',
        value_parser = parse_secret
    )]
    pub signing_secrets: Vec<SecretString>,
}

/// One `--private-key` of `hookline receive`: a PEM file and, when given,
/// the `kid` to hold it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateKeyArg {
    /// The tenant record's `key_id`; `None` means the key's thumbprint.
    pub kid: Option<String>,
    pub path: PathBuf,
}

impl std::str::FromStr for PrivateKeyArg {
    type Err = String;

    /// `FILE` or `KID=FILE`. The text before the first `=` is a `kid` only
    /// when it holds no path separator, so `./dir=x/key.pem` stays a path.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once('=') {
            Some((kid, path)) if !kid.contains(['/', '\\']) => {
                if kid.is_empty() {
                    return Err("the key id before `=` is empty".into());
                }
                if path.is_empty() {
                    return Err(format!("no file after `{kid}=`"));
                }
                Ok(Self {
                    kid: Some(kid.to_owned()),
                    path: PathBuf::from(path),
                })
            }
            _ => Ok(Self {
                kid: None,
                path: PathBuf::from(text),
            }),
        }
    }
}

fn parse_secret(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text))
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
    use secrecy::ExposeSecret as _;

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
            "dlq",
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
    fn receive_keys_are_files_or_kid_equals_file() {
        let cli = Cli::try_parse_from([
            "hookline",
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--private-key",
            "old.pem",
            "2026-11=keys/new.pem",
            "./odd=name.pem",
        ])
        .unwrap();
        let Command::Receive(args) = cli.command else {
            panic!("not receive");
        };
        let keys: Vec<(Option<&str>, &str)> = args
            .private_keys
            .iter()
            .map(|k| (k.kid.as_deref(), k.path.to_str().unwrap()))
            .collect();
        assert_eq!(
            keys,
            [
                (None, "old.pem"),
                (Some("2026-11"), "keys/new.pem"),
                (None, "./odd=name.pem"),
            ]
        );
        for bad in ["=key.pem", "kid="] {
            let err = Cli::try_parse_from([
                "hookline",
                "receive",
                "--listen",
                "127.0.0.1:0",
                "--private-key",
                bad,
            ])
            .unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
    }

    #[test]
    fn receive_secret_is_hidden_from_debug_output() {
        let cli = Cli::try_parse_from([
            "hookline",
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--private-key",
            "k.pem",
            "--signing-secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("MfKQ9r8G"));
    }

    #[test]
    fn tenants_put_takes_a_rate_limit_and_refuses_a_bad_one_naming_the_flag() {
        let put = |rate: &str| {
            Cli::try_parse_from([
                "hookline",
                "tenants",
                "put",
                "acme",
                "--url",
                "https://example.com/",
                "--public-key",
                "k.pem",
                "--rate-limit",
                rate,
            ])
        };
        let Command::Tenants(TenantsCommand::Put(args)) = put("0.5").unwrap().command else {
            panic!("not tenants put");
        };
        assert_eq!(args.rate_limit.map(RateLimit::per_second), Some(0.5));
        for bad in ["0", "-1", "1000001", "ten"] {
            let err = put(bad).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
            assert!(err.to_string().contains("--rate-limit"), "{bad}: {err}");
        }
    }

    #[test]
    fn tenants_put_takes_a_previous_secret_with_a_grace_of_24_hours_by_default() {
        let put = |extra: &[&str]| {
            let mut args = vec![
                "hookline",
                "tenants",
                "put",
                "acme",
                "--url",
                "https://example.com/",
                "--public-key",
                "k.pem",
                "--generate-secret",
            ];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let grace = |extra: &[&str]| {
            let Command::Tenants(TenantsCommand::Put(args)) = put(extra).unwrap().command else {
                panic!("not tenants put");
            };
            (args.previous_signing_secret, args.grace)
        };
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        assert_eq!(
            grace(&["--previous-signing-secret", old]),
            (
                Some(old.to_string()),
                std::time::Duration::from_secs(86_400)
            )
        );
        assert_eq!(
            grace(&["--previous-signing-secret", old, "--grace", "90m"]).1,
            std::time::Duration::from_secs(5_400)
        );
        // Without a previous secret, a grace means nothing.
        let err = put(&["--grace", "1h"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let err = put(&["--previous-signing-secret", old, "--grace", "soon"]).unwrap_err();
        assert!(err.to_string().contains("--grace"), "{err}");
    }

    #[test]
    fn receive_takes_several_signing_secrets_repeated_or_comma_separated() {
        let secrets = |extra: &[&str]| {
            let mut args = vec![
                "hookline",
                "receive",
                "--listen",
                "127.0.0.1:0",
                "--private-key",
                "k.pem",
            ];
            args.extend_from_slice(extra);
            let Command::Receive(args) = Cli::try_parse_from(args).unwrap().command else {
                panic!("not receive");
            };
            args.signing_secrets
                .iter()
                .map(|s| s.expose_secret().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            secrets(&["--signing-secret", "whsec_a", "--signing-secret", "whsec_b"]),
            ["whsec_a", "whsec_b"]
        );
        assert_eq!(
            secrets(&["--signing-secret", "whsec_a,whsec_b"]),
            ["whsec_a", "whsec_b"]
        );
    }

    #[test]
    fn dlq_replay_takes_repeated_filters_and_refuses_an_unknown_reason_listing_the_valid_ones() {
        let cli = Cli::try_parse_from([
            "hookline",
            "dlq",
            "replay",
            "--tenant",
            "acme",
            "--tenant",
            "globex",
            "--reason",
            "tenant_suspended",
            "--reason",
            "retries_exhausted",
            "--since",
            "2h",
            "--dry-run",
        ])
        .unwrap();
        let Command::Dlq(DlqCommand::Replay(args)) = cli.command else {
            panic!("not dlq replay");
        };
        assert_eq!(args.tenants, ["acme", "globex"]);
        assert_eq!(
            args.reasons,
            [DlqReason::TenantSuspended, DlqReason::RetriesExhausted]
        );
        assert_eq!(args.since.as_deref(), Some("2h"));
        assert!(args.dry_run && !args.again);

        let err =
            Cli::try_parse_from(["hookline", "dlq", "replay", "--reason", "Rejected"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let message = err.to_string();
        assert!(message.contains("--reason"), "{message}");
        assert!(message.contains("tenant_suspended"), "{message}");
    }

    #[test]
    fn dlq_replay_help_says_how_a_replay_is_remembered() {
        let mut command = Cli::command();
        let replay = command
            .find_subcommand_mut("dlq")
            .and_then(|dlq| dlq.find_subcommand_mut("replay"))
            .expect("dlq replay exists");
        let help = replay.render_long_help().to_string();
        for needle in [".replay.<hash>", "--again", "overlap", "hookline.replay-of"] {
            assert!(help.contains(needle), "{needle} missing from:\n{help}");
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

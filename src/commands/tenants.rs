//! `hookline tenants put|get|list|delete|suspend|resume`: the operator's
//! view of the `tenants` topic. Writes wait for the broker's
//! acknowledgement; reads restore the table exactly as a replica does.
//! `resume` also replays the tenant's parked events (`recovery::resume`).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use secrecy::ExposeSecret;
use serde_json::json;

use tokio_util::sync::CancellationToken;

use crate::cli::{TenantPutArgs, TenantResumeArgs, TenantsCommand};
use crate::config::Config;
use crate::crypto::SigningSecret;
use crate::events::timestamp::format_system_time;
use crate::kafka::producer::AckedProducer;
use crate::kafka::table_reader::{CONNECT_TIMEOUT, TableReader};
use crate::recovery::{self, ReplayTopics, ResumeProgress};
use crate::tenants::edit::{self, Edited};
use crate::tenants::pattern::Pattern;
use crate::tenants::record::previous_signing_secret_expiry;
use crate::tenants::sync;
use crate::tenants::{RateLimit, Tenant, TenantEntry, TenantRecord, TenantTable};

/// How long a write may wait for the broker's acknowledgement.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(command: TenantsCommand, config: &Config) -> Result<ExitCode> {
    let topic = super::tenants_topic(config)?;
    match command {
        TenantsCommand::Put(args) => put(args, config, &topic).await,
        TenantsCommand::Get { id } => get(&id, config, &topic).await,
        TenantsCommand::List { json } => list(json, config, &topic).await,
        TenantsCommand::Delete { id } => delete(&id, config, &topic).await,
        TenantsCommand::Suspend { id } => suspend(&id, config, &topic).await,
        TenantsCommand::Resume(args) => resume(args, config, &topic).await,
    }
}

async fn suspend(id: &str, config: &Config, topic: &str) -> Result<ExitCode> {
    crate::tenants::record::validate_id(id).with_context(|| format!("tenant `{id}`"))?;
    let (topology, _) = super::load_topology(None, config)?;
    match edit::set_suspended(&config.kafka, topic, id, true).await? {
        Edited::Written => println!(
            "tenant {id} suspended: its events are parked on `{}` as tenant_suspended until \
             `hookline tenants resume {id}` delivers them, in order",
            topology.dlq.name
        ),
        Edited::Unchanged => println!("tenant {id} was already suspended"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn resume(args: TenantResumeArgs, config: &Config, topic: &str) -> Result<ExitCode> {
    let id = args.id.as_str();
    crate::tenants::record::validate_id(id).with_context(|| format!("tenant `{id}`"))?;
    let (topology, _) = super::load_topology(None, config)?;
    let edited = edit::set_suspended(&config.kafka, topic, id, false).await?;
    eprintln!(
        "{}; replaying its parked events",
        match edited {
            Edited::Written => format!("tenant {id}: suspension cleared"),
            Edited::Unchanged => format!("tenant {id} was not suspended"),
        }
    );
    // The first signal lets the replayed records in flight be acknowledged
    // and remembered; a second one exits at once.
    let stop = CancellationToken::new();
    super::signals::cancel_on_signal(
        stop.clone(),
        "the resumption",
        "stopping the resumption once the replayed events in flight are acknowledged",
    );
    let topics = ReplayTopics::from(&topology);
    let summary = recovery::resume(&config.kafka, &topics, id, args.wait, &stop, |p| match p {
        ResumeProgress::Replaying { round, progress } => eprintln!(
            "round {round}: {} parked events replayed ({}/{} dead letters read)",
            progress.replayed, progress.read, progress.to_read
        ),
        ResumeProgress::Waiting { round, waited } => eprintln!(
            "round {round}: waiting for the replicas to deliver them ({}s)",
            waited.as_secs()
        ),
    })
    .await?;
    println!(
        "tenant {id} resumed: {} replayed in order in {}, and the replicas are through them \
         (consumer group `{}` remembers the replay); its new events are delivered as usual",
        super::count(summary.replayed, "parked event"),
        super::count(u64::from(summary.rounds), "round"),
        summary.group,
    );
    Ok(ExitCode::SUCCESS)
}

async fn put(args: TenantPutArgs, config: &Config, topic: &str) -> Result<ExitCode> {
    let public_key = std::fs::read_to_string(&args.public_key)
        .with_context(|| format!("reading the public key {}", args.public_key.display()))?;
    let generated = args.generate_secret.then(SigningSecret::generate);
    let signing_secret = match (&generated, args.signing_secret) {
        (Some(secret), _) => Some(secret.to_whsec().expose_secret().to_string()),
        (None, given) => given,
    };
    let previous_signing_secret_expires_at = match &args.previous_signing_secret {
        Some(_) => previous_signing_secret_expiry(SystemTime::now(), args.grace)
            .with_context(|| format!("tenant `{}`: --grace", args.id))?,
        None => None,
    };
    // A zero grace drops the previous secret at once: nothing to store.
    let previous_signing_secret = args
        .previous_signing_secret
        .filter(|_| previous_signing_secret_expires_at.is_some());
    let record = TenantRecord {
        url: args.url,
        public_key,
        key_id: args.key_id,
        signing_secret,
        previous_signing_secret,
        previous_signing_secret_expires_at,
        events: args.events,
        enabled: !args.disabled,
        suspended: false,
        api_key_sha256: None,
        rate_limit: args.rate_limit.map(RateLimit::per_second),
    };
    // The same validation a replica applies when it reads the record, so a
    // record that `put` accepts is never invalid on the topic.
    let tenant = Tenant::from_record(&args.id, record.clone())
        .with_context(|| format!("tenant `{}`", args.id))?;
    let value = serde_json::to_vec(&record).context("encoding the tenant record")?;

    let producer = AckedProducer::for_command(&config.kafka, WRITE_TIMEOUT)?;
    producer
        .send(topic, args.id.as_bytes(), Some(&value))
        .await?;

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "tenant {} written (kid {}, {} bits, {}, {})",
        tenant.id,
        tenant.key_id(),
        tenant.public_key().bits(),
        if tenant.enabled {
            "enabled"
        } else {
            "disabled"
        },
        tenant.rate_limit.map_or_else(
            || "no rate limit".to_string(),
            |limit| format!("at most {limit}")
        ),
    )?;
    if let Some(previous) = &tenant.previous_signing_secret {
        writeln!(
            out,
            "the previous signing secret signs too until {}",
            format_system_time(previous.expires_at).unwrap_or_default()
        )?;
    }
    if let Some(secret) = generated {
        writeln!(
            out,
            "signing secret (shown once, give it to the tenant): {}",
            secret.to_whsec().expose_secret()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn get(id: &str, config: &Config, topic: &str) -> Result<ExitCode> {
    let table = restore(config, topic).await?;
    let Some(entry) = table.get(id) else {
        bail!("tenant `{id}` does not exist");
    };
    let view = describe(id, &entry);
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(ExitCode::SUCCESS)
}

async fn list(as_json: bool, config: &Config, topic: &str) -> Result<ExitCode> {
    let table = restore(config, topic).await?;
    let mut out = std::io::stdout().lock();
    let entries = table.snapshot();
    if as_json {
        for (id, entry) in &entries {
            writeln!(out, "{}", serde_json::to_string(&describe(id, entry))?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut table_out = comfy_table::Table::new();
    table_out
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(["TENANT", "STATUS", "URL", "KID", "EVENTS", "RATE LIMIT"]);
    for (id, entry) in &entries {
        match &**entry {
            TenantEntry::Valid(t) => table_out.add_row([
                id.as_str(),
                status(t),
                t.url(),
                &t.key_id(),
                &t.events().map_or_else(
                    || "*".to_string(),
                    |e| e.iter().map(Pattern::as_str).collect::<Vec<_>>().join(","),
                ),
                &t.rate_limit
                    .map_or_else(|| "unlimited".to_string(), |limit| limit.to_string()),
            ]),
            TenantEntry::Invalid { error, .. } => {
                table_out.add_row([id.as_str(), "invalid", error.as_str(), "", "", ""])
            }
        };
    }
    writeln!(out, "{table_out}")?;
    writeln!(out, "{} tenants", entries.len())?;
    Ok(ExitCode::SUCCESS)
}

async fn delete(id: &str, config: &Config, topic: &str) -> Result<ExitCode> {
    crate::tenants::record::validate_id(id).with_context(|| format!("tenant `{id}`"))?;
    let table = restore(config, topic).await?;
    if table.get(id).is_none() {
        bail!("tenant `{id}` does not exist");
    }
    let producer = AckedProducer::for_command(&config.kafka, WRITE_TIMEOUT)?;
    producer.send(topic, id.as_bytes(), None).await?;
    println!("tenant {id} deleted");
    Ok(ExitCode::SUCCESS)
}

/// Restores the whole table, showing progress on stderr when it takes a
/// while.
async fn restore(config: &Config, topic: &str) -> Result<TenantTable> {
    let reader = TableReader::connect(&config.kafka, topic, CONNECT_TIMEOUT).await?;
    let table = TenantTable::new();
    sync::restore(&table, &reader, |p| {
        if p.partitions_done < p.partitions {
            eprintln!(
                "restoring tenants: {} records, {}/{} partitions caught up",
                p.records, p.partitions_done, p.partitions
            );
        }
    })
    .await?;
    Ok(table)
}

/// `enabled`, `disabled` or `suspended`.
fn status(tenant: &Tenant) -> &'static str {
    match (tenant.enabled, tenant.suspended) {
        (false, _) => "disabled",
        (true, true) => "suspended",
        (true, false) => "enabled",
    }
}

/// The JSON shown by `get` and `list --json`: the record with its secret
/// withheld and the effective `kid` filled in.
fn describe(id: &str, entry: &TenantEntry) -> serde_json::Value {
    match entry {
        TenantEntry::Valid(t) => json!({
            "id": id,
            "status": status(t),
            "url": t.url(),
            "key_id": t.key_id(),
            "key_bits": t.public_key().bits(),
            "public_key": t.public_key().to_spki_pem(),
            "events": t.events().map(|e| e.iter().map(Pattern::as_str).collect::<Vec<_>>()),
            "signing_secret": t.signing_secret.as_ref().map(|_| "<set>"),
            "previous_signing_secret": t.previous_signing_secret.as_ref().map(|_| "<set>"),
            "previous_signing_secret_expires_at": t
                .previous_signing_secret
                .as_ref()
                .and_then(|p| format_system_time(p.expires_at)),
            "api_key": t.api_key_sha256.as_ref().map(|_| "<set>"),
            "rate_limit": t.rate_limit.map(RateLimit::per_second),
        }),
        TenantEntry::Invalid { error, .. } => json!({
            "id": id,
            "status": "invalid",
            "error": error,
        }),
    }
}

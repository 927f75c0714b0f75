//! `hookline send TENANT --type T --data JSON`: produce one event, for trying
//! hookline out. Real producers write to the events topic directly.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cli::SendArgs;
use crate::config::Config;
use crate::kafka::producer::AckedProducer;
use crate::tenants::record::validate_id;

pub async fn run(args: SendArgs, config: &Config) -> Result<ExitCode> {
    validate_id(&args.tenant).with_context(|| format!("tenant `{}`", args.tenant))?;
    if args.event_type.trim().is_empty() {
        bail!("--type must not be empty");
    }
    let data: serde_json::Value = serde_json::from_str(&args.data)
        .with_context(|| format!("--data is not JSON: {}", args.data))?;
    let mut event = serde_json::json!({ "type": args.event_type, "data": data });
    if let Some(id) = &args.id {
        event["id"] = serde_json::Value::String(id.clone());
    }
    let value = serde_json::to_vec(&event).context("encoding the event")?;
    if value.len() > config.delivery.max_payload_bytes {
        bail!(
            "the event is {} bytes, more than delivery.max_payload_bytes ({})",
            value.len(),
            config.delivery.max_payload_bytes
        );
    }

    let (topology, _) = super::load_topology(None, config)?;
    let producer = AckedProducer::for_command(&config.kafka, Duration::from_secs(30))?;
    let ack = producer
        .send(&topology.events.name, args.tenant.as_bytes(), Some(&value))
        .await?;
    println!(
        "event sent to {} (partition {}, offset {})",
        topology.events.name, ack.partition, ack.offset
    );
    Ok(ExitCode::SUCCESS)
}

//! `hookline api --listen ADDR`: the tenant self-service HTTP API.
//!
//! Refuses to start without an admin token or when the topics are not
//! ready; then serves until SIGTERM or SIGINT, and lets the requests in
//! flight finish; a second signal exits at once.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiSettings};
use crate::cli::ApiArgs;
use crate::config::Config;
use crate::kafka::admin::Admin;
use crate::topology::verify_ready;

pub async fn run(args: ApiArgs, config: Config) -> Result<ExitCode> {
    let Some(admin_token) = config.api.admin_token.clone() else {
        bail!(
            "`hookline api` needs an admin token: set api.admin_token in the configuration \
             or the HOOKLINE__API__ADMIN_TOKEN environment variable"
        );
    };
    let (topology, _) = super::load_topology(None, &config)?;
    super::fd_limit::raise(None);
    let admin = Admin::new(&config.kafka)?;
    let cluster = admin.describe(&topology.names()).await?;
    if let Err(problems) = verify_ready(&topology, &cluster) {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        bail!(
            "the topics are not ready: {}; run `hookline setup-topics` to create or fix them",
            problems.join("; ")
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let settings = ApiSettings {
        admin_token,
        producer_token: config.api.producer_token.clone(),
        tenants_topic: topology.tenants.name.clone(),
        events_topic: topology.events.name.clone(),
        dead_letters_topic: topology.dlq.name.clone(),
        allow_private_destinations: config.delivery.allow_private_destinations,
        max_payload_bytes: config.delivery.max_payload_bytes,
    };
    let shutdown = CancellationToken::new();
    super::signals::cancel_on_signal(
        shutdown.clone(),
        "the API",
        "shutdown requested; finishing the requests in flight (signal again to exit at once)",
    );
    api::serve(&config.kafka, settings, listener, shutdown)
        .await
        .context("the tenant API stopped")?;
    Ok(ExitCode::SUCCESS)
}

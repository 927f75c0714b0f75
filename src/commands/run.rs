//! `hookline run`: one consumer-group replica.
//!
//! Before anything else it checks that the topics it needs are ready (it
//! refuses to start when they are missing or wrong). Then it opens the
//! telemetry listener (`/readyz` says 503 until the tenant table is restored
//! and the group joined), runs the replica until SIGTERM or SIGINT, drains,
//! commits and exits 0; a second signal exits at once. The listener outlives
//! the drain, so probes see 503 rather than a refused connection while it
//! lasts.
//!
//! A cluster that does not answer at start is waited for, not a reason to
//! exit: an orchestrator would only restart the process in a crash loop,
//! and a replica started with its broker (a compose file, a node reboot)
//! should simply begin once the broker is up. While it waits the listener
//! is open, so `/healthz` says 200 and `/readyz` 503, and each try is logged
//! with the wait before the next one.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::config::Config;
use crate::delivery::dead_letter::DlqReason;
use crate::delivery::reconnect::ReconnectBackoff;
use crate::delivery::runner::{self, ReplicaState, Topics};
use crate::kafka::admin::Admin;
use crate::telemetry::metrics;
use crate::telemetry::server::{self, Endpoints};
use crate::tenants::TenantTable;
use crate::topology::{Topology, verify_ready};

pub async fn run(args: RunArgs, config: Config) -> Result<ExitCode> {
    let (topology, _) = super::load_topology(args.topology.as_deref(), &config)?;
    let admin = Admin::new(&config.kafka)?;
    let state = ReplicaState::with_table(TenantTable::with_prepared_capacity(
        config.delivery.prepared_tenants,
    ));
    let stop_telemetry = CancellationToken::new();
    let shutdown = CancellationToken::new();
    // A second signal exits at once; offsets not yet committed are
    // delivered again later.
    super::signals::cancel_on_signal(
        shutdown.clone(),
        "the replica",
        "shutdown requested; draining (signal again to exit at once)",
    );

    // Opened early only when the cluster must be waited for, so that a
    // replica refused for missing topics never binds the port.
    let mut telemetry = None;
    let mut backoff = ReconnectBackoff::default();
    let names = topology.names();
    let cluster = loop {
        let described = tokio::select! {
            _ = shutdown.cancelled() => {
                tracing::info!("stopped while waiting for Kafka");
                stop_telemetry.cancel();
                return Ok(ExitCode::SUCCESS);
            }
            described = admin.describe(&names) => described,
        };
        match described {
            Ok(cluster) => break cluster,
            Err(e) if e.is_transient() => {
                if telemetry.is_none() {
                    telemetry =
                        Some(serve_telemetry(&config, &state, stop_telemetry.clone()).await?);
                }
                let wait = backoff.next_wait();
                tracing::warn!(
                    tries = backoff.failures(),
                    "{e}; waiting for Kafka, next try in {}",
                    humantime::format_duration(wait)
                );
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        tracing::info!("stopped while waiting for Kafka");
                        stop_telemetry.cancel();
                        return Ok(ExitCode::SUCCESS);
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    if backoff.failures() > 0 {
        tracing::info!(tries = backoff.failures() + 1, "Kafka answers; starting");
    }
    if let Err(problems) = verify_ready(&topology, &cluster) {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        bail!(
            "the topics are not ready: {}; run `hookline setup-topics` to create or fix them",
            problems.join("; ")
        );
    }
    // Raised once the replica is sure to start, so that a refusal is the
    // only line it prints.
    super::fd_limit::raise(Some(
        config.delivery.max_in_flight as u64
            + config.delivery.pool_max_idle as u64
            + super::fd_limit::BASE_DESCRIPTORS,
    ));

    let telemetry = match telemetry {
        Some(telemetry) => telemetry,
        None => serve_telemetry(&config, &state, stop_telemetry.clone()).await?,
    };
    let result = runner::run(&config, &topics(&topology), state, shutdown).await;
    stop_telemetry.cancel();
    match telemetry.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "telemetry listener failed"),
        Err(e) => tracing::warn!(error = %e, "telemetry listener panicked"),
    }
    result.context("the replica stopped")?;
    Ok(ExitCode::SUCCESS)
}

/// Binds `telemetry.listen`, logs the bound address (port 0 picks one) and
/// serves the endpoints until `stop`.
async fn serve_telemetry(
    config: &Config,
    state: &ReplicaState,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let handle = metrics::install(&DlqReason::ALL.map(DlqReason::as_str))?;
    let listener = tokio::net::TcpListener::bind(config.telemetry.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (telemetry.listen)",
                config.telemetry.listen
            )
        })?;
    let addr = listener
        .local_addr()
        .context("cannot read the telemetry address")?;
    tracing::info!("telemetry listening on {addr}");
    let endpoints = Endpoints {
        metrics: handle,
        ready: {
            let state = state.clone();
            Arc::new(move || state.is_ready())
        },
        refresh: {
            let table = state.table.clone();
            Arc::new(move || {
                let stats = table.stats();
                metrics::tenants(stats.tenants, stats.invalid);
            })
        },
    };
    Ok(tokio::spawn(server::serve(listener, endpoints, stop)))
}

pub(super) fn topics(topology: &Topology) -> Topics {
    Topics {
        events: topology.events.name.clone(),
        tenants: topology.tenants.name.clone(),
        dlq: topology.dlq.name.clone(),
    }
}

//! `hookline run`: one consumer-group replica.
//!
//! Before anything else it checks that the topics it needs are ready
//! (DESIGN §2: it refuses to start when they are missing or wrong). The
//! delivery runner itself has not landed yet, so a replica whose topics are
//! ready still says so and stops, rather than pretending to deliver.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::cli::RunArgs;
use crate::config::Config;
use crate::kafka::admin::Admin;
use crate::topology::verify_ready;

pub async fn run(args: RunArgs, config: Config) -> Result<ExitCode> {
    let (topology, _) = super::load_topology(args.topology.as_deref(), &config)?;
    let admin = Admin::new(&config.kafka)?;
    let cluster = admin.describe(&topology.names()).await?;
    if let Err(problems) = verify_ready(&topology, &cluster) {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        bail!(
            "the topics are not ready: {}; run `hookline setup-topics` to create or fix them",
            problems.join("; ")
        );
    }
    super::not_available("run")
}

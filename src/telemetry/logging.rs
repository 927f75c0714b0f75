//! `tracing` subscriber set-up: human-readable text for terminals, JSON lines
//! for log collectors. Logs go to stderr so that commands that print results
//! (`tenants get`, `receive`) keep stdout clean.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. The level comes from `RUST_LOG`
/// (default `info`; librdkafka's own chatter stays at `warn`).
pub fn init_logging(format: LogFormat) {
    init_logging_with_default(format, "info,rdkafka=warn");
}

/// [`init_logging`] with another default filter, for commands whose own
/// output is the point (the demo); `RUST_LOG` still wins.
pub fn init_logging_with_default(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colour codes only help a person at a terminal; in a file or a log
    // collector they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second initialisation (tests that run several commands in one
    // process) keeps the first subscriber; that is not an error.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

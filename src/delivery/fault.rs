//! Fault injection for the tests of what survives a crash. Compiled in only
//! with the `fault-injection` cargo feature (which `make test` enables);
//! without it every point is an empty function, so a production binary
//! has no such behaviour whatever its environment says.
//!
//! `HOOKLINE_FAULT=abort-after-dead-letter` aborts the process right after a
//! dead letter was acknowledged by the broker (in a transaction: before the
//! transaction commits), before its source offset is committed.

/// The environment variable naming the fault to inject.
#[cfg(feature = "fault-injection")]
pub const FAULT_VARIABLE: &str = "HOOKLINE_FAULT";

/// A dead letter was just acknowledged; its source offset is not committed.
#[cfg(feature = "fault-injection")]
pub fn dead_letter_written() {
    if std::env::var(FAULT_VARIABLE).is_ok_and(|fault| fault == "abort-after-dead-letter") {
        eprintln!("{FAULT_VARIABLE}=abort-after-dead-letter: aborting after a dead letter");
        std::process::abort();
    }
}

/// A dead letter was just acknowledged; its source offset is not committed.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn dead_letter_written() {}

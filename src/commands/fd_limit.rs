//! The file-descriptor limit, raised at start by `run` and `api`.
//!
//! Every connection is a file descriptor: a replica's webhook connections
//! (attempts in flight plus idle keep-alive ones), its Kafka sockets, and
//! the API's clients. Many systems start processes with a soft limit of
//! 1024 and a much higher hard limit, which a process may raise its own
//! soft limit to; this does so, and says what it did.

/// Descriptors a process needs besides its webhook connections: Kafka
/// sockets (a few per broker for each client), the telemetry listener and
/// its scrapes, log and configuration files.
pub const BASE_DESCRIPTORS: u64 = 256;

/// Raises the soft limit on open files to the hard limit and logs the old
/// and new limits in one line; warns instead when it cannot, or when the
/// limit is below `needed` (the most descriptors the configuration lets
/// the process hold, when it is known).
pub fn raise(needed: Option<u64>) {
    let (before, hard) = match rlimit::Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!("cannot read the file descriptor limit: {e}");
            return;
        }
    };
    let soft = match rlimit::increase_nofile_limit(hard) {
        Ok(soft) => {
            let what = if soft > before {
                "file descriptor limit raised to the hard limit"
            } else {
                "file descriptor limit already at the hard limit"
            };
            tracing::info!(soft_before = before, soft, hard, "{what}");
            soft
        }
        Err(e) => {
            tracing::warn!(
                soft = before,
                hard,
                "cannot raise the file descriptor limit from {before} to {hard}: {e}"
            );
            before
        }
    };
    if let Some(needed) = needed
        && soft < needed
    {
        tracing::warn!(
            limit = soft,
            needed,
            "the file descriptor limit ({soft}) is below what delivery may hold open \
             ({needed}: delivery.max_in_flight + delivery.pool_max_idle + \
             {BASE_DESCRIPTORS}); raise the hard limit (LimitNOFILE=, ulimit -Hn) \
             or lower those keys"
        );
    }
}

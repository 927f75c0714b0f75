//! SIGTERM and SIGINT for the commands that serve until they are stopped
//! (`run`, `api`, `receive`). The first signal cancels a token, and each
//! command stops in its own way: a replica drains, a server finishes the
//! requests in flight. A second signal ends the process at once.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Exit code of a second signal (128 + SIGINT, as shells report an
/// interrupted program).
const EXIT_INTERRUPTED: i32 = 130;

/// Watches SIGTERM and SIGINT on a task of its own. The first one logs
/// `stopping` and cancels `shutdown`; the second one ends the process with
/// exit code 130, without waiting for what the first one started (a replica
/// that has not committed delivers those records again later). `what` names
/// the process in the error logged when the handlers cannot be installed.
pub(super) fn cancel_on_signal(
    shutdown: CancellationToken,
    what: &'static str,
    stopping: &'static str,
) {
    tokio::spawn(async move {
        let Some(mut signals) = Signals::install(what) else {
            return;
        };
        let received = signals.next().await;
        tracing::info!(signal = received, "{stopping}");
        shutdown.cancel();
        let received = signals.next().await;
        tracing::warn!(signal = received, "second signal; exiting at once");
        std::process::exit(EXIT_INTERRUPTED);
    });
}

/// SIGTERM and SIGINT, as one stream of "stop" requests.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers; when that fails (it does not on Unix with a
    /// runtime), says so naming `what` and returns `None`.
    fn install(what: &str) -> Option<Self> {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some(Self { term, int }),
            _ => {
                tracing::error!("cannot install signal handlers; stop {what} with SIGKILL");
                None
            }
        }
    }

    /// The name of the next SIGTERM or SIGINT received.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

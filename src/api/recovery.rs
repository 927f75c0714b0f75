//! A tenant's own recovery: `POST /v1/tenants/{id}/recover` replays its
//! dead letters with the engine of `hookline dlq replay` (a filter limited
//! to the tenant, remembered in the same kind of consumer group), and
//! `GET /v1/tenants/{id}/dead-letters` lists them without their payloads.
//! The tenant's API key opens both for its own tenant, the admin token for
//! every tenant.
//!
//! A recovery answers when it is done, with what it replayed: a customer
//! whose endpoint is back wants to know that its events are on their way,
//! and an identical request made later replays only what was dead-lettered
//! since. Both routes read the whole dead-letter topic, so they are
//! bounded: at most [`MAX_DEAD_LETTER_READS`] at once in a process (503
//! beyond), one recovery per tenant (409 for a second), and a time limit
//! after which a recovery stops where it got to (remembered, so the same
//! request continues) and a listing gives up.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use super::auth::require_tenant_key_or_token;
use super::tenants::TenantId;
use super::{ApiError, AppState, MAX_BODY_BYTES, read_json};
use crate::delivery::dead_letter::DlqReason;
use crate::error::error_chain;
use crate::events::timestamp::format_unix_millis;
use crate::recovery::{
    self, DeadLetterFilter, FilterError, ListedLetter, ReplayError, ReplayOptions, ReplaySummary,
    ReplayTopics, ResumeError, TimeBound,
};

/// Dead-letter reads (recoveries and listings together) one API process
/// runs at once; each reads the whole dead-letter topic.
pub const MAX_DEAD_LETTER_READS: usize = 4;

/// How long a recovery may run before it stops where it got to.
pub const RECOVERY_TIME_LIMIT: Duration = Duration::from_secs(60);

/// How long a listing may read before it gives up.
pub const LISTING_TIME_LIMIT: Duration = Duration::from_secs(30);

/// Dead letters listed when the request does not say.
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// The most dead letters one listing returns.
pub const MAX_LIST_LIMIT: usize = 1000;

/// The recoveries running, by tenant, and the permits of the dead-letter
/// reads.
pub(super) struct Recoveries {
    running: Arc<Mutex<HashSet<String>>>,
    reads: Arc<Semaphore>,
}

impl Default for Recoveries {
    fn default() -> Self {
        Self {
            running: Arc::default(),
            reads: Arc::new(Semaphore::new(MAX_DEAD_LETTER_READS)),
        }
    }
}

/// A recovery of one tenant that is running; dropping it ends it.
#[derive(Debug)]
pub(super) struct Running {
    running: Arc<Mutex<HashSet<String>>>,
    tenant: String,
    _read: OwnedSemaphorePermit,
}

impl Drop for Running {
    fn drop(&mut self) {
        // A poisoned lock means a panic while the set was held, which only
        // inserts and removes: its contents are still right.
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.remove(&self.tenant);
    }
}

impl Recoveries {
    /// Starts a recovery of `tenant`: 409 while another one of the same
    /// tenant runs, 503 while the process reads as much as it may.
    fn begin(&self, tenant: &str) -> Result<Running, ApiError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.contains(tenant) {
            return Err(ApiError::RecoveryInProgress);
        }
        let read = self.read()?;
        running.insert(tenant.to_string());
        Ok(Running {
            running: self.running.clone(),
            tenant: tenant.to_string(),
            _read: read,
        })
    }

    /// A permit to read the dead-letter topic, or 503.
    fn read(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.reads
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::DeadLettersBusy)
    }
}

/// What to recover.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// Replay the dead letters dead-lettered at or after this: an RFC 3339
    /// instant or a duration back from now (`2h`, `30m`, `1h 30m`).
    #[schema(example = "2h")]
    pub since: String,
    /// And before this, in the same forms; none: up to now. A duration
    /// moves with the clock: dead letters newer than it are left for a
    /// later request with the same body.
    #[serde(default)]
    #[schema(example = "2026-11-28T12:00:00Z")]
    pub until: Option<String>,
}

/// What a recovery replayed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecoveryReport {
    pub tenant: String,
    /// The instant `since` stood for (RFC 3339, UTC).
    pub since: String,
    /// The instant `until` stood for; `null` when none was given.
    pub until: Option<String>,
    /// Dead letters replayed: written back to the events topic and
    /// acknowledged, so they are delivered again in their original order
    /// with their original `webhook-id`.
    pub replayed: u64,
    /// The same, by reason.
    pub reasons: Vec<ReplayedReason>,
    /// Dead letters in the range but newer than an `until` given as a
    /// duration: a later request with the same body replays them.
    pub deferred: u64,
    /// The consumer group that remembers how far recoveries with this body
    /// (and `hookline dlq replay` with the same filter) got: the same
    /// request again replays only dead letters written since.
    pub group: String,
    /// Whether this recovery started where an earlier one with the same
    /// body stopped (false: from the beginning of the topic).
    pub resumed: bool,
}

/// Dead letters replayed for one reason.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplayedReason {
    /// `dlq.reason`; `null` for a record without a known one.
    pub reason: Option<String>,
    pub count: u64,
    /// When the oldest and the newest of them were dead-lettered.
    pub oldest: Option<String>,
    pub newest: Option<String>,
}

impl RecoveryReport {
    fn of(tenant: &str, filter: &DeadLetterFilter, summary: ReplaySummary) -> Self {
        let reasons = summary
            .replayed
            .iter()
            .map(|(key, tally)| ReplayedReason {
                reason: key.reason.map(|r| DlqReason::as_str(r).to_string()),
                count: tally.count,
                oldest: tally.oldest_ms.and_then(format_unix_millis),
                newest: tally.newest_ms.and_then(format_unix_millis),
            })
            .collect();
        Self {
            tenant: tenant.to_string(),
            since: filter
                .since()
                .map(|b| b.instant().to_string())
                .unwrap_or_default(),
            until: filter.until().map(|b| b.instant().to_string()),
            replayed: summary.replayed.total().count,
            reasons,
            deferred: summary.deferred,
            group: summary.group,
            resumed: summary.resumed,
        }
    }
}

/// Replay the tenant's own dead letters since a time.
///
/// Writes the tenant's dead letters dead-lettered in the range back to the
/// events topic, in the order they were dead-lettered (the order of its
/// events), each with its original `webhook-id`, and answers once Kafka
/// acknowledged them. How far it got is remembered per request body: the
/// same request again replays only dead letters written since. The
/// tenant's API key or the admin token.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/recover",
    tags = ["tenant", "admin"],
    security(("api_key" = []), ("admin_token" = [])),
    params(TenantId),
    request_body(content = RecoverRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Replayed; the report says what", body = RecoveryReport),
        (status = 409, description = "A recovery of this tenant is running",
         body = super::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`since` or `until` is not an instant or a duration, or \
         `until` is before `since`; the detail says which",
         body = super::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many dead-letter reads running, the dead letters \
         could not be read or written back, or the recovery reached its time limit; the \
         detail says how many were replayed and remembered, and the same request continues",
         body = super::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn recover(
    State(app): State<AppState>,
    TenantId(id): TenantId,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<RecoveryReport>, ApiError> {
    // The credentials before the body, so that a key of another tenant
    // gets the same 404 whatever it sends.
    require_tenant_key_or_token(&headers, &app.table, &id, &app.settings.admin_token)?;
    let request: RecoverRequest = read_json(&headers, body, MAX_BODY_BYTES).await?;
    let filter = recovery_filter(&id, &request, SystemTime::now())?;
    let running = app.recoveries.begin(&id)?;

    // The replay runs in a task of its own, so that a client that goes
    // away does not drop it between a write and its commit: it ends on its
    // own, at the latest at the time limit, and remembers what it sent.
    let result = {
        let filter = filter.clone();
        bounded(&app, running, move |app, topics, stop| async move {
            recovery::replay(
                &app.kafka,
                &topics,
                &filter,
                ReplayOptions::default(),
                &stop,
                |_| {},
            )
            .await
        })
        .await
        .unwrap_or(Err(ReplayError::Interrupted { replayed: 0 }))
    };
    match result {
        Ok(summary) => {
            let report = RecoveryReport::of(&id, &filter, summary);
            tracing::info!(
                tenant = %id,
                replayed = report.replayed,
                group = %report.group,
                resumed = report.resumed,
                "tenant recovery replayed dead letters"
            );
            Ok(Json(report))
        }
        Err(e) => {
            tracing::warn!(tenant = %id, error = %error_chain(&e), "tenant recovery stopped");
            Err(incomplete(&e))
        }
    }
}

/// What a resumption did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResumeReport {
    pub tenant: String,
    /// Whether the record said suspended (false: the tenant had been
    /// resumed before, and this finished the replay of its parked events).
    pub was_suspended: bool,
    /// Parked events replayed and delivered (or dead-lettered for another
    /// reason) in their order, before the tenant's newer events.
    pub replayed: u64,
    /// Rounds of replay: events parked while one round ran are replayed by
    /// the next, until a round finds none.
    pub rounds: u32,
    /// The consumer group that remembers the replay (shared with
    /// `hookline dlq replay --tenant ID --reason tenant_suspended`).
    pub group: String,
}

/// Resume the tenant, delivering its parked events first.
///
/// Clears the suspension, then replays the events parked while the tenant
/// was suspended (its `tenant_suspended` dead letters) in their order, and
/// answers once the replicas have delivered them; the tenant's events that
/// arrive meanwhile are parked behind them and replayed too, so its
/// receiver sees every event in the order it was produced. The tenant's API
/// key or the admin token.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/resume",
    tags = ["tenant", "admin"],
    security(("api_key" = []), ("admin_token" = [])),
    params(TenantId),
    responses(
        (status = 200, description = "Resumed: the parked events are delivered, in order, \
         and the tenant's new events are delivered as usual", body = ResumeReport),
        (status = 409, description = "A recovery or resumption of this tenant is running",
         body = super::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many dead-letter reads running, or the resumption \
         did not catch up within its time limit (the replicas are not delivering, or the \
         tenant's endpoint fails again); the tenant's new events stay parked behind the replayed \
         ones, and the same request continues",
         body = super::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn resume_tenant(
    State(app): State<AppState>,
    TenantId(id): TenantId,
    headers: HeaderMap,
) -> Result<Json<ResumeReport>, ApiError> {
    require_tenant_key_or_token(&headers, &app.table, &id, &app.settings.admin_token)?;
    let running = app.recoveries.begin(&id)?;
    let was_suspended = super::tenants::clear_suspension(&app, &id, &headers).await?;
    // As for a recovery: a task of its own, ended by the time limit.
    let result = {
        let id = id.clone();
        bounded(&app, running, move |app, topics, stop| async move {
            recovery::resume(&app.kafka, &topics, &id, RECOVERY_TIME_LIMIT, &stop, |_| {}).await
        })
        .await
        .unwrap_or(Err(ResumeError::Interrupted { replayed: 0 }))
    };
    match result {
        Ok(summary) => {
            tracing::info!(
                tenant = %id,
                replayed = summary.replayed,
                rounds = summary.rounds,
                "tenant resumed"
            );
            Ok(Json(ResumeReport {
                tenant: id,
                was_suspended,
                replayed: summary.replayed,
                rounds: summary.rounds,
                group: summary.group,
            }))
        }
        Err(e) => {
            tracing::warn!(tenant = %id, error = %error_chain(&e), "tenant resumption stopped");
            Err(ApiError::RecoveryIncomplete(format!(
                "the resumption did not catch up: {}; the tenant's new events stay parked \
                 behind its replayed ones, and the same request continues",
                match e {
                    ResumeError::NotCaughtUp { .. } => {
                        "its events keep being parked (is its endpoint failing again?)"
                    }
                    ResumeError::NotDelivered { .. } | ResumeError::Interrupted { .. } => {
                        "the replicas did not deliver the replayed events in time"
                    }
                    ResumeError::Replay(_) | ResumeError::Progress(_) => {
                        "the dead letters could not be read or written back"
                    }
                }
            )))
        }
    }
}

/// Runs `work` on the dead-letter and events topics in a task of its own,
/// so that a client that goes away does not drop it between a write and
/// its commit: it ends on its own, at the latest when its `stop` token is
/// cancelled at [`RECOVERY_TIME_LIMIT`] or when the server stops, and it
/// holds `running` until then. `None` only when the runtime shuts down
/// under it.
async fn bounded<T, Work>(
    app: &AppState,
    running: Running,
    work: impl FnOnce(AppState, ReplayTopics, CancellationToken) -> Work,
) -> Option<T>
where
    T: Send + 'static,
    Work: Future<Output = T> + Send + 'static,
{
    let stop = app.shutdown.child_token();
    let topics = ReplayTopics {
        dead_letters: app.settings.dead_letters_topic.clone(),
        events: app.settings.events_topic.clone(),
    };
    let limit = tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::time::sleep(RECOVERY_TIME_LIMIT).await;
            stop.cancel();
        }
    });
    let work = work(app.clone(), topics, stop);
    let task = tokio::spawn(async move {
        let _running = running;
        work.await
    });
    let result = match task.await {
        Ok(result) => Some(result),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_cancelled) => None,
        },
    };
    limit.abort();
    result
}

/// The filter of a recovery: the tenant, and the range of the request.
/// Both bounds are resolved against one `now`, so that `since: 2h, until:
/// 1h` is exactly an hour.
fn recovery_filter(
    tenant: &str,
    request: &RecoverRequest,
    now: SystemTime,
) -> Result<DeadLetterFilter, ApiError> {
    let invalid = |e: FilterError| ApiError::Invalid(e.to_string());
    let since = TimeBound::parse("since", &request.since, now).map_err(invalid)?;
    let until = request
        .until
        .as_deref()
        .map(|until| TimeBound::parse("until", until, now))
        .transpose()
        .map_err(invalid)?;
    DeadLetterFilter::new([tenant.to_string()], [], Some(since), until).map_err(invalid)
}

/// The problem for a recovery that stopped: how many were replayed and
/// whether the same request continues, without the cause, which names the
/// cluster's internals (it is logged).
fn incomplete(error: &ReplayError) -> ApiError {
    let replayed = |n: u64| match n {
        1 => "1 dead letter was replayed".to_string(),
        n => format!("{n} dead letters were replayed"),
    };
    let detail = match error {
        ReplayError::Read(_) | ReplayError::Producer(_) => {
            "the dead letters could not be read; whatever was replayed is remembered, and the \
             same request continues from there"
                .to_string()
        }
        ReplayError::Write { replayed: n, .. } => format!(
            "a dead letter could not be written back: {} before it and remembered; the same \
             request continues from it",
            replayed(*n)
        ),
        ReplayError::Interrupted { replayed: n } => format!(
            "the recovery reached its time limit of {} s or the server is stopping: {} and \
             remembered; the same request continues from there",
            RECOVERY_TIME_LIMIT.as_secs(),
            replayed(*n)
        ),
        ReplayError::Remember { replayed: n, .. } => format!(
            "{}, but how far the recovery got could not be remembered: the same request \
             would replay them again",
            replayed(*n)
        ),
    };
    ApiError::RecoveryIncomplete(detail)
}

/// The query of a listing, for the OpenAPI document; the handler reads it
/// as text, so that a bad value is a problem naming it.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "never read: the type only describes the query")]
struct ListQuery {
    /// How many dead letters to list, newest first: 1 to 1000, 100 when
    /// not given
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
}

/// The query as it arrives.
#[derive(Debug, Deserialize)]
pub struct ListQueryText {
    limit: Option<String>,
}

/// `limit` as given, or the default; 1 to [`MAX_LIST_LIMIT`].
fn list_limit(given: Option<&str>) -> Result<usize, ApiError> {
    let Some(given) = given else {
        return Ok(DEFAULT_LIST_LIMIT);
    };
    match given.trim().parse::<usize>() {
        Ok(limit) if (1..=MAX_LIST_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(ApiError::Invalid(format!(
            "limit `{given}` is not a whole number from 1 to {MAX_LIST_LIMIT}"
        ))),
    }
}

/// A tenant's dead letters, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterList {
    pub tenant: String,
    /// How many dead letters of the tenant the dead-letter topic holds.
    pub total: u64,
    /// The newest of them, at most `limit`, newest first.
    pub dead_letters: Vec<DeadLetterView>,
}

/// One dead letter, without its payload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterView {
    /// The event's webhook id, as its deliveries carried it and a recovery
    /// carries it again (its `id`, or the one derived from where it was
    /// produced); for an event that could not be decoded, its own `id` if
    /// it has one, else `null`.
    pub id: Option<String>,
    /// The event's `type`, when there is one.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Why it was dead-lettered (`dlq.reason`): `retries_exhausted`,
    /// `rejected`, `tenant_suspended`, ...
    pub reason: Option<String>,
    /// The last error (`dlq.error`).
    pub error: Option<String>,
    /// Delivery attempts made (`dlq.attempts`).
    pub attempts: Option<u32>,
    /// The last HTTP status received, when an attempt got an answer
    /// (`dlq.status`).
    pub status: Option<u16>,
    /// When it was dead-lettered (RFC 3339, UTC).
    pub dead_lettered_at: Option<String>,
    /// Where it sits on the dead-letter topic: a replayed event carries
    /// `<partition>:<offset>` in its `hookline.replay-of` Kafka header.
    pub partition: i32,
    pub offset: i64,
}

impl From<ListedLetter> for DeadLetterView {
    fn from(letter: ListedLetter) -> Self {
        Self {
            id: letter.id,
            event_type: letter.event_type,
            reason: letter.reason,
            error: letter.error,
            attempts: letter.attempts,
            status: letter.status,
            dead_lettered_at: letter.dead_lettered_at_ms.and_then(format_unix_millis),
            partition: letter.partition,
            offset: letter.offset,
        }
    }
}

/// List the tenant's own dead letters, newest first, without payloads.
///
/// Each with its event's webhook id and type, why, when and after how
/// many attempts it was dead-lettered, and where it sits on the
/// dead-letter topic. The tenant's API key or the admin token.
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}/dead-letters",
    tags = ["tenant", "admin"],
    security(("api_key" = []), ("admin_token" = [])),
    params(TenantId, ListQuery),
    responses(
        (status = 200, description = "The newest dead letters", body = DeadLetterList),
        (status = 400, description = "The query string cannot be read",
         body = super::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`limit` is not a whole number from 1 to 1000",
         body = super::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many dead-letter reads running, or the dead letters \
         could not be read in time; retry",
         body = super::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn list_dead_letters(
    State(app): State<AppState>,
    TenantId(id): TenantId,
    headers: HeaderMap,
    query: Result<Query<ListQueryText>, QueryRejection>,
) -> Result<Json<DeadLetterList>, ApiError> {
    require_tenant_key_or_token(&headers, &app.table, &id, &app.settings.admin_token)?;
    let Query(query) = query.map_err(|e| ApiError::MalformedRequest(e.body_text()))?;
    let limit = list_limit(query.limit.as_deref())?;
    let _read = app.recoveries.read()?;
    let listing = tokio::time::timeout(
        LISTING_TIME_LIMIT,
        recovery::list_dead_letters(&app.kafka, &app.settings.dead_letters_topic, &id, limit),
    )
    .await;
    let listing = match listing {
        Ok(Ok(listing)) => listing,
        Ok(Err(e)) => {
            tracing::warn!(tenant = %id, error = %error_chain(&e), "listing dead letters failed");
            return Err(ApiError::DeadLettersUnavailable);
        }
        Err(_elapsed) => {
            tracing::warn!(
                tenant = %id,
                limit_s = LISTING_TIME_LIMIT.as_secs(),
                "listing dead letters took too long"
            );
            return Err(ApiError::DeadLettersUnavailable);
        }
    };
    Ok(Json(DeadLetterList {
        tenant: id,
        total: listing.total,
        dead_letters: listing.letters.into_iter().map(Into::into).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2026-11-28T10:00:00Z.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_860_000)
    }

    fn request(since: &str, until: Option<&str>) -> RecoverRequest {
        RecoverRequest {
            since: since.to_string(),
            until: until.map(str::to_string),
        }
    }

    #[test]
    fn a_recovery_is_the_tenant_s_own_replay_filter_with_the_command_s_group() {
        let filter = recovery_filter("acme", &request("2h", None), now()).unwrap();
        assert_eq!(filter.tenants().collect::<Vec<_>>(), ["acme"]);
        assert!(filter.reasons().is_empty());
        assert_eq!(
            filter.since().map(TimeBound::instant),
            Some("2026-11-28T08:00:00.000Z")
        );
        // The group of `hookline dlq replay --tenant acme --since 2h`, so
        // the operator's replay and the tenant's recovery share it.
        let command = DeadLetterFilter::new(
            ["acme".to_string()],
            [],
            Some(TimeBound::parse("--since", "2h", now()).unwrap()),
            None,
        )
        .unwrap();
        assert_eq!(
            filter.replay_group("hookline"),
            command.replay_group("hookline")
        );
    }

    #[test]
    fn bad_bounds_are_invalid_and_name_the_field() {
        for (since, until, expected) in [
            (
                "yesterday",
                None,
                "since `yesterday` is neither an RFC 3339 instant",
            ),
            ("2h", Some("soon"), "until `soon` is neither"),
            ("1h", Some("2h"), "until 2h ("),
            (
                "100000000years",
                None,
                "since `100000000years` is out of range",
            ),
        ] {
            let err = recovery_filter("acme", &request(since, until), now()).unwrap_err();
            assert!(matches!(err, ApiError::Invalid(_)), "{err}");
            assert!(err.to_string().starts_with(expected), "{err}");
        }
    }

    #[test]
    fn one_recovery_per_tenant_and_a_bounded_number_of_reads() {
        let recoveries = Recoveries::default();
        let acme = recoveries.begin("acme").unwrap();
        assert!(matches!(
            recoveries.begin("acme"),
            Err(ApiError::RecoveryInProgress)
        ));
        let globex = recoveries.begin("globex").unwrap();
        drop(acme);
        let acme = recoveries.begin("acme").unwrap();
        // Two recoveries and two listings fill the reads.
        let listings: Vec<_> = (0..MAX_DEAD_LETTER_READS - 2)
            .map(|_| recoveries.read().unwrap())
            .collect();
        assert!(matches!(recoveries.read(), Err(ApiError::DeadLettersBusy)));
        assert!(matches!(
            recoveries.begin("initech"),
            Err(ApiError::DeadLettersBusy)
        ));
        // A refused start leaves nothing behind.
        drop(listings);
        drop(recoveries.begin("initech").unwrap());
        drop((acme, globex));
        assert!(recoveries.running.lock().unwrap().is_empty());
    }

    #[test]
    fn the_limit_defaults_to_100_and_is_1_to_1000() {
        assert_eq!(list_limit(None).unwrap(), DEFAULT_LIST_LIMIT);
        assert_eq!(list_limit(Some("1")).unwrap(), 1);
        assert_eq!(list_limit(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "ten", "", "1.5"] {
            let err = list_limit(Some(bad)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("limit `{bad}` is not a whole number from 1 to 1000")
            );
        }
    }

    #[test]
    fn an_interrupted_recovery_says_how_many_and_that_the_same_request_continues() {
        let detail = incomplete(&ReplayError::Interrupted { replayed: 3 }).to_string();
        assert_eq!(
            detail,
            "the recovery reached its time limit of 60 s or the server is stopping: 3 dead \
             letters were replayed and remembered; the same request continues from there"
        );
        let detail = incomplete(&ReplayError::Interrupted { replayed: 1 }).to_string();
        assert!(detail.contains(": 1 dead letter was replayed"), "{detail}");
    }
}

//! Which dead letters a replay (or the statistics) takes: tenants, reasons
//! and a time range, and the verdict on one dead letter. Pure: the current
//! time is passed in, so a relative bound (`2h`) is resolved once per run.
//!
//! The filter also names the consumer group in which a replay remembers how
//! far it got: `<kafka.group_id>.replay.<hash>`, the hash taken over the
//! filter as the operator wrote it (tenants and reasons sorted, the time
//! bounds exactly as given), so that the same command finds the same group
//! every time, `--since 2h` included.

use std::collections::BTreeSet;
use std::fmt;
use std::time::SystemTime;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::letter::LetterInfo;
use crate::crypto::sha256_hex;
use crate::delivery::dead_letter::DlqReason;
use crate::events::timestamp::format_rfc3339_millis;
use crate::tenants::TenantError;
use crate::tenants::record::validate_id;

/// Hex digits of the filter's hash in a replay's group name: 32 bits, so
/// that two filters in use at once practically never share a group.
const GROUP_HASH_DIGITS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("tenant `{tenant}`: {source}")]
    Tenant {
        tenant: String,
        #[source]
        source: TenantError,
    },
    #[error(
        "{name} `{given}` is neither an RFC 3339 instant (such as 2026-11-28T10:00:00Z) \
         nor a duration back from now (such as 2h or 30m)"
    )]
    Time { name: &'static str, given: String },
    #[error("{name} `{given}` is out of range")]
    TimeOutOfRange { name: &'static str, given: String },
    #[error("{until} is before {since}: the range holds no instant")]
    UntilBeforeSince { since: String, until: String },
}

/// One end of the time range: an instant as given, or a duration back from
/// the time the run started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeBound {
    /// The flag or field it was given as (`--since`, `until`), for messages.
    name: &'static str,
    /// The text as given; part of the group name.
    given: String,
    /// Nanoseconds since the Unix epoch.
    at_nanos: i128,
    /// The same instant in RFC 3339, for messages.
    instant: String,
    /// Whether it was given as a duration, so that it moves with the clock
    /// from one run to the next.
    relative: bool,
}

impl TimeBound {
    /// Parses `given` as an RFC 3339 instant or, failing that, as a humane
    /// duration (`2h`, `30m`, `1h 30m`) back from `now`. `name` says which
    /// bound it is in error messages. An instant outside the years 0000 to
    /// 9999, which RFC 3339 cannot write, is out of range.
    pub fn parse(name: &'static str, given: &str, now: SystemTime) -> Result<Self, FilterError> {
        let (at, relative) = if let Ok(instant) = OffsetDateTime::parse(given, &Rfc3339) {
            (Some(instant), false)
        } else if let Ok(back) = humantime::parse_duration(given) {
            let at = now
                .checked_sub(back)
                .and_then(unix_nanos)
                .and_then(|nanos| OffsetDateTime::from_unix_timestamp_nanos(nanos).ok());
            (at, true)
        } else {
            return Err(FilterError::Time {
                name,
                given: given.to_string(),
            });
        };
        let out_of_range = || FilterError::TimeOutOfRange {
            name,
            given: given.to_string(),
        };
        let at = at.ok_or_else(out_of_range)?;
        Ok(Self {
            name,
            given: given.to_string(),
            at_nanos: at.unix_timestamp_nanos(),
            instant: format_rfc3339_millis(at).ok_or_else(out_of_range)?,
            relative,
        })
    }

    pub fn given(&self) -> &str {
        &self.given
    }

    pub fn is_relative(&self) -> bool {
        self.relative
    }

    /// The instant in RFC 3339 (UTC, milliseconds).
    pub fn instant(&self) -> &str {
        &self.instant
    }
}

impl fmt::Display for TimeBound {
    /// `--since 2h (2026-11-28T08:00:00.000Z)`, or the instant alone when
    /// it was given as one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.relative {
            write!(f, "{} {} ({})", self.name, self.given, self.instant())
        } else {
            write!(f, "{} {}", self.name, self.instant())
        }
    }
}

/// What to do with one dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It matches the filter.
    Take,
    /// It does not match, and never will: its tenant, its reason or its
    /// time (before `since`, or after an `until` given as an instant).
    Pass,
    /// It matches but for being newer than an `until` given as a duration,
    /// which later runs move forward: it may match then.
    NotYet,
}

/// Tenants (any when empty), reasons (any when empty) and the time range
/// `since <= t < until` of the dead letters' own timestamps (when they were
/// dead-lettered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterFilter {
    tenants: BTreeSet<String>,
    reasons: Vec<DlqReason>,
    since: Option<TimeBound>,
    until: Option<TimeBound>,
}

impl DeadLetterFilter {
    /// Every dead letter.
    pub fn all() -> Self {
        Self {
            tenants: BTreeSet::new(),
            reasons: Vec::new(),
            since: None,
            until: None,
        }
    }

    /// Validates the tenant ids and the range; repeated tenants and
    /// reasons count once.
    pub fn new(
        tenants: impl IntoIterator<Item = String>,
        reasons: impl IntoIterator<Item = DlqReason>,
        since: Option<TimeBound>,
        until: Option<TimeBound>,
    ) -> Result<Self, FilterError> {
        let tenants = tenants
            .into_iter()
            .map(|tenant| match validate_id(&tenant) {
                Ok(()) => Ok(tenant),
                Err(source) => Err(FilterError::Tenant { tenant, source }),
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        let mut reasons: Vec<DlqReason> = reasons.into_iter().collect();
        reasons.sort_by_key(|reason| reason.as_str());
        reasons.dedup();
        if let (Some(since), Some(until)) = (&since, &until)
            && until.at_nanos < since.at_nanos
        {
            return Err(FilterError::UntilBeforeSince {
                since: since.to_string(),
                until: until.to_string(),
            });
        }
        Ok(Self {
            tenants,
            reasons,
            since,
            until,
        })
    }

    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.tenants.iter().map(String::as_str)
    }

    pub fn reasons(&self) -> &[DlqReason] {
        &self.reasons
    }

    pub fn since(&self) -> Option<&TimeBound> {
        self.since.as_ref()
    }

    pub fn until(&self) -> Option<&TimeBound> {
        self.until.as_ref()
    }

    /// Whether `letter` is taken, passed over for good, or not yet.
    pub fn verdict(&self, letter: &LetterInfo<'_>) -> Verdict {
        if !self.tenants.is_empty() && !letter.tenant.is_some_and(|t| self.tenants.contains(t)) {
            return Verdict::Pass;
        }
        if !self.reasons.is_empty() && !letter.reason.is_some_and(|r| self.reasons.contains(&r)) {
            return Verdict::Pass;
        }
        if self.since.is_none() && self.until.is_none() {
            return Verdict::Take;
        }
        // A dead letter without a timestamp is outside every range.
        let Some(at) = letter.timestamp_ms.map(|ms| i128::from(ms) * 1_000_000) else {
            return Verdict::Pass;
        };
        if self.since.as_ref().is_some_and(|since| at < since.at_nanos) {
            return Verdict::Pass;
        }
        match &self.until {
            Some(until) if at >= until.at_nanos && until.relative => Verdict::NotYet,
            Some(until) if at >= until.at_nanos => Verdict::Pass,
            _ => Verdict::Take,
        }
    }

    /// The consumer group in which a replay with this filter remembers how
    /// far it got: `<group_id>.replay.<8 hex digits>`. The same filter
    /// always gets the same name, whatever order its tenants and reasons
    /// were given in.
    pub fn replay_group(&self, group_id: &str) -> String {
        let hash = sha256_hex(self.normalized().as_bytes());
        format!("{group_id}.replay.{}", &hash[..GROUP_HASH_DIGITS])
    }

    /// The filter as one text that is the same for the same filter: JSON
    /// with a fixed key order, tenants and reasons sorted, the time bounds
    /// as given (so `2h` stays `2h` from one run to the next). Written out
    /// by hand rather than through a map, whose key order a build feature
    /// could change, and with it every group name.
    fn normalized(&self) -> String {
        let tenants: Vec<&str> = self.tenants().collect();
        let reasons: Vec<&str> = self.reasons.iter().map(|r| r.as_str()).collect();
        format!(
            r#"{{"tenants":{},"reasons":{},"since":{},"until":{}}}"#,
            json(&tenants),
            json(&reasons),
            json(self.since.as_ref().map(TimeBound::given)),
            json(self.until.as_ref().map(TimeBound::given)),
        )
    }

    /// The filter in words, for the start of a replay's output:
    /// `tenant acme, reason tenant_suspended, --since 2h (…)`, or `every
    /// dead letter`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.tenants.is_empty() {
            let noun = if self.tenants.len() == 1 {
                "tenant"
            } else {
                "tenants"
            };
            parts.push(format!(
                "{noun} {}",
                self.tenants().collect::<Vec<_>>().join(", ")
            ));
        }
        if !self.reasons.is_empty() {
            let noun = if self.reasons.len() == 1 {
                "reason"
            } else {
                "reasons"
            };
            let reasons: Vec<&str> = self.reasons.iter().map(|r| r.as_str()).collect();
            parts.push(format!("{noun} {}", reasons.join(", ")));
        }
        parts.extend(self.since.iter().map(ToString::to_string));
        parts.extend(self.until.iter().map(ToString::to_string));
        if parts.is_empty() {
            "every dead letter".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// `value` as JSON. Only strings, lists of strings and options of them
/// are written, and those always serialize.
fn json(value: impl serde::Serialize) -> String {
    serde_json::to_string(&value).expect("strings serialize to JSON")
}

/// Nanoseconds since the Unix epoch, `None` beyond what `i128` holds.
fn unix_nanos(at: SystemTime) -> Option<i128> {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).ok(),
        Err(before) => i128::try_from(before.duration().as_nanos())
            .ok()
            .map(|n| -n),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2026-11-28T10:00:00Z.
    const NOW_MS: i64 = 1_795_860_000_000;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(NOW_MS as u64)
    }

    fn bound(name: &'static str, given: &str) -> TimeBound {
        TimeBound::parse(name, given, now()).unwrap()
    }

    fn letter(
        tenant: Option<&str>,
        reason: Option<DlqReason>,
        at_ms: Option<i64>,
    ) -> LetterInfo<'_> {
        LetterInfo {
            tenant,
            reason,
            timestamp_ms: at_ms,
        }
    }

    fn filter(
        tenants: &[&str],
        reasons: &[DlqReason],
        since: Option<&str>,
        until: Option<&str>,
    ) -> DeadLetterFilter {
        DeadLetterFilter::new(
            tenants.iter().map(|t| t.to_string()),
            reasons.iter().copied(),
            since.map(|s| bound("--since", s)),
            until.map(|u| bound("--until", u)),
        )
        .unwrap()
    }

    #[test]
    fn an_instant_is_rfc3339_with_any_offset() {
        let utc = bound("--since", "2026-11-28T09:00:00Z");
        assert_eq!(utc.instant(), "2026-11-28T09:00:00.000Z");
        assert!(!utc.is_relative());
        let offset = bound("--since", "2026-11-28T10:00:00.250+01:00");
        assert_eq!(offset.instant(), "2026-11-28T09:00:00.250Z");
    }

    #[test]
    fn a_duration_is_back_from_now() {
        let two_hours = bound("--since", "2h");
        assert_eq!(two_hours.instant(), "2026-11-28T08:00:00.000Z");
        assert!(two_hours.is_relative());
        assert_eq!(
            bound("--since", "1h 30m").instant(),
            "2026-11-28T08:30:00.000Z"
        );
        assert_eq!(bound("--until", "0s").instant(), "2026-11-28T10:00:00.000Z");
        assert_eq!(
            bound("--since", "30m").to_string(),
            "--since 30m (2026-11-28T09:30:00.000Z)"
        );
    }

    #[test]
    fn unreadable_times_are_refused_naming_the_bound() {
        for given in [
            "yesterday",
            "2026-11-28",
            "2026-11-28 10:00:00",
            "",
            "-2h",
            "2 hours ago",
        ] {
            let err = TimeBound::parse("--since", given, now()).unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("--since `{given}`")),
                "{message}"
            );
            assert!(message.contains("RFC 3339"), "{message}");
        }
        let err = TimeBound::parse("until", "100000000years", now()).unwrap_err();
        assert!(
            matches!(err, FilterError::TimeOutOfRange { name: "until", .. }),
            "{err}"
        );
    }

    #[test]
    fn until_before_since_is_refused() {
        let err = DeadLetterFilter::new(
            [],
            [],
            Some(bound("--since", "2026-11-28T09:00:00Z")),
            Some(bound("--until", "2h")),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--until 2h (2026-11-28T08:00:00.000Z) is before --since \
             2026-11-28T09:00:00.000Z: the range holds no instant"
        );
        // An empty range that is not inverted is allowed: it matches nothing.
        filter(&[], &[], Some("1h"), Some("1h"));
    }

    #[test]
    fn bad_tenant_ids_are_refused() {
        let err = DeadLetterFilter::new(["".to_string()], [], None, None).unwrap_err();
        assert!(
            err.to_string().starts_with("tenant ``: tenant id must be"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_filter_takes_everything() {
        let all = DeadLetterFilter::all();
        assert_eq!(all, filter(&[], &[], None, None));
        for letter in [
            letter(None, None, None),
            letter(Some("acme"), Some(DlqReason::Rejected), Some(0)),
        ] {
            assert_eq!(all.verdict(&letter), Verdict::Take);
        }
        assert_eq!(all.describe(), "every dead letter");
    }

    #[test]
    fn tenants_and_reasons_each_take_any_of_theirs() {
        let f = filter(
            &["acme", "globex"],
            &[DlqReason::RetriesExhausted, DlqReason::TenantSuspended],
            None,
            None,
        );
        let exhausted = Some(DlqReason::RetriesExhausted);
        assert_eq!(
            f.verdict(&letter(Some("acme"), exhausted, None)),
            Verdict::Take
        );
        assert_eq!(
            f.verdict(&letter(
                Some("globex"),
                Some(DlqReason::TenantSuspended),
                None
            )),
            Verdict::Take
        );
        assert_eq!(
            f.verdict(&letter(Some("initech"), exhausted, None)),
            Verdict::Pass
        );
        assert_eq!(
            f.verdict(&letter(Some("acme"), Some(DlqReason::Rejected), None)),
            Verdict::Pass
        );
        assert_eq!(f.verdict(&letter(None, exhausted, None)), Verdict::Pass);
        assert_eq!(f.verdict(&letter(Some("acme"), None, None)), Verdict::Pass);
    }

    #[test]
    fn the_range_includes_since_and_excludes_until() {
        let f = filter(
            &[],
            &[],
            Some("2026-11-28T09:00:00Z"),
            Some("2026-11-28T09:30:00Z"),
        );
        let at = |ms: i64| f.verdict(&letter(Some("acme"), None, Some(ms)));
        let nine = NOW_MS - 3_600_000;
        assert_eq!(at(nine - 1), Verdict::Pass);
        assert_eq!(at(nine), Verdict::Take);
        assert_eq!(at(nine + 1_800_000 - 1), Verdict::Take);
        // After an instant, a dead letter never matches.
        assert_eq!(at(nine + 1_800_000), Verdict::Pass);
        assert_eq!(f.verdict(&letter(Some("acme"), None, None)), Verdict::Pass);
    }

    #[test]
    fn newer_than_a_relative_until_is_not_yet_unless_it_fails_another_test() {
        let f = filter(&["acme"], &[], None, Some("30m"));
        let thirty_minutes_ago = NOW_MS - 1_800_000;
        assert_eq!(
            f.verdict(&letter(Some("acme"), None, Some(thirty_minutes_ago - 1))),
            Verdict::Take
        );
        assert_eq!(
            f.verdict(&letter(Some("acme"), None, Some(thirty_minutes_ago))),
            Verdict::NotYet
        );
        assert_eq!(
            f.verdict(&letter(Some("globex"), None, Some(thirty_minutes_ago))),
            Verdict::Pass
        );
        // Older than a relative since stays older: passed for good.
        let f = filter(&[], &[], Some("1h"), None);
        assert_eq!(
            f.verdict(&letter(None, None, Some(NOW_MS - 3_600_001))),
            Verdict::Pass
        );
    }

    #[test]
    fn the_group_name_is_stable_and_ignores_order_and_repetition() {
        let f = filter(
            &["globex", "acme", "acme"],
            &[DlqReason::TenantSuspended, DlqReason::RetriesExhausted],
            Some("2h"),
            None,
        );
        let same = filter(
            &["acme", "globex"],
            &[
                DlqReason::RetriesExhausted,
                DlqReason::TenantSuspended,
                DlqReason::RetriesExhausted,
            ],
            Some("2h"),
            None,
        );
        assert_eq!(f.replay_group("hookline"), same.replay_group("hookline"));
        assert_eq!(
            f.normalized(),
            r#"{"tenants":["acme","globex"],"reasons":["retries_exhausted","tenant_suspended"],"since":"2h","until":null}"#
        );
        // The name is part of what operators see and what a later release
        // must find again: it is pinned here.
        assert_eq!(f.replay_group("hookline"), "hookline.replay.24ee4509");
        // A relative bound is kept as given, not as the instant it meant.
        let later = DeadLetterFilter::new(
            ["acme".to_string(), "globex".to_string()],
            [DlqReason::RetriesExhausted, DlqReason::TenantSuspended],
            Some(TimeBound::parse("--since", "2h", now() + Duration::from_secs(600)).unwrap()),
            None,
        )
        .unwrap();
        assert_eq!(later.replay_group("hookline"), f.replay_group("hookline"));
    }

    #[test]
    fn different_filters_get_different_groups() {
        let groups: BTreeSet<String> = [
            filter(&[], &[], None, None),
            filter(&["acme"], &[], None, None),
            filter(&["acme"], &[DlqReason::Rejected], None, None),
            filter(&["acme"], &[], Some("2h"), None),
            filter(&["acme"], &[], Some("120m"), None),
            filter(&["acme"], &[], None, Some("2h")),
        ]
        .iter()
        .map(|f| f.replay_group("hookline"))
        .collect();
        assert_eq!(groups.len(), 6, "{groups:?}");
        assert!(
            groups
                .iter()
                .all(|g| g.starts_with("hookline.replay.") && g.len() == 24)
        );
        assert_ne!(
            filter(&[], &[], None, None).replay_group("a"),
            filter(&[], &[], None, None).replay_group("b")
        );
    }

    #[test]
    fn the_description_names_every_part() {
        let f = filter(
            &["acme"],
            &[DlqReason::TenantSuspended],
            Some("2026-11-28T09:00:00Z"),
            Some("30m"),
        );
        assert_eq!(
            f.describe(),
            "tenant acme, reason tenant_suspended, --since 2026-11-28T09:00:00.000Z, \
             --until 30m (2026-11-28T09:30:00.000Z)"
        );
    }
}

//! Dead-letter records: why an event was dead-lettered and the headers that
//! say so (DESIGN §7).
//!
//! This module is pure: it names the reasons and renders the headers.
//! [`writer`] is the I/O: it writes the record (original key, value and
//! headers, plus these) to the dead-letter topic through `kafka::producer`.

pub mod writer;

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use crate::events::timestamp::format_system_time;
use crate::events::{DecodeError, EventError};

/// Header names that hookline adds to a dead-letter record. They are part of
/// the contract: replay tooling and operators' consumers read them.
pub mod header {
    pub const REASON: &str = "dlq.reason";
    pub const ERROR: &str = "dlq.error";
    pub const STATUS: &str = "dlq.status";
    pub const ATTEMPTS: &str = "dlq.attempts";
    pub const TOPIC: &str = "dlq.topic";
    pub const PARTITION: &str = "dlq.partition";
    pub const OFFSET: &str = "dlq.offset";
    pub const TENANT: &str = "dlq.tenant";
    pub const FIRST_ATTEMPT_AT: &str = "dlq.first_attempt_at";
    pub const LAST_ATTEMPT_AT: &str = "dlq.last_attempt_at";
    /// Not a dead letter's but a replayed record's: `<dlq partition>:<offset>`
    /// of the dead letter it replays (DESIGN §13), a [`DlqPosition`](super::DlqPosition).
    /// Receivers never see it: hookline does not forward Kafka headers in
    /// webhook requests.
    pub const REPLAY_OF: &str = "hookline.replay-of";
}

/// Where a record sits on the dead-letter topic; written `<partition>:<offset>`
/// in the `hookline.replay-of` header of the record that replays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DlqPosition {
    pub partition: i32,
    pub offset: i64,
}

impl DlqPosition {
    /// Reads a `hookline.replay-of` value; `None` unless it is exactly
    /// `<partition>:<offset>` with both non-negative.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?;
        let (partition, offset) = text.split_once(':')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(partition) || !digits(offset) {
            return None;
        }
        Some(Self {
            partition: partition.parse().ok()?,
            offset: offset.parse().ok()?,
        })
    }

    /// Whether a replay of `self` comes at or after `owed`: the same
    /// dead-letter partition (a tenant's dead letters share one), not
    /// below it.
    pub fn reaches(self, owed: DlqPosition) -> bool {
        self.partition == owed.partition && self.offset >= owed.offset
    }
}

impl fmt::Display for DlqPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

/// Upper bound of the `dlq.error` header value, in bytes. A receiver's error
/// page or a deeply chained transport error can be arbitrarily long; the
/// header is for a human reading a summary, not for the whole response.
pub const MAX_ERROR_BYTES: usize = 1024;

/// Why an event went to the dead-letter topic. The string forms are the
/// `dlq.reason` values of the contract and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DlqReason {
    /// Every attempt failed with a retryable error, up to `delivery.max_attempts`.
    RetriesExhausted,
    /// The receiver answered with a status listed in
    /// `delivery.non_retryable_statuses`.
    Rejected,
    /// The record key names no tenant in the tenant table.
    UnknownTenant,
    /// The tenant exists but its record says `enabled: false`.
    TenantDisabled,
    /// The tenant's record does not parse or validate.
    InvalidTenant,
    /// The record cannot be decoded into an event (key, value or fields).
    InvalidEvent,
    /// The record value is above `delivery.max_payload_bytes`.
    PayloadTooLarge,
    /// The tenant's URL resolves to an address that destinations may not have.
    BlockedDestination,
    /// The tenant is suspended (its endpoint kept failing): its events are
    /// dead-lettered without attempts until a probe is delivered.
    TenantSuspended,
}

impl DlqReason {
    /// Every reason, in contract order.
    pub const ALL: [DlqReason; 9] = [
        DlqReason::RetriesExhausted,
        DlqReason::Rejected,
        DlqReason::UnknownTenant,
        DlqReason::TenantDisabled,
        DlqReason::InvalidTenant,
        DlqReason::InvalidEvent,
        DlqReason::PayloadTooLarge,
        DlqReason::BlockedDestination,
        DlqReason::TenantSuspended,
    ];

    /// The `dlq.reason` header value (also usable as a metric label: the set
    /// is closed).
    pub const fn as_str(self) -> &'static str {
        match self {
            DlqReason::RetriesExhausted => "retries_exhausted",
            DlqReason::Rejected => "rejected",
            DlqReason::UnknownTenant => "unknown_tenant",
            DlqReason::TenantDisabled => "tenant_disabled",
            DlqReason::InvalidTenant => "invalid_tenant",
            DlqReason::InvalidEvent => "invalid_event",
            DlqReason::PayloadTooLarge => "payload_too_large",
            DlqReason::BlockedDestination => "blocked_destination",
            DlqReason::TenantSuspended => "tenant_suspended",
        }
    }
}

impl fmt::Display for DlqReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the `dlq.reason` values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown dead-letter reason `{0}` (expected one of: {expected})",
    expected = DlqReason::ALL.map(DlqReason::as_str).join(", ")
)]
pub struct UnknownDlqReason(pub String);

impl FromStr for DlqReason {
    type Err = UnknownDlqReason;

    /// Parses the exact header value; tooling passes operator input through
    /// here, so no case folding: the contract spells them in lower case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DlqReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == s)
            .ok_or_else(|| UnknownDlqReason(s.to_owned()))
    }
}

/// The reason of a record that is not a deliverable event. Decoding says
/// what is wrong with the record; which `dlq.reason` that is, is decided
/// here: a value over `delivery.max_payload_bytes` is `payload_too_large`,
/// anything else `invalid_event`.
impl From<&EventError> for DlqReason {
    fn from(error: &EventError) -> Self {
        match error {
            EventError::PayloadTooLarge { .. } => DlqReason::PayloadTooLarge,
            _ => DlqReason::InvalidEvent,
        }
    }
}

/// The dead-letter side of [`DecodeError`], as a method so that callers
/// read `error.dlq_reason()`.
pub trait DecodeErrorExt {
    /// The `dlq.reason` of a record that failed to decode this way, or
    /// `None` when it must not be dead-lettered: the schema registry could
    /// not be asked, and the record waits until it can.
    fn dlq_reason(&self) -> Option<DlqReason>;
}

impl DecodeErrorExt for DecodeError {
    fn dlq_reason(&self) -> Option<DlqReason> {
        match self {
            DecodeError::Invalid(e) => Some(DlqReason::from(e)),
            DecodeError::RegistryUnavailable { .. } => None,
        }
    }
}

/// Everything the headers of one dead-letter record say, built with
/// [`DeadLetter::new`] and the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub reason: DlqReason,
    /// The last error, as a human would want to read it. Rendered bounded
    /// and on one line by [`DeadLetter::headers`].
    pub error: String,
    /// The last HTTP status received, if any attempt got a response.
    pub status: Option<u16>,
    /// Number of delivery attempts made; 0 when the event was dead-lettered
    /// before any attempt (invalid event, unknown tenant, ...).
    pub attempts: u32,
    /// Where the event came from.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The tenant id, when the record key was one (it is absent for a null
    /// or non-UTF-8 key).
    pub tenant: Option<String>,
    /// When the first and the last attempt started. Rendered only when
    /// `attempts > 0`.
    pub first_attempt_at: Option<SystemTime>,
    pub last_attempt_at: Option<SystemTime>,
}

impl DeadLetter {
    /// A dead letter with no attempts, no status and no tenant yet.
    pub fn new(
        reason: DlqReason,
        error: impl Into<String>,
        topic: impl Into<String>,
        partition: i32,
        offset: i64,
    ) -> Self {
        DeadLetter {
            reason,
            error: error.into(),
            status: None,
            attempts: 0,
            topic: topic.into(),
            partition,
            offset,
            tenant: None,
            first_attempt_at: None,
            last_attempt_at: None,
        }
    }

    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    pub fn with_status(mut self, status: Option<u16>) -> Self {
        self.status = status;
        self
    }

    /// Records `count` attempts, the first started at `first`, the last at
    /// `last`.
    pub fn with_attempts(mut self, count: u32, first: SystemTime, last: SystemTime) -> Self {
        self.attempts = count;
        self.first_attempt_at = Some(first);
        self.last_attempt_at = Some(last);
        self
    }

    /// The `dlq.*` headers, in contract order. Optional headers are left
    /// out rather than sent empty, so that "absent" is never confused with a
    /// value.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(10);
        headers.push((header::REASON, self.reason.as_str().to_owned()));
        headers.push((
            header::ERROR,
            bounded_single_line(&self.error, MAX_ERROR_BYTES),
        ));
        if let Some(status) = self.status {
            headers.push((header::STATUS, status.to_string()));
        }
        headers.push((header::ATTEMPTS, self.attempts.to_string()));
        headers.push((header::TOPIC, self.topic.clone()));
        headers.push((header::PARTITION, self.partition.to_string()));
        headers.push((header::OFFSET, self.offset.to_string()));
        if let Some(tenant) = &self.tenant {
            headers.push((header::TENANT, tenant.clone()));
        }
        if self.attempts > 0 {
            if let Some(first) = self.first_attempt_at.and_then(format_system_time) {
                headers.push((header::FIRST_ATTEMPT_AT, first));
            }
            if let Some(last) = self.last_attempt_at.and_then(format_system_time) {
                headers.push((header::LAST_ATTEMPT_AT, last));
            }
        }
        headers
    }
}

/// `text` on one line and at most `max_bytes` long: every control character
/// (newlines included) becomes a space, and a text that is too long is cut
/// on a character boundary and ends with `…` (the ellipsis counts against the
/// limit).
pub fn bounded_single_line(text: &str, max_bytes: usize) -> String {
    const ELLIPSIS: char = '…';
    let single_line = text.chars().map(|c| if c.is_control() { ' ' } else { c });
    if text.len() <= max_bytes {
        return single_line.collect();
    }
    let budget = max_bytes.saturating_sub(ELLIPSIS.len_utf8());
    let mut bounded = String::with_capacity(max_bytes);
    for c in single_line {
        if bounded.len() + c.len_utf8() > budget {
            break;
        }
        bounded.push(c);
    }
    if bounded.len() + ELLIPSIS.len_utf8() <= max_bytes {
        bounded.push(ELLIPSIS);
    }
    bounded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventDecoder, RecordParts};
    use crate::schema_registry::RegistryError;
    use proptest::prelude::*;
    use std::time::Duration;

    fn at(unix_millis: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(unix_millis)
    }

    /// `ALL` lists every reason once, in the order of DESIGN §7 (and §13's
    /// addition after it), and each
    /// one's `dlq.reason` value is its own: they are label values and header
    /// values that operators filter on.
    #[test]
    fn reason_strings_are_the_contract() {
        let strings: Vec<&str> = DlqReason::ALL.iter().map(|r| r.as_str()).collect();
        let distinct: std::collections::BTreeSet<&str> = strings.iter().copied().collect();
        assert_eq!(distinct.len(), strings.len(), "{strings:?}");
        assert_eq!(
            strings,
            [
                "retries_exhausted",
                "rejected",
                "unknown_tenant",
                "tenant_disabled",
                "invalid_tenant",
                "invalid_event",
                "payload_too_large",
                "blocked_destination",
                "tenant_suspended",
            ]
        );
    }

    #[test]
    fn reason_round_trips_through_from_str_and_display() {
        for reason in DlqReason::ALL {
            assert_eq!(reason.as_str().parse::<DlqReason>(), Ok(reason));
            assert_eq!(reason.to_string(), reason.as_str());
        }
    }

    #[test]
    fn unknown_reason_is_refused_with_the_list_of_valid_ones() {
        let err = "Rejected".parse::<DlqReason>().unwrap_err();
        assert_eq!(err, UnknownDlqReason("Rejected".into()));
        let message = err.to_string();
        assert!(message.contains("`Rejected`"), "{message}");
        assert!(message.contains("retries_exhausted"), "{message}");
        assert!("".parse::<DlqReason>().is_err());
        assert!("rejected ".parse::<DlqReason>().is_err());
    }

    #[test]
    fn an_oversized_value_is_payload_too_large_and_every_other_refusal_invalid_event() {
        let oversized = EventError::PayloadTooLarge {
            size: 101,
            limit: 100,
        };
        assert_eq!(DlqReason::from(&oversized), DlqReason::PayloadTooLarge);
        let not_utf8 = String::from_utf8(vec![0xff]).unwrap_err().utf8_error();
        let invalid = [
            EventError::MissingKey,
            EventError::EmptyKey,
            EventError::KeyNotUtf8(not_utf8),
            EventError::MissingValue,
            EventError::EmptyValue,
            EventError::SchemaRegistryRequired { schema_id: 7 },
            EventError::Schema {
                schema_id: 7,
                source: Box::new(RegistryError::SchemaNotFound { id: 7 }),
            },
            EventError::RecursiveSchema { schema_id: 7 },
            EventError::SchemaNotLoaded { schema_id: 7 },
            EventError::AvroTruncated { schema_id: 7 },
            EventError::AvroTrailingBytes {
                schema_id: 7,
                count: 1,
            },
            EventError::ValueNotUtf8(not_utf8),
            EventError::TooDeep,
            EventError::NotAnObject,
            EventError::EmptyType,
            EventError::TenantMismatch,
            EventError::NoTimestamp,
        ];
        for error in &invalid {
            assert_eq!(DlqReason::from(error), DlqReason::InvalidEvent, "{error:?}");
        }
    }

    #[test]
    fn a_decode_error_is_dead_lettered_unless_the_registry_could_not_be_asked() {
        let oversized = DecodeError::Invalid(EventError::PayloadTooLarge {
            size: 101,
            limit: 100,
        });
        assert_eq!(oversized.dlq_reason(), Some(DlqReason::PayloadTooLarge));
        let keyless = DecodeError::Invalid(EventError::MissingKey);
        assert_eq!(keyless.dlq_reason(), Some(DlqReason::InvalidEvent));
        let registry_down = DecodeError::RegistryUnavailable {
            schema_id: 7,
            source: Box::new(RegistryError::SchemaNotFound { id: 7 }),
        };
        assert_eq!(registry_down.dlq_reason(), None);
    }

    /// Every refusal of the JSON decoder has a reason, and it is
    /// `payload_too_large` exactly when the value is over the limit: the
    /// same property as the `event_decode` fuzz target.
    #[test]
    fn refusals_of_the_json_decoder_have_their_reason() {
        let oversized = [b'x'; 129];
        let cases = [
            (Some("acme"), &oversized[..], DlqReason::PayloadTooLarge),
            (None, &oversized[..], DlqReason::PayloadTooLarge),
            (None, br#"{"type":"t","data":1}"#, DlqReason::InvalidEvent),
            (Some("acme"), b"{not json", DlqReason::InvalidEvent),
        ];
        for (key, value, reason) in cases {
            let parts = RecordParts {
                key: key.map(str::as_bytes),
                value: Some(value),
                timestamp_millis: Some(0),
                topic: "events",
                partition: 0,
                offset: 0,
            };
            let error = EventDecoder::Json.decode(&parts, 128).unwrap_err();
            assert_eq!(DlqReason::from(&error), reason, "{error:?}");
        }
    }

    #[test]
    fn headers_after_attempts_carry_everything_in_contract_order() {
        let dead_letter =
            DeadLetter::new(DlqReason::RetriesExhausted, "HTTP 503", "events", 7, 4242)
                .with_tenant("acme")
                .with_status(Some(503))
                .with_attempts(8, at(1_795_860_000_000), at(1_795_860_123_456));
        assert_eq!(
            dead_letter.headers(),
            vec![
                ("dlq.reason", "retries_exhausted".to_string()),
                ("dlq.error", "HTTP 503".to_string()),
                ("dlq.status", "503".to_string()),
                ("dlq.attempts", "8".to_string()),
                ("dlq.topic", "events".to_string()),
                ("dlq.partition", "7".to_string()),
                ("dlq.offset", "4242".to_string()),
                ("dlq.tenant", "acme".to_string()),
                (
                    "dlq.first_attempt_at",
                    "2026-11-28T10:00:00.000Z".to_string()
                ),
                (
                    "dlq.last_attempt_at",
                    "2026-11-28T10:02:03.456Z".to_string()
                ),
            ]
        );
    }

    #[test]
    fn headers_before_any_attempt_leave_out_status_and_timestamps() {
        let dead_letter = DeadLetter::new(
            DlqReason::InvalidEvent,
            "value is not valid JSON",
            "events",
            0,
            1,
        )
        .with_tenant("acme");
        let names: Vec<&str> = dead_letter.headers().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "dlq.reason",
                "dlq.error",
                "dlq.attempts",
                "dlq.topic",
                "dlq.partition",
                "dlq.offset",
                "dlq.tenant"
            ]
        );
        assert!(
            dead_letter
                .headers()
                .contains(&("dlq.attempts", "0".to_string()))
        );
    }

    #[test]
    fn tenant_header_is_absent_when_the_key_named_none() {
        let dead_letter =
            DeadLetter::new(DlqReason::InvalidEvent, "record has no key", "events", 3, 9);
        assert!(
            dead_letter
                .headers()
                .iter()
                .all(|(name, _)| *name != header::TENANT)
        );
    }

    #[test]
    fn timestamps_are_left_out_when_zero_attempts_were_recorded() {
        let dead_letter = DeadLetter::new(DlqReason::BlockedDestination, "blocked", "events", 0, 0)
            .with_attempts(0, at(0), at(0));
        let headers = dead_letter.headers();
        assert!(
            headers
                .iter()
                .all(|(name, _)| !name.ends_with("_attempt_at"))
        );
    }

    #[test]
    fn status_header_without_attempt_timestamps_is_allowed() {
        // A builder user may know the status without timestamps; the headers
        // render what is known and nothing else.
        let dead_letter = DeadLetter::new(DlqReason::Rejected, "HTTP 410 Gone", "events", 1, 2)
            .with_status(Some(410));
        assert!(
            dead_letter
                .headers()
                .contains(&("dlq.status", "410".to_string()))
        );
    }

    #[test]
    fn error_header_is_single_line() {
        let dead_letter = DeadLetter::new(
            DlqReason::RetriesExhausted,
            "HTTP 500\r\n<html>\n\tboom</html>\u{0}",
            "events",
            0,
            0,
        );
        let error = &dead_letter.headers()[1].1;
        assert_eq!(error, "HTTP 500  <html>  boom</html> ");
    }

    #[test]
    fn error_header_is_bounded() {
        let dead_letter = DeadLetter::new(
            DlqReason::RetriesExhausted,
            "x".repeat(10_000),
            "events",
            0,
            0,
        );
        let error = &dead_letter.headers()[1].1;
        assert_eq!(error.len(), MAX_ERROR_BYTES);
        assert!(error.ends_with('…'));
    }

    #[test]
    fn truncation_cuts_on_a_character_boundary() {
        // Each 'é' is two bytes and the ellipsis three: a 10-byte limit
        // leaves 7 bytes of text, an odd count that would split a fourth 'é'.
        let text = "é".repeat(100);
        let bounded = bounded_single_line(&text, 10);
        assert_eq!(bounded, "ééé…");
        assert_eq!(bounded.len(), 9);
    }

    #[test]
    fn text_at_the_limit_is_kept_whole() {
        assert_eq!(bounded_single_line("abcdef", 6), "abcdef");
        assert_eq!(bounded_single_line("abcdefg", 6), "abc…");
    }

    #[test]
    fn limit_smaller_than_the_ellipsis_yields_empty() {
        assert_eq!(bounded_single_line("abcdef", 2), "");
    }

    #[test]
    fn attempt_times_beyond_year_9999_are_left_out() {
        let far_future = at(0) + Duration::from_secs(400_000_000_000);
        let dead_letter = DeadLetter::new(DlqReason::RetriesExhausted, "HTTP 500", "events", 0, 0)
            .with_attempts(2, at(1_795_860_000_000), far_future);
        let headers = dead_letter.headers();
        assert!(headers.contains(&(header::FIRST_ATTEMPT_AT, "2026-11-28T10:00:00.000Z".into())));
        assert!(
            headers
                .iter()
                .all(|(name, _)| *name != header::LAST_ATTEMPT_AT)
        );
    }

    proptest! {
        #[test]
        fn bounded_single_line_holds_its_promises(text in any::<String>(), max in 0usize..64) {
            let bounded = bounded_single_line(&text, max);
            prop_assert!(bounded.len() <= max);
            prop_assert!(!bounded.chars().any(char::is_control));
            if text.len() <= max {
                prop_assert_eq!(bounded.chars().count(), text.chars().count());
            } else {
                let kept = bounded.trim_end_matches('…');
                let cleaned: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
                prop_assert!(cleaned.starts_with(kept));
            }
        }
    }

    #[test]
    fn a_replay_of_value_round_trips_and_nothing_else_parses() {
        let position = DlqPosition {
            partition: 3,
            offset: 1_200_000_000_000,
        };
        assert_eq!(position.to_string(), "3:1200000000000");
        assert_eq!(DlqPosition::parse(b"3:1200000000000"), Some(position));
        for bad in [
            &b""[..],
            b"3",
            b"3:",
            b":4",
            b"-1:4",
            b"3:-4",
            b"3:4:5",
            b" 3:4",
            b"3:+4",
            b"99999999999:1",
            b"\xff:1",
        ] {
            assert_eq!(
                DlqPosition::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_replay_reaches_positions_at_or_below_it_on_its_partition_only() {
        let at = |partition, offset| DlqPosition { partition, offset };
        assert!(at(1, 10).reaches(at(1, 10)));
        assert!(at(1, 11).reaches(at(1, 10)));
        assert!(!at(1, 9).reaches(at(1, 10)));
        assert!(!at(2, 50).reaches(at(1, 10)));
    }
}

//! A dead-letter record as the recovery tools see it: whose it is, why it
//! was dead-lettered and when, and the record a replay writes back to the
//! events topic. Pure.

use crate::delivery::dead_letter::header::REPLAY_OF;
use crate::delivery::dead_letter::{DlqPosition, DlqReason, header};
use crate::kafka::record::Record;

/// The prefix of the headers that hookline adds to a dead letter, which a
/// replayed record drops.
const DLQ_HEADER_PREFIX: &str = "dlq.";

/// What the filter and the tallies look at in a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LetterInfo<'a> {
    /// `dlq.tenant`, else the record key when it is UTF-8; `None` for a
    /// dead letter without either (an event that had no key).
    pub tenant: Option<&'a str>,
    /// `dlq.reason`; `None` when it is missing or not one of the reasons
    /// (a record that hookline did not write).
    pub reason: Option<DlqReason>,
    /// When it was dead-lettered: the dead-letter record's own timestamp,
    /// in milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

impl<'a> LetterInfo<'a> {
    pub fn of(record: &'a Record) -> Self {
        let text = |bytes: &'a [u8]| std::str::from_utf8(bytes).ok().filter(|s| !s.is_empty());
        Self {
            tenant: record
                .header(header::TENANT)
                .and_then(text)
                .or_else(|| record.key().and_then(text)),
            reason: record
                .header(header::REASON)
                .and_then(|reason| std::str::from_utf8(reason).ok()?.parse().ok()),
            timestamp_ms: record.timestamp_ms(),
        }
    }
}

/// The partition of `events` that `dead_letter`'s event was read from
/// (`dlq.topic` and `dlq.partition`), where its replay belongs: the
/// tenant's other events are there, whichever partitioner their producer
/// used. `None` when the dead letter came from another topic or does not
/// say.
pub fn original_partition(dead_letter: &Record, events: &str) -> Option<i32> {
    let topic = dead_letter.header(header::TOPIC)?;
    if topic != events.as_bytes() {
        return None;
    }
    std::str::from_utf8(dead_letter.header(header::PARTITION)?)
        .ok()?
        .parse()
        .ok()
        .filter(|p: &i32| *p >= 0)
}

/// The value of [`REPLAY_OF`] for the dead letter at `partition`/`offset`.
pub fn replay_of(partition: i32, offset: i64) -> String {
    DlqPosition { partition, offset }.to_string()
}

/// The headers of the record that replays `dead_letter`: its own in order
/// without the `dlq.*` ones (and without the `hookline.replay-of` of an
/// earlier replay, which this one supersedes), then `hookline.replay-of` =
/// `replay_of`.
pub fn replay_headers<'a>(
    dead_letter: &'a Record,
    replay_of: &'a str,
) -> Vec<(&'a str, Option<&'a [u8]>)> {
    let mut headers: Vec<(&str, Option<&[u8]>)> = dead_letter
        .headers()
        .into_iter()
        .filter(|(name, _)| !name.starts_with(DLQ_HEADER_PREFIX) && *name != REPLAY_OF)
        .collect();
    headers.push((REPLAY_OF, Some(replay_of.as_bytes())));
    headers
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::delivery::dead_letter::DeadLetter;
    use crate::kafka::record::RecordParts;

    /// A dead letter as the writer makes it: the original headers, then
    /// the `dlq.*` ones.
    fn dead_letter(
        key: Option<&[u8]>,
        original: &[(&str, Option<&[u8]>)],
        letter: &DeadLetter,
    ) -> Record {
        let added = letter.headers();
        let mut headers = original.to_vec();
        headers.extend(added.iter().map(|(k, v)| (*k, Some(v.as_bytes()))));
        Record::new(RecordParts {
            topic: Arc::from("webhook.dlq"),
            partition: 2,
            offset: 17,
            timestamp_ms: Some(1_795_860_000_000),
            key,
            value: Some(br#"{"type":"t","data":1,"id":"evt_1"}"#),
            headers: &headers,
        })
    }

    #[test]
    fn the_info_comes_from_the_dlq_headers_and_the_record_timestamp() {
        let letter = DeadLetter::new(DlqReason::TenantSuspended, "suspended", "events", 0, 5)
            .with_tenant("acme");
        let record = dead_letter(Some(b"acme"), &[], &letter);
        assert_eq!(
            LetterInfo::of(&record),
            LetterInfo {
                tenant: Some("acme"),
                reason: Some(DlqReason::TenantSuspended),
                timestamp_ms: Some(1_795_860_000_000),
            }
        );
    }

    #[test]
    fn without_dlq_tenant_the_key_names_the_tenant_and_an_unknown_reason_is_none() {
        let record = Record::new(RecordParts {
            topic: Arc::from("webhook.dlq"),
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            key: Some(b"globex"),
            value: None,
            headers: &[("dlq.reason", Some(b"gremlins"))],
        });
        let info = LetterInfo::of(&record);
        assert_eq!((info.tenant, info.reason), (Some("globex"), None));
        let keyless = DeadLetter::new(DlqReason::InvalidEvent, "no key", "events", 0, 1);
        let record = dead_letter(None, &[], &keyless);
        let info = LetterInfo::of(&record);
        assert_eq!(
            (info.tenant, info.reason),
            (None, Some(DlqReason::InvalidEvent))
        );
    }

    #[test]
    fn a_replayed_record_keeps_the_original_headers_in_order_and_drops_every_dlq_one() {
        let letter = DeadLetter::new(DlqReason::RetriesExhausted, "HTTP 503", "events", 4, 99)
            .with_tenant("acme")
            .with_status(Some(503));
        let original: [(&str, Option<&[u8]>); 4] = [
            ("traceparent", Some(b"00-abc-def-01")),
            ("empty", None),
            ("hookline.replay-of", Some(b"1:3")),
            ("x-source", Some(b"billing")),
        ];
        let record = dead_letter(Some(b"acme"), &original, &letter);
        let replay_of = replay_of(record.partition(), record.offset());
        assert_eq!(replay_of, "2:17");
        assert_eq!(
            replay_headers(&record, &replay_of),
            [
                ("traceparent", Some(&b"00-abc-def-01"[..])),
                ("empty", None),
                ("x-source", Some(&b"billing"[..])),
                ("hookline.replay-of", Some(&b"2:17"[..])),
            ]
        );
    }

    #[test]
    fn any_dlq_prefixed_header_is_dropped_even_one_the_contract_does_not_name() {
        let record = Record::new(RecordParts {
            topic: Arc::from("webhook.dlq"),
            partition: 0,
            offset: 8,
            timestamp_ms: None,
            key: Some(b"acme"),
            value: None,
            headers: &[("dlq.future_field", Some(b"x")), ("dlqish", Some(b"kept"))],
        });
        assert_eq!(
            replay_headers(&record, "0:8"),
            [
                ("dlqish", Some(&b"kept"[..])),
                ("hookline.replay-of", Some(&b"0:8"[..])),
            ]
        );
    }

    #[test]
    fn a_replay_goes_back_to_the_partition_its_event_was_read_from() {
        let letter = DeadLetter::new(DlqReason::TenantSuspended, "parked", "events", 4, 99);
        let record = dead_letter(Some(b"acme"), &[], &letter);
        assert_eq!(original_partition(&record, "events"), Some(4));
        // From another events topic (the topology changed): the partitioner
        // chooses.
        assert_eq!(original_partition(&record, "events.v2"), None);
        let bare = Record::new(RecordParts {
            topic: Arc::from("webhook.dlq"),
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            key: Some(b"acme"),
            value: None,
            headers: &[
                ("dlq.topic", Some(b"events")),
                ("dlq.partition", Some(b"x")),
            ],
        });
        assert_eq!(original_partition(&bare, "events"), None);
    }
}

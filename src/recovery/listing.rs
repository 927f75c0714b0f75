//! One tenant's dead letters as the tenant may see them, newest first: what
//! each event was (its webhook id and type), why, when and after how many
//! attempts it was dead-lettered, and where it sits on the dead-letter
//! topic, so that a replayed record's `hookline.replay-of` can be matched
//! with it. Never the payload: the value is read only for the event's `id`
//! and `type`.
//!
//! [`ListedLetter::of`] and [`Newest`] are pure; [`list_dead_letters`]
//! reads the whole topic as a consumer group of its own that never commits,
//! as the statistics do, so listing changes nothing.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use serde::Deserialize;

use super::letter::LetterInfo;
use crate::config::KafkaConfig;
use crate::delivery::dead_letter::header;
use crate::events::{EventDecoder, MAX_PRODUCER_ID_BYTES, RecordParts, webhook_id};
use crate::kafka::range_reader::{RangeReader, RangeReaderError, StartAt};
use crate::kafka::record::Record;
use crate::kafka::table_reader::CONNECT_TIMEOUT;

/// One dead letter, without its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedLetter {
    /// Where it sits on the dead-letter topic; a replayed record names it
    /// in `hookline.replay-of` as `<partition>:<offset>`.
    pub partition: i32,
    pub offset: i64,
    /// The event's webhook id, as its deliveries carried it (and a replay
    /// carries it again): the event's `id`, or the one derived from where
    /// it was produced. For a value that is not a deliverable JSON event
    /// (never delivered), its own `id` when it has a usable one, else
    /// `None`.
    pub id: Option<String>,
    /// The event's `type`, when the value is JSON with one.
    pub event_type: Option<String>,
    /// `dlq.reason`, as written.
    pub reason: Option<String>,
    /// `dlq.error`: the last error, one line.
    pub error: Option<String>,
    /// `dlq.attempts`.
    pub attempts: Option<u32>,
    /// `dlq.status`: the last HTTP status, when an attempt got one.
    pub status: Option<u16>,
    /// When it was dead-lettered: the dead-letter record's timestamp, in
    /// milliseconds since the Unix epoch.
    pub dead_lettered_at_ms: Option<i64>,
}

/// The fields of an event's value that a listing reads when the value is
/// not an event the replica could decode (an `invalid_event`): any other
/// field is skipped without being built.
#[derive(Deserialize)]
struct Loose {
    #[serde(default, rename = "type")]
    event_type: Option<serde_json::Value>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

impl ListedLetter {
    pub fn of(record: &Record) -> Self {
        let text = |name: &str| {
            record
                .header(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string)
        };
        let (id, event_type) = identify(record);
        Self {
            partition: record.partition(),
            offset: record.offset(),
            id,
            event_type,
            reason: text(header::REASON),
            error: text(header::ERROR),
            attempts: text(header::ATTEMPTS).and_then(|v| v.parse().ok()),
            status: text(header::STATUS).and_then(|v| v.parse().ok()),
            dead_lettered_at_ms: record.timestamp_ms(),
        }
    }
}

/// The webhook id and type of the event a dead letter holds. The value is
/// decoded as the replica decodes it, at the position the event came from
/// (`dlq.topic`, `dlq.partition`, `dlq.offset`), so the id is the one its
/// deliveries carried, derived ones included. A value the replica could not
/// decode is read loosely for a string `type` and `id` (an `id` that is
/// usable as it is, encoded as a delivery would encode it).
fn identify(record: &Record) -> (Option<String>, Option<String>) {
    let text = |name: &str| {
        record
            .header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    if let (Some(topic), Some(partition), Some(offset)) = (
        text(header::TOPIC),
        text(header::PARTITION).and_then(|p| p.parse::<i32>().ok()),
        text(header::OFFSET).and_then(|o| o.parse::<i64>().ok()),
    ) {
        let parts = RecordParts {
            key: record.key(),
            value: record.value(),
            timestamp_millis: record.timestamp_ms(),
            topic,
            partition,
            offset,
        };
        // No size limit: the listing reads what is there, whatever the
        // replica's limit was.
        if let Ok(event) = EventDecoder::Json.decode(&parts, usize::MAX) {
            return (Some(event.id), Some(event.event_type));
        }
    }
    let loose = record
        .value()
        .and_then(|value| serde_json::from_slice::<Loose>(value).ok());
    let Some(loose) = loose else {
        return (None, None);
    };
    let as_text = |value: Option<serde_json::Value>| match value {
        Some(serde_json::Value::String(text)) => Some(text),
        _ => None,
    };
    // An event the replica could not decode was never delivered: only an
    // `id` of its own names it.
    let id = as_text(loose.id)
        .filter(|id| !id.is_empty() && id.len() <= MAX_PRODUCER_ID_BYTES)
        .map(|id| webhook_id(Some(&id), "", 0, 0));
    let event_type = as_text(loose.event_type);
    (id, event_type)
}

/// Where a dead letter stands in "newest first": by the time it was
/// dead-lettered (none counts as oldest), then by offset and partition, so
/// that the order is total and a partition's dead letters keep theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Age {
    at_ms: Option<i64>,
    offset: i64,
    partition: i32,
}

impl Age {
    pub fn of(record: &Record) -> Self {
        Self {
            at_ms: record.timestamp_ms(),
            offset: record.offset(),
            partition: record.partition(),
        }
    }
}

/// A dead letter kept, ordered by its age alone.
#[derive(Debug)]
struct Kept {
    age: Age,
    letter: ListedLetter,
}

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        self.age == other.age
    }
}

impl Eq for Kept {}

impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Kept {
    fn cmp(&self, other: &Self) -> Ordering {
        self.age.cmp(&other.age)
    }
}

/// The newest `limit` dead letters of those offered, and how many were
/// offered. Memory is bounded by `limit`, however many are offered.
#[derive(Debug)]
pub struct Newest {
    limit: usize,
    /// The oldest kept on top, to be dropped first.
    kept: BinaryHeap<Reverse<Kept>>,
    offered: u64,
}

impl Newest {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            kept: BinaryHeap::with_capacity(limit.min(1024)),
            offered: 0,
        }
    }

    /// Counts a dead letter of `age`, and keeps it if it is among the
    /// newest `limit`; `letter` is called only then, so that dead letters
    /// that would be dropped are never described.
    pub fn offer(&mut self, age: Age, letter: impl FnOnce() -> ListedLetter) {
        self.offered += 1;
        if self.limit == 0 {
            return;
        }
        if self.kept.len() == self.limit {
            match self.kept.peek() {
                Some(Reverse(oldest)) if oldest.age < age => {
                    self.kept.pop();
                }
                _ => return,
            }
        }
        self.kept.push(Reverse(Kept {
            age,
            letter: letter(),
        }));
    }

    /// How many were offered.
    pub fn offered(&self) -> u64 {
        self.offered
    }

    /// The ones kept, newest first.
    pub fn into_newest_first(self) -> Vec<ListedLetter> {
        // Ascending by `Reverse` is descending by age: newest first.
        self.kept
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse(kept)| kept.letter)
            .collect()
    }
}

/// A tenant's dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterListing {
    /// How many dead letters of the tenant the topic holds.
    pub total: u64,
    /// The newest of them, at most the limit asked for, newest first.
    pub letters: Vec<ListedLetter>,
}

/// Reads `topic` from the beginning to its end as it is when the call
/// starts and lists the newest `limit` dead letters of `tenant` (by
/// `dlq.tenant`, else the record key, as the replay's filter decides).
pub async fn list_dead_letters(
    kafka: &KafkaConfig,
    topic: &str,
    tenant: &str,
    limit: usize,
) -> Result<DeadLetterListing, RangeReaderError> {
    // A group of its own, which it never commits to: librdkafka wants one.
    let group = format!("{}.dlq-list", kafka.group_id);
    let mut reader =
        RangeReader::open(kafka, topic, &group, StartAt::Beginning, CONNECT_TIMEOUT).await?;
    let mut newest = Newest::new(limit);
    while let Some(record) = reader.next().await? {
        if LetterInfo::of(&record).tenant == Some(tenant) {
            newest.offer(Age::of(&record), || ListedLetter::of(&record));
        }
    }
    Ok(DeadLetterListing {
        total: newest.offered(),
        letters: newest.into_newest_first(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::delivery::dead_letter::{DeadLetter, DlqReason};
    use crate::kafka::record::RecordParts as KafkaRecordParts;

    const AT_MS: i64 = 1_795_860_000_000;

    /// A dead letter as the writer makes it, of an event produced to
    /// `events` partition 3 at offset 41.
    fn dead_letter(value: Option<&[u8]>, letter: &DeadLetter, offset: i64) -> Record {
        let added = letter.headers();
        let mut headers: Vec<(&str, Option<&[u8]>)> = vec![("traceparent", Some(b"00-1-2-01"))];
        headers.extend(added.iter().map(|(k, v)| (*k, Some(v.as_bytes()))));
        Record::new(KafkaRecordParts {
            topic: Arc::from("webhook.dlq"),
            partition: 1,
            offset,
            timestamp_ms: Some(AT_MS + offset),
            key: Some(b"acme"),
            value,
            headers: &headers,
        })
    }

    fn exhausted() -> DeadLetter {
        let first = SystemTime::UNIX_EPOCH + Duration::from_millis(AT_MS as u64 - 5_000);
        DeadLetter::new(DlqReason::RetriesExhausted, "HTTP 503", "events", 3, 41)
            .with_tenant("acme")
            .with_status(Some(503))
            .with_attempts(8, first, first + Duration::from_secs(4))
    }

    #[test]
    fn a_listed_letter_has_the_headers_facts_and_the_event_id_and_type_but_no_payload() {
        let value = br#"{"id":"evt_1","type":"order.created","data":{"card":"4111"}}"#;
        let record = dead_letter(Some(value), &exhausted(), 7);
        let listed = ListedLetter::of(&record);
        assert_eq!(
            listed,
            ListedLetter {
                partition: 1,
                offset: 7,
                id: Some("evt_1".into()),
                event_type: Some("order.created".into()),
                reason: Some("retries_exhausted".into()),
                error: Some("HTTP 503".into()),
                attempts: Some(8),
                status: Some(503),
                dead_lettered_at_ms: Some(AT_MS + 7),
            }
        );
        assert!(!format!("{listed:?}").contains("4111"));
    }

    #[test]
    fn an_event_without_an_id_gets_the_id_its_deliveries_carried() {
        let value = br#"{"type":"order.created","data":1}"#;
        let listed = ListedLetter::of(&dead_letter(Some(value), &exhausted(), 0));
        // Derived from where the event was produced, not from the dead
        // letter's own position.
        assert_eq!(listed.id.as_deref(), Some("evt_events_3_41"));
        // An id the header could not carry as it is, encoded as delivered.
        let value = br#"{"id":"a.b","type":"t","data":1}"#;
        let listed = ListedLetter::of(&dead_letter(Some(value), &exhausted(), 0));
        assert_eq!(listed.id.as_deref(), Some("a%2Eb"));
    }

    #[test]
    fn an_invalid_event_is_read_loosely_and_a_value_that_is_not_json_has_no_id() {
        let invalid =
            DeadLetter::new(DlqReason::InvalidEvent, "no data", "events", 0, 9).with_tenant("acme");
        // No `data`: the replica refused it, but the id and type are there.
        let value = br#"{"id":"evt_9","type":"order.created"}"#;
        let listed = ListedLetter::of(&dead_letter(Some(value), &invalid, 0));
        assert_eq!(listed.id.as_deref(), Some("evt_9"));
        assert_eq!(listed.event_type.as_deref(), Some("order.created"));
        assert_eq!(listed.attempts, Some(0));
        assert_eq!(listed.status, None);
        for value in [&b"\x00\x00\x00\x00\x07avro"[..], b"[1,2]", b"not json"] {
            let listed = ListedLetter::of(&dead_letter(Some(value), &invalid, 0));
            assert_eq!((listed.id, listed.event_type), (None, None), "{value:?}");
        }
        let listed = ListedLetter::of(&dead_letter(None, &invalid, 0));
        assert_eq!((listed.id, listed.event_type), (None, None));
    }

    #[test]
    fn a_record_without_hookline_headers_lists_what_it_has() {
        let record = Record::new(KafkaRecordParts {
            topic: Arc::from("webhook.dlq"),
            partition: 0,
            offset: 2,
            timestamp_ms: None,
            key: Some(b"acme"),
            value: Some(br#"{"id":"x.y","type":7,"data":1}"#),
            headers: &[],
        });
        let listed = ListedLetter::of(&record);
        assert_eq!(listed.id.as_deref(), Some("x%2Ey"));
        assert_eq!(listed.event_type, None);
        assert_eq!((listed.reason, listed.attempts), (None, None));
        assert_eq!(listed.dead_lettered_at_ms, None);
    }

    fn age(at_ms: Option<i64>, partition: i32, offset: i64) -> Age {
        Age {
            at_ms,
            offset,
            partition,
        }
    }

    fn listed(partition: i32, offset: i64) -> ListedLetter {
        ListedLetter {
            partition,
            offset,
            id: None,
            event_type: None,
            reason: None,
            error: None,
            attempts: None,
            status: None,
            dead_lettered_at_ms: None,
        }
    }

    fn positions(newest: Newest) -> Vec<(i32, i64)> {
        newest
            .into_newest_first()
            .iter()
            .map(|l| (l.partition, l.offset))
            .collect()
    }

    #[test]
    fn the_newest_are_kept_newest_first_and_all_are_counted() {
        let mut newest = Newest::new(3);
        for (at, partition, offset) in [
            (Some(10), 0, 0),
            (Some(50), 1, 0),
            (None, 0, 1),
            (Some(30), 0, 2),
            (Some(50), 0, 3),
            (Some(20), 1, 1),
        ] {
            newest.offer(age(at, partition, offset), || listed(partition, offset));
        }
        assert_eq!(newest.offered(), 6);
        // The same time: the higher offset is the newer.
        assert_eq!(positions(newest), [(0, 3), (1, 0), (0, 2)]);
    }

    #[test]
    fn letters_that_would_be_dropped_are_never_described() {
        let mut newest = Newest::new(1);
        newest.offer(age(Some(5), 0, 5), || listed(0, 5));
        newest.offer(age(Some(4), 0, 4), || panic!("older than the one kept"));
        newest.offer(age(Some(5), 0, 5), || panic!("the same age is not newer"));
        assert_eq!(newest.offered(), 3);
        let mut none = Newest::new(0);
        none.offer(age(Some(1), 0, 0), || panic!("nothing is kept"));
        assert_eq!(none.offered(), 1);
        assert!(positions(none).is_empty());
    }

    #[test]
    fn fewer_than_the_limit_are_all_kept() {
        let mut newest = Newest::new(100);
        for offset in 0..5 {
            newest.offer(age(Some(100 - offset), 0, offset), || listed(0, offset));
        }
        assert_eq!(positions(newest), [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4)]);
    }
}

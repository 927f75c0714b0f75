//! A record of the events topic, owned: copied out of librdkafka's fetch
//! buffer in one allocation, so that it can wait in a partition's window
//! and be worked on by a task of its own while the next records are read.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// A record: its coordinates, key, value and headers. The bytes of the key,
/// the value and every header live in one buffer.
pub struct Record {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    bytes: Box<[u8]>,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    /// Name and value of each header, in order, as ranges of `bytes`.
    headers: Vec<(Range<usize>, Option<Range<usize>>)>,
}

/// The parts of a record to copy, as borrowed from wherever it was read.
pub struct RecordParts<'a> {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

impl Record {
    /// Copies `parts` into a record of its own.
    pub fn new(parts: RecordParts<'_>) -> Self {
        let len = parts.key.map_or(0, <[u8]>::len)
            + parts.value.map_or(0, <[u8]>::len)
            + parts
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.map_or(0, <[u8]>::len))
                .sum::<usize>();
        let mut bytes = Vec::with_capacity(len);
        let mut push = |data: &[u8]| {
            let start = bytes.len();
            bytes.extend_from_slice(data);
            start..bytes.len()
        };
        let key = parts.key.map(&mut push);
        let value = parts.value.map(&mut push);
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| (push(name.as_bytes()), value.map(&mut push)))
            .collect();
        Self {
            topic: parts.topic,
            partition: parts.partition,
            offset: parts.offset,
            timestamp_ms: parts.timestamp_ms,
            bytes: bytes.into_boxed_slice(),
            key,
            value,
            headers,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Milliseconds since the Unix epoch, when the record has a timestamp.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.key.clone().map(|r| &self.bytes[r])
    }

    pub fn value(&self) -> Option<&[u8]> {
        self.value.clone().map(|r| &self.bytes[r])
    }

    /// The headers, in order; a header without a value has `None`.
    pub fn headers(&self) -> Vec<(&str, Option<&[u8]>)> {
        self.headers
            .iter()
            .map(|(name, value)| {
                // Names were copied from `&str`, so they are UTF-8.
                let name = std::str::from_utf8(&self.bytes[name.clone()]).unwrap_or_default();
                (name, value.clone().map(|r| &self.bytes[r]))
            })
            .collect()
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| &self.bytes[n.clone()] == name.as_bytes())
            .and_then(|(_, value)| value.clone().map(|r| &self.bytes[r]))
    }

    /// The values of every header named `name`, in order, without
    /// allocating (trace context headers are read once per delivery).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Option<&'a [u8]>> {
        self.headers
            .iter()
            .filter(move |(n, _)| &self.bytes[n.clone()] == name.as_bytes())
            .map(|(_, value)| value.clone().map(|r| &self.bytes[r]))
    }

    /// Bytes held: key, value and headers.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
}

impl fmt::Debug for Record {
    /// Coordinates only: keys and values are customer data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("topic", &self.topic())
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_is_read_back_as_given() {
        let record = Record::new(RecordParts {
            topic: Arc::from("events"),
            partition: 3,
            offset: 42,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(b"acme"),
            value: Some(br#"{"type":"x","data":1}"#),
            headers: &[
                ("traceparent", Some(b"00-abc")),
                ("empty", None),
                ("zero", Some(b"")),
            ],
        });
        assert_eq!(
            (record.topic(), record.partition(), record.offset()),
            ("events", 3, 42)
        );
        assert_eq!(record.timestamp_ms(), Some(1_700_000_000_000));
        assert_eq!(record.key(), Some(&b"acme"[..]));
        assert_eq!(record.value(), Some(&br#"{"type":"x","data":1}"#[..]));
        assert_eq!(
            record.headers(),
            [
                ("traceparent", Some(&b"00-abc"[..])),
                ("empty", None),
                ("zero", Some(&b""[..]))
            ]
        );
        assert_eq!(record.header("traceparent"), Some(&b"00-abc"[..]));
        assert_eq!(record.header("missing"), None);
        assert_eq!(
            record.header_values("traceparent").collect::<Vec<_>>(),
            [Some(&b"00-abc"[..])]
        );
        assert_eq!(record.header_values("empty").collect::<Vec<_>>(), [None]);
        assert_eq!(record.header_values("missing").count(), 0);
        assert_eq!(record.size(), 4 + 21 + 11 + 6 + 5 + 4);
        assert!(!format!("{record:?}").contains("acme"), "no customer data");
    }

    #[test]
    fn a_missing_key_or_value_stays_missing() {
        let record = Record::new(RecordParts {
            topic: Arc::from("events"),
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            key: None,
            value: Some(b""),
            headers: &[],
        });
        assert_eq!(record.key(), None);
        assert_eq!(record.value(), Some(&b""[..]));
        assert!(record.headers().is_empty());
    }
}

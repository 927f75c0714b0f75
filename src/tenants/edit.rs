//! Changing one field of a tenant's record in place: read its latest value
//! from the `tenants` topic, change the field, write the record back with
//! every other field (unknown ones included) as it was. The commands that
//! suspend and resume a tenant use it; `tenants put` writes whole records.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::KafkaConfig;
use crate::kafka::producer::{AckedProducer, ProduceError};
use crate::kafka::table_reader::{CONNECT_TIMEOUT, TableReader, TableReaderError};

/// How long a write may wait for the broker's acknowledgement.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Read(#[from] TableReaderError),
    #[error("tenant `{0}` does not exist")]
    NoSuchTenant(String),
    #[error("tenant `{0}`'s record is not a JSON object; fix it with `hookline tenants put`")]
    NotAnObject(String),
    #[error(transparent)]
    Write(#[from] ProduceError),
}

/// What [`set_suspended`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edited {
    /// The record was written with the new value.
    Written,
    /// The record already said so; nothing was written.
    Unchanged,
}

/// Sets or clears the `suspended` field of tenant `id`'s record (cleared,
/// the field is removed, as a record that never had it reads).
pub async fn set_suspended(
    kafka: &KafkaConfig,
    topic: &str,
    id: &str,
    suspended: bool,
) -> Result<Edited, EditError> {
    let current = latest_value(kafka, topic, id).await?;
    let current = current.ok_or_else(|| EditError::NoSuchTenant(id.to_string()))?;
    let Some(fields) = with_suspended(&current, suspended) else {
        return Err(EditError::NotAnObject(id.to_string()));
    };
    let Some(fields) = fields else {
        return Ok(Edited::Unchanged);
    };
    let value = serde_json::to_vec(&Value::Object(fields)).expect("a JSON object serializes");
    let producer = AckedProducer::new(kafka, WRITE_TIMEOUT)?;
    producer.send(topic, id.as_bytes(), Some(&value)).await?;
    Ok(Edited::Written)
}

/// The latest value of `id` on the table topic; `None` when it has none or
/// its latest record is a tombstone.
async fn latest_value(
    kafka: &KafkaConfig,
    topic: &str,
    id: &str,
) -> Result<Option<Vec<u8>>, TableReaderError> {
    let reader = TableReader::connect(kafka, topic, CONNECT_TIMEOUT).await?;
    let mut latest = None;
    reader
        .restore_to_high_watermark(
            |change| {
                if change.key == id.as_bytes() {
                    latest = change.value.map(<[u8]>::to_vec);
                }
            },
            |_| {},
        )
        .await?;
    Ok(latest)
}

/// `record`'s fields with `suspended` set as asked: `None` when `record` is
/// not a JSON object, `Some(None)` when it already says so.
fn with_suspended(record: &[u8], suspended: bool) -> Option<Option<Map<String, Value>>> {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(record) else {
        return None;
    };
    let now = fields.get("suspended") == Some(&Value::Bool(true));
    if now == suspended {
        return Some(None);
    }
    if suspended {
        fields.insert("suspended".to_string(), Value::Bool(true));
    } else {
        fields.remove("suspended");
    }
    Some(Some(fields))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bytes(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn suspending_adds_the_field_and_keeps_every_other_one() {
        let record = bytes(json!({"url": "https://a.example/", "x-note": {"kept": 1}}));
        let fields = with_suspended(&record, true).unwrap().unwrap();
        assert_eq!(
            Value::Object(fields),
            json!({"url": "https://a.example/", "x-note": {"kept": 1}, "suspended": true})
        );
    }

    #[test]
    fn resuming_removes_the_field() {
        let record = bytes(json!({"url": "u", "suspended": true}));
        let fields = with_suspended(&record, false).unwrap().unwrap();
        assert_eq!(Value::Object(fields), json!({"url": "u"}));
    }

    #[test]
    fn a_record_that_already_says_so_is_left_alone() {
        assert_eq!(
            with_suspended(&bytes(json!({"suspended": true})), true),
            Some(None)
        );
        for record in [json!({}), json!({"suspended": false})] {
            assert_eq!(with_suspended(&bytes(record), false), Some(None));
        }
    }

    #[test]
    fn a_record_that_is_not_an_object_is_refused() {
        for record in [&b"[1]"[..], b"not json", b"\"text\""] {
            assert_eq!(with_suspended(record, true), None);
        }
    }
}

//! The `webhook-id` of an event: stable across redeliveries and replays, so
//! that receivers can de-duplicate, and never containing `.` (DESIGN §5).
//!
//! Standard Webhooks signs `"{id}.{timestamp}.{body}"`; a dot in the id
//! would make that string ambiguous, and the id travels as an HTTP header,
//! so it must also be printable ASCII.
//!
//! The rules:
//! - A producer's `id` that is a non-empty string of at most
//!   [`MAX_PRODUCER_ID_BYTES`] is used, percent-encoded where it must be:
//!   `%`, `.` and every byte outside printable ASCII become `%XX` (upper-case
//!   hex of the UTF-8 bytes). Ids made of letters, digits, `_`, `-`, `:` and
//!   the like (`evt_123`, UUIDs, ULIDs) pass unchanged. Encoding rather than
//!   replacing keeps distinct producer ids distinct (`a.b` and `a_b` would
//!   collide under replacement), and encoding rather than deriving keeps the
//!   id stable when the event is replayed from the dead-letter topic at
//!   another offset.
//! - Otherwise (no `id`, `null`, not a string, empty, too long) the id is
//!   derived from where the record sits: `evt_<topic>_<partition>_<offset>`,
//!   with the topic encoded the same way (Kafka topic names may contain
//!   `.`). Partition and offset are the last two `_`-separated fields, so
//!   the derivation is injective.

/// Longest producer-supplied id that is used, in bytes before encoding.
/// Longer ids are replaced by the derived one rather than sent as a header
/// that receivers' servers may refuse.
pub const MAX_PRODUCER_ID_BYTES: usize = 256;

/// The `webhook-id` for an event whose `id` field was `producer_id` (already
/// unquoted; `None` when absent or not a string) and whose record sits at
/// `topic`/`partition`/`offset`.
pub fn webhook_id(producer_id: Option<&str>, topic: &str, partition: i32, offset: i64) -> String {
    match producer_id {
        Some(id) if !id.is_empty() && id.len() <= MAX_PRODUCER_ID_BYTES => encode(id),
        _ => derived_id(topic, partition, offset),
    }
}

/// The id derived from a record's position: `evt_<topic>_<partition>_<offset>`.
pub fn derived_id(topic: &str, partition: i32, offset: i64) -> String {
    format!("evt_{}_{partition}_{offset}", encode(topic))
}

/// Percent-encodes `%`, `.` and every byte outside printable ASCII
/// (0x21..=0x7E).
fn encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x21..=0x7e).contains(&byte) && byte != b'.' && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(byte >> 4)]));
            encoded.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(encoded: &str) -> Vec<u8> {
        let bytes = encoded.as_bytes();
        let mut decoded = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                decoded.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        decoded
    }

    #[test]
    fn ordinary_producer_ids_pass_unchanged() {
        for id in [
            "evt_123",
            "01HZX3J5Q9",
            "6f1c2a4e-8d3b-4c1a-9f00-1234567890ab",
            "order:42",
            "a-b_c~d",
        ] {
            assert_eq!(webhook_id(Some(id), "events", 0, 0), id);
        }
    }

    #[test]
    fn dots_and_percent_signs_are_encoded() {
        assert_eq!(webhook_id(Some("order.42"), "events", 0, 0), "order%2E42");
        assert_eq!(webhook_id(Some("100%"), "events", 0, 0), "100%25");
        // The encoding is injective: these would collide under replacement.
        assert_ne!(
            webhook_id(Some("a.b"), "events", 0, 0),
            webhook_id(Some("a_b"), "events", 0, 0)
        );
        assert_ne!(
            webhook_id(Some("a.b"), "events", 0, 0),
            webhook_id(Some("a%2Eb"), "events", 0, 0)
        );
    }

    #[test]
    fn spaces_controls_and_non_ascii_are_encoded() {
        assert_eq!(webhook_id(Some("a b"), "events", 0, 0), "a%20b");
        assert_eq!(webhook_id(Some("a\r\nb"), "events", 0, 0), "a%0D%0Ab");
        assert_eq!(webhook_id(Some("é"), "events", 0, 0), "%C3%A9");
        assert_eq!(webhook_id(Some("\u{7f}"), "events", 0, 0), "%7F");
    }

    #[test]
    fn missing_or_empty_id_is_derived_from_the_position() {
        assert_eq!(webhook_id(None, "events", 3, 42), "evt_events_3_42");
        assert_eq!(webhook_id(Some(""), "events", 3, 42), "evt_events_3_42");
    }

    #[test]
    fn overlong_id_is_derived_from_the_position() {
        let at_limit = "x".repeat(MAX_PRODUCER_ID_BYTES);
        assert_eq!(webhook_id(Some(&at_limit), "events", 0, 1), at_limit);
        let too_long = "x".repeat(MAX_PRODUCER_ID_BYTES + 1);
        assert_eq!(
            webhook_id(Some(&too_long), "events", 0, 1),
            "evt_events_0_1"
        );
    }

    #[test]
    fn derived_id_encodes_dots_in_the_topic() {
        assert_eq!(
            derived_id("webhook.events", 11, 9_000_000_000),
            "evt_webhook%2Eevents_11_9000000000"
        );
        assert!(!derived_id("a.b.c", 0, 0).contains('.'));
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        assert_eq!(derived_id("events", 1, 2), derived_id("events", 1, 2));
        assert_ne!(derived_id("events", 1, 23), derived_id("events", 12, 3));
        assert_ne!(derived_id("events_1", 2, 3), derived_id("events", 12, 3));
    }

    proptest! {
        #[test]
        fn ids_are_dot_free_printable_ascii_and_decode_back(id in any::<String>(), partition in any::<i32>(), offset in any::<i64>()) {
            let webhook_id = webhook_id(Some(&id), "my.topic", partition, offset);
            prop_assert!(!webhook_id.contains('.'));
            prop_assert!(webhook_id.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{:?}", webhook_id);
            if !id.is_empty() && id.len() <= MAX_PRODUCER_ID_BYTES {
                prop_assert_eq!(decode(&webhook_id), id.as_bytes());
            }
        }
    }
}

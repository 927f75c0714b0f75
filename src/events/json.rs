//! The JSON shape of an event (DESIGN §5), read without copying `data`.
//!
//! `data` is kept as raw JSON text (`serde_json::value::RawValue`): it is
//! validated while the document is parsed but never turned into a tree or
//! re-serialised, so the receiver gets the producer's bytes.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::EventError;

/// The deepest nesting of arrays and objects accepted in an event, the
/// event's own object included. serde_json refuses documents nested 128
/// levels deep, but only where it builds values: `data` and unknown fields
/// are skipped over without a limit. Checking the whole document up front
/// keeps every event within what serde_json, and so the reference receiver,
/// can parse into a value.
pub const MAX_NESTING_DEPTH: usize = 127;

/// The fields of an event document, borrowed from its text.
#[derive(Debug, Deserialize)]
pub(super) struct EventDocument<'a> {
    #[serde(rename = "type", borrow)]
    pub event_type: Cow<'a, str>,
    #[serde(borrow)]
    pub data: &'a RawValue,
    /// Any JSON: only a string is used, anything else is replaced by the
    /// derived id (see `events::id`).
    #[serde(default, borrow)]
    pub id: Option<&'a RawValue>,
    /// Any JSON: only an RFC 3339 string is used, anything else falls back
    /// to the record timestamp.
    #[serde(default, borrow)]
    pub timestamp: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub tenant: Option<Cow<'a, str>>,
}

/// Parses a JSON event document. Unknown fields are ignored; duplicate
/// known fields are an error (a second `tenant` or `type` must not be able
/// to say something other than the first).
pub(super) fn parse(document: &[u8]) -> Result<EventDocument<'_>, EventError> {
    if document.is_empty() {
        return Err(EventError::EmptyValue);
    }
    // JSON text is UTF-8 (RFC 8259 §8.1). serde_json would not check the
    // parts it skips, so the whole document is checked here.
    let text = std::str::from_utf8(document).map_err(EventError::ValueNotUtf8)?;
    if nesting_exceeds(text.as_bytes(), MAX_NESTING_DEPTH) {
        return Err(EventError::TooDeep);
    }
    // serde's derived struct visitor would also accept a JSON array of the
    // fields in order; an event is an object.
    if !text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Err(EventError::NotAnObject);
    }
    let document: EventDocument<'_> = serde_json::from_str(text).map_err(EventError::Json)?;
    check_portable(document.data)?;
    Ok(document)
}

/// Refuses `data` that JSON's grammar allows but serde_json, and so the
/// reference receiver, cannot parse into a value: numbers beyond the range
/// of an f64 (`1e999`) and `\u` escapes of lone surrogates (`"\ud800"`).
/// `RawValue` only checks the grammar, so such an event would be
/// delivered, refused by the receiver on every attempt, and dead-lettered as
/// `retries_exhausted` after blocking its partition; refused here it is
/// `invalid_event` at once. One pass over `data` that builds nothing.
fn check_portable(data: &RawValue) -> Result<(), EventError> {
    let mut deserializer = serde_json::Deserializer::from_str(data.get());
    Portable::deserialize(&mut deserializer)
        .map(|Portable| ())
        .map_err(EventError::DataNotPortable)
}

/// A JSON value read the way a receiver reads it (numbers converted,
/// escapes decoded) and then dropped.
struct Portable;

impl<'de> Deserialize<'de> for Portable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PortableVisitor)
    }
}

struct PortableVisitor;

impl<'de> serde::de::Visitor<'de> for PortableVisitor {
    type Value = Portable;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Portable, E> {
        Ok(Portable)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Portable, E> {
        Ok(Portable)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Portable, E> {
        Ok(Portable)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Portable, E> {
        Ok(Portable)
    }

    fn visit_str<E>(self, _: &str) -> Result<Portable, E> {
        Ok(Portable)
    }

    fn visit_unit<E>(self) -> Result<Portable, E> {
        Ok(Portable)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Portable, A::Error> {
        while seq.next_element::<Portable>()?.is_some() {}
        Ok(Portable)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Portable, A::Error> {
        while map.next_entry::<Portable, Portable>()?.is_some() {}
        Ok(Portable)
    }
}

/// The string a raw JSON value holds, if it is a string.
pub(super) fn as_string(raw: &RawValue) -> Option<String> {
    if raw.get().starts_with('"') {
        serde_json::from_str(raw.get()).ok()
    } else {
        None
    }
}

/// Whether arrays and objects nest deeper than `max_depth` anywhere in
/// `text`, brackets inside strings aside. One pass, no recursion, so it
/// cannot overflow the stack whatever the input; on malformed JSON its
/// answer does not matter because the parser rejects the document anyway.
fn nesting_exceeds(text: &[u8], max_depth: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&byte) = text.get(i) {
        match byte {
            // Strings are most of an event's bytes: jump from quote or
            // backslash to the next one instead of walking every byte.
            b'"' => loop {
                i += 1;
                let Some(rest) = text.get(i..) else {
                    return false;
                };
                match memchr::memchr2(b'"', b'\\', rest) {
                    // Unterminated: the parser refuses the document.
                    None => return false,
                    // The escaped byte cannot end the string.
                    Some(at) if rest[at] == b'\\' => i += at + 1,
                    Some(at) => {
                        i += at;
                        break;
                    }
                }
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    /// The byte-by-byte reading of the nesting rule, to hold the fast one
    /// to.
    fn nesting_exceeds_reference(text: &[u8], max_depth: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &byte in text {
            if in_string {
                if escaped {
                    escaped = false;
                } else if byte == b'\\' {
                    escaped = true;
                } else if byte == b'"' {
                    in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max_depth {
                        return true;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        false
    }

    proptest::proptest! {
        #[test]
        fn nesting_skips_strings_as_a_byte_by_byte_reading_does(
            text in proptest::collection::vec(
                proptest::sample::select(b"[]{}\"\\a,:".to_vec()), 0..64),
            max_depth in 0usize..6,
        ) {
            proptest::prop_assert_eq!(
                nesting_exceeds(&text, max_depth),
                nesting_exceeds_reference(&text, max_depth)
            );
        }
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(!nesting_exceeds(b"{}", 1));
        assert!(nesting_exceeds(b"{[]}", 1));
        assert!(!nesting_exceeds(br#"{"a":"[[[[[[{{{{"}"#, 1));
        // An escaped quote does not end the string.
        assert!(!nesting_exceeds(br#"{"a":"\"[[[[","b":1}"#, 1));
        // An escaped backslash does, and the brackets after it count.
        assert!(nesting_exceeds(br#"{"a":"\\",[[]]}"#, 2));
        // Siblings do not add up.
        assert!(!nesting_exceeds(b"[[],[],[[]]]", 3));
        assert!(nesting_exceeds(b"[[],[],[[[]]]]", 3));
    }

    #[test]
    fn the_deepest_accepted_document_parses_as_a_serde_json_value() {
        // Pins MAX_NESTING_DEPTH to serde_json's own limit: every event
        // hookline accepts, a serde_json receiver can parse into a value,
        // and one level more it could not.
        let deepest = nested(MAX_NESTING_DEPTH);
        assert!(!nesting_exceeds(deepest.as_bytes(), MAX_NESTING_DEPTH));
        assert!(serde_json::from_str::<serde_json::Value>(&deepest).is_ok());
        let deeper = nested(MAX_NESTING_DEPTH + 1);
        assert!(nesting_exceeds(deeper.as_bytes(), MAX_NESTING_DEPTH));
        assert!(serde_json::from_str::<serde_json::Value>(&deeper).is_err());
    }

    /// Regression (found by the `event_decode` fuzz target): `data` with a
    /// number beyond f64 range passed the grammar check and was delivered,
    /// though no serde_json receiver could parse the plaintext.
    #[test]
    fn data_out_of_f64_range_or_with_lone_surrogates_is_refused() {
        for data in ["1e5555", "-7e400", r#""\ud800""#, r#"{"a":["\udc00x"]}"#] {
            let document = format!(r#"{{"type":"t","data":{data}}}"#);
            assert!(
                matches!(
                    parse(document.as_bytes()),
                    Err(EventError::DataNotPortable(_))
                ),
                "{data}"
            );
            assert!(serde_json::from_str::<serde_json::Value>(&document).is_err());
        }
        for data in [
            "1e308",
            "123456789012345678901234567890",
            r#""\ud83d\ude00""#,
            "[1,{\"a\":null}]",
        ] {
            let document = format!(r#"{{"type":"t","data":{data}}}"#);
            assert!(parse(document.as_bytes()).is_ok(), "{data}");
        }
    }

    #[test]
    fn raw_strings_are_unescaped() {
        let raw: &RawValue = serde_json::from_str(r#""a\"b\u00e9""#).unwrap();
        assert_eq!(as_string(raw).as_deref(), Some("a\"bé"));
        let number: &RawValue = serde_json::from_str("42").unwrap();
        assert_eq!(as_string(number), None);
    }
}

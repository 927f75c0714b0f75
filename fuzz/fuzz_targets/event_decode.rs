//! `EventDecoder::Json.decode` on an arbitrary key, value and record
//! timestamp: never panics; a refusal is always `invalid_event` or
//! `payload_too_large`; an accepted event has a `.`-free id and a plaintext
//! that is valid JSON naming the key's tenant.
//!
//! Input layout (plain bytes, so that seeds are readable): one byte of
//! flags (1 = key present, 2 = value present, 4 = timestamp present), one
//! byte of key length, eight bytes of timestamp (little endian), the key,
//! then the value.
#![no_main]

use hookline::delivery::dead_letter::DlqReason;
use hookline::events::{EventDecoder, RecordParts};
use libfuzzer_sys::fuzz_target;

/// Small enough that the fuzzer reaches both sides of it.
const MAX_PAYLOAD_BYTES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let [flags, key_len, rest @ ..] = data else {
        return;
    };
    let Some((timestamp, rest)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let (key, value) = rest.split_at(usize::from(*key_len).min(rest.len()));
    let parts = RecordParts {
        key: (flags & 1 != 0).then_some(key),
        value: (flags & 2 != 0).then_some(value),
        timestamp_millis: (flags & 4 != 0).then(|| i64::from_le_bytes(*timestamp)),
        topic: "events",
        partition: 0,
        offset: 42,
    };
    match EventDecoder::Json.decode(&parts, MAX_PAYLOAD_BYTES) {
        Ok(event) => {
            assert!(
                !event.id.contains('.'),
                "webhook-id with a dot: {:?}",
                event.id
            );
            let plaintext: serde_json::Value =
                serde_json::from_slice(&event.plaintext()).expect("the plaintext is JSON");
            assert_eq!(plaintext["tenant"].as_str(), Some(event.tenant.as_str()));
        }
        Err(e) => {
            let reason = DlqReason::from(&e);
            assert!(
                reason == DlqReason::InvalidEvent || reason == DlqReason::PayloadTooLarge,
                "{reason:?}"
            );
        }
    }
});

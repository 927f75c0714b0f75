//! `receiver::Receiver::receive` (verify, then decrypt) on arbitrary headers
//! and bodies: never panics, and with a signing secret configured nothing
//! gets past authentication unless the signature verifies. Half of the
//! inputs are signed correctly, so the fuzzer also reaches the JWE parsing
//! and decryption of arbitrary bodies.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use hookline::crypto::{KeyRing, PrivateKey, SigningSecret};
use hookline::receiver::{Receiver, WebhookHeaders};
use libfuzzer_sys::fuzz_target;

/// A fixed instant, so that runs replay exactly.
const NOW_SECS: u64 = 1_795_860_000;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    id: Option<&'a str>,
    timestamp: Option<&'a str>,
    signature: Option<&'a str>,
    content_type: Option<&'a str>,
    /// Replace the signature by a valid one over the other inputs.
    sign: bool,
    /// Seconds from `NOW_SECS` for a signed request's timestamp.
    skew: i16,
    body: &'a [u8],
}

fn receiver() -> &'static (Receiver, SigningSecret) {
    static RECEIVER: OnceLock<(Receiver, SigningSecret)> = OnceLock::new();
    RECEIVER.get_or_init(|| {
        let key = PrivateKey::parse(include_str!(
            "../../src/crypto/testdata/rsa2048-private.pem"
        ))
        .expect("the test key parses");
        let mut keys = KeyRing::new();
        keys.insert_with_thumbprint(key);
        let secret = SigningSecret::from_bytes(&[7; 32]).expect("a 32-byte secret");
        (Receiver::new(keys, Some(secret.clone())), secret)
    })
}

fuzz_target!(|input: Input<'_>| {
    let (receiver, secret) = receiver();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS);
    let signed_timestamp;
    let signed;
    let mut headers = WebhookHeaders {
        id: input.id,
        timestamp: input.timestamp,
        signature: input.signature,
        content_type: input.content_type,
    };
    if input.sign {
        let timestamp = NOW_SECS as i64 + i64::from(input.skew);
        signed_timestamp = timestamp.to_string();
        signed = secret.sign(input.id.unwrap_or_default(), timestamp, input.body);
        headers.timestamp = Some(signed_timestamp.as_str());
        headers.signature = Some(signed.as_str());
    }
    match receiver.receive(&headers, input.body, now) {
        Err(rejection) if rejection.is_unauthenticated() => {}
        // Anything else got past authentication: the signature verifies.
        _ => {
            let verified = secret.verify(
                headers.id.expect("authenticated requests have an id"),
                headers.timestamp.expect("and a timestamp"),
                headers.signature.expect("and a signature"),
                input.body,
                now,
                receiver.tolerance,
            );
            assert!(
                verified.is_ok(),
                "passed authentication without a valid signature"
            );
        }
    }
});

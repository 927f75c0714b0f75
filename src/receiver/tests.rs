use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::*;
use crate::crypto::{PrivateKey, VerifyError, test_keys};

const NOW: i64 = 1_764_324_000;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID: &str = "evt_123";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW as u64)
}

fn key() -> PrivateKey {
    PrivateKey::parse(test_keys::RSA2048_PRIVATE).unwrap()
}

fn receiver() -> Receiver {
    let keys: KeyRing = [key()].into_iter().collect();
    Receiver::new(keys, Some(SigningSecret::parse(SECRET).unwrap()))
}

fn payload(id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id,
        "type": "order.created",
        "timestamp": "2026-11-28T10:00:00Z",
        "tenant": "acme",
        "data": {"order": 42},
    }))
    .unwrap()
}

fn encrypted(plaintext: &[u8]) -> Vec<u8> {
    let key = key();
    jwe::encrypt(&key.public_key(), &key.thumbprint(), plaintext).unwrap()
}

/// A request as hookline sends it: encrypt, then sign the exact body.
struct Request {
    id: String,
    timestamp: String,
    signature: String,
    content_type: String,
    body: Vec<u8>,
}

impl Request {
    fn signed(id: &str, body: Vec<u8>, timestamp: i64) -> Request {
        let secret = SigningSecret::parse(SECRET).unwrap();
        Request {
            id: id.to_owned(),
            timestamp: timestamp.to_string(),
            signature: secret.sign(id, timestamp, &body),
            content_type: jwe::CONTENT_TYPE.to_owned(),
            body,
        }
    }

    fn valid() -> Request {
        Request::signed(ID, encrypted(&payload(ID)), NOW)
    }

    fn headers(&self) -> WebhookHeaders<'_> {
        WebhookHeaders {
            id: Some(&self.id),
            timestamp: Some(&self.timestamp),
            signature: Some(&self.signature),
            content_type: Some(&self.content_type),
        }
    }

    fn send(&self, receiver: &Receiver) -> Result<Delivery, Rejection> {
        receiver.receive(&self.headers(), &self.body, now())
    }
}

#[test]
fn accepts_a_signed_encrypted_delivery() {
    let delivery = Request::valid().send(&receiver()).unwrap();
    assert_eq!(
        delivery,
        Delivery {
            webhook_id: ID.into(),
            event_type: "order.created".into(),
            tenant: "acme".into(),
            timestamp: "2026-11-28T10:00:00Z".into(),
            data: json!({"order": 42}),
            kid: key().thumbprint(),
        }
    );
}

#[test]
fn a_receiver_with_several_secrets_accepts_a_signature_by_any_of_them() {
    let keys = || -> KeyRing { [key()].into_iter().collect() };
    let old = SigningSecret::parse(SECRET).unwrap();
    let new = SigningSecret::generate();
    let both = Receiver::with_secrets(keys(), vec![new.clone(), old.clone()]);
    // Signed with the old secret only (a sender not rotated yet).
    Request::valid().send(&both).unwrap();
    // Signed with the new secret only (a sender past its grace period).
    let mut request = Request::valid();
    request.signature = new.sign(ID, NOW, &request.body);
    request.send(&both).unwrap();
    // A receiver that knows neither refuses both.
    let stranger = Receiver::with_secrets(keys(), vec![SigningSecret::generate()]);
    let rejection = request.send(&stranger).unwrap_err();
    assert!(
        matches!(rejection, Rejection::Signature(VerifyError::Mismatch)),
        "{rejection:?}"
    );
    // Both signatures in one header (a sender during its grace period):
    // a receiver with only the old secret accepts it too.
    request.signature = format!("{} {}", request.signature, old.sign(ID, NOW, &request.body));
    request.send(&receiver()).unwrap();
}

#[test]
fn a_tampered_body_fails_the_signature_not_the_decryption() {
    let mut request = Request::valid();
    // Flip one character inside the ciphertext: decryption would fail too,
    // so only a signature failure proves the signature was checked first.
    let at = request.body.len() / 2;
    request.body[at] = if request.body[at] == b'A' { b'B' } else { b'A' };
    let rejection = request.send(&receiver()).unwrap_err();
    assert!(
        matches!(rejection, Rejection::Signature(VerifyError::Mismatch)),
        "{rejection:?}"
    );
    assert_eq!(rejection.status(), 401);
}

#[test]
fn unauthenticated_garbage_is_never_decrypted() {
    // Bodies that would each fail decryption in a distinct way (not JSON,
    // wrong algorithm, unknown kid) all get the same 401: nothing reached
    // the JWE parser.
    let other_key = test_keys::generated_2048();
    let unknown_kid = jwe::encrypt(&other_key.public_key(), "someone-else", &payload(ID)).unwrap();
    for body in [b"not json".to_vec(), b"{}".to_vec(), unknown_kid] {
        let mut request = Request::valid();
        request.body = body;
        let rejection = request.send(&receiver()).unwrap_err();
        assert!(
            matches!(rejection, Rejection::Signature(_)),
            "{rejection:?}"
        );
    }
}

#[test]
fn a_correctly_signed_but_undecryptable_body_is_a_bad_request() {
    let mut body = Request::valid().body;
    let at = body.len() / 2;
    body[at] = if body[at] == b'A' { b'B' } else { b'A' };
    let request = Request::signed(ID, body, NOW);
    let rejection = request.send(&receiver()).unwrap_err();
    assert!(
        matches!(rejection, Rejection::Decryption(_)),
        "{rejection:?}"
    );
    assert_eq!(rejection.status(), 400);
}

#[test]
fn a_timestamp_outside_five_minutes_is_unauthenticated() {
    for (timestamp, old) in [(NOW - 301, true), (NOW + 301, false)] {
        let request = Request::signed(ID, encrypted(&payload(ID)), timestamp);
        let rejection = request.send(&receiver()).unwrap_err();
        match (&rejection, old) {
            (Rejection::Signature(VerifyError::TooOld { .. }), true)
            | (Rejection::Signature(VerifyError::TooNew { .. }), false) => {}
            _ => panic!("{timestamp}: {rejection:?}"),
        }
        assert_eq!(rejection.status(), 401);
    }
    let request = Request::signed(ID, encrypted(&payload(ID)), NOW - 299);
    request.send(&receiver()).unwrap();
}

#[test]
fn missing_authentication_headers_are_unauthenticated() {
    let request = Request::valid();
    let receiver = receiver();
    let cases = [
        (
            HEADER_ID,
            WebhookHeaders {
                id: None,
                ..request.headers()
            },
        ),
        (
            HEADER_TIMESTAMP,
            WebhookHeaders {
                timestamp: None,
                ..request.headers()
            },
        ),
        (
            HEADER_SIGNATURE,
            WebhookHeaders {
                signature: None,
                ..request.headers()
            },
        ),
    ];
    for (name, headers) in cases {
        let rejection = receiver
            .receive(&headers, &request.body, now())
            .unwrap_err();
        assert!(
            matches!(rejection, Rejection::MissingAuthentication(n) if n == name),
            "{rejection:?}"
        );
        assert_eq!(rejection.status(), 401);
    }
}

#[test]
fn the_content_type_must_announce_a_json_jwe() {
    let mut request = Request::valid();
    request.content_type = "Application/JOSE+JSON; charset=utf-8".into();
    request.send(&receiver()).unwrap();
    request.content_type = "application/json".into();
    let rejection = request.send(&receiver()).unwrap_err();
    assert!(
        matches!(rejection, Rejection::ContentType { .. }),
        "{rejection:?}"
    );
    assert_eq!(rejection.status(), 400);
    let headers = WebhookHeaders {
        content_type: None,
        ..request.headers()
    };
    let rejection = receiver()
        .receive(&headers, &request.body, now())
        .unwrap_err();
    assert!(matches!(
        rejection,
        Rejection::MissingHeader(HEADER_CONTENT_TYPE)
    ));
}

#[test]
fn a_payload_replayed_under_another_id_is_refused() {
    // Signed correctly for `evt_other`, but the encrypted payload says evt_123.
    let request = Request::signed("evt_other", encrypted(&payload(ID)), NOW);
    let rejection = request.send(&receiver()).unwrap_err();
    match &rejection {
        Rejection::IdMismatch { header, payload } => {
            assert_eq!((header.as_str(), payload.as_str()), ("evt_other", ID));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rejection.status(), 400);
}

#[test]
fn a_payload_that_is_not_an_event_object_is_refused() {
    let plaintext = serde_json::to_vec(&json!({"id": ID, "type": "x"})).unwrap();
    let request = Request::signed(ID, encrypted(&plaintext), NOW);
    let rejection = request.send(&receiver()).unwrap_err();
    assert!(matches!(rejection, Rejection::Payload(_)), "{rejection:?}");
    assert_eq!(rejection.status(), 400);
}

#[test]
fn an_unknown_kid_is_named_in_the_reason() {
    let other = test_keys::generated_2048();
    let body = jwe::encrypt(&other.public_key(), "2026-12", &payload(ID)).unwrap();
    let rejection = Request::signed(ID, body, NOW)
        .send(&receiver())
        .unwrap_err();
    assert_eq!(rejection.status(), 400);
    assert!(
        rejection.reason().contains("\"2026-12\""),
        "{}",
        rejection.reason()
    );
}

#[test]
fn without_a_secret_signatures_are_not_checked() {
    let mut receiver = receiver();
    receiver.secrets.clear();
    let mut request = Request::valid();
    request.signature = "v1,bm90IGEgc2lnbmF0dXJl".into();
    request.timestamp = "0".into();
    assert_eq!(request.send(&receiver).unwrap().webhook_id, ID);
    let headers = WebhookHeaders {
        id: None,
        ..request.headers()
    };
    let rejection = receiver
        .receive(&headers, &request.body, now())
        .unwrap_err();
    assert!(matches!(rejection, Rejection::MissingHeader(HEADER_ID)));
    assert_eq!(rejection.status(), 400);
}

#[test]
fn the_reason_carries_the_cause_on_one_line() {
    let mut request = Request::valid();
    request.signature = "v1,AAAA".into();
    let reason = request.send(&receiver()).unwrap_err().reason();
    assert_eq!(
        reason,
        "signature verification failed: no signature matches the message"
    );
}

use proptest::strategy::Strategy as _;

// The same properties as the `receiver` fuzz target: arbitrary requests
// never panic, and nothing passes authentication without a valid signature;
// correctly signed arbitrary bodies reach decryption and never panic there.
proptest::proptest! {
    #[test]
    fn arbitrary_requests_never_pass_without_a_valid_signature(
        id in proptest::option::of("\\PC{0,12}"),
        timestamp in proptest::option::of("[0-9 -]{0,12}"),
        signature in proptest::option::of("(v1,)?[A-Za-z0-9+/=]{0,48}( v1,[A-Za-z0-9+/=]{0,8})?"),
        content_type in proptest::option::of("application/(jose\\+)?json(; ?charset=utf-8)?"),
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
    ) {
        let receiver = receiver();
        let headers = WebhookHeaders {
            id: id.as_deref(),
            timestamp: timestamp.as_deref(),
            signature: signature.as_deref(),
            content_type: content_type.as_deref(),
        };
        match receiver.receive(&headers, &body, now()) {
            Err(rejection) if rejection.is_unauthenticated() => {}
            _ => {
                let secret = SigningSecret::parse(SECRET).unwrap();
                let verified = secret.verify(
                    headers.id.unwrap(),
                    headers.timestamp.unwrap(),
                    headers.signature.unwrap(),
                    &body,
                    now(),
                    receiver.tolerance,
                );
                proptest::prop_assert!(verified.is_ok());
            }
        }
    }

    #[test]
    fn signed_arbitrary_bodies_never_panic_in_decryption(
        body in proptest::prop_oneof![
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            "\\{(\"(protected|encrypted_key|iv|ciphertext|tag)\":\"[A-Za-z0-9_-]{0,24}\",?){0,5}\\}"
                .prop_map(String::into_bytes),
        ],
    ) {
        let secret = SigningSecret::parse(SECRET).unwrap();
        let signature = secret.sign(ID, NOW, &body);
        let timestamp = NOW.to_string();
        let headers = WebhookHeaders {
            id: Some(ID),
            timestamp: Some(&timestamp),
            signature: Some(&signature),
            content_type: Some(jwe::CONTENT_TYPE),
        };
        let result = receiver().receive(&headers, &body, now());
        proptest::prop_assert!(!matches!(result, Err(ref r) if r.is_unauthenticated()));
    }
}

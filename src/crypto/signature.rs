//! Standard Webhooks signatures: HMAC-SHA256 over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, sent as
//! `webhook-signature: v1,<base64>`.
//!
//! The secret is `whsec_` followed by the base64 of 24 to 64 random bytes,
//! the range the specification requires; any Standard Webhooks library
//! verifies what [`SigningSecret::sign`] produces.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret as _, SecretSlice, SecretString};

use super::primitives::{constant_time_eq, fill_random};

/// The prefix of a serialised secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The version tag of a symmetric (HMAC-SHA256) signature.
const SIGNATURE_VERSION: &str = "v1";

/// The default clock tolerance of the specification: a message whose
/// timestamp is further than this from the receiver's clock is refused.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The number of random bytes in a generated secret.
const GENERATED_LEN: usize = 32;

const MIN_LEN: usize = 24;
const MAX_LEN: usize = 64;

/// Why a `whsec_…` string was refused. Messages never contain the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The string does not start with `whsec_`.
    #[error("a signing secret must start with `{SECRET_PREFIX}`")]
    MissingPrefix,

    /// What follows the prefix is not standard base64.
    #[error("the signing secret after `{SECRET_PREFIX}` is not valid base64")]
    Base64(#[source] base64::DecodeError),

    /// The decoded secret is shorter than 24 or longer than 64 bytes.
    #[error("a signing secret must hold {MIN_LEN} to {MAX_LEN} bytes, this one holds {len}")]
    Length {
        /// The decoded length.
        len: usize,
    },
}

/// Why a signed request was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// `webhook-timestamp` is not a decimal number of seconds.
    #[error("`webhook-timestamp` is not an integer number of seconds")]
    InvalidTimestamp,

    /// The timestamp is older than the tolerance allows (a replay, or a
    /// delivery that waited too long in a queue).
    #[error("the message timestamp is {age_secs} s old, more than the {tolerance_secs} s allowed")]
    TooOld {
        /// How far behind the receiver's clock the timestamp is.
        age_secs: u64,
        /// The tolerance in force.
        tolerance_secs: u64,
    },

    /// The timestamp is further in the future than the tolerance allows.
    #[error(
        "the message timestamp is {ahead_secs} s in the future, more than the {tolerance_secs} s allowed"
    )]
    TooNew {
        /// How far ahead of the receiver's clock the timestamp is.
        ahead_secs: u64,
        /// The tolerance in force.
        tolerance_secs: u64,
    },

    /// `webhook-signature` holds no `v1,` signature.
    #[error("`webhook-signature` holds no `v1` signature")]
    NoSignature,

    /// No `v1` signature matches the message.
    #[error("no signature matches the message")]
    Mismatch,
}

/// A Standard Webhooks signing secret. It cannot be printed: `Debug` is
/// redacted and there is no `Display`; [`SigningSecret::to_whsec`] gives the
/// serialised form wrapped in a secret type.
#[derive(Clone)]
pub struct SigningSecret {
    // Only the secret itself is kept; the HMAC key is prepared per
    // signature. A prepared aws-lc HMAC key holds three SHA-512-sized
    // digest states (about 1.2 KB), which for 100,000 tenants was 120 MB
    // of the tenant table, while preparing it costs two SHA-256 blocks,
    // a fraction of a signature.
    bytes: SecretSlice<u8>,
}

impl SigningSecret {
    /// Parses `whsec_<base64>`; the decoded secret must hold 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<SigningSecret, SecretError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let bytes = Zeroizing::new(STANDARD.decode(encoded).map_err(SecretError::Base64)?);
        SigningSecret::from_bytes(&bytes)
    }

    /// Builds a secret from raw bytes (24 to 64 of them).
    pub fn from_bytes(bytes: &[u8]) -> Result<SigningSecret, SecretError> {
        if !(MIN_LEN..=MAX_LEN).contains(&bytes.len()) {
            return Err(SecretError::Length { len: bytes.len() });
        }
        Ok(SigningSecret {
            bytes: SecretSlice::from(bytes.to_vec()),
        })
    }

    /// A new secret of 32 random bytes.
    pub fn generate() -> SigningSecret {
        let mut bytes = Zeroizing::new([0u8; GENERATED_LEN]);
        fill_random(bytes.as_mut());
        SigningSecret::from_bytes(bytes.as_ref())
            .expect("32 bytes lie within the accepted 24..=64 range")
    }

    /// The serialised `whsec_…` form, for storing in a tenant record or
    /// showing once to its owner.
    pub fn to_whsec(&self) -> SecretString {
        let mut text = String::with_capacity(SECRET_PREFIX.len() + MAX_LEN * 4 / 3 + 4);
        text.push_str(SECRET_PREFIX);
        STANDARD.encode_string(self.bytes.expose_secret(), &mut text);
        SecretString::from(text)
    }

    /// Signs one message: returns the `webhook-signature` value `v1,<base64>`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.tag(msg_id, timestamp.to_string().as_bytes(), body);
        let mut header = String::with_capacity(SIGNATURE_VERSION.len() + 1 + 44);
        header.push_str(SIGNATURE_VERSION);
        header.push(',');
        STANDARD.encode_string(tag.as_ref(), &mut header);
        header
    }

    /// Verifies a received message: the timestamp must lie within
    /// `tolerance` of `now`, and at least one of the space-separated `v1`
    /// signatures of `signature_header` must match (several appear while a
    /// sender rotates its secret; other versions are ignored). Signatures are
    /// compared in constant time.
    pub fn verify(
        &self,
        msg_id: &str,
        timestamp_header: &str,
        signature_header: &str,
        body: &[u8],
        now: SystemTime,
        tolerance: Duration,
    ) -> Result<(), VerifyError> {
        verify_any(
            std::slice::from_ref(self),
            msg_id,
            timestamp_header,
            signature_header,
            body,
            now,
            tolerance,
        )
    }

    fn tag(&self, msg_id: &str, timestamp: &[u8], body: &[u8]) -> hmac::Tag {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.bytes.expose_secret());
        let mut context = hmac::Context::with_key(&key);
        context.update(msg_id.as_bytes());
        context.update(b".");
        context.update(timestamp);
        context.update(b".");
        context.update(body);
        context.sign()
    }
}

/// The `webhook-signature` value for a message signed with each of
/// `secrets`, in their order: `v1,<a> v1,<b>`. During a rotation a sender
/// signs with the new secret and the previous one, so that a receiver that
/// knows either accepts the message. `None` when there is no secret.
pub fn sign_all<'a>(
    secrets: impl IntoIterator<Item = &'a SigningSecret>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Option<String> {
    let mut header: Option<String> = None;
    for secret in secrets {
        let signature = secret.sign(msg_id, timestamp, body);
        match &mut header {
            None => header = Some(signature),
            Some(header) => {
                header.push(' ');
                header.push_str(&signature);
            }
        }
    }
    header
}

/// Verifies a received message against several secrets (a receiver that
/// rotates its secret knows the old and the new one for a while): the
/// timestamp must lie within `tolerance` of `now`, and at least one `v1`
/// signature of `signature_header` must match at least one secret. Every
/// signature is compared with every secret, in constant time and without
/// stopping at a match, so the time taken reveals neither which signature
/// nor which secret matched. No secret at all verifies nothing.
pub fn verify_any(
    secrets: &[SigningSecret],
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let timestamp_header = timestamp_header.trim();
    let timestamp: i64 = timestamp_header
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    check_tolerance(timestamp, now, tolerance)?;

    // The timestamp is signed as it was sent, so "0123" would not verify
    // as "123"; hash the header's own bytes.
    let expected: Vec<hmac::Tag> = secrets
        .iter()
        .map(|secret| secret.tag(msg_id, timestamp_header.as_bytes(), body))
        .collect();
    let mut seen_v1 = false;
    let mut matched = false;
    for candidate in signature_header.split_ascii_whitespace() {
        let Some((version, encoded)) = candidate.split_once(',') else {
            continue;
        };
        if version != SIGNATURE_VERSION {
            continue;
        }
        seen_v1 = true;
        if let Ok(signature) = STANDARD.decode(encoded) {
            for tag in &expected {
                matched |= constant_time_eq(&signature, tag.as_ref());
            }
        }
    }
    match (matched, seen_v1) {
        (true, _) => Ok(()),
        (false, false) => Err(VerifyError::NoSignature),
        (false, true) => Err(VerifyError::Mismatch),
    }
}

impl FromStr for SigningSecret {
    type Err = SecretError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SigningSecret::parse(text)
    }
}

impl<'de> serde::Deserialize<'de> for SigningSecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        SigningSecret::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([REDACTED])")
    }
}

/// Seconds since the Unix epoch, negative before it.
pub fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

fn check_tolerance(
    timestamp: i64,
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let now = unix_seconds(now);
    let tolerance_secs = tolerance.as_secs();
    let distance = now.abs_diff(timestamp);
    if distance <= tolerance_secs {
        Ok(())
    } else if timestamp < now {
        Err(VerifyError::TooOld {
            age_secs: distance,
            tolerance_secs,
        })
    } else {
        Err(VerifyError::TooNew {
            ahead_secs: distance,
            tolerance_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(seconds: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds.try_into().unwrap())
    }

    fn spec_secret() -> SigningSecret {
        SigningSecret::parse(SPEC_SECRET).unwrap()
    }

    fn verify_spec(signature: &str, body: &[u8], now: i64) -> Result<(), VerifyError> {
        spec_secret().verify(
            SPEC_ID,
            &SPEC_TIMESTAMP.to_string(),
            signature,
            body,
            at(now),
            DEFAULT_TOLERANCE,
        )
    }

    #[test]
    fn signs_the_specification_example() {
        assert_eq!(
            spec_secret().sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
    }

    #[test]
    fn verifies_the_specification_example() {
        verify_spec(SPEC_SIGNATURE, SPEC_BODY, SPEC_TIMESTAMP).unwrap();
    }

    #[test]
    fn accepts_any_matching_signature_among_several() {
        let other = SigningSecret::generate().sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
        let header = format!("v1a,c29tZXRoaW5n {other} {SPEC_SIGNATURE}");
        verify_spec(&header, SPEC_BODY, SPEC_TIMESTAMP).unwrap();
        let header = format!("{SPEC_SIGNATURE} {other}");
        verify_spec(&header, SPEC_BODY, SPEC_TIMESTAMP).unwrap();
    }

    #[test]
    fn signs_with_every_secret_in_order_separated_by_spaces() {
        let new = SigningSecret::generate();
        let old = spec_secret();
        let header = sign_all([&new, &old], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY).unwrap();
        let new_signature = new.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
        assert_eq!(header, format!("{new_signature} {SPEC_SIGNATURE}"));
        // A receiver that knows only one of the two secrets accepts it.
        verify_spec(&header, SPEC_BODY, SPEC_TIMESTAMP).unwrap();
        new.verify(
            SPEC_ID,
            &SPEC_TIMESTAMP.to_string(),
            &header,
            SPEC_BODY,
            at(SPEC_TIMESTAMP),
            DEFAULT_TOLERANCE,
        )
        .unwrap();
        assert_eq!(
            sign_all([&old], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY).as_deref(),
            Some(SPEC_SIGNATURE)
        );
        assert_eq!(sign_all([], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), None);
    }

    #[test]
    fn verifies_against_any_of_several_secrets() {
        let verify = |secrets: &[SigningSecret], header: &str| {
            verify_any(
                secrets,
                SPEC_ID,
                &SPEC_TIMESTAMP.to_string(),
                header,
                SPEC_BODY,
                at(SPEC_TIMESTAMP),
                DEFAULT_TOLERANCE,
            )
        };
        let unrelated = SigningSecret::generate();
        verify(&[unrelated.clone(), spec_secret()], SPEC_SIGNATURE).unwrap();
        verify(&[spec_secret(), unrelated.clone()], SPEC_SIGNATURE).unwrap();
        let err = verify(
            &[unrelated.clone(), SigningSecret::generate()],
            SPEC_SIGNATURE,
        );
        assert!(matches!(err, Err(VerifyError::Mismatch)), "{err:?}");
        let err = verify(&[], SPEC_SIGNATURE);
        assert!(matches!(err, Err(VerifyError::Mismatch)), "{err:?}");
        let err = verify(&[unrelated], "v1a,abc");
        assert!(matches!(err, Err(VerifyError::NoSignature)), "{err:?}");
    }

    #[test]
    fn refuses_a_tampered_body_id_or_timestamp() {
        let err = verify_spec(SPEC_SIGNATURE, br#"{"test": 2432232315}"#, SPEC_TIMESTAMP);
        assert!(matches!(err, Err(VerifyError::Mismatch)), "{err:?}");
        let err = spec_secret().verify(
            "msg_other",
            &SPEC_TIMESTAMP.to_string(),
            SPEC_SIGNATURE,
            SPEC_BODY,
            at(SPEC_TIMESTAMP),
            DEFAULT_TOLERANCE,
        );
        assert!(matches!(err, Err(VerifyError::Mismatch)), "{err:?}");
        let err = spec_secret().verify(
            SPEC_ID,
            &(SPEC_TIMESTAMP + 1).to_string(),
            SPEC_SIGNATURE,
            SPEC_BODY,
            at(SPEC_TIMESTAMP),
            DEFAULT_TOLERANCE,
        );
        assert!(matches!(err, Err(VerifyError::Mismatch)), "{err:?}");
    }

    #[test]
    fn refuses_a_signature_made_with_another_secret() {
        let other = SigningSecret::generate().sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
        let err = verify_spec(&other, SPEC_BODY, SPEC_TIMESTAMP);
        assert!(matches!(err, Err(VerifyError::Mismatch)), "{err:?}");
    }

    #[test]
    fn refuses_headers_without_a_v1_signature() {
        for header in [
            "",
            "   ",
            "v1a,abc",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ] {
            let err = verify_spec(header, SPEC_BODY, SPEC_TIMESTAMP);
            assert!(
                matches!(err, Err(VerifyError::NoSignature)),
                "{header:?}: {err:?}"
            );
        }
        let err = verify_spec("v1,not-base64!", SPEC_BODY, SPEC_TIMESTAMP);
        assert!(matches!(err, Err(VerifyError::Mismatch)), "{err:?}");
    }

    #[test]
    fn enforces_the_tolerance_in_both_directions() {
        let five_minutes = 300;
        verify_spec(SPEC_SIGNATURE, SPEC_BODY, SPEC_TIMESTAMP + five_minutes).unwrap();
        verify_spec(SPEC_SIGNATURE, SPEC_BODY, SPEC_TIMESTAMP - five_minutes).unwrap();
        let err = verify_spec(SPEC_SIGNATURE, SPEC_BODY, SPEC_TIMESTAMP + five_minutes + 1);
        assert!(
            matches!(err, Err(VerifyError::TooOld { age_secs: 301, .. })),
            "{err:?}"
        );
        let err = verify_spec(SPEC_SIGNATURE, SPEC_BODY, SPEC_TIMESTAMP - five_minutes - 1);
        assert!(
            matches!(
                err,
                Err(VerifyError::TooNew {
                    ahead_secs: 301,
                    ..
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_a_timestamp_that_is_not_a_number() {
        for header in ["", "abc", "1614265330.5", "1e9"] {
            let err = spec_secret().verify(
                SPEC_ID,
                header,
                SPEC_SIGNATURE,
                SPEC_BODY,
                at(SPEC_TIMESTAMP),
                DEFAULT_TOLERANCE,
            );
            assert!(
                matches!(err, Err(VerifyError::InvalidTimestamp)),
                "{header:?}: {err:?}"
            );
        }
        // An extreme value is refused by the tolerance, without overflow.
        let err = spec_secret().verify(
            SPEC_ID,
            &i64::MIN.to_string(),
            SPEC_SIGNATURE,
            SPEC_BODY,
            at(SPEC_TIMESTAMP),
            DEFAULT_TOLERANCE,
        );
        assert!(matches!(err, Err(VerifyError::TooOld { .. })), "{err:?}");
    }

    #[test]
    fn parses_and_validates_secrets() {
        assert!(matches!(
            SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingPrefix)
        ));
        assert!(matches!(
            SigningSecret::parse("whsec_not base64!"),
            Err(SecretError::Base64(_))
        ));
        // 16 bytes: below the specification's minimum.
        assert!(matches!(
            SigningSecret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAA=="),
            Err(SecretError::Length { len: 16 })
        ));
        let long = format!("{SECRET_PREFIX}{}", STANDARD.encode([7u8; 65]));
        assert!(matches!(
            SigningSecret::parse(&long),
            Err(SecretError::Length { len: 65 })
        ));
        let parsed: SigningSecret = format!(" {SPEC_SECRET}\n").parse().unwrap();
        assert_eq!(parsed.to_whsec().expose_secret(), SPEC_SECRET);
    }

    #[test]
    fn generated_secrets_are_distinct_and_round_trip() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        let a_text = a.to_whsec();
        assert_ne!(a_text.expose_secret(), b.to_whsec().expose_secret());
        let again = SigningSecret::parse(a_text.expose_secret()).unwrap();
        let signature = a.sign("msg_1", 1, b"{}");
        assert_eq!(again.sign("msg_1", 1, b"{}"), signature);
        // 32 bytes of secret are 44 base64 characters.
        assert_eq!(a_text.expose_secret().len(), SECRET_PREFIX.len() + 44);
    }

    #[test]
    fn secrets_are_never_printed() {
        let secret = spec_secret();
        let debug = format!("{secret:?} {:?}", secret.to_whsec());
        assert!(!debug.contains("MfKQ9r8G"), "{debug}");
        let err = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("MfKQ9r8G"));
    }

    #[test]
    fn deserializes_from_a_json_string() {
        let secret: SigningSecret = serde_json::from_str(&format!("\"{SPEC_SECRET}\"")).unwrap();
        assert_eq!(
            secret.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
        let err = serde_json::from_str::<SigningSecret>("\"nope\"").unwrap_err();
        assert!(err.to_string().contains("whsec_"), "{err}");
    }
}

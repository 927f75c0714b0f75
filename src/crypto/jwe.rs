//! JWE (RFC 7516) with `RSA-OAEP-256` key wrapping and `A256GCM` content
//! encryption, in the flattened JSON serialization (§7.2.2):
//!
//! ```json
//! {"protected":"…","encrypted_key":"…","iv":"…","ciphertext":"…","tag":"…"}
//! ```
//!
//! The protected header is `{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":…}`
//! and, as RFC 7516 §5.1 requires, the AES-GCM additional data is the ASCII
//! of its base64url form. Every call draws a fresh content key and IV.

use std::collections::BTreeSet;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::error::Unspecified;
use aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::zeroize::Zeroizing;
use serde::{Deserialize, Serialize};

use super::keyring::KeyRing;
use super::keys::{MAX_RSA_BITS, PrivateKey, PublicKey};
use super::primitives::fill_random;

/// The only key-management algorithm produced and accepted.
pub const ALG: &str = "RSA-OAEP-256";
/// The only content-encryption algorithm produced and accepted.
pub const ENC: &str = "A256GCM";
/// The media type of a JWE in JSON serialization (RFC 7516 §9).
pub const CONTENT_TYPE: &str = "application/jose+json";

const CEK_LEN: usize = 32;
const TAG_LEN: usize = 16;
const MAX_WRAPPED_KEY_LEN: usize = MAX_RSA_BITS / 8;

/// Why a JWE could not be produced or opened.
#[derive(Debug, thiserror::Error)]
pub enum JweError {
    /// The body is not the flattened JSON serialization (not JSON, a member
    /// missing, an unexpected member, a member that is not a string).
    #[error("not a flattened JSON JWE")]
    Serialization(#[source] serde_json::Error),

    /// A member is not unpadded base64url.
    #[error("`{member}` is not base64url")]
    Base64 {
        /// The JWE member that failed to decode.
        member: &'static str,
        #[source]
        source: base64::DecodeError,
    },

    /// The protected header is not a JSON object with string `alg` and `enc`.
    #[error("the protected header is not valid")]
    Header(#[source] serde_json::Error),

    /// `alg` is not `RSA-OAEP-256`.
    #[error("unsupported `alg` {0:?}: only `{ALG}` is accepted")]
    UnsupportedAlg(String),

    /// `enc` is not `A256GCM`.
    #[error("unsupported `enc` {0:?}: only `{ENC}` is accepted")]
    UnsupportedEnc(String),

    /// The header uses a feature this implementation does not provide
    /// (`zip`, `crit`), which RFC 7516 forbids ignoring.
    #[error("unsupported protected header parameter `{0}`")]
    UnsupportedHeader(&'static str),

    /// An IV or tag of the wrong length for AES-256-GCM.
    #[error("`{member}` must be {expected} bytes, found {found}")]
    Length {
        /// The JWE member at fault.
        member: &'static str,
        /// The length AES-256-GCM needs.
        expected: usize,
        /// The decoded length.
        found: usize,
    },

    /// The header names a `kid` that the key ring does not hold.
    #[error("unknown key id {kid:?}; this receiver holds {known:?}")]
    UnknownKid {
        /// The `kid` of the header.
        kid: String,
        /// The key ids held, to help diagnose a rotation.
        known: BTreeSet<String>,
    },

    /// The header has no `kid` and the ring holds several keys.
    #[error("the protected header has no `kid` and this receiver holds several keys")]
    MissingKid,

    /// Unwrapping the content key or authenticating the content failed:
    /// the wrong private key, or anything tampered with. Both cases give the
    /// same error so that the failure does not act as an oracle (RFC 7516
    /// §11.5).
    #[error("decryption failed: wrong key or tampered message")]
    Decryption,

    /// aws-lc refused to encrypt; not expected with a valid key.
    #[error("encryption failed")]
    Encryption(#[source] Unspecified),
}

/// The serialised protected header.
#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'static str,
    enc: &'static str,
    kid: &'a str,
}

/// The parsed protected header. Parameters not listed are allowed and
/// ignored (`typ`, `cty`, …), as RFC 7515 §4 lets a recipient do, except
/// `zip` and `crit`, whose presence changes the meaning of the message.
#[derive(Deserialize)]
struct HeaderIn {
    alg: String,
    enc: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    zip: Option<serde_json::Value>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// The flattened serialization as received. Members of the general
/// serialization or an `aad` are refused: hookline never sends them, and
/// accepting `aad` would change what the tag authenticates.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlattenedIn<'a> {
    #[serde(borrow)]
    protected: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    encrypted_key: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    iv: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    ciphertext: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    tag: std::borrow::Cow<'a, str>,
    // The unprotected headers are tolerated because JOSE libraries may add
    // them; nothing in them is trusted.
    #[serde(default, rename = "header")]
    _header: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "unprotected")]
    _unprotected: Option<serde::de::IgnoredAny>,
}

/// A recipient prepared once: its public key and the serialised protected
/// header for its `kid`, so that each [`Recipient::encrypt`] only does the
/// per-message work. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Recipient {
    key: PublicKey,
    kid: Box<str>,
    /// `{"protected":"<b64>","encrypted_key":"`; the AAD is a slice of it.
    prefix: Box<str>,
    aad: std::ops::Range<usize>,
}

impl Recipient {
    /// Prepares encryption to `key`, announcing `kid` in the header.
    pub fn new(key: PublicKey, kid: &str) -> Recipient {
        // The header's members and punctuation take 47 bytes besides the kid.
        let mut header = Vec::with_capacity(47 + kid.len());
        serde_json::to_writer(
            &mut header,
            &HeaderOut {
                alg: ALG,
                enc: ENC,
                kid,
            },
        )
        .expect("a struct of strings always serialises");
        Recipient::with_header(key, kid, &header)
    }

    fn with_header(key: PublicKey, kid: &str, header_json: &[u8]) -> Recipient {
        const OPEN: &str = r#"{"protected":""#;
        const NEXT: &str = r#"","encrypted_key":""#;
        let encoded = base64::encoded_len(header_json.len(), false).unwrap_or_default();
        let mut prefix = String::with_capacity(OPEN.len() + encoded + NEXT.len());
        prefix.push_str(OPEN);
        let start = prefix.len();
        URL_SAFE_NO_PAD.encode_string(header_json, &mut prefix);
        let aad = start..prefix.len();
        prefix.push_str(NEXT);
        Recipient {
            key,
            kid: kid.into(),
            prefix: prefix.into_boxed_str(),
            aad,
        }
    }

    /// The recipient's key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The `kid` announced in the header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The protected header in base64url, as it appears in every message.
    pub fn protected_header(&self) -> &str {
        &self.prefix[self.aad.clone()]
    }

    /// Encrypts `plaintext` into the flattened JSON serialization, with a
    /// fresh random content key and IV.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, JweError> {
        let mut cek = Zeroizing::new([0u8; CEK_LEN]);
        fill_random(cek.as_mut());
        let mut iv = [0u8; NONCE_LEN];
        fill_random(&mut iv);

        let oaep = self.key.oaep();
        let mut wrapped = [0u8; MAX_WRAPPED_KEY_LEN];
        let wrapped = oaep
            .encrypt(&OAEP_SHA256_MGF1SHA256, cek.as_ref(), &mut wrapped, None)
            .map_err(JweError::Encryption)?;

        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, cek.as_ref())
                .expect("a 32-byte key is the size AES-256-GCM takes"),
        );
        let mut ciphertext = plaintext.to_vec();
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(self.protected_header().as_bytes()),
                &mut ciphertext,
            )
            .map_err(JweError::Encryption)?;

        // Every member is base64url, which never needs JSON escaping, so the
        // document is written directly into a buffer of the exact size.
        let b64 = |n: usize| n.div_ceil(3) * 4 - (3 - n % 3) % 3;
        let len = self.prefix.len()
            + b64(wrapped.len())
            + r#"","iv":""#.len()
            + b64(NONCE_LEN)
            + r#"","ciphertext":""#.len()
            + b64(ciphertext.len())
            + r#"","tag":""#.len()
            + b64(TAG_LEN)
            + r#""}"#.len();
        let mut out = String::with_capacity(len);
        out.push_str(&self.prefix);
        URL_SAFE_NO_PAD.encode_string(&*wrapped, &mut out);
        out.push_str(r#"","iv":""#);
        URL_SAFE_NO_PAD.encode_string(iv, &mut out);
        out.push_str(r#"","ciphertext":""#);
        URL_SAFE_NO_PAD.encode_string(&ciphertext, &mut out);
        out.push_str(r#"","tag":""#);
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut out);
        out.push_str(r#""}"#);
        debug_assert_eq!(out.len(), len, "the size computation is exact");
        Ok(out.into_bytes())
    }
}

/// Encrypts `plaintext` for `key`, announcing `kid`. Prefer a cached
/// [`Recipient`] when encrypting repeatedly to the same key.
pub fn encrypt(key: &PublicKey, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, JweError> {
    Recipient::new(key.clone(), kid).encrypt(plaintext)
}

/// A decrypted message and the key id that opened it.
#[derive(Debug)]
pub struct Decrypted {
    /// The `kid` of the private key used.
    pub kid: String,
    /// The plaintext.
    pub plaintext: Vec<u8>,
}

/// Opens a flattened JSON JWE with the key of `keys` that its `kid` names
/// (or the only key of the ring when the header has no `kid`). `alg` and
/// `enc` must be exactly `RSA-OAEP-256` and `A256GCM`.
pub fn decrypt(keys: &KeyRing, body: &[u8]) -> Result<Decrypted, JweError> {
    let jwe: FlattenedIn<'_> = serde_json::from_slice(body).map_err(JweError::Serialization)?;

    let header_json = decode("protected", &jwe.protected)?;
    let header: HeaderIn = serde_json::from_slice(&header_json).map_err(JweError::Header)?;
    if header.alg != ALG {
        return Err(JweError::UnsupportedAlg(header.alg));
    }
    if header.enc != ENC {
        return Err(JweError::UnsupportedEnc(header.enc));
    }
    if header.zip.is_some() {
        return Err(JweError::UnsupportedHeader("zip"));
    }
    if header.crit.is_some() {
        return Err(JweError::UnsupportedHeader("crit"));
    }
    let (kid, key) = select_key(keys, header.kid)?;

    let encrypted_key = decode("encrypted_key", &jwe.encrypted_key)?;
    let iv = decode("iv", &jwe.iv)?;
    let iv: [u8; NONCE_LEN] = iv.as_slice().try_into().map_err(|_| JweError::Length {
        member: "iv",
        expected: NONCE_LEN,
        found: iv.len(),
    })?;
    let tag = decode("tag", &jwe.tag)?;
    if tag.len() != TAG_LEN {
        return Err(JweError::Length {
            member: "tag",
            expected: TAG_LEN,
            found: tag.len(),
        });
    }
    let mut content = decode("ciphertext", &jwe.ciphertext)?;

    let cek = unwrap_content_key(key, &encrypted_key);
    let aes = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, cek.as_ref())
            .expect("a 32-byte key is the size AES-256-GCM takes"),
    );
    let plaintext_len = aes
        .open_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(jwe.protected.as_bytes()),
            &tag,
            &mut content,
        )
        .map_err(|_| JweError::Decryption)?
        .len();
    content.truncate(plaintext_len);
    Ok(Decrypted {
        kid,
        plaintext: content,
    })
}

fn select_key(keys: &KeyRing, kid: Option<String>) -> Result<(String, &PrivateKey), JweError> {
    match kid {
        Some(kid) => match keys.get(&kid) {
            Some(key) => Ok((kid, key)),
            None => Err(JweError::UnknownKid {
                known: keys.kids().map(str::to_owned).collect(),
                kid,
            }),
        },
        None => keys
            .only()
            .map(|(kid, key)| (kid.to_owned(), key))
            .ok_or(JweError::MissingKid),
    }
}

/// RSA-OAEP-256 unwrapping of the content key. On failure, a random key is
/// returned instead so that the message fails at the tag check, in the same
/// way and after the same work as any other tampering (RFC 7516 §11.5).
fn unwrap_content_key(key: &PrivateKey, encrypted_key: &[u8]) -> Zeroizing<[u8; CEK_LEN]> {
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    fill_random(cek.as_mut());
    let oaep = key.oaep();
    let mut buffer = Zeroizing::new([0u8; MAX_WRAPPED_KEY_LEN]);
    let unwrapped = oaep.decrypt(
        &OAEP_SHA256_MGF1SHA256,
        encrypted_key,
        &mut buffer[..oaep.min_output_size()],
        None,
    );
    if let Ok(unwrapped) = unwrapped
        && unwrapped.len() == CEK_LEN
    {
        cek.copy_from_slice(unwrapped);
    }
    cek
}

fn decode(member: &'static str, text: &str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|source| JweError::Base64 { member, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_keys;

    fn ring_of(key: &PrivateKey) -> KeyRing {
        let mut ring = KeyRing::new();
        ring.insert_with_thumbprint(key.clone());
        ring
    }

    fn fixed_key() -> PrivateKey {
        PrivateKey::parse(test_keys::RSA2048_PRIVATE).unwrap()
    }

    fn round_trip(key: &PrivateKey, plaintext: &[u8]) {
        let kid = key.thumbprint();
        let body = encrypt(&key.public_key(), &kid, plaintext).unwrap();
        let opened = decrypt(&ring_of(key), &body).unwrap();
        assert_eq!(opened.kid, kid);
        assert_eq!(opened.plaintext, plaintext);
    }

    /// Parses a serialised JWE into its five members.
    fn members(body: &[u8]) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_slice(body).unwrap()
    }

    fn with_member(body: &[u8], member: &str, value: String) -> Vec<u8> {
        let mut object = members(body);
        object.insert(member.to_owned(), value.into());
        serde_json::to_vec(&object).unwrap()
    }

    fn flip_bit(body: &[u8], member: &str) -> Vec<u8> {
        let object = members(body);
        let mut bytes = URL_SAFE_NO_PAD
            .decode(object[member].as_str().unwrap())
            .unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        with_member(body, member, URL_SAFE_NO_PAD.encode(bytes))
    }

    #[test]
    fn round_trips_with_a_2048_bit_key_from_empty_to_one_mebibyte() {
        let key = fixed_key();
        for len in [0, 1, 15, 16, 17, 1024, 65_537, 1 << 20] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            round_trip(&key, &plaintext);
        }
    }

    #[test]
    fn round_trips_with_a_4096_bit_key() {
        let key = test_keys::generated_4096();
        assert_eq!(key.bits(), 4096);
        round_trip(key, b"");
        round_trip(key, br#"{"id":"evt_1","type":"order.created","data":{}}"#);
        round_trip(key, &vec![0xA5; 1 << 20]);
    }

    #[test]
    fn writes_exactly_the_five_members_and_the_contract_header() {
        let key = fixed_key();
        let body = encrypt(&key.public_key(), "2026-11", b"hello").unwrap();
        let object = members(&body);
        let names: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["ciphertext", "encrypted_key", "iv", "protected", "tag"]
        );
        let header = URL_SAFE_NO_PAD
            .decode(object["protected"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&header).unwrap(),
            r#"{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"2026-11"}"#
        );
        let sizes: Vec<usize> = ["encrypted_key", "iv", "ciphertext", "tag"]
            .iter()
            .map(|m| {
                URL_SAFE_NO_PAD
                    .decode(object[*m].as_str().unwrap())
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(sizes, [256, 12, 5, 16]);
    }

    #[test]
    fn escapes_a_kid_that_needs_it() {
        let key = fixed_key();
        let kid = "quote\" backslash\\ é";
        let body = encrypt(&key.public_key(), kid, b"x").unwrap();
        let mut ring = KeyRing::new();
        ring.insert(kid, key);
        assert_eq!(decrypt(&ring, &body).unwrap().kid, kid);
    }

    #[test]
    fn draws_a_fresh_key_and_iv_for_every_message() {
        let recipient = Recipient::new(fixed_key().public_key(), "k");
        let a = members(&recipient.encrypt(b"same").unwrap());
        let b = members(&recipient.encrypt(b"same").unwrap());
        assert_eq!(a["protected"], b["protected"]);
        for member in ["encrypted_key", "iv", "ciphertext", "tag"] {
            assert_ne!(a[member], b[member], "{member} repeated");
        }
    }

    #[test]
    fn refuses_every_tampered_member() {
        let key = fixed_key();
        let ring = ring_of(&key);
        let body = encrypt(&key.public_key(), &key.thumbprint(), b"{\"amount\":100}").unwrap();
        for member in ["iv", "ciphertext", "tag", "encrypted_key"] {
            let err = decrypt(&ring, &flip_bit(&body, member)).unwrap_err();
            assert!(matches!(err, JweError::Decryption), "{member}: {err:?}");
        }
        // A protected header that still names the right key but differs by
        // one parameter changes the AAD, so the tag no longer verifies.
        let forged = format!(
            r#"{{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"{}","typ":"x"}}"#,
            key.thumbprint()
        );
        let err = decrypt(
            &ring,
            &with_member(&body, "protected", URL_SAFE_NO_PAD.encode(forged)),
        )
        .unwrap_err();
        assert!(matches!(err, JweError::Decryption), "{err:?}");
    }

    #[test]
    fn refuses_the_wrong_private_key_under_the_right_kid() {
        let key = fixed_key();
        let body = encrypt(&key.public_key(), "k", b"secret").unwrap();
        let mut ring = KeyRing::new();
        ring.insert("k", test_keys::generated_2048().clone());
        assert!(matches!(
            decrypt(&ring, &body).unwrap_err(),
            JweError::Decryption
        ));
    }

    #[test]
    fn names_an_unknown_kid_and_the_known_ones() {
        let key = fixed_key();
        let body = encrypt(&key.public_key(), "2026-12", b"x").unwrap();
        let mut ring = KeyRing::new();
        ring.insert("2026-11", key);
        let err = decrypt(&ring, &body).unwrap_err();
        match &err {
            JweError::UnknownKid { kid, known } => {
                assert_eq!(kid, "2026-12");
                assert!(known.contains("2026-11"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("2026-12"), "{err}");
    }

    #[test]
    fn opens_messages_for_either_key_of_a_rotation() {
        let old = fixed_key();
        let new = test_keys::generated_2048().clone();
        let mut ring = KeyRing::new();
        let old_kid = ring.insert_with_thumbprint(old.clone());
        let new_kid = ring.insert_with_thumbprint(new.clone());
        assert_ne!(old_kid, new_kid);
        let before = encrypt(&old.public_key(), &old_kid, b"before").unwrap();
        let after = encrypt(&new.public_key(), &new_kid, b"after").unwrap();
        let opened = decrypt(&ring, &before).unwrap();
        assert_eq!(
            (opened.kid.as_str(), &opened.plaintext[..]),
            (old_kid.as_str(), &b"before"[..])
        );
        let opened = decrypt(&ring, &after).unwrap();
        assert_eq!(
            (opened.kid.as_str(), &opened.plaintext[..]),
            (new_kid.as_str(), &b"after"[..])
        );
    }

    fn with_header(body: &[u8], header: &str) -> Vec<u8> {
        with_member(body, "protected", URL_SAFE_NO_PAD.encode(header))
    }

    #[test]
    fn checks_alg_and_enc_strictly() {
        let key = fixed_key();
        let ring = ring_of(&key);
        let kid = key.thumbprint();
        let body = encrypt(&key.public_key(), &kid, b"x").unwrap();
        let cases = [
            (
                format!(r#"{{"alg":"RSA-OAEP","enc":"A256GCM","kid":"{kid}"}}"#),
                "alg",
            ),
            (
                format!(r#"{{"alg":"rsa-oaep-256","enc":"A256GCM","kid":"{kid}"}}"#),
                "alg",
            ),
            (
                format!(r#"{{"alg":"dir","enc":"A256GCM","kid":"{kid}"}}"#),
                "alg",
            ),
            (
                format!(r#"{{"alg":"RSA-OAEP-256","enc":"A128GCM","kid":"{kid}"}}"#),
                "enc",
            ),
            (
                format!(r#"{{"alg":"RSA-OAEP-256","enc":"A256CBC-HS512","kid":"{kid}"}}"#),
                "enc",
            ),
        ];
        for (header, which) in cases {
            let err = decrypt(&ring, &with_header(&body, &header)).unwrap_err();
            match (which, &err) {
                ("alg", JweError::UnsupportedAlg(_)) | ("enc", JweError::UnsupportedEnc(_)) => {}
                _ => panic!("{header}: {err:?}"),
            }
        }
        let zip = format!(r#"{{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"{kid}","zip":"DEF"}}"#);
        assert!(matches!(
            decrypt(&ring, &with_header(&body, &zip)).unwrap_err(),
            JweError::UnsupportedHeader("zip")
        ));
        let crit =
            format!(r#"{{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"{kid}","crit":["exp"]}}"#);
        assert!(matches!(
            decrypt(&ring, &with_header(&body, &crit)).unwrap_err(),
            JweError::UnsupportedHeader("crit")
        ));
        assert!(matches!(
            decrypt(&ring, &with_header(&body, "[]")).unwrap_err(),
            JweError::Header(_)
        ));
    }

    #[test]
    fn refuses_malformed_serializations() {
        let key = fixed_key();
        let ring = ring_of(&key);
        let body = encrypt(&key.public_key(), &key.thumbprint(), b"x").unwrap();
        let compact = b"eyJhbGciOiJSU0EtT0FFUC0yNTYifQ.a.b.c.d";
        for bad in [&b""[..], b"null", b"{}", compact] {
            assert!(matches!(
                decrypt(&ring, bad).unwrap_err(),
                JweError::Serialization(_)
            ));
        }
        let with_aad = with_member(&body, "aad", "YQ".into());
        assert!(matches!(
            decrypt(&ring, &with_aad).unwrap_err(),
            JweError::Serialization(_)
        ));
        let padded = with_member(
            &body,
            "iv",
            format!("{}=", members(&body)["iv"].as_str().unwrap()),
        );
        assert!(matches!(
            decrypt(&ring, &padded).unwrap_err(),
            JweError::Base64 { member: "iv", .. }
        ));
        let short_iv = with_member(&body, "iv", URL_SAFE_NO_PAD.encode([0u8; 8]));
        assert!(matches!(
            decrypt(&ring, &short_iv).unwrap_err(),
            JweError::Length {
                member: "iv",
                found: 8,
                ..
            }
        ));
        let short_tag = with_member(&body, "tag", URL_SAFE_NO_PAD.encode([0u8; 12]));
        assert!(matches!(
            decrypt(&ring, &short_tag).unwrap_err(),
            JweError::Length {
                member: "tag",
                found: 12,
                ..
            }
        ));
    }

    #[test]
    fn uses_the_only_key_when_the_header_has_no_kid() {
        let key = fixed_key();
        let bare = br#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#;
        let body = Recipient::with_header(key.public_key(), "", bare)
            .encrypt(b"no kid")
            .unwrap();
        let opened = decrypt(&ring_of(&key), &body).unwrap();
        assert_eq!(opened.plaintext, b"no kid");
        assert_eq!(opened.kid, key.thumbprint());
        // With several keys the choice would be a guess, so it is refused.
        let mut two = ring_of(&key);
        two.insert_with_thumbprint(test_keys::generated_2048().clone());
        assert!(matches!(
            decrypt(&two, &body).unwrap_err(),
            JweError::MissingKid
        ));
    }

    /// Messages made by jwcrypto (with a `kid`) and by jose (without one)
    /// for the fixed test key; `tests/interop/vectors.*` regenerate them.
    #[test]
    fn opens_messages_made_by_other_jose_libraries() {
        let key = fixed_key();
        for vector in [
            include_str!("testdata/jwcrypto-vector.json"),
            include_str!("testdata/jose-vector.json"),
        ] {
            let vector: serde_json::Value = serde_json::from_str(vector).unwrap();
            let body = serde_json::to_vec(&vector["jwe"]).unwrap();
            let opened = decrypt(&ring_of(&key), &body)
                .unwrap_or_else(|e| panic!("{}: {e:?}", vector["library"]));
            assert_eq!(opened.kid, key.thumbprint());
            let plaintext: serde_json::Value = serde_json::from_slice(&opened.plaintext).unwrap();
            assert_eq!(plaintext, vector["plaintext"], "{}", vector["library"]);
        }
    }
}

//! Keys shared by the crypto tests. The PEM files were made once with
//! OpenSSL and are used by tests only; generated keys are made once per
//! test run because RSA generation is slow.

use std::sync::LazyLock;

use super::PrivateKey;

/// A 2048-bit key as PKCS#8 `PRIVATE KEY`.
pub const RSA2048_PRIVATE: &str = include_str!("testdata/rsa2048-private.pem");
/// The same key as PKCS#1 `RSA PRIVATE KEY`.
pub const RSA2048_PKCS1_PRIVATE: &str = include_str!("testdata/rsa2048-pkcs1-private.pem");
/// Its public half as SPKI `PUBLIC KEY`.
pub const RSA2048_SPKI: &str = include_str!("testdata/rsa2048-spki.pem");
/// Its public half as PKCS#1 `RSA PUBLIC KEY`.
pub const RSA2048_PKCS1_PUBLIC: &str = include_str!("testdata/rsa2048-pkcs1-public.pem");

static GENERATED_2048: LazyLock<PrivateKey> =
    LazyLock::new(|| PrivateKey::generate(2048).expect("2048-bit generation"));
static GENERATED_4096: LazyLock<PrivateKey> =
    LazyLock::new(|| PrivateKey::generate(4096).expect("4096-bit generation"));

/// A freshly generated 2048-bit key, distinct from the fixed one.
pub fn generated_2048() -> &'static PrivateKey {
    &GENERATED_2048
}

/// A freshly generated 4096-bit key.
pub fn generated_4096() -> &'static PrivateKey {
    &GENERATED_4096
}

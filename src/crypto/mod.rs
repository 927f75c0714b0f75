//! Cryptography: JWE encryption to a tenant's RSA key, Standard Webhooks
//! signatures, and the keys themselves.
//!
//! **Architecture invariant:** this is the only module that imports crypto
//! crates (aws-lc-rs, pem and the RustCrypto DER encodings). Everything else
//! goes through the types below, so that one backend does all the
//! cryptography and key material never leaves these types unwrapped.
//!
//! - [`PublicKey`] / [`PrivateKey`]: RSA keys, parsed and prepared once;
//!   [`CompactPublicKey`]: a validated public key kept as its numbers,
//!   prepared on demand (the tenant table holds one per tenant).
//! - [`jwe`]: `RSA-OAEP-256` + `A256GCM` in the flattened JSON serialization.
//! - [`KeyRing`]: private keys by `kid`, for decryption across rotations.
//! - [`SigningSecret`]: Standard Webhooks `v1` signatures; [`sign_all`] and
//!   [`verify_any`] for several secrets during a rotation.

pub mod jwe;
mod keyring;
mod keys;
mod primitives;
pub mod signature;

#[cfg(test)]
pub(crate) mod test_keys;

pub use keyring::KeyRing;
pub use keys::{CompactPublicKey, KeyError, MAX_RSA_BITS, MIN_RSA_BITS, PrivateKey, PublicKey};
pub use primitives::{constant_time_eq, fill_random, sha256, sha256_hex};
pub use signature::{SecretError, SigningSecret, VerifyError, sign_all, verify_any};

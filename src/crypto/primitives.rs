//! Small primitives that other modules need without importing a crypto
//! crate themselves: digests, randomness, constant-time comparison.

use aws_lc_rs::{constant_time, digest, rand};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lowercase hex SHA-256 of `data`, as stored in `api_key_sha256`.
pub fn sha256_hex(data: &[u8]) -> String {
    use std::fmt::Write as _;
    sha256(data)
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// Fills `dest` from the operating system's CSPRNG (through aws-lc).
pub fn fill_random(dest: &mut [u8]) {
    rand::fill(dest).expect("aws-lc's RAND_bytes aborts the process rather than return an error");
}

/// Compares two byte strings in time independent of their contents (not of
/// their lengths), for secrets such as API key hashes and signatures.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_fips_180_abc_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn random_fills_differ() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        fill_random(&mut a);
        fill_random(&mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

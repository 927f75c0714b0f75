//! The private keys a receiver holds, indexed by the `kid` that senders put
//! in the JWE header. Holding several keys is how a customer rotates: the
//! new key is added, the tenant record is updated, and the old key stays
//! until messages encrypted to it can no longer arrive.

use std::collections::BTreeMap;

use super::keys::PrivateKey;

/// Private keys by `kid`.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, PrivateKey>,
}

impl KeyRing {
    /// An empty ring.
    pub fn new() -> KeyRing {
        KeyRing::default()
    }

    /// Adds `key` under an explicit `kid` (the tenant record's `key_id`),
    /// replacing any key held under that id.
    pub fn insert(&mut self, kid: impl Into<String>, key: PrivateKey) {
        self.keys.insert(kid.into(), key);
    }

    /// Adds `key` under its RFC 7638 thumbprint, the `kid` hookline uses
    /// when a tenant record sets no `key_id`; returns that `kid`.
    pub fn insert_with_thumbprint(&mut self, key: PrivateKey) -> String {
        let kid = key.thumbprint();
        self.keys.insert(kid.clone(), key);
        kid
    }

    /// The key held under `kid`.
    pub fn get(&self, kid: &str) -> Option<&PrivateKey> {
        self.keys.get(kid)
    }

    /// The key ids held, in order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The single key of a ring that holds exactly one.
    pub fn only(&self) -> Option<(&str, &PrivateKey)> {
        match self.keys.len() {
            1 => self
                .keys
                .iter()
                .next()
                .map(|(kid, key)| (kid.as_str(), key)),
            _ => None,
        }
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl FromIterator<PrivateKey> for KeyRing {
    /// A ring with each key under its thumbprint.
    fn from_iter<I: IntoIterator<Item = PrivateKey>>(keys: I) -> Self {
        let mut ring = KeyRing::new();
        for key in keys {
            ring.insert_with_thumbprint(key);
        }
        ring
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_keys;

    #[test]
    fn indexes_keys_by_thumbprint_or_explicit_kid() {
        let fixed = PrivateKey::parse(test_keys::RSA2048_PRIVATE).unwrap();
        let generated = test_keys::generated_2048().clone();
        let mut ring: KeyRing = [fixed.clone()].into_iter().collect();
        ring.insert("2026-11", generated.clone());
        assert_eq!(ring.len(), 2);
        assert_eq!(
            ring.get(&fixed.thumbprint()).unwrap().public_key(),
            fixed.public_key()
        );
        assert_eq!(
            ring.get("2026-11").unwrap().public_key(),
            generated.public_key()
        );
        assert!(ring.get("2026-12").is_none());
        assert!(ring.only().is_none());
        let kids: Vec<&str> = ring.kids().collect();
        assert!(kids.contains(&"2026-11"));
    }

    #[test]
    fn only_returns_the_single_key() {
        let mut ring = KeyRing::new();
        assert!(ring.is_empty() && ring.only().is_none());
        let kid = ring.insert_with_thumbprint(test_keys::generated_2048().clone());
        assert_eq!(ring.only().map(|(k, _)| k), Some(kid.as_str()));
    }
}

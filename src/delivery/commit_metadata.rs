//! The metadata committed with a partition's offset: which records above
//! the committed offset are already finished, which tenants are suspended
//! until when, and which owe the replay of parked dead letters before their
//! new events are delivered. Kafka keeps it with the offset, so whichever
//! replica owns the partition next neither delivers those records again nor
//! forgets a suspension.
//!
//! The form is compact JSON,
//! `{"v":1,"o":<offset>,"f":"<bitmap>","r":[[<tenant>,<dlq partition>,<dlq offset>],…],"s":[[<tenant>,<unix ms>],…]}`:
//! bit `i` of the base64url bitmap (least significant first in each byte)
//! says that offset `o + 1 + i` is finished. `o` repeats the committed
//! offset, so metadata that does not belong to it (the offset was reset by
//! hand) is recognised and ignored. Kafka refuses metadata above
//! `offset.metadata.max.bytes` (4096 by default), so the encoding stays
//! within [`MAX_BYTES`]: the bitmap fits whatever the window (at most
//! 10,000 offsets, 1,667 characters), then the owing tenants (each about
//! 40 bytes; more than fifty at once on one partition would mean fifty
//! operator suspensions being resumed together), then the suspended ones.
//! Tenants that do not fit are left out: a suspended one is suspended again
//! after its next failures; an owing one would have its new events
//! delivered before its parked ones are replayed, which is logged.
//!
//! Pure: no I/O, no clock.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// The most bytes of metadata written, below Kafka's default limit of 4096.
pub const MAX_BYTES: usize = 4000;

const VERSION: u32 = 1;

/// What a partition's commit carries besides its offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitMetadata {
    /// The committed offset this metadata belongs to.
    pub offset: i64,
    /// Finished records above `offset`, ascending.
    pub finished_above: Vec<i64>,
    /// Suspended tenants and the time of their next probe, Unix milliseconds.
    pub suspended: Vec<(String, i64)>,
    /// Tenants owing replays, with the newest parked dead letter's
    /// partition and offset.
    pub owed: Vec<(String, i32, i64)>,
}

/// Tenants that did not fit in the metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeftOut {
    pub owed: usize,
    pub suspended: usize,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    o: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    f: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    r: Vec<(String, i32, i64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    s: Vec<(String, i64)>,
}

impl CommitMetadata {
    /// Nothing worth committing besides the offset.
    pub fn is_empty(&self) -> bool {
        self.finished_above.is_empty() && self.suspended.is_empty() && self.owed.is_empty()
    }

    /// The metadata string, at most [`MAX_BYTES`] long; empty when there is
    /// nothing to say. Also returns how many tenants had to be left out.
    pub fn encode(&self) -> (String, LeftOut) {
        if self.is_empty() {
            return (String::new(), LeftOut::default());
        }
        let mut wire = Wire {
            v: VERSION,
            o: self.offset,
            f: bitmap(self.offset, &self.finished_above),
            r: Vec::new(),
            s: Vec::new(),
        };
        let mut text = to_json(&wire);
        if text.len() > MAX_BYTES {
            // Only a window beyond the configurable maximum gets here; the
            // records are then delivered again after a restart, as without
            // metadata.
            wire.f.clear();
            text = to_json(&wire);
        }
        let mut left_out = LeftOut::default();
        // Each entry costs its JSON plus a comma, and the first one of a
        // list its `,"r":[]` as well; measured, not guessed, because tenant
        // ids may need escaping.
        for entry in &self.owed {
            let cost = to_json(entry).len() + 7;
            if text.len() + cost > MAX_BYTES {
                left_out.owed += 1;
                continue;
            }
            wire.r.push(entry.clone());
            text = to_json(&wire);
        }
        for (tenant, probe) in &self.suspended {
            let cost = to_json(&(tenant, probe)).len() + 7;
            if text.len() + cost > MAX_BYTES {
                left_out.suspended += 1;
                continue;
            }
            wire.s.push((tenant.clone(), *probe));
            text = to_json(&wire);
        }
        (text, left_out)
    }

    /// Reads metadata written by [`CommitMetadata::encode`]; `None` for an
    /// empty string or anything else (another tool's metadata, a future
    /// version), which is then ignored.
    pub fn decode(text: &str) -> Option<Self> {
        if text.is_empty() {
            return None;
        }
        let wire: Wire = serde_json::from_str(text).ok()?;
        if wire.v != VERSION {
            return None;
        }
        let bits = URL_SAFE_NO_PAD.decode(wire.f.as_bytes()).ok()?;
        let finished_above = bits
            .iter()
            .enumerate()
            .flat_map(|(byte, &b)| {
                (0..8)
                    .filter(move |bit| b & (1 << bit) != 0)
                    .map(move |bit| wire.o + 1 + (byte * 8 + bit) as i64)
            })
            .collect();
        Some(Self {
            offset: wire.o,
            finished_above,
            suspended: wire.s,
            owed: wire.r,
        })
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Strings and integers always serialize.
    serde_json::to_string(value).expect("plain data serializes")
}

/// The base64url bitmap of `finished` (all above `offset`).
fn bitmap(offset: i64, finished: &[i64]) -> String {
    let Some(&last) = finished.last() else {
        return String::new();
    };
    let len = usize::try_from(last - offset).unwrap_or(0).div_ceil(8);
    let mut bits = vec![0u8; len];
    for &o in finished {
        if let Ok(i) = usize::try_from(o - offset - 1) {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    URL_SAFE_NO_PAD.encode(bits)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn nothing_to_say_is_an_empty_string() {
        let metadata = CommitMetadata {
            offset: 42,
            ..Default::default()
        };
        assert_eq!(metadata.encode(), (String::new(), LeftOut::default()));
        assert_eq!(CommitMetadata::decode(""), None);
    }

    #[test]
    fn finished_offsets_and_suspensions_survive_the_round_trip() {
        let metadata = CommitMetadata {
            offset: 1_000,
            finished_above: vec![1_001, 1_003, 1_009, 1_600],
            suspended: vec![
                ("acme".into(), 1_764_500_000_000),
                ("a \"quoted\" id".into(), 5),
            ],
            owed: vec![("globex".into(), 3, 77_000), ("acme".into(), 0, 12)],
        };
        let (text, left_out) = metadata.encode();
        assert_eq!(left_out, LeftOut::default());
        assert!(text.starts_with(r#"{"v":1,"o":1000,"f":""#), "{text}");
        assert_eq!(CommitMetadata::decode(&text), Some(metadata));
    }

    #[test]
    fn a_full_window_fits_the_limit() {
        let metadata = CommitMetadata {
            offset: i64::MAX / 2,
            finished_above: (1..=10_000).map(|i| i64::MAX / 2 + i).collect(),
            suspended: Vec::new(),
            owed: Vec::new(),
        };
        let (text, _) = metadata.encode();
        assert!(text.len() <= MAX_BYTES, "{}", text.len());
        assert_eq!(CommitMetadata::decode(&text), Some(metadata));
    }

    #[test]
    fn suspended_tenants_that_do_not_fit_are_left_out() {
        let metadata = CommitMetadata {
            offset: 0,
            finished_above: vec![5],
            suspended: (0..500).map(|i| (format!("tenant-{i:04}"), i)).collect(),
            owed: Vec::new(),
        };
        let (text, left_out) = metadata.encode();
        assert!(text.len() <= MAX_BYTES, "{}", text.len());
        let decoded = CommitMetadata::decode(&text).unwrap();
        assert_eq!(decoded.finished_above, [5]);
        assert_eq!(left_out.owed, 0);
        assert_eq!(decoded.suspended.len() + left_out.suspended, 500);
        assert!(decoded.suspended.len() > 100, "{}", decoded.suspended.len());
        assert_eq!(
            decoded.suspended[..],
            metadata.suspended[..decoded.suspended.len()]
        );
    }

    #[test]
    fn owing_tenants_come_before_suspended_ones_when_space_runs_out() {
        let metadata = CommitMetadata {
            offset: 0,
            finished_above: Vec::new(),
            suspended: (0..100).map(|i| (format!("suspended-{i:04}"), i)).collect(),
            owed: (0..100).map(|i| (format!("owing-{i:04}"), 1, i)).collect(),
        };
        let (text, left_out) = metadata.encode();
        assert!(text.len() <= MAX_BYTES, "{}", text.len());
        let decoded = CommitMetadata::decode(&text).unwrap();
        assert_eq!(decoded.owed, metadata.owed, "every owing tenant fits first");
        assert_eq!(left_out.owed, 0);
        assert_eq!(decoded.suspended.len() + left_out.suspended, 100);
        assert!(left_out.suspended > 0, "the rest did not fit");
    }

    #[test]
    fn foreign_or_future_metadata_is_ignored() {
        for text in [
            "some tool's note",
            r#"{"v":2,"o":1}"#,
            r#"{"v":1,"o":1,"f":"***"}"#,
        ] {
            assert_eq!(CommitMetadata::decode(text), None, "{text}");
        }
    }

    proptest! {
        #[test]
        fn any_set_of_finished_offsets_round_trips(
            offset in 0i64..1_000_000,
            gaps in proptest::collection::btree_set(1i64..10_001, 0..300),
        ) {
            let metadata = CommitMetadata {
                offset,
                finished_above: gaps.iter().map(|g| offset + g).collect(),
                suspended: Vec::new(),
                owed: Vec::new(),
            };
            let (text, _) = metadata.encode();
            prop_assert!(text.len() <= MAX_BYTES);
            let decoded = CommitMetadata::decode(&text).unwrap_or_default();
            prop_assert_eq!(decoded.finished_above, metadata.finished_above);
        }
    }
}

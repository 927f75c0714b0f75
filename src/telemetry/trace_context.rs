//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): an event
//! record's `traceparent` and `tracestate` headers, read by the rules of
//! the specification, and the delivery's own span in that trace.
//!
//! A delivery continues the event's trace as a child span: same trace id,
//! a span id of its own (one per delivery, so every attempt of it sends the
//! same one), the sampled flag carried over, `tracestate` passed on
//! unchanged. An event without a valid `traceparent` starts a new trace, as
//! an instrumented HTTP client does, and its `tracestate` is then dropped.
//!
//! Nothing here does I/O or draws random numbers: the caller passes the
//! random bytes in, so that parsing and child generation are tested
//! exhaustively.

/// Header name of the trace parent, on records and requests alike.
pub const TRACEPARENT: &str = "traceparent";
/// Header name of the vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// Length of a version-00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
const TRACEPARENT_LEN: usize = 55;
/// The specification's upper bound on list members in `tracestate`.
const MAX_TRACESTATE_MEMBERS: usize = 32;
/// The sampled bit of the trace flags.
const SAMPLED: u8 = 0x01;

/// A parsed `traceparent`: the caller's trace, its span, and its sampling
/// decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub sampled: bool,
}

impl TraceParent {
    /// Reads a `traceparent` value; `None` when the specification calls it
    /// invalid. Version `00` must be exactly 55 characters; a later version
    /// is read by the version-00 layout, and may only be longer when the
    /// 56th character is a dash. Hex digits are lowercase only; version
    /// `ff`, an all-zero trace id and an all-zero parent id are invalid.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < TRACEPARENT_LEN {
            return None;
        }
        let version = hex_byte(&value[0..2])?;
        match version {
            0xff => return None,
            0x00 if value.len() != TRACEPARENT_LEN => return None,
            _ if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' => return None,
            _ => {}
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        hex_into(&value[3..35], &mut trace_id)?;
        let mut parent_id = [0u8; 8];
        hex_into(&value[36..52], &mut parent_id)?;
        let flags = hex_byte(&value[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            sampled: flags & SAMPLED != 0,
        })
    }
}

/// The trace context of one delivery: its span in the event's trace (or in
/// a trace of its own), and the headers that carry it to the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTrace {
    pub trace_id: [u8; 16],
    /// This delivery's span; every attempt sends it as the parent id.
    pub span_id: [u8; 8],
    /// The event's span, when the record carried a valid `traceparent`.
    pub parent_id: Option<[u8; 8]>,
    pub sampled: bool,
    /// The `traceparent` to send, formatted once per delivery.
    traceparent: String,
    /// The event's `tracestate`, unchanged, when it was valid.
    tracestate: Option<String>,
}

impl DeliveryTrace {
    /// The delivery's context for a record whose `traceparent` and
    /// `tracestate` headers had the values given (every header of each
    /// name, in order; a header without a value is `None`).
    ///
    /// `random` supplies a new span id (its first 8 bytes) and, when the
    /// trace starts here, a new trace id (the other 16). A record with more
    /// than one `traceparent` is invalid, as an HTTP request with two is;
    /// several `tracestate` headers are one list, joined with commas.
    pub fn continue_from<'a>(
        traceparent: impl IntoIterator<Item = Option<&'a [u8]>>,
        tracestate: impl IntoIterator<Item = Option<&'a [u8]>>,
        random: [u8; 24],
    ) -> Self {
        let mut values = traceparent.into_iter();
        let parent = match (values.next(), values.next()) {
            (Some(Some(value)), None) => TraceParent::parse(value),
            _ => None,
        };
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&random[..8]);
        non_zero(&mut span_id);
        match parent {
            Some(parent) => Self::new(
                parent.trace_id,
                span_id,
                Some(parent.parent_id),
                parent.sampled,
                // The trace state is only read along a valid parent.
                combined_tracestate(tracestate),
            ),
            None => {
                let mut trace_id = [0u8; 16];
                trace_id.copy_from_slice(&random[8..]);
                non_zero(&mut trace_id);
                // A root span with the default sampler (always on) is
                // sampled; the endpoint's own sampler may still drop it.
                Self::new(trace_id, span_id, None, true, None)
            }
        }
    }

    fn new(
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent_id: Option<[u8; 8]>,
        sampled: bool,
        tracestate: Option<String>,
    ) -> Self {
        let mut traceparent = String::with_capacity(TRACEPARENT_LEN);
        traceparent.push_str("00-");
        push_hex(&mut traceparent, &trace_id);
        traceparent.push('-');
        push_hex(&mut traceparent, &span_id);
        traceparent.push_str(if sampled { "-01" } else { "-00" });
        Self {
            trace_id,
            span_id,
            parent_id,
            sampled,
            traceparent,
            tracestate,
        }
    }

    /// The `traceparent` header of the delivery's requests.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The `tracestate` header of the delivery's requests, when the event
    /// had a valid one.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The trace id as 32 lowercase hex digits (for logs).
    pub fn trace_id_hex(&self) -> &str {
        &self.traceparent[3..35]
    }

    /// The delivery's span id as 16 lowercase hex digits (for logs).
    pub fn span_id_hex(&self) -> &str {
        &self.traceparent[36..52]
    }
}

/// The `tracestate` list of every header given, joined with commas, when it
/// is valid; `None` when absent, empty or invalid. The specification lets a
/// vendor that cannot parse the list discard it whole, which is what
/// happens to a malformed one, to one with more than 32 members and to one
/// that names a key twice. A valid list is passed on as written.
pub fn combined_tracestate<'a>(
    values: impl IntoIterator<Item = Option<&'a [u8]>>,
) -> Option<String> {
    let mut combined = String::new();
    for value in values {
        let value = std::str::from_utf8(value.unwrap_or_default()).ok()?;
        if !combined.is_empty() {
            combined.push(',');
        }
        combined.push_str(value);
    }
    valid_tracestate(&combined).then_some(combined)
}

/// Whether `list` is a `tracestate` value by the specification's grammar,
/// with at least one member, at most 32 and no key twice.
fn valid_tracestate(list: &str) -> bool {
    let mut keys: Vec<&str> = Vec::new();
    for member in list.split(',') {
        // Optional white space (spaces and tabs) around members; empty
        // members are allowed and ignored.
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let Some((key, value)) = member.split_once('=') else {
            return false;
        };
        if !valid_key(key) || !valid_value(value) || keys.contains(&key) {
            return false;
        }
        keys.push(key);
        if keys.len() > MAX_TRACESTATE_MEMBERS {
            return false;
        }
    }
    !keys.is_empty()
}

/// `simple-key` (a lowercase letter, then up to 255 of `a-z 0-9 _ - * /`)
/// or `tenant-id@system-id` (up to 241 characters starting with a letter
/// or digit, then up to 14 starting with a letter).
fn valid_key(key: &str) -> bool {
    let rest = |s: &str| {
        s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/'))
    };
    match key.split_once('@') {
        None => {
            key.len() <= 256
                && key.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
                && rest(key)
        }
        Some((tenant, system)) => {
            (1..=241).contains(&tenant.len())
                && tenant
                    .as_bytes()
                    .first()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && rest(tenant)
                && (1..=14).contains(&system.len())
                && system
                    .as_bytes()
                    .first()
                    .is_some_and(u8::is_ascii_lowercase)
                && rest(system)
        }
    }
}

/// Up to 256 printable ASCII characters other than `,` and `=`, the last
/// one not a space.
fn valid_value(value: &str) -> bool {
    (1..=256).contains(&value.len())
        && value
            .bytes()
            .all(|b| matches!(b, 0x20..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e))
        && !value.ends_with(' ')
}

/// Two lowercase hex digits as a byte.
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let mut byte = [0u8; 1];
    hex_into(digits, &mut byte)?;
    Some(byte[0])
}

/// Lowercase hex digits into `out`, two per byte; `None` on any other
/// character (uppercase included, which the specification forbids).
fn hex_into(digits: &[u8], out: &mut [u8]) -> Option<()> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    for (pair, byte) in digits.chunks_exact(2).zip(out.iter_mut()) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// An all-zero id is invalid; random bytes are that with a chance of 2^-64
/// at most, and then the last bit is set.
fn non_zero(id: &mut [u8]) {
    if id.iter().all(|&b| b == 0)
        && let Some(last) = id.last_mut()
    {
        *last = 1;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const RANDOM: [u8; 24] = [
        1, 2, 3, 4, 5, 6, 7, 8, // span id
        9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, // trace id
    ];

    fn trace(parent: &[&[u8]], state: &[&[u8]]) -> DeliveryTrace {
        DeliveryTrace::continue_from(
            parent.iter().map(|v| Some(*v)),
            state.iter().map(|v| Some(*v)),
            RANDOM,
        )
    }

    #[test]
    fn a_valid_parent_is_read() {
        let parent = TraceParent::parse(PARENT).unwrap();
        assert_eq!(
            parent.trace_id,
            [
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36
            ]
        );
        assert_eq!(
            parent.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(parent.sampled);
        let unsampled = TraceParent::parse(&[&PARENT[..53], b"00"].concat()).unwrap();
        assert!(!unsampled.sampled);
        // Only the sampled bit counts; other flags are ignored.
        assert!(
            TraceParent::parse(&[&PARENT[..53], b"09"].concat())
                .unwrap()
                .sampled
        );
        assert!(
            !TraceParent::parse(&[&PARENT[..53], b"fe"].concat())
                .unwrap()
                .sampled
        );
    }

    #[test]
    fn invalid_parents_are_refused() {
        let cases: &[&[u8]] = &[
            b"",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            // Uppercase hex.
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            // All-zero ids.
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Version ff, or not hex.
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Version 00 with anything after it.
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
            // Wrong separators or lengths.
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701",
            // A later version longer than 55 without a dash after the flags.
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ];
        for case in cases {
            assert_eq!(
                TraceParent::parse(case),
                None,
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn a_later_version_is_read_by_the_version_00_layout() {
        let later =
            b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        let parent = TraceParent::parse(later).unwrap();
        assert_eq!(parent, TraceParent::parse(PARENT).unwrap());
        assert!(TraceParent::parse(&later[..55]).is_some());
    }

    #[test]
    fn the_child_keeps_the_trace_and_gets_a_span_of_its_own() {
        let child = trace(&[PARENT], &[b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"]);
        assert_eq!(
            child.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
        assert_eq!(child.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(child.span_id_hex(), "0102030405060708");
        assert_eq!(
            child.parent_id,
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert_eq!(
            child.tracestate(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        let unsampled = trace(&[&[&PARENT[..53], b"00"].concat()], &[]);
        assert!(unsampled.traceparent().ends_with("-00"));
        assert!(!unsampled.sampled);
        assert_eq!(unsampled.tracestate(), None);
    }

    #[test]
    fn without_a_valid_parent_a_new_sampled_trace_starts_and_the_state_is_dropped() {
        let expected = "00-090a0b0c0d0e0f101112131415161718-0102030405060708-01";
        for parents in [
            &[][..],
            &[&b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..]][..],
            // Two traceparent headers are invalid, even when both are valid.
            &[PARENT, PARENT][..],
        ] {
            let fresh = trace(parents, &[b"rojo=00f067aa0ba902b7"]);
            assert_eq!(fresh.traceparent(), expected);
            assert_eq!(fresh.parent_id, None);
            assert!(fresh.sampled);
            assert_eq!(fresh.tracestate(), None);
        }
        let empty = DeliveryTrace::continue_from([None], [], RANDOM);
        assert_eq!(empty.traceparent(), expected);
    }

    #[test]
    fn all_zero_random_bytes_still_give_valid_ids() {
        let fresh = DeliveryTrace::continue_from([], [], [0; 24]);
        assert!(TraceParent::parse(fresh.traceparent().as_bytes()).is_some());
    }

    #[test]
    fn tracestate_headers_are_one_list() {
        assert_eq!(
            combined_tracestate([Some(&b"a=1"[..]), Some(b"b=2 ,  ")]).as_deref(),
            Some("a=1,b=2 ,  ")
        );
        for valid in [
            "a=1",
            "a=1,,b=2",
            // Spaces after a value are white space around the member.
            "a=trailing ",
            " a=1 ,\tb=2",
            "tenant@system=v",
            "0tenant@vendor-1=v",
            "k_-*/9=with spaces inside",
            "k=!\"#$%&'()*+-./09:;<>?@AZ[\\]^_`az{|}~",
        ] {
            assert!(valid_tracestate(valid), "{valid}");
        }
        let too_many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        let just_enough = too_many[..32].join(",");
        assert!(valid_tracestate(&just_enough));
        for invalid in [
            "",
            " , ",
            "a",
            "A=1",
            "1a=1",
            "a=",
            "a=1=2",
            "a=1,a=2",
            "@system=v",
            "tenant@=v",
            "tenant@1system=v",
            "tenant@systemnamemuchtoolong=v",
            "a=new\nline",
            &too_many.join(","),
            &format!("{}=v", "k".repeat(257)),
            &format!("k={}", "v".repeat(257)),
        ] {
            assert!(!valid_tracestate(invalid), "{invalid}");
        }
        assert_eq!(combined_tracestate([None]), None);
        assert_eq!(combined_tracestate([Some(&b"a=\xff"[..])]), None);
    }

    fn hex(bytes: &[u8]) -> String {
        let mut s = String::new();
        push_hex(&mut s, bytes);
        s
    }

    proptest! {
        #[test]
        fn every_well_formed_parent_is_continued(
            trace_id in any::<[u8; 16]>(),
            parent_id in any::<[u8; 8]>(),
            flags in any::<u8>(),
            random in any::<[u8; 24]>(),
        ) {
            let value = format!("00-{}-{}-{flags:02x}", hex(&trace_id), hex(&parent_id));
            let valid = trace_id != [0; 16] && parent_id != [0; 8];
            let parsed = TraceParent::parse(value.as_bytes());
            prop_assert_eq!(parsed.is_some(), valid);
            let child = DeliveryTrace::continue_from(
                [Some(value.as_bytes())], [Some(&b"v=1"[..])], random,
            );
            // Whatever came in, what goes out is a valid version-00 parent.
            let sent = TraceParent::parse(child.traceparent().as_bytes()).unwrap();
            prop_assert_eq!(sent.trace_id, child.trace_id);
            prop_assert_eq!(sent.parent_id, child.span_id);
            prop_assert_eq!(child.traceparent().len(), TRACEPARENT_LEN);
            if valid {
                prop_assert_eq!(sent.trace_id, trace_id);
                prop_assert_eq!(child.parent_id, Some(parent_id));
                prop_assert_eq!(sent.sampled, flags & 1 == 1);
                prop_assert_eq!(child.tracestate(), Some("v=1"));
            } else {
                prop_assert_eq!(child.parent_id, None);
                prop_assert!(sent.sampled);
                prop_assert_eq!(child.tracestate(), None);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_parse_only_when_well_formed(
            value in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            if let Some(parent) = TraceParent::parse(&value) {
                prop_assert!(value.len() >= TRACEPARENT_LEN);
                let (trace_id, parent_id) = (hex(&parent.trace_id), hex(&parent.parent_id));
                prop_assert_eq!(&value[3..35], trace_id.as_bytes());
                prop_assert_eq!(&value[36..52], parent_id.as_bytes());
            }
            // The trace state that survives is safe to send as a header.
            if let Some(state) = combined_tracestate([Some(&value[..])]) {
                prop_assert!(state.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t'));
            }
        }

        #[test]
        fn spaced_lower_case_lists_are_valid(
            members in proptest::collection::vec(("[a-z][a-z0-9_*/-]{0,10}", "[!-+\\--<>-~]{1,10}"), 1..32),
        ) {
            let mut seen = std::collections::BTreeSet::new();
            let unique: Vec<String> = members
                .into_iter()
                .filter(|(k, _)| seen.insert(k.clone()))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let list = unique.join(" , ");
            prop_assert!(valid_tracestate(&list), "{}", list);
        }
    }
}

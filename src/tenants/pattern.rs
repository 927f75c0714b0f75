//! Event-type patterns: which events a tenant subscribes to (DESIGN §4).
//!
//! A pattern is literal text in which `*` matches any run of characters,
//! the empty run and dots included: `order.*` matches `order.created` and
//! `order.line.added`, `*.paid` matches `invoice.paid`, `*` matches
//! everything. There is no escape and no other wildcard, so every pattern a
//! tenant can write means what it looks like.
//!
//! Matching is linear in practice and never exponential: the literal pieces
//! between stars are searched left to right, each at its leftmost position
//! (greedy placement is optimal when `*` is the only wildcard), with no
//! backtracking and no regex engine.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Longest accepted pattern, in characters. Event types are short dotted
/// names; anything longer is a mistake, and the bound keeps the cost of a
/// match small whatever a tenant writes.
pub const MAX_PATTERN_CHARS: usize = 200;

/// A pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("event pattern is empty")]
    Empty,
    #[error("event pattern is {chars} characters long; the limit is {MAX_PATTERN_CHARS}")]
    TooLong { chars: usize },
    #[error(
        "event pattern contains the control character U+{code_point:04X} at character {position}"
    )]
    ControlCharacter { code_point: u32, position: usize },
}

/// One validated event-type pattern.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern {
    source: String,
}

impl Pattern {
    /// Validates a pattern: not empty, at most [`MAX_PATTERN_CHARS`]
    /// characters, no control characters (they cannot appear in a sensible
    /// event type and would garble logs and the tenant API).
    pub fn parse(source: &str) -> Result<Self, PatternError> {
        if source.is_empty() {
            return Err(PatternError::Empty);
        }
        let chars = source.chars().count();
        if chars > MAX_PATTERN_CHARS {
            return Err(PatternError::TooLong { chars });
        }
        if let Some((position, c)) = source.chars().enumerate().find(|(_, c)| c.is_control()) {
            return Err(PatternError::ControlCharacter {
                code_point: u32::from(c),
                position,
            });
        }
        Ok(Pattern {
            source: source.to_owned(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `event_type` matches the whole pattern.
    pub fn matches(&self, event_type: &str) -> bool {
        let mut pieces = self.source.split('*');
        // `split` always yields at least one piece.
        let prefix = pieces.next().unwrap_or_default();
        let Some(after_prefix) = event_type.strip_prefix(prefix) else {
            return false;
        };
        let Some(suffix) = pieces.next_back() else {
            // No star at all: the pattern is an exact name.
            return after_prefix.is_empty();
        };
        // Taking the suffix off what follows the prefix (rather than off
        // the whole event type) keeps the two from overlapping: `ab*ba`
        // must not match `aba`.
        let Some(mut between) = after_prefix.strip_suffix(suffix) else {
            return false;
        };
        for piece in pieces.filter(|piece| !piece.is_empty()) {
            match between.find(piece) {
                Some(at) => between = &between[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

impl TryFrom<String> for Pattern {
    type Error = PatternError;

    fn try_from(source: String) -> Result<Self, Self::Error> {
        Pattern::parse(&source)
    }
}

impl From<Pattern> for String {
    fn from(pattern: Pattern) -> Self {
        pattern.source
    }
}

/// Pattern lists shared between tenants: most tenants of a table subscribe
/// with one of a few lists, and a million copies of the same two patterns
/// cost about 130 MB. [`PatternSets::share`] returns the list held already
/// when an equal one is, so tenants hold a pointer to a shared list.
#[derive(Default)]
pub struct PatternSets {
    lists: Mutex<SharedLists>,
}

#[derive(Default)]
struct SharedLists {
    held: HashSet<Arc<[Pattern]>>,
    /// When `held` reaches this many lists, the ones no tenant holds any
    /// more are dropped (and the mark doubles from what remains).
    prune_at: usize,
}

/// Lists held before the first pruning.
const FIRST_PRUNE_AT: usize = 1024;

impl PatternSets {
    /// The shared list equal to `patterns`.
    pub fn share(&self, patterns: Vec<Pattern>) -> Arc<[Pattern]> {
        // A panic cannot leave the set half-updated in a way that matters
        // (at worst a list is not shared), so poisoning is moot.
        let mut lists = self
            .lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held) = lists.held.get(patterns.as_slice()) {
            return held.clone();
        }
        if lists.held.len() >= lists.prune_at.max(FIRST_PRUNE_AT) {
            lists.held.retain(|list| Arc::strong_count(list) > 1);
            lists.prune_at = (lists.held.len() * 2).max(FIRST_PRUNE_AT);
        }
        let list: Arc<[Pattern]> = patterns.into();
        lists.held.insert(list.clone());
        list
    }
}

impl fmt::Debug for PatternSets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatternSets").finish_non_exhaustive()
    }
}

/// The event types a tenant receives: every type when the tenant record has
/// no `events` field, otherwise those matching at least one pattern (so an
/// empty list receives nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Subscriptions(Option<Vec<Pattern>>);

impl Subscriptions {
    /// Every event type.
    pub fn all() -> Self {
        Subscriptions(None)
    }

    /// The event types matching at least one of `patterns`.
    pub fn only(patterns: Vec<Pattern>) -> Self {
        Subscriptions(Some(patterns))
    }

    /// Parses the `events` field of a tenant record: `None` when absent.
    pub fn parse<S: AsRef<str>>(patterns: Option<&[S]>) -> Result<Self, PatternError> {
        match patterns {
            None => Ok(Subscriptions::all()),
            Some(patterns) => patterns
                .iter()
                .map(|p| Pattern::parse(p.as_ref()))
                .collect::<Result<Vec<_>, _>>()
                .map(Subscriptions::only),
        }
    }

    /// The patterns, or `None` for "every event type".
    pub fn patterns(&self) -> Option<&[Pattern]> {
        self.0.as_deref()
    }

    /// Whether the tenant receives events of `event_type`.
    pub fn matches(&self, event_type: &str) -> bool {
        match &self.0 {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.matches(event_type)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(source: &str) -> Pattern {
        Pattern::parse(source).unwrap_or_else(|e| panic!("{source:?}: {e}"))
    }

    fn check(source: &str, matching: &[&str], not_matching: &[&str]) {
        let p = pattern(source);
        for event_type in matching {
            assert!(
                p.matches(event_type),
                "{source:?} should match {event_type:?}"
            );
        }
        for event_type in not_matching {
            assert!(
                !p.matches(event_type),
                "{source:?} should not match {event_type:?}"
            );
        }
    }

    /// The definition, written as directly as possible: exponential, so only
    /// for short inputs, but obviously right.
    fn reference_match(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|skip| reference_match(rest, &text[skip..])),
            Some((c, rest)) => text.first() == Some(c) && reference_match(rest, &text[1..]),
        }
    }

    #[test]
    fn exact_names_match_only_themselves() {
        check(
            "invoice.paid",
            &["invoice.paid"],
            &[
                "invoice.paid2",
                "invoice",
                "xinvoice.paid",
                "",
                "invoice_paid",
                "INVOICE.PAID",
            ],
        );
    }

    #[test]
    fn trailing_star_matches_any_suffix_with_dots() {
        check(
            "order.*",
            &["order.created", "order.", "order.line.added", "order.*"],
            &["order", "orders.created", "xorder.created", "order_created"],
        );
    }

    #[test]
    fn a_lone_star_matches_everything() {
        check("*", &["", "a", "order.created", "*", "a.b.c.d"], &[]);
        check("**", &["", "x.y"], &[]);
    }

    #[test]
    fn leading_star_matches_any_prefix() {
        check(
            "*.paid",
            &["invoice.paid", ".paid", "a.b.paid"],
            &["paid", "invoice.paid.late", "invoicepaid"],
        );
    }

    #[test]
    fn stars_in_between() {
        check(
            "a*b*c",
            &["abc", "aXbYc", "a.b.c", "abbbc", "acbc", "abcbc"],
            &["ab", "bc", "ac", "abcd", "xabc", "acb"],
        );
        check(
            "order.*.created",
            &["order.x.created", "order..created", "order.a.b.created"],
            &["order.created", "order.x.created.y"],
        );
    }

    #[test]
    fn prefix_and_suffix_do_not_overlap() {
        check("ab*ba", &["abba", "abXba", "ababa"], &["aba", "ab", "ba"]);
        check("a*a", &["aa", "aXa"], &["a"]);
    }

    #[test]
    fn consecutive_stars_act_as_one() {
        check("a**b", &["ab", "aXXb"], &["a", "b", "ba"]);
    }

    #[test]
    fn non_ascii_is_literal_and_whole_characters_match() {
        check(
            "commande.*é",
            &["commande.créé", "commande.é"],
            &["commande.e"],
        );
        check("ü*", &["über.event", "ü"], &["u"]);
    }

    #[test]
    fn matching_is_case_sensitive() {
        check("Order.*", &["Order.created"], &["order.created"]);
    }

    #[test]
    fn pathological_patterns_finish() {
        // A backtracking matcher takes exponential time here.
        let p = pattern(&format!("{}b", "a*".repeat(99)));
        let text = "a".repeat(100_000);
        assert!(!p.matches(&text));
        assert!(p.matches(&format!("{text}b")));
        let p = pattern(&"*a".repeat(100));
        assert!(!p.matches(&"a".repeat(99)));
        assert!(p.matches(&"a".repeat(100)));
        assert!(!p.matches(&"b".repeat(1_000_000)));
    }

    #[test]
    fn empty_pattern_is_refused() {
        assert_eq!(Pattern::parse(""), Err(PatternError::Empty));
    }

    #[test]
    fn long_patterns_are_refused_by_character_count() {
        assert!(Pattern::parse(&"a".repeat(MAX_PATTERN_CHARS)).is_ok());
        assert_eq!(
            Pattern::parse(&"a".repeat(201)),
            Err(PatternError::TooLong { chars: 201 })
        );
        // 200 two-byte characters are 400 bytes but within the limit.
        assert!(Pattern::parse(&"é".repeat(MAX_PATTERN_CHARS)).is_ok());
        assert!(
            PatternError::TooLong { chars: 201 }
                .to_string()
                .contains("limit is 200")
        );
    }

    #[test]
    fn control_characters_are_refused_with_their_position() {
        assert_eq!(
            Pattern::parse("order.\ncreated"),
            Err(PatternError::ControlCharacter {
                code_point: 0x0a,
                position: 6
            })
        );
        for bad in ["\0", "a\tb", "x\u{7f}", "\u{85}y", "é\u{1b}"] {
            assert!(
                matches!(
                    Pattern::parse(bad),
                    Err(PatternError::ControlCharacter { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            PatternError::ControlCharacter {
                code_point: 0x0a,
                position: 6
            }
            .to_string(),
            "event pattern contains the control character U+000A at character 6"
        );
    }

    #[test]
    fn spaces_and_punctuation_are_literal() {
        check("a b?c[d]", &["a b?c[d]"], &["a bXc[d]", "a b?cd"]);
    }

    #[test]
    fn pattern_round_trips_through_serde_as_a_string() {
        let p: Pattern = serde_json::from_str("\"order.*\"").unwrap();
        assert_eq!(p.as_str(), "order.*");
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"order.*\"");
        let e = serde_json::from_str::<Pattern>("\"\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("event pattern is empty"), "{e}");
    }

    #[test]
    fn missing_subscriptions_receive_everything() {
        let all = Subscriptions::all();
        assert!(all.matches("order.created"));
        assert!(all.matches(""));
        assert_eq!(all.patterns(), None);
        assert_eq!(Subscriptions::default(), all);
        assert_eq!(Subscriptions::parse::<&str>(None), Ok(Subscriptions::all()));
    }

    #[test]
    fn subscriptions_match_any_of_their_patterns() {
        let subs = Subscriptions::parse(Some(&["order.*", "invoice.paid"][..])).unwrap();
        assert!(subs.matches("order.created"));
        assert!(subs.matches("invoice.paid"));
        assert!(!subs.matches("invoice.created"));
        assert_eq!(subs.patterns().map(<[Pattern]>::len), Some(2));
    }

    #[test]
    fn an_empty_subscription_list_receives_nothing() {
        let none = Subscriptions::parse::<String>(Some(&[])).unwrap();
        assert!(!none.matches("order.created"));
        assert!(!none.matches(""));
    }

    #[test]
    fn subscriptions_refuse_any_invalid_pattern() {
        assert_eq!(
            Subscriptions::parse(Some(&["order.*", ""][..])),
            Err(PatternError::Empty)
        );
    }

    #[test]
    fn subscriptions_deserialize_from_an_optional_list() {
        #[derive(Deserialize)]
        struct Record {
            #[serde(default)]
            events: Subscriptions,
        }
        let absent: Record = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.events, Subscriptions::all());
        let null: Record = serde_json::from_str(r#"{"events": null}"#).unwrap();
        assert_eq!(null.events, Subscriptions::all());
        let listed: Record = serde_json::from_str(r#"{"events": ["order.*"]}"#).unwrap();
        assert!(listed.events.matches("order.paid"));
        assert!(!listed.events.matches("invoice.paid"));
        assert!(serde_json::from_str::<Record>(r#"{"events": ["ok", "bad\u0007"]}"#).is_err());
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference_definition(
            source in "[ab.*]{1,8}",
            text in "[ab.]{0,12}",
        ) {
            let pattern_chars: Vec<char> = source.chars().collect();
            let text_chars: Vec<char> = text.chars().collect();
            prop_assert_eq!(
                pattern(&source).matches(&text),
                reference_match(&pattern_chars, &text_chars),
                "pattern {:?} text {:?}", source, text
            );
        }

        #[test]
        fn agrees_with_the_reference_on_unicode(
            source in "[aé*\u{1F600}]{1,6}",
            text in "[aé\u{1F600}]{0,8}",
        ) {
            let pattern_chars: Vec<char> = source.chars().collect();
            let text_chars: Vec<char> = text.chars().collect();
            prop_assert_eq!(pattern(&source).matches(&text), reference_match(&pattern_chars, &text_chars));
        }

        #[test]
        fn every_literal_text_matches_itself(text in "[^*\\p{Cc}]{1,50}") {
            prop_assert!(pattern(&text).matches(&text));
        }
    }
}

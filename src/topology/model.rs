//! The topology file: which topics hookline uses, by role, and how each one
//! is set up. Parsing denies anything it does not know; validation then
//! enforces what Kafka and hookline need, so a [`Topology`] value is always
//! valid.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The shipped `topology/topics.toml`; it is the topology used when no other
/// file is named.
pub const EMBEDDED: &str = include_str!("../../topology/topics.toml");

/// How the embedded topology is named in messages.
pub const EMBEDDED_ORIGIN: &str = "embedded topology";

/// Kafka's limit on the length of a topic name.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// What a topic is for. Every topology declares all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Business events, keyed by tenant id.
    Events,
    /// Tenant records, compacted.
    Tenants,
    /// Dead letters.
    Dlq,
}

impl Role {
    /// Every role, in the order the file and the plan list them.
    pub const ALL: [Role; 3] = [Role::Events, Role::Tenants, Role::Dlq];

    /// The role's key in the topology file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Events => "events",
            Role::Tenants => "tenants",
            Role::Dlq => "dlq",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RoleVisitor;

        impl Visitor<'_> for RoleVisitor {
            type Value = Role;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a role: events, tenants or dlq")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Role, E> {
                Role::ALL
                    .into_iter()
                    .find(|role| role.as_str() == value)
                    .ok_or_else(|| {
                        E::custom(format!(
                            "unknown role `{value}`, expected events, tenants or dlq"
                        ))
                    })
            }
        }

        deserializer.deserialize_str(RoleVisitor)
    }
}

/// One declared topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// The Kafka topic name.
    pub name: String,
    /// Number of partitions, at least 1.
    pub partitions: u32,
    /// Copies of every partition, at least 1; `None` leaves it to the
    /// broker's `default.replication.factor` and skips the comparison.
    pub replication_factor: Option<u16>,
    /// Topic-level configs, values as Kafka spells them (strings).
    pub configs: BTreeMap<String, String>,
}

/// The validated topology: one topic per role, distinct names, a compacted
/// tenants topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub events: TopicSpec,
    pub tenants: TopicSpec,
    pub dlq: TopicSpec,
}

/// A topology that could not be loaded. The message is one line naming the
/// file and, for invalid content, the field.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{}: cannot read the topology file", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Topology {
    /// The topology shipped with hookline.
    pub fn embedded() -> Self {
        Self::parse(EMBEDDED, EMBEDDED_ORIGIN)
            .expect("the shipped topology is valid: a unit test parses it")
    }

    /// Reads and validates the file at `path`, or returns the embedded
    /// topology when there is none.
    pub fn load(path: Option<&Path>) -> Result<Self, TopologyError> {
        let Some(path) = path else {
            return Ok(Self::embedded());
        };
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates topology text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, TopologyError> {
        let invalid = |message: String| TopologyError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let mut raw: BTreeMap<Role, raw::Topic> =
            toml::from_str(text).map_err(|e| invalid(describe_toml_error(&e, text)))?;
        let mut take = |role: Role| {
            raw.remove(&role)
                .ok_or_else(|| {
                    invalid(format!(
                        "missing role `{role}`: a topology declares events, tenants and dlq"
                    ))
                })
                .and_then(|topic| topic.validate(role).map_err(invalid))
        };
        let topology = Topology {
            events: take(Role::Events)?,
            tenants: take(Role::Tenants)?,
            dlq: take(Role::Dlq)?,
        };
        topology.validate_across_roles().map_err(invalid)?;
        Ok(topology)
    }

    /// The topic declared for `role`.
    pub fn topic(&self, role: Role) -> &TopicSpec {
        match role {
            Role::Events => &self.events,
            Role::Tenants => &self.tenants,
            Role::Dlq => &self.dlq,
        }
    }

    /// Every declared topic with its role, in role order.
    pub fn topics(&self) -> impl Iterator<Item = (Role, &TopicSpec)> {
        Role::ALL.into_iter().map(|role| (role, self.topic(role)))
    }

    /// The names of the declared topics, in role order.
    pub fn names(&self) -> Vec<&str> {
        self.topics()
            .map(|(_, topic)| topic.name.as_str())
            .collect()
    }

    /// Rules that involve more than one role: every role needs a topic of its
    /// own, and Kafka refuses names that differ only by '.' versus '_'
    /// (they collide in its metric names).
    fn validate_across_roles(&self) -> Result<(), String> {
        let topics: Vec<(Role, &TopicSpec)> = self.topics().collect();
        for (i, (role, topic)) in topics.iter().enumerate() {
            for (earlier_role, earlier) in &topics[..i] {
                if topic.name == earlier.name {
                    return Err(format!(
                        "{role}.name: \"{}\" is already the name of the {earlier_role} topic; \
                         every role needs a topic of its own",
                        topic.name
                    ));
                }
                if topic.name.replace('.', "_") == earlier.name.replace('.', "_") {
                    return Err(format!(
                        "{role}.name: \"{}\" collides with the {earlier_role} topic \"{}\": \
                         Kafka treats '.' and '_' alike in topic names",
                        topic.name, earlier.name
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether a `cleanup.policy` value compacts and never deletes by age: the
/// only policy under which tenant records live for ever.
pub fn is_compact_only(cleanup_policy: &str) -> bool {
    let policies: BTreeSet<&str> = cleanup_policy
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    policies == BTreeSet::from(["compact"])
}

/// Checks a topic name against Kafka's rules; the error says what is wrong.
fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("\"{name}\" is not allowed as a topic name"));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(format!(
            "is {} characters long, Kafka allows at most {MAX_TOPIC_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "\"{name}\" contains {c:?}; Kafka topic names use only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Turns a TOML or serde error into one line: the line number (when the
/// error points somewhere in particular), the problem, and the table it is
/// about when the error points at a table header.
fn describe_toml_error(error: &toml::de::Error, text: &str) -> String {
    let message = error.message().trim_end();
    let Some(span) = error.span().filter(|s| !s.is_empty()) else {
        return message.to_string();
    };
    let line = text[..span.start].matches('\n').count() + 1;
    let pointed_at = text.get(span).unwrap_or_default().trim();
    if pointed_at.starts_with('[') {
        format!("line {line}: {message} in {pointed_at}")
    } else {
        format!("line {line}: {message}")
    }
}

mod raw {
    //! The topology as written, before validation.
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Topic {
        pub name: String,
        pub partitions: u32,
        pub replication_factor: Option<u16>,
        #[serde(default)]
        pub configs: BTreeMap<String, ConfigValue>,
    }

    impl Topic {
        /// Validates one role's table; errors name the field as
        /// `role.field`.
        pub fn validate(self, role: Role) -> Result<TopicSpec, String> {
            check_topic_name(&self.name).map_err(|problem| format!("{role}.name: {problem}"))?;
            if self.partitions == 0 {
                return Err(format!("{role}.partitions: must be at least 1"));
            }
            if self.partitions > i32::MAX as u32 {
                return Err(format!("{role}.partitions: must be at most {}", i32::MAX));
            }
            match self.replication_factor {
                Some(0) => {
                    return Err(format!(
                        "{role}.replication_factor: must be at least 1 \
                         (omit it to use the broker's default)"
                    ));
                }
                Some(rf) if rf > i16::MAX as u16 => {
                    return Err(format!(
                        "{role}.replication_factor: must be at most {}",
                        i16::MAX
                    ));
                }
                _ => {}
            }
            let mut configs = BTreeMap::new();
            for (key, value) in self.configs {
                if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!(
                        "{role}.configs: {key:?} is not a Kafka topic config name"
                    ));
                }
                configs.insert(key, value.0);
            }
            if role == Role::Tenants {
                match configs.get("cleanup.policy") {
                    None => {
                        return Err(
                            "tenants.configs: \"cleanup.policy\" is missing; the tenants topic \
                             must be compacted (\"cleanup.policy\" = \"compact\")"
                                .into(),
                        );
                    }
                    Some(policy) if !is_compact_only(policy) => {
                        return Err(format!(
                            "tenants.configs.\"cleanup.policy\": must be \"compact\", not \
                             \"{policy}\": tenant records must be kept for ever, never \
                             deleted by age"
                        ));
                    }
                    Some(_) => {}
                }
            }
            Ok(TopicSpec {
                name: self.name,
                partitions: self.partitions,
                replication_factor: self.replication_factor,
                configs,
            })
        }
    }

    /// A config value: Kafka takes strings, the file may spell numbers and
    /// booleans natively.
    #[derive(Debug)]
    pub struct ConfigValue(pub String);

    impl<'de> Deserialize<'de> for ConfigValue {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct ValueVisitor;

            impl Visitor<'_> for ValueVisitor {
                type Value = ConfigValue;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string, a number or a boolean")
                }

                fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigValue, E> {
                    Ok(ConfigValue(v.to_string()))
                }

                fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConfigValue, E> {
                    Ok(ConfigValue(v.to_string()))
                }

                fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConfigValue, E> {
                    Ok(ConfigValue(v.to_string()))
                }

                fn visit_f64<E: de::Error>(self, v: f64) -> Result<ConfigValue, E> {
                    Ok(ConfigValue(v.to_string()))
                }

                fn visit_bool<E: de::Error>(self, v: bool) -> Result<ConfigValue, E> {
                    Ok(ConfigValue(v.to_string()))
                }
            }

            deserializer.deserialize_any(ValueVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
[events]
name = "ev"
partitions = 4
replication_factor = 1
[events.configs]
"retention.ms" = 1000

[tenants]
name = "tn"
partitions = 1
[tenants.configs]
"cleanup.policy" = "compact"
"min.cleanable.dirty.ratio" = 0.1

[dlq]
name = "dl"
partitions = 4
"#;

    fn parse(text: &str) -> Result<Topology, String> {
        Topology::parse(text, "t.toml").map_err(|e| e.to_string())
    }

    fn err(text: &str) -> String {
        let e = parse(text).unwrap_err();
        assert!(e.starts_with("t.toml: "), "names the file: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    #[test]
    fn shipped_topology_is_valid_and_as_documented() {
        let topology = Topology::embedded();
        assert_eq!(topology.events.name, "events");
        assert_eq!(topology.events.partitions, 12);
        assert_eq!(topology.tenants.name, "tenants");
        assert_eq!(topology.tenants.configs["cleanup.policy"], "compact");
        for key in [
            "min.compaction.lag.ms",
            "segment.ms",
            "min.cleanable.dirty.ratio",
        ] {
            assert!(topology.tenants.configs.contains_key(key), "{key}");
        }
        assert_eq!(topology.dlq.name, "webhook.dlq");
        assert_eq!(topology.dlq.partitions, topology.events.partitions);
        let dlq_retention: u64 = topology.dlq.configs["retention.ms"].parse().unwrap();
        let events_retention: u64 = topology.events.configs["retention.ms"].parse().unwrap();
        assert!(dlq_retention > events_retention);
    }

    #[test]
    fn valid_file_parses_with_values_as_kafka_strings() {
        let topology = parse(VALID).unwrap();
        assert_eq!(topology.events.partitions, 4);
        assert_eq!(topology.events.replication_factor, Some(1));
        assert_eq!(topology.events.configs["retention.ms"], "1000");
        assert_eq!(topology.tenants.replication_factor, None);
        assert_eq!(topology.tenants.configs["min.cleanable.dirty.ratio"], "0.1");
        assert!(topology.dlq.configs.is_empty());
        assert_eq!(topology.names(), ["ev", "tn", "dl"]);
    }

    #[test]
    fn boolean_config_values_become_strings() {
        let text = VALID.replace("[dlq]\n", "[dlq.configs]\n\"preallocate\" = true\n[dlq]\n");
        let topology = parse(&text).unwrap();
        assert_eq!(topology.dlq.configs["preallocate"], "true");
    }

    #[test]
    fn unknown_role_is_named_with_its_line() {
        let e = err(&format!(
            "{VALID}\n[retries]\nname = \"r\"\npartitions = 1\n"
        ));
        assert!(e.contains("unknown role `retries`"), "{e}");
        assert!(e.contains("line 20"), "{e}");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = err(&VALID.replace(
            "partitions = 4\nreplication_factor",
            "partitons = 4\nreplication_factor",
        ));
        assert!(e.contains("unknown field `partitons`"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn missing_role_is_named() {
        let text = VALID.split("[dlq]").next().unwrap();
        let e = err(text);
        assert!(e.contains("missing role `dlq`"), "{e}");
    }

    #[test]
    fn missing_key_names_the_table() {
        let e = err(&VALID.replace("name = \"dl\"\n", ""));
        assert!(e.contains("missing field `name` in [dlq]"), "{e}");
    }

    #[test]
    fn zero_partitions_are_refused() {
        let e = err(&VALID.replace(
            "partitions = 4\nreplication_factor",
            "partitions = 0\nreplication_factor",
        ));
        assert!(e.contains("events.partitions: must be at least 1"), "{e}");
    }

    #[test]
    fn negative_partitions_are_refused_with_the_line() {
        let e = err(&VALID.replace("partitions = 1\n", "partitions = -1\n"));
        assert!(e.contains("line 11"), "{e}");
        assert!(e.contains("-1"), "{e}");
    }

    #[test]
    fn zero_replication_factor_is_refused() {
        let e = err(&VALID.replace("replication_factor = 1", "replication_factor = 0"));
        assert!(
            e.contains("events.replication_factor: must be at least 1"),
            "{e}"
        );
    }

    #[test]
    fn replication_factor_beyond_kafka_limit_is_refused() {
        let e = err(&VALID.replace("replication_factor = 1", "replication_factor = 40000"));
        assert!(
            e.contains("events.replication_factor: must be at most 32767"),
            "{e}"
        );
    }

    #[test]
    fn tenants_without_cleanup_policy_are_refused() {
        let e = err(&VALID.replace("\"cleanup.policy\" = \"compact\"\n", ""));
        assert!(
            e.contains("tenants.configs: \"cleanup.policy\" is missing"),
            "{e}"
        );
    }

    #[test]
    fn tenants_not_compacted_are_refused() {
        for policy in ["delete", "compact,delete", "delete, compact", ""] {
            let e = err(&VALID.replace(
                "\"cleanup.policy\" = \"compact\"",
                &format!("\"cleanup.policy\" = \"{policy}\""),
            ));
            assert!(
                e.contains("tenants.configs.\"cleanup.policy\": must be \"compact\""),
                "{e}"
            );
        }
    }

    #[test]
    fn compact_only_tolerates_spacing_and_repetition() {
        assert!(is_compact_only("compact"));
        assert!(is_compact_only(" compact ,compact"));
        assert!(!is_compact_only("compact,delete"));
        assert!(!is_compact_only("delete"));
        assert!(!is_compact_only(""));
    }

    #[test]
    fn invalid_topic_names_are_refused() {
        for (name, expected) in [
            ("", "must not be empty"),
            ("..", "not allowed"),
            ("events/x", "contains '/'"),
            ("évents", "contains 'é'"),
            ("with space", "contains ' '"),
        ] {
            let e = err(&VALID.replace("name = \"ev\"", &format!("name = \"{name}\"")));
            assert!(e.contains("events.name: "), "{e}");
            assert!(e.contains(expected), "{name}: {e}");
        }
        let long = "x".repeat(250);
        let e = err(&VALID.replace("name = \"ev\"", &format!("name = \"{long}\"")));
        assert!(e.contains("at most 249"), "{e}");
        let longest = "x".repeat(249);
        assert!(parse(&VALID.replace("name = \"ev\"", &format!("name = \"{longest}\""))).is_ok());
    }

    #[test]
    fn duplicate_names_are_refused_naming_both_roles() {
        let e = err(&VALID.replace("name = \"dl\"", "name = \"ev\""));
        assert!(
            e.contains("dlq.name: \"ev\" is already the name of the events topic"),
            "{e}"
        );
    }

    #[test]
    fn names_colliding_on_dot_and_underscore_are_refused() {
        let text = VALID
            .replace("name = \"ev\"", "name = \"a.b\"")
            .replace("name = \"dl\"", "name = \"a_b\"");
        let e = err(&text);
        assert!(
            e.contains("dlq.name: \"a_b\" collides with the events topic \"a.b\""),
            "{e}"
        );
    }

    #[test]
    fn config_values_of_other_types_are_refused() {
        let e = err(&VALID.replace("\"retention.ms\" = 1000", "\"retention.ms\" = [1000]"));
        assert!(e.contains("a string, a number or a boolean"), "{e}");
    }

    #[test]
    fn blank_config_names_are_refused() {
        let e = err(&VALID.replace("\"retention.ms\" = 1000", "\"retention ms\" = 1000"));
        assert!(
            e.contains("events.configs: \"retention ms\" is not a Kafka topic config name"),
            "{e}"
        );
    }

    #[test]
    fn toml_syntax_error_names_the_line() {
        let e = err(&VALID.replace("partitions = 1\n", "partitions = = 1\n"));
        assert!(e.contains("line 11"), "{e}");
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let e = Topology::load(Some(Path::new("/nonexistent/topics.toml"))).unwrap_err();
        assert!(matches!(e, TopologyError::Read { .. }));
        assert_eq!(
            e.to_string(),
            "/nonexistent/topics.toml: cannot read the topology file"
        );
    }

    #[test]
    fn no_path_means_the_embedded_topology() {
        assert_eq!(Topology::load(None).unwrap(), Topology::embedded());
    }
}

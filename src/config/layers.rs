//! The layers the configuration is merged from, and the way back from a
//! merged value to the layer that set it.
//!
//! Every layer is a figment provider under a name of its own, so that an
//! error can say whether a value came from the built-in defaults, the user's
//! file, an environment variable (by its name) or a flag.

use std::path::Path;
use std::sync::Arc;

use figment::error::Kind;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::error::{ConfigError, Origin, key_name};
use super::{DEFAULTS, ENV_PREFIX, Overrides};

const DEFAULTS_LAYER: &str = "built-in defaults";
const FILE_LAYER: &str = "TOML file";
const ENV_LAYER: &str = "environment variables";
const FLAG_LAYER: &str = "command-line flags";

/// One layer: a document and the metadata that names where it came from.
pub(super) struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Map::from([(Profile::Default, self.dict.clone())]))
    }
}

/// The shipped `config/hookline.toml`.
pub(super) fn defaults() -> Layer {
    let dict = toml::from_str(DEFAULTS)
        .expect("the embedded defaults are valid TOML: a unit test loads them");
    Layer {
        metadata: Metadata::named(DEFAULTS_LAYER),
        dict,
    }
}

/// The user's file. It is parsed here rather than by figment so that a
/// syntax error names the file and the line.
pub(super) fn file(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let dict = toml::from_str(&text).map_err(|e: toml::de::Error| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: e
            .span()
            .map(|span| text[..span.start].lines().count().max(1)),
        message: e.message().to_string(),
    })?;
    Ok(Layer {
        metadata: Metadata::from(FILE_LAYER, path),
        dict,
    })
}

/// The `HOOKLINE__SECTION__KEY` variables. Written out rather than figment's
/// `Env` so that the variables can be passed in (tests never touch the
/// process environment) and so that `kafka.properties` keys keep their dots:
/// `HOOKLINE__KAFKA__PROPERTIES__SASL.PASSWORD` sets `"sasl.password"`.
pub(super) fn environment(vars: impl IntoIterator<Item = (String, String)>) -> Layer {
    let mut layer = NamedValues::default();
    for (name, value) in vars {
        let Some(key) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path = key.split("__").map(str::to_ascii_lowercase).collect();
        // Parsing a string into a figment value never fails: what is not
        // a number, a boolean or an array stays a string.
        let value: Value = value.parse().unwrap_or_else(|_| Value::from(value));
        layer.insert(path, value, name);
    }
    layer.into_layer(ENV_LAYER, |path| {
        format!("{ENV_PREFIX}{}", path.join("__").to_ascii_uppercase())
    })
}

/// The command-line flags that set configuration keys.
pub(super) fn flags(overrides: &Overrides) -> Layer {
    let mut layer = NamedValues::default();
    if let Some(servers) = &overrides.bootstrap_servers {
        layer.insert(
            vec!["kafka".into(), "bootstrap_servers".into()],
            Value::from(servers.as_str()),
            "--bootstrap-servers".into(),
        );
    }
    // Every flag sets a key of its own, so no error names a key of this
    // layer that no flag set.
    layer.into_layer(FLAG_LAYER, |_| "(unknown flag)".into())
}

/// Values set one key at a time, each under the name the user gave it (an
/// environment variable, a flag), so that an error can quote that name.
#[derive(Default)]
struct NamedValues {
    dict: Dict,
    /// Key path → name, in the order set; a later entry wins, as its value
    /// does.
    names: Vec<(Vec<String>, String)>,
}

impl NamedValues {
    fn insert(&mut self, path: Vec<String>, value: Value, name: String) {
        insert_at(&mut self.dict, &path, value);
        self.names.push((path, name));
    }

    /// `unnamed` names a key that was not set itself, such as a section
    /// whose keys were.
    fn into_layer(self, layer: &'static str, unnamed: fn(&[&str]) -> String) -> Layer {
        let names = Arc::new(self.names);
        let metadata = Metadata::named(layer).interpolater(move |_: &Profile, path: &[&str]| {
            names
                .iter()
                .rev()
                .find(|(set, _)| set.iter().eq(path.iter()))
                .map_or_else(|| unnamed(path), |(_, name)| name.clone())
        });
        Layer {
            metadata,
            dict: self.dict,
        }
    }
}

fn insert_at(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_at(inner, rest, value);
            }
        }
    }
}

/// The layer that `metadata` describes, for the value at `path`.
fn origin(metadata: Option<&Metadata>, path: &[&str]) -> Origin {
    let Some(metadata) = metadata else {
        return Origin::Merged;
    };
    if let Some(Source::File(file)) = &metadata.source {
        return Origin::File(file.clone());
    }
    match metadata.name.as_ref() {
        DEFAULTS_LAYER => Origin::Defaults,
        ENV_LAYER => Origin::Env(metadata.interpolate(&Profile::Default, path)),
        FLAG_LAYER => Origin::Flag(metadata.interpolate(&Profile::Default, path)),
        _ => Origin::Merged,
    }
}

/// Turns the first error of an extraction into a [`ConfigError`] naming the
/// layer and the key.
pub(super) fn extraction_error(error: figment::Error) -> ConfigError {
    let mut path: Vec<&str> = error.path.iter().map(String::as_str).collect();
    let origin = origin(error.metadata.as_ref(), &path);
    match error.kind {
        // For an unknown key, figment's path already ends with the key.
        Kind::UnknownField(..) => ConfigError::UnknownKey {
            origin,
            key: key_name(&path),
        },
        Kind::MissingField(ref field) => {
            path.push(field);
            ConfigError::MissingKey {
                origin,
                key: key_name(&path),
            }
        }
        _ => ConfigError::Parse {
            origin,
            key: key_name(&path),
            source: Box::new(figment::Error::from(error.kind)),
        },
    }
}

/// Where the values of a merged configuration came from, so that a section
/// that refuses a value can name the layer that set it.
pub(super) struct Provenance<'a> {
    figment: &'a Figment,
}

impl<'a> Provenance<'a> {
    pub(super) fn new(figment: &'a Figment) -> Self {
        Self { figment }
    }

    /// An error for the value of `key` (dotted, as in the file), which breaks
    /// a rule: `problem` says which, in a few words.
    pub(super) fn invalid(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        self.invalid_at(&key.split('.').collect::<Vec<_>>(), problem)
    }

    /// [`Provenance::invalid`] for a key given as its path, for keys that
    /// contain dots themselves.
    pub(super) fn invalid_at(&self, path: &[&str], problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin(path),
            key: key_name(path),
            problem: problem.into(),
        }
    }

    fn origin(&self, path: &[&str]) -> Origin {
        let Some((first, rest)) = path.split_first() else {
            return Origin::Merged;
        };
        let root = self.figment.find_value(first).ok();
        let mut value = root.as_ref();
        for segment in rest {
            value = value
                .and_then(Value::as_dict)
                .and_then(|dict| dict.get(*segment));
        }
        let metadata = value.and_then(|value| self.figment.get_metadata(value.tag()));
        origin(metadata, path)
    }
}

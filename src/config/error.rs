//! Why a configuration could not be loaded, and where the value at fault
//! came from.

use std::fmt;
use std::path::PathBuf;

/// The layer a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The shipped `config/hookline.toml`, embedded in the binary.
    Defaults,
    /// The user's configuration file.
    File(PathBuf),
    /// An environment variable, by the name it was set under.
    Env(String),
    /// A command-line flag, by its name (`--bootstrap-servers`).
    Flag(String),
    /// A value that no single layer provided, such as the document as a
    /// whole.
    Merged,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Defaults => f.write_str("built-in defaults"),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Env(name) => write!(f, "environment variable {name}"),
            Self::Flag(name) => write!(f, "command-line flag {name}"),
            Self::Merged => f.write_str("configuration"),
        }
    }
}

/// A configuration that could not be loaded.
///
/// Its message is one line: where the value came from, its key, and what is
/// wrong with it. Where a parser found the problem, its own account is the
/// [`source`](std::error::Error::source) rather than part of the message, so
/// that `main`, which prints the whole chain on one line, says it once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` names a file that does not exist.
    #[error("{}: configuration file not found", path.display())]
    FileNotFound { path: PathBuf },

    /// The configuration file exists but could not be read.
    #[error("{}: cannot read the configuration file", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The configuration file is not TOML. The parser's message and line
    /// are kept rather than its error: that error quotes the file over
    /// several lines, which would break the one-line message.
    #[error("{}: invalid TOML{}: {message}", path.display(), line_suffix(*line))]
    Syntax {
        path: PathBuf,
        /// The line (from 1) the parser stopped at, when it says.
        line: Option<usize>,
        message: String,
    },

    /// A key that no section knows: a typo, or a key of another version.
    #[error("{origin}: {key}: unknown key")]
    UnknownKey { origin: Origin, key: String },

    /// A required key that no layer sets. The defaults set every key of the
    /// required sections, so only a key of an optional section can be
    /// missing.
    #[error("{origin}: {key}: missing key")]
    MissingKey { origin: Origin, key: String },

    /// A value that does not read as its key's type: a string for a
    /// number, a duration or URL that does not parse, a word that is not
    /// one of the choices.
    #[error("{origin}: {key}: cannot be parsed")]
    Parse {
        origin: Origin,
        key: String,
        /// What the deserializer said, without the key and the layer, which
        /// the message already names. Boxed because it is large and errors
        /// travel in every `Result` of loading.
        #[source]
        source: Box<figment::Error>,
    },

    /// A value of the right type that breaks a rule of its key, such as a
    /// zero timeout.
    #[error("{origin}: {key}: {problem}")]
    Invalid {
        origin: Origin,
        key: String,
        problem: String,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|n| format!(" (line {n})")).unwrap_or_default()
}

/// A key as the user writes it: sections joined with dots, a key that itself
/// contains dots (a librdkafka property) quoted, as in TOML.
pub(super) fn key_name<S: AsRef<str>>(path: &[S]) -> String {
    if path.is_empty() {
        return "(top level)".into();
    }
    let segments: Vec<String> = path
        .iter()
        .map(|segment| {
            let segment = segment.as_ref();
            if segment.contains('.') {
                format!("\"{segment}\"")
            } else {
                segment.to_string()
            }
        })
        .collect();
    segments.join(".")
}

//! What every layer shares about errors: printing one with its causes.

use std::error::Error;

/// Renders an error and its `source()` chain as one line, `outer: inner:
/// innermost`, the way `anyhow` prints `{:#}`. Error enums keep their cause
/// as a source rather than repeating it in their message, so the chain is
/// what tells an operator (or a receiver's caller) what actually went wrong.
pub fn error_chain(error: &dyn Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_joins_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] Middle);
        #[derive(Debug, thiserror::Error)]
        #[error("middle")]
        struct Middle(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("inner")]
        struct Inner;
        assert_eq!(error_chain(&Outer(Middle(Inner))), "outer: middle: inner");
        assert_eq!(error_chain(&Inner), "inner");
    }
}

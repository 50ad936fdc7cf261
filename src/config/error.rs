//! A configuration mistake, with the path of the setting and the reason.

use std::{error::Error, fmt};

/// What is wrong with a configuration, and where: `path` is the setting in
/// the file (`backends[1].breaker.failure_rate`; empty for the file as a
/// whole) and the message says why, in the words of the builder that
/// checks the setting. Never contains an API key: keys are read only from
/// the environment, and only the variable's name is ever shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    path: String,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The setting, as a path into the file (`backends[0].name`); empty
    /// when the mistake is not in one setting (a syntax error).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Why the setting is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl Error for ConfigError {}

/// serde's message for an unknown key or variant, with a "did you mean"
/// when one of the expected names is close to it. serde words these
/// messages itself (`unknown field `x`, expected one of `a`, `b``), so the
/// names read from it are exactly the ones the structs accept.
pub(crate) fn explain_unknown(message: &str) -> Option<String> {
    let (kind, rest) = if let Some(rest) = message.strip_prefix("unknown field `") {
        ("key", rest)
    } else if let Some(rest) = message.strip_prefix("unknown variant `") {
        ("value", rest)
    } else {
        return None;
    };
    let (name, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest
        .split_once("expected")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let suggestion = closest(name, &expected);
    let known = if expected.is_empty() {
        "none are allowed here".to_owned()
    } else {
        format!("expected one of {}", expected.join(", "))
    };
    Some(match suggestion {
        Some(close) => format!("unknown {kind} `{name}` (did you mean `{close}`?)"),
        None => format!("unknown {kind} `{name}`; {known}"),
    })
}

/// The expected name closest to `name`, if it is close: at most a third of
/// its characters (at least one) differ, transpositions counting once.
fn closest<'a>(name: &str, expected: &[&'a str]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    expected
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_key_is_suggested() {
        let message =
            "unknown field `failur_rate`, expected one of `failure_rate`, `minimum_calls`";
        assert_eq!(
            explain_unknown(message).as_deref(),
            Some("unknown key `failur_rate` (did you mean `failure_rate`?)")
        );
    }

    #[test]
    fn a_far_key_lists_what_is_allowed() {
        let message = "unknown field `colour`, expected `name` or `provider`";
        assert_eq!(
            explain_unknown(message).as_deref(),
            Some("unknown key `colour`; expected one of name, provider")
        );
    }

    #[test]
    fn an_unknown_variant_is_suggested_too() {
        let message = "unknown variant `antropic`, expected one of `openai`, `anthropic`";
        assert_eq!(
            explain_unknown(message).as_deref(),
            Some("unknown value `antropic` (did you mean `anthropic`?)")
        );
        assert_eq!(explain_unknown("invalid type: string"), None);
    }
}

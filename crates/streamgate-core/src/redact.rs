//! Removing credentials from text before it leaves the library.
//!
//! A provider's 401 body may echo the API key, a base URL may carry one in a
//! `key=` query parameter, a logged request has its `Authorization` header.
//! Every error message, body excerpt and `Debug` rendering that may hold such
//! text passes through [`redact`], which replaces:
//!
//! - every occurrence of a known secret (at least [`MIN_SECRET_LEN`] bytes);
//! - the token after `Bearer` or `Basic` (at least [`MIN_TOKEN_LEN`] bytes);
//! - the value after `api-key`, `api_key` or `apikey` (so also `x-api-key`,
//!   `x-goog-api-key`) and `authorization` followed by `:` or `=`;
//! - the value of a `key=` query parameter (after `?` or `&`);
//! - the user information of a URL (`https://user:password@host`).
//!
//! Names match without regard to case. A value runs up to the next
//! whitespace, quote, `,`, `;`, `&`, `#` or bracket. The scan is linear in the
//! text and allocates only when something is replaced.

use std::borrow::Cow;

/// What a credential is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Known secrets shorter than this are not searched for (a one-letter "key"
/// would blank out all text), though the patterns above still apply.
pub const MIN_SECRET_LEN: usize = 4;

/// The shortest token after `Bearer` or `Basic` that counts as a credential.
pub const MIN_TOKEN_LEN: usize = 8;

/// `text` with credentials replaced by [`REDACTED`] (see the
/// [module docs](self)); `known` are secrets to remove wherever they appear,
/// such as the client's API key.
///
/// ```
/// use streamgate_core::redact::redact;
///
/// let body = r#"{"error":"Incorrect API key provided: sk-live-1234"}"#;
/// assert_eq!(
///     redact(body, &["sk-live-1234"]),
///     r#"{"error":"Incorrect API key provided: <redacted>"}"#
/// );
/// assert_eq!(redact("authorization: Bearer abc.def.ghi", &[]), "authorization: Bearer <redacted>");
/// assert_eq!(redact("https://h/v1?alt=sse&key=AIza9", &[]), "https://h/v1?alt=sse&key=<redacted>");
/// assert_eq!(redact("nothing to hide", &[]), "nothing to hide");
/// ```
pub fn redact<'a>(text: &'a str, known: &[&str]) -> Cow<'a, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    // Bytes before `copied` are already in `out` (or need no change).
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let found = known_secret_at(bytes, i, known)
            .map(|len| (i, i + len))
            .or_else(|| pattern_value_at(bytes, i));
        match found {
            Some((start, end)) => {
                let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
                // Every boundary is next to an ASCII byte or the text's ends,
                // so these are character boundaries.
                buf.push_str(&text[copied..start]);
                buf.push_str(REDACTED);
                copied = end;
                i = end;
            }
            None => i += 1,
        }
    }
    match out {
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            Cow::Owned(buf)
        }
        None => Cow::Borrowed(text),
    }
}

/// [`redact`] into an owned string, reusing `text` when nothing changes.
pub fn redact_owned(text: String, known: &[&str]) -> String {
    match redact(&text, known) {
        Cow::Borrowed(_) => text,
        Cow::Owned(redacted) => redacted,
    }
}

fn known_secret_at(bytes: &[u8], i: usize, known: &[&str]) -> Option<usize> {
    known
        .iter()
        .map(|s| s.as_bytes())
        .filter(|s| s.len() >= MIN_SECRET_LEN)
        .find(|s| bytes[i..].starts_with(s))
        .map(<[u8]>::len)
}

/// Whether `b` can be part of a credential value.
fn is_value_byte(b: u8) -> bool {
    !(b.is_ascii_whitespace()
        || matches!(
            b,
            b'"' | b'\''
                | b','
                | b';'
                | b'&'
                | b'#'
                | b'<'
                | b'>'
                | b'('
                | b')'
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b'\\'
        ))
}

fn starts_with_ignore_case(bytes: &[u8], at: usize, word: &[u8]) -> bool {
    bytes
        .get(at..at + word.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(word))
}

/// The end of the credential value starting at `at`, if there is one.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    let len = bytes[at..]
        .iter()
        .take_while(|b| is_value_byte(**b))
        .count();
    (len > 0).then_some(at + len)
}

fn skip(bytes: &[u8], mut at: usize, what: impl Fn(u8) -> bool) -> usize {
    while bytes.get(at).is_some_and(|b| what(*b)) {
        at += 1;
    }
    at
}

/// The span of a credential value that a pattern starting at `i` names.
fn pattern_value_at(bytes: &[u8], i: usize) -> Option<(usize, usize)> {
    let first = bytes[i].to_ascii_lowercase();
    let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
    // `Bearer TOKEN`, `Basic TOKEN`.
    if boundary && (first == b'b') {
        for scheme in [&b"bearer"[..], b"basic"] {
            if starts_with_ignore_case(bytes, i, scheme) {
                let after = i + scheme.len();
                let start = skip(bytes, after, |b| b == b' ' || b == b'\t');
                if start > after {
                    // Prose ("the bearer of bad news") has short words after
                    // the scheme; tokens are long.
                    if let Some(end) =
                        value_end(bytes, start).filter(|e| e - start >= MIN_TOKEN_LEN)
                    {
                        return Some((start, end));
                    }
                }
            }
        }
    }
    // `api-key: VALUE`, `"x-api-key":"VALUE"`, `authorization=VALUE`.
    if first == b'a' {
        for name in [&b"api-key"[..], b"api_key", b"apikey", b"authorization"] {
            if starts_with_ignore_case(bytes, i, name) {
                let at = skip(bytes, i + name.len(), |b| matches!(b, b'"' | b'\'' | b' '));
                if matches!(bytes.get(at), Some(b':' | b'=')) {
                    let start = skip(bytes, at + 1, |b| matches!(b, b'"' | b'\'' | b' '));
                    let is_scheme = |s: &[u8]| {
                        starts_with_ignore_case(bytes, start, s)
                            && !bytes
                                .get(start + s.len())
                                .is_some_and(|b| is_value_byte(*b))
                    };
                    // `authorization: Bearer X`: the scheme rule takes the token.
                    if is_scheme(b"bearer") || is_scheme(b"basic") {
                        return None;
                    }
                    if let Some(end) = value_end(bytes, start) {
                        return Some((start, end));
                    }
                }
            }
        }
    }
    // `?key=VALUE`, `&key=VALUE`.
    if matches!(first, b'?' | b'&') && starts_with_ignore_case(bytes, i + 1, b"key=") {
        let start = i + 5;
        if let Some(end) = bytes.get(start).and(value_end(bytes, start)) {
            return Some((start, end));
        }
    }
    // `scheme://user:password@host`.
    if first == b':' && bytes.get(i + 1..i + 3) == Some(b"//") {
        let start = i + 3;
        let authority = bytes[start..]
            .iter()
            .take_while(|b| is_value_byte(**b) && !matches!(b, b'/' | b'?'))
            .count();
        if let Some(at) = bytes[start..start + authority]
            .iter()
            .rposition(|b| *b == b'@')
        {
            if at > 0 {
                return Some((start, start + at));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secret_is_removed_everywhere() {
        assert_eq!(
            redact("key sk-123456 and again sk-123456.", &["sk-123456"]),
            "key <redacted> and again <redacted>."
        );
    }

    #[test]
    fn too_short_known_secrets_are_not_searched() {
        assert_eq!(redact("a b c", &["a", ""]), "a b c");
    }

    #[test]
    fn header_values_are_removed_in_any_rendering() {
        for (text, want) in [
            ("x-api-key: sk-ant-1", "x-api-key: <redacted>"),
            (
                "\"x-goog-api-key\": \"AIza-2\"",
                "\"x-goog-api-key\": \"<redacted>\"",
            ),
            ("api-key=azure3 rest", "api-key=<redacted> rest"),
            ("API_KEY=\"x4\"", "API_KEY=\"<redacted>\""),
            ("authorization: token5", "authorization: <redacted>"),
            (
                "Authorization: Bearer sk-66666",
                "Authorization: Bearer <redacted>",
            ),
            (
                "\"authorization\": \"Basic dXNlcg==\"",
                "\"authorization\": \"Basic <redacted>\"",
            ),
            ("bearer\tabcdefgh", "bearer\t<redacted>"),
        ] {
            assert_eq!(redact(text, &[]), want, "{text}");
        }
    }

    #[test]
    fn key_query_parameters_and_url_user_info_are_removed() {
        assert_eq!(
            redact("https://u:p4ss@host:8/v1?key=AIza&alt=sse", &[]),
            "https://<redacted>@host:8/v1?key=<redacted>&alt=sse"
        );
        assert_eq!(redact("?monkey=1&keys=2", &[]), "?monkey=1&keys=2");
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        let text = "the bearer of bad news; basic facts; an api key was wrong";
        assert!(matches!(redact(text, &[]), Cow::Borrowed(_)));
        assert!(matches!(redact("http://host/v1", &[]), Cow::Borrowed(_)));
    }

    #[test]
    fn multibyte_text_around_secrets_stays_valid() {
        assert_eq!(
            redact("é Bearer tökén-tökén é", &["zzzz"]),
            "é Bearer <redacted> é"
        );
    }
}

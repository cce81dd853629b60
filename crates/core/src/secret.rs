//! Secrets in configuration and URLs, kept out of logs, errors and endpoints' output.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A password, token or key from the configuration. Its `Debug` and `Display` never show it;
/// [`Secret::expose`] is the one way to read it, where it is handed to a client library.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `url` with the secret of its user information replaced by `***`: `scheme://user:***@host`
/// keeps the user, a lone password (`redis://:PASS@host`) becomes `***`, and so does a lone
/// name where NATS takes it for a token (`nats://TOKEN@host`). Elsewhere a lone name is a user
/// (`postgres://postgres@host`) and stays. A URL without user information comes back as it is.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    // The authority ends at the first '/', '?' or '#' after the scheme.
    let rest = &url[scheme_end..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let token_scheme = ["nats://", "tls://", "ws://", "wss://"]
        .iter()
        .any(|s| url[..scheme_end].eq_ignore_ascii_case(s));
    let shown = match userinfo.split_once(':') {
        Some((user, _)) if !user.is_empty() => format!("{user}:***"),
        Some(_) => "***".to_owned(),
        None if token_scheme => "***".to_owned(),
        None => return url.to_owned(),
    };
    format!("{}{shown}{}", &url[..scheme_end], &url[scheme_end + at..])
}

/// The user and password in `url`'s user information, percent-decoded, and the URL without
/// them: for clients that take credentials apart from the URL.
pub fn split_credentials(url: &str) -> (String, Option<(String, Option<String>)>) {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return (url.to_owned(), None);
    };
    let rest = &url[scheme_end..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_len].rfind('@') else {
        return (url.to_owned(), None);
    };
    let userinfo = &rest[..at];
    let bare = format!("{}{}", &url[..scheme_end], &rest[at + 1..]);
    let creds = match userinfo.split_once(':') {
        Some((user, pass)) => (percent_decode(user), Some(percent_decode(pass))),
        None => (percent_decode(userinfo), None),
    };
    (bare, Some(creds))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("nats://s3cr3t@h:4222"), "nats://***@h:4222");
        assert_eq!(redact_url("redis://:pw@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(
            redact_url("postgres://u:p%40ss@h/db?x=a@b"),
            "postgres://u:***@h/db?x=a@b"
        );
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
        assert_eq!(
            redact_url("postgres://postgres@h/test"),
            "postgres://postgres@h/test"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn credentials_come_apart_from_the_url() {
        assert_eq!(
            split_credentials("nats://u:p%40ss@h:4222"),
            (
                "nats://h:4222".to_owned(),
                Some(("u".to_owned(), Some("p@ss".to_owned())))
            )
        );
        assert_eq!(
            split_credentials("nats://tok@h"),
            ("nats://h".to_owned(), Some(("tok".to_owned(), None)))
        );
        assert_eq!(split_credentials("nats://h"), ("nats://h".to_owned(), None));
    }

    #[test]
    fn a_secret_never_shows() {
        let s = Secret::new("hunter22");
        assert!(!format!("{s:?} {s}").contains("hunter22"));
        assert_eq!(s.expose(), "hunter22");
    }
}

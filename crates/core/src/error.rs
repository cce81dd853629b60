//! Error helpers shared by the adapters.

/// An error's message followed by those of its sources (each once), so that what a server or a
/// driver said is not lost behind a generic "connection failed".
///
/// # Examples
/// ```
/// use std::io;
/// let inner = io::Error::new(io::ErrorKind::ConnectionRefused, "refused by 127.0.0.1:1");
/// let outer = io::Error::other(inner);
/// assert_eq!(prescient_core::error_chain(&outer), "refused by 127.0.0.1:1");
/// ```
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connect failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn sources_follow_the_message() {
        let e = Outer(std::io::Error::other("no route to host"));
        assert_eq!(error_chain(&e), "connect failed: no route to host");
    }
}

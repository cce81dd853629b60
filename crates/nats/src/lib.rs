//! Prescient's NATS JetStream adapters: [`NatsSource`], a durable pull consumer implementing
//! [`EventSource`](prescient_core::EventSource), and [`NatsSink`], a pipelined JetStream publisher
//! implementing [`EventSink`](prescient_core::EventSink).
//!
//! **Wire format:** a message body is the JSON of a [`prescient_core::Event`]. A body that does
//! not decode is delivered as a [`MalformedMessage`](prescient_core::MalformedMessage), and its
//! [`Ack::dead_letter`](prescient_core::Ack::dead_letter) republishes the raw body to the
//! dead-letter subject with the header [`ERROR_HEADER`] (`Prescient-Error: <reason>`), where a
//! dead-letter stream keeps it for inspection, and then acks the original.
//!
//! **Delivery guarantee:** at least once. The consumer uses the explicit ack policy: a message
//! that is not acked within `ack_wait` (because the consumer crashed, or never got to it) is
//! delivered again, with [`Delivery::attempt`](prescient_core::Delivery::attempt) set from the
//! server's delivery count.
//!
//! **Reconnection:** async-nats reconnects by itself, forever, and logs through the event
//! callback here (`warn!` on disconnect, `info!` on reconnect). While the server is gone,
//! [`NatsSource::next`](prescient_core::EventSource::next) does not hang: the pull requests carry
//! an idle heartbeat, and when two heartbeats are missed `next` returns
//! [`SourceError::Unavailable`](prescient_core::SourceError::Unavailable). The next call starts a
//! fresh pull, so a caller that retries with backoff resumes once the server is back.
//!
//! **Authentication:** [`NatsAuth`] carries a user and password, a token, a credentials file
//! (JWT and NKey), and TLS settings. A user and password (or a lone token) in the URL are used
//! too. URLs are logged and reported with their secrets redacted.

mod sink;
mod source;

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use prescient_core::error_chain;
use prescient_core::{Secret, SourceError, redact_url, split_credentials};
use tracing::{info, warn};

pub use sink::{NatsSink, NatsSinkOptions};
pub use source::{NatsSource, NatsSourceOptions};

/// The header that carries the reason of a dead-lettered message.
pub const ERROR_HEADER: &str = "Prescient-Error";

/// The header that carries the subject a dead-lettered message was first published to.
pub const ORIGINAL_SUBJECT_HEADER: &str = "Prescient-Original-Subject";

/// The default server URL.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// Why a NATS operation failed. Converts into [`SourceError`].
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The options are invalid.
    #[error("invalid NATS options: {0}")]
    Config(String),
    /// The server cannot be reached, or did not answer in time.
    #[error("NATS unavailable: {0}")]
    Unavailable(String),
    /// A JetStream API call (stream or consumer management) failed.
    #[error("JetStream {what} failed: {error}")]
    JetStream {
        /// What was attempted.
        what: &'static str,
        /// The error, with its sources.
        error: String,
    },
}

impl From<NatsError> for SourceError {
    fn from(e: NatsError) -> Self {
        match e {
            NatsError::Config(m) => SourceError::Config(m),
            e @ NatsError::Unavailable(_) => SourceError::Unavailable(e.to_string()),
            e @ NatsError::JetStream { .. } => SourceError::Unavailable(e.to_string()),
        }
    }
}

/// How a client proves who it is to a server that requires it, and how it uses TLS. Settings
/// here win over credentials in the URL.
#[derive(Debug, Clone, Default)]
pub struct NatsAuth {
    /// The user, with [`NatsAuth::password`].
    pub user: Option<String>,
    /// The password of [`NatsAuth::user`].
    pub password: Option<Secret>,
    /// An authentication token.
    pub token: Option<Secret>,
    /// A credentials file (a user JWT and its NKey seed), as `nsc` writes it.
    pub creds_file: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for the server's certificate.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM), with [`NatsAuth::tls_key`], for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Refuse to connect without TLS.
    pub tls_required: bool,
}

impl NatsAuth {
    /// Options carrying these credentials (or those in `url`), and the URL without them.
    async fn apply(
        &self,
        url: &str,
        mut opts: async_nats::ConnectOptions,
    ) -> Result<(String, async_nats::ConnectOptions), NatsError> {
        let (bare, in_url) = split_credentials(url);
        if self.password.is_some() && self.user.is_none() {
            return Err(NatsError::Config("a NATS password needs its user".into()));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(NatsError::Config(
                "a NATS client certificate needs its key, and a key its certificate".into(),
            ));
        }
        if let Some(path) = &self.creds_file {
            opts = opts.credentials_file(path).await.map_err(|e| {
                NatsError::Config(format!(
                    "cannot read the NATS credentials file {}: {e}",
                    path.display()
                ))
            })?;
        } else if let Some(user) = &self.user {
            let pass = self
                .password
                .as_ref()
                .map(Secret::expose)
                .unwrap_or_default();
            opts = opts.user_and_password(user.clone(), pass.to_owned());
        } else if let Some(token) = &self.token {
            opts = opts.token(token.expose().to_owned());
        } else if let Some((user, pass)) = in_url {
            opts = match pass {
                Some(pass) => opts.user_and_password(user, pass),
                None => opts.token(user),
            };
        }
        if let Some(ca) = &self.tls_ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        if self.tls_required || self.tls_ca.is_some() || self.tls_cert.is_some() {
            opts = opts.require_tls(true);
        }
        Ok((bare, opts))
    }
}

/// Connects a client that logs its connection events.
pub(crate) async fn connect_client(
    url: &str,
    auth: &NatsAuth,
    name: &str,
    timeout: Duration,
) -> Result<async_nats::Client, NatsError> {
    let shown = redact_url(url);
    let logged = shown.clone();
    let opts = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .event_callback(move |event| {
            let url = logged.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        info!(message = "NATS connected.", %url);
                    }
                    async_nats::Event::Disconnected => {
                        warn!(message = "NATS disconnected, reconnecting.", %url);
                    }
                    other => {
                        warn!(message = "NATS connection event.", %url, event = %other);
                    }
                }
            }
        });
    let (bare, opts) = auth.apply(url, opts).await?;
    match tokio::time::timeout(timeout.saturating_mul(2), opts.connect(bare.as_str())).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(NatsError::Unavailable(format!(
            "cannot connect to {shown}: {}",
            error_chain(&e)
        ))),
        Err(_) => Err(NatsError::Unavailable(format!(
            "connecting to {shown} timed out"
        ))),
    }
}

/// Header values cannot hold line breaks; keep the reason on one line.
pub(crate) fn header_safe(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_in_a_header() {
        assert_eq!(header_safe("bad\r\njson\there"), "bad  json here");
    }

    #[test]
    fn errors_convert() {
        let e: SourceError = NatsError::Config("x".into()).into();
        assert_eq!(e, SourceError::Config("x".into()));
        let e: SourceError = NatsError::Unavailable("down".into()).into();
        assert!(matches!(e, SourceError::Unavailable(_)));
    }
}

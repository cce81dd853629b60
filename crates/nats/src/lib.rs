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

mod sink;
mod source;

use std::time::Duration;

use prescient_core::SourceError;
pub(crate) use prescient_core::error_chain;
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

/// Connects a client that logs its connection events.
pub(crate) async fn connect_client(
    url: &str,
    name: &str,
    timeout: Duration,
) -> Result<async_nats::Client, NatsError> {
    let owned_url = url.to_owned();
    let opts = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .event_callback(move |event| {
            let url = owned_url.clone();
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
    match tokio::time::timeout(timeout.saturating_mul(2), opts.connect(url)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(NatsError::Unavailable(format!(
            "cannot connect to {url}: {}",
            error_chain(&e)
        ))),
        Err(_) => Err(NatsError::Unavailable(format!(
            "connecting to {url} timed out"
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

//! Prescient's RabbitMQ (AMQP 0-9-1) adapters: [`AmqpSource`], a durable-queue consumer with
//! manual acks implementing [`EventSource`](prescient_core::EventSource), and [`AmqpSink`], a
//! publisher with pipelined publisher confirms implementing
//! [`EventSink`](prescient_core::EventSink).
//!
//! **Wire format:** a message body is the JSON of a [`prescient_core::Event`]. A body that does
//! not decode is delivered as a [`MalformedMessage`](prescient_core::MalformedMessage); its
//! [`Ack::dead_letter`](prescient_core::Ack::dead_letter) publishes the raw body to the durable
//! queue `<queue>.dead` with the header [`ERROR_HEADER`] (`x-prescient-error: <reason>`), waits
//! for the broker's confirm, and then acks the original.
//!
//! **Delivery guarantee:** at least once. Messages are acked one by one with `basic.ack`; when a
//! channel or connection closes with unacked messages, RabbitMQ queues them again and sets their
//! `redelivered` flag, which becomes [`Delivery::attempt`](prescient_core::Delivery::attempt)
//! `2` (or the quorum queue's `x-delivery-count` + 1 where the broker sends one).
//!
//! **Reconnection:** when the connection fails, [`AmqpSource::next`](prescient_core::EventSource::next)
//! returns [`SourceError::Unavailable`](prescient_core::SourceError::Unavailable) once, and the
//! next call reconnects (logging `info!` on success, `warn!` on failure). Acks of deliveries
//! from the old connection then fail with [`SourceError::Ack`](prescient_core::SourceError::Ack);
//! the broker delivers those messages again.

mod sink;
mod source;

use prescient_core::SourceError;
pub(crate) use prescient_core::error_chain;

pub use sink::{AmqpSink, AmqpSinkOptions};
pub use source::{AmqpSource, AmqpSourceOptions};

/// The header that carries the reason of a dead-lettered message.
pub const ERROR_HEADER: &str = "x-prescient-error";

/// The default broker URL (the default virtual host `/`, user `guest`).
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The dead-letter queue of a queue: `<queue>.dead`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

/// Why an AMQP operation failed. Converts into [`SourceError`].
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The options are invalid.
    #[error("invalid AMQP options: {0}")]
    Config(String),
    /// The broker cannot be reached, or the connection broke.
    #[error("AMQP broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused an operation (queue declaration with other arguments, access, ...).
    #[error("AMQP {what} failed: {error}")]
    Refused {
        /// What was attempted.
        what: &'static str,
        /// The broker's answer.
        error: String,
    },
}

impl From<AmqpError> for SourceError {
    fn from(e: AmqpError) -> Self {
        match e {
            AmqpError::Config(m) => SourceError::Config(m),
            e @ AmqpError::Unavailable(_) => SourceError::Unavailable(e.to_string()),
            e @ AmqpError::Refused { .. } => SourceError::Unavailable(e.to_string()),
        }
    }
}

/// Classifies a lapin error from step `what`: I/O and connection-state errors are
/// [`AmqpError::Unavailable`], everything else [`AmqpError::Refused`].
pub(crate) fn classify(what: &'static str, e: &lapin::Error) -> AmqpError {
    let msg = error_chain(e);
    match e.kind() {
        lapin::ErrorKind::IOError(_)
        | lapin::ErrorKind::RuntimeShutdownError(_)
        | lapin::ErrorKind::MissingHeartbeatError
        | lapin::ErrorKind::InvalidConnectionState(_)
        | lapin::ErrorKind::InvalidChannelState(..) => {
            AmqpError::Unavailable(format!("{what}: {msg}"))
        }
        _ => AmqpError::Refused { what, error: msg },
    }
}

pub(crate) use prescient_core::redact_url;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_queue_is_named_after_the_queue() {
        assert_eq!(dead_letter_queue("events"), "events.dead");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
    }

    #[test]
    fn errors_convert() {
        let e: SourceError = AmqpError::Config("x".into()).into();
        assert_eq!(e, SourceError::Config("x".into()));
        let e: SourceError = AmqpError::Unavailable("down".into()).into();
        assert!(matches!(e, SourceError::Unavailable(_)));
    }
}

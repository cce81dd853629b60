//! The [`EventSource`] seam: a stream of events with at-least-once acknowledgement.
//!
//! Each delivery carries its own [`Ack`], so that the shape itself prevents acking the wrong
//! message: the consumer acks a delivery after the event's prefetches are scheduled.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

use crate::event::Event;
use crate::limits::{check_event, check_record};

/// Why a source operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The broker or file cannot be reached or read. Worth retrying.
    #[error("event source unavailable: {0}")]
    Unavailable(String),
    /// An acknowledgement or dead-lettering failed.
    #[error("acknowledgement failed: {0}")]
    Ack(String),
    /// The source is misconfigured.
    #[error("event source misconfigured: {0}")]
    Config(String),
}

/// A message that could not be decoded into an [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedMessage {
    /// The raw bytes, kept for the dead letter.
    pub raw: Bytes,
    /// What was wrong with them.
    pub error: String,
}

/// Decodes one bus message into an [`Event`]: the shared decode step of every broker source.
///
/// The size is checked with [`check_record`] before the JSON is parsed, so an oversized message
/// costs no parse; the decoded event is then checked with [`check_event`]. Whatever fails is a
/// [`MalformedMessage`] that keeps `raw` for the dead letter, with the reason as its error.
///
/// # Errors
/// A [`MalformedMessage`] when the message is too large, is not an event's JSON, or the event
/// breaks a limit of [`crate::limits`].
pub fn decode_event(raw: Bytes) -> Result<Event, MalformedMessage> {
    let malformed = |raw: Bytes, error: String| Err(MalformedMessage { raw, error });
    if let Err(e) = check_record(raw.len()) {
        return malformed(raw, format!("message too large: {e}"));
    }
    let event = match serde_json::from_slice::<Event>(&raw) {
        Ok(event) => event,
        Err(e) => return malformed(raw, format!("invalid event JSON: {e}")),
    };
    if let Err(e) = check_event(&event) {
        return malformed(raw, format!("event {:?} breaks a limit: {e}", event.id));
    }
    Ok(event)
}

/// One delivered message: a decoded event (or why it could not be decoded) and its ack.
#[derive(Debug)]
pub struct Delivery {
    /// The event, or the malformed message.
    pub payload: Result<Event, MalformedMessage>,
    /// How many times the broker says it delivered this message (1 on first delivery).
    pub attempt: u32,
    /// Acknowledges this delivery, or sends it to the dead letters.
    pub ack: Ack,
}

/// Acknowledges one delivery. Implemented by each broker adapter.
#[async_trait]
pub trait Acknowledge: Send + fmt::Debug {
    /// The message was processed; do not deliver it again.
    async fn ack(self: Box<Self>) -> Result<(), SourceError>;
    /// The message cannot be processed: move it to the dead letters with `reason`, then ack it.
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), SourceError>;
}

/// The acknowledgement handle of one [`Delivery`].
#[derive(Debug)]
pub struct Ack(Option<Box<dyn Acknowledge>>);

impl Ack {
    /// An ack that does nothing (files, in-process buses).
    pub fn noop() -> Self {
        Ack(None)
    }

    /// Wraps a broker's acknowledgement.
    pub fn new(inner: Box<dyn Acknowledge>) -> Self {
        Ack(Some(inner))
    }

    /// Acknowledges the delivery.
    ///
    /// # Errors
    /// [`SourceError::Ack`] when the broker refuses or cannot be reached.
    pub async fn ack(self) -> Result<(), SourceError> {
        match self.0 {
            Some(a) => a.ack().await,
            None => Ok(()),
        }
    }

    /// Dead-letters the delivery with `reason`, then acknowledges it.
    ///
    /// # Errors
    /// [`SourceError::Ack`] when the broker refuses or cannot be reached.
    pub async fn dead_letter(self, reason: &str) -> Result<(), SourceError> {
        match self.0 {
            Some(a) => a.dead_letter(reason).await,
            None => Ok(()),
        }
    }
}

/// A stream of deliveries.
#[async_trait]
pub trait EventSource: Send + fmt::Debug {
    /// The next delivery, waiting for one if needed; `None` when the stream has ended.
    ///
    /// # Errors
    /// [`SourceError`] when the source fails; callers reconnect with backoff.
    ///
    /// # Cancel safety
    /// Cancel safe: a message not yet returned stays unacknowledged and is redelivered.
    async fn next(&mut self) -> Result<Option<Delivery>, SourceError>;
}

/// Publishes events to a bus (the `publish` command, tests).
#[async_trait]
pub trait EventSink: Send + Sync + fmt::Debug {
    /// Publishes one event.
    ///
    /// # Errors
    /// [`SourceError`] when the bus refuses or cannot be reached.
    async fn publish(&self, event: &Event) -> Result<(), SourceError>;

    /// Publishes raw bytes as a message (used to test dead-lettering of malformed messages).
    ///
    /// # Errors
    /// [`SourceError`] when the bus refuses or cannot be reached.
    async fn publish_raw(&self, payload: Bytes) -> Result<(), SourceError>;

    /// Waits until everything published so far is accepted by the broker.
    ///
    /// # Errors
    /// [`SourceError`] when the bus refuses or cannot be reached.
    async fn flush(&self) -> Result<(), SourceError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_ENTITIES, MAX_RECORD_BYTES};

    fn entities(n: usize) -> String {
        vec![r#"{"kind":"k","id":"1"}"#; n].join(",")
    }

    fn message(entities: &str, extra: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"id":"e","type":"t","time":"2023-04-03T10:08:18Z","entities":[{entities}]{extra}}}"#
        ))
    }

    fn error(raw: Bytes) -> String {
        match decode_event(raw.clone()) {
            Ok(e) => panic!("expected a malformed message, got {e:?}"),
            Err(m) => {
                assert_eq!(m.raw, raw, "the raw bytes are kept for the dead letter");
                m.error
            }
        }
    }

    #[test]
    fn a_good_message_decodes() {
        let e = decode_event(message(&entities(2), "")).unwrap_or_else(|m| panic!("{m:?}"));
        assert_eq!((e.id.as_str(), e.entities.len()), ("e", 2));
    }

    #[test]
    fn bad_json_is_malformed() {
        let msg = error(Bytes::from_static(b"{not json"));
        assert!(msg.starts_with("invalid event JSON: "), "{msg}");
    }

    #[test]
    fn an_oversized_message_is_refused_before_parsing() {
        // 100,000 entities: about 2.3 MB of valid JSON.
        let raw = message(&entities(100_000), "");
        assert!(raw.len() > MAX_RECORD_BYTES);
        let msg = error(raw);
        assert!(msg.starts_with("message too large: "), "{msg}");
        // Not even JSON: the size alone decides.
        let msg = error(Bytes::from(vec![b'x'; MAX_RECORD_BYTES + 1]));
        assert!(msg.starts_with("message too large: "), "{msg}");
    }

    #[test]
    fn an_event_breaking_a_limit_is_malformed() {
        let raw = message(&entities(MAX_ENTITIES + 1), "");
        assert!(raw.len() <= MAX_RECORD_BYTES);
        let msg = error(raw);
        assert!(msg.contains("10001 entities in one event"), "{msg}");

        let msg = error(message(
            &entities(1),
            r#","mutations":[{"kind":"k","id":"1","version":18446744073709551615}]"#,
        ));
        assert!(msg.contains("version 18446744073709551615"), "{msg}");

        let msg = error(Bytes::from_static(
            br#"{"id":"e","type":"t","time":9223372036854775807,"entities":[]}"#,
        ));
        assert!(msg.contains("outside the accepted range"), "{msg}");
    }
}

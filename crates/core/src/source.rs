//! The [`EventSource`] seam: a stream of events with at-least-once acknowledgement.
//!
//! Each delivery carries its own [`Ack`], so that the shape itself prevents acking the wrong
//! message: the consumer acks a delivery after the event's prefetches are scheduled.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

use crate::event::Event;

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

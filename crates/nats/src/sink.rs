//! [`NatsSink`]: a pipelined JetStream publisher as an [`EventSink`].

use std::fmt;
use std::future::IntoFuture;
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use bytes::Bytes;
use prescient_core::{Event, EventSink, SourceError};
use tokio::sync::Mutex;

use crate::{DEFAULT_URL, NatsError, connect_client, full_message};

/// Options of [`NatsSink::connect`].
#[derive(Debug, Clone)]
pub struct NatsSinkOptions {
    /// The server URL.
    pub url: String,
    /// The subject every event is published to.
    pub subject: String,
    /// If set, a stream of this name capturing `subject` is created when no stream exists
    /// under that name. Without a stream capturing the subject, publishes fail ("no
    /// responders").
    pub stream: Option<String>,
    /// How many publishes may await their acks at once before `publish` waits for them.
    pub window: usize,
    /// How long to wait for the connection and for each publish ack.
    pub timeout: Duration,
}

impl Default for NatsSinkOptions {
    fn default() -> Self {
        NatsSinkOptions {
            url: DEFAULT_URL.to_owned(),
            subject: "prescient.events.all".to_owned(),
            stream: None,
            window: 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Publishes events to JetStream without waiting for each ack: up to `window` publish acks are
/// in flight, and when the window is full the oldest are awaited as one chunk.
///
/// An error from [`EventSink::publish`] may come from any event of the chunk it awaited, and
/// means some of those may not be stored; [`EventSink::flush`] awaits all outstanding acks.
/// Callers that need every event stored republish on error (delivery is at least once).
pub struct NatsSink {
    js: Context,
    client: async_nats::Client,
    subject: String,
    window: usize,
    pending: Mutex<Vec<PublishAckFuture>>,
}

impl fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSink")
            .field("subject", &self.subject)
            .field("window", &self.window)
            .finish()
    }
}

impl NatsSink {
    /// Connects, and creates the stream if asked to.
    ///
    /// # Errors
    /// [`NatsError::Config`] for a zero window; [`NatsError::Unavailable`] when the server
    /// cannot be reached; [`NatsError::JetStream`] when creating the stream fails.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn connect(opts: NatsSinkOptions) -> Result<NatsSink, NatsError> {
        if opts.window == 0 {
            return Err(NatsError::Config("window must be at least 1".into()));
        }
        let client = connect_client(&opts.url, "prescient-sink", opts.timeout).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(opts.timeout)
            .max_ack_inflight(opts.window.saturating_mul(2).max(5_000))
            .backpressure_on_inflight(true)
            .build(client.clone());
        if let Some(name) = &opts.stream {
            js.get_or_create_stream(jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![opts.subject.clone()],
                ..Default::default()
            })
            .await
            .map_err(|e| NatsError::JetStream {
                what: "creating the stream",
                error: full_message(&e),
            })?;
        }
        Ok(NatsSink {
            js,
            client,
            subject: opts.subject,
            window: opts.window,
            pending: Mutex::new(Vec::new()),
        })
    }

    /// The client, for tests and administration.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    async fn send(&self, payload: Bytes) -> Result<(), SourceError> {
        let fut = self
            .js
            .publish(self.subject.clone(), payload)
            .await
            .map_err(|e| SourceError::Unavailable(full_message(&e)))?;
        // The lock is held while a full window is awaited, so that `flush` (which takes the
        // same lock) really waits for everything published before it.
        let mut pending = self.pending.lock().await;
        pending.push(fut);
        if pending.len() >= self.window {
            let full = std::mem::take(&mut *pending);
            await_acks(full).await
        } else {
            Ok(())
        }
    }
}

/// Awaits a chunk of publish acks, reporting the first failure.
async fn await_acks(chunk: Vec<PublishAckFuture>) -> Result<(), SourceError> {
    if chunk.is_empty() {
        return Ok(());
    }
    let n = chunk.len();
    let results = futures::future::join_all(chunk.into_iter().map(IntoFuture::into_future)).await;
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| full_message(&e)))
        .collect();
    match failed.first() {
        None => Ok(()),
        Some(first) => Err(SourceError::Unavailable(format!(
            "{} of {n} publishes were not acknowledged: {first}",
            failed.len()
        ))),
    }
}

#[async_trait]
impl EventSink for NatsSink {
    async fn publish(&self, event: &Event) -> Result<(), SourceError> {
        let body = serde_json::to_vec(event)
            .map_err(|e| SourceError::Config(format!("cannot encode event {}: {e}", event.id)))?;
        self.send(Bytes::from(body)).await
    }

    async fn publish_raw(&self, payload: Bytes) -> Result<(), SourceError> {
        self.send(payload).await
    }

    async fn flush(&self) -> Result<(), SourceError> {
        let mut pending = self.pending.lock().await;
        let all = std::mem::take(&mut *pending);
        await_acks(all).await
    }
}

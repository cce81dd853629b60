//! [`NatsSink`]: a pipelined JetStream publisher as an [`EventSink`].

use std::collections::VecDeque;
use std::fmt;
use std::future::IntoFuture;
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use bytes::Bytes;
use prescient_core::{Event, EventSink, SourceError};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::{DEFAULT_URL, NatsError, connect_client, error_chain};

/// Options of [`NatsSink::connect`].
#[derive(Debug, Clone)]
pub struct NatsSinkOptions {
    /// The server URL.
    pub url: String,
    /// Credentials and TLS.
    pub auth: crate::NatsAuth,
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
            auth: crate::NatsAuth::default(),
            subject: "prescient.events.all".to_owned(),
            stream: None,
            window: 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Publishes events to JetStream without waiting for each ack: publish acks are collected in
/// windows of `window`; each full window is awaited by a background task, and at most four
/// windows are awaited at once before `publish` waits for the oldest.
///
/// An error from [`EventSink::publish`] may come from any event of an earlier window, and
/// means some of those may not be stored; [`EventSink::flush`] awaits all outstanding acks.
/// Callers that need every event stored republish on error (delivery is at least once).
pub struct NatsSink {
    js: Context,
    client: async_nats::Client,
    subject: String,
    window: usize,
    state: Mutex<InFlight<PublishAckFuture>>,
}

/// Publishes whose acks are not awaited yet, and chunks of them being awaited in the
/// background.
struct InFlight<F> {
    pending: Vec<F>,
    chunks: VecDeque<JoinHandle<Result<(), SourceError>>>,
}

/// How many full windows may be awaited in the background before `publish` waits for the
/// oldest.
const MAX_CHUNKS: usize = 4;

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
        let client = connect_client(&opts.url, &opts.auth, "prescient-sink", opts.timeout).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(opts.timeout)
            .max_ack_inflight(opts.window.saturating_mul(MAX_CHUNKS + 2).max(5_000))
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
                error: error_chain(&e),
            })?;
        }
        Ok(NatsSink {
            js,
            client,
            subject: opts.subject,
            window: opts.window,
            state: Mutex::new(InFlight {
                pending: Vec::new(),
                chunks: VecDeque::new(),
            }),
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
            .map_err(|e| SourceError::Unavailable(error_chain(&e)))?;
        let mut state = self.state.lock().await;
        state.pending.push(fut);
        if state.pending.len() < self.window {
            return Ok(());
        }
        // A full window is awaited in the background, so publishing goes on meanwhile; with
        // `MAX_CHUNKS` windows in the background, the oldest is awaited first (backpressure).
        let chunk = std::mem::take(&mut state.pending);
        state.chunks.push_back(tokio::spawn(await_acks(chunk)));
        if state.chunks.len() > MAX_CHUNKS
            && let Some(oldest) = state.chunks.pop_front()
        {
            return join_chunk(oldest).await;
        }
        Ok(())
    }
}

/// Awaits a background chunk.
async fn join_chunk(h: JoinHandle<Result<(), SourceError>>) -> Result<(), SourceError> {
    h.await
        .map_err(|e| SourceError::Unavailable(format!("awaiting publish acks failed: {e}")))?
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
        .filter_map(|r| r.err().map(|e| error_chain(&e)))
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
        // The lock is held throughout, so that flush waits for everything published before.
        let mut state = self.state.lock().await;
        let rest = std::mem::take(&mut state.pending);
        let mut result = await_acks(rest).await;
        while let Some(h) = state.chunks.pop_front() {
            let r = join_chunk(h).await;
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

//! [`AmqpSink`]: a RabbitMQ publisher with pipelined publisher confirms as an [`EventSink`].

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm,
};
use prescient_core::{Event, EventSink, SourceError};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::{AmqpError, DEFAULT_URL, classify, error_chain, redact_url};

/// Options of [`AmqpSink::connect`].
#[derive(Clone)]
pub struct AmqpSinkOptions {
    /// The broker URL.
    pub url: String,
    /// The exchange to publish to; `""` is the default exchange, which routes by queue name.
    pub exchange: String,
    /// The routing key (with the default exchange: the queue's name).
    pub routing_key: String,
    /// If set, this queue is declared durable on connect (so that publishes to it through the
    /// default exchange have somewhere to go).
    pub declare_queue: Option<String>,
    /// How many publishes may await their confirms at once before `publish` waits for them.
    pub window: usize,
    /// How long to wait for the connection.
    pub connect_timeout: Duration,
}

impl fmt::Debug for AmqpSinkOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpSinkOptions")
            .field("url", &redact_url(&self.url))
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("declare_queue", &self.declare_queue)
            .field("window", &self.window)
            .finish()
    }
}

impl Default for AmqpSinkOptions {
    fn default() -> Self {
        AmqpSinkOptions {
            url: DEFAULT_URL.to_owned(),
            exchange: String::new(),
            routing_key: "prescient.events".to_owned(),
            declare_queue: None,
            window: 1024,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Publishes persistent messages with publisher confirms, without waiting for each confirm:
/// confirms are collected in windows of `window`; each full window is awaited by a background
/// task, and at most four windows are awaited at once before `publish` waits for the oldest. Messages are published `mandatory`, so an unroutable message is an error rather than
/// silently dropped.
///
/// An error from [`EventSink::publish`] may come from any message of an earlier window;
/// [`EventSink::flush`] awaits all outstanding confirms.
pub struct AmqpSink {
    connection: Connection,
    channel: Channel,
    exchange: String,
    routing_key: String,
    window: usize,
    state: Mutex<InFlight>,
}

/// Publishes whose confirms are not awaited yet, and chunks of them being awaited in the
/// background.
struct InFlight {
    pending: Vec<PublisherConfirm>,
    chunks: VecDeque<JoinHandle<Result<(), SourceError>>>,
}

/// How many full windows may be awaited in the background before `publish` waits for the
/// oldest.
const MAX_CHUNKS: usize = 4;

impl fmt::Debug for AmqpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpSink")
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("window", &self.window)
            .finish()
    }
}

impl AmqpSink {
    /// Connects, enables publisher confirms, and declares the queue if asked to.
    ///
    /// # Errors
    /// [`AmqpError::Config`] for a zero window; [`AmqpError::Unavailable`] when the broker
    /// cannot be reached in time; [`AmqpError::Refused`] when it refuses a setup step.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn connect(opts: AmqpSinkOptions) -> Result<AmqpSink, AmqpError> {
        if opts.window == 0 {
            return Err(AmqpError::Config("window must be at least 1".into()));
        }
        let setup = async {
            let connection = Connection::connect(&opts.url, ConnectionProperties::default())
                .await
                .map_err(|e| {
                    AmqpError::Unavailable(format!(
                        "cannot connect to {}: {}",
                        redact_url(&opts.url),
                        error_chain(&e)
                    ))
                })?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| classify("create channel", &e))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| classify("confirm.select", &e))?;
            if let Some(q) = &opts.declare_queue {
                channel
                    .queue_declare(
                        q.as_str().into(),
                        QueueDeclareOptions::durable(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| classify("queue declare", &e))?;
            }
            Ok::<_, AmqpError>((connection, channel))
        };
        let (connection, channel) = tokio::time::timeout(opts.connect_timeout, setup)
            .await
            .map_err(|_| {
                AmqpError::Unavailable(format!("connecting to {} timed out", redact_url(&opts.url)))
            })??;
        Ok(AmqpSink {
            connection,
            channel,
            exchange: opts.exchange,
            routing_key: opts.routing_key,
            window: opts.window,
            state: Mutex::new(InFlight {
                pending: Vec::new(),
                chunks: VecDeque::new(),
            }),
        })
    }

    /// Awaits outstanding confirms and closes the connection.
    ///
    /// # Errors
    /// [`SourceError`] when a confirm fails or the close fails.
    ///
    /// # Cancel safety
    /// Not cancel safe: confirms awaited before cancellation are not reported again.
    pub async fn close(self) -> Result<(), SourceError> {
        self.flush().await?;
        self.connection
            .close(200, "bye".into())
            .await
            .map_err(|e| SourceError::Unavailable(error_chain(&e)))
    }

    async fn send(&self, payload: &[u8]) -> Result<(), SourceError> {
        let mut state = self.state.lock().await;
        let confirm = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                self.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                payload,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            )
            .await
            .map_err(|e| SourceError::Unavailable(error_chain(&e)))?;
        state.pending.push(confirm);
        if state.pending.len() < self.window {
            return Ok(());
        }
        // A full window is awaited in the background, so publishing goes on meanwhile; with
        // `MAX_CHUNKS` windows in the background, the oldest is awaited first (backpressure).
        let chunk = std::mem::take(&mut state.pending);
        state.chunks.push_back(tokio::spawn(await_confirms(chunk)));
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
        .map_err(|e| SourceError::Unavailable(format!("awaiting publish confirms failed: {e}")))?
}

/// Awaits a chunk of confirms, reporting the first failure.
async fn await_confirms(chunk: Vec<PublisherConfirm>) -> Result<(), SourceError> {
    if chunk.is_empty() {
        return Ok(());
    }
    let n = chunk.len();
    let mut failed = 0usize;
    let mut first: Option<String> = None;
    for r in futures::future::join_all(chunk).await {
        let problem = match r {
            Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => None,
            Ok(Confirmation::Ack(Some(_))) => Some("a message was unroutable".to_owned()),
            Ok(Confirmation::Nack(_)) => Some("the broker refused a message".to_owned()),
            Err(e) => Some(error_chain(&e)),
        };
        if let Some(p) = problem {
            failed += 1;
            first.get_or_insert(p);
        }
    }
    match first {
        None => Ok(()),
        Some(first) => Err(SourceError::Unavailable(format!(
            "{failed} of {n} publishes were not confirmed: {first}"
        ))),
    }
}

#[async_trait]
impl EventSink for AmqpSink {
    async fn publish(&self, event: &Event) -> Result<(), SourceError> {
        let body = serde_json::to_vec(event)
            .map_err(|e| SourceError::Config(format!("cannot encode event {}: {e}", event.id)))?;
        self.send(&body).await
    }

    async fn publish_raw(&self, payload: Bytes) -> Result<(), SourceError> {
        self.send(&payload).await
    }

    async fn flush(&self) -> Result<(), SourceError> {
        // The lock is held throughout, so that flush waits for everything published before.
        let mut state = self.state.lock().await;
        let rest = std::mem::take(&mut state.pending);
        let mut result = await_confirms(rest).await;
        while let Some(h) = state.chunks.pop_front() {
            let r = join_chunk(h).await;
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

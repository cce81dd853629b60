//! [`AmqpSink`]: a RabbitMQ publisher with pipelined publisher confirms as an [`EventSink`].

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

use crate::{AmqpError, DEFAULT_URL, classify, full_message, redact_url};

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

/// Publishes persistent messages with publisher confirms, without waiting for each confirm: up
/// to `window` confirms are outstanding, and when the window is full they are awaited as one
/// chunk. Messages are published `mandatory`, so an unroutable message is an error rather than
/// silently dropped.
///
/// An error from [`EventSink::publish`] may come from any message of the chunk it awaited;
/// [`EventSink::flush`] awaits all outstanding confirms.
pub struct AmqpSink {
    connection: Connection,
    channel: Channel,
    exchange: String,
    routing_key: String,
    window: usize,
    pending: Mutex<Vec<PublisherConfirm>>,
}

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
                        full_message(&e)
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
            pending: Mutex::new(Vec::new()),
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
            .map_err(|e| SourceError::Unavailable(full_message(&e)))
    }

    async fn send(&self, payload: &[u8]) -> Result<(), SourceError> {
        // The lock is held while a full window is awaited, so that `flush` (which takes the
        // same lock) really waits for everything published before it.
        let mut pending = self.pending.lock().await;
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
            .map_err(|e| SourceError::Unavailable(full_message(&e)))?;
        pending.push(confirm);
        if pending.len() >= self.window {
            let full = std::mem::take(&mut *pending);
            await_confirms(full).await
        } else {
            Ok(())
        }
    }
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
            Err(e) => Some(full_message(&e)),
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
        let mut pending = self.pending.lock().await;
        let all = std::mem::take(&mut *pending);
        await_confirms(all).await
    }
}

//! [`AmqpSource`]: a durable RabbitMQ queue with manual acks as an [`EventSource`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use prescient_core::{Ack, Acknowledge, Delivery, EventSource, SourceError, decode_event};
use tracing::{debug, info, warn};

use crate::{AmqpError, DEFAULT_URL, ERROR_HEADER, classify, dead_letter_queue, redact_url};

/// Options of [`AmqpSource::connect`].
#[derive(Clone)]
pub struct AmqpSourceOptions {
    /// The broker URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// The queue to consume; declared durable if missing. Its dead letters go to the durable
    /// queue `<queue>.dead`.
    pub queue: String,
    /// How many unacked messages the broker sends ahead (`basic.qos` prefetch count). This is
    /// also the most deliveries one consumer can hold unacked: with `prefetch` of them
    /// outstanding, `next` waits until some are acked.
    pub prefetch: u16,
    /// How long to wait for the connection and the setup steps.
    pub connect_timeout: Duration,
}

impl fmt::Debug for AmqpSourceOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpSourceOptions")
            .field("url", &redact_url(&self.url))
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Default for AmqpSourceOptions {
    fn default() -> Self {
        AmqpSourceOptions {
            url: DEFAULT_URL.to_owned(),
            queue: "prescient.events".to_owned(),
            prefetch: 500,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// One live connection: its channel (consuming, and publishing dead letters with confirms)
/// and the consumer.
struct Live {
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
}

/// Consumes events from a durable RabbitMQ queue with manual acks.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use prescient_amqp::{AmqpSource, AmqpSourceOptions};
/// use prescient_core::EventSource;
///
/// let mut source = AmqpSource::connect(AmqpSourceOptions::default()).await?;
/// while let Some(delivery) = source.next().await? {
///     match &delivery.payload {
///         Ok(event) => delivery.ack.ack().await?,
///         Err(bad) => { let reason = bad.error.clone(); delivery.ack.dead_letter(&reason).await? }
///     }
/// }
/// # Ok(()) }
/// ```
pub struct AmqpSource {
    opts: AmqpSourceOptions,
    dead_queue: Arc<str>,
    live: Option<Live>,
}

impl fmt::Debug for AmqpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpSource")
            .field("url", &redact_url(&self.opts.url))
            .field("queue", &self.opts.queue)
            .field("connected", &self.live.is_some())
            .finish()
    }
}

impl AmqpSource {
    /// Connects, declares the queue and its dead-letter queue (durable), sets the prefetch and
    /// starts consuming.
    ///
    /// # Errors
    /// [`AmqpError::Config`] for invalid options; [`AmqpError::Unavailable`] when the broker
    /// cannot be reached in time; [`AmqpError::Refused`] when it refuses a setup step (e.g. the
    /// queue exists with other arguments).
    ///
    /// # Cancel safety
    /// Cancel safe: a half-made connection is closed when dropped.
    pub async fn connect(opts: AmqpSourceOptions) -> Result<AmqpSource, AmqpError> {
        if opts.queue.is_empty() {
            return Err(AmqpError::Config("queue must not be empty".into()));
        }
        if opts.prefetch == 0 {
            return Err(AmqpError::Config(
                "prefetch must be at least 1 (0 means unlimited in AMQP)".into(),
            ));
        }
        let dead_queue: Arc<str> = dead_letter_queue(&opts.queue).into();
        let live = open(&opts, &dead_queue).await?;
        debug!(message = "AMQP source connected.", url = %redact_url(&opts.url), queue = %opts.queue);
        Ok(AmqpSource {
            opts,
            dead_queue,
            live: Some(live),
        })
    }

    /// Closes the connection. Unacked deliveries go back to the queue and are delivered again.
    ///
    /// # Errors
    /// [`AmqpError::Unavailable`] when the close fails (the connection is gone anyway).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn close(mut self) -> Result<(), AmqpError> {
        if let Some(live) = self.live.take() {
            live.connection
                .close(200, "bye".into())
                .await
                .map_err(|e| classify("close", &e))?;
        }
        Ok(())
    }

    fn delivery(&self, live: &Live, d: lapin::message::Delivery) -> Delivery {
        let attempt = attempt_of(&d);
        let raw = Bytes::from(d.data);
        let payload = decode_event(raw.clone());
        Delivery {
            payload,
            attempt,
            ack: Ack::new(Box::new(AmqpAck {
                acker: d.acker,
                channel: live.channel.clone(),
                raw,
                dead_queue: self.dead_queue.clone(),
            })),
        }
    }
}

/// The delivery count: the quorum queues' `x-delivery-count` + 1 where present, else 2 for a
/// redelivered message and 1 otherwise.
fn attempt_of(d: &lapin::message::Delivery) -> u32 {
    let count = d.properties.headers().as_ref().and_then(|h| {
        h.inner().iter().find_map(|(k, v)| {
            (k.as_str() == "x-delivery-count").then(|| match v {
                AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
                AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
                AMQPValue::LongUInt(n) => Some(*n),
                AMQPValue::ShortInt(n) => u32::try_from(*n).ok(),
                _ => None,
            })
        })
    });
    match count.flatten() {
        Some(n) => n.saturating_add(1),
        None if d.redelivered => 2,
        None => 1,
    }
}

/// Opens a connection and a channel, declares the queues and starts the consumer.
async fn open(opts: &AmqpSourceOptions, dead_queue: &str) -> Result<Live, AmqpError> {
    let setup = async {
        let connection = Connection::connect(&opts.url, ConnectionProperties::default())
            .await
            .map_err(|e| {
                AmqpError::Unavailable(format!(
                    "cannot connect to {}: {}",
                    redact_url(&opts.url),
                    crate::error_chain(&e)
                ))
            })?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| classify("create channel", &e))?;
        for q in [opts.queue.as_str(), dead_queue] {
            channel
                .queue_declare(
                    q.into(),
                    QueueDeclareOptions::durable(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| classify("queue declare", &e))?;
        }
        channel
            .basic_qos(opts.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| classify("basic.qos", &e))?;
        // Dead letters are published on this channel and must be confirmed before the ack.
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| classify("confirm.select", &e))?;
        let consumer = channel
            .basic_consume(
                opts.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| classify("basic.consume", &e))?;
        Ok(Live {
            connection,
            channel,
            consumer,
        })
    };
    match tokio::time::timeout(opts.connect_timeout, setup).await {
        Ok(r) => r,
        Err(_) => Err(AmqpError::Unavailable(format!(
            "connecting to {} timed out",
            redact_url(&opts.url)
        ))),
    }
}

#[async_trait]
impl EventSource for AmqpSource {
    async fn next(&mut self) -> Result<Option<Delivery>, SourceError> {
        if self.live.is_none() {
            match open(&self.opts, &self.dead_queue).await {
                Ok(live) => {
                    info!(message = "AMQP source reconnected.", url = %redact_url(&self.opts.url), queue = %self.opts.queue);
                    self.live = Some(live);
                }
                Err(error) => {
                    warn!(message = "AMQP reconnect failed.", %error, queue = %self.opts.queue);
                    return Err(error.into());
                }
            }
        }
        let Some(live) = self.live.as_mut() else {
            return Err(SourceError::Unavailable("not connected".into()));
        };
        match live.consumer.next().await {
            Some(Ok(d)) => {
                let Some(live) = self.live.as_ref() else {
                    return Err(SourceError::Unavailable("not connected".into()));
                };
                Ok(Some(self.delivery(live, d)))
            }
            Some(Err(e)) => {
                self.live = None;
                let error = classify("consume", &e);
                warn!(message = "AMQP consumer failed; will reconnect.", %error, queue = %self.opts.queue);
                Err(SourceError::Unavailable(error.to_string()))
            }
            None => {
                self.live = None;
                warn!(message = "AMQP consumer was cancelled; will reconnect.", queue = %self.opts.queue);
                Err(SourceError::Unavailable(format!(
                    "the consumer of {} was cancelled",
                    self.opts.queue
                )))
            }
        }
    }
}

/// The ack handle of one AMQP delivery.
struct AmqpAck {
    acker: lapin::Acker,
    channel: Channel,
    raw: Bytes,
    dead_queue: Arc<str>,
}

impl fmt::Debug for AmqpAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpAck")
            .field("dead_queue", &self.dead_queue)
            .field("bytes", &self.raw.len())
            .finish()
    }
}

impl AmqpAck {
    async fn ack_only(&self) -> Result<(), SourceError> {
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(SourceError::Ack(
                "the channel closed before the ack; the broker will deliver the message again"
                    .into(),
            )),
            Err(e) => Err(SourceError::Ack(crate::error_chain(&e))),
        }
    }
}

#[async_trait]
impl Acknowledge for AmqpAck {
    async fn ack(self: Box<Self>) -> Result<(), SourceError> {
        self.ack_only().await
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), SourceError> {
        let mut headers = FieldTable::default();
        headers.insert(
            ERROR_HEADER.into(),
            AMQPValue::LongString(LongString::from(reason.as_bytes().to_vec())),
        );
        let props = BasicProperties::default()
            .with_headers(headers)
            .with_delivery_mode(2);
        let dead = &self.dead_queue;
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                dead.as_ref().into(),
                BasicPublishOptions::default(),
                &self.raw,
                props,
            )
            .await
            .map_err(|e| {
                SourceError::Ack(format!(
                    "dead-lettering to {dead}: {}",
                    crate::error_chain(&e)
                ))
            })?;
        match confirm.await {
            Ok(Confirmation::Ack(_)) | Ok(Confirmation::NotRequested) => {}
            Ok(Confirmation::Nack(_)) => {
                return Err(SourceError::Ack(format!(
                    "the broker refused the dead letter to {dead}"
                )));
            }
            Err(e) => {
                return Err(SourceError::Ack(format!(
                    "dead-lettering to {dead}: {}",
                    crate::error_chain(&e)
                )));
            }
        }
        warn!(message = "Message dead-lettered.", %reason, dead_letter_queue = %dead, bytes = self.raw.len());
        self.ack_only().await
    }
}

//! [`NatsSource`]: a durable JetStream pull consumer as an [`EventSource`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::pull::{Config as PullConfig, Stream as PullStream};
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use prescient_core::{Ack, Acknowledge, Delivery, EventSource, SourceError, decode_event};
use tracing::{debug, warn};

use crate::{
    DEFAULT_URL, ERROR_HEADER, NatsError, ORIGINAL_SUBJECT_HEADER, connect_client, error_chain,
    header_safe,
};

/// Options of [`NatsSource::connect`].
#[derive(Debug, Clone)]
pub struct NatsSourceOptions {
    /// The server URL, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Credentials and TLS.
    pub auth: crate::NatsAuth,
    /// The JetStream stream to consume; created with `subjects` if missing.
    pub stream: String,
    /// The subjects the stream captures when this source creates it.
    pub subjects: Vec<String>,
    /// The durable consumer's name; created if missing. Sources with the same name share the
    /// consumer's position and unacked messages.
    pub durable: String,
    /// Where dead letters go. If no stream captures this subject yet, a stream named
    /// `<stream>_DEAD` is created for it. It must not be captured by `stream` itself.
    pub dead_letter_subject: String,
    /// How many messages one pull request asks for.
    pub batch: usize,
    /// How long the server waits for an ack before delivering a message again.
    pub ack_wait: Duration,
    /// The most messages delivered but not yet acked (the consumer's `max_ack_pending`).
    pub max_ack_pending: i64,
    /// The pull requests' idle heartbeat: `next` fails after two missed heartbeats.
    pub heartbeat: Duration,
    /// How long to wait for the connection and for JetStream API answers.
    pub connect_timeout: Duration,
}

impl Default for NatsSourceOptions {
    fn default() -> Self {
        NatsSourceOptions {
            url: DEFAULT_URL.to_owned(),
            auth: crate::NatsAuth::default(),
            stream: "PRESCIENT_EVENTS".to_owned(),
            subjects: vec!["prescient.events.>".to_owned()],
            durable: "prescient".to_owned(),
            dead_letter_subject: "prescient.dead".to_owned(),
            batch: 500,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 20_000,
            heartbeat: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Reads events from a JetStream stream through a durable pull consumer (explicit acks).
///
/// Messages are pulled `batch` at a time, and the next pull is sent when half of the previous
/// one has been consumed, so a consumer that keeps up never waits for a round trip.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use prescient_core::EventSource;
/// use prescient_nats::{NatsSource, NatsSourceOptions};
///
/// let mut source = NatsSource::connect(NatsSourceOptions::default()).await?;
/// while let Some(delivery) = source.next().await? {
///     match &delivery.payload {
///         Ok(event) => { /* schedule prefetches */ delivery.ack.ack().await?; }
///         Err(bad) => { let reason = bad.error.clone(); delivery.ack.dead_letter(&reason).await?; }
///     }
/// }
/// # Ok(()) }
/// ```
pub struct NatsSource {
    opts: NatsSourceOptions,
    client: async_nats::Client,
    shared: Arc<Shared>,
    consumer: PullConsumer,
    messages: Option<PullStream>,
}

/// What every ack handle of a source needs.
struct Shared {
    js: Context,
    dead_letter_subject: String,
}

impl fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSource")
            .field("url", &prescient_core::redact_url(&self.opts.url))
            .field("stream", &self.opts.stream)
            .field("durable", &self.opts.durable)
            .field("pulling", &self.messages.is_some())
            .finish()
    }
}

impl NatsSource {
    /// Connects, creates the stream, the dead-letter stream and the durable consumer where
    /// missing, and returns a source that has not pulled yet.
    ///
    /// An existing stream or consumer is used as it is, without changing its configuration.
    ///
    /// # Errors
    /// [`NatsError::Config`] for invalid options (including a dead-letter subject captured by
    /// the source's own stream); [`NatsError::Unavailable`] when the server cannot be reached;
    /// [`NatsError::JetStream`] when creating the stream or consumer fails.
    ///
    /// # Cancel safety
    /// Cancel safe; a stream or consumer created before cancellation stays.
    pub async fn connect(opts: NatsSourceOptions) -> Result<NatsSource, NatsError> {
        if opts.batch == 0 {
            return Err(NatsError::Config("batch must be at least 1".into()));
        }
        if opts.stream.is_empty() || opts.durable.is_empty() || opts.dead_letter_subject.is_empty()
        {
            return Err(NatsError::Config(
                "stream, durable and dead_letter_subject must not be empty".into(),
            ));
        }
        if opts.heartbeat < Duration::from_millis(100) {
            return Err(NatsError::Config(
                "heartbeat must be at least 100 ms".into(),
            ));
        }
        let client = connect_client(
            &opts.url,
            &opts.auth,
            "prescient-source",
            opts.connect_timeout,
        )
        .await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(opts.connect_timeout)
            .build(client.clone());
        let js_err = |what: &'static str| {
            move |e: &dyn std::error::Error| NatsError::JetStream {
                what,
                error: error_chain(e),
            }
        };

        let stream = js
            .get_or_create_stream(jetstream::stream::Config {
                name: opts.stream.clone(),
                subjects: opts.subjects.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| js_err("creating the stream")(&e))?;

        // Dead letters: make sure some stream keeps them, and that it is not ours.
        match js.stream_by_subject(opts.dead_letter_subject.clone()).await {
            Ok(name) if name == opts.stream => {
                return Err(NatsError::Config(format!(
                    "dead-letter subject {:?} is captured by the source's own stream {:?}",
                    opts.dead_letter_subject, opts.stream
                )));
            }
            Ok(name) => debug!(message = "Dead letters go to an existing stream.", stream = %name),
            Err(_) => {
                js.get_or_create_stream(jetstream::stream::Config {
                    name: format!("{}_DEAD", opts.stream),
                    subjects: vec![opts.dead_letter_subject.clone()],
                    ..Default::default()
                })
                .await
                .map_err(|e| js_err("creating the dead-letter stream")(&e))?;
            }
        }

        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &opts.durable,
                PullConfig {
                    durable_name: Some(opts.durable.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: opts.ack_wait,
                    max_ack_pending: opts.max_ack_pending,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| js_err("creating the consumer")(&e))?;

        debug!(message = "NATS source connected.", url = %prescient_core::redact_url(&opts.url), stream = %opts.stream, durable = %opts.durable);
        Ok(NatsSource {
            shared: Arc::new(Shared {
                js,
                dead_letter_subject: opts.dead_letter_subject.clone(),
            }),
            opts,
            client,
            consumer,
            messages: None,
        })
    }

    /// Flushes the acks sent so far to the server and closes the connection. Dropping a source
    /// instead is a crash as far as the server knows: acks still buffered in the client may be
    /// lost, and those messages are delivered again after `ack_wait`.
    ///
    /// # Errors
    /// [`NatsError::Unavailable`] when the flush fails.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn close(self) -> Result<(), NatsError> {
        drop(self.messages);
        self.client
            .flush()
            .await
            .map_err(|e| NatsError::Unavailable(error_chain(&e)))
    }

    async fn start_pull(&self) -> Result<PullStream, SourceError> {
        let expires = self.opts.heartbeat.saturating_mul(6);
        let start = self
            .consumer
            .stream()
            .max_messages_per_batch(self.opts.batch)
            .expires(expires)
            .heartbeat(self.opts.heartbeat)
            .messages();
        match tokio::time::timeout(self.opts.connect_timeout, start).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(SourceError::Unavailable(format!(
                "cannot start pulling from {}: {}",
                self.opts.stream,
                error_chain(&e)
            ))),
            Err(_) => Err(SourceError::Unavailable(format!(
                "starting to pull from {} timed out",
                self.opts.stream
            ))),
        }
    }

    fn delivery(&self, msg: jetstream::Message) -> Delivery {
        let attempt = msg
            .info()
            .map(|i| u32::try_from(i.delivered).unwrap_or(u32::MAX).max(1))
            .unwrap_or(1);
        let (msg, acker) = msg.split();
        let payload = decode_event(msg.payload.clone());
        Delivery {
            payload,
            attempt,
            ack: Ack::new(Box::new(NatsAck {
                acker,
                raw: msg.payload,
                subject: msg.subject.to_string(),
                shared: self.shared.clone(),
            })),
        }
    }
}

#[async_trait]
impl EventSource for NatsSource {
    async fn next(&mut self) -> Result<Option<Delivery>, SourceError> {
        if self.messages.is_none() {
            self.messages = Some(self.start_pull().await?);
        }
        let Some(stream) = self.messages.as_mut() else {
            return Err(SourceError::Unavailable("no pull stream".into()));
        };
        match stream.next().await {
            Some(Ok(msg)) => Ok(Some(self.delivery(msg))),
            Some(Err(e)) => {
                // Start a fresh pull on the next call: the old one may be dead with the
                // connection. Anything it had buffered is delivered again after `ack_wait`.
                self.messages = None;
                let error = error_chain(&e);
                warn!(message = "NATS pull failed.", %error, stream = %self.opts.stream, durable = %self.opts.durable);
                Err(SourceError::Unavailable(format!(
                    "pulling from {} failed: {error}",
                    self.opts.stream
                )))
            }
            None => {
                self.messages = None;
                Err(SourceError::Unavailable(format!(
                    "the pull subscription on {} ended",
                    self.opts.stream
                )))
            }
        }
    }
}

/// The ack handle of one JetStream message.
struct NatsAck {
    acker: Acker,
    raw: Bytes,
    subject: String,
    shared: Arc<Shared>,
}

impl fmt::Debug for NatsAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsAck")
            .field("subject", &self.subject)
            .field("bytes", &self.raw.len())
            .finish()
    }
}

#[async_trait]
impl Acknowledge for NatsAck {
    async fn ack(self: Box<Self>) -> Result<(), SourceError> {
        self.acker
            .ack()
            .await
            .map_err(|e| SourceError::Ack(error_chain(&*e)))
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), SourceError> {
        let mut headers = HeaderMap::new();
        headers.insert(ERROR_HEADER, header_safe(reason));
        headers.insert(ORIGINAL_SUBJECT_HEADER, self.subject.as_str());
        let dead = &self.shared.dead_letter_subject;
        let publish = self
            .shared
            .js
            .publish_with_headers(dead.clone(), headers, self.raw.clone())
            .await
            .map_err(|e| {
                SourceError::Ack(format!("dead-lettering to {dead}: {}", error_chain(&e)))
            })?;
        // Ack the original only once the dead letter is stored.
        publish.await.map_err(|e| {
            SourceError::Ack(format!("dead-lettering to {dead}: {}", error_chain(&e)))
        })?;
        warn!(message = "Message dead-lettered.", %reason, subject = %self.subject, dead_letter_subject = %dead, bytes = self.raw.len());
        self.acker
            .ack()
            .await
            .map_err(|e| SourceError::Ack(error_chain(&*e)))
    }
}

//! [`RedisStreamSource`] and [`RedisStreamSink`]: the event source and sink seams on Redis
//! Streams.
//!
//! Wire format: each stream entry has a field `event` holding the JSON form of
//! [`prescient_core::Event`]. Other fields are ignored.
//!
//! The source reads through a consumer group with at-least-once delivery. On start it first
//! re-reads its own pending entries (those delivered to the same consumer name but never acked,
//! e.g. before a crash), then it claims entries that other consumers left pending for longer than
//! `claim_min_idle` (`XAUTOCLAIM`, repeated every `claim_interval`), and then it reads new entries
//! with a blocking `XREADGROUP`. Each [`Delivery`] carries an [`Ack`] that runs `XACK`, or, for
//! [`Ack::dead_letter`], adds the raw payload and the reason to `<stream>:dead` and acks the
//! original in one `MULTI`/`EXEC`. A blocking read and acks use separate connections, so acks are
//! not held up by a waiting read.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prescient_core::{
    Ack, Acknowledge, Delivery, Event, EventSink, EventSource, MalformedMessage, SourceError,
    decode_event,
};
use redis::Value;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::cache::connection_manager;
use crate::error::RedisError;

/// The field of a stream entry that holds the event's JSON.
pub const EVENT_FIELD: &str = "event";

/// How to build a [`RedisStreamSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStreamSourceOptions {
    /// The server, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// The stream's key.
    pub stream: String,
    /// The consumer group (created with `MKSTREAM` if missing).
    pub group: String,
    /// This consumer's name within the group; reuse it after a restart to get its pending
    /// entries back at once.
    pub consumer: String,
    /// Where a newly created group starts: `0` (the whole stream, default) or `$` (new entries).
    pub start_id: String,
    /// How long one `XREADGROUP` blocks waiting for entries (default 1 s).
    pub block: Duration,
    /// The most entries fetched per read (default 100).
    pub batch: usize,
    /// How long an entry must have been pending before it is taken from another consumer
    /// (default 60 s).
    pub claim_min_idle: Duration,
    /// How often to look for such entries (default 30 s).
    pub claim_interval: Duration,
    /// Command timeout, on top of `block` for reads (default 2 s).
    pub response_timeout: Duration,
}

impl RedisStreamSourceOptions {
    /// Options with the defaults for everything but the names.
    pub fn new(
        url: impl Into<String>,
        stream: impl Into<String>,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> Self {
        RedisStreamSourceOptions {
            url: url.into(),
            stream: stream.into(),
            group: group.into(),
            consumer: consumer.into(),
            start_id: "0".to_owned(),
            block: Duration::from_secs(1),
            batch: 100,
            claim_min_idle: Duration::from_secs(60),
            claim_interval: Duration::from_secs(30),
            response_timeout: Duration::from_secs(2),
        }
    }

    /// Sets how long a read blocks.
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Sets the read batch size.
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Sets the idle time after which other consumers' pending entries are claimed.
    pub fn claim_min_idle(mut self, idle: Duration) -> Self {
        self.claim_min_idle = idle;
        self
    }

    /// Sets how often pending entries of other consumers are looked for.
    pub fn claim_interval(mut self, interval: Duration) -> Self {
        self.claim_interval = interval;
        self
    }

    /// Sets where a newly created group starts (`0` or `$`).
    pub fn start_id(mut self, id: impl Into<String>) -> Self {
        self.start_id = id.into();
        self
    }
}

/// Names shared by a source and its acks.
#[derive(Debug)]
struct Names {
    stream: String,
    group: String,
    dead: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Re-reading this consumer's own pending entries after the given id.
    History(String),
    /// Reading new entries.
    Live,
}

/// An [`EventSource`] on a Redis stream, through a consumer group.
///
/// A background task (started by [`RedisStreamSource::connect`], stopped when the source is
/// dropped) reads from Redis into a channel of `batch` deliveries; [`EventSource::next`] only
/// receives from that channel. So cancelling `next` (in a `select!` or a timeout) never loses
/// an entry that Redis already handed out.
pub struct RedisStreamSource {
    rx: mpsc::Receiver<Result<Delivery, SourceError>>,
    task: JoinHandle<()>,
    names: Arc<Names>,
    consumer: String,
}

impl fmt::Debug for RedisStreamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStreamSource")
            .field("stream", &self.names.stream)
            .field("group", &self.names.group)
            .field("consumer", &self.consumer)
            .field("buffered", &self.rx.len())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisStreamSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The reading loop's state, owned by the background task.
struct Reader {
    reader: ConnectionManager,
    acker: ConnectionManager,
    names: Arc<Names>,
    opts: RedisStreamSourceOptions,
    buffer: VecDeque<Delivery>,
    phase: Phase,
    group_ready: bool,
    next_claim: Option<Instant>,
    claim_cursor: String,
}

fn config_error(what: &str) -> RedisError {
    RedisError::Config(format!("{what} must not be empty"))
}

impl RedisStreamSource {
    /// Connects, creates the consumer group if it does not exist, and starts reading.
    ///
    /// # Errors
    /// [`RedisError::Config`] for a bad URL or empty names, [`RedisError::Unavailable`] when
    /// the server cannot be reached, [`RedisError::Backend`] when the group cannot be created.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn connect(opts: RedisStreamSourceOptions) -> Result<Self, RedisError> {
        for (name, v) in [
            ("stream", &opts.stream),
            ("group", &opts.group),
            ("consumer", &opts.consumer),
        ] {
            if v.is_empty() {
                return Err(config_error(name));
            }
        }
        if opts.batch == 0 {
            return Err(RedisError::Config("batch must be at least 1".to_owned()));
        }
        let connect_timeout = Duration::from_secs(1);
        let reader = connection_manager(
            &opts.url,
            opts.response_timeout + opts.block,
            connect_timeout,
        )
        .await?;
        let acker = connection_manager(&opts.url, opts.response_timeout, connect_timeout).await?;
        let names = Arc::new(Names {
            stream: opts.stream.clone(),
            group: opts.group.clone(),
            dead: format!("{}:dead", opts.stream),
        });
        let consumer = opts.consumer.clone();
        let (tx, rx) = mpsc::channel(opts.batch);
        let mut reader = Reader {
            reader,
            acker,
            names: Arc::clone(&names),
            opts,
            buffer: VecDeque::new(),
            phase: Phase::History("0".to_owned()),
            group_ready: false,
            next_claim: None,
            claim_cursor: "0-0".to_owned(),
        };
        reader.ensure_group().await?;
        let task = tokio::spawn(reader.run(tx));
        Ok(RedisStreamSource {
            rx,
            task,
            names,
            consumer,
        })
    }

    /// The dead-letter stream's key: `<stream>:dead`.
    pub fn dead_letter_stream(&self) -> &str {
        &self.names.dead
    }
}

impl Reader {
    /// Reads until the source is dropped, retrying failures with backoff after reporting them.
    async fn run(mut self, tx: mpsc::Sender<Result<Delivery, SourceError>>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.fill().await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    while let Some(d) = self.buffer.pop_front() {
                        if tx.send(Ok(d)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if let RedisError::Backend(inner) = &e
                        && inner.code() == Some("NOGROUP")
                    {
                        warn!(message = "Consumer group vanished; recreating it.", stream = %self.names.stream);
                        self.group_ready = false;
                    }
                    warn!(message = "Reading the stream failed.", error = %e, stream = %self.names.stream);
                    if tx.send(Err(e.into())).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    }

    async fn ensure_group(&mut self) -> Result<(), RedisError> {
        if self.group_ready {
            return Ok(());
        }
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.names.stream)
            .arg(&self.names.group)
            .arg(&self.opts.start_id)
            .arg("MKSTREAM")
            .query_async(&mut self.acker)
            .await;
        match r {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        self.group_ready = true;
        Ok(())
    }

    fn ack_for(&self, id: &str, raw: Bytes) -> Ack {
        Ack::new(Box::new(StreamAck {
            conn: self.acker.clone(),
            names: Arc::clone(&self.names),
            id: id.to_owned(),
            raw,
        }))
    }

    /// Turns entries into deliveries; deleted entries (no fields) are acked and skipped.
    async fn enqueue(
        &mut self,
        entries: Vec<RawEntry>,
        attempts: &HashMap<String, u32>,
    ) -> Result<(), RedisError> {
        for entry in entries {
            let Some(fields) = entry.fields else {
                debug!(message = "Pending entry was deleted; acking it.", id = %entry.id);
                let _: i64 = redis::cmd("XACK")
                    .arg(&self.names.stream)
                    .arg(&self.names.group)
                    .arg(&entry.id)
                    .query_async(&mut self.acker)
                    .await?;
                continue;
            };
            let attempt = attempts.get(&entry.id).copied().unwrap_or(1).max(1);
            let (payload, raw) = decode(fields);
            let ack = self.ack_for(&entry.id, raw);
            self.buffer.push_back(Delivery {
                payload,
                attempt,
                ack,
            });
        }
        Ok(())
    }

    /// Delivery counts of this consumer's pending entries between two ids.
    async fn delivery_counts(
        &mut self,
        first: &str,
        last: &str,
        count: usize,
    ) -> Result<HashMap<String, u32>, RedisError> {
        let v: Value = redis::cmd("XPENDING")
            .arg(&self.names.stream)
            .arg(&self.names.group)
            .arg(first)
            .arg(last)
            .arg(count)
            .arg(&self.opts.consumer)
            .query_async(&mut self.acker)
            .await?;
        let mut out = HashMap::new();
        for row in array(v) {
            let row = array(row);
            if let (Some(id), Some(n)) = (row.first().and_then(text), row.get(3).and_then(int)) {
                out.insert(id, u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
        Ok(out)
    }

    async fn with_counts(&mut self, entries: Vec<RawEntry>) -> Result<(), RedisError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let (first, last) = (first.id.clone(), last.id.clone());
        let counts = self.delivery_counts(&first, &last, entries.len()).await?;
        self.enqueue(entries, &counts).await
    }

    /// Reads this consumer's own pending entries after `cursor`; `false` when there are none.
    async fn read_history(&mut self, cursor: String) -> Result<bool, RedisError> {
        let v: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.names.group)
            .arg(&self.opts.consumer)
            .arg("COUNT")
            .arg(self.opts.batch)
            .arg("STREAMS")
            .arg(&self.names.stream)
            .arg(&cursor)
            .query_async(&mut self.reader)
            .await?;
        let entries = stream_entries(v);
        let Some(last) = entries.last() else {
            return Ok(false);
        };
        self.phase = Phase::History(last.id.clone());
        self.with_counts(entries).await?;
        Ok(true)
    }

    /// Claims entries other consumers left pending too long; `true` if any were claimed.
    async fn claim_stale(&mut self) -> Result<bool, RedisError> {
        let idle = u64::try_from(self.opts.claim_min_idle.as_millis()).unwrap_or(u64::MAX);
        let v: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.names.stream)
            .arg(&self.names.group)
            .arg(&self.opts.consumer)
            .arg(idle)
            .arg(&self.claim_cursor)
            .arg("COUNT")
            .arg(self.opts.batch)
            .query_async(&mut self.acker)
            .await?;
        let mut parts = array(v).into_iter();
        let next = parts.next().and_then(|c| text(&c));
        let entries = parts.next().map(entry_list).unwrap_or_default();
        match next {
            Some(c) if c != "0-0" => self.claim_cursor = c,
            _ => {
                self.claim_cursor = "0-0".to_owned();
                self.next_claim = Some(Instant::now() + self.opts.claim_interval);
            }
        }
        if entries.is_empty() {
            return Ok(false);
        }
        debug!(message = "Claimed stale pending entries.", count = entries.len(), stream = %self.names.stream);
        self.with_counts(entries).await?;
        Ok(true)
    }

    async fn read_new(&mut self) -> Result<(), RedisError> {
        let block = u64::try_from(self.opts.block.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let v: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.names.group)
            .arg(&self.opts.consumer)
            .arg("COUNT")
            .arg(self.opts.batch)
            .arg("BLOCK")
            .arg(block)
            .arg("STREAMS")
            .arg(&self.names.stream)
            .arg(">")
            .query_async(&mut self.reader)
            .await?;
        let entries = stream_entries(v);
        self.enqueue(entries, &HashMap::new()).await
    }

    async fn fill(&mut self) -> Result<(), RedisError> {
        self.ensure_group().await?;
        match self.phase.clone() {
            Phase::History(cursor) => {
                if !self.read_history(cursor).await? {
                    self.phase = Phase::Live;
                }
                Ok(())
            }
            Phase::Live => {
                let claim_due = self.next_claim.is_none_or(|t| Instant::now() >= t);
                if claim_due && self.claim_stale().await? {
                    return Ok(());
                }
                self.read_new().await
            }
        }
    }
}

#[async_trait]
impl EventSource for RedisStreamSource {
    /// The next delivery; waits for new entries indefinitely (a Redis stream never ends).
    /// An error reports one failed read; the background task retries on its own with backoff,
    /// so calling `next` again is the way to go on.
    ///
    /// # Cancel safety
    /// Cancel safe: it only receives from the channel the background reader fills. Entries
    /// still in the channel when the source is dropped stay pending in the group and are
    /// delivered again, to this consumer name on restart, or to any consumer by the claim once
    /// idle for `claim_min_idle`.
    async fn next(&mut self) -> Result<Option<Delivery>, SourceError> {
        match self.rx.recv().await {
            Some(r) => r.map(Some),
            None => Err(SourceError::Unavailable(
                "the stream reader task stopped".to_owned(),
            )),
        }
    }
}

/// The ack of one stream entry.
struct StreamAck {
    conn: ConnectionManager,
    names: Arc<Names>,
    id: String,
    raw: Bytes,
}

impl fmt::Debug for StreamAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamAck")
            .field("stream", &self.names.stream)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn ack_error(e: redis::RedisError) -> SourceError {
    SourceError::Ack(e.to_string())
}

#[async_trait]
impl Acknowledge for StreamAck {
    async fn ack(self: Box<Self>) -> Result<(), SourceError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("XACK")
            .arg(&self.names.stream)
            .arg(&self.names.group)
            .arg(&self.id)
            .query_async(&mut conn)
            .await
            .map_err(ack_error)?;
        Ok(())
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), SourceError> {
        let mut conn = self.conn.clone();
        warn!(message = "Dead-lettering stream entry.", stream = %self.names.stream, id = %self.id, reason);
        redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(&self.names.dead)
            .arg("*")
            .arg(EVENT_FIELD)
            .arg(self.raw.as_ref())
            .arg("error")
            .arg(reason)
            .arg("source_id")
            .arg(&self.id)
            .ignore()
            .cmd("XACK")
            .arg(&self.names.stream)
            .arg(&self.names.group)
            .arg(&self.id)
            .ignore()
            .exec_async(&mut conn)
            .await
            .map_err(ack_error)
    }
}

/// How to build a [`RedisStreamSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStreamSinkOptions {
    /// The server, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// The stream's key.
    pub stream: String,
    /// Trim the stream to about this many entries on each append (`MAXLEN ~`); default none.
    pub max_len: Option<u64>,
    /// Command timeout (default 2 s).
    pub response_timeout: Duration,
}

impl RedisStreamSinkOptions {
    /// Options with the defaults.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        RedisStreamSinkOptions {
            url: url.into(),
            stream: stream.into(),
            max_len: None,
            response_timeout: Duration::from_secs(2),
        }
    }

    /// Trims the stream to about `n` entries.
    pub fn max_len(mut self, n: u64) -> Self {
        self.max_len = Some(n);
        self
    }
}

/// An [`EventSink`] appending to a Redis stream. Cheap to clone.
#[derive(Clone)]
pub struct RedisStreamSink {
    conn: ConnectionManager,
    stream: String,
    max_len: Option<u64>,
}

impl fmt::Debug for RedisStreamSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStreamSink")
            .field("stream", &self.stream)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl RedisStreamSink {
    /// Connects.
    ///
    /// # Errors
    /// [`RedisError::Config`] for a bad URL or an empty stream name,
    /// [`RedisError::Unavailable`] when the server cannot be reached.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn connect(opts: RedisStreamSinkOptions) -> Result<Self, RedisError> {
        if opts.stream.is_empty() {
            return Err(config_error("stream"));
        }
        let conn =
            connection_manager(&opts.url, opts.response_timeout, Duration::from_secs(1)).await?;
        Ok(RedisStreamSink {
            conn,
            stream: opts.stream,
            max_len: opts.max_len,
        })
    }

    fn xadd(&self, pipe: &mut redis::Pipeline, payload: &[u8]) {
        pipe.cmd("XADD").arg(&self.stream);
        if let Some(n) = self.max_len {
            pipe.arg("MAXLEN").arg("~").arg(n);
        }
        pipe.arg("*").arg(EVENT_FIELD).arg(payload);
    }

    async fn send(&self, payloads: &[Vec<u8>]) -> Result<(), SourceError> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for p in payloads {
            self.xadd(&mut pipe, p);
        }
        let mut conn = self.conn.clone();
        let ids: Vec<String> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| SourceError::from(RedisError::from(e)))?;
        if ids.len() != payloads.len() {
            return Err(SourceError::Unavailable(format!(
                "XADD pipeline returned {} ids for {} events",
                ids.len(),
                payloads.len()
            )));
        }
        Ok(())
    }

    /// Publishes several events in one pipelined round trip, in order.
    ///
    /// # Errors
    /// [`SourceError::Unavailable`] when Redis cannot be reached or refuses; some of the events
    /// may have been appended.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled call may have appended some of the events.
    pub async fn publish_many(&self, events: &[Event]) -> Result<(), SourceError> {
        let mut payloads = Vec::with_capacity(events.len());
        for e in events {
            payloads.push(serde_json::to_vec(e).map_err(|e| SourceError::Config(e.to_string()))?);
        }
        self.send(&payloads).await
    }
}

#[async_trait]
impl EventSink for RedisStreamSink {
    async fn publish(&self, event: &Event) -> Result<(), SourceError> {
        self.publish_many(std::slice::from_ref(event)).await
    }

    async fn publish_raw(&self, payload: Bytes) -> Result<(), SourceError> {
        self.send(&[payload.to_vec()]).await
    }
}

/// One stream entry as read: its id and its fields (`None` for a deleted pending entry).
#[derive(Debug)]
struct RawEntry {
    id: String,
    fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// Decodes the `event` field; anything else is a malformed message.
fn decode(fields: Vec<(Vec<u8>, Vec<u8>)>) -> (Result<Event, MalformedMessage>, Bytes) {
    let names: Vec<String> = fields
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    let Some((_, raw)) = fields
        .into_iter()
        .find(|(k, _)| k == EVENT_FIELD.as_bytes())
    else {
        let error = format!(
            "missing field `{EVENT_FIELD}` (fields: {})",
            names.join(", ")
        );
        return (
            Err(MalformedMessage {
                raw: Bytes::new(),
                error,
            }),
            Bytes::new(),
        );
    };
    let raw = Bytes::from(raw);
    (decode_event(raw.clone()), raw)
}

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        _ => Vec::new(),
    }
}

fn bytes_of(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => text(other).and_then(|s| s.parse().ok()),
    }
}

/// Parses `[[id, [field, value, ...] | nil], ...]`.
fn entry_list(v: Value) -> Vec<RawEntry> {
    let mut out = Vec::new();
    for e in array(v) {
        let mut parts = array(e).into_iter();
        let Some(id) = parts.next().and_then(|id| text(&id)) else {
            continue;
        };
        let fields = match parts.next() {
            Some(Value::Array(kv)) => {
                let mut fields = Vec::with_capacity(kv.len() / 2);
                let mut it = kv.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    if let (Some(k), Some(v)) = (bytes_of(k), bytes_of(v)) {
                        fields.push((k, v));
                    }
                }
                Some(fields)
            }
            _ => None,
        };
        out.push(RawEntry { id, fields });
    }
    out
}

/// Parses the reply of `XREADGROUP` on one stream: `[[name, entries]]`, or nil on timeout.
fn stream_entries(v: Value) -> Vec<RawEntry> {
    match v {
        Value::Map(pairs) => pairs
            .into_iter()
            .flat_map(|(_, entries)| entry_list(entries))
            .collect(),
        other => array(other)
            .into_iter()
            .flat_map(|s| {
                let mut parts = array(s).into_iter();
                let _name = parts.next();
                parts.next().map(entry_list).unwrap_or_default()
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_xreadgroup_replies_with_deleted_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("event"), bulk("{}")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let entries = stream_entries(reply);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].id, "1-0");
        assert_eq!(
            entries[0].fields,
            Some(vec![(b"event".to_vec(), b"{}".to_vec())])
        );
        assert_eq!(entries[1].fields, None);
        assert!(stream_entries(Value::Nil).is_empty());
    }

    #[test]
    fn decode_reports_bad_json_and_missing_field() {
        let (p, raw) = decode(vec![(b"event".to_vec(), b"{not json".to_vec())]);
        let m = p.unwrap_err();
        assert_eq!(m.raw, Bytes::from_static(b"{not json"));
        assert_eq!(raw, m.raw);
        assert!(m.error.contains("invalid event JSON"), "{}", m.error);

        let (p, _) = decode(vec![(b"other".to_vec(), b"x".to_vec())]);
        let m = p.unwrap_err();
        assert!(m.error.contains("missing field `event`"), "{}", m.error);
        assert!(m.error.contains("other"), "{}", m.error);

        let line = r#"{"id":"e1","type":"t","time":"2023-04-03T10:08:18Z","entities":[]}"#;
        let (p, raw) = decode(vec![(b"event".to_vec(), line.as_bytes().to_vec())]);
        assert_eq!(p.unwrap().id, "e1");
        assert_eq!(raw, Bytes::from(line));
    }

    fn with_entities(n: usize) -> Vec<u8> {
        let list = vec![r#"{"kind":"k","id":"1"}"#; n].join(",");
        format!(r#"{{"id":"e","type":"t","time":"2023-04-03T10:08:18Z","entities":[{list}]}}"#)
            .into_bytes()
    }

    #[test]
    fn decode_refuses_an_oversized_entry_and_one_breaking_a_limit() {
        // 100,000 entities: valid JSON of about 2.3 MB, over the 1 MiB a message may have.
        let big = with_entities(100_000);
        assert!(big.len() > prescient_core::limits::MAX_RECORD_BYTES);
        let (p, raw) = decode(vec![(b"event".to_vec(), big.clone())]);
        let m = p.unwrap_err();
        assert!(m.error.starts_with("message too large"), "{}", m.error);
        assert_eq!((raw.len(), m.raw.len()), (big.len(), big.len()));

        let over = with_entities(prescient_core::limits::MAX_ENTITIES + 1);
        let (p, _) = decode(vec![(b"event".to_vec(), over)]);
        let m = p.unwrap_err();
        assert!(
            m.error.contains("10001 entities in one event"),
            "{}",
            m.error
        );
    }
}

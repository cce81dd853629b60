//! `prescient publish`: pushes a log into a broker, at a rate or as fast as possible.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use prescient_core::{Event, EventSink};

use crate::log_args::LogArgs;

/// Publishes the events of a log to NATS JetStream, a Redis stream or a RabbitMQ queue, in time
/// order.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to: `nats://HOST:PORT`, `redis://HOST:PORT` or `amqp://USER:PASS@HOST:PORT/%2f`.
    #[arg(long, value_name = "URL")]
    pub to: String,

    #[command(flatten)]
    pub log: LogArgs,

    /// Events per second (default: as fast as the broker accepts).
    #[arg(long, value_name = "N")]
    pub rate: Option<f64>,

    /// NATS: the subject (default `prescient.events.all`).
    #[arg(long, default_value = "prescient.events.all")]
    pub subject: String,

    /// NATS: the JetStream stream, created capturing the subject if missing; Redis: the stream
    /// key (default `prescient:events`).
    #[arg(long)]
    pub stream: Option<String>,

    /// RabbitMQ: the queue (declared durable if missing).
    #[arg(long, default_value = "prescient.events")]
    pub queue: String,

    /// Publish only the first N events (in time order: events are published by time).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// Connects a sink for `url`.
pub async fn connect_sink(
    url: &str,
    subject: &str,
    stream: Option<&str>,
    queue: &str,
) -> anyhow::Result<Arc<dyn EventSink>> {
    if url.starts_with("nats://") {
        let opts = prescient_nats::NatsSinkOptions {
            url: url.to_owned(),
            subject: subject.to_owned(),
            stream: Some(stream.unwrap_or("PRESCIENT_EVENTS").to_owned()),
            ..Default::default()
        };
        Ok(Arc::new(prescient_nats::NatsSink::connect(opts).await?))
    } else if url.starts_with("redis://") || url.starts_with("rediss://") {
        let opts =
            prescient_redis::RedisStreamSinkOptions::new(url, stream.unwrap_or("prescient:events"));
        Ok(Arc::new(
            prescient_redis::RedisStreamSink::connect(opts).await?,
        ))
    } else if url.starts_with("amqp://") || url.starts_with("amqps://") {
        let opts = prescient_amqp::AmqpSinkOptions {
            url: url.to_owned(),
            routing_key: queue.to_owned(),
            declare_queue: Some(queue.to_owned()),
            ..Default::default()
        };
        Ok(Arc::new(prescient_amqp::AmqpSink::connect(opts).await?))
    } else {
        anyhow::bail!(
            "--to {:?}: expected a nats://, redis:// or amqp:// URL",
            prescient_core::redact_url(url)
        )
    }
}

/// Publishes `events` through `sink`, pacing to `rate` per second if given, and returns the
/// elapsed time (flush included).
pub async fn publish_all(
    sink: &dyn EventSink,
    events: &[Event],
    rate: Option<f64>,
    bar: &ProgressBar,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for (i, e) in events.iter().enumerate() {
        if let Some(r) = rate.filter(|r| *r > 0.0) {
            let due = start + Duration::from_secs_f64(i as f64 / r);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        sink.publish(e)
            .await
            .with_context(|| format!("publishing event {}", e.id))?;
        if i % 256 == 0 {
            bar.set_position(i as u64);
        }
    }
    sink.flush().await.context("flushing the publishes")?;
    bar.set_position(events.len() as u64);
    Ok(start.elapsed())
}

/// Runs `publish`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let log = args.log.load()?;
    // Streamed as it happened: in time order (`--limit` takes the first events in time).
    let mut events = crate::log_args::in_time_order(log.events);
    if let Some(n) = args.limit {
        events.truncate(n);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let sink = connect_sink(&args.to, &args.subject, args.stream.as_deref(), &args.queue)
            .await
            .with_context(|| {
                format!("cannot connect to {}", prescient_core::redact_url(&args.to))
            })?;
        let bar = ProgressBar::new(events.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("publishing [{bar:30}] {pos}/{len} ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let took = publish_all(&*sink, &events, args.rate, &bar).await?;
        bar.finish_and_clear();
        let secs = took.as_secs_f64().max(1e-9);
        println!(
            "published {} events to {} in {:.2} s: {:.0} events/s",
            events.len(),
            prescient_core::redact_url(&args.to),
            secs,
            events.len() as f64 / secs
        );
        anyhow::Ok(())
    })
}

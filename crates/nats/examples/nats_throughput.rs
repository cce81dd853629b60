//! Measures publish and consume throughput against a live NATS JetStream and prints JSON.
//!
//! ```text
//! cargo run -p prescient-nats --example nats_throughput -- [events] [url]
//! ```
//!
//! Publishes `events` (default 100 000) events with a [`NatsSink`] (window 1024), then consumes
//! and acks them all with a [`NatsSource`] (batch 500), on a fresh stream that is deleted at
//! the end.
//!
//! It prints the rates it measured; `docs/tuning.md` keeps the results of earlier runs.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prescient_core::{EntityRef, Event, EventSink, EventSource, Timestamp};
use prescient_nats::{DEFAULT_URL, NatsSink, NatsSinkOptions, NatsSource, NatsSourceOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let url = args.next().unwrap_or_else(|| DEFAULT_URL.to_owned());
    let tag = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let stream = format!("BENCH_{tag}");
    let subject = format!("bench.{tag}.events");

    let opts = NatsSourceOptions {
        url: url.clone(),
        stream: stream.clone(),
        subjects: vec![subject.clone()],
        durable: format!("bench_{tag}"),
        dead_letter_subject: format!("bench.{tag}.dead"),
        batch: 500,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 20_000,
        ..NatsSourceOptions::default()
    };
    let mut source = NatsSource::connect(opts).await?;
    let sink = NatsSink::connect(NatsSinkOptions {
        url: url.clone(),
        subject,
        window: 1024,
        ..NatsSinkOptions::default()
    })
    .await?;

    let events: Vec<Event> = (0..n)
        .map(|i| {
            Event::new(
                format!("e-{i}"),
                "place order",
                Timestamp::from_secs(1_700_000_000 + i as i64),
            )
            .with_entity(EntityRef::new("orders", format!("o-{}", i % 1000)))
            .with_entity(EntityRef::new("customers", format!("c-{}", i % 97)))
        })
        .collect();
    let bytes = serde_json::to_vec(&events[0])?.len();

    let t = Instant::now();
    for e in &events {
        sink.publish(e).await?;
    }
    sink.flush().await?;
    let publish_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut got = 0usize;
    while got < n {
        let d = tokio::time::timeout(Duration::from_secs(10), source.next())
            .await??
            .ok_or("stream ended")?;
        d.ack.ack().await?;
        got += 1;
    }
    let consume_s = t.elapsed().as_secs_f64();
    source.close().await?;

    let client = async_nats::connect(&url).await?;
    let js = async_nats::jetstream::new(client);
    js.delete_stream(&stream).await?;
    js.delete_stream(format!("{stream}_DEAD")).await?;

    println!(
        "{}",
        serde_json::json!({
            "bus": "nats-jetstream",
            "events": n,
            "event_bytes": bytes,
            "publish_s": publish_s,
            "publish_per_s": n as f64 / publish_s,
            "consume_ack_s": consume_s,
            "consume_ack_per_s": n as f64 / consume_s,
        })
    );
    Ok(())
}

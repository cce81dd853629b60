//! Measures publish and consume throughput against a live RabbitMQ and prints JSON.
//!
//! ```text
//! cargo run -p prescient-amqp --example amqp_throughput -- [events] [url]
//! ```
//!
//! Publishes `events` (default 50 000) persistent events with an [`AmqpSink`] (confirms,
//! window 1024), then consumes and acks them all with an [`AmqpSource`] (prefetch 500), on a
//! fresh durable queue that is deleted at the end.
//!
//! Each `basic.ack` waits for lapin's I/O loop to send it. With `SPAWN_ACKS=1` the acks are
//! spawned instead of awaited one by one (errors then go unchecked), which shows how much of
//! the consume time is that wait.
//!
//! It prints the rates it measured; `docs/tuning.md` keeps the results of earlier runs.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use prescient_amqp::{
    AmqpSink, AmqpSinkOptions, AmqpSource, AmqpSourceOptions, DEFAULT_URL, dead_letter_queue,
};
use prescient_core::{EntityRef, Event, EventSink, EventSource, Timestamp};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50_000);
    let url = args.next().unwrap_or_else(|| DEFAULT_URL.to_owned());
    let tag = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let queue = format!("prescient.bench.{tag}");

    let mut source = AmqpSource::connect(AmqpSourceOptions {
        url: url.clone(),
        queue: queue.clone(),
        prefetch: 500,
        ..AmqpSourceOptions::default()
    })
    .await?;
    let sink = AmqpSink::connect(AmqpSinkOptions {
        url: url.clone(),
        routing_key: queue.clone(),
        window: 1024,
        ..AmqpSinkOptions::default()
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
        if std::env::var("SPAWN_ACKS").is_ok() {
            tokio::spawn(d.ack.ack());
        } else {
            d.ack.ack().await?;
        }
        got += 1;
    }
    let consume_s = t.elapsed().as_secs_f64();
    source.close().await?;
    sink.close().await?;

    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    for q in [queue.clone(), dead_letter_queue(&queue)] {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    conn.close(200, "bye".into()).await?;

    println!(
        "{}",
        serde_json::json!({
            "bus": "rabbitmq",
            "events": n,
            "event_bytes": bytes,
            "publish_confirmed_s": publish_s,
            "publish_confirmed_per_s": n as f64 / publish_s,
            "consume_ack_s": consume_s,
            "consume_ack_per_s": n as f64 / consume_s,
        })
    );
    Ok(())
}

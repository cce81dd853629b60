//! Tests of [`AmqpSource`] and [`AmqpSink`] against a live RabbitMQ (`PRESCIENT_TEST_AMQP`,
//! default `amqp://guest:guest@127.0.0.1:5672/%2f`). Without a broker they print `SKIPPED` and
//! pass, unless `CI=true`, where they fail.
//!
//! Every test uses its own queues, named after the process id and the time, and deletes them at
//! the end.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use bytes::Bytes;
use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use lapin::types::AMQPValue;
use lapin::{Connection, ConnectionProperties};
use prescient_amqp::{
    AmqpError, AmqpSink, AmqpSinkOptions, AmqpSource, AmqpSourceOptions, DEFAULT_URL, ERROR_HEADER,
    dead_letter_queue,
};
use prescient_core::{EntityRef, Event, EventSink, EventSource, SourceError, Timestamp};
use prescient_testkit::{service, unavailable, unique};

fn url() -> String {
    service("PRESCIENT_TEST_AMQP", DEFAULT_URL)
}

fn options(name: &str) -> AmqpSourceOptions {
    AmqpSourceOptions {
        url: url(),
        queue: unique(name),
        prefetch: 50,
        ..AmqpSourceOptions::default()
    }
}

/// Connects a source, or returns `None` after printing `SKIPPED` when the broker is
/// unreachable outside CI.
async fn source(opts: &AmqpSourceOptions) -> Option<AmqpSource> {
    match AmqpSource::connect(opts.clone()).await {
        Ok(s) => Some(s),
        Err(AmqpError::Unavailable(e)) => {
            unavailable(format!("RabbitMQ unreachable: {e}"));
            None
        }
        Err(e) => panic!("cannot connect to RabbitMQ: {e}"),
    }
}

async fn sink(opts: &AmqpSourceOptions) -> AmqpSink {
    AmqpSink::connect(AmqpSinkOptions {
        url: opts.url.clone(),
        routing_key: opts.queue.clone(),
        window: 16,
        ..AmqpSinkOptions::default()
    })
    .await
    .expect("sink")
}

async fn admin() -> (Connection, lapin::Channel) {
    let conn = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("admin connection");
    let ch = conn.create_channel().await.expect("admin channel");
    (conn, ch)
}

async fn delete_queues(opts: &AmqpSourceOptions) {
    let (conn, ch) = admin().await;
    for q in [opts.queue.clone(), dead_letter_queue(&opts.queue)] {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("delete queue");
    }
    conn.close(200, "bye".into()).await.expect("close admin");
}

fn event(i: usize) -> Event {
    Event::new(
        format!("e-{i}"),
        "place order",
        Timestamp::from_secs(1_700_000_000 + i as i64),
    )
    .with_entity(EntityRef::new("orders", format!("o-{}", i % 17)))
}

async fn next(src: &mut AmqpSource) -> prescient_core::Delivery {
    tokio::time::timeout(Duration::from_secs(10), src.next())
        .await
        .expect("a delivery in time")
        .expect("next")
        .expect("not ended")
}

#[tokio::test]
async fn nothing_is_lost_across_a_crash() {
    let mut opts = options("crash");
    // The prefetch bounds the unacked deliveries; the first consumer leaves 75 unacked.
    opts.prefetch = 200;
    let Some(mut first) = source(&opts).await else {
        return;
    };
    let sink = sink(&opts).await;
    let n = 300;
    for i in 0..n {
        sink.publish(&event(i)).await.expect("publish");
    }
    sink.flush().await.expect("flush");
    let published: BTreeSet<String> = (0..n).map(|i| format!("e-{i}")).collect();

    // The first consumer sees half the events and acks only every other one, then its
    // connection goes away with the rest unacked.
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut unacked: HashSet<String> = HashSet::new();
    for k in 0..n / 2 {
        let d = next(&mut first).await;
        let e = d.payload.expect("well-formed");
        assert_eq!(d.attempt, 1);
        if k % 2 == 0 {
            d.ack.ack().await.expect("ack");
            acked.insert(e.id.to_string());
        } else {
            unacked.insert(e.id.to_string());
        }
    }
    drop(first);

    let mut second = source(&opts).await.expect("reconnect");
    let mut redelivered = 0;
    while acked != published {
        let d = match tokio::time::timeout(Duration::from_secs(10), second.next()).await {
            Ok(d) => d.expect("next").expect("not ended"),
            Err(_) => panic!(
                "missing after 10 s of silence: {:?}",
                published.difference(&acked).take(10).collect::<Vec<_>>()
            ),
        };
        let e = d.payload.expect("well-formed");
        if unacked.contains(e.id.as_str()) {
            assert_eq!(d.attempt, 2, "{} redelivered", e.id);
            redelivered += 1;
        }
        d.ack.ack().await.expect("ack");
        acked.insert(e.id.to_string());
    }
    assert_eq!(acked, published);
    assert_eq!(redelivered, unacked.len());
    second.close().await.expect("close");
    sink.close().await.expect("close sink");
    delete_queues(&opts).await;
}

#[tokio::test]
async fn malformed_messages_are_dead_lettered_once() {
    let opts = options("dead");
    let Some(mut src) = source(&opts).await else {
        return;
    };
    let sink = sink(&opts).await;
    let raw = Bytes::from_static(b"{\"id\": 42, not json");
    sink.publish_raw(raw.clone()).await.expect("publish raw");
    sink.publish(&event(1)).await.expect("publish");
    sink.flush().await.expect("flush");

    let d = next(&mut src).await;
    let bad = d.payload.expect_err("malformed");
    assert_eq!(bad.raw, raw);
    let reason = format!("undecodable event: {}", bad.error);
    d.ack.dead_letter(&reason).await.expect("dead letter");
    let d = next(&mut src).await;
    assert_eq!(d.payload.as_ref().map(|e| e.id.as_str()), Ok("e-1"));
    d.ack.ack().await.expect("ack");

    // Reconnect: had anything not been acked, it would come back now.
    src.close().await.expect("close");
    let mut src = source(&opts).await.expect("reconnect");
    let again = tokio::time::timeout(Duration::from_millis(1_500), src.next()).await;
    assert!(again.is_err(), "unexpected redelivery: {again:?}");

    // The dead letter is in `<queue>.dead` with the reason.
    let (conn, ch) = admin().await;
    let got = ch
        .basic_get(
            dead_letter_queue(&opts.queue).as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .expect("basic.get")
        .expect("a dead letter");
    assert_eq!(&got.delivery.data[..], &raw[..]);
    let headers = got.delivery.properties.headers().clone().expect("headers");
    let header = headers
        .inner()
        .iter()
        .find(|(k, _)| k.as_str() == ERROR_HEADER)
        .map(|(_, v)| v.clone());
    match header {
        Some(AMQPValue::LongString(s)) => assert_eq!(s.to_string(), reason),
        other => panic!("no {ERROR_HEADER} header: {other:?}"),
    }
    conn.close(200, "bye".into()).await.expect("close admin");
    src.close().await.expect("close");
    sink.close().await.expect("close sink");
    delete_queues(&opts).await;
}

#[tokio::test]
async fn unroutable_publish_is_an_error() {
    let opts = options("unroutable");
    let sink = match AmqpSink::connect(AmqpSinkOptions {
        url: opts.url.clone(),
        routing_key: opts.queue.clone(),
        window: 1,
        ..AmqpSinkOptions::default()
    })
    .await
    {
        Ok(s) => s,
        Err(AmqpError::Unavailable(e)) => {
            unavailable(format!("RabbitMQ unreachable: {e}"));
            return;
        }
        Err(e) => panic!("cannot connect to RabbitMQ: {e}"),
    };
    // No queue of that name: with `mandatory`, the broker returns the message.
    // The error shows on the publish that awaits its window, or at the latest on flush.
    let r = match sink.publish(&event(0)).await {
        Ok(()) => sink.flush().await,
        Err(e) => Err(e),
    };
    let e = r.expect_err("unroutable");
    assert!(
        matches!(e, SourceError::Unavailable(ref m) if m.contains("unroutable")),
        "{e:?}"
    );
    sink.close().await.expect("close");
}

#[tokio::test]
async fn no_broker_is_unavailable() {
    let opts = AmqpSourceOptions {
        url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        connect_timeout: Duration::from_secs(2),
        ..AmqpSourceOptions::default()
    };
    let e = AmqpSource::connect(opts)
        .await
        .expect_err("nothing on port 1");
    assert!(matches!(e, AmqpError::Unavailable(_)), "{e:?}");
}

//! Redis Streams source and sink against a live Redis: redelivery after a crash, claiming
//! from a dead consumer, and dead-lettering of malformed messages.

#![allow(clippy::unwrap_used)] // test helpers fail loudly on setup errors

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use prescient_core::{EntityRef, Event, EventSink, EventSource, Timestamp};
use prescient_redis::{
    RedisStreamSink, RedisStreamSinkOptions, RedisStreamSource, RedisStreamSourceOptions,
};

/// An entry as `XRANGE` returns it: id and fields.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

fn event(i: usize) -> Event {
    Event::new(
        format!("e{i}"),
        "place order",
        Timestamp::from_secs(1_700_000_000 + i as i64),
    )
    .with_entity(EntityRef::new("orders", format!("o-{i}")))
}

fn source_opts(url: &str, stream: &str, consumer: &str) -> RedisStreamSourceOptions {
    RedisStreamSourceOptions::new(url, stream, "prescient", consumer)
        .block(Duration::from_millis(200))
        .batch(7)
}

async fn next_within(src: &mut RedisStreamSource, t: Duration) -> Option<prescient_core::Delivery> {
    match tokio::time::timeout(t, src.next()).await {
        Ok(r) => r.unwrap(),
        Err(_) => None,
    }
}

async fn pending(url: &str, stream: &str) -> i64 {
    let mut con = common::plain(url).await;
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg("prescient")
        .query_async(&mut con)
        .await
        .unwrap();
    match summary {
        redis::Value::Array(v) => match v.first() {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("unexpected XPENDING reply {other:?}"),
        },
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}

#[tokio::test]
async fn unacked_events_are_redelivered_after_a_crash() {
    let Some(url) = common::redis_url("streams_crash").await else {
        return;
    };
    let stream = common::unique("stream-crash");
    let sink = RedisStreamSink::connect(RedisStreamSinkOptions::new(&url, &stream))
        .await
        .unwrap();
    let n = 40;
    let events: Vec<Event> = (0..n).map(event).collect();
    sink.publish_many(&events[..30]).await.unwrap();
    for e in &events[30..] {
        sink.publish(e).await.unwrap();
    }
    let published: BTreeSet<String> = events.iter().map(|e| e.id.to_string()).collect();

    let mut acked = BTreeSet::new();
    let mut unacked = BTreeSet::new();
    {
        let mut first = RedisStreamSource::connect(source_opts(&url, &stream, "c1"))
            .await
            .unwrap();
        for (i, expected) in events.iter().enumerate() {
            let d = next_within(&mut first, Duration::from_secs(5))
                .await
                .expect("fewer deliveries than published");
            assert_eq!(d.attempt, 1);
            let e = d.payload.unwrap();
            assert_eq!(&e, expected, "out of order");
            if i % 2 == 0 {
                d.ack.ack().await.unwrap();
                acked.insert(e.id.to_string());
            } else {
                unacked.insert(e.id.to_string());
            }
        }
        // Crash: the source is dropped with half of its deliveries unacked.
    }
    assert_eq!(pending(&url, &stream).await, (n / 2) as i64);

    let mut second = RedisStreamSource::connect(source_opts(&url, &stream, "c1"))
        .await
        .unwrap();
    let mut redelivered = BTreeSet::new();
    while let Some(d) = next_within(&mut second, Duration::from_secs(1)).await {
        assert!(d.attempt >= 2, "redelivery with attempt {}", d.attempt);
        let e = d.payload.unwrap();
        d.ack.ack().await.unwrap();
        assert!(redelivered.insert(e.id.to_string()), "duplicate {}", e.id);
    }
    assert_eq!(redelivered, unacked);
    let all: BTreeSet<String> = acked.union(&redelivered).cloned().collect();
    assert_eq!(all, published, "events lost");
    assert_eq!(pending(&url, &stream).await, 0);

    // New events still flow to the restarted source.
    sink.publish(&event(99)).await.unwrap();
    let d = next_within(&mut second, Duration::from_secs(5))
        .await
        .expect("an event published after a cancelled next() was lost");
    assert_eq!(d.payload.unwrap().id, "e99");
    d.ack.ack().await.unwrap();
}

#[tokio::test]
async fn entries_of_a_dead_consumer_are_claimed_after_the_idle_time() {
    let Some(url) = common::redis_url("streams_claim").await else {
        return;
    };
    let stream = common::unique("stream-claim");
    let sink = RedisStreamSink::connect(RedisStreamSinkOptions::new(&url, &stream))
        .await
        .unwrap();
    let events: Vec<Event> = (0..5).map(event).collect();
    sink.publish_many(&events).await.unwrap();
    {
        let mut dead = RedisStreamSource::connect(source_opts(&url, &stream, "dead"))
            .await
            .unwrap();
        for _ in 0..5 {
            next_within(&mut dead, Duration::from_secs(5))
                .await
                .unwrap();
        }
    }
    let mut heir = RedisStreamSource::connect(
        source_opts(&url, &stream, "heir")
            .claim_min_idle(Duration::from_millis(300))
            .claim_interval(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        let d = next_within(&mut heir, Duration::from_secs(5))
            .await
            .expect("stale entries were not claimed");
        assert!(d.attempt >= 2, "claimed with attempt {}", d.attempt);
        got.push(d.payload.unwrap().id.to_string());
        d.ack.ack().await.unwrap();
    }
    got.sort();
    assert_eq!(got, vec!["e0", "e1", "e2", "e3", "e4"]);
    assert_eq!(pending(&url, &stream).await, 0);
}

#[tokio::test]
async fn malformed_messages_go_to_the_dead_letter_stream() {
    let Some(url) = common::redis_url("streams_dead").await else {
        return;
    };
    let stream = common::unique("stream-dead");
    let sink = RedisStreamSink::connect(RedisStreamSinkOptions::new(&url, &stream).max_len(1000))
        .await
        .unwrap();
    sink.publish_raw(Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    let mut con = common::plain(&url).await;
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("other")
        .arg("x")
        .query_async(&mut con)
        .await
        .unwrap();
    sink.publish(&event(1)).await.unwrap();

    let mut src = RedisStreamSource::connect(source_opts(&url, &stream, "c1"))
        .await
        .unwrap();
    let bad = next_within(&mut src, Duration::from_secs(5)).await.unwrap();
    let m = bad.payload.as_ref().unwrap_err().clone();
    assert_eq!(m.raw, Bytes::from_static(b"{not json"));
    bad.ack.dead_letter(&m.error).await.unwrap();
    let missing = next_within(&mut src, Duration::from_secs(5)).await.unwrap();
    let m2 = missing.payload.as_ref().unwrap_err().clone();
    assert!(m2.error.contains("missing field"), "{}", m2.error);
    missing.ack.dead_letter(&m2.error).await.unwrap();
    let good = next_within(&mut src, Duration::from_secs(5)).await.unwrap();
    assert_eq!(good.payload.unwrap(), event(1));
    good.ack.ack().await.unwrap();

    assert_eq!(pending(&url, &stream).await, 0);
    let dead: Vec<StreamEntry> = {
        let v: redis::Value = redis::cmd("XRANGE")
            .arg(src.dead_letter_stream())
            .arg("-")
            .arg("+")
            .query_async(&mut con)
            .await
            .unwrap();
        let redis::Value::Array(entries) = v else {
            panic!("bad XRANGE reply {v:?}")
        };
        entries
            .into_iter()
            .map(|e| redis::from_redis_value::<StreamEntry>(e).unwrap())
            .collect()
    };
    assert_eq!(dead.len(), 2);
    let field = |i: usize, name: &str| -> Vec<u8> {
        dead[i]
            .1
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("dead letter {i} has no field {name}"))
    };
    assert_eq!(field(0, "event"), b"{not json");
    assert_eq!(field(0, "error"), m.error.as_bytes());
    assert!(!field(0, "source_id").is_empty());
    assert_eq!(field(1, "error"), m2.error.as_bytes());
}

#[tokio::test]
async fn events_breaking_a_limit_go_to_the_dead_letter_stream() {
    let Some(url) = common::redis_url("streams_limits").await else {
        return;
    };
    let stream = common::unique("stream-limits");
    let sink = RedisStreamSink::connect(RedisStreamSinkOptions::new(&url, &stream).max_len(1000))
        .await
        .unwrap();
    // Valid JSON of 100,000 entities (about 2.3 MB), and an event with a u64::MAX version.
    let mut huge = event(0);
    huge.entities = vec![EntityRef::new("k", "1"); 100_000];
    sink.publish(&huge).await.unwrap();
    let mut versioned = event(1);
    versioned.mutations.push(prescient_core::Mutation {
        kind: "orders".into(),
        id: "o-1".into(),
        version: prescient_core::Version(u64::MAX),
    });
    sink.publish(&versioned).await.unwrap();
    sink.publish(&event(2)).await.unwrap();

    let mut src = RedisStreamSource::connect(source_opts(&url, &stream, "c1"))
        .await
        .unwrap();
    let too_big = next_within(&mut src, Duration::from_secs(5)).await.unwrap();
    let m = too_big.payload.as_ref().unwrap_err().clone();
    assert!(m.error.starts_with("message too large"), "{}", m.error);
    too_big.ack.dead_letter(&m.error).await.unwrap();
    let bad_version = next_within(&mut src, Duration::from_secs(5)).await.unwrap();
    let m2 = bad_version.payload.as_ref().unwrap_err().clone();
    assert!(
        m2.error.contains("version 18446744073709551615"),
        "{}",
        m2.error
    );
    bad_version.ack.dead_letter(&m2.error).await.unwrap();
    let good = next_within(&mut src, Duration::from_secs(5)).await.unwrap();
    assert_eq!(good.payload.unwrap(), event(2));
    good.ack.ack().await.unwrap();

    assert_eq!(pending(&url, &stream).await, 0);
    let mut con = common::plain(&url).await;
    let dead: i64 = redis::cmd("XLEN")
        .arg(src.dead_letter_stream())
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(dead, 2);
}

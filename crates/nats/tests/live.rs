//! Tests of [`NatsSource`] and [`NatsSink`] against a live NATS JetStream
//! (`PRESCIENT_TEST_NATS`, default `nats://127.0.0.1:4222`). Without a server they print
//! `SKIPPED` and pass, unless `CI=true`, where they fail.
//!
//! Every test uses its own stream and subjects, named after the process id and the time, and
//! deletes its streams at the end.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use bytes::Bytes;
use prescient_core::{EntityRef, Event, EventSink, EventSource, SourceError, Timestamp};
use prescient_nats::{
    DEFAULT_URL, ERROR_HEADER, NatsError, NatsSink, NatsSinkOptions, NatsSource, NatsSourceOptions,
    ORIGINAL_SUBJECT_HEADER,
};
use prescient_testkit::{service, unavailable, unique};

fn url() -> String {
    service("PRESCIENT_TEST_NATS", DEFAULT_URL)
}

/// Options for a fresh stream with a 1 s ack wait.
fn options(name: &str) -> NatsSourceOptions {
    let stream = unique(name);
    NatsSourceOptions {
        url: url(),
        subjects: vec![format!("ptest.{stream}.events")],
        dead_letter_subject: format!("ptest.{stream}.dead"),
        durable: format!("{stream}_durable"),
        stream,
        batch: 50,
        ack_wait: Duration::from_secs(1),
        heartbeat: Duration::from_secs(1),
        ..NatsSourceOptions::default()
    }
}

/// Connects a source, or returns `None` after printing `SKIPPED` when the server is
/// unreachable outside CI.
async fn source(opts: &NatsSourceOptions) -> Option<NatsSource> {
    match NatsSource::connect(opts.clone()).await {
        Ok(s) => Some(s),
        Err(NatsError::Unavailable(e)) => {
            unavailable(format!("NATS at {} unreachable: {e}", opts.url));
            None
        }
        Err(e) => panic!("cannot connect to NATS at {}: {e}", opts.url),
    }
}

async fn sink(opts: &NatsSourceOptions) -> NatsSink {
    NatsSink::connect(NatsSinkOptions {
        url: opts.url.clone(),
        subject: opts.subjects[0].clone(),
        window: 16,
        ..NatsSinkOptions::default()
    })
    .await
    .expect("sink")
}

async fn delete_streams(opts: &NatsSourceOptions) {
    let client = async_nats::connect(&opts.url).await.expect("admin client");
    let js = async_nats::jetstream::new(client);
    js.delete_stream(&opts.stream).await.expect("delete stream");
    js.delete_stream(format!("{}_DEAD", opts.stream))
        .await
        .expect("delete dead-letter stream");
}

fn event(i: usize) -> Event {
    Event::new(
        format!("e-{i}"),
        "place order",
        Timestamp::from_secs(1_700_000_000 + i as i64),
    )
    .with_entity(EntityRef::new("orders", format!("o-{}", i % 17)))
}

#[tokio::test]
async fn nothing_is_lost_across_a_crash() {
    let opts = options("crash");
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

    // The first consumer sees half the events and acks only every other one, then crashes.
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut unacked: HashSet<String> = HashSet::new();
    for k in 0..n / 2 {
        let d = tokio::time::timeout(Duration::from_secs(10), first.next())
            .await
            .expect("a delivery in time")
            .expect("next")
            .expect("not ended");
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

    // A new consumer with the same durable name gets everything that was not acked.
    let mut second = source(&opts).await.expect("reconnect");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut redelivered = 0;
    while acked != published {
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing after 40 s: {:?}",
            published.difference(&acked).take(10).collect::<Vec<_>>()
        );
        let d = match tokio::time::timeout(Duration::from_secs(5), second.next()).await {
            Ok(d) => d.expect("next").expect("not ended"),
            Err(_) => continue,
        };
        let e = d.payload.expect("well-formed");
        if unacked.contains(e.id.as_str()) {
            assert!(
                d.attempt >= 2,
                "{} redelivered with attempt {}",
                e.id,
                d.attempt
            );
            redelivered += 1;
        }
        d.ack.ack().await.expect("ack");
        acked.insert(e.id.to_string());
    }
    assert_eq!(acked, published);
    assert!(
        redelivered >= unacked.len(),
        "{redelivered} < {}",
        unacked.len()
    );
    second.close().await.expect("close");
    delete_streams(&opts).await;
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

    let d = src.next().await.expect("next").expect("not ended");
    let bad = d.payload.expect_err("malformed");
    assert_eq!(bad.raw, raw);
    assert!(!bad.error.is_empty());
    let reason = format!("undecodable event: {}", bad.error);
    d.ack.dead_letter(&reason).await.expect("dead letter");

    let d = src.next().await.expect("next").expect("not ended");
    assert_eq!(d.payload.as_ref().map(|e| e.id.as_str()), Ok("e-1"));
    d.ack.ack().await.expect("ack");

    // The dead letter is kept, with the reason and the original subject.
    let client = async_nats::connect(&opts.url).await.expect("admin client");
    let js = async_nats::jetstream::new(client);
    let dead = js
        .get_stream(format!("{}_DEAD", opts.stream))
        .await
        .expect("dead-letter stream");
    let msg = dead
        .get_last_raw_message_by_subject(&opts.dead_letter_subject)
        .await
        .expect("a dead letter");
    assert_eq!(msg.payload, raw);
    assert_eq!(
        msg.headers.get(ERROR_HEADER).map(|v| v.as_str().to_owned()),
        Some(reason.replace(['\n', '\r'], " "))
    );
    assert_eq!(
        msg.headers
            .get(ORIGINAL_SUBJECT_HEADER)
            .map(|v| v.as_str().to_owned()),
        Some(opts.subjects[0].clone())
    );

    // Both were acked: nothing comes back after the ack wait.
    let again = tokio::time::timeout(Duration::from_millis(2_500), src.next()).await;
    assert!(again.is_err(), "unexpected redelivery: {again:?}");
    src.close().await.expect("close");
    delete_streams(&opts).await;
}

#[tokio::test]
async fn dead_letter_subject_inside_own_stream_is_refused() {
    let mut opts = options("overlap");
    opts.subjects = vec![format!("ptest.{}.>", opts.stream)];
    match NatsSource::connect(opts.clone()).await {
        Err(NatsError::Config(m)) => {
            assert!(m.contains("dead-letter subject"), "{m}");
            let client = async_nats::connect(&opts.url).await.expect("admin client");
            let js = async_nats::jetstream::new(client);
            js.delete_stream(&opts.stream).await.expect("delete stream");
        }
        Err(NatsError::Unavailable(e)) => {
            unavailable(format!("NATS at {} unreachable: {e}", opts.url));
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test]
async fn no_server_is_unavailable() {
    let opts = NatsSourceOptions {
        url: "nats://127.0.0.1:1".into(),
        connect_timeout: Duration::from_secs(1),
        ..NatsSourceOptions::default()
    };
    let e = NatsSource::connect(opts)
        .await
        .expect_err("nothing on port 1");
    assert!(matches!(e, NatsError::Unavailable(_)), "{e:?}");
    assert!(matches!(SourceError::from(e), SourceError::Unavailable(_)));
}

/// Starts a private nats-server, connects, kills the server, and checks that `next` returns
/// errors rather than hanging. Skipped when no `nats-server` binary is installed.
#[tokio::test]
async fn next_fails_instead_of_hanging_when_the_server_dies() {
    let bin = [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists());
    let Some(bin) = bin else {
        unavailable("no nats-server binary to start a private server");
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let dir = std::env::temp_dir().join(unique("prescient-nats"));
    let mut server = tokio::process::Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&dir)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start nats-server");
    let mut opts = options("die");
    opts.url = format!("nats://127.0.0.1:{port}");
    opts.heartbeat = Duration::from_millis(300);
    opts.connect_timeout = Duration::from_secs(2);
    let mut src = None;
    for _ in 0..50 {
        if let Ok(s) = NatsSource::connect(opts.clone()).await {
            src = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut src = src.expect("private server up");

    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        server.kill().await.expect("kill nats-server");
    });
    let r = tokio::time::timeout(Duration::from_secs(10), src.next())
        .await
        .expect("next returned in time");
    assert!(matches!(r, Err(SourceError::Unavailable(_))), "{r:?}");
    killer.await.expect("killer");
    // Still down: the next call fails too, in bounded time.
    let r = tokio::time::timeout(Duration::from_secs(10), src.next())
        .await
        .expect("next returned in time");
    assert!(matches!(r, Err(SourceError::Unavailable(_))), "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! The consumer of `bench live`: on its own runtime, it pulls the published events from the
//! run's JetStream stream and reads each event's entities with a [`Reader`], recording each
//! read's latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use prescient_core::Event;

use super::by_thread::on_consumer;
use super::reader::Reader;
use super::report::{Recorder, Sample};

/// Where the consumer starts in the stream.
#[derive(Debug, Clone, Copy)]
pub(super) enum StartAt {
    /// At the first message.
    Start,
    /// After the last message stored when the consumer is created.
    New,
}

/// On the consumer's runtime: connects to NATS (its own connection), creates a JetStream pull
/// consumer `name` on `stream` and reads each event's entities, `concurrency` events at a time,
/// until `n` events were received. Returns once the consumer exists; the task fails with a clear
/// error when nothing arrives for `stall`.
///
/// A pull consumer is reliable where a plain subscription is not: the server keeps what the
/// consumer has not pulled yet, so a consumer that falls behind catches up instead of losing
/// messages (a slow plain subscriber's messages are dropped, and the bench would wait for them
/// forever). It needs no acks (`AckPolicy::None`): a bench run that fails is run again.
#[allow(clippy::too_many_arguments)]
pub(super) async fn consumer(
    rt: &tokio::runtime::Handle,
    nats: String,
    stream: String,
    name: String,
    from: StartAt,
    n: usize,
    reader: Reader,
    rec: Arc<Recorder>,
    concurrency: usize,
    stall: Duration,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<usize>>> {
    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
    let pulled = on_consumer(rt, async move {
        let client = async_nats::connect(&nats)
            .await
            .map_err(|e| anyhow::anyhow!("consumer: cannot connect to {nats}: {e}"))?;
        let js = async_nats::jetstream::new(client.clone());
        let stream = js
            .get_stream(&stream)
            .await
            .map_err(|e| anyhow::anyhow!("consumer: no stream {stream}: {e}"))?;
        let consumer: PullConsumer = stream
            .create_consumer(pull::Config {
                name: Some(name.clone()),
                deliver_policy: match from {
                    StartAt::Start => DeliverPolicy::All,
                    StartAt::New => DeliverPolicy::New,
                },
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("consumer: creating pull consumer {name}: {e}"))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(1_000)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("consumer: starting to pull: {e}"))?;
        anyhow::Ok((client, messages))
    })
    .await??;
    Ok(rt.spawn(async move {
        let (_client, mut messages) = pulled;
        let concurrency = concurrency.max(1);
        let mut reads = futures::stream::FuturesUnordered::new();
        let mut seen = 0usize;
        while seen < n || !reads.is_empty() {
            tokio::select! {
                biased;
                Some(()) = reads.next(), if !reads.is_empty() => {}
                next = tokio::time::timeout(stall, messages.next()),
                    if seen < n && reads.len() < concurrency =>
                {
                    let msg = match next {
                        Err(_) => anyhow::bail!(
                            "the consumer received {seen} of {n} events, then nothing for {} s",
                            stall.as_secs()
                        ),
                        Ok(None) => anyhow::bail!(
                            "the consumer's pull ended after {seen} of {n} events"
                        ),
                        Ok(Some(Err(e))) => anyhow::bail!(
                            "the consumer's pull failed after {seen} of {n} events: {e}"
                        ),
                        Ok(Some(Ok(msg))) => msg,
                    };
                    seen += 1;
                    let Ok(event) = serde_json::from_slice::<Event>(&msg.payload) else {
                        continue;
                    };
                    let keys = event.distinct_keys();
                    if keys.is_empty() {
                        continue;
                    }
                    let reader = reader.clone();
                    let rec = rec.clone();
                    reads.push(async move {
                        let t = Instant::now();
                        let hits = reader.read(&keys).await;
                        rec.record(Sample {
                            ms: t.elapsed().as_secs_f64() * 1e3,
                            keys: keys.len() as u32,
                            hits,
                        });
                    });
                }
            }
        }
        anyhow::Ok(seen)
    }))
}

/// Waits for a consumer task; fails if it fails, panics, or outlives `limit`.
pub(super) async fn join_consumer(
    task: tokio::task::JoinHandle<anyhow::Result<usize>>,
    limit: Duration,
    which: &str,
) -> anyhow::Result<usize> {
    match tokio::time::timeout(limit, task).await {
        Err(_) => anyhow::bail!(
            "the {which} consumer did not finish in {} s",
            limit.as_secs()
        ),
        Ok(Err(e)) => anyhow::bail!("the {which} consumer task failed: {e}"),
        Ok(Ok(r)) => r.with_context(|| format!("the {which} consumer")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test

    use super::*;

    #[tokio::test]
    async fn a_consumer_that_outlives_its_limit_fails_the_bench() {
        let task = tokio::spawn(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            anyhow::Ok(1)
        });
        let e = join_consumer(task, Duration::from_millis(20), "cache-aside")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache-aside consumer did not finish"), "{e}");
    }
}

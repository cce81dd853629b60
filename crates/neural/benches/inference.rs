//! Inference speed of the neural predictor with the default network size (embedding 32,
//! hidden 64, one GRU layer, 10 event types).
//!
//! - `server_batch_256`: 256 events of distinct cases through `NeuralServer::predict_batch`
//!   (one GRU step from each case's kept state, one forward pass). Throughput in predictions/s.
//! - `contexts_batch_256`: `NeuralModel::predict_batch` over 256 full prefixes of 8 events
//!   (the whole history is re-read).
//! - `online_batch_1`: one event through `NeuralPredictor` (observe + forecast): the
//!   batch-1 latency.
//!
//! Run: `cargo bench -p prescient-neural --bench inference`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::FutureExt;
use prescient_core::{
    EntityRef, Event, Observe, OnlineModel, PredictRequest, Predictor, Timestamp,
};
use prescient_neural::{NeuralConfig, NeuralModel, NeuralPredictor, NeuralServer};

fn event(case: usize, i: usize) -> Event {
    let t = format!("t{}", (case * 7 + i * 3) % 10);
    Event::new(
        format!("{case}-{i}"),
        t,
        Timestamp::from_secs(1_700_000_000 + case as i64 * 3600 + i as i64 * 120),
    )
    .with_entity(EntityRef::new("case", case.to_string()).with_role("case"))
}

fn model() -> NeuralModel {
    let cases: Vec<Vec<Event>> = (0..200)
        .map(|c| (0..4 + c % 8).map(|i| event(c, i)).collect())
        .collect();
    let cfg = NeuralConfig {
        epochs: 1,
        ..NeuralConfig::default()
    };
    match NeuralModel::train(&cases, &cfg, &mut |_| {}) {
        Ok((m, _)) => m,
        Err(e) => panic!("training the bench model failed: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    let m = model();
    let mut g = c.benchmark_group("neural");

    // batched, incremental: distinct cases, each with 7 events of history
    let server = NeuralServer::new(m.clone());
    let history: Vec<Event> = (0..256)
        .flat_map(|c| (0..7).map(move |i| event(c, i)))
        .collect();
    let warm: Vec<PredictRequest<'_>> = history
        .iter()
        .map(|e| PredictRequest {
            event: e,
            observe: Observe::Track,
            deadline: None,
        })
        .collect();
    let _ = server.predict_batch(&warm).now_or_never();
    let next: Vec<Event> = (0..256).map(|c| event(c, 7)).collect();
    let reqs: Vec<PredictRequest<'_>> = next
        .iter()
        .map(|e| PredictRequest {
            event: e,
            observe: Observe::Skip,
            deadline: None,
        })
        .collect();
    g.throughput(Throughput::Elements(reqs.len() as u64));
    g.bench_function("server_batch_256", |b| {
        b.iter(|| black_box(server.predict_batch(black_box(&reqs)).now_or_never()))
    });

    // batched, full contexts
    let cases: Vec<Vec<Event>> = (0..256)
        .map(|c| (0..8).map(|i| event(c, i)).collect())
        .collect();
    let ctx: Vec<&[Event]> = cases.iter().map(Vec::as_slice).collect();
    g.bench_function("contexts_batch_256", |b| {
        b.iter(|| black_box(m.predict_batch(black_box(&ctx))))
    });

    // batch 1: one event through the online predictor
    let mut p = NeuralPredictor::new(Arc::new(m.clone()));
    let stream: Vec<Event> = (0..1000)
        .flat_map(|c| (0..8).map(move |i| event(c, i)))
        .collect();
    let mut at = 0usize;
    g.throughput(Throughput::Elements(1));
    g.bench_function("online_batch_1", |b| {
        b.iter(|| {
            let e = &stream[at % stream.len()];
            at += 1;
            p.observe(e, Observe::Track);
            black_box(p.forecast(e))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Inference speed of the neural predictor with the default network size (embedding 32,
//! hidden 64, one GRU layer, 10 event types).
//!
//! - `server_batch_256`: 256 events of distinct cases through `NeuralServer::predict_batch`
//!   (one GRU step from each case's kept state, one forward pass). Throughput in predictions/s.
//! - `contexts_batch_256`: `NeuralModel::predict_batch` over 256 full prefixes of 8 events
//!   (the whole history is re-read).
//! - `online_batch_1`: one event through `NeuralPredictor` (observe + forecast): the
//!   batch-1 latency.
//! - `load`: `NeuralModel::load` of a saved artifact (safetensors + `meta.json`).
//!
//! After criterion's estimates (means), a summary on stdout gives what the targets are stated
//! in: the MEDIAN and p99 of single batch-1 calls timed one by one, the median throughput of
//! `server_batch_256` in predictions/s, and the median load time; for the default network and
//! for one with 400 event types (as large as the largest `tax2017` log's vocabulary), each as
//! the default GRU and as the two-layer Transformer that `--network transformer` trains.
//!
//! Run: `cargo bench -p prescient-neural --bench inference`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group};
use futures::FutureExt;
use prescient_core::{
    EntityRef, Event, Observe, OnlineModel, PredictRequest, Predictor, Timestamp,
};
use prescient_neural::{Cell, NeuralConfig, NeuralModel, NeuralPredictor, NeuralServer};

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
    model_with(10, Cell::Gru)
}

fn model_with(types: usize, cell: Cell) -> NeuralModel {
    let cases: Vec<Vec<Event>> = (0..200.max(types / 2))
        .map(|c| {
            (0..4 + c % 8)
                .map(|i| {
                    let mut e = event(c, i);
                    e.event_type = format!("t{}", (c * 7 + i * 3) % types).into();
                    e
                })
                .collect()
        })
        .collect();
    let cfg = NeuralConfig {
        epochs: 1,
        ..NeuralConfig::for_cell(cell)
    };
    match NeuralModel::train(&cases, &cfg, &mut |_| {}) {
        Ok((m, _)) => m,
        Err(e) => panic!("training the bench model failed: {e}"),
    }
}

/// Requests for `events`, without deadlines.
fn requests(events: &[Event], observe: Observe) -> Vec<PredictRequest<'_>> {
    events
        .iter()
        .map(|event| PredictRequest {
            event,
            observe,
            deadline: None,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let m = model();
    let mut g = c.benchmark_group("neural");

    // batched, incremental: distinct cases, each with 7 events of history
    let server = NeuralServer::new(m.clone());
    let history: Vec<Event> = (0..256)
        .flat_map(|c| (0..7).map(move |i| event(c, i)))
        .collect();
    let _ = server
        .predict_batch(&requests(&history, Observe::Track))
        .now_or_never();
    let next: Vec<Event> = (0..256).map(|c| event(c, 7)).collect();
    let reqs = requests(&next, Observe::Skip);
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

    // loading a saved artifact
    let dir = tempfile::tempdir().expect("a temporary directory");
    m.save(dir.path()).expect("saving the bench model");
    g.throughput(Throughput::Elements(1));
    g.bench_function("load", |b| {
        b.iter(|| black_box(NeuralModel::load(dir.path()).expect("loading")))
    });
    g.finish();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Times calls one by one and prints the medians the targets are stated in.
fn summary(types: usize, cell: Cell) {
    let m = model_with(types, cell);
    // batch 1
    let mut p = NeuralPredictor::new(Arc::new(m.clone()));
    let stream: Vec<Event> = (0..2000)
        .flat_map(|c| (0..8).map(move |i| event(c, i)))
        .collect();
    for e in stream.iter().take(2000) {
        p.observe(e, Observe::Track);
        black_box(p.forecast(e));
    }
    let mut lat: Vec<f64> = Vec::with_capacity(stream.len());
    for e in &stream[2000..] {
        let t = Instant::now();
        p.observe(e, Observe::Track);
        black_box(p.forecast(e));
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let (med, p99) = (median(&mut lat), percentile(&mut lat, 0.99));
    // batched
    let server = NeuralServer::new(m.clone());
    let history: Vec<Event> = (0..256)
        .flat_map(|c| (0..7).map(move |i| event(c, i)))
        .collect();
    let _ = server
        .predict_batch(&requests(&history, Observe::Track))
        .now_or_never();
    let next: Vec<Event> = (0..256).map(|c| event(c, 7)).collect();
    let reqs = requests(&next, Observe::Skip);
    let mut rates: Vec<f64> = (0..200)
        .map(|_| {
            let t = Instant::now();
            black_box(server.predict_batch(&reqs).now_or_never());
            reqs.len() as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    let rate = median(&mut rates);
    // load
    let dir = tempfile::tempdir().expect("a temporary directory");
    m.save(dir.path()).expect("saving the bench model");
    let mut loads: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            black_box(NeuralModel::load(dir.path()).expect("loading"));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let load = median(&mut loads);
    println!(
        "summary ({cell}, {types} event types): batch-1 median {med:.1} us, p99 {p99:.1} us; \
         batched (256) median {rate:.0} predictions/s; load median {load:.2} ms"
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    for cell in [Cell::Gru, Cell::Transformer] {
        summary(10, cell);
        summary(400, cell);
    }
}

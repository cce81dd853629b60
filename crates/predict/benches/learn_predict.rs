//! Learn-and-predict throughput of the online models (`online` is the default combined model): one `observe(Learn)` plus one
//! `forecast` per event, single thread, on real logs in time order.
//!
//! Needs `/work/shared/data` (or `PRESCIENT_DATA`): `verenich_psp/bpi_12_w.csv` and
//! `ocel2_order_management/order-management.json.gz`. A missing log is skipped.
//!
//! Run: `cargo bench -p prescient-predict --bench learn_predict` (the `bench` profile: fat LTO,
//! one codegen unit).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};
use prescient_core::{Event, Observe, OnlineModel};
use prescient_io::{CsvMapping, Format, ImportOptions, read_log};
use prescient_predict::{
    KeyModel, PrescientModel, RelationalModel, ReuseConfig, ReuseModel, SimpleModel,
};

fn data_dir() -> PathBuf {
    std::env::var_os("PRESCIENT_DATA")
        .map_or_else(|| PathBuf::from("/work/shared/data"), PathBuf::from)
}

fn load(path: PathBuf, opts: &ImportOptions) -> Option<Vec<Event>> {
    let log = read_log(&path, opts, &mut |_, _| {}).ok()?;
    let mut events = log.events;
    events.sort_by_key(|e| e.time);
    Some(events)
}

fn logs() -> Vec<(&'static str, Vec<Event>)> {
    let mut out = Vec::new();
    let csv = ImportOptions {
        format: Some(Format::Csv),
        csv: CsvMapping {
            case: Some("CaseID".into()),
            event_type: vec!["ActivityID".into()],
            time: Some("CompleteTimestamp".into()),
            ..CsvMapping::default()
        },
        ..ImportOptions::default()
    };
    if let Some(e) = load(data_dir().join("verenich_psp/bpi_12_w.csv"), &csv) {
        out.push(("bpi_12_w", e));
    }
    let ocel = ImportOptions {
        format: Some(Format::Ocel2),
        ..ImportOptions::default()
    };
    if let Some(e) = load(
        data_dir().join("ocel2_order_management/order-management.json.gz"),
        &ocel,
    ) {
        out.push(("ocel2_order_management", e));
    }
    out
}

fn run(model: &mut dyn OnlineModel, events: &[Event]) -> usize {
    let mut n = 0;
    for e in events {
        model.observe(e, Observe::Learn);
        n += model.forecast(e).entities.len();
    }
    n
}

/// Learn-and-predict through [`OnlineModel::process_batch`], `batch` events at a time, as `serve`
/// hands the model the events at hand.
fn run_batched(model: &mut dyn OnlineModel, events: &[Event], batch: usize) -> usize {
    let mut n = 0;
    for chunk in events.chunks(batch) {
        let items: Vec<(&Event, Observe)> = chunk.iter().map(|e| (e, Observe::Learn)).collect();
        n += model
            .process_batch(&items)
            .iter()
            .map(|f| f.entities.len())
            .sum::<usize>();
    }
    n
}

/// Times learn-and-predict over `events` with a fresh model from `make` per iteration.
fn model<M: OnlineModel>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    events: &[Event],
    make: impl Fn() -> M,
) {
    g.bench_function(name, |b| {
        b.iter_batched(
            &make,
            |mut m| black_box(run(&mut m, events)),
            BatchSize::LargeInput,
        )
    });
}

fn bench(c: &mut Criterion) {
    for (name, events) in logs() {
        let mut g = c.benchmark_group(format!("learn_predict/{name}"));
        g.throughput(Throughput::Elements(events.len() as u64));
        g.sample_size(10);
        // `online` is the default model (`--model online`): relational, reuse-time and keys,
        // with the headline replay's one-hour data-age limit, which turns on the reuse part.
        model(&mut g, "online", &events, || {
            let mut m = PrescientModel::default();
            m.set_max_age(Some(Duration::from_secs(3600)));
            m
        });
        // The same in batches of 64 events, with the reuse-time part on a second thread.
        g.bench_function("online_batches_of_64", |b| {
            b.iter_batched(
                || {
                    let mut m = PrescientModel::default();
                    m.set_max_age(Some(Duration::from_secs(3600)));
                    m.set_parallel_batches(true);
                    m
                },
                |mut m| black_box(run_batched(&mut m, &events, 64)),
                BatchSize::LargeInput,
            )
        });
        model(&mut g, "relational", &events, RelationalModel::default);
        // The parts of `online` besides the relational model, alone.
        model(&mut g, "reuse", &events, || {
            ReuseModel::new(ReuseConfig::default())
        });
        model(&mut g, "keys", &events, KeyModel::default);
        model(&mut g, "simple", &events, SimpleModel::default);
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

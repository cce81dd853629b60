//! `prescient demo`: the whole pipeline on a generated e-commerce workload, with no service.
//!
//! It generates a seeded object-centric shop (customers, orders, items, products, payments,
//! shipments, employees), seeds a SQLite store with one row per entity, replays the events
//! through the real prefetch pipeline in virtual time against the cache-aside baselines (every
//! load also reads the row from SQLite, every write updates it), and prints a report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use prescient_core::{EntityKey, Entry, Version};
use prescient_prefetch::PlannerConfig;
use prescient_replay::synth::{ShopConfig, generate_shop, span};
use prescient_replay::{BackingStore, Capacity, ReplayOptions, Workload};
use prescient_sqlite::SqliteStore;

use crate::cmd::replay::{emit, print_summary, replay_with_progress};
use crate::models::ModelArgs;

/// Run Prescient end to end on a generated e-commerce workload, with no service at all.
///
/// Writes the events (`events.jsonl`), the SQLite store (`store.db`) and the JSON report
/// (`report.json`) into `--out`, and prints a readable report.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the events, the store and the report.
    #[arg(long, default_value = "prescient-demo")]
    pub out: PathBuf,
    /// Days of trading to generate.
    #[arg(long, default_value_t = 28)]
    pub days: u32,
    /// Orders per trading day.
    #[arg(long, default_value_t = 120)]
    pub orders_per_day: u32,
    /// Random seed of the workload.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print the JSON report on stdout too.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug)]
struct Sqlite(SqliteStore);

impl BackingStore for Sqlite {
    fn load(&self, key: &EntityKey) -> Result<Option<u64>, String> {
        let rows = self
            .0
            .load_batch_sync(&key.kind, std::slice::from_ref(&key.id))
            .map_err(|e| e.to_string())?;
        Ok(rows.into_iter().next().flatten().map(|e| e.version.0))
    }
    fn write(&self, key: &EntityKey, version: u64) -> Result<(), String> {
        let data = vec![b'x'; 256];
        self.0
            .upsert_batch_sync(&[(key.clone(), Entry::new(Version(version), data))])
            .map_err(|e| e.to_string())
    }
}

/// Runs the demo.
pub fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let cfg = ShopConfig {
        days: args.days.max(1),
        orders_per_day: args.orders_per_day.max(1),
        seed: args.seed,
        ..ShopConfig::default()
    };
    eprintln!(
        "generating {} days of a shop with {} orders a day (seed {})",
        cfg.days, cfg.orders_per_day, cfg.seed
    );
    let events = generate_shop(&cfg);
    let events_path = args.out.join("events.jsonl");
    let file = std::fs::File::create(&events_path)
        .with_context(|| format!("creating {}", events_path.display()))?;
    prescient_io::write_jsonl(&events, file)
        .with_context(|| format!("writing {}", events_path.display()))?;

    let mutates: Vec<String> = ["orders", "payments", "shipments"]
        .map(String::from)
        .to_vec();
    let workload = Workload::prepare(events, &mutates);
    eprintln!(
        "{} events over {:.0} days touching {} entities; wrote {}",
        workload.events.len(),
        span(&workload.events).as_secs_f64() / 86_400.0,
        workload.distinct_entities(),
        events_path.display()
    );

    let db_path = args.out.join("store.db");
    let _ = std::fs::remove_file(&db_path);
    let store =
        SqliteStore::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?;
    let bar = ProgressBar::new(workload.keys.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} rows")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("seeding");
    for chunk in workload.keys.chunks(5_000) {
        let rows: Vec<(EntityKey, Entry)> = chunk
            .iter()
            .map(|k| (k.clone(), Entry::new(Version(1), vec![b'x'; 256])))
            .collect();
        store.upsert_batch_sync(&rows).context("seeding SQLite")?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    eprintln!(
        "seeded {} rows into {}",
        store.count_sync()?,
        db_path.display()
    );

    let (predictor, model_source) = args.model.build()?;
    let ttl = Duration::from_secs(3600);
    let opts = ReplayOptions {
        log: events_path.display().to_string(),
        capacity: Capacity::Percent(5.0),
        ttl: Some(ttl),
        tick: Some(ttl),
        mutates,
        planner: PlannerConfig {
            lead: Duration::from_millis(4),
            batch_window: Duration::ZERO,
            max_ttl: ttl,
            ..PlannerConfig::default()
        },
        model_source,
        backing: Some(Arc::new(Sqlite(store))),
        ..ReplayOptions::default()
    };
    let report = replay_with_progress(&workload, &opts, predictor.as_ref());
    eprintln!();
    print_summary(&report);
    let lru = report.cache_aside_lru.as_ref().map_or(0.0, |l| l.hit_ratio);
    let p = &report.prescient;
    eprintln!();
    eprintln!("What happened:");
    eprintln!(
        "  A cache of {} entries whose data may be at most an hour old. Cache-aside finds {:.1}% of reads in it;",
        report.capacity,
        lru * 100.0
    );
    eprintln!(
        "  Prescient, predicting which entities the next events touch and when, finds {:.1}% (the ceiling is {:.1}%),",
        p.base.hit_ratio * 100.0,
        report.oracle_hit_ratio * 100.0
    );
    eprintln!(
        "  closing {:.0}% of the gap with {} prefetches, {:.0}% of them useful. Stale reads: {} (orders, payments and",
        p.gap_closed * 100.0,
        p.prefetches,
        p.prefetch_precision * 100.0,
        p.base.stale_reads
    );
    eprintln!(
        "  shipments change on every event; {} SQLite reads and writes checked every version, {} disagreed).",
        p.backing_ops, p.backing_mismatches
    );
    let report_path = args.out.join("report.json");
    emit(&report, args.json, Some(&report_path))?;
    if p.backing_mismatches > 0 || p.base.stale_reads > 0 {
        anyhow::bail!("the demo found inconsistencies; see the report");
    }
    Ok(())
}

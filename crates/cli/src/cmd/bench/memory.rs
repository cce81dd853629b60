//! `prescient bench memory`: how much memory the model's state takes, and how fast it stays,
//! as distinct entities and then distinct event types stream through it.
//!
//! The events are generated as they are fed, so that the process's memory is the model's and
//! not the log's: phase `entities` sends one event per new entity (a few event types, one
//! case entity per four events); phase `types` sends one event per new event type over a small
//! set of entities. The model is built as `serve` and `replay` build it (`--model`,
//! `--memory-mb`) and shown each event as they show it: learned, then forecast. The peak
//! resident set (`VmHWM` of `/proc/self/status`) is read after each phase.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use prescient_core::{EntityRef, Event, Observe, OnlineModel, Timestamp};
use serde::Serialize;

use crate::models::ModelArgs;

/// Options of `bench memory`.
#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Distinct entities to stream (phase `entities`; 0 skips it).
    #[arg(long, default_value_t = 10_000_000)]
    pub entities: u64,
    /// Distinct event types to stream after the entities (phase `types`; 0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub types: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One phase's result.
#[derive(Debug, Serialize)]
struct Phase {
    name: &'static str,
    events: u64,
    seconds: f64,
    events_per_sec: f64,
    /// Events per second over the phase's last tenth: whether throughput held up as the
    /// state grew.
    events_per_sec_last_tenth: f64,
    peak_rss_mb: Option<f64>,
}

/// The result.
#[derive(Debug, Serialize)]
struct Report {
    model: String,
    memory_mb: Option<usize>,
    rss_mb_at_start: Option<f64>,
    phases: Vec<Phase>,
    peak_rss_mb: Option<f64>,
}

/// Runs the command.
pub fn run(args: MemoryArgs) -> anyhow::Result<()> {
    let (kind, file) = args.model.resolve()?;
    if kind.is_neural() {
        anyhow::bail!("--model {kind}: bench memory measures the online models");
    }
    let mut model = crate::models::build_model(
        kind,
        file.as_deref(),
        args.model.network,
        args.model.memory_mb(),
    )?;
    model.set_max_age(Some(Duration::from_secs(3600)));
    let rss_mb_at_start = peak_rss_mb();
    let mut phases = Vec::new();
    if args.entities > 0 {
        phases.push(phase("entities", args.entities, &mut *model, |i| {
            let t = Timestamp::from_secs(1_700_000_000 + i as i64);
            Event::new(format!("e{i}"), TYPES[(i % 4) as usize], t)
                .with_entity(EntityRef::new("case", (i / 4).to_string()).with_role("case"))
                .with_entity(EntityRef::new("item", i.to_string()))
        }));
    }
    if args.types > 0 {
        let start = 1_700_000_000 + args.entities as i64;
        phases.push(phase("types", args.types, &mut *model, |i| {
            let t = Timestamp::from_secs(start + i as i64);
            Event::new(format!("t{i}"), format!("type-{i}"), t)
                .with_entity(EntityRef::new("case", (i % 1024).to_string()).with_role("case"))
        }));
    }
    let report = Report {
        model: args.model.model.clone(),
        memory_mb: args.model.memory_mb(),
        rss_mb_at_start,
        peak_rss_mb: peak_rss_mb(),
        phases,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.phases {
            println!(
                "{}: {} events in {:.1} s, {:.0} events/s ({:.0} in the last tenth), peak RSS {}",
                p.name,
                p.events,
                p.seconds,
                p.events_per_sec,
                p.events_per_sec_last_tenth,
                p.peak_rss_mb
                    .map_or_else(|| "unknown".to_owned(), |m| format!("{m:.0} MB"))
            );
        }
        println!(
            "memory bound: {}",
            report
                .memory_mb
                .map_or_else(|| "none (--memory-mb)".to_owned(), |m| format!("{m} MB"))
        );
    }
    Ok(())
}

const TYPES: [&str; 4] = ["open", "work", "review", "close"];

fn phase(
    name: &'static str,
    n: u64,
    model: &mut dyn OnlineModel,
    event: impl Fn(u64) -> Event,
) -> Phase {
    let bar = ProgressBar::new(n);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{name} [{{bar:30}}] {{pos}}/{{len}} ({{per_sec}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let start = Instant::now();
    let tenth = n - n / 10;
    let mut last_tenth_start = start;
    for i in 0..n {
        if i == tenth {
            last_tenth_start = Instant::now();
        }
        let e = event(i);
        model.observe(&e, Observe::Learn);
        let _ = model.forecast(&e);
        if i % 4096 == 0 {
            bar.set_position(i);
        }
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let last = last_tenth_start.elapsed().as_secs_f64().max(1e-9);
    Phase {
        name,
        events: n,
        seconds,
        events_per_sec: n as f64 / seconds,
        events_per_sec_last_tenth: (n - tenth) as f64 / last,
        peak_rss_mb: peak_rss_mb(),
    }
}

/// The peak resident set of this process so far, in MB (Linux only).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

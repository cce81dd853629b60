//! `prescient explain`: what the online model predicted after one event of a log, and why.

use std::path::PathBuf;

use anyhow::Context;
use prescient_core::{Observe, OnlineModel};
use prescient_predict::{RelationalConfig, RelationalModel};

use crate::log_args::LogArgs;

/// Show what was predicted after an event, and why.
///
/// Replays the log in time order (ties keep file order), learning as the live stream would,
/// up to and including the event, then prints the next types with the contexts they came from,
/// and the entity predictions with their relation, the entity they were found through, the
/// counts behind them and their confidence.
///
/// Example:
///   prescient explain --log helpdesk.csv --case CaseID --type ActivityID
///       --time CompleteTimestamp --event 1234
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub log: LogArgs,

    /// The event's id (for CSV logs without `--id`, its line number).
    #[arg(long, value_name = "ID")]
    pub event: String,

    /// Start from a model written by `prescient train` instead of cold.
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,

    /// Print the explanation as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let log = args.log.load()?;
    let mut model = match &args.snapshot {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            RelationalModel::restore(&bytes)
                .with_context(|| format!("cannot load model {}", p.display()))?
        }
        None => RelationalModel::new(RelationalConfig::default()),
    };
    let mut order: Vec<usize> = (0..log.events.len()).collect();
    order.sort_by_key(|&i| log.events[i].time);
    let mut target = None;
    for &i in &order {
        let e = &log.events[i];
        model.observe(e, Observe::Learn);
        if e.id == args.event.as_str() {
            target = Some(i);
            break;
        }
    }
    let Some(i) = target else {
        anyhow::bail!(
            "no event with id {:?} in {}",
            args.event,
            args.log.log.display()
        );
    };
    let e = &log.events[i];
    let x = model.explain(e);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&x)?);
        return Ok(());
    }
    let ents: Vec<String> = e
        .entities
        .iter()
        .map(|r| format!("{}:{}", r.kind, r.id))
        .collect();
    println!(
        "event {} {:?} at {} [{}]",
        e.id,
        e.event_type.as_str(),
        e.time,
        ents.join(", ")
    );
    println!(
        "model {} after learning the log up to this event",
        model.name()
    );
    match &x.main_entity {
        Some(k) => println!("next type, from the history of {k}:"),
        None => println!("next type (the event has no entities):"),
    }
    for c in &x.contexts {
        let types: Vec<&str> = c.types.iter().map(|t| t.as_str()).collect();
        let mut extra = String::new();
        if c.spec.gap {
            extra.push_str(" +gap");
        }
        if c.spec.clock {
            extra.push_str(" +clock");
        }
        if c.spec.position {
            extra.push_str(" +position");
        }
        println!(
            "  context [{}]{extra}: seen {:.0} times, {} distinct next types",
            types.join(" > "),
            c.count,
            c.distinct
        );
    }
    println!(
        "  raw top-1 probability {:.3}, calibrated:",
        x.raw_top_probability
    );
    for n in &x.next {
        println!(
            "    {:<30} p={:.3} expected at {} (+{:.0} s)",
            n.event_type.as_str(),
            n.probability,
            n.expected_at,
            n.expected_at.secs_since(e.time)
        );
    }
    println!("entities:");
    if x.entities.is_empty() {
        println!("  none: no relation of this event's entities has a learned window yet");
    }
    for p in &x.entities {
        let q = &p.prediction;
        println!(
            "  {} via {} ({}): confidence {:.3} = {:.1} hits / ({:.1} trials + 1), window +{:.0} s .. +{:.0} s",
            q.entity,
            p.via,
            q.relation.as_str(),
            q.confidence,
            p.hits,
            p.trials,
            q.expected_at.secs_since(e.time),
            q.latest.secs_since(e.time)
        );
    }
    Ok(())
}

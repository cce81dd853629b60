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
/// counts behind them and their confidence. With `--neural DIR`, also what a trained network
/// (`prescient train --model neural`) predicts after the case so far, and the mix an ensemble
/// serves.
///
/// Example:
///   prescient explain --log helpdesk.csv --case CaseID --type ActivityID
///       --time CompleteTimestamp --event 1234 --neural models/helpdesk
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

    /// Also explain a trained neural model (an artifact directory written by `prescient train
    /// --model neural`): its next types after the case so far, and its mix with the online model.
    #[arg(long, value_name = "DIR")]
    pub neural: Option<PathBuf>,

    /// Print the explanation as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What the network says after the event.
#[derive(Debug, serde::Serialize)]
struct NeuralView {
    artifact: PathBuf,
    training_log_hash: String,
    validation_accuracy: f64,
    /// The network's most likely next types (given that the case goes on).
    next: Vec<(String, f32)>,
    /// The probability that the case ends here.
    end_of_case: f32,
    /// Seconds until the next event, as the network expects.
    expected_seconds: f64,
    /// The ensemble's weight on the network, chosen on validation data when it was trained.
    ensemble_weight: Option<f32>,
    /// The next types an ensemble serves: the network's and the online model's, mixed (before
    /// the mix's calibration).
    mixed: Vec<(String, f32)>,
}

/// Follows the events up to `e` with the network and says what it predicts after `e`.
fn neural_view(
    dir: &std::path::Path,
    events: &[&prescient_core::Event],
    e: &prescient_core::Event,
    online: &prescient_core::Forecast,
) -> anyhow::Result<NeuralView> {
    let model = crate::models::load_neural(dir)?;
    let mut net = prescient_neural::NeuralPredictor::new(model.clone());
    for ev in events {
        net.observe(ev, Observe::Track);
    }
    let d = net
        .distribution(e)
        .with_context(|| format!("the network failed on event {}", e.id))?;
    let mix = model.ensemble();
    let mixed = mix
        .map(|m| prescient_neural::mix(Some(&d), online, m.weight, e, 5))
        .unwrap_or_default();
    Ok(NeuralView {
        artifact: dir.to_path_buf(),
        training_log_hash: model.info().training_log_hash.clone(),
        validation_accuracy: model.info().report.val_accuracy,
        next: d
            .top(5)
            .into_iter()
            .map(|(t, p)| (t.to_string(), p))
            .collect(),
        end_of_case: d.end_of_case,
        expected_seconds: d.expected_seconds,
        ensemble_weight: mix.map(|m| m.weight),
        mixed: mixed
            .into_iter()
            .map(|n| (n.event_type.to_string(), n.probability))
            .collect(),
    })
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
    let mut seen = Vec::new();
    for &i in &order {
        let e = &log.events[i];
        model.observe(e, Observe::Learn);
        seen.push(e);
        if e.id == args.event.as_str() {
            target = Some(i);
            break;
        }
    }
    let Some(i) = target else {
        let examples: Vec<&str> = log.events.iter().take(3).map(|e| e.id.as_str()).collect();
        anyhow::bail!(
            "no event with id {:?} in {} ({} events; its ids look like {})",
            args.event,
            args.log.log.display(),
            log.events.len(),
            examples.join(", ")
        );
    };
    let e = &log.events[i];
    let x = model.explain(e);
    let neural = match &args.neural {
        Some(dir) => {
            let online = prescient_core::Forecast {
                next: x.next.clone(),
                entities: Vec::new(),
                novelty_discount: None,
            };
            Some(neural_view(dir, &seen, e, &online)?)
        }
        None => None,
    };
    if args.json {
        match &neural {
            Some(n) => println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"online": x, "neural": n}))?
            ),
            None => println!("{}", serde_json::to_string_pretty(&x)?),
        }
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
    if let Some(d) = x.novelty_discount {
        println!(
            "  (the case touched an event type new to the model: calibrated with such cases, \
             the top-1 confidence is {d:.2} of what it would be otherwise)"
        );
    }
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
    if let Some(n) = &neural {
        println!(
            "network {} (trained on a log with hash {}, validation accuracy {:.3}), after the case so far:",
            n.artifact.display(),
            n.training_log_hash
                .get(..12)
                .unwrap_or(&n.training_log_hash),
            n.validation_accuracy
        );
        for (t, p) in &n.next {
            println!("    {t:<30} p={p:.3}");
        }
        println!(
            "  end of case p={:.3}; next event expected in {:.0} s",
            n.end_of_case, n.expected_seconds
        );
        match n.ensemble_weight {
            Some(w) => {
                println!(
                    "  ensemble: {w:.2} x network + {:.2} x online model:",
                    1.0 - w
                );
                for (t, p) in &n.mixed {
                    println!("    {t:<30} p={p:.3}");
                }
            }
            None => println!("  (the artifact has no ensemble weight)"),
        }
    }
    Ok(())
}

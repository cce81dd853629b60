//! `prescient train`: pre-trains a model on a log and writes it to a file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use prescient_core::{Observe, OnlineModel};
use prescient_predict::{RelationalConfig, RelationalModel};

use crate::duration::parse_duration;
use crate::log_args::LogArgs;

/// The models `train` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrainModel {
    /// The online relational model: a versioned snapshot that `--model FILE` starts from.
    Online,
    /// The neural sequence model: an artifact directory (`model.safetensors`, `meta.json`)
    /// that `--model DIR` serves. `--out` names the directory.
    Neural,
}

/// Pre-train a model on a log and write it to a file.
///
/// The events are learned in time order (ties keep file order), as the live stream would
/// teach them. `replay`, `evaluate` and `explain` start from the file with `--model FILE`.
///
/// Example:
///   prescient train --log order-management.json.gz --format ocel2 --out orders.model
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub log: LogArgs,

    /// The model to train.
    #[arg(long, value_enum, default_value = "online")]
    pub model: TrainModel,

    /// The network `--model neural` trains: `gru` (the default: more accurate on three of the
    /// four `tax2017` logs, and faster) or `transformer` (a causal Transformer encoder).
    #[arg(long, default_value = "gru", value_name = "gru|transformer")]
    pub network: prescient_neural::Cell,

    /// Where to write the model (a directory for `--model neural`).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// The widest predicted window of an entity read.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub window: Duration,

    /// How far ahead a predicted entity read may be.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub lookahead: Duration,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let log = args.log.load()?;
    let mut order: Vec<usize> = (0..log.events.len()).collect();
    order.sort_by_key(|&i| log.events[i].time);
    let mut model = match args.model {
        TrainModel::Neural => return train_neural(&args, &log.events),
        TrainModel::Online => RelationalModel::new(RelationalConfig {
            window: args.window,
            lookahead: args.lookahead,
            ..RelationalConfig::default()
        }),
    };
    let bar = ProgressBar::new(order.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} events ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("training");
    let start = Instant::now();
    for (n, &i) in order.iter().enumerate() {
        model.observe(&log.events[i], Observe::Learn);
        if n % 4096 == 0 {
            bar.set_position(n as u64);
        }
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let bytes = model.snapshot()?;
    std::fs::write(&args.out, &bytes)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "trained {} on {} events in {secs:.2} s ({} entities, {} contexts); wrote {} ({} bytes)",
        model.name(),
        order.len(),
        model.tracked_entities(),
        model.contexts(),
        args.out.display(),
        bytes.len()
    );
    Ok(())
}

/// Trains the neural model on the log's cases (events grouped by case entity, in file order)
/// and writes the artifact directory.
fn train_neural(args: &Args, events: &[prescient_core::Event]) -> anyhow::Result<()> {
    let mut index = std::collections::HashMap::new();
    let mut cases: Vec<Vec<prescient_core::Event>> = Vec::new();
    for e in events {
        let key = prescient_neural::case_key(e);
        let next = cases.len();
        let i = *index.entry(key).or_insert(next);
        if i == next {
            cases.push(Vec::new());
        }
        cases[i].push(e.clone());
    }
    let mut bar = prescient_neural::ProgressBarReporter::new();
    let cfg = prescient_neural::NeuralConfig::for_cell(args.network);
    let (mut model, report) =
        prescient_neural::NeuralModel::train(&cases, &cfg, &mut |p| bar.report(p))?;
    bar.finish();
    // The mix with the online model that `--model ensemble` serves, chosen on the same
    // validation cases the network was validated on.
    let (_, mix) = prescient_neural::fit_mix(
        &model,
        &cases,
        cfg.validation_share,
        RelationalModel::new(RelationalConfig::default()),
    );
    model.set_ensemble(Some(mix));
    model
        .save(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "trained neural on {} cases in {:.2} s ({} epochs, best {}, validation accuracy {:.4}, ece {:.4}); \
         ensemble weight {:.2} (validation accuracy {:.4}, online alone {:.4}); wrote {}",
        cases.len(),
        report.train_seconds,
        report.epochs,
        report.best_epoch,
        report.val_accuracy,
        report.val_ece,
        mix.weight,
        mix.validation_accuracy,
        mix.online_accuracy,
        args.out.display()
    );
    Ok(())
}

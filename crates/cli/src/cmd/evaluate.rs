//! `prescient evaluate`: next-event and entity prediction quality under the published
//! protocols `tax2017`, `pt2021` and `chrono` (`shared/specs/evaluate.md`).

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use prescient_core::{Event, Forecast, Observe, OnlineModel};
use prescient_eval::{EvalOptions, Protocol, Report, evaluate};
use prescient_predict::{ContextSpec, HeldOutCalibrated, RelationalConfig, RelationalModel};

use crate::duration::parse_duration;
use crate::log_args::LogArgs;
use crate::models::{ModelArgs, ModelKind, build_model, neural_learner};

/// Measure prediction quality on a log under a published protocol.
///
/// `tax2017` and `pt2021` train on the first cases and score next-activity predictions on the
/// held-out cases, which the model only tracks as context and never learns from. `chrono` sorts
/// by time, trains on the first 2/3 of events and then scores each event before learning from
/// what follows it (prequential), including the entities predicted within `--horizon`.
///
/// Example:
///   prescient evaluate --log helpdesk.csv --case CaseID --type ActivityID
///       --time CompleteTimestamp --protocol tax2017 --json
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub model: ModelArgs,

    /// The protocol: tax2017, pt2021 or chrono.
    #[arg(long, default_value = "tax2017", value_parser = parse_protocol)]
    pub protocol: Protocol,

    /// chrono: entities touched within this time after an event are its truth set; the online
    /// model's prediction windows are also limited to it.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub horizon: Duration,

    /// chrono: least confidence of an entity prediction that counts (would be prefetched).
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,

    /// The online model's next-type context chain, most general first: a history length
    /// followed by `g` (time since the entity's previous event), `c` (hour block and weekend),
    /// `p` (the entity's event count), e.g. `1,2,3,4,2g` (default: the model's).
    #[arg(long, value_delimiter = ',', value_name = "SPEC")]
    pub contexts: Vec<ContextSpec>,

    /// The online model's decay: counts of a context halve once they pass this.
    #[arg(long, value_name = "N")]
    pub max_count: Option<f32>,

    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    s.parse::<Protocol>().map_err(|e| e.to_string())
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let log = args.log.load()?;
    let (kind, file) = args.model.resolve()?;
    let mut cfg = RelationalConfig {
        window: args.horizon,
        lookahead: args.horizon,
        min_lead: Duration::ZERO,
        ..RelationalConfig::default()
    };
    if !args.contexts.is_empty() {
        cfg.contexts = args.contexts.clone();
    }
    if let Some(n) = args.max_count {
        cfg.max_count = n;
    }
    let mut model: Box<dyn OnlineModel> = match (kind, &file) {
        // frozen on held-out cases, the online model is recalibrated on held-out training cases
        (ModelKind::Online | ModelKind::Relational, None)
            if matches!(args.protocol, Protocol::Tax2017 | Protocol::Pt2021) =>
        {
            let fresh = cfg.clone();
            Box::new(HeldOutCalibrated::new(
                RelationalModel::new(cfg),
                Box::new(move || RelationalModel::new(fresh.clone())),
            ))
        }
        (ModelKind::Online | ModelKind::Relational, None) => Box::new(RelationalModel::new(cfg)),
        // the ensemble's online part is the model `--model online` evaluates
        (ModelKind::Ensemble, None) => {
            let fresh = cfg.clone();
            Box::new(prescient_neural::EnsembleModel::new(
                neural_learner(args.model.network),
                RelationalModel::new(cfg),
                Box::new(move || RelationalModel::new(fresh.clone())),
            ))
        }
        _ => build_model(
            kind,
            file.as_deref(),
            args.model.network,
            args.model.memory_mb(),
        )?,
    };
    let name = log.source.file_name().map_or_else(
        || log.source.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let opts = EvalOptions {
        protocol: args.protocol,
        horizon: args.horizon,
        threshold: args.threshold,
        log: name,
    };
    let bar = ProgressBar::new(log.events.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} events ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(args.protocol.name());
    let mut timed = FirstUse {
        // `--model online` evaluates the online model's next types: its relational part's.
        name: (kind == ModelKind::Online).then_some("online"),
        inner: model.as_mut(),
        first: None,
    };
    let result = evaluate(&mut timed, &log.events, &opts, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    let first_use = timed.first.unwrap_or_default();
    bar.finish_and_clear();
    let mut report = result?;
    if matches!(args.protocol, Protocol::Tax2017 | Protocol::Pt2021) {
        move_lazy_training(&mut report, first_use);
    }
    summary(&report, file.is_some());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// Times the model's first call after learning. The neural model and the ensemble train (and
/// choose their weight) lazily, on that call, which the protocols count as scoring time.
#[derive(Debug)]
struct FirstUse<'a> {
    /// The name reported instead of the model's own.
    name: Option<&'static str>,
    inner: &'a mut dyn OnlineModel,
    first: Option<Duration>,
}

impl FirstUse<'_> {
    fn timed<R>(&mut self, f: impl FnOnce(&mut dyn OnlineModel) -> R) -> R {
        if self.first.is_some() {
            return f(&mut *self.inner);
        }
        let started = Instant::now();
        let r = f(&mut *self.inner);
        self.first = Some(started.elapsed());
        r
    }
}

impl OnlineModel for FirstUse<'_> {
    fn name(&self) -> &str {
        self.name.unwrap_or_else(|| self.inner.name())
    }

    fn observe(&mut self, event: &Event, mode: Observe) {
        if mode == Observe::Learn {
            self.inner.observe(event, mode);
        } else {
            self.timed(|m| m.observe(event, mode));
        }
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        self.timed(|m| m.forecast(event))
    }

    fn set_max_age(&mut self, max_age: Option<Duration>) {
        self.inner.set_max_age(max_age);
    }

    fn set_novelty_discount(&mut self, on: bool) {
        self.inner.set_novelty_discount(on);
    }
}

/// Moves the first call's time (lazy training) from the scoring clock to `train_seconds`, so
/// that `predict_per_sec` measures predictions alone (`tax2017` and `pt2021`, whose rate is
/// `scored` over the scoring time).
fn move_lazy_training(r: &mut Report, first_use: Duration) {
    let first = first_use.as_secs_f64();
    if r.predict_per_sec <= 0.0 || r.scored == 0 {
        return;
    }
    let scoring = r.scored as f64 / r.predict_per_sec;
    r.train_seconds += first;
    let rest = scoring - first;
    if rest > 0.0 {
        r.predict_per_sec = r.scored as f64 / rest;
    }
}

fn summary(r: &Report, pretrained: bool) {
    eprintln!(
        "{} on {} with model {}{}: {} scored rows",
        r.protocol,
        r.log,
        r.model,
        if pretrained { " (pre-trained)" } else { "" },
        r.scored
    );
    eprintln!(
        "  next type: accuracy {:.4}, top-3 {:.4}, ece {:.4}",
        r.next_type_accuracy, r.next_type_top3_accuracy, r.ece
    );
    if let Some(m) = r.mean_over_prefix_lengths {
        eprintln!("  mean over prefix lengths {m:.4}");
    }
    if let (Some(p), Some(rc)) = (r.entity_precision, r.entity_recall) {
        eprintln!(
            "  entities: precision {p:.4}, recall {rc:.4} (horizon {:.0} s, threshold {})",
            r.horizon_s.unwrap_or(0.0),
            r.threshold.unwrap_or(0.0)
        );
    }
    if let Some(m) = r.time_to_next_mae_s {
        eprintln!("  time to next: MAE {m:.1} s");
    }
    let test = if r.test_observe == "track" {
        "test cases tracked as context only, never learned from"
    } else {
        "prequential: each event scored before what follows is learned"
    };
    eprintln!(
        "  trained on {} events in {:.2} s; {:.0} predictions/s; {test}",
        r.train_events, r.train_seconds, r.predict_per_sec
    );
}

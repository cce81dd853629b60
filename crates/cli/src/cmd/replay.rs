//! `prescient replay`: replays a log through the real pipeline in virtual time and compares
//! Prescient with cache-aside baselines and the oracle (`shared/specs/replay.md`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use prescient_prefetch::PlannerConfig;
use prescient_replay::{Capacity, Policy, ReplayOptions, ReplayReport, Workload};

use crate::duration::{Limit, parse_duration, parse_optional_duration};
use crate::log_args::LogArgs;
use crate::models::ModelArgs;

/// Replay a log through the prefetch pipeline in virtual time and measure it.
///
/// Every policy sees the same events, capacity, data-age limit and latencies:
/// `cache_aside_lru`, `cache_aside_tinylfu` (moka's TinyLFU) and `prescient` (the same reads plus
/// prediction-driven prefetching by the real prefetch manager). The oracle hit ratio is the
/// ceiling of a perfect just-in-time prefetcher. The headline scenario is
/// `--capacity 5% --ttl 1h --db-latency 2ms`.
///
/// Example:
///   prescient replay --log order-management.json.gz --format ocel2 --capacity 5% --ttl 1h --json
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub model: ModelArgs,

    /// Cache capacity: entries (`1000`) or a share of the log's distinct entities (`5%`).
    #[arg(long, default_value = "5%", value_parser = parse_capacity)]
    pub capacity: Capacity,

    /// The most any cached entry may age (`1h`, `1d`, `none`). Binds every policy.
    #[arg(long, default_value = "1h", value_parser = parse_optional_duration)]
    pub ttl: Limit,

    /// Time a store load takes.
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    pub db_latency: Duration,

    /// Time a cache hit takes.
    #[arg(long, default_value = "0.1ms", value_parser = parse_duration)]
    pub cache_latency: Duration,

    /// Time between an event and the consumer's reads of its entities.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub consumer_delay: Duration,

    /// After this much event time without an event, ask the predictor what comes due (refreshes
    /// due before the next event arrives), and again every as long until the next event. The
    /// default is the data-age limit (`--ttl`): the least that lets every refresh window be
    /// predicted before it starts. `none`: only at events.
    #[arg(long, value_parser = parse_optional_duration)]
    pub tick: Option<Limit>,

    /// An event touching an entity of this kind writes a new version of it (repeatable).
    #[arg(long = "mutates", value_name = "KIND")]
    pub mutates: Vec<String>,

    /// Payload size of each store row, in bytes (reported; the simulated store does not copy data).
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,

    /// Least confidence worth a prefetch. With `--target-precision` (the default) this is only
    /// where the learned threshold starts.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,

    /// Learn the confidence threshold online so that about this share of prefetches is used
    /// (`none`: keep `--threshold` fixed).
    #[arg(long, default_value = "0.5", value_name = "SHARE|none")]
    pub target_precision: String,

    /// How long before the expected read a prefetch is loaded (default: twice the store latency).
    #[arg(long, value_parser = parse_duration)]
    pub lead: Option<Duration>,

    /// Share of prefetch loads that fail, to exercise retries and backoff (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub prefetch_failure_rate: f64,

    /// Replay only the first N reads (the spec's P3 reference numbers use 1000000).
    #[arg(long, value_name = "N")]
    pub max_reads: Option<u64>,

    /// Skip the baselines (then `gap_closed` is not computed).
    #[arg(long)]
    pub no_baselines: bool,

    /// Seed for injected failures and retry jitter.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Print the JSON report on stdout.
    #[arg(long)]
    pub json: bool,

    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

fn parse_capacity(s: &str) -> Result<Capacity, String> {
    s.parse()
}

/// Parses a share in `[0, 1]`, or `none`.
fn parse_share(s: &str) -> Result<Option<f32>, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(Some(v)),
        _ => Err(format!(
            "expected a share between 0 and 1, or `none`; got {s:?}"
        )),
    }
}

/// The shortest data-age limit: the planner's shortest TTL.
const MIN_TTL: Duration = Duration::from_secs(1);

impl Args {
    /// Checks the times given, before anything is loaded.
    fn check_times(&self) -> anyhow::Result<()> {
        if let Some(ttl) = self.ttl.0
            && ttl < MIN_TTL
        {
            anyhow::bail!(
                "--ttl {ttl:?}: the data-age limit must be at least 1s (the shortest TTL a \
                 prefetch is cached with), or `none` for no limit"
            );
        }
        if let Some(Limit(Some(tick))) = self.tick
            && tick.is_zero()
        {
            anyhow::bail!("--tick 0s: ticks must be apart; use `none` to tick only at events");
        }
        Ok(())
    }

    /// The replay options these arguments describe.
    pub fn options(&self, log_name: String, model_source: String) -> anyhow::Result<ReplayOptions> {
        if !(0.0..=1.0).contains(&self.prefetch_failure_rate) {
            anyhow::bail!(
                "--prefetch-failure-rate must be between 0 and 1, got {}",
                self.prefetch_failure_rate
            );
        }
        self.check_times()?;
        if !(0.0..=1.0).contains(&self.threshold) {
            anyhow::bail!(
                "--threshold must be between 0 and 1, got {}",
                self.threshold
            );
        }
        let planner = PlannerConfig {
            threshold: self.threshold,
            target_precision: parse_share(&self.target_precision)
                .map_err(|e| anyhow::anyhow!("--target-precision: {e}"))?,
            lead: self.lead.unwrap_or(self.db_latency * 2),
            batch_window: Duration::ZERO,
            max_ttl: self.ttl.0.unwrap_or(Duration::from_secs(365 * 86_400)),
            seed: self.seed,
            ..PlannerConfig::default()
        };
        Ok(ReplayOptions {
            log: log_name,
            capacity: self.capacity,
            ttl: self.ttl.0,
            db_latency: self.db_latency,
            cache_latency: self.cache_latency,
            consumer_delay: self.consumer_delay,
            tick: self.tick.as_ref().map_or(self.ttl.0, |t| t.0),
            mutates: self.mutates.clone(),
            prefetch_failure_rate: self.prefetch_failure_rate,
            planner,
            model_source,
            baselines: !self.no_baselines,
            seed: self.seed,
            ..ReplayOptions::default()
        })
    }
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    args.check_times()?;
    let imported = args.log.load()?;
    let log_name = args.log.log.display().to_string();
    let mut workload = Workload::prepare(imported.events, &args.mutates);
    if let Some(n) = args.max_reads {
        workload.truncate_reads(n);
    }
    if workload.events.is_empty() {
        anyhow::bail!("{log_name}: the log has no events to replay");
    }
    let (predictor, model_source) = args.model.build_with_max_age(args.ttl.0)?;
    let opts = args.options(log_name, model_source)?;
    let report = replay_with_progress(&workload, &opts, predictor.as_ref());
    print_summary(&report);
    emit(&report, args.json, args.out.as_deref())
}

/// Runs the replay with a progress bar per policy on stderr.
pub fn replay_with_progress(
    workload: &Workload,
    opts: &ReplayOptions,
    predictor: &dyn prescient_core::Predictor,
) -> ReplayReport {
    let total = workload.events.len() as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>20} [{bar:30}] {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut current = None;
    let report = prescient_replay::run(workload, opts, predictor, &mut |policy: Policy, done| {
        if current != Some(policy) {
            current = Some(policy);
            bar.reset();
            bar.set_prefix(policy.name());
        }
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    report
}

/// Writes the JSON report to stdout and/or a file.
pub fn emit(
    report: &ReplayReport,
    json: bool,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report).context("serialising the report")?;
    if json {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}").context("writing to stdout")?;
    }
    if let Some(path) = out {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote the JSON report to {}", path.display());
    }
    Ok(())
}

/// A short human summary on stderr.
pub fn print_summary(r: &ReplayReport) {
    eprintln!(
        "{}: {} events, {} reads, {} distinct entities, capacity {}, ttl {}, oracle hit ratio {:.4}",
        r.log,
        r.events,
        r.reads,
        r.distinct_entities,
        r.capacity,
        r.ttl_s.map_or("none".to_owned(), |s| format!("{s}s")),
        r.oracle_hit_ratio
    );
    eprintln!(
        "{:<22} {:>9} {:>8} {:>10} {:>10} {:>9} {:>6}",
        "policy", "hit ratio", "joined", "db reads", "mean ms", "p99 ms", "stale"
    );
    let rows = [
        ("cache_aside_lru", r.cache_aside_lru.as_ref()),
        ("cache_aside_tinylfu", r.cache_aside_tinylfu.as_ref()),
        ("prescient", Some(&r.prescient.base)),
    ];
    for (name, p) in rows {
        if let Some(p) = p {
            eprintln!(
                "{:<22} {:>9.4} {:>8} {:>10} {:>10.3} {:>9.3} {:>6}",
                name,
                p.hit_ratio,
                p.joined,
                p.db_reads,
                p.mean_read_latency_ms,
                p.p99_read_latency_ms,
                p.stale_reads
            );
        }
    }
    let p = &r.prescient;
    eprintln!(
        "prescient ({}, {}): {} prefetches, {} useful (precision {:.3}), gap closed {:.3}, {:.0} events/s",
        r.model,
        r.model_source,
        p.prefetches,
        p.useful_prefetches,
        p.prefetch_precision,
        p.gap_closed,
        p.events_per_sec
    );
    if r.by_kind.len() > 1 {
        eprintln!(
            "{:<22} {:>9} {:>9} {:>9} {:>9} {:>11} {:>7} {:>10}",
            "kind", "reads", "oracle", "lru", "prescient", "prefetches", "useful", "gap closed"
        );
        for (kind, k) in &r.by_kind {
            eprintln!(
                "{:<22} {:>9} {:>9.4} {:>9} {:>9.4} {:>11} {:>7} {:>10}",
                kind,
                k.reads,
                k.oracle_hit_ratio,
                k.cache_aside_lru_hit_ratio
                    .map_or("-".to_owned(), |h| format!("{h:.4}")),
                k.prescient_hit_ratio,
                k.prefetches,
                k.useful_prefetches,
                k.gap_closed.map_or("-".to_owned(), |g| format!("{g:.3}")),
            );
        }
    }
}

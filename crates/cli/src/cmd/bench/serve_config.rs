//! The configuration of the `serve` that `bench live` runs in-process, built as typed structs:
//! a NATS source on the run's stream, a Redis cache under the run's key prefix, the seeded
//! PostgreSQL table, the `--model` predictor, no admin API, and the event times and clock of
//! `--times` and `--clock`. Everything else keeps the defaults of `prescient.toml`, and the
//! `PRESCIENT_*` environment variables override it as they override `serve`'s file.

use std::collections::HashMap;

use anyhow::Context;
use prescient_server::Config;
use prescient_server::config::{
    AdminConfig, CacheConfig, EventTime, ModelKind, PredictorConfig, PrefetchConfig, ServeClock,
    ServeConfig, SourceConfig, StoreConfig,
};

use super::{BenchClock, LiveArgs, Times};

/// The names one run of the bench gives what it creates, unique to the run so that runs never
/// see each other's messages or cache entries.
#[derive(Debug, Clone)]
pub(super) struct RunNames {
    /// Part of every name below, unique to the run.
    pub run_id: String,
    /// The JetStream stream the events are published to.
    pub stream: String,
    /// The subject the events are published on.
    pub subject: String,
    /// The PostgreSQL table the entities are seeded into (shared by every run).
    pub table: String,
}

impl RunNames {
    /// The names of the run `run_id`.
    pub(super) fn new(run_id: String) -> RunNames {
        RunNames {
            stream: format!("PRESCIENT_BENCH_{run_id}"),
            subject: format!("prescient.bench.{run_id}"),
            table: "prescient_bench_entities".to_owned(),
            run_id,
        }
    }

    /// The Redis key prefix of one side: `p` (prescient) or `ca` (cache-aside).
    pub(super) fn key_prefix(&self, side: &str) -> String {
        format!("prescient-bench-{}-{side}", self.run_id)
    }
}

/// The configuration of the in-process `serve` of the run `names`.
///
/// # Errors
/// An unknown `--model`, or a configuration that `PRESCIENT_*` variables made invalid.
pub(super) fn serve_config(args: &LiveArgs, names: &RunNames) -> anyhow::Result<Config> {
    let model: ModelKind = args
        .model
        .parse()
        .map_err(anyhow::Error::msg)
        .context("--model")?;
    let cfg = Config {
        source: SourceConfig::Nats {
            url: args.nats.clone(),
            stream: names.stream.clone(),
            subjects: vec![names.subject.clone()],
            durable: "bench".to_owned(),
            dead_letter_subject: format!("prescient.benchdead.{}", names.run_id),
            batch: SourceConfig::DEFAULT_BATCH,
            ack_wait_secs: SourceConfig::DEFAULT_ACK_WAIT_SECS,
            user: None,
            password: None,
            token: None,
            creds_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
        },
        cache: CacheConfig::Redis {
            url: args.redis.clone(),
            key_prefix: names.key_prefix("p"),
            near_cache: 0,
        },
        store: StoreConfig::Postgres {
            url: args.postgres.clone(),
            pool_size: StoreConfig::DEFAULT_POOL_SIZE,
            table: names.table.clone(),
            queries: HashMap::new(),
            ensure_schema: true,
        },
        predictor: PredictorConfig {
            model,
            ..PredictorConfig::default()
        },
        prefetch: PrefetchConfig::default(),
        admin: AdminConfig {
            enabled: false,
            ..AdminConfig::default()
        },
        serve: ServeConfig {
            event_time: match args.times {
                Times::Event | Times::Now => EventTime::Event,
                Times::Arrival => EventTime::Arrival,
            },
            clock: match args.clock() {
                BenchClock::Event => ServeClock::Event,
                BenchClock::Wall => ServeClock::Wall,
            },
            ..ServeConfig::default()
        },
    };
    cfg.with_env_overrides()
        .context("the configuration of the bench's serve")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        live: LiveArgs,
    }

    /// The configuration as `serve` would read it from a file: the text the bench wrote before
    /// it built its configuration in code.
    fn from_text(args: &LiveArgs, names: &RunNames) -> Config {
        let RunNames {
            run_id,
            stream,
            subject,
            table,
        } = names;
        let event_time = if args.times == Times::Arrival {
            "arrival"
        } else {
            "event"
        };
        let clock = match args.clock() {
            BenchClock::Event => "event",
            BenchClock::Wall => "wall",
        };
        Config::from_toml_str(&format!(
            r#"
[source]
type = "nats"
url = "{nats}"
stream = "{stream}"
subjects = ["{subject}"]
durable = "bench"
dead_letter_subject = "prescient.benchdead.{run_id}"
[cache]
type = "redis"
url = "{redis}"
key_prefix = "prescient-bench-{run_id}-p"
[store]
type = "postgres"
url = "{pgurl}"
table = "{table}"
[predictor]
model = "{model}"
[admin]
enabled = false
[serve]
event_time = "{event_time}"
clock = "{clock}"
"#,
            model = args.model,
            nats = args.nats,
            redis = args.redis,
            pgurl = args.postgres,
        ))
        .unwrap()
    }

    #[test]
    fn the_typed_config_is_the_one_a_file_would_give() {
        let names = RunNames::new("4242".to_owned());
        for extra in [
            &[][..],
            &["--times", "now"],
            &["--times", "arrival"],
            &["--clock", "wall", "--model", "relational"],
            &["--model", "simple", "--nats", "nats://10.0.0.1:4222"],
        ] {
            let argv = [&["bench", "--log", "x.jsonl"][..], extra].concat();
            let args = Cli::try_parse_from(argv).unwrap().live;
            let typed = serde_json::to_value(serve_config(&args, &names).unwrap()).unwrap();
            let text = serde_json::to_value(from_text(&args, &names)).unwrap();
            assert_eq!(typed, text, "{extra:?}");
        }
    }

    #[test]
    fn the_run_names_are_unique_to_the_run() {
        let names = RunNames::new("77".to_owned());
        assert_eq!(names.stream, "PRESCIENT_BENCH_77");
        assert_eq!(names.subject, "prescient.bench.77");
        assert_eq!(names.key_prefix("ca"), "prescient-bench-77-ca");
    }
}

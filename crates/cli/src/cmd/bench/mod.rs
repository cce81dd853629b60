//! `prescient bench`: `live`, the live benchmark through NATS, `serve`, Redis and PostgreSQL,
//! against plain cache-aside on the same Redis and PostgreSQL; and `memory`, the model's state
//! as millions of entities and event types stream through it.
//!
//! - this module: the command line and the dispatch;
//! - [`live`]: the run (seed, start `serve`, publish twice, collect the result);
//! - [`serve_config`]: the typed configuration of the in-process `serve`;
//! - [`consumer`]: the consumer that reads each published event's entities;
//! - [`reader`]: how it reads them, through the prefetcher or with plain cache-aside;
//! - [`by_thread`]: the consumer's own runtime and connections;
//! - [`report`]: the latencies recorded and the result, as JSON or text;
//! - [`memory`]: `bench memory`, the model's memory and speed as its state grows.

mod by_thread;
mod consumer;
mod live;
mod memory;
mod reader;
mod report;
mod serve_config;

use crate::log_args::LogArgs;

/// Benchmarks, each printing its result (as JSON with `--json`).
///
/// `bench live` runs `serve` in-process on NATS, Redis and PostgreSQL, publishes a log and
/// compares a consumer reading through the prefetcher with the same consumer doing plain
/// cache-aside: hit ratios, store loads and read latencies of both sides.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub which: Which,
}

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum Which {
    /// Publish a log to NATS as fast as possible while `serve` prefetches into Redis from
    /// PostgreSQL and a consumer reads each event's entities; then the same consumer with plain
    /// cache-aside on the same Redis and PostgreSQL.
    ///
    /// It seeds the PostgreSQL table `prescient_bench_entities` with the log's entities (the
    /// table is kept), and publishes to a NATS stream and caches under Redis keys of the run's
    /// own (deleted at the end). It needs the three services (`--nats`, `--redis`,
    /// `--postgres`). It prints a summary, or the whole result as JSON with `--json`.
    Live(Box<LiveArgs>),
    /// Stream millions of distinct entities, then of distinct event types, through the
    /// model (`--model`, bounded by `--memory-mb`), generated as they are fed, and report the
    /// peak resident memory and the throughput of each phase, at its start and its end.
    ///
    /// Example: `prescient bench memory --memory-mb 256 --entities 10000000 --types 1000000
    /// --json`.
    Memory(memory::MemoryArgs),
}

/// Options of `bench live`.
#[derive(Debug, clap::Args)]
pub struct LiveArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Redis server.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// PostgreSQL server.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres: String,
    /// Bytes of each entity's data.
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Use only the first N events (in time order: events are published by time).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Events whose entities the consumer reads at once (one read per event, up to this many).
    /// The consumer has one thread: reads in flight wait on each other, and the wait counts in
    /// their latency.
    #[arg(long, default_value_t = 4)]
    pub consumer_concurrency: usize,
    /// Which time `serve` gives the events: `event` trusts the log's times, `now` shifts the
    /// log so that its first event happens now (keeping the gaps between events) and trusts
    /// those, `arrival` stamps each event with its arrival (the `[serve] event_time` default).
    #[arg(long, value_enum, default_value_t = Times::Event)]
    pub times: Times,
    /// The clock `serve` plans with: `event` (the default with `--times event|now`) stands at the
    /// latest event time processed and moves with the events, so that the log's predictions are
    /// scheduled in the log's own time although it is published in seconds; `wall` is the system
    /// clock (the default, and the only choice, with `--times arrival`).
    #[arg(long, value_enum)]
    pub clock: Option<BenchClock>,
    /// The model `serve` hosts (`[predictor] model`): `online` (the default combined model, as in
    /// `replay`), `relational` (its relational part alone, cheaper per event) or `simple`.
    #[arg(long, default_value = "online", value_parser = ["online", "relational", "simple"])]
    pub model: String,
    /// Seconds without progress (no event processed by `serve`, none received by the consumer)
    /// after which the benchmark fails.
    #[arg(long, default_value_t = 30)]
    pub stall_secs: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Event times in `bench live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Times {
    /// The log's own times (`[serve] event_time = "event"`).
    Event,
    /// The log's times shifted so that the first event happens now, gaps kept.
    Now,
    /// Each event's arrival at `serve` (`[serve] event_time = "arrival"`).
    Arrival,
}

/// The clock of `serve` in `bench live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchClock {
    /// Event time (`[serve] clock = "event"`).
    Event,
    /// Wall-clock time (`[serve] clock = "wall"`).
    Wall,
}

impl LiveArgs {
    fn clock(&self) -> BenchClock {
        self.clock.unwrap_or(if self.times == Times::Arrival {
            BenchClock::Wall
        } else {
            BenchClock::Event
        })
    }
}

/// Runs `bench`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.which {
        Which::Live(a) => live::live(*a),
        Which::Memory(a) => memory::run(a),
    }
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

    fn args(extra: &[&str]) -> LiveArgs {
        let mut argv = vec!["bench", "--log", "x.jsonl"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().live
    }

    #[test]
    fn the_clock_follows_the_events_unless_they_are_stamped_on_arrival() {
        assert_eq!(args(&[]).clock(), BenchClock::Event);
        assert_eq!(args(&["--times", "now"]).clock(), BenchClock::Event);
        assert_eq!(args(&["--times", "arrival"]).clock(), BenchClock::Wall);
        assert_eq!(args(&["--clock", "wall"]).clock(), BenchClock::Wall);
        assert_eq!(args(&[]).stall_secs, 30);
        assert_eq!(args(&[]).model, "online");
        assert!(Cli::try_parse_from(["bench", "--log", "x", "--model", "neural"]).is_err());
    }
}

//! `prescient serve --config prescient.toml`: the long-running prefetcher with its admin API.

use std::path::PathBuf;

use anyhow::Context;
use prescient_server::{Config, Service, shutdown_signal};

/// Runs Prescient against a live event source, cache and store until SIGINT or SIGTERM.
///
/// The configuration file picks the source (file, nats, redis-streams, amqp), the cache
/// (memory, redis, memcached), the store (sqlite, postgres) and the predictor; `PRESCIENT_*`
/// environment variables override it (`PRESCIENT_CACHE__URL=redis://...`). See
/// `examples/config/`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file (TOML).
    #[arg(long, default_value = "prescient.toml", value_name = "PATH")]
    pub config: PathBuf,
}

/// Runs `serve`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = Config::load(&args.config)
        .with_context(|| format!("cannot use {}", args.config.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    rt.block_on(async move {
        let svc = Service::build(cfg).await?;
        match svc.admin_addr() {
            Some(a) => eprintln!("prescient serve: admin API on http://{a}"),
            None => eprintln!("prescient serve: admin API disabled"),
        }
        let report = svc.run(shutdown_signal()).await?;
        eprintln!(
            "prescient serve: stopped after {} events ({} dead-lettered){}",
            report.processed,
            report.dead_letters,
            if report.source_ended {
                "; the source ended"
            } else {
                ""
            }
        );
        anyhow::Ok(())
    })
}

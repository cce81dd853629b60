//! `prescient`: the command-line entry point. Parses arguments, calls the subcommand's `run`,
//! and maps the result to an exit code. Everything else lives in the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod duration;
mod log_args;
mod models;

/// Predictive prefetching for event-driven systems.
///
/// Prescient watches an event stream, predicts which entities the next events will touch,
/// and loads them into a cache before consumers ask.
#[derive(Debug, Parser)]
#[command(name = "prescient", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // Each subcommand lives in its own module under `cmd/`; add one line here per subcommand.
    Replay(cmd::replay::Args),
    Serve(cmd::serve::Args),
    Publish(cmd::publish::Args),
    Seed(cmd::seed::Args),
    Bench(cmd::bench::Args),
    Demo(cmd::demo::Args),
    Evaluate(cmd::evaluate::Args),
    Train(cmd::train::Args),
    Explain(cmd::explain::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Replay(args) => cmd::replay::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Publish(args) => cmd::publish::run(args),
        Command::Seed(args) => cmd::seed::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Evaluate(args) => cmd::evaluate::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Explain(args) => cmd::explain::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `warn`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

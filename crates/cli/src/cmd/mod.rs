//! One module per subcommand. Each exposes `Args` (clap) and `run(args) -> anyhow::Result<()>`.

pub mod evaluate;
pub mod explain;
pub mod replay;
pub mod train;

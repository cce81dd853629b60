//! One module per subcommand. Each exposes `Args` (clap) and `run(args) -> anyhow::Result<()>`.

pub mod evaluate;
pub mod explain;
pub mod demo;
pub mod replay;
pub mod serve;
pub mod publish;
pub mod seed;
pub mod bench;
pub mod train;

//! One module per subcommand. Each exposes `Args` (clap) and `run(args) -> anyhow::Result<()>`.

pub mod bench;
pub mod demo;
pub mod evaluate;
pub mod explain;
pub mod publish;
pub mod replay;
pub mod seed;
pub mod serve;
pub mod train;

//! `--model online|relational|simple|reuse|keys|neural|ensemble|FILE|KIND:FILE`: which model a
//! command runs. The models themselves are built by the one factory that `serve` uses too
//! (`prescient_server::models`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use prescient_core::{Local, OnlineModel, Predictor};
pub use prescient_server::models::ModelKind;
use prescient_server::models::{self, ModelSpec};

/// A neural learner of kind `network` that draws its training progress on stderr.
pub fn neural_learner(network: prescient_neural::Cell) -> prescient_neural::NeuralLearner {
    let mut bar = prescient_neural::ProgressBarReporter::new();
    prescient_neural::NeuralLearner::new(prescient_neural::NeuralConfig::for_cell(network))
        .with_progress(Box::new(move |p| bar.report(p)))
}

/// Loads a neural artifact directory.
pub(crate) fn load_neural(
    dir: &Path,
) -> anyhow::Result<std::sync::Arc<prescient_neural::NeuralModel>> {
    Ok(models::load_neural(dir)?)
}

/// Builds a model of `kind`, starting from `file` if given (a relational snapshot, or for the
/// neural kinds an artifact directory). `network` is the kind of network a neural model trains
/// when it has no artifact.
pub fn build_model(
    kind: ModelKind,
    file: Option<&Path>,
    network: prescient_neural::Cell,
    memory_mb: Option<usize>,
) -> anyhow::Result<Box<dyn OnlineModel>> {
    let file = file.map(Path::to_path_buf);
    let (snapshot, neural) = if kind.is_neural() {
        (None, file)
    } else {
        (file, None)
    };
    let spec = ModelSpec {
        kind,
        snapshot,
        neural,
        network,
        progress: true,
        max_age: None,
        memory_mb,
    };
    let built = models::build_model(&spec).with_context(|| format!("--model {kind}"))?;
    Ok(built.model)
}

/// `--model`: a model kind, or the path of a trained model.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// The predictor: `online` (default), `relational`, `simple`, `reuse`, `keys`, `neural`,
    /// `ensemble`, or the path of a model written by `prescient train` (the run then starts from
    /// it instead of cold). A neural artifact directory serves the network's next types with the
    /// online model's entities; `ensemble:DIR` serves the mix chosen when it was trained.
    #[arg(long = "model", default_value = "online", value_name = "KIND|FILE")]
    pub model: String,

    /// The network that `--model neural|ensemble` trains when it is not given an artifact
    /// (`evaluate` trains on the protocol's training part): `gru` (the default: more accurate on
    /// three of the four `tax2017` logs, and faster) or `transformer`.
    #[arg(long, default_value = "gru", value_name = "gru|transformer")]
    pub network: prescient_neural::Cell,

    /// The memory, in MiB, the online model may spend on the entities it tracks (past that it
    /// forgets the least recently seen; `[predictor] memory_mb` in `serve`). Default: each
    /// part keeps at most a million entities.
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..))]
    pub memory_mb: Option<u64>,
}

impl ModelArgs {
    /// Builds the predictor, and says where it started from (`cold start` or the file).
    pub fn build(&self) -> anyhow::Result<(Box<dyn Predictor>, String)> {
        self.build_with_max_age(Some(std::time::Duration::from_secs(3600)))
    }

    /// Builds the predictor for a cache whose entries may be at most `max_age` old (`None`:
    /// no limit), and says where it started from.
    pub fn build_with_max_age(
        &self,
        max_age: Option<std::time::Duration>,
    ) -> anyhow::Result<(Box<dyn Predictor>, String)> {
        let (kind, file) = self.resolve()?;
        if matches!(kind, ModelKind::Neural | ModelKind::Ensemble) && file.is_none() {
            anyhow::bail!(
                "--model {}: a streaming run has no training part to train the network on first; \
                 train it with `prescient train --model neural --log LOG --out DIR`, then pass \
                 `--model DIR` (the network's next types) or `--model ensemble:DIR` (the mix)",
                self.model
            )
        }
        let mut model = build_model(kind, file.as_deref(), self.network, self.memory_mb())?;
        // Served in-process, on the caller's thread: the replay's virtual time has no deadline.
        model.set_max_age(max_age);
        let source = file.map_or_else(
            || "cold start".to_owned(),
            |p| format!("trained model {}", p.display()),
        );
        Ok((Box::new(Local::new(model)), source))
    }

    /// `--memory-mb` as a count of MiB.
    pub fn memory_mb(&self) -> Option<usize> {
        self.memory_mb
            .map(|mb| usize::try_from(mb).unwrap_or(usize::MAX))
    }

    /// The kind, and the file if `--model` named one.
    pub fn resolve(&self) -> anyhow::Result<(ModelKind, Option<PathBuf>)> {
        if let Ok(kind) = self.model.parse::<ModelKind>() {
            return Ok((kind, None));
        }
        // `KIND:PATH`: a kind started from a file (`ensemble:models/helpdesk`).
        if let Some((kind, path)) = self.model.split_once(':')
            && let Ok(kind) = kind.parse::<ModelKind>()
        {
            let path = PathBuf::from(path);
            if !path.exists() {
                anyhow::bail!(
                    "--model {:?}: {} does not exist",
                    self.model,
                    path.display()
                );
            }
            return Ok((kind, Some(path)));
        }
        let path = PathBuf::from(&self.model);
        if path.is_dir() && path.join("meta.json").exists() {
            return Ok((ModelKind::Neural, Some(path)));
        }
        if path.exists() {
            return Ok((ModelKind::Online, Some(path)));
        }
        let kinds: Vec<&str> = ModelKind::ALL.iter().map(|k| k.name()).collect();
        anyhow::bail!(
            "--model {:?}: not a model kind ({}) nor an existing file",
            self.model,
            kinds.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test

    use prescient_core::{EntityRef, Event, Timestamp};
    use prescient_predict::{RelationalConfig, RelationalModel};

    use super::*;

    fn args(model: &str) -> ModelArgs {
        ModelArgs {
            model: model.to_owned(),
            network: prescient_neural::Cell::Gru,
            memory_mb: None,
        }
    }

    #[test]
    fn relational_is_the_online_models_relational_part_alone() {
        let (kind, file) = args("relational").resolve().unwrap();
        assert_eq!((kind, file), (ModelKind::Relational, None));
        let (p, source) = args("relational").build().unwrap();
        assert_eq!((p.name(), source.as_str()), ("relational", "cold start"));
        let (p, _) = args("online").build().unwrap();
        assert_eq!(p.name(), "online");

        // A snapshot written by `train` starts either.
        let mut m = RelationalModel::new(RelationalConfig::default());
        for i in 0..50i64 {
            let e = Event::new(i.to_string(), "a", Timestamp::from_secs(i))
                .with_entity(EntityRef::new("case", (i / 5).to_string()));
            m.observe(&e, prescient_core::Observe::Learn);
        }
        let path = std::env::temp_dir().join(format!(
            "prescient-models-test-{}.model",
            std::process::id()
        ));
        std::fs::write(&path, m.snapshot().unwrap()).unwrap();
        let rel = args(&format!("relational:{}", path.display())).build();
        let online = args(&path.display().to_string()).build();
        let _ = std::fs::remove_file(&path);
        let (p, source) = rel.unwrap();
        assert_eq!(p.name(), "relational");
        assert!(source.starts_with("trained model"), "{source}");
        assert_eq!(online.unwrap().0.name(), "online");

        let err = args("relational:/no/such/file").build().unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}

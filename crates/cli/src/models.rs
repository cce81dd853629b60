//! Choosing and building the predictor: `--model online|relational|simple|reuse|keys|FILE` (and,
//! with the neural crate, `neural` and `ensemble`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use prescient_core::{Local, OnlineModel, Predictor};
use prescient_predict::{
    KeyConfig, KeyModel, PrescientModel, RelationalConfig, RelationalModel, ReuseConfig,
    ReuseModel, SimpleConfig, SimpleModel,
};

/// The kinds of model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// The online relational model (the default).
    Online,
    /// Only the relational part of the default model: next types and the entities linked to the
    /// event, without refreshes timed to the data-age limit or key structure. Cheaper per event;
    /// `serve` hosts it as `[predictor] model = "relational"`.
    Relational,
    /// The baseline: bigram next types, same-entity re-reads.
    Simple,
    /// Only the reuse-time part of the default model: refreshes timed to the data-age limit.
    Reuse,
    /// The neural sequence model (a GRU, or `--network transformer`): trained on the learned
    /// events when first asked to predict, or loaded from an artifact directory written by
    /// `prescient train --model neural`.
    Neural,
    /// The neural next-type distribution mixed with the online model's by a weight chosen on
    /// validation data; entities from the online model.
    Ensemble,
    /// Structure between keys, for access traces: successors and sequential or strided
    /// readahead over integer ids. Predicts no event types.
    Keys,
}

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
    let model = prescient_neural::NeuralModel::load(dir)
        .with_context(|| format!("loading neural model {}", dir.display()))?;
    Ok(std::sync::Arc::new(model))
}

/// A trained network served with the default online model: next types mixed as `mix` says,
/// entities from the online model.
fn served(
    model: std::sync::Arc<prescient_neural::NeuralModel>,
    mix: prescient_neural::EnsembleMix,
) -> Box<dyn OnlineModel> {
    Box::new(prescient_neural::EnsembleModel::served(
        prescient_neural::NeuralPredictor::new(model),
        PrescientModel::default(),
        mix,
    ))
}

/// The relational model of a snapshot written by `prescient train`.
fn restore_relational(path: &Path) -> anyhow::Result<RelationalModel> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading model snapshot {}", path.display()))?;
    RelationalModel::restore(&bytes)
        .with_context(|| format!("loading model snapshot {}", path.display()))
}

/// Builds a model of `kind`, starting from `snapshot` if given.
/// `network` is the kind of network a neural model trains when it has no artifact.
pub fn build_model(
    kind: ModelKind,
    snapshot: Option<&Path>,
    network: prescient_neural::Cell,
) -> anyhow::Result<Box<dyn OnlineModel>> {
    match (kind, snapshot) {
        (ModelKind::Online, None) => Ok(Box::new(PrescientModel::default())),
        (ModelKind::Online, Some(path)) => {
            Ok(Box::new(PrescientModel::new(restore_relational(path)?)))
        }
        (ModelKind::Relational, None) => {
            Ok(Box::new(RelationalModel::new(RelationalConfig::default())))
        }
        (ModelKind::Relational, Some(path)) => Ok(Box::new(restore_relational(path)?)),
        (ModelKind::Reuse, None) => Ok(Box::new(ReuseModel::new(ReuseConfig::default()))),
        (ModelKind::Reuse, Some(path)) => {
            anyhow::bail!(
                "the reuse model has no snapshots; {} cannot be loaded with --model reuse",
                path.display()
            )
        }
        (ModelKind::Simple, None) => Ok(Box::new(SimpleModel::new(SimpleConfig::default()))),
        (ModelKind::Keys, None) => Ok(Box::new(KeyModel::new(KeyConfig::default()))),
        (ModelKind::Neural, None) => Ok(Box::new(neural_learner(network))),
        (ModelKind::Neural, Some(dir)) => {
            let model = load_neural(dir)?;
            // Next types and times from the network alone; entities from the online model.
            let mix = prescient_neural::EnsembleMix::network_only(&model);
            Ok(served(model, mix))
        }
        (ModelKind::Ensemble, None) => Ok(Box::new(prescient_neural::EnsembleModel::new(
            neural_learner(network),
            RelationalModel::new(RelationalConfig::default()),
            Box::new(|| RelationalModel::new(RelationalConfig::default())),
        ))),
        (ModelKind::Ensemble, Some(dir)) => {
            let model = load_neural(dir)?;
            let Some(mix) = model.ensemble() else {
                anyhow::bail!(
                    "the neural model {} has no ensemble weight (it was trained by an older \
                     version); train it again with `prescient train --model neural`",
                    dir.display()
                )
            };
            Ok(served(model, mix))
        }
        (ModelKind::Simple, Some(path)) => {
            anyhow::bail!(
                "the simple model has no snapshots; {} cannot be loaded with --model simple",
                path.display()
            )
        }
        (ModelKind::Keys, Some(path)) => {
            anyhow::bail!(
                "the keys model has no snapshots; {} cannot be loaded with --model keys",
                path.display()
            )
        }
    }
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
        let mut model = build_model(kind, file.as_deref(), self.network)?;
        model.set_max_age(max_age);
        let source = file.map_or_else(
            || "cold start".to_owned(),
            |p| format!("trained model {}", p.display()),
        );
        Ok((Box::new(Local::new(model)), source))
    }

    /// The kind, and the file if `--model` named one.
    pub fn resolve(&self) -> anyhow::Result<(ModelKind, Option<PathBuf>)> {
        use clap::ValueEnum;
        if let Ok(kind) = ModelKind::from_str(&self.model, true) {
            return Ok((kind, None));
        }
        // `KIND:PATH`: a kind started from a file (`ensemble:models/helpdesk`).
        if let Some((kind, path)) = self.model.split_once(':')
            && let Ok(kind) = ModelKind::from_str(kind, true)
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
        let kinds: Vec<String> = ModelKind::value_variants()
            .iter()
            .filter_map(|k| k.to_possible_value().map(|v| v.get_name().to_owned()))
            .collect();
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

    use super::*;

    fn args(model: &str) -> ModelArgs {
        ModelArgs {
            model: model.to_owned(),
            network: prescient_neural::Cell::Gru,
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

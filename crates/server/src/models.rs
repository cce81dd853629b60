//! The one model factory: every model that `serve`, `replay`, `demo`, `evaluate`, `explain` and
//! `train` host is built here, from a [`ModelSpec`].
//!
//! `serve` fills the spec from `[predictor]`, the command line from `--model KIND|FILE`; both
//! get the same model for the same spec.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use prescient_core::OnlineModel;
use prescient_neural::{
    Cell, EnsembleMix, EnsembleModel, ModelSlot, NeuralConfig, NeuralLearner, NeuralModel,
    NeuralPredictor,
};
use prescient_predict::{
    KeyConfig, KeyModel, PrescientModel, RelationalConfig, RelationalModel, ReuseConfig,
    ReuseModel, SimpleConfig, SimpleModel,
};
use serde::{Deserialize, Serialize};

/// The kinds of model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// The default online model (`PrescientModel`: relational, reuse-time and key parts).
    #[default]
    Online,
    /// The relational part of the default model alone: next types and the entities linked to
    /// the event, without refreshes timed to the data-age limit or key structure.
    Relational,
    /// The baseline: bigram next types, same-entity re-reads.
    Simple,
    /// The reuse-time part of the default model alone: refreshes timed to the data-age limit.
    Reuse,
    /// Structure between keys, for access traces: successors and sequential or strided
    /// readahead over integer ids. Predicts no event types.
    Keys,
    /// The neural network's next types and times, with the online model's entities. Trained
    /// on the learned events when first asked to predict, or loaded from an artifact.
    Neural,
    /// The network's next types mixed with the online model's by a weight chosen on validation
    /// data when it was trained; entities from the online model.
    Ensemble,
}

impl ModelKind {
    /// Every kind, in the order of their names in help texts.
    pub const ALL: [ModelKind; 7] = [
        ModelKind::Online,
        ModelKind::Relational,
        ModelKind::Simple,
        ModelKind::Reuse,
        ModelKind::Keys,
        ModelKind::Neural,
        ModelKind::Ensemble,
    ];

    /// The kind's name (`online`, ...), as the config file and `--model` spell it.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Online => "online",
            ModelKind::Relational => "relational",
            ModelKind::Simple => "simple",
            ModelKind::Reuse => "reuse",
            ModelKind::Keys => "keys",
            ModelKind::Neural => "neural",
            ModelKind::Ensemble => "ensemble",
        }
    }

    /// Whether the kind serves a neural network.
    pub fn is_neural(self) -> bool {
        matches!(self, ModelKind::Neural | ModelKind::Ensemble)
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ModelKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = ModelKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown model kind {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct ModelSpec {
    /// The kind.
    pub kind: ModelKind,
    /// A snapshot of the relational model to start from (written by `prescient train`), for
    /// `online`, `relational`, and the online part of `neural` and `ensemble`.
    pub snapshot: Option<PathBuf>,
    /// The neural artifact directory (written by `prescient train --model neural`), for
    /// `neural` and `ensemble`. Without one, the network is trained on the learned events when
    /// first asked to predict.
    pub neural: Option<PathBuf>,
    /// The network a neural model trains when it has no artifact.
    pub network: Cell,
    /// Draw the network's training progress on stderr.
    pub progress: bool,
    /// The cache's data-age limit, which times refreshes (`None`: entries never expire).
    pub max_age: Option<Duration>,
    /// A memory budget in MiB for the entities an online model tracks (`None`: the models'
    /// own bounds). See `PrescientModel::with_memory_mb`.
    pub memory_mb: Option<usize>,
}

/// A built model.
#[derive(Debug)]
pub struct BuiltModel {
    /// The model.
    pub model: Box<dyn OnlineModel>,
    /// Where its neural network is served from, for a swap while serving (`neural` and
    /// `ensemble` with an artifact).
    pub slot: Option<ModelSlot>,
}

/// Why a model could not be built. Callers name their own setting (`--model`,
/// `predictor.snapshot`) in front of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The kind has no snapshots.
    #[error("the {0} model has no snapshots; start the online or relational model from one")]
    NoSnapshots(ModelKind),
    /// The snapshot cannot be read or is not one of the relational model.
    #[error("cannot load the model snapshot {path}: {reason}")]
    Snapshot {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The neural artifact cannot be loaded.
    #[error("cannot load the neural model {path}: {reason}")]
    Neural {
        /// The directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// The artifact has no ensemble weight.
    #[error(
        "the neural model {0} has no ensemble weight (it was trained by an older version); \
         train it again with `prescient train --model neural`, or serve the network alone"
    )]
    NoEnsembleWeight(String),
    /// A neural directory was given to a kind that has no network.
    #[error("only the neural and ensemble models use a neural model, not {0}")]
    NeuralUnused(ModelKind),
}

/// Builds the model `spec` describes.
///
/// # Errors
/// [`ModelError`] when a file cannot be loaded or does not fit the kind.
pub fn build_model(spec: &ModelSpec) -> Result<BuiltModel, ModelError> {
    if spec.neural.is_some() && !spec.kind.is_neural() {
        return Err(ModelError::NeuralUnused(spec.kind));
    }
    let online = || -> Result<PrescientModel, ModelError> {
        Ok(match &spec.snapshot {
            Some(path) => PrescientModel::new(restore_relational(path)?),
            None => PrescientModel::default(),
        }
        .with_memory_mb(spec.memory_mb))
    };
    let no_snapshot = || match &spec.snapshot {
        Some(_) => Err(ModelError::NoSnapshots(spec.kind)),
        None => Ok(()),
    };
    let mut slot = None;
    let mut model: Box<dyn OnlineModel> = match spec.kind {
        ModelKind::Online => Box::new(online()?),
        ModelKind::Relational => {
            let mut m = match &spec.snapshot {
                Some(path) => restore_relational(path)?,
                None => RelationalModel::new(RelationalConfig::default()),
            };
            if let Some(mb) = spec.memory_mb {
                let mut cfg = m.config().clone();
                cfg.max_entities = entities_within(mb, m.estimated_entity_bytes());
                m.reconfigure(cfg);
            }
            Box::new(m)
        }
        ModelKind::Simple => {
            no_snapshot()?;
            Box::new(SimpleModel::new(SimpleConfig::default()))
        }
        ModelKind::Reuse => {
            no_snapshot()?;
            let mut m = ReuseModel::new(ReuseConfig::default());
            if let Some(mb) = spec.memory_mb {
                let n = entities_within(mb, m.estimated_entity_bytes());
                m.set_max_entities(n);
            }
            Box::new(m)
        }
        ModelKind::Keys => {
            no_snapshot()?;
            Box::new(KeyModel::new(KeyConfig::default()))
        }
        kind @ (ModelKind::Neural | ModelKind::Ensemble) => match &spec.neural {
            None if kind == ModelKind::Neural => Box::new(learner(spec)),
            None => Box::new(EnsembleModel::new(
                learner(spec),
                RelationalModel::new(RelationalConfig::default()),
                Box::new(|| RelationalModel::new(RelationalConfig::default())),
            )),
            Some(dir) => {
                let network = load_neural(dir)?;
                let s = ModelSlot::new(network.clone());
                let served = if kind == ModelKind::Ensemble {
                    let mix = network
                        .ensemble()
                        .ok_or_else(|| ModelError::NoEnsembleWeight(dir.display().to_string()))?;
                    // Each swapped-in artifact brings its own mix.
                    let net = NeuralPredictor::new(network).follow(s.clone());
                    EnsembleModel::served_following(net, online()?, mix)
                } else {
                    let mix = EnsembleMix::network_only(&network);
                    let net = NeuralPredictor::new(network).follow(s.clone());
                    EnsembleModel::served(net, online()?, mix)
                };
                slot = Some(s);
                Box::new(served)
            }
        },
    };
    model.set_max_age(spec.max_age);
    Ok(BuiltModel { model, slot })
}

/// How many entities of an estimated `per_entity` bytes fit in `mb` MiB, with the headroom
/// the combined model gives them (at least 2).
fn entities_within(mb: usize, per_entity: usize) -> usize {
    let per = per_entity
        .saturating_mul(prescient_predict::combined::TABLE_HEADROOM)
        .max(1);
    (mb.saturating_mul(1 << 20) / per).max(2)
}

/// A network learner of the spec's kind, drawing its progress on stderr if asked.
fn learner(spec: &ModelSpec) -> NeuralLearner {
    let l = NeuralLearner::new(NeuralConfig::for_cell(spec.network));
    if spec.progress {
        let mut bar = prescient_neural::ProgressBarReporter::new();
        l.with_progress(Box::new(move |p| bar.report(p)))
    } else {
        l
    }
}

/// Loads a neural artifact directory.
///
/// # Errors
/// [`ModelError::Neural`] when it cannot be loaded.
pub fn load_neural(dir: &Path) -> Result<Arc<NeuralModel>, ModelError> {
    NeuralModel::load(dir)
        .map(Arc::new)
        .map_err(|e| ModelError::Neural {
            path: dir.display().to_string(),
            reason: prescient_core::error_chain(&e),
        })
}

/// The relational model of a snapshot written by `prescient train`.
///
/// # Errors
/// [`ModelError::Snapshot`] when it cannot be read or is not such a snapshot.
pub fn restore_relational(path: &Path) -> Result<RelationalModel, ModelError> {
    let err = |reason: String| ModelError::Snapshot {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    RelationalModel::restore(&bytes)
        .map_err(|e| err(format!("not a snapshot of the online model: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test

    use prescient_core::{EntityRef, Event, Observe, Timestamp};

    use super::*;

    #[test]
    fn every_kind_builds_cold_and_names_itself() {
        for kind in ModelKind::ALL {
            let m = build_model(&ModelSpec {
                kind,
                ..ModelSpec::default()
            })
            .unwrap();
            assert!(!m.model.name().is_empty());
            assert!(m.slot.is_none());
            assert_eq!(kind.name().parse::<ModelKind>().unwrap(), kind);
        }
        assert!(
            "nope"
                .parse::<ModelKind>()
                .unwrap_err()
                .contains("online, relational")
        );
    }

    #[test]
    fn snapshots_start_the_relational_kinds_only() {
        let mut m = RelationalModel::new(RelationalConfig::default());
        for i in 0..50i64 {
            let e = Event::new(i.to_string(), "a", Timestamp::from_secs(i))
                .with_entity(EntityRef::new("case", (i / 5).to_string()));
            m.observe(&e, Observe::Learn);
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), m.snapshot().unwrap()).unwrap();
        let spec = |kind| ModelSpec {
            kind,
            snapshot: Some(file.path().to_owned()),
            ..ModelSpec::default()
        };
        assert_eq!(
            build_model(&spec(ModelKind::Online)).unwrap().model.name(),
            "online"
        );
        assert_eq!(
            build_model(&spec(ModelKind::Relational))
                .unwrap()
                .model
                .name(),
            "relational"
        );
        assert_eq!(
            build_model(&spec(ModelKind::Simple)).unwrap_err(),
            ModelError::NoSnapshots(ModelKind::Simple)
        );
        let missing = ModelSpec {
            snapshot: Some("/no/such/file".into()),
            ..ModelSpec::default()
        };
        assert!(
            build_model(&missing)
                .unwrap_err()
                .to_string()
                .contains("/no/such/file")
        );
        let unused = ModelSpec {
            neural: Some("/tmp".into()),
            ..ModelSpec::default()
        };
        assert_eq!(
            build_model(&unused).unwrap_err(),
            ModelError::NeuralUnused(ModelKind::Online)
        );
    }
}

//! The model artifact: a directory with `model.safetensors` (the weights) and `meta.json`
//! (format version, vocabulary, feature settings and statistics, shape, calibration, training log
//! hash and validation metrics).
//!
//! Loading checks the format and version, then every tensor's name and shape against what the
//! metadata implies, so a corrupt or mismatched artifact fails with an error naming the file
//! and the problem instead of predicting garbage.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use prescient_core::{Event, Timestamp};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::calibrate::TopCalibration;
use crate::error::NeuralError;
use crate::features::{FeatureSpec, Vocab};
use crate::model::{EnsembleMix, ModelInfo, NeuralModel};
use crate::net::{Arch, Cell};

/// The `format` field of `meta.json`.
pub const FORMAT: &str = "prescient-neural";
/// The artifact format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The weights file inside an artifact directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The metadata file inside an artifact directory.
pub const META_FILE: &str = "meta.json";

/// The contents of `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Always [`FORMAT`].
    pub format: String,
    /// The artifact format version.
    pub format_version: u32,
    /// The sequence body: `gru` or `transformer` (the same as `arch.cell`).
    pub cell: String,
    /// The event types, in token order.
    pub vocabulary: Vec<SmolStr>,
    /// The feature settings and normalisation statistics.
    pub features: FeatureSpec,
    /// The network's shape.
    pub arch: Arch,
    /// The softmax temperature chosen on validation data.
    pub temperature: f32,
    /// How many next types a forecast lists.
    pub top_k: usize,
    /// Platt scaling of the top-1 confidence, fitted on validation data after the temperature
    /// (absent in older artifacts: the identity).
    #[serde(default)]
    pub calibration: TopCalibration,
    /// The factor on the network's confidences in a case with a type the vocabulary does not
    /// know (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub novelty_discount: Option<f32>,
    /// The mix with the online model chosen on validation data by `prescient train` (absent:
    /// none was chosen; serving as an ensemble then needs a weight from elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleMix>,
    /// Training log hash and validation metrics.
    #[serde(flatten)]
    pub info: ModelInfo,
}

fn artifact_err(path: &Path, problem: impl Into<String>) -> NeuralError {
    NeuralError::Artifact {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NeuralError + '_ {
    move |source| NeuralError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl NeuralModel {
    /// The metadata that [`NeuralModel::save`] writes.
    pub fn meta(&self) -> Meta {
        Meta {
            format: FORMAT.to_owned(),
            format_version: FORMAT_VERSION,
            cell: self.net.arch().cell.name().to_owned(),
            vocabulary: self.vocab.types().to_vec(),
            features: self.spec.clone(),
            arch: self.net.arch(),
            temperature: self.temperature,
            top_k: self.top_k,
            calibration: self.calibration,
            novelty_discount: self.novelty_discount,
            ensemble: self.ensemble,
            info: self.info.clone(),
        }
    }

    /// Writes the artifact into `dir` (created if missing): `model.safetensors` and `meta.json`.
    ///
    /// # Errors
    /// [`NeuralError::Io`] when a file cannot be written, [`NeuralError::Tensor`] when the
    /// weights cannot be serialised.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), NeuralError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let weights = dir.join(WEIGHTS_FILE);
        candle_core::safetensors::save(&self.weights, &weights)?;
        let meta = dir.join(META_FILE);
        let json = serde_json::to_vec_pretty(&self.meta())
            .map_err(|e| artifact_err(&meta, format!("cannot serialise: {e}")))?;
        std::fs::write(&meta, json).map_err(io_err(&meta))?;
        Ok(())
    }

    /// Reads an artifact written by [`NeuralModel::save`].
    ///
    /// # Errors
    /// [`NeuralError::Io`] when a file is missing or unreadable; [`NeuralError::Artifact`], naming
    /// the file, when `meta.json` is not valid metadata, the format or version differs, the
    /// weights are not valid safetensors, or a tensor is missing, extra or of the wrong shape
    /// for the vocabulary and sizes in `meta.json`.
    pub fn load(dir: impl AsRef<Path>) -> Result<NeuralModel, NeuralError> {
        let dir = dir.as_ref();
        let meta_path = dir.join(META_FILE);
        let text = read_bounded(&meta_path, MAX_META_BYTES)?;
        let probe: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| artifact_err(&meta_path, format!("not valid JSON: {e}")))?;
        if probe.get("format").and_then(|v| v.as_str()) != Some(FORMAT) {
            return Err(artifact_err(
                &meta_path,
                format!("not a {FORMAT} artifact (the \"format\" field is missing or different)"),
            ));
        }
        let version = probe.get("format_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(artifact_err(
                &meta_path,
                format!(
                    "format version {} is not supported; this build reads version {FORMAT_VERSION}",
                    version.map_or_else(|| "(missing)".to_owned(), |v| v.to_string())
                ),
            ));
        }
        let meta: Meta = serde_json::from_value(probe)
            .map_err(|e| artifact_err(&meta_path, format!("invalid metadata: {e}")))?;
        let cell: Cell = meta.cell.parse().map_err(|_| {
            artifact_err(
                &meta_path,
                format!(
                    "unknown cell {:?}; this build knows \"gru\" and \"transformer\"",
                    meta.cell
                ),
            )
        })?;
        if cell != meta.arch.cell {
            return Err(artifact_err(
                &meta_path,
                format!(
                    "the cell is {:?} but the network's shape says {:?}",
                    meta.cell,
                    meta.arch.cell.name()
                ),
            ));
        }
        let vocab = Vocab::new(meta.vocabulary.iter().cloned());
        if vocab.len() != meta.vocabulary.len() {
            return Err(artifact_err(
                &meta_path,
                "the vocabulary has duplicate types",
            ));
        }
        if vocab.len() != meta.arch.vocab {
            return Err(artifact_err(
                &meta_path,
                format!(
                    "vocabulary mismatch: {} types listed but the network has {}",
                    vocab.len(),
                    meta.arch.vocab
                ),
            ));
        }
        if !(meta.temperature.is_finite() && meta.temperature > 0.0) {
            return Err(artifact_err(&meta_path, "temperature must be positive"));
        }
        if !meta.calibration.is_valid() {
            return Err(artifact_err(
                &meta_path,
                "calibration must have a positive finite slope and a finite offset",
            ));
        }
        if let Some(d) = meta.novelty_discount
            && !(d.is_finite() && (0.0..=1.0).contains(&d))
        {
            return Err(artifact_err(
                &meta_path,
                format!("novelty_discount is {d}; expected a number in [0, 1]"),
            ));
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = read_bounded(&weights_path, max_weights_bytes(meta.arch))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| {
            artifact_err(
                &weights_path,
                format!("not a valid safetensors file (truncated or corrupt?): {e}"),
            )
        })?;
        check_shapes(&tensors, meta.arch, &weights_path, &meta_path)?;
        check_values(&tensors, &weights_path)?;
        let mut model = NeuralModel::assemble(
            vocab,
            meta.features,
            meta.arch,
            tensors,
            meta.temperature,
            meta.info,
            meta.top_k.max(1),
        )?;
        if let Some(mix) = meta.ensemble {
            if !(mix.weight.is_finite() && (0.0..=1.0).contains(&mix.weight)) {
                return Err(artifact_err(
                    &meta_path,
                    format!(
                        "ensemble.weight is {}; expected a number in [0, 1]",
                        mix.weight
                    ),
                ));
            }
            if !mix.calibration.is_valid() {
                return Err(artifact_err(
                    &meta_path,
                    "ensemble.calibration must have a positive finite slope and a finite offset",
                ));
            }
        }
        model.calibration = meta.calibration;
        model.novelty_discount = meta.novelty_discount;
        model.ensemble = meta.ensemble;
        model
            .trial()
            .map_err(|problem| artifact_err(&weights_path, problem))?;
        Ok(model)
    }

    /// One trial prediction, before the model serves: the model answers without panicking,
    /// with finite probabilities and a finite expected delay.
    fn trial(&self) -> Result<(), String> {
        let Some(first) = self.vocabulary().first().cloned() else {
            return Err("the vocabulary is empty".into());
        };
        let event = Event::new("trial", first, Timestamp::from_secs(0));
        let context = [event];
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.predict_batch(&[&context[..]])
        }));
        let dists = match answer {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return Err(format!("a trial prediction failed: {e}")),
            Err(panic) => {
                return Err(format!(
                    "a trial prediction panicked: {}",
                    prescient_core::panic_message(&*panic)
                ));
            }
        };
        for d in &dists {
            if !d.probabilities.iter().all(|p| p.is_finite()) || !d.expected_seconds.is_finite() {
                return Err(
                    "a trial prediction gave non-finite probabilities or delay: the weights \
                     overflow"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

/// The largest `meta.json` read.
const MAX_META_BYTES: u64 = 64 * 1024 * 1024;

/// The largest magnitude a weight may have. Trained weights are orders of magnitude smaller;
/// past this, activations overflow `f32`.
const MAX_WEIGHT: f32 = 1e6;

/// The largest weights file read for `arch`: its tensors stored as 64-bit floats, plus room
/// for the safetensors header.
fn max_weights_bytes(arch: Arch) -> u64 {
    let values: u64 = arch
        .tensor_shapes()
        .iter()
        .map(|(_, shape)| shape.iter().map(|&d| d as u64).product::<u64>())
        .sum();
    values.saturating_mul(8).saturating_add(16 * 1024 * 1024)
}

/// Reads a regular file of at most `max` bytes (a link to a device or a pipe, or a file too
/// large, is an error, never read whole).
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, NeuralError> {
    use std::io::Read as _;
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(artifact_err(path, "not a regular file"));
    }
    if meta.len() > max {
        return Err(artifact_err(
            path,
            format!("{} bytes; at most {max} are read", meta.len()),
        ));
    }
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    if bytes.len() as u64 > max {
        return Err(artifact_err(
            path,
            format!("grew past {max} bytes while read"),
        ));
    }
    Ok(bytes)
}

/// Every weight is finite and at most [`MAX_WEIGHT`] in magnitude.
fn check_values(tensors: &HashMap<String, Tensor>, weights_path: &Path) -> Result<(), NeuralError> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        let values: Vec<f32> = tensors[name]
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?;
        if let Some(v) = values
            .iter()
            .find(|v| !(v.is_finite() && v.abs() <= MAX_WEIGHT))
        {
            return Err(artifact_err(
                weights_path,
                format!(
                    "tensor {name} holds {v}; weights must be finite and at most {MAX_WEIGHT:e} \
                     in magnitude"
                ),
            ));
        }
    }
    Ok(())
}

fn check_shapes(
    tensors: &HashMap<String, Tensor>,
    arch: Arch,
    weights_path: &Path,
    meta_path: &Path,
) -> Result<(), NeuralError> {
    let expected = arch.tensor_shapes();
    for (name, shape) in &expected {
        let Some(t) = tensors.get(name) else {
            return Err(artifact_err(
                weights_path,
                format!("tensor {name} is missing"),
            ));
        };
        if t.dims() != shape.as_slice() {
            return Err(artifact_err(
                weights_path,
                format!(
                    "tensor {name} has shape {:?} but {} implies {:?} (vocabulary of {} types, hidden {}, embedding {}): the files do not belong together",
                    t.dims(),
                    meta_path.display(),
                    shape,
                    arch.vocab,
                    arch.hidden,
                    arch.embed_dim
                ),
            ));
        }
        if t.dtype() != candle_core::DType::F32 {
            return Err(artifact_err(
                weights_path,
                format!("tensor {name} is {:?}, expected f32", t.dtype()),
            ));
        }
    }
    if let Some(extra) = tensors
        .keys()
        .find(|k| !expected.iter().any(|(n, _)| n == *k))
    {
        return Err(artifact_err(
            weights_path,
            format!("unexpected tensor {extra}: the network in meta.json has no such layer"),
        ));
    }
    Ok(())
}

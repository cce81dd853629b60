//! [`NeuralModel`]: a trained network with its vocabulary, feature statistics and calibration,
//! and its batched predictions ([`NeuralModel::predict_batch`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use prescient_core::Event;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::calibrate::TopCalibration;
use crate::config::TrainReport;
use crate::error::NeuralError;
use crate::features::{Encoded, FeatureSpec, N_FEATURES, Vocab, encode_context};
use crate::net::{Arch, Cell, LN_EPS, Net, TF_HEADS};

/// Contexts per forward pass inside [`NeuralModel::predict_batch`].
const CHUNK: usize = 256;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A trained next-event network, ready to predict. Cheap to share behind an `Arc`; a clone
/// shares the weights.
#[derive(Debug, Clone)]
pub struct NeuralModel {
    pub(crate) id: u64,
    pub(crate) vocab: Vocab,
    pub(crate) types: Arc<[SmolStr]>,
    pub(crate) spec: FeatureSpec,
    pub(crate) net: Net,
    pub(crate) weights: HashMap<String, Tensor>,
    pub(crate) temperature: f32,
    /// Platt scaling of the top-1 confidence, after the temperature.
    pub(crate) calibration: TopCalibration,
    /// The factor on the top-1 confidence in a novel case (one with a type the vocabulary does
    /// not know), measured on the training cases ([`crate::train::novelty_discount`]).
    pub(crate) novelty_discount: Option<f32>,
    pub(crate) info: ModelInfo,
    pub(crate) top_k: usize,
    /// The mix with the online model chosen on validation data, if one was.
    pub(crate) ensemble: Option<EnsembleMix>,
    /// The same weights as plain vectors, for small batches without tensor overhead.
    fast: Arc<FastWeights>,
}

/// Inference weights as row-major vectors, for [`NeuralModel::step_batch`] on a few cases
/// (and on any number of cases for a Transformer).
#[derive(Debug)]
struct FastWeights {
    emb: Vec<f32>,
    body: FastBody,
    head_w: Vec<f32>,
    head_b: Vec<f32>,
    time_w: Vec<f32>,
    time_b: f32,
}

#[derive(Debug)]
enum FastBody {
    /// Per layer: w_ih, w_hh, b_ih, b_hh.
    Gru(Vec<[Vec<f32>; 4]>),
    Transformer {
        inp_w: Vec<f32>,
        inp_b: Vec<f32>,
        layers: Vec<FastTf>,
        lnf: [Vec<f32>; 2],
    },
}

/// One Transformer layer's weights.
#[derive(Debug)]
struct FastTf {
    ln1: [Vec<f32>; 2],
    qkv_w: Vec<f32>,
    qkv_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    ln2: [Vec<f32>; 2],
    ff1_w: Vec<f32>,
    ff1_b: Vec<f32>,
    ff2_w: Vec<f32>,
    ff2_b: Vec<f32>,
}

/// Batches up to this size step on the plain-vector path (a Transformer always does).
const FAST_MAX: usize = 4;

fn flat(weights: &HashMap<String, Tensor>, name: &str) -> Result<Vec<f32>, NeuralError> {
    let t = weights
        .get(name)
        .ok_or_else(|| NeuralError::Config(format!("tensor {name} is missing")))?;
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// `out[r] += sum_c w[r * cols + c] * x[c]`.
fn matvec_add(w: &[f32], x: &[f32], out: &mut [f32]) {
    let cols = x.len();
    for (r, o) in out.iter_mut().enumerate() {
        let row = &w[r * cols..(r + 1) * cols];
        *o += row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
    }
}

/// `b + W x`.
fn affine(w: &[f32], b: &[f32], x: &[f32]) -> Vec<f32> {
    let mut out = b.to_vec();
    matvec_add(w, x, &mut out);
    out
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// GELU, tanh approximation, as candle's `gelu`.
fn gelu(v: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    0.5 * v * (1.0 + (SQRT_TWO_OVER_PI * v * (1.0 + 0.044_715 * v * v)).tanh())
}

/// Layer norm with weight and bias, as `net.rs` computes it.
fn layer_norm(x: &[f32], [w, b]: &[Vec<f32>; 2]) -> Vec<f32> {
    let n = x.len().max(1) as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + LN_EPS).sqrt();
    x.iter()
        .zip(w.iter().zip(b))
        .map(|(v, (w, b))| (v - mean) * inv * w + b)
        .collect()
}

impl FastWeights {
    fn new(weights: &HashMap<String, Tensor>, arch: Arch) -> Result<FastWeights, NeuralError> {
        let body = match arch.cell {
            Cell::Gru => {
                let mut layers = Vec::with_capacity(arch.layers);
                for l in 0..arch.layers {
                    let input = if l == 0 { arch.input() } else { arch.hidden };
                    let w_ih = flat(weights, &format!("gru{l}.weight_ih_l0"))?;
                    if w_ih.len() != 3 * arch.hidden * input {
                        return Err(NeuralError::Config(format!(
                            "gru{l} has the wrong input width"
                        )));
                    }
                    layers.push([
                        w_ih,
                        flat(weights, &format!("gru{l}.weight_hh_l0"))?,
                        flat(weights, &format!("gru{l}.bias_ih_l0"))?,
                        flat(weights, &format!("gru{l}.bias_hh_l0"))?,
                    ]);
                }
                FastBody::Gru(layers)
            }
            Cell::Transformer => {
                let pair = |p: &str| -> Result<[Vec<f32>; 2], NeuralError> {
                    Ok([
                        flat(weights, &format!("{p}.weight"))?,
                        flat(weights, &format!("{p}.bias"))?,
                    ])
                };
                let mut layers = Vec::with_capacity(arch.layers);
                for l in 0..arch.layers {
                    let p = format!("tf{l}");
                    let [qkv_w, qkv_b] = pair(&format!("{p}.qkv"))?;
                    let [out_w, out_b] = pair(&format!("{p}.out"))?;
                    let [ff1_w, ff1_b] = pair(&format!("{p}.ff1"))?;
                    let [ff2_w, ff2_b] = pair(&format!("{p}.ff2"))?;
                    layers.push(FastTf {
                        ln1: pair(&format!("{p}.ln1"))?,
                        qkv_w,
                        qkv_b,
                        out_w,
                        out_b,
                        ln2: pair(&format!("{p}.ln2"))?,
                        ff1_w,
                        ff1_b,
                        ff2_w,
                        ff2_b,
                    });
                }
                let [inp_w, inp_b] = pair("inp")?;
                if inp_w.len() != arch.hidden * arch.input() {
                    return Err(NeuralError::Config("inp has the wrong input width".into()));
                }
                FastBody::Transformer {
                    inp_w,
                    inp_b,
                    layers,
                    lnf: pair("lnf")?,
                }
            }
        };
        Ok(FastWeights {
            emb: flat(weights, "emb.weight")?,
            body,
            head_w: flat(weights, "head.weight")?,
            head_b: flat(weights, "head.bias")?,
            time_w: flat(weights, "time.weight")?,
            time_b: flat(weights, "time.bias")?.first().copied().unwrap_or(0.0),
        })
    }

    /// One step for one case, as the network computes it; returns the new per-layer states,
    /// the logits and the time output. A GRU's state is its hidden vector per layer, as
    /// `candle_nn::rnn::GRU::step` computes it; a Transformer's is its keys and values per
    /// layer (`[k, v]` per event, the last `max_len` events).
    fn step(
        &self,
        arch: Arch,
        max_len: usize,
        state: Option<&CaseState>,
        input: &StepInput,
    ) -> (CaseState, Vec<f32>, f32) {
        let h = arch.hidden;
        let e = arch.embed_dim;
        let tok = (input.token as usize).min(arch.vocab);
        let mut x: Vec<f32> = self.emb[tok * e..(tok + 1) * e].to_vec();
        x.extend_from_slice(&input.features);
        let mut out = Vec::new();
        match &self.body {
            FastBody::Gru(layers) => {
                for (l, [w_ih, w_hh, b_ih, b_hh]) in layers.iter().enumerate() {
                    let prev: Vec<f32> = state
                        .and_then(|s| s.get(l))
                        .filter(|v| v.len() == h)
                        .cloned()
                        .unwrap_or_else(|| vec![0.0; h]);
                    let gi = affine(w_ih, b_ih, &x);
                    let gh = affine(w_hh, b_hh, &prev);
                    let next: Vec<f32> = (0..h)
                        .map(|j| {
                            let r = sigmoid(gi[j] + gh[j]);
                            let z = sigmoid(gi[h + j] + gh[h + j]);
                            let n = (gi[2 * h + j] + r * gh[2 * h + j]).tanh();
                            z * prev[j] + (1.0 - z) * n
                        })
                        .collect();
                    x = next.clone();
                    out.push(next);
                }
            }
            FastBody::Transformer {
                inp_w,
                inp_b,
                layers,
                lnf,
            } => {
                x = affine(inp_w, inp_b, &x);
                let dh = h / TF_HEADS;
                let scale = 1.0 / (dh as f32).sqrt();
                for (l, w) in layers.iter().enumerate() {
                    let mut cache: Vec<f32> = state
                        .and_then(|s| s.get(l))
                        .filter(|v| v.len().is_multiple_of(2 * h))
                        .cloned()
                        .unwrap_or_default();
                    let qkv = affine(&w.qkv_w, &w.qkv_b, &layer_norm(&x, &w.ln1));
                    cache.extend_from_slice(&qkv[h..3 * h]);
                    let keep = max_len.max(1) * 2 * h;
                    if cache.len() > keep {
                        cache.drain(..cache.len() - keep);
                    }
                    let t = cache.len() / (2 * h);
                    let mut y = vec![0.0f32; h];
                    let mut scores = vec![0.0f32; t];
                    for head in 0..TF_HEADS {
                        let q = &qkv[head * dh..(head + 1) * dh];
                        for (p, s) in scores.iter_mut().enumerate() {
                            let k = &cache[p * 2 * h + head * dh..p * 2 * h + (head + 1) * dh];
                            *s = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
                        }
                        let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let mut z = 0.0;
                        for s in &mut scores {
                            *s = (*s - m).exp();
                            z += *s;
                        }
                        let yh = &mut y[head * dh..(head + 1) * dh];
                        for (p, s) in scores.iter().enumerate() {
                            let v =
                                &cache[p * 2 * h + h + head * dh..p * 2 * h + h + (head + 1) * dh];
                            for (o, vv) in yh.iter_mut().zip(v) {
                                *o += s / z * vv;
                            }
                        }
                    }
                    let o = affine(&w.out_w, &w.out_b, &y);
                    x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
                    let f: Vec<f32> = affine(&w.ff1_w, &w.ff1_b, &layer_norm(&x, &w.ln2))
                        .into_iter()
                        .map(gelu)
                        .collect();
                    let f = affine(&w.ff2_w, &w.ff2_b, &f);
                    x.iter_mut().zip(&f).for_each(|(a, b)| *a += b);
                    out.push(cache);
                }
                x = layer_norm(&x, lnf);
            }
        }
        let logits = affine(&self.head_w, &self.head_b, &x);
        let time = self.time_b + self.time_w.iter().zip(&x).map(|(a, b)| a * b).sum::<f32>();
        (out, logits, time)
    }
}

/// How the network's next-type distribution is mixed with an online model's
/// (`p = weight · neural + (1 − weight) · online`), and the calibration of the mix's top-1
/// confidence; chosen on validation data ([`crate::fit_mix`]) and saved in `meta.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnsembleMix {
    /// The network's weight in the mix, in `[0, 1]`.
    pub weight: f32,
    /// Platt scaling of the mix's top-1 confidence.
    pub calibration: TopCalibration,
    /// Validation accuracy of the mix.
    pub validation_accuracy: f64,
    /// Validation accuracy of the online model alone.
    pub online_accuracy: f64,
    /// Validation rows the choice was made on.
    pub rows: usize,
}

impl EnsembleMix {
    /// The network alone (weight 1, no recalibration): its next types and times, with the
    /// online model's entities.
    pub fn network_only(model: &NeuralModel) -> Self {
        EnsembleMix {
            weight: 1.0,
            calibration: TopCalibration::IDENTITY,
            validation_accuracy: model.info().report.val_accuracy,
            online_accuracy: f64::NAN,
            rows: 0,
        }
    }
}

/// What is known about how a model was trained; saved in `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// sha256 (hex) of the training log, as computed by [`NeuralModel::train`] or given by the caller.
    pub training_log_hash: String,
    /// The training run's report (validation metrics, epochs, time).
    pub report: TrainReport,
}

/// The network's answer for one context: calibrated probabilities of the next event type.
#[derive(Debug, Clone, PartialEq)]
pub struct NextTypeDistribution {
    types: Arc<[SmolStr]>,
    /// Probability of each known type (in vocabulary order) being next, given that the case
    /// goes on; sums to 1.
    pub probabilities: Vec<f32>,
    /// Probability that the case ends here.
    pub end_of_case: f32,
    /// Expected seconds until the next event.
    pub expected_seconds: f64,
    /// The factor by which the top-1 confidence is worth less because the case has a type
    /// the vocabulary does not know (`None`: it has not, or no factor was measured). Not
    /// applied to `probabilities`: the network alone applies it to its forecast, an ensemble
    /// recalibrates its mix instead.
    pub novelty_discount: Option<f32>,
}

impl NextTypeDistribution {
    /// The vocabulary, in the order of [`NextTypeDistribution::probabilities`].
    pub fn types(&self) -> &[SmolStr] {
        &self.types
    }

    /// The `k` most likely next types with their probabilities, most likely first
    /// (ties in vocabulary order).
    pub fn top(&self, k: usize) -> Vec<(SmolStr, f32)> {
        let mut idx: Vec<usize> = (0..self.probabilities.len()).collect();
        idx.sort_by(|&a, &b| {
            self.probabilities[b]
                .total_cmp(&self.probabilities[a])
                .then(a.cmp(&b))
        });
        idx.into_iter()
            .take(k)
            .filter_map(|i| Some((self.types.get(i)?.clone(), self.probabilities[i])))
            .collect()
    }

    /// The most likely next type, never end of case.
    pub fn argmax(&self) -> Option<&SmolStr> {
        let mut best: Option<(usize, f32)> = None;
        for (i, &p) in self.probabilities.iter().enumerate() {
            if best.is_none_or(|(_, b)| p > b) {
                best = Some((i, p));
            }
        }
        best.and_then(|(i, _)| self.types.get(i))
    }

    /// The probability of `event_type` being next (0 for unknown types).
    pub fn probability(&self, event_type: &str) -> f32 {
        self.types
            .iter()
            .position(|t| t == event_type)
            .and_then(|i| self.probabilities.get(i).copied())
            .unwrap_or(0.0)
    }
}

/// The state of a case after its last event, one vector per layer: a GRU's hidden state, or
/// a Transformer's keys and values.
pub(crate) type CaseState = Vec<Vec<f32>>;

/// One event to advance a case's state by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepInput {
    pub token: u32,
    pub features: [f32; N_FEATURES],
    /// Whether the case, this event included, has a type the vocabulary does not know.
    pub novel: bool,
}

impl NeuralModel {
    pub(crate) fn assemble(
        vocab: Vocab,
        spec: FeatureSpec,
        arch: Arch,
        weights: HashMap<String, Tensor>,
        temperature: f32,
        info: ModelInfo,
        top_k: usize,
    ) -> Result<NeuralModel, NeuralError> {
        let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, &Device::Cpu);
        let net = Net::new(arch, vb)?;
        let fast = Arc::new(FastWeights::new(&weights, arch)?);
        let types: Arc<[SmolStr]> = vocab.types().to_vec().into();
        Ok(NeuralModel {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            vocab,
            types,
            spec,
            net,
            weights,
            temperature,
            calibration: TopCalibration::IDENTITY,
            novelty_discount: None,
            info,
            top_k,
            ensemble: None,
            fast,
        })
    }

    /// The event types the model knows, in output order.
    pub fn vocabulary(&self) -> &[SmolStr] {
        self.vocab.types()
    }

    /// The network's shape.
    pub fn arch(&self) -> Arch {
        self.net.arch()
    }

    /// The feature settings and normalisation statistics.
    pub fn features(&self) -> &FeatureSpec {
        &self.spec
    }

    /// The calibration temperature.
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// The calibration of the top-1 confidence (after the temperature).
    pub fn calibration(&self) -> TopCalibration {
        self.calibration
    }

    /// Whether `token` is a known type's, not the unknown token.
    pub(crate) fn knows(&self, token: u32) -> bool {
        (token as usize) < self.vocab.len()
    }

    /// The factor on the confidences of the network alone in a case with a type the
    /// vocabulary does not know (measured when training).
    pub fn novelty_discount(&self) -> Option<f32> {
        self.novelty_discount
    }

    /// Sets that factor (clamped to `[0, 1]`; `None`: no discount).
    pub fn set_novelty_discount(&mut self, d: Option<f32>) {
        self.novelty_discount = d.map(|d| d.clamp(0.0, 1.0));
    }

    /// The mix with the online model chosen on validation data, if one was
    /// ([`NeuralModel::set_ensemble`]; saved in `meta.json`).
    pub fn ensemble(&self) -> Option<EnsembleMix> {
        self.ensemble
    }

    /// Records the mix with the online model chosen on validation data (`prescient train`
    /// does, with [`crate::fit_mix`]).
    pub fn set_ensemble(&mut self, mix: Option<EnsembleMix>) {
        self.ensemble = mix;
    }

    /// How the model was trained.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Replaces the training log hash (when the caller hashes the log file itself).
    pub fn set_training_log_hash(&mut self, hash: impl Into<String>) {
        self.info.training_log_hash = hash.into();
    }

    /// How many next types a forecast lists.
    pub fn top_k(&self) -> usize {
        self.top_k
    }

    /// Sets how many next types a forecast lists (at least 1).
    pub fn set_top_k(&mut self, k: usize) {
        self.top_k = k.max(1);
    }

    /// Predicts the next event after each context in one batched forward pass (chunks of 256).
    /// A context is the events of one case so far, in order; only its last `max_len` are read.
    ///
    /// # Errors
    /// [`NeuralError::EmptyContext`] for an empty context; [`NeuralError::Tensor`] if the
    /// tensor library fails.
    pub fn predict_batch(
        &self,
        contexts: &[&[Event]],
    ) -> Result<Vec<NextTypeDistribution>, NeuralError> {
        let mut encoded = Vec::with_capacity(contexts.len());
        let mut novel = Vec::with_capacity(contexts.len());
        for (index, c) in contexts.iter().enumerate() {
            if c.is_empty() {
                return Err(NeuralError::EmptyContext { index });
            }
            encoded.push(encode_context(c, &self.vocab, &self.spec));
            novel.push(
                c.iter()
                    .any(|e| !self.knows(self.vocab.token(&e.event_type))),
            );
        }
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].tokens.len());
        let mut out: Vec<Option<NextTypeDistribution>> = vec![None; encoded.len()];
        for chunk in order.chunks(CHUNK) {
            let items: Vec<&Encoded> = chunk.iter().map(|&i| &encoded[i]).collect();
            let flags: Vec<bool> = chunk.iter().map(|&i| novel[i]).collect();
            let dists = self.forward_last(&items, &flags)?;
            for (&i, d) in chunk.iter().zip(dists) {
                out[i] = Some(d);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Runs the network over padded sequences and reads the output after each one's last event.
    fn forward_last(
        &self,
        items: &[&Encoded],
        novel: &[bool],
    ) -> Result<Vec<NextTypeDistribution>, NeuralError> {
        let b = items.len();
        let t = items
            .iter()
            .map(|e| e.tokens.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut tokens = vec![0u32; b * t];
        let mut feats = vec![0f32; b * t * N_FEATURES];
        let mut last = Vec::with_capacity(b);
        for (i, e) in items.iter().enumerate() {
            for (j, (&tok, f)) in e.tokens.iter().zip(&e.features).enumerate() {
                tokens[i * t + j] = tok;
                feats[(i * t + j) * N_FEATURES..(i * t + j + 1) * N_FEATURES].copy_from_slice(f);
            }
            last.push((i * t + e.tokens.len().max(1) - 1) as u32);
        }
        let dev = Device::Cpu;
        let tokens = Tensor::from_vec(tokens, (b, t), &dev)?;
        let feats = Tensor::from_vec(feats, (b, t, N_FEATURES), &dev)?;
        let h = self.net.forward_seq(&tokens, &feats)?;
        let h = h.reshape((b * t, self.net.arch().hidden))?;
        let h = h.index_select(&Tensor::from_vec(last, b, &dev)?, 0)?;
        self.distributions(&h, novel)
    }

    /// Distributions from top-layer states `(B, H)`, of cases novel or not.
    fn distributions(
        &self,
        h: &Tensor,
        novel: &[bool],
    ) -> Result<Vec<NextTypeDistribution>, NeuralError> {
        let (logits, time) = self.net.heads(h)?;
        let logits = logits.to_vec2::<f32>()?;
        let time = time.to_vec1::<f32>()?;
        Ok(logits
            .iter()
            .zip(time)
            .zip(novel)
            .map(|((l, z), &n)| self.distribution(l, z, n))
            .collect())
    }

    /// A calibrated distribution from one row of logits and the time output, for a case that
    /// is `novel` (has a type the vocabulary does not know) or not.
    pub(crate) fn distribution(
        &self,
        logits: &[f32],
        time_z: f32,
        novel: bool,
    ) -> NextTypeDistribution {
        let v = self.vocab.len();
        let scaled: Vec<f32> = logits.iter().map(|x| x / self.temperature).collect();
        let m_all = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z_all: f32 = scaled.iter().map(|x| (x - m_all).exp()).sum();
        let end_of_case = scaled.get(v).map_or(0.0, |x| (x - m_all).exp() / z_all);
        let types = &scaled[..v.min(scaled.len())];
        let m = types.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = types.iter().map(|x| (x - m).exp()).collect();
        let z: f32 = exps.iter().sum();
        let mut probabilities: Vec<f32> = exps.into_iter().map(|e| e / z).collect();
        if !self.calibration.is_identity() {
            let mut top = 0;
            for (i, &p) in probabilities.iter().enumerate() {
                if p > probabilities[top] {
                    top = i;
                }
            }
            self.calibration.apply(&mut probabilities, top);
        }

        NextTypeDistribution {
            types: self.types.clone(),
            probabilities,
            end_of_case,
            expected_seconds: self.spec.seconds_from_output(time_z),
            novelty_discount: self.novelty_discount.filter(|_| novel),
        }
    }

    /// Advances many cases by one event each in one forward pass. `None` starts a new case.
    pub(crate) fn step_batch(
        &self,
        states: &[Option<&CaseState>],
        inputs: &[StepInput],
    ) -> Result<(Vec<CaseState>, Vec<NextTypeDistribution>), NeuralError> {
        let arch = self.net.arch();
        let (b, h) = (inputs.len(), arch.hidden);
        if b == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        if b <= FAST_MAX || arch.cell == Cell::Transformer {
            let mut new_states = Vec::with_capacity(b);
            let mut dists = Vec::with_capacity(b);
            for (s, input) in states.iter().zip(inputs) {
                let (state, logits, time) = self.fast.step(arch, self.spec.max_len, *s, input);
                dists.push(self.distribution(&logits, time, input.novel));
                new_states.push(state);
            }
            return Ok((new_states, dists));
        }
        let dev = Device::Cpu;
        let mut layer_states = Vec::with_capacity(arch.layers);
        for l in 0..arch.layers {
            let mut flat = vec![0f32; b * h];
            for (i, s) in states.iter().enumerate() {
                if let Some(v) = s.and_then(|s| s.get(l))
                    && v.len() == h
                {
                    flat[i * h..(i + 1) * h].copy_from_slice(v);
                }
            }
            layer_states.push(Tensor::from_vec(flat, (b, h), &dev)?);
        }
        let tokens: Vec<u32> = inputs.iter().map(|s| s.token).collect();
        let feats: Vec<f32> = inputs.iter().flat_map(|s| s.features).collect();
        let tokens = Tensor::from_vec(tokens, b, &dev)?;
        let feats = Tensor::from_vec(feats, (b, N_FEATURES), &dev)?;
        let next = self
            .net
            .step(&layer_states, &tokens, &feats)?
            .ok_or_else(|| NeuralError::Config("only a GRU steps in batches".into()))?;
        let top = next
            .last()
            .ok_or_else(|| NeuralError::Config("the network has no layers".into()))?;
        let novel: Vec<bool> = inputs.iter().map(|s| s.novel).collect();
        let dists = self.distributions(top, &novel)?;
        let mut per_case: Vec<CaseState> = vec![Vec::with_capacity(arch.layers); b];
        for layer in &next {
            for (i, row) in layer.to_vec2::<f32>()?.into_iter().enumerate() {
                per_case[i].push(row);
            }
        }
        Ok((per_case, dists))
    }
}

/// `t` plus `secs` seconds, for a delay the network predicted: a negative or non-finite delay
/// (weights that overflow) counts as none, and a huge one is held to about 30,000 years.
pub(crate) fn after_seconds(t: prescient_core::Timestamp, secs: f64) -> prescient_core::Timestamp {
    let secs = if secs.is_finite() {
        secs.clamp(0.0, 1e12)
    } else {
        0.0
    };
    t.plus(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::after_seconds;
    use prescient_core::Timestamp;

    #[test]
    fn a_delay_from_overflowing_weights_counts_as_none() {
        let t = Timestamp::from_secs(1_000);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -5.0] {
            assert_eq!(after_seconds(t, bad), t, "{bad}");
        }
        assert_eq!(after_seconds(t, 2.0), Timestamp::from_secs(1_002));
        assert!(after_seconds(t, 3e38) > t);
    }
}

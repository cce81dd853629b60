//! The network: an event-type embedding concatenated with the time features, a sequence body,
//! and two heads — next-type logits (the known types plus end of case) and the standardised
//! log1p seconds until the next event.
//!
//! The body is one of two [`Cell`]s:
//! - **GRU** (the default): stacked GRU layers (`candle_nn::rnn::gru`);
//! - **Transformer**: a causal pre-norm Transformer encoder (multi-head self-attention over
//!   the case so far, a GELU feed-forward block, layer norms), over the same inputs projected
//!   to the hidden width. The position comes from the position feature.
//!
//! Training reads whole sequences ([`Net::forward_seq`]); serving advances one event at a time
//! from a saved state ([`Net::step`] for the GRU; the plain-vector step in `model.rs` for both,
//! which keeps the Transformer's keys and values per case). Both compute the same function, so
//! they agree.

use candle_core::{D, Module, Tensor};
use candle_nn::rnn::{GRU, GRUConfig, GRUState, RNN};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::features::N_FEATURES;

/// Attention heads of every Transformer layer.
pub const TF_HEADS: usize = 4;
/// The Transformer's feed-forward width, as a multiple of the hidden width.
pub const TF_FFN: usize = 2;
/// Layer norm epsilon.
pub const LN_EPS: f32 = 1e-5;

/// The kind of sequence body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cell {
    /// Stacked GRU layers.
    #[default]
    Gru,
    /// A causal Transformer encoder.
    Transformer,
}

impl Cell {
    /// The cell's name, as `--network` takes it and `meta.json` stores it.
    pub fn name(self) -> &'static str {
        match self {
            Cell::Gru => "gru",
            Cell::Transformer => "transformer",
        }
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Cell {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "gru" => Ok(Cell::Gru),
            "transformer" => Ok(Cell::Transformer),
            other => Err(format!(
                "unknown network {other:?}: expected gru or transformer"
            )),
        }
    }
}

/// The shape of a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arch {
    /// Known event types (the embedding has one more row, the unknown token; the head one more
    /// class, end of case).
    pub vocab: usize,
    /// Embedding width.
    pub embed_dim: usize,
    /// Hidden width of every layer.
    pub hidden: usize,
    /// Number of layers.
    pub layers: usize,
    /// The sequence body (artifacts written before it existed hold GRUs).
    #[serde(default)]
    pub cell: Cell,
}

impl Arch {
    /// Number of output classes: the types plus end of case.
    pub fn classes(&self) -> usize {
        self.vocab + 1
    }

    /// Width of the first layer's input: the embedding and the features.
    pub fn input(&self) -> usize {
        self.embed_dim + N_FEATURES
    }

    /// Every tensor of the network, by name, with its shape.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden;
        let mut out = vec![(
            "emb.weight".to_owned(),
            vec![self.vocab + 1, self.embed_dim],
        )];
        match self.cell {
            Cell::Gru => {
                for l in 0..self.layers {
                    let input = if l == 0 { self.input() } else { h };
                    out.push((format!("gru{l}.weight_ih_l0"), vec![3 * h, input]));
                    out.push((format!("gru{l}.weight_hh_l0"), vec![3 * h, h]));
                    out.push((format!("gru{l}.bias_ih_l0"), vec![3 * h]));
                    out.push((format!("gru{l}.bias_hh_l0"), vec![3 * h]));
                }
            }
            Cell::Transformer => {
                out.push(("inp.weight".to_owned(), vec![h, self.input()]));
                out.push(("inp.bias".to_owned(), vec![h]));
                for l in 0..self.layers {
                    let p = format!("tf{l}");
                    out.push((format!("{p}.ln1.weight"), vec![h]));
                    out.push((format!("{p}.ln1.bias"), vec![h]));
                    out.push((format!("{p}.qkv.weight"), vec![3 * h, h]));
                    out.push((format!("{p}.qkv.bias"), vec![3 * h]));
                    out.push((format!("{p}.out.weight"), vec![h, h]));
                    out.push((format!("{p}.out.bias"), vec![h]));
                    out.push((format!("{p}.ln2.weight"), vec![h]));
                    out.push((format!("{p}.ln2.bias"), vec![h]));
                    out.push((format!("{p}.ff1.weight"), vec![TF_FFN * h, h]));
                    out.push((format!("{p}.ff1.bias"), vec![TF_FFN * h]));
                    out.push((format!("{p}.ff2.weight"), vec![h, TF_FFN * h]));
                    out.push((format!("{p}.ff2.bias"), vec![h]));
                }
                out.push(("lnf.weight".to_owned(), vec![h]));
                out.push(("lnf.bias".to_owned(), vec![h]));
            }
        }
        out.push(("head.weight".to_owned(), vec![self.classes(), h]));
        out.push(("head.bias".to_owned(), vec![self.classes()]));
        out.push(("time.weight".to_owned(), vec![1, h]));
        out.push(("time.bias".to_owned(), vec![1]));
        out
    }

    /// Whether the shape can be built: hidden widths the Transformer's heads divide.
    pub fn check(&self) -> Result<(), String> {
        if self.cell == Cell::Transformer && !self.hidden.is_multiple_of(TF_HEADS) {
            return Err(format!(
                "a transformer's hidden width must be a multiple of {TF_HEADS}, got {}",
                self.hidden
            ));
        }
        Ok(())
    }
}

/// A layer norm with weight and bias, from differentiable tensor operations (candle's fused
/// layer norm has no backward pass).
#[derive(Debug, Clone)]
struct Norm {
    weight: Tensor,
    bias: Tensor,
}

impl Norm {
    fn new(h: usize, vb: VarBuilder<'_>) -> candle_core::Result<Norm> {
        Ok(Norm {
            weight: vb.get_with_hints(h, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(h, "bias", candle_nn::Init::Const(0.0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + f64::from(LN_EPS))?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// One pre-norm Transformer layer.
#[derive(Debug, Clone)]
struct TfLayer {
    ln1: Norm,
    qkv: Linear,
    out: Linear,
    ln2: Norm,
    ff1: Linear,
    ff2: Linear,
}

impl TfLayer {
    fn new(h: usize, vb: VarBuilder<'_>) -> candle_core::Result<TfLayer> {
        Ok(TfLayer {
            ln1: Norm::new(h, vb.pp("ln1"))?,
            qkv: candle_nn::linear(h, 3 * h, vb.pp("qkv"))?,
            out: candle_nn::linear(h, h, vb.pp("out"))?,
            ln2: Norm::new(h, vb.pp("ln2"))?,
            ff1: candle_nn::linear(h, TF_FFN * h, vb.pp("ff1"))?,
            ff2: candle_nn::linear(TF_FFN * h, h, vb.pp("ff2"))?,
        })
    }

    /// `x` `(B, T, H)`, `mask` `(T, T)` (0 or −1e9 above the diagonal).
    fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let dh = h / TF_HEADS;
        let qkv = self.qkv.forward(&self.ln1.forward(x)?)?;
        let split = |i: usize| -> candle_core::Result<Tensor> {
            qkv.narrow(2, i * h, h)?
                .reshape((b, t, TF_HEADS, dh))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let scores = (q.matmul(&k.t()?.contiguous()?)? * (1.0 / (dh as f64).sqrt()))?;
        let att = candle_nn::ops::softmax(&scores.broadcast_add(mask)?, D::Minus1)?;
        let y = att
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, h))?;
        let x = (x + self.out.forward(&y)?)?;
        let f = self
            .ff2
            .forward(&self.ff1.forward(&self.ln2.forward(&x)?)?.gelu()?)?;
        x + f
    }
}

/// The sequence body.
#[derive(Debug, Clone)]
enum Body {
    Gru(Vec<GRU>),
    Transformer {
        inp: Linear,
        layers: Vec<TfLayer>,
        lnf: Norm,
    },
}

/// The network's layers.
#[derive(Debug, Clone)]
pub struct Net {
    emb: Embedding,
    body: Body,
    head: Linear,
    time: Linear,
    arch: Arch,
}

/// The causal mask `(T, T)`: 0 where a position may attend, −1e9 after it.
fn causal_mask(t: usize, dev: &candle_core::Device) -> candle_core::Result<Tensor> {
    let v: Vec<f32> = (0..t * t)
        .map(|i| if i % t > i / t { -1e9 } else { 0.0 })
        .collect();
    Tensor::from_vec(v, (t, t), dev)
}

impl Net {
    /// Builds (or, from a loaded `VarBuilder`, restores) a network of shape `arch`.
    pub fn new(arch: Arch, vb: VarBuilder<'_>) -> candle_core::Result<Net> {
        arch.check().map_err(candle_core::Error::Msg)?;
        let emb = candle_nn::embedding(arch.vocab + 1, arch.embed_dim, vb.pp("emb"))?;
        let body = match arch.cell {
            Cell::Gru => {
                let mut grus = Vec::with_capacity(arch.layers);
                for l in 0..arch.layers {
                    let input = if l == 0 { arch.input() } else { arch.hidden };
                    grus.push(candle_nn::rnn::gru(
                        input,
                        arch.hidden,
                        GRUConfig::default(),
                        vb.pp(format!("gru{l}")),
                    )?);
                }
                Body::Gru(grus)
            }
            Cell::Transformer => Body::Transformer {
                inp: candle_nn::linear(arch.input(), arch.hidden, vb.pp("inp"))?,
                layers: (0..arch.layers)
                    .map(|l| TfLayer::new(arch.hidden, vb.pp(format!("tf{l}"))))
                    .collect::<candle_core::Result<_>>()?,
                lnf: Norm::new(arch.hidden, vb.pp("lnf"))?,
            },
        };
        let head = candle_nn::linear(arch.hidden, arch.classes(), vb.pp("head"))?;
        let time = candle_nn::linear(arch.hidden, 1, vb.pp("time"))?;
        Ok(Net {
            emb,
            body,
            head,
            time,
            arch,
        })
    }

    /// The network's shape.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Top-layer hidden states `(B, T, H)` for tokens `(B, T)` and features `(B, T, F)`.
    /// Position `t` reads only positions up to `t`, so right padding changes nothing before it.
    pub fn forward_seq(&self, tokens: &Tensor, features: &Tensor) -> candle_core::Result<Tensor> {
        let e = self.emb.forward(tokens)?;
        let mut x = Tensor::cat(&[&e, features], D::Minus1)?;
        match &self.body {
            Body::Gru(grus) => {
                for gru in grus {
                    let states = gru.seq(&x)?;
                    let hs: Vec<Tensor> = states.into_iter().map(|s| s.h).collect();
                    x = Tensor::stack(&hs, 1)?;
                }
                Ok(x)
            }
            Body::Transformer { inp, layers, lnf } => {
                let t = x.dim(1)?;
                let mask = causal_mask(t, x.device())?;
                x = inp.forward(&x)?;
                for layer in layers {
                    x = layer.forward(&x, &mask)?;
                }
                lnf.forward(&x)
            }
        }
    }

    /// Advances every GRU layer's state `(B, H)` by one event: tokens `(B)`, features `(B, F)`.
    /// Returns the new states; the last one is the top layer's. `None` for a Transformer,
    /// whose steps run on the plain-vector path.
    pub fn step(
        &self,
        states: &[Tensor],
        tokens: &Tensor,
        features: &Tensor,
    ) -> candle_core::Result<Option<Vec<Tensor>>> {
        let Body::Gru(grus) = &self.body else {
            return Ok(None);
        };
        let e = self.emb.forward(tokens)?;
        let mut x = Tensor::cat(&[&e, features], D::Minus1)?;
        let mut out = Vec::with_capacity(grus.len());
        for (gru, h) in grus.iter().zip(states) {
            let next = gru.step(&x, &GRUState { h: h.clone() })?;
            x = next.h;
            out.push(x.clone());
        }
        Ok(Some(out))
    }

    /// Next-type logits `(.., C)` and time output `(..)` from top-layer states `(.., H)`.
    pub fn heads(&self, h: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let logits = self.head.forward(h)?;
        let time = self.time.forward(h)?.squeeze(D::Minus1)?;
        Ok((logits, time))
    }
}

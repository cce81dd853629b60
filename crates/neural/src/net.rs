//! The network: an event-type embedding concatenated with the time features, stacked GRU
//! layers (`candle_nn::rnn::gru`), and two heads — next-type logits (the known types plus end of
//! case) and the standardised log1p seconds until the next event.
//!
//! Training reads whole sequences ([`Net::forward_seq`]); serving advances one event at a time
//! from a saved hidden state ([`Net::step`]). Both run the same `GRU::step`, so they agree.

use candle_core::{D, Module, Tensor};
use candle_nn::rnn::{GRU, GRUConfig, GRUState, RNN};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::features::N_FEATURES;

/// The shape of a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arch {
    /// Known event types (the embedding has one more row, the unknown token; the head one more
    /// class, end of case).
    pub vocab: usize,
    /// Embedding width.
    pub embed_dim: usize,
    /// Hidden width of every GRU layer.
    pub hidden: usize,
    /// Number of GRU layers.
    pub layers: usize,
}

impl Arch {
    /// Number of output classes: the types plus end of case.
    pub fn classes(&self) -> usize {
        self.vocab + 1
    }

    /// Every tensor of the network, by name, with its shape.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden;
        let mut out = vec![(
            "emb.weight".to_owned(),
            vec![self.vocab + 1, self.embed_dim],
        )];
        for l in 0..self.layers {
            let input = if l == 0 {
                self.embed_dim + N_FEATURES
            } else {
                h
            };
            out.push((format!("gru{l}.weight_ih_l0"), vec![3 * h, input]));
            out.push((format!("gru{l}.weight_hh_l0"), vec![3 * h, h]));
            out.push((format!("gru{l}.bias_ih_l0"), vec![3 * h]));
            out.push((format!("gru{l}.bias_hh_l0"), vec![3 * h]));
        }
        out.push(("head.weight".to_owned(), vec![self.classes(), h]));
        out.push(("head.bias".to_owned(), vec![self.classes()]));
        out.push(("time.weight".to_owned(), vec![1, h]));
        out.push(("time.bias".to_owned(), vec![1]));
        out
    }
}

/// The network's layers.
#[derive(Debug, Clone)]
pub struct Net {
    emb: Embedding,
    grus: Vec<GRU>,
    head: Linear,
    time: Linear,
    arch: Arch,
}

impl Net {
    /// Builds (or, from a loaded `VarBuilder`, restores) a network of shape `arch`.
    pub fn new(arch: Arch, vb: VarBuilder<'_>) -> candle_core::Result<Net> {
        let emb = candle_nn::embedding(arch.vocab + 1, arch.embed_dim, vb.pp("emb"))?;
        let mut grus = Vec::with_capacity(arch.layers);
        for l in 0..arch.layers {
            let input = if l == 0 {
                arch.embed_dim + N_FEATURES
            } else {
                arch.hidden
            };
            grus.push(candle_nn::rnn::gru(
                input,
                arch.hidden,
                GRUConfig::default(),
                vb.pp(format!("gru{l}")),
            )?);
        }
        let head = candle_nn::linear(arch.hidden, arch.classes(), vb.pp("head"))?;
        let time = candle_nn::linear(arch.hidden, 1, vb.pp("time"))?;
        Ok(Net {
            emb,
            grus,
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
    pub fn forward_seq(&self, tokens: &Tensor, features: &Tensor) -> candle_core::Result<Tensor> {
        let e = self.emb.forward(tokens)?;
        let mut x = Tensor::cat(&[&e, features], D::Minus1)?;
        for gru in &self.grus {
            let states = gru.seq(&x)?;
            let hs: Vec<Tensor> = states.into_iter().map(|s| s.h).collect();
            x = Tensor::stack(&hs, 1)?;
        }
        Ok(x)
    }

    /// Advances every layer's state `(B, H)` by one event: tokens `(B)`, features `(B, F)`.
    /// Returns the new states; the last one is the top layer's.
    pub fn step(
        &self,
        states: &[Tensor],
        tokens: &Tensor,
        features: &Tensor,
    ) -> candle_core::Result<Vec<Tensor>> {
        let e = self.emb.forward(tokens)?;
        let mut x = Tensor::cat(&[&e, features], D::Minus1)?;
        let mut out = Vec::with_capacity(self.grus.len());
        for (gru, h) in self.grus.iter().zip(states) {
            let next = gru.step(&x, &GRUState { h: h.clone() })?;
            x = next.h;
            out.push(x.clone());
        }
        Ok(out)
    }

    /// Next-type logits `(.., C)` and time output `(..)` from top-layer states `(.., H)`.
    pub fn heads(&self, h: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let logits = self.head.forward(h)?;
        let time = self.time.forward(h)?.squeeze(D::Minus1)?;
        Ok((logits, time))
    }
}

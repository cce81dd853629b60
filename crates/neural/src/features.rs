//! Turning events into network inputs: the vocabulary of event types and the time features.
//!
//! Each event of a case becomes a token (its type, or the unknown token) and [`N_FEATURES`]
//! numbers: log1p seconds since the previous event and since the case start (standardised with
//! training statistics), the time of day and the weekday as sine/cosine pairs, and the position
//! in the case (log-scaled).

use std::collections::HashMap;

use chrono::{Datelike, Timelike};
use prescient_core::{Event, Timestamp};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

/// Number of numeric features per event.
pub const N_FEATURES: usize = 7;

/// The event types a model knows. Token `i < len` is type `i`; token `len` is "unknown" on the
/// input side and "end of case" on the output side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    types: Vec<SmolStr>,
    index: HashMap<SmolStr, u32>,
}

impl Vocab {
    /// A vocabulary of `types`, in this order (duplicates are dropped).
    pub fn new(types: impl IntoIterator<Item = SmolStr>) -> Self {
        let mut v = Vocab {
            types: Vec::new(),
            index: HashMap::new(),
        };
        for t in types {
            if !v.index.contains_key(&t) {
                v.index.insert(t.clone(), v.types.len() as u32);
                v.types.push(t);
            }
        }
        v
    }

    /// The types in token order.
    pub fn types(&self) -> &[SmolStr] {
        &self.types
    }

    /// Number of known types.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether no type is known.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The token of a type: its index, or the unknown token.
    pub fn token(&self, t: &str) -> u32 {
        self.index
            .get(t)
            .copied()
            .unwrap_or(self.types.len() as u32)
    }
}

/// Mean and standard deviation of a feature over the training events.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Standardise {
    /// Mean.
    pub mean: f64,
    /// Standard deviation (at least a small positive number).
    pub std: f64,
}

impl Standardise {
    /// Statistics of `xs`; mean 0 and std 1 when empty.
    pub fn fit(xs: impl Iterator<Item = f64>) -> Self {
        let (mut n, mut s, mut s2) = (0.0f64, 0.0f64, 0.0f64);
        for x in xs {
            n += 1.0;
            s += x;
            s2 += x * x;
        }
        if n == 0.0 {
            return Standardise {
                mean: 0.0,
                std: 1.0,
            };
        }
        let mean = s / n;
        let var = (s2 / n - mean * mean).max(0.0);
        Standardise {
            mean,
            std: var.sqrt().max(1e-3),
        }
    }

    /// `(x - mean) / std`.
    pub fn apply(&self, x: f64) -> f64 {
        (x - self.mean) / self.std
    }

    /// The inverse of [`Standardise::apply`].
    pub fn invert(&self, z: f64) -> f64 {
        z * self.std + self.mean
    }
}

/// The feature settings and normalisation statistics, saved with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// log1p seconds since the previous event of the case (also the scale of the time target).
    pub since_prev: Standardise,
    /// log1p seconds since the case start.
    pub since_start: Standardise,
    /// Longest history read; positions are scaled by log1p(max_len).
    pub max_len: usize,
}

/// log1p of non-negative seconds from `a` to `b`.
pub fn log_gap(a: Timestamp, b: Timestamp) -> f64 {
    b.secs_since(a).max(0.0).ln_1p()
}

impl FeatureSpec {
    /// Fits the statistics on training cases.
    pub fn fit(cases: &[Vec<Event>], max_len: usize) -> Self {
        let since_prev = Standardise::fit(cases.iter().flat_map(|c| {
            c.windows(2)
                .map(|w| log_gap(w[0].time, w[1].time))
                .collect::<Vec<_>>()
        }));
        let since_start = Standardise::fit(cases.iter().flat_map(|c| {
            let start = c.first().map(|e| e.time).unwrap_or_default();
            c.iter()
                .map(move |e| log_gap(start, e.time))
                .collect::<Vec<_>>()
        }));
        FeatureSpec {
            since_prev,
            since_start,
            max_len,
        }
    }

    /// The features of an event at `time`, the `index`-th (from 0) of a case that started at
    /// `start`, whose previous event happened at `prev`.
    pub fn step(
        &self,
        prev: Option<Timestamp>,
        start: Timestamp,
        time: Timestamp,
        index: usize,
    ) -> [f32; N_FEATURES] {
        let dp = prev.map_or(0.0, |p| log_gap(p, time));
        let ds = log_gap(start, time);
        let (hs, hc, ws, wc) = match time.to_datetime() {
            Some(dt) => {
                let day = f64::from(dt.num_seconds_from_midnight()) / 86_400.0;
                let week = f64::from(dt.weekday().num_days_from_monday()) / 7.0;
                let tau = std::f64::consts::TAU;
                (
                    (tau * day).sin(),
                    (tau * day).cos(),
                    (tau * week).sin(),
                    (tau * week).cos(),
                )
            }
            None => (0.0, 0.0, 0.0, 0.0),
        };
        let pos = (index as f64).ln_1p() / (self.max_len.max(1) as f64).ln_1p();
        [
            self.since_prev.apply(dp) as f32,
            self.since_start.apply(ds) as f32,
            hs as f32,
            hc as f32,
            ws as f32,
            wc as f32,
            pos as f32,
        ]
    }

    /// Seconds until the next event, from the network's standardised log1p output.
    pub fn seconds_from_output(&self, z: f32) -> f64 {
        self.since_prev
            .invert(f64::from(z))
            .clamp(0.0, 50.0)
            .exp_m1()
    }
}

/// A case (or a window of one) encoded for the network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded {
    /// Input tokens, one per event.
    pub tokens: Vec<u32>,
    /// Input features, one row per event.
    pub features: Vec<[f32; N_FEATURES]>,
    /// Next-type targets (the end-of-case token after the last event).
    pub targets: Vec<u32>,
    /// Standardised log1p seconds to the next event; `None` after the last event.
    pub time_targets: Vec<Option<f32>>,
    /// Whether the next event's type is unknown to the vocabulary (its target is then the
    /// end-of-case token, but the case goes on: a prediction there is always wrong).
    pub unknown_targets: Vec<bool>,
    /// Index in its case of the first event of this window.
    pub offset: usize,
}

/// Encodes a full case into windows of at most `spec.max_len` events. Every event's features
/// are computed against the true case start, so a window is read as the middle of its case.
pub fn encode_case(case: &[Event], vocab: &Vocab, spec: &FeatureSpec) -> Vec<Encoded> {
    let Some(first) = case.first() else {
        return Vec::new();
    };
    let start = first.time;
    let end = vocab.len() as u32;
    let mut all = Encoded::default();
    for (i, e) in case.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| case[j].time);
        all.tokens.push(vocab.token(&e.event_type));
        all.features.push(spec.step(prev, start, e.time, i));
        match case.get(i + 1) {
            Some(next) => {
                let target = vocab.token(&next.event_type).min(end);
                all.targets.push(target);
                all.unknown_targets.push(target == end);
                all.time_targets.push(Some(
                    spec.since_prev.apply(log_gap(e.time, next.time)) as f32
                ));
            }
            None => {
                all.targets.push(end);
                all.unknown_targets.push(false);
                all.time_targets.push(None);
            }
        }
    }
    if all.tokens.len() <= spec.max_len {
        return vec![all];
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < all.tokens.len() {
        let to = (at + spec.max_len).min(all.tokens.len());
        out.push(Encoded {
            tokens: all.tokens[at..to].to_vec(),
            features: all.features[at..to].to_vec(),
            targets: all.targets[at..to].to_vec(),
            time_targets: all.time_targets[at..to].to_vec(),
            unknown_targets: all.unknown_targets[at..to].to_vec(),
            offset: at,
        });
        at = to;
    }
    out
}

/// Encodes the inputs of a context: its last `spec.max_len` events, with times measured from
/// the context's first event.
pub fn encode_context(ctx: &[Event], vocab: &Vocab, spec: &FeatureSpec) -> Encoded {
    let mut out = Encoded::default();
    let Some(first) = ctx.first() else {
        return out;
    };
    let from = ctx.len().saturating_sub(spec.max_len);
    for (i, e) in ctx.iter().enumerate().skip(from) {
        let prev = i.checked_sub(1).map(|j| ctx[j].time);
        out.tokens.push(vocab.token(&e.event_type));
        out.features.push(spec.step(prev, first.time, e.time, i));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: &str, secs: i64) -> Event {
        Event::new("e", t, Timestamp::from_secs(secs))
    }

    #[test]
    fn unknown_types_get_the_last_token() {
        let v = Vocab::new(["a".into(), "b".into(), "a".into()]);
        assert_eq!(v.len(), 2);
        assert_eq!(v.token("b"), 1);
        assert_eq!(v.token("zzz"), 2);
    }

    #[test]
    fn long_cases_are_windowed_with_end_target_last() {
        let case: Vec<Event> = (0..7)
            .map(|i| ev(if i % 2 == 0 { "a" } else { "b" }, i * 60))
            .collect();
        let v = Vocab::new(["a".into(), "b".into()]);
        let spec = FeatureSpec::fit(std::slice::from_ref(&case), 3);
        let enc = encode_case(&case, &v, &spec);
        assert_eq!(
            enc.iter().map(|e| e.tokens.len()).collect::<Vec<_>>(),
            vec![3, 3, 1]
        );
        assert_eq!(enc[2].targets, vec![2]);
        assert_eq!(enc[0].targets, vec![1, 0, 1]);
        assert!(enc[2].time_targets[0].is_none());
        // constant gaps standardise to zero
        assert!(enc[1].time_targets[0].is_some_and(|z| z.abs() < 1e-3));
        let ctx = encode_context(&case, &v, &spec);
        assert_eq!(ctx.tokens, vec![0, 1, 0]);
        assert_eq!(ctx.features[2], enc[2].features[0]);
    }
}

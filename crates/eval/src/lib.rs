//! Prediction-quality protocols for Prescient, as `../shared/specs/evaluate.md` defines them.
//!
//! [`evaluate`] splits a log by a [`Protocol`], trains an [`OnlineModel`] on the training part
//! ([`Observe::Learn`]) and scores it on the rest. In `tax2017` and `pt2021` the held-out cases
//! are only tracked ([`Observe::Track`]): the model sees their prefixes as context but never
//! learns from them. `chrono` is prequential: every event is learned from as it arrives, and
//! each forecast is scored against events the model has not seen yet. The result is a
//! [`Report`] whose serde form carries the spec's JSON fields.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use prescient_core::{EntityKey, Event, Forecast, Observe, OnlineModel};
use rustc_hash::FxHashMap;
use serde::Serialize;

mod metrics;

pub use metrics::{Calibration, ECE_BINS, ReliabilityBin};

/// Why an evaluation could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The log has no events.
    #[error("the log has no events")]
    EmptyLog,
    /// The protocol's split left no data to train or to test on.
    #[error("protocol {protocol} needs {needs}, but the log has only {has}")]
    TooSmall {
        /// The protocol.
        protocol: Protocol,
        /// What it needs.
        needs: String,
        /// What the log has.
        has: String,
    },
}

/// An evaluation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Next activity, Tax et al. (CAiSE 2017): cases are runs of rows, the first 2/3 train.
    Tax2017,
    /// Next activity, ProcessTransformer (2021): the first 80% of case ids train.
    Pt2021,
    /// Next events and entities on any log, in time order, prequential after the first 2/3.
    Chrono,
}

impl Protocol {
    /// The protocol's name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tax2017 => "tax2017",
            Protocol::Pt2021 => "pt2021",
            Protocol::Chrono => "chrono",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown protocol name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}: expected tax2017, pt2021 or chrono")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tax2017" => Ok(Protocol::Tax2017),
            "pt2021" => Ok(Protocol::Pt2021),
            "chrono" => Ok(Protocol::Chrono),
            _ => Err(UnknownProtocol(s.to_owned())),
        }
    }
}

/// Settings of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// The protocol.
    pub protocol: Protocol,
    /// `chrono`: the entities touched within this time after an event are its truth set.
    pub horizon: Duration,
    /// `chrono`: an entity prediction counts (would be prefetched) at this confidence or more.
    pub threshold: f32,
    /// The log's name, for the report.
    pub log: String,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            protocol: Protocol::Tax2017,
            horizon: Duration::from_secs(3600),
            threshold: 0.5,
            log: String::new(),
        }
    }
}

/// The outcome of an evaluation; serialises to the spec's JSON fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The protocol.
    pub protocol: Protocol,
    /// The log's name.
    pub log: String,
    /// The model's name.
    pub model: String,
    /// Scored rows (predictions compared with a target).
    pub scored: u64,
    /// Top-1 next-type accuracy, micro-averaged over scored rows.
    pub next_type_accuracy: f64,
    /// Top-3 next-type accuracy.
    pub next_type_top3_accuracy: f64,
    /// Expected calibration error of the top-1 next-type confidence, 10 equal-width bins.
    pub ece: f64,
    /// The reliability table behind `ece`: per confidence bin, predictions, mean confidence
    /// and accuracy.
    pub reliability: Vec<ReliabilityBin>,
    /// Wall-clock seconds spent training.
    pub train_seconds: f64,
    /// Predictions per wall-clock second while scoring (including the observe calls).
    pub predict_per_sec: f64,
    /// How the model saw the test events: `track` (context only, no learning) or `learn`
    /// (prequential: learned after being scored).
    pub test_observe: &'static str,
    /// Events the model learned from before scoring started.
    pub train_events: u64,
    /// Cases (tax2017, pt2021) in the training part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_cases: Option<u64>,
    /// Cases (tax2017, pt2021) in the test part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_cases: Option<u64>,
    /// pt2021: the unweighted mean over prefix lengths of the per-length accuracy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_over_prefix_lengths: Option<f64>,
    /// chrono: (predicted ∩ truth) / predicted, summed over scored events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_precision: Option<f64>,
    /// chrono: (predicted ∩ truth) / truth, summed over scored events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_recall: Option<f64>,
    /// chrono: entity predictions at or above the threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_predicted: Option<u64>,
    /// chrono: size of the truth sets, summed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_truth: Option<u64>,
    /// chrono: mean absolute error, in seconds, of the predicted time until the next event
    /// touching one of the event's entities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_next_mae_s: Option<f64>,
    /// chrono: the horizon, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub horizon_s: Option<f64>,
    /// chrono: the entity confidence threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
}

/// The case an event belongs to ([`Event::case_id`]).
pub fn case_of(e: &Event) -> &str {
    e.case_id()
}

/// Accumulates next-type scores.
#[derive(Debug, Default)]
struct Scores {
    scored: u64,
    correct: u64,
    top3: u64,
    calibration: Calibration,
    /// Per prefix length: (rows, correct).
    by_prefix: Vec<(u64, u64)>,
}

impl Scores {
    fn add(&mut self, f: &Forecast, target: &str, prefix_len: usize) {
        let (conf, hit) = match f.next.first() {
            Some(n) => (n.probability, n.event_type == target),
            None => (0.0, false),
        };
        self.scored += 1;
        self.correct += u64::from(hit);
        self.top3 += u64::from(f.next.iter().take(3).any(|n| n.event_type == target));
        self.calibration.add(conf, hit);
        if self.by_prefix.len() <= prefix_len {
            self.by_prefix.resize(prefix_len + 1, (0, 0));
        }
        self.by_prefix[prefix_len].0 += 1;
        self.by_prefix[prefix_len].1 += u64::from(hit);
    }

    fn accuracy(&self) -> f64 {
        ratio(self.correct, self.scored)
    }

    fn mean_over_prefix_lengths(&self) -> f64 {
        let accs: Vec<f64> = self
            .by_prefix
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|&(n, c)| ratio(c, n))
            .collect();
        if accs.is_empty() {
            0.0
        } else {
            accs.iter().sum::<f64>() / accs.len() as f64
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Calls the progress callback every this many events.
const PROGRESS_EVERY: usize = 4096;

/// Runs `opts.protocol` on `events` (in file order) with `model`.
///
/// `progress(done, total)` is called now and then with the number of events processed.
///
/// # Errors
/// [`EvalError`] when the log is empty or too small for the protocol's split.
pub fn evaluate(
    model: &mut dyn OnlineModel,
    events: &[Event],
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    if events.is_empty() {
        return Err(EvalError::EmptyLog);
    }
    match opts.protocol {
        Protocol::Tax2017 => tax2017(model, events, opts, progress),
        Protocol::Pt2021 => pt2021(model, events, opts, progress),
        Protocol::Chrono => Ok(chrono(model, events, opts, progress)),
    }
}

fn base_report(model: &dyn OnlineModel, opts: &EvalOptions, s: &Scores) -> Report {
    Report {
        protocol: opts.protocol,
        log: opts.log.clone(),
        model: model.name().to_owned(),
        scored: s.scored,
        next_type_accuracy: s.accuracy(),
        next_type_top3_accuracy: ratio(s.top3, s.scored),
        ece: s.calibration.ece(),
        reliability: s.calibration.reliability(),
        train_seconds: 0.0,
        predict_per_sec: 0.0,
        test_observe: "track",
        train_events: 0,
        train_cases: None,
        test_cases: None,
        mean_over_prefix_lengths: None,
        entity_precision: None,
        entity_recall: None,
        entity_predicted: None,
        entity_truth: None,
        time_to_next_mae_s: None,
        horizon_s: None,
        threshold: None,
    }
}

fn per_sec(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

/// Cases as runs of consecutive rows with the same case id, in file order.
fn runs(events: &[Event]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=events.len() {
        if i == events.len() || case_of(&events[i]) != case_of(&events[start]) {
            out.push(start..i);
            start = i;
        }
    }
    out
}

fn tax2017(
    model: &mut dyn OnlineModel,
    events: &[Event],
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    let cases = runs(events);
    let n = cases.len();
    let f = ((n as f64 + 1.0) / 3.0).round() as usize;
    let n_train = (2 * f).min(n);
    if n_train == 0 || n_train == n {
        return Err(EvalError::TooSmall {
            protocol: Protocol::Tax2017,
            needs: "at least one training and one test case".into(),
            has: format!("{n} cases"),
        });
    }
    let total = events.len();
    let mut done = 0;
    let start = Instant::now();
    let mut longest = 0;
    for c in &cases[..n_train] {
        longest = longest.max(c.len());
        for e in &events[c.clone()] {
            model.observe(e, Observe::Learn);
            done += 1;
            if done % PROGRESS_EVERY == 0 {
                progress(done, total);
            }
        }
    }
    let train_seconds = start.elapsed().as_secs_f64();
    let train_events = done as u64;

    let mut s = Scores::default();
    let start = Instant::now();
    for c in &cases[n_train..] {
        let case = &events[c.clone()];
        let kmax = (case.len().saturating_sub(1)).min(longest);
        for k in 1..=kmax {
            let e = &case[k - 1];
            model.observe(e, Observe::Track);
            if k >= 2 {
                let f = model.forecast(e);
                s.add(&f, &case[k].event_type, k);
            }
        }
        done += case.len();
        progress(done.min(total), total);
    }
    let elapsed = start.elapsed();
    let mut r = base_report(model, opts, &s);
    r.train_seconds = train_seconds;
    r.predict_per_sec = per_sec(s.scored, elapsed);
    r.train_events = train_events;
    r.train_cases = Some(n_train as u64);
    r.test_cases = Some((n - n_train) as u64);
    Ok(r)
}

fn pt2021(
    model: &mut dyn OnlineModel,
    events: &[Event],
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    // Case ids in order of first appearance, each with its events in file order.
    let cases = prescient_core::event::cases_in_order(events);
    let n = cases.len();
    let n_train = n * 8 / 10;
    if n_train == 0 || n_train == n {
        return Err(EvalError::TooSmall {
            protocol: Protocol::Pt2021,
            needs: "at least one training and one test case".into(),
            has: format!("{n} cases"),
        });
    }
    let total = events.len();
    let mut done = 0;
    let start = Instant::now();
    let mut is_train = vec![false; events.len()];
    for c in &cases[..n_train] {
        for &i in c {
            is_train[i] = true;
        }
    }
    for (e, _) in events.iter().zip(&is_train).filter(|(_, t)| **t) {
        model.observe(e, Observe::Learn);
        done += 1;
        if done % PROGRESS_EVERY == 0 {
            progress(done, total);
        }
    }
    let train_seconds = start.elapsed().as_secs_f64();
    let train_events = done as u64;

    let mut s = Scores::default();
    let start = Instant::now();
    for c in &cases[n_train..] {
        for k in 1..c.len() {
            let e = &events[c[k - 1]];
            model.observe(e, Observe::Track);
            let f = model.forecast(e);
            s.add(&f, &events[c[k]].event_type, k);
        }
        done += c.len();
        progress(done.min(total), total);
    }
    let elapsed = start.elapsed();
    let mut r = base_report(model, opts, &s);
    r.train_seconds = train_seconds;
    r.predict_per_sec = per_sec(s.scored, elapsed);
    r.train_events = train_events;
    r.train_cases = Some(n_train as u64);
    r.test_cases = Some((n - n_train) as u64);
    r.mean_over_prefix_lengths = Some(s.mean_over_prefix_lengths());
    Ok(r)
}

fn chrono(
    model: &mut dyn OnlineModel,
    events: &[Event],
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Report {
    // Time order, ties keeping file order.
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| events[i].time);
    let ev: Vec<&Event> = order.iter().map(|&i| &events[i]).collect();
    let n = ev.len();
    let n_train = n * 2 / 3;

    // Interned entities of each event, with their first occurrence.
    let mut ids: FxHashMap<EntityKey, u32> = FxHashMap::default();
    let mut first: Vec<usize> = Vec::new();
    let mut touches: Vec<Vec<i64>> = Vec::new();
    let mut ents: Vec<Vec<u32>> = Vec::with_capacity(n);
    for (j, e) in ev.iter().enumerate() {
        let mut v = Vec::with_capacity(e.entities.len());
        for r in &e.entities {
            let next = u32::try_from(first.len()).unwrap_or(u32::MAX);
            let u = *ids.entry(r.key()).or_insert(next);
            if u == next {
                first.push(j);
                touches.push(Vec::new());
            }
            if !v.contains(&u) {
                v.push(u);
            }
        }
        for &u in &v {
            touches[u as usize].push(e.time.as_micros());
        }
        ents.push(v);
    }
    // The next event touching one of each event's entities.
    let mut next_of: Vec<Option<usize>> = vec![None; n];
    let mut upcoming: Vec<usize> = vec![usize::MAX; first.len()];
    for j in (0..n).rev() {
        let mut best = usize::MAX;
        for &u in &ents[j] {
            best = best.min(upcoming[u as usize]);
            upcoming[u as usize] = j;
        }
        if best != usize::MAX {
            next_of[j] = Some(best);
        }
    }

    let total = n;
    let start = Instant::now();
    for (j, e) in ev[..n_train].iter().enumerate() {
        model.observe(e, Observe::Learn);
        if (j + 1) % PROGRESS_EVERY == 0 {
            progress(j + 1, total);
        }
    }
    let train_seconds = start.elapsed().as_secs_f64();

    let h = i64::try_from(opts.horizon.as_micros()).unwrap_or(i64::MAX);
    let mut s = Scores::default();
    let (mut predicted, mut truth, mut hits) = (0u64, 0u64, 0u64);
    let (mut mae_sum, mut mae_n) = (0.0f64, 0u64);
    // Sliding window (lo..hi) of events in (t, t + H], with entity counts.
    let mut in_window: Vec<u32> = vec![0; first.len()];
    let (mut distinct, mut firsts) = (0u64, 0u64);
    let (mut lo, mut hi) = (0usize, 0usize);
    let mut forecasts = 0u64;
    let mut seen_pred: Vec<u32> = Vec::new();
    let start = Instant::now();
    for i in n_train..n {
        let e = ev[i];
        let t = e.time.as_micros();
        model.observe(e, Observe::Learn);
        let f = model.forecast(e);
        forecasts += 1;
        if let Some(j) = next_of[i] {
            s.add(&f, &ev[j].event_type, 0);
            let truth_gap = ev[j].time.secs_since(e.time);
            let pred_gap = f.top().map_or(0.0, |x| x.expected_at.secs_since(e.time));
            mae_sum += (pred_gap - truth_gap).abs();
            mae_n += 1;
        }
        // Move the window to (t, t + H].
        while hi < n && ev[hi].time.as_micros() <= t.saturating_add(h) {
            for &u in &ents[hi] {
                let c = &mut in_window[u as usize];
                if *c == 0 {
                    distinct += 1;
                }
                *c += 1;
                if first[u as usize] == hi {
                    firsts += 1;
                }
            }
            hi += 1;
        }
        while lo < hi && ev[lo].time.as_micros() <= t {
            for &u in &ents[lo] {
                let c = &mut in_window[u as usize];
                *c -= 1;
                if *c == 0 {
                    distinct -= 1;
                }
                if first[u as usize] == lo {
                    firsts -= 1;
                }
            }
            lo += 1;
        }
        truth += distinct - firsts;
        // Predictions at or above the threshold, each counted once.
        seen_pred.clear();
        for p in &f.entities {
            if p.confidence < opts.threshold {
                continue;
            }
            let u = ids.get(&p.entity).copied();
            if let Some(u) = u {
                if seen_pred.contains(&u) {
                    continue;
                }
                seen_pred.push(u);
            }
            predicted += 1;
            if let Some(u) = u
                && first[u as usize] < lo
                && touched_in(&touches[u as usize], t, t.saturating_add(h))
            {
                hits += 1;
            }
        }
        if (i + 1) % PROGRESS_EVERY == 0 {
            progress(i + 1, total);
        }
    }
    let elapsed = start.elapsed();
    progress(total, total);
    let mut r = base_report(model, opts, &s);
    r.test_observe = "learn";
    r.train_seconds = train_seconds;
    r.predict_per_sec = per_sec(forecasts, elapsed);
    r.train_events = n_train as u64;
    r.entity_precision = Some(ratio(hits, predicted));
    r.entity_recall = Some(ratio(hits, truth));
    r.entity_predicted = Some(predicted);
    r.entity_truth = Some(truth);
    r.time_to_next_mae_s = Some(if mae_n == 0 {
        0.0
    } else {
        mae_sum / mae_n as f64
    });
    r.horizon_s = Some(opts.horizon.as_secs_f64());
    r.threshold = Some(opts.threshold);
    r
}

/// Whether a sorted list of times has one in `(from, to]`.
fn touched_in(times: &[i64], from: i64, to: i64) -> bool {
    let k = times.partition_point(|&x| x <= from);
    times.get(k).is_some_and(|&x| x <= to)
}

//! Next-type distributions: context keys, interpolated Witten-Bell smoothing and the mixture over
//! an event's entities.

use std::hash::Hasher;

use prescient_core::{EntityKey, Timestamp};
use rustc_hash::FxHasher;

use crate::hist::LogHist;

use super::RelationalModel;
use super::calibration::{FIRST_EVENT, NOVEL, NOVEL_SPAN};
use super::config::{ContextSpec, RelationalConfig};
use super::state::{EntityState, State};

/// Fills `out` with the `k` largest entries of `p` as `(index, value)`, largest first; ties
/// keep the lower index first.
pub(super) fn top_k(p: &[f64], k: usize, out: &mut Vec<(u16, f64)>) {
    out.clear();
    if k == 0 {
        return;
    }
    for (t, &x) in p.iter().enumerate() {
        if out.len() == k && out.last().is_some_and(|&(_, last)| x <= last) {
            continue;
        }
        let at = out.iter().position(|&(_, y)| y < x).unwrap_or(out.len());
        out.insert(at, (t as u16, x));
        out.truncate(k);
    }
}

pub(super) fn gap_bucket(secs: f32) -> u64 {
    // < 8 s, < 1 min, < 8 min, < 1 h, < 9 h, < 3 d, < 24 d, longer.
    let b = (secs.max(0.0) + 1.0).log2() / 3.0;
    (b as u64).min(7)
}

pub(super) fn clock_bucket(t: Timestamp) -> u64 {
    let secs = t.as_micros().div_euclid(1_000_000);
    let day = secs.div_euclid(86_400);
    let hour = secs.rem_euclid(86_400) / 3600;
    // 1970-01-01 was a Thursday: day 0 -> weekday 3 (Monday = 0).
    let weekday = (day + 3).rem_euclid(7);
    let weekend = u64::from(weekday >= 5);
    (hour as u64 / 6) * 2 + weekend
}

pub(super) fn position_bucket(seen: u32) -> u64 {
    u64::from(32 - seen.max(1).leading_zeros())
}

/// Fills `out` with the interpolated (Witten-Bell) next-type distribution after `st`;
/// returns the number of context levels found.
pub(super) fn distribution(
    cfg: &RelationalConfig,
    s: &State,
    out: &mut Vec<f64>,
    kind: u16,
    st: &EntityState,
    now: Timestamp,
) -> usize {
    let v = s.types.len();
    out.clear();
    let uni = &s.unigram;
    let denom = f64::from(uni.total) + v as f64;
    out.resize(v, 1.0 / denom);
    for &(t, c) in &uni.next {
        if let Some(p) = out.get_mut(usize::from(t)) {
            *p = (f64::from(c) + 1.0) / denom;
        }
    }
    let mut used = 0;
    for spec in &cfg.contexts {
        let Some(key) = RelationalModel::context_key(*spec, kind, st, now) else {
            continue;
        };
        let Some(ctx) = s.contexts.get(&key) else {
            continue;
        };
        if ctx.total <= 0.0 {
            continue;
        }
        used += 1;
        let n = f64::from(ctx.total);
        let d = ctx.next.len() as f64;
        let back = d / (n + d);
        for p in out.iter_mut() {
            *p *= back;
        }
        for &(t, c) in &ctx.next {
            if let Some(p) = out.get_mut(usize::from(t)) {
                *p += f64::from(c) / (n + d);
            }
        }
    }
    used
}

/// Entities mixed into a next-type forecast at most.
pub(super) const MAX_MIX: usize = 8;

/// Fills `out` with the next-type distribution of the next event touching any of `keys`: the
/// entities' own distributions mixed with weights proportional to their rates (one over the
/// median time to their next event), as for competing clocks. Returns the context levels of
/// the heaviest entity and, with several entities, the expected time to the first of them.
#[allow(clippy::too_many_arguments)] // internal: split borrows of the model's fields
pub(super) fn mixture<'a>(
    cfg: &RelationalConfig,
    s: &State,
    scratch: &mut Vec<f64>,
    out: &mut Vec<f64>,
    keys: impl Iterator<Item = (&'a EntityKey, u16)>,
    cur: Option<u16>,
    now: Timestamp,
) -> (usize, Option<f64>) {
    let v = s.types.len();
    out.clear();
    out.resize(v, 0.0);
    let (mut total_w, mut best_w, mut used_best) = (0.0f64, -1.0f64, 0usize);
    let (mut rate_sum, mut n) = (0.0f64, 0usize);
    for (key, kid) in keys.take(MAX_MIX) {
        let Some(st) = s.young.get(key).or_else(|| s.old.get(key)) else {
            continue;
        };
        n += 1;
        let used = distribution(cfg, s, scratch, kid, st, now);
        let rate = st
            .hist()
            .first()
            .and_then(|&l| s.any_gap.get(&(kid, l)))
            .and_then(LogHist::median)
            .map(|g| 1.0 / g.max(1.0));
        rate_sum += rate.unwrap_or(0.0);
        let w = rate.unwrap_or(1e-12);
        if w > best_w {
            best_w = w;
            used_best = used
                | if st.seen <= 1 { FIRST_EVENT } else { 0 }
                | if st.since_novel.is_some_and(|a| a < NOVEL_SPAN) {
                    NOVEL
                } else {
                    0
                };
        }
        for (o, p) in out.iter_mut().zip(scratch.iter()) {
            *o += w * p;
        }
        total_w += w;
    }
    if n == 0 {
        let mut fallback = EntityState::default();
        if let Some(c) = cur {
            fallback.push_type(c, 1);
            fallback.seen = 1;
        }
        let used = distribution(cfg, s, scratch, u16::MAX, &fallback, now);
        out.clone_from(scratch);
        return (used | FIRST_EVENT, None);
    }
    if total_w > 0.0 {
        for o in out.iter_mut() {
            *o /= total_w;
        }
    }
    let first = (n > 1 && rate_sum > 0.0).then(|| 1.0 / rate_sum);
    (used_best, first)
}

pub(super) fn top1(p: &[f64]) -> Option<(u16, f64)> {
    let mut best: Option<(u16, f64)> = None;
    for (t, &x) in p.iter().enumerate() {
        if best.is_none_or(|(_, bp)| x > bp) {
            best = Some((t as u16, x));
        }
    }
    best
}

impl RelationalModel {
    pub(super) fn context_key(
        spec: ContextSpec,
        kind: u16,
        st: &EntityState,
        now: Timestamp,
    ) -> Option<u64> {
        let h = usize::from(spec.history);
        if st.hist().len() < h {
            return None;
        }
        let mut hasher = FxHasher::default();
        hasher.write_u64(
            u64::from(spec.history)
                | u64::from(spec.gap) << 8
                | u64::from(spec.clock) << 9
                | u64::from(spec.position) << 10,
        );
        hasher.write_u16(kind);
        for &t in &st.hist()[..h] {
            hasher.write_u16(t);
        }
        if spec.gap {
            hasher.write_u64(gap_bucket(st.last_gap_s));
        }
        if spec.clock {
            hasher.write_u64(clock_bucket(now));
        }
        if spec.position {
            hasher.write_u64(position_bucket(st.seen));
        }
        Some(hasher.finish())
    }
}

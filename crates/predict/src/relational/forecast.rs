//! The forecast after an event: next types and the entities predicted through their relation
//! contexts.

use prescient_core::{EntityKey, Event, NextEvent, Prediction, Relation, SmolStr, Timestamp};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::hist::LogHist;

use super::calibration::NOVEL;
use super::context::{mixture, top_k};
use super::explain::ContextUse;
use super::state::EntityState;
use super::{RelationalModel, fingerprint};

/// `now` plus `secs` seconds (at least 0), to the microsecond.
pub(super) fn after(now: Timestamp, secs: f64) -> Timestamp {
    let us = (secs.max(0.0) * 1e6).min(i64::MAX as f64) as i64;
    Timestamp::from_micros(now.as_micros().saturating_add(us))
}

impl RelationalModel {
    /// The forecast after `event`: next types, entity predictions (most confident first unless
    /// `explain`) and, with `explain`, each prediction's reason `(via, trials, hits)` at the
    /// same index (unsorted). Without `explain` nothing is spent on reasons.
    #[allow(clippy::type_complexity)] // internal: the forecast parts with their reasons
    pub(super) fn forecast_parts(
        &mut self,
        event: &Event,
        explain: bool,
    ) -> (
        (Vec<NextEvent>, Vec<Prediction>, Vec<(EntityKey, f32, f32)>),
        f64,
        Vec<ContextUse>,
    ) {
        let now = event.time;
        self.last_discount = None;
        let mut next = Vec::new();
        let mut raw_top = 0.0;
        let mut uses = Vec::new();
        let main = Self::main_ref(event);
        // The forecast of the event just observed reuses what `observe` looked up.
        let hit = self.mix_cache.valid && self.mix_cache.fingerprint == fingerprint(event);
        let (cur, kind, fkeys) = if hit {
            let fkeys = std::mem::take(&mut self.mix_cache.fkeys);
            (self.mix_cache.cur, self.mix_cache.kind, fkeys)
        } else {
            let cur = self.type_ids.get(&event.event_type).copied();
            let kind = main.and_then(|r| self.kind_ids.get(&r.kind).copied());
            // The event's entities of known kinds, each once.
            let mut fkeys = std::mem::take(&mut self.fkeys);
            fkeys.clear();
            let mut seen: FxHashSet<EntityKey> = FxHashSet::default();
            for r in &event.entities {
                if let Some(&kid) = self.kind_ids.get(&r.kind) {
                    let key = r.key();
                    if seen.insert(key.clone()) {
                        fkeys.push((key, kid));
                    }
                }
            }
            (cur, kind, fkeys)
        };
        if !self.s.types.is_empty() {
            let k = kind.unwrap_or(u16::MAX);
            let (used, first_gap) = if hit {
                self.scratch.clone_from(&self.mix_cache.dist);
                (self.mix_cache.used, self.mix_cache.first_gap)
            } else {
                let mut mix = std::mem::take(&mut self.mix);
                let r = mixture(
                    &self.cfg,
                    &self.s,
                    &mut self.scratch,
                    &mut mix,
                    fkeys.iter().map(|(k, id)| (k, *id)),
                    cur,
                    now,
                );
                std::mem::swap(&mut self.scratch, &mut mix);
                self.mix = mix;
                r
            };
            if explain {
                let mut fallback = EntityState::default();
                if let Some(c) = cur {
                    fallback.push_type(c, 1);
                    fallback.seen = 1;
                }
                let main_key = main.map(|r| r.key());
                let st: &EntityState = main_key
                    .as_ref()
                    .and_then(|key| self.s.young.get(key).or_else(|| self.s.old.get(key)))
                    .unwrap_or(&fallback);
                for spec in &self.cfg.contexts {
                    if let Some(key) = Self::context_key(*spec, k, st, now)
                        && let Some(c) = self.s.contexts.get(&key)
                    {
                        let h = usize::from(spec.history);
                        uses.push(ContextUse {
                            spec: *spec,
                            types: st.hist()[..h]
                                .iter()
                                .rev()
                                .map(|&t| {
                                    // Past `MAX_TYPES`, types are one unknown type.
                                    self.s
                                        .types
                                        .get(usize::from(t))
                                        .cloned()
                                        .unwrap_or_else(|| SmolStr::new("<other>"))
                                })
                                .collect(),
                            count: c.total,
                            distinct: c.next.len(),
                        });
                    }
                }
            }
            // The `max_next` most probable types, most probable first (ties: lower id first).
            let mut ranked = std::mem::take(&mut self.ranked);
            top_k(&self.scratch, self.cfg.max_next, &mut ranked);
            if let Some(&(_, p1)) = ranked.first() {
                raw_top = p1;
                let c1 = if used & NOVEL != 0 {
                    // Reported either way, so that a mix can apply it when this model does not.
                    let (on, off) = (
                        self.calibrate_as(p1, used, true),
                        self.calibrate_as(p1, used, false),
                    );
                    self.last_discount = (off > 0.0).then(|| (on / off).min(1.0) as f32);
                    if self.no_novelty_discount { off } else { on }
                } else {
                    self.calibrate(p1, used)
                };
                let rest = if p1 < 1.0 {
                    (1.0 - c1) / (1.0 - p1)
                } else {
                    0.0
                };
                let any = cur
                    .and_then(|c| self.s.any_gap.get(&(k, c)))
                    .and_then(LogHist::median);
                next.reserve_exact(ranked.len());
                for (i, &(t, p)) in ranked.iter().enumerate() {
                    // Calibration may lower the top-1 below the rescaled others; they are capped
                    // at it so that the order stays the model's ranking.
                    let prob = if i == 0 { c1 } else { (p * rest).min(c1) };
                    let gap = first_gap
                        .or_else(|| {
                            cur.and_then(|c| self.s.next_gap.get(&(k, c, t)))
                                .and_then(LogHist::median)
                        })
                        .or(any)
                        .unwrap_or(0.0);
                    next.push(NextEvent {
                        event_type: self.s.types[usize::from(t)].clone(),
                        probability: prob.clamp(0.0, 1.0) as f32,
                        expected_at: after(now, gap),
                    });
                }
            }
            self.ranked = ranked;
        }
        let top_type = next.first().map(|n| n.event_type.clone());

        // Entities: the event's own, then their links.
        let mut ents: Vec<Prediction> = Vec::new();
        let mut why: Vec<(EntityKey, f32, f32)> = Vec::new();
        let ty = cur.unwrap_or(u16::MAX);
        let mut cands = std::mem::take(&mut self.cands);
        cands.clear();
        // Own entities with the start of their data-age cycle.
        let mut own_cycles = std::mem::take(&mut self.own_cycles);
        own_cycles.clear();
        // Own entities, and linked ones taken so far: each entity is a candidate once.
        let own: FxHashSet<&EntityKey> = fkeys.iter().map(|(k, _)| k).collect();
        let mut linked: FxHashSet<EntityKey> = FxHashSet::default();
        for (key, kid) in &fkeys {
            let st = self.s.young.get(key).or_else(|| self.s.old.get(key));
            own_cycles.push(st.and_then(|s| s.cycle_start));
            cands.push((key.clone(), key.clone(), *kid, *kid, 0));
            let Some(st) = st else {
                continue;
            };
            for l in &st.links {
                if own.contains(l) || linked.contains(l) {
                    continue;
                }
                let Some(&lk) = self.kind_ids.get(&l.kind) else {
                    continue;
                };
                linked.insert(l.clone());
                cands.push((l.clone(), key.clone(), lk, *kid, 1));
            }
        }
        let room = fkeys.len() + cands.len();
        for (key, via, kid, from_kind, relation) in cands.drain(..) {
            let Some(&rel) = self.s.rel_ids.get(&(kid, ty, from_kind, relation)) else {
                continue;
            };
            let Some((s, e, w, trials)) = self.window_of(rel) else {
                continue;
            };
            let conf = (f64::from(w) / (f64::from(trials) + 1.0)) as f32;
            if ents.capacity() == 0 {
                ents.reserve_exact(room);
            }
            ents.push(Prediction {
                entity: key,
                confidence: conf,
                expected_at: after(now, s),
                latest: after(now, e.max(s)),
                event_type: top_type.clone(),
                relation: if relation == 0 {
                    Relation::Same
                } else {
                    Relation::Linked
                },
            });
            if explain {
                why.push((via, trials, w));
            }
        }
        self.cands = cands;
        // Refresh: an own entity whose cached copy expires soon is predicted right after the
        // expiry, with the learned chance of a touch within a window of it.
        let age = self.cfg.min_lead;
        if !age.is_zero() {
            // Where each entity's (first) prediction is in `ents`.
            let mut at: FxHashMap<EntityKey, usize> = FxHashMap::default();
            for (i, p) in ents.iter().enumerate() {
                at.entry(p.entity.clone()).or_insert(i);
            }
            for ((key, kid), start) in fkeys.iter().zip(&own_cycles) {
                let Some(start) = *start else {
                    continue;
                };
                let expiry = Timestamp::from_micros(start).plus(age);
                if expiry <= now {
                    continue;
                }
                let Some(&rel) = self.s.rel_ids.get(&(*kid, u16::MAX, *kid, 2)) else {
                    continue;
                };
                let width = self.cfg.window.as_secs_f64();
                let Some((_, e, w, trials)) = self.cached_window(rel, 0.0, width) else {
                    continue;
                };
                let conf = (f64::from(w) / (f64::from(trials) + 1.0)) as f32;
                let p = Prediction {
                    entity: key.clone(),
                    confidence: conf,
                    expected_at: expiry,
                    latest: after(expiry, e),
                    event_type: top_type.clone(),
                    relation: Relation::Same,
                };
                match at.get(key).copied() {
                    Some(i) if ents[i].confidence >= conf => {}
                    Some(i) => {
                        ents[i] = p;
                        if explain {
                            why[i] = (key.clone(), trials, w);
                        }
                    }
                    None => {
                        at.insert(key.clone(), ents.len());
                        ents.push(p);
                        if explain {
                            why.push((key.clone(), trials, w));
                        }
                    }
                }
            }
        }
        self.own_cycles = own_cycles;
        if hit {
            self.mix_cache.fkeys = fkeys;
        } else {
            self.fkeys = fkeys;
        }
        if !explain {
            ents.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        }
        ((next, ents, why), raw_top, uses)
    }
}

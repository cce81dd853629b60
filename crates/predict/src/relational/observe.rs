//! Learning from (or tracking) an event: the [`OnlineModel`] implementation.

use prescient_core::{Event, Forecast, Observe, OnlineModel, SmolStr};
use rustc_hash::FxHashMap;

use super::calibration::{CAL_BINS, CAL_CLASSES, cal_cell};
use super::context::{mixture, top1};
use super::state::{EntityState, MAX_TYPES, intern, mark_learned};
use super::{RelationalModel, fingerprint};

impl OnlineModel for RelationalModel {
    fn name(&self) -> &str {
        "relational"
    }

    fn set_novelty_discount(&mut self, on: bool) {
        self.no_novelty_discount = !on;
    }

    fn observe(&mut self, event: &Event, mode: Observe) {
        if mode == Observe::Skip {
            return;
        }
        let learn = mode == Observe::Learn;
        self.mix_cache.valid = false;
        let now = event.time;
        let nowu = now.as_micros();
        let cap = self.cfg.max_count;
        let cur = intern(
            &mut self.s.types,
            &mut self.type_ids,
            &event.event_type,
            MAX_TYPES,
        );
        let main_idx = event
            .entities
            .iter()
            .position(|r| r.role.as_deref() == Some("case"))
            .unwrap_or(0);

        let mut keys = std::mem::take(&mut self.keys);
        keys.clear();
        // The event's entities, each once: looked up by hash, so that an event with many
        // entities costs linearly in them.
        let mut key_index = std::mem::take(&mut self.key_index);
        key_index.clear();
        let mut main_kind = u16::MAX;
        for (i, r) in event.entities.iter().enumerate() {
            let key = r.key();
            if let Some(&at) = key_index.get(&key) {
                if i == main_idx {
                    main_kind = keys[at].1;
                }
                continue;
            }
            let kid = intern(
                &mut self.s.kinds,
                &mut self.kind_ids,
                &r.kind,
                usize::from(u16::MAX),
            );
            if i == main_idx {
                main_kind = kid;
            }
            key_index.insert(key.clone(), keys.len());
            keys.push((key, kid, i == main_idx));
        }
        // The last entity of each kind in the event, latest first: the links every entity
        // of another kind gets from this event.
        let mut last_of_kind: FxHashMap<&SmolStr, usize> = FxHashMap::default();
        let mut latest_kinds = Vec::new();
        if self.cfg.max_links > 0 {
            for (j, (k, _, _)) in keys.iter().enumerate() {
                last_of_kind.insert(&k.kind, j);
            }
            latest_kinds.extend(last_of_kind.values().copied());
            latest_kinds.sort_unstable_by(|a, b| b.cmp(a));
        }
        // What the forecast of this event looks up (`u16::MAX`: not interned, full).
        let known = |id: u16| (id != u16::MAX).then_some(id);
        self.mix_cache.cur = known(cur);
        self.mix_cache.kind = known(main_kind);
        self.mix_cache.fkeys.clear();
        self.mix_cache.fkeys.extend(
            keys.iter()
                .filter(|(_, kid, _)| *kid != u16::MAX)
                .map(|(k, kid, _)| (k.clone(), *kid)),
        );
        let mut linked = std::mem::take(&mut self.linked);
        linked.clear();
        // A type the model has not learned makes the entities it touches novel.
        let novel = !self
            .learned_types
            .get(usize::from(cur))
            .copied()
            .unwrap_or(false);
        let mut resolved = std::mem::take(&mut self.resolved);
        resolved.clear();
        for i in 0..keys.len() {
            let (key, kid) = (&keys[i].0, keys[i].1);
            // An entity of the young generation is updated in place; others move into it.
            let (mut st, in_young) = match self.s.young.get_mut(key) {
                Some(slot) => (std::mem::take(slot), true),
                None => (
                    self.s.old.remove(key).unwrap_or_else(|| EntityState {
                        kind: kid,
                        ..EntityState::default()
                    }),
                    false,
                ),
            };
            // Calibration: the top-1 prediction made after the previous event touching this
            // entity, resolved by this event (once per earlier event).
            if learn && st.seen > 0 {
                if let Some((seq, t, p, used)) = st.pending
                    && resolved.insert(seq)
                {
                    let levels = self.cfg.contexts.len() + 1;
                    if self.s.cal.len() != CAL_CLASSES * CAL_BINS * levels {
                        self.s.cal = vec![(0.0, 0.0); CAL_CLASSES * CAL_BINS * levels];
                    }
                    let i = cal_cell(f64::from(p), usize::from(used), levels);
                    let cell = &mut self.s.cal[i];
                    cell.0 += 1.0;
                    cell.1 += f32::from(t == cur);
                    if cap > 0.0 && cell.0 > cap {
                        cell.0 *= 0.5;
                        cell.1 *= 0.5;
                    }
                }
                let gap = (nowu.saturating_sub(st.last_time) as f64 / 1e6).max(0.0);
                self.learn_next_type(kid, &st, cur, now);
                if let Some(&last) = st.hist().first() {
                    self.s
                        .next_gap
                        .entry((kid, last, cur))
                        .or_default()
                        .add(gap, cap);
                    self.s.any_gap.entry((kid, last)).or_default().add(gap, cap);
                }
                // Relation hits: the time from the last trigger of each relation to this touch.
                for (rel, t0) in [st.trigger_same, st.trigger_link].into_iter().flatten() {
                    if let Some(r) = self.s.rels.get_mut(rel as usize) {
                        r.gaps
                            .add((nowu.saturating_sub(t0) as f64 / 1e6).max(0.0), 0.0);
                    }
                }
            }
            st.kind = kid;
            st.since_novel = if novel {
                Some(0)
            } else {
                st.since_novel.map(|a| a.saturating_add(1))
            };
            st.last_gap_s = if st.seen == 0 {
                0.0
            } else {
                (nowu.saturating_sub(st.last_time) as f64 / 1e6).max(0.0) as f32
            };
            st.push_type(cur, self.cfg.order);
            st.seen = st.seen.saturating_add(1);
            st.last_time = nowu;
            st.trigger_same = None;
            st.trigger_link = None;
            st.pending = None;
            // Data-age cycles: a cached copy filled at the cycle's start expires after
            // `min_lead`; learn how soon after that expiry the entity is touched again.
            let age = i64::try_from(self.cfg.min_lead.as_micros()).unwrap_or(i64::MAX);
            if age > 0 && st.cycle_start.is_none_or(|c| nowu.saturating_sub(c) >= age) {
                let rel = self.rel_id(kid, u16::MAX, kid, 2);
                if learn {
                    if let Some(c) = st.cycle_start
                        && let Some(r) = self.s.rels.get_mut(rel as usize)
                    {
                        r.gaps.add(
                            (nowu.saturating_sub(c).saturating_sub(age) as f64 / 1e6).max(0.0),
                            0.0,
                        );
                    }
                    self.add_trial(rel);
                }
                st.cycle_start = Some(nowu);
            }
            // Links to the other kinds of this event: the last entity of each, latest first,
            // then the earlier links to kinds the event does not have.
            if self.cfg.max_links > 0 {
                let max = self.cfg.max_links;
                let mut links = Vec::with_capacity(max.min(latest_kinds.len() + st.links.len()));
                for &j in &latest_kinds {
                    if links.len() == max {
                        break;
                    }
                    let k2 = &keys[j].0;
                    if j != i && k2.kind != key.kind {
                        links.push(k2.clone());
                    }
                }
                for l in st.links.drain(..) {
                    if links.len() == max {
                        break;
                    }
                    if l.kind == key.kind || !last_of_kind.contains_key(&l.kind) {
                        links.push(l);
                    }
                }
                st.links = links;
            }
            if learn {
                let rel = self.rel_id(kid, cur, kid, 0);
                self.add_trial(rel);
                st.trigger_same = Some((rel, nowu));
                for l in &st.links {
                    if !key_index.contains_key(l) {
                        linked.push((l.clone(), kid));
                    }
                }
            }
            match self.s.young.get_mut(key) {
                Some(slot) if in_young => *slot = st,
                _ => self.put_entity(key.clone(), st),
            }
        }
        if learn {
            self.s.unigram.add(cur, cap);
            self.s.learned += 1;
            if cur != u16::MAX {
                mark_learned(&mut self.learned_types, cur);
            }
        }
        // What the model now predicts after this event, to be resolved by the next one; kept
        // for this event's forecast too.
        let seq = if learn {
            self.s.learned
        } else {
            self.track_seq += 1;
            (1 << 63) | self.track_seq
        };
        let mut mix = std::mem::take(&mut self.mix);
        let (used, first_gap) = mixture(
            &self.cfg,
            &self.s,
            &mut self.scratch,
            &mut mix,
            keys.iter().map(|(k, id, _)| (k, *id)),
            Some(cur),
            now,
        );
        if let Some((t, p)) = top1(&mix) {
            let pending = Some((seq, t, p as f32, used.min(255) as u8));
            for (k, _, _) in &keys {
                if let Some(st) = self.s.young.get_mut(k) {
                    st.pending = pending;
                }
            }
        }
        self.mix_cache.dist.clone_from(&mix);
        self.mix_cache.used = used;
        self.mix_cache.first_gap = first_gap;
        self.mix_cache.fingerprint = fingerprint(event);
        self.mix_cache.valid = true;
        self.mix = mix;
        if learn {
            for (l, from_kind) in linked.drain(..) {
                let Some(&lk) = self.kind_ids.get(&l.kind) else {
                    continue;
                };
                let rel = self.rel_id(lk, cur, from_kind, 1);
                self.add_trial(rel);
                if let Some(st) = self.s.young.get_mut(&l).or_else(|| self.s.old.get_mut(&l)) {
                    st.trigger_link = Some((rel, nowu));
                }
            }
        }
        self.linked = linked;
        self.resolved = resolved;
        self.key_index = key_index;
        self.keys = keys;
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        let ((next, entities, _), _, _) = self.forecast_parts(event, false);
        Forecast {
            next,
            entities,
            novelty_discount: self.last_discount,
        }
    }
}

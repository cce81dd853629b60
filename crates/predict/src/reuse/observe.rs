//! Learning from an event and reported fills: the [`OnlineModel`] implementation.

use std::cmp::Reverse;

use prescient_core::{EntityKey, Event, Forecast, Observe, OnlineModel, Relation, Timestamp};
use rustc_hash::FxHashSet;

use super::ReuseModel;
use super::copies::CopyState;
use super::hazard::{hash_str, mix};
use super::state::EntityState;

impl OnlineModel for ReuseModel {
    fn name(&self) -> &str {
        "reuse"
    }

    fn observe(&mut self, event: &Event, mode: Observe) {
        if self.window_us <= 0 {
            return;
        }
        let t = event.time.as_micros();
        self.now = self.now.max(t);
        let ty = hash_str(&event.event_type);
        // The entities this event has handled (each once) and those it writes, by hash: an
        // event with many entities costs linearly in them.
        let mut seen: FxHashSet<EntityKey> = FxHashSet::default();
        let writes: FxHashSet<(&str, &str)> = event
            .mutations
            .iter()
            .map(|m| (m.kind.as_str(), m.id.as_str()))
            .collect();
        for r in &event.entities {
            let key = r.key();
            if event.entities.len() > 1 && !seen.insert(key.clone()) {
                continue;
            }
            let slot = self.index.get(&key).copied();
            let prev = slot.and_then(|i| self.slots.get(i as usize)).map(|s| s.st);
            if let Some(st) = prev
                && mode == Observe::Learn
            {
                // The windows between the copy's expiry and this read: negatives, then the
                // positive that holds this read. A read of a version this event writes would
                // find any copy refreshed before it stale: for a refresh, its window is a
                // negative too.
                let written = writes.contains(&(r.kind.as_str(), r.id.as_str()));
                let mut pre = None;
                let mut last_start = None;
                for j in st.learned + 1..=self.cfg.max_windows {
                    let start = self.start_of(st.fill, j);
                    // A start that does not advance has saturated at the end of the time
                    // range: there are no later windows.
                    if t < start || last_start.is_some_and(|s| start <= s) {
                        break;
                    }
                    last_start = Some(start);
                    let pre = *pre.get_or_insert_with(|| self.prefix(&st));
                    self.learn(
                        &st,
                        &pre,
                        j,
                        !written && t < start.saturating_add(self.window_us),
                    );
                }
            }
            let scheduled = prev.is_some_and(|s| s.scheduled);
            if let Some(s) = prev
                && s.scheduled
                && s.asleep
            {
                // Read while asleep: its state is not as dead as it looked.
                let cell = &mut self.sleep[Self::sleep_slot(&s)];
                cell[1] = cell[1].saturating_add(1);
            }
            // The copy this read finds: still fresh (a hit), refreshed at the start of this
            // read's window (when that refresh was predicted), or expired (the read fills it).
            let (fill, learned, refreshed) = match prev {
                Some(s) if t < self.start_of(s.fill, 1) => (s.fill, s.learned, s.refreshed),
                Some(s) if self.refilled_at(&CopyState::of(&s), t) => (s.refill, 0, 0),
                Some(s) => {
                    let j = self.window_of(s.fill, t);
                    if s.refreshed != 0 && s.refreshed == j {
                        (self.start_of(s.fill, j), 0, 0)
                    } else {
                        (t, 0, 0)
                    }
                }
                None => (t, 0, 0),
            };
            let st = EntityState {
                kind: prev.map_or_else(|| hash_str(&r.kind), |s| s.kind),
                id: prev.map_or_else(|| mix(hash_str(&r.kind), hash_str(&r.id)), |s| s.id),
                last: t,
                fill,
                refreshed,
                refill: prev
                    .filter(|s| s.fill == fill)
                    .map_or(i64::MIN, |s| s.refill),
                ty,
                prev_ty: prev.map_or(0, |s| s.ty),
                reads: prev.map_or(1, |s| s.reads.saturating_add(1)),
                gap: prev.map_or(u32::MAX - 1, |s| {
                    u32::try_from(t.saturating_sub(s.last) / self.window_us).unwrap_or(u32::MAX - 1)
                }),
                learned,
                scheduled: true,
                cold: 0,
                asleep: false,
            };
            self.note(&key, prev.as_ref().map(CopyState::of));
            let slot = match slot {
                Some(i) => {
                    if let Some(s) = self.slots.get_mut(i as usize) {
                        s.st = st;
                    }
                    i
                }
                None => self.insert(key, st),
            };
            if !scheduled || prev.is_some_and(|s| s.fill != fill) {
                self.due.push(Reverse((self.start_of(fill, 1), fill, slot)));
            }
        }
        if self.index.len() > self.cfg.max_entities.max(2) {
            self.shrink();
        }
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        self.windows_due(event.time.as_micros(), Relation::Refresh)
    }

    fn forecast_due(&mut self, now: Timestamp) -> Forecast {
        self.windows_due(now.as_micros(), Relation::Tick)
    }

    /// A prefetch filled `key`'s copy at `at`. From the first such report on, the model
    /// follows the reported fills instead of assuming that its confident windows were
    /// refreshed.
    fn filled(&mut self, key: &EntityKey, at: Timestamp) {
        if self.window_us <= 0 {
            return;
        }
        self.fed = true;
        let Some(&slot) = self.index.get(key) else {
            return;
        };
        if let Some(s) = self.slots.get_mut(slot as usize).filter(|s| s.live) {
            let at = at.as_micros();
            if at > s.st.fill {
                s.st.refill = s.st.refill.max(at);
            }
        }
    }
}
